//! Conditions: the field catalogue, validation with JSON-path errors, the compiled form, and
//! evaluation against a live visitor ([`tracker::VisitorView`]).
//!
//! # Time
//!
//! Most conditions are true or false at the moment of evaluation. `time_on_page` and
//! `time_on_site` also grow on their own, so an evaluation answers a [`Truth`]: true now, true
//! from a given instant if nothing else changes (the engine then schedules one wake-up), or
//! not without a change of the visitor. Both count whole seconds elapsed, so "time on page ≥ 3"
//! holds from exactly three seconds after the page was opened.
//!
//! # Missing values
//!
//! A visitor without the field (no referrer, no `utm_source`, an unknown city) fails every
//! positive string test and `exists`, and passes the negated ones (`not_equals`,
//! `not_contains`, `not_in`, `not_exists`): "utm_source is not ads" holds for a visitor with no
//! campaign. Empty strings count as missing.

use std::cell::OnceCell;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;
use regex::{Regex, RegexBuilder};
use serde::Serialize;
use serde_json::Value;
use tracker::{PropValue, VisitorView};

use super::error::TriggerError;
use super::model::{Condition, ConditionNode, PropertyTest, clip};
use super::text::{self, Wildcard, ascii_lower};

/// Deepest nesting of groups (the root group counts as one).
pub const MAX_DEPTH: usize = 5;
/// Most conditions (leaves) in one trigger.
pub const MAX_CONDITIONS: usize = 50;
/// Most values of an `in` / `not_in` list.
pub const MAX_IN_VALUES: usize = 100;
/// Longest string value of a condition, in characters.
pub const MAX_VALUE_CHARS: usize = 500;
/// Longest `name` (tag, property or event name), in characters.
pub const MAX_FIELD_NAME_CHARS: usize = 64;
/// Compiled size limit of one regex; a larger one is rejected when the trigger is saved.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Largest absolute number a number condition takes (about 31 000 years in seconds).
const MAX_NUMBER: f64 = 1e12;

/// The kind of value a field holds, which decides its operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Number,
    Boolean,
    Time,
    Day,
    Event,
    /// A custom property: string or number operators, chosen by the operator.
    Property,
}

const STRING_OPS: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "wildcard",
    "regex",
    "in",
    "not_in",
    "exists",
    "not_exists",
];
const NUMBER_OPS: &[&str] = &["eq", "ne", "gt", "gte", "lt", "lte", "between"];
const BOOLEAN_OPS: &[&str] = &["is"];
const TIME_OPS: &[&str] = &["between", "before", "after"];
const DAY_OPS: &[&str] = &["in"];
const EVENT_OPS: &[&str] = &["seen", "not_seen"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Device kinds as the tracker reports them (`geoip::DeviceKind::as_str`).
const DEVICES: &[&str] = &[
    "desktop",
    "mobile",
    "tablet",
    "feature_phone",
    "appliance",
    "crawler",
    "unknown",
];

impl FieldType {
    /// The operators of this type, in the order the condition builder lists them.
    pub fn ops(self) -> Vec<&'static str> {
        match self {
            FieldType::String => STRING_OPS.to_vec(),
            FieldType::Number => NUMBER_OPS.to_vec(),
            FieldType::Boolean => BOOLEAN_OPS.to_vec(),
            FieldType::Time => TIME_OPS.to_vec(),
            FieldType::Day => DAY_OPS.to_vec(),
            FieldType::Event => EVENT_OPS.to_vec(),
            FieldType::Property => [STRING_OPS, NUMBER_OPS].concat(),
        }
    }
}

/// One entry of the field catalogue ([`super::Triggers::fields`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldInfo {
    pub field: &'static str,
    pub label: &'static str,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub ops: Vec<&'static str>,
    /// Whether a condition on this field needs `name` (tag, property or event name).
    pub needs_name: bool,
}

/// What a field name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Text(TextField),
    VisitedUrl,
    TimeOnPage,
    TimeOnSite,
    PagesInVisit,
    Visits,
    Customer,
    Property,
    Event,
    TimeOfDay,
    DayOfWeek,
    BusinessHours,
    AgentsOnline,
}

/// A visitor field holding text (one value per visitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TextField {
    Url,
    Title,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    CampaignTag,
    Country,
    CountryName,
    City,
    Browser,
    Os,
    Device,
    Language,
}

struct FieldDef {
    name: &'static str,
    label: &'static str,
    field_type: FieldType,
    needs_name: bool,
    kind: FieldKind,
}

const fn def(
    name: &'static str,
    label: &'static str,
    field_type: FieldType,
    kind: FieldKind,
) -> FieldDef {
    FieldDef {
        name,
        label,
        field_type,
        needs_name: false,
        kind,
    }
}

const fn named(
    name: &'static str,
    label: &'static str,
    field_type: FieldType,
    kind: FieldKind,
) -> FieldDef {
    FieldDef {
        name,
        label,
        field_type,
        needs_name: true,
        kind,
    }
}

use FieldKind as K;
use FieldType as T;
use TextField as F;

