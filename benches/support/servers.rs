//! The servers a benchmark child process runs (`--role NAME`), each on a Tokio runtime with one
//! worker thread:
//!
//! - `porchlight-server`: the real Porchlight server (the fixture GeoIP database, the loopback
//!   as a trusted proxy, the benchmark site; with `--owner`, also an owner who can open panels;
//!   with `--rules N`, N realistic trigger rules on the site, see `support::rules`, sending
//!   their messages `--rules-delay S` seconds after they fire, 0 by default).
//! - `baseline-server`: a bare axum endpoint at the same path that parses the same body into an
//!   equivalent struct with serde and answers 204, nothing else: the practical ceiling of an
//!   axum endpoint on this machine.
//!
//! Two more, for diagnosis only (`BENCH_INGEST_TARGETS` in the `ingest` benchmark):
//!
//! - `baseline-json-server`: the baseline plus what Porchlight's answer costs around the
//!   handler: the peer address (`ConnectInfo`), a size-limited body read, the JSON answer and
//!   the CORS headers, but no validation and no ingest.
//! - `porchlight-beacon-only-server`: Porchlight's own beacon handler and state, served by a
//!   router with only that route and no middleware (no `TraceLayer`).

use std::borrow::Cow;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use serde::Deserialize;

use super::traffic::{ORIGIN, SITE};

pub const OWNER_EMAIL: &str = "bench-owner@example.com";
pub const OWNER_PASSWORD: &str = "bench owner password";

/// Runs the server `role` until stdin closes.
pub fn run(role: &str, args: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{role}: cannot build the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let with_owner = args.iter().any(|arg| arg == "--owner");
    let rules = match args.iter().position(|arg| arg == "--rules") {
        None => 0,
        Some(at) => match args.get(at + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => {
                eprintln!("{role}: --rules needs a number");
                return ExitCode::FAILURE;
            }
        },
    };
    let rules_delay = match args.iter().position(|arg| arg == "--rules-delay") {
        None => 0,
        Some(at) => match args.get(at + 1).and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => n,
            None => {
                eprintln!("{role}: --rules-delay needs a number of seconds");
                return ExitCode::FAILURE;
            }
        },
    };
    let rules = (rules, rules_delay);
    let result = runtime.block_on(async {
        match role {
            "porchlight-server" => porchlight(with_owner, false, rules).await,
            "porchlight-beacon-only-server" => porchlight(with_owner, true, rules).await,
            "baseline-server" => baseline().await,
            "baseline-json-server" => baseline_json().await,
            other => Err(anyhow::anyhow!("unknown role {other:?}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{role}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves once stdin is closed (the parent stopped the benchmark or died).
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "READY {addr}")?;
    stdout.flush()?;
    Ok(())
}

/// `rules`: how many trigger rules to put on the site, and their messages' delay in seconds.
async fn porchlight(
    with_owner: bool,
    beacon_only: bool,
    (rules, rules_delay): (usize, u32),
) -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir().context("temporary data directory")?;
    let mmdb = data_dir.path().join("sample-city.mmdb");
    std::fs::write(&mmdb, geoip::fixture::city_database()).context("writing the GeoIP fixture")?;
    let mut settings = dashboards::Settings::for_tests(data_dir.path().join("data"));
    settings.mmdb = Some(mmdb);
    settings.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a network")];
    let server = dashboards::Server::start(settings).await?;
    let state = &server.state;
    state
        .accounts
        .create_site("Bench shop", &[ORIGIN.to_owned()], Some(SITE))
        .await?;
    state.sites.reload(&*state.store).await?;
    if rules > 0 {
        // One transaction and one rule-set build, as an import would do it.
        state
            .triggers
            .create_many(SITE, super::rules::realistic(rules, rules_delay))
            .await
            .context("storing the benchmark's trigger rules")?;
    }
    if with_owner {
        state
            .accounts
            .create_agent(
                OWNER_EMAIL,
                "Bench Owner",
                engage::Role::Owner,
                OWNER_PASSWORD,
            )
            .await?;
    }
    if beacon_only {
        let app = axum::Router::new()
            .route("/v1/beacon", post(dashboards::beacon::post_beacon))
            .with_state(server.state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr()?)?;
        axum::serve(listener, app)
            .with_graceful_shutdown(stdin_closed())
            .await?;
    } else {
        announce(server.addr)?;
        stdin_closed().await;
    }
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .context("shutdown took longer than 15s")??;
    Ok(())
}

/// The same fields as Porchlight's wire beacon, borrowed from the body where possible.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct BaselineBeacon<'a> {
    #[serde(borrow)]
    site: Cow<'a, str>,
    #[serde(borrow)]
    vid: Cow<'a, str>,
    #[serde(borrow)]
    sid: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: BaselineKind,
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    referrer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    lang: Option<Cow<'a, str>>,
    #[serde(default)]
    screen: Option<[u32; 2]>,
    #[serde(default)]
    ts: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BaselineKind {
    Pageview,
    Heartbeat,
    Leave,
    Identify,
    Event,
}

async fn baseline_beacon(body: Bytes) -> StatusCode {
    match serde_json::from_slice::<BaselineBeacon<'_>>(&body) {
        Ok(beacon) => {
            std::hint::black_box(&beacon);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// The baseline's parse, with Porchlight's answer and what it takes to give it.
async fn baseline_json_beacon(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let Ok(body) = axum::body::to_bytes(request.into_body(), 16 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(beacon) = serde_json::from_slice::<BaselineBeacon<'_>>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    std::hint::black_box((&beacon, peer));
    let mut response = Json(serde_json::json!({
        "ok": true,
        "heartbeat_ms": 15_000,
        "ignored": Option::<&str>::None,
    }))
    .into_response();
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn baseline_json() -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/v1/beacon", post(baseline_json_beacon))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(stdin_closed())
        .await?;
    Ok(())
}

async fn baseline() -> anyhow::Result<()> {
    let app = axum::Router::new().route("/v1/beacon", post(baseline_beacon));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(stdin_closed())
        .await?;
    Ok(())
}
