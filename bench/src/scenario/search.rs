//! Search at scale: one chat of 100,000 realistic messages (several languages and scripts,
//! punctuation, addresses and numbers, words as unevenly common as in real text), then
//! Search queries one at a time (latency, not throughput): common and rare words, two words,
//! a typed-ahead prefix, accented and non-Latin words, a Chinese or Japanese word inside a
//! run of characters, a word found nowhere, and the second page of a common word. On SQLite, and again on PostgreSQL when one answers (skipped with
//! the reason otherwise). Every answer is checked: newest first, in the chat, each result
//! holding the query's words (by `chat_core::search::highlights`, the server's own marking).
//!
//! The chat is filled through the server's own Send, as the history scenario fills its
//! chats, so the index is exactly what the server's triggers or generated column make.

use std::time::{Duration, Instant};

use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::{SearchRequest, SendRequest};
use chat_core::search::{SearchTerms, highlights};
use chat_core::wire::authed;
use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tonic::transport::Channel;

use super::cluster::{TempDatabase, psql, unreachable};
use super::{Context, stop_cleanly};
use crate::client::{User, call, native_channel, new_chat, send, sign_up, within};
use crate::error::BenchError;
use crate::process::{Kind, ServerOptions, ServerProcess};
use crate::report::{Figure, ScenarioReport, Target, number};
use crate::stats::Latencies;

/// The page size the web app asks for (the server's default).
const PAGE: i32 = 20;

#[derive(Debug, Clone)]
struct Params {
    messages: usize,
    /// Queries timed per kind.
    samples: usize,
    /// Queries run before timing.
    warm: usize,
    load_connections: usize,
    load_in_flight: usize,
}

impl Params {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                messages: 2_000,
                samples: 20,
                warm: 10,
                load_connections: 2,
                load_in_flight: 32,
            }
        } else {
            Self {
                messages: 100_000,
                samples: 300,
                warm: 200,
                load_connections: 8,
                load_in_flight: 256,
            }
        }
    }
}

pub async fn run(ctx: &Context) -> Result<ScenarioReport, BenchError> {
    let params = Params::new(ctx.smoke);
    let mut report = ScenarioReport::new(
        "search",
        format!(
            "Search (pages of {PAGE}) in a chat of {} messages in several languages, {} queries of each of {} kinds, on SQLite and on PostgreSQL",
            number(params.messages as f64),
            params.samples,
            QueryKind::ALL.len()
        ),
    );
    let options = ServerOptions::new(&ctx.server_bin);
    measure(&options, "SQLite", None, &params, &mut report).await?;
    match unreachable(&ctx.database_url).await {
        Some(reason) => report.note(format!(
            "PostgreSQL skipped: none at {} ({reason}); set --database-url or CHAT_BENCH_DATABASE_URL",
            ctx.database_url
        )),
        None => {
            let database = TempDatabase::create(&ctx.database_url).await?;
            let options = ServerOptions {
                database_url: Some(database.url.clone()),
                ..options
            };
            let measured = measure(
                &options,
                "PostgreSQL",
                Some(&database.url),
                &params,
                &mut report,
            )
            .await;
            // Dropped on the error path too (by `Drop`); here the error of dropping is reported.
            let dropped = database.drop_now().await;
            measured?;
            dropped?;
        }
    }
    Ok(report)
}

