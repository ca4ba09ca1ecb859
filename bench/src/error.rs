//! `BenchError`: why a benchmark run could not produce its figures. A missed target is not an
//! error (it is a figure, reported as missed); a lost message or a server that will not start
//! is.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The machine lacks something the scenario needs (a built binary, dist/, Chromium, file
    /// descriptors); the message says how to provide it.
    #[error("{0}")]
    Setup(String),
    #[error("{what} took longer than {limit:?}")]
    Timeout { what: String, limit: Duration },
    #[error("{what} failed: {code:?} {message}")]
    Rpc {
        what: String,
        code: tonic::Code,
        message: String,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "the {server} exited while it was being measured ({status}); the end of its log:\n{log}"
    )]
    ServerDied {
        server: String,
        status: String,
        log: String,
    },
    #[error("the page-load script failed: {0}")]
    Browser(String),
    #[error("interrupted")]
    Interrupted,
}

impl BenchError {
    pub fn rpc(what: impl Into<String>, status: &tonic::Status) -> Self {
        Self::Rpc {
            what: what.into(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
