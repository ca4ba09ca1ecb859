//! The only module that makes gRPC calls (through [`crate::grpc_web`], with the message types
//! generated from the proto). It speaks gRPC-web to the server the page came from and turns every failure into an [`ApiError`] a person can read,
//! deciding by the status code and gRPC's standard error details (the reason in `ErrorInfo`,
//! the wait in `RetryInfo`), never by the words of the message.

use chat_core::details::StatusDetails;
use chat_core::ids::MessageId;
use chat_core::proto;
use chat_core::reason::Reason;
use prost::Message;
use tonic::{Code, Status};

use crate::grpc_web;

/// What went wrong, in words for the person using the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The server cannot be reached; worth retrying later.
    Offline,
    /// The session is over (expired, revoked or unknown token): sign in again.
    SignedOut,
    /// Wrong username or password at sign-in.
    WrongCredentials,
    /// The request was refused; the message says why (from the server's validation).
    Refused(String),
    /// Over one of the server's rate limits: the same request may go again after
    /// `retry_after_ms` (the server's `RetryInfo`). `reason` is its sentence.
    Busy { reason: String, retry_after_ms: u64 },
    /// Something broke on the server.
    Server(String),
}

impl ApiError {
    /// Whether sending again later, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::Offline | ApiError::Server(_) | ApiError::Busy { .. }
        )
    }

    fn from_status(status: Status) -> Self {
        let details = StatusDetails::decode(status.details());
        let reason = details
            .error_info
            .and_then(|info| Reason::parse(&info.domain, &info.reason));
        let retry_after_ms = details
            .retry_delay
            .map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        let message = status.message();
        if let (Code::ResourceExhausted, Some(retry_after_ms)) = (status.code(), retry_after_ms) {
            return ApiError::Busy {
                reason: crate::capitalised(message),
                retry_after_ms,
            };
        }
        match status.code() {
            Code::Unauthenticated if reason == Some(Reason::WrongCredentials) => {
                ApiError::WrongCredentials
            }
            Code::Unauthenticated => ApiError::SignedOut,
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange => ApiError::Refused(crate::capitalised(message)),
            // The browser's fetch failed (network down, server gone), or the server is
            // restarting: tonic reports those as UNKNOWN or UNAVAILABLE.
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
                ApiError::Offline
            }
            _ => ApiError::Server(message.to_owned()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Offline => {
                f.write_str("Cannot reach the server. Check your connection; we will keep trying.")
            }
            ApiError::SignedOut => f.write_str("Your session has ended. Please sign in again."),
            ApiError::WrongCredentials => f.write_str("Wrong username or password."),
            ApiError::Refused(reason) | ApiError::Busy { reason, .. } => f.write_str(reason),
            ApiError::Server(_) => f.write_str("The server had a problem. Please try again."),
        }
    }
}

/// A signed-in session as the server issued it. The browser keeps it in its own stored
/// format (`crate::storage`), not as this struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub token: String,
    pub expires_at: i64,
}

/// A client for the server the page was loaded from.
#[derive(Clone)]
pub struct Api {
    base_url: String,
    token: Option<String>,
}

/// The live feed of every chat of the user.
pub struct EventStream(grpc_web::Call);

impl EventStream {
    /// The next event as the server encoded it (`proto::Event`), so the tab holding the
    /// stream can pass it on to the others unchanged; `Ok(None)` when the server ended the
    /// stream cleanly.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        self.0.next_payload().await.map_err(ApiError::from_status)
    }
}

/// An event as [`EventStream::next`] gives it, read: the same code reads the events of the
/// tab's own stream and those another tab passes on.
pub fn decode_event(bytes: &[u8]) -> Result<proto::Event, ApiError> {
    grpc_web::decode(bytes).map_err(ApiError::from_status)
}

