//! Beacon to panel latency: how long after a page view's beacon is sent the agents' live panels
//! receive the delta that shows it, with many panels open on a busy site.
//!
//! Porchlight runs in a child process pinned to core 0 (a Tokio runtime with one worker thread,
//! the default 100 ms push interval). This process, pinned to core 1, opens `BENCH_PANELS`
//! (100) live panels on the site as a signed-in owner, then sends beacons open-loop at a fixed
//! `BENCH_RATE` (10 000/s): a ticker computes how many beacons are due by now and hands them
//! round-robin to `BENCH_SENDER_CONNECTIONS` (32) keep-alive connections, whose writers send
//! without waiting for earlier responses (readers consume those separately), so a slow server
//! cannot slow the sending down. Background traffic is the realistic mix of the `ingest`
//! benchmark (50 000 visitors, heartbeats and page views, 30 % page views), after a priming
//! pass that makes every visitor live (sent as fast as the server takes it). Among it,
//! `BENCH_PROBES_PER_SECOND` (20) probe page views from dedicated visitors carry a unique
//! `plprobe=N` in their URL; the instant each probe is actually written to its socket is
//! recorded. Every panel (a minimal listening WebSocket client, `support/ws.rs`, so that 100 of
//! them on one core stay cheap) scans every frame for probe markers (a byte search, no JSON
//! parse) and records `received - sent` for the first sighting of each probe into one
//! histogram.
//!
//! Warm-up `BENCH_WARMUP_SECONDS` (2 s), measured window `BENCH_SECONDS` (10 s; probes sent in
//! it count), then a grace second for the last deltas. Reports latency percentiles, probes
//! delivered against expected per panel (drops), deltas and bytes the panels received, and CPU
//! use of the server and of this process.
//!
//! Headline: `panel_latency_p99_ms L (P panels, R beacons/s)`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use memchr::memmem;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use support::http1::ResponseReader;
use support::procs::{CLIENT_CPU, CpuWindow, SERVER_CPU, ServerProcess};
use support::servers::{OWNER_EMAIL, OWNER_PASSWORD};
use support::traffic::{self, ORIGIN, Requests, SITE, Traffic, Visitor};
use support::ws::{self, Panel};

const ROUNDS: usize = 4;
const PAGE_VIEW_SHARE: f64 = 0.3;
const NEW_VISIT_SHARE: f64 = 0.01;
/// Probes rotate over this many visitors (so one visitor gets a probe every few seconds,
/// never two in one push interval).
const PROBE_VISITORS: usize = 64;
const MARKER: &[u8] = b"plprobe=";
/// Time after the last beacon for the last deltas to arrive.
const GRACE: Duration = Duration::from_secs(1);

struct Config {
    warmup: Duration,
    measure: Duration,
    panels: usize,
    rate: u64,
    probes_per_second: u64,
    connections: usize,
    visitors: usize,
}

/// The same allocator as the `porchlight` binary, for the server roles this binary runs (the
/// baseline server runs under it too, so the comparison stays like for like).
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
            eprintln!("panel_latency: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let config = Config {
        warmup: support::env_seconds("BENCH_WARMUP_SECONDS", 2)?,
        measure: support::env_seconds("BENCH_SECONDS", 10)?.max(Duration::from_secs(1)),
        panels: support::env_number("BENCH_PANELS", 100)?.max(1) as usize,
        rate: support::env_number("BENCH_RATE", 10_000)?.max(1),
        probes_per_second: support::env_number("BENCH_PROBES_PER_SECOND", 20)?.max(1),
        connections: support::env_number("BENCH_SENDER_CONNECTIONS", 32)?.max(1) as usize,
        visitors: support::env_number("BENCH_VISITORS", 50_000)?.max(1) as usize,
    };
    if config.probes_per_second > config.rate {
        bail!("BENCH_PROBES_PER_SECOND cannot exceed BENCH_RATE");
    }
    println!(
        "panel_latency: server on core {SERVER_CPU} (1 worker thread, 100 ms push interval); \
         {} panels and an open-loop sender of {} beacons/s over {} connections on core \
         {CLIENT_CPU}; {} probes/s; warm-up {}s, measured {}s",
        config.panels,
        config.rate,
        config.connections,
        config.probes_per_second,
        config.warmup.as_secs(),
        config.measure.as_secs(),
    );
    let mut traffic = Traffic::new(config.visitors, 0x1b6e57);
    let pool = traffic.pool(ROUNDS, PAGE_VIEW_SHARE, NEW_VISIT_SHARE);
    println!(
        "panel_latency: {} visitors; {}",
        config.visitors,
        pool.describe()
    );
    // Probes come from browsers (a crawler is never listed).
    let mut probe_visitors = Traffic::new(PROBE_VISITORS, 0x9e0b).visitors;
    for (index, visitor) in probe_visitors.iter_mut().enumerate() {
        visitor.user_agent = traffic::BROWSERS[index % traffic::BROWSERS.len()];
    }

    let server = ServerProcess::start("porchlight-server", &["--owner"])?;
    let requests = Arc::new(Requests::new(&pool, &traffic, server.addr));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(&server, requests, &probe_visitors, &config));
    drop(runtime);
    let stopped = server.stop();
    result?;
    stopped
}

