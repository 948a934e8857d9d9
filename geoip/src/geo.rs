//! IP → location from a MaxMind-format database (GeoIP2/GeoLite2 City or Country, or compatible).

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use maxminddb::{LookupResult, Reader, geoip2};
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

/// An opened database plus a cache of results per data record, so every visitor from networks
/// with the same location shares one `GeoInfo` and the record is decoded once.
#[derive(Debug)]
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    /// Keyed by the record's offset in the data section: identical records are stored once in a
    /// database, so the offset identifies a location, and it costs nothing to compute once the
    /// tree walk has found it.
    by_record: DashMap<usize, Arc<GeoInfo>>,
}

/// Records cached before the cache starts over (a City database has a few hundred thousand
/// distinct records; live traffic touches far fewer).
const RECORD_CACHE_CAPACITY: usize = 65_536;

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
        let reader_len = bytes.len();
        let reader = Reader::from_source(bytes).map_err(|source| GeoError::Open {
            path: "<memory>".into(),
            source,
        })?;
        // The reader indexes the search tree without bounds checks of its own; a file whose
        // metadata promises more tree than it holds would make lookups panic, so refuse it here.
        let metadata = &reader.metadata;
        let tree_len = metadata.node_count as usize * usize::from(metadata.record_size) / 4;
        if tree_len + DATA_SECTION_SEPARATOR_LEN > reader_len {
            return Err(GeoError::Open {
                path: "<memory>".into(),
                source: maxminddb::MaxMindDbError::invalid_database(format!(
                    "the search tree ({} nodes of {} bits) is larger than the file ({reader_len} bytes)",
                    metadata.node_count, metadata.record_size
                )),
            });
        }
        let database_type = metadata.database_type.clone();
        if !(database_type.contains("City") || database_type.contains("Country")) {
            return Err(GeoError::WrongType {
                path: "<memory>".into(),
                database_type,
            });
        }
        Ok(GeoDb {
            reader,
            by_record: DashMap::new(),
        })
    }

    /// Looks an address up and decodes its record without touching the cache: the cost of a
    /// first sighting, for benchmarks and one-off tools.
    pub fn lookup_uncached(&self, ip: IpAddr) -> GeoInfo {
        match self.reader.lookup(canonical(ip)) {
            Ok(result) if result.has_data() => decode(&result),
            _ => GeoInfo::default(),
        }
    }

    /// The database type from the metadata, e.g. "GeoIP2-City".
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// Looks an address up; any failure gives the empty location.
    pub fn lookup(&self, ip: IpAddr) -> Arc<GeoInfo> {
        let ip = canonical(ip);
        let Ok(result) = self.reader.lookup(ip) else {
            return GeoInfo::empty();
        };
        let Some(offset) = result.offset() else {
            return GeoInfo::empty();
        };
        if let Some(hit) = self.by_record.get(&offset) {
            return Arc::clone(hit.value());
        }
        let info = decode(&result);
        // An empty record (or one that failed to decode) shares the one empty `GeoInfo`.
        let info = if info.is_empty() {
            GeoInfo::empty()
        } else {
            Arc::new(info)
        };
        if self.by_record.len() >= RECORD_CACHE_CAPACITY {
            self.by_record.clear();
        }
        self.by_record.insert(offset, Arc::clone(&info));
        info
    }
}

/// The location in a found record; a record that does not decode as City or Country data
/// gives the empty location.
fn decode(result: &LookupResult<'_, Vec<u8>>) -> GeoInfo {
    match result.decode::<geoip2::City>() {
        Ok(Some(city)) => from_city(&city),
        _ => GeoInfo::default(),
    }
}

