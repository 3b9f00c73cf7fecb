//! A one-off fold of the whole log into memory, under any definition: nothing is stored.

use crate::runner::ProjectError;
use baton_core::{FunnelDefinition, FunnelProjection};
use baton_log::{EventLog, Position};
use futures::StreamExt;

/// A projection and the log position it reflects.
#[derive(Debug)]
pub struct Folded {
    pub projection: FunnelProjection,
    pub position: Position,
}

/// Folds every event from position 1 to the head (as it is when called) into a projection
/// under `definition`. `progress` is called with (position reached, head) every few thousand
/// events and at the end.
pub async fn fold_log<L: EventLog>(
    log: &L,
    definition: FunnelDefinition,
    progress: impl FnMut(Position, Position),
) -> Result<Folded, ProjectError> {
    let head = log.stat().await?.head;
    fold_log_to(log, definition, head, progress).await
}

/// What a fold does with one event it reads.
enum Take {
    /// Fold it.
    Apply,
    /// Leave it out.
    Skip,
    /// Leave it out of the fold and hand it back (a restatement's later events).
    Keep,
    /// Stop before it: the fold ends at the event before.
    Stop,
}

/// Reads the log to `until` (or its head), folding into a projection under `definition` the
/// events `take` says to apply: the one loop every in-memory fold shares. Returns the fold,
/// the events kept, and how many were skipped.
async fn fold_where<L: EventLog>(
    log: &L,
    definition: FunnelDefinition,
    until: Position,
    mut take: impl FnMut(&baton_core::Event) -> Take,
    mut progress: impl FnMut(Position, Position),
) -> Result<(Folded, Vec<baton_core::Event>, u64), ProjectError> {
    let last = log.stat().await?.head.min(until);
    let mut projection =
        FunnelProjection::new(definition).with_refresh_threads(crate::refresh_threads());
    let mut reached = Position::ZERO;
    let mut kept = Vec::new();
    let mut skipped = 0u64;
    if last > Position::ZERO {
        let mut records = log.read(Position::ZERO).await?;
        while let Some(record) = records.next().await {
            let record = record?;
            if record.position > last {
                break;
            }
            match take(&record.event) {
                Take::Apply => projection.apply(&record.event),
                Take::Skip => skipped += 1,
                Take::Keep => kept.push(record.event),
                Take::Stop => break,
            }
            reached = record.position;
            if reached.get().is_multiple_of(16_384) {
                progress(reached, last);
            }
            if reached == last {
                break;
            }
        }
    }
    projection.refresh();
    progress(reached, last);
    let folded = Folded {
        projection,
        position: reached,
    };
    Ok((folded, kept, skipped))
}

/// [`fold_log`] as the log was known at `known_at`: only the events recorded (appended, by
/// their `recorded_at`) at or before it count, wherever they are on the log, so a month-end
/// figure can be reproduced exactly later. Reads the whole log to its head; `progress` as for
/// [`fold_log_to`]. Also returns how many events were recorded later and left out.
pub async fn fold_log_known_at<L: EventLog>(
    log: &L,
    definition: FunnelDefinition,
    known_at: baton_core::Timestamp,
    progress: impl FnMut(Position, Position),
) -> Result<(Folded, u64), ProjectError> {
    let take = |event: &baton_core::Event| {
        if event.recorded_at <= known_at {
            Take::Apply
        } else {
            Take::Skip
        }
    };
    let (folded, _, skipped) =
        fold_where(log, definition, Position::new(u64::MAX), take, progress).await?;
    Ok((folded, skipped))
}

/// The log as it was known at `from` (as [`fold_log_known_at`]), and the events recorded
/// after `from` up to `to`, in log order: what a restatement applies cause by cause.
pub async fn fold_log_between<L: EventLog>(
    log: &L,
    definition: FunnelDefinition,
    from: baton_core::Timestamp,
    to: baton_core::Timestamp,
) -> Result<(Folded, Vec<baton_core::Event>), ProjectError> {
    let take = |event: &baton_core::Event| match event.recorded_at {
        at if at <= from => Take::Apply,
        at if at <= to => Take::Keep,
        _ => Take::Skip,
    };
    let (folded, later, _) =
        fold_where(log, definition, Position::new(u64::MAX), take, |_, _| ()).await?;
    Ok((folded, later))
}

/// [`fold_log`] up to the first event recorded (appended, by its `recorded_at`) after `at`:
/// what a view built to a time holds (a replay's `--as-known-at`, the persistent projector's
/// `Bound::RecordedBy`), at the position of the last event before it.
pub async fn fold_log_recorded_by<L: EventLog>(
    log: &L,
    definition: FunnelDefinition,
    at: baton_core::Timestamp,
    progress: impl FnMut(Position, Position),
) -> Result<Folded, ProjectError> {
    let take = |event: &baton_core::Event| {
        if event.recorded_at <= at {
            Take::Apply
        } else {
            Take::Stop
        }
    };
    let (folded, _, _) =
        fold_where(log, definition, Position::new(u64::MAX), take, progress).await?;
    Ok(folded)
}

