//! A writer for the MaxMind DB file format, version 2.0.
//!
//! Porchlight never ships or downloads a GeoIP database, yet its tests, benchmarks and demo traffic
//! need one. This module builds `.mmdb` files in memory that the `maxminddb` crate (and every other
//! conforming reader) opens like a database from MaxMind.
//!
//! A file has three parts:
//!
//! 1. A binary search tree over the bits of an IPv6 address. Each node holds two records (the
//!    0-bit and the 1-bit child) of 24, 28 or 32 bits. A record below `node_count` is another
//!    node, a record equal to `node_count` means "no data", and a larger record points into the
//!    data section at `record - node_count - 16`.
//! 2. Sixteen zero bytes, then the data section: values in MaxMind's self-describing encoding
//!    (a control byte with a 3-bit type and a 5-bit size, extended types for the rarer ones, and
//!    pointers so that identical values are stored once).
//! 3. The marker `\xAB\xCD\xEFMaxMind.com` followed by the metadata map.
//!
//! IPv4 networks live in the IPv6 tree under `::/96`, which is where readers start an IPv4
//! lookup. The IPv4-mapped range `::ffff:0:0/96` is an alias of that subtree (it points at the same
//! node), so looking up `::ffff:81.2.69.1` gives the same answer as `81.2.69.1`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The bytes that separate the data section from the metadata.
pub const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// The zero bytes between the search tree and the data section.
const DATA_SECTION_SEPARATOR: [u8; 16] = [0; 16];

/// Type numbers of the data section encoding.
const TYPE_POINTER: u8 = 1;
const TYPE_STRING: u8 = 2;
const TYPE_DOUBLE: u8 = 3;
const TYPE_BYTES: u8 = 4;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_INT32: u8 = 8;
const TYPE_UINT64: u8 = 9;
const TYPE_UINT128: u8 = 10;
const TYPE_ARRAY: u8 = 11;
const TYPE_BOOL: u8 = 14;
const TYPE_FLOAT: u8 = 15;

/// The largest payload size (string length, map entry count, ...) the encoding can express: a
/// size field of 31 adds three bytes to 65 821.
pub const MAX_VALUE_SIZE: usize = 65_821 + 0xFF_FFFF;

/// Depth in the IPv6 tree at which the IPv4 subtree (`::/96`) starts.
const IPV4_DEPTH: u8 = 96;

/// The IPv4-mapped prefix `::ffff:0:0/96` as tree bits.
const IPV4_MAPPED: u128 = 0xffff_0000_0000;

/// A value in the data section.
///
/// Maps keep their insertion order, which is also the order a reader sees them in. `Deserialize`
/// is implemented so a record can be read back exactly as written (each MaxMind type maps to its
/// own variant), which is what the round-trip tests rely on.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Double(f64),
    Float(f32),
    Bytes(Vec<u8>),
    U16(u16),
    U32(u32),
    I32(i32),
    U64(u64),
    U128(u128),
    Bool(bool),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

