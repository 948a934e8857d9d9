//! What the trigger service reports.

use crate::error::{ConversationError, StoreError};

/// An error from [`super::Triggers`]. Messages are written for the marketer who made the
/// request, so the dashboards can pass them on as they are (except [`TriggerError::Store`],
/// an internal failure).
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The trigger (or text) did not pass validation: `"<json path>: <what is wrong>"`, e.g.
    /// `conditions.all[1].value: time_on_page takes a number of seconds`.
    #[error("{0}")]
    Invalid(String),
    /// The trigger, the live visitor or the variant named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The visitor is blocked: nothing is ever sent to them.
    #[error("the visitor is blocked")]
    Blocked,
    /// The visitor already has an open conversation, which a trigger never interrupts.
    #[error("the visitor already has an open conversation")]
    OnChat,
    /// The conversation service refused or failed to deliver the message.
    #[error(transparent)]
    Conversation(ConversationError),
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TriggerError {
    /// An [`TriggerError::Invalid`] naming `path` (empty for the whole body).
    pub fn invalid(path: &str, message: impl std::fmt::Display) -> TriggerError {
        if path.is_empty() {
            TriggerError::Invalid(message.to_string())
        } else {
            TriggerError::Invalid(format!("{path}: {message}"))
        }
    }
}

impl From<ConversationError> for TriggerError {
    fn from(error: ConversationError) -> Self {
        match error {
            ConversationError::Blocked => TriggerError::Blocked,
            ConversationError::Store(error) => TriggerError::Store(error),
            other => TriggerError::Conversation(other),
        }
    }
}