/// When each probe was due and when it was written, in nanoseconds since `base`.
struct ProbeBook {
    base: Instant,
    due: Vec<AtomicU64>,
    sent: Vec<AtomicU64>,
}

impl ProbeBook {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }
}

/// What one beacon connection writes.
enum Outgoing {
    Pooled(usize),
    Raw(Vec<u8>),
    Probe(usize, Vec<u8>),
}

#[derive(Default)]
struct SenderCounters {
    written: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Most requests written but not yet answered on one connection.
    max_backlog: AtomicU64,
}

/// What one panel saw.
#[derive(Default)]
struct PanelStats {
    /// Frames and bytes received in the measured window.
    frames: u64,
    bytes: u64,
    /// Snapshots received after the first (resynchronisations), over the whole run.
    snapshots: u64,
    /// First sighting of each probe: (probe, latency in ns).
    probes: Vec<(usize, u64)>,
    unknown_markers: u64,
}

async fn bench(
    server: &ServerProcess,
    requests: Arc<Requests>,
    probe_visitors: &[Visitor],
    config: &Config,
) -> anyhow::Result<()> {
    let addr = server.addr;
    let cookie = login(addr).await?;

    // The panels, each past its first snapshot.
    let mut panels = Vec::with_capacity(config.panels);
    for _ in 0..config.panels {
        panels.push(open_panel(addr, &cookie).await?);
    }
    println!("panel_latency: {} panels open", panels.len());

    let total = config.warmup + config.measure;
    let capacity =
        (config.probes_per_second * (total.as_secs() + 2)) as usize + PROBE_VISITORS + 16;
    let book = Arc::new(ProbeBook {
        base: Instant::now(),
        due: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        sent: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
    });
    let (stop, stopped) = watch::channel(false);
    let measuring = Arc::new(AtomicBool::new(false));
    let mut panel_tasks = JoinSet::new();
    for panel in panels {
        panel_tasks.spawn(watch_panel(
            panel,
            Arc::clone(&book),
            Arc::clone(&measuring),
            stopped.clone(),
        ));
    }

    // The sender's connections.
    let counters = Arc::new(SenderCounters::default());
    let mut conn_tasks = JoinSet::new();
    let mut outboxes = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        outboxes.push(tx);
        let read_count = Arc::new(AtomicU64::new(0));
        conn_tasks.spawn(write_beacons(
            write,
            rx,
            Arc::clone(&requests),
            Arc::clone(&book),
            Arc::clone(&counters),
            Arc::clone(&read_count),
        ));
        conn_tasks.spawn(read_responses(read, Arc::clone(&counters), read_count));
    }

    // Probe visitors start their visits first, so that every probe is an ordinary page view
    // of a visitor in memory.
    let mut next_outbox = 0;
    let mut send = |item: Outgoing| {
        let _ = outboxes[next_outbox].send(item);
        next_outbox = (next_outbox + 1) % outboxes.len();
    };
    let probe_request = |id: usize, marker: bool| {
        let who = &probe_visitors[id % PROBE_VISITORS];
        let url = if marker {
            format!("{ORIGIN}/checkout/shipping?step=2&plprobe={id}")
        } else {
            format!("{ORIGIN}/cart")
        };
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        let body = traffic::beacon_body(
            who,
            &who.sid,
            "pageview",
            &url,
            "Shipping – Checkout | Example Outfitters",
            None,
            ts,
        );
        traffic::request(addr, who, &body)
    };
    for visitor in 0..PROBE_VISITORS {
        send(Outgoing::Raw(probe_request(visitor, false)));
    }
    // Then every background visitor's landing page view, as fast as the server takes them, so
    // that the run starts in the steady state (the panels get large deltas meanwhile).
    let priming = Instant::now();
    for n in 0..requests.prime_len() {
        send(Outgoing::Pooled(n));
    }
    let primed = (requests.prime_len() + PROBE_VISITORS) as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(ended) = conn_tasks.try_join_next() {
            ended??;
            bail!("a beacon connection ended early");
        }
        let answered =
            counters.ok.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
        if answered >= primed {
            break;
        }
        if priming.elapsed() > Duration::from_secs(120) {
            bail!("priming: only {answered} of {primed} beacons answered in 120s");
        }
    }
    println!(
        "panel_latency: {primed} visitors live after {:.1}s of priming",
        priming.elapsed().as_secs_f64()
    );

    // The open-loop ticker.
    let probe_every = (config.rate / config.probes_per_second).max(1);
    let start = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: u64 = 0;
    let mut pooled = requests.prime_len();
    let mut probes = 0usize;
    let mut measured_probes = None;
    let mut window = None;
    loop {
        interval.tick().await;
        let elapsed = start.elapsed();
        if window.is_none() && elapsed >= config.warmup {
            window = Some((
                CpuWindow::start(server.pid)?,
                counters.written.load(Ordering::Relaxed),
                Instant::now(),
            ));
            measured_probes = Some(probes..probes);
            measuring.store(true, Ordering::Relaxed);
        }
        if elapsed >= total {
            measuring.store(false, Ordering::Relaxed);
            break;
        }
        let due = (elapsed.as_secs_f64() * config.rate as f64) as u64;
        while sent < due {
            if sent.is_multiple_of(probe_every) && probes < capacity {
                let intended = start + Duration::from_secs_f64(sent as f64 / config.rate as f64);
                book.due[probes].store(book.nanos(intended), Ordering::Relaxed);
                send(Outgoing::Probe(probes, probe_request(probes, true)));
                probes += 1;
            } else {
                send(Outgoing::Pooled(pooled));
                pooled += 1;
            }
            sent += 1;
        }
        if let Some(range) = &mut measured_probes {
            range.end = probes;
        }
    }
    let (cpu_window, written_before, measured_from) =
        window.context("the run ended before the measured window")?;
    let cpu = cpu_window.finish()?;
    let written = counters.written.load(Ordering::Relaxed) - written_before;
    let send_rate = written as f64 / measured_from.elapsed().as_secs_f64();
    let measured_probes = measured_probes.context("no measured window")?;
    drop(outboxes);

    // Let the last deltas arrive, then collect.
    tokio::time::sleep(GRACE).await;
    stop.send_replace(true);
    let mut stats = Vec::with_capacity(config.panels);
    while let Some(panel) = panel_tasks.join_next().await {
        stats.push(panel??);
    }
    // Connections that ended by themselves ended with an error; the rest are stopped.
    if let Some(task) = conn_tasks.try_join_next() {
        task??;
        bail!("a beacon connection ended early");
    }
    conn_tasks.shutdown().await;
    let metrics = testkit::http_client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;

    report(ReportInput {
        config,
        stats: &stats,
        book: &book,
        measured: measured_probes,
        counters: &counters,
        send_rate,
        cpu,
        metrics: &metrics,
    })
}

