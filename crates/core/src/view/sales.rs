//! The sales view: the follow-up SLA per owner, open pipeline by CRM stage, proposals and how
//! they ended, win rate, cycle time, sales velocity and loss reasons, with one row per
//! opportunity. Rules in `docs/views.md`.

use super::FunnelProjection;
use super::marketing::amounts;
use super::report::{Amounts, DealStatus, NONE_LABEL, days, hours, ratio};
use super::totals::{Clocks, Sums, Totals, clamp, count};
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
    /// The latest proposal's amount, when in the opportunity's currency.
    pub proposal_amount_minor: Option<i64>,
    /// Who won it: the owner named by the latest fact with an owner of the person whose close
    /// counts, at or before the close.
    pub owner: Option<String>,
    /// The first touch of its person: channel and campaign.
    pub first_touch_channel: Option<String>,
    pub first_touch_campaign: Option<String>,
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
        let mut view = self.with_totals(|totals| self.sales_view_with(totals));
        view.opportunities = self.person_rows().opportunity_rows();
        view
    }

    /// The sales view without its row per opportunity, which
    /// [`FunnelProjection::person_rows`] gives.
    pub(crate) fn sales_view_with(&self, totals: &Totals) -> SalesView {
        let now = self.now();
        // Owners by label: the totals are by symbol, and two symbols may read the same
        // (an owner named "(none)" and none); only those are merged.
        let mut by_owner: BTreeMap<String, std::borrow::Cow<'_, Clocks>> = BTreeMap::new();
        for (owner, clocks) in &totals.clocks_by_owner {
            match by_owner.entry(self.label(*owner)) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(std::borrow::Cow::Borrowed(clocks));
                }
                std::collections::btree_map::Entry::Occupied(mut entry) => {
                    entry.get_mut().to_mut().add_all(clocks);
                }
            }
        }
        let sla_by_owner = by_owner
            .into_iter()
            .map(|(owner, clocks)| SlaOwnerRow {
                owner,
                handoffs: count(clocks.started),
                responded: count(clocks.responded),
                breached: clocks.breached(now),
                untouched: count(clocks.untouched),
                median_hours_to_first_action: clocks.response_millis.percentile(50).map(hours),
                p90_hours_to_first_action: clocks.response_millis.percentile(90).map(hours),
            })
            .collect();

        let deals = &totals.deals;
        let mut view = SalesView {
            as_of: self.latest,
            sla_by_owner,
            pipeline: Vec::new(),
            open: count(deals.open),
            won: count(deals.won),
            lost: count(deals.lost),
            proposals_sent: count(deals.proposals_sent),
            proposal_opportunities: count(deals.proposal_opportunities),
            proposal_won: count(deals.proposal_won),
            proposal_lost: count(deals.proposal_lost),
            proposal_open: count(deals.proposal_open),
            cycle_days_median: None,
            cycle_days_mean: None,
            average_deal: Vec::new(),
            velocity_per_day: Vec::new(),
            loss_reasons: Vec::new(),
            opportunities: Vec::new(),
        };
        let mut pipeline: BTreeMap<String, (u64, Sums)> = BTreeMap::new();
        for (stage, (opportunities, amount)) in &deals.pipeline {
            let entry = pipeline.entry(self.label(*stage)).or_default();
            entry.0 += count(*opportunities);
            entry.1.add_all(amount);
        }
        view.pipeline = pipeline
            .into_iter()
            .map(|(stage, (opportunities, amount))| PipelineRow {
                stage,
                opportunities,
                amount: amounts(self, &amount),
            })
            .collect();
        if let Some((low, high)) = deals.cycles.middle() {
            view.cycle_days_median = Some(if deals.cycles.len() % 2 == 1 {
                days(low)
            } else {
                (days(low) + days(high)) / 2.0
            });
            view.cycle_days_mean = Some(
                deals.cycles_sum as f64
                    / Timestamp::MILLIS_PER_DAY as f64
                    / deals.cycles.len() as f64,
            );
        }
        // Per currency by name: (count, sum) of won amounts, open opportunities.
        let mut won_amounts: BTreeMap<String, (u64, i128)> = BTreeMap::new();
        for (currency, (won, total)) in &deals.won_amounts {
            let entry = won_amounts.entry(self.label(*currency)).or_default();
            entry.0 += count(*won);
            entry.1 += total;
        }
        let mut open_by_currency: BTreeMap<String, u64> = BTreeMap::new();
        for (currency, open) in &deals.open_by_currency {
            *open_by_currency.entry(self.label(*currency)).or_default() += count(*open);
        }
        view.average_deal = won_amounts
            .iter()
            .filter(|(_, (won, _))| *won > 0)
            .map(|(currency, (won, total))| (currency.clone(), clamp(*total) / *won as i64))
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
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for (reason, lost) in &deals.loss_reasons {
            *reasons.entry(self.label(*reason)).or_default() += count(*lost);
        }
        let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        view.loss_reasons = reasons;

        view
    }
}

/// An opportunity's row, with its symbols' texts from `label`.
pub(crate) fn opportunity_row(
    opportunity: &super::report::Opportunity,
    label: impl Fn(crate::symbol::Symbol) -> String,
) -> OpportunityRow {
    let value = opportunity.value();
    OpportunityRow {
        opportunity: label(opportunity.id),
        person: opportunity.person.clone(),
        account: opportunity.account.clone(),
        created_at: opportunity.created_at,
        stage: opportunity
            .stage
            .map_or_else(|| NONE_LABEL.to_owned(), |(_, s)| label(s)),
        status: opportunity.status,
        closed_at: opportunity.closed_at,
        amount_minor: value.map(|(minor, _)| minor),
        currency: value.map(|(_, currency)| label(currency)),
        proposals: opportunity.proposals,
        loss_reason: opportunity
            .loss_reason
            .is_some()
            .then(|| label(opportunity.loss_reason)),
        proposal_amount_minor: opportunity
            .proposal
            .filter(|(_, _, currency)| value.is_some_and(|(_, c)| c == *currency))
            .map(|(_, minor, _)| minor),
        owner: opportunity
            .owner
            .is_some()
            .then(|| label(opportunity.owner)),
        first_touch_channel: opportunity
            .first_touch
            .filter(|first| first.attributes.channel.is_some())
            .map(|first| label(first.attributes.channel)),
        first_touch_campaign: opportunity
            .first_touch
            .filter(|first| first.attributes.campaign.is_some())
            .map(|first| label(first.attributes.campaign)),
    }
}
