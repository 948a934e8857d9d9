//! The contact behind a visitor, as agents keep it on the visitor card (seeds 001 and 004):
//! name, email and phone edited by agents, agents' notes (several, each with its author and
//! time, visible to every agent of the site) and contact tags.
//!
//! Name, email and phone live where the rest of the identity lives: in the visitor's durable
//! profile and, while the visitor is live, in the presence table, so the live panel and the
//! card show an edit at once and the next visit starts from it. Notes and tags are records of
//! their own, keyed by (site, visitor id).
//!
//! Edits of one visitor are serialised (one lock of 64, chosen by a hash of the key), so two
//! agents adding tags at once cannot lose one of them.

use std::hash::BuildHasher;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracker::{Identity, Presence};

use crate::clock::Clock;
use crate::error::ConversationError;
use crate::model::{Agent, Profile};
use crate::profiles::ProfileWriter;
use crate::store::Store;

/// A contact name is at most this many characters.
pub const MAX_CONTACT_NAME_CHARS: usize = 100;
/// An email address is at most this many characters.
pub const MAX_CONTACT_EMAIL_CHARS: usize = 254;
/// A phone number is at most this many characters.
pub const MAX_CONTACT_PHONE_CHARS: usize = 40;
/// A note is 1 to this many characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// A visitor keeps at most this many notes.
pub const MAX_NOTES: usize = 200;
/// A contact carries at most this many tags.
pub const MAX_CONTACT_TAGS: usize = 30;
/// A contact tag is 1 to this many characters.
pub const MAX_CONTACT_TAG_CHARS: usize = 32;

const LOCK_SHARDS: usize = 64;

/// An agent's note on a visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorNote {
    pub id: u64,
    pub site: String,
    pub visitor_id: String,
    pub author_id: u64,
    /// The author's name when the note was written.
    pub author_name: String,
    pub text: String,
    pub created_ms: i64,
}

/// A note before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVisitorNote {
    pub site: String,
    pub visitor_id: String,
    pub author_id: u64,
    pub author_name: String,
    pub text: String,
    pub created_ms: i64,
}

impl NewVisitorNote {
    pub fn with_id(self, id: u64) -> VisitorNote {
        VisitorNote {
            id,
            site: self.site,
            visitor_id: self.visitor_id,
            author_id: self.author_id,
            author_name: self.author_name,
            text: self.text,
            created_ms: self.created_ms,
        }
    }
}

/// What an agent changes on the contact: `None` keeps a field, `Some(None)` (or an empty
/// text) clears it, `Some(Some(text))` sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactEdit {
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
}

/// Everything the card shows about the contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub site: String,
    pub visitor_id: String,
    /// Whether the visitor is in the presence table now.
    pub live: bool,
    pub number: u32,
    pub visits: u32,
    pub first_seen_ms: i64,
    pub identity: Identity,
    pub tags: Vec<String>,
    /// Oldest first.
    pub notes: Vec<VisitorNote>,
}

