//! The `chat.Chat` service: New, History, Send and Connect as micro/services defines them,
//! plus Stream and List.
//! Every handler authenticates first, then validates its input, then does the work: an
//! anonymous peer learns nothing about how input is parsed and costs no more than a token
//! lookup.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_core::ids::{ChatId, MessageId, UserId};
use chat_core::proto::chat_server::Chat;
use chat_core::proto::{self, event};
use chat_core::requests::{HistoryQuery, ListQuery, Members, NewMessage, StreamQuery};
use chat_core::wire;
use futures::{Stream, StreamExt};
use tokio::sync::{oneshot, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, check_claim};
use crate::error::ApiError;
use crate::fanout::Broker;
use crate::feed::{Feed, FeedItem, FeedSpec};
use crate::limits::{Limits, StreamSlot};
use crate::store::{ChatSummary, Store};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ChatService {
    pub store: Arc<dyn Store>,
    pub broker: Arc<Broker>,
    pub authenticator: Arc<Authenticator>,
    pub limits: Arc<Limits>,
    pub heartbeat: Duration,
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
        self.limits.new_chat(&caller)?;
        let chat_id = self
            .store
            .create_chat(&members, ChatId::from_random(rand::random()))
            .await?;
        Ok(Response::new(proto::NewResponse {
            chat_id: chat_id.to_string(),
        }))
    }

    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryResponse>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
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
        let message = NewMessage::try_from(request.get_ref()).map_err(ApiError::from)?;
        check_claim(&caller, message.claimed_sender.as_ref(), "user_id")?;
        self.limits.send(&caller)?;
        let stored = self.store.append(&caller, message).await?;
        Ok(Response::new(proto::SendResponse {
            message: Some(stored.to_proto()),
        }))
    }

    type ConnectStream = ResponseStream<proto::Message>;

    async fn connect_chat(
        &self,
        request: Request<Streaming<proto::Message>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
        let (chat, after) = connect_metadata(request.metadata())?;
        self.check_member(&chat, &caller).await?;
        let slot = self.limits.open_stream(&caller)?;
        let feed = self.open_feed(FeedSpec {
            user: caller.clone(),
            chat: Some(chat.clone()),
            after,
            heartbeat: None,
        });

        let (failed, failure) = oneshot::channel();
        tokio::spawn(receive_connect_messages(
            request.into_inner(),
            Arc::clone(&self.store),
            Arc::clone(&self.limits),
            caller,
            chat,
            failed,
        ));
        let outbound = holding(slot, connect_outbound(feed, failure));
        Ok(Response::new(Box::pin(outbound)))
    }

    type StreamStream = ResponseStream<proto::Event>;

    async fn stream(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
        let query = StreamQuery::try_from(request.get_ref()).map_err(ApiError::from)?;
        if let Some(chat) = &query.chat_id {
            self.check_member(chat, &caller).await?;
        }
        let slot = self.limits.open_stream(&caller)?;
        let feed = self.open_feed(FeedSpec {
            user: caller,
            chat: query.chat_id,
            after: query.after,
            heartbeat: Some(self.heartbeat),
        });
        let events = feed_stream(feed).map(|item| {
            let event = match item? {
                FeedItem::Message(message) => event::Event::Message(message.to_proto()),
                FeedItem::Heartbeat(sent_at) => {
                    event::Event::Heartbeat(proto::Heartbeat { sent_at })
                }
            };
            Ok(proto::Event { event: Some(event) })
        });
        Ok(Response::new(Box::pin(holding(slot, events))))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let caller = self.authenticator.caller(request.metadata()).await?;
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
}

impl ChatService {
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

/// Stores each message a Connect client sends, in order. Delivery, the echo to the sender
/// included, happens through the broker like every other message. The first message that
/// cannot be accepted ends the call with its error, since Connect has no per-message errors.
async fn receive_connect_messages(
    mut inbound: Streaming<proto::Message>,
    store: Arc<dyn Store>,
    limits: Arc<Limits>,
    caller: UserId,
    chat: ChatId,
    mut failed: oneshot::Sender<ApiError>,
) {
    loop {
        // Stop reading once the response side is gone (client hung up, the feed ended at
        // shutdown): holding the request stream open would keep the call, and a graceful
        // shutdown, waiting for a client that may never close its side.
        let received = tokio::select! {
            received = inbound.next() => received,
            () = failed.closed() => return,
        };
        let message = match received {
            None => return,
            Some(Ok(message)) => message,
            // A message that cannot be read (not protobuf, over the size limit) ends the call
            // with why; if the client itself went away, nobody hears it, which is fine.
            Some(Err(status)) => {
                let _ = failed.send(ApiError::Unreadable(status));
                return;
            }
        };
        let checked = NewMessage::from_connect(&message, &chat)
            .map_err(ApiError::from)
            .and_then(|message| {
                check_claim(&caller, message.claimed_sender.as_ref(), "user_id")?;
                Ok(message)
            });
        let message = match checked {
            Ok(message) => message,
            Err(error) => {
                let _ = failed.send(error);
                return;
            }
        };
        // Over the send rate, wait rather than fail: while this waits nothing more is read,
        // so flow control pushes back on the client.
        tokio::select! {
            () = limits.send_when_allowed(&caller) => {}
            () = failed.closed() => return,
        }
        if let Err(error) = store.append(&caller, message).await {
            let _ = failed.send(error.into());
            return;
        }
    }
}

/// The messages a Connect client receives: its chat's feed, until the feed ends or an
/// incoming message fails. Ready messages go out before a failure, so every message stored
/// before the failing one is still echoed.
fn connect_outbound(
    feed: Feed,
    failure: oneshot::Receiver<ApiError>,
) -> impl Stream<Item = Result<proto::Message, Status>> {
    futures::stream::unfold(
        (feed, Some(failure), false),
        |(mut feed, mut failure, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let item = match &mut failure {
                    None => feed.next().await?,
                    Some(pending) => tokio::select! {
                        biased;
                        item = feed.next() => item?,
                        outcome = pending => match outcome {
                            Ok(error) => return Some((Err(error.into()), (feed, None, true))),
                            // The client finished sending; keep delivering.
                            Err(_) => {
                                failure = None;
                                continue;
                            }
                        },
                    },
                };
                match item {
                    Ok(FeedItem::Message(message)) => {
                        return Some((Ok(message.to_proto()), (feed, failure, false)));
                    }
                    Ok(FeedItem::Heartbeat(_)) => continue,
                    Err(error) => return Some((Err(error.into()), (feed, None, true))),
                }
            }
        },
    )
}

/// `stream`, holding `slot` (one of the user's open streams) for as long as it lives.
fn holding<S: Stream>(slot: StreamSlot, stream: S) -> impl Stream<Item = S::Item> {
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

fn summary_to_proto(summary: ChatSummary) -> proto::ChatSummary {
    proto::ChatSummary {
        chat_id: summary.chat_id.to_string(),
        user_ids: summary.members.iter().map(ToString::to_string).collect(),
        last_message: summary.last_message.map(|message| message.to_proto()),
        created_at: summary.created_at,
    }
}
