//! The views' aggregates, kept as the sum of every person's and every opportunity's
//! contribution, so that a refresh updates them by what changed instead of a build reading
//! everyone.
//!
//! A contribution is worked out by one function, `person` or `opportunity`, called with
//! `sign` +1 to add it and −1 to take it back: `refresh` takes back a journey's old
//! contribution before storing the re-folded one and adds the new one after. The totals built
//! from scratch are the same functions over everyone with +1, so there is one statement of
//! each rule.
//!
//! Nothing here depends on "now". What the views compute against "now" (decay is not here:
//! it is per row) is kept as the times it depends on, in [`Multiset`]s that a build counts
//! against "now": nurture entry times, follow-up deadlines not yet met, cohort entry times of
//! people who may still be in flight.

use super::report::{Opportunity, PersonRecord};
use super::{HashMap, HashSet};
use crate::funnel::{FunnelDefinition, Outcome, Owner};
use crate::journey::{Direction, Place, Transition, owner_of};
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Values with their multiplicities, in order: what a median, a percentile or a count
/// against "now" reads.
#[derive(Clone, Debug)]
pub(crate) struct Multiset<T> {
    counts: BTreeMap<T, u64>,
    len: u64,
}

impl<T> Default for Multiset<T> {
    fn default() -> Self {
        Multiset {
            counts: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T: Ord + Copy> Multiset<T> {
    /// Adds the value (`sign` > 0) or takes one back.
    pub(crate) fn change(&mut self, value: T, sign: i64) {
        if sign > 0 {
            *self.counts.entry(value).or_default() += 1;
            self.len += 1;
            return;
        }
        match self.counts.get_mut(&value) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                self.counts.remove(&value);
            }
            None => {
                debug_assert!(false, "invariant: only what was added is taken back");
                return;
            }
        }
        self.len -= 1;
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn add_all(&mut self, other: &Multiset<T>) {
        for (value, count) in &other.counts {
            *self.counts.entry(*value).or_default() += count;
        }
        self.len += other.len;
    }

    /// The values at 0-based ranks `first` and `first + 1` in order (the second `None` past
    /// the end).
    fn at_rank(&self, first: u64) -> (Option<T>, Option<T>) {
        let mut seen = 0;
        let mut found = None;
        for (value, count) in &self.counts {
            seen += count;
            if found.is_some() {
                return (found, Some(*value));
            }
            if seen > first {
                found = Some(*value);
                if seen > first + 1 {
                    return (found, found);
                }
            }
        }
        (found, None)
    }

    /// The nearest-rank percentile: the smallest value with at least `p`% of the values at
    /// or below it.
    pub(crate) fn percentile(&self, p: u64) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let rank = (p * self.len).div_ceil(100).max(1);
        self.at_rank(rank - 1).0
    }

    /// The middle value, or the two middle values of an even count.
    pub(crate) fn middle(&self) -> Option<(T, T)> {
        match self.len {
            0 => None,
            n if n % 2 == 1 => self.at_rank(n / 2).0.map(|value| (value, value)),
            n => match self.at_rank(n / 2 - 1) {
                (Some(low), Some(high)) => Some((low, high)),
                _ => None,
            },
        }
    }

    /// How many values are at or above `from`.
    pub(crate) fn count_from(&self, from: T) -> u64 {
        self.counts.range(from..).map(|(_, count)| count).sum()
    }
}

/// Amounts per currency symbol, exact: a sum that has gone past `i64` and come back is right,
/// and only what is shown saturates. A currency is listed while some amount in it counts,
/// even one of zero, and not after the last one is taken back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sums(BTreeMap<Symbol, (i64, i128)>);

impl Sums {
    pub(crate) fn change(&mut self, currency: Symbol, minor_units: i64, sign: i64) {
        let (amounts, sum) = self.0.entry(currency).or_default();
        *amounts += sign;
        *sum += i128::from(sign) * i128::from(minor_units);
        if *amounts == 0 {
            self.0.remove(&currency);
        }
    }

