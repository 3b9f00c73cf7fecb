//! Concurrent appends on one log handle store in the order they started, while the work that
//! needs no lock (encoding a batch) overlaps the append before them.
//!
//! A writer that keeps two appends in flight (as `baton ingest` does) gets batch N+1 encoded on
//! the blocking pool while batch N is being written, instead of the server or the disk waiting
//! for it; and batch N+1 still lands after batch N (on JetStream, except an event of batch N
//! published again after a lost acknowledgement).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio::sync::{Mutex, MutexGuard};

/// A place in line for a lock, taken when [`take_place`] runs: tokio's mutex serves waiters
/// first come, first served, so [`Place::wait`] gives the guard after everyone who queued
/// before, however late it is awaited.
pub(crate) struct Place<'a, T> {
    early: Option<MutexGuard<'a, T>>,
    queued: Pin<Box<dyn Future<Output = MutexGuard<'a, T>> + Send + 'a>>,
}

/// Queues for `lock` now (one poll), without waiting for it.
pub(crate) async fn take_place<T: Send>(lock: &Mutex<T>) -> Place<'_, T> {
    let mut queued: Pin<Box<dyn Future<Output = MutexGuard<'_, T>> + Send + '_>> =
        Box::pin(lock.lock());
    let early = match futures::poll!(queued.as_mut()) {
        Poll::Ready(guard) => Some(guard),
        Poll::Pending => None,
    };
    Place { early, queued }
}

impl<'a, T> Place<'a, T> {
    pub(crate) async fn wait(self) -> MutexGuard<'a, T> {
        match self.early {
            Some(guard) => guard,
            None => self.queued.await,
        }
    }
}

/// Runs `work` on the blocking pool and then takes `lock`, in the order the callers were first
/// polled: the place in line is taken before `work` starts, so a later call whose `work`
/// finishes first still waits for the earlier one.
pub(crate) async fn work_then_lock<'a, T, R>(
    lock: &'a Mutex<T>,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<(MutexGuard<'a, T>, R), tokio::task::JoinError>
where
    T: Send,
    R: Send + 'static,
{
    let place = take_place(lock).await;
    let done = tokio::task::spawn_blocking(work).await?;
    Ok((place.wait().await, done))
}
