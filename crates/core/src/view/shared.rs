//! The shared-funnel view: the summary both teams read, conversion by entry cohort with
//! people still within the window kept apart from those who dropped, and the hand-off ledger.
//! Pipeline and revenue by source is the marketing view's attribution, which both teams share.
//! Rules in `docs/views.md`.

use super::totals::{Totals, count};
use super::{FunnelProjection, FunnelSummary};
use crate::journey::Direction;
use crate::timestamp::Timestamp;

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

impl FunnelProjection {
    /// The shared-funnel view of refreshed journeys.
    pub fn shared_view(&self) -> SharedView {
        let mut view = self.with_totals(|totals| self.shared_view_with(totals));
        view.handoffs = self.person_rows().handoff_rows();
        view
    }

    /// The shared-funnel view without its hand-off ledger, which
    /// [`FunnelProjection::person_rows`] gives.
    fn shared_view_with(&self, totals: &Totals) -> SharedView {
        let stages = self.definition.stages();
        let now = self.now().unix_millis();
        // In flight while entered at most the conversion window before "now" (whole
        // milliseconds: `now − entered ≤ window` for an integer difference).
        let window =
            (self.definition.conversion_window_days() * Timestamp::MILLIS_PER_DAY as f64).floor();
        let since = if window.is_nan() {
            i64::MAX
        } else {
            now.saturating_sub(window as i64)
        };
        let mut cohorts: Vec<(&String, usize, CohortRow)> = totals
            .cohorts
            .iter()
            .map(|(&(cohort, stage), counts)| {
                let in_flight = counts.waiting.count_from(since);
                let month = &totals.month_names[cohort];
                let row = CohortRow {
                    cohort: month.clone(),
                    stage: stages[stage].name.clone(),
                    reached: count(counts.reached),
                    converted: count(counts.converted),
                    in_flight,
                    dropped: count(counts.dropped) + counts.waiting.len() - in_flight,
                };
                (month, stage, row)
            })
            .collect();
        // Months were numbered as first seen; rows go in (month, stage) order.
        cohorts.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let cohorts = cohorts.into_iter().map(|(_, _, row)| row).collect();

        SharedView {
            summary: self.summary_with(totals),
            cohorts,
            handoffs: Vec::new(),
        }
    }
}

/// The marketing, sales and shared-funnel views, as one build gives them.
pub type Views = (
    super::marketing::MarketingView,
    super::sales::SalesView,
    SharedView,
);

impl FunnelProjection {
    /// The three views of refreshed journeys, read from one set of totals.
    pub fn views(&self) -> Views {
        let (mut marketing, mut sales, mut shared) = self.aggregate_views();
        let rows = self.person_rows();
        marketing.people = rows.score_rows();
        marketing.accounts = rows.account_rows();
        sales.opportunities = rows.opportunity_rows();
        shared.handoffs = rows.handoff_rows();
        (marketing, sales, shared)
    }

    /// The three views without their row-level parts (the marketing view's `people` and
    /// `accounts`, the sales view's `opportunities`, the shared view's `handoffs` are empty):
    /// what a build costs when the rows are read later from [`FunnelProjection::person_rows`].
    pub fn aggregate_views(&self) -> Views {
        self.with_totals(|totals| {
            (
                self.marketing_view_with(totals),
                self.sales_view_with(totals),
                self.shared_view_with(totals),
            )
        })
    }

    /// Every folded person's row-level data now, shared with the projection: taking it costs
    /// a copy of a list of chunk pointers.
    pub fn person_rows(&self) -> super::rows::PersonRows {
        let stage_names: std::sync::Arc<[String]> = self
            .definition
            .stages()
            .iter()
            .map(|stage| stage.name.clone())
            .collect();
        self.with_totals(|totals| {
            super::rows::PersonRows::new(
                totals
                    .rows
                    .get_or_init(|| {
                        super::rows::RowChunks::from_sorted(
                            self.person_records().iter().map(|r| self.person_row(r)),
                        )
                    })
                    .clone(),
                totals.opportunity_rows.clone(),
                totals.ledger_rows.clone(),
                self.now(),
                self.definition.half_life_days(),
                stage_names,
            )
            .with_attribution(
                std::sync::Arc::new(self.definition.attribution().clone()),
                totals.attribution.labels.clone(),
            )
        })
    }
}

/// A person's hand-offs as ledger rows, with how many times they came back to sales after
/// being handed back.
pub(crate) fn handoff_rows_of(person: &super::report::PersonRecord<'_>) -> Vec<HandoffRow> {
    let mut handed_back = false;
    let mut ping_pongs = 0;
    let mut rows = Vec::with_capacity(person.journey.handoffs.len());
    for (index, handoff) in person.journey.handoffs.iter().enumerate() {
        match handoff.direction {
            Direction::ToMarketing => handed_back = true,
            Direction::ToSales => {
                if handed_back {
                    ping_pongs += 1;
                }
                handed_back = false;
            }
        }
        rows.push(HandoffRow {
            person: person.id.to_owned(),
            account: person.account.map(str::to_owned),
            at: handoff.at,
            direction: handoff.direction,
            cause: handoff.cause,
            sequence: index as u64 + 1,
            ping_pongs,
        });
    }
    rows
}
