//! The sales view: the follow-up SLA per owner, open pipeline by CRM stage, proposals and how
//! they ended, win rate, cycle time, sales velocity and loss reasons, with one row per
//! opportunity. Rules in `docs/views.md`.

use super::FunnelProjection;
use super::report::{AmountSum, Amounts, DealStatus, NONE_LABEL, days, hours, percentile, ratio};
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

/// The follow-up SLA of one owner's MQLs.
#[derive(Clone, Debug, PartialEq)]
pub struct SlaOwnerRow {
    /// The seller on the latest fact with an owner at or before the first action (or, with
    /// none, at or before the deadline); `(none)` when nobody was named by then.
    pub owner: String,
    pub handoffs: u64,
    pub responded: u64,
    pub breached: u64,
    pub untouched: u64,
    pub median_hours_to_first_action: Option<f64>,
    pub p90_hours_to_first_action: Option<f64>,
}

/// Open opportunities in one CRM stage.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineRow {
    pub stage: String,
    pub opportunities: u64,
    pub amount: Amounts,
}

/// One opportunity.
#[derive(Clone, Debug, PartialEq)]
pub struct OpportunityRow {
    pub opportunity: String,
    pub person: String,
    pub account: Option<String>,
    pub created_at: Timestamp,
    pub stage: String,
    pub status: DealStatus,
    pub closed_at: Option<Timestamp>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub proposals: u64,
    pub loss_reason: Option<String>,
}

/// The sales view.
#[derive(Clone, Debug, PartialEq)]
pub struct SalesView {
    pub as_of: Option<Timestamp>,
    pub sla_by_owner: Vec<SlaOwnerRow>,
    pub pipeline: Vec<PipelineRow>,
    pub open: u64,
    pub won: u64,
    pub lost: u64,
    /// Proposals sent, opportunities with at least one, and how those ended.
    pub proposals_sent: u64,
    pub proposal_opportunities: u64,
    pub proposal_won: u64,
    pub proposal_lost: u64,
    pub proposal_open: u64,
    /// Days from creation to close won.
    pub cycle_days_median: Option<f64>,
    pub cycle_days_mean: Option<f64>,
    /// Won amount per won deal, per currency.
    pub average_deal: Amounts,
    /// Expected revenue per day, per currency: open opportunities × win rate × average deal
    /// ÷ mean cycle days.
    pub velocity_per_day: Vec<(String, f64)>,
    /// Lost opportunities by the reason of their last close-lost, most frequent first.
    pub loss_reasons: Vec<(String, u64)>,
    pub opportunities: Vec<OpportunityRow>,
}

impl SalesView {
    /// `won / (won + lost)`.
    pub fn win_rate(&self) -> Option<f64> {
        ratio(self.won, self.won + self.lost)
    }
}

impl FunnelProjection {
    /// The sales view of refreshed journeys.
    pub fn sales_view(&self) -> SalesView {
        let records = self.person_records();
        self.sales_view_with(&records, &Self::opportunities(&records))
    }

