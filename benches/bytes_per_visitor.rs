//! Memory per live visitor in the presence tracker.
//!
//! For each N, a fresh child process (this binary re-run with `--child N`, so memory freed by an
//! earlier run cannot flatter a later one) reads its resident set size, records N distinct
//! visitors on one site with realistic traffic, reads it again, and reports the difference per
//! visitor. The traffic: 10 page views per visitor over 200 distinct page URLs with titles (a
//! fifth of them landing pages with UTM parameters), 20 real User-Agent strings, addresses
//! spread over the geoip fixture networks with the fixture database loaded, ten languages, a
//! few screen sizes, referrers on half the visits, and an identity on one visitor in twenty.
//! Visits overlap as on a busy site: visitor v's k-th page view comes 5 000 page views after its
//! (k-1)-th, so some 50 000 visits are in progress at any moment. The change feed is drained
//! once a simulated second, as the live pusher would.
//!
//! Prints one headline line per N: `bytes_per_visitor B (N visitors)`; details go to stderr.

use std::net::IpAddr;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use geoip::{Enricher, GeoDb, fixture};
use tracker::{
    Beacon, BeaconKind, Identity, KnownProfile, ManualClock, Observation, Presence, PresenceConfig,
};

const SIZES: [usize; 2] = [100_000, 1_000_000];
const PAGES_PER_VISITOR: usize = 10;
/// Page views between two page views of one visitor.
const STRIDE: usize = 5_000;
const SITE: &str = "bench-site";

const USER_AGENTS: [&str; 20] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.118 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
];

const LANGUAGES: [&str; 10] = [
    "en-US", "en-GB", "de-DE", "fr-FR", "sv-SE", "es-ES", "pt-BR", "ja-JP", "pl-PL", "nl-NL",
];
const SCREENS: [(u16, u16); 6] = [
    (1920, 1080),
    (1536, 864),
    (1440, 900),
    (390, 844),
    (414, 896),
    (820, 1180),
];
const REFERRERS: [&str; 8] = [
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://www.facebook.com/",
    "https://t.co/",
    "https://www.linkedin.com/",
    "https://news.ycombinator.com/",
    "https://www.reddit.com/",
];

