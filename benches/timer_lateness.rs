//! Time-based triggers: how late a due wake-up fires, with a million wake-ups pending.
//!
//! One site, 60 triggers "utm_content equals cN and time on page ≥ 30 + N seconds" (N = 0..59),
//! and `BENCH_TIMER_VISITORS` (1 000 000) visitors, each landing on a page with one of the 60
//! campaigns. Every landing is evaluated by the engine ([`engage::Triggers::on_beacon`]), which
//! finds its trigger true "from page opened + 30 + N s" and schedules the visitor's one wake-up.
//! Landing them all takes less than the first deadline, so all of them are pending when the first
//! comes due; they then come due over about a minute (some 17 000 a second). The engine's own
//! background task (as in the server) wakes for them on the real clock, re-evaluates each visitor
//! and fires.
//!
//! Lateness = the fire's wall-clock time − the wake-up's due time, from the engine's `Fired`
//! events (which carry both). Fires are recorded and counted like any other (write-behind to the
//! store, once a second); deliveries are delayed an hour (and 90 % of the visitors are the
//! control group), so the measurement is of the timer path, not of message writes.
//!
//! Headline: `timer_lateness_p99_ms L (N pending)`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engage::triggers::Trigger;
use engage::{
    Conversations, RedbStore, Store, SystemClock, TriggerContext, TriggerEvent, Triggers,
};
use geoip::{Enricher, GeoDb, fixture};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tracker::{Beacon, BeaconKind, KnownProfile, Presence, PresenceConfig};

/// The server's allocator, so allocation costs are the ones production sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SITE: &str = "timers";
const CAMPAIGNS: usize = 60;
/// Seconds on the page before the first campaign's trigger holds.
const FIRST_DEADLINE_SECS: usize = 30;

#[derive(Debug)]
struct NobodyOnline;

impl TriggerContext for NobodyOnline {
    fn agents_online(&self, _site: &str) -> bool {
        false
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let visitors = env_usize("BENCH_TIMER_VISITORS", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(visitors));
}

async fn run(visitors: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).await.expect("store"));
    let presence = Arc::new(Presence::new(
        PresenceConfig {
            // Nobody is swept away during the run.
            retention_ms: 3_600_000,
            ..PresenceConfig::default()
        },
        Arc::new(Enricher::with_geo(
            GeoDb::from_bytes(fixture::city_database()).expect("fixture database"),
        )),
        Arc::new(tracker::SystemClock),
    ));
    let conversations = Arc::new(
        Conversations::start(Arc::clone(&store), Arc::new(SystemClock), dir.path())
            .await
            .expect("conversations"),
    );
    let triggers = Triggers::start(
        Arc::clone(&presence),
        Arc::clone(&store),
        conversations,
        Arc::new(SystemClock),
        Arc::new(NobodyOnline),
    )
    .await
    .expect("triggers");
    let rules: Vec<Trigger> = (0..CAMPAIGNS)
        .map(|campaign| {
            Trigger::from_json(&json!({
                "name": format!("campaign {campaign}"),
                "conditions": {"all": [
                    {"field": "utm_content", "op": "equals", "value": format!("c{campaign}")},
                    {"field": "time_on_page", "op": "gte", "value": FIRST_DEADLINE_SECS + campaign}
                ]},
                "delay_secs": 3600,
                "variants": [{"key": "a", "author": {"bot": "Shop"}, "text": "Still deciding?"}],
                "control_percent": 90,
                "limit": {"mode": "once_per_visitor"}
            }))
            .expect("valid")
        })
        .collect();
    triggers
        .create_many(SITE, rules)
        .await
        .expect("rules are stored");
    triggers.spawn_tasks();

    // Every fire's lateness, collected as the events arrive.
    let mut events = triggers.subscribe();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let mut histogram = Histogram::<u64>::new(3).expect("histogram");
        let (mut fired, mut lagged) = (0u64, 0u64);
        // Worst lateness per second of due time, to tell a steady lag from stalls.
        let mut worst: std::collections::BTreeMap<i64, (u64, u64)> = Default::default();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = &mut stopped => {
                    let first = worst.keys().next().copied().unwrap_or(0);
                    let seconds: Vec<String> = worst
                        .iter()
                        .map(|(second, (late, count))| format!("+{}s:{late}ms/{count}", second - first))
                        .collect();
                    eprintln!("worst lateness per due second: {}", seconds.join(" "));
                    return (histogram, fired, lagged);
                }
            };
            match event {
                Ok(TriggerEvent::Fired {
                    at_ms,
                    due_ms: Some(due_ms),
                    ..
                }) => {
                    let late = (at_ms - due_ms).max(0) as u64;
                    histogram.record(late).expect("in range");
                    let second = worst.entry(due_ms / 1000).or_default();
                    second.0 = second.0.max(late);
                    second.1 += 1;
                    fired += 1;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => lagged += missed,
                Err(RecvError::Closed) => return (histogram, fired, lagged),
            }
        }
    });

    let landing_started = Instant::now();
    let ids: Vec<String> = (0..visitors).map(|i| format!("v{i:07}")).collect();
    let urls: Vec<String> = (0..CAMPAIGNS)
        .map(|campaign| {
            format!("https://shop.example/pricing?utm_source=ads&utm_content=c{campaign}")
        })
        .collect();
    for (index, id) in ids.iter().enumerate() {
        let beacon = Beacon {
            site: SITE,
            visitor_id: id,
            visit_id: id,
            kind: BeaconKind::PageView,
            url: &urls[index % CAMPAIGNS],
            title: "Pricing",
            referrer: None,
            ip: fixture::sample_ip(index % 512),
            user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            language: Some("en-GB"),
            screen: Some((1280, 800)),
        };
        presence.start_visit(&beacon, &KnownProfile::new(index as u32 + 1, 0));
        triggers.on_beacon(&beacon, true).await;
        if index % 4096 == 0 {
            // Let the engine's tasks run between batches, as ingestion would.
            tokio::task::yield_now().await;
        }
    }
    let landed = landing_started.elapsed();
    let pending = triggers.pending_timers();
    eprintln!(
        "{visitors} visitors landed in {:.1} s; {pending} wake-ups pending",
        landed.as_secs_f64()
    );
    if landed >= Duration::from_secs(FIRST_DEADLINE_SECS as u64) {
        eprintln!("warning: landing took longer than the first deadline; fewer were pending");
    }

    // Wait until every wake-up has fired (the last is due 89 s after its landing).
    let deadline = Instant::now() + Duration::from_secs(FIRST_DEADLINE_SECS as u64 + 120);
    while triggers.pending_timers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = triggers.pending_timers();
    triggers.shutdown().await.expect("records written");
    let _ = stop.send(());
    let (histogram, fired, lagged) = collector.await.expect("collector");
    eprintln!(
        "fired {fired} (events missed by the observer: {lagged}, wake-ups left: {left}); lateness p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max()
    );
    println!(
        "timer_lateness_p99_ms {} ({pending} pending)",
        histogram.value_at_quantile(0.99)
    );
}