    pub(crate) fn add_all(&mut self, other: &Sums) {
        for (currency, (amounts, sum)) in &other.0 {
            let entry = self.0.entry(*currency).or_default();
            entry.0 += amounts;
            entry.1 += sum;
        }
    }

    /// Each currency with an amount counting, and the sum.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Symbol, i128)> + '_ {
        self.0.iter().map(|(currency, (_, sum))| (*currency, *sum))
    }
}

/// A sum shown as `i64`, saturating.
pub(crate) fn clamp(sum: i128) -> i64 {
    i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX })
}

/// A piece of content's or a campaign's totals over the people who touched it.
#[derive(Clone, Debug, Default)]
pub(crate) struct TouchedTotals {
    pub(crate) touches: i64,
    pub(crate) views: i64,
    pub(crate) people: i64,
    /// Distinct accounts of those people (see `Totals::touched_accounts`).
    pub(crate) accounts: i64,
    pub(crate) demo_after: i64,
    pub(crate) mqls_after: i64,
}

/// Opportunities credited to something: a first-touch value, or content or a campaign that
/// influenced them.
#[derive(Clone, Debug, Default)]
pub(crate) struct DealTotals {
    pub(crate) count: i64,
    pub(crate) won: i64,
    pub(crate) pipeline: Sums,
    pub(crate) revenue: Sums,
}

impl DealTotals {
    fn change(&mut self, opportunity: &Opportunity, sign: i64) {
        let won = opportunity.status == super::report::DealStatus::Won;
        self.count += sign;
        self.won += sign * i64::from(won);
        if let Some((minor, currency)) = opportunity.value() {
            self.pipeline.change(currency, minor, sign);
            if won {
                self.revenue.change(currency, minor, sign);
            }
        }
    }
}

/// People credited to a first-touch value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Credited {
    pub(crate) people: i64,
    pub(crate) mql_people: i64,
}

/// The follow-up clocks of one owner, or of everyone (the summary).
#[derive(Clone, Debug, Default)]
pub(crate) struct Clocks {
    pub(crate) started: i64,
    pub(crate) responded: i64,
    pub(crate) untouched: i64,
    /// Clocks answered after their deadline.
    pub(crate) answered_late: i64,
    /// MQL to first action, in milliseconds, of the answered clocks.
    pub(crate) response_millis: Multiset<i64>,
    /// The deadlines of the clocks not answered yet: breached once "now" is past them.
    pub(crate) open_deadlines: Multiset<i64>,
}

impl Clocks {
    fn change(&mut self, clock: &crate::journey::FollowUp, sign: i64) {
        self.started += sign;
        match clock.first_action_at {
            Some(at) => {
                self.responded += sign;
                self.response_millis
                    .change(at.unix_millis() - clock.mql_at.unix_millis(), sign);
                if at > clock.deadline {
                    self.answered_late += sign;
                }
            }
            None => {
                self.untouched += sign;
                self.open_deadlines
                    .change(clock.deadline.unix_millis(), sign);
            }
        }
    }

    /// Clocks breached as of `now`: answered late, or unanswered with the deadline passed.
    pub(crate) fn breached(&self, now: Timestamp) -> u64 {
        // A deadline equal to "now" has not passed: `now > deadline` breaches.
        let not_yet = self.open_deadlines.count_from(now.unix_millis());
        let passed = self.open_deadlines.len() - not_yet;
        count(self.answered_late) + passed
    }

    pub(crate) fn add_all(&mut self, other: &Clocks) {
        self.started += other.started;
        self.responded += other.responded;
        self.untouched += other.untouched;
        self.answered_late += other.answered_late;
        self.response_millis.add_all(&other.response_millis);
        self.open_deadlines.add_all(&other.open_deadlines);
    }
}

/// A cohort's counts at one stage.
#[derive(Clone, Debug, Default)]
pub(crate) struct CohortTotals {
    pub(crate) reached: i64,
    pub(crate) converted: i64,
    /// Stopped here and no longer in the stage.
    pub(crate) dropped: i64,
    /// Stopped here and still in the stage: when they entered it. In flight while that is
    /// within the conversion window of "now", dropped after.
    pub(crate) waiting: Multiset<i64>,
}

