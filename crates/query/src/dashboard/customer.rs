//! The dashboard's customer panel (`docs/dashboard.md`, *Customers*): every chart is drawn
//! from the customer view's tables and comes with the rows behind it.

use serde_json::{Value as Json, json};

use super::{
    LOST, MARKETING, PALETTE, Rows, Series, Shape, WON, chart, derived, draw, float, int, kpi,
    number_json, text,
};
use crate::table::{Snapshot, Value};

/// The customer half: recurring revenue, retention, movements, concentration and loyalty
/// from the account tables, then NPS and advocacy.
pub(super) fn panel(snapshot: &Snapshot) -> Json {
    let mut kpis = Vec::new();
    let mut charts = Vec::new();
    revenue(snapshot, &mut kpis, &mut charts);
    if let Some(rows) = Rows::of(snapshot, "nps") {
        let [
            basis,
            dimension,
            value,
            responses,
            promoters,
            passives,
            detractors,
            nps,
        ] = [
            "basis",
            "dimension",
            "value",
            "responses",
            "promoters",
            "passives",
            "detractors",
            "nps",
        ]
        .map(|c| rows.column(c));
        let of = |wanted_basis: &str, wanted_dimension: &str| -> Vec<Vec<Value>> {
            rows.iter()
                .filter(|row| {
                    text(&row[basis]) == Some(wanted_basis)
                        && text(&row[dimension]) == Some(wanted_dimension)
                })
                .cloned()
                .collect()
        };
        for (id, label, wanted) in [
            ("nps_all", "NPS, every answer", "all"),
            ("nps_latest", "NPS, latest answer per person", "latest"),
        ] {
            let whole = of(wanted, "all");
            kpis.push(kpi(
                id,
                label,
                whole
                    .first()
                    .map_or(Json::Null, |row| number_json(&row[nps])),
            ));
            if wanted == "latest" {
                kpis.push(kpi(
                    "nps_people",
                    "People who answered",
                    whole
                        .first()
                        .map_or(json!(0), |row| number_json(&row[responses])),
                ));
            }
        }
        let months = of("all", "month");
        let labels: Vec<String> = months
            .iter()
            .map(|row| text(&row[value]).unwrap_or_default().to_owned())
            .collect();
        let series = |column: usize, name: &str, color: &'static str| {
            Series::new(
                name,
                months
                    .iter()
                    .map(|row| Some(int(&row[column]) as f64))
                    .collect(),
                color,
            )
            .stacked()
        };
        let table = derived("nps", &rows.table.columns, months.clone());
        charts.push(chart(
            "nps-monthly",
            "NPS answers per month: promoters, passives, detractors (every answer)",
            draw(
                Shape::Columns,
                &labels,
                &[
                    series(promoters, "promoters", WON),
                    series(passives, "passives", PALETTE[6]),
                    series(detractors, "detractors", LOST),
                ],
            ),
            &table,
            "/v1/views/nps?basis=all&dimension=month",
            false,
        ));
        for (id, dimension, title) in [
            (
                "nps-industry",
                "industry",
                "NPS by industry (latest answer per person)",
            ),
            (
                "nps-size",
                "size",
                "NPS by company size (latest answer per person)",
            ),
        ] {
            let kept = of("latest", dimension);
            let table = derived("nps", &rows.table.columns, kept);
            let mut one = chart(
                id,
                title,
                None,
                &table,
                &format!("/v1/views/nps?basis=latest&dimension={dimension}"),
                false,
            );
            one["table_only"] = json!(true);
            charts.push(one);
        }
    }
    if let Some(rows) = Rows::of(snapshot, "advocacy") {
        let [act, acts, people] = ["act", "acts", "people"].map(|c| rows.column(c));
        let labels: Vec<String> = rows
            .iter()
            .map(|row| text(&row[act]).unwrap_or_default().to_owned())
            .collect();
        let of = |column: usize| {
            rows.iter()
                .map(|row| Some(int(&row[column]) as f64))
                .collect()
        };
        charts.push(chart(
            "advocacy",
            "Advocacy: acts and the people who made them",
            draw(
                Shape::Bars,
                &labels,
                &[
                    Series::new("acts", of(acts), WON),
                    Series::new("people", of(people), MARKETING),
                ],
            ),
            rows.table,
            "/v1/views/advocacy",
            false,
        ));
    }
    json!({"id": "customer", "title": "Customers", "kpis": kpis, "charts": charts})
}

