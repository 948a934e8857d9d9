//! A realistic set of trigger rules for the shop the benchmark traffic browses
//! (`support::traffic`): what a marketing team accumulates over a couple of years.
//!
//! Most rules are about one page or one campaign and wait for the visitor to stay a while, as
//! proactive messages do: "on this product page for 30 s", "from the spring campaign, 2 minutes
//! on the site". Many name pages or campaigns the traffic never touches (old campaigns, the
//! cart, the account pages), a few are broad enough that no index can skip them. So a page view
//! is a candidate for a handful of rules, most of which schedule a wake-up rather than fire; a
//! visitor who stays long enough on a product page gets one message, once.
//!
//! | share | rule |
//! |---|---|
//! | 55 % | URL contains `/products/<slug>` (each of the 192 product pages ~3 times) AND time on page ≥ 20–120 s; a third also ask for a country or a language |
//! | 8 % | a collection page (`/collections/<category>?`) AND pages in visit ≥ 3 AND time on page ≥ 40 s |
//! | 10 % | pages the traffic never opens (`/cart`, `/checkout`, `/account/...`, `/pages/...`) |
//! | 15 % | `utm_campaign` equals a campaign (2 live, the rest past ones) AND URL contains `/products/` AND time on site ≥ 60–600 s |
//! | 7 % | `utm_source` / `utm_medium` equals a value AND time on site ≥ 120–300 s |
//! | 3 % | a journal article AND time on page ≥ 60 s AND (referrer contains a site OR language starts with a code) |
//! | 2 % | unindexed: (referrer contains … OR pages in visit ≥ 8) AND time on site ≥ 180 s; returning customers |
//!
//! Limits are mostly once per visitor, some once per visit or with a cooldown; one rule in five
//! has two variants and a 10 % control group.

use engage::triggers::Trigger;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::traffic;

const CATEGORIES: [&str; 8] = [
    "running", "hiking", "cycling", "swimming", "yoga", "climbing", "camping", "travel",
];
const COUNTRIES: [&str; 12] = [
    "US", "DE", "GB", "FR", "SE", "ES", "BR", "JP", "PL", "NL", "CZ", "CA",
];
const LANGUAGES: [&str; 8] = ["en", "de", "fr", "sv", "es", "pt", "ja", "pl"];
const SOURCES: [&str; 6] = [
    "google",
    "facebook",
    "instagram",
    "newsletter",
    "bing",
    "partner-blog",
];
const MEDIUMS: [&str; 4] = ["cpc", "paid_social", "email", "affiliate"];
const UNVISITED: [&str; 8] = [
    "/cart",
    "/checkout",
    "/account/login",
    "/account/orders",
    "/pages/shipping",
    "/pages/returns",
    "/pages/size-guide",
    "/search?q=",
];

