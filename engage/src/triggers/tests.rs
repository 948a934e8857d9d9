//! Tests of the trigger engine against a real presence table, store and conversation service,
//! with manual clocks: the tracker's (visitor times) and the wall clock (calendar, limits,
//! statistics) move together.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use geoip::{Enricher, GeoDb, fixture};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tracker::{CustomEvent, Identity, PresenceConfig, PropValue};

use super::conditions::{Env, Truth, compile};
use super::model::parse_node;
use super::*;
use crate::conversations::{Content, Party};
use crate::ingest::Ingest;
use crate::model::{Agent, NewAgentRecord, Role, Site};
use crate::redb_store::RedbStore;
use crate::widget::{BusinessHours, Day, DayHours, PageRules};

const SITE: &str = "shop";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

/// Milliseconds of a UTC date and time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_opt(h, mi, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Friday 2026-03-27 10:00 UTC (11:00 in Warsaw, two days before DST starts).
fn t0() -> i64 {
    utc(2026, 3, 27, 10, 0)
}

#[derive(Debug, Default)]
struct TestContext {
    online: AtomicBool,
}

impl TriggerContext for TestContext {
    fn agents_online(&self, _site: &str) -> bool {
        self.online.load(Ordering::SeqCst)
    }
}

/// One beacon, with owned parts and sensible defaults.
#[derive(Clone, Debug)]
struct Visit {
    visitor: String,
    visit: String,
    url: String,
    title: String,
    referrer: Option<String>,
    ip: IpAddr,
    user_agent: &'static str,
    language: Option<String>,
    kind: BeaconKind,
}

fn visit(visitor: &str, url: &str) -> Visit {
    Visit {
        visitor: visitor.into(),
        visit: format!("{visitor}-1"),
        url: url.into(),
        title: "Shop".into(),
        referrer: None,
        ip: fixture::sample_ip(0),
        user_agent: CHROME,
        language: Some("en-GB".into()),
        kind: BeaconKind::PageView,
    }
}

impl Visit {
    fn kind(mut self, kind: BeaconKind) -> Visit {
        self.kind = kind;
        self
    }
    fn title(mut self, title: &str) -> Visit {
        self.title = title.into();
        self
    }
    fn visit_id(mut self, visit: &str) -> Visit {
        self.visit = visit.into();
        self
    }
}

struct Harness {
    dir: tempfile::TempDir,
    tracker_clock: tracker::ManualClock,
    wall: Arc<crate::ManualClock>,
    presence: Arc<Presence>,
    store: Arc<dyn Store>,
    conversations: Arc<Conversations>,
    triggers: Arc<Triggers>,
    ingest: Ingest,
    context: Arc<TestContext>,
    fired: broadcast::Receiver<TriggerEvent>,
    /// Deliveries [`Harness::fires`] read past, for [`Harness::delivered`]: a delivery may
    /// finish while the test still waits for the wake-ups (which yield between batches).
    deliveries: std::collections::VecDeque<(String, u64)>,
    conversation_events: broadcast::Receiver<ConversationEvent>,
    agent: Agent,
}

fn enricher() -> Arc<Enricher> {
    Arc::new(Enricher::with_geo(
        GeoDb::from_bytes(fixture::city_database()).unwrap(),
    ))
}

impl Harness {
    async fn new() -> Harness {
        Harness::open(tempfile::tempdir().unwrap(), t0()).await
    }

    /// A harness on `dir`'s store (a fresh presence table: a restart).
    async fn open(dir: tempfile::TempDir, now: i64) -> Harness {
        // A delivery task finishing may still hold the previous store for a moment.
        let mut attempts = 0;
        let store = loop {
            match RedbStore::open(dir.path()).await {
                Ok(store) => break store,
                Err(crate::StoreError::InUse(_)) if attempts < 500 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => panic!("{error}"),
            }
        };
        if store.site(SITE).await.unwrap().is_none() {
            store
                .create_site(&Site {
                    key: SITE.into(),
                    name: "Shop".into(),
                    allowed_origins: vec!["*".into()],
                    created_ms: 0,
                })
                .await
                .unwrap();
        }
        let agent = match store.agent_by_email("anna@shop.example").await.unwrap() {
            Some(agent) => agent,
            None => store
                .create_agent(NewAgentRecord {
                    email: "anna@shop.example".into(),
                    name: "Anna".into(),
                    role: Role::Owner,
                    password_hash: String::new(),
                    sites: Vec::new(),
                    created_ms: 0,
                    disabled: false,
                })
                .await
                .unwrap(),
        };
        let store: Arc<dyn Store> = Arc::new(store);
        let tracker_clock = tracker::ManualClock::new(now);
        let wall = Arc::new(crate::ManualClock::new(now));
        let presence = Arc::new(Presence::new(
            PresenceConfig::default(),
            enricher(),
            Arc::new(tracker_clock.clone()),
        ));
        let conversations = Arc::new(
            Conversations::start(Arc::clone(&store), wall.clone(), dir.path())
                .await
                .unwrap(),
        );
        let context = Arc::new(TestContext::default());
        let triggers = Triggers::start(
            Arc::clone(&presence),
            Arc::clone(&store),
            Arc::clone(&conversations),
            wall.clone(),
            context.clone(),
        )
        .await
        .unwrap();
        let ingest = Ingest::start(
            Arc::clone(&presence),
            Arc::clone(&store),
            Arc::clone(&conversations),
        )
        .await
        .unwrap()
        .with_triggers(Arc::clone(&triggers));
        Harness {
            fired: triggers.subscribe(),
            deliveries: Default::default(),
            conversation_events: conversations.subscribe(),
            dir,
            tracker_clock,
            wall,
            presence,
            store,
            conversations,
            triggers,
            ingest,
            context,
            agent,
        }
    }

    /// Stops everything (writing what is pending) and opens the same data directory again
    /// with a fresh presence table: a process restart.
    async fn restart(self, now: i64) -> Harness {
        self.triggers.shutdown().await.unwrap();
        self.ingest.shutdown().await.unwrap();
        // Everything but the directory is dropped at the end of this block, closing the store.
        let dir = {
            let stopped = self;
            let Harness { dir, .. } = stopped;
            dir
        };
        Harness::open(dir, now).await
    }

    fn advance(&self, ms: i64) {
        self.tracker_clock.advance(ms);
        self.wall.advance_ms(ms);
    }

    fn set_time(&self, ms: i64) {
        self.tracker_clock.set(ms);
        self.wall.set(ms);
    }

    async fn send(&self, visit: &Visit) {
        let beacon = Beacon {
            site: SITE,
            visitor_id: &visit.visitor,
            visit_id: &visit.visit,
            kind: visit.kind.clone(),
            url: &visit.url,
            title: &visit.title,
            referrer: visit.referrer.as_deref(),
            ip: visit.ip,
            user_agent: visit.user_agent,
            language: visit.language.as_deref(),
            screen: Some((1280, 800)),
        };
        self.ingest.record(&beacon).await.unwrap();
    }

    async fn page(&self, visitor: &str, url: &str) {
        self.send(&visit(visitor, url)).await;
    }

    async fn create(&self, body: Value) -> Trigger {
        self.triggers
            .create(SITE, Trigger::from_json(&body).unwrap())
            .await
            .unwrap()
    }

    /// (visitor, trigger, variant) of every fire since the last call.
    fn fires(&mut self) -> Vec<(String, u64, Option<String>)> {
        let mut fires = Vec::new();
        while let Ok(event) = self.fired.try_recv() {
            match event {
                TriggerEvent::Fired {
                    visitor_id,
                    trigger_id,
                    variant,
                    ..
                } => fires.push((visitor_id, trigger_id, variant)),
                TriggerEvent::Delivered {
                    visitor_id,
                    conversation_id,
                    ..
                } => self.deliveries.push_back((visitor_id, conversation_id)),
            }
        }
        fires
    }

    fn fired_visitors(&mut self) -> Vec<String> {
        let mut visitors: Vec<String> = self.fires().into_iter().map(|fire| fire.0).collect();
        visitors.sort();
        visitors
    }

    /// Waits for the delivery of `count` messages; returns (visitor, conversation id).
    async fn delivered(&mut self, count: usize) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while out.len() < count
            && let Some(delivery) = self.deliveries.pop_front()
        {
            out.push(delivery);
        }
        while out.len() < count {
            let event = tokio::time::timeout(Duration::from_secs(10), self.fired.recv())
                .await
                .expect("a delivery within 10 s")
                .unwrap();
            if let TriggerEvent::Delivered {
                visitor_id,
                conversation_id,
                ..
            } = event
            {
                out.push((visitor_id, conversation_id));
            }
        }
        out
    }

    /// Waits until no fire's message is waiting to be sent: with one proactive message at a
    /// time, the next fire for a visitor needs the last one's delivery done. (In the server the
    /// visitor is then on chat and gets no more; here nothing sets that flag, so a test can
    /// fire one trigger after another.)
    async fn settle(&self) {
        let state = self.triggers.site_state(SITE).unwrap();
        for _ in 0..1_000 {
            if state.awaiting.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("a trigger message is still waiting after 5 s");
    }

    /// Hands the conversation events published so far to the engine, as its observer task
    /// would.
    async fn pump_conversation_events(&mut self) {
        while let Ok(event) = self.conversation_events.try_recv() {
            self.triggers.observe_conversation(&event).await;
        }
    }

    async fn conversations_of(&self, visitor: &str) -> Vec<crate::Conversation> {
        self.store
            .conversations_of_visitor(SITE, visitor)
            .await
            .unwrap()
    }

    async fn set_widget(&self, change: impl FnOnce(&mut WidgetSettings)) {
        let mut settings = WidgetSettings::defaults("Shop");
        change(&mut settings);
        settings.validate().unwrap();
        self.store
            .put_widget_settings(SITE, &settings)
            .await
            .unwrap();
        self.triggers.reload_widget_settings(SITE).await;
    }
}

/// A trigger body with the given conditions and defaults for the rest.
fn body(name: &str, conditions: Value) -> Value {
    json!({
        "name": name,
        "enabled": true,
        "priority": 0,
        "conditions": conditions,
        "delay_secs": 0,
        "open_widget": false,
        "variants": [{"key": "a", "author": {"bot": "Porchlight"}, "text": "Hi {name|there}!"}],
        "control_percent": 0,
        "limit": {"mode": "once_per_visitor"},
        "goal": null
    })
}

