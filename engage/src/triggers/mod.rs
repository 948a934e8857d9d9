//! Triggers (issue 4): proactive messages evaluated on the server, against the live presence
//! table, with limits, A/B variants and funnel statistics.
//!
//! # Shape
//!
//! [`Triggers`] is the service the dashboards call: CRUD with validation (errors name the JSON
//! path), "who matches right now" ([`Triggers::matches_now`], [`Triggers::preview`]),
//! placeholder preview ([`Triggers::render`]), test-fire, statistics and the field catalogue.
//! [`crate::Ingest`] calls [`Triggers::on_beacon`] after every recorded beacon; a task started by
//! [`Triggers::spawn_tasks`] handles time-based wake-ups, writes records behind and follows the
//! conversation event bus for "seen" and "replied".
//!
//! # One evaluation
//!
//! A beacon that changed the visitor (page view, identify, track, visit start) or a due
//! wake-up evaluates the visitor once, under its shard's read lock (a borrowed
//! [`tracker::VisitorView`], nothing copied):
//!
//! 1. a site without triggers stops at one map lookup;
//! 2. a blocked visitor, one on chat (an open conversation) or one who left gets nothing;
//! 3. the index ([`rules`]) names the candidate triggers, in priority order;
//! 4. each candidate's conditions answer now / from T / no; the first that holds now, passes
//!    its limit and finds the widget showing on this page fires — at most one per evaluation;
//!    the earliest "from T" among those ahead of it becomes the visitor's one wake-up.
//!
//! "Who matches right now" asks the same questions (steps 2 and 4, the same functions) of every
//! live visitor for one trigger.
//!
//! # A fire
//!
//! The fire is recorded at once (the limits see it on the next beacon; the record and the
//! counters are written behind). The visitor is assigned a variant or the control group by a
//! keyed hash of (trigger, visitor), so the same visitor always lands in the same arm. Control
//! gets nothing. Otherwise a task waits `delay_secs`, checks the visitor again (still live,
//! same visit, not blocked, no open conversation), renders the placeholders and sends the
//! message with [`Conversations::start_by_trigger_with`]; on success the visitor is flagged
//! AutoMessaged. One proactive message at a time: while a fire's message waits for its delay,
//! the visitor gets no other fire (once it is sent the visitor is on chat, which has the same
//! effect; if it is given up, the next evaluation may fire again).
//!
//! # Edits
//!
//! A site's triggers are compiled into an immutable rule set swapped whole on every edit
//! (behind a lock held only to clone an `Arc`), so evaluation never waits for an edit.

mod conditions;
mod error;
mod model;
mod placeholders;
mod rules;
mod stats;
mod text;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracker::{Beacon, BeaconKind, Presence, Segment, VisitorSnapshot, VisitorView};

pub use conditions::{
    FieldInfo, FieldType, MAX_CONDITIONS, MAX_DEPTH, MAX_FIELD_NAME_CHARS, MAX_IN_VALUES,
    MAX_VALUE_CHARS,
};
pub use error::TriggerError;
pub use model::{
    Condition, ConditionNode, Goal, Limit, MAX_CONTROL_PERCENT, MAX_COOLDOWN_SECS, MAX_DELAY_SECS,
    MAX_GOAL_WINDOW_SECS, MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_VARIANTS, MAX_WEIGHT,
    PropertyTest, Sender, Trigger, Variant,
};
pub use placeholders::{PLACEHOLDERS, PlaceholderData, Template};
pub use stats::{
    FireRecord, Funnel, Rates, StatsDelta, StatsRow, TotalStats, TriggerStats, VariantStats,
    utc_day,
};

use conditions::{Env, Truth};
use rules::{CompiledTrigger, SiteRules};
use stats::{Recorder, Step};
use timers::{Due, Timers};

/// The hasher of the engine's per-beacon maps: keyed and seeded per map, much faster than
/// SipHash on the short strings (site keys, visitor ids) looked up on every beacon.
pub(crate) type FastHash = foldhash::quality::RandomState;

use crate::clock::Clock;
use crate::conversations::{
    Author, ConversationEvent, ConversationOrigin, Conversations, StartDetails, TriggerMessage,
    VisitorRef,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::widget::{AfterHoursMode, PageMode, Visibility, WidgetSettings, availability};

/// What lives outside engage that triggers need to know: the dashboards implement it.
pub trait TriggerContext: Send + Sync + std::fmt::Debug {
    /// Whether at least one agent is online for the site (as the widget's availability
    /// counts them). Called at most once per evaluation, and only by triggers that ask.
    fn agents_online(&self, site: &str) -> bool;
}

/// Most visitors [`Triggers::matches_now`] and [`Triggers::preview`] describe.
pub const MAX_MATCH_VISITORS: usize = 200;
/// Widget settings are re-read at least this often, besides [`Triggers::reload_widget_settings`].
const WIDGET_SETTINGS_TTL_MS: i64 = 10_000;
/// Wake-ups handled per batch, between which the timer task yields.
const TIMER_BATCH: usize = 512;
const EVENT_CAPACITY: usize = 4096;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Something the engine did, for observers (metrics, tests, benchmarks). Published on a
/// broadcast channel; a receiver that falls behind misses events (`RecvError::Lagged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerEvent {
    /// A trigger fired for a visitor (and was recorded). `variant` is `None` for the control
    /// group; `due_ms` is the wake-up's due time when a timer caused the fire.
    Fired {
        site: Arc<str>,
        trigger_id: u64,
        visitor_id: String,
        variant: Option<String>,
        at_ms: i64,
        due_ms: Option<i64>,
    },
    /// A fired trigger's message was sent.
    Delivered {
        site: Arc<str>,
        trigger_id: u64,
        visitor_id: String,
        conversation_id: u64,
    },
}

/// The field and placeholder catalogue for the condition builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalogue {
    pub fields: Vec<FieldInfo>,
    pub placeholders: Vec<&'static str>,
}

/// The live visitors a trigger would fire for now.
#[derive(Debug, Clone, Serialize)]
pub struct Matches {
    pub count: usize,
    /// Up to [`MAX_MATCH_VISITORS`], newest activity first.
    pub visitors: Vec<VisitorSnapshot>,
}

/// What one evaluation of a visitor decided (see [`Triggers::evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// The trigger that would fire now.
    pub fire: Option<u64>,
    /// When (tracker clock, ms) a time-based trigger ahead of it would start to hold.
    pub wake_at_ms: Option<i64>,
}

/// A site's widget settings as the engine uses them.
#[derive(Debug)]
struct WidgetState {
    settings: WidgetSettings,
    tz: chrono_tz::Tz,
    loaded_ms: i64,
}

/// One site's engine state.
#[derive(Debug)]
struct SiteState {
    key: Arc<str>,
    rules: RwLock<Arc<SiteRules>>,
    widget: RwLock<Option<Arc<WidgetState>>>,
    /// Fire records of visitors evaluated lately (loaded on first need, dropped when the
    /// visitor leaves memory), so limits are judged without a store read per beacon.
    fires: DashMap<Box<str>, Vec<FireRecord>, FastHash>,
    /// Hashes of the ids of visitors who have (or may have) a fire record: a visitor not in it
    /// has none, and needs no store read. Loaded at start, grown by every fire.
    fired: VisitorSet,
    /// Hashes of the ids of visitors with a fire whose message waits for its delay: one
    /// proactive message at a time, so they get no other fire until it is sent or given up.
    awaiting: VisitorSet,
    visitor_hasher: FastHash,
}

