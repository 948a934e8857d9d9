//! The visitor channel (issue 3): the widget's side of conversations.
//!
//! A visitor first registers an unguessable credential (`POST /v1/chat/credential`: the widget
//! generates 32 random bytes and keeps them before asking; the server stores their hash once
//! per visitor id and accepts a repeat with the same secret, so a request whose answer was lost
//! is simply sent again), then opens `GET /v1/chat/socket?site=KEY` and says `hello` with its
//! visitor id, credential, and the last message seq it holds per conversation.
//! The server answers `ready` with what the widget is missing, then pushes messages, state
//! changes and agents' typing as they happen. Every message the widget sends carries a
//! `client_id`; the server acknowledges it only after the durable write, and a re-send after a
//! reconnect with the same `client_id` is recognised, so nothing is lost or duplicated.
//!
//! Events reach sockets through one router task: it subscribes to the conversation events once
//! and hands each event to the sockets of that visitor only, so a message wakes one or two
//! sockets, not every open widget. A socket that falls behind resynchronises from the store.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engage::{
    Author, Content, Conversation, ConversationEvent, ConversationOrigin, ConversationState,
    CredentialIssue, Message, MessageBody, Party, PreChat, StartDetails, VisitorRef,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, mpsc, watch};

use crate::beacon::{client_ip, origin_allowed};
use crate::error::ApiError;
use crate::state::AppState;

/// Close codes the widget acts on: drop its credential and ask again (4401), or stop
/// reconnecting until the visitor opens the launcher (4403).
const CLOSE_BAD_CREDENTIAL: u16 = 4401;
const CLOSE_BLOCKED: u16 = 4403;
/// Idle sockets are pinged so proxies do not drop them.
const PING_INTERVAL: Duration = Duration::from_secs(30);

fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Frames queued for one socket before it counts as lagging.
const SOCKET_QUEUE: usize = 64;
/// How long a socket may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages sent per conversation when the widget holds none of it.
const RESUME_LIMIT: usize = 200;

/// A visitor's key in the hub: (site key, visitor id).
type VisitorKey = (Arc<str>, Arc<str>);

/// Open visitor sockets by (site, visitor id), fed by [`run_router`], and per site the
/// latest widget settings frame, fed by the availability task (`availability.rs`).
#[derive(Default)]
pub struct ChatHub {
    sockets: Mutex<HashMap<VisitorKey, Vec<Subscriber>>>,
    sites: Mutex<HashMap<Arc<str>, SiteFeed>>,
    /// Notified when a site gets its first open socket, so the availability task starts
    /// watching it.
    sites_changed: Notify,
    next_id: AtomicU64,
}

/// What every open socket of one site shares: a `watch` channel holding the newest
/// `settings` frame. A socket holds only a receiver (no queue), and several changes in a row
/// reach a slow socket as the one newest frame.
struct SiteFeed {
    sockets: usize,
    settings: watch::Sender<Option<Arc<str>>>,
}

struct Subscriber {
    id: u64,
    events: mpsc::Sender<Arc<ConversationEvent>>,
    lagged: Arc<AtomicBool>,
}

/// A socket's place in the hub: its queue of events, its lag flag and its site's settings.
struct Subscription<'a> {
    _registration: Registration<'a>,
    events: mpsc::Receiver<Arc<ConversationEvent>>,
    lagged: Arc<AtomicBool>,
    settings: watch::Receiver<Option<Arc<str>>>,
}

/// Unregisters a socket when its task ends, however it ends.
struct Registration<'a> {
    hub: &'a ChatHub,
    key: VisitorKey,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut sockets = self.hub.sockets.lock();
        if let Some(list) = sockets.get_mut(&self.key) {
            list.retain(|subscriber| subscriber.id != self.id);
            if list.is_empty() {
                sockets.remove(&self.key);
            }
        }
        drop(sockets);
        let mut sites = self.hub.sites.lock();
        if let Some(feed) = sites.get_mut(&self.key.0) {
            feed.sockets = feed.sockets.saturating_sub(1);
            if feed.sockets == 0 {
                sites.remove(&self.key.0);
            }
        }
    }
}

