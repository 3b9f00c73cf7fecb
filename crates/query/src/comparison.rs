//! A candidate definition set beside the live one (`baton replay`, `baton compare`): the one
//! JSON form of the comparison, which `baton compare --json` prints, the projector keeps
//! beside the candidate's database, and `baton serve` serves over HTTP
//! (`/v1/views/{name}/comparison`), and the SQL tables built from it
//! (`public.comparison_stages`, `public.comparison_mqls`). Stages are matched by name; a stage
//! of one definition only is said to be so in every form.

use crate::table::{ColumnType, Table, Value};
use baton_core::{Comparison, FunnelSummary, OutcomeGroup, SlaLoad, StageSummary};
use baton_projector::Position;
use serde_json::{Value as Json, json};

/// The table of stages side by side, one row per (candidate, stage).
pub const STAGES_TABLE: &str = "comparison_stages";
/// The table of who becomes an MQL under which definition, one row per (candidate, group).
pub const MQLS_TABLE: &str = "comparison_mqls";

/// Amounts per currency as `{"USD": "1234.50", "JPY": "5000", ...}`: decimal strings, exact,
/// with each currency's decimal places.
pub fn amounts_json(amounts: &[(String, i64)]) -> Json {
    let map: serde_json::Map<String, Json> = amounts
        .iter()
        .map(|(currency, minor)| {
            let text = baton_core::decimal_amount(*minor, currency);
            (currency.clone(), Json::String(text))
        })
        .collect();
    Json::Object(map)
}

/// One stage of a summary, as `funnel --json` and the comparison write it.
pub fn stage_json(stage: &StageSummary) -> Json {
    json!({
        "name": stage.name,
        "owner": stage.owner.as_str(),
        "entered": stage.entered,
        "current": stage.current,
        "converted": stage.converted,
        "conversion_rate": stage.conversion_rate(),
        "median_days_in_stage": stage.median_days_in_stage,
        "returned": stage.returned,
    })
}

/// The shared-funnel summary at `position`, as `baton funnel --json` prints it.
pub fn summary_json(summary: &FunnelSummary, position: u64) -> Json {
    let stages: Vec<Json> = summary.stages.iter().map(stage_json).collect();
    let revenue = amounts_json(&summary.revenue_minor_units);
    json!({
        "definition": summary.definition,
        "definition_hash": summary.definition_hash,
        "position": position,
        "events": summary.events,
        "people": summary.people,
        "stages": stages,
        "won": {"deals": summary.won_deals, "revenue": revenue},
        "handoffs": summary.handoffs,
        "handbacks": summary.handbacks,
        "ping_pong_journeys": summary.ping_pong_journeys,
        "follow_up": {
            "mqls": summary.follow_up.mqls,
            "breached": summary.follow_up.breached,
            "untouched": summary.follow_up.untouched,
            "median_hours_to_first_action": summary.follow_up.median_hours_to_first_action,
            "p90_hours_to_first_action": summary.follow_up.p90_hours_to_first_action,
            "as_of": summary.follow_up.as_of.map(|t| t.to_rfc3339()),
        },
    })
}

fn group_json(group: &OutcomeGroup) -> Json {
    json!({
        "people": group.people,
        "won": group.won,
        "lost": group.lost,
        "open": group.open,
        "won_share": group.won_share(),
        "revenue": amounts_json(&group.revenue_minor_units),
        "customers": group.customers,
        "retained": group.retained,
        "logo_retention": group.logo_retention(),
        "starting_arr": amounts_json(&group.starting_arr_minor_units),
        "arr": amounts_json(&group.arr_minor_units),
        "net_retention": group.net_retention(),
        "nps_responses": group.nps_responses,
        "nps": group.nps(),
        "sample": group.sample,
    })
}

fn load_json(load: &SlaLoad) -> Json {
    json!({
        "mqls": load.mqls,
        "weeks": load.weeks,
        "mean_per_week": load.mean_per_week,
        "peak_week": load.peak_week.map(|(week, _)| week.to_rfc3339()),
        "peak_week_mqls": load.peak_week.map(|(_, count)| count),
    })
}

/// The comparison of two definitions at the candidate's position, with the MQLs' outcomes as
/// of `outcomes_at`: views are `(name, position)`.
pub fn comparison_json(
    comparison: &Comparison,
    live: (&str, Position),
    candidate: (&str, Position),
    outcomes_at: Position,
) -> Json {
    let stages: Vec<Json> = comparison
        .stage_pairs()
        .iter()
        .map(|pair| {
            json!({
                "name": pair.name,
                "live": pair.live.map(stage_json),
                "candidate": pair.candidate.map(stage_json),
            })
        })
        .collect();
    json!({
        "live": {"view": live.0, "summary": summary_json(&comparison.live, live.1.get())},
        "candidate": {
            "view": candidate.0,
            "summary": summary_json(&comparison.candidate, candidate.1.get()),
        },
        "stages": stages,
        "mql_both": group_json(&comparison.mql_both),
        "mql_only_live": group_json(&comparison.mql_only_live),
        "mql_only_candidate": group_json(&comparison.mql_only_candidate),
        "sla_load": {
            "live": load_json(&comparison.live_load),
            "candidate": load_json(&comparison.candidate_load),
        },
        "outcomes_at": outcomes_at.get(),
        "attribution": comparison.attribution.iter().map(|row| {
            let side = |credit: Option<(i64, i64)>| credit.map(|(revenue, pipeline)| {
                let currency = row.currency.as_deref().unwrap_or("");
                json!({
                    "credited_revenue": baton_core::decimal_amount(revenue, currency),
                    "credited_pipeline": baton_core::decimal_amount(pipeline, currency),
                })
            });
            json!({
                "model": row.model,
                "channel": row.channel,
                "currency": row.currency,
                "live": side(row.live),
                "candidate": side(row.candidate),
            })
        }).collect::<Vec<_>>(),
    })
}