/// A place's marketing-owned population, by when they moved in.
#[derive(Clone, Debug, Default)]
pub(crate) struct Nurture {
    /// Move-in times (milliseconds).
    pub(crate) since: Multiset<i64>,
    /// People there without a move (they count as arriving "now").
    pub(crate) unmoved: i64,
}

/// The summary's per-stage counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct StageTotals {
    pub(crate) entered: i64,
    pub(crate) current: i64,
    pub(crate) converted: i64,
    /// People a detour returned to the stage at least once.
    pub(crate) returned: i64,
    /// Time from entering the stage to the next move, of moves that happened.
    pub(crate) stays: Multiset<i64>,
}

/// The sales view's totals over opportunities.
#[derive(Clone, Debug, Default)]
pub(crate) struct DealsTotals {
    pub(crate) open: i64,
    pub(crate) won: i64,
    pub(crate) lost: i64,
    pub(crate) proposals_sent: i64,
    pub(crate) proposal_opportunities: i64,
    pub(crate) proposal_won: i64,
    pub(crate) proposal_lost: i64,
    pub(crate) proposal_open: i64,
    /// Open opportunities by CRM stage (`Symbol::NONE` for none named): count and amounts.
    pub(crate) pipeline: BTreeMap<Symbol, (i64, Sums)>,
    /// Created to closed, in milliseconds, of won opportunities with a close time.
    pub(crate) cycles: Multiset<i64>,
    pub(crate) cycles_sum: i128,
    /// Won opportunities with an amount, by currency: count and sum.
    pub(crate) won_amounts: BTreeMap<Symbol, (i64, i128)>,
    /// Open opportunities with an amount, by currency.
    pub(crate) open_by_currency: BTreeMap<Symbol, i64>,
    pub(crate) loss_reasons: BTreeMap<Symbol, i64>,
}

/// An opportunity with what it added to the totals that cannot be worked out again from it
/// alone (its carrier's content may have changed by the time it is taken back).
#[derive(Clone, Debug)]
pub(crate) struct Deal {
    pub(crate) opportunity: Opportunity,
    /// (campaign?, symbol) of the content and campaigns that influenced it.
    influenced: Vec<(bool, Symbol)>,
}