fn url_contains(text: &str) -> Value {
    json!({"field": "url", "op": "contains", "value": text})
}

// Conditions, one by one.

/// Two visitors with a spread of attributes, and the time 30 s into Ann's second page.
async fn condition_harness() -> Harness {
    let h = Harness::new().await;
    let mut landing = visit(
        "ann",
        "https://shop.example/?utm_source=ads&utm_medium=cpc&utm_campaign=Spring&gclid=abc",
    );
    landing.referrer = Some("https://www.google.com/search?q=shoes".into());
    h.send(&landing).await;
    h.advance(5_000);
    h.send(&visit("ann", "https://shop.example/Pricing?plan=pro").title("Pricing plans"))
        .await;
    h.send(
        &visit("ann", "https://shop.example/Pricing?plan=pro").kind(BeaconKind::Identify(
            Identity {
                name: Some("Ann Lee".into()),
                email: Some("ann@example.com".into()),
                phone: None,
                props: vec![
                    ("plan".into(), PropValue::String("pro".into())),
                    ("seats".into(), PropValue::Number(3.0)),
                    ("trial".into(), PropValue::String("12".into())),
                ],
            },
        )),
    )
    .await;
    h.send(
        &visit("ann", "https://shop.example/Pricing?plan=pro").kind(BeaconKind::Event(
            CustomEvent {
                name: "Added_To_Cart".into(),
                props: vec![
                    ("sku".into(), PropValue::String("A-1".into())),
                    ("price".into(), PropValue::Number(30.0)),
                ],
            },
        )),
    )
    .await;
    let mut bob = visit("bob", "https://shop.example/blog/post?x=1");
    bob.ip = fixture::sample_ip(1);
    bob.user_agent = IPHONE;
    bob.language = None;
    h.send(&bob).await;
    h.advance(30_000);
    h
}

/// Evaluates one condition (JSON) for a visitor at the harness's time.
fn eval(h: &Harness, visitor: &str, condition: &Value, within_hours: bool) -> Truth {
    let node = compile(&parse_node(condition, "conditions").unwrap())
        .unwrap_or_else(|error| panic!("{condition}: {error}"));
    let hours = move || within_hours;
    let online = || h.context.online.load(Ordering::SeqCst);
    let env = Env::new(
        h.presence.now_ms(),
        h.wall.now_ms(),
        chrono_tz::Europe::Warsaw,
        &hours,
        &online,
    );
    h.presence
        .with_visitor(SITE, visitor, |view| node.eval(view, &env))
        .expect("the visitor is live")
}

#[track_caller]
fn check(h: &Harness, visitor: &str, condition: Value, expected: bool) {
    let truth = eval(h, visitor, &condition, true);
    assert_eq!(
        truth == Truth::Now,
        expected,
        "{visitor}: {condition} gave {truth:?}"
    );
}

#[tokio::test]
async fn every_condition_type_and_operator() {
    let h = condition_harness().await;
    h.context.online.store(true, Ordering::SeqCst);
    let c = |field: &str, op: &str, value: Value| json!({"field": field, "op": op, "value": value});
    let bare = |field: &str, op: &str| json!({"field": field, "op": op});
    let named = |field: &str, name: &str, op: &str, value: Value| json!({"field": field, "name": name, "op": op, "value": value});
    let cases: Vec<(&str, Value, bool)> = vec![
        // url: every string operator, ASCII case-insensitive (regex as written).
        (
            "ann",
            c(
                "url",
                "equals",
                json!("https://SHOP.example/pricing?plan=pro"),
            ),
            true,
        ),
        (
            "ann",
            c("url", "equals", json!("https://shop.example/pricing")),
            false,
        ),
        (
            "ann",
            c("url", "not_equals", json!("https://shop.example/pricing")),
            true,
        ),
        ("ann", c("url", "contains", json!("/pricing")), true),
        ("ann", c("url", "contains", json!("/cart")), false),
        ("ann", c("url", "not_contains", json!("/cart")), true),
        ("ann", c("url", "not_contains", json!("/PRICING")), false),
        (
            "ann",
            c("url", "starts_with", json!("https://shop.example/pri")),
            true,
        ),
        ("ann", c("url", "starts_with", json!("/pricing")), false),
        ("ann", c("url", "ends_with", json!("?PLAN=PRO")), true),
        ("ann", c("url", "ends_with", json!("/pricing")), false),
        (
            "ann",
            c("url", "wildcard", json!("https://*.example/pric?ng*")),
            true,
        ),
        ("ann", c("url", "wildcard", json!("*/pricing")), false),
        (
            "ann",
            c("url", "regex", json!(r"/Pricing\?plan=(pro|team)$")),
            true,
        ),
        ("ann", c("url", "regex", json!(r"/pricing\?")), false),
        ("ann", c("url", "regex", json!(r"(?i)/pricing\?")), true),
        (
            "ann",
            c(
                "url",
                "in",
                json!([
                    "https://shop.example/",
                    "https://shop.example/pricing?plan=PRO"
                ]),
            ),
            true,
        ),
        (
            "ann",
            c("url", "not_in", json!(["https://shop.example/"])),
            true,
        ),
        ("ann", bare("url", "exists"), true),
        ("ann", bare("url", "not_exists"), false),
        ("ann", c("title", "equals", json!("pricing PLANS")), true),
        // visited_url: earlier pages only; not_* means no earlier page.
        (
            "ann",
            c("visited_url", "contains", json!("utm_source=ads")),
            true,
        ),
        (
            "ann",
            c("visited_url", "contains", json!("/pricing")),
            false,
        ),
        (
            "ann",
            c("visited_url", "not_contains", json!("/pricing")),
            true,
        ),
        (
            "ann",
            c("visited_url", "not_contains", json!("utm_source")),
            false,
        ),
        ("ann", bare("visited_url", "exists"), true),
        ("bob", bare("visited_url", "exists"), false),
        ("bob", bare("visited_url", "not_exists"), true),
        // Numbers: time on page is 30 s, time on site 35 s.
        ("ann", c("time_on_page", "gte", json!(30)), true),
        ("ann", c("time_on_page", "gt", json!(30)), false),
        ("ann", c("time_on_page", "eq", json!(30)), true),
        ("ann", c("time_on_page", "ne", json!(30)), false),
        ("ann", c("time_on_page", "lt", json!(30)), false),
        ("ann", c("time_on_page", "lte", json!(30)), true),
        ("ann", c("time_on_page", "between", json!([20, 40])), true),
        ("ann", c("time_on_site", "gte", json!(35)), true),
        ("ann", c("time_on_site", "gt", json!(35)), false),
        ("ann", c("pages_in_visit", "eq", json!(2)), true),
        ("bob", c("pages_in_visit", "gt", json!(1)), false),
        ("ann", c("visits", "eq", json!(1)), true),
        ("ann", c("visits", "gte", json!(2)), false),
        // Referrer: absent counts as missing.
        ("ann", c("referrer", "contains", json!("google.")), true),
        ("ann", bare("referrer", "exists"), true),
        ("bob", bare("referrer", "exists"), false),
        ("bob", bare("referrer", "not_exists"), true),
        ("bob", c("referrer", "equals", json!("x")), false),
        ("bob", c("referrer", "not_equals", json!("x")), true),
        // Campaign.
        ("ann", c("utm_source", "equals", json!("ADS")), true),
        ("bob", c("utm_source", "equals", json!("ads")), false),
        ("bob", c("utm_source", "not_equals", json!("ads")), true),
        ("ann", c("utm_medium", "in", json!(["email", "cpc"])), true),
        ("ann", c("utm_campaign", "equals", json!("spring")), true),
        ("ann", bare("utm_term", "not_exists"), true),
        ("ann", bare("utm_content", "exists"), false),
        (
            "ann",
            named("campaign_tag", "gclid", "equals", json!("abc")),
            true,
        ),
        (
            "ann",
            named("campaign_tag", "GCLID", "exists", Value::Null),
            true,
        ),
        (
            "ann",
            named("campaign_tag", "fbclid", "exists", Value::Null),
            false,
        ),
        // Location, client, language.
        ("ann", c("country", "equals", json!("gb")), true),
        ("ann", c("country", "in", json!(["CZ", "SK"])), false),
        ("bob", c("country", "in", json!(["SE", "NO"])), true),
        (
            "ann",
            c("country_name", "equals", json!("united kingdom")),
            true,
        ),
        ("ann", c("city", "equals", json!("London")), true),
        ("bob", c("city", "starts_with", json!("Link")), true),
        ("ann", c("browser", "equals", json!("chrome")), true),
        ("bob", c("browser", "equals", json!("Safari")), true),
        ("ann", c("os", "starts_with", json!("windows")), true),
        ("bob", c("os", "equals", json!("iPhone")), true),
        ("ann", c("device", "equals", json!("desktop")), true),
        ("bob", c("device", "in", json!(["mobile", "tablet"])), true),
        ("ann", c("language", "starts_with", json!("EN")), true),
        ("bob", bare("language", "exists"), false),
        // Identity and custom properties (string or number by operator).
        ("ann", c("customer", "is", json!(true)), true),
        ("bob", c("customer", "is", json!(false)), true),
        (
            "ann",
            named("property", "plan", "equals", json!("PRO")),
            true,
        ),
        ("ann", named("property", "seats", "gte", json!(3)), true),
        (
            "ann",
            named("property", "seats", "between", json!([4, 10])),
            false,
        ),
        (
            "ann",
            named("property", "seats", "equals", json!("3")),
            true,
        ),
        ("ann", named("property", "trial", "lt", json!(20)), true),
        ("ann", named("property", "plan", "eq", json!(3)), false),
        ("ann", named("property", "plan", "ne", json!(3)), true),
        (
            "ann",
            named("property", "missing", "exists", Value::Null),
            false,
        ),
        (
            "ann",
            named("property", "missing", "not_exists", Value::Null),
            true,
        ),
        (
            "bob",
            named("property", "plan", "equals", json!("pro")),
            false,
        ),
        // Custom events of this visit.
        (
            "ann",
            json!({"field": "event", "op": "seen", "name": "added_to_cart"}),
            true,
        ),
        (
            "ann",
            json!({"field": "event", "op": "not_seen", "name": "purchase"}),
            true,
        ),
        (
            "ann",
            json!({"field": "event", "op": "seen", "name": "purchase"}),
            false,
        ),
        (
            "ann",
            json!({"field": "event", "op": "seen", "name": "added_to_cart",
                   "property": {"name": "sku", "op": "equals", "value": "a-1"}}),
            true,
        ),
        (
            "ann",
            json!({"field": "event", "op": "seen", "name": "added_to_cart",
                   "property": {"name": "price", "op": "gt", "value": 50}}),
            false,
        ),
        (
            "bob",
            json!({"field": "event", "op": "not_seen", "name": "added_to_cart"}),
            true,
        ),
        // Calendar: Friday 11:00:35 in Warsaw.
        (
            "ann",
            c("time_of_day", "between", json!(["09:00", "17:30"])),
            true,
        ),
        (
            "ann",
            c("time_of_day", "between", json!(["22:00", "06:00"])),
            false,
        ),
        ("ann", c("time_of_day", "before", json!("11:00")), false),
        ("ann", c("time_of_day", "after", json!("11:00")), true),
        ("ann", c("time_of_day", "before", json!("11:01")), true),
        ("ann", c("day_of_week", "in", json!(["fri", "sat"])), true),
        ("ann", c("day_of_week", "in", json!(["mon"])), false),
        ("ann", c("business_hours", "is", json!(true)), true),
        ("ann", c("agents_online", "is", json!(true)), true),
        ("ann", c("agents_online", "is", json!(false)), false),
    ];
    for (visitor, condition, expected) in cases {
        check(&h, visitor, condition, expected);
    }
    // The calendar flags come from the environment.
    assert_eq!(
        eval(&h, "ann", &c("business_hours", "is", json!(true)), false),
        Truth::Never
    );
    h.context.online.store(false, Ordering::SeqCst);
    check(&h, "ann", c("agents_online", "is", json!(false)), true);
}

