//! Tests of [`Presence`], driven the way the ingest path drives it: `observe`, and on
//! `NeedsProfile` a profile from a small in-memory store and `start_visit`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use geoip::{Enricher, GeoDb, fixture};
use parking_lot::Mutex;

use crate::{
    Beacon, BeaconKind, Changes, CustomEvent, Identity, KnownProfile, ListQuery, ManualClock,
    Observation, Presence, PresenceConfig, PropValue, Segment, SegmentCounts, VisitorSnapshot,
};

const SITE: &str = "site-one";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const START_MS: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

fn geo_enricher() -> Arc<Enricher> {
    let db = GeoDb::from_bytes(fixture::city_database()).expect("the fixture database opens");
    Arc::new(Enricher::with_geo(db))
}

/// A tracker on a manual clock, and the durable profiles the caller would keep.
struct Harness {
    presence: Presence,
    clock: ManualClock,
    profiles: Mutex<HashMap<String, KnownProfile>>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(PresenceConfig::default())
    }

    fn with_config(config: PresenceConfig) -> Harness {
        let clock = ManualClock::new(START_MS);
        Harness {
            presence: Presence::new(config, geo_enricher(), Arc::new(clock.clone())),
            clock,
            profiles: Mutex::new(HashMap::new()),
        }
    }

    /// A tracker restarted on the same profiles (a process restart loses only memory).
    fn restarted(&self) -> Harness {
        Harness {
            presence: Presence::new(
                self.presence.config().clone(),
                geo_enricher(),
                Arc::new(self.clock.clone()),
            ),
            clock: self.clock.clone(),
            profiles: Mutex::new(self.profiles.lock().clone()),
        }
    }

    /// The ingest path: observe; on NeedsProfile load or create the profile and start a visit;
    /// persist what comes back.
    fn send(&self, beacon: &Beacon<'_>) -> Observation {
        let observation = match self.presence.observe(beacon) {
            Observation::NeedsProfile => {
                let profile = self.profile(beacon.site, beacon.visitor_id);
                self.presence.start_visit(beacon, &profile)
            }
            other => other,
        };
        if let Observation::Recorded {
            persist: Some(profile),
            ..
        } = &observation
        {
            self.profiles.lock().insert(
                format!("{}/{}", beacon.site, beacon.visitor_id),
                profile.clone(),
            );
        }
        observation
    }

    fn profile(&self, site: &str, visitor_id: &str) -> KnownProfile {
        let mut profiles = self.profiles.lock();
        let next_number = profiles.len() as u32 + 1;
        profiles
            .entry(format!("{site}/{visitor_id}"))
            .or_insert_with(|| KnownProfile::new(next_number, self.presence.now_ms()))
            .clone()
    }

    fn page(&self, visitor: &str, visit: &str, url: &str) -> Observation {
        self.send(&beacon(visitor, visit, BeaconKind::PageView, url))
    }

    fn heartbeat(&self, visitor: &str, visit: &str) -> Observation {
        self.send(&beacon(
            visitor,
            visit,
            BeaconKind::Heartbeat,
            "https://shop.example/",
        ))
    }

    fn get(&self, visitor: &str) -> VisitorSnapshot {
        self.presence.get(SITE, visitor).expect("visitor is live")
    }

    fn counts(&self) -> SegmentCounts {
        self.presence.counts(SITE)
    }

    /// Segment counts as the list: [all, active, on_chat, customers, auto_messaged, blocked].
    #[track_caller]
    fn check_counts(&self, expected: [u64; 6]) {
        let counts = self.counts();
        let actual = Segment::ALL.map(|segment| counts.get(segment));
        assert_eq!(
            actual, expected,
            "counts [all, active, on_chat, customers, auto_messaged, blocked]"
        );
        assert_eq!(
            counts,
            scanned_counts(&self.presence, SITE),
            "counters agree with a full scan"
        );
    }
}

fn scanned_counts(presence: &Presence, site: &str) -> SegmentCounts {
    let mut counts = SegmentCounts::default();
    for visitor in presence.snapshot(site) {
        counts.add(visitor.segments);
    }
    counts
}

fn beacon<'a>(visitor: &'a str, visit: &'a str, kind: BeaconKind, url: &'a str) -> Beacon<'a> {
    Beacon {
        site: SITE,
        visitor_id: visitor,
        visit_id: visit,
        kind,
        url,
        title: "Shop",
        referrer: None,
        ip: fixture::sample_ip(0),
        user_agent: CHROME,
        language: Some("en-GB"),
        screen: Some((1920, 1080)),
    }
}

fn identify(name: Option<&str>, email: Option<&str>) -> BeaconKind {
    BeaconKind::Identify(Identity {
        name: name.map(str::to_owned),
        email: email.map(str::to_owned),
        ..Identity::default()
    })
}

fn recorded(persist: bool) -> impl Fn(&Observation) -> bool {
    move |observation| matches!(observation, Observation::Recorded { persist: p, .. } if p.is_some() == persist)
}

