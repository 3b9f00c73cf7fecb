//! The shared-funnel view: the summary both teams read, conversion by entry cohort with
//! people still within the window kept apart from those who dropped, and the hand-off ledger.
//! Pipeline and revenue by source is the marketing view's attribution, which both teams share.
//! Rules in `docs/views.md`.

use super::{FunnelProjection, FunnelSummary};
use crate::funnel::Outcome;
use crate::journey::{Direction, Place};
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

/// Step conversion of one entry cohort at one stage.
#[derive(Clone, Debug, PartialEq)]
pub struct CohortRow {
    /// The UTC month (`2026-03`) of the person's first move into a stage.
    pub cohort: String,
    pub stage: String,
    /// People of the cohort who reached the stage (by its rule or passed over on the way).
    pub reached: u64,
    /// Of those, people who reached a stage further along.
    pub converted: u64,
    /// Not converted, still in the stage, and there for no longer than the definition's
    /// conversion window: they may still convert.
    pub in_flight: u64,
    /// Not converted and not in flight: moved to a detour or an outcome, or past the window.
    pub dropped: u64,
}

impl CohortRow {
    /// `converted / (reached - in_flight)`: conversion among people whose step is decided.
    pub fn conversion_rate(&self) -> Option<f64> {
        let decided = self.reached - self.in_flight;
        (decided > 0).then(|| self.converted as f64 / decided as f64)
    }
}

/// One hand-off between marketing and sales.
#[derive(Clone, Debug, PartialEq)]
pub struct HandoffRow {
    pub person: String,
    pub account: Option<String>,
    pub at: Timestamp,
    pub direction: Direction,
    /// The event that caused it.
    pub cause: crate::event::EventId,
    /// Its place among the person's hand-offs, from 1.
    pub sequence: u64,
    /// Hand-backs to marketing followed by a new hand-off, in the person's journey so far.
    pub ping_pongs: u64,
}

/// The shared-funnel view.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedView {
    pub summary: FunnelSummary,
    pub cohorts: Vec<CohortRow>,
    pub handoffs: Vec<HandoffRow>,
}

fn month(at: Timestamp) -> String {
    at.to_rfc3339()[..7].to_owned()
}

impl FunnelProjection {
    /// The shared-funnel view of refreshed journeys.
    pub fn shared_view(&self) -> SharedView {
        self.shared_view_with(&self.person_records())
    }

    fn shared_view_with(&self, records: &[super::report::PersonRecord<'_>]) -> SharedView {
        let definition = &self.definition;
        let stages = definition.stages();
        let now = self.now();
        let window_millis = definition.conversion_window_days() * Timestamp::MILLIS_PER_DAY as f64;
        // By (month, stage); a month's name is worked out once per day seen, not per person.
        let mut cohorts: BTreeMap<(usize, usize), CohortRow> = BTreeMap::new();
        let mut months: super::HashMap<i64, usize> = super::HashMap::default();
        let mut month_names: Vec<String> = Vec::new();
        let mut handoffs = Vec::new();
        // When each stage was last entered, reused from person to person.
        let mut entered_at: Vec<Option<Timestamp>> = vec![None; stages.len()];
        records.iter().for_each(|person| {
            let journey = person.journey;
            let Some(first) = journey
                .transitions
                .iter()
                .find(|t| matches!(t.to, Place::Stage(_)))
            else {
                return;
            };
            let day = first.at.unix_millis().div_euclid(Timestamp::MILLIS_PER_DAY);
            let cohort = *months.entry(day).or_insert_with(|| {
                let name = month(first.at);
                match month_names.iter().position(|known| *known == name) {
                    Some(index) => index,
                    None => {
                        month_names.push(name);
                        month_names.len() - 1
                    }
                }
            });
            // The furthest stage reached, and when each stage was last entered (by rule or
            // passed over). A move into a lost outcome reaches nothing: losing is not converting.
            let mut furthest = None;
            entered_at.fill(None);
            for transition in &journey.transitions {
                if let Place::Stage(index) = transition.to
                    && stages[index].outcome != Some(Outcome::Lost)
                {
                    furthest = furthest.max(Some(index));
                    for skipped in &transition.skipped {
                        entered_at[*skipped] = Some(transition.at);
                    }
                    entered_at[index] = Some(transition.at);
                }
            }
            let Some(furthest) = furthest else {
                return;
            };
            let current = journey.current();
            for (index, stage) in stages.iter().enumerate() {
                if stage.outcome.is_some() || index > furthest {
                    continue;
                }
                let row = cohorts.entry((cohort, index)).or_insert_with(|| CohortRow {
                    cohort: month_names[cohort].clone(),
                    stage: stage.name.clone(),
                    reached: 0,
                    converted: 0,
                    in_flight: 0,
                    dropped: 0,
                });
                row.reached += 1;
                if furthest > index {
                    row.converted += 1;
                    continue;
                }
                let within = entered_at[index].is_some_and(|at| {
                    (now.unix_millis() - at.unix_millis()) as f64 <= window_millis
                });
                if current == Place::Stage(index) && within {
                    row.in_flight += 1;
                } else {
                    row.dropped += 1;
                }
            }
            let mut handed_back = false;
            let mut ping_pongs = 0;
            for (index, handoff) in journey.handoffs.iter().enumerate() {
                match handoff.direction {
                    Direction::ToMarketing => handed_back = true,
                    Direction::ToSales => {
                        if handed_back {
                            ping_pongs += 1;
                        }
                        handed_back = false;
                    }
                }
                handoffs.push(HandoffRow {
                    person: person.id.to_owned(),
                    account: person.account.map(str::to_owned),
                    at: handoff.at,
                    direction: handoff.direction,
                    cause: handoff.cause,
                    sequence: index as u64 + 1,
                    ping_pongs,
                });
            }
        });
        handoffs.sort_by(|a, b| a.at.cmp(&b.at).then(a.person.cmp(&b.person)));
        SharedView {
            summary: self.summary(),
            cohorts: {
                // Months were numbered as first seen; rows go in (month, stage) order.
                let mut rows: Vec<((usize, usize), CohortRow)> = cohorts.into_iter().collect();
                rows.sort_by(|((a, i), _), ((b, j), _)| {
                    (&month_names[*a], i).cmp(&(&month_names[*b], j))
                });
                rows.into_iter().map(|(_, row)| row).collect()
            },
            handoffs,
        }
    }
}

impl FunnelProjection {
    /// The three views at once, sharing the work they have in common (the opportunities).
    pub fn views(
        &self,
    ) -> (
        super::marketing::MarketingView,
        super::sales::SalesView,
        SharedView,
    ) {
        let records = self.person_records();
        let opportunities = Self::opportunities(&records);
        (
            self.marketing_view_with(&records, &opportunities),
            self.sales_view_with(&records, &opportunities),
            self.shared_view_with(&records),
        )
    }
}
