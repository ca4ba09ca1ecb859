//! The API's error type and its one mapping to `tonic::Status`. Internal causes are logged
//! here and never sent to clients. Refusals a program must tell apart (wrong credentials, a
//! rate limit, a full queue) carry gRPC's standard error details: an `ErrorInfo` with a
//! [`Reason`], and a `RetryInfo` when waiting helps.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chat_core::ValidationError;
use chat_core::ids::UserId;
use chat_core::limits::BLOCKED_MAX;
use chat_core::reason::{self, Reason};
use chat_core::wire;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::store::StoreError;

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("wrong username or password")]
    WrongCredentials,
    /// A missing, malformed, unknown, expired or revoked token, in words.
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    /// Also what non-members get, so they cannot tell a foreign chat from a missing one.
    #[error("chat not found")]
    ChatNotFound,
    /// No such message in the chat, or a deleted one where only a living one will do.
    #[error("message not found")]
    MessageNotFound,
    /// A change the message's state does not allow (edit window, reaction limits).
    #[error("{0}")]
    NotAllowed(String),
    #[error("no account named \"{0}\"")]
    NoSuchAccount(UserId),
    #[error(
        "\"{0}\" is no longer here (the account is deactivated): a chat with them would reach \
         nobody"
    )]
    AccountDeactivated(UserId),
    /// Also what a reply to a message of another chat gets, whether that chat exists or not.
    #[error("the message you reply to is not in this chat (or was deleted)")]
    ReplyNotFound,
    #[error("the username \"{0}\" is taken; choose another")]
    AccountExists(UserId),
    #[error("the server is shutting down; reconnect and resume with after_id")]
    ShuttingDown,
    /// A rate limit or a full queue (see `limits`, `password`): wait, then try again.
    #[error("{limit}; try again in {:.1} s", tenths_up(*retry_after))]
    RateLimited { limit: Limit, retry_after: Duration },
    #[error(
        "you already have {0} streams open, the most one account may have: close one \
         (each open app tab holds one)"
    )]
    TooManyStreams(usize),
    /// New would put a member (`caller`: the one calling) in more chats than the quota.
    #[error("{}", chat_quota_sentence(.user, *.caller, *.cap))]
    TooManyChats {
        user: UserId,
        caller: bool,
        cap: u32,
    },
    /// New between the caller and `user`, one of whom blocked the other (`by_caller`: the
    /// caller did).
    #[error("{}", blocked_sentence(.user, *.by_caller))]
    Blocked { user: UserId, by_caller: bool },
    #[error(
        "you already blocked {BLOCKED_MAX} accounts, the most one account may block: unblock          someone first"
    )]
    TooManyBlocked,
    #[error("{0}")]
    Unavailable(String),
    /// A message on a client stream that could not be read, with the transport's status.
    #[error("cannot read your message: {}", .0.message())]
    Unreadable(tonic::Status),
    #[error("internal error")]
    Internal(String),
}

/// Which limit a refused call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The user's messages per second (the configured rate).
    SendRate(u32),
    /// The user's New calls per minute (the configured rate).
    NewChatRate(u32),
    /// The user's Typing calls (`chat_core::activity`'s rate).
    TypingRate,
    /// The user's other calls per second (the configured rate; see `Limits::call`).
    CallRate(u32),
    /// Failed sign-ins of the account, as seen from the caller's address.
    AccountSignIns,
    /// Sign-in and sign-up attempts from the caller's address.
    AddressSignIns,
    /// SignOut calls from the caller's address.
    AddressSignOuts,
    /// Sign-in and sign-up attempts waiting for the password hashing to be free.
    SignInQueue,
}

impl Limit {
    fn reason(self) -> Reason {
        match self {
            Limit::SendRate(_) => Reason::SendRate,
            Limit::NewChatRate(_) => Reason::NewChatRate,
            Limit::TypingRate => Reason::TypingRate,
            Limit::CallRate(_) => Reason::CallRate,
            Limit::AccountSignIns => Reason::AccountThrottled,
            Limit::AddressSignIns | Limit::AddressSignOuts => Reason::AddressThrottled,
            Limit::SignInQueue => Reason::SignInQueueFull,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::SendRate(rate) => {
                write!(f, "you are sending more than {rate} messages per second")
            }
            Limit::NewChatRate(rate) => {
                write!(f, "you are starting more than {rate} chats per minute")
            }
            Limit::TypingRate => f.write_str("you are saying you are typing too often"),
            Limit::CallRate(rate) => write!(
                f,
                "you are making more than {rate} requests per second (reading history, \
                 listing chats, searching, marking read, ...)"
            ),
            Limit::AccountSignIns => f.write_str("too many failed sign-ins for this account"),
            Limit::AddressSignIns => f.write_str("too many sign-in attempts from your address"),
            Limit::AddressSignOuts => f.write_str("too many sign-outs from your address"),
            Limit::SignInQueue => f.write_str("too many sign-ins at this moment"),
        }
    }
}