/// The zero bytes between the search tree and the data section.
const DATA_SECTION_SEPARATOR_LEN: usize = 16;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::mmdb::{METADATA_MARKER, MmdbWriter, Value};

    #[test]
    fn a_missing_file_is_an_open_error_naming_the_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("GeoLite2-City.mmdb");
        let error = GeoDb::open(&path).unwrap_err();
        let GeoError::Open {
            path: named,
            source,
        } = &error
        else {
            panic!("expected an open error, got {error:?}");
        };
        assert_eq!(named, &path.display().to_string());
        assert!(
            matches!(source, maxminddb::MaxMindDbError::Io(io) if io.kind() == std::io::ErrorKind::NotFound),
            "{source:?}"
        );
        assert!(error.to_string().contains("GeoLite2-City.mmdb"), "{error}");
    }

    #[test]
    fn files_that_are_not_databases_are_open_errors() {
        let city = fixture::city_database();
        let marker = city
            .windows(METADATA_MARKER.len())
            .rposition(|window| window == METADATA_MARKER)
            .unwrap();
        let cases: [(&str, Vec<u8>); 4] = [
            ("empty file", Vec::new()),
            ("text", b"this is not a MaxMind database\n".repeat(100)),
            ("metadata without a tree", city[marker..].to_vec()),
            ("cut after the tree", city[..marker / 3].to_vec()),
        ];
        let directory = tempfile::tempdir().unwrap();
        for (name, bytes) in cases {
            let path = directory.path().join(format!("{name}.mmdb"));
            std::fs::write(&path, bytes).unwrap();
            match GeoDb::open(&path) {
                Err(GeoError::Open { path: named, .. }) => {
                    assert_eq!(named, path.display().to_string(), "{name}")
                }
                other => panic!("{name}: expected an open error, got {other:?}"),
            }
        }
    }

    #[test]
    fn only_city_and_country_databases_are_accepted() {
        let database = |database_type: &str| {
            let mut writer = MmdbWriter::new(database_type);
            writer
                .insert_cidr(
                    "81.2.69.0/24",
                    Value::map([("autonomous_system_number", Value::U32(64_496))]),
                )
                .unwrap();
            writer.to_bytes()
        };
        for accepted in [
            "GeoIP2-City",
            "GeoLite2-City",
            "GeoIP2-Country",
            "GeoLite2-Country",
            "DBIP-City-Lite",
        ] {
            let db = GeoDb::from_bytes(database(accepted)).expect(accepted);
            assert_eq!(db.database_type(), accepted);
        }
        for rejected in ["GeoLite2-ASN", "GeoIP2-Anonymous-IP", "GeoIP2-ISP"] {
            match GeoDb::from_bytes(database(rejected)) {
                Err(GeoError::WrongType { database_type, .. }) => {
                    assert_eq!(database_type, rejected)
                }
                other => panic!("{rejected}: expected WrongType, got {other:?}"),
            }
        }
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("asn.mmdb");
        std::fs::write(&path, database("GeoLite2-ASN")).unwrap();
        let error = GeoDb::open(&path).unwrap_err();
        assert!(
            matches!(&error, GeoError::WrongType { path: named, .. } if *named == path.display().to_string()),
            "{error:?}"
        );
        assert!(error.to_string().contains("City or Country"), "{error}");
    }

    #[test]
    fn a_database_file_opens() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("fixture.mmdb");
        std::fs::write(&path, fixture::city_database()).unwrap();
        let db = GeoDb::open(&path).unwrap();
        let london = db.lookup("81.2.69.7".parse().unwrap());
        assert_eq!(london.city.as_deref(), Some("London"));
    }

    #[test]
    fn networks_with_the_same_record_share_one_result() {
        let db = GeoDb::from_bytes(fixture::city_database()).unwrap();
        let lookup = |address: &str| db.lookup(address.parse().unwrap());
        // Two addresses in one network, and an IPv4 and an IPv6 network with the same location.
        assert!(Arc::ptr_eq(&lookup("85.214.1.1"), &lookup("85.214.200.9")));
        assert!(Arc::ptr_eq(&lookup("85.214.1.1"), &lookup("2a01:238::1")));
        assert!(!Arc::ptr_eq(&lookup("85.214.1.1"), &lookup("81.2.69.1")));
        assert_eq!(
            *lookup("85.214.1.1"),
            db.lookup_uncached("85.214.1.1".parse().unwrap())
        );
        assert!(db.lookup_uncached("192.0.2.1".parse().unwrap()).is_empty());
        // Misses share the one empty result.
        assert!(Arc::ptr_eq(&lookup("192.0.2.1"), &GeoInfo::empty()));
    }

    #[test]
    fn an_empty_record_gives_the_empty_location() {
        let mut writer = MmdbWriter::new("GeoIP2-City");
        writer
            .insert_cidr("81.2.69.0/24", Value::Map(vec![]))
            .unwrap();
        writer
            .insert_cidr("89.160.20.0/24", Value::from("not a map"))
            .unwrap();
        let db = GeoDb::from_bytes(writer.to_bytes()).unwrap();
        for address in ["81.2.69.1", "89.160.20.1"] {
            let info = db.lookup(address.parse().unwrap());
            assert!(info.is_empty(), "{address}: {info:?}");
        }
    }
}