/// The contacts service.
#[derive(Debug)]
pub struct Contacts {
    presence: Arc<Presence>,
    store: Arc<dyn Store>,
    profiles: ProfileWriter,
    clock: Arc<dyn Clock>,
    locks: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
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

fn invalid(message: impl Into<String>) -> ConversationError {
    ConversationError::Invalid(message.into())
}

/// One line of text: control characters dropped, trimmed, `None` when empty.
fn one_line(text: &str) -> Option<String> {
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Validates one field of a [`ContactEdit`]; the error names the field.
fn clean_field(
    field: &str,
    value: Option<&str>,
    max: usize,
    valid: impl Fn(&str) -> bool,
    expected: &str,
) -> Result<Option<String>, ConversationError> {
    let Some(value) = value.and_then(one_line) else {
        return Ok(None);
    };
    if value.chars().count() > max {
        return Err(invalid(format!("{field}: at most {max} characters")));
    }
    if !valid(&value) {
        return Err(invalid(format!("{field}: {expected}")));
    }
    Ok(Some(value))
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace)
}

fn valid_phone(phone: &str) -> bool {
    phone.chars().any(|c| c.is_ascii_digit())
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().#*/x".contains(c))
}

impl ContactEdit {
    /// The edit with every field validated and cleaned; errors name the field.
    pub fn cleaned(self) -> Result<ContactEdit, ConversationError> {
        let clean = |value: Option<Option<String>>,
                     field: &str,
                     max: usize,
                     valid: &dyn Fn(&str) -> bool,
                     expected: &str| {
            value
                .map(|value| clean_field(field, value.as_deref(), max, valid, expected))
                .transpose()
        };
        Ok(ContactEdit {
            name: clean(self.name, "name", MAX_CONTACT_NAME_CHARS, &|_| true, "")?,
            email: clean(
                self.email,
                "email",
                MAX_CONTACT_EMAIL_CHARS,
                &valid_email,
                "not an email address",
            )?,
            phone: clean(
                self.phone,
                "phone",
                MAX_CONTACT_PHONE_CHARS,
                &valid_phone,
                "use digits, spaces and + - ( ) only",
            )?,
        })
    }

