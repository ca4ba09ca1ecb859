//! Slow consumer, measured: browser tabs that stop reading (gRPC-web over HTTP/1.1, one TCP
//! connection each) while large messages flow, against the real binary so that the server's
//! memory is its process's RSS. Readers that keep up must see about the latency they see
//! without the stalled ones; the server's memory must stop growing once the stalled
//! connections are full; and each stalled reader, reading again, must get everything it
//! missed, once and in order, by catch-up from storage.
//!
//! `stream::a_stalled_reader_catches_up_without_a_gap_and_holds_up_no_one` checks catch-up
//! over native HTTP/2; this module puts figures on latency and memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_core::limits::TEXT_MAX_CHARS;
use chat_core::proto::chat_client::ChatClient;
use chat_core::proto::event::Event as EventKind;
use chat_core::proto::{Event, Message, StreamRequest};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tonic::codec::Streaming;
use tonic::transport::Channel;

use crate::helpers::*;

/// Readers that keep up, each its own user on its own HTTP/2 connection: their latency is
/// what the stalled readers must not raise.
const READERS: usize = 4;
/// Readers that stop reading, each its own user on its own HTTP/1.1 connection, as tabs are.
const STALLED: usize = 20;
/// Messages sent in each phase: enough that a stalled connection is full well before the end
/// of the first stalled phase (see `lag_proves_the_stall`).
const PER_PHASE: usize = 500;
/// One message every `PACE`: steady traffic, as people chatting make, rather than a burst.
const PACE: Duration = Duration::from_millis(5);
/// How many messages a user's feed holds for a stream before the stream is told it lagged.
const FEED_CAPACITY: usize = chat_server::FEED_CAPACITY;
/// The most messages a stream catching up holds at once.
const REPLAY_PAGE: usize = chat_server::REPLAY_PAGE as usize;
/// What else a stream catching up may cost the server: one SQLite reader's page cache
/// (SQLite's default, 2 MB), and 1 MB for its thread and the allocator's slack.
const CATCH_UP_OVERHEAD: u64 = 3_000_000;

/// When each message was handed to Send, by client id.
type SendTimes = Arc<Mutex<HashMap<String, Instant>>>;

/// A message as a reader that keeps up got it.
struct Received {
    reader: usize,
    message: Message,
    at: Instant,
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    /// Send called → message read, for every reader that keeps up and every message; sorted.
    latencies: Vec<Duration>,
    /// The server's RSS at the end of the phase.
    rss: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_browser_tabs_raise_no_latency_hold_bounded_memory_and_catch_up_in_full() {
    let server = spawn_process(&[]).await;
    let (_, sender) = signed_up(&server, "sender").await;
    let readers = sign_up_many(&server, "reader", READERS).await;
    let stalled_users = sign_up_many(&server, "stalled", STALLED).await;
    let mut members = vec!["sender"];
    members.extend(
        readers
            .iter()
            .chain(&stalled_users)
            .map(|(user, _)| user.as_str()),
    );
    let chat_id = new_chat(&server, &sender, &members).await;
    // The largest message there is: 4,000 four-byte characters, 16 KB.
    let text = "\u{1F422}".repeat(TEXT_MAX_CHARS);
    let send_times = SendTimes::default();
    let mut chat = server.chat().await;

    let (report, mut received) = mpsc::unbounded_channel();
    // Dropping the set at the end stops the readers.
    let mut keeping_up = tokio::task::JoinSet::new();
    for (reader, (_, token)) in readers.iter().enumerate() {
        // Each on its own connection: streams sharing one would share its flow control.
        let mut chat = server.chat().await;
        let stream = open_stream(&mut chat, token, &chat_id, "").await;
        keeping_up.spawn(keep_reading(reader, stream, report.clone()));
    }
    let rss_start = server.rss_bytes();

    let mut phase = async |name: &'static str, client_ids: &str| {
        let sent = send_phase(&mut chat, &sender, &chat_id, client_ids, &text, &send_times).await;
        let latencies = latencies(&mut received, &sent, &send_times).await;
        let rss = server.rss_bytes();
        (
            Phase {
                name,
                latencies,
                rss,
            },
            sent,
        )
    };

    let (a, sent_a) = phase("(a) no stalled reader", "a").await;

