//! The customer view's account-level tables: customers and their recurring revenue, retention
//! by cohort of first close, the movements of revenue with their reasons, how concentrated
//! revenue and usage are, loyalty traced back to how each customer was acquired, referrals
//! and advocates. The rules are in `docs/views.md` (*Customer*).
//!
//! Built from a snapshot's rows ([`PersonRows`]) when first read: each account's ledger part
//! (`view/ledger.rs`), the opportunities (how the account was won) and the people (their NPS
//! and advocacy). Everything here depends on "now" (a month's end, an account's current
//! revenue), and a build reads each account's part once.

use super::ledger::{LedgerPart, Movement};
use super::report::{Amounts, DealStatus};
use super::rows::PersonRows;
use super::sales::OpportunityRow;
use crate::event::AdvocacyAct;
use crate::journey::Direction;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, HashMap};

/// One customer account.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerAccountRow {
    pub account: String,
    pub industry: Option<String>,
    pub region: Option<String>,
    pub size: Option<&'static str>,
    /// `active` (recurring revenue now), `churned` (had some, has none now), `prospect` (a
    /// usage summary or a referral, never revenue).
    pub status: &'static str,
    /// When its first subscription started (its first close), and that month.
    pub first_close: Option<Timestamp>,
    pub cohort: Option<String>,
    /// The currency of its first subscription: what its revenue is counted in.
    pub currency: Option<String>,
    /// Its ARR at the end of its first month, and now (minor units).
    pub starting_arr: Option<i64>,
    pub arr: i64,
    pub subscriptions: u32,
    pub expansions: u32,
    pub contractions: u32,
    /// The reason of its latest churn, while churned.
    pub churn_reason: Option<String>,
    /// Its latest usage summary: active users, over how many days.
    pub active_users: Option<u32>,
    pub usage_period_days: Option<u32>,
    /// Its place among active accounts of its currency by ARR, and among accounts with a
    /// usage summary by active users (1 is the largest; ties by account id).
    pub revenue_rank: Option<u64>,
    pub usage_rank: Option<u64>,
    /// Its people's latest answers.
    pub nps_responses: u64,
    pub nps: Option<f64>,
    /// Whose referral brought it.
    pub referred_by: Option<String>,
    /// How it was acquired: its earliest won opportunity and what that says.
    pub acquired_by: Option<String>,
    pub first_touch_channel: Option<String>,
    pub first_touch_campaign: Option<String>,
    pub sales_owner: Option<String>,
    pub cycle_days: Option<f64>,
    /// 1 − won amount ÷ the latest proposal's amount, same currency.
    pub discount: Option<f64>,
    /// Hand-backs to marketing of the opportunity's person before the close.
    pub handbacks: Option<u64>,
}

/// One cohort of first close, some months on, in one currency.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionRow {
    pub cohort: String,
    pub months_since: u32,
    /// The month whose end it is measured at (`as_of` for the current month).
    pub month: String,
    pub currency: String,
    pub accounts: u64,
    pub retained: u64,
    pub starting_arr: i64,
    pub arr: i64,
    pub expansion: i64,
    pub contraction: i64,
    pub churned_arr: i64,
}

/// Revenue movements of one kind, reason and currency in one month.
#[derive(Clone, Debug, PartialEq)]
pub struct MovementRow {
    pub month: String,
    pub movement: &'static str,
    pub reason: Option<String>,
    pub currency: String,
    pub events: u64,
    pub accounts: u64,
    /// Σ (ARR after − ARR before).
    pub arr_change: i64,
}

/// One tenth of the accounts ranked by revenue (per currency) or by usage.
#[derive(Clone, Debug, PartialEq)]
pub struct ConcentrationRow {
    pub ranking: &'static str,
    pub currency: Option<String>,
    pub decile: u32,
    pub accounts: u64,
    pub value: i64,
    pub share: f64,
    pub cumulative_share: f64,
}

/// Customers acquired one way, and how they stayed and grew.
#[derive(Clone, Debug, PartialEq)]
pub struct LoyaltyRow {
    pub dimension: &'static str,
    pub value: String,
    pub currency: String,
    pub accounts: u64,
    pub active: u64,
    pub churned: u64,
    pub starting_arr: i64,
    pub arr: i64,
    /// Σ min(ARR, starting ARR), for gross retention.
    pub kept_arr: i64,
    pub nps_responses: u64,
    pub promoters: u64,
    pub detractors: u64,
}

