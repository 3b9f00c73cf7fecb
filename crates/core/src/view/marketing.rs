//! The marketing view: the nurture population, scores per person and account, first-touch
//! attribution of MQLs and pipeline, content and campaign performance, recycling and MQL
//! acceptance. Rules in `docs/views.md`.

use super::report::{Amounts, PersonRecord, ratio};
use super::rows::PersonRow;
use super::totals::{Nurture, Sums, Totals, clamp, count};
use super::{FunnelProjection, HashMap};

use crate::funnel::Owner;
use crate::journey::{Place, owner_of};
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

/// People in a marketing-owned place, by place and by how long they have been there.
#[derive(Clone, Debug, PartialEq)]
pub struct NurtureRow {
    pub place: String,
    /// `0-7d`, `8-30d`, `31-90d` or `90d+`, counted from the move into the place.
    pub age: &'static str,
    pub people: u64,
}

/// An account's segment: its latest traits by business time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segment {
    pub industry: Option<String>,
    pub region: Option<String>,
    pub employees: Option<u32>,
}

impl Segment {
    /// The size band of `employees`: `1-49`, `50-199`, `200-999`, `1000-9999` or `10000+`.
    pub fn size(&self) -> Option<&'static str> {
        self.employees.map(|employees| match employees {
            0..=49 => "1-49",
            50..=199 => "50-199",
            200..=999 => "200-999",
            1_000..=9_999 => "1000-9999",
            _ => "10000+",
        })
    }
}

/// A person's scores now.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonScoreRow {
    pub person: String,
    pub account: Option<String>,
    pub segment: Segment,
    pub place: String,
    pub owner: Option<Owner>,
    /// Engagement decayed to the view's `as_of`.
    pub engagement: f64,
    pub fit: f64,
    /// Times the journey entered the MQL stage.
    pub mqls: u64,
}

/// An account's people rolled up: each person counted once, wherever their facts came from.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountScoreRow {
    pub account: String,
    pub segment: Segment,
    pub people: u64,
    pub engaged_people: u64,
    pub mql_people: u64,
    pub engagement_total: f64,
    pub engagement_max: f64,
    pub fit_max: f64,
    /// The furthest stage anyone of the account reached (a lost outcome does not count as
    /// further along).
    pub furthest_stage: Option<String>,
}

/// First-touch attribution: people credited to the source, channel or campaign of their
/// earliest touch, and what became of them.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributionRow {
    /// `source` (the source system), `channel` or `campaign`.
    pub dimension: &'static str,
    pub value: String,
    pub people: u64,
    /// People who entered the MQL stage at least once.
    pub mql_people: u64,
    pub opportunities: u64,
    /// Latest amounts of those opportunities, open, won or lost.
    pub pipeline: Amounts,
    pub won: u64,
    pub revenue: Amounts,
}

/// How one piece of content performs.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentRow {
    pub content: String,
    pub views: u64,
    /// Touches of any kind that name the content.
    pub touches: u64,
    pub people: u64,
    pub accounts: u64,
    /// People who requested a demo after touching it.
    pub demo_requests_after: u64,
    /// Opportunities created after one of their people touched it, and their latest amounts.
    pub influenced_opportunities: u64,
    pub influenced_pipeline: Amounts,
}

/// How one campaign performs.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignRow {
    pub campaign: String,
    pub touches: u64,
    pub people: u64,
    pub accounts: u64,
    /// People who entered the MQL stage after touching it.
    pub mqls_after: u64,
    pub influenced_opportunities: u64,
    pub influenced_pipeline: Amounts,
    /// Won deals among the influenced opportunities, and their amounts.
    pub influenced_won: u64,
    pub influenced_revenue: Amounts,
}

/// The marketing view.
#[derive(Clone, Debug, PartialEq)]
pub struct MarketingView {
    pub as_of: Option<Timestamp>,
    pub nurture: Vec<NurtureRow>,
    pub people: Vec<PersonScoreRow>,
    pub accounts: Vec<AccountScoreRow>,
    pub attribution: Vec<AttributionRow>,
    pub content: Vec<ContentRow>,
    pub campaigns: Vec<CampaignRow>,
    /// Entries into the MQL stage, and the people behind them.
    pub mqls: u64,
    pub mql_people: u64,
    /// People who entered the MQL stage more than once.
    pub re_mql_people: u64,
    /// Moves into a detour that returns to nurture (recycled), and into one that ends the
    /// journey (disqualified).
    pub recycled: u64,
    pub disqualified: u64,
    /// Follow-up clocks (hand-offs to sales), and those sales accepted or rejected before the
    /// next clock started.
    pub handoffs: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Median and mean number of touches before a person's first demo request.
    pub touches_before_demo_median: Option<f64>,
    pub touches_before_demo_mean: Option<f64>,
}