#[tokio::test]
async fn time_conditions_answer_when_they_will_hold() {
    let h = condition_harness().await;
    // Ann's page opened 30 s ago, her visit 35 s ago.
    let page_since = h.presence.now_ms() - 30_000;
    let visit_start = page_since - 5_000;
    let c = |field: &str, op: &str, value: Value| json!({"field": field, "op": op, "value": value});
    let cases: Vec<(Value, Truth)> = vec![
        (
            c("time_on_page", "gte", json!(45)),
            Truth::At(page_since + 45_000),
        ),
        (
            c("time_on_page", "gt", json!(45)),
            Truth::At(page_since + 46_000),
        ),
        (
            c("time_on_page", "gte", json!(44.5)),
            Truth::At(page_since + 45_000),
        ),
        (
            c("time_on_page", "eq", json!(31)),
            Truth::At(page_since + 31_000),
        ),
        (c("time_on_page", "eq", json!(29)), Truth::Never),
        (c("time_on_page", "eq", json!(30.5)), Truth::Never),
        (
            c("time_on_page", "between", json!([40, 50])),
            Truth::At(page_since + 40_000),
        ),
        (c("time_on_page", "between", json!([10, 20])), Truth::Never),
        (
            c("time_on_page", "ne", json!(30)),
            Truth::At(page_since + 31_000),
        ),
        (c("time_on_page", "lt", json!(10)), Truth::Never),
        (
            c("time_on_site", "gte", json!(60)),
            Truth::At(visit_start + 60_000),
        ),
        // all: the latest; any: the earliest; a false part wins over a time.
        (
            json!({"all": [c("time_on_page", "gte", json!(40)), c("time_on_site", "gte", json!(60))]}),
            Truth::At(visit_start + 60_000),
        ),
        (
            json!({"any": [c("time_on_page", "gte", json!(40)), c("time_on_site", "gte", json!(60))]}),
            Truth::At(page_since + 40_000),
        ),
        (
            json!({"all": [c("time_on_page", "gte", json!(40)), url_contains("/cart")]}),
            Truth::Never,
        ),
        (
            json!({"any": [c("time_on_page", "gte", json!(40)), url_contains("/pricing")]}),
            Truth::Now,
        ),
    ];
    for (condition, expected) in cases {
        assert_eq!(eval(&h, "ann", &condition, true), expected, "{condition}");
    }
}

#[tokio::test]
async fn groups_nest() {
    let h = condition_harness().await;
    let yes = url_contains("/pricing");
    let no = url_contains("/cart");
    for (condition, expected) in [
        (json!({"all": [yes, yes]}), true),
        (json!({"all": [yes, no]}), false),
        (json!({"any": [no, yes]}), true),
        (json!({"any": [no, no]}), false),
        (
            json!({"all": [yes, {"any": [no, {"all": [yes, {"any": [yes]}]}]}]}),
            true,
        ),
        (
            json!({"all": [yes, {"any": [no, {"all": [yes, {"any": [no]}]}]}]}),
            false,
        ),
        (
            json!({"any": [{"all": [no, yes]}, {"all": [yes, yes]}]}),
            true,
        ),
        (yes.clone(), true),
    ] {
        check(&h, "ann", condition, expected);
    }
}

// Validation.

#[tokio::test]
async fn invalid_triggers_are_rejected_naming_the_bad_part() {
    let h = Harness::new().await;
    let with_conditions = |conditions: Value| body("x", conditions);
    let deep =
        json!({"all": [{"all": [{"all": [{"all": [{"all": [{"all": [url_contains("/")]}]}]}]}]}]});
    let many: Vec<Value> = (0..51).map(|_| url_contains("/")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            with_conditions(
                json!({"all": [url_contains("/p"), {"field": "time_on_page", "op": "gte", "value": "30"}]}),
            ),
            "conditions.all[1].value: time_on_page takes a number of seconds",
        ),
        (
            with_conditions(json!({"all": [{"field": "url", "op": "gte", "value": 3}]})),
            "conditions.all[0].op: \"gte\" is not an operator for url (string: equals, not_equals, contains, not_contains, starts_with, ends_with, wildcard, regex, in, not_in, exists, not_exists)",
        ),
        (
            with_conditions(
                json!({"any": [url_contains("/a"), url_contains("/b"), {"field": "url", "op": "regex", "value": "(unclosed"}]}),
            ),
            "conditions.any[2].value: invalid regex: unclosed group",
        ),
        (
            with_conditions(json!({"all": [{"field": "urll", "op": "equals", "value": "x"}]})),
            "conditions.all[0].field: unknown field \"urll\" (one of url, title,",
        ),
        (
            with_conditions(json!({"all": []})),
            "conditions.all: a group needs at least one condition",
        ),
        (
            with_conditions(deep),
            "conditions.all[0].all[0].all[0].all[0].all[0]: groups nest at most 5 deep",
        ),
        (
            with_conditions(json!({"all": many})),
            "conditions.all[50]: a trigger has at most 50 conditions",
        ),
        (
            with_conditions(json!({"field": "campaign_tag", "op": "equals", "value": "x"})),
            "conditions.name: campaign_tag needs a name",
        ),
        (
            with_conditions(json!({"field": "url", "name": "x", "op": "exists"})),
            "conditions.name: url takes no name",
        ),
        (
            with_conditions(json!({"field": "url", "op": "exists", "value": "x"})),
            "conditions.value: exists takes no value",
        ),
        (
            with_conditions(json!({"field": "country", "op": "in", "value": []})),
            "conditions.value: in takes an array of 1 to 100 strings",
        ),
        (
            with_conditions(json!({"field": "device", "op": "equals", "value": "pc"})),
            "conditions.value: unknown device \"pc\" (one of desktop, mobile",
        ),
        (
            with_conditions(json!({"field": "time_on_site", "op": "between", "value": [9, 3]})),
            "conditions.value: between takes [low, high]: two numbers with low ≤ high",
        ),
        (
            with_conditions(json!({"field": "customer", "op": "is", "value": "yes"})),
            "conditions.value: customer takes true or false",
        ),
        (
            with_conditions(json!({"field": "time_of_day", "op": "before", "value": "25:00"})),
            "conditions.value: time_of_day before takes \"HH:MM\"",
        ),
        (
            with_conditions(
                json!({"field": "day_of_week", "op": "in", "value": ["fri", "someday"]}),
            ),
            "conditions.value: day_of_week takes an array of days (mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            with_conditions(
                json!({"field": "event", "op": "seen", "name": "buy", "property": {"name": "sku", "op": "gte", "value": "x"}}),
            ),
            "conditions.property.value: an event property takes a number",
        ),
        (
            with_conditions(json!({"field": "url", "op": "contains", "value": "x".repeat(501)})),
            "conditions.value: at most 500 characters",
        ),
    ];
    let mut patched = Vec::new();
    let mut patch = |change: &dyn Fn(&mut Value), expected: &'static str| {
        let mut b = body("x", url_contains("/"));
        change(&mut b);
        patched.push((b, expected));
    };
    patch(&|b| b["name"] = json!("  "), "name: 1 to 100 characters");
    patch(
        &|b| b["delay_secs"] = json!(3601),
        "delay_secs: 0 to 3600 seconds",
    );
    patch(
        &|b| b["control_percent"] = json!(91),
        "control_percent: 0 to 90",
    );
    patch(&|b| b["variants"] = json!([]), "variants: 1 to 5 variants");
    patch(
        &|b| b["variants"][0]["text"] = json!("Hi {cty}"),
        "variants[0].text: unknown placeholder {cty}",
    );
    patch(
        &|b| {
            b["variants"] = json!([
                {"key": "a", "author": {"bot": "P"}, "text": "one"},
                {"key": "B!", "author": {"bot": "P"}, "text": "two"}
            ])
        },
        "variants[1].key: 1 to 16 of a-z, 0-9, _ and -",
    );
    patch(
        &|b| {
            b["variants"] = json!([
                {"key": "a", "author": {"bot": "P"}, "text": "one"},
                {"key": "a", "author": {"bot": "P"}, "text": "two"}
            ])
        },
        "variants[1].key: \"a\" is used by an earlier variant",
    );
    patch(
        &|b| b["variants"][0]["author"] = json!({"agent_id": 999}),
        "variants[0].author.agent_id: no active agent 999 with access to this site",
    );
    patch(
        &|b| b["variants"][0]["weight"] = json!(0),
        "variants[0].weight: 1 to 100",
    );
    patch(
        &|b| b["variants"][0]["text"] = json!(" "),
        "variants[0].text: 1 to 2000 characters",
    );
    patch(
        &|b| b["limit"] = json!({"mode": "cooldown", "cooldown_secs": 0}),
        "limit.cooldown_secs: 1 to 31536000 seconds",
    );
    patch(
        &|b| b["goal"] = json!({"event": "", "window_secs": 60}),
        "goal.event: 1 to 64 characters",
    );
    patch(
        &|b| b["goal"] = json!({"event": "buy", "window_secs": 0}),
        "goal.window_secs: 1 to 2592000 seconds",
    );
    for (body, expected) in cases.into_iter().chain(patched) {
        let error = h
            .triggers
            .create(SITE, Trigger::from_json(&body).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(error, TriggerError::Invalid(_)),
            "{expected}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(expected),
            "expected {expected:?}\n     got {message:?}"
        );
    }
    assert!(h.triggers.list(SITE).await.unwrap().is_empty());
}

