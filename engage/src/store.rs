//! The storage interface every backend implements.
//!
//! The operations are deliberately key/value shaped: each one reads or writes records by a
//! single key, plus a few secondary indexes that the backend keeps in step (email to agent
//! id, token hash to API token id). That keeps a Redis backend straightforward: every
//! operation maps to a handful of `GET`/`SET`/`HSET`/`DEL` calls, or one `MULTI` block, and
//! records are the same JSON bytes in either backend.
//!
//! Conversations add one multi-key operation, [`Store::write_conversation`]: a conversation
//! record, its new messages and their client-id index entries, committed together. In Redis
//! that is `WATCH` on the conversation key plus one `MULTI` block; the check that the record
//! was read at the stored `last_seq` is what the `WATCH` enforces.

use async_trait::async_trait;

use crate::attachments::AttachmentMeta;
use crate::contacts::{NewVisitorNote, VisitorNote};
use crate::conversations::{
    AppendOutcome, Block, Conversation, ConversationWrite, Message, NewConversation, NewMessage,
    WriteOutcome,
};
use crate::error::StoreError;
use crate::model::{
    Agent, AgentStatus, ApiTokenRecord, NewAgentRecord, NewApiTokenRecord, Profile, ProfileRecord,
    SessionRecord, Site,
};
use crate::saved_replies::{NewSavedReply, SavedReply};
use crate::triggers::{FireRecord, StatsDelta, StatsRow, Trigger};
use crate::webhooks::{Delivery, NewWebhook, Webhook};
use crate::widget::{Lead, NewLead, WidgetSettings};

