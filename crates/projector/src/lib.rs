//! The projector: reads the log and folds it into the funnel views with core's pure reducers.
//!
//! Today it folds the whole log, from position 1 to the head at the start, into memory
//! ([`fold_log`]); the persistent projector (state and checkpoint in sled, following the log
//! live, replay into candidate views) builds on it.

use baton_core::{FunnelDefinition, FunnelProjection};
use baton_log::{EventLog, LogError, Position};
use futures::StreamExt;

/// Why a fold stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("reading the log: {0}")]
    Log(#[from] LogError),
}

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
    mut progress: impl FnMut(Position, Position),
) -> Result<Folded, ProjectError> {
    let head = log.stat().await?.head;
    let mut projection = FunnelProjection::new(definition);
    let mut records = log.read(Position::ZERO).await?;
    let mut reached = Position::ZERO;
    while let Some(record) = records.next().await {
        let record = record?;
        if record.position > head {
            break;
        }
        projection.apply(&record.event);
        reached = record.position;
        if reached.get().is_multiple_of(16_384) {
            progress(reached, head);
        }
    }
    projection.refresh();
    progress(reached, head);
    Ok(Folded {
        projection,
        position: reached,
    })
}