const FIELDS: &[FieldDef] = &[
    def("url", "Current URL", T::String, K::Text(F::Url)),
    def("title", "Page title", T::String, K::Text(F::Title)),
    def(
        "visited_url",
        "URL visited earlier in the visit",
        T::String,
        K::VisitedUrl,
    ),
    def(
        "time_on_page",
        "Time on page (seconds)",
        T::Number,
        K::TimeOnPage,
    ),
    def(
        "time_on_site",
        "Time on site this visit (seconds)",
        T::Number,
        K::TimeOnSite,
    ),
    def(
        "pages_in_visit",
        "Pages viewed this visit",
        T::Number,
        K::PagesInVisit,
    ),
    def("visits", "Number of visits", T::Number, K::Visits),
    def("referrer", "Referrer", T::String, K::Text(F::Referrer)),
    def("utm_source", "UTM source", T::String, K::Text(F::UtmSource)),
    def("utm_medium", "UTM medium", T::String, K::Text(F::UtmMedium)),
    def(
        "utm_campaign",
        "UTM campaign",
        T::String,
        K::Text(F::UtmCampaign),
    ),
    def("utm_term", "UTM term", T::String, K::Text(F::UtmTerm)),
    def(
        "utm_content",
        "UTM content",
        T::String,
        K::Text(F::UtmContent),
    ),
    named(
        "campaign_tag",
        "Other campaign tag (gclid, ref, …)",
        T::String,
        K::Text(F::CampaignTag),
    ),
    def(
        "country",
        "Country (ISO code)",
        T::String,
        K::Text(F::Country),
    ),
    def(
        "country_name",
        "Country name",
        T::String,
        K::Text(F::CountryName),
    ),
    def("city", "City", T::String, K::Text(F::City)),
    def("browser", "Browser", T::String, K::Text(F::Browser)),
    def("os", "Operating system", T::String, K::Text(F::Os)),
    def("device", "Device type", T::String, K::Text(F::Device)),
    def("language", "Language", T::String, K::Text(F::Language)),
    def(
        "customer",
        "Customer (has a name or email)",
        T::Boolean,
        K::Customer,
    ),
    named("property", "Custom property", T::Property, K::Property),
    named("event", "Custom event this visit", T::Event, K::Event),
    def(
        "time_of_day",
        "Time of day (site time zone)",
        T::Time,
        K::TimeOfDay,
    ),
    def(
        "day_of_week",
        "Day of week (site time zone)",
        T::Day,
        K::DayOfWeek,
    ),
    def(
        "business_hours",
        "Within business hours",
        T::Boolean,
        K::BusinessHours,
    ),
    def(
        "agents_online",
        "An agent is online",
        T::Boolean,
        K::AgentsOnline,
    ),
];

/// The field catalogue for the condition builder.
pub fn catalogue() -> Vec<FieldInfo> {
    FIELDS
        .iter()
        .map(|field| FieldInfo {
            field: field.name,
            label: field.label,
            field_type: field.field_type,
            ops: field.field_type.ops(),
            needs_name: field.needs_name,
        })
        .collect()
}

/// Whether a condition holds, as of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    Now,
    /// Not now, but from this instant (ms, the tracker's clock) if nothing else changes.
    At(i64),
    /// Not now, and not later unless the visitor changes.
    Never,
}

impl Truth {
    fn from_bool(holds: bool) -> Truth {
        if holds { Truth::Now } else { Truth::Never }
    }

    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::Never, _) | (_, Truth::Never) => Truth::Never,
            (Truth::Now, other) | (other, Truth::Now) => other,
            (Truth::At(a), Truth::At(b)) => Truth::At(a.max(b)),
        }
    }

    fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::Now, _) | (_, Truth::Now) => Truth::Now,
            (Truth::Never, other) | (other, Truth::Never) => other,
            (Truth::At(a), Truth::At(b)) => Truth::At(a.min(b)),
        }
    }
}

/// A string test; `matcher: None` is `exists`.
#[derive(Debug, Clone)]
pub(crate) struct StrTest {
    matcher: Option<StrMatch>,
    negate: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum StrMatch {
    Equals(Box<str>),
    Contains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    // The rare, large ones boxed: every compiled condition is as big as the largest.
    Wildcard(Box<Wildcard>),
    Regex(Box<Regex>),
    In(Box<[Box<str>]>),
}

impl StrMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Equals(lower) => text::equals(value, lower),
            StrMatch::Contains(lower) => text::contains(value, lower),
            StrMatch::StartsWith(lower) => text::starts_with(value, lower),
            StrMatch::EndsWith(lower) => text::ends_with(value, lower),
            StrMatch::Wildcard(pattern) => pattern.matches(value),
            StrMatch::Regex(regex) => regex.is_match(value),
            StrMatch::In(values) => values.iter().any(|lower| text::equals(value, lower)),
        }
    }
}

impl StrTest {
    /// The test on a value that may be missing (`None` or empty).
    pub(crate) fn check(&self, value: Option<&str>) -> bool {
        match value.filter(|value| !value.is_empty()) {
            None => self.negate,
            Some(value) => match &self.matcher {
                None => !self.negate,
                Some(matcher) => matcher.matches(value) != self.negate,
            },
        }
    }

