//! The in-memory record of one live visitor, laid out for memory: about 150 bytes plus the
//! page history (8 bytes a page) and the id.
//!
//! Shared things are referenced, never copied: location and client details are the enricher's
//! `Arc`s (one per network and per User-Agent), and page URLs and titles, the language, the
//! referrer and the campaign are [`SymbolId`]s into the tracker's [`Symbols`]. Times are one
//! absolute visit start plus `u32` millisecond offsets. Rarely used parts (identity, custom
//! events) live behind one optional box.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use geoip::{ClientInfo, GeoInfo};

use crate::beacon::Identity;
use crate::campaign::Campaign;
use crate::intern::{Interner, SymbolId};
use crate::segment::Segments;
use crate::snapshot::EventRecord;

/// A page as interned: URL and title together, since a URL's title rarely varies and a history
/// entry then needs one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub url: Arc<str>,
    pub title: Arc<str>,
}

/// The tracker's interners.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    pub pages: Interner<Page>,
    /// Languages and referrers.
    pub texts: Interner<Arc<str>>,
    pub campaigns: Interner<Campaign>,
}

impl Symbols {
    pub(crate) fn page(&self, url: &str, title: &str) -> SymbolId {
        self.pages.intern(
            self.pages.hash(&(url, title)),
            |page| *page.url == *url && *page.title == *title,
            || Page {
                url: url.into(),
                title: title.into(),
            },
        )
    }

    pub(crate) fn text(&self, text: &str) -> SymbolId {
        self.texts.intern(
            self.texts.hash(text),
            |value| **value == *text,
            || text.into(),
        )
    }

    pub(crate) fn campaign(&self, campaign: Campaign) -> SymbolId {
        let hash = self.campaigns.hash(&campaign);
        self.campaigns
            .intern(hash, |value| *value == campaign, || campaign.clone())
    }

    /// Frees interned values no visitor refers to any more.
    pub(crate) fn purge(&self) -> usize {
        self.pages.purge() + self.texts.purge() + self.campaigns.purge()
    }
}

/// One page of the history: the page and when it was opened, in ms after the visit started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageStamp {
    pub page: SymbolId,
    pub at: u32,
}

/// Identity and events: most visitors have neither, so they cost one pointer until they do.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    pub identity: Identity,
    pub events: Vec<EventRecord>,
}

/// Length of an id stored inline. An enum with 24 values leaves the other 232 values of its
/// byte free, and the compiler uses them to tell the `Heap` variant apart: `VisitorId` stays
/// 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum InlineLen {
    L0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
    L16,
    L17,
    L18,
    L19,
    L20,
    L21,
    L22,
    L23,
}

const INLINE_LENS: [InlineLen; 24] = [
    InlineLen::L0,
    InlineLen::L1,
    InlineLen::L2,
    InlineLen::L3,
    InlineLen::L4,
    InlineLen::L5,
    InlineLen::L6,
    InlineLen::L7,
    InlineLen::L8,
    InlineLen::L9,
    InlineLen::L10,
    InlineLen::L11,
    InlineLen::L12,
    InlineLen::L13,
    InlineLen::L14,
    InlineLen::L15,
    InlineLen::L16,
    InlineLen::L17,
    InlineLen::L18,
    InlineLen::L19,
    InlineLen::L20,
    InlineLen::L21,
    InlineLen::L22,
    InlineLen::L23,
];

/// The widget's visitor id. The widget's ids are 22 characters (16 random bytes in base64url),
/// so they are kept inside the record, saving an allocation (32 bytes with its header) per
/// visitor; longer ids, up to [`crate::text::MAX_ID_LEN`], go to the heap.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum VisitorId {
    Inline { len: InlineLen, bytes: [u8; 23] },
    Heap(Box<str>),
}

impl VisitorId {
    pub(crate) fn new(id: &str) -> VisitorId {
        match INLINE_LENS.get(id.len()) {
            Some(&len) => {
                let mut bytes = [0; 23];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                VisitorId::Inline { len, bytes }
            }
            None => VisitorId::Heap(id.into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            VisitorId::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize])
                .expect("copied from a str at a char boundary"),
            VisitorId::Heap(id) => id,
        }
    }
}

impl PartialEq<str> for VisitorId {
    fn eq(&self, other: &str) -> bool {
        self.as_str().as_bytes() == other.as_bytes()
    }
}