/// The site's pages: (url, title). The first 40 are landing pages with campaign tags.
fn site_pages() -> Vec<(String, String)> {
    let sources = ["google", "facebook", "newsletter", "linkedin", "bing"];
    let mediums = ["cpc", "social", "email", "display"];
    let sections = [
        "shoes", "jackets", "hats", "bags", "socks", "shirts", "trousers", "watches",
    ];
    let mut pages = Vec::with_capacity(200);
    for index in 0..40 {
        let section = sections[index % sections.len()];
        pages.push((
            format!(
                "https://shop.example.com/{section}?utm_source={}&utm_medium={}&utm_campaign=spring-sale-{}&utm_content=ad-{index}",
                sources[index % sources.len()],
                mediums[index % mediums.len()],
                index % 7,
            ),
            format!("{} – Spring sale | Example Shop", capitalized(section)),
        ));
    }
    for index in 0..160 {
        let section = sections[index % sections.len()];
        let (url, title) = match index % 4 {
            0 => (
                format!("https://shop.example.com/{section}"),
                format!("{} | Example Shop", capitalized(section)),
            ),
            1 => (
                format!("https://shop.example.com/{section}/item-{index}"),
                format!("Classic {section} no. {index} | Example Shop"),
            ),
            2 => (
                format!("https://shop.example.com/{section}?page={}", index / 8),
                format!(
                    "{} – page {} | Example Shop",
                    capitalized(section),
                    index / 8
                ),
            ),
            _ => (
                format!("https://shop.example.com/blog/how-to-choose-{section}-{index}"),
                format!("How to choose {section} ({index}) – Example Shop blog"),
            ),
        };
        pages.push((url, title));
    }
    pages
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A deterministic stream of pseudo-random numbers (SplitMix64) keyed by a visitor and a step.
fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// A 22-character base64url id from 16 pseudo-random bytes, as the widget makes them.
fn widget_id(seed: u64, buffer: &mut [u8; 22]) -> &str {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = (u128::from(mix(seed)) << 64) | u128::from(mix(seed ^ 0xA5A5_A5A5));
    for (index, slot) in buffer.iter_mut().enumerate() {
        *slot = ALPHABET[((bits >> (index * 6)) & 63) as usize];
    }
    std::str::from_utf8(buffer).expect("base64url is ASCII")
}

fn vm_rss_bytes() -> u64 {
    let status =
        std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS is reported");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .expect("VmRSS is a number of kB");
    kib * 1024
}

/// Records `visitors` visitors and returns resident bytes per visitor.
fn measure(visitors: usize) -> u64 {
    let db = GeoDb::from_bytes(fixture::city_database()).expect("the fixture database opens");
    let enricher = Arc::new(Enricher::with_geo(db));
    let clock = ManualClock::new(1_750_000_000_000);
    let presence = Presence::new(PresenceConfig::default(), enricher, Arc::new(clock.clone()));
    let pages = site_pages();
    let plain_pages = &pages[40..];
    let ips: Vec<IpAddr> = (0..1024).map(fixture::sample_ip).collect();

    let before = vm_rss_bytes();
    let started = Instant::now();
    let total_steps = visitors + (PAGES_PER_VISITOR - 1) * STRIDE;
    let (mut visitor_id, mut visit_id) = ([0u8; 22], [0u8; 22]);
    let mut recorded = 0u64;
    for step in 0..total_steps {
        // Every page view moves time on, so the whole run spans about half the retention period.
        clock.advance(1);
        // The live pusher drains the site's changes every push interval (100 ms by default);
        // here once a simulated second, which leaves a larger change set pending.
        if step % 1_000 == 0 {
            presence.drain_changes(SITE);
        }
        for page_index in 0..PAGES_PER_VISITOR {
            let Some(visitor) = step
                .checked_sub(page_index * STRIDE)
                .filter(|visitor| *visitor < visitors)
            else {
                continue;
            };
            let seed = visitor as u64;
            let roll = mix(seed ^ 0x5EED);
            let (url, title) = if page_index == 0 {
                &pages[(roll % pages.len() as u64) as usize]
            } else {
                &plain_pages[(mix(seed.wrapping_mul(31).wrapping_add(page_index as u64))
                    % plain_pages.len() as u64) as usize]
            };
            let beacon = Beacon {
                site: SITE,
                visitor_id: widget_id(seed, &mut visitor_id),
                visit_id: widget_id(seed ^ 0xF00D_F00D, &mut visit_id),
                kind: BeaconKind::PageView,
                url,
                title,
                referrer: (roll >> 8)
                    .is_multiple_of(2)
                    .then(|| REFERRERS[((roll >> 16) % 8) as usize]),
                ip: ips[(roll >> 24) as usize % ips.len()],
                user_agent: USER_AGENTS[((roll >> 32) % 20) as usize],
                language: Some(LANGUAGES[((roll >> 40) % 10) as usize]),
                screen: Some(SCREENS[((roll >> 48) % 6) as usize]),
            };
            let observation = match presence.observe(&beacon) {
                Observation::NeedsProfile => {
                    let profile = KnownProfile::new(visitor as u32 + 1, presence.now_ms());
                    presence.start_visit(&beacon, &profile)
                }
                other => other,
            };
            assert!(
                matches!(observation, Observation::Recorded { .. }),
                "{observation:?}"
            );
            recorded += 1;
            // One visitor in twenty tells the site who they are, on their third page.
            if page_index == 2 && (roll >> 56).is_multiple_of(20) {
                let identify = Beacon {
                    kind: BeaconKind::Identify(Identity {
                        name: Some(format!("Customer {visitor}")),
                        email: Some(format!("customer{visitor}@mail.example")),
                        phone: None,
                        props: Vec::new(),
                    }),
                    ..beacon
                };
                assert!(matches!(
                    presence.observe(&identify),
                    Observation::Recorded { .. }
                ));
            }
        }
    }
    let elapsed = started.elapsed();
    let after = vm_rss_bytes();
    let counts = presence.counts(SITE);
    assert_eq!(counts.all as usize, visitors, "every visitor is live");
    assert_eq!(
        presence
            .get(SITE, widget_id(0, &mut visitor_id))
            .map(|card| card.history.len()),
        Some(PAGES_PER_VISITOR)
    );
    eprintln!(
        "  {visitors} visitors: VmRSS {:.1} MiB -> {:.1} MiB, {recorded} page views in {:.2} s ({:.0} ns each), {} customers",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / recorded as f64,
        counts.customers,
    );
    // Keep the tracker alive until after the measurement.
    drop(presence);
    after.saturating_sub(before) / visitors as u64
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|arg| arg == "--child") {
        let visitors: usize = args
            .get(position + 1)
            .and_then(|value| value.parse().ok())
            .expect("--child takes a visitor count");
        let bytes = measure(visitors);
        println!("bytes_per_visitor {bytes} ({visitors} visitors)");
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("the bench binary knows its path");
    for visitors in SIZES {
        let output = Command::new(&exe)
            .arg("--child")
            .arg(visitors.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("the measuring child starts");
        if !output.status.success() {
            eprintln!("measuring {visitors} visitors failed: {}", output.status);
            return ExitCode::FAILURE;
        }
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
    ExitCode::SUCCESS
}
