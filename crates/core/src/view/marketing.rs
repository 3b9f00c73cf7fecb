//! The marketing view: the nurture population, scores per person and account, first-touch
//! attribution of MQLs and pipeline, content and campaign performance, recycling and MQL
//! acceptance. Rules in `docs/views.md`.

use super::report::{AmountSum, Amounts, DealStatus, PersonRecord, ratio};
use super::{FunnelProjection, HashMap, HashSet};

use crate::funnel::Owner;
use crate::journey::{Place, owner_of};
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

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

fn age_bucket(millis: i64) -> &'static str {
    let days = millis / Timestamp::MILLIS_PER_DAY;
    match days {
        ..=7 => "0-7d",
        8..=30 => "8-30d",
        31..=90 => "31-90d",
        _ => "90d+",
    }
}

#[derive(Default)]
struct Touched {
    touches: u64,
    views: u64,
    /// Each person adds one, once per piece of content or campaign they touched.
    people: u64,
    accounts: u64,
    demo_after: u64,
    mqls_after: u64,
    opportunities: BTreeSet<Symbol>,
}

/// The (dimension, value) pairs a first touch credits: its source, channel and campaign
/// (`Symbol::NONE` for none, labelled `(none)`).
fn first_touch_symbols(first: Option<&crate::journey::Fact>) -> [(&'static str, Symbol); 3] {
    let attribute = |pick: fn(&crate::journey::Fact) -> Symbol| first.map_or(Symbol::NONE, pick);
    [
        ("source", attribute(|f| f.attributes.source)),
        ("channel", attribute(|f| f.attributes.channel)),
        ("campaign", attribute(|f| f.attributes.campaign)),
    ]
}

#[derive(Default)]
struct Credited {
    people: u64,
    mql_people: u64,
}

impl FunnelProjection {
    /// An account's segment (all `None` without an account or traits).
    fn segment(&self, account: Option<&str>) -> Segment {
        let Some(account) = account.and_then(|a| self.accounts.get(a)) else {
            return Segment::default();
        };
        Segment {
            industry: account.industry.get().cloned(),
            region: account.region.get().cloned(),
            employees: account.employees.get().copied(),
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
        let records = self.person_records();
        self.attribution_with(&records, &Self::opportunities(&records))
    }

    fn attribution_with(
        &self,
        records: &[PersonRecord<'_>],
        opportunities: &BTreeMap<Symbol, super::report::Opportunity>,
    ) -> Vec<AttributionRow> {
        let mql_stage = Place::Stage(self.definition.mql_stage());
        // Counted by symbol first, then by label: one label per value, not per person.
        let mut by_symbol: HashMap<(&'static str, Symbol), Credited> = HashMap::default();
        records.iter().for_each(|person| {
            let is_mql = person.journey.transitions.iter().any(|t| t.to == mql_stage);
            for key in first_touch_symbols(person.first_touch()) {
                let entry = by_symbol.entry(key).or_default();
                entry.people += 1;
                entry.mql_people += u64::from(is_mql);
            }
        });
        let mut credited: BTreeMap<(&'static str, String), Credited> = BTreeMap::new();
        for ((dimension, symbol), credit) in by_symbol {
            let entry = credited.entry((dimension, self.label(symbol))).or_default();
            entry.people += credit.people;
            entry.mql_people += credit.mql_people;
        }
        #[derive(Default)]
        struct Deals {
            count: u64,
            won: u64,
            pipeline: AmountSum,
            revenue: AmountSum,
        }
        let mut deals: BTreeMap<(&'static str, String), Deals> = BTreeMap::new();
        for opportunity in opportunities.values() {
            for (dimension, symbol) in first_touch_symbols(opportunity.first_touch.as_ref()) {
                let entry = deals.entry((dimension, self.label(symbol))).or_default();
                entry.count += 1;
                let won = opportunity.status == DealStatus::Won;
                entry.won += u64::from(won);
                if let Some((minor, currency)) = opportunity.value() {
                    let currency = self.label(currency);
                    entry.pipeline.add(&currency, minor);
                    if won {
                        entry.revenue.add(&currency, minor);
                    }
                }
            }
        }
        let mut rows = Vec::new();
        for ((dimension, value), credit) in credited {
            let deal = deals
                .remove(&(dimension, value.clone()))
                .unwrap_or_default();
            rows.push(AttributionRow {
                dimension,
                value,
                people: credit.people,
                mql_people: credit.mql_people,
                opportunities: deal.count,
                pipeline: deal.pipeline.into_amounts(),
                won: deal.won,
                revenue: deal.revenue.into_amounts(),
            });
        }
        rows
    }

    /// The marketing view of refreshed journeys.
    pub fn marketing_view(&self) -> MarketingView {
        let records = self.person_records();
        self.marketing_view_with(&records, &Self::opportunities(&records))
    }

    pub(crate) fn marketing_view_with(
        &self,
        records: &[PersonRecord<'_>],
        opportunities: &BTreeMap<Symbol, super::report::Opportunity>,
    ) -> MarketingView {
        let definition = &self.definition;
        let now = self.now();
        let mql_stage = Place::Stage(definition.mql_stage());
        // Opportunities by the person who carries them, oldest first.
        let mut opportunities_of: HashMap<&str, Vec<Symbol>> = HashMap::default();
        for opportunity in opportunities.values() {
            opportunities_of
                .entry(opportunity.person.as_str())
                .or_default()
                .push(opportunity.id);
        }

        // Keyed by place first and named at the end: a name per place, not per person.
        let mut nurture: HashMap<(Place, &'static str), u64> = HashMap::default();
        let mut people = Vec::with_capacity(records.len());
        let mut accounts: HashMap<&str, AccountScoreRow> = HashMap::default();
        let mut furthest: HashMap<&str, usize> = HashMap::default();
        let mut content: BTreeMap<Symbol, Touched> = BTreeMap::new();
        let mut campaigns: BTreeMap<Symbol, Touched> = BTreeMap::new();
        // (campaign?, content or campaign, account) already counted.
        let mut touched_accounts: HashSet<(bool, Symbol, &str)> = HashSet::default();
        let place_names: HashMap<Place, String> = self.place_names();
        let mut view = MarketingView {
            as_of: self.latest,
            nurture: Vec::new(),
            people: Vec::new(),
            accounts: Vec::new(),
            attribution: Vec::new(),
            content: Vec::new(),
            campaigns: Vec::new(),
            mqls: 0,
            mql_people: 0,
            re_mql_people: 0,
            recycled: 0,
            disqualified: 0,
            handoffs: 0,
            accepted: 0,
            rejected: 0,
            touches_before_demo_median: None,
            touches_before_demo_mean: None,
        };
        let mut touches_before_demo: Vec<u64> = Vec::new();

        records.iter().for_each(|person: &PersonRecord<'_>| {
            let journey = person.journey;
            let place = journey.current();
            // How many times the person became an MQL, and when last.
            let (mqls, last_mql) = journey
                .transitions
                .iter()
                .filter(|t| t.to == mql_stage)
                .fold((0u64, None), |(n, last), t| (n + 1, last.max(Some(t.at))));
            view.mqls += mqls;
            view.mql_people += u64::from(mqls > 0);
            view.re_mql_people += u64::from(mqls > 1);
            for transition in &journey.transitions {
                if let Place::Detour(index) = transition.to {
                    match definition.detours()[index].back_to {
                        Some(_) => view.recycled += 1,
                        None => view.disqualified += 1,
                    }
                }
            }
            view.handoffs += journey.follow_ups.len() as u64;
            view.accepted += person.part.accepted;
            view.rejected += person.part.rejected;

            let owner = owner_of(definition, place);
            if owner == Some(Owner::Marketing) {
                let since = journey.transitions.last().map_or(now, |t| t.at);
                let age = age_bucket(now.unix_millis() - since.unix_millis());
                *nurture.entry((place, age)).or_default() += 1;
            }
            let engagement = journey.engagement_at(definition, now);
            let segment = self.segment(person.account);
            people.push(PersonScoreRow {
                person: person.id.to_owned(),
                account: person.account.map(str::to_owned),
                segment: segment.clone(),
                place: place_names[&place].clone(),
                owner,
                engagement,
                fit: journey.fit,
                mqls,
            });
            // A lost outcome is not further along than the stage the deal was lost from.
            let reached = journey
                .transitions
                .iter()
                .filter_map(|t| match t.to {
                    Place::Stage(index)
                        if definition.stages()[index].outcome
                            != Some(crate::funnel::Outcome::Lost) =>
                    {
                        Some(index)
                    }
                    _ => None,
                })
                .max();
            if let Some(account) = person.account {
                // Looked up before inserting: most people share an account already seen.
                if !accounts.contains_key(account) {
                    accounts.insert(
                        account,
                        AccountScoreRow {
                            account: account.to_owned(),
                            segment,
                            people: 0,
                            engaged_people: 0,
                            mql_people: 0,
                            engagement_total: 0.0,
                            engagement_max: 0.0,
                            fit_max: f64::NEG_INFINITY,
                            furthest_stage: None,
                        },
                    );
                }
                let row = accounts
                    .get_mut(account)
                    .expect("invariant: inserted above");
                row.people += 1;
                row.engaged_people += u64::from(engagement > 0.0);
                row.mql_people += u64::from(mqls > 0);
                row.engagement_total += engagement;
                row.engagement_max = row.engagement_max.max(engagement);
                row.fit_max = row.fit_max.max(journey.fit);
                if let Some(reached) = reached {
                    let entry = furthest.entry(account).or_insert(reached);
                    *entry = (*entry).max(reached);
                }
            }

            // Content and campaign performance.
            let first_demo = person.part.first_demo.map(|(at, _)| at);
            if let Some((_, before)) = person.part.first_demo {
                touches_before_demo.push(before);
            }
            let mine = opportunities_of.get(person.id);
            for touched in &person.part.touched {
                let table = if touched.campaign {
                    &mut campaigns
                } else {
                    &mut content
                };
                let row = table.entry(touched.symbol).or_default();
                row.touches += touched.touches;
                row.views += touched.views;
                row.people += 1;
                if let Some(account) = person.account {
                    row.accounts += u64::from(touched_accounts.insert((
                        touched.campaign,
                        touched.symbol,
                        account,
                    )));
                }
                let touched_at = touched.first_at;
                row.demo_after += u64::from(first_demo.is_some_and(|demo| demo >= touched_at));
                row.mqls_after += u64::from(last_mql.is_some_and(|at| at >= touched_at));
                for id in mine.into_iter().flatten() {
                    if opportunities[id].created_at >= touched_at {
                        row.opportunities.insert(*id);
                    }
                }
            }
        });

        view.attribution = self.attribution_with(records, opportunities);
        let influenced = |touched: &Touched| {
            let (mut pipeline, mut revenue, mut won) =
                (AmountSum::default(), AmountSum::default(), 0);
            for id in &touched.opportunities {
                let opportunity = &opportunities[id];
                if let Some((minor, currency)) = opportunity.value() {
                    let currency = self.label(currency);
                    pipeline.add(&currency, minor);
                    if opportunity.status == DealStatus::Won {
                        revenue.add(&currency, minor);
                    }
                }
                won += u64::from(opportunity.status == DealStatus::Won);
            }
            (pipeline.into_amounts(), won, revenue.into_amounts())
        };
        for (symbol, touched) in &content {
            let (pipeline, _, _) = influenced(touched);
            view.content.push(ContentRow {
                content: self.label(*symbol),
                views: touched.views,
                touches: touched.touches,
                people: touched.people,
                accounts: touched.accounts,
                demo_requests_after: touched.demo_after,
                influenced_opportunities: touched.opportunities.len() as u64,
                influenced_pipeline: pipeline,
            });
        }
        for (symbol, touched) in &campaigns {
            let (pipeline, won, revenue) = influenced(touched);
            view.campaigns.push(CampaignRow {
                campaign: self.label(*symbol),
                touches: touched.touches,
                people: touched.people,
                accounts: touched.accounts,
                mqls_after: touched.mqls_after,
                influenced_opportunities: touched.opportunities.len() as u64,
                influenced_pipeline: pipeline,
                influenced_won: won,
                influenced_revenue: revenue,
            });
        }
        view.content
            .sort_by(|a, b| b.views.cmp(&a.views).then(a.content.cmp(&b.content)));
        view.campaigns
            .sort_by(|a, b| b.touches.cmp(&a.touches).then(a.campaign.cmp(&b.campaign)));
        let mut nurture: Vec<NurtureRow> = nurture
            .into_iter()
            .map(|((place, age), people)| NurtureRow {
                place: place_names[&place].clone(),
                age,
                people,
            })
            .collect();
        nurture.sort_by(|a, b| (&a.place, a.age).cmp(&(&b.place, b.age)));
        view.nurture = nurture;
        view.people = people;
        let mut accounts: Vec<AccountScoreRow> = accounts
            .into_iter()
            .map(|(account, mut row)| {
                row.furthest_stage = furthest
                    .get(account)
                    .map(|index| definition.stages()[*index].name.clone());
                row
            })
            .collect();
        accounts.sort_by(|a, b| a.account.cmp(&b.account));
        view.accounts = accounts;
        touches_before_demo.sort_unstable();
        if !touches_before_demo.is_empty() {
            let n = touches_before_demo.len();
            let median = if n % 2 == 1 {
                touches_before_demo[n / 2] as f64
            } else {
                (touches_before_demo[n / 2 - 1] + touches_before_demo[n / 2]) as f64 / 2.0
            };
            view.touches_before_demo_median = Some(median);
            view.touches_before_demo_mean =
                Some(touches_before_demo.iter().sum::<u64>() as f64 / n as f64);
        }
        view
    }
}
