//! Availability (issue 3 point 6): the widget's settings and availability, their editing API
//! with the embed snippet, agents' status, and leads (the offline form).
//!
//! Public (the widget, CORS like the beacon):
//! - `GET /v1/widget/settings?site=KEY` — settings as the widget needs them, and availability.
//! - `POST /v1/chat/leads` — the offline form (`text/plain` JSON, no preflight), limited per
//!   client address and per site (`rate_limit.rs`): 429 with `Retry-After` beyond that.
//!
//! Console (`/api`):
//! - `GET|PUT /api/sites/{key}/widget` — settings plus the embed snippet; PUT owner/admin.
//! - `GET /api/sites/{key}/leads` — newest first.
//! - `PUT /api/me/status` — `online` / `away` / `offline`, stored (it survives reconnects and
//!   restarts).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use engage::widget::AfterHoursMode;
use engage::{Availability, AvailabilityMode, NewLead, WidgetSettings};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::CurrentAgent;
use crate::beacon::{client_ip, origin_allowed};
use crate::error::ApiError;
use crate::state::{AgentStatus, AppState};

/// A lead's request body is small; anything larger is refused before parsing.
const LEAD_BODY_LIMIT: usize = 32 * 1024;

/// Routes under `/api`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me/status", put(put_status))
        .route("/sites/{key}/widget", get(get_widget).put(put_widget))
        .route("/sites/{key}/leads", get(list_leads))
}

/// A site's stored settings, or the defaults named after the site.
pub async fn settings_of(
    state: &AppState,
    site: &engage::Site,
) -> Result<WidgetSettings, ApiError> {
    Ok(state
        .store
        .widget_settings(&site.key)
        .await?
        .unwrap_or_else(|| WidgetSettings::defaults(&site.name)))
}

/// The site's availability now.
pub fn availability_of(
    state: &AppState,
    site_key: &str,
    settings: &WidgetSettings,
) -> Availability {
    engage::availability(
        settings,
        state.clock.now_ms(),
        state.agent_presence.any_online(site_key),
    )
}

/// The availability as the widget sees it.
pub fn availability_json(settings: &WidgetSettings, availability: Availability) -> Value {
    let hide = availability.mode == AvailabilityMode::AfterHours
        && settings.after_hours.mode == AfterHoursMode::Hide;
    json!({ "mode": availability.mode, "hide": hide })
}

/// The settings as the widget needs them (no business-hours schedule, no internal fields).
pub fn public_settings_json(settings: &WidgetSettings) -> Value {
    let mut out = json!({
        "name": settings.name,
        "welcome": settings.welcome,
        "color": settings.color,
        "launcher": settings.launcher,
        "prechat": settings.prechat,
        "visibility": settings.visibility,
        "pages": settings.pages,
        "offline_message": settings.offline_message,
    });
    if settings.after_hours.mode == AfterHoursMode::Message {
        out["after_hours_message"] = json!(settings.after_hours.message);
    }
    out
}

/// What the visitor channel's `ready` frame carries as `settings`: the public settings with
/// the availability inside.
pub async fn widget_settings_for(state: &AppState, site_key: &str) -> Value {
    let Some(site) = state.sites.get(site_key) else {
        return json!({});
    };
    match settings_of(state, &site).await {
        Ok(settings) => {
            let availability = availability_of(state, &site.key, &settings);
            let mut out = public_settings_json(&settings);
            out["availability"] = availability_json(&settings, availability);
            out
        }
        Err(error) => {
            tracing::warn!(%error, site = site_key, "cannot load widget settings");
            let mut out = public_settings_json(&WidgetSettings::defaults(&site.name));
            out["availability"] = json!({ "mode": "online", "hide": false });
            out
        }
    }
}

/// CORS for an allowed origin, and never cached: availability changes by the minute.
fn with_cors(response: Response, origin: Option<HeaderValue>) -> Response {
    let mut response = crate::beacon::with_cors(response, origin);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize)]
pub struct SiteQuery {
    site: String,
}

/// `GET /v1/widget/settings?site=KEY`.
pub async fn public_settings(
    State(state): State<AppState>,
    Query(query): Query<SiteQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let site = state
        .sites
        .get(&query.site)
        .ok_or_else(|| ApiError::NotFound(format!("unknown site {:?}", query.site)))?;
    let origin = origin_allowed(&headers, &site)?;
    let settings = settings_of(&state, &site).await?;
    let availability = availability_of(&state, &site.key, &settings);
    let body = json!({
        "settings": public_settings_json(&settings),
        "availability": availability_json(&settings, availability),
    });
    Ok(with_cors(Json(body).into_response(), origin))
}

/// The embed snippet for this server, addressed as the request was.
fn embed_for(headers: &HeaderMap, site_key: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("HOST");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .filter(|proto| *proto == "https")
        .unwrap_or("http");
    crate::cli::embed_snippet(&format!("{scheme}://{host}"), site_key)
}

/// `GET /api/sites/{key}/widget`: agents with access.
pub async fn get_widget(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let settings = settings_of(&state, &site).await?;
    Ok(Json(
        json!({ "settings": settings, "embed": embed_for(&headers, &site.key) }),
    ))
}

