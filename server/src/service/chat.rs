//! The `chat.Chat` service: New, History, Send and Connect as micro/services defines them,
//! plus Stream, List, Search, Leave, Block, Unblock and ListBlocked, and the changes to sent
//! messages: Edit, Delete and React; the handlers about reading and typing are in
//! `activity.rs`.
//! Every handler authenticates first, then validates its input, then does the work: an
//! anonymous peer learns nothing about how input is parsed and costs no more than a token
//! lookup. Stream and Connect stay open, so they also end (UNAUTHENTICATED) when their token is
//! revoked or expires, and Connect re-checks the token before it stores each message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::proto::chat_server::Chat;
use chat_core::proto::{self, event};
use chat_core::requests::{
    BlockTarget, Edit, HistoryQuery, LeaveChat, ListQuery, Members, MessageRef, NewMessage,
    ReactionChange, StreamQuery,
};
use chat_core::search::{self, SearchQuery};
use chat_core::wire;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, check_claim};
use crate::error::ApiError;
use crate::fanout::Broker;
use crate::feed::{Feed, FeedItem, FeedSpec};
use crate::limits::{Limits, StreamSlot};
use crate::membership::Departures;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::signals::Signals;
use crate::store::{Change, ChatSummary, Store, StoredEvent, StoredMessage, TokenHash};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ChatService {
    pub store: Arc<dyn Store>,
    pub departures: Arc<Departures>,
    pub broker: Arc<Broker>,
    pub authenticator: Arc<Authenticator>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    /// Where events that are not messages go (read positions, typing, presence, members).
    pub signals: Arc<Signals>,
    pub presence: Arc<Presence>,
    pub heartbeat: Duration,
    /// Chats one user may belong to; New refuses to go past it.
    pub max_chats_per_user: u32,
    /// Becomes true when the server starts shutting down; open streams then end.
    pub shutdown: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Chat for ChatService {
    async fn new_chat(
        &self,
        request: Request<proto::NewRequest>,
    ) -> Result<Response<proto::NewResponse>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
        let members = Members::try_from(request.get_ref()).map_err(ApiError::from)?;
        if !members.contains(&caller) {
            return Err(ApiError::InvalidRequest(format!(
                "user_ids must include you (\"{caller}\"): a chat is started by one of its members"
            ))
            .into());
        }
        self.limits.new_chat(&caller).await?;
        if let Some(user) = self
            .store
            .member_at_chat_cap(&caller, &members, self.max_chats_per_user)
            .await?
        {
            return Err(ApiError::TooManyChats {
                caller: user == caller,
                user,
                cap: self.max_chats_per_user,
            }
            .into());
        }
        let (chat_id, present) = self
            .store
            .create_chat(&caller, &members, ChatId::from_random(rand::random()))
            .await?;
        // Introduced are the members the chat has now: New does not bring back those who left
        // it (unless the caller is one), and they hear nothing of its people.
        self.presence.introduce(&caller, &present.members).await;
        // Everyone's list shows the chat at once, as a reload would, and the people in it
        // learn that someone who had left is back.
        self.signals.members_changed(&chat_id, &present, None).await;
        Ok(Response::new(proto::NewResponse {
            chat_id: chat_id.to_string(),
        }))
    }

    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let query = HistoryQuery::try_from(request.get_ref()).map_err(ApiError::from)?;
        let page = self.store.history(&caller, &query).await?;
        Ok(Response::new(proto::HistoryResponse {
            messages: page
                .messages
                .iter()
                .map(|message| message.to_proto())
                .collect(),
            has_more: page.has_more,
        }))
    }

    async fn send(
        &self,
        request: Request<proto::SendRequest>,
    ) -> Result<Response<proto::SendResponse>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
        let message = NewMessage::try_from(request.into_inner()).map_err(ApiError::from)?;
        check_claim(&caller, message.claimed_sender.as_ref(), "user_id")?;
        self.limits.send(&caller).await?;
        let stored = self.store.append(caller, message).await?;
        Ok(Response::new(proto::SendResponse {
            message: Some(stored.into_proto()),
        }))
    }

    type ConnectStream = ResponseStream<proto::Message>;

    async fn connect_chat(
        &self,
        request: Request<Streaming<proto::Message>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (caller, token) = self.authenticator.session(request.metadata()).await?;
        let (chat, after) = connect_metadata(request.metadata())?;
        self.check_member(&chat, &caller).await?;
        let slot = self.limits.open_stream(&caller).await?;
        let online = self.presence.opened(&caller);
        let feed = self.open_feed(FeedSpec {
            user: caller.clone(),
            chat: Some(chat.clone()),
            after,
            heartbeat: None,
        });

        // Small: the receiving side waits (and so stops reading) while the sending side is
        // behind, which is the flow control a slow reader should meet.
        let (outcomes, outcome) = mpsc::channel(4);
        let revoked = first_of(
            self.authenticator.until_revoked(caller.clone(), token),
            self.departures
                .until_left(caller.clone(), Some(chat.clone())),
        );
        tokio::spawn(receive_connect_messages(
            request.into_inner(),
            revoked,
            ConnectCall {
                store: Arc::clone(&self.store),
                limits: Arc::clone(&self.limits),
                authenticator: Arc::clone(&self.authenticator),
                caller,
                token,
                chat,
                feed_starts_after: feed.starts_after(),
            },
            outcomes,
        ));
        let outbound = holding((slot, online), connect_outbound(feed, outcome));
        Ok(Response::new(Box::pin(outbound)))
    }

    type StreamStream = ResponseStream<proto::Event>;

    async fn stream(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let (caller, token) = self.authenticator.session(request.metadata()).await?;
        let query = StreamQuery::try_from(request.get_ref()).map_err(ApiError::from)?;
        if let Some(chat) = &query.chat_id {
            self.check_member(chat, &caller).await?;
        }
        let slot = self.limits.open_stream(&caller).await?;
        let online = self.presence.opened(&caller);
        let ended = first_of(
            self.authenticator.until_revoked(caller.clone(), token),
            self.departures
                .until_left(caller.clone(), query.chat_id.clone()),
        );
        // Presence is not replayed with the messages: a Stream of every chat starts with the
        // current presence of everyone who shares a chat with the caller. The feed subscribes
        // to the broker before that is read, so a change made meanwhile still arrives after it.
        let mut feed = self.open_feed(FeedSpec {
            user: caller.clone(),
            chat: query.chat_id.clone(),
            after: query.after,
            heartbeat: Some(self.heartbeat),
        });
        if query.chat_id.is_none() {
            feed.open_with(self.presence.snapshot(&caller).await?);
        }
        let events = feed_stream(feed).map(|item| {
            let event = match item? {
                FeedItem::Event(event) => stream_event(&event),
                FeedItem::Heartbeat(sent_at) => {
                    event::Event::Heartbeat(proto::Heartbeat { sent_at })
                }
                FeedItem::Signal(signal) => return Ok(signal.to_proto()),
            };
            Ok(proto::Event { event: Some(event) })
        });
        Ok(Response::new(Box::pin(holding(
            (slot, online),
            ending_when(events, ended),
        ))))
    }

    async fn edit(
        &self,
        request: Request<proto::EditRequest>,
    ) -> Result<Response<proto::EditResponse>, Status> {
        let message = self
            .change(request.metadata(), || {
                Edit::try_from(request.get_ref()).map(Change::Edit)
            })
            .await?;
        Ok(Response::new(proto::EditResponse {
            message: Some(message),
        }))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        let message = self
            .change(request.metadata(), || {
                MessageRef::try_from(request.get_ref()).map(Change::Delete)
            })
            .await?;
        Ok(Response::new(proto::DeleteResponse {
            message: Some(message),
        }))
    }

    async fn react(
        &self,
        request: Request<proto::ReactRequest>,
    ) -> Result<Response<proto::ReactResponse>, Status> {
        let message = self
            .change(request.metadata(), || {
                ReactionChange::try_from(request.get_ref()).map(Change::React)
            })
            .await?;
        Ok(Response::new(proto::ReactResponse {
            message: Some(message),
        }))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let query = ListQuery::try_from(request.get_ref()).map_err(ApiError::from)?;
        let page = self.store.chats_of(&caller, &query).await?;
        Ok(Response::new(proto::ListResponse {
            chats: page.chats.into_iter().map(summary_to_proto).collect(),
            has_more: page.next.is_some(),
            next_page_token: page
                .next
                .map(|cursor| cursor.to_token())
                .unwrap_or_default(),
        }))
    }

    async fn leave(
        &self,
        request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::LeaveResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let leave = LeaveChat::try_from(request.get_ref()).map_err(ApiError::from)?;
        let members = self.departures.leave(&leave.chat_id, &caller).await?;
        self.signals
            .members_changed(&leave.chat_id, &members, Some(&caller))
            .await;
        Ok(Response::new(proto::LeaveResponse {}))
    }

    async fn block(
        &self,
        request: Request<proto::BlockRequest>,
    ) -> Result<Response<proto::BlockResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let target =
            BlockTarget::parse(&caller, &request.get_ref().user_id).map_err(ApiError::from)?;
        self.store.block(&caller, &target.user_id).await?;
        tracing::info!(user = %caller, blocked = %target.user_id, "blocked");
        Ok(Response::new(proto::BlockResponse {}))
    }

    async fn unblock(
        &self,
        request: Request<proto::BlockRequest>,
    ) -> Result<Response<proto::BlockResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let target =
            BlockTarget::parse(&caller, &request.get_ref().user_id).map_err(ApiError::from)?;
        self.store.unblock(&caller, &target.user_id).await?;
        Ok(Response::new(proto::BlockResponse {}))
    }

    async fn list_blocked(
        &self,
        request: Request<proto::ListBlockedRequest>,
    ) -> Result<Response<proto::ListBlockedResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let blocked = self.store.blocked_by(&caller).await?;
        Ok(Response::new(proto::ListBlockedResponse {
            user_ids: blocked.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn search(
        &self,
        request: Request<proto::SearchRequest>,
    ) -> Result<Response<proto::SearchResponse>, Status> {
        let caller = self.budgeted_caller(request.metadata()).await?;
        let query = SearchQuery::try_from(request.get_ref()).map_err(ApiError::from)?;
        let page = self.store.search(&caller, &query).await?;
        let next_page_token = match (page.has_more, page.messages.last()) {
            (true, Some(last)) => search::next_page_token(last.id),
            _ => String::new(),
        };
        let messages: Vec<proto::Message> =
            page.messages.iter().map(StoredMessage::to_proto).collect();
        let chats = self.members_of_found(&caller, &page.messages).await?;
        Ok(Response::new(proto::SearchResponse {
            matches: messages
                .iter()
                .map(|message| search::matches(&message.subject, &message.text, &query.terms))
                .collect(),
            messages,
            has_more: page.has_more,
            next_page_token,
            chats,
        }))
    }

    async fn mark_read(
        &self,
        request: Request<proto::MarkReadRequest>,
    ) -> Result<Response<proto::MarkReadResponse>, Status> {
        self.handle_mark_read(request).await
    }

    async fn typing(
        &self,
        request: Request<proto::TypingRequest>,
    ) -> Result<Response<proto::TypingResponse>, Status> {
        self.handle_typing(request).await
    }

    async fn get_settings(
        &self,
        request: Request<proto::GetSettingsRequest>,
    ) -> Result<Response<proto::Settings>, Status> {
        self.handle_get_settings(request).await
    }

    async fn update_settings(
        &self,
        request: Request<proto::Settings>,
    ) -> Result<Response<proto::Settings>, Status> {
        self.handle_update_settings(request).await
    }
}

impl ChatService {
    /// The caller of a call budgeted by [`Limits::call`] (reads, read marks, settings,
    /// Leave, Block, Unblock), counted against that budget once the token is good.
    pub(super) async fn budgeted_caller(&self, metadata: &MetadataMap) -> Result<UserId, Status> {
        let caller = self.authenticator.caller(metadata).await?;
        self.limits.call(&caller)?;
        Ok(caller)
    }

    /// Edit, Delete and React: validated, then counted against the caller's send rate, then
    /// applied by the store, which checks membership and ownership.
    async fn change(
        &self,
        metadata: &MetadataMap,
        change: impl FnOnce() -> Result<Change, chat_core::ValidationError>,
    ) -> Result<proto::Message, Status> {
        let caller = self.authenticator.caller(metadata).await?;
        let change = change().map_err(ApiError::from)?;
        self.limits.send(&caller).await?;
        Ok(self.store.change(&caller, change).await?.to_proto())
    }

    /// The members of each chat that `found` messages come from, once per chat, in the order
    /// the chats first appear. A chat the caller has left since the search read it is left
    /// out.
    async fn members_of_found(
        &self,
        caller: &UserId,
        found: &[StoredMessage],
    ) -> Result<Vec<proto::ChatMembers>, ApiError> {
        let mut chats: Vec<ChatId> = Vec::new();
        for message in found {
            if !chats.contains(&message.chat_id) {
                chats.push(message.chat_id.clone());
            }
        }
        let named = self.store.members_of_chats(chats, caller).await?;
        Ok(named
            .into_iter()
            .map(|(chat, members)| proto::ChatMembers {
                chat_id: chat.to_string(),
                user_ids: members.iter().map(ToString::to_string).collect(),
                // No news of a change: nothing a client should order by.
                version: 0,
            })
            .collect())
    }

    async fn check_member(&self, chat: &ChatId, user: &UserId) -> Result<(), ApiError> {
        if self.store.is_member(chat, user).await? {
            Ok(())
        } else {
            Err(ApiError::ChatNotFound)
        }
    }

    fn open_feed(&self, spec: FeedSpec) -> Feed {
        Feed::open(
            Arc::clone(&self.store),
            &self.broker,
            spec,
            self.shutdown.clone(),
            Arc::clone(&self.metrics),
        )
    }
}

/// The chat (`chat-id`, required) and optional resume point (`after-id`) of a Connect call.
fn connect_metadata(metadata: &MetadataMap) -> Result<(ChatId, Option<MessageId>), ApiError> {
    let text = |key: &str| -> Result<&str, ApiError> {
        match metadata.get(key) {
            None => Ok(""),
            Some(value) => value
                .to_str()
                .map_err(|_| ApiError::InvalidRequest(format!("{key} metadata must be ASCII"))),
        }
    };
    let chat = text(wire::CHAT_ID)?;
    if chat.is_empty() {
        return Err(ApiError::InvalidRequest(format!(
            "{} metadata is required: the id of the chat to connect to",
            wire::CHAT_ID
        )));
    }
    Ok((
        ChatId::parse(chat)?,
        MessageId::parse_optional(wire::AFTER_ID, text(wire::AFTER_ID)?)?,
    ))
}

/// What the receiving side of a Connect call works with.
struct ConnectCall {
    store: Arc<dyn Store>,
    limits: Arc<Limits>,
    authenticator: Arc<Authenticator>,
    caller: UserId,
    token: TokenHash,
    chat: ChatId,
    /// Where the call's feed starts: a stored message at or below it never reaches the
    /// sender through the feed.
    feed_starts_after: MessageId,
}

/// What the receiving side of a Connect call tells the sending side, besides the feed.
enum Outcome {
    /// A repeat (same client id) of a message stored before this call's feed started: the
    /// feed will not deliver it, so it is echoed here, as the acknowledgement the client is
    /// waiting for.
    Repeat(StoredMessage),
    /// The call must end with this error.
    Failed(ApiError),
}

/// Stores each message a Connect client sends, in order. Delivery, the echo to the sender
/// included, happens through the broker like every other message; only a repeat of a message
/// stored before the call began is echoed directly. The first message that cannot be
/// accepted ends the call with its error, since Connect has no per-message errors, and so does
/// the revocation of the call's token, even after the client finished sending.
async fn receive_connect_messages(
    mut inbound: Streaming<proto::Message>,
    revoked: impl Future<Output = ApiError>,
    call: ConnectCall,
    outcomes: mpsc::Sender<Outcome>,
) {
    tokio::pin!(revoked);
    let failed = |error: ApiError| {
        let outcomes = outcomes.clone();
        async move {
            let _ = outcomes.send(Outcome::Failed(error)).await;
        }
    };
    loop {
        // Stop reading once the response side is gone (client hung up, the feed ended at
        // shutdown): holding the request stream open would keep the call, and a graceful
        // shutdown, waiting for a client that may never close its side.
        let received = tokio::select! {
            received = inbound.next() => received,
            error = &mut revoked => return failed(error).await,
            () = outcomes.closed() => return,
        };
        let message = match received {
            // The client finished sending; the call goes on delivering until its token is
            // revoked or the client hangs up.
            None => {
                tokio::select! {
                    error = &mut revoked => failed(error).await,
                    () = outcomes.closed() => {}
                }
                return;
            }
            Some(Ok(message)) => message,
            // A message that cannot be read (not protobuf, over the size limit) ends the call
            // with why; if the client itself went away, nobody hears it, which is fine.
            Some(Err(status)) => return failed(ApiError::Unreadable(status)).await,
        };
        let checked = NewMessage::from_connect(&message, &call.chat)
            .map_err(ApiError::from)
            .and_then(|message| {
                check_claim(&call.caller, message.claimed_sender.as_ref(), "user_id")?;
                Ok(message)
            });
        let message = match checked {
            Ok(message) => message,
            Err(error) => return failed(error).await,
        };
        // Over the send rate, wait rather than fail: while this waits nothing more is read,
        // so flow control pushes back on the client.
        tokio::select! {
            () = call.limits.send_when_allowed(&call.caller) => {}
            () = outcomes.closed() => return,
        }
        // The token is read again before every write, as Send reads it on every call: the
        // periodic check ends the call, this one makes sure nothing is stored in between.
        match call.authenticator.still_valid(call.token).await {
            Ok(true) => {}
            Ok(false) => {
                return failed(ApiError::Unauthenticated(
                    "your token was signed out or expired while this call was open: sign in again",
                ))
                .await;
            }
            Err(error) => return failed(error).await,
        }
        match call.store.append(call.caller.clone(), message).await {
            Ok(stored) if stored.id <= call.feed_starts_after => {
                if outcomes.send(Outcome::Repeat(stored)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(error) => return failed(error.into()).await,
        }
    }
}

/// The messages a Connect client receives: its chat's feed and the echoes of repeats, until
/// the feed ends or the receiving side reports a failure. Ready messages go out before a
/// failure, so every message stored before the failing one is still echoed.
fn connect_outbound(
    feed: Feed,
    outcome: mpsc::Receiver<Outcome>,
) -> impl Stream<Item = Result<proto::Message, Status>> {
    futures::stream::unfold(
        (feed, Some(outcome), false),
        |(mut feed, mut outcome, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let item = match &mut outcome {
                    None => feed.next().await?,
                    Some(pending) => tokio::select! {
                        biased;
                        item = feed.next() => item?,
                        received = pending.recv() => match received {
                            Some(Outcome::Repeat(message)) => {
                                return Some((Ok(message.to_proto()), (feed, outcome, false)));
                            }
                            Some(Outcome::Failed(error)) => {
                                return Some((Err(error.into()), (feed, None, true)));
                            }
                            // The receiving side is done without a failure.
                            None => {
                                outcome = None;
                                continue;
                            }
                        },
                    },
                };
                match item {
                    Ok(FeedItem::Event(event)) if !event.is_change() => {
                        return Some((Ok(event.message.to_proto()), (feed, outcome, false)));
                    }
                    // Connect carries messages only (its wire type is `Message`): changes
                    // reach its clients through History, and signals are Stream's alone.
                    Ok(FeedItem::Event(_) | FeedItem::Heartbeat(_) | FeedItem::Signal(_)) => {
                        continue;
                    }
                    Err(error) => return Some((Err(error.into()), (feed, None, true))),
                }
            }
        },
    )
}

/// Whichever of two ends comes first (a revoked token, leaving the chat).
async fn first_of(
    one: impl Future<Output = ApiError> + Send + 'static,
    other: impl Future<Output = ApiError> + Send + 'static,
) -> ApiError {
    tokio::select! {
        error = one => error,
        error = other => error,
    }
}

/// `stream`, ended with the error `end` resolves to once it does.
fn ending_when<S, T>(
    stream: S,
    end: impl Future<Output = ApiError> + Send + 'static,
) -> impl Stream<Item = Result<T, Status>>
where
    S: Stream<Item = Result<T, Status>> + Send + 'static,
{
    futures::stream::unfold(
        Some((Box::pin(stream), Box::pin(end))),
        |state| async move {
            let (mut stream, mut end) = state?;
            tokio::select! {
                biased;
                error = &mut end => Some((Err(error.into()), None)),
                item = stream.next() => {
                    let item = item?;
                    Some((item, Some((stream, end))))
                }
            }
        },
    )
}

/// `stream`, holding `slot` (one of the user's open streams, and its count in presence) for
/// as long as it lives.
fn holding<S: Stream>(
    slot: (StreamSlot, crate::presence::Online),
    stream: S,
) -> impl Stream<Item = S::Item> {
    stream.map(move |item| {
        let _held = &slot;
        item
    })
}

fn feed_stream(feed: Feed) -> impl Stream<Item = Result<FeedItem, Status>> {
    futures::stream::unfold(feed, |mut feed| async move {
        let item = feed.next().await?;
        Some((item.map_err(Status::from), feed))
    })
}

/// A Stream event: a message's arrival as `Event.message`, a change as `Event.change` with
/// its own id (the cursor) and the message's state.
fn stream_event(event: &StoredEvent) -> event::Event {
    if event.is_change() {
        event::Event::Change(proto::Change {
            id: event.id.to_string(),
            message: Some(event.message.to_proto()),
        })
    } else {
        event::Event::Message(event.message.to_proto())
    }
}

fn summary_to_proto(summary: ChatSummary) -> proto::ChatSummary {
    proto::ChatSummary {
        receipts: summary.reading.receipts_to_proto(summary.chat_id.as_str()),
        chat_id: summary.chat_id.to_string(),
        user_ids: summary.members.iter().map(ToString::to_string).collect(),
        left_user_ids: summary.left.iter().map(ToString::to_string).collect(),
        members_version: summary.members_version,
        last_message: summary.last_message.map(|message| message.to_proto()),
        created_at: summary.created_at,
        unread_count: i64::try_from(summary.reading.unread).unwrap_or(i64::MAX),
        read_up_to_id: summary
            .reading
            .up_to
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}
