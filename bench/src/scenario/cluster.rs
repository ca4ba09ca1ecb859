//! Several servers on PostgreSQL: three chat-server processes on one fresh PostgreSQL
//! database, against one chat-server on SQLite, in three phases.
//!
//! 1. Durable Send: the same concurrent unary Sends on the cluster (senders spread round-robin
//!    over the three servers) and on the single SQLite server, taking turns so a busy moment
//!    of the machine falls on both; CPU of the servers and of PostgreSQL's processes says
//!    where the time goes.
//! 2. Cross-server fan-out: gRPC-web subscribers of one chat spread over the three servers, a
//!    sender on a connection of its own, every delivery checked for loss, duplicates and
//!    order (the fan-out scenario's machinery), beside the same load on the SQLite server.
//! 3. Resume: one of the three servers is SIGKILLed while messages flow; its subscribers
//!    reconnect to the others with their cursor (`after_id`, the last id they saw), and the
//!    time until every one of them is live again is measured, with loss and duplicates
//!    checked across the resume.
//!
//! The database is created for the run (`CREATE DATABASE` through `psql`) and dropped on
//! every exit path, also when the run fails or is interrupted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::limits::MEMBERS_MAX;
use chat_core::proto::Event;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::fanout::{
    Finish, OPEN_CONCURRENCY, Outcome, SubscriberLog, drain_into, finish_sending,
    open_subscriptions,
};
use super::{Context, stop_cleanly};
use crate::client::{
    Subscription, Transport, User, native_channel, new_chat, resume_web, sign_up, subscribe,
    web_chat, within,
};
use crate::error::BenchError;
use crate::process::{Kind, PostgresCpu, ServerOptions, ServerProcess, Usage};
use crate::report::{Figure, ScenarioReport, Target, number};
use crate::stats::Latencies;

/// The PostgreSQL server used when neither `--database-url` nor the environment names one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long `psql` may take to connect, and to run one statement.
const PSQL_CONNECT_SECS: &str = "5";
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many servers share the database.
const SERVERS: usize = 3;

#[derive(Debug, Clone)]
struct Params {
    // Durable Send.
    senders: usize,
    send_users: usize,
    rounds: usize,
    warmup: Duration,
    slice: Duration,
    // Fan-out and resume.
    members: usize,
    streams_per_member: usize,
    rate: u32,
    fan_warmup: Duration,
    fan_window: Duration,
    drain: Duration,
    /// How long messages flow before the kill, and after it.
    before_kill: Duration,
    after_kill: Duration,
    /// Connections per server to PostgreSQL: three servers share the server's
    /// `max_connections` with everything else on it.
    pool_size: u32,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                senders: 6,
                send_users: 2,
                rounds: 1,
                warmup: Duration::from_millis(300),
                slice: Duration::from_secs(1),
                members: 3,
                streams_per_member: 2,
                rate: 20,
                fan_warmup: Duration::from_millis(500),
                fan_window: Duration::from_millis(1500),
                drain: Duration::from_secs(5),
                before_kill: Duration::from_secs(1),
                after_kill: Duration::from_secs(2),
                pool_size: 4,
            }
        } else {
            Self {
                senders: 64,
                send_users: 8,
                rounds: 3,
                warmup: Duration::from_secs(1),
                slice: Duration::from_secs(5),
                members: MEMBERS_MAX,
                streams_per_member: 10,
                rate: 100,
                fan_warmup: Duration::from_secs(2),
                fan_window: Duration::from_secs(10),
                drain: Duration::from_secs(10),
                before_kill: Duration::from_secs(3),
                after_kill: Duration::from_secs(7),
                pool_size: 8,
            }
        }
    }

    fn subscribers(&self) -> usize {
        self.members * self.streams_per_member
    }
}

/// A database of its own on the PostgreSQL server, dropped when this is dropped.
pub(super) struct TempDatabase {
    admin_url: String,
    name: String,
    pub(super) url: String,
    dropped: bool,
}

impl TempDatabase {
    pub(super) async fn create(admin_url: &str) -> Result<Self, BenchError> {
        let name = format!(
            "chat_bench_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let url = with_database(admin_url, &name)?;
        psql(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
            dropped: false,
        })
    }

