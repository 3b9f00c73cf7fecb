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
    mut progress: impl FnMut(Position, Position),
) -> Result<Folded, ProjectError> {
    let head = log.stat().await?.head;
    let mut projection =
        FunnelProjection::new(definition).with_refresh_threads(crate::refresh_threads());
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
