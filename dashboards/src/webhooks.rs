//! Webhooks ("send to CRM", issue 3 point 8): the API that manages a site's webhooks and the
//! task that delivers conversation events to them.
//!
//! The records and their log live in the store (`engage::webhooks`); this module knows the
//! wire: one JSON `POST` per event and webhook, signed with the webhook's secret
//! (`X-Porchlight-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, the key being the
//! secret's UTF-8 bytes), retried with exponential backoff, every attempt logged.
//!
//! Receivers may be `http://` or `https://`. TLS is rustls with the ring provider; a
//! receiver's certificate must chain to the system's trust store or to a root given with
//! `--webhook-ca` (a CRM behind a private CA). A certificate that does not verify is a failed
//! attempt like any other, logged with the reason.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use engage::{
    ConversationEvent, Delivery, MessageBody, NewWebhook, SystemEvent, Webhook, WebhookEvent,
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use crate::auth::CurrentAgent;
use crate::error::ApiError;
use crate::state::AppState;

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The wait before the second attempt; it doubles for each further attempt.
    pub base_delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// PEM root certificates trusted for `https://` receivers besides the system's.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            base_delay: Duration::from_secs(1),
            max_attempts: 6,
            timeout: Duration::from_secs(10),
            extra_roots_pem: None,
        }
    }
}

impl WebhookConfig {
    /// The wait before attempt `attempt` (1-based): none before the first, then base,
    /// 2×base, 4×base…
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 2).min(20);
        self.base_delay.saturating_mul(factor)
    }
}

/// Routes under `/api` for webhooks. Owners and admins only.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sites/{key}/webhooks",
            get(list_webhooks).post(create_webhook),
        )
        .route("/sites/{key}/webhooks/deliveries", get(list_deliveries))
        .route("/sites/{key}/webhooks/{id}", delete(delete_webhook))
}

/// A webhook as listings show it: without its secret, which only creation reveals.
fn summary(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "site": webhook.site,
        "url": webhook.url,
        "events": webhook.events,
        "created_ms": webhook.created_ms,
    })
}

fn check(
    state: &AppState,
    current: &CurrentAgent,
    site_key: &str,
) -> Result<std::sync::Arc<engage::Site>, ApiError> {
    let site = current.check_site(state, site_key)?;
    current.require_admin()?;
    Ok(site)
}

