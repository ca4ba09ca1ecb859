//! The browser bundle: the release WASM's size, raw and gzipped (`gzip -9`, as the README
//! measures it), and the time from navigation start to the chat list rendered, in headless
//! Chromium, with a signed-in session, every load with an empty cache (a new browser context).
//! The ceiling column is the same page served by the ceiling server, whose List answers as
//! many chats instantly: what the page alone costs.
//!
//! Chromium is driven by `page_load.mjs` (playwright-core, from e2e/'s node_modules); the
//! script closes the browser itself on every path, and gives up on its own before this
//! process would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chat_core::proto::SendRequest;
use chat_core::proto::chat_client::ChatClient;
use serde::Deserialize;
use tokio::process::Command;

use super::{Context, stop_cleanly};
use crate::client::{User, native_channel, new_chat, send, sign_up, within};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess};
use crate::report::{Figure, ScenarioReport, Target};
use crate::stats::Latencies;

/// How long the page-load script may run before it is stopped.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
struct Params {
    loads: usize,
    chats: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self { loads: 1, chats: 2 }
        } else {
            Self {
                loads: 10,
                chats: 10,
            }
        }
    }
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let dist = std::path::absolute(&ctx.dist).map_err(BenchError::io(format!(
        "cannot resolve {}",
        ctx.dist.display()
    )))?;
    let mut report = ScenarioReport::new(
        "bundle",
        format!(
            "release WASM in {}; {} cold page loads to a list of {} chats in headless Chromium",
            ctx.dist.display(),
            params.loads,
            params.chats
        ),
    );
    let wasm = only_file_ending(&dist, "_bg.wasm")?;
    let (raw, gzipped) = (file_size(&wasm)?, gzipped_size(&wasm).await?);
    report.figure(Figure::new("WASM raw", "KB", raw as f64 / 1000.0));
    report.figure(
        Figure::new("WASM gzipped (gzip -9)", "KB", gzipped as f64 / 1000.0)
            .target(Target::AtMost(300.0)),
    );
    let glue = only_file_ending(&dist, ".js")?;
    report.figure(Figure::new(
        "JavaScript glue gzipped",
        "KB",
        gzipped_size(&glue).await? as f64 / 1000.0,
    ));

    check_page_tools(&ctx.page_script)?;
    let mut options = ServerOptions::new(&ctx.server_bin);
    options.static_dir = Some(dist);
    options.ceiling_chats = params.chats;
    let mut ceiling = page_loads(Kind::Ceiling, &options, ctx, &params, &mut report).await?;
    let mut real = page_loads(Kind::Real, &options, ctx, &params, &mut report).await?;
    report.figure(
        Figure::new(
            "page load to chat list, median",
            "ms",
            real.percentile_ms(50.0),
        )
        .ceiling(Some(ceiling.percentile_ms(50.0))),
    );
    report.figure(
        Figure::new("page load to chat list, slowest", "ms", real.max_ms())
            .ceiling(Some(ceiling.max_ms()))
            .target(Target::AtMost(1000.0)),
    );
    report.note("KB = 1000 bytes here, as in the README's bundle size");
    Ok(report)
}

fn only_file_ending(dir: &Path, suffix: &str) -> Result<PathBuf, BenchError> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        BenchError::Setup(format!(
            "cannot read {} ({error}): build the web UI first (trunk build --release)",
            dir.display()
        ))
    })?;
    let found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(BenchError::Setup(format!(
            "expected exactly one *{suffix} in {}, found {}: rebuild it with trunk build --release",
            dir.display(),
            found.len()
        ))),
    }
}

fn file_size(path: &Path) -> Result<u64, BenchError> {
    std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .map_err(BenchError::io(format!("cannot read {}", path.display())))
}

/// The size `gzip -9` makes of `path`.
async fn gzipped_size(path: &Path) -> Result<u64, BenchError> {
    let output = within(
        "gzip -9",
        Duration::from_secs(60),
        Command::new("gzip")
            .arg("-9")
            .arg("-c")
            .arg(path)
            .kill_on_drop(true)
            .output(),
    )
    .await?
    .map_err(BenchError::io("cannot run gzip"))?;
    if !output.status.success() {
        return Err(BenchError::Setup(format!(
            "gzip -9 {} failed",
            path.display()
        )));
    }
    Ok(output.stdout.len() as u64)
}

