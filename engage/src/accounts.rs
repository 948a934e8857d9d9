//! Agents, password logins, sessions, API tokens and sites: the rules on top of the store.
//!
//! Secrets never reach the store in the clear. Passwords are kept as Argon2id PHC strings;
//! session and API tokens are random 32-byte values of which only the SHA-256 hash is
//! stored, so a copy of the database lets nobody log in. Hashing runs on tokio's blocking
//! pool because Argon2 deliberately burns tens of milliseconds of CPU.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::clock::{Clock, SystemClock};
use crate::error::AccountError;
use crate::model::{
    Agent, ApiTokenRecord, NewAgentRecord, NewApiTokenRecord, Role, SessionRecord, Site,
    normalize_origin,
};
use crate::store::Store;

/// Argon2 cost parameters, re-exported so callers need not depend on `argon2` themselves.
pub use argon2::Params as PasswordParams;

/// The prefix of every API token, so a leaked token is recognisable in logs and secret
/// scanners, and so a session cookie is never mistaken for an API token.
const API_TOKEN_PREFIX: &str = "plt_";

/// Tokens longer than this are rejected before any hashing or lookup; real ones are 43
/// (session) and 47 (API) characters.
const MAX_TOKEN_LEN: usize = 256;

/// Passwords longer than this are refused, to bound the work one login request can cause.
const MAX_PASSWORD_BYTES: usize = 1024;
const MIN_PASSWORD_CHARS: usize = 8;
const MAX_NAME_CHARS: usize = 100;
const MAX_EMAIL_BYTES: usize = 254;

/// The password hashed for the dummy comparison when an email is unknown.
const DUMMY_PASSWORD: &str = "porchlight-dummy-password-for-unknown-emails";

/// Settings of the accounts service.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// How long a login session lasts. Default: 14 days.
    pub session_ttl_ms: i64,
    /// Argon2id cost for new password hashes. Default: argon2's recommended defaults
    /// (19 MiB, 2 passes, 1 lane). Existing hashes are verified with the cost stored in them,
    /// so changing this never locks anyone out.
    pub password_params: PasswordParams,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            session_ttl_ms: 14 * 24 * 60 * 60 * 1000,
            password_params: PasswordParams::DEFAULT,
        }
    }
}

impl AccountsConfig {
    /// The same settings with the cheapest Argon2 cost there is (8 KiB, 1 pass).
    ///
    /// This is for tests only: unoptimised debug builds take around a second per hash at the
    /// default cost, which makes a test suite that logs in a few dozen times crawl. Never use
    /// it in a server, where it would make stolen hashes cheap to crack.
    pub fn insecure_fast_hashing(mut self) -> Self {
        self.password_params = PasswordParams::new(PasswordParams::MIN_M_COST, 1, 1, None)
            .unwrap_or(PasswordParams::DEFAULT);
        self
    }
}

/// A freshly issued session token: the value for the session cookie.
///
/// `Debug` does not print the token, so logging a `SessionToken` by accident leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    token: String,
    expires_ms: i64,
}

