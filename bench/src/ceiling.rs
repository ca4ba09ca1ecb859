//! The ceiling server: the same `chat.Chat` and `chat.Auth` methods served through the very
//! transport `chat-server` uses (`chat-transport`: tonic, gRPC-web on the gRPC routes, CORS,
//! the static UI, HTTP/1.1 and HTTP/2 on one port), doing none of the work: no storage, no
//! authentication, no validation. Send numbers the message and hands it to every open
//! stream; History answers a prebuilt page. What it achieves on this machine under a given
//! load is the most any server on this stack could, so each figure of the real server is
//! shown as a ratio to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_core::limits::HISTORY_DEFAULT_PAGE;
use chat_core::proto::auth_server::{Auth, AuthServer};
use chat_core::proto::chat_server::{Chat, ChatServer};
use chat_core::proto::{self, event};
use chat_core::wire;
use chat_transport::{Options, unix_now};
use futures::{Stream, StreamExt as _};
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use crate::error::BenchError;

/// Messages a stream may fall behind before it loses some. The ceiling does not catch up
/// from storage (it has none), so a lagging stream's losses show up as lost messages.
const FEED_CAPACITY: usize = 1024;

/// Text of the messages History answers with, as long as the history scenario's.
pub const PAGE_TEXT: &str = "a message of a long chat, about as long as people write them: ok";

/// `chat-bench ceiling-server`: how the benchmark starts it.
#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Seconds between heartbeat events on idle streams, as the real server's flag.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,
    /// A built web UI to serve at `/`, as the real server does.
    #[arg(long)]
    pub static_dir: Option<PathBuf>,
    /// How many chats List answers with.
    #[arg(long, default_value_t = 0)]
    pub chats: usize,
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(args: CeilingArgs) -> Result<(), BenchError> {
    let (feed, _) = broadcast::channel(FEED_CAPACITY);
    let shared = Arc::new(Shared {
        heartbeat: Duration::from_secs(args.heartbeat_secs),
        chats: args.chats,
        newest: Mutex::new(0),
        feed,
        page: (1..=u64::from(HISTORY_DEFAULT_PAGE))
            .map(|id| message(id, "ceiling", "ceiling", PAGE_TEXT))
            .collect(),
    });
    let chat = ChatServer::new(CeilingChat(Arc::clone(&shared)));
    let others = Routes::new(AuthServer::new(CeilingAuth));
    let app = chat_transport::router(
        chat,
        others,
        tower::layer::util::Identity::new(),
        args.static_dir.as_deref().map(|dir| chat_transport::WebUi {
            dir,
            root_attributes: "",
        }),
    );
    let listener = chat_transport::listen(args.listen)
        .map_err(BenchError::io(format!("cannot listen on {}", args.listen)))?;
    chat_transport::serve(
        listener,
        app,
        chat_transport::shutdown_signal(),
        // Every client of a run comes from 127.0.0.1: the connection caps are lifted, as for
        // chat-server (`process::LIFTED_LIMITS`).
        Options {
            max_connections_per_address: 1_000_000,
            max_connections: 1_000_000,
            ..Options::default()
        },
    )
    .await
    .map_err(|error| BenchError::Setup(format!("ceiling server: {error}")))
}

struct Shared {
    heartbeat: Duration,
    chats: usize,
    /// The last id handed out. Numbering and handing to the streams happen under this one
    /// lock, so every stream sees ids in increasing order, as the real server guarantees.
    newest: Mutex<u64>,
    feed: broadcast::Sender<Arc<proto::Message>>,
    page: Vec<proto::Message>,
}

impl Shared {
    fn publish(&self, mut message: proto::Message) -> proto::Message {
        let mut newest = self.newest.lock();
        *newest += 1;
        message.id = newest.to_string();
        message.sent_at = unix_now();
        // No stream open is not an error.
        let _ = self.feed.send(Arc::new(message.clone()));
        message
    }
}

