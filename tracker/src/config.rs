//! Settings of the presence tracker.

use serde::{Deserialize, Serialize};

/// How long visitors stay "active" and in memory, and how much of each visit is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    /// A visitor is Active while its last activity is less than this long ago.
    pub active_window_ms: i64,
    /// A visitor leaves memory once its last activity is this long ago.
    pub retention_ms: i64,
    /// Most pages kept in a visit's history (the oldest are dropped first).
    pub history_limit: usize,
    /// Most custom events kept per visit (the oldest are dropped first).
    pub events_limit: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            active_window_ms: 10 * 60 * 1000,
            retention_ms: 30 * 60 * 1000,
            history_limit: 50,
            events_limit: 50,
        }
    }
}

/// The largest history or events limit accepted: a visit's history is stored with exact
/// capacity and copied on every page view once full, so absurd limits would cost CPU and memory
/// for no panel that could show them.
pub const MAX_LIMIT: usize = 10_000;

/// Why a [`PresenceConfig`] cannot be used. Each message names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("active_window_ms must be greater than 0 (got {0})")]
    ActiveWindow(i64),
    #[error("retention_ms ({retention_ms}) must be at least active_window_ms ({active_window_ms})")]
    Retention {
        retention_ms: i64,
        active_window_ms: i64,
    },
    #[error("history_limit must be between 1 and {MAX_LIMIT} (got {0})")]
    HistoryLimit(usize),
    #[error("events_limit must be between 1 and {MAX_LIMIT} (got {0})")]
    EventsLimit(usize),
}

impl PresenceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.active_window_ms <= 0 {
            return Err(ConfigError::ActiveWindow(self.active_window_ms));
        }
        if self.retention_ms < self.active_window_ms {
            return Err(ConfigError::Retention {
                retention_ms: self.retention_ms,
                active_window_ms: self.active_window_ms,
            });
        }
        if !(1..=MAX_LIMIT).contains(&self.history_limit) {
            return Err(ConfigError::HistoryLimit(self.history_limit));
        }
        if !(1..=MAX_LIMIT).contains(&self.events_limit) {
            return Err(ConfigError::EventsLimit(self.events_limit));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(config: PresenceConfig, expected_message: Option<&str>) {
        let result = config.validate();
        match expected_message {
            None => assert_eq!(result, Ok(())),
            Some(fragment) => {
                let message = result.expect_err("config should be rejected").to_string();
                assert!(
                    message.contains(fragment),
                    "{message:?} should mention {fragment:?}"
                );
            }
        }
    }

    #[test]
    fn validation_names_the_setting() {
        let base = PresenceConfig::default();
        check(base.clone(), None);
        check(
            PresenceConfig {
                retention_ms: base.active_window_ms,
                ..base.clone()
            },
            None,
        );
        check(
            PresenceConfig {
                active_window_ms: 0,
                ..base.clone()
            },
            Some("active_window_ms"),
        );
        check(
            PresenceConfig {
                retention_ms: base.active_window_ms - 1,
                ..base.clone()
            },
            Some("retention_ms"),
        );
        check(
            PresenceConfig {
                history_limit: 0,
                ..base.clone()
            },
            Some("history_limit"),
        );
        check(
            PresenceConfig {
                events_limit: 0,
                ..base.clone()
            },
            Some("events_limit"),
        );
        check(
            PresenceConfig {
                events_limit: MAX_LIMIT + 1,
                ..base
            },
            Some("events_limit"),
        );
    }

    #[test]
    fn missing_settings_take_defaults() {
        let config: PresenceConfig = serde_json::from_str(r#"{"active_window_ms": 5000}"#).unwrap();
        assert_eq!(config.active_window_ms, 5000);
        assert_eq!(config.retention_ms, PresenceConfig::default().retention_ms);
    }
}
