//! Visitor profiles off the hot path: a write-behind queue and per-site visitor numbers.
//!
//! Ingestion must never wait for a disk commit, so profile changes are queued in memory and
//! a background task writes them in batches, one transaction per batch. Numbers for new
//! visitors come from in-memory counters seeded from the store at start-up, so assigning one
//! needs no write either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::model::{Profile, ProfileRecord};
use crate::store::Store;

/// site key → visitor id → profile. Nested so a lookup by `&str` pair needs no allocation.
type ProfileMap = HashMap<String, HashMap<String, Profile>>;

/// Settings of the [`ProfileWriter`].
#[derive(Debug, Clone)]
pub struct ProfileWriterConfig {
    /// How often queued profiles are written. Default: 1 s: each batch is one fsynced commit
    /// on the server's cores, and a profile (visit count, first seen, identity) is worth at
    /// most a second of loss on a crash; a graceful shutdown writes everything.
    pub flush_interval: Duration,
    /// A flush starts early once this many profiles are queued. Default: 1 000.
    pub flush_threshold: usize,
    /// The most profiles held in memory; beyond it new visitors' profiles are dropped (and
    /// counted) while updates to already-queued visitors still coalesce. Default: 100 000.
    pub max_pending: usize,
}

impl Default for ProfileWriterConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            flush_threshold: 1_000,
            max_pending: 100_000,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    pending: ProfileMap,
    pending_len: usize,
    /// The batch being written right now. Reads consult it so a visitor is still
    /// recognised in the moment between leaving the queue and reaching the store.
    in_flight: Option<Arc<ProfileMap>>,
    /// Failed flushes in a row, so a failing disk logs once per streak, not ten times a
    /// second.
    failures_in_a_row: u32,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn Store>,
    config: ProfileWriterConfig,
    state: Mutex<State>,
    /// Held across take-and-save so batches reach the store in the order they were taken;
    /// otherwise an older batch could commit after a newer one and undo it.
    flush_lock: tokio::sync::Mutex<()>,
    wake: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
}

/// The last clone of a [`ProfileWriter`] to be dropped tells the background task to make a
/// final flush and stop.
#[derive(Debug)]
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

/// Queues visitor profiles and writes them to the store in batches.
///
/// Cloning is cheap; all clones share one queue. When every clone has been dropped, the
/// background task writes what is left and ends, so awaiting the `JoinHandle` from
/// [`ProfileWriter::spawn`] after dropping the writer is a complete shutdown. Calling
/// [`ProfileWriter::flush`] first works too, and reports errors.
#[derive(Debug, Clone)]
pub struct ProfileWriter {
    handle: Arc<Handle>,
}

impl ProfileWriter {
    /// Starts the writer with default settings. Must be called inside a tokio runtime.
    pub fn spawn(store: Arc<dyn Store>) -> (ProfileWriter, JoinHandle<()>) {
        Self::spawn_with(store, ProfileWriterConfig::default())
    }