struct ReportInput<'a> {
    config: &'a Config,
    stats: &'a [PanelStats],
    book: &'a ProbeBook,
    measured: std::ops::Range<usize>,
    counters: &'a SenderCounters,
    send_rate: f64,
    cpu: support::procs::CpuUse,
    metrics: &'a str,
}

fn report(input: ReportInput<'_>) -> anyhow::Result<()> {
    let ReportInput {
        config,
        stats,
        book,
        measured,
        counters,
        send_rate,
        cpu,
        metrics,
    } = input;
    let failed = counters.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} beacons were answered with an error status");
    }
    let expected = measured.len();
    if expected == 0 {
        bail!("no probe was sent in the measured window");
    }

    // Sender: how late were the probes written, against their schedule?
    let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for probe in measured.clone() {
        let due = book.due[probe].load(Ordering::Relaxed);
        let sent = book.sent[probe].load(Ordering::Relaxed);
        if sent > 0 {
            lag.saturating_record((sent.saturating_sub(due) / 1_000).max(1));
        }
    }
    let written = counters.written.load(Ordering::Relaxed);
    let answered = counters.ok.load(Ordering::Relaxed);
    println!(
        "sender: {send_rate:.0} beacons/s written in the measured window; {written} written in \
         all, {answered} answered OK ({} unanswered {}s after the last); most requests \
         outstanding on one connection: {}; probe write delay behind schedule p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms",
        written - answered,
        GRACE.as_secs(),
        counters.max_backlog.load(Ordering::Relaxed),
        lag.value_at_quantile(0.5) as f64 / 1e3,
        lag.value_at_quantile(0.99) as f64 / 1e3,
        lag.max() as f64 / 1e3,
    );

    // Panels.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut delivered: Vec<usize> = Vec::with_capacity(stats.len());
    for panel in stats {
        let mut count = 0;
        for &(probe, nanos) in &panel.probes {
            if measured.contains(&probe) {
                latency.saturating_record((nanos / 1_000).max(1));
                count += 1;
            }
        }
        delivered.push(count);
    }
    // Per probe: the first and the last panel to see it.
    let mut first_last: Vec<Option<(u64, u64)>> = vec![None; book.sent.len()];
    for panel in stats {
        for &(probe, nanos) in &panel.probes {
            if measured.contains(&probe) {
                let entry = first_last[probe].get_or_insert((nanos, nanos));
                entry.0 = entry.0.min(nanos);
                entry.1 = entry.1.max(nanos);
            }
        }
    }
    let mut first = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut spread = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (low, high) in first_last.iter().flatten() {
        first.saturating_record((low / 1_000).max(1));
        spread.saturating_record(((high - low) / 1_000).max(1));
    }
    let frames: u64 = stats.iter().map(|panel| panel.frames).sum();
    let snapshots: u64 = stats.iter().map(|panel| panel.snapshots).sum();
    let bytes: u64 = stats.iter().map(|panel| panel.bytes).sum();
    let unknown: u64 = stats.iter().map(|panel| panel.unknown_markers).sum();
    let seconds = config.measure.as_secs_f64();
    println!(
        "panels, measured window: {frames} frames ({:.1} per panel per second), {:.1} MB \
         ({:.1} MB/s over all panels, mean frame {:.1} KB); resync snapshots over the whole \
         run: {snapshots}",
        frames as f64 / stats.len() as f64 / seconds,
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds,
        bytes as f64 / frames.max(1) as f64 / 1e3,
    );
    let min = delivered.iter().copied().min().unwrap_or(0);
    let max = delivered.iter().copied().max().unwrap_or(0);
    let sum: usize = delivered.iter().sum();
    println!(
        "probes: {expected} sent in the measured window; delivered per panel min {min}, mean \
         {:.1}, max {max} of {expected}; {} missing over all panels{}",
        sum as f64 / stats.len() as f64,
        expected * stats.len() - sum,
        if unknown > 0 {
            format!("; {unknown} markers of probes never sent (a bug)")
        } else {
            String::new()
        },
    );
    if latency.is_empty() {
        bail!("no probe reached any panel");
    }
    println!(
        "latency beacon sent -> delta received ({} samples): p50 {:.1} ms, p90 {:.1} ms, p99 \
         {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        latency.len(),
        latency.value_at_quantile(0.5) as f64 / 1e3,
        latency.value_at_quantile(0.9) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3,
        latency.value_at_quantile(0.999) as f64 / 1e3,
        latency.max() as f64 / 1e3,
    );
    if !first.is_empty() {
        println!(
            "per probe: first panel to see it p50 {:.1} ms, p99 {:.1} ms; last panel later than \
             the first by p50 {:.1} ms, p99 {:.1} ms (the fan-out to {} panels)",
            first.value_at_quantile(0.5) as f64 / 1e3,
            first.value_at_quantile(0.99) as f64 / 1e3,
            spread.value_at_quantile(0.5) as f64 / 1e3,
            spread.value_at_quantile(0.99) as f64 / 1e3,
            stats.len(),
        );
    }
    println!(
        "cpu over the measured window: server {:.1}% of core {SERVER_CPU} (core {SERVER_CPU} \
         busy {:.1}% in all, {:.1}% stolen by the hypervisor); this process (sender and \
         panels) {:.1}% of core {CLIENT_CPU} ({:.1}% stolen)",
        100.0 * cpu.server,
        100.0 * cpu.server_core,
        100.0 * cpu.steal,
        100.0 * cpu.client,
        100.0 * cpu.client_steal,
    );
    if let Some(warning) = cpu.warning(false) {
        println!("{warning}: latencies include waiting for the CPU");
    }
    if cpu.client > 0.9 {
        println!(
            "WARNING: the sender and panels used {:.0}% of their core: receive times may \
             include waiting for it",
            100.0 * cpu.client
        );
    }
    println!(
        "porchlight /metrics: {:.0} beacons recorded, {:.0} delta frames, {:.0} snapshot \
         frames, {:.0} deltas dropped for slow panels, {:.0} changes coalesced",
        support::metric(
            metrics,
            "porchlight_beacons_total",
            &["outcome=\"recorded\""]
        ),
        support::metric(metrics, "porchlight_panel_frames_total", &["delta"]),
        support::metric(metrics, "porchlight_panel_frames_total", &["snapshot"]),
        support::metric(metrics, "porchlight_panel_deltas_dropped_total", &[]),
        support::metric(metrics, "porchlight_panel_changes_coalesced_total", &[]),
    );
    println!();
    println!(
        "panel_latency_p99_ms {:.1} ({} panels, {} beacons/s)",
        latency.value_at_quantile(0.99) as f64 / 1e3,
        config.panels,
        config.rate,
    );
    Ok(())
}

