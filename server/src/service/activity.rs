//! The `chat.Chat` handlers about reading and typing — MarkRead, Typing, GetSettings and
//! UpdateSettings — kept apart from the message handlers in `chat.rs`, which delegates here.
//! Like every handler they authenticate first, then validate with `chat-core`, then act; what
//! they tell other streams goes out as signals (`signals.rs`), never through the store.

use chat_core::activity::{ReadMark, SettingsChange, TYPING_SHOWN_MS, TypingIn};
use chat_core::proto::{self, event::Event};
use tonic::{Request, Response, Status};

use super::chat::ChatService;
use crate::error::ApiError;

impl ChatService {
    pub(super) async fn handle_mark_read(
        &self,
        request: Request<proto::MarkReadRequest>,
    ) -> Result<Response<proto::MarkReadResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let mark = ReadMark::try_from(request.get_ref()).map_err(ApiError::from)?;
        let moved = self
            .store
            .mark_read(&caller, &mark.chat_id, mark.up_to)
            .await
            .map_err(ApiError::from)?;
        if moved.moved {
            // The caller's own devices always hear of it (their badges); the others only
            // when the caller shares receipts.
            let recipients = if moved.private {
                vec![caller.clone()]
            } else {
                moved.members
            };
            let event = Event::ReadPosition(proto::ReadPosition {
                chat_id: mark.chat_id.to_string(),
                user_id: caller.to_string(),
                up_to_id: moved.position.to_string(),
            });
            self.signals.send(recipients, event).await;
        }
        Ok(Response::new(proto::MarkReadResponse {
            up_to_id: moved.position.to_string(),
        }))
    }

    pub(super) async fn handle_typing(
        &self,
        request: Request<proto::TypingRequest>,
    ) -> Result<Response<proto::TypingResponse>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
        let TypingIn(chat) = TypingIn::try_from(request.get_ref()).map_err(ApiError::from)?;
        self.limits.typing(&caller)?;
        let members = self
            .store
            .members_of(&chat, &caller)
            .await
            .map_err(ApiError::from)?;
        let others = members
            .into_iter()
            .filter(|member| *member != caller)
            .collect();
        let event = Event::Typing(proto::TypingEvent {
            chat_id: chat.to_string(),
            user_id: caller.to_string(),
            expires_in_ms: i32::try_from(TYPING_SHOWN_MS).unwrap_or(i32::MAX),
        });
        self.signals.send(others, event).await;
        Ok(Response::new(proto::TypingResponse {}))
    }

    pub(super) async fn handle_get_settings(
        &self,
        request: Request<proto::GetSettingsRequest>,
    ) -> Result<Response<proto::Settings>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let settings = self.store.settings(&caller).await.map_err(ApiError::from)?;
        Ok(Response::new(settings.to_proto()))
    }

    pub(super) async fn handle_update_settings(
        &self,
        request: Request<proto::Settings>,
    ) -> Result<Response<proto::Settings>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let change = SettingsChange::from(request.get_ref());
        let settings = self
            .store
            .update_settings(&caller, change)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(settings.to_proto()))
    }
}
