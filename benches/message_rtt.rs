//! Agent message to visitor: how long after an agent starts sending a chat message over the API
//! the visitor's widget socket receives it, with many conversations open.
//!
//! Porchlight runs in a child process pinned to core 0 (a Tokio runtime with one worker
//! thread). This process, pinned to core 1, makes `BENCH_CONVERSATIONS` (1 000) visitors live
//! (a page view beacon each), registers their chat credentials, opens every visitor's WebSocket
//! (`hello` → `ready`, the minimal client of `support/ws.rs`), then signs in as the owner and
//! starts a conversation with each visitor through the agents' API. Then, open-loop at
//! `BENCH_MESSAGE_RATE` (200) messages/s, round-robin over the conversations, the agent posts
//! `POST /api/conversations/{id}/messages` whose text carries a unique `plrtt=N`; each post is
//! its own task on a pooled keep-alive client, so a slow answer does not delay the next send.
//! Every visitor socket scans its frames for the marker (a byte search, no JSON parse) and
//! records `received - send started` for each message, checking that it reached the right
//! visitor.
//!
//! Warm-up `BENCH_WARMUP_SECONDS` (2 s), measured window `BENCH_SECONDS` (10 s; messages sent in
//! it count), then a grace second. Reports latency percentiles, messages delivered against sent
//! (drops, duplicates, misrouted), the HTTP answer time of the posts, and CPU use.
//!
//! Headline: `message_rtt_p99_ms L (C open conversations)`.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use memchr::memmem;
use tokio::sync::watch;
use tokio::task::JoinSet;

use support::chat::{self, ChatVisitor};
use support::procs::{CLIENT_CPU, CpuWindow, SERVER_CPU, ServerProcess};
use support::traffic::SITE;
use support::ws::{self, Panel};

const MARKER: &[u8] = b"plrtt=";
/// Time after the last message for the last deliveries.
const GRACE: Duration = Duration::from_secs(1);
/// Requests in flight while setting up visitors, sockets and conversations.
const SETUP_CONCURRENCY: usize = 32;
/// Receive buffer of each visitor socket (grows for a larger frame).
const SOCKET_BUFFER: usize = 16 * 1024;

struct Config {
    warmup: Duration,
    measure: Duration,
    conversations: usize,
    rate: u64,
}

/// The same allocator as the `porchlight` binary, for the server role this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(role) = support::procs::role(&args) {
        return support::servers::run(role, &args);
    }
    if let Some(code) = support::procs::pin_client() {
        return code;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("message_rtt: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let config = Config {
        warmup: support::env_seconds("BENCH_WARMUP_SECONDS", 2)?,
        measure: support::env_seconds("BENCH_SECONDS", 10)?.max(Duration::from_secs(1)),
        conversations: support::env_number("BENCH_CONVERSATIONS", 1_000)?.max(1) as usize,
        rate: support::env_number("BENCH_MESSAGE_RATE", 200)?.max(1),
    };
    let needed = config.conversations as u64 + 256;
    let limit = chat::open_files_limit()?;
    if limit < needed {
        bail!(
            "{} visitor sockets need about {needed} open files, but the limit is {limit}: raise \
             it (`ulimit -n {needed}`)",
            config.conversations
        );
    }
    println!(
        "message_rtt: server on core {SERVER_CPU} (1 worker thread); {} visitors with open \
         sockets and conversations, agent posting {} messages/s round-robin on core \
         {CLIENT_CPU}; warm-up {}s, measured {}s",
        config.conversations,
        config.rate,
        config.warmup.as_secs(),
        config.measure.as_secs(),
    );
    let server = ServerProcess::start("porchlight-server", &["--owner"])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(&server, &config));
    drop(runtime);
    let stopped = server.stop();
    result?;
    stopped
}

/// When each message was due and when its post started and was answered, in nanoseconds since
/// `base` (0: not yet).
struct Book {
    base: Instant,
    due: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
    answered: Vec<AtomicU64>,
    failed: AtomicU64,
}

impl Book {
    fn nanos(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.base).as_nanos() as u64).max(1)
    }
}

/// What one visitor socket saw.
#[derive(Default)]
struct SocketStats {
    /// (message, latency in ns), first sighting of each.
    received: Vec<(usize, u64)>,
    duplicates: u64,
    /// Messages meant for another visitor.
    misrouted: u64,
    unknown: u64,
    frames: u64,
}