impl Value {
    /// A map from any iterator of key/value pairs, e.g. `Value::map([("en", "London".into())])`.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| (key.into(), value))
                .collect(),
        )
    }

    /// The value under `key` when this is a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::String(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Double(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<u16> for Value {
    fn from(value: u16) -> Self {
        Value::U16(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::U32(value)
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::U64(value)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a MaxMind DB value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i32<E: de::Error>(self, value: i32) -> Result<Value, E> {
        Ok(Value::I32(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        i32::try_from(value)
            .map(Value::I32)
            .map_err(|_| E::custom(format!("integer {value} does not fit an int32")))
    }

    fn visit_u16<E: de::Error>(self, value: u16) -> Result<Value, E> {
        Ok(Value::U16(value))
    }

    fn visit_u32<E: de::Error>(self, value: u32) -> Result<Value, E> {
        Ok(Value::U32(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::U64(value))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Value, E> {
        Ok(Value::U128(value))
    }

    fn visit_f32<E: de::Error>(self, value: f32) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Double(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(value.to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry::<String, Value>()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}

/// Why a network or value cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmdbError {
    #[error("prefix length /{prefix_len} is too long for {network} (at most /{max})")]
    PrefixTooLong {
        network: IpAddr,
        prefix_len: u8,
        max: u8,
    },
    #[error("{0:?} is not a network in CIDR notation (address/prefix length)")]
    InvalidCidr(String),
    #[error("a value of size {size} is larger than the format allows ({MAX_VALUE_SIZE})")]
    ValueTooLarge { size: usize },
    #[error("record size {0} is not one of 24, 28 or 32 bits")]
    UnsupportedRecordSize(u16),
}

/// One record of a tree node while the tree is built.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Record {
    /// No data for this part of the address space.
    Empty,
    /// Another node (an index into `MmdbWriter::nodes`).
    Node(u32),
    /// Data inserted for a network of `prefix_len` bits (counted in the IPv6 tree). The prefix
    /// length is kept so that a later, broader network does not overwrite a narrower one.
    Data { record: u32, prefix_len: u8 },
}

/// Builds a MaxMind DB (IPv6 tree, IPv4 under `::/96`) in memory.
///
/// Overlapping networks resolve by longest prefix, whatever the order of the inserts: inserting
/// `10.0.0.0/8` after `10.1.0.0/16` fills only the parts of `10.0.0.0/8` outside `10.1.0.0/16`.
/// Inserting the same network twice keeps the later value.
#[derive(Clone, Debug)]
pub struct MmdbWriter {
    database_type: String,
    languages: Vec<String>,
    description: Vec<(String, String)>,
    build_epoch: u64,
    min_record_size: u16,
    /// Node 0 is the root; node `ipv4_root` is the node at `::/96`.
    nodes: Vec<[Record; 2]>,
    /// Every inserted value, indexed by `Record::Data::record`. Identical values are written to
    /// the data section once, and values no network uses any more are not written at all.
    records: Vec<Value>,
}

impl MmdbWriter {
    /// A writer for an empty IPv6 database of the given `database_type` (e.g. "GeoIP2-City"),
    /// with English as its language, a one-line English description and the current time as its
    /// build epoch.
    pub fn new(database_type: &str) -> MmdbWriter {
        let build_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut writer = MmdbWriter {
            database_type: database_type.to_owned(),
            languages: vec!["en".to_owned()],
            description: vec![(
                "en".to_owned(),
                format!("{database_type} database written by Porchlight"),
            )],
            build_epoch,
            min_record_size: 24,
            nodes: vec![[Record::Empty; 2]],
            records: Vec::new(),
        };
        // The IPv4 subtree must be a real node even when no IPv4 network is ever inserted, so
        // that readers find a node at `::/96` and the alias below has something to point at.
        let (parent, bit) = writer.slot(0, IPV4_DEPTH);
        let ipv4_root = writer.push_node([Record::Empty; 2]);
        writer.nodes[parent][bit] = Record::Node(ipv4_root);
        let (parent, bit) = writer.slot(IPV4_MAPPED, IPV4_DEPTH);
        writer.nodes[parent][bit] = Record::Node(ipv4_root);
        writer
    }

    /// Replaces the languages listed in the metadata.
    pub fn languages<S: Into<String>>(mut self, languages: impl IntoIterator<Item = S>) -> Self {
        self.languages = languages.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the description for one language (replacing an earlier one for that language).
    pub fn description(mut self, language: &str, text: &str) -> Self {
        self.description
            .retain(|(existing, _)| existing != language);
        self.description
            .push((language.to_owned(), text.to_owned()));
        self
    }

    /// Sets the build time (seconds since the Unix epoch); fixtures use a fixed one so that the
    /// bytes are the same on every run.
    pub fn build_epoch(mut self, seconds: u64) -> Self {
        self.build_epoch = seconds;
        self
    }

    /// Sets the smallest record size to use. [`MmdbWriter::to_bytes`] picks the smallest of 24,
    /// 28 and 32 bits that can address every node and data offset, but never less than this.
    pub fn record_size(mut self, bits: u16) -> Result<Self, MmdbError> {
        if !matches!(bits, 24 | 28 | 32) {
            return Err(MmdbError::UnsupportedRecordSize(bits));
        }
        self.min_record_size = bits;
        Ok(self)
    }

    /// Number of nodes in the search tree so far.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Associates `value` with a network. IPv4 networks (and IPv4-mapped IPv6 networks) go into
    /// the IPv4 subtree; host bits below the prefix are ignored.
    pub fn insert(
        &mut self,
        network: IpAddr,
        prefix_len: u8,
        value: Value,
    ) -> Result<(), MmdbError> {
        let (bits, depth) = tree_position(network, prefix_len)?;
        check_value(&value)?;
        let record =
            u32::try_from(self.records.len()).expect("a writer holds far fewer than 2^32 values");
        self.records.push(value);
        let data = Record::Data {
            record,
            prefix_len: depth,
        };
        if depth == 0 {
            self.fill(0, depth, data);
            return Ok(());
        }
        let (parent, bit) = self.slot(bits, depth);
        match self.nodes[parent][bit] {
            Record::Node(child) => self.fill(child as usize, depth, data),
            // A leaf exactly at this depth came from an insert of a prefix no longer than this
            // one (or from splitting a shorter one), so the new value replaces it.
            Record::Empty | Record::Data { .. } => self.nodes[parent][bit] = data,
        }
        Ok(())
    }

    /// [`MmdbWriter::insert`] for a network written as `"81.2.69.0/24"` or `"2a02:ff0::/32"`.
    pub fn insert_cidr(&mut self, cidr: &str, value: Value) -> Result<(), MmdbError> {
        let (address, prefix_len) = parse_cidr(cidr)?;
        self.insert(address, prefix_len, value)
    }

    /// The finished database.
    ///
    /// # Panics
    ///
    /// If the tree plus the data section need more than 32-bit records, i.e. the database would
    /// be larger than 4 GiB; this writer is meant for fixtures far below that.
    pub fn to_bytes(&self) -> Vec<u8> {
        let node_count = self.nodes.len() as u64;
        let mut data = DataSection::default();
        let mut record_offsets: HashMap<u32, u64> = HashMap::new();
        let mut tree: Vec<[u64; 2]> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let mut values = [0_u64; 2];
            for (slot, record) in values.iter_mut().zip(node) {
                *slot = match *record {
                    Record::Empty => node_count,
                    Record::Node(child) => u64::from(child),
                    Record::Data { record, .. } => {
                        let offset = *record_offsets
                            .entry(record)
                            .or_insert_with(|| data.record(&self.records[record as usize]) as u64);
                        node_count + DATA_SECTION_SEPARATOR.len() as u64 + offset
                    }
                };
            }
            tree.push(values);
        }
        let largest = tree.iter().flatten().copied().max().unwrap_or(node_count);
        let record_size = [24_u16, 28, 32]
            .into_iter()
            .filter(|&bits| bits >= self.min_record_size)
            .find(|&bits| largest < 1_u64 << bits)
            .expect("the database needs records wider than 32 bits (it would exceed 4 GiB)");

        let tree_len = self.nodes.len() * usize::from(record_size) / 4;
        let mut out = Vec::with_capacity(tree_len + 16 + data.bytes.len() + 256);
        for [left, right] in tree {
            write_node(&mut out, record_size, left, right);
        }
        out.extend_from_slice(&DATA_SECTION_SEPARATOR);
        out.extend_from_slice(&data.bytes);
        out.extend_from_slice(METADATA_MARKER);
        encode_plain(&self.metadata(record_size), &mut out);
        out
    }

    fn metadata(&self, record_size: u16) -> Value {
        Value::map([
            (
                "binary_format_major_version",
                Value::U16(2), // The format version this writer implements is 2.0.
            ),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(self.build_epoch)),
            ("database_type", Value::from(self.database_type.as_str())),
            (
                "description",
                Value::map(
                    self.description
                        .iter()
                        .map(|(language, text)| (language.clone(), Value::from(text.as_str()))),
                ),
            ),
            ("ip_version", Value::U16(6)),
            (
                "languages",
                Value::Array(
                    self.languages
                        .iter()
                        .map(|language| Value::from(language.as_str()))
                        .collect(),
                ),
            ),
            (
                "node_count",
                Value::U32(u32::try_from(self.nodes.len()).expect("node count fits 32 bits")),
            ),
            ("record_size", Value::U16(record_size)),
        ])
    }

    fn push_node(&mut self, records: [Record; 2]) -> u32 {
        let index = u32::try_from(self.nodes.len()).expect("node count fits 32 bits");
        self.nodes.push(records);
        index
    }

    /// The (node, bit) holding the record at `depth` (1..=128) on the path of `bits`, creating
    /// nodes on the way. A leaf on the way is split into a node whose two records both carry the
    /// leaf, so the rest of its range keeps its data.
    fn slot(&mut self, bits: u128, depth: u8) -> (usize, usize) {
        let mut node = 0_usize;
        for level in 0..depth - 1 {
            let bit = bit_at(bits, level);
            node = match self.nodes[node][bit] {
                Record::Node(child) => child as usize,
                leaf => {
                    let child = self.push_node([leaf; 2]);
                    self.nodes[node][bit] = Record::Node(child);
                    child as usize
                }
            };
        }
        (node, bit_at(bits, depth - 1))
    }

    /// Puts `data` (for a network of `prefix_len` bits) into every part of the subtree under
    /// `node` not covered by a longer prefix.
    fn fill(&mut self, node: usize, prefix_len: u8, data: Record) {
        for bit in 0..2 {
            match self.nodes[node][bit] {
                Record::Node(child) => self.fill(child as usize, prefix_len, data),
                Record::Empty => self.nodes[node][bit] = data,
                Record::Data {
                    prefix_len: existing,
                    ..
                } if existing <= prefix_len => self.nodes[node][bit] = data,
                Record::Data { .. } => {}
            }
        }
    }
}

/// The 128-bit tree path and depth of a network.
fn tree_position(network: IpAddr, prefix_len: u8) -> Result<(u128, u8), MmdbError> {
    let too_long = |max: u8| MmdbError::PrefixTooLong {
        network,
        prefix_len,
        max,
    };
    let (bits, depth) = match network {
        IpAddr::V4(v4) => {
            if prefix_len > 32 {
                return Err(too_long(32));
            }
            (u128::from(v4.to_bits()), prefix_len + IPV4_DEPTH)
        }
        IpAddr::V6(v6) => {
            if prefix_len > 128 {
                return Err(too_long(128));
            }
            match v6.to_ipv4_mapped() {
                // The mapped range is an alias of the IPv4 subtree; writing through it would be
                // the same as writing the IPv4 network, so do exactly that.
                Some(v4) if prefix_len >= IPV4_DEPTH => (u128::from(v4.to_bits()), prefix_len),
                _ => (v6.to_bits(), prefix_len),
            }
        }
    };
    Ok((mask(bits, depth), depth))
}

/// `bits` with everything after the first `depth` bits cleared.
fn mask(bits: u128, depth: u8) -> u128 {
    match depth {
        0 => 0,
        depth => bits & (u128::MAX << (128 - u32::from(depth))),
    }
}

/// Bit `level` (0 = most significant) of a 128-bit path.
fn bit_at(bits: u128, level: u8) -> usize {
    ((bits >> (127 - u32::from(level))) & 1) as usize
}

/// Splits `"address/prefix"`.
fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), MmdbError> {
    let invalid = || MmdbError::InvalidCidr(cidr.to_owned());
    let (address, prefix_len) = cidr.split_once('/').ok_or_else(invalid)?;
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let prefix_len: u8 = prefix_len.parse().map_err(|_| invalid())?;
    Ok((address, prefix_len))
}

/// Rejects values whose sizes the encoding cannot express, so `to_bytes` never has to.
fn check_value(value: &Value) -> Result<(), MmdbError> {
    let size = match value {
        Value::String(text) => text.len(),
        Value::Bytes(bytes) => bytes.len(),
        Value::Map(entries) => {
            for (key, item) in entries {
                check_size(key.len())?;
                check_value(item)?;
            }
            entries.len()
        }
        Value::Array(items) => {
            for item in items {
                check_value(item)?;
            }
            items.len()
        }
        _ => 0,
    };
    check_size(size)
}

fn check_size(size: usize) -> Result<(), MmdbError> {
    if size > MAX_VALUE_SIZE {
        Err(MmdbError::ValueTooLarge { size })
    } else {
        Ok(())
    }
}

/// Appends one node: two records of `record_size` bits. In 28-bit records the top four bits of
/// each record share the middle byte (left record in the high nibble).
fn write_node(out: &mut Vec<u8>, record_size: u16, left: u64, right: u64) {
    let be = |value: u64| (value as u32).to_be_bytes();
    match record_size {
        24 => {
            out.extend_from_slice(&be(left)[1..]);
            out.extend_from_slice(&be(right)[1..]);
        }
        28 => {
            out.extend_from_slice(&be(left)[1..]);
            out.push((((left >> 24) as u8 & 0x0F) << 4) | ((right >> 24) as u8 & 0x0F));
            out.extend_from_slice(&be(right)[1..]);
        }
        _ => {
            out.extend_from_slice(&be(left));
            out.extend_from_slice(&be(right));
        }
    }
}

/// The data section while it is written, with the offset of every value already in it so that
/// repeats become pointers.
#[derive(Default)]
struct DataSection {
    bytes: Vec<u8>,
    /// Plain encoding (no pointers) of a value → where it was first written.
    offsets: HashMap<Vec<u8>, usize>,
}

impl DataSection {
    /// The offset of a top-level record, writing it unless an identical value is already there.
    fn record(&mut self, value: &Value) -> usize {
        let plain = plain(value);
        if let Some(&offset) = self.offsets.get(&plain) {
            return offset;
        }
        let offset = self.bytes.len();
        self.write_inline(value);
        self.offsets.insert(plain, offset);
        offset
    }

    /// Writes a map key, a map value or an array item: a pointer when an identical value was
    /// written before and the pointer is shorter than the value itself.
    fn nested(&mut self, plain: Vec<u8>, value: Option<&Value>) {
        if let Some(&target) = self.offsets.get(&plain)
            && pointer_len(target) < plain.len()
        {
            write_pointer(&mut self.bytes, target);
            return;
        }
        let offset = self.bytes.len();
        match value {
            Some(value) => self.write_inline(value),
            None => self.bytes.extend_from_slice(&plain),
        }
        self.offsets.entry(plain).or_insert(offset);
    }

    /// Writes `value` here; its children may become pointers.
    fn write_inline(&mut self, value: &Value) {
        match value {
            Value::Map(entries) => {
                write_control(&mut self.bytes, TYPE_MAP, entries.len());
                for (key, item) in entries {
                    self.nested(plain_str(key), None);
                    self.nested_value(item);
                }
            }
            Value::Array(items) => {
                write_control(&mut self.bytes, TYPE_ARRAY, items.len());
                for item in items {
                    self.nested_value(item);
                }
            }
            scalar => encode_plain(scalar, &mut self.bytes),
        }
    }

    fn nested_value(&mut self, value: &Value) {
        let plain = plain(value);
        match value {
            Value::Map(_) | Value::Array(_) => self.nested(plain, Some(value)),
            _ => self.nested(plain, None),
        }
    }
}

fn plain(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_plain(value, &mut out);
    out
}

fn plain_str(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    write_control(&mut out, TYPE_STRING, text.len());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Encodes a value without pointers: the data section's dedup key, and the metadata (which
/// readers decode on its own, so it must not point anywhere).
fn encode_plain(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(text) => {
            write_control(out, TYPE_STRING, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::Double(number) => {
            write_control(out, TYPE_DOUBLE, 8);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::Float(number) => {
            write_control(out, TYPE_FLOAT, 4);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::Bytes(bytes) => {
            write_control(out, TYPE_BYTES, bytes.len());
            out.extend_from_slice(bytes);
        }
        Value::U16(number) => write_uint(out, TYPE_UINT16, &number.to_be_bytes()),
        Value::U32(number) => write_uint(out, TYPE_UINT32, &number.to_be_bytes()),
        Value::U64(number) => write_uint(out, TYPE_UINT64, &number.to_be_bytes()),
        Value::U128(number) => write_uint(out, TYPE_UINT128, &number.to_be_bytes()),
        // Readers sign-extend nothing: a negative int32 needs all four bytes, a positive one
        // can drop its leading zero bytes like the unsigned types.
        Value::I32(number) if *number < 0 => {
            write_control(out, TYPE_INT32, 4);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::I32(number) => write_uint(out, TYPE_INT32, &number.to_be_bytes()),
        // A boolean has no payload: its size field is the value.
        Value::Bool(flag) => write_control(out, TYPE_BOOL, usize::from(*flag)),
        Value::Map(entries) => {
            write_control(out, TYPE_MAP, entries.len());
            for (key, item) in entries {
                write_control(out, TYPE_STRING, key.len());
                out.extend_from_slice(key.as_bytes());
                encode_plain(item, out);
            }
        }
        Value::Array(items) => {
            write_control(out, TYPE_ARRAY, items.len());
            for item in items {
                encode_plain(item, out);
            }
        }
    }
}

/// An unsigned integer in as few big-endian bytes as it needs (zero needs none).
fn write_uint(out: &mut Vec<u8>, type_number: u8, big_endian: &[u8]) {
    let first = big_endian
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(big_endian.len());
    write_control(out, type_number, big_endian.len() - first);
    out.extend_from_slice(&big_endian[first..]);
}

/// The control byte (type and size), the extended type byte for types above 7, and the extra
/// size bytes for sizes of 29 and more.
fn write_control(out: &mut Vec<u8>, type_number: u8, size: usize) {
    let (size_field, extra): (u8, &[u8]) = match size {
        0..29 => (size as u8, &[]),
        29..285 => (29, &[(size - 29) as u8]),
        285..65_821 => (30, &((size - 285) as u16).to_be_bytes()),
        _ => (31, &((size - 65_821) as u32).to_be_bytes()[1..]),
    };
    if type_number <= 7 {
        out.push((type_number << 5) | size_field);
    } else {
        out.push(size_field);
        out.push(type_number - 7);
    }
    out.extend_from_slice(extra);
}

/// Bytes a pointer to `target` takes (control byte included).
fn pointer_len(target: usize) -> usize {
    match target {
        0..2_048 => 2,
        2_048..526_336 => 3,
        526_336..134_744_064 => 4,
        _ => 5,
    }
}

/// A pointer: the size field holds the pointer size in two bits and, for the three shorter
/// sizes, the top three bits of the value; each size adds a fixed bias to the value.
fn write_pointer(out: &mut Vec<u8>, target: usize) {
    let control = TYPE_POINTER << 5;
    match target {
        0..2_048 => {
            out.push(control | (target >> 8) as u8);
            out.push(target as u8);
        }
        2_048..526_336 => {
            let value = target - 2_048;
            out.push(control | (1 << 3) | (value >> 16) as u8);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        526_336..134_744_064 => {
            let value = target - 526_336;
            out.push(control | (2 << 3) | (value >> 24) as u8);
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
        _ => {
            out.push(control | (3 << 3));
            out.extend_from_slice(&(target as u32).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::Reader;

    fn open(bytes: Vec<u8>) -> Reader<Vec<u8>> {
        let reader = Reader::from_source(bytes).expect("the reader accepts the file");
        reader
            .verify()
            .expect("the file passes the reader's verifier");
        reader
    }

    /// The value stored for `address` (`None` when no network holds it) and the prefix length
    /// of the network it was found in.
    fn lookup(reader: &Reader<Vec<u8>>, address: &str) -> (Option<Value>, u8) {
        let ip: IpAddr = address.parse().expect("test addresses parse");
        let result = reader.lookup(ip).expect("lookup succeeds");
        let value = result.decode::<Value>().expect("the value decodes");
        let prefix = result.network().expect("the network is valid").prefix();
        (value, prefix)
    }

    #[track_caller]
    fn check(reader: &Reader<Vec<u8>>, address: &str, expected: Option<&Value>, prefix: u8) {
        let (value, found_prefix) = lookup(reader, address);
        assert_eq!(value.as_ref(), expected, "value for {address}");
        assert_eq!(found_prefix, prefix, "prefix length for {address}");
    }

    fn text(value: &str) -> Value {
        Value::from(value)
    }

    #[test]
    fn ipv4_and_ipv6_networks_round_trip_with_their_prefix_lengths() {
        let mut writer = MmdbWriter::new("Test");
        let a = text("a");
        let b = Value::U32(7);
        let c = Value::map([("k", text("v"))]);
        writer.insert_cidr("1.2.3.0/24", a.clone()).unwrap();
        writer.insert_cidr("10.0.0.0/8", b.clone()).unwrap();
        writer.insert_cidr("2a02:ff0::/32", c.clone()).unwrap();
        writer.insert_cidr("2001:db8::1/128", a.clone()).unwrap();
        let reader = open(writer.to_bytes());

        check(&reader, "1.2.3.4", Some(&a), 24);
        check(&reader, "1.2.3.255", Some(&a), 24);
        check(&reader, "10.200.1.1", Some(&b), 8);
        check(&reader, "2a02:ff0:1234::9", Some(&c), 32);
        check(&reader, "2001:db8::1", Some(&a), 128);
        // The IPv4-mapped alias reaches the IPv4 subtree (prefix counted in the IPv6 tree).
        check(&reader, "::ffff:1.2.3.4", Some(&a), 120);
        // IPv4 networks also answer for the same bits written as a plain IPv6 address.
        check(&reader, "::1.2.3.4", Some(&a), 120);
    }

    #[test]
    fn addresses_outside_every_network_have_no_data() {
        let mut writer = MmdbWriter::new("Test");
        writer.insert_cidr("1.2.3.0/24", text("a")).unwrap();
        writer.insert_cidr("2a02:ff0::/32", text("b")).unwrap();
        let reader = open(writer.to_bytes());
        for address in [
            "1.2.4.0",
            "1.2.2.255",
            "8.8.8.8",
            "2a02:ff1::1",
            "::1",
            "ffff::",
        ] {
            let (value, _) = lookup(&reader, address);
            assert_eq!(value, None, "{address}");
        }
    }

    #[test]
    fn an_empty_database_opens_and_finds_nothing() {
        let reader = open(MmdbWriter::new("Empty").to_bytes());
        assert_eq!(lookup(&reader, "1.2.3.4").0, None);
        assert_eq!(lookup(&reader, "2a02:ff0::1").0, None);
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_insert_order() {
        let broad = text("broad");
        let narrow = text("narrow");
        let narrower = text("narrower");
        let orders: [[(&str, &Value); 3]; 3] = [
            [
                ("10.0.0.0/8", &broad),
                ("10.1.0.0/16", &narrow),
                ("10.1.2.0/24", &narrower),
            ],
            [
                ("10.1.2.0/24", &narrower),
                ("10.1.0.0/16", &narrow),
                ("10.0.0.0/8", &broad),
            ],
            [
                ("10.1.0.0/16", &narrow),
                ("10.0.0.0/8", &broad),
                ("10.1.2.0/24", &narrower),
            ],
        ];
        for order in orders {
            let mut writer = MmdbWriter::new("Test");
            for (cidr, value) in order {
                writer.insert_cidr(cidr, value.clone()).unwrap();
            }
            let reader = open(writer.to_bytes());
            // The prefix lengths are where each address leaves the paths of the narrower
            // networks, the way a reader reports them.
            check(&reader, "10.9.9.9", Some(&broad), 13);
            check(&reader, "10.0.0.1", Some(&broad), 16);
            check(&reader, "10.1.9.9", Some(&narrow), 21);
            check(&reader, "10.1.2.3", Some(&narrower), 24);
            check(&reader, "11.0.0.0", None, 8);
        }
    }

    #[test]
    fn the_same_network_inserted_twice_keeps_the_later_value() {
        let mut writer = MmdbWriter::new("Test");
        writer.insert_cidr("192.0.2.0/24", text("old")).unwrap();
        writer.insert_cidr("192.0.2.0/24", text("new")).unwrap();
        let bytes = writer.to_bytes();
        assert!(
            !bytes.windows(3).any(|window| window == b"old"),
            "a value no network uses is not written"
        );
        check(&open(bytes), "192.0.2.1", Some(&text("new")), 24);
    }

    #[test]
    fn whole_address_space_and_host_bits() {
        let mut writer = MmdbWriter::new("Test");
        writer.insert_cidr("::/0", text("everything")).unwrap();
        // Host bits below the prefix are ignored.
        writer.insert_cidr("203.0.113.77/24", text("doc")).unwrap();
        let reader = open(writer.to_bytes());
        check(&reader, "203.0.113.1", Some(&text("doc")), 24);
        check(&reader, "1.1.1.1", Some(&text("everything")), 1);
        check(&reader, "2a02::1", Some(&text("everything")), 3);
    }

    #[test]
    fn ipv4_mapped_networks_are_stored_as_ipv4() {
        let mut writer = MmdbWriter::new("Test");
        let value = text("mapped");
        writer
            .insert("::ffff:198.51.100.0".parse().unwrap(), 120, value.clone())
            .unwrap();
        let reader = open(writer.to_bytes());
        check(&reader, "198.51.100.9", Some(&value), 24);
        check(&reader, "::ffff:198.51.100.9", Some(&value), 120);
    }

    #[test]
    fn every_type_round_trips() {
        let record = Value::map([
            ("string", text("Linköping 東京")),
            ("empty string", text("")),
            ("double", Value::Double(-23.5505)),
            ("float", Value::Float(1.5)),
            ("bytes", Value::Bytes(vec![0, 1, 2, 255])),
            ("u16 zero", Value::U16(0)),
            ("u16", Value::U16(0xBEEF)),
            ("u32", Value::U32(70_000)),
            ("u32 max", Value::U32(u32::MAX)),
            ("i32", Value::I32(-5)),
            ("i32 positive", Value::I32(300)),
            ("i32 min", Value::I32(i32::MIN)),
            ("u64", Value::U64(1 << 40)),
            ("u128", Value::U128(u128::MAX - 1)),
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            (
                "array",
                Value::Array(vec![text("en"), Value::U16(3), Value::Array(vec![])]),
            ),
            (
                "nested",
                Value::map([(
                    "deeper",
                    Value::map([("names", Value::map([("en", text("London"))]))]),
                )]),
            ),
            ("empty map", Value::Map(vec![])),
        ]);
        for bits in [24, 28, 32] {
            let mut writer = MmdbWriter::new("Test").record_size(bits).unwrap();
            writer.insert_cidr("100.64.0.0/10", record.clone()).unwrap();
            writer.insert_cidr("2c0f:f000::/20", text("v6")).unwrap();
            let reader = open(writer.to_bytes());
            assert_eq!(reader.metadata.record_size, bits);
            check(&reader, "100.100.100.100", Some(&record), 10);
            check(&reader, "2c0f:f000::1", Some(&text("v6")), 20);
        }
    }

    #[test]
    fn sizes_that_need_extra_size_bytes_round_trip() {
        let mut writer = MmdbWriter::new("Test");
        let cases = [28, 29, 284, 285, 65_820, 65_821, 70_000];
        for (index, length) in cases.into_iter().enumerate() {
            let value = Value::map([
                ("text", Value::String("x".repeat(length))),
                ("list", Value::Array(vec![Value::Bool(true); length])),
            ]);
            let address = IpAddr::from([10, index as u8, 0, 0]);
            writer.insert(address, 16, value).unwrap();
        }
        let reader = open(writer.to_bytes());
        for (index, length) in cases.into_iter().enumerate() {
            let (value, _) = lookup(&reader, &format!("10.{index}.1.1"));
            let value = value.expect("the record is found");
            assert_eq!(value.get("text"), Some(&Value::String("x".repeat(length))));
            assert_eq!(
                value.get("list"),
                Some(&Value::Array(vec![Value::Bool(true); length]))
            );
        }
    }

    #[test]
    fn identical_records_and_repeated_values_are_written_once() {
        let city = |name: &str| {
            Value::map([
                (
                    "city",
                    Value::map([("names", Value::map([("en", text(name))]))]),
                ),
                (
                    "country",
                    Value::map([
                        ("iso_code", text("SE")),
                        ("names", Value::map([("en", text("Sweden"))])),
                    ]),
                ),
            ])
        };
        let mut writer = MmdbWriter::new("Test");
        for third in 0..50_u8 {
            writer
                .insert(IpAddr::from([89, 160, third, 0]), 24, city("Linköping"))
                .unwrap();
        }
        writer
            .insert_cidr("2001:6b0::/32", city("Stockholm"))
            .unwrap();
        let bytes = writer.to_bytes();
        let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(count("Linköping".as_bytes()), 1);
        assert_eq!(count(b"Sweden"), 1, "the shared country map is a pointer");
        assert_eq!(count(b"iso_code"), 1, "repeated keys are pointers");

        let reader = open(bytes);
        let first = reader.lookup("89.160.0.1".parse().unwrap()).unwrap();
        let last = reader.lookup("89.160.49.1".parse().unwrap()).unwrap();
        assert_eq!(first.offset(), last.offset(), "networks share one record");
        check(&reader, "89.160.7.7", Some(&city("Linköping")), 24);
        check(&reader, "2001:6b0::1", Some(&city("Stockholm")), 32);
    }

    #[test]
    fn pointers_of_every_size_decode() {
        // Within one record, filler bytes push the first copy of each string past a pointer
        // size boundary, so the repeats at the end need two-, three- and four-byte pointers.
        let near = text("near string, pointed at with two bytes");
        let middle = text("middle string, pointed at with three bytes");
        let far = text("far string, pointed at with four bytes");
        let record = Value::map([
            ("near", near.clone()),
            ("filler 1", Value::Bytes(vec![1; 3_000])),
            ("middle", middle.clone()),
            ("filler 2", Value::Bytes(vec![2; 600_000])),
            ("far", far.clone()),
            ("again", Value::Array(vec![near, middle, far])),
        ]);
        let mut writer = MmdbWriter::new("Test");
        writer.insert_cidr("10.0.0.0/8", record.clone()).unwrap();
        let bytes = writer.to_bytes();
        let count = |needle: &[u8]| bytes.windows(needle.len()).filter(|w| *w == needle).count();
        for needle in ["near string", "middle string", "far string"] {
            assert_eq!(count(needle.as_bytes()), 1, "{needle} is written once");
        }
        check(&open(bytes), "10.1.2.3", Some(&record), 8);
    }

    #[test]
    fn pointer_encoding_matches_the_spec_boundaries() {
        let cases: [(usize, &[u8]); 6] = [
            (0, &[0x20, 0x00]),
            (2_047, &[0x27, 0xFF]),
            (2_048, &[0x28, 0x00, 0x00]),
            (526_335, &[0x2F, 0xFF, 0xFF]),
            (526_336, &[0x30, 0x00, 0x00, 0x00]),
            (134_744_064, &[0x38, 0x08, 0x08, 0x08, 0x00]),
        ];
        for (target, expected) in cases {
            let mut out = Vec::new();
            write_pointer(&mut out, target);
            assert_eq!(out, expected, "pointer to {target}");
            assert_eq!(pointer_len(target), expected.len(), "length for {target}");
        }
    }

    #[test]
    fn metadata_is_complete() {
        let writer = MmdbWriter::new("GeoIP2-City")
            .languages(["en", "de"])
            .description("en", "Fixture")
            .description("de", "Testdaten")
            .build_epoch(1_700_000_000);
        let node_count = writer.node_count();
        let reader = open(writer.to_bytes());
        let metadata = &reader.metadata;
        assert_eq!(metadata.binary_format_major_version, 2);
        assert_eq!(metadata.binary_format_minor_version, 0);
        assert_eq!(metadata.database_type, "GeoIP2-City");
        assert_eq!(metadata.ip_version, 6);
        assert_eq!(metadata.languages, ["en", "de"]);
        assert_eq!(metadata.description["en"], "Fixture");
        assert_eq!(metadata.description["de"], "Testdaten");
        assert_eq!(metadata.build_epoch, 1_700_000_000);
        assert_eq!(metadata.node_count as usize, node_count);
        assert_eq!(metadata.record_size, 24);
    }

    #[test]
    fn bad_input_is_rejected() {
        let mut writer = MmdbWriter::new("Test");
        assert_eq!(
            writer.insert("1.2.3.0".parse().unwrap(), 33, Value::Bool(true)),
            Err(MmdbError::PrefixTooLong {
                network: "1.2.3.0".parse().unwrap(),
                prefix_len: 33,
                max: 32
            })
        );
        assert!(matches!(
            writer.insert_cidr("2001:db8::/129", Value::Bool(true)),
            Err(MmdbError::PrefixTooLong { max: 128, .. })
        ));
        for cidr in ["1.2.3.0", "1.2.3/24", "1.2.3.0/x", "", "/8"] {
            assert_eq!(
                writer.insert_cidr(cidr, Value::Bool(true)),
                Err(MmdbError::InvalidCidr(cidr.to_owned()))
            );
        }
        assert_eq!(
            MmdbWriter::new("Test").record_size(16).err(),
            Some(MmdbError::UnsupportedRecordSize(16))
        );
        let huge = Value::Bytes(vec![0; MAX_VALUE_SIZE + 1]);
        assert_eq!(
            writer.insert_cidr("1.2.3.0/24", Value::Array(vec![huge])),
            Err(MmdbError::ValueTooLarge {
                size: MAX_VALUE_SIZE + 1
            })
        );
    }
}