/// One account a referral brought.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferralRow {
    pub account: String,
    pub referred_by: String,
    pub referred_at: Timestamp,
    /// Its opportunities created at or after the referral, and the won ones among them.
    pub opportunities: u64,
    pub won: u64,
    pub pipeline: Amounts,
    pub revenue: Amounts,
    /// Its ARR now, in its currency.
    pub arr: i64,
    pub currency: Option<String>,
}

/// One person who advocated.
#[derive(Clone, Debug, PartialEq)]
pub struct AdvocateRow {
    pub person: String,
    pub account: Option<String>,
    /// Acts that count, by act (`AdvocacyAct::ALL` order).
    pub acts: [u32; 4],
    /// Accounts whose earliest referral that counts is theirs, and what those led to.
    pub referred_accounts: u64,
    pub referred_won: u64,
    pub referred_revenue: Amounts,
}

/// Every account-level table of the customer view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomerTables {
    pub accounts: Vec<CustomerAccountRow>,
    pub retention: Vec<RetentionRow>,
    pub movements: Vec<MovementRow>,
    pub concentration: Vec<ConcentrationRow>,
    pub loyalty: Vec<LoyaltyRow>,
    pub referrals: Vec<ReferralRow>,
    pub advocates: Vec<AdvocateRow>,
}

/// A month as a number (year × 12 + month − 1).
fn month_index(at: Timestamp) -> i64 {
    let text = at.to_rfc3339();
    let year: i64 = text[..4].parse().unwrap_or(1970);
    let month: i64 = text[5..7].parse().unwrap_or(1);
    year * 12 + month - 1
}

fn month_name(index: i64) -> String {
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// The first instant of the month after `index`: where a month's end is measured.
fn month_end(index: i64) -> Timestamp {
    let next = index + 1;
    let text = format!(
        "{:04}-{:02}-01T00:00:00Z",
        next.div_euclid(12),
        next.rem_euclid(12) + 1
    );
    Timestamp::parse_rfc3339(&text).unwrap_or(Timestamp::from_unix_millis(i64::MAX / 2))
}

/// An account's revenue in its currency: `None` before its first close.
pub(crate) fn account_revenue(part: &LedgerPart, now: Timestamp) -> Option<super::AccountRevenue> {
    let first = part
        .changes
        .iter()
        .find(|change| change.movement == Movement::New)?;
    let arr_at = |at: Timestamp| {
        part.changes
            .iter()
            .rev()
            .find(|change| change.currency == first.currency && change.at < at)
            .map_or(0, |change| change.after)
    };
    Some(super::AccountRevenue {
        account: part.account.clone(),
        currency: first.currency.clone(),
        starting_arr: arr_at(month_end(month_index(first.at))),
        arr: arr_at(now.add_millis(1)),
    })
}

/// What one account's part says, read once.
struct Customer<'a> {
    part: &'a LedgerPart,
    /// The first `new` change: when, and its currency.
    first: Option<(Timestamp, &'a str)>,
    arr: i64,
    starting_arr: Option<i64>,
    acquisition: Option<Acquisition>,
    nps: NpsCounts,
}

#[derive(Clone, Copy, Debug, Default)]
struct NpsCounts {
    responses: u64,
    promoters: u64,
    detractors: u64,
}

impl NpsCounts {
    fn add(&mut self, score: u8) {
        self.responses += 1;
        match score {
            9..=10 => self.promoters += 1,
            0..=6 => self.detractors += 1,
            _ => {}
        }
    }

    fn score(self) -> Option<f64> {
        (self.responses > 0).then(|| {
            (self.promoters as f64 - self.detractors as f64) / self.responses as f64 * 100.0
        })
    }
}

/// How an account was won: its earliest won opportunity.
#[derive(Clone, Debug)]
struct Acquisition {
    opportunity: String,
    channel: Option<String>,
    campaign: Option<String>,
    owner: Option<String>,
    cycle_days: Option<f64>,
    discount: Option<f64>,
    handbacks: u64,
}

impl<'a> Customer<'a> {
    /// The account's ARR in `currency` at `at` (exclusive): after the last change before it.
    fn arr_at(&self, currency: &str, at: Timestamp) -> i64 {
        self.part
            .changes
            .iter()
            .rev()
            .find(|change| change.currency == currency && change.at < at)
            .map_or(0, |change| change.after)
    }
}

const NO_WON_OPPORTUNITY: &str = "(no won opportunity)";

fn cycle_bucket(days: f64) -> &'static str {
    match days {
        d if d <= 30.0 => "0-30 days",
        d if d <= 90.0 => "31-90 days",
        d if d <= 180.0 => "91-180 days",
        _ => "over 180 days",
    }
}

