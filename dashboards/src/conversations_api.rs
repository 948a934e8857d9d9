//! The agents' side of conversations (issue 3): the inbox, the chat, blocking, attachments and
//! the inbox's live channel. Every handler authenticates through [`CurrentAgent`]; the rules of
//! who may do what live in `engage::Conversations`, which every handler calls with the agent.
//!
//! Agents get the full records (`engage::Conversation`, `engage::Message`, notes included):
//! they are the team's view. What a visitor may see is the widget channel's business
//! (`chat.rs`).

mod attachments;
mod live;

use std::net::IpAddr;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use engage::{
    Agent, Content, Conversation, InboxFilter, InboxTab, Party, StartDetails, VisitorRef,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;

pub use live::run_presence_sync;

/// The most conversations one inbox request returns.
const MAX_INBOX: usize = 1000;
/// The inbox's page size when the request names none.
const DEFAULT_INBOX: usize = 200;
/// The most messages one request returns (the service's own cap).
const MAX_MESSAGES: usize = engage::conversations::MAX_PAGE;

/// Routes under `/api` for conversations.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/inbox", get(inbox))
        .route("/inbox/live", get(live::inbox_socket))
        .route(
            "/sites/{key}/visitors/{id}/conversations",
            get(visitor_conversations).post(start_conversation),
        )
        .route(
            "/sites/{key}/visitors/{id}/block",
            post(block_visitor).delete(unblock_visitor),
        )
        .route("/sites/{key}/blocks", get(list_blocks))
        .route("/conversations/{id}", get(get_conversation))
        .route(
            "/conversations/{id}/messages",
            get(list_messages).post(post_message),
        )
        .route("/conversations/{id}/open", post(open))
        .route("/conversations/{id}/join", post(join))
        .route("/conversations/{id}/leave", post(leave))
        .route("/conversations/{id}/resolve", post(resolve))
        .route("/conversations/{id}/reopen", post(reopen))
        .route("/conversations/{id}/invite", post(invite))
        .route("/conversations/{id}/tags", axum::routing::put(set_tags))
        .route("/conversations/{id}/read", post(mark_read))
        .route("/conversations/{id}/typing", post(typing))
        .route(
            "/conversations/{id}/attachments",
            // The upload reads its own body under the attachment limit (with a clear 413);
            // this only lifts the API's 64 KB default for this one route.
            post(attachments::upload).layer(DefaultBodyLimit::max(attachments::UPLOAD_BODY_LIMIT)),
        )
        .route(
            "/conversations/{id}/attachments/{att}",
            get(attachments::download),
        )
}

/// The visitor as the inbox shows them beside a conversation: from the presence table while
/// they are live, else from what the conversation itself knows (the pre-chat form).
fn visitor_summary(state: &AppState, conversation: &Conversation) -> Value {
    let prechat = conversation.prechat.as_ref();
    let prechat_name = prechat.and_then(|p| p.name.as_deref());
    let prechat_email = prechat.and_then(|p| p.email.as_deref());
    match state
        .presence
        .get(&conversation.site, &conversation.visitor_id)
    {
        Some(visitor) => json!({
            "id": &*visitor.id,
            "number": visitor.number,
            "name": visitor.identity.name.as_deref().or(prechat_name),
            "email": visitor.identity.email.as_deref().or(prechat_email),
            "city": visitor.geo.city.as_deref(),
            "country_code": visitor.geo.country_code.as_deref(),
            "online": visitor.left_ms.is_none(),
        }),
        None => json!({
            "id": conversation.visitor_id,
            "number": null,
            "name": prechat_name,
            "email": prechat_email,
            "city": null,
            "country_code": null,
            "online": false,
        }),
    }
}

/// A conversation as the inbox lists it: the record, whether the agent has unread visitor
/// messages in it, and the visitor.
fn inbox_item(state: &AppState, agent: &Agent, conversation: &Conversation) -> Value {
    let mut item = serde_json::to_value(conversation).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut item {
        fields.insert(
            "unread".into(),
            Value::Bool(conversation.unread_for_agent(agent.id)),
        );
        fields.insert("visitor".into(), visitor_summary(state, conversation));
    }
    item
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    tab: Option<String>,
    #[serde(default)]
    agent: Option<u64>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    rating: Option<u8>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Empty query parameters mean "no filter".
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.trim().is_empty())
}

