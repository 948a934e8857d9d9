//! What the widget sends (a [`Beacon`]), what the durable store keeps about a visitor (a
//! [`KnownProfile`]), and what the tracker answers (an [`Observation`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::text::{
    MAX_EVENT_NAME_LEN, MAX_IDENTITY_FIELD_LEN, MAX_PROP_KEY_LEN, MAX_PROP_VALUE_LEN, MAX_PROPS,
    clean_field, truncate_owned,
};

/// One beacon from the widget, borrowed from the request that carried it.
///
/// Every beacon carries the current page, so that a visitor can be rebuilt from any beacon
/// after a restart (a still-open tab's next heartbeat brings it back).
#[derive(Clone, Debug)]
pub struct Beacon<'a> {
    pub site: &'a str,
    /// The widget's long-lived id of the browser.
    pub visitor_id: &'a str,
    /// The widget's id of the current visit (session); a new one starts a new visit.
    pub visit_id: &'a str,
    pub kind: BeaconKind,
    pub url: &'a str,
    pub title: &'a str,
    /// `document.referrer`; only the first beacon of a visit is looked at.
    pub referrer: Option<&'a str>,
    pub ip: IpAddr,
    pub user_agent: &'a str,
    pub language: Option<&'a str>,
    /// Screen width and height in CSS pixels.
    pub screen: Option<(u16, u16)>,
}

/// What happened on the page.
#[derive(Clone, Debug, PartialEq)]
pub enum BeaconKind {
    /// A page was shown (a load or a client-side navigation).
    PageView,
    /// The page is still open and in use.
    Heartbeat,
    /// The page was closed or hidden for good.
    Leave,
    /// The site told us who the visitor is.
    Identify(Identity),
    /// The site reported a custom event.
    Event(CustomEvent),
}

/// A custom property value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropValue {
    String(String),
    Number(f64),
    Bool(bool),
}

/// Who a visitor is, as the site told us. Persisted with the visitor's profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub props: Vec<(String, PropValue)>,
}

impl Identity {
    /// Customers are visitors the site has named: they have a name or an email.
    pub fn is_customer(&self) -> bool {
        self.name.is_some() || self.email.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none() && self.phone.is_none() && self.props.is_empty()
    }

    /// Folds a newer identity into this one: fields `other` sets override, properties are merged
    /// by key (`other`'s value wins, new keys are appended in `other`'s order).
    pub fn merge(&mut self, other: Identity) {
        if other.name.is_some() {
            self.name = other.name;
        }
        if other.email.is_some() {
            self.email = other.email;
        }
        if other.phone.is_some() {
            self.phone = other.phone;
        }
        merge_props(&mut self.props, other.props);
    }

    /// The identity with every field bounded: the tracker applies this to whatever a beacon or
    /// a stored profile carries, so no caller's validation is relied upon.
    pub(crate) fn bounded(self) -> Identity {
        Identity {
            name: clean_field(self.name, MAX_IDENTITY_FIELD_LEN),
            email: clean_field(self.email, MAX_IDENTITY_FIELD_LEN),
            phone: clean_field(self.phone, MAX_IDENTITY_FIELD_LEN),
            props: bounded_props(self.props),
        }
    }
}

/// Merges `newer` into `props` by key; the result never grows past [`MAX_PROPS`].
fn merge_props(props: &mut Vec<(String, PropValue)>, newer: Vec<(String, PropValue)>) {
    for (key, value) in newer {
        if let Some(existing) = props.iter_mut().find(|(existing, _)| *existing == key) {
            existing.1 = value;
        } else if props.len() < MAX_PROPS {
            props.push((key, value));
        }
    }
}

/// Bounds keys and values, drops empty keys and numbers JSON cannot carry, keeps the last value
/// of a repeated key and at most [`MAX_PROPS`] keys.
pub(crate) fn bounded_props(props: Vec<(String, PropValue)>) -> Vec<(String, PropValue)> {
    let mut kept: Vec<(String, PropValue)> = Vec::with_capacity(props.len().min(MAX_PROPS));
    let cleaned = props.into_iter().filter_map(|(mut key, value)| {
        truncate_owned(&mut key, MAX_PROP_KEY_LEN);
        let value = match value {
            PropValue::String(mut text) => {
                truncate_owned(&mut text, MAX_PROP_VALUE_LEN);
                PropValue::String(text)
            }
            PropValue::Number(number) if !number.is_finite() => return None,
            other => other,
        };
        (!key.is_empty()).then_some((key, value))
    });
    merge_props(&mut kept, cleaned.collect());
    kept
}

/// A custom event reported by the site, e.g. `("added_to_cart", [("sku", "A-1")])`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomEvent {
    pub name: String,
    #[serde(default)]
    pub props: Vec<(String, PropValue)>,
}

impl CustomEvent {
    pub(crate) fn bounded(mut self) -> CustomEvent {
        truncate_owned(&mut self.name, MAX_EVENT_NAME_LEN);
        CustomEvent {
            name: self.name,
            props: bounded_props(self.props),
        }
    }
}

