//! The harness every test module shares: `spawn_app()` starts the real server on 127.0.0.1:0
//! with a fresh data directory, and `TestApp` hands out real clients for it (tonic over HTTP/2,
//! tonic-web over HTTP/1.1) plus the few steps nearly every test takes. `spawn_process()` starts
//! the real binary instead, for the faults that need a process (SIGKILL, SIGTERM, OS limits).
//! Keeping them here means no module grows its own copy, and every wait in the suite goes
//! through one bounded `within`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use chat_core::proto::auth_client::AuthClient;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{
    ChatSummary, Credentials, Event, HistoryRequest, ListRequest, Message, NewRequest, SendRequest,
    SignOutRequest, StreamRequest,
};
use chat_core::reason::Reason;
pub use chat_core::wire::authed;
use chat_server::config::Settings;
pub use chat_transport::client::WebClient;
use chat_transport::client::{Http, web_client};
pub use chat_transport::unix_now;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt as _;

/// The longest any single wait may take: past it the test fails instead of hanging the suite.
pub const WAIT: Duration = Duration::from_secs(5);

/// Every test server beats once a second, so heartbeat tests finish quickly.
pub const HEARTBEAT_SECS: u64 = 1;

/// The suite's abuse limits: loose enough that no test trips one by accident (the fault tests
/// send as fast as they can, from one address), so only `limits` tests meet them, each by
/// passing its own values, which come later on the command line and win.
pub const SUITE_LIMITS: [&str; 16] = [
    "--send-rate",
    "100000",
    "--call-rate",
    "0",
    "--new-chat-per-minute",
    "100000",
    "--send-burst",
    "100000",
    "--max-streams-per-user",
    "1000",
    "--sign-in-per-address-per-minute",
    "100000",
    "--max-connections-per-address",
    "100000",
    "--sign-out-per-address-per-minute",
    "100000",
];

/// A password that passes validation; every account in the suite uses it.
pub const PASSWORD: &str = "correct horse battery staple";

/// What `spawn_app` puts in the static folder, so tests can recognise the UI being served.
pub const INDEX_HTML: &str = "<!doctype html><title>chat test ui</title><main>chat</main>";

/// One running server with its own data directory, which outlives restarts of the server.
pub struct TestApp {
    /// Where the server listens now; a restart moves it to a fresh port.
    pub addr: SocketAddr,
    root: TempDir,
    /// The test's own PostgreSQL database, when the suite runs on PostgreSQL.
    database: Option<TestDatabase>,
    extra_args: Vec<String>,
    running: Option<Running>,
}

struct Running {
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), chat_server::ServerError>>,
}

/// Starts a server with the suite's settings (fresh data dir, static dir holding
/// [`INDEX_HTML`], 1-second heartbeats).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Like [`spawn_app`], with extra command-line flags for the few tests that need another knob
/// (token lifetime, limits). They come last, so they override the suite's own.
pub async fn spawn_app_with(extra_args: &[&str]) -> TestApp {
    let root = tempfile::tempdir().expect("cannot create a temporary directory");
    let static_dir = root.path().join("static");
    std::fs::create_dir(&static_dir).expect("cannot create the static dir");
    std::fs::write(static_dir.join("index.html"), INDEX_HTML).expect("cannot write index.html");
    let mut app = TestApp {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        root,
        database: TestDatabase::for_backend().await,
        extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        running: None,
    };
    app.start().await;
    app
}

impl TestApp {
    async fn start(&mut self) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind 127.0.0.1:0");
        self.addr = listener.local_addr().expect("listener has no address");
        let mut args = vec![
            "chat-server".to_owned(),
            "--listen".to_owned(),
            self.addr.to_string(),
            "--data-dir".to_owned(),
            self.data_dir().display().to_string(),
            "--static-dir".to_owned(),
            self.static_dir().display().to_string(),
            "--heartbeat-secs".to_owned(),
            HEARTBEAT_SECS.to_string(),
        ];
        args.extend(SUITE_LIMITS.map(str::to_owned));
        args.extend(database_args(self.database.as_ref()));
        args.extend(self.extra_args.iter().cloned());
        let settings = Settings::parse_from(args);
        // Dropping the TestApp drops `stop`, which also completes the shutdown future.
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(chat_server::run(listener, settings, shutdown));
        self.running = Some(Running { stop, server });
    }

    /// Completes the shutdown future and waits for `run` to return, which must be `Ok`.
    pub async fn stop(&mut self) {
        let Running { stop, server } = self.running.take().expect("the server is not running");
        let _ = stop.send(());
        match tokio::time::timeout(WAIT, server).await {
            Err(_) => {
                panic!("run did not return within {WAIT:?} of the shutdown future completing")
            }
            Ok(Err(join_error)) => panic!("the server task panicked: {join_error}"),
            Ok(Ok(Err(error))) => panic!("run returned an error after shutdown: {error}"),
            Ok(Ok(Ok(()))) => {}
        }
    }

    /// Starts a new server on the same data directory (and a new port), stopping the running
    /// one first if there is one.
    pub async fn restart(&mut self) {
        if self.running.is_some() {
            self.stop().await;
        }
        self.start().await;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The test's own PostgreSQL database, when the suite runs on PostgreSQL.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }

    pub fn static_dir(&self) -> PathBuf {
        self.root.path().join("static")
    }
}

