//! [`VisitorView`]: a borrowed, read-only look at one live visitor, for code that must test many
//! things about a visitor on every beacon (the trigger engine) without copying it out.
//!
//! A [`crate::VisitorSnapshot`] costs a dozen `Arc` clones and a few allocations; a view costs
//! nothing until a field is read. It exists only inside [`crate::Presence::with_visitor`] and
//! [`crate::Presence::for_each_visitor`], while the visitor's shard is read-locked. Interned text
//! (pages, languages, referrers, campaigns) is resolved through each interner's read lock, taken
//! at most once per view and only when a field that needs it is read, and kept until the view
//! is dropped. The lock order stays shard → interner, and no interner lock is taken while
//! another one's write lock is awaited, so views cannot deadlock against ingestion.

use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use geoip::{ClientInfo, GeoInfo};

use crate::beacon::Identity;
use crate::campaign::Campaign;
use crate::intern::Reader;
use crate::segment::Segments;
use crate::snapshot::EventRecord;
use crate::visitor::{Page, Symbols, Visitor};

/// One live visitor, borrowed while its shard is read-locked. See the module docs.
///
/// The closure given a view must not call back into the [`crate::Presence`] that lent it:
/// taking the same shard's lock again could deadlock behind a waiting writer.
pub struct VisitorView<'a> {
    visitor: &'a Visitor,
    symbols: &'a Symbols,
    pages: OnceCell<Reader<'a, Page>>,
    texts: OnceCell<Reader<'a, Arc<str>>>,
    campaigns: OnceCell<Reader<'a, Campaign>>,
}

impl std::fmt::Debug for VisitorView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorView")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl<'a> VisitorView<'a> {
    pub(crate) fn new(visitor: &'a Visitor, symbols: &'a Symbols) -> VisitorView<'a> {
        VisitorView {
            visitor,
            symbols,
            pages: OnceCell::new(),
            texts: OnceCell::new(),
            campaigns: OnceCell::new(),
        }
    }

    fn pages(&self) -> &Reader<'a, Page> {
        self.pages.get_or_init(|| self.symbols.pages.reader())
    }

    fn texts(&self) -> &Reader<'a, Arc<str>> {
        self.texts.get_or_init(|| self.symbols.texts.reader())
    }

    /// The widget's visitor id.
    pub fn id(&self) -> &str {
        self.visitor.id.as_str()
    }

    /// The visitor's short number on its site.
    pub fn number(&self) -> u32 {
        self.visitor.number
    }

    /// A 32-bit tag of the current visit: equal for every beacon of one visit while the site
    /// stays in memory. Good for telling "still the same visit" apart within one process; not
    /// stable across restarts.
    pub fn visit_tag(&self) -> u32 {
        self.visitor.visit
    }

    /// Visits including this one (durable across restarts, so `(visitor id, visits)` names a
    /// visit for records that outlive the process).
    pub fn visits(&self) -> u32 {
        self.visitor.visits
    }

    /// Pages viewed this visit, including those no longer kept in the history.
    pub fn pages_this_visit(&self) -> u32 {
        self.visitor.pages
    }

    pub fn visit_started_ms(&self) -> i64 {
        self.visitor.visit_started_ms
    }

    pub fn last_activity_ms(&self) -> i64 {
        self.visitor.last_activity_ms
    }

    pub fn first_seen_ms(&self) -> i64 {
        self.visitor.first_seen_ms
    }

    /// When the visitor closed the page, if the last thing heard was a Leave.
    pub fn left_ms(&self) -> Option<i64> {
        self.visitor.left_ms()
    }

    /// When the current page was opened.
    pub fn page_since_ms(&self) -> i64 {
        self.visitor.visit_started_ms + i64::from(self.visitor.current_page().at)
    }

    pub fn current_url(&self) -> &str {
        &self.pages().get(self.visitor.current_page().page).url
    }

    pub fn current_title(&self) -> &str {
        &self.pages().get(self.visitor.current_page().page).title
    }

    /// URLs of the visit's earlier pages as kept in the history (the tracker keeps the latest
    /// `history_limit` pages), oldest first, without the current page.
    pub fn earlier_urls(&self) -> impl Iterator<Item = &str> + '_ {
        let pages = self.pages();
        let history = &self.visitor.history;
        history[..history.len().saturating_sub(1)]
            .iter()
            .map(move |stamp| &*pages.get(stamp.page).url)
    }

    pub fn landing_url(&self) -> &str {
        &self.pages().get(self.visitor.landing).url
    }

    pub fn referrer(&self) -> Option<&str> {
        self.visitor.referrer.map(|id| &**self.texts().get(id))
    }

    pub fn language(&self) -> Option<&str> {
        self.visitor.language.map(|id| &**self.texts().get(id))
    }

    /// The visit's campaign tags, if its landing page (or a later one) had any.
    pub fn campaign(&self) -> Option<&Campaign> {
        let id = self.visitor.campaign?;
        Some(
            self.campaigns
                .get_or_init(|| self.symbols.campaigns.reader())
                .get(id),
        )
    }

    pub fn geo(&self) -> &GeoInfo {
        &self.visitor.geo
    }

    pub fn client(&self) -> &ClientInfo {
        &self.visitor.client
    }

    pub fn ip(&self) -> IpAddr {
        self.visitor.ip()
    }

    /// What the site told us about the visitor, if anything.
    pub fn identity(&self) -> Option<&Identity> {
        self.visitor.identity()
    }

    /// The visit's latest custom events, oldest first.
    pub fn events(&self) -> &[EventRecord] {
        self.visitor
            .extras
            .as_deref()
            .map_or(&[], |extras| extras.events.as_slice())
    }

    pub fn segments(&self) -> Segments {
        self.visitor.segments
    }
}
