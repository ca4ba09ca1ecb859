//! Reading chat-server's `/metrics` (Prometheus text) from a scenario: one plain HTTP/1.1
//! `GET` on the listener `--metrics-listen` opened, and the value of a sample by its name.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::client::{CALL_TIMEOUT, within};
use crate::error::BenchError;

/// One scrape of `/metrics`.
pub struct Scrape {
    text: String,
}

impl Scrape {
    /// Reads `/metrics` at `addr`, bounded in time.
    pub async fn of(addr: SocketAddr) -> Result<Self, BenchError> {
        let text = within("scraping /metrics", CALL_TIMEOUT, get_metrics(addr))
            .await?
            .map_err(BenchError::io(format!("cannot read http://{addr}/metrics")))?;
        Ok(Self { text })
    }

    /// The value of the sample named exactly `name` (labels included, as the text spells
    /// them), if there is one.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

/// One `GET /metrics`, the connection closed by the server after the answer.
async fn get_metrics(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
