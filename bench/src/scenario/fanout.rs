//! Fan-out: one chat, many Stream subscribers, one sender at a steady rate. Each message
//! carries the instant it was sent, so every subscriber measures send-to-receive latency on
//! the one clock of this process; each subscriber also keeps the ids it received, which are
//! checked against the acknowledged ones: nothing lost, nothing twice, nothing out of order.
//! Run once with every subscriber on gRPC-web over its own HTTP/1.1 connection (what browsers
//! do), once on native gRPC.
//!
//! Who subscribes: a chat has at most `MEMBERS_MAX` (100) members, so 1,000 streams are 100
//! members with 10 streams each (people with several tabs and devices). That is the most
//! members one message can reach, so the server's per-member work is at its maximum too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::limits::MEMBERS_MAX;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{Event, SendRequest};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{Context, stop_cleanly};
use crate::client::{
    CALL_TIMEOUT, Subscription, Transport, User, native_channel, new_chat, send, sign_up,
    subscribe, within,
};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess, Usage};
use crate::report::{Figure, ScenarioReport, Target};
use crate::stats::Latencies;

/// Streams opened at once while subscribing.
pub(super) const OPEN_CONCURRENCY: usize = 50;

#[derive(Debug, Clone)]
struct Params {
    members: usize,
    streams_per_member: usize,
    rate: u32,
    /// Turns each server gets per transport.
    rounds: usize,
    warmup: Duration,
    window: Duration,
    /// How long subscribers may take, after the last send, to receive everything.
    drain: Duration,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                members: 3,
                streams_per_member: 2,
                rate: 20,
                rounds: 1,
                warmup: Duration::from_millis(500),
                window: Duration::from_millis(1500),
                drain: Duration::from_secs(5),
            }
        } else {
            Self {
                members: MEMBERS_MAX,
                streams_per_member: 10,
                rate: 100,
                rounds: 2,
                warmup: Duration::from_secs(2),
                window: Duration::from_secs(10),
                drain: Duration::from_secs(10),
            }
        }
    }

    fn subscribers(&self) -> usize {
        self.members * self.streams_per_member
    }

    /// Deliveries per second the load offers.
    fn offered(&self) -> f64 {
        f64::from(self.rate) * self.subscribers() as f64
    }
}

/// What the runs of one transport on one server measured, summed over its turns.
#[derive(Default)]
pub(super) struct Outcome {
    /// Deliveries received inside the measured windows, and the windows' total length.
    pub(super) in_window: u64,
    pub(super) measured: Duration,
    pub(super) latencies: Latencies,
    /// How long the sender's Sends took (to the commit, for the real server).
    pub(super) send_latencies: Latencies,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) out_of_order: u64,
    pub(super) unexpected: u64,
    /// Subscribers whose stream failed or ended before the end.
    pub(super) broken: Vec<String>,
    pub(super) sent: usize,
    pub(super) server_cpu: Duration,
    pub(super) bench_cpu: Duration,
}