impl std::fmt::Debug for VisitorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `left_after_ms` of a visitor that has not left.
pub(crate) const NOT_LEFT: u32 = u32::MAX;
/// `due_second` of a visitor with no entry in its shard's deadline queue.
pub(crate) const NOT_DUE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct Visitor {
    pub id: VisitorId,
    /// IPv4 addresses are stored mapped into IPv6, which is 16 bytes where `IpAddr` takes 17.
    pub ip: Ipv6Addr,
    pub geo: Arc<GeoInfo>,
    pub client: Arc<ClientInfo>,
    pub extras: Option<Box<Extras>>,
    /// The latest pages, oldest first; never empty. Exact capacity: grown by one per page view
    /// until the history limit, then shifted in place.
    pub history: Box<[PageStamp]>,
    /// Keyed hash of the widget's visit id, cut to 32 bits. Equal hashes are taken as the same
    /// visit: a new visit is mistaken for the current one with odds of 1 in 2^32, and then only
    /// continues the visit in memory.
    pub visit: u32,
    pub visit_started_ms: i64,
    pub last_activity_ms: i64,
    pub first_seen_ms: i64,
    pub number: u32,
    pub visits: u32,
    pub pages: u32,
    pub landing: SymbolId,
    pub language: Option<SymbolId>,
    pub referrer: Option<SymbolId>,
    pub campaign: Option<SymbolId>,
    /// The second (since the epoch) of this visitor's live entry in the shard's deadline queue.
    pub due_second: u32,
    /// When the visitor left, in ms after `last_activity_ms`; [`NOT_LEFT`] if it has not.
    pub left_after_ms: u32,
    /// Width and height; (0, 0) when unknown.
    pub screen: (u16, u16),
    /// The segments this visitor is counted in.
    pub segments: Segments,
    /// Queued in the site's change feed and not drained yet.
    pub dirty: bool,
}

impl Visitor {
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip.to_canonical()
    }

    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.extras.as_ref().map(|extras| &extras.identity)
    }

    pub(crate) fn left_ms(&self) -> Option<i64> {
        (self.left_after_ms != NOT_LEFT)
            .then(|| self.last_activity_ms + i64::from(self.left_after_ms))
    }

    pub(crate) fn current_page(&self) -> PageStamp {
        *self.history.last().expect("a visit has at least one page")
    }

    /// Gives back every interned reference of the current visit: before the visit restarts or
    /// the visitor is dropped.
    pub(crate) fn release_visit(&self, symbols: &Symbols) {
        symbols.pages.release(self.landing);
        for stamp in &self.history {
            symbols.pages.release(stamp.page);
        }
        if let Some(referrer) = self.referrer {
            symbols.texts.release(referrer);
        }
        if let Some(campaign) = self.campaign {
            symbols.campaigns.release(campaign);
        }
    }

    /// Gives back every interned reference, before the visitor is dropped.
    pub(crate) fn release_all(&self, symbols: &Symbols) {
        self.release_visit(symbols);
        if let Some(language) = self.language {
            symbols.texts.release(language);
        }
    }
}

/// Milliseconds from `start_ms` to `at_ms` as a stored offset. Clamped: a clock that went
/// backwards gives 0, a visit older than 49 days gives the largest offset.
pub(crate) fn offset(start_ms: i64, at_ms: i64) -> u32 {
    u32::try_from((at_ms - start_ms).max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_stay_small() {
        // The memory goal (≤ 400 bytes per visitor with 10-page histories) depends on these.
        assert!(
            std::mem::size_of::<Visitor>() <= 152,
            "{}",
            std::mem::size_of::<Visitor>()
        );
        assert_eq!(std::mem::size_of::<PageStamp>(), 8);
    }

    #[test]
    fn visitor_ids_are_inline_up_to_23_bytes() {
        assert_eq!(std::mem::size_of::<VisitorId>(), 24);
        for id in [
            "",
            "a",
            "AbCdEfGhIjKlMnOpQrStUv",
            "é".repeat(11).as_str(),
            &"x".repeat(23),
            &"y".repeat(24),
            &"z".repeat(128),
        ] {
            let stored = VisitorId::new(id);
            assert_eq!(stored.as_str(), id);
            assert!(stored == *id);
            assert_eq!(
                matches!(stored, VisitorId::Inline { .. }),
                id.len() <= 23,
                "{id}"
            );
        }
        assert!(VisitorId::new("abc") != *"abd");
    }

    #[test]
    fn offsets_clamp() {
        assert_eq!(offset(1_000, 1_500), 500);
        assert_eq!(offset(1_000, 900), 0);
        assert_eq!(offset(0, i64::from(u32::MAX) + 10), u32::MAX);
    }
}
