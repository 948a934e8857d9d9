//! Ingest throughput: enriched beacons through Porchlight's real `POST /v1/beacon`, against a
//! bare axum baseline that only parses the same bodies, in the same run.
//!
//! Each server runs alone in a child process pinned to core 0 (a Tokio runtime with one worker
//! thread); this process, pinned to core 1, is the load generator: a closed loop over
//! `BENCH_CONNECTIONS` (64) keep-alive connections, each sending one pre-serialised HTTP/1.1
//! request and reading its response before sending the next. The requests are realistic: bodies
//! of 400–600 bytes as the widget writes them, 50 000 visitors (`BENCH_VISITORS`) with real
//! User-Agents (one in a hundred a crawler), addresses over the GeoIP fixture networks in
//! `X-Forwarded-For` from the trusted loopback proxy, landing pages with UTM parameters and
//! referrers, then heartbeats and page views, 30 % page views in all. Both servers get the same
//! requests in the same order.
//!
//! Each server gets a warm-up (`BENCH_WARMUP_SECONDS`, 2 s, and at least until every visitor
//! has been seen once, so the window measures the steady state of visitors already in memory)
//! and a measured window (`BENCH_SECONDS`, 10 s). The server's CPU time over the window (from
//! `/proc/PID/stat`) shows whether the server, not the load generator, was the bottleneck.
//!
//! Headline: `ingest_ratio R (porchlight N/s, baseline M/s)`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use support::http1::ResponseReader;
use support::procs::{CLIENT_CPU, CpuUse, CpuWindow, SERVER_CPU, ServerProcess};
use support::traffic::{self, Traffic};

/// Beacons per visitor in the request pool, and the share of page views among them.
const ROUNDS: usize = 4;
const PAGE_VIEW_SHARE: f64 = 0.3;

struct Config {
    warmup: Duration,
    measure: Duration,
    connections: usize,
    visitors: usize,
}

/// What one server did in its measured window.
struct Outcome {
    rate: f64,
    cpu: CpuUse,
    connections: usize,
    /// Porchlight's own view: beacons by outcome and time spent in the handler.
    metrics: Option<String>,
}

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
            eprintln!("ingest: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let config = Config {
        warmup: support::env_seconds("BENCH_WARMUP_SECONDS", 2)?,
        measure: support::env_seconds("BENCH_SECONDS", 10)?,
        connections: support::env_number("BENCH_CONNECTIONS", 64)?.max(1) as usize,
        visitors: support::env_number("BENCH_VISITORS", 50_000)?.max(1) as usize,
    };
    let mut traffic = Traffic::new(config.visitors, 0x1b6e57);
    let beacons = traffic.beacons(ROUNDS, PAGE_VIEW_SHARE);
    let (min, mean, max) = traffic::body_sizes(&beacons);
    let page_views = beacons.iter().filter(|beacon| beacon.page_view).count();
    let crawlers = traffic
        .visitors
        .iter()
        .filter(|visitor| visitor.user_agent == traffic::CRAWLER)
        .count();
    println!(
        "ingest: servers on core {SERVER_CPU} (1 worker thread), load generator on core \
         {CLIENT_CPU}: {} keep-alive connections, closed loop, warm-up {}s, measured {}s each",
        config.connections,
        config.warmup.as_secs(),
        config.measure.as_secs(),
    );
    println!(
        "ingest: {} distinct requests from {} visitors; bodies {min}-{max} bytes (mean {mean}); \
         {:.1}% page views; {} User-Agents, {:.1}% of visitors crawlers",
        beacons.len(),
        config.visitors,
        100.0 * page_views as f64 / beacons.len() as f64,
        traffic::BROWSERS.len() + 1,
        100.0 * crawlers as f64 / config.visitors as f64,
    );

    let baseline = measure("baseline", "baseline-server", &traffic, &beacons, &config)?;
    let porchlight = measure(
        "porchlight",
        "porchlight-server",
        &traffic,
        &beacons,
        &config,
    )?;

    println!();
    if let Some(metrics) = &porchlight.metrics {
        let outcome = |label: &str| {
            support::metric(
                metrics,
                "porchlight_beacons_total",
                &[&format!("outcome=\"{label}\"")],
            )
        };
        let total = support::metric(metrics, "porchlight_beacons_total", &[]);
        let seconds = support::metric(metrics, "porchlight_ingest_seconds_sum", &[]);
        let count = support::metric(metrics, "porchlight_ingest_seconds_count", &[]);
        println!(
            "porchlight /metrics: {total:.0} beacons: {:.0} recorded, {:.0} crawler, {:.0} \
             ignored, {:.0} other; mean time in the ingest pipeline (after body read and parse \
             checks) {:.2} µs",
            outcome("recorded"),
            outcome("crawler"),
            outcome("ignored"),
            total - outcome("recorded") - outcome("crawler") - outcome("ignored"),
            if count > 0.0 {
                seconds / count * 1e6
            } else {
                0.0
            },
        );
        if outcome("recorded") + outcome("crawler") < total * 0.99 {
            bail!("more than 1% of Porchlight's beacons were not recorded: the traffic is wrong");
        }
    }
    println!(
        "per beacon: porchlight {:.2} µs of server CPU, baseline {:.2} µs",
        porchlight.cpu.server / porchlight.rate * 1e6,
        baseline.cpu.server / baseline.rate * 1e6,
    );
    println!();
    println!(
        "ingest_ratio {:.2} (porchlight {:.0}/s, baseline {:.0}/s)",
        porchlight.rate / baseline.rate,
        porchlight.rate,
        baseline.rate,
    );
    Ok(())
}