    // Opened and never read again: hyper's HTTP/1.1 client reads a connection only when its
    // body is polled, so the socket buffers fill and the server's writes to it block.
    let mut stalled = Vec::with_capacity(STALLED);
    for (_, token) in &stalled_users {
        let mut web = server.web_chat();
        let request = StreamRequest {
            chat_id: chat_id.clone(),
            after_id: String::new(),
        };
        let stream = within(web.stream(authed(token, request)))
            .await
            .expect("cannot open a stream over gRPC-web")
            .into_inner();
        stalled.push((web, stream));
    }
    let (b, sent_b) = phase("(b) stalled readers open", "b").await;
    let (c, sent_c) = phase("(c) still stalled", "c").await;
    let lags_while_stalled = lags(&server.log());

    // (d) The stalled readers read again, all at once; RSS is sampled while they catch up.
    let missed: Vec<Message> = sent_b.iter().chain(&sent_c).cloned().collect();
    let started = Instant::now();
    let catch_up = futures::future::join_all(
        stalled
            .iter_mut()
            .map(|(_, stream)| read_again(stream, missed.len())),
    );
    let (caught_up, rss_peak) = sampling_rss(&server, catch_up).await;
    let catch_up = CatchUp {
        time: started.elapsed(),
        rss_peak,
        rss_after: server.rss_bytes(),
    };
    for (n, got) in caught_up.iter().enumerate() {
        assert_eq!(
            ids(got),
            ids(&missed),
            "stalled reader {n} must get every message of (b) and (c) once, in order"
        );
        assert_eq!(got, &missed);
    }
    let log = server.log();
    let lags_on_resume = &lags(&log)[lags_while_stalled.len()..];
    let live_messages_taken =
        lag_proves_the_stall(&stalled_users, &lags_while_stalled, lags_on_resume);

    // Everyone is live again: one more message reaches every stream.
    let sentinel = send_text(&mut chat, &sender, &chat_id, "sentinel", "the end").await;
    let readers_got = within(async {
        let mut got = Vec::with_capacity(READERS);
        while got.len() < READERS {
            got.push(received.recv().await.expect("the readers stopped").message);
        }
        got
    })
    .await;
    assert_eq!(readers_got, vec![sentinel.clone(); READERS]);
    for (_, stream) in &mut stalled {
        assert_eq!(
            next_messages(stream, 1).await,
            std::slice::from_ref(&sentinel)
        );
    }

    let message_bytes = Event {
        event: Some(EventKind::Message(sent_a[0].clone())),
    }
    .encoded_len();
    print_figures(
        message_bytes,
        rss_start,
        [&a, &b, &c],
        &catch_up,
        &live_messages_taken,
    );

    let baseline = percentile(&a.latencies, 99);
    let allowed = (baseline * 3).max(baseline + Duration::from_millis(100));
    for stalled_phase in [&b, &c] {
        let p99 = percentile(&stalled_phase.latencies, 99);
        assert!(
            p99 <= allowed,
            "{}: p99 {} is over max(3 × {}, {} + 100 ms) = {}: the stalled readers slow the others",
            stalled_phase.name,
            ms(p99),
            ms(baseline),
            ms(baseline),
            ms(allowed)
        );
    }
    // Were the stalled readers' messages kept for them in memory, (c) alone would add
    // PER_PHASE × message_bytes × STALLED; what the server may hold per connection (a full
    // write buffer, the feed's bounded channel) was already held at the end of (b).
    let growth = c.rss.saturating_sub(b.rss);
    let unbounded = (PER_PHASE * message_bytes * STALLED) as u64;
    assert!(
        growth <= unbounded / 10,
        "RSS grew by {} during (c), over a tenth of {PER_PHASE} messages × {message_bytes} \
         bytes × {STALLED} stalled readers = {}: memory grows with what the stalled readers miss",
        mb(growth),
        mb(unbounded)
    );
    let catch_up_growth = catch_up.rss_peak.saturating_sub(c.rss);
    let per_reader = (REPLAY_PAGE * message_bytes) as u64 + CATCH_UP_OVERHEAD;
    assert!(
        catch_up_growth <= per_reader * STALLED as u64,
        "RSS grew by {} while the stalled readers caught up, over {STALLED} × ({REPLAY_PAGE} \
         messages × {message_bytes} bytes + {} for a SQLite reader and slack) = {}",
        mb(catch_up_growth),
        mb(CATCH_UP_OVERHEAD),
        mb(per_reader * STALLED as u64)
    );
}

/// What phase (d) measured.
struct CatchUp {
    /// From the first read to the last stalled reader having everything.
    time: Duration,
    rss_peak: u64,
    rss_after: u64,
}

