//! Attachment upload and download for agents.
//!
//! The upload is the raw file as the request body (no multipart): `Content-Type` is the
//! declared type (a hint; engage decides by the bytes whether it is an image) and
//! `X-Filename` the name, percent-encoded so any UTF-8 name fits in a header.
//!
//! Downloads are served so that a file can never act as a page of ours: images inline,
//! everything else as a download, always with `nosniff` and a CSP that allows nothing.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engage::{MAX_ATTACHMENT_BYTES, Party};
use serde_json::{Value, json};

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;

/// Bodies up to this size are read whole even when they are over the attachment limit, so the
/// client gets a clean 413 rather than a connection closed under its feet; larger ones are
/// refused from their `Content-Length` without reading.
const UPLOAD_SLACK: usize = 64 * 1024;

/// The attachment limit in the upload's error message.
const MAX_ATTACHMENT_MB: usize = MAX_ATTACHMENT_BYTES / (1024 * 1024);

/// The route-level body limit of the upload.
pub const UPLOAD_BODY_LIMIT: usize = MAX_ATTACHMENT_BYTES + UPLOAD_SLACK;

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!("attachment is larger than {MAX_ATTACHMENT_MB} MB"))
}

/// `POST /api/conversations/{id}/attachments` (raw body, `Content-Type`, `X-Filename`) → 201
/// `{"attachment"}`. Post it afterwards as a message with `"attachment_id"`.
pub async fn upload(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > UPLOAD_BODY_LIMIT) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, UPLOAD_BODY_LIMIT)
        .await
        .map_err(|_| too_large())?;
    if bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the attachment is empty; send the file as the request body",
        ));
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/octet-stream");
    let name = headers
        .get("x-filename")
        .map(|value| percent_decode(value.as_bytes()))
        .unwrap_or_default();
    let attachment = state
        .conversations
        .upload_attachment(
            id,
            Party::Agent(&current.agent),
            &name,
            mime,
            bytes.to_vec(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "attachment": attachment })),
    ))
}

/// `GET /api/conversations/{id}/attachments/{att}`: the file, to the conversation's agents.
pub async fn download(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((id, attachment_id)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    let (meta, bytes) = state
        .conversations
        .attachment(id, &attachment_id, Party::Agent(&current.agent))
        .await?;
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{}",
        if meta.image { "inline" } else { "attachment" },
        ascii_fallback(&meta.name),
        percent_encode(&meta.name)
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(anyhow::Error::new)?,
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// Decodes `%XX` escapes (invalid ones are kept as they are) and reads the result as UTF-8,
/// replacing what is not.
fn percent_decode(input: &[u8]) -> String {
    let hex = |byte: u8| (byte as char).to_digit(16).map(|digit| digit as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(high), Some(low)) = (hex(input[i + 1]), hex(input[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 5987 encoding for `filename*`: everything but unreserved characters escaped.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The plain `filename` for old clients: printable ASCII without quotes or backslashes.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_coding() {
        assert_eq!(percent_decode(b"r%C3%A9sum%C3%A9.pdf"), "résumé.pdf");
        assert_eq!(percent_decode(b"100%.txt"), "100%.txt");
        assert_eq!(percent_decode(b"a%2"), "a%2");
        assert_eq!(percent_decode(b"%zz"), "%zz");
        assert_eq!(percent_encode("résumé 1.pdf"), "r%C3%A9sum%C3%A9%201.pdf");
        assert_eq!(ascii_fallback("ré\"s.pdf"), "r__s.pdf");
    }
}