    /// Starts the writer with the given settings. Must be called inside a tokio runtime.
    pub fn spawn_with(
        store: Arc<dyn Store>,
        config: ProfileWriterConfig,
    ) -> (ProfileWriter, JoinHandle<()>) {
        let shared = Arc::new(Shared {
            store,
            config,
            state: Mutex::new(State::default()),
            flush_lock: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(Arc::clone(&shared)));
        let writer = ProfileWriter {
            handle: Arc::new(Handle(shared)),
        };
        (writer, task)
    }

    fn shared(&self) -> &Shared {
        &self.handle.0
    }

    /// Queues a profile to be written. Never blocks on I/O: it takes a short in-memory lock.
    ///
    /// A later record for the same (site, visitor) replaces the queued one, so only the
    /// latest state is written. When the queue is full, a record for a visitor not already
    /// queued is dropped and counted in [`ProfileWriter::dropped`].
    pub fn queue(&self, record: ProfileRecord) {
        let shared = self.shared();
        let ProfileRecord {
            site,
            visitor_id,
            profile,
        } = record;
        let wake = {
            let mut state = lock(&shared.state);
            if let Some(slot) = state
                .pending
                .get_mut(&site)
                .and_then(|visitors| visitors.get_mut(&visitor_id))
            {
                *slot = profile;
                return;
            }
            if state.pending_len >= shared.config.max_pending {
                drop(state);
                let dropped = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped == 1 || dropped.is_multiple_of(10_000) {
                    tracing::warn!(
                        dropped,
                        max_pending = shared.config.max_pending,
                        "profile write queue is full; dropping profile updates"
                    );
                }
                return;
            }
            state
                .pending
                .entry(site)
                .or_default()
                .insert(visitor_id, profile);
            state.pending_len += 1;
            state.pending_len >= shared.config.flush_threshold
        };
        if wake {
            shared.wake.notify_one();
        }
    }

    /// A profile that is queued or being written but may not be in the store yet.
    pub fn pending_profile(&self, site: &str, visitor_id: &str) -> Option<Profile> {
        let state = lock(&self.shared().state);
        let find = |map: &ProfileMap| map.get(site).and_then(|v| v.get(visitor_id)).cloned();
        find(&state.pending).or_else(|| state.in_flight.as_deref().and_then(find))
    }

    /// The current profile of a visitor: the queued one if there is one, else the stored one.
    pub async fn profile(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<Profile>, StoreError> {
        if let Some(profile) = self.pending_profile(site, visitor_id) {
            return Ok(Some(profile));
        }
        self.shared().store.load_profile(site, visitor_id).await
    }

    /// Applies `edit` to a visitor's current profile (queued, being written, or stored) and
    /// queues the result, so a write-behind batch taken earlier can never undo it. Returns the
    /// edited profile, or `None` when the visitor has no profile anywhere. Call
    /// [`ProfileWriter::flush`] afterwards when the edit must be durable before answering.
    ///
    /// `edit` may run twice: when a beacon queues a newer profile while the stored one is
    /// read, the edit is applied to that newer one instead.
    pub async fn edit(
        &self,
        site: &str,
        visitor_id: &str,
        edit: impl Fn(&mut Profile),
    ) -> Result<Option<Profile>, StoreError> {
        let shared = self.shared();
        let edit_queued = |state: &mut State| {
            let slot = state
                .pending
                .get_mut(site)
                .and_then(|visitors| visitors.get_mut(visitor_id))?;
            edit(slot);
            Some(slot.clone())
        };
        if let Some(profile) = edit_queued(&mut lock(&shared.state)) {
            return Ok(Some(profile));
        }
        let current = match self.pending_profile(site, visitor_id) {
            Some(profile) => Some(profile),
            None => shared.store.load_profile(site, visitor_id).await?,
        };
        let Some(mut profile) = current else {
            return Ok(None);
        };
        edit(&mut profile);
        let mut state = lock(&shared.state);
        if let Some(newer) = edit_queued(&mut state) {
            return Ok(Some(newer));
        }
        // An agent's edit is queued even past `max_pending`: it is one record, and dropping
        // it would silently lose what a person typed.
        state
            .pending
            .entry(site.to_owned())
            .or_default()
            .insert(visitor_id.to_owned(), profile.clone());
        state.pending_len += 1;
        Ok(Some(profile))
    }

    /// Writes everything queued so far and waits until it is committed; returns how many
    /// profiles this call wrote. Use it at graceful shutdown and in tests.
    ///
    /// The work runs in its own task, so cancelling this future cannot leave a batch half
    /// handled.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let shared = Arc::clone(&self.handle.0);
        tokio::spawn(async move { shared.flush_once().await })
            .await
            .map_err(|e| StoreError::Db(format!("profile flush task failed: {e}")))?
    }

    /// How many profiles are queued and not yet being written.
    pub fn pending(&self) -> usize {
        lock(&self.shared().state).pending_len
    }

    /// How many profile updates were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared().dropped.load(Ordering::Relaxed)
    }

    /// How many profiles have been written to the store since start.
    pub fn written(&self) -> u64 {
        self.shared().written.load(Ordering::Relaxed)
    }
}

/// Locks the state, recovering it if a thread panicked while holding the lock: every
/// update to `State` leaves it consistent, so the data is still good.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background task: flush on every tick, or earlier when the queue passes the
/// threshold, and once more at close.
async fn run(shared: Arc<Shared>) {
    // The first tick comes one interval after start, not at once: there is nothing to write
    // yet, and an immediate flush would race with callers that flush explicitly.
    let period = shared.config.flush_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shared.wake.notified() => {}
        }
        // Errors are logged inside and the batch is re-queued, so the next round retries.
        let _ = shared.flush_once().await;
        if shared.closed.load(Ordering::SeqCst) {
            if let Err(e) = shared.flush_once().await {
                tracing::error!(error = %e, pending = lock(&shared.state).pending_len,
                    "final profile flush failed; queued profiles are lost");
            }
            break;
        }
    }
}

