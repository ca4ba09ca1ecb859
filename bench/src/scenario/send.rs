//! Durable send: many clients at once doing unary Send over native gRPC (HTTP/2), each reply
//! meaning the message is committed to SQLite on disk. Messages acknowledged per second and
//! the latency of one Send, against the ceiling server's unary throughput under the same load.
//!
//! Both servers run side by side and take turns: a slice of load on the ceiling, a slice on
//! chat-server, and again, so a busy moment of the machine (builds, other tests) falls on both
//! rather than on whichever happened to run then. Afterwards chat-server is killed with
//! SIGKILL and restarted, and acknowledged messages are looked up: an acknowledgement must
//! mean the message survives a crash.
//!
//! Where chat-server's time goes is reported too: its writer thread's CPU apart from the
//! rest, and, from its `/metrics`, how many messages a commit holds and how long commits take,
//! which bounds what the writer alone could acknowledge a second.

use std::time::{Duration, Instant};

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{HistoryRequest, SendRequest};
use chat_core::wire::authed;
use rand::seq::IndexedRandom as _;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{Context, stop_cleanly};
use crate::client::{CALL_TIMEOUT, User, call, native_channel, new_chat, send, sign_up, within};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess, Usage};
use crate::report::{Figure, ScenarioReport, Target};
use crate::scrape::Scrape;
use crate::stats::Latencies;

/// The name of chat-server's writer thread (`server/src/store/sqlite/writer.rs`).
const WRITER_THREAD: &str = "sqlite-writer";

/// The send path's targets, as issue #14 sets them against the ceiling in the same run.
struct SendTargets {
    /// Acknowledged Sends per second, at least this share of the ceiling's.
    throughput: f64,
    /// The Send latency's p99, at most this multiple of the ceiling's.
    p99: f64,
    /// Server CPU per acknowledged message, at most this multiple of the ceiling's.
    cpu_per_message: f64,
}

const SEND_TARGETS: SendTargets = SendTargets {
    throughput: 0.75,
    p99: 2.0,
    cpu_per_message: 1.5,
};

/// A message of ordinary length (100 characters).
const TEXT: &str = "durable send benchmark: a message of about one hundred characters, as people type in chats......";

#[derive(Debug, Clone)]
struct Params {
    senders: usize,
    users: usize,
    /// Turns each server gets.
    rounds: usize,
    /// Load before each measured slice, so connections and caches are warm.
    warmup: Duration,
    slice: Duration,
    /// Acknowledged messages looked up after the crash, besides each sender's last one.
    verify_sample: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                senders: 8,
                users: 2,
                rounds: 1,
                warmup: Duration::from_millis(300),
                slice: Duration::from_secs(1),
                verify_sample: 20,
            }
        } else {
            Self {
                senders: 64,
                users: 8,
                rounds: 3,
                warmup: Duration::from_secs(1),
                slice: Duration::from_secs(5),
                verify_sample: 500,
            }
        }
    }
}

/// One server under test, with its accounts, chat and one connection per sender.
struct Side {
    server: ServerProcess,
    users: Vec<User>,
    chat_id: String,
    channels: Vec<Channel>,
    /// Every acknowledged id, per sender and slice.
    acked: Vec<Vec<u64>>,
    in_window: u64,
    measured: Duration,
    latencies: Latencies,
    server_cpu: Duration,
    bench_cpu: Duration,
    /// chat-server's writer thread's share of `server_cpu`.
    writer_cpu: Duration,
    /// chat-server's commits, from its `/metrics` (none for the ceiling).
    commits: Commits,
}

/// What chat-server's writer did: messages committed, commits, and time inside them.
#[derive(Debug, Clone, Copy, Default)]
struct Commits {
    messages: f64,
    count: f64,
    seconds: f64,
}

impl Commits {
    async fn scrape(server: &ServerProcess) -> Result<Option<Self>, BenchError> {
        let Some(addr) = server.metrics_addr else {
            return Ok(None);
        };
        let scrape = Scrape::of(addr).await?;
        let value = |name: &str| {
            scrape
                .value(name)
                .ok_or_else(|| BenchError::Setup(format!("chat-server's /metrics has no {name}")))
        };
        Ok(Some(Self {
            messages: value("chat_store_commit_batch_size_sum")?,
            count: value("chat_store_commit_batch_size_count")?,
            seconds: value("chat_store_commit_duration_seconds_sum")?,
        }))
    }

    fn add_since(&mut self, before: Commits, after: Commits) {
        self.messages += after.messages - before.messages;
        self.count += after.count - before.count;
        self.seconds += after.seconds - before.seconds;
    }
}