/// Why a stored comparison cannot be read as one.
#[derive(Debug, thiserror::Error)]
#[error("the stored comparison {at}: {reason}")]
pub struct ComparisonError {
    at: String,
    reason: String,
}

fn field<'a>(value: &'a Json, at: &str) -> Result<&'a Json, ComparisonError> {
    at.split('.').try_fold(value, |value, key| {
        value.get(key).ok_or_else(|| ComparisonError {
            at: at.to_owned(),
            reason: "is missing".to_owned(),
        })
    })
}

fn count(value: &Json, at: &str) -> Result<Value, ComparisonError> {
    let found = field(value, at)?;
    match found.as_u64() {
        Some(n) => Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX))),
        None => Err(ComparisonError {
            at: at.to_owned(),
            reason: format!("is {found}, not a count"),
        }),
    }
}

fn rate(value: &Json, at: &str) -> Result<Value, ComparisonError> {
    let found = field(value, at)?;
    match found {
        Json::Null => Ok(Value::Null),
        number => number
            .as_f64()
            .map(Value::Float)
            .ok_or_else(|| ComparisonError {
                at: at.to_owned(),
                reason: format!("is {number}, not a number"),
            }),
    }
}

/// A revenue column and its currency, as the views' tables write money: the amount in major
/// units and its currency; `NULL` and `mixed` with several currencies; 0 and `NULL` with none
/// (nothing won is 0).
fn revenue(group: &Json, at: &str) -> Result<[Value; 2], ComparisonError> {
    amount(group, "revenue", at)
}

/// A column a comparison kept before it was written has nothing in it: `NULL`.
fn later(
    read: impl Fn(&Json, &str) -> Result<Value, ComparisonError>,
    group: &Json,
    key: &str,
) -> Result<Value, ComparisonError> {
    match group.get(key) {
        None => Ok(Value::Null),
        Some(_) => read(group, key),
    }
}

/// An object of amounts by currency as a money column and its currency (`NULL` when the
/// comparison was kept before the field was written).
fn amount(group: &Json, key: &str, at: &str) -> Result<[Value; 2], ComparisonError> {
    let Some(amounts) = group.get(key) else {
        return Ok([Value::Null, Value::Null]);
    };
    let amounts = amounts.as_object().ok_or_else(|| ComparisonError {
        at: format!("{at}.{key}"),
        reason: "is not an object of amounts".to_owned(),
    })?;
    let mut amounts = amounts.iter();
    match (amounts.next(), amounts.next()) {
        (None, _) => Ok([Value::Float(0.0), Value::Null]),
        (Some((currency, amount)), None) => {
            let major = amount
                .as_str()
                .and_then(|text| text.parse::<f64>().ok())
                .ok_or_else(|| ComparisonError {
                    at: format!("{at}.{key}.{currency}"),
                    reason: format!("is {amount}, not a decimal string"),
                })?;
            Ok([Value::Float(major), Value::Text(currency.clone())])
        }
        _ => Ok([Value::Null, Value::Text("mixed".to_owned())]),
    }
}

/// What each side of a stage row holds: the key in the summary's stage, and its type.
const SIDE_COLUMNS: [(&str, ColumnType); 6] = [
    ("entered", ColumnType::Int),
    ("current", ColumnType::Int),
    ("converted", ColumnType::Int),
    ("conversion_rate", ColumnType::Float),
    ("median_days_in_stage", ColumnType::Float),
    ("returned", ColumnType::Int),
];

/// The names of the stage table's columns for one side.
const fn side_columns(live: bool) -> [&'static str; 6] {
    if live {
        [
            "live_entered",
            "live_current",
            "live_converted",
            "live_conversion_rate",
            "live_median_days_in_stage",
            "live_returned",
        ]
    } else {
        [
            "candidate_entered",
            "candidate_current",
            "candidate_converted",
            "candidate_conversion_rate",
            "candidate_median_days_in_stage",
            "candidate_returned",
        ]
    }
}

