//! Idle streams: many gRPC-web Stream subscriptions, each on its own HTTP/1.1 connection as
//! browser tabs hold them, with nothing to deliver but heartbeats. The server's RSS growth
//! per stream (from /proc/<pid>/status) and its CPU while idle (from /proc/<pid>/stat, over a
//! window that includes heartbeats).
//!
//! The RSS baseline is taken after a few streams have been opened and closed, so that what
//! the first stream initialises once (connection pools, the allocator's arenas) is not
//! charged to every stream.
//!
//! Then the same streams again with each user's tabs sharing one HTTP/2 connection, as the
//! tabs of one browser do when the server is reached over HTTPS (here cleartext HTTP/2, so
//! TLS's own buffers, one set per browser, are not counted): RSS per stream only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_core::proto::Event;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_transport::client::WebClient;
use futures::StreamExt as _;
use tokio::task::JoinSet;

use super::{Context, stop_cleanly};
use crate::client::{Subscription, User, sign_up, subscribe_web, web_chat, web_chat_http2};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess};
use crate::report::{Figure, ScenarioReport, Target};

/// Streams opened at once.
const OPEN_CONCURRENCY: usize = 100;
/// File descriptors the benchmark needs besides one per stream.
const SPARE_FILES: u64 = 500;

#[derive(Debug, Clone)]
struct Params {
    streams: usize,
    users: usize,
    heartbeat_secs: u64,
    /// Streams opened and closed before the baseline.
    warm: usize,
    settle: Duration,
    window: Duration,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                streams: 40,
                users: 4,
                heartbeat_secs: 1,
                warm: 4,
                settle: Duration::from_millis(500),
                window: Duration::from_secs(2),
            }
        } else {
            Self {
                streams: 10_000,
                // Ten tabs per person: enough people that what the server keeps per user
                // (its feed, about 5 KB) is counted, not hidden behind 100 tabs each.
                users: 1_000,
                // The server's default: what idle browsers get in production.
                heartbeat_secs: 15,
                warm: 100,
                settle: Duration::from_secs(3),
                window: Duration::from_secs(30),
            }
        }
    }
}

/// How the streams reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connections {
    /// One HTTP/1.1 connection per stream, as browser tabs hold them over plain HTTP. The
    /// idle CPU is measured in this layout.
    PerStream,
    /// One HTTP/2 connection per user, shared by all their streams, as the tabs of one
    /// browser share it over HTTPS (here cleartext HTTP/2, so TLS's own buffers, one set per
    /// browser, are not counted).
    PerUser,
}

struct Outcome {
    rss_per_stream: f64,
    rss_before: u64,
    rss_after: u64,
    open_seconds: f64,
    /// Client connections the server had open with every stream open.
    connections: usize,
    /// Streams that failed or ended while they should have stayed open.
    broken: Vec<String>,
    /// Measured over the CPU window, with [`Connections::PerStream`] only.
    idle: Option<Idle>,
}

struct Idle {
    cores: f64,
    heartbeats_per_second: f64,
    /// Streams that got no heartbeat at all.
    silent: usize,
}

