//! The views as the log was known at a time, for the routes' `as_known_at` parameter: only
//! the events recorded by then count (`docs/views.md`). The process that owns the log
//! (`baton serve`) gives a fold; this keeps what it built.
//!
//! A fold reads the whole log and holds it in memory, so they are taken one at a time: a
//! request for another time while one is folding waits a bounded while and is then told to
//! retry, and requests for the same time share one fold. The last few are kept.

use crate::table::Snapshot;
use baton_core::Timestamp;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A snapshot of the live view's definition folded from the events recorded by a time.
pub type FoldKnownAt = Arc<
    dyn Fn(Timestamp) -> Pin<Box<dyn Future<Output = Result<Snapshot, String>> + Send>>
        + Send
        + Sync,
>;

/// How many snapshots as known at a time are kept: the month-ends a team compares.
const KEEP: usize = 4;

/// The snapshots as known at a time built lately, and the one fold that may run.
pub struct KnownAt {
    fold: FoldKnownAt,
    built: Mutex<VecDeque<(Timestamp, Arc<Snapshot>)>>,
    folding: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KnownAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownAt").finish_non_exhaustive()
    }
}

/// Why no snapshot as known at a time was given.
#[derive(Debug, thiserror::Error)]
pub enum KnownAtError {
    #[error(
        "the views as known at another time are being folded for another request (one fold of the log at a time); retry in a few seconds"
    )]
    Busy,
    #[error("folding the log as known at {at}: {message}")]
    Failed { at: String, message: String },
}

impl KnownAt {
    pub fn new(fold: FoldKnownAt) -> KnownAt {
        KnownAt {
            fold,
            built: Mutex::new(VecDeque::new()),
            folding: tokio::sync::Mutex::new(()),
        }
    }

    fn kept(&self, at: Timestamp) -> Option<Arc<Snapshot>> {
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(time, _)| *time == at)
            .map(|(_, snapshot)| snapshot.clone())
    }

    /// The snapshot as known at `at`: kept, or folded now. Waits at most `wait` for a fold for
    /// another time to finish.
    pub async fn snapshot(
        &self,
        at: Timestamp,
        wait: Duration,
    ) -> Result<Arc<Snapshot>, KnownAtError> {
        if let Some(snapshot) = self.kept(at) {
            return Ok(snapshot);
        }
        let _folding = tokio::time::timeout(wait, self.folding.lock())
            .await
            .map_err(|_| KnownAtError::Busy)?;
        // Another request may have folded it while this one waited.
        if let Some(snapshot) = self.kept(at) {
            return Ok(snapshot);
        }
        let started = std::time::Instant::now();
        let snapshot = Arc::new(
            (self.fold)(at)
                .await
                .map_err(|message| KnownAtError::Failed {
                    at: at.to_rfc3339(),
                    message,
                })?,
        );
        tracing::info!(
            as_known_at = %at.to_rfc3339(),
            position = snapshot.position.get(),
            ms = started.elapsed().as_millis() as u64,
            "folded the views as known at a time"
        );
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if built.len() == KEEP {
            built.pop_front();
        }
        built.push_back((at, snapshot.clone()));
        Ok(snapshot)
    }
}
