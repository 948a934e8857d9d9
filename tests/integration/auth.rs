//! The panel's data and push channel refuse requests without a valid session or token, and an
//! agent sees only the sites they have access to.

use engage::Role;
use serde_json::json;
use testkit::app::{TEST_SITE, TestApp, page_view};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn ws_status(app: &TestApp, path: &str, cookie: Option<&str>, bearer: Option<&str>) -> u16 {
    let mut request = app.ws_url(path).into_client_request().unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
    }
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("unexpected WebSocket error: {error}"),
    }
}

#[tokio::test]
async fn data_and_push_need_a_valid_session_or_token() {
    let app = TestApp::start().await;
    app.view_page(
        "visitor-auth-0001",
        "visit-auth-0001",
        "https://shop.example/",
    )
    .await;
    let paths = [
        "/api/me".to_owned(),
        format!("/api/sites/{TEST_SITE}/visitors"),
        format!("/api/sites/{TEST_SITE}/visitors/visitor-auth-0001"),
        format!("/api/sites/{TEST_SITE}/counts"),
        "/api/sites".to_owned(),
    ];
    for path in &paths {
        assert_eq!(
            app.get_json(path, None).await.0,
            401,
            "{path} without credentials"
        );
        assert_eq!(
            app.get_json(path, Some("pl_session=forged-session-token"))
                .await
                .0,
            401,
            "{path} with a forged cookie"
        );
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth("plt_forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path} with a forged token");
    }
    let live = format!("/api/sites/{TEST_SITE}/live");
    assert_eq!(ws_status(&app, &live, None, None).await, 401);
    assert_eq!(
        ws_status(&app, &live, Some("pl_session=forged"), None).await,
        401
    );
    assert_eq!(ws_status(&app, &live, None, Some("plt_forged")).await, 401);

    // The real credentials work, and logging out ends the session.
    let cookie = app.owner_cookie().await;
    assert_eq!(app.get_json(&paths[1], Some(&cookie)).await.0, 200);
    assert_eq!(ws_status(&app, &live, Some(&cookie), None).await, 101);
    let response = app
        .http
        .post(app.url("/api/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get_json(&paths[1], Some(&cookie)).await.0,
        401,
        "the session ended"
    );

    let response = app
        .http
        .post(app.url("/api/login"))
        .json(&json!({"email": testkit::app::OWNER_EMAIL, "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.shutdown().await;
}

#[tokio::test]
async fn an_agent_sees_only_their_sites() {
    let app = TestApp::start().await;
    let state = app.state();
    state
        .accounts
        .create_site("Other shop", &[], Some("othersite"))
        .await
        .unwrap();
    state.sites.reload(&*state.store).await.unwrap();
    let agent = state
        .accounts
        .create_agent(
            "anna@example.com",
            "Anna Agent",
            Role::Agent,
            "anna's password",
        )
        .await
        .unwrap();
    state
        .accounts
        .grant_site(agent.id, TEST_SITE)
        .await
        .unwrap();
    let mut other = page_view(
        "visitor-other-001",
        "visit-other-001",
        "https://other.example/",
    );
    other["site"] = json!("othersite");
    assert_eq!(app.beacon(&other).await.0, 200);

    let cookie = app.login("anna@example.com", "anna's password").await;
    let (status, me) = app.get_json("/api/me", Some(&cookie)).await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = me["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [TEST_SITE]);
    assert_eq!(
        app.get_json(&format!("/api/sites/{TEST_SITE}/visitors"), Some(&cookie))
            .await
            .0,
        200
    );
    for path in [
        "/api/sites/othersite/visitors",
        "/api/sites/othersite/visitors/visitor-other-001",
        "/api/sites/othersite/counts",
    ] {
        let (status, body) = app.get_json(path, Some(&cookie)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("no access"),
            "{body}"
        );
    }
    assert_eq!(
        ws_status(&app, "/api/sites/othersite/live", Some(&cookie), None).await,
        403
    );
    assert_eq!(
        app.get_json("/api/agents", Some(&cookie)).await.0,
        403,
        "agents cannot manage agents"
    );

    // An API token acts as its agent, with the same limits.
    let response = app
        .http
        .post(app.url("/api/tokens"))
        .header("cookie", &cookie)
        .json(&json!({"name": "script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let token = response.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .http
        .get(app.url(&format!("/api/sites/{TEST_SITE}/visitors")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .http
        .get(app.url("/api/sites/othersite/visitors"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        ws_status(
            &app,
            &format!("/api/sites/{TEST_SITE}/live"),
            None,
            Some(&token)
        )
        .await,
        101
    );
    app.shutdown().await;
}