impl Outcome {
    pub(super) fn per_second(&self, count: f64) -> f64 {
        count / self.measured.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// A server under load, with its accounts and its chat.
struct Side {
    server: ServerProcess,
    users: Vec<User>,
    chat_id: String,
    outcomes: [Outcome; 2],
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "fanout",
        format!(
            "one chat of {} members × {} streams = {} subscribers, one sender at {} msg/s over native gRPC; {} turns of {} s on each server per transport",
            params.members,
            params.streams_per_member,
            params.subscribers(),
            params.rate,
            params.rounds,
            params.window.as_secs_f64()
        ),
    );
    let options = ServerOptions::new(&ctx.server_bin);
    let transports = [Transport::Web, Transport::Native];
    let mut sides = Vec::new();
    for kind in [Kind::Ceiling, Kind::Real] {
        let server = ServerProcess::start(kind, &options).await?;
        let users = sign_up(server.addr, "fan", params.members).await?;
        let setup = native_channel(server.addr).await?;
        let chat_id = new_chat(&setup, &users[0], users.iter().map(|u| u.id.clone())).await?;
        sides.push(Side {
            server,
            users,
            chat_id,
            outcomes: Default::default(),
        });
    }
    // The servers take turns, so a busy moment of the machine falls on both.
    for (t, transport) in transports.into_iter().enumerate() {
        for _ in 0..params.rounds {
            for side in &mut sides {
                measure(side, t, transport, &params).await?;
            }
        }
    }
    let [ceiling, real]: [Side; 2] = sides
        .try_into()
        .map_err(|_| BenchError::Setup("two servers measured".into()))?;
    stop_cleanly(ceiling.server, &mut report).await?;
    stop_cleanly(real.server, &mut report).await?;
    let (mut ceiling, mut real) = (ceiling.outcomes, real.outcomes);

    for ((transport, real), ceiling) in transports.iter().zip(&mut real).zip(&mut ceiling) {
        let label = match transport {
            Transport::Web => "gRPC-web",
            Transport::Native => "native",
        };
        let web = *transport == Transport::Web;
        let deliveries = Figure::new(
            format!("{label}: deliveries per second"),
            "1/s",
            real.per_second(real.in_window as f64),
        )
        .ceiling(Some(ceiling.per_second(ceiling.in_window as f64)));
        report.figure(if web {
            deliveries.target(Target::AtLeast(0.99 * params.offered()))
        } else {
            deliveries
        });
        for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
            let figure = Figure::new(
                format!("{label}: send→receive latency {name}"),
                "ms",
                real.latencies.percentile_ms(p),
            )
            .ceiling(Some(ceiling.latencies.percentile_ms(p)));
            report.figure(if web && name == "p99" {
                figure.target(Target::AtMost(50.0))
            } else {
                figure
            });
        }
        report.figure(
            Figure::new(
                format!("{label}: the sender's Send latency p99"),
                "ms",
                real.send_latencies.percentile_ms(99.0),
            )
            .ceiling(Some(ceiling.send_latencies.percentile_ms(99.0))),
        );
        report.figure(
            Figure::new(
                format!("{label}: server CPU"),
                "cores",
                real.per_second(real.server_cpu.as_secs_f64()),
            )
            .ceiling(Some(ceiling.per_second(ceiling.server_cpu.as_secs_f64()))),
        );
        report.figure(
            Figure::new(
                format!("{label}: load generator CPU"),
                "cores",
                real.per_second(real.bench_cpu.as_secs_f64()),
            )
            .ceiling(Some(ceiling.per_second(ceiling.bench_cpu.as_secs_f64()))),
        );
        let problems = real.lost + real.duplicated + real.out_of_order + real.unexpected;
        report.check(
            format!("{label}: every subscriber got every message once, in order"),
            problems == 0 && real.broken.is_empty(),
            format!(
                "{} messages × {} subscribers: {} lost, {} duplicated, {} out of order, {} unexpected, {} streams broken{} (ceiling: {} lost, {} duplicated, {} out of order)",
                real.sent,
                params.subscribers(),
                real.lost,
                real.duplicated,
                real.out_of_order,
                real.unexpected,
                real.broken.len(),
                real.broken.first().map(|b| format!(": {b}")).unwrap_or_default(),
                ceiling.lost,
                ceiling.duplicated,
                ceiling.out_of_order,
            ),
        );
    }
    report.note(format!(
        "offered load {} deliveries/s; the deliveries target is 99% of it, to allow for the window's edges",
        crate::report::number(params.offered())
    ));
    Ok(report)
}

/// When subscribers may stop: once they have the last acknowledged id, or at the deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Finish {
    pub(super) last_id: u64,
    pub(super) deadline: Instant,
}

