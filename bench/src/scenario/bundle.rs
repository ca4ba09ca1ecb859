//! The browser bundle: the release WASM's size, raw and gzipped (`gzip -9`, as the README
//! measures it), and the time from navigation start to the chat list rendered, in headless
//! Chromium, with a signed-in session, every load with an empty cache (a new browser context).
//! The ceiling column is the same page served by the ceiling server, whose List answers as
//! many chats instantly: what the page alone costs.
//!
//! Then the page as it crosses a slow network: a first load (empty cache) and a reload to the
//! sign-in form with Chromium's network throttled to slow 4G, and the bytes each puts on the
//! wire, as the server really sends them (precompressed, cached by name).
//!
//! Chromium is driven by `page_load.mjs` and `wire_load.mjs` (playwright-core, from e2e/'s
//! node_modules); each script closes the browser itself on every path, and gives up on its own
//! before this process would.

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
    /// First loads (each followed by a reload) on the throttled network.
    wire_loads: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                loads: 1,
                chats: 2,
                wire_loads: 1,
            }
        } else {
            Self {
                loads: 10,
                chats: 10,
                wire_loads: 5,
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
    // The budget the README holds the app to (it replaced the first issue's 300 KB when the
    // features were asked for).
    report.figure(
        Figure::new("WASM gzipped (gzip -9)", "KB", gzipped as f64 / 1000.0)
            .target(Target::AtMost(250.0)),
    );
    // What a browser receives: the brotli copy the build made beside the module.
    let brotli = wasm.with_file_name(format!(
        "{}.br",
        wasm.file_name().unwrap_or_default().to_string_lossy()
    ));
    report.check(
        "the build made a brotli copy of the WASM",
        brotli.is_file(),
        format!(
            "{} (made by scripts/compress.mjs on release builds)",
            brotli.display()
        ),
    );
    if brotli.is_file() {
        report.figure(Figure::new(
            "WASM as sent (brotli)",
            "KB",
            file_size(&brotli)? as f64 / 1000.0,
        ));
    }
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
    wire_loads(&options, ctx, &params, &mut report).await?;
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
    let parsed: ScriptOutput = run_node(
        &ctx.page_script,
        &[
            "--url".into(),
            format!("http://{}/", server.addr),
            "--session".into(),
            session.to_string(),
            "--chats".into(),
            params.chats.to_string(),
            "--loads".into(),
            params.loads.to_string(),
        ],
    )
    .await?;
    if parsed.loads_ms.len() != params.loads {
        return Err(BenchError::Browser(format!(
            "asked for {} loads, got {}",
            params.loads,
            parsed.loads_ms.len()
        )));
    }
    Ok(parsed.loads_ms)
}

#[derive(Deserialize)]
struct WireOutput {
    first_ms: Vec<f64>,
    reload_ms: Vec<f64>,
    first_bytes: Vec<f64>,
    reload_bytes: Vec<f64>,
    /// Content-Encoding of each file the page loaded, by path.
    encodings: std::collections::BTreeMap<String, String>,
}

/// First loads and reloads of the real server's page on a throttled network: times to the
/// sign-in form and bytes on the wire.
async fn wire_loads(
    options: &ServerOptions,
    ctx: &Context,
    params: &Params,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let script = ctx.page_script.with_file_name("wire_load.mjs");
    let server = ServerProcess::start(Kind::Real, options).await?;
    let output: Result<WireOutput, _> = run_node(
        &script,
        &[
            "--url".into(),
            format!("http://{}/", server.addr),
            "--loads".into(),
            params.wire_loads.to_string(),
        ],
    )
    .await;
    stop_cleanly(server, report).await?;
    let output = output?;
    if output.first_ms.len() != params.wire_loads || output.reload_ms.len() != params.wire_loads {
        return Err(BenchError::Browser(format!(
            "asked for {} loads and reloads, got {} and {}",
            params.wire_loads,
            output.first_ms.len(),
            output.reload_ms.len()
        )));
    }
    let wasm_encoding = output
        .encodings
        .iter()
        .find(|(path, _)| path.ends_with("_bg.wasm"))
        .map(|(_, encoding)| encoding.as_str());
    report.check(
        "the WASM crosses the wire brotli-compressed",
        wasm_encoding == Some("br"),
        format!(
            "Content-Encoding of the WASM: {wasm_encoding:?} (all files: {:?})",
            output.encodings
        ),
    );
    let median = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let slowest = |values: &[f64]| values.iter().copied().fold(0.0, f64::max);
    report.figure(Figure::new(
        "bytes on the wire, first load",
        "KB",
        median(&output.first_bytes) / 1000.0,
    ));
    report.figure(Figure::new(
        "bytes on the wire, reload",
        "KB",
        median(&output.reload_bytes) / 1000.0,
    ));
    report.figure(
        Figure::new(
            "slow 4G first load to sign-in form, slowest",
            "ms",
            slowest(&output.first_ms),
        )
        .target(Target::AtMost(2500.0)),
    );
    report.figure(
        Figure::new(
            "slow 4G reload to sign-in form, slowest",
            "ms",
            slowest(&output.reload_ms),
        )
        .target(Target::AtMost(500.0)),
    );
    report.note(format!(
        "slow 4G: Chromium's network emulation at 1.6 Mbit/s down, 750 kbit/s up, 150 ms RTT; \
         {} first loads from an empty cache, each reloaded once",
        params.wire_loads
    ));
    Ok(())
}

/// Runs a page script under node with `args`, bounded by [`SCRIPT_LIMIT`], and parses the JSON
/// line it prints.
async fn run_node<T: serde::de::DeserializeOwned>(
    script: &Path,
    args: &[String],
) -> Result<T, BenchError> {
    let mut command = Command::new("node");
    command
        .arg(script)
        .args(args)
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
            "{} {}\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|error| {
        BenchError::Browser(format!(
            "unreadable output of {} ({error}): {}",
            script.display(),
            String::from_utf8_lossy(&output.stdout)
        ))
    })
}
