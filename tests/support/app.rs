//! `TestApp`: a real Porchlight server on an ephemeral loopback port with its own temporary data
//! directory, plus helpers to send beacons, sign in and open live panels.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use dashboards::{Server, Settings};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The site every `TestApp` creates; its allowed origin is [`TEST_ORIGIN`].
pub const TEST_SITE: &str = "testsite";
pub const TEST_ORIGIN: &str = "https://shop.example";
pub const OWNER_EMAIL: &str = "owner@example.com";
pub const OWNER_PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    server: Option<Server>,
    pub addr: SocketAddr,
    pub data_dir: Arc<TempDir>,
    settings: Settings,
    /// The clock the server was started with, kept for restarts; `None` is the system clock.
    clock: Option<Arc<dyn engage::Clock>>,
    pub http: reqwest::Client,
}

impl TestApp {
    /// A server with the sample GeoIP database, a test site and an owner, and `configure`
    /// applied to its settings.
    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        Self::start_inner(configure, None).await
    }

    /// [`TestApp::start_with`] with an injected clock (an `engage::ManualClock`, usually) for
    /// accounts, conversations and the widget's business hours.
    pub async fn start_with_clock(
        configure: impl FnOnce(&mut Settings),
        clock: Arc<dyn engage::Clock>,
    ) -> TestApp {
        Self::start_inner(configure, Some(clock)).await
    }

    async fn start_inner(
        configure: impl FnOnce(&mut Settings),
        clock: Option<Arc<dyn engage::Clock>>,
    ) -> TestApp {
        let data_dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let mmdb = data_dir.path().join("sample-city.mmdb");
        std::fs::write(&mmdb, geoip::fixture::city_database()).expect("write sample database");
        let mut settings = Settings::for_tests(data_dir.path());
        settings.mmdb = Some(mmdb);
        configure(&mut settings);
        let server = Self::launch(&settings, &clock)
            .await
            .expect("server starts");
        let app = TestApp {
            addr: server.addr,
            server: Some(server),
            data_dir,
            settings,
            clock,
            http: crate::http_client(),
        };
        app.seed().await;
        app
    }

    async fn launch(
        settings: &Settings,
        clock: &Option<Arc<dyn engage::Clock>>,
    ) -> anyhow::Result<Server> {
        match clock {
            Some(clock) => Server::start_with_clock(settings.clone(), Arc::clone(clock)).await,
            None => Server::start(settings.clone()).await,
        }
    }

    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    /// Creates the test site and owner once per data directory.
    async fn seed(&self) {
        let state = self.state();
        if state.store.site(TEST_SITE).await.expect("store").is_none() {
            state
                .accounts
                .create_site("Test shop", &[TEST_ORIGIN.to_owned()], Some(TEST_SITE))
                .await
                .expect("create site");
            state
                .sites
                .reload(&*state.store)
                .await
                .expect("reload sites");
        }
        if state
            .store
            .agent_by_email(OWNER_EMAIL)
            .await
            .expect("store")
            .is_none()
        {
            state
                .accounts
                .create_agent(
                    OWNER_EMAIL,
                    "Olivia Owner",
                    engage::Role::Owner,
                    OWNER_PASSWORD,
                )
                .await
                .expect("create owner");
        }
    }

    pub fn state(&self) -> &dashboards::AppState {
        &self.server.as_ref().expect("server running").state
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().to_path_buf()
    }

    /// Stops the server gracefully (flushing profiles) and starts a new one on the same data
    /// directory and port-less settings: a restart.
    pub async fn restart(&mut self) {
        let server = self.server.take().expect("server running");
        server.shutdown().await.expect("clean shutdown");
        let server = Self::launch(&self.settings, &self.clock)
            .await
            .expect("server restarts");
        self.addr = server.addr;
        self.server = Some(server);
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// Posts a beacon body as JSON and returns the status and the JSON answer.
    pub async fn beacon(&self, body: &Value) -> (u16, Value) {
        self.beacon_with(body, &[]).await
    }

    /// Posts a page view ([`page_view`]) and panics unless it is recorded (200).
    pub async fn view_page(&self, visitor: &str, visit: &str, url: &str) {
        let (status, body) = self.beacon(&page_view(visitor, visit, url)).await;
        assert_eq!(status, 200, "page view of {visitor} on {url}: {body}");
    }

    pub async fn beacon_with(&self, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/v1/beacon"))
            .header("content-type", "text/plain")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("beacon request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `POST /v1/chat/credential` for `visitor` of the test site with the secret `credential`,
    /// as the widget sends it (`text/plain`, from the site's origin); returns the status and
    /// the JSON answer.
    pub async fn register_credential(&self, visitor: &str, credential: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/v1/chat/credential"))
            .header("origin", TEST_ORIGIN)
            .header("content-type", "text/plain")
            .body(
                json!({ "site": TEST_SITE, "vid": visitor, "credential": credential }).to_string(),
            )
            .send()
            .await
            .expect("credential request");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }

    /// Registers a fresh credential ([`new_credential`]) for a live visitor of the test site
    /// and returns it; panics unless the server answers 201.
    pub async fn visitor_credential(&self, visitor: &str) -> String {
        let credential = new_credential();
        let (status, body) = self.register_credential(visitor, &credential).await;
        assert_eq!(status, 201, "credential of {visitor}: {body}");
        credential
    }

    /// Signs in and returns the `Cookie` header value of the session.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .http
            .post(self.url("/api/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login of {email} failed");
        let cookie = response
            .headers()
            .get("set-cookie")
            .expect("session cookie")
            .to_str()
            .expect("ascii")
            .to_owned();
        cookie.split(';').next().expect("name=value").to_owned()
    }

    pub async fn owner_cookie(&self) -> String {
        self.login(OWNER_EMAIL, OWNER_PASSWORD).await
    }

    /// GET with a session cookie; returns status and JSON.
    pub async fn get_json(&self, path: &str, cookie: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }
}

/// A visitor credential as the widget makes one: 32 random bytes as unpadded base64url
/// (43 characters), the only form `POST /v1/chat/credential` accepts.
pub fn new_credential() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A beacon body for the test site, with the given visitor and visit ids and page.
pub fn page_view(visitor: &str, visit: &str, url: &str) -> Value {
    json!({
        "site": TEST_SITE,
        "vid": visitor,
        "sid": visit,
        "type": "pageview",
        "url": url,
        "title": "A page",
        "lang": "en-US",
        "screen": [1440, 900],
    })
}

/// A realistic desktop Chrome User-Agent.
pub const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Signs in to the console in `page` through its login form, as a person would.
pub async fn sign_in_console(
    app: &TestApp,
    page: &crate::browser::Page,
    email: &str,
    password: &str,
) {
    page.goto(&app.url("/console/"))
        .await
        .expect("console loads");
    page.wait_for(
        "document.querySelector('#login-form')",
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("the login form");
    page.type_into("#login-email", email)
        .await
        .expect("email field");
    page.type_into("#login-password", password)
        .await
        .expect("password field");
    page.click("#login-submit").await.expect("submit button");
}

/// Sends a JSON request (or none) with a session cookie (or none); returns the status and the
/// JSON answer (`null` when the body is not JSON).
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap_or(Value::Null),
    )
}