impl Server for TestApp {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What every server under test offers: an address and real clients for it. The in-process
/// [`TestApp`] and the real binary in a [`ServerProcess`] both have it, so every helper below
/// works on either.
pub trait Server {
    fn addr(&self) -> SocketAddr;

    /// An absolute URL on the server, for raw HTTP requests.
    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr(), path_and_query)
    }

    /// A native gRPC connection: HTTP/2 with prior knowledge.
    async fn channel(&self) -> Channel {
        let endpoint = Channel::from_shared(self.url("")).expect("invalid server URL");
        within(endpoint.connect())
            .await
            .expect("cannot connect over HTTP/2")
    }

    /// A native gRPC connection whose client side is bound to `local`, another loopback
    /// address (127.0.0.2, ...), so the server sees a different peer address: how a test plays
    /// two people at two places.
    async fn channel_from(&self, local: IpAddr) -> Channel {
        let endpoint = Channel::from_shared(self.url("")).expect("invalid server URL");
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        connector.set_nodelay(true);
        within(endpoint.connect_with_connector(connector))
            .await
            .unwrap_or_else(|error| panic!("cannot connect from {local}: {error}"))
    }

    /// The Auth service, called from the loopback address `local` (see [`Self::channel_from`]).
    async fn auth_from(&self, local: IpAddr) -> AuthClient<Channel> {
        AuthClient::new(self.channel_from(local).await)
    }

    async fn chat(&self) -> ChatClient<Channel> {
        ChatClient::new(self.channel().await)
    }

    async fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel().await)
    }

    /// The Chat service over gRPC-web on HTTP/1.1, as the browser UI talks to it.
    fn web_chat(&self) -> ChatClient<WebClient> {
        let (service, origin) = web_client(self.addr(), Http::Http1);
        ChatClient::with_origin(service, origin)
    }

    /// The Auth service over gRPC-web on HTTP/1.1.
    fn web_auth(&self) -> AuthClient<WebClient> {
        let (service, origin) = web_client(self.addr(), Http::Http1);
        AuthClient::with_origin(service, origin)
    }
}

/// The real `chat-server` binary in a child process, for the faults only a process meets:
/// SIGKILL, SIGTERM, operating-system limits. Like [`TestApp`] it owns a data directory that
/// outlives restarts; unlike it, it keeps its port across restarts, so clients that reconnect
/// find the restarted server where the old one was. Dropping it kills the process.
pub struct ServerProcess {
    pub addr: SocketAddr,
    root: TempDir,
    /// The PostgreSQL database, when the suite runs on PostgreSQL; shared by the servers of
    /// a cluster (see [`spawn_process_sharing`]).
    database: Option<Arc<TestDatabase>>,
    extra_args: Vec<String>,
    /// A command the binary is started under, e.g. a shell that changes the process's signal
    /// dispositions and then `exec`s the server, keeping the pid.
    wrapper: Vec<String>,
    child: Option<std::process::Child>,
    /// How many times a process was started, which numbers its log file.
    starts: usize,
}

/// How long a started binary may take to answer its health check.
const STARTUP: Duration = Duration::from_secs(15);

/// Starts the binary (`CARGO_BIN_EXE_chat-server`, built by `cargo test` for this profile) on
/// a free port with a fresh data directory and the suite's settings plus `extra_args`.
pub async fn spawn_process(extra_args: &[&str]) -> ServerProcess {
    spawn_process_under(&[], extra_args).await
}

/// Like [`spawn_process`], with the binary started as the last argument of `wrapper`, so the
/// wrapper must `exec` it (the pid stays the server's).
pub async fn spawn_process_under(wrapper: &[&str], extra_args: &[&str]) -> ServerProcess {
    let database = TestDatabase::for_backend().await.map(Arc::new);
    start_process(wrapper, extra_args, database).await
}

/// Another server on the same PostgreSQL database as `other` (its own port and data
/// directory), for tests of several servers sharing one database.
pub async fn spawn_process_sharing(other: &ServerProcess, extra_args: &[&str]) -> ServerProcess {
    let database = other.database.clone();
    assert!(
        database.is_some(),
        "servers share a database only on PostgreSQL"
    );
    start_process(&[], extra_args, database).await
}