    /// The positive form of a negated test (`not_contains` → `contains`), for `visited_url`.
    fn positive(&self) -> StrTest {
        StrTest {
            matcher: self.matcher.clone(),
            negate: false,
        }
    }

    /// The literal of an `equals` / `contains` / `starts_with` test, for the URL index.
    pub(crate) fn url_literal(&self) -> Option<(UrlLiteral, &str)> {
        if self.negate {
            return None;
        }
        match self.matcher.as_ref()? {
            StrMatch::Equals(lower) => Some((UrlLiteral::Equals, lower)),
            StrMatch::Contains(lower) => Some((UrlLiteral::Contains, lower)),
            StrMatch::StartsWith(lower) => Some((UrlLiteral::StartsWith, lower)),
            _ => None,
        }
    }

    /// The values an `equals` / `in` test accepts (lowercase), for the equality index.
    pub(crate) fn equal_values(&self) -> Option<Vec<&str>> {
        if self.negate {
            return None;
        }
        match self.matcher.as_ref()? {
            StrMatch::Equals(lower) => Some(vec![lower]),
            StrMatch::In(values) => Some(values.iter().map(|value| &**value).collect()),
            _ => None,
        }
    }
}

/// How a URL literal must sit in the URL for its test to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlLiteral {
    Equals,
    Contains,
    StartsWith,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NumTest {
    Eq(f64),
    Ne(f64),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Between(f64, f64),
}

impl NumTest {
    /// The first whole second from which this test on a growing number of seconds can hold
    /// (0 if it may hold from the start).
    pub(crate) fn first_second(self) -> u32 {
        let low = match self {
            NumTest::Gte(v) => v.ceil(),
            NumTest::Gt(v) => v.floor() + 1.0,
            NumTest::Eq(v) if v.fract() == 0.0 => v,
            NumTest::Between(lo, _) => lo.ceil(),
            NumTest::Eq(_) | NumTest::Lt(_) | NumTest::Lte(_) | NumTest::Ne(_) => 0.0,
        };
        // Validated numbers are within ±MAX_NUMBER: the cast saturates at the ends.
        low.max(0.0) as u32
    }

    fn check(self, x: f64) -> bool {
        match self {
            NumTest::Eq(v) => x == v,
            NumTest::Ne(v) => x != v,
            NumTest::Gt(v) => x > v,
            NumTest::Gte(v) => x >= v,
            NumTest::Lt(v) => x < v,
            NumTest::Lte(v) => x <= v,
            NumTest::Between(lo, hi) => lo <= x && x <= hi,
        }
    }

    /// The test on whole seconds elapsed since `start_ms`, which grow with time.
    fn elapsed(self, start_ms: i64, now_ms: i64) -> Truth {
        let seconds = (now_ms.saturating_sub(start_ms)).max(0) / 1000;
        let at_second = |second: f64| -> i64 {
            // `second` is a whole number within ±MAX_NUMBER (validated), so this is exact.
            start_ms.saturating_add((second as i64).saturating_mul(1000))
        };
        // The seconds for which the test holds form [low, high] (or all but one, for `ne`).
        let (low, high) = match self {
            NumTest::Gte(v) => (v.ceil(), f64::INFINITY),
            NumTest::Gt(v) => (v.floor() + 1.0, f64::INFINITY),
            NumTest::Eq(v) if v.fract() == 0.0 => (v, v),
            NumTest::Eq(_) => return Truth::Never,
            NumTest::Between(lo, hi) => (lo.ceil(), hi.floor()),
            NumTest::Lt(v) => (f64::NEG_INFINITY, v.ceil() - 1.0),
            NumTest::Lte(v) => (f64::NEG_INFINITY, v.floor()),
            NumTest::Ne(v) => {
                return if seconds as f64 != v {
                    Truth::Now
                } else {
                    Truth::At(at_second(v + 1.0))
                };
            }
        };
        let now = seconds as f64;
        if low > high || now > high {
            Truth::Never
        } else if now >= low {
            Truth::Now
        } else {
            Truth::At(at_second(low))
        }
    }
}

/// A custom property's test: string or number, chosen by the operator.
#[derive(Debug, Clone)]
pub(crate) enum PropTest {
    Str(StrTest),
    Num(NumTest),
}