#[test]
fn first_page_view_builds_the_visitor_card() {
    let h = Harness::new();
    let landing = beacon(
        "visitor-a",
        "visit-1",
        BeaconKind::PageView,
        "https://shop.example/?utm_source=news&utm_medium=email&gclid=g1",
    );
    let landing = Beacon {
        referrer: Some("https://search.example/?q=shoes"),
        title: "Welcome",
        ..landing
    };
    assert_eq!(h.presence.observe(&landing), Observation::NeedsProfile);
    let observation = h.send(&landing);
    let Observation::Recorded {
        persist: Some(profile),
        ..
    } = observation
    else {
        panic!("a new visit persists the profile, got {observation:?}");
    };
    assert_eq!((profile.number, profile.visits), (1, 1));
    assert_eq!(profile.last_visit_id.as_deref(), Some("visit-1"));
    assert_eq!(profile.first_seen_ms, START_MS);

    h.clock.advance(5_000);
    let second = beacon(
        "visitor-a",
        "visit-1",
        BeaconKind::PageView,
        "https://shop.example/cart",
    );
    assert_eq!(
        h.presence.observe(&second),
        Observation::Recorded {
            persist: None,
            visit_started: false
        }
    );

    let card = h.get("visitor-a");
    assert_eq!(&*card.site, SITE);
    assert_eq!(&*card.id, "visitor-a");
    assert_eq!(card.number, 1);
    assert_eq!(card.ip, fixture::sample_ip(0));
    assert_eq!(card.geo.city.as_deref(), Some("London"));
    assert_eq!(&*card.client.browser, "Chrome");
    assert_eq!(card.language.as_deref(), Some("en-GB"));
    assert_eq!(card.screen, Some((1920, 1080)));
    assert_eq!(&*card.current_url, "https://shop.example/cart");
    assert_eq!(&*card.current_title, "Shop");
    assert_eq!(card.page_since_ms, START_MS + 5_000);
    assert_eq!(card.visit_started_ms, START_MS);
    assert_eq!(card.last_activity_ms, START_MS + 5_000);
    assert_eq!(card.left_ms, None);
    assert_eq!(card.pages_this_visit, 2);
    let history: Vec<(&str, &str, i64)> = card
        .history
        .iter()
        .map(|page| (&*page.url, &*page.title, page.at_ms))
        .collect();
    assert_eq!(
        history,
        [
            (
                "https://shop.example/?utm_source=news&utm_medium=email&gclid=g1",
                "Welcome",
                START_MS
            ),
            ("https://shop.example/cart", "Shop", START_MS + 5_000),
        ]
    );
    assert_eq!(
        &*card.landing_url,
        "https://shop.example/?utm_source=news&utm_medium=email&gclid=g1"
    );
    assert_eq!(
        card.referrer.as_deref(),
        Some("https://search.example/?q=shoes")
    );
    assert_eq!(card.campaign.source.as_deref(), Some("news"));
    assert_eq!(card.campaign.medium.as_deref(), Some("email"));
    assert_eq!(
        card.campaign.other,
        vec![(Arc::from("gclid"), Arc::from("g1"))]
    );
    assert_eq!((card.visits, card.first_seen_ms), (1, START_MS));
    assert_eq!(card.identity, Identity::default());
    assert!(card.events.is_empty());
    let segments: Vec<Segment> = card.segments.iter().collect();
    assert_eq!(segments, [Segment::All, Segment::Active]);
    h.check_counts([1, 1, 0, 0, 0, 0]);
}

#[test]
fn visits_continue_restart_and_resume() {
    let h = Harness::new();
    assert!(recorded(true)(&h.page(
        "visitor-a",
        "visit-1",
        "https://shop.example/a"
    )));
    assert!(recorded(false)(&h.page(
        "visitor-a",
        "visit-1",
        "https://shop.example/b"
    )));
    assert_eq!(h.get("visitor-a").pages_this_visit, 2);

    // A different visit id of a visitor in memory: the visit starts over from the record,
    // without asking the caller for the stored profile.
    h.clock.advance(MINUTE);
    let next = beacon(
        "visitor-a",
        "visit-2",
        BeaconKind::PageView,
        "https://shop.example/c",
    );
    let Observation::Recorded {
        persist: Some(profile),
        ..
    } = h.send(&next)
    else {
        panic!("a new visit persists");
    };
    assert_eq!(
        (profile.visits, profile.last_visit_id.as_deref()),
        (2, Some("visit-2"))
    );
    let card = h.get("visitor-a");
    assert_eq!(card.visits, 2);
    assert_eq!(card.pages_this_visit, 1);
    assert_eq!(card.history.len(), 1);
    assert_eq!(&*card.landing_url, "https://shop.example/c");
    assert_eq!(card.visit_started_ms, START_MS + MINUTE);
    assert_eq!(card.first_seen_ms, START_MS);
    h.check_counts([1, 1, 0, 0, 0, 0]);

    // After a restart the still-open tab's heartbeat brings the visitor back: same visit, so
    // the visit count stays and nothing needs persisting.
    let restarted = h.restarted();
    h.clock.advance(MINUTE);
    let heartbeat = beacon(
        "visitor-a",
        "visit-2",
        BeaconKind::Heartbeat,
        "https://shop.example/c",
    );
    assert_eq!(
        restarted.presence.observe(&heartbeat),
        Observation::NeedsProfile
    );
    // The visit starts in memory again (resumed: `visit_started`, but not a new visit).
    assert_eq!(
        restarted.send(&heartbeat),
        Observation::Recorded {
            persist: None,
            visit_started: true
        }
    );
    let card = restarted.get("visitor-a");
    assert_eq!(
        (card.visits, card.number, card.first_seen_ms),
        (2, 1, START_MS)
    );
    assert_eq!(&*card.current_url, "https://shop.example/c");
    assert_eq!(card.pages_this_visit, 1);
    restarted.check_counts([1, 1, 0, 0, 0, 0]);

    // A visitor in memory starts its next visit from its record: `observe` itself counts the
    // visit and hands back the profile to persist, with no store read.
    let third = beacon(
        "visitor-a",
        "visit-3",
        BeaconKind::PageView,
        "https://shop.example/d",
    );
    let Observation::Recorded {
        persist: Some(profile),
        visit_started: true,
    } = restarted.presence.observe(&third)
    else {
        panic!("a new visit of a visitor in memory is recorded at once");
    };
    assert_eq!(
        (profile.number, profile.visits, profile.first_seen_ms),
        (1, 3, START_MS)
    );
    assert_eq!(profile.last_visit_id.as_deref(), Some("visit-3"));
    assert_eq!(restarted.get("visitor-a").pages_this_visit, 1);
}

#[test]
fn a_concurrent_start_applies_as_a_normal_beacon() {
    let h = Harness::new();
    let profile = KnownProfile::new(9, START_MS);
    let first = beacon(
        "visitor-a",
        "visit-1",
        BeaconKind::PageView,
        "https://shop.example/a",
    );
    // Two requests both got NeedsProfile; the second start finds the visit already started.
    assert!(recorded(true)(&h.presence.start_visit(&first, &profile)));
    let second = beacon(
        "visitor-a",
        "visit-1",
        BeaconKind::PageView,
        "https://shop.example/b",
    );
    assert_eq!(
        h.presence.start_visit(&second, &profile),
        Observation::Recorded {
            persist: None,
            visit_started: false
        }
    );
    let card = h.get("visitor-a");
    assert_eq!((card.visits, card.pages_this_visit), (1, 2));
    h.check_counts([1, 1, 0, 0, 0, 0]);
}