/// `GET /api/inbox?site=KEY&tab=mine&agent=ID&tag=T&rating=N&url=TEXT&ip=TEXT&from=MS&to=MS&q=TEXT&limit=N`:
/// conversations newest activity first, and the tab counts (over the same sites, unfiltered).
pub async fn inbox(
    State(state): State<AppState>,
    current: CurrentAgent,
    Query(query): Query<InboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let sites: Vec<String> = match non_empty(query.site) {
        Some(key) => vec![current.check_site(&state, &key)?.key.clone()],
        None => state
            .sites
            .all()
            .into_iter()
            .filter(|site| current.agent.can_access(&site.key))
            .map(|site| site.key.clone())
            .collect(),
    };
    let tab = match non_empty(query.tab) {
        Some(text) => Some(
            text.parse::<InboxTab>()
                .map_err(|error| ApiError::bad_request(error.to_string()))?,
        ),
        None => None,
    };
    if query.rating.is_some_and(|score| !(1..=5).contains(&score)) {
        return Err(ApiError::bad_request("rating must be between 1 and 5"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_INBOX);
    if limit == 0 || limit > MAX_INBOX {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_INBOX}"
        )));
    }
    let text = non_empty(query.q);
    if text.as_ref().is_some_and(|text| text.len() > 256) {
        return Err(ApiError::bad_request(
            "search text is longer than 256 bytes",
        ));
    }
    let filter = InboxFilter {
        tab,
        agent_id: query.agent,
        tag: non_empty(query.tag),
        rating: query.rating,
        page_url: non_empty(query.url),
        ip: non_empty(query.ip),
        from_ms: query.from,
        to_ms: query.to,
        text,
        limit: Some(limit),
    };
    let conversations = state
        .conversations
        .inbox(&current.agent, &sites, &filter)
        .await?;
    let counts = state
        .conversations
        .unread_counts(&current.agent, &sites)
        .await?;
    Ok(Json(json!({
        "conversations": conversations
            .iter()
            .map(|conversation| inbox_item(&state, &current.agent, conversation))
            .collect::<Vec<_>>(),
        "counts": counts,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    #[serde(default)]
    text: Option<String>,
    /// A saved reply of the site as the opening offer, instead of `text`.
    #[serde(default)]
    saved_reply_id: Option<u64>,
    #[serde(default)]
    client_id: Option<String>,
}

/// `POST /api/sites/{key}/visitors/{id}/conversations` `{"text" | "saved_reply_id",
/// "client_id"?}`: "Open conversation" from the live panel or the visitor card, with a typed
/// message or a saved reply as the opening offer. The conversation is assigned to the agent; a
/// visitor who already has an open conversation gets the message there.
pub async fn start_conversation(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
    Json(request): Json<StartRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let text = match (request.text, request.saved_reply_id) {
        (Some(text), None) => text,
        (None, Some(id)) => {
            state
                .saved_replies
                .get(&site.key, id, &current.agent)
                .await?
                .text
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send either \"text\" or \"saved_reply_id\", not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "send \"text\" (or \"saved_reply_id\" for a saved reply)",
            ));
        }
    };
    let live = state.presence.get(&site.key, &visitor_id);
    let visitor =
        VisitorRef::new(&site.key, &visitor_id).with_ip(live.as_ref().map(|visitor| visitor.ip));
    let details = StartDetails {
        page_url: live.as_ref().map(|visitor| visitor.current_url.to_string()),
        ..StartDetails::default()
    };
    let outcome = state
        .conversations
        .start_by_agent(
            visitor,
            &current.agent,
            &text,
            request.client_id.as_deref(),
            details,
        )
        .await?;
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "conversation": outcome.conversation, "message": outcome.message })),
    ))
}

/// `GET /api/sites/{key}/visitors/{id}/conversations`: the visitor's conversations, newest
/// first (the visitor card's past conversations).
pub async fn visitor_conversations(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let conversations = state
        .conversations
        .conversations_of_visitor(&site.key, &visitor_id, Party::Agent(&current.agent))
        .await?;
    Ok(Json(json!({ "conversations": conversations })))
}

