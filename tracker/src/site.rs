//! One site's live visitors: sharded tables, deadline queues, counters and the change feed.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use foldhash::quality::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use crate::segment::SegmentCounters;
use crate::visitor::Visitor;

/// Shards per site. Beacons of different visitors rarely wait on each other with this many, and
/// an idle site costs a few kilobytes.
const SHARDS: usize = 32;

/// A shard: part of a site's visitors, and when each of them is next due for a sweep.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    /// Boxed records keyed by the id inside them: a bucket is one pointer.
    pub visitors: HashTable<Box<Visitor>>,
    /// Deadline queue: second (since the epoch) → id hashes of visitors due during it. Each
    /// visitor has one live entry (the one matching its `due_second`); entries left behind when
    /// a visitor was rescheduled earlier are recognized as stale and dropped when reached.
    pub due: BTreeMap<u32, Vec<u64>>,
}

/// The change feed's pending state.
#[derive(Debug)]
pub(crate) struct Feed {
    /// Whether changes are recorded. Recording stops when changes sat undrained for a
    /// retention period (nobody follows this site's feed), so that removals cannot pile up
    /// without bound; the next drain or snapshot starts it again. A feed that is drained, or
    /// simply quiet, never stops.
    pub recording: bool,
    /// When the feed last went from empty to holding something.
    pub pending_since_ms: i64,
    /// Id hashes of visitors marked dirty, in marking order: a hash rather than the id, so that
    /// marking a change never allocates. A visitor is listed at most once while it stays dirty;
    /// the drain takes the dirty visitor with the hash, and skips a hash whose visitor is gone.
    pub upserts: Vec<u64>,
    pub removed: Vec<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct Site {
    pub key: Arc<str>,
    hasher: RandomState,
    shards: Box<[RwLock<Shard>]>,
    pub counters: SegmentCounters,
    pub feed: Mutex<Feed>,
    /// Set whenever `feed` holds something; read without the lock by `has_changes`.
    pub feed_pending: AtomicBool,
    /// Set (under every shard lock) when the sweep drops an empty site from the site map; a
    /// beacon that finds it set looks the site up again instead of inserting here.
    pub retired: AtomicBool,
}

impl Site {
    pub(crate) fn new(key: Arc<str>) -> Site {
        Site {
            key,
            hasher: RandomState::default(),
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            counters: SegmentCounters::default(),
            feed: Mutex::new(Feed {
                recording: true,
                pending_since_ms: 0,
                upserts: Vec::new(),
                removed: Vec::new(),
            }),
            feed_pending: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        }
    }

    /// The keyed hash of a visitor id; it picks the shard and the bucket.
    pub(crate) fn hash_id(&self, visitor_id: &str) -> u64 {
        self.hasher.hash_one(visitor_id)
    }

    /// The keyed hash of a visit id, stored to recognize the visit.
    pub(crate) fn hash_visit(&self, visit_id: &str) -> u32 {
        self.hasher.hash_one(("visit", visit_id)) as u32
    }

    /// The shard of a visitor. hashbrown uses the low bits for the bucket and the top 7 for its
    /// control bytes, so the shard comes from bits in between; otherwise every key of a shard
    /// would share low bits and crowd a fraction of its buckets.
    pub(crate) fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 48) as usize % SHARDS]
    }

    pub(crate) fn shards(&self) -> &[RwLock<Shard>] {
        &self.shards
    }

    /// Every shard write-locked, in order (the only place more than one shard is held, so the
    /// order cannot deadlock against anything).
    pub(crate) fn lock_all(&self) -> Vec<RwLockWriteGuard<'_, Shard>> {
        self.shards.iter().map(|shard| shard.write()).collect()
    }

    /// Queues a visitor for the next drain, unless it already is (call with its shard locked).
    pub(crate) fn mark_changed(&self, visitor: &mut Visitor, now_ms: i64) {
        if visitor.dirty {
            return;
        }
        let hash = self.hash_id(visitor.id.as_str());
        let mut feed = self.feed.lock();
        if feed.recording {
            feed.upserts.push(hash);
            visitor.dirty = true;
            self.now_pending(&mut feed, now_ms);
        }
    }

    /// Queues a visitor's removal (call with its shard locked).
    pub(crate) fn mark_removed(&self, visitor_id: &str, now_ms: i64) {
        let mut feed = self.feed.lock();
        if feed.recording {
            feed.removed.push(visitor_id.into());
            self.now_pending(&mut feed, now_ms);
        }
    }

    fn now_pending(&self, feed: &mut Feed, now_ms: i64) {
        if !self.feed_pending.swap(true, Ordering::AcqRel) {
            feed.pending_since_ms = now_ms;
        }
    }
}
