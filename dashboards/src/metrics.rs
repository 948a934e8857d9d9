//! Prometheus metrics. Labels are bounded sets (an outcome, a segment, a frame kind), never a
//! visitor id, URL or IP, so the series count stays constant however much traffic arrives.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracker::{Presence, Segment};

/// Why a beacon was or was not recorded; the `outcome` label of `porchlight_beacons_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconOutcome {
    Recorded,
    Crawler,
    Ignored,
    Invalid,
    UnknownSite,
    OriginDenied,
    TooLarge,
    UnsupportedMediaType,
    Failed,
}

impl BeaconOutcome {
    const ALL: [BeaconOutcome; 9] = [
        BeaconOutcome::Recorded,
        BeaconOutcome::Crawler,
        BeaconOutcome::Ignored,
        BeaconOutcome::Invalid,
        BeaconOutcome::UnknownSite,
        BeaconOutcome::OriginDenied,
        BeaconOutcome::TooLarge,
        BeaconOutcome::UnsupportedMediaType,
        BeaconOutcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            BeaconOutcome::Recorded => "recorded",
            BeaconOutcome::Crawler => "crawler",
            BeaconOutcome::Ignored => "ignored",
            BeaconOutcome::Invalid => "invalid",
            BeaconOutcome::UnknownSite => "unknown_site",
            BeaconOutcome::OriginDenied => "origin_denied",
            BeaconOutcome::TooLarge => "too_large",
            BeaconOutcome::UnsupportedMediaType => "unsupported_media_type",
            BeaconOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    beacons: IntCounterVec,
    /// One counter per outcome, resolved once so the hot path does no label lookup.
    beacon_counters: Vec<IntCounter>,
    pub ingest_seconds: Histogram,
    live_visitors: IntGaugeVec,
    pub panel_connections: IntGauge,
    pub panel_frames_snapshot: IntCounter,
    pub panel_frames_delta: IntCounter,
    /// Deltas a slow panel missed; it got a fresh snapshot instead.
    pub panel_deltas_dropped: IntCounter,
    /// Visitor changes folded into a pending delta instead of being sent on their own.
    pub panel_changes_coalesced: IntCounter,
    pub profile_writes_pending: IntGauge,
    pub profile_writes_dropped: IntGauge,
    /// Triggers fired for a visitor (control group included; test-fires are not fires).
    pub triggers_fired: IntCounter,
    /// Trigger messages sent.
    pub triggers_delivered: IntCounter,
    /// Time-based trigger wake-ups waiting (at most one per visitor).
    pub trigger_wakeups_pending: IntGauge,
    /// Serialises [`Metrics::sync_trigger_counts`], so two scrapes never add the same events.
    trigger_sync: std::sync::Arc<parking_lot::Mutex<()>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let beacons = IntCounterVec::new(
            Opts::new("porchlight_beacons_total", "Beacons received, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let beacon_counters = BeaconOutcome::ALL
            .iter()
            .map(|outcome| beacons.with_label_values(&[outcome.label()]))
            .collect();
        let ingest_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "porchlight_ingest_seconds",
                "Time from a beacon's body being read to its presence update",
            )
            .buckets(vec![
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                0.01, 0.025, 0.05, 0.1,
            ]),
        )
        .expect("valid metric");
        let live_visitors = IntGaugeVec::new(
            Opts::new(
                "porchlight_live_visitors",
                "Live visitors over all sites, by segment",
            ),
            &["segment"],
        )
        .expect("valid metric");
        let panel_connections =
            IntGauge::new("porchlight_panel_connections", "Open live-panel WebSockets")
                .expect("valid metric");
        let panel_frames = IntCounterVec::new(
            Opts::new(
                "porchlight_panel_frames_total",
                "Frames sent to live panels, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let panel_frames_snapshot = panel_frames.with_label_values(&["snapshot"]);
        let panel_frames_delta = panel_frames.with_label_values(&["delta"]);
        let panel_deltas_dropped = IntCounter::new(
            "porchlight_panel_deltas_dropped_total",
            "Deltas a slow panel fell behind on; it was sent a fresh snapshot instead",
        )
        .expect("valid metric");
        let panel_changes_coalesced = IntCounter::new(
            "porchlight_panel_changes_coalesced_total",
            "Recorded beacons whose change was merged into a delta with others",
        )
        .expect("valid metric");
        let profile_writes_pending = IntGauge::new(
            "porchlight_profile_writes_pending",
            "Visitor profile updates waiting to be written to the store",
        )
        .expect("valid metric");
        let profile_writes_dropped = IntGauge::new(
            "porchlight_profile_writes_dropped",
            "Visitor profile updates dropped because the write queue was full",
        )
        .expect("valid metric");
        let trigger_events = IntCounterVec::new(
            Opts::new(
                "porchlight_trigger_events_total",
                "What the trigger engine did, by event (fired, delivered)",
            ),
            &["event"],
        )
        .expect("valid metric");
        let triggers_fired = trigger_events.with_label_values(&["fired"]);
        let triggers_delivered = trigger_events.with_label_values(&["delivered"]);
        let trigger_wakeups_pending = IntGauge::new(
            "porchlight_trigger_wakeups_pending",
            "Time-based trigger wake-ups waiting (at most one per visitor)",
        )
        .expect("valid metric");
        for collector in [
            Box::new(beacons.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ingest_seconds.clone()),
            Box::new(live_visitors.clone()),
            Box::new(panel_connections.clone()),
            Box::new(panel_frames),
            Box::new(panel_deltas_dropped.clone()),
            Box::new(panel_changes_coalesced.clone()),
            Box::new(profile_writes_pending.clone()),
            Box::new(profile_writes_dropped.clone()),
            Box::new(trigger_events),
            Box::new(trigger_wakeups_pending.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            beacons,
            beacon_counters,
            ingest_seconds,
            live_visitors,
            panel_connections,
            panel_frames_snapshot,
            panel_frames_delta,
            panel_deltas_dropped,
            panel_changes_coalesced,
            profile_writes_pending,
            profile_writes_dropped,
            triggers_fired,
            triggers_delivered,
            trigger_wakeups_pending,
            trigger_sync: std::sync::Arc::default(),
        }
    }

    pub fn beacon(&self, outcome: BeaconOutcome) {
        let index = BeaconOutcome::ALL
            .iter()
            .position(|candidate| *candidate == outcome)
            .expect("every outcome is listed");
        self.beacon_counters[index].inc();
    }

    pub fn beacons_recorded(&self) -> u64 {
        self.beacons
            .with_label_values(&[BeaconOutcome::Recorded.label()])
            .get()
    }

    /// Renders the text exposition, refreshing the gauges that are read from live state.
    /// Brings the trigger event counters up to the engine's totals (it counts in place; the
    /// counters follow at every scrape).
    pub fn sync_trigger_counts(&self, (fired, delivered): (u64, u64)) {
        let _one_at_a_time = self.trigger_sync.lock();
        for (counter, total) in [
            (&self.triggers_fired, fired),
            (&self.triggers_delivered, delivered),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    pub fn render(&self, presence: &Presence) -> String {
        let mut totals = [0u64; Segment::ALL.len()];
        for site in presence.sites() {
            let counts = presence.counts(&site);
            for (total, segment) in totals.iter_mut().zip(Segment::ALL) {
                *total += counts.get(segment);
            }
        }
        for (total, segment) in totals.iter().zip(Segment::ALL) {
            self.live_visitors
                .with_label_values(&[segment.as_str()])
                .set(i64::try_from(*total).unwrap_or(i64::MAX));
        }
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
