//! Saved replies and the visitor card in Chromium: an agent saves a reply in the settings,
//! inserts it in the chat by typing `/` and part of its shortcut, edits the visitor's name and
//! email, tags them and writes a note on the card, and opens a conversation with a saved reply
//! as the offer. Hostile markup in a reply stays text.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{
    OWNER_EMAIL, OWNER_PASSWORD, TEST_SITE, TestApp, call, page_view, sign_in_console,
};
use testkit::browser::{Browser, Page};

const REPLY: &str = "Thank you for <b>waiting</b>! <img src=x onerror=\"window.__pwned=1\">";

/// Sets an input's value as typing does (value, then an `input` event).
async fn type_text(page: &Page, element: &str, text: &str) {
    let text = serde_json::to_string(text).unwrap();
    page.eval_unit(&format!(
        "{{ const el = {element}; el.focus(); el.value = {text}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }}"
    ))
    .await
    .unwrap();
}

async fn key(page: &Page, element: &str, key: &str) {
    page.eval_unit(&format!(
        "{element}.dispatchEvent(new KeyboardEvent('keydown', {{key: {key:?}, bubbles: true, cancelable: true}}))"
    ))
    .await
    .unwrap();
}

async fn click(page: &Page, element: &str) {
    page.eval_unit(&format!("{element}.click()")).await.unwrap();
}

fn q(selector: &str) -> String {
    format!("document.querySelector({selector:?})")
}

