//! The front end: `widget.js`, the console and the demo site, embedded at build time (see
//! `build.rs`) and served with a content type, caching rules and, for the console, a strict
//! Content-Security-Policy so that even a mistake in escaping visitor text cannot run a script.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// The console's policy: scripts and styles only from our own origin, no inline script, no
/// framing.
const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn file(path: &str) -> Option<&'static [u8]> {
    embedded::FILES
        .iter()
        .find(|(candidate, _)| *candidate == path)
        .map(|(_, bytes)| *bytes)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, cache: &'static str, csp: Option<&'static str>) -> Response {
    let Some(bytes) = file(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(csp) = csp {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    response
}

/// `GET /widget.js`: loaded by every page of every site; cacheable for a few minutes, and
/// readable from any origin.
pub async fn widget() -> Response {
    let mut response = serve("widget.js", "public, max-age=300", None);
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// `GET /api/openapi.json`: the API described as OpenAPI 3 (`web/openapi.json`).
pub async fn openapi() -> Response {
    serve("openapi.json", "no-cache", None)
}

/// `GET /` → the console.
pub async fn root() -> Redirect {
    Redirect::to("/console/")
}

/// `GET /console/` and `/console/{file}`.
pub async fn console_index() -> Response {
    serve("console/index.html", "no-cache", Some(CONSOLE_CSP))
}

pub async fn console_file(Path(path): Path<String>) -> Response {
    if path.contains("..") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    serve(&format!("console/{path}"), "no-cache", Some(CONSOLE_CSP))
}

/// `GET /demo/...`: the demo site. Paths under `/demo/app/` are routes of its single-page app.
pub async fn demo_index() -> Response {
    serve("demo/index.html", "no-cache", None)
}

pub async fn demo_file(Path(path): Path<String>) -> Response {
    if path.contains("..") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    if path == "app" || path.starts_with("app/") {
        return serve("demo/app.html", "no-cache", None);
    }
    serve(&format!("demo/{path}"), "no-cache", None)
}
