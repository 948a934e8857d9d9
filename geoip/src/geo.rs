//! IP → location from a MaxMind-format database (GeoIP2/GeoLite2 City or Country, or compatible).

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use maxminddb::{Reader, geoip2};
use serde::Serialize;

/// Where an address is. Every field is optional: a Country database has no city, and an address
/// outside every network has nothing at all.
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2, e.g. "SE".
    pub country_code: Option<Box<str>>,
    /// English name, e.g. "Sweden".
    pub country_name: Option<Box<str>>,
    /// English name of the first subdivision, e.g. "Östergötland County".
    pub region: Option<Box<str>>,
    pub city: Option<Box<str>>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// IANA time zone, e.g. "Europe/Stockholm".
    pub time_zone: Option<Box<str>>,
}

impl GeoInfo {
    /// The shared empty location.
    pub fn empty() -> Arc<GeoInfo> {
        static EMPTY: OnceLock<Arc<GeoInfo>> = OnceLock::new();
        Arc::clone(EMPTY.get_or_init(|| Arc::new(GeoInfo::default())))
    }

    pub fn is_empty(&self) -> bool {
        self == &GeoInfo::default()
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot read GeoIP database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    #[error(
        "GeoIP database {path} is a {database_type:?} database; a City or Country database is needed"
    )]
    WrongType { path: String, database_type: String },
}

/// An opened database plus a cache of results per matched network, so every visitor from one
/// network shares one `GeoInfo`.
#[derive(Debug)]
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    by_network: DashMap<(IpAddr, u8), Arc<GeoInfo>>,
}

/// Networks cached before the cache starts over (a City database has a few million networks;
/// live traffic touches far fewer).
const NETWORK_CACHE_CAPACITY: usize = 65_536;

impl GeoDb {
    /// Opens a `.mmdb` file and checks it holds City or Country records.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoDb, GeoError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| GeoError::Open {
            path: path.display().to_string(),
            source: maxminddb::MaxMindDbError::Io(error),
        })?;
        Self::from_bytes(bytes).map_err(|error| match error {
            GeoError::Open { source, .. } => GeoError::Open {
                path: path.display().to_string(),
                source,
            },
            GeoError::WrongType { database_type, .. } => GeoError::WrongType {
                path: path.display().to_string(),
                database_type,
            },
        })
    }

    /// Reads a database held in memory (tests and the demo build theirs with [`crate::mmdb`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoDb, GeoError> {
        let reader = Reader::from_source(bytes).map_err(|source| GeoError::Open {
            path: "<memory>".into(),
            source,
        })?;
        let database_type = reader.metadata.database_type.clone();
        if !(database_type.contains("City") || database_type.contains("Country")) {
            return Err(GeoError::WrongType {
                path: "<memory>".into(),
                database_type,
            });
        }
        Ok(GeoDb {
            reader,
            by_network: DashMap::new(),
        })
    }

    /// Looks an address up; any failure gives the empty location.
    pub fn lookup(&self, ip: IpAddr) -> Arc<GeoInfo> {
        let ip = canonical(ip);
        let Ok(result) = self.reader.lookup(ip) else {
            return GeoInfo::empty();
        };
        let Ok(network) = result.network() else {
            return GeoInfo::empty();
        };
        let key = (network.network(), network.prefix());
        if let Some(hit) = self.by_network.get(&key) {
            return Arc::clone(hit.value());
        }
        let info = match result.decode::<geoip2::City>() {
            Ok(Some(city)) => Arc::new(from_city(&city)),
            _ => GeoInfo::empty(),
        };
        if self.by_network.len() >= NETWORK_CACHE_CAPACITY {
            self.by_network.clear();
        }
        self.by_network.insert(key, Arc::clone(&info));
        info
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack socket reports them) are looked
/// up as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

fn from_city(city: &geoip2::City<'_>) -> GeoInfo {
    let boxed = |value: Option<&str>| value.filter(|v| !v.is_empty()).map(Box::<str>::from);
    GeoInfo {
        country_code: boxed(city.country.iso_code),
        country_name: boxed(city.country.names.english),
        region: city
            .subdivisions
            .first()
            .and_then(|subdivision| boxed(subdivision.names.english)),
        city: boxed(city.city.names.english),
        latitude: city.location.latitude,
        longitude: city.location.longitude,
        time_zone: boxed(city.location.time_zone),
    }
}
