//! Setting a candidate definition beside the live one, over the same log: stage counts and
//! conversion side by side, who becomes an MQL under one definition and not the other and how
//! those people actually ended (won, lost, open, revenue), and the follow-up load each puts on
//! sales. This is how a team judges whether a new definition's MQL predicts revenue better.

use crate::timestamp::Timestamp;
use crate::view::{FunnelProjection, FunnelSummary, PersonOutcome, StageSummary};
use std::collections::{BTreeMap, BTreeSet};

/// The ids listed per group in a comparison; the counts cover everyone.
pub const SAMPLE_PEOPLE: usize = 20;

/// A group of people and how their deals ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutcomeGroup {
    pub people: u64,
    pub won: u64,
    pub lost: u64,
    pub open: u64,
    /// Revenue of their won deals per currency, in minor units.
    pub revenue_minor_units: Vec<(String, i64)>,
    /// The distinct accounts of the group's people that became customers (a first close),
    /// those with recurring revenue now, and their ARR at the end of their first month and
    /// now, per currency, in minor units.
    pub customers: u64,
    pub retained: u64,
    pub starting_arr_minor_units: Vec<(String, i64)>,
    pub arr_minor_units: Vec<(String, i64)>,
    /// The group's people's latest NPS answers.
    pub nps_responses: u64,
    pub promoters: u64,
    pub detractors: u64,
    /// The first few ids, sorted.
    pub sample: Vec<String>,
}

impl OutcomeGroup {
    fn of<'a>(
        people: impl IntoIterator<Item = &'a String>,
        outcomes: &crate::view::Outcomes,
    ) -> OutcomeGroup {
        let mut group = OutcomeGroup::default();
        let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
        let mut customers: BTreeMap<String, crate::view::AccountRevenue> = BTreeMap::new();
        for id in people {
            group.people += 1;
            if group.sample.len() < SAMPLE_PEOPLE {
                group.sample.push(id.clone());
            }
            let outcome = outcomes.get(id).cloned().unwrap_or_default();
            if let Some(customer) = &outcome.customer {
                customers.insert(customer.account.clone(), customer.clone());
            }
            if let Some(score) = outcome.latest_nps {
                group.nps_responses += 1;
                group.promoters += u64::from(score >= 9);
                group.detractors += u64::from(score <= 6);
            }
            match outcome {
                PersonOutcome { won: true, .. } => group.won += 1,
                PersonOutcome { lost: true, .. } => group.lost += 1,
                _ => group.open += 1,
            }
            for money in outcome.revenue {
                let sum = revenue.entry(money.currency).or_default();
                *sum = sum.saturating_add(money.minor_units);
            }
        }
        group.revenue_minor_units = revenue.into_iter().collect();
        let mut starting: BTreeMap<String, i64> = BTreeMap::new();
        let mut now: BTreeMap<String, i64> = BTreeMap::new();
        for customer in customers.values() {
            group.customers += 1;
            group.retained += u64::from(customer.arr > 0);
            let sum = starting.entry(customer.currency.clone()).or_default();
            *sum = sum.saturating_add(customer.starting_arr);
            let sum = now.entry(customer.currency.clone()).or_default();
            *sum = sum.saturating_add(customer.arr);
        }
        group.starting_arr_minor_units = starting.into_iter().collect();
        group.arr_minor_units = now.into_iter().collect();
        group
    }

    /// Customers with recurring revenue now as a share of customers; `None` without any.
    pub fn logo_retention(&self) -> Option<f64> {
        (self.customers > 0).then(|| self.retained as f64 / self.customers as f64)
    }

    /// ARR now ÷ ARR at the end of the first month, when all of it is in one currency and
    /// the start is not zero.
    pub fn net_retention(&self) -> Option<f64> {
        match (
            self.starting_arr_minor_units.as_slice(),
            self.arr_minor_units.as_slice(),
        ) {
            ([(a, start)], [(b, now)]) if a == b && *start != 0 => {
                Some(*now as f64 / *start as f64)
            }
            _ => None,
        }
    }

    /// (promoters − detractors) ÷ answers × 100 over the latest answers; `None` without any.
    pub fn nps(&self) -> Option<f64> {
        (self.nps_responses > 0).then(|| {
            (self.promoters as f64 - self.detractors as f64) / self.nps_responses as f64 * 100.0
        })
    }

    /// Won people as a share of the group's people (not of its closed deals, which is
    /// `sales_totals.win_rate`); `None` for an empty group.
    pub fn won_share(&self) -> Option<f64> {
        (self.people > 0).then(|| self.won as f64 / self.people as f64)
    }
}

