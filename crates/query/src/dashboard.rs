//! The shared dashboard: one page both teams look at, served by `baton serve` at `/`.
//!
//! The page (`assets/dashboard/`: HTML, one script, one style sheet, no build step) asks
//! `GET /v1/dashboard` for everything it shows, under the query API's read tokens, and asks
//! again every few seconds with `min_position` so it follows the log. That answer is built
//! here from one snapshot, so every panel is at one log position, which it names with the
//! definition. Each chart comes with the table behind it (the page shows it as the chart's
//! text alternative and offers it as CSV): rows of the query API's tables, or sums of them
//! said as such. Charts are drawn by `charts-rs` as SVG, on the server, in the Okabe–Ito
//! palette (distinguishable with the common colour blindnesses).
//!
//! Filters: a business-time range (`from`, `to`, RFC 3339) and a segment (`industry`,
//! `region`, `size`) apply to the tables that carry them: `handoffs` (its time, its account's
//! segment), `opportunities` (created at, its account's segment), `person_scores` and
//! `account_scores` (segment), `cohorts` (entry months in the range). The other tables are
//! whole-view aggregates; their charts say they are not filtered.

use std::collections::BTreeMap;
use std::sync::Arc;

use baton_core::Timestamp;
use serde_json::{Value as Json, json};

mod customer;

use crate::format::rows_json;
use crate::table::{ColumnType, Snapshot, Table, Value};

/// The page and what it loads, served from the binary (no CDN: it works in closed networks).
pub(crate) const PAGE: &str = include_str!("../assets/dashboard/index.html");
pub(crate) const SCRIPT: &str = include_str!("../assets/dashboard/dashboard.js");
pub(crate) const STYLE: &str = include_str!("../assets/dashboard/dashboard.css");

/// Okabe–Ito: blue, orange, bluish green, vermillion, sky blue, reddish purple, yellow, black.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000",
];
const MARKETING: &str = PALETTE[0];
const SALES: &str = PALETTE[1];
const WON: &str = PALETTE[2];
const LOST: &str = PALETTE[3];
/// Bars shown at most in a ranking chart (the table behind it has every row).
const TOP: usize = 10;

/// The dashboards built lately, by [`tag`]: pages that follow the log ask every few seconds,
/// and all of those at one position and filters share one build.
#[derive(Debug, Default)]
pub(crate) struct Built {
    kept: std::sync::Mutex<std::collections::VecDeque<(String, Arc<Json>)>>,
}

/// How many built dashboards are kept (positions × filters in use).
const KEPT: usize = 8;

impl Built {
    pub(crate) fn get(&self, tag: &str) -> Option<Arc<Json>> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.iter()
            .find(|(kept, _)| kept == tag)
            .map(|(_, body)| body.clone())
    }

    pub(crate) fn keep(&self, tag: String, body: Arc<Json>) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.iter().any(|(known, _)| *known == tag) {
            return;
        }
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((tag, body));
    }
}

/// What a built dashboard depends on: the view and position, the candidates served and
/// whether each has a comparison, and the filters. Used as the answer's ETag.
pub(crate) fn tag(snapshot: &Snapshot, candidates: &[Arc<Snapshot>], filters: &Filters) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    snapshot.view.hash(&mut hasher);
    for candidate in candidates {
        candidate.view.hash(&mut hasher);
        candidate.position.get().hash(&mut hasher);
        candidate.comparison().is_some().hash(&mut hasher);
    }
    format!("{filters:?}").hash(&mut hasher);
    format!("{}-{:016x}", snapshot.position.get(), hasher.finish())
}

/// What the dashboard is filtered by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub industry: Option<String>,
    pub region: Option<String>,
    pub size: Option<String>,
}

impl Filters {
    fn segment(&self) -> bool {
        self.industry.is_some() || self.region.is_some() || self.size.is_some()
    }

    fn time(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    fn in_range(&self, at: Option<Timestamp>) -> bool {
        if !self.time() {
            return true;
        }
        at.is_some_and(|at| {
            self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at < to)
        })
    }

