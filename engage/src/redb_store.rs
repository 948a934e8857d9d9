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
    Database, DatabaseError, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::model::{
    Agent, ApiTokenRecord, NewAgentRecord, NewApiTokenRecord, Profile, ProfileRecord,
    SessionRecord, Site,
};
use crate::store::Store;

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
/// Counters and the schema version.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_NEXT_AGENT_ID: &str = "next_agent_id";
const META_NEXT_API_TOKEN_ID: &str = "next_api_token_id";

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
            let mut out = Vec::new();
            for entry in table.iter().db()? {
                let (id, bytes) = entry.db()?;
                out.push(decode(
                    bytes.value(),
                    &format_args!("agent {}", id.value()),
                )?);
            }
            Ok(out)
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
            let mut out = Vec::new();
            for entry in table.iter().db()? {
                let (id, bytes) = entry.db()?;
                out.push(decode(
                    bytes.value(),
                    &format_args!("API token {}", id.value()),
                )?);
            }
            Ok(out)
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
            let mut out = Vec::new();
            for entry in table.iter().db()? {
                let (key, bytes) = entry.db()?;
                out.push(decode(
                    bytes.value(),
                    &format_args!("site {}", key.value()),
                )?);
            }
            Ok(out)
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
}

#[cfg(test)]
mod tests {
    use super::*;
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
