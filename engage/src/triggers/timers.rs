//! The wake-up queue for time-based conditions: one pending wake-up per visitor.
//!
//! An evaluation that finds a trigger true "from T" (time on page or site still growing)
//! schedules the visitor at the earliest such T. The queue is a binary heap of (due, sequence)
//! plus a map from visitor to its one live entry: rescheduling a visitor replaces its entry,
//! and the old heap item, whose sequence no longer matches, is dropped when it surfaces. So the
//! work per wake-up is O(log n) whatever the number pending, and a visitor is never woken twice
//! for one schedule.
//!
//! Each entry records the visit (the tracker's visit tag) and the page count it was scheduled
//! for. When it is due the engine re-evaluates the visitor only if both still match: a visitor
//! who navigated, started a new visit or left is not written to from that timer ("navigation
//! cancels page timers"); their own beacons schedule afresh.
//!
//! The queue itself is synchronous; the service runs one task that sleeps until the earliest
//! deadline and is woken through a [`tokio::sync::Notify`] when an earlier one is inserted.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::FastHash;

/// Which visitor a wake-up is for: one allocation per visitor with a wake-up, shared by its
/// map entry and its heap items.
#[derive(Debug)]
pub(crate) struct TimerKey {
    pub site: Arc<str>,
    pub visitor_id: Box<str>,
    /// The visitor id's hash in the queue's tables, computed once.
    hash: u64,
    /// The sequence number of the visitor's live entry (0: none). A heap item is live when
    /// its sequence number equals this, so dropping stale items needs no map lookup. Only
    /// written under the queue's lock.
    live: AtomicU64,
}

impl TimerKey {
    fn is_live(&self, seq: u64) -> bool {
        self.live.load(AtomicOrdering::Relaxed) == seq
    }

    fn set_live(&self, seq: u64) {
        self.live.store(seq, AtomicOrdering::Relaxed);
    }
}

impl PartialEq for TimerKey {
    fn eq(&self, other: &TimerKey) -> bool {
        self.site == other.site && self.visitor_id == other.visitor_id
    }
}

impl Eq for TimerKey {}

/// A wake-up that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    pub key: Arc<TimerKey>,
    pub visit_tag: u32,
    pub pages: u32,
    pub due_ms: i64,
}

/// A visitor's live entry.
#[derive(Debug)]
struct Slot {
    /// `key.hash`, here so a lookup compares it without reading the key.
    hash: u64,
    key: Arc<TimerKey>,
    seq: u64,
    due_ms: i64,
    visit_tag: u32,
    pages: u32,
}

/// A heap item: earliest due first (sequence numbers are unique, so two items never tie).
/// What the wake-up is for (visit, page) is the live entry's.
#[derive(Debug)]
struct Item {
    due_ms: i64,
    seq: u64,
    key: Arc<TimerKey>,
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        self.seq == other.seq
    }
}

impl Eq for Item {}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Item) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Item {
    // Reversed: `BinaryHeap` is a max-heap.
    fn cmp(&self, other: &Item) -> Ordering {
        (other.due_ms, other.seq).cmp(&(self.due_ms, self.seq))
    }
}

/// Shards of a site's live entries: a site growing towards a million pending wake-ups
/// rehashes 1/64 of them at a time, never the whole map in one go (which held the queue's lock
/// for tens of milliseconds).
const SHARDS: usize = 64;

/// Live entries by the visitor id's hash (kept in the slot: a lookup hashes the id once and
/// reads the key only to confirm a hit).
type Shard = HashTable<Slot>;

/// One site's live entries, split by the visitor id's hash.
#[derive(Debug)]
struct SiteSlots {
    shards: Box<[Shard]>,
}

impl SiteSlots {
    fn new() -> SiteSlots {
        SiteSlots {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
        }
    }

    /// The shard of a visitor id's hash: its top bits (the table uses the low ones).
    fn shard_mut(&mut self, hash: u64) -> &mut Shard {
        &mut self.shards[(hash >> 58) as usize % SHARDS]
    }
}

/// Whether `slot` is the live entry of the visitor with this id and hash.
fn is_slot_of(hash: u64, visitor_id: &str) -> impl Fn(&Slot) -> bool {
    move |slot| slot.hash == hash && *slot.key.visitor_id == *visitor_id
}

#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Item>,
    /// site → visitor → the visitor's live entry: looked up by `&str`, never allocating.
    live: HashMap<Arc<str>, SiteSlots, FastHash>,
    /// Live entries per site.
    site_len: HashMap<Arc<str>, usize, FastHash>,
    hasher: FastHash,
    /// Live entries (the sum of the inner maps' lengths).
    len: usize,
    next_seq: u64,
}