/// Fills a chat on a fresh server started with `options`, times every kind of query, and
/// adds the figures and checks labelled with `store`. With `analyze` (a PostgreSQL database's
/// URL), the messages table is analyzed after loading, as autovacuum does within a minute of
/// a load that size: the planner's choice between the GIN index and walking ids down depends
/// on how common a word is, which it only knows from those statistics.
async fn measure(
    options: &ServerOptions,
    store: &str,
    analyze: Option<&str>,
    params: &Params,
    report: &mut ScenarioReport,
) -> Result<(), BenchError> {
    let mut server = ServerProcess::start(Kind::Real, options).await?;
    let users = sign_up(server.addr, "find", 2).await?;
    let setup = native_channel(server.addr).await?;
    let chat_id = new_chat(
        &setup,
        &users[0],
        [users[0].id.clone(), users[1].id.clone()],
    )
    .await?;
    let loading = Instant::now();
    let vocabulary = Vocabulary::new();
    load(&server, &users[0], &chat_id, &vocabulary, params).await?;
    let load_seconds = loading.elapsed().as_secs_f64();
    server.check_alive()?;
    if let Some(url) = analyze {
        psql(url, "ANALYZE messages").await?;
        report.note(format!(
            "{store}: ANALYZE messages after loading (autovacuum's job in a running database)"
        ));
    }
    let db_bytes = server.database_bytes();

    let mut searcher = Searcher {
        chat: ChatClient::new(native_channel(server.addr).await?),
        token: users[1].token.clone(),
        chat_id: chat_id.clone(),
        wrong: Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..params.warm {
        let kind = QueryKind::ALL[rng.random_range(0..QueryKind::ALL.len())];
        searcher
            .query(&vocabulary.query(kind, &mut rng), "")
            .await?;
    }
    let mut all = Latencies::with_capacity(params.samples * QueryKind::ALL.len());
    let mut by_kind = Vec::new();
    // Kinds take turns, so each sees the same moments of the machine.
    let mut latencies: Vec<Latencies> = QueryKind::ALL
        .iter()
        .map(|_| Latencies::with_capacity(params.samples))
        .collect();
    let mut found = vec![0usize; QueryKind::ALL.len()];
    for _ in 0..params.samples {
        for (k, kind) in QueryKind::ALL.iter().enumerate() {
            let query = vocabulary.query(*kind, &mut rng);
            let (took, results) = match kind {
                QueryKind::SecondPage => {
                    let (_, first) = searcher.query(&query, "").await?;
                    searcher.query(&query, &first.next_page_token).await?
                }
                _ => searcher.query(&query, "").await?,
            };
            if *kind == QueryKind::Missing && !results.messages.is_empty() {
                searcher.wrong.push(format!(
                    "{query:?} found {} messages",
                    results.messages.len()
                ));
            }
            found[k] += results.messages.len();
            latencies[k].push(took);
        }
    }
    for ((kind, mut latencies), found) in QueryKind::ALL.iter().zip(latencies).zip(found) {
        report.figure(Figure::new(
            format!("{store}: {} p50", kind.label()),
            "ms",
            latencies.percentile_ms(50.0),
        ));
        report.figure(Figure::new(
            format!(
                "{store}: {} p99 ({:.1} results/page)",
                kind.label(),
                found as f64 / params.samples as f64
            ),
            "ms",
            latencies.percentile_ms(99.0),
        ));
        by_kind.push(latencies);
    }
    for latencies in &mut by_kind {
        all.append(latencies);
    }
    report.figure(Figure::new(
        format!("{store}: every query p50"),
        "ms",
        all.percentile_ms(50.0),
    ));
    report.figure(
        Figure::new(
            format!("{store}: every query p99"),
            "ms",
            all.percentile_ms(99.0),
        )
        .target(Target::AtMost(20.0)),
    );
    report.figure(Figure::new(
        format!("{store}: loading through Send"),
        "msg/s",
        params.messages as f64 / load_seconds,
    ));
    report.check(
        format!("{store}: every result held its query's words, newest first"),
        searcher.wrong.is_empty(),
        format!(
            "{} queries checked; wrong: {:?}",
            params.samples * (QueryKind::ALL.len() + 1),
            &searcher.wrong[..searcher.wrong.len().min(5)]
        ),
    );
    report.note(format!(
        "{store}: loaded {} messages in {load_seconds:.0} s; database {:.0} MB",
        number(params.messages as f64),
        db_bytes as f64 / 1e6
    ));
    stop_cleanly(server, report).await
}

/// Sends the chat's messages, many in flight, each made by `vocabulary` from its number.
async fn load(
    server: &ServerProcess,
    user: &User,
    chat_id: &str,
    vocabulary: &Vocabulary,
    params: &Params,
) -> Result<(), BenchError> {
    let mut channels = Vec::with_capacity(params.load_connections);
    for _ in 0..params.load_connections {
        channels.push(native_channel(server.addr).await?);
    }
    // At least 300 messages per second, or something is badly wrong.
    let limit = Duration::from_secs(60 + params.messages as u64 / 300);
    let sends = futures::stream::iter(0..params.messages)
        .map(|n| {
            let mut chat = ChatClient::new(channels[n % channels.len()].clone());
            let (subject, text) = vocabulary.message(n as u64);
            let request = SendRequest {
                client_id: format!("load-{n}"),
                chat_id: chat_id.to_owned(),
                subject,
                text,
                ..Default::default()
            };
            let token = user.token.clone();
            async move { send(&mut chat, &token, request).await }
        })
        .buffer_unordered(params.load_in_flight);
    let collect = async {
        futures::pin_mut!(sends);
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut done = 0usize;
        while let Some(sent) = sends.next().await {
            sent?;
            done += 1;
            if last_report.elapsed() >= Duration::from_secs(15) {
                last_report = Instant::now();
                eprintln!(
                    "  search: loaded {} of {} messages ({}/s)",
                    number(done as f64),
                    number(params.messages as f64),
                    number(done as f64 / started.elapsed().as_secs_f64())
                );
            }
        }
        Ok::<_, BenchError>(())
    };
    within("loading the search chat", limit, collect).await?
}

/// Where queries go, and what was wrong in their answers.
struct Searcher {
    chat: ChatClient<Channel>,
    token: String,
    chat_id: String,
    wrong: Vec<String>,
}

impl Searcher {
    /// Runs one Search (all chats of the member, so membership is part of the cost) and
    /// checks its answer; returns how long it took and the page.
    async fn query(
        &mut self,
        query: &str,
        page_token: &str,
    ) -> Result<(Duration, chat_core::proto::SearchResponse), BenchError> {
        let request = SearchRequest {
            query: query.to_owned(),
            chat_id: String::new(),
            limit: PAGE,
            page_token: page_token.to_owned(),
        };
        let started = Instant::now();
        let page = call("Search", self.chat.search(authed(&self.token, request))).await?;
        let took = started.elapsed();
        let terms = SearchTerms::parse(query).map_err(|error| {
            BenchError::Setup(format!("bad benchmark query {query:?}: {error}"))
        })?;
        let mut previous = u64::MAX;
        for message in &page.messages {
            let id: u64 = message.id.parse().unwrap_or(u64::MAX);
            let text = format!("{} {}", message.subject, message.text);
            let holds_every_word = terms.words().iter().enumerate().all(|(i, word)| {
                let last = i + 1 == terms.words().len();
                let word = if last && terms.last_is_prefix() {
                    word.clone()
                } else {
                    format!("{word} ")
                };
                SearchTerms::parse(&word).is_ok_and(|one| !highlights(&text, &one).is_empty())
            });
            if id >= previous || message.chat_id != self.chat_id || !holds_every_word {
                self.wrong.push(format!(
                    "{query:?}: message {} {:?}",
                    message.id, message.text
                ));
            }
            previous = id;
        }
        Ok((took, page))
    }
}

/// The kinds of query timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryKind {
    Common,
    Rare,
    TwoWords,
    Prefix,
    Accented,
    NonLatin,
    Unspaced,
    Missing,
    SecondPage,
}

