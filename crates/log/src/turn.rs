//! Concurrent appends on one log handle store in the order they started, while the work that
//! needs no lock (encoding a batch) overlaps the append before them.
//!
//! A writer that keeps two appends in flight (as `baton ingest` does) gets batch N+1 encoded on
//! the blocking pool while batch N is being written, instead of the server or the disk waiting
//! for it; and batch N+1 still lands after batch N (on JetStream, except an event of batch N
//! published again after a lost acknowledgement).

use std::task::Poll;
use tokio::sync::{Mutex, MutexGuard};

/// Runs `work` on the blocking pool and then takes `lock`, in the order the callers were first
/// polled: the place in line is taken before `work` starts (tokio's mutex serves waiters
/// first come, first served), so a later call whose `work` finishes first still waits for the
/// earlier one.
pub(crate) async fn work_then_lock<'a, T, R>(
    lock: &'a Mutex<T>,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<(MutexGuard<'a, T>, R), tokio::task::JoinError>
where
    R: Send + 'static,
{
    let mut turn = std::pin::pin!(lock.lock());
    let early = futures::poll!(&mut turn);
    let done = tokio::task::spawn_blocking(work).await?;
    let guard = match early {
        Poll::Ready(guard) => guard,
        Poll::Pending => turn.await,
    };
    Ok((guard, done))
}