/// Prints the figures in one block (`--nocapture` shows them; RELIABILITY.md quotes them).
fn print_figures(
    message_bytes: usize,
    rss_start: u64,
    phases: [&Phase; 3],
    catch_up: &CatchUp,
    live_messages_taken: &[usize],
) {
    let missed = 2 * PER_PHASE;
    let fewest = live_messages_taken.iter().min().copied().unwrap_or(0);
    let most = live_messages_taken.iter().max().copied().unwrap_or(0);
    let from_storage: usize = live_messages_taken.iter().map(|taken| missed - taken).sum();
    let row = |name: &str, latencies: Option<&[Duration]>, rss: String| {
        let figure = |percent| latencies.map(|all| ms(percentile(all, percent)));
        println!(
            "  {name:<26} {:>9} {:>9} {:>9} {rss:>10}",
            figure(50).unwrap_or_default(),
            figure(99).unwrap_or_default(),
            figure(100).unwrap_or_default(),
        );
    };
    println!(
        "slow consumer: {READERS} readers keeping up (HTTP/2), {STALLED} stalled readers \
         (gRPC-web, HTTP/1.1); {PER_PHASE} messages of {message_bytes} bytes ({}) per phase, \
         one every {PACE:?}",
        mb((PER_PHASE * message_bytes) as u64)
    );
    println!("  latency: Send called → message read, for every message and reader that keeps up");
    println!(
        "  {:<26} {:>9} {:>9} {:>9} {:>10}",
        "phase", "p50", "p99", "max", "server RSS"
    );
    row("start", None, mb(rss_start));
    for phase in phases {
        row(phase.name, Some(&phase.latencies), mb(phase.rss));
    }
    row(
        "(d) stalled readers read",
        None,
        format!("{} peak", mb(catch_up.rss_peak)),
    );
    println!(
        "  (d): every stalled reader had all {missed} messages of (b) and (c) after {:.2} s; \
         RSS {} afterwards",
        catch_up.time.as_secs_f64(),
        mb(catch_up.rss_after)
    );
    println!(
        "  each stalled connection took {fewest} to {most} messages ({} to {}) before the \
         server's writes to it blocked; the other {} to {} came from storage when it read \
         again: {} missed and recovered in all",
        mb((fewest * message_bytes) as u64),
        mb((most * message_bytes) as u64),
        missed - most,
        missed - fewest,
        mb((from_storage * message_bytes) as u64)
    );
}

/// Signs up `count` users named `prefix-0`, `prefix-1`, ...; returns (user id, token) each.
async fn sign_up_many(server: &impl Server, prefix: &str, count: usize) -> Vec<(String, String)> {
    let mut users = Vec::with_capacity(count);
    for n in 0..count {
        users.push(signed_up(server, &format!("{prefix}-{n}")).await);
    }
    users
}

/// Awaits `future` while sampling the server's RSS every 10 ms; returns its output and the
/// largest RSS seen.
async fn sampling_rss<T>(server: &ServerProcess, future: impl Future<Output = T>) -> (T, u64) {
    tokio::pin!(future);
    let mut peak = server.rss_bytes();
    loop {
        tokio::select! {
            output = &mut future => return (output, peak),
            () = tokio::time::sleep(Duration::from_millis(10)) => {
                peak = peak.max(server.rss_bytes());
            }
        }
    }
}

/// Reads `stream` until it ends, reporting every message with the moment it arrived.
async fn keep_reading(
    reader: usize,
    mut stream: Streaming<Event>,
    received: mpsc::UnboundedSender<Received>,
) {
    while let Ok(Some(event)) = stream.message().await {
        let at = Instant::now();
        if let Some(EventKind::Message(message)) = event.event
            && received
                .send(Received {
                    reader,
                    message,
                    at,
                })
                .is_err()
        {
            return;
        }
    }
}

/// Sends `PER_PHASE` messages at `PACE`, each once the previous one is acknowledged, recording
/// when each was handed to Send; returns them as stored. One at a time, so that a pause of the
/// whole server (a WAL checkpoint, every 10,000 pages, about a thousand of these messages: some
/// 90 ms in a debug build) delays one message rather than a queue of them, and does not pass
/// for an effect of the stalled readers.
async fn send_phase(
    chat: &mut ChatClient<Channel>,
    token: &str,
    chat_id: &str,
    client_ids: &str,
    text: &str,
    send_times: &SendTimes,
) -> Vec<Message> {
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sent = Vec::with_capacity(PER_PHASE);
    for n in 0..PER_PHASE {
        pace.tick().await;
        let client_id = format!("{client_ids}-{n}");
        send_times
            .lock()
            .expect("a holder panicked")
            .insert(client_id.clone(), Instant::now());
        sent.push(send_text(chat, token, chat_id, &client_id, text).await);
    }
    sent
}