#[test]
fn unknown_visitors_leave_and_crawlers() {
    let h = Harness::new();
    let leave = beacon(
        "visitor-a",
        "visit-1",
        BeaconKind::Leave,
        "https://shop.example/",
    );
    assert_eq!(h.presence.observe(&leave), Observation::Ignored);
    assert_eq!(
        h.presence
            .start_visit(&leave, &KnownProfile::new(1, START_MS)),
        Observation::Ignored
    );
    let heartbeat = beacon(
        "visitor-a",
        "visit-1",
        BeaconKind::Heartbeat,
        "https://shop.example/",
    );
    assert_eq!(h.presence.observe(&heartbeat), Observation::NeedsProfile);

    let bot = Beacon {
        user_agent: GOOGLEBOT,
        ..beacon(
            "bot",
            "bot-visit",
            BeaconKind::PageView,
            "https://shop.example/",
        )
    };
    assert_eq!(h.presence.observe(&bot), Observation::Crawler);
    assert_eq!(
        h.presence
            .start_visit(&bot, &KnownProfile::new(2, START_MS)),
        Observation::Crawler
    );
    assert!(h.presence.is_empty());
    assert!(h.presence.snapshot(SITE).is_empty());

    // Ids must be non-empty and bounded.
    let long_id = "v".repeat(crate::text::MAX_ID_LEN + 1);
    for bad in [
        beacon("", "visit-1", BeaconKind::PageView, "https://shop.example/"),
        beacon(
            &long_id,
            "visit-1",
            BeaconKind::PageView,
            "https://shop.example/",
        ),
        beacon(
            "visitor-a",
            "",
            BeaconKind::PageView,
            "https://shop.example/",
        ),
    ] {
        assert_eq!(h.presence.observe(&bad), Observation::Ignored);
        assert_eq!(
            h.presence
                .start_visit(&bad, &KnownProfile::new(3, START_MS)),
            Observation::Ignored
        );
    }
    assert_eq!(h.presence.len(), 0);
}

