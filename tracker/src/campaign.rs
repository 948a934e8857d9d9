//! Campaign attribution: UTM parameters and ad-click ids from a page URL's query string.

use std::sync::Arc;

use serde::Serialize;

use crate::text::{MAX_CAMPAIGN_VALUE_LEN, MAX_OTHER_CAMPAIGN_TAGS, truncate};

/// Query parameters kept besides the five UTM fields (any other `utm_*` is kept too): click ids
/// of the big ad networks, Mailchimp's campaign and member ids, and the common `ref`.
const OTHER_TAGS: &[&str] = &[
    "gclid", "fbclid", "msclkid", "dclid", "ttclid", "yclid", "mc_cid", "mc_eid", "ref",
];

/// Where a visit came from, as the landing page's query string tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Campaign {
    /// `utm_source`
    pub source: Option<Arc<str>>,
    /// `utm_medium`
    pub medium: Option<Arc<str>>,
    /// `utm_campaign`
    pub name: Option<Arc<str>>,
    /// `utm_term`
    pub term: Option<Arc<str>>,
    /// `utm_content`
    pub content: Option<Arc<str>>,
    /// Other tags (click ids, `ref`, other `utm_*`) as (lowercase key, value), in URL order.
    pub other: Vec<(Arc<str>, Arc<str>)>,
}

impl Campaign {
    /// Every campaign tag in `url`'s query string. Percent-escapes and `+` are decoded; the
    /// first occurrence of a key wins; empty values are skipped; values are bounded.
    pub fn from_url(url: &str) -> Campaign {
        let mut campaign = Campaign::default();
        let Some(query) = query_of(url) else {
            return campaign;
        };
        for pair in query.split(['&', ';']) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key).to_ascii_lowercase();
            let value = decode(raw_value);
            let value = truncate(value.trim(), MAX_CAMPAIGN_VALUE_LEN);
            if value.is_empty() {
                continue;
            }
            let slot = match key.as_str() {
                "utm_source" => &mut campaign.source,
                "utm_medium" => &mut campaign.medium,
                "utm_campaign" => &mut campaign.name,
                "utm_term" => &mut campaign.term,
                "utm_content" => &mut campaign.content,
                other if other.starts_with("utm_") || OTHER_TAGS.contains(&other) => {
                    let seen = campaign
                        .other
                        .iter()
                        .any(|(existing, _)| **existing == *other);
                    if !seen && campaign.other.len() < MAX_OTHER_CAMPAIGN_TAGS {
                        campaign.other.push((other.into(), value.into()));
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into());
            }
        }
        campaign
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.name.is_none()
            && self.term.is_none()
            && self.content.is_none()
            && self.other.is_empty()
    }

    /// Whether any `utm_*` parameter is present. A later page of a visit without a campaign
    /// sets one only then: a bare `ref` or click id on an internal link is not attribution.
    pub fn has_utm(&self) -> bool {
        self.source.is_some()
            || self.medium.is_some()
            || self.name.is_some()
            || self.term.is_some()
            || self.content.is_some()
            || self.other.iter().any(|(key, _)| key.starts_with("utm_"))
    }
}

/// A cheap pre-check so that most page views skip parsing entirely.
pub(crate) fn may_have_utm(url: &str) -> bool {
    url.contains('?')
        && url
            .as_bytes()
            .windows(4)
            .any(|window| window.eq_ignore_ascii_case(b"utm_"))
}

