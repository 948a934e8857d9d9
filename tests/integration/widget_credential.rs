//! The widget's chat credential in Chromium: a page left while the credential request is in
//! flight (whether or not the server got it) does not cost the visitor their identity, and a
//! blocked visitor's widget neither switches to a new visitor id nor keeps asking.
//!
//! The request is held with the DevTools `Fetch` domain: paused after the server answered
//! (the server stored the credential, the page never saw the answer) or before it was sent
//! (the server never heard of it), and the page is navigated away while it is held.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashboards::demo::{DEMO_OWNER_EMAIL, DEMO_SITE};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{TestApp, call};
use testkit::browser::{Browser, Event, Page};
use tokio::sync::broadcast;

const PATIENT: Duration = Duration::from_secs(15);
const CREDENTIAL_PATH: &str = "/v1/chat/credential";

/// A JavaScript expression for an element inside the widget's shadow root.
fn widget(selector: &str) -> String {
    format!("document.querySelector('#porchlight-widget')?.shadowRoot?.querySelector({selector:?})")
}

async fn demo_app() -> TestApp {
    TestApp::start_with(|settings| {
        settings.demo = true;
        settings.simulate = 0;
    })
    .await
}

/// The next event `method` of `page` whose params satisfy `matches`.
async fn next_event(
    events: &mut broadcast::Receiver<Event>,
    page: &Page,
    method: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {method} within {PATIENT:?}"))
            .expect("browser events");
        if event.session_id.as_deref() == Some(page.session_id())
            && event.method == method
            && matches(&event.params)
        {
            return event.params;
        }
    }
}

/// The next credential request the page's widget makes, held by `Fetch` (see
/// [`hold_credential_requests`]); returns the paused request's `requestId`, its body and,
/// when held after the answer, the answer's status.
async fn held_request(
    events: &mut broadcast::Receiver<Event>,
    page: &Page,
) -> (String, Value, Option<u64>) {
    let params = next_event(events, page, "Fetch.requestPaused", |params| {
        params["request"]["url"]
            .as_str()
            .is_some_and(|url| url.ends_with(CREDENTIAL_PATH))
    })
    .await;
    let body = params["request"]["postData"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            use base64::Engine as _;
            let entries = params["request"]["postDataEntries"].as_array()?;
            let mut bytes = Vec::new();
            for entry in entries {
                bytes.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(entry["bytes"].as_str()?)
                        .ok()?,
                );
            }
            String::from_utf8(bytes).ok()
        })
        .expect("the credential request has a body");
    (
        params["requestId"].as_str().unwrap().to_owned(),
        serde_json::from_str(&body).expect("a JSON body"),
        params["responseStatusCode"].as_u64(),
    )
}

/// Lets the held credential request `request_id` go on, stops holding requests, and waits
/// until the widget marks its credential registered.
async fn release_credential_request(page: &Page, request_id: String) {
    page.cdp("Fetch.continueRequest", json!({ "requestId": request_id }))
        .await
        .unwrap();
    page.cdp("Fetch.disable", json!({})).await.unwrap();
    page.wait_for(
        "JSON.parse(localStorage.getItem('pl_cred')).pending !== true",
        PATIENT,
    )
    .await
    .expect("the widget marks its credential registered");
}

/// Holds the page's credential requests at `stage` ("Request": before they are sent,
/// "Response": after the server answered).
async fn hold_credential_requests(page: &Page, stage: &str) {
    page.cdp(
        "Fetch.enable",
        json!({ "patterns": [{ "urlPattern": format!("*{CREDENTIAL_PATH}"), "requestStage": stage }] }),
    )
    .await
    .unwrap();
}

/// What the widget keeps in `pl_cred`.
async fn kept_credential(page: &Page) -> Value {
    page.eval("JSON.parse(localStorage.getItem('pl_cred'))")
        .await
        .unwrap()
}

async fn visitor_id(page: &Page) -> String {
    page.wait_for_value("localStorage.getItem('pl_vid')", PATIENT)
        .await
        .expect("the widget stores a visitor id")
}

/// The hash the server stores for a visitor of the demo site, if any.
async fn stored_hash(app: &TestApp, visitor: &str) -> Option<String> {
    app.state()
        .store
        .visitor_credential(DEMO_SITE, visitor)
        .await
        .unwrap()
}

/// The demo owner's session cookie.
async fn owner_cookie(app: &TestApp) -> String {
    let password = std::fs::read_to_string(app.data_path().join("demo-owner.txt")).unwrap();
    app.login(DEMO_OWNER_EMAIL, password.trim()).await
}