/// `PUT /api/sites/{key}/widget`: owners and admins. The body is the settings (or
/// `{"settings": {...}}`), possibly partial: fields it leaves out keep their value.
pub async fn put_widget(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    current.require_admin()?;
    let patch = match &body {
        Value::Object(map)
            if map.len() == 1 && map.get("settings").is_some_and(Value::is_object) =>
        {
            &map["settings"]
        }
        other => other,
    };
    let settings = settings_of(&state, &site)
        .await?
        .patched(patch)
        .map_err(ApiError::BadRequest)?;
    state
        .store
        .put_widget_settings(&site.key, &settings)
        .await?;
    // Open widgets get the new look (and availability, if the hours changed it) at once.
    state.chat.publish_settings(
        &site.key,
        crate::availability::settings_frame(&state, &site.key).await,
    );
    state.settings_changed.notify_one();
    // Triggers fire only where the launcher shows: they must see the new rules at once.
    state.triggers.reload_widget_settings(&site.key).await;
    Ok(Json(
        json!({ "settings": settings, "embed": embed_for(&headers, &site.key) }),
    ))
}

/// `GET /api/sites/{key}/leads`: agents with access, newest first.
pub async fn list_leads(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let mut leads = state.store.leads(&site.key).await?;
    leads.reverse();
    Ok(Json(json!({ "leads": leads })))
}

#[derive(Debug, Deserialize)]
pub struct StatusRequest {
    status: AgentStatus,
}

/// `PUT /api/me/status`.
pub async fn put_status(
    State(state): State<AppState>,
    current: CurrentAgent,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: StatusRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "status: expected online, away or offline ({error})"
        ))
    })?;
    state
        .agent_presence
        .set_status(&*state.store, current.agent.id, request.status)
        .await?;
    Ok(Json(json!({ "status": request.status })))
}

#[derive(Debug, Deserialize)]
pub struct LeadRequest {
    site: String,
    #[serde(default)]
    vid: Option<String>,
    #[serde(default)]
    name: String,
    email: String,
    #[serde(default)]
    phone: Option<String>,
    message: String,
    #[serde(default)]
    page_url: Option<String>,
}

/// `POST /v1/chat/leads`: the offline form. 201 `{"lead"}`; 403 for a blocked visitor; 429
/// past the per-address or per-site limit. Errors carry CORS headers too (for an allowed
/// origin), so the widget can show their message.
pub async fn post_lead(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut cors = None;
    match create_lead(&state, peer, &headers, &body, &mut cors).await {
        Ok(response) => with_cors(response, cors),
        Err(error) => with_cors(error.into_response(), cors),
    }
}

async fn create_lead(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
    cors: &mut Option<HeaderValue>,
) -> Result<Response, ApiError> {
    if body.len() > LEAD_BODY_LIMIT {
        return Err(ApiError::PayloadTooLarge(format!(
            "a lead is at most {LEAD_BODY_LIMIT} bytes"
        )));
    }
    let request: LeadRequest = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid request JSON: {error}")))?;
    let site = state
        .sites
        .get(&request.site)
        .ok_or_else(|| ApiError::NotFound(format!("unknown site {:?}", request.site)))?;
    *cors = origin_allowed(headers, &site)?;
    let ip = client_ip(peer.ip(), headers, &state.settings.trusted_proxies);
    let vid = request.vid.filter(|vid| !vid.is_empty());
    if vid.as_deref().is_some_and(|vid| vid.len() > 128) {
        return Err(ApiError::bad_request("vid: at most 128 characters"));
    }
    if state
        .conversations
        .is_blocked(&site.key, vid.as_deref().unwrap_or(""), Some(ip))
    {
        return Err(ApiError::Forbidden("this visitor is blocked".into()));
    }
    let lead = NewLead::new(NewLead {
        site: site.key.clone(),
        visitor_id: vid,
        name: request.name,
        email: request.email,
        phone: request.phone,
        message: request.message,
        page_url: request.page_url,
        created_ms: state.clock.now_ms(),
    })
    .map_err(ApiError::BadRequest)?;
    // Limits after validation: someone fixing a typo in their email is not a spammer.
    let now = state.clock.now_ms();
    if let Err(retry_after_secs) = state.lead_limits.per_ip.check(&address_key(ip), now) {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "too many messages from your address; try again in {retry_after_secs} s"
            ),
            retry_after_secs,
        });
    }
    if let Err(retry_after_secs) = state.lead_limits.per_site.check(&site.key, now) {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "this site is receiving too many messages; try again in {retry_after_secs} s"
            ),
            retry_after_secs,
        });
    }
    let lead = state.store.create_lead(lead).await?;
    // Nobody listening (no webhooks task) is not an error.
    let _ = state.leads.send(lead.clone());
    Ok((StatusCode::CREATED, Json(json!({ "lead": lead }))).into_response())
}

/// The key a client address is limited under: the address itself for IPv4, its /64 network for
/// IPv6 (one subscriber usually holds a whole /64, and every address in it is theirs to use).
fn address_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_limited_per_ipv4_address_and_per_ipv6_network() {
        let key = |ip: &str| address_key(ip.parse().unwrap());
        assert_eq!(key("81.2.69.1"), "81.2.69.1");
        assert_eq!(key("::ffff:81.2.69.1"), "81.2.69.1");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
