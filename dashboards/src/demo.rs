//! The demo: a site ("demo", served at `/demo/`), a demo owner whose credentials are printed at
//! start-up, and a traffic simulator that keeps a crowd of plausible visitors browsing it, so the
//! live panel is alive on first start.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use engage::{Accounts, Role};
use rand::Rng;
use rand::seq::IndexedRandom;
use tracker::{Beacon, BeaconKind, Identity};

use crate::config::Settings;
use crate::state::AppState;

pub const DEMO_SITE: &str = "demo";
pub const DEMO_OWNER_EMAIL: &str = "demo@porchlight.local";
const CREDENTIALS_FILE: &str = "demo-owner.txt";

/// Creates the demo site and owner if missing and prints how to sign in.
pub async fn ensure_demo(accounts: &Accounts, settings: &Settings) -> anyhow::Result<()> {
    if accounts.store().site(DEMO_SITE).await?.is_none() {
        accounts
            .create_site("Lumen Lamps (demo)", &[], Some(DEMO_SITE))
            .await
            .context("creating the demo site")?;
    }
    let credentials_path = settings.common.data_dir.join(CREDENTIALS_FILE);
    let password = match accounts.store().agent_by_email(DEMO_OWNER_EMAIL).await? {
        Some(_) => read_password(&credentials_path),
        None => {
            let password = random_password();
            accounts
                .create_agent(DEMO_OWNER_EMAIL, "Demo Owner", Role::Owner, &password)
                .await
                .context("creating the demo owner")?;
            write_private(&credentials_path, &password)?;
            Some(password)
        }
    };
    let base = format!("http://{}", settings.listen);
    println!("Porchlight demo");
    println!("  console:   {base}/console/");
    println!("  demo site: {base}/demo/");
    match password {
        Some(password) => println!("  sign in:   {DEMO_OWNER_EMAIL} / {password}"),
        None => println!(
            "  sign in:   {DEMO_OWNER_EMAIL} (password file {} is missing)",
            credentials_path.display()
        ),
    }
    Ok(())
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| *ALPHABET.choose(&mut rng).expect("non-empty") as char)
        .collect()
}

fn read_password(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("{secret}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

const PAGES: &[(&str, &str)] = &[
    ("/demo/", "Lumen Lamps — lamps that glow"),
    ("/demo/products.html", "Products — Lumen Lamps"),
    ("/demo/pricing.html", "Pricing — Lumen Lamps"),
    ("/demo/app/", "Dashboard — Lumen App"),
    ("/demo/app/settings", "Settings — Lumen App"),
    ("/demo/app/billing", "Billing — Lumen App"),
    (
        "/demo/products.html?item=aurora",
        "Aurora desk lamp — Lumen Lamps",
    ),
    (
        "/demo/products.html?item=nova",
        "Nova floor lamp — Lumen Lamps",
    ),
];

const CAMPAIGNS: &[&str] = &[
    "",
    "",
    "",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=desk+lamp",
    "?utm_source=facebook&utm_medium=social&utm_campaign=launch",
    "?gclid=Cj0KCQjw-demo",
];

const REFERRERS: &[&str] = &[
    "",
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
    "https://www.facebook.com/",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
];

const LANGUAGES: &[&str] = &[
    "en-US", "en-GB", "de-DE", "sv-SE", "pl-PL", "ja-JP", "pt-BR",
];
const NAMES: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@example.com"),
    ("Linus Svensson", "linus@example.se"),
    ("Marta Kowalska", "marta@example.pl"),
    ("Kenji Sato", "kenji@example.jp"),
];

struct SimulatedVisitor {
    visitor_id: String,
    visit_id: String,
    ip: IpAddr,
    user_agent: &'static str,
    language: &'static str,
    landing_query: &'static str,
    referrer: &'static str,
    page: usize,
    views: u32,
    pages_left: u32,
    next_action: tokio::time::Instant,
    identity: Option<Identity>,
}

/// Keeps `settings.simulate` visitors browsing the demo site, through the same ingest pipeline
/// as real beacons. Bounded: it only ever holds that many visitors and acts every 250 ms.
pub async fn run_simulator(state: AppState) {
    let target = state.settings.simulate as usize;
    let heartbeat = state.settings.heartbeat;
    let mut shutdown = state.shutdown.subscribe();
    let mut visitors: Vec<SimulatedVisitor> = Vec::with_capacity(target);
    let mut serial = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = tokio::time::Instant::now();
        while visitors.len() < target {
            serial += 1;
            visitors.push(new_visitor(serial, now));
        }
        let mut index = 0;
        while index < visitors.len() {
            if visitors[index].next_action > now {
                index += 1;
                continue;
            }
            let (kind, leaving) = step(&mut visitors[index], heartbeat, now);
            let visitor = &visitors[index];
            let (path, title) = PAGES[visitor.page];
            // Campaign parameters sit on the landing page only, as they do on real sites.
            let query = if visitor.views <= 1 {
                visitor.landing_query
            } else {
                ""
            };
            let url = format!("http://demo.porchlight.local{path}{query}");
            let beacon = Beacon {
                site: DEMO_SITE,
                visitor_id: &visitor.visitor_id,
                visit_id: &visitor.visit_id,
                kind,
                url: &url,
                title,
                referrer: Some(visitor.referrer).filter(|referrer| !referrer.is_empty()),
                ip: visitor.ip,
                user_agent: visitor.user_agent,
                language: Some(visitor.language),
                screen: Some((1440, 900)),
            };
            if let Err(error) = state.ingest.record(&beacon).await {
                tracing::warn!(%error, "simulated beacon failed");
            }
            if leaving {
                visitors.swap_remove(index);
            } else {
                index += 1;
            }
        }
    }
}

