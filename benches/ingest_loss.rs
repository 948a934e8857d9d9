//! What 1 000 trigger rules cost ingestion: throughput of Porchlight's real `POST /v1/beacon`
//! with 1 000 realistic rules on the site against the same server with none, in the same run.
//!
//! The setup is the `ingest` benchmark's (`support::closed_loop`, `support::traffic`): each
//! server in a child process pinned to core 0 with one Tokio worker thread, this process on
//! core 1 as a closed-loop load generator over `BENCH_CONNECTIONS` (64) keep-alive connections,
//! 50 000 visitors (`BENCH_VISITORS`) with real User-Agents, GeoIP fixture addresses, UTM
//! landing pages and referrers, 30 % page views, ~2 % new visits; both servers get the same
//! requests in the same order, warmed up (`BENCH_WARMUP_SECONDS`, 2 s, and the priming pass
//! that makes every visitor live) and measured for `BENCH_SECONDS` (25 s) each in
//! `BENCH_ROUNDS` (10) alternating windows; rounds disturbed by other load or hypervisor steal
//! are left out of the headline (unless all were). The server not being measured is paused
//! (`SIGSTOP`): the servers share core 0, and the one with rules has background work (wake-ups
//! coming due, messages, records written behind) that would otherwise run in the other's
//! windows, slowing it and hiding its own cost; paused, what piles up runs in its own windows.
//!
//! The rules (`support::rules`) are what a shop accumulates: mostly one product page or one
//! campaign each with a time condition, many about pages or campaigns this traffic never
//! touches, a few no index can skip. What having them costs runs on the server's core and
//! counts: evaluating page views, scheduling and cancelling wake-ups, evaluating the wake-ups
//! that come due, firing when a visitor stays long enough, and writing fire records and
//! counters behind. Sending the messages is not part of it: the rules' messages wait an hour
//! after the fire (beyond the run), as in `trigger_eval`. How many messages a site sends depends
//! on its visitors, not on how many rules it has, and this closed loop compresses visitor time
//! (a visitor's beacons come ~10 times faster than a real visitor's, and the paused server's
//! visitors idle half the time), so sending them here would measure the bench, not the rules.
//! `BENCH_LOSS_SEND=1` sends them at once (a conversation stored per message) to see that cost
//! too. The run prints how many fired and were sent.
//!
//! Headline: `ingest_loss_1k_rules P% (with 1 000 rules N/s, without M/s)`, P = 100 × (1 −
//! N / M). Goal: P ≤ 10.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

use anyhow::bail;

use support::closed_loop::{self, Config, Idle, Target, Window, totals};
use support::procs::{CLIENT_CPU, SERVER_CPU};
use support::traffic::Traffic;

const RULES: usize = 1_000;
/// The same traffic shape as `ingest`: beacons per visitor in the steady cycle, the share of
/// page views, and the share of beacons that start a new visit.
const ROUNDS: usize = 4;
const PAGE_VIEW_SHARE: f64 = 0.3;
const NEW_VISIT_SHARE: f64 = 0.01;

/// The same allocator as the `porchlight` binary.
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
            eprintln!("ingest_loss: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Twice `ingest`'s windows: a loss of a few per cent needs more pairs than a ratio of two
    // very different servers.
    let config = Config::from_env_with(25, 10)?;
    let mut traffic = Traffic::new(config.visitors, 0x1b6e57);
    let pool = traffic.pool(ROUNDS, PAGE_VIEW_SHARE, NEW_VISIT_SHARE);
    println!(
        "ingest_loss: two Porchlight servers on core {SERVER_CPU} (1 worker thread each), one \
         with {RULES} trigger rules on the site, one with none; load generator on core \
         {CLIENT_CPU}: {} keep-alive connections per server, closed loop; warm-up {}s; {}s \
         measured per server in {} alternating windows",
        config.connections,
        config.warmup.as_secs(),
        config.measure.as_secs(),
        config.rounds,
    );
    println!(
        "ingest_loss: {} visitors; {}",
        config.visitors,
        pool.describe()
    );
    let send = support::env_number("BENCH_LOSS_SEND", 0)? != 0;
    let rules = RULES.to_string();
    let delay = if send { "0" } else { "3600" };
    if send {
        println!("ingest_loss: BENCH_LOSS_SEND=1: the rules' messages are sent when they fire");
    }
    let mut targets = vec![
        Target::start("no rules", "porchlight-server", &[], &pool, &traffic)?,
        Target::start(
            "1k rules",
            "porchlight-server",
            &["--rules", &rules, "--rules-delay", delay],
            &pool,
            &traffic,
        )?,
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
    closed_loop::warm_up(targets, config, Idle::Pause).await?;
    closed_loop::measure_rounds(targets, config, Idle::Pause).await?;

    println!();
    for target in targets.iter() {
        let metrics = testkit::http_client()
            .get(format!("http://{}/metrics", target.server.addr))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let metric = |name: &str, labels: &[&str]| support::metric(&metrics, name, labels);
        let total = metric("porchlight_beacons_total", &[]);
        let recorded = metric("porchlight_beacons_total", &["outcome=\"recorded\""]);
        let crawler = metric("porchlight_beacons_total", &["outcome=\"crawler\""]);
        let seconds = metric("porchlight_ingest_seconds_sum", &[]);
        let count = metric("porchlight_ingest_seconds_count", &[]);
        println!(
            "{:>8} /metrics: {total:.0} beacons, {recorded:.0} recorded; mean time in \
             engage::Ingest::record {:.2} µs; triggers fired {:.0}, messages sent {:.0}, \
             wake-ups pending {:.0}",
            target.name,
            if count > 0.0 {
                seconds / count * 1e6
            } else {
                0.0
            },
            metric("porchlight_trigger_events_total", &["event=\"fired\""]),
            metric("porchlight_trigger_events_total", &["event=\"delivered\""]),
            metric("porchlight_trigger_wakeups_pending", &[]),
        );
        if recorded + crawler < total * 0.99 {
            bail!(
                "more than 1% of the {} server's beacons were not recorded",
                target.name
            );
        }
    }

    let (used, all_disturbed) = closed_loop::clean_rounds(&targets[0], &targets[1]);
    if all_disturbed {
        println!("WARNING: every round was disturbed; the figures below use them all");
    }
    let side = |index: usize| -> Vec<&Window> {
        used.iter()
            .map(|pair| if index == 0 { pair.0 } else { pair.1 })
            .collect()
    };
    let (without, without_cpu) = totals(&side(0));
    let (with, with_cpu) = totals(&side(1));
    let losses: Vec<f64> = used
        .iter()
        .map(|(none, rules)| 100.0 * (1.0 - rules.rate() / none.rate()))
        .collect();
    let min = losses.iter().copied().fold(f64::INFINITY, f64::min);
    let max = losses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "rounds used: {} of {}; loss per round {min:.1}% to {max:.1}%",
        used.len(),
        targets[0].windows.len()
    );
    for (name, rate, cpu) in [
        ("no rules", without, without_cpu),
        ("1k rules", with, with_cpu),
    ] {
        println!("{name:>8}: {rate:>7.0} req/s; {cpu:.2} µs of server CPU per request");
    }
    println!();
    println!(
        "ingest_loss_1k_rules {:.1}% (with 1 000 rules {with:.0}/s, without {without:.0}/s)",
        100.0 * (1.0 - with / without),
    );
    Ok(())
}
