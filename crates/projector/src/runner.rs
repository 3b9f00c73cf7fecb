//! The projector's run loop: read the log from a view's checkpoint, fold it with core's
//! reducers, and commit state and checkpoint together; then, for the live view, keep following.
//!
//! Reading is async (the log's streams); folding and sled writes run on a thread of their own,
//! fed chunks of records through a bounded channel, so the runtime never waits on a fold and a
//! slow fold pushes back on the reader instead of buffering the log in memory. The fold thread
//! commits when it has folded `commit_every` events or changed `commit_entries` stored
//! entries, or when it has caught up with the head as last seen and nothing more is waiting: a
//! replay commits in large batches, a live view within moments of an append.

use crate::store::{Bound, StoreError, View};
use baton_core::FunnelProjection;
use baton_log::{ErrorKind, EventLog, LogError, LogStat, Position, Record};
use futures::{FutureExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("reading the log: {0}")]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storing the state: {0}")]
    State(#[from] baton_core::StateError),
    #[error("the fold thread stopped unexpectedly: {0}")]
    Thread(String),
}

/// How far to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Follow the log until shut down.
    Forever,
    /// Stop once the checkpoint reaches the log's head as it is at the start.
    CaughtUp,
    /// Stop at a bound (a replay's).
    Bound(Bound),
}

/// Options of a run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub until: Until,
    /// The most events folded between two commits.
    pub commit_every: usize,
    /// The most stored entries (people, visitors, accounts...) one commit writes: it commits
    /// early, within a chunk of records, once that many have changed. sled keeps every node an
    /// insert replaces until the whole batch is applied, so what a commit holds grows with the
    /// entries it writes, and a history that touches many people per event would otherwise
    /// commit far more at once than one that touches few.
    pub commit_entries: usize,
}

/// [`RunOptions::commit_entries`] by default: on 2.8M events over 100k people, commits of
/// 100,000 events wrote 20,000 entries each and the projector peaked anywhere from 0.75 to
/// 1.5 GB from run to run; at about 5,000 entries a commit it peaked at 0.6 to 0.7 GB
/// (docs/benchmarks.md, "Smaller commits").
pub const COMMIT_ENTRIES: usize = 4_096;

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            until: Until::Forever,
            commit_every: 100_000,
            commit_entries: COMMIT_ENTRIES,
        }
    }
}

/// Where a projector is, readable from any thread while it runs: lag is `head - checkpoint`.
#[derive(Debug, Default)]
pub struct Status {
    checkpoint: AtomicU64,
    head: AtomicU64,
    events: AtomicU64,
    commits: AtomicU64,
    /// What keeps the projector from reading or from storing while it waits to try again
    /// (the log unreachable, the views' disk full); empty while it runs.
    fault: std::sync::Mutex<Faults>,
    faults: AtomicU64,
}

impl Status {
    /// The position the stored state reflects.
    pub fn checkpoint(&self) -> Position {
        Position::new(self.checkpoint.load(Ordering::Acquire))
    }

    /// The log's head as last seen (the stopping point of a bounded run).
    pub fn head(&self) -> Position {
        Position::new(self.head.load(Ordering::Acquire))
    }

    /// Events folded by this run.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Commits made by this run.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Events on the log not yet reflected in the state.
    pub fn lag(&self) -> u64 {
        self.head().get().saturating_sub(self.checkpoint().get())
    }

    /// What keeps the projector from folding, while it waits to try again.
    pub fn fault(&self) -> Option<String> {
        let faults = self.faults_now();
        match (&faults.reading, &faults.storing) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (Some(reading), Some(storing)) => Some(format!("{reading}; {storing}")),
        }
    }

    /// Times the projector met a fault it waited out (counted when one begins).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Records that the projector is waiting on `what`; a fault that goes on is counted once.
    /// True when this fault begins (nothing was recorded on that side).
    pub fn set_fault(&self, side: FaultSide, what: String) -> bool {
        let mut faults = self.faults_now();
        let slot = faults.slot(side);
        let begins = slot.is_none();
        if begins {
            self.faults.fetch_add(1, Ordering::Relaxed);
        }
        *slot = Some(what);
        begins
    }

    /// Records that the projector reads (or stores) again.
    pub fn clear_fault(&self, side: FaultSide) {
        let mut faults = self.faults_now();
        if faults.slot(side).take().is_some() {
            tracing::info!(?side, "the projector runs again");
        }
    }

    fn faults_now(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn see_head(&self, head: Position) {
        self.head.fetch_max(head.get(), Ordering::AcqRel);
    }
}

