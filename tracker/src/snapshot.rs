//! Owned, plain copies of a visitor's state, as listings, cards and the change feed hand out.

use std::net::IpAddr;
use std::sync::Arc;

use geoip::{ClientInfo, GeoInfo};
use serde::Serialize;

use crate::beacon::{Identity, PropValue};
use crate::campaign::Campaign;
use crate::segment::Segments;

/// One page of a visit's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageVisit {
    pub url: Arc<str>,
    pub title: Arc<str>,
    pub at_ms: i64,
}

/// A custom event as recorded, with the time it arrived.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventRecord {
    pub name: String,
    pub props: Vec<(String, PropValue)>,
    pub at_ms: i64,
}

/// Everything the visitor card shows about one live visitor, at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct VisitorSnapshot {
    pub site: Arc<str>,
    /// The widget's visitor id.
    pub id: Arc<str>,
    /// The visitor's short number on its site ("Visitor #1234").
    pub number: u32,
    pub ip: IpAddr,
    pub geo: Arc<GeoInfo>,
    pub client: Arc<ClientInfo>,
    pub language: Option<Arc<str>>,
    pub screen: Option<(u16, u16)>,
    pub current_url: Arc<str>,
    pub current_title: Arc<str>,
    /// When the current page was opened.
    pub page_since_ms: i64,
    pub visit_started_ms: i64,
    pub last_activity_ms: i64,
    /// When the visitor closed the page, if the last thing heard was a Leave.
    pub left_ms: Option<i64>,
    /// Pages viewed this visit, including those no longer in `history`.
    pub pages_this_visit: u32,
    /// The latest pages of the visit, oldest first; the last one is the current page.
    pub history: Vec<PageVisit>,
    pub landing_url: Arc<str>,
    pub referrer: Option<Arc<str>>,
    pub campaign: Campaign,
    /// Visits including this one.
    pub visits: u32,
    pub first_seen_ms: i64,
    pub identity: Identity,
    /// The latest custom events of the visit, oldest first.
    pub events: Vec<EventRecord>,
    pub segments: Segments,
}
