//! Allocations per Send: the heap allocations chat-server makes for one acknowledged unary
//! Send into SQLite, counted by the server itself. It needs a server built with the
//! `count-allocations` feature, whose `/metrics` then carries the process's running totals of
//! allocations and bytes; the figure is the difference between two scrapes around a fixed
//! number of Sends, divided by that number. Unlike throughput this does not depend on what
//! else the machine is doing, so it can be compared across runs on a busy machine.
//!
//! Two phases after a warm-up (connections open, caches filled, buffers grown): one sender
//! back to back, which is the cost of a Send alone, then many senders at once, where the
//! writer commits Sends in groups and shares some of its work between them. The load
//! generator is another process, so none of its allocations are counted.

use std::net::SocketAddr;

use chat_core::proto::SendRequest;
use chat_core::proto::chat_client::ChatClient;
use tonic::transport::Channel;

use super::{Context, stop_cleanly};
use crate::client::{User, native_channel, new_chat, send, sign_up};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess};
use crate::report::{Figure, ScenarioReport, Target};
use crate::scrape::Scrape;

/// The same 100-character message as the send scenario's.
const TEXT: &str = "durable send benchmark: a message of about one hundred characters, as people type in chats......";

/// The most allocations one Send may make (the product's target).
const TARGET_PER_SEND: f64 = 25.0;

#[derive(Debug, Clone, Copy)]
struct Params {
    /// Sends before counting, on every connection that will be measured.
    warmup: usize,
    /// Sends counted with one sender.
    alone: usize,
    /// Senders at once in the second phase, each on its own HTTP/2 connection.
    senders: usize,
    /// Sends counted per sender in the second phase.
    each: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                warmup: 20,
                alone: 100,
                senders: 8,
                each: 20,
            }
        } else {
            Self {
                warmup: 200,
                alone: 5_000,
                senders: 64,
                each: 100,
            }
        }
    }
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "allocations",
        format!(
            "heap allocations per acknowledged unary Send into SQLite, counted by a chat-server built with --features count-allocations: {} Sends from one sender, then {} × {} from {} at once",
            params.alone, params.senders, params.each, params.senders
        ),
    );
    let options = ServerOptions {
        metrics: true,
        ..ServerOptions::new(&ctx.server_bin)
    };
    let server = ServerProcess::start(Kind::Real, &options).await?;
    let metrics = server
        .metrics_addr
        .ok_or_else(|| BenchError::Setup("chat-server was started without metrics".into()))?;
    let users = sign_up(server.addr, "counted", 2).await?;
    let setup = native_channel(server.addr).await?;
    let chat_id = new_chat(&setup, &users[0], users.iter().map(|u| u.id.clone())).await?;
    let mut senders = Vec::with_capacity(params.senders);
    for n in 0..params.senders {
        senders.push(Sender {
            label: format!("s{n}"),
            chat: ChatClient::new(native_channel(server.addr).await?),
            user: users[n % users.len()].clone(),
            chat_id: chat_id.clone(),
            sent: 0,
        });
    }

    // Every connection warms up at once, so the second phase starts warm too.
    sends_at_once(&mut senders, params.warmup).await?;

    let before = Totals::scrape(metrics).await?;
    senders[0].send_many(params.alone).await?;
    let alone = Totals::scrape(metrics).await?.since(before, params.alone);

    let before = Totals::scrape(metrics).await?;
    sends_at_once(&mut senders, params.each).await?;
    let together = Totals::scrape(metrics)
        .await?
        .since(before, params.senders * params.each);

    report.figure(
        Figure::new(
            "allocations per Send, one sender",
            "count",
            alone.allocations,
        )
        .target(Target::AtMost(TARGET_PER_SEND)),
    );
    report.figure(Figure::new(
        "bytes allocated per Send, one sender",
        "B",
        alone.bytes,
    ));
    report.figure(Figure::new(
        format!("allocations per Send, {} senders at once", params.senders),
        "count",
        together.allocations,
    ));
    report.figure(Figure::new(
        format!(
            "bytes allocated per Send, {} senders at once",
            params.senders
        ),
        "B",
        together.bytes,
    ));
    report.note(
        "counts include everything the process did meanwhile (one metrics scrape, timers); \
         realloc counts as an allocation of its new size",
    );
    stop_cleanly(server, &mut report).await?;
    Ok(report)
}

/// One connection's sender, numbering its messages so every Send is a new message.
struct Sender {
    label: String,
    chat: ChatClient<Channel>,
    user: User,
    chat_id: String,
    sent: u64,
}

impl Sender {
    async fn send_many(&mut self, count: usize) -> Result<(), BenchError> {
        for _ in 0..count {
            let request = SendRequest {
                client_id: format!("{}-{}", self.label, self.sent),
                chat_id: self.chat_id.clone(),
                text: TEXT.to_owned(),
                ..Default::default()
            };
            send(&mut self.chat, &self.user.token, request).await?;
            self.sent += 1;
        }
        Ok(())
    }
}

/// `count` Sends back to back from every sender, all senders at once.
async fn sends_at_once(senders: &mut [Sender], count: usize) -> Result<(), BenchError> {
    futures::future::try_join_all(senders.iter_mut().map(|sender| sender.send_many(count)))
        .await
        .map(drop)
}

/// The counting allocator's totals at one scrape.
#[derive(Debug, Clone, Copy)]
struct Totals {
    allocations: u64,
    bytes: u64,
}

/// Per Send, between two scrapes.
struct PerSend {
    allocations: f64,
    bytes: f64,
}

impl Totals {
    /// Reads `/metrics` and picks the two totals out of it.
    async fn scrape(addr: SocketAddr) -> Result<Self, BenchError> {
        let scrape = Scrape::of(addr).await?;
        let total = |name: &str| {
            scrape.value(name).map(|value| value as u64).ok_or_else(|| {
                BenchError::Setup(format!(
                    "chat-server's /metrics has no {name}: build it with `cargo build --release -p chat-server --features count-allocations`"
                ))
            })
        };
        Ok(Self {
            allocations: total("chat_allocations_total")?,
            bytes: total("chat_allocated_bytes_total")?,
        })
    }

    fn since(self, before: Totals, sends: usize) -> PerSend {
        let sends = sends.max(1) as f64;
        PerSend {
            allocations: self.allocations.saturating_sub(before.allocations) as f64 / sends,
            bytes: self.bytes.saturating_sub(before.bytes) as f64 / sends,
        }
    }
}
