//! A small GeoIP2-shaped database for tests, benchmarks and the demo traffic simulator.
//!
//! No real GeoIP database is downloaded or shipped anywhere in Porchlight, so everything that
//! needs locations builds this one with [`crate::mmdb::MmdbWriter`]. The networks are real
//! allocations in the named countries, with plausible (not authoritative) cities; the records
//! follow the layout of MaxMind's GeoIP2 City and Country databases, so code that reads them
//! reads a real database the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::mmdb::{MmdbWriter, Value};

/// One network of the fixture. Empty `region`, `city` or `time_zone` mean the record has no
/// such field (as in a real database, where some networks are only known to the country).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixtureNetwork {
    /// CIDR notation, e.g. "81.2.69.0/24".
    pub network: &'static str,
    /// ISO 3166-1 alpha-2.
    pub country_code: &'static str,
    pub country_name: &'static str,
    /// English name of the first subdivision.
    pub region: &'static str,
    pub city: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    /// IANA time zone.
    pub time_zone: &'static str,
}

/// Build time written into the fixture's metadata; fixed so the bytes never change.
pub const BUILD_EPOCH: u64 = 1_735_689_600;

/// The fixture's networks, IPv4 and IPv6, on five continents. The last one is known only to
/// its country.
pub const NETWORKS: &[FixtureNetwork] = &[
    FixtureNetwork {
        network: "81.2.69.0/24",
        country_code: "GB",
        country_name: "United Kingdom",
        region: "England",
        city: "London",
        latitude: 51.5142,
        longitude: -0.0931,
        time_zone: "Europe/London",
    },
    FixtureNetwork {
        network: "89.160.20.0/24",
        country_code: "SE",
        country_name: "Sweden",
        region: "Östergötland County",
        city: "Linköping",
        latitude: 58.4167,
        longitude: 15.6167,
        time_zone: "Europe/Stockholm",
    },
    FixtureNetwork {
        network: "2001:6b0::/32",
        country_code: "SE",
        country_name: "Sweden",
        region: "Stockholm County",
        city: "Stockholm",
        latitude: 59.3293,
        longitude: 18.0686,
        time_zone: "Europe/Stockholm",
    },
    FixtureNetwork {
        network: "72.229.28.0/22",
        country_code: "US",
        country_name: "United States",
        region: "New York",
        city: "New York",
        latitude: 40.7128,
        longitude: -74.006,
        time_zone: "America/New_York",
    },
    FixtureNetwork {
        network: "2600:1700::/28",
        country_code: "US",
        country_name: "United States",
        region: "California",
        city: "San Francisco",
        latitude: 37.7749,
        longitude: -122.4194,
        time_zone: "America/Los_Angeles",
    },
    FixtureNetwork {
        network: "85.214.0.0/16",
        country_code: "DE",
        country_name: "Germany",
        region: "Land Berlin",
        city: "Berlin",
        latitude: 52.52,
        longitude: 13.405,
        time_zone: "Europe/Berlin",
    },
    FixtureNetwork {
        network: "2a01:238::/32",
        country_code: "DE",
        country_name: "Germany",
        region: "Land Berlin",
        city: "Berlin",
        latitude: 52.52,
        longitude: 13.405,
        time_zone: "Europe/Berlin",
    },
    FixtureNetwork {
        network: "126.0.0.0/8",
        country_code: "JP",
        country_name: "Japan",
        region: "Tokyo",
        city: "Tokyo",
        latitude: 35.6895,
        longitude: 139.6917,
        time_zone: "Asia/Tokyo",
    },
    FixtureNetwork {
        network: "240b:10::/32",
        country_code: "JP",
        country_name: "Japan",
        region: "Tokyo",
        city: "Tokyo",
        latitude: 35.6895,
        longitude: 139.6917,
        time_zone: "Asia/Tokyo",
    },
    FixtureNetwork {
        network: "177.32.0.0/16",
        country_code: "BR",
        country_name: "Brazil",
        region: "São Paulo",
        city: "São Paulo",
        latitude: -23.5505,
        longitude: -46.6333,
        time_zone: "America/Sao_Paulo",
    },
    FixtureNetwork {
        network: "83.0.0.0/16",
        country_code: "PL",
        country_name: "Poland",
        region: "Mazovia",
        city: "Warsaw",
        latitude: 52.2297,
        longitude: 21.0122,
        time_zone: "Europe/Warsaw",
    },
    FixtureNetwork {
        network: "2a02:ff0::/32",
        country_code: "PL",
        country_name: "Poland",
        region: "Mazovia",
        city: "Warsaw",
        latitude: 52.2297,
        longitude: 21.0122,
        time_zone: "Europe/Warsaw",
    },
    FixtureNetwork {
        network: "90.0.0.0/9",
        country_code: "FR",
        country_name: "France",
        region: "",
        city: "",
        latitude: 48.8582,
        longitude: 2.3387,
        time_zone: "Europe/Paris",
    },
];

