//! Group commit: one task owns the log's write side and appends whatever concurrent callers
//! have queued as one batch, so many small requests share one durable write (one flush on the
//! embedded log, one pipelined window on JetStream) instead of paying for one each.
//!
//! The queue is bounded: when the log is slower than the callers, callers wait to enqueue
//! (back-pressure) instead of memory growing. The task stops when every sender is dropped,
//! after finishing what was queued.

use baton_core::Event;
use baton_log::{AppendOutcome, ErrorKind, EventLog};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Why a whole append failed (the log's error, flattened so every waiter gets a copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppendFailure {
    pub message: String,
    /// Retrying later may help (the server is down or slow).
    pub transient: bool,
}

pub(crate) type AppendReply = Result<Vec<AppendOutcome>, AppendFailure>;

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<AppendReply>,
}

/// How the appender batches and retries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AppenderOptions {
    /// Events per append, at most (one caller's events are never split).
    pub max_batch_events: usize,
    /// Jobs waiting in the queue before callers wait.
    pub queue_jobs: usize,
    /// Extra attempts for events the log reported not written, with the same event ids.
    pub retries: u32,
    pub first_retry_delay: Duration,
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AppenderHandle {
    jobs: mpsc::Sender<Job>,
}

impl AppenderHandle {
    /// Appends `events` as part of the next group; resolves when they are durable (or not).
    pub(crate) async fn append(&self, events: Vec<Event>) -> AppendReply {
        self.enqueue(events).await?.wait().await
    }

    /// Queues `events` (waiting while the queue is full) and returns the receipt that resolves
    /// once they are durable (or not), so a caller can keep several groups in flight.
    pub(crate) async fn enqueue(&self, events: Vec<Event>) -> Result<Receipt, AppendFailure> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .await
            .map_err(|_| stopped())?;
        Ok(Receipt { answer })
    }
}

fn stopped() -> AppendFailure {
    AppendFailure {
        message: "the appender has stopped (shutting down)".into(),
        transient: true,
    }
}

/// The outcome of queued events, once the appender has appended them.
#[derive(Debug)]
pub(crate) struct Receipt {
    answer: oneshot::Receiver<AppendReply>,
}

impl Receipt {
    pub(crate) async fn wait(self) -> AppendReply {
        self.answer.await.map_err(|_| stopped())?
    }
}

/// Starts the appender task on `log`.
pub(crate) fn spawn_appender<L: EventLog + 'static>(
    log: L,
    options: AppenderOptions,
) -> (AppenderHandle, JoinHandle<()>) {
    let (jobs, receiver) = mpsc::channel(options.queue_jobs.max(1));
    let task = tokio::spawn(run(log, receiver, options));
    (AppenderHandle { jobs }, task)
}

async fn run<L: EventLog>(log: L, mut receiver: mpsc::Receiver<Job>, options: AppenderOptions) {
    while let Some(first) = receiver.recv().await {
        let mut total = first.events.len();
        let mut jobs = vec![first];
        while total < options.max_batch_events {
            match receiver.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        tracing::trace!(jobs = jobs.len(), events = total, "appending a group");
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut events = Vec::with_capacity(total);
        for job in jobs {
            sizes.push(job.events.len());
            replies.push(job.reply);
            events.extend(job.events);
        }
        let result = append_with_retries(&log, events, &options).await;
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    let part: Vec<AppendOutcome> = outcomes.by_ref().take(size).collect();
                    // A caller that went away (client disconnected) needs no answer.
                    let _ = reply.send(Ok(part));
                }
            }
            Err(failure) => {
                for reply in replies {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// Appends, then appends again what was not written (same events, same ids: whatever did land
/// comes back as a duplicate of itself), up to `options.retries` times.
async fn append_with_retries<L: EventLog>(
    log: &L,
    events: Vec<Event>,
    options: &AppenderOptions,
) -> AppendReply {
    let count = events.len();
    let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; count];
    let mut pending: Vec<usize> = (0..count).collect();
    let mut delay = options.first_retry_delay;
    let mut attempt = 0;
    // Without retries the events are handed over, not copied.
    let mut events = Some(events);
    loop {
        let batch: Vec<Event> = match (&events, options.retries) {
            (Some(_), 0) => events.take().unwrap_or_default(),
            (Some(all), _) => pending.iter().map(|&slot| all[slot].clone()).collect(),
            (None, _) => Vec::new(),
        };
        let result = log.append(batch).await;
        let mut still_pending = Vec::new();
        let mut failure = None;
        match result {
            Ok(results) => {
                for (&slot, outcome) in pending.iter().zip(results) {
                    if matches!(outcome, AppendOutcome::NotWritten(_)) {
                        still_pending.push(slot);
                    }
                    outcomes[slot] = Some(outcome);
                }
            }
            Err(error) => {
                let transient = error.kind() == ErrorKind::Transient;
                failure = Some(AppendFailure {
                    message: error.to_string(),
                    transient,
                });
                if transient {
                    still_pending.clone_from(&pending);
                }
            }
        }
        if still_pending.is_empty() || attempt >= options.retries {
            if let Some(failure) = failure {
                // Events an earlier attempt stored keep their outcome; the failure covers the
                // call as a whole, so callers treat everything as not acknowledged.
                return Err(failure);
            }
            return Ok(outcomes
                .into_iter()
                .map(|outcome| {
                    outcome.unwrap_or_else(|| {
                        AppendOutcome::NotWritten("no outcome was reported".into())
                    })
                })
                .collect());
        }
        attempt += 1;
        tracing::debug!(
            pending = still_pending.len(),
            attempt,
            "retrying events the log did not store"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        pending = still_pending;
    }
}
