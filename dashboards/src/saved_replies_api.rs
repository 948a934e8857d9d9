//! Saved replies (issue 3, point 5): per-site canned answers, managed in the console's
//! settings and inserted in the chat with `/shortcut`. Any agent with access to the site may
//! use and manage them (`engage::SavedReplies`).
//!
//! - `GET /api/sites/{key}/saved-replies` — by shortcut.
//! - `POST /api/sites/{key}/saved-replies` `{"shortcut", "text"}` → 201.
//! - `PUT /api/sites/{key}/saved-replies/{reply}` `{"shortcut"?, "text"?}`.
//! - `DELETE /api/sites/{key}/saved-replies/{reply}` → 204.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sites/{key}/saved-replies",
            get(list_replies).post(create_reply),
        )
        .route(
            "/sites/{key}/saved-replies/{reply}",
            put(update_reply).delete(delete_reply),
        )
}

/// `GET /api/sites/{key}/saved-replies`
pub async fn list_replies(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let replies = state.saved_replies.list(&site.key, &current.agent).await?;
    Ok(Json(json!({ "saved_replies": replies })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReply {
    shortcut: String,
    text: String,
}

/// `POST /api/sites/{key}/saved-replies` `{"shortcut", "text"}` → 201 `{"saved_reply"}`
pub async fn create_reply(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
    Json(request): Json<CreateReply>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let reply = state
        .saved_replies
        .create(&site.key, &current.agent, &request.shortcut, &request.text)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "saved_reply": reply }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateReply {
    #[serde(default)]
    shortcut: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// `PUT /api/sites/{key}/saved-replies/{reply}` `{"shortcut"?, "text"?}` → `{"saved_reply"}`
pub async fn update_reply(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, id)): Path<(String, u64)>,
    Json(request): Json<UpdateReply>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    if request.shortcut.is_none() && request.text.is_none() {
        return Err(ApiError::bad_request("send shortcut and/or text"));
    }
    let reply = state
        .saved_replies
        .update(
            &site.key,
            id,
            &current.agent,
            request.shortcut.as_deref(),
            request.text.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "saved_reply": reply })))
}

/// `DELETE /api/sites/{key}/saved-replies/{reply}` → 204
pub async fn delete_reply(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, id)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    state
        .saved_replies
        .delete(&site.key, id, &current.agent)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
