//! Live push to agents' panels: one WebSocket per open panel, a snapshot first, then coalesced
//! deltas every `push_interval`.
//!
//! Coalescing happens at the source: the tracker keeps, per site, the set of visitors whose
//! panel-visible state changed. One pusher task drains each site's set once per interval, encodes
//! one delta frame, and broadcasts the same bytes to every panel of that site, so the cost per
//! interval is O(changed visitors), whatever the number of panels or beacons.
//!
//! A slow panel never slows ingestion: beacons only touch the tracker. A panel whose socket cannot
//! keep up falls behind in the broadcast channel; when it notices, it skips what it missed and
//! gets a fresh snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Frame, Row};

/// Frames a panel may fall behind before it is resynchronised with a snapshot.
const PANEL_BACKLOG: usize = 64;

/// Per-site broadcast channels of encoded frames.
#[derive(Default)]
pub struct LiveHub {
    sites: Mutex<HashMap<Arc<str>, Arc<SiteChannel>>>,
}

struct SiteChannel {
    frames: broadcast::Sender<Utf8Bytes>,
    /// Held while the pusher drains and publishes, and while a panel subscribes and takes its
    /// snapshot. That orders the two: a panel never receives a delta older than its snapshot.
    /// Nothing awaits while holding it.
    publish: Mutex<()>,
}

impl LiveHub {
    fn channel(&self, site: &str) -> Arc<SiteChannel> {
        let mut sites = self.sites.lock();
        if let Some(channel) = sites.get(site) {
            return Arc::clone(channel);
        }
        let (frames, _) = broadcast::channel(PANEL_BACKLOG);
        let channel = Arc::new(SiteChannel {
            frames,
            publish: Mutex::new(()),
        });
        sites.insert(Arc::from(site), Arc::clone(&channel));
        channel
    }

    fn existing_channel(&self, site: &str) -> Option<Arc<SiteChannel>> {
        self.sites.lock().get(site).cloned()
    }
}

/// Encodes a snapshot of a site's live visitors.
fn snapshot_frame(state: &AppState, site: &str) -> Utf8Bytes {
    let visitors = state.presence.snapshot(site);
    let counts = state.presence.counts(site);
    let frame = Frame::Snapshot {
        now: state.presence.now_ms(),
        counts: &counts,
        visitors: visitors.iter().map(Row::new).collect(),
    };
    state.metrics.panel_frames_snapshot.inc();
    frame.to_json().into()
}

/// Drains every site's changes and publishes one delta per site that has any. Runs every
/// `push_interval` until shutdown.
pub async fn run_pusher(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(state.settings.push_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recorded_before = state.metrics.beacons_recorded();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut upserts = 0u64;
        for site in state.presence.sites() {
            if !state.presence.has_changes(&site) {
                continue;
            }
            let (upserted, left) = publish_changes(&state, &site);
            upserts += upserted;
            // A visitor who left memory has left the site: an open chat nobody answered is
            // missed.
            for visitor_id in left {
                if let Err(error) = state.conversations.visitor_left(&site, &visitor_id).await {
                    tracing::warn!(%error, site = %site, "marking missed conversations failed");
                }
            }
        }
        // Every recorded beacon changed some visitor; those not sent as their own upsert were
        // folded into another change (or were heartbeats a panel does not need).
        let recorded = state.metrics.beacons_recorded();
        let folded = (recorded - recorded_before).saturating_sub(upserts);
        state.metrics.panel_changes_coalesced.inc_by(folded);
        recorded_before = recorded;
    }
}

/// Publishes one site's pending changes; returns how many visitors were upserted and the ids
/// of those who left memory.
fn publish_changes(state: &AppState, site: &str) -> (u64, Vec<Arc<str>>) {
    let Some(channel) = state.live.existing_channel(site) else {
        // Nobody has ever watched this site: a new panel starts from a snapshot anyway, so the
        // changes are dropped without building rows.
        return (0, state.presence.discard_changes(site));
    };
    let _ordered = channel.publish.lock();
    let changes = state.presence.drain_changes(site);
    let upserts = changes.upserted.len() as u64;
    if channel.frames.receiver_count() > 0 {
        let frame = Frame::Delta {
            now: state.presence.now_ms(),
            counts: &changes.counts,
            upsert: changes.upserted.iter().map(Row::new).collect(),
            remove: changes.removed.iter().map(|id| &**id).collect(),
        };
        // A send error only means every panel disconnected meanwhile.
        let _ = channel.frames.send(frame.to_json().into());
        state.metrics.panel_frames_delta.inc();
    }
    (upserts, changes.removed)
}

/// `GET /api/sites/{key}/live`: upgrades to the panel's WebSocket.
pub async fn live_socket(
    State(state): State<AppState>,
    agent: CurrentAgent,
    Path(site_key): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let site = agent.check_site(&state, &site_key)?;
    // A cookie rides along with any page's WebSocket; only our own console may use it that way.
    if agent.via_cookie && !crate::auth::origin_matches_host(&headers) {
        return Err(ApiError::Forbidden(
            "the live channel only accepts the console's own origin".into(),
        ));
    }
    let upgrade = upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(8 * 1024 * 1024)
        .max_message_size(64 * 1024);
    let agent = agent.agent;
    Ok(upgrade.on_upgrade(move |socket| async move {
        // The agent counts as online (for the widget's availability) while this socket is open.
        let _online = state.agent_presence.connect(&agent);
        panel(state, site.key.clone(), socket).await
    }))
}

async fn panel(state: AppState, site: String, mut socket: WebSocket) {
    state.metrics.panel_connections.inc();
    let _connected = scopeguard(|| state.metrics.panel_connections.dec());
    let channel = state.live.channel(&site);
    let (mut frames, snapshot) = {
        let _ordered = channel.publish.lock();
        (channel.frames.subscribe(), snapshot_frame(&state, &site))
    };
    if socket.send(Message::Text(snapshot)).await.is_err() {
        return;
    }
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if socket.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    state.metrics.panel_deltas_dropped.inc_by(missed);
                    let snapshot = {
                        let _ordered = channel.publish.lock();
                        frames = frames.resubscribe();
                        snapshot_frame(&state, &site)
                    };
                    if socket.send(Message::Text(snapshot)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Panels only listen; pings are answered by the WebSocket layer.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                // Keeps proxies from closing an idle connection.
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs a closure when dropped (the gauge must fall however the socket task ends).
fn scopeguard<F: FnOnce()>(on_drop: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(on_drop) = self.0.take() {
                on_drop();
            }
        }
    }
    Guard(Some(on_drop))
}
