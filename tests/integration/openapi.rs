//! The OpenAPI document served by the binary describes endpoints that exist: every documented
//! console path answers 401 without credentials (not 404 or 405), and with an API token the
//! read-only ones answer.

use serde_json::Value;
use testkit::app::TestApp;

/// A documented path with its parameters filled with plausible values.
fn concrete(path: &str) -> String {
    path.replace("{key}", testkit::app::TEST_SITE)
        .replace("{id}", "1")
        .replace("{att}", "abc")
        .replace("{conversation}", "1")
}

#[tokio::test]
async fn every_documented_console_endpoint_exists_and_needs_credentials() {
    let app = TestApp::start().await;
    let response = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, operations) in paths {
        // Signing in and out work without a session by design.
        if !path.starts_with("/api/") || path == "/api/login" || path == "/api/logout" {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let url = app.url(&concrete(path));
            let request = match method.as_str() {
                "get" => app.http.get(&url),
                "post" => app.http.post(&url).json(&serde_json::json!({})),
                "put" => app.http.put(&url).json(&serde_json::json!({})),
                "patch" => app.http.patch(&url).json(&serde_json::json!({})),
                "delete" => app.http.delete(&url),
                other => panic!("unexpected method {other} for {path}"),
            };
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, 401, "{method} {path} without credentials");
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations documented");
    app.shutdown().await;
}
