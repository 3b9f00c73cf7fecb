//! `/metrics` through the Prometheus project's client library: one registry holding the
//! projector's and the query side's figures (read from their state at each scrape), the SQL
//! statements' outcomes and durations, and what other services of the process register (the
//! collector's).

use std::sync::Arc;

use baton_projector::Status;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::Snapshot;
use crate::http::QueryMetrics;

/// A statement's protocol and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatementLabels {
    /// `pgwire` or `http`
    pub(crate) protocol: &'static str,
    /// `ok`, `error`, `cancelled`, `timed_out` or `disconnected`
    pub(crate) outcome: &'static str,
}

/// SQL statements: how many ended how, and how long they ran. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqlMetrics {
    pub(crate) statements: Family<StatementLabels, Counter>,
    pub(crate) seconds: Histogram,
}

impl Default for SqlMetrics {
    fn default() -> Self {
        SqlMetrics {
            statements: Family::default(),
            // 1 ms to about a minute: lookups answer in well under a millisecond, the time
            // limit is a minute by default.
            seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 17,
            )),
        }
    }
}

/// The process's SQL metrics: statements over the PostgreSQL protocol and `POST /v1/sql`
/// alike, whichever endpoint runs them.
pub(crate) fn sql() -> &'static SqlMetrics {
    static SQL: std::sync::OnceLock<SqlMetrics> = std::sync::OnceLock::new();
    SQL.get_or_init(SqlMetrics::default)
}

impl SqlMetrics {
    pub(crate) fn ended(&self, protocol: &'static str, outcome: &'static str, seconds: f64) {
        self.statements
            .get_or_create(&StatementLabels { protocol, outcome })
            .inc();
        self.seconds.observe(seconds);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_sql_statements",
            "SQL statements ended, by protocol and outcome (ok, error, cancelled, timed_out, disconnected)",
            self.statements.clone(),
        );
        registry.register(
            "baton_sql_statement_seconds",
            "How long SQL statements ran, rows sent included",
            self.seconds.clone(),
        );
    }
}

/// The projector's and the query side's figures, read at each scrape.
#[derive(Debug)]
struct StateCollector {
    status: Arc<Status>,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    query: Arc<QueryMetrics>,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(
        name,
        help,
        None,
        MetricType::Counter,
    )?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = &self.status;
        let (published, built_in) = self
            .snapshots
            .borrow()
            .as_ref()
            .map_or((0, 0.0), |s| (s.position.get(), s.built_in.as_secs_f64()));
        let e = &mut encoder;
        gauge(
            e,
            "baton_projector_checkpoint",
            "Log position the stored views reflect.",
            status.checkpoint().get() as f64,
        )?;
        gauge(
            e,
            "baton_log_head",
            "Log head as last seen by the projector.",
            status.head().get() as f64,
        )?;
        gauge(
            e,
            "baton_projector_lag",
            "Events on the log not yet in the stored views.",
            status.lag() as f64,
        )?;
        counter(
            e,
            "baton_projector_events",
            "Events folded since the process started.",
            status.events(),
        )?;
        counter(
            e,
            "baton_projector_commits",
            "Commits of state and checkpoint since start.",
            status.commits(),
        )?;
        gauge(
            e,
            "baton_projector_faulted",
            "1 while the projector waits out a fault (log unreachable, views' disk full).",
            f64::from(u8::from(status.fault().is_some())),
        )?;
        counter(
            e,
            "baton_projector_faults",
            "Faults the projector has waited out since start.",
            status.faults(),
        )?;
        gauge(
            e,
            "baton_query_published_position",
            "Log position of the views queries see.",
            published as f64,
        )?;
        gauge(
            e,
            "baton_query_snapshot_build_seconds",
            "How long the views queries see took to compute.",
            built_in,
        )?;
        let (requests, errors, wait) = self.query.figures();
        counter(
            e,
            "baton_query_requests",
            "Read API requests answered or refused (every route but the probes).",
            requests,
        )?;
        counter(
            e,
            "baton_query_errors",
            "Read API requests answered with a 4xx or 5xx status.",
            errors,
        )?;
        ConstCounter::new(wait).encode(e.encode_descriptor(
            "baton_query_wait_seconds",
            "Time spent finding the snapshot to answer from.",
            None,
            MetricType::Counter,
        )?)
    }
}

/// The registry `/metrics` encodes.
pub(crate) fn registry(
    status: Arc<Status>,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    query: Arc<QueryMetrics>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StateCollector {
        status,
        snapshots,
        query,
    }));
    sql().register(&mut registry);
    registry
}
