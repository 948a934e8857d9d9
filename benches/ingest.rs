//! Ingest throughput: enriched beacons through Porchlight's real `POST /v1/beacon`, against a
//! bare axum baseline that only parses the same bodies, in the same run.
//!
//! Each server runs in a child process pinned to core 0 (a Tokio runtime with one worker
//! thread); this process, pinned to core 1, is the load generator: a closed loop over
//! `BENCH_CONNECTIONS` (64) keep-alive connections to each server, each sending one
//! pre-serialised HTTP/1.1 request and reading its response before sending the next. Only one
//! server is loaded at a time; the other sleeps.
//!
//! The requests are realistic: bodies of 400–600 bytes as the widget writes them, 50 000
//! visitors (`BENCH_VISITORS`) with real User-Agents (one in a hundred a crawler), addresses
//! over the GeoIP fixture networks in `X-Forwarded-For` from the trusted loopback proxy, an
//! `Origin` the site allows. A priming pass of every visitor's landing page view (UTM
//! parameters, referrers) makes them all live; then a steady cycle repeats: heartbeats and page
//! views, 30 % page views, some 2 % of beacons landing pages of new visits (a profile load and a
//! profile write each). Both servers get the same requests in the same order.
//!
//! Each server is warmed up (`BENCH_WARMUP_SECONDS`, 2 s, and at least the priming pass), then
//! measured for `BENCH_SECONDS` (10 s) in `BENCH_ROUNDS` (4) windows, alternating between the
//! two servers (baseline, Porchlight, Porchlight, baseline, …) so that a noisy neighbour on
//! this shared machine hits both alike. The server's CPU time over each window (from
//! `/proc/PID/stat`) shows whether the server, not the load generator, was the bottleneck; a
//! window where it was not, or where the core was busy with something else (other processes,
//! or time stolen by the hypervisor), is flagged, and its round is left out of the headline
//! (unless every round was). The load generator busy-polls (`BENCH_BUSY_POLL=0` turns that
//! off) so that the server's core never pays for waking it up: on the loopback, the sender of
//! a response does the receiver's TCP work, and in a VM waking a sleeping thread on another
//! core costs the waker an inter-processor interrupt, which a remote client would not cost.
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
use support::traffic::{self, Requests, Traffic};

/// Beacons per visitor in the steady cycle, the share of page views among them, and the share
/// of beacons that start a new visit (landing page views).
const ROUNDS: usize = 4;
const PAGE_VIEW_SHARE: f64 = 0.3;
const NEW_VISIT_SHARE: f64 = 0.01;
/// Unmeasured time at the start of each window, while the loop switches servers.
const SETTLE: Duration = Duration::from_millis(300);
/// Servers that can be measured as well, to see where Porchlight's time goes (see
/// `support::servers`): `BENCH_INGEST_TARGETS=baseline-json,porchlight-beacon-only`.
const DIAGNOSTIC_TARGETS: [&str; 2] = ["baseline-json", "porchlight-beacon-only"];

struct Config {
    warmup: Duration,
    measure: Duration,
    rounds: u32,
    connections: usize,
    visitors: usize,
    busy_poll: bool,
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
            eprintln!("ingest: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let config = Config {
        warmup: support::env_seconds("BENCH_WARMUP_SECONDS", 2)?,
        measure: support::env_seconds("BENCH_SECONDS", 10)?.max(Duration::from_secs(1)),
        rounds: support::env_number("BENCH_ROUNDS", 4)?.clamp(1, 100) as u32,
        connections: support::env_number("BENCH_CONNECTIONS", 64)?.max(1) as usize,
        visitors: support::env_number("BENCH_VISITORS", 50_000)?.max(1) as usize,
        busy_poll: support::env_number("BENCH_BUSY_POLL", 1)? != 0,
    };
    let mut traffic = Traffic::new(config.visitors, 0x1b6e57);
    let pool = traffic.pool(ROUNDS, PAGE_VIEW_SHARE, NEW_VISIT_SHARE);
    let crawlers = traffic
        .visitors
        .iter()
        .filter(|visitor| visitor.user_agent == traffic::CRAWLER)
        .count();
    println!(
        "ingest: servers on core {SERVER_CPU} (1 worker thread each), load generator on core \
         {CLIENT_CPU}: {} keep-alive connections per server, closed loop; warm-up {}s; {}s \
         measured per server in {} alternating windows",
        config.connections,
        config.warmup.as_secs(),
        config.measure.as_secs(),
        config.rounds,
    );
    println!(
        "ingest: {} visitors, {} User-Agents, {:.1}% of visitors crawlers; {}",
        config.visitors,
        traffic::BROWSERS.len() + 1,
        100.0 * crawlers as f64 / config.visitors as f64,
        pool.describe(),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The two measured servers first; diagnostic variants after them, if asked for.
    let mut names: Vec<String> = vec!["baseline".into(), "porchlight".into()];
    if let Ok(extra) = std::env::var("BENCH_INGEST_TARGETS") {
        for name in extra
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if !DIAGNOSTIC_TARGETS.contains(&name) {
                bail!(
                    "BENCH_INGEST_TARGETS: unknown {name:?}; known: {}",
                    DIAGNOSTIC_TARGETS.join(", ")
                );
            }
            names.push(name.to_owned());
        }
    }
    let mut targets = Vec::new();
    for name in names {
        let role = format!("{name}-server");
        let server = ServerProcess::start(&role, &[])?;
        let requests = Arc::new(Requests::new(&pool, &traffic, server.addr));
        targets.push(Target {
            name,
            server,
            requests,
            counters: Arc::default(),
            streams: Vec::new(),
            windows: Vec::new(),
        });
    }
    let result = runtime.block_on(bench(&mut targets, &config));
    drop(runtime);
    let mut stopped = Ok(());
    for target in targets {
        stopped = stopped.and(target.server.stop());
    }
    result?;
    stopped
}

