//! Porchlight's presence tracker: who is on each site right now.
//!
//! Every beacon from the widget is applied to an in-memory [`Presence`]: the visitor's current
//! page, the visit's history, campaign, identity and custom events, and the segments agents
//! filter by (All, Active, OnChat, Customers, AutoMessaged, Blocked), each counted per site so
//! that counts are read in O(1) and stay exact under concurrent ingestion. Agents' panels list
//! visitors ([`Presence::list`], [`Presence::snapshot`]) and follow a coalesced change feed
//! ([`Presence::drain_changes`]); a periodic [`Presence::sweep`] demotes idle visitors and
//! forgets those gone for the retention period. Code that tests many things about a visitor on
//! every beacon (the trigger engine) borrows a [`VisitorView`] instead of copying a snapshot
//! ([`Presence::with_visitor`], [`Presence::for_each_visitor`]).
//!
//! Only live state is kept here. What must survive a visitor leaving memory (its number, visit
//! count, first visit and identity) is the caller's [`KnownProfile`]: [`Presence::observe`]
//! answers [`Observation::NeedsProfile`] for a visitor it does not hold, the caller loads the
//! profile and calls [`Presence::start_visit`], and every `Recorded { persist: Some(..) }` is a
//! profile to write behind.
//!
//! Memory per visitor is a design goal (under 400 bytes at a million live visitors with
//! ten-page histories): the record is a boxed, 152-byte struct with the widget's id inline,
//! shared text is interned behind 4-byte reference-counted ids (purged by the sweep once
//! unused), a history entry is 8 bytes, and location and client details are shared `Arc`s
//! (see the `visitor` and `intern` modules).
//! Visitor-supplied text is bounded on the way in (see [`text`]); nothing here trusts the HTTP
//! layer's validation.

mod beacon;
mod campaign;
mod clock;
mod config;
mod intern;
mod list;
mod presence;
mod segment;
mod site;
mod snapshot;
pub mod text;
mod view;
mod visitor;

pub use beacon::{Beacon, BeaconKind, CustomEvent, Identity, KnownProfile, Observation, PropValue};
pub use campaign::Campaign;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, MAX_LIMIT, PresenceConfig};
pub use list::{Cursor, CursorError, DEFAULT_LIST_LIMIT, ListPage, ListQuery, MAX_LIST_LIMIT};
pub use presence::{Changes, Presence, SweepReport};
pub use segment::{Segment, SegmentCounts, Segments, UnknownSegment};
pub use snapshot::{EventRecord, PageVisit, VisitorSnapshot};
pub use view::VisitorView;
