//! A minimal Chrome DevTools Protocol (CDP) client that drives a headless Chromium.
//!
//! We talk CDP ourselves instead of pulling in a third-party crate: the tests need only a
//! handful of commands, and owning the code means no version churn and errors we can read.
//!
//! Shape of it:
//! - [`Browser::launch`] starts Chromium with `--remote-debugging-port=0` and a fresh profile
//!   directory, reads the `DevTools listening on ws://...` line from stderr and opens one
//!   WebSocket to the browser target.
//! - One I/O task owns that socket. Commands carry an `id` and are answered through a oneshot
//!   channel; events go to a broadcast channel, and the per-page ones the tests assert on
//!   (console output, uncaught exceptions, JS dialogs) are also recorded per CDP session.
//! - Pages are attached with `flatten: true`, so every page is a `sessionId` on the same socket.
//! - JS dialogs (`alert`, `confirm`, `prompt`) are dismissed by the I/O task itself: a dialog
//!   blocks the renderer, so waiting for test code to handle it could deadlock.
//!
//! Every call has a timeout, so a wedged browser fails the test instead of hanging it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Default timeout of a single CDP command.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Chromium may take to print its DevTools URL (slow on 2 shared cores).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Page::goto`] waits for the `load` event.
const NAV_TIMEOUT: Duration = Duration::from_secs(20);
/// Polling period of [`Page::wait_for`] / [`Page::wait_for_value`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const NOT_FOUND: &str = "Chromium not found: install it with `apt-get install -y chromium` \
     (or run .ci/run, which installs what the tests need), or set PORCHLIGHT_CHROMIUM";

/// A CDP event, as broadcast by the I/O task.
#[derive(Clone, Debug)]
pub struct Event {
    pub method: String,
    pub params: Value,
    /// The page session the event belongs to; `None` for browser-level events.
    pub session_id: Option<String>,
}

/// What a page did that tests may want to assert on. Recorded by the I/O task so nothing is
/// lost between the event and the moment a test looks.
#[derive(Default)]
struct PageLog {
    console: Vec<String>,
    exceptions: Vec<String>,
    dialogs: Vec<String>,
}

/// The connection state shared by the I/O task and every handle.
struct Conn {
    next_id: AtomicU64,
    out: mpsc::UnboundedSender<String>,
    /// Pending calls and the "connection is gone" reason share one lock, so a call can never
    /// register itself after the failure sweep and then wait out its whole timeout.
    state: Mutex<ConnState>,
    events: broadcast::Sender<Event>,
    logs: Mutex<HashMap<String, Arc<Mutex<PageLog>>>>,
}

#[derive(Default)]
struct ConnState {
    pending: HashMap<u64, (String, oneshot::Sender<anyhow::Result<Value>>)>,
    closed: Option<String>,
}