impl Queue {
    /// Drops every heap item that is not some visitor's live entry.
    fn compact(&mut self) {
        self.heap.retain(|item| item.key.is_live(item.seq));
    }

    fn remove(&mut self, site: &str, visitor_id: &str, hash: u64) -> Option<Slot> {
        let visitors = self.live.get_mut(site)?;
        let (slot, _) = visitors
            .shard_mut(hash)
            .find_entry(hash, is_slot_of(hash, visitor_id))
            .ok()?
            .remove();
        slot.key.set_live(0);
        self.len -= 1;
        if let Some(count) = self.site_len.get_mut(site) {
            *count -= 1;
            if *count == 0 {
                self.site_len.remove(site);
                self.live.remove(site);
            }
        }
        Some(slot)
    }
}

/// Pending wake-ups, at most one per visitor.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: Mutex<Queue>,
    /// Woken when a wake-up earlier than every other is inserted.
    pub wake: tokio::sync::Notify,
}

impl Timers {
    /// Schedules (or moves) the visitor's wake-up. A visitor already due no later, for the
    /// same visit and page, keeps its entry. One lookup of the visitor; a visitor already
    /// pending allocates nothing.
    pub(crate) fn schedule(
        &self,
        site: &Arc<str>,
        visitor_id: &str,
        visit_tag: u32,
        pages: u32,
        due_ms: i64,
    ) {
        let earliest = {
            let mut queue = self.queue.lock();
            let queue = &mut *queue;
            let seq = queue.next_seq + 1;
            let hash = queue.hasher.hash_one(visitor_id);
            let visitors = match queue.live.get_mut(&**site) {
                Some(visitors) => visitors,
                None => queue
                    .live
                    .entry(Arc::clone(site))
                    .or_insert_with(SiteSlots::new),
            };
            let visitors = visitors.shard_mut(hash);
            let key = match visitors.find_mut(hash, is_slot_of(hash, visitor_id)) {
                Some(slot) => {
                    if slot.visit_tag == visit_tag && slot.pages == pages && slot.due_ms <= due_ms {
                        return;
                    }
                    slot.seq = seq;
                    slot.due_ms = due_ms;
                    slot.visit_tag = visit_tag;
                    slot.pages = pages;
                    Arc::clone(&slot.key)
                }
                None => {
                    let key = Arc::new(TimerKey {
                        site: Arc::clone(site),
                        visitor_id: visitor_id.into(),
                        hash,
                        live: AtomicU64::new(0),
                    });
                    visitors.insert_unique(
                        hash,
                        Slot {
                            hash,
                            key: Arc::clone(&key),
                            seq,
                            due_ms,
                            visit_tag,
                            pages,
                        },
                        |slot| slot.hash,
                    );
                    queue.len += 1;
                    match queue.site_len.get_mut(&**site) {
                        Some(count) => *count += 1,
                        None => {
                            queue.site_len.insert(Arc::clone(site), 1);
                        }
                    }
                    key
                }
            };
            key.set_live(seq);
            queue.next_seq = seq;
            let earliest = queue.heap.peek().is_none_or(|first| due_ms < first.due_ms);
            queue.heap.push(Item { due_ms, seq, key });
            // Navigation leaves stale items behind until they come due; when they outnumber
            // the live ones, drop them so the heap stays O(pending).
            if queue.heap.len() > 2 * queue.len + 1024 {
                queue.compact();
            }
            earliest
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Forgets the visitor's wake-up, if any.
    pub(crate) fn cancel(&self, site: &str, visitor_id: &str) {
        let mut queue = self.queue.lock();
        if queue.len == 0 {
            return;
        }
        let hash = queue.hasher.hash_one(visitor_id);
        queue.remove(site, visitor_id, hash);
        if queue.len == 0 {
            // Nothing live: the stale heap items can go at once.
            queue.heap.clear();
            queue.live.clear();
            queue.site_len.clear();
        }
    }

    /// Takes up to `max` wake-ups due at or before `now_ms`, earliest first.
    pub(crate) fn pop_due(&self, now_ms: i64, max: usize) -> Vec<Due> {
        let mut due = Vec::new();
        let mut queue = self.queue.lock();
        while due.len() < max {
            if queue.heap.peek().is_none_or(|first| first.due_ms > now_ms) {
                break;
            }
            let Some(item) = queue.heap.pop() else {
                break;
            };
            // Not replaced or cancelled since.
            if item.key.is_live(item.seq)
                && let Some(slot) =
                    queue.remove(&item.key.site, &item.key.visitor_id, item.key.hash)
            {
                due.push(Due {
                    key: item.key,
                    visit_tag: slot.visit_tag,
                    pages: slot.pages,
                    due_ms: item.due_ms,
                });
            }
        }
        due
    }

    /// When the earliest pending wake-up is due (possibly a stale one, which only causes an
    /// early, empty look).
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.queue.lock().heap.peek().map(|first| first.due_ms)
    }

    /// Wake-ups pending (one per visitor).
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due_ids(timers: &Timers, now: i64) -> Vec<(String, i64)> {
        due_pages(timers, now)
            .into_iter()
            .map(|(id, due, _)| (id, due))
            .collect()
    }

    /// (visitor, due, pages) of what is due at `now`.
    fn due_pages(timers: &Timers, now: i64) -> Vec<(String, i64, u32)> {
        timers
            .pop_due(now, usize::MAX)
            .into_iter()
            .map(|due| (due.key.visitor_id.to_string(), due.due_ms, due.pages))
            .collect()
    }

    #[test]
    fn one_wake_up_per_visitor_earliest_first() {
        let timers = Timers::default();
        let site: Arc<str> = "s".into();
        timers.schedule(&site, "a", 1, 1, 3_000);
        timers.schedule(&site, "b", 1, 1, 1_000);
        // A later time for the same page keeps the earlier wake-up.
        timers.schedule(&site, "b", 1, 1, 2_000);
        // A new page replaces it, even with a later time.
        timers.schedule(&site, "a", 1, 2, 5_000);
        // An earlier time moves it.
        timers.schedule(&site, "d", 1, 1, 9_000);
        timers.schedule(&site, "d", 1, 2, 4_000);
        timers.schedule(&site, "c", 1, 1, 4_000);
        timers.cancel("s", "c");
        assert_eq!(timers.len(), 3);
        assert_eq!(timers.next_due(), Some(1_000));
        assert!(due_ids(&timers, 999).is_empty());
        assert_eq!(due_pages(&timers, 2_999), [("b".into(), 1_000, 1)]);
        assert_eq!(due_pages(&timers, 4_000), [("d".into(), 4_000, 2)]);
        assert_eq!(due_pages(&timers, 10_000), [("a".into(), 5_000, 2)]);
        assert_eq!(timers.len(), 0);
        assert_eq!(timers.next_due(), None);
    }

    #[test]
    fn stale_items_are_compacted_away() {
        let timers = Timers::default();
        let site: Arc<str> = "s".into();
        // One visitor navigating 5 000 times: one live entry, a bounded heap.
        for page in 0..5_000 {
            timers.schedule(&site, "a", 1, page, 1_000_000 - i64::from(page));
        }
        assert_eq!(timers.len(), 1);
        assert!(timers.queue.lock().heap.len() <= 1_026);
        assert_eq!(
            due_ids(&timers, i64::MAX),
            [("a".into(), 1_000_000 - 4_999)]
        );
    }

    /// Live entries per site as the shards hold them, checked against the queue's counts.
    fn live_per_site(timers: &Timers) -> HashMap<String, usize> {
        let queue = timers.queue.lock();
        let mut live = HashMap::new();
        for (site, slots) in &queue.live {
            let sizes: Vec<usize> = slots.shards.iter().map(HashTable::len).collect();
            let total: usize = sizes.iter().sum();
            // Thousands of visitors leave no shard unused.
            assert!(sizes.iter().all(|&size| size > 0), "{site}: {sizes:?}");
            assert_eq!(queue.site_len.get(site), Some(&total), "{site}");
            live.insert(site.to_string(), total);
        }
        assert_eq!(queue.site_len.len(), queue.live.len());
        assert_eq!(live.values().sum::<usize>(), queue.len);
        live
    }

    #[test]
    fn thousands_of_visitors_on_two_sites() {
        const VISITORS: usize = 3_000;
        let timers = Timers::default();
        let sites: [Arc<str>; 2] = ["a".into(), "b".into()];
        let id = |i: usize| format!("v{i}");
        // Every wake-up is due at a time of its own: first at a multiple of 10, moved ones at
        // an offset of 4, 5 or 7 from one.
        let first_due = |site: usize, i: usize| 1_000_000 + (i * 2 + site) as i64 * 10;
        // (site, visitor) → (visit tag, pages, due) of the entry that should be live.
        let mut expected: HashMap<(usize, usize), (u32, u32, i64)> = HashMap::new();

        // The same visitor ids on both sites: distinct entries.
        for i in 0..VISITORS {
            for (s, site) in sites.iter().enumerate() {
                timers.schedule(site, &id(i), 1, 1, first_due(s, i));
                expected.insert((s, i), (1, 1, first_due(s, i)));
            }
        }
        assert_eq!(timers.len(), 2 * VISITORS);
        assert_eq!(timers.next_due(), Some(first_due(0, 0)));
        assert_eq!(
            live_per_site(&timers),
            HashMap::from([("a".into(), VISITORS), ("b".into(), VISITORS)])
        );

        for i in 0..VISITORS {
            for (s, site) in sites.iter().enumerate() {
                let due = first_due(s, i);
                match i % 5 {
                    // Later, same visit and page: the earlier wake-up stays.
                    1 => timers.schedule(site, &id(i), 1, 1, due + 7),
                    // Earlier, same page: moved.
                    2 => {
                        timers.schedule(site, &id(i), 1, 1, due - 3);
                        expected.insert((s, i), (1, 1, due - 3));
                    }
                    // A new page: replaced, though later.
                    3 => {
                        timers.schedule(site, &id(i), 1, 2, due + 5);
                        expected.insert((s, i), (1, 2, due + 5));
                    }
                    // A new visit: replaced, though later.
                    4 => {
                        timers.schedule(site, &id(i), 2, 1, due + 4);
                        expected.insert((s, i), (2, 1, due + 4));
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(timers.len(), 2 * VISITORS);

        // Cancel a third; cancelling what is not there changes nothing.
        for i in (0..VISITORS).step_by(3) {
            for (s, site) in sites.iter().enumerate() {
                timers.cancel(site, &id(i));
                expected.remove(&(s, i));
            }
        }
        timers.cancel("a", "nobody");
        timers.cancel("c", &id(1));
        let left = VISITORS - VISITORS.div_ceil(3);
        assert_eq!(expected.len(), 2 * left);
        assert_eq!(timers.len(), 2 * left);
        assert_eq!(
            live_per_site(&timers),
            HashMap::from([("a".into(), left), ("b".into(), left)])
        );

        // (due, site, visitor, visit tag, pages) in due order.
        let mut order: Vec<(i64, String, String, u32, u32)> = expected
            .iter()
            .map(|(&(s, i), &(tag, pages, due))| (due, sites[s].to_string(), id(i), tag, pages))
            .collect();
        order.sort();
        let pop = |now: i64, max: usize| -> Vec<(i64, String, String, u32, u32)> {
            timers
                .pop_due(now, max)
                .into_iter()
                .map(|due| {
                    (
                        due.due_ms,
                        due.key.site.to_string(),
                        due.key.visitor_id.to_string(),
                        due.visit_tag,
                        due.pages,
                    )
                })
                .collect()
        };

        // Nothing before the first live wake-up (stale items before it are skipped).
        assert_eq!(pop(order[0].0 - 1, usize::MAX), []);
        assert_eq!(timers.len(), order.len());
        // Up to a cut-off at a time, then a bounded pop, until everything is out.
        let mut popped = 0;
        for cut in [1, 100, 1_000, 2_500] {
            let now = order[cut - 1].0;
            assert_eq!(pop(now, usize::MAX), order[popped..cut], "up to {now}");
            popped = cut;
            assert_eq!(timers.len(), order.len() - popped);
        }
        assert_eq!(pop(i64::MAX, 300), order[popped..popped + 300]);
        popped += 300;
        assert_eq!(timers.len(), order.len() - popped);
        assert_eq!(pop(i64::MAX, usize::MAX), order[popped..]);

        assert_eq!(timers.len(), 0);
        assert_eq!(timers.next_due(), None);
        assert_eq!(pop(i64::MAX, usize::MAX), []);
        let queue = timers.queue.lock();
        assert!(queue.live.is_empty());
        assert!(queue.site_len.is_empty());
        assert!(queue.heap.is_empty());
    }

    #[test]
    fn pops_are_bounded_and_ordered() {
        let timers = Timers::default();
        let site: Arc<str> = "s".into();
        for i in (0..100).rev() {
            timers.schedule(&site, &format!("v{i}"), 0, 1, i);
        }
        let first = timers.pop_due(1_000, 10);
        assert_eq!(
            first.iter().map(|due| due.due_ms).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(timers.pop_due(1_000, usize::MAX).len(), 90);
    }
}