// CRUD and edits.

#[tokio::test]
async fn crud_edits_take_effect_at_once() {
    let mut h = Harness::new().await;
    let mut agent_body = body("agent", url_contains("/pricing"));
    agent_body["variants"][0]["author"] = json!({"agent_id": h.agent.id});
    let first = h.create(agent_body).await;
    let second = h.create(body("second", url_contains("/cart"))).await;
    assert!(second.id > first.id);
    assert_eq!((first.site.as_str(), first.created_ms), (SITE, t0()));
    assert_eq!(h.triggers.get(SITE, first.id).await.unwrap(), first);
    assert!(matches!(
        h.triggers.get("elsewhere", first.id).await,
        Err(TriggerError::NotFound(_))
    ));
    h.triggers
        .patch(SITE, second.id, None, Some(5))
        .await
        .unwrap();
    let order: Vec<u64> = h
        .triggers
        .list(SITE)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(order, [second.id, first.id], "priority first");

    h.page("v1", "https://shop.example/cart").await;
    assert_eq!(h.fires(), [("v1".into(), second.id, Some("a".into()))]);
    // Disabled: a new visitor on the cart gets nothing; the change needs no restart.
    h.triggers
        .patch(SITE, second.id, Some(false), None)
        .await
        .unwrap();
    h.page("v2", "https://shop.example/cart").await;
    assert!(h.fires().is_empty());
    // Edited to the cart's URL: the first trigger now fires there.
    h.advance(1_000);
    let mut edited = Trigger::from_json(&body("edited", url_contains("/cart"))).unwrap();
    edited.priority = 1;
    let updated = h.triggers.update(SITE, first.id, edited).await.unwrap();
    assert_eq!(updated.created_ms, first.created_ms);
    assert_eq!(updated.updated_ms, t0() + 1_000);
    h.page("v3", "https://shop.example/cart").await;
    assert_eq!(h.fires(), [("v3".into(), first.id, Some("a".into()))]);
    h.triggers.delete(SITE, first.id).await.unwrap();
    assert!(matches!(
        h.triggers.delete(SITE, first.id).await,
        Err(TriggerError::NotFound(_))
    ));
    h.page("v4", "https://shop.example/cart").await;
    assert!(h.fires().is_empty());
    assert!(matches!(
        h.triggers
            .update(
                SITE,
                999,
                Trigger::from_json(&body("x", url_contains("/"))).unwrap()
            )
            .await,
        Err(TriggerError::NotFound(_))
    ));
    // Triggers come back compiled after a restart.
    let mut h = h.restart(t0() + 10_000).await;
    h.triggers
        .patch(SITE, second.id, Some(true), None)
        .await
        .unwrap();
    h.page("v5", "https://shop.example/cart").await;
    assert_eq!(h.fires(), [("v5".into(), second.id, Some("a".into()))]);
}

#[tokio::test]
async fn many_triggers_are_created_at_once_or_not_at_all() {
    let mut h = Harness::new().await;
    let batch: Vec<Trigger> = (0..3)
        .map(|i| {
            Trigger::from_json(&body(&format!("t{i}"), url_contains(&format!("/p{i}")))).unwrap()
        })
        .collect();
    let mut bad = batch.clone();
    bad[1].delay_secs = 9999;
    assert_eq!(
        h.triggers
            .create_many(SITE, bad)
            .await
            .unwrap_err()
            .to_string(),
        "[1].delay_secs: 0 to 3600 seconds"
    );
    assert!(h.triggers.list(SITE).await.unwrap().is_empty());
    let stored = h.triggers.create_many(SITE, batch).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.windows(2).all(|pair| pair[0].id < pair[1].id));
    h.page("v", "https://shop.example/p2").await;
    assert_eq!(h.fires(), [("v".into(), stored[2].id, Some("a".into()))]);
}

// Firing rules.

#[tokio::test]
async fn limits_once_per_visitor_per_visit_and_cooldown() {
    let mut h = Harness::new().await;
    let visitor_once = h.create(body("visitor", url_contains("/a"))).await;
    let mut per_visit = body("visit", url_contains("/b"));
    per_visit["limit"] = json!({"mode": "once_per_visit"});
    let visit_once = h.create(per_visit).await;
    let mut cooldown = body("cooldown", url_contains("/c"));
    cooldown["limit"] = json!({"mode": "cooldown", "cooldown_secs": 60});
    let cooldown = h.create(cooldown).await;

    let ids = |fires: Vec<(String, u64, Option<String>)>| -> Vec<u64> {
        fires.into_iter().map(|fire| fire.1).collect()
    };
    for url in ["/a", "/b", "/c"] {
        h.page("v", &format!("https://shop.example{url}")).await;
        h.settle().await;
    }
    assert_eq!(
        ids(h.fires()),
        [visitor_once.id, visit_once.id, cooldown.id]
    );
    // Again in the same visit, 30 s later: nothing.
    h.advance(30_000);
    for url in ["/a", "/b", "/c"] {
        h.page("v", &format!("https://shop.example{url}")).await;
        h.settle().await;
    }
    assert!(h.fires().is_empty());
    // 61 s after the first: the cooldown allows.
    h.advance(31_000);
    for url in ["/a", "/b", "/c"] {
        h.page("v", &format!("https://shop.example{url}")).await;
        h.settle().await;
    }
    assert_eq!(ids(h.fires()), [cooldown.id]);
    // A new visit: once-per-visit fires again, once-per-visitor never.
    h.advance(5_000);
    for url in ["/a", "/b", "/c"] {
        h.send(&visit("v", &format!("https://shop.example{url}")).visit_id("v-2"))
            .await;
        h.settle().await;
    }
    assert_eq!(ids(h.fires()), [visit_once.id]);

    // Limits survive a restart (records are written behind and flushed on shutdown).
    let mut h = h.restart(t0() + 80_000).await;
    for url in ["/a", "/b", "/c"] {
        h.send(&visit("v", &format!("https://shop.example{url}")).visit_id("v-2"))
            .await;
        h.settle().await;
    }
    assert!(
        h.fires().is_empty(),
        "same visit (resumed), cooldown not over"
    );
    h.advance(60_000);
    for url in ["/a", "/b", "/c"] {
        h.send(&visit("v", &format!("https://shop.example{url}")).visit_id("v-3"))
            .await;
        h.settle().await;
    }
    assert_eq!(ids(h.fires()), [visit_once.id, cooldown.id]);
}

#[tokio::test]
async fn the_highest_priority_wins_and_one_fires_per_evaluation() {
    let mut h = Harness::new().await;
    let low = h.create(body("low", url_contains("/pricing"))).await;
    let mut high = body("high", url_contains("/pricing"));
    high["priority"] = json!(10);
    let high = h.create(high).await;
    let tie_a = h.create(body("tie a", url_contains("/docs"))).await;
    let tie_b = h.create(body("tie b", url_contains("/docs"))).await;
    h.page("v1", "https://shop.example/pricing").await;
    assert_eq!(h.fires(), [("v1".into(), high.id, Some("a".into()))]);
    // The next evaluation (once the message is out): the winner is spent, the next one fires.
    h.settle().await;
    h.page("v1", "https://shop.example/pricing").await;
    assert_eq!(h.fires(), [("v1".into(), low.id, Some("a".into()))]);
    h.page("v2", "https://shop.example/docs").await;
    assert_eq!(
        h.fires(),
        [("v2".into(), tie_a.id.min(tie_b.id), Some("a".into()))]
    );
}

