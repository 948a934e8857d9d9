//! Conversations: chats between a site's visitors and its agents, with the rules of who may
//! do what, durable storage, and an event bus for the live channels.
//!
//! # Shape
//!
//! [`Conversations`] is the service the dashboards call. Every operation checks its caller
//! (a visitor, as a [`VisitorRef`] the channel has authenticated with the visitor's
//! credential, or an [`Agent`]), validates and masks the text, writes durably, and only then
//! publishes a [`ConversationEvent`] and returns. So a message is acknowledged to its sender
//! only once it is on disk, and nobody is told about a message that a crash could still
//! take back.
//!
//! # Ordering and concurrency
//!
//! Messages are numbered 1, 2, 3… per conversation ([`Message::seq`]), without gaps: a
//! channel resumes by asking for the messages after the last seq it has. Operations on one
//! conversation are serialised by a lock (one of 64, chosen by id), and events of one
//! conversation are published while that lock is held, so subscribers see them in seq
//! order. The store double-checks the lock: a record read before the latest append is
//! refused ([`Store::update_conversation`]).
//!
//! Sends are idempotent: a message carries the sender's `client_id`, and a retry with the
//! same id (after a reconnect that lost the acknowledgement) returns the stored message
//! instead of adding another. Client ids are unique per conversation.
//!
//! # Events
//!
//! [`Conversations::subscribe`] hands out a receiver of a `tokio::sync::broadcast` channel
//! (capacity 4 096) that carries every event of every site. A receiver that falls behind
//! gets `RecvError::Lagged` and must catch up from the store with
//! [`Conversations::messages`]; events carry `Arc`s, so a publish costs one allocation, not
//! one copy per subscriber. A channel layer with thousands of sockets should subscribe once
//! and route events to sockets by conversation and visitor, rather than giving each socket
//! its own receiver.
//!
//! # Privacy
//!
//! Notes and internal events never reach a visitor through [`Conversations::messages`], and
//! never become the preview. The [`Conversation`] record itself carries internal fields
//! (tags, read marks, invited agents, the visitor's address): the dashboards send a visitor
//! only the fields meant for them. Card numbers are masked ([`crate::mask_card_numbers`]) in
//! every text before it is stored or published.

mod inbox;
mod model;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::RwLock;
use tokio::sync::broadcast;

pub use inbox::{InboxCounts, InboxFilter, InboxTab, ParseTabError, TabCount};
pub use model::{
    AppendOutcome, Author, Block, Conversation, ConversationOrigin, ConversationState,
    ConversationWrite, Message, MessageBody, NewConversation, NewMessage, PREVIEW_CHARS, PreChat,
    Rating, SystemEvent, WriteOutcome,
};

use crate::accounts::hash_token;
use crate::attachments::{AttachmentMeta, Attachments, valid_attachment_id};
use crate::clock::Clock;
use crate::error::{ConversationError, StoreError};
use crate::masking::mask_card_numbers;
use crate::model::Agent;
use crate::store::Store;

/// Messages are 1 to this many characters after trimming.
pub const MAX_TEXT_CHARS: usize = 5000;
/// A conversation carries at most this many tags.
pub const MAX_TAGS: usize = 20;
/// A tag is 1 to this many characters.
pub const MAX_TAG_CHARS: usize = 32;
/// [`Conversations::messages`] returns at most this many messages per call.
pub const MAX_PAGE: usize = 1000;

const EVENT_CAPACITY: usize = 4096;
const LOCK_SHARDS: usize = 64;
const MAX_CLIENT_ID_CHARS: usize = 100;
const MAX_SUBJECT_CHARS: usize = 200;
const MAX_URL_CHARS: usize = 2048;
const MAX_NAME_CHARS: usize = 100;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_COMMENT_CHARS: usize = 1000;
const MAX_REASON_CHARS: usize = 500;
const MAX_VISITOR_ID_CHARS: usize = 128;
/// A visitor credential is 32 random bytes (256 bits) the widget generates, written as
/// unpadded base64url: exactly this many characters (see [`validate_visitor_credential`]).
pub const VISITOR_CREDENTIAL_CHARS: usize = 43;
/// Bytes a visitor credential encodes.
const VISITOR_CREDENTIAL_BYTES: usize = 32;
/// Longer credentials are refused before hashing when verifying; real ones are 43 characters.
const MAX_CREDENTIAL_LEN: usize = 256;
/// The verified-credential cache is emptied when it reaches this many visitors, which bounds
/// its memory without bookkeeping; the next verification of each visitor reads the store.
const CREDENTIAL_CACHE_LIMIT: usize = 100_000;

const NO_SITE_ACCESS: &str = "you have no access to this site";

/// What [`Conversations::issue_visitor_credential`] did with a visitor's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialIssue {
    /// The visitor had none: its hash is stored now.
    Created,
    /// The visitor already has exactly this credential (a repeated request, e.g. after the
    /// answer to the first was lost); nothing changed.
    Repeated,
    /// The visitor has a different credential, which is kept.
    Conflict,
}

/// A visitor as the caller has authenticated them: site, visitor id and, when known, the
/// address they are connecting from (checked against address blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitorRef<'a> {
    pub site: &'a str,
    pub visitor_id: &'a str,
    pub ip: Option<IpAddr>,
}

impl<'a> VisitorRef<'a> {
    pub fn new(site: &'a str, visitor_id: &'a str) -> Self {
        Self {
            site,
            visitor_id,
            ip: None,
        }
    }

    pub fn with_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }
}

/// Who is asking: a party of a conversation, or someone who wants to be.
#[derive(Debug, Clone, Copy)]
pub enum Party<'a> {
    Visitor(VisitorRef<'a>),
    Agent(&'a Agent),
}

/// What a visitor or agent sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// An attachment stored earlier with [`Conversations::upload_attachment`] in the same
    /// conversation, with an optional caption.
    Attachment {
        id: String,
        text: Option<String>,
    },
}

impl Content {
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text(text.into())
    }
}

/// A trigger's message, for [`Conversations::start_by_trigger_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerMessage<'a> {
    pub trigger_id: u64,
    /// The A/B variant's key.
    pub variant: Option<&'a str>,
    /// Whether the widget should open itself with the message.
    pub open_widget: bool,
    /// A test-fire from the console (kept out of the statistics).
    pub test: bool,
    /// The name the message appears under (an agent's or a bot's).
    pub sender_name: &'a str,
    pub text: &'a str,
}

/// Optional details of a new conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartDetails {
    /// From the pre-chat form.
    pub subject: Option<String>,
    /// The page the visitor is on.
    pub page_url: Option<String>,
    /// Name and email from the pre-chat form. The caller should also apply them to the
    /// visitor's profile; the conversation keeps its own copy as the visitor gave it.
    pub prechat: Option<PreChat>,
}