fn discount_bucket(discount: Option<f64>) -> &'static str {
    match discount {
        None => "(no proposal)",
        Some(d) if d <= 0.0 => "none",
        Some(d) if d < 0.10 => "under 10%",
        Some(d) if d <= 0.25 => "10-25%",
        Some(_) => "over 25%",
    }
}

fn handback_bucket(handbacks: u64) -> &'static str {
    match handbacks {
        0 => "0",
        1 => "1",
        _ => "2+",
    }
}

/// Adds `minor` in `currency` to per-currency amounts kept sorted.
fn add_amount(amounts: &mut Amounts, currency: &str, minor: i64) {
    match amounts.binary_search_by(|(c, _)| c.as_str().cmp(currency)) {
        Ok(at) => amounts[at].1 = amounts[at].1.saturating_add(minor),
        Err(at) => amounts.insert(at, (currency.to_owned(), minor)),
    }
}

impl PersonRows {
    /// The customer view's account-level tables at this snapshot.
    pub fn customer_tables(&self) -> CustomerTables {
        let now = self.now();
        let now_month = month_index(now);
        let mut by_account: HashMap<&str, Vec<&OpportunityRow>> = HashMap::new();
        for row in self.opportunities() {
            if let Some(account) = &row.account {
                by_account.entry(account.as_str()).or_default().push(row);
            }
        }
        let mut nps_of: HashMap<&str, NpsCounts> = HashMap::new();
        let mut advocates = Vec::new();
        for person in self.iter() {
            if let (Some(account), Some(score)) = (&person.account, person.latest_nps) {
                nps_of.entry(account.as_str()).or_default().add(score);
            }
            if person.acts.iter().any(|acts| *acts > 0) {
                advocates.push(AdvocateRow {
                    person: person.person.clone(),
                    account: person.account.clone(),
                    acts: person.acts,
                    referred_accounts: 0,
                    referred_won: 0,
                    referred_revenue: Vec::new(),
                });
            }
        }
        let customers: Vec<Customer> = self
            .ledgers
            .iter()
            .map(|part| {
                let first = part
                    .changes
                    .iter()
                    .find(|change| change.movement == Movement::New)
                    .map(|change| (change.at, change.currency.as_str()));
                let mut customer = Customer {
                    part,
                    first,
                    arr: 0,
                    starting_arr: None,
                    acquisition: None,
                    nps: nps_of
                        .get(part.account.as_str())
                        .copied()
                        .unwrap_or_default(),
                };
                if let Some(revenue) = account_revenue(part, now) {
                    customer.arr = revenue.arr;
                    customer.starting_arr = Some(revenue.starting_arr);
                }
                customer.acquisition = by_account
                    .get(part.account.as_str())
                    .and_then(|rows| {
                        rows.iter()
                            .filter(|row| row.status == DealStatus::Won)
                            .min_by(|a, b| {
                                (a.closed_at, &a.opportunity).cmp(&(b.closed_at, &b.opportunity))
                            })
                    })
                    .map(|won| self.acquisition(won));
                customer
            })
            .collect();
        let mut tables = CustomerTables {
            accounts: Vec::new(),
            retention: retention(&customers, now_month),
            movements: movements(&customers),
            concentration: Vec::new(),
            loyalty: loyalty(&customers),
            referrals: Vec::new(),
            advocates: Vec::new(),
        };
        let (revenue_rank, usage_rank, concentration) = ranks(&customers);
        tables.concentration = concentration;
        for (index, customer) in customers.iter().enumerate() {
            let part = customer.part;
            let had_revenue = customer.first.is_some();
            let acquisition = customer.acquisition.as_ref();
            let churned = had_revenue && customer.arr <= 0;
            tables.accounts.push(CustomerAccountRow {
                account: part.account.clone(),
                industry: part.segment.industry.clone(),
                region: part.segment.region.clone(),
                size: part.segment.size(),
                status: match (had_revenue, churned) {
                    (false, _) => "prospect",
                    (true, false) => "active",
                    (true, true) => "churned",
                },
                first_close: customer.first.map(|(at, _)| at),
                cohort: customer.first.map(|(at, _)| month_name(month_index(at))),
                currency: customer.first.map(|(_, currency)| currency.to_owned()),
                starting_arr: customer.starting_arr,
                arr: customer.arr,
                subscriptions: part.subscriptions,
                expansions: count_of(part, Movement::Expansion),
                contractions: count_of(part, Movement::Contraction),
                churn_reason: churned
                    .then(|| {
                        part.changes
                            .iter()
                            .rev()
                            .find(|change| change.movement == Movement::Churn)
                            .and_then(|change| change.reason.clone())
                    })
                    .flatten(),
                active_users: part.usage.map(|(_, users, _)| users),
                usage_period_days: part.usage.map(|(_, _, days)| days),
                revenue_rank: revenue_rank[index],
                usage_rank: usage_rank[index],
                nps_responses: customer.nps.responses,
                nps: customer.nps.score(),
                referred_by: part.referral.as_ref().map(|(_, person)| person.clone()),
                acquired_by: acquisition.map(|a| a.opportunity.clone()),
                first_touch_channel: acquisition.and_then(|a| a.channel.clone()),
                first_touch_campaign: acquisition.and_then(|a| a.campaign.clone()),
                sales_owner: acquisition.and_then(|a| a.owner.clone()),
                cycle_days: acquisition.and_then(|a| a.cycle_days),
                discount: acquisition.and_then(|a| a.discount),
                handbacks: acquisition.map(|a| a.handbacks),
            });
            if let Some((at, person)) = &part.referral {
                let led: Vec<&&OpportunityRow> = by_account
                    .get(part.account.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|row| row.created_at >= *at)
                    .collect();
                let mut row = ReferralRow {
                    account: part.account.clone(),
                    referred_by: person.clone(),
                    referred_at: *at,
                    opportunities: led.len() as u64,
                    won: 0,
                    pipeline: Vec::new(),
                    revenue: Vec::new(),
                    arr: customer.arr,
                    currency: customer.first.map(|(_, currency)| currency.to_owned()),
                };
                for opportunity in led {
                    let won = opportunity.status == DealStatus::Won;
                    row.won += u64::from(won);
                    if let (Some(minor), Some(currency)) =
                        (opportunity.amount_minor, &opportunity.currency)
                    {
                        add_amount(&mut row.pipeline, currency, minor);
                        if won {
                            add_amount(&mut row.revenue, currency, minor);
                        }
                    }
                }
                tables.referrals.push(row);
            }
        }
        for advocate in &mut advocates {
            for referral in tables
                .referrals
                .iter()
                .filter(|r| r.referred_by == advocate.person)
            {
                advocate.referred_accounts += 1;
                advocate.referred_won += referral.won;
                for (currency, minor) in &referral.revenue {
                    add_amount(&mut advocate.referred_revenue, currency, *minor);
                }
            }
        }
        tables.advocates = advocates;
        tables
    }

