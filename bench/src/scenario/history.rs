//! History at scale: pages of 50 from a chat of 1,000,000 messages and from one of 100,000,
//! at random positions and at the newest end, one request at a time (latency, not
//! throughput). If the cost grows with the chat, the 1M figures show it against the 100k ones.
//!
//! The chats are filled through the server's own Send, many at once, interleaved (one message
//! in eleven goes to the smaller chat), so the rows are spread over the table as in a real
//! database. Writing rows straight into a stopped server's SQLite file would be faster but
//! would bypass, and have to duplicate, the store's schema and id rules; through Send the
//! data is exactly what the server makes, and the load rate is one more figure.

use std::time::{Duration, Instant};

use chat_core::proto::HistoryRequest;
use chat_core::proto::SendRequest;
use chat_core::proto::chat_client::ChatClient;
use chat_core::wire::authed;
use futures::StreamExt as _;
use rand::Rng as _;
use tonic::transport::Channel;

use super::{Context, stop_cleanly};
use crate::ceiling::PAGE_TEXT;
use crate::client::{User, call, native_channel, new_chat, send, sign_up, within};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess};
use crate::report::{Figure, ScenarioReport, Target, number};
use crate::stats::Latencies;

const PAGE: usize = 50;

#[derive(Debug, Clone)]
struct Params {
    big: usize,
    small: usize,
    /// Pages timed per chat and position kind.
    samples: usize,
    /// Pages read before timing, per chat.
    warm: usize,
    load_connections: usize,
    load_in_flight: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                big: 2_000,
                small: 200,
                samples: 50,
                warm: 10,
                load_connections: 2,
                load_in_flight: 32,
            }
        } else {
            Self {
                big: 1_000_000,
                small: 100_000,
                samples: 2_000,
                warm: 500,
                load_connections: 8,
                load_in_flight: 256,
            }
        }
    }
}