/// A GeoIP2-City–shaped database ("GeoIP2-City") holding [`NETWORKS`].
pub fn city_database() -> Vec<u8> {
    build(
        "GeoIP2-City",
        "Porchlight fixture city database",
        city_record,
    )
}

/// A GeoIP2-Country–shaped database ("GeoIP2-Country") holding the countries of [`NETWORKS`].
pub fn country_database() -> Vec<u8> {
    build(
        "GeoIP2-Country",
        "Porchlight fixture country database",
        country_record,
    )
}

/// A deterministic address inside `NETWORKS[index % NETWORKS.len()]`. Successive rounds over the
/// networks give different hosts, so simulators and benchmarks see many distinct addresses.
pub fn sample_ip(index: usize) -> IpAddr {
    let network = &NETWORKS[index % NETWORKS.len()];
    let round = (index / NETWORKS.len()) as u128;
    let (address, prefix_len) = network
        .network
        .split_once('/')
        .expect("fixture networks are in CIDR notation");
    let address: IpAddr = address.parse().expect("fixture addresses parse");
    let prefix_len: u32 = prefix_len.parse().expect("fixture prefix lengths parse");
    let width = if address.is_ipv4() { 32 } else { 128 };
    // Stay within the host part and skip the all-zero network address; a prime stride spreads
    // the hosts over the range.
    let host_bits = (width - prefix_len).min(32);
    let host = match (1_u128 << host_bits) - 1 {
        0 => 0,
        hosts => 1 + (round * 7_919) % hosts,
    };
    match address {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() | host as u32)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() | host)),
    }
}

fn build(database_type: &str, description: &str, record: fn(&FixtureNetwork) -> Value) -> Vec<u8> {
    let mut writer = MmdbWriter::new(database_type)
        .languages(["en"])
        .description("en", description)
        .build_epoch(BUILD_EPOCH);
    for network in NETWORKS {
        writer
            .insert_cidr(network.network, record(network))
            .expect("fixture networks are valid CIDR and their records are small");
    }
    writer.to_bytes()
}

/// `{"en": name}`, the shape of every `names` map.
fn names(name: &str) -> Value {
    Value::map([("en", Value::from(name))])
}

/// The GeoIP2 City layout: city, continent, country, location, registered country and
/// subdivisions, leaving out what the network does not know.
fn city_record(network: &FixtureNetwork) -> Value {
    let mut entries = Vec::new();
    if !network.city.is_empty() {
        entries.push((
            "city".to_owned(),
            Value::map([("names", names(network.city))]),
        ));
    }
    entries.extend(country_entries(network));
    let mut location = vec![
        (
            "accuracy_radius".to_owned(),
            Value::U16(accuracy_radius(network)),
        ),
        ("latitude".to_owned(), Value::Double(network.latitude)),
        ("longitude".to_owned(), Value::Double(network.longitude)),
    ];
    if !network.time_zone.is_empty() {
        location.push(("time_zone".to_owned(), Value::from(network.time_zone)));
    }
    entries.push(("location".to_owned(), Value::Map(location)));
    if !network.region.is_empty() {
        entries.push((
            "subdivisions".to_owned(),
            Value::Array(vec![Value::map([("names", names(network.region))])]),
        ));
    }
    Value::Map(entries)
}