/// `GET /api/conversations/{id}`
pub async fn get_conversation(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state
        .conversations
        .conversation_for(id, Party::Agent(&current.agent))
        .await?;
    Ok(Json(json!({ "conversation": conversation })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/conversations/{id}/messages?after=0&limit=100`: messages after a seq, in order,
/// notes and system events included.
pub async fn list_messages(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    Query(query): Query<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_MESSAGES}"
        )));
    }
    let messages = state
        .conversations
        .messages(
            id,
            Party::Agent(&current.agent),
            query.after.unwrap_or(0),
            limit,
        )
        .await?;
    Ok(Json(json!({ "messages": messages })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    /// An internal note the visitor never receives.
    #[serde(default)]
    note: bool,
    /// An attachment uploaded earlier to this conversation; `text` is then its caption.
    #[serde(default)]
    attachment_id: Option<String>,
}

/// `POST /api/conversations/{id}/messages` `{"text", "client_id"?, "note"?, "attachment_id"?}`.
pub async fn post_message(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    Json(request): Json<PostMessage>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let client_id = request.client_id.as_deref();
    let outcome = match (request.note, request.attachment_id, request.text) {
        (true, Some(_), _) => {
            return Err(ApiError::bad_request(
                "a note cannot carry an attachment; send it as a message",
            ));
        }
        (true, None, Some(text)) => {
            state
                .conversations
                .add_note(id, &current.agent, &text, client_id)
                .await?
        }
        (false, Some(attachment), text) => {
            let content = Content::Attachment {
                id: attachment,
                text,
            };
            state
                .conversations
                .post_agent_message(id, &current.agent, content, client_id)
                .await?
        }
        (false, None, Some(text)) => {
            state
                .conversations
                .post_agent_message(id, &current.agent, Content::Text(text), client_id)
                .await?
        }
        (_, None, None) => {
            return Err(ApiError::bad_request(
                "send \"text\" (or \"attachment_id\" for an uploaded file)",
            ));
        }
    };
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "message": outcome.message, "conversation": outcome.conversation })),
    ))
}

fn conversation_json(conversation: Conversation) -> Json<Value> {
    Json(json!({ "conversation": conversation }))
}

/// `POST /api/conversations/{id}/open`: the agent opens it in the console; an open, unassigned
/// conversation is assigned to them.
pub async fn open(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state
        .conversations
        .open_by_agent(id, &current.agent)
        .await?;
    Ok(conversation_json(conversation))
}

/// `POST /api/conversations/{id}/join`
pub async fn join(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state.conversations.join(id, &current.agent).await?;
    Ok(conversation_json(conversation))
}

/// `POST /api/conversations/{id}/leave`
pub async fn leave(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state.conversations.leave(id, &current.agent).await?;
    Ok(conversation_json(conversation))
}

/// `POST /api/conversations/{id}/resolve`: the assigned agent, an admin or the owner.
pub async fn resolve(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state.conversations.resolve(id, &current.agent).await?;
    Ok(conversation_json(conversation))
}

/// `POST /api/conversations/{id}/reopen`
pub async fn reopen(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state.conversations.reopen(id, &current.agent).await?;
    Ok(conversation_json(conversation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    agent_id: u64,
}

/// `POST /api/conversations/{id}/invite` `{"agent_id"}`: invites a colleague, who joins with
/// `/join`.
pub async fn invite(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    Json(request): Json<InviteRequest>,
) -> Result<Json<Value>, ApiError> {
    let invitee = state
        .store
        .agent(request.agent_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id {}", request.agent_id)))?;
    let conversation = state
        .conversations
        .invite(id, &current.agent, &invitee)
        .await?;
    Ok(conversation_json(conversation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsRequest {
    tags: Vec<String>,
}

/// `PUT /api/conversations/{id}/tags` `{"tags": [...]}`: replaces the tags.
pub async fn set_tags(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    Json(request): Json<TagsRequest>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state
        .conversations
        .set_tags(id, &current.agent, &request.tags)
        .await?;
    Ok(conversation_json(conversation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    seq: u64,
}

/// `POST /api/conversations/{id}/read` `{"seq"}`: the agent has read up to `seq`.
pub async fn mark_read(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    Json(request): Json<ReadRequest>,
) -> Result<Json<Value>, ApiError> {
    let conversation = state
        .conversations
        .mark_read(id, Party::Agent(&current.agent), request.seq)
        .await?;
    Ok(conversation_json(conversation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingRequest {
    typing: bool,
}

/// `POST /api/conversations/{id}/typing` `{"typing": bool}` → 204.
pub async fn typing(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    Json(request): Json<TypingRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .conversations
        .typing(id, Party::Agent(&current.agent), request.typing)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// Also block the address the visitor uses now.
    #[serde(default)]
    ip: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// The address to block along with a visitor: where they are live from now, else where they
/// last started a conversation from.
async fn visitor_address(
    state: &AppState,
    current: &CurrentAgent,
    site: &str,
    visitor_id: &str,
) -> Result<IpAddr, ApiError> {
    if let Some(visitor) = state.presence.get(site, visitor_id) {
        return Ok(visitor.ip);
    }
    let conversations = state
        .conversations
        .conversations_of_visitor(site, visitor_id, Party::Agent(&current.agent))
        .await?;
    conversations
        .iter()
        .find_map(|c| c.visitor_ip.as_deref()?.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "the visitor's address is unknown (they are not live and never chatted); block without \"ip\"",
            )
        })
}

/// `POST /api/sites/{key}/visitors/{id}/block` `{"ip": bool, "reason"?}`: the visitor can no
/// longer start or continue chats, and is in the blocked segment.
pub async fn block_visitor(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
    Json(request): Json<BlockRequest>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let ip = if request.ip {
        Some(visitor_address(&state, &current, &site.key, &visitor_id).await?)
    } else {
        None
    };
    let block = state
        .conversations
        .block(
            &site.key,
            &visitor_id,
            ip,
            &current.agent,
            request.reason.as_deref(),
        )
        .await?;
    state.presence.set_blocked(&site.key, &visitor_id, true);
    Ok(Json(json!({ "block": block })))
}

/// `DELETE /api/sites/{key}/visitors/{id}/block` → 204 (also when there was no block).
pub async fn unblock_visitor(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    state
        .conversations
        .unblock(&site.key, &visitor_id, &current.agent)
        .await?;
    state.presence.set_blocked(&site.key, &visitor_id, false);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/sites/{key}/blocks`
pub async fn list_blocks(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let blocks = state
        .conversations
        .blocks(&site.key, &current.agent)
        .await?;
    Ok(Json(json!({ "blocks": blocks })))
}