impl ChatHub {
    fn register(&self, site: &str, visitor_id: &str) -> Subscription<'_> {
        let (events, receiver) = mpsc::channel(SOCKET_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key: VisitorKey = (Arc::from(site), Arc::from(visitor_id));
        self.sockets
            .lock()
            .entry(key.clone())
            .or_default()
            .push(Subscriber {
                id,
                events,
                lagged: Arc::clone(&lagged),
            });
        let (settings, first) = {
            let mut sites = self.sites.lock();
            let first = !sites.contains_key(&key.0);
            let feed = sites.entry(Arc::clone(&key.0)).or_insert_with(|| SiteFeed {
                sockets: 0,
                settings: watch::Sender::new(None),
            });
            feed.sockets += 1;
            (feed.settings.subscribe(), first)
        };
        if first {
            self.sites_changed.notify_one();
        }
        Subscription {
            _registration: Registration { hub: self, key, id },
            events: receiver,
            lagged,
            settings,
        }
    }

    /// Sites with at least one open visitor socket.
    pub fn watched_sites(&self) -> Vec<Arc<str>> {
        self.sites.lock().keys().cloned().collect()
    }

    /// Notified when a site gets its first open socket.
    pub fn sites_changed(&self) -> &Notify {
        &self.sites_changed
    }

    /// Sends a `settings` frame to every open socket of the site (none open: nothing to do).
    pub fn publish_settings(&self, site: &str, frame: String) {
        if let Some(feed) = self.sites.lock().get(site) {
            feed.settings.send_replace(Some(Arc::from(frame)));
        }
    }

    /// Number of open visitor sockets.
    pub fn len(&self) -> usize {
        self.sockets.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dispatch(&self, event: &ConversationEvent) {
        let sockets = self.sockets.lock();
        let key: VisitorKey = (Arc::from(event.site()), Arc::from(event.visitor_id()));
        if let Some(list) = sockets.get(&key) {
            // One shared copy for every socket of the visitor; queue slots stay pointer-sized.
            let event = Arc::new(event.clone());
            for subscriber in list {
                if subscriber.events.try_send(Arc::clone(&event)).is_err() {
                    subscriber.lagged.store(true, Ordering::Release);
                }
            }
        }
    }

    fn mark_all_lagged(&self) {
        for list in self.sockets.lock().values() {
            for subscriber in list {
                subscriber.lagged.store(true, Ordering::Release);
            }
        }
    }
}

/// Routes conversation events to the sockets of the visitor they concern. Runs until shutdown.
pub async fn run_router(state: AppState) {
    let mut events = state.conversations.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => state.chat.dispatch(&event),
                Err(RecvError::Lagged(_)) => state.chat.mark_all_lagged(),
                Err(RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    site: String,
    vid: String,
    /// The secret the widget generated and keeps (32 random bytes, unpadded base64url).
    credential: String,
}

/// `POST /v1/chat/credential` `{"site","vid","credential"}`: registers the secret credential
/// the widget generated for a live visitor. The widget keeps the secret before it asks, so the
/// request is safe to repeat: `201 {"created":true}` when it is stored now, `200
/// {"created":false}` when the visitor already has exactly this one (a repeat after a lost
/// answer), `409` when the visitor has a different one (that browser lost its credential and
/// starts as a new visitor), `403` for a blocked visitor (by id or address; nothing is
/// stored), `400` for a malformed body or credential, `404` for an unknown site or a visitor
/// that is not live. The widget sends it as `text/plain` (no preflight), so the body is read
/// as bytes and parsed here. Every answer after the origin check carries the CORS header, so
/// the widget can tell a block (403) from a lost credential (409).
pub async fn issue_credential(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CredentialRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("invalid request JSON: {error}")))?;
    let site = state
        .sites
        .get(&request.site)
        .ok_or_else(|| ApiError::NotFound(format!("unknown site {:?}", request.site)))?;
    let origin = origin_allowed(&headers, &site)?;
    let result = async {
        if state.presence.get(&site.key, &request.vid).is_none() {
            return Err(ApiError::NotFound(
                "this visitor is not live on the site; send a page view first".into(),
            ));
        }
        let visitor = VisitorRef {
            site: &site.key,
            visitor_id: &request.vid,
            ip: Some(client_ip(
                peer.ip(),
                &headers,
                &state.settings.trusted_proxies,
            )),
        };
        Ok(
            match state
                .conversations
                .issue_visitor_credential(visitor, &request.credential)
                .await?
            {
                CredentialIssue::Created => {
                    (StatusCode::CREATED, Json(json!({ "created": true }))).into_response()
                }
                CredentialIssue::Repeated => {
                    (StatusCode::OK, Json(json!({ "created": false }))).into_response()
                }
                CredentialIssue::Conflict => ApiError::Conflict(
                    "this visitor already has a different credential; a browser that lost it \
                     starts as a new visitor"
                        .into(),
                )
                .into_response(),
            },
        )
    }
    .await;
    Ok(crate::beacon::with_cors(
        result.unwrap_or_else(IntoResponse::into_response),
        origin,
    ))
}

