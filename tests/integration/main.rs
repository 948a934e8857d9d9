//! Porchlight's integration tests: one binary, real servers on loopback, a real Chromium.

mod auth;
mod availability;
mod beacons;
mod browser_smoke;
mod chat;
mod cli;
mod console_browser;
mod console_chat;
mod console_contacts;
mod console_scale;
mod contacts;
mod conversations;
mod live;
mod openapi;
mod triggers;
mod triggers_browser;
mod webhooks;
mod widget_credential;
mod widget_hours;
