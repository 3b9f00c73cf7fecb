//! How facts get onto the log: bulk NDJSON import with per-line errors, a deterministic
//! synthetic B2B history for demos, tests and benchmarks, the HTTP collector (native API,
//! Segment-compatible API, SendGrid and declaratively mapped webhooks) with its quarantine,
//! and the publisher library for in-process sources.

mod adapter;
mod appender;
mod browser;
mod collector;
mod import;
mod keys;
mod metrics;
mod publisher;
mod quarantine;
mod rate;
mod signature;
mod synthetic;

pub use adapter::{
    Adapter, Adapters, FieldRule, LINKEDIN_MAPPING_TOML, Mapping, MappingError, Problem, RuleSpec,
    SkipRule, TimeFormat, TrackRule, Translation, default_track_rules,
};
pub use collector::{
    Collector, CollectorConfig, CollectorError, CollectorState, Limits, WriteKeys, router, serve,
};
pub use import::{ImportError, ImportOptions, ImportSummary, Rejection, import_ndjson};
pub use keys::{KeyScope, Route, WriteKey, valid_origin};
pub use metrics::CollectorMetrics;
pub use publisher::{Pending, PublishError, Published, Publisher, PublisherOptions, PublisherTask};
pub use quarantine::{
    DEFAULT_QUARANTINE_BYTES, Kept, Quarantine, QuarantineEntry, QuarantineError, RetrySummary,
};
pub use rate::KeyRate;
pub use signature::{SIGNATURE_HEADER, SendgridKey, TIMESTAMP_HEADER};
pub use synthetic::{History, HistoryConfig};