impl PropTest {
    fn check(&self, value: Option<&PropValue>) -> bool {
        match self {
            PropTest::Str(test) => match value {
                None => test.check(None),
                Some(PropValue::String(text)) => test.check(Some(text)),
                Some(PropValue::Number(number)) => test.check(Some(&number.to_string())),
                Some(PropValue::Bool(flag)) => {
                    test.check(Some(if *flag { "true" } else { "false" }))
                }
            },
            PropTest::Num(test) => {
                let number = match value {
                    Some(PropValue::Number(number)) => Some(*number),
                    Some(PropValue::String(text)) => text.trim().parse::<f64>().ok(),
                    Some(PropValue::Bool(_)) | None => None,
                };
                match number {
                    Some(number) => test.check(number),
                    // A visitor without the property is "not equal" to any number.
                    None => matches!(test, NumTest::Ne(_)),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeTest {
    /// `[from, to)` in minutes after local midnight; wraps past midnight when `from > to`.
    Between(u32, u32),
    Before(u32),
    After(u32),
}

impl TimeTest {
    fn check(self, minute: u32) -> bool {
        match self {
            TimeTest::Between(from, to) if from <= to => from <= minute && minute < to,
            TimeTest::Between(from, to) => minute >= from || minute < to,
            TimeTest::Before(to) => minute < to,
            TimeTest::After(from) => minute >= from,
        }
    }
}

/// A compiled condition tree, flattened in preorder into one allocation: a group is followed
/// by its children's subtrees and knows how many entries its own subtree spans. Evaluating a
/// trigger reads one contiguous block instead of following a pointer per group and per
/// condition; on a busy server each of those pointers was a likely cache miss, and together
/// they were most of what evaluating a candidate cost.
#[derive(Debug, Clone)]
pub(crate) struct Node(Box<[Flat]>);

/// One entry of a flattened tree.
#[derive(Debug, Clone)]
pub(crate) enum Flat {
    /// Every child holds; the subtree, this entry included, is `span` entries long.
    All {
        span: u32,
    },
    /// Some child holds.
    Any {
        span: u32,
    },
    Leaf(Leaf),
}

impl Flat {
    /// Entries in the subtree starting here.
    fn span(&self) -> usize {
        match self {
            Flat::All { span } | Flat::Any { span } => *span as usize,
            Flat::Leaf(_) => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    /// A text field; `tag` is the campaign tag's lowercase name for `campaign_tag`.
    Text {
        field: TextField,
        tag: Option<Box<str>>,
        test: StrTest,
    },
    /// `visited_url`: `any` earlier page passes `test` (or, negated, none does).
    VisitedUrl {
        test: StrTest,
        negate: bool,
    },
    TimeOnPage(NumTest),
    TimeOnSite(NumTest),
    PagesInVisit(NumTest),
    Visits(NumTest),
    Customer(bool),
    Property {
        name: Box<str>,
        test: PropTest,
    },
    Event {
        name: Box<str>,
        seen: bool,
        /// Boxed: rare, and as large as any other condition.
        property: Option<Box<(Box<str>, PropTest)>>,
    },
    TimeOfDay(TimeTest),
    /// Bit `n` is set for day `n` (Monday = 0).
    DayOfWeek(u8),
    BusinessHours(bool),
    AgentsOnline(bool),
}

/// What an evaluation needs besides the visitor: the time and the site's calendar.
pub(crate) struct Env<'a> {
    /// Now on the tracker's clock, which visitor times are stamped with.
    pub now_ms: i64,
    /// Now on the wall clock (business hours, time of day).
    pub wall_ms: i64,
    /// The site's time zone.
    pub tz: Tz,
    /// Whether now is within the site's business hours (lazily computed).
    pub within_hours: &'a dyn Fn() -> bool,
    /// Whether an agent is online for the site (lazily asked).
    pub agents_online: &'a dyn Fn() -> bool,
    local: OnceCell<(u32, u8)>,
    hours: OnceCell<bool>,
    online: OnceCell<bool>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(
        now_ms: i64,
        wall_ms: i64,
        tz: Tz,
        within_hours: &'a dyn Fn() -> bool,
        agents_online: &'a dyn Fn() -> bool,
    ) -> Env<'a> {
        Env {
            now_ms,
            wall_ms,
            tz,
            within_hours,
            agents_online,
            local: OnceCell::new(),
            hours: OnceCell::new(),
            online: OnceCell::new(),
        }
    }

    /// (minute of the local day, weekday with Monday = 0) in the site's time zone.
    fn local(&self) -> (u32, u8) {
        *self.local.get_or_init(|| {
            let Some(utc) = DateTime::from_timestamp_millis(self.wall_ms) else {
                return (0, 0);
            };
            let local = utc.with_timezone(&self.tz);
            (
                local.hour() * 60 + local.minute(),
                local.weekday().num_days_from_monday() as u8,
            )
        })
    }

    fn within_hours(&self) -> bool {
        *self.hours.get_or_init(|| (self.within_hours)())
    }

    fn agents_online(&self) -> bool {
        *self.online.get_or_init(|| (self.agents_online)())
    }
}

/// The value of a text field for a visitor; empty strings count as missing.
pub(crate) fn text_value<'v>(
    view: &'v VisitorView<'_>,
    field: TextField,
    tag: Option<&str>,
) -> Option<&'v str> {
    let value = match field {
        TextField::Url => Some(view.current_url()),
        TextField::Title => Some(view.current_title()),
        TextField::Referrer => view.referrer(),
        TextField::UtmSource => view.campaign().and_then(|c| c.source.as_deref()),
        TextField::UtmMedium => view.campaign().and_then(|c| c.medium.as_deref()),
        TextField::UtmCampaign => view.campaign().and_then(|c| c.name.as_deref()),
        TextField::UtmTerm => view.campaign().and_then(|c| c.term.as_deref()),
        TextField::UtmContent => view.campaign().and_then(|c| c.content.as_deref()),
        TextField::CampaignTag => view.campaign().and_then(|campaign| {
            let tag = tag?;
            campaign
                .other
                .iter()
                .find(|(key, _)| **key == *tag)
                .map(|(_, value)| &**value)
        }),
        TextField::Country => view.geo().country_code.as_deref(),
        TextField::CountryName => view.geo().country_name.as_deref(),
        TextField::City => view.geo().city.as_deref(),
        TextField::Browser => Some(&*view.client().browser),
        TextField::Os => Some(&*view.client().os),
        TextField::Device => Some(view.client().device.as_str()),
        TextField::Language => view.language(),
    };
    value.filter(|value| !value.is_empty())
}

fn property<'v>(view: &'v VisitorView<'_>, name: &str) -> Option<&'v PropValue> {
    view.identity()?
        .props
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

impl Node {
    pub(crate) fn eval(&self, view: &VisitorView<'_>, env: &Env<'_>) -> Truth {
        eval(&self.0, view, env)
    }

    /// The flattened tree (the root first).
    pub(crate) fn entries(&self) -> &[Flat] {
        &self.0
    }

    /// The conditions every match must pass, with their positions in [`Node::entries`]: the
    /// root if it is one, the conditions directly in a root `all` group, none under a root
    /// `any`.
    pub(crate) fn necessary(&self) -> Vec<(usize, &Leaf)> {
        match &self.0[0] {
            Flat::Leaf(leaf) => vec![(0, leaf)],
            Flat::Any { .. } => Vec::new(),
            Flat::All { span } => {
                let mut leaves = Vec::new();
                let mut at = 1;
                while at < *span as usize {
                    if let Flat::Leaf(leaf) = &self.0[at] {
                        leaves.push((at, leaf));
                    }
                    at += self.0[at].span();
                }
                leaves
            }
        }
    }

    /// The tree without the necessary condition at `at` (a position [`Node::necessary`]
    /// gave), appended to `out`: what is left to check once an index has established that
    /// condition. Without its only condition, a tree always holds.
    pub(crate) fn append_without(&self, at: usize, out: &mut Vec<Flat>) {
        match &self.0[0] {
            Flat::All { span } if at > 0 => {
                out.push(Flat::All { span: span - 1 });
                out.extend(
                    self.0[1..]
                        .iter()
                        .enumerate()
                        .filter(|(index, _)| index + 1 != at)
                        .map(|(_, entry)| entry.clone()),
                );
            }
            _ => out.push(Flat::All { span: 1 }),
        }
    }
}

/// Evaluates the subtree whose root is `entries[0]` (`entries` may run on past it).
pub(crate) fn eval(entries: &[Flat], view: &VisitorView<'_>, env: &Env<'_>) -> Truth {
    match &entries[0] {
        Flat::Leaf(leaf) => leaf.eval(view, env),
        Flat::All { span } => {
            let mut truth = Truth::Now;
            let mut at = 1;
            while at < *span as usize {
                truth = truth.and(eval(&entries[at..], view, env));
                if truth == Truth::Never {
                    break;
                }
                at += entries[at].span();
            }
            truth
        }
        Flat::Any { span } => {
            let mut truth = Truth::Never;
            let mut at = 1;
            while at < *span as usize {
                truth = truth.or(eval(&entries[at..], view, env));
                if truth == Truth::Now {
                    break;
                }
                at += entries[at].span();
            }
            truth
        }
    }
}

impl Leaf {
    fn eval(&self, view: &VisitorView<'_>, env: &Env<'_>) -> Truth {
        let holds = match self {
            Leaf::Text { field, tag, test } => test.check(text_value(view, *field, tag.as_deref())),
            Leaf::VisitedUrl { test, negate } => {
                view.earlier_urls().any(|url| test.check(Some(url))) != *negate
            }
            Leaf::TimeOnPage(test) => return test.elapsed(view.page_since_ms(), env.now_ms),
            Leaf::TimeOnSite(test) => return test.elapsed(view.visit_started_ms(), env.now_ms),
            Leaf::PagesInVisit(test) => test.check(f64::from(view.pages_this_visit())),
            Leaf::Visits(test) => test.check(f64::from(view.visits())),
            Leaf::Customer(expected) => {
                view.identity()
                    .is_some_and(|identity| identity.is_customer())
                    == *expected
            }
            Leaf::Property { name, test } => test.check(property(view, name)),
            Leaf::Event {
                name,
                seen,
                property,
            } => {
                let found = view.events().iter().any(|event| {
                    text::equals(&event.name, name)
                        && property.as_deref().is_none_or(|(key, test)| {
                            test.check(
                                event
                                    .props
                                    .iter()
                                    .find(|(prop, _)| prop == &**key)
                                    .map(|(_, value)| value),
                            )
                        })
                });
                found == *seen
            }
            Leaf::TimeOfDay(test) => test.check(env.local().0),
            Leaf::DayOfWeek(mask) => mask & (1 << env.local().1) != 0,
            Leaf::BusinessHours(expected) => env.within_hours() == *expected,
            Leaf::AgentsOnline(expected) => env.agents_online() == *expected,
        };
        Truth::from_bool(holds)
    }
}

/// Compiles a condition tree, checking every part; errors name the JSON path.
pub(crate) fn compile(root: &ConditionNode) -> Result<Node, TriggerError> {
    let mut leaves = 0;
    let mut entries = Vec::new();
    compile_node(root, "conditions", 1, &mut leaves, &mut entries)?;
    Ok(Node(entries.into_boxed_slice()))
}

fn compile_node(
    node: &ConditionNode,
    path: &str,
    depth: usize,
    leaves: &mut usize,
    out: &mut Vec<Flat>,
) -> Result<(), TriggerError> {
    match node {
        ConditionNode::All(children) | ConditionNode::Any(children) => {
            let all = matches!(node, ConditionNode::All(_));
            let group_path = format!("{path}.{}", if all { "all" } else { "any" });
            if depth > MAX_DEPTH {
                return Err(TriggerError::invalid(
                    path,
                    format_args!("groups nest at most {MAX_DEPTH} deep"),
                ));
            }
            if children.is_empty() {
                return Err(TriggerError::invalid(
                    &group_path,
                    "a group needs at least one condition",
                ));
            }
            let at = out.len();
            out.push(Flat::All { span: 0 });
            for (index, child) in children.iter().enumerate() {
                compile_node(
                    child,
                    &format!("{group_path}[{index}]"),
                    depth + 1,
                    leaves,
                    out,
                )?;
            }
            // At most MAX_CONDITIONS leaves and MAX_DEPTH levels: far below u32::MAX.
            let span = (out.len() - at) as u32;
            out[at] = if all {
                Flat::All { span }
            } else {
                Flat::Any { span }
            };
            Ok(())
        }
        ConditionNode::Condition(condition) => {
            *leaves += 1;
            if *leaves > MAX_CONDITIONS {
                return Err(TriggerError::invalid(
                    path,
                    format_args!("a trigger has at most {MAX_CONDITIONS} conditions"),
                ));
            }
            out.push(Flat::Leaf(compile_condition(condition, path)?));
            Ok(())
        }
    }
}

fn at(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn compile_condition(condition: &Condition, path: &str) -> Result<Leaf, TriggerError> {
    let Some(field) = FIELDS.iter().find(|field| field.name == condition.field) else {
        return Err(TriggerError::invalid(
            &at(path, "field"),
            format_args!(
                "unknown field {:?} (one of {})",
                clip(&condition.field),
                FIELDS
                    .iter()
                    .map(|field| field.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let op = condition.op.as_str();
    let ops = field.field_type.ops();
    if !ops.contains(&op) {
        return Err(TriggerError::invalid(
            &at(path, "op"),
            format_args!(
                "{:?} is not an operator for {} ({}: {})",
                clip(op),
                field.name,
                type_name(field.field_type),
                ops.join(", ")
            ),
        ));
    }
    let name = match (&condition.name, field.needs_name) {
        (Some(name), true) => {
            let trimmed = name.trim();
            if trimmed.is_empty() || trimmed.chars().count() > MAX_FIELD_NAME_CHARS {
                return Err(TriggerError::invalid(
                    &at(path, "name"),
                    format_args!("1 to {MAX_FIELD_NAME_CHARS} characters"),
                ));
            }
            Some(trimmed)
        }
        (None, true) => {
            return Err(TriggerError::invalid(
                &at(path, "name"),
                format_args!("{} needs a name", field.name),
            ));
        }
        (Some(_), false) => {
            return Err(TriggerError::invalid(
                &at(path, "name"),
                format_args!("{} takes no name", field.name),
            ));
        }
        (None, false) => None,
    };
    if condition.property.is_some() && field.kind != FieldKind::Event {
        return Err(TriggerError::invalid(
            &at(path, "property"),
            "only event conditions test a property",
        ));
    }
    let value = condition.value.as_ref();
    let value_path = at(path, "value");
    let number = |what: &str| num_test(op, value, &value_path, field.name, what);
    Ok(match field.kind {
        FieldKind::Text(text_field) => {
            let test = str_test(op, value, &value_path, field.name)?;
            if text_field == TextField::Device
                && let Some(values) = test.equal_values()
                && let Some(bad) = values.iter().find(|value| !DEVICES.contains(value))
            {
                return Err(TriggerError::invalid(
                    &value_path,
                    format_args!(
                        "unknown device {:?} (one of {})",
                        clip(bad),
                        DEVICES.join(", ")
                    ),
                ));
            }
            Leaf::Text {
                field: text_field,
                tag: name.map(ascii_lower),
                test,
            }
        }
        FieldKind::VisitedUrl => {
            let test = str_test(op, value, &value_path, field.name)?;
            Leaf::VisitedUrl {
                negate: test.negate,
                test: test.positive(),
            }
        }
        FieldKind::TimeOnPage => Leaf::TimeOnPage(number("a number of seconds")?),
        FieldKind::TimeOnSite => Leaf::TimeOnSite(number("a number of seconds")?),
        FieldKind::PagesInVisit => Leaf::PagesInVisit(number("a number")?),
        FieldKind::Visits => Leaf::Visits(number("a number")?),
        FieldKind::Customer => Leaf::Customer(bool_value(value, &value_path, field.name)?),
        FieldKind::BusinessHours => {
            Leaf::BusinessHours(bool_value(value, &value_path, field.name)?)
        }
        FieldKind::AgentsOnline => Leaf::AgentsOnline(bool_value(value, &value_path, field.name)?),
        FieldKind::Property => Leaf::Property {
            name: name.unwrap_or_default().into(),
            test: prop_test(op, value, &value_path, "property")?,
        },
        FieldKind::Event => {
            if value.is_some() {
                return Err(TriggerError::invalid(
                    &value_path,
                    "event takes no value (name the event with \"name\")",
                ));
            }
            Leaf::Event {
                name: ascii_lower(name.unwrap_or_default()),
                seen: op == "seen",
                property: match &condition.property {
                    None => None,
                    Some(property) => {
                        Some(Box::new(event_property(property, &at(path, "property"))?))
                    }
                },
            }
        }
        FieldKind::TimeOfDay => Leaf::TimeOfDay(time_test(op, value, &value_path)?),
        FieldKind::DayOfWeek => Leaf::DayOfWeek(day_mask(value, &value_path)?),
    })
}

fn type_name(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "string",
        FieldType::Number => "number",
        FieldType::Boolean => "boolean",
        FieldType::Time => "time",
        FieldType::Day => "day",
        FieldType::Event => "event",
        FieldType::Property => "string or number",
    }
}

fn event_property(
    property: &PropertyTest,
    path: &str,
) -> Result<(Box<str>, PropTest), TriggerError> {
    let name = property.name.trim();
    if name.is_empty() || name.chars().count() > MAX_FIELD_NAME_CHARS {
        return Err(TriggerError::invalid(
            &at(path, "name"),
            format_args!("1 to {MAX_FIELD_NAME_CHARS} characters"),
        ));
    }
    let ops = FieldType::Property.ops();
    if !ops.contains(&property.op.as_str()) {
        return Err(TriggerError::invalid(
            &at(path, "op"),
            format_args!(
                "{:?} is not an operator for an event property (string or number: {})",
                clip(&property.op),
                ops.join(", ")
            ),
        ));
    }
    let test = prop_test(
        &property.op,
        property.value.as_ref(),
        &at(path, "value"),
        "an event property",
    )?;
    Ok((name.into(), test))
}

fn prop_test(
    op: &str,
    value: Option<&Value>,
    path: &str,
    what: &str,
) -> Result<PropTest, TriggerError> {
    if NUMBER_OPS.contains(&op) {
        num_test(op, value, path, what, "a number").map(PropTest::Num)
    } else {
        str_test(op, value, path, what).map(PropTest::Str)
    }
}

fn string_value<'v>(
    value: Option<&'v Value>,
    path: &str,
    what: &str,
) -> Result<&'v str, TriggerError> {
    let Some(Value::String(text)) = value else {
        return Err(TriggerError::invalid(
            path,
            format_args!("{what} takes a string"),
        ));
    };
    check_length(text, path)?;
    Ok(text)
}

fn check_length(text: &str, path: &str) -> Result<(), TriggerError> {
    if text.chars().count() > MAX_VALUE_CHARS {
        return Err(TriggerError::invalid(
            path,
            format_args!("at most {MAX_VALUE_CHARS} characters"),
        ));
    }
    Ok(())
}

fn str_test(
    op: &str,
    value: Option<&Value>,
    path: &str,
    what: &str,
) -> Result<StrTest, TriggerError> {
    let (negate, base) = match op.strip_prefix("not_") {
        Some(base) => (true, base),
        None => (false, op),
    };
    if base == "exists" {
        if value.is_some() {
            return Err(TriggerError::invalid(
                path,
                format_args!("{op} takes no value"),
            ));
        }
        return Ok(StrTest {
            matcher: None,
            negate,
        });
    }
    let matcher = match base {
        "in" => {
            let message = || {
                TriggerError::invalid(
                    path,
                    format_args!("{op} takes an array of 1 to {MAX_IN_VALUES} strings"),
                )
            };
            let Some(Value::Array(items)) = value else {
                return Err(message());
            };
            if items.is_empty() || items.len() > MAX_IN_VALUES {
                return Err(message());
            }
            let mut values = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let Value::String(text) = item else {
                    return Err(message());
                };
                check_length(text, &format!("{path}[{index}]"))?;
                values.push(ascii_lower(text));
            }
            StrMatch::In(values.into_boxed_slice())
        }
        "regex" => {
            let pattern = string_value(value, path, what)?;
            let regex = RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|error| {
                    // The regex crate's messages span several lines with a caret diagram;
                    // one line reads better in an API error.
                    let message = error.to_string();
                    let summary = message
                        .lines()
                        .filter(|line| line.trim_start().starts_with("error:"))
                        .map(|line| line.trim_start().trim_start_matches("error:").trim())
                        .next()
                        .unwrap_or(message.lines().next().unwrap_or("invalid"))
                        .to_string();
                    TriggerError::invalid(path, format_args!("invalid regex: {summary}"))
                })?;
            StrMatch::Regex(Box::new(regex))
        }
        "wildcard" => StrMatch::Wildcard(Box::new(Wildcard::new(string_value(value, path, what)?))),
        "equals" => StrMatch::Equals(ascii_lower(string_value(value, path, what)?)),
        "contains" => StrMatch::Contains(ascii_lower(string_value(value, path, what)?)),
        "starts_with" => StrMatch::StartsWith(ascii_lower(string_value(value, path, what)?)),
        "ends_with" => StrMatch::EndsWith(ascii_lower(string_value(value, path, what)?)),
        other => {
            return Err(TriggerError::invalid(
                path,
                format_args!("{:?} is not a string operator", clip(other)),
            ));
        }
    };
    Ok(StrTest {
        matcher: Some(matcher),
        negate,
    })
}

fn finite_number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .filter(|number| number.is_finite() && number.abs() <= MAX_NUMBER)
}

fn num_test(
    op: &str,
    value: Option<&Value>,
    path: &str,
    what: &str,
    takes: &str,
) -> Result<NumTest, TriggerError> {
    if op == "between" {
        let message = || {
            TriggerError::invalid(
                path,
                format_args!("between takes [low, high]: two numbers with low ≤ high"),
            )
        };
        let Some(Value::Array(items)) = value else {
            return Err(message());
        };
        let [low, high] = items.as_slice() else {
            return Err(message());
        };
        let (Some(low), Some(high)) = (finite_number(low), finite_number(high)) else {
            return Err(message());
        };
        if low > high {
            return Err(message());
        }
        return Ok(NumTest::Between(low, high));
    }
    let Some(number) = value.and_then(finite_number) else {
        return Err(TriggerError::invalid(
            path,
            format_args!("{what} takes {takes}"),
        ));
    };
    Ok(match op {
        "eq" => NumTest::Eq(number),
        "ne" => NumTest::Ne(number),
        "gt" => NumTest::Gt(number),
        "gte" => NumTest::Gte(number),
        "lt" => NumTest::Lt(number),
        "lte" => NumTest::Lte(number),
        other => {
            return Err(TriggerError::invalid(
                path,
                format_args!("{:?} is not a number operator", clip(other)),
            ));
        }
    })
}

fn bool_value(value: Option<&Value>, path: &str, what: &str) -> Result<bool, TriggerError> {
    match value {
        Some(Value::Bool(flag)) => Ok(*flag),
        _ => Err(TriggerError::invalid(
            path,
            format_args!("{what} takes true or false"),
        )),
    }
}

/// Minutes after midnight of `"HH:MM"` (00:00 to 24:00).
pub(crate) fn parse_hhmm(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return None;
    }
    Some(hours * 60 + minutes)
}

fn time_test(op: &str, value: Option<&Value>, path: &str) -> Result<TimeTest, TriggerError> {
    let time = |value: &Value| value.as_str().and_then(parse_hhmm);
    if op == "between" {
        let message = || {
            TriggerError::invalid(
                path,
                "between takes [\"HH:MM\", \"HH:MM\"] (wraps past midnight when the first is later)",
            )
        };
        let Some(Value::Array(items)) = value else {
            return Err(message());
        };
        let [from, to] = items.as_slice() else {
            return Err(message());
        };
        let (Some(from), Some(to)) = (time(from), time(to)) else {
            return Err(message());
        };
        return Ok(TimeTest::Between(from, to));
    }
    let Some(minute) = value.and_then(time) else {
        return Err(TriggerError::invalid(
            path,
            format_args!("time_of_day {op} takes \"HH:MM\""),
        ));
    };
    Ok(if op == "before" {
        TimeTest::Before(minute)
    } else {
        TimeTest::After(minute)
    })
}

fn day_mask(value: Option<&Value>, path: &str) -> Result<u8, TriggerError> {
    let message = || {
        TriggerError::invalid(
            path,
            format_args!("day_of_week takes an array of days ({})", DAYS.join(", ")),
        )
    };
    let Some(Value::Array(items)) = value else {
        return Err(message());
    };
    if items.is_empty() {
        return Err(message());
    }
    let mut mask = 0u8;
    for item in items {
        let day = item
            .as_str()
            .and_then(|day| {
                DAYS.iter()
                    .position(|known| known.eq_ignore_ascii_case(day))
            })
            .ok_or_else(message)?;
        mask |= 1 << day;
    }
    Ok(mask)
}

/// A site's time zone by IANA name; an unknown one counts as UTC, as in [`crate::widget`].
pub(crate) fn time_zone(name: &str) -> Tz {
    Tz::from_str(name).unwrap_or(Tz::UTC)
}
