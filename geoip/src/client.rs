//! User-Agent parsing with woothee, cached per distinct User-Agent string.

use std::sync::Arc;

use dashmap::DashMap;
use serde::Serialize;

/// The longest User-Agent we parse; longer strings are cut (at a char boundary) before parsing
/// and caching, so a hostile client cannot make the cache hold megabytes.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// How many distinct User-Agents the cache keeps before it starts over. Real traffic has a few
/// thousand distinct strings; a flood of random ones only costs re-parsing.
const CACHE_CAPACITY: usize = 16_384;

/// The kind of device a visitor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Desktop,
    Mobile,
    Tablet,
    /// Feature phones and other small mobile devices woothee calls "mobilephone".
    FeaturePhone,
    /// Game consoles, TVs and similar.
    Appliance,
    Crawler,
    #[default]
    Unknown,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Desktop => "desktop",
            DeviceKind::Mobile => "mobile",
            DeviceKind::Tablet => "tablet",
            DeviceKind::FeaturePhone => "feature_phone",
            DeviceKind::Appliance => "appliance",
            DeviceKind::Crawler => "crawler",
            DeviceKind::Unknown => "unknown",
        }
    }
}

/// What a User-Agent says about the client. Empty strings mean "unknown".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct ClientInfo {
    pub browser: Box<str>,
    pub browser_version: Box<str>,
    pub os: Box<str>,
    pub os_version: Box<str>,
    pub device: DeviceKind,
}

impl ClientInfo {
    /// Crawlers are counted in metrics but never listed as visitors.
    pub fn is_crawler(&self) -> bool {
        self.device == DeviceKind::Crawler
    }

    /// Parses a User-Agent without caching.
    pub fn parse(user_agent: &str) -> ClientInfo {
        let Some(parsed) = woothee::parser::Parser::new().parse(user_agent) else {
            return ClientInfo::default();
        };
        let known = |value: &str| -> Box<str> {
            if value == woothee::woothee::VALUE_UNKNOWN {
                "".into()
            } else {
                value.into()
            }
        };
        let device = match parsed.category {
            "pc" => DeviceKind::Desktop,
            "smartphone" if is_tablet(parsed.os, user_agent) => DeviceKind::Tablet,
            "smartphone" => DeviceKind::Mobile,
            "mobilephone" => DeviceKind::FeaturePhone,
            "appliance" => DeviceKind::Appliance,
            "crawler" => DeviceKind::Crawler,
            _ => DeviceKind::Unknown,
        };
        ClientInfo {
            browser: known(parsed.name),
            browser_version: known(parsed.version),
            os: known(parsed.os),
            os_version: known(&parsed.os_version),
            device,
        }
    }
}

/// woothee files tablets under "smartphone"; tell them apart the way browsers advertise it.
fn is_tablet(os: &str, user_agent: &str) -> bool {
    os == "iPad" || (user_agent.contains("Android") && !user_agent.contains("Mobile"))
}

#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    parsed: DashMap<Box<str>, Arc<ClientInfo>>,
}

impl ClientCache {
    pub(crate) fn get(&self, user_agent: &str) -> Arc<ClientInfo> {
        let user_agent = truncate(user_agent, MAX_USER_AGENT_LEN);
        if let Some(hit) = self.parsed.get(user_agent) {
            return Arc::clone(hit.value());
        }
        let info = Arc::new(ClientInfo::parse(user_agent));
        if self.parsed.len() >= CACHE_CAPACITY {
            self.parsed.clear();
        }
        self.parsed
            .entry(user_agent.into())
            .or_insert_with(|| Arc::clone(&info))
            .value()
            .clone()
    }
}

fn truncate(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