/// The query string of a URL: after the first `?`, before the fragment.
fn query_of(url: &str) -> Option<&str> {
    let before_fragment = url.split('#').next().unwrap_or("");
    let (_, query) = before_fragment.split_once('?')?;
    Some(query)
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte; malformed
/// escapes are kept literally and invalid UTF-8 is replaced.
fn decode(text: &str) -> String {
    if !text.contains(['%', '+']) {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let escaped = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match escaped {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    None => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` lists (field, value) with fields `source`, `medium`, `name`, `term`,
    /// `content`, or the key of an other tag.
    #[track_caller]
    fn check(url: &str, expected: &[(&str, &str)]) {
        let campaign = Campaign::from_url(url);
        let mut actual: Vec<(String, String)> = Vec::new();
        for (field, value) in [
            ("source", &campaign.source),
            ("medium", &campaign.medium),
            ("name", &campaign.name),
            ("term", &campaign.term),
            ("content", &campaign.content),
        ] {
            if let Some(value) = value {
                actual.push((field.to_owned(), value.to_string()));
            }
        }
        for (key, value) in &campaign.other {
            actual.push((key.to_string(), value.to_string()));
        }
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
            .collect();
        assert_eq!(actual, expected, "campaign of {url}");
        assert_eq!(campaign.is_empty(), expected.is_empty());
    }

    #[test]
    fn parses_campaign_tags_from_urls() {
        check("https://shop.example/", &[]);
        check("https://shop.example/?q=shoes&page=2", &[]);
        check(
            "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=spring+sale&utm_term=red%20shoes&utm_content=ad-1",
            &[
                ("source", "google"),
                ("medium", "cpc"),
                ("name", "spring sale"),
                ("term", "red shoes"),
                ("content", "ad-1"),
            ],
        );
        check(
            "https://shop.example/p?gclid=abc123&fbclid=fb1&utm_id=42&ref=newsletter#top",
            &[
                ("gclid", "abc123"),
                ("fbclid", "fb1"),
                ("utm_id", "42"),
                ("ref", "newsletter"),
            ],
        );
        check(
            "https://shop.example/?msclkid=m&dclid=d&ttclid=t&yclid=y&mc_cid=c&mc_eid=e",
            &[
                ("msclkid", "m"),
                ("dclid", "d"),
                ("ttclid", "t"),
                ("yclid", "y"),
                ("mc_cid", "c"),
                ("mc_eid", "e"),
            ],
        );
        // Keys ignore case, the first occurrence wins, empty values are skipped.
        check(
            "https://shop.example/?UTM_Source=News&utm_source=other&utm_medium=&utm_medium=email",
            &[("source", "News"), ("medium", "email")],
        );
        // The fragment is not part of the query.
        check("https://shop.example/#?utm_source=nope", &[]);
        check("https://shop.example/?a=1#x?utm_source=nope", &[]);
        // Malformed escapes stay literal; invalid UTF-8 is replaced; UTF-8 escapes decode.
        check(
            "https://shop.example/?utm_source=100%&utm_term=%zz",
            &[("source", "100%"), ("term", "%zz")],
        );
        check(
            "https://shop.example/?utm_source=%C3%A5%FF",
            &[("source", "å\u{FFFD}")],
        );
        // `;` separates pairs too, and a key without `=` is skipped.
        check(
            "https://shop.example/?utm_source;utm_medium=social",
            &[("medium", "social")],
        );
    }

    #[test]
    fn values_and_other_tags_are_bounded() {
        let long = format!("https://shop.example/?utm_source={}", "s".repeat(1000));
        assert_eq!(
            Campaign::from_url(&long).source.as_deref().map(str::len),
            Some(MAX_CAMPAIGN_VALUE_LEN)
        );
        let many: String = (0..40).map(|i| format!("utm_x{i}=v&")).collect();
        let campaign = Campaign::from_url(&format!("https://shop.example/?{many}"));
        assert_eq!(campaign.other.len(), MAX_OTHER_CAMPAIGN_TAGS);
    }

    #[test]
    fn only_utm_tags_count_as_utm() {
        assert!(Campaign::from_url("https://s.example/?utm_medium=x").has_utm());
        assert!(Campaign::from_url("https://s.example/?utm_id=x").has_utm());
        assert!(!Campaign::from_url("https://s.example/?ref=nav").has_utm());
        assert!(may_have_utm("https://s.example/?UTM_source=x"));
        assert!(!may_have_utm("https://s.example/utm_/page"));
    }
}
