//! Porchlight's durable side: the store, accounts and the visitor-profile write-behind.
//!
//! - [`Store`] is the storage interface; [`RedbStore`] is the embedded implementation (one
//!   `porchlight.redb` file in the data directory). Records are JSON so that a Redis store
//!   can later keep the same bytes.
//! - [`Accounts`] manages agents, password logins, sessions, API tokens and sites.
//! - [`ProfileWriter`] writes visitor profiles behind the ingestion path in batches, and
//!   [`VisitorNumbers`] hands out per-site visitor numbers without a synchronous write.

mod accounts;
mod clock;
mod error;
mod ingest;
mod model;
mod profiles;
mod redb_store;
mod store;

pub use accounts::{Accounts, AccountsConfig, PasswordParams, SessionToken, hash_token};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{AccountError, StoreError};
pub use ingest::{Ingest, IngestOutcome};
pub use model::{
    Agent, AgentView, ApiTokenRecord, ApiTokenView, Identity, NewAgentRecord, NewApiTokenRecord,
    ParseRoleError, Profile, ProfileRecord, PropValue, Role, SessionRecord, Site, normalize_origin,
};
pub use profiles::{ProfileWriter, ProfileWriterConfig, VisitorNumbers};
pub use redb_store::{DB_FILE_NAME, RedbStore};
pub use store::Store;