/// Durable storage for visitor profiles, agents, sessions, API tokens, sites,
/// conversations with their messages, attachments, visitor credentials and blocks, and
/// triggers with their fire records and counters.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // Visitor profiles.

    /// The stored profile of one visitor of one site.
    async fn load_profile(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<Profile>, StoreError>;

    /// Writes (inserts or replaces) a batch of profiles in one transaction, and raises each
    /// site's highest visitor number to the highest number in the batch.
    async fn save_profiles(&self, batch: &[ProfileRecord]) -> Result<(), StoreError>;

    /// The highest visitor number saved for each site, to seed the in-memory counters at
    /// start-up. Sites with no saved profile are absent.
    async fn max_visitor_numbers(&self) -> Result<Vec<(String, u32)>, StoreError>;

    // Agents.

    /// Stores a new agent under a fresh id. An email that is already taken, compared without
    /// regard to case, is a [`StoreError::Conflict`].
    async fn create_agent(&self, agent: NewAgentRecord) -> Result<Agent, StoreError>;

    async fn agent(&self, id: u64) -> Result<Option<Agent>, StoreError>;

    /// Looks an agent up by email, without regard to case.
    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>, StoreError>;

    /// Every agent, in id order.
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;

    /// Replaces a stored agent. A missing id is [`StoreError::NotFound`]; changing the email
    /// to one another agent has is [`StoreError::Conflict`].
    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError>;

    // Sessions.

    /// Stores (or replaces) a session under its token hash.
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Deletes a session; deleting one that does not exist is not an error.
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;

    /// Deletes every session that expired at or before `now_ms` and returns how many. A
    /// backend with native expiry (Redis `PEXPIREAT`) may return 0 and do nothing.
    async fn purge_expired_sessions(&self, now_ms: i64) -> Result<usize, StoreError>;

    // API tokens.

    /// Stores a new API token under a fresh id. A token hash that already exists is a
    /// [`StoreError::Conflict`] (it cannot happen with random tokens, but it must not
    /// silently re-point a token).
    async fn create_api_token(
        &self,
        token: NewApiTokenRecord,
    ) -> Result<ApiTokenRecord, StoreError>;

    async fn api_token(&self, token_hash: &str) -> Result<Option<ApiTokenRecord>, StoreError>;

    /// Every API token, in id order.
    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError>;

    /// Deletes an API token; returns whether it existed.
    async fn delete_api_token(&self, id: u64) -> Result<bool, StoreError>;

    // Sites.

    /// Stores a new site. A key that is already taken is a [`StoreError::Conflict`].
    async fn create_site(&self, site: &Site) -> Result<(), StoreError>;

    async fn site(&self, key: &str) -> Result<Option<Site>, StoreError>;

    /// Every site, in key order.
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError>;

    /// Replaces a stored site. A missing key is [`StoreError::NotFound`].
    async fn update_site(&self, site: &Site) -> Result<(), StoreError>;

    // Conversations. Every write below is durable when it returns: a message is acknowledged
    // to its sender only after it is on disk.

    /// Stores a new, open conversation without messages under a fresh id, and indexes it by
    /// (site, visitor) and by site.
    async fn create_conversation(
        &self,
        conversation: NewConversation,
    ) -> Result<Conversation, StoreError>;

    async fn conversation(&self, id: u64) -> Result<Option<Conversation>, StoreError>;

    /// Replaces a conversation's record without appending a message. A missing id is
    /// [`StoreError::NotFound`]; a record whose `last_seq` differs from the stored one (a
    /// message was appended after it was read) or whose site or visitor differs is
    /// [`StoreError::Conflict`], so a stale copy can never roll message bookkeeping back.
    async fn update_conversation(&self, conversation: &Conversation) -> Result<(), StoreError>;

    /// Applies one [`ConversationWrite`] in a single durable transaction: replaces the
    /// record if one is given (checked as in [`Store::update_conversation`]), appends each
    /// message at `last_seq + 1` and applies [`Conversation::record_message`] for it.
    ///
    /// Idempotent by client id: if a message of the write carries a non-empty client id
    /// that an earlier message of this conversation has, nothing at all is written and the
    /// outcome holds that earlier message with `duplicate: true`. Two messages of one write
    /// with the same client id are a [`StoreError::Conflict`].
    async fn write_conversation(
        &self,
        write: ConversationWrite,
    ) -> Result<WriteOutcome, StoreError>;

    /// Appends one message: [`Store::write_conversation`] with no record change.
    async fn append_message(
        &self,
        conversation_id: u64,
        message: NewMessage,
    ) -> Result<AppendOutcome, StoreError> {
        let outcome = self
            .write_conversation(ConversationWrite {
                conversation_id,
                conversation: None,
                messages: vec![message],
            })
            .await?;
        let message = outcome
            .messages
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Db("an append returned no message".to_string()))?;
        Ok(AppendOutcome {
            message,
            conversation: outcome.conversation,
            duplicate: outcome.duplicate,
        })
    }

    /// Up to `limit` messages with a seq above `after_seq`, in ascending seq order.
    async fn messages(
        &self,
        conversation_id: u64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// Every conversation of one visitor of one site, in id (creation) order.
    async fn conversations_of_visitor(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// Every conversation of a site, in id (creation) order.
    async fn conversations_of_site(&self, site: &str) -> Result<Vec<Conversation>, StoreError>;

    /// Stores (or replaces) the metadata of an attachment of a conversation.
    async fn put_attachment(
        &self,
        conversation_id: u64,
        attachment: &AttachmentMeta,
    ) -> Result<(), StoreError>;

    async fn attachment(
        &self,
        conversation_id: u64,
        id: &str,
    ) -> Result<Option<AttachmentMeta>, StoreError>;

    // Visitor credentials: the secret that lets a widget read and write its visitor's
    // conversations. Only its hash is stored.

    /// Stores the credential hash of a visitor unless one exists already (Redis `SETNX`).
    /// Returns whether it was stored; an existing credential is never replaced, so a visitor
    /// id alone can never be used to take over a visitor's conversations. This atomic
    /// insert-if-absent decides between racing registrations: the caller that gets `false`
    /// reads the stored hash and compares (the same secret is a repeat, another a conflict).
    async fn put_visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
        token_hash: &str,
    ) -> Result<bool, StoreError>;

    async fn visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<String>, StoreError>;

    // Blocks.

    /// Stores (or replaces) a block. A block with a visitor id is keyed by it; one with only
    /// an address by the address.
    async fn put_block(&self, site: &str, block: &Block) -> Result<(), StoreError>;

    /// Removes the block of a visitor (and the address blocked with it); returns whether
    /// there was one.
    async fn remove_block(&self, site: &str, visitor_id: &str) -> Result<bool, StoreError>;

    /// Every block of a site.
    async fn blocks(&self, site: &str) -> Result<Vec<Block>, StoreError>;

    // Webhooks.

    /// Stores a new webhook under a fresh id.
    async fn create_webhook(&self, webhook: NewWebhook) -> Result<Webhook, StoreError>;

    /// Every webhook of a site, in id order.
    async fn webhooks(&self, site: &str) -> Result<Vec<Webhook>, StoreError>;

    /// Deletes a webhook of a site; returns whether it existed.
    async fn delete_webhook(&self, site: &str, id: u64) -> Result<bool, StoreError>;

    /// Appends one delivery attempt to the site's log, dropping the oldest beyond
    /// [`crate::webhooks::MAX_DELIVERIES_PER_SITE`].
    async fn record_delivery(&self, site: &str, delivery: &Delivery) -> Result<(), StoreError>;

    /// The site's delivery log, oldest first.
    async fn deliveries(&self, site: &str) -> Result<Vec<Delivery>, StoreError>;

    // Widget settings and leads.

    /// The stored widget settings of a site; `None` means the defaults.
    async fn widget_settings(&self, site: &str) -> Result<Option<WidgetSettings>, StoreError>;

    /// Stores (or replaces) a site's widget settings.
    async fn put_widget_settings(
        &self,
        site: &str,
        settings: &WidgetSettings,
    ) -> Result<(), StoreError>;

    /// Stores a new lead under a fresh id.
    async fn create_lead(&self, lead: NewLead) -> Result<Lead, StoreError>;

    /// Every lead of a site, in id (creation) order.
    async fn leads(&self, site: &str) -> Result<Vec<Lead>, StoreError>;

    // Saved replies.

    /// Every saved reply of a site, in id order.
    async fn saved_replies(&self, site: &str) -> Result<Vec<SavedReply>, StoreError>;

    async fn saved_reply(&self, site: &str, id: u64) -> Result<Option<SavedReply>, StoreError>;

    /// Stores a new saved reply under a fresh id. A shortcut the site already uses is a
    /// [`StoreError::Conflict`].
    async fn create_saved_reply(&self, reply: NewSavedReply) -> Result<SavedReply, StoreError>;

    /// Replaces a saved reply. A missing one is [`StoreError::NotFound`]; a shortcut another
    /// reply of the site uses is [`StoreError::Conflict`].
    async fn update_saved_reply(&self, reply: &SavedReply) -> Result<(), StoreError>;

    /// Deletes a saved reply; returns whether it existed.
    async fn delete_saved_reply(&self, site: &str, id: u64) -> Result<bool, StoreError>;

    // Contacts: agents' notes and tags on a visitor.

    /// A visitor's notes, oldest first.
    async fn visitor_notes(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<VisitorNote>, StoreError>;

    /// Stores a new note under a fresh id.
    async fn create_visitor_note(&self, note: NewVisitorNote) -> Result<VisitorNote, StoreError>;

    /// Deletes a note; returns whether it existed.
    async fn delete_visitor_note(
        &self,
        site: &str,
        visitor_id: &str,
        id: u64,
    ) -> Result<bool, StoreError>;

    /// A visitor's contact tags (empty when none were ever set).
    async fn contact_tags(&self, site: &str, visitor_id: &str) -> Result<Vec<String>, StoreError>;

    /// Replaces a visitor's contact tags.
    async fn put_contact_tags(
        &self,
        site: &str,
        visitor_id: &str,
        tags: &[String],
    ) -> Result<(), StoreError>;

    // Agents' chosen status.

    /// Stores an agent's status, so it survives reconnects and restarts.
    async fn put_agent_status(&self, agent_id: u64, status: AgentStatus) -> Result<(), StoreError>;

    /// Every stored agent status; agents without one are online.
    async fn agent_statuses(&self) -> Result<Vec<(u64, AgentStatus)>, StoreError>;

    // Triggers (issue 4). A trigger is one JSON record under (site, id); fire records are
    // under (site, visitor, trigger); counters under (site, trigger, UTC day, variant).

    /// Stores a new trigger under a fresh id (ids are never reused) and returns it with the id.
    async fn create_trigger(&self, trigger: Trigger) -> Result<Trigger, StoreError>;

    /// [`Store::create_trigger`] for many triggers in one transaction (an import).
    async fn create_triggers(&self, triggers: Vec<Trigger>) -> Result<Vec<Trigger>, StoreError>;

    async fn trigger(&self, site: &str, id: u64) -> Result<Option<Trigger>, StoreError>;

    /// Every trigger of a site, in id order.
    async fn triggers(&self, site: &str) -> Result<Vec<Trigger>, StoreError>;

    /// Every trigger of every site, to compile at start-up.
    async fn all_triggers(&self) -> Result<Vec<Trigger>, StoreError>;

    /// Replaces a stored trigger (by its site and id). A missing one is
    /// [`StoreError::NotFound`].
    async fn update_trigger(&self, trigger: &Trigger) -> Result<(), StoreError>;

    /// Deletes a trigger and its counters; returns whether it existed. Fire records stay (a
    /// deleted trigger's id is never reused, so they match nothing).
    async fn delete_trigger(&self, site: &str, id: u64) -> Result<bool, StoreError>;

    /// The fire records of one visitor of one site (one per trigger that fired for them).
    async fn trigger_fires(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<FireRecord>, StoreError>;

    /// Ids of the visitors of a site that have at least one fire record (any trigger), so the
    /// engine knows without a read per visitor whose records it must load.
    async fn trigger_fired_visitors(&self, site: &str) -> Result<Vec<String>, StoreError>;

    /// In one transaction: stores (replaces) each fire record, and adds each delta to its
    /// (site, trigger, day, variant) counters.
    async fn save_trigger_activity(
        &self,
        fires: &[FireRecord],
        deltas: &[StatsDelta],
    ) -> Result<(), StoreError>;

    /// A trigger's counters for the UTC days in `[from_day, to_day)`.
    async fn trigger_stats(
        &self,
        site: &str,
        trigger_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<StatsRow>, StoreError>;
}