    /// Whether a segment (industry, region, size) passes; an unknown segment passes only
    /// when no segment is asked for.
    fn in_segment(&self, segment: Option<[Option<&str>; 3]>) -> bool {
        if !self.segment() {
            return true;
        }
        let Some([industry, region, size]) = segment else {
            return false;
        };
        let matches = |wanted: &Option<String>, have: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| have == Some(wanted))
        };
        matches(&self.industry, industry)
            && matches(&self.region, region)
            && matches(&self.size, size)
    }

    fn json(&self) -> Json {
        json!({
            "from": self.from.map(Timestamp::to_rfc3339),
            "to": self.to.map(Timestamp::to_rfc3339),
            "industry": self.industry,
            "region": self.region,
            "size": self.size,
        })
    }
}

/// A table's column by name, and the typed reading of its cells.
struct Rows<'a> {
    table: &'a Table,
}

impl<'a> Rows<'a> {
    fn of(snapshot: &'a Snapshot, name: &str) -> Option<Rows<'a>> {
        snapshot.table(name).map(|table| Rows { table })
    }

    fn column(&self, name: &str) -> usize {
        self.table
            .columns
            .iter()
            .position(|(column, _)| *column == name)
            .unwrap_or_else(|| panic!("invariant: table {} has column {name}", self.table.name))
    }

    fn iter(&self) -> impl Iterator<Item = &'a Vec<Value>> + 'a {
        self.table.rows.iter()
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::Text(text) => Some(text),
        _ => None,
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        _ => 0,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Float(x) => Some(*x),
        Value::Int(n) => Some(*n as f64),
        _ => None,
    }
}

fn time(value: &Value) -> Option<Timestamp> {
    match value {
        Value::Time(at) => Some(*at),
        _ => None,
    }
}

/// A derived table: the sums a chart draws, with its columns.
fn derived(
    name: &'static str,
    columns: &[(&'static str, ColumnType)],
    rows: Vec<Vec<Value>>,
) -> Table {
    Table {
        name,
        columns: columns.to_vec(),
        rows,
    }
}

fn table_json(table: &Table, source: &str) -> Json {
    json!({
        "name": table.name,
        "source": source,
        "columns": table.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "rows": rows_json(table),
    })
}

/// One chart: its SVG (none without data), the table behind it, and whether filters apply.
fn chart(
    id: &str,
    title: &str,
    svg: Option<String>,
    table: &Table,
    source: &str,
    filtered: bool,
) -> Json {
    json!({
        "id": id,
        "title": title,
        "svg": svg,
        "table": table_json(table, source),
        "filtered": filtered,
    })
}

fn kpi(id: &str, label: &str, value: Json) -> Json {
    json!({"id": id, "label": label, "value": value})
}

fn number_json(value: &Value) -> Json {
    match value {
        Value::Int(n) => json!(n),
        Value::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Text(text) => json!(text),
        Value::Bool(flag) => json!(flag),
        Value::Time(at) => json!(at.to_rfc3339()),
        Value::Null => Json::Null,
    }
}

/// The first row of a one-row table, by column.
fn totals(snapshot: &Snapshot, name: &str) -> BTreeMap<&'static str, Value> {
    snapshot
        .table(name)
        .and_then(|table| {
            let row = table.rows.first()?;
            Some(
                table
                    .columns
                    .iter()
                    .map(|(column, _)| *column)
                    .zip(row.iter().cloned())
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// A series to draw: its name, values (`None`: no value) and colour; per-bar colours
/// override it.
struct Series {
    name: String,
    values: Vec<Option<f64>>,
    color: &'static str,
    bar_colors: Option<Vec<&'static str>>,
    stack: bool,
}

impl Series {
    fn new(name: &str, values: Vec<Option<f64>>, color: &'static str) -> Series {
        Series {
            name: name.to_owned(),
            values,
            color,
            bar_colors: None,
            stack: false,
        }
    }

    fn stacked(mut self) -> Series {
        self.stack = true;
        self
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Bars,
    Columns,
}

/// Draws a chart as SVG; `None` when there is nothing to draw (the page says so).
fn draw(shape: Shape, labels: &[String], series: &[Series]) -> Option<String> {
    let any = series
        .iter()
        .any(|s| s.values.iter().any(|v| v.is_some_and(|v| v != 0.0)));
    if labels.is_empty() || !any {
        return None;
    }
    let height = match shape {
        Shape::Bars => {
            70.0 + 26.0
                * labels.len() as f64
                * series.iter().filter(|s| !s.stack).count().max(1) as f64
        }
        Shape::Columns => 320.0,
    };
    // A horizontal chart draws its first category at the bottom: reversed, the list reads
    // from the top, as the table behind it does.
    let flip = matches!(shape, Shape::Bars);
    let ordered = |values: Vec<Json>| -> Vec<Json> {
        if flip {
            values.into_iter().rev().collect()
        } else {
            values
        }
    };
    let labels: Vec<Json> = ordered(labels.iter().map(|l| json!(l)).collect());
    let series_list: Vec<Json> = series
        .iter()
        .map(|s| {
            let data = s
                .values
                .iter()
                .map(|v| json!(v.map(|v| v as f32)))
                .collect();
            let mut one = json!({
                "name": s.name,
                "data": ordered(data),
                "label_show": matches!(shape, Shape::Bars),
            });
            if let Some(colors) = &s.bar_colors {
                one["colors"] = json!(ordered(colors.iter().map(|c| json!(c)).collect()));
            }
            if s.stack {
                one["stack"] = json!("total");
            }
            one
        })
        .collect();
    let config = json!({
        "width": 640,
        "height": height.min(1600.0),
        "theme": "light",
        "font_family": "Roboto",
        "margin": {"left": 8, "top": 8, "right": 56, "bottom": 8},
        "legend_show": series.len() > 1,
        "series_colors": series.iter().map(|s| s.color).collect::<Vec<_>>(),
        "series_list": series_list,
        "x_axis_data": labels,
    })
    .to_string();
    let svg = match shape {
        Shape::Bars => charts_rs::HorizontalBarChart::from_json(&config).and_then(|c| c.svg()),
        Shape::Columns => charts_rs::BarChart::from_json(&config).and_then(|c| c.svg()),
    };
    match svg {
        // The charts measure text in the Roboto they bundle; a browser without it falls back
        // to a sans-serif of the same width class rather than its default serif.
        Ok(svg) => Some(svg.replace(
            "font-family=\"Roboto\"",
            "font-family=\"Roboto, Helvetica, Arial, sans-serif\"",
        )),
        Err(error) => {
            tracing::warn!(%error, "a dashboard chart could not be drawn; its table is shown");
            None
        }
    }
}

/// The segment (industry, region, size) of every account, from `account_scores`.
fn segments(snapshot: &Snapshot) -> BTreeMap<String, [Option<String>; 3]> {
    let Some(rows) = Rows::of(snapshot, "account_scores") else {
        return BTreeMap::new();
    };
    let [account, industry, region, size] =
        ["account", "industry", "region", "size"].map(|c| rows.column(c));
    rows.iter()
        .filter_map(|row| {
            let owned = |i: usize| text(&row[i]).map(str::to_owned);
            Some((
                owned(account)?,
                [owned(industry), owned(region), owned(size)],
            ))
        })
        .collect()
}

/// Every industry, region and size an account has: what the segment filter offers.
fn segment_values(segments: &BTreeMap<String, [Option<String>; 3]>) -> Json {
    let values = |index: usize| -> Vec<&str> {
        let set: std::collections::BTreeSet<&str> = segments
            .values()
            .filter_map(|segment| segment[index].as_deref())
            .collect();
        set.into_iter().collect()
    };
    json!({"industry": values(0), "region": values(1), "size": values(2)})
}

fn segment_of<'a>(
    segments: &'a BTreeMap<String, [Option<String>; 3]>,
    account: Option<&str>,
) -> Option<[Option<&'a str>; 3]> {
    let segment = segments.get(account?)?;
    Some([
        segment[0].as_deref(),
        segment[1].as_deref(),
        segment[2].as_deref(),
    ])
}

/// Everything the dashboard shows, from one snapshot, with the served candidates' kept
/// comparisons.
pub fn dashboard(snapshot: &Snapshot, candidates: &[Arc<Snapshot>], filters: &Filters) -> Json {
    let segments = segments(snapshot);
    let funnel_totals = totals(snapshot, "funnel_totals");
    json!({
        "view": snapshot.view,
        "definition": snapshot.definition,
        "definition_hash": snapshot.definition_hash,
        "position": snapshot.position.get(),
        "as_of": funnel_totals.get("as_of").map(number_json),
        "filters": filters.json(),
        "segments": segment_values(&segments),
        "panels": [
            funnel_panel(snapshot, &funnel_totals),
            cohort_panel(snapshot, filters),
            handoff_panel(snapshot, filters, &segments, &funnel_totals),
            marketing_panel(snapshot, filters),
            sales_panel(snapshot, filters, &segments),
            customer::panel(snapshot),
            definitions_panel(snapshot, candidates),
        ],
    })
}

fn funnel_panel(snapshot: &Snapshot, funnel_totals: &BTreeMap<&'static str, Value>) -> Json {
    let marketing = totals(snapshot, "marketing_totals");
    let get = |map: &BTreeMap<&'static str, Value>, key: &str| {
        map.get(key).map_or(Json::Null, number_json)
    };
    let mut charts = Vec::new();
    if let Some(rows) = Rows::of(snapshot, "stages") {
        let [stage, owner, entered] = ["stage", "owner", "entered"].map(|c| rows.column(c));
        let labels: Vec<String> = rows
            .iter()
            .map(|row| text(&row[stage]).unwrap_or_default().to_owned())
            .collect();
        let colors: Vec<&'static str> = rows
            .iter()
            .map(|row| {
                let name = text(&row[stage]).unwrap_or_default();
                match (name, text(&row[owner])) {
                    ("won", _) => WON,
                    ("lost", _) => LOST,
                    (_, Some("sales")) => SALES,
                    _ => MARKETING,
                }
            })
            .collect();
        let mut series = Series::new(
            "entered",
            rows.iter()
                .map(|row| Some(int(&row[entered]) as f64))
                .collect(),
            MARKETING,
        );
        series.bar_colors = Some(colors);
        charts.push(chart(
            "funnel-stages",
            "People who entered each stage (marketing blue, sales orange, won green, lost vermillion)",
            draw(Shape::Bars, &labels, &[series]),
            rows.table,
            "/v1/views/stages",
            false,
        ));
    }
    json!({
        "id": "funnel",
        "title": "Funnel",
        "kpis": [
            kpi("people", "People", get(funnel_totals, "people")),
            kpi("mqls", "MQLs", get(&marketing, "mqls")),
            kpi("won_deals", "Deals won", get(funnel_totals, "won_deals")),
            kpi("revenue", "Revenue", get(funnel_totals, "revenue")),
            kpi("currency", "Currency", get(funnel_totals, "currency")),
        ],
        "charts": charts,
    })
}

fn cohort_panel(snapshot: &Snapshot, filters: &Filters) -> Json {
    let mut charts = Vec::new();
    if let Some(rows) = Rows::of(snapshot, "cohorts") {
        let [cohort, stage, converted, in_flight, dropped] =
            ["cohort", "stage", "converted", "in_flight", "dropped"].map(|c| rows.column(c));
        let month = |text: &str| Timestamp::parse_rfc3339(&format!("{text}-01T00:00:00Z")).ok();
        let in_range = |row: &Vec<Value>| {
            let Some(start) = text(&row[cohort]).and_then(month) else {
                return !filters.time();
            };
            // A month is in the range when it overlaps it.
            let end = start.add_millis(31 * Timestamp::MILLIS_PER_DAY);
            filters.from.is_none_or(|from| end > from) && filters.to.is_none_or(|to| start < to)
        };
        let kept: Vec<Vec<Value>> = rows.iter().filter(|row| in_range(row)).cloned().collect();
        let table = derived("cohorts", &rows.table.columns, kept);
        // One chart per cohort month, for the hand-off stage: converted, in flight, dropped.
        let focus = focus_stage(snapshot);
        let months: Vec<String> = {
            let mut months: Vec<String> = table
                .rows
                .iter()
                .filter_map(|row| text(&row[cohort]).map(str::to_owned))
                .collect();
            months.dedup();
            months
        };
        let of = |column: usize| -> Vec<Option<f64>> {
            months
                .iter()
                .map(|m| {
                    table
                        .rows
                        .iter()
                        .find(|row| {
                            text(&row[cohort]) == Some(m.as_str())
                                && text(&row[stage]) == Some(focus.as_str())
                        })
                        .map(|row| int(&row[column]) as f64)
                })
                .collect()
        };
        charts.push(chart(
            "cohorts",
            &format!("Cohorts by month of entry: of those who reached {focus}, converted, in flight and dropped"),
            draw(
                Shape::Columns,
                &months,
                &[
                    Series::new("converted", of(converted), WON).stacked(),
                    Series::new("in flight", of(in_flight), PALETTE[4]).stacked(),
                    Series::new("dropped", of(dropped), LOST).stacked(),
                ],
            ),
            &table,
            "/v1/views/cohorts",
            filters.time(),
        ));
    }
    json!({"id": "cohorts", "title": "Cohort conversion", "kpis": [], "charts": charts})
}

/// The MQL stage's name: the stage the hand-off to sales happens at (the first stage owned
/// by sales comes after it), else the first stage.
fn focus_stage(snapshot: &Snapshot) -> String {
    let Some(stages) = snapshot.table("stages") else {
        return String::new();
    };
    let names: Vec<(&str, &str)> = stages
        .rows
        .iter()
        .filter_map(|row| Some((text(&row[0])?, text(&row[1])?)))
        .collect();
    let first_sales = names.iter().position(|(_, owner)| *owner == "sales");
    match first_sales {
        Some(index) if index > 0 => names[index - 1].0.to_owned(),
        _ => names
            .first()
            .map(|(name, _)| (*name).to_owned())
            .unwrap_or_default(),
    }
}

/// The Monday (UTC) of an instant's ISO week, as a date.
fn week_of(at: Timestamp) -> String {
    let day = at.unix_millis().div_euclid(Timestamp::MILLIS_PER_DAY);
    // 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
    let monday = day - (day + 3).rem_euclid(7);
    let text = Timestamp::from_unix_millis(monday * Timestamp::MILLIS_PER_DAY).to_rfc3339();
    text[..10].to_owned()
}

fn handoff_panel(
    snapshot: &Snapshot,
    filters: &Filters,
    segments: &BTreeMap<String, [Option<String>; 3]>,
    funnel_totals: &BTreeMap<&'static str, Value>,
) -> Json {
    let get = |key: &str| funnel_totals.get(key).map_or(Json::Null, number_json);
    let mut charts = Vec::new();
    if let Some(rows) = Rows::of(snapshot, "handoffs") {
        let [at, direction, account] = ["at", "direction", "account"].map(|c| rows.column(c));
        let mut weeks: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in rows.iter() {
            let when = time(&row[at]);
            if !filters.in_range(when)
                || !filters.in_segment(segment_of(segments, text(&row[account])))
            {
                continue;
            }
            let Some(when) = when else { continue };
            let week = weeks.entry(week_of(when)).or_default();
            match text(&row[direction]) {
                Some("to_sales") => week.0 += 1,
                _ => week.1 += 1,
            }
        }
        let labels: Vec<String> = weeks.keys().cloned().collect();
        let table = derived(
            "handoffs_by_week",
            &[
                ("week", ColumnType::Text),
                ("to_sales", ColumnType::Int),
                ("to_marketing", ColumnType::Int),
            ],
            weeks
                .iter()
                .map(|(week, (to_sales, back))| {
                    vec![
                        week.clone().into(),
                        Value::Int(*to_sales),
                        Value::Int(*back),
                    ]
                })
                .collect(),
        );
        charts.push(chart(
            "handoffs-weekly",
            "Hand-offs to sales and hand-backs to marketing, per week (weeks start on Monday)",
            draw(
                Shape::Columns,
                &labels,
                &[
                    Series::new(
                        "to sales",
                        weeks.values().map(|w| Some(w.0 as f64)).collect(),
                        SALES,
                    ),
                    Series::new(
                        "to marketing",
                        weeks.values().map(|w| Some(w.1 as f64)).collect(),
                        MARKETING,
                    ),
                ],
            ),
            &table,
            "/v1/views/handoffs (counted per week)",
            filters.time() || filters.segment(),
        ));
    }
    if let Some(rows) = Rows::of(snapshot, "sla_by_owner") {
        let [owner, breached, untouched] =
            ["owner", "breached", "untouched"].map(|c| rows.column(c));
        let labels: Vec<String> = rows
            .iter()
            .map(|row| text(&row[owner]).unwrap_or("(none)").to_owned())
            .collect();
        charts.push(chart(
            "sla-by-owner",
            "Follow-up SLA by owner: hand-offs breached and untouched",
            draw(
                Shape::Bars,
                &labels,
                &[
                    Series::new(
                        "breached",
                        rows.iter()
                            .map(|r| Some(int(&r[breached]) as f64))
                            .collect(),
                        LOST,
                    ),
                    Series::new(
                        "untouched",
                        rows.iter()
                            .map(|r| Some(int(&r[untouched]) as f64))
                            .collect(),
                        PALETTE[5],
                    ),
                ],
            ),
            rows.table,
            "/v1/views/sla_by_owner",
            false,
        ));
    }
    json!({
        "id": "handoffs",
        "title": "Hand-offs",
        "kpis": [
            kpi("handoffs", "Hand-offs", get("handoffs")),
            kpi("handbacks", "Hand-backs", get("handbacks")),
            kpi("ping_pong_journeys", "Ping-pong journeys", get("ping_pong_journeys")),
            kpi("follow_up_breached", "Follow-ups breached", get("follow_up_breached")),
            kpi("follow_up_untouched", "Follow-ups untouched", get("follow_up_untouched")),
            kpi("median_hours_to_first_action", "Median hours to first action", get("median_hours_to_first_action")),
            kpi("p90_hours_to_first_action", "p90 hours to first action", get("p90_hours_to_first_action")),
        ],
        "charts": charts,
    })
}

/// The top rows of a table by a money column (then by name), as a ranking chart.
fn ranking(
    snapshot: &Snapshot,
    name: &str,
    key: &str,
    columns: [(&str, &str, &'static str); 2],
) -> Option<(Vec<String>, Vec<Series>, Table)> {
    let rows = Rows::of(snapshot, name)?;
    let key = rows.column(key);
    let indexes = columns.map(|(column, _, _)| rows.column(column));
    let mut ranked: Vec<&Vec<Value>> = rows.iter().collect();
    ranked.sort_by(|a, b| {
        let value = |row: &Vec<Value>| float(&row[indexes[0]]).unwrap_or(0.0);
        value(b)
            .total_cmp(&value(a))
            .then_with(|| text(&a[key]).cmp(&text(&b[key])))
    });
    ranked.truncate(TOP);
    let shown = derived(
        rows.table.name,
        &rows.table.columns,
        ranked.iter().map(|row| (*row).clone()).collect(),
    );
    let labels = ranked
        .iter()
        .map(|row| text(&row[key]).unwrap_or("(none)").to_owned())
        .collect();
    let series = columns
        .iter()
        .zip(indexes)
        .map(|((_, label, color), index)| {
            Series::new(
                label,
                ranked.iter().map(|row| float(&row[index])).collect(),
                color,
            )
        })
        .collect();
    Some((labels, series, shown))
}

fn marketing_panel(snapshot: &Snapshot, filters: &Filters) -> Json {
    let marketing = totals(snapshot, "marketing_totals");
    let get = |key: &str| marketing.get(key).map_or(Json::Null, number_json);
    let mut charts = Vec::new();
    for (id, table, key, title) in [
        (
            "campaigns",
            "campaigns",
            "campaign",
            "Campaigns by influenced pipeline and revenue (top 10)",
        ),
        (
            "content",
            "content",
            "content",
            "Content by influenced pipeline (top 10)",
        ),
    ] {
        let columns = if table == "campaigns" {
            [
                ("influenced_pipeline", "influenced pipeline", MARKETING),
                ("influenced_revenue", "influenced revenue", WON),
            ]
        } else {
            [
                ("influenced_pipeline", "influenced pipeline", MARKETING),
                (
                    "influenced_opportunities",
                    "influenced opportunities",
                    SALES,
                ),
            ]
        };
        if let Some((labels, series, rows)) = ranking(snapshot, table, key, columns) {
            let series = if table == "content" {
                series.into_iter().take(1).collect()
            } else {
                series
            };
            charts.push(chart(
                id,
                title,
                draw(Shape::Bars, &labels, &series),
                &rows,
                &format!("/v1/views/{table} (the {TOP} with the most influenced pipeline)"),
                false,
            ));
        }
    }
    if let Some(rows) = Rows::of(snapshot, "person_scores") {
        let [engagement, industry, region, size] =
            ["engagement", "industry", "region", "size"].map(|c| rows.column(c));
        const BANDS: [(&str, f64); 6] = [
            ("below 0", 0.0),
            ("0-10", 10.0),
            ("10-20", 20.0),
            ("20-40", 40.0),
            ("40-80", 80.0),
            ("80 and up", f64::INFINITY),
        ];
        let mut counts = [0i64; 6];
        for row in rows.iter() {
            let segment = [text(&row[industry]), text(&row[region]), text(&row[size])];
            if !filters.in_segment(Some(segment)) {
                continue;
            }
            let score = float(&row[engagement]).unwrap_or(0.0);
            let band = BANDS
                .iter()
                .position(|(_, below)| score < *below)
                .unwrap_or(5);
            counts[band] += 1;
        }
        let labels: Vec<String> = BANDS.iter().map(|(name, _)| (*name).to_owned()).collect();
        let table = derived(
            "engagement_bands",
            &[
                ("engagement", ColumnType::Text),
                ("people", ColumnType::Int),
            ],
            labels
                .iter()
                .zip(counts)
                .map(|(label, n)| vec![label.clone().into(), Value::Int(n)])
                .collect(),
        );
        charts.push(chart(
            "engagement",
            "People by engagement score (decayed to as_of)",
            draw(
                Shape::Columns,
                &labels,
                &[Series::new(
                    "people",
                    counts.iter().map(|n| Some(*n as f64)).collect(),
                    MARKETING,
                )],
            ),
            &table,
            "/v1/views/person_scores (counted per band)",
            filters.segment(),
        ));
    }
    json!({
        "id": "marketing",
        "title": "Marketing",
        "kpis": [
            kpi("mqls", "MQLs", get("mqls")),
            kpi("mql_people", "MQL people", get("mql_people")),
            kpi("acceptance_rate", "Acceptance rate", get("acceptance_rate")),
            kpi("recycled", "Recycled", get("recycled")),
            kpi("disqualified", "Disqualified", get("disqualified")),
        ],
        "charts": charts,
    })
}

fn sales_panel(
    snapshot: &Snapshot,
    filters: &Filters,
    segments: &BTreeMap<String, [Option<String>; 3]>,
) -> Json {
    let sales = totals(snapshot, "sales_totals");
    let get = |key: &str| sales.get(key).map_or(Json::Null, number_json);
    let mut charts = Vec::new();
    let filtered = filters.time() || filters.segment();
    if let Some(rows) = Rows::of(snapshot, "opportunities") {
        let [account, created, stage, status, amount, currency, reason] = [
            "account",
            "created_at",
            "stage",
            "status",
            "amount",
            "currency",
            "loss_reason",
        ]
        .map(|c| rows.column(c));
        let kept: Vec<&Vec<Value>> = rows
            .iter()
            .filter(|row| {
                filters.in_range(time(&row[created]))
                    && filters.in_segment(segment_of(segments, text(&row[account])))
            })
            .collect();
        // Open opportunities by CRM stage: count and amount (one currency, else none).
        let mut stages: BTreeMap<String, (i64, f64, Option<String>, bool)> = BTreeMap::new();
        let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
        for row in &kept {
            match text(&row[status]) {
                Some("open") => {
                    let entry = stages
                        .entry(text(&row[stage]).unwrap_or("(none)").to_owned())
                        .or_insert((0, 0.0, None, false));
                    entry.0 += 1;
                    if let (Some(value), Some(code)) = (float(&row[amount]), text(&row[currency])) {
                        entry.1 += value;
                        match &entry.2 {
                            None => entry.2 = Some(code.to_owned()),
                            Some(known) if known != code => entry.3 = true,
                            _ => {}
                        }
                    }
                }
                Some("lost") => {
                    *reasons
                        .entry(text(&row[reason]).unwrap_or("(none)").to_owned())
                        .or_default() += 1;
                }
                _ => {}
            }
        }
        let labels: Vec<String> = stages.keys().cloned().collect();
        let table = derived(
            "pipeline",
            &[
                ("stage", ColumnType::Text),
                ("opportunities", ColumnType::Int),
                ("amount", ColumnType::Float),
                ("currency", ColumnType::Text),
            ],
            stages
                .iter()
                .map(|(name, (n, sum, code, mixed))| {
                    let (amount, code) = match (code, mixed) {
                        (_, true) => (Value::Null, Value::Text("mixed".into())),
                        (Some(code), false) => (Value::Float(*sum), Value::Text(code.clone())),
                        (None, false) => (Value::Null, Value::Null),
                    };
                    vec![name.clone().into(), Value::Int(*n), amount, code]
                })
                .collect(),
        );
        charts.push(chart(
            "pipeline",
            "Open pipeline by CRM stage: opportunities",
            draw(
                Shape::Bars,
                &labels,
                &[Series::new(
                    "opportunities",
                    stages.values().map(|s| Some(s.0 as f64)).collect(),
                    SALES,
                )],
            ),
            &table,
            "/v1/views/opportunities?status=open (counted per stage)",
            filtered,
        ));
        let mut ranked: Vec<(String, i64)> = reasons.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let labels: Vec<String> = ranked.iter().map(|(r, _)| r.clone()).collect();
        let table = derived(
            "loss_reasons",
            &[
                ("reason", ColumnType::Text),
                ("opportunities", ColumnType::Int),
            ],
            ranked
                .iter()
                .map(|(r, n)| vec![r.clone().into(), Value::Int(*n)])
                .collect(),
        );
        charts.push(chart(
            "loss-reasons",
            "Lost opportunities by reason",
            draw(
                Shape::Bars,
                &labels,
                &[Series::new(
                    "lost",
                    ranked.iter().map(|(_, n)| Some(*n as f64)).collect(),
                    LOST,
                )],
            ),
            &table,
            "/v1/views/opportunities?status=lost (counted per reason)",
            filtered,
        ));
    }
    json!({
        "id": "sales",
        "title": "Sales",
        "kpis": [
            kpi("open", "Open opportunities", get("open")),
            kpi("won", "Won", get("won")),
            kpi("lost", "Lost", get("lost")),
            kpi("win_rate", "Win rate", get("win_rate")),
            kpi("cycle_days_median", "Median cycle (days)", get("cycle_days_median")),
            kpi("average_deal", "Average deal", get("average_deal")),
            kpi("velocity_per_day", "Velocity per day", get("velocity_per_day")),
            kpi("currency", "Currency", get("currency")),
        ],
        "charts": charts,
    })
}

fn definitions_panel(snapshot: &Snapshot, candidates: &[Arc<Snapshot>]) -> Json {
    let candidates: Vec<Json> = candidates
        .iter()
        .map(|candidate| {
            let comparison = candidate.comparison().map(|report| {
                let pairs = report["stages"].as_array().cloned().unwrap_or_default();
                let labels: Vec<String> = pairs
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                let side = |which: &str| -> Vec<Option<f64>> {
                    pairs.iter().map(|p| p[which]["entered"].as_f64()).collect()
                };
                let svg = draw(
                    Shape::Bars,
                    &labels,
                    &[
                        Series::new("live", side("live"), MARKETING),
                        Series::new("candidate", side("candidate"), PALETTE[5]),
                    ],
                );
                json!({"svg": svg, "report": report})
            });
            json!({
                "view": candidate.view,
                "definition": candidate.definition,
                "definition_hash": candidate.definition_hash,
                "position": candidate.position.get(),
                "comparison": comparison,
                "promote": format!("baton promote {}", candidate.view),
                "compare": format!("baton compare {}", candidate.view),
            })
        })
        .collect();
    json!({
        "id": "definitions",
        "title": "Definitions",
        "live": {
            "view": snapshot.view,
            "definition": snapshot.definition,
            "definition_hash": snapshot.definition_hash,
        },
        "candidates": candidates,
        "kpis": [],
        "charts": [],
    })
}