impl SessionToken {
    /// The secret cookie value.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    pub fn into_string(self) -> String {
        self.token
    }

    /// When the session expires, in milliseconds since the Unix epoch (for the cookie's
    /// `Max-Age`/`Expires`).
    pub fn expires_ms(&self) -> i64 {
        self.expires_ms
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionToken")
            .field("token", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// The accounts service.
#[derive(Debug)]
pub struct Accounts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: AccountsConfig,
    /// A hash of [`DUMMY_PASSWORD`] made with the configured cost, computed on first use.
    dummy_hash: OnceCell<String>,
}

impl Accounts {
    /// An accounts service with the default settings and the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_config(store, AccountsConfig::default(), Arc::new(SystemClock))
    }

    pub fn with_config(
        store: Arc<dyn Store>,
        config: AccountsConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            clock,
            config,
            dummy_hash: OnceCell::new(),
        }
    }

    /// The store underneath, for callers that need a read this service does not wrap.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &AccountsConfig {
        &self.config
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    // Agents.

    /// Creates an agent after validating the email's shape, a non-empty name and a password
    /// of at least 8 characters. A taken email (in any case) is [`AccountError::Conflict`].
    pub async fn create_agent(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<Agent, AccountError> {
        let email = validate_email(email)?;
        let name = validate_name(name, "name")?;
        validate_password(password)?;
        // Checking first spares an Argon2 hash for the common duplicate; the store's own
        // check still decides when two requests race.
        if self.store.agent_by_email(&email).await?.is_some() {
            return Err(AccountError::Conflict(format!(
                "an agent with email {email} already exists"
            )));
        }
        let password_hash = self.hash_password(password).await?;
        let agent = self
            .store
            .create_agent(NewAgentRecord {
                email,
                name,
                role,
                password_hash,
                sites: Vec::new(),
                created_ms: self.now_ms(),
                disabled: false,
            })
            .await?;
        tracing::info!(agent_id = agent.id, role = %agent.role, "agent created");
        Ok(agent)
    }

    pub async fn agent(&self, id: u64) -> Result<Option<Agent>, AccountError> {
        Ok(self.store.agent(id).await?)
    }

    pub async fn list_agents(&self) -> Result<Vec<Agent>, AccountError> {
        Ok(self.store.list_agents().await?)
    }

    async fn existing_agent(&self, id: u64) -> Result<Agent, AccountError> {
        self.store
            .agent(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("agent {id}")))
    }

    /// Enables or disables an agent. A disabled agent cannot log in, and its sessions and
    /// API tokens stop working at once (they are checked on every request).
    pub async fn set_disabled(&self, agent_id: u64, disabled: bool) -> Result<Agent, AccountError> {
        let mut agent = self.existing_agent(agent_id).await?;
        agent.disabled = disabled;
        self.store.update_agent(&agent).await?;
        tracing::info!(agent_id, disabled, "agent enabled state changed");
        Ok(agent)
    }

    pub async fn set_role(&self, agent_id: u64, role: Role) -> Result<Agent, AccountError> {
        let mut agent = self.existing_agent(agent_id).await?;
        agent.role = role;
        self.store.update_agent(&agent).await?;
        Ok(agent)
    }

    /// Replaces an agent's password (same rules as at creation).
    pub async fn set_password(&self, agent_id: u64, password: &str) -> Result<(), AccountError> {
        validate_password(password)?;
        let mut agent = self.existing_agent(agent_id).await?;
        agent.password_hash = self.hash_password(password).await?;
        self.store.update_agent(&agent).await?;
        Ok(())
    }

    // Logins and sessions.

    /// Checks an email and password and opens a session.
    ///
    /// An unknown email costs the same Argon2 verification as a known one and fails with the
    /// same [`AccountError::InvalidCredentials`], so neither the answer nor its timing tells
    /// which emails have accounts. [`AccountError::Disabled`] is returned only after the
    /// right password, so it reveals nothing to someone who does not know it.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(Agent, SessionToken), AccountError> {
        // An oversized password cannot be right (creation refuses them), and refusing it
        // before hashing bounds the work; the refusal does not depend on the email, so it
        // reveals nothing about which emails exist.
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::InvalidCredentials);
        }
        let agent = if email.len() > MAX_EMAIL_BYTES {
            None
        } else {
            self.store.agent_by_email(email).await?
        };
        let Some(agent) = agent else {
            let dummy = self
                .dummy_hash
                .get_or_try_init(|| self.hash_password(DUMMY_PASSWORD))
                .await?
                .clone();
            // The result is irrelevant: the comparison exists only to spend the same time.
            verify_password(password, dummy).await?;
            return Err(AccountError::InvalidCredentials);
        };
        if !verify_password(password, agent.password_hash.clone()).await? {
            tracing::info!(agent_id = agent.id, "login failed: wrong password");
            return Err(AccountError::InvalidCredentials);
        }
        if agent.disabled {
            tracing::info!(agent_id = agent.id, "login refused: agent disabled");
            return Err(AccountError::Disabled);
        }
        let token = random_token();
        let now = self.now_ms();
        let expires_ms = now.saturating_add(self.config.session_ttl_ms);
        self.store
            .put_session(&SessionRecord {
                token_hash: hash_token(&token),
                agent_id: agent.id,
                created_ms: now,
                expires_ms,
            })
            .await?;
        tracing::info!(agent_id = agent.id, "login succeeded");
        Ok((agent, SessionToken { token, expires_ms }))
    }

    /// The agent a session cookie belongs to, or `None` when the session is unknown,
    /// expired (it is then deleted), or its agent is gone or disabled.
    pub async fn agent_for_session(&self, token: &str) -> Result<Option<Agent>, AccountError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let token_hash = hash_token(token);
        let Some(session) = self.store.session(&token_hash).await? else {
            return Ok(None);
        };
        if session.expires_ms <= self.now_ms() {
            self.store.delete_session(&token_hash).await?;
            return Ok(None);
        }
        Ok(self
            .store
            .agent(session.agent_id)
            .await?
            .filter(|agent| !agent.disabled))
    }

    /// Ends a session. Logging out with an unknown or expired token is not an error.
    pub async fn logout(&self, token: &str) -> Result<(), AccountError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(());
        }
        self.store.delete_session(&hash_token(token)).await?;
        Ok(())
    }

    /// Deletes every expired session and returns how many; worth calling now and then (for
    /// example hourly), because sessions that are never presented again are otherwise kept.
    pub async fn purge_expired_sessions(&self) -> Result<usize, AccountError> {
        Ok(self.store.purge_expired_sessions(self.now_ms()).await?)
    }

    // API tokens.

    /// Issues an API token for an agent. Returns the stored record and the plaintext token
    /// (`plt_` followed by 43 URL-safe characters), which is shown once and never again.
    pub async fn create_api_token(
        &self,
        agent_id: u64,
        name: &str,
    ) -> Result<(ApiTokenRecord, String), AccountError> {
        let name = validate_name(name, "token name")?;
        let agent = self.existing_agent(agent_id).await?;
        if agent.disabled {
            return Err(AccountError::Disabled);
        }
        let token = format!("{API_TOKEN_PREFIX}{}", random_token());
        let record = self
            .store
            .create_api_token(NewApiTokenRecord {
                agent_id,
                name,
                token_hash: hash_token(&token),
                created_ms: self.now_ms(),
            })
            .await?;
        tracing::info!(agent_id, token_id = record.id, "API token created");
        Ok((record, token))
    }

    /// The agent an API token belongs to, or `None` when the token is unknown or revoked, or
    /// its agent is gone or disabled.
    pub async fn agent_for_api_token(&self, token: &str) -> Result<Option<Agent>, AccountError> {
        if !token.starts_with(API_TOKEN_PREFIX) || token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let Some(record) = self.store.api_token(&hash_token(token)).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .agent(record.agent_id)
            .await?
            .filter(|agent| !agent.disabled))
    }

    /// The API tokens of one agent, in id order.
    pub async fn api_tokens_for(&self, agent_id: u64) -> Result<Vec<ApiTokenRecord>, AccountError> {
        let mut tokens = self.store.list_api_tokens().await?;
        tokens.retain(|t| t.agent_id == agent_id);
        Ok(tokens)
    }

    /// Every API token, in id order (for owners and admins).
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, AccountError> {
        Ok(self.store.list_api_tokens().await?)
    }

    /// Revokes an API token; returns whether it existed. Whether the caller may revoke it
    /// (its own token, or an admin) is the caller's decision.
    pub async fn revoke_api_token(&self, id: u64) -> Result<bool, AccountError> {
        let existed = self.store.delete_api_token(id).await?;
        if existed {
            tracing::info!(token_id = id, "API token revoked");
        }
        Ok(existed)
    }

    // Sites.

    /// Creates a site. Each origin must be `http(s)://host[:port]` or `"*"`; origins are
    /// stored in canonical form (lowercase, no default port) and without duplicates. An
    /// empty list is allowed, and accepts no page until origins are added. A given key must
    /// be 3–64 characters of `A-Z a-z 0-9 _ -`; without one, a random 16-character key is
    /// generated.
    pub async fn create_site(
        &self,
        name: &str,
        origins: &[String],
        key: Option<&str>,
    ) -> Result<Site, AccountError> {
        let name = validate_name(name, "site name")?;
        let allowed_origins = validate_origins(origins)?;
        let key = match key {
            Some(key) => validate_site_key(key)?,
            None => random_site_key(),
        };
        let site = Site {
            key,
            name,
            allowed_origins,
            created_ms: self.now_ms(),
        };
        self.store.create_site(&site).await?;
        tracing::info!(site = %site.key, "site created");
        Ok(site)
    }

    pub async fn site(&self, key: &str) -> Result<Option<Site>, AccountError> {
        Ok(self.store.site(key).await?)
    }

    pub async fn list_sites(&self) -> Result<Vec<Site>, AccountError> {
        Ok(self.store.list_sites().await?)
    }

    /// The sites an agent may see: all of them for owners and admins, the granted ones for
    /// the `Agent` role, none for a disabled agent.
    pub async fn sites_for(&self, agent: &Agent) -> Result<Vec<Site>, AccountError> {
        let mut sites = self.store.list_sites().await?;
        sites.retain(|site| agent.can_access(&site.key));
        Ok(sites)
    }

    /// Replaces a site's allowed origins (validated as in [`Accounts::create_site`]).
    pub async fn set_site_origins(
        &self,
        key: &str,
        origins: &[String],
    ) -> Result<Site, AccountError> {
        let allowed_origins = validate_origins(origins)?;
        let mut site = self
            .store
            .site(key)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("site {key}")))?;
        site.allowed_origins = allowed_origins;
        self.store.update_site(&site).await?;
        Ok(site)
    }

    /// Lets an agent with the `Agent` role see a site. Granting twice is harmless.
    pub async fn grant_site(&self, agent_id: u64, site_key: &str) -> Result<Agent, AccountError> {
        if self.store.site(site_key).await?.is_none() {
            return Err(AccountError::NotFound(format!("site {site_key}")));
        }
        let mut agent = self.existing_agent(agent_id).await?;
        if !agent.sites.iter().any(|s| s == site_key) {
            agent.sites.push(site_key.to_string());
            self.store.update_agent(&agent).await?;
        }
        Ok(agent)
    }

    /// Takes a site away from an agent. Revoking a site the agent lacks is harmless.
    pub async fn revoke_site(&self, agent_id: u64, site_key: &str) -> Result<Agent, AccountError> {
        let mut agent = self.existing_agent(agent_id).await?;
        let before = agent.sites.len();
        agent.sites.retain(|s| s != site_key);
        if agent.sites.len() != before {
            self.store.update_agent(&agent).await?;
        }
        Ok(agent)
    }

    // Hashing.

    async fn hash_password(&self, password: &str) -> Result<String, AccountError> {
        let params = self.config.password_params.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            // The salt comes from rand's thread RNG (a CSPRNG seeded from the OS) rather
            // than password_hash's `OsRng`, which would need rand_core's "getrandom"
            // feature that argon2 does not expose.
            let mut salt_bytes = [0u8; 16];
            rand::rng().fill_bytes(&mut salt_bytes);
            let salt = SaltString::encode_b64(&salt_bytes)
                .map_err(|e| AccountError::Hashing(e.to_string()))?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| AccountError::Hashing(e.to_string()))
        })
        .await
        .map_err(|e| AccountError::Hashing(format!("hashing task failed: {e}")))?
    }
}

