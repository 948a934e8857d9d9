//! Triggers as the API takes and returns them, and as the store keeps them (JSON).
//!
//! The shapes follow the design contract (`triggers-design.md`): a [`Trigger`] has a tree of
//! conditions ([`ConditionNode`]), message [`Variant`]s, a [`Limit`], an optional [`Goal`] and a
//! control-group share. Conditions keep their field and operator as the author wrote them
//! (strings, and the value as raw JSON) so that a trigger round-trips exactly; their meaning is
//! checked and compiled by `compile`, whose errors name the bad part by its JSON path.
//!
//! [`Trigger::from_json`] is the parser for untrusted input: every error it reports starts with
//! the path of the offending value (`variants[1].key: ...`). Stored records are decoded with the
//! same code through `Deserialize`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::TriggerError;

/// Most variants a trigger may have.
pub const MAX_VARIANTS: usize = 5;
/// Longest trigger name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest message text of a variant, in characters (before placeholders are filled in).
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest `delay_secs`.
pub const MAX_DELAY_SECS: u32 = 3600;
/// Largest `control_percent`.
pub const MAX_CONTROL_PERCENT: u8 = 90;
/// Longest goal window: 30 days.
pub const MAX_GOAL_WINDOW_SECS: u32 = 30 * 86_400;
/// Longest cooldown: a year.
pub const MAX_COOLDOWN_SECS: u32 = 365 * 86_400;
/// Largest weight of a variant.
pub const MAX_WEIGHT: u32 = 100;

/// A trigger: when to write to a visitor, what, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// Server-issued; 0 before the trigger is stored.
    #[serde(default)]
    pub id: u64,
    /// The site key (from the URL of the API call).
    #[serde(default)]
    pub site: String,
    pub name: String,
    pub enabled: bool,
    /// Higher wins when several triggers could fire at once.
    pub priority: i32,
    pub conditions: ConditionNode,
    /// Seconds between the fire and sending the message.
    pub delay_secs: u32,
    /// Whether the widget opens itself with the message.
    pub open_widget: bool,
    pub variants: Vec<Variant>,
    /// Percentage of matching visitors (0..=90) who get nothing, for comparison.
    pub control_percent: u8,
    pub limit: Limit,
    pub goal: Option<Goal>,
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

/// A node of the condition tree: a group or a single condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionNode {
    /// Every child holds. Never empty.
    All(Vec<ConditionNode>),
    /// At least one child holds. Never empty.
    Any(Vec<ConditionNode>),
    Condition(Condition),
}

/// One test of one visitor field, as written: `{"field", "op", "value"?, "name"?,
/// "property"?}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    pub field: String,
    pub op: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The tag, property or event name for `campaign_tag`, `property` and `event`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `event`: a test of one property of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<PropertyTest>,
}

/// `{"name", "op", "value"}`: a test of a custom event's property.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyTest {
    pub name: String,
    pub op: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A message variant (A/B).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// `[a-z0-9_-]{1,16}`, unique within the trigger.
    pub key: String,
    pub author: Sender,
    /// The message, with placeholders such as `{name|there}`.
    pub text: String,
    /// Relative share among the variants, 1..=100.
    pub weight: u32,
}

/// Who the message appears to come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sender {
    /// An agent of the site, shown under their current name.
    Agent { agent_id: u64 },
    /// A display name, such as "Porchlight".
    Bot { bot: String },
}

/// How often a trigger may fire for one visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Limit {
    OncePerVisitor,
    OncePerVisit,
    /// Again only when `cooldown_secs` have passed since the last fire for this visitor.
    Cooldown {
        cooldown_secs: u32,
    },
}

/// What counts as a conversion: the visitor sends custom event `event` within `window_secs`
/// after the fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    pub event: String,
    pub window_secs: u32,
}

