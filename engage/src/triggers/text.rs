//! String matching for conditions: ASCII case-insensitive comparisons that never allocate, and
//! `*`/`?` wildcards.
//!
//! Patterns are lowercased (ASCII only) once, when a trigger is compiled; subjects (URLs, UTM
//! values, …) are compared as they are, byte by byte with ASCII case folding. Non-ASCII letters
//! compare exactly, as the contract says ("ASCII case-insensitive").

/// `text` with ASCII letters lowercased.
pub(crate) fn ascii_lower(text: &str) -> Box<str> {
    text.to_ascii_lowercase().into_boxed_str()
}

/// Whether `text` equals `lower` (an ASCII-lowercased pattern), ignoring ASCII case.
pub(crate) fn equals(text: &str, lower: &str) -> bool {
    text.eq_ignore_ascii_case(lower)
}

pub(crate) fn starts_with(text: &str, lower: &str) -> bool {
    text.len() >= lower.len()
        && text.as_bytes()[..lower.len()].eq_ignore_ascii_case(lower.as_bytes())
}

pub(crate) fn ends_with(text: &str, lower: &str) -> bool {
    text.len() >= lower.len()
        && text.as_bytes()[text.len() - lower.len()..].eq_ignore_ascii_case(lower.as_bytes())
}

/// Whether `text` contains `lower` ignoring ASCII case: candidate positions come from a
/// vectorised search for the first byte in either case, then the rest is compared.
pub(crate) fn contains(text: &str, lower: &str) -> bool {
    let needle = lower.as_bytes();
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let haystack = text.as_bytes();
    if haystack.len() < needle.len() {
        return false;
    }
    let last_start = haystack.len() - needle.len();
    let upper = first.to_ascii_uppercase();
    memchr::memchr2_iter(first, upper, &haystack[..=last_start])
        .any(|start| haystack[start + 1..start + needle.len()].eq_ignore_ascii_case(rest))
}

/// A whole-string wildcard pattern: `*` matches any run of characters (also none), `?` exactly
/// one character; everything else matches itself ignoring ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wildcard {
    lower: Box<str>,
}

impl Wildcard {
    pub(crate) fn new(pattern: &str) -> Wildcard {
        Wildcard {
            lower: ascii_lower(pattern),
        }
    }

    /// The classic linear-backtracking glob match: on a mismatch after a `*`, retry with that
    /// star swallowing one more character. At most O(pattern × text), never exponential.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let pattern = self.lower.as_bytes();
        let text = text.as_bytes();
        let (mut p, mut t) = (0, 0);
        // Where to resume after the last star: (pattern index after it, text index it took up to).
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some(b'*') => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                Some(b'?') => {
                    p += 1;
                    t += utf8_len(text[t]);
                    continue;
                }
                Some(&byte) if byte.eq_ignore_ascii_case(&text[t]) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((after, taken)) => {
                    let next = taken + utf8_len(text[taken]);
                    star = Some((after, next));
                    p = after;
                    t = next;
                }
                None => return false,
            }
        }
        pattern[p.min(pattern.len())..]
            .iter()
            .all(|&byte| byte == b'*')
    }
}

/// Length of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte, which
/// cannot occur in a `str` at a position we step to).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_ignore_ascii_case_only() {
        assert!(equals("https://Shop.example/", "https://shop.example/"));
        assert!(!equals("Å", "å"), "non-ASCII letters compare exactly");
        assert!(starts_with("HTTPS://x", "https:"));
        assert!(!starts_with("htt", "https"));
        assert!(ends_with("/Pricing", "pricing"));
        assert!(!ends_with("g", "pricing"));
        for (text, needle, expected) in [
            ("https://shop.example/PRICING?x", "/pricing", true),
            ("https://shop.example/pric", "/pricing", false),
            ("pppricing", "pricing", true),
            ("", "", true),
            ("abc", "", true),
            ("ab", "abc", false),
            ("xxAbCxx", "abc", true),
        ] {
            assert_eq!(contains(text, needle), expected, "{text} / {needle}");
        }
    }

    #[test]
    fn wildcards_match_the_whole_string() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
            ("https://*.example/*", "https://shop.example/pricing", true),
            ("https://*.example/*", "https://shop.example", false),
            ("*/pricing", "https://shop.example/PRICING", true),
            ("/p?ge", "/page", true),
            ("/p?ge", "/pge", false),
            ("/p?ge", "/päge", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a*a*a*a*a*b", &"a".repeat(200), false),
            ("**", "x", true),
            ("?", "é", true),
            ("x*", "yx", false),
        ] {
            assert_eq!(
                Wildcard::new(pattern).matches(text),
                expected,
                "{pattern} / {text}"
            );
        }
    }
}
