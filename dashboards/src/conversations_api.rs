//! The agents' side of conversations: the inbox, the chat, blocking (issue 3).

use axum::Router;

use crate::state::AppState;

/// Routes under `/api` for conversations.
pub fn routes() -> Router<AppState> {
    Router::new()
}
