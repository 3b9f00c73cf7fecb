//! The customer view's tables (`docs/views.md`, *Customer*): NPS and advocacy from the
//! totals, and the account-level tables built when first read from a snapshot's rows
//! (`baton_core::PersonRows::customer_tables`).

use crate::table::ColumnType::{Float, Int, Text, Time};
use crate::table::{Table, Value, money};
use baton_core::{CustomerTables, CustomerView, advocacy_acts};

/// The account-level tables, in the order [`account_tables`] gives them.
pub(crate) const ACCOUNT_TABLES: [&str; 7] = [
    "customer_accounts",
    "retention",
    "revenue_movements",
    "concentration",
    "loyalty",
    "referrals",
    "advocates",
];

/// The tables worked out from the totals.
pub fn customer_tables(view: CustomerView) -> Vec<Table> {
    let mut nps = Table::new(
        "nps",
        &[
            ("basis", Text),
            ("dimension", Text),
            ("value", Text),
            ("responses", Int),
            ("promoters", Int),
            ("passives", Int),
            ("detractors", Int),
            ("nps", Float),
        ],
    );
    for row in &view.nps {
        nps.push(vec![
            row.basis.into(),
            row.dimension.into(),
            row.value.as_str().into(),
            row.responses.into(),
            row.promoters.into(),
            row.passives.into(),
            row.detractors.into(),
            row.nps.into(),
        ]);
    }
    let mut advocacy = Table::new("advocacy", &[("act", Text), ("acts", Int), ("people", Int)]);
    for row in &view.advocacy {
        advocacy.push(vec![row.act.into(), row.acts.into(), row.people.into()]);
    }
    vec![nps, advocacy]
}

/// An amount in minor units of `currency`, in major units.
fn major(minor: i64, currency: &str) -> Value {
    Value::Float(baton_core::major_units(minor as f64, currency))
}

fn ratio(part: f64, whole: f64) -> Value {
    if whole == 0.0 {
        Value::Null
    } else {
        Value::Float(part / whole)
    }
}

fn int(value: i64) -> Value {
    Value::Int(value)
}

