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
        // For command-line tools and HTTP client libraries woothee reports the name "HTTP
        // Library" and puts the actual tool ("curl", "Java", ...) in the version; the tool is
        // what a person reading the dashboard wants to see.
        let (browser, browser_version) = if parsed.name == HTTP_LIBRARY {
            (known(parsed.version), Box::from(""))
        } else {
            (known(parsed.name), known(parsed.version))
        };
        ClientInfo {
            browser,
            browser_version,
            os: known(parsed.os),
            os_version: known(&parsed.os_version),
            device,
        }
    }
}

/// The name woothee gives every HTTP client library and command-line tool.
const HTTP_LIBRARY: &str = "HTTP Library";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(user_agent: &str, browser: &str, os: &str, device: DeviceKind) {
        let info = ClientInfo::parse(user_agent);
        assert_eq!(
            (&*info.browser, &*info.os, info.device),
            (browser, os, device),
            "{user_agent:?} parsed as {info:?}"
        );
        assert_eq!(info.is_crawler(), device == DeviceKind::Crawler);
    }

    #[test]
    fn real_user_agents() {
        use DeviceKind::*;
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome",
                "Windows 10",
                Desktop,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome",
                "Linux",
                Desktop,
            ),
            // What Chromium sends when the browser tests drive it headless; it must count as
            // Chrome on Linux like its headed self.
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
                "Chrome",
                "Linux",
                Desktop,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Safari",
                "iPhone",
                Mobile,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Safari",
                "iPad",
                Tablet,
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome",
                "Android",
                Tablet,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
                "Chrome",
                "Android",
                Mobile,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Firefox",
                "Mac OSX",
                Desktop,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                "Safari",
                "Mac OSX",
                Desktop,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
                "Edge",
                "Windows 10",
                Desktop,
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Googlebot",
                "",
                Crawler,
            ),
            (
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/124.0.6367.155 Safari/537.36",
                "Googlebot",
                "",
                Crawler,
            ),
            (
                "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
                "bingbot",
                "",
                Crawler,
            ),
            ("curl/8.5.0", "curl", "", Unknown),
            ("", "", "", Unknown),
            ("definitely not a browser", "", "", Unknown),
        ];
        for (user_agent, browser, os, device) in cases {
            check(user_agent, browser, os, device);
        }
    }

    #[test]
    fn versions_are_reported() {
        let info = ClientInfo::parse(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
        );
        assert_eq!(&*info.browser_version, "124.0.6367.82");
        assert_eq!(&*info.os_version, "14");
        let curl = ClientInfo::parse("curl/8.5.0");
        assert_eq!(&*curl.browser_version, "");
        assert_eq!(ClientInfo::parse(""), ClientInfo::default());
    }

    #[test]
    fn the_cache_returns_the_same_result_for_the_same_user_agent() {
        let cache = ClientCache::default();
        let firefox =
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
        let first = cache.get(firefox);
        // A separate allocation with the same text finds the same entry.
        let copy = firefox.to_owned();
        let second = cache.get(&copy);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(*first, ClientInfo::parse(firefox));
        let other = cache.get("curl/8.5.0");
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn long_user_agents_are_cut_before_parsing_and_caching() {
        let cache = ClientCache::default();
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 ";
        let long = |tail: char| {
            let mut text = chrome.repeat(5 * 1024 / chrome.len() + 1);
            text.push(tail);
            text
        };
        let (first, second) = (long('a'), long('b'));
        assert!(first.len() > 5 * 1024);
        let info = cache.get(&first);
        assert_eq!(&*info.browser, "Chrome");
        // Strings that differ only after the cut share one entry.
        assert!(Arc::ptr_eq(&info, &cache.get(&second)));
        assert_eq!(cache.parsed.len(), 1);
        assert!(
            cache
                .parsed
                .iter()
                .all(|entry| entry.key().len() <= MAX_USER_AGENT_LEN)
        );

        // The cut lands on a character boundary even inside multi-byte characters.
        let wide = "ü".repeat(3_000);
        assert_eq!(*cache.get(&wide), ClientInfo::default());
        let cut = truncate(&wide, MAX_USER_AGENT_LEN);
        assert!(cut.len() <= MAX_USER_AGENT_LEN && cut.len() > MAX_USER_AGENT_LEN - 4);
        assert_eq!(truncate("short", MAX_USER_AGENT_LEN), "short");
    }

    #[test]
    fn device_kinds_have_stable_names() {
        let names: Vec<_> = [
            DeviceKind::Desktop,
            DeviceKind::Mobile,
            DeviceKind::Tablet,
            DeviceKind::FeaturePhone,
            DeviceKind::Appliance,
            DeviceKind::Crawler,
            DeviceKind::Unknown,
        ]
        .into_iter()
        .map(DeviceKind::as_str)
        .collect();
        assert_eq!(
            names,
            [
                "desktop",
                "mobile",
                "tablet",
                "feature_phone",
                "appliance",
                "crawler",
                "unknown"
            ]
        );
    }
}