/// The currency most customers pay in: the one the revenue figures are shown in (the tables
/// behind the charts have every currency).
fn main_currency(rows: &Rows<'_>) -> Option<String> {
    let currency = rows.column("currency");
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for row in rows.iter() {
        if let Some(code) = text(&row[currency]) {
            *counts.entry(code).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(code, _)| code.to_owned())
}

fn percent(value: &Value) -> Option<f64> {
    float(value).map(|share| share * 100.0)
}

/// Recurring revenue, retention by cohort, movements with their reasons, concentration and
/// loyalty by how customers were acquired.
fn revenue(snapshot: &Snapshot, kpis: &mut Vec<Json>, charts: &mut Vec<Json>) {
    let Some(accounts) = Rows::of(snapshot, "customer_accounts") else {
        return;
    };
    let Some(currency) = main_currency(&accounts) else {
        return;
    };
    let in_currency = |rows: &Rows<'_>, row: &Vec<Value>| {
        text(&row[rows.column("currency")]) == Some(currency.as_str())
    };
    let [status, arr] = ["status", "arr"].map(|c| accounts.column(c));
    let (mut active, mut churned, mut total) = (0, 0, 0.0);
    for row in accounts.iter().filter(|row| in_currency(&accounts, row)) {
        match text(&row[status]) {
            Some("active") => active += 1,
            Some("churned") => churned += 1,
            _ => {}
        }
        total += float(&row[arr]).unwrap_or(0.0);
    }
    kpis.push(kpi("arr", &format!("ARR now ({currency})"), json!(total)));
    kpis.push(kpi("customers_active", "Active customers", json!(active)));
    kpis.push(kpi(
        "customers_churned",
        "Churned customers",
        json!(churned),
    ));

    if let Some(rows) = Rows::of(snapshot, "retention") {
        let [cohort, since, starting, now] =
            ["cohort", "months_since", "starting_arr", "arr"].map(|c| rows.column(c));
        // Net revenue retention a year on, over every cohort a year old.
        let (mut start_12, mut arr_12) = (0.0, 0.0);
        let mut latest: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for row in rows.iter().filter(|row| in_currency(&rows, row)) {
            if int(&row[since]) == 12 {
                start_12 += float(&row[starting]).unwrap_or(0.0);
                arr_12 += float(&row[now]).unwrap_or(0.0);
            }
            let key = text(&row[cohort]).unwrap_or_default().to_owned();
            latest.insert(key, row.clone());
        }
        kpis.push(kpi(
            "nrr_12",
            "Net revenue retention at 12 months",
            if start_12 > 0.0 {
                json!(arr_12 / start_12)
            } else {
                Json::Null
            },
        ));
        let latest: Vec<Vec<Value>> = latest.into_values().collect();
        let labels: Vec<String> = latest
            .iter()
            .map(|row| text(&row[cohort]).unwrap_or_default().to_owned())
            .collect();
        let series = |name: &str, column: &str, color: &'static str| {
            let at = rows.column(column);
            Series::new(
                name,
                latest.iter().map(|row| percent(&row[at])).collect(),
                color,
            )
        };
        let table = derived("retention", &rows.table.columns, latest.clone());
        charts.push(chart(
            "retention",
            &format!(
                "Retention by cohort of first close, now (%, {currency}): net revenue, gross revenue, logos"
            ),
            super::draw(
                Shape::Columns,
                &labels,
                &[
                    series("net revenue", "net_retention", WON),
                    series("gross revenue", "gross_retention", MARKETING),
                    series("logos", "logo_retention", PALETTE[4]),
                ],
            ),
            &table,
            "/v1/views/retention",
            false,
        ));
    }

    if let Some(rows) = Rows::of(snapshot, "revenue_movements") {
        let [month, movement, reason, change] =
            ["month", "movement", "reason", "arr_change"].map(|c| rows.column(c));
        let mine: Vec<&Vec<Value>> = rows.iter().filter(|row| in_currency(&rows, row)).collect();
        let mut months: std::collections::BTreeMap<String, [f64; 2]> = Default::default();
        let mut reasons: std::collections::BTreeMap<String, (i64, f64)> = Default::default();
        for row in &mine {
            let moved = float(&row[change]).unwrap_or(0.0);
            let entry = months
                .entry(text(&row[month]).unwrap_or_default().to_owned())
                .or_default();
            if moved >= 0.0 {
                entry[0] += moved;
            } else {
                entry[1] -= moved;
            }
            if text(&row[movement]) == Some("churn") {
                let reason = reasons
                    .entry(text(&row[reason]).unwrap_or_default().to_owned())
                    .or_default();
                reason.0 += int(&row[rows.column("accounts")]);
                reason.1 -= moved;
            }
        }
        let labels: Vec<String> = months.keys().cloned().collect();
        let table = derived(
            "revenue_movements",
            &rows.table.columns,
            mine.iter().map(|row| (*row).clone()).collect(),
        );
        charts.push(chart(
            "revenue-movements",
            &format!(
                "Recurring revenue gained (new, reactivation, expansion) and lost (contraction, churn) per month ({currency})"
            ),
            draw(
                Shape::Columns,
                &labels,
                &[
                    Series::new(
                        "gained",
                        months.values().map(|m| Some(m[0])).collect(),
                        WON,
                    ),
                    Series::new("lost", months.values().map(|m| Some(m[1])).collect(), LOST),
                ],
            ),
            &table,
            "/v1/views/revenue_movements",
            false,
        ));
        let mut ranked: Vec<(String, (i64, f64))> = reasons.into_iter().collect();
        ranked.sort_by(|a, b| b.1.1.total_cmp(&a.1.1).then(a.0.cmp(&b.0)));
        let reason_table = crate::table::Table {
            name: "churn_reasons",
            columns: vec![
                ("reason", crate::table::ColumnType::Text),
                ("accounts", crate::table::ColumnType::Int),
                ("arr_lost", crate::table::ColumnType::Float),
            ],
            rows: ranked
                .iter()
                .map(|(name, (accounts, lost))| {
                    vec![
                        Value::Text(name.clone()),
                        Value::Int(*accounts),
                        Value::Float(*lost),
                    ]
                })
                .collect(),
        };
        charts.push(chart(
            "churn-reasons",
            &format!(
                "Churn by reason: recurring revenue lost ({currency}; sums of revenue_movements)"
            ),
            draw(
                Shape::Bars,
                &ranked
                    .iter()
                    .map(|(name, _)| name.clone())
                    .collect::<Vec<_>>(),
                &[Series::new(
                    "ARR lost",
                    ranked.iter().map(|(_, (_, lost))| Some(*lost)).collect(),
                    LOST,
                )],
            ),
            &reason_table,
            "/v1/views/revenue_movements?movement=churn",
            false,
        ));
    }

    if let Some(rows) = Rows::of(snapshot, "concentration") {
        let [unit, decile, share] = ["unit", "decile", "share"].map(|c| rows.column(c));
        let mine: Vec<Vec<Value>> = rows
            .iter()
            .filter(|row| text(&row[unit]) == Some(currency.as_str()))
            .cloned()
            .collect();
        if let Some(top) = mine.iter().find(|row| int(&row[decile]) == 1) {
            kpis.push(kpi(
                "top_decile_share",
                "Revenue share of the top tenth of customers",
                number_json(&top[share]),
            ));
        }
        let labels: Vec<String> = mine
            .iter()
            .map(|row| format!("decile {}", int(&row[decile])))
            .collect();
        let table = derived("concentration", &rows.table.columns, mine.clone());
        charts.push(chart(
            "concentration",
            &format!(
                "Share of recurring revenue by tenth of customers, largest first (%, {currency})"
            ),
            draw(
                Shape::Columns,
                &labels,
                &[Series::new(
                    "share",
                    mine.iter().map(|row| percent(&row[share])).collect(),
                    MARKETING,
                )],
            ),
            &table,
            "/v1/views/concentration?ranking=revenue",
            false,
        ));
    }

    if let Some(rows) = Rows::of(snapshot, "loyalty") {
        let [dimension, value] = ["dimension", "value"].map(|c| rows.column(c));
        for (id, wanted, title, drawn) in [
            (
                "loyalty-channel",
                "first_touch_channel",
                "Loyalty by first-touch channel: net revenue retention and churn (%)",
                true,
            ),
            (
                "loyalty-owner",
                "sales_owner",
                "Loyalty by who sold it: net revenue retention and churn (%)",
                true,
            ),
            (
                "loyalty-discount",
                "discount",
                "Loyalty by discount at the close",
                false,
            ),
            (
                "loyalty-cycle",
                "cycle",
                "Loyalty by sales cycle length",
                false,
            ),
            (
                "loyalty-handbacks",
                "handbacks",
                "Loyalty by hand-backs before the close",
                false,
            ),
        ] {
            let kept: Vec<Vec<Value>> = rows
                .iter()
                .filter(|row| text(&row[dimension]) == Some(wanted) && in_currency(&rows, row))
                .cloned()
                .collect();
            let labels: Vec<String> = kept
                .iter()
                .map(|row| text(&row[value]).unwrap_or_default().to_owned())
                .collect();
            let series = |name: &str, column: &str, color: &'static str| {
                let at = rows.column(column);
                Series::new(
                    name,
                    kept.iter().map(|row| percent(&row[at])).collect(),
                    color,
                )
            };
            let svg = drawn
                .then(|| {
                    draw(
                        Shape::Bars,
                        &labels,
                        &[
                            series("net revenue retention", "net_retention", WON),
                            series("churn rate", "churn_rate", LOST),
                        ],
                    )
                })
                .flatten();
            let table = derived("loyalty", &rows.table.columns, kept);
            let mut one = chart(
                id,
                title,
                svg,
                &table,
                &format!("/v1/views/loyalty?dimension={wanted}"),
                false,
            );
            if !drawn {
                one["table_only"] = json!(true);
            }
            charts.push(one);
        }
    }
}
