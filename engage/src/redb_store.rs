//! The embedded store: one redb database file, `porchlight.redb`, in the data directory.
//!
//! Every record is JSON bytes under a simple key, as a Redis store would keep it. Writes run
//! on tokio's blocking pool because a redb commit fsyncs; reads are short B-tree lookups
//! served from redb's cache and run inline on the calling task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::attachments::AttachmentMeta;
use crate::contacts::{NewVisitorNote, VisitorNote};
use crate::conversations::{
    Block, Conversation, ConversationWrite, Message, NewConversation, WriteOutcome,
};
use crate::error::StoreError;
use crate::model::{
    Agent, AgentStatus, ApiTokenRecord, NewAgentRecord, NewApiTokenRecord, Profile, ProfileRecord,
    SessionRecord, Site,
};
use crate::saved_replies::{NewSavedReply, SavedReply};
use crate::store::Store;
use crate::triggers::{FireRecord, Funnel, StatsDelta, StatsRow, Trigger};
use crate::webhooks::{Delivery, MAX_DELIVERIES_PER_SITE, NewWebhook, Webhook};
use crate::widget::{Lead, NewLead, WidgetSettings};

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "porchlight.redb";

/// The layout version this code reads and writes. A file with a higher version was written
/// by a newer Porchlight, and opening it is refused rather than risking a misread.
const SCHEMA_VERSION: u64 = 1;

/// (site key, visitor id) → JSON [`Profile`].
const PROFILES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("profiles");
/// site key → highest visitor number saved for that site.
const VISITOR_NUMBERS: TableDefinition<&str, u32> = TableDefinition::new("visitor_numbers");
/// agent id → JSON [`Agent`].
const AGENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("agents");
/// lowercase email → agent id.
const AGENT_EMAILS: TableDefinition<&str, u64> = TableDefinition::new("agent_emails");
/// session token hash → JSON [`SessionRecord`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// API token id → JSON [`ApiTokenRecord`].
const API_TOKENS: TableDefinition<u64, &[u8]> = TableDefinition::new("api_tokens");
/// API token hash → API token id.
const API_TOKEN_HASHES: TableDefinition<&str, u64> = TableDefinition::new("api_token_hashes");
/// site key → JSON [`Site`].
const SITES: TableDefinition<&str, &[u8]> = TableDefinition::new("sites");
/// conversation id → JSON [`Conversation`].
const CONVERSATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("conversations");
/// (conversation id, seq) → JSON [`Message`]. The tuple order keeps a conversation's messages
/// together and in seq order, so a resume is one range scan.
const MESSAGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("messages");
/// (conversation id, sender's client id) → seq: the idempotency index of appends.
const MESSAGE_CLIENT_IDS: TableDefinition<(u64, &str), u64> =
    TableDefinition::new("message_client_ids");
/// (site key, visitor id, conversation id) → nothing: a visitor's conversations.
const VISITOR_CONVERSATIONS: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("visitor_conversations");
/// (site key, conversation id) → nothing: a site's conversations.
const SITE_CONVERSATIONS: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("site_conversations");
/// (conversation id, attachment id) → JSON [`AttachmentMeta`].
const ATTACHMENTS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("attachments");
/// (site key, visitor id) → lowercase hex SHA-256 of the visitor's credential.
const VISITOR_CREDENTIALS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("visitor_credentials");
/// (site key, block key) → JSON [`Block`]; the block key is `visitor:<id>` or `ip:<address>`.
const BLOCKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("blocks");
/// Counters and the schema version.
/// (site, webhook id) to the webhook.
const WEBHOOKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("webhooks");
/// (site, log sequence number) to one delivery attempt; the oldest are trimmed.
const WEBHOOK_DELIVERIES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("webhook_deliveries");

/// Widget settings by site key (JSON `WidgetSettings`); absent means the defaults.
const WIDGET_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("widget_settings");
/// Leads by (site key, lead id).
const LEADS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("leads");
/// (site key, saved reply id) → JSON [`SavedReply`].
const SAVED_REPLIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("saved_replies");
/// (site key, shortcut) → saved reply id: shortcuts are unique per site.
const SAVED_REPLY_SHORTCUTS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("saved_reply_shortcuts");
/// (site key, visitor id, note id) → JSON [`VisitorNote`].
const VISITOR_NOTES: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("visitor_notes");
/// (site key, visitor id) → JSON array of the contact's tags.
const CONTACT_TAGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("contact_tags");
/// agent id → JSON [`AgentStatus`].
const AGENT_STATUSES: TableDefinition<u64, &[u8]> = TableDefinition::new("agent_statuses");
/// (site key, trigger id) → JSON [`Trigger`].
const TRIGGERS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("triggers");
/// (site key, visitor id, trigger id) → JSON [`FireRecord`]: the latest fire.
const TRIGGER_FIRES: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("trigger_fires");
/// (site key, trigger id, UTC day, variant key or "" for the control group) → JSON
/// [`Funnel`] counters. Variant keys are never empty, so "" cannot collide.
const TRIGGER_STATS: TableDefinition<(&str, u64, u32, &str), &[u8]> =
    TableDefinition::new("trigger_stats");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_NEXT_AGENT_ID: &str = "next_agent_id";
const META_NEXT_API_TOKEN_ID: &str = "next_api_token_id";
const META_NEXT_CONVERSATION_ID: &str = "next_conversation_id";
const META_NEXT_WEBHOOK_ID: &str = "next_webhook_id";
const META_NEXT_DELIVERY_SEQ: &str = "next_delivery_seq";
const META_NEXT_LEAD_ID: &str = "next_lead_id";
const META_NEXT_TRIGGER_ID: &str = "next_trigger_id";
const META_NEXT_SAVED_REPLY_ID: &str = "next_saved_reply_id";
const META_NEXT_VISITOR_NOTE_ID: &str = "next_visitor_note_id";

/// The embedded [`Store`].
///
/// Cloning is cheap and every clone shares the one open database.
#[derive(Debug, Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    data_dir: PathBuf,
}

impl RedbStore {
    /// Opens (creating if needed) the data directory and its database file, on the blocking
    /// pool because opening creates files and fsyncs.
    ///
    /// If another process has the file open the error is [`StoreError::InUse`], whose
    /// message names the data directory.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(data_dir))
            .await
            .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
    }

    /// [`RedbStore::open`] for callers outside an async runtime (command-line tools, tests).
    pub fn open_blocking(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DB_FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(data_dir.clone()),
            // redb reports a file whose header it does not recognise as InvalidData; say what
            // that means instead of passing on the bare "invalid data".
            DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                StoreError::Corrupt(format!(
                    "{} is not a porchlight database, or is damaged ({io})",
                    path.display()
                ))
            }
            other => match db_err(other) {
                StoreError::Io(msg) => {
                    StoreError::Io(format!("cannot open {}: {msg}", path.display()))
                }
                StoreError::Corrupt(msg) => {
                    StoreError::Corrupt(format!("{} is damaged: {msg}", path.display()))
                }
                err => err,
            },
        })?;
        let store = Self {
            db: Arc::new(db),
            data_dir,
        };
        store.init_schema()?;
        Ok(store)
    }

    /// The data directory this store was opened in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Creates every table, so reads never meet a missing table, and checks or records the
    /// schema version.
    fn init_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().db()?;
        {
            txn.open_table(PROFILES).db()?;
            txn.open_table(VISITOR_NUMBERS).db()?;
            txn.open_table(AGENTS).db()?;
            txn.open_table(AGENT_EMAILS).db()?;
            txn.open_table(SESSIONS).db()?;
            txn.open_table(API_TOKENS).db()?;
            txn.open_table(API_TOKEN_HASHES).db()?;
            txn.open_table(SITES).db()?;
            txn.open_table(CONVERSATIONS).db()?;
            txn.open_table(MESSAGES).db()?;
            txn.open_table(MESSAGE_CLIENT_IDS).db()?;
            txn.open_table(VISITOR_CONVERSATIONS).db()?;
            txn.open_table(SITE_CONVERSATIONS).db()?;
            txn.open_table(ATTACHMENTS).db()?;
            txn.open_table(VISITOR_CREDENTIALS).db()?;
            txn.open_table(BLOCKS).db()?;
            txn.open_table(WEBHOOKS).db()?;
            txn.open_table(WEBHOOK_DELIVERIES).db()?;
            txn.open_table(WIDGET_SETTINGS).db()?;
            txn.open_table(LEADS).db()?;
            txn.open_table(SAVED_REPLIES).db()?;
            txn.open_table(SAVED_REPLY_SHORTCUTS).db()?;
            txn.open_table(VISITOR_NOTES).db()?;
            txn.open_table(CONTACT_TAGS).db()?;
            txn.open_table(AGENT_STATUSES).db()?;
            txn.open_table(TRIGGERS).db()?;
            txn.open_table(TRIGGER_FIRES).db()?;
            txn.open_table(TRIGGER_STATS).db()?;
            let mut meta = txn.open_table(META).db()?;
            let version = meta.get(META_SCHEMA_VERSION).db()?.map(|g| g.value());
            match version {
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).db()?;
                }
                Some(v) if v <= SCHEMA_VERSION => {}
                Some(v) => {
                    return Err(StoreError::Db(format!(
                        "{} has schema version {v}, but this porchlight understands only up to {SCHEMA_VERSION}; upgrade porchlight",
                        self.data_dir.join(DB_FILE_NAME).display()
                    )));
                }
            }
        }
        txn.commit().db()
    }

    /// Runs `f` in one write transaction on the blocking pool and commits if it succeeds.
    /// An error from `f` drops the transaction uncommitted, which aborts it.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().db()?;
            let out = f(&txn)?;
            txn.commit().db()?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
    }

    /// [`RedbStore::write`] with the commit's durability stated rather than assumed: the
    /// commit fsyncs before it returns (redb's `Durability::Immediate`, also its default).
    /// Conversation writes use this because a message is acknowledged to its sender as soon
    /// as the write returns.
    async fn write_durable<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().db()?;
            txn.set_durability(Durability::Immediate);
            let out = f(&txn)?;
            txn.commit().db()?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Db(format!("storage task failed: {e}")))?
    }

    /// Runs `f` in one read transaction on the calling task.
    fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read().db()?;
        f(&txn)
    }
}