    fn apply(&self, identity: &mut Identity) {
        if let Some(name) = &self.name {
            identity.name = name.clone();
        }
        if let Some(email) = &self.email {
            identity.email = email.clone();
        }
        if let Some(phone) = &self.phone {
            identity.phone = phone.clone();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none() && self.phone.is_none()
    }
}

/// A contact tag as stored: trimmed, lowercase, 1 to 32 characters without control characters.
pub fn normalize_contact_tag(tag: &str) -> Result<String, ConversationError> {
    let tag = tag.trim().to_lowercase();
    if tag.is_empty() {
        return Err(invalid("tag: cannot be empty"));
    }
    if tag.chars().count() > MAX_CONTACT_TAG_CHARS {
        return Err(invalid(format!(
            "tag: at most {MAX_CONTACT_TAG_CHARS} characters"
        )));
    }
    if tag.chars().any(char::is_control) {
        return Err(invalid("tag: control characters are not allowed"));
    }
    Ok(tag)
}

impl Contacts {
    pub fn new(
        presence: Arc<Presence>,
        store: Arc<dyn Store>,
        profiles: ProfileWriter,
        clock: Arc<dyn Clock>,
    ) -> Contacts {
        Contacts {
            presence,
            store,
            profiles,
            clock,
            locks: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn lock(&self, site: &str, visitor_id: &str) -> &tokio::sync::Mutex<()> {
        let hash = self.hasher.hash_one((site, visitor_id));
        // The modulo keeps the index below LOCK_SHARDS, so the cast cannot truncate.
        &self.locks[(hash % LOCK_SHARDS as u64) as usize]
    }

    /// The contact: the live visitor's identity and numbers while they are live, else their
    /// stored profile; tags and notes either way. A visitor never seen is
    /// [`ConversationError::NotFound`].
    pub async fn contact(
        &self,
        site: &str,
        visitor_id: &str,
        agent: &Agent,
    ) -> Result<Contact, ConversationError> {
        check_site(site, agent)?;
        let live = self.presence.get(site, visitor_id);
        let (number, visits, first_seen_ms, identity) = match &live {
            Some(visitor) => (
                visitor.number,
                visitor.visits,
                visitor.first_seen_ms,
                visitor.identity.clone(),
            ),
            None => {
                let profile = self
                    .profiles
                    .profile(site, visitor_id)
                    .await?
                    .ok_or_else(|| ConversationError::NotFound("visitor".into()))?;
                (
                    profile.number,
                    profile.visits,
                    profile.first_seen_ms,
                    profile.identity,
                )
            }
        };
        Ok(Contact {
            site: site.to_owned(),
            visitor_id: visitor_id.to_owned(),
            live: live.is_some(),
            number,
            visits,
            first_seen_ms,
            identity,
            tags: self.store.contact_tags(site, visitor_id).await?,
            notes: self.store.visitor_notes(site, visitor_id).await?,
        })
    }

    /// Changes name, email and/or phone: in the presence table at once (the live panel gets a
    /// delta) and in the durable profile before returning. Returns the new identity.
    pub async fn edit(
        &self,
        site: &str,
        visitor_id: &str,
        agent: &Agent,
        edit: ContactEdit,
    ) -> Result<Identity, ConversationError> {
        check_site(site, agent)?;
        let edit = edit.cleaned()?;
        if edit.is_empty() {
            return Err(invalid("send at least one of name, email and phone"));
        }
        let _lock = self.lock(site, visitor_id).lock().await;
        // Presence first: a beacon that persists the profile from now on carries the edit.
        let live = self
            .presence
            .edit_identity(site, visitor_id, |identity| edit.apply(identity));
        let stored = self
            .profiles
            .edit(site, visitor_id, |profile: &mut Profile| {
                edit.apply(&mut profile.identity)
            })
            .await?;
        if stored.is_none() {
            match self.presence.get(site, visitor_id) {
                // A live visitor whose profile was never written (the write-behind queue was
                // full): write it now from what the table knows.
                Some(visitor) => {
                    self.profiles.queue(crate::model::ProfileRecord {
                        site: site.to_owned(),
                        visitor_id: visitor_id.to_owned(),
                        profile: Profile {
                            number: visitor.number,
                            visits: visitor.visits,
                            first_seen_ms: visitor.first_seen_ms,
                            last_visit_id: None,
                            identity: visitor.identity.clone(),
                        },
                    });
                }
                None => return Err(ConversationError::NotFound("visitor".into())),
            }
        }
        self.profiles.flush().await?;
        Ok(match (live, stored) {
            (Some(identity), _) => identity,
            (None, Some(profile)) => profile.identity,
            (None, None) => Identity::default(),
        })
    }

    /// Adds a note written by `agent`.
    pub async fn add_note(
        &self,
        site: &str,
        visitor_id: &str,
        agent: &Agent,
        text: &str,
    ) -> Result<VisitorNote, ConversationError> {
        check_site(site, agent)?;
        let text: String = text
            .chars()
            .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid("text: a note cannot be empty"));
        }
        if text.chars().count() > MAX_NOTE_CHARS {
            return Err(invalid(format!(
                "text: at most {MAX_NOTE_CHARS} characters"
            )));
        }
        let _lock = self.lock(site, visitor_id).lock().await;
        self.ensure_known(site, visitor_id).await?;
        if self.store.visitor_notes(site, visitor_id).await?.len() >= MAX_NOTES {
            return Err(invalid(format!(
                "a visitor can have at most {MAX_NOTES} notes; delete old ones first"
            )));
        }
        Ok(self
            .store
            .create_visitor_note(NewVisitorNote {
                site: site.to_owned(),
                visitor_id: visitor_id.to_owned(),
                author_id: agent.id,
                author_name: agent.name.clone(),
                text: text.to_owned(),
                created_ms: self.clock.now_ms(),
            })
            .await?)
    }

    /// Deletes a note: its author, an admin or the owner may.
    pub async fn delete_note(
        &self,
        site: &str,
        visitor_id: &str,
        note_id: u64,
        agent: &Agent,
    ) -> Result<(), ConversationError> {
        check_site(site, agent)?;
        let _lock = self.lock(site, visitor_id).lock().await;
        let note = self
            .store
            .visitor_notes(site, visitor_id)
            .await?
            .into_iter()
            .find(|note| note.id == note_id)
            .ok_or_else(|| ConversationError::NotFound("note".into()))?;
        if note.author_id != agent.id && !agent.role.is_admin() {
            return Err(ConversationError::Forbidden(
                "only the note's author, an admin or the owner may delete it".into(),
            ));
        }
        self.store
            .delete_visitor_note(site, visitor_id, note_id)
            .await?;
        Ok(())
    }

