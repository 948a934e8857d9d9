//! JSON shapes of visitors on the wire: a compact `Row` for lists and live panels, and the full
//! `Card`. Only this module knows them; the tracker hands out plain snapshots.

use std::collections::BTreeMap;

use serde::Serialize;
use tracker::{PropValue, SegmentCounts, VisitorSnapshot};

/// One line of the live list.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub id: &'a str,
    pub number: u32,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub country_code: Option<&'a str>,
    pub country: Option<&'a str>,
    pub region: Option<&'a str>,
    pub city: Option<&'a str>,
    pub url: &'a str,
    pub title: &'a str,
    pub page_since: i64,
    pub visit_started: i64,
    pub last_activity: i64,
    pub left: Option<i64>,
    pub pages: u32,
    pub referrer: Option<&'a str>,
    pub utm_source: Option<&'a str>,
    pub utm_medium: Option<&'a str>,
    pub utm_campaign: Option<&'a str>,
    pub browser: &'a str,
    pub browser_version: &'a str,
    pub os: &'a str,
    pub os_version: &'a str,
    pub device: &'static str,
    pub visits: u32,
    pub segments: Vec<&'static str>,
}

impl<'a> Row<'a> {
    pub fn new(visitor: &'a VisitorSnapshot) -> Row<'a> {
        Row {
            id: &visitor.id,
            number: visitor.number,
            name: visitor.identity.name.as_deref(),
            email: visitor.identity.email.as_deref(),
            country_code: visitor.geo.country_code.as_deref(),
            country: visitor.geo.country_name.as_deref(),
            region: visitor.geo.region.as_deref(),
            city: visitor.geo.city.as_deref(),
            url: &visitor.current_url,
            title: &visitor.current_title,
            page_since: visitor.page_since_ms,
            visit_started: visitor.visit_started_ms,
            last_activity: visitor.last_activity_ms,
            left: visitor.left_ms,
            pages: visitor.pages_this_visit,
            referrer: visitor.referrer.as_deref(),
            utm_source: visitor.campaign.source.as_deref(),
            utm_medium: visitor.campaign.medium.as_deref(),
            utm_campaign: visitor.campaign.name.as_deref(),
            browser: &visitor.client.browser,
            browser_version: &visitor.client.browser_version,
            os: &visitor.client.os,
            os_version: &visitor.client.os_version,
            device: visitor.client.device.as_str(),
            visits: visitor.visits,
            segments: visitor
                .segments
                .iter()
                .map(|segment| segment.as_str())
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PageVisit<'a> {
    pub url: &'a str,
    pub title: &'a str,
    pub at: i64,
}

#[derive(Debug, Serialize)]
pub struct Campaign<'a> {
    pub source: Option<&'a str>,
    pub medium: Option<&'a str>,
    pub name: Option<&'a str>,
    pub term: Option<&'a str>,
    pub content: Option<&'a str>,
    pub other: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, Serialize)]
pub struct IdentityOut<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub props: BTreeMap<&'a str, &'a PropValue>,
}

#[derive(Debug, Serialize)]
pub struct EventOut<'a> {
    pub name: &'a str,
    pub props: BTreeMap<&'a str, &'a PropValue>,
    pub at: i64,
}

/// Everything the visitor card shows.
#[derive(Debug, Serialize)]
pub struct Card<'a> {
    #[serde(flatten)]
    pub row: Row<'a>,
    pub ip: String,
    pub time_zone: Option<&'a str>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub language: Option<&'a str>,
    pub screen: Option<[u16; 2]>,
    pub landing_url: &'a str,
    pub phone: Option<&'a str>,
    pub first_seen: i64,
    pub history: Vec<PageVisit<'a>>,
    pub campaign: Campaign<'a>,
    pub identity: IdentityOut<'a>,
    pub events: Vec<EventOut<'a>>,
}

impl<'a> Card<'a> {
    pub fn new(visitor: &'a VisitorSnapshot) -> Card<'a> {
        let props = |props: &'a [(String, PropValue)]| {
            props
                .iter()
                .map(|(key, value)| (key.as_str(), value))
                .collect()
        };
        Card {
            row: Row::new(visitor),
            ip: visitor.ip.to_string(),
            time_zone: visitor.geo.time_zone.as_deref(),
            latitude: visitor.geo.latitude,
            longitude: visitor.geo.longitude,
            language: visitor.language.as_deref(),
            screen: visitor.screen.map(|(width, height)| [width, height]),
            landing_url: &visitor.landing_url,
            phone: visitor.identity.phone.as_deref(),
            first_seen: visitor.first_seen_ms,
            history: visitor
                .history
                .iter()
                .map(|page| PageVisit {
                    url: &page.url,
                    title: &page.title,
                    at: page.at_ms,
                })
                .collect(),
            campaign: Campaign {
                source: visitor.campaign.source.as_deref(),
                medium: visitor.campaign.medium.as_deref(),
                name: visitor.campaign.name.as_deref(),
                term: visitor.campaign.term.as_deref(),
                content: visitor.campaign.content.as_deref(),
                other: visitor
                    .campaign
                    .other
                    .iter()
                    .map(|(key, value)| (&**key, &**value))
                    .collect(),
            },
            identity: IdentityOut {
                name: visitor.identity.name.as_deref(),
                email: visitor.identity.email.as_deref(),
                phone: visitor.identity.phone.as_deref(),
                props: props(&visitor.identity.props),
            },
            events: visitor
                .events
                .iter()
                .map(|event| EventOut {
                    name: &event.name,
                    props: props(&event.props),
                    at: event.at_ms,
                })
                .collect(),
        }
    }
}

/// A live-panel frame: the whole list, or what changed since the last frame.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Frame<'a> {
    Snapshot {
        now: i64,
        counts: &'a SegmentCounts,
        visitors: Vec<Row<'a>>,
    },
    Delta {
        now: i64,
        counts: &'a SegmentCounts,
        upsert: Vec<Row<'a>>,
        remove: Vec<&'a str>,
    },
}

impl Frame<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames serialize")
    }
}
