//! The widget follows the site's business hours in its time zone (with an injected clock): after
//! hours it shows the offline form, whose submission becomes a lead; in hours, with an agent
//! online, it shows the chat.

use std::sync::Arc;
use std::time::Duration;

use engage::ManualClock;
use serde_json::json;
use testkit::app::TestApp;
use testkit::browser::{Browser, Page};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Saturday 21 November 2026, 12:00 in Warsaw (11:00 UTC).
const SATURDAY_NOON_WARSAW_MS: i64 = 1_795_258_800_000;
/// Monday 23 November 2026, 10:00 in Warsaw (09:00 UTC).
const MONDAY_TEN_WARSAW_MS: i64 = 1_795_424_400_000;

fn widget(selector: &str) -> String {
    format!("document.querySelector('#porchlight-widget')?.shadowRoot?.querySelector({selector:?})")
}

async fn fill(page: &Page, selector: &str, text: &str) {
    let text = serde_json::to_string(text).unwrap();
    page.eval_unit(&format!(
        "{{ const el = {}; el.value = {text}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }}",
        widget(selector)
    ))
    .await
    .unwrap();
}

/// Whether an element inside the widget is shown (present, not hidden, laid out).
fn shown(selector: &str) -> String {
    format!(
        "(() => {{ const el = {}; return !!el && !el.hidden && el.getClientRects().length > 0; }})()",
        widget(selector)
    )
}

#[tokio::test]
async fn the_widget_follows_business_hours_and_takes_leads_after_hours() {
    let clock = Arc::new(ManualClock::new(SATURDAY_NOON_WARSAW_MS));
    let app = TestApp::start_with_clock(
        |settings| {
            settings.demo = true;
            settings.simulate = 0;
        },
        clock.clone(),
    )
    .await;
    let password = std::fs::read_to_string(app.data_path().join("demo-owner.txt")).unwrap();
    let cookie = app
        .login(dashboards::demo::DEMO_OWNER_EMAIL, password.trim())
        .await;
    let days: Vec<_> = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|day| json!({ "day": day, "open": "09:00", "close": "17:00" }))
        .collect();
    let response = app
        .http
        .put(app.url("/api/sites/demo/widget"))
        .header("cookie", &cookie)
        .json(&json!({ "settings": {
            "business_hours": { "enabled": true, "time_zone": "Europe/Warsaw", "days": days },
            "after_hours": { "mode": "message", "message": "We are closed for the weekend. Leave us a message!" },
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Saturday noon in Warsaw: the widget shows the after-hours message and the offline form.
    let browser = Browser::launch().await.expect("Chromium starts");
    let visitor = browser.new_isolated_page().await.unwrap();
    visitor.goto(&app.url("/demo/")).await.unwrap();
    visitor
        .wait_for(&shown("#pl-launcher"), Duration::from_secs(10))
        .await
        .unwrap();
    visitor
        .eval_unit(&format!("{}.click()", widget("#pl-launcher")))
        .await
        .unwrap();
    visitor
        .wait_for(&shown("#pl-offline"), Duration::from_secs(10))
        .await
        .expect("the offline form after hours");
    let text: String = visitor
        .eval(&format!("{}.textContent", widget("#pl-offline-text")))
        .await
        .unwrap();
    assert!(text.contains("closed for the weekend"), "{text}");
    fill(&visitor, "#pl-offline-name", "Wanda Weekend").await;
    fill(&visitor, "#pl-offline-email", "wanda@example.com").await;
    fill(
        &visitor,
        "#pl-offline-message",
        "Do you ship lamps to Kraków?",
    )
    .await;
    visitor
        .eval_unit(&format!("{}.click()", widget("#pl-offline-submit")))
        .await
        .unwrap();
    visitor
        .wait_for(&shown("#pl-offline-thanks"), Duration::from_secs(10))
        .await
        .expect("thanks after sending");
    let (status, leads) = app.get_json("/api/sites/demo/leads", Some(&cookie)).await;
    assert_eq!(status, 200);
    let lead = &leads["leads"][0];
    assert_eq!(lead["email"], "wanda@example.com", "{leads}");
    assert_eq!(lead["message"], "Do you ship lamps to Kraków?");

    // Monday 10:00 in Warsaw with an agent online: the chat, not the form.
    clock.set(MONDAY_TEN_WARSAW_MS);
    let mut request = app.ws_url("/api/inbox/live").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (_agent_socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("agent online");
    let visitor = browser.new_isolated_page().await.unwrap();
    visitor.goto(&app.url("/demo/pricing.html")).await.unwrap();
    visitor
        .wait_for(&shown("#pl-launcher"), Duration::from_secs(10))
        .await
        .unwrap();
    visitor
        .eval_unit(&format!("{}.click()", widget("#pl-launcher")))
        .await
        .unwrap();
    visitor
        .wait_for(&shown("#pl-input"), Duration::from_secs(10))
        .await
        .expect("the chat input in hours");
    let form_shown: bool = visitor.eval(&shown("#pl-offline")).await.unwrap();
    assert!(
        !form_shown,
        "no offline form while an agent is online in business hours"
    );
    assert!(
        visitor.exceptions().is_empty(),
        "{:?}",
        visitor.exceptions()
    );
    app.shutdown().await;
}
