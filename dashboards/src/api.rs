//! The console's and scripts' REST API under `/api`. Every handler authenticates through
//! [`CurrentAgent`] (session cookie or API token) except login.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engage::{Agent, Role, Site};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracker::{Cursor, ListQuery, Segment};

use crate::auth::{CurrentAgent, SESSION_COOKIE, session_token};
use crate::config::CookieSecure;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Card, Row};

const MAX_PAGE: usize = 500;

#[derive(Debug, Serialize)]
pub struct AgentOut<'a> {
    id: u64,
    email: &'a str,
    name: &'a str,
    role: Role,
    sites: &'a [String],
}

impl<'a> From<&'a Agent> for AgentOut<'a> {
    fn from(agent: &'a Agent) -> Self {
        AgentOut {
            id: agent.id,
            email: &agent.email,
            name: &agent.name,
            role: agent.role,
            sites: &agent.sites,
        }
    }
}

#[derive(Debug, Serialize)]
struct SiteOut<'a> {
    key: &'a str,
    name: &'a str,
    allowed_origins: &'a [String],
}

impl<'a> From<&'a Site> for SiteOut<'a> {
    fn from(site: &'a Site) -> Self {
        SiteOut {
            key: &site.key,
            name: &site.name,
            allowed_origins: &site.allowed_origins,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// `POST /api/login`: checks the password and sets the session cookie.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let (agent, token) = state
        .accounts
        .login(&request.email, &request.password)
        .await?;
    let secure = match state.settings.cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => request_is_https(&headers),
    };
    let max_age = state.settings.session_ttl.as_secs();
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        token.as_str(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Json(json!({ "agent": AgentOut::from(&agent) })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(anyhow::Error::new)?,
    );
    Ok(response)
}

/// `X-Forwarded-Proto` is only set by the proxy in front of us; a client that sets it itself
/// only decides whether its own cookie gets `Secure`.
fn request_is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// `POST /api/logout`: ends the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    if let Some(token) = session_token(&parts) {
        state.accounts.logout(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pl_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// `GET /api/me`: the agent and the sites they may see.
pub async fn me(State(state): State<AppState>, current: CurrentAgent) -> Json<serde_json::Value> {
    let sites: Vec<_> = state
        .sites
        .all()
        .into_iter()
        .filter(|site| current.agent.can_access(&site.key))
        .collect();
    Json(json!({
        "agent": AgentOut::from(&current.agent),
        "sites": sites.iter().map(|site| SiteOut::from(&**site)).collect::<Vec<_>>(),
        "status": state.agent_presence.status(current.agent.id),
    }))
}

/// `GET /api/sites`
pub async fn list_sites(
    State(state): State<AppState>,
    current: CurrentAgent,
) -> Json<serde_json::Value> {
    let sites: Vec<_> = state
        .sites
        .all()
        .into_iter()
        .filter(|site| current.agent.can_access(&site.key))
        .collect();
    Json(json!({ "sites": sites.iter().map(|site| SiteOut::from(&**site)).collect::<Vec<_>>() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    name: String,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    key: Option<String>,
}

/// `POST /api/sites` (owner or admin).
pub async fn create_site(
    State(state): State<AppState>,
    current: CurrentAgent,
    Json(request): Json<CreateSite>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    current.require_admin()?;
    let site = state
        .accounts
        .create_site(
            &request.name,
            &request.allowed_origins,
            request.key.as_deref(),
        )
        .await?;
    state.sites.reload(&*state.store).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "site": SiteOut::from(&site) })),
    ))
}

