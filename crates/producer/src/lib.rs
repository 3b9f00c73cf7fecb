//! How facts get onto the log: bulk NDJSON import with per-line errors, and a deterministic
//! synthetic B2B history for demos, tests and benchmarks. The HTTP collector joins later.

mod import;
mod synthetic;

pub use import::{ImportError, ImportOptions, ImportSummary, Rejection, import_ndjson};
pub use synthetic::{History, HistoryConfig};
