//! The triggers API (issue 4) against a real server: CRUD with validation errors that name the
//! JSON path, who may read and who may change, placeholder preview, test-fire, and "who matches
//! right now" returning exactly the live visitors the engine fires for.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use engage::TriggerEvent;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::app::{TEST_SITE, TestApp, call, page_view};
use tokio::sync::broadcast::error::TryRecvError;

const PASSWORD: &str = "a long enough password";

/// A change that makes a valid trigger body invalid.
type Mutation = Box<dyn Fn(&mut Value)>;

fn triggers_path(rest: &str) -> String {
    format!("/api/sites/{TEST_SITE}/triggers{rest}")
}

/// "URL contains /pricing AND utm_source = ads", once per visitor, from a bot.
fn pricing_trigger(name: &str) -> Value {
    json!({
        "name": name,
        "enabled": true,
        "priority": 10,
        "conditions": {"all": [
            {"field": "url", "op": "contains", "value": "/pricing"},
            {"field": "utm_source", "op": "equals", "value": "ads"},
        ]},
        "delay_secs": 0,
        "open_widget": false,
        "variants": [{"key": "a", "author": {"bot": "Porchlight"}, "text": "Hi {first_name|there}, 10 % off today!", "weight": 1}],
        "control_percent": 0,
        "limit": {"mode": "once_per_visitor"},
        "goal": null,
    })
}

