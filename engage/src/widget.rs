//! Widget settings and availability (issue 3 point 6): what a site's chat widget looks like,
//! where it shows, its business hours in the site's time zone, and whether it is online,
//! offline (no agent online: the offline form) or after hours right now. Also leads, the
//! submissions of the offline form.
//!
//! Everything here is pure: [`availability`] takes the time and whether an agent is online as
//! arguments, so it is tested without a clock or a server.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::masking::mask_card_numbers;

pub const MAX_PAGE_PATTERNS: usize = 50;
pub const MAX_PATTERN_CHARS: usize = 200;
pub const MAX_OFFSET: u16 = 400;
pub const MAX_LEAD_MESSAGE_CHARS: usize = 5000;
pub const MAX_LEAD_NAME_CHARS: usize = 100;
const MAX_NAME_CHARS: usize = 100;
const MAX_TEXT_CHARS: usize = 1000;
const MAX_INTERVALS: usize = 70;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    Right,
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launcher {
    pub align: Align,
    pub offset: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Visible,
    /// Only when the visitor has a conversation.
    Conversation,
    /// Never shown; messages still arrive.
    Hidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageMode {
    All,
    Whitelist,
    Blacklist,
}

/// Where the launcher shows: path patterns with `*` as a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRules {
    pub mode: PageMode,
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    fn of(weekday: chrono::Weekday) -> Day {
        Day::ALL[weekday.num_days_from_monday() as usize]
    }
}

/// One opening interval of one weekday, `open` inclusive, `close` exclusive, local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayHours {
    pub day: Day,
    pub open: String,
    pub close: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    pub enabled: bool,
    /// An IANA time zone name (`Europe/Warsaw`).
    pub time_zone: String,
    pub days: Vec<DayHours>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterHoursMode {
    /// Show `message`.
    Message,
    /// Hide the widget.
    Hide,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterHours {
    pub mode: AfterHoursMode,
    pub message: String,
}

/// A site's widget settings. Sites without stored settings use [`WidgetSettings::defaults`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WidgetSettings {
    pub name: String,
    pub welcome: String,
    pub color: String,
    pub launcher: Launcher,
    pub prechat: bool,
    pub visibility: Visibility,
    pub pages: PageRules,
    pub business_hours: BusinessHours,
    pub after_hours: AfterHours,
    pub offline_message: String,
}

impl WidgetSettings {
    /// The settings of a site that has none stored.
    pub fn defaults(site_name: &str) -> WidgetSettings {
        WidgetSettings {
            name: site_name.to_string(),
            welcome: "Hi! How can we help?".into(),
            color: "#2563eb".into(),
            launcher: Launcher {
                align: Align::Right,
                offset: 25,
            },
            prechat: false,
            visibility: Visibility::Visible,
            pages: PageRules {
                mode: PageMode::All,
                patterns: Vec::new(),
            },
            business_hours: BusinessHours {
                enabled: false,
                time_zone: "UTC".into(),
                days: Vec::new(),
            },
            after_hours: AfterHours {
                mode: AfterHoursMode::Message,
                message: "We're closed right now. Leave us a message and we'll get back to you."
                    .into(),
            },
            offline_message:
                "No one is available right now. Leave a message and we'll reply by email.".into(),
        }
    }

