//! Fire records and funnel statistics, and their write-behind.
//!
//! Every fire leaves a [`FireRecord`] for (site, visitor, trigger): the latest fire, which the
//! limits are judged by and which follows the message through the funnel (delivered, seen,
//! replied, goal), each step counted once. Counters are kept per (trigger, variant or control,
//! UTC day of the fire): a step is counted on the day of the fire it belongs to, so a period's
//! rates compare like with like.
//!
//! Both are written behind: changes collect in memory and a task writes them in one
//! transaction about once a second (and on shutdown), so a fire never waits for a disk write
//! and a busy site costs one commit a second, not one per fire. Queries add what is still
//! pending, so they are never behind. A crash loses at most the last second of records.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::Store;

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of an instant.
pub fn utc_day(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(DAY_MS).max(0)).unwrap_or(u32::MAX)
}

/// The funnel counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funnel {
    pub fired: u64,
    pub delivered: u64,
    pub seen: u64,
    pub replied: u64,
    pub goal: u64,
}

impl Funnel {
    pub(crate) fn add(&mut self, other: &Funnel) {
        self.fired += other.fired;
        self.delivered += other.delivered;
        self.seen += other.seen;
        self.replied += other.replied;
        self.goal += other.goal;
    }

    /// Each later step as a fraction of `fired` (all 0 when nothing fired).
    pub fn rates(&self) -> Rates {
        let of = |count: u64| {
            if self.fired == 0 {
                0.0
            } else {
                count as f64 / self.fired as f64
            }
        };
        Rates {
            delivered: of(self.delivered),
            seen: of(self.seen),
            replied: of(self.replied),
            goal: of(self.goal),
        }
    }
}

/// Funnel steps as fractions of `fired`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub delivered: f64,
    pub seen: f64,
    pub replied: f64,
    pub goal: f64,
}

/// A step of the funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Fired,
    Delivered,
    Seen,
    Replied,
    Goal,
}

impl Step {
    fn add_to(self, funnel: &mut Funnel) {
        match self {
            Step::Fired => funnel.fired += 1,
            Step::Delivered => funnel.delivered += 1,
            Step::Seen => funnel.seen += 1,
            Step::Replied => funnel.replied += 1,
            Step::Goal => funnel.goal += 1,
        }
    }
}

/// The latest fire of one trigger for one visitor, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireRecord {
    pub site: String,
    pub visitor_id: String,
    pub trigger_id: u64,
    /// Wall-clock time of the fire.
    pub fired_ms: i64,
    /// The variant sent; `None` for the control group.
    pub variant: Option<String>,
    /// The visitor's visit number at the fire (visits are counted durably, so this names the
    /// visit across restarts): "once per visit" compares it.
    pub visit: u32,
    /// Fires of this trigger for this visitor so far, this one included.
    pub count: u32,
    pub conversation_id: Option<u64>,
    #[serde(default)]
    pub delivered: bool,
    #[serde(default)]
    pub seen: bool,
    #[serde(default)]
    pub replied: bool,
    #[serde(default)]
    pub goal: bool,
}

/// Counter increments for one (site, trigger, day, variant), as written to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsDelta {
    pub site: String,
    pub trigger_id: u64,
    pub day: u32,
    /// `None` for the control group.
    pub variant: Option<String>,
    pub counts: Funnel,
}

/// Stored counters of one (trigger, day, variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRow {
    pub day: u32,
    pub variant: Option<String>,
    pub counts: Funnel,
}

/// One variant's (or the control group's) funnel over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantStats {
    /// `None` is the control group.
    pub variant: Option<String>,
    #[serde(flatten)]
    pub counts: Funnel,
    pub rates: Rates,
}

/// The funnel totals over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TotalStats {
    #[serde(flatten)]
    pub counts: Funnel,
    pub rates: Rates,
}

/// A trigger's funnel over `[from_ms, to_ms)`, as the stats API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerStats {
    pub trigger_id: u64,
    #[serde(rename = "from")]
    pub from_ms: i64,
    #[serde(rename = "to")]
    pub to_ms: i64,
    /// Variants in the trigger's order, then any variant no longer in it, then the control
    /// group (when it has fired or the trigger has one).
    pub variants: Vec<VariantStats>,
    pub total: TotalStats,
}

type DeltaKey = (String, u64, u32, Option<String>);

#[derive(Debug, Default)]
struct Pending {
    /// site → visitor → the visitor's changed records (one per trigger), so a visitor's
    /// pending records are found with two lookups by `&str` and no allocation.
    fires: HashMap<String, HashMap<String, Vec<FireRecord>>>,
    counts: HashMap<DeltaKey, Funnel, super::FastHash>,
}

/// Most fire records written in one transaction: bounds each commit's work and memory.
const FLUSH_CHUNK: usize = 4096;