/// What the durable store keeps about a visitor between visits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KnownProfile {
    /// The visitor's short number on its site ("Visitor #1234"), assigned by the store.
    pub number: u32,
    /// Visits recorded so far, counting the one named by `last_visit_id`. A profile loaded for a
    /// new visit thus holds the visits before it; the tracker adds one and hands the result
    /// back to be persisted.
    pub visits: u32,
    pub first_seen_ms: i64,
    /// The widget's id of the visit last recorded; a beacon with this visit id resumes that
    /// visit (after a restart) instead of counting a new one.
    pub last_visit_id: Option<String>,
    pub identity: Identity,
}

impl KnownProfile {
    /// The profile of a visitor never seen before.
    pub fn new(number: u32, first_seen_ms: i64) -> KnownProfile {
        KnownProfile {
            number,
            first_seen_ms,
            ..KnownProfile::default()
        }
    }
}

/// What the tracker did with a beacon.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The beacon was applied. `persist` is `Some` when the durable profile changed (a visit
    /// started, or the identity changed); the caller writes it behind. `visit_started` says
    /// that the beacon started a visit in memory: a new visit, or a visitor entering memory
    /// (also when it resumes a visit after a restart).
    Recorded {
        persist: Option<KnownProfile>,
        visit_started: bool,
    },
    /// The visitor is not in memory: the caller loads (or creates) the visitor's profile and
    /// calls [`crate::Presence::start_visit`].
    NeedsProfile,
    /// The User-Agent is a crawler: never tracked (the caller counts it in metrics).
    Crawler,
    /// Nothing to do: a Leave for a visitor or visit not in memory, or ids out of bounds.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, PropValue)]) -> Vec<(String, PropValue)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn merge_overrides_set_fields_and_merges_props_by_key() {
        let mut identity = Identity {
            name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
            phone: None,
            props: props(&[
                ("plan", PropValue::String("free".into())),
                ("seats", PropValue::Number(1.0)),
            ]),
        };
        identity.merge(Identity {
            name: None,
            email: Some("ann@work.example".into()),
            phone: Some("+46 70 123".into()),
            props: props(&[
                ("plan", PropValue::String("pro".into())),
                ("trial", PropValue::Bool(false)),
            ]),
        });
        assert_eq!(
            identity,
            Identity {
                name: Some("Ann".into()),
                email: Some("ann@work.example".into()),
                phone: Some("+46 70 123".into()),
                props: props(&[
                    ("plan", PropValue::String("pro".into())),
                    ("seats", PropValue::Number(1.0)),
                    ("trial", PropValue::Bool(false)),
                ]),
            }
        );
    }

    #[test]
    fn customers_have_a_name_or_an_email() {
        assert!(!Identity::default().is_customer());
        let phone_only = Identity {
            phone: Some("123".into()),
            ..Identity::default()
        };
        assert!(!phone_only.is_customer());
        assert!(
            Identity {
                email: Some("a@b.c".into()),
                ..Identity::default()
            }
            .is_customer()
        );
    }

    #[test]
    fn bounds_apply_to_untrusted_identities_and_events() {
        let many: Vec<(String, PropValue)> = (0..80)
            .map(|i| (format!("k{i}"), PropValue::Number(i as f64)))
            .collect();
        let identity = Identity {
            name: Some(format!("  {}  ", "n".repeat(300))),
            email: Some("   ".into()),
            phone: None,
            props: [
                vec![
                    ("x".repeat(100), PropValue::String("v".repeat(600))),
                    ("".into(), PropValue::Bool(true)),
                    ("nan".into(), PropValue::Number(f64::NAN)),
                ],
                many,
            ]
            .concat(),
        }
        .bounded();
        assert_eq!(
            identity.name.as_deref().map(str::len),
            Some(MAX_IDENTITY_FIELD_LEN)
        );
        assert_eq!(identity.email, None);
        assert_eq!(identity.props.len(), MAX_PROPS);
        assert_eq!(identity.props[0].0.len(), MAX_PROP_KEY_LEN);
        assert_eq!(
            identity.props[0].1,
            PropValue::String("v".repeat(MAX_PROP_VALUE_LEN))
        );
        assert!(
            identity
                .props
                .iter()
                .all(|(key, _)| !key.is_empty() && key != "nan")
        );

        let event = CustomEvent {
            name: "é".repeat(40),
            props: vec![],
        }
        .bounded();
        assert_eq!(event.name, "é".repeat(32));
    }

    #[test]
    fn profiles_and_prop_values_round_trip_through_json() {
        let profile = KnownProfile {
            number: 7,
            visits: 3,
            first_seen_ms: 1_700_000_000_000,
            last_visit_id: Some("visit-1".into()),
            identity: Identity {
                name: Some("Ann".into()),
                props: props(&[
                    ("plan", PropValue::String("pro".into())),
                    ("seats", PropValue::Number(3.0)),
                    ("trial", PropValue::Bool(true)),
                ]),
                ..Identity::default()
            },
        };
        let json = serde_json::to_string(&profile).unwrap();
        assert!(
            json.contains(r#"["plan","pro"],["seats",3.0],["trial",true]"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<KnownProfile>(&json).unwrap(),
            profile
        );
        assert_eq!(
            serde_json::from_str::<KnownProfile>("{}").unwrap(),
            KnownProfile::default()
        );
    }
}