fn new_visitor(serial: usize, now: tokio::time::Instant) -> SimulatedVisitor {
    let mut rng = rand::rng();
    let identity = (rng.random_range(0..6) == 0).then(|| {
        let (name, email) = *NAMES.choose(&mut rng).expect("non-empty");
        Identity {
            name: Some(name.to_owned()),
            email: Some(email.to_owned()),
            ..Identity::default()
        }
    });
    SimulatedVisitor {
        visitor_id: format!(
            "sim{serial:05}{:012x}",
            rng.random::<u64>() & 0xffff_ffff_ffff
        ),
        visit_id: format!("simvisit{:016x}", rng.random::<u64>()),
        ip: geoip::fixture::sample_ip(rng.random_range(0..1000)),
        user_agent: USER_AGENTS.choose(&mut rng).expect("non-empty"),
        language: LANGUAGES.choose(&mut rng).expect("non-empty"),
        landing_query: CAMPAIGNS.choose(&mut rng).expect("non-empty"),
        referrer: REFERRERS.choose(&mut rng).expect("non-empty"),
        page: 0,
        views: 0,
        pages_left: rng.random_range(1..8),
        // Arrivals are spread out, not all at the first tick.
        next_action: now + Duration::from_millis(rng.random_range(0..20_000)),
        identity,
    }
}

/// Decides what a due visitor does next: view a page, identify, send a heartbeat, or leave.
fn step(
    visitor: &mut SimulatedVisitor,
    heartbeat: Duration,
    now: tokio::time::Instant,
) -> (BeaconKind, bool) {
    let mut rng = rand::rng();
    if visitor.pages_left == 0 {
        return (BeaconKind::Leave, true);
    }
    if visitor.views > 0
        && visitor.identity.is_some()
        && rng.random_range(0..3) == 0
        && let Some(identity) = visitor.identity.take()
    {
        visitor.next_action = now + Duration::from_secs(2);
        return (BeaconKind::Identify(identity), false);
    }
    if visitor.views > 0 && rng.random_range(0..3) == 0 {
        visitor.next_action = now + heartbeat.min(Duration::from_secs(10));
        return (BeaconKind::Heartbeat, false);
    }
    visitor.pages_left -= 1;
    visitor.views += 1;
    if visitor.views > 1 {
        visitor.page = rng.random_range(0..PAGES.len());
    }
    visitor.next_action = now + Duration::from_millis(rng.random_range(4_000..40_000));
    (BeaconKind::PageView, false)
}
