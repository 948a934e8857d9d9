//! Message placeholders: `{name}`, `{city|you}`, `{property.plan}`, with `{{` and `}}` for
//! literal braces.
//!
//! A template is parsed once, when its trigger is saved ([`Template::parse`] names the bad part
//! of the text), and rendered at send time from a [`PlaceholderData`] copied out of the live
//! visitor. A missing or empty value uses the placeholder's fallback; without one it renders
//! as nothing, and the space it leaves is not doubled ("Hi {name}, welcome" → "Hi, welcome"
//! would need the author's comma; "Hi {name} there" → "Hi there").

use tracker::{PropValue, VisitorView};

/// The placeholder names a template may use (besides `property.NAME`).
pub const PLACEHOLDERS: &[&str] = &[
    "name",
    "first_name",
    "email",
    "city",
    "country",
    "browser",
    "os",
    "page_title",
    "utm_campaign",
    "property.NAME",
];

/// Longest fallback text, in characters.
const MAX_FALLBACK_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Name,
    FirstName,
    Email,
    City,
    Country,
    Browser,
    Os,
    PageTitle,
    UtmCampaign,
    Property(String),
}

impl Key {
    fn parse(name: &str) -> Option<Key> {
        Some(match name {
            "name" => Key::Name,
            "first_name" => Key::FirstName,
            "email" => Key::Email,
            "city" => Key::City,
            "country" => Key::Country,
            "browser" => Key::Browser,
            "os" => Key::Os,
            "page_title" => Key::PageTitle,
            "utm_campaign" => Key::UtmCampaign,
            other => {
                let property = other.strip_prefix("property.")?;
                if property.is_empty() {
                    return None;
                }
                Key::Property(property.to_owned())
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder { key: Key, fallback: Option<String> },
}

/// A parsed message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What placeholders are filled in from: a copy of the visitor's details at send time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlaceholderData {
    pub name: Option<String>,
    pub email: Option<String>,
    pub city: Option<String>,
    /// The country's name ("Czechia").
    pub country: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub page_title: Option<String>,
    pub utm_campaign: Option<String>,
    pub properties: Vec<(String, PropValue)>,
}

impl PlaceholderData {
    /// The details of a live visitor.
    pub fn of(view: &VisitorView<'_>) -> PlaceholderData {
        let owned = |value: Option<&str>| {
            value
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let identity = view.identity();
        PlaceholderData {
            name: owned(identity.and_then(|identity| identity.name.as_deref())),
            email: owned(identity.and_then(|identity| identity.email.as_deref())),
            city: owned(view.geo().city.as_deref()),
            country: owned(view.geo().country_name.as_deref()),
            browser: owned(Some(&view.client().browser)),
            os: owned(Some(&view.client().os)),
            page_title: owned(Some(view.current_title())),
            utm_campaign: owned(
                view.campaign()
                    .and_then(|campaign| campaign.name.as_deref()),
            ),
            properties: identity
                .map(|identity| identity.props.clone())
                .unwrap_or_default(),
        }
    }

    /// The sample visitor the editor's preview uses when no live visitor is chosen.
    pub fn sample() -> PlaceholderData {
        PlaceholderData {
            name: Some("Jana Nováková".into()),
            email: Some("jana@example.com".into()),
            city: Some("Prague".into()),
            country: Some("Czechia".into()),
            browser: Some("Chrome".into()),
            os: Some("Windows 10".into()),
            page_title: Some("Pricing".into()),
            utm_campaign: Some("spring".into()),
            properties: vec![("plan".into(), PropValue::String("pro".into()))],
        }
    }

    fn value(&self, key: &Key) -> Option<String> {
        let value =
            match key {
                Key::Name => self.name.clone(),
                Key::FirstName => self
                    .name
                    .as_deref()
                    .and_then(|name| name.split_whitespace().next())
                    .map(str::to_owned),
                Key::Email => self.email.clone(),
                Key::City => self.city.clone(),
                Key::Country => self.country.clone(),
                Key::Browser => self.browser.clone(),
                Key::Os => self.os.clone(),
                Key::PageTitle => self.page_title.clone(),
                Key::UtmCampaign => self.utm_campaign.clone(),
                Key::Property(name) => self.properties.iter().find(|(key, _)| key == name).map(
                    |(_, value)| match value {
                        PropValue::String(text) => text.clone(),
                        PropValue::Number(number) => number.to_string(),
                        PropValue::Bool(flag) => flag.to_string(),
                    },
                ),
            };
        value.filter(|value| !value.trim().is_empty())
    }
}

impl Template {
    /// Parses a message text; the error says what is wrong (the caller adds the path).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, next)| *next) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, next)| *next) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => literal.push('}'),
                '{' => {
                    let rest = &text[start + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "unclosed placeholder {:?} (write {{{{ for a literal brace)",
                            clip(&text[start..])
                        ));
                    };
                    let inner = &rest[..end];
                    if inner.contains('{') {
                        return Err(format!(
                            "unclosed placeholder {:?} (write {{{{ for a literal brace)",
                            clip(&text[start..start + 1 + end + 1])
                        ));
                    }
                    let (name, fallback) = match inner.split_once('|') {
                        Some((name, fallback)) => (name.trim(), Some(fallback)),
                        None => (inner.trim(), None),
                    };
                    let Some(key) = Key::parse(name) else {
                        return Err(format!(
                            "unknown placeholder {{{}}} (one of {})",
                            clip(name),
                            PLACEHOLDERS
                                .iter()
                                .map(|name| format!("{{{name}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    };
                    if fallback
                        .is_some_and(|fallback| fallback.chars().count() > MAX_FALLBACK_CHARS)
                    {
                        return Err(format!(
                            "the fallback of {{{name}}} is longer than {MAX_FALLBACK_CHARS} characters"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder {
                        key,
                        fallback: fallback.map(str::to_owned),
                    });
                    // Skip the placeholder's characters.
                    let close = start + 1 + end;
                    while chars.peek().is_some_and(|(index, _)| *index <= close) {
                        chars.next();
                    }
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The text with every placeholder filled in from `data`.
    pub fn render(&self, data: &PlaceholderData) -> String {
        let mut out = String::new();
        // Set after a placeholder rendered as nothing: the next text's leading space would
        // double the space before it.
        let mut after_gap = false;
        for part in &self.parts {
            match part {
                Part::Text(text) => {
                    let mut text = text.as_str();
                    if after_gap && (out.is_empty() || out.ends_with(' ')) {
                        text = text.trim_start_matches(' ');
                        // "Hi {name}, …" without a name reads "Hi, …".
                        if text.starts_with([',', '.', '!', '?', ';', ':']) {
                            let kept = out.trim_end_matches(' ').len();
                            out.truncate(kept);
                        }
                    }
                    out.push_str(text);
                    after_gap = false;
                }
                Part::Placeholder { key, fallback } => {
                    match data.value(key).or_else(|| fallback.clone()) {
                        Some(value) if !value.is_empty() => {
                            out.push_str(&value);
                            after_gap = false;
                        }
                        _ => after_gap = true,
                    }
                }
            }
        }
        if after_gap {
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
        }
        out.trim().to_owned()
    }
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PlaceholderData {
        PlaceholderData {
            name: Some("Ann Lee".into()),
            city: Some("Linköping".into()),
            country: Some("Sweden".into()),
            properties: vec![
                ("plan".into(), PropValue::String("pro".into())),
                ("seats".into(), PropValue::Number(3.0)),
                ("blank".into(), PropValue::String("  ".into())),
            ],
            ..PlaceholderData::default()
        }
    }

    #[track_caller]
    fn check(template: &str, data: &PlaceholderData, expected: &str) {
        let parsed = Template::parse(template).unwrap();
        assert_eq!(parsed.render(data), expected, "{template}");
    }

    #[test]
    fn placeholders_fill_in_with_fallbacks_for_missing_data() {
        let full = data();
        let empty = PlaceholderData::default();
        let cases: &[(&str, &PlaceholderData, &str)] = &[
            ("Hi {name}!", &full, "Hi Ann Lee!"),
            ("Hi {first_name}!", &full, "Hi Ann!"),
            ("Hi {name|there}!", &empty, "Hi there!"),
            ("Hi {name|there}!", &full, "Hi Ann Lee!"),
            (
                "Hi {name} from {city|your city}",
                &empty,
                "Hi from your city",
            ),
            ("Hi {name}, 10 % off", &empty, "Hi, 10 % off"),
            ("{name} welcome", &empty, "welcome"),
            ("Welcome {name}", &empty, "Welcome"),
            ("Hi {first_name} {name} there", &empty, "Hi there"),
            ("In {city}, {country}", &full, "In Linköping, Sweden"),
            (
                "Plan {property.plan}, {property.seats} seats",
                &full,
                "Plan pro, 3 seats",
            ),
            ("Plan {property.blank|free}", &full, "Plan free"),
            ("Plan {property.missing|free}", &full, "Plan free"),
            ("{email|} x", &empty, "x"),
            ("Use {{code}} now }", &full, "Use {code} now }"),
            ("{{name}}", &full, "{name}"),
            ("Hi {name|}!", &empty, "Hi!"),
            ("Hi  {name}  there", &empty, "Hi  there"),
            ("{ name | friend }", &empty, "friend"),
        ];
        for (template, data, expected) in cases {
            check(template, data, expected);
        }
        // The sample visitor fills everything.
        check(
            "{name} {first_name} {email} {city} {country} {browser} {os} {page_title} {utm_campaign} {property.plan}",
            &PlaceholderData::sample(),
            "Jana Nováková Jana jana@example.com Prague Czechia Chrome Windows 10 Pricing spring pro",
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        for (template, expected) in [
            ("Hi {cty}", "unknown placeholder {cty} (one of {name}"),
            ("Hi {name", "unclosed placeholder \"{name\""),
            ("Hi {na{me}", "unclosed placeholder \"{na{me}\""),
            ("Hi {property.}", "unknown placeholder {property.}"),
            ("Hi {}", "unknown placeholder {}"),
        ] {
            let error = Template::parse(template).unwrap_err();
            assert!(error.starts_with(expected), "{template}: {error}");
        }
        let long = format!("{{name|{}}}", "x".repeat(201));
        assert!(Template::parse(&long).unwrap_err().contains("fallback"));
    }
}
