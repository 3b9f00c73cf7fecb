//! The collector's metrics: what it did with each item, per source, how long appends took,
//! and the requests it refused (503: the log could not store; 429: a write key over its rate).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One source's items of one outcome. `source` is the write key's source (`loopback` without
/// keys): a handful of values, never one per buyer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ItemLabels {
    pub(crate) source: String,
    /// accepted, duplicate, ignored, rejected, quarantined, not_kept, not_written
    pub(crate) outcome: &'static str,
}

/// Cheap to clone: clones count into the same metrics.
#[derive(Clone, Debug)]
pub struct CollectorMetrics {
    pub(crate) items: Family<ItemLabels, Counter>,
    pub(crate) unavailable: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) append_seconds: Histogram,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        CollectorMetrics {
            items: Family::default(),
            unavailable: Counter::default(),
            rate_limited: Counter::default(),
            // 1 ms to about 16 s: a synced embedded append takes milliseconds, a JetStream
            // batch during an outage up to its 10 s deadline.
            append_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
            ),
        }
    }
}

impl CollectorMetrics {
    /// Registers every metric under `baton_collector_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_collector_items",
            "Items the collector answered, by source and outcome (quarantined: kept; not_kept: the quarantine was full)",
            self.items.clone(),
        );
        registry.register(
            "baton_collector_unavailable",
            "Requests answered 503 because the log or the quarantine could not store",
            self.unavailable.clone(),
        );
        registry.register(
            "baton_collector_rate_limited",
            "Requests answered 429 because their write key was over its rate",
            self.rate_limited.clone(),
        );
        registry.register(
            "baton_collector_append_seconds",
            "Time from handing a request's events to the log to their acknowledgement",
            self.append_seconds.clone(),
        );
    }

    pub(crate) fn count(&self, source: Option<&str>, outcome: &'static str, items: u64) {
        if items == 0 {
            return;
        }
        self.items
            .get_or_create(&ItemLabels {
                source: source.unwrap_or("loopback").to_owned(),
                outcome,
            })
            .inc_by(items);
    }
}