impl Api {
    /// A client for `base_url` (scheme, host and port, no trailing slash).
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            token: None,
        }
    }

    /// A client for the page's own origin: the server serves the UI and the API together,
    /// and `trunk serve` proxies the API to it.
    pub fn for_this_page() -> Self {
        let origin = web_sys::window()
            .and_then(|window| window.location().origin().ok())
            .unwrap_or_default();
        Self::new(origin)
    }

    /// The same client, calling as the holder of `session`.
    pub fn signed_in(&self, session: &Session) -> Self {
        Self {
            base_url: self.base_url.clone(),
            token: Some(session.token.clone()),
        }
    }

    pub async fn sign_up(&self, user_id: &str, password: &str) -> Result<Session, ApiError> {
        let credentials = proto::Credentials {
            user_id: user_id.to_owned(),
            password: password.to_owned(),
            device: String::new(),
        };
        let session = self
            .unary::<proto::Session>("/chat.Auth/SignUp", &credentials, false)
            .await
            .map_err(ApiError::from_status)?;
        Ok(session_from(session))
    }

    /// Signs in with the device key this browser keeps for `user_id`, if any.
    pub async fn sign_in(&self, user_id: &str, password: &str) -> Result<Session, ApiError> {
        let credentials = proto::Credentials {
            user_id: user_id.to_owned(),
            password: password.to_owned(),
            device: crate::storage::load_device(user_id).unwrap_or_default(),
        };
        let session = self
            .unary::<proto::Session>("/chat.Auth/SignIn", &credentials, false)
            .await
            .map_err(ApiError::from_status)?;
        Ok(session_from(session))
    }

    pub async fn sign_out(&self) -> Result<(), ApiError> {
        self.unary::<proto::SignOutResponse>("/chat.Auth/SignOut", &proto::SignOutRequest {}, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(())
    }

    /// Revokes every session of this user, on every device, this one included.
    pub async fn sign_out_everywhere(&self) -> Result<(), ApiError> {
        self.unary::<proto::SignOutResponse>(
            "/chat.Auth/SignOutEverywhere",
            &proto::SignOutEverywhereRequest {},
            true,
        )
        .await
        .map_err(ApiError::from_status)?;
        Ok(())
    }

    /// Replaces the password of `user_id`, the signed-in user, with the device key this
    /// browser keeps for them. Every session of the user, this one included, is revoked; the
    /// returned session is the one to go on with.
    pub async fn change_password(
        &self,
        user_id: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<Session, ApiError> {
        let request = proto::ChangePasswordRequest {
            old_password: old_password.to_owned(),
            new_password: new_password.to_owned(),
            device: crate::storage::load_device(user_id).unwrap_or_default(),
        };
        let session = self
            .unary::<proto::Session>("/chat.Auth/ChangePassword", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(session_from(session))
    }

    /// One page of the user's chats, most recently active first: the first page for an empty
    /// `page_token`, otherwise the page after the one that returned it. The second value is
    /// the token of the next page, `None` after the last.
    pub async fn list(
        &self,
        page_token: &str,
    ) -> Result<(Vec<proto::ChatSummary>, Option<String>), ApiError> {
        let request = proto::ListRequest {
            page_token: page_token.to_owned(),
            ..Default::default()
        };
        let response = self
            .unary::<proto::ListResponse>("/chat.Chat/List", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        let next = response.has_more.then_some(response.next_page_token);
        Ok((response.chats, next))
    }

    /// Starts (or finds) the chat of exactly these users; returns its id.
    pub async fn new_chat(&self, user_ids: Vec<String>) -> Result<String, ApiError> {
        let response = self
            .unary::<proto::NewResponse>("/chat.Chat/New", &proto::NewRequest { user_ids }, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(response.chat_id)
    }

    /// Leaves a chat: the user stops being a member (only their own New brings them back).
    pub async fn leave(&self, chat_id: &str) -> Result<(), ApiError> {
        let request = proto::LeaveRequest {
            chat_id: chat_id.to_owned(),
        };
        self.unary::<proto::LeaveResponse>("/chat.Chat/Leave", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(())
    }

    /// Blocks (`true`) or unblocks (`false`) `user_id`: a blocked person cannot start a chat
    /// with the user or add them to one.
    pub async fn set_blocked(&self, user_id: &str, blocked: bool) -> Result<(), ApiError> {
        let request = proto::BlockRequest {
            user_id: user_id.to_owned(),
        };
        let path = if blocked {
            "/chat.Chat/Block"
        } else {
            "/chat.Chat/Unblock"
        };
        let answer = self
            .unary::<proto::BlockResponse>(path, &request, true)
            .await;
        answer.map_err(ApiError::from_status)?;
        Ok(())
    }

    /// Everyone the user blocked, sorted.
    pub async fn blocked(&self) -> Result<Vec<String>, ApiError> {
        let response = self
            .unary::<proto::ListBlockedResponse>(
                "/chat.Chat/ListBlocked",
                &proto::ListBlockedRequest {},
                true,
            )
            .await
            .map_err(ApiError::from_status)?;
        Ok(response.user_ids)
    }

    /// One page of history, oldest first, older than `before` (or the newest page), of
    /// `limit` messages (0: the server's default page).
    pub async fn history(
        &self,
        chat_id: &str,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<proto::HistoryResponse, ApiError> {
        let request = proto::HistoryRequest {
            chat_id: chat_id.to_owned(),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
            before_id: before.map(|id| id.to_string()).unwrap_or_default(),
        };
        let response = self
            .unary::<proto::HistoryResponse>("/chat.Chat/History", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(response)
    }

    /// Sends a message, answering the message `reply_to` when it is given.
    pub async fn send(
        &self,
        chat_id: &str,
        client_id: &str,
        text: &str,
        reply_to: Option<u64>,
    ) -> Result<proto::Message, ApiError> {
        let request = proto::SendRequest {
            client_id: client_id.to_owned(),
            chat_id: chat_id.to_owned(),
            text: text.to_owned(),
            reply_to_id: reply_to.map(|id| id.to_string()).unwrap_or_default(),
            ..Default::default()
        };
        let response = self
            .unary::<proto::SendResponse>("/chat.Chat/Send", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        response
            .message
            .ok_or_else(|| ApiError::Server("Send returned no message".into()))
    }

    /// Replaces the text of one of the user's messages; returns the message as stored.
    pub async fn edit(
        &self,
        chat_id: &str,
        message_id: u64,
        subject: &str,
        text: &str,
    ) -> Result<proto::Message, ApiError> {
        let request = proto::EditRequest {
            chat_id: chat_id.to_owned(),
            message_id: message_id.to_string(),
            subject: subject.to_owned(),
            text: text.to_owned(),
        };
        let response = self
            .unary::<proto::EditResponse>("/chat.Chat/Edit", &request, true)
            .await;
        changed(response.map(|response| response.message))
    }

    /// Deletes one of the user's messages for everyone; returns it as stored (deleted).
    pub async fn delete(&self, chat_id: &str, message_id: u64) -> Result<proto::Message, ApiError> {
        let request = proto::DeleteRequest {
            chat_id: chat_id.to_owned(),
            message_id: message_id.to_string(),
        };
        let response = self
            .unary::<proto::DeleteResponse>("/chat.Chat/Delete", &request, true)
            .await;
        changed(response.map(|response| response.message))
    }

    /// Adds (or with `remove` takes back) the user's reaction; returns the message as stored.
    pub async fn react(
        &self,
        chat_id: &str,
        message_id: u64,
        emoji: &str,
        remove: bool,
    ) -> Result<proto::Message, ApiError> {
        let request = proto::ReactRequest {
            chat_id: chat_id.to_owned(),
            message_id: message_id.to_string(),
            emoji: emoji.to_owned(),
            remove,
        };
        let response = self
            .unary::<proto::ReactResponse>("/chat.Chat/React", &request, true)
            .await;
        changed(response.map(|response| response.message))
    }

    /// One page of the messages of every chat of the user holding the words of `query`,
    /// newest first, after the page `page_token` ends (empty: the first page).
    pub async fn search(
        &self,
        query: &str,
        page_token: &str,
    ) -> Result<proto::SearchResponse, ApiError> {
        let request = proto::SearchRequest {
            query: query.to_owned(),
            page_token: page_token.to_owned(),
            ..Default::default()
        };
        let response = self
            .unary::<proto::SearchResponse>("/chat.Chat/Search", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(response)
    }

    /// Moves the user's read position in `chat_id` forward to `up_to`.
    pub async fn mark_read(&self, chat_id: &str, up_to: u64) -> Result<(), ApiError> {
        let request = proto::MarkReadRequest {
            chat_id: chat_id.to_owned(),
            up_to_id: up_to.to_string(),
        };
        self.unary::<proto::MarkReadResponse>("/chat.Chat/MarkRead", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(())
    }

    /// Tells the other members of `chat_id` that the user is typing.
    pub async fn typing(&self, chat_id: &str) -> Result<(), ApiError> {
        let request = proto::TypingRequest {
            chat_id: chat_id.to_owned(),
        };
        self.unary::<proto::TypingResponse>("/chat.Chat/Typing", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(())
    }

    /// Whether the user keeps their read receipts private.
    pub async fn private_receipts(&self) -> Result<bool, ApiError> {
        let response = self
            .unary::<proto::Settings>(
                "/chat.Chat/GetSettings",
                &proto::GetSettingsRequest {},
                true,
            )
            .await
            .map_err(ApiError::from_status)?;
        Ok(response.private_receipts.unwrap_or(false))
    }

    /// Keeps the user's read receipts private (`true`) or shares them.
    pub async fn set_private_receipts(&self, private: bool) -> Result<bool, ApiError> {
        let request = proto::Settings {
            private_receipts: Some(private),
        };
        let response = self
            .unary::<proto::Settings>("/chat.Chat/UpdateSettings", &request, true)
            .await
            .map_err(ApiError::from_status)?;
        Ok(response.private_receipts.unwrap_or(false))
    }

    /// Opens the one stream of every chat, replaying what came after `after`.
    pub async fn stream(&self, after: Option<u64>) -> Result<EventStream, ApiError> {
        let request = proto::StreamRequest {
            chat_id: String::new(),
            after_id: after.map(|id| id.to_string()).unwrap_or_default(),
        };
        let call = grpc_web::start(
            &self.base_url,
            "/chat.Chat/Stream",
            self.token.as_deref(),
            &request,
        )
        .await
        .map_err(ApiError::from_status)?;
        Ok(EventStream(call))
    }

    /// One unary call to `path`, carrying the bearer token when `authed`.
    async fn unary<R: Message + Default>(
        &self,
        path: &str,
        request: &impl Message,
        authed: bool,
    ) -> Result<R, Status> {
        let payload = self.call(path, request.encode_to_vec(), authed).await?;
        grpc_web::decode(&payload)
    }

    /// What [`Api::unary`] waits for, once for all message types.
    async fn call(&self, path: &str, request: Vec<u8>, authed: bool) -> Result<Vec<u8>, Status> {
        let token = self.token.as_deref().filter(|_| authed);
        grpc_web::start_encoded(&self.base_url, path, token, request)
            .await?
            .unary_payload()
            .await
    }
}

/// The session, once its device key is kept (apart from it: the key outlives the session,
/// see `storage::load_device`).
fn session_from(session: proto::Session) -> Session {
    crate::storage::save_device(&session.user_id, &session.device);
    Session {
        user_id: session.user_id,
        token: session.token,
        expires_at: session.expires_at,
    }
}

/// The message an Edit, Delete or React answered with.
fn changed(response: Result<Option<proto::Message>, Status>) -> Result<proto::Message, ApiError> {
    response
        .map_err(ApiError::from_status)?
        .ok_or_else(|| ApiError::Server("the change returned no message".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tonic_types::{ErrorDetails, StatusExt as _};

    use super::*;

    /// A status as the server builds it: its reason in an `ErrorInfo`, its wait in a
    /// `RetryInfo`.
    fn refusal(code: Code, message: &str, reason: Reason, retry_ms: Option<u64>) -> Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(reason.as_str(), chat_core::reason::DOMAIN, HashMap::new());
        if let Some(millis) = retry_ms {
            details.set_retry_info(Some(Duration::from_millis(millis)));
        }
        Status::with_error_details(code, message, details)
    }

    #[test]
    fn statuses_become_sentences() {
        let refused = ApiError::from_status(Status::invalid_argument(
            "message text is empty: write something to send",
        ));
        assert_eq!(
            refused.to_string(),
            "Message text is empty: write something to send"
        );
        assert_eq!(
            ApiError::from_status(Status::unavailable("shutting down")),
            ApiError::Offline
        );
        assert_eq!(
            ApiError::from_status(Status::unknown("JS API error: TypeError: Failed to fetch")),
            ApiError::Offline
        );
        assert!(!ApiError::Refused("x".into()).is_transient());
        assert!(ApiError::Offline.is_transient());
    }

    #[test]
    fn the_reason_in_the_error_details_decides_not_the_words() {
        let wrong = "wrong username or password";
        assert_eq!(
            ApiError::from_status(refusal(
                Code::Unauthenticated,
                wrong,
                Reason::WrongCredentials,
                None
            )),
            ApiError::WrongCredentials
        );
        // The same words without the reason, or with another, are a session that ended.
        assert_eq!(
            ApiError::from_status(Status::unauthenticated(wrong)),
            ApiError::SignedOut
        );
        assert_eq!(
            ApiError::from_status(refusal(
                Code::Unauthenticated,
                "bad password?",
                Reason::TokenInvalid,
                None
            )),
            ApiError::SignedOut
        );
    }

    #[test]
    fn a_retry_info_makes_a_refusal_worth_waiting_for() {
        let busy = ApiError::from_status(refusal(
            Code::ResourceExhausted,
            "sending too fast; try again in 2 s",
            Reason::SendRate,
            Some(1500),
        ));
        assert_eq!(
            busy,
            ApiError::Busy {
                reason: "Sending too fast; try again in 2 s".into(),
                retry_after_ms: 1500
            }
        );
        assert!(busy.is_transient());
        let queue_full = ApiError::from_status(refusal(
            Code::ResourceExhausted,
            "too many sign-ins at this moment; try again in 0.3 s",
            Reason::SignInQueueFull,
            Some(300),
        ));
        assert!(matches!(
            queue_full,
            ApiError::Busy {
                retry_after_ms: 300,
                ..
            }
        ));
        // Without a wait (too many streams), it is a refusal the person must act on.
        assert!(matches!(
            ApiError::from_status(refusal(
                Code::ResourceExhausted,
                "you already have 16 streams open",
                Reason::TooManyStreams,
                None
            )),
            ApiError::Refused(_)
        ));
    }
}