/// A server on SQLite whatever the suite's backend, for tests that start from an SQLite data
/// directory (the migration to PostgreSQL).
pub async fn spawn_sqlite_process(extra_args: &[&str]) -> ServerProcess {
    start_process(&[], extra_args, None).await
}

/// A server on `database`, a PostgreSQL database the test prepared (restored, migrated).
pub async fn spawn_process_on(database: TestDatabase, extra_args: &[&str]) -> ServerProcess {
    start_process(&[], extra_args, Some(Arc::new(database))).await
}

/// Runs the `chat-server` binary as an operator's tool (`backup`, `migrate`) or any other
/// program, without blocking the runtime; fails the test if it runs longer than `limit`.
pub async fn run_command(
    program: &str,
    args: Vec<String>,
    limit: Duration,
) -> std::process::Output {
    run_command_with_input(program, args, "", limit).await
}

/// Like [`run_command`], with `input` on the program's standard input (then its end). A
/// program still running after `limit` is killed, so that a hung one fails the test instead of
/// holding it (and the runtime, which waits for the thread reading its output) forever.
pub async fn run_command_with_input(
    program: &str,
    args: Vec<String>,
    input: &str,
    limit: Duration,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let shown = format!("{program} {}", args.join(" "));
    let mut child = std::process::Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {shown}: {error}"));
    let pid = child.id().to_string();
    // A program that exits without reading its input closes the pipe: not this function's
    // failure, the program's output says what it did.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let run = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(limit, run).await {
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            panic!("{shown} ran longer than {limit:?}")
        }
        Ok(Err(join_error)) => panic!("{shown} panicked: {join_error}"),
        Ok(Ok(Err(error))) => panic!("cannot run {shown}: {error}"),
        Ok(Ok(Ok(output))) => output,
    }
}

/// The path of the `chat-server` binary under test.
pub fn server_binary() -> &'static str {
    env!("CARGO_BIN_EXE_chat-server")
}

async fn start_process(
    wrapper: &[&str],
    extra_args: &[&str],
    database: Option<Arc<TestDatabase>>,
) -> ServerProcess {
    let root = tempfile::tempdir().expect("cannot create a temporary directory");
    // Bind port 0 to learn a free port, then free it for the server; a restart binds it again.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("cannot find a free port");
    let mut process = ServerProcess {
        addr,
        root,
        database,
        extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        wrapper: wrapper.iter().map(|arg| arg.to_string()).collect(),
        child: None,
        starts: 0,
    };
    process.start().await;
    process
}

impl ServerProcess {
    /// Starts the binary on the data directory and waits until it reports SERVING.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("cannot create a log");
        let binary = env!("CARGO_BIN_EXE_chat-server");
        let mut command = match self.wrapper.split_first() {
            None => std::process::Command::new(binary),
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
        };
        command
            .args(["--listen", &self.addr.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--static-dir")
            .arg(self.root.path().join("no-ui"))
            .args(["--heartbeat-secs", &HEARTBEAT_SECS.to_string()])
            .args(SUITE_LIMITS)
            .args(database_args(self.database.as_deref()))
            .args(&self.extra_args)
            // Everything the server itself logs, so tests can check what it writes down.
            .env("RUST_LOG", "info,chat_server=trace")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            // A plain file, as an operator's `>> chat.log 2>&1` would give it: when writes
            // fail (see `disk`), the server's log writes fail too, and must not hurt it.
            .stdout(log.try_clone().expect("cannot share the log file"))
            .stderr(log);
        self.child = Some(
            command
                .spawn()
                .expect("cannot start the chat-server binary"),
        );

        let ready = async {
            loop {
                if let Some(status) = self.try_wait() {
                    panic!("chat-server exited at startup ({status}):\n{}", self.log());
                }
                if self.is_serving().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(STARTUP, ready).await.is_err() {
            panic!(
                "chat-server did not serve within {STARTUP:?}:\n{}",
                self.log()
            );
        }
    }

    async fn is_serving(&self) -> bool {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let Ok(endpoint) = Channel::from_shared(self.url("")) else {
            return false;
        };
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        let check = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await;
        matches!(check, Ok(response) if response.get_ref().status() == ServingStatus::Serving)
    }

    /// SIGKILL: the process ends at once, whatever it was doing.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is not running");
        child.kill().expect("cannot kill chat-server");
        child.wait().expect("cannot reap chat-server");
    }

    /// SIGTERM, then waits (bounded) for the process to exit; returns its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let exited = async {
            loop {
                if let Some(status) = self.try_wait() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let status = match tokio::time::timeout(WAIT, exited).await {
            Ok(status) => status,
            Err(_) => panic!(
                "chat-server did not exit within {WAIT:?} of SIGTERM:\n{}",
                self.log()
            ),
        };
        self.child = None;
        status
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is not running").id()
    }

    /// The process's resident memory now (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.memory_status("VmRSS")
    }

    /// The most resident memory the process has held since it started or since the last
    /// [`Self::reset_peak_rss`] (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.memory_status("VmHWM")
    }