/// Converts any redb error into a [`StoreError`], keeping corruption and I/O apart from
/// the rest because an operator acts on them differently.
fn db_err(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        redb::Error::Io(e) => StoreError::Io(e.to_string()),
        other => StoreError::Db(other.to_string()),
    }
}

/// `.db()?` on a redb result, so that redb's types stay out of the public error type.
trait OrDb<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> OrDb<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_err)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Db(format!("cannot encode record: {e}")))
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: &dyn std::fmt::Display,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Decodes every record of a table, in key order, naming a corrupt one by its key.
fn decode_all<K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    what: &str,
) -> Result<Vec<T>, StoreError>
where
    K: redb::Key + 'static,
    for<'a> K::SelfType<'a>: std::fmt::Display,
    T: DeserializeOwned,
{
    let mut out = Vec::new();
    for entry in table.iter().db()? {
        let (key, bytes) = entry.db()?;
        out.push(decode(
            bytes.value(),
            &format_args!("{what} {}", key.value()),
        )?);
    }
    Ok(out)
}

/// Hands out the next id from a counter in the meta table. Ids start at 1 and are never
/// reused, so a deleted token's id cannot come back and name another token.
fn next_id(txn: &WriteTransaction, counter: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).db()?;
    let id = meta.get(counter).db()?.map(|g| g.value()).unwrap_or(1);
    meta.insert(counter, id + 1).db()?;
    Ok(id)
}

fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The key of a block within its site: the visitor id, or the address of an address-only
/// block. The prefixes keep a visitor id from ever colliding with an address.
fn block_key(block: &Block) -> Result<String, StoreError> {
    match (&block.visitor_id, &block.ip) {
        (Some(visitor_id), _) => Ok(visitor_block_key(visitor_id)),
        (None, Some(ip)) => Ok(format!("ip:{ip}")),
        (None, None) => Err(StoreError::Db(
            "a block needs a visitor id or an address".to_string(),
        )),
    }
}

fn visitor_block_key(visitor_id: &str) -> String {
    format!("visitor:{visitor_id}")
}

/// Reads a conversation inside a write transaction, or [`StoreError::NotFound`].
fn stored_conversation(txn: &WriteTransaction, id: u64) -> Result<Conversation, StoreError> {
    let table = txn.open_table(CONVERSATIONS).db()?;
    let guard = table.get(id).db()?;
    match guard {
        Some(g) => decode(g.value(), &format_args!("conversation {id}")),
        None => Err(StoreError::NotFound(format!("conversation {id}"))),
    }
}

/// Refuses a replacement record that was read before the last append or that moves the
/// conversation to another site or visitor (the indexes would no longer find it).
fn check_replacement(stored: &Conversation, new: &Conversation) -> Result<(), StoreError> {
    if new.last_seq != stored.last_seq {
        return Err(StoreError::Conflict(format!(
            "conversation {} changed since it was read (message {} was added); read it again",
            stored.id, stored.last_seq
        )));
    }
    if new.site != stored.site || new.visitor_id != stored.visitor_id {
        return Err(StoreError::Conflict(format!(
            "conversation {} cannot move to another site or visitor",
            stored.id
        )));
    }
    Ok(())
}