/// One server under test and its side of the load generator.
struct Target {
    name: String,
    server: ServerProcess,
    requests: Arc<Requests>,
    counters: Arc<Counters>,
    /// The keep-alive connections, while no loop runs on them.
    streams: Vec<TcpStream>,
    windows: Vec<Window>,
}

/// One measured window.
struct Window {
    requests: u64,
    seconds: f64,
    cpu: CpuUse,
}

impl Window {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

#[derive(Default)]
struct Counters {
    next: AtomicUsize,
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn answered(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// Totals over windows: requests per second, and server CPU µs per request.
fn totals(windows: &[&Window]) -> (f64, f64) {
    let requests: u64 = windows.iter().map(|w| w.requests).sum();
    let seconds: f64 = windows.iter().map(|w| w.seconds).sum();
    let cpu: f64 = windows.iter().map(|w| w.cpu.server * w.seconds).sum();
    (
        requests as f64 / seconds,
        cpu / requests.max(1) as f64 * 1e6,
    )
}

async fn bench(targets: &mut [Target], config: &Config) -> anyhow::Result<()> {
    for target in targets.iter_mut() {
        for _ in 0..config.connections {
            let stream = TcpStream::connect(target.server.addr)
                .await
                .with_context(|| format!("connecting to the {} server", target.name))?;
            stream.set_nodelay(true)?;
            target.streams.push(stream);
        }
        let started = Instant::now();
        let prime = target.requests.prime_len() as u64;
        target
            .drive(
                config.busy_poll,
                config.warmup + Duration::from_secs(120),
                |elapsed, answered| elapsed >= config.warmup && answered >= prime,
            )
            .await
            .with_context(|| format!("warming up the {} server", target.name))?;
        println!(
            "{}: warmed up in {:.1}s",
            target.name,
            started.elapsed().as_secs_f64()
        );
    }

    let window = config.measure / config.rounds;
    for round in 0..config.rounds {
        // Baseline first in even rounds, Porchlight first in odd ones.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for index in order {
            let target = &mut targets[index];
            let measured = target.window(config.busy_poll, window).await?;
            let warning = measured.cpu.warning(true);
            println!(
                "round {}: {:>10} {:>7.0} req/s; server {:>5.1}% of core {SERVER_CPU} (core \
                 busy {:>5.1}%, stolen {:>4.1}%); load generator {:>5.1}% of core {CLIENT_CPU}{}",
                round + 1,
                target.name,
                measured.rate(),
                100.0 * measured.cpu.server,
                100.0 * measured.cpu.server_core,
                100.0 * measured.cpu.steal,
                100.0 * measured.cpu.client,
                warning
                    .map(|w| format!("\n         {w}"))
                    .unwrap_or_default(),
            );
            target.windows.push(measured);
        }
    }

    let metrics = reqwest::get(format!("http://{}/metrics", targets[1].server.addr))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let outcome = |label: &str| {
        support::metric(
            &metrics,
            "porchlight_beacons_total",
            &[&format!("outcome=\"{label}\"")],
        )
    };
    let total = support::metric(&metrics, "porchlight_beacons_total", &[]);
    let seconds = support::metric(&metrics, "porchlight_ingest_seconds_sum", &[]);
    let count = support::metric(&metrics, "porchlight_ingest_seconds_count", &[]);
    println!();
    println!(
        "porchlight /metrics: {total:.0} beacons: {:.0} recorded, {:.0} crawler, {:.0} other; \
         mean time in engage::Ingest::record {:.2} µs; {:.0} profile writes pending",
        outcome("recorded"),
        outcome("crawler"),
        total - outcome("recorded") - outcome("crawler"),
        if count > 0.0 {
            seconds / count * 1e6
        } else {
            0.0
        },
        support::metric(&metrics, "porchlight_profile_writes_pending", &[]),
    );
    if outcome("recorded") + outcome("crawler") < total * 0.99 {
        bail!("more than 1% of Porchlight's beacons were not recorded: the traffic is wrong");
    }

    // Rounds where either window was disturbed (the server short of its core, or the core
    // busy with something else) are left out of the headline, unless all were.
    let rounds: Vec<(&Window, &Window)> =
        targets[0].windows.iter().zip(&targets[1].windows).collect();
    let clean: Vec<(&Window, &Window)> = rounds
        .iter()
        .copied()
        .filter(|(b, p)| b.cpu.warning(true).is_none() && p.cpu.warning(true).is_none())
        .collect();
    let used = if clean.is_empty() {
        println!("WARNING: every round was disturbed; the figures below use them all");
        rounds.clone()
    } else {
        clean
    };
    let pick = |side: usize| -> Vec<&Window> {
        used.iter()
            .map(|pair| if side == 0 { pair.0 } else { pair.1 })
            .collect()
    };
    let (baseline, baseline_cpu) = totals(&pick(0));
    let (porchlight, porchlight_cpu) = totals(&pick(1));
    let ratios: Vec<f64> = used.iter().map(|(b, p)| p.rate() / b.rate()).collect();
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    println!(
        "rounds used: {} of {}; porchlight/baseline per round {min:.2} to {max:.2}",
        used.len(),
        rounds.len()
    );
    for (name, rate, cpu) in [
        ("baseline", baseline, baseline_cpu),
        ("porchlight", porchlight, porchlight_cpu),
    ] {
        println!(
            "{name:>10}: {rate:>7.0} req/s; {cpu:.2} µs of server CPU per request; mean latency \
             {:.2} ms",
            1e3 * config.connections as f64 / rate,
        );
    }
    for target in &targets[2..] {
        let windows: Vec<&Window> = target.windows.iter().collect();
        let (rate, cpu) = totals(&windows);
        println!(
            "{:>10}: {rate:>7.0} req/s; {cpu:.2} µs of server CPU per request (diagnostic, all \
             its windows)",
            target.name
        );
    }
    println!(
        "CPU per request, baseline / porchlight: {:.2} (the ratio of throughputs at 100% of a \
         core)",
        baseline_cpu / porchlight_cpu
    );
    println!();
    println!(
        "ingest_ratio {:.2} (porchlight {porchlight:.0}/s, baseline {baseline:.0}/s)",
        porchlight / baseline,
    );
    Ok(())
}

impl Target {
    /// Runs the closed loop until `done(elapsed, answered)` says so (or `limit` passes, an
    /// error).
    async fn drive(
        &mut self,
        busy_poll: bool,
        limit: Duration,
        done: impl Fn(Duration, u64) -> bool,
    ) -> anyhow::Result<()> {
        let running = self.start_loop(busy_poll);
        let started = Instant::now();
        let result = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if done(started.elapsed(), self.counters.answered()) {
                break Ok(());
            }
            if started.elapsed() > limit {
                break Err(anyhow::anyhow!(
                    "only {} responses in {}s",
                    self.counters.answered(),
                    limit.as_secs()
                ));
            }
        };
        self.stop_loop(running).await?;
        result
    }