    /// Starts [`Self::peak_rss_bytes`] afresh from the current resident memory (writing 5 to
    /// `/proc/<pid>/clear_refs`, Linux 4.0 and later).
    pub fn reset_peak_rss(&self) {
        let path = format!("/proc/{}/clear_refs", self.pid());
        std::fs::write(&path, "5").unwrap_or_else(|error| panic!("cannot write {path}: {error}"));
    }

    /// A `kB` figure of `/proc/<pid>/status`, in bytes.
    fn memory_status(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"));
        kib * 1024
    }

    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("cannot poll chat-server")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The server's PostgreSQL database, when the suite runs on PostgreSQL.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_deref()
    }

    /// The flags that name this server's data (its data directory, and its database on
    /// PostgreSQL), for an operator's task run on it.
    pub fn store_args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_owned(),
            self.data_dir().display().to_string(),
        ];
        args.extend(database_args(self.database.as_deref()));
        args
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.root.path().join(format!("server-{start}.log"))
    }

    /// Everything the server printed, every start in order: for failure reports and for
    /// checks on what gets logged.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                format!("--- chat-server start {start} ---\n{text}")
            })
            .collect()
    }
}

impl Server for ServerProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the suite runs on PostgreSQL (`CHAT_TEST_BACKEND=postgres`) instead of SQLite.
pub fn on_postgres() -> bool {
    std::env::var("CHAT_TEST_BACKEND").is_ok_and(|backend| backend == "postgres")
}

/// The PostgreSQL server the suite creates its databases on, as an administrator's URL.
fn postgres_admin_url() -> String {
    std::env::var("CHAT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// One test's own PostgreSQL database, created empty and dropped (closing any connection a
/// server still holds) when this is dropped.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh database when the suite runs on PostgreSQL; `None` on SQLite.
    pub async fn for_backend() -> Option<Self> {
        if !on_postgres() {
            return None;
        }
        let name = format!("chat_test_{:016x}", rand::random::<u64>());
        admin_execute(&format!("CREATE DATABASE {name}")).await;
        let admin = postgres_admin_url();
        let (base, query) = match admin.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin.as_str(), String::new()),
        };
        let (scheme, rest) = base
            .split_once("://")
            .unwrap_or_else(|| panic!("CHAT_TEST_DATABASE_URL {admin} is not a URL"));
        let authority = rest.split('/').next().unwrap_or(rest);
        Some(Self {
            url: format!("{scheme}://{authority}/{name}{query}"),
            name,
        })
    }
}

impl TestDatabase {
    /// Ends every session on this database but the caller's, as an operator or a failover
    /// would (`pg_terminate_backend`); returns how many it ended.
    pub async fn terminate_connections(&self) -> i64 {
        self.query_count(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
    }

    /// Cuts every server off from this database, as a network partition or a database that
    /// refuses them would: no new connection is let in, and every open one is ended.
    pub async fn cut_off(&self) {
        admin_execute(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
            name = self.name
        ))
        .await;
    }

    /// Lets connections to this database in again, after [`Self::cut_off`].
    pub async fn reconnect(&self) {
        admin_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }

    /// Runs `statement` (an INSERT, UPDATE or DELETE) as an operator at a `psql` prompt
    /// would, behind the servers' backs.
    pub async fn execute(&self, statement: &str) {
        self.query_count(&format!(
            "WITH done AS ({statement} RETURNING 1) SELECT count(*) FROM done"
        ))
        .await;
    }

    /// A connection of its own to this database, and the task that drives it (which ends
    /// once the client is dropped).
    pub async fn connect(
        &self,
    ) -> (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ) {
        let (client, connection) =
            within(tokio_postgres::connect(&self.url, tokio_postgres::NoTls))
                .await
                .expect("cannot connect to the test database");
        (client, tokio::spawn(connection))
    }

    /// Runs `sql` (statements separated by semicolons, as a migration's) in one transaction.
    pub async fn batch(&self, sql: &str) {
        let (client, driver) = self.connect().await;
        within(client.batch_execute(&format!("BEGIN; {sql}; COMMIT")))
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        drop(client);
        let _ = driver.await;
    }

    /// The text the query `sql` returns (one row, one column), on a connection of its own.
    pub async fn query_text(&self, sql: &str) -> String {
        self.query_value(sql).await
    }

