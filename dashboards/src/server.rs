//! Building the application and running it: the router with all middleware in one place, the
//! background tasks (expiry sweep, live pusher, demo simulator, profile writes, triggers), and graceful
//! shutdown that stops them all and flushes what is pending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use engage::{Accounts, AccountsConfig, Conversations, Ingest, RedbStore, Store, Triggers};
use geoip::{Enricher, GeoDb};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;
use tracker::{Presence, SystemClock};

use crate::config::Settings;
use crate::live::{self, LiveHub};
use crate::metrics::Metrics;
use crate::state::{AgentPresence, AgentsOnline, App, AppState, SiteDirectory};
use crate::{api, assets, beacon, chat, demo};

/// JSON bodies of the console API are small; this caps what a handler will buffer.
const API_BODY_LIMIT: usize = 64 * 1024;
/// Attachments are at most 2 MB; the service gives the precise error, this only stops a
/// handler from buffering far more.
const ATTACHMENT_BODY_LIMIT: usize = 2 * 1024 * 1024 + 64 * 1024;

/// Every route and all middleware.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/sites", get(api::list_sites).post(api::create_site))
        .route("/sites/{key}/counts", get(api::counts))
        .route("/sites/{key}/visitors", get(api::list_visitors))
        .route("/sites/{key}/visitors/{id}", get(api::get_visitor))
        .route("/sites/{key}/live", get(live::live_socket))
        .route("/agents", get(api::list_agents).post(api::create_agent))
        .route("/tokens", get(api::list_tokens).post(api::create_token))
        .route("/tokens/{id}", delete(api::revoke_token))
        .merge(crate::conversations_api::routes())
        .merge(crate::contacts_api::routes())
        .merge(crate::saved_replies_api::routes())
        .merge(crate::webhooks::routes())
        .merge(crate::widget_api::routes())
        .merge(crate::triggers_api::routes())
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    Router::new()
        .route("/v1/chat/credential", post(chat::issue_credential))
        .route("/v1/chat/socket", get(chat::socket))
        .route(
            "/v1/widget/settings",
            get(crate::widget_api::public_settings),
        )
        .route(
            "/v1/chat/leads",
            post(crate::widget_api::post_lead).options(beacon::preflight),
        )
        .route(
            "/v1/chat/attachments",
            post(chat::upload_attachment)
                .options(chat::attachment_preflight)
                .layer(DefaultBodyLimit::max(ATTACHMENT_BODY_LIMIT)),
        )
        .route(
            "/v1/chat/attachments/{conversation}/{id}",
            get(chat::download_attachment).options(chat::attachment_preflight),
        )
        .nest("/api", api)
        .route("/widget.js", get(assets::widget))
        .route("/", get(assets::root))
        .route("/console/", get(assets::console_index))
        .route("/console/{*path}", get(assets::console_file))
        .route("/demo/", get(assets::demo_index))
        .route("/demo/{*path}", get(assets::demo_file))
        .route("/api/openapi.json", get(assets::openapi))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .layer(TraceLayer::new_for_http())
        // Added after the trace layer, so beacons (the hot path: every page view and heartbeat
        // of every visitor) get no per-request span; the handler logs rejections itself and
        // `/metrics` counts every outcome. The handler enforces its own (configurable) body
        // limit with a clear 413.
        .route(
            "/v1/beacon",
            post(beacon::post_beacon)
                .options(beacon::preflight)
                .layer(DefaultBodyLimit::disable()),
        )
        .with_state(state)
}