/// `count` triggers (ids and times are set when they are stored), the same for a given count,
/// each sending its message `delay_secs` after it fires.
pub fn realistic(count: usize, delay_secs: u32) -> Vec<Trigger> {
    let mut rng = StdRng::seed_from_u64(0x7219_9e12);
    let slugs: Vec<String> = traffic::pages()
        .iter()
        .filter_map(|page| {
            let (_, rest) = page.url.split_once("/products/")?;
            Some(rest.split('?').next()?.to_owned())
        })
        .collect();
    (0..count)
        .map(|index| {
            let kind = index % 100;
            let conditions = if kind < 55 {
                let slug = &slugs[index % slugs.len()];
                let mut all = vec![
                    condition("url", "contains", json!(format!("/products/{slug}"))),
                    condition(
                        "time_on_page",
                        "gte",
                        json!(*[20, 30, 45, 60, 90, 120].choose(&mut rng).unwrap()),
                    ),
                ];
                match index % 3 {
                    0 => all.push(condition("country", "in", json!(pick(&mut rng, &COUNTRIES, 2)))),
                    1 => all.push(condition(
                        "language",
                        "starts_with",
                        json!(LANGUAGES.choose(&mut rng).unwrap()),
                    )),
                    _ => {}
                }
                json!({ "all": all })
            } else if kind < 63 {
                json!({"all": [
                    condition("url", "contains", json!(format!("/collections/{}?", CATEGORIES[index % 8]))),
                    condition("pages_in_visit", "gte", json!(3)),
                    condition("time_on_page", "gte", json!(40)),
                ]})
            } else if kind < 73 {
                json!({"all": [
                    condition("url", "contains", json!(UNVISITED[index % UNVISITED.len()])),
                    condition("time_on_page", "gte", json!(rng.random_range(5..60))),
                ]})
            } else if kind < 88 {
                let campaign = if index % 15 == 0 {
                    format!("spring_sale_{}", 2024 + index % 2)
                } else {
                    format!("{}_{}", ["summer_sale", "black_friday", "winter_clearance", "back_to_school"][index % 4], 2018 + index % 6)
                };
                json!({"all": [
                    condition("utm_campaign", "equals", json!(campaign)),
                    condition("url", "contains", json!("/products/")),
                    condition("time_on_site", "gte", json!(rng.random_range(60..600))),
                ]})
            } else if kind < 95 {
                let test = if index % 2 == 0 {
                    condition("utm_source", "equals", json!(SOURCES.choose(&mut rng).unwrap()))
                } else {
                    condition("utm_medium", "equals", json!(MEDIUMS.choose(&mut rng).unwrap()))
                };
                json!({"all": [test, condition("time_on_site", "gte", json!(rng.random_range(120..300)))]})
            } else if kind < 98 {
                json!({"all": [
                    condition("url", "contains", json!("/blogs/journal/")),
                    condition("time_on_page", "gte", json!(60)),
                    {"any": [
                        condition("referrer", "contains", json!(["reddit", "ycombinator", "youtube"][index % 3])),
                        condition("language", "starts_with", json!(LANGUAGES.choose(&mut rng).unwrap())),
                    ]},
                ]})
            } else if kind == 98 {
                json!({"all": [
                    {"any": [
                        condition("referrer", "contains", json!("reddit.com/r/")),
                        condition("pages_in_visit", "gte", json!(8)),
                    ]},
                    condition("time_on_site", "gte", json!(180)),
                ]})
            } else {
                json!({"all": [
                    condition("visits", "gte", json!(3)),
                    condition("customer", "is", json!(true)),
                    condition("time_on_site", "gte", json!(240)),
                ]})
            };
            let limit = match index % 10 {
                0..=6 => json!({"mode": "once_per_visitor"}),
                7 | 8 => json!({"mode": "once_per_visit"}),
                _ => json!({"mode": "cooldown", "cooldown_secs": 86_400}),
            };
            let ab = index % 5 == 0;
            let mut variants = vec![json!({
                "key": "a",
                "author": {"bot": "Outfitters"},
                "text": "Hi {first_name|there}! Questions about this? We reply within minutes.",
                "weight": 1,
            })];
            if ab {
                variants.push(json!({
                    "key": "b",
                    "author": {"bot": "Outfitters"},
                    "text": "Free returns for 60 days, also to {city|your city}. Ask us anything!",
                    "weight": 1,
                }));
            }
            let body = json!({
                "name": format!("Rule {index}"),
                "enabled": true,
                "priority": rng.random_range(0..20),
                "conditions": conditions,
                "delay_secs": delay_secs,
                "open_widget": false,
                "variants": variants,
                "control_percent": if ab { 10 } else { 0 },
                "limit": limit,
                "goal": if ab { json!({"event": "purchase", "window_secs": 86_400}) } else { Value::Null },
            });
            Trigger::from_json(&body).expect("a well-formed benchmark rule")
        })
        .collect()
}

fn condition(field: &str, op: &str, value: Value) -> Value {
    json!({"field": field, "op": op, "value": value})
}

fn pick(rng: &mut StdRng, from: &[&str], n: usize) -> Vec<String> {
    from.choose_multiple(rng, n)
        .map(|item| (*item).to_owned())
        .collect()
}
