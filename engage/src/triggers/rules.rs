//! Compiled triggers and a site's rule set with its candidate index.
//!
//! A site's triggers are compiled into one immutable [`SiteRules`], rebuilt whole and swapped in
//! on every edit, so evaluation never waits for an edit and never sees half of one.
//!
//! # The index
//!
//! Most triggers name what they are about in a condition every matching visitor must pass: "URL
//! contains /pricing", "utm_source equals ads". Such a *necessary* condition is a top-level
//! child of the trigger's `all` group (or the whole condition). The index keeps, for each
//! trigger that has one:
//!
//! - URL literals (`equals`, `contains`, `starts_with` on `url`) in one Aho-Corasick automaton
//!   (ASCII case-insensitive), scanned over the current URL; a hit is checked for its position
//!   (at 0 for `starts_with`, the whole URL for `equals`). A site's visitors view the same pages
//!   over and over, so what a URL gave is kept per thread ([`UrlCache`]): a page view of a known
//!   URL costs a hash lookup, not a scan;
//! - equality values (`equals`, `in`) of UTM fields, country, language, device and browser in a
//!   hash map per field, looked up with the visitor's value;
//! - `customer is true` / `is false` in two lists, one taken per visitor.
//!
//! A trigger with several necessary conditions is filed under the one shared by the fewest
//! triggers of the site (the shortest list, as a search engine intersects postings): "utm_campaign
//! equals spring_sale AND URL contains /products/" goes under its campaign, not under a literal
//! that a hundred other triggers and most page views also carry. Ties go to a URL `equals`, then
//! an equality, then the longest URL literal.
//!
//! Triggers with no such condition are *unindexed* and always candidates. The candidates are
//! then evaluated in full, except for the condition their key established (their programs
//! leave it out), so the index only ever skips triggers that cannot hold; a property test
//! checks that it answers like a scan of every trigger's whole tree.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use tracker::VisitorView;

use super::FastHash;
use super::conditions::{self, Env, Flat, Leaf, Node, TextField, Truth, UrlLiteral, text_value};
use super::error::TriggerError;
use super::model::{Limit, MAX_MESSAGE_CHARS, Trigger};
use super::placeholders::Template;

/// A trigger ready to evaluate.
#[derive(Debug)]
pub(crate) struct CompiledTrigger {
    pub trigger: Trigger,
    pub root: Node,
    /// One per variant, in order.
    pub templates: Vec<Template>,
    /// The goal event, ASCII-lowercased.
    pub goal_event: Option<Box<str>>,
}

