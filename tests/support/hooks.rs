//! A webhook receiver on loopback for tests: it records every request and answers 200, or
//! 500 to the first one when asked to, so a test can watch the server retry.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// One request the receiver got: headers, body and the status it answered.
pub type Request = (HeaderMap, Bytes, u16);

#[derive(Default)]
struct Inner {
    fail_first: bool,
    requests: Vec<Request>,
}

/// A running receiver; `url()` is where to point a webhook.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Starts a receiver that answers 200 to every request; with `fail_first`, 500 to the
    /// first one.
    pub async fn start(fail_first: bool) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            fail_first,
            requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().expect("lock").requests.clone()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inner = inner.lock().expect("lock");
    let status = if inner.fail_first && inner.requests.is_empty() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    inner.requests.push((headers, body, status.as_u16()));
    status
}