/// `GET /api/sites/{key}/counts`
pub async fn counts(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    Ok(Json(json!({ "counts": state.presence.counts(&site.key) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitorsQuery {
    #[serde(default)]
    segment: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/sites/{key}/visitors?segment=active&q=…&cursor=…&limit=50`: newest activity first.
pub async fn list_visitors(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
    Query(query): Query<VisitorsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let segment = match query.segment.as_deref() {
        None | Some("") => Segment::All,
        Some(text) => text.parse::<Segment>().map_err(|_| {
            ApiError::bad_request(format!(
                "unknown segment {text:?}; use one of all, active, on_chat, customers, auto_messaged, blocked"
            ))
        })?,
    };
    let cursor = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<Cursor>().map_err(|_| {
            ApiError::bad_request(format!("cursor {text:?} is not one this API returned"))
        })?),
    };
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let search = query.q.filter(|text| !text.trim().is_empty());
    if search.as_ref().is_some_and(|text| text.len() > 256) {
        return Err(ApiError::bad_request(
            "search text is longer than 256 bytes",
        ));
    }
    let page = state.presence.list(
        &site.key,
        &ListQuery {
            segment,
            search,
            cursor,
            limit,
        },
    );
    Ok(Json(json!({
        "visitors": page.visitors.iter().map(Row::new).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|cursor| cursor.to_string()),
        "total": page.total_matching,
        "counts": state.presence.counts(&site.key),
    })))
}

/// `GET /api/sites/{key}/visitors/{id}`: the visitor card.
pub async fn get_visitor(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let visitor = state.presence.get(&site.key, &visitor_id).ok_or_else(|| {
        ApiError::NotFound(format!("visitor {visitor_id:?} is not live on this site"))
    })?;
    Ok(Json(json!({ "visitor": Card::new(&visitor) })))
}

/// `GET /api/agents` (owner or admin).
pub async fn list_agents(
    State(state): State<AppState>,
    current: CurrentAgent,
) -> Result<Json<serde_json::Value>, ApiError> {
    current.require_admin()?;
    let agents = state.store.list_agents().await?;
    Ok(Json(
        json!({ "agents": agents.iter().map(AgentOut::from).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    email: String,
    name: String,
    role: Role,
    password: String,
    #[serde(default)]
    sites: Vec<String>,
}

/// `POST /api/agents` (owner or admin; only an owner creates owners).
pub async fn create_agent(
    State(state): State<AppState>,
    current: CurrentAgent,
    Json(request): Json<CreateAgent>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    current.require_admin()?;
    if request.role == Role::Owner && current.agent.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner may create another owner".into(),
        ));
    }
    for site in &request.sites {
        if state.sites.get(site).is_none() {
            return Err(ApiError::bad_request(format!("no site with key {site:?}")));
        }
    }
    let mut agent = state
        .accounts
        .create_agent(
            &request.email,
            &request.name,
            request.role,
            &request.password,
        )
        .await?;
    for site in &request.sites {
        agent = state.accounts.grant_site(agent.id, site).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "agent": AgentOut::from(&agent) })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
}

/// `POST /api/tokens`: an API token acting as the calling agent; the secret is shown once.
pub async fn create_token(
    State(state): State<AppState>,
    current: CurrentAgent,
    Json(request): Json<CreateToken>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (record, secret) = state
        .accounts
        .create_api_token(current.agent.id, &request.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": record.id, "name": record.name, "token": secret })),
    ))
}

/// `GET /api/tokens`: the caller's tokens (all tokens for an owner).
pub async fn list_tokens(
    State(state): State<AppState>,
    current: CurrentAgent,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tokens = state.store.list_api_tokens().await?;
    let visible: Vec<_> = tokens
        .iter()
        .filter(|token| current.agent.role == Role::Owner || token.agent_id == current.agent.id)
        .map(|token| json!({ "id": token.id, "name": token.name, "agent_id": token.agent_id, "created": token.created_ms }))
        .collect();
    Ok(Json(json!({ "tokens": visible })))
}

/// `DELETE /api/tokens/{id}`
pub async fn revoke_token(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    let tokens = state.store.list_api_tokens().await?;
    let token = tokens
        .iter()
        .find(|token| token.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no API token {id}")))?;
    if current.agent.role != Role::Owner && token.agent_id != current.agent.id {
        return Err(ApiError::Forbidden(
            "that token belongs to another agent".into(),
        ));
    }
    state.store.delete_api_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /healthz`: the process serves and the store answers.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = tokio::time::timeout(Duration::from_secs(2), state.store.list_sites()).await;
    match store {
        Ok(Ok(_)) => Ok(Json(
            json!({ "status": "ok", "live_visitors": state.presence.len() }),
        )),
        Ok(Err(error)) => Err(ApiError::Unavailable(format!("store unavailable: {error}"))),
        Err(_) => Err(ApiError::Unavailable(
            "store did not answer within 2s".into(),
        )),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .profile_writes_pending
        .set(state.ingest.pending_writes() as i64);
    state
        .metrics
        .profile_writes_dropped
        .set(state.ingest.dropped_writes() as i64);
    state
        .metrics
        .trigger_wakeups_pending
        .set(i64::try_from(state.triggers.pending_timers()).unwrap_or(i64::MAX));
    state
        .metrics
        .sync_trigger_counts(state.triggers.event_counts());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.presence),
    )
        .into_response()
}