/// [`fold_log`] up to `until` (or the head, when that comes first): the log as it stood at a
/// position, under any definition. `progress` gets (position reached, the last position).
pub async fn fold_log_to<L: EventLog>(
    log: &L,
    definition: FunnelDefinition,
    until: Position,
    progress: impl FnMut(Position, Position),
) -> Result<Folded, ProjectError> {
    let (folded, _, _) = fold_where(log, definition, until, |_| Take::Apply, progress).await?;
    Ok(folded)
}

/// How many events a fold under several definitions hands its fold threads at a time.
const SHARED_CHUNK: usize = 4_096;

/// [`fold_log_to`] under several definitions in one reading of the log: each definition's
/// projection is folded on a thread of its own from the same decoded events, so a backtest's
/// candidate and the live definition it is compared with cost one read, and use a core each.
/// `progress` gets (position reached, the last position). The folds come back in the order
/// of `definitions`, at the same position.
pub async fn fold_log_to_each<L: EventLog>(
    log: &L,
    definitions: Vec<FunnelDefinition>,
    until: Position,
    progress: impl FnMut(Position, Position),
) -> Result<Vec<Folded>, ProjectError> {
    fold_each(log, definitions, until, None, progress).await
}

/// [`fold_log_recorded_by`] under several definitions in one reading of the log, as
/// [`fold_log_to_each`] folds them.
pub async fn fold_log_recorded_by_each<L: EventLog>(
    log: &L,
    definitions: Vec<FunnelDefinition>,
    at: baton_core::Timestamp,
    progress: impl FnMut(Position, Position),
) -> Result<Vec<Folded>, ProjectError> {
    fold_each(
        log,
        definitions,
        Position::new(u64::MAX),
        Some(at),
        progress,
    )
    .await
}

/// Folds under each definition, on a thread each, the log up to `until` (or its head), and
/// when given, only up to the first event recorded after `recorded_by`.
async fn fold_each<L: EventLog>(
    log: &L,
    definitions: Vec<FunnelDefinition>,
    until: Position,
    recorded_by: Option<baton_core::Timestamp>,
    mut progress: impl FnMut(Position, Position),
) -> Result<Vec<Folded>, ProjectError> {
    type Chunk = std::sync::Arc<Vec<baton_core::Event>>;
    let last = log.stat().await?.head.min(until);
    let threads = crate::refresh_threads();
    let mut senders = Vec::new();
    let mut folds = Vec::new();
    for definition in definitions {
        // A few chunks in flight per fold: a fold that falls behind holds the reader back
        // rather than letting decoded events pile up.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Chunk>(4);
        let (done, folded) = tokio::sync::oneshot::channel();
        senders.push(sender);
        std::thread::Builder::new()
            .name("baton-fold".into())
            .spawn(move || {
                let mut projection =
                    FunnelProjection::new(definition).with_refresh_threads(threads);
                while let Some(chunk) = receiver.blocking_recv() {
                    for event in chunk.iter() {
                        projection.apply(event);
                    }
                }
                projection.refresh();
                let _ = done.send(projection);
            })
            .map_err(|error| ProjectError::Thread(format!("cannot start: {error}")))?;
        folds.push(folded);
    }
    let mut reached = Position::ZERO;
    let mut chunk = Vec::with_capacity(SHARED_CHUNK);
    // A fold thread that stopped (it panicked) is reported when its fold does not come back.
    async fn send(chunk: Vec<baton_core::Event>, senders: &[tokio::sync::mpsc::Sender<Chunk>]) {
        let chunk = std::sync::Arc::new(chunk);
        for sender in senders {
            let _ = sender.send(chunk.clone()).await;
        }
    }
    let mut failure = None;
    if last > Position::ZERO {
        let mut records = log.read(Position::ZERO).await?;
        while let Some(record) = records.next().await {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            if record.position > last || recorded_by.is_some_and(|at| record.event.recorded_at > at)
            {
                break;
            }
            reached = record.position;
            chunk.push(record.event);
            if chunk.len() == SHARED_CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(SHARED_CHUNK));
                send(full, &senders).await;
                progress(reached, last);
            }
            if reached == last {
                break;
            }
        }
    }
    if !chunk.is_empty() {
        send(chunk, &senders).await;
    }
    drop(senders);
    let mut projections = Vec::new();
    for fold in folds {
        projections.push(
            fold.await
                .map_err(|_| ProjectError::Thread("a fold thread panicked".to_owned()))?,
        );
    }
    if let Some(error) = failure {
        return Err(error.into());
    }
    progress(reached, last);
    Ok(projections
        .into_iter()
        .map(|projection| Folded {
            projection,
            position: reached,
        })
        .collect())
}
