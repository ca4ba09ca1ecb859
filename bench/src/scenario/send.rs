//! Durable send: many clients at once doing unary Send over native gRPC (HTTP/2), each reply
//! meaning the message is committed to SQLite on disk. Messages acknowledged per second and
//! the latency of one Send, against the ceiling server's unary throughput on the same load.
//! Afterwards the real server is killed with SIGKILL and restarted, and acknowledged messages
//! are looked up: an acknowledgement must mean the message survives a crash.

use std::time::{Duration, Instant};

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{HistoryRequest, SendRequest};
use rand::seq::IndexedRandom as _;

use super::{Context, stop_cleanly};
use crate::client::{CALL_TIMEOUT, User, authed, call, native_channel, new_chat, sign_up, within};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess, Usage};
use crate::report::{Figure, ScenarioReport, Target};
use crate::stats::Latencies;

/// A message of ordinary length (100 characters).
const TEXT: &str = "durable send benchmark: a message of about one hundred characters, as people type in chats......";

#[derive(Debug, Clone)]
struct Params {
    senders: usize,
    users: usize,
    warmup: Duration,
    window: Duration,
    /// Acknowledged messages looked up after the crash, besides each sender's last one.
    verify_sample: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                senders: 8,
                users: 2,
                warmup: Duration::from_millis(300),
                window: Duration::from_secs(1),
                verify_sample: 20,
            }
        } else {
            Self {
                senders: 64,
                users: 8,
                warmup: Duration::from_secs(2),
                window: Duration::from_secs(15),
                verify_sample: 500,
            }
        }
    }
}

struct Outcome {
    per_second: f64,
    latencies: Latencies,
    server_cores: f64,
    bench_cores: f64,
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "send",
        format!(
            "{} concurrent senders ({} users), unary Send over native gRPC into SQLite on disk, {} s measured",
            params.senders,
            params.users,
            params.window.as_secs_f64()
        ),
    );
    let options = ServerOptions::new(&ctx.server_bin);
    let mut ceiling = measure(Kind::Ceiling, &options, &params, &mut report).await?;
    let mut real = measure(Kind::Real, &options, &params, &mut report).await?;

    report.figure(
        Figure::new("acknowledged messages per second", "msg/s", real.per_second)
            .ceiling(Some(ceiling.per_second))
            .target(Target::RatioAtLeast(0.5)),
    );
    for p in [50.0, 99.0] {
        report.figure(
            Figure::new(
                format!("Send latency p{p}"),
                "ms",
                real.latencies.percentile_ms(p),
            )
            .ceiling(Some(ceiling.latencies.percentile_ms(p))),
        );
    }
    report.figure(
        Figure::new("server CPU while loaded", "cores", real.server_cores)
            .ceiling(Some(ceiling.server_cores)),
    );
    report.figure(
        Figure::new("load generator CPU", "cores", real.bench_cores)
            .ceiling(Some(ceiling.bench_cores)),
    );
    Ok(report)
}

async fn measure(
    kind: Kind,
    options: &ServerOptions,
    params: &Params,
    report: &mut ScenarioReport,
) -> Result<Outcome, BenchError> {
    let mut server = ServerProcess::start(kind, options).await?;
    let users = sign_up(server.addr, "sender", params.users).await?;
    let setup = native_channel(server.addr).await?;
    let chat_id = new_chat(&setup, &users[0], users.iter().map(|u| u.id.clone())).await?;
    let mut channels = Vec::with_capacity(params.senders);
    for _ in 0..params.senders {
        channels.push(native_channel(server.addr).await?);
    }

    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + params.warmup;
    let end = window_start + params.window;
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(n, channel)| {
            let user = users[n % users.len()].clone();
            let chat_id = chat_id.clone();
            tokio::spawn(sender(
                n,
                ChatClient::new(channel),
                user,
                chat_id,
                start,
                window_start,
                end,
            ))
        })
        .collect();

    tokio::time::sleep_until(window_start.into()).await;
    let (server_before, bench_before) = (server.usage()?, Usage::of_self()?);
    tokio::time::sleep_until(end.into()).await;
    let (server_after, bench_after) = (server.usage()?, Usage::of_self()?);

    let mut latencies = Latencies::with_capacity(1 << 16);
    let mut acked = Vec::new();
    let mut in_window = 0u64;
    for task in tasks {
        let joined = within("a sender to finish", CALL_TIMEOUT * 2, task).await?;
        let mut result =
            joined.map_err(|error| BenchError::Setup(format!("a sender panicked: {error}")))??;
        latencies.append(&mut result.latencies);
        in_window += result.in_window;
        acked.push(result.acked);
    }

    if kind == Kind::Real {
        verify_after_crash(
            &mut server,
            &users,
            &chat_id,
            &acked,
            params.verify_sample,
            report,
        )
        .await?;
    }
    stop_cleanly(server, report).await?;
    Ok(Outcome {
        per_second: in_window as f64 / params.window.as_secs_f64(),
        latencies,
        server_cores: server_before.cores_until(&server_after),
        bench_cores: bench_before.cores_until(&bench_after),
    })
}

struct SenderResult {
    latencies: Latencies,
    in_window: u64,
    /// The ids of every message acknowledged, in the order sent.
    acked: Vec<u64>,
}

/// One client sending back to back until `end`; counts and times the replies that arrive
/// inside the measured window.
async fn sender(
    n: usize,
    mut chat: ChatClient<tonic::transport::Channel>,
    user: User,
    chat_id: String,
    start: Instant,
    window_start: Instant,
    end: Instant,
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
            client_id: format!("s{n}-{seq}"),
            chat_id: chat_id.clone(),
            text: TEXT.to_owned(),
            ..Default::default()
        };
        let reply = call("Send", chat.send(authed(&user.token, request))).await?;
        let done = Instant::now();
        if done >= window_start && done <= end {
            result.in_window += 1;
            result.latencies.push(done - sent);
        }
        let id = reply
            .message
            .and_then(|message| message.id.parse::<u64>().ok())
            .ok_or_else(|| BenchError::Setup("Send replied without a numeric message id".into()))?;
        result.acked.push(id);
    }
    Ok(result)
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
            "{} of {} acknowledged messages looked up after kill -9 and restart ({} acknowledged in all); missing: {:?}",
            wanted.len() - missing.len(),
            wanted.len(),
            all.len(),
            &missing[..missing.len().min(10)]
        ),
    );
    Ok(())
}