    /// Adds a tag (adding one the contact has changes nothing); returns the tags.
    pub async fn add_tag(
        &self,
        site: &str,
        visitor_id: &str,
        agent: &Agent,
        tag: &str,
    ) -> Result<Vec<String>, ConversationError> {
        check_site(site, agent)?;
        let tag = normalize_contact_tag(tag)?;
        let _lock = self.lock(site, visitor_id).lock().await;
        self.ensure_known(site, visitor_id).await?;
        let mut tags = self.store.contact_tags(site, visitor_id).await?;
        if tags.contains(&tag) {
            return Ok(tags);
        }
        if tags.len() >= MAX_CONTACT_TAGS {
            return Err(invalid(format!(
                "a contact can have at most {MAX_CONTACT_TAGS} tags"
            )));
        }
        tags.push(tag);
        self.store.put_contact_tags(site, visitor_id, &tags).await?;
        Ok(tags)
    }

    /// Removes a tag (removing one the contact lacks changes nothing); returns the tags.
    pub async fn remove_tag(
        &self,
        site: &str,
        visitor_id: &str,
        agent: &Agent,
        tag: &str,
    ) -> Result<Vec<String>, ConversationError> {
        check_site(site, agent)?;
        let tag = tag.trim().to_lowercase();
        let _lock = self.lock(site, visitor_id).lock().await;
        let mut tags = self.store.contact_tags(site, visitor_id).await?;
        let before = tags.len();
        tags.retain(|existing| *existing != tag);
        if tags.len() != before {
            self.store.put_contact_tags(site, visitor_id, &tags).await?;
        }
        Ok(tags)
    }

    /// Notes and tags are kept only for visitors the site has seen: live, or with a profile.
    async fn ensure_known(&self, site: &str, visitor_id: &str) -> Result<(), ConversationError> {
        if self.presence.get(site, visitor_id).is_some()
            || self.profiles.profile(site, visitor_id).await?.is_some()
        {
            Ok(())
        } else {
            Err(ConversationError::NotFound("visitor".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(edit: ContactEdit, expected: Result<ContactEdit, &str>) {
        match (edit.cleaned(), expected) {
            (Ok(actual), Ok(want)) => assert_eq!(actual, want),
            (Err(error), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{error}")
            }
            (actual, want) => panic!("got {actual:?}, want {want:?}"),
        }
    }

    fn set(name: Option<&str>, email: Option<&str>, phone: Option<&str>) -> ContactEdit {
        let field = |value: Option<&str>| value.map(|v| Some(v.to_owned()));
        ContactEdit {
            name: field(name),
            email: field(email),
            phone: field(phone),
        }
    }

    #[test]
    fn contact_edits_are_cleaned_or_refused_naming_the_field() {
        check(
            set(
                Some("  Ada\u{7} Lovelace "),
                Some(" ada@example.com"),
                Some("+44 (20) 7946-0958"),
            ),
            Ok(set(
                Some("Ada Lovelace"),
                Some("ada@example.com"),
                Some("+44 (20) 7946-0958"),
            )),
        );
        // Empty texts clear.
        check(
            set(Some(""), Some("  "), None),
            Ok(ContactEdit {
                name: Some(None),
                email: Some(None),
                phone: None,
            }),
        );
        check(
            set(None, Some("not-an-email"), None),
            Err("email: not an email address"),
        );
        check(
            set(None, Some("a @b"), None),
            Err("email: not an email address"),
        );
        check(set(None, None, Some("call me")), Err("phone: use digits"));
        check(set(None, None, Some("+-")), Err("phone: use digits"));
        check(
            set(Some(&"x".repeat(101)), None, None),
            Err("name: at most 100"),
        );
        check(
            set(None, None, Some(&"1".repeat(41))),
            Err("phone: at most 40"),
        );
    }

    #[test]
    fn contact_tags_are_normalised() {
        assert_eq!(normalize_contact_tag("  VIP ").unwrap(), "vip");
        assert!(normalize_contact_tag(" ").is_err());
        assert!(normalize_contact_tag(&"t".repeat(33)).is_err());
        assert!(normalize_contact_tag("a\u{0}b").is_err());
    }
}