impl Trigger {
    /// Parses an API body. Read-only fields (`id`, `site`, `created_ms`, `updated_ms`, and
    /// `stats` as the list returns it) are accepted and ignored: the caller sets them. Any
    /// other unknown field, a missing required one or a value of the wrong type is an error
    /// naming its path. Only the shape is checked here; [`super::Triggers`] validates meaning.
    pub fn from_json(body: &Value) -> Result<Trigger, TriggerError> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("", "expected a JSON object (a trigger)"))?;
        for key in object.keys() {
            if !TRIGGER_KEYS.contains(&key.as_str()) {
                return Err(invalid(key, "unknown field"));
            }
        }
        let conditions = object
            .get("conditions")
            .ok_or_else(|| invalid("conditions", "missing"))
            .and_then(|value| parse_node(value, "conditions"))?;
        let variants = match object.get("variants") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| parse_variant(item, &format!("variants[{index}]")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(invalid("variants", "expected an array of variants")),
            None => return Err(invalid("variants", "missing")),
        };
        Ok(Trigger {
            id: 0,
            site: String::new(),
            name: required(object, "name", "")?,
            enabled: optional(object, "enabled", "")?.unwrap_or(true),
            priority: optional(object, "priority", "")?.unwrap_or(0),
            conditions,
            delay_secs: optional(object, "delay_secs", "")?.unwrap_or(0),
            open_widget: optional(object, "open_widget", "")?.unwrap_or(false),
            variants,
            control_percent: optional(object, "control_percent", "")?.unwrap_or(0),
            limit: parse_limit(object.get("limit"))?,
            goal: match object.get("goal") {
                None | Some(Value::Null) => None,
                Some(Value::Object(goal)) => {
                    reject_unknown(goal, &["event", "window_secs"], "goal")?;
                    Some(Goal {
                        event: required(goal, "event", "goal")?,
                        window_secs: required(goal, "window_secs", "goal")?,
                    })
                }
                Some(_) => {
                    return Err(invalid(
                        "goal",
                        "expected {\"event\": name, \"window_secs\": n} or null",
                    ));
                }
            },
            created_ms: 0,
            updated_ms: 0,
        })
    }
}

/// The top-level fields of a trigger body.
const TRIGGER_KEYS: &[&str] = &[
    "id",
    "site",
    "name",
    "enabled",
    "priority",
    "conditions",
    "delay_secs",
    "open_widget",
    "variants",
    "control_percent",
    "limit",
    "goal",
    "created_ms",
    "updated_ms",
    "stats",
];

fn invalid(path: &str, message: impl std::fmt::Display) -> TriggerError {
    TriggerError::invalid(path, message)
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn optional<T: serde::de::DeserializeOwned>(
    object: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<T>, TriggerError> {
    match object.get(key) {
        None => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|error| invalid(&join(parent, key), error)),
    }
}

fn required<T: serde::de::DeserializeOwned>(
    object: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<T, TriggerError> {
    optional(object, key, parent)?.ok_or_else(|| invalid(&join(parent, key), "missing"))
}

fn reject_unknown(
    object: &Map<String, Value>,
    known: &[&str],
    path: &str,
) -> Result<(), TriggerError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(invalid(&join(path, key), "unknown field")),
        None => Ok(()),
    }
}

fn parse_limit(value: Option<&Value>) -> Result<Limit, TriggerError> {
    let Some(value) = value else {
        return Err(invalid("limit", "missing"));
    };
    let object = value.as_object().ok_or_else(|| {
        invalid(
            "limit",
            "expected {\"mode\": \"once_per_visitor\" | \"once_per_visit\" | \"cooldown\"}",
        )
    })?;
    let mode: String = required(object, "mode", "limit")?;
    match mode.as_str() {
        "once_per_visitor" => {
            reject_unknown(object, &["mode"], "limit")?;
            Ok(Limit::OncePerVisitor)
        }
        "once_per_visit" => {
            reject_unknown(object, &["mode"], "limit")?;
            Ok(Limit::OncePerVisit)
        }
        "cooldown" => {
            reject_unknown(object, &["mode", "cooldown_secs"], "limit")?;
            Ok(Limit::Cooldown {
                cooldown_secs: required(object, "cooldown_secs", "limit")?,
            })
        }
        other => Err(invalid(
            "limit.mode",
            format_args!(
                "unknown mode {:?} (once_per_visitor, once_per_visit, cooldown)",
                clip(other)
            ),
        )),
    }
}