/// The follow-up load a definition puts on sales: follow-up clocks started (hand-offs to
/// sales, each an MQL to work) per ISO week.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlaLoad {
    pub mqls: u64,
    /// Weeks from the first MQL's week to the last one's, inclusive.
    pub weeks: u64,
    pub mean_per_week: Option<f64>,
    /// The busiest week (its Monday) and its MQLs.
    pub peak_week: Option<(Timestamp, u64)>,
}

impl SlaLoad {
    fn of(times: impl IntoIterator<Item = Timestamp>) -> SlaLoad {
        let week = 7 * Timestamp::MILLIS_PER_DAY;
        // 1970-01-01 was a Thursday: shift so weeks start on Mondays.
        let monday_offset = 3 * Timestamp::MILLIS_PER_DAY;
        let mut per_week: BTreeMap<i64, u64> = BTreeMap::new();
        for time in times {
            let index = (time.unix_millis() + monday_offset).div_euclid(week);
            *per_week.entry(index).or_default() += 1;
        }
        let mqls: u64 = per_week.values().sum();
        let (Some(first), Some(last)) = (per_week.keys().next(), per_week.keys().next_back())
        else {
            return SlaLoad::default();
        };
        let weeks = (last - first + 1) as u64;
        let peak = per_week
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(index, count)| {
                (
                    Timestamp::from_unix_millis(index * week - monday_offset),
                    *count,
                )
            });
        SlaLoad {
            mqls,
            weeks,
            mean_per_week: Some(mqls as f64 / weeks as f64),
            peak_week: peak,
        }
    }
}

/// A candidate view beside the live one.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub live: FunnelSummary,
    pub candidate: FunnelSummary,
    /// People who are MQLs under both definitions: their journey entered the MQL stage by
    /// its rule (not passed over it on the way to a sales stage).
    pub mql_both: OutcomeGroup,
    /// MQLs under the live definition only.
    pub mql_only_live: OutcomeGroup,
    /// MQLs under the candidate only.
    pub mql_only_candidate: OutcomeGroup,
    pub live_load: SlaLoad,
    pub candidate_load: SlaLoad,
    /// Credited revenue and pipeline by channel under each attribution model, models and
    /// channels matched by name (`docs/views.md`, *Attribution*).
    pub attribution: Vec<ChannelCredit>,
}

/// One model's credit to one channel in one currency, on each side; `None` on a side
/// without the model, zero on a side with the model and no credit for the channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelCredit {
    pub model: String,
    pub channel: String,
    pub currency: Option<String>,
    /// (credited revenue, credited pipeline) in minor units.
    pub live: Option<(i64, i64)>,
    pub candidate: Option<(i64, i64)>,
}

/// Both sides' credit by channel, per model, in the live definition's model order (then the
/// candidate's own models), then channel and currency.
fn channel_credits(live: &FunnelProjection, candidate: &FunnelProjection) -> Vec<ChannelCredit> {
    type Side = BTreeMap<(String, String, Option<String>), (i64, i64)>;
    let side = |projection: &FunnelProjection| -> (Vec<String>, Side) {
        let view = projection.attribution_view();
        let models = projection
            .definition()
            .attribution()
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let credits = view
            .credit
            .into_iter()
            .filter(|row| row.dimension == "channel")
            .map(|row| {
                (
                    (row.model, row.value, row.currency),
                    (row.credited_revenue_minor, row.credited_pipeline_minor),
                )
            })
            .collect();
        (models, credits)
    };
    let (live_models, live_credits) = side(live);
    let (candidate_models, candidate_credits) = side(candidate);
    let mut models = live_models.clone();
    models.extend(
        candidate_models
            .iter()
            .filter(|m| !live_models.contains(m))
            .cloned(),
    );
    let keys: BTreeSet<&(String, String, Option<String>)> = live_credits
        .keys()
        .chain(candidate_credits.keys())
        .collect();
    let mut rows: Vec<ChannelCredit> = keys
        .into_iter()
        .map(|key| {
            let of = |models: &[String], credits: &Side| {
                models
                    .contains(&key.0)
                    .then(|| credits.get(key).copied().unwrap_or((0, 0)))
            };
            ChannelCredit {
                model: key.0.clone(),
                channel: key.1.clone(),
                currency: key.2.clone(),
                live: of(&live_models, &live_credits),
                candidate: of(&candidate_models, &candidate_credits),
            }
        })
        .collect();
    rows.sort_by_key(|row| {
        (
            models.iter().position(|m| *m == row.model),
            row.channel.clone(),
            row.currency.clone(),
        )
    });
    rows
}

/// A stage of either definition, set beside the stage of the same name in the other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StagePair<'a> {
    pub name: &'a str,
    /// `None`: the live definition has no stage of this name.
    pub live: Option<&'a StageSummary>,
    /// `None`: the candidate has no stage of this name.
    pub candidate: Option<&'a StageSummary>,
}