/// Something that happened, published after it was durably written.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationEvent {
    /// A message was appended. `conversation` is the record after the write that appended
    /// it (a write that appends several messages publishes one event each, in seq order,
    /// all with the final record). A new conversation first appears this way.
    MessageAdded {
        conversation: Arc<Conversation>,
        message: Arc<Message>,
    },
    /// The record changed without a message (tags, read marks).
    ConversationChanged { conversation: Arc<Conversation> },
    /// Someone started or stopped typing. Not stored.
    Typing {
        conversation_id: u64,
        site: String,
        visitor_id: String,
        who: Author,
        typing: bool,
    },
    /// A visitor was blocked or unblocked: the presence table's blocked flag should follow,
    /// and a blocked visitor's open chat sockets can be closed.
    BlockChanged {
        site: String,
        visitor_id: String,
        blocked: bool,
    },
}

impl ConversationEvent {
    /// The site the event belongs to, for routing.
    pub fn site(&self) -> &str {
        match self {
            ConversationEvent::MessageAdded { conversation, .. }
            | ConversationEvent::ConversationChanged { conversation } => &conversation.site,
            ConversationEvent::Typing { site, .. }
            | ConversationEvent::BlockChanged { site, .. } => site,
        }
    }

    /// The visitor the event concerns, for routing to their widget.
    pub fn visitor_id(&self) -> &str {
        match self {
            ConversationEvent::MessageAdded { conversation, .. }
            | ConversationEvent::ConversationChanged { conversation } => &conversation.visitor_id,
            ConversationEvent::Typing { visitor_id, .. }
            | ConversationEvent::BlockChanged { visitor_id, .. } => visitor_id,
        }
    }

    /// The conversation the event concerns, if it concerns one.
    pub fn conversation_id(&self) -> Option<u64> {
        match self {
            ConversationEvent::MessageAdded { conversation, .. }
            | ConversationEvent::ConversationChanged { conversation } => Some(conversation.id),
            ConversationEvent::Typing {
                conversation_id, ..
            } => Some(*conversation_id),
            ConversationEvent::BlockChanged { .. } => None,
        }
    }
}

/// The blocks of one site, as the cheap in-memory check needs them.
#[derive(Debug, Default)]
struct SiteBlocks {
    visitors: HashMap<String, Block>,
    /// Every address blocked along with a visitor (or on its own).
    ips: HashSet<IpAddr>,
}

impl SiteBlocks {
    fn from_blocks(blocks: impl IntoIterator<Item = Block>) -> Self {
        let mut site = SiteBlocks::default();
        for block in blocks {
            if let Some(ip) = block.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) {
                site.ips.insert(ip.to_canonical());
            }
            if let Some(visitor_id) = block.visitor_id.clone() {
                site.visitors.insert(visitor_id, block);
            }
        }
        site
    }
}

/// The conversation service.
#[derive(Debug)]
pub struct Conversations {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    attachments: Attachments,
    events: broadcast::Sender<ConversationEvent>,
    /// Serialises operations on one conversation: `locks[id % LOCK_SHARDS]`. At most one is
    /// held at a time, so two conversations sharing a shard cannot deadlock.
    locks: Box<[tokio::sync::Mutex<()>]>,
    /// Serialises the "does this visitor have an open conversation, else create one" step,
    /// so two concurrent starts cannot open two conversations. Taken before a conversation
    /// lock, never after one.
    start_lock: tokio::sync::Mutex<()>,
    /// site → blocks, loaded at start and kept in step with every block and unblock.
    blocks: RwLock<HashMap<String, SiteBlocks>>,
    /// site → visitor → credential hash that has been verified (or issued) before.
    credentials: RwLock<HashMap<String, HashMap<String, String>>>,
}

