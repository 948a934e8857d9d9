//! Self-test of `testkit::browser`, the CDP client: against a tiny local HTTP server it checks
//! the operations the end-to-end tests rely on, above all that closing a tab runs `pagehide`
//! (so the widget's "visitor left" beacon is sent) and that contexts are isolated visitors.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use testkit::browser::Browser;
use tokio::sync::mpsc;

const LEAVE_PAGE: &str = r#"<!doctype html><title>leave</title>
<script>addEventListener('pagehide', () => navigator.sendBeacon('/hit', 'bye'));</script>
<p>bye on pagehide</p>"#;

const BUTTON_PAGE: &str = r#"<!doctype html><title>button</title>
<button id="b" onclick="this.textContent = 'clicked'">click me</button>
<input id="name" oninput="document.title = 'typed ' + this.value">"#;

/// Serves the two pages on 127.0.0.1:0; every POST /hit body arrives on the returned channel.
async fn serve() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let app = Router::new()
        .route("/leave", get(|| async { Html(LEAVE_PAGE) }))
        .route("/button", get(|| async { Html(BUTTON_PAGE) }))
        .route(
            "/hit",
            post(
                |State(tx): State<mpsc::UnboundedSender<String>>, body: String| async move {
                    let _ = tx.send(body);
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, rx)
}

#[tokio::test]
async fn browser_drives_pages_and_isolates_contexts() -> anyhow::Result<()> {
    let (base, _hits) = serve().await;
    let browser = Browser::launch().await?;
    let (ctx_a, ctx_b) = (browser.new_context().await?, browser.new_context().await?);
    let page = ctx_a.new_page().await?;
    page.goto(&format!("{base}/button")).await?;

    assert_eq!(page.eval::<i64>("1 + 1").await?, 2);
    assert_eq!(
        page.eval::<String>("Promise.resolve('awaited')").await?,
        "awaited"
    );
    assert_eq!(page.eval::<Option<i64>>("undefined").await?, None);

    page.click("#b").await?;
    page.wait_for(
        "document.querySelector('#b').textContent === 'clicked'",
        Duration::from_secs(5),
    )
    .await?;
    assert!(
        page.click("#missing").await.is_err(),
        "clicking nothing must fail"
    );

    page.type_into("#name", "ada").await?;
    let title: String = page
        .wait_for_value(
            "document.title.startsWith('typed') ? document.title : null",
            Duration::from_secs(5),
        )
        .await?;
    assert_eq!(title, "typed ada");

    // A timed-out wait names the expression and what it last saw.
    let err = page
        .wait_for("window.neverSet", Duration::from_millis(200))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("window.neverSet") && msg.contains("last value false"),
        "{msg}"
    );

    // Exceptions from eval are errors carrying the JS message.
    let err = page
        .eval_unit("(() => { throw new Error('direct boom') })()")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("direct boom"), "{err:#}");

    // Cookies are per context: A's page and a second page in A see it, B's page does not.
    page.eval_unit("document.cookie = 'who=a; path=/'").await?;
    let same_ctx = ctx_a.new_page().await?;
    same_ctx.goto(&format!("{base}/button")).await?;
    assert!(
        same_ctx
            .eval::<String>("document.cookie")
            .await?
            .contains("who=a")
    );
    let other_ctx = ctx_b.new_page().await?;
    other_ctx.goto(&format!("{base}/button")).await?;
    assert_eq!(other_ctx.eval::<String>("document.cookie").await?, "");

    // alert() is dismissed and recorded, not left blocking the page.
    page.eval_unit("alert(1)").await?;
    assert_eq!(page.dialogs(), vec!["alert: 1".to_owned()]);
    assert_eq!(
        page.eval::<i64>("2 + 2").await?,
        4,
        "page still responsive after alert"
    );

    // Uncaught exceptions and console output are recorded per page.
    assert!(page.exceptions().is_empty(), "{:?}", page.exceptions());
    page.eval_unit(
        "console.log('hello', 42); setTimeout(() => { throw new Error('async boom') }, 0)",
    )
    .await?;
    let wait = tokio::time::timeout(Duration::from_secs(5), async {
        while page.exceptions().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    wait.await?;
    assert!(
        page.exceptions()[0].contains("async boom"),
        "{:?}",
        page.exceptions()
    );
    assert!(
        page.console_messages()
            .contains(&"log: hello 42".to_owned()),
        "{:?}",
        page.console_messages()
    );
    assert!(other_ctx.exceptions().is_empty() && other_ctx.dialogs().is_empty());

    let png = page.screenshot_png().await?;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    Ok(())
}

#[tokio::test]
async fn closing_a_page_runs_pagehide_and_sends_the_beacon() -> anyhow::Result<()> {
    let (base, mut hits) = serve().await;
    let browser = Browser::launch().await?;
    let page = browser.new_isolated_page().await?;
    page.goto(&format!("{base}/leave")).await?;
    assert!(hits.try_recv().is_err(), "no beacon before the tab closes");

    page.close().await?;
    let hit = tokio::time::timeout(Duration::from_secs(5), hits.recv()).await;
    assert_eq!(
        hit.ok().flatten().as_deref(),
        Some("bye"),
        "closing the tab must send the pagehide beacon"
    );
    Ok(())
}

#[tokio::test]
async fn default_context_page_works() -> anyhow::Result<()> {
    let browser = Browser::launch().await?;
    let page = browser.new_page().await?;
    page.goto("data:text/html,<p id=x>hi</p>").await?;
    assert_eq!(
        page.eval::<String>("document.getElementById('x').textContent")
            .await?,
        "hi"
    );
    Ok(())
}
