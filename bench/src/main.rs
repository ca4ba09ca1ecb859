//! `chat-bench`: the project's benchmark. It starts what it measures itself (the real
//! `chat-server` on a temporary data directory, and a ceiling server that does no work on the
//! same transport), puts the same load on both in one run, prints each figure beside the
//! ceiling's with their ratio and the target, and writes a JSON summary. Loopback only;
//! every phase is bounded in time and count. See BENCHMARKS.md for figures and commands.

mod ceiling;
mod client;
mod error;
mod process;
mod relay;
mod report;
mod scenario;
mod scrape;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::error::BenchError;
use crate::report::{Machine, ScenarioReport, Summary};
use crate::scenario::Context;

#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    about = "Benchmarks chat-server against a no-work ceiling server on the same transport"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Tiny sizes, a few seconds per scenario: checks that the benchmark still runs (the
    /// test command does this); its figures mean nothing and targets are not judged.
    #[arg(long, global = true)]
    smoke: bool,

    /// The chat-server binary to measure.
    #[arg(long, global = true, default_value = "target/release/chat-server")]
    server_bin: PathBuf,

    /// Where to write the JSON summary.
    #[arg(long, global = true, default_value = "target/bench/summary.json")]
    summary: PathBuf,

    /// The built web UI (trunk build --release), for the bundle scenario.
    #[arg(long, global = true, default_value = "dist")]
    dist: PathBuf,

    /// The Node.js script that times page loads in headless Chromium.
    #[arg(long, global = true, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/page_load.mjs"))]
    page_script: PathBuf,

    /// The PostgreSQL server the cluster scenario creates its own database on (and drops it
    /// afterwards). Default: CHAT_BENCH_DATABASE_URL, else CHAT_TEST_DATABASE_URL (what the
    /// test command exports), else postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, global = true)]
    database_url: Option<String>,

    /// Cluster only: the servers reach PostgreSQL through a relay that holds every chunk this
    /// many microseconds each way (a round trip of twice this), as a network between them
    /// would. Without it they connect directly.
    #[arg(long, global = true)]
    database_delay_us: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Durable send: 64 concurrent unary Sends over HTTP/2 into SQLite on disk.
    Send,
    /// Fan-out: one chat, 1,000 Stream subscribers (gRPC-web, then native), 100 msg/s.
    Fanout,
    /// Idle streams: 10,000 gRPC-web Streams; server RSS per stream and idle CPU.
    Idle,
    /// History pages of 50 in chats of 1,000,000 and 100,000 messages.
    History,
    /// Search in a chat of 100,000 messages in several languages (SQLite, then PostgreSQL).
    Search,
    /// Three servers on one PostgreSQL against one on SQLite: durable Send, cross-server
    /// fan-out (1,000 gRPC-web subscribers, 100 msg/s), resume after SIGKILL of one server.
    Cluster,
    /// Browser bundle size, and page load to the chat list in headless Chromium.
    Bundle,
    /// Every scenario above, in that order (cluster only when a PostgreSQL answers).
    All,
    /// Heap allocations and bytes per acknowledged Send (one sender, then many at once),
    /// counted by a chat-server built with `--features count-allocations`; not in `all`.
    Allocations,
    /// Runs the ceiling server (the benchmark starts it itself).
    CeilingServer(ceiling::CeilingArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if let Command::CeilingServer(args) = cli.command {
            return ceiling::serve(args).await.map(|()| true);
        }
        // Ctrl-C drops the run, and with it every server and browser it started.
        tokio::select! {
            result = run(&cli) => result,
            _ = tokio::signal::ctrl_c() => Err(BenchError::Interrupted),
        }
    });
    // Streams the run left open must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chat-bench: a correctness check failed (see FAIL above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("chat-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios, prints them, writes the summary; `Ok(false)` if a check failed.
async fn run(cli: &Cli) -> Result<bool, BenchError> {
    let open_files = process::raise_open_files_limit()?;
    let ctx = Context {
        smoke: cli.smoke,
        server_bin: cli.server_bin.clone(),
        dist: cli.dist.clone(),
        page_script: cli.page_script.clone(),
        database_url: cli
            .database_url
            .clone()
            .or_else(|| std::env::var("CHAT_BENCH_DATABASE_URL").ok())
            .or_else(|| std::env::var("CHAT_TEST_DATABASE_URL").ok())
            .unwrap_or_else(|| scenario::cluster::DEFAULT_DATABASE_URL.to_owned()),
        database_delay: cli.database_delay_us.map(std::time::Duration::from_micros),
    };
    let names: &[&str] = match cli.command {
        Command::Send => &["send"],
        Command::Fanout => &["fanout"],
        Command::Idle => &["idle"],
        Command::History => &["history"],
        Command::Search => &["search"],
        Command::Bundle => &["bundle"],
        Command::Cluster => &["cluster"],
        Command::Allocations => &["allocations"],
        Command::All => &[
            "send", "fanout", "idle", "history", "search", "cluster", "bundle",
        ],
        Command::CeilingServer(_) => &[],
    };
    let machine = Machine::read();
    println!(
        "chat-bench{}: {} × {}, {} GiB, Linux {}, open-file limit {open_files}",
        if ctx.smoke { " (smoke run)" } else { "" },
        machine.cores,
        machine.cpu_model,
        machine.memory_gib,
        machine.kernel
    );
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut summary = Summary {
        smoke: ctx.smoke,
        started_at,
        machine,
        passed: true,
        scenarios: Vec::new(),
    };
    for name in names {
        let began = Instant::now();
        let load_before = load_average();
        let mut report: ScenarioReport = match *name {
            "send" => scenario::send::run(&ctx).await?,
            "fanout" => scenario::fanout::run(&ctx).await?,
            "idle" => scenario::idle::run(&ctx, open_files).await?,
            "history" => scenario::history::run(&ctx).await?,
            "search" => scenario::search::run(&ctx).await?,
            "allocations" => scenario::allocations::run(&ctx).await?,
            // Required when asked for by name; in `all` skipped without a PostgreSQL.
            "cluster" => {
                scenario::cluster::run(&ctx, matches!(cli.command, Command::Cluster)).await?
            }
            _ => scenario::bundle::run(&ctx).await?,
        };
        report.note(format!(
            "machine load average (1 min) {load_before} at the start, {} at the end: other work on the machine shares its {} cores",
            load_average(),
            summary.machine.cores
        ));
        report.finish(ctx.smoke, began.elapsed().as_secs_f64());
        report.print();
        summary.passed &= report.passed();
        summary.scenarios.push(report);
        // Written after every scenario, so a later failure keeps the earlier figures.
        summary.write(&cli.summary)?;
    }
    println!("\nsummary written to {}", cli.summary.display());
    Ok(summary.passed)
}

/// The one-minute load average, as /proc/loadavg has it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