#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    site: String,
}

/// `GET /v1/chat/socket?site=KEY`: the widget's WebSocket.
pub async fn socket(
    State(state): State<AppState>,
    Query(query): Query<SocketQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let site = state
        .sites
        .get(&query.site)
        .ok_or_else(|| ApiError::NotFound(format!("unknown site {:?}", query.site)))?;
    origin_allowed(&headers, &site)?;
    let ip = client_ip(peer.ip(), &headers, &state.settings.trusted_proxies);
    // Small buffers: a widget socket carries a few short messages, and there is one per visitor.
    let upgrade = upgrade
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(16 * 1024)
        .max_frame_size(16 * 1024);
    let site_key = site.key.clone();
    Ok(upgrade.on_upgrade(move |socket| visitor_socket(state, site_key, ip, socket)))
}

/// What the widget sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Hello {
        site: String,
        vid: String,
        credential: String,
        #[serde(default)]
        after: BTreeMap<String, u64>,
    },
    Send {
        client_id: String,
        #[serde(default)]
        conversation_id: Option<u64>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        attachment_id: Option<String>,
        #[serde(default)]
        prechat: Option<PreChatFrame>,
    },
    Typing {
        conversation_id: u64,
        typing: bool,
    },
    Read {
        conversation_id: u64,
        seq: u64,
    },
    Rate {
        conversation_id: u64,
        score: u8,
        #[serde(default)]
        comment: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreChatFrame {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    subject: Option<String>,
}

/// A conversation as the visitor sees it: no tags, read marks, addresses or internal ids.
#[derive(Debug, Serialize)]
struct VisitorConversation {
    id: u64,
    state: ConversationState,
    agents: Vec<AgentName>,
    rating: Option<engage::Rating>,
    origin: VisitorOrigin,
}

/// Who started a conversation, as far as the widget needs to know: a trigger's message is
/// shown as a proactive bubble (and may open the widget). Which trigger, its variant and
/// agents' ids stay on the team's side.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum VisitorOrigin {
    Visitor,
    Agent,
    Trigger { open_widget: bool },
}

