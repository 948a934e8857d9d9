//! Configuration: command-line flags, environment variables and an optional TOML file, read once
//! at start-up into typed [`Settings`].
//!
//! Precedence is flag > environment > file > default. A wrong value stops start-up with a message
//! that names the setting, so an operator never runs with half-understood configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde::Deserialize;
use tracker::PresenceConfig;

/// Porchlight: real-time visitor tracking and proactive engagement.
///
/// Without a subcommand, `porchlight` serves with the defaults (the same as `porchlight serve`),
/// including the demo site and its traffic simulator.
#[derive(Debug, Parser)]
#[command(name = "porchlight", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings every subcommand shares.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// TOML configuration file; its keys are the long flag names with `_` for `-`
    /// (e.g. `active_window = "10m"`). Unknown keys are an error.
    #[arg(long, env = "PORCHLIGHT_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store (created if missing). [default: data]
    #[arg(long, env = "PORCHLIGHT_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format. [default: human]
    #[arg(long, env = "PORCHLIGHT_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter in `tracing` syntax, e.g. `info` or `dashboards=debug,info`. [default: info]
    #[arg(long, env = "PORCHLIGHT_LOG", global = true, value_name = "FILTER")]
    pub log: Option<String>,
}

/// Settings of the server.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// Address to listen on. [default: 127.0.0.1:8080]
    #[arg(long, env = "PORCHLIGHT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// MaxMind-format GeoIP database (GeoLite2/GeoIP2 City or Country). Without one, location
    /// fields stay empty (the demo uses a small built-in sample database instead).
    #[arg(long, env = "PORCHLIGHT_MMDB", value_name = "PATH")]
    pub mmdb: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` header is believed, as addresses or CIDR networks,
    /// comma-separated. From any other peer the header is ignored. [default: none]
    #[arg(
        long,
        env = "PORCHLIGHT_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// A visitor is "active" while their last activity is younger than this. [default: 10m]
    #[arg(long, env = "PORCHLIGHT_ACTIVE_WINDOW", value_name = "DURATION")]
    pub active_window: Option<String>,
    /// Idle visitors leave memory after this long without activity; at least the active window.
    /// [default: 30m]
    #[arg(long, env = "PORCHLIGHT_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Pages of one visit kept in a visitor's history. [default: 50]
    #[arg(long, env = "PORCHLIGHT_HISTORY_LIMIT", value_name = "N")]
    pub history_limit: Option<usize>,
    /// How often live panels receive coalesced changes. [default: 100ms]
    #[arg(long, env = "PORCHLIGHT_PUSH_INTERVAL", value_name = "DURATION")]
    pub push_interval: Option<String>,
    /// Largest accepted beacon body in bytes; larger ones get 413. [default: 16384]
    #[arg(long, env = "PORCHLIGHT_MAX_BEACON_BYTES", value_name = "BYTES")]
    pub max_beacon_bytes: Option<usize>,
    /// Heartbeat interval the widget is told to use while its tab is visible; kept below the
    /// active window. [default: 15s]
    #[arg(long, env = "PORCHLIGHT_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<String>,
    /// How long a console login lasts. [default: 14d]
    #[arg(long, env = "PORCHLIGHT_SESSION_TTL", value_name = "DURATION")]
    pub session_ttl: Option<String>,
    /// When the session cookie gets the `Secure` attribute: `auto` (when the request arrived over
    /// HTTPS, directly or via a trusted proxy's `X-Forwarded-Proto`), `always` or `never`.
    /// [default: auto]
    #[arg(long, env = "PORCHLIGHT_COOKIE_SECURE")]
    pub cookie_secure: Option<CookieSecure>,
    /// Create and serve the demo site (`/demo/`) and a demo owner. [default: true]
    #[arg(long, env = "PORCHLIGHT_DEMO", value_name = "BOOL")]
    pub demo: Option<bool>,
    /// Simulated visitors kept live on the demo site, so the panel is alive on first start;
    /// 0 turns the simulator off. [default: 40]
    #[arg(long, env = "PORCHLIGHT_SIMULATE", value_name = "N")]
    pub simulate: Option<u32>,
    /// PEM file of extra root certificates that `https://` webhook receivers may present (a
    /// CRM behind a private CA); the system's trust store applies as well. [default: none]
    #[arg(long, env = "PORCHLIGHT_WEBHOOK_CA", value_name = "PATH")]
    pub webhook_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Manage agents (the people who use the console).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage sites (each has a key for the embed snippet and allowed origins).
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage API tokens for scripts.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent. The first one is usually the owner.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// owner, admin or agent.
        #[arg(long, default_value = "agent")]
        role: String,
        /// Password (at least 8 characters); read from PORCHLIGHT_PASSWORD when not given.
        #[arg(long, env = "PORCHLIGHT_PASSWORD", hide_env_values = true)]
        password: String,
        /// Sites an `agent`-role agent may see (owners and admins see all), comma-separated keys.
        #[arg(long, value_delimiter = ',')]
        sites: Vec<String>,
    },
    /// List agents.
    List,
    /// Give an agent access to a site.
    Grant {
        #[arg(long)]
        email: String,
        #[arg(long)]
        site: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Create a site and print its embed snippet.
    Create {
        #[arg(long)]
        name: String,
        /// Origins allowed to send beacons, e.g. https://shop.example, comma-separated.
        #[arg(long, value_delimiter = ',')]
        origins: Vec<String>,
        /// Site key for the snippet; random when not given.
        #[arg(long)]
        key: Option<String>,
    },
    /// List sites.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token acting as an agent; the token is printed once.
    Create {
        /// The agent the token acts as.
        #[arg(long)]
        email: String,
        /// A name to recognise the token by.
        #[arg(long)]
        name: String,
    },
    /// List API tokens.
    List,
    /// Revoke an API token by id.
    Revoke { id: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecure {
    #[default]
    Auto,
    Always,
    Never,
}

/// The optional TOML file: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    listen: Option<String>,
    mmdb: Option<PathBuf>,
    trusted_proxies: Option<Vec<String>>,
    active_window: Option<String>,
    retention: Option<String>,
    history_limit: Option<usize>,
    push_interval: Option<String>,
    max_beacon_bytes: Option<usize>,
    heartbeat: Option<String>,
    session_ttl: Option<String>,
    cookie_secure: Option<CookieSecure>,
    demo: Option<bool>,
    simulate: Option<u32>,
    webhook_ca: Option<PathBuf>,
}

/// A setting with a bad value: names the setting and where the value came from.
#[derive(Debug, thiserror::Error)]
#[error("setting `{setting}`: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            setting,
            message: message.into(),
        }
    }
}

