//! The visitor card's editable side and saved replies through the API: agents edit a
//! visitor's name, email and phone (the live panel and the stored profile follow), keep notes
//! and tags, list past conversations, manage saved replies and open a conversation with one.

use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{TEST_SITE, TestApp, call, page_view};

const PASSWORD: &str = "a long enough password";

async fn agent(app: &TestApp, owner: &str, email: &str, sites: &[&str]) -> String {
    let (status, body) = call(
        app,
        Method::POST,
        "/api/agents",
        Some(owner),
        Some(json!({ "email": email, "name": email, "role": "agent", "password": PASSWORD, "sites": sites })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    app.login(email, PASSWORD).await
}

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

fn contact_path(visitor: &str) -> String {
    format!("/api/sites/{TEST_SITE}/visitors/{visitor}/contact")
}

#[tokio::test]
async fn agents_edit_the_contact_keep_notes_and_tags() {
    let mut app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let anna = agent(&app, &owner, "anna@example.com", &[TEST_SITE]).await;
    let outsider = agent(&app, &owner, "out@example.com", &[]).await;
    let visitor = "visitor-card-0001";
    visit(&app, visitor).await;

    // Name, email and phone: set, then one cleared; the live table follows at once.
    let (status, body) = call(
        &app,
        Method::PATCH,
        &contact_path(visitor),
        Some(&anna),
        Some(json!({ "name": "Ada <b>Lovelace</b>", "email": "ada@example.com", "phone": "+44 20 7946 0958" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identity"]["name"], "Ada <b>Lovelace</b>");
    let live = app.state().presence.get(TEST_SITE, visitor).unwrap();
    assert_eq!(live.identity.email.as_deref(), Some("ada@example.com"));
    assert_eq!(app.state().presence.counts(TEST_SITE).customers, 1);
    let (status, body) = call(
        &app,
        Method::PATCH,
        &contact_path(visitor),
        Some(&anna),
        Some(json!({ "phone": null })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identity"]["phone"], Value::Null);
    assert_eq!(body["identity"]["email"], "ada@example.com");

    // Bad input is a clear 400 naming the field.
    for (edit, fragment) in [
        (
            json!({ "email": "not-an-email" }),
            "email: not an email address",
        ),
        (json!({ "phone": "call me maybe" }), "phone: use digits"),
        (json!({ "name": 5 }), "name: expected a string or null"),
        (json!({ "nickname": "x" }), "nickname: unknown field"),
        (json!({}), "at least one of name, email and phone"),
        (json!({ "name": "x".repeat(101) }), "name: at most 100"),
    ] {
        let (status, body) = call(
            &app,
            Method::PATCH,
            &contact_path(visitor),
            Some(&anna),
            Some(edit),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(fragment),
            "{fragment}: {body}"
        );
    }

    // Notes, each with its author and time; tags added and removed.
    let notes = format!("/api/sites/{TEST_SITE}/visitors/{visitor}/notes");
    let (status, body) = call(
        &app,
        Method::POST,
        &notes,
        Some(&anna),
        Some(json!({ "text": "Asked for a discount" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["note"]["author_name"], "anna@example.com");
    let annas_note = body["note"]["id"].as_u64().unwrap();
    let (status, body) = call(
        &app,
        Method::POST,
        &notes,
        Some(&owner),
        Some(json!({ "text": "Called back on Monday" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let owners_note = body["note"]["id"].as_u64().unwrap();
    let (status, body) = call(
        &app,
        Method::POST,
        &notes,
        Some(&anna),
        Some(json!({ "text": "  " })),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("text: a note cannot be empty"))
    );
    // Only its author (or an admin) deletes a note.
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{notes}/{owners_note}"),
        Some(&anna),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let tags = format!("/api/sites/{TEST_SITE}/visitors/{visitor}/tags");
    for tag in ["VIP", "b2b", "vip"] {
        let (status, body) = call(
            &app,
            Method::POST,
            &tags,
            Some(&anna),
            Some(json!({ "tag": tag })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = call(
        &app,
        Method::DELETE,
        &format!("{tags}/b2b"),
        Some(&anna),
        None,
    )
    .await;
    assert_eq!((status, body["tags"].clone()), (200, json!(["vip"])));

    // An agent without access to the site can neither read nor change any of it.
    let (status, _) = app.get_json(&contact_path(visitor), Some(&outsider)).await;
    assert_eq!(status, 403);
    for (method, path, body) in [
        (
            Method::PATCH,
            contact_path(visitor),
            Some(json!({ "name": "x" })),
        ),
        (Method::POST, notes.clone(), Some(json!({ "text": "x" }))),
        (Method::POST, tags.clone(), Some(json!({ "tag": "x" }))),
        (Method::DELETE, format!("{notes}/{annas_note}"), None),
        (Method::DELETE, format!("{tags}/vip"), None),
    ] {
        let (status, answer) = call(&app, method.clone(), &path, Some(&outsider), body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    // A visitor the site never saw has no card.
    let (status, _) = app
        .get_json(&contact_path("visitor-never-seen"), Some(&anna))
        .await;
    assert_eq!(status, 404);

    // Everything survives a restart, when the visitor is no longer live.
    app.restart().await;
    let anna = app.login("anna@example.com", PASSWORD).await;
    let (status, card) = app.get_json(&contact_path(visitor), Some(&anna)).await;
    assert_eq!(status, 200, "{card}");
    let contact = &card["contact"];
    assert_eq!(contact["live"], false);
    assert_eq!(contact["identity"]["name"], "Ada <b>Lovelace</b>");
    assert_eq!(contact["identity"]["email"], "ada@example.com");
    assert_eq!(contact["identity"]["phone"], Value::Null);
    assert_eq!(contact["tags"], json!(["vip"]));
    let texts: Vec<&str> = contact["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|note| note["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Asked for a discount", "Called back on Monday"]);
    // Editing works while the visitor is away too, and their next visit starts from it.
    let (status, _) = call(
        &app,
        Method::PATCH,
        &contact_path(visitor),
        Some(&anna),
        Some(json!({ "name": "Ada L." })),
    )
    .await;
    assert_eq!(status, 200);
    visit(&app, visitor).await;
    let live = app.state().presence.get(TEST_SITE, visitor).unwrap();
    assert_eq!(live.identity.name.as_deref(), Some("Ada L."));
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{notes}/{annas_note}"),
        Some(&anna),
        None,
    )
    .await;
    assert_eq!(status, 204);
    app.shutdown().await;
}

#[tokio::test]
async fn saved_replies_are_managed_and_open_a_conversation() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let anna = agent(&app, &owner, "anna@example.com", &[TEST_SITE]).await;
    let outsider = agent(&app, &owner, "out@example.com", &[]).await;
    let replies = format!("/api/sites/{TEST_SITE}/saved-replies");

    let (status, body) = call(
        &app,
        Method::POST,
        &replies,
        Some(&anna),
        Some(json!({ "shortcut": "/Offer", "text": "Hi! 10% off the annual plan today." })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["saved_reply"]["shortcut"], "offer");
    let offer = body["saved_reply"]["id"].as_u64().unwrap();
    let (status, body) = call(
        &app,
        Method::POST,
        &replies,
        Some(&owner),
        Some(json!({ "shortcut": "bye", "text": "Thanks for visiting!" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let bye = body["saved_reply"]["id"].as_u64().unwrap();

    // Clear 4xx for bad input and duplicates.
    for (request, fragment) in [
        (
            json!({ "shortcut": "offer", "text": "again" }),
            "already used",
        ),
        (
            json!({ "shortcut": "two words", "text": "x" }),
            "' ' is not allowed",
        ),
        (
            json!({ "shortcut": "x", "text": " " }),
            "text: cannot be empty",
        ),
    ] {
        let (status, body) = call(&app, Method::POST, &replies, Some(&anna), Some(request)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(fragment), "{body}");
    }
    let (status, _) = call(
        &app,
        Method::POST,
        &replies,
        Some(&anna),
        Some(json!({ "text": "no shortcut" })),
    )
    .await;
    assert_eq!(
        status, 422,
        "a missing field is refused by the JSON extractor"
    );

    // Edit, list (by shortcut), delete.
    let (status, body) = call(
        &app,
        Method::PUT,
        &format!("{replies}/{bye}"),
        Some(&anna),
        Some(json!({ "text": "Thanks, and see you soon!" })),
    )
    .await;
    assert_eq!(
        (status, body["saved_reply"]["text"].as_str()),
        (200, Some("Thanks, and see you soon!"))
    );
    let (status, body) = call(
        &app,
        Method::PUT,
        &format!("{replies}/{bye}"),
        Some(&anna),
        Some(json!({ "shortcut": "offer" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = app.get_json(&replies, Some(&anna)).await;
    let shortcuts: Vec<&str> = list["saved_replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shortcut"].as_str().unwrap())
        .collect();
    assert_eq!(shortcuts, ["bye", "offer"]);
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{replies}/{bye}"),
        Some(&anna),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{replies}/{bye}"),
        Some(&anna),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = app.get_json(&replies, Some(&outsider)).await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        Method::POST,
        &replies,
        Some(&outsider),
        Some(json!({ "shortcut": "x", "text": "y" })),
    )
    .await;
    assert_eq!(status, 403);

    // "Open conversation" with a saved reply as the opening offer.
    let visitor = "visitor-offer-0001";
    visit(&app, visitor).await;
    let start = format!("/api/sites/{TEST_SITE}/visitors/{visitor}/conversations");
    let (status, body) = call(
        &app,
        Method::POST,
        &start,
        Some(&anna),
        Some(json!({ "saved_reply_id": offer, "client_id": "offer-1" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["message"]["body"]["text"],
        "Hi! 10% off the annual plan today."
    );
    let (status, body) = call(
        &app,
        Method::POST,
        &start,
        Some(&anna),
        Some(json!({ "saved_reply_id": 999 })),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = call(
        &app,
        Method::POST,
        &start,
        Some(&anna),
        Some(json!({ "saved_reply_id": offer, "text": "both" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(&app, Method::POST, &start, Some(&anna), Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");

    // The card lists the visitor's conversations.
    let (status, card) = app.get_json(&contact_path(visitor), Some(&anna)).await;
    assert_eq!(status, 200);
    assert_eq!(card["contact"]["live"], true);
    assert_eq!(card["conversations"].as_array().unwrap().len(), 1);
    assert_eq!(
        card["conversations"][0]["last_message_preview"],
        "Hi! 10% off the annual plan today."
    );
    app.shutdown().await;
}
