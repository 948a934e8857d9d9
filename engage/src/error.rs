//! Error types of the engage crate.
//!
//! `StoreError` is what a storage backend reports; `AccountError` is what the accounts
//! service reports, with messages written so the dashboards can show them to a person as
//! they are.

use std::path::PathBuf;

/// An error from a [`crate::Store`] implementation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record that an update or delete names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A record with the same unique key (an agent's email, a site key) already exists.
    #[error("{0}")]
    Conflict(String),
    /// The database file is locked by another process, usually a running server.
    #[error(
        "data directory {} is in use by another porchlight process (stop it, or choose another data directory)",
        .0.display()
    )]
    InUse(PathBuf),
    /// Stored bytes could not be decoded, or the database reported corruption.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The operating system refused a file operation.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// Any other failure of the storage engine.
    #[error("storage error: {0}")]
    Db(String),
}

/// An error from [`crate::Accounts`].
///
/// Every message is safe to show to the person who made the request: none of them reveal
/// whether an email address has an account.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Login failed. The same message is used for an unknown email and a wrong password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The account exists and the password was right, but an administrator disabled it.
    #[error("this account is disabled")]
    Disabled,
    /// An input did not pass validation; the text says which and why.
    #[error("{0}")]
    Validation(String),
    /// A unique value (email, site key) is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The agent, site or token that the request names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The storage backend failed.
    #[error(transparent)]
    Store(StoreError),
    /// Password hashing failed, which only happens when its parameters are invalid.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl From<StoreError> for AccountError {
    /// Conflicts and missing records keep their meaning when they cross from the store to
    /// the accounts service, so callers need to match only `AccountError`'s own variants.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) => AccountError::Conflict(msg),
            StoreError::NotFound(what) => AccountError::NotFound(what),
            other => AccountError::Store(other),
        }
    }
}

/// An error from [`crate::Conversations`] or [`crate::Attachments`].
///
/// Every message is written for the person who made the request (a visitor in the widget or
/// an agent in the console), so the dashboards can pass it on as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The conversation, message or attachment does not exist, or the visitor asking is not
    /// its party (a visitor learns nothing about other visitors' conversations).
    #[error("{0} not found")]
    NotFound(String),
    /// The agent may not do this; the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// The visitor is blocked on this site and may not chat.
    #[error("you cannot chat on this site")]
    Blocked,
    /// An input did not pass validation, or the conversation is in a state that does not
    /// allow the action; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The storage backend (or the file system, for attachments) failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ConversationError {
    /// A record that vanished between the service's read and its write is reported like one
    /// that never existed; everything else stays a storage failure.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ConversationError::NotFound(what),
            other => ConversationError::Store(other),
        }
    }
}
