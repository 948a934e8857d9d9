//! The visitor card's editable side (issue 3, point 5): the contact behind a visitor. Agents
//! edit name, email and phone (stored in the visitor's profile and shown in the live panel at
//! once), write notes every agent of the site sees, and tag the contact. The rules live in
//! `engage::Contacts`; every handler passes the signed-in agent.
//!
//! - `GET /api/sites/{key}/visitors/{id}/contact` — contact, tags, notes, past conversations
//!   (live or not: a visitor who left still has a card in the chat view).
//! - `PATCH /api/sites/{key}/visitors/{id}/contact` `{"name"?, "email"?, "phone"?}` — a field
//!   set to `null` or `""` is cleared; fields left out are kept.
//! - `POST /api/sites/{key}/visitors/{id}/notes` `{"text"}`, `DELETE …/notes/{note}`.
//! - `POST /api/sites/{key}/visitors/{id}/tags` `{"tag"}`, `DELETE …/tags/{tag}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use engage::{ContactEdit, Party};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sites/{key}/visitors/{id}/contact",
            get(get_contact).patch(edit_contact),
        )
        .route("/sites/{key}/visitors/{id}/notes", post(add_note))
        .route(
            "/sites/{key}/visitors/{id}/notes/{note}",
            delete(delete_note),
        )
        .route("/sites/{key}/visitors/{id}/tags", post(add_tag))
        .route("/sites/{key}/visitors/{id}/tags/{tag}", delete(remove_tag))
}

/// `GET /api/sites/{key}/visitors/{id}/contact`
pub async fn get_contact(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let contact = state
        .contacts
        .contact(&site.key, &visitor_id, &current.agent)
        .await?;
    let conversations = state
        .conversations
        .conversations_of_visitor(&site.key, &visitor_id, Party::Agent(&current.agent))
        .await?;
    Ok(Json(
        json!({ "contact": contact, "conversations": conversations }),
    ))
}

/// One field of the PATCH body: absent keeps, `null` or `""` clears, a string sets.
fn field(body: &Map<String, Value>, name: &str) -> Result<Option<Option<String>>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: expected a string or null, got {other}"
        ))),
    }
}

/// `PATCH /api/sites/{key}/visitors/{id}/contact` → `{"identity"}`, the visitor's identity
/// after the edit.
pub async fn edit_contact(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "expected a JSON object with name, email and/or phone",
        ));
    };
    if let Some(unknown) = body
        .keys()
        .find(|key| !matches!(key.as_str(), "name" | "email" | "phone"))
    {
        return Err(ApiError::bad_request(format!(
            "{unknown}: unknown field; send name, email and/or phone"
        )));
    }
    let edit = ContactEdit {
        name: field(&body, "name")?,
        email: field(&body, "email")?,
        phone: field(&body, "phone")?,
    };
    let identity = state
        .contacts
        .edit(&site.key, &visitor_id, &current.agent, edit)
        .await?;
    Ok(Json(json!({ "identity": identity })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    text: String,
}

/// `POST /api/sites/{key}/visitors/{id}/notes` `{"text"}` → 201 `{"note"}`
pub async fn add_note(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
    Json(request): Json<NoteRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let note = state
        .contacts
        .add_note(&site.key, &visitor_id, &current.agent, &request.text)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "note": note }))))
}

/// `DELETE /api/sites/{key}/visitors/{id}/notes/{note}` → 204: the note's author, an admin or
/// the owner.
pub async fn delete_note(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id, note_id)): Path<(String, String, u64)>,
) -> Result<StatusCode, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    state
        .contacts
        .delete_note(&site.key, &visitor_id, note_id, &current.agent)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    tag: String,
}

/// `POST /api/sites/{key}/visitors/{id}/tags` `{"tag"}` → `{"tags"}`
pub async fn add_tag(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id)): Path<(String, String)>,
    Json(request): Json<TagRequest>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let tags = state
        .contacts
        .add_tag(&site.key, &visitor_id, &current.agent, &request.tag)
        .await?;
    Ok(Json(json!({ "tags": tags })))
}

/// `DELETE /api/sites/{key}/visitors/{id}/tags/{tag}` → `{"tags"}`
pub async fn remove_tag(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, visitor_id, tag)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let site = current.check_site(&state, &site_key)?;
    let tags = state
        .contacts
        .remove_tag(&site.key, &visitor_id, &current.agent, &tag)
        .await?;
    Ok(Json(json!({ "tags": tags })))
}