impl Side {
    async fn start(
        kind: Kind,
        options: &ServerOptions,
        params: &Params,
    ) -> Result<Self, BenchError> {
        let server = ServerProcess::start(kind, options).await?;
        let users = sign_up(server.addr, "sender", params.users).await?;
        let setup = native_channel(server.addr).await?;
        let chat_id = new_chat(&setup, &users[0], users.iter().map(|u| u.id.clone())).await?;
        let mut channels = Vec::with_capacity(params.senders);
        for _ in 0..params.senders {
            channels.push(native_channel(server.addr).await?);
        }
        Ok(Self {
            server,
            users,
            chat_id,
            channels,
            acked: Vec::new(),
            in_window: 0,
            measured: Duration::ZERO,
            latencies: Latencies::with_capacity(1 << 16),
            server_cpu: Duration::ZERO,
            bench_cpu: Duration::ZERO,
            writer_cpu: Duration::ZERO,
            commits: Commits::default(),
        })
    }

    /// CPU time so far of the writer thread (none on the ceiling).
    fn writer_cpu_so_far(&mut self) -> Result<Duration, BenchError> {
        Ok(self
            .server
            .thread_cpu()?
            .get(WRITER_THREAD)
            .copied()
            .unwrap_or_default())
    }

    /// CPU per acknowledged message in the measured windows, in µs.
    fn per_message_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.in_window.max(1) as f64
    }

    fn per_second(&self) -> f64 {
        self.in_window as f64 / self.measured.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn cores(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.measured.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Every sender sends back to back through warm-up and one measured slice.
    async fn slice(&mut self, round: usize, params: &Params) -> Result<(), BenchError> {
        let start = Instant::now() + Duration::from_millis(100);
        let window = (start + params.warmup, start + params.warmup + params.slice);
        let tasks: Vec<_> = self
            .channels
            .iter()
            .enumerate()
            .map(|(n, channel)| {
                let user = self.users[n % self.users.len()].clone();
                let label = format!("r{round}-s{n}");
                tokio::spawn(sender(
                    label,
                    ChatClient::new(channel.clone()),
                    user,
                    self.chat_id.clone(),
                    start,
                    window,
                ))
            })
            .collect();

        tokio::time::sleep_until(window.0.into()).await;
        let (server_before, bench_before) = (self.server.usage()?, Usage::of_self()?);
        let writer_before = self.writer_cpu_so_far()?;
        let commits_before = Commits::scrape(&self.server).await?;
        tokio::time::sleep_until(window.1.into()).await;
        let (server_after, bench_after) = (self.server.usage()?, Usage::of_self()?);
        let writer_after = self.writer_cpu_so_far()?;
        let commits_after = Commits::scrape(&self.server).await?;
        self.server_cpu += server_after.cpu.saturating_sub(server_before.cpu);
        self.bench_cpu += bench_after.cpu.saturating_sub(bench_before.cpu);
        self.writer_cpu += writer_after.saturating_sub(writer_before);
        if let (Some(before), Some(after)) = (commits_before, commits_after) {
            self.commits.add_since(before, after);
        }
        self.measured += server_after.at.duration_since(server_before.at);

        for task in tasks {
            let mut result = join_sender(task).await?;
            self.latencies.append(&mut result.latencies);
            self.in_window += result.in_window;
            self.acked.push(result.acked);
        }
        Ok(())
    }
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "send",
        format!(
            "{} concurrent senders ({} users), unary Send over native gRPC into SQLite on disk; {} turns of {} s on each server",
            params.senders,
            params.users,
            params.rounds,
            params.slice.as_secs_f64()
        ),
    );
    let options = ServerOptions::new(&ctx.server_bin);
    let mut ceiling = Side::start(Kind::Ceiling, &options, &params).await?;
    let with_metrics = ServerOptions {
        metrics: true,
        ..options
    };
    let mut real = Side::start(Kind::Real, &with_metrics, &params).await?;
    for round in 0..params.rounds {
        ceiling.slice(round, &params).await?;
        real.slice(round, &params).await?;
    }

    report.figure(
        Figure::new(
            "acknowledged messages per second",
            "msg/s",
            real.per_second(),
        )
        .ceiling(Some(ceiling.per_second()))
        .target(Target::RatioAtLeast(SEND_TARGETS.throughput)),
    );
    for p in [50.0, 99.0] {
        let latency = Figure::new(
            format!("Send latency p{p}"),
            "ms",
            real.latencies.percentile_ms(p),
        )
        .ceiling(Some(ceiling.latencies.percentile_ms(p)));
        report.figure(if p == 99.0 {
            latency.target(Target::RatioAtMost(SEND_TARGETS.p99))
        } else {
            latency
        });
    }
    report.figure(
        Figure::new(
            "server CPU while loaded",
            "cores",
            real.cores(real.server_cpu),
        )
        .ceiling(Some(ceiling.cores(ceiling.server_cpu))),
    );
    report.figure(
        Figure::new(
            "server CPU per message",
            "µs",
            real.per_message_us(real.server_cpu),
        )
        .ceiling(Some(ceiling.per_message_us(ceiling.server_cpu)))
        .target(Target::RatioAtMost(SEND_TARGETS.cpu_per_message)),
    );
    report.figure(Figure::new(
        "… of it on the writer thread",
        "µs",
        real.per_message_us(real.writer_cpu),
    ));
    report.figure(
        Figure::new(
            "… the rest (ceiling: all of its own)",
            "µs",
            real.per_message_us(real.server_cpu.saturating_sub(real.writer_cpu)),
        )
        .ceiling(Some(ceiling.per_message_us(ceiling.server_cpu))),
    );
    let commits = real.commits;
    report.figure(Figure::new(
        "messages per commit",
        "count",
        commits.messages / commits.count.max(1.0),
    ));
    report.figure(Figure::new(
        "the writer's time inside commits, per message",
        "µs",
        commits.seconds * 1e6 / commits.messages.max(1.0),
    ));
    // If the writer never waited for work: what its commits alone allow, beside what the
    // ceiling acknowledged. Everything else in a Send comes on top.
    report.figure(
        Figure::new(
            "most the writer could commit",
            "msg/s",
            commits.messages / commits.seconds.max(f64::MIN_POSITIVE),
        )
        .ceiling(Some(ceiling.per_second())),
    );
    report.figure(
        Figure::new("load generator CPU", "cores", real.cores(real.bench_cpu))
            .ceiling(Some(ceiling.cores(ceiling.bench_cpu))),
    );

    stop_cleanly(ceiling.server, &mut report).await?;
    verify_after_crash(
        &mut real.server,
        &real.users,
        &real.chat_id,
        &real.acked,
        params.verify_sample,
        &mut report,
    )
    .await?;
    stop_cleanly(real.server, &mut report).await?;
    Ok(report)
}

