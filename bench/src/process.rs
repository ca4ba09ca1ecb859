//! The processes a run measures, started by the benchmark itself: the real `chat-server` on a
//! fresh data directory, and the ceiling server (this same binary, `ceiling-server`). Each is
//! its own process so its CPU time and RSS can be read from /proc apart from the load
//! generator's. Every process is killed when its handle is dropped, and also when the
//! benchmark itself dies (parent-death signal), so no run leaves a server behind.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::error::BenchError;

/// How long a server may take from spawn to accepting connections.
const STARTUP: Duration = Duration::from_secs(20);
/// How long a graceful stop (SIGTERM) may take before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// chat-server's abuse-limit flags as the benchmark sets them (see `spawn`). Every client of
/// a run comes from 127.0.0.1, so the per-address connection cap is lifted too (the open-file
/// limit is the real bound).
pub const LIFTED_LIMITS: [&str; 14] = [
    "--send-rate",
    "1000000",
    "--call-rate",
    "0",
    "--send-burst",
    "1000000",
    "--max-streams-per-user",
    "100000",
    "--sign-in-per-address-per-minute",
    "0",
    "--max-connections-per-address",
    "1000000",
    "--max-connections",
    "1000000",
];

/// Which server a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `chat-server`: storage, auth and validation, everything a user gets.
    Real,
    /// The ceiling: the same RPCs over the same transport with none of the work.
    Ceiling,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Real => "chat-server",
            Kind::Ceiling => "ceiling server",
        })
    }
}

/// How to start either server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub server_bin: PathBuf,
    pub heartbeat_secs: u64,
    /// The built web UI to serve, for the page-load measurement.
    pub static_dir: Option<PathBuf>,
    /// How many chats the ceiling's List answers with (the real server lists what it stores).
    pub ceiling_chats: usize,
    /// chat-server on PostgreSQL at this URL (`--database-url`) instead of SQLite.
    pub database_url: Option<String>,
    /// chat-server's `--database-pool-size`, with `database_url`.
    pub database_pool_size: Option<u32>,
    /// chat-server with its `/metrics` listener (`--metrics-listen`) on a port of its own.
    pub metrics: bool,
}

impl ServerOptions {
    pub fn new(server_bin: &Path) -> Self {
        Self {
            server_bin: server_bin.to_owned(),
            heartbeat_secs: 15,
            static_dir: None,
            ceiling_chats: 0,
            database_url: None,
            database_pool_size: None,
            metrics: false,
        }
    }
}

/// A running server process on 127.0.0.1, with its own temporary directory (data and log).
pub struct ServerProcess {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Where chat-server serves `/metrics`, when asked for by [`ServerOptions::metrics`].
    pub metrics_addr: Option<SocketAddr>,
    options: ServerOptions,
    child: Child,
    dir: TempDir,
    starts: u32,
}

impl ServerProcess {
    pub async fn start(kind: Kind, options: &ServerOptions) -> Result<Self, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("chat-bench-")
            .tempdir()
            .map_err(BenchError::io("cannot create a temporary directory"))?;
        let (child, addr, metrics_addr) = spawn(kind, options, dir.path(), 1).await?;
        Ok(Self {
            kind,
            addr,
            metrics_addr,
            options: options.clone(),
            child,
            dir,
            starts: 1,
        })
    }

    pub fn pid(&self) -> Result<u32, BenchError> {
        self.child
            .id()
            .ok_or_else(|| self.died("it has already been reaped".into()))
    }

    /// CPU time so far of each of the process's threads, by name; fails if it has exited.
    pub fn thread_cpu(&mut self) -> Result<BTreeMap<String, Duration>, BenchError> {
        self.check_alive()?;
        thread_cpu(self.pid()?).map_err(BenchError::io(format!(
            "cannot read /proc for the threads of the {}",
            self.kind
        )))
    }

    /// CPU time and RSS of the process now; fails if it has exited.
    pub fn usage(&mut self) -> Result<Usage, BenchError> {
        self.check_alive()?;
        Usage::of(self.pid()?).map_err(BenchError::io(format!(
            "cannot read /proc for the {}",
            self.kind
        )))
    }

    /// Fails with the end of its log if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.died(status.to_string())),
            Err(error) => Err(self.died(error.to_string())),
        }
    }

    /// SIGKILLs the process (no chance to flush anything) and starts it again on the same
    /// data directory, on a new port: what a crash and a restart look like to storage.
    pub async fn crash_and_restart(&mut self) -> Result<(), BenchError> {
        self.kill().await?;
        self.starts += 1;
        let (child, addr, metrics_addr) =
            spawn(self.kind, &self.options, self.dir.path(), self.starts).await?;
        self.child = child;
        self.addr = addr;
        self.metrics_addr = metrics_addr;
        Ok(())
    }

    /// SIGKILLs the process and waits for it: a server dying with no chance to flush anything.
    pub async fn kill(&mut self) -> Result<(), BenchError> {
        self.child
            .kill()
            .await
            .map_err(BenchError::io(format!("cannot kill the {}", self.kind)))
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited 0 within the grace
    /// period (a server must shut down cleanly, also under load).
    pub async fn stop(mut self) -> Result<bool, BenchError> {
        let pid = self.pid()?;
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| BenchError::Setup(format!("pid {pid} out of range")))?;
        // SAFETY: kill(2) with a pid this handle owns and has not reaped (checked by `pid`).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status.success()),
            Ok(Err(error)) => Err(BenchError::io(format!("waiting for the {}", self.kind))(
                error,
            )),
            Err(_) => {
                let _ = self.child.kill().await;
                Ok(false)
            }
        }
    }

    /// Bytes of the real server's database: the SQLite file and its write-ahead log.
    pub fn database_bytes(&self) -> u64 {
        ["chat.db", "chat.db-wal"]
            .iter()
            .filter_map(|name| std::fs::metadata(self.dir.path().join("data").join(name)).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    /// The last lines the process logged, for error reports.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(log_path(self.dir.path(), self.starts)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn died(&self, status: String) -> BenchError {
        BenchError::ServerDied {
            server: self.kind.to_string(),
            status,
            log: self.log_tail(),
        }
    }
}

