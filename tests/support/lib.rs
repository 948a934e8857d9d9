//! `testkit`: support code shared by Porchlight's integration tests (`tests/integration`) and
//! benchmarks (`benches/`).
//!
//! - [`browser`]: a minimal Chrome DevTools Protocol client driving a headless Chromium, for
//!   end-to-end tests of the widget and console as a real visitor's browser runs them.
//! - [`hooks`]: a webhook receiver on loopback that records what it gets.

pub mod app;
pub mod browser;
pub mod hooks;

/// An HTTP client for tests and benchmarks.
///
/// reqwest is built with rustls but without a bundled crypto provider (the workspace picks
/// ring, see Cargo.toml), so the process's default provider must be installed before any
/// client is built; this does that first.
pub fn http_client() -> reqwest::Client {
    dashboards::webhooks::install_tls_provider();
    reqwest::Client::new()
}