    /// Drops the database, closing whatever connections are still open to it.
    pub(super) async fn drop_now(mut self) -> Result<(), BenchError> {
        self.dropped = true;
        psql(&self.admin_url, &self.drop_statement()).await
    }

    fn drop_statement(&self) -> String {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
    }
}

impl Drop for TempDatabase {
    /// The path of a failed or interrupted run: blocking is acceptable at its end.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let status = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.admin_url,
                "-c",
            ])
            .arg(self.drop_statement())
            .env("PGCONNECT_TIMEOUT", PSQL_CONNECT_SECS)
            .stdout(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!(
                "chat-bench: could not drop the database {}; drop it by hand",
                self.name
            );
        }
    }
}

/// `url` with its database (the path) replaced by `name`, its query kept.
fn with_database(url: &str, name: &str) -> Result<String, BenchError> {
    let (_, end) = authority(url)?;
    let query = url[end..].find('?').map_or("", |i| &url[end + i..]);
    Ok(format!("{}/{name}{query}", &url[..end]))
}

/// Where the authority (`user@host:port`) of a `postgres://` URL starts and ends.
fn authority(url: &str) -> Result<(usize, usize), BenchError> {
    let start = url
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| BenchError::Setup(format!("not a postgres:// URL: {url}")))?;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    Ok((start, end))
}

/// `url` with its host and port replaced by those of a new relay to them that holds every
/// chunk `delay` each way (`relay.rs`).
fn relayed(url: &str, delay: Duration) -> Result<String, BenchError> {
    let (start, end) = authority(url)?;
    let authority = &url[start..end];
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let target = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| BenchError::Setup(format!("cannot resolve the database's {host}")))?;
    let relay = crate::relay::start(target, delay)
        .map_err(|error| BenchError::Setup(format!("cannot start the delay relay: {error}")))?;
    Ok(format!("{}{user}{relay}{}", &url[..start], &url[end..]))
}

/// Runs one statement with Debian's `psql` client, bounded in time.
pub(super) async fn psql(url: &str, statement: &str) -> Result<(), BenchError> {
    let output = within(
        format!("psql: {statement}"),
        PSQL_TIMEOUT,
        tokio::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                statement,
            ])
            .env("PGCONNECT_TIMEOUT", PSQL_CONNECT_SECS)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await?
    .map_err(BenchError::io(
        "cannot run psql (Debian's postgresql-client)",
    ))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "psql `{statement}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Why PostgreSQL cannot be used at `url`, or `None` if it answers.
pub(super) async fn unreachable(url: &str) -> Option<String> {
    psql(url, "SELECT 1")
        .await
        .err()
        .map(|error| error.to_string())
}

/// Runs the scenario. Without a reachable PostgreSQL it is skipped (with the reason) unless
/// `required`, when that is an error.
pub async fn run(ctx: &Context, required: bool) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "cluster",
        format!(
            "{SERVERS} chat-servers on one PostgreSQL database against one on SQLite: durable Send ({} senders, {} turns of {} s each), fan-out ({} gRPC-web subscribers over the {SERVERS}, {} msg/s), resume after SIGKILL of one server",
            params.senders,
            params.rounds,
            params.slice.as_secs_f64(),
            params.subscribers(),
            params.rate
        ),
    );
    report.compared_with = "SQLite alone";
    if let Some(reason) = unreachable(&ctx.database_url).await {
        if required {
            return Err(BenchError::Setup(format!(
                "no PostgreSQL at {}: {reason}",
                ctx.database_url
            )));
        }
        report.note(format!(
            "skipped: no PostgreSQL at {} ({reason}); set --database-url or CHAT_BENCH_DATABASE_URL",
            ctx.database_url
        ));
        return Ok(report);
    }
    let database = TempDatabase::create(&ctx.database_url).await?;
    let measured = phases(ctx, &params, &database, &mut report).await;
    // Dropped on the error path too (by `Drop`); here the error of dropping is reported.
    let dropped = database.drop_now().await;
    measured?;
    dropped?;
    Ok(report)
}

/// The servers of one deployment and the accounts and chats the load uses.
struct Deployment {
    servers: Vec<ServerProcess>,
    users: Vec<User>,
    /// The chat the durable senders write into, and the fan-out chat of every member.
    send_chat: String,
    fan_chat: String,
}

