//! End to end in a real Chromium: a visitor browses the demo site in one browser context while an
//! agent signed into the console in another watches them arrive, navigate and leave.

use std::time::{Duration, Instant};

use testkit::app::{TestApp, sign_in_console};
use testkit::browser::{Browser, Page};

const ACTIVE_WINDOW_MS: i64 = 3_000;

/// Waits until `predicate` holds in the agent's page and returns how long that took since
/// `since`; fails if it took more than a second.
async fn within_a_second(page: &Page, predicate: &str, since: Instant, what: &str) -> Duration {
    page.wait_for(predicate, Duration::from_millis(1_500))
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let elapsed = since.elapsed();
    assert!(
        elapsed <= Duration::from_secs(1),
        "{what} took {elapsed:?}, more than a second"
    );
    elapsed
}

fn row(visitor_id: &str) -> String {
    format!(r#"document.querySelector('.visitor-row[data-visitor-id="{visitor_id}"]')"#)
}

#[tokio::test]
async fn an_agent_watches_a_visitor_arrive_navigate_and_leave() {
    let app = TestApp::start_with(|settings| {
        settings.demo = true;
        settings.simulate = 0;
        settings.presence.active_window_ms = ACTIVE_WINDOW_MS;
        settings.presence.retention_ms = 60_000;
        settings.heartbeat = Duration::from_millis(1_000);
    })
    .await;
    let password = std::fs::read_to_string(app.data_path().join("demo-owner.txt"))
        .expect("demo owner password");
    let browser = Browser::launch().await.expect("Chromium starts");

    // The agent signs in to the console in their own browser context.
    let agent = browser.new_isolated_page().await.unwrap();
    sign_in_console(
        &app,
        &agent,
        dashboards::demo::DEMO_OWNER_EMAIL,
        password.trim(),
    )
    .await;
    agent
        .wait_for(
            "document.querySelector('#live-status')?.dataset.state === 'open'",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    agent
        .click(r#"button.chip[data-segment="active"]"#)
        .await
        .unwrap();

    // The visitor lands from the newsletter campaign.
    let visitor = browser.new_isolated_page().await.unwrap();
    let landed = Instant::now();
    visitor
        .goto(&app.url("/demo/?utm_source=newsletter&utm_campaign=spring"))
        .await
        .unwrap();
    let visitor_id: String = visitor
        .wait_for_value("localStorage.getItem('pl_vid')", Duration::from_secs(5))
        .await
        .unwrap();
    let visitor_row = row(&visitor_id);
    within_a_second(
        &agent,
        &format!("{visitor_row} !== null"),
        landed,
        "the visitor appears among the active",
    )
    .await;

    // A second page, loaded normally.
    let second = Instant::now();
    visitor.click("#nav-app").await.unwrap();
    within_a_second(
        &agent,
        &format!("{visitor_row}?.querySelector('.v-path')?.title.endsWith('/demo/app/')"),
        second,
        "the second page shows in the panel",
    )
    .await;

    // An SPA route: pushState, no page load.
    visitor
        .wait_for(
            "document.querySelector('#nav-settings') !== null",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let third = Instant::now();
    visitor.click("#nav-settings").await.unwrap();
    within_a_second(
        &agent,
        &format!("{visitor_row}?.querySelector('.v-path')?.title.endsWith('/demo/app/settings')"),
        third,
        "the SPA route shows in the panel",
    )
    .await;

    // The visitor card has the client, the campaign and the three pages.
    agent
        .click(&format!(r#".visitor-row[data-visitor-id="{visitor_id}"]"#))
        .await
        .unwrap();
    agent
        .wait_for(
            "document.querySelector('#visitor-card')?.dataset.state === 'ready'",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let field = |name: &str| {
        format!(r#"document.querySelector('#visitor-card dd[data-field="{name}"]')?.textContent"#)
    };
    let browser_name: String = agent.eval(&field("browser")).await.unwrap();
    let os: String = agent.eval(&field("os")).await.unwrap();
    let campaign: String = agent.eval(&field("utm_campaign")).await.unwrap();
    let source: String = agent.eval(&field("utm_source")).await.unwrap();
    assert_eq!(browser_name, "Chrome");
    assert_eq!(os, "Linux");
    assert_eq!(campaign, "spring");
    assert_eq!(source, "newsletter");
    agent
        .wait_for(
            "document.querySelectorAll('#card-history > li').length === 3",
            Duration::from_secs(2),
        )
        .await
        .unwrap_or_else(|error| panic!("three pages in the history: {error}"));
    let history: Vec<String> = agent
        .eval("[...document.querySelectorAll('#card-history > li')].map(li => li.textContent)")
        .await
        .unwrap();
    assert!(history[0].contains("/demo/"), "{history:?}");
    assert!(history[1].contains("/demo/app/"), "{history:?}");
    assert!(history[2].contains("/demo/app/settings"), "{history:?}");

    // The tab closes: the leave signal arrives, and once the active window has passed without
    // activity the visitor leaves "active" (and so the filtered list).
    let closed = Instant::now();
    visitor.close().await.unwrap();
    agent
        .wait_for(
            &format!("{visitor_row} === null"),
            Duration::from_millis(ACTIVE_WINDOW_MS as u64 + 4_000),
        )
        .await
        .unwrap_or_else(|error| panic!("the visitor leaves active after the window: {error}"));
    let gone_after = closed.elapsed();
    assert!(
        gone_after >= Duration::from_millis(ACTIVE_WINDOW_MS as u64 - 1_100),
        "left active after {gone_after:?}: too early for a {ACTIVE_WINDOW_MS} ms window"
    );
    let active: String = agent
        .eval(r#"document.querySelector('button.chip[data-segment="active"] .count').textContent"#)
        .await
        .unwrap();
    assert_eq!(active.trim(), "0");
    let all: String = agent
        .eval(r#"document.querySelector('button.chip[data-segment="all"] .count').textContent"#)
        .await
        .unwrap();
    assert_eq!(all.trim(), "1", "still live, only no longer active");
    assert!(
        agent.exceptions().is_empty(),
        "console errors: {:?}",
        agent.exceptions()
    );
    app.shutdown().await;
}