impl Conn {
    /// Sends `method` (to the page `session`, or the browser if `None`) and waits for its answer.
    async fn call(
        &self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.state.lock().unwrap();
            if let Some(why) = &st.closed {
                bail!("CDP {method}: browser connection is closed ({why})");
            }
            st.pending.insert(id, (method.to_owned(), tx));
        }
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let _ = self.out.send(msg.to_string()); // if the task is gone, `rx` fails below
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => bail!("CDP {method}: browser connection closed before the answer"),
            Err(_) => {
                self.state.lock().unwrap().pending.remove(&id);
                bail!("CDP {method}: no answer within {CALL_TIMEOUT:?}")
            }
        }
    }

    /// Fails every pending call and refuses new ones.
    fn shut(&self, why: &str) {
        let mut st = self.state.lock().unwrap();
        st.closed.get_or_insert_with(|| why.to_owned());
        for (_, (method, tx)) in st.pending.drain() {
            let _ = tx.send(Err(anyhow!(
                "CDP {method}: browser connection closed ({why})"
            )));
        }
    }

    fn log(&self, session: &str) -> Arc<Mutex<PageLog>> {
        self.logs
            .lock()
            .unwrap()
            .entry(session.to_owned())
            .or_default()
            .clone()
    }

    /// Handles one incoming frame: an answer to a call, or an event.
    fn dispatch(&self, text: &str) {
        let Ok(mut msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            // Unknown ids are fire-and-forget commands (dialog handling) or timed-out calls.
            let Some((method, tx)) = self.state.lock().unwrap().pending.remove(&id) else {
                return;
            };
            let answer = match msg.get("error") {
                Some(e) => Err(anyhow!(
                    "CDP {method} failed: {} (code {})",
                    e["message"],
                    e["code"]
                )),
                None => Ok(msg["result"].take()),
            };
            let _ = tx.send(answer);
            return;
        }
        let event = Event {
            method: msg["method"].as_str().unwrap_or_default().to_owned(),
            params: msg["params"].take(),
            session_id: msg["sessionId"].as_str().map(str::to_owned),
        };
        if let Some(session) = &event.session_id {
            self.record(session, &event);
        }
        if event.method == "Target.detachedFromTarget"
            && let Some(s) = event.params["sessionId"].as_str()
        {
            self.logs.lock().unwrap().remove(s);
        }
        let _ = self.events.send(event); // no subscribers is fine
    }

    fn record(&self, session: &str, ev: &Event) {
        let p = &ev.params;
        match ev.method.as_str() {
            "Runtime.consoleAPICalled" => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(remote_text)
                    .collect();
                let line = format!(
                    "{}: {}",
                    p["type"].as_str().unwrap_or("log"),
                    args.join(" ")
                );
                self.log(session).lock().unwrap().console.push(line);
            }
            "Runtime.exceptionThrown" => {
                let text = exception_text(&p["exceptionDetails"]);
                let log = self.log(session);
                let mut log = log.lock().unwrap();
                log.console.push(format!("exception: {text}"));
                log.exceptions.push(text);
            }
            "Page.javascriptDialogOpening" => {
                let kind = p["type"].as_str().unwrap_or("dialog");
                let line = format!("{kind}: {}", p["message"].as_str().unwrap_or_default());
                self.log(session).lock().unwrap().dialogs.push(line);
                // Dismiss, except `beforeunload`: refusing it would cancel the close/navigation.
                let accept = kind == "beforeunload";
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let cmd = json!({ "id": id, "method": "Page.handleJavaScriptDialog",
                                  "params": { "accept": accept }, "sessionId": session });
                let _ = self.out.send(cmd.to_string());
            }
            _ => {}
        }
    }
}

/// Text of a CDP `RemoteObject` (a console argument): the value if it has one, else Chrome's
/// description (e.g. `Error: boom\n    at ...` or `HTMLDivElement`).
fn remote_text(o: &Value) -> String {
    match (o.get("value"), o["description"].as_str()) {
        (Some(Value::String(s)), _) => s.clone(),
        (Some(v), _) => v.to_string(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => o["type"].as_str().unwrap_or("?").to_owned(),
    }
}

/// Text of a CDP `ExceptionDetails`: the thrown value's description (message + stack) when
/// present, else the bare text (e.g. "Uncaught SyntaxError: ...").
fn exception_text(d: &Value) -> String {
    match d["exception"]["description"].as_str() {
        Some(desc) => desc.to_owned(),
        None => match d.get("exception") {
            Some(e) => format!(
                "{} {}",
                d["text"].as_str().unwrap_or("Uncaught"),
                remote_text(e)
            ),
            None => d["text"].as_str().unwrap_or("unknown exception").to_owned(),
        },
    }
}

/// Shortens a JS expression for error messages.
fn short(expr: &str) -> String {
    match expr.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &expr[..i]),
        None => expr.to_owned(),
    }
}

/// The Chromium executable: `$PORCHLIGHT_CHROMIUM`, else `/usr/bin/chromium`, else `chromium`
/// or `chromium-browser` on `PATH`.
fn find_chromium() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PORCHLIGHT_CHROMIUM") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "PORCHLIGHT_CHROMIUM={} does not exist. {NOT_FOUND}",
                p.display()
            );
        }
        return Ok(p);
    }
    let default = PathBuf::from("/usr/bin/chromium");
    if default.is_file() {
        return Ok(default);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            if dir.join(name).is_file() {
                return Ok(dir.join(name));
            }
        }
    }
    bail!("{NOT_FOUND}")
}

/// The Chromium process and its profile directory. Dropping it kills the browser, waits until
/// its helper processes are gone too (they keep writing to the profile for a moment), then
/// deletes the profile.
struct Process {
    child: Child,
    profile: Option<tempfile::TempDir>,
    /// Disconnects when the stderr reader ends, i.e. when every Chromium process (all inherit
    /// stderr) has exited: the one reliable "nothing writes to the profile any more" signal.
    stderr_closed: std::sync::mpsc::Receiver<()>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait(); // SIGKILLed: returns at once, blocking is harmless
        let _ = self.stderr_closed.recv_timeout(Duration::from_secs(3));
        if let Some(dir) = self.profile.take() {
            let path = dir.path().to_owned();
            for _ in 0..10 {
                if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::mem::forget(dir); // already removed (or given up on): skip TempDir's attempt
        }
    }
}