/// Which side of the projector a fault stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSide {
    /// Reading the log (a NATS server restarting, a cluster electing a leader).
    Reading,
    /// Storing the views (a full disk, a failed write).
    Storing,
}

#[derive(Debug, Default)]
struct Faults {
    reading: Option<String>,
    storing: Option<String>,
}

impl Faults {
    fn slot(&mut self, side: FaultSide) -> &mut Option<String> {
        match side {
            FaultSide::Reading => &mut self.reading,
            FaultSide::Storing => &mut self.storing,
        }
    }
}

/// What a finished run leaves: the projection (journeys refreshed) and its position.
#[derive(Debug)]
pub struct Outcome {
    pub projection: FunnelProjection,
    pub checkpoint: Position,
    /// Whether a bounded run reached its bound (false when shut down first).
    pub reached: bool,
}

/// Called on the fold thread with the loaded state at the start, after every commit whose
/// journeys are refreshed (when the run has caught up with what it has read, and at the end),
/// and about once a second while following with nothing new (the same position again): the
/// query side publishes from here.
pub trait OnCommit: FnMut(&FunnelProjection, Position) + Send + 'static {}
impl<F: FnMut(&FunnelProjection, Position) + Send + 'static> OnCommit for F {}

enum Chunk {
    Records(Vec<Record>),
    /// Sent every 100 ms while following: lets `on_commit` publish at its own pace even when
    /// no more events come.
    Tick,
    /// The reader reached the bound: commit, refresh and stop.
    Reached,
}

/// The records read per channel message.
const CHUNK: usize = 4096;