/// Settings shared by every subcommand, resolved.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log: String,
}

/// Everything the server needs, typed and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub listen: SocketAddr,
    pub mmdb: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
    pub presence: PresenceConfig,
    pub push_interval: Duration,
    pub max_beacon_bytes: usize,
    pub heartbeat: Duration,
    pub session_ttl: Duration,
    pub cookie_secure: CookieSecure,
    pub demo: bool,
    pub simulate: u32,
    /// Webhook delivery: retry backoff, attempts and the per-attempt timeout.
    pub webhooks: crate::webhooks::WebhookConfig,
}

impl Settings {
    /// Settings for tests and embedding: defaults with the given data directory, listening on an
    /// ephemeral loopback port, no demo.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Settings {
        let mut settings = resolve(
            &GlobalArgs {
                data_dir: Some(data_dir.into()),
                ..GlobalArgs::default()
            },
            &ServeArgs::default(),
        )
        .expect("defaults are valid");
        settings.listen = "127.0.0.1:0".parse().expect("valid address");
        settings.demo = false;
        settings.simulate = 0;
        settings
    }
}

/// The extra webhook roots: the file's PEM bytes, checked to hold at least one certificate.
fn webhook_roots(path: Option<&Path>) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|error| {
        ConfigError::new(
            "webhook_ca",
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Ok(Some(pem)),
        Ok(_) => Err(ConfigError::new(
            "webhook_ca",
            format!("{} holds no PEM certificate", path.display()),
        )),
        Err(error) => Err(ConfigError::new(
            "webhook_ca",
            format!("{}: {error}", path.display()),
        )),
    }
}

fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new("config", format!("cannot read {}: {error}", path.display()))
    })?;
    toml::from_str(&text)
        .map_err(|error| ConfigError::new("config", format!("{}: {error}", path.display())))
}

/// Settings shared by all subcommands (the CLI management commands need only these).
pub fn resolve_common(global: &GlobalArgs) -> Result<CommonSettings, ConfigError> {
    let file = read_file(global.config.as_deref())?;
    common_from(global, &file)
}

fn common_from(global: &GlobalArgs, file: &FileConfig) -> Result<CommonSettings, ConfigError> {
    Ok(CommonSettings {
        data_dir: global
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("data")),
        log_format: global.log_format.or(file.log_format).unwrap_or_default(),
        log: global
            .log
            .clone()
            .or_else(|| file.log.clone())
            .unwrap_or_else(|| "info".to_owned()),
    })
}

/// Merges flags/environment (already in `global` and `serve`, thanks to clap) over the file over
/// the defaults, and checks every value.
pub fn resolve(global: &GlobalArgs, serve: &ServeArgs) -> Result<Settings, ConfigError> {
    let file = read_file(global.config.as_deref())?;
    let common = common_from(global, &file)?;

    let listen_text = serve
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new(
            "listen",
            format!("{listen_text:?} is not an address like 127.0.0.1:8080 or [::]:8080"),
        )
    })?;

    let proxy_texts = if serve.trusted_proxies.is_empty() {
        file.trusted_proxies.clone().unwrap_or_default()
    } else {
        serve.trusted_proxies.clone()
    };
    let trusted_proxies = proxy_texts
        .iter()
        .map(|text| parse_network(text))
        .collect::<Result<Vec<_>, _>>()?;

    let duration =
        |setting: &'static str, flag: &Option<String>, file: &Option<String>, default: &str| {
            let text = flag
                .clone()
                .or(file.clone())
                .unwrap_or_else(|| default.to_owned());
            parse_duration(&text).map_err(|message| ConfigError::new(setting, message))
        };
    let active_window = duration(
        "active_window",
        &serve.active_window,
        &file.active_window,
        "10m",
    )?;
    let retention = duration("retention", &serve.retention, &file.retention, "30m")?;
    let push_interval = duration(
        "push_interval",
        &serve.push_interval,
        &file.push_interval,
        "100ms",
    )?;
    let heartbeat = duration("heartbeat", &serve.heartbeat, &file.heartbeat, "15s")?;
    let session_ttl = duration("session_ttl", &serve.session_ttl, &file.session_ttl, "14d")?;

    if push_interval < Duration::from_millis(10) || push_interval > Duration::from_secs(10) {
        return Err(ConfigError::new(
            "push_interval",
            "must be between 10ms and 10s",
        ));
    }
    if heartbeat < Duration::from_millis(200) {
        return Err(ConfigError::new("heartbeat", "must be at least 200ms"));
    }
    if session_ttl < Duration::from_secs(60) {
        return Err(ConfigError::new("session_ttl", "must be at least 1m"));
    }

    let presence = PresenceConfig {
        active_window_ms: millis(active_window),
        retention_ms: millis(retention),
        history_limit: serve.history_limit.or(file.history_limit).unwrap_or(50),
        ..PresenceConfig::default()
    };
    presence.validate().map_err(|error| {
        let setting = match error.to_string() {
            text if text.contains("retention") => "retention",
            text if text.contains("history") => "history_limit",
            _ => "active_window",
        };
        ConfigError::new(setting, error.to_string())
    })?;

    let max_beacon_bytes = serve
        .max_beacon_bytes
        .or(file.max_beacon_bytes)
        .unwrap_or(16 * 1024);
    if !(1024..=1024 * 1024).contains(&max_beacon_bytes) {
        return Err(ConfigError::new(
            "max_beacon_bytes",
            "must be between 1024 and 1048576",
        ));
    }

    Ok(Settings {
        common,
        listen,
        mmdb: serve.mmdb.clone().or(file.mmdb.clone()),
        trusted_proxies,
        presence,
        push_interval,
        max_beacon_bytes,
        heartbeat,
        session_ttl,
        cookie_secure: serve
            .cookie_secure
            .or(file.cookie_secure)
            .unwrap_or_default(),
        demo: serve.demo.or(file.demo).unwrap_or(true),
        simulate: serve.simulate.or(file.simulate).unwrap_or(40),
        webhooks: crate::webhooks::WebhookConfig {
            extra_roots_pem: webhook_roots(
                serve.webhook_ca.as_deref().or(file.webhook_ca.as_deref()),
            )?,
            ..crate::webhooks::WebhookConfig::default()
        },
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn parse_network(text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ConfigError::new(
                "trusted_proxies",
                format!("{text:?} is not an IP address or CIDR network like 10.0.0.0/8"),
            )
        })
}