/// One turn: subscribe, send through warm-up and one window, drain, unsubscribe; adds what
/// it measured to the side's outcome for `transport` (index `t`).
async fn measure(
    side: &mut Side,
    t: usize,
    transport: Transport,
    params: &Params,
) -> Result<(), BenchError> {
    let (server, users, chat_id) = (&mut side.server, &side.users, side.chat_id.as_str());
    let addr = server.addr;
    let owners: Vec<(SocketAddr, &User)> = (0..params.subscribers())
        .map(|n| (addr, &users[n / params.streams_per_member]))
        .collect();
    let subscriptions = open_subscriptions(owners, transport, chat_id).await?;

    let base = Instant::now();
    let start = base + Duration::from_millis(500);
    let window = (start + params.warmup, start + params.warmup + params.window);
    let (finish, finishing) = watch::channel(None::<Finish>);
    let mut subscribers = JoinSet::new();
    for subscription in subscriptions {
        subscribers.spawn(subscriber(subscription, base, window, finishing.clone()));
    }

    // Client ids unique to this run: Send is idempotent by client id, so reusing the previous
    // run's would get its messages back instead of new ones.
    let run = format!("{transport:?}-{}", rand::random::<u32>());
    let sending = tokio::spawn(sender(
        addr,
        users[0].clone(),
        chat_id.to_owned(),
        run,
        (base, start, window.1),
        params.rate,
    ));
    tokio::time::sleep_until(window.0.into()).await;
    let (server_before, bench_before) = (server.usage()?, Usage::of_self()?);
    tokio::time::sleep_until(window.1.into()).await;
    let (server_after, bench_after) = (server.usage()?, Usage::of_self()?);
    let (acked, mut send_latencies) = finish_sending(sending, &finish, params.drain).await?;

    let outcome = &mut side.outcomes[t];
    outcome.send_latencies.append(&mut send_latencies);
    outcome.sent += acked.len();
    outcome.server_cpu += server_after.cpu.saturating_sub(server_before.cpu);
    outcome.bench_cpu += bench_after.cpu.saturating_sub(bench_before.cpu);
    outcome.measured += window.1.duration_since(window.0);
    drain_into(&mut subscribers, &acked, outcome, params.drain).await?;
    server.check_alive()?;
    // Let the server close the streams before the next run opens new ones.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// Opens a Stream of `chat_id` for every (server, user) in `owners`, [`OPEN_CONCURRENCY`] at
/// a time.
pub(super) async fn open_subscriptions(
    owners: Vec<(SocketAddr, &User)>,
    transport: Transport,
    chat_id: &str,
) -> Result<Vec<Subscription>, BenchError> {
    let opened: Vec<Result<Subscription, BenchError>> = futures::stream::iter(owners)
        .map(|(addr, user)| subscribe(addr, transport, &user.token, chat_id))
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    opened.into_iter().collect()
}

/// Waits for the task running [`sender`], then tells the subscribers the last acknowledged id
/// and gives them `drain` to receive it. Returns the acknowledged ids, sorted, and how long
/// each Send took.
pub(super) async fn finish_sending(
    sending: JoinHandle<Result<(Vec<u64>, Latencies), BenchError>>,
    finish: &watch::Sender<Option<Finish>>,
    drain: Duration,
) -> Result<(Vec<u64>, Latencies), BenchError> {
    let (mut acked, send_latencies) = within("the sender to finish", CALL_TIMEOUT * 2, sending)
        .await?
        .map_err(|error| BenchError::Setup(format!("the sender panicked: {error}")))??;
    acked.sort_unstable();
    let _ = finish.send(Some(Finish {
        last_id: acked.last().copied().unwrap_or(0),
        deadline: Instant::now() + drain,
    }));
    Ok((acked, send_latencies))
}

/// Waits for every [`subscriber`] to end (`drain` and a margin at most) and adds what each saw
/// to `outcome`, judged against the sorted acknowledged ids.
pub(super) async fn drain_into(
    subscribers: &mut JoinSet<SubscriberLog>,
    acked: &[u64],
    outcome: &mut Outcome,
    drain: Duration,
) -> Result<(), BenchError> {
    within(
        "subscribers to drain",
        drain + Duration::from_secs(5),
        async {
            while let Some(joined) = subscribers.join_next().await {
                let mut log = joined.map_err(|error| {
                    BenchError::Setup(format!("a subscriber panicked: {error}"))
                })?;
                outcome.in_window += log.in_window;
                outcome.latencies.append(&mut log.latencies);
                log.judge(acked, outcome);
            }
            Ok(())
        },
    )
    .await?
}

/// Sends `fanout <seq> <micros since base>` at `rate` per second from `start` until `end`,
/// each Send on its own task so a slow reply never delays the schedule; returns the ids of
/// every acknowledged message, and how long each Send took.
pub(super) async fn sender(
    addr: SocketAddr,
    user: User,
    chat_id: String,
    run: String,
    (base, start, end): (Instant, Instant, Instant),
    rate: u32,
) -> Result<(Vec<u64>, Latencies), BenchError> {
    let chat = ChatClient::new(native_channel(addr).await?);
    let mut ticks = tokio::time::interval_at(start.into(), Duration::from_secs(1) / rate);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = JoinSet::new();
    for seq in 0u64.. {
        let tick = ticks.tick().await.into_std();
        if tick >= end {
            break;
        }
        let mut chat = chat.clone();
        let request = SendRequest {
            client_id: format!("{run}-{seq}"),
            chat_id: chat_id.clone(),
            // The sending instant is taken as late as possible, right before the call.
            text: format!("fanout {seq} {}", base.elapsed().as_micros()),
            ..Default::default()
        };
        let token = user.token.clone();
        sends.spawn(async move {
            let sent = Instant::now();
            let id = send(&mut chat, &token, request).await?;
            Ok::<_, BenchError>((id, sent.elapsed()))
        });
    }
    let mut acked = Vec::with_capacity(sends.len());
    let mut latencies = Latencies::with_capacity(sends.len());
    while let Some(joined) = sends.join_next().await {
        let (id, took) =
            joined.map_err(|error| BenchError::Setup(format!("a send panicked: {error}")))??;
        acked.push(id);
        latencies.push(took);
    }
    Ok((acked, latencies))
}

/// What one subscriber saw.
#[derive(Default)]
pub(super) struct SubscriberLog {
    pub(super) ids: Vec<u64>,
    pub(super) latencies: Latencies,
    pub(super) in_window: u64,
    pub(super) ended: Option<String>,
}

impl SubscriberLog {
    /// Adds this subscriber's problems to `outcome`: every acknowledged id exactly once, in
    /// increasing order, and nothing else.
    pub(super) fn judge(&self, acked: &[u64], outcome: &mut Outcome) {
        let mut highest = 0;
        for &id in &self.ids {
            if id < highest {
                outcome.out_of_order += 1;
            }
            highest = highest.max(id);
        }
        let mut sorted = self.ids.clone();
        sorted.sort_unstable();
        let before = sorted.len();
        sorted.dedup();
        outcome.duplicated += (before - sorted.len()) as u64;
        let received = sorted
            .iter()
            .filter(|id| acked.binary_search(id).is_ok())
            .count();
        outcome.lost += (acked.len() - received) as u64;
        outcome.unexpected += (sorted.len() - received) as u64;
        if let Some(ended) = &self.ended {
            outcome.broken.push(ended.clone());
        }
    }
}

pub(super) async fn subscriber(
    mut subscription: Subscription,
    base: Instant,
    window: (Instant, Instant),
    mut finishing: watch::Receiver<Option<Finish>>,
) -> SubscriberLog {
    let window_micros = (
        window.0.duration_since(base).as_micros(),
        window.1.duration_since(base).as_micros(),
    );
    let mut log = SubscriberLog::default();
    loop {
        let finish = *finishing.borrow();
        if let Some(finish) = finish
            && log.ids.last().is_some_and(|&id| id >= finish.last_id)
        {
            break;
        }
        let deadline = finish.map_or(window.1 + Duration::from_secs(3600), |f| f.deadline);
        let received = tokio::select! {
            changed = finishing.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            () = tokio::time::sleep_until(deadline.into()) => break,
            received = subscription.events.message() => received,
        };
        let now = Instant::now();
        match received {
            Ok(Some(Event {
                event: Some(EventKind::Message(message)),
            })) => {
                let Ok(id) = message.id.parse::<u64>() else {
                    log.ended = Some(format!(
                        "a message id that is not a number: {:?}",
                        message.id
                    ));
                    break;
                };
                log.ids.push(id);
                let mut words = message.text.split_whitespace().skip(2);
                if let Some(sent) = words.next().and_then(|w| w.parse::<u128>().ok())
                    && (window_micros.0..window_micros.1).contains(&sent)
                {
                    let received_at = now.duration_since(base).as_micros();
                    log.latencies.push(Duration::from_micros(
                        received_at.saturating_sub(sent) as u64
                    ));
                }
                if now >= window.0 && now < window.1 {
                    log.in_window += 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                log.ended = Some("the stream ended".into());
                break;
            }
            Err(status) => {
                log.ended = Some(format!(
                    "the stream failed: {:?} {}",
                    status.code(),
                    status.message()
                ));
                break;
            }
        }
    }
    log
}