/// Runs the projector of `view` over `log`: loads the stored state, folds from the
/// checkpoint on, and commits as it goes, until `options.until` or `shutdown` resolves.
pub async fn run<L: EventLog>(
    log: &L,
    view: View,
    options: RunOptions,
    status: Arc<Status>,
    on_commit: impl OnCommit,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<Outcome, ProjectError> {
    let (projection, checkpoint) = tokio::task::spawn_blocking(move || {
        if let Some(found) = view.clear_if_outdated()? {
            tracing::warn!(
                view = view.name(),
                found,
                reads = baton_core::STATE_VERSION,
                "the view's state was written in another format; building it again from the start of the log"
            );
        }
        view.load()
            .map(|(projection, checkpoint)| (view, projection, checkpoint))
    })
    .await
    .map_err(|error| ProjectError::Thread(error.to_string()))?
    .map(|(view, projection, checkpoint)| ((view, projection), checkpoint))?;
    let (view, projection) = projection;
    status.checkpoint.store(checkpoint.get(), Ordering::Release);
    let mut shutdown = std::pin::pin!(shutdown);
    let head = tokio::select! {
        stat = stat_waiting(log, &status) => stat?.head,
        () = &mut shutdown => {
            // Shut down while waiting for the log: nothing was folded, nothing to commit.
            return Ok(Outcome { projection, checkpoint, reached: false });
        }
    };
    status.see_head(head);

    // Where the reader stops, if anywhere.
    let stop_at = match options.until {
        Until::Forever => None,
        Until::CaughtUp => Some(head),
        Until::Bound(Bound::Position(position)) => Some(position.min(head)),
        Until::Bound(Bound::RecordedBy(_)) => Some(head),
    };
    let recorded_by = match options.until {
        Until::Bound(Bound::RecordedBy(time)) => Some(time),
        _ => None,
    };

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Chunk, LogError>>(8);
    let fold_status = status.clone();
    let fold = std::thread::Builder::new()
        .name("baton-fold".into())
        .spawn(move || {
            fold_loop(
                view,
                projection,
                checkpoint,
                options,
                receiver,
                fold_status,
                on_commit,
            )
        })
        .map_err(|error| ProjectError::Thread(format!("cannot start: {error}")))?;

    let already_there = stop_at.is_some_and(|stop| checkpoint >= stop);
    let read = async {
        if already_there {
            let _ = sender.send(Ok(Chunk::Reached)).await;
            return;
        }
        // Where to read from after a transient failure: the log is read again from there,
        // however long it stays away, so nothing is skipped or folded twice.
        let mut next = checkpoint.next();
        let mut backoff = baton_log::Backoff::default();
        'open: loop {
            let records = match stop_at {
                Some(_) => log.read(next).await,
                None => log.follow(next).await,
            };
            let mut records = match records {
                Ok(records) => records,
                Err(error) if error.kind() == ErrorKind::Transient => {
                    wait_out(&status, &mut backoff, next, &error).await;
                    continue 'open;
                }
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            loop {
                let Some(first) = records.next().await else {
                    // A bounded read ended: the head at the start of the read was reached.
                    let _ = sender.send(Ok(Chunk::Reached)).await;
                    return;
                };
                let mut chunk = Vec::with_capacity(CHUNK);
                let mut item = Some(first);
                let mut reached = false;
                let mut failed = None;
                while let Some(taken) = item.take() {
                    let record = match taken {
                        Ok(record) => record,
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    };
                    if stop_at.is_some_and(|stop| record.position > stop)
                        || recorded_by.is_some_and(|time| record.event.recorded_at > time)
                    {
                        reached = true;
                        break;
                    }
                    status.see_head(record.position);
                    let at_stop = stop_at == Some(record.position);
                    next = record.position.next();
                    chunk.push(record);
                    if at_stop {
                        reached = true;
                        break;
                    }
                    if chunk.len() < CHUNK {
                        item = records.next().now_or_never().flatten();
                    }
                }
                if !chunk.is_empty() {
                    if backoff.failures() > 0 {
                        backoff.reset();
                        status.clear_fault(FaultSide::Reading);
                    }
                    if sender.send(Ok(Chunk::Records(chunk))).await.is_err() {
                        return; // The fold thread stopped; it reports why.
                    }
                }
                match failed {
                    Some(error) if error.kind() == ErrorKind::Transient => {
                        wait_out(&status, &mut backoff, next, &error).await;
                        continue 'open;
                    }
                    Some(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                    None => {}
                }
                if reached {
                    let _ = sender.send(Ok(Chunk::Reached)).await;
                    return;
                }
            }
        }
    };
    // The head moves while following: look at it now and then, so lag is observable.
    let ticks = sender.clone();
    let head_status = &status;
    let watch_head = async move {
        if stop_at.is_some() {
            return std::future::pending::<()>().await;
        }
        // Ticks often enough that what was committed but not yet published waits for little
        // more than the publisher's own pace; the head is read once a second.
        for tick in 0u64.. {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if tick % 10 == 0 {
                // A follow whose server went away may wait in silence while its client tries
                // to reconnect; the head request is what notices the outage, and its end.
                match log.stat().await {
                    Ok(stat) => {
                        head_status.see_head(stat.head);
                        head_status.clear_fault(FaultSide::Reading);
                    }
                    Err(error) => {
                        let what = format!("waiting for the log (cannot read its head): {error}");
                        if head_status.set_fault(FaultSide::Reading, what) {
                            tracing::warn!(
                                %error,
                                "the log is unavailable; the projector waits for it and reads on from its checkpoint when it is back"
                            );
                        }
                    }
                }
            }
            if ticks.send(Ok(Chunk::Tick)).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = &mut shutdown => {}
        () = watch_head => {}
    }
    // Dropping the sender tells the fold thread to commit what it has and stop.
    drop(sender);
    tokio::task::spawn_blocking(move || fold.join())
        .await
        .map_err(|error| ProjectError::Thread(error.to_string()))?
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "without a message".to_owned());
            ProjectError::Thread(format!("it panicked: {message}"))
        })?
}