impl Conversations {
    /// Starts the service: loads every site's blocks into memory. Attachments are kept under
    /// `<data_dir>/attachments`.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        data_dir: impl AsRef<Path>,
    ) -> Result<Conversations, StoreError> {
        let mut blocks = HashMap::new();
        for site in store.list_sites().await? {
            let site_blocks = store.blocks(&site.key).await?;
            if !site_blocks.is_empty() {
                blocks.insert(site.key, SiteBlocks::from_blocks(site_blocks));
            }
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Conversations {
            attachments: Attachments::new(data_dir, Arc::clone(&store)),
            store,
            clock,
            events,
            locks: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            start_lock: tokio::sync::Mutex::new(()),
            blocks: RwLock::new(blocks),
            credentials: RwLock::new(HashMap::new()),
        })
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConversationEvent> {
        self.events.subscribe()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The attachment files, for callers that have checked access themselves.
    pub fn attachments(&self) -> &Attachments {
        &self.attachments
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self, conversation_id: u64) -> &tokio::sync::Mutex<()> {
        // The modulo keeps the index below LOCK_SHARDS, so the cast cannot truncate.
        &self.locks[(conversation_id % LOCK_SHARDS as u64) as usize]
    }

    // Starting conversations.

    /// A visitor writes from the widget. If they already have an open conversation the
    /// message goes there (a visitor has one chat at a time); otherwise a new conversation
    /// starts, unassigned, with this message.
    ///
    /// A blocked visitor (by id, or by `visitor.ip`) gets [`ConversationError::Blocked`].
    pub async fn start_by_visitor(
        &self,
        visitor: VisitorRef<'_>,
        text: &str,
        client_id: Option<&str>,
        details: StartDetails,
    ) -> Result<AppendOutcome, ConversationError> {
        validate_visitor_id(visitor.visitor_id)?;
        self.ensure_not_blocked(visitor)?;
        let text = clean_text(text)?;
        let client_id = clean_client_id(client_id)?;
        let details = clean_details(details)?;

        let start = self.start_lock.lock().await;
        if let Some(open) = self.open_conversation_of(visitor).await? {
            drop(start);
            return self
                .post_visitor_message(open.id, visitor, Content::Text(text), client_id.as_deref())
                .await;
        }
        let conversation = self
            .create(visitor, ConversationOrigin::Visitor, None, details)
            .await?;
        let _lock = self.lock(conversation.id).lock().await;
        drop(start);
        let message = NewMessage {
            author: Author::Visitor,
            body: MessageBody::Text { text },
            created_ms: self.now_ms(),
            client_id,
        };
        let outcome = self.commit(conversation.id, None, vec![message]).await?;
        Ok(last_appended(outcome)?)
    }

    /// An agent opens a conversation with a visitor (from the live panel or the visitor
    /// card), with a first message such as a saved reply. The conversation is assigned to
    /// the agent. If the visitor already has an open conversation the message goes there
    /// instead, as [`Conversations::post_agent_message`].
    pub async fn start_by_agent(
        &self,
        visitor: VisitorRef<'_>,
        agent: &Agent,
        text: &str,
        client_id: Option<&str>,
        details: StartDetails,
    ) -> Result<AppendOutcome, ConversationError> {
        validate_visitor_id(visitor.visitor_id)?;
        check_agent(visitor.site, agent)?;
        self.ensure_not_blocked(visitor)?;
        let text = clean_text(text)?;
        let client_id = clean_client_id(client_id)?;
        let details = clean_details(details)?;

        let start = self.start_lock.lock().await;
        if let Some(open) = self.open_conversation_of(visitor).await? {
            drop(start);
            return self
                .post_agent_message(open.id, agent, Content::Text(text), client_id.as_deref())
                .await;
        }
        let conversation = self
            .create(
                visitor,
                ConversationOrigin::Agent { agent_id: agent.id },
                Some(agent.id),
                details,
            )
            .await?;
        let _lock = self.lock(conversation.id).lock().await;
        drop(start);
        let message = NewMessage {
            author: author_of(agent),
            body: MessageBody::Text { text },
            created_ms: self.now_ms(),
            client_id,
        };
        let outcome = self.commit(conversation.id, None, vec![message]).await?;
        Ok(last_appended(outcome)?)
    }

    /// A trigger (issue 4) writes to a visitor as `sender_name`. The conversation starts
    /// unassigned and appears in the inbox once the visitor answers.
    ///
    /// A visitor who already has an open conversation is not interrupted:
    /// [`ConversationError::Invalid`]. A blocked visitor gets no trigger messages:
    /// [`ConversationError::Blocked`].
    pub async fn start_by_trigger(
        &self,
        visitor: VisitorRef<'_>,
        trigger_id: u64,
        sender_name: &str,
        text: &str,
        details: StartDetails,
    ) -> Result<AppendOutcome, ConversationError> {
        self.start_by_trigger_with(
            visitor,
            TriggerMessage {
                trigger_id,
                variant: None,
                open_widget: false,
                test: false,
                sender_name,
                text,
            },
            details,
        )
        .await
    }

    /// [`Conversations::start_by_trigger`] with the variant, the open-widget flag and the
    /// test-fire mark recorded in the conversation's origin.
    pub async fn start_by_trigger_with(
        &self,
        visitor: VisitorRef<'_>,
        message: TriggerMessage<'_>,
        details: StartDetails,
    ) -> Result<AppendOutcome, ConversationError> {
        validate_visitor_id(visitor.visitor_id)?;
        self.ensure_not_blocked(visitor)?;
        let text = clean_text(message.text)?;
        let name = clean_optional(
            Some(message.sender_name),
            MAX_NAME_CHARS,
            "the sender's name",
        )?
        .ok_or_else(|| invalid("the sender's name cannot be empty"))?;
        let details = clean_details(details)?;

        let start = self.start_lock.lock().await;
        if self.open_conversation_of(visitor).await?.is_some() {
            return Err(invalid("the visitor already has an open conversation"));
        }
        let conversation = self
            .create(
                visitor,
                ConversationOrigin::Trigger {
                    trigger_id: message.trigger_id,
                    variant: message.variant.map(str::to_owned),
                    open_widget: message.open_widget,
                    test: message.test,
                },
                None,
                details,
            )
            .await?;
        let _lock = self.lock(conversation.id).lock().await;
        drop(start);
        let message = NewMessage {
            author: Author::Bot { name },
            body: MessageBody::Text { text },
            created_ms: self.now_ms(),
            client_id: None,
        };
        let outcome = self.commit(conversation.id, None, vec![message]).await?;
        Ok(last_appended(outcome)?)
    }

    /// The visitor's newest open conversation. Called with the start lock held.
    async fn open_conversation_of(
        &self,
        visitor: VisitorRef<'_>,
    ) -> Result<Option<Conversation>, StoreError> {
        let all = self
            .store
            .conversations_of_visitor(visitor.site, visitor.visitor_id)
            .await?;
        Ok(all.into_iter().rev().find(Conversation::is_open))
    }

    /// Creates the conversation record. Called with the start lock held. A crash between
    /// this and the first message leaves a conversation without messages, which no inbox
    /// tab shows and which the visitor's retry (an open conversation) then fills.
    async fn create(
        &self,
        visitor: VisitorRef<'_>,
        origin: ConversationOrigin,
        agent: Option<u64>,
        details: StartDetails,
    ) -> Result<Conversation, StoreError> {
        self.store
            .create_conversation(NewConversation {
                site: visitor.site.to_string(),
                visitor_id: visitor.visitor_id.to_string(),
                origin,
                assigned_agent: agent,
                participants: agent.into_iter().collect(),
                created_ms: self.now_ms(),
                subject: details.subject,
                page_url: details.page_url,
                visitor_ip: visitor.ip.map(|ip| ip.to_canonical().to_string()),
                prechat: details.prechat,
            })
            .await
    }

    // Messages.

    /// The visitor writes into their conversation. A resolved conversation reopens: a
    /// [`SystemEvent::Reopened`] event is appended before the message, in the same write.
    ///
    /// A conversation of another visitor is [`ConversationError::NotFound`]; a blocked
    /// visitor gets [`ConversationError::Blocked`].
    pub async fn post_visitor_message(
        &self,
        conversation_id: u64,
        visitor: VisitorRef<'_>,
        content: Content,
        client_id: Option<&str>,
    ) -> Result<AppendOutcome, ConversationError> {
        self.ensure_not_blocked(visitor)?;
        let client_id = clean_client_id(client_id)?;
        let body = self.body_of(conversation_id, content).await?;

        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_visitor(&conversation, visitor)?;
        let now = self.now_ms();
        let mut messages = Vec::new();
        let mut update = None;
        if !conversation.is_open() {
            let mut reopened = conversation;
            reopened.state = ConversationState::Open;
            reopened.resolved_ms = None;
            reopened.updated_ms = now;
            update = Some(reopened);
            messages.push(NewMessage::event(SystemEvent::Reopened, now));
        }
        messages.push(NewMessage {
            author: Author::Visitor,
            body,
            created_ms: now,
            client_id,
        });
        let outcome = self.commit(conversation_id, update, messages).await?;
        Ok(last_appended(outcome)?)
    }

    /// An agent writes to the visitor. The agent needs access to the site; an unassigned
    /// conversation is assigned to them ([`SystemEvent::Assigned`]) and an agent who is not
    /// in the conversation joins it ([`SystemEvent::AgentJoined`]), in the same write as
    /// the message. A resolved conversation must be reopened first
    /// ([`ConversationError::Invalid`]); only the visitor's own message reopens one
    /// implicitly.
    pub async fn post_agent_message(
        &self,
        conversation_id: u64,
        agent: &Agent,
        content: Content,
        client_id: Option<&str>,
    ) -> Result<AppendOutcome, ConversationError> {
        let client_id = clean_client_id(client_id)?;
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if !conversation.is_open() {
            return Err(invalid(
                "this conversation is resolved: reopen it before writing",
            ));
        }
        let body = self.body_of(conversation_id, content).await?;
        let now = self.now_ms();
        let mut updated = conversation.clone();
        let mut messages = enlist(&mut updated, agent, now);
        messages.push(NewMessage {
            author: author_of(agent),
            body,
            created_ms: now,
            client_id,
        });
        let update = (updated != conversation).then_some(updated);
        let outcome = self.commit(conversation_id, update, messages).await?;
        Ok(last_appended(outcome)?)
    }

    /// An internal note: agents see it, the visitor never does, and it never becomes the
    /// preview. Allowed on resolved conversations too (for a post-mortem); writing a note
    /// does not join or assign.
    pub async fn add_note(
        &self,
        conversation_id: u64,
        agent: &Agent,
        text: &str,
        client_id: Option<&str>,
    ) -> Result<AppendOutcome, ConversationError> {
        let text = clean_text(text)?;
        let client_id = clean_client_id(client_id)?;
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        let message = NewMessage {
            author: author_of(agent),
            body: MessageBody::Note { text },
            created_ms: self.now_ms(),
            client_id,
        };
        let outcome = self.commit(conversation_id, None, vec![message]).await?;
        Ok(last_appended(outcome)?)
    }

    /// Turns what a sender sent into a message body: text is validated and masked; an
    /// attachment must have been uploaded to this very conversation.
    async fn body_of(
        &self,
        conversation_id: u64,
        content: Content,
    ) -> Result<MessageBody, ConversationError> {
        match content {
            Content::Text(text) => Ok(MessageBody::Text {
                text: clean_text(&text)?,
            }),
            Content::Attachment { id, text } => {
                let text = match text {
                    Some(text) if !text.trim().is_empty() => Some(clean_text(&text)?),
                    _ => None,
                };
                let unknown =
                    || invalid("unknown attachment: upload it to this conversation first");
                if !valid_attachment_id(&id) {
                    return Err(unknown());
                }
                let attachment = self
                    .store
                    .attachment(conversation_id, &id)
                    .await?
                    .ok_or_else(unknown)?;
                Ok(MessageBody::Attachment { attachment, text })
            }
        }
    }

    // Agents in a conversation.

    /// An agent opens a conversation in the console. Opening an open, unassigned
    /// conversation assigns it to the agent and joins them; otherwise nothing changes.
    pub async fn open_by_agent(
        &self,
        conversation_id: u64,
        agent: &Agent,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if !conversation.is_open() || conversation.assigned_agent.is_some() {
            return Ok(conversation);
        }
        let mut updated = conversation;
        let messages = enlist(&mut updated, agent, self.now_ms());
        let outcome = self
            .commit(conversation_id, Some(updated), messages)
            .await?;
        Ok(outcome.conversation)
    }

    /// An agent joins an open conversation (accepting an invitation, or helping a
    /// colleague). If nobody is assigned, the agent is.
    pub async fn join(
        &self,
        conversation_id: u64,
        agent: &Agent,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if !conversation.is_open() {
            return Err(invalid("this conversation is resolved"));
        }
        let mut updated = conversation.clone();
        let messages = enlist(&mut updated, agent, self.now_ms());
        if updated == conversation {
            return Ok(conversation);
        }
        let outcome = self
            .commit(conversation_id, Some(updated), messages)
            .await?;
        Ok(outcome.conversation)
    }

    /// An agent leaves a conversation. If they were assigned, the conversation passes to
    /// the longest-standing remaining participant, or back to unassigned.
    pub async fn leave(
        &self,
        conversation_id: u64,
        agent: &Agent,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if !conversation.has_participant(agent.id) {
            return Ok(conversation);
        }
        let now = self.now_ms();
        let mut updated = conversation;
        updated.participants.retain(|&id| id != agent.id);
        updated.updated_ms = now;
        let mut messages = vec![NewMessage::event(
            SystemEvent::AgentLeft {
                agent_id: agent.id,
                name: agent.name.clone(),
            },
            now,
        )];
        if updated.assigned_agent == Some(agent.id) {
            updated.assigned_agent = updated.participants.first().copied();
            if let Some(next) = updated.assigned_agent {
                // An agent deleted since they joined keeps their id in the event; the
                // console shows ids it cannot resolve as such.
                let name = self
                    .store
                    .agent(next)
                    .await?
                    .map(|a| a.name)
                    .unwrap_or_default();
                messages.push(NewMessage::event(
                    SystemEvent::Assigned {
                        agent_id: next,
                        name,
                    },
                    now,
                ));
            }
        }
        let outcome = self
            .commit(conversation_id, Some(updated), messages)
            .await?;
        Ok(outcome.conversation)
    }

    /// `by` invites a colleague into an open conversation; the colleague joins with
    /// [`Conversations::join`]. The invitee must be an active agent with access to the site.
    pub async fn invite(
        &self,
        conversation_id: u64,
        by: &Agent,
        invitee: &Agent,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, by)?;
        if !invitee.can_access(&conversation.site) {
            return Err(invalid(&format!(
                "{} has no access to this site",
                invitee.name
            )));
        }
        if !conversation.is_open() {
            return Err(invalid("this conversation is resolved"));
        }
        if conversation.has_participant(invitee.id) {
            return Err(invalid(&format!(
                "{} is already in this conversation",
                invitee.name
            )));
        }
        if conversation.invited.contains(&invitee.id) {
            return Ok(conversation);
        }
        let now = self.now_ms();
        let mut updated = conversation;
        updated.invited.push(invitee.id);
        updated.updated_ms = now;
        let event = SystemEvent::AgentInvited {
            agent_id: invitee.id,
            name: invitee.name.clone(),
            by: by.id,
        };
        let outcome = self
            .commit(
                conversation_id,
                Some(updated),
                vec![NewMessage::event(event, now)],
            )
            .await?;
        Ok(outcome.conversation)
    }

    // State.

    /// Resolves a conversation. Only the assigned agent, an admin or the owner may (an
    /// unassigned conversation therefore needs an admin, or someone to open it first).
    /// Resolving a resolved conversation changes nothing.
    pub async fn resolve(
        &self,
        conversation_id: u64,
        agent: &Agent,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if conversation.assigned_agent != Some(agent.id) && !agent.role.is_admin() {
            return Err(ConversationError::Forbidden(
                "only the assigned agent, an admin or the owner may resolve this conversation"
                    .to_string(),
            ));
        }
        if !conversation.is_open() {
            return Ok(conversation);
        }
        let now = self.now_ms();
        let mut updated = conversation;
        updated.state = ConversationState::Resolved;
        updated.resolved_ms = Some(now);
        updated.updated_ms = now;
        let event = SystemEvent::Resolved { by: Some(agent.id) };
        let outcome = self
            .commit(
                conversation_id,
                Some(updated),
                vec![NewMessage::event(event, now)],
            )
            .await?;
        Ok(outcome.conversation)
    }

    /// Reopens a resolved conversation. Any agent with access to the site may; reopening an
    /// open conversation changes nothing.
    pub async fn reopen(
        &self,
        conversation_id: u64,
        agent: &Agent,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if conversation.is_open() {
            return Ok(conversation);
        }
        let now = self.now_ms();
        let mut updated = conversation;
        updated.state = ConversationState::Open;
        updated.resolved_ms = None;
        updated.updated_ms = now;
        let outcome = self
            .commit(
                conversation_id,
                Some(updated),
                vec![NewMessage::event(SystemEvent::Reopened, now)],
            )
            .await?;
        Ok(outcome.conversation)
    }

    /// The visitor rates a resolved conversation from 1 to 5, with an optional comment.
    ///
    /// Rating again replaces the earlier rating (the visitor may change their mind while the
    /// widget still shows the form); every rating appends a [`SystemEvent::Rated`] event, so
    /// the history keeps each one. An open conversation cannot be rated.
    pub async fn rate(
        &self,
        conversation_id: u64,
        visitor: VisitorRef<'_>,
        score: u8,
        comment: Option<&str>,
    ) -> Result<Conversation, ConversationError> {
        self.ensure_not_blocked(visitor)?;
        if !(1..=5).contains(&score) {
            return Err(invalid("a rating is a score from 1 to 5"));
        }
        let comment = clean_optional(comment, MAX_COMMENT_CHARS, "a comment")?;
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_visitor(&conversation, visitor)?;
        if conversation.is_open() {
            return Err(invalid("only a resolved conversation can be rated"));
        }
        let now = self.now_ms();
        let mut updated = conversation;
        updated.rating = Some(Rating {
            score,
            comment,
            at_ms: now,
        });
        updated.updated_ms = now;
        let outcome = self
            .commit(
                conversation_id,
                Some(updated),
                vec![NewMessage::event(SystemEvent::Rated { score }, now)],
            )
            .await?;
        Ok(outcome.conversation)
    }

    /// Replaces a conversation's tags. Tags are trimmed and lowercased, duplicates and empty
    /// entries dropped; each is at most 32 characters and there are at most 20.
    pub async fn set_tags(
        &self,
        conversation_id: u64,
        agent: &Agent,
        tags: &[String],
    ) -> Result<Conversation, ConversationError> {
        let tags = normalize_tags(tags)?;
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_agent(&conversation.site, agent)?;
        if conversation.tags == tags {
            return Ok(conversation);
        }
        let mut updated = conversation;
        updated.tags = tags;
        updated.updated_ms = self.now_ms();
        let outcome = self
            .commit(conversation_id, Some(updated), Vec::new())
            .await?;
        Ok(outcome.conversation)
    }

    /// Records that `reader` has read the conversation up to `seq` (capped at the newest
    /// message). Read marks only move forward; a mark that would not move writes nothing.
    pub async fn mark_read(
        &self,
        conversation_id: u64,
        reader: Party<'_>,
        seq: u64,
    ) -> Result<Conversation, ConversationError> {
        let _lock = self.lock(conversation_id).lock().await;
        let conversation = self.load(conversation_id).await?;
        check_party(&conversation, reader)?;
        let seq = seq.min(conversation.last_seq);
        let mut updated = conversation.clone();
        let moved = match reader {
            Party::Visitor(_) if seq > updated.visitor_read_seq => {
                updated.visitor_read_seq = seq;
                true
            }
            Party::Visitor(_) => false,
            Party::Agent(agent) => updated.set_agent_read(agent.id, seq),
        };
        if !moved {
            return Ok(conversation);
        }
        updated.updated_ms = self.now_ms();
        let outcome = self
            .commit(conversation_id, Some(updated), Vec::new())
            .await?;
        Ok(outcome.conversation)
    }

    /// Publishes that a party started or stopped typing. Nothing is stored; the access
    /// check is the same as for writing.
    pub async fn typing(
        &self,
        conversation_id: u64,
        who: Party<'_>,
        typing: bool,
    ) -> Result<(), ConversationError> {
        let conversation = self.load(conversation_id).await?;
        check_party(&conversation, who)?;
        let author = match who {
            Party::Visitor(visitor) => {
                self.ensure_not_blocked(visitor)?;
                Author::Visitor
            }
            Party::Agent(agent) => author_of(agent),
        };
        let _ = self.events.send(ConversationEvent::Typing {
            conversation_id,
            site: conversation.site,
            visitor_id: conversation.visitor_id,
            who: author,
            typing,
        });
        Ok(())
    }

    /// The visitor left the site. Each of their open conversations in which they wrote and
    /// no agent has answered yet becomes missed ([`SystemEvent::Missed`]). Returns the
    /// conversations that changed.
    pub async fn visitor_left(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<Conversation>, ConversationError> {
        let unanswered = |c: &Conversation| {
            c.is_open()
                && !c.missed
                && c.first_agent_reply_ms.is_none()
                && c.last_visitor_message_ms.is_some()
        };
        let candidates = self
            .store
            .conversations_of_visitor(site, visitor_id)
            .await?;
        let mut changed = Vec::new();
        for candidate in candidates.into_iter().filter(|c| unanswered(c)) {
            let _lock = self.lock(candidate.id).lock().await;
            // An agent may have answered between the scan and the lock.
            let conversation = self.load(candidate.id).await?;
            if !unanswered(&conversation) {
                continue;
            }
            let now = self.now_ms();
            let mut updated = conversation;
            updated.missed = true;
            updated.updated_ms = now;
            let outcome = self
                .commit(
                    updated.id,
                    Some(updated),
                    vec![NewMessage::event(SystemEvent::Missed, now)],
                )
                .await?;
            changed.push(outcome.conversation);
        }
        Ok(changed)
    }

    // Blocking.

    /// Blocks a visitor of a site, and optionally the address they use. A blocked visitor
    /// cannot start or continue chats and gets no trigger messages. Their open conversations
    /// get a [`SystemEvent::VisitorBlocked`] event (agents only). Blocking again replaces
    /// the earlier block.
    pub async fn block(
        &self,
        site: &str,
        visitor_id: &str,
        also_ip: Option<IpAddr>,
        by: &Agent,
        reason: Option<&str>,
    ) -> Result<Block, ConversationError> {
        check_agent(site, by)?;
        validate_visitor_id(visitor_id)?;
        let reason = clean_optional(reason, MAX_REASON_CHARS, "the reason")?;
        let now = self.now_ms();
        let block = Block {
            visitor_id: Some(visitor_id.to_string()),
            ip: also_ip.map(|ip| ip.to_canonical().to_string()),
            by: by.id,
            at_ms: now,
            reason,
        };
        self.store.put_block(site, &block).await?;
        {
            let mut blocks = self.blocks.write();
            let site_blocks = blocks.entry(site.to_string()).or_default();
            site_blocks
                .visitors
                .insert(visitor_id.to_string(), block.clone());
            *site_blocks = SiteBlocks::from_blocks(site_blocks.visitors.values().cloned());
        }
        let _ = self.events.send(ConversationEvent::BlockChanged {
            site: site.to_string(),
            visitor_id: visitor_id.to_string(),
            blocked: true,
        });
        let conversations = self
            .store
            .conversations_of_visitor(site, visitor_id)
            .await?;
        for open in conversations.into_iter().filter(Conversation::is_open) {
            let _lock = self.lock(open.id).lock().await;
            let event = NewMessage::event(SystemEvent::VisitorBlocked, self.now_ms());
            self.commit(open.id, None, vec![event]).await?;
        }
        Ok(block)
    }

    /// Lifts a visitor's block (and the address blocked with it). Returns whether there was
    /// one.
    pub async fn unblock(
        &self,
        site: &str,
        visitor_id: &str,
        by: &Agent,
    ) -> Result<bool, ConversationError> {
        check_agent(site, by)?;
        let removed = self.store.remove_block(site, visitor_id).await?;
        {
            let mut blocks = self.blocks.write();
            if let Some(site_blocks) = blocks.get_mut(site) {
                site_blocks.visitors.remove(visitor_id);
                *site_blocks = SiteBlocks::from_blocks(site_blocks.visitors.values().cloned());
            }
        }
        if removed {
            let _ = self.events.send(ConversationEvent::BlockChanged {
                site: site.to_string(),
                visitor_id: visitor_id.to_string(),
                blocked: false,
            });
        }
        Ok(removed)
    }

    /// Whether a visitor is blocked on a site, by id or by address. An in-memory lookup.
    pub fn is_blocked(&self, site: &str, visitor_id: &str, ip: Option<IpAddr>) -> bool {
        let blocks = self.blocks.read();
        let Some(site_blocks) = blocks.get(site) else {
            return false;
        };
        site_blocks.visitors.contains_key(visitor_id)
            || ip.is_some_and(|ip| site_blocks.ips.contains(&ip.to_canonical()))
    }

    /// Every block of a site, for the console.
    pub async fn blocks(&self, site: &str, agent: &Agent) -> Result<Vec<Block>, ConversationError> {
        check_agent(site, agent)?;
        Ok(self.store.blocks(site).await?)
    }

    fn ensure_not_blocked(&self, visitor: VisitorRef<'_>) -> Result<(), ConversationError> {
        if self.is_blocked(visitor.site, visitor.visitor_id, visitor.ip) {
            Err(ConversationError::Blocked)
        } else {
            Ok(())
        }
    }

    // Visitor credentials.

    /// Registers the secret credential a visitor's widget generated for itself (see
    /// [`validate_visitor_credential`] for its form). Only its SHA-256 hash is stored, and a
    /// stored credential is never replaced, so knowing a visitor id is not enough to take over
    /// their conversations.
    ///
    /// Safe to repeat: the widget keeps its secret before asking, so a request whose answer
    /// was lost (the page was left while it was in flight) is simply sent again with the same
    /// secret, and answered [`CredentialIssue::Repeated`]. A different secret for a visitor
    /// that has one is [`CredentialIssue::Conflict`]: that browser lost its credential and
    /// needs a new visitor id. Two requests racing for the same visitor are decided by the
    /// store's insert-if-absent; the loser compares its hash with the winner's. Hashes are
    /// compared in constant time.
    ///
    /// A blocked visitor (by id, or by `visitor.ip`) is refused with
    /// [`ConversationError::Blocked`], and nothing is stored.
    pub async fn issue_visitor_credential(
        &self,
        visitor: VisitorRef<'_>,
        credential: &str,
    ) -> Result<CredentialIssue, ConversationError> {
        let VisitorRef {
            site, visitor_id, ..
        } = visitor;
        validate_visitor_id(visitor_id)?;
        validate_visitor_credential(credential)?;
        self.ensure_not_blocked(visitor)?;
        let hash = hash_token(credential);
        let compare = |known: &str| {
            if constant_time_eq(known.as_bytes(), hash.as_bytes()) {
                CredentialIssue::Repeated
            } else {
                CredentialIssue::Conflict
            }
        };
        if let Some(known) = self.cached_credential(site, visitor_id) {
            return Ok(compare(&known));
        }
        // Read before writing: a repeat then costs no write transaction.
        let stored = match self.store.visitor_credential(site, visitor_id).await? {
            Some(stored) => stored,
            None if self
                .store
                .put_visitor_credential(site, visitor_id, &hash)
                .await? =>
            {
                self.cache_credential(site, visitor_id, hash);
                return Ok(CredentialIssue::Created);
            }
            // Another request stored one between the read and the write (a repeat of this
            // one, or another browser's): the store kept the first, compare with it.
            None => self
                .store
                .visitor_credential(site, visitor_id)
                .await?
                .ok_or_else(|| {
                    // Credentials are never deleted: this store lost a record it had just
                    // refused to overwrite.
                    ConversationError::Store(StoreError::Db(format!(
                        "the credential of visitor {visitor_id:?} vanished"
                    )))
                })?,
        };
        let outcome = compare(&stored);
        if outcome == CredentialIssue::Repeated {
            self.cache_credential(site, visitor_id, stored);
        }
        Ok(outcome)
    }

    /// Whether `token` is the visitor's credential. Hashes are compared in constant time
    /// (the hash of a guess reveals nothing useful anyway); hashes that verified once are
    /// cached, so reconnects do not read the store.
    pub async fn verify_visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
        token: &str,
    ) -> Result<bool, ConversationError> {
        if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN {
            return Ok(false);
        }
        let hash = hash_token(token);
        if let Some(known) = self.cached_credential(site, visitor_id) {
            return Ok(constant_time_eq(known.as_bytes(), hash.as_bytes()));
        }
        let Some(stored) = self.store.visitor_credential(site, visitor_id).await? else {
            return Ok(false);
        };
        let valid = constant_time_eq(stored.as_bytes(), hash.as_bytes());
        if valid {
            self.cache_credential(site, visitor_id, stored);
        }
        Ok(valid)
    }

    fn cached_credential(&self, site: &str, visitor_id: &str) -> Option<String> {
        self.credentials
            .read()
            .get(site)
            .and_then(|visitors| visitors.get(visitor_id))
            .cloned()
    }

    fn cache_credential(&self, site: &str, visitor_id: &str, hash: String) {
        let mut cache = self.credentials.write();
        if cache.values().map(HashMap::len).sum::<usize>() >= CREDENTIAL_CACHE_LIMIT {
            cache.clear();
        }
        cache
            .entry(site.to_string())
            .or_default()
            .insert(visitor_id.to_string(), hash);
    }

    // Attachments.

    /// Stores a file sent in a conversation by one of its parties (a blocked visitor may
    /// not). Post it afterwards with [`Content::Attachment`].
    pub async fn upload_attachment(
        &self,
        conversation_id: u64,
        sender: Party<'_>,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
    ) -> Result<AttachmentMeta, ConversationError> {
        let conversation = self.load(conversation_id).await?;
        check_party(&conversation, sender)?;
        if let Party::Visitor(visitor) = sender {
            self.ensure_not_blocked(visitor)?;
        }
        self.attachments
            .store_attachment(conversation_id, name, mime, bytes)
            .await
    }

    /// An attachment of a conversation, for one of its parties only.
    pub async fn attachment(
        &self,
        conversation_id: u64,
        attachment_id: &str,
        reader: Party<'_>,
    ) -> Result<(AttachmentMeta, Vec<u8>), ConversationError> {
        let conversation = self.load(conversation_id).await?;
        check_party(&conversation, reader)?;
        self.attachments
            .read_attachment(conversation_id, attachment_id)
            .await
    }

    // Reading.

    /// A conversation by id, without an access check: for callers that have made their own
    /// (or need none, like a background task). [`Conversations::conversation_for`] checks.
    pub async fn conversation(&self, id: u64) -> Result<Conversation, ConversationError> {
        self.load(id).await
    }

    /// A conversation for a party: the visitor it belongs to, or an agent with access to
    /// its site.
    pub async fn conversation_for(
        &self,
        id: u64,
        reader: Party<'_>,
    ) -> Result<Conversation, ConversationError> {
        let conversation = self.load(id).await?;
        check_party(&conversation, reader)?;
        Ok(conversation)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) messages after `after_seq`, in seq order. A
    /// visitor receives only the messages meant for them (no notes, no internal events), so
    /// their seqs can have gaps; resuming after the last seq received is still exact.
    pub async fn messages(
        &self,
        conversation_id: u64,
        reader: Party<'_>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, ConversationError> {
        let conversation = self.load(conversation_id).await?;
        check_party(&conversation, reader)?;
        let limit = limit.min(MAX_PAGE);
        let for_visitor = matches!(reader, Party::Visitor(_));
        let mut out = Vec::new();
        let mut cursor = after_seq;
        while out.len() < limit {
            let batch = self
                .store
                .messages(conversation_id, cursor, limit - out.len())
                .await?;
            let Some(last) = batch.last() else { break };
            cursor = last.seq;
            let exhausted = batch.len() < limit - out.len();
            out.extend(
                batch
                    .into_iter()
                    .filter(|m| !for_visitor || m.visible_to_visitor()),
            );
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// A visitor's conversations, newest first: for the visitor themself (their widget's
    /// history) or for an agent with access to the site (the visitor card's past
    /// conversations).
    pub async fn conversations_of_visitor(
        &self,
        site: &str,
        visitor_id: &str,
        reader: Party<'_>,
    ) -> Result<Vec<Conversation>, ConversationError> {
        match reader {
            Party::Visitor(visitor) => {
                if visitor.site != site || visitor.visitor_id != visitor_id {
                    return Err(ConversationError::Forbidden(
                        "a visitor can only list their own conversations".to_string(),
                    ));
                }
            }
            Party::Agent(agent) => check_agent(site, agent)?,
        }
        let mut all = self
            .store
            .conversations_of_visitor(site, visitor_id)
            .await?;
        all.reverse();
        Ok(all)
    }

    /// The agent's inbox over the given sites: conversations passing `filter`, newest
    /// activity first ([`Conversation::last_message_ms`], then id).
    ///
    /// Every requested site must be one the agent can access. This reads every conversation
    /// of the sites and filters in memory, and the text search scans the messages of each
    /// conversation that passed the other filters: fine for the conversation counts of a
    /// self-hosted install; an index (open conversations, a search index) is the next step
    /// if inboxes grow large.
    pub async fn inbox(
        &self,
        agent: &Agent,
        site_keys: &[String],
        filter: &InboxFilter,
    ) -> Result<Vec<Conversation>, ConversationError> {
        let mut out = Vec::new();
        for site in site_keys {
            check_agent(site, agent)?;
            let conversations = self.store.conversations_of_site(site).await?;
            out.extend(
                conversations
                    .into_iter()
                    .filter(|c| filter.matches(c, agent.id)),
            );
        }
        out.sort_by(|a, b| {
            b.last_message_ms
                .cmp(&a.last_message_ms)
                .then(b.id.cmp(&a.id))
        });
        if let Some(needle) = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let needle = needle.to_lowercase();
            let mut found = Vec::new();
            for conversation in out {
                if filter.limit.is_some_and(|limit| found.len() >= limit) {
                    break;
                }
                if self.mentions(&conversation, &needle).await? {
                    found.push(conversation);
                }
            }
            out = found;
        }
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Whether the conversation's subject, pre-chat details, attachment names or message
    /// texts contain `needle` (already lowercase).
    async fn mentions(
        &self,
        conversation: &Conversation,
        needle: &str,
    ) -> Result<bool, ConversationError> {
        let contains = |text: &str| text.to_lowercase().contains(needle);
        let prechat = conversation.prechat.as_ref();
        let header = [
            conversation.subject.as_deref(),
            prechat.and_then(|p| p.name.as_deref()),
            prechat.and_then(|p| p.email.as_deref()),
        ];
        if header.into_iter().flatten().any(contains) {
            return Ok(true);
        }
        let messages = self.store.messages(conversation.id, 0, usize::MAX).await?;
        Ok(messages.iter().any(|m| {
            m.text().is_some_and(contains)
                || matches!(&m.body, MessageBody::Attachment { attachment, .. } if contains(&attachment.name))
        }))
    }

    /// How many conversations each tab holds for the agent over the given sites, and how
    /// many of them have visitor messages the agent has not read.
    pub async fn unread_counts(
        &self,
        agent: &Agent,
        site_keys: &[String],
    ) -> Result<InboxCounts, ConversationError> {
        let mut counts = InboxCounts::default();
        for site in site_keys {
            check_agent(site, agent)?;
            for conversation in self.store.conversations_of_site(site).await? {
                counts.add(&conversation, agent.id);
            }
        }
        Ok(counts)
    }

    // Internals.

    async fn load(&self, id: u64) -> Result<Conversation, ConversationError> {
        self.store
            .conversation(id)
            .await?
            .ok_or_else(|| ConversationError::NotFound("conversation".to_string()))
    }

    /// Writes durably, then publishes. Called with the conversation's lock held, so events
    /// of one conversation go out in seq order.
    async fn commit(
        &self,
        conversation_id: u64,
        conversation: Option<Conversation>,
        messages: Vec<NewMessage>,
    ) -> Result<WriteOutcome, StoreError> {
        let outcome = self
            .store
            .write_conversation(ConversationWrite {
                conversation_id,
                conversation,
                messages,
            })
            .await?;
        if !outcome.duplicate {
            let conversation = Arc::new(outcome.conversation.clone());
            if outcome.messages.is_empty() {
                let _ = self
                    .events
                    .send(ConversationEvent::ConversationChanged { conversation });
            } else {
                for message in &outcome.messages {
                    let _ = self.events.send(ConversationEvent::MessageAdded {
                        conversation: Arc::clone(&conversation),
                        message: Arc::new(message.clone()),
                    });
                }
            }
        }
        Ok(outcome)
    }
}

/// The main message of a write: the last one appended, or the earlier duplicate.
fn last_appended(outcome: WriteOutcome) -> Result<AppendOutcome, StoreError> {
    let WriteOutcome {
        conversation,
        mut messages,
        duplicate,
    } = outcome;
    let message = messages
        .pop()
        .ok_or_else(|| StoreError::Db("a write returned no message".to_string()))?;
    Ok(AppendOutcome {
        message,
        conversation,
        duplicate,
    })
}

/// Makes `agent` a participant of `conversation` (assigning it to them if nobody is
/// assigned, and clearing a pending invitation) and returns the events that record it.
fn enlist(conversation: &mut Conversation, agent: &Agent, now: i64) -> Vec<NewMessage> {
    let mut events = Vec::new();
    if conversation.assigned_agent.is_none() {
        conversation.assigned_agent = Some(agent.id);
        events.push(NewMessage::event(
            SystemEvent::Assigned {
                agent_id: agent.id,
                name: agent.name.clone(),
            },
            now,
        ));
    }
    if !conversation.has_participant(agent.id) {
        conversation.participants.push(agent.id);
        events.push(NewMessage::event(
            SystemEvent::AgentJoined {
                agent_id: agent.id,
                name: agent.name.clone(),
            },
            now,
        ));
    }
    conversation.invited.retain(|&id| id != agent.id);
    if !events.is_empty() {
        conversation.updated_ms = now;
    }
    events
}

fn author_of(agent: &Agent) -> Author {
    Author::Agent {
        id: agent.id,
        name: agent.name.clone(),
    }
}

fn invalid(message: &str) -> ConversationError {
    ConversationError::Invalid(message.to_string())
}

fn check_agent(site: &str, agent: &Agent) -> Result<(), ConversationError> {
    if agent.can_access(site) {
        Ok(())
    } else {
        Err(ConversationError::Forbidden(NO_SITE_ACCESS.to_string()))
    }
}

/// A visitor asking about someone else's conversation learns only that there is no such
/// conversation.
fn check_visitor(
    conversation: &Conversation,
    visitor: VisitorRef<'_>,
) -> Result<(), ConversationError> {
    if conversation.site == visitor.site && conversation.visitor_id == visitor.visitor_id {
        Ok(())
    } else {
        Err(ConversationError::NotFound("conversation".to_string()))
    }
}

fn check_party(conversation: &Conversation, party: Party<'_>) -> Result<(), ConversationError> {
    match party {
        Party::Visitor(visitor) => check_visitor(conversation, visitor),
        Party::Agent(agent) => check_agent(&conversation.site, agent),
    }
}

fn validate_visitor_id(visitor_id: &str) -> Result<(), ConversationError> {
    if visitor_id.is_empty()
        || visitor_id.chars().count() > MAX_VISITOR_ID_CHARS
        || visitor_id.chars().any(char::is_control)
    {
        return Err(invalid("invalid visitor id"));
    }
    Ok(())
}

/// Checks the form of a visitor credential the widget generated: the unpadded base64url
/// encoding (RFC 4648 §5, alphabet `A–Z a–z 0–9 - _`, no `=`) of exactly 32 bytes, that is
/// exactly 43 characters, in canonical form (the unused low 2 bits of the last character are
/// zero, so its last character is one of `AEIMQUYcgkosw048`). The widget fills the 32 bytes
/// with `crypto.getRandomValues`, so a credential carries 256 bits of entropy; the server
/// cannot check randomness, only the length and form.
pub fn validate_visitor_credential(credential: &str) -> Result<(), ConversationError> {
    if credential.len() != VISITOR_CREDENTIAL_CHARS {
        return Err(invalid(&format!(
            "credential: must be exactly {VISITOR_CREDENTIAL_CHARS} characters (32 random bytes \
             as unpadded base64url), got {}",
            credential.chars().count()
        )));
    }
    match URL_SAFE_NO_PAD.decode(credential) {
        Ok(bytes) if bytes.len() == VISITOR_CREDENTIAL_BYTES => Ok(()),
        _ => Err(invalid(
            "credential: must be 32 random bytes as unpadded base64url (only A-Z, a-z, 0-9, \
             '-' and '_', in canonical form)",
        )),
    }
}

/// Drops control characters but line breaks and tabs, which people type in messages.
fn strip_controls(text: &str, keep_lines: bool) -> String {
    text.chars()
        .filter(|&c| !c.is_control() || (keep_lines && (c == '\n' || c == '\t')))
        .collect()
}

/// A message text: control characters (but line breaks and tabs) dropped, trimmed, 1 to
/// [`MAX_TEXT_CHARS`] characters, card numbers masked.
fn clean_text(text: &str) -> Result<String, ConversationError> {
    let text = strip_controls(text, true);
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("a message cannot be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid("a message can be at most 5000 characters"));
    }
    Ok(mask_card_numbers(text).into_owned())
}

/// An optional one-line field: control characters dropped, trimmed, `None` when empty, at
/// most `max` characters, card numbers masked.
fn clean_optional(
    text: Option<&str>,
    max: usize,
    what: &str,
) -> Result<Option<String>, ConversationError> {
    let Some(text) = text else { return Ok(None) };
    let text = strip_controls(text, false);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > max {
        return Err(ConversationError::Invalid(format!(
            "{what} can be at most {max} characters"
        )));
    }
    Ok(Some(mask_card_numbers(text).into_owned()))
}

fn clean_client_id(client_id: Option<&str>) -> Result<Option<String>, ConversationError> {
    let Some(id) = client_id.map(str::trim).filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    if id.chars().count() > MAX_CLIENT_ID_CHARS || id.chars().any(char::is_control) {
        return Err(invalid("invalid client id"));
    }
    Ok(Some(id.to_string()))
}

fn clean_details(details: StartDetails) -> Result<StartDetails, ConversationError> {
    let prechat = match details.prechat {
        Some(p) => {
            let name = clean_optional(p.name.as_deref(), MAX_NAME_CHARS, "the name")?;
            let email = clean_optional(p.email.as_deref(), MAX_EMAIL_CHARS, "the email")?;
            if email.as_deref().is_some_and(|e| !e.contains('@')) {
                return Err(invalid("the email address is not valid"));
            }
            (name.is_some() || email.is_some()).then_some(PreChat { name, email })
        }
        None => None,
    };
    Ok(StartDetails {
        subject: clean_optional(details.subject.as_deref(), MAX_SUBJECT_CHARS, "the subject")?,
        page_url: clean_optional(details.page_url.as_deref(), MAX_URL_CHARS, "the page URL")?,
        prechat,
    })
}

/// Tags as stored: trimmed, lowercase, without duplicates or empty entries, in the order
/// given.
fn normalize_tags(tags: &[String]) -> Result<Vec<String>, ConversationError> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || out.contains(&tag) {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(ConversationError::Invalid(format!(
                "tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
            )));
        }
        if tag.chars().any(char::is_control) {
            return Err(ConversationError::Invalid(format!(
                "tag {tag:?} contains control characters"
            )));
        }
        out.push(tag);
    }
    if out.len() > MAX_TAGS {
        return Err(ConversationError::Invalid(format!(
            "a conversation can have at most {MAX_TAGS} tags"
        )));
    }
    Ok(out)
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
