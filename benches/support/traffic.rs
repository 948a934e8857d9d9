//! Realistic beacon traffic: visitors with real User-Agents, addresses spread over the GeoIP
//! fixture networks, visits that open with a page view (with a referrer, often a campaign
//! landing page with UTM parameters) and go on with heartbeats and further page views, all
//! pre-serialised as complete HTTP/1.1 requests.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The site every benchmark server has, and the page origin its beacons come from.
pub const SITE: &str = "bench";
pub const ORIGIN: &str = "https://shop.example.com";

/// Body sizes every generated beacon stays within.
pub const MIN_BODY: usize = 400;
pub const MAX_BODY: usize = 600;

/// Real browser User-Agent strings: desktop and mobile, the mix of a typical shop.
pub const BROWSERS: [&str; 24] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 327.0.0.29.101",
    "Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.118 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
];

/// One visitor in a hundred is a JavaScript-running crawler: counted, never listed.
pub const CRAWLER: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/124.0.6367.155 Safari/537.36";

const LANGUAGES: [&str; 10] = [
    "en-US", "en-GB", "de-DE", "fr-FR", "sv-SE", "es-ES", "pt-BR", "ja-JP", "pl-PL", "nl-NL",
];
const SCREENS: [(u16, u16); 8] = [
    (1920, 1080),
    (1536, 864),
    (1440, 900),
    (2560, 1440),
    (390, 844),
    (414, 896),
    (393, 873),
    (820, 1180),
];
const REFERRERS: [&str; 10] = [
    "https://www.google.com/",
    "https://www.google.de/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://www.facebook.com/",
    "https://l.instagram.com/",
    "https://t.co/",
    "https://www.reddit.com/r/running/comments/1c2d3e4/best_trail_shoes_this_year/",
    "https://news.ycombinator.com/item?id=40123456",
    "https://www.youtube.com/",
];
const CATEGORIES: [&str; 8] = [
    "running", "hiking", "cycling", "swimming", "yoga", "climbing", "camping", "travel",
];
const ADJECTIVES: [&str; 12] = [
    "Ultralight",
    "Waterproof",
    "Merino",
    "Recycled",
    "Insulated",
    "Breathable",
    "Packable",
    "Reflective",
    "Quick-Dry",
    "All-Season",
    "Stretch",
    "Windproof",
];
const PRODUCTS: [&str; 16] = [
    "Trail Runner 2",
    "Rain Shell Jacket",
    "Crew Socks 3-Pack",
    "Hydration Vest 12L",
    "Down Hoodie",
    "Daypack 24L",
    "Fleece Quarter-Zip",
    "Running Tights",
    "Sun Hat",
    "Base Layer Tee",
    "Bike Gloves",
    "Sleeping Bag -5C",
    "Trekking Poles",
    "Swim Goggles Pro",
    "Yoga Mat 4mm",
    "Climbing Chalk Bag",
];
const SOURCES: [(&str, &str); 6] = [
    ("google", "cpc"),
    ("facebook", "paid_social"),
    ("instagram", "paid_social"),
    ("newsletter", "email"),
    ("bing", "cpc"),
    ("partner-blog", "affiliate"),
];

/// A page of the shop: its address and title.
#[derive(Clone, Debug)]
pub struct Page {
    pub url: String,
    pub title: String,
}

