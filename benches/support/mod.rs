//! Code shared by the benchmarks (each includes this directory as its `support` module):
//! realistic traffic and trigger rules, server child processes pinned to a core, CPU time, the
//! closed-loop load generator, a minimal HTTP/1.1 response reader and a minimal listening
//! WebSocket client.

// Each benchmark uses its own part of this.
#![allow(dead_code)]

pub mod chat;
pub mod closed_loop;
pub mod http1;
pub mod procs;
pub mod rules;
pub mod servers;
pub mod traffic;
pub mod ws;

use std::time::Duration;

/// A number from the environment, or `default`; a value that does not parse is an error.
pub fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={text:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// A duration in whole seconds from the environment, or `default`.
pub fn env_seconds(name: &str, default: u64) -> anyhow::Result<Duration> {
    env_number(name, default).map(Duration::from_secs)
}

/// Value `name` of a Prometheus text exposition, summed over all label sets that contain every
/// one of `labels` (e.g. `outcome="recorded"`).
pub fn metric(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
