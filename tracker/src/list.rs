//! Listing queries: segment filter, search, newest activity first, keyset pagination.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::segment::Segment;
use crate::snapshot::VisitorSnapshot;
use crate::text::MAX_ID_LEN;

/// Page size used when a query asks for 0 visitors.
pub const DEFAULT_LIST_LIMIT: usize = 50;
/// Largest page a query can ask for.
pub const MAX_LIST_LIMIT: usize = 1_000;

/// What to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub segment: Segment,
    /// Case-insensitive substring of the name, email, IP, city or current URL.
    pub search: Option<String>,
    /// Continue after this position (from a previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// Page size; 0 means [`DEFAULT_LIST_LIMIT`], larger than [`MAX_LIST_LIMIT`] is capped.
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            segment: Segment::All,
            search: None,
            cursor: None,
            limit: DEFAULT_LIST_LIMIT,
        }
    }
}

impl ListQuery {
    pub(crate) fn effective_limit(&self) -> usize {
        match self.limit {
            0 => DEFAULT_LIST_LIMIT,
            limit => limit.min(MAX_LIST_LIMIT),
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct ListPage {
    pub visitors: Vec<VisitorSnapshot>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
    /// Visitors matching the segment and search, on every page.
    pub total_matching: usize,
}

/// The position of a visitor in the listing order: newest activity first, then higher number
/// first, then id (so that the order is total even when numbers repeat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SortKey {
    pub last_activity_ms: i64,
    pub number: u32,
    pub id: Box<str>,
}

impl SortKey {
    /// Compares borrowed parts against this key in listing order (`Less` = listed earlier).
    pub(crate) fn order_of(
        last_activity_ms: i64,
        number: u32,
        id: &str,
        other: &SortKey,
    ) -> Ordering {
        other
            .last_activity_ms
            .cmp(&last_activity_ms)
            .then(other.number.cmp(&number))
            .then_with(|| (*other.id).cmp(id))
    }
}

impl Ord for SortKey {
    /// Listing order: the first visitor listed is the least.
    fn cmp(&self, other: &SortKey) -> Ordering {
        SortKey::order_of(self.last_activity_ms, self.number, &self.id, other)
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &SortKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An opaque position in a listing: the sort key of the last visitor of a page. Pages after it
/// hold only visitors listed after it, so visitors arriving between pages (who are newer) never
/// shift later pages. A visitor whose activity moves it ahead of the cursor between pages is
/// not listed again on later pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub(crate) SortKey);

/// A cursor string that no listing produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed listing cursor")]
pub struct CursorError;

/// Hex digits for the time (as the bits of an i64) and the number; the id follows hex-encoded.
const TIME_DIGITS: usize = 16;
const NUMBER_DIGITS: usize = 8;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}{:08x}",
            self.0.last_activity_ms as u64, self.0.number
        )?;
        for byte in self.0.id.bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(text: &str) -> Result<Cursor, CursorError> {
        let header = TIME_DIGITS + NUMBER_DIGITS;
        if !text.is_ascii()
            || text.len() < header + 2
            || text.len() > header + 2 * MAX_ID_LEN
            || !text.len().is_multiple_of(2)
        {
            return Err(CursorError);
        }
        let time = u64::from_str_radix(&text[..TIME_DIGITS], 16).map_err(|_| CursorError)?;
        let number =
            u32::from_str_radix(&text[TIME_DIGITS..header], 16).map_err(|_| CursorError)?;
        let id_bytes = text.as_bytes()[header..]
            .chunks(2)
            .map(|pair| {
                let pair = std::str::from_utf8(pair).map_err(|_| CursorError)?;
                u8::from_str_radix(pair, 16).map_err(|_| CursorError)
            })
            .collect::<Result<Vec<u8>, CursorError>>()?;
        let id = String::from_utf8(id_bytes).map_err(|_| CursorError)?;
        Ok(Cursor(SortKey {
            last_activity_ms: time as i64,
            number,
            id: id.into_boxed_str(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last_activity_ms: i64, number: u32, id: &str) -> SortKey {
        SortKey {
            last_activity_ms,
            number,
            id: id.into(),
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for key in [
            key(1_700_000_000_123, 42, "visitor-abc_1"),
            key(-5, u32::MAX, "é"),
        ] {
            let cursor = Cursor(key);
            let text = cursor.to_string();
            assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
            assert_eq!(text.parse::<Cursor>(), Ok(cursor));
        }
        for garbage in [
            "",
            "abc",
            "zz00000000000000000000000061",
            "000000000000000000000000ff",
            "0000000000000000000000006",
        ] {
            assert_eq!(garbage.parse::<Cursor>(), Err(CursorError), "{garbage:?}");
        }
        assert_eq!(CursorError.to_string(), "malformed listing cursor");
    }

    #[test]
    fn listing_order_is_newest_then_highest_number_then_id() {
        let mut keys = [
            key(10, 1, "a"),
            key(20, 1, "b"),
            key(20, 5, "c"),
            key(20, 5, "d"),
            key(5, 9, "e"),
        ];
        keys.sort();
        let ids: Vec<&str> = keys.iter().map(|key| &*key.id).collect();
        assert_eq!(ids, ["d", "c", "b", "a", "e"]);
    }

    #[test]
    fn limits_default_and_cap() {
        let query = |limit| ListQuery {
            limit,
            ..ListQuery::default()
        };
        assert_eq!(query(0).effective_limit(), DEFAULT_LIST_LIMIT);
        assert_eq!(query(7).effective_limit(), 7);
        assert_eq!(query(1_000_000).effective_limit(), MAX_LIST_LIMIT);
    }
}