/// Every aggregate of the three views.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    // Marketing.
    pub(crate) mqls: i64,
    pub(crate) mql_people: i64,
    pub(crate) re_mql_people: i64,
    pub(crate) recycled: i64,
    pub(crate) disqualified: i64,
    pub(crate) handoffs: i64,
    pub(crate) accepted: i64,
    pub(crate) rejected: i64,
    pub(crate) nurture: HashMap<Place, Nurture>,
    pub(crate) touched: BTreeMap<(bool, Symbol), TouchedTotals>,
    /// People per (campaign?, symbol, account): an account counts once for content or a
    /// campaign while it has at least one.
    touched_accounts: HashMap<(bool, Symbol, String), u64>,
    pub(crate) touches_before_demo: Multiset<u64>,
    pub(crate) touches_before_demo_sum: i128,
    pub(crate) credited: HashMap<(&'static str, Symbol), Credited>,
    pub(crate) first_touch_deals: HashMap<(&'static str, Symbol), DealTotals>,
    pub(crate) influenced: HashMap<(bool, Symbol), DealTotals>,
    // Sales.
    pub(crate) clocks_by_owner: BTreeMap<Symbol, Clocks>,
    pub(crate) deals: DealsTotals,
    // Shared funnel and summary.
    /// By (cohort month, stage); months are numbered in `month_names`.
    pub(crate) cohorts: BTreeMap<(usize, usize), CohortTotals>,
    pub(crate) month_names: Vec<String>,
    months: HashMap<i64, usize>,
    pub(crate) stages: Vec<StageTotals>,
    /// The customer view's (`view/customer.rs`).
    pub(crate) customer: super::customer::CustomerTotals,
    /// The attribution view's (`view/attribution.rs`).
    pub(crate) attribution: super::attribution::AttributionTotals,
    /// People in the views.
    pub(crate) people: i64,
    pub(crate) clocks: Clocks,
    pub(crate) to_sales: i64,
    pub(crate) handbacks: i64,
    pub(crate) ping_pong_journeys: i64,
    // Opportunities.
    pub(crate) opportunities: BTreeMap<Symbol, Deal>,
    /// The people whose facts name each opportunity.
    carriers: HashMap<Symbol, BTreeSet<String>>,
    /// Opportunities whose carriers changed since they were last put together.
    stale: HashSet<Symbol>,
    /// Every folded person's row-level data, from the first time rows are read (a summary
    /// alone never needs them).
    pub(crate) rows: std::sync::OnceLock<super::rows::RowChunks<super::rows::PersonRow>>,
    /// Every opportunity's row.
    pub(crate) opportunity_rows: super::rows::RowChunks<super::rows::OpportunityEntry>,
    /// Every account ledger's part (`view/ledger.rs`).
    pub(crate) ledger_rows: super::rows::RowChunks<super::ledger::LedgerPart>,
}

/// A non-negative total as shown.
pub(crate) fn count(total: i64) -> u64 {
    debug_assert!(total >= 0, "invariant: a count never goes below zero");
    u64::try_from(total).unwrap_or(0)
}

/// (dimension, value) pairs a first touch credits: its source, channel and campaign
/// (`Symbol::NONE` for none).
pub(crate) fn first_touch_symbols(
    first: Option<&crate::journey::Attributed>,
) -> [(&'static str, Symbol); 3] {
    let attributes = first.map(|first| first.attributes).unwrap_or_default();
    [
        ("source", attributes.source),
        ("channel", attributes.channel),
        ("campaign", attributes.campaign),
    ]
}

/// The month an entry time falls in, `YYYY-MM`.
pub(crate) fn month(at: Timestamp) -> String {
    at.to_rfc3339()[..7].to_owned()
}

impl Totals {
    /// Adds (`sign` +1) or takes back (−1) what one person contributes. Opportunities the
    /// person's facts name are marked to be put together again (`settle`).
    pub(crate) fn person(
        &mut self,
        definition: &FunnelDefinition,
        person: &PersonRecord<'_>,
        sign: i64,
    ) {
        self.marketing_person(definition, person, sign);
        self.sales_person(person, sign);
        self.cohort_person(definition, person, sign);
        self.summary_person(definition, person, sign);
        self.customer.person(person, sign);
        self.attribution.person(person, sign);
        self.deals_person(person, sign);
    }

    /// Adds or takes back what one person contributes to the opportunities (as their
    /// carrier) and to attribution: all a view of attribution alone needs.
    pub(crate) fn deals_person(&mut self, person: &PersonRecord<'_>, sign: i64) {
        for id in person.part.opportunities() {
            let carriers = self.carriers.entry(id).or_default();
            if sign > 0 {
                carriers.insert(person.id.to_owned());
            } else {
                carriers.remove(person.id);
                if carriers.is_empty() {
                    self.carriers.remove(&id);
                }
            }
            self.stale.insert(id);
        }
    }

    fn marketing_person(
        &mut self,
        definition: &FunnelDefinition,
        person: &PersonRecord<'_>,
        sign: i64,
    ) {
        let journey = person.journey;
        let mql_stage = Place::Stage(definition.mql_stage());
        let (mqls, last_mql) = journey
            .transitions
            .iter()
            .filter(|t| t.to == mql_stage && !t.is_return())
            .fold((0i64, None), |(n, last), t| (n + 1, last.max(Some(t.at))));
        self.mqls += sign * mqls;
        self.mql_people += sign * i64::from(mqls > 0);
        self.re_mql_people += sign * i64::from(mqls > 1);
        for transition in &journey.transitions {
            if let Place::Detour(index) = transition.to {
                match definition.detours()[index].back_to {
                    Some(_) => self.recycled += sign,
                    None => self.disqualified += sign,
                }
            }
        }
        self.handoffs += sign * journey.follow_ups.len() as i64;
        self.accepted += sign * person.part.accepted as i64;
        self.rejected += sign * person.part.rejected as i64;

        let place = journey.current();
        if owner_of(definition, place) == Some(Owner::Marketing) {
            let nurture = self.nurture.entry(place).or_default();
            match journey.transitions.last() {
                Some(moved) => nurture.since.change(moved.at.unix_millis(), sign),
                None => nurture.unmoved += sign,
            }
        }

        let first_demo = person.part.first_demo.map(|(at, _)| at);
        if let Some((_, before)) = person.part.first_demo {
            self.touches_before_demo.change(before, sign);
            self.touches_before_demo_sum += i128::from(sign) * i128::from(before);
        }
        for touched in &person.part.touched {
            let key = (touched.campaign, touched.symbol);
            let row = self.touched.entry(key).or_default();
            row.touches += sign * i64::from(touched.touches);
            row.views += sign * i64::from(touched.views);
            row.people += sign;
            row.demo_after += sign * i64::from(first_demo.is_some_and(|at| at >= touched.first_at));
            row.mqls_after += sign * i64::from(last_mql.is_some_and(|at| at >= touched.first_at));
            if let Some(account) = person.account {
                let members = self
                    .touched_accounts
                    .entry((touched.campaign, touched.symbol, account.to_owned()))
                    .or_default();
                if sign > 0 {
                    *members += 1;
                    row.accounts += i64::from(*members == 1);
                } else {
                    *members -= 1;
                    if *members == 0 {
                        row.accounts -= 1;
                        self.touched_accounts.remove(&(
                            touched.campaign,
                            touched.symbol,
                            account.to_owned(),
                        ));
                    }
                }
            }
            if row.people == 0 {
                self.touched.remove(&key);
            }
        }

        let is_mql = mqls > 0;
        for key in first_touch_symbols(person.first_touch()) {
            let credit = self.credited.entry(key).or_default();
            credit.people += sign;
            credit.mql_people += sign * i64::from(is_mql);
            if credit.people == 0 {
                self.credited.remove(&key);
            }
        }
    }

    fn sales_person(&mut self, person: &PersonRecord<'_>, sign: i64) {
        let clocks = person.journey.follow_ups.iter();
        for (clock, owner) in clocks.zip(&person.part.clock_owners) {
            // Whoever held the lead when it was answered, or by the deadline if it was not.
            let totals = self.clocks_by_owner.entry(*owner).or_default();
            totals.change(clock, sign);
            if totals.started == 0 {
                self.clocks_by_owner.remove(owner);
            }
        }
    }

    fn cohort_person(
        &mut self,
        definition: &FunnelDefinition,
        person: &PersonRecord<'_>,
        sign: i64,
    ) {
        let stages = definition.stages();
        let journey = person.journey;
        let Some(first) = journey
            .transitions
            .iter()
            .find(|t| matches!(t.to, Place::Stage(_)))
        else {
            return;
        };
        // The furthest stage reached. A move into a lost outcome reaches nothing: losing is
        // not converting.
        // A detour's return reaches nothing either: it is not an entry.
        let reaches = |t: &Transition| match t.entered_stage() {
            Some(index) if !stages[index].outcome.is_some_and(Outcome::is_loss) => Some(index),
            _ => None,
        };
        let Some(furthest) = journey.transitions.iter().filter_map(reaches).max() else {
            return;
        };
        // When the furthest stage was last entered, by its rule or passed over.
        let entered = journey
            .transitions
            .iter()
            .rev()
            .find(|t| {
                reaches(t).is_some_and(|index| index == furthest || t.skipped.contains(&furthest))
            })
            .map(|t| t.at);
        let day = first.at.unix_millis().div_euclid(Timestamp::MILLIS_PER_DAY);
        let cohort = match self.months.get(&day) {
            Some(cohort) => *cohort,
            None => {
                let name = month(first.at);
                let cohort = match self.month_names.iter().position(|known| *known == name) {
                    Some(index) => index,
                    None => {
                        self.month_names.push(name);
                        self.month_names.len() - 1
                    }
                };
                self.months.insert(day, cohort);
                cohort
            }
        };
        let current = journey.current();
        for (index, stage) in stages.iter().enumerate() {
            if stage.outcome.is_some() || index > furthest {
                continue;
            }
            let row = self.cohorts.entry((cohort, index)).or_default();
            row.reached += sign;
            if furthest > index {
                row.converted += sign;
            } else {
                match entered {
                    Some(at) if current == Place::Stage(index) => {
                        row.waiting.change(at.unix_millis(), sign);
                    }
                    _ => row.dropped += sign,
                }
            }
            if row.reached == 0 {
                self.cohorts.remove(&(cohort, index));
            }
        }
    }

    pub(crate) fn summary_person(
        &mut self,
        definition: &FunnelDefinition,
        person: &PersonRecord<'_>,
        sign: i64,
    ) {
        let stages = definition.stages();
        if self.stages.len() != stages.len() {
            self.stages.resize_with(stages.len(), StageTotals::default);
        }
        let journey = person.journey;
        self.people += sign;
        for clock in &journey.follow_ups {
            self.clocks.change(clock, sign);
        }
        let mut entered_here = vec![false; stages.len()];
        let mut converted_here = vec![false; stages.len()];
        let mut returned_here = vec![false; stages.len()];
        for (index, transition) in journey.transitions.iter().enumerate() {
            let Place::Stage(stage) = transition.to else {
                continue;
            };
            // A detour's return puts the person back in the stage (a stay begins) without
            // entering it: it is counted apart, and converts nothing.
            if transition.is_return() {
                returned_here[stage] = true;
            } else {
                entered_here[stage] = true;
                // Losing the deal is not converting to a stage further along.
                let lost = stages[stage].outcome.is_some_and(Outcome::is_loss);
                for (earlier, was_entered) in entered_here.iter().enumerate().take(stage) {
                    if *was_entered && !lost {
                        converted_here[earlier] = true;
                    }
                }
            }
            if let Some(next) = journey.transitions.get(index + 1) {
                self.stages[stage]
                    .stays
                    .change(next.at.unix_millis() - transition.at.unix_millis(), sign);
            }
        }
        for (stage, totals) in self.stages.iter_mut().enumerate() {
            totals.entered += sign * i64::from(entered_here[stage]);
            totals.converted += sign * i64::from(converted_here[stage]);
            totals.returned += sign * i64::from(returned_here[stage]);
        }
        if let Place::Stage(stage) = journey.current() {
            self.stages[stage].current += sign;
        }
        let backs = journey
            .handoffs
            .iter()
            .filter(|h| h.direction == Direction::ToMarketing)
            .count() as i64;
        self.handbacks += sign * backs;
        self.to_sales += sign * (journey.handoffs.len() as i64 - backs);
        let returned = journey.handoffs.windows(2).any(|w| {
            w[0].direction == Direction::ToMarketing && w[1].direction == Direction::ToSales
        });
        self.ping_pong_journeys += sign * i64::from(returned);
    }

    /// Adds or takes back what one opportunity contributes.
    fn opportunity(&mut self, deal: &Deal, sign: i64) {
        let opportunity = &deal.opportunity;
        for key in first_touch_symbols(opportunity.first_touch.as_ref()) {
            self.first_touch_deals
                .entry(key)
                .or_default()
                .change(opportunity, sign);
        }
        for key in &deal.influenced {
            self.influenced
                .entry(*key)
                .or_default()
                .change(opportunity, sign);
        }
        let totals = &mut self.deals;
        let value = opportunity.value();
        totals.proposals_sent += sign * opportunity.proposals as i64;
        let proposed = i64::from(opportunity.proposals > 0);
        totals.proposal_opportunities += sign * proposed;
        match opportunity.status {
            super::report::DealStatus::Open => {
                totals.open += sign;
                totals.proposal_open += sign * proposed;
                let stage = opportunity.stage.map_or(Symbol::NONE, |(_, stage)| stage);
                let entry = totals.pipeline.entry(stage).or_default();
                entry.0 += sign;
                if let Some((minor, currency)) = value {
                    entry.1.change(currency, minor, sign);
                    *totals.open_by_currency.entry(currency).or_default() += sign;
                }
                if entry.0 == 0 {
                    totals.pipeline.remove(&stage);
                }
            }
            super::report::DealStatus::Won => {
                totals.won += sign;
                totals.proposal_won += sign * proposed;
                if let Some(closed) = opportunity.closed_at {
                    let cycle = closed.unix_millis() - opportunity.created_at.unix_millis();
                    totals.cycles.change(cycle, sign);
                    totals.cycles_sum += i128::from(sign) * i128::from(cycle);
                }
                if let Some((minor, currency)) = value {
                    let entry = totals.won_amounts.entry(currency).or_default();
                    entry.0 += sign;
                    entry.1 += i128::from(sign) * i128::from(minor);
                    if entry.0 == 0 {
                        totals.won_amounts.remove(&currency);
                    }
                }
            }
            super::report::DealStatus::Lost => {
                totals.lost += sign;
                totals.proposal_lost += sign * proposed;
                let reason = totals
                    .loss_reasons
                    .entry(opportunity.loss_reason)
                    .or_default();
                *reason += sign;
                if *reason == 0 {
                    totals.loss_reasons.remove(&opportunity.loss_reason);
                }
            }
        }
    }

    /// Takes the attribution credit of `ids` out of the roll-ups before what it reads changes
    /// (`view/attribution.rs`).
    pub(crate) fn take_back_attribution<'a>(
        &mut self,
        definition: &FunnelDefinition,
        ids: Vec<Symbol>,
        record: &impl Fn(&str) -> Option<PersonRecord<'a>>,
    ) {
        if ids.is_empty() {
            return;
        }
        self.attribution.take_back(
            definition.attribution(),
            ids,
            &self.opportunities,
            &self.carriers,
            record,
        );
    }

    /// Puts together again every opportunity whose carriers changed, from its carriers'
    /// current parts, replacing its contribution and its row. `record` gives a person as the
    /// views read them, `label` a symbol's text.
    pub(crate) fn settle<'a>(
        &mut self,
        definition: &FunnelDefinition,
        record: impl Fn(&str) -> Option<PersonRecord<'a>> + Sync,
        label: impl Fn(Symbol) -> String,
        threads: usize,
    ) {
        let mut stale: Vec<Symbol> = self.stale.drain().collect();
        stale.sort_unstable();
        for &id in &stale {
            if let Some(old) = self.opportunities.remove(&id) {
                self.opportunity(&old, -1);
                self.opportunity_rows.remove(&id);
            }
            let Some(carriers) = self.carriers.get(&id) else {
                continue;
            };
            let mut opportunity: Option<Opportunity> = None;
            for carrier in carriers {
                let Some(person) = record(carrier) else {
                    continue;
                };
                for deal in &person.part.deal_facts {
                    if deal.attributes.opportunity != id {
                        continue;
                    }
                    opportunity
                        .get_or_insert_with(|| Opportunity::new(id, &person, &deal.fact))
                        .take(&person, deal);
                }
            }
            let Some(opportunity) = opportunity else {
                continue;
            };
            // Content and campaigns its person touched by the time it was created.
            let influenced = record(&opportunity.person).map_or_else(Vec::new, |owner| {
                owner
                    .part
                    .touched
                    .iter()
                    .filter(|touched| opportunity.created_at >= touched.first_at)
                    .map(|touched| (touched.campaign, touched.symbol))
                    .collect()
            });
            let deal = Deal {
                opportunity,
                influenced,
            };
            self.opportunity(&deal, 1);
            self.opportunity_rows.upsert(super::rows::OpportunityEntry {
                id,
                row: super::sales::opportunity_row(&deal.opportunity, &label),
            });
            self.opportunities.insert(id, deal);
        }
        self.attribution.settle(
            definition.attribution(),
            &stale,
            &self.opportunities,
            &self.carriers,
            &record,
            &label,
            threads,
        );
    }
}
