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
//! this shared machine hits both alike (the loop is `support::closed_loop`, shared with
//! `ingest_loss`). The server's CPU time over each window (from
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

use anyhow::bail;

use support::closed_loop::{self, Config, Idle, Target, Window, totals};
use support::procs::{CLIENT_CPU, SERVER_CPU};
use support::traffic::{self, Traffic};

/// Beacons per visitor in the steady cycle, the share of page views among them, and the share
/// of beacons that start a new visit (landing page views).
const ROUNDS: usize = 4;
const PAGE_VIEW_SHARE: f64 = 0.3;
const NEW_VISIT_SHARE: f64 = 0.01;
/// Servers that can be measured as well, to see where Porchlight's time goes (see
/// `support::servers`): `BENCH_INGEST_TARGETS=baseline-json,porchlight-beacon-only`.
const DIAGNOSTIC_TARGETS: [&str; 2] = ["baseline-json", "porchlight-beacon-only"];

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
    let config = Config::from_env()?;
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
        targets.push(Target::start(&name, &role, &[], &pool, &traffic)?);
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

async fn bench(targets: &mut [Target], config: &Config) -> anyhow::Result<()> {
    // The baseline has no background work: neither server needs pausing.
    closed_loop::warm_up(targets, config, Idle::Run).await?;
    closed_loop::measure_rounds(targets, config, Idle::Run).await?;

    let metrics = testkit::http_client()
        .get(format!("http://{}/metrics", targets[1].server.addr))
        .send()
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
    let (used, all_disturbed) = closed_loop::clean_rounds(&targets[0], &targets[1]);
    if all_disturbed {
        println!("WARNING: every round was disturbed; the figures below use them all");
    }
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
        targets[0].windows.len()
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
