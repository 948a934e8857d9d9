//! Enrichment cost per beacon: User-Agent → browser/OS/device plus IP → location.
//!
//! The realistic hot path is cached: a site sees a few thousand distinct User-Agents and its
//! visitors come from networks whose records were decoded before. The beacons here spread twenty
//! real User-Agent strings over a thousand addresses in the fixture database, and every beacon
//! does both lookups (the tracker looks the location up once per visit, so this overstates the
//! geo share on purpose). The uncached costs are measured too, for context.
//!
//! Criterion reports all three. The headline, `enrich_ns E` with E the median nanoseconds per
//! beacon on the cached path, comes from a plain timing loop (median of 50 timed batches) so it
//! is printed the same way whatever Criterion's options.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use geoip::{ClientInfo, Enricher, GeoDb, fixture};

/// Real User-Agent strings, the mix of a typical site: desktop and mobile browsers, tablets, a
/// headless browser, crawlers and a command-line tool.
const USER_AGENTS: [&str; 20] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
];

/// Distinct addresses the beacons come from (spread over every fixture network).
const ADDRESSES: usize = 1_024;

/// Timed batches for the headline, and beacons per batch.
const BATCHES: usize = 50;
const BATCH_BEACONS: usize = 8_192;

/// A beacon's inputs: its User-Agent and its client address.
struct Beacon {
    user_agent: &'static str,
    ip: IpAddr,
}

fn beacons() -> Vec<Beacon> {
    // 1024 and 20 share a factor of 4, so step the User-Agent by a coprime stride to pair every
    // User-Agent with addresses in many networks rather than the same few.
    (0..ADDRESSES)
        .map(|index| Beacon {
            user_agent: USER_AGENTS[(index * 7) % USER_AGENTS.len()],
            ip: fixture::sample_ip(index),
        })
        .collect()
}

fn city_db() -> GeoDb {
    GeoDb::from_bytes(fixture::city_database()).expect("the fixture database opens")
}

/// The cached hot path for one beacon.
#[inline]
fn enrich(enricher: &Enricher, beacon: &Beacon) {
    black_box(enricher.client(black_box(beacon.user_agent)));
    black_box(enricher.geo(black_box(beacon.ip)));
}

fn criterion_benches(criterion: &mut Criterion, enricher: &Enricher, beacons: &[Beacon]) {
    let mut group = criterion.benchmark_group("enrich");
    let mut next = 0_usize;
    group.bench_function("cached_ua_and_geo_per_beacon", |bench| {
        bench.iter(|| {
            next = (next + 1) % beacons.len();
            enrich(enricher, &beacons[next]);
        })
    });
    group.bench_function("cold_ua_parse", |bench| {
        bench.iter(|| {
            next = (next + 1) % USER_AGENTS.len();
            black_box(ClientInfo::parse(black_box(USER_AGENTS[next])))
        })
    });
    let db = city_db();
    group.bench_function("cold_geo_decode", |bench| {
        bench.iter(|| {
            next = (next + 1) % beacons.len();
            black_box(db.lookup_uncached(black_box(beacons[next].ip)))
        })
    });
    group.finish();
}

/// Median nanoseconds per beacon of the cached path over `BATCHES` timed batches.
fn headline(enricher: &Enricher, beacons: &[Beacon]) -> u128 {
    let mut per_beacon: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for beacon in beacons.iter().cycle().take(BATCH_BEACONS) {
                enrich(enricher, beacon);
            }
            started.elapsed().as_nanos() as f64 / BATCH_BEACONS as f64
        })
        .collect();
    per_beacon.sort_by(f64::total_cmp);
    per_beacon[per_beacon.len() / 2].round() as u128
}

fn main() {
    let enricher = Enricher::with_geo(city_db());
    let beacons = beacons();
    // Fill both caches first: the hot path is the steady state after each User-Agent and
    // location has been seen once.
    for beacon in &beacons {
        enrich(&enricher, beacon);
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut criterion, &enricher, &beacons);
    criterion.final_summary();

    println!("enrich_ns {}", headline(&enricher, &beacons));
}
