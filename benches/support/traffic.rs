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

/// The shop's pages: product pages (often reached from search or recommendations, whose
/// tracking parameters stay in the address), collections and journal articles.
pub fn pages() -> Vec<Page> {
    let mut pages = Vec::new();
    for (index, product) in PRODUCTS.iter().enumerate() {
        for (step, adjective) in ADJECTIVES.iter().enumerate() {
            let k = index * ADJECTIVES.len() + step;
            let category = CATEGORIES[(index + step) % CATEGORIES.len()];
            let name = format!("{adjective} {product}");
            let slug = slug(&name);
            let variant = 40_000_000_000_000u64 + k as u64 * 7_919;
            let tracking = match k % 3 {
                0 => String::new(),
                1 => format!("&_pos={}&_sid={:09x}&_ss=r", k % 24 + 1, k * 2_654_435),
                _ => format!(
                    "&pr_prod_strat=e5_desc&pr_rec_id={:09x}&pr_rec_pid={}&pr_ref_pid={}&pr_seq=uniform",
                    k * 40_503,
                    7_401_234_000_000u64 + k as u64,
                    7_409_876_000_000u64 + (k as u64 * 31) % 997,
                ),
            };
            let category = capitalise(category);
            let title = if (k / 3).is_multiple_of(2) {
                format!("{name} – {category} Gear | Example Outfitters")
            } else {
                format!(
                    "{name} – {category} Gear for Men & Women | Free Shipping & Returns | Example Outfitters"
                )
            };
            pages.push(Page {
                url: format!(
                    "{ORIGIN}/collections/{}/products/{slug}?variant={variant}{tracking}",
                    category.to_lowercase()
                ),
                title,
            });
        }
    }
    for category in CATEGORIES {
        pages.push(Page {
            url: format!(
                "{ORIGIN}/collections/{category}?sort_by=best-selling&filter.v.price.gte=20&filter.v.price.lte=150&filter.v.availability=1"
            ),
            title: format!(
                "{} Gear and Apparel – Shop the Collection, Free Shipping Over $50 | Example Outfitters",
                capitalise(category)
            ),
        });
        pages.push(Page {
            url: format!(
                "{ORIGIN}/blogs/journal/how-to-choose-your-first-{category}-kit-a-complete-guide-for-beginners"
            ),
            title: format!(
                "How to Choose Your First {} Kit: A Complete Guide for Beginners – The Journal | Example Outfitters",
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

/// One beacon: its visitor, what it is, and its JSON body.
#[derive(Clone, Debug)]
pub struct Beacon {
    pub visitor: usize,
    pub page_view: bool,
    /// A page view with a new visit id (a landing page, with referrer and campaign).
    pub starts_visit: bool,
    pub body: String,
}

/// The beacons of a run: a priming pass (every visitor's landing page view, so that all of
/// them are live), then a steady cycle repeated for as long as the run lasts.
pub struct Pool {
    pub prime: Vec<Beacon>,
    pub steady: Vec<Beacon>,
}

impl Pool {
    /// Every beacon: the priming pass, then one steady cycle.
    pub fn all(&self) -> impl Iterator<Item = &Beacon> {
        self.prime.iter().chain(&self.steady)
    }

    /// A line describing the traffic.
    pub fn describe(&self) -> String {
        let steady = self.steady.len() as f64;
        let page_views = self.steady.iter().filter(|b| b.page_view).count() as f64;
        let starts = self.steady.iter().filter(|b| b.starts_visit).count();
        let sizes: Vec<usize> = self.all().map(|b| b.body.len()).collect();
        let min = sizes.iter().copied().min().unwrap_or(0);
        let max = sizes.iter().copied().max().unwrap_or(0);
        let mean = sizes.iter().sum::<usize>() / sizes.len().max(1);
        format!(
            "priming pass of {} landing page views, then a cycle of {} beacons: {:.1}% page \
             views, {:.1}% starting a visit; bodies {min}-{max} bytes (mean {mean})",
            self.prime.len(),
            self.steady.len(),
            100.0 * page_views / steady,
            100.0 * starts as f64 / steady,
        )
    }
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

    /// The priming pass, then `rounds` beacons per visitor, visitor by visitor within a round:
    /// each a page view with probability `page_view_share`, otherwise a heartbeat on the
    /// current page; with probability `new_visit_share` a beacon gets a new visit id (and so
    /// does the first beacon of the cycle of a visitor whose id changed in it): a landing page
    /// view with the visitor's referrer and campaign. Every body is within [`MIN_BODY`,
    /// `MAX_BODY`] bytes.
    pub fn pool(&mut self, rounds: usize, page_view_share: f64, new_visit_share: f64) -> Pool {
        assert!(new_visit_share <= page_view_share && page_view_share <= 1.0);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        let count = self.visitors.len();
        // The plan: per round and visitor, a page view or not, and which of the visitor's visit
        // ids. A visit starts where the id changes, also from the last round to the first: the
        // priming pass uses each visitor's last id, so every pass over the cycle is alike.
        let mut visit_ids: Vec<Vec<String>> =
            self.visitors.iter().map(|v| vec![v.sid.clone()]).collect();
        let mut plan: Vec<Vec<(bool, usize)>> = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let mut row = Vec::with_capacity(count);
            for ids in &mut visit_ids {
                let draw: f64 = self.rng.random();
                if draw < new_visit_share {
                    ids.push(random_id(&mut self.rng));
                }
                row.push((draw < page_view_share, ids.len() - 1));
            }
            plan.push(row);
        }
        // Each visitor's current page, and whether its address carries the visit's campaign
        // (the landing page keeps its UTM parameters in `location.href`).
        let mut current: Vec<(usize, bool)> = vec![(0, false); count];
        let mut previous: Vec<usize> = visit_ids.iter().map(|ids| ids.len() - 1).collect();
        let mut prime = Vec::with_capacity(count);
        for visitor in 0..count {
            let sid = &visit_ids[visitor][previous[visitor]];
            let (page, body) = self.page_view(visitor, sid, true, now_ms - 60_000);
            current[visitor] = (page, true);
            prime.push(Beacon {
                visitor,
                page_view: true,
                starts_visit: true,
                body,
            });
        }
        let mut steady = Vec::with_capacity(rounds * count);
        for (round, row) in plan.iter().enumerate() {
            let ts = now_ms - ((rounds - round) as i64) * 10_000;
            for (visitor, &(page_view, visit)) in row.iter().enumerate() {
                let starts_visit = visit != previous[visitor];
                previous[visitor] = visit;
                let page_view = page_view || starts_visit;
                let sid = &visit_ids[visitor][visit];
                let body = if page_view {
                    let (page, body) = self.page_view(visitor, sid, starts_visit, ts);
                    current[visitor] = (page, starts_visit);
                    body
                } else {
                    let (page, campaign) = current[visitor];
                    self.body(visitor, sid, page, campaign, "heartbeat", false, ts)
                };
                steady.push(Beacon {
                    visitor,
                    page_view,
                    starts_visit,
                    body,
                });
            }
        }
        Pool { prime, steady }
    }

    /// A page view of a random page (a landing page with the visit's referrer and campaign if
    /// `landing`) whose body, and that of later heartbeats on it, fit the size range.
    fn page_view(&mut self, visitor: usize, sid: &str, landing: bool, ts: i64) -> (usize, String) {
        for _ in 0..10_000 {
            let page = self.rng.random_range(0..self.pages.len());
            let body = self.body(visitor, sid, page, landing, "pageview", landing, ts);
            let heartbeat = self.body(visitor, sid, page, landing, "heartbeat", false, ts);
            if [&body, &heartbeat]
                .iter()
                .all(|body| (MIN_BODY..=MAX_BODY).contains(&body.len()))
            {
                return (page, body);
            }
        }
        panic!("no page gives a body of {MIN_BODY}-{MAX_BODY} bytes");
    }

    #[allow(clippy::too_many_arguments)]
    fn body(
        &self,
        visitor: usize,
        sid: &str,
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
            sid,
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
    sid: &str,
    kind: &str,
    url: &str,
    title: &str,
    referrer: Option<&str>,
    ts: i64,
) -> String {
    let mut body = serde_json::json!({
        "site": SITE,
        "vid": who.vid,
        "sid": sid,
        "type": kind,
        "url": url,
        "title": title,
        "lang": who.lang,
        "screen": [who.screen.0, who.screen.1],
        "ts": ts,
        // The widget's heartbeat interval: its default, which is also the server's.
        "hb": 15_000,
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

/// The requests of a [`Pool`] for one server, serialised once.
pub struct Requests {
    all: Vec<Vec<u8>>,
    prime: usize,
}

impl Requests {
    pub fn new(pool: &Pool, traffic: &Traffic, addr: SocketAddr) -> Requests {
        Requests {
            all: pool
                .all()
                .map(|beacon| request(addr, &traffic.visitors[beacon.visitor], &beacon.body))
                .collect(),
            prime: pool.prime.len(),
        }
    }

    /// How many requests the priming pass has.
    pub fn prime_len(&self) -> usize {
        self.prime
    }

    /// The `n`-th request to send: the priming pass once, then the steady cycle over and over.
    pub fn nth(&self, n: usize) -> &[u8] {
        let index = if n < self.prime {
            n
        } else {
            self.prime + (n - self.prime) % (self.all.len() - self.prime)
        };
        &self.all[index]
    }
}