    /// `self` with the fields of `patch` (a JSON object, possibly partial; nested objects are
    /// merged, arrays replaced) applied, then validated. Errors name the field
    /// (`settings.launcher.offset: ...`).
    pub fn patched(&self, patch: &Value) -> Result<WidgetSettings, String> {
        let Value::Object(patch) = patch else {
            return Err("settings: expected a JSON object".into());
        };
        let mut out = self.clone();
        for (key, value) in patch {
            let path = format!("settings.{key}");
            let err = |e: serde_json::Error| format!("{path}: {e}");
            match key.as_str() {
                "name" => out.name = serde_json::from_value(value.clone()).map_err(err)?,
                "welcome" => out.welcome = serde_json::from_value(value.clone()).map_err(err)?,
                "color" => out.color = serde_json::from_value(value.clone()).map_err(err)?,
                "launcher" => out.launcher = merged(&out.launcher, value).map_err(err)?,
                "prechat" => out.prechat = serde_json::from_value(value.clone()).map_err(err)?,
                "visibility" => {
                    out.visibility = serde_json::from_value(value.clone()).map_err(err)?
                }
                "pages" => out.pages = merged(&out.pages, value).map_err(err)?,
                "business_hours" => {
                    out.business_hours = merged(&out.business_hours, value).map_err(err)?
                }
                "after_hours" => out.after_hours = merged(&out.after_hours, value).map_err(err)?,
                "offline_message" => {
                    out.offline_message = serde_json::from_value(value.clone()).map_err(err)?
                }
                _ => return Err(format!("{path}: unknown field")),
            }
        }
        out.validate()?;
        Ok(out)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        text("settings.name", &self.name, 1, MAX_NAME_CHARS)?;
        text("settings.welcome", &self.welcome, 0, MAX_TEXT_CHARS)?;
        if !valid_color(&self.color) {
            return Err(format!(
                "settings.color: expected #rrggbb, got {:?}",
                clip(&self.color)
            ));
        }
        if self.launcher.offset > MAX_OFFSET {
            return Err(format!(
                "settings.launcher.offset: must be at most {MAX_OFFSET}, got {}",
                self.launcher.offset
            ));
        }
        if self.pages.patterns.len() > MAX_PAGE_PATTERNS {
            return Err(format!(
                "settings.pages.patterns: at most {MAX_PAGE_PATTERNS} patterns"
            ));
        }
        for (i, pattern) in self.pages.patterns.iter().enumerate() {
            text(
                &format!("settings.pages.patterns[{i}]"),
                pattern,
                1,
                MAX_PATTERN_CHARS,
            )?;
        }
        let hours = &self.business_hours;
        if Tz::from_str(&hours.time_zone).is_err() {
            return Err(format!(
                "settings.business_hours.time_zone: unknown time zone {:?}",
                clip(&hours.time_zone)
            ));
        }
        if hours.days.len() > MAX_INTERVALS {
            return Err(format!(
                "settings.business_hours.days: at most {MAX_INTERVALS} intervals"
            ));
        }
        for (i, interval) in hours.days.iter().enumerate() {
            let path = format!("settings.business_hours.days[{i}]");
            let open = parse_hhmm(&interval.open).ok_or_else(|| {
                format!(
                    "{path}.open: expected HH:MM, got {:?}",
                    clip(&interval.open)
                )
            })?;
            let close = parse_hhmm(&interval.close).ok_or_else(|| {
                format!(
                    "{path}.close: expected HH:MM, got {:?}",
                    clip(&interval.close)
                )
            })?;
            if close <= open {
                return Err(format!(
                    "{path}.close: must be after open ({})",
                    interval.open
                ));
            }
        }
        text(
            "settings.after_hours.message",
            &self.after_hours.message,
            0,
            MAX_TEXT_CHARS,
        )?;
        text(
            "settings.offline_message",
            &self.offline_message,
            0,
            MAX_TEXT_CHARS,
        )?;
        Ok(())
    }
}

/// `current` with the JSON object `patch` merged over it.
fn merged<T: Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &Value,
) -> Result<T, serde_json::Error> {
    let mut base = serde_json::to_value(current)?;
    if let (Value::Object(base), Value::Object(patch)) = (&mut base, patch) {
        for (key, value) in patch {
            base.insert(key.clone(), value.clone());
        }
        return serde_json::from_value(Value::Object(base.clone()));
    }
    serde_json::from_value(patch.clone())
}

fn text(path: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars < min {
        return Err(format!("{path}: cannot be empty"));
    }
    if chars > max {
        return Err(format!("{path}: at most {max} characters"));
    }
    Ok(())
}

fn clip(value: &str) -> String {
    value.chars().take(64).collect()
}

