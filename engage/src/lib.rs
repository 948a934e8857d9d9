//! Porchlight's durable side: the store, accounts and the visitor-profile write-behind.
//!
//! - [`Store`] is the storage interface; [`RedbStore`] is the embedded implementation (one
//!   `porchlight.redb` file in the data directory). Records are JSON so that a Redis store
//!   can later keep the same bytes.
//! - [`Accounts`] manages agents, password logins, sessions, API tokens and sites.
//! - [`ProfileWriter`] writes visitor profiles behind the ingestion path in batches, and
//!   [`VisitorNumbers`] hands out per-site visitor numbers without a synchronous write.
//! - [`Conversations`] is the chat service: conversations, messages, notes, attachments
//!   ([`Attachments`]), assignment, resolve and rating, blocking, visitor credentials, the
//!   inbox, and an event bus for the live channels. Card numbers are masked
//!   ([`mask_card_numbers`]) before any text is stored.
//! - [`Contacts`] is the contact behind a visitor (name, email and phone edited by agents,
//!   notes, tags); [`SavedReplies`] are per-site canned answers for the chat.
//! - [`Triggers`] is the proactive-message engine (issue 4): triggers evaluated against the
//!   live presence table on every beacon and on time-based wake-ups, with limits, A/B
//!   variants and funnel statistics.

mod accounts;
mod attachments;
mod clock;
pub mod contacts;
pub mod conversations;
mod error;
mod ingest;
mod masking;
mod model;
mod profiles;
mod redb_store;
pub mod saved_replies;
mod store;
#[cfg(test)]
pub(crate) mod test_store;
pub mod triggers;
pub mod webhooks;
pub mod widget;

pub use accounts::{Accounts, AccountsConfig, PasswordParams, SessionToken, hash_token};
pub use attachments::{
    AttachmentMeta, Attachments, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_NAME_CHARS,
    sanitize_name as sanitize_attachment_name, sniff_image, valid_attachment_id,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use contacts::{Contact, ContactEdit, Contacts, VisitorNote};
pub use conversations::{
    AppendOutcome, Author, Block, Content, Conversation, ConversationEvent, ConversationOrigin,
    ConversationState, ConversationWrite, Conversations, CredentialIssue, InboxCounts, InboxFilter,
    InboxTab, Message, MessageBody, NewConversation, NewMessage, Party, PreChat, Rating,
    StartDetails, SystemEvent, TabCount, TriggerMessage, VISITOR_CREDENTIAL_CHARS, VisitorRef,
    WriteOutcome, validate_visitor_credential,
};
pub use error::{AccountError, ConversationError, StoreError};
pub use ingest::{Ingest, IngestOutcome};
pub use masking::mask_card_numbers;
pub use model::{
    Agent, AgentStatus, AgentView, ApiTokenRecord, ApiTokenView, Identity, NewAgentRecord,
    NewApiTokenRecord, ParseRoleError, Profile, ProfileRecord, PropValue, Role, SessionRecord,
    Site, normalize_origin,
};
pub use profiles::{ProfileWriter, ProfileWriterConfig, VisitorNumbers};
pub use redb_store::{DB_FILE_NAME, RedbStore};
pub use saved_replies::{SavedReplies, SavedReply};
pub use store::Store;
pub use triggers::{Trigger, TriggerContext, TriggerError, TriggerEvent, Triggers};
pub use webhooks::{Delivery, NewWebhook, Webhook, WebhookEvent};
pub use widget::{
    Availability, AvailabilityMode, Lead, NewLead, WidgetSettings, availability, next_hours_change,
};