    /// The count the query `sql` returns, on a connection of its own.
    async fn query_count(&self, sql: &str) -> i64 {
        self.query_value(sql).await
    }

    /// The one value the query `sql` returns, on a connection of its own.
    async fn query_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        let (client, driver) = self.connect().await;
        let value: T = within(client.query_one(sql, &[]))
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .get(0);
        drop(client);
        let _ = driver.await;
        value
    }

    /// Every row of every table, as PostgreSQL prints rows: what the database holds, for
    /// tests that check what is (and is not) stored.
    pub async fn contents(&self) -> String {
        let (client, driver) = self.connect().await;
        let mut text = String::new();
        for table in [
            "accounts",
            "tokens",
            "chats",
            "chat_members",
            "chat_departures",
            "blocks",
            "messages",
        ] {
            let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {table} t");
            let rows: String = within(client.query_one(&sql, &[]))
                .await
                .unwrap_or_else(|error| panic!("{sql} failed: {error}"))
                .get(0);
            text.push_str(&rows);
            text.push('\n');
        }
        drop(client);
        let _ = driver.await;
        text
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop_it = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with its
        // own runtime does the work.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build a runtime")
                .block_on(admin_execute(&drop_it));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("cannot drop the test database {}", self.name);
        }
    }
}

/// Runs one statement on the PostgreSQL server as its administrator.
async fn admin_execute(sql: &str) {
    let url = postgres_admin_url();
    let (client, connection) = within(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .await
        .unwrap_or_else(|error| panic!("cannot connect to PostgreSQL at {url}: {error}"));
    let driver = tokio::spawn(connection);
    within(client.batch_execute(sql))
        .await
        .unwrap_or_else(|error| panic!("{sql} failed: {error}"));
    drop(client);
    let _ = driver.await;
}

/// The flags that put a server on `database`, if there is one.
fn database_args(database: Option<&TestDatabase>) -> Vec<String> {
    database
        .map(|database| vec!["--database-url".to_owned(), database.url.clone()])
        .unwrap_or_default()
}

/// Whether to run the fault tests' long versions (`CHAT_SOAK=1`): many more clients, kills
/// and rounds, for a soak run documented in RELIABILITY.md instead of the seconds CI spends.
pub fn soak() -> bool {
    std::env::var("CHAT_SOAK").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// Sends and receives message bytes as they are, so a test can put anything on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Reads (and discards) whatever the server sends until it closes the connection; returns how
/// long that took, or `None` if it was still open after `bound`.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt as _;
    let started = std::time::Instant::now();
    let mut buffer = [0; 4096];
    let closed = tokio::time::timeout(bound, async {
        while let Ok(read) = stream.read(&mut buffer).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
    closed.ok().map(|()| started.elapsed())
}

/// Awaits `future`, failing the test (at the caller's line) if it takes longer than [`WAIT`].
#[track_caller]
pub fn within<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(WAIT, future).await {
            Ok(output) => output,
            Err(_) => panic!("timed out after {WAIT:?} waiting at {caller}"),
        }
    }
}

pub fn credentials(user_id: &str, password: &str) -> Credentials {
    Credentials {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
        device: String::new(),
    }
}

/// Signs `user` up with [`PASSWORD`]; returns the (lower-cased) user id and the token.
pub async fn signed_up(app: &impl Server, user: &str) -> (String, String) {
    let session = within(app.auth().await.sign_up(credentials(user, PASSWORD)))
        .await
        .unwrap_or_else(|status| panic!("cannot sign up {user}: {status:?}"))
        .into_inner();
    (session.user_id, session.token)
}

/// A new session of `user` (signed up with [`PASSWORD`]): its token.
pub async fn signed_in(app: &impl Server, user: &str) -> String {
    within(app.auth().await.sign_in(credentials(user, PASSWORD)))
        .await
        .unwrap_or_else(|status| panic!("cannot sign in {user}: {status:?}"))
        .into_inner()
        .token
}

/// Signs out the session of `token`.
pub async fn sign_out(app: &impl Server, token: &str) {
    within(app.auth().await.sign_out(authed(token, SignOutRequest {})))
        .await
        .unwrap_or_else(|status| panic!("cannot sign out: {status:?}"));
}

/// Signs up each of `users` with [`PASSWORD`]; returns their tokens, in the same order.
pub async fn signed_up_all<const N: usize>(app: &impl Server, users: [&str; N]) -> [String; N] {
    let mut tokens = [const { String::new() }; N];
    for (token, user) in tokens.iter_mut().zip(users) {
        *token = signed_up(app, user).await.1;
    }
    tokens
}

/// Alice and Bob signed up and the chat of the two, where most tests begin: Alice's token,
/// Bob's token and the chat's id.
pub async fn alice_and_bob(app: &impl Server) -> (String, String, String) {
    let [alice, bob] = signed_up_all(app, ["alice", "bob"]).await;
    let chat_id = new_chat(app, &alice, &["alice", "bob"]).await;
    (alice, bob, chat_id)
}

/// Alice signed up and a chat of her own: her token and the chat's id.
pub async fn alice_alone(app: &impl Server) -> (String, String) {
    let (_, alice) = signed_up(app, "alice").await;
    let chat_id = new_chat(app, &alice, &["alice"]).await;
    (alice, chat_id)
}

/// Adds a metadata entry such as `chat-id` or `user-id` to a request.
pub fn with_metadata<T>(mut request: Request<T>, key: &'static str, value: &str) -> Request<T> {
    let value = value.parse().expect("value is not valid metadata");
    request.metadata_mut().insert(key, value);
    request
}

/// Creates (or finds) the chat of `members` as the caller; returns its id.
pub async fn new_chat(app: &impl Server, token: &str, members: &[&str]) -> String {
    let request = NewRequest {
        user_ids: members.iter().map(|m| m.to_string()).collect(),
    };
    within(app.chat().await.new_chat(authed(token, request)))
        .await
        .unwrap_or_else(|status| panic!("cannot create chat {members:?}: {status:?}"))
        .into_inner()
        .chat_id
}

/// A Send request with only the fields every message needs.
pub fn send_request(chat_id: &str, client_id: &str, text: &str) -> SendRequest {
    SendRequest {
        chat_id: chat_id.to_owned(),
        client_id: client_id.to_owned(),
        text: text.to_owned(),
        ..Default::default()
    }
}

/// Sends `text` with Send and returns the stored message.
pub async fn send_text(
    chat: &mut ChatClient<Channel>,
    token: &str,
    chat_id: &str,
    client_id: &str,
    text: &str,
) -> Message {
    within(chat.send(authed(token, send_request(chat_id, client_id, text))))
        .await
        .unwrap_or_else(|status| panic!("cannot send {client_id}: {status:?}"))
        .into_inner()
        .message
        .expect("SendResponse carries no message")
}

/// Sends `count` messages with `text` one after another (client ids `{prefix}0`,
/// `{prefix}1`, ...) and returns them as stored.
pub async fn send_in_order(
    chat: &mut ChatClient<Channel>,
    token: &str,
    chat_id: &str,
    prefix: &str,
    count: usize,
    text: &str,
) -> Vec<Message> {
    let mut sent = Vec::with_capacity(count);
    for n in 0..count {
        sent.push(send_text(chat, token, chat_id, &format!("{prefix}{n}"), text).await);
    }
    sent
}

/// Sends `count` messages with `text` (client ids `many-0`, `many-1`, ...), eight at a time,
/// and returns them in id order.
pub async fn send_many(
    app: &impl Server,
    token: &str,
    chat_id: &str,
    count: usize,
    text: &str,
) -> Vec<Message> {
    let chat = app.chat().await;
    let mut sent = Vec::with_capacity(count);
    let numbers: Vec<usize> = (0..count).collect();
    for batch in numbers.chunks(8) {
        let sends = batch.iter().map(|n| {
            let mut chat = chat.clone();
            async move { send_text(&mut chat, token, chat_id, &format!("many-{n}"), text).await }
        });
        sent.extend(futures::future::join_all(sends).await);
    }
    sent.sort_by_key(|message| id_number(&message.id));
    sent
}

/// The newest page (up to 100 messages) of a chat's history, oldest first.
pub async fn history_of(app: &impl Server, token: &str, chat_id: &str) -> Vec<Message> {
    let request = HistoryRequest {
        chat_id: chat_id.into(),
        limit: 100,
        before_id: String::new(),
    };
    within(app.chat().await.history(authed(token, request)))
        .await
        .unwrap_or_else(|status| panic!("cannot read the history of {chat_id}: {status:?}"))
        .into_inner()
        .messages
}

/// A chat's whole history, oldest first, read page by page with `before_id`.
pub async fn full_history(app: &impl Server, token: &str, chat_id: &str) -> Vec<Message> {
    let mut chat = app.chat().await;
    let mut pages = Vec::new();
    let mut before_id = String::new();
    loop {
        let request = HistoryRequest {
            chat_id: chat_id.into(),
            limit: 100,
            before_id: before_id.clone(),
        };
        let page = within(chat.history(authed(token, request)))
            .await
            .unwrap_or_else(|status| panic!("cannot read the history of {chat_id}: {status:?}"))
            .into_inner();
        let Some(first) = page.messages.first() else {
            break;
        };
        before_id = first.id.clone();
        let has_more = page.has_more;
        pages.push(page.messages);
        if !has_more {
            break;
        }
    }
    pages.into_iter().rev().flatten().collect()
}

/// The caller's chats, as List returns them.
pub async fn chats_of(app: &impl Server, token: &str) -> Vec<ChatSummary> {
    within(app.chat().await.list(authed(token, ListRequest::default())))
        .await
        .unwrap_or_else(|status| panic!("cannot list chats: {status:?}"))
        .into_inner()
        .chats
}

/// Opens a Stream and waits for its response headers.
pub async fn open_stream(
    chat: &mut ChatClient<Channel>,
    token: &str,
    chat_id: &str,
    after_id: &str,
) -> Streaming<Event> {
    let request = StreamRequest {
        chat_id: chat_id.to_owned(),
        after_id: after_id.to_owned(),
    };
    within(chat.stream(authed(token, request)))
        .await
        .unwrap_or_else(|status| panic!("cannot open a stream: {status:?}"))
        .into_inner()
}

/// Reads the Message events of `stream` until `count` have arrived. A stream that ends or
/// fails (the server lost its database for a moment) is reopened on `server` from the last id
/// seen, as a client resumes by cursor.
pub async fn messages_resuming(
    server: &impl Server,
    mut stream: Streaming<Event>,
    token: &str,
    chat_id: &str,
    count: usize,
) -> Vec<Message> {
    let mut seen: Vec<Message> = Vec::new();
    while seen.len() < count {
        match within(stream.message()).await {
            Ok(Some(event)) => {
                if let Some(EventKind::Message(message)) = event.event {
                    seen.push(message);
                }
            }
            Ok(None) | Err(_) => {
                let cursor = seen.last().map(|m| m.id.clone()).unwrap_or_default();
                stream = open_stream(&mut server.chat().await, token, chat_id, &cursor).await;
            }
        }
    }
    seen
}

/// Asserts that the chat's history, read through `server`, holds exactly the acknowledged
/// messages, each once (nothing lost, nothing stored twice); returns the history.
pub async fn assert_history_is_acknowledged(
    server: &impl Server,
    token: &str,
    chat_id: &str,
    acked: &[Message],
) -> Vec<Message> {
    let history = full_history(server, token, chat_id).await;
    let mut acked_ids: Vec<u64> = acked.iter().map(|m| id_number(&m.id)).collect();
    acked_ids.sort_unstable();
    let history_ids: Vec<u64> = history.iter().map(|m| id_number(&m.id)).collect();
    assert_eq!(
        acked_ids, history_ids,
        "the history is not what was acknowledged (lost or doubled)"
    );
    history
}

/// Opens a Connect stream with the given metadata (`chat-id`, `user-id`, `after-id`). The
/// returned sender feeds the request stream; keep it alive while the stream is in use.
pub async fn open_connect(
    chat: &mut ChatClient<Channel>,
    token: Option<&str>,
    metadata: &[(&'static str, &str)],
) -> Result<(mpsc::Sender<Message>, Streaming<Message>), Status> {
    let (outbox, requests) = mpsc::channel(64);
    let mut request = match token {
        Some(token) => authed(token, ReceiverStream::new(requests)),
        None => Request::new(ReceiverStream::new(requests)),
    };
    for &(key, value) in metadata {
        request = with_metadata(request, key, value);
    }
    let response = within(chat.connect_chat(request)).await?;
    Ok((outbox, response.into_inner()))
}

/// Reads the next `n` messages of a Stream, skipping heartbeats and the other events that are
/// not messages (presence, read positions, typing, members); fails if the stream ends or errs first, or
/// if they take longer than [`WAIT`] in all.
#[track_caller]
pub fn next_messages(
    stream: &mut Streaming<Event>,
    n: usize,
) -> impl Future<Output = Vec<Message>> + '_ {
    within(async move {
        let mut messages = Vec::with_capacity(n);
        while messages.len() < n {
            match stream.message().await {
                Ok(Some(Event {
                    event: Some(EventKind::Message(message)),
                })) => messages.push(message),
                Ok(Some(Event {
                    event: Some(EventKind::Change(change)),
                })) => panic!("an unexpected change: {change:?}"),
                // Heartbeats, and the events that are not stored.
                Ok(Some(Event { event: Some(_) })) => {}
                Ok(Some(Event { event: None })) => panic!("an event with no content"),
                Ok(None) => panic!("the stream ended after {} of {n} messages", messages.len()),
                Err(status) => panic!(
                    "the stream failed after {} of {n} messages: {status:?}",
                    messages.len()
                ),
            }
        }
        messages
    })
}

/// Reads the next `n` items of any stream (a Connect stream's echoes, raw events).
#[track_caller]
pub fn take<T>(stream: &mut Streaming<T>, n: usize) -> impl Future<Output = Vec<T>> + '_ {
    within(async move {
        let mut items = Vec::with_capacity(n);
        while items.len() < n {
            match stream.message().await {
                Ok(Some(item)) => items.push(item),
                Ok(None) => panic!("the stream ended after {} of {n} items", items.len()),
                Err(status) => panic!(
                    "the stream failed after {} of {n} items: {status:?}",
                    items.len()
                ),
            }
        }
        items
    })
}

/// Reads a stream until it fails and returns the status; a clean end fails the test. Items
/// before the failure are skipped: callers check them separately where they matter.
#[track_caller]
pub fn failure_of<T>(stream: &mut Streaming<T>) -> impl Future<Output = Status> + '_ {
    within(async move {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended cleanly instead of failing"),
                Err(status) => return status,
            }
        }
    })
}