pub async fn run(ctx: &Context, open_files: u64) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let needed = params.streams as u64 + SPARE_FILES;
    if open_files < needed {
        return Err(BenchError::Setup(format!(
            "the idle scenario needs {needed} open files in this process and in the server, but the limit is {open_files}: raise the hard limit (ulimit -Hn) and run again"
        )));
    }
    let mut report = ScenarioReport::new(
        "idle",
        format!(
            "{} idle gRPC-web Streams ({} users), one HTTP/1.1 connection each, heartbeat every {} s, CPU over {} s",
            params.streams,
            params.users,
            params.heartbeat_secs,
            params.window.as_secs_f64()
        ),
    );
    let mut options = ServerOptions::new(&ctx.server_bin);
    options.heartbeat_secs = params.heartbeat_secs;
    let (http1, http2) = (Connections::PerStream, Connections::PerUser);
    let ceiling = measure(Kind::Ceiling, http1, &options, &params, &mut report).await?;
    let real = measure(Kind::Real, http1, &options, &params, &mut report).await?;
    let ceiling_http2 = measure(Kind::Ceiling, http2, &options, &params, &mut report).await?;
    let real_http2 = measure(Kind::Real, http2, &options, &params, &mut report).await?;
    let (Some(idle), Some(ceiling_idle)) = (&real.idle, &ceiling.idle) else {
        unreachable!("the idle CPU is measured with one connection per stream")
    };

    report.figure(
        Figure::new(
            "server RSS growth per stream",
            "KB",
            real.rss_per_stream / 1024.0,
        )
        .ceiling(Some(ceiling.rss_per_stream / 1024.0))
        .target(Target::AtMost(16.0)),
    );
    report.figure(
        Figure::new("server CPU while idle", "% of a core", idle.cores * 100.0)
            .ceiling(Some(ceiling_idle.cores * 100.0))
            .target(Target::AtMost(2.0)),
    );
    report.figure(
        Figure::new(
            "server RSS growth per stream, tabs sharing HTTP/2",
            "KB",
            real_http2.rss_per_stream / 1024.0,
        )
        .ceiling(Some(ceiling_http2.rss_per_stream / 1024.0))
        .target(Target::AtMost(16.0)),
    );
    report.figure(
        Figure::new("heartbeats received", "1/s", idle.heartbeats_per_second)
            .ceiling(Some(ceiling_idle.heartbeats_per_second)),
    );
    report.figure(
        Figure::new(
            "server RSS with every stream open",
            "MB",
            real.rss_after as f64 / 1e6,
        )
        .ceiling(Some(ceiling.rss_after as f64 / 1e6)),
    );
    report.figure(
        Figure::new("time to open every stream", "s", real.open_seconds)
            .ceiling(Some(ceiling.open_seconds)),
    );
    report.check(
        "every idle stream stayed open and got heartbeats",
        real.broken.is_empty() && idle.silent == 0,
        format!(
            "{}; {} got no heartbeat",
            broken_detail(&real.broken, params.streams),
            idle.silent
        ),
    );
    report.check(
        "every idle stream on a shared HTTP/2 connection stayed open",
        real_http2.broken.is_empty(),
        broken_detail(&real_http2.broken, params.streams),
    );
    report.note(format!(
        "chat-server RSS {:.1} MB before the streams, {:.1} MB with them (KB = 1024 bytes)",
        real.rss_before as f64 / 1e6,
        real.rss_after as f64 / 1e6
    ));
    report.note(format!(
        "HTTP/2: {} streams over {} connections ({} tabs per user); chat-server RSS {:.1} MB with them",
        params.streams,
        real_http2.connections,
        params.streams / params.users,
        real_http2.rss_after as f64 / 1e6
    ));
    Ok(report)
}

