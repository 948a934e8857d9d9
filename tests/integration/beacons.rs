//! The beacon endpoint: bad input of every kind, the client address behind proxies, crawlers,
//! exact counts under concurrent ingestion, and visit counts across a restart.

use serde_json::{Value, json};
use testkit::app::{CHROME_UA, OWNER_EMAIL, TEST_ORIGIN, TEST_SITE, TestApp, page_view};

/// One malformed request and what it must get back.
struct BadRequest {
    what: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    origin: Option<&'static str>,
    status: u16,
    message: &'static str,
}

fn bad(
    what: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    message: &'static str,
) -> BadRequest {
    BadRequest {
        what,
        content_type: Some("application/json"),
        body: body.into(),
        origin: None,
        status,
        message,
    }
}

fn with_field(field: &str, value: Value) -> Vec<u8> {
    let mut body = page_view(
        "visitor-bad-0001",
        "visit-bad-0001",
        "https://shop.example/",
    );
    body[field] = value;
    body.to_string().into_bytes()
}

fn bad_requests() -> Vec<BadRequest> {
    let long_url = format!("https://shop.example/{}", "a".repeat(10_000));
    let mut nested = "[".repeat(5_000);
    nested.push_str(&"]".repeat(5_000));
    let many_props: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("p{i}"), json!(i))).collect();
    let mut invalid_utf8 = br#"{"site":"testsite","vid":"visitor-bad-0001","sid":"visit-bad-0001","type":"pageview","url":"https://shop.example/","title":"bad "#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    invalid_utf8.extend_from_slice(br#""}"#);
    vec![
        bad("not JSON", "hello there", 400, "invalid beacon JSON"),
        bad("empty body", "", 400, "empty"),
        bad("a JSON array", "[1,2,3]", 400, "invalid beacon JSON"),
        bad("a JSON string", "\"pageview\"", 400, "invalid beacon JSON"),
        bad(
            "truncated JSON",
            r#"{"site":"testsite","vid":"#,
            400,
            "invalid beacon JSON",
        ),
        bad(
            "visitor id of the wrong type",
            with_field("vid", json!(12345678)),
            400,
            "invalid type",
        ),
        bad(
            "screen of the wrong type",
            with_field("screen", json!("big")),
            400,
            "invalid type",
        ),
        bad(
            "missing site",
            {
                let mut body = page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                );
                body.as_object_mut().unwrap().remove("site");
                body.to_string()
            },
            400,
            "missing field `site`",
        ),
        bad(
            "unknown site",
            with_field("site", json!("nosuchsite")),
            404,
            "unknown site",
        ),
        bad(
            "empty site",
            with_field("site", json!("")),
            400,
            "`site` is empty",
        ),
        bad("invalid UTF-8", invalid_utf8, 400, "invalid beacon JSON"),
        bad(
            "a 10 000-character URL",
            with_field("url", json!(long_url)),
            400,
            "field `url`",
        ),
        bad(
            "a URL that is not http",
            with_field("url", json!("javascript:alert(1)")),
            400,
            "http(s) URL",
        ),
        bad(
            "a negative timestamp",
            with_field("ts", json!(-5)),
            400,
            "field `ts`",
        ),
        bad(
            "a timestamp far in the future",
            with_field("ts", json!(99_999_999_999_999i64)),
            400,
            "field `ts`",
        ),
        bad(
            "a timestamp as text",
            with_field("ts", json!("yesterday")),
            400,
            "invalid type",
        ),
        bad(
            "an unknown beacon type",
            with_field("type", json!("explode")),
            400,
            "unknown variant",
        ),
        bad(
            "a visitor id too short",
            with_field("vid", json!("abc")),
            400,
            "field `vid`",
        ),
        bad(
            "a visitor id with markup",
            with_field("vid", json!("<script>alert(1)</script>")),
            400,
            "field `vid`",
        ),
        bad(
            "a visit id with spaces",
            with_field("sid", json!("visit id with spaces")),
            400,
            "field `sid`",
        ),
        bad(
            "identify without identity",
            with_field("type", json!("identify")),
            400,
            "needs an `identity`",
        ),
        bad(
            "identity with a nested property",
            {
                let mut body = page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                );
                body["type"] = json!("identify");
                body["identity"] = json!({"name": "Ann", "props": {"cart": {"items": 3}}});
                body.to_string()
            },
            400,
            "a string, number or boolean",
        ),
        bad(
            "identity with an invalid email",
            {
                let mut body = page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                );
                body["type"] = json!("identify");
                body["identity"] = json!({"email": "not an address"});
                body.to_string()
            },
            400,
            "not an email address",
        ),
        bad(
            "too many properties",
            {
                let mut body = page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                );
                body["type"] = json!("event");
                body["event"] = json!({"name": "added_to_cart", "props": many_props});
                body.to_string()
            },
            400,
            "more than 50 properties",
        ),
        bad(
            "an event with an empty name",
            {
                let mut body = page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                );
                body["type"] = json!("event");
                body["event"] = json!({"name": "  "});
                body.to_string()
            },
            400,
            "`event.name` is empty",
        ),
        bad(
            "a language that is not a tag",
            with_field("lang", json!("en US; drop table")),
            400,
            "field `lang`",
        ),
        bad(
            "an absurd screen",
            with_field("screen", json!([99_999, 1])),
            400,
            "field `screen`",
        ),
        bad(
            "a screen with negative sides",
            with_field("screen", json!([-1, 10])),
            400,
            "invalid value",
        ),
        bad(
            "a 2 000-character title",
            with_field("title", json!("t".repeat(2_000))),
            400,
            "field `title`",
        ),
        bad("JSON nested 5 000 deep", nested, 400, "invalid beacon JSON"),
        bad(
            "a body over the size limit",
            {
                let mut body = page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                );
                body["title"] = json!("x".repeat(40_000));
                body.to_string()
            },
            413,
            "larger than",
        ),
        BadRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            ..bad("a form content type", "site=testsite", 415, "not accepted")
        },
        BadRequest {
            content_type: None,
            ..bad(
                "no content type",
                page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                )
                .to_string(),
                415,
                "missing Content-Type",
            )
        },
        BadRequest {
            origin: Some("https://evil.example"),
            ..bad(
                "an origin the site does not allow",
                page_view(
                    "visitor-bad-0001",
                    "visit-bad-0001",
                    "https://shop.example/",
                )
                .to_string(),
                403,
                "not allowed",
            )
        },
    ]
}

