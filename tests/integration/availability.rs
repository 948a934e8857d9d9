//! Availability (issue 3 point 6): business hours in the site's time zone with an injected
//! clock, online/offline from agents' sockets and status, widget settings validation and
//! permissions, and leads from the offline form (stored, listed, `lead.created` webhook,
//! refused for a blocked visitor).

use std::sync::Arc;
use std::time::Duration;

use engage::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{TEST_ORIGIN, TEST_SITE, TestApp, page_view};
use testkit::hooks::Receiver;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PASSWORD: &str = "a long enough password";

/// Milliseconds of a UTC date and time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    chrono_like(y, mo, d) * 86_400_000 + i64::from(h * 3600 + mi * 60) * 1000
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn chrono_like(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(if m <= 2 { y - 1 } else { y });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

/// `GET /v1/widget/settings` as the widget on the site's origin asks for it.
async fn widget(app: &TestApp) -> Value {
    let response = app
        .http
        .get(app.url(&format!("/v1/widget/settings?site={TEST_SITE}")))
        .header("origin", TEST_ORIGIN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        TEST_ORIGIN
    );
    response.json().await.expect("json")
}

async fn mode(app: &TestApp) -> String {
    widget(app).await["availability"]["mode"]
        .as_str()
        .expect("mode")
        .to_owned()
}

async fn post_lead(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/chat/leads"))
        .header("content-type", "text/plain")
        .header("origin", TEST_ORIGIN)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `check` holds, up to 5 s.
async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn business_hours_agents_and_leads() {
    // Saturday 11 April 2026, 12:00 in Warsaw (UTC+2 in summer).
    let clock = Arc::new(ManualClock::new(utc(2026, 4, 11, 10, 0)));
    let app = TestApp::start_with_clock(
        |settings| settings.webhooks.base_delay = Duration::from_millis(50),
        clock.clone(),
    )
    .await;
    let owner = app.owner_cookie().await;
    let widget_path = format!("/api/sites/{TEST_SITE}/widget");

    // Defaults before anything is stored; the embed snippet names this server.
    let (status, body) = call(&app, Method::GET, &widget_path, &owner, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["name"], "Test shop");
    assert_eq!(body["settings"]["business_hours"]["enabled"], false);
    let embed = body["embed"].as_str().expect("embed");
    assert!(
        embed.contains(&format!("http://{}/widget.js", app.addr)),
        "{embed}"
    );
    assert!(embed.contains(TEST_SITE), "{embed}");

    // Bad settings are refused with the field named.
    for (bad, field) in [
        (
            json!({ "business_hours": { "time_zone": "Mars/Base" } }),
            "settings.business_hours.time_zone: unknown time zone \"Mars/Base\"",
        ),
        (json!({ "color": "red" }), "settings.color"),
        (
            json!({ "launcher": { "offset": 1000 } }),
            "settings.launcher.offset",
        ),
        (
            json!({ "business_hours": { "days": [{ "day": "mon", "open": "17:00", "close": "09:00" }] } }),
            "settings.business_hours.days[0].close",
        ),
    ] {
        let (status, body) = call(&app, Method::PUT, &widget_path, &owner, Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.starts_with(field), "{error}");
    }

    // Mon–Fri 09:00–17:00, Europe/Warsaw.
    let days: Vec<Value> = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|day| json!({ "day": day, "open": "09:00", "close": "17:00" }))
        .collect();
    let (status, body) = call(
        &app,
        Method::PUT,
        &widget_path,
        &owner,
        Some(json!({ "settings": {
            "business_hours": { "enabled": true, "time_zone": "Europe/Warsaw", "days": days },
            "after_hours": { "mode": "message", "message": "Back on Monday" },
        }})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["settings"]["business_hours"]["time_zone"],
        "Europe/Warsaw"
    );
    assert_eq!(body["settings"]["color"], "#2563eb");

    // An agent-role agent may read but not change the settings.
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/agents",
        &owner,
        Some(
            json!({ "email": "anna@example.com", "name": "Anna", "role": "agent",
                     "password": PASSWORD, "sites": [TEST_SITE] }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let anna = app.login("anna@example.com", PASSWORD).await;
    let (status, _) = call(&app, Method::GET, &widget_path, &anna, None).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &app,
        Method::PUT,
        &widget_path,
        &anna,
        Some(json!({ "welcome": "Hello" })),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Saturday noon: after hours, with the message.
    let body = widget(&app).await;
    assert_eq!(body["availability"]["mode"], "after_hours", "{body}");
    assert_eq!(body["availability"]["hide"], false);
    assert_eq!(body["settings"]["after_hours_message"], "Back on Monday");
    assert!(body["settings"].get("business_hours").is_none());

    // An agent with an inbox socket open: still after hours on Saturday and Monday 08:30.
    let mut request = app.ws_url("/api/inbox/live").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", owner.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("inbox socket");
    assert_eq!(mode(&app).await, "after_hours");
    clock.set(utc(2026, 4, 13, 6, 30));
    assert_eq!(mode(&app).await, "after_hours");

    // Monday 10:00: online while the agent's socket is open and their status is online.
    clock.set(utc(2026, 4, 13, 8, 0));
    eventually("online", async || mode(&app).await == "online").await;
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/me/status",
        &owner,
        Some(json!({ "status": "away" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = app.get_json("/api/me", Some(&owner)).await;
    assert_eq!(me["status"], "away");
    assert_eq!(mode(&app).await, "offline");
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/me/status",
        &owner,
        Some(json!({ "status": "sleeping" })),
    )
    .await;
    assert_eq!(status, 400);
    call(
        &app,
        Method::PUT,
        "/api/me/status",
        &owner,
        Some(json!({ "status": "online" })),
    )
    .await;
    assert_eq!(mode(&app).await, "online");
    // No agent connected: offline.
    drop(socket);
    eventually("offline", async || mode(&app).await == "offline").await;

    // After hours with mode hide tells the widget to hide.
    let (status, _) = call(
        &app,
        Method::PUT,
        &widget_path,
        &owner,
        Some(json!({ "after_hours": { "mode": "hide" } })),
    )
    .await;
    assert_eq!(status, 200);
    clock.set(utc(2026, 4, 11, 10, 0));
    let body = widget(&app).await;
    assert_eq!(body["availability"]["hide"], true, "{body}");
    assert!(body["settings"].get("after_hours_message").is_none());

    // Leads: a webhook subscribed to lead.created receives the lead.
    let receiver = Receiver::start(false).await;
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/webhooks"),
        &owner,
        Some(json!({ "url": receiver.url(), "events": ["lead.created"] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_lead(
        &app,
        json!({ "site": TEST_SITE, "vid": "visitor-lead-0001", "name": "Lena",
                "email": "lena@example.com", "message": "Call me: card 4111 1111 1111 1111" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["lead"]["name"], "Lena");
    assert!(
        !body["lead"]["message"]
            .as_str()
            .unwrap()
            .contains("4111 1111 1111 1111")
    );
    let lead_id = body["lead"]["id"].as_u64().expect("id");
    let (status, body) = post_lead(
        &app,
        json!({ "site": TEST_SITE, "name": "Bad", "email": "nope", "message": "hi" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, leads) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/leads"), Some(&anna))
        .await;
    assert_eq!(status, 200, "{leads}");
    assert_eq!(leads["leads"][0]["id"], lead_id);
    assert_eq!(leads["leads"][0]["email"], "lena@example.com");

    eventually("lead.created delivery", async || {
        !receiver.requests().is_empty()
    })
    .await;
    let (headers, bytes, _) = receiver.requests()[0].clone();
    assert_eq!(headers["x-porchlight-event"], "lead.created");
    let payload: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(payload["event"], "lead.created");
    assert_eq!(payload["data"]["lead"]["id"], lead_id);

    // A blocked visitor's lead is refused.
    let (status, body) = app
        .beacon(&page_view(
            "visitor-blocked-0001",
            "visit-blocked-0001",
            "https://shop.example/",
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-blocked-0001/block"),
        &owner,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_lead(
        &app,
        json!({ "site": TEST_SITE, "vid": "visitor-blocked-0001", "name": "B",
                "email": "b@example.com", "message": "let me in" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    app.shutdown().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live visitor's widget channel, after its `ready` frame.
async fn widget_socket(app: &TestApp, visitor: &str) -> (Socket, Value) {
    use futures_util::SinkExt;
    let (status, _) = app
        .beacon(&page_view(
            visitor,
            &format!("visit-{visitor}"),
            "https://shop.example/",
        ))
        .await;
    assert_eq!(status, 200);
    let credential = app.visitor_credential(visitor).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/v1/chat/socket?site={TEST_SITE}")))
            .await
            .unwrap();
    let hello =
        json!({ "type": "hello", "site": TEST_SITE, "vid": visitor, "credential": credential });
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            hello.to_string().into(),
        ))
        .await
        .unwrap();
    let ready = next_frame(&mut socket).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    (socket, ready)
}

async fn next_frame(socket: &mut Socket) -> Value {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(3), socket.next())
            .await
            .expect("a frame within 3 s")
            .expect("socket open")
            .expect("valid frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Waits for a `settings` frame whose availability mode is `mode` (earlier ones, such as the
/// repeat a new socket gets, are skipped); returns its settings.
async fn pushed_mode(socket: &mut Socket, mode: &str) -> Value {
    loop {
        let frame = next_frame(socket).await;
        if frame["type"] == "settings" && frame["settings"]["availability"]["mode"] == mode {
            return frame["settings"].clone();
        }
    }
}

async fn inbox_socket(app: &TestApp, cookie: &str) -> Socket {
    let mut request = app.ws_url("/api/inbox/live").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("inbox socket")
        .0
}

#[tokio::test]
async fn open_widgets_hear_availability_changes_at_once() {
    // Monday 13 April 2026, 08:59 UTC; the site opens at 09:00 UTC.
    let clock = Arc::new(ManualClock::new(utc(2026, 4, 13, 8, 59)));
    let mut app = TestApp::start_with_clock(|_| {}, clock.clone()).await;
    let owner = app.owner_cookie().await;
    let (status, body) = call(
        &app,
        Method::PUT,
        &format!("/api/sites/{TEST_SITE}/widget"),
        &owner,
        Some(
            json!({ "business_hours": { "enabled": true, "time_zone": "UTC",
            "days": [{ "day": "mon", "open": "09:00", "close": "17:00" }] } }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (mut widget, ready) = widget_socket(&app, "visitor-avail-0001").await;
    assert_eq!(ready["settings"]["availability"]["mode"], "after_hours");

    // The business-hours boundary passes: offline (nobody is online yet).
    clock.set(utc(2026, 4, 13, 9, 0));
    pushed_mode(&mut widget, "offline").await;
    // An agent opens the console: online.
    let inbox = inbox_socket(&app, &owner).await;
    pushed_mode(&mut widget, "online").await;
    // Away does not count as online; back online does.
    for (status, mode) in [
        ("away", "offline"),
        ("online", "online"),
        ("offline", "offline"),
    ] {
        let (code, body) = call(
            &app,
            Method::PUT,
            "/api/me/status",
            &owner,
            Some(json!({ "status": status })),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        pushed_mode(&mut widget, mode).await;
    }
    let (code, _) = call(
        &app,
        Method::PUT,
        "/api/me/status",
        &owner,
        Some(json!({ "status": "online" })),
    )
    .await;
    assert_eq!(code, 200);
    pushed_mode(&mut widget, "online").await;
    // Edited settings reach the open widget at once.
    let (code, _) = call(
        &app,
        Method::PUT,
        &format!("/api/sites/{TEST_SITE}/widget"),
        &owner,
        Some(json!({ "welcome": "Fresh welcome" })),
    )
    .await;
    assert_eq!(code, 200);
    loop {
        let frame = next_frame(&mut widget).await;
        if frame["type"] == "settings" && frame["settings"]["welcome"] == "Fresh welcome" {
            break;
        }
    }
    // The agent closes the console: offline again.
    drop(inbox);
    pushed_mode(&mut widget, "offline").await;

    // The chosen status survives a restart.
    let (code, _) = call(
        &app,
        Method::PUT,
        "/api/me/status",
        &owner,
        Some(json!({ "status": "away" })),
    )
    .await;
    assert_eq!(code, 200);
    drop(widget);
    app.restart().await;
    let owner = app.owner_cookie().await;
    let (_, me) = app.get_json("/api/me", Some(&owner)).await;
    assert_eq!(me["status"], "away");
    let _inbox = inbox_socket(&app, &owner).await;
    let (_widget, ready) = widget_socket(&app, "visitor-avail-0002").await;
    assert_eq!(
        ready["settings"]["availability"]["mode"], "offline",
        "an away agent with the console open is not online"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn leads_are_rate_limited_per_address_and_per_site() {
    let clock = Arc::new(ManualClock::new(utc(2026, 4, 13, 12, 0)));
    let app = TestApp::start_with_clock(
        |settings| settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()],
        clock.clone(),
    )
    .await;
    let lead_from = |address: String| {
        let app = &app;
        async move {
            let response = app
                .http
                .post(app.url("/v1/chat/leads"))
                .header("content-type", "text/plain")
                .header("origin", TEST_ORIGIN)
                .header("x-forwarded-for", address)
                .body(
                    json!({ "site": TEST_SITE, "name": "Lena", "email": "lena@example.com", "message": "Call me" })
                        .to_string(),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned());
            let cors = response
                .headers()
                .get("access-control-allow-origin")
                .is_some();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, retry_after, cors, body)
        }
    };

    // Five at once from one address, then a clear 429 the widget can read (CORS included).
    for _ in 0..5 {
        assert_eq!(lead_from("81.2.69.1".into()).await.0, 201);
    }
    let (status, retry_after, cors, body) = lead_from("81.2.69.1".into()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_deref(), Some("120"));
    assert!(cors, "the refusal carries CORS headers");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many messages from your address"),
        "{body}"
    );
    // Another address is not affected; two minutes later the first may send one more.
    assert_eq!(lead_from("81.2.69.2".into()).await.0, 201);
    clock.advance_ms(120_000);
    assert_eq!(lead_from("81.2.69.1".into()).await.0, 201);
    assert_eq!(lead_from("81.2.69.1".into()).await.0, 429);

    // Per site: 60 at once however many addresses send them, then one a minute: 6 were taken
    // before the two minutes passed, which gave 2 back, and one after, so 55 are left.
    for index in 0..55 {
        let (status, _, _, body) = lead_from(format!("10.1.0.{index}")).await;
        assert_eq!(status, 201, "lead {index}: {body}");
    }
    let (status, _, _, body) = lead_from("10.2.0.1".into()).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("this site is receiving too many"),
        "{body}"
    );
    let owner = app.owner_cookie().await;
    let (_, leads) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/leads"), Some(&owner))
        .await;
    assert_eq!(leads["leads"].as_array().unwrap().len(), 62);
    app.shutdown().await;
}
