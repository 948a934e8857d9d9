//! The closed-loop load generator of the throughput benchmarks (`ingest`, `ingest_loss`): a
//! fixed set of keep-alive connections per server, each sending one pre-serialised request and
//! reading its response before sending the next, measured in windows that alternate between
//! the servers so that a noisy neighbour on this shared machine hits them alike.
//!
//! The load generator busy-polls (`BENCH_BUSY_POLL=0` turns that off) so that the server's core
//! never pays for waking it up: on the loopback, the sender of a response does the receiver's
//! TCP work, and in a VM waking a sleeping thread on another core costs the waker an
//! inter-processor interrupt, which a remote client would not cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::http1::ResponseReader;
use super::procs::{CLIENT_CPU, CpuUse, CpuWindow, SERVER_CPU, ServerProcess};
use super::traffic::{Pool, Requests, Traffic};

/// Unmeasured time at the start of each window, while the loop switches servers.
pub const SETTLE: Duration = Duration::from_millis(300);

/// How long and how hard to load each server.
pub struct Config {
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: u32,
    pub connections: usize,
    pub visitors: usize,
    pub busy_poll: bool,
}

impl Config {
    /// `BENCH_WARMUP_SECONDS` (2), `BENCH_SECONDS` (10), `BENCH_ROUNDS` (4),
    /// `BENCH_CONNECTIONS` (64), `BENCH_VISITORS` (50 000), `BENCH_BUSY_POLL` (1).
    pub fn from_env() -> anyhow::Result<Config> {
        Config::from_env_with(10, 4)
    }

    /// [`Config::from_env`] with other defaults for `BENCH_SECONDS` and `BENCH_ROUNDS`.
    pub fn from_env_with(seconds: u64, rounds: u64) -> anyhow::Result<Config> {
        Ok(Config {
            warmup: super::env_seconds("BENCH_WARMUP_SECONDS", 2)?,
            measure: super::env_seconds("BENCH_SECONDS", seconds)?.max(Duration::from_secs(1)),
            rounds: super::env_number("BENCH_ROUNDS", rounds)?.clamp(1, 100) as u32,
            connections: super::env_number("BENCH_CONNECTIONS", 64)?.max(1) as usize,
            visitors: super::env_number("BENCH_VISITORS", 50_000)?.max(1) as usize,
            busy_poll: super::env_number("BENCH_BUSY_POLL", 1)? != 0,
        })
    }
}

/// One server under test and its side of the load generator.
pub struct Target {
    pub name: String,
    pub server: ServerProcess,
    pub requests: Arc<Requests>,
    counters: Arc<Counters>,
    /// The keep-alive connections, while no loop runs on them.
    streams: Vec<TcpStream>,
    pub windows: Vec<Window>,
}

/// One measured window.
pub struct Window {
    pub requests: u64,
    pub seconds: f64,
    pub cpu: CpuUse,
}

impl Window {
    pub fn rate(&self) -> f64 {
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
pub fn totals(windows: &[&Window]) -> (f64, f64) {
    let requests: u64 = windows.iter().map(|w| w.requests).sum();
    let seconds: f64 = windows.iter().map(|w| w.seconds).sum();
    let cpu: f64 = windows.iter().map(|w| w.cpu.server * w.seconds).sum();
    (
        requests as f64 / seconds,
        cpu / requests.max(1) as f64 * 1e6,
    )
}

/// The rounds of two targets, pairwise, left out where either window was disturbed (the
/// server short of its core, or the core busy with something else), unless all were; the flag
/// says whether that happened.
pub fn clean_rounds<'a>(
    first: &'a Target,
    second: &'a Target,
) -> (Vec<(&'a Window, &'a Window)>, bool) {
    let rounds: Vec<(&Window, &Window)> = first.windows.iter().zip(&second.windows).collect();
    let clean: Vec<(&Window, &Window)> = rounds
        .iter()
        .copied()
        .filter(|(a, b)| a.cpu.warning(true).is_none() && b.cpu.warning(true).is_none())
        .collect();
    if clean.is_empty() {
        (rounds, true)
    } else {
        (clean, false)
    }
}

impl Target {
    /// Starts server `role` (with `args`) and pre-serialises the requests for it.
    pub fn start(
        name: &str,
        role: &str,
        args: &[&str],
        pool: &Pool,
        traffic: &Traffic,
    ) -> anyhow::Result<Target> {
        let server = ServerProcess::start(role, args)?;
        let requests = Arc::new(Requests::new(pool, traffic, server.addr));
        Ok(Target {
            name: name.to_owned(),
            server,
            requests,
            counters: Arc::default(),
            streams: Vec::new(),
            windows: Vec::new(),
        })
    }

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

/// Whether a server is paused (`SIGSTOP`) while it is not the one loaded. The servers share a
/// core: a server with background work (trigger wake-ups, deliveries, records written behind)
/// would otherwise do it during the other's windows, slowing the other and hiding its own cost.
/// Paused, whatever piled up while it waited runs in its own windows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    Run,
    Pause,
}

/// Opens every target's connections and warms each up in turn: at least `config.warmup` and
/// at least the priming pass (every visitor's landing page view), so that all visitors are
/// live before anything is measured.
pub async fn warm_up(targets: &mut [Target], config: &Config, idle: Idle) -> anyhow::Result<()> {
    if idle == Idle::Pause {
        for target in targets.iter() {
            target.server.pause()?;
        }
    }
    for target in targets.iter_mut() {
        target.server.resume()?;
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
        if idle == Idle::Pause {
            target.server.pause()?;
        }
        println!(
            "{}: warmed up in {:.1}s",
            target.name,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Measures `config.rounds` windows per target, alternating: in even rounds the targets in
/// order, in odd rounds in reverse (A, B, B, A, …). Prints a line per window. Every server runs
/// when it returns.
pub async fn measure_rounds(
    targets: &mut [Target],
    config: &Config,
    idle: Idle,
) -> anyhow::Result<()> {
    let window = config.measure / config.rounds;
    for round in 0..config.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for index in order {
            let target = &mut targets[index];
            target.server.resume()?;
            let measured = target.window(config.busy_poll, window).await?;
            if idle == Idle::Pause {
                target.server.pause()?;
            }
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
    for target in targets.iter() {
        target.server.resume()?;
    }
    Ok(())
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