fn log_path(dir: &Path, start: u32) -> PathBuf {
    dir.join(format!("server-{start}.log"))
}

/// Starts the process on a free loopback port and waits until it accepts connections; returns
/// it with its address and, for chat-server with [`ServerOptions::metrics`], its metrics
/// listener's.
async fn spawn(
    kind: Kind,
    options: &ServerOptions,
    dir: &Path,
    start: u32,
) -> Result<(Child, SocketAddr, Option<SocketAddr>), BenchError> {
    let addr = free_port()?;
    let mut metrics_addr = None;
    let log = std::fs::File::create(log_path(dir, start))
        .map_err(BenchError::io("cannot create the server log"))?;
    let log_err = log
        .try_clone()
        .map_err(BenchError::io("cannot create the server log"))?;
    let mut command = match kind {
        Kind::Real => {
            if !options.server_bin.is_file() {
                return Err(BenchError::Setup(format!(
                    "no server binary at {}: build it with `cargo build --release -p chat-server`, or pass --server-bin",
                    options.server_bin.display()
                )));
            }
            let mut command = Command::new(&options.server_bin);
            command.arg("--data-dir").arg(dir.join("data"));
            // The abuse limits stay in the path of every call, set high enough not to bind:
            // one benchmark account sends and subscribes for many people, and all accounts
            // sign up from 127.0.0.1.
            command.args(LIFTED_LIMITS);
            // A folder without index.html: the server then serves the API only.
            let static_dir = options
                .static_dir
                .clone()
                .unwrap_or_else(|| dir.join("no-ui"));
            command.arg("--static-dir").arg(static_dir);
            if let Some(url) = &options.database_url {
                command.arg("--database-url").arg(url);
            }
            if let Some(size) = options.database_pool_size {
                command.arg("--database-pool-size").arg(size.to_string());
            }
            if options.metrics {
                let metrics = free_port()?;
                command.arg("--metrics-listen").arg(metrics.to_string());
                metrics_addr = Some(metrics);
            }
            command
        }
        Kind::Ceiling => {
            let me = std::env::current_exe()
                .map_err(BenchError::io("cannot find the chat-bench binary itself"))?;
            let mut command = Command::new(me);
            command
                .arg("ceiling-server")
                .arg("--chats")
                .arg(options.ceiling_chats.to_string());
            if let Some(static_dir) = &options.static_dir {
                command.arg("--static-dir").arg(static_dir);
            }
            command
        }
    };
    command
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--heartbeat-secs")
        .arg(options.heartbeat_secs.to_string())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true);
    // SAFETY: between fork and exec only prctl(2) runs, which is async-signal-safe. The
    // signal makes the kernel kill the server if the benchmark dies without dropping it
    // (SIGKILL, a panic in another thread), so no run leaves a server behind.
    unsafe {
        command.as_std_mut().pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(BenchError::io(format!("cannot start the {kind}")))?;

    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log_path(dir, start)).unwrap_or_default();
            return Err(BenchError::ServerDied {
                server: kind.to_string(),
                status: status.to_string(),
                log: text,
            });
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok((child, addr, metrics_addr));
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Timeout {
                what: format!("starting the {kind}"),
                limit: STARTUP,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port nobody listens on now: bind port 0, read what the kernel chose, close.
fn free_port() -> Result<SocketAddr, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .map_err(BenchError::io("cannot find a free port on 127.0.0.1"))
}

/// A process's CPU time so far and its resident memory, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu: Duration,
    pub rss_bytes: u64,
    pub at: Instant,
}