/// `GET /api/sites/{key}/webhooks`.
pub async fn list_webhooks(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = check(&state, &current, &site_key)?;
    let webhooks = state.store.webhooks(&site.key).await?;
    let webhooks: Vec<Value> = webhooks.iter().map(summary).collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

#[derive(Debug, Deserialize)]
pub struct CreateWebhookRequest {
    pub url: String,
    pub events: Vec<String>,
}

/// `POST /api/sites/{key}/webhooks`: 201 with the webhook and its secret, shown only here.
pub async fn create_webhook(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
    Json(request): Json<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let site = check(&state, &current, &site_key)?;
    let events = request
        .events
        .iter()
        .map(|name| name.parse::<WebhookEvent>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    let new = NewWebhook::new(&site.key, &request.url, &events, now_ms())
        .map_err(ApiError::BadRequest)?;
    // The store's check is syntactic; the client that delivers must be able to parse it too.
    reqwest::Url::parse(&new.url)
        .map_err(|error| ApiError::BadRequest(format!("invalid URL: {error}")))?;
    let webhook = state.store.create_webhook(new).await?;
    let mut body = summary(&webhook);
    body["secret"] = json!(webhook.secret);
    Ok((StatusCode::CREATED, Json(json!({ "webhook": body }))))
}

/// `DELETE /api/sites/{key}/webhooks/{id}`.
pub async fn delete_webhook(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path((site_key, id)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let site = check(&state, &current, &site_key)?;
    if state.store.delete_webhook(&site.key, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no webhook {id} on this site")))
    }
}

/// `GET /api/sites/{key}/webhooks/deliveries`: the delivery log, newest first.
pub async fn list_deliveries(
    State(state): State<AppState>,
    current: CurrentAgent,
    Path(site_key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let site = check(&state, &current, &site_key)?;
    let mut deliveries = state.store.deliveries(&site.key).await?;
    deliveries.reverse();
    Ok(Json(json!({ "deliveries": deliveries })))
}

/// The webhook events one conversation event produces.
pub fn events_of(event: &ConversationEvent) -> Vec<WebhookEvent> {
    let ConversationEvent::MessageAdded { message, .. } = event else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if message.seq == 1 {
        out.push(WebhookEvent::ConversationStarted);
    }
    if message.body.is_content() {
        out.push(WebhookEvent::MessageCreated);
    }
    if matches!(
        message.body,
        MessageBody::Event {
            event: SystemEvent::Resolved { .. }
        }
    ) {
        out.push(WebhookEvent::ConversationResolved);
    }
    out
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A random delivery id shaped like a UUID v4.
fn delivery_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An error with its causes ("error sending request: … : invalid peer certificate: …"): the
/// top-level message of a failed request rarely says why, and the log is where people look.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Installs ring as the process's default rustls crypto provider, once.
///
/// reqwest is built with rustls but without a provider of its own (the workspace picks ring;
/// see Cargo.toml), and it panics when a client is built before one is installed: call this
/// before building any `reqwest::Client` (the server does at start, `testkit::http_client`
/// for tests). A second call is a no-op.
pub fn install_tls_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Refused only when something installed a provider first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The HTTP(S) client deliveries use: no redirects (a receiver answers for itself), the
/// configured timeout, and the extra roots.
pub fn http_client(config: &WebhookConfig) -> Result<reqwest::Client, reqwest::Error> {
    install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Porchlight-Webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &config.extra_roots_pem {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem)?);
    }
    builder.build()
}

/// The delivery task: turns conversation events into webhook deliveries, each in its own task
/// so a slow receiver never holds up another. Stops (cancelling pending retries) on shutdown.
pub async fn run_webhooks(state: AppState) {
    let mut events = state.conversations.subscribe();
    let mut leads = state.leads.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    let config = state.settings.webhooks.clone();
    let client = match http_client(&config) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are off");
            return;
        }
    };
    let mut deliveries = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            received = leads.recv() => match received {
                Ok(lead) => {
                    let kind = WebhookEvent::LeadCreated;
                    let webhooks = match state.store.webhooks(&lead.site).await {
                        Ok(webhooks) => webhooks,
                        Err(error) => {
                            tracing::warn!(%error, site = lead.site, "cannot load webhooks");
                            continue;
                        }
                    };
                    for webhook in webhooks.iter().filter(|w| w.wants(kind)) {
                        let id = delivery_id();
                        let payload = json!({
                            "event": kind,
                            "delivery": id,
                            "site": lead.site,
                            "created_ms": now_ms(),
                            "data": { "lead": lead },
                        });
                        deliveries.spawn(deliver(
                            state.clone(),
                            client.clone(),
                            config.clone(),
                            webhook.clone(),
                            kind,
                            id,
                            payload.to_string(),
                        ));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "webhook task lagged; some leads were not delivered");
                }
                Err(RecvError::Closed) => break,
            },
            received = events.recv() => match received {
                Ok(event) => {
                    let kinds = events_of(&event);
                    if kinds.is_empty() {
                        continue;
                    }
                    let site = event.site().to_string();
                    let webhooks = match state.store.webhooks(&site).await {
                        Ok(webhooks) => webhooks,
                        Err(error) => {
                            tracing::warn!(%error, site, "cannot load webhooks");
                            continue;
                        }
                    };
                    let ConversationEvent::MessageAdded { conversation, message } = &event else {
                        continue;
                    };
                    for kind in kinds {
                        for webhook in webhooks.iter().filter(|w| w.wants(kind)) {
                            let id = delivery_id();
                            let payload = json!({
                                "event": kind,
                                "delivery": id,
                                "site": site,
                                "created_ms": now_ms(),
                                "data": { "conversation": conversation, "message": message },
                            });
                            deliveries.spawn(deliver(
                                state.clone(),
                                client.clone(),
                                config.clone(),
                                webhook.clone(),
                                kind,
                                id,
                                payload.to_string(),
                            ));
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "webhook task lagged; some events were not delivered");
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    deliveries.shutdown().await;
}

/// Posts one payload to one webhook until it is accepted (2xx) or the attempts run out,
/// logging every attempt.
async fn deliver(
    state: AppState,
    client: reqwest::Client,
    config: WebhookConfig,
    webhook: Webhook,
    event: WebhookEvent,
    id: String,
    body: String,
) {
    let signature = signature(&webhook.secret, body.as_bytes());
    for attempt in 1..=config.max_attempts.max(1) {
        tokio::time::sleep(config.delay_before(attempt)).await;
        let result = client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header("x-porchlight-event", event.as_str())
            .header("x-porchlight-delivery", &id)
            .header("x-porchlight-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        let (status, error, delivered) = match result {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None, true)
            }
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), Some(format!("HTTP {status}")), false)
            }
            Err(error) if error.is_timeout() => (
                None,
                Some(format!("timed out after {:?}", config.timeout)),
                false,
            ),
            Err(error) => (None, Some(error_chain(&error)), false),
        };
        let record = Delivery {
            id: id.clone(),
            webhook_id: webhook.id,
            event,
            attempt,
            status,
            error,
            at_ms: now_ms(),
            delivered,
        };
        if let Err(error) = state.store.record_delivery(&webhook.site, &record).await {
            tracing::warn!(%error, webhook = webhook.id, "cannot log a webhook delivery");
        }
        if delivered {
            return;
        }
    }
    tracing::warn!(
        webhook = webhook.id,
        delivery = id,
        "webhook delivery gave up after {} attempts",
        config.max_attempts
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let config = WebhookConfig::default();
        let delays: Vec<u64> = (1..=6).map(|a| config.delay_before(a).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 16]);
    }

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn delivery_ids_look_like_uuids() {
        let id = delivery_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