/// A running server: its address, its state, and the handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    serve: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the store, builds the state, binds the listener and starts serving and the
    /// background tasks.
    pub async fn start(settings: Settings) -> anyhow::Result<Server> {
        Self::start_with_clock(settings, Arc::new(engage::SystemClock)).await
    }

    /// [`Server::start`] with the clock that accounts, conversations and the widget's
    /// availability (business hours) read: tests pass an [`engage::ManualClock`].
    pub async fn start_with_clock(
        settings: Settings,
        clock: Arc<dyn engage::Clock>,
    ) -> anyhow::Result<Server> {
        crate::webhooks::install_tls_provider();
        std::fs::create_dir_all(&settings.common.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.common.data_dir.display()
            )
        })?;
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&settings.common.data_dir).await?);
        let enricher = Arc::new(build_enricher(&settings)?);
        let presence = Arc::new(Presence::new(
            settings.presence.clone(),
            enricher,
            Arc::new(SystemClock),
        ));
        let accounts = Accounts::with_config(
            Arc::clone(&store),
            AccountsConfig {
                session_ttl_ms: settings.session_ttl.as_millis() as i64,
                ..AccountsConfig::default()
            },
            Arc::clone(&clock),
        );

        let conversations = Arc::new(
            Conversations::start(
                Arc::clone(&store),
                Arc::clone(&clock),
                settings.common.data_dir.clone(),
            )
            .await?,
        );
        // Agent presence is created here, before the state, because the trigger engine asks
        // it whether anyone is online (the `agents_online` condition).
        let agent_presence = AgentPresence::default();
        let triggers = Triggers::start(
            Arc::clone(&presence),
            Arc::clone(&store),
            Arc::clone(&conversations),
            Arc::clone(&clock),
            Arc::new(AgentsOnline(agent_presence.clone())),
        )
        .await
        .context("loading triggers")?;
        let ingest = Ingest::start(
            Arc::clone(&presence),
            Arc::clone(&store),
            Arc::clone(&conversations),
        )
        .await?
        .with_triggers(Arc::clone(&triggers));
        let contacts = engage::Contacts::new(
            Arc::clone(&presence),
            Arc::clone(&store),
            ingest.profiles().clone(),
            Arc::clone(&clock),
        );
        let saved_replies = engage::SavedReplies::new(Arc::clone(&store), Arc::clone(&clock));
        let agent_presence = crate::state::AgentPresence::load(&*store).await?;
        let sites = SiteDirectory::default();
        if settings.demo {
            demo::ensure_demo(&accounts, &settings).await?;
        }
        sites.reload(&*store).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let beacon_ok_body = beacon::ok_body(settings.heartbeat);
        let state = AppState(Arc::new(App {
            settings,
            presence,
            store,
            accounts,
            ingest,
            conversations,
            contacts,
            saved_replies,
            triggers,
            sites,
            metrics: Metrics::new(),
            live: LiveHub::default(),
            chat: crate::chat::ChatHub::default(),
            beacon_ok_body,
            shutdown,
            clock,
            agent_presence,
            leads: tokio::sync::broadcast::channel(256).0,
            settings_changed: Arc::new(tokio::sync::Notify::new()),
            lead_limits: crate::rate_limit::LeadLimits::default(),
        }));

        // Time-based wake-ups, the write-behind of fire records and counters, and "seen" /
        // "replied" from the conversation events; stopped by `Server::shutdown`.
        state.triggers.spawn_tasks();
        let mut tasks = vec![
            tokio::spawn(run_sweeper(state.clone())),
            tokio::spawn(live::run_pusher(state.clone(), state.shutdown.subscribe())),
            tokio::spawn(chat::run_router(state.clone())),
        ];
        tasks.push(tokio::spawn(crate::conversations_api::run_presence_sync(
            state.clone(),
        )));
        tasks.push(tokio::spawn(crate::webhooks::run_webhooks(state.clone())));
        tasks.push(tokio::spawn(crate::availability::run_availability(
            state.clone(),
        )));
        if state.settings.demo && state.settings.simulate > 0 {
            tasks.push(tokio::spawn(demo::run_simulator(state.clone())));
        }
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let mut stop = state.shutdown.subscribe();
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await
        });
        Ok(Server {
            addr,
            state,
            serve,
            tasks,
        })
    }

    /// Stops accepting requests, ends the background tasks and open sockets, and writes every
    /// pending profile update, trigger fire record and trigger counter to the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.shutdown.send_replace(true);
        match tokio::time::timeout(Duration::from_secs(10), self.serve).await {
            Ok(result) => result.context("server task")?.context("serving")?,
            Err(_) => tracing::warn!("connections still open after 10s; closing them"),
        }
        for task in self.tasks {
            let _ = task.await;
        }
        // No beacon arrives any more: stop the trigger tasks and write pending fire records
        // and counters.
        self.state
            .triggers
            .shutdown()
            .await
            .context("flushing trigger statistics")?;
        self.state
            .ingest
            .shutdown()
            .await
            .context("flushing visitor profiles")?;
        Ok(())
    }
}

fn build_enricher(settings: &Settings) -> anyhow::Result<Enricher> {
    if let Some(path) = &settings.mmdb {
        let db = GeoDb::open(path).map_err(|error| anyhow::anyhow!("setting `mmdb`: {error}"))?;
        tracing::info!(path = %path.display(), "GeoIP database loaded");
        return Ok(Enricher::with_geo(db));
    }
    if settings.demo && settings.simulate > 0 {
        // The simulator's visitors come from the sample networks of the built-in database, so
        // the demo shows flags and cities without a download. Real visitors resolve to nothing
        // (these are sample networks), which is also what happens without any database.
        let db = GeoDb::from_bytes(geoip::fixture::city_database())
            .context("built-in sample GeoIP database")?;
        tracing::info!("no --mmdb given: using the built-in sample GeoIP database for the demo");
        return Ok(Enricher::with_geo(db));
    }
    tracing::info!("no --mmdb given: location fields stay empty");
    Ok(Enricher::without_geo())
}

/// Expiry: sweeps, then sleeps until the next visitor is due to leave "active" or memory. No
/// beacon can make something due earlier (activity only moves deadlines later), so sleeping
/// until the reported deadline is exact. A floor keeps a huge table from being scanned back to
/// back when deadlines are dense.
async fn run_sweeper(state: AppState) {
    let floor = Duration::from_millis(
        (state.settings.presence.active_window_ms / 20).clamp(50, 1_000) as u64,
    );
    let idle = Duration::from_millis(state.settings.presence.active_window_ms.max(50) as u64);
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let report = state.presence.sweep();
        let wait = match report.next_due_ms {
            Some(due) => Duration::from_millis((due - state.presence.now_ms()).max(0) as u64),
            None => idle,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.max(floor)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
