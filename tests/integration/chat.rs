//! The visitor channel: credentials, resume without loss or duplicates, notes never reach the
//! visitor, one visitor cannot touch another's conversation, blocking ends the chat.

use std::time::Duration;

use engage::Content;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{OWNER_EMAIL, TEST_ORIGIN, TEST_SITE, TestApp, call, new_credential, page_view};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `POST /v1/chat/credential` with `secret`, from the site's origin; every answer (errors too)
/// must carry the CORS header, or the widget could not tell a block (403) from a lost
/// credential (409).
async fn register(app: &TestApp, visitor: &str, secret: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/chat/credential"))
        .header("origin", TEST_ORIGIN)
        .header("content-type", "text/plain")
        .body(json!({ "site": TEST_SITE, "vid": visitor, "credential": secret }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|value| value.to_str().ok()),
        Some(TEST_ORIGIN),
        "the credential answer ({status}) carries CORS for the site's origin"
    );
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The credential stored for a visitor of the test site (its hash), if any.
async fn stored_credential(app: &TestApp, visitor: &str) -> Option<String> {
    app.state()
        .store
        .visitor_credential(TEST_SITE, visitor)
        .await
        .unwrap()
}

async fn connect(app: &TestApp, visitor: &str, credential: &str, after: Value) -> (Socket, Value) {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/v1/chat/socket?site={TEST_SITE}")))
            .await
            .expect("socket connects");
    let hello = json!({ "type": "hello", "site": TEST_SITE, "vid": visitor, "credential": credential, "after": after });
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let ready = next_frame(&mut socket).await;
    (socket, ready)
}

async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Waits for the next frame of the given type, skipping others (conversation updates, typing).
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let frame = next_frame(socket).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_visitor_chats_and_resumes_without_loss_or_duplicates() {
    let app = TestApp::start().await;
    let state = app.state();
    let token = new_credential();
    let (status, _) = register(&app, "visitor-chat-0001", &token).await;
    assert_eq!(
        status, 404,
        "a visitor must be live before getting a credential"
    );
    app.view_page(
        "visitor-chat-0001",
        "visit-chat-0001",
        "https://shop.example/pricing",
    )
    .await;
    let (status, body) = register(&app, "visitor-chat-0001", &token).await;
    assert_eq!((status, &body), (201, &json!({ "created": true })));
    let (status, body) = register(&app, "visitor-chat-0001", &new_credential()).await;
    assert_eq!(status, 409, "another secret for the same visitor: {body}");

    let (mut wrong, frame) =
        connect(&app, "visitor-chat-0001", "not-the-credential", json!({})).await;
    assert_eq!(frame["type"], "error");
    assert!(frame["message"].as_str().unwrap().contains("credential"));
    drop(wrong.close(None).await);

    let (mut socket, ready) = connect(&app, "visitor-chat-0001", &token, json!({})).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["conversations"], json!([]));

    send(
        &mut socket,
        json!({ "type": "send", "client_id": "c-1", "text": "Hi! My card is 4111 1111 1111 1111" }),
    )
    .await;
    let ack = next_of(&mut socket, "ack").await;
    assert_eq!(ack["client_id"], "c-1");
    assert_eq!(ack["seq"], 1);
    let conversation_id = ack["conversation_id"].as_u64().unwrap();
    let echoed = next_of(&mut socket, "message").await;
    assert_eq!(echoed["message"]["seq"], 1);
    assert_eq!(
        echoed["message"]["body"]["text"], "Hi! My card is **** **** **** 1111",
        "masked before storage"
    );

    // A retry of the same message (as after a reconnect) is acknowledged with the same seq.
    send(&mut socket, json!({ "type": "send", "client_id": "c-1", "conversation_id": conversation_id, "text": "Hi! My card is 4111 1111 1111 1111" })).await;
    let again = next_of(&mut socket, "ack").await;
    assert_eq!(again["seq"], 1);

    // An agent answers; a note between agents never reaches the visitor.
    let owner = state
        .store
        .agent_by_email(OWNER_EMAIL)
        .await
        .unwrap()
        .unwrap();
    state
        .conversations
        .add_note(conversation_id, &owner, "VIP, offer 10 %", None)
        .await
        .unwrap();
    state
        .conversations
        .post_agent_message(
            conversation_id,
            &owner,
            Content::text("Hello! Here is 10 % off."),
            None,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let frame = next_of(&mut socket, "message").await;
        let text = frame["message"]["body"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!text.contains("VIP"), "a note reached the visitor: {frame}");
        seen.push(frame["message"]["seq"].as_u64().unwrap());
        if text.contains("10 % off") {
            assert_eq!(frame["message"]["author"]["kind"], "agent");
            break;
        }
    }
    let last_seq = *seen.last().unwrap();
    drop(socket.close(None).await);

    // Offline meanwhile: the agent writes twice; on reconnect exactly those arrive, once each.
    for text in ["Are you still there?", "We also ship to Sweden."] {
        state
            .conversations
            .post_agent_message(conversation_id, &owner, Content::text(text), None)
            .await
            .unwrap();
    }
    let (mut socket, ready) = connect(
        &app,
        "visitor-chat-0001",
        &token,
        json!({ conversation_id.to_string(): last_seq }),
    )
    .await;
    let texts: Vec<&str> = ready["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["body"]["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["Are you still there?", "We also ship to Sweden."],
        "{ready}"
    );
    assert_eq!(ready["conversations"][0]["state"], "open");

    // Blocking ends the chat and refuses new messages.
    state
        .conversations
        .block(TEST_SITE, "visitor-chat-0001", None, &owner, None)
        .await
        .unwrap();
    let frame = next_of(&mut socket, "error").await;
    assert!(
        frame["message"].as_str().unwrap().contains("cannot chat"),
        "{frame}"
    );
    assert_eq!(close_code(&mut socket).await, 4403);
    // Coming back is refused at hello, before any conversation is sent.
    let (mut socket, refused) = connect(&app, "visitor-chat-0001", &token, json!({})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(close_code(&mut socket).await, 4403);
    // The service refuses a message even from a socket that got past the door.
    let outcome = state
        .conversations
        .post_visitor_message(
            conversation_id,
            engage::VisitorRef::new(TEST_SITE, "visitor-chat-0001"),
            Content::text("hello?"),
            Some("c-2"),
        )
        .await;
    assert!(
        matches!(outcome, Err(engage::ConversationError::Blocked)),
        "{outcome:?}"
    );
    app.shutdown().await;
}

/// The close code the server ends the socket with (after any frames still queued).
async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the server closes within 5 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("closed without a code")
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Posts a visitor attachment with the credential headers, from the site's origin.
async fn upload(app: &TestApp, visitor: &str, token: &str, conversation: u64) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(&format!(
            "/v1/chat/attachments?conversation_id={conversation}"
        )))
        .header("origin", TEST_ORIGIN)
        .header("content-type", "text/plain")
        .header("x-filename", "note.txt")
        .header("x-porchlight-site", TEST_SITE)
        .header("x-porchlight-visitor", visitor)
        .header("x-porchlight-credential", token)
        .body("hello")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|value| value.to_str().ok()),
        Some(TEST_ORIGIN),
        "attachment answers carry CORS for the site's origin, errors too"
    );
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn blocking_through_the_api_stops_a_visitor_from_chatting() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let visitor = "visitor-abuse-0001";
    app.view_page(visitor, "visit-abuse-0001", "https://shop.example/")
        .await;
    let token = app.visitor_credential(visitor).await;
    let (mut socket, ready) = connect(&app, visitor, &token, json!({})).await;
    assert_eq!(ready["type"], "ready");
    send(
        &mut socket,
        json!({ "type": "send", "client_id": "a-1", "text": "You will regret this" }),
    )
    .await;
    let ack = next_of(&mut socket, "ack").await;
    let conversation = ack["conversation_id"].as_u64().unwrap();
    let (status, _) = upload(&app, visitor, &token, conversation).await;
    assert_eq!(status, 201, "attachments work before the block");

    // The agent blocks the visitor and their address through the API.
    let block_path = format!("/api/sites/{TEST_SITE}/visitors/{visitor}/block");
    let (status, body) = call(
        &app,
        Method::POST,
        &block_path,
        Some(&owner),
        Some(json!({ "ip": true, "reason": "threats" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The open widget is told and closed with the code that stops its reconnecting.
    let frame = next_of(&mut socket, "error").await;
    assert!(frame["message"].as_str().unwrap().contains("cannot chat"));
    assert_eq!(close_code(&mut socket).await, 4403);
    // A reconnect is refused at hello.
    let (mut socket, refused) = connect(&app, visitor, &token, json!({})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(close_code(&mut socket).await, 4403);
    // No attachments, no offline-form leads, no conversation started by an agent either.
    let (status, body) = upload(&app, visitor, &token, conversation).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("this visitor is blocked"))
    );
    let response = app
        .http
        .post(app.url("/v1/chat/leads"))
        .header("content-type", "text/plain")
        .body(
            json!({ "site": TEST_SITE, "vid": visitor, "name": "X", "email": "x@example.com", "message": "let me in" })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/{visitor}/conversations"),
        Some(&owner),
        Some(json!({ "text": "hello?" })),
    )
    .await;
    assert_eq!(status, 403);

    // A new visitor id from the same address is refused too (the address was blocked).
    let other = "visitor-abuse-0002";
    app.view_page(other, "visit-abuse-0002", "https://shop.example/")
        .await;
    let (status, body) = register(&app, other, &new_credential()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("this visitor is blocked"))
    );
    assert_eq!(stored_credential(&app, other).await, None);

    // Unblocking lets the visitor back into their conversation.
    let (status, _) = call(&app, Method::DELETE, &block_path, Some(&owner), None).await;
    assert_eq!(status, 204);
    let (mut socket, ready) = connect(&app, visitor, &token, json!({})).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    send(
        &mut socket,
        json!({ "type": "send", "client_id": "a-2", "conversation_id": conversation, "text": "Sorry about that" }),
    )
    .await;
    let ack = next_of(&mut socket, "ack").await;
    assert_eq!(ack["client_id"], "a-2");
    app.shutdown().await;
}

#[tokio::test]
async fn visitor_attachment_requests_pass_the_cors_preflight() {
    let app = TestApp::start().await;
    for (method, path) in [
        ("POST", "/v1/chat/attachments?conversation_id=1"),
        ("GET", "/v1/chat/attachments/1/AAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let response = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", TEST_ORIGIN)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "content-type,x-filename,x-porchlight-site,x-porchlight-visitor,x-porchlight-credential",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{method} {path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header("access-control-allow-origin"), TEST_ORIGIN);
        assert!(header("access-control-allow-methods").contains(method));
        for needed in [
            "content-type",
            "x-filename",
            "x-porchlight-site",
            "x-porchlight-visitor",
            "x-porchlight-credential",
        ] {
            assert!(
                header("access-control-allow-headers").contains(needed),
                "{path}: {needed} not allowed"
            );
        }
    }
    // The request itself from an origin the site does not allow is refused.
    let response = app
        .http
        .get(app.url("/v1/chat/attachments/1/AAAAAAAAAAAAAAAAAAAAAA"))
        .header("origin", "https://evil.example")
        .header("x-porchlight-site", TEST_SITE)
        .header("x-porchlight-visitor", "visitor-x")
        .header("x-porchlight-credential", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.shutdown().await;
}

#[tokio::test]
async fn one_visitor_cannot_read_or_post_to_anothers_conversation() {
    let app = TestApp::start().await;
    for visitor in ["visitor-anna-0001", "visitor-mallory-01"] {
        app.view_page(visitor, "visit-0000-0001", "https://shop.example/")
            .await;
    }
    let anna = app.visitor_credential("visitor-anna-0001").await;
    let mallory = app.visitor_credential("visitor-mallory-01").await;

    let (mut socket, _) = connect(&app, "visitor-anna-0001", &anna, json!({})).await;
    send(
        &mut socket,
        json!({ "type": "send", "client_id": "a-1", "text": "my private question" }),
    )
    .await;
    let conversation_id = next_of(&mut socket, "ack").await["conversation_id"]
        .as_u64()
        .unwrap();

    // Mallory's credential does not open Anna's channel, and her own cannot reach Anna's chat.
    let (_, frame) = connect(&app, "visitor-anna-0001", &mallory, json!({})).await;
    assert_eq!(frame["type"], "error");
    let (mut socket, ready) = connect(
        &app,
        "visitor-mallory-01",
        &mallory,
        json!({ conversation_id.to_string(): 0 }),
    )
    .await;
    assert_eq!(ready["messages"], json!([]), "{ready}");
    assert_eq!(ready["conversations"], json!([]));
    send(&mut socket, json!({ "type": "send", "client_id": "m-1", "conversation_id": conversation_id, "text": "injected" })).await;
    let refused = next_of(&mut socket, "error").await;
    assert_eq!(refused["client_id"], "m-1");
    let response = app
        .http
        .get(app.url(&format!("/v1/chat/attachments/{conversation_id}/whatever")))
        .header("x-porchlight-site", TEST_SITE)
        .header("x-porchlight-visitor", "visitor-anna-0001")
        .header("x-porchlight-credential", &mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let stored = app
        .state()
        .store
        .messages(conversation_id, 0, 100)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|message| !format!("{:?}", message.body).contains("injected"))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_chat_nobody_answered_is_missed_when_the_visitor_leaves() {
    let app = TestApp::start_with(|settings| {
        settings.presence.active_window_ms = 500;
        settings.presence.retention_ms = 1_000;
    })
    .await;
    app.view_page(
        "visitor-gone-0001",
        "visit-gone-0001",
        "https://shop.example/",
    )
    .await;
    let token = app.visitor_credential("visitor-gone-0001").await;
    let (mut socket, _) = connect(&app, "visitor-gone-0001", &token, json!({})).await;
    send(
        &mut socket,
        json!({ "type": "send", "client_id": "g-1", "text": "is anyone there?" }),
    )
    .await;
    let conversation_id = next_of(&mut socket, "ack").await["conversation_id"]
        .as_u64()
        .unwrap();
    drop(socket.close(None).await);

    // No beacons any more: the visitor leaves memory after the retention period.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let conversation = app
            .state()
            .store
            .conversation(conversation_id)
            .await
            .unwrap()
            .unwrap();
        if conversation.missed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not marked missed: {conversation:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_blocked_visitor_coming_back_is_in_the_blocked_segment() {
    let app = TestApp::start().await;
    let owner = app
        .state()
        .store
        .agent_by_email(OWNER_EMAIL)
        .await
        .unwrap()
        .unwrap();
    app.state()
        .conversations
        .block(
            TEST_SITE,
            "visitor-back-blocked",
            None,
            &owner,
            Some("spam"),
        )
        .await
        .unwrap();
    app.view_page(
        "visitor-back-blocked",
        "visit-back-0001",
        "https://shop.example/",
    )
    .await;
    let counts = app.state().presence.counts(TEST_SITE);
    assert_eq!((counts.all, counts.blocked), (1, 1));
    app.shutdown().await;
}

/// The widget keeps its secret before asking, so a request whose answer was lost (the page
/// was left while it was in flight) is sent again with the same secret: the server accepts
/// it, before and after a restart, and the credential then works on the socket and on
/// attachment requests. Only a different secret is refused, and it changes nothing.
#[tokio::test]
async fn a_repeated_credential_request_is_accepted_and_the_credential_works() {
    let mut app = TestApp::start().await;
    let visitor = "visitor-repeat-0001";
    app.view_page(visitor, "visit-repeat-0001", "https://shop.example/")
        .await;
    let token = new_credential();
    let (status, body) = register(&app, visitor, &token).await;
    assert_eq!((status, &body), (201, &json!({ "created": true })));
    let stored = stored_credential(&app, visitor).await;
    assert_eq!(stored.as_deref(), Some(engage::hash_token(&token).as_str()));

    // The answer was lost; the next page sends the same secret.
    let (status, body) = register(&app, visitor, &token).await;
    assert_eq!((status, &body), (200, &json!({ "created": false })));
    // After a restart (nothing cached) the store decides the same way.
    app.restart().await;
    app.view_page(visitor, "visit-repeat-0001", "https://shop.example/")
        .await;
    let (status, body) = register(&app, visitor, &token).await;
    assert_eq!((status, &body), (200, &json!({ "created": false })));

    // Another browser (or one that lost its secret) cannot replace it.
    let other = new_credential();
    let (status, body) = register(&app, visitor, &other).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already has a different credential"),
        "{body}"
    );
    assert_eq!(stored_credential(&app, visitor).await, stored);
    let (mut refused, frame) = connect(&app, visitor, &other, json!({})).await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(close_code(&mut refused).await, 4401);

    // The repeated secret opens the channel and chats, and verifies on attachment requests.
    let (mut socket, ready) = connect(&app, visitor, &token, json!({})).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    send(
        &mut socket,
        json!({ "type": "send", "client_id": "r-1", "text": "still me after a reload" }),
    )
    .await;
    let ack = next_of(&mut socket, "ack").await;
    assert_eq!(ack["client_id"], "r-1");
    let conversation = ack["conversation_id"].as_u64().unwrap();
    let (status, body) = upload(&app, visitor, &token, conversation).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = upload(&app, visitor, &other, conversation).await;
    assert_eq!(status, 401, "the refused secret verifies nowhere");
    app.shutdown().await;
}

/// A credential must be the widget's 32 random bytes as unpadded base64url (43 characters):
/// anything else is refused with 400 and a reason, and nothing is stored.
#[tokio::test]
async fn malformed_credentials_are_refused_with_a_reason() {
    let app = TestApp::start().await;
    let visitor = "visitor-malformed-01";
    app.view_page(visitor, "visit-malformed-01", "https://shop.example/")
        .await;
    let good = new_credential();
    let cases = [
        ("", "exactly 43 characters"),
        ("short", "exactly 43 characters"),
        (&good[..42], "exactly 43 characters"),
        (&format!("{good}x"), "exactly 43 characters"),
        (&format!("{}=", &good[..42]), "unpadded base64url"),
        (&format!("+{}", &good[1..]), "unpadded base64url"),
        (&format!("/{}", &good[1..]), "unpadded base64url"),
        (&format!("{}B", &good[..42]), "canonical"),
    ];
    for (secret, says) in cases {
        let (status, body) = register(&app, visitor, secret).await;
        assert_eq!(status, 400, "{secret:?}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("credential: ") && message.contains(says),
            "{secret:?}: {message}"
        );
    }
    // No credential at all (an old widget's request) says what is missing.
    let response = app
        .http
        .post(app.url("/v1/chat/credential"))
        .header("content-type", "text/plain")
        .body(json!({ "site": TEST_SITE, "vid": visitor }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("credential"),
        "{body}"
    );
    assert_eq!(stored_credential(&app, visitor).await, None);
    let (status, _) = register(&app, visitor, &good).await;
    assert_eq!(status, 201);
    app.shutdown().await;
}

/// A blocked visitor, by id or by address, gets 403 from the credential endpoint and no
/// credential is stored; the widget keeps its visitor id on 403 (see widget_credential.rs).
#[tokio::test]
async fn blocked_visitors_get_no_credential() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let live = |visitor: &'static str| {
        let app = &app;
        async move {
            let beacon = page_view(
                visitor,
                &format!("visit-{visitor}"),
                "https://shop.example/",
            );
            assert_eq!(app.beacon(&beacon).await.0, 200);
        }
    };

    // By visitor id.
    let by_id = "visitor-blocked-id";
    live(by_id).await;
    let block_path = format!("/api/sites/{TEST_SITE}/visitors/{by_id}/block");
    let (status, body) = call(
        &app,
        Method::POST,
        &block_path,
        Some(&owner),
        Some(json!({ "reason": "spam" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let secret = new_credential();
    let (status, body) = register(&app, by_id, &secret).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("this visitor is blocked"))
    );
    assert_eq!(stored_credential(&app, by_id).await, None);
    // Once the block is lifted, the same secret (the widget kept it) registers.
    let (status, _) = call(&app, Method::DELETE, &block_path, Some(&owner), None).await;
    assert_eq!(status, 204);
    let (status, _) = register(&app, by_id, &secret).await;
    assert_eq!(status, 201);

    // By address: every visitor id from a blocked address (this test's loopback) is refused,
    // a known one and a new one alike, even one that has a credential already.
    let abuser = "visitor-blocked-ip";
    live(abuser).await;
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/{abuser}/block"),
        Some(&owner),
        Some(json!({ "ip": true })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["block"]["ip"].is_string(), "{body}");
    let fresh = "visitor-same-address";
    live(fresh).await;
    for visitor in [abuser, fresh] {
        let (status, body) = register(&app, visitor, &new_credential()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("this visitor is blocked")),
            "{visitor}"
        );
        assert_eq!(stored_credential(&app, visitor).await, None, "{visitor}");
    }
    let (status, _) = register(&app, by_id, &secret).await;
    assert_eq!(
        status, 403,
        "a repeat from a blocked address is refused too"
    );
    app.shutdown().await;
}
