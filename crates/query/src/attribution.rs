//! The attribution view's tables (`docs/views.md`, *Attribution*): the models' totals and
//! their credit by channel, campaign and content from the totals, and the ledger (a row per
//! model, opportunity and credited touch) worked out from a snapshot's rows when asked for.

use crate::table::ColumnType::{Float, Int, Text, Time};
use crate::table::{Table, Value};
use baton_core::{AttributionView, DealStatus, LedgerRow, PersonRows};

/// The ledger's name.
pub(crate) const LEDGER: &str = "attribution_ledger";

/// How many rows a whole ledger may have before a request for all of it is refused (one
/// opportunity's rows are always served): a ledger holds a row per model and touch of every
/// credited opportunity, several times the events of a large history.
pub const LEDGER_ROWS_LIMIT: u64 = 500_000;

fn major(minor: i64, currency: Option<&str>) -> Value {
    Value::Float(baton_core::major_units(
        minor as f64,
        currency.unwrap_or(""),
    ))
}

/// The tables worked out from the totals, and the ledger's columns (its rows are read with
/// [`ledger`]).
pub fn attribution_tables(view: AttributionView) -> Vec<Table> {
    let mut models = Table::new(
        "attribution_models",
        &[
            ("model", Text),
            ("kind", Text),
            ("weights", Text),
            ("currency", Text),
            ("won", Int),
            ("revenue", Float),
            ("credited_revenue", Float),
            ("unattributed_revenue", Float),
            ("open", Int),
            ("pipeline", Float),
            ("credited_pipeline", Float),
            ("unattributed_pipeline", Float),
        ],
    );
    for row in view.models {
        let currency = row.currency.as_deref();
        models.push(vec![
            row.model.into(),
            row.kind.into(),
            row.weights.into(),
            row.currency.clone().into(),
            row.won.into(),
            major(row.revenue_minor, currency),
            major(row.credited_revenue_minor, currency),
            major(row.unattributed_revenue_minor, currency),
            row.open.into(),
            major(row.pipeline_minor, currency),
            major(row.credited_pipeline_minor, currency),
            major(row.unattributed_pipeline_minor, currency),
        ]);
    }
    let mut credit = Table::new(
        "attribution_credit",
        &[
            ("model", Text),
            ("dimension", Text),
            ("value", Text),
            ("currency", Text),
            ("sourced_opportunities", Int),
            ("sourced_won", Int),
            ("sourced_revenue", Float),
            ("sourced_pipeline", Float),
            ("influenced_opportunities", Int),
            ("influenced_won", Int),
            ("credited_touches", Int),
            ("credited_revenue", Float),
            ("credited_pipeline", Float),
        ],
    );
    for row in view.credit {
        let currency = row.currency.as_deref();
        credit.push(vec![
            row.model.into(),
            row.dimension.into(),
            row.value.into(),
            row.currency.clone().into(),
            row.sourced_opportunities.into(),
            row.sourced_won.into(),
            major(row.sourced_revenue_minor, currency),
            major(row.sourced_pipeline_minor, currency),
            row.influenced_opportunities.into(),
            row.influenced_won.into(),
            row.credited_touches.into(),
            major(row.credited_revenue_minor, currency),
            major(row.credited_pipeline_minor, currency),
        ]);
    }
    vec![models, credit, ledger_table(Vec::new())]
}

/// The ledger of these rows as a table.
pub fn ledger_table(rows: Vec<LedgerRow>) -> Table {
    let mut ledger = Table::new(
        LEDGER,
        &[
            ("model", Text),
            ("opportunity", Text),
            ("account", Text),
            ("status", Text),
            ("credit", Text),
            ("touch", Text),
            ("occurred_at", Time),
            ("person", Text),
            ("kind", Text),
            ("channel", Text),
            ("campaign", Text),
            ("content", Text),
            ("position", Int),
            ("touches", Int),
            ("milestones", Text),
            ("weight", Float),
            ("credited", Float),
            ("credited_minor", Int),
            ("currency", Text),
        ],
    );
    for row in rows {
        let credited = major(row.credited_minor, row.currency.as_deref());
        let credit = match row.status {
            DealStatus::Won => "revenue",
            _ => "pipeline",
        };
        ledger.push(vec![
            row.model.into(),
            row.opportunity.into(),
            row.account.into(),
            DealStatus::as_str(row.status).into(),
            credit.into(),
            row.touch.into(),
            row.occurred_at.into(),
            row.person.into(),
            row.kind.into(),
            row.channel.into(),
            row.campaign.into(),
            row.content.into(),
            row.position.into(),
            row.touches.into(),
            row.milestones.into(),
            row.weight.into(),
            credited,
            Value::Int(row.credited_minor),
            row.currency.into(),
        ]);
    }
    ledger
}

/// The ledger of a snapshot's rows: one opportunity's rows, or every row when there are at
/// most [`LEDGER_ROWS_LIMIT`]; otherwise an error saying how to ask for less.
pub fn ledger(rows: &PersonRows, opportunity: Option<&str>) -> Result<Table, String> {
    ledger_within(rows, opportunity, LEDGER_ROWS_LIMIT)
}

/// [`ledger`] with its limit given.
fn ledger_within(
    rows: &PersonRows,
    opportunity: Option<&str>,
    limit: u64,
) -> Result<Table, String> {
    if opportunity.is_none() {
        let bound = rows.attribution_ledger_bound();
        if bound > limit {
            return Err(format!(
                "{LEDGER} would hold up to {bound} rows, over the {limit} served whole: \
                 ask for one opportunity (`?opportunity=ID` over HTTP, `WHERE opportunity = 'ID'` \
                 over SQL, which also reads the whole ledger as a stream), or read the roll-ups \
                 in attribution_credit and attribution_models"
            ));
        }
    }
    Ok(ledger_table(rows.attribution_ledger(opportunity)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::example::example_event;
    use baton_core::{FunnelDefinition, FunnelProjection, Kind};

    /// Three page views of one person, then their opportunity: seven models, three touches.
    fn rows() -> PersonRows {
        let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
        for (index, kind) in [
            Kind::ContentViewed,
            Kind::ContentViewed,
            Kind::ContentViewed,
            Kind::OpportunityCreated,
        ]
        .into_iter()
        .enumerate()
        {
            projection.apply(&example_event(kind, index));
        }
        projection.refresh();
        projection.person_rows()
    }

    #[test]
    fn a_whole_ledger_over_the_limit_is_refused_with_a_way_to_ask_for_less() {
        let rows = rows();
        let whole = ledger_within(&rows, None, 100).expect("under the limit");
        assert!(!whole.rows.is_empty());
        assert!(whole.rows.len() <= 21, "{}", whole.rows.len());
        let error = ledger_within(&rows, None, 10).expect_err("over the limit");
        assert!(
            error.contains("would hold up to 21 rows, over the 10 served whole"),
            "{error}"
        );
        assert!(error.contains("`?opportunity=ID` over HTTP"), "{error}");
        // One opportunity's rows are served whatever the limit.
        let opportunity = whole.rows[0][1].clone();
        let crate::table::Value::Text(opportunity) = opportunity else {
            panic!("an opportunity id: {opportunity:?}");
        };
        let one = ledger_within(&rows, Some(&opportunity), 0).expect("one opportunity");
        assert_eq!(one.rows, whole.rows);
    }
}
