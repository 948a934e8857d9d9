//! Bounds for visitor-supplied text, and the case-insensitive matching used by search.
//!
//! Everything a beacon carries comes from a browser we do not control. The HTTP layer validates
//! lengths too, but the tracker keeps its own bounds so that memory per visitor stays bounded
//! whoever calls it.

/// Longest page URL, landing URL or referrer kept, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest page title kept, in bytes.
pub const MAX_TITLE_LEN: usize = 512;
/// Longest identity name, email or phone kept, in bytes.
pub const MAX_IDENTITY_FIELD_LEN: usize = 256;
/// Longest custom property key kept, in bytes.
pub const MAX_PROP_KEY_LEN: usize = 64;
/// Longest custom property string value kept, in bytes.
pub const MAX_PROP_VALUE_LEN: usize = 512;
/// Most custom properties kept on an identity or an event.
pub const MAX_PROPS: usize = 50;
/// Longest custom event name kept, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 64;
/// Longest language tag kept, in bytes (BCP 47 tags in practice stay under 35).
pub const MAX_LANGUAGE_LEN: usize = 35;
/// Longest site key or visitor id accepted; longer ones are ignored rather than cut, because
/// cutting could merge two different visitors.
pub const MAX_ID_LEN: usize = 128;
/// Longest campaign tag value kept, in bytes.
pub const MAX_CAMPAIGN_VALUE_LEN: usize = 256;
/// Most campaign tags other than the five UTM fields kept for one visit.
pub const MAX_OTHER_CAMPAIGN_TAGS: usize = 16;

/// Cuts `text` to at most `max_len` bytes, at a char boundary.
pub fn truncate(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Cuts an owned string in place to at most `max_len` bytes, at a char boundary.
pub fn truncate_owned(text: &mut String, max_len: usize) {
    let len = truncate(text, max_len).len();
    text.truncate(len);
}

/// Trims, bounds and drops empty values of an optional identity field.
pub fn clean_field(value: Option<String>, max_len: usize) -> Option<String> {
    let mut value = value?;
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        value = trimmed.to_owned();
    }
    truncate_owned(&mut value, max_len);
    (!value.is_empty()).then_some(value)
}

/// Whether `haystack` contains `needle_lower` ignoring case. `needle_lower` must already be
/// lowercase (see [`lowercase_needle`]). ASCII text, the usual case for URLs, emails and IPs,
/// is compared without allocating.
pub fn contains_ignore_case(haystack: &str, needle_lower: &str) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let needle = needle_lower.as_bytes();
        return haystack
            .as_bytes()
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle));
    }
    haystack.to_lowercase().contains(needle_lower)
}

/// The form of a search text that [`contains_ignore_case`] expects.
pub fn lowercase_needle(search: &str) -> String {
    search.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_truncate(text: &str, max_len: usize, expected: &str) {
        assert_eq!(truncate(text, max_len), expected);
        let mut owned = text.to_owned();
        truncate_owned(&mut owned, max_len);
        assert_eq!(owned, expected);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        check_truncate("hello", 10, "hello");
        check_truncate("hello", 5, "hello");
        check_truncate("hello", 3, "hel");
        check_truncate("héllo", 2, "h");
        check_truncate("héllo", 3, "hé");
        check_truncate("日本語", 4, "日");
        check_truncate("", 0, "");
    }

    #[test]
    fn identity_fields_are_trimmed_bounded_and_never_empty() {
        assert_eq!(clean_field(None, 10), None);
        assert_eq!(clean_field(Some("   ".into()), 10), None);
        assert_eq!(clean_field(Some(" Ann ".into()), 10), Some("Ann".into()));
        assert_eq!(clean_field(Some("abcdefgh".into()), 4), Some("abcd".into()));
    }

    #[track_caller]
    fn check_contains(haystack: &str, search: &str, expected: bool) {
        assert_eq!(
            contains_ignore_case(haystack, &lowercase_needle(search)),
            expected
        );
    }

    #[test]
    fn search_ignores_case() {
        check_contains("https://Shop.example/Cart", "shop.EXAMPLE", true);
        check_contains("ann@example.com", "ANN@", true);
        check_contains("ann@example.com", "bob", false);
        check_contains("Linköping", "LINKÖ", true);
        check_contains("ÅSA", "åsa", true);
        check_contains("short", "much longer needle", false);
        check_contains("anything", "", true);
    }
}
