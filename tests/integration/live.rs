//! The live push channel: a snapshot on connect, then coalesced deltas with counts.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use testkit::app::{TEST_SITE, TestApp, page_view};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_panel(app: &TestApp, cookie: &str) -> Socket {
    let mut request = app
        .ws_url(&format!("/api/sites/{TEST_SITE}/live"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("panel connects")
        .0
}

async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

#[tokio::test]
async fn a_panel_gets_a_snapshot_then_coalesced_deltas() {
    let app = TestApp::start().await;
    app.view_page(
        "visitor-live-0001",
        "visit-live-0001",
        "https://shop.example/",
    )
    .await;
    let cookie = app.owner_cookie().await;
    let mut panel = open_panel(&app, &cookie).await;

    let snapshot = next_frame(&mut panel).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["counts"]["all"], 1);
    assert_eq!(snapshot["visitors"][0]["id"], "visitor-live-0001");

    // Ten page views of one visitor within one push interval arrive as one upsert.
    for page in 0..10 {
        let body = page_view(
            "visitor-live-0002",
            "visit-live-0002",
            &format!("https://shop.example/p/{page}?utm_campaign=spring"),
        );
        assert_eq!(app.beacon(&body).await.0, 200);
    }
    let mut seen_pages = 0;
    while seen_pages < 10 {
        let delta = next_frame(&mut panel).await;
        assert_eq!(delta["type"], "delta");
        assert!(delta["counts"]["all"].as_u64().unwrap() >= 1);
        for row in delta["upsert"].as_array().unwrap() {
            if row["id"] == "visitor-live-0002" {
                seen_pages = row["pages"].as_u64().unwrap();
                assert_eq!(row["utm_campaign"], "spring");
                assert!(
                    row["segments"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("active"))
                );
            }
        }
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let coalesced: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("porchlight_panel_changes_coalesced_total "))
        .expect("coalesced metric")
        .parse()
        .unwrap();
    assert!(
        coalesced > 0,
        "page views in one interval were coalesced: {metrics}"
    );
    app.shutdown().await;
}
