//! The publisher library: how an in-process source (a CRM sync, an importer, a job) puts
//! events on the log without managing batches, acknowledgements or retries itself.
//!
//! Events from every clone of a [`Publisher`] are grouped into batches by one appender task.
//! The queue in front of it is bounded, so a source faster than the log waits in
//! [`Publisher::send`] instead of buffering without limit. Events the log reports not written
//! (a NATS server restarting) are appended again with the same event ids, so whatever did land
//! comes back as a duplicate of itself and nothing is stored twice.

use crate::appender::{AppendFailure, AppenderHandle, AppenderOptions, Receipt, spawn_appender};
use baton_core::{Event, EventId};
use baton_log::{AppendOutcome, EventLog, Position};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How a [`Publisher`] batches and retries.
#[derive(Clone, Copy, Debug)]
pub struct PublisherOptions {
    /// Events per append, at most (one `send` is never split).
    pub max_batch_events: usize,
    /// `send` calls queued before the next one waits: the bound on buffered events is this
    /// times the events per call, plus the batch being appended.
    pub max_queued_sends: usize,
    /// Extra attempts for events the log did not store, each with the same event ids.
    pub retries: u32,
    /// Delay before the first retry; it doubles up to 5 s.
    pub first_retry_delay: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            max_batch_events: 1_000,
            max_queued_sends: 256,
            retries: 8,
            first_retry_delay: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("event {event_id} was not written after the retries: {reason}")]
    NotWritten { event_id: EventId, reason: String },
    #[error("the log refused the batch: {0}")]
    Log(String),
    #[error("the publisher has stopped")]
    Stopped,
}

/// Where a published event is: stored now, or already stored earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    Appended(Position),
    Duplicate(Position),
}

/// Puts events on the log in batches. Cheap to clone; the appender stops when every clone is
/// dropped and [`PublisherTask::join`] is awaited.
#[derive(Clone, Debug)]
pub struct Publisher {
    handle: AppenderHandle,
}

/// The publisher's background task; join it after dropping every [`Publisher`].
#[derive(Debug)]
pub struct PublisherTask {
    task: JoinHandle<()>,
}

impl PublisherTask {
    /// Waits for queued events to be appended and the task to end.
    pub async fn join(self) -> Result<(), PublishError> {
        self.task.await.map_err(|_| PublishError::Stopped)
    }
}

/// Events queued by [`Publisher::send`]; resolve it for their outcomes.
#[derive(Debug)]
pub struct Pending {
    ids: Vec<EventId>,
    receipt: Receipt,
}

impl Pending {
    /// The outcome per event, in the order sent.
    pub async fn outcome(self) -> Result<Vec<Published>, PublishError> {
        let outcomes = self.receipt.wait().await.map_err(log_error)?;
        self.ids
            .into_iter()
            .zip(outcomes)
            .map(|(event_id, outcome)| match outcome {
                AppendOutcome::Appended(position) => Ok(Published::Appended(position)),
                AppendOutcome::Duplicate(position) => Ok(Published::Duplicate(position)),
                AppendOutcome::NotWritten(reason) => {
                    Err(PublishError::NotWritten { event_id, reason })
                }
            })
            .collect()
    }
}

fn log_error(failure: AppendFailure) -> PublishError {
    PublishError::Log(failure.message)
}

impl Publisher {
    /// Starts the appender task on `log`.
    pub fn start<L: EventLog + 'static>(
        log: L,
        options: PublisherOptions,
    ) -> (Publisher, PublisherTask) {
        let (handle, task) = spawn_appender(
            log,
            AppenderOptions {
                max_batch_events: options.max_batch_events.max(1),
                queue_jobs: options.max_queued_sends.max(1),
                retries: options.retries,
                first_retry_delay: options.first_retry_delay,
            },
        );
        (Publisher { handle }, PublisherTask { task })
    }

    /// Queues events, waiting while the queue is full; returns before they are appended, so a
    /// source can keep sending while earlier events are being stored.
    pub async fn send(&self, events: Vec<Event>) -> Result<Pending, PublishError> {
        let ids = events.iter().map(|event| event.event_id).collect();
        let receipt = self
            .handle
            .enqueue(events)
            .await
            .map_err(|_| PublishError::Stopped)?;
        Ok(Pending { ids, receipt })
    }

    /// Sends one event and waits until it is durable.
    pub async fn publish(&self, event: Event) -> Result<Published, PublishError> {
        let mut outcomes = self.send(vec![event]).await?.outcome().await?;
        outcomes.pop().ok_or(PublishError::Stopped)
    }
}