/// The two tables of the stored comparisons of the candidates served, by candidate name: an
/// error names the candidate and the field that is not what the comparison writes.
pub fn comparison_tables(comparisons: &[(&str, &Json)]) -> Result<[Table; 2], ComparisonError> {
    let mut columns = vec![
        ("candidate", ColumnType::Text),
        ("stage", ColumnType::Text),
        ("ordinal", ColumnType::Int),
        ("present_in", ColumnType::Text),
        ("position", ColumnType::Int),
    ];
    for live in [true, false] {
        for (name, (_, kind)) in side_columns(live).into_iter().zip(SIDE_COLUMNS) {
            columns.push((name, kind));
        }
    }
    let mut stages = Table {
        name: STAGES_TABLE,
        columns,
        rows: Vec::new(),
    };
    let mut mqls = Table {
        name: MQLS_TABLE,
        columns: vec![
            ("candidate", ColumnType::Text),
            ("mql_under", ColumnType::Text),
            ("people", ColumnType::Int),
            ("won", ColumnType::Int),
            ("lost", ColumnType::Int),
            ("open", ColumnType::Int),
            ("won_share", ColumnType::Float),
            ("revenue", ColumnType::Float),
            ("currency", ColumnType::Text),
            ("customers", ColumnType::Int),
            ("retained", ColumnType::Int),
            ("logo_retention", ColumnType::Float),
            ("starting_arr", ColumnType::Float),
            ("arr", ColumnType::Float),
            ("arr_currency", ColumnType::Text),
            ("net_retention", ColumnType::Float),
            ("nps_responses", ColumnType::Int),
            ("nps", ColumnType::Float),
            ("position", ColumnType::Int),
            ("outcomes_at", ColumnType::Int),
        ],
        rows: Vec::new(),
    };
    for (candidate, report) in comparisons {
        let named = |error: ComparisonError| ComparisonError {
            at: format!("of {candidate:?}: {}", error.at),
            reason: error.reason,
        };
        let position = count(report, "candidate.summary.position").map_err(named)?;
        let pairs = field(report, "stages")
            .map_err(named)?
            .as_array()
            .ok_or_else(|| {
                named(ComparisonError {
                    at: "stages".to_owned(),
                    reason: "is not a list".to_owned(),
                })
            })?;
        for (ordinal, pair) in pairs.iter().enumerate() {
            let at = format!("stages[{ordinal}]");
            let name = field(pair, "name")
                .ok()
                .and_then(Json::as_str)
                .ok_or_else(|| {
                    named(ComparisonError {
                        at: format!("{at}.name"),
                        reason: "is not a stage name".to_owned(),
                    })
                })?;
            let sides = [pair.get("live"), pair.get("candidate")];
            let present = match sides.map(|side| side.is_some_and(|s| !s.is_null())) {
                [true, true] => "both",
                [true, false] => "live only",
                [false, true] => "candidate only",
                [false, false] => {
                    return Err(named(ComparisonError {
                        at,
                        reason: "is in neither definition".to_owned(),
                    }));
                }
            };
            let mut row = vec![
                (*candidate).into(),
                name.into(),
                (ordinal as u64 + 1).into(),
                present.into(),
                position.clone(),
            ];
            for (side, which) in sides.into_iter().zip(["live", "candidate"]) {
                let side = side.filter(|side| !side.is_null());
                for (key, kind) in SIDE_COLUMNS {
                    let Some(side) = side else {
                        row.push(Value::Null);
                        continue;
                    };
                    let cell = match kind {
                        ColumnType::Float => rate(side, key),
                        _ => count(side, key),
                    };
                    row.push(cell.map_err(|error| {
                        named(ComparisonError {
                            at: format!("{at}.{which}.{key}"),
                            reason: error.reason,
                        })
                    })?);
                }
            }
            stages.rows.push(row);
        }
        let outcomes_at = count(report, "outcomes_at").map_err(named)?;
        for (group, under) in [
            ("mql_both", "both"),
            ("mql_only_live", "live only"),
            ("mql_only_candidate", "candidate only"),
        ] {
            let values = field(report, group).map_err(named)?;
            let [amount, currency] = revenue(values, group).map_err(named)?;
            let [starting, _] = self::amount(values, "starting_arr", group).map_err(named)?;
            let [arr, arr_currency] = self::amount(values, "arr", group).map_err(named)?;
            let at = |key: &str| format!("{group}.{key}");
            let cell = |read: fn(&Json, &str) -> Result<Value, ComparisonError>, key: &str| {
                later(read, values, key).map_err(|error| {
                    named(ComparisonError {
                        at: at(key),
                        reason: error.reason,
                    })
                })
            };
            mqls.rows.push(vec![
                (*candidate).into(),
                under.into(),
                count(values, "people").map_err(named)?,
                count(values, "won").map_err(named)?,
                count(values, "lost").map_err(named)?,
                count(values, "open").map_err(named)?,
                rate(values, "won_share").map_err(named)?,
                amount,
                currency,
                cell(count, "customers")?,
                cell(count, "retained")?,
                cell(rate, "logo_retention")?,
                starting,
                arr,
                arr_currency,
                cell(rate, "net_retention")?,
                cell(count, "nps_responses")?,
                cell(rate, "nps")?,
                position.clone(),
                outcomes_at.clone(),
            ]);
        }
    }
    Ok([stages, mqls])
}