fn check_page_tools(script: &Path) -> Result<(), BenchError> {
    if !script.is_file() {
        return Err(BenchError::Setup(format!(
            "no page-load script at {}",
            script.display()
        )));
    }
    let e2e_modules = script
        .parent()
        .unwrap_or(Path::new("."))
        .join("../e2e/node_modules/playwright-core");
    if !e2e_modules.is_dir() {
        return Err(BenchError::Setup(
            "playwright-core is not installed for e2e/: run `npm ci --prefix e2e`".into(),
        ));
    }
    if !Path::new("/usr/bin/chromium").is_file() && std::env::var_os("CHROMIUM_BIN").is_none() {
        return Err(BenchError::Setup(
            "no /usr/bin/chromium: install Debian's chromium package (scripts/test does)".into(),
        ));
    }
    Ok(())
}

/// Starts `kind` serving the UI, signs a user in with `params.chats` chats, and times loads.
async fn page_loads(
    kind: Kind,
    options: &ServerOptions,
    ctx: &Context,
    params: &Params,
    report: &mut ScenarioReport,
) -> Result<Latencies, BenchError> {
    let server = ServerProcess::start(kind, options).await?;
    let users = sign_up(server.addr, "page", params.chats + 1).await?;
    let me = &users[0];
    if kind == Kind::Real {
        let channel = native_channel(server.addr).await?;
        let mut chat = ChatClient::new(channel.clone());
        for (n, friend) in users[1..].iter().enumerate() {
            let chat_id = new_chat(&channel, me, [me.id.clone(), friend.id.clone()]).await?;
            let request = SendRequest {
                client_id: format!("page-{n}"),
                chat_id,
                text: format!("hello {}", friend.id),
                ..Default::default()
            };
            send(&mut chat, &me.token, request).await?;
        }
    }
    let loads = run_script(&server, me, ctx, params).await;
    stop_cleanly(server, report).await?;
    let mut latencies = Latencies::with_capacity(params.loads);
    for ms in loads? {
        latencies.push(Duration::from_secs_f64(ms / 1000.0));
    }
    Ok(latencies)
}

#[derive(Deserialize)]
struct ScriptOutput {
    loads_ms: Vec<f64>,
}

/// Stops the script with SIGTERM when dropped (playwright then closes Chromium); SIGKILL
/// would leave Chromium, in its own process group, running.
struct TerminateOnDrop(Option<u32>);

impl Drop for TerminateOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| libc::pid_t::try_from(pid).ok()) {
            // SAFETY: kill(2) on the script's pid; if it has exited and been reaped, the
            // signal goes nowhere (pids are not reused this quickly by this process's children).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

async fn run_script(
    server: &ServerProcess,
    me: &User,
    ctx: &Context,
    params: &Params,
) -> Result<Vec<f64>, BenchError> {
    let session = serde_json::json!({
        "user_id": me.id,
        "token": me.token,
        "expires_at": i64::MAX / 2,
    });
    let mut command = Command::new("node");
    command
        .arg(&ctx.page_script)
        .arg("--url")
        .arg(format!("http://{}/", server.addr))
        .arg("--session")
        .arg(session.to_string())
        .arg("--chats")
        .arg(params.chats.to_string())
        .arg("--loads")
        .arg(params.loads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(BenchError::io("cannot run node (install Node.js 20)"))?;
    let guard = TerminateOnDrop(child.id());
    let output = within(
        "the page-load script",
        SCRIPT_LIMIT,
        child.wait_with_output(),
    )
    .await?
    .map_err(BenchError::io("waiting for the page-load script"))?;
    drop(guard);
    if !output.status.success() {
        return Err(BenchError::Browser(format!(
            "{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let parsed: ScriptOutput = serde_json::from_slice(&output.stdout).map_err(|error| {
        BenchError::Browser(format!(
            "unreadable output ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        ))
    })?;
    if parsed.loads_ms.len() != params.loads {
        return Err(BenchError::Browser(format!(
            "asked for {} loads, got {}",
            params.loads,
            parsed.loads_ms.len()
        )));
    }
    Ok(parsed.loads_ms)
}
