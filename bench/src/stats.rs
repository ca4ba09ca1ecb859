//! Latency samples and their percentiles. Samples are kept whole (microseconds as `u32`, so a
//! fan-out run's two million deliveries take 8 MB) rather than bucketed: percentiles are then
//! exact, and nothing about the distribution is assumed.

use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            micros: Vec::with_capacity(capacity),
            sorted: true,
        }
    }

    pub fn push(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    pub fn append(&mut self, other: &mut Latencies) {
        self.micros.append(&mut other.micros);
        self.sorted = false;
    }

    /// The nearest-rank percentile (`p` in 0..=100), in milliseconds; 0 with no samples.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.micros.len()) - 1;
        f64::from(self.micros[index]) / 1000.0
    }

    pub fn max_ms(&mut self) -> f64 {
        self.percentile_ms(100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut latencies = Latencies::default();
        for ms in (1..=100).rev() {
            latencies.push(Duration::from_millis(ms));
        }
        assert_eq!(latencies.percentile_ms(50.0), 50.0);
        assert_eq!(latencies.percentile_ms(99.0), 99.0);
        assert_eq!(latencies.max_ms(), 100.0);
        assert_eq!(Latencies::default().percentile_ms(99.0), 0.0);
    }
}
