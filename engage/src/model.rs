//! The records the store persists, and the small rules that belong to them (who may see a
//! site, which origins a site accepts).
//!
//! Every record is plain data that serializes to JSON, so that the embedded store and a
//! future Redis store keep exactly the same bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The durable part of a visitor (number, visits, first seen, last visit id, identity) is the
/// tracker's [`tracker::KnownProfile`]: the store keeps exactly what the presence table needs
/// to recognise a returning visitor.
pub use tracker::{Identity, KnownProfile as Profile, PropValue};

/// One profile to write, with the keys it is stored under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub site: String,
    pub visitor_id: String,
    pub profile: Profile,
}

/// What an agent may do.
///
/// Owners and admins see every site and manage agents; the `Agent` role sees only the sites
/// listed in [`Agent::sites`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Agent,
}

impl Role {
    /// The role's name as it appears in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// Whether this role sees every site and may manage agents, sites and tokens.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Role`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of owner, admin, agent")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Parses a role name; case and surrounding spaces are ignored because people type them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            _ => Err(ParseRoleError(s.to_string())),
        }
    }
}

/// A person who uses the dashboards, as stored (password hash included).
///
/// Never serialize an `Agent` into a response: use [`Agent::view`], which leaves the hash
/// out. The hash is a normal field here because the store must persist it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// An Argon2id PHC string.
    pub password_hash: String,
    /// The site keys an agent with the `Agent` role may access; owners and admins access all.
    #[serde(default)]
    pub sites: Vec<String>,
    pub created_ms: i64,
    #[serde(default)]
    pub disabled: bool,
}

impl Agent {
    /// Whether this agent may see the site with this key.
    ///
    /// A disabled agent may see nothing, so a stale session that slipped past another check
    /// still shows no data.
    pub fn can_access(&self, site_key: &str) -> bool {
        if self.disabled {
            return false;
        }
        self.role.is_admin() || self.sites.iter().any(|s| s == site_key)
    }

    /// The public form of this agent, without the password hash.
    pub fn view(&self) -> AgentView {
        AgentView {
            id: self.id,
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role,
            sites: self.sites.clone(),
            created_ms: self.created_ms,
            disabled: self.disabled,
        }
    }
}

/// An agent's chosen availability in the console. Only `Online` agents count for the widget's
/// availability (and only while they have the console open); `Away` and `Offline` keep the
/// console working but turn the widget into the offline form when nobody else is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    #[default]
    Online,
    Away,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Away => "away",
            AgentStatus::Offline => "offline",
        }
    }
}

/// An agent as shown through the API: everything but the password hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub sites: Vec<String>,
    pub created_ms: i64,
    pub disabled: bool,
}

impl From<&Agent> for AgentView {
    fn from(agent: &Agent) -> Self {
        agent.view()
    }
}

/// An agent before the store has given it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAgentRecord {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub sites: Vec<String>,
    pub created_ms: i64,
    pub disabled: bool,
}

impl NewAgentRecord {
    /// The stored agent this record becomes once it has an id.
    pub fn with_id(self, id: u64) -> Agent {
        Agent {
            id,
            email: self.email,
            name: self.name,
            role: self.role,
            password_hash: self.password_hash,
            sites: self.sites,
            created_ms: self.created_ms,
            disabled: self.disabled,
        }
    }
}

/// A website that embeds the tracking snippet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The public key in the embed snippet: 16 random URL-safe characters, or one chosen at
    /// creation (for example "demo").
    pub key: String,
    pub name: String,
    /// Origins (`scheme://host[:port]`) whose pages may send events for this site; `"*"`
    /// allows any origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub created_ms: i64,
}

impl Site {
    /// Whether a page served from `origin` (an HTTP `Origin` header value) may send events
    /// for this site.
    ///
    /// The scheme and host are compared without regard to case, a trailing slash is ignored,
    /// and a default port (`:80` for http, `:443` for https) equals no port, because browsers
    /// leave default ports out of the `Origin` header.
    pub fn allows_origin(&self, origin: &str) -> bool {
        // Browsers send origins in canonical form and stored entries are canonical (see
        // `normalize_origin`), so a case-insensitive comparison settles nearly every beacon
        // without allocating; only a non-canonical origin takes the normalising path.
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed.trim() == "*" || allowed.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some(origin) = normalize_origin(origin) else {
            return false;
        };
        self.allowed_origins
            .iter()
            .filter_map(|allowed| normalize_origin(allowed))
            .any(|allowed| allowed == origin)
    }
}

/// Brings an origin to the canonical form `scheme://host[:port]`, or returns `None` when the
/// text is not an http(s) origin.
///
/// Canonical means a lowercase scheme and host, no trailing slash and no default port. Paths,
/// queries, fragments and user info are refused rather than dropped: an origin has none, and
/// an allowed-origins entry that has one is a mistake worth reporting.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim();
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // An IPv6 literal is bracketed and contains colons, so the port separator is the colon
    // after the closing bracket.
    let (host, port) = if let Some(after_bracket) = rest.strip_prefix('[') {
        let (inner, tail) = after_bracket.split_once(']')?;
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':')?),
        };
        (format!("[{}]", inner.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            && !host.starts_with(['.', '-'])
            && !host.ends_with('-');
        if !valid_host {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) => {
            let number: u16 = p.parse().ok().filter(|n| *n > 0)?;
            if p.starts_with('+') {
                return None;
            }
            if number.to_string() == default_port {
                Some(format!("{scheme}://{host}"))
            } else {
                Some(format!("{scheme}://{host}:{number}"))
            }
        }
    }
}