#[tokio::test]
async fn malformed_beacons_get_a_clear_4xx_and_lose_nothing() {
    let app = TestApp::start().await;
    let (status, _) = app
        .beacon(&page_view(
            "visitor-good-0001",
            "visit-good-0001",
            "https://shop.example/",
        ))
        .await;
    assert_eq!(status, 200);

    let cases = bad_requests();
    assert!(cases.len() >= 20);
    for case in cases {
        let mut request = app.http.post(app.url("/v1/beacon")).body(case.body);
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(origin) = case.origin {
            request = request.header("origin", origin);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", case.what));
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{}: {body}", case.what);
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no error message in {body}", case.what));
        assert!(
            message.contains(case.message),
            "{}: message {message:?} lacks {:?}",
            case.what,
            case.message
        );
    }

    // Still serving, and what was recorded before is still there (and nothing bad was added).
    let (status, _) = app.get_json("/healthz", None).await;
    assert_eq!(status, 200);
    let cookie = app.owner_cookie().await;
    let (status, body) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/visitors"), Some(&cookie))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["visitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["visitor-good-0001"]);
    app.shutdown().await;
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_headers() {
    let app = TestApp::start().await;
    let response = app
        .http
        .post(app.url("/v1/beacon"))
        .header("content-type", "text/plain")
        .header("origin", TEST_ORIGIN)
        .body(
            page_view(
                "visitor-cors-0001",
                "visit-cors-0001",
                "https://shop.example/",
            )
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        TEST_ORIGIN
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_widget_at_the_servers_heartbeat_gets_no_content() {
    let app = TestApp::start().await;
    let send = |hb: Option<u64>| {
        let mut body = page_view("visitor-hb-0001", "visit-hb-0001", "https://shop.example/");
        if let Some(hb) = hb {
            body["hb"] = json!(hb);
        }
        app.http
            .post(app.url("/v1/beacon"))
            .header("content-type", "text/plain")
            .header("origin", TEST_ORIGIN)
            .body(body.to_string())
            .send()
    };
    let server_hb = app.state().settings.heartbeat.as_millis() as u64;

    // The widget already beats at the server's interval: 204, and the page's fetch may read it.
    let response = send(Some(server_hb)).await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        TEST_ORIGIN
    );
    assert!(response.bytes().await.unwrap().is_empty());

    // Another interval, or none: the answer tells the widget which one to use.
    for hb in [Some(server_hb + 1_000), None] {
        let response = send(hb).await.unwrap();
        assert_eq!(response.status(), 200, "hb {hb:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"ok": true, "heartbeat_ms": server_hb}),
            "hb {hb:?}"
        );
    }
    // Recorded every time.
    let cookie = app.owner_cookie().await;
    let (status, visitor) = app
        .get_json(
            &format!("/api/sites/{TEST_SITE}/visitors/visitor-hb-0001"),
            Some(&cookie),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(visitor["visitor"]["pages"], 3, "{visitor}");

    // A heartbeat that is not a number is a clear 400.
    let mut body = page_view("visitor-hb-0001", "visit-hb-0001", "https://shop.example/");
    body["hb"] = json!("fast");
    let (status, answer) = app.beacon(&body).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("invalid type"),
        "{answer}"
    );
    app.shutdown().await;
}

/// The `(ip, country code, city)` the sample database gives for network `index`.
fn sample(index: usize) -> (String, &'static str, &'static str) {
    let network = &geoip::fixture::NETWORKS[index];
    (
        geoip::fixture::sample_ip(index).to_string(),
        network.country_code,
        network.city,
    )
}

#[tokio::test]
async fn forwarded_for_resolves_only_from_a_trusted_proxy() {
    let trusted = TestApp::start_with(|settings| {
        settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    let untrusted = TestApp::start().await;
    let cookie_trusted = trusted.owner_cookie().await;
    let cookie_untrusted = untrusted.owner_cookie().await;

    let with_city: Vec<usize> = (0..geoip::fixture::NETWORKS.len())
        .filter(|&index| !geoip::fixture::NETWORKS[index].city.is_empty())
        .collect();
    assert!(
        with_city.len() >= 4,
        "the sample database has several cities"
    );
    let mut countries = std::collections::BTreeSet::new();
    for (n, &index) in with_city.iter().enumerate() {
        let (ip, country, city) = sample(index);
        countries.insert(country);
        let visitor = format!("visitor-geo-{n:04}");
        let body = page_view(&visitor, "visit-geo-0001", "https://shop.example/");
        for app in [&trusted, &untrusted] {
            let (status, _) = app
                .beacon_with(
                    &body,
                    &[("x-forwarded-for", &ip), ("user-agent", CHROME_UA)],
                )
                .await;
            assert_eq!(status, 200);
        }
        let (_, card) = trusted
            .get_json(
                &format!("/api/sites/{TEST_SITE}/visitors/{visitor}"),
                Some(&cookie_trusted),
            )
            .await;
        let card = &card["visitor"];
        assert_eq!(card["ip"], ip, "{card}");
        assert_eq!(card["country_code"], country, "{ip}");
        assert_eq!(card["city"], city, "{ip}");
        assert!(card["time_zone"].is_string(), "{card}");

        let (_, card) = untrusted
            .get_json(
                &format!("/api/sites/{TEST_SITE}/visitors/{visitor}"),
                Some(&cookie_untrusted),
            )
            .await;
        let card = &card["visitor"];
        assert_eq!(
            card["ip"], "127.0.0.1",
            "the header is ignored from an untrusted peer"
        );
        assert!(card["country_code"].is_null(), "{card}");
    }
    assert!(countries.len() >= 3, "several countries: {countries:?}");
    trusted.shutdown().await;
    untrusted.shutdown().await;
}

#[tokio::test]
async fn crawlers_are_counted_but_never_listed() {
    let app = TestApp::start().await;
    let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let (status, body) = app
        .beacon_with(
            &page_view(
                "visitor-bot-0001",
                "visit-bot-0001",
                "https://shop.example/",
            ),
            &[("user-agent", googlebot)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["ignored"], "crawler");
    let (status, _) = app
        .beacon_with(
            &page_view(
                "visitor-human-01",
                "visit-human-01",
                "https://shop.example/",
            ),
            &[("user-agent", CHROME_UA)],
        )
        .await;
    assert_eq!(status, 200);

    let cookie = app.owner_cookie().await;
    let (_, body) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/visitors"), Some(&cookie))
        .await;
    let ids: Vec<&str> = body["visitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["visitor-human-01"]);
    assert_eq!(body["counts"]["all"], 1);

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"porchlight_beacons_total{outcome="crawler"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"porchlight_live_visitors{segment="all"} 1"#),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn segment_counts_are_exact_under_concurrent_ingestion() {
    let app = std::sync::Arc::new(TestApp::start().await);
    let mut tasks = Vec::new();
    for task in 0..16 {
        let app = std::sync::Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            for round in 0..40 {
                // 60 visitors shared by all tasks: the same visitors are updated concurrently.
                let visitor = format!("visitor-conc-{:04}", (task * 7 + round) % 60);
                let mut body = page_view(
                    &visitor,
                    "visit-conc-0001",
                    &format!("https://shop.example/p/{round}"),
                );
                if round % 5 == 0 {
                    body["type"] = json!("identify");
                    body["identity"] =
                        json!({"name": format!("Visitor {visitor}"), "email": "v@example.com"});
                }
                let (status, _) = app.beacon(&body).await;
                assert_eq!(status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let cookie = app.owner_cookie().await;
    let mut by_segment = std::collections::BTreeMap::new();
    for segment in [
        "all",
        "active",
        "on_chat",
        "customers",
        "auto_messaged",
        "blocked",
    ] {
        let (status, body) = app
            .get_json(
                &format!("/api/sites/{TEST_SITE}/visitors?segment={segment}&limit=500"),
                Some(&cookie),
            )
            .await;
        assert_eq!(status, 200);
        by_segment.insert(segment, body["visitors"].as_array().unwrap().len());
    }
    let (_, counts) = app
        .get_json(&format!("/api/sites/{TEST_SITE}/counts"), Some(&cookie))
        .await;
    for (segment, listed) in &by_segment {
        assert_eq!(
            counts["counts"][segment], *listed as u64,
            "{segment}: {counts}"
        );
    }
    assert_eq!(by_segment["all"], 60);
    assert_eq!(by_segment["active"], 60);
    assert!(by_segment["customers"] > 0);
}

#[tokio::test]
async fn a_returning_visitor_is_recognised_after_a_restart() {
    let mut app = TestApp::start().await;
    let (status, _) = app
        .beacon(&page_view(
            "visitor-back-0001",
            "visit-back-first",
            "https://shop.example/",
        ))
        .await;
    assert_eq!(status, 200);
    let mut identify = page_view(
        "visitor-back-0001",
        "visit-back-first",
        "https://shop.example/",
    );
    identify["type"] = json!("identify");
    identify["identity"] =
        json!({"name": "Rita Return", "email": "rita@example.com", "props": {"plan": "pro"}});
    assert_eq!(app.beacon(&identify).await.0, 200);
    let cookie = app.owner_cookie().await;
    let (_, first) = app
        .get_json(
            &format!("/api/sites/{TEST_SITE}/visitors/visitor-back-0001"),
            Some(&cookie),
        )
        .await;
    assert_eq!(first["visitor"]["visits"], 1);

    app.restart().await;

    let (status, _) = app
        .beacon(&page_view(
            "visitor-back-0001",
            "visit-back-second",
            "https://shop.example/again",
        ))
        .await;
    assert_eq!(status, 200);
    let cookie = app.login(OWNER_EMAIL, testkit::app::OWNER_PASSWORD).await;
    let (_, second) = app
        .get_json(
            &format!("/api/sites/{TEST_SITE}/visitors/visitor-back-0001"),
            Some(&cookie),
        )
        .await;
    let second = &second["visitor"];
    assert_eq!(second["visits"], 2, "{second}");
    assert_eq!(second["first_seen"], first["visitor"]["first_seen"]);
    assert_eq!(second["number"], first["visitor"]["number"]);
    assert_eq!(second["name"], "Rita Return");
    assert_eq!(second["identity"]["props"]["plan"], "pro");
    app.shutdown().await;
}