impl MarketingView {
    /// `accepted / handoffs`.
    pub fn acceptance_rate(&self) -> Option<f64> {
        ratio(self.accepted, self.handoffs)
    }
}

/// The nurture population of one place by age: `0-7d`, `8-30d`, `31-90d`, `90d+` counted
/// in whole days from the move into the place to `now` (someone who never moved counts as
/// arriving `now`).
fn nurture_ages(nurture: &Nurture, now: Timestamp) -> [(&'static str, u64); 4] {
    let day = Timestamp::MILLIS_PER_DAY;
    let now = now.unix_millis();
    // Whole days since the move are at most `d` when the move is after `now − (d + 1) days`.
    let within = |days: i64| nurture.since.count_from(now - (days + 1) * day + 1);
    let (week, month, quarter) = (within(7), within(30), within(90));
    [
        ("0-7d", week + count(nurture.unmoved)),
        ("8-30d", month - week),
        ("31-90d", quarter - month),
        ("90d+", nurture.since.len() - quarter),
    ]
}

/// Amounts per currency symbol, shown per currency by name.
pub(crate) fn amounts(projection: &FunnelProjection, sums: &Sums) -> Amounts {
    let mut named: BTreeMap<String, i128> = BTreeMap::new();
    for (currency, sum) in sums.iter() {
        *named.entry(projection.label(currency)).or_default() += sum;
    }
    named
        .into_iter()
        .map(|(currency, sum)| (currency, clamp(sum)))
        .collect()
}

impl FunnelProjection {
    /// An account's segment (all `None` without an account or traits).
    pub(crate) fn segment(&self, account: Option<&str>) -> Segment {
        let Some(account) = account.and_then(|a| self.accounts.get(a)) else {
            return Segment::default();
        };
        Segment {
            industry: account.industry.current(&self.retracted).cloned(),
            region: account.region.current(&self.retracted).cloned(),
            employees: account.employees.current(&self.retracted).copied(),
        }
    }

    /// The name of every place under this projection's definition.
    fn place_names(&self) -> HashMap<Place, String> {
        let stages = (0..self.definition.stages().len()).map(Place::Stage);
        let detours = (0..self.definition.detours().len()).map(Place::Detour);
        std::iter::once(Place::Outside)
            .chain(stages)
            .chain(detours)
            .map(|place| (place, self.place_name(place)))
            .collect()
    }

    /// The name of a place under this projection's definition.
    pub fn place_name(&self, place: Place) -> String {
        match place {
            Place::Outside => "outside".to_owned(),
            Place::Stage(index) => self.definition.stages()[index].name.clone(),
            Place::Detour(index) => self.definition.detours()[index].name.clone(),
        }
    }

    /// First-touch attribution of people, MQLs, pipeline and revenue by source, channel and
    /// campaign.
    pub fn attribution(&self) -> Vec<AttributionRow> {
        self.with_totals(|totals| self.attribution_with(totals))
    }

    fn attribution_with(&self, totals: &Totals) -> Vec<AttributionRow> {
        // Totals are by symbol; rows are by label (one label per value).
        let mut credited: BTreeMap<(&'static str, String), (u64, u64)> = BTreeMap::new();
        for ((dimension, symbol), credit) in &totals.credited {
            let entry = credited
                .entry((dimension, self.label(*symbol)))
                .or_default();
            entry.0 += count(credit.people);
            entry.1 += count(credit.mql_people);
        }
        let mut deals: BTreeMap<(&'static str, String), (u64, u64, Sums, Sums)> = BTreeMap::new();
        for ((dimension, symbol), deal) in &totals.first_touch_deals {
            let entry = deals.entry((dimension, self.label(*symbol))).or_default();
            entry.0 += count(deal.count);
            entry.1 += count(deal.won);
            entry.2.add_all(&deal.pipeline);
            entry.3.add_all(&deal.revenue);
        }
        credited
            .into_iter()
            .map(|((dimension, value), (people, mql_people))| {
                let (count, won, pipeline, revenue) = deals
                    .remove(&(dimension, value.clone()))
                    .unwrap_or_default();
                AttributionRow {
                    dimension,
                    value,
                    people,
                    mql_people,
                    opportunities: count,
                    pipeline: amounts(self, &pipeline),
                    won,
                    revenue: amounts(self, &revenue),
                }
            })
            .collect()
    }

    /// The marketing view of refreshed journeys.
    pub fn marketing_view(&self) -> MarketingView {
        let mut view = self.with_totals(|totals| self.marketing_view_with(totals));
        let rows = self.person_rows();
        view.people = rows.score_rows();
        view.accounts = rows.account_rows();
        view
    }

    /// A person's row-level data, from their journey and part as just folded.
    pub(crate) fn person_row(&self, person: &PersonRecord<'_>) -> PersonRow {
        let definition = &self.definition;
        let journey = person.journey;
        let place = journey.current();
        let mql_stage = Place::Stage(definition.mql_stage());
        // A lost outcome is not further along than the stage the deal was lost from.
        let furthest = journey
            .transitions
            .iter()
            .filter_map(|t| match t.entered_stage() {
                Some(index)
                    if !definition.stages()[index]
                        .outcome
                        .is_some_and(crate::funnel::Outcome::is_loss) =>
                {
                    Some(index)
                }
                _ => None,
            })
            .max();
        PersonRow {
            person: person.id.to_owned(),
            account: person.account.map(str::to_owned),
            segment: self.segment(person.account),
            place: self.place_name(place),
            owner: owner_of(definition, place),
            engagement: journey.engagement,
            engagement_at: journey.engagement_at,
            fit: journey.fit,
            mqls: journey
                .transitions
                .iter()
                .filter(|t| t.to == mql_stage && !t.is_return())
                .count() as u64,
            furthest,
            handoffs: super::shared::handoff_rows_of(person),
            deals: person.part.opportunities(),
            latest_nps: person.part.customer.latest_score(),
            acts: person.part.customer.acts(),
            attribution: person.part.attribution.clone(),
        }
    }

    /// The marketing view without its row-level parts (`people`, `accounts`), which
    /// [`FunnelProjection::person_rows`] gives.
    pub(crate) fn marketing_view_with(&self, totals: &Totals) -> MarketingView {
        let now = self.now();
        let place_names: HashMap<Place, String> = self.place_names();
        let mut view = MarketingView {
            as_of: self.latest,
            nurture: Vec::new(),
            people: Vec::new(),
            accounts: Vec::new(),
            attribution: self.attribution_with(totals),
            content: Vec::new(),
            campaigns: Vec::new(),
            mqls: count(totals.mqls),
            mql_people: count(totals.mql_people),
            re_mql_people: count(totals.re_mql_people),
            recycled: count(totals.recycled),
            disqualified: count(totals.disqualified),
            handoffs: count(totals.handoffs),
            accepted: count(totals.accepted),
            rejected: count(totals.rejected),
            touches_before_demo_median: None,
            touches_before_demo_mean: None,
        };

        // Content and campaign performance.
        let influenced = |key: (bool, Symbol)| {
            totals
                .influenced
                .get(&key)
                .map_or((0, Vec::new(), 0, Vec::new()), |deals| {
                    (
                        count(deals.count),
                        amounts(self, &deals.pipeline),
                        count(deals.won),
                        amounts(self, &deals.revenue),
                    )
                })
        };
        for (&(campaign, symbol), touched) in &totals.touched {
            let (opportunities, pipeline, won, revenue) = influenced((campaign, symbol));
            if campaign {
                view.campaigns.push(CampaignRow {
                    campaign: self.label(symbol),
                    touches: count(touched.touches),
                    people: count(touched.people),
                    accounts: count(touched.accounts),
                    mqls_after: count(touched.mqls_after),
                    influenced_opportunities: opportunities,
                    influenced_pipeline: pipeline,
                    influenced_won: won,
                    influenced_revenue: revenue,
                });
            } else {
                view.content.push(ContentRow {
                    content: self.label(symbol),
                    views: count(touched.views),
                    touches: count(touched.touches),
                    people: count(touched.people),
                    accounts: count(touched.accounts),
                    demo_requests_after: count(touched.demo_after),
                    influenced_opportunities: opportunities,
                    influenced_pipeline: pipeline,
                });
            }
        }
        view.content
            .sort_by(|a, b| b.views.cmp(&a.views).then(a.content.cmp(&b.content)));
        view.campaigns
            .sort_by(|a, b| b.touches.cmp(&a.touches).then(a.campaign.cmp(&b.campaign)));
        let mut nurture: Vec<NurtureRow> = totals
            .nurture
            .iter()
            .flat_map(|(place, nurture)| {
                nurture_ages(nurture, now)
                    .into_iter()
                    .filter(|(_, people)| *people > 0)
                    .map(|(age, people)| NurtureRow {
                        place: place_names[place].clone(),
                        age,
                        people,
                    })
            })
            .collect();
        nurture.sort_by(|a, b| (&a.place, a.age).cmp(&(&b.place, b.age)));
        view.nurture = nurture;
        let demos = &totals.touches_before_demo;
        if let Some((low, high)) = demos.middle() {
            view.touches_before_demo_median = Some(if demos.len() % 2 == 1 {
                low as f64
            } else {
                (low + high) as f64 / 2.0
            });
            view.touches_before_demo_mean =
                Some(totals.touches_before_demo_sum as f64 / demos.len() as f64);
        }
        view
    }
}