/// The shop's pages: product pages, collections and journal articles.
pub fn pages() -> Vec<Page> {
    let mut pages = Vec::new();
    for (index, product) in PRODUCTS.iter().enumerate() {
        for (step, adjective) in ADJECTIVES.iter().enumerate() {
            let category = CATEGORIES[(index + step) % CATEGORIES.len()];
            let name = format!("{adjective} {product}");
            let slug = slug(&name);
            pages.push(Page {
                url: format!(
                    "{ORIGIN}/collections/{category}/products/{slug}?variant={}",
                    40_000_000_000_000u64 + (index * 1_000 + step) as u64 * 7_919
                ),
                title: format!(
                    "{name} – {} Gear | Example Outfitters",
                    capitalise(category)
                ),
            });
        }
    }
    for category in CATEGORIES {
        pages.push(Page {
            url: format!(
                "{ORIGIN}/collections/{category}?sort_by=best-selling&filter.v.price.gte=20&filter.v.price.lte=150&filter.v.availability=1"
            ),
            title: format!(
                "{} Gear and Apparel – Shop the Collection | Example Outfitters",
                capitalise(category)
            ),
        });
        pages.push(Page {
            url: format!("{ORIGIN}/blogs/journal/how-to-choose-your-first-{category}-kit-a-complete-guide"),
            title: format!(
                "How to Choose Your First {} Kit: A Complete Guide – The Journal | Example Outfitters",
                capitalise(category)
            ),
        });
    }
    pages
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// 16 random bytes as 22 characters of base64url: what the widget generates for ids.
pub fn random_id(rng: &mut impl Rng) -> String {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One visitor of the shop.
#[derive(Clone, Debug)]
pub struct Visitor {
    pub vid: String,
    pub sid: String,
    pub user_agent: &'static str,
    pub ip: IpAddr,
    pub lang: &'static str,
    pub screen: (u16, u16),
    /// `document.referrer` of the visit's landing page, if any.
    pub referrer: Option<&'static str>,
    /// UTM (and click id) parameters of the landing page, if the visit came from a campaign.
    pub campaign: Option<String>,
}

/// One beacon: its visitor, whether it is a page view, and its JSON body.
#[derive(Clone, Debug)]
pub struct Beacon {
    pub visitor: usize,
    pub page_view: bool,
    pub body: String,
}

/// A visitor population and the pages they browse.
pub struct Traffic {
    pub visitors: Vec<Visitor>,
    pub pages: Vec<Page>,
    rng: StdRng,
}

impl Traffic {
    pub fn new(visitors: usize, seed: u64) -> Traffic {
        let mut rng = StdRng::seed_from_u64(seed);
        let visitors = (0..visitors)
            .map(|index| {
                let user_agent = if index % 100 == 42 {
                    CRAWLER
                } else {
                    BROWSERS[rng.random_range(0..BROWSERS.len())]
                };
                let referrer = (rng.random_range(0..10) < 7)
                    .then(|| REFERRERS[rng.random_range(0..REFERRERS.len())]);
                let campaign = (rng.random_range(0..10) < 4).then(|| {
                    let (source, medium) = SOURCES[rng.random_range(0..SOURCES.len())];
                    let mut query = format!(
                        "utm_source={source}&utm_medium={medium}&utm_campaign=spring_sale_{}&utm_content=ad_{}",
                        rng.random_range(2024..2026),
                        rng.random_range(1..40)
                    );
                    if source == "google" {
                        query.push_str("&gclid=");
                        query.push_str(&random_id(&mut rng));
                    }
                    query
                });
                Visitor {
                    vid: random_id(&mut rng),
                    sid: random_id(&mut rng),
                    user_agent,
                    ip: geoip::fixture::sample_ip(index),
                    lang: LANGUAGES[rng.random_range(0..LANGUAGES.len())],
                    screen: SCREENS[rng.random_range(0..SCREENS.len())],
                    referrer,
                    campaign,
                }
            })
            .collect();
        Traffic {
            visitors,
            pages: pages(),
            rng,
        }
    }

    /// `rounds` beacons per visitor, visitor by visitor within a round (so every visitor has
    /// been seen once after the first `visitors.len()` beacons). Round 0 is each visit's
    /// landing page view (with its referrer and campaign); later rounds are heartbeats on the
    /// current page or page views of a new page, such that `page_view_share` of all beacons
    /// are page views. Every body is within [`MIN_BODY`, `MAX_BODY`] bytes.
    pub fn beacons(&mut self, rounds: usize, page_view_share: f64) -> Vec<Beacon> {
        assert!(
            rounds >= 2,
            "at least a landing page view and one more beacon"
        );
        // Round 0 is all page views; the later rounds make up the rest of the share.
        let later_share =
            ((page_view_share * rounds as f64 - 1.0) / (rounds as f64 - 1.0)).clamp(0.0, 1.0);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        // Each visitor's current page, and whether its address carries the visit's campaign
        // (the landing page keeps its UTM parameters in `location.href`).
        let mut current: Vec<(usize, bool)> = vec![(0, false); self.visitors.len()];
        let mut beacons = Vec::with_capacity(rounds * self.visitors.len());
        for round in 0..rounds {
            for visitor in 0..self.visitors.len() {
                let landing = round == 0;
                let page_view = landing || self.rng.random_bool(later_share);
                let ts = now_ms - ((rounds - round) as i64) * 15_000;
                let body = if page_view {
                    let mut attempts = 0;
                    loop {
                        let page = self.rng.random_range(0..self.pages.len());
                        let body = self.body(visitor, page, landing, "pageview", landing, ts);
                        // Later heartbeats on this page must fit too.
                        let heartbeat = self.body(visitor, page, landing, "heartbeat", false, ts);
                        if [&body, &heartbeat]
                            .iter()
                            .all(|body| (MIN_BODY..=MAX_BODY).contains(&body.len()))
                        {
                            current[visitor] = (page, landing);
                            break body;
                        }
                        attempts += 1;
                        assert!(
                            attempts < 10_000,
                            "no page gives a body of {MIN_BODY}-{MAX_BODY} bytes"
                        );
                    }
                } else {
                    let (page, campaign) = current[visitor];
                    self.body(visitor, page, campaign, "heartbeat", false, ts)
                };
                beacons.push(Beacon {
                    visitor,
                    page_view,
                    body,
                });
            }
        }
        beacons
    }

    fn body(
        &self,
        visitor: usize,
        page: usize,
        campaign: bool,
        kind: &str,
        referrer: bool,
        ts: i64,
    ) -> String {
        let who = &self.visitors[visitor];
        let page = &self.pages[page];
        let mut url = page.url.clone();
        if campaign && let Some(campaign) = &who.campaign {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(campaign);
        }
        beacon_body(
            who,
            kind,
            &url,
            &page.title,
            if referrer { who.referrer } else { None },
            ts,
        )
    }
}

/// A beacon body exactly as the widget's `JSON.stringify` writes it.
pub fn beacon_body(
    who: &Visitor,
    kind: &str,
    url: &str,
    title: &str,
    referrer: Option<&str>,
    ts: i64,
) -> String {
    let mut body = serde_json::json!({
        "site": SITE,
        "vid": who.vid,
        "sid": who.sid,
        "type": kind,
        "url": url,
        "title": title,
        "lang": who.lang,
        "screen": [who.screen.0, who.screen.1],
        "ts": ts,
    });
    if let Some(referrer) = referrer {
        body["referrer"] = referrer.into();
    }
    body.to_string()
}

/// The complete HTTP/1.1 request a browser's `fetch(…, {keepalive: true})` from the shop sends,
/// as it reaches Porchlight through a proxy on the loopback (which adds `X-Forwarded-For`).
pub fn request(addr: SocketAddr, who: &Visitor, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/beacon HTTP/1.1\r\n\
         Host: {addr}\r\n\
         User-Agent: {ua}\r\n\
         Accept: */*\r\n\
         Accept-Language: {lang},en;q=0.9\r\n\
         Accept-Encoding: gzip, deflate, br\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         Origin: {ORIGIN}\r\n\
         Referer: {ORIGIN}/\r\n\
         X-Forwarded-For: {ip}\r\n\
         Content-Length: {length}\r\n\
         \r\n\
         {body}",
        ua = who.user_agent,
        lang = who.lang,
        ip = who.ip,
        length = body.len(),
    )
    .into_bytes()
}

/// Sizes of a set of bodies: (min, mean, max).
pub fn body_sizes(beacons: &[Beacon]) -> (usize, usize, usize) {
    let min = beacons.iter().map(|b| b.body.len()).min().unwrap_or(0);
    let max = beacons.iter().map(|b| b.body.len()).max().unwrap_or(0);
    let mean = beacons.iter().map(|b| b.body.len()).sum::<usize>() / beacons.len().max(1);
    (min, mean, max)
}