/// Changes waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pending: Mutex<Pending>,
    /// Serialises flushes, so two cannot write the same changes or reorder a record's versions.
    flushing: tokio::sync::Mutex<()>,
}

impl Recorder {
    /// Queues the record's current state.
    pub(crate) fn record(&self, record: &FireRecord) {
        let mut pending = self.pending.lock();
        let records = match pending.fires.get_mut(&record.site) {
            Some(visitors) => visitors,
            None => pending.fires.entry(record.site.clone()).or_default(),
        };
        let records = match records.get_mut(&record.visitor_id) {
            Some(records) => records,
            None => records.entry(record.visitor_id.clone()).or_default(),
        };
        match records
            .iter_mut()
            .find(|pending| pending.trigger_id == record.trigger_id)
        {
            Some(pending) => *pending = record.clone(),
            None => records.push(record.clone()),
        }
    }

    /// Counts `step` for the fire `record` describes.
    pub(crate) fn count(&self, record: &FireRecord, step: Step) {
        let key = (
            record.site.clone(),
            record.trigger_id,
            utc_day(record.fired_ms),
            record.variant.clone(),
        );
        step.add_to(self.pending.lock().counts.entry(key).or_default());
    }

    /// A visitor's fire records not written yet.
    pub(crate) fn pending_fires(&self, site: &str, visitor_id: &str) -> Vec<FireRecord> {
        self.pending
            .lock()
            .fires
            .get(site)
            .and_then(|visitors| visitors.get(visitor_id))
            .cloned()
            .unwrap_or_default()
    }

    /// Counters not written yet for one trigger, as rows.
    pub(crate) fn pending_rows(&self, site: &str, trigger_id: u64) -> Vec<StatsRow> {
        self.pending
            .lock()
            .counts
            .iter()
            .filter(|((row_site, id, _, _), _)| row_site == site && *id == trigger_id)
            .map(|((_, _, day, variant), counts)| StatsRow {
                day: *day,
                variant: variant.clone(),
                counts: *counts,
            })
            .collect()
    }