/// One step of a segment scenario: what to do, then the expected counts
/// [all, active, on_chat, customers, auto_messaged, blocked] after a sweep.
enum Step {
    Page(&'static str, &'static str),
    Heartbeat(&'static str),
    Leave(&'static str),
    Identify(&'static str, Option<&'static str>, Option<&'static str>),
    OnChat(&'static str, bool),
    AutoMessaged(&'static str, bool),
    Blocked(&'static str, bool),
    /// Moves the clock to START_MS + this many ms.
    At(i64),
}

#[track_caller]
fn check_scenario(config: PresenceConfig, steps: &[(Step, [u64; 6])]) {
    let h = Harness::with_config(config);
    for (index, (step, expected)) in steps.iter().enumerate() {
        match *step {
            Step::Page(visitor, visit) => {
                h.page(visitor, visit, "https://shop.example/");
            }
            Step::Heartbeat(visitor) => {
                h.heartbeat(visitor, "visit-1");
            }
            Step::Leave(visitor) => {
                h.send(&beacon(
                    visitor,
                    "visit-1",
                    BeaconKind::Leave,
                    "https://shop.example/",
                ));
            }
            Step::Identify(visitor, name, email) => {
                h.send(&beacon(
                    visitor,
                    "visit-1",
                    identify(name, email),
                    "https://shop.example/",
                ));
            }
            Step::OnChat(visitor, on) => assert!(h.presence.set_on_chat(SITE, visitor, on)),
            Step::AutoMessaged(visitor, on) => {
                assert!(h.presence.set_auto_messaged(SITE, visitor, on))
            }
            Step::Blocked(visitor, on) => assert!(h.presence.set_blocked(SITE, visitor, on)),
            Step::At(ms) => h.clock.set(START_MS + ms),
        }
        h.presence.sweep();
        let counts = h.counts();
        let actual = Segment::ALL.map(|segment| counts.get(segment));
        assert_eq!(&actual, expected, "after step {index}");
        assert_eq!(
            counts,
            scanned_counts(&h.presence, SITE),
            "counters agree with a scan after step {index}"
        );
    }
}

#[test]
fn segments_follow_time_with_a_manual_clock() {
    let config = PresenceConfig {
        active_window_ms: 10 * MINUTE,
        retention_ms: 30 * MINUTE,
        ..PresenceConfig::default()
    };
    use Step::*;
    check_scenario(
        config,
        &[
            (Page("a", "visit-1"), [1, 1, 0, 0, 0, 0]),
            (At(MINUTE), [1, 1, 0, 0, 0, 0]),
            (Page("b", "visit-1"), [2, 2, 0, 0, 0, 0]),
            // One ms before a's window ends, a is still active; at the end it is demoted.
            (At(10 * MINUTE - 1), [2, 2, 0, 0, 0, 0]),
            (At(10 * MINUTE), [2, 1, 0, 0, 0, 0]),
            (At(11 * MINUTE), [2, 0, 0, 0, 0, 0]),
            // A heartbeat brings a back to Active, with a new window.
            (Heartbeat("a"), [2, 1, 0, 0, 0, 0]),
            (At(21 * MINUTE - 1), [2, 1, 0, 0, 0, 0]),
            (At(21 * MINUTE), [2, 0, 0, 0, 0, 0]),
            // b's last activity was at 1 min: it leaves memory 30 min later, a 30 min after 11.
            (At(31 * MINUTE - 1), [2, 0, 0, 0, 0, 0]),
            (At(31 * MINUTE), [1, 0, 0, 0, 0, 0]),
            (At(41 * MINUTE), [0, 0, 0, 0, 0, 0]),
        ],
    );
}

#[test]
fn segments_follow_identity_flags_and_leaving() {
    use Step::*;
    check_scenario(
        PresenceConfig::default(),
        &[
            (Page("a", "visit-1"), [1, 1, 0, 0, 0, 0]),
            (Page("b", "visit-1"), [2, 2, 0, 0, 0, 0]),
            // A phone alone does not make a customer; a name or an email does.
            (Identify("a", None, None), [2, 2, 0, 0, 0, 0]),
            (Identify("a", Some("Ann"), None), [2, 2, 0, 1, 0, 0]),
            (
                Identify("b", None, Some("bob@example.com")),
                [2, 2, 0, 2, 0, 0],
            ),
            (OnChat("a", true), [2, 2, 1, 2, 0, 0]),
            (OnChat("a", true), [2, 2, 1, 2, 0, 0]),
            (AutoMessaged("b", true), [2, 2, 1, 2, 1, 0]),
            (Blocked("b", true), [2, 2, 1, 2, 1, 1]),
            // A new visit resets AutoMessaged and keeps Blocked and the identity.
            (Page("b", "visit-2"), [2, 2, 1, 2, 0, 1]),
            (Blocked("b", false), [2, 2, 1, 2, 0, 0]),
            (OnChat("a", false), [2, 2, 0, 2, 0, 0]),
            // Leaving does not end Active (pagehide also fires on ordinary navigation); the
            // window does.
            (Leave("a"), [2, 2, 0, 2, 0, 0]),
            (Heartbeat("a"), [2, 2, 0, 2, 0, 0]),
        ],
    );
}

#[test]
fn flags_need_a_live_visitor() {
    let h = Harness::new();
    assert!(!h.presence.set_on_chat(SITE, "nobody", true));
    h.page("a", "visit-1", "https://shop.example/");
    assert!(!h.presence.set_blocked(SITE, "nobody", true));
    assert!(!h.presence.set_auto_messaged("other-site", "a", true));
    assert!(h.presence.set_blocked(SITE, "a", true));
    assert!(h.get("a").segments.contains(Segment::Blocked));
}

#[test]
fn leave_sets_left_and_the_next_beacon_clears_it() {
    let h = Harness::new();
    h.page("a", "visit-1", "https://shop.example/");
    h.clock.advance(3_000);
    let leave = beacon("a", "visit-1", BeaconKind::Leave, "https://shop.example/");
    assert_eq!(
        h.send(&leave),
        Observation::Recorded {
            persist: None,
            visit_started: false
        }
    );
    let card = h.get("a");
    assert_eq!(card.left_ms, Some(START_MS + 3_000));
    assert_eq!(card.last_activity_ms, START_MS, "a leave is not activity");
    assert!(
        card.segments.contains(Segment::Active),
        "a leave does not end the active window"
    );
    // A leave for another visit of the same visitor changes nothing.
    let stale = beacon("a", "visit-0", BeaconKind::Leave, "https://shop.example/");
    assert_eq!(h.send(&stale), Observation::Ignored);
    h.clock.advance(1_000);
    h.heartbeat("a", "visit-1");
    let card = h.get("a");
    assert_eq!(card.left_ms, None);
    assert_eq!(card.last_activity_ms, START_MS + 4_000);
    assert!(card.segments.contains(Segment::Active));
}

#[test]
fn history_is_bounded_and_counts_every_page() {
    let h = Harness::with_config(PresenceConfig {
        history_limit: 3,
        ..PresenceConfig::default()
    });
    for page in 0..7 {
        h.page("a", "visit-1", &format!("https://shop.example/p{page}"));
        h.clock.advance(1_000);
    }
    let card = h.get("a");
    assert_eq!(card.pages_this_visit, 7);
    let urls: Vec<&str> = card.history.iter().map(|page| &*page.url).collect();
    assert_eq!(
        urls,
        [
            "https://shop.example/p4",
            "https://shop.example/p5",
            "https://shop.example/p6"
        ]
    );
    let times: Vec<i64> = card
        .history
        .iter()
        .map(|page| page.at_ms - START_MS)
        .collect();
    assert_eq!(times, [4_000, 5_000, 6_000]);
    assert_eq!(&*card.landing_url, "https://shop.example/p0");
    assert_eq!(&*card.current_url, "https://shop.example/p6");
    assert_eq!(card.page_since_ms, START_MS + 6_000);
}

#[test]
fn a_later_page_supplies_the_campaign_of_a_visit_without_one() {
    let h = Harness::new();
    h.page("a", "visit-1", "https://shop.example/?ref=nav");
    assert_eq!(
        h.get("a").campaign.other,
        vec![(Arc::from("ref"), Arc::from("nav"))]
    );
    let h = Harness::new();
    h.page("a", "visit-1", "https://shop.example/");
    h.page("a", "visit-1", "https://shop.example/?ref=nav");
    assert!(
        h.get("a").campaign.is_empty(),
        "a bare ref on a later page is not a campaign"
    );
    h.page("a", "visit-1", "https://shop.example/?utm_campaign=spring");
    assert_eq!(h.get("a").campaign.name.as_deref(), Some("spring"));
    h.page("a", "visit-1", "https://shop.example/?utm_campaign=autumn");
    assert_eq!(
        h.get("a").campaign.name.as_deref(),
        Some("spring"),
        "the first campaign stays"
    );
}

#[test]
fn identify_persists_and_events_are_bounded() {
    let h = Harness::with_config(PresenceConfig {
        events_limit: 2,
        ..PresenceConfig::default()
    });
    h.page("a", "visit-1", "https://shop.example/");
    let ann = BeaconKind::Identify(Identity {
        name: Some("  Ann  ".into()),
        email: None,
        phone: Some("+46 70 000".into()),
        props: vec![("plan".into(), PropValue::String("pro".into()))],
    });
    let Observation::Recorded {
        persist: Some(profile),
        ..
    } = h.send(&beacon(
        "a",
        "visit-1",
        ann.clone(),
        "https://shop.example/",
    ))
    else {
        panic!("a changed identity persists");
    };
    assert_eq!(profile.identity.name.as_deref(), Some("Ann"));
    assert_eq!(profile.last_visit_id.as_deref(), Some("visit-1"));
    // The same identity again changes nothing.
    assert_eq!(
        h.send(&beacon("a", "visit-1", ann, "https://shop.example/")),
        Observation::Recorded {
            persist: None,
            visit_started: false
        }
    );

    for (index, name) in ["viewed", "added_to_cart", "checkout"]
        .into_iter()
        .enumerate()
    {
        h.clock.set(START_MS + index as i64);
        let event = BeaconKind::Event(CustomEvent {
            name: name.into(),
            props: vec![("step".into(), PropValue::Number(index as f64))],
        });
        h.send(&beacon("a", "visit-1", event, "https://shop.example/"));
    }
    let card = h.get("a");
    let events: Vec<(&str, i64)> = card
        .events
        .iter()
        .map(|event| (&*event.name, event.at_ms - START_MS))
        .collect();
    assert_eq!(events, [("added_to_cart", 1), ("checkout", 2)]);
    assert_eq!(
        card.events[1].props,
        vec![("step".to_owned(), PropValue::Number(2.0))]
    );
    assert_eq!(card.identity.phone.as_deref(), Some("+46 70 000"));

    // The identity comes back from the profile after a restart.
    let restarted = h.restarted();
    restarted.page("a", "visit-2", "https://shop.example/");
    let card = restarted.get("a");
    assert_eq!(card.identity.name.as_deref(), Some("Ann"));
    assert!(card.segments.contains(Segment::Customers));
    assert_eq!(card.visits, 2);
}

#[test]
fn untrusted_text_is_bounded() {
    let h = Harness::new();
    let url = format!("https://shop.example/{}", "p".repeat(5_000));
    let title = "é".repeat(1_000);
    let language = "x".repeat(100);
    let page = Beacon {
        title: &title,
        language: Some(&language),
        referrer: Some(&url),
        ..beacon("a", "visit-1", BeaconKind::PageView, &url)
    };
    h.send(&page);
    let card = h.get("a");
    assert_eq!(card.current_url.len(), crate::text::MAX_URL_LEN);
    assert_eq!(card.current_title.len(), crate::text::MAX_TITLE_LEN);
    assert_eq!(
        card.referrer.map(|referrer| referrer.len()),
        Some(crate::text::MAX_URL_LEN)
    );
    assert_eq!(
        card.language.map(|language| language.len()),
        Some(crate::text::MAX_LANGUAGE_LEN)
    );
}

/// Visitors for listing tests: (id, name, email, sample ip index, url).
fn listing_harness() -> Harness {
    let h = Harness::new();
    let people = [
        (
            "v-ann",
            Some("Ann Archer"),
            Some("ann@alpha.example"),
            0,
            "https://shop.example/shoes",
        ),
        ("v-bob", Some("Bob"), None, 1, "https://shop.example/hats"),
        (
            "v-cid",
            None,
            Some("cid@beta.example"),
            2,
            "https://shop.example/SHOES/red",
        ),
        ("v-dan", None, None, 3, "https://shop.example/checkout"),
    ];
    for (index, (id, name, email, ip, url)) in people.into_iter().enumerate() {
        h.clock.set(START_MS + index as i64 * 1_000);
        let page = Beacon {
            ip: fixture::sample_ip(ip),
            ..beacon(id, "visit-1", BeaconKind::PageView, url)
        };
        h.send(&page);
        if name.is_some() || email.is_some() {
            h.send(&Beacon {
                ip: fixture::sample_ip(ip),
                ..beacon(id, "visit-1", identify(name, email), url)
            });
        }
    }
    h
}

#[track_caller]
fn check_list(h: &Harness, segment: Segment, search: Option<&str>, expected: &[&str]) {
    let page = h.presence.list(
        SITE,
        &ListQuery {
            segment,
            search: search.map(str::to_owned),
            cursor: None,
            limit: 100,
        },
    );
    let ids: Vec<&str> = page.visitors.iter().map(|visitor| &*visitor.id).collect();
    assert_eq!(ids, expected, "segment {segment}, search {search:?}");
    assert_eq!(page.total_matching, expected.len());
    assert_eq!(page.next_cursor, None);
}

#[test]
fn listing_filters_searches_and_orders() {
    let h = listing_harness();
    assert!(h.presence.set_on_chat(SITE, "v-bob", true));
    let ip_of_cid = fixture::sample_ip(2).to_string();
    let city_of_dan = h
        .get("v-dan")
        .geo
        .city
        .clone()
        .expect("fixture network 3 has a city");
    let city_of_ann = h
        .get("v-ann")
        .geo
        .city
        .clone()
        .expect("fixture network 0 has a city");
    assert_ne!(city_of_ann, city_of_dan);
    for (segment, search, expected) in [
        (
            Segment::All,
            None,
            &["v-dan", "v-cid", "v-bob", "v-ann"][..],
        ),
        (Segment::Active, None, &["v-dan", "v-cid", "v-bob", "v-ann"]),
        (Segment::Customers, None, &["v-cid", "v-bob", "v-ann"]),
        (Segment::OnChat, None, &["v-bob"]),
        (Segment::Blocked, None, &[]),
        // Name, email, IP, city and current URL, ignoring case.
        (Segment::All, Some("ann ARCHER"), &["v-ann"]),
        (Segment::All, Some("BETA.example"), &["v-cid"]),
        (Segment::All, Some(ip_of_cid.as_str()), &["v-cid"]),
        (Segment::All, Some(&*city_of_dan.to_uppercase()), &["v-dan"]),
        (Segment::All, Some("shoes"), &["v-cid", "v-ann"]),
        (Segment::Customers, Some("shoes"), &["v-cid", "v-ann"]),
        (Segment::OnChat, Some("shoes"), &[]),
        (Segment::All, Some("nothing-like-this"), &[]),
        (
            Segment::All,
            Some("   "),
            &["v-dan", "v-cid", "v-bob", "v-ann"],
        ),
    ] {
        check_list(&h, segment, search, expected);
    }
}

#[test]
fn equal_activity_lists_higher_numbers_first() {
    let h = Harness::new();
    for id in ["first", "second", "third"] {
        h.page(id, "visit-1", "https://shop.example/");
    }
    let ids: Vec<String> = h
        .presence
        .snapshot(SITE)
        .iter()
        .map(|visitor| visitor.id.to_string())
        .collect();
    assert_eq!(ids, ["third", "second", "first"]);
}

#[test]
fn cursor_pages_cover_every_visitor_once_despite_inserts() {
    let h = Harness::new();
    for index in 0..57 {
        // Several visitors share each millisecond, so ties are broken by number.
        h.clock.set(START_MS + index / 3);
        h.page(
            &format!("visitor-{index:03}"),
            "visit-1",
            "https://shop.example/",
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = h.presence.list(
            SITE,
            &ListQuery {
                segment: Segment::All,
                search: None,
                cursor: cursor.clone(),
                limit: 10,
            },
        );
        pages += 1;
        assert!(page.visitors.len() <= 10);
        // The cursor survives its text form, as it travels through the API.
        cursor = page
            .next_cursor
            .map(|cursor| cursor.to_string().parse().expect("cursor parses"));
        seen.extend(page.visitors.iter().map(|visitor| visitor.id.to_string()));
        // New visitors arrive between pages; they are newer than every cursor.
        h.clock.advance(1_000);
        h.page(&format!("late-{pages}"), "visit-1", "https://shop.example/");
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 6);
    let mut expected: Vec<String> = (0..57).map(|index| format!("visitor-{index:03}")).collect();
    expected.reverse();
    assert_eq!(
        seen, expected,
        "every original visitor exactly once, newest first"
    );
}

#[test]
fn change_feed_coalesces() {
    let h = Harness::new();
    assert!(!h.presence.has_changes(SITE));
    for page in 0..10 {
        h.clock.advance(100);
        h.page("a", "visit-1", &format!("https://shop.example/{page}"));
    }
    assert!(h.presence.has_changes(SITE));
    let Changes {
        upserted,
        removed,
        counts,
    } = h.presence.drain_changes(SITE);
    assert_eq!(upserted.len(), 1, "ten beacons, one upsert");
    assert_eq!(upserted[0].pages_this_visit, 10);
    assert!(removed.is_empty());
    assert_eq!(counts.all, 1);
    assert!(!h.presence.has_changes(SITE));

    // A heartbeat that only moves last activity is not a change.
    h.clock.advance(100);
    h.heartbeat("a", "visit-1");
    assert!(!h.presence.has_changes(SITE));
    assert!(h.presence.drain_changes(SITE).upserted.is_empty());

    // Demotion by the sweep is, and so is the heartbeat that brings the visitor back.
    h.clock.advance(PresenceConfig::default().active_window_ms);
    assert_eq!(h.presence.sweep().demoted, 1);
    let changes = h.presence.drain_changes(SITE);
    assert_eq!(changes.upserted.len(), 1);
    assert_eq!(changes.counts.active, 0);
    h.heartbeat("a", "visit-1");
    let changes = h.presence.drain_changes(SITE);
    assert_eq!(changes.upserted.len(), 1);
    assert!(changes.upserted[0].segments.contains(Segment::Active));

    // A Leave and a flag are changes.
    h.send(&beacon(
        "a",
        "visit-1",
        BeaconKind::Leave,
        "https://shop.example/",
    ));
    assert_eq!(
        h.presence.drain_changes(SITE).upserted[0].left_ms,
        Some(h.presence.now_ms())
    );
    h.presence.set_on_chat(SITE, "a", true);
    assert_eq!(h.presence.drain_changes(SITE).upserted.len(), 1);

    // Removal cancels a pending upsert.
    h.page("b", "visit-1", "https://shop.example/");
    h.clock.advance(PresenceConfig::default().retention_ms);
    h.page("a", "visit-1", "https://shop.example/");
    let report = h.presence.sweep();
    assert_eq!(report.removed, 1);
    let changes = h.presence.drain_changes(SITE);
    let upserted: Vec<&str> = changes
        .upserted
        .iter()
        .map(|visitor| &*visitor.id)
        .collect();
    assert_eq!(upserted, ["a"]);
    assert_eq!(changes.removed, vec![Arc::from("b")]);

    // A visitor removed and back before the drain is only upserted.
    h.clock.advance(PresenceConfig::default().retention_ms);
    h.presence.sweep();
    h.page("a", "visit-2", "https://shop.example/");
    let changes = h.presence.drain_changes(SITE);
    assert_eq!(changes.upserted.len(), 1);
    assert!(changes.removed.is_empty());
}

#[test]
fn a_quiet_feed_keeps_recording() {
    let h = Harness::new();
    h.page("a", "visit-1", "https://shop.example/");
    h.presence.drain_changes(SITE);
    // Nothing changes for longer than the retention period (heartbeats are not changes).
    for _ in 0..4 {
        h.clock.advance(PresenceConfig::default().retention_ms / 3);
        h.heartbeat("a", "visit-1");
        h.presence.sweep();
    }
    h.page("b", "visit-1", "https://shop.example/");
    assert!(h.presence.has_changes(SITE));
    assert_eq!(h.presence.drain_changes(SITE).upserted.len(), 1);
}

#[test]
fn an_unwatched_feed_stops_recording_until_watched_again() {
    let h = Harness::new();
    let retention = PresenceConfig::default().retention_ms;
    h.page("a", "visit-1", "https://shop.example/");
    h.clock.advance(retention / 2);
    h.page("b", "visit-1", "https://shop.example/");
    h.clock.advance(retention / 2 + 1);
    h.heartbeat("b", "visit-1");
    // a is removed; nobody drained for a retention period, so the feed lapses.
    h.presence.sweep();
    assert!(!h.presence.has_changes(SITE));
    h.page("b", "visit-1", "https://shop.example/x");
    assert!(!h.presence.has_changes(SITE), "not recording");
    // A snapshot (what a new panel starts from) starts recording again.
    assert_eq!(h.presence.snapshot(SITE).len(), 1);
    h.page("b", "visit-1", "https://shop.example/y");
    let changes = h.presence.drain_changes(SITE);
    assert_eq!(changes.upserted.len(), 1);
    assert_eq!(&*changes.upserted[0].current_url, "https://shop.example/y");
}

#[test]
fn sweep_reports_the_next_deadline_and_retires_empty_sites() {
    let config = PresenceConfig::default();
    let h = Harness::new();
    let report = h.presence.sweep();
    assert_eq!(report.next_due_ms, Some(START_MS + config.active_window_ms));
    h.clock.set(START_MS + 1_500);
    h.page("a", "visit-1", "https://shop.example/");
    h.clock.set(START_MS + 2_000);
    let report = h.presence.sweep();
    // a is due at START + 1.5 s + window; the report rounds up to the end of that second.
    assert_eq!(
        report.next_due_ms,
        Some(START_MS + 2_000 + config.active_window_ms)
    );
    assert_eq!((report.demoted, report.removed), (0, 0));

    h.clock.set(START_MS + 1_500 + config.active_window_ms);
    let report = h.presence.sweep();
    assert_eq!(report.demoted, 1);
    assert_eq!(
        report.next_due_ms,
        Some(h.presence.now_ms() + config.active_window_ms)
    );
    h.clock.set(START_MS + 1_500 + config.retention_ms);
    let report = h.presence.sweep();
    assert_eq!(report.removed, 1);
    assert_eq!(
        h.presence.sites(),
        vec![Arc::from(SITE)],
        "the removal is still to be drained"
    );
    h.presence.drain_changes(SITE);
    h.presence.sweep();
    assert!(
        h.presence.sites().is_empty(),
        "an empty, drained site is dropped"
    );
    assert_eq!(h.presence.counts(SITE), SegmentCounts::default());
    // The site comes back with its next visitor.
    h.page("b", "visit-1", "https://shop.example/");
    assert_eq!(h.presence.len(), 1);
}

#[test]
fn interned_text_of_removed_visitors_is_freed() {
    let h = Harness::new();
    for index in 0..20 {
        let url = format!("https://shop.example/p{index}?utm_source=s{index}");
        let referrer = format!("https://ref{index}.example/");
        let visitor = format!("v{index}");
        let page = Beacon {
            referrer: Some(&referrer),
            ..beacon(&visitor, "visit-1", BeaconKind::PageView, &url)
        };
        h.send(&page);
        h.page(
            &format!("v{index}"),
            "visit-1",
            "https://shop.example/shared",
        );
    }
    // 20 landing pages + the shared one; 20 referrers + 1 language; 20 campaigns.
    assert_eq!(h.presence.interned_len(), (21, 21, 20));
    h.clock.advance(PresenceConfig::default().retention_ms);
    h.page("v0", "visit-1", "https://shop.example/shared");
    assert_eq!(h.presence.sweep().removed, 19);
    // v0 still holds its landing page, the shared page, its referrer, the language and its
    // campaign.
    assert_eq!(h.presence.interned_len(), (2, 2, 1));
    let card = h.get("v0");
    assert_eq!(&*card.landing_url, "https://shop.example/p0?utm_source=s0");
    h.clock.advance(PresenceConfig::default().retention_ms);
    h.presence.sweep();
    assert_eq!(h.presence.interned_len(), (0, 0, 0));
}

#[test]
fn visitor_tables_shrink_after_a_peak() {
    let h = Harness::new();
    for index in 0..5_000 {
        h.page(&format!("peak-{index}"), "visit-1", "https://shop.example/");
    }
    let peak = h.presence.table_capacity(SITE);
    assert!(peak >= 5_000);
    h.clock.advance(PresenceConfig::default().retention_ms / 2);
    for index in 0..50 {
        h.page(&format!("peak-{index}"), "visit-1", "https://shop.example/");
    }
    h.clock.advance(PresenceConfig::default().retention_ms / 2);
    assert_eq!(h.presence.sweep().removed, 4_950);
    assert_eq!(h.presence.len(), 50);
    let after = h.presence.table_capacity(SITE);
    assert!(after * 8 < peak, "{after} buckets left of {peak}");
    for index in 0..50 {
        assert!(h.presence.get(SITE, &format!("peak-{index}")).is_some());
    }
}

#[test]
fn history_eviction_and_new_visits_release_interned_pages() {
    let h = Harness::with_config(PresenceConfig {
        history_limit: 2,
        ..PresenceConfig::default()
    });
    for page in 0..10 {
        h.page("a", "visit-1", &format!("https://shop.example/{page}"));
    }
    h.presence.sweep();
    // The landing page and the two in the history.
    assert_eq!(h.presence.interned_len().0, 3);
    h.page("a", "visit-2", "https://shop.example/new");
    h.presence.sweep();
    assert_eq!(h.presence.interned_len().0, 1);
}

/// Many threads ingest overlapping visitors and flip flags while a sweeper runs and time moves;
/// the counters must equal a full scan at the end.
#[test]
fn counts_stay_exact_under_concurrent_ingestion() {
    const THREADS: usize = 8;
    const BEACONS: usize = 4_000;
    const VISITORS: usize = 300;
    let h = Arc::new(Harness::with_config(PresenceConfig {
        active_window_ms: 2_000,
        retention_ms: 6_000,
        history_limit: 5,
        events_limit: 3,
    }));
    let sweeper = {
        let h = Arc::clone(&h);
        std::thread::spawn(move || {
            for _ in 0..400 {
                h.presence.sweep();
                std::thread::yield_now();
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                // A small deterministic generator per thread.
                let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (thread as u64 + 1);
                let mut next = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                for _ in 0..BEACONS {
                    let roll = next();
                    let visitor = format!("visitor-{:03}", roll % VISITORS as u64);
                    let visit = format!("visit-{}", (roll >> 20) % 3);
                    let url = format!("https://shop.example/p{}", (roll >> 30) % 40);
                    let kind = match (roll >> 40) % 10 {
                        0 => BeaconKind::Leave,
                        1 => identify(Some("Ann"), None),
                        2 => BeaconKind::Event(CustomEvent {
                            name: "click".into(),
                            props: Vec::new(),
                        }),
                        3 | 4 => BeaconKind::Heartbeat,
                        _ => BeaconKind::PageView,
                    };
                    let page = Beacon {
                        ip: fixture::sample_ip((roll % 50) as usize),
                        ..beacon(&visitor, &visit, kind, &url)
                    };
                    h.send(&page);
                    match (roll >> 50) % 16 {
                        0 => {
                            h.presence.set_on_chat(SITE, &visitor, roll & 1 == 0);
                        }
                        1 => {
                            h.presence.set_auto_messaged(SITE, &visitor, roll & 1 == 0);
                        }
                        2 => {
                            h.presence.set_blocked(SITE, &visitor, roll & 1 == 0);
                        }
                        3 => h.clock.advance(25),
                        4 => {
                            h.presence.drain_changes(SITE);
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished");
    }
    sweeper.join().expect("sweeper finished");

    let counts = h.presence.counts(SITE);
    assert!(
        counts.all > 0 && counts.all <= VISITORS as u64,
        "{counts:?}"
    );
    assert_eq!(counts, scanned_counts(&h.presence, SITE));
    assert_eq!(counts.all as usize, h.presence.len());
    for segment in Segment::ALL {
        let listed = h.presence.list(
            SITE,
            &ListQuery {
                segment,
                limit: 1,
                ..ListQuery::default()
            },
        );
        assert_eq!(
            listed.total_matching as u64,
            counts.get(segment),
            "{segment}"
        );
    }
    // Time runs out for everyone: everything is swept and every interned value freed.
    h.clock.advance(10_000);
    h.presence.sweep();
    assert_eq!(h.presence.counts(SITE), SegmentCounts::default());
    assert!(h.presence.is_empty());
    h.presence.drain_changes(SITE);
    h.presence.sweep();
    assert_eq!(h.presence.interned_len(), (0, 0, 0));
    assert!(h.presence.sites().is_empty());
}

#[test]
fn visitors_of_different_sites_are_apart() {
    let h = Harness::new();
    h.page("a", "visit-1", "https://shop.example/");
    let other = Beacon {
        site: "site-two",
        ..beacon(
            "a",
            "visit-1",
            BeaconKind::PageView,
            "https://other.example/",
        )
    };
    h.send(&other);
    assert_eq!(h.presence.len(), 2);
    let mut sites: Vec<String> = h
        .presence
        .sites()
        .iter()
        .map(|site| site.to_string())
        .collect();
    sites.sort();
    assert_eq!(sites, ["site-one", "site-two"]);
    assert_eq!(
        &*h.presence.get("site-two", "a").unwrap().current_url,
        "https://other.example/"
    );
    assert_eq!(h.presence.counts("site-two").all, 1);
    assert_eq!(h.presence.counts("unknown").all, 0);
    assert!(
        h.presence
            .list("unknown", &ListQuery::default())
            .visitors
            .is_empty()
    );
    assert!(h.presence.drain_changes("unknown").upserted.is_empty());
}

#[test]
#[should_panic(expected = "active_window_ms")]
fn an_invalid_config_is_refused() {
    let config = PresenceConfig {
        active_window_ms: 0,
        ..PresenceConfig::default()
    };
    Presence::new(
        config,
        Arc::new(Enricher::without_geo()),
        Arc::new(ManualClock::new(0)),
    );
}

#[test]
fn presence_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Presence>();
    let address: IpAddr = "::ffff:81.2.69.160".parse().unwrap();
    let h = Harness::new();
    h.send(&Beacon {
        ip: address,
        ..beacon(
            "a",
            "visit-1",
            BeaconKind::PageView,
            "https://shop.example/",
        )
    });
    // Mapped IPv4 addresses come back as IPv4.
    assert_eq!(h.get("a").ip, "81.2.69.160".parse::<IpAddr>().unwrap());
}

#[test]
fn an_agent_edits_a_live_identity_and_customers_follows() {
    let h = Harness::new();
    h.page("v1", "s1", "https://shop.example/");
    h.send(&beacon(
        "v1",
        "s1",
        identify(Some("Ada"), None),
        "https://shop.example/",
    ));
    h.check_counts([1, 1, 0, 1, 0, 0]);
    let _ = h.presence.drain_changes(SITE);

    // Clearing the name leaves nothing that makes a customer.
    let identity = h
        .presence
        .edit_identity(SITE, "v1", |identity| identity.name = None)
        .expect("live");
    assert_eq!(identity, Identity::default());
    h.check_counts([1, 1, 0, 0, 0, 0]);
    assert_eq!(h.presence.drain_changes(SITE).upserted.len(), 1);

    // Setting email and phone makes a customer again, bounded like a beacon's identity.
    let long = "x".repeat(1000);
    let identity = h
        .presence
        .edit_identity(SITE, "v1", |identity| {
            identity.email = Some("ada@example.com".into());
            identity.phone = Some(long.clone());
        })
        .expect("live");
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert!(identity.phone.as_ref().unwrap().len() < long.len());
    assert_eq!(h.get("v1").identity, identity);
    h.check_counts([1, 1, 0, 1, 0, 0]);

    // An edit that changes nothing marks nothing.
    let _ = h.presence.drain_changes(SITE);
    h.presence
        .edit_identity(SITE, "v1", |identity| {
            identity.email = Some("ada@example.com".into())
        })
        .expect("live");
    assert!(h.presence.drain_changes(SITE).upserted.is_empty());

    // The edit is what the next identify beacon's persisted profile starts from.
    let persisted = h.send(&beacon(
        "v1",
        "s1",
        identify(Some("Ada L."), None),
        "https://shop.example/",
    ));
    let Observation::Recorded {
        persist: Some(profile),
        ..
    } = persisted
    else {
        panic!("an identity change is persisted: {persisted:?}");
    };
    assert_eq!(profile.identity.name.as_deref(), Some("Ada L."));
    assert_eq!(profile.identity.email.as_deref(), Some("ada@example.com"));
    assert!(
        h.presence
            .edit_identity(SITE, "nobody", |identity| identity.name = None)
            .is_none()
    );
}

#[test]
fn views_agree_with_snapshots() {
    let h = Harness::new();
    let mut landing = beacon(
        "a",
        "visit-1",
        BeaconKind::PageView,
        "https://shop.example/?utm_source=ads&utm_campaign=spring",
    );
    landing.referrer = Some("https://search.example/");
    h.send(&landing);
    h.clock.advance(5_000);
    h.page("a", "visit-1", "https://shop.example/pricing");
    h.send(&beacon(
        "a",
        "visit-1",
        identify(Some("Ann"), None),
        "https://shop.example/pricing",
    ));
    h.page("b", "visit-9", "https://shop.example/b");
    let card = h.get("a");
    let seen = h
        .presence
        .with_visitor(SITE, "a", |view| {
            assert_eq!(view.id(), "a");
            assert_eq!(view.current_url(), &*card.current_url);
            assert_eq!(view.current_title(), &*card.current_title);
            assert_eq!(view.page_since_ms(), card.page_since_ms);
            assert_eq!(view.visit_started_ms(), card.visit_started_ms);
            assert_eq!(view.pages_this_visit(), 2);
            assert_eq!(view.visits(), card.visits);
            assert_eq!(view.landing_url(), &*card.landing_url);
            assert_eq!(
                view.earlier_urls().collect::<Vec<_>>(),
                ["https://shop.example/?utm_source=ads&utm_campaign=spring"]
            );
            assert_eq!(view.referrer(), Some("https://search.example/"));
            assert_eq!(view.language(), Some("en-GB"));
            assert_eq!(view.campaign(), Some(&card.campaign));
            assert_eq!(view.geo(), &*card.geo);
            assert_eq!(view.client(), &*card.client);
            assert_eq!(view.ip(), card.ip);
            assert_eq!(view.identity(), Some(&card.identity));
            assert!(view.events().is_empty());
            assert_eq!(view.segments(), card.segments);
            assert_eq!(view.left_ms(), None);
            view.visit_tag()
        })
        .expect("a is live");
    // The visit tag stays for the visit and changes with a new one.
    h.page("a", "visit-1", "https://shop.example/cart");
    assert_eq!(
        h.presence.with_visitor(SITE, "a", |view| view.visit_tag()),
        Some(seen)
    );
    h.page("a", "visit-2", "https://shop.example/");
    assert_ne!(
        h.presence.with_visitor(SITE, "a", |view| view.visit_tag()),
        Some(seen)
    );
    assert!(h.presence.with_visitor(SITE, "nobody", |_| ()).is_none());
    assert!(h.presence.with_visitor("no-site", "a", |_| ()).is_none());

    let mut ids = Vec::new();
    h.presence
        .for_each_visitor(SITE, |view| ids.push(view.id().to_owned()));
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    h.presence
        .for_each_visitor("no-site", |_| panic!("no visitors"));
}
