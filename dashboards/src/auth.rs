//! Who is calling: the console's session cookie or a script's API token, and what they may see.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use engage::Agent;

use crate::error::ApiError;
use crate::state::AppState;

/// The name of the console's session cookie.
pub const SESSION_COOKIE: &str = "pl_session";

/// An authenticated agent. Extracting it fails with 401 unless the request carries a valid
/// session cookie or `Authorization: Bearer <API token>`.
#[derive(Debug, Clone)]
pub struct CurrentAgent {
    pub agent: Agent,
    /// How the request was authenticated; a WebSocket opened with a cookie must come from our
    /// own pages (checked by the live endpoint).
    pub via_cookie: bool,
}

impl CurrentAgent {
    /// Fails with 403 unless the agent may see the site, and 404 if there is no such site.
    pub fn check_site(
        &self,
        state: &AppState,
        site_key: &str,
    ) -> Result<std::sync::Arc<engage::Site>, ApiError> {
        let site = state.sites.get(site_key);
        match site {
            Some(site) if self.agent.can_access(&site.key) => Ok(site),
            // The same answer for "no such site" and "not yours" would hide which sites exist,
            // but an agent who can list their own sites gains nothing from that; a precise
            // status helps API users more.
            Some(_) => Err(ApiError::Forbidden(format!(
                "you have no access to site {site_key:?}"
            ))),
            None => Err(ApiError::NotFound(format!("no site with key {site_key:?}"))),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if matches!(self.agent.role, engage::Role::Owner | engage::Role::Admin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only an owner or admin may do this".into(),
            ))
        }
    }
}

/// The session token from the `Cookie` header, if any.
pub fn session_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl FromRequestParts<AppState> for CurrentAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(parts) {
            return match state.accounts.agent_for_api_token(token).await? {
                Some(agent) => Ok(CurrentAgent {
                    agent,
                    via_cookie: false,
                }),
                None => Err(ApiError::Unauthorized),
            };
        }
        if let Some(token) = session_token(parts) {
            return match state.accounts.agent_for_session(token).await? {
                Some(agent) => Ok(CurrentAgent {
                    agent,
                    via_cookie: true,
                }),
                None => Err(ApiError::Unauthorized),
            };
        }
        Err(ApiError::Unauthorized)
    }
}

/// Whether a browser `Origin` is Porchlight's own (the scheme-less part equals this request's
/// `Host`): the console, and the demo site served by the binary.
pub fn is_own_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// For WebSockets authenticated by the session cookie: a cookie rides along with any page's
/// WebSocket, so a browser's `Origin` must be our own. Scripts and tests send none.
pub fn origin_matches_host(headers: &HeaderMap) -> bool {
    match headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
    {
        None => true,
        Some(origin) => is_own_origin(origin, headers),
    }
}