async fn measure(
    kind: Kind,
    connections: Connections,
    options: &ServerOptions,
    params: &Params,
    report: &mut ScenarioReport,
) -> Result<Outcome, BenchError> {
    let mut server = ServerProcess::start(kind, options).await?;
    let users = sign_up(server.addr, "idle", params.users).await?;
    // With shared connections, each user's client and its pool are their browser.
    let browsers: Vec<ChatClient<WebClient>> = match connections {
        Connections::PerStream => Vec::new(),
        Connections::PerUser => users.iter().map(|_| web_chat_http2(server.addr)).collect(),
    };

    let warm = open(server.addr, &users, &browsers, params.warm).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.usage()?;

    let opening = Instant::now();
    let subscriptions = open(server.addr, &users, &browsers, params.streams).await?;
    let open_seconds = opening.elapsed().as_secs_f64();
    let counts = Arc::new(Counts::default());
    let mut streams = JoinSet::new();
    for subscription in subscriptions {
        streams.spawn(count_heartbeats(subscription, Arc::clone(&counts)));
    }
    tokio::time::sleep(params.settle).await;
    let after_open = server.usage()?;
    // Every socket but the listener is a client connection.
    let open_connections = open_sockets(server.pid()?).saturating_sub(1);

    let idle = if connections == Connections::PerStream {
        let beats_before = counts.heartbeats.load(Ordering::Relaxed);
        let idle_start = server.usage()?;
        tokio::time::sleep(params.window).await;
        let idle_end = server.usage()?;
        let beats = counts.heartbeats.load(Ordering::Relaxed) - beats_before;
        let beating = usize::try_from(counts.beating.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        Some(Idle {
            cores: idle_start.cores_until(&idle_end),
            heartbeats_per_second: beats as f64
                / idle_end.at.duration_since(idle_start.at).as_secs_f64(),
            silent: params.streams.saturating_sub(beating),
        })
    } else {
        None
    };

    let broken = stop_streams(&mut streams).await;
    drop(browsers);
    stop_cleanly(server, report).await?;

    Ok(Outcome {
        rss_per_stream: after_open.rss_bytes.saturating_sub(before.rss_bytes) as f64
            / params.streams as f64,
        rss_before: before.rss_bytes,
        rss_after: after_open.rss_bytes,
        open_seconds,
        connections: open_connections,
        broken,
        idle,
    })
}

/// Opens `count` gRPC-web streams over every chat of their user, stream `n` as user
/// `n % users`: on a connection of its own, or through that user's browser in `browsers`.
async fn open(
    addr: SocketAddr,
    users: &[User],
    browsers: &[ChatClient<WebClient>],
    count: usize,
) -> Result<Vec<Subscription>, BenchError> {
    let opened: Vec<Result<Subscription, BenchError>> = futures::stream::iter(0..count)
        .map(|n| {
            let user = n % users.len();
            let client = browsers
                .get(user)
                .cloned()
                .unwrap_or_else(|| web_chat(addr));
            async move { subscribe_web(&client, &users[user].token, "").await }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    opened.into_iter().collect()
}

/// The sockets process `pid` has open.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    std::fs::read_link(entry.path())
                        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Ends the streams' readers; returns why each one that had already finished did: an idle
/// stream should still be running, so those broke.
async fn stop_streams(streams: &mut JoinSet<Ended>) -> Vec<String> {
    let mut broken = Vec::new();
    while let Some(joined) = streams.try_join_next() {
        match joined {
            Ok(ended) => broken.push(ended.reason),
            Err(error) => broken.push(format!("panicked: {error}")),
        }
    }
    streams.abort_all();
    while streams.join_next().await.is_some() {}
    broken
}

/// "N of M streams broke (first reason)".
fn broken_detail(broken: &[String], streams: usize) -> String {
    let first = broken
        .first()
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default();
    format!("{} of {streams} streams broke{first}", broken.len())
}

/// Heartbeats seen by all streams together.
#[derive(Default)]
struct Counts {
    heartbeats: AtomicU64,
    /// Streams that have had at least one heartbeat.
    beating: AtomicU64,
}

struct Ended {
    reason: String,
}

/// Reads one stream until it ends, counting heartbeats; returns why it ended.
async fn count_heartbeats(mut subscription: Subscription, counts: Arc<Counts>) -> Ended {
    let mut first = true;
    loop {
        let reason = match subscription.events.message().await {
            Ok(Some(Event {
                event: Some(EventKind::Heartbeat(_)),
            })) => {
                counts.heartbeats.fetch_add(1, Ordering::Relaxed);
                if first {
                    counts.beating.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
                continue;
            }
            Ok(Some(_)) => continue,
            Ok(None) => "the stream ended".to_owned(),
            Err(status) => format!(
                "the stream failed: {:?} {}",
                status.code(),
                status.message()
            ),
        };
        return Ended { reason };
    }
}