    /// Runs the closed loop for [`SETTLE`] plus `length`, measuring the last `length`.
    async fn window(&mut self, busy_poll: bool, length: Duration) -> anyhow::Result<Window> {
        let running = self.start_loop(busy_poll);
        tokio::time::sleep(SETTLE).await;
        let cpu = CpuWindow::start(self.server.pid)?;
        let before = self.counters.ok.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(length).await;
        let requests = self.counters.ok.load(Ordering::Relaxed) - before;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu.finish()?;
        self.stop_loop(running).await?;
        Ok(Window {
            requests,
            seconds,
            cpu,
        })
    }

    fn start_loop(&mut self, busy_poll: bool) -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let spinner = busy_poll.then(|| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                }
            })
        });
        for stream in self.streams.drain(..) {
            tasks.spawn(connection(
                stream,
                Arc::clone(&self.requests),
                Arc::clone(&self.counters),
                Arc::clone(&stop),
            ));
        }
        Loop {
            stop,
            tasks,
            spinner,
        }
    }

    async fn stop_loop(&mut self, running: Loop) -> anyhow::Result<()> {
        let Loop {
            stop,
            mut tasks,
            spinner,
        } = running;
        stop.store(true, Ordering::Relaxed);
        if let Some(spinner) = spinner {
            spinner.await?;
        }
        let joined = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ended) = tasks.join_next().await {
                self.streams.push(ended??);
            }
            anyhow::Ok(())
        })
        .await;
        match joined {
            Ok(result) => result.with_context(|| format!("a {} connection", self.name))?,
            Err(_) => bail!("{} connections did not stop within 10s", self.name),
        }
        let failed = self.counters.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self.counters.first_failure.lock().expect("lock").clone();
            bail!(
                "{failed} requests to {} failed; the first answer was:\n{}",
                self.name,
                first.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// The connection tasks of a running closed loop.
struct Loop {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<anyhow::Result<TcpStream>>,
    /// Keeps this thread from sleeping (see `BENCH_BUSY_POLL`).
    spinner: Option<tokio::task::JoinHandle<()>>,
}

/// One keep-alive connection of the closed loop: send the next request, read its response;
/// gives the connection back when stopped.
async fn connection(
    mut stream: TcpStream,
    requests: Arc<Requests>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<TcpStream> {
    let mut responses = ResponseReader::default();
    while !stop.load(Ordering::Relaxed) {
        let n = counters.next.fetch_add(1, Ordering::Relaxed);
        stream.write_all(requests.nth(n)).await?;
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
    Ok(stream)
}