async fn bench(server: &ServerProcess, config: &Config) -> anyhow::Result<()> {
    let addr = server.addr;
    let count = config.conversations;

    let started = Instant::now();
    let visitors =
        chat::prepare(addr, chat::visitors(count, 0x003a_7c11), SETUP_CONCURRENCY).await?;
    println!(
        "message_rtt: {count} visitors live with credentials after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let visitors = Arc::new(visitors);
    let sockets = chat::bounded(count, SETUP_CONCURRENCY, |index| {
        let visitors = Arc::clone(&visitors);
        async move { chat::open_socket(addr, &visitors[index], SOCKET_BUFFER).await }
    })
    .await?;
    println!(
        "message_rtt: {} visitor sockets ready after {:.1}s",
        sockets.len(),
        started.elapsed().as_secs_f64()
    );

    let total = config.warmup + config.measure;
    let capacity = (config.rate * (total.as_secs() + 2)) as usize + 16;
    let book = Arc::new(Book {
        base: Instant::now(),
        due: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        sent: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        answered: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicU64::new(0),
    });
    let (stop, stopped) = watch::channel(false);
    let mut readers = JoinSet::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        readers.spawn(watch_socket(
            index,
            count,
            socket,
            Arc::clone(&book),
            stopped.clone(),
        ));
    }

    // The agent opens a conversation with every visitor.
    let cookie = Arc::new(chat::login(addr).await?);
    let client = testkit::http_client();
    let started = Instant::now();
    let conversations = chat::bounded(count, SETUP_CONCURRENCY, |index| {
        let visitors = Arc::clone(&visitors);
        start_conversation(client.clone(), addr, Arc::clone(&cookie), visitors, index)
    })
    .await?;
    println!(
        "message_rtt: {} conversations started after {:.1}s",
        conversations.len(),
        started.elapsed().as_secs_f64()
    );
    // Let the opening messages reach the widgets.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The open-loop ticker.
    let start = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut posts = JoinSet::new();
    let mut sent = 0usize;
    let mut measured = None;
    let mut window = None;
    loop {
        interval.tick().await;
        let elapsed = start.elapsed();
        if window.is_none() && elapsed >= config.warmup {
            window = Some(CpuWindow::start(server.pid)?);
            measured = Some(sent..sent);
        }
        if elapsed >= total {
            break;
        }
        // Message n is due at n / rate.
        let due = ((elapsed.as_secs_f64() * config.rate as f64) as usize + 1).min(capacity);
        while sent < due {
            let intended = start + Duration::from_secs_f64(sent as f64 / config.rate as f64);
            book.due[sent].store(book.nanos(intended), Ordering::Relaxed);
            let conversation = conversations[sent % count];
            posts.spawn(post_message(
                client.clone(),
                addr,
                Arc::clone(&cookie),
                conversation,
                sent,
                Arc::clone(&book),
            ));
            sent += 1;
        }
        if let Some(range) = &mut measured {
            range.end = sent;
        }
        while let Some(done) = posts.try_join_next() {
            done??;
        }
    }
    let cpu = window
        .context("the run ended before the measured window")?
        .finish()?;
    let measured = measured.context("no measured window")?;
    let last_sent = Instant::now();
    let deadline = last_sent + Duration::from_secs(30);
    while let Some(done) = tokio::time::timeout_at(deadline.into(), posts.join_next())
        .await
        .context("posts still unanswered 30s after the last")?
    {
        done??;
    }
    tokio::time::sleep_until((last_sent + GRACE).into()).await;
    stop.send_replace(true);
    let mut stats = Vec::with_capacity(count);
    while let Some(socket) = readers.join_next().await {
        stats.push(socket??);
    }
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await
        .unwrap_or_default();
    report(config, &book, measured, &stats, cpu, &metrics)
}

async fn start_conversation(
    client: reqwest::Client,
    addr: SocketAddr,
    cookie: Arc<String>,
    visitors: Arc<Vec<ChatVisitor>>,
    index: usize,
) -> anyhow::Result<u64> {
    let vid = &visitors[index].visitor.vid;
    let response = client
        .post(format!(
            "http://{addr}/api/sites/{SITE}/visitors/{vid}/conversations"
        ))
        .header("Cookie", cookie.as_str())
        .json(&serde_json::json!({ "text": "Hi! Can I help you find the right size?" }))
        .send()
        .await?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "starting a conversation: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = response.json().await?;
    body["conversation"]["id"]
        .as_u64()
        .context("no conversation id in the answer")
}

async fn post_message(
    client: reqwest::Client,
    addr: SocketAddr,
    cookie: Arc<String>,
    conversation: u64,
    n: usize,
    book: Arc<Book>,
) -> anyhow::Result<()> {
    let text = format!("We have that jacket in medium, ref plrtt={n} — shall I hold one?");
    let request = client
        .post(format!(
            "http://{addr}/api/conversations/{conversation}/messages"
        ))
        .header("Cookie", cookie.as_str())
        .json(&serde_json::json!({ "text": text }));
    book.sent[n].store(book.nanos(Instant::now()), Ordering::Relaxed);
    let response = request.send().await?;
    let status = response.status();
    let _ = response.bytes().await;
    if status == reqwest::StatusCode::CREATED {
        book.answered[n].store(book.nanos(Instant::now()), Ordering::Relaxed);
    } else if book.failed.fetch_add(1, Ordering::Relaxed) == 0 {
        eprintln!("message_rtt: a message post was answered {status}");
    }
    Ok(())
}