/// Creates an agent with `role` and access to `sites`; returns their session cookie.
async fn agent(app: &TestApp, owner: &str, email: &str, role: &str, sites: &[&str]) -> String {
    let (status, body) = call(
        app,
        Method::POST,
        "/api/agents",
        Some(owner),
        Some(json!({ "email": email, "name": email, "role": role, "password": PASSWORD, "sites": sites })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    app.login(email, PASSWORD).await
}

/// A page view of the test site; panics unless it is recorded.
async fn view(app: &TestApp, visitor: &str, url: &str) {
    let (status, body) = app
        .beacon(&page_view(visitor, &format!("visit-{visitor}"), url))
        .await;
    assert_eq!(status, 200, "{body}");
}

fn ids(body: &Value) -> BTreeSet<String> {
    body["visitors"]
        .as_array()
        .expect("visitors")
        .iter()
        .map(|visitor| visitor["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Waits until the presence flags show the visitor on chat (the presence sync task follows
/// the conversation events).
async fn wait_on_chat(app: &TestApp, visitor: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let on_chat = app
            .state()
            .presence
            .get(TEST_SITE, visitor)
            .is_some_and(|snapshot| snapshot.segments.contains(tracker::Segment::OnChat));
        if on_chat {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{visitor} never showed as on chat"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn trigger_crud_validation_errors_and_permissions() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let plain = agent(&app, &owner, "plain@example.com", "agent", &[TEST_SITE]).await;
    let outsider = agent(&app, &owner, "outsider@example.com", "agent", &[]).await;

    // Create, read back, list with 7-day stats.
    let (status, created) = call(
        &app,
        Method::POST,
        &triggers_path(""),
        Some(&owner),
        Some(pricing_trigger("Spring pricing offer")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().expect("id");
    assert_eq!(created["site"], TEST_SITE);
    assert_eq!(created["name"], "Spring pricing offer");
    assert!(created["created_ms"].as_i64().unwrap() > 0);
    let one = |id: u64| triggers_path(&format!("/{id}"));
    let (status, got) = call(&app, Method::GET, &one(id), Some(&plain), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, created);
    let (status, list) = call(&app, Method::GET, &triggers_path(""), Some(&plain), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["triggers"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["triggers"][0]["stats"],
        json!({"fired": 0, "delivered": 0, "seen": 0, "replied": 0, "goal": 0})
    );

    // PUT replaces (creation time kept); the body may carry what GET returned.
    let mut edited = got.clone();
    edited["name"] = json!("Spring pricing offer (v2)");
    edited["limit"] = json!({"mode": "cooldown", "cooldown_secs": 600});
    let (status, put) = call(&app, Method::PUT, &one(id), Some(&owner), Some(edited)).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"], "Spring pricing offer (v2)");
    assert_eq!(put["limit"]["cooldown_secs"], 600);
    assert_eq!(put["created_ms"], created["created_ms"]);

    // PATCH switches and reorders; the answer carries no stats.
    let (status, patched) = call(
        &app,
        Method::PATCH,
        &one(id),
        Some(&owner),
        Some(json!({"enabled": false, "priority": 3})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["priority"], 3);
    assert!(patched.get("stats").is_none());

    // Validation errors name the JSON path of the bad part, as the console expects.
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "string operator on a number field",
            Box::new(|t| {
                t["conditions"]["all"][0] =
                    json!({"field": "time_on_page", "op": "contains", "value": "3"})
            }),
            "conditions.all[0].op: ",
        ),
        (
            "number field with a string value",
            Box::new(|t| {
                t["conditions"]["all"][1] =
                    json!({"field": "time_on_page", "op": "gte", "value": "soon"})
            }),
            "conditions.all[1].value: ",
        ),
        (
            "invalid regex in a nested group",
            Box::new(
                |t| t["conditions"]["all"][1] = json!({"any": [{"field": "url", "op": "equals", "value": "/x"}, {"field": "title", "op": "regex", "value": "(unclosed"}]}),
            ),
            "conditions.all[1].any[1].value: invalid regex",
        ),
        (
            "empty group",
            Box::new(|t| t["conditions"] = json!({"all": []})),
            "conditions.all: ",
        ),
        (
            "unknown placeholder",
            Box::new(|t| t["variants"][0]["text"] = json!("Hello {cty}")),
            "variants[0].text: unknown placeholder {cty}",
        ),
        (
            "duplicate variant key",
            Box::new(|t| {
                let first = t["variants"][0].clone();
                t["variants"].as_array_mut().unwrap().push(first);
            }),
            "variants[1].key: ",
        ),
        (
            "delay over an hour",
            Box::new(|t| t["delay_secs"] = json!(4000)),
            "delay_secs: ",
        ),
        (
            "agent author without access",
            Box::new(|t| t["variants"][0]["author"] = json!({"agent_id": 999})),
            "variants[0].author.agent_id: ",
        ),
        (
            "unknown field",
            Box::new(|t| t["colour"] = json!("red")),
            "colour: unknown field",
        ),
        (
            "missing limit",
            Box::new(|t| {
                t.as_object_mut().unwrap().remove("limit");
            }),
            "limit: missing",
        ),
    ];
    for (what, mutate, expected) in &cases {
        let mut body = pricing_trigger("Broken");
        mutate(&mut body);
        for (method, path) in [(Method::POST, triggers_path("")), (Method::PUT, one(id))] {
            let (status, answer) = call(
                &app,
                method.clone(),
                &path,
                Some(&owner),
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, 400, "{what} ({method}): {answer}");
            let message = answer["error"].as_str().expect("error message");
            assert!(
                message.starts_with(expected),
                "{what} ({method}): {message:?} should start with {expected:?}"
            );
        }
    }
    let (status, answer) = call(
        &app,
        Method::PATCH,
        &one(id),
        Some(&owner),
        Some(json!({"enabled": "yes"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("enabled: "));
    let (status, answer) = call(&app, Method::POST, &triggers_path(""), Some(&owner), None).await;
    assert_eq!(status, 400, "no body: {answer}");
    // Nothing invalid was stored.
    let (_, list) = call(&app, Method::GET, &triggers_path(""), Some(&owner), None).await;
    assert_eq!(list["triggers"].as_array().unwrap().len(), 1);

    // The catalogue and the placeholder preview.
    let (status, fields) = call(
        &app,
        Method::GET,
        &triggers_path("/fields"),
        Some(&plain),
        None,
    )
    .await;
    assert_eq!(status, 200, "{fields}");
    let url = fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|field| field["field"] == "url")
        .expect("url field");
    assert_eq!(url["type"], "string");
    assert!(url["ops"].as_array().unwrap().contains(&json!("contains")));
    assert!(
        fields["placeholders"]
            .as_array()
            .unwrap()
            .contains(&json!("name"))
    );
    let render_path = triggers_path("/render");
    let render = |body: Value| call(&app, Method::POST, &render_path, Some(&plain), Some(body));
    let (status, rendered) = render(json!({"text": "Hi {first_name|there} from {city}!"})).await;
    assert_eq!(status, 200, "{rendered}");
    assert_eq!(rendered["text"], "Hi Jana from Prague!");
    view(&app, "render-visitor-01", "https://shop.example/pricing").await;
    let (status, rendered) = render(json!({"text": "Hi {first_name|there}, we write to {email} soon.", "visitor_id": "render-visitor-01"})).await;
    assert_eq!(status, 200, "{rendered}");
    assert_eq!(
        rendered["text"], "Hi there, we write to soon.",
        "missing data renders empty, without a doubled space"
    );
    let (status, answer) = render(json!({"text": "Hi {cty}"})).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("text: unknown placeholder {cty}")
    );
    let (status, _) = render(json!({"text": "Hi", "visitor_id": "nobody-here-0001"})).await;
    assert_eq!(status, 404);

    // Who may do what: a plain agent reads but cannot change or test-fire; an agent without the
    // site gets 403; an unknown site or trigger is 404.
    let edit_calls = [
        (
            Method::POST,
            triggers_path(""),
            Some(pricing_trigger("Nope")),
        ),
        (Method::PUT, one(id), Some(pricing_trigger("Nope"))),
        (Method::PATCH, one(id), Some(json!({"enabled": true}))),
        (Method::DELETE, one(id), None),
        (
            Method::POST,
            triggers_path(&format!("/{id}/test")),
            Some(json!({"visitor_id": "render-visitor-01"})),
        ),
    ];
    for (method, path, body) in &edit_calls {
        let (status, answer) = call(&app, method.clone(), path, Some(&plain), body.clone()).await;
        assert_eq!(status, 403, "plain agent {method} {path}: {answer}");
    }
    let read_calls = [
        (Method::GET, triggers_path(""), None),
        (Method::GET, one(id), None),
        (Method::GET, triggers_path("/fields"), None),
        (Method::GET, triggers_path(&format!("/{id}/stats")), None),
        (Method::GET, triggers_path(&format!("/{id}/matches")), None),
        (
            Method::POST,
            triggers_path("/preview"),
            Some(pricing_trigger("Draft")),
        ),
        (
            Method::POST,
            triggers_path("/render"),
            Some(json!({"text": "Hi"})),
        ),
    ];
    for (method, path, body) in &read_calls {
        let (status, answer) = call(&app, method.clone(), path, Some(&plain), body.clone()).await;
        assert_eq!(status, 200, "plain agent {method} {path}: {answer}");
        let (status, answer) =
            call(&app, method.clone(), path, Some(&outsider), body.clone()).await;
        assert_eq!(
            status, 403,
            "agent without the site {method} {path}: {answer}"
        );
        let (status, _) = call(&app, method.clone(), path, None, body.clone()).await;
        assert_eq!(status, 401, "anonymous {method} {path}");
    }
    let (status, _) = call(
        &app,
        Method::GET,
        "/api/sites/no-such-site/triggers",
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 404);
    for (method, path, body) in [
        (Method::GET, one(id + 100), None),
        (Method::PUT, one(id + 100), Some(pricing_trigger("Ghost"))),
        (Method::PATCH, one(id + 100), Some(json!({"enabled": true}))),
        (Method::DELETE, one(id + 100), None),
        (Method::GET, triggers_path("/not-a-number"), None),
        (
            Method::GET,
            triggers_path(&format!("/{}/stats", id + 100)),
            None,
        ),
        (
            Method::GET,
            triggers_path(&format!("/{}/matches", id + 100)),
            None,
        ),
    ] {
        let (status, answer) = call(&app, method.clone(), &path, Some(&owner), body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }

    // An API token acts as its agent.
    let (status, token) = call(
        &app,
        Method::POST,
        "/api/tokens",
        Some(&owner),
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let response = app
        .http
        .post(app.url(&triggers_path("")))
        .header("authorization", &bearer)
        .json(&pricing_trigger("From a script"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = app
        .http
        .get(app.url(&triggers_path("")))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    let names: Vec<&str> = list["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|trigger| trigger["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["From a script", "Spring pricing offer (v2)"],
        "priority 10 before 3"
    );

    // Delete: gone, stats and all.
    let (status, _) = call(&app, Method::DELETE, &one(id), Some(&owner), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, Method::GET, &one(id), Some(&owner), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, Method::DELETE, &one(id), Some(&owner), None).await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

#[tokio::test]
async fn who_matches_right_now_is_exactly_who_the_engine_fires_for() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    // The widget is hidden on one pricing page: triggers never fire where it does not show.
    let (status, body) = call(
        &app,
        Method::PUT,
        &format!("/api/sites/{TEST_SITE}/widget"),
        Some(&owner),
        Some(json!({"pages": {"mode": "blacklist", "patterns": ["/pricing/enterprise"]}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Switched off while the visitors arrive, so nothing fires yet. The delivery is delayed an
    // hour: nobody gets a conversation (which would make them "on chat") during the test, so
    // what keeps a visitor out afterwards is the limit alone.
    let mut body = pricing_trigger("Pricing from ads");
    body["enabled"] = json!(false);
    body["delay_secs"] = json!(3600);
    let (status, created) = call(
        &app,
        Method::POST,
        &triggers_path(""),
        Some(&owner),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();

    let base = "https://shop.example";
    let cases = [
        ("match-desktop-01", "/pricing?utm_source=ads", true),
        ("match-case-0001", "/pricing/team?utm_source=ADS", true),
        ("other-source-01", "/pricing?utm_source=google", false),
        ("other-page-0001", "/about?utm_source=ads", false),
        (
            "widget-hidden-1",
            "/pricing/enterprise?utm_source=ads",
            false,
        ),
        ("blocked-000001", "/pricing?utm_source=ads", false),
        ("chatting-00001", "/pricing?utm_source=ads", false),
        ("gone-000000001", "/pricing?utm_source=ads", false),
    ];
    for (visitor, path, _) in &cases {
        view(&app, visitor, &format!("{base}{path}")).await;
    }
    // Campaign parameters arriving on a later page of the visit count too.
    view(&app, "late-utm-00001", &format!("{base}/pricing")).await;
    view(
        &app,
        "late-utm-00001",
        &format!("{base}/pricing?utm_source=ads"),
    )
    .await;
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/blocked-000001/block"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/chatting-00001/conversations"),
        Some(&owner),
        Some(json!({"text": "Hello, can I help?"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    wait_on_chat(&app, "chatting-00001").await;
    let mut leave = page_view(
        "gone-000000001",
        "visit-gone-000000001",
        &format!("{base}/pricing?utm_source=ads"),
    );
    leave["type"] = json!("leave");
    assert_eq!(app.beacon(&leave).await.0, 200);

    let mut expected: BTreeSet<String> = cases
        .iter()
        .filter(|(_, _, matches)| *matches)
        .map(|(visitor, _, _)| (*visitor).to_owned())
        .collect();
    expected.insert("late-utm-00001".into());
    let live: Vec<&str> = cases
        .iter()
        .map(|(visitor, _, _)| *visitor)
        .filter(|visitor| *visitor != "gone-000000001")
        .chain(["late-utm-00001"])
        .collect();

    let matches_path = triggers_path(&format!("/{id}/matches"));
    let (status, matches) = call(&app, Method::GET, &matches_path, Some(&owner), None).await;
    assert_eq!(status, 200, "{matches}");
    assert_eq!(ids(&matches), expected, "{matches}");
    assert_eq!(matches["count"], expected.len());
    assert!(
        matches["visitors"][0]["url"]
            .as_str()
            .unwrap()
            .contains("/pricing")
    );
    // The editor's preview of the saved trigger agrees.
    let mut draft = created.clone();
    draft["enabled"] = json!(true);
    let (status, preview) = call(
        &app,
        Method::POST,
        &triggers_path("/preview"),
        Some(&owner),
        Some(draft.clone()),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(ids(&preview), expected);

    // Switched on, the engine's own decision for every live visitor agrees...
    let (status, _) = call(
        &app,
        Method::PATCH,
        &triggers_path(&format!("/{id}")),
        Some(&owner),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    for visitor in &live {
        let evaluation = app
            .state()
            .triggers
            .evaluate(TEST_SITE, visitor)
            .await
            .expect("a live visitor of a site with triggers");
        assert_eq!(
            evaluation.fire == Some(id),
            expected.contains(*visitor),
            "{visitor}: {evaluation:?}"
        );
    }
    // ...and so do the fires when each of them views the page again. Each beacon is evaluated
    // before its answer, so every fire is published by the time the last answer is in.
    let mut events = app.state().triggers.subscribe();
    for visitor in &live {
        let url = app
            .state()
            .presence
            .get(TEST_SITE, visitor)
            .unwrap()
            .current_url
            .to_string();
        view(&app, visitor, &url).await;
    }
    let mut fired = BTreeSet::new();
    loop {
        match events.try_recv() {
            Ok(TriggerEvent::Fired {
                trigger_id,
                visitor_id,
                ..
            }) => {
                assert_eq!(trigger_id, id);
                assert!(fired.insert(visitor_id), "fired twice");
            }
            Ok(_) => {}
            Err(TryRecvError::Empty) => break,
            Err(error) => panic!("trigger events: {error}"),
        }
    }
    assert_eq!(fired, expected);
    // /metrics counts them (the engine's own counters, read at the scrape) and shows the pending
    // wake-ups (none: no condition here depends on time).
    let want = format!(
        "porchlight_trigger_events_total{{event=\"fired\"}} {}",
        expected.len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|line| line == want) {
            assert!(
                metrics
                    .lines()
                    .any(|line| line == "porchlight_trigger_wakeups_pending 0")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no {want:?} in /metrics:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Once per visitor: nobody matches any more, and the preview of the saved trigger knows.
    // A new trigger with the same conditions reaches nobody either while their messages wait
    // for the delay: one proactive message at a time.
    let (_, matches) = call(&app, Method::GET, &matches_path, Some(&owner), None).await;
    assert_eq!(matches["count"], 0, "{matches}");
    let (_, preview) = call(
        &app,
        Method::POST,
        &triggers_path("/preview"),
        Some(&owner),
        Some(draft.clone()),
    )
    .await;
    assert_eq!(preview["count"], 0, "{preview}");
    draft.as_object_mut().unwrap().remove("id");
    let (_, preview) = call(
        &app,
        Method::POST,
        &triggers_path("/preview"),
        Some(&owner),
        Some(draft),
    )
    .await;
    assert_eq!(preview["count"], 0, "{preview}");
    // The fires are counted (written behind; the stats read what is pending too).
    let (status, stats) = call(
        &app,
        Method::GET,
        &triggers_path(&format!("/{id}/stats")),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["variants"][0]["variant"], "a");
    assert_eq!(stats["variants"][0]["fired"], expected.len());
    assert_eq!(stats["variants"][0]["delivered"], 0);
    app.shutdown().await;
}

#[tokio::test]
async fn test_fire_sends_now_and_refuses_blocked_chatting_and_absent_visitors() {
    let app = TestApp::start().await;
    let owner = app.owner_cookie().await;
    let mut body = pricing_trigger("Test me");
    body["enabled"] = json!(false);
    body["variants"] = json!([
        {"key": "a", "author": {"bot": "Porchlight"}, "text": "Variant A", "weight": 1},
        {"key": "b", "author": {"bot": "Porchlight"}, "text": "Variant B for {first_name|you}", "weight": 1},
    ]);
    let (status, created) = call(
        &app,
        Method::POST,
        &triggers_path(""),
        Some(&owner),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    let test_path = triggers_path(&format!("/{id}/test"));
    let test = |visitor: &str, variant: Option<&str>| {
        let mut body = json!({ "visitor_id": visitor });
        if let Some(variant) = variant {
            body["variant"] = json!(variant);
        }
        call(&app, Method::POST, &test_path, Some(&owner), Some(body))
    };

    // A live visitor on any page gets the chosen variant now, conditions and limits aside.
    view(&app, "test-fire-00001", "https://shop.example/about").await;
    let (status, answer) = test("test-fire-00001", Some("b")).await;
    assert_eq!(status, 200, "{answer}");
    let conversation_id = answer["conversation_id"].as_u64().expect("conversation id");
    let (status, conversation) = call(
        &app,
        Method::GET,
        &format!("/api/conversations/{conversation_id}"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    let conversation = &conversation["conversation"];
    assert_eq!(conversation["origin"]["kind"], "trigger");
    assert_eq!(conversation["origin"]["trigger_id"], id);
    assert_eq!(conversation["origin"]["variant"], "b");
    assert_eq!(conversation["origin"]["test"], true);
    let (_, messages) = call(
        &app,
        Method::GET,
        &format!("/api/conversations/{conversation_id}/messages"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(messages["messages"][0]["body"]["text"], "Variant B for you");

    // Now in a conversation: refused, like a blocked visitor. Unknown variants and visitors,
    // and visitors who left, are not found.
    wait_on_chat(&app, "test-fire-00001").await;
    let (status, answer) = test("test-fire-00001", None).await;
    assert_eq!(status, 409, "{answer}");
    view(&app, "test-blocked-01", "https://shop.example/about").await;
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/sites/{TEST_SITE}/visitors/test-blocked-01/block"),
        Some(&owner),
        Some(json!({})),
    )
    .await;
    assert!(status == 200 || status == 201);
    let (status, answer) = test("test-blocked-01", None).await;
    assert_eq!(status, 409, "{answer}");
    view(&app, "test-other-0001", "https://shop.example/about").await;
    let (status, answer) = test("test-other-0001", Some("zz")).await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) = test("not-here-000001", None).await;
    assert_eq!(status, 404);
    let mut leave = page_view(
        "test-other-0001",
        "visit-test-other-0001",
        "https://shop.example/about",
    );
    leave["type"] = json!("leave");
    assert_eq!(app.beacon(&leave).await.0, 200);
    let (status, answer) = test("test-other-0001", None).await;
    assert_eq!(status, 404, "{answer}");

    // Test-fires are not counted.
    let (_, stats) = call(
        &app,
        Method::GET,
        &triggers_path(&format!("/{id}/stats")),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(stats["total"]["fired"], 0, "{stats}");
    assert_eq!(stats["total"]["delivered"], 0, "{stats}");
    app.shutdown().await;
}