async fn login(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let response = testkit::http_client()
        .post(format!("http://{addr}/api/login"))
        .json(&serde_json::json!({ "email": OWNER_EMAIL, "password": OWNER_PASSWORD }))
        .send()
        .await?
        .error_for_status()
        .context("signing in")?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .context("no session cookie")?
        .to_str()?;
    Ok(cookie.split(';').next().context("empty cookie")?.to_owned())
}

async fn open_panel(addr: std::net::SocketAddr, cookie: &str) -> anyhow::Result<Panel> {
    let mut panel = Panel::connect(
        addr,
        &format!("/api/sites/{SITE}/live"),
        &[("Cookie", cookie)],
    )
    .await
    .context("opening a live panel")?;
    let first = panel.next().await?;
    if first.opcode != ws::TEXT || !first.payload.starts_with(br#"{"type":"snapshot""#) {
        bail!(
            "expected a snapshot frame first, got {:?}",
            String::from_utf8_lossy(&first.payload[..first.payload.len().min(200)])
        );
    }
    Ok(panel)
}

/// Reads a panel's frames until told to stop, noting the first sighting of every probe, and
/// counting frames and bytes while `measuring`.
async fn watch_panel(
    mut panel: Panel,
    book: Arc<ProbeBook>,
    measuring: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<PanelStats> {
    let finder = memmem::Finder::new(MARKER);
    let mut stats = PanelStats::default();
    let mut seen = vec![false; book.sent.len()];
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = panel.next() => frame.context("reading a panel")?,
        };
        let received = book.nanos(Instant::now());
        match frame.opcode {
            ws::TEXT => {}
            ws::CLOSE => bail!("the server closed a panel"),
            _ => continue,
        }
        let bytes = frame.payload;
        if bytes.starts_with(br#"{"type":"snapshot""#) {
            stats.snapshots += 1;
        }
        if measuring.load(Ordering::Relaxed) {
            stats.frames += 1;
            stats.bytes += bytes.len() as u64;
        }
        for at in finder.find_iter(bytes) {
            let digits = &bytes[at + MARKER.len()..];
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            let Some(probe) = std::str::from_utf8(&digits[..end])
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let sent = book
                .sent
                .get(probe)
                .map_or(0, |sent| sent.load(Ordering::Relaxed));
            if sent == 0 {
                stats.unknown_markers += 1;
                continue;
            }
            if !std::mem::replace(&mut seen[probe], true) {
                stats.probes.push((probe, received.saturating_sub(sent)));
            }
        }
    }
    panel.close().await;
    Ok(stats)
}

