//! The customer view: the half of the journey after the sale. So far, Net Promoter Score.
//!
//! Its own part of each person (read from their facts when their journey is folded), its own
//! totals (kept up to date by every refresh, as the other views' are) and its own rows.
//!
//! NPS (`docs/views.md`, *Customer*): an `nps_responded` answer of 9 or 10 is a promoter's, 7 or
//! 8 a passive's, 0 to 6 a detractor's; the score is (promoters − detractors) ÷ answers × 100.
//! Counted over every answer (`all`) and over each person's latest answer only (`latest`), for
//! the whole view, by account, by the account's segment and by the answer's UTC month.
//!
//! Advocacy: per act (reference call, case study, review, referral), the `advocated` facts that
//! count and the people who made them.

use std::collections::BTreeMap;

use super::FunnelProjection;
use super::marketing::Segment;
use super::report::PersonRecord;
use crate::event::{AdvocacyAct, Kind};
use crate::journey::Fact;
use crate::timestamp::Timestamp;

/// The score an answer's `detail` holds (interned as text: a correction's replacement is laid
/// over it like any other field).
pub(crate) const SCORES: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];

/// What the customer view reads of one person's facts, when their journey is folded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CustomerPart {
    /// Their NPS answers, in (business time, event id) order: time and score.
    answers: Vec<(Timestamp, u8)>,
    /// Their account's segment when the journey was folded (what the totals count them
    /// under until the next fold).
    segment: Segment,
    /// Their `advocated` facts, by act (in `AdvocacyAct::ALL` order).
    acts: [u32; 4],
}

impl CustomerPart {
    /// The score of their latest answer.
    pub(crate) fn latest_score(&self) -> Option<u8> {
        self.answers.last().map(|(_, score)| *score)
    }

    /// Their advocacy acts, by act.
    pub(crate) fn acts(&self) -> [u32; 4] {
        self.acts
    }

    /// Whether the customer part reads facts of this kind.
    pub(crate) fn reads(kind: Kind) -> bool {
        matches!(kind, Kind::NpsResponded | Kind::Advocated)
    }

    /// The part of a person with these facts (stitched, governed, in order); `score_of`
    /// reads an answer's score as the views read it (a correction applied).
    pub(crate) fn of(
        facts: &[Fact],
        score_of: impl Fn(&Fact) -> Option<u8>,
        act_of: impl Fn(&Fact) -> Option<AdvocacyAct>,
        segment: Segment,
    ) -> CustomerPart {
        let answers = facts
            .iter()
            .filter(|fact| fact.kind == Kind::NpsResponded)
            .filter_map(|fact| Some((fact.at, score_of(fact)?)))
            .collect();
        let mut acts = [0u32; 4];
        for act in facts
            .iter()
            .filter(|fact| fact.kind == Kind::Advocated)
            .filter_map(act_of)
        {
            if let Some(index) = AdvocacyAct::ALL.iter().position(|known| *known == act) {
                acts[index] = acts[index].saturating_add(1);
            }
        }
        CustomerPart {
            answers,
            segment,
            acts,
        }
    }
}

/// Which answers a row counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Basis {
    /// Every answer.
    All,
    /// Each person's latest answer.
    Latest,
}

impl Basis {
    const fn as_str(self) -> &'static str {
        match self {
            Basis::All => "all",
            Basis::Latest => "latest",
        }
    }
}

/// Promoters, passives and detractors.
type Counts = [i64; 3];

/// The customer view's totals over every folded person.
#[derive(Clone, Debug, Default)]
pub(crate) struct CustomerTotals {
    nps: BTreeMap<(Basis, &'static str, String), Counts>,
    /// Per act: facts, and people with at least one.
    acts: [(i64, i64); 4],
}

impl CustomerTotals {
    /// Adds (`sign` 1) or takes back (-1) a person's contribution.
    pub(crate) fn person(&mut self, person: &PersonRecord<'_>, sign: i64) {
        let part = &person.part.customer;
        for (totals, made) in self.acts.iter_mut().zip(part.acts) {
            totals.0 += sign * i64::from(made);
            totals.1 += sign * i64::from(made > 0);
        }
        let latest = part.answers.last().copied();
        let answers = part.answers.iter().map(|answer| (Basis::All, *answer));
        for (basis, (at, score)) in answers.chain(latest.map(|answer| (Basis::Latest, answer))) {
            let class = match score {
                9..=10 => 0,
                7..=8 => 1,
                _ => 2,
            };
            let segment = &part.segment;
            let keys: [(&'static str, Option<String>); 6] = [
                ("all", Some("all".to_owned())),
                ("account", person.account.map(str::to_owned)),
                ("industry", segment.industry.clone()),
                ("region", segment.region.clone()),
                ("size", segment.size().map(str::to_owned)),
                ("month", Some(super::totals::month(at))),
            ];
            for (dimension, value) in keys {
                let Some(value) = value else { continue };
                let key = (basis, dimension, value);
                let counts = self.nps.entry(key.clone()).or_default();
                counts[class] += sign;
                if counts.iter().all(|n| *n == 0) {
                    self.nps.remove(&key);
                }
            }
        }
    }
}

/// One row of the `nps` table.
#[derive(Clone, Debug, PartialEq)]
pub struct NpsRow {
    /// `all` (every answer) or `latest` (each person's latest answer).
    pub basis: &'static str,
    /// `all`, `account`, `industry`, `region`, `size` or `month` (of the answer, UTC).
    pub dimension: &'static str,
    pub value: String,
    pub responses: u64,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    /// (promoters − detractors) ÷ responses × 100.
    pub nps: f64,
}

/// One row of the `advocacy` table.
#[derive(Clone, Debug, PartialEq)]
pub struct AdvocacyRow {
    /// `reference_call`, `case_study`, `review` or `referral`.
    pub act: &'static str,
    /// `advocated` facts of this act that count.
    pub acts: u64,
    /// People with at least one.
    pub people: u64,
}

/// The customer view.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerView {
    pub as_of: Option<Timestamp>,
    pub nps: Vec<NpsRow>,
    pub advocacy: Vec<AdvocacyRow>,
}

impl FunnelProjection {
    /// The customer view of refreshed journeys.
    pub fn customer_view(&self) -> CustomerView {
        self.with_totals(|totals| {
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            let nps = totals
                .customer
                .nps
                .iter()
                .map(|((basis, dimension, value), counts)| {
                    let [promoters, passives, detractors] = counts.map(count);
                    let responses = promoters + passives + detractors;
                    NpsRow {
                        basis: basis.as_str(),
                        dimension,
                        value: value.clone(),
                        responses,
                        promoters,
                        passives,
                        detractors,
                        nps: (promoters as f64 - detractors as f64) / responses.max(1) as f64
                            * 100.0,
                    }
                })
                .collect();
            let advocacy = AdvocacyAct::ALL
                .iter()
                .zip(totals.customer.acts)
                .map(|(act, (acts, people))| AdvocacyRow {
                    act: act.as_str(),
                    acts: count(acts),
                    people: count(people),
                })
                .collect();
            CustomerView {
                as_of: self.latest,
                nps,
                advocacy,
            }
        })
    }
}
