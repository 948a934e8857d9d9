//! The application state every handler shares: `AppState(Arc<App>)`.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use engage::{Accounts, Conversations, Ingest, Site, Store};
use parking_lot::RwLock;
use tracker::Presence;

use crate::chat::ChatHub;
use crate::config::Settings;
use crate::live::LiveHub;
use crate::metrics::Metrics;

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
    pub sites: SiteDirectory,
    pub metrics: Metrics,
    pub live: LiveHub,
    pub chat: ChatHub,
    /// The answer to a recorded beacon, encoded once (see `beacon::ok_body`).
    pub beacon_ok_body: bytes::Bytes,
    /// Flips to `true` when the server shuts down; long-lived tasks and sockets watch it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
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