/// Writes beacons to one connection as they come, without waiting for responses.
async fn write_beacons(
    mut write: OwnedWriteHalf,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    requests: Arc<Requests>,
    book: Arc<ProbeBook>,
    counters: Arc<SenderCounters>,
    read: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut written = 0u64;
    while let Some(item) = outbox.recv().await {
        match item {
            Outgoing::Pooled(n) => write.write_all(requests.nth(n)).await?,
            Outgoing::Raw(request) => write.write_all(&request).await?,
            Outgoing::Probe(probe, request) => {
                book.sent[probe].store(book.nanos(Instant::now()), Ordering::Relaxed);
                write.write_all(&request).await?;
            }
        }
        written += 1;
        counters.written.fetch_add(1, Ordering::Relaxed);
        let backlog = written - read.load(Ordering::Relaxed);
        counters.max_backlog.fetch_max(backlog, Ordering::Relaxed);
    }
    // No more beacons. Keep the connection open (dropping the write half would half-close
    // it) until the run is over and this task is aborted.
    std::future::pending::<()>().await;
    drop(write);
    Ok(())
}

/// Reads the responses of one connection until the server closes it.
async fn read_responses(
    mut read: OwnedReadHalf,
    counters: Arc<SenderCounters>,
    count: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut responses = ResponseReader::default();
    loop {
        match responses.next(&mut read).await {
            Ok(status) => {
                count.fetch_add(1, Ordering::Relaxed);
                if (200..300).contains(&status) {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    if counters.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!(
                            "panel_latency: a beacon failed: {}",
                            responses.last_error().unwrap_or("")
                        );
                    }
                }
            }
            Err(error) => return Err(error).context("reading beacon responses"),
        }
    }
}