#[tokio::test]
async fn an_agent_inserts_saved_replies_and_edits_the_visitor_card() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let visitor = "visitor-ui-0001";
    let (status, _) = app
        .beacon(&page_view(
            visitor,
            "visit-ui-0001",
            "https://shop.example/pricing",
        ))
        .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/{visitor}/conversations"),
        Some(&owner),
        Some(json!({ "text": "Hello! How can I help?" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["conversation"]["id"].as_u64().unwrap();

    let browser = Browser::launch().await.expect("Chromium starts");
    let page = browser.new_isolated_page().await.unwrap();
    let patient = Duration::from_secs(10);
    sign_in_console(&app, &page, OWNER_EMAIL, OWNER_PASSWORD).await;
    page.wait_for(
        "document.querySelector('#app-header') && !document.querySelector('#app-header').hidden",
        patient,
    )
    .await
    .unwrap();

    // Settings: save a reply (its text is hostile markup, kept as text).
    page.eval_unit("location.hash = '#/settings'")
        .await
        .unwrap();
    page.wait_for(&format!("{} !== null", q("#reply-form")), patient)
        .await
        .unwrap();
    type_text(&page, &q("#reply-shortcut"), "/thanks").await;
    type_text(&page, &q("#reply-text"), REPLY).await;
    click(&page, &q("#reply-save")).await;
    page.wait_for(
        &format!("{} !== null", q("#replies-list li[data-shortcut=thanks]")),
        patient,
    )
    .await
    .expect("the saved reply is listed");
    let listed: String = page
        .eval(&format!(
            "{}.textContent",
            q("#replies-list li[data-shortcut=thanks] .reply-text")
        ))
        .await
        .unwrap();
    assert_eq!(listed, REPLY);

    // The chat: "/tha" suggests the reply; Enter inserts it; Enter again sends it.
    page.eval_unit(&format!("location.hash = '#/inbox/{conversation}'"))
        .await
        .unwrap();
    page.wait_for(
        "document.querySelector('#chat-view')?.dataset.state === 'ready'",
        patient,
    )
    .await
    .unwrap();
    let input = q("#chat-input");
    page.wait_for(
        &format!("(() => {{ const el = {input}; el.value = 'Sure. /tha'; el.dispatchEvent(new Event('input', {{bubbles: true}})); return !{}.hidden; }})()", q("#chat-replies")),
        patient,
    )
    .await
    .expect("typing /tha lists the saved reply");
    let suggested: Vec<String> = page
        .eval("[...document.querySelectorAll('#chat-replies li')].map(li => li.dataset.shortcut)")
        .await
        .unwrap();
    assert_eq!(suggested, ["thanks"]);
    key(&page, &input, "Enter").await;
    let value: String = page.eval(&format!("{input}.value")).await.unwrap();
    assert_eq!(value, format!("Sure. {REPLY}"));
    let hidden: bool = page
        .eval(&format!("{}.hidden", q("#chat-replies")))
        .await
        .unwrap();
    assert!(hidden, "the list closes once a reply is inserted");
    key(&page, &input, "Enter").await;
    page.wait_for(
        &format!(
            "[...document.querySelectorAll('.chat-msg[data-author=agent] .chat-text')].some(el => el.textContent === {})",
            serde_json::to_string(&format!("Sure. {REPLY}")).unwrap()
        ),
        patient,
    )
    .await
    .expect("the reply is sent and shown as text");

    // The card beside the chat: edit name and email, add a tag and a note.
    let contact = |selector: &str| q(&format!("#chat-contact {selector}"));
    page.wait_for(
        &format!("{} && !{}.hidden", q("#chat-contact"), q("#chat-contact")),
        patient,
    )
    .await
    .unwrap();
    type_text(&page, &contact(".contact-name"), "Grace Hopper").await;
    type_text(&page, &contact(".contact-email"), "grace@example.com").await;
    click(&page, &contact(".contact-save")).await;
    page.wait_for(
        &format!("{}.textContent === 'Saved'", contact(".contact-status")),
        patient,
    )
    .await
    .expect("the contact is saved");
    page.wait_for(
        "document.querySelector('#chat-title')?.textContent.includes('Grace Hopper')",
        patient,
    )
    .await
    .expect("the chat header follows the new name");
    let live = app.state().presence.get(TEST_SITE, visitor).unwrap();
    assert_eq!(live.identity.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(live.identity.email.as_deref(), Some("grace@example.com"));
    type_text(&page, &contact(".contact-tag-input"), "VIP").await;
    key(&page, &contact(".contact-tag-input"), "Enter").await;
    page.wait_for(
        &format!("{} !== null", contact(".contact-tag[data-tag=vip]")),
        patient,
    )
    .await
    .expect("the tag shows");
    type_text(&page, &contact(".contact-note-text"), "Prefers <email>").await;
    click(&page, &contact(".contact-note-add")).await;
    page.wait_for(
        &format!(
            "{}?.textContent === 'Prefers <email>'",
            contact(".contact-note .note-text")
        ),
        patient,
    )
    .await
    .expect("the note shows, as text");
    let (status, card) = app
        .get_json(
            &format!("/api/sites/{TEST_SITE}/visitors/{visitor}/contact"),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(card["contact"]["tags"], json!(["vip"]));
    assert_eq!(card["contact"]["notes"][0]["text"], "Prefers <email>");
    assert_eq!(card["contact"]["notes"][0]["author_name"], "Olivia Owner");

    // The live panel's card shows the same contact, and opens a conversation with a saved
    // reply as the offer (the visitor's open conversation gets it).
    page.eval_unit(&format!(
        "location.hash = '#/visitors/{TEST_SITE}/{visitor}'"
    ))
    .await
    .unwrap();
    page.wait_for(
        &format!(
            "{}?.value === 'Grace Hopper'",
            q("#card-contact .contact-name")
        ),
        patient,
    )
    .await
    .expect("the card's contact");
    page.wait_for(
        &format!(
            "{} && !{}.disabled",
            q("#card-open-conversation"),
            q("#card-open-conversation")
        ),
        patient,
    )
    .await
    .unwrap();
    click(&page, &q("#card-open-conversation")).await;
    page.wait_for(
        &format!("{}?.options.length === 2", q("#open-conversation-reply")),
        patient,
    )
    .await
    .expect("the dialog offers the saved reply");
    page.eval_unit(&format!(
        "{{ const s = {}; s.value = s.options[1].value; s.dispatchEvent(new Event('change')); }}",
        q("#open-conversation-reply")
    ))
    .await
    .unwrap();
    let offer: String = page
        .eval(&format!("{}.value", q("#open-conversation-text")))
        .await
        .unwrap();
    assert_eq!(offer, REPLY);
    click(&page, &q("#open-conversation-send")).await;
    page.wait_for(
        &format!("location.hash === '#/inbox/{conversation}'"),
        patient,
    )
    .await
    .expect("the console goes to the conversation");
    let (_, messages) = app
        .get_json(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&owner),
        )
        .await;
    let last: &Value = messages["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["body"]["text"], REPLY);

    let pwned: bool = page.eval("window.__pwned !== undefined").await.unwrap();
    assert!(!pwned, "markup in a saved reply ran a script");
    assert!(
        page.exceptions().is_empty(),
        "console errors: {:?}",
        page.exceptions()
    );
    app.shutdown().await;
}
