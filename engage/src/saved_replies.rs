//! Saved replies (canned answers): per-site texts that agents insert into a chat by typing `/`
//! and their shortcut, or pick as the opening offer of a conversation they start.
//!
//! Any agent with access to a site may use and manage its saved replies: seed 004 has agents
//! save a reply straight from the chat as well as in the settings. Shortcuts are unique per
//! site, compared in their normalised (trimmed, lowercase, no leading `/`) form.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{ConversationError, StoreError};
use crate::model::Agent;
use crate::store::Store;

/// A shortcut is 1 to this many characters.
pub const MAX_SHORTCUT_CHARS: usize = 32;
/// A saved reply's text is 1 to this many characters (a chat message's limit).
pub const MAX_REPLY_CHARS: usize = 5000;
/// A site keeps at most this many saved replies.
pub const MAX_REPLIES_PER_SITE: usize = 500;

/// One saved reply of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedReply {
    pub id: u64,
    pub site: String,
    /// Lowercase, without the leading `/` typed in the composer.
    pub shortcut: String,
    pub text: String,
    /// The agent who last saved it.
    pub updated_by: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A saved reply before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSavedReply {
    pub site: String,
    pub shortcut: String,
    pub text: String,
    pub updated_by: u64,
    pub created_ms: i64,
}

impl NewSavedReply {
    pub fn with_id(self, id: u64) -> SavedReply {
        SavedReply {
            id,
            site: self.site,
            shortcut: self.shortcut,
            text: self.text,
            updated_by: self.updated_by,
            created_ms: self.created_ms,
            updated_ms: self.created_ms,
        }
    }
}

/// A shortcut as stored: trimmed, without a leading `/`, lowercase; letters, digits, `-`, `_`
/// and `.` only, so that `/` plus the shortcut is one word in the composer.
pub fn normalize_shortcut(shortcut: &str) -> Result<String, String> {
    let shortcut = shortcut.trim();
    let shortcut = shortcut
        .strip_prefix('/')
        .unwrap_or(shortcut)
        .to_lowercase();
    if shortcut.is_empty() {
        return Err("shortcut: cannot be empty".into());
    }
    if shortcut.chars().count() > MAX_SHORTCUT_CHARS {
        return Err(format!("shortcut: at most {MAX_SHORTCUT_CHARS} characters"));
    }
    if let Some(bad) = shortcut
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "shortcut: {bad:?} is not allowed; use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(shortcut)
}

/// A reply's text: control characters other than line breaks and tabs dropped, trimmed, 1 to
/// [`MAX_REPLY_CHARS`] characters.
pub fn clean_reply_text(text: &str) -> Result<String, String> {
    let text: String = text
        .chars()
        .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Err("text: cannot be empty".into());
    }
    if text.chars().count() > MAX_REPLY_CHARS {
        return Err(format!("text: at most {MAX_REPLY_CHARS} characters"));
    }
    Ok(text.to_owned())
}

/// The saved-replies service: access checks and validation over the store.
#[derive(Debug, Clone)]
pub struct SavedReplies {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

fn check_site(site: &str, agent: &Agent) -> Result<(), ConversationError> {
    if agent.can_access(site) {
        Ok(())
    } else {
        Err(ConversationError::Forbidden(
            "you have no access to this site".into(),
        ))
    }
}

fn conflict_or(error: StoreError) -> ConversationError {
    match error {
        // A taken shortcut is the person's to fix: say so as a validation message.
        StoreError::Conflict(message) => ConversationError::Invalid(message),
        other => other.into(),
    }
}

impl SavedReplies {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> SavedReplies {
        SavedReplies { store, clock }
    }

    /// The site's saved replies, by shortcut.
    pub async fn list(
        &self,
        site: &str,
        agent: &Agent,
    ) -> Result<Vec<SavedReply>, ConversationError> {
        check_site(site, agent)?;
        let mut replies = self.store.saved_replies(site).await?;
        replies.sort_by(|a, b| a.shortcut.cmp(&b.shortcut));
        Ok(replies)
    }

