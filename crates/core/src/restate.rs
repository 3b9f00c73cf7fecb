//! Why a figure changed between two knowledge times (`docs/funnels.md`, *Restating*).
//!
//! The figures as the log was known at the first time are folded from the events recorded by
//! then. The events recorded after it, up to the second time, are then applied one cause at a
//! time, in a fixed order, and the figures read after each: what a cause moved is the
//! difference it made, so the causes add up to the change by construction, and the last
//! column is the figures as known at the second time (folding does not depend on the order
//! events arrive in). A different definition at the second time is the last cause: the same
//! events folded under it.

use crate::event::{Event, EventId, Kind, Payload};
use crate::timestamp::Timestamp;
use crate::view::FunnelProjection;
use std::collections::BTreeMap;

/// What made a figure change, in the order causes are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// Facts that happened by the first time but were recorded after it.
    Late,
    /// `retracted` events.
    Retractions,
    /// `corrected` events.
    Corrections,
    /// `merged` events.
    Merges,
    /// `linked_to_account` events.
    Relinks,
    /// Everything else that happened after the first time: the period moving on.
    New,
    /// The second definition, when it differs.
    Definition,
}

impl Cause {
    pub const ALL: [Cause; 7] = [
        Cause::Late,
        Cause::Retractions,
        Cause::Corrections,
        Cause::Merges,
        Cause::Relinks,
        Cause::New,
        Cause::Definition,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::Late => "late",
            Cause::Retractions => "retractions",
            Cause::Corrections => "corrections",
            Cause::Merges => "merges",
            Cause::Relinks => "relinks",
            Cause::New => "new",
            Cause::Definition => "definition",
        }
    }

    /// The cause of an event recorded after `from`.
    pub fn of(event: &Event, from: Timestamp) -> Cause {
        match event.payload {
            Payload::Retracted { .. } => Cause::Retractions,
            Payload::Corrected { .. } => Cause::Corrections,
            Payload::Merged { .. } => Cause::Merges,
            Payload::LinkedToAccount { .. } => Cause::Relinks,
            _ if event.occurred_at <= from => Cause::Late,
            _ => Cause::New,
        }
    }
}

/// A figure: a count, or an amount in minor units of a currency.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Figure {
    pub name: String,
    /// The currency of an amount; `None` for a count.
    pub currency: Option<String>,
}

/// Every figure of a projection: people, each stage's entered, current and converted, won
/// deals, won revenue, open pipeline, revenue by first-touch channel, and each attribution
/// model's credited revenue and pipeline by channel.
pub fn figures(projection: &FunnelProjection) -> BTreeMap<Figure, i64> {
    let mut figures = BTreeMap::new();
    let count = |name: String| Figure {
        name,
        currency: None,
    };
    let summary = projection.summary();
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    figures.insert(count("people".into()), as_i64(summary.people));
    for stage in &summary.stages {
        figures.insert(
            count(format!("stage {} entered", stage.name)),
            as_i64(stage.entered),
        );
        figures.insert(
            count(format!("stage {} current", stage.name)),
            as_i64(stage.current),
        );
        figures.insert(
            count(format!("stage {} converted", stage.name)),
            as_i64(stage.converted),
        );
    }
    figures.insert(count("won deals".into()), as_i64(summary.won_deals));
    let mut amount = |name: String, currency: &str, minor: i64| {
        let figure = Figure {
            name,
            currency: Some(currency.to_owned()),
        };
        let sum = figures.entry(figure).or_insert(0);
        *sum = sum.saturating_add(minor);
    };
    for (currency, minor) in &summary.revenue_minor_units {
        amount("won revenue".into(), currency, *minor);
    }
    let (marketing, sales, _) = projection.aggregate_views();
    for row in &sales.pipeline {
        for (currency, minor) in &row.amount {
            amount("open pipeline".into(), currency, *minor);
        }
    }
    for row in marketing
        .attribution
        .iter()
        .filter(|row| row.dimension == "channel")
    {
        for (currency, minor) in &row.revenue {
            amount(
                format!("revenue by first-touch channel {}", row.value),
                currency,
                *minor,
            );
        }
    }
    for row in projection
        .attribution_view()
        .credit
        .iter()
        .filter(|row| row.dimension == "channel")
    {
        let Some(currency) = &row.currency else {
            continue;
        };
        for (what, minor) in [
            ("revenue", row.credited_revenue_minor),
            ("pipeline", row.credited_pipeline_minor),
        ] {
            amount(
                format!("credited {what} {} channel {}", row.model, row.value),
                currency,
                minor,
            );
        }
    }
    figures
}

/// One figure's change, by cause.
#[derive(Clone, Debug, PartialEq)]
pub struct Restated {
    pub figure: Figure,
    pub from: i64,
    /// What each cause moved, in `Cause::ALL` order.
    pub moved: [i64; 7],
    pub to: i64,
}

/// The restatement between two knowledge times.
#[derive(Clone, Debug, PartialEq)]
pub struct Restatement {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Every figure that changed.
    pub figures: Vec<Restated>,
    /// The events behind each cause, by id, in (business time, id) order.
    pub events: BTreeMap<Cause, Vec<(EventId, Kind, Timestamp)>>,
}

/// Restates the figures of `projection` (folded from the events recorded by `from`) with
/// `later` (the events recorded after `from`, up to `to`), cause by cause; then, when the
/// definition at `to` differs, under it: `refolded` is every event recorded by `to` folded
/// under that definition.
pub fn restate(
    mut projection: FunnelProjection,
    later: &[Event],
    from: Timestamp,
    to: Timestamp,
    refolded: Option<&FunnelProjection>,
) -> Restatement {
    let mut columns: Vec<BTreeMap<Figure, i64>> = vec![figures(&projection)];
    let mut events: BTreeMap<Cause, Vec<(EventId, Kind, Timestamp)>> = BTreeMap::new();
    for cause in &Cause::ALL[..6] {
        let mut applied = false;
        for event in later
            .iter()
            .filter(|event| Cause::of(event, from) == *cause)
        {
            projection.apply(event);
            events.entry(*cause).or_default().push((
                event.event_id,
                event.kind(),
                event.occurred_at,
            ));
            applied = true;
        }
        if applied {
            projection.refresh();
        }
        columns.push(figures(&projection));
    }
    match refolded {
        Some(refolded) => columns.push(figures(refolded)),
        None => columns.push(columns[6].clone()),
    }
    for list in events.values_mut() {
        list.sort_by_key(|(id, _, at)| (*at, *id));
    }
    let mut names: Vec<&Figure> = columns.iter().flat_map(|c| c.keys()).collect();
    names.sort();
    names.dedup();
    let figures = names
        .into_iter()
        .filter_map(|figure| {
            let value = |column: &BTreeMap<Figure, i64>| column.get(figure).copied().unwrap_or(0);
            let mut moved = [0i64; 7];
            for (index, slot) in moved.iter_mut().enumerate() {
                *slot = value(&columns[index + 1]).saturating_sub(value(&columns[index]));
            }
            let (start, end) = (value(&columns[0]), value(&columns[7]));
            (start != end || moved.iter().any(|m| *m != 0)).then(|| Restated {
                figure: figure.clone(),
                from: start,
                moved,
                to: end,
            })
        })
        .collect();
    Restatement {
        from,
        to,
        figures,
        events,
    }
}