/// The account-level tables of `tables` (empty ones give the columns).
pub(crate) fn account_tables(tables: &CustomerTables) -> Vec<Table> {
    let mut accounts = Table::new(
        "customer_accounts",
        &[
            ("account", Text),
            ("industry", Text),
            ("region", Text),
            ("size", Text),
            ("status", Text),
            ("first_close", Time),
            ("cohort", Text),
            ("currency", Text),
            ("starting_arr", Float),
            ("arr", Float),
            ("subscriptions", Int),
            ("expansions", Int),
            ("contractions", Int),
            ("churn_reason", Text),
            ("active_users", Int),
            ("usage_period_days", Int),
            ("revenue_rank", Int),
            ("usage_rank", Int),
            ("nps_responses", Int),
            ("nps", Float),
            ("referred_by", Text),
            ("acquired_by", Text),
            ("first_touch_channel", Text),
            ("first_touch_campaign", Text),
            ("sales_owner", Text),
            ("cycle_days", Float),
            ("discount", Float),
            ("handbacks", Int),
        ],
    );
    for row in &tables.accounts {
        let currency = row.currency.as_deref().unwrap_or("");
        accounts.push(vec![
            row.account.as_str().into(),
            row.industry.clone().into(),
            row.region.clone().into(),
            row.size.into(),
            row.status.into(),
            row.first_close.into(),
            row.cohort.clone().into(),
            row.currency.clone().into(),
            row.starting_arr
                .map_or(Value::Null, |minor| major(minor, currency)),
            if row.currency.is_some() {
                major(row.arr, currency)
            } else {
                Value::Null
            },
            u64::from(row.subscriptions).into(),
            u64::from(row.expansions).into(),
            u64::from(row.contractions).into(),
            row.churn_reason.clone().into(),
            row.active_users.map(u64::from).into(),
            row.usage_period_days.map(u64::from).into(),
            row.revenue_rank.into(),
            row.usage_rank.into(),
            row.nps_responses.into(),
            row.nps.into(),
            row.referred_by.clone().into(),
            row.acquired_by.clone().into(),
            row.first_touch_channel.clone().into(),
            row.first_touch_campaign.clone().into(),
            row.sales_owner.clone().into(),
            row.cycle_days.into(),
            row.discount.into(),
            row.handbacks.into(),
        ]);
    }
    let mut retention = Table::new(
        "retention",
        &[
            ("cohort", Text),
            ("months_since", Int),
            ("month", Text),
            ("currency", Text),
            ("accounts", Int),
            ("retained", Int),
            ("logo_retention", Float),
            ("starting_arr", Float),
            ("arr", Float),
            ("expansion", Float),
            ("contraction", Float),
            ("churned_arr", Float),
            ("gross_retention", Float),
            ("net_retention", Float),
        ],
    );
    for row in &tables.retention {
        let currency = row.currency.as_str();
        let start = row.starting_arr as f64;
        retention.push(vec![
            row.cohort.as_str().into(),
            u64::from(row.months_since).into(),
            row.month.as_str().into(),
            currency.into(),
            row.accounts.into(),
            row.retained.into(),
            ratio(row.retained as f64, row.accounts as f64),
            major(row.starting_arr, currency),
            major(row.arr, currency),
            major(row.expansion, currency),
            major(row.contraction, currency),
            major(row.churned_arr, currency),
            ratio(
                start - row.contraction as f64 - row.churned_arr as f64,
                start,
            ),
            ratio(row.arr as f64, start),
        ]);
    }
    let mut movements = Table::new(
        "revenue_movements",
        &[
            ("month", Text),
            ("movement", Text),
            ("reason", Text),
            ("currency", Text),
            ("events", Int),
            ("accounts", Int),
            ("arr_change", Float),
        ],
    );
    for row in &tables.movements {
        movements.push(vec![
            row.month.as_str().into(),
            row.movement.into(),
            row.reason
                .as_deref()
                .unwrap_or(baton_core::NONE_LABEL)
                .into(),
            row.currency.as_str().into(),
            row.events.into(),
            row.accounts.into(),
            major(row.arr_change, &row.currency),
        ]);
    }
    let mut concentration = Table::new(
        "concentration",
        &[
            ("ranking", Text),
            ("unit", Text),
            ("decile", Int),
            ("accounts", Int),
            ("value", Float),
            ("share", Float),
            ("cumulative_share", Float),
        ],
    );
    for row in &tables.concentration {
        concentration.push(vec![
            row.ranking.into(),
            row.currency.as_deref().unwrap_or("active_users").into(),
            u64::from(row.decile).into(),
            row.accounts.into(),
            match &row.currency {
                Some(currency) => major(row.value, currency),
                None => Value::Float(row.value as f64),
            },
            row.share.into(),
            row.cumulative_share.into(),
        ]);
    }
    let mut loyalty = Table::new(
        "loyalty",
        &[
            ("dimension", Text),
            ("value", Text),
            ("currency", Text),
            ("accounts", Int),
            ("active", Int),
            ("churned", Int),
            ("churn_rate", Float),
            ("starting_arr", Float),
            ("arr", Float),
            ("gross_retention", Float),
            ("net_retention", Float),
            ("nps_responses", Int),
            ("nps", Float),
        ],
    );
    for row in &tables.loyalty {
        let currency = row.currency.as_str();
        loyalty.push(vec![
            row.dimension.into(),
            row.value.as_str().into(),
            currency.into(),
            row.accounts.into(),
            row.active.into(),
            row.churned.into(),
            ratio(row.churned as f64, row.accounts as f64),
            major(row.starting_arr, currency),
            major(row.arr, currency),
            ratio(row.kept_arr as f64, row.starting_arr as f64),
            ratio(row.arr as f64, row.starting_arr as f64),
            row.nps_responses.into(),
            ratio(
                (row.promoters as f64 - row.detractors as f64) * 100.0,
                row.nps_responses as f64,
            ),
        ]);
    }
    let mut referrals = Table::new(
        "referrals",
        &[
            ("account", Text),
            ("referred_by", Text),
            ("referred_at", Time),
            ("opportunities", Int),
            ("won", Int),
            ("pipeline", Float),
            ("revenue", Float),
            ("deal_currency", Text),
            ("arr", Float),
            ("currency", Text),
        ],
    );
    for row in &tables.referrals {
        let [pipeline, deal_currency] = money(&row.pipeline);
        let revenue = crate::table::money_in(&row.revenue, &deal_currency);
        referrals.push(vec![
            row.account.as_str().into(),
            row.referred_by.as_str().into(),
            row.referred_at.into(),
            row.opportunities.into(),
            row.won.into(),
            pipeline,
            revenue,
            deal_currency,
            row.currency
                .as_deref()
                .map_or(Value::Null, |currency| major(row.arr, currency)),
            row.currency.clone().into(),
        ]);
    }
    let acts = advocacy_acts();
    let mut columns: Vec<(&'static str, crate::table::ColumnType)> =
        vec![("person", Text), ("account", Text)];
    columns.extend([
        ("reference_calls", Int),
        ("case_studies", Int),
        ("reviews", Int),
        ("referrals", Int),
    ]);
    debug_assert_eq!(
        acts,
        ["reference_call", "case_study", "review", "referral"],
        "the act columns follow AdvocacyAct::ALL"
    );
    columns.extend([
        ("referred_accounts", Int),
        ("referred_won", Int),
        ("referred_revenue", Float),
        ("currency", Text),
    ]);
    let mut advocates = Table::new("advocates", &columns);
    for row in &tables.advocates {
        let [revenue, currency] = money(&row.referred_revenue);
        let mut cells: Vec<Value> = vec![row.person.as_str().into(), row.account.clone().into()];
        cells.extend(row.acts.iter().map(|acts| int(i64::from(*acts))));
        cells.extend([
            row.referred_accounts.into(),
            row.referred_won.into(),
            revenue,
            currency,
        ]);
        advocates.push(cells);
    }
    let all = vec![
        accounts,
        retention,
        movements,
        concentration,
        loyalty,
        referrals,
        advocates,
    ];
    debug_assert!(all.iter().map(|t| t.name).eq(ACCOUNT_TABLES));
    all
}