/// Chat works for `visitor` in `page`: an agent's message reaches the widget (only a socket
/// that said hello with the visitor's credential gets it), and the visitor's answer written
/// in the widget reaches the server.
async fn chat_works(app: &TestApp, page: &Page, visitor: &str, question: &str, answer: &str) {
    let (status, body) = call(
        app,
        Method::POST,
        &format!("/api/sites/{DEMO_SITE}/visitors/{visitor}/conversations"),
        Some(&owner_cookie(app).await),
        Some(json!({ "text": question })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let quoted = serde_json::to_string(question).unwrap();
    page.wait_for(
        &format!(
            "[...({}).querySelectorAll('.pl-bubble')].some(b => b.textContent === {quoted})",
            widget("#pl-messages")
        ),
        PATIENT,
    )
    .await
    .expect("the agent's message reaches the widget");
    page.eval_unit(&format!("{}.click()", widget("#pl-launcher")))
        .await
        .unwrap();
    page.wait_for(&format!("!{}.hidden", widget("#pl-composer")), PATIENT)
        .await
        .expect("the composer shows");
    let quoted = serde_json::to_string(answer).unwrap();
    page.eval_unit(&format!(
        "{{ const el = {}; el.focus(); el.value = {quoted}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }}",
        widget("#pl-input")
    ))
    .await
    .unwrap();
    page.eval_unit(&format!("{}.click()", widget("#pl-send")))
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENT;
    loop {
        for conversation in app
            .state()
            .store
            .conversations_of_visitor(DEMO_SITE, visitor)
            .await
            .unwrap()
        {
            let messages = app
                .state()
                .store
                .messages(conversation.id, 0, 100)
                .await
                .unwrap();
            if messages
                .iter()
                .any(|message| format!("{:?}", message.body).contains(answer))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{visitor}'s answer {answer:?} never reached the server; console: {:?}",
            page.console_messages()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_page_left_mid_credential_request_keeps_its_visitor() {
    let app = demo_app().await;
    let browser = Browser::launch().await.expect("Chromium starts");
    let mut events = browser.events();
    let first_page = app.url("/demo/pricing.html");
    let next_page = app.url("/demo/products.html");

    // A: the server stores the credential, but the page is left before the answer arrives.
    let a = browser.new_isolated_page().await.unwrap();
    hold_credential_requests(&a, "Response").await;
    a.goto(&first_page).await.unwrap();
    let (held, body, status) = held_request(&mut events, &a).await;
    assert_eq!(status, Some(201), "{body}");
    let a_id = body["vid"].as_str().unwrap().to_owned();
    let secret = body["credential"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43, "{body}");
    assert_eq!(
        stored_hash(&app, &a_id).await,
        Some(engage::hash_token(&secret)),
        "the server stored it"
    );
    assert_eq!(
        kept_credential(&a).await,
        json!({ "vid": a_id, "credential": secret, "pending": true }),
        "the widget kept its secret before asking"
    );
    a.goto(&next_page).await.unwrap();
    // The held request belonged to the page that is gone; letting it go now changes nothing.
    let _ = a
        .cdp(
            "Fetch.failRequest",
            json!({ "requestId": held, "errorReason": "Aborted" }),
        )
        .await;
    // The next page sends the same secret for the same visitor, and the server accepts it.
    let (again, body, status) = held_request(&mut events, &a).await;
    assert_eq!(
        (body["vid"].as_str(), body["credential"].as_str(), status),
        (Some(a_id.as_str()), Some(secret.as_str()), Some(200)),
        "{body}"
    );
    release_credential_request(&a, again).await;
    assert_eq!(visitor_id(&a).await, a_id, "the visitor id is kept");
    let cookie: String = a
        .eval("document.cookie.match(/(?:^|; )pl_vid=([^;]*)/)[1]")
        .await
        .unwrap();
    assert_eq!(cookie, a_id);
    chat_works(&app, &a, &a_id, "Still there?", "Yes, same visitor").await;

    // B: the page is left before the request even reaches the server.
    let b = browser.new_isolated_page().await.unwrap();
    hold_credential_requests(&b, "Request").await;
    b.goto(&first_page).await.unwrap();
    let (held, body, status) = held_request(&mut events, &b).await;
    assert_eq!(status, None);
    let b_id = body["vid"].as_str().unwrap().to_owned();
    let secret = body["credential"].as_str().unwrap().to_owned();
    assert_eq!(stored_hash(&app, &b_id).await, None, "not sent yet");
    b.goto(&next_page).await.unwrap();
    let _ = b
        .cdp(
            "Fetch.failRequest",
            json!({ "requestId": held, "errorReason": "Aborted" }),
        )
        .await;
    let (again, body, _) = held_request(&mut events, &b).await;
    assert_eq!(
        (body["vid"].as_str(), body["credential"].as_str()),
        (Some(b_id.as_str()), Some(secret.as_str())),
        "the next page sends the kept secret: {body}"
    );
    assert_eq!(
        stored_hash(&app, &b_id).await,
        None,
        "the first request never arrived"
    );
    release_credential_request(&b, again).await;
    assert_eq!(
        stored_hash(&app, &b_id).await,
        Some(engage::hash_token(&secret))
    );
    assert_eq!(visitor_id(&b).await, b_id, "the visitor id is kept");
    chat_works(&app, &b, &b_id, "Hello B", "Hello from the page after").await;

    // Nobody started over under a new visitor id.
    assert_eq!(app.state().presence.counts(DEMO_SITE).all, 2);
    for page in [&a, &b] {
        assert_eq!(page.exceptions(), Vec::<String>::new());
    }
    drop(browser);
    app.shutdown().await;
}

/// Watches the page's credential requests and their answers (`Network` events).
struct CredentialTraffic {
    events: broadcast::Receiver<Event>,
    requests: usize,
}

impl CredentialTraffic {
    async fn watch(browser: &Browser, page: &Page) -> CredentialTraffic {
        page.cdp("Network.enable", json!({})).await.unwrap();
        CredentialTraffic {
            events: browser.events(),
            requests: 0,
        }
    }

    /// Waits for the next answer to a credential request; returns its status.
    async fn answer(&mut self, page: &Page) -> u64 {
        let params = next_event(&mut self.events, page, "Network.responseReceived", |p| {
            p["response"]["url"]
                .as_str()
                .is_some_and(|url| url.ends_with(CREDENTIAL_PATH))
        })
        .await;
        self.requests += 1;
        params["response"]["status"].as_u64().unwrap()
    }

    /// Credential requests sent since the last answer.
    fn more_requests(&mut self, page: &Page) -> usize {
        let mut sent = 0;
        loop {
            match self.events.try_recv() {
                Ok(event) => {
                    if event.session_id.as_deref() == Some(page.session_id())
                        && event.method == "Network.requestWillBeSent"
                        && event.params["request"]["url"]
                            .as_str()
                            .is_some_and(|url| url.ends_with(CREDENTIAL_PATH))
                    {
                        sent += 1;
                    }
                }
                Err(broadcast::error::TryRecvError::Empty) => return sent,
                Err(error) => panic!("browser events: {error}"),
            }
        }
    }
}

/// The widget was refused with 403: it shows why, keeps its visitor id, and does not ask
/// again by itself. A retry after an error would come after about a second and a new visitor
/// id at once, so the check waits past that.
async fn assert_refused_and_kept(
    app: &TestApp,
    page: &Page,
    traffic: &mut CredentialTraffic,
    visitor: &str,
) {
    assert_eq!(traffic.answer(page).await, 403);
    page.wait_for(
        &format!(
            "{}.textContent === 'You cannot chat with this site.'",
            widget("#pl-error")
        ),
        PATIENT,
    )
    .await
    .expect("the widget shows why it cannot chat");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        traffic.more_requests(page),
        0,
        "the widget asked again on its own"
    );
    assert_eq!(visitor_id(page).await, visitor, "the visitor id is kept");
    assert_eq!(stored_hash(app, visitor).await, None);
    assert!(app.state().presence.get(DEMO_SITE, visitor).is_some());
}

#[tokio::test]
async fn a_blocked_visitors_widget_keeps_its_visitor_id() {
    let app = demo_app().await;
    let owner = app
        .state()
        .store
        .agent_by_email(DEMO_OWNER_EMAIL)
        .await
        .unwrap()
        .unwrap();
    let browser = Browser::launch().await.expect("Chromium starts");
    let page_url = app.url("/demo/pricing.html");

    // Blocked by visitor id: the browser comes back with the id that was blocked.
    let blocked_id = "blockedVisitor00000001";
    app.state()
        .conversations
        .block(DEMO_SITE, blocked_id, None, &owner, Some("spam"))
        .await
        .unwrap();
    let page = browser.new_isolated_page().await.unwrap();
    page.cdp(
        "Network.setCookie",
        json!({ "name": "pl_vid", "value": blocked_id, "url": app.url("/") }),
    )
    .await
    .unwrap();
    let mut traffic = CredentialTraffic::watch(&browser, &page).await;
    page.goto(&page_url).await.unwrap();
    assert_eq!(visitor_id(&page).await, blocked_id);
    assert_refused_and_kept(&app, &page, &mut traffic, blocked_id).await;
    // Opening the launcher tries once more, is refused again, and still keeps the id.
    page.eval_unit(&format!("{}.click()", widget("#pl-launcher")))
        .await
        .unwrap();
    assert_refused_and_kept(&app, &page, &mut traffic, blocked_id).await;
    let shown: bool = page
        .eval(&format!(
            "!{0}.hidden && !{0}.closest('[hidden]')",
            widget("#pl-error")
        ))
        .await
        .unwrap();
    assert!(shown, "the open panel shows the refusal");
    assert_eq!(traffic.requests, 2);

    // Blocked by address (this browser's loopback), with a visitor id never seen before.
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    app.state()
        .conversations
        .block(DEMO_SITE, "someone-else", Some(loopback), &owner, None)
        .await
        .unwrap();
    let page = browser.new_isolated_page().await.unwrap();
    let mut traffic = CredentialTraffic::watch(&browser, &page).await;
    page.goto(&page_url).await.unwrap();
    let fresh_id = visitor_id(&page).await;
    assert_ne!(fresh_id, blocked_id);
    assert_refused_and_kept(&app, &page, &mut traffic, &fresh_id).await;

    assert_eq!(
        app.state().presence.counts(DEMO_SITE).all,
        2,
        "no widget started over under a new visitor id"
    );
    drop(browser);
    app.shutdown().await;
}