/// A headless Chromium and the CDP connection to it. Dropping it kills the browser.
pub struct Browser {
    conn: Arc<Conn>,
    io: JoinHandle<()>,
    stderr: Arc<Mutex<Vec<String>>>,
    _process: Process,
    /// Declared last so it is released after the browser is gone.
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// Browser tests take turns: two Chromiums and their servers on two cores would make the
/// timing claims the tests check (an update within a second) depend on what else runs.
static TURN: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

impl Browser {
    /// Starts a fresh headless Chromium (own temporary profile, random debugging port).
    pub async fn launch() -> anyhow::Result<Browser> {
        let exe = find_chromium()?;
        let turn = Arc::clone(&TURN).lock_owned().await;
        let profile = tempfile::Builder::new()
            .prefix("porchlight-chromium-")
            .tempdir()?;
        let child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--disable-quic", "--window-size=1280,900", "about:blank"])
            // Chromium's own temp files (its singleton socket dir, which a killed browser
            // leaves behind) then land in the profile dir and are removed with it.
            .env("TMPDIR", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let (closed_tx, stderr_closed) = std::sync::mpsc::channel::<()>();
        let mut process = Process {
            child,
            profile: Some(profile),
            stderr_closed,
        };

        // A plain thread reads stderr for the whole life of the browser: it hands over the
        // DevTools URL, then keeps draining so Chromium never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = oneshot::channel();
        let pipe = process.child.stderr.take().expect("stderr is piped");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            let _closed_tx = closed_tx; // dropped when stderr hits EOF
            let mut url_tx = Some(url_tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(target: "chromium", "{line}");
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(tx) = url_tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
                let mut lines = lines.lock().unwrap();
                if lines.len() < 500 {
                    lines.push(line);
                }
            }
        });
        let collected = || stderr.lock().unwrap().join("\n");
        let ws_url = match tokio::time::timeout(LAUNCH_TIMEOUT, url_rx).await {
            Ok(Ok(url)) => url,
            Ok(Err(_)) => {
                let status = process
                    .child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                bail!(
                    "Chromium exited ({status}) before printing its DevTools URL; stderr:\n{}",
                    collected()
                )
            }
            Err(_) => bail!(
                "Chromium printed no DevTools URL within {LAUNCH_TIMEOUT:?}; stderr:\n{}",
                collected()
            ),
        };
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .with_context(|| format!("connecting to Chromium at {ws_url}"))?;

        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let conn = Arc::new(Conn {
            next_id: AtomicU64::new(1),
            out,
            state: Mutex::new(ConnState::default()),
            events: broadcast::channel(4096).0,
            logs: Mutex::new(HashMap::new()),
        });
        let task_conn = conn.clone();
        let io = tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let why = loop {
                tokio::select! {
                    Some(text) = out_rx.recv() => {
                        if let Err(e) = sink.send(Message::Text(text.into())).await {
                            break format!("send failed: {e}");
                        }
                    }
                    frame = stream.next() => match frame {
                        Some(Ok(Message::Text(text))) => task_conn.dispatch(&text),
                        Some(Ok(Message::Close(_))) | None => break "socket closed".to_owned(),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break format!("socket error: {e}"),
                    },
                }
            };
            task_conn.shut(&why);
        });
        Ok(Browser {
            conn,
            io,
            stderr,
            _process: process,
            _turn: turn,
        })
    }

    /// Sends a raw browser-level CDP command (escape hatch for things not wrapped here).
    pub async fn cdp(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(method, params, None).await
    }

    /// Subscribes to every CDP event from now on (all sessions).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.conn.events.subscribe()
    }

    /// Chromium's stderr so far (first 500 lines), for debugging.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// A new isolated browser context: own cookies, storage and cache, like an incognito
    /// window. Use one per simulated visitor.
    pub async fn new_context(&self) -> anyhow::Result<Context> {
        let r = self
            .cdp(
                "Target.createBrowserContext",
                json!({ "disposeOnDetach": true }),
            )
            .await?;
        let id = r["browserContextId"]
            .as_str()
            .context("no browserContextId")?
            .to_owned();
        Ok(Context {
            conn: self.conn.clone(),
            id,
        })
    }

    /// A new tab in a context of its own (see [`Browser::new_context`]): its own cookies and
    /// storage, so another visitor or agent.
    pub async fn new_isolated_page(&self) -> anyhow::Result<Page> {
        self.new_context().await?.new_page().await
    }

    /// A new tab in the default (shared) browser context.
    pub async fn new_page(&self) -> anyhow::Result<Page> {
        Page::open(self.conn.clone(), None).await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.conn.shut("browser dropped");
        self.io.abort();
        // `_process` drops next: kills Chromium and removes the profile.
    }
}