impl From<&ConversationOrigin> for VisitorOrigin {
    fn from(origin: &ConversationOrigin) -> Self {
        match origin {
            ConversationOrigin::Visitor => VisitorOrigin::Visitor,
            ConversationOrigin::Agent { .. } => VisitorOrigin::Agent,
            ConversationOrigin::Trigger { open_widget, .. } => VisitorOrigin::Trigger {
                open_widget: *open_widget,
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct AgentName {
    id: u64,
    name: String,
}

/// A message as the visitor sees it: the author's kind and display name only.
#[derive(Debug, Serialize)]
struct VisitorMessage<'a> {
    conversation_id: u64,
    seq: u64,
    created_ms: i64,
    client_id: Option<&'a str>,
    author: VisitorAuthor<'a>,
    body: &'a MessageBody,
}

#[derive(Debug, Serialize)]
struct VisitorAuthor<'a> {
    kind: &'static str,
    name: Option<&'a str>,
}

impl<'a> VisitorMessage<'a> {
    fn new(message: &'a Message) -> Self {
        let (kind, name) = match &message.author {
            Author::Visitor => ("visitor", None),
            Author::Agent { name, .. } => ("agent", Some(name.as_str())),
            Author::Bot { name } => ("bot", Some(name.as_str())),
            Author::System => ("system", None),
        };
        VisitorMessage {
            conversation_id: message.conversation_id,
            seq: message.seq,
            created_ms: message.created_ms,
            client_id: message.client_id.as_deref(),
            author: VisitorAuthor { kind, name },
            body: &message.body,
        }
    }
}

struct Session {
    state: AppState,
    site: String,
    visitor_id: String,
    ip: IpAddr,
    /// The highest seq sent per conversation, so resends after a resync skip what the widget has.
    sent: HashMap<u64, u64>,
}

impl Session {
    fn visitor(&self) -> VisitorRef<'_> {
        VisitorRef {
            site: &self.site,
            visitor_id: &self.visitor_id,
            ip: Some(self.ip),
        }
    }

    async fn view(&self, conversation: &Conversation) -> VisitorConversation {
        let mut agents = Vec::new();
        for agent_id in &conversation.participants {
            if let Ok(Some(agent)) = self.state.store.agent(*agent_id).await {
                agents.push(AgentName {
                    id: agent.id,
                    name: agent.name,
                });
            }
        }
        VisitorConversation {
            id: conversation.id,
            state: conversation.state,
            agents,
            rating: conversation.rating.clone(),
            origin: VisitorOrigin::from(&conversation.origin),
        }
    }

    /// The message frame, unless the widget already has it or must not see it.
    fn message_frame(&mut self, message: &Message) -> Option<String> {
        if !message.visible_to_visitor() {
            return None;
        }
        let sent = self.sent.entry(message.conversation_id).or_default();
        if message.seq <= *sent {
            return None;
        }
        *sent = message.seq;
        Some(json!({ "type": "message", "message": VisitorMessage::new(message) }).to_string())
    }

    /// Everything the widget lacks: its conversations and the messages after what it holds.
    async fn catch_up(&mut self) -> Result<(Vec<VisitorConversation>, Vec<Message>), ApiError> {
        let conversations = self
            .state
            .conversations
            .conversations_of_visitor(&self.site, &self.visitor_id, Party::Visitor(self.visitor()))
            .await?;
        let mut views = Vec::new();
        let mut messages = Vec::new();
        for (index, conversation) in conversations.iter().enumerate() {
            let held = self.sent.get(&conversation.id).copied();
            // The open conversations, the latest one, and any the widget already holds.
            if conversation.state != ConversationState::Open && index > 0 && held.is_none() {
                continue;
            }
            views.push(self.view(conversation).await);
            let after = held.unwrap_or(0);
            let page = self
                .state
                .conversations
                .messages(
                    conversation.id,
                    Party::Visitor(self.visitor()),
                    after,
                    RESUME_LIMIT,
                )
                .await?;
            messages.extend(page);
        }
        Ok((views, messages))
    }
}

async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket.send(WsMessage::Text(text.into())).await.is_ok()
}