impl Shared {
    async fn flush_once(&self) -> Result<usize, StoreError> {
        let _order = self.flush_lock.lock().await;
        let taken = {
            let mut state = lock(&self.state);
            if state.pending_len == 0 {
                return Ok(0);
            }
            let taken = Arc::new(std::mem::take(&mut state.pending));
            state.pending_len = 0;
            state.in_flight = Some(Arc::clone(&taken));
            taken
        };
        let batch: Vec<ProfileRecord> = taken
            .iter()
            .flat_map(|(site, visitors)| {
                visitors
                    .iter()
                    .map(move |(visitor_id, profile)| ProfileRecord {
                        site: site.clone(),
                        visitor_id: visitor_id.clone(),
                        profile: profile.clone(),
                    })
            })
            .collect();
        let result = self.store.save_profiles(&batch).await;
        let mut state = lock(&self.state);
        state.in_flight = None;
        match result {
            Ok(()) => {
                self.written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if state.failures_in_a_row > 0 {
                    tracing::info!(
                        after_failures = state.failures_in_a_row,
                        "profile writes recovered"
                    );
                    state.failures_in_a_row = 0;
                }
                Ok(batch.len())
            }
            Err(e) => {
                // Put the batch back for the next round, except where a newer update was
                // queued meanwhile, and within the queue's bound.
                let mut lost = 0u64;
                for record in batch {
                    let State {
                        pending,
                        pending_len,
                        ..
                    } = &mut *state;
                    let visitors = pending.entry(record.site).or_default();
                    if visitors.contains_key(&record.visitor_id) {
                        continue;
                    }
                    if *pending_len >= self.config.max_pending {
                        lost += 1;
                        continue;
                    }
                    visitors.insert(record.visitor_id, record.profile);
                    *pending_len += 1;
                }
                self.dropped.fetch_add(lost, Ordering::Relaxed);
                state.failures_in_a_row += 1;
                if state.failures_in_a_row == 1 || state.failures_in_a_row.is_multiple_of(100) {
                    tracing::warn!(error = %e, failures_in_a_row = state.failures_in_a_row,
                        "writing visitor profiles failed; will retry");
                }
                Err(e)
            }
        }
    }
}

/// Per-site visitor numbers ("Visitor #42"), handed out from memory.
///
/// Seeded from [`Store::max_visitor_numbers`] at start-up. Numbers are saved only as part
/// of a profile, so if the process dies before a new visitor's profile is written, that
/// visitor's number may be handed out again after the restart; numbers are for display, and
/// a rare repeat was judged better than a synchronous write per new visitor.
#[derive(Debug, Default)]
pub struct VisitorNumbers {
    counters: RwLock<HashMap<String, AtomicU32>>,
}