    fn acquisition(&self, won: &OpportunityRow) -> Acquisition {
        let closed = won.closed_at.unwrap_or(won.created_at);
        let handbacks = self.get(&won.person).map_or(0, |person| {
            person
                .handoffs
                .iter()
                .filter(|h| h.direction == Direction::ToMarketing && h.at < closed)
                .count() as u64
        });
        let discount = match (won.proposal_amount_minor, won.amount_minor) {
            (Some(proposed), Some(amount)) if proposed > 0 => {
                Some(1.0 - amount as f64 / proposed as f64)
            }
            _ => None,
        };
        Acquisition {
            opportunity: won.opportunity.clone(),
            channel: won.first_touch_channel.clone(),
            campaign: won.first_touch_campaign.clone(),
            owner: won.owner.clone(),
            cycle_days: won.closed_at.map(|closed| {
                super::report::days(closed.unix_millis() - won.created_at.unix_millis())
            }),
            discount,
            handbacks,
        }
    }
}

fn count_of(part: &LedgerPart, movement: Movement) -> u32 {
    part.changes
        .iter()
        .filter(|change| change.movement == movement)
        .count() as u32
}

/// Retention of each cohort of first close, at the end of every month since, per currency.
fn retention(customers: &[Customer], now_month: i64) -> Vec<RetentionRow> {
    let mut rows: BTreeMap<(i64, u32, String), RetentionRow> = BTreeMap::new();
    for customer in customers {
        let Some((first, currency)) = customer.first else {
            continue;
        };
        let cohort = month_index(first);
        let start = customer.starting_arr.unwrap_or(0);
        for month in cohort..=now_month.max(cohort) {
            let arr = customer.arr_at(currency, month_end(month));
            let since = (month - cohort) as u32;
            let row = rows
                .entry((cohort, since, currency.to_owned()))
                .or_insert_with(|| RetentionRow {
                    cohort: month_name(cohort),
                    months_since: since,
                    month: month_name(month),
                    currency: currency.to_owned(),
                    accounts: 0,
                    retained: 0,
                    starting_arr: 0,
                    arr: 0,
                    expansion: 0,
                    contraction: 0,
                    churned_arr: 0,
                });
            row.accounts += 1;
            row.retained += u64::from(arr > 0);
            row.starting_arr = row.starting_arr.saturating_add(start);
            row.arr = row.arr.saturating_add(arr);
            if arr > start {
                row.expansion = row.expansion.saturating_add(arr - start);
            } else if arr > 0 {
                row.contraction = row.contraction.saturating_add(start - arr);
            } else {
                row.churned_arr = row.churned_arr.saturating_add(start);
            }
        }
    }
    rows.into_values().collect()
}

