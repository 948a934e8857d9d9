//! `POST /v1/beacon`: the wire format of beacons, its validation, CORS, and the client address.
//!
//! Everything a browser sends is untrusted. The handler reads the body under a size limit, checks
//! the content type, parses and validates every field with a message that names it, checks the
//! site and the page's origin, and only then hands a borrowed [`tracker::Beacon`] to the ingest
//! pipeline. Nothing is recorded unless the whole beacon is valid.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engage::IngestOutcome;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;
use tracker::{BeaconKind, CustomEvent, Identity, PropValue};

use crate::error::ApiError;
use crate::metrics::BeaconOutcome;
use crate::state::AppState;

/// Field limits. The widget truncates to below these; anything longer is a broken or hostile
/// client and gets a 400 that says which field is too long.
const MAX_URL: usize = 2048;
const MAX_TITLE: usize = 512;
const MAX_LANGUAGE: usize = 35;
const MAX_IDENTITY_FIELD: usize = 256;
const MAX_PROPS: usize = 50;
const MAX_PROP_KEY: usize = 64;
const MAX_PROP_VALUE: usize = 512;
const MAX_EVENT_NAME: usize = 64;
const MAX_SCREEN_SIDE: u32 = 20_000;
/// Timestamps before 2020 or more than two days ahead of the server clock are nonsense.
const MIN_TIMESTAMP_MS: i64 = 1_577_836_800_000;
const MAX_CLOCK_AHEAD_MS: i64 = 2 * 86_400_000;