impl VisitorNumbers {
    /// Counters seeded with the highest saved number of every site.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(Self::from_maxima(store.max_visitor_numbers().await?))
    }

    pub fn from_maxima(maxima: impl IntoIterator<Item = (String, u32)>) -> Self {
        let counters = maxima
            .into_iter()
            .map(|(site, max)| (site, AtomicU32::new(max)))
            .collect();
        Self {
            counters: RwLock::new(counters),
        }
    }

    /// The next number for a new visitor of `site`, starting at 1.
    pub fn next(&self, site: &str) -> u32 {
        {
            let counters = self.counters.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(counter) = counters.get(site) {
                return counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            }
        }
        let mut counters = self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        counters
            .entry(site.to_string())
            .or_default()
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
    }

    /// The highest number handed out (or seeded) for `site`; 0 if none.
    pub fn current(&self, site: &str) -> u32 {
        let counters = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        counters
            .get(site)
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Raises the counter of `site` to at least `number`, for a number learnt from a stored
    /// profile, so it is never handed out again.
    pub fn observe(&self, site: &str, number: u32) {
        {
            let counters = self.counters.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(counter) = counters.get(site) {
                counter.fetch_max(number, Ordering::Relaxed);
                return;
            }
        }
        let mut counters = self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        counters
            .entry(site.to_string())
            .or_default()
            .fetch_max(number, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Identity;
    use crate::redb_store::RedbStore;
    use crate::test_store::GatedStore;

    fn profile(number: u32, visits: u32) -> Profile {
        Profile {
            number,
            visits,
            first_seen_ms: 1,
            last_visit_id: None,
            identity: Identity::default(),
        }
    }

    fn record(site: &str, visitor: &str, number: u32, visits: u32) -> ProfileRecord {
        ProfileRecord {
            site: site.into(),
            visitor_id: visitor.into(),
            profile: profile(number, visits),
        }
    }

    /// Settings under which nothing flushes by itself, so a test decides when.
    fn manual() -> ProfileWriterConfig {
        ProfileWriterConfig {
            flush_interval: Duration::from_secs(3600),
            flush_threshold: usize::MAX,
            max_pending: 100_000,
        }
    }

    fn open_temp() -> (tempfile::TempDir, Arc<RedbStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
        (dir, store)
    }

    /// Waits for a condition that a background task makes true, failing after 10 s.
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn an_edit_applies_to_the_newest_profile_wherever_it_is() {
        let (_dir, store) = open_temp();
        let (writer, _task) = ProfileWriter::spawn_with(store.clone(), manual());
        let name = |profile: &mut Profile| profile.identity.name = Some("Ada".into());
        // Nowhere: nothing to edit.
        assert_eq!(writer.edit("demo", "v0", name).await.unwrap(), None);
        // Stored only: read, edited, queued.
        store
            .save_profiles(&[record("demo", "v1", 1, 3)])
            .await
            .unwrap();
        let edited = writer.edit("demo", "v1", name).await.unwrap().unwrap();
        assert_eq!(
            (edited.visits, edited.identity.name.as_deref()),
            (3, Some("Ada"))
        );
        assert_eq!(writer.pending(), 1);
        // Queued: edited in place, keeping what the queued record says (a newer visit).
        writer.queue(record("demo", "v1", 1, 4));
        let edited = writer.edit("demo", "v1", name).await.unwrap().unwrap();
        assert_eq!(
            (edited.visits, edited.identity.name.as_deref()),
            (4, Some("Ada"))
        );
        assert_eq!(writer.pending(), 1);
        writer.flush().await.unwrap();
        let stored = store.load_profile("demo", "v1").await.unwrap().unwrap();
        assert_eq!(
            (stored.visits, stored.identity.name.as_deref()),
            (4, Some("Ada"))
        );
    }

    #[tokio::test]
    async fn queued_updates_coalesce_and_flush_in_one_batch() {
        let (_dir, store) = open_temp();
        let (writer, _task) = ProfileWriter::spawn_with(store.clone(), manual());
        writer.queue(record("demo", "v1", 1, 1));
        writer.queue(record("demo", "v1", 1, 2));
        writer.queue(record("demo", "v2", 2, 1));
        writer.queue(record("other", "v1", 1, 5));
        assert_eq!(writer.pending(), 3);
        assert_eq!(writer.pending_profile("demo", "v1"), Some(profile(1, 2)));
        assert_eq!(writer.pending_profile("demo", "v3"), None);
        assert_eq!(store.load_profile("demo", "v1").await.unwrap(), None);
        assert_eq!(
            writer.profile("demo", "v1").await.unwrap(),
            Some(profile(1, 2))
        );

        assert_eq!(writer.flush().await.unwrap(), 3);
        assert_eq!(
            (writer.pending(), writer.written(), writer.dropped()),
            (0, 3, 0)
        );
        assert_eq!(writer.pending_profile("demo", "v1"), None);
        assert_eq!(
            store.load_profile("demo", "v1").await.unwrap(),
            Some(profile(1, 2))
        );
        assert_eq!(
            store.load_profile("other", "v1").await.unwrap(),
            Some(profile(1, 5))
        );
        assert_eq!(
            writer.profile("demo", "v2").await.unwrap(),
            Some(profile(2, 1))
        );
        assert_eq!(writer.flush().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_new_visitors_but_still_coalesces() {
        let (_dir, store) = open_temp();
        let config = ProfileWriterConfig {
            max_pending: 2,
            ..manual()
        };
        let (writer, _task) = ProfileWriter::spawn_with(store, config);
        writer.queue(record("demo", "v1", 1, 1));
        writer.queue(record("demo", "v2", 2, 1));
        writer.queue(record("demo", "v3", 3, 1));
        writer.queue(record("demo", "v1", 1, 9));
        assert_eq!((writer.pending(), writer.dropped()), (2, 1));
        assert_eq!(writer.pending_profile("demo", "v1"), Some(profile(1, 9)));
        assert_eq!(writer.pending_profile("demo", "v3"), None);
    }

    #[tokio::test]
    async fn the_threshold_triggers_a_flush() {
        let (_dir, store) = open_temp();
        let config = ProfileWriterConfig {
            flush_threshold: 3,
            ..manual()
        };
        let (writer, _task) = ProfileWriter::spawn_with(store.clone(), config);
        writer.queue(record("demo", "v1", 1, 1));
        writer.queue(record("demo", "v2", 2, 1));
        writer.queue(record("demo", "v3", 3, 1));
        eventually("the threshold flush", || writer.written() == 3).await;
        assert!(store.load_profile("demo", "v3").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_interval_triggers_a_flush() {
        let (_dir, store) = open_temp();
        let config = ProfileWriterConfig {
            flush_interval: Duration::from_millis(10),
            ..manual()
        };
        let (writer, _task) = ProfileWriter::spawn_with(store, config);
        writer.queue(record("demo", "v1", 1, 1));
        eventually("the interval flush", || writer.written() == 1).await;
    }

    #[tokio::test]
    async fn dropping_the_writer_flushes_and_stops_the_task() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
            let (writer, task) = ProfileWriter::spawn_with(store, manual());
            let clone = writer.clone();
            writer.queue(record("demo", "v1", 1, 4));
            drop(writer);
            clone.queue(record("demo", "v2", 2, 1));
            drop(clone);
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the writer task should stop once every handle is dropped")
                .unwrap();
        }
        // The task has released the database, so it can be opened again.
        let store = RedbStore::open_blocking(dir.path()).unwrap();
        assert_eq!(
            store.load_profile("demo", "v1").await.unwrap(),
            Some(profile(1, 4))
        );
        assert_eq!(
            store.load_profile("demo", "v2").await.unwrap(),
            Some(profile(2, 1))
        );
    }

    #[tokio::test]
    async fn a_batch_being_written_is_still_visible() {
        let (_dir, inner) = open_temp();
        let store = Arc::new(GatedStore::new(inner));
        let (writer, _task) = ProfileWriter::spawn_with(store.clone(), manual());
        writer.queue(record("demo", "v1", 1, 1));
        let flushing = tokio::spawn({
            let writer = writer.clone();
            async move { writer.flush().await }
        });
        eventually("the batch to leave the queue", || writer.pending() == 0).await;
        assert_eq!(writer.pending_profile("demo", "v1"), Some(profile(1, 1)));
        store.gate.add_permits(1);
        assert_eq!(flushing.await.unwrap().unwrap(), 1);
        assert_eq!(writer.pending_profile("demo", "v1"), None);
        assert_eq!(
            writer.profile("demo", "v1").await.unwrap(),
            Some(profile(1, 1))
        );
    }

    #[tokio::test]
    async fn a_failed_flush_requeues_without_undoing_newer_updates() {
        let (_dir, inner) = open_temp();
        let store = Arc::new(GatedStore::new(inner));
        store.gate.add_permits(100);
        store.fail.store(true, Ordering::SeqCst);
        let (writer, _task) = ProfileWriter::spawn_with(store.clone(), manual());
        writer.queue(record("demo", "v1", 1, 1));
        writer.queue(record("demo", "v2", 2, 1));
        let err = writer.flush().await.unwrap_err();
        assert_eq!(err.to_string(), "storage I/O error: disk full");
        assert_eq!((writer.pending(), writer.written()), (2, 0));

        writer.queue(record("demo", "v1", 1, 2));
        store.fail.store(false, Ordering::SeqCst);
        assert_eq!(writer.flush().await.unwrap(), 2);
        assert_eq!(
            store.load_profile("demo", "v1").await.unwrap(),
            Some(profile(1, 2))
        );
        assert_eq!(
            store.load_profile("demo", "v2").await.unwrap(),
            Some(profile(2, 1))
        );
    }

    #[tokio::test]
    async fn visitor_numbers_continue_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
            let numbers = VisitorNumbers::load(store.as_ref()).await.unwrap();
            let (writer, task) = ProfileWriter::spawn_with(store, manual());
            for visitor in ["a", "b", "c"] {
                let number = numbers.next("demo");
                writer.queue(record("demo", visitor, number, 1));
            }
            assert_eq!(numbers.next("other"), 1);
            assert_eq!(numbers.current("demo"), 3);
            writer.flush().await.unwrap();
            drop(writer);
            task.await.unwrap();
        }
        let store = RedbStore::open_blocking(dir.path()).unwrap();
        let numbers = VisitorNumbers::load(&store).await.unwrap();
        assert_eq!(numbers.current("demo"), 3);
        assert_eq!(numbers.next("demo"), 4);
        // "other" handed out a number but saved no profile, so it starts over.
        assert_eq!(numbers.next("other"), 1);
        assert_eq!(numbers.next("fresh"), 1);
        numbers.observe("demo", 10);
        numbers.observe("demo", 2);
        numbers.observe("seen", 7);
        assert_eq!((numbers.next("demo"), numbers.next("seen")), (11, 8));
    }

    #[test]
    fn visitor_numbers_are_unique_across_threads() {
        let numbers = Arc::new(VisitorNumbers::from_maxima([("demo".to_string(), 100)]));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let numbers = Arc::clone(&numbers);
                std::thread::spawn(move || {
                    (0..1000).map(|_| numbers.next("demo")).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (101..=4100).collect::<Vec<_>>());
    }
}