impl Deployment {
    async fn start(
        options: &ServerOptions,
        count: usize,
        params: &Params,
    ) -> Result<Self, BenchError> {
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            servers.push(ServerProcess::start(Kind::Real, options).await?);
        }
        // Accounts and chats live in the shared database: made on one server, used on all.
        let first = servers[0].addr;
        let users = sign_up(first, "cluster", params.members.max(params.send_users)).await?;
        let setup = native_channel(first).await?;
        let send_chat = new_chat(
            &setup,
            &users[0],
            users[..params.send_users].iter().map(|u| u.id.clone()),
        )
        .await?;
        let fan_chat = new_chat(
            &setup,
            &users[0],
            users[..params.members].iter().map(|u| u.id.clone()),
        )
        .await?;
        Ok(Self {
            servers,
            users,
            send_chat,
            fan_chat,
        })
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|server| server.addr).collect()
    }

    fn usage(&mut self) -> Result<Vec<Usage>, BenchError> {
        self.servers.iter_mut().map(ServerProcess::usage).collect()
    }
}

/// Durable Send on one deployment, summed over its turns.
struct SendLoad {
    channels: Vec<Channel>,
    in_window: u64,
    measured: Duration,
    latencies: Latencies,
    server_cpu: Duration,
    /// PostgreSQL's CPU: the backends of this database, and every postgres process.
    database_cpu: (Duration, Duration),
}

impl SendLoad {
    /// One connection per sender, sender `n` on server `n % servers`.
    async fn connect(deployment: &Deployment, params: &Params) -> Result<Self, BenchError> {
        let addrs = deployment.addrs();
        let mut channels = Vec::with_capacity(params.senders);
        for n in 0..params.senders {
            channels.push(native_channel(addrs[n % addrs.len()]).await?);
        }
        Ok(Self {
            channels,
            in_window: 0,
            measured: Duration::ZERO,
            latencies: Latencies::with_capacity(1 << 16),
            server_cpu: Duration::ZERO,
            database_cpu: (Duration::ZERO, Duration::ZERO),
        })
    }