/// Waits until every reader that keeps up has read `sent`, checks each got exactly that, in
/// order, and returns their latencies, sorted.
async fn latencies(
    received: &mut mpsc::UnboundedReceiver<Received>,
    sent: &[Message],
    send_times: &SendTimes,
) -> Vec<Duration> {
    let send_times = send_times.lock().expect("a holder panicked").clone();
    let mut per_reader = vec![Vec::new(); READERS];
    let mut latencies = Vec::with_capacity(READERS * sent.len());
    for _ in 0..READERS * sent.len() {
        // A reader that missed a message leaves this waiting, and it fails after WAIT.
        let Received {
            reader,
            message,
            at,
        } = within(received.recv()).await.expect("the readers stopped");
        let sent_at = send_times
            .get(&message.client_id)
            .unwrap_or_else(|| panic!("reader {reader} got a message nobody sent: {message:?}"));
        latencies.push(at - *sent_at);
        per_reader[reader].push(message);
    }
    for (reader, got) in per_reader.iter().enumerate() {
        assert_eq!(ids(got), ids(sent), "reader {reader} missed or reordered");
    }
    latencies.sort();
    latencies
}

/// Reads `n` messages of a stream that was stalled, a hundred at a time, so that however slow
/// the machine each wait is bounded and none fails for the whole catch-up's length.
async fn read_again(stream: &mut Streaming<Event>, n: usize) -> Vec<Message> {
    let mut messages = Vec::with_capacity(n);
    while messages.len() < n {
        let chunk = (n - messages.len()).min(100);
        messages.extend(next_messages(stream, chunk).await);
    }
    messages
}

/// The lines of the server's log (at debug level for `chat_server`, as `spawn_process` runs
/// it) saying a feed lagged, in order: (user, messages skipped).
fn lags(log: &str) -> Vec<(String, usize)> {
    log.lines()
        .filter(|line| line.contains("feed lagged"))
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                    .to_owned()
            };
            let skipped = field("skipped=")
                .parse()
                .unwrap_or_else(|_| panic!("skipped is not a number in {line:?}"));
            (field("user="), skipped)
        })
        .collect()
}

/// Proves the stalled readers really stalled the server's writes, through all of (c), and
/// returns how many messages each stream took live before its connection was full.
///
/// The server reads a stream's feed only when it can write to the stream's connection. So a
/// feed that, when its reader reads again, finds it lagged by `skipped` messages was not read
/// while FEED_CAPACITY + `skipped` messages were published: its connection was full. With
/// `skipped >= PER_PHASE`, the last message it took live was published before (c) began,
/// so (c) was sent with every stalled connection full, and the RSS bound measures a server
/// that had to hold or drop what it could not write. No earlier lag may exist: after one, a
/// feed reads storage for a while, and its place in the broker's channel no longer says where
/// it stopped. A reader that was not stalled (a client buffering in memory, or socket buffers
/// larger than a phase) does not lag like this, and fails here.
fn lag_proves_the_stall(
    stalled_users: &[(String, String)],
    while_stalled: &[(String, usize)],
    on_resume: &[(String, usize)],
) -> Vec<usize> {
    let published = 2 * PER_PHASE;
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    stalled_users
        .iter()
        .map(|(user, _)| {
            assert!(
                !while_stalled.iter().any(|(lagged, _)| lagged == user),
                "{user}'s feed lagged before it read again: it was not simply stalled"
            );
            let skipped: Vec<usize> = on_resume
                .iter()
                .filter(|(lagged, _)| lagged == user)
                .map(|&(_, skipped)| skipped)
                .collect();
            match skipped[..] {
                [skipped] if (PER_PHASE..=published - FEED_CAPACITY).contains(&skipped) => {
                    published - FEED_CAPACITY - skipped
                }
                _ => panic!(
                    "{user}'s feed should have lagged once, by {PER_PHASE} to {} messages, when \
                     it read again; it lagged by {skipped:?}: its connection was not full before \
                     (c) (the kernel's send buffers, tcp_wmem = {}, may hold more than a phase \
                     here)",
                    published - FEED_CAPACITY,
                    wmem.trim()
                ),
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
