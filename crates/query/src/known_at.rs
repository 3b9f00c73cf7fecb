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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fold that takes `millis` and counts how often it ran.
    fn slow_fold(millis: u64, runs: Arc<AtomicUsize>) -> FoldKnownAt {
        Arc::new(move |at| {
            let runs = runs.clone();
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(millis)).await;
                let projection = baton_core::FunnelProjection::new(
                    baton_core::FunnelDefinition::default_funnel(),
                );
                Ok(
                    Snapshot::build("live", &projection, baton_projector::Position::ZERO)
                        .known_at(at),
                )
            })
        })
    }

    /// Two clients at once: the same time shares one fold; another time waits its bound and
    /// is told to retry, instead of starting a second fold of the whole log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_fold_at_a_time_and_the_same_time_shares_it() {
        let runs = Arc::new(AtomicUsize::new(0));
        let known = Arc::new(KnownAt::new(slow_fold(400, runs.clone())));
        let t1 = Timestamp::from_unix_millis(1_000);
        let t2 = Timestamp::from_unix_millis(2_000);
        let first = tokio::spawn({
            let known = known.clone();
            async move { known.snapshot(t1, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let same = tokio::spawn({
            let known = known.clone();
            async move { known.snapshot(t1, Duration::from_secs(5)).await }
        });
        let other = known.snapshot(t2, Duration::from_millis(50)).await;
        assert!(matches!(other, Err(KnownAtError::Busy)), "{other:?}");
        let first = first.await.expect("joined").expect("folded");
        let same = same.await.expect("joined").expect("shared");
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(first.as_known_at, Some(t1));
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one fold for one time");
        // Kept: asked again, answered without folding.
        known.snapshot(t1, Duration::ZERO).await.expect("kept");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
