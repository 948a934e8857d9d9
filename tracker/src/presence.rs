//! [`Presence`]: every site's live visitors, and everything done with them.
//!
//! # Layout
//!
//! Sites are kept in a map of [`Site`]s; each site splits its visitors over shards, each a
//! `parking_lot` lock around a hashbrown table of boxed [`Visitor`] records (one pointer per
//! bucket, the id inside the record) and that shard's deadline queue. A beacon locks exactly one
//! shard. Everything a beacon changes, including the site's segment counters, is changed while
//! that lock is held, which is what keeps the counters exact under concurrent ingestion.
//!
//! # Lock order
//!
//! shard → feed mutex → interner locks. Nothing takes a shard lock while holding the feed or an
//! interner lock, and only the sweep holds more than one shard (all of a site's, in order). No
//! code holds a site-map guard while calling back into the map.
//!
//! # Time
//!
//! Deadlines only come from activity: a visitor is due to leave Active at `last_activity +
//! active_window` and to leave memory at `last_activity + retention`. Activity only moves these
//! later, except that a visitor coming back to Active is due again at `now + active_window`,
//! and so is a new visitor. Each shard queues every visitor once, under the second its earliest
//! deadline falls in; when the sweep reaches an entry whose visitor has moved on, it queues the
//! visitor again under its real deadline. So a sweep only touches visitors that are due (or were
//! due and had activity since), never the whole table.

use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use dashmap::DashMap;
use geoip::{ClientInfo, Enricher, GeoInfo};
use parking_lot::Mutex;

use crate::beacon::{Beacon, BeaconKind, CustomEvent, Identity, KnownProfile, Observation};
use crate::campaign::{Campaign, may_have_utm};
use crate::clock::Clock;
use crate::config::PresenceConfig;
use crate::intern::{Reader, SymbolId};
use crate::list::{Cursor, ListPage, ListQuery, SortKey};
use crate::segment::{Segment, SegmentCounts, Segments};
use crate::site::{Shard, Site};
use crate::snapshot::{EventRecord, PageVisit, VisitorSnapshot};
use crate::text::{
    MAX_ID_LEN, MAX_LANGUAGE_LEN, MAX_TITLE_LEN, MAX_URL_LEN, contains_ignore_case,
    lowercase_needle, truncate,
};
use crate::view::VisitorView;
use crate::visitor::{
    Extras, NOT_DUE, NOT_LEFT, Page, PageStamp, Symbols, Visitor, VisitorId, offset,
};

/// What changed on a site's panel since the last drain.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Visitors whose panel-visible state changed, each once, as they are now.
    pub upserted: Vec<VisitorSnapshot>,
    /// Ids of visitors that left memory (and did not come back before the drain).
    pub removed: Vec<Arc<str>>,
    /// The site's counts at the drain.
    pub counts: SegmentCounts,
}

/// What a sweep did, and when the next one is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Visitors that left the Active segment.
    pub demoted: usize,
    /// Visitors that left memory.
    pub removed: usize,
    /// When to sweep next (ms since the epoch). Always `Some` today: at the latest one active
    /// window from now, because a visitor arriving after this sweep is due no earlier than one
    /// active window after it arrives.
    pub next_due_ms: Option<i64>,
}

/// How a beacon relates to the visit in memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// The beacon continues the visit in memory.
    Continuing,
    /// The visit was (re)started from this beacon, whose page is already recorded; `persist`
    /// says whether the durable profile changed.
    Started { persist: bool },
}

/// The parts of an ingest every step needs.
struct Ingest<'a> {
    site: &'a Site,
    beacon: &'a Beacon<'a>,
    hash: u64,
    now: i64,
}

/// The interned parts of a visit's first page.
struct Opening {
    page: SymbolId,
    referrer: Option<SymbolId>,
    campaign: Option<SymbolId>,
}

/// The live visitors of every site. Shared through an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Presence {
    config: PresenceConfig,
    enricher: Arc<Enricher>,
    clock: Arc<dyn Clock>,
    sites: DashMap<Arc<str>, Arc<Site>>,
    symbols: Symbols,
    /// Sweeps run one at a time: only they lock several shards of a site at once.
    sweeping: Mutex<()>,
}

