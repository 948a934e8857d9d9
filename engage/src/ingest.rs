//! The ingest pipeline: a validated beacon in, the presence table updated, the durable profile
//! written behind.
//!
//! The hot path is one call into the tracker: a visitor already in memory with the same visit is
//! updated in place. Only a visitor the tracker does not hold (new, back after leaving memory, or
//! starting a new visit) costs a profile read, from the write-behind queue first and then the
//! store. New visitors get their number from in-memory counters, so no beacon waits for a disk
//! write. A recorded beacon is then handed to the trigger engine, which returns at once for a
//! site without triggers.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracker::{Beacon, KnownProfile, Observation, Presence};

use crate::conversations::Conversations;
use crate::error::StoreError;
use crate::model::ProfileRecord;
use crate::profiles::{ProfileWriter, VisitorNumbers};
use crate::store::Store;
use crate::triggers::Triggers;

/// What became of a beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The presence table was updated.
    Recorded,
    /// A crawler: counted by the caller, never listed.
    Crawler,
    /// Nothing to update (a leave signal for a visitor no longer in memory).
    Ignored,
}

#[derive(Debug)]
pub struct Ingest {
    presence: Arc<Presence>,
    store: Arc<dyn Store>,
    writer: ProfileWriter,
    writer_task: parking_lot::Mutex<Option<JoinHandle<()>>>,
    numbers: VisitorNumbers,
    /// Blocks, so a blocked visitor coming back into memory is flagged at once.
    conversations: Arc<Conversations>,
    /// The trigger engine, told about every recorded beacon.
    triggers: Option<Arc<Triggers>>,
}

impl Ingest {
    /// Seeds the visitor-number counters from the store and starts the profile writer.
    pub async fn start(
        presence: Arc<Presence>,
        store: Arc<dyn Store>,
        conversations: Arc<Conversations>,
    ) -> Result<Ingest, StoreError> {
        let numbers = VisitorNumbers::load(&*store).await?;
        let (writer, writer_task) = ProfileWriter::spawn(Arc::clone(&store));
        Ok(Ingest {
            presence,
            store,
            writer,
            writer_task: parking_lot::Mutex::new(Some(writer_task)),
            numbers,
            conversations,
            triggers: None,
        })
    }

    /// Hands every recorded beacon to the trigger engine from now on
    /// ([`Triggers::on_beacon`]). Sites without triggers cost it one map lookup.
    pub fn with_triggers(mut self, triggers: Arc<Triggers>) -> Ingest {
        self.triggers = Some(triggers);
        self
    }

    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Applies one beacon.
    pub async fn record(&self, beacon: &Beacon<'_>) -> Result<IngestOutcome, StoreError> {
        let observation = match self.presence.observe(beacon) {
            Observation::NeedsProfile => {
                let profile = self.load_profile(beacon).await?;
                self.presence.start_visit(beacon, &profile)
            }
            observation => observation,
        };
        Ok(match observation {
            Observation::Recorded {
                persist,
                visit_started,
            } => {
                // The visitor entered memory, or a visit started (perhaps from a new address):
                // carry over a block by visitor or IP. An in-memory check, and rare: not on
                // every beacon.
                if visit_started
                    && self.conversations.is_blocked(
                        beacon.site,
                        beacon.visitor_id,
                        Some(beacon.ip),
                    )
                {
                    self.presence
                        .set_blocked(beacon.site, beacon.visitor_id, true);
                }
                if let Some(profile) = persist {
                    self.writer.queue(ProfileRecord {
                        site: beacon.site.to_owned(),
                        visitor_id: beacon.visitor_id.to_owned(),
                        profile,
                    });
                }
                if let Some(triggers) = &self.triggers {
                    triggers.on_beacon(beacon, visit_started).await;
                }
                IngestOutcome::Recorded
            }
            Observation::Crawler => IngestOutcome::Crawler,
            // `start_visit` never asks for a profile again; treat it like nothing to do.
            Observation::Ignored | Observation::NeedsProfile => IngestOutcome::Ignored,
        })
    }

    async fn load_profile(&self, beacon: &Beacon<'_>) -> Result<KnownProfile, StoreError> {
        if let Some(profile) = self.writer.profile(beacon.site, beacon.visitor_id).await? {
            return Ok(profile);
        }
        Ok(KnownProfile {
            number: self.numbers.next(beacon.site),
            visits: 0,
            first_seen_ms: self.presence.now_ms(),
            last_visit_id: None,
            identity: Default::default(),
        })
    }

    /// The profile write-behind, for edits that must not race it (`Contacts`).
    pub fn profiles(&self) -> &ProfileWriter {
        &self.writer
    }

    /// Profile updates waiting to be written.
    pub fn pending_writes(&self) -> usize {
        self.writer.pending()
    }

    /// Profile updates dropped because the queue was full.
    pub fn dropped_writes(&self) -> u64 {
        self.writer.dropped()
    }

    /// Writes every pending profile and stops the writer task. Beacons recorded afterwards are
    /// not persisted, so call it once the server no longer accepts them.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.writer.flush().await?;
        let task = self.writer_task.lock().take();
        if let Some(task) = task {
            // Everything is written; the task only waits for more work.
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }
}
