//! The projector: reads the log and folds it into the funnel views with core's pure reducers.
//!
//! - [`fold_log`] folds the whole log into memory, for a one-off answer under any definition
//!   ([`fold_log_to`]: up to a position).
//! - [`run`] is the persistent projector: a view's state and checkpoint live in sled
//!   ([`ViewStore`], [`View`]), committed together; a run resumes from the checkpoint and
//!   follows the log (the live view) or stops at a bound (a candidate built by replay).
//! - Candidates are compared with the live view by core's pure `compare`.

mod facts;
mod fold;
mod runner;
mod store;

pub use baton_log::Position;
pub use fold::{
    Folded, fold_log, fold_log_between, fold_log_known_at, fold_log_recorded_by,
    fold_log_recorded_by_each, fold_log_to, fold_log_to_each,
};
pub use runner::{
    COMMIT_ENTRIES, FaultSide, OnCommit, Outcome, ProjectError, RunOptions, Status, Until, run,
};
pub use store::{
    Bound, StoreError, StoredEntry, View, ViewDetail, ViewInfo, ViewStore, valid_view_name,
};

/// The threads a large refresh folds journeys on: every core. The fold thread waits while
/// they run, and at the end of a replay or at a restore the reading side is idle, so the
/// refresh has the machine to itself.
fn refresh_threads() -> std::num::NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
}
