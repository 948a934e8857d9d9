//! The visitor channel: credentials, resume without loss or duplicates, notes never reach the
//! visitor, one visitor cannot touch another's conversation, blocking ends the chat.

use std::time::Duration;

use engage::Content;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::app::{OWNER_EMAIL, TEST_SITE, TestApp, page_view};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn credential(app: &TestApp, visitor: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/chat/credential"))
        .header("content-type", "text/plain")
        .body(json!({ "site": TEST_SITE, "vid": visitor }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
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
    let (status, _) = credential(&app, "visitor-chat-0001").await;
    assert_eq!(
        status, 404,
        "a visitor must be live before getting a credential"
    );
    assert_eq!(
        app.beacon(&page_view(
            "visitor-chat-0001",
            "visit-chat-0001",
            "https://shop.example/pricing"
        ))
        .await
        .0,
        200
    );
    let (status, body) = credential(&app, "visitor-chat-0001").await;
    assert_eq!(status, 201);
    let token = body["credential"].as_str().unwrap().to_owned();
    let (status, body) = credential(&app, "visitor-chat-0001").await;
    assert_eq!(status, 409, "issued once: {body}");

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
    let (mut socket, _) = connect(&app, "visitor-chat-0001", &token, json!({})).await;
    send(&mut socket, json!({ "type": "send", "client_id": "c-2", "conversation_id": conversation_id, "text": "hello?" })).await;
    let refused = next_of(&mut socket, "error").await;
    assert_eq!(refused["client_id"], "c-2");
    app.shutdown().await;
}

#[tokio::test]
async fn one_visitor_cannot_read_or_post_to_anothers_conversation() {
    let app = TestApp::start().await;
    for visitor in ["visitor-anna-0001", "visitor-mallory-01"] {
        assert_eq!(
            app.beacon(&page_view(
                visitor,
                "visit-0000-0001",
                "https://shop.example/"
            ))
            .await
            .0,
            200
        );
    }
    let anna = credential(&app, "visitor-anna-0001").await.1["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let mallory = credential(&app, "visitor-mallory-01").await.1["credential"]
        .as_str()
        .unwrap()
        .to_owned();

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
    assert_eq!(
        app.beacon(&page_view(
            "visitor-gone-0001",
            "visit-gone-0001",
            "https://shop.example/"
        ))
        .await
        .0,
        200
    );
    let token = credential(&app, "visitor-gone-0001").await.1["credential"]
        .as_str()
        .unwrap()
        .to_owned();
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
    assert_eq!(
        app.beacon(&page_view(
            "visitor-back-blocked",
            "visit-back-0001",
            "https://shop.example/"
        ))
        .await
        .0,
        200
    );
    let counts = app.state().presence.counts(TEST_SITE);
    assert_eq!((counts.all, counts.blocked), (1, 1));
    app.shutdown().await;
}