/// Reads conversations by id from inside a read transaction.
fn load_conversations(
    txn: &ReadTransaction,
    ids: impl IntoIterator<Item = u64>,
) -> Result<Vec<Conversation>, StoreError> {
    let table = txn.open_table(CONVERSATIONS).db()?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(g) = table.get(id).db()? {
            out.push(decode(g.value(), &format_args!("conversation {id}"))?);
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for RedbStore {
    async fn load_profile(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<Profile>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(PROFILES).db()?;
            let guard = table.get((site, visitor_id)).db()?;
            guard
                .map(|g| decode(g.value(), &format_args!("profile {site}/{visitor_id}")))
                .transpose()
        })
    }

    async fn save_profiles(&self, batch: &[ProfileRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.to_vec();
        self.write(move |txn| {
            let mut profiles = txn.open_table(PROFILES).db()?;
            let mut maxima: HashMap<&str, u32> = HashMap::new();
            for record in &batch {
                let bytes = encode(&record.profile)?;
                profiles
                    .insert(
                        (record.site.as_str(), record.visitor_id.as_str()),
                        bytes.as_slice(),
                    )
                    .db()?;
                let max = maxima.entry(record.site.as_str()).or_insert(0);
                *max = (*max).max(record.profile.number);
            }
            let mut numbers = txn.open_table(VISITOR_NUMBERS).db()?;
            for (site, max) in maxima {
                let current = numbers.get(site).db()?.map(|g| g.value()).unwrap_or(0);
                if max > current {
                    numbers.insert(site, max).db()?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn max_visitor_numbers(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(VISITOR_NUMBERS).db()?;
            let mut out = Vec::new();
            for entry in table.iter().db()? {
                let (site, max) = entry.db()?;
                out.push((site.value().to_string(), max.value()));
            }
            Ok(out)
        })
    }

    async fn create_agent(&self, agent: NewAgentRecord) -> Result<Agent, StoreError> {
        self.write(move |txn| {
            let key = email_key(&agent.email);
            let mut emails = txn.open_table(AGENT_EMAILS).db()?;
            if emails.get(key.as_str()).db()?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "an agent with email {} already exists",
                    agent.email.trim()
                )));
            }
            let id = next_id(txn, META_NEXT_AGENT_ID)?;
            let agent = agent.with_id(id);
            let mut agents = txn.open_table(AGENTS).db()?;
            agents.insert(id, encode(&agent)?.as_slice()).db()?;
            emails.insert(key.as_str(), id).db()?;
            Ok(agent)
        })
        .await
    }

    async fn agent(&self, id: u64) -> Result<Option<Agent>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(AGENTS).db()?;
            let guard = table.get(id).db()?;
            guard
                .map(|g| decode(g.value(), &format_args!("agent {id}")))
                .transpose()
        })
    }

    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>, StoreError> {
        let key = email_key(email);
        self.read(|txn| {
            let emails = txn.open_table(AGENT_EMAILS).db()?;
            let Some(id) = emails.get(key.as_str()).db()?.map(|g| g.value()) else {
                return Ok(None);
            };
            let agents = txn.open_table(AGENTS).db()?;
            let guard = agents.get(id).db()?;
            guard
                .map(|g| decode(g.value(), &format_args!("agent {id}")))
                .transpose()
        })
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(AGENTS).db()?;
            decode_all(&table, "agent")
        })
    }

    async fn update_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let agent = agent.clone();
        self.write(move |txn| {
            let mut agents = txn.open_table(AGENTS).db()?;
            let old: Agent = match agents.get(agent.id).db()? {
                Some(g) => decode(g.value(), &format_args!("agent {}", agent.id))?,
                None => return Err(StoreError::NotFound(format!("agent {}", agent.id))),
            };
            let (old_key, new_key) = (email_key(&old.email), email_key(&agent.email));
            if old_key != new_key {
                let mut emails = txn.open_table(AGENT_EMAILS).db()?;
                let owner = emails.get(new_key.as_str()).db()?.map(|g| g.value());
                if owner.is_some_and(|id| id != agent.id) {
                    return Err(StoreError::Conflict(format!(
                        "an agent with email {} already exists",
                        agent.email.trim()
                    )));
                }
                emails.remove(old_key.as_str()).db()?;
                emails.insert(new_key.as_str(), agent.id).db()?;
            }
            agents.insert(agent.id, encode(&agent)?.as_slice()).db()?;
            Ok(())
        })
        .await
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let session = session.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(SESSIONS).db()?;
            table
                .insert(session.token_hash.as_str(), encode(&session)?.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SESSIONS).db()?;
            let guard = table.get(token_hash).db()?;
            guard.map(|g| decode(g.value(), &"session")).transpose()
        })
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let token_hash = token_hash.to_string();
        self.write(move |txn| {
            let mut table = txn.open_table(SESSIONS).db()?;
            table.remove(token_hash.as_str()).db()?;
            Ok(())
        })
        .await
    }

    async fn purge_expired_sessions(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(SESSIONS).db()?;
            let mut expired = Vec::new();
            for entry in table.iter().db()? {
                let (key, bytes) = entry.db()?;
                // A session record that no longer decodes can never authenticate anyone, so
                // it is purged along with the expired ones.
                let keep = decode::<SessionRecord>(bytes.value(), &"session")
                    .is_ok_and(|s| s.expires_ms > now_ms);
                if !keep {
                    expired.push(key.value().to_string());
                }
            }
            for key in &expired {
                table.remove(key.as_str()).db()?;
            }
            Ok(expired.len())
        })
        .await
    }

    async fn create_api_token(
        &self,
        token: NewApiTokenRecord,
    ) -> Result<ApiTokenRecord, StoreError> {
        self.write(move |txn| {
            let mut hashes = txn.open_table(API_TOKEN_HASHES).db()?;
            if hashes.get(token.token_hash.as_str()).db()?.is_some() {
                return Err(StoreError::Conflict(
                    "an API token with the same hash already exists".to_string(),
                ));
            }
            let id = next_id(txn, META_NEXT_API_TOKEN_ID)?;
            let token = token.with_id(id);
            let mut tokens = txn.open_table(API_TOKENS).db()?;
            tokens.insert(id, encode(&token)?.as_slice()).db()?;
            hashes.insert(token.token_hash.as_str(), id).db()?;
            Ok(token)
        })
        .await
    }

    async fn api_token(&self, token_hash: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        self.read(|txn| {
            let hashes = txn.open_table(API_TOKEN_HASHES).db()?;
            let Some(id) = hashes.get(token_hash).db()?.map(|g| g.value()) else {
                return Ok(None);
            };
            let tokens = txn.open_table(API_TOKENS).db()?;
            let guard = tokens.get(id).db()?;
            guard
                .map(|g| decode(g.value(), &format_args!("API token {id}")))
                .transpose()
        })
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(API_TOKENS).db()?;
            decode_all(&table, "API token")
        })
    }

    async fn delete_api_token(&self, id: u64) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut tokens = txn.open_table(API_TOKENS).db()?;
            let removed = tokens.remove(id).db()?.map(|g| g.value().to_vec());
            let Some(bytes) = removed else {
                return Ok(false);
            };
            let token: ApiTokenRecord = decode(&bytes, &format_args!("API token {id}"))?;
            let mut hashes = txn.open_table(API_TOKEN_HASHES).db()?;
            hashes.remove(token.token_hash.as_str()).db()?;
            Ok(true)
        })
        .await
    }

    async fn create_site(&self, site: &Site) -> Result<(), StoreError> {
        let site = site.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(SITES).db()?;
            if table.get(site.key.as_str()).db()?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "site key {} is already taken",
                    site.key
                )));
            }
            table
                .insert(site.key.as_str(), encode(&site)?.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn site(&self, key: &str) -> Result<Option<Site>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SITES).db()?;
            let guard = table.get(key).db()?;
            guard
                .map(|g| decode(g.value(), &format_args!("site {key}")))
                .transpose()
        })
    }

    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SITES).db()?;
            decode_all(&table, "site")
        })
    }

    async fn update_site(&self, site: &Site) -> Result<(), StoreError> {
        let site = site.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(SITES).db()?;
            if table.get(site.key.as_str()).db()?.is_none() {
                return Err(StoreError::NotFound(format!("site {}", site.key)));
            }
            table
                .insert(site.key.as_str(), encode(&site)?.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn create_conversation(
        &self,
        conversation: NewConversation,
    ) -> Result<Conversation, StoreError> {
        self.write_durable(move |txn| {
            let id = next_id(txn, META_NEXT_CONVERSATION_ID)?;
            let conversation = conversation.with_id(id);
            let mut table = txn.open_table(CONVERSATIONS).db()?;
            table.insert(id, encode(&conversation)?.as_slice()).db()?;
            let (site, visitor) = (conversation.site.as_str(), conversation.visitor_id.as_str());
            let mut by_visitor = txn.open_table(VISITOR_CONVERSATIONS).db()?;
            by_visitor.insert((site, visitor, id), ()).db()?;
            let mut by_site = txn.open_table(SITE_CONVERSATIONS).db()?;
            by_site.insert((site, id), ()).db()?;
            Ok(conversation)
        })
        .await
    }

    async fn conversation(&self, id: u64) -> Result<Option<Conversation>, StoreError> {
        self.read(|txn| Ok(load_conversations(txn, [id])?.pop()))
    }

    async fn update_conversation(&self, conversation: &Conversation) -> Result<(), StoreError> {
        let conversation = conversation.clone();
        self.write_durable(move |txn| {
            let stored = stored_conversation(txn, conversation.id)?;
            check_replacement(&stored, &conversation)?;
            let mut table = txn.open_table(CONVERSATIONS).db()?;
            table
                .insert(conversation.id, encode(&conversation)?.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn write_conversation(
        &self,
        write: ConversationWrite,
    ) -> Result<WriteOutcome, StoreError> {
        self.write_durable(move |txn| {
            let id = write.conversation_id;
            let stored = stored_conversation(txn, id)?;
            let mut client_ids = txn.open_table(MESSAGE_CLIENT_IDS).db()?;
            let mut messages = txn.open_table(MESSAGES).db()?;

            // A repeated client id turns the whole write into a no-op: the write that used
            // it first has already made every change this one asks for.
            let mut keys: Vec<&str> = Vec::new();
            for message in &write.messages {
                let Some(key) = message.key() else { continue };
                if keys.contains(&key) {
                    return Err(StoreError::Conflict(
                        "two messages of one write share a client id".to_string(),
                    ));
                }
                keys.push(key);
                let Some(seq) = client_ids.get((id, key)).db()?.map(|g| g.value()) else {
                    continue;
                };
                let guard = messages.get((id, seq)).db()?;
                let Some(bytes) = guard else {
                    return Err(StoreError::Corrupt(format!(
                        "conversation {id}: client id index names missing message {seq}"
                    )));
                };
                let earlier: Message = decode(bytes.value(), &format_args!("message {id}/{seq}"))?;
                return Ok(WriteOutcome {
                    conversation: stored,
                    messages: vec![earlier],
                    duplicate: true,
                });
            }

            let mut conversation = match write.conversation {
                Some(new) => {
                    if new.id != id {
                        return Err(StoreError::Conflict(format!(
                            "a write to conversation {id} carries the record of conversation {}",
                            new.id
                        )));
                    }
                    check_replacement(&stored, &new)?;
                    new
                }
                None => stored,
            };
            let mut appended = Vec::with_capacity(write.messages.len());
            for new in write.messages {
                let seq = conversation.last_seq + 1;
                let message = new.into_message(id, seq);
                messages
                    .insert((id, seq), encode(&message)?.as_slice())
                    .db()?;
                if let Some(key) = message.client_id.as_deref() {
                    client_ids.insert((id, key), seq).db()?;
                }
                conversation.record_message(&message);
                appended.push(message);
            }
            let mut table = txn.open_table(CONVERSATIONS).db()?;
            table.insert(id, encode(&conversation)?.as_slice()).db()?;
            Ok(WriteOutcome {
                conversation,
                messages: appended,
                duplicate: false,
            })
        })
        .await
    }

    async fn messages(
        &self,
        conversation_id: u64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let Some(first) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.read(|txn| {
            let table = txn.open_table(MESSAGES).db()?;
            let mut out = Vec::new();
            for entry in table
                .range((conversation_id, first)..=(conversation_id, u64::MAX))
                .db()?
                .take(limit)
            {
                let (key, bytes) = entry.db()?;
                let (_, seq) = key.value();
                out.push(decode(
                    bytes.value(),
                    &format_args!("message {conversation_id}/{seq}"),
                )?);
            }
            Ok(out)
        })
    }

    async fn conversations_of_visitor(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<Conversation>, StoreError> {
        self.read(|txn| {
            let index = txn.open_table(VISITOR_CONVERSATIONS).db()?;
            let mut ids = Vec::new();
            for entry in index
                .range((site, visitor_id, 0u64)..=(site, visitor_id, u64::MAX))
                .db()?
            {
                let (key, _) = entry.db()?;
                ids.push(key.value().2);
            }
            load_conversations(txn, ids)
        })
    }

    async fn conversations_of_site(&self, site: &str) -> Result<Vec<Conversation>, StoreError> {
        self.read(|txn| {
            let index = txn.open_table(SITE_CONVERSATIONS).db()?;
            let mut ids = Vec::new();
            for entry in index.range((site, 0u64)..=(site, u64::MAX)).db()? {
                let (key, _) = entry.db()?;
                ids.push(key.value().1);
            }
            load_conversations(txn, ids)
        })
    }

    async fn put_attachment(
        &self,
        conversation_id: u64,
        attachment: &AttachmentMeta,
    ) -> Result<(), StoreError> {
        let attachment = attachment.clone();
        self.write_durable(move |txn| {
            let mut table = txn.open_table(ATTACHMENTS).db()?;
            table
                .insert(
                    (conversation_id, attachment.id.as_str()),
                    encode(&attachment)?.as_slice(),
                )
                .db()?;
            Ok(())
        })
        .await
    }

    async fn attachment(
        &self,
        conversation_id: u64,
        id: &str,
    ) -> Result<Option<AttachmentMeta>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(ATTACHMENTS).db()?;
            let guard = table.get((conversation_id, id)).db()?;
            guard
                .map(|g| {
                    decode(
                        g.value(),
                        &format_args!("attachment {conversation_id}/{id}"),
                    )
                })
                .transpose()
        })
    }

    async fn put_visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
        token_hash: &str,
    ) -> Result<bool, StoreError> {
        let (site, visitor_id, token_hash) = (
            site.to_string(),
            visitor_id.to_string(),
            token_hash.to_string(),
        );
        self.write_durable(move |txn| {
            let mut table = txn.open_table(VISITOR_CREDENTIALS).db()?;
            let key = (site.as_str(), visitor_id.as_str());
            if table.get(key).db()?.is_some() {
                return Ok(false);
            }
            table.insert(key, token_hash.as_str()).db()?;
            Ok(true)
        })
        .await
    }

    async fn visitor_credential(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(VISITOR_CREDENTIALS).db()?;
            let guard = table.get((site, visitor_id)).db()?;
            Ok(guard.map(|g| g.value().to_string()))
        })
    }

    async fn put_block(&self, site: &str, block: &Block) -> Result<(), StoreError> {
        let (site, block) = (site.to_string(), block.clone());
        self.write_durable(move |txn| {
            let key = block_key(&block)?;
            let mut table = txn.open_table(BLOCKS).db()?;
            table
                .insert((site.as_str(), key.as_str()), encode(&block)?.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn remove_block(&self, site: &str, visitor_id: &str) -> Result<bool, StoreError> {
        let (site, key) = (site.to_string(), visitor_block_key(visitor_id));
        self.write_durable(move |txn| {
            let mut table = txn.open_table(BLOCKS).db()?;
            let removed = table.remove((site.as_str(), key.as_str())).db()?.is_some();
            Ok(removed)
        })
        .await
    }

    async fn blocks(&self, site: &str) -> Result<Vec<Block>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(BLOCKS).db()?;
            let mut out = Vec::new();
            // The site's keys start at (site, ""); the scan stops at the first key of
            // another site, which is simpler than computing the next site's key.
            for entry in table.range((site, "")..).db()? {
                let (key, bytes) = entry.db()?;
                let (key_site, key) = key.value();
                if key_site != site {
                    break;
                }
                out.push(decode(bytes.value(), &format_args!("block {site}/{key}"))?);
            }
            Ok(out)
        })
    }

    async fn create_webhook(&self, webhook: NewWebhook) -> Result<Webhook, StoreError> {
        self.write_durable(move |txn| {
            let id = next_id(txn, META_NEXT_WEBHOOK_ID)?;
            let webhook = Webhook {
                id,
                site: webhook.site,
                url: webhook.url,
                secret: webhook.secret,
                events: webhook.events,
                created_ms: webhook.created_ms,
            };
            let mut table = txn.open_table(WEBHOOKS).db()?;
            table
                .insert((webhook.site.as_str(), id), encode(&webhook)?.as_slice())
                .db()?;
            Ok(webhook)
        })
        .await
    }

    async fn webhooks(&self, site: &str) -> Result<Vec<Webhook>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(WEBHOOKS).db()?;
            let mut out = Vec::new();
            for entry in table.range((site, 0)..=(site, u64::MAX)).db()? {
                let (key, bytes) = entry.db()?;
                let (_, id) = key.value();
                out.push(decode(bytes.value(), &format_args!("webhook {site}/{id}"))?);
            }
            Ok(out)
        })
    }

    async fn delete_webhook(&self, site: &str, id: u64) -> Result<bool, StoreError> {
        let site = site.to_string();
        self.write_durable(move |txn| {
            let mut table = txn.open_table(WEBHOOKS).db()?;
            let removed = table.remove((site.as_str(), id)).db()?.is_some();
            Ok(removed)
        })
        .await
    }

    async fn record_delivery(&self, site: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let (site, delivery) = (site.to_string(), delivery.clone());
        // The log is diagnostics: a lost last entry on a crash is acceptable, so no fsync.
        self.write(move |txn| {
            let seq = next_id(txn, META_NEXT_DELIVERY_SEQ)?;
            let mut table = txn.open_table(WEBHOOK_DELIVERIES).db()?;
            table
                .insert((site.as_str(), seq), encode(&delivery)?.as_slice())
                .db()?;
            let mut seqs = Vec::new();
            for entry in table
                .range((site.as_str(), 0)..=(site.as_str(), u64::MAX))
                .db()?
            {
                let (key, _) = entry.db()?;
                seqs.push(key.value().1);
            }
            let excess = seqs.len().saturating_sub(MAX_DELIVERIES_PER_SITE);
            for old in &seqs[..excess] {
                table.remove((site.as_str(), *old)).db()?;
            }
            Ok(())
        })
        .await
    }

    async fn deliveries(&self, site: &str) -> Result<Vec<Delivery>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(WEBHOOK_DELIVERIES).db()?;
            let mut out = Vec::new();
            for entry in table.range((site, 0)..=(site, u64::MAX)).db()? {
                let (key, bytes) = entry.db()?;
                let (_, seq) = key.value();
                out.push(decode(
                    bytes.value(),
                    &format_args!("webhook delivery {site}/{seq}"),
                )?);
            }
            Ok(out)
        })
    }
    async fn widget_settings(&self, site: &str) -> Result<Option<WidgetSettings>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(WIDGET_SETTINGS).db()?;
            table
                .get(site)
                .db()?
                .map(|bytes| decode(bytes.value(), &format_args!("widget settings {site}")))
                .transpose()
        })
    }

    async fn put_widget_settings(
        &self,
        site: &str,
        settings: &WidgetSettings,
    ) -> Result<(), StoreError> {
        let (site, bytes) = (site.to_string(), encode(settings)?);
        self.write_durable(move |txn| {
            let mut table = txn.open_table(WIDGET_SETTINGS).db()?;
            table.insert(site.as_str(), bytes.as_slice()).db()?;
            Ok(())
        })
        .await
    }

    async fn create_lead(&self, lead: NewLead) -> Result<Lead, StoreError> {
        self.write_durable(move |txn| {
            let id = next_id(txn, META_NEXT_LEAD_ID)?;
            let lead = Lead {
                id,
                site: lead.site,
                visitor_id: lead.visitor_id,
                name: lead.name,
                email: lead.email,
                phone: lead.phone,
                message: lead.message,
                page_url: lead.page_url,
                created_ms: lead.created_ms,
            };
            let mut table = txn.open_table(LEADS).db()?;
            table
                .insert((lead.site.as_str(), id), encode(&lead)?.as_slice())
                .db()?;
            Ok(lead)
        })
        .await
    }

    async fn leads(&self, site: &str) -> Result<Vec<Lead>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(LEADS).db()?;
            let mut out = Vec::new();
            for entry in table.range((site, 0)..=(site, u64::MAX)).db()? {
                let (key, bytes) = entry.db()?;
                let (_, id) = key.value();
                out.push(decode(bytes.value(), &format_args!("lead {site}/{id}"))?);
            }
            Ok(out)
        })
    }

    async fn saved_replies(&self, site: &str) -> Result<Vec<SavedReply>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SAVED_REPLIES).db()?;
            let mut out = Vec::new();
            for entry in table.range((site, 0)..=(site, u64::MAX)).db()? {
                let (key, bytes) = entry.db()?;
                let (_, id) = key.value();
                out.push(decode(
                    bytes.value(),
                    &format_args!("saved reply {site}/{id}"),
                )?);
            }
            Ok(out)
        })
    }

    async fn saved_reply(&self, site: &str, id: u64) -> Result<Option<SavedReply>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SAVED_REPLIES).db()?;
            let guard = table.get((site, id)).db()?;
            guard
                .map(|g| decode(g.value(), &format_args!("saved reply {site}/{id}")))
                .transpose()
        })
    }

    async fn create_saved_reply(&self, reply: NewSavedReply) -> Result<SavedReply, StoreError> {
        self.write_durable(move |txn| {
            let mut shortcuts = txn.open_table(SAVED_REPLY_SHORTCUTS).db()?;
            let key = (reply.site.as_str(), reply.shortcut.as_str());
            if shortcuts.get(key).db()?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "shortcut /{} is already used by another saved reply",
                    reply.shortcut
                )));
            }
            let id = next_id(txn, META_NEXT_SAVED_REPLY_ID)?;
            shortcuts.insert(key, id).db()?;
            let reply = reply.with_id(id);
            let mut table = txn.open_table(SAVED_REPLIES).db()?;
            table
                .insert((reply.site.as_str(), id), encode(&reply)?.as_slice())
                .db()?;
            Ok(reply)
        })
        .await
    }

    async fn update_saved_reply(&self, reply: &SavedReply) -> Result<(), StoreError> {
        let reply = reply.clone();
        self.write_durable(move |txn| {
            let site = reply.site.as_str();
            let mut table = txn.open_table(SAVED_REPLIES).db()?;
            let old: SavedReply = match table.get((site, reply.id)).db()? {
                Some(g) => decode(g.value(), &format_args!("saved reply {site}/{}", reply.id))?,
                None => return Err(StoreError::NotFound(format!("saved reply {}", reply.id))),
            };
            if old.shortcut != reply.shortcut {
                let mut shortcuts = txn.open_table(SAVED_REPLY_SHORTCUTS).db()?;
                if shortcuts
                    .get((site, reply.shortcut.as_str()))
                    .db()?
                    .is_some()
                {
                    return Err(StoreError::Conflict(format!(
                        "shortcut /{} is already used by another saved reply",
                        reply.shortcut
                    )));
                }
                shortcuts.remove((site, old.shortcut.as_str())).db()?;
                shortcuts
                    .insert((site, reply.shortcut.as_str()), reply.id)
                    .db()?;
            }
            table
                .insert((site, reply.id), encode(&reply)?.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn delete_saved_reply(&self, site: &str, id: u64) -> Result<bool, StoreError> {
        let site = site.to_string();
        self.write_durable(move |txn| {
            let mut table = txn.open_table(SAVED_REPLIES).db()?;
            let removed = table
                .remove((site.as_str(), id))
                .db()?
                .map(|g| g.value().to_vec());
            let Some(bytes) = removed else {
                return Ok(false);
            };
            let reply: SavedReply = decode(&bytes, &format_args!("saved reply {site}/{id}"))?;
            let mut shortcuts = txn.open_table(SAVED_REPLY_SHORTCUTS).db()?;
            shortcuts
                .remove((site.as_str(), reply.shortcut.as_str()))
                .db()?;
            Ok(true)
        })
        .await
    }

    async fn visitor_notes(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<VisitorNote>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(VISITOR_NOTES).db()?;
            let mut out = Vec::new();
            for entry in table
                .range((site, visitor_id, 0u64)..=(site, visitor_id, u64::MAX))
                .db()?
            {
                let (key, bytes) = entry.db()?;
                let (_, _, id) = key.value();
                out.push(decode(
                    bytes.value(),
                    &format_args!("note {site}/{visitor_id}/{id}"),
                )?);
            }
            Ok(out)
        })
    }

    async fn create_visitor_note(&self, note: NewVisitorNote) -> Result<VisitorNote, StoreError> {
        self.write_durable(move |txn| {
            let id = next_id(txn, META_NEXT_VISITOR_NOTE_ID)?;
            let note = note.with_id(id);
            let mut table = txn.open_table(VISITOR_NOTES).db()?;
            table
                .insert(
                    (note.site.as_str(), note.visitor_id.as_str(), id),
                    encode(&note)?.as_slice(),
                )
                .db()?;
            Ok(note)
        })
        .await
    }

    async fn delete_visitor_note(
        &self,
        site: &str,
        visitor_id: &str,
        id: u64,
    ) -> Result<bool, StoreError> {
        let (site, visitor_id) = (site.to_string(), visitor_id.to_string());
        self.write_durable(move |txn| {
            let mut table = txn.open_table(VISITOR_NOTES).db()?;
            let removed = table
                .remove((site.as_str(), visitor_id.as_str(), id))
                .db()?
                .is_some();
            Ok(removed)
        })
        .await
    }

    async fn contact_tags(&self, site: &str, visitor_id: &str) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(CONTACT_TAGS).db()?;
            let guard = table.get((site, visitor_id)).db()?;
            Ok(guard
                .map(|g| decode(g.value(), &format_args!("tags {site}/{visitor_id}")))
                .transpose()?
                .unwrap_or_default())
        })
    }

    async fn put_contact_tags(
        &self,
        site: &str,
        visitor_id: &str,
        tags: &[String],
    ) -> Result<(), StoreError> {
        let (site, visitor_id, bytes) = (site.to_string(), visitor_id.to_string(), encode(&tags)?);
        self.write_durable(move |txn| {
            let mut table = txn.open_table(CONTACT_TAGS).db()?;
            table
                .insert((site.as_str(), visitor_id.as_str()), bytes.as_slice())
                .db()?;
            Ok(())
        })
        .await
    }

    async fn put_agent_status(&self, agent_id: u64, status: AgentStatus) -> Result<(), StoreError> {
        let bytes = encode(&status)?;
        self.write_durable(move |txn| {
            let mut table = txn.open_table(AGENT_STATUSES).db()?;
            table.insert(agent_id, bytes.as_slice()).db()?;
            Ok(())
        })
        .await
    }

    async fn agent_statuses(&self) -> Result<Vec<(u64, AgentStatus)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(AGENT_STATUSES).db()?;
            let mut out = Vec::new();
            for entry in table.iter().db()? {
                let (id, bytes) = entry.db()?;
                let id = id.value();
                out.push((
                    id,
                    decode(bytes.value(), &format_args!("agent status {id}"))?,
                ));
            }
            Ok(out)
        })
    }

    async fn create_trigger(&self, mut trigger: Trigger) -> Result<Trigger, StoreError> {
        self.write_durable(move |txn| {
            trigger.id = next_id(txn, META_NEXT_TRIGGER_ID)?;
            let mut table = txn.open_table(TRIGGERS).db()?;
            table
                .insert(
                    (trigger.site.as_str(), trigger.id),
                    encode(&trigger)?.as_slice(),
                )
                .db()?;
            Ok(trigger)
        })
        .await
    }

    async fn create_triggers(&self, triggers: Vec<Trigger>) -> Result<Vec<Trigger>, StoreError> {
        self.write_durable(move |txn| {
            let mut table = txn.open_table(TRIGGERS).db()?;
            let mut stored = Vec::with_capacity(triggers.len());
            for mut trigger in triggers {
                trigger.id = next_id(txn, META_NEXT_TRIGGER_ID)?;
                table
                    .insert(
                        (trigger.site.as_str(), trigger.id),
                        encode(&trigger)?.as_slice(),
                    )
                    .db()?;
                stored.push(trigger);
            }
            Ok(stored)
        })
        .await
    }

    async fn trigger(&self, site: &str, id: u64) -> Result<Option<Trigger>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TRIGGERS).db()?;
            table
                .get((site, id))
                .db()?
                .map(|bytes| decode(bytes.value(), &format_args!("trigger {site}/{id}")))
                .transpose()
        })
    }

    async fn triggers(&self, site: &str) -> Result<Vec<Trigger>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TRIGGERS).db()?;
            let mut out = Vec::new();
            for entry in table.range((site, 0)..=(site, u64::MAX)).db()? {
                let (key, bytes) = entry.db()?;
                let (_, id) = key.value();
                out.push(decode(bytes.value(), &format_args!("trigger {site}/{id}"))?);
            }
            Ok(out)
        })
    }

    async fn all_triggers(&self) -> Result<Vec<Trigger>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TRIGGERS).db()?;
            let mut out = Vec::new();
            for entry in table.iter().db()? {
                let (key, bytes) = entry.db()?;
                let (site, id) = key.value();
                out.push(decode(bytes.value(), &format_args!("trigger {site}/{id}"))?);
            }
            Ok(out)
        })
    }

    async fn update_trigger(&self, trigger: &Trigger) -> Result<(), StoreError> {
        let (site, id, bytes) = (trigger.site.clone(), trigger.id, encode(trigger)?);
        self.write_durable(move |txn| {
            let mut table = txn.open_table(TRIGGERS).db()?;
            if table.get((site.as_str(), id)).db()?.is_none() {
                return Err(StoreError::NotFound(format!("trigger {id}")));
            }
            table.insert((site.as_str(), id), bytes.as_slice()).db()?;
            Ok(())
        })
        .await
    }

    async fn delete_trigger(&self, site: &str, id: u64) -> Result<bool, StoreError> {
        let site = site.to_string();
        self.write_durable(move |txn| {
            let mut table = txn.open_table(TRIGGERS).db()?;
            let removed = table.remove((site.as_str(), id)).db()?.is_some();
            let mut stats = txn.open_table(TRIGGER_STATS).db()?;
            let mut keys: Vec<(u32, String)> = Vec::new();
            for entry in stats
                .range((site.as_str(), id, 0, "")..=(site.as_str(), id, u32::MAX, "\u{10FFFF}"))
                .db()?
            {
                let (key, _) = entry.db()?;
                let (_, _, day, variant) = key.value();
                keys.push((day, variant.to_string()));
            }
            for (day, variant) in keys {
                stats
                    .remove((site.as_str(), id, day, variant.as_str()))
                    .db()?;
            }
            Ok(removed)
        })
        .await
    }

    async fn trigger_fires(
        &self,
        site: &str,
        visitor_id: &str,
    ) -> Result<Vec<FireRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TRIGGER_FIRES).db()?;
            let mut out = Vec::new();
            for entry in table
                .range((site, visitor_id, 0)..=(site, visitor_id, u64::MAX))
                .db()?
            {
                let (key, bytes) = entry.db()?;
                let (_, _, id) = key.value();
                out.push(decode(
                    bytes.value(),
                    &format_args!("trigger fire {site}/{visitor_id}/{id}"),
                )?);
            }
            Ok(out)
        })
    }

    async fn trigger_fired_visitors(&self, site: &str) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(TRIGGER_FIRES).db()?;
            let mut out: Vec<String> = Vec::new();
            // Keys are (site, visitor, trigger): a site's keys are one range, a visitor's
            // records adjacent.
            for entry in table.range((site, "", 0)..).db()? {
                let (key, _) = entry.db()?;
                let (key_site, visitor_id, _) = key.value();
                if key_site != site {
                    break;
                }
                if out.last().is_none_or(|last| last != visitor_id) {
                    out.push(visitor_id.to_string());
                }
            }
            Ok(out)
        })
    }

    async fn save_trigger_activity(
        &self,
        fires: &[FireRecord],
        deltas: &[StatsDelta],
    ) -> Result<(), StoreError> {
        // Only what the write needs crosses to the blocking pool: each record's key and its
        // encoding, not a copy of the record.
        let fires = fires
            .iter()
            .map(|fire| {
                Ok((
                    fire.site.clone(),
                    fire.visitor_id.clone(),
                    fire.trigger_id,
                    encode(fire)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let deltas = deltas.to_vec();
        self.write(move |txn| {
            let mut table = txn.open_table(TRIGGER_FIRES).db()?;
            for (site, visitor_id, trigger_id, bytes) in &fires {
                table
                    .insert(
                        (site.as_str(), visitor_id.as_str(), *trigger_id),
                        bytes.as_slice(),
                    )
                    .db()?;
            }
            let mut stats = txn.open_table(TRIGGER_STATS).db()?;
            for delta in &deltas {
                let key = (
                    delta.site.as_str(),
                    delta.trigger_id,
                    delta.day,
                    delta.variant.as_deref().unwrap_or(""),
                );
                let mut counts: Funnel = match stats.get(key).db()? {
                    Some(bytes) => decode(
                        bytes.value(),
                        &format_args!("trigger stats {}/{}", delta.site, delta.trigger_id),
                    )?,
                    None => Funnel::default(),
                };
                counts.add(&delta.counts);
                stats.insert(key, encode(&counts)?.as_slice()).db()?;
            }
            Ok(())
        })
        .await
    }

    async fn trigger_stats(
        &self,
        site: &str,
        trigger_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<StatsRow>, StoreError> {
        if to_day <= from_day {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let table = txn.open_table(TRIGGER_STATS).db()?;
            let mut out = Vec::new();
            for entry in table
                .range((site, trigger_id, from_day, "")..(site, trigger_id, to_day, ""))
                .db()?
            {
                let (key, bytes) = entry.db()?;
                let (_, _, day, variant) = key.value();
                out.push(StatsRow {
                    day,
                    variant: (!variant.is_empty()).then(|| variant.to_string()),
                    counts: decode(
                        bytes.value(),
                        &format_args!("trigger stats {site}/{trigger_id}/{day}"),
                    )?,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::{Author, MessageBody, NewMessage};
    use crate::model::{Identity, PropValue, Role};

    fn open_temp() -> (tempfile::TempDir, RedbStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_blocking(dir.path().join("data")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn async_open_creates_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested").join("data");
        let store = RedbStore::open(&data_dir).await.unwrap();
        assert_eq!(store.data_dir(), data_dir);
        assert!(data_dir.join(DB_FILE_NAME).is_file());
        let err = RedbStore::open(&data_dir).await.unwrap_err();
        assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    }

    fn profile(number: u32, visits: u32) -> Profile {
        Profile {
            number,
            visits,
            first_seen_ms: 1_700_000_000_000,
            last_visit_id: Some(format!("visit-{visits}")),
            identity: Identity {
                name: Some("Ada Lovelace".into()),
                email: Some("ada@example.com".into()),
                phone: None,
                props: vec![
                    ("plan".into(), PropValue::String("pro".into())),
                    ("seats".into(), PropValue::Number(3.5)),
                    ("trial".into(), PropValue::Bool(true)),
                ],
            },
        }
    }

    fn record(site: &str, visitor: &str, number: u32, visits: u32) -> ProfileRecord {
        ProfileRecord {
            site: site.into(),
            visitor_id: visitor.into(),
            profile: profile(number, visits),
        }
    }

    fn new_agent(email: &str) -> NewAgentRecord {
        NewAgentRecord {
            email: email.into(),
            name: "Grace".into(),
            role: Role::Agent,
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            sites: vec!["demo".into()],
            created_ms: 5,
            disabled: false,
        }
    }

    fn site(key: &str) -> Site {
        Site {
            key: key.into(),
            name: format!("Site {key}"),
            allowed_origins: vec!["https://example.com".into()],
            created_ms: 7,
        }
    }

    #[tokio::test]
    async fn profiles_round_trip_and_track_the_highest_number() {
        let (_dir, store) = open_temp();
        assert_eq!(store.load_profile("demo", "v1").await.unwrap(), None);
        store
            .save_profiles(&[
                record("demo", "v1", 1, 1),
                record("demo", "v2", 7, 1),
                record("other", "v1", 3, 2),
            ])
            .await
            .unwrap();
        store
            .save_profiles(&[record("demo", "v1", 1, 2)])
            .await
            .unwrap();
        store.save_profiles(&[]).await.unwrap();

        assert_eq!(
            store.load_profile("demo", "v1").await.unwrap(),
            Some(profile(1, 2))
        );
        assert_eq!(
            store.load_profile("other", "v1").await.unwrap(),
            Some(profile(3, 2))
        );
        assert_eq!(store.load_profile("demo", "v3").await.unwrap(), None);
        let mut maxima = store.max_visitor_numbers().await.unwrap();
        maxima.sort();
        assert_eq!(
            maxima,
            vec![("demo".to_string(), 7), ("other".to_string(), 3)]
        );
    }

    #[tokio::test]
    async fn agents_round_trip_with_case_insensitive_unique_email() {
        let (_dir, store) = open_temp();
        let first = store
            .create_agent(new_agent("Grace@Example.com"))
            .await
            .unwrap();
        let second = store
            .create_agent(new_agent("ada@example.com"))
            .await
            .unwrap();
        assert_eq!((first.id, second.id), (1, 2));
        assert_eq!(first, new_agent("Grace@Example.com").with_id(1));

        let err = store
            .create_agent(new_agent("grace@EXAMPLE.com"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(err.to_string().contains("already exists"), "{err}");

        assert_eq!(store.agent(1).await.unwrap(), Some(first.clone()));
        assert_eq!(store.agent(99).await.unwrap(), None);
        assert_eq!(
            store.agent_by_email("GRACE@example.COM").await.unwrap(),
            Some(first.clone())
        );
        assert_eq!(
            store.agent_by_email("nobody@example.com").await.unwrap(),
            None
        );
        assert_eq!(
            store.list_agents().await.unwrap(),
            vec![first.clone(), second.clone()]
        );

        // Changing the email moves the index entry; taking another agent's email conflicts.
        let mut renamed = first.clone();
        renamed.email = "grace.hopper@example.com".into();
        renamed.disabled = true;
        store.update_agent(&renamed).await.unwrap();
        assert_eq!(
            store.agent_by_email("grace@example.com").await.unwrap(),
            None
        );
        assert_eq!(
            store
                .agent_by_email("grace.hopper@example.com")
                .await
                .unwrap(),
            Some(renamed.clone())
        );
        let mut clash = renamed.clone();
        clash.email = "ADA@example.com".into();
        assert!(matches!(
            store.update_agent(&clash).await,
            Err(StoreError::Conflict(_))
        ));
        let mut ghost = renamed.clone();
        ghost.id = 42;
        let err = store.update_agent(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(err.to_string(), "agent 42 not found");
    }

    #[tokio::test]
    async fn sessions_round_trip_and_purge() {
        let (_dir, store) = open_temp();
        let live = SessionRecord {
            token_hash: "aa".into(),
            agent_id: 1,
            created_ms: 0,
            expires_ms: 2_000,
        };
        let stale = SessionRecord {
            token_hash: "bb".into(),
            expires_ms: 1_000,
            ..live.clone()
        };
        store.put_session(&live).await.unwrap();
        store.put_session(&stale).await.unwrap();
        assert_eq!(store.session("aa").await.unwrap(), Some(live.clone()));
        assert_eq!(store.purge_expired_sessions(1_000).await.unwrap(), 1);
        assert_eq!(store.session("bb").await.unwrap(), None);
        store.delete_session("aa").await.unwrap();
        store.delete_session("aa").await.unwrap();
        assert_eq!(store.session("aa").await.unwrap(), None);
    }

    #[tokio::test]
    async fn api_tokens_round_trip_and_delete() {
        let (_dir, store) = open_temp();
        let new = |hash: &str| NewApiTokenRecord {
            agent_id: 3,
            name: "ci".into(),
            token_hash: hash.into(),
            created_ms: 9,
        };
        let a = store.create_api_token(new("h1")).await.unwrap();
        let b = store.create_api_token(new("h2")).await.unwrap();
        assert_eq!(a, new("h1").with_id(1));
        assert_eq!(b.id, 2);
        assert!(matches!(
            store.create_api_token(new("h1")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.api_token("h2").await.unwrap(), Some(b.clone()));
        assert_eq!(
            store.list_api_tokens().await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert!(store.delete_api_token(1).await.unwrap());
        assert!(!store.delete_api_token(1).await.unwrap());
        assert_eq!(store.api_token("h1").await.unwrap(), None);
        // Ids are never reused, so a revoked token's id cannot name a new token.
        assert_eq!(store.create_api_token(new("h3")).await.unwrap().id, 3);
    }

    #[tokio::test]
    async fn sites_round_trip() {
        let (_dir, store) = open_temp();
        store.create_site(&site("demo")).await.unwrap();
        store.create_site(&site("alpha")).await.unwrap();
        let err = store.create_site(&site("demo")).await.unwrap_err();
        assert_eq!(err.to_string(), "site key demo is already taken");
        assert_eq!(store.site("demo").await.unwrap(), Some(site("demo")));
        assert_eq!(store.site("nope").await.unwrap(), None);
        assert_eq!(
            store.list_sites().await.unwrap(),
            vec![site("alpha"), site("demo")]
        );
        let mut changed = site("demo");
        changed.allowed_origins = vec!["*".into()];
        store.update_site(&changed).await.unwrap();
        assert_eq!(store.site("demo").await.unwrap(), Some(changed));
        assert!(matches!(
            store.update_site(&site("nope")).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn reopening_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open_blocking(dir.path()).unwrap();
            store
                .save_profiles(&[record("demo", "v1", 4, 3)])
                .await
                .unwrap();
            store
                .create_agent(new_agent("a@example.com"))
                .await
                .unwrap();
            store.create_site(&site("demo")).await.unwrap();
            store
                .put_session(&SessionRecord {
                    token_hash: "s".into(),
                    agent_id: 1,
                    created_ms: 0,
                    expires_ms: 10,
                })
                .await
                .unwrap();
        }
        assert!(dir.path().join(DB_FILE_NAME).is_file());
        let store = RedbStore::open_blocking(dir.path()).unwrap();
        let restored = store.load_profile("demo", "v1").await.unwrap().unwrap();
        assert_eq!(restored.visits, 3, "a restart must keep visit counts");
        assert_eq!(
            store.max_visitor_numbers().await.unwrap(),
            vec![("demo".into(), 4)]
        );
        assert!(
            store
                .agent_by_email("a@example.com")
                .await
                .unwrap()
                .is_some()
        );
        assert!(store.site("demo").await.unwrap().is_some());
        assert!(store.session("s").await.unwrap().is_some());
        // The id counter survives too.
        let next = store
            .create_agent(new_agent("b@example.com"))
            .await
            .unwrap();
        assert_eq!(next.id, 2);
    }

    fn new_conversation(site: &str, visitor: &str) -> NewConversation {
        NewConversation {
            site: site.into(),
            visitor_id: visitor.into(),
            origin: crate::conversations::ConversationOrigin::Visitor,
            assigned_agent: None,
            participants: Vec::new(),
            created_ms: 10,
            subject: Some("Hello".into()),
            page_url: None,
            visitor_ip: Some("203.0.113.5".into()),
            prechat: None,
        }
    }

    fn visitor_text(text: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            author: Author::Visitor,
            body: MessageBody::Text { text: text.into() },
            created_ms: 20,
            client_id: client_id.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn conversations_round_trip_and_refuse_stale_updates() {
        let (_dir, store) = open_temp();
        let a = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        let b = store
            .create_conversation(new_conversation("demo", "v2"))
            .await
            .unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(a, new_conversation("demo", "v1").with_id(1));
        assert_eq!(store.conversation(1).await.unwrap(), Some(a.clone()));
        assert_eq!(store.conversation(99).await.unwrap(), None);

        let mut tagged = a.clone();
        tagged.tags = vec!["vip".into()];
        store.update_conversation(&tagged).await.unwrap();
        assert_eq!(store.conversation(1).await.unwrap(), Some(tagged.clone()));

        // A copy read before an append cannot roll the append back.
        store
            .append_message(1, visitor_text("hi", None))
            .await
            .unwrap();
        let err = store.update_conversation(&tagged).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let mut moved = store.conversation(1).await.unwrap().unwrap();
        moved.visitor_id = "v2".into();
        let err = store.update_conversation(&moved).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let mut ghost = tagged.clone();
        ghost.id = 42;
        let err = store.update_conversation(&ghost).await.unwrap_err();
        assert_eq!(err.to_string(), "conversation 42 not found");
        let err = store
            .append_message(42, visitor_text("hi", None))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn appends_are_idempotent_by_client_id() {
        let (_dir, store) = open_temp();
        let c = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        let first = store
            .append_message(c.id, visitor_text("one", Some("k1")))
            .await
            .unwrap();
        assert!(!first.duplicate);
        assert_eq!(first.message.seq, 1);
        assert_eq!(first.message.client_id.as_deref(), Some("k1"));
        assert_eq!(first.conversation.last_seq, 1);
        assert_eq!(
            first.conversation.last_message_preview.as_deref(),
            Some("one")
        );

        let again = store
            .append_message(c.id, visitor_text("one", Some("k1")))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.message, first.message);
        assert_eq!(again.conversation, first.conversation);

        // Empty keys are no keys: both messages are kept.
        for _ in 0..2 {
            let out = store
                .append_message(c.id, visitor_text("anon", Some("")))
                .await
                .unwrap();
            assert!(!out.duplicate);
            assert_eq!(out.message.client_id, None);
        }
        // The same key in another conversation is another message.
        let other = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        let elsewhere = store
            .append_message(other.id, visitor_text("one", Some("k1")))
            .await
            .unwrap();
        assert!(!elsewhere.duplicate);

        // A write that repeats a key anywhere changes nothing at all, record included.
        let mut resolved = store.conversation(c.id).await.unwrap().unwrap();
        resolved.state = crate::conversations::ConversationState::Resolved;
        let out = store
            .write_conversation(ConversationWrite {
                conversation_id: c.id,
                conversation: Some(resolved),
                messages: vec![
                    visitor_text("new", Some("k2")),
                    visitor_text("old", Some("k1")),
                ],
            })
            .await
            .unwrap();
        assert!(out.duplicate);
        assert_eq!(out.messages, vec![first.message.clone()]);
        let stored = store.conversation(c.id).await.unwrap().unwrap();
        assert_eq!(stored.state, crate::conversations::ConversationState::Open);
        assert_eq!(stored.last_seq, 3);
        let err = store
            .write_conversation(ConversationWrite {
                conversation_id: c.id,
                conversation: None,
                messages: vec![visitor_text("a", Some("k3")), visitor_text("b", Some("k3"))],
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.messages(c.id, 0, 100).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn messages_page_in_seq_order() {
        let (_dir, store) = open_temp();
        let a = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        let b = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        for i in 1..=5 {
            store
                .append_message(a.id, visitor_text(&format!("a{i}"), None))
                .await
                .unwrap();
            store
                .append_message(b.id, visitor_text(&format!("b{i}"), None))
                .await
                .unwrap();
        }
        let seqs = |messages: Vec<Message>| messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(store.messages(a.id, 0, 100).await.unwrap()),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(seqs(store.messages(a.id, 2, 2).await.unwrap()), [3, 4]);
        assert_eq!(
            seqs(store.messages(a.id, 5, 10).await.unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            seqs(store.messages(a.id, u64::MAX, 10).await.unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            seqs(store.messages(a.id, 0, 0).await.unwrap()),
            Vec::<u64>::new()
        );
        assert!(
            store
                .messages(b.id, 0, 100)
                .await
                .unwrap()
                .iter()
                .all(|m| m.conversation_id == b.id)
        );
        assert!(store.messages(99, 0, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_appends_get_dense_seqs() {
        let (_dir, store) = open_temp();
        let store = Arc::new(store);
        let c = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..15 {
                        let key = format!("{t}-{i}");
                        let out = store
                            .append_message(c.id, visitor_text(&key, Some(&key)))
                            .await
                            .unwrap();
                        seqs.push(out.message.seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            let seqs = task.await.unwrap();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
            all.extend(seqs);
        }
        all.sort_unstable();
        assert_eq!(all, (1..=90).collect::<Vec<u64>>());
        let stored = store.messages(c.id, 0, 1000).await.unwrap();
        assert_eq!(stored.len(), 90);
        assert!(
            stored
                .iter()
                .enumerate()
                .all(|(i, m)| m.seq == i as u64 + 1)
        );
        assert_eq!(
            store.conversation(c.id).await.unwrap().unwrap().last_seq,
            90
        );
    }

    #[tokio::test]
    async fn conversation_indexes_do_not_bleed_across_prefixes() {
        let (_dir, store) = open_temp();
        for (site, visitor) in [
            ("demo", "v1"),
            ("demo", "v10"),
            ("demo", "v1"),
            ("demo2", "v1"),
            ("dem", "v1"),
        ] {
            store
                .create_conversation(new_conversation(site, visitor))
                .await
                .unwrap();
        }
        let ids = |list: Vec<Conversation>| list.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.conversations_of_visitor("demo", "v1").await.unwrap()),
            [1, 3]
        );
        assert_eq!(
            ids(store.conversations_of_visitor("demo", "v10").await.unwrap()),
            [2]
        );
        assert_eq!(
            ids(store.conversations_of_visitor("demo", "v").await.unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(
            ids(store.conversations_of_site("demo").await.unwrap()),
            [1, 2, 3]
        );
        assert_eq!(
            ids(store.conversations_of_site("demo2").await.unwrap()),
            [4]
        );
        assert_eq!(
            ids(store.conversations_of_site("nope").await.unwrap()),
            Vec::<u64>::new()
        );
    }

    #[tokio::test]
    async fn attachments_credentials_and_blocks_round_trip() {
        let (_dir, store) = open_temp();
        let meta = AttachmentMeta {
            id: "abc_DEF-123".into(),
            name: "a.png".into(),
            mime: "image/png".into(),
            size: 3,
            image: true,
        };
        store.put_attachment(7, &meta).await.unwrap();
        assert_eq!(
            store.attachment(7, "abc_DEF-123").await.unwrap(),
            Some(meta)
        );
        assert_eq!(store.attachment(8, "abc_DEF-123").await.unwrap(), None);

        assert!(
            store
                .put_visitor_credential("demo", "v1", "h1")
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_visitor_credential("demo", "v1", "h2")
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .visitor_credential("demo", "v1")
                .await
                .unwrap()
                .as_deref(),
            Some("h1"),
            "an existing credential is never replaced"
        );
        assert_eq!(store.visitor_credential("demo", "v2").await.unwrap(), None);

        let block = |visitor: Option<&str>, ip: Option<&str>| Block {
            visitor_id: visitor.map(str::to_string),
            ip: ip.map(str::to_string),
            by: 1,
            at_ms: 5,
            reason: None,
        };
        store
            .put_block("demo", &block(Some("v1"), Some("10.0.0.1")))
            .await
            .unwrap();
        store
            .put_block("demo", &block(None, Some("10.0.0.2")))
            .await
            .unwrap();
        store
            .put_block("demo2", &block(Some("v1"), None))
            .await
            .unwrap();
        assert!(store.put_block("demo", &block(None, None)).await.is_err());
        let mut blocks = store.blocks("demo").await.unwrap();
        blocks.sort_by(|a, b| a.ip.cmp(&b.ip));
        assert_eq!(
            blocks,
            vec![
                block(Some("v1"), Some("10.0.0.1")),
                block(None, Some("10.0.0.2"))
            ]
        );
        assert!(store.remove_block("demo", "v1").await.unwrap());
        assert!(!store.remove_block("demo", "v1").await.unwrap());
        assert_eq!(
            store.blocks("demo").await.unwrap(),
            vec![block(None, Some("10.0.0.2"))]
        );
        assert_eq!(store.blocks("demo2").await.unwrap().len(), 1);
        assert!(store.blocks("dem").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn widget_settings_and_leads_round_trip() {
        let (_dir, store) = open_temp();
        assert_eq!(store.widget_settings("a").await.unwrap(), None);
        let mut settings = WidgetSettings::defaults("Shop A");
        settings.welcome = "Hello".into();
        store.put_widget_settings("a", &settings).await.unwrap();
        assert_eq!(store.widget_settings("a").await.unwrap(), Some(settings));
        assert_eq!(store.widget_settings("b").await.unwrap(), None);
        let lead = |site: &str, name: &str| NewLead {
            site: site.into(),
            visitor_id: None,
            name: name.into(),
            email: "x@y".into(),
            phone: None,
            message: "hi".into(),
            page_url: None,
            created_ms: 1,
        };
        let first = store.create_lead(lead("a", "one")).await.unwrap();
        store.create_lead(lead("b", "other")).await.unwrap();
        let second = store.create_lead(lead("a", "two")).await.unwrap();
        assert!(second.id > first.id);
        let names: Vec<String> = store
            .leads("a")
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, vec!["one", "two"]);
    }

    #[tokio::test]
    async fn webhooks_round_trip_and_the_delivery_log_is_trimmed() {
        use crate::webhooks::WebhookEvent;
        let (_dir, store) = open_temp();
        let hook = store
            .create_webhook(
                NewWebhook::new("s", "http://h/x", &[WebhookEvent::MessageCreated], 1).unwrap(),
            )
            .await
            .unwrap();
        let other = store
            .create_webhook(
                NewWebhook::new("s2", "http://h/y", &[WebhookEvent::LeadCreated], 1).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(store.webhooks("s").await.unwrap(), vec![hook.clone()]);
        assert!(!store.delete_webhook("s", other.id).await.unwrap());
        for attempt in 0..(MAX_DELIVERIES_PER_SITE as u32 + 5) {
            let delivery = Delivery {
                id: "d".into(),
                webhook_id: hook.id,
                event: WebhookEvent::MessageCreated,
                attempt,
                status: Some(500),
                error: None,
                at_ms: 0,
                delivered: false,
            };
            store.record_delivery("s", &delivery).await.unwrap();
        }
        store
            .record_delivery(
                "s2",
                &Delivery {
                    id: "e".into(),
                    webhook_id: other.id,
                    event: WebhookEvent::LeadCreated,
                    attempt: 1,
                    status: None,
                    error: Some("refused".into()),
                    at_ms: 0,
                    delivered: false,
                },
            )
            .await
            .unwrap();
        let log = store.deliveries("s").await.unwrap();
        assert_eq!(log.len(), MAX_DELIVERIES_PER_SITE);
        assert_eq!(log[0].attempt, 5);
        assert_eq!(store.deliveries("s2").await.unwrap().len(), 1);
        assert!(store.delete_webhook("s", hook.id).await.unwrap());
        assert!(store.webhooks("s").await.unwrap().is_empty());
        assert_eq!(store.webhooks("s2").await.unwrap(), vec![other]);
    }

    #[tokio::test]
    async fn saved_replies_keep_shortcuts_unique_per_site() {
        let (_dir, store) = open_temp();
        let new = |site: &str, shortcut: &str| NewSavedReply {
            site: site.into(),
            shortcut: shortcut.into(),
            text: format!("text of {shortcut}"),
            updated_by: 1,
            created_ms: 5,
        };
        let price = store.create_saved_reply(new("a", "price")).await.unwrap();
        let hello = store.create_saved_reply(new("a", "hello")).await.unwrap();
        // The same shortcut on another site is fine; on the same site it is a conflict.
        store.create_saved_reply(new("b", "price")).await.unwrap();
        let err = store
            .create_saved_reply(new("a", "price"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(
            store.saved_replies("a").await.unwrap(),
            vec![price.clone(), hello.clone()]
        );

        // Renaming frees the old shortcut and takes the new one.
        let mut renamed = price.clone();
        renamed.shortcut = "pricing".into();
        store.update_saved_reply(&renamed).await.unwrap();
        store.create_saved_reply(new("a", "price")).await.unwrap();
        let mut clash = hello.clone();
        clash.shortcut = "pricing".into();
        let err = store.update_saved_reply(&clash).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let mut missing = hello.clone();
        missing.id = 999;
        let err = store.update_saved_reply(&missing).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(
            store.saved_reply("a", renamed.id).await.unwrap(),
            Some(renamed.clone())
        );

        assert!(store.delete_saved_reply("a", renamed.id).await.unwrap());
        assert!(!store.delete_saved_reply("a", renamed.id).await.unwrap());
        assert!(!store.delete_saved_reply("b", hello.id).await.unwrap());
        store.create_saved_reply(new("a", "pricing")).await.unwrap();
        assert_eq!(store.saved_replies("a").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn notes_tags_and_agent_statuses_round_trip() {
        let (_dir, store) = open_temp();
        let note = |visitor: &str, text: &str| NewVisitorNote {
            site: "demo".into(),
            visitor_id: visitor.into(),
            author_id: 1,
            author_name: "Ann".into(),
            text: text.into(),
            created_ms: 9,
        };
        let first = store.create_visitor_note(note("v1", "one")).await.unwrap();
        store
            .create_visitor_note(note("v10", "other"))
            .await
            .unwrap();
        let second = store.create_visitor_note(note("v1", "two")).await.unwrap();
        assert_eq!(
            store.visitor_notes("demo", "v1").await.unwrap(),
            vec![first.clone(), second.clone()]
        );
        assert!(
            store
                .delete_visitor_note("demo", "v1", first.id)
                .await
                .unwrap()
        );
        assert!(
            !store
                .delete_visitor_note("demo", "v1", first.id)
                .await
                .unwrap()
        );
        assert_eq!(
            store.visitor_notes("demo", "v1").await.unwrap(),
            vec![second]
        );

        assert!(store.contact_tags("demo", "v1").await.unwrap().is_empty());
        let tags = vec!["vip".to_string(), "b2b".to_string()];
        store.put_contact_tags("demo", "v1", &tags).await.unwrap();
        assert_eq!(store.contact_tags("demo", "v1").await.unwrap(), tags);
        assert!(store.contact_tags("demo", "v10").await.unwrap().is_empty());

        store.put_agent_status(3, AgentStatus::Away).await.unwrap();
        store
            .put_agent_status(1, AgentStatus::Offline)
            .await
            .unwrap();
        store
            .put_agent_status(3, AgentStatus::Online)
            .await
            .unwrap();
        assert_eq!(
            store.agent_statuses().await.unwrap(),
            vec![(1, AgentStatus::Offline), (3, AgentStatus::Online)]
        );
    }

    #[tokio::test]
    async fn reopening_keeps_every_acknowledged_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut acknowledged = Vec::new();
        {
            let store = RedbStore::open(dir.path()).await.unwrap();
            let c = store
                .create_conversation(new_conversation("demo", "v1"))
                .await
                .unwrap();
            for i in 0..25 {
                let key = format!("k{i}");
                let out = store
                    .append_message(c.id, visitor_text(&key, Some(&key)))
                    .await
                    .unwrap();
                acknowledged.push(out.message);
            }
        }
        let store = RedbStore::open(dir.path()).await.unwrap();
        assert_eq!(store.messages(1, 0, 1000).await.unwrap(), acknowledged);
        let conversation = store.conversation(1).await.unwrap().unwrap();
        assert_eq!(conversation.last_seq, 25);
        // The idempotency index and the id counter survive too.
        let retry = store
            .append_message(1, visitor_text("k3", Some("k3")))
            .await
            .unwrap();
        assert!(retry.duplicate && retry.message.seq == 4);
        let next = store
            .create_conversation(new_conversation("demo", "v1"))
            .await
            .unwrap();
        assert_eq!(next.id, 2);
    }

    #[test]
    fn a_second_open_reports_the_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbStore::open_blocking(dir.path()).unwrap();
        let err = RedbStore::open_blocking(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
        let expected = format!(
            "data directory {} is in use by another porchlight process",
            dir.path().display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE_NAME),
            b"this is not a redb file at all",
        )
        .unwrap();
        let err = RedbStore::open_blocking(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(
            err.to_string().contains(DB_FILE_NAME),
            "the message should name the file: {err}"
        );
    }

    #[tokio::test]
    async fn undecodable_records_are_reported_as_corrupt() {
        let (_dir, store) = open_temp();
        let db = Arc::clone(&store.db);
        let txn = db.begin_write().unwrap();
        txn.open_table(SITES)
            .unwrap()
            .insert("bad", b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let err = store.site("bad").await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("stored data is corrupt: site bad"),
            "{err}"
        );
    }
}