impl Comparison {
    /// Both definitions' stages, matched by name (never by position, which would set a
    /// candidate's `visitor` beside the live `inquiry`). In the live definition's order; a
    /// stage only the candidate has comes right after the candidate's stage before it.
    pub fn stage_pairs(&self) -> Vec<StagePair<'_>> {
        let mut names: Vec<&str> = self.live.stages.iter().map(|s| s.name.as_str()).collect();
        let mut after: Option<usize> = None;
        for stage in &self.candidate.stages {
            match names.iter().position(|name| *name == stage.name) {
                Some(at) => after = Some(at),
                None => {
                    let at = after.map_or(0, |at| at + 1);
                    names.insert(at, &stage.name);
                    after = Some(at);
                }
            }
        }
        let find = |stages: &'_ [StageSummary], name: &str| -> Option<usize> {
            stages.iter().position(|s| s.name == name)
        };
        names
            .into_iter()
            .map(|name| StagePair {
                name,
                live: find(&self.live.stages, name).map(|at| &self.live.stages[at]),
                candidate: find(&self.candidate.stages, name).map(|at| &self.candidate.stages[at]),
            })
            .collect()
    }
}

/// Compares two refreshed projections of the same log at the same position. Outcomes are
/// read from the live one (they are facts, the same under any definition).
pub fn compare(live: &FunnelProjection, candidate: &FunnelProjection) -> Comparison {
    compare_with(live, candidate, &live.outcomes())
}

/// [`compare`] with the outcomes taken from elsewhere: for a candidate bounded before the
/// head, both definitions are compared on the log up to the bound, and how their MQLs ended
/// is read from the whole log (`outcomes` of a projection at the head), since what happened
/// to a person after the bound is what tells whether flagging them was right.
pub fn compare_with(
    live: &FunnelProjection,
    candidate: &FunnelProjection,
    outcomes: &crate::Outcomes,
) -> Comparison {
    let live_mqls: BTreeMap<String, Vec<Timestamp>> = live
        .mqls()
        .map(|(id, times)| (id.to_owned(), times))
        .collect();
    let candidate_mqls: BTreeMap<String, Vec<Timestamp>> = candidate
        .mqls()
        .map(|(id, times)| (id.to_owned(), times))
        .collect();
    let live_people: BTreeSet<&String> = live_mqls.keys().collect();
    let candidate_people: BTreeSet<&String> = candidate_mqls.keys().collect();
    Comparison {
        live: live.summary(),
        candidate: candidate.summary(),
        mql_both: OutcomeGroup::of(
            live_people.intersection(&candidate_people).copied(),
            outcomes,
        ),
        mql_only_live: OutcomeGroup::of(
            live_people.difference(&candidate_people).copied(),
            outcomes,
        ),
        mql_only_candidate: OutcomeGroup::of(
            candidate_people.difference(&live_people).copied(),
            outcomes,
        ),
        live_load: SlaLoad::of(live.follow_up_starts()),
        candidate_load: SlaLoad::of(candidate.follow_up_starts()),
        attribution: channel_credits(live, candidate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::funnel::{DEFAULT_FUNNEL_TOML, FunnelDefinition};

    fn projection(text: &str) -> FunnelProjection {
        let definition = FunnelDefinition::parse("test.toml", text).expect("a definition");
        let mut projection = FunnelProjection::new(definition);
        projection.refresh();
        projection
    }

    /// A candidate with a stage before the first (`visitor`), one before `won`
    /// (`negotiation`), without `sal` and without customer stages: every row is its own stage on both sides, and the
    /// stages of one definition only are shown as such.
    #[test]
    fn stages_are_set_side_by_side_by_name() {
        let candidate = include_str!("../tests/fixtures/more_stages.toml");
        assert_ne!(candidate, DEFAULT_FUNNEL_TOML);
        let comparison = compare(&projection(DEFAULT_FUNNEL_TOML), &projection(candidate));
        let pairs = comparison.stage_pairs();
        let rows: Vec<(&str, bool, bool)> = pairs
            .iter()
            .map(|pair| (pair.name, pair.live.is_some(), pair.candidate.is_some()))
            .collect();
        assert_eq!(
            rows,
            [
                ("visitor", false, true),
                ("inquiry", true, true),
                ("engaged", true, true),
                ("mql", true, true),
                ("sal", true, false),
                ("sql", true, true),
                ("opportunity", true, true),
                ("proposal", true, true),
                ("negotiation", false, true),
                ("won", true, true),
                ("lost", true, true),
                // The default's customer stages; the candidate stops at the sale.
                ("onboarding", true, false),
                ("adopted", true, false),
                ("renewed", true, false),
                ("expanded", true, false),
                ("advocate", true, false),
                ("churned", true, false),
            ]
        );
        for pair in &pairs {
            for stage in [pair.live, pair.candidate].into_iter().flatten() {
                assert_eq!(stage.name, pair.name);
            }
        }
    }
}