impl Presence {
    /// # Panics
    ///
    /// If `config` does not pass [`PresenceConfig::validate`]; validate settings at start-up.
    pub fn new(config: PresenceConfig, enricher: Arc<Enricher>, clock: Arc<dyn Clock>) -> Presence {
        if let Err(error) = config.validate() {
            panic!("invalid presence configuration: {error}");
        }
        Presence {
            config,
            enricher,
            clock,
            sites: DashMap::new(),
            symbols: Symbols::default(),
            sweeping: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Hot path: applies a beacon to a visitor already in memory with the same visit id, and
    /// starts a new visit of a visitor in memory from its record. A visitor not in memory
    /// answers [`Observation::NeedsProfile`] (the caller then loads the profile
    /// and calls [`Presence::start_visit`]), [`Observation::Crawler`] or
    /// [`Observation::Ignored`] (a Leave for a visit not in memory, or ids longer than
    /// [`MAX_ID_LEN`] or empty).
    pub fn observe(&self, beacon: &Beacon<'_>) -> Observation {
        if !ids_acceptable(beacon) {
            return Observation::Ignored;
        }
        if let Some(site) = self.site(beacon.site) {
            let hash = site.hash_id(beacon.visitor_id);
            let visit = site.hash_visit(beacon.visit_id);
            let mut guard = site.shard(hash).write();
            let Shard { visitors, due } = &mut *guard;
            if let Some(visitor) =
                visitors.find_mut(hash, |visitor| visitor.id == *beacon.visitor_id)
            {
                if visitor.visit == visit {
                    let ingest = Ingest {
                        site: &site,
                        beacon,
                        hash,
                        now: self.now_ms(),
                    };
                    let persist = self.apply(&ingest, due, visitor, Visit::Continuing);
                    return Observation::Recorded {
                        persist,
                        visit_started: false,
                    };
                }
                // A new visit of a visitor in memory. The record knows all the store does (the
                // profile was loaded when the visitor entered memory, and every change since
                // went through this tracker), so the visit starts from it without a store
                // read; `restart_visit` keeps the record's identity.
                let profile = KnownProfile {
                    number: visitor.number,
                    visits: visitor.visits,
                    first_seen_ms: visitor.first_seen_ms,
                    last_visit_id: None,
                    identity: Identity::default(),
                };
                drop(guard);
                return self.start_visit(beacon, &profile);
            }
        }
        self.not_in_memory(beacon)
    }

    /// Starts a visit for a visitor [`Presence::observe`] answered `NeedsProfile` for, from its
    /// durable profile, then applies the beacon.
    ///
    /// - A visitor not in memory whose `profile.last_visit_id` is this beacon's visit id resumes
    ///   that visit (after a restart): the visit count is not increased; the visit's start and
    ///   landing page are this beacon's, as the earlier ones are not known.
    /// - Otherwise a new visit is counted: `visits` is one more than the profile's (or than the
    ///   visitor's in memory, if higher), history and events start empty, AutoMessaged is reset.
    ///   On chat and Blocked are kept: they concern the person, not the visit.
    /// - If a concurrent beacon already started this visit, the beacon is applied to it like
    ///   [`Presence::observe`] would.
    ///
    /// The returned `persist` profile is what the durable store should now hold.
    pub fn start_visit(&self, beacon: &Beacon<'_>, profile: &KnownProfile) -> Observation {
        if !ids_acceptable(beacon) || beacon.kind == BeaconKind::Leave {
            return Observation::Ignored;
        }
        let client = self.enricher.client(beacon.user_agent);
        if client.is_crawler() {
            return Observation::Crawler;
        }
        let geo = self.enricher.geo(beacon.ip);
        loop {
            let now = self.now_ms();
            let site = self.site_or_create(beacon.site);
            let hash = site.hash_id(beacon.visitor_id);
            let visit = site.hash_visit(beacon.visit_id);
            let mut guard = site.shard(hash).write();
            if site.retired.load(AtomicOrdering::Acquire) {
                // The sweep dropped this empty site after we looked it up: look again.
                drop(guard);
                self.sites
                    .remove_if(beacon.site, |_, current| Arc::ptr_eq(current, &site));
                continue;
            }
            let ingest = Ingest {
                site: &site,
                beacon,
                hash,
                now,
            };
            let Shard { visitors, due } = &mut *guard;
            let (persist, visit_started) = match visitors
                .find_mut(hash, |visitor| visitor.id == *beacon.visitor_id)
            {
                Some(visitor) if visitor.visit == visit => {
                    (self.apply(&ingest, due, visitor, Visit::Continuing), false)
                }
                Some(visitor) => {
                    self.restart_visit(&ingest, visitor, visit, profile, geo, client);
                    let visit = Visit::Started { persist: true };
                    (self.apply(&ingest, due, visitor, visit), true)
                }
                None => {
                    let (visitor, persist) = self.new_visitor(&ingest, visit, profile, geo, client);
                    let visitor = visitors
                        .insert_unique(hash, Box::new(visitor), |visitor| {
                            site.hash_id(visitor.id.as_str())
                        })
                        .into_mut();
                    let visit = Visit::Started { persist };
                    (self.apply(&ingest, due, visitor, visit), true)
                }
            };
            return Observation::Recorded {
                persist,
                visit_started,
            };
        }
    }

    /// Sets or clears OnChat; false if no such visitor is live.
    pub fn set_on_chat(&self, site: &str, visitor_id: &str, on: bool) -> bool {
        self.set_flag(site, visitor_id, Segment::OnChat, on)
    }

    /// Sets or clears AutoMessaged (a new visit clears it); false if no such visitor is live.
    pub fn set_auto_messaged(&self, site: &str, visitor_id: &str, on: bool) -> bool {
        self.set_flag(site, visitor_id, Segment::AutoMessaged, on)
    }

    /// Sets or clears Blocked; false if no such visitor is live.
    pub fn set_blocked(&self, site: &str, visitor_id: &str, on: bool) -> bool {
        self.set_flag(site, visitor_id, Segment::Blocked, on)
    }

    /// Changes a live visitor's identity in place (an agent edited the contact on the visitor
    /// card): `edit` may set or clear any field. The result is bounded like a beacon's
    /// identity, the Customers segment follows it and the panel gets a delta. Returns the new
    /// identity, or `None` if no such visitor is live.
    ///
    /// `edit` runs with the visitor's shard locked: it must not call back into the table.
    pub fn edit_identity(
        &self,
        site: &str,
        visitor_id: &str,
        edit: impl FnOnce(&mut Identity),
    ) -> Option<Identity> {
        let site = self.site(site)?;
        let hash = site.hash_id(visitor_id);
        let mut shard = site.shard(hash).write();
        let visitor = shard
            .visitors
            .find_mut(hash, |visitor| visitor.id == *visitor_id)?;
        let mut identity = visitor.identity().cloned().unwrap_or_default();
        edit(&mut identity);
        let identity = identity.bounded();
        if visitor.identity().cloned().unwrap_or_default() == identity {
            return Some(identity);
        }
        match visitor.extras.as_mut() {
            Some(extras) => extras.identity = identity.clone(),
            None => {
                visitor.extras = Some(Box::new(Extras {
                    identity: identity.clone(),
                    events: Vec::new(),
                }))
            }
        }
        let before = visitor.segments;
        visitor.segments = before.with(Segment::Customers, identity.is_customer());
        if before != visitor.segments {
            site.counters.transition(before, visitor.segments);
        }
        site.mark_changed(visitor, self.now_ms());
        Some(identity)
    }

    /// The site's segment counts: a few atomic loads. All zero for a site with no state.
    pub fn counts(&self, site: &str) -> SegmentCounts {
        self.site(site)
            .map(|site| site.counters.read())
            .unwrap_or_default()
    }

    pub fn get(&self, site: &str, visitor_id: &str) -> Option<VisitorSnapshot> {
        let site = self.site(site)?;
        self.get_in(&site, visitor_id)
    }

    /// Runs `f` on a borrowed view of one live visitor, under its shard's read lock; `None` if
    /// the visitor is not in memory. `f` must be short and must not call back into this
    /// `Presence` (see [`VisitorView`]).
    pub fn with_visitor<R>(
        &self,
        site: &str,
        visitor_id: &str,
        f: impl FnOnce(&VisitorView<'_>) -> R,
    ) -> Option<R> {
        let site = self.site(site)?;
        let hash = site.hash_id(visitor_id);
        let shard = site.shard(hash).read();
        let visitor = shard
            .visitors
            .find(hash, |visitor| visitor.id == *visitor_id)?;
        let view = VisitorView::new(visitor, &self.symbols);
        Some(f(&view))
    }

    /// Runs `f` on a view of every live visitor of a site, one shard at a time (each under its
    /// read lock), in no particular order. Beacons for other shards go on meanwhile; a visitor
    /// that moves on while its shard is not locked is seen as it is when its shard is visited.
    /// `f` must not call back into this `Presence`.
    pub fn for_each_visitor(&self, site: &str, mut f: impl FnMut(&VisitorView<'_>)) {
        let Some(site) = self.site(site) else {
            return;
        };
        for shard in site.shards() {
            let shard = shard.read();
            for visitor in shard.visitors.iter() {
                f(&VisitorView::new(visitor, &self.symbols));
            }
        }
    }

    /// A page of a site's visitors in a segment, matching the search, newest activity first.
    ///
    /// The whole site is scanned (keeping only the best `limit` keys), then the page's visitors
    /// are copied out; a visitor that left between the two is skipped.
    pub fn list(&self, site: &str, query: &ListQuery) -> ListPage {
        let empty = ListPage {
            visitors: Vec::new(),
            next_cursor: None,
            total_matching: 0,
        };
        let Some(site) = self.site(site) else {
            return empty;
        };
        let limit = query.effective_limit();
        let needle = query
            .search
            .as_deref()
            .map(lowercase_needle)
            .filter(|needle| !needle.is_empty());
        let mut total_matching = 0;
        let mut after_cursor = 0;
        // A max-heap in listing order: its top is the visitor listed last among those kept.
        let mut best: BinaryHeap<SortKey> = BinaryHeap::with_capacity(limit + 1);
        for shard in site.shards() {
            let shard = shard.read();
            let pages = needle.as_ref().map(|_| self.symbols.pages.reader());
            for visitor in shard.visitors.iter() {
                if !visitor.segments.contains(query.segment) {
                    continue;
                }
                if let (Some(needle), Some(pages)) = (&needle, &pages)
                    && !matches_search(visitor, needle, pages)
                {
                    continue;
                }
                total_matching += 1;
                let (last_activity_ms, number, id) = (
                    visitor.last_activity_ms,
                    visitor.number,
                    visitor.id.as_str(),
                );
                if let Some(Cursor(cursor)) = &query.cursor
                    && SortKey::order_of(last_activity_ms, number, id, cursor)
                        != std::cmp::Ordering::Greater
                {
                    continue;
                }
                after_cursor += 1;
                if best.len() == limit
                    && best.peek().is_some_and(|worst| {
                        SortKey::order_of(last_activity_ms, number, id, worst).is_ge()
                    })
                {
                    continue;
                }
                best.push(SortKey {
                    last_activity_ms,
                    number,
                    id: id.into(),
                });
                if best.len() > limit {
                    best.pop();
                }
            }
        }
        let keys = best.into_sorted_vec();
        let next_cursor = (after_cursor > keys.len())
            .then(|| keys.last().cloned().map(Cursor))
            .flatten();
        ListPage {
            visitors: keys
                .iter()
                .filter_map(|key| self.get_in(&site, &key.id))
                .collect(),
            next_cursor,
            total_matching,
        }
    }

    /// Every live visitor of a site, newest activity first. Also renews the site's change feed
    /// (see [`Presence::drain_changes`]): a panel starts from a snapshot, then follows changes.
    pub fn snapshot(&self, site: &str) -> Vec<VisitorSnapshot> {
        let Some(site) = self.site(site) else {
            return Vec::new();
        };
        self.renew_feed(&site);
        let mut visitors = Vec::with_capacity(site.counters.read().all as usize);
        for shard in site.shards() {
            let shard = shard.read();
            visitors.extend(
                shard
                    .visitors
                    .iter()
                    .map(|visitor| self.snapshot_of(&site, visitor)),
            );
        }
        visitors.sort_by(|a, b| {
            b.last_activity_ms
                .cmp(&a.last_activity_ms)
                .then(b.number.cmp(&a.number))
                .then_with(|| b.id.cmp(&a.id))
        });
        visitors
    }

    /// The visitors whose panel-visible state changed since the last drain, and those that
    /// left memory. Coalesced: a visitor changed ten times is one upsert with its state now.
    ///
    /// What counts as a change: page views, identify, events, flags, a Leave, a new visit, and
    /// any segment change (demotion by the sweep, back to Active). A heartbeat that only moves
    /// `last_activity_ms` is not one: panels compute elapsed times themselves. A removal cancels
    /// a pending upsert; a visitor removed and back before the drain is only upserted.
    ///
    /// Intended for one consumer per site. A feed whose changes sit undrained for a retention
    /// period stops recording (and drops them), so a site nobody follows cannot pile up
    /// removals; the next drain or snapshot starts it again, so a consumer coming back after
    /// such a gap should start from a [`Presence::snapshot`]. A feed that is drained regularly,
    /// or is merely quiet, never stops.
    pub fn drain_changes(&self, site: &str) -> Changes {
        let Some(site) = self.site(site) else {
            return Changes::default();
        };
        let (upserts, mut removed) = {
            let mut feed = site.feed.lock();
            feed.recording = true;
            site.feed_pending.store(false, AtomicOrdering::Release);
            (
                std::mem::take(&mut feed.upserts),
                std::mem::take(&mut feed.removed),
            )
        };
        let mut upserted = Vec::with_capacity(upserts.len());
        for hash in upserts {
            let mut shard = site.shard(hash).write();
            // The dirty visitor with this hash (two dirty visitors sharing a hash have an entry
            // each, and each drain step takes one of them).
            if let Some(visitor) = shard.visitors.find_mut(hash, |visitor| {
                visitor.dirty && site.hash_id(visitor.id.as_str()) == hash
            }) {
                visitor.dirty = false;
                upserted.push(self.snapshot_of(&site, visitor));
            }
        }
        if !removed.is_empty() && !upserted.is_empty() {
            let back: HashSet<&str> = upserted.iter().map(|visitor| &*visitor.id).collect();
            removed.retain(|id| !back.contains(&**id));
        }
        Changes {
            upserted,
            removed,
            counts: site.counters.read(),
        }
    }

    /// Like [`Presence::drain_changes`] for a site nobody watches: clears the pending changes
    /// without building snapshots and returns only the ids of visitors who left memory.
    pub fn discard_changes(&self, site: &str) -> Vec<Arc<str>> {
        let Some(site) = self.site(site) else {
            return Vec::new();
        };
        let (upserts, removed) = {
            let mut feed = site.feed.lock();
            feed.recording = true;
            site.feed_pending.store(false, AtomicOrdering::Release);
            (
                std::mem::take(&mut feed.upserts),
                std::mem::take(&mut feed.removed),
            )
        };
        for hash in upserts {
            let mut shard = site.shard(hash).write();
            if let Some(visitor) = shard.visitors.find_mut(hash, |visitor| {
                visitor.dirty && site.hash_id(visitor.id.as_str()) == hash
            }) {
                visitor.dirty = false;
            }
        }
        removed
    }

    /// Whether [`Presence::drain_changes`] would return something: one atomic load.
    pub fn has_changes(&self, site: &str) -> bool {
        self.site(site)
            .is_some_and(|site| site.feed_pending.load(AtomicOrdering::Acquire))
    }

    /// Sites with live visitors or pending changes.
    pub fn sites(&self) -> Vec<Arc<str>> {
        self.sites
            .iter()
            .map(|entry| Arc::clone(entry.key()))
            .collect()
    }

    /// Demotes visitors whose last activity is an active window old, removes those idle for the
    /// retention period, drops interned text nobody uses and sites left empty.
    ///
    /// `next_due_ms` is when to call again: the end of the second in which the earliest queued
    /// deadline falls (so counts lag deadlines by under a second, and a busy tracker is swept at
    /// most about once a second), and never later than one active window from now. No beacon
    /// can create an earlier deadline: activity only moves a visitor's deadlines later, and a
    /// visitor that is new or back to Active is due one active window after its beacon, which
    /// is no earlier than `now + active_window`. Sleeping longer than `next_due_ms` is safe;
    /// demotions and removals then just happen later.
    pub fn sweep(&self) -> SweepReport {
        let _one_at_a_time = self.sweeping.lock();
        let now = self.now_ms();
        let now_second = due_second(now);
        let mut report = SweepReport::default();
        let mut next_due = now.saturating_add(self.config.active_window_ms);
        for site in self.site_list() {
            for shard in site.shards() {
                let mut shard = shard.write();
                let (demoted, removed) = self.sweep_shard(&site, &mut shard, now, now_second);
                report.demoted += demoted;
                report.removed += removed;
                if let Some((&second, _)) = shard.due.first_key_value() {
                    next_due = next_due.min((i64::from(second) + 1) * 1000);
                }
            }
            self.lapse_unwatched_feed(&site, now);
            self.retire_if_empty(&site);
        }
        self.symbols.purge();
        report.next_due_ms = Some(next_due);
        report
    }

    /// Live visitors on every site.
    pub fn len(&self) -> usize {
        self.site_list()
            .iter()
            .map(|site| site.counters.read().all as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn site(&self, key: &str) -> Option<Arc<Site>> {
        self.sites.get(key).map(|site| Arc::clone(&site))
    }

    fn site_or_create(&self, key: &str) -> Arc<Site> {
        if let Some(site) = self.site(key) {
            return site;
        }
        let key: Arc<str> = key.into();
        let site = self
            .sites
            .entry(Arc::clone(&key))
            .or_insert_with(|| Arc::new(Site::new(key)));
        Arc::clone(&site)
    }

    fn site_list(&self) -> Vec<Arc<Site>> {
        self.sites
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    fn not_in_memory(&self, beacon: &Beacon<'_>) -> Observation {
        if beacon.kind == BeaconKind::Leave {
            Observation::Ignored
        } else if self.enricher.client(beacon.user_agent).is_crawler() {
            Observation::Crawler
        } else {
            Observation::NeedsProfile
        }
    }

    /// Applies a beacon to its visitor (shard locked): activity, the beacon's own effect,
    /// segments and counters, the change feed and the deadline queue.
    fn apply(
        &self,
        ingest: &Ingest<'_>,
        due: &mut BTreeMap<u32, Vec<u64>>,
        visitor: &mut Visitor,
        visit: Visit,
    ) -> Option<KnownProfile> {
        let now = ingest.now;
        let before = visitor.segments;
        let mut changed = visit != Visit::Continuing;
        let mut persist = visit == Visit::Started { persist: true };
        match &ingest.beacon.kind {
            BeaconKind::Leave => {
                // A leave signal does not end "active": pagehide also fires on every ordinary
                // navigation, and the next page's beacon follows it. The visitor stays active
                // until the active window passes without activity, as the rule says; the
                // panel shows that the tab was closed.
                visitor.left_after_ms = offset(visitor.last_activity_ms, now).min(NOT_LEFT - 1);
                changed = true;
            }
            kind => {
                changed |= touch(visitor, now);
                match kind {
                    BeaconKind::PageView if visit == Visit::Continuing => {
                        self.record_page(visitor, ingest.beacon, now);
                        changed = true;
                    }
                    BeaconKind::Identify(identity) => {
                        let identity_changed = identify(visitor, identity.clone());
                        changed |= identity_changed;
                        persist |= identity_changed;
                    }
                    BeaconKind::Event(event) => {
                        self.record_event(visitor, event.clone(), now);
                        changed = true;
                    }
                    _ => {}
                }
            }
        }
        let customer = visitor.identity().is_some_and(Identity::is_customer);
        visitor.segments = visitor
            .segments
            .with(Segment::All, true)
            .with(Segment::Customers, customer);
        if visitor.segments != before {
            ingest.site.counters.transition(before, visitor.segments);
            changed = true;
        }
        if changed {
            ingest.site.mark_changed(visitor, ingest.now);
        }
        self.schedule(due, ingest.hash, visitor);
        persist.then(|| profile_of(visitor, ingest.beacon.visit_id))
    }

    /// Queues the visitor under its next deadline if that is earlier than its queued one.
    fn schedule(&self, due: &mut BTreeMap<u32, Vec<u64>>, hash: u64, visitor: &mut Visitor) {
        let second = due_second(self.next_deadline(visitor));
        if second < visitor.due_second {
            visitor.due_second = second;
            due.entry(second).or_default().push(hash);
        }
    }

    fn next_deadline(&self, visitor: &Visitor) -> i64 {
        let after = if visitor.segments.contains(Segment::Active) {
            self.config.active_window_ms
        } else {
            self.config.retention_ms
        };
        visitor.last_activity_ms.saturating_add(after)
    }

    /// A page view within the visit: history, page count, a late campaign, client details.
    fn record_page(&self, visitor: &mut Visitor, beacon: &Beacon<'_>, now: i64) {
        let url = truncate(beacon.url, MAX_URL_LEN);
        let page = self
            .symbols
            .page(url, truncate(beacon.title, MAX_TITLE_LEN));
        let stamp = PageStamp {
            page,
            at: offset(visitor.visit_started_ms, now),
        };
        if visitor.history.len() < self.config.history_limit {
            let mut history = Vec::with_capacity(visitor.history.len() + 1);
            history.extend_from_slice(&visitor.history);
            history.push(stamp);
            visitor.history = history.into_boxed_slice();
        } else {
            self.symbols.pages.release(visitor.history[0].page);
            visitor.history.copy_within(1.., 0);
            let last = visitor.history.len() - 1;
            visitor.history[last] = stamp;
        }
        visitor.pages = visitor.pages.saturating_add(1);
        if visitor.campaign.is_none() && may_have_utm(url) {
            let campaign = Campaign::from_url(url);
            if campaign.has_utm() {
                visitor.campaign = Some(self.symbols.campaign(campaign));
            }
        }
        self.refresh_client_details(visitor, beacon);
    }

    /// Language, screen and address as the latest page reports them.
    fn refresh_client_details(&self, visitor: &mut Visitor, beacon: &Beacon<'_>) {
        if let Some(language) = clean_language(beacon.language) {
            let same = visitor
                .language
                .is_some_and(|current| **self.symbols.texts.reader().get(current) == *language);
            if !same {
                if let Some(old) = visitor.language {
                    self.symbols.texts.release(old);
                }
                visitor.language = Some(self.symbols.text(language));
            }
        }
        if let Some(screen) = beacon.screen {
            visitor.screen = screen;
        }
        let ip = stored_ip(beacon.ip);
        if ip != visitor.ip {
            visitor.ip = ip;
            visitor.geo = self.enricher.geo(beacon.ip);
        }
    }

    fn record_event(&self, visitor: &mut Visitor, event: CustomEvent, now: i64) {
        let event = event.bounded();
        let events = &mut visitor.extras.get_or_insert_with(Default::default).events;
        if events.len() >= self.config.events_limit {
            let excess = events.len() + 1 - self.config.events_limit;
            events.drain(..excess);
        }
        events.push(EventRecord {
            name: event.name,
            props: event.props,
            at_ms: now,
        });
    }

    /// Interns what the first page of a visit contributes.
    fn open_visit(&self, beacon: &Beacon<'_>) -> Opening {
        let url = truncate(beacon.url, MAX_URL_LEN);
        let page = self
            .symbols
            .page(url, truncate(beacon.title, MAX_TITLE_LEN));
        // One reference for the landing page, one for the history entry.
        self.symbols.pages.retain(page);
        let referrer = beacon
            .referrer
            .map(|referrer| truncate(referrer.trim(), MAX_URL_LEN))
            .filter(|referrer| !referrer.is_empty())
            .map(|referrer| self.symbols.text(referrer));
        let campaign = Some(Campaign::from_url(url))
            .filter(|campaign| !campaign.is_empty())
            .map(|campaign| self.symbols.campaign(campaign));
        Opening {
            page,
            referrer,
            campaign,
        }
    }

    /// A visitor not in memory, from its profile; returns whether the profile changed.
    fn new_visitor(
        &self,
        ingest: &Ingest<'_>,
        visit: u32,
        profile: &KnownProfile,
        geo: Arc<GeoInfo>,
        client: Arc<ClientInfo>,
    ) -> (Visitor, bool) {
        let beacon = ingest.beacon;
        let now = ingest.now;
        let resume = profile.last_visit_id.as_deref() == Some(beacon.visit_id);
        let opening = self.open_visit(beacon);
        let identity = profile.identity.clone().bounded();
        let first_seen_known = profile.first_seen_ms > 0;
        let visitor = Visitor {
            id: VisitorId::new(beacon.visitor_id),
            ip: stored_ip(beacon.ip),
            geo,
            client,
            extras: (!identity.is_empty()).then(|| {
                Box::new(Extras {
                    identity,
                    events: Vec::new(),
                })
            }),
            history: Box::new([PageStamp {
                page: opening.page,
                at: 0,
            }]),
            visit,
            visit_started_ms: now,
            last_activity_ms: now,
            first_seen_ms: if first_seen_known {
                profile.first_seen_ms.min(now)
            } else {
                now
            },
            number: profile.number,
            visits: if resume {
                profile.visits.max(1)
            } else {
                profile.visits.saturating_add(1)
            },
            pages: 1,
            landing: opening.page,
            language: clean_language(beacon.language).map(|language| self.symbols.text(language)),
            referrer: opening.referrer,
            campaign: opening.campaign,
            due_second: NOT_DUE,
            left_after_ms: NOT_LEFT,
            screen: beacon.screen.unwrap_or((0, 0)),
            segments: Segments::default(),
            dirty: false,
        };
        (visitor, !resume || !first_seen_known)
    }

    /// A new visit of a visitor in memory: the visit's parts start over from the beacon, the
    /// person's parts (number, identity, flags other than AutoMessaged) carry on.
    fn restart_visit(
        &self,
        ingest: &Ingest<'_>,
        visitor: &mut Visitor,
        visit: u32,
        profile: &KnownProfile,
        geo: Arc<GeoInfo>,
        client: Arc<ClientInfo>,
    ) {
        let beacon = ingest.beacon;
        let now = ingest.now;
        let resume = profile.last_visit_id.as_deref() == Some(beacon.visit_id);
        visitor.release_visit(&self.symbols);
        let opening = self.open_visit(beacon);
        visitor.history = Box::new([PageStamp {
            page: opening.page,
            at: 0,
        }]);
        visitor.landing = opening.page;
        visitor.referrer = opening.referrer;
        visitor.campaign = opening.campaign;
        visitor.visit = visit;
        visitor.visit_started_ms = now;
        visitor.last_activity_ms = visitor.last_activity_ms.max(now);
        visitor.pages = 1;
        visitor.left_after_ms = NOT_LEFT;
        let visits = visitor.visits.max(profile.visits);
        visitor.visits = if resume {
            visits.max(1)
        } else {
            visits.saturating_add(1)
        };
        if profile.first_seen_ms > 0 {
            visitor.first_seen_ms = visitor.first_seen_ms.min(profile.first_seen_ms);
        }
        // What this process learned (and may not have written behind yet) wins over the store.
        let mut identity = profile.identity.clone().bounded();
        if let Some(extras) = visitor.extras.take() {
            identity.merge(extras.identity);
        }
        visitor.extras = (!identity.is_empty()).then(|| {
            Box::new(Extras {
                identity,
                events: Vec::new(),
            })
        });
        visitor.geo = geo;
        visitor.client = client;
        visitor.ip = stored_ip(beacon.ip);
        if let Some(screen) = beacon.screen {
            visitor.screen = screen;
        }
        if let Some(language) = clean_language(beacon.language) {
            if let Some(old) = visitor.language {
                self.symbols.texts.release(old);
            }
            visitor.language = Some(self.symbols.text(language));
        }
        let before = visitor.segments;
        visitor.segments = before.with(Segment::AutoMessaged, false);
        ingest.site.counters.transition(before, visitor.segments);
    }

    fn set_flag(&self, site: &str, visitor_id: &str, segment: Segment, on: bool) -> bool {
        let Some(site) = self.site(site) else {
            return false;
        };
        let hash = site.hash_id(visitor_id);
        let mut shard = site.shard(hash).write();
        let Some(visitor) = shard
            .visitors
            .find_mut(hash, |visitor| visitor.id == *visitor_id)
        else {
            return false;
        };
        let before = visitor.segments;
        let after = before.with(segment, on);
        if before != after {
            visitor.segments = after;
            site.counters.transition(before, after);
            site.mark_changed(visitor, self.now_ms());
        }
        true
    }

    fn get_in(&self, site: &Site, visitor_id: &str) -> Option<VisitorSnapshot> {
        let hash = site.hash_id(visitor_id);
        let shard = site.shard(hash).read();
        let visitor = shard
            .visitors
            .find(hash, |visitor| visitor.id == *visitor_id)?;
        Some(self.snapshot_of(site, visitor))
    }

    fn snapshot_of(&self, site: &Site, visitor: &Visitor) -> VisitorSnapshot {
        let (history, landing_url) = {
            let pages = self.symbols.pages.reader();
            let history: Vec<PageVisit> = visitor
                .history
                .iter()
                .map(|stamp| {
                    let page: &Page = pages.get(stamp.page);
                    PageVisit {
                        url: Arc::clone(&page.url),
                        title: Arc::clone(&page.title),
                        at_ms: visitor.visit_started_ms + i64::from(stamp.at),
                    }
                })
                .collect();
            (history, Arc::clone(&pages.get(visitor.landing).url))
        };
        let (language, referrer) = {
            let texts = self.symbols.texts.reader();
            let resolve = |id: Option<SymbolId>| id.map(|id| Arc::clone(texts.get(id)));
            (resolve(visitor.language), resolve(visitor.referrer))
        };
        let campaign = visitor
            .campaign
            .map(|id| self.symbols.campaigns.reader().get(id).clone())
            .unwrap_or_default();
        let current = history
            .last()
            .expect("a visit has at least one page")
            .clone();
        let extras = visitor.extras.as_deref();
        VisitorSnapshot {
            site: Arc::clone(&site.key),
            id: Arc::from(visitor.id.as_str()),
            number: visitor.number,
            ip: visitor.ip(),
            geo: Arc::clone(&visitor.geo),
            client: Arc::clone(&visitor.client),
            language,
            screen: (visitor.screen != (0, 0)).then_some(visitor.screen),
            current_url: current.url,
            current_title: current.title,
            page_since_ms: current.at_ms,
            visit_started_ms: visitor.visit_started_ms,
            last_activity_ms: visitor.last_activity_ms,
            left_ms: visitor.left_ms(),
            pages_this_visit: visitor.pages,
            history,
            landing_url,
            referrer,
            campaign,
            visits: visitor.visits,
            first_seen_ms: visitor.first_seen_ms,
            identity: extras
                .map(|extras| extras.identity.clone())
                .unwrap_or_default(),
            events: extras
                .map(|extras| extras.events.clone())
                .unwrap_or_default(),
            segments: visitor.segments,
        }
    }

    /// Processes a shard's due queue entries up to `now`; returns (demoted, removed).
    fn sweep_shard(
        &self,
        site: &Site,
        shard: &mut Shard,
        now: i64,
        now_second: u32,
    ) -> (usize, usize) {
        let (mut demoted, mut removed) = (0, 0);
        // Visitors due later within the current second go back under it after the loop, which
        // would otherwise meet them again.
        let mut not_yet = Vec::new();
        let Shard { visitors, due } = shard;
        while let Some(entry) = due.first_entry() {
            if *entry.key() > now_second {
                break;
            }
            let (second, hashes) = entry.remove_entry();
            for hash in hashes {
                // The visitor whose live entry this is; an entry left behind by an earlier
                // reschedule matches nobody and is dropped.
                let Ok(mut entry) = visitors.find_entry(hash, |visitor| {
                    visitor.due_second == second && site.hash_id(visitor.id.as_str()) == hash
                }) else {
                    continue;
                };
                let visitor = entry.get_mut();
                let idle = now - visitor.last_activity_ms;
                if idle >= self.config.retention_ms {
                    let (visitor, _) = entry.remove();
                    visitor.release_all(&self.symbols);
                    site.counters
                        .transition(visitor.segments, Segments::default());
                    site.mark_removed(visitor.id.as_str(), now);
                    removed += 1;
                    continue;
                }
                if visitor.segments.contains(Segment::Active)
                    && idle >= self.config.active_window_ms
                {
                    let before = visitor.segments;
                    visitor.segments = before.with(Segment::Active, false);
                    site.counters.transition(before, visitor.segments);
                    site.mark_changed(visitor, now);
                    demoted += 1;
                }
                let next = due_second(self.next_deadline(visitor));
                visitor.due_second = next;
                if next <= now_second {
                    not_yet.push(hash);
                } else {
                    due.entry(next).or_default().push(hash);
                }
            }
        }
        if !not_yet.is_empty() {
            due.entry(now_second).or_default().extend(not_yet);
        }
        // hashbrown never shrinks by itself: after a peak, give most of the buckets back.
        if removed > 0 && visitors.capacity() > 4 * visitors.len().max(16) {
            visitors.shrink_to(2 * visitors.len(), |visitor| {
                site.hash_id(visitor.id.as_str())
            });
        }
        (demoted, removed)
    }

    /// Marks the feed as watched: recording (re)starts.
    fn renew_feed(&self, site: &Site) {
        site.feed.lock().recording = true;
    }

    /// Stops recording changes of a site whose changes sat undrained for a retention period,
    /// and forgets them.
    fn lapse_unwatched_feed(&self, site: &Site, now: i64) {
        let unwatched = |feed: &crate::site::Feed| {
            feed.recording
                && site.feed_pending.load(AtomicOrdering::Acquire)
                && now - feed.pending_since_ms > self.config.retention_ms
        };
        if !unwatched(&site.feed.lock()) {
            return;
        }
        // Every shard first (the lock order), so no beacon marks a visitor dirty between the
        // feed being cleared and the dirty marks being cleared.
        let mut shards = site.lock_all();
        {
            let mut feed = site.feed.lock();
            if !unwatched(&feed) {
                return;
            }
            feed.recording = false;
            feed.upserts = Vec::new();
            feed.removed = Vec::new();
            site.feed_pending.store(false, AtomicOrdering::Release);
        }
        for shard in &mut shards {
            for visitor in shard.visitors.iter_mut() {
                visitor.dirty = false;
            }
        }
    }

    /// Drops a site with no visitors and nothing pending from the site map.
    fn retire_if_empty(&self, site: &Arc<Site>) {
        if site.counters.read().all != 0 {
            return;
        }
        {
            let shards = site.lock_all();
            if shards.iter().any(|shard| !shard.visitors.is_empty()) {
                return;
            }
            let feed = site.feed.lock();
            if !feed.upserts.is_empty() || !feed.removed.is_empty() {
                return;
            }
            site.retired.store(true, AtomicOrdering::Release);
        }
        self.sites
            .remove_if(&site.key, |_, current| Arc::ptr_eq(current, site));
    }

    /// Buckets of a site's visitor tables, for tests of the shrink after a peak.
    #[cfg(test)]
    pub(crate) fn table_capacity(&self, site: &str) -> usize {
        self.site(site).map_or(0, |site| {
            site.shards()
                .iter()
                .map(|shard| shard.read().visitors.capacity())
                .sum()
        })
    }

    /// Interned values currently held (pages, texts, campaigns), for tests of the purge.
    #[cfg(test)]
    pub(crate) fn interned_len(&self) -> (usize, usize, usize) {
        (
            self.symbols.pages.len(),
            self.symbols.texts.len(),
            self.symbols.campaigns.len(),
        )
    }
}

/// Activity: moves `last_activity_ms` (never backwards), clears "left", makes the visitor
/// Active. Returns whether something a panel shows changed (the visitor came back).
fn touch(visitor: &mut Visitor, now: i64) -> bool {
    visitor.last_activity_ms = visitor.last_activity_ms.max(now);
    visitor.segments = visitor.segments.with(Segment::Active, true);
    let came_back = visitor.left_after_ms != NOT_LEFT;
    visitor.left_after_ms = NOT_LEFT;
    came_back
}

/// Merges a beacon's identity in; returns whether the stored identity changed.
fn identify(visitor: &mut Visitor, identity: Identity) -> bool {
    let identity = identity.bounded();
    if identity.is_empty() {
        return false;
    }
    let extras = visitor.extras.get_or_insert_with(Default::default);
    let mut merged = extras.identity.clone();
    merged.merge(identity);
    if merged == extras.identity {
        return false;
    }
    extras.identity = merged;
    true
}

fn profile_of(visitor: &Visitor, visit_id: &str) -> KnownProfile {
    KnownProfile {
        number: visitor.number,
        visits: visitor.visits,
        first_seen_ms: visitor.first_seen_ms,
        last_visit_id: Some(visit_id.to_owned()),
        identity: visitor.identity().cloned().unwrap_or_default(),
    }
}

/// Site, visitor and visit ids must be non-empty and at most [`MAX_ID_LEN`] bytes: cutting
/// them could merge different visitors, so longer ones are ignored.
fn ids_acceptable(beacon: &Beacon<'_>) -> bool {
    [beacon.site, beacon.visitor_id, beacon.visit_id]
        .iter()
        .all(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
}

fn clean_language(language: Option<&str>) -> Option<&str> {
    language
        .map(|language| truncate(language.trim(), MAX_LANGUAGE_LEN))
        .filter(|language| !language.is_empty())
}

fn stored_ip(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The queue second a deadline falls in.
fn due_second(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000).max(0)).map_or(NOT_DUE - 1, |second| second.min(NOT_DUE - 1))
}

/// Whether the search text is in the visitor's name, email, IP, city or current URL.
fn matches_search(visitor: &Visitor, needle: &str, pages: &Reader<'_, Page>) -> bool {
    if let Some(identity) = visitor.identity() {
        let fields = [identity.name.as_deref(), identity.email.as_deref()];
        if fields
            .into_iter()
            .flatten()
            .any(|field| contains_ignore_case(field, needle))
        {
            return true;
        }
    }
    if visitor
        .geo
        .city
        .as_deref()
        .is_some_and(|city| contains_ignore_case(city, needle))
    {
        return true;
    }
    if contains_ignore_case(&pages.get(visitor.current_page().page).url, needle) {
        return true;
    }
    let mut ip = IpText::default();
    // Writing an address into 48 bytes cannot fail; the longest form is 45.
    let _ = write!(ip, "{}", visitor.ip());
    contains_ignore_case(ip.as_str(), needle)
}

/// A stack buffer for an IP address as text, so search does not allocate per visitor.
struct IpText {
    bytes: [u8; 48],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl IpText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
