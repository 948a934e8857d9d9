//! The inbox's live channel (`GET /api/inbox/live`) and the task that keeps the presence
//! table's "on chat" and "blocked" flags in step with conversations.
//!
//! Both read `engage::Conversations::subscribe`, the service's broadcast of every event of
//! every site. Each inbox socket holds one receiver and drops what concerns sites its agent
//! cannot see; a socket that falls behind is told to resynchronise (`{"type":"resync"}`: the
//! console re-fetches the inbox) instead of slowing anyone down.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use engage::{Agent, Author, ConversationEvent};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tracker::{Cursor, ListQuery, Segment};

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/inbox/live`: upgrades to the agent's inbox WebSocket. The first frame is
/// `{"type":"ready"}`, sent once the socket receives events; then `message`, `conversation`,
/// `typing`, `block` and `resync` frames.
pub async fn inbox_socket(
    State(state): State<AppState>,
    current: CurrentAgent,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // A cookie rides along with any page's WebSocket; only our own console may use it that way.
    if current.via_cookie && !crate::auth::origin_matches_host(&headers) {
        return Err(ApiError::Forbidden(
            "the inbox channel only accepts the console's own origin".into(),
        ));
    }
    let upgrade = upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(8 * 1024 * 1024)
        .max_message_size(64 * 1024);
    let agent = current.agent;
    Ok(upgrade.on_upgrade(move |socket| async move {
        // The agent counts as online (for the widget's availability) while this socket is open.
        let _online = state.agent_presence.connect(&agent);
        inbox_feed(state, agent, socket).await
    }))
}

/// The frame an event becomes for `agent`, or `None` if it is not theirs to see.
fn frame_for(event: &ConversationEvent, agent: &Agent) -> Option<String> {
    if !agent.can_access(event.site()) {
        return None;
    }
    let frame = match event {
        ConversationEvent::MessageAdded {
            conversation,
            message,
        } => json!({ "type": "message", "conversation": conversation, "message": message }),
        ConversationEvent::ConversationChanged { conversation } => {
            json!({ "type": "conversation", "conversation": conversation })
        }
        ConversationEvent::Typing {
            conversation_id,
            who,
            typing,
            ..
        } => {
            // An agent does not need their own typing echoed back.
            if matches!(who, Author::Agent { id, .. } if *id == agent.id) {
                return None;
            }
            json!({
                "type": "typing",
                "conversation_id": conversation_id,
                "who": who,
                "typing": typing,
            })
        }
        ConversationEvent::BlockChanged {
            site,
            visitor_id,
            blocked,
        } => json!({
            "type": "block",
            "site": site,
            "visitor_id": visitor_id,
            "blocked": blocked,
        }),
    };
    Some(frame.to_string())
}

async fn inbox_feed(state: AppState, agent: Agent, mut socket: WebSocket) {
    let mut events = state.conversations.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    let ready = json!({ "type": "ready" }).to_string();
    if socket.send(WsMessage::Text(ready.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                let _ = socket.send(WsMessage::Close(None)).await;
                return;
            }
            event = events.recv() => {
                let frame = match event {
                    Ok(event) => match frame_for(&event, &agent) {
                        Some(frame) => frame,
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, agent = agent.id, "inbox socket fell behind");
                        json!({ "type": "resync" }).to_string()
                    }
                    Err(RecvError::Closed) => return,
                };
                if socket.send(WsMessage::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // The console only listens here; it acts through the REST endpoints.
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                // Keeps proxies from closing an idle connection.
                if socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps the presence flags in step with conversations until shutdown: a visitor is *on chat*
/// while their conversation is open, and *blocked* while blocked. Started by the server.
///
/// Only visitors who are live have flags to set; a visitor who arrives later is flagged by
/// whoever handles their arrival.
pub async fn run_presence_sync(state: AppState) {
    let mut events = state.conversations.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = events.recv() => match event {
                Ok(event) => apply(&state, &event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "presence sync fell behind; resynchronising flags");
                    resync(&state).await;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn apply(state: &AppState, event: &ConversationEvent) {
    match event {
        ConversationEvent::MessageAdded { conversation, .. }
        | ConversationEvent::ConversationChanged { conversation } => {
            state.presence.set_on_chat(
                &conversation.site,
                &conversation.visitor_id,
                conversation.is_open(),
            );
        }
        ConversationEvent::BlockChanged {
            site,
            visitor_id,
            blocked,
        } => {
            state.presence.set_blocked(site, visitor_id, *blocked);
            if !blocked {
                // The block may also have covered an address other live visitors share: let
                // the blocks that remain decide for every visitor still flagged.
                let flagged = state.presence.list(
                    site,
                    &tracker::ListQuery {
                        segment: tracker::Segment::Blocked,
                        limit: tracker::MAX_LIST_LIMIT,
                        ..tracker::ListQuery::default()
                    },
                );
                for visitor in flagged.visitors {
                    let still = state
                        .conversations
                        .is_blocked(site, &visitor.id, Some(visitor.ip));
                    state.presence.set_blocked(site, &visitor.id, still);
                }
            }
        }
        ConversationEvent::Typing { .. } => {}
    }
}

/// Recomputes every live visitor's flags from the store, after events were missed.
async fn resync(state: &AppState) {
    for site in state.presence.sites() {
        let conversations = match state.store.conversations_of_site(&site).await {
            Ok(conversations) => conversations,
            Err(error) => {
                tracing::error!(%error, site = &*site, "presence sync: cannot read conversations");
                continue;
            }
        };
        let open: HashSet<&str> = conversations
            .iter()
            .filter(|conversation| conversation.is_open())
            .map(|conversation| conversation.visitor_id.as_str())
            .collect();
        for visitor_id in &open {
            state.presence.set_on_chat(&site, visitor_id, true);
        }
        for visitor_id in live_in_segment(state, &site, Segment::OnChat) {
            if !open.contains(visitor_id.as_str()) {
                state.presence.set_on_chat(&site, &visitor_id, false);
            }
        }
        let blocks = match state.store.blocks(&site).await {
            Ok(blocks) => blocks,
            Err(error) => {
                tracing::error!(%error, site = &*site, "presence sync: cannot read blocks");
                continue;
            }
        };
        for visitor_id in blocks
            .iter()
            .filter_map(|block| block.visitor_id.as_deref())
        {
            state.presence.set_blocked(&site, visitor_id, true);
        }
        for visitor_id in live_in_segment(state, &site, Segment::Blocked) {
            if !state.conversations.is_blocked(&site, &visitor_id, None) {
                state.presence.set_blocked(&site, &visitor_id, false);
            }
        }
    }
}

/// The ids of a site's live visitors in a segment.
fn live_in_segment(state: &AppState, site: &str, segment: Segment) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = state.presence.list(
            site,
            &ListQuery {
                segment,
                search: None,
                cursor,
                limit: 500,
            },
        );
        ids.extend(page.visitors.iter().map(|visitor| visitor.id.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}
