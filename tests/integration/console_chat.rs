//! Issue 3 end to end in Chromium: an agent in the console opens a conversation with a live
//! visitor of the demo site and they chat through the widget; typing shows on both sides, an
//! internal note never reaches the visitor, resolving and a visitor message reopen it, a rating
//! is stored, and hostile markup stays text everywhere.

use std::time::{Duration, Instant};

use testkit::app::{TestApp, sign_in_console};
use testkit::browser::{Browser, Page};

/// A JavaScript expression for an element inside the widget's shadow root.
fn widget(selector: &str) -> String {
    format!("document.querySelector('#porchlight-widget')?.shadowRoot?.querySelector({selector:?})")
}

/// Types into an input (inside the widget's shadow root or the page) the way a person does:
/// value set, `input` event fired.
async fn type_text(page: &Page, element: &str, text: &str) {
    let text = serde_json::to_string(text).unwrap();
    page.eval_unit(&format!(
        "{{ const el = {element}; el.focus(); el.value = {text}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }}"
    ))
    .await
    .unwrap();
}

async fn click(page: &Page, element: &str) {
    page.eval_unit(&format!("{element}.click()")).await.unwrap();
}

const XSS: &str = r#"<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>"#;

#[tokio::test]
async fn an_agent_and_a_visitor_chat_through_console_and_widget() {
    let app = TestApp::start_with(|settings| {
        settings.demo = true;
        settings.simulate = 0;
    })
    .await;
    let password = std::fs::read_to_string(app.data_path().join("demo-owner.txt")).unwrap();
    let browser = Browser::launch().await.expect("Chromium starts");
    let second = Duration::from_secs(1);
    let patient = Duration::from_secs(10);

    // The visitor browses the pricing page and names themselves with hostile markup.
    let visitor = browser.new_isolated_page().await.unwrap();
    visitor.goto(&app.url("/demo/pricing.html")).await.unwrap();
    let visitor_id: String = visitor
        .wait_for_value("localStorage.getItem('pl_vid')", patient)
        .await
        .unwrap();
    visitor
        .eval_unit(&format!(
            "porchlight('identify', {{name: {}}})",
            serde_json::to_string(XSS).unwrap()
        ))
        .await
        .unwrap();
    // Its chat channel is open before anyone writes.
    let deadline = Instant::now() + patient;
    while app.state().chat.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the widget never opened its chat channel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The agent signs in, finds the visitor and opens a conversation from the visitor card.
    let agent = browser.new_isolated_page().await.unwrap();
    sign_in_console(
        &app,
        &agent,
        dashboards::demo::DEMO_OWNER_EMAIL,
        password.trim(),
    )
    .await;
    let row = format!(r#".visitor-row[data-visitor-id="{visitor_id}"]"#);
    agent
        .wait_for(
            &format!("document.querySelector('{row}') !== null"),
            patient,
        )
        .await
        .unwrap();
    let name: String = agent
        .eval(&format!(
            "document.querySelector('{row} .v-name').textContent"
        ))
        .await
        .unwrap();
    assert_eq!(name, XSS, "the visitor's name is shown as text");
    agent.click(&row).await.unwrap();
    agent
        .wait_for(
            "document.querySelector('#card-open-conversation') !== null",
            patient,
        )
        .await
        .unwrap();
    agent.click("#card-open-conversation").await.unwrap();
    agent
        .wait_for(
            "document.querySelector('#open-conversation-text') !== null",
            patient,
        )
        .await
        .unwrap();
    type_text(
        &agent,
        "document.querySelector('#open-conversation-text')",
        "Hi! 10 % off the Plus plan today.",
    )
    .await;
    let sent = Instant::now();
    agent.click("#open-conversation-send").await.unwrap();

    // The visitor's widget shows the offer within a second.
    let agent_message = format!(
        "[...({}).querySelectorAll('.pl-msg[data-author=agent] .pl-text')].some(el => el.textContent.includes('10 % off'))",
        widget("#pl-messages")
    );
    visitor
        .wait_for(&agent_message, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        sent.elapsed() <= second,
        "the offer took {:?}",
        sent.elapsed()
    );
    agent
        .wait_for(
            "document.querySelector('#chat-view')?.dataset.state === 'ready'",
            patient,
        )
        .await
        .unwrap();

    // The visitor types (the agent sees it), then replies with hostile markup.
    visitor
        .eval_unit(&format!(
            "{{ const l = {}; if (l && l.getAttribute('aria-expanded') !== 'true') l.click(); }}",
            widget("#pl-launcher")
        ))
        .await
        .unwrap();
    type_text(&visitor, &widget("#pl-input"), "Thinking about it").await;
    agent
        .wait_for(
            "document.querySelector('#chat-typing')?.textContent.includes('typing')",
            Duration::from_secs(3),
        )
        .await
        .expect("the agent sees the visitor typing");
    type_text(&visitor, &widget("#pl-input"), XSS).await;
    click(&visitor, &widget("#pl-send")).await;
    let visitor_text = "[...document.querySelectorAll('.chat-msg[data-author=visitor] .chat-text')].map(el => el.textContent)";
    agent
        .wait_for(
            &format!(
                "{visitor_text}.includes({})",
                serde_json::to_string(XSS).unwrap()
            ),
            Duration::from_secs(3),
        )
        .await
        .expect("the agent sees the reply, as text");

    // The agent types (the visitor sees it), writes an internal note, then a message.
    type_text(
        &agent,
        "document.querySelector('#chat-input')",
        "Let me check",
    )
    .await;
    visitor
        .wait_for(
            &format!("({})?.textContent.includes('typing')", widget("#pl-typing")),
            Duration::from_secs(3),
        )
        .await
        .expect("the visitor sees the agent typing");
    click(&agent, "document.querySelector('#chat-note-toggle')").await;
    type_text(
        &agent,
        "document.querySelector('#chat-input')",
        "Internal: VIP customer, approve discount",
    )
    .await;
    click(&agent, "document.querySelector('#chat-send')").await;
    agent
        .wait_for("document.querySelector('.chat-msg[data-type=note]')?.textContent.includes('VIP customer')", patient)
        .await
        .unwrap();
    click(&agent, "document.querySelector('#chat-note-toggle')").await;
    type_text(
        &agent,
        "document.querySelector('#chat-input')",
        "Done: the discount is applied.",
    )
    .await;
    click(&agent, "document.querySelector('#chat-send')").await;
    let widget_texts = format!(
        "[...({}).querySelectorAll('.pl-text')].map(el => el.textContent)",
        widget("#pl-messages")
    );
    visitor
        .wait_for(
            &format!("{widget_texts}.some(t => t.includes('discount is applied'))"),
            patient,
        )
        .await
        .unwrap();
    let texts: Vec<String> = visitor.eval(&widget_texts).await.unwrap();
    assert!(
        texts.iter().all(|text| !text.contains("VIP customer")),
        "a note reached the visitor: {texts:?}"
    );
    assert!(
        texts.contains(&XSS.to_owned()),
        "the visitor's own message is text: {texts:?}"
    );

    // Resolve; the visitor rates; a visitor message reopens the conversation.
    click(&agent, "document.querySelector('#chat-resolve')").await;
    agent
        .wait_for(
            "document.querySelector('#chat-view')?.dataset.convState === 'resolved'",
            patient,
        )
        .await
        .unwrap();
    visitor
        .wait_for(
            &format!(
                "({}) && !({}).hidden",
                widget("#pl-rating"),
                widget("#pl-rating")
            ),
            patient,
        )
        .await
        .unwrap();
    click(
        &visitor,
        &format!(
            "({}).querySelector('button[data-score=\"5\"]')",
            widget("#pl-rating")
        ),
    )
    .await;
    click(&visitor, &widget("#pl-rating-submit")).await;
    let conversation_id: u64 = agent
        .eval("Number(document.querySelector('#chat-view').dataset.conversationId)")
        .await
        .unwrap();
    let deadline = Instant::now() + patient;
    loop {
        let conversation = app
            .state()
            .store
            .conversation(conversation_id)
            .await
            .unwrap()
            .unwrap();
        if conversation
            .rating
            .as_ref()
            .is_some_and(|rating| rating.score == 5)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rating stored: {conversation:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    type_text(&visitor, &widget("#pl-input"), "One more question").await;
    click(&visitor, &widget("#pl-send")).await;
    agent
        .wait_for(
            "document.querySelector('#chat-view')?.dataset.convState === 'open'",
            patient,
        )
        .await
        .unwrap();

    // No injected script ran anywhere.
    for page in [&visitor, &agent] {
        let pwned: bool = page.eval("window.__pwned !== undefined").await.unwrap();
        assert!(!pwned, "injected markup ran a script");
        assert!(page.dialogs().is_empty(), "{:?}", page.dialogs());
    }
    assert!(
        agent.exceptions().is_empty(),
        "console errors: {:?}",
        agent.exceptions()
    );
    assert!(
        visitor.exceptions().is_empty(),
        "widget errors: {:?}",
        visitor.exceptions()
    );
    app.shutdown().await;
}
