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
//!   (ASCII case-insensitive), scanned once over the current URL per evaluation; a hit is
//!   checked for its position (at 0 for `starts_with`, the whole URL for `equals`);
//! - equality values (`equals`, `in`) of UTM fields, country, language, device and browser in a
//!   hash map per field, looked up with the visitor's value.
//!
//! Triggers with no such condition are *unindexed* and always candidates. The candidates are
//! then evaluated in full (including the condition that made them candidates), so the index
//! only ever skips triggers that cannot hold; a property test checks that it answers like a
//! scan of every trigger.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use tracker::VisitorView;

use super::FastHash;
use super::conditions::{self, Leaf, Node, StrTest, TextField, UrlLiteral, text_value};
use super::error::TriggerError;
use super::model::{MAX_MESSAGE_CHARS, Trigger};
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

/// Which necessary condition indexes a trigger.
enum IndexKey<'a> {
    Url(UrlLiteral, &'a str),
    Equal(TextField, Vec<&'a str>),
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
    index: RuleIndex,
}

/// Per indexed field, lowercase value → ranks of the triggers requiring it.
type EqualityIndex = Vec<(TextField, HashMap<Box<str>, Vec<u32>, FastHash>)>;

#[derive(Debug, Default)]
struct RuleIndex {
    urls: Option<AhoCorasick>,
    /// Per automaton pattern: the ranks using that literal, and how.
    url_rules: Vec<Vec<(u32, UrlLiteral)>>,
    /// Per indexed field: lowercase value → ranks.
    equal: EqualityIndex,
    /// Ranks with no index key: always candidates.
    unindexed: Vec<u32>,
}

thread_local! {
    /// Per-thread buffers for candidate collection, so an evaluation does not allocate.
    static SCRATCH: RefCell<(Vec<u32>, String)> = const { RefCell::new((Vec::new(), String::new())) };
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
        SiteRules {
            ranked,
            by_id,
            goals,
            index,
        }
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
        let mut unindexed = Vec::new();
        for (rank, trigger) in ranked.iter().enumerate() {
            let rank = rank as u32;
            match index_key(&trigger.root) {
                Some(IndexKey::Url(kind, literal)) => {
                    let id = *pattern_ids.entry(literal).or_insert_with(|| {
                        patterns.push(literal);
                        url_rules.push(Vec::new());
                        patterns.len() - 1
                    });
                    url_rules[id].push((rank, kind));
                }
                Some(IndexKey::Equal(field, values)) => {
                    let position = match equal.iter().position(|(known, _)| *known == field) {
                        Some(position) => position,
                        None => {
                            equal.push((field, HashMap::default()));
                            equal.len() - 1
                        }
                    };
                    for value in values {
                        equal[position]
                            .1
                            .entry(value.into())
                            .or_default()
                            .push(rank);
                    }
                }
                None => unindexed.push(rank),
            }
        }
        let urls = if patterns.is_empty() {
            None
        } else {
            match AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&patterns)
            {
                Ok(automaton) => Some(automaton),
                Err(error) => {
                    // Only a pathological pattern set exceeds the automaton's limits; then
                    // every URL-keyed trigger is simply scanned.
                    tracing::warn!(%error, "trigger URL index not built; scanning instead");
                    unindexed.extend(url_rules.iter().flatten().map(|(rank, _)| *rank));
                    url_rules.clear();
                    None
                }
            }
        };
        RuleIndex {
            urls,
            url_rules,
            equal,
            unindexed,
        }
    }

    fn collect(&self, view: &VisitorView<'_>, ranks: &mut Vec<u32>, lower: &mut String) {
        ranks.extend_from_slice(&self.unindexed);
        if let Some(urls) = &self.urls {
            let url = view.current_url();
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
        for (field, values) in &self.equal {
            let Some(value) = text_value(view, *field, None) else {
                continue;
            };
            lower.clear();
            lower.push_str(value);
            lower.make_ascii_lowercase();
            if let Some(found) = values.get(lower.as_str()) {
                ranks.extend_from_slice(found);
            }
        }
    }
}

/// The necessary condition that indexes a trigger, if it has one: URL literals are preferred
/// (an `equals` first, then the longest literal), then an equality on an indexed field.
fn index_key(root: &Node) -> Option<IndexKey<'_>> {
    let children: &[Node] = match root {
        Node::All(children) => children,
        leaf @ Node::Leaf(_) => std::slice::from_ref(leaf),
        Node::Any(_) => return None,
    };
    let mut best_url: Option<(UrlLiteral, &str)> = None;
    let mut best_equal: Option<IndexKey<'_>> = None;
    for child in children {
        let Node::Leaf(leaf) = child else {
            continue;
        };
        let Leaf::Text { field, test, .. } = &**leaf else {
            continue;
        };
        if *field == TextField::Url {
            if let Some((kind, literal)) = test.url_literal()
                && !literal.is_empty()
            {
                let better = match best_url {
                    None => true,
                    Some((UrlLiteral::Equals, _)) => false,
                    Some((_, current)) => {
                        kind == UrlLiteral::Equals || literal.len() > current.len()
                    }
                };
                if better {
                    best_url = Some((kind, literal));
                }
            }
        } else if best_equal.is_none() && EQUALITY_FIELDS.contains(field) {
            best_equal = equality_key(*field, test);
        }
    }
    best_url
        .map(|(kind, literal)| IndexKey::Url(kind, literal))
        .or(best_equal)
}

fn equality_key(field: TextField, test: &StrTest) -> Option<IndexKey<'_>> {
    test.equal_values()
        .map(|values| IndexKey::Equal(field, values))
}