#[tokio::test]
async fn blocked_visitors_and_hidden_widgets_get_nothing() {
    let mut h = Harness::new().await;
    h.create(body("any page", url_contains("/"))).await;
    // Blocked before arriving (carried over from the store) or flagged in presence.
    h.conversations
        .block(SITE, "blocked", None, &h.agent, None)
        .await
        .unwrap();
    h.page("blocked", "https://shop.example/").await;
    h.page("flagged", "https://shop.example/x").await;
    assert_eq!(h.fired_visitors(), ["flagged"]);
    // Flags set while the visitor is live: nothing while they are set.
    for (visitor, segment) in [("late", Segment::Blocked), ("chatting", Segment::OnChat)] {
        h.presence.start_visit(
            &Beacon {
                site: SITE,
                visitor_id: visitor,
                visit_id: &format!("{visitor}-1"),
                kind: BeaconKind::PageView,
                url: "https://shop.example/",
                title: "Shop",
                referrer: None,
                ip: fixture::sample_ip(0),
                user_agent: CHROME,
                language: None,
                screen: None,
            },
            &tracker::KnownProfile::new(100, t0()),
        );
        let presence = Arc::clone(&h.presence);
        let flag = move |on| match segment {
            Segment::Blocked => presence.set_blocked(SITE, visitor, on),
            _ => presence.set_on_chat(SITE, visitor, on),
        };
        assert!(flag(true));
        h.page(visitor, "https://shop.example/a").await;
        assert!(h.fires().is_empty(), "{visitor}");
        flag(false);
        h.page(visitor, "https://shop.example/b").await;
        assert_eq!(h.fired_visitors(), [visitor]);
    }

    // Widget hidden, page rules, hidden after hours.
    h.set_widget(|settings| settings.visibility = Visibility::Hidden)
        .await;
    h.page("w1", "https://shop.example/").await;
    h.set_widget(|settings| {
        settings.pages = PageRules {
            mode: PageMode::Blacklist,
            patterns: vec!["/checkout*".into(), "https://shop.example/account/".into()],
        }
    })
    .await;
    h.page("w2", "https://shop.example/checkout/step-1?x=1")
        .await;
    h.page("w3", "https://shop.example/account").await;
    h.page("w4", "https://shop.example/products").await;
    h.set_widget(|settings| {
        settings.pages = PageRules {
            mode: PageMode::Whitelist,
            patterns: vec!["/products/*".into()],
        }
    })
    .await;
    h.page("w5", "https://shop.example/products").await;
    h.page("w6", "https://shop.example/products/shoe").await;
    h.set_widget(|settings| {
        settings.business_hours = BusinessHours {
            enabled: true,
            time_zone: "Europe/Warsaw".into(),
            days: vec![DayHours {
                day: Day::Mon,
                open: "09:00".into(),
                close: "17:00".into(),
            }],
        };
        settings.after_hours.mode = AfterHoursMode::Hide;
    })
    .await;
    h.page("w7", "https://shop.example/").await;
    h.set_widget(|settings| {
        settings.business_hours = BusinessHours {
            enabled: true,
            time_zone: "Europe/Warsaw".into(),
            days: vec![DayHours {
                day: Day::Fri,
                open: "09:00".into(),
                close: "17:00".into(),
            }],
        };
        settings.after_hours.mode = AfterHoursMode::Hide;
    })
    .await;
    h.page("w8", "https://shop.example/").await;
    assert_eq!(h.fired_visitors(), ["w4", "w6", "w8"]);
}

#[tokio::test]
async fn business_hours_time_of_day_and_day_of_week_across_dst() {
    let mut h = Harness::new().await;
    h.set_widget(|settings| {
        settings.business_hours = BusinessHours {
            enabled: true,
            time_zone: "Europe/Warsaw".into(),
            days: Day::ALL[..5]
                .iter()
                .map(|day| DayHours {
                    day: *day,
                    open: "09:00".into(),
                    close: "17:00".into(),
                })
                .collect(),
        };
    })
    .await;
    let in_hours = h
        .create(body(
            "in hours",
            json!({"all": [url_contains("/hours"), {"field": "business_hours", "op": "is", "value": true}]}),
        ))
        .await;
    let morning = h
        .create(body(
            "morning",
            json!({"all": [url_contains("/morning"), {"field": "time_of_day", "op": "between", "value": ["09:00", "12:00"]}]}),
        ))
        .await;
    let monday = h
        .create(body(
            "monday",
            json!({"all": [url_contains("/monday"), {"field": "day_of_week", "op": "in", "value": ["mon"]}]}),
        ))
        .await;
    // 2026-03-29 is the last Sunday of March: Warsaw goes from UTC+1 to UTC+2.
    let cases: Vec<(&str, i64, &str, Option<u64>)> = vec![
        (
            "Fri 09:00 local = 08:00 UTC",
            utc(2026, 3, 27, 8, 0),
            "/hours",
            Some(in_hours.id),
        ),
        ("Fri 08:59 local", utc(2026, 3, 27, 7, 59), "/hours", None),
        (
            "Mon 09:00 local = 07:00 UTC",
            utc(2026, 3, 30, 7, 0),
            "/hours",
            Some(in_hours.id),
        ),
        (
            "Mon 08:59 local = 06:59 UTC",
            utc(2026, 3, 30, 6, 59),
            "/hours",
            None,
        ),
        (
            "Mon 17:00 local = 15:00 UTC",
            utc(2026, 3, 30, 15, 0),
            "/hours",
            None,
        ),
        (
            "Mon 16:59 local",
            utc(2026, 3, 30, 14, 59),
            "/hours",
            Some(in_hours.id),
        ),
        (
            "Fri 11:59 local = 10:59 UTC",
            utc(2026, 3, 27, 10, 59),
            "/morning",
            Some(morning.id),
        ),
        ("Fri 12:00 local", utc(2026, 3, 27, 11, 0), "/morning", None),
        (
            "Mon 11:59 local = 09:59 UTC",
            utc(2026, 3, 30, 9, 59),
            "/morning",
            Some(morning.id),
        ),
        (
            "Mon 12:00 local = 10:00 UTC",
            utc(2026, 3, 30, 10, 0),
            "/morning",
            None,
        ),
        (
            "Mon 08:30 local = 06:30 UTC",
            utc(2026, 3, 30, 6, 30),
            "/morning",
            None,
        ),
        // Sunday 23:30 UTC is already Monday 01:30 in Warsaw (after the change).
        (
            "Sun 23:30 UTC = Mon 01:30 local",
            utc(2026, 3, 29, 23, 30),
            "/monday",
            Some(monday.id),
        ),
        (
            "Sun 21:59 UTC = Sun 23:59 local",
            utc(2026, 3, 29, 21, 59),
            "/monday",
            None,
        ),
        (
            "Sun 22:00 UTC = Mon 00:00 local",
            utc(2026, 3, 29, 22, 0),
            "/monday",
            Some(monday.id),
        ),
        // Before the change, Monday starts at 23:00 UTC.
        (
            "Sun 22 Mar 23:00 UTC = Mon 00:00 local",
            utc(2026, 3, 22, 23, 0),
            "/monday",
            Some(monday.id),
        ),
        (
            "Sun 22 Mar 22:59 UTC",
            utc(2026, 3, 22, 22, 59),
            "/monday",
            None,
        ),
    ];
    for (index, (label, at, path, expected)) in cases.into_iter().enumerate() {
        h.set_time(at);
        h.triggers.reload_widget_settings(SITE).await;
        h.page(
            &format!("visitor-{index}"),
            &format!("https://shop.example{path}"),
        )
        .await;
        let fired: Vec<u64> = h.fires().into_iter().map(|fire| fire.1).collect();
        assert_eq!(fired, expected.into_iter().collect::<Vec<_>>(), "{label}");
    }
}

// Timers.

#[tokio::test]
async fn time_on_page_fires_when_due_and_navigation_or_leaving_cancels() {
    let mut h = Harness::new().await;
    let trigger = h
        .create(body(
            "pricing",
            json!({"all": [
                url_contains("/pricing"),
                {"field": "time_on_page", "op": "gte", "value": 3},
                {"field": "utm_source", "op": "equals", "value": "ads"}
            ]}),
        ))
        .await;
    let landing = "https://shop.example/pricing?utm_source=ads";
    h.page("stays", landing).await;
    h.page("navigates", landing).await;
    h.page("leaves", landing).await;
    h.page("no-campaign", "https://shop.example/pricing").await;
    assert_eq!(h.triggers.pending_timers(), 3);
    assert_eq!(h.triggers.next_timer_ms(), Some(t0() + 3_000));
    assert!(h.fires().is_empty());

    h.advance(1_000);
    h.page("navigates", "https://shop.example/about").await;
    h.send(&visit("leaves", landing).kind(BeaconKind::Leave))
        .await;
    assert_eq!(h.triggers.pending_timers(), 1);
    h.advance(1_999);
    assert_eq!(h.triggers.run_due_timers().await, 0);
    h.advance(1);
    assert_eq!(h.triggers.run_due_timers().await, 1);
    assert_eq!(h.fires(), [("stays".into(), trigger.id, Some("a".into()))]);
    let delivered = h.delivered(1).await;
    assert_eq!(delivered[0].0, "stays");

    // Back to /pricing: the visitor who navigated away starts a new page timer.
    h.page("navigates", landing).await;
    assert_eq!(h.triggers.pending_timers(), 1);
    h.advance(3_000);
    h.triggers.run_due_timers().await;
    assert_eq!(h.fired_visitors(), ["navigates"]);
    // Not a second time: the limit keeps a spent trigger from scheduling anything.
    h.page("stays", "https://shop.example/pricing?utm_source=ads&again")
        .await;
    assert_eq!(h.triggers.pending_timers(), 0);
    h.advance(10_000);
    h.triggers.run_due_timers().await;
    assert!(h.fires().is_empty());

    // A page view within the same second re-schedules; a stale wake-up fires nothing.
    h.page("racer", landing).await;
    h.advance(2_000);
    h.page(
        "racer",
        "https://shop.example/pricing?utm_source=ads&step=2",
    )
    .await;
    h.advance(1_500);
    h.triggers.run_due_timers().await;
    assert!(
        h.fires().is_empty(),
        "the first page's timer is void after navigation"
    );
    h.advance(1_500);
    h.triggers.run_due_timers().await;
    assert_eq!(h.fired_visitors(), ["racer"]);
}

#[tokio::test]
async fn the_timer_task_wakes_up_by_itself() {
    let mut h = Harness::new().await;
    h.create(body(
        "soon",
        json!({"all": [url_contains("/"), {"field": "time_on_site", "op": "gte", "value": 1}]}),
    ))
    .await;
    h.triggers.spawn_tasks();
    h.page("v", "https://shop.example/").await;
    // The task sleeps until the deadline on the tracker's clock; move the clock past it and
    // poke the task by scheduling an earlier wake-up for someone else.
    h.advance(1_000);
    h.page("w", "https://shop.example/").await;
    let event = tokio::time::timeout(Duration::from_secs(10), h.fired.recv())
        .await
        .expect("the timer task fired")
        .unwrap();
    assert!(
        matches!(&event, TriggerEvent::Fired { visitor_id, due_ms: Some(due), .. } if visitor_id == "v" && *due == t0() + 1_000),
        "{event:?}"
    );
    h.triggers.shutdown().await.unwrap();
}

// Delivery.

