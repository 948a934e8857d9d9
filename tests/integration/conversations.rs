//! The agents' conversation API: opening a chat with a live visitor, notes, masking, resolve
//! permissions, site access, blocking, tags and read marks, attachments, the inbox's live
//! channel, and authentication on every endpoint.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{TEST_SITE, TestApp, call, page_view};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PASSWORD: &str = "a long enough password";

async fn post(app: &TestApp, path: &str, cookie: &str, body: Value) -> (u16, Value) {
    call(app, Method::POST, path, Some(cookie), Some(body)).await
}

/// Creates an agent with the `agent` role and access to `sites`; returns their id and cookie.
async fn agent(app: &TestApp, owner: &str, email: &str, sites: &[&str]) -> (u64, String) {
    let (status, body) = post(
        app,
        "/api/agents",
        owner,
        json!({ "email": email, "name": email, "role": "agent", "password": PASSWORD, "sites": sites }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["agent"]["id"].as_u64().expect("agent id");
    (id, app.login(email, PASSWORD).await)
}

async fn my_id(app: &TestApp, cookie: &str) -> u64 {
    let (status, body) = app.get_json("/api/me", Some(cookie)).await;
    assert_eq!(status, 200);
    body["agent"]["id"].as_u64().expect("id")
}

/// Makes a visitor live on the test site.
async fn visit(app: &TestApp, visitor: &str) {
    let (status, body) = app
        .beacon(&page_view(
            visitor,
            &format!("visit-{visitor}"),
            "https://shop.example/pricing",
        ))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Opens a conversation as the agent behind `cookie`; returns its id.
async fn start(app: &TestApp, cookie: &str, visitor: &str, text: &str) -> u64 {
    let (status, body) = post(
        app,
        &format!("/api/sites/{TEST_SITE}/visitors/{visitor}/conversations"),
        cookie,
        json!({ "text": text }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["conversation"]["id"]
        .as_u64()
        .expect("conversation id")
}

async fn counts(app: &TestApp, cookie: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/counts"), Some(cookie))
        .await;
    assert_eq!(status, 200);
    body["counts"].clone()
}

/// Waits until a segment count of the test site reaches `want`.
async fn wait_for_count(app: &TestApp, cookie: &str, segment: &str, want: u64) {
    for _ in 0..100 {
        if counts(app, cookie).await[segment] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "segment {segment} never reached {want}: {}",
        counts(app, cookie).await
    );
}

async fn messages(app: &TestApp, cookie: &str, id: u64) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/api/conversations/{id}/messages"), Some(cookie))
        .await;
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().expect("messages").clone()
}

#[tokio::test]
async fn an_agent_opens_a_conversation_with_a_live_visitor() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let owner_id = my_id(&app, &owner).await;
    visit(&app, "visitor-conv-0001").await;

    let (status, body) = post(
        &app,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-conv-0001/conversations"),
        &owner,
        json!({ "text": "Hi! 10% off the annual plan today.", "client_id": "offer-1" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["conversation"]["id"].as_u64().unwrap();
    assert_eq!(body["conversation"]["assigned_agent"], owner_id);
    assert_eq!(body["conversation"]["state"], "open");
    assert_eq!(
        body["conversation"]["page_url"],
        "https://shop.example/pricing"
    );
    assert_eq!(
        body["message"]["body"]["text"],
        "Hi! 10% off the annual plan today."
    );
    // A retry with the same client id does not add a message.
    let (status, again) = post(
        &app,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-conv-0001/conversations"),
        &owner,
        json!({ "text": "Hi! 10% off the annual plan today.", "client_id": "offer-1" }),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["message"]["seq"], body["message"]["seq"]);

    // The visitor is on chat in the live panel.
    wait_for_count(&app, &owner, "on_chat", 1).await;

    // The inbox's "mine" tab lists it with the live visitor beside it.
    let (status, inbox) = app.get_json("/api/inbox?tab=mine", Some(&owner)).await;
    assert_eq!(status, 200, "{inbox}");
    let listed = inbox["conversations"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{inbox}");
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["visitor"]["id"], "visitor-conv-0001");
    assert_eq!(listed[0]["visitor"]["online"], true);
    assert!(listed[0]["visitor"]["number"].as_u64().is_some());
    assert_eq!(inbox["counts"]["mine"]["total"], 1);
    assert_eq!(inbox["counts"]["unassigned"]["total"], 0);
    let (_, others) = app
        .get_json(
            &format!("/api/inbox?site={TEST_SITE}&tab=others"),
            Some(&owner),
        )
        .await;
    assert_eq!(others["conversations"], json!([]));
    let (status, body) = app.get_json("/api/inbox?tab=nonsense", Some(&owner)).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown inbox tab")
    );

    // The conversation, and the visitor's past conversations.
    let (status, body) = app
        .get_json(&format!("/api/conversations/{id}"), Some(&owner))
        .await;
    assert_eq!(
        (status, body["conversation"]["id"].clone()),
        (200, json!(id))
    );
    let (status, body) = app
        .get_json(
            &format!("/api/sites/{TEST_SITE}/visitors/visitor-conv-0001/conversations"),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["conversations"][0]["id"], id);

    // A note is stored and listed for agents; a card number is masked before it is stored.
    let (status, note) = post(
        &app,
        &format!("/api/conversations/{id}/messages"),
        &owner,
        json!({ "text": "Looks like a big account", "note": true }),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["message"]["body"]["type"], "note");
    let (status, card) = post(
        &app,
        &format!("/api/conversations/{id}/messages"),
        &owner,
        json!({ "text": "Is your card 4111 1111 1111 1111?" }),
    )
    .await;
    assert_eq!(status, 201, "{card}");
    let stored = messages(&app, &owner, id).await;
    assert!(
        stored.iter().any(|m| m["body"]["type"] == "note"
            && m["body"]["text"] == "Looks like a big account"),
        "{stored:?}"
    );
    let card_text = stored
        .iter()
        .find_map(|m| {
            m["body"]["text"]
                .as_str()
                .filter(|t| t.starts_with("Is your card"))
        })
        .expect("the card message");
    assert!(!card_text.contains("4111 1111"), "{card_text}");
    assert!(card_text.ends_with("1111?"), "{card_text}");
    // Paging: after the last seq there is nothing.
    let last = stored.last().unwrap()["seq"].as_u64().unwrap();
    let (_, after) = app
        .get_json(
            &format!("/api/conversations/{id}/messages?after={last}&limit=10"),
            Some(&owner),
        )
        .await;
    assert_eq!(after["messages"], json!([]));

    // An empty message and an unknown field are refused with a reason.
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{id}/messages"),
        &owner,
        json!({ "text": "   " }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(
        &app,
        &format!("/api/conversations/{id}/messages"),
        &owner,
        json!({ "text": "hi", "bogus": 1 }),
    )
    .await;
    assert!(status == 400 || status == 422, "{status}");

    // Resolving takes the visitor off chat.
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{id}/resolve"),
        &owner,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["state"], "resolved");
    wait_for_count(&app, &owner, "on_chat", 0).await;
    let (_, inbox) = app.get_json("/api/inbox?tab=resolved", Some(&owner)).await;
    assert_eq!(inbox["conversations"][0]["id"], id);
    assert_eq!(inbox["counts"]["mine"]["total"], 0);
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{id}/reopen"),
        &owner,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["conversation"]["state"].clone()),
        (200, json!("open"))
    );
    wait_for_count(&app, &owner, "on_chat", 1).await;
    app.shutdown().await;
}

#[tokio::test]
async fn tags_read_marks_and_typing() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let owner_id = my_id(&app, &owner).await;
    visit(&app, "visitor-tags-0001").await;
    let id = start(&app, &owner, "visitor-tags-0001", "Can I help?").await;

    let (status, body) = call(
        &app,
        Method::PUT,
        &format!("/api/conversations/{id}/tags"),
        Some(&owner),
        Some(json!({ "tags": ["VIP", " vip ", "Sales", ""] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["tags"], json!(["vip", "sales"]));
    let (_, tagged) = app.get_json("/api/inbox?tag=VIP", Some(&owner)).await;
    assert_eq!(tagged["conversations"].as_array().unwrap().len(), 1);
    let (_, untagged) = app.get_json("/api/inbox?tag=support", Some(&owner)).await;
    assert_eq!(untagged["conversations"], json!([]));
    let (status, body) = call(
        &app,
        Method::PUT,
        &format!("/api/conversations/{id}/tags"),
        Some(&owner),
        Some(json!({ "tags": ["x".repeat(40)] })),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // The visitor answers (through the service, as the widget channel would): unread.
    let visitor = engage::VisitorRef::new(TEST_SITE, "visitor-tags-0001");
    let reply = app
        .state()
        .conversations
        .post_visitor_message(id, visitor, engage::Content::text("Yes please"), None)
        .await
        .expect("visitor reply");
    let (_, inbox) = app.get_json("/api/inbox", Some(&owner)).await;
    assert_eq!(inbox["counts"]["mine"]["unread"], 1, "{inbox}");
    assert_eq!(inbox["conversations"][0]["unread"], true);
    // Text search finds the visitor's words.
    let (_, found) = app.get_json("/api/inbox?q=please", Some(&owner)).await;
    assert_eq!(found["conversations"].as_array().unwrap().len(), 1);
    let (_, missing) = app.get_json("/api/inbox?q=refund", Some(&owner)).await;
    assert_eq!(missing["conversations"], json!([]));

    let (status, body) = post(
        &app,
        &format!("/api/conversations/{id}/read"),
        &owner,
        json!({ "seq": reply.message.seq }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["conversation"]["agent_read_seq"]
            .as_array()
            .unwrap()
            .contains(&json!([owner_id, reply.message.seq])),
        "{body}"
    );
    let (_, inbox) = app.get_json("/api/inbox", Some(&owner)).await;
    assert_eq!(inbox["counts"]["mine"]["unread"], 0, "{inbox}");

    let (status, _) = post(
        &app,
        &format!("/api/conversations/{id}/typing"),
        &owner,
        json!({ "typing": true }),
    )
    .await;
    assert_eq!(status, 204);
    app.shutdown().await;
}

#[tokio::test]
async fn only_permitted_agents_resolve() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let (anna_id, anna) = agent(&app, &owner, "anna@example.com", &[TEST_SITE]).await;
    let (_, ben) = agent(&app, &owner, "ben@example.com", &[TEST_SITE]).await;
    visit(&app, "visitor-perm-0001").await;
    visit(&app, "visitor-perm-0002").await;

    // The owner's conversation: Ben has access but is not assigned.
    let owners = start(&app, &owner, "visitor-perm-0001", "Hello from the owner").await;
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{owners}/resolve"),
        &ben,
        json!({}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{owners}/resolve"),
        &owner,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["conversation"]["state"].clone()),
        (200, json!("resolved"))
    );
    // Any agent with access may reopen.
    let (status, _) = post(
        &app,
        &format!("/api/conversations/{owners}/reopen"),
        &ben,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);

    // Anna's own conversation: she may resolve it, Ben may not.
    let annas = start(&app, &anna, "visitor-perm-0002", "Hello from Anna").await;
    let (status, _) = post(
        &app,
        &format!("/api/conversations/{annas}/resolve"),
        &ben,
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{annas}/resolve"),
        &anna,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["conversation"]["state"].clone()),
        (200, json!("resolved"))
    );

    // Inviting, joining and leaving.
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{owners}/invite"),
        &owner,
        json!({ "agent_id": anna_id }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"]["invited"], json!([anna_id]));
    let (status, _) = post(
        &app,
        &format!("/api/conversations/{owners}/invite"),
        &owner,
        json!({ "agent_id": 999_999 }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{owners}/join"),
        &anna,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["conversation"]["participants"]
            .as_array()
            .unwrap()
            .contains(&json!(anna_id))
    );
    let (_, mine) = app.get_json("/api/inbox?tab=mine", Some(&anna)).await;
    assert_eq!(mine["conversations"][0]["id"], owners);
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{owners}/leave"),
        &anna,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !body["conversation"]["participants"]
            .as_array()
            .unwrap()
            .contains(&json!(anna_id))
    );
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{owners}/open"),
        &anna,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_agent_without_access_to_the_site_sees_nothing_of_it() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let (_, outsider) = agent(&app, &owner, "outsider@example.com", &[]).await;
    visit(&app, "visitor-acl-0001").await;
    let id = start(&app, &owner, "visitor-acl-0001", "Hello").await;

    for path in [
        format!("/api/conversations/{id}"),
        format!("/api/conversations/{id}/messages"),
        format!("/api/inbox?site={TEST_SITE}"),
        format!("/api/sites/{TEST_SITE}/visitors/visitor-acl-0001/conversations"),
        format!("/api/sites/{TEST_SITE}/blocks"),
        format!("/api/conversations/{id}/attachments/AAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let (status, body) = app.get_json(&path, Some(&outsider)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    for (path, body) in [
        (
            format!("/api/conversations/{id}/messages"),
            json!({ "text": "sneaky" }),
        ),
        (
            format!("/api/conversations/{id}/messages"),
            json!({ "text": "sneaky", "note": true }),
        ),
        (format!("/api/conversations/{id}/join"), json!({})),
        (format!("/api/conversations/{id}/resolve"), json!({})),
        (format!("/api/conversations/{id}/read"), json!({ "seq": 1 })),
        (
            format!("/api/conversations/{id}/typing"),
            json!({ "typing": true }),
        ),
        (
            format!("/api/sites/{TEST_SITE}/visitors/visitor-acl-0001/conversations"),
            json!({ "text": "hi" }),
        ),
        (
            format!("/api/sites/{TEST_SITE}/visitors/visitor-acl-0001/block"),
            json!({ "ip": false }),
        ),
    ] {
        let (status, answer) = post(&app, &path, &outsider, body).await;
        assert_eq!(status, 403, "POST {path}: {answer}");
    }
    // The unfiltered inbox covers only their own sites: empty.
    let (status, inbox) = app.get_json("/api/inbox", Some(&outsider)).await;
    assert_eq!(status, 200);
    assert_eq!(inbox["conversations"], json!([]));
    assert_eq!(inbox["counts"]["unassigned"]["total"], 0);
    // Nothing leaked into the conversation.
    assert!(
        messages(&app, &owner, id)
            .await
            .iter()
            .all(|m| m["body"]["text"] != "sneaky")
    );
    // A conversation that does not exist is 404.
    let (status, _) = app
        .get_json("/api/conversations/987654", Some(&owner))
        .await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

#[tokio::test]
async fn blocking_a_visitor_stops_chats_and_fills_the_blocked_segment() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    visit(&app, "visitor-block-0001").await;
    let block_path = format!("/api/sites/{TEST_SITE}/visitors/visitor-block-0001/block");

    let (status, body) = post(
        &app,
        &block_path,
        &owner,
        json!({ "ip": true, "reason": "abusive" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["block"]["visitor_id"], "visitor-block-0001");
    assert_eq!(body["block"]["ip"], "127.0.0.1");
    assert_eq!(body["block"]["reason"], "abusive");
    assert_eq!(counts(&app, &owner).await["blocked"], 1);
    let (_, blocks) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/blocks"), Some(&owner))
        .await;
    assert_eq!(blocks["blocks"][0]["visitor_id"], "visitor-block-0001");

    let (status, body) = post(
        &app,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-block-0001/conversations"),
        &owner,
        json!({ "text": "hello?" }),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "this visitor is blocked");
    // The address was blocked too: another visitor id from it is refused as well.
    visit(&app, "visitor-block-0002").await;
    let (status, _) = post(
        &app,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-block-0002/conversations"),
        &owner,
        json!({ "text": "hello?" }),
    )
    .await;
    assert_eq!(status, 403);

    let (status, _) = call(&app, Method::DELETE, &block_path, Some(&owner), None).await;
    assert_eq!(status, 204);
    assert_eq!(counts(&app, &owner).await["blocked"], 0);
    let (_, blocks) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/blocks"), Some(&owner))
        .await;
    assert_eq!(blocks["blocks"], json!([]));
    start(&app, &owner, "visitor-block-0001", "Welcome back").await;
    app.shutdown().await;
}

#[tokio::test]
async fn attachments_round_trip_safely() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    visit(&app, "visitor-file-0001").await;
    let id = start(&app, &owner, "visitor-file-0001", "Here is the quote").await;
    let upload = |bytes: Vec<u8>, mime: &'static str, name: &'static str| {
        app.http
            .post(app.url(&format!("/api/conversations/{id}/attachments")))
            .header("cookie", &owner)
            .header("content-type", mime)
            .header("x-filename", name)
            .body(bytes)
            .send()
    };

    // An image: previewed inline.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake image".to_vec();
    let response = upload(png.clone(), "image/png", "r%C3%A9sum%C3%A9.png")
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let image = &body["attachment"];
    assert_eq!(image["name"], "résumé.png");
    assert_eq!(image["image"], true);
    assert_eq!(image["mime"], "image/png");
    let response = app
        .http
        .get(app.url(&format!(
            "/api/conversations/{id}/attachments/{}",
            image["id"].as_str().unwrap()
        )))
        .header("cookie", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "default-src 'none'");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("inline"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''r%C3%A9sum%C3%A9.png"),
        "{disposition}"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), png.as_slice());

    // HTML claiming to be a page: stored as an opaque download.
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let response = upload(html.clone(), "text/html", "page.html")
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let file = body["attachment"].clone();
    assert_eq!(file["image"], false);
    assert_eq!(file["mime"], "application/octet-stream");
    let response = app
        .http
        .get(app.url(&format!(
            "/api/conversations/{id}/attachments/{}",
            file["id"].as_str().unwrap()
        )))
        .header("cookie", &owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let disposition = response.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(response.bytes().await.unwrap().as_ref(), html.as_slice());

    // Posting the file into the chat.
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{id}/messages"),
        &owner,
        json!({ "attachment_id": image["id"], "text": "the quote" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["message"]["body"]["type"], "attachment");
    assert_eq!(body["message"]["body"]["attachment"]["id"], image["id"]);

    // Over 2 MB: refused with a clear message.
    let response = upload(vec![b'a'; 2 * 1024 * 1024 + 1024], "text/plain", "big.txt")
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "attachment is larger than 2 MB");

    // Unknown attachment ids and path tricks are 404.
    for bad in ["AAAAAAAAAAAAAAAAAAAAAA", "..%2F..%2Fporchlight.redb"] {
        let (status, _) = app
            .get_json(
                &format!("/api/conversations/{id}/attachments/{bad}"),
                Some(&owner),
            )
            .await;
        assert_eq!(status, 404, "{bad}");
    }
    app.shutdown().await;
}

async fn open_inbox(app: &TestApp, cookie: &str, origin: Option<&str>) -> Result<Socket, u16> {
    let mut request = app.ws_url("/api/inbox/live").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("unexpected WebSocket error: {error}"),
    }
}

async fn next_frame(socket: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        let message = match tokio::time::timeout(within, socket.next()).await {
            Err(_) => return None,
            Ok(message) => message.expect("socket open").expect("valid frame"),
        };
        if let Message::Text(text) = message {
            return Some(serde_json::from_str(&text).expect("JSON frame"));
        }
    }
}

/// The next frame of a type, skipping others.
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let frame = next_frame(socket, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no {kind} frame within 5 s"));
        if frame["type"] == kind {
            return frame;
        }
    }
}

#[tokio::test]
async fn the_inbox_socket_pushes_colleagues_messages() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let (_, anna) = agent(&app, &owner, "anna@example.com", &[TEST_SITE]).await;
    let (_, outsider) = agent(&app, &owner, "outsider@example.com", &[]).await;
    visit(&app, "visitor-push-0001").await;

    // Cookie auth from a foreign page is refused; the console's own origin is fine.
    assert_eq!(
        open_inbox(&app, &anna, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let own_origin = format!("http://{}", app.addr);
    let mut socket = open_inbox(&app, &anna, Some(&own_origin))
        .await
        .expect("inbox socket");
    assert_eq!(next_of(&mut socket, "ready").await["type"], "ready");
    let mut outsider_socket = open_inbox(&app, &outsider, None).await.expect("socket");
    next_of(&mut outsider_socket, "ready").await;

    let id = start(&app, &owner, "visitor-push-0001", "An offer for you").await;
    let frame = next_of(&mut socket, "message").await;
    assert_eq!(frame["conversation"]["id"], id);
    assert_eq!(frame["conversation"]["visitor_id"], "visitor-push-0001");

    // Notes reach agents too, and typing shows.
    post(
        &app,
        &format!("/api/conversations/{id}/messages"),
        &owner,
        json!({ "text": "internal", "note": true }),
    )
    .await;
    loop {
        let frame = next_of(&mut socket, "message").await;
        if frame["message"]["body"]["type"] == "note" {
            assert_eq!(frame["message"]["body"]["text"], "internal");
            break;
        }
    }
    post(
        &app,
        &format!("/api/conversations/{id}/typing"),
        &owner,
        json!({ "typing": true }),
    )
    .await;
    let typing = next_of(&mut socket, "typing").await;
    assert_eq!(typing["conversation_id"], id);
    assert_eq!(typing["typing"], true);
    assert_eq!(typing["who"]["kind"], "agent");

    // Tags change the record without a message.
    call(
        &app,
        Method::PUT,
        &format!("/api/conversations/{id}/tags"),
        Some(&owner),
        Some(json!({ "tags": ["hot"] })),
    )
    .await;
    let changed = next_of(&mut socket, "conversation").await;
    assert_eq!(changed["conversation"]["tags"], json!(["hot"]));

    // Blocking is pushed as well.
    post(
        &app,
        &format!("/api/sites/{TEST_SITE}/visitors/visitor-push-0001/block"),
        &owner,
        json!({ "ip": false }),
    )
    .await;
    let block = next_of(&mut socket, "block").await;
    assert_eq!(
        (
            block["site"].clone(),
            block["visitor_id"].clone(),
            block["blocked"].clone()
        ),
        (json!(TEST_SITE), json!("visitor-push-0001"), json!(true))
    );

    // The agent without access to the site heard none of it.
    assert_eq!(
        next_frame(&mut outsider_socket, Duration::from_millis(300)).await,
        None
    );
    app.shutdown().await;
}

#[tokio::test]
async fn every_endpoint_needs_a_session_or_token() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    visit(&app, "visitor-anon-0001").await;
    let id = start(&app, &owner, "visitor-anon-0001", "Hello").await;
    let visitor = format!("/api/sites/{TEST_SITE}/visitors/visitor-anon-0001");
    let conversation = format!("/api/conversations/{id}");
    let endpoints = [
        (Method::GET, "/api/inbox".to_owned(), None),
        (Method::GET, "/api/inbox/live".to_owned(), None),
        (
            Method::POST,
            format!("{visitor}/conversations"),
            Some(json!({ "text": "hi" })),
        ),
        (Method::GET, format!("{visitor}/conversations"), None),
        (
            Method::POST,
            format!("{visitor}/block"),
            Some(json!({ "ip": false })),
        ),
        (Method::DELETE, format!("{visitor}/block"), None),
        (Method::GET, format!("/api/sites/{TEST_SITE}/blocks"), None),
        (Method::GET, conversation.clone(), None),
        (Method::GET, format!("{conversation}/messages"), None),
        (
            Method::POST,
            format!("{conversation}/messages"),
            Some(json!({ "text": "hi" })),
        ),
        (Method::POST, format!("{conversation}/open"), None),
        (Method::POST, format!("{conversation}/join"), None),
        (Method::POST, format!("{conversation}/leave"), None),
        (Method::POST, format!("{conversation}/resolve"), None),
        (Method::POST, format!("{conversation}/reopen"), None),
        (
            Method::POST,
            format!("{conversation}/invite"),
            Some(json!({ "agent_id": 1 })),
        ),
        (
            Method::PUT,
            format!("{conversation}/tags"),
            Some(json!({ "tags": [] })),
        ),
        (
            Method::POST,
            format!("{conversation}/read"),
            Some(json!({ "seq": 1 })),
        ),
        (
            Method::POST,
            format!("{conversation}/typing"),
            Some(json!({ "typing": true })),
        ),
        (Method::POST, format!("{conversation}/attachments"), None),
        (
            Method::GET,
            format!("{conversation}/attachments/AAAAAAAAAAAAAAAAAAAAAA"),
            None,
        ),
    ];
    for (method, path, body) in endpoints {
        for cookie in [None, Some("pl_session=forged-session-token")] {
            let (status, answer) = call(&app, method.clone(), &path, cookie, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {cookie:?}: {answer}");
        }
        let mut request = app
            .http
            .request(method.clone(), app.url(&path))
            .bearer_auth("plt_forged");
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            401,
            "{method} {path} with a forged token"
        );
    }
    // An API token works like a session.
    let (status, token) = post(&app, "/api/tokens", &owner, json!({ "name": "script" })).await;
    assert_eq!(status, 201);
    let response = app
        .http
        .get(app.url(&format!("{conversation}/messages")))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn resolving_needs_the_assignment_or_full_access_with_api_tokens_too() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let (_, ben) = agent(&app, &owner, "ben@example.com", &[TEST_SITE]).await;
    // An admin with no site list: full access all the same.
    let (status, body) = post(
        &app,
        "/api/agents",
        &owner,
        json!({ "email": "ada@example.com", "name": "Ada", "role": "admin", "password": PASSWORD, "sites": [] }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ada = app.login("ada@example.com", PASSWORD).await;
    let (status, token) = post(&app, "/api/tokens", &ben, json!({ "name": "script" })).await;
    assert_eq!(status, 201, "{token}");
    let bens_token = token["token"].as_str().unwrap().to_owned();
    let resolve_with_token = |id: u64| {
        app.http
            .post(app.url(&format!("/api/conversations/{id}/resolve")))
            .bearer_auth(&bens_token)
            .json(&json!({}))
            .send()
    };

    // The owner's conversation: Ben's script may not resolve it.
    visit(&app, "visitor-perm-0003").await;
    let owners = start(&app, &owner, "visitor-perm-0003", "Hello").await;
    let response = resolve_with_token(owners).await.unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("only the assigned agent")
    );

    // A visitor's unassigned conversation: not Ben (nobody assigned him), but the admin.
    visit(&app, "visitor-perm-0004").await;
    let unassigned = app
        .state()
        .conversations
        .start_by_visitor(
            engage::VisitorRef::new(TEST_SITE, "visitor-perm-0004"),
            "Anyone there?",
            None,
            engage::StartDetails::default(),
        )
        .await
        .unwrap()
        .conversation
        .id;
    let response = resolve_with_token(unassigned).await.unwrap();
    assert_eq!(response.status(), 403);
    let (status, body) = post(
        &app,
        &format!("/api/conversations/{unassigned}/resolve"),
        &ada,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["conversation"]["state"].clone()),
        (200, json!("resolved"))
    );
    // Once Ben takes a conversation (opening it assigns it), his script may resolve it.
    visit(&app, "visitor-perm-0005").await;
    let taken = app
        .state()
        .conversations
        .start_by_visitor(
            engage::VisitorRef::new(TEST_SITE, "visitor-perm-0005"),
            "Hello?",
            None,
            engage::StartDetails::default(),
        )
        .await
        .unwrap()
        .conversation
        .id;
    let (status, _) = post(
        &app,
        &format!("/api/conversations/{taken}/open"),
        &ben,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let response = resolve_with_token(taken).await.unwrap();
    assert_eq!(response.status(), 200);
    app.shutdown().await;
}
