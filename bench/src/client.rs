//! The load generator's clients, as real users' programs would hold them: the generated tonic
//! client over native gRPC (HTTP/2), and over gRPC-web on HTTP/1.1 with one TCP connection per
//! client, as a browser tab has. Every call the benchmark makes goes through [`within`], so no
//! wait is unbounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chat_core::proto::auth_client::AuthClient;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{Credentials, Event, NewRequest, SendRequest, StreamRequest};
use chat_core::wire::authed;
use chat_transport::client::{Http, WebClient, web_client};
use futures::StreamExt as _;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint};

use crate::error::BenchError;

/// The longest a single call may take before the run fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Every benchmark account's password (valid, so sign-up costs its real argon2 hash).
pub const PASSWORD: &str = "benchmark password";

/// How many sign-ups run at once: each is an argon2 hash on the server's blocking pool.
const SIGN_UP_CONCURRENCY: usize = 4;

/// How a subscriber reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// gRPC-web on HTTP/1.1, one TCP connection per stream: what a browser tab does.
    Web,
    /// Native gRPC on HTTP/2, one connection per stream: separate native apps.
    Native,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Web => "gRPC-web (HTTP/1.1)",
            Transport::Native => "native gRPC (HTTP/2)",
        })
    }
}

/// Awaits `future` for at most `limit`.
pub async fn within<T>(
    what: impl Into<String>,
    limit: Duration,
    future: impl Future<Output = T>,
) -> Result<T, BenchError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| BenchError::Timeout {
            what: what.into(),
            limit,
        })
}

/// Awaits a tonic call for at most [`CALL_TIMEOUT`] and unwraps its response.
pub async fn call<T>(
    what: &str,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, BenchError> {
    within(what, CALL_TIMEOUT, future)
        .await?
        .map(tonic::Response::into_inner)
        .map_err(|status| BenchError::rpc(what, &status))
}

/// A new HTTP/2 connection of its own.
pub async fn native_channel(addr: SocketAddr) -> Result<Channel, BenchError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|error| BenchError::Connect {
            addr: addr.to_string(),
            source: error,
        })?
        .tcp_nodelay(true)
        .connect_timeout(CALL_TIMEOUT);
    within(
        format!("connecting to {addr}"),
        CALL_TIMEOUT,
        endpoint.connect(),
    )
    .await?
    .map_err(|source| BenchError::Connect {
        addr: addr.to_string(),
        source,
    })
}

/// A gRPC-web client with its own HTTP/1.1 connection pool: each stream it opens holds a
/// TCP connection of its own, as a browser tab's does.
pub fn web_chat(addr: SocketAddr) -> ChatClient<WebClient> {
    let (service, origin) = web_client(addr, Http::Http1);
    ChatClient::with_origin(service, origin)
}

/// A gRPC-web client whose calls share one HTTP/2 connection (cleartext, prior knowledge), as
/// the tabs of one browser share one when they reach the server over HTTPS.
pub fn web_chat_http2(addr: SocketAddr) -> ChatClient<WebClient> {
    let (service, origin) = web_client(addr, Http::Http2);
    ChatClient::with_origin(service, origin)
}

/// Sends `request` as the holder of `token`; returns the id the server gave the message.
pub async fn send(
    chat: &mut ChatClient<Channel>,
    token: &str,
    request: SendRequest,
) -> Result<u64, BenchError> {
    let reply = call("Send", chat.send(authed(token, request))).await?;
    reply
        .message
        .and_then(|message| message.id.parse::<u64>().ok())
        .ok_or_else(|| BenchError::Setup("Send replied without a numeric message id".into()))
}

/// A signed-up account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// Signs up `prefix-0`, `prefix-1`, ... (`count` accounts), a few at a time.
pub async fn sign_up(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
) -> Result<Vec<User>, BenchError> {
    let auth = AuthClient::new(native_channel(addr).await?);
    let users = futures::stream::iter(0..count)
        .map(|n| {
            let mut auth = auth.clone();
            async move {
                let id = format!("{prefix}-{n}");
                let session = call(
                    "SignUp",
                    auth.sign_up(Credentials {
                        user_id: id.clone(),
                        password: PASSWORD.to_owned(),
                        device: String::new(),
                    }),
                )
                .await?;
                Ok::<_, BenchError>(User {
                    id: session.user_id,
                    token: session.token,
                })
            }
        })
        .buffered(SIGN_UP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    users.into_iter().collect()
}

/// Creates (or finds) the chat of `members`, as `creator`.
pub async fn new_chat(
    channel: &Channel,
    creator: &User,
    members: impl IntoIterator<Item = String>,
) -> Result<String, BenchError> {
    let request = NewRequest {
        user_ids: members.into_iter().collect(),
    };
    let response = call(
        "New",
        ChatClient::new(channel.clone()).new_chat(authed(&creator.token, request)),
    )
    .await?;
    Ok(response.chat_id)
}

/// An open Stream and what keeps its connection alive.
pub struct Subscription {
    pub events: Streaming<Event>,
    /// The HTTP/2 connection of a native subscription; gRPC-web connections live in the
    /// response body itself.
    _channel: Option<Channel>,
}

/// A Stream of `chat_id` (empty: every chat) from now on.
fn stream_request(chat_id: &str) -> StreamRequest {
    StreamRequest {
        chat_id: chat_id.to_owned(),
        after_id: String::new(),
    }
}

/// Resumes a Stream of `chat_id` through `client` with the cursor of a reconnecting client:
/// everything after message `after_id` first, then live.
pub async fn resume_web(
    client: &ChatClient<WebClient>,
    token: &str,
    chat_id: &str,
    after_id: u64,
) -> Result<Subscription, BenchError> {
    let request = StreamRequest {
        chat_id: chat_id.to_owned(),
        after_id: after_id.to_string(),
    };
    let events = call(
        "Stream (gRPC-web, resumed)",
        client.clone().stream(authed(token, request)),
    )
    .await?;
    Ok(Subscription {
        events,
        _channel: None,
    })
}

/// Opens a gRPC-web Stream through `client` (and whatever connection its pool gives it) and
/// waits for its response headers.
pub async fn subscribe_web(
    client: &ChatClient<WebClient>,
    token: &str,
    chat_id: &str,
) -> Result<Subscription, BenchError> {
    let events = call(
        "Stream (gRPC-web)",
        client
            .clone()
            .stream(authed(token, stream_request(chat_id))),
    )
    .await?;
    Ok(Subscription {
        events,
        _channel: None,
    })
}

/// Opens a Stream on a connection of its own and waits for its response headers: once they
/// are in, the server has subscribed the stream to new messages.
pub async fn subscribe(
    addr: SocketAddr,
    transport: Transport,
    token: &str,
    chat_id: &str,
) -> Result<Subscription, BenchError> {
    match transport {
        Transport::Web => subscribe_web(&web_chat(addr), token, chat_id).await,
        Transport::Native => {
            let channel = native_channel(addr).await?;
            let events = call(
                "Stream (native)",
                ChatClient::new(channel.clone()).stream(authed(token, stream_request(chat_id))),
            )
            .await?;
            Ok(Subscription {
                events,
                _channel: Some(channel),
            })
        }
    }
}