#[tokio::test]
async fn delivery_renders_placeholders_and_marks_the_visitor() {
    let mut h = Harness::new().await;
    let mut b = body("offer", url_contains("/pricing"));
    b["variants"] = json!([{
        "key": "a",
        "author": {"agent_id": h.agent.id},
        "text": "Hi {first_name|there}, 10 % off in {city|your city} on {page_title}!"
    }]);
    b["open_widget"] = json!(true);
    let trigger = h.create(b).await;
    h.send(&visit("ann", "https://shop.example/pricing").title("Pricing"))
        .await;
    let (visitor, conversation_id) = h.delivered(1).await.remove(0);
    assert_eq!(visitor, "ann");
    let conversation = h.conversations.conversation(conversation_id).await.unwrap();
    assert_eq!(
        conversation.origin,
        ConversationOrigin::Trigger {
            trigger_id: trigger.id,
            variant: Some("a".into()),
            open_widget: true,
            test: false
        }
    );
    assert_eq!(
        conversation.page_url.as_deref(),
        Some("https://shop.example/pricing")
    );
    let messages = h.store.messages(conversation_id, 0, 10).await.unwrap();
    assert_eq!(
        messages[0].body,
        crate::MessageBody::Text {
            text: "Hi there, 10 % off in London on Pricing!".into()
        }
    );
    assert_eq!(
        messages[0].author,
        Author::Bot {
            name: "Anna".into()
        }
    );
    let card = h.presence.get(SITE, "ann").unwrap();
    assert!(card.segments.contains(Segment::AutoMessaged));
}

#[tokio::test]
async fn a_delay_waits_and_the_visitor_is_checked_again() {
    let mut h = Harness::new().await;
    let mut b = body("later", url_contains("/pricing"));
    b["delay_secs"] = json!(5);
    h.create(b).await;
    tokio::time::pause();
    h.page("stays", "https://shop.example/pricing").await;
    h.page("blocked", "https://shop.example/pricing").await;
    h.page("gone", "https://shop.example/pricing").await;
    assert_eq!(h.fired_visitors(), ["blocked", "gone", "stays"]);
    h.presence.set_blocked(SITE, "blocked", true);
    h.send(&visit("gone", "https://shop.example/pricing").kind(BeaconKind::Leave))
        .await;
    tokio::time::advance(Duration::from_secs(4)).await;
    tokio::task::yield_now().await;
    assert!(
        h.conversations_of("stays").await.is_empty(),
        "not before the delay"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();
    assert_eq!(h.delivered(1).await[0].0, "stays");
    assert!(h.conversations_of("blocked").await.is_empty());
    assert!(h.conversations_of("gone").await.is_empty());
}

#[tokio::test]
async fn one_proactive_message_at_a_time() {
    let mut h = Harness::new().await;
    let mut later = body("pricing, after a while", url_contains("/pricing"));
    later["delay_secs"] = json!(5);
    later["priority"] = json!(1);
    let later = h.create(later).await;
    let docs = h.create(body("docs", url_contains("/docs"))).await;
    tokio::time::pause();
    h.page("ann", "https://shop.example/pricing").await;
    h.page("bob", "https://shop.example/pricing").await;
    assert_eq!(
        h.fires()
            .into_iter()
            .map(|fire| (fire.0, fire.1))
            .collect::<Vec<_>>(),
        [("ann".into(), later.id), ("bob".into(), later.id)]
    );
    // While the first message waits, no other trigger fires, nor is anyone listed for one.
    h.page("ann", "https://shop.example/docs").await;
    assert!(h.fires().is_empty(), "nothing while a message waits");
    assert_eq!(
        h.triggers.matches_now(SITE, docs.id).await.unwrap().count,
        0
    );
    // Bob leaves: his message is given up when its delay is over, and a new visit may fire.
    h.send(&visit("bob", "https://shop.example/pricing").kind(BeaconKind::Leave))
        .await;
    tokio::time::advance(Duration::from_secs(6)).await;
    tokio::time::resume();
    assert_eq!(h.delivered(1).await[0].0, "ann");
    let state = h.triggers.site_state(SITE).unwrap();
    for _ in 0..500 {
        if !state.is_awaiting("bob") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!state.is_awaiting("bob"), "bob's message is given up");
    h.send(&visit("bob", "https://shop.example/docs").visit_id("bob-2"))
        .await;
    assert_eq!(
        h.fires()
            .into_iter()
            .map(|fire| (fire.0, fire.1))
            .collect::<Vec<_>>(),
        [("bob".into(), docs.id)]
    );
}

// Who matches.

#[tokio::test]
async fn matches_now_is_exactly_who_the_engine_fires_for() {
    let mut h = Harness::new().await;
    let mut b = body(
        "pricing from ads",
        json!({"all": [url_contains("/pricing"), {"any": [
            {"field": "utm_source", "op": "equals", "value": "ads"},
            {"field": "country", "op": "equals", "value": "SE"}
        ]}]}),
    );
    b["limit"] = json!({"mode": "once_per_visit"});
    let trigger = h.create(b).await;
    let ads = "https://shop.example/pricing?utm_source=ads";
    for index in 0..40 {
        let mut v = visit(
            &format!("v{index:02}"),
            if index % 3 == 0 {
                ads
            } else {
                "https://shop.example/pricing"
            },
        );
        v.ip = fixture::sample_ip(index);
        if index % 4 == 0 {
            v.url = "https://shop.example/home".into();
        }
        // Into presence without the engine: nothing fires yet.
        h.presence.start_visit(
            &tracker::Beacon {
                site: SITE,
                visitor_id: &v.visitor,
                visit_id: &v.visit,
                kind: BeaconKind::PageView,
                url: &v.url,
                title: "x",
                referrer: None,
                ip: v.ip,
                user_agent: CHROME,
                language: None,
                screen: None,
            },
            &tracker::KnownProfile::new(index as u32 + 1, t0()),
        );
    }
    // Some are excluded for reasons other than conditions.
    h.presence.set_blocked(SITE, "v03", true);
    h.presence.set_on_chat(SITE, "v06", true);
    h.send(&visit("v09", ads).kind(BeaconKind::Leave)).await;
    // v12 already got it this visit (fired through the engine).
    h.send(&visit("v12", ads)).await;
    assert_eq!(h.fired_visitors(), ["v12"]);

    let matches = h.triggers.matches_now(SITE, trigger.id).await.unwrap();
    let mut matched: Vec<String> = matches
        .visitors
        .iter()
        .map(|visitor| visitor.id.to_string())
        .collect();
    matched.sort();
    assert_eq!(matches.count, matched.len());
    assert!(matches.count > 5, "{matched:?}");
    let mut would_fire = Vec::new();
    for index in 0..40 {
        let id = format!("v{index:02}");
        let evaluation = h.triggers.evaluate(SITE, &id).await.unwrap();
        if evaluation.fire == Some(trigger.id) {
            would_fire.push(id);
        }
    }
    assert_eq!(matched, would_fire);
    for excluded in ["v03", "v06", "v09", "v12"] {
        assert!(!matched.contains(&excluded.to_string()), "{excluded}");
    }
    // And firing them for real gives the same set. (Any beacon but a Leave brings a visitor
    // who closed the tab back, so v09, who did, is left out.)
    for index in 0..40 {
        let id = format!("v{index:02}");
        if id == "v09" {
            continue;
        }
        h.send(
            &visit(&id, "https://shop.example/x").kind(BeaconKind::Identify(Identity::default())),
        )
        .await;
    }
    assert_eq!(h.fired_visitors(), matched);
    // Nobody matches any more: everyone eligible got it this visit.
    assert_eq!(
        h.triggers
            .matches_now(SITE, trigger.id)
            .await
            .unwrap()
            .count,
        0
    );
}

#[tokio::test]
async fn preview_matches_a_draft_and_reports_bad_conditions() {
    let h = Harness::new().await;
    h.page("a", "https://shop.example/pricing").await;
    h.page("b", "https://shop.example/about").await;
    let draft = Trigger::from_json(&body("draft", url_contains("/pricing"))).unwrap();
    let matches = h.triggers.preview(SITE, draft).await.unwrap();
    assert_eq!(matches.count, 1);
    assert_eq!(&*matches.visitors[0].id, "a");
    let bad = Trigger::from_json(&body(
        "draft",
        json!({"all": [{"field": "url", "op": "regex", "value": "("}]}),
    ))
    .unwrap();
    let error = h.triggers.preview(SITE, bad).await.unwrap_err().to_string();
    assert!(
        error.starts_with("conditions.all[0].value: invalid regex"),
        "{error}"
    );
    assert_eq!(
        h.triggers
            .preview(
                "no-such-site",
                Trigger::from_json(&body("d", url_contains("/"))).unwrap()
            )
            .await
            .unwrap()
            .count,
        0
    );
}

// The index.

/// A small deterministic generator (xorshift), so the property test needs no seed plumbing.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const PATHS: &[&str] = &[
    "/",
    "/pricing",
    "/pricing/team",
    "/blog",
    "/blog/post-1",
    "/cart",
    "/checkout",
    "/docs/api",
    "/Docs/API",
    "/about",
    "/p/1",
    "/p/12",
    "/p/123",
];
const SOURCES: &[&str] = &["ads", "news", "Social", "partner"];
const COUNTRIES: &[&str] = &["GB", "SE", "US", "AU", "BR", "JP", "DE", "CZ"];

fn random_leaf(random: &mut Random) -> Value {
    match random.below(13) {
        0 => {
            json!({"field": "url", "op": "equals", "value": format!("https://shop.example{}", random.pick(PATHS))})
        }
        1 => {
            json!({"field": "url", "op": "starts_with", "value": format!("https://shop.example{}", random.pick(PATHS))})
        }
        2 | 3 => json!({"field": "url", "op": "contains", "value": random.pick(PATHS)}),
        4 => json!({"field": "utm_source", "op": "equals", "value": random.pick(SOURCES)}),
        5 => {
            json!({"field": "utm_source", "op": "in", "value": [random.pick(SOURCES), random.pick(SOURCES)]})
        }
        6 => json!({"field": "country", "op": "equals", "value": random.pick(COUNTRIES)}),
        7 => json!({"field": "url", "op": "not_contains", "value": random.pick(PATHS)}),
        8 => json!({"field": "time_on_page", "op": "gte", "value": random.below(20)}),
        // Time conditions the evaluation may skip a candidate for (see `SiteRules::earliest`).
        11 => json!({"field": "time_on_site", "op": "gte", "value": random.below(30)}),
        12 => {
            let low = random.below(25);
            json!({"field": "time_on_page", "op": "between", "value": [low, low + random.below(10)]})
        }
        9 => json!({"field": "customer", "op": "is", "value": random.below(2) == 0}),
        _ => {
            json!({"field": "device", "op": "equals", "value": random.pick(&["desktop", "mobile"])})
        }
    }
}