    /// One saved reply of the site.
    pub async fn get(
        &self,
        site: &str,
        id: u64,
        agent: &Agent,
    ) -> Result<SavedReply, ConversationError> {
        check_site(site, agent)?;
        self.store
            .saved_reply(site, id)
            .await?
            .ok_or_else(|| ConversationError::NotFound("saved reply".into()))
    }

    /// Saves a new reply. A shortcut the site already has is [`ConversationError::Invalid`].
    pub async fn create(
        &self,
        site: &str,
        agent: &Agent,
        shortcut: &str,
        text: &str,
    ) -> Result<SavedReply, ConversationError> {
        check_site(site, agent)?;
        let shortcut = normalize_shortcut(shortcut).map_err(ConversationError::Invalid)?;
        let text = clean_reply_text(text).map_err(ConversationError::Invalid)?;
        if self.store.saved_replies(site).await?.len() >= MAX_REPLIES_PER_SITE {
            return Err(ConversationError::Invalid(format!(
                "a site can keep at most {MAX_REPLIES_PER_SITE} saved replies"
            )));
        }
        self.store
            .create_saved_reply(NewSavedReply {
                site: site.to_owned(),
                shortcut,
                text,
                updated_by: agent.id,
                created_ms: self.clock.now_ms(),
            })
            .await
            .map_err(conflict_or)
    }

    /// Changes a reply's shortcut and/or text; `None` keeps a field.
    pub async fn update(
        &self,
        site: &str,
        id: u64,
        agent: &Agent,
        shortcut: Option<&str>,
        text: Option<&str>,
    ) -> Result<SavedReply, ConversationError> {
        let mut reply = self.get(site, id, agent).await?;
        if let Some(shortcut) = shortcut {
            reply.shortcut = normalize_shortcut(shortcut).map_err(ConversationError::Invalid)?;
        }
        if let Some(text) = text {
            reply.text = clean_reply_text(text).map_err(ConversationError::Invalid)?;
        }
        reply.updated_by = agent.id;
        reply.updated_ms = self.clock.now_ms();
        self.store
            .update_saved_reply(&reply)
            .await
            .map_err(conflict_or)?;
        Ok(reply)
    }

    /// Deletes a reply; a reply that does not exist is [`ConversationError::NotFound`].
    pub async fn delete(
        &self,
        site: &str,
        id: u64,
        agent: &Agent,
    ) -> Result<(), ConversationError> {
        check_site(site, agent)?;
        if self.store.delete_saved_reply(site, id).await? {
            Ok(())
        } else {
            Err(ConversationError::NotFound("saved reply".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_shortcut(input: &str, expected: Result<&str, &str>) {
        let actual = normalize_shortcut(input);
        match expected {
            Ok(want) => assert_eq!(actual.as_deref(), Ok(want), "{input:?}"),
            Err(fragment) => {
                let error = actual.expect_err(input);
                assert!(error.contains(fragment), "{input:?}: {error}");
            }
        }
    }

    #[test]
    fn shortcuts_are_normalised_or_refused_with_a_reason() {
        check_shortcut("price", Ok("price"));
        check_shortcut(" /Price ", Ok("price"));
        check_shortcut("thanks-2_u.k", Ok("thanks-2_u.k"));
        check_shortcut("cześć", Ok("cześć"));
        check_shortcut("", Err("cannot be empty"));
        check_shortcut("/", Err("cannot be empty"));
        check_shortcut("two words", Err("' ' is not allowed"));
        check_shortcut("a/b", Err("'/' is not allowed"));
        check_shortcut("<b>", Err("'<' is not allowed"));
        check_shortcut(&"x".repeat(33), Err("at most 32"));
    }

    #[test]
    fn reply_texts_keep_lines_and_drop_controls() {
        assert_eq!(
            clean_reply_text("  Hi!\n\tWelcome\u{7}  ").unwrap(),
            "Hi!\n\tWelcome"
        );
        assert!(clean_reply_text(" \n ").unwrap_err().contains("empty"));
        assert!(
            clean_reply_text(&"x".repeat(5001))
                .unwrap_err()
                .contains("at most 5000")
        );
    }
}