fn parse_variant(value: &Value, path: &str) -> Result<Variant, TriggerError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(path, "expected a variant object"))?;
    reject_unknown(object, &["key", "author", "text", "weight"], path)?;
    let author_path = join(path, "author");
    let author = match object.get("author") {
        None => return Err(invalid(&author_path, "missing")),
        Some(author) => parse_sender(author, &author_path)?,
    };
    Ok(Variant {
        key: required(object, "key", path)?,
        author,
        text: required(object, "text", path)?,
        weight: optional(object, "weight", path)?.unwrap_or(1),
    })
}

fn parse_sender(value: &Value, path: &str) -> Result<Sender, TriggerError> {
    const EXPECTED: &str = "expected {\"agent_id\": n} or {\"bot\": \"name\"}";
    let object = value.as_object().ok_or_else(|| invalid(path, EXPECTED))?;
    match (object.get("agent_id"), object.get("bot"), object.len()) {
        (Some(_), None, 1) => Ok(Sender::Agent {
            agent_id: required(object, "agent_id", path)?,
        }),
        (None, Some(_), 1) => Ok(Sender::Bot {
            bot: required(object, "bot", path)?,
        }),
        _ => Err(invalid(path, EXPECTED)),
    }
}

/// Parses a condition tree node at `path`.
pub(crate) fn parse_node(value: &Value, path: &str) -> Result<ConditionNode, TriggerError> {
    let object = value.as_object().ok_or_else(|| {
        invalid(
            path,
            "expected a group ({\"all\": [...]} or {\"any\": [...]}) or a condition ({\"field\", \"op\", \"value\"})",
        )
    })?;
    for (key, make) in [
        (
            "all",
            ConditionNode::All as fn(Vec<ConditionNode>) -> ConditionNode,
        ),
        ("any", ConditionNode::Any),
    ] {
        let Some(children) = object.get(key) else {
            continue;
        };
        if object.len() != 1 {
            return Err(invalid(
                path,
                format_args!("a group has only the key {key:?}"),
            ));
        }
        let group_path = join(path, key);
        let Value::Array(children) = children else {
            return Err(invalid(&group_path, "expected an array of conditions"));
        };
        return children
            .iter()
            .enumerate()
            .map(|(index, child)| parse_node(child, &format!("{group_path}[{index}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(make);
    }
    reject_unknown(object, &["field", "op", "value", "name", "property"], path)?;
    let property = match object.get("property") {
        None | Some(Value::Null) => None,
        Some(Value::Object(property)) => {
            let property_path = join(path, "property");
            reject_unknown(property, &["name", "op", "value"], &property_path)?;
            Some(PropertyTest {
                name: required(property, "name", &property_path)?,
                op: required(property, "op", &property_path)?,
                value: property.get("value").cloned(),
            })
        }
        Some(_) => {
            return Err(invalid(
                &join(path, "property"),
                "expected {\"name\", \"op\", \"value\"}",
            ));
        }
    };
    Ok(ConditionNode::Condition(Condition {
        field: required(object, "field", path)?,
        op: required(object, "op", path)?,
        value: object
            .get("value")
            .filter(|value| !value.is_null())
            .cloned(),
        name: optional(object, "name", path)?,
        property,
    }))
}

impl Serialize for ConditionNode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ConditionNode::All(children) | ConditionNode::Any(children) => {
                let key = if matches!(self, ConditionNode::All(_)) {
                    "all"
                } else {
                    "any"
                };
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(key, children)?;
                map.end()
            }
            ConditionNode::Condition(condition) => condition.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ConditionNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        parse_node(&value, "conditions").map_err(D::Error::custom)
    }
}

/// At most 64 characters of user input, for error messages.
pub(crate) fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn example() -> Value {
        json!({
            "name": "Spring pricing offer",
            "enabled": true,
            "priority": 10,
            "conditions": {"all": [
                {"field": "url", "op": "contains", "value": "/pricing"},
                {"field": "time_on_page", "op": "gte", "value": 30},
                {"any": [{"field": "country", "op": "in", "value": ["CZ", "SK"]},
                         {"field": "event", "op": "seen", "name": "cart",
                          "property": {"name": "sku", "op": "equals", "value": "A"}}]}
            ]},
            "delay_secs": 0,
            "open_widget": false,
            "variants": [
                {"key": "a", "author": {"agent_id": 3}, "text": "Hi {name|there}", "weight": 1},
                {"key": "b", "author": {"bot": "Porchlight"}, "text": "Hello"}
            ],
            "control_percent": 0,
            "limit": {"mode": "cooldown", "cooldown_secs": 600},
            "goal": {"event": "purchase", "window_secs": 86400}
        })
    }

    #[test]
    fn triggers_round_trip_through_json() {
        let trigger = Trigger::from_json(&example()).unwrap();
        assert_eq!(trigger.variants[1].weight, 1, "weight defaults to 1");
        assert_eq!(trigger.limit, Limit::Cooldown { cooldown_secs: 600 });
        let stored = serde_json::to_value(&trigger).unwrap();
        assert_eq!(stored["conditions"], example()["conditions"]);
        let back: Trigger = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(back, trigger);
        assert_eq!(Trigger::from_json(&stored).unwrap(), trigger);
    }

    #[track_caller]
    fn check_error(patch: impl FnOnce(&mut Value), expected: &str) {
        let mut body = example();
        patch(&mut body);
        let error = Trigger::from_json(&body).unwrap_err().to_string();
        assert_eq!(error, expected);
    }

    #[test]
    fn shape_errors_name_the_path() {
        check_error(|b| b["colour"] = json!(1), "colour: unknown field");
        check_error(
            |b| {
                b.as_object_mut().unwrap().remove("name");
            },
            "name: missing",
        );
        check_error(
            |b| b["priority"] = json!("high"),
            "priority: invalid type: string \"high\", expected i32",
        );
        check_error(
            |b| b["variants"][1]["author"] = json!({"agent": 1}),
            "variants[1].author: expected {\"agent_id\": n} or {\"bot\": \"name\"}",
        );
        check_error(
            |b| b["variants"][0]["colour"] = json!("red"),
            "variants[0].colour: unknown field",
        );
        check_error(
            |b| b["conditions"]["all"][2]["any"][1]["property"] = json!(3),
            "conditions.all[2].any[1].property: expected {\"name\", \"op\", \"value\"}",
        );
        check_error(
            |b| b["conditions"]["all"][0] = json!({"all": [], "any": []}),
            "conditions.all[0]: a group has only the key \"all\"",
        );
        check_error(
            |b| b["conditions"]["all"][1] = json!({"field": "url"}),
            "conditions.all[1].op: missing",
        );
        check_error(
            |b| b["limit"] = json!({"mode": "sometimes"}),
            "limit.mode: unknown mode \"sometimes\" (once_per_visitor, once_per_visit, cooldown)",
        );
        check_error(
            |b| b["limit"] = json!({"mode": "cooldown"}),
            "limit.cooldown_secs: missing",
        );
        check_error(
            |b| b["goal"] = json!("purchase"),
            "goal: expected {\"event\": name, \"window_secs\": n} or null",
        );
        assert_eq!(
            Trigger::from_json(&json!([1])).unwrap_err().to_string(),
            "expected a JSON object (a trigger)"
        );
    }

    #[test]
    fn read_only_fields_are_ignored() {
        let mut body = example();
        body["id"] = json!(99);
        body["site"] = json!("elsewhere");
        body["stats"] = json!({"fired": 3});
        let trigger = Trigger::from_json(&body).unwrap();
        assert_eq!((trigger.id, trigger.site.as_str()), (0, ""));
    }
}
