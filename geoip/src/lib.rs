//! Enrichment of beacons: IP address → location, User-Agent → browser, OS and device.
//!
//! The [`Enricher`] is built once at start-up and shared by every ingest task. It never fails an
//! ingest: a missing database, an address outside every network or an unknown User-Agent all give
//! empty fields. Results are shared `Arc`s so that thousands of live visitors from the same city or
//! on the same browser build point at one allocation.

mod client;
mod geo;
pub mod mmdb;

pub use client::{ClientInfo, DeviceKind};
pub use geo::{GeoDb, GeoError, GeoInfo};

use std::net::IpAddr;
use std::sync::Arc;

/// Looks up location and client details, caching both.
///
/// User-Agent results are cached per distinct string (there are few distinct strings compared with
/// beacons). Location results are deduplicated per network, and the tracker looks a visitor up
/// once per visit, so the database is read rarely.
#[derive(Debug, Default)]
pub struct Enricher {
    geo: Option<GeoDb>,
    clients: client::ClientCache,
}

impl Enricher {
    /// An enricher that resolves User-Agents but leaves every location empty.
    pub fn without_geo() -> Self {
        Self::default()
    }

    /// An enricher backed by an already opened database.
    pub fn with_geo(db: GeoDb) -> Self {
        Self {
            geo: Some(db),
            clients: client::ClientCache::default(),
        }
    }

    /// Whether a GeoIP database is loaded.
    pub fn has_geo(&self) -> bool {
        self.geo.is_some()
    }

    /// Browser, OS and device for a User-Agent string; cached per distinct string.
    pub fn client(&self, user_agent: &str) -> Arc<ClientInfo> {
        self.clients.get(user_agent)
    }

    /// Location of an address; empty when there is no database or no matching network.
    pub fn geo(&self, ip: IpAddr) -> Arc<GeoInfo> {
        match &self.geo {
            Some(db) => db.lookup(ip),
            None => GeoInfo::empty(),
        }
    }
}