    pub(crate) fn sales_view_with(
        &self,
        records: &[super::report::PersonRecord<'_>],
        opportunities: &BTreeMap<crate::symbol::Symbol, super::report::Opportunity>,
    ) -> SalesView {
        let now = self.now();
        let mut response: BTreeMap<String, (SlaOwnerRow, Vec<i64>)> = BTreeMap::new();
        records.iter().for_each(|person| {
            let clocks = person.journey.follow_ups.iter();
            for (clock, owner) in clocks.zip(&person.part.clock_owners) {
                // Whoever held the lead when it was answered, or by the deadline if it was not.
                let owner = self.label(*owner);
                let (row, millis) = response.entry(owner.clone()).or_insert_with(|| {
                    (
                        SlaOwnerRow {
                            owner,
                            handoffs: 0,
                            responded: 0,
                            breached: 0,
                            untouched: 0,
                            median_hours_to_first_action: None,
                            p90_hours_to_first_action: None,
                        },
                        Vec::new(),
                    )
                });
                row.handoffs += 1;
                match clock.first_action_at {
                    Some(at) => {
                        row.responded += 1;
                        millis.push(at.unix_millis() - clock.mql_at.unix_millis());
                    }
                    None => row.untouched += 1,
                }
                row.breached += u64::from(clock.breached(now));
            }
        });
        let sla_by_owner = response
            .into_values()
            .map(|(mut row, mut millis)| {
                millis.sort_unstable();
                row.median_hours_to_first_action = percentile(&millis, 50).map(hours);
                row.p90_hours_to_first_action = percentile(&millis, 90).map(hours);
                row
            })
            .collect();

        let mut pipeline: BTreeMap<String, (u64, AmountSum)> = BTreeMap::new();
        let mut view = SalesView {
            as_of: self.latest,
            sla_by_owner,
            pipeline: Vec::new(),
            open: 0,
            won: 0,
            lost: 0,
            proposals_sent: 0,
            proposal_opportunities: 0,
            proposal_won: 0,
            proposal_lost: 0,
            proposal_open: 0,
            cycle_days_median: None,
            cycle_days_mean: None,
            average_deal: Vec::new(),
            velocity_per_day: Vec::new(),
            loss_reasons: Vec::new(),
            opportunities: Vec::new(),
        };
        let mut cycles: Vec<i64> = Vec::new();
        let mut won_amounts: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        let mut open_by_currency: BTreeMap<String, u64> = BTreeMap::new();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for opportunity in opportunities.values() {
            let stage = opportunity
                .stage
                .map_or_else(|| NONE_LABEL.to_owned(), |(_, s)| self.label(s));
            let value = opportunity.value();
            let currency = value.map(|(_, currency)| self.label(currency));
            view.proposals_sent += opportunity.proposals;
            let proposed = opportunity.proposals > 0;
            view.proposal_opportunities += u64::from(proposed);
            match opportunity.status {
                DealStatus::Open => {
                    view.open += 1;
                    view.proposal_open += u64::from(proposed);
                    let entry = pipeline.entry(stage.clone()).or_default();
                    entry.0 += 1;
                    if let (Some((minor, _)), Some(currency)) = (value, &currency) {
                        entry.1.add(currency, minor);
                        *open_by_currency.entry(currency.clone()).or_default() += 1;
                    }
                }
                DealStatus::Won => {
                    view.won += 1;
                    view.proposal_won += u64::from(proposed);
                    if let Some(closed) = opportunity.closed_at {
                        cycles.push(closed.unix_millis() - opportunity.created_at.unix_millis());
                    }
                    if let (Some((minor, _)), Some(currency)) = (value, &currency) {
                        let entry = won_amounts.entry(currency.clone()).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.saturating_add(minor);
                    }
                }
                DealStatus::Lost => {
                    view.lost += 1;
                    view.proposal_lost += u64::from(proposed);
                    *reasons
                        .entry(self.label(opportunity.loss_reason))
                        .or_default() += 1;
                }
            }
            view.opportunities.push(OpportunityRow {
                opportunity: self.label(opportunity.id),
                person: opportunity.person.clone(),
                account: opportunity.account.clone(),
                created_at: opportunity.created_at,
                stage,
                status: opportunity.status,
                closed_at: opportunity.closed_at,
                amount_minor: value.map(|(minor, _)| minor),
                currency,
                proposals: opportunity.proposals,
                loss_reason: opportunity
                    .loss_reason
                    .is_some()
                    .then(|| self.label(opportunity.loss_reason)),
            });
        }
        view.opportunities
            .sort_by(|a, b| (a.created_at, &a.opportunity).cmp(&(b.created_at, &b.opportunity)));
        view.pipeline = pipeline
            .into_iter()
            .map(|(stage, (opportunities, amount))| PipelineRow {
                stage,
                opportunities,
                amount: amount.into_amounts(),
            })
            .collect();
        cycles.sort_unstable();
        if !cycles.is_empty() {
            let n = cycles.len();
            let median = if n % 2 == 1 {
                days(cycles[n / 2])
            } else {
                (days(cycles[n / 2 - 1]) + days(cycles[n / 2])) / 2.0
            };
            view.cycle_days_median = Some(median);
            view.cycle_days_mean = Some(days(cycles.iter().sum::<i64>()) / n as f64);
        }
        view.average_deal = won_amounts
            .iter()
            .map(|(currency, (count, total))| (currency.clone(), total / *count as i64))
            .collect();
        if let (Some(win_rate), Some(cycle)) = (view.win_rate(), view.cycle_days_mean)
            && cycle > 0.0
        {
            view.velocity_per_day = view
                .average_deal
                .iter()
                .map(|(currency, average)| {
                    let open = open_by_currency.get(currency).copied().unwrap_or(0);
                    let velocity = open as f64 * win_rate * *average as f64 / cycle;
                    (currency.clone(), velocity)
                })
                .collect();
        }
        let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        view.loss_reasons = reasons;
        view
    }
}
