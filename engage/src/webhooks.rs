//! Webhook records ("send to CRM", issue 3 point 8): where a site's events are posted, with
//! which signing secret, and the log of delivery attempts. Delivering them over HTTP is the
//! server's business (`dashboards::webhooks`); this module only knows the records and their
//! rules.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// How many delivery attempts the log keeps per site; older ones are dropped.
pub const MAX_DELIVERIES_PER_SITE: usize = 200;
/// The longest URL a webhook may have.
pub const MAX_URL_CHARS: usize = 2048;

/// What a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    #[serde(rename = "conversation.started")]
    ConversationStarted,
    #[serde(rename = "message.created")]
    MessageCreated,
    #[serde(rename = "conversation.resolved")]
    ConversationResolved,
    /// The offline form stored a lead.
    #[serde(rename = "lead.created")]
    LeadCreated,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 4] = [
        WebhookEvent::ConversationStarted,
        WebhookEvent::MessageCreated,
        WebhookEvent::ConversationResolved,
        WebhookEvent::LeadCreated,
    ];

    /// The name in payloads, headers and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::ConversationStarted => "conversation.started",
            WebhookEvent::MessageCreated => "message.created",
            WebhookEvent::ConversationResolved => "conversation.resolved",
            WebhookEvent::LeadCreated => "lead.created",
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!(
                    "unknown webhook event {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A stored webhook of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: u64,
    pub site: String,
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Porchlight-Signature` header (its UTF-8 bytes).
    pub secret: String,
    pub events: Vec<WebhookEvent>,
    pub created_ms: i64,
}

impl Webhook {
    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events.contains(&event)
    }
}

/// A webhook before the store gives it an id. Build it with [`NewWebhook::new`], which
/// validates the URL and events and generates the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWebhook {
    pub site: String,
    pub url: String,
    pub secret: String,
    pub events: Vec<WebhookEvent>,
    pub created_ms: i64,
}

impl NewWebhook {
    /// A webhook with a fresh random secret. The URL must be `http://` or `https://` with a
    /// host; at least one event is needed (duplicates are dropped).
    pub fn new(
        site: &str,
        url: &str,
        events: &[WebhookEvent],
        created_ms: i64,
    ) -> Result<NewWebhook, String> {
        let url = validate_url(url)?;
        let mut unique = Vec::new();
        for event in events {
            if !unique.contains(event) {
                unique.push(*event);
            }
        }
        if unique.is_empty() {
            return Err("a webhook needs at least one event".into());
        }
        Ok(NewWebhook {
            site: site.to_string(),
            url,
            secret: generate_secret(),
            events: unique,
            created_ms,
        })
    }
}

/// Checks a webhook URL: `http` or `https`, a non-empty host, no whitespace or control
/// characters, at most [`MAX_URL_CHARS`]. Returns it trimmed.
pub fn validate_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!("the URL is longer than {MAX_URL_CHARS} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL cannot contain spaces or control characters".into());
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else {
        return Err("the URL must start with http:// or https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("the URL has no host".into());
    }
    Ok(url.to_string())
}

/// 32 random bytes, base64url without padding.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One delivery attempt. Every attempt of one delivery shares its `id` (the
/// `X-Porchlight-Delivery` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: u64,
    pub event: WebhookEvent,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// What went wrong: a non-2xx status, a connection error, a timeout.
    pub error: Option<String>,
    pub at_ms: i64,
    pub delivered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated() {
        assert!(validate_url("http://127.0.0.1:8080/hook").is_ok());
        assert_eq!(
            validate_url("  https://crm.example/in ").unwrap(),
            "https://crm.example/in"
        );
        for bad in [
            "ftp://x",
            "http://",
            "https:///path",
            "http://:80/",
            "crm.example",
            "http://a b",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_round_trip_by_name() {
        for event in WebhookEvent::ALL {
            assert_eq!(event.as_str().parse::<WebhookEvent>().unwrap(), event);
            assert_eq!(
                serde_json::to_value(event).unwrap(),
                serde_json::json!(event.as_str())
            );
        }
        assert!("lead.deleted".parse::<WebhookEvent>().is_err());
    }

    #[test]
    fn new_webhooks_get_a_secret_and_unique_events() {
        let hook = NewWebhook::new(
            "s",
            "http://h/x",
            &[WebhookEvent::MessageCreated, WebhookEvent::MessageCreated],
            5,
        )
        .unwrap();
        assert_eq!(hook.events, vec![WebhookEvent::MessageCreated]);
        assert_eq!(hook.secret.len(), 43);
        assert!(NewWebhook::new("s", "http://h/x", &[], 5).is_err());
    }
}