async fn visitor_socket(state: AppState, site: String, ip: IpAddr, mut socket: WebSocket) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) => serde_json::from_str::<ClientFrame>(&text).ok(),
        _ => None,
    };
    let Some(ClientFrame::Hello {
        site: hello_site,
        vid,
        credential,
        after,
    }) = hello
    else {
        let _ = send_text(
            &mut socket,
            error_frame("the first frame must be a hello", None),
        )
        .await;
        return;
    };
    let verified = hello_site == site
        && Box::pin(
            state
                .conversations
                .verify_visitor_credential(&site, &vid, &credential),
        )
        .await
        .unwrap_or(false);
    if !verified {
        let _ = send_text(&mut socket, error_frame("invalid visitor credential", None)).await;
        let _ = socket
            .send(close(CLOSE_BAD_CREDENTIAL, "invalid visitor credential"))
            .await;
        return;
    }
    if state.conversations.is_blocked(&site, &vid, Some(ip)) {
        let _ = send_text(
            &mut socket,
            error_frame("you cannot chat with this site", None),
        )
        .await;
        let _ = socket.send(close(CLOSE_BLOCKED, "blocked")).await;
        return;
    }
    let chat = &state.chat;
    let mut subscription = chat.register(&site, &vid);
    let mut session = Session {
        state: state.clone(),
        site,
        visitor_id: vid,
        ip,
        sent: after
            .into_iter()
            .filter_map(|(id, seq)| id.parse::<u64>().ok().map(|id| (id, seq)))
            .collect(),
    };
    // Work that awaits the store is boxed: an idle socket's task then only holds its own loop
    // state, not room for the largest of those futures (thousands of idle widgets).
    let ready = match Box::pin(session.catch_up()).await {
        Ok((conversations, messages)) => {
            for message in &messages {
                let seq = session.sent.entry(message.conversation_id).or_default();
                *seq = (*seq).max(message.seq);
            }
            json!({
                "type": "ready",
                "conversations": conversations,
                "messages": messages.iter().map(VisitorMessage::new).collect::<Vec<_>>(),
                "settings": crate::widget_api::widget_settings_for(&state, &session.site).await,
            })
            .to_string()
        }
        Err(error) => error_frame(&error.to_string(), None),
    };
    if !send_text(&mut socket, ready).await {
        return;
    }
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            event = subscription.events.recv() => {
                let Some(event) = event else { return };
                if subscription.lagged.swap(false, Ordering::AcqRel) {
                    if !Box::pin(resync(&mut session, &mut socket)).await {
                        return;
                    }
                    continue;
                }
                if !Box::pin(forward(&mut session, &mut socket, event)).await {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    let reply = Box::pin(handle_frame(&mut session, &text)).await;
                    if let Some(reply) = reply
                        && !send_text(&mut socket, reply).await
                    {
                        return;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            changed = subscription.settings.changed() => {
                // The sender lives as long as this socket is registered; an error cannot
                // happen, but ending is better than spinning on it.
                if changed.is_err() {
                    return;
                }
                let frame = subscription.settings.borrow_and_update().clone();
                if let Some(frame) = frame
                    && !send_text(&mut socket, frame.to_string()).await
                {
                    return;
                }
            }
            _ = shutdown.changed() => {
                let _ = socket.send(WsMessage::Close(None)).await;
                return;
            }
            _ = tokio::time::sleep(PING_INTERVAL) => {
                if socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn resync(session: &mut Session, socket: &mut WebSocket) -> bool {
    match session.catch_up().await {
        Ok((conversations, messages)) => {
            for conversation in conversations {
                if !send_text(
                    socket,
                    json!({ "type": "conversation", "conversation": conversation }).to_string(),
                )
                .await
                {
                    return false;
                }
            }
            for message in &messages {
                if let Some(frame) = session.message_frame(message)
                    && !send_text(socket, frame).await
                {
                    return false;
                }
            }
            true
        }
        Err(error) => send_text(socket, error_frame(&error.to_string(), None)).await,
    }
}

async fn forward(
    session: &mut Session,
    socket: &mut WebSocket,
    event: Arc<ConversationEvent>,
) -> bool {
    match &*event {
        ConversationEvent::MessageAdded {
            conversation,
            message,
        } => {
            // A conversation the widget has not heard of (an agent or a trigger wrote first):
            // its record goes first, so the widget knows who started it before showing the
            // message (a trigger's is a proactive bubble).
            if !session.sent.contains_key(&conversation.id)
                && message.visible_to_visitor()
                && !send_text(
                    socket,
                    json!({ "type": "conversation", "conversation": session.view(conversation).await })
                        .to_string(),
                )
                .await
            {
                return false;
            }
            if let Some(frame) = session.message_frame(message)
                && !send_text(socket, frame).await
            {
                return false;
            }
            if matches!(message.body, MessageBody::Event { .. }) {
                let view = session.view(conversation).await;
                return send_text(
                    socket,
                    json!({ "type": "conversation", "conversation": view }).to_string(),
                )
                .await;
            }
            true
        }
        ConversationEvent::ConversationChanged { conversation } => {
            let view = session.view(conversation).await;
            send_text(
                socket,
                json!({ "type": "conversation", "conversation": view }).to_string(),
            )
            .await
        }
        ConversationEvent::Typing {
            conversation_id,
            who,
            typing,
            ..
        } => {
            let name = match &who {
                Author::Agent { name, .. } | Author::Bot { name } => name.clone(),
                // The visitor's own typing is not echoed back.
                Author::Visitor | Author::System => return true,
            };
            send_text(
                socket,
                json!({ "type": "typing", "conversation_id": conversation_id, "name": name, "typing": typing }).to_string(),
            )
            .await
        }
        ConversationEvent::BlockChanged { blocked, .. } => {
            if *blocked {
                let _ =
                    send_text(socket, error_frame("you cannot chat with this site", None)).await;
                let _ = socket.send(close(CLOSE_BLOCKED, "blocked")).await;
                return false;
            }
            true
        }
    }
}

fn error_frame(message: &str, client_id: Option<&str>) -> String {
    json!({ "type": "error", "message": message, "client_id": client_id }).to_string()
}

async fn handle_frame(session: &mut Session, text: &str) -> Option<String> {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(error) => return Some(error_frame(&format!("invalid frame: {error}"), None)),
    };
    let conversations = &session.state.conversations;
    let visitor = session.visitor();
    match frame {
        ClientFrame::Hello { .. } => Some(error_frame("already said hello", None)),
        ClientFrame::Send {
            client_id,
            conversation_id,
            text,
            attachment_id,
            prechat,
        } => {
            let outcome = match (conversation_id, attachment_id) {
                (Some(id), Some(attachment)) => {
                    conversations
                        .post_visitor_message(
                            id,
                            visitor,
                            Content::Attachment {
                                id: attachment,
                                text,
                            },
                            Some(&client_id),
                        )
                        .await
                }
                (Some(id), None) => {
                    conversations
                        .post_visitor_message(
                            id,
                            visitor,
                            Content::Text(text.unwrap_or_default()),
                            Some(&client_id),
                        )
                        .await
                }
                (None, Some(_)) => {
                    return Some(error_frame(
                        "start the conversation with a text message first",
                        Some(&client_id),
                    ));
                }
                (None, None) => {
                    let page_url = session
                        .state
                        .presence
                        .get(&session.site, &session.visitor_id)
                        .map(|visitor| visitor.current_url.to_string());
                    let details = StartDetails {
                        subject: prechat.as_ref().and_then(|form| form.subject.clone()),
                        page_url,
                        prechat: prechat.map(|form| PreChat {
                            name: form.name,
                            email: form.email,
                        }),
                    };
                    conversations
                        .start_by_visitor(
                            visitor,
                            text.as_deref().unwrap_or(""),
                            Some(&client_id),
                            details,
                        )
                        .await
                }
            };
            Some(match outcome {
                Ok(outcome) => json!({
                    "type": "ack",
                    "client_id": client_id,
                    "conversation_id": outcome.message.conversation_id,
                    "seq": outcome.message.seq,
                })
                .to_string(),
                Err(error) => error_frame(&error.to_string(), Some(&client_id)),
            })
        }
        ClientFrame::Typing {
            conversation_id,
            typing,
        } => conversations
            .typing(conversation_id, Party::Visitor(visitor), typing)
            .await
            .err()
            .map(|error| error_frame(&error.to_string(), None)),
        ClientFrame::Read {
            conversation_id,
            seq,
        } => conversations
            .mark_read(conversation_id, Party::Visitor(visitor), seq)
            .await
            .err()
            .map(|error| error_frame(&error.to_string(), None)),
        ClientFrame::Rate {
            conversation_id,
            score,
            comment,
        } => conversations
            .rate(conversation_id, visitor, score, comment.as_deref())
            .await
            .err()
            .map(|error| error_frame(&error.to_string(), None)),
    }
}

/// The visitor's identity on attachment requests (a fetch can set headers; a WebSocket cannot).
async fn attachment_party<'a>(
    state: &AppState,
    headers: &'a HeaderMap,
) -> Result<(&'a str, &'a str), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let (Some(site), Some(visitor), Some(credential)) = (
        header("x-porchlight-site"),
        header("x-porchlight-visitor"),
        header("x-porchlight-credential"),
    ) else {
        return Err(ApiError::Unauthorized);
    };
    if !state
        .conversations
        .verify_visitor_credential(site, visitor, credential)
        .await?
    {
        return Err(ApiError::Unauthorized);
    }
    Ok((site, visitor))
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    conversation_id: u64,
}

/// The preflight a browser sends before an attachment request from the site's pages: the
/// credential travels in `X-Porchlight-*` headers, which a simple request cannot carry. The
/// site is named in a header the preflight does not include, so the origin is echoed here and
/// the request itself is refused unless its origin is allowed for its site.
pub async fn attachment_preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = headers.get(header::ORIGIN).cloned() {
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "content-type, x-filename, x-porchlight-site, x-porchlight-visitor, x-porchlight-credential",
            ),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        out.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// CORS for an attachment request: the origin must be allowed for the site the request names
/// (or be Porchlight's own). Errors get the header too, so the widget can read their message.
fn attachment_origin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, ApiError> {
    let site = headers
        .get("x-porchlight-site")
        .and_then(|value| value.to_str().ok())
        .and_then(|key| state.sites.get(key));
    match site {
        Some(site) => origin_allowed(headers, &site),
        // An unknown site fails the credential check with 401 anyway.
        None => Ok(None),
    }
}

/// `POST /v1/chat/attachments?conversation_id=ID`: a visitor uploads a file (at most 2 MB).
pub async fn upload_attachment(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let origin = match attachment_origin(&state, &headers) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let result = async {
        let (site, visitor_id) = attachment_party(&state, &headers).await?;
        let name = headers
            .get("x-filename")
            .and_then(|value| value.to_str().ok())
            .map(percent_decode)
            .unwrap_or_else(|| "file".to_owned());
        let mime = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/octet-stream");
        let meta = state
            .conversations
            .upload_attachment(
                query.conversation_id,
                Party::Visitor(VisitorRef::new(site, visitor_id)),
                &name,
                mime,
                body.to_vec(),
            )
            .await?;
        Ok::<_, ApiError>(
            (StatusCode::CREATED, Json(json!({ "attachment": meta }))).into_response(),
        )
    }
    .await;
    crate::beacon::with_cors(result.unwrap_or_else(IntoResponse::into_response), origin)
}

/// `GET /v1/chat/attachments/{conversation}/{id}`: only the conversation's visitor (and, via
/// the agents' API, its agents) may read it.
pub async fn download_attachment(
    State(state): State<AppState>,
    Path((conversation_id, attachment_id)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    let origin = match attachment_origin(&state, &headers) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let result = async {
        let (site, visitor_id) = attachment_party(&state, &headers).await?;
        let (meta, bytes) = state
            .conversations
            .attachment(
                conversation_id,
                &attachment_id,
                Party::Visitor(VisitorRef::new(site, visitor_id)),
            )
            .await?;
        Ok::<_, ApiError>(attachment_response(&meta, bytes))
    }
    .await;
    crate::beacon::with_cors(result.unwrap_or_else(IntoResponse::into_response), origin)
}

/// Serves stored attachment bytes safely: images inline, anything else as a download, never
/// sniffed, never able to run script.
pub fn attachment_response(meta: &engage::AttachmentMeta, bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(&meta.mime)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if !meta.image {
        let disposition = format!(
            "attachment; filename=\"{}\"",
            meta.name.replace(['"', '\\'], "_")
        );
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    response
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16)
        {
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
