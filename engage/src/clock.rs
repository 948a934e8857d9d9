//! Wall-clock time as an injectable dependency.
//!
//! Session expiry depends on the time, and tests must check it without sleeping, so the
//! accounts service asks a [`Clock`] instead of calling the system clock itself.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;

    /// For a clock that is moved by hand: a receiver that changes whenever it is moved, so a
    /// task sleeping until a wall-clock deadline (the widget's business hours) can wake and
    /// look again. The real clock moves by itself and has none.
    fn moves(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        None
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // A clock set before 1970 is a broken machine; treating it as the epoch keeps every
        // comparison well defined instead of panicking.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: tokio::sync::watch::Sender<i64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(now_ms),
            moved: tokio::sync::watch::Sender::new(now_ms),
        }
    }

    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
        self.moved.send_replace(now_ms);
    }

    pub fn advance_ms(&self, ms: i64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.moved.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn moves(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        Some(self.moved.subscribe())
    }
}
