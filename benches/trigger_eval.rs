//! Trigger evaluation cost per beacon, for sites with 10, 100, 1 000 and 10 000 triggers.
//!
//! Each K gets its own site with 20 000 live visitors, and a realistic rule mix: most triggers
//! are about one page or one campaign (70 % "URL contains /product/N" or "URL starts with …",
//! 20 % "utm_campaign equals camp-N", both with a time-on-page or a country condition besides),
//! and a few broad ones nobody can index (an `any` of a referrer and a pages-in-visit test, a
//! customer test on every page). Visitors browse 4 000 product pages and 200 campaigns, so a
//! page view is a candidate for a handful of triggers at most and fires rarely, as on a real
//! site; a fired trigger's delivery is delayed an hour so no disk write disturbs the timing.
//!
//! Timed: [`engage::Triggers::on_beacon`] for one page view (the beacon is applied to the
//! presence table first, untimed), over `BENCH_EVAL_BEACONS` (200 000) page views after a
//! warm-up, into an HDR histogram. Headline per K: `trigger_eval_p99_ns T (K rules)`.
//!
//! Also, for context: `ingest_record_loss_1k_rules P%` compares in-process `Ingest::record`
//! throughput on a site with 1 000 of these triggers and one with none, same beacons, same run
//! (alternating rounds). The HTTP-level figure is the `ingest` benchmark's business.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engage::triggers::Trigger;
use engage::{Conversations, Ingest, RedbStore, Store, SystemClock, TriggerContext, Triggers};
use geoip::{Enricher, GeoDb, fixture};
use hdrhistogram::Histogram;
use serde_json::json;
use tracker::{Beacon, BeaconKind, KnownProfile, Presence, PresenceConfig};

/// The server's allocator, so allocation costs are the ones production sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULE_COUNTS: [usize; 4] = [10, 100, 1_000, 10_000];
const VISITORS: usize = 20_000;
const PRODUCTS: usize = 4_000;
const CAMPAIGNS: usize = 200;
const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
];

#[derive(Debug)]
struct NobodyOnline;

impl TriggerContext for NobodyOnline {
    fn agents_online(&self, _site: &str) -> bool {
        false
    }
}

/// A small deterministic generator (xorshift).
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The rule mix of a site with `count` triggers.
fn rules(count: usize, random: &mut Random) -> Vec<Trigger> {
    let broad = count.clamp(1, 5) / 2 + 1;
    (0..count)
        .map(|index| {
            let conditions = if index < broad {
                match index % 3 {
                    0 => json!({"any": [
                        {"field": "referrer", "op": "contains", "value": "partner.example"},
                        {"field": "pages_in_visit", "op": "gte", "value": 25}
                    ]}),
                    1 => json!({"all": [
                        {"field": "customer", "op": "is", "value": true},
                        {"field": "time_on_site", "op": "gte", "value": 900}
                    ]}),
                    _ => json!({"all": [
                        {"field": "url", "op": "regex", "value": "/checkout/(step-3|confirm)$"},
                        {"field": "event", "op": "not_seen", "name": "purchase"}
                    ]}),
                }
            } else if index % 10 < 7 {
                let product = random.below(PRODUCTS);
                let url = if index % 2 == 0 {
                    json!({"field": "url", "op": "contains", "value": format!("/product/{product}?")})
                } else {
                    json!({"field": "url", "op": "starts_with", "value": format!("https://shop.example/product/{product}?")})
                };
                json!({"all": [url, {"field": "time_on_page", "op": "gte", "value": 20 + index % 40}]})
            } else if index % 10 < 9 {
                json!({"all": [
                    {"field": "utm_campaign", "op": "equals", "value": format!("camp-{}", random.below(CAMPAIGNS))},
                    {"field": "country", "op": "in", "value": ["SE", "GB", "US"]}
                ]})
            } else {
                json!({"all": [
                    {"field": "url", "op": "contains", "value": format!("/category/{}/", random.below(400))},
                    {"field": "device", "op": "equals", "value": "mobile"},
                    {"field": "visits", "op": "gte", "value": 2}
                ]})
            };
            let body = json!({
                "name": format!("rule {index}"),
                "priority": (index % 7) as i32,
                "conditions": conditions,
                "delay_secs": 3600,
                "variants": [{"key": "a", "author": {"bot": "Shop"}, "text": "Hi {name|there}!"}],
                "control_percent": 10,
                "limit": {"mode": "once_per_visitor"}
            });
            Trigger::from_json(&body).expect("bench rules are valid")
        })
        .collect()
}

/// A page view's URL: a product page (most), a category page, a campaign landing page.
fn page_url(random: &mut Random) -> String {
    match random.below(10) {
        0..=5 => format!(
            "https://shop.example/product/{}?ref=list&pos={}",
            random.below(PRODUCTS),
            random.below(20)
        ),
        6 | 7 => format!("https://shop.example/category/{}/", random.below(400)),
        _ => format!(
            "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=camp-{}",
            random.below(CAMPAIGNS)
        ),
    }
}