fn chat_quota_sentence(user: &UserId, caller: bool, cap: u32) -> String {
    if caller {
        format!("you are already in {cap} chats, the most one account may be in")
    } else {
        format!(
            "\"{user}\" is already in {cap} chats, the most one account may be in: \
             start the chat without them"
        )
    }
}

fn blocked_sentence(user: &UserId, by_caller: bool) -> String {
    if by_caller {
        format!("you blocked \"{user}\": unblock them first to start a chat with them")
    } else {
        format!("\"{user}\" does not accept chats from you")
    }
}

/// Seconds rounded up to a tenth, so a wait of 40 ms reads "0.1 s", never "0.0 s".
fn tenths_up(wait: Duration) -> f64 {
    ((wait.as_secs_f64() * 10.0).ceil() / 10.0).max(0.1)
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::ChatNotFound => Self::ChatNotFound,
            StoreError::MessageNotFound => Self::MessageNotFound,
            StoreError::NotYours(sentence) => Self::PermissionDenied(sentence.to_owned()),
            StoreError::NotAllowed(sentence) => Self::NotAllowed(sentence),
            StoreError::NoSuchAccount(user) => Self::NoSuchAccount(user),
            StoreError::AccountDeactivated(user) => Self::AccountDeactivated(user),
            StoreError::ReplyNotFound => Self::ReplyNotFound,
            StoreError::AccountExists(user) => Self::AccountExists(user),
            StoreError::Blocked { user, by_caller } => Self::Blocked { user, by_caller },
            StoreError::TooManyBlocked => Self::TooManyBlocked,
            StoreError::MessageNotInChat(id) => Self::InvalidRequest(format!(
                "up_to_id {id} is not a message of this chat: mark read up to a message you \
                 received in it"
            )),
            StoreError::Unavailable(cause) | StoreError::InUse(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Invalid(error) => Status::invalid_argument(error.to_string()),
            ApiError::InvalidRequest(message) => Status::invalid_argument(message),
            error @ ApiError::WrongCredentials => refusal(
                Code::Unauthenticated,
                &error,
                Reason::WrongCredentials,
                None,
            ),
            ref error @ ApiError::Unauthenticated(_) => {
                refusal(Code::Unauthenticated, error, Reason::TokenInvalid, None)
            }
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            error @ (ApiError::ChatNotFound
            | ApiError::MessageNotFound
            | ApiError::NoSuchAccount(_)
            | ApiError::ReplyNotFound) => Status::not_found(error.to_string()),
            ApiError::NotAllowed(sentence) => Status::failed_precondition(sentence),
            error @ ApiError::AccountDeactivated(_) => {
                Status::failed_precondition(error.to_string())
            }
            error @ ApiError::AccountExists(_) => Status::already_exists(error.to_string()),
            error @ ApiError::ShuttingDown => Status::unavailable(error.to_string()),
            ref error @ ApiError::TooManyStreams(_) => {
                refusal(Code::ResourceExhausted, error, Reason::TooManyStreams, None)
            }
            ref error @ ApiError::TooManyChats { .. } => {
                refusal(Code::ResourceExhausted, error, Reason::TooManyChats, None)
            }
            ref error @ ApiError::Blocked { .. } => {
                refusal(Code::PermissionDenied, error, Reason::Blocked, None)
            }
            ref error @ ApiError::TooManyBlocked => {
                refusal(Code::ResourceExhausted, error, Reason::TooManyBlocked, None)
            }
            ApiError::Unreadable(ref status) => Status::new(status.code(), error.to_string()),
            ApiError::RateLimited { limit, retry_after } => refusal(
                Code::ResourceExhausted,
                &error,
                limit.reason(),
                Some(retry_after),
            ),
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

/// A status with `error`'s sentence, its `reason` in an `ErrorInfo` and, when waiting helps,
/// the wait in a `RetryInfo` and in the `retry-after-ms` metadata (whole milliseconds, at
/// least one, the same figure in both).
fn refusal(code: Code, error: &ApiError, reason: Reason, retry_after: Option<Duration>) -> Status {
    let wait_ms =
        retry_after.map(|wait| u64::try_from(wait.as_millis().max(1)).unwrap_or(u64::MAX));
    let mut details = ErrorDetails::new();
    details.set_error_info(reason.as_str(), reason::DOMAIN, HashMap::new());
    if let Some(millis) = wait_ms {
        details.set_retry_info(Some(Duration::from_millis(millis)));
    }
    let mut status = Status::with_error_details(code, error.to_string(), details);
    // Browsers may read this header too (see `http`).
    if let Some(millis) = wait_ms
        && let Ok(value) = millis.to_string().parse()
    {
        status.metadata_mut().insert(wire::RETRY_AFTER_MS, value);
    }
    status
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
                limit: Limit::SendRate(3),
                retry_after: Duration::from_millis(wait_ms),
            };
            assert_eq!(
                error.to_string(),
                format!("you are sending more than 3 messages per second; try again in {shown}")
            );
        }
    }
}