/// Latencies of one chat's pages.
struct Pages {
    random: Latencies,
    newest: Latencies,
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "history",
        format!(
            "History pages of {PAGE}, {} at random positions and {} at the newest end, in chats of {} and {} messages",
            params.samples,
            params.samples,
            number(params.big as f64),
            number(params.small as f64)
        ),
    );
    let options = ServerOptions::new(&ctx.server_bin);

    // The ceiling stores nothing: it answers every page from memory, the transport's bound.
    let ceiling = ServerProcess::start(Kind::Ceiling, &options).await?;
    let ceiling_user = sign_up(ceiling.addr, "hist", 1).await?.remove(0);
    let ceiling_ids: Vec<u64> = (1..=params.big as u64).collect();

    let mut server = ServerProcess::start(Kind::Real, &options).await?;
    let users = sign_up(server.addr, "hist", 3).await?;
    let setup = native_channel(server.addr).await?;
    let big_chat = new_chat(
        &setup,
        &users[0],
        [users[0].id.clone(), users[1].id.clone()],
    )
    .await?;
    let small_chat = new_chat(
        &setup,
        &users[0],
        [users[0].id.clone(), users[2].id.clone()],
    )
    .await?;
    let loading = Instant::now();
    let (big_ids, small_ids) = load(&server, &users[0], &big_chat, &small_chat, &params).await?;
    let load_seconds = loading.elapsed().as_secs_f64();
    server.check_alive()?;
    let db_bytes = server.database_bytes();

    // Pages are read from both servers in turn, request by request, so both see the same
    // moments of the machine.
    let real_chat = ChatClient::new(native_channel(server.addr).await?);
    let ceiling_chat = ChatClient::new(native_channel(ceiling.addr).await?);
    let mut wrong = Vec::new();
    let mut pages = Vec::new();
    for (chat_id, ids) in [(&big_chat, &big_ids), (&small_chat, &small_ids)] {
        let real = Reader {
            chat: real_chat.clone(),
            token: &users[0].token,
            chat_id,
            ids,
        };
        let ceiling = Reader {
            chat: ceiling_chat.clone(),
            token: &ceiling_user.token,
            chat_id: "ceiling",
            ids: &ceiling_ids,
        };
        pages.push(measure_pages(real, ceiling, &params, &mut wrong).await?);
    }
    stop_cleanly(ceiling, &mut report).await?;
    stop_cleanly(server, &mut report).await?;
    let [(mut big, mut big_ceiling), (mut small, mut small_ceiling)]: [(Pages, Pages); 2] = pages
        .try_into()
        .map_err(|_| BenchError::Setup("two chats measured".into()))?;

    let big_label = number(params.big as f64);
    let small_label = number(params.small as f64);
    for (label, pages, ceiling, target) in [
        (
            &big_label,
            &mut big,
            &mut big_ceiling,
            Some(Target::AtMost(5.0)),
        ),
        (&small_label, &mut small, &mut small_ceiling, None),
    ] {
        for (position, latencies, ceiling) in [
            ("random page", &mut pages.random, &mut ceiling.random),
            ("newest page", &mut pages.newest, &mut ceiling.newest),
        ] {
            for p in [50.0, 99.0] {
                let figure = Figure::new(
                    format!("{label} messages, {position} p{p}"),
                    "ms",
                    latencies.percentile_ms(p),
                )
                .ceiling(Some(ceiling.percentile_ms(p)));
                report.figure(match target {
                    Some(target) if p == 99.0 => figure.target(target),
                    _ => figure,
                });
            }
        }
    }
    for (position, at_big, at_small) in [
        (
            "random page",
            big.random.percentile_ms(99.0),
            small.random.percentile_ms(99.0),
        ),
        (
            "newest page",
            big.newest.percentile_ms(99.0),
            small.newest.percentile_ms(99.0),
        ),
    ] {
        report.figure(
            Figure::new(
                format!("{position} p99, {big_label} ÷ {small_label}"),
                "×",
                at_big / at_small.max(f64::MIN_POSITIVE),
            )
            .target(Target::AtMost(1.5)),
        );
    }
    report.figure(Figure::new(
        "loading through Send",
        "msg/s",
        (params.big + params.small) as f64 / load_seconds,
    ));
    report.check(
        "every page held the right 50 messages",
        wrong.is_empty(),
        format!(
            "{} pages checked against the acknowledged ids; wrong: {:?}",
            4 * params.samples,
            &wrong[..wrong.len().min(5)]
        ),
    );
    report.note(format!(
        "loaded {} messages in {load_seconds:.0} s; database {:.0} MB",
        number((params.big + params.small) as f64),
        db_bytes as f64 / 1e6
    ));
    Ok(report)
}

