//! The one error type of the HTTP layer: every handler returns `Result<_, ApiError>`, and this is
//! where an error becomes a status code and a JSON body `{"error": "..."}`.
//!
//! Client errors carry a message that says what is wrong. Server errors are logged here, in one
//! place, and the client only learns that something failed on our side.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engage::{AccountError, ConversationError, StoreError, TriggerError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sign in first: this needs a valid session or API token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests: the message says which limit, `retry_after_secs` when to try again.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let mut response =
            (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = &self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_secs),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::NotFound(message) => ApiError::NotFound(message),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::InvalidCredentials => ApiError::Unauthorized,
            AccountError::Validation(message) => ApiError::BadRequest(message),
            AccountError::Conflict(message) => ApiError::Conflict(message),
            AccountError::NotFound(message) => ApiError::NotFound(message),
            AccountError::Disabled => ApiError::Forbidden("this account is disabled".into()),
            AccountError::Store(error) => error.into(),
            AccountError::Hashing(message) => {
                ApiError::Internal(anyhow::anyhow!("password hashing: {message}"))
            }
        }
    }
}

impl From<ConversationError> for ApiError {
    fn from(error: ConversationError) -> Self {
        match error {
            ConversationError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            ConversationError::Forbidden(message) => ApiError::Forbidden(message),
            ConversationError::Blocked => ApiError::Forbidden("this visitor is blocked".into()),
            ConversationError::Invalid(message) => ApiError::BadRequest(message),
            ConversationError::Store(error) => error.into(),
        }
    }
}

impl From<TriggerError> for ApiError {
    fn from(error: TriggerError) -> Self {
        match error {
            // Already "<json path>: <what is wrong>", for the console to point at the field.
            TriggerError::Invalid(message) => ApiError::BadRequest(message),
            TriggerError::NotFound(_) => ApiError::NotFound(error.to_string()),
            TriggerError::Blocked | TriggerError::OnChat => ApiError::Conflict(error.to_string()),
            TriggerError::Conversation(error) => error.into(),
            TriggerError::Store(error) => error.into(),
        }
    }
}
