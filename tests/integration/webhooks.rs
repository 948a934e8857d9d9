//! Webhooks: creating one through the API, delivery of conversation events with a verifiable
//! signature, a retry after a failing first attempt, the delivery log, and admin-only access.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use testkit::app::{TEST_SITE, TestApp, page_view};
use testkit::hooks::Receiver;

const PASSWORD: &str = "a long enough password";

/// [`testkit::app::call`] with a session cookie.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> (u16, Value) {
    testkit::app::call(app, method, path, Some(cookie), body).await
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name}"))
        .to_str()
        .expect("ascii header")
}

#[tokio::test]
async fn conversation_events_are_signed_retried_and_logged() {
    let app = TestApp::start_with(|settings| {
        settings.webhooks.base_delay = Duration::from_millis(50);
    })
    .await;
    let owner = app.owner_cookie().await;
    let receiver = Receiver::start(true).await;
    let hooks = format!("/api/sites/{TEST_SITE}/webhooks");

    // Invalid requests are refused.
    for bad in [
        json!({ "url": "ftp://crm.example/in", "events": ["message.created"] }),
        json!({ "url": receiver.url(), "events": ["nope"] }),
        json!({ "url": receiver.url(), "events": [] }),
    ] {
        let (status, body) = call(&app, Method::POST, &hooks, &owner, Some(bad)).await;
        assert_eq!(status, 400, "{body}");
    }

    let (status, body) = call(
        &app,
        Method::POST,
        &hooks,
        &owner,
        Some(json!({
            "url": receiver.url(),
            "events": ["conversation.started", "message.created", "conversation.resolved", "lead.created"],
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["webhook"]["secret"]
        .as_str()
        .expect("secret shown on creation")
        .to_owned();
    assert_eq!(secret.len(), 43, "32 bytes base64url");
    let webhook_id = body["webhook"]["id"].as_u64().expect("id");

    // The listing does not reveal the secret.
    let (status, body) = call(&app, Method::GET, &hooks, &owner, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["webhooks"].as_array().expect("list").len(), 1);
    assert!(body["webhooks"][0].get("secret").is_none(), "{body}");

    // An agent opens a conversation with a live visitor.
    let (status, body) = app
        .beacon(&page_view(
            "visitor-hook",
            "visit-hook",
            "https://shop.example/pricing",
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-hook/conversations"),
        &owner,
        Some(json!({ "text": "Hello there" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conversation_id = body["conversation"]["id"].as_u64().expect("id");

    // Two events, one of which fails once and is retried: three requests.
    let mut requests = Vec::new();
    for _ in 0..200 {
        requests = receiver.requests();
        if requests.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(requests.len(), 3, "requests received");
    let mut delivered = Vec::new();
    for (headers, body, status) in &requests {
        assert_eq!(header(headers, "content-type"), "application/json");
        assert_eq!(
            header(headers, "x-porchlight-signature"),
            sign(&secret, body),
            "the signature verifies with the secret"
        );
        let payload: Value = serde_json::from_slice(body).expect("JSON body");
        assert_eq!(payload["event"], header(headers, "x-porchlight-event"));
        assert_eq!(
            payload["delivery"],
            header(headers, "x-porchlight-delivery")
        );
        assert_eq!(payload["site"], TEST_SITE);
        assert!(payload["created_ms"].as_i64().expect("created_ms") > 0);
        assert_eq!(payload["data"]["conversation"]["id"], conversation_id);
        assert_eq!(payload["data"]["message"]["seq"], 1);
        assert_eq!(payload["data"]["message"]["body"]["text"], "Hello there");
        if *status == 200 {
            delivered.push(payload["event"].as_str().expect("event").to_owned());
        }
    }
    delivered.sort();
    assert_eq!(delivered, vec!["conversation.started", "message.created"]);
    // The failed request and its retry are one delivery.
    let failed_id = header(&requests[0].0, "x-porchlight-delivery").to_owned();
    assert_eq!(requests[0].2, 500);
    assert!(
        requests[1..]
            .iter()
            .any(|(headers, _, status)| *status == 200
                && header(headers, "x-porchlight-delivery") == failed_id),
        "the failed delivery was retried"
    );

    // The log shows both attempts of the retried delivery, and the other one.
    let log_path = format!("{hooks}/deliveries");
    let mut log = Vec::new();
    for _ in 0..100 {
        let (status, body) = call(&app, Method::GET, &log_path, &owner, None).await;
        assert_eq!(status, 200, "{body}");
        log = body["deliveries"].as_array().expect("deliveries").clone();
        if log.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.len(), 3, "{log:?}");
    let attempts: Vec<&Value> = log.iter().filter(|d| d["id"] == failed_id).collect();
    assert_eq!(attempts.len(), 2, "{log:?}");
    let first = attempts
        .iter()
        .find(|d| d["attempt"] == 1)
        .expect("attempt 1");
    assert_eq!(first["status"], 500);
    assert_eq!(first["delivered"], false);
    assert!(first["error"].is_string());
    let second = attempts
        .iter()
        .find(|d| d["attempt"] == 2)
        .expect("attempt 2");
    assert_eq!(second["status"], 200);
    assert_eq!(second["delivered"], true);
    assert!(log.iter().all(|d| d["webhook_id"] == webhook_id));

    // Resolving produces conversation.resolved.
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/conversations/{conversation_id}/resolve"),
        &owner,
        Some(json!({})),
    )
    .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let mut resolved = false;
    for _ in 0..200 {
        resolved = receiver.requests().iter().any(|(headers, _, _)| {
            header(headers, "x-porchlight-event") == "conversation.resolved"
        });
        if resolved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(resolved, "conversation.resolved delivered");

    // Deleting stops it.
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{hooks}/{webhook_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{hooks}/{webhook_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(status, 404);

    app.shutdown().await;
}

#[tokio::test]
async fn only_owners_and_admins_manage_webhooks() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/agents",
        &owner,
        Some(json!({
            "email": "agent@example.com", "name": "Agent", "role": "agent",
            "password": PASSWORD, "sites": [TEST_SITE],
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let agent = app.login("agent@example.com", PASSWORD).await;
    let hooks = format!("/api/sites/{TEST_SITE}/webhooks");
    let create = json!({ "url": "http://127.0.0.1:9/hook", "events": ["message.created"] });
    for (method, path, body) in [
        (Method::GET, hooks.clone(), None),
        (Method::POST, hooks.clone(), Some(create.clone())),
        (Method::GET, format!("{hooks}/deliveries"), None),
        (Method::DELETE, format!("{hooks}/1"), None),
    ] {
        let (status, answer) = call(&app, method.clone(), &path, &agent, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    // Without a session: 401.
    let response = app.http.get(app.url(&hooks)).send().await.expect("request");
    assert_eq!(response.status(), 401);
    app.shutdown().await;
}

/// Requests an HTTPS receiver saw: the request head and the body.
type TlsReceived = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTPS webhook receiver on loopback with a fresh self-signed certificate for 127.0.0.1:
/// it answers every request 200 and keeps each request's head and body. Returns its address,
/// the certificate (PEM) and what it received.
async fn start_tls_receiver() -> (SocketAddr, String, TlsReceived) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("address");
    let received = TlsReceived::default();
    let shared = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake: nothing to record.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                let (head, body_start) = loop {
                    let Ok(n) = tls.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&data[..end]).into_owned(), end + 4);
                    }
                };
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while data.len() < body_start + length {
                    let Ok(n) = tls.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                }
                let body = data[body_start..body_start + length].to_vec();
                shared.lock().expect("lock").push((head, body));
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, certified.cert.pem(), received)
}

#[tokio::test]
async fn deliveries_reach_https_receivers_and_check_their_certificate() {
    let (trusted, trusted_pem, trusted_received) = start_tls_receiver().await;
    let (untrusted, _, untrusted_received) = start_tls_receiver().await;
    // Only the first receiver's certificate is trusted (as with --webhook-ca).
    let app = TestApp::start_with(|settings| {
        settings.webhooks.base_delay = Duration::from_millis(20);
        settings.webhooks.max_attempts = 2;
        settings.webhooks.extra_roots_pem = Some(trusted_pem.into_bytes());
    })
    .await;
    let owner = app.owner_cookie().await;
    let hooks = format!("/api/sites/{TEST_SITE}/webhooks");
    let mut secrets = Vec::new();
    for receiver in [trusted, untrusted] {
        let (status, body) = call(
            &app,
            Method::POST,
            &hooks,
            &owner,
            Some(
                json!({ "url": format!("https://{receiver}/hook"), "events": ["message.created"] }),
            ),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        secrets.push(body["webhook"]["secret"].as_str().unwrap().to_owned());
    }
    let (status, _) = app
        .beacon(&page_view(
            "visitor-tls",
            "visit-tls",
            "https://shop.example/",
        ))
        .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-tls/conversations"),
        &owner,
        Some(json!({ "text": "Over TLS" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The trusted receiver gets the signed delivery over TLS.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (head, body) = loop {
        if let Some(first) = trusted_received.lock().expect("lock").first().cloned() {
            break first;
        }
        assert!(tokio::time::Instant::now() < deadline, "no https delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let signature = head
        .lines()
        .find_map(|line| line.strip_prefix("x-porchlight-signature: "))
        .expect("signature header");
    assert_eq!(signature, sign(&secrets[0], &body));
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["data"]["message"]["body"]["text"], "Over TLS");

    // The untrusted one is never sent the event: its certificate does not verify, which the
    // delivery log says.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, log) = call(
            &app,
            Method::GET,
            &format!("{hooks}/deliveries"),
            &owner,
            None,
        )
        .await;
        let failures: Vec<&Value> = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["delivered"] == false)
            .collect();
        if failures.len() == 2 {
            for failure in failures {
                let error = failure["error"].as_str().unwrap_or("").to_lowercase();
                assert!(error.contains("certificate"), "{failure}");
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(untrusted_received.lock().expect("lock").is_empty());
    app.shutdown().await;
}