/// Verifies a password against a PHC string, with the algorithm and cost stored in it. A
/// stored hash that does not parse counts as a mismatch (and is logged), so a damaged
/// record locks one account rather than failing every login.
async fn verify_password(password: &str, hash: String) -> Result<bool, AccountError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash does not parse");
            false
        }
    })
    .await
    .map_err(|e| AccountError::Hashing(format!("hashing task failed: {e}")))
}

/// The stored form of a session or API token: lowercase hex SHA-256 of its text.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 32 random bytes as unpadded base64url (43 characters).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 12 random bytes as unpadded base64url: exactly 16 URL-safe characters.
fn random_site_key() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn validate_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim();
    let invalid = || {
        AccountError::Validation(format!(
            "{email:?} is not a valid email address (expected something like name@example.com)"
        ))
    };
    if email.len() > MAX_EMAIL_BYTES || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let domain_ok = domain.contains('.')
        && !domain.contains("..")
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if local.is_empty() || local.contains(['<', '>', ',', ';']) || !domain_ok {
        return Err(invalid());
    }
    Ok(email.to_string())
}

fn validate_name(name: &str, what: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AccountError::Validation(format!(
            "{what} must not be empty"
        )));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AccountError::Validation(format!(
            "{what} must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AccountError::Validation(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(name.to_string())
}

fn validate_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Validation(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Validation(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn validate_site_key(key: &str) -> Result<String, AccountError> {
    let ok = (3..=64).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(key.to_string())
    } else {
        Err(AccountError::Validation(format!(
            "site key {key:?} must be 3-64 characters of letters, digits, '_' or '-'"
        )))
    }
}

fn validate_origins(origins: &[String]) -> Result<Vec<String>, AccountError> {
    let mut out: Vec<String> = Vec::with_capacity(origins.len());
    for origin in origins {
        let canonical = if origin.trim() == "*" {
            "*".to_string()
        } else {
            normalize_origin(origin).ok_or_else(|| {
                AccountError::Validation(format!(
                    "{origin:?} is not a valid origin (expected http(s)://host[:port], or *)"
                ))
            })?
        };
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::redb_store::RedbStore;

    const PASSWORD: &str = "correct horse";
    const DAY_MS: i64 = 24 * 60 * 60 * 1000;

    struct Fixture {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        accounts: Accounts,
    }

    /// Accounts on a fresh store with a manual clock. Hashing uses the cheapest Argon2 cost
    /// because the default takes about a second per hash in an unoptimised test build; the
    /// default cost has its own test below.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let config = AccountsConfig::default().insecure_fast_hashing();
        let accounts = Accounts::with_config(store, config, clock.clone());
        Fixture {
            _dir: dir,
            clock,
            accounts,
        }
    }

    #[tokio::test]
    async fn default_cost_is_argon2id_recommended() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
        let accounts = Accounts::new(store);
        let agent = accounts
            .create_agent("owner@example.com", "Owner", Role::Owner, PASSWORD)
            .await
            .unwrap();
        assert!(
            agent
                .password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            agent.password_hash
        );
    }

    #[tokio::test]
    async fn hashes_of_another_cost_still_verify() {
        // Verification reads the cost from the stored hash, so lowering or raising the
        // configured cost never locks existing agents out.
        let f = fixture();
        let agent = f
            .accounts
            .create_agent("sam@example.com", "Sam", Role::Agent, PASSWORD)
            .await
            .unwrap();
        let params = PasswordParams::new(PasswordParams::MIN_M_COST * 2, 2, 1, None).unwrap();
        let other = Accounts::with_config(
            Arc::clone(f.accounts.store()),
            AccountsConfig {
                password_params: params,
                ..AccountsConfig::default()
            },
            f.clock.clone(),
        );
        let (logged_in, _) = other.login("sam@example.com", PASSWORD).await.unwrap();
        assert_eq!(logged_in.id, agent.id);
    }

    #[tokio::test]
    async fn create_agent_validates_input() {
        let f = fixture();
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "not-an-email",
                "Name",
                PASSWORD,
                "not a valid email address",
            ),
            ("a@b", "Name", PASSWORD, "not a valid email address"),
            (
                "@example.com",
                "Name",
                PASSWORD,
                "not a valid email address",
            ),
            (
                "a b@example.com",
                "Name",
                PASSWORD,
                "not a valid email address",
            ),
            (
                "a@example..com",
                "Name",
                PASSWORD,
                "not a valid email address",
            ),
            ("a@example.com", "   ", PASSWORD, "name must not be empty"),
            (
                "a@example.com",
                "Name",
                "short",
                "password must be at least 8 characters",
            ),
            (
                "a@example.com",
                "Name",
                "1234567",
                "password must be at least 8 characters",
            ),
        ];
        for (email, name, password, message) in cases {
            let err = f
                .accounts
                .create_agent(email, name, Role::Agent, password)
                .await
                .unwrap_err();
            assert!(
                matches!(err, AccountError::Validation(_)),
                "{email}: {err:?}"
            );
            assert!(err.to_string().contains(message), "{email}: {err}");
        }
        // Surrounding spaces are trimmed, and an eight-character password is enough.
        let agent = f
            .accounts
            .create_agent("  ok@example.com ", " Ok ", Role::Agent, "12345678")
            .await
            .unwrap();
        assert_eq!(
            (agent.email.as_str(), agent.name.as_str()),
            ("ok@example.com", "Ok")
        );
    }

    #[tokio::test]
    async fn duplicate_email_in_any_case_conflicts() {
        let f = fixture();
        f.accounts
            .create_agent("Sam@Example.com", "Sam", Role::Admin, PASSWORD)
            .await
            .unwrap();
        let err = f
            .accounts
            .create_agent("sam@example.COM", "Sam 2", Role::Agent, PASSWORD)
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::Conflict(_)), "{err:?}");
    }

    #[tokio::test]
    async fn login_outcomes() {
        let f = fixture();
        let agent = f
            .accounts
            .create_agent("sam@example.com", "Sam", Role::Agent, PASSWORD)
            .await
            .unwrap();
        let disabled = f
            .accounts
            .create_agent("off@example.com", "Off", Role::Agent, PASSWORD)
            .await
            .unwrap();
        f.accounts.set_disabled(disabled.id, true).await.unwrap();

        let (who, token) = f.accounts.login("SAM@example.com", PASSWORD).await.unwrap();
        assert_eq!(who.id, agent.id);
        assert_eq!(token.as_str().len(), 43);
        assert_eq!(token.expires_ms(), 1_000_000 + 14 * DAY_MS);
        assert!(
            !format!("{token:?}").contains(token.as_str()),
            "Debug must redact the token"
        );

        let failures: &[(&str, &str, &str)] = &[
            (
                "sam@example.com",
                "wrong password",
                "invalid email or password",
            ),
            ("nobody@example.com", PASSWORD, "invalid email or password"),
            ("", "", "invalid email or password"),
            (
                "sam@example.com",
                &"p".repeat(2000),
                "invalid email or password",
            ),
            (
                "off@example.com",
                "wrong password",
                "invalid email or password",
            ),
            ("off@example.com", PASSWORD, "this account is disabled"),
        ];
        for (email, password, message) in failures {
            let err = f.accounts.login(email, password).await.unwrap_err();
            assert_eq!(err.to_string(), *message, "{email} / {password}");
        }

        // Re-enabling restores access.
        f.accounts.set_disabled(disabled.id, false).await.unwrap();
        f.accounts.login("off@example.com", PASSWORD).await.unwrap();
        // A new password replaces the old one.
        f.accounts
            .set_password(agent.id, "another password")
            .await
            .unwrap();
        assert!(f.accounts.login("sam@example.com", PASSWORD).await.is_err());
        f.accounts
            .login("sam@example.com", "another password")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sessions_expire_and_log_out() {
        let f = fixture();
        let agent = f
            .accounts
            .create_agent("sam@example.com", "Sam", Role::Agent, PASSWORD)
            .await
            .unwrap();
        let (_, token) = f.accounts.login("sam@example.com", PASSWORD).await.unwrap();
        let found = f.accounts.agent_for_session(token.as_str()).await.unwrap();
        assert_eq!(found.map(|a| a.id), Some(agent.id));

        // Only the hash is stored.
        let stored = f
            .accounts
            .store()
            .session(&hash_token(token.as_str()))
            .await
            .unwrap();
        assert_eq!(stored.map(|s| s.agent_id), Some(agent.id));
        assert!(
            f.accounts
                .store()
                .session(token.as_str())
                .await
                .unwrap()
                .is_none()
        );

        for bogus in ["", "nope", &"x".repeat(1000)] {
            assert!(f.accounts.agent_for_session(bogus).await.unwrap().is_none());
        }

        // A disabled agent's session stops working at once.
        f.accounts.set_disabled(agent.id, true).await.unwrap();
        assert!(
            f.accounts
                .agent_for_session(token.as_str())
                .await
                .unwrap()
                .is_none()
        );
        f.accounts.set_disabled(agent.id, false).await.unwrap();

        f.clock.advance_ms(14 * DAY_MS - 1);
        assert!(
            f.accounts
                .agent_for_session(token.as_str())
                .await
                .unwrap()
                .is_some()
        );
        f.clock.advance_ms(1);
        assert!(
            f.accounts
                .agent_for_session(token.as_str())
                .await
                .unwrap()
                .is_none()
        );
        let hash = hash_token(token.as_str());
        assert!(
            f.accounts.store().session(&hash).await.unwrap().is_none(),
            "an expired session is deleted when presented"
        );

        let (_, token) = f.accounts.login("sam@example.com", PASSWORD).await.unwrap();
        f.accounts.logout(token.as_str()).await.unwrap();
        f.accounts.logout(token.as_str()).await.unwrap();
        assert!(
            f.accounts
                .agent_for_session(token.as_str())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn purge_removes_only_expired_sessions() {
        let f = fixture();
        f.accounts
            .create_agent("sam@example.com", "Sam", Role::Agent, PASSWORD)
            .await
            .unwrap();
        let (_, old) = f.accounts.login("sam@example.com", PASSWORD).await.unwrap();
        f.clock.advance_ms(10 * DAY_MS);
        let (_, fresh) = f.accounts.login("sam@example.com", PASSWORD).await.unwrap();
        f.clock.advance_ms(5 * DAY_MS);
        assert_eq!(f.accounts.purge_expired_sessions().await.unwrap(), 1);
        assert!(
            f.accounts
                .agent_for_session(old.as_str())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            f.accounts
                .agent_for_session(fresh.as_str())
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn api_tokens_authenticate_until_revoked() {
        let f = fixture();
        let agent = f
            .accounts
            .create_agent("bot@example.com", "Bot", Role::Admin, PASSWORD)
            .await
            .unwrap();
        let (record, token) = f.accounts.create_api_token(agent.id, " ci ").await.unwrap();
        assert!(token.starts_with("plt_") && token.len() == 47, "{token}");
        assert_eq!(record.name, "ci");
        assert_eq!(record.token_hash, hash_token(&token));
        assert!(
            !serde_json::to_string(&record.view())
                .unwrap()
                .contains(&record.token_hash)
        );

        let found = f.accounts.agent_for_api_token(&token).await.unwrap();
        assert_eq!(found.map(|a| a.id), Some(agent.id));
        // The bare random part, or a session-style token, is not an API token.
        assert!(
            f.accounts
                .agent_for_api_token(&token[4..])
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            f.accounts
                .agent_for_api_token("plt_unknown")
                .await
                .unwrap()
                .is_none()
        );

        let (other, _) = f
            .accounts
            .create_api_token(agent.id, "zapier")
            .await
            .unwrap();
        let names: Vec<String> = f
            .accounts
            .api_tokens_for(agent.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["ci", "zapier"]);
        assert!(
            f.accounts
                .api_tokens_for(agent.id + 1)
                .await
                .unwrap()
                .is_empty()
        );

        f.accounts.set_disabled(agent.id, true).await.unwrap();
        assert!(
            f.accounts
                .agent_for_api_token(&token)
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            f.accounts.create_api_token(agent.id, "more").await,
            Err(AccountError::Disabled)
        ));
        f.accounts.set_disabled(agent.id, false).await.unwrap();

        assert!(f.accounts.revoke_api_token(record.id).await.unwrap());
        assert!(!f.accounts.revoke_api_token(record.id).await.unwrap());
        assert!(
            f.accounts
                .agent_for_api_token(&token)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(f.accounts.list_api_tokens().await.unwrap(), vec![other]);

        assert!(matches!(
            f.accounts.create_api_token(999, "x").await,
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            f.accounts.create_api_token(agent.id, "").await,
            Err(AccountError::Validation(_))
        ));
    }

    #[tokio::test]
    async fn create_site_validates_and_normalises() {
        let f = fixture();
        let origins = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let generated = f
            .accounts
            .create_site(
                "Shop",
                &origins(&["https://Shop.example.com/", "https://shop.example.com:443"]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(generated.key.len(), 16);
        assert!(
            generated
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_eq!(generated.allowed_origins, ["https://shop.example.com"]);
        assert_eq!(generated.created_ms, 1_000_000);
        assert!(generated.allows_origin("https://shop.example.com"));

        let demo = f
            .accounts
            .create_site("Demo", &origins(&["*"]), Some("demo"))
            .await
            .unwrap();
        assert_eq!(demo.key, "demo");
        assert!(matches!(
            f.accounts.create_site("Again", &[], Some("demo")).await,
            Err(AccountError::Conflict(_))
        ));

        let invalid: &[(&str, &[&str], Option<&str>, &str)] = &[
            ("", &[], None, "site name must not be empty"),
            ("X", &["example.com"], None, "not a valid origin"),
            ("X", &["ftp://example.com"], None, "not a valid origin"),
            (
                "X",
                &["https://example.com/path"],
                None,
                "not a valid origin",
            ),
            ("X", &[], Some("ab"), "must be 3-64 characters"),
            ("X", &[], Some("has space"), "must be 3-64 characters"),
            ("X", &[], Some("slash/key"), "must be 3-64 characters"),
            ("X", &[], Some(&"k".repeat(65)), "must be 3-64 characters"),
        ];
        for (name, list, key, message) in invalid {
            let err = f
                .accounts
                .create_site(name, &origins(list), *key)
                .await
                .unwrap_err();
            assert!(matches!(err, AccountError::Validation(_)), "{err:?}");
            assert!(err.to_string().contains(message), "{err}");
        }
        let okay = f
            .accounts
            .create_site("Key", &[], Some(&"k".repeat(64)))
            .await
            .unwrap();
        assert_eq!(okay.key.len(), 64);

        let updated = f
            .accounts
            .set_site_origins("demo", &origins(&["http://localhost:3000"]))
            .await
            .unwrap();
        assert_eq!(f.accounts.site("demo").await.unwrap(), Some(updated));
        assert!(matches!(
            f.accounts.set_site_origins("missing", &[]).await,
            Err(AccountError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn site_access_follows_role_and_grants() {
        let f = fixture();
        let a = f
            .accounts
            .create_site("A", &[], Some("site-a"))
            .await
            .unwrap();
        let b = f
            .accounts
            .create_site("B", &[], Some("site-b"))
            .await
            .unwrap();
        let admin = f
            .accounts
            .create_agent("admin@example.com", "Admin", Role::Admin, PASSWORD)
            .await
            .unwrap();
        let agent = f
            .accounts
            .create_agent("agent@example.com", "Agent", Role::Agent, PASSWORD)
            .await
            .unwrap();

        assert_eq!(
            f.accounts.sites_for(&admin).await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        assert!(f.accounts.sites_for(&agent).await.unwrap().is_empty());

        let agent = f.accounts.grant_site(agent.id, "site-b").await.unwrap();
        let agent = f.accounts.grant_site(agent.id, "site-b").await.unwrap();
        assert_eq!(agent.sites, ["site-b"]);
        assert_eq!(f.accounts.sites_for(&agent).await.unwrap(), vec![b.clone()]);
        let stored = f.accounts.agent(agent.id).await.unwrap().unwrap();
        assert!(stored.can_access("site-b") && !stored.can_access("site-a"));

        assert!(matches!(
            f.accounts.grant_site(agent.id, "missing").await,
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            f.accounts.grant_site(999, "site-a").await,
            Err(AccountError::NotFound(_))
        ));

        let agent = f.accounts.revoke_site(agent.id, "site-b").await.unwrap();
        assert!(agent.sites.is_empty());
        let promoted = f.accounts.set_role(agent.id, Role::Admin).await.unwrap();
        assert_eq!(f.accounts.sites_for(&promoted).await.unwrap().len(), 2);
        assert_eq!(f.accounts.list_agents().await.unwrap().len(), 2);
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
