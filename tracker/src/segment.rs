//! Segments of the live list and their counts.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A filter of the live list. Every live visitor is in `All`; the others are flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    All,
    /// Activity within the active window (a Leave does not end it: `pagehide` also fires on
    /// ordinary navigation).
    Active,
    /// In a chat with an agent.
    OnChat,
    /// The identity has a name or an email.
    Customers,
    /// Sent an automatic message this visit.
    AutoMessaged,
    /// Blocked by an agent.
    Blocked,
}

impl Segment {
    pub const ALL: [Segment; 6] = [
        Segment::All,
        Segment::Active,
        Segment::OnChat,
        Segment::Customers,
        Segment::AutoMessaged,
        Segment::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Segment::All => "all",
            Segment::Active => "active",
            Segment::OnChat => "on_chat",
            Segment::Customers => "customers",
            Segment::AutoMessaged => "auto_messaged",
            Segment::Blocked => "blocked",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A segment name that is not one of [`Segment::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown segment {0:?}; expected one of all, active, on_chat, customers, auto_messaged, blocked"
)]
pub struct UnknownSegment(pub String);

impl FromStr for Segment {
    type Err = UnknownSegment;

    fn from_str(text: &str) -> Result<Segment, UnknownSegment> {
        Segment::ALL
            .into_iter()
            .find(|segment| segment.as_str() == text)
            .ok_or_else(|| UnknownSegment(text.to_owned()))
    }
}

/// The segments one visitor is in, as a bitset.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Segments(u8);

impl Segments {
    /// Only `All`: a visitor that is neither active nor flagged.
    pub const BASE: Segments = Segments(1);

    pub fn contains(self, segment: Segment) -> bool {
        self.0 & segment.bit() != 0
    }

    pub fn with(self, segment: Segment, on: bool) -> Segments {
        if on {
            Segments(self.0 | segment.bit())
        } else {
            Segments(self.0 & !segment.bit())
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Segment> {
        Segment::ALL
            .into_iter()
            .filter(move |segment| self.contains(*segment))
    }
}

impl fmt::Debug for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Segment::as_str))
            .finish()
    }
}

impl Serialize for Segments {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// How many live visitors of a site are in each segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SegmentCounts {
    pub all: u64,
    pub active: u64,
    pub on_chat: u64,
    pub customers: u64,
    pub auto_messaged: u64,
    pub blocked: u64,
}

impl SegmentCounts {
    pub fn get(&self, segment: Segment) -> u64 {
        match segment {
            Segment::All => self.all,
            Segment::Active => self.active,
            Segment::OnChat => self.on_chat,
            Segment::Customers => self.customers,
            Segment::AutoMessaged => self.auto_messaged,
            Segment::Blocked => self.blocked,
        }
    }

    /// Counts a visitor in; used to check the counters against a full scan.
    pub fn add(&mut self, segments: Segments) {
        for segment in segments.iter() {
            *self.slot(segment) += 1;
        }
    }

    fn slot(&mut self, segment: Segment) -> &mut u64 {
        match segment {
            Segment::All => &mut self.all,
            Segment::Active => &mut self.active,
            Segment::OnChat => &mut self.on_chat,
            Segment::Customers => &mut self.customers,
            Segment::AutoMessaged => &mut self.auto_messaged,
            Segment::Blocked => &mut self.blocked,
        }
    }
}

/// A site's live counters, one per segment.
///
/// Every change of a visitor's segments goes through [`SegmentCounters::transition`] while the
/// visitor's shard lock is held, so each counter always equals the number of visitors whose
/// stored segments contain it (a reader may see one counter updated before another, never a
/// lost update).
#[derive(Debug, Default)]
pub(crate) struct SegmentCounters([AtomicU64; 6]);

impl SegmentCounters {
    /// Records that a visitor moved from `before` to `after` (use `Segments::default()`, the
    /// empty set, for a visitor that appears or disappears).
    pub(crate) fn transition(&self, before: Segments, after: Segments) {
        let changed = before.0 ^ after.0;
        if changed == 0 {
            return;
        }
        for segment in Segment::ALL {
            if changed & segment.bit() == 0 {
                continue;
            }
            let counter = &self.0[segment as usize];
            if after.contains(segment) {
                counter.fetch_add(1, Ordering::Relaxed);
            } else {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn read(&self) -> SegmentCounts {
        let load = |segment: Segment| self.0[segment as usize].load(Ordering::Relaxed);
        SegmentCounts {
            all: load(Segment::All),
            active: load(Segment::Active),
            on_chat: load(Segment::OnChat),
            customers: load(Segment::Customers),
            auto_messaged: load(Segment::AutoMessaged),
            blocked: load(Segment::Blocked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for segment in Segment::ALL {
            assert_eq!(segment.as_str().parse::<Segment>(), Ok(segment));
            assert_eq!(
                serde_json::to_string(&segment).unwrap(),
                format!("\"{segment}\"")
            );
        }
        let error = "vip".parse::<Segment>().unwrap_err();
        assert!(error.to_string().contains("\"vip\""));
    }

    #[test]
    fn bitset_and_counters_follow_transitions() {
        let counters = SegmentCounters::default();
        let active = Segments::BASE.with(Segment::Active, true);
        counters.transition(Segments::default(), active);
        let flagged = active
            .with(Segment::Blocked, true)
            .with(Segment::Active, false);
        assert!(flagged.contains(Segment::Blocked) && !flagged.contains(Segment::Active));
        counters.transition(active, flagged);
        let mut expected = SegmentCounts::default();
        expected.add(flagged);
        assert_eq!(counters.read(), expected);
        assert_eq!(expected.get(Segment::Blocked), 1);
        assert_eq!(expected.get(Segment::Active), 0);
        counters.transition(flagged, Segments::default());
        assert_eq!(counters.read(), SegmentCounts::default());
        assert_eq!(
            serde_json::to_string(&flagged).unwrap(),
            r#"["all","blocked"]"#
        );
        assert_eq!(format!("{flagged:?}"), r#"{"all", "blocked"}"#);
    }
}
