//! Porchlight's HTTP side: the axum server and everything only it knows — HTTP, WebSocket frames,
//! JSON wire shapes, cookies — plus configuration and the `porchlight` binary's subcommands.
//!
//! The data flow through this crate: `POST /v1/beacon` ([`beacon`]) validates a beacon and hands
//! it to `engage::Ingest`, which enriches it and updates the `tracker::Presence` table. The
//! [`live`] pusher drains each site's coalesced changes on an interval and broadcasts one delta
//! frame to every open panel of that site. The console ([`assets`]) is plain ES modules served
//! from the binary.

pub mod api;
pub mod assets;
pub mod auth;
pub mod availability;
pub mod beacon;
pub mod chat;
pub mod cli;
pub mod config;
pub mod contacts_api;
pub mod conversations_api;
pub mod demo;
pub mod error;
pub mod live;
pub mod metrics;
pub mod rate_limit;
pub mod saved_replies_api;
pub mod server;
pub mod state;
pub mod triggers_api;
pub mod webhooks;
pub mod widget_api;
pub mod wire;

pub use config::Settings;
pub use server::{Server, router};
pub use state::AppState;