/// A logged-in dashboard session. Only the SHA-256 hash of the cookie value is stored, so a
/// copy of the database does not let anyone log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Lowercase hex SHA-256 of the session token.
    pub token_hash: String,
    pub agent_id: u64,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// An API token for scripts and integrations. Only the hash of the token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    pub id: u64,
    pub agent_id: u64,
    /// A label the agent chose ("zapier", "ci").
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub token_hash: String,
    pub created_ms: i64,
}

impl ApiTokenRecord {
    /// The public form of this token, without its hash.
    pub fn view(&self) -> ApiTokenView {
        ApiTokenView {
            id: self.id,
            agent_id: self.agent_id,
            name: self.name.clone(),
            created_ms: self.created_ms,
        }
    }
}

/// An API token before the store has given it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiTokenRecord {
    pub agent_id: u64,
    pub name: String,
    pub token_hash: String,
    pub created_ms: i64,
}

impl NewApiTokenRecord {
    /// The stored token this record becomes once it has an id.
    pub fn with_id(self, id: u64) -> ApiTokenRecord {
        ApiTokenRecord {
            id,
            agent_id: self.agent_id,
            name: self.name,
            token_hash: self.token_hash,
            created_ms: self.created_ms,
        }
    }
}

/// An API token as shown through the API: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenView {
    pub id: u64,
    pub agent_id: u64,
    pub name: String,
    pub created_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(origins: &[&str]) -> Site {
        Site {
            key: "demo".into(),
            name: "Demo".into(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            created_ms: 0,
        }
    }

    #[test]
    fn origin_matching_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["https://example.com"], "https://example.com", true),
            (&["https://example.com"], "https://EXAMPLE.com", true),
            (&["https://example.com/"], "https://example.com", true),
            (&["https://example.com"], "https://example.com/", true),
            (&["HTTPS://Example.COM"], "https://example.com", true),
            (&["https://example.com"], "http://example.com", false),
            (&["https://example.com"], "https://www.example.com", false),
            (
                &["https://example.com"],
                "https://example.com.evil.net",
                false,
            ),
            (&["https://example.com"], "https://example.com:8443", false),
            (
                &["https://example.com:8443"],
                "https://example.com:8443",
                true,
            ),
            (&["https://example.com:443"], "https://example.com", true),
            (&["http://localhost:80"], "http://localhost", true),
            (&["http://localhost:3000"], "http://localhost:3001", false),
            (&["http://[::1]:8080"], "http://[::1]:8080", true),
            (&["http://127.0.0.1:8080"], "http://127.0.0.1:8080", true),
            (&["*"], "https://anything.example", true),
            (&["*"], "null", true),
            (&[], "https://example.com", false),
            (&["https://example.com"], "null", false),
            (&["https://example.com"], "", false),
            (&["https://a.com", "https://b.com"], "https://b.com", true),
        ];
        for (allowed, origin, expected) in cases {
            assert_eq!(
                site(allowed).allows_origin(origin),
                *expected,
                "allowed {allowed:?}, origin {origin:?}"
            );
        }
    }

    #[test]
    fn normalize_origin_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://Example.com/", Some("https://example.com")),
            ("http://localhost:3000", Some("http://localhost:3000")),
            ("https://example.com:443", Some("https://example.com")),
            ("http://[::1]", Some("http://[::1]")),
            ("ftp://example.com", None),
            ("example.com", None),
            ("https://", None),
            ("https://example.com/path", None),
            ("https://user@example.com", None),
            ("https://example.com:0", None),
            ("https://example.com:99999", None),
            ("https://example.com:+80", None),
            ("https://example.com:", None),
            ("https://exa mple.com", None),
            ("https://-bad.com", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_origin(input).as_deref(),
                *expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn role_parses_and_prints() {
        for (text, role) in [
            ("owner", Role::Owner),
            (" Admin ", Role::Admin),
            ("AGENT", Role::Agent),
        ] {
            assert_eq!(text.parse::<Role>(), Ok(role));
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        let err = "boss".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role \"boss\": expected one of owner, admin, agent"
        );
        assert_eq!(serde_json::to_string(&Role::Admin).unwrap(), "\"admin\"");
    }

    #[test]
    fn agent_access_and_view() {
        let mut agent = Agent {
            id: 1,
            email: "a@example.com".into(),
            name: "A".into(),
            role: Role::Agent,
            password_hash: "$argon2id$secret".into(),
            sites: vec!["demo".into()],
            created_ms: 0,
            disabled: false,
        };
        assert!(agent.can_access("demo"));
        assert!(!agent.can_access("other"));
        agent.role = Role::Admin;
        assert!(agent.can_access("other"));
        agent.disabled = true;
        assert!(!agent.can_access("demo"));
        let json = serde_json::to_string(&agent.view()).unwrap();
        assert!(
            !json.contains("argon2"),
            "the view must not carry the hash: {json}"
        );
    }

    #[test]
    fn prop_values_are_untagged() {
        let identity = Identity {
            name: Some("Ada".into()),
            email: None,
            phone: None,
            props: vec![
                ("plan".into(), PropValue::String("pro".into())),
                ("seats".into(), PropValue::Number(3.0)),
                ("trial".into(), PropValue::Bool(false)),
            ],
        };
        let json = serde_json::to_string(&identity).unwrap();
        assert!(
            json.contains(r#"["plan","pro"],["seats",3.0],["trial",false]"#),
            "{json}"
        );
        let back: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, identity);
        // Fields added later must not break records written earlier.
        let old: Identity = serde_json::from_str(r#"{"name":"Ada"}"#).unwrap();
        assert_eq!(old.name.as_deref(), Some("Ada"));
        assert!(old.props.is_empty());
    }
}
