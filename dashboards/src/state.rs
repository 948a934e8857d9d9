//! The application state every handler shares: `AppState(Arc<App>)`.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use engage::{
    Accounts, Agent, Clock, Contacts, Conversations, Ingest, Lead, SavedReplies, Site, Store,
    TriggerContext, Triggers,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracker::Presence;

use crate::chat::ChatHub;
use crate::config::Settings;
use crate::live::LiveHub;
use crate::metrics::Metrics;
use crate::rate_limit::LeadLimits;

pub use engage::AgentStatus;

/// Cheap to clone; handlers take `State<AppState>`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    pub settings: Settings,
    pub presence: Arc<Presence>,
    pub store: Arc<dyn Store>,
    pub accounts: Accounts,
    pub ingest: Ingest,
    pub conversations: Arc<Conversations>,
    /// The contact behind a visitor: agent-edited name, email and phone, notes, tags.
    pub contacts: Contacts,
    pub saved_replies: SavedReplies,
    /// The trigger engine (issue 4); `ingest` hands it every recorded beacon.
    pub triggers: Arc<Triggers>,
    pub sites: SiteDirectory,
    pub metrics: Metrics,
    pub live: LiveHub,
    pub chat: ChatHub,
    /// The answer to a recorded beacon, encoded once (see `beacon::ok_body`).
    pub beacon_ok_body: bytes::Bytes,
    /// Flips to `true` when the server shuts down; long-lived tasks and sockets watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The time availability (business hours) and leads are judged by; injectable for tests.
    pub clock: Arc<dyn Clock>,
    /// Which agents are online, for the widget's availability.
    pub agent_presence: AgentPresence,
    /// Every lead, published after it is stored (the webhooks task sends `lead.created`).
    pub leads: tokio::sync::broadcast::Sender<Lead>,
    /// Wakes the availability task (`availability.rs`) when a site's widget settings change;
    /// agent presence changes wake it through [`AgentPresence::changed`].
    pub settings_changed: Arc<Notify>,
    /// Offline-form submissions per client address and per site.
    pub lead_limits: LeadLimits,
}

/// Agent presence: an agent counts as online for a site when they have at least one open
/// console socket (`/api/inbox/live` or `/api/sites/{key}/live`), their chosen status is
/// online, and they can access the site.
///
/// Statuses are chosen with `PUT /api/me/status` and stored, so they survive reconnects and
/// restarts; every change of who is online is signalled on [`AgentPresence::changed`], which
/// the availability task waits on to push the widgets' new availability.
#[derive(Default, Clone)]
pub struct AgentPresence {
    inner: Arc<Mutex<PresenceInner>>,
    changed: Arc<Notify>,
}

#[derive(Default)]
struct PresenceInner {
    /// Open sockets per agent id, with the agent as of the latest connection.
    sockets: HashMap<u64, (usize, Agent)>,
    statuses: HashMap<u64, AgentStatus>,
}

impl AgentPresence {
    /// Presence with the statuses agents chose before (a restart keeps them).
    pub async fn load(store: &dyn Store) -> Result<AgentPresence, engage::StoreError> {
        let statuses = store.agent_statuses().await?;
        let presence = AgentPresence::default();
        presence.inner.lock().statuses.extend(statuses);
        Ok(presence)
    }

    /// Notified whenever an agent connects, disconnects or changes status.
    pub fn changed(&self) -> &Arc<Notify> {
        &self.changed
    }

    /// Counts one open socket of `agent` until the returned guard is dropped.
    pub fn connect(&self, agent: &Agent) -> PresenceGuard {
        {
            let mut inner = self.inner.lock();
            let entry = inner
                .sockets
                .entry(agent.id)
                .or_insert_with(|| (0, agent.clone()));
            entry.0 += 1;
            entry.1 = agent.clone();
        }
        self.changed.notify_one();
        PresenceGuard {
            presence: self.clone(),
            agent_id: agent.id,
        }
    }

    pub fn status(&self, agent_id: u64) -> AgentStatus {
        self.inner
            .lock()
            .statuses
            .get(&agent_id)
            .copied()
            .unwrap_or_default()
    }

    /// Stores the agent's status, then applies it. A store failure changes nothing.
    pub async fn set_status(
        &self,
        store: &dyn Store,
        agent_id: u64,
        status: AgentStatus,
    ) -> Result<(), engage::StoreError> {
        store.put_agent_status(agent_id, status).await?;
        self.inner.lock().statuses.insert(agent_id, status);
        self.changed.notify_one();
        Ok(())
    }

    /// Whether any agent is online for `site_key`.
    pub fn any_online(&self, site_key: &str) -> bool {
        let inner = self.inner.lock();
        inner.sockets.iter().any(|(id, (count, agent))| {
            *count > 0
                && agent.can_access(site_key)
                && inner.statuses.get(id).copied().unwrap_or_default() == AgentStatus::Online
        })
    }
}

/// What the trigger engine asks the dashboards: whether an agent is online for a site, as the
/// widget's availability counts them.
#[derive(Clone)]
pub struct AgentsOnline(pub AgentPresence);

impl std::fmt::Debug for AgentsOnline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentsOnline")
    }
}

impl TriggerContext for AgentsOnline {
    fn agents_online(&self, site: &str) -> bool {
        self.0.any_online(site)
    }
}

/// Unregisters one socket of an agent when dropped.
pub struct PresenceGuard {
    presence: AgentPresence,
    agent_id: u64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut inner = self.presence.inner.lock();
        if let Some(entry) = inner.sockets.get_mut(&self.agent_id) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                inner.sockets.remove(&self.agent_id);
            }
        }
        drop(inner);
        self.presence.changed.notify_one();
    }
}

/// Sites by key, read on every beacon. The map is replaced whole when a site changes (rare), so a
/// beacon only takes a read lock long enough to clone one `Arc`.
#[derive(Default)]
pub struct SiteDirectory {
    by_key: RwLock<Arc<HashMap<String, Arc<Site>>>>,
}

impl SiteDirectory {
    pub fn get(&self, key: &str) -> Option<Arc<Site>> {
        self.by_key.read().get(key).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Site>> {
        let mut sites: Vec<_> = self.by_key.read().values().cloned().collect();
        sites.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.key.cmp(&b.key)));
        sites
    }

    /// Reloads the directory from the store (at start-up and after a site is created or edited).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), engage::StoreError> {
        let sites = store.list_sites().await?;
        let map = sites
            .into_iter()
            .map(|site| (site.key.clone(), Arc::new(site)))
            .collect();
        *self.by_key.write() = Arc::new(map);
        Ok(())
    }
}