/// Reads one visitor's frames until told to stop, noting the first sighting of every message.
async fn watch_socket(
    index: usize,
    count: usize,
    mut socket: Panel,
    book: Arc<Book>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<SocketStats> {
    let finder = memmem::Finder::new(MARKER);
    let mut stats = SocketStats::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = socket.next() => frame.context("reading a visitor socket")?,
        };
        let received = book.nanos(Instant::now());
        match frame.opcode {
            ws::TEXT => {}
            ws::CLOSE => bail!("the server closed a visitor socket"),
            _ => continue,
        }
        stats.frames += 1;
        let bytes = frame.payload;
        // serde_json writes the keys in order: `{"message":{…},"type":"message"}`.
        if !bytes.ends_with(br#","type":"message"}"#) && !bytes.starts_with(br#"{"type":"message""#)
        {
            continue;
        }
        for at in finder.find_iter(bytes) {
            let digits = &bytes[at + MARKER.len()..];
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            let Some(n) = std::str::from_utf8(&digits[..end])
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let sent = book.sent.get(n).map_or(0, |at| at.load(Ordering::Relaxed));
            if sent == 0 {
                stats.unknown += 1;
            } else if n % count != index {
                stats.misrouted += 1;
            } else if !seen.insert(n) {
                stats.duplicates += 1;
            } else {
                stats.received.push((n, received.saturating_sub(sent)));
            }
        }
    }
    socket.close().await;
    Ok(stats)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1e3
}

fn report(
    config: &Config,
    book: &Book,
    measured: std::ops::Range<usize>,
    stats: &[SocketStats],
    cpu: support::procs::CpuUse,
    metrics: &str,
) -> anyhow::Result<()> {
    let expected = measured.len();
    if expected == 0 {
        bail!("no message was sent in the measured window");
    }
    let failed = book.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} message posts were answered with an error status");
    }

    let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut answer = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for n in measured.clone() {
        let due = book.due[n].load(Ordering::Relaxed);
        let sent = book.sent[n].load(Ordering::Relaxed);
        let answered = book.answered[n].load(Ordering::Relaxed);
        lag.saturating_record((sent.saturating_sub(due) / 1_000).max(1));
        if answered > 0 {
            answer.saturating_record((answered.saturating_sub(sent) / 1_000).max(1));
        }
    }
    println!(
        "agent: {expected} messages posted in the measured window ({:.0}/s); post start behind \
         schedule p50 {:.2} ms, p99 {:.2} ms; HTTP answer (201) after p50 {:.1} ms, p99 {:.1} \
         ms, max {:.1} ms",
        expected as f64 / config.measure.as_secs_f64(),
        ms(lag.value_at_quantile(0.5)),
        ms(lag.value_at_quantile(0.99)),
        ms(answer.value_at_quantile(0.5)),
        ms(answer.value_at_quantile(0.99)),
        ms(answer.max()),
    );

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for socket in stats {
        for &(n, nanos) in &socket.received {
            if measured.contains(&n) {
                latency.saturating_record((nanos / 1_000).max(1));
            }
        }
    }
    let delivered = latency.len() as usize;
    let duplicates: u64 = stats.iter().map(|s| s.duplicates).sum();
    let misrouted: u64 = stats.iter().map(|s| s.misrouted).sum();
    let unknown: u64 = stats.iter().map(|s| s.unknown).sum();
    let frames: u64 = stats.iter().map(|s| s.frames).sum();
    println!(
        "visitors: {delivered} of {expected} measured messages delivered ({} missing); over the \
         whole run {duplicates} duplicates, {misrouted} to the wrong visitor, {unknown} never \
         sent (a bug); {frames} text frames after ready in all",
        expected - delivered.min(expected),
    );
    if latency.is_empty() {
        bail!("no message reached a visitor");
    }
    println!(
        "latency agent post started -> visitor socket received ({} samples): p50 {:.1} ms, p90 \
         {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        latency.len(),
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.9)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.value_at_quantile(0.999)),
        ms(latency.max()),
    );
    println!(
        "cpu over the measured window: server {:.1}% of core {SERVER_CPU} (core {SERVER_CPU} \
         busy {:.1}% in all, {:.1}% stolen by the hypervisor); this process (agent and \
         visitors) {:.1}% of core {CLIENT_CPU} ({:.1}% stolen)",
        100.0 * cpu.server,
        100.0 * cpu.server_core,
        100.0 * cpu.steal,
        100.0 * cpu.client,
        100.0 * cpu.client_steal,
    );
    if let Some(warning) = cpu.warning(false) {
        println!("{warning}: latencies include waiting for the CPU");
    }
    let chat_metrics: Vec<&str> = metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains("chat"))
        .take(8)
        .collect();
    if !chat_metrics.is_empty() {
        println!("porchlight /metrics (chat): {}", chat_metrics.join("; "));
    }
    println!();
    println!(
        "message_rtt_p99_ms {:.1} ({} open conversations)",
        ms(latency.value_at_quantile(0.99)),
        config.conversations,
    );
    Ok(())
}