/// The GeoIP2 Country layout: continent, country and registered country.
fn country_record(network: &FixtureNetwork) -> Value {
    Value::Map(country_entries(network).collect())
}

fn country_entries(network: &FixtureNetwork) -> impl Iterator<Item = (String, Value)> {
    let (continent_code, continent_name) = continent(network.country_code);
    let country = Value::map([
        ("iso_code", Value::from(network.country_code)),
        ("names", names(network.country_name)),
    ]);
    [
        (
            "continent".to_owned(),
            Value::map([
                ("code", Value::from(continent_code)),
                ("names", names(continent_name)),
            ]),
        ),
        ("country".to_owned(), country.clone()),
        ("registered_country".to_owned(), country),
    ]
    .into_iter()
}

/// Country-level records are far less precise than city-level ones, as in real databases.
fn accuracy_radius(network: &FixtureNetwork) -> u16 {
    if network.city.is_empty() { 500 } else { 20 }
}

fn continent(country_code: &str) -> (&'static str, &'static str) {
    match country_code {
        "US" | "CA" | "MX" => ("NA", "North America"),
        "BR" | "AR" | "CL" => ("SA", "South America"),
        "JP" | "CN" | "IN" | "KR" => ("AS", "Asia"),
        "AU" | "NZ" => ("OC", "Oceania"),
        "ZA" | "NG" | "KE" => ("AF", "Africa"),
        _ => ("EU", "Europe"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::{Reader, geoip2};

    #[test]
    fn every_sample_address_is_inside_its_network_and_distinct_per_round() {
        let reader = Reader::from_source(city_database()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for index in 0..NETWORKS.len() * 5 {
            let ip = sample_ip(index);
            assert!(seen.insert(ip), "{ip} repeats");
            let city: geoip2::City = reader.lookup(ip).unwrap().decode().unwrap().unwrap();
            let expected = &NETWORKS[index % NETWORKS.len()];
            assert_eq!(city.country.iso_code, Some(expected.country_code), "{ip}");
            assert_eq!(city.location.latitude, Some(expected.latitude), "{ip}");
        }
        assert_eq!(sample_ip(0), "81.2.69.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            sample_ip(NETWORKS.len()),
            "81.2.69.15".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_databases_pass_the_readers_verifier_with_the_expected_metadata() {
        for (bytes, database_type) in [
            (city_database(), "GeoIP2-City"),
            (country_database(), "GeoIP2-Country"),
        ] {
            let reader = Reader::from_source(bytes).unwrap();
            reader.verify().unwrap();
            let metadata = &reader.metadata;
            assert_eq!(metadata.database_type, database_type);
            assert_eq!(metadata.languages, ["en"]);
            assert_eq!(metadata.ip_version, 6);
            assert_eq!(metadata.build_epoch, BUILD_EPOCH);
            assert!(metadata.description.contains_key("en"));
            let networks = reader.networks(Default::default()).unwrap().count();
            assert!(networks >= NETWORKS.len(), "{networks} networks");
        }
    }

    #[test]
    fn the_fixture_is_deterministic() {
        assert_eq!(city_database(), city_database());
        assert_eq!(country_database(), country_database());
    }

    #[test]
    fn networks_do_not_overlap() {
        // A network nested in another would split it, and the lookup of the outer one's sample
        // address would report a longer prefix than the table says.
        let reader = Reader::from_source(city_database()).unwrap();
        for (index, network) in NETWORKS.iter().enumerate() {
            let result = reader.lookup(sample_ip(index)).unwrap();
            let found = result.network().unwrap();
            let expected = network.network.split_once('/').unwrap().1;
            assert_eq!(found.prefix().to_string(), expected, "{}", network.network);
            let city: geoip2::City = result.decode().unwrap().unwrap();
            let expected_city = Some(network.city).filter(|city| !city.is_empty());
            assert_eq!(
                city.city.names.english, expected_city,
                "{}",
                network.network
            );
        }
    }
}