    fn per_second(&self) -> f64 {
        self.in_window as f64 / self.measured.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn cores(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.measured.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Every sender sends back to back through warm-up and one measured slice.
    async fn slice(
        &mut self,
        deployment: &mut Deployment,
        database: &str,
        label: &str,
        params: &Params,
    ) -> Result<(), BenchError> {
        let start = Instant::now() + Duration::from_millis(100);
        let window = (start + params.warmup, start + params.warmup + params.slice);
        let tasks: Vec<_> = self
            .channels
            .iter()
            .enumerate()
            .map(|(n, channel)| {
                tokio::spawn(super::send::sender(
                    format!("{label}-s{n}"),
                    ChatClient::new(channel.clone()),
                    deployment.users[n % params.send_users].clone(),
                    deployment.send_chat.clone(),
                    start,
                    window,
                ))
            })
            .collect();
        tokio::time::sleep_until(window.0.into()).await;
        let (servers_before, pg_before) = (deployment.usage()?, PostgresCpu::read(database));
        tokio::time::sleep_until(window.1.into()).await;
        let (servers_after, pg_after) = (deployment.usage()?, PostgresCpu::read(database));
        for (before, after) in servers_before.iter().zip(&servers_after) {
            self.server_cpu += after.cpu.saturating_sub(before.cpu);
        }
        let (ours, all) = pg_before.used_until(&pg_after);
        self.database_cpu.0 += ours;
        self.database_cpu.1 += all;
        self.measured += servers_after[0].at.duration_since(servers_before[0].at);
        for task in tasks {
            let mut result = super::send::join_sender(task).await?;
            self.latencies.append(&mut result.latencies);
            self.in_window += result.in_window;
        }
        Ok(())
    }
}

async fn phases(
    ctx: &Context,
    params: &Params,
    database: &TempDatabase,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let mut options = ServerOptions::new(&ctx.server_bin);
    let mut sqlite = Deployment::start(&options, 1, params).await?;
    options.database_url = Some(match ctx.database_delay {
        Some(delay) => {
            report.note(format!(
                "the servers reach PostgreSQL through a relay that holds every chunk {} µs each \
                 way (--database-delay-us); the SQLite server is not affected",
                delay.as_micros()
            ));
            relayed(&database.url, delay)?
        }
        None => database.url.clone(),
    });
    options.database_pool_size = Some(params.pool_size);
    let mut cluster = Deployment::start(&options, SERVERS, params).await?;

    // 1. Durable Send, taking turns.
    let mut sqlite_load = SendLoad::connect(&sqlite, params).await?;
    let mut cluster_load = SendLoad::connect(&cluster, params).await?;
    for round in 0..params.rounds {
        sqlite_load
            .slice(
                &mut sqlite,
                &database.name,
                &format!("sqlite-r{round}"),
                params,
            )
            .await?;
        cluster_load
            .slice(
                &mut cluster,
                &database.name,
                &format!("pg-r{round}"),
                params,
            )
            .await?;
    }
    send_figures(report, &mut sqlite_load, &mut cluster_load);
    drop((sqlite_load, cluster_load));

    // 2. Cross-server fan-out, then the same on the SQLite server.
    let mut fanned = Outcome::default();
    fan_out(&mut cluster, params, &mut fanned).await?;
    let mut alone = Outcome::default();
    fan_out(&mut sqlite, params, &mut alone).await?;
    fan_figures(report, params, &mut fanned, &mut alone);
    let [sqlite_server]: [ServerProcess; 1] = std::mem::take(&mut sqlite.servers)
        .try_into()
        .map_err(|_| BenchError::Setup("one SQLite server".into()))?;
    stop_cleanly(sqlite_server, report).await?;

    // 3. Resume after SIGKILL of one server.
    resume(&mut cluster, params, report).await?;
    let survivors = std::mem::take(&mut cluster.servers);
    for server in survivors.into_iter().take(SERVERS - 1) {
        stop_cleanly(server, report).await?;
    }
    Ok(())
}

fn send_figures(report: &mut ScenarioReport, sqlite: &mut SendLoad, cluster: &mut SendLoad) {
    report.figure(
        Figure::new(
            format!("Send: acknowledged msg/s ({SERVERS} servers)"),
            "msg/s",
            cluster.per_second(),
        )
        .ceiling(Some(sqlite.per_second()))
        .target(Target::RatioAtLeast(0.5)),
    );
    for p in [50.0, 99.0] {
        report.figure(
            Figure::new(
                format!("Send: latency p{p}"),
                "ms",
                cluster.latencies.percentile_ms(p),
            )
            .ceiling(Some(sqlite.latencies.percentile_ms(p))),
        );
    }
    report.figure(
        Figure::new(
            "Send: chat-server CPU (all servers)",
            "cores",
            cluster.cores(cluster.server_cpu),
        )
        .ceiling(Some(sqlite.cores(sqlite.server_cpu))),
    );
    report.figure(Figure::new(
        "Send: PostgreSQL CPU, this run's backends",
        "cores",
        cluster.cores(cluster.database_cpu.0),
    ));
    report.figure(Figure::new(
        "Send: PostgreSQL CPU, all its processes",
        "cores",
        cluster.cores(cluster.database_cpu.1),
    ));
    let per_message =
        |cpu: Duration, load: &SendLoad| cpu.as_secs_f64() * 1e6 / load.in_window.max(1) as f64;
    report.figure(
        Figure::new(
            "Send: servers + PostgreSQL CPU per message",
            "µs",
            per_message(cluster.server_cpu + cluster.database_cpu.1, cluster),
        )
        .ceiling(Some(per_message(sqlite.server_cpu, sqlite))),
    );
    report.note(
        "PostgreSQL's CPU is read from /proc for processes named postgres; 'all its processes' includes the WAL writer and checkpointer, and also whatever else uses that PostgreSQL server meanwhile (other tests on a shared one)",
    );
}

/// One fan-out turn on `deployment`: subscriber `n` on server `n % servers`, the sender on a
/// connection of its own to the first server, so most deliveries cross servers.
async fn fan_out(
    deployment: &mut Deployment,
    params: &Params,
    outcome: &mut Outcome,
) -> Result<(), BenchError> {
    let addrs = deployment.addrs();
    let chat_id = deployment.fan_chat.as_str();
    let owners: Vec<(SocketAddr, &User)> = (0..params.subscribers())
        .map(|n| {
            (
                addrs[n % addrs.len()],
                &deployment.users[n / params.streams_per_member],
            )
        })
        .collect();
    let subscriptions = open_subscriptions(owners, Transport::Web, chat_id).await?;

    let base = Instant::now();
    let start = base + Duration::from_millis(500);
    let window = (
        start + params.fan_warmup,
        start + params.fan_warmup + params.fan_window,
    );
    let (finish, finishing) = watch::channel(None::<Finish>);
    let mut subscribers = JoinSet::new();
    for subscription in subscriptions {
        subscribers.spawn(super::fanout::subscriber(
            subscription,
            base,
            window,
            finishing.clone(),
        ));
    }
    let sending = tokio::spawn(super::fanout::sender(
        addrs[0],
        deployment.users[0].clone(),
        chat_id.to_owned(),
        format!("fan-{}", rand::random::<u32>()),
        (base, start, window.1),
        params.rate,
    ));
    tokio::time::sleep_until(window.0.into()).await;
    let before = deployment.usage()?;
    tokio::time::sleep_until(window.1.into()).await;
    let after = deployment.usage()?;
    let (acked, mut send_latencies) = finish_sending(sending, &finish, params.drain).await?;
    outcome.send_latencies.append(&mut send_latencies);
    outcome.sent += acked.len();
    for (before, after) in before.iter().zip(&after) {
        outcome.server_cpu += after.cpu.saturating_sub(before.cpu);
    }
    outcome.measured += window.1.duration_since(window.0);
    drain_into(&mut subscribers, &acked, outcome, params.drain).await?;
    for server in &mut deployment.servers {
        server.check_alive()?;
    }
    // Let the servers close the streams before the next phase opens new ones.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn fan_figures(
    report: &mut ScenarioReport,
    params: &Params,
    cluster: &mut Outcome,
    alone: &mut Outcome,
) {
    report.figure(
        Figure::new(
            "fan-out: deliveries per second",
            "1/s",
            cluster.per_second(cluster.in_window as f64),
        )
        .ceiling(Some(alone.per_second(alone.in_window as f64))),
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        let figure = Figure::new(
            format!("fan-out: send→receive latency {name}"),
            "ms",
            cluster.latencies.percentile_ms(p),
        )
        .ceiling(Some(alone.latencies.percentile_ms(p)));
        report.figure(if name == "p99" {
            figure.target(Target::AtMost(100.0))
        } else {
            figure
        });
    }
    report.figure(
        Figure::new(
            "fan-out: the sender's Send latency p99",
            "ms",
            cluster.send_latencies.percentile_ms(99.0),
        )
        .ceiling(Some(alone.send_latencies.percentile_ms(99.0))),
    );
    report.figure(
        Figure::new(
            "fan-out: chat-server CPU (all servers)",
            "cores",
            cluster.per_second(cluster.server_cpu.as_secs_f64()),
        )
        .ceiling(Some(alone.per_second(alone.server_cpu.as_secs_f64()))),
    );
    for (outcome, who) in [(&*cluster, "across servers"), (&*alone, "on SQLite alone")] {
        let problems =
            outcome.lost + outcome.duplicated + outcome.out_of_order + outcome.unexpected;
        report.check(
            format!("fan-out {who}: every subscriber got every message once, in order"),
            problems == 0 && outcome.broken.is_empty(),
            format!(
                "{} messages × {} subscribers: {} lost, {} duplicated, {} out of order, {} unexpected, {} streams broken{}",
                outcome.sent,
                params.subscribers(),
                outcome.lost,
                outcome.duplicated,
                outcome.out_of_order,
                outcome.unexpected,
                outcome.broken.len(),
                outcome.broken.first().map(|b| format!(": {b}")).unwrap_or_default(),
            ),
        );
    }
}

/// What a subscriber of the killed server saw across its resume.
struct Resumed {
    log: SubscriberLog,
    /// From the kill until it held, on its new server, a message sent after the kill.
    caught_up: Option<Duration>,
    reconnects: u32,
}

/// SIGKILLs the last server while the sender (on the first) sends; every subscriber of the
/// killed one reconnects to the next server that answers, with `after_id` = the last id it
/// saw. Everyone's deliveries are checked against the acknowledged messages.
async fn resume(
    cluster: &mut Deployment,
    params: &Params,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let addrs = cluster.addrs();
    let victim = SERVERS - 1;
    let chat_id = cluster.fan_chat.clone();
    let base = Instant::now();
    // Opening the streams takes a while at full size: the schedule starts after it.
    let mut opened = Vec::with_capacity(params.subscribers());
    let homes: Vec<(usize, User)> = (0..params.subscribers())
        .map(|n| {
            (
                n % SERVERS,
                cluster.users[n / params.streams_per_member].clone(),
            )
        })
        .collect();
    let subscriptions: Vec<Result<(usize, User, Subscription), BenchError>> =
        futures::stream::iter(homes)
            .map(|(home, user)| {
                let chat_id = chat_id.clone();
                let addr = addrs[home];
                async move {
                    let subscription =
                        subscribe(addr, Transport::Web, &user.token, &chat_id).await?;
                    Ok((home, user, subscription))
                }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .collect()
            .await;
    for subscription in subscriptions {
        opened.push(subscription?);
    }
    let start = Instant::now() + Duration::from_millis(500);
    let kill_at = start + params.before_kill;
    let end = kill_at + params.after_kill;
    let (finish, finishing) = watch::channel(None::<Finish>);
    let mut subscribers = JoinSet::new();
    for (home, user, subscription) in opened {
        subscribers.spawn(resuming_subscriber(
            subscription,
            home,
            addrs.clone(),
            user.token,
            chat_id.clone(),
            (base, kill_at),
            finishing.clone(),
        ));
    }
    let sending = tokio::spawn(super::fanout::sender(
        addrs[0],
        cluster.users[0].clone(),
        chat_id.clone(),
        format!("resume-{}", rand::random::<u32>()),
        (base, start, end),
        params.rate,
    ));
    tokio::time::sleep_until(kill_at.into()).await;
    cluster.servers[victim].kill().await?;
    let (acked, _) = finish_sending(sending, &finish, params.drain).await?;

    let (mut moved, mut stayed) = (Outcome::default(), Outcome::default());
    let mut catch_up = Latencies::default();
    let (mut moved_count, mut not_caught_up, mut reconnects) = (0usize, 0usize, 0u32);
    within(
        "subscribers to drain",
        params.drain + Duration::from_secs(10),
        async {
            while let Some(joined) = subscribers.join_next().await {
                let (home, resumed) = joined.map_err(|error| {
                    BenchError::Setup(format!("a subscriber panicked: {error}"))
                })?;
                if home == victim {
                    moved_count += 1;
                    reconnects += resumed.reconnects;
                    match resumed.caught_up {
                        Some(took) => catch_up.push(took),
                        None => not_caught_up += 1,
                    }
                    resumed.log.judge(&acked, &mut moved);
                } else {
                    resumed.log.judge(&acked, &mut stayed);
                }
            }
            Ok::<_, BenchError>(())
        },
    )
    .await??;

    report.figure(Figure::new(
        "resume: all moved clients caught up after",
        "ms",
        catch_up.max_ms(),
    ));
    report.figure(Figure::new(
        "resume: half of them caught up after",
        "ms",
        catch_up.percentile_ms(50.0),
    ));
    for (outcome, who) in [
        (
            &moved,
            format!("the {moved_count} clients of the killed server"),
        ),
        (&stayed, "the clients of the other servers".to_owned()),
    ] {
        report.check(
            format!("resume: {who} got every message once, in order"),
            outcome.lost + outcome.duplicated + outcome.out_of_order + outcome.unexpected == 0
                && outcome.broken.is_empty(),
            format!(
                "{} messages sent (the server killed after {} s of {} s): {} lost, {} duplicated, {} out of order, {} unexpected, {} streams broken{}",
                acked.len(),
                params.before_kill.as_secs_f64(),
                (params.before_kill + params.after_kill).as_secs_f64(),
                outcome.lost,
                outcome.duplicated,
                outcome.out_of_order,
                outcome.unexpected,
                outcome.broken.len(),
                outcome.broken.first().map(|b| format!(": {b}")).unwrap_or_default(),
            ),
        );
    }
    report.check(
        "resume: every client of the killed server caught up",
        not_caught_up == 0 && moved_count > 0,
        format!(
            "{} of {moved_count} caught up within {} ms of the kill, after {reconnects} reconnects in all",
            moved_count - not_caught_up,
            number(catch_up.max_ms())
        ),
    );
    Ok(())
}

/// Attempts to reach a live server after a stream breaks, each trying the servers in turn.
const RECONNECT_ATTEMPTS: u32 = 3 * SERVERS as u32;

/// A subscriber that, when its stream breaks, resumes on the next server of the ring that
/// answers (as a load balancer would send it), from the last id it saw. Returns its home.
async fn resuming_subscriber(
    mut subscription: Subscription,
    home: usize,
    addrs: Vec<SocketAddr>,
    token: String,
    chat_id: String,
    (base, kill_at): (Instant, Instant),
    mut finishing: watch::Receiver<Option<Finish>>,
) -> (usize, Resumed) {
    let kill_micros = kill_at.duration_since(base).as_micros();
    let mut resumed = Resumed {
        log: SubscriberLog::default(),
        caught_up: None,
        reconnects: 0,
    };
    let mut server = home;
    loop {
        let finish = *finishing.borrow();
        if let Some(finish) = finish
            && resumed
                .log
                .ids
                .last()
                .is_some_and(|&id| id >= finish.last_id)
        {
            break;
        }
        let deadline = finish.map_or(kill_at + Duration::from_secs(3600), |f| f.deadline);
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
        match received {
            Ok(Some(Event {
                event: Some(EventKind::Message(message)),
            })) => {
                let Ok(id) = message.id.parse::<u64>() else {
                    resumed.log.ended = Some(format!(
                        "a message id that is not a number: {:?}",
                        message.id
                    ));
                    break;
                };
                resumed.log.ids.push(id);
                let sent = message
                    .text
                    .split_whitespace()
                    .nth(2)
                    .and_then(|w| w.parse::<u128>().ok());
                if resumed.reconnects > 0
                    && resumed.caught_up.is_none()
                    && sent.is_some_and(|sent| sent > kill_micros)
                {
                    resumed.caught_up = Some(kill_at.elapsed());
                }
            }
            Ok(Some(_)) => {}
            // The server went away: resume elsewhere with the cursor.
            Ok(None) | Err(_) => {
                let after_id = resumed.log.ids.last().copied().unwrap_or(0);
                match reconnect(&addrs, &mut server, &token, &chat_id, after_id).await {
                    Ok(next) => {
                        subscription = next;
                        resumed.reconnects += 1;
                    }
                    Err(error) => {
                        resumed.log.ended = Some(format!("could not resume: {error}"));
                        break;
                    }
                }
            }
        }
    }
    (home, resumed)
}

/// Opens a resumed Stream on the next server after `server` that answers; updates `server`.
async fn reconnect(
    addrs: &[SocketAddr],
    server: &mut usize,
    token: &str,
    chat_id: &str,
    after_id: u64,
) -> Result<Subscription, BenchError> {
    let mut last_error = None;
    for _ in 0..RECONNECT_ATTEMPTS {
        *server = (*server + 1) % addrs.len();
        match resume_web(&web_chat(addrs[*server]), token, chat_id, after_id).await {
            Ok(subscription) => return Ok(subscription),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last_error.unwrap_or_else(|| BenchError::Setup("no server to resume on".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_get_the_run_database() {
        let url = |base: &str| with_database(base, "run").unwrap();
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/run"
        );
        assert_eq!(
            url("postgres://u:p@h/db?sslmode=disable"),
            "postgres://u:p@h/run?sslmode=disable"
        );
        assert_eq!(url("postgresql://h:5433"), "postgresql://h:5433/run");
        assert!(with_database("127.0.0.1:5432", "run").is_err());
    }

    #[test]
    fn a_relayed_url_keeps_everything_but_the_address() {
        let url = relayed(
            "postgres://u:p@127.0.0.1:5432/run?sslmode=disable",
            Duration::from_micros(1),
        )
        .unwrap();
        let port = url
            .strip_prefix("postgres://u:p@127.0.0.1:")
            .and_then(|rest| rest.strip_suffix("/run?sslmode=disable"))
            .unwrap_or_else(|| panic!("{url}"));
        assert!(port.parse::<u16>().is_ok_and(|port| port != 5432), "{url}");
        assert!(relayed("127.0.0.1:5432", Duration::from_micros(1)).is_err());
    }
}