#[derive(Debug, Deserialize)]
struct WireBeacon<'a> {
    #[serde(borrow)]
    site: Cow<'a, str>,
    #[serde(borrow)]
    vid: Cow<'a, str>,
    #[serde(borrow)]
    sid: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: WireKind,
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    referrer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    lang: Option<Cow<'a, str>>,
    #[serde(default)]
    screen: Option<[u32; 2]>,
    #[serde(default)]
    ts: Option<i64>,
    /// The heartbeat interval the widget is using, in ms. When it is the server's, a recorded
    /// beacon is answered `204 No Content`: there is nothing to tell the widget.
    #[serde(default)]
    hb: Option<u64>,
    #[serde(default)]
    identity: Option<WireIdentity>,
    #[serde(default)]
    event: Option<WireEvent>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum WireKind {
    Pageview,
    Heartbeat,
    Leave,
    Identify,
    Event,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireIdentity {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    props: BTreeMap<String, WireProp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    name: String,
    #[serde(default)]
    props: BTreeMap<String, WireProp>,
}

/// Property values are scalars; objects and arrays are rejected with a message.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
enum WireProp {
    String(String),
    Number(f64),
    Bool(bool),
}

/// The body of the answer to a recorded beacon: `{"ok":true,"heartbeat_ms":N}`.
pub fn ok_body(heartbeat: std::time::Duration) -> bytes::Bytes {
    bytes::Bytes::from(
        json!({ "ok": true, "heartbeat_ms": heartbeat.as_millis() as u64 }).to_string(),
    )
}

/// The handler. It takes the raw request so that it decides the status and message of every
/// failure (size, content type, JSON) itself.
pub async fn post_beacon(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    match handle(&state, peer, request).await {
        Ok((outcome, origin, widget_heartbeat)) => {
            state.metrics.beacon(outcome);
            let response = match outcome {
                // The common answer: the widget already beats at the server's interval, so
                // there is nothing to say. Only the CORS header, so that the page's fetch
                // succeeds (a response to a POST is not cached, so no `Vary` is needed).
                BeaconOutcome::Recorded
                    if widget_heartbeat == Some(state.settings.heartbeat.as_millis() as u64) =>
                {
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    if let Some(origin) = origin {
                        response
                            .headers_mut()
                            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                    }
                    return response;
                }
                // Otherwise the interval to use: the same bytes every time, encoded once at
                // start-up.
                BeaconOutcome::Recorded => (
                    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    state.beacon_ok_body.clone(),
                )
                    .into_response(),
                _ => Json(json!({
                    "ok": true,
                    "heartbeat_ms": state.settings.heartbeat.as_millis() as u64,
                    "ignored": if outcome == BeaconOutcome::Crawler { "crawler" } else { "no live visitor to update" },
                }))
                .into_response(),
            };
            with_cors(response, origin)
        }
        Err((outcome, error)) => {
            state.metrics.beacon(outcome);
            if !matches!(error, ApiError::Internal(_)) {
                tracing::debug!(%error, %peer, "beacon rejected");
            }
            error.into_response()
        }
    }
}

type Rejection = (BeaconOutcome, ApiError);

fn invalid(message: impl Into<String>) -> Rejection {
    (BeaconOutcome::Invalid, ApiError::BadRequest(message.into()))
}

/// A handled beacon: what became of it, the CORS origin to allow, and the widget's heartbeat.
type Handled = (BeaconOutcome, Option<HeaderValue>, Option<u64>);

async fn handle(
    state: &AppState,
    peer: SocketAddr,
    request: Request<Body>,
) -> Result<Handled, Rejection> {
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let limit = state.settings.max_beacon_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        (
            BeaconOutcome::TooLarge,
            ApiError::PayloadTooLarge(format!("beacon body is larger than {limit} bytes")),
        )
    })?;
    let started = Instant::now();
    if bytes.is_empty() {
        return Err(invalid("beacon body is empty; send a JSON object"));
    }
    let wire: WireBeacon<'_> = serde_json::from_slice(&bytes)
        .map_err(|error| invalid(format!("invalid beacon JSON: {error}")))?;

    let site = state.sites.get(&wire.site).ok_or_else(|| {
        if wire.site.is_empty() {
            invalid("field `site` is empty")
        } else {
            (
                BeaconOutcome::UnknownSite,
                ApiError::NotFound(format!(
                    "unknown site {:?}",
                    truncate_for_message(&wire.site)
                )),
            )
        }
    })?;
    let allow_origin = origin_allowed(&parts.headers, &site)
        .map_err(|error| (BeaconOutcome::OriginDenied, error))?;
    let now_ms = state.presence.now_ms();
    let validated = validate(&wire, now_ms)?;
    let ip = client_ip(peer.ip(), &parts.headers, &state.settings.trusted_proxies);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let beacon = tracker::Beacon {
        site: &site.key,
        visitor_id: &wire.vid,
        visit_id: &wire.sid,
        kind: validated.kind,
        url: &wire.url,
        title: wire.title.as_deref().unwrap_or(""),
        referrer: wire
            .referrer
            .as_deref()
            .filter(|referrer| !referrer.is_empty()),
        ip,
        user_agent,
        language: wire.lang.as_deref().filter(|lang| !lang.is_empty()),
        screen: validated.screen,
    };
    let outcome = state.ingest.record(&beacon).await.map_err(|error| {
        (
            BeaconOutcome::Failed,
            ApiError::Internal(anyhow::Error::new(error).context("recording a beacon")),
        )
    })?;
    state
        .metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    let outcome = match outcome {
        IngestOutcome::Recorded => BeaconOutcome::Recorded,
        IngestOutcome::Crawler => BeaconOutcome::Crawler,
        IngestOutcome::Ignored => BeaconOutcome::Ignored,
    };
    Ok((outcome, allow_origin, wire.hb))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // `text/plain` is what navigator.sendBeacon and a preflight-free fetch send.
    if essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/plain")
    {
        Ok(())
    } else {
        Err((
            BeaconOutcome::UnsupportedMediaType,
            ApiError::UnsupportedMediaType(if content_type.is_empty() {
                "missing Content-Type; send application/json or text/plain".to_owned()
            } else {
                format!(
                    "Content-Type {:?} is not accepted; send application/json or text/plain",
                    truncate_for_message(content_type)
                )
            }),
        ))
    }
}