impl QueryKind {
    const ALL: [QueryKind; 9] = [
        QueryKind::Common,
        QueryKind::Rare,
        QueryKind::TwoWords,
        QueryKind::Prefix,
        QueryKind::Accented,
        QueryKind::NonLatin,
        QueryKind::Unspaced,
        QueryKind::Missing,
        QueryKind::SecondPage,
    ];

    fn label(self) -> &'static str {
        match self {
            QueryKind::Common => "a common word",
            QueryKind::Rare => "a rare word",
            QueryKind::TwoWords => "a common and a rare word",
            QueryKind::Prefix => "a 3-letter prefix",
            QueryKind::Accented => "an accented word",
            QueryKind::NonLatin => "a Cyrillic, Greek or Hebrew word",
            QueryKind::Unspaced => "a Chinese or Japanese word inside a run",
            QueryKind::Missing => "a word in no message",
            QueryKind::SecondPage => "second page of a common word",
        }
    }
}

/// Words of several languages, each list roughly from most to least common; messages pick
/// from them with a skew towards the front, so a few words are everywhere and most are rare,
/// as in real text.
struct Vocabulary {
    languages: Vec<Vec<&'static str>>,
}

const ENGLISH: &str = "the to and a of is it you that in for on this we have be are with at not can will just what so do about but meeting tomorrow lunch deploy release review coffee weekend budget invoice meeting notes pipeline customer feedback kubernetes migration outage holiday birthday presentation quarterly roadmap estimate spreadsheet whiteboard hackathon retrospective onboarding";
const FRENCH: &str = "le la les de et un une est pas je tu nous vous pour avec dans sur café déjà très réunion demain déjeuner après-midi problème équipe prêt être fête résumé élève hôpital garçon noël forêt crème brûlée château";
const GERMAN: &str = "der die das und ist nicht ich du wir ihr mit für auf zu heute morgen Besprechung Mittagessen Grüße schön Größe Straße Bäckerei Frühstück Überstunden Geschäftsführer Müller Köln München Tschüss";
const SPANISH: &str = "el la los de y que en un una es no por con para mañana reunión almuerzo está también niño año señor corazón canción jalapeño estación pingüino";
const RUSSIAN: &str = "и в не на я что он с как это мы вы завтра сегодня встреча обед привет спасибо пожалуйста работа проект отпуск релиз совещание";
const GREEK: &str = "και το η να είναι δεν θα για με αύριο σήμερα συνάντηση φαγητό καλημέρα ευχαριστώ παρακαλώ δουλειά διακοπές";
const HEBREW: &str =
    "של את על לא זה אני הוא מה עם מחר היום פגישה ארוחה שלום תודה בבקשה עבודה חופשה פרויקט";