fn random_conditions(random: &mut Random) -> Value {
    match random.below(6) {
        0 => random_leaf(random),
        1 => json!({"any": [random_leaf(random), random_leaf(random)]}),
        2 => {
            json!({"all": [random_leaf(random), {"any": [random_leaf(random), random_leaf(random)]}]})
        }
        _ => {
            let children: Vec<Value> = (0..1 + random.below(3))
                .map(|_| random_leaf(random))
                .collect();
            json!({"all": children})
        }
    }
}

#[tokio::test]
async fn the_index_answers_like_a_scan_of_every_trigger() {
    let h = Harness::new().await;
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    for index in 0..300 {
        let mut b = body(&format!("rule {index}"), random_conditions(&mut random));
        b["priority"] = json!(random.below(5));
        b["enabled"] = json!(random.below(10) != 0);
        h.create(b).await;
    }
    let mut visitors = Vec::new();
    for index in 0..250 {
        let mut url = format!("https://shop.example{}", random.pick(PATHS));
        if random.below(2) == 0 {
            url.push_str(&format!("?utm_source={}", random.pick(SOURCES)));
        }
        let mut v = visit(&format!("r{index}"), &url);
        v.ip = fixture::sample_ip(random.below(64));
        v.user_agent = if random.below(3) == 0 { IPHONE } else { CHROME };
        // Observe only (no firing), so every visitor is evaluated from a clean history.
        let beacon = Beacon {
            site: SITE,
            visitor_id: &v.visitor,
            visit_id: &v.visit,
            kind: BeaconKind::PageView,
            url: &v.url,
            title: "t",
            referrer: None,
            ip: v.ip,
            user_agent: v.user_agent,
            language: None,
            screen: None,
        };
        h.presence
            .start_visit(&beacon, &tracker::KnownProfile::new(index as u32 + 1, t0()));
        if random.below(3) == 0 {
            // A customer: identified on the site.
            h.presence.observe(&Beacon {
                kind: BeaconKind::Identify(Identity {
                    name: Some(format!("Customer {index}")),
                    email: None,
                    phone: None,
                    props: Vec::new(),
                }),
                ..beacon
            });
        }
        visitors.push(v.visitor);
    }
    let mut fired = 0;
    for step in 0..3 {
        for visitor in &visitors {
            let indexed = h.triggers.evaluate_with(SITE, visitor, true).await.unwrap();
            let scanned = h
                .triggers
                .evaluate_with(SITE, visitor, false)
                .await
                .unwrap();
            assert_eq!(indexed, scanned, "{visitor} at step {step}");
            fired += usize::from(indexed.fire.is_some());
        }
        h.advance(7_000);
    }
    assert!(
        fired > 100,
        "the rules are not all trivially false: {fired}"
    );
}

// A/B.

#[tokio::test]
async fn ab_split_is_within_bounds_and_control_gets_nothing() {
    let mut h = Harness::new().await;
    let mut b = body("ab", url_contains("/sale"));
    b["control_percent"] = json!(50);
    b["variants"] = json!([
        {"key": "a", "author": {"bot": "P"}, "text": "A"},
        {"key": "b", "author": {"bot": "P"}, "text": "B", "weight": 3}
    ]);
    // An hour's delay keeps 10 000 deliveries from running; delivery is checked below.
    b["delay_secs"] = json!(3600);
    let trigger = h.create(b).await;
    const VISITORS: usize = 10_000;
    let mut control = 0;
    let mut variant_b = 0;
    let mut arms = std::collections::HashMap::new();
    for index in 0..VISITORS {
        let id = format!("ab-{index}");
        h.page(&id, "https://shop.example/sale").await;
        let fires = h.fires();
        assert_eq!(fires.len(), 1, "{id}");
        match fires[0].2.as_deref() {
            None => control += 1,
            Some("b") => variant_b += 1,
            Some(_) => {}
        }
        arms.insert(id, fires[0].2.clone());
    }
    // 50 % control: the standard deviation over 10 000 is 0.5 %, so ±3 % is six of them.
    let share = control as f64 / VISITORS as f64;
    assert!((0.47..=0.53).contains(&share), "control share {share}");
    let b_share = variant_b as f64 / (VISITORS - control) as f64;
    assert!(
        (0.72..=0.78).contains(&b_share),
        "variant b share {b_share}"
    );
    // The assignment is stable: the same visitor lands in the same arm.
    for index in 0..50 {
        let id = format!("ab-{index}");
        assert_eq!(
            assign(&h.triggers.get(SITE, trigger.id).await.unwrap(), &id)
                .map(|i| ["a", "b"][i].to_string()),
            arms[&id]
        );
    }
    h.triggers.flush().await.unwrap();
    let stats = h
        .triggers
        .stats(SITE, trigger.id, t0() - DAY, t0() + DAY)
        .await
        .unwrap();
    let fired: Vec<(Option<&str>, u64)> = stats
        .variants
        .iter()
        .map(|v| (v.variant.as_deref(), v.counts.fired))
        .collect();
    assert_eq!(
        fired,
        [
            (Some("a"), (VISITORS - control - variant_b) as u64),
            (Some("b"), variant_b as u64),
            (None, control as u64)
        ]
    );

    // Without a delay, over fewer visitors: every non-control visitor gets the message and
    // no control visitor gets anything.
    let mut b2 = body("ab now", url_contains("/now"));
    b2["control_percent"] = json!(50);
    let quick = h.create(b2).await;
    let mut sent_to = Vec::new();
    let mut control_visitors = Vec::new();
    for index in 0..60 {
        let id = format!("now-{index}");
        h.page(&id, "https://shop.example/now").await;
        for (visitor, trigger_id, variant) in h.fires() {
            assert_eq!(trigger_id, quick.id);
            match variant {
                Some(_) => sent_to.push(visitor),
                None => control_visitors.push(visitor),
            }
        }
    }
    assert!(!sent_to.is_empty() && !control_visitors.is_empty());
    let mut delivered: Vec<String> = h
        .delivered(sent_to.len())
        .await
        .into_iter()
        .map(|d| d.0)
        .collect();
    delivered.sort();
    sent_to.sort();
    assert_eq!(delivered, sent_to);
    for visitor in control_visitors {
        assert!(h.conversations_of(&visitor).await.is_empty(), "{visitor}");
        let card = h.presence.get(SITE, &visitor).unwrap();
        assert!(!card.segments.contains(Segment::AutoMessaged));
    }
}

const DAY: i64 = 86_400_000;

// Statistics.

