//! The triggers REST API (issue 4): CRUD, "who matches right now", placeholder preview,
//! test-fire, funnel statistics and the field catalogue, under `/api/sites/{key}/triggers`.
//!
//! Any agent with access to the site may read; owners and admins may change triggers and
//! test-fire them (a test-fire sends a real message). Session cookies and API tokens work as
//! everywhere else ([`CurrentAgent`]). The rules live in `engage::Triggers`; this module only
//! parses bodies, checks who is asking and shapes the answers.
//!
//! Bodies are read as bytes and parsed here, so that every client error is the usual
//! `{"error": "..."}`; a validation error names the JSON path of the bad part
//! (`conditions.all[1].value: time_on_page takes a number of seconds`), which the console uses
//! to point at the field.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engage::triggers::{Matches, Trigger, utc_day};
use engage::{Site, Triggers};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire;

/// A trigger body is larger than most API bodies: up to five 2 000-character messages and fifty
/// conditions, some with lists of up to a hundred values.
const TRIGGER_BODY_LIMIT: usize = 512 * 1024;
const DAY_MS: i64 = 86_400_000;

/// Routes under `/api`. Static segments (`fields`, `preview`, `render`) win over `{id}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sites/{key}/triggers", get(list).post(create))
        .route("/sites/{key}/triggers/fields", get(fields))
        .route("/sites/{key}/triggers/preview", post(preview))
        .route("/sites/{key}/triggers/render", post(render))
        .route(
            "/sites/{key}/triggers/{id}",
            get(get_one).put(replace).patch(patch).delete(remove),
        )
        .route("/sites/{key}/triggers/{id}/matches", get(matches))
        .route("/sites/{key}/triggers/{id}/test", post(test_fire))
        .route("/sites/{key}/triggers/{id}/stats", get(stats))
        .layer(DefaultBodyLimit::max(TRIGGER_BODY_LIMIT))
}

/// The site, if the agent may see it.
fn readable(
    state: &AppState,
    current: &CurrentAgent,
    key: &str,
) -> Result<std::sync::Arc<Site>, ApiError> {
    current.check_site(state, key)
}

/// The site, if the agent may change its triggers (owner or admin with access).
fn writable(
    state: &AppState,
    current: &CurrentAgent,
    key: &str,
) -> Result<std::sync::Arc<Site>, ApiError> {
    let site = current.check_site(state, key)?;
    current.require_admin()?;
    Ok(site)
}

/// A trigger id from the path; anything else names no trigger.
fn trigger_id(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::NotFound(format!("trigger {text:?} not found")))
}

/// A JSON request body, or a 400 saying why it is not one.
fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))
}

/// A JSON object body.
fn object_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match json_body(body)? {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

fn trigger_json(trigger: &Trigger) -> Result<Value, ApiError> {
    serde_json::to_value(trigger).map_err(|error| ApiError::Internal(error.into()))
}

/// `[00:00 UTC six days ago, now)`: the list's "last 7 days", whole UTC days as the counters
/// are kept (the console's 7-day period is the same).
fn last_seven_days(now_ms: i64) -> (i64, i64) {
    let today = i64::from(utc_day(now_ms));
    ((today - 6) * DAY_MS, now_ms + 1)
}

/// Live visitors as the live panel lists them.
fn matches_json(matches: &Matches) -> Value {
    let visitors: Vec<wire::Row<'_>> = matches.visitors.iter().map(wire::Row::new).collect();
    json!({ "count": matches.count, "visitors": visitors })
}

/// `GET /api/sites/{key}/triggers`: the site's triggers, highest priority first, each with its
/// funnel over the last 7 days as `stats`.
pub async fn list(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = readable(&state, &current, &key)?;
    let triggers = state.triggers.list(&site.key).await?;
    let (from_ms, to_ms) = last_seven_days(state.clock.now_ms());
    let totals = state.triggers.totals(&site.key, from_ms, to_ms).await?;
    let mut out = Vec::with_capacity(triggers.len());
    for trigger in &triggers {
        let mut item = trigger_json(trigger)?;
        let stats = totals.get(&trigger.id).copied().unwrap_or_default();
        item["stats"] =
            serde_json::to_value(stats).map_err(|error| ApiError::Internal(error.into()))?;
        out.push(item);
    }
    Ok(Json(json!({ "triggers": out })))
}

/// `POST /api/sites/{key}/triggers`: 201 with the stored trigger.
pub async fn create(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let site = writable(&state, &current, &key)?;
    let trigger = Trigger::from_json(&json_body(&body)?)?;
    let stored = state.triggers.create(&site.key, trigger).await?;
    Ok((StatusCode::CREATED, Json(trigger_json(&stored)?)).into_response())
}

/// `GET /api/sites/{key}/triggers/{id}`.
pub async fn get_one(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let site = readable(&state, &current, &key)?;
    let trigger = state.triggers.get(&site.key, trigger_id(&id)?).await?;
    Ok(Json(trigger_json(&trigger)?))
}

/// `PUT /api/sites/{key}/triggers/{id}`: a full trigger replaces the stored one.
pub async fn replace(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = writable(&state, &current, &key)?;
    let id = trigger_id(&id)?;
    let trigger = Trigger::from_json(&json_body(&body)?)?;
    let stored = state.triggers.update(&site.key, id, trigger).await?;
    Ok(Json(trigger_json(&stored)?))
}

/// `PATCH /api/sites/{key}/triggers/{id}` `{"enabled"?: bool, "priority"?: i32}`: the list's
/// on/off switch and priority box.
pub async fn patch(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = writable(&state, &current, &key)?;
    let id = trigger_id(&id)?;
    let mut enabled = None;
    let mut priority = None;
    for (field, value) in object_body(&body)? {
        match field.as_str() {
            "enabled" => {
                enabled = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| ApiError::bad_request("enabled: expected true or false"))?,
                )
            }
            "priority" => {
                priority = Some(
                    value
                        .as_i64()
                        .and_then(|number| i32::try_from(number).ok())
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "priority: expected a whole number from {} to {}",
                                i32::MIN,
                                i32::MAX
                            ))
                        })?,
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other}: unknown field (PATCH changes enabled and priority; PUT replaces the \
                     whole trigger)"
                )));
            }
        }
    }
    if enabled.is_none() && priority.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give enabled, priority or both",
        ));
    }
    let trigger = state
        .triggers
        .patch(&site.key, id, enabled, priority)
        .await?;
    Ok(Json(trigger_json(&trigger)?))
}