// Chinese and Japanese messages are written without spaces (`Vocabulary::message`): their
// words are found inside runs of characters.
const JAPANESE: &str = "今日 明日 会議 昼食 ありがとう お願いします 仕事 休暇 東京 大阪";
const CHINESE: &str =
    "的 了 是 我 你 他 明天 今天 会议 午饭 项目 发布 周末 谢谢 工作 问题 客户 北京 上海 预算 报告";

impl Vocabulary {
    fn new() -> Self {
        Self {
            languages: [
                ENGLISH, FRENCH, GERMAN, SPANISH, RUSSIAN, GREEK, HEBREW, JAPANESE, CHINESE,
            ]
            .iter()
            .map(|words| words.split(' ').collect())
            .collect(),
        }
    }

    /// Which language message `n` is in: English most, then French and German, ...
    fn language(&self, rng: &mut StdRng) -> &[&'static str] {
        const WEIGHTS: [u32; 9] = [40, 14, 12, 10, 10, 5, 5, 4, 4];
        let mut pick = rng.random_range(0..WEIGHTS.iter().sum::<u32>());
        for (weights, words) in WEIGHTS.iter().zip(&self.languages) {
            if pick < *weights {
                return words;
            }
            pick -= weights;
        }
        &self.languages[0]
    }

    /// A word of `words`, skewed towards the front of the list.
    fn word(words: &[&'static str], rng: &mut StdRng) -> &'static str {
        let skewed = rng.random::<f64>().powi(3);
        words[((skewed * words.len() as f64) as usize).min(words.len() - 1)]
    }

    /// The subject and text of message `n`, the same on every run: 3 to 30 words with
    /// punctuation, now and then an address, a number, a time or an emoji; one in twenty
    /// has a subject.
    fn message(&self, n: u64) -> (String, String) {
        let mut rng = StdRng::seed_from_u64(n);
        let words = self.language(&mut rng);
        let unspaced = words[0].chars().all(chat_core::search::is_unspaced);
        let length = rng.random_range(3..=30);
        let mut text = String::new();
        for i in 0..length {
            if i > 0 && unspaced {
                text.push_str(match rng.random_range(0..10) {
                    0 => "、",
                    1 => "。",
                    _ => "",
                });
            } else if i > 0 {
                text.push_str(match rng.random_range(0..20) {
                    0 => ", ",
                    1 => ". ",
                    2 => "! ",
                    3 => "? ",
                    4 => " — ",
                    5 => "; ",
                    6 => " (",
                    _ => " ",
                });
            }
            let word = Self::word(words, &mut rng);
            if i == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    text.extend(first.to_uppercase());
                    text.push_str(chars.as_str());
                }
            } else {
                text.push_str(word);
            }
        }
        text.push_str(match rng.random_range(0..12) {
            0 => " https://example.com/wiki/Release-notes?v=2.0",
            1 => " — mail ops@example.org",
            2 => " at 9:30",
            3 => " 👍",
            4 => " (3.14%)",
            5 => "!!!",
            6 => "...",
            _ => ".",
        });
        let subject = if n.is_multiple_of(20) {
            format!("Re: {}", Self::word(words, &mut rng))
        } else {
            String::new()
        };
        (subject, text)
    }

    /// A query of `kind`.
    fn query(&self, kind: QueryKind, rng: &mut StdRng) -> String {
        let english = &self.languages[0];
        let common = |rng: &mut StdRng| english[rng.random_range(0..8)];
        let rare = |rng: &mut StdRng| english[rng.random_range(english.len() - 12..english.len())];
        match kind {
            QueryKind::Common | QueryKind::SecondPage => format!("{} ", common(rng)),
            QueryKind::Rare => format!("{} ", rare(rng)),
            QueryKind::TwoWords => format!("{} {} ", common(rng), rare(rng)),
            QueryKind::Prefix => {
                let word = english[rng.random_range(30..english.len())];
                word.chars().take(3).collect()
            }
            QueryKind::Accented => {
                let accented = [
                    "café",
                    "réunion",
                    "Größe",
                    "mañana",
                    "déjà",
                    "Grüße",
                    "estación",
                    "Müller",
                ];
                format!("{} ", accented[rng.random_range(0..accented.len())])
            }
            QueryKind::NonLatin => {
                let language = &self.languages[rng.random_range(4..7)];
                format!("{} ", language[rng.random_range(0..language.len())])
            }
            QueryKind::Unspaced => {
                let language = &self.languages[rng.random_range(7..9)];
                let words: Vec<&str> = language
                    .iter()
                    .copied()
                    .filter(|word| word.chars().count() > 1)
                    .collect();
                format!("{} ", words[rng.random_range(0..words.len())])
            }
            QueryKind::Missing => format!("zq{}x ", rng.random_range(0..1_000)),
        }
    }
}