#[tokio::test]
async fn funnel_statistics_survive_a_restart() {
    let mut h = Harness::new().await;
    let mut b = body("offer", url_contains("/pricing"));
    b["goal"] = json!({"event": "purchase", "window_secs": 3600});
    let trigger = h.create(b).await;
    h.page("ann", "https://shop.example/pricing").await;
    h.page("bob", "https://shop.example/pricing").await;
    let delivered = h.delivered(2).await;
    let conversation_of = |visitor: &str| {
        delivered
            .iter()
            .find(|(id, _)| id == visitor)
            .map(|(_, conversation)| *conversation)
            .unwrap()
    };
    // Ann's widget shows the message (read mark), then she replies; Bob only sees it.
    let ann = VisitorRef::new(SITE, "ann");
    h.conversations
        .mark_read(conversation_of("ann"), Party::Visitor(ann), 1)
        .await
        .unwrap();
    h.conversations
        .post_visitor_message(
            conversation_of("ann"),
            ann,
            Content::text("Yes please"),
            None,
        )
        .await
        .unwrap();
    h.conversations
        .mark_read(
            conversation_of("bob"),
            Party::Visitor(VisitorRef::new(SITE, "bob")),
            1,
        )
        .await
        .unwrap();
    h.pump_conversation_events().await;
    // Ann buys within the window; Bob buys too late.
    h.advance(60_000);
    let purchase = BeaconKind::Event(CustomEvent {
        name: "purchase".into(),
        props: Vec::new(),
    });
    h.send(&visit("ann", "https://shop.example/thanks").kind(purchase.clone()))
        .await;
    h.send(&visit("ann", "https://shop.example/thanks").kind(purchase.clone()))
        .await;
    h.advance(3_600_000);
    h.send(&visit("bob", "https://shop.example/thanks").kind(purchase))
        .await;
    // A test-fire is not counted.
    h.page("cid", "https://shop.example/").await;
    h.triggers
        .test_fire(SITE, trigger.id, "cid", None)
        .await
        .unwrap();

    let expected = Funnel {
        fired: 2,
        delivered: 2,
        seen: 2,
        replied: 1,
        goal: 1,
    };
    let before = h
        .triggers
        .stats(SITE, trigger.id, t0() - DAY, t0() + DAY)
        .await
        .unwrap();
    assert_eq!(before.total.counts, expected, "pending counts are included");
    assert_eq!(before.total.rates.replied, 0.5);
    let h = h.restart(t0() + 2 * 3_600_000).await;
    let after = h
        .triggers
        .stats(SITE, trigger.id, t0() - DAY, t0() + DAY)
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(after.variants.len(), 1);
    // Periods: the days overlapping [from, to).
    let day_start = t0() - t0().rem_euclid(DAY);
    for (from, to, fired) in [
        (day_start, day_start + 1, 2),
        (day_start - DAY, day_start, 0),
        (day_start + DAY, day_start + 2 * DAY, 0),
        (t0(), t0(), 0),
    ] {
        let stats = h.triggers.stats(SITE, trigger.id, from, to).await.unwrap();
        assert_eq!(stats.total.counts.fired, fired, "[{from}, {to})");
    }
    let totals = h
        .triggers
        .totals(SITE, t0() - DAY, t0() + DAY)
        .await
        .unwrap();
    assert_eq!(totals[&trigger.id], expected);
    // Deleting the trigger deletes its counters.
    h.triggers.delete(SITE, trigger.id).await.unwrap();
    assert!(
        h.store
            .trigger_stats(SITE, trigger.id, 0, u32::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn control_group_fires_count_goals() {
    let mut h = Harness::new().await;
    let mut b = body("all control", url_contains("/"));
    b["control_percent"] = json!(90);
    b["goal"] = json!({"event": "signup", "window_secs": 600});
    let trigger = h.create(b).await;
    let mut control_visitor = None;
    for index in 0..50 {
        let id = format!("c{index}");
        h.page(&id, "https://shop.example/").await;
        if h.fires().iter().any(|fire| fire.2.is_none()) {
            control_visitor = Some(id);
            break;
        }
    }
    let visitor = control_visitor.expect("a control visitor among 50 at 90 %");
    h.send(
        &visit(&visitor, "https://shop.example/").kind(BeaconKind::Event(CustomEvent {
            name: "SignUp".into(),
            props: Vec::new(),
        })),
    )
    .await;
    let stats = h
        .triggers
        .stats(SITE, trigger.id, t0() - DAY, t0() + DAY)
        .await
        .unwrap();
    let control = stats.variants.iter().find(|v| v.variant.is_none()).unwrap();
    assert_eq!((control.counts.fired, control.counts.goal), (1, 1));
    assert_eq!(control.counts.delivered, 0);
}

// Test-fire and render.

#[tokio::test]
async fn test_fire_ignores_conditions_but_not_blocks() {
    let h = Harness::new().await;
    let mut b = body("never", url_contains("/nowhere"));
    b["variants"] = json!([
        {"key": "a", "author": {"bot": "P"}, "text": "A for {name|you}"},
        {"key": "b", "author": {"bot": "P"}, "text": "B for {name|you}"}
    ]);
    let trigger = h.create(b).await;
    h.page("v", "https://shop.example/").await;
    h.page("blocked", "https://shop.example/").await;
    h.presence.set_blocked(SITE, "blocked", true);
    let conversation_id = h
        .triggers
        .test_fire(SITE, trigger.id, "v", Some("b"))
        .await
        .unwrap();
    let messages = h.store.messages(conversation_id, 0, 10).await.unwrap();
    assert_eq!(
        messages[0].body,
        crate::MessageBody::Text {
            text: "B for you".into()
        }
    );
    let conversation = h.conversations.conversation(conversation_id).await.unwrap();
    assert!(matches!(
        conversation.origin,
        ConversationOrigin::Trigger { test: true, .. }
    ));
    for (visitor, variant, expected) in [
        ("blocked", None, "the visitor is blocked"),
        ("v", None, "the visitor already has an open conversation"),
        ("nobody", None, "live visitor not found"),
        ("v", Some("zz"), "variant \"zz\" not found"),
    ] {
        let error = h
            .triggers
            .test_fire(SITE, trigger.id, visitor, variant)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
    assert!(matches!(
        h.triggers.test_fire(SITE, 999, "v", None).await,
        Err(TriggerError::NotFound(_))
    ));
    let stats = h
        .triggers
        .stats(SITE, trigger.id, t0() - DAY, t0() + DAY)
        .await
        .unwrap();
    assert_eq!(stats.total.counts, Funnel::default());
}

#[tokio::test]
async fn render_previews_placeholders() {
    let h = Harness::new().await;
    h.page("v", "https://shop.example/").await;
    let text = "Hi {first_name|there} from {city}, {country}!";
    assert_eq!(
        h.triggers.render(SITE, text, None).unwrap(),
        "Hi Jana from Prague, Czechia!"
    );
    assert_eq!(
        h.triggers.render(SITE, text, Some("v")).unwrap(),
        "Hi there from London, United Kingdom!"
    );
    assert_eq!(
        h.triggers
            .render(SITE, "Hi {cty}", None)
            .unwrap_err()
            .to_string(),
        "text: unknown placeholder {cty} (one of {name}, {first_name}, {email}, {city}, {country}, {browser}, {os}, {page_title}, {utm_campaign}, {property.NAME})"
    );
    assert!(matches!(
        h.triggers.render(SITE, "x", Some("nobody")),
        Err(TriggerError::NotFound(_))
    ));
}

#[test]
fn the_catalogue_lists_every_field_and_placeholder() {
    let catalogue = Triggers::fields();
    let fields: Vec<&str> = catalogue.fields.iter().map(|f| f.field).collect();
    assert_eq!(
        fields,
        [
            "url",
            "title",
            "visited_url",
            "time_on_page",
            "time_on_site",
            "pages_in_visit",
            "visits",
            "referrer",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
            "campaign_tag",
            "country",
            "country_name",
            "city",
            "browser",
            "os",
            "device",
            "language",
            "customer",
            "property",
            "event",
            "time_of_day",
            "day_of_week",
            "business_hours",
            "agents_online"
        ]
    );
    let json = serde_json::to_value(&catalogue).unwrap();
    assert_eq!(
        json["fields"][0],
        json!({"field": "url", "label": "Current URL", "type": "string",
               "ops": ["equals", "not_equals", "contains", "not_contains", "starts_with",
                       "ends_with", "wildcard", "regex", "in", "not_in", "exists", "not_exists"],
               "needs_name": false})
    );
    assert_eq!(json["fields"][22]["needs_name"], json!(true));
    assert_eq!(catalogue.placeholders.len(), 10);
}

#[test]
fn page_patterns_follow_the_widget() {
    for (pattern, path, expected) in [
        ("/pricing", "/pricing/", true),
        ("/pricing/", "/pricing", true),
        ("/pricing", "/pricing/team", false),
        ("/pricing*", "/pricing/team", true),
        ("https://shop.example/account/", "/account", true),
        ("https://shop.example", "/", true),
        ("  ", "/", false),
        ("/A*", "/a", false),
        ("*", "/anything", true),
    ] {
        assert_eq!(
            page_pattern_matches(pattern, path),
            expected,
            "{pattern} {path}"
        );
    }
    for (url, path) in [
        ("https://shop.example/a/b?x=1#y", "/a/b"),
        ("https://shop.example", "/"),
        ("https://shop.example?x", "/"),
        ("/relative#x", "/relative"),
    ] {
        assert_eq!(url_path(url), path);
    }
}

/// The fired set: visitors' hashes spread over every shard by their top bits, every hash
/// inserted is found and no other is (hashes in the same shard, or one bit apart, included),
/// and inserts from several threads at once are all kept.
#[test]
fn the_fired_set_uses_every_shard_and_answers_exactly() {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    let hasher = FastHash::default();
    let hash = |id: &str| hasher.hash_one(id);
    let shard_of = |hash: u64| (hash >> 58) as usize;

    let set = VisitorSet::new();
    let inserted: HashSet<u64> = (0..20_000).map(|i| hash(&format!("visitor-{i}"))).collect();
    assert_eq!(inserted.len(), 20_000, "distinct ids, distinct hashes");
    for &hash in &inserted {
        set.insert(hash);
    }
    // Inserting again adds nothing.
    for &hash in &inserted {
        set.insert(hash);
    }
    let sizes: Vec<usize> = set.shards.iter().map(|shard| shard.read().len()).collect();
    assert_eq!(sizes.len(), SHARDS);
    assert!(
        sizes.iter().all(|&size| size > 0),
        "an unused shard: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), inserted.len());
    for &hash in &inserted {
        assert!(set.contains(hash));
        assert!(set.shards[shard_of(hash)].read().contains(&hash));
    }

    // Ids never inserted: their hashes land in the same shards as inserted ones.
    let mut strangers = 0;
    for i in 0..20_000 {
        let hash = hash(&format!("stranger-{i}"));
        if !inserted.contains(&hash) {
            assert!(!set.contains(hash));
            strangers += 1;
        }
    }
    assert!(strangers > 19_000);
    // Hashes sharing an inserted hash's shard bits and differing below them: in its lowest bit
    // (the neighbouring table slot), in a middle bit, or in every bit the table uses.
    for &hash in &inserted {
        for other in [hash ^ 1, hash ^ (1 << 31), hash ^ ((1 << 58) - 1)] {
            assert_eq!(shard_of(other), shard_of(hash));
            assert_eq!(set.contains(other), inserted.contains(&other), "{other:#x}");
        }
    }

    // Four threads at once, each with visitors of its own and 1 000 shared with the others.
    let set = VisitorSet::new();
    let batches: Vec<Vec<u64>> = (0..4)
        .map(|thread| {
            (0..5_000)
                .map(|i| hash(&format!("t{thread}-{i}")))
                .chain((0..1_000).map(|i| hash(&format!("shared-{i}"))))
                .collect()
        })
        .collect();
    let start = std::sync::Barrier::new(batches.len());
    std::thread::scope(|scope| {
        for batch in &batches {
            let (set, start) = (&set, &start);
            scope.spawn(move || {
                start.wait();
                for &hash in batch {
                    set.insert(hash);
                }
            });
        }
    });
    let all: HashSet<u64> = batches.iter().flatten().copied().collect();
    assert_eq!(all.len(), 4 * 5_000 + 1_000);
    for &hash in &all {
        assert!(set.contains(hash));
    }
    let total: usize = set.shards.iter().map(|shard| shard.read().len()).sum();
    assert_eq!(total, all.len());
}

/// The API's futures must be `Send`: the dashboards run them on a multi-threaded runtime.
/// (A regression test: `matches_now` once held its non-`Send` evaluation environment across an
/// await.)
#[allow(dead_code, clippy::let_underscore_future)]
fn api_futures_are_send(triggers: &Triggers, beacon: &Beacon<'_>, trigger: Trigger) {
    fn send<T: Send>(_: T) {}
    send(triggers.list(SITE));
    send(triggers.get(SITE, 1));
    send(triggers.create(SITE, trigger.clone()));
    send(triggers.create_many(SITE, vec![trigger.clone()]));
    send(triggers.update(SITE, 1, trigger.clone()));
    send(triggers.patch(SITE, 1, None, None));
    send(triggers.delete(SITE, 1));
    send(triggers.matches_now(SITE, 1));
    send(triggers.preview(SITE, trigger));
    send(triggers.test_fire(SITE, 1, "v", None));
    send(triggers.stats(SITE, 1, 0, 1));
    send(triggers.totals(SITE, 0, 1));
    send(triggers.evaluate(SITE, "v"));
    send(triggers.on_beacon(beacon, false));
    send(triggers.run_due_timers());
    send(triggers.reload_widget_settings(SITE));
    send(triggers.flush());
    send(triggers.shutdown());
}