/// The status a streaming call failed with, whether the server refused the call itself or
/// accepted it and then ended the stream with an error.
pub async fn streaming_failure<T>(call: Result<Response<Streaming<T>>, Status>) -> Status {
    match call {
        Err(status) => status,
        Ok(response) => failure_of(&mut response.into_inner()).await,
    }
}

/// A message id as the number it encodes; fails unless it is plain decimal digits.
pub fn id_number(id: &str) -> u64 {
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "message id {id:?} is not a decimal string"
    );
    id.parse()
        .unwrap_or_else(|_| panic!("message id {id:?} is not a u64"))
}

/// The ids of `messages`, in order.
pub fn ids(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|message| message.id.clone()).collect()
}

/// Sends one raw HTTP/1.1 request, as a browser would, and returns the response head and
/// its whole body.
pub async fn http1(request: http::Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    within(async move {
        let response = client
            .request(request)
            .await
            .expect("HTTP/1.1 request failed");
        let (head, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("cannot read the response body")
            .to_bytes();
        (head, body)
    })
    .await
}

/// What a refusal carries in gRPC's standard error details: the reason of its `ErrorInfo`
/// (checked to be in the chat domain and known) and the delay of its `RetryInfo`.
pub fn error_details(status: &Status) -> (Option<Reason>, Option<Duration>) {
    let details = status.get_error_details();
    let reason = details.error_info().map(|info| {
        Reason::parse(&info.domain, &info.reason)
            .unwrap_or_else(|| panic!("an unknown reason {info:?} in {status:?}"))
    });
    let retry = details.retry_info().map(|info| {
        info.retry_delay
            .unwrap_or_else(|| panic!("a RetryInfo without a delay in {status:?}"))
    });
    (reason, retry)
}

/// What a `ChatClient<T>` needs of its transport: tonic's `Channel` (native gRPC, HTTP/2)
/// and [`WebClient`] (gRPC-web, HTTP/1.1) both have it, so one test body runs over both.
pub trait Transport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<tonic::codegen::StdError>,
        ResponseBody: tonic::codegen::Body<
            Data = Bytes,
            Error: Into<tonic::codegen::StdError> + Send,
        > + Send
                          + 'static,
    > + Clone
{
}

impl<T> Transport for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<tonic::codegen::StdError>,
            ResponseBody: tonic::codegen::Body<
                Data = Bytes,
                Error: Into<tonic::codegen::StdError> + Send,
            > + Send
                              + 'static,
        > + Clone
{
}

/// Reads `stream` until `pick` accepts an event (returning what it made of it), skipping every
/// other event; fails if the stream ends or errs first, or after [`WAIT`].
#[track_caller]
pub fn next_event<'a, T>(
    stream: &'a mut Streaming<Event>,
    what: &'a str,
    mut pick: impl FnMut(EventKind) -> Option<T> + 'a,
) -> impl Future<Output = T> + 'a {
    within(async move {
        loop {
            match stream.message().await {
                Ok(Some(Event { event: Some(event) })) => {
                    if let Some(picked) = pick(event) {
                        return picked;
                    }
                }
                Ok(Some(Event { event: None })) => panic!("an event with no content"),
                Ok(None) => panic!("the stream ended before {what}"),
                Err(status) => panic!("the stream failed before {what}: {status:?}"),
            }
        }
    })
}

/// Reads `stream` for `quiet` and fails if `pick` accepts any event in that time.
pub async fn assert_no_event<T: std::fmt::Debug>(
    stream: &mut Streaming<Event>,
    what: &str,
    quiet: Duration,
    mut pick: impl FnMut(EventKind) -> Option<T>,
) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return,
            Ok(Ok(Some(Event { event: Some(event) }))) => {
                if let Some(picked) = pick(event) {
                    panic!("{what}: {picked:?}");
                }
            }
            Ok(other) => panic!("the stream broke while waiting for silence: {other:?}"),
        }
    }
}
