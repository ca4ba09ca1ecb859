//! What a run reports: figures (each beside the ceiling's, with the ratio and the product's
//! target), correctness checks, and the JSON summary. A missed target is reported, not
//! fatal; a failed check (a lost message, a server that did not stop cleanly) fails the run.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::error::BenchError;

/// A performance target the product sets itself (BENCHMARKS.md lists them).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// value / ceiling must be at least this.
    RatioAtLeast(f64),
    /// value / ceiling must be at most this.
    RatioAtMost(f64),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::AtMost(limit) => write!(f, "≤ {}", number(*limit)),
            Target::AtLeast(limit) => write!(f, "≥ {}", number(*limit)),
            Target::RatioAtLeast(ratio) => write!(f, "≥ {:.0}% of ceiling", ratio * 100.0),
            Target::RatioAtMost(ratio) => write!(f, "≤ {ratio}× ceiling"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    /// The real server's figure.
    pub value: f64,
    /// The ceiling server's figure under the same load in the same run, where one exists.
    pub ceiling: Option<f64>,
    /// value / ceiling.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    /// Whether the target is met; `None` without a target, or in a smoke run (tiny sizes say
    /// nothing about performance).
    pub met: Option<bool>,
}

impl Figure {
    pub fn new(name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            unit,
            value,
            ceiling: None,
            ratio: None,
            target: None,
            met: None,
        }
    }

    pub fn ceiling(mut self, ceiling: Option<f64>) -> Self {
        self.ceiling = ceiling;
        self.ratio = ceiling.filter(|c| *c != 0.0).map(|c| self.value / c);
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// Judges the target, unless this is a smoke run.
    fn judge(&mut self, smoke: bool) {
        self.met = match (smoke, self.target) {
            (true, _) | (_, None) => None,
            (false, Some(Target::AtMost(limit))) => Some(self.value <= limit),
            (false, Some(Target::AtLeast(limit))) => Some(self.value >= limit),
            (false, Some(Target::RatioAtLeast(ratio))) => self.ratio.map(|r| r >= ratio),
            (false, Some(Target::RatioAtMost(ratio))) => self.ratio.map(|r| r <= ratio),
        };
    }
}

/// A correctness condition of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: &'static str,
    pub description: String,
    pub seconds: f64,
    pub figures: Vec<Figure>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    /// What the comparison column holds: the ceiling server, unless a scenario says otherwise.
    pub compared_with: &'static str,
}

impl ScenarioReport {
    pub fn new(name: &'static str, description: impl Into<String>) -> Self {
        Self {
            name,
            description: description.into(),
            seconds: 0.0,
            figures: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            compared_with: "ceiling",
        }
    }

    pub fn figure(&mut self, figure: Figure) {
        self.figures.push(figure);
    }

    pub fn check(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    pub fn finish(&mut self, smoke: bool, seconds: f64) {
        self.seconds = seconds;
        for figure in &mut self.figures {
            figure.judge(smoke);
        }
    }

    /// Prints the figures as a table, then the checks and notes.
    pub fn print(&self) {
        println!(
            "\n== {}: {} ({:.0} s) ==",
            self.name, self.description, self.seconds
        );
        println!(
            "{:<50} {:>14} {:>14} {:>8}  target",
            "figure", "chat-server", self.compared_with, "ratio"
        );
        for figure in &self.figures {
            let ceiling = figure.ceiling.map_or("-".to_owned(), number);
            let ratio = figure.ratio.map_or("-".to_owned(), |r| format!("{r:.2}×"));
            // A ratio target is relative to whatever the comparison column holds.
            let target = figure
                .target
                .map(|target| target.to_string().replace("ceiling", self.compared_with));
            let target = match (target, figure.met) {
                (None, _) => String::new(),
                (Some(target), None) => format!("{target} (not judged)"),
                (Some(target), Some(true)) => format!("{target}  met"),
                (Some(target), Some(false)) => format!("{target}  MISSED"),
            };
            println!(
                "{:<50} {:>14} {:>14} {:>8}  {}",
                format!("{} ({})", figure.name, figure.unit),
                number(figure.value),
                ceiling,
                ratio,
                target
            );
        }
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            println!("  [{mark}] {}: {}", check.name, check.detail);
        }
        for note in &self.notes {
            println!("  note: {note}");
        }
    }
}

/// A number as people read it: thousands separated, at most a few significant decimals.
pub fn number(value: f64) -> String {
    if value.abs() >= 1000.0 {
        let whole = value.round() as i64;
        let digits = whole.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(digit);
        }
        if whole < 0 { format!("-{out}") } else { out }
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The machine a run was made on, read from /proc.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// The machine-readable result of a run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub smoke: bool,
    /// Unix seconds at the start of the run.
    pub started_at: u64,
    pub machine: Machine,
    pub passed: bool,
    pub scenarios: Vec<ScenarioReport>,
}

impl Summary {
    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(BenchError::io(format!(
                "cannot create {}",
                parent.display()
            )))?;
        }
        let json = serde_json::to_string_pretty(self)
            .map_err(|error| BenchError::Setup(format!("cannot encode the summary: {error}")))?;
        std::fs::write(path, json + "\n")
            .map_err(BenchError::io(format!("cannot write {}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
    }

    #[test]
    fn targets_are_judged_against_value_or_ratio() {
        let mut throughput = Figure::new("t", "msg/s", 60.0)
            .ceiling(Some(100.0))
            .target(Target::RatioAtLeast(0.5));
        throughput.judge(false);
        assert_eq!(throughput.met, Some(true));
        let mut latency = Figure::new("p99", "ms", 51.0).target(Target::AtMost(50.0));
        latency.judge(false);
        assert_eq!(latency.met, Some(false));
        latency.judge(true);
        assert_eq!(latency.met, None);
        let mut cpu = Figure::new("cpu", "µs", 30.0)
            .ceiling(Some(20.0))
            .target(Target::RatioAtMost(1.5));
        cpu.judge(false);
        assert_eq!(cpu.met, Some(true));
        cpu = cpu.ceiling(Some(19.0));
        cpu.judge(false);
        assert_eq!(cpu.met, Some(false));
        assert_eq!(Target::RatioAtMost(1.5).to_string(), "≤ 1.5× ceiling");
    }
}
