//! Durability under SIGKILL (issue 3): a visitor sends chat messages as fast as acknowledgements
//! come back; the server process is killed with SIGKILL mid-flow and started again on the same
//! data directory; every message that had been acknowledged must be there, exactly once.
//!
//! This is its own test binary without the libtest harness because the server must be a
//! separate process to be killed: the binary runs itself as that child process
//! (`PORCHLIGHT_KILL_CHILD=<data dir>`). It prints the usual `N passed, N failed` line.

use std::collections::HashMap;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::app::{OWNER_EMAIL, OWNER_PASSWORD, TEST_SITE, TestApp, page_view};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

const CHILD_ENV: &str = "PORCHLIGHT_KILL_CHILD";
const VISITOR: &str = "visitor-kill-0001";
/// Acknowledged messages to collect before the kill.
const ACKED_BEFORE_KILL: usize = 60;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Ok(data_dir) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(data_dir));
        return ExitCode::SUCCESS;
    }
    let name = "acknowledged_messages_survive_sigkill";
    match runtime.block_on(acknowledged_messages_survive_sigkill()) {
        Ok(()) => {
            println!("test {name} ... ok");
            println!("1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("test {name} ... FAILED: {error:#}");
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

/// The server process: a TestApp on the given data directory; it prints its address and runs
/// until killed.
async fn child(data_dir: String) {
    let app = TestApp::start_with(|settings| settings.common.data_dir = data_dir.into()).await;
    println!("LISTENING {}", app.addr);
    std::future::pending::<()>().await;
}

async fn spawn_server(data_dir: &std::path::Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the server process")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                return Ok::<_, anyhow::Error>(addr.to_owned());
            }
        }
        bail!("the server process ended before listening")
    })
    .await
    .context("the server process did not start within 30 s")??;
    Ok((child, addr))
}

async fn acknowledged_messages_survive_sigkill() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let http = testkit::http_client();
    let (mut server, addr) = spawn_server(data_dir.path()).await?;

    let beacon = page_view(VISITOR, "visit-kill-0001", "https://shop.example/");
    let response = http
        .post(format!("http://{addr}/v1/beacon"))
        .header("content-type", "text/plain")
        .body(beacon.to_string())
        .send()
        .await?;
    ensure!(response.status() == 200, "beacon: {}", response.status());
    let credential = testkit::app::new_credential();
    let response = http
        .post(format!("http://{addr}/v1/chat/credential"))
        .header("content-type", "text/plain")
        .body(json!({ "site": TEST_SITE, "vid": VISITOR, "credential": credential }).to_string())
        .send()
        .await?;
    ensure!(
        response.status() == 201,
        "credential: {}",
        response.status()
    );

    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/chat/socket?site={TEST_SITE}"))
            .await?;
    let hello = json!({ "type": "hello", "site": TEST_SITE, "vid": VISITOR, "credential": credential, "after": {} });
    socket.send(Message::Text(hello.to_string().into())).await?;

    // Keep several messages in flight, so the kill lands between a write and its ack for some.
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut conversation_id = None;
    let mut next = 0u64;
    let mut in_flight = 0;
    let killed = loop {
        while in_flight < 4 && (conversation_id.is_some() || next == 0) {
            let frame = json!({
                "type": "send",
                "client_id": format!("m-{next}"),
                "conversation_id": conversation_id,
                "text": format!("message number {next}"),
            });
            socket.send(Message::Text(frame.to_string().into())).await?;
            next += 1;
            in_flight += 1;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .context("no frame within 10 s")?
            .context("socket closed")??;
        let Message::Text(text) = frame else { continue };
        let frame: Value = serde_json::from_str(&text)?;
        if frame["type"] == "ack" {
            in_flight -= 1;
            conversation_id = frame["conversation_id"].as_u64();
            acked.insert(
                frame["client_id"].as_str().context("client id")?.to_owned(),
                frame["seq"].as_u64().context("seq")?,
            );
            if acked.len() >= ACKED_BEFORE_KILL {
                server.start_kill()?; // SIGKILL on Unix: no shutdown, no flush
                break server.wait().await?;
            }
        } else if frame["type"] == "error" {
            bail!("the server refused a message: {frame}");
        }
    };
    ensure!(
        !killed.success(),
        "the server was killed, not stopped: {killed}"
    );
    let conversation_id = conversation_id.context("a conversation was started")?;

    let (_server, addr) = spawn_server(data_dir.path()).await?;
    let login = http
        .post(format!("http://{addr}/api/login"))
        .json(&json!({ "email": OWNER_EMAIL, "password": OWNER_PASSWORD }))
        .send()
        .await?;
    ensure!(
        login.status() == 200,
        "login after restart: {}",
        login.status()
    );
    let cookie = login
        .headers()
        .get("set-cookie")
        .context("session cookie")?
        .to_str()?
        .split(';')
        .next()
        .context("cookie value")?
        .to_owned();
    let messages: Value = http
        .get(format!(
            "http://{addr}/api/conversations/{conversation_id}/messages?after=0&limit=1000"
        ))
        .header("cookie", cookie)
        .send()
        .await?
        .json()
        .await?;
    let messages = messages["messages"].as_array().context("messages")?;
    let mut stored: HashMap<&str, Vec<u64>> = HashMap::new();
    for (index, message) in messages.iter().enumerate() {
        let seq = message["seq"].as_u64().context("seq")?;
        ensure!(
            seq == index as u64 + 1,
            "seqs are dense and ordered: {seq} at {index}"
        );
        if let Some(client_id) = message["client_id"].as_str() {
            stored.entry(client_id).or_default().push(seq);
        }
    }
    for (client_id, seq) in &acked {
        match stored.get(client_id.as_str()).map(Vec::as_slice) {
            Some([stored_seq]) => ensure!(
                stored_seq == seq,
                "{client_id}: acked as {seq}, stored as {stored_seq}"
            ),
            Some(many) => bail!("{client_id} is stored {} times", many.len()),
            None => bail!("{client_id} was acknowledged as seq {seq} but is lost"),
        }
    }
    ensure!(
        stored.values().all(|seqs| seqs.len() == 1),
        "no message is stored twice"
    );
    println!(
        "{} messages acknowledged before SIGKILL, {} stored after restart (acknowledged ones all present once)",
        acked.len(),
        stored.len()
    );
    Ok(())
}
