//! Live availability (issue 3 point 6): widgets with an open visitor channel hear at once when
//! their site's availability changes, instead of at their next settings poll.
//!
//! One task watches every site that has an open visitor socket. It recomputes those sites'
//! availability when something that decides it changes: an agent connects, disconnects or
//! changes status ([`crate::state::AgentPresence::changed`]), a site's widget settings are
//! edited, a site gets its first socket, or a business-hours boundary passes. Between those it
//! sleeps until the earliest next boundary of any watched site ([`engage::next_hours_change`]),
//! or at most [`MAX_NAP`], which also catches a wall clock that jumped. A site whose
//! availability differs from what its sockets were last told gets a `settings` frame (the same
//! shape as the `ready` frame's `settings`) through the chat hub.
//!
//! A test clock that is moved by hand wakes the task too ([`engage::Clock::moves`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::state::AppState;
use crate::widget_api::{availability_json, availability_of, settings_of, widget_settings_for};

/// The longest the task sleeps without looking again.
pub const MAX_NAP: Duration = Duration::from_secs(60);

/// The `settings` frame for a site's open sockets.
pub async fn settings_frame(state: &AppState, site: &str) -> String {
    json!({ "type": "settings", "settings": widget_settings_for(state, site).await }).to_string()
}

/// Runs until shutdown.
pub async fn run_availability(state: AppState) {
    let mut shutdown = state.shutdown.subscribe();
    let mut clock_moves = state.clock.moves();
    let agents = Arc::clone(state.agent_presence.changed());
    let settings = Arc::clone(&state.settings_changed);
    // What each watched site's sockets were last told.
    let mut told: HashMap<Arc<str>, Value> = HashMap::new();
    loop {
        let next_boundary = push_changes(&state, &mut told).await;
        let nap = match next_boundary {
            Some(at_ms) => {
                let wait = (at_ms - state.clock.now_ms()).max(0) as u64;
                Duration::from_millis(wait).min(MAX_NAP)
            }
            None => MAX_NAP,
        };
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = agents.notified() => {}
            _ = settings.notified() => {}
            _ = state.chat.sites_changed().notified() => {}
            _ = clock_moved(&mut clock_moves) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn clock_moved(moves: &mut Option<tokio::sync::watch::Receiver<i64>>) {
    if let Some(receiver) = moves
        && receiver.changed().await.is_ok()
    {
        return;
    }
    // The real clock (or a test clock that was dropped): nothing to wait for.
    std::future::pending().await
}

/// Recomputes every watched site's availability, pushes the changed ones, and returns the
/// earliest business-hours boundary ahead.
async fn push_changes(state: &AppState, told: &mut HashMap<Arc<str>, Value>) -> Option<i64> {
    let watched = state.chat.watched_sites();
    told.retain(|site, _| watched.contains(site));
    let now = state.clock.now_ms();
    let mut next_boundary: Option<i64> = None;
    for site_key in watched {
        let Some(site) = state.sites.get(&site_key) else {
            continue;
        };
        let settings = match settings_of(state, &site).await {
            Ok(settings) => settings,
            Err(error) => {
                tracing::warn!(%error, site = %site_key, "cannot load widget settings");
                continue;
            }
        };
        if let Some(at) = engage::next_hours_change(&settings.business_hours, now) {
            next_boundary = Some(next_boundary.map_or(at, |earliest| earliest.min(at)));
        }
        let availability =
            availability_json(&settings, availability_of(state, &site.key, &settings));
        // A site seen for the first time is told too: its first socket's `ready` frame may
        // predate a change that woke us.
        if told.get(&site_key) != Some(&availability) {
            state
                .chat
                .publish_settings(&site_key, settings_frame(state, &site_key).await);
            told.insert(site_key, availability);
        }
    }
    next_boundary
}
