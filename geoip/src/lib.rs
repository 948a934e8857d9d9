//! Enrichment of beacons: IP address → location, User-Agent → browser, OS and device.
//!
//! The [`Enricher`] is built once at start-up and shared by every ingest task. It never fails an
//! ingest: a missing database, an address outside every network or an unknown User-Agent all give
//! empty fields. Results are shared `Arc`s so that thousands of live visitors from the same city or
//! on the same browser build point at one allocation.

mod client;
pub mod fixture;
mod geo;
pub mod mmdb;

pub use client::{ClientInfo, DeviceKind, MAX_USER_AGENT_LEN};
pub use geo::{GeoDb, GeoError, GeoInfo};

use std::net::IpAddr;
use std::sync::Arc;

/// Looks up location and client details, caching both.
///
/// User-Agent results are cached per distinct string (there are few distinct strings compared with
/// beacons). Location results are cached per database record (every network with the same
/// location shares one), and the tracker looks a visitor up once per visit, so records are
/// decoded rarely.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn city_enricher() -> Enricher {
        Enricher::with_geo(GeoDb::from_bytes(fixture::city_database()).unwrap())
    }

    /// The expected location; empty strings stand for absent fields.
    struct Place {
        country_code: &'static str,
        country_name: &'static str,
        region: &'static str,
        city: &'static str,
        latitude: f64,
        longitude: f64,
        time_zone: &'static str,
    }

    impl Place {
        fn geo_info(&self) -> GeoInfo {
            let text = |value: &str| (!value.is_empty()).then(|| Box::from(value));
            GeoInfo {
                country_code: text(self.country_code),
                country_name: text(self.country_name),
                region: text(self.region),
                city: text(self.city),
                latitude: Some(self.latitude),
                longitude: Some(self.longitude),
                time_zone: text(self.time_zone),
            }
        }
    }

    const LONDON: Place = Place {
        country_code: "GB",
        country_name: "United Kingdom",
        region: "England",
        city: "London",
        latitude: 51.5142,
        longitude: -0.0931,
        time_zone: "Europe/London",
    };

    #[track_caller]
    fn check(enricher: &Enricher, address: &str, expected: &Place) {
        let info = enricher.geo(address.parse().unwrap());
        assert_eq!(*info, expected.geo_info(), "{address}");
    }

    #[track_caller]
    fn check_empty(enricher: &Enricher, address: &str) {
        let info = enricher.geo(address.parse().unwrap());
        assert!(info.is_empty(), "{address} gave {info:?}");
        assert!(Arc::ptr_eq(&info, &GeoInfo::empty()), "{address}");
    }

    #[test]
    fn addresses_resolve_to_their_city() {
        let enricher = city_enricher();
        assert!(enricher.has_geo());
        let cases = [
            ("81.2.69.160", LONDON),
            (
                "89.160.20.128",
                Place {
                    country_code: "SE",
                    country_name: "Sweden",
                    region: "Östergötland County",
                    city: "Linköping",
                    latitude: 58.4167,
                    longitude: 15.6167,
                    time_zone: "Europe/Stockholm",
                },
            ),
            (
                "2001:6b0:7::2",
                Place {
                    country_code: "SE",
                    country_name: "Sweden",
                    region: "Stockholm County",
                    city: "Stockholm",
                    latitude: 59.3293,
                    longitude: 18.0686,
                    time_zone: "Europe/Stockholm",
                },
            ),
            (
                "72.229.31.254",
                Place {
                    country_code: "US",
                    country_name: "United States",
                    region: "New York",
                    city: "New York",
                    latitude: 40.7128,
                    longitude: -74.006,
                    time_zone: "America/New_York",
                },
            ),
            (
                "2600:170f:ffff::1",
                Place {
                    country_code: "US",
                    country_name: "United States",
                    region: "California",
                    city: "San Francisco",
                    latitude: 37.7749,
                    longitude: -122.4194,
                    time_zone: "America/Los_Angeles",
                },
            ),
            (
                "2a01:238:4200::1",
                Place {
                    country_code: "DE",
                    country_name: "Germany",
                    region: "Land Berlin",
                    city: "Berlin",
                    latitude: 52.52,
                    longitude: 13.405,
                    time_zone: "Europe/Berlin",
                },
            ),
            (
                "126.255.0.1",
                Place {
                    country_code: "JP",
                    country_name: "Japan",
                    region: "Tokyo",
                    city: "Tokyo",
                    latitude: 35.6895,
                    longitude: 139.6917,
                    time_zone: "Asia/Tokyo",
                },
            ),
            (
                "177.32.100.1",
                Place {
                    country_code: "BR",
                    country_name: "Brazil",
                    region: "São Paulo",
                    city: "São Paulo",
                    latitude: -23.5505,
                    longitude: -46.6333,
                    time_zone: "America/Sao_Paulo",
                },
            ),
            (
                "2a02:ff0:1:2::3",
                Place {
                    country_code: "PL",
                    country_name: "Poland",
                    region: "Mazovia",
                    city: "Warsaw",
                    latitude: 52.2297,
                    longitude: 21.0122,
                    time_zone: "Europe/Warsaw",
                },
            ),
            (
                "90.100.1.1",
                Place {
                    country_code: "FR",
                    country_name: "France",
                    region: "",
                    city: "",
                    latitude: 48.8582,
                    longitude: 2.3387,
                    time_zone: "Europe/Paris",
                },
            ),
            // A dual-stack socket reports IPv4 clients as IPv4-mapped IPv6 addresses.
            ("::ffff:81.2.69.1", LONDON),
            ("::ffff:5102:4501", LONDON),
        ];
        for (address, expected) in &cases {
            check(&enricher, address, expected);
        }
    }

    #[test]
    fn every_fixture_network_resolves_to_its_table_entry() {
        let enricher = city_enricher();
        for index in 0..fixture::NETWORKS.len() * 3 {
            let network = &fixture::NETWORKS[index % fixture::NETWORKS.len()];
            let address = fixture::sample_ip(index).to_string();
            let expected = Place {
                country_code: network.country_code,
                country_name: network.country_name,
                region: network.region,
                city: network.city,
                latitude: network.latitude,
                longitude: network.longitude,
                time_zone: network.time_zone,
            };
            check(&enricher, &address, &expected);
        }
    }

    #[test]
    fn addresses_outside_every_network_are_empty() {
        let enricher = city_enricher();
        for address in [
            "8.8.8.8",
            "10.0.0.1",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "81.2.70.1",
            "89.160.21.0",
            "::1",
            "::",
            "2001:db8::1",
            "2a02:ff1::1",
            "::ffff:8.8.8.8",
            "fe80::1",
        ] {
            check_empty(&enricher, address);
        }
    }

    #[test]
    fn without_a_database_every_location_is_empty() {
        let enricher = Enricher::without_geo();
        assert!(!enricher.has_geo());
        for address in ["81.2.69.160", "2a02:ff0::1", "::ffff:81.2.69.1", "8.8.8.8"] {
            check_empty(&enricher, address);
        }
        // User-Agents still resolve.
        let client = enricher
            .client("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0");
        assert_eq!(&*client.browser, "Firefox");
    }

    #[test]
    fn a_country_database_gives_the_country_only() {
        let db = GeoDb::from_bytes(fixture::country_database()).unwrap();
        assert_eq!(db.database_type(), "GeoIP2-Country");
        let enricher = Enricher::with_geo(db);
        let country = |code: &str, name: &str| GeoInfo {
            country_code: Some(code.into()),
            country_name: Some(name.into()),
            ..GeoInfo::default()
        };
        for (address, expected) in [
            ("81.2.69.160", country("GB", "United Kingdom")),
            ("::ffff:89.160.20.1", country("SE", "Sweden")),
            ("2a02:ff0::1", country("PL", "Poland")),
            ("177.32.0.1", country("BR", "Brazil")),
        ] {
            assert_eq!(
                *enricher.geo(address.parse().unwrap()),
                expected,
                "{address}"
            );
        }
        check_empty(&enricher, "8.8.8.8");
    }
}