fn message(id: u64, chat_id: &str, user_id: &str, text: &str) -> proto::Message {
    proto::Message {
        id: id.to_string(),
        client_id: format!("c{id}"),
        chat_id: chat_id.to_owned(),
        user_id: user_id.to_owned(),
        sent_at: unix_now(),
        subject: String::new(),
        text: text.to_owned(),
        ..Default::default()
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

struct CeilingChat(Arc<Shared>);

#[tonic::async_trait]
impl Chat for CeilingChat {
    async fn new_chat(
        &self,
        _request: Request<proto::NewRequest>,
    ) -> Result<Response<proto::NewResponse>, Status> {
        Ok(Response::new(proto::NewResponse {
            chat_id: "ceiling".to_owned(),
        }))
    }

    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryResponse>, Status> {
        let wanted = usize::try_from(request.get_ref().limit).unwrap_or(0);
        let limit = if wanted == 0 {
            self.0.page.len()
        } else {
            wanted.min(self.0.page.len())
        };
        Ok(Response::new(proto::HistoryResponse {
            messages: self.0.page[..limit].to_vec(),
            has_more: true,
        }))
    }

    async fn send(
        &self,
        request: Request<proto::SendRequest>,
    ) -> Result<Response<proto::SendResponse>, Status> {
        let request = request.into_inner();
        let stored = self.0.publish(proto::Message {
            id: String::new(),
            client_id: request.client_id,
            chat_id: request.chat_id,
            user_id: request.user_id,
            sent_at: 0,
            subject: request.subject,
            text: request.text,
            ..Default::default()
        });
        Ok(Response::new(proto::SendResponse {
            message: Some(stored),
        }))
    }

    type ConnectStream = ResponseStream<proto::Message>;

    async fn connect_chat(
        &self,
        request: Request<Streaming<proto::Message>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let chat = request
            .metadata()
            .get(wire::CHAT_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut inbound = request.into_inner();
        let shared = Arc::clone(&self.0);
        let receiver = self.0.feed.subscribe();
        tokio::spawn(async move {
            while let Some(Ok(message)) = inbound.next().await {
                shared.publish(message);
            }
        });
        let outbound = feed(receiver, chat, None).filter_map(|event| async move {
            match event {
                Ok(proto::Event {
                    event: Some(event::Event::Message(message)),
                }) => Some(Ok(message)),
                _ => None,
            }
        });
        Ok(Response::new(Box::pin(outbound)))
    }

    type StreamStream = ResponseStream<proto::Event>;

    async fn stream(
        &self,
        request: Request<proto::StreamRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let heartbeat =
            tokio::time::interval_at(Instant::now() + self.0.heartbeat, self.0.heartbeat);
        let events = feed(
            self.0.feed.subscribe(),
            request.into_inner().chat_id,
            Some(heartbeat),
        );
        Ok(Response::new(Box::pin(events)))
    }

    // Changes to messages are not part of any benchmark scenario: the ceiling refuses them.
    async fn edit(
        &self,
        _request: Request<proto::EditRequest>,
    ) -> Result<Response<proto::EditResponse>, Status> {
        Err(Status::unimplemented("the ceiling server does not edit"))
    }

    async fn delete(
        &self,
        _request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        Err(Status::unimplemented("the ceiling server does not delete"))
    }

    async fn react(
        &self,
        _request: Request<proto::ReactRequest>,
    ) -> Result<Response<proto::ReactResponse>, Status> {
        Err(Status::unimplemented("the ceiling server does not react"))
    }

    // Leaving and blocking are not part of any benchmark scenario either.
    async fn leave(
        &self,
        _request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::LeaveResponse>, Status> {
        Err(Status::unimplemented(
            "the ceiling server does not leave chats",
        ))
    }

    async fn block(
        &self,
        _request: Request<proto::BlockRequest>,
    ) -> Result<Response<proto::BlockResponse>, Status> {
        Err(Status::unimplemented("the ceiling server does not block"))
    }

    async fn unblock(
        &self,
        _request: Request<proto::BlockRequest>,
    ) -> Result<Response<proto::BlockResponse>, Status> {
        Err(Status::unimplemented("the ceiling server does not block"))
    }

    async fn list_blocked(
        &self,
        _request: Request<proto::ListBlockedRequest>,
    ) -> Result<Response<proto::ListBlockedResponse>, Status> {
        Err(Status::unimplemented("the ceiling server does not block"))
    }

    // Read state, typing and settings are not part of any benchmark scenario either.
    async fn mark_read(
        &self,
        _request: Request<proto::MarkReadRequest>,
    ) -> Result<Response<proto::MarkReadResponse>, Status> {
        Err(Status::unimplemented(
            "the ceiling server does not keep read positions",
        ))
    }

    async fn typing(
        &self,
        _request: Request<proto::TypingRequest>,
    ) -> Result<Response<proto::TypingResponse>, Status> {
        Err(Status::unimplemented(
            "the ceiling server does not relay typing",
        ))
    }

    async fn get_settings(
        &self,
        _request: Request<proto::GetSettingsRequest>,
    ) -> Result<Response<proto::Settings>, Status> {
        Err(Status::unimplemented(
            "the ceiling server keeps no settings",
        ))
    }

    async fn update_settings(
        &self,
        _request: Request<proto::Settings>,
    ) -> Result<Response<proto::Settings>, Status> {
        Err(Status::unimplemented(
            "the ceiling server keeps no settings",
        ))
    }

    async fn list(
        &self,
        _request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let chats = (0..self.0.chats)
            .map(|n| proto::ChatSummary {
                chat_id: format!("ceiling-{n}"),
                user_ids: vec!["ceiling".to_owned(), format!("friend-{n}")],
                last_message: self.0.page.last().cloned(),
                created_at: unix_now(),
                ..Default::default()
            })
            .collect();
        // The ceiling serves its few chats as one last page.
        Ok(Response::new(proto::ListResponse {
            chats,
            ..Default::default()
        }))
    }

    async fn search(
        &self,
        request: Request<proto::SearchRequest>,
    ) -> Result<Response<proto::SearchResponse>, Status> {
        // Found without looking: a page of the size asked for, from memory.
        let wanted = usize::try_from(request.get_ref().limit).unwrap_or(0);
        let limit = if wanted == 0 {
            chat_core::limits::SEARCH_DEFAULT_PAGE as usize
        } else {
            wanted
        }
        .min(self.0.page.len());
        Ok(Response::new(proto::SearchResponse {
            messages: self.0.page[..limit].to_vec(),
            next_page_token: "1".to_owned(),
            has_more: true,
            matches: vec![chat_core::proto::Matches::default(); limit],
            // Nothing read: the chats' members are chat-server's work.
            chats: Vec::new(),
        }))
    }
}

/// Published messages of `chat` (every chat when empty), with heartbeats while idle.
fn feed(
    receiver: broadcast::Receiver<Arc<proto::Message>>,
    chat: String,
    heartbeat: Option<Interval>,
) -> impl Stream<Item = Result<proto::Event, Status>> + Send + 'static {
    let heartbeat = heartbeat.map(|mut interval| {
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    futures::stream::unfold(
        (receiver, chat, heartbeat),
        |(mut receiver, chat, mut heartbeat)| async move {
            loop {
                let tick = async {
                    match &mut heartbeat {
                        Some(interval) => interval.tick().await,
                        None => std::future::pending().await,
                    }
                };
                let event = tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(message) if chat.is_empty() || message.chat_id == chat => {
                            if let Some(interval) = &mut heartbeat {
                                interval.reset();
                            }
                            event::Event::Message((*message).clone())
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = tick => event::Event::Heartbeat(proto::Heartbeat { sent_at: unix_now() }),
                };
                let item = Ok(proto::Event { event: Some(event) });
                return Some((item, (receiver, chat, heartbeat)));
            }
        },
    )
}

struct CeilingAuth;

#[tonic::async_trait]
impl Auth for CeilingAuth {
    async fn sign_up(
        &self,
        request: Request<proto::Credentials>,
    ) -> Result<Response<proto::Session>, Status> {
        Ok(Response::new(session(request.into_inner().user_id)))
    }

    async fn sign_in(
        &self,
        request: Request<proto::Credentials>,
    ) -> Result<Response<proto::Session>, Status> {
        Ok(Response::new(session(request.into_inner().user_id)))
    }

    async fn sign_out(
        &self,
        _request: Request<proto::SignOutRequest>,
    ) -> Result<Response<proto::SignOutResponse>, Status> {
        Ok(Response::new(proto::SignOutResponse {}))
    }

    async fn sign_out_everywhere(
        &self,
        _request: Request<proto::SignOutEverywhereRequest>,
    ) -> Result<Response<proto::SignOutResponse>, Status> {
        Ok(Response::new(proto::SignOutResponse {}))
    }

    // The ceiling server keeps no accounts: a password change is a fresh session.
    async fn change_password(
        &self,
        _request: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::Session>, Status> {
        Ok(Response::new(session("ceiling".to_owned())))
    }
}

fn session(user_id: String) -> proto::Session {
    proto::Session {
        user_id,
        token: "ceiling".to_owned(),
        expires_at: unix_now() + 24 * 3600,
        device: String::new(),
    }
}