/// Sends `big + small` messages, interleaved evenly, with many in flight; returns each chat's
/// acknowledged ids in increasing order.
async fn load(
    server: &ServerProcess,
    user: &User,
    big_chat: &str,
    small_chat: &str,
    params: &Params,
) -> Result<(Vec<u64>, Vec<u64>), BenchError> {
    let total = params.big + params.small;
    let mut channels = Vec::with_capacity(params.load_connections);
    for _ in 0..params.load_connections {
        channels.push(native_channel(server.addr).await?);
    }
    // At least 500 messages per second, or something is badly wrong.
    let limit = Duration::from_secs(60 + total as u64 / 500);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut big_ids = Vec::with_capacity(params.big);
    let mut small_ids = Vec::with_capacity(params.small);
    let sends = futures::stream::iter(0..total)
        .map(|n| {
            // Message n goes to the small chat when n·small/total crosses an integer: exactly
            // `small` of them, evenly spread.
            let to_small = (n + 1) * params.small / total != n * params.small / total;
            let chat_id = if to_small { small_chat } else { big_chat };
            let mut chat = ChatClient::new(channels[n % channels.len()].clone());
            let request = SendRequest {
                client_id: format!("load-{n}"),
                chat_id: chat_id.to_owned(),
                text: PAGE_TEXT.to_owned(),
                ..Default::default()
            };
            let token = user.token.clone();
            async move {
                let id = send(&mut chat, &token, request).await?;
                Ok::<_, BenchError>((to_small, id))
            }
        })
        .buffer_unordered(params.load_in_flight);
    let collect = async {
        futures::pin_mut!(sends);
        while let Some(sent) = sends.next().await {
            let (to_small, id) = sent?;
            if to_small {
                small_ids.push(id);
            } else {
                big_ids.push(id);
            }
            if last_report.elapsed() >= Duration::from_secs(15) {
                last_report = Instant::now();
                let done = big_ids.len() + small_ids.len();
                eprintln!(
                    "  history: loaded {} of {} messages ({}/s)",
                    number(done as f64),
                    number(total as f64),
                    number(done as f64 / started.elapsed().as_secs_f64())
                );
            }
        }
        Ok::<_, BenchError>(())
    };
    within("loading the history chats", limit, collect).await??;
    big_ids.sort_unstable();
    small_ids.sort_unstable();
    Ok((big_ids, small_ids))
}

/// Where pages are read: a server, a member's token, a chat, and its message ids in order.
struct Reader<'a> {
    chat: ChatClient<Channel>,
    token: &'a str,
    chat_id: &'a str,
    ids: &'a [u64],
}

impl Reader<'_> {
    /// Reads the page that ends just before `ids[end]` (the newest page when `end` is the
    /// length) and returns how long it took and the ids it held.
    async fn page(&mut self, end: usize) -> Result<(Duration, Vec<u64>), BenchError> {
        let request = HistoryRequest {
            chat_id: self.chat_id.to_owned(),
            limit: PAGE as i32,
            before_id: self.ids.get(end).map_or_else(String::new, u64::to_string),
        };
        let started = Instant::now();
        let page = call("History", self.chat.history(authed(self.token, request))).await?;
        let took = started.elapsed();
        Ok((
            took,
            page.messages
                .iter()
                .filter_map(|m| m.id.parse().ok())
                .collect(),
        ))
    }
}

/// Times pages one at a time, alternating between `real` and `ceiling`: after a warm-up,
/// `samples` pages ending just before a random message, then `samples` newest pages. Every
/// page of `real` is checked against its ids; wrong ones are added to `wrong`.
async fn measure_pages(
    mut real: Reader<'_>,
    mut ceiling: Reader<'_>,
    params: &Params,
    wrong: &mut Vec<String>,
) -> Result<(Pages, Pages), BenchError> {
    let new_pages = || Pages {
        random: Latencies::with_capacity(params.samples),
        newest: Latencies::with_capacity(params.samples),
    };
    let (mut real_pages, mut ceiling_pages) = (new_pages(), new_pages());
    let mut rng = rand::rng();
    for round in 0..params.warm + 2 * params.samples {
        let newest = round >= params.warm + params.samples;
        let end = if newest {
            real.ids.len()
        } else {
            rng.random_range(PAGE..real.ids.len())
        };
        let ceiling_end = if newest {
            ceiling.ids.len()
        } else {
            end.min(ceiling.ids.len() - 1)
        };
        let (ceiling_took, _) = ceiling.page(ceiling_end).await?;
        let (took, got) = real.page(end).await?;
        if got != real.ids[end - PAGE..end] {
            wrong.push(format!(
                "{} before {:?}: got {} messages",
                real.chat_id,
                real.ids.get(end),
                got.len()
            ));
        }
        if round < params.warm {
            continue;
        }
        for (pages, took) in [(&mut real_pages, took), (&mut ceiling_pages, ceiling_took)] {
            if newest {
                pages.newest.push(took);
            } else {
                pages.random.push(took);
            }
        }
    }
    Ok((real_pages, ceiling_pages))
}