/// The log's head, waiting out transient failures (a NATS server restarting).
async fn stat_waiting<L: EventLog>(log: &L, status: &Status) -> Result<LogStat, LogError> {
    let mut backoff = baton_log::Backoff::default();
    loop {
        match log.stat().await {
            Ok(stat) => {
                if backoff.failures() > 0 {
                    status.clear_fault(FaultSide::Reading);
                }
                return Ok(stat);
            }
            Err(error) if error.kind() == ErrorKind::Transient => {
                wait_out(status, &mut backoff, status.checkpoint().next(), &error).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Records a transient read failure as the projector's fault, says what it waits for, and
/// waits before the log is read again from `next`.
async fn wait_out(
    status: &Status,
    backoff: &mut baton_log::Backoff,
    next: Position,
    error: &LogError,
) {
    let wait = backoff.next_wait();
    tracing::warn!(
        %error,
        from = next.get(),
        retry_in_ms = wait.as_millis() as u64,
        failures = backoff.failures(),
        "the projector cannot read the log; waiting for it, then reading again from the position it needs"
    );
    status.set_fault(
        FaultSide::Reading,
        format!("waiting for the log (read again from position {next}): {error}"),
    );
    tokio::time::sleep(wait).await;
}

fn fold_loop(
    view: View,
    mut projection: FunnelProjection,
    mut checkpoint: Position,
    options: RunOptions,
    mut receiver: tokio::sync::mpsc::Receiver<Result<Chunk, LogError>>,
    status: Arc<Status>,
    mut on_commit: impl OnCommit,
) -> Result<Outcome, ProjectError> {
    let mut folded_since_commit = 0usize;
    // Whether every journey reflects every applied event (what `on_commit` may read). A loaded
    // projection is refreshed: publish it at once, so a restarted service answers queries
    // before the first new event.
    let mut refreshed = true;
    on_commit(&projection, checkpoint);
    let mut reached = false;
    let mut failure = None;
    // The state loaded: a fault that stopped an earlier run's storing (a full disk) is over
    // until a commit fails again.
    status.clear_fault(FaultSide::Storing);
    let commit = |projection: &mut FunnelProjection, checkpoint: Position| {
        view.commit_changes(projection, checkpoint)?;
        status.checkpoint.store(checkpoint.get(), Ordering::Release);
        status.commits.fetch_add(1, Ordering::Relaxed);
        Ok::<_, ProjectError>(())
    };
    loop {
        // Wait only when nothing is pending; otherwise take what is ready and commit when
        // the channel runs dry.
        // Caught up with the head as last seen: commit now, so appends become visible
        // promptly. Behind it (a replay, or catching up after a restart), more is on its way:
        // wait for it and commit in large batches.
        // Nothing to publish (all committed and refreshed), or behind: wait.
        let settled = folded_since_commit == 0 && refreshed;
        let message = if settled || checkpoint < status.head() {
            receiver.blocking_recv()
        } else {
            match receiver.try_recv() {
                Ok(message) => Some(message),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    // Caught up, nothing waiting: commit what is folded (a batch commit may
                    // have taken it already), refresh and publish.
                    let started = std::time::Instant::now();
                    if folded_since_commit > 0 {
                        commit(&mut projection, checkpoint)?;
                    }
                    let committed = started.elapsed();
                    projection.try_refresh()?;
                    refreshed = true;
                    let refreshed_after = started.elapsed();
                    on_commit(&projection, checkpoint);
                    tracing::debug!(
                        events = folded_since_commit,
                        checkpoint = checkpoint.get(),
                        commit_ms = committed.as_secs_f64() * 1e3,
                        refresh_ms = (refreshed_after - committed).as_secs_f64() * 1e3,
                        published_ms = started.elapsed().as_secs_f64() * 1e3,
                        "caught up: committed and published"
                    );
                    folded_since_commit = 0;
                    continue;
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        match message {
            None => break,
            Some(Ok(Chunk::Reached)) => {
                reached = true;
                break;
            }
            Some(Ok(Chunk::Tick)) => {
                if refreshed {
                    on_commit(&projection, checkpoint);
                }
            }
            Some(Ok(Chunk::Records(records))) => {
                refreshed = false;
                let count = records.len();
                for record in records {
                    projection.apply(&record.event);
                    checkpoint = record.position;
                    folded_since_commit += 1;
                    if folded_since_commit >= options.commit_every
                        || projection.unsaved_entries() >= options.commit_entries
                    {
                        commit(&mut projection, checkpoint)?;
                        folded_since_commit = 0;
                    }
                }
                status.events.fetch_add(count as u64, Ordering::Relaxed);
            }
            Some(Err(error)) => {
                failure = Some(error);
                break;
            }
        }
    }
    // What was folded is committed before reporting anything, a failure included: nothing
    // read and folded is lost, and the next run starts after it.
    if folded_since_commit > 0 {
        commit(&mut projection, checkpoint)?;
    }
    view.flush()?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    projection.try_refresh()?;
    on_commit(&projection, checkpoint);
    if reached && view.bound()?.is_some() {
        view.mark_complete()?;
    }
    Ok(Outcome {
        projection,
        checkpoint,
        reached,
    })
}