struct Setup {
    presence: Arc<Presence>,
    triggers: Arc<Triggers>,
    ingest: Ingest,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).await.expect("store"));
    let enricher = Arc::new(Enricher::with_geo(
        GeoDb::from_bytes(fixture::city_database()).expect("fixture database"),
    ));
    let presence = Arc::new(Presence::new(
        PresenceConfig::default(),
        enricher,
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
        Arc::clone(&conversations),
        Arc::new(SystemClock),
        Arc::new(NobodyOnline),
    )
    .await
    .expect("triggers");
    let ingest = Ingest::start(Arc::clone(&presence), store, conversations)
        .await
        .expect("ingest")
        .with_triggers(Arc::clone(&triggers));
    Setup {
        presence,
        triggers,
        ingest,
        _dir: dir,
    }
}

fn beacon<'a>(site: &'a str, visitor: &'a str, url: &'a str, index: usize) -> Beacon<'a> {
    Beacon {
        site,
        visitor_id: visitor,
        visit_id: visitor,
        kind: BeaconKind::PageView,
        url,
        title: "Shop",
        referrer: None,
        ip: ip(index),
        user_agent: USER_AGENTS[index % USER_AGENTS.len()],
        language: Some("en-GB"),
        screen: Some((1280, 800)),
    }
}

fn ip(index: usize) -> IpAddr {
    fixture::sample_ip(index % 512)
}

async fn measure_eval(setup: &Setup, rule_count: usize, beacons: usize) -> Histogram<u64> {
    let site = format!("eval-{rule_count}");
    let mut random = Random(0x2545_F491_4F6C_DD1D ^ rule_count as u64);
    setup
        .triggers
        .create_many(&site, rules(rule_count, &mut random))
        .await
        .expect("rules are stored");
    let visitors: Vec<String> = (0..VISITORS).map(|i| format!("visitor-{i:06}")).collect();
    for (index, visitor) in visitors.iter().enumerate() {
        let url = page_url(&mut random);
        setup.presence.start_visit(
            &beacon(&site, visitor, &url, index),
            &KnownProfile::new(index as u32 + 1, 0),
        );
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let warm_up = beacons / 10;
    for round in 0..warm_up + beacons {
        let index = random.below(VISITORS);
        let url = page_url(&mut random);
        let beacon = beacon(&site, &visitors[index], &url, index);
        setup.presence.observe(&beacon);
        let started = Instant::now();
        setup.triggers.on_beacon(&beacon, false).await;
        let elapsed = started.elapsed().as_nanos() as u64;
        if round >= warm_up {
            histogram.record(elapsed.max(1)).expect("in range");
        }
    }
    histogram
}

/// Page views per second through `Ingest::record` for `site`, over `duration`.
async fn ingest_rate(setup: &Setup, site: &str, duration: Duration, random: &mut Random) -> f64 {
    let visitors: Vec<String> = (0..VISITORS).map(|i| format!("ingest-{i:06}")).collect();
    let urls: Vec<String> = (0..4096).map(|_| page_url(random)).collect();
    let started = Instant::now();
    let mut count = 0usize;
    while started.elapsed() < duration {
        for _ in 0..256 {
            let index = random.below(VISITORS);
            let url = &urls[count % urls.len()];
            setup
                .ingest
                .record(&beacon(site, &visitors[index], url, index))
                .await
                .expect("recorded");
            count += 1;
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let beacons = env_usize("BENCH_EVAL_BEACONS", 200_000);
    let round_seconds = env_usize("BENCH_SECONDS", 10) as u64;
    runtime.block_on(async {
        let setup = setup().await;
        let mut headlines = Vec::new();
        for rule_count in RULE_COUNTS {
            let histogram = measure_eval(&setup, rule_count, beacons).await;
            eprintln!(
                "trigger_eval {rule_count} rules: p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns over {} page views",
                histogram.value_at_quantile(0.5),
                histogram.value_at_quantile(0.9),
                histogram.value_at_quantile(0.99),
                histogram.value_at_quantile(0.999),
                histogram.max(),
                histogram.len()
            );
            headlines.push(format!(
                "trigger_eval_p99_ns {} ({rule_count} rules)",
                histogram.value_at_quantile(0.99)
            ));
        }

        // Ingest with and without 1 000 rules, alternating rounds.
        let mut random = Random(0x9E37_79B9_7F4A_7C15);
        setup
            .triggers
            .create_many("ingest-rules", rules(1_000, &mut random))
            .await
            .expect("rules are stored");
        let round = Duration::from_secs(round_seconds.max(2) / 2);
        let (mut without, mut with) = (0.0, 0.0);
        for _ in 0..2 {
            without += ingest_rate(&setup, "ingest-plain", round, &mut random).await;
            with += ingest_rate(&setup, "ingest-rules", round, &mut random).await;
        }
        let (without, with) = (without / 2.0, with / 2.0);
        let loss = (1.0 - with / without) * 100.0;
        eprintln!("ingest (in process): {without:.0}/s without triggers, {with:.0}/s with 1 000");
        eprintln!(
            "pending wake-ups at the end: {}",
            setup.triggers.pending_timers()
        );
        for line in headlines {
            println!("{line}");
        }
        println!(
            "ingest_record_loss_1k_rules {loss:.1}% (Ingest::record in process: {with:.0}/s with 1 000 rules, {without:.0}/s with none)"
        );
        setup.ingest.shutdown().await.expect("profiles written");
    });
}