impl CompiledTrigger {
    /// Compiles a trigger's conditions and message texts. Checks what compiling needs; the
    /// service's validation checks the rest first.
    pub(crate) fn new(trigger: Trigger) -> Result<CompiledTrigger, TriggerError> {
        let root = conditions::compile(&trigger.conditions)?;
        let templates = trigger
            .variants
            .iter()
            .enumerate()
            .map(|(index, variant)| {
                if variant.text.trim().is_empty()
                    || variant.text.chars().count() > MAX_MESSAGE_CHARS
                {
                    return Err(TriggerError::invalid(
                        &format!("variants[{index}].text"),
                        format_args!("1 to {MAX_MESSAGE_CHARS} characters"),
                    ));
                }
                Template::parse(&variant.text).map_err(|message| {
                    TriggerError::invalid(&format!("variants[{index}].text"), message)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let goal_event = trigger
            .goal
            .as_ref()
            .map(|goal| goal.event.to_ascii_lowercase().into_boxed_str());
        Ok(CompiledTrigger {
            trigger,
            root,
            templates,
            goal_event,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.trigger.id
    }
}

/// Up to this many bytes of URL literals, the URL index is a DFA: some 16 bytes of tables per
/// byte of pattern for URL-like literals (146 KiB for 250 product paths), about a third faster
/// to scan a URL with than the contiguous NFA the builder picks for them.
const DFA_PATTERN_BYTES: usize = 32 * 1024;

/// Fields with an equality index.
const EQUALITY_FIELDS: [TextField; 9] = [
    TextField::UtmSource,
    TextField::UtmMedium,
    TextField::UtmCampaign,
    TextField::UtmTerm,
    TextField::UtmContent,
    TextField::Country,
    TextField::Language,
    TextField::Device,
    TextField::Browser,
];

/// A necessary condition the index can file a trigger under.
enum IndexKey<'a> {
    Url(UrlLiteral, &'a str),
    Equal(TextField, Vec<&'a str>),
    Customer(bool),
}

/// One site's triggers, compiled and indexed. Immutable: an edit builds a new one.
#[derive(Debug, Default)]
pub(crate) struct SiteRules {
    /// Enabled triggers, highest priority first, then lowest id: a trigger's position here is
    /// its *rank*, and a lower rank wins.
    pub ranked: Vec<Arc<CompiledTrigger>>,
    /// Every trigger of the site, enabled or not, by id.
    pub by_id: HashMap<u64, Arc<CompiledTrigger>>,
    /// Lowercase goal event name → ids of triggers (enabled or not) with that goal.
    pub goals: HashMap<Box<str>, Vec<u64>>,
    /// The enabled triggers' conditions, flattened back to back in rank order: evaluating the
    /// candidates reads this one block, not a trigger each.
    program: Vec<Flat>,
    /// Per rank, where its program starts and the trigger's id and limit: one read per
    /// candidate before its program.
    heads: Vec<Head>,
    index: RuleIndex,
}

/// What evaluating a candidate needs of its trigger besides the program.
#[derive(Debug, Clone, Copy)]
struct Head {
    start: u32,
    id: u64,
    limit: Limit,
    /// Whole seconds on the site and on the page before the trigger's necessary time
    /// conditions can hold (0: none): see [`SiteRules::earliest`].
    site_seconds: u32,
    page_seconds: u32,
}

/// Per indexed field, lowercase value → ranks of the triggers requiring it.
type EqualityIndex = Vec<(TextField, HashMap<Box<str>, Vec<u32>, FastHash>)>;

#[derive(Debug, Default)]
struct RuleIndex {
    /// This index among every one built in the process, for [`UrlCache`]: answers of an
    /// earlier version of the site's rules (or of another site) are never taken for its own.
    serial: u64,
    urls: Option<AhoCorasick>,
    /// Per automaton pattern: the ranks using that literal, and how.
    url_rules: Vec<Vec<(u32, UrlLiteral)>>,
    /// Per indexed field: lowercase value → ranks.
    equal: EqualityIndex,
    /// Ranks requiring `customer is false` (0) and `customer is true` (1).
    customer: [Vec<u32>; 2],
    /// Ranks with no index key: always candidates.
    unindexed: Vec<u32>,
    /// Per rank, the position of the condition a candidate found through the index is known
    /// to pass (its key), in its tree's entries.
    established: Vec<Option<usize>>,
}

thread_local! {
    /// Per-thread buffers for candidate collection, so an evaluation does not allocate.
    static SCRATCH: RefCell<(Vec<u32>, String)> = const { RefCell::new((Vec::new(), String::new())) };
    /// Per-thread answers of the URL automata.
    static URL_CACHE: RefCell<UrlCache> = RefCell::new(UrlCache::default());
}

/// Serial numbers of rule indexes (0: none yet).
static NEXT_INDEX_SERIAL: AtomicU64 = AtomicU64::new(1);

/// URLs one generation of [`UrlCache`] holds.
const URL_CACHE_GENERATION: usize = 4096;

/// URLs seen once that [`UrlCache`] remembers (as hashes) before it forgets them all.
const URL_CACHE_SEEN: usize = 16 * 1024;

/// The URL-keyed candidates of URLs seen lately on this thread: URL → (index serial, ranks).
///
/// Two generations approximate least-recently-used without bookkeeping per hit: new answers go
/// into `young`; when it is full it becomes `old` (the previous `old` is dropped), and a hit in
/// `old` moves back into `young`. A URL is let in the second time it is scanned (`seen` holds
/// the hashes of URLs scanned once), so one-off URLs (a landing page with a click id or campaign
/// in its query) never push a site's hot pages out. Per thread, so no lock and no shared cache
/// line on the hot path; bounded at two generations of URLs and a set of hashes per thread,
/// whatever the traffic.
#[derive(Default)]
struct UrlCache {
    young: HashMap<Box<str>, (u64, Box<[u32]>), FastHash>,
    old: HashMap<Box<str>, (u64, Box<[u32]>), FastHash>,
    seen: std::collections::HashSet<u64, FastHash>,
}

impl UrlCache {
    /// The cached ranks of `url` under index `serial`, if any.
    fn get(&mut self, serial: u64, url: &str) -> Option<&[u32]> {
        if !matches!(self.young.get(url), Some((known, _)) if *known == serial) {
            let (key, (known, ranks)) = self.old.remove_entry(url)?;
            if known != serial {
                return None;
            }
            self.insert(key, serial, ranks);
        }
        self.young.get(url).map(|(_, ranks)| &**ranks)
    }

    /// Whether a URL just scanned should be kept: the second time it is.
    fn admit(&mut self, url: &str) -> bool {
        let hash = self.seen.hasher().hash_one(url);
        if self.seen.remove(&hash) {
            return true;
        }
        if self.seen.len() >= URL_CACHE_SEEN {
            self.seen.clear();
        }
        self.seen.insert(hash);
        false
    }

    fn insert(&mut self, url: Box<str>, serial: u64, ranks: Box<[u32]>) {
        if self.young.len() >= URL_CACHE_GENERATION && !self.young.contains_key(&url) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(url, (serial, ranks));
    }
}

impl SiteRules {
    /// Builds the rule set of one site from all its triggers (enabled or not). A stored trigger
    /// that no longer compiles is left out and reported.
    pub(crate) fn build(triggers: impl IntoIterator<Item = Arc<CompiledTrigger>>) -> SiteRules {
        let mut by_id = HashMap::new();
        let mut goals: HashMap<Box<str>, Vec<u64>> = HashMap::new();
        let mut ranked = Vec::new();
        for trigger in triggers {
            if let Some(event) = &trigger.goal_event {
                goals.entry(event.clone()).or_default().push(trigger.id());
            }
            if trigger.trigger.enabled {
                ranked.push(Arc::clone(&trigger));
            }
            by_id.insert(trigger.id(), trigger);
        }
        ranked.sort_by(|a, b| {
            b.trigger
                .priority
                .cmp(&a.trigger.priority)
                .then(a.id().cmp(&b.id()))
        });
        let index = RuleIndex::build(&ranked);
        // A candidate found through the index passes its key: its program leaves it out.
        let mut program = Vec::new();
        let mut heads = Vec::with_capacity(ranked.len());
        for (trigger, established) in ranked.iter().zip(&index.established) {
            let (mut site_seconds, mut page_seconds) = (0, 0);
            for (_, leaf) in trigger.root.necessary() {
                match leaf {
                    Leaf::TimeOnSite(test) => site_seconds = site_seconds.max(test.first_second()),
                    Leaf::TimeOnPage(test) => page_seconds = page_seconds.max(test.first_second()),
                    _ => {}
                }
            }
            heads.push(Head {
                start: program.len() as u32,
                id: trigger.id(),
                limit: trigger.trigger.limit,
                site_seconds,
                page_seconds,
            });
            match established {
                Some(at) => trigger.root.append_without(*at, &mut program),
                None => program.extend_from_slice(trigger.root.entries()),
            }
        }
        SiteRules {
            ranked,
            by_id,
            goals,
            program,
            heads,
            index,
        }
    }

    /// The id and limit of the trigger at `rank`.
    pub(crate) fn limit(&self, rank: u32) -> (u64, Limit) {
        let head = self.heads[rank as usize];
        (head.id, head.limit)
    }

    /// The earliest time (tracker clock, ms) the trigger at `rank` can hold for this visitor,
    /// from its necessary time-on-site and time-on-page conditions (`i64::MIN` without any):
    /// before it, an evaluation says "from T" with T no earlier, or "never". So a candidate
    /// whose earliest time is ahead, and no earlier than a wake-up already found, changes
    /// nothing and need not be evaluated.
    pub(crate) fn earliest(&self, rank: u32, view: &VisitorView<'_>) -> i64 {
        let head = &self.heads[rank as usize];
        let after = |start: i64, seconds: u32| match seconds {
            0 => i64::MIN,
            seconds => start.saturating_add(i64::from(seconds) * 1000),
        };
        after(view.visit_started_ms(), head.site_seconds)
            .max(after(view.page_since_ms(), head.page_seconds))
    }

    /// Evaluates the trigger at `rank` for a candidate [`SiteRules::with_candidates`] gave:
    /// what its index key has not established already.
    pub(crate) fn eval_candidate(&self, rank: u32, view: &VisitorView<'_>, env: &Env<'_>) -> Truth {
        conditions::eval(
            &self.program[self.heads[rank as usize].start as usize..],
            view,
            env,
        )
    }

    /// Whether nothing on this site can fire or convert: the fast path of a beacon.
    pub(crate) fn is_idle(&self) -> bool {
        self.ranked.is_empty() && self.goals.is_empty()
    }

    /// Runs `f` with the ranks that may hold for this visitor, ascending (highest priority
    /// first), each once. With `use_index` false every rank is a candidate (for tests).
    pub(crate) fn with_candidates<R>(
        &self,
        view: &VisitorView<'_>,
        use_index: bool,
        f: impl FnOnce(&[u32]) -> R,
    ) -> R {
        if !use_index {
            let all: Vec<u32> = (0..self.ranked.len() as u32).collect();
            return f(&all);
        }
        SCRATCH.with(|scratch| {
            // A re-entrant call (not expected) would find the buffers borrowed: fall back to
            // fresh ones rather than panic.
            let mut fresh = (Vec::new(), String::new());
            let mut borrowed = scratch.try_borrow_mut();
            let (ranks, lower) = match borrowed.as_deref_mut() {
                Ok(buffers) => buffers,
                Err(_) => &mut fresh,
            };
            ranks.clear();
            self.index.collect(view, ranks, lower);
            ranks.sort_unstable();
            ranks.dedup();
            f(ranks)
        })
    }
}

impl RuleIndex {
    fn build(ranked: &[Arc<CompiledTrigger>]) -> RuleIndex {
        let mut patterns: Vec<&str> = Vec::new();
        let mut pattern_ids: HashMap<&str, usize> = HashMap::new();
        let mut url_rules: Vec<Vec<(u32, UrlLiteral)>> = Vec::new();
        let mut equal: EqualityIndex = Vec::new();
        let mut customer: [Vec<u32>; 2] = Default::default();
        let mut unindexed = Vec::new();
        let keys: Vec<Vec<(usize, IndexKey<'_>)>> = ranked
            .iter()
            .map(|trigger| index_keys(&trigger.root))
            .collect();
        let sharing = Sharing::count(&keys);
        let mut established = vec![None; ranked.len()];
        for (rank, keys) in keys.iter().enumerate() {
            let best = sharing.best(keys);
            established[rank] = best.map(|(at, _)| *at);
            let rank = rank as u32;
            match best.map(|(_, key)| key) {
                Some(IndexKey::Url(kind, literal)) => {
                    let id = *pattern_ids.entry(literal).or_insert_with(|| {
                        patterns.push(literal);
                        url_rules.push(Vec::new());
                        patterns.len() - 1
                    });
                    url_rules[id].push((rank, *kind));
                }
                Some(IndexKey::Equal(field, values)) => {
                    let position = match equal.iter().position(|(known, _)| known == field) {
                        Some(position) => position,
                        None => {
                            equal.push((*field, HashMap::default()));
                            equal.len() - 1
                        }
                    };
                    for value in values {
                        equal[position]
                            .1
                            .entry((*value).into())
                            .or_default()
                            .push(rank);
                    }
                }
                Some(IndexKey::Customer(expected)) => customer[usize::from(*expected)].push(rank),
                None => unindexed.push(rank),
            }
        }
        let urls = if patterns.is_empty() {
            None
        } else {
            // A DFA scans fastest (one table lookup per byte of the URL); the builder's own
            // choice for a few hundred patterns is a slower NFA. Past a size where the tables
            // would take many megabytes, the builder chooses.
            let bytes: usize = patterns.iter().map(|pattern| pattern.len()).sum();
            let kind = (bytes <= DFA_PATTERN_BYTES).then_some(AhoCorasickKind::DFA);
            match AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(&patterns)
            {
                Ok(automaton) => Some(automaton),
                Err(error) => {
                    // Only a pathological pattern set exceeds the automaton's limits; then
                    // every URL-keyed trigger is simply scanned.
                    tracing::warn!(%error, "trigger URL index not built; scanning instead");
                    for (rank, _) in url_rules.iter().flatten() {
                        unindexed.push(*rank);
                        established[*rank as usize] = None;
                    }
                    unindexed.sort_unstable();
                    url_rules.clear();
                    None
                }
            }
        };
        RuleIndex {
            serial: NEXT_INDEX_SERIAL.fetch_add(1, Ordering::Relaxed),
            urls,
            url_rules,
            equal,
            customer,
            unindexed,
            established,
        }
    }

    /// Appends the ranks whose URL literal `url` passes.
    fn scan_url(&self, urls: &AhoCorasick, url: &str, ranks: &mut Vec<u32>) {
        for hit in urls.find_overlapping_iter(url) {
            for &(rank, kind) in &self.url_rules[hit.pattern().as_usize()] {
                let fits = match kind {
                    UrlLiteral::Contains => true,
                    UrlLiteral::StartsWith => hit.start() == 0,
                    UrlLiteral::Equals => hit.start() == 0 && hit.end() == url.len(),
                };
                if fits {
                    ranks.push(rank);
                }
            }
        }
    }

    fn collect(&self, view: &VisitorView<'_>, ranks: &mut Vec<u32>, lower: &mut String) {
        ranks.extend_from_slice(&self.unindexed);
        let is_customer = view
            .identity()
            .is_some_and(|identity| identity.is_customer());
        ranks.extend_from_slice(&self.customer[usize::from(is_customer)]);
        if let Some(urls) = &self.urls {
            let url = view.current_url();
            URL_CACHE.with(|cache| match cache.try_borrow_mut() {
                Ok(mut cache) => {
                    if let Some(found) = cache.get(self.serial, url) {
                        ranks.extend_from_slice(found);
                        return;
                    }
                    let from = ranks.len();
                    self.scan_url(urls, url, ranks);
                    if cache.admit(url) {
                        cache.insert(url.into(), self.serial, ranks[from..].into());
                    }
                }
                // Re-entered (not expected): scan without the cache.
                Err(_) => self.scan_url(urls, url, ranks),
            });
        }
        for (field, values) in &self.equal {
            let Some(value) = text_value(view, *field, None) else {
                continue;
            };
            let value = if value.bytes().any(|byte| byte.is_ascii_uppercase()) {
                lower.clear();
                lower.push_str(value);
                lower.make_ascii_lowercase();
                lower.as_str()
            } else {
                value
            };
            if let Some(found) = values.get(value) {
                ranks.extend_from_slice(found);
            }
        }
    }
}

/// Every necessary condition of a trigger the index could file it under, with its position in
/// the tree's entries.
fn index_keys(root: &Node) -> Vec<(usize, IndexKey<'_>)> {
    root.necessary()
        .into_iter()
        .filter_map(|(at, leaf)| index_key(leaf).map(|key| (at, key)))
        .collect()
}

fn index_key(leaf: &Leaf) -> Option<IndexKey<'_>> {
    match leaf {
        Leaf::Text { field, test, .. } if *field == TextField::Url => test
            .url_literal()
            .filter(|(_, literal)| !literal.is_empty())
            .map(|(kind, literal)| IndexKey::Url(kind, literal)),
        Leaf::Text { field, test, .. } if EQUALITY_FIELDS.contains(field) => test
            .equal_values()
            .map(|values| IndexKey::Equal(*field, values)),
        Leaf::Customer(expected) => Some(IndexKey::Customer(*expected)),
        _ => None,
    }
}

/// How many of a site's triggers could be filed under each key: the length of the list a key
/// would put a trigger on, to choose the shortest.
#[derive(Default)]
struct Sharing<'a> {
    urls: HashMap<&'a str, usize>,
    equal: HashMap<(TextField, &'a str), usize>,
    customer: [usize; 2],
}

impl<'a> Sharing<'a> {
    fn count(keys: &[Vec<(usize, IndexKey<'a>)>]) -> Sharing<'a> {
        let mut sharing = Sharing::default();
        for (_, key) in keys.iter().flatten() {
            match key {
                IndexKey::Url(_, literal) => *sharing.urls.entry(literal).or_default() += 1,
                IndexKey::Equal(field, values) => {
                    for value in values {
                        *sharing.equal.entry((*field, value)).or_default() += 1;
                    }
                }
                IndexKey::Customer(expected) => sharing.customer[usize::from(*expected)] += 1,
            }
        }
        sharing
    }

    /// The key with the shortest list; ties go to a URL `equals`, then an equality, then the
    /// longest URL literal, then the first.
    fn best<'k>(&self, keys: &'k [(usize, IndexKey<'a>)]) -> Option<&'k (usize, IndexKey<'a>)> {
        keys.iter().min_by_key(|(_, key)| {
            let (shared, preference) = match key {
                IndexKey::Url(UrlLiteral::Equals, literal) => (self.urls[literal], 0),
                IndexKey::Url(_, literal) => (self.urls[literal], 3),
                IndexKey::Equal(field, values) => (
                    values
                        .iter()
                        .map(|value| self.equal[&(*field, *value)])
                        .sum::<usize>(),
                    1,
                ),
                IndexKey::Customer(expected) => (self.customer[usize::from(*expected)], 2),
            };
            let longer = match key {
                IndexKey::Url(_, literal) => usize::MAX - literal.len(),
                _ => 0,
            };
            (shared, preference, longer)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn compiled(id: u64, conditions: Value) -> Arc<CompiledTrigger> {
        let mut trigger: Trigger = serde_json::from_value(json!({
            "name": format!("rule {id}"),
            "enabled": true,
            "priority": 0,
            "conditions": conditions,
            "delay_secs": 0,
            "open_widget": false,
            "variants": [{"key": "a", "weight": 1, "author": {"bot": "Porchlight"}, "text": "Hi"}],
            "control_percent": 0,
            "limit": {"mode": "once_per_visitor"},
            "goal": null
        }))
        .unwrap();
        trigger.id = id;
        Arc::new(CompiledTrigger::new(trigger).unwrap())
    }

    fn leaf(field: &str, op: &str, value: Value) -> Value {
        json!({"field": field, "op": op, "value": value})
    }

    /// The key each trigger is filed under, described.
    fn filing(triggers: &[Arc<CompiledTrigger>]) -> Vec<String> {
        let keys: Vec<Vec<(usize, IndexKey<'_>)>> = triggers
            .iter()
            .map(|trigger| index_keys(&trigger.root))
            .collect();
        let sharing = Sharing::count(&keys);
        keys.iter()
            .map(|keys| match sharing.best(keys).map(|(_, key)| key) {
                Some(IndexKey::Url(kind, literal)) => format!("url {kind:?} {literal}"),
                Some(IndexKey::Equal(field, values)) => format!("{field:?} {}", values.join(",")),
                Some(IndexKey::Customer(expected)) => format!("customer {expected}"),
                None => "unindexed".into(),
            })
            .collect()
    }

    #[test]
    fn a_trigger_is_filed_under_its_least_shared_necessary_condition() {
        let mut triggers = Vec::new();
        // Ten campaign triggers on product pages: each campaign is rarer than "/products/".
        for id in 0..10 {
            triggers.push(compiled(
                id,
                json!({"all": [
                    leaf("utm_campaign", "equals", json!(format!("Sale-{}", id % 5))),
                    leaf("url", "contains", json!("/products/")),
                    leaf("time_on_site", "gte", json!(60)),
                ]}),
            ));
        }
        // One product page, with a country list shared by nobody else: the page is as rare,
        // and a URL literal wins a tie against an equality only when it is an `equals`.
        triggers.push(compiled(
            10,
            json!({"all": [
                leaf("url", "contains", json!("/products/red-shoe")),
                leaf("country", "in", json!(["US"])),
            ]}),
        ));
        triggers.push(compiled(
            11,
            json!({"all": [
                leaf("url", "equals", json!("https://shop.example/cart")),
                leaf("country", "in", json!(["SE"])),
            ]}),
        ));
        // Customers: two triggers need one, and nothing else necessary is indexable.
        for id in 12..14 {
            triggers.push(compiled(
                id,
                json!({"all": [
                    leaf("customer", "is", json!(true)),
                    leaf("visits", "gte", json!(3)),
                ]}),
            ));
        }
        // An `any` at the top names nothing every match must pass.
        triggers.push(compiled(
            14,
            json!({"any": [
                leaf("url", "contains", json!("/blog")),
                leaf("utm_source", "equals", json!("ads")),
            ]}),
        ));
        // Of two URL literals shared alike, the longer.
        triggers.push(compiled(
            15,
            json!({"all": [
                leaf("url", "contains", json!("/a")),
                leaf("url", "starts_with", json!("https://shop.example/a/b/c")),
            ]}),
        ));
        let filed = filing(&triggers);
        for (id, key) in filed.iter().enumerate().take(10) {
            assert_eq!(key, &format!("UtmCampaign sale-{}", id % 5), "trigger {id}");
        }
        assert_eq!(filed[10], "Country us");
        assert_eq!(filed[11], "url Equals https://shop.example/cart");
        assert_eq!(filed[12], "customer true");
        assert_eq!(filed[13], "customer true");
        assert_eq!(filed[14], "unindexed");
        assert_eq!(filed[15], "url StartsWith https://shop.example/a/b/c");
    }

    #[test]
    fn the_url_cache_answers_only_for_its_own_index_and_stays_bounded() {
        let mut cache = UrlCache::default();
        cache.insert("https://shop.example/a".into(), 1, Box::new([3, 7]));
        assert_eq!(cache.get(1, "https://shop.example/a"), Some(&[3, 7][..]));
        // Another index (an edited rule set, another site) never takes this answer.
        assert_eq!(cache.get(2, "https://shop.example/a"), None);
        cache.insert("https://shop.example/a".into(), 2, Box::new([]));
        assert_eq!(cache.get(2, "https://shop.example/a"), Some(&[][..]));
        assert_eq!(cache.get(1, "https://shop.example/a"), None);

        // A URL in use survives any number of one-off URLs; the cache never holds more than
        // two generations.
        for n in 0..5 * URL_CACHE_GENERATION {
            cache.insert(
                format!("https://shop.example/?click={n}").into(),
                2,
                Box::new([1]),
            );
            if n % (URL_CACHE_GENERATION / 2) == 0 {
                assert_eq!(cache.get(2, "https://shop.example/a"), Some(&[][..]), "{n}");
            }
            assert!(cache.young.len() + cache.old.len() <= 2 * URL_CACHE_GENERATION);
        }
        assert_eq!(cache.get(2, "https://shop.example/?click=0"), None);
        let last = format!(
            "https://shop.example/?click={}",
            5 * URL_CACHE_GENERATION - 1
        );
        assert_eq!(cache.get(2, &last), Some(&[1][..]));
    }

    #[test]
    fn the_url_cache_lets_a_url_in_the_second_time_it_is_scanned() {
        let mut cache = UrlCache::default();
        assert!(!cache.admit("https://shop.example/a"));
        assert!(cache.admit("https://shop.example/a"));
        // Then it starts over (the URL is in the cache by then).
        assert!(!cache.admit("https://shop.example/a"));
        // One-off URLs past the limit forget what was seen once.
        for n in 0..URL_CACHE_SEEN {
            assert!(!cache.admit(&format!("https://shop.example/?click={n}")));
            assert!(cache.seen.len() <= URL_CACHE_SEEN);
        }
        assert!(!cache.admit("https://shop.example/a"));
        assert!(cache.admit("https://shop.example/a"));
    }
}