/// Parses `250ms`, `30s`, `10m`, `2h`, `14d` (one number and one unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write e.g. 250ms, 30s, 10m, 2h or 14d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 30s, 10m, 2h or 14d"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; use ms, s, m, h or d"
            ));
        }
    };
    number
        .checked_mul(unit_ms)
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} must be greater than zero and reasonable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_duration(text: &str, expected: Result<u64, &str>) {
        let actual = parse_duration(text).map(|d| d.as_millis() as u64);
        match (actual, expected) {
            (Ok(ms), Ok(want)) => assert_eq!(ms, want, "{text}"),
            (Err(message), Err(fragment)) => assert!(message.contains(fragment), "{message}"),
            (actual, expected) => panic!("{text}: got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn durations() {
        check_duration("250ms", Ok(250));
        check_duration("30s", Ok(30_000));
        check_duration("10m", Ok(600_000));
        check_duration("2h", Ok(7_200_000));
        check_duration("14d", Ok(14 * 86_400_000));
        check_duration("10", Err("no unit"));
        check_duration("ten minutes", Err("not a duration"));
        check_duration("5y", Err("unknown unit"));
        check_duration("0s", Err("greater than zero"));
    }

    fn serve_args(configure: impl FnOnce(&mut ServeArgs)) -> ServeArgs {
        let mut args = ServeArgs::default();
        configure(&mut args);
        args
    }

    #[track_caller]
    fn check_rejected(args: ServeArgs, setting: &str) {
        let error = resolve(&GlobalArgs::default(), &args).expect_err("must be rejected");
        assert_eq!(error.setting, setting, "{error}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        check_rejected(serve_args(|a| a.listen = Some("nowhere".into())), "listen");
        check_rejected(
            serve_args(|a| a.active_window = Some("soon".into())),
            "active_window",
        );
        check_rejected(
            serve_args(|a| {
                a.active_window = Some("10m".into());
                a.retention = Some("1m".into());
            }),
            "retention",
        );
        check_rejected(
            serve_args(|a| a.trusted_proxies = vec!["10.0.0.0/33".into()]),
            "trusted_proxies",
        );
        check_rejected(
            serve_args(|a| a.push_interval = Some("1ms".into())),
            "push_interval",
        );
        check_rejected(
            serve_args(|a| a.max_beacon_bytes = Some(10)),
            "max_beacon_bytes",
        );
    }

    #[test]
    fn file_values_apply_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("porchlight.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nactive_window = \"2m\"\nsimulate = 0\n",
        )
        .unwrap();
        let global = GlobalArgs {
            config: Some(path.clone()),
            ..GlobalArgs::default()
        };
        let settings = resolve(
            &global,
            &serve_args(|a| a.active_window = Some("3m".into())),
        )
        .unwrap();
        assert_eq!(settings.listen.port(), 9999);
        assert_eq!(
            settings.presence.active_window_ms, 180_000,
            "the flag wins over the file"
        );
        assert_eq!(settings.simulate, 0);

        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let error = resolve(&global, &ServeArgs::default()).unwrap_err();
        assert_eq!(error.setting, "config");
        assert!(error.message.contains("listne"), "{error}");
    }
}