/// Every change of ARR, by month, movement, reason and currency.
fn movements(customers: &[Customer]) -> Vec<MovementRow> {
    type Key = (String, Movement, Option<String>, String);
    let mut rows: BTreeMap<Key, (MovementRow, std::collections::BTreeSet<&str>)> = BTreeMap::new();
    for customer in customers {
        for change in &customer.part.changes {
            let month = month_name(month_index(change.at));
            let key = (
                month.clone(),
                change.movement,
                change.reason.clone(),
                change.currency.clone(),
            );
            let (row, accounts) = rows.entry(key).or_insert_with(|| {
                (
                    MovementRow {
                        month,
                        movement: change.movement.as_str(),
                        reason: change.reason.clone(),
                        currency: change.currency.clone(),
                        events: 0,
                        accounts: 0,
                        arr_change: 0,
                    },
                    Default::default(),
                )
            });
            row.events += 1;
            row.arr_change = row.arr_change.saturating_add(change.after - change.before);
            accounts.insert(customer.part.account.as_str());
        }
    }
    rows.into_values()
        .map(|(mut row, accounts)| {
            row.accounts = accounts.len() as u64;
            row
        })
        .collect()
}

/// Each customer's place by revenue (among the active ones of its currency) and by usage,
/// and the deciles of each ranking.
#[allow(clippy::type_complexity)]
fn ranks(customers: &[Customer]) -> (Vec<Option<u64>>, Vec<Option<u64>>, Vec<ConcentrationRow>) {
    let mut revenue_rank = vec![None; customers.len()];
    let mut usage_rank = vec![None; customers.len()];
    let mut rows = Vec::new();
    let mut by_currency: BTreeMap<&str, Vec<(i64, &str, usize)>> = BTreeMap::new();
    let mut usage: Vec<(i64, &str, usize)> = Vec::new();
    for (index, customer) in customers.iter().enumerate() {
        if let Some((_, currency)) = customer.first
            && customer.arr > 0
        {
            by_currency.entry(currency).or_default().push((
                customer.arr,
                customer.part.account.as_str(),
                index,
            ));
        }
        if let Some((_, users, _)) = customer.part.usage {
            usage.push((i64::from(users), customer.part.account.as_str(), index));
        }
    }
    let mut rank = |ranked: &mut Vec<(i64, &str, usize)>,
                    places: &mut Vec<Option<u64>>,
                    ranking: &'static str,
                    currency: Option<&str>| {
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let n = ranked.len() as u64;
        let total: i128 = ranked.iter().map(|(value, _, _)| i128::from(*value)).sum();
        let mut deciles: BTreeMap<u32, (u64, i128)> = BTreeMap::new();
        for (place, (value, _, index)) in ranked.iter().enumerate() {
            let place = place as u64 + 1;
            places[*index] = Some(place);
            let decile = (place * 10).div_ceil(n) as u32;
            let entry = deciles.entry(decile).or_default();
            entry.0 += 1;
            entry.1 += i128::from(*value);
        }
        let mut cumulative: i128 = 0;
        for (decile, (accounts, value)) in deciles {
            cumulative += value;
            let share = |part: i128| {
                if total == 0 {
                    0.0
                } else {
                    part as f64 / total as f64
                }
            };
            rows.push(ConcentrationRow {
                ranking,
                currency: currency.map(str::to_owned),
                decile,
                accounts,
                value: i64::try_from(value).unwrap_or(i64::MAX),
                share: share(value),
                cumulative_share: share(cumulative),
            });
        }
    };
    for (currency, ranked) in &mut by_currency {
        rank(ranked, &mut revenue_rank, "revenue", Some(currency));
    }
    rank(&mut usage, &mut usage_rank, "usage", None);
    (revenue_rank, usage_rank, rows)
}