struct Validated {
    kind: BeaconKind,
    screen: Option<(u16, u16)>,
}

fn validate(wire: &WireBeacon<'_>, now_ms: i64) -> Result<Validated, Rejection> {
    check_id("vid", &wire.vid)?;
    check_id("sid", &wire.sid)?;
    check_len("site", &wire.site, 64)?;
    check_len("url", &wire.url, MAX_URL)?;
    if !(wire.url.starts_with("http://") || wire.url.starts_with("https://")) {
        return Err(invalid("field `url` must be an absolute http(s) URL"));
    }
    if let Some(title) = &wire.title {
        check_len("title", title, MAX_TITLE)?;
    }
    if let Some(referrer) = &wire.referrer {
        check_len("referrer", referrer, MAX_URL)?;
    }
    if let Some(lang) = &wire.lang {
        check_len("lang", lang, MAX_LANGUAGE)?;
        if !lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid("field `lang` must be a language tag like en-US"));
        }
    }
    let screen = match wire.screen {
        None => None,
        Some([width, height]) if width <= MAX_SCREEN_SIDE && height <= MAX_SCREEN_SIDE => {
            Some((width as u16, height as u16))
        }
        Some(_) => {
            return Err(invalid(format!(
                "field `screen` sides must be at most {MAX_SCREEN_SIDE} pixels"
            )));
        }
    };
    if let Some(ts) = wire.ts
        && (ts < MIN_TIMESTAMP_MS || ts > now_ms + MAX_CLOCK_AHEAD_MS)
    {
        return Err(invalid(format!(
            "field `ts` ({ts}) is not a plausible time in milliseconds since 1970"
        )));
    }
    let kind = match wire.kind {
        WireKind::Pageview => BeaconKind::PageView,
        WireKind::Heartbeat => BeaconKind::Heartbeat,
        WireKind::Leave => BeaconKind::Leave,
        WireKind::Identify => {
            let identity = wire
                .identity
                .as_ref()
                .ok_or_else(|| invalid("an identify beacon needs an `identity` object"))?;
            BeaconKind::Identify(validate_identity(identity)?)
        }
        WireKind::Event => {
            let event = wire
                .event
                .as_ref()
                .ok_or_else(|| invalid("an event beacon needs an `event` object"))?;
            check_len("event.name", &event.name, MAX_EVENT_NAME)?;
            if event.name.trim().is_empty() {
                return Err(invalid("field `event.name` is empty"));
            }
            BeaconKind::Event(CustomEvent {
                name: event.name.clone(),
                props: validate_props("event.props", &event.props)?,
            })
        }
    };
    Ok(Validated { kind, screen })
}

fn validate_identity(identity: &WireIdentity) -> Result<Identity, Rejection> {
    let field = |name: &'static str, value: &Option<String>| -> Result<Option<String>, Rejection> {
        match value {
            None => Ok(None),
            Some(text) => {
                check_len(name, text, MAX_IDENTITY_FIELD)?;
                let trimmed = text.trim();
                Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
            }
        }
    };
    let email = field("identity.email", &identity.email)?;
    if let Some(email) = &email
        && !email.contains('@')
    {
        return Err(invalid("field `identity.email` is not an email address"));
    }
    Ok(Identity {
        name: field("identity.name", &identity.name)?,
        email,
        phone: field("identity.phone", &identity.phone)?,
        props: validate_props("identity.props", &identity.props)?,
    })
}

