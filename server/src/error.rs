//! The API's error type and its one mapping to `tonic::Status`. Internal causes are logged
//! here and never sent to clients.

use std::time::Duration;

use chat_core::ValidationError;
use chat_core::ids::UserId;
use chat_core::wire;

use crate::store::StoreError;

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    /// Also what non-members get, so they cannot tell a foreign chat from a missing one.
    #[error("chat not found")]
    ChatNotFound,
    #[error("no account named \"{0}\"")]
    NoSuchAccount(UserId),
    #[error("the user id \"{0}\" is taken; choose another")]
    AccountExists(UserId),
    #[error("the server is shutting down; reconnect and resume with after_id")]
    ShuttingDown,
    /// A rate limit (see `limits`); `reason` says which, in words.
    #[error("{reason}; try again in {:.1} s", tenths_up(*retry_after))]
    RateLimited {
        reason: String,
        retry_after: Duration,
    },
    #[error(
        "you already have {0} streams open, the most one account may have: close one \
         (each open app tab holds one)"
    )]
    TooManyStreams(usize),
    #[error("{0}")]
    Unavailable(String),
    /// A message on a client stream that could not be read, with the transport's status.
    #[error("cannot read your message: {}", .0.message())]
    Unreadable(tonic::Status),
    #[error("internal error")]
    Internal(String),
}

/// Seconds rounded up to a tenth, so a wait of 40 ms reads "0.1 s", never "0.0 s".
fn tenths_up(wait: Duration) -> f64 {
    ((wait.as_secs_f64() * 10.0).ceil() / 10.0).max(0.1)
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::ChatNotFound => Self::ChatNotFound,
            StoreError::NoSuchAccount(user) => Self::NoSuchAccount(user),
            StoreError::AccountExists(user) => Self::AccountExists(user),
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        use tonic::Status;
        match error {
            ApiError::Invalid(error) => Status::invalid_argument(error.to_string()),
            ApiError::InvalidRequest(message) => Status::invalid_argument(message),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            error @ (ApiError::ChatNotFound | ApiError::NoSuchAccount(_)) => {
                Status::not_found(error.to_string())
            }
            error @ ApiError::AccountExists(_) => Status::already_exists(error.to_string()),
            error @ ApiError::ShuttingDown => Status::unavailable(error.to_string()),
            error @ ApiError::TooManyStreams(_) => Status::resource_exhausted(error.to_string()),
            ApiError::Unreadable(ref status) => Status::new(status.code(), error.to_string()),
            ApiError::RateLimited {
                ref retry_after, ..
            } => {
                // The hint in a form programs read too; browsers may read it (CORS exposes it).
                let millis = retry_after.as_millis().max(1).to_string();
                let mut status = Status::resource_exhausted(error.to_string());
                if let Ok(value) = millis.parse() {
                    status.metadata_mut().insert(wire::RETRY_AFTER_MS, value);
                }
                status
            }
            ApiError::Unavailable(cause) => {
                tracing::error!(%cause, "storage unavailable");
                // The cause (disk full, read-only or failing disk, ...) is for the operator's
                // log; the client needs to know it may retry, and that a retry is safe.
                Status::unavailable(
                    "the server cannot use its storage right now; try again shortly \
                     (a Send retried with the same client_id is stored once)",
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_messages_never_say_to_wait_zero_seconds() {
        for (wait_ms, shown) in [
            (1, "0.1 s"),
            (40, "0.1 s"),
            (100, "0.1 s"),
            (101, "0.2 s"),
            (2500, "2.5 s"),
        ] {
            let error = ApiError::RateLimited {
                reason: "too fast".into(),
                retry_after: Duration::from_millis(wait_ms),
            };
            assert_eq!(error.to_string(), format!("too fast; try again in {shown}"));
        }
    }
}