/// Customers grouped by how they were acquired.
fn loyalty(customers: &[Customer]) -> Vec<LoyaltyRow> {
    let mut rows: BTreeMap<(&'static str, String, String), LoyaltyRow> = BTreeMap::new();
    for customer in customers {
        let Some((_, currency)) = customer.first else {
            continue;
        };
        let start = customer.starting_arr.unwrap_or(0);
        let values: [(&'static str, String); 6] = match &customer.acquisition {
            None => [
                "first_touch_channel",
                "first_touch_campaign",
                "sales_owner",
                "cycle",
                "discount",
                "handbacks",
            ]
            .map(|dimension| (dimension, NO_WON_OPPORTUNITY.to_owned())),
            Some(a) => {
                let none = || super::report::NONE_LABEL.to_owned();
                [
                    (
                        "first_touch_channel",
                        a.channel.clone().unwrap_or_else(none),
                    ),
                    (
                        "first_touch_campaign",
                        a.campaign.clone().unwrap_or_else(none),
                    ),
                    ("sales_owner", a.owner.clone().unwrap_or_else(none)),
                    (
                        "cycle",
                        a.cycle_days
                            .map_or_else(none, |d| cycle_bucket(d).to_owned()),
                    ),
                    ("discount", discount_bucket(a.discount).to_owned()),
                    ("handbacks", handback_bucket(a.handbacks).to_owned()),
                ]
            }
        };
        for (dimension, value) in values {
            let row = rows
                .entry((dimension, value.clone(), currency.to_owned()))
                .or_insert_with(|| LoyaltyRow {
                    dimension,
                    value,
                    currency: currency.to_owned(),
                    accounts: 0,
                    active: 0,
                    churned: 0,
                    starting_arr: 0,
                    arr: 0,
                    kept_arr: 0,
                    nps_responses: 0,
                    promoters: 0,
                    detractors: 0,
                });
            row.accounts += 1;
            row.active += u64::from(customer.arr > 0);
            row.churned += u64::from(customer.arr <= 0);
            row.starting_arr = row.starting_arr.saturating_add(start);
            row.arr = row.arr.saturating_add(customer.arr);
            row.kept_arr = row.kept_arr.saturating_add(customer.arr.min(start));
            row.nps_responses += customer.nps.responses;
            row.promoters += customer.nps.promoters;
            row.detractors += customer.nps.detractors;
        }
    }
    rows.into_values().collect()
}

/// The act names, in the order of [`AdvocateRow::acts`].
pub fn advocacy_acts() -> [&'static str; 4] {
    let mut names = [""; 4];
    for (name, act) in names.iter_mut().zip(AdvocacyAct::ALL) {
        *name = act.as_str();
    }
    names
}