fn report(name: &str, outcome: &Outcome) {
    let cpu = outcome.cpu;
    println!(
        "{name:>10}: {:>7.0} req/s; server {:>5.1}% of core {SERVER_CPU} (core {SERVER_CPU} busy \
         {:>5.1}% in all); load generator {:>5.1}% of core {CLIENT_CPU}; mean latency {:.2} ms",
        outcome.rate,
        100.0 * cpu.server,
        100.0 * cpu.server_core,
        100.0 * cpu.client,
        1e3 * outcome.connections as f64 / outcome.rate,
    );
    if cpu.server < 0.9 {
        println!(
            "{name:>10}: WARNING: the server used only {:.0}% of its core: something else (the \
             load generator at {:.0}% of its core, or other work on core {SERVER_CPU}) limited \
             this figure",
            100.0 * cpu.server,
            100.0 * cpu.client,
        );
    }
    if cpu.server_core - cpu.server > 0.1 {
        println!(
            "{name:>10}: WARNING: {:.0}% of core {SERVER_CPU} went to something other than the \
             server (interrupts or other processes): the machine is not quiet",
            100.0 * (cpu.server_core - cpu.server),
        );
    }
}

/// Shared by the connections of one run.
#[derive(Default)]
struct Counters {
    next: AtomicUsize,
    ok: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    first_failure: std::sync::Mutex<Option<String>>,
}

fn measure(
    name: &str,
    role: &str,
    traffic: &Traffic,
    beacons: &[traffic::Beacon],
    config: &Config,
) -> anyhow::Result<Outcome> {
    println!("{name}: starting the server");
    let server = ServerProcess::start(role, &[])?;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        beacons
            .iter()
            .map(|beacon| {
                traffic::request(server.addr, &traffic.visitors[beacon.visitor], &beacon.body)
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let mut outcome = load(name, &server, requests, config).await?;
        if role == "porchlight-server" {
            outcome.metrics = Some(
                reqwest::get(format!("http://{}/metrics", server.addr))
                    .await?
                    .error_for_status()?
                    .text()
                    .await?,
            );
        }
        anyhow::Ok(outcome)
    });
    drop(runtime);
    let stopped = server.stop();
    let outcome = outcome?;
    stopped?;
    report(name, &outcome);
    Ok(outcome)
}

async fn load(
    name: &str,
    server: &ServerProcess,
    requests: Arc<Vec<Vec<u8>>>,
    config: &Config,
) -> anyhow::Result<Outcome> {
    let counters = Arc::new(Counters::default());
    let mut connections = JoinSet::new();
    for _ in 0..config.connections {
        let stream = TcpStream::connect(server.addr)
            .await
            .context("connecting to the server")?;
        stream.set_nodelay(true)?;
        connections.spawn(connection(
            stream,
            Arc::clone(&requests),
            Arc::clone(&counters),
        ));
    }

    // Warm-up: the configured time, and at least one beacon from every visitor.
    let started = Instant::now();
    let give_up = config.warmup + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(ended) = connections.try_join_next() {
            ended??;
            bail!("a connection ended early");
        }
        let done = counters.ok.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed);
        if started.elapsed() >= config.warmup && done >= config.visitors as u64 {
            break;
        }
        if started.elapsed() > give_up {
            bail!("warm-up: only {done} responses in {}s", give_up.as_secs());
        }
    }
    println!(
        "{name}: warmed up in {:.1}s; measuring for {}s",
        started.elapsed().as_secs_f64(),
        config.measure.as_secs()
    );

    let window = CpuWindow::start(server.pid)?;
    let before = counters.ok.load(Ordering::Relaxed);
    let measured_from = Instant::now();
    tokio::time::sleep(config.measure).await;
    let after = counters.ok.load(Ordering::Relaxed);
    let elapsed = measured_from.elapsed().as_secs_f64();
    let cpu = window.finish()?;

    counters.stop.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ended) = connections.join_next().await {
            ended??;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => bail!("connections did not finish within 10s of the end"),
    }
    let failed = counters.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = counters.first_failure.lock().expect("lock").clone();
        bail!(
            "{failed} requests failed; the first answer was:\n{}",
            first.unwrap_or_default()
        );
    }
    Ok(Outcome {
        rate: (after - before) as f64 / elapsed,
        cpu,
        connections: config.connections,
        metrics: None,
    })
}

/// One keep-alive connection of the closed loop: send the next request, read its response.
async fn connection(
    mut stream: TcpStream,
    requests: Arc<Vec<Vec<u8>>>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let mut responses = ResponseReader::default();
    while !counters.stop.load(Ordering::Relaxed) {
        let index = counters.next.fetch_add(1, Ordering::Relaxed) % requests.len();
        stream.write_all(&requests[index]).await?;
        let status = responses.next(&mut stream).await?;
        if (200..300).contains(&status) {
            counters.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = counters.first_failure.lock().expect("lock");
            if first.is_none() {
                *first = responses.last_error().map(str::to_owned);
            }
        }
    }
    Ok(())
}