fn validate_props(
    field: &str,
    props: &BTreeMap<String, WireProp>,
) -> Result<Vec<(String, PropValue)>, Rejection> {
    if props.len() > MAX_PROPS {
        return Err(invalid(format!(
            "field `{field}` has more than {MAX_PROPS} properties"
        )));
    }
    props
        .iter()
        .map(|(key, value)| {
            if key.is_empty() || key.len() > MAX_PROP_KEY {
                return Err(invalid(format!(
                    "field `{field}` has a key that is empty or longer than {MAX_PROP_KEY} bytes"
                )));
            }
            let value = match value {
                WireProp::String(text) if text.len() > MAX_PROP_VALUE => {
                    return Err(invalid(format!(
                        "field `{field}.{key}` is longer than {MAX_PROP_VALUE} bytes"
                    )));
                }
                WireProp::String(text) => PropValue::String(text.clone()),
                WireProp::Number(number) if number.is_finite() => PropValue::Number(*number),
                WireProp::Number(_) => {
                    return Err(invalid(format!(
                        "field `{field}.{key}` is not a finite number"
                    )));
                }
                WireProp::Bool(flag) => PropValue::Bool(*flag),
            };
            Ok((key.clone(), value))
        })
        .collect()
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        Err(invalid(format!(
            "field `{field}` is {} bytes; the limit is {max}",
            value.len()
        )))
    } else {
        Ok(())
    }
}

/// Visitor and visit ids are what the widget generates: 8–64 URL-safe characters.
fn check_id(field: &str, value: &str) -> Result<(), Rejection> {
    let valid = (8..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "field `{field}` must be 8 to 64 characters of A-Z, a-z, 0-9, - and _"
        )))
    }
}

fn truncate_for_message(text: &str) -> &str {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Checks a browser request's `Origin` against the site: the site's allowed origins, or
/// Porchlight's own origin (the demo site). Requests without an `Origin` (servers, scripts)
/// pass; CORS cannot restrict them anyway. Returns the origin to echo in CORS headers.
pub fn origin_allowed(
    headers: &HeaderMap,
    site: &engage::Site,
) -> Result<Option<HeaderValue>, ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().unwrap_or("");
    if crate::auth::is_own_origin(text, headers) || site.allows_origin(text) {
        Ok(Some(origin.clone()))
    } else {
        Err(ApiError::Forbidden(format!(
            "origin {:?} is not allowed for site {:?}",
            truncate_for_message(text),
            site.key
        )))
    }
}

/// A constant, so looking the header up does not parse its name on every beacon.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The visitor's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries left of that
/// were written by the client and prove nothing.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut chosen = peer;
    for value in headers.get_all(X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for entry in text.split(',').rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                return chosen;
            };
            chosen = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    chosen
}

/// Adds the CORS answer for an allowed browser origin (see [`origin_allowed`]).
pub fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The preflight a browser sends before a beacon with `Content-Type: application/json`. The site
/// key is in the body, which a preflight does not carry, so the origin is echoed here and the
/// beacon itself is refused if its origin is not allowed for its site.
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = headers.get(header::ORIGIN).cloned() {
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        out.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_ip(peer: &str, forwarded: Option<&str>, trusted: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        if let Some(value) = forwarded {
            headers.insert("x-forwarded-for", value.parse().unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|net| net.parse().unwrap()).collect();
        let ip = client_ip(peer.parse().unwrap(), &headers, &trusted);
        assert_eq!(ip, expected.parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        check_ip("10.0.0.5", Some("81.2.69.1"), &[], "10.0.0.5");
        check_ip("10.0.0.5", Some("81.2.69.1"), &["10.0.0.0/8"], "81.2.69.1");
        check_ip(
            "10.0.0.5",
            Some("6.6.6.6, 81.2.69.1"),
            &["10.0.0.0/8"],
            "81.2.69.1",
        );
        check_ip(
            "10.0.0.5",
            Some("81.2.69.1, 10.0.0.9"),
            &["10.0.0.0/8"],
            "81.2.69.1",
        );
        check_ip("10.0.0.5", Some("garbage"), &["10.0.0.0/8"], "10.0.0.5");
        check_ip("10.0.0.5", None, &["10.0.0.0/8"], "10.0.0.5");
        check_ip("::1", Some("2a02:ff0::1"), &["::1/128"], "2a02:ff0::1");
    }
}