/// `DELETE /api/sites/{key}/triggers/{id}`: the trigger and its statistics; 204.
pub async fn remove(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let site = writable(&state, &current, &key)?;
    state.triggers.delete(&site.key, trigger_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/sites/{key}/triggers/{id}/matches`: the live visitors the trigger would fire for
/// now (as if it were enabled; priority aside), exactly as the engine judges them.
pub async fn matches(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let site = readable(&state, &current, &key)?;
    let found = state
        .triggers
        .matches_now(&site.key, trigger_id(&id)?)
        .await?;
    Ok(Json(matches_json(&found)))
}

/// `POST /api/sites/{key}/triggers/preview`: "who matches" for a draft that is not saved. A
/// draft carrying the `id` of a saved trigger is judged with that trigger's limit and fire
/// history, so an edit shows whom the saved trigger would reach.
pub async fn preview(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = readable(&state, &current, &key)?;
    let body = json_body(&body)?;
    let mut draft = Trigger::from_json(&body)?;
    draft.id = body.get("id").and_then(Value::as_u64).unwrap_or(0);
    let found = state.triggers.preview(&site.key, draft).await?;
    Ok(Json(matches_json(&found)))
}

/// `POST /api/sites/{key}/triggers/render` `{"text", "visitor_id"?}`: a message with its
/// placeholders filled in, for a live visitor or the sample visitor.
pub async fn render(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = readable(&state, &current, &key)?;
    let body = object_body(&body)?;
    let text = match body.get("text") {
        Some(Value::String(text)) => text,
        Some(_) => return Err(ApiError::bad_request("text: expected a string")),
        None => return Err(ApiError::bad_request("text: missing")),
    };
    let visitor_id = match body.get("visitor_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id.as_str()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "visitor_id: expected the id of a live visitor",
            ));
        }
    };
    let rendered = state.triggers.render(&site.key, text, visitor_id)?;
    Ok(Json(json!({ "text": rendered })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    visitor_id: String,
    #[serde(default)]
    variant: Option<String>,
}

/// `POST /api/sites/{key}/triggers/{id}/test` `{"visitor_id", "variant"?}`: sends the saved
/// trigger's message (variant `variant`, else the first) to a live visitor now, whatever the
/// conditions and limits; not counted. Owners and admins only. 404 when the visitor is not
/// live, 409 when blocked or already in a conversation.
pub async fn test_fire(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let site = writable(&state, &current, &key)?;
    let id = trigger_id(&id)?;
    let request: TestRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "expected {{\"visitor_id\": \"...\", \"variant\"?: \"...\"}}: {error}"
        ))
    })?;
    // Live: in the presence table and not gone (a visitor who closed the page is listed for a
    // while, but nobody would see the message).
    let live = state
        .presence
        .get(&site.key, &request.visitor_id)
        .is_some_and(|visitor| visitor.left_ms.is_none());
    if !live {
        return Err(ApiError::NotFound(format!(
            "visitor {:?} is not live on this site",
            request.visitor_id
        )));
    }
    let conversation_id = state
        .triggers
        .test_fire(
            &site.key,
            id,
            &request.visitor_id,
            request.variant.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "conversation_id": conversation_id })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
}

/// `GET /api/sites/{key}/triggers/{id}/stats?from=MS&to=MS`: the funnel per variant (and the
/// control group) over the UTC days overlapping `[from, to)`; by default the last 7 days.
pub async fn stats(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((key, id)): Path<(String, String)>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Value>, ApiError> {
    let site = readable(&state, &current, &key)?;
    let id = trigger_id(&id)?;
    let (default_from, default_to) = last_seven_days(state.clock.now_ms());
    let from_ms = query.from.unwrap_or(default_from);
    let to_ms = query.to.unwrap_or(default_to);
    if to_ms <= from_ms {
        return Err(ApiError::bad_request("to: must be after from"));
    }
    let stats = state.triggers.stats(&site.key, id, from_ms, to_ms).await?;
    Ok(Json(
        serde_json::to_value(stats).map_err(|error| ApiError::Internal(error.into()))?,
    ))
}

/// `GET /api/sites/{key}/triggers/fields`: fields, their types and operators, and the
/// placeholders, for the condition builder.
pub async fn fields(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    readable(&state, &current, &key)?;
    Ok(Json(
        serde_json::to_value(Triggers::fields())
            .map_err(|error| ApiError::Internal(error.into()))?,
    ))
}
