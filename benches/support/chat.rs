//! The visitor side of the chat channel, as the widget drives it: a page view beacon makes the
//! visitor live, `POST /v1/chat/credential` registers its credential, and the WebSocket
//! `GET /v1/chat/socket?site=KEY` opens with a `hello` frame answered by `ready`. Also the
//! agent's sign-in, and a bounded-concurrency helper for doing any of this thousands of times.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tokio::task::JoinSet;

use super::servers::{OWNER_EMAIL, OWNER_PASSWORD};
use super::traffic::{self, ORIGIN, SITE, Traffic, Visitor};
use super::ws::{self, Panel};

/// A live visitor with its chat credential.
#[derive(Clone, Debug)]
pub struct ChatVisitor {
    pub visitor: Visitor,
    pub credential: String,
}

/// `count` visitors of the shop, all on browsers (a crawler is never live, so it could not
/// chat).
pub fn visitors(count: usize, seed: u64) -> Vec<Visitor> {
    let mut visitors = Traffic::new(count, seed).visitors;
    for (index, visitor) in visitors.iter_mut().enumerate() {
        visitor.user_agent = traffic::BROWSERS[index % traffic::BROWSERS.len()];
    }
    visitors
}

/// Runs `task(0..count)` with at most `concurrency` at a time; results in index order.
pub async fn bounded<T, F, Fut>(count: usize, concurrency: usize, task: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut running = JoinSet::new();
    let mut next = 0;
    while next < count || !running.is_empty() {
        while next < count && running.len() < concurrency.max(1) {
            let future = task(next);
            let index = next;
            running.spawn(async move { future.await.map(|value| (index, value)) });
            next += 1;
        }
        if let Some(done) = running.join_next().await {
            let (index, value) = done??;
            results[index] = Some(value);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Sends the visitor's landing page view, which makes it live.
pub async fn page_view(
    client: &reqwest::Client,
    addr: SocketAddr,
    who: &Visitor,
) -> anyhow::Result<()> {
    let url = format!("{ORIGIN}/products/trail-jacket");
    let body = traffic::beacon_body(
        who,
        &who.sid,
        "pageview",
        &url,
        "Trail Jacket | Example Outfitters",
        who.referrer,
        now_ms(),
    );
    client
        .post(format!("http://{addr}/v1/beacon"))
        .header("User-Agent", who.user_agent)
        .header("Origin", ORIGIN)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .header("X-Forwarded-For", who.ip.to_string())
        .body(body)
        .send()
        .await?
        .error_for_status()
        .context("page view beacon")?;
    Ok(())
}

/// `POST /v1/chat/credential` for a live visitor: registers a fresh secret, as the widget does,
/// and returns it.
pub async fn credential(
    client: &reqwest::Client,
    addr: SocketAddr,
    who: &Visitor,
) -> anyhow::Result<String> {
    let credential = testkit::app::new_credential();
    let response = client
        .post(format!("http://{addr}/v1/chat/credential"))
        .header("User-Agent", who.user_agent)
        .header("Origin", ORIGIN)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .header("X-Forwarded-For", who.ip.to_string())
        .body(
            serde_json::json!({ "site": SITE, "vid": who.vid, "credential": credential })
                .to_string(),
        )
        .send()
        .await?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "credential: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(credential)
}

/// Makes `visitors` live and registers their credentials, `concurrency` at a time.
pub async fn prepare(
    addr: SocketAddr,
    visitors: Vec<Visitor>,
    concurrency: usize,
) -> anyhow::Result<Vec<ChatVisitor>> {
    let client = testkit::http_client();
    let visitors = std::sync::Arc::new(visitors);
    bounded(visitors.len(), concurrency, |index| {
        let client = client.clone();
        let visitors = std::sync::Arc::clone(&visitors);
        async move {
            let visitor = &visitors[index];
            page_view(&client, addr, visitor).await?;
            let credential = credential(&client, addr, visitor).await?;
            Ok(ChatVisitor {
                visitor: visitor.clone(),
                credential,
            })
        }
    })
    .await
}

/// Opens the visitor's socket, says hello and waits for `ready`.
pub async fn open_socket(
    addr: SocketAddr,
    who: &ChatVisitor,
    buffer: usize,
) -> anyhow::Result<Panel> {
    let ip = who.visitor.ip.to_string();
    let mut socket = Panel::connect_with_buffer(
        addr,
        &format!("/v1/chat/socket?site={SITE}"),
        &[
            ("Origin", ORIGIN),
            ("User-Agent", who.visitor.user_agent),
            ("X-Forwarded-For", &ip),
        ],
        buffer,
    )
    .await
    .context("opening a visitor socket")?;
    let hello = serde_json::json!({
        "type": "hello",
        "site": SITE,
        "vid": who.visitor.vid,
        "credential": who.credential,
        "after": {},
    })
    .to_string();
    socket.send_text(&hello).await?;
    let frame = socket.next().await.context("waiting for ready")?;
    let ready = frame.opcode == ws::TEXT
        && serde_json::from_slice::<serde_json::Value>(frame.payload)
            .is_ok_and(|value| value["type"] == "ready");
    if !ready {
        bail!(
            "expected ready after hello, got {:?}",
            String::from_utf8_lossy(&frame.payload[..frame.payload.len().min(200)])
        );
    }
    Ok(socket)
}

/// Signs the benchmark owner in; the session cookie (`name=value`).
pub async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    let response = testkit::http_client()
        .post(format!("http://{addr}/api/login"))
        .json(&serde_json::json!({ "email": OWNER_EMAIL, "password": OWNER_PASSWORD }))
        .send()
        .await?
        .error_for_status()
        .context("signing in")?;
    let cookie = response
        .headers()
        .get("set-cookie")
        .context("no session cookie")?
        .to_str()?;
    Ok(cookie.split(';').next().context("empty cookie")?.to_owned())
}

/// Soft limit on open files of this process (`Max open files` in `/proc/self/limits`).
pub fn open_files_limit() -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .context("no Max open files in /proc/self/limits")?;
    let soft = line["Max open files".len()..]
        .split_whitespace()
        .next()
        .context("malformed Max open files")?;
    Ok(if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse()?
    })
}