impl Usage {
    pub fn of(pid: u32) -> std::io::Result<Self> {
        Self::read(&format!("/proc/{pid}"))
    }

    /// The load generator's own usage, to show what share of the machine it took.
    pub fn of_self() -> Result<Self, BenchError> {
        Self::read("/proc/self").map_err(BenchError::io("cannot read /proc/self"))
    }

    fn read(dir: &str) -> std::io::Result<Self> {
        let at = Instant::now();
        let bad = |what: &str| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{dir}: {what}"))
        };
        let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
        let (_, cpu) = parse_stat(&stat).ok_or_else(|| bad("bad stat"))?;
        let status = std::fs::read_to_string(format!("{dir}/status"))?;
        let rss_kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| bad("no VmRSS in status"))?;
        Ok(Self {
            cpu,
            rss_bytes: rss_kb * 1024,
            at,
        })
    }

    /// CPU used between `self` and `later`, as a share of one core (1.0 = one core busy).
    pub fn cores_until(&self, later: &Usage) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        later.cpu.saturating_sub(self.cpu).as_secs_f64() / wall
    }
}

/// A `stat` file's (of a process or a thread, proc(5)) name and CPU time so far.
fn parse_stat(stat: &str) -> Option<(&str, Duration)> {
    // The name is in parentheses and may contain spaces and parentheses itself.
    let (before, after_name) = stat.rsplit_once(')')?;
    let name = before.split_once('(')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `fields[0]` is field 3.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((
        name,
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()),
    ))
}

/// CPU time so far of each thread of process `pid`, summed by thread name (the threads of
/// a pool share theirs). A thread that ended is no longer counted, so compare readings of
/// long-lived threads only.
pub fn thread_cpu(pid: u32) -> std::io::Result<BTreeMap<String, Duration>> {
    let mut by_name = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
            continue;
        };
        if let Some((name, cpu)) = parse_stat(&stat) {
            *by_name.entry(name.to_owned()).or_insert(Duration::ZERO) += cpu;
        }
    }
    Ok(by_name)
}

/// CPU time so far of the processes named `postgres` (PostgreSQL's server, its background
/// workers and one backend per connection), read from /proc. The server may be shared with
/// other work, so the backends serving `database` (their command line names it) are also
/// summed apart.
#[derive(Debug, Clone, Default)]
pub struct PostgresCpu {
    /// pid → (CPU time so far, whether it serves `database`).
    by_pid: std::collections::HashMap<u32, (Duration, bool)>,
}

impl PostgresCpu {
    pub fn read(database: &str) -> Self {
        let mut by_pid = std::collections::HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self { by_pid };
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = format!("/proc/{pid}");
            let is_postgres = std::fs::read_to_string(format!("{dir}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres");
            if !is_postgres {
                continue;
            }
            // A backend's title is `postgres: user database address state`.
            let ours = std::fs::read_to_string(format!("{dir}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split([' ', '\0']).any(|word| word == database));
            if let Ok(usage) = Usage::read(&dir) {
                by_pid.insert(pid, (usage.cpu, ours));
            }
        }
        Self { by_pid }
    }

    /// CPU used from `self` to `later`: (the backends of the database, every postgres
    /// process). A process that exited in between is missing from both ends, so the sums
    /// are a slight underestimate; one that started in between counts whole.
    pub fn used_until(&self, later: &PostgresCpu) -> (Duration, Duration) {
        let (mut ours, mut all) = (Duration::ZERO, Duration::ZERO);
        for (pid, (cpu, is_ours)) in &later.by_pid {
            let before = self.by_pid.get(pid).map_or(Duration::ZERO, |(cpu, _)| *cpu);
            let used = cpu.saturating_sub(before);
            all += used;
            if *is_ours {
                ours += used;
            }
        }
        (ours, all)
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Raises this process's open-file limit to its hard limit and returns the new soft limit.
/// Servers started afterwards inherit it, so both ends of a 10,000-stream run can hold their
/// sockets.
pub fn raise_open_files_limit() -> Result<u64, BenchError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from a valid, owned rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(BenchError::io("getrlimit(RLIMIT_NOFILE)")(
                std::io::Error::last_os_error(),
            ));
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(BenchError::io("setrlimit(RLIMIT_NOFILE)")(
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_thread_s_name_and_cpu_even_with_parentheses_in_the_name() {
        // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 10 0 0 0 250 150 0 0 20 0 9 0";
        let (name, cpu) = parse_stat(stat).unwrap();
        assert_eq!(name, "a (b) c");
        assert_eq!(
            cpu,
            Duration::from_secs_f64(400.0 / clock_ticks_per_second())
        );
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
    }

    #[test]
    fn this_process_s_threads_are_read_by_name() {
        let threads = thread_cpu(std::process::id()).unwrap();
        assert!(!threads.is_empty(), "no thread read: {threads:?}");
    }
}