    /// Writes everything pending, in transactions of at most [`FLUSH_CHUNK`] records. The
    /// queue's lock is held only to take its contents; collecting, encoding, writing and
    /// dropping the records all happen on the blocking pool, so a flush never occupies an async
    /// worker (where it delayed due wake-ups by hundreds of milliseconds). On failure the
    /// changes not written go back into the queue (newer versions of a record win), to be
    /// written by the next flush.
    pub(crate) async fn flush(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.pending.lock());
        if taken.fires.is_empty() && taken.counts.is_empty() {
            return Ok(());
        }
        let store = Arc::clone(store);
        let runtime = tokio::runtime::Handle::current();
        let written = tokio::task::spawn_blocking(move || {
            let fires: Vec<FireRecord> = taken
                .fires
                .into_values()
                .flat_map(|visitors| visitors.into_values().flatten())
                .collect();
            let deltas: Vec<StatsDelta> = taken
                .counts
                .into_iter()
                .map(|((site, trigger_id, day, variant), counts)| StatsDelta {
                    site,
                    trigger_id,
                    day,
                    variant,
                    counts,
                })
                .collect();
            let chunks = fires.len().div_ceil(FLUSH_CHUNK).max(1);
            for chunk in 0..chunks {
                let from = chunk * FLUSH_CHUNK;
                let to = (from + FLUSH_CHUNK).min(fires.len());
                // The counters go with the last chunk.
                let counts: &[StatsDelta] = if chunk + 1 == chunks { &deltas } else { &[] };
                if let Err(error) =
                    runtime.block_on(store.save_trigger_activity(&fires[from..to], counts))
                {
                    let mut fires = fires;
                    return Err((error, fires.split_off(from), deltas));
                }
            }
            Ok(())
        })
        .await
        .map_err(|error| StoreError::Db(format!("trigger write-behind failed: {error}")))?;
        let Err((error, fires, deltas)) = written else {
            return Ok(());
        };
        let mut pending = self.pending.lock();
        for record in fires {
            let newer = pending
                .fires
                .entry(record.site.clone())
                .or_default()
                .entry(record.visitor_id.clone())
                .or_default();
            if !newer
                .iter()
                .any(|known| known.trigger_id == record.trigger_id)
            {
                newer.push(record);
            }
        }
        for delta in deltas {
            let key = (delta.site, delta.trigger_id, delta.day, delta.variant);
            pending.counts.entry(key).or_default().add(&delta.counts);
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::redb_store::RedbStore;
    use crate::test_store::GatedStore;

    const SITE: &str = "demo";
    /// The first day fires are on; they spread over this day and the next.
    const DAY0: u32 = 20_000;
    /// Fire records queued: the first two chunks full, and a third partial one.
    const RECORDS: usize = 2 * FLUSH_CHUNK + 500;

    type Counters = HashMap<(u64, u32, Option<String>), Funnel>;

    /// Fire record `i`: a visitor of its own, and one of 2 triggers × 2 days × 3 variants
    /// (control included), so every combination of counters is used.
    fn fire(i: usize) -> FireRecord {
        let variant = match i % 3 {
            0 => Some("a".to_string()),
            1 => Some("b".to_string()),
            _ => None,
        };
        let day = i64::from(DAY0) + (i / 2 % 2) as i64;
        FireRecord {
            site: SITE.into(),
            visitor_id: format!("v{i}"),
            trigger_id: 1 + (i % 2) as u64,
            fired_ms: day * DAY_MS + i as i64,
            variant,
            visit: 1,
            count: 1,
            conversation_id: None,
            delivered: false,
            seen: false,
            replied: false,
            goal: false,
        }
    }

    /// Counts `step` in the recorder and in `expected`.
    fn count(recorder: &Recorder, expected: &mut Counters, record: &FireRecord, step: Step) {
        recorder.count(record, step);
        let key = (
            record.trigger_id,
            utc_day(record.fired_ms),
            record.variant.clone(),
        );
        let funnel = expected.entry(key).or_default();
        match step {
            Step::Fired => funnel.fired += 1,
            Step::Delivered => funnel.delivered += 1,
            Step::Seen => funnel.seen += 1,
            Step::Replied => funnel.replied += 1,
            Step::Goal => funnel.goal += 1,
        }
    }

    fn of_trigger(counters: &Counters, trigger_id: u64) -> Counters {
        counters
            .iter()
            .filter(|((id, _, _), _)| *id == trigger_id)
            .map(|(key, funnel)| (key.clone(), *funnel))
            .collect()
    }

    fn rows_as_counters(trigger_id: u64, rows: Vec<StatsRow>) -> Counters {
        let mut counters = Counters::new();
        for row in rows {
            let previous = counters.insert((trigger_id, row.day, row.variant), row.counts);
            assert_eq!(previous, None, "one row per (day, variant)");
        }
        counters
    }

    async fn stored_counters(store: &RedbStore, trigger_id: u64) -> Counters {
        let rows = store
            .trigger_stats(SITE, trigger_id, DAY0 - 10, DAY0 + 10)
            .await
            .unwrap();
        rows_as_counters(trigger_id, rows)
    }

    /// Where each record is: written (and no longer pending), or pending (and not written).
    /// Returns the ids of the records written.
    async fn written_or_pending(
        store: &RedbStore,
        recorder: &Recorder,
        records: &[FireRecord],
    ) -> HashSet<String> {
        let mut written = HashSet::new();
        for record in records {
            let stored = store.trigger_fires(SITE, &record.visitor_id).await.unwrap();
            let pending = recorder.pending_fires(SITE, &record.visitor_id);
            match (stored.as_slice(), pending.as_slice()) {
                ([stored], []) => {
                    assert_eq!(stored, record);
                    written.insert(record.visitor_id.clone());
                }
                ([], [pending]) => assert_eq!(pending, record),
                _ => panic!(
                    "{} should be either written or pending: written {stored:?}, pending \
                     {pending:?}",
                    record.visitor_id
                ),
            }
        }
        written
    }

    /// Waits until the store holds `n` visitors' fire records, failing after 10 s.
    async fn wait_for_written(store: &RedbStore, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let written = store.trigger_fired_visitors(SITE).await.unwrap().len();
            if written == n {
                return;
            }
            assert!(
                written < n && tokio::time::Instant::now() < deadline,
                "waiting for {n} written fire records, found {written}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_failed_chunk_requeues_the_rest_and_the_retry_writes_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
        let gated = Arc::new(GatedStore::new(Arc::clone(&inner)));
        let store: Arc<dyn Store> = gated.clone();
        let recorder = Arc::new(Recorder::default());
        let mut expected = Counters::new();
        let mut records: Vec<FireRecord> = (0..RECORDS).map(fire).collect();
        for (i, record) in records.iter().enumerate() {
            recorder.record(record);
            count(&recorder, &mut expected, record, Step::Fired);
            if i % 4 == 0 {
                count(&recorder, &mut expected, record, Step::Delivered);
            }
            if i % 8 == 0 {
                count(&recorder, &mut expected, record, Step::Seen);
            }
            if i % 16 == 0 {
                count(&recorder, &mut expected, record, Step::Replied);
            }
            if i % 32 == 0 {
                count(&recorder, &mut expected, record, Step::Goal);
            }
        }
        assert_eq!(expected.len(), 12);

        // The first chunk is written, the second fails: the first stays written, everything
        // else (the counters, which go with the last chunk, included) is pending again.
        gated.fail_trigger_activity_after.store(1, Ordering::SeqCst);
        let error = recorder.flush(&store).await.unwrap_err();
        assert_eq!(error.to_string(), "storage I/O error: disk full");
        let written = written_or_pending(&inner, &recorder, &records).await;
        assert_eq!(written.len(), FLUSH_CHUNK);
        for trigger_id in [1, 2] {
            assert_eq!(stored_counters(&inner, trigger_id).await, Counters::new());
            assert_eq!(
                rows_as_counters(trigger_id, recorder.pending_rows(SITE, trigger_id)),
                of_trigger(&expected, trigger_id)
            );
        }

        // A newer version of a requeued record replaces it in the queue.
        let first = records
            .iter()
            .position(|record| !written.contains(&record.visitor_id))
            .unwrap();
        records[first].delivered = true;
        records[first].conversation_id = Some(7);
        recorder.record(&records[first]);
        count(&recorder, &mut expected, &records[first], Step::Delivered);
        assert_eq!(
            recorder.pending_fires(SITE, &records[first].visitor_id),
            [records[first].clone()]
        );

        // Fail again, but this time queue a newer version of a record while the flush that
        // took it is in flight: the first chunk of what is left is written, the store holds
        // the second until a permit is added, and then fails it. The record queued meanwhile
        // must win over the older one the failed flush puts back.
        gated.gate_trigger_activity.store(true, Ordering::SeqCst);
        gated.fail_trigger_activity_after.store(1, Ordering::SeqCst);
        gated.gate.add_permits(1);
        let flushing = tokio::spawn({
            let recorder = Arc::clone(&recorder);
            let store = Arc::clone(&store);
            async move { recorder.flush(&store).await }
        });
        wait_for_written(&inner, 2 * FLUSH_CHUNK).await;
        let stored: HashSet<String> = inner
            .trigger_fired_visitors(SITE)
            .await
            .unwrap()
            .into_iter()
            .collect();
        // Neither written nor pending: taken by the flush and not put back yet.
        let in_flight: Vec<usize> = (0..RECORDS)
            .filter(|&i| {
                let visitor_id = &records[i].visitor_id;
                !stored.contains(visitor_id) && recorder.pending_fires(SITE, visitor_id).is_empty()
            })
            .collect();
        assert_eq!(in_flight.len(), RECORDS - 2 * FLUSH_CHUNK);
        let second = in_flight[in_flight.len() / 2];
        records[second].seen = true;
        records[second].delivered = true;
        records[second].count = 2;
        recorder.record(&records[second]);
        count(&recorder, &mut expected, &records[second], Step::Seen);
        gated.gate.add_permits(1);
        let error = flushing.await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "storage I/O error: disk full");
        let written = written_or_pending(&inner, &recorder, &records).await;
        assert_eq!(written.len(), 2 * FLUSH_CHUNK);
        assert!(!written.contains(&records[second].visitor_id));
        for trigger_id in [1, 2] {
            assert_eq!(stored_counters(&inner, trigger_id).await, Counters::new());
            assert_eq!(
                rows_as_counters(trigger_id, recorder.pending_rows(SITE, trigger_id)),
                of_trigger(&expected, trigger_id)
            );
        }

        // The store recovers: one flush writes everything, each record in its newest version
        // and each counter once.
        gated.gate_trigger_activity.store(false, Ordering::SeqCst);
        gated
            .fail_trigger_activity_after
            .store(usize::MAX, Ordering::SeqCst);
        recorder.flush(&store).await.unwrap();
        assert_eq!(
            written_or_pending(&inner, &recorder, &records).await.len(),
            RECORDS
        );
        for trigger_id in [1, 2] {
            assert_eq!(recorder.pending_rows(SITE, trigger_id), []);
            assert_eq!(
                stored_counters(&inner, trigger_id).await,
                of_trigger(&expected, trigger_id)
            );
        }
        // Nothing is left to write twice.
        recorder.flush(&store).await.unwrap();
        for trigger_id in [1, 2] {
            assert_eq!(
                stored_counters(&inner, trigger_id).await,
                of_trigger(&expected, trigger_id)
            );
        }
    }

    #[test]
    fn days_and_rates() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(DAY_MS - 1), 0);
        assert_eq!(utc_day(DAY_MS), 1);
        assert_eq!(utc_day(-5), 0);
        let funnel = Funnel {
            fired: 4,
            delivered: 3,
            seen: 2,
            replied: 1,
            goal: 0,
        };
        let rates = funnel.rates();
        assert_eq!(
            (rates.delivered, rates.seen, rates.replied, rates.goal),
            (0.75, 0.5, 0.25, 0.0)
        );
        assert_eq!(Funnel::default().rates().delivered, 0.0);
    }
}
