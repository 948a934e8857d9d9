//! The storage interface every backend implements.
//!
//! The operations are deliberately key/value shaped: each one reads or writes records by a
//! single key, plus a few secondary indexes that the backend keeps in step (email to agent
//! id, token hash to API token id). That keeps a Redis backend straightforward: every
//! operation maps to a handful of `GET`/`SET`/`HSET`/`DEL` calls, or one `MULTI` block, and
//! records are the same JSON bytes in either backend.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::{
    Agent, ApiTokenRecord, NewAgentRecord, NewApiTokenRecord, Profile, ProfileRecord,
    SessionRecord, Site,
};

/// Durable storage for visitor profiles, agents, sessions, API tokens and sites.
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
}
