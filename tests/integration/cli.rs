//! The command line: `--help` documents every setting, bad values name the setting, and the
//! management subcommands create the first owner, sites and tokens that the server then accepts.

use clap::{CommandFactory, Parser};
use dashboards::config::{self, Cli, Command};
use serde_json::json;
use testkit::app::TestApp;

#[test]
fn help_documents_every_setting() {
    let help = Cli::command().render_long_help().to_string();
    for flag in [
        "--config",
        "--data-dir",
        "--log-format",
        "--log",
        "--listen",
        "--mmdb",
        "--trusted-proxies",
        "--active-window",
        "--retention",
        "--history-limit",
        "--push-interval",
        "--max-beacon-bytes",
        "--heartbeat",
        "--session-ttl",
        "--cookie-secure",
        "--demo",
        "--simulate",
        "--webhook-ca",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    for subcommand in ["serve", "agent", "site", "token"] {
        assert!(help.contains(subcommand), "--help lacks {subcommand}");
    }
}

#[track_caller]
fn check_rejected(args: &[&str], setting: &str) {
    let cli = Cli::try_parse_from(args).expect("parses");
    let serve = match &cli.command {
        Some(Command::Serve(serve)) => serve.clone(),
        _ => cli.serve.clone(),
    };
    let error = config::resolve(&cli.global, &serve).expect_err("rejected");
    assert_eq!(error.setting, setting, "{error}");
    assert!(error.to_string().contains(setting));
}

#[test]
fn bad_values_stop_start_up_and_name_the_setting() {
    check_rejected(&["porchlight", "--active-window", "10"], "active_window");
    check_rejected(&["porchlight", "serve", "--listen", "localhost"], "listen");
    check_rejected(
        &[
            "porchlight",
            "--trusted-proxies",
            "10.0.0.0/8,not-a-network",
        ],
        "trusted_proxies",
    );
    check_rejected(
        &["porchlight", "--retention", "1m", "--active-window", "5m"],
        "retention",
    );
    check_rejected(
        &["porchlight", "--webhook-ca", "/nonexistent/roots.pem"],
        "webhook_ca",
    );
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate").unwrap();
    check_rejected(
        &[
            "porchlight",
            "--webhook-ca",
            not_pem.path().to_str().unwrap(),
        ],
        "webhook_ca",
    );
    assert!(Cli::try_parse_from(["porchlight", "--simulate", "many"]).is_err());
    assert!(Cli::try_parse_from(["porchlight", "--log-format", "xml"]).is_err());
}

#[tokio::test]
async fn management_commands_create_what_the_server_accepts() {
    let data_dir = tempfile::tempdir().unwrap();
    let common = config::CommonSettings {
        data_dir: data_dir.path().to_path_buf(),
        log_format: config::LogFormat::Human,
        log: "warn".into(),
    };
    dashboards::cli::site(
        &common,
        config::SiteCommand::Create {
            name: "CLI shop".into(),
            origins: vec!["https://cli.example".into()],
            key: Some("clishop".into()),
        },
    )
    .await
    .unwrap();
    dashboards::cli::agent(
        &common,
        config::AgentCommand::Create {
            email: "first@example.com".into(),
            name: "First Owner".into(),
            role: "owner".into(),
            password: "first owner password".into(),
            sites: vec![],
        },
    )
    .await
    .unwrap();
    let error = dashboards::cli::agent(
        &common,
        config::AgentCommand::Create {
            email: "second@example.com".into(),
            name: "Second".into(),
            role: "emperor".into(),
            password: "second password".into(),
            sites: vec![],
        },
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("--role"), "{error}");
    dashboards::cli::token(
        &common,
        config::TokenCommand::Create {
            email: "first@example.com".into(),
            name: "deploy".into(),
        },
    )
    .await
    .unwrap();

    // The server started on that data directory accepts the owner and the site.
    let app =
        TestApp::start_with(|settings| settings.common.data_dir = data_dir.path().to_path_buf())
            .await;
    let cookie = app.login("first@example.com", "first owner password").await;
    let (status, me) = app.get_json("/api/me", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert_eq!(me["agent"]["role"], "owner");
    let response = app
        .http
        .post(app.url("/v1/beacon"))
        .header("content-type", "text/plain")
        .header("origin", "https://cli.example")
        .body(json!({"site": "clishop", "vid": "visitor-cli-0001", "sid": "visit-cli-0001", "type": "pageview", "url": "https://cli.example/"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.shutdown().await;
}