/// An isolated browser context (see [`Browser::new_context`]).
pub struct Context {
    conn: Arc<Conn>,
    id: String,
}

impl Context {
    /// A new tab in this context.
    pub async fn new_page(&self) -> anyhow::Result<Page> {
        Page::open(self.conn.clone(), Some(&self.id)).await
    }

    /// Closes every page of the context and forgets its cookies/storage.
    pub async fn close(self) -> anyhow::Result<()> {
        let params = json!({ "browserContextId": self.id });
        self.conn
            .call("Target.disposeBrowserContext", params, None)
            .await
            .map(drop)
    }
}

/// One tab, attached as a flattened CDP session.
pub struct Page {
    conn: Arc<Conn>,
    target_id: String,
    session: String,
    log: Arc<Mutex<PageLog>>,
}

impl Page {
    async fn open(conn: Arc<Conn>, context: Option<&str>) -> anyhow::Result<Page> {
        // `newWindow`: tabs sharing a window are hidden behind the front one, and hidden pages
        // get throttled timers and may never answer `Page.captureScreenshot`. One window per
        // page keeps every page visible and focused, like the only tab a visitor looks at.
        let mut params = json!({ "url": "about:blank", "newWindow": true });
        if let Some(ctx) = context {
            params["browserContextId"] = json!(ctx);
        }
        let r = conn.call("Target.createTarget", params, None).await?;
        let target_id = r["targetId"].as_str().context("no targetId")?.to_owned();
        let params = json!({ "targetId": target_id, "flatten": true });
        let r = conn.call("Target.attachToTarget", params, None).await?;
        let session = r["sessionId"].as_str().context("no sessionId")?.to_owned();
        let log = conn.log(&session);
        let page = Page {
            conn,
            target_id,
            session,
            log,
        };
        page.cdp("Page.enable", json!({})).await?;
        page.cdp("Runtime.enable", json!({})).await?;
        // Lifecycle events carry the loaderId, which lets `goto` wait for *its* document's load.
        page.cdp("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await?;
        Ok(page)
    }

    /// This page's CDP session id: the `session_id` of its events in [`Browser::events`].
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// Sends a raw CDP command to this page's session.
    pub async fn cdp(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(method, params, Some(&self.session)).await
    }

    /// Navigates and waits for the new document's `load` event.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let mut events = self.conn.events.subscribe(); // before navigating: no lost event
        let r = self.cdp("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = r["errorText"].as_str().filter(|e| !e.is_empty()) {
            bail!("navigation to {url} failed: {err}");
        }
        // No loaderId: a same-document (fragment) navigation, which has no load event.
        let Some(loader) = r["loaderId"].as_str() else {
            return Ok(());
        };
        let deadline = Instant::now() + NAV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ev)) => {
                    if ev.session_id.as_deref() == Some(&*self.session)
                        && ev.method == "Page.lifecycleEvent"
                        && ev.params["name"] == "load"
                        && ev.params["loaderId"] == loader
                    {
                        return Ok(());
                    }
                }
                // Missed events (huge burst): fall back to polling the document itself.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    return self
                        .wait_for("document.readyState === 'complete'", left)
                        .await;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    bail!("browser gone while loading {url}")
                }
                Err(_) => bail!("{url} did not fire `load` within {NAV_TIMEOUT:?}"),
            }
        }
    }

    /// Evaluates a JS expression (promises are awaited) and deserializes its value.
    /// `undefined` becomes JSON `null`. A thrown exception is an error with its text.
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> anyhow::Result<T> {
        let params = json!({ "expression": expression, "returnByValue": true,
                             "awaitPromise": true, "userGesture": true });
        let mut r = self.cdp("Runtime.evaluate", params).await?;
        if let Some(d) = r.get("exceptionDetails") {
            bail!("JS `{}` threw: {}", short(expression), exception_text(d));
        }
        if let Some(u) = r["result"].get("unserializableValue") {
            bail!(
                "JS `{}` returned {u}, which JSON cannot carry",
                short(expression)
            );
        }
        let value = r["result"]
            .get_mut("value")
            .map(Value::take)
            .unwrap_or(Value::Null);
        serde_json::from_value(value.clone())
            .with_context(|| format!("JS `{}` returned unexpected {value}", short(expression)))
    }

    /// Evaluates a JS expression for its side effects.
    pub async fn eval_unit(&self, expression: &str) -> anyhow::Result<()> {
        self.eval::<Value>(expression).await.map(drop)
    }

    /// Polls `predicate` (a JS expression; a promise is awaited) every 50 ms until it is
    /// truthy. Exceptions count as "not yet" (the element may not exist yet); the timeout error
    /// names the predicate and its last value or error.
    pub async fn wait_for(&self, predicate: &str, timeout: Duration) -> anyhow::Result<()> {
        let expr = format!("(async () => !!(await ({predicate})))()");
        self.poll(&expr, timeout, |v| v == &Value::Bool(true))
            .await
            .with_context(|| format!("waiting for `{}`", short(predicate)))
            .map(drop)
    }

    /// Polls `expression` every 50 ms until it returns something other than `null`/`undefined`,
    /// and deserializes that.
    pub async fn wait_for_value<T: DeserializeOwned>(
        &self,
        expression: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let v = self
            .poll(expression, timeout, |v| !v.is_null())
            .await
            .with_context(|| format!("waiting for a value from `{}`", short(expression)))?;
        serde_json::from_value(v.clone())
            .with_context(|| format!("JS `{}` returned unexpected {v}", short(expression)))
    }

    async fn poll(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval::<Value>(expr).await {
                Ok(v) if done(&v) => return Ok(v),
                Ok(v) => format!("last value {v}"),
                Err(e) => format!("last error: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?}; {last}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Clicks the first element matching `selector` (a DOM `click()`, enough for our buttons
    /// and links). Errors if nothing matches.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        let js = format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return false; el.click(); return true; }})()"
        );
        if !self.eval::<bool>(&js).await? {
            bail!("click: no element matches {selector:?}");
        }
        Ok(())
    }

    /// Sets the value of the input matching `selector` and fires `input` and `change`, the way
    /// typing would as far as page scripts can tell.
    pub async fn type_into(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let (sel, text) = (
            serde_json::to_string(selector)?,
            serde_json::to_string(text)?,
        );
        let js = format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return false; el.focus(); el.value = {text};
               el.dispatchEvent(new Event('input', {{ bubbles: true }}));
               el.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()"
        );
        if !self.eval::<bool>(&js).await? {
            bail!("type_into: no element matches {selector:?}");
        }
        Ok(())
    }

    /// Closes the tab the way a visitor closing it would, and waits until Chromium has
    /// detached the session (the command itself answers before the unload steps finish).
    ///
    /// Uses `Target.closeTarget`: Chromium runs the page's unload steps (`pagehide`, then
    /// `visibilitychange` to hidden, then `unload`), and a `navigator.sendBeacon` there reaches
    /// the server (checked by the `browser_smoke` test, Chromium 156). `Page.close` fires the
    /// same events but runs `beforeunload` first, which a "visitor left" test does not want.
    pub async fn close(self) -> anyhow::Result<()> {
        let mut events = self.conn.events.subscribe();
        self.conn
            .call(
                "Target.closeTarget",
                json!({ "targetId": self.target_id }),
                None,
            )
            .await?;
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(ev)
                        if ev.method == "Target.detachedFromTarget"
                            && ev.params["sessionId"] == *self.session =>
                    {
                        return Ok(());
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        bail!("browser gone while closing a page")
                    }
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("page did not close within {CALL_TIMEOUT:?}"))?
    }

    /// A PNG of the viewport, for debugging failed tests.
    pub async fn screenshot_png(&self) -> anyhow::Result<Vec<u8>> {
        let r = self
            .cdp("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = r["data"].as_str().context("no screenshot data")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }

    /// Console output so far (`"log: a b"`, `"error: ..."`), uncaught exceptions included
    /// (`"exception: ..."`).
    pub fn console_messages(&self) -> Vec<String> {
        self.log.lock().unwrap().console.clone()
    }

    /// Uncaught exceptions so far (message and stack). Empty means no script error happened.
    pub fn exceptions(&self) -> Vec<String> {
        self.log.lock().unwrap().exceptions.clone()
    }

    /// JS dialogs opened so far (`"alert: 1"`); all were dismissed automatically.
    pub fn dialogs(&self) -> Vec<String> {
        self.log.lock().unwrap().dialogs.clone()
    }
}
