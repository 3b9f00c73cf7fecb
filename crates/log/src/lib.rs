//! Baton's log: the [`EventLog`] port and its two backends, NATS JetStream for production and
//! an embedded log in segment files for one machine with no server. Both pass one conformance suite
//! (`tests/conformance.rs`).

mod any;
mod embedded;
mod error;
mod id_index;
mod id_store;
mod jetstream;
mod jetstream_ids;
mod jetstream_share;
mod migrate;
mod port;
mod retry;
mod segment;
mod turn;

pub use any::AnyLog;
pub use embedded::{EmbeddedConfig, EmbeddedLog};
pub use error::{ErrorKind, LogError};
pub use id_store::{DEFAULT_RECENT_IDS, IdMemory};
pub use jetstream::{DEFAULT_SHARE_IDS_EVERY, JetStreamConfig, JetStreamLog};
pub use port::{AppendOutcome, EventLog, LogStat, Position, Record, RecordStream};
pub use retry::{Backoff, Patience, retry_transient};
pub use segment::Cut;