pub(super) struct SenderResult {
    pub(super) latencies: Latencies,
    pub(super) in_window: u64,
    /// The ids of every message acknowledged, in the order sent.
    pub(super) acked: Vec<u64>,
}

/// One client sending back to back from `start` until the window ends; counts and times the
/// replies that arrive inside the window.
pub(super) async fn sender(
    label: String,
    mut chat: ChatClient<Channel>,
    user: User,
    chat_id: String,
    start: Instant,
    (window_start, end): (Instant, Instant),
) -> Result<SenderResult, BenchError> {
    tokio::time::sleep_until(start.into()).await;
    let mut result = SenderResult {
        latencies: Latencies::with_capacity(4096),
        in_window: 0,
        acked: Vec::with_capacity(4096),
    };
    for seq in 0u64.. {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let request = SendRequest {
            client_id: format!("{label}-{seq}"),
            chat_id: chat_id.clone(),
            text: TEXT.to_owned(),
            ..Default::default()
        };
        let id = send(&mut chat, &user.token, request).await?;
        let done = Instant::now();
        if done >= window_start && done <= end {
            result.in_window += 1;
            result.latencies.push(done - sent);
        }
        result.acked.push(id);
    }
    Ok(result)
}

/// Waits for a task running [`sender`], bounded in time.
pub(super) async fn join_sender(
    task: JoinHandle<Result<SenderResult, BenchError>>,
) -> Result<SenderResult, BenchError> {
    within("a sender to finish", CALL_TIMEOUT * 2, task)
        .await?
        .map_err(|error| BenchError::Setup(format!("a sender panicked: {error}")))?
}

/// Kills the server without warning, restarts it on the same database, and looks up every
/// sender's last acknowledged message and a random sample of the others.
async fn verify_after_crash(
    server: &mut ServerProcess,
    users: &[User],
    chat_id: &str,
    acked: &[Vec<u64>],
    sample: usize,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    server.crash_and_restart().await?;
    let mut wanted: Vec<u64> = acked.iter().filter_map(|ids| ids.last().copied()).collect();
    let all: Vec<u64> = acked.iter().flatten().copied().collect();
    wanted.extend(all.choose_multiple(&mut rand::rng(), sample).copied());
    let mut chat = ChatClient::new(native_channel(server.addr).await?);
    let mut missing = Vec::new();
    for id in &wanted {
        let request = HistoryRequest {
            chat_id: chat_id.to_owned(),
            limit: 1,
            before_id: (id + 1).to_string(),
        };
        let page = call("History", chat.history(authed(&users[0].token, request))).await?;
        if page.messages.first().map(|m| m.id.as_str()) != Some(id.to_string().as_str()) {
            missing.push(*id);
        }
    }
    report.check(
        "acknowledged messages survive SIGKILL",
        missing.is_empty(),
        format!(
            "{} of {} acknowledged messages found after kill -9 and restart ({} acknowledged in all); missing: {:?}",
            wanted.len() - missing.len(),
            wanted.len(),
            all.len(),
            &missing[..missing.len().min(10)]
        ),
    );
    Ok(())
}