/// Shards of [`SiteState::fired`] (and of the fire-record cache): a table growing towards a
/// million visitors then rehashes 1/64 of them at a time, never all in one go under one lock.
const SHARDS: usize = 64;

/// A set of visitor-id hashes, split in [`SHARDS`] independently locked and resized tables.
#[derive(Debug)]
struct VisitorSet {
    shards: Box<[RwLock<HashSet<u64, BuildNoHash>>]>,
}

/// The set's keys are foldhash hashes already: hashing them again is wasted work.
type BuildNoHash = std::hash::BuildHasherDefault<NoHash>;

#[derive(Debug, Default)]
struct NoHash(u64);

impl std::hash::Hasher for NoHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl VisitorSet {
    fn new() -> VisitorSet {
        VisitorSet {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<HashSet<u64, BuildNoHash>> {
        // The top bits pick the shard; the table uses the low ones.
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    fn insert(&self, hash: u64) {
        let shard = self.shard(hash);
        if !shard.read().contains(&hash) {
            shard.write().insert(hash);
        }
    }

    fn contains(&self, hash: u64) -> bool {
        self.shard(hash).read().contains(&hash)
    }

    fn remove(&self, hash: u64) {
        self.shard(hash).write().remove(&hash);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.read().is_empty())
    }
}

impl SiteState {
    fn new(key: Arc<str>, rules: SiteRules) -> SiteState {
        SiteState {
            key,
            rules: RwLock::new(Arc::new(rules)),
            widget: RwLock::new(None),
            fires: DashMap::with_hasher_and_shard_amount(FastHash::default(), SHARDS),
            fired: VisitorSet::new(),
            awaiting: VisitorSet::new(),
            visitor_hasher: FastHash::default(),
        }
    }

    /// Whether a fire's message for the visitor waits for its delay.
    fn is_awaiting(&self, visitor_id: &str) -> bool {
        self.awaiting
            .contains(self.visitor_hasher.hash_one(visitor_id))
    }

    /// Marks the visitor as having fire records.
    fn note_fired(&self, visitor_id: &str) {
        let hash = self.visitor_hasher.hash_one(visitor_id);
        self.fired.insert(hash);
    }

    /// False when the visitor certainly has no fire record.
    fn may_have_fired(&self, visitor_id: &str) -> bool {
        let hash = self.visitor_hasher.hash_one(visitor_id);
        self.fired.contains(hash)
    }

    async fn load_fired(&self, store: &dyn Store) -> Result<(), StoreError> {
        let visitors = store.trigger_fired_visitors(&self.key).await?;
        for visitor_id in visitors {
            self.fired
                .insert(self.visitor_hasher.hash_one(visitor_id.as_str()));
        }
        Ok(())
    }

    fn rules(&self) -> Arc<SiteRules> {
        Arc::clone(&self.rules.read())
    }
}

/// What the visitor-level checks and a decision need to carry out of the view.
#[derive(Debug, Clone, Copy)]
struct VisitInfo {
    tag: u32,
    pages: u32,
    number: u32,
}

#[derive(Debug)]
struct Verdict {
    fire: Option<Arc<CompiledTrigger>>,
    wake_at: Option<i64>,
    need_history: bool,
    visit: VisitInfo,
}

#[derive(Debug, Default)]
struct EventCounts {
    fired: AtomicU64,
    delivered: AtomicU64,
}

/// The trigger engine and its API. See the module docs.
#[derive(Debug)]
pub struct Triggers {
    me: Weak<Triggers>,
    presence: Arc<Presence>,
    store: Arc<dyn Store>,
    conversations: Arc<Conversations>,
    clock: Arc<dyn Clock>,
    context: Arc<dyn TriggerContext>,
    sites: RwLock<HashMap<Arc<str>, Arc<SiteState>, FastHash>>,
    timers: Timers,
    recorder: Recorder,
    events: broadcast::Sender<TriggerEvent>,
    counts: EventCounts,
    /// Serialises edits, so rule sets are swapped in the order the edits were stored.
    edits: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Triggers {
    /// Loads and compiles every stored trigger. No background task runs until
    /// [`Triggers::spawn_tasks`]. `clock` is the wall clock (business hours, limits,
    /// statistics); visitor times come from the presence table's own clock.
    pub async fn start(
        presence: Arc<Presence>,
        store: Arc<dyn Store>,
        conversations: Arc<Conversations>,
        clock: Arc<dyn Clock>,
        context: Arc<dyn TriggerContext>,
    ) -> Result<Arc<Triggers>, StoreError> {
        let mut by_site: HashMap<String, Vec<Arc<CompiledTrigger>>> = HashMap::new();
        for trigger in store.all_triggers().await? {
            let (site, id) = (trigger.site.clone(), trigger.id);
            match CompiledTrigger::new(trigger) {
                Ok(compiled) => by_site.entry(site).or_default().push(Arc::new(compiled)),
                Err(error) => {
                    tracing::error!(%error, site, id, "stored trigger does not compile; skipped")
                }
            }
        }
        let mut sites = HashMap::default();
        for (site, triggers) in by_site {
            let key: Arc<str> = site.into();
            let state = SiteState::new(Arc::clone(&key), SiteRules::build(triggers));
            state.load_fired(&*store).await?;
            sites.insert(key, Arc::new(state));
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Arc::new_cyclic(|me| Triggers {
            me: me.clone(),
            presence,
            store,
            conversations,
            clock,
            context,
            sites: RwLock::new(sites),
            timers: Timers::default(),
            recorder: Recorder::default(),
            events,
            counts: EventCounts::default(),
            edits: tokio::sync::Mutex::new(()),
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Starts the background tasks: time-based wake-ups, the write-behind of fire records and
    /// counters (about once a second), "seen"/"replied" from the conversation event bus, and
    /// dropping cached fire records of visitors who left memory. Stopped by
    /// [`Triggers::shutdown`].
    pub fn spawn_tasks(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let mut tasks = self.tasks.lock();
        tasks.push(tokio::spawn(Arc::clone(&me).run_timers()));
        tasks.push(tokio::spawn(Arc::clone(&me).run_flusher()));
        tasks.push(tokio::spawn(Arc::clone(&me).run_observer()));
        tasks.push(tokio::spawn(me.run_cache_sweeper()));
    }

    /// Stops the background tasks and writes every pending record and counter.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        self.flush().await
    }

    /// Writes pending fire records and counters now.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.recorder.flush(&self.store).await
    }

    /// A receiver of every [`TriggerEvent`] from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TriggerEvent> {
        self.events.subscribe()
    }

    /// The field and placeholder catalogue for the condition builder.
    pub fn fields() -> Catalogue {
        Catalogue {
            fields: conditions::catalogue(),
            placeholders: PLACEHOLDERS.to_vec(),
        }
    }

    // CRUD.

    /// A site's triggers, highest priority first, then by id.
    pub async fn list(&self, site: &str) -> Result<Vec<Trigger>, TriggerError> {
        let mut triggers = self.store.triggers(site).await?;
        triggers.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        Ok(triggers)
    }

    pub async fn get(&self, site: &str, id: u64) -> Result<Trigger, TriggerError> {
        self.store
            .trigger(site, id)
            .await?
            .ok_or_else(|| not_found_trigger(id))
    }

    /// Validates and stores a new trigger; its id, site and times are set here.
    pub async fn create(&self, site: &str, mut trigger: Trigger) -> Result<Trigger, TriggerError> {
        let now = self.clock.now_ms();
        trigger.id = 0;
        trigger.site = site.to_owned();
        trigger.created_ms = now;
        trigger.updated_ms = now;
        self.validate(site, &trigger).await?;
        let _edit = self.edits.lock().await;
        let stored = self.store.create_trigger(trigger).await?;
        self.install(site, std::slice::from_ref(&stored), None)
            .await?;
        Ok(stored)
    }

    /// Validates and stores many new triggers at once (an import): one transaction and one
    /// rebuild of the site's rule set. Nothing is stored if any is invalid; the error's path
    /// starts with the trigger's index (`[3].conditions.all[0].op: ...`).
    pub async fn create_many(
        &self,
        site: &str,
        triggers: Vec<Trigger>,
    ) -> Result<Vec<Trigger>, TriggerError> {
        let now = self.clock.now_ms();
        let mut checked = Vec::with_capacity(triggers.len());
        for (index, mut trigger) in triggers.into_iter().enumerate() {
            trigger.id = 0;
            trigger.site = site.to_owned();
            trigger.created_ms = now;
            trigger.updated_ms = now;
            self.validate(site, &trigger)
                .await
                .map_err(|error| match error {
                    TriggerError::Invalid(message) => {
                        TriggerError::Invalid(format!("[{index}].{message}"))
                    }
                    other => other,
                })?;
            checked.push(trigger);
        }
        let _edit = self.edits.lock().await;
        let stored = self.store.create_triggers(checked).await?;
        self.install(site, &stored, None).await?;
        Ok(stored)
    }

    /// Replaces a trigger (a full trigger; id, site and creation time are kept).
    pub async fn update(
        &self,
        site: &str,
        id: u64,
        mut trigger: Trigger,
    ) -> Result<Trigger, TriggerError> {
        trigger.id = id;
        trigger.site = site.to_owned();
        self.validate(site, &trigger).await?;
        let _edit = self.edits.lock().await;
        let current = self.get(site, id).await?;
        trigger.created_ms = current.created_ms;
        trigger.updated_ms = self.clock.now_ms().max(current.updated_ms);
        self.store.update_trigger(&trigger).await?;
        self.install(site, std::slice::from_ref(&trigger), None)
            .await?;
        Ok(trigger)
    }

    /// Turns a trigger on or off, or changes its priority.
    pub async fn patch(
        &self,
        site: &str,
        id: u64,
        enabled: Option<bool>,
        priority: Option<i32>,
    ) -> Result<Trigger, TriggerError> {
        let _edit = self.edits.lock().await;
        let mut trigger = self.get(site, id).await?;
        if let Some(enabled) = enabled {
            trigger.enabled = enabled;
        }
        if let Some(priority) = priority {
            trigger.priority = priority;
        }
        trigger.updated_ms = self.clock.now_ms().max(trigger.updated_ms);
        self.store.update_trigger(&trigger).await?;
        self.install(site, std::slice::from_ref(&trigger), None)
            .await?;
        Ok(trigger)
    }

    /// Deletes a trigger and its statistics.
    pub async fn delete(&self, site: &str, id: u64) -> Result<(), TriggerError> {
        let _edit = self.edits.lock().await;
        if !self.store.delete_trigger(site, id).await? {
            return Err(not_found_trigger(id));
        }
        self.install(site, &[], Some(id)).await?;
        Ok(())
    }

    /// Swaps in the site's rule set with `changed` compiled in (or `removed` left out).
    async fn install(
        &self,
        site: &str,
        changed: &[Trigger],
        removed: Option<u64>,
    ) -> Result<(), TriggerError> {
        let compiled = changed
            .iter()
            .map(|trigger| CompiledTrigger::new(trigger.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let state = match self.site_state(site) {
            Some(state) => state,
            None => {
                // Records of earlier (deleted) triggers are known before anyone evaluates.
                let key: Arc<str> = site.into();
                let state = Arc::new(SiteState::new(Arc::clone(&key), SiteRules::default()));
                state.load_fired(&*self.store).await?;
                Arc::clone(self.sites.write().entry(key).or_insert(state))
            }
        };
        let current = state.rules();
        let mut triggers: Vec<Arc<CompiledTrigger>> = current
            .by_id
            .values()
            .filter(|trigger| {
                Some(trigger.id()) != removed
                    && !compiled.iter().any(|new| new.id() == trigger.id())
            })
            .cloned()
            .collect();
        triggers.extend(compiled);
        *state.rules.write() = Arc::new(SiteRules::build(triggers));
        Ok(())
    }

    /// Checks everything about a trigger; the error names the JSON path of the first problem.
    async fn validate(&self, site: &str, trigger: &Trigger) -> Result<(), TriggerError> {
        let name_chars = trigger.name.trim().chars().count();
        if name_chars == 0 || name_chars > MAX_NAME_CHARS {
            return Err(TriggerError::invalid(
                "name",
                format_args!("1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        if trigger.delay_secs > MAX_DELAY_SECS {
            return Err(TriggerError::invalid(
                "delay_secs",
                format_args!("0 to {MAX_DELAY_SECS} seconds"),
            ));
        }
        if trigger.control_percent > MAX_CONTROL_PERCENT {
            return Err(TriggerError::invalid(
                "control_percent",
                format_args!("0 to {MAX_CONTROL_PERCENT}"),
            ));
        }
        if let Limit::Cooldown { cooldown_secs } = trigger.limit
            && !(1..=MAX_COOLDOWN_SECS).contains(&cooldown_secs)
        {
            return Err(TriggerError::invalid(
                "limit.cooldown_secs",
                format_args!("1 to {MAX_COOLDOWN_SECS} seconds"),
            ));
        }
        if let Some(goal) = &trigger.goal {
            let chars = goal.event.trim().chars().count();
            if chars == 0 || chars > MAX_FIELD_NAME_CHARS {
                return Err(TriggerError::invalid(
                    "goal.event",
                    format_args!("1 to {MAX_FIELD_NAME_CHARS} characters"),
                ));
            }
            if !(1..=MAX_GOAL_WINDOW_SECS).contains(&goal.window_secs) {
                return Err(TriggerError::invalid(
                    "goal.window_secs",
                    format_args!("1 to {MAX_GOAL_WINDOW_SECS} seconds"),
                ));
            }
        }
        if trigger.variants.is_empty() || trigger.variants.len() > MAX_VARIANTS {
            return Err(TriggerError::invalid(
                "variants",
                format_args!("1 to {MAX_VARIANTS} variants"),
            ));
        }
        for (index, variant) in trigger.variants.iter().enumerate() {
            let path = format!("variants[{index}]");
            let key_ok = (1..=16).contains(&variant.key.len())
                && variant.key.bytes().all(|byte| {
                    byte.is_ascii_lowercase()
                        || byte.is_ascii_digit()
                        || byte == b'_'
                        || byte == b'-'
                });
            if !key_ok {
                return Err(TriggerError::invalid(
                    &format!("{path}.key"),
                    "1 to 16 of a-z, 0-9, _ and -",
                ));
            }
            if trigger.variants[..index]
                .iter()
                .any(|earlier| earlier.key == variant.key)
            {
                return Err(TriggerError::invalid(
                    &format!("{path}.key"),
                    format_args!("{:?} is used by an earlier variant", variant.key),
                ));
            }
            if !(1..=MAX_WEIGHT).contains(&variant.weight) {
                return Err(TriggerError::invalid(
                    &format!("{path}.weight"),
                    format_args!("1 to {MAX_WEIGHT}"),
                ));
            }
            match &variant.author {
                Sender::Bot { bot } => {
                    let chars = bot.trim().chars().count();
                    if chars == 0 || chars > MAX_NAME_CHARS {
                        return Err(TriggerError::invalid(
                            &format!("{path}.author.bot"),
                            format_args!("1 to {MAX_NAME_CHARS} characters"),
                        ));
                    }
                }
                Sender::Agent { agent_id } => {
                    let agent = self.store.agent(*agent_id).await?;
                    if !agent.is_some_and(|agent| agent.can_access(site)) {
                        return Err(TriggerError::invalid(
                            &format!("{path}.author.agent_id"),
                            format_args!("no active agent {agent_id} with access to this site"),
                        ));
                    }
                }
            }
        }
        CompiledTrigger::new(trigger.clone()).map(|_| ())
    }

    // Evaluation.

    fn site_state(&self, site: &str) -> Option<Arc<SiteState>> {
        self.sites.read().get(site).cloned()
    }

    /// The hook [`crate::Ingest::record`] calls after a recorded beacon. `visit_started` says
    /// whether the beacon started (or resumed) a visit in memory.
    ///
    /// A site without triggers costs one map lookup. A Leave cancels the visitor's wake-up and
    /// fires nothing; a heartbeat that did not start a visit changes nothing and is skipped;
    /// a custom event may reach a goal. Everything else is evaluated.
    pub async fn on_beacon(&self, beacon: &Beacon<'_>, visit_started: bool) {
        let Some(state) = self.site_state(beacon.site) else {
            return;
        };
        // One read of the rule set serves the whole evaluation.
        let rules = state.rules();
        if rules.is_idle() {
            return;
        }
        match &beacon.kind {
            BeaconKind::Leave => {
                self.timers.cancel(beacon.site, beacon.visitor_id);
                return;
            }
            BeaconKind::Heartbeat if !visit_started => return,
            BeaconKind::Event(event) => {
                self.check_goals(&state, beacon.visitor_id, &event.name)
                    .await;
            }
            _ => {}
        }
        let page_view = matches!(beacon.kind, BeaconKind::PageView) || visit_started;
        self.evaluate_and_fire(&state, rules, beacon.visitor_id, None, page_view)
            .await;
    }

    /// Handles every wake-up due now; returns how many were due. The background task calls
    /// this; tests with a manual clock call it directly.
    pub async fn run_due_timers(&self) -> usize {
        let mut handled = 0;
        loop {
            let batch = self.timers.pop_due(self.presence.now_ms(), TIMER_BATCH);
            if batch.is_empty() {
                return handled;
            }
            handled += batch.len();
            for due in batch {
                if let Some(state) = self.site_state(&due.key.site) {
                    let visitor_id = due.key.visitor_id.clone();
                    self.evaluate_and_fire(&state, state.rules(), &visitor_id, Some(due), false)
                        .await;
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Fires (control group included) and messages delivered since the start, for the
    /// metrics: counted in place, so nothing is lost however fast they come.
    pub fn event_counts(&self) -> (u64, u64) {
        (
            self.counts.fired.load(Ordering::Relaxed),
            self.counts.delivered.load(Ordering::Relaxed),
        )
    }

    /// Wake-ups pending (at most one per visitor).
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// When the earliest wake-up is due (tracker clock, ms).
    pub fn next_timer_ms(&self) -> Option<i64> {
        self.timers.next_due()
    }

    /// What an evaluation of this visitor would decide now, without firing, scheduling or
    /// recording anything. `None` if the site has no triggers or the visitor is not live.
    pub async fn evaluate(&self, site: &str, visitor_id: &str) -> Option<Evaluation> {
        self.evaluate_with(site, visitor_id, true).await
    }

    pub(crate) async fn evaluate_with(
        &self,
        site: &str,
        visitor_id: &str,
        use_index: bool,
    ) -> Option<Evaluation> {
        let state = self.site_state(site)?;
        let rules = state.rules();
        let widget = self.widget_state(&state).await;
        let history = self.history(&state, visitor_id).await;
        let awaiting = state.is_awaiting(visitor_id);
        let verdict = self.presence.with_visitor(site, visitor_id, |view| {
            (!awaiting)
                .then(|| self.decide(&state, &rules, &widget, view, Some(&history), use_index))
        })?;
        Some(Evaluation {
            fire: verdict
                .as_ref()
                .and_then(|verdict| verdict.fire.as_ref().map(|trigger| trigger.id())),
            wake_at_ms: verdict.and_then(|verdict| verdict.wake_at),
        })
    }

    async fn evaluate_and_fire(
        &self,
        state: &SiteState,
        rules: Arc<SiteRules>,
        visitor_id: &str,
        timer: Option<Due>,
        page_view: bool,
    ) {
        if rules.ranked.is_empty() {
            return;
        }
        // Both visitor sets (awaiting, fired) are keyed by this one hash.
        let hash = state.visitor_hasher.hash_one(visitor_id);
        // One proactive message at a time: a visitor whose message waits for its delay gets
        // nothing else, so there is nothing to evaluate (the cheapest check, taken first; a
        // wake-up of theirs that comes due meanwhile finds the same).
        if state.awaiting.contains(hash) {
            return;
        }
        let widget = self.widget_state(state).await;
        // The visitor's fire records, read in place (no copy per evaluation): the cache entry's
        // read guard is held only for the synchronous decision and dropped before any await or
        // fire. A visitor never fired for (most of them) has none, which the fired set tells
        // without a look in the cache.
        let mut loaded: Option<Vec<FireRecord>> = None;
        let never_fired = !state.fired.contains(hash);
        for _ in 0..2 {
            let verdict = {
                let cached = match loaded {
                    None if !never_fired => state.fires.get(visitor_id),
                    _ => None,
                };
                let history: Option<&[FireRecord]> = match (&cached, &loaded) {
                    (Some(records), _) => Some(records.as_slice()),
                    (None, Some(records)) => Some(records),
                    (None, None) if never_fired => Some(&[]),
                    (None, None) => None,
                };
                self.presence.with_visitor(&state.key, visitor_id, |view| {
                    if let Some(due) = &timer
                        && (view.visit_tag() != due.visit_tag
                            || view.pages_this_visit() != due.pages)
                    {
                        // The visitor moved on since the wake-up was scheduled.
                        return None;
                    }
                    Some(self.decide(state, &rules, &widget, view, history, true))
                })
            };
            let Some(Some(verdict)) = verdict else {
                return;
            };
            if verdict.need_history && loaded.is_none() {
                loaded = Some(self.history(state, visitor_id).await);
                continue;
            }
            match verdict.wake_at {
                Some(wake_at) => self.timers.schedule(
                    &state.key,
                    visitor_id,
                    verdict.visit.tag,
                    verdict.visit.pages,
                    wake_at,
                ),
                None if page_view => self.timers.cancel(&state.key, visitor_id),
                None => {}
            }
            if let Some(trigger) = verdict.fire {
                self.fire(
                    state,
                    trigger,
                    visitor_id,
                    verdict.visit,
                    timer.map(|due| due.due_ms),
                );
            }
            return;
        }
    }

    /// One evaluation (see the module docs). `history: None` means the visitor's fire records
    /// are not loaded; the verdict then asks for them if a trigger holds now.
    fn decide(
        &self,
        state: &SiteState,
        rules: &SiteRules,
        widget: &WidgetState,
        view: &VisitorView<'_>,
        history: Option<&[FireRecord]>,
        use_index: bool,
    ) -> Verdict {
        let visit = VisitInfo {
            tag: view.visit_tag(),
            pages: view.pages_this_visit(),
            number: view.visits(),
        };
        let mut verdict = Verdict {
            fire: None,
            wake_at: None,
            need_history: false,
            visit,
        };
        if !self.visitor_may_receive(state, view) {
            return verdict;
        }
        let wall_ms = self.clock.now_ms();
        let within_hours = || availability(&widget.settings, wall_ms, true).within_hours;
        let online = || self.context.agents_online(&state.key);
        let env = Env::new(
            self.presence.now_ms(),
            wall_ms,
            widget.tz,
            &within_hours,
            &online,
        );
        let mut widget_shows: Option<bool> = None;
        rules.with_candidates(view, use_index, |ranks| {
            for &rank in ranks {
                // A candidate that cannot hold yet, and not before the wake-up already found,
                // changes nothing (the full scan, for tests, evaluates it anyway).
                if use_index
                    && let Some(wake_at) = verdict.wake_at
                    && rules.earliest(rank, view) >= wake_at.max(env.now_ms + 1)
                {
                    continue;
                }
                // The trigger itself is read only when it holds now: the candidate's program and
                // limit sit in the rule set's own arrays.
                let truth = if use_index {
                    rules.eval_candidate(rank, view, &env)
                } else {
                    rules.ranked[rank as usize].root.eval(view, &env)
                };
                let limit = rules.limit(rank);
                match truth {
                    Truth::Never => {}
                    Truth::At(at) => {
                        let allowed = history.is_none_or(|history| {
                            limit_allows_by(limit, history, visit.number, wall_ms)
                        });
                        if allowed {
                            verdict.wake_at =
                                Some(verdict.wake_at.map_or(at, |earlier| earlier.min(at)));
                        }
                    }
                    Truth::Now => {
                        let shows =
                            *widget_shows.get_or_insert_with(|| launcher_shows(widget, view, &env));
                        if !shows {
                            // Nothing can be sent on this page now.
                            verdict.wake_at = None;
                            return;
                        }
                        let Some(history) = history else {
                            verdict.need_history = true;
                            return;
                        };
                        if limit_allows_by(limit, history, visit.number, wall_ms) {
                            verdict.fire = Some(Arc::clone(&rules.ranked[rank as usize]));
                            return;
                        }
                    }
                }
            }
        });
        verdict
    }

    /// Never blocked, never on chat, never a visitor who closed the page. (Never one whose last
    /// fire's message is still waiting for its delay either: every caller asks
    /// [`SiteState::is_awaiting`] first, before any other lookup.)
    fn visitor_may_receive(&self, state: &SiteState, view: &VisitorView<'_>) -> bool {
        let segments = view.segments();
        !segments.contains(Segment::Blocked)
            && !segments.contains(Segment::OnChat)
            && view.left_ms().is_none()
            && !self
                .conversations
                .is_blocked(&state.key, view.id(), Some(view.ip()))
    }

    /// Records a fire and, outside the control group, starts its delivery.
    fn fire(
        &self,
        state: &SiteState,
        trigger: Arc<CompiledTrigger>,
        visitor_id: &str,
        visit: VisitInfo,
        due_ms: Option<i64>,
    ) {
        let wall_ms = self.clock.now_ms();
        let variant = assign(&trigger.trigger, visitor_id);
        state.note_fired(visitor_id);
        let record = {
            let mut records = state.fires.entry(visitor_id.into()).or_default();
            // A concurrent beacon of the same visitor may have fired this trigger since the
            // decision: the limit is judged again under the entry's lock.
            if !limit_allows(&trigger.trigger, &records, visit.number, wall_ms) {
                return;
            }
            let previous = records
                .iter()
                .position(|record| record.trigger_id == trigger.id());
            let count = previous.map_or(0, |index| records[index].count);
            let record = FireRecord {
                site: state.key.to_string(),
                visitor_id: visitor_id.to_owned(),
                trigger_id: trigger.id(),
                fired_ms: wall_ms,
                variant: variant.map(|index| trigger.trigger.variants[index].key.clone()),
                visit: visit.number,
                count: count.saturating_add(1),
                conversation_id: None,
                delivered: false,
                seen: false,
                replied: false,
                goal: false,
            };
            match previous {
                Some(index) => records[index] = record.clone(),
                None => records.push(record.clone()),
            }
            record
        };
        self.recorder.record(&record);
        self.recorder.count(&record, Step::Fired);
        self.counts.fired.fetch_add(1, Ordering::Relaxed);
        // Nobody listening: no event to build (two string copies per fire).
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(TriggerEvent::Fired {
                site: Arc::clone(&state.key),
                trigger_id: trigger.id(),
                visitor_id: visitor_id.to_owned(),
                variant: record.variant.clone(),
                at_ms: wall_ms,
                due_ms,
            });
        }
        let (Some(variant), Some(me)) = (variant, self.me.upgrade()) else {
            return;
        };
        let site = Arc::clone(&state.key);
        let awaiting = state.visitor_hasher.hash_one(visitor_id);
        state.awaiting.insert(awaiting);
        let visitor_id = visitor_id.to_owned();
        tokio::spawn(async move {
            let delay = Duration::from_secs(u64::from(trigger.trigger.delay_secs));
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            // Boxed: the delivery's state (store reads, the conversation write) is kilobytes,
            // allocated only when it starts, not copied into every waiting task at the fire.
            Box::pin(me.deliver_fire(site, visitor_id, trigger, variant, visit.tag, awaiting))
                .await;
        });
    }

    async fn deliver_fire(
        &self,
        site: Arc<str>,
        visitor_id: String,
        trigger: Arc<CompiledTrigger>,
        variant: usize,
        visit_tag: u32,
        awaiting: u64,
    ) {
        let sent = self
            .send(&site, &visitor_id, &trigger, variant, Some(visit_tag))
            .await;
        // Sent (the visitor is now on chat) or given up: other triggers may fire again.
        if let Some(state) = self.site_state(&site) {
            state.awaiting.remove(awaiting);
        }
        let conversation_id = match sent {
            Ok(conversation_id) => conversation_id,
            Err(error) => {
                tracing::debug!(%error, site = &*site, trigger = trigger.id(), "trigger message not sent");
                return;
            }
        };
        if let Some(state) = self.site_state(&site) {
            self.update_fire(&state, &visitor_id, trigger.id(), |record| {
                record.conversation_id = Some(conversation_id);
                if record.delivered {
                    Vec::new()
                } else {
                    record.delivered = true;
                    vec![Step::Delivered]
                }
            })
            .await;
        }
        self.presence.set_auto_messaged(&site, &visitor_id, true);
        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(TriggerEvent::Delivered {
            site,
            trigger_id: trigger.id(),
            visitor_id,
            conversation_id,
        });
    }

    /// Sends a variant's message to a live visitor; returns the conversation id. With
    /// `visit_tag` (a fire) the visitor must still be on that visit and still there; without
    /// it (a test-fire) only "not blocked, not on chat" is required.
    async fn send(
        &self,
        site: &str,
        visitor_id: &str,
        trigger: &CompiledTrigger,
        variant: usize,
        visit_tag: Option<u32>,
    ) -> Result<u64, TriggerError> {
        let checked = self.presence.with_visitor(site, visitor_id, |view| {
            if visit_tag.is_some_and(|tag| tag != view.visit_tag() || view.left_ms().is_some()) {
                return Err(TriggerError::NotFound("the visit".into()));
            }
            let segments = view.segments();
            if segments.contains(Segment::Blocked)
                || self
                    .conversations
                    .is_blocked(site, view.id(), Some(view.ip()))
            {
                return Err(TriggerError::Blocked);
            }
            if segments.contains(Segment::OnChat) {
                return Err(TriggerError::OnChat);
            }
            Ok((
                PlaceholderData::of(view),
                view.ip(),
                view.current_url().to_owned(),
            ))
        });
        let (data, ip, page_url): (PlaceholderData, IpAddr, String) =
            checked.ok_or_else(|| TriggerError::NotFound("live visitor".into()))??;
        let spec = &trigger.trigger.variants[variant];
        let sender_name = match &spec.author {
            Sender::Bot { bot } => bot.trim().to_owned(),
            Sender::Agent { agent_id } => match self.store.agent(*agent_id).await? {
                Some(agent) if agent.can_access(site) => agent.name,
                _ => {
                    return Err(TriggerError::NotFound(format!(
                        "agent {agent_id} of variant {}",
                        spec.key
                    )));
                }
            },
        };
        let text = trigger.templates[variant].render(&data);
        if text.is_empty() {
            return Err(TriggerError::invalid(
                &format!("variants[{variant}].text"),
                "renders as an empty message for this visitor",
            ));
        }
        let open = self
            .store
            .conversations_of_visitor(site, visitor_id)
            .await?
            .iter()
            .any(|conversation| conversation.is_open());
        if open {
            return Err(TriggerError::OnChat);
        }
        let outcome = self
            .conversations
            .start_by_trigger_with(
                VisitorRef::new(site, visitor_id).with_ip(Some(ip)),
                TriggerMessage {
                    trigger_id: trigger.id(),
                    variant: Some(&spec.key),
                    open_widget: trigger.trigger.open_widget,
                    test: visit_tag.is_none(),
                    sender_name: &sender_name,
                    text: &text,
                },
                StartDetails {
                    page_url: Some(page_url),
                    ..StartDetails::default()
                },
            )
            .await?;
        Ok(outcome.conversation.id)
    }

    // Fire records.

    /// The visitor's fire records: the cache, else the store plus what is not written yet.
    async fn history(&self, state: &SiteState, visitor_id: &str) -> Vec<FireRecord> {
        if let Some(records) = state.fires.get(visitor_id) {
            return records.clone();
        }
        if !state.may_have_fired(visitor_id) {
            // Never fired for: nothing to read. (A fire in between has filled the cache.)
            return state.fires.entry(visitor_id.into()).or_default().clone();
        }
        let mut records = match self.store.trigger_fires(&state.key, visitor_id).await {
            Ok(records) => records,
            Err(error) => {
                // Without the records the limits cannot be judged: better to send nothing.
                tracing::error!(%error, site = &*state.key, "cannot read trigger fire records");
                return Vec::new();
            }
        };
        // Records not written yet are newer than the stored ones.
        for pending in self.recorder.pending_fires(&state.key, visitor_id) {
            match records
                .iter_mut()
                .find(|record| record.trigger_id == pending.trigger_id)
            {
                Some(record) => *record = pending,
                None => records.push(pending),
            }
        }
        // A fire recorded meanwhile is in the cache already and wins.
        state
            .fires
            .entry(visitor_id.into())
            .or_insert(records)
            .clone()
    }

    /// Applies `change` to the visitor's record of the trigger (if there is one) and counts
    /// the funnel steps it returns.
    async fn update_fire(
        &self,
        state: &SiteState,
        visitor_id: &str,
        trigger_id: u64,
        change: impl FnOnce(&mut FireRecord) -> Vec<Step>,
    ) {
        if !state.fires.contains_key(visitor_id) {
            self.history(state, visitor_id).await;
        }
        let Some(mut records) = state.fires.get_mut(visitor_id) else {
            return;
        };
        let Some(record) = records
            .iter_mut()
            .find(|record| record.trigger_id == trigger_id)
        else {
            return;
        };
        let steps = change(record);
        if steps.is_empty() {
            return;
        }
        self.recorder.record(record);
        for step in steps {
            self.recorder.count(record, step);
        }
    }

    /// A custom event: counts a goal for every trigger with that goal that fired for this
    /// visitor within its window (control-group fires included).
    async fn check_goals(&self, state: &SiteState, visitor_id: &str, event: &str) {
        let rules = state.rules();
        if rules.goals.is_empty() {
            return;
        }
        let Some(ids) = rules.goals.get(event.to_ascii_lowercase().as_str()) else {
            return;
        };
        let wall_ms = self.clock.now_ms();
        for id in ids {
            let Some(window_secs) = rules
                .by_id
                .get(id)
                .and_then(|trigger| trigger.trigger.goal.as_ref())
                .map(|goal| goal.window_secs)
            else {
                continue;
            };
            self.update_fire(state, visitor_id, *id, |record| {
                let elapsed = wall_ms - record.fired_ms;
                if record.goal || elapsed < 0 || elapsed > i64::from(window_secs) * 1000 {
                    return Vec::new();
                }
                record.goal = true;
                vec![Step::Goal]
            })
            .await;
        }
    }

    /// Seen and replied, from the conversation event bus.
    async fn observe_conversation(&self, event: &ConversationEvent) {
        let (conversation, visitor_wrote) = match event {
            ConversationEvent::MessageAdded {
                conversation,
                message,
            } => (
                conversation,
                message.author == Author::Visitor && message.body.is_content(),
            ),
            ConversationEvent::ConversationChanged { conversation } => (conversation, false),
            _ => return,
        };
        let ConversationOrigin::Trigger {
            trigger_id,
            test: false,
            ..
        } = &conversation.origin
        else {
            return;
        };
        let seen = visitor_wrote || conversation.visitor_read_seq >= 1;
        if !seen {
            return;
        }
        let Some(state) = self.site_state(&conversation.site) else {
            return;
        };
        let (id, created_ms) = (conversation.id, conversation.created_ms);
        self.update_fire(&state, &conversation.visitor_id, *trigger_id, |record| {
            let ours = record.variant.is_some()
                && match record.conversation_id {
                    Some(known) => known == id,
                    // The message was sent but the delivery has not noted its conversation yet.
                    None => created_ms >= record.fired_ms,
                };
            if !ours {
                return Vec::new();
            }
            record.conversation_id = Some(id);
            let mut steps = Vec::new();
            if !record.seen {
                record.seen = true;
                steps.push(Step::Seen);
            }
            if visitor_wrote && !record.replied {
                record.replied = true;
                steps.push(Step::Replied);
            }
            steps
        })
        .await;
    }

    // Widget settings.

    async fn widget_state(&self, state: &SiteState) -> Arc<WidgetState> {
        let now = self.clock.now_ms();
        if let Some(widget) = state.widget.read().as_ref()
            && now - widget.loaded_ms < WIDGET_SETTINGS_TTL_MS
            && now >= widget.loaded_ms
        {
            return Arc::clone(widget);
        }
        self.load_widget_state(state).await
    }

    async fn load_widget_state(&self, state: &SiteState) -> Arc<WidgetState> {
        let settings = match self.store.widget_settings(&state.key).await {
            Ok(Some(settings)) => settings,
            Ok(None) => WidgetSettings::defaults(&state.key),
            Err(error) => {
                tracing::warn!(%error, site = &*state.key, "cannot read widget settings; using the last known");
                if let Some(widget) = state.widget.read().as_ref() {
                    return Arc::clone(widget);
                }
                WidgetSettings::defaults(&state.key)
            }
        };
        let widget = Arc::new(WidgetState {
            tz: conditions::time_zone(&settings.business_hours.time_zone),
            settings,
            loaded_ms: self.clock.now_ms(),
        });
        *state.widget.write() = Some(Arc::clone(&widget));
        widget
    }

    /// Re-reads a site's widget settings now (call after they change; otherwise they are
    /// re-read within ten seconds).
    pub async fn reload_widget_settings(&self, site: &str) {
        if let Some(state) = self.site_state(site) {
            self.load_widget_state(&state).await;
        }
    }

    // Who matches, preview, render, test-fire.

    /// The live visitors trigger `id` would fire for now: conditions hold, its limit allows,
    /// the visitor is not blocked and not on chat, and the widget shows on their page. The
    /// same predicate the engine applies (priority aside: another trigger may win).
    pub async fn matches_now(&self, site: &str, id: u64) -> Result<Matches, TriggerError> {
        let state = self.site_state(site).ok_or_else(|| not_found_trigger(id))?;
        let trigger = state
            .rules()
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found_trigger(id))?;
        Ok(self.matching(&state, &trigger).await)
    }

    /// [`Triggers::matches_now`] for a draft that is not saved. Only the conditions are
    /// checked (a draft may lack a message yet); errors name the JSON path. A draft whose `id`
    /// is a saved trigger of the site (an edit) is judged with that trigger's fire history,
    /// so its limit leaves out visitors it already reached; any other id counts as new.
    pub async fn preview(&self, site: &str, draft: Trigger) -> Result<Matches, TriggerError> {
        let root = conditions::compile(&draft.conditions)?;
        let state = match self.site_state(site) {
            Some(state) => state,
            None => Arc::new(SiteState::new(site.into(), SiteRules::default())),
        };
        let id = if state.rules().by_id.contains_key(&draft.id) {
            draft.id
        } else {
            0
        };
        let compiled = CompiledTrigger {
            trigger: Trigger { id, ..draft },
            root,
            templates: Vec::new(),
            goal_event: None,
        };
        Ok(self.matching(&state, &compiled).await)
    }

    async fn matching(&self, state: &SiteState, trigger: &CompiledTrigger) -> Matches {
        let widget = self.widget_state(state).await;
        let wall_ms = self.clock.now_ms();
        // The evaluation environment is neither `Send` nor `Sync` (lazy cells, borrowed
        // closures): it must be gone before the history reads below await, or the future
        // could not run on a multi-threaded runtime (the API handlers).
        let holding: Vec<(String, u32)> = {
            let within_hours = || availability(&widget.settings, wall_ms, true).within_hours;
            let online = || self.context.agents_online(&state.key);
            let env = Env::new(
                self.presence.now_ms(),
                wall_ms,
                widget.tz,
                &within_hours,
                &online,
            );
            let mut holding = Vec::new();
            self.presence.for_each_visitor(&state.key, |view| {
                if !state.is_awaiting(view.id())
                    && self.visitor_may_receive(state, view)
                    && trigger.root.eval(view, &env) == Truth::Now
                    && launcher_shows(&widget, view, &env)
                {
                    holding.push((view.id().to_owned(), view.visits()));
                }
            });
            holding
        };
        let mut matched = Vec::new();
        for (visitor_id, visits) in holding {
            let history = if trigger.id() == 0 {
                Vec::new()
            } else {
                self.history(state, &visitor_id).await
            };
            if limit_allows(&trigger.trigger, &history, visits, wall_ms) {
                matched.push(visitor_id);
            }
        }
        let count = matched.len();
        let mut visitors: Vec<VisitorSnapshot> = matched
            .iter()
            .filter_map(|visitor_id| self.presence.get(&state.key, visitor_id))
            .collect();
        visitors.sort_by(|a, b| {
            b.last_activity_ms
                .cmp(&a.last_activity_ms)
                .then(b.number.cmp(&a.number))
        });
        visitors.truncate(MAX_MATCH_VISITORS);
        Matches { count, visitors }
    }

    /// A message text with placeholders filled in from a live visitor, or from a sample
    /// visitor (Jana from Prague) when none is named.
    pub fn render(
        &self,
        site: &str,
        text: &str,
        visitor_id: Option<&str>,
    ) -> Result<String, TriggerError> {
        let template =
            Template::parse(text).map_err(|message| TriggerError::invalid("text", message))?;
        let data = match visitor_id {
            None => PlaceholderData::sample(),
            Some(visitor_id) => self
                .presence
                .with_visitor(site, visitor_id, PlaceholderData::of)
                .ok_or_else(|| TriggerError::NotFound("live visitor".into()))?,
        };
        Ok(template.render(&data))
    }

    /// Sends variant `variant` (or the first) of a trigger to a live visitor now, whatever
    /// its conditions and limits; not recorded and not counted. Returns the conversation id.
    /// Refused for a blocked visitor ([`TriggerError::Blocked`]) and one with an open
    /// conversation ([`TriggerError::OnChat`]).
    pub async fn test_fire(
        &self,
        site: &str,
        id: u64,
        visitor_id: &str,
        variant: Option<&str>,
    ) -> Result<u64, TriggerError> {
        let trigger = self
            .site_state(site)
            .and_then(|state| state.rules().by_id.get(&id).cloned())
            .ok_or_else(|| not_found_trigger(id))?;
        let index = match variant {
            None => 0,
            Some(key) => trigger
                .trigger
                .variants
                .iter()
                .position(|variant| variant.key == key)
                .ok_or_else(|| TriggerError::NotFound(format!("variant {key:?}")))?,
        };
        let conversation_id = self.send(site, visitor_id, &trigger, index, None).await?;
        self.presence.set_auto_messaged(site, visitor_id, true);
        Ok(conversation_id)
    }

    // Statistics.

    /// A trigger's funnel per variant (and control) over the UTC days overlapping
    /// `[from_ms, to_ms)`.
    pub async fn stats(
        &self,
        site: &str,
        id: u64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<TriggerStats, TriggerError> {
        let trigger = self.get(site, id).await?;
        let rows = self.stats_rows(site, id, from_ms, to_ms).await?;
        let mut variants: Vec<VariantStats> = Vec::new();
        let mut add = |variant: Option<&str>, counts: Funnel| match variants
            .iter_mut()
            .find(|v| v.variant.as_deref() == variant)
        {
            Some(existing) => existing.counts.add(&counts),
            None => variants.push(VariantStats {
                variant: variant.map(str::to_owned),
                counts,
                rates: Rates::default(),
            }),
        };
        for variant in &trigger.variants {
            add(Some(&variant.key), Funnel::default());
        }
        let mut others: Vec<&StatsRow> = rows.iter().filter(|row| row.variant.is_some()).collect();
        others.sort_by(|a, b| a.variant.cmp(&b.variant));
        for row in others {
            add(row.variant.as_deref(), row.counts);
        }
        let control: Vec<&StatsRow> = rows.iter().filter(|row| row.variant.is_none()).collect();
        if trigger.control_percent > 0 || !control.is_empty() {
            add(None, Funnel::default());
            for row in control {
                add(None, row.counts);
            }
        }
        let mut total = Funnel::default();
        for variant in &mut variants {
            variant.rates = variant.counts.rates();
            total.add(&variant.counts);
        }
        Ok(TriggerStats {
            trigger_id: id,
            from_ms,
            to_ms,
            variants,
            total: TotalStats {
                counts: total,
                rates: total.rates(),
            },
        })
    }

    /// Funnel totals of every trigger of a site over `[from_ms, to_ms)`, for the list.
    pub async fn totals(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<HashMap<u64, Funnel>, TriggerError> {
        let mut totals = HashMap::new();
        for trigger in self.store.triggers(site).await? {
            let mut total = Funnel::default();
            for row in self.stats_rows(site, trigger.id, from_ms, to_ms).await? {
                total.add(&row.counts);
            }
            totals.insert(trigger.id, total);
        }
        Ok(totals)
    }

    async fn stats_rows(
        &self,
        site: &str,
        id: u64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StatsRow>, TriggerError> {
        if to_ms <= from_ms {
            return Ok(Vec::new());
        }
        let (from_day, to_day) = (utc_day(from_ms), utc_day(to_ms - 1).saturating_add(1));
        let mut rows = self.store.trigger_stats(site, id, from_day, to_day).await?;
        rows.extend(
            self.recorder
                .pending_rows(site, id)
                .into_iter()
                .filter(|row| (from_day..to_day).contains(&row.day)),
        );
        Ok(rows)
    }

    // Background tasks.

    async fn run_timers(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.run_due_timers().await > 0 {
                continue;
            }
            // Registered before the queue is read, so an insert in between still wakes us.
            let woken = self.timers.wake.notified();
            let wait_ms = match self.timers.next_due() {
                Some(due) => (due - self.presence.now_ms()).clamp(0, 60_000),
                None => 60_000,
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = woken => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn run_flusher(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(error) = self.flush().await {
                tracing::error!(%error, "cannot write trigger records; will retry");
            }
        }
    }

    async fn run_observer(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut events = self.conversations.subscribe();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => self.observe_conversation(&event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "trigger statistics missed conversation events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn run_cache_sweeper(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            // A million cached visitors take a good part of a second to check: on the blocking
            // pool, not on an async worker where due wake-ups would wait for it.
            let me = Arc::clone(&self);
            let _ = tokio::task::spawn_blocking(move || me.sweep_cache()).await;
        }
    }

    /// Drops cached fire records of visitors no longer in memory (the store has them). Gone
    /// visitors are removed one at a time, so no shard is write-locked for more than one
    /// removal (a fire waits for a single entry, not for a sweep of its shard).
    pub(crate) fn sweep_cache(&self) {
        let sites: Vec<Arc<SiteState>> = self.sites.read().values().cloned().collect();
        let gone = |state: &SiteState, visitor_id: &str| {
            self.presence
                .with_visitor(&state.key, visitor_id, |_| ())
                .is_none()
        };
        for state in sites {
            // Only the ids are copied under the shards' read locks; the presence table is
            // asked without holding any (a fire must not wait for a million of those).
            let cached: Vec<Box<str>> = state
                .fires
                .iter()
                .map(|entry| entry.key().clone())
                .collect();
            for visitor_id in cached {
                if gone(&state, &visitor_id) {
                    state
                        .fires
                        .remove_if(&visitor_id, |visitor_id, _| gone(&state, visitor_id));
                }
            }
        }
    }
}

fn not_found_trigger(id: u64) -> TriggerError {
    TriggerError::NotFound(format!("trigger {id}"))
}

/// Whether the trigger's limit lets it fire for a visitor with these records on visit
/// `visit` at `wall_ms`.
fn limit_allows(trigger: &Trigger, history: &[FireRecord], visit: u32, wall_ms: i64) -> bool {
    limit_allows_by((trigger.id, trigger.limit), history, visit, wall_ms)
}

/// [`limit_allows`] for a trigger's id and limit.
fn limit_allows_by(
    (id, limit): (u64, Limit),
    history: &[FireRecord],
    visit: u32,
    wall_ms: i64,
) -> bool {
    let Some(last) = history.iter().find(|record| record.trigger_id == id) else {
        return true;
    };
    match limit {
        Limit::OncePerVisitor => false,
        Limit::OncePerVisit => last.visit != visit,
        Limit::Cooldown { cooldown_secs } => {
            wall_ms.saturating_sub(last.fired_ms) >= i64::from(cooldown_secs) * 1000
        }
    }
}

/// The variant (index) a visitor gets, or `None` for the control group: a hash of (trigger
/// id, visitor id), so the assignment never changes and needs no storage. SHA-256 rather than
/// a faster hash because its output is fixed forever, across versions and restarts.
fn assign(trigger: &Trigger, visitor_id: &str) -> Option<usize> {
    let digest = Sha256::new()
        .chain_update(b"porchlight-trigger-ab\0")
        .chain_update(trigger.id.to_be_bytes())
        .chain_update(visitor_id.as_bytes())
        .finalize();
    let word = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[range]);
        u64::from_be_bytes(bytes)
    };
    if word(0..8) % 100 < u64::from(trigger.control_percent) {
        return None;
    }
    let total: u64 = trigger
        .variants
        .iter()
        .map(|variant| u64::from(variant.weight.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut pick = word(8..16) % total;
    for (index, variant) in trigger.variants.iter().enumerate() {
        let weight = u64::from(variant.weight.max(1));
        if pick < weight {
            return Some(index);
        }
        pick -= weight;
    }
    None
}

/// Whether the widget shows its launcher to this visitor on this page now: visibility not
/// hidden, the page rules allow the page, and not hidden after hours. The same rules the
/// widget applies (`dashboards/web/widget.js`, `Chat.suppressed`).
fn launcher_shows(widget: &WidgetState, view: &VisitorView<'_>, env: &Env<'_>) -> bool {
    let settings = &widget.settings;
    if settings.visibility == Visibility::Hidden {
        return false;
    }
    if settings.pages.mode != PageMode::All {
        let path = url_path(view.current_url());
        let hit = settings
            .pages
            .patterns
            .iter()
            .any(|pattern| page_pattern_matches(pattern, path));
        let allowed = match settings.pages.mode {
            PageMode::Whitelist => hit,
            PageMode::Blacklist => !hit,
            PageMode::All => true,
        };
        if !allowed {
            return false;
        }
    }
    settings.after_hours.mode != AfterHoursMode::Hide
        || availability(settings, env.wall_ms, true).within_hours
}

/// The path of a URL (`location.pathname`): after the host, before `?` or `#`; `/` if empty.
fn url_path(url: &str) -> &str {
    let after_scheme = match url.find("://") {
        Some(index) => &url[index + 3..],
        None => url,
    };
    let path = match after_scheme.find('/') {
        Some(index) => &after_scheme[index..],
        None => "/",
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    if end == 0 { "/" } else { &path[..end] }
}

/// A widget page pattern as the widget matches it: a full URL's origin is ignored; without
/// `*` the path must be equal (trailing slashes aside); `*` matches any run (case-sensitive).
fn page_pattern_matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.trim();
    if pattern.is_empty() {
        return false;
    }
    let lower = pattern.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let after = &pattern[pattern.find("://").map_or(0, |index| index + 3)..];
        pattern = after.find('/').map_or("/", |index| &after[index..]);
    }
    let trim = |text: &str| -> String {
        if text.len() > 1 {
            text.trim_end_matches('/').to_owned()
        } else {
            text.to_owned()
        }
    };
    if !pattern.contains('*') {
        return trim(pattern) == trim(path);
    }
    star_match(pattern.as_bytes(), path.as_bytes())
}

/// Whole-string match where `*` is any run of bytes, everything else itself.
fn star_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p + 1, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((after, taken)) = star {
            star = Some((after, taken + 1));
            p = after;
            t = taken + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}