fn valid_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Minutes since midnight of `HH:MM` (00:00 to 24:00).
fn parse_hhmm(value: &str) -> Option<u32> {
    let (h, m) = value.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AvailabilityMode {
    Online,
    Offline,
    AfterHours,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub mode: AvailabilityMode,
    /// Whether now is within business hours (always, when they are disabled).
    pub within_hours: bool,
}

/// Whether the widget is online, offline (no agent online) or after hours at `now_ms`.
pub fn availability(settings: &WidgetSettings, now_ms: i64, agents_online: bool) -> Availability {
    let within_hours = within_business_hours(&settings.business_hours, now_ms);
    let mode = if !within_hours {
        AvailabilityMode::AfterHours
    } else if !agents_online {
        AvailabilityMode::Offline
    } else {
        AvailabilityMode::Online
    };
    Availability { mode, within_hours }
}

fn within_business_hours(hours: &BusinessHours, now_ms: i64) -> bool {
    if !hours.enabled {
        return true;
    }
    // Validated settings always name a known zone; a stored one that became unknown counts
    // as UTC rather than closing the widget for good.
    let tz = Tz::from_str(&hours.time_zone).unwrap_or(Tz::UTC);
    let Some(utc) = DateTime::from_timestamp_millis(now_ms) else {
        return true;
    };
    let local = utc.with_timezone(&tz);
    let day = Day::of(local.weekday());
    let minute = local.hour() * 60 + local.minute();
    hours.days.iter().any(|interval| {
        interval.day == day
            && matches!(
                (parse_hhmm(&interval.open), parse_hhmm(&interval.close)),
                (Some(open), Some(close)) if open <= minute && minute < close
            )
    })
}

/// The first moment after `now_ms` at which "within business hours" changes, looking up to
/// eight days ahead; `None` when business hours are off or never change. The availability
/// task sleeps until then, so a widget hears that the site opened or closed when it happens.
pub fn next_hours_change(hours: &BusinessHours, now_ms: i64) -> Option<i64> {
    if !hours.enabled || hours.days.is_empty() {
        return None;
    }
    let tz = Tz::from_str(&hours.time_zone).unwrap_or(Tz::UTC);
    let today = DateTime::from_timestamp_millis(now_ms)?
        .with_timezone(&tz)
        .date_naive();
    let current = within_business_hours(hours, now_ms);
    let mut candidates = Vec::new();
    for offset in 0..=8 {
        let date = today + chrono::Days::new(offset);
        let day = Day::of(date.weekday());
        for interval in hours.days.iter().filter(|interval| interval.day == day) {
            let edges = [parse_hhmm(&interval.open), parse_hhmm(&interval.close)];
            for minutes in edges.into_iter().flatten() {
                let local =
                    date.and_time(NaiveTime::MIN) + chrono::Duration::minutes(i64::from(minutes));
                if let Some(instant) = local_instant(&tz, local).filter(|&t| t > now_ms) {
                    candidates.push(instant);
                }
            }
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    // Overlapping intervals make some edges no change at all.
    candidates
        .into_iter()
        .find(|&instant| within_business_hours(hours, instant) != current)
}

/// The instant of a local time in `tz`: the earlier of two when clocks go back, and the first
/// minute that exists when clocks go forward over it.
fn local_instant(tz: &Tz, local: NaiveDateTime) -> Option<i64> {
    (0..=180).find_map(|step| {
        tz.from_local_datetime(&(local + chrono::Duration::minutes(step)))
            .earliest()
            .map(|instant| instant.timestamp_millis())
    })
}

/// A submission of the offline form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub id: u64,
    pub site: String,
    pub visitor_id: Option<String>,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub message: String,
    pub page_url: Option<String>,
    pub created_ms: i64,
}

/// A lead before the store gives it an id; build it with [`NewLead::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLead {
    pub site: String,
    pub visitor_id: Option<String>,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub message: String,
    pub page_url: Option<String>,
    pub created_ms: i64,
}

impl NewLead {
    /// Validates (email has `@`, message 1..=5000 characters, name at most 100) and masks
    /// card numbers in the message. Errors name the field.
    pub fn new(mut lead: NewLead) -> Result<NewLead, String> {
        lead.name = lead.name.trim().to_string();
        lead.email = lead.email.trim().to_string();
        lead.message = lead.message.trim().to_string();
        lead.phone = lead
            .phone
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        text("name", &lead.name, 0, MAX_LEAD_NAME_CHARS)?;
        if !lead.email.contains('@') || lead.email.chars().count() > 254 {
            return Err("email: expected an email address".into());
        }
        text("message", &lead.message, 1, MAX_LEAD_MESSAGE_CHARS)?;
        if let Some(phone) = &lead.phone {
            text("phone", phone, 0, 50)?;
        }
        if let Some(url) = &lead.page_url {
            text("page_url", url, 0, 2048)?;
        }
        lead.message = mask_card_numbers(&lead.message).into_owned();
        Ok(lead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Milliseconds of a UTC date and time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn hours(tz: &str, days: &[(Day, &str, &str)]) -> WidgetSettings {
        let mut settings = WidgetSettings::defaults("Shop");
        settings.business_hours = BusinessHours {
            enabled: true,
            time_zone: tz.into(),
            days: days
                .iter()
                .map(|(day, open, close)| DayHours {
                    day: *day,
                    open: (*open).into(),
                    close: (*close).into(),
                })
                .collect(),
        };
        settings.validate().unwrap();
        settings
    }

    #[test]
    fn availability_follows_hours_in_the_site_time_zone() {
        use AvailabilityMode::*;
        let weekdays: Vec<_> = Day::ALL[..5]
            .iter()
            .map(|d| (*d, "09:00", "17:00"))
            .collect();
        let warsaw = hours("Europe/Warsaw", &weekdays);
        let split = hours(
            "America/New_York",
            &[(Day::Wed, "08:00", "12:00"), (Day::Wed, "13:00", "18:30")],
        );
        let mut disabled = warsaw.clone();
        disabled.business_hours.enabled = false;
        let cases: &[(&str, &WidgetSettings, i64, bool, AvailabilityMode)] = &[
            // 2026-03-29 is the last Sunday of March: Warsaw goes from UTC+1 to UTC+2.
            // Friday 27 March 09:00 local is 08:00 UTC; 07:59 UTC is 08:59 local.
            (
                "before DST, open",
                &warsaw,
                utc(2026, 3, 27, 8, 0),
                true,
                Online,
            ),
            (
                "before DST, a minute early",
                &warsaw,
                utc(2026, 3, 27, 7, 59),
                true,
                AfterHours,
            ),
            // Monday 30 March 09:00 local is 07:00 UTC; 08:00 UTC would be wrong on the other side.
            (
                "after DST, open",
                &warsaw,
                utc(2026, 3, 30, 7, 0),
                true,
                Online,
            ),
            (
                "after DST, a minute early",
                &warsaw,
                utc(2026, 3, 30, 6, 59),
                true,
                AfterHours,
            ),
            (
                "after DST, closes 17:00 local",
                &warsaw,
                utc(2026, 3, 30, 15, 0),
                true,
                AfterHours,
            ),
            (
                "after DST, 16:59 local",
                &warsaw,
                utc(2026, 3, 30, 14, 59),
                true,
                Online,
            ),
            // 2026-10-25 is the last Sunday of October: back to UTC+1.
            (
                "before October change",
                &warsaw,
                utc(2026, 10, 23, 7, 0),
                true,
                Online,
            ),
            (
                "before October change, early",
                &warsaw,
                utc(2026, 10, 23, 6, 59),
                true,
                AfterHours,
            ),
            (
                "after October change",
                &warsaw,
                utc(2026, 10, 26, 8, 0),
                true,
                Online,
            ),
            (
                "after October change, early",
                &warsaw,
                utc(2026, 10, 26, 7, 59),
                true,
                AfterHours,
            ),
            // The change day itself is a Sunday: closed.
            (
                "Sunday of the change",
                &warsaw,
                utc(2026, 10, 25, 10, 0),
                true,
                AfterHours,
            ),
            (
                "Saturday noon",
                &warsaw,
                utc(2026, 3, 28, 11, 0),
                true,
                AfterHours,
            ),
            (
                "no agent within hours",
                &warsaw,
                utc(2026, 3, 30, 10, 0),
                false,
                Offline,
            ),
            (
                "no agent after hours",
                &warsaw,
                utc(2026, 3, 28, 11, 0),
                false,
                AfterHours,
            ),
            (
                "disabled hours, agent",
                &disabled,
                utc(2026, 3, 28, 23, 0),
                true,
                Online,
            ),
            (
                "disabled hours, no agent",
                &disabled,
                utc(2026, 3, 28, 23, 0),
                false,
                Offline,
            ),
            // Wednesday 2026-04-01, New York is UTC-4.
            (
                "first interval",
                &split,
                utc(2026, 4, 1, 12, 0),
                true,
                Online,
            ),
            (
                "lunch gap",
                &split,
                utc(2026, 4, 1, 16, 30),
                true,
                AfterHours,
            ),
            (
                "second interval",
                &split,
                utc(2026, 4, 1, 17, 0),
                true,
                Online,
            ),
            (
                "second interval end",
                &split,
                utc(2026, 4, 1, 22, 30),
                true,
                AfterHours,
            ),
            (
                "other weekday",
                &split,
                utc(2026, 4, 2, 12, 0),
                true,
                AfterHours,
            ),
        ];
        for (name, settings, now, agents, expected) in cases {
            let got = availability(settings, *now, *agents);
            assert_eq!(got.mode, *expected, "{name}");
            assert_eq!(got.within_hours, *expected != AfterHours, "{name}");
        }
    }

    #[test]
    fn every_weekday_is_its_own() {
        // 2026-04-06 is a Monday; noon UTC is noon in UTC.
        for (offset, day) in Day::ALL.iter().enumerate() {
            let only = hours("UTC", &[(*day, "11:00", "13:00")]);
            for other in 0..7 {
                let now = utc(2026, 4, 6 + other as u32, 12, 0);
                let got = availability(&only, now, true).mode;
                let expected = if other == offset {
                    AvailabilityMode::Online
                } else {
                    AvailabilityMode::AfterHours
                };
                assert_eq!(got, expected, "{day:?} at day offset {other}");
            }
        }
    }

    #[test]
    fn patches_are_validated_and_errors_name_the_field() {
        let base = WidgetSettings::defaults("Shop");
        let patched = base
            .patched(&json!({ "launcher": { "offset": 40 }, "color": "#112233" }))
            .unwrap();
        assert_eq!(patched.launcher.offset, 40);
        assert_eq!(patched.launcher.align, Align::Right);
        let cases = [
            (
                json!({ "business_hours": { "time_zone": "Mars/Base" } }),
                "settings.business_hours.time_zone: unknown time zone \"Mars/Base\"",
            ),
            (json!({ "color": "blue" }), "settings.color:"),
            (
                json!({ "launcher": { "offset": 401 } }),
                "settings.launcher.offset:",
            ),
            (
                json!({ "launcher": { "align": "top" } }),
                "settings.launcher:",
            ),
            (json!({ "visibility": "sometimes" }), "settings.visibility:"),
            (json!({ "bogus": 1 }), "settings.bogus:"),
            (json!({ "name": "" }), "settings.name:"),
            (
                json!({ "pages": { "patterns": vec!["/x"; 51] } }),
                "settings.pages.patterns:",
            ),
            (
                json!({ "pages": { "patterns": ["x".repeat(201)] } }),
                "settings.pages.patterns[0]:",
            ),
            (
                json!({ "business_hours": { "days": [{ "day": "mon", "open": "10:00", "close": "09:00" }] } }),
                "settings.business_hours.days[0].close:",
            ),
            (
                json!({ "business_hours": { "days": [{ "day": "mon", "open": "9am", "close": "17:00" }] } }),
                "settings.business_hours.days[0].open:",
            ),
        ];
        for (patch, expected) in cases {
            let error = base.patched(&patch).unwrap_err();
            assert!(error.starts_with(expected), "{patch}: {error}");
        }
    }

    #[test]
    fn leads_are_validated_and_masked() {
        let lead = |name: &str, email: &str, message: &str| NewLead {
            site: "s".into(),
            visitor_id: None,
            name: name.into(),
            email: email.into(),
            phone: Some(" ".into()),
            message: message.into(),
            page_url: None,
            created_ms: 1,
        };
        let ok = NewLead::new(lead("Ann", "a@b", "card 4111 1111 1111 1111 please")).unwrap();
        assert!(
            !ok.message.contains("4111 1111 1111 1111"),
            "{}",
            ok.message
        );
        assert_eq!(ok.phone, None);
        assert!(
            NewLead::new(lead("Ann", "ab", "hi"))
                .unwrap_err()
                .starts_with("email")
        );
        assert!(
            NewLead::new(lead("Ann", "a@b", ""))
                .unwrap_err()
                .starts_with("message")
        );
        assert!(
            NewLead::new(lead(&"n".repeat(101), "a@b", "hi"))
                .unwrap_err()
                .starts_with("name")
        );
        assert!(NewLead::new(lead("Ann", "a@b", &"m".repeat(5001))).is_err());
    }

    #[test]
    fn the_next_change_of_business_hours_is_exact_across_zones_and_dst() {
        // Warsaw, weekdays 09:00-17:00 and Saturday 10:00-14:00; 2024-03-29 is a Friday, and
        // clocks go forward on Sunday 2024-03-31 (CET, UTC+1, to CEST, UTC+2).
        let warsaw = hours(
            "Europe/Warsaw",
            &[
                (Day::Mon, "09:00", "17:00"),
                (Day::Tue, "09:00", "17:00"),
                (Day::Wed, "09:00", "17:00"),
                (Day::Thu, "09:00", "17:00"),
                (Day::Fri, "09:00", "17:00"),
                (Day::Sat, "10:00", "14:00"),
            ],
        )
        .business_hours;
        let cases = [
            // Friday 07:59 UTC (08:59 local): opens at 09:00 local.
            (utc(2024, 3, 29, 7, 59), Some(utc(2024, 3, 29, 8, 0))),
            // Friday noon: closes at 17:00 local.
            (utc(2024, 3, 29, 11, 0), Some(utc(2024, 3, 29, 16, 0))),
            // Exactly at closing: the next change is Saturday's opening.
            (utc(2024, 3, 29, 16, 0), Some(utc(2024, 3, 30, 9, 0))),
            // Saturday after closing: Monday 09:00 CEST, across the DST change.
            (utc(2024, 3, 30, 14, 0), Some(utc(2024, 4, 1, 7, 0))),
        ];
        for (now, expected) in cases {
            assert_eq!(next_hours_change(&warsaw, now), expected, "now {now}");
            if let Some(change) = expected {
                let before = availability_at(&warsaw, change - 60_000);
                assert_ne!(before, availability_at(&warsaw, change), "a real change");
            }
        }

        // Overlapping intervals: 09-12 and 11-15 are one opening, closing at 15:00.
        let overlap = hours(
            "UTC",
            &[(Day::Fri, "09:00", "12:00"), (Day::Fri, "11:00", "15:00")],
        )
        .business_hours;
        assert_eq!(
            next_hours_change(&overlap, utc(2024, 3, 29, 10, 0)),
            Some(utc(2024, 3, 29, 15, 0))
        );
        // Open until midnight, and from midnight: 24:00 closes nothing.
        let around_midnight = hours(
            "UTC",
            &[(Day::Fri, "20:00", "24:00"), (Day::Sat, "00:00", "02:00")],
        )
        .business_hours;
        assert_eq!(
            next_hours_change(&around_midnight, utc(2024, 3, 29, 21, 0)),
            Some(utc(2024, 3, 30, 2, 0))
        );
        // Hours off, or no intervals: nothing ever changes.
        let mut off = warsaw.clone();
        off.enabled = false;
        assert_eq!(next_hours_change(&off, utc(2024, 3, 29, 7, 0)), None);
        let mut closed = warsaw;
        closed.days.clear();
        assert_eq!(next_hours_change(&closed, utc(2024, 3, 29, 7, 0)), None);
    }

    fn availability_at(hours: &BusinessHours, now: i64) -> bool {
        within_business_hours(hours, now)
    }
}
