//! The live panel with 10 000 live visitors: only the visible rows are in the DOM, scrolling to
//! the end shows the oldest visitors, and search narrows the list.

use std::time::Duration;

use testkit::app::{CHROME_UA, OWNER_EMAIL, OWNER_PASSWORD, TEST_SITE, TestApp, sign_in_console};
use testkit::browser::Browser;
use tracker::{Beacon, BeaconKind};

const VISITORS: usize = 10_000;

#[tokio::test]
async fn the_panel_renders_only_what_is_visible_with_10_000_visitors() {
    let app = TestApp::start().await;
    for index in 0..VISITORS {
        let visitor_id = format!("visitor-scale-{index:05}");
        let url = format!(
            "https://shop.example/products/{}?utm_campaign=scale",
            index % 300
        );
        let beacon = Beacon {
            site: TEST_SITE,
            visitor_id: &visitor_id,
            visit_id: "visit-scale-0001",
            kind: BeaconKind::PageView,
            url: &url,
            title: "Product",
            referrer: None,
            ip: geoip::fixture::sample_ip(index),
            user_agent: CHROME_UA,
            language: Some("en-US"),
            screen: Some((1440, 900)),
        };
        app.state().ingest.record(&beacon).await.expect("recorded");
    }
    assert_eq!(app.state().presence.counts(TEST_SITE).all, VISITORS as u64);

    let browser = Browser::launch().await.expect("Chromium starts");
    let page = browser.new_isolated_page().await.unwrap();
    sign_in_console(&app, &page, OWNER_EMAIL, OWNER_PASSWORD).await;
    page.wait_for(
        r#"document.querySelector('button.chip[data-segment="all"] .count')?.textContent.trim() === '10000'"#,
        Duration::from_secs(15),
    )
    .await
    .expect("the snapshot of 10 000 visitors arrives");
    page.wait_for(
        "document.querySelectorAll('.visitor-row').length > 5",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let rendered: usize = page
        .eval("document.querySelectorAll('.visitor-row').length")
        .await
        .unwrap();
    assert!(
        rendered < 200,
        "{rendered} rows in the DOM: the list must render only what is visible"
    );

    // Newest activity first, so the first visitor recorded is at the very end.
    page.eval_unit("{ const list = document.querySelector('#visitor-list'); list.scrollTop = list.scrollHeight; }")
        .await
        .unwrap();
    page.wait_for(
        r#"document.querySelector('.visitor-row[data-visitor-id="visitor-scale-00000"]') !== null"#,
        Duration::from_secs(5),
    )
    .await
    .expect("scrolling to the end shows the oldest visitor");
    let rendered: usize = page
        .eval("document.querySelectorAll('.visitor-row').length")
        .await
        .unwrap();
    assert!(rendered < 200, "{rendered} rows after scrolling");

    page.type_into("#visitor-search", "/products/299")
        .await
        .unwrap();
    page.wait_for(
        "document.querySelector('#list-summary')?.textContent.includes('33 of 10000') \
         || document.querySelector('#list-summary')?.textContent.includes('33 of 10,000')",
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|error| panic!("search narrows to the 33 visitors on /products/299: {error}"));
    assert!(page.exceptions().is_empty(), "{:?}", page.exceptions());
    app.shutdown().await;
}
