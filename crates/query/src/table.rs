//! The views as tables: named, typed columns and rows, the one shape that JSON, CSV and SQL
//! are all produced from. Column names and meanings are documented in `docs/views.md`.

use baton_core::{
    AccountScoreRow, Amounts, DealStatus, Direction, FunnelProjection, FunnelSummary, HandoffRow,
    MarketingView, OpportunityRow, Owner, PersonRows, PersonScoreRow, SalesView, SharedView,
    Timestamp,
};
use std::sync::{Arc, OnceLock};

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    Float,
    Bool,
    /// RFC 3339, UTC.
    Time,
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(Timestamp),
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Self {
        Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<Timestamp> for Value {
    fn from(value: Timestamp) -> Self {
        Value::Time(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// A view's table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub columns: Vec<(&'static str, ColumnType)>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub(crate) fn new(name: &'static str, columns: &[(&'static str, ColumnType)]) -> Table {
        Table {
            name,
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len(), "table {}", self.name);
        self.rows.push(row);
    }
}

use ColumnType::{Float, Int, Text, Time};

/// A money column: the amount in major units when it is in one currency (`NULL` when there
/// is none or several), with the currency's own decimal places (ISO 4217: none for JPY,
/// three for KWD), and the currency (`mixed` when several).
pub(crate) fn money(amounts: &Amounts) -> [Value; 2] {
    match amounts.as_slice() {
        [] => [Value::Null, Value::Null],
        [(currency, minor)] => [
            Value::Float(baton_core::major_units(*minor as f64, currency)),
            Value::Text(currency.clone()),
        ],
        _ => [Value::Null, Value::Text("mixed".to_owned())],
    }
}

/// A second money column sharing another's currency column: `NULL` unless it is in that
/// currency (or there is none).
pub(crate) fn money_in(amounts: &Amounts, currency: &Value) -> Value {
    match (money(amounts), currency) {
        ([amount, Value::Text(mine)], Value::Text(theirs)) if mine == *theirs => amount,
        ([_, Value::Null], _) => Value::Float(0.0),
        _ => Value::Null,
    }
}

fn owner(owner: Option<Owner>) -> Value {
    owner.map(Owner::as_str).into()
}

/// The marketing view's tables.
pub fn marketing_tables(mut view: MarketingView) -> Vec<Table> {
    let mut nurture = Table::new(
        "nurture",
        &[("place", Text), ("age", Text), ("people", Int)],
    );
    for row in &view.nurture {
        nurture.push(vec![
            row.place.as_str().into(),
            row.age.into(),
            row.people.into(),
        ]);
    }
    let people = person_scores_table(std::mem::take(&mut view.people));
    let accounts = account_scores_table(&view.accounts);
    let mut content = Table::new(
        "content",
        &[
            ("content", Text),
            ("views", Int),
            ("touches", Int),
            ("people", Int),
            ("accounts", Int),
            ("demo_requests_after", Int),
            ("influenced_opportunities", Int),
            ("influenced_pipeline", Float),
            ("currency", Text),
        ],
    );
    for row in &view.content {
        let [pipeline, currency] = money(&row.influenced_pipeline);
        content.push(vec![
            row.content.as_str().into(),
            row.views.into(),
            row.touches.into(),
            row.people.into(),
            row.accounts.into(),
            row.demo_requests_after.into(),
            row.influenced_opportunities.into(),
            pipeline,
            currency,
        ]);
    }
    let mut campaigns = Table::new(
        "campaigns",
        &[
            ("campaign", Text),
            ("touches", Int),
            ("people", Int),
            ("accounts", Int),
            ("mqls_after", Int),
            ("influenced_opportunities", Int),
            ("influenced_pipeline", Float),
            ("influenced_won", Int),
            ("influenced_revenue", Float),
            ("currency", Text),
        ],
    );
    for row in &view.campaigns {
        let [pipeline, currency] = money(&row.influenced_pipeline);
        let revenue = money_in(&row.influenced_revenue, &currency);
        campaigns.push(vec![
            row.campaign.as_str().into(),
            row.touches.into(),
            row.people.into(),
            row.accounts.into(),
            row.mqls_after.into(),
            row.influenced_opportunities.into(),
            pipeline,
            row.influenced_won.into(),
            revenue,
            currency,
        ]);
    }
    let mut totals = Table::new(
        "marketing_totals",
        &[
            ("as_of", Time),
            ("mqls", Int),
            ("mql_people", Int),
            ("re_mql_people", Int),
            ("recycled", Int),
            ("disqualified", Int),
            ("handoffs", Int),
            ("accepted", Int),
            ("rejected", Int),
            ("acceptance_rate", Float),
            ("touches_before_demo_median", Float),
            ("touches_before_demo_mean", Float),
        ],
    );
    totals.push(vec![
        view.as_of.into(),
        view.mqls.into(),
        view.mql_people.into(),
        view.re_mql_people.into(),
        view.recycled.into(),
        view.disqualified.into(),
        view.handoffs.into(),
        view.accepted.into(),
        view.rejected.into(),
        view.acceptance_rate().into(),
        view.touches_before_demo_median.into(),
        view.touches_before_demo_mean.into(),
    ]);
    vec![
        totals,
        nurture,
        attribution_table(&view.attribution),
        campaigns,
        content,
        accounts,
        people,
    ]
}

fn attribution_table(rows: &[baton_core::AttributionRow]) -> Table {
    let mut table = Table::new(
        "attribution",
        &[
            ("dimension", Text),
            ("value", Text),
            ("people", Int),
            ("mql_people", Int),
            ("opportunities", Int),
            ("pipeline", Float),
            ("won", Int),
            ("revenue", Float),
            ("currency", Text),
        ],
    );
    for row in rows {
        let [pipeline, currency] = money(&row.pipeline);
        let revenue = money_in(&row.revenue, &currency);
        table.push(vec![
            row.dimension.into(),
            row.value.as_str().into(),
            row.people.into(),
            row.mql_people.into(),
            row.opportunities.into(),
            pipeline,
            row.won.into(),
            revenue,
            currency,
        ]);
    }
    table
}

/// The sales view's tables.
pub fn sales_tables(mut view: SalesView) -> Vec<Table> {
    let mut totals = Table::new(
        "sales_totals",
        &[
            ("as_of", Time),
            ("open", Int),
            ("won", Int),
            ("lost", Int),
            ("win_rate", Float),
            ("proposals_sent", Int),
            ("proposal_opportunities", Int),
            ("proposal_won", Int),
            ("proposal_lost", Int),
            ("proposal_open", Int),
            ("cycle_days_median", Float),
            ("cycle_days_mean", Float),
            ("average_deal", Float),
            ("velocity_per_day", Float),
            ("currency", Text),
        ],
    );
    let [average, currency] = money(&view.average_deal);
    let velocity = match view.velocity_per_day.as_slice() {
        [(currency, velocity)] => Value::Float(baton_core::major_units(*velocity, currency)),
        _ => Value::Null,
    };
    totals.push(vec![
        view.as_of.into(),
        view.open.into(),
        view.won.into(),
        view.lost.into(),
        view.win_rate().into(),
        view.proposals_sent.into(),
        view.proposal_opportunities.into(),
        view.proposal_won.into(),
        view.proposal_lost.into(),
        view.proposal_open.into(),
        view.cycle_days_median.into(),
        view.cycle_days_mean.into(),
        average,
        velocity,
        currency,
    ]);
    let mut sla = Table::new(
        "sla_by_owner",
        &[
            ("owner", Text),
            ("handoffs", Int),
            ("responded", Int),
            ("breached", Int),
            ("untouched", Int),
            ("median_hours_to_first_action", Float),
            ("p90_hours_to_first_action", Float),
        ],
    );
    for row in &view.sla_by_owner {
        sla.push(vec![
            row.owner.as_str().into(),
            row.handoffs.into(),
            row.responded.into(),
            row.breached.into(),
            row.untouched.into(),
            row.median_hours_to_first_action.into(),
            row.p90_hours_to_first_action.into(),
        ]);
    }
    let mut pipeline = Table::new(
        "pipeline",
        &[
            ("stage", Text),
            ("opportunities", Int),
            ("amount", Float),
            ("currency", Text),
        ],
    );
    for row in &view.pipeline {
        let [amount, currency] = money(&row.amount);
        pipeline.push(vec![
            row.stage.as_str().into(),
            row.opportunities.into(),
            amount,
            currency,
        ]);
    }
    let mut reasons = Table::new("loss_reasons", &[("reason", Text), ("opportunities", Int)]);
    for (reason, count) in &view.loss_reasons {
        reasons.push(vec![reason.as_str().into(), (*count).into()]);
    }
    let opportunities = opportunities_table(std::mem::take(&mut view.opportunities));
    vec![totals, sla, pipeline, reasons, opportunities]
}

/// The summary's stage lines.
pub fn stages_table(summary: &FunnelSummary) -> Table {
    let mut stages = Table::new(
        "stages",
        &[
            ("stage", Text),
            ("owner", Text),
            ("entered", Int),
            ("current", Int),
            ("converted", Int),
            ("conversion_rate", Float),
            ("median_days_in_stage", Float),
            ("returned", Int),
        ],
    );
    for stage in &summary.stages {
        stages.push(vec![
            stage.name.as_str().into(),
            stage.owner.as_str().into(),
            stage.entered.into(),
            stage.current.into(),
            stage.converted.into(),
            stage.conversion_rate().into(),
            stage.median_days_in_stage.into(),
            stage.returned.into(),
        ]);
    }
    stages
}

/// The shared-funnel view's tables.
pub fn shared_tables(mut view: SharedView) -> Vec<Table> {
    let summary = &view.summary;
    let mut totals = Table::new(
        "funnel_totals",
        &[
            ("definition", Text),
            ("definition_hash", Text),
            ("as_of", Time),
            ("events", Int),
            ("people", Int),
            ("won_deals", Int),
            ("revenue", Float),
            ("currency", Text),
            ("handoffs", Int),
            ("handbacks", Int),
            ("ping_pong_journeys", Int),
            ("follow_up_mqls", Int),
            ("follow_up_breached", Int),
            ("follow_up_untouched", Int),
            ("median_hours_to_first_action", Float),
            ("p90_hours_to_first_action", Float),
        ],
    );
    let [revenue, currency] = money(&summary.revenue_minor_units);
    totals.push(vec![
        summary.definition.as_str().into(),
        summary.definition_hash.as_str().into(),
        summary.follow_up.as_of.into(),
        summary.events.into(),
        summary.people.into(),
        summary.won_deals.into(),
        revenue,
        currency,
        summary.handoffs.into(),
        summary.handbacks.into(),
        summary.ping_pong_journeys.into(),
        summary.follow_up.mqls.into(),
        summary.follow_up.breached.into(),
        summary.follow_up.untouched.into(),
        summary.follow_up.median_hours_to_first_action.into(),
        summary.follow_up.p90_hours_to_first_action.into(),
    ]);
    let mut cohorts = Table::new(
        "cohorts",
        &[
            ("cohort", Text),
            ("stage", Text),
            ("reached", Int),
            ("converted", Int),
            ("in_flight", Int),
            ("dropped", Int),
            ("conversion_rate", Float),
        ],
    );
    for row in &view.cohorts {
        cohorts.push(vec![
            row.cohort.as_str().into(),
            row.stage.as_str().into(),
            row.reached.into(),
            row.converted.into(),
            row.in_flight.into(),
            row.dropped.into(),
            row.conversion_rate().into(),
        ]);
    }
    let handoffs = handoffs_table(std::mem::take(&mut view.handoffs));
    // Pipeline and revenue by source is the marketing view's `attribution` table (the same
    // rows); table names are unique across the three views, so they share one SQL schema.
    vec![totals, stages_table(summary), cohorts, handoffs]
}

/// The `person_scores` table of these rows.
pub fn person_scores_table(rows: Vec<PersonScoreRow>) -> Table {
    let mut people = Table::new(
        "person_scores",
        &[
            ("person", Text),
            ("account", Text),
            ("industry", Text),
            ("region", Text),
            ("size", Text),
            ("place", Text),
            ("owner", Text),
            ("engagement", Float),
            ("fit", Float),
            ("mqls", Int),
        ],
    );
    // The row-level tables move their strings instead of copying them: at millions of events
    // they are most of a snapshot's cells.
    for row in rows {
        let size = row.segment.size();
        people.push(vec![
            row.person.into(),
            row.account.into(),
            row.segment.industry.into(),
            row.segment.region.into(),
            size.into(),
            row.place.into(),
            owner(row.owner),
            row.engagement.into(),
            row.fit.into(),
            row.mqls.into(),
        ]);
    }
    people
}

/// The `account_scores` table of these rows.
pub fn account_scores_table(rows: &[AccountScoreRow]) -> Table {
    let mut accounts = Table::new(
        "account_scores",
        &[
            ("account", Text),
            ("industry", Text),
            ("region", Text),
            ("size", Text),
            ("employees", Int),
            ("people", Int),
            ("engaged_people", Int),
            ("mql_people", Int),
            ("engagement_total", Float),
            ("engagement_max", Float),
            ("fit_max", Float),
            ("furthest_stage", Text),
        ],
    );
    for row in rows {
        accounts.push(vec![
            row.account.as_str().into(),
            row.segment.industry.clone().into(),
            row.segment.region.clone().into(),
            row.segment.size().into(),
            row.segment.employees.map(u64::from).into(),
            row.people.into(),
            row.engaged_people.into(),
            row.mql_people.into(),
            row.engagement_total.into(),
            row.engagement_max.into(),
            row.fit_max.into(),
            row.furthest_stage.clone().into(),
        ]);
    }
    accounts
}

/// The `opportunities` table of these rows.
pub fn opportunities_table(rows: Vec<OpportunityRow>) -> Table {
    let mut opportunities = Table::new(
        "opportunities",
        &[
            ("opportunity", Text),
            ("person", Text),
            ("account", Text),
            ("created_at", Time),
            ("stage", Text),
            ("status", Text),
            ("closed_at", Time),
            ("amount", Float),
            ("currency", Text),
            ("proposals", Int),
            ("loss_reason", Text),
            ("proposal_amount", Float),
            ("owner", Text),
            ("first_touch_channel", Text),
            ("first_touch_campaign", Text),
        ],
    );
    for row in rows {
        let proposal = match (row.proposal_amount_minor, &row.currency) {
            (Some(minor), Some(currency)) => {
                Value::Float(baton_core::major_units(minor as f64, currency))
            }
            _ => Value::Null,
        };
        opportunities.push(vec![
            row.opportunity.into(),
            row.person.into(),
            row.account.into(),
            row.created_at.into(),
            row.stage.into(),
            DealStatus::as_str(row.status).into(),
            row.closed_at.into(),
            match (row.amount_minor, &row.currency) {
                (Some(minor), Some(currency)) => {
                    Value::Float(baton_core::major_units(minor as f64, currency))
                }
                // An amount without a currency: the two decimal places of most currencies.
                (Some(minor), None) => Value::Float(baton_core::major_units(minor as f64, "")),
                (None, _) => Value::Null,
            },
            row.currency.into(),
            row.proposals.into(),
            row.loss_reason.into(),
            proposal,
            row.owner.into(),
            row.first_touch_channel.into(),
            row.first_touch_campaign.into(),
        ]);
    }
    opportunities
}

/// The `handoffs` table of these rows.
pub fn handoffs_table(rows: Vec<HandoffRow>) -> Table {
    let mut handoffs = Table::new(
        "handoffs",
        &[
            ("person", Text),
            ("account", Text),
            ("at", Time),
            ("direction", Text),
            ("cause_event_id", Text),
            ("sequence", Int),
            ("ping_pongs", Int),
        ],
    );
    for row in rows {
        let direction = match row.direction {
            Direction::ToSales => "to_sales",
            Direction::ToMarketing => "to_marketing",
        };
        handoffs.push(vec![
            row.person.into(),
            row.account.into(),
            row.at.into(),
            direction.into(),
            row.cause.to_string().into(),
            row.sequence.into(),
            row.ping_pongs.into(),
        ]);
    }
    handoffs
}

/// Which view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    Marketing,
    Sales,
    Funnel,
    Customer,
    Attribution,
}

impl ViewKind {
    pub const ALL: [ViewKind; 5] = [
        ViewKind::Marketing,
        ViewKind::Sales,
        ViewKind::Funnel,
        ViewKind::Customer,
        ViewKind::Attribution,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ViewKind::Marketing => "marketing",
            ViewKind::Sales => "sales",
            ViewKind::Funnel => "funnel",
            ViewKind::Customer => "customer",
            ViewKind::Attribution => "attribution",
        }
    }

    pub fn from_name(name: &str) -> Option<ViewKind> {
        ViewKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The tables worked out only when read: a row per person, per account, per hand-off. A
/// snapshot holds the rows they come from (shared with the projection, see
/// [`baton_core::PersonRows`]) and builds each of these tables the first time it is read.
const ROW_TABLES: [(&str, ViewKind); 4] = [
    ("person_scores", ViewKind::Marketing),
    ("account_scores", ViewKind::Marketing),
    ("opportunities", ViewKind::Sales),
    ("handoffs", ViewKind::Funnel),
];

/// The tables of every view of a refreshed projection, at one log position: what one HTTP
/// response or one SQL query sees. Table names are unique across the views.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The stored view it comes from (the live one, or a candidate).
    pub view: String,
    pub definition: String,
    pub definition_hash: String,
    /// The log position the tables reflect.
    pub position: baton_projector::Position,
    /// When the tables are the log as known at a time (only the events recorded by then):
    /// that time.
    pub as_known_at: Option<baton_core::Timestamp>,
    /// Every table of the marketing, sales and funnel views; the row-level tables of
    /// `ROW_TABLES` are empty here and read through `lazy`.
    tables: Vec<(ViewKind, Table)>,
    /// Every person's row-level data at this position.
    rows: PersonRows,
    /// The tables of `ROW_TABLES`, each built from `rows` when first read (shared by clones).
    lazy: Arc<[OnceLock<Table>; 4]>,
    /// The customer view's account-level tables (`customer::ACCOUNT_TABLES`), all built from
    /// `rows` when one is first read (shared by clones).
    customer: Arc<OnceLock<Vec<Table>>>,
    /// The whole attribution ledger, built from `rows` when first read (or refused when too
    /// large, see `attribution::ledger`).
    ledger: Arc<OnceLock<Result<Table, String>>>,
    /// How long building the snapshot took: what freshness costs (`/metrics`, `bench query`).
    pub built_in: std::time::Duration,
    /// A candidate's comparison with the live definition, as `baton compare --json` writes
    /// it, when one was kept beside the view (`crate::comparison`).
    comparison: Option<Arc<serde_json::Value>>,
}

/// The tables a person lookup answers from, each with a `person` column.
pub(crate) const PERSON_TABLES: [&str; 3] = ["person_scores", "handoffs", "opportunities"];

impl Snapshot {
    /// The tables of a refreshed projection. The aggregates are read from the projection's
    /// totals; the row-level tables are built when first read.
    pub fn build(
        view: &str,
        projection: &FunnelProjection,
        position: baton_projector::Position,
    ) -> Snapshot {
        let started = std::time::Instant::now();
        let (marketing, sales, shared) = projection.aggregate_views();
        let rows = projection.person_rows();
        let tables: Vec<(ViewKind, Table)> = marketing_tables(marketing)
            .into_iter()
            .map(|t| (ViewKind::Marketing, t))
            .chain(
                sales_tables(sales)
                    .into_iter()
                    .map(|t| (ViewKind::Sales, t)),
            )
            .chain(
                shared_tables(shared)
                    .into_iter()
                    .map(|t| (ViewKind::Funnel, t)),
            )
            .chain(
                crate::customer::customer_tables(projection.customer_view())
                    .into_iter()
                    .chain(crate::customer::account_tables(&Default::default()))
                    .map(|t| (ViewKind::Customer, t)),
            )
            .chain(
                crate::attribution::attribution_tables(projection.attribution_view())
                    .into_iter()
                    .map(|t| (ViewKind::Attribution, t)),
            )
            .collect();
        Snapshot {
            view: view.to_owned(),
            definition: projection.definition().name().to_owned(),
            definition_hash: projection.definition().hash().to_owned(),
            position,
            as_known_at: None,
            tables,
            rows,
            lazy: Arc::new(Default::default()),
            customer: Arc::new(OnceLock::new()),
            ledger: Arc::new(OnceLock::new()),
            built_in: started.elapsed(),
            comparison: None,
        }
    }

    /// The snapshot, marked as the log as known at `at`.
    pub fn known_at(mut self, at: baton_core::Timestamp) -> Snapshot {
        self.as_known_at = Some(at);
        self
    }

    /// The snapshot with a candidate's comparison with the live definition.
    pub fn with_comparison(mut self, comparison: serde_json::Value) -> Snapshot {
        self.comparison = Some(Arc::new(comparison));
        self
    }

    /// The candidate's comparison with the live definition, when one was kept.
    pub fn comparison(&self) -> Option<&serde_json::Value> {
        self.comparison.as_deref()
    }

    /// A snapshot of these tables alone, for tests of what serves them.
    #[cfg(test)]
    pub(crate) fn of_tables(view: &str, tables: Vec<(ViewKind, Table)>) -> Snapshot {
        Snapshot {
            view: view.to_owned(),
            definition: "d".into(),
            definition_hash: "h".into(),
            position: baton_projector::Position::new(1),
            as_known_at: None,
            tables,
            rows: PersonRows::default(),
            lazy: Arc::new(Default::default()),
            customer: Arc::new(OnceLock::new()),
            ledger: Arc::new(OnceLock::new()),
            built_in: std::time::Duration::ZERO,
            comparison: None,
        }
    }

    /// A table by name, built now if it is a row-level table not read before; an error for
    /// a whole attribution ledger too large to serve (`attribution::ledger`).
    pub fn checked_table(&self, name: &str) -> Result<Option<&Table>, String> {
        if name == crate::attribution::LEDGER {
            return self
                .ledger
                .get_or_init(|| crate::attribution::ledger(&self.rows, None))
                .as_ref()
                .map(Some)
                .map_err(Clone::clone);
        }
        Ok(self.table(name))
    }

    /// How many opportunities the whole attribution ledger credits (see
    /// [`ledger_part`](Self::ledger_part)).
    pub fn ledger_deals(&self) -> usize {
        self.rows.attribution_ledger_deals()
    }

    /// The attribution ledger's rows of the credited opportunities `from..to`: the whole
    /// ledger a part at a time.
    pub fn ledger_part(&self, from: usize, to: usize) -> Table {
        crate::attribution::ledger_table(self.rows.attribution_ledger_part(from, to))
    }

    /// One opportunity's rows of the attribution ledger, without building the whole ledger;
    /// `None` for another table.
    pub fn opportunity_table(&self, name: &str, opportunity: &str) -> Option<Table> {
        (name == crate::attribution::LEDGER).then(|| {
            crate::attribution::ledger_table(self.rows.attribution_ledger(Some(opportunity)))
        })
    }

    /// A table by name, built now if it is a row-level table not read before. The whole
    /// attribution ledger, when too large to serve, is its columns alone here:
    /// [`checked_table`](Self::checked_table) says why.
    pub fn table(&self, name: &str) -> Option<&Table> {
        if name == crate::attribution::LEDGER
            && let Ok(Some(table)) = self.checked_table(name)
        {
            return Some(table);
        }
        if let Some(which) = ROW_TABLES.iter().position(|(table, _)| *table == name) {
            return Some(self.lazy[which].get_or_init(|| self.row_table(which)));
        }
        if crate::customer::ACCOUNT_TABLES.contains(&name) {
            return self
                .customer
                .get_or_init(|| crate::customer::account_tables(&self.rows.customer_tables()))
                .iter()
                .find(|table| table.name == name);
        }
        self.tables
            .iter()
            .find(|(_, table)| table.name == name)
            .map(|(_, table)| table)
    }

    /// Every table in view order, building the row-level ones not read before.
    pub fn tables(&self) -> impl Iterator<Item = (ViewKind, &Table)> {
        self.tables.iter().map(|(kind, table)| {
            let table = self.table(table.name).unwrap_or(table);
            (*kind, table)
        })
    }

    /// A table's columns, without building it.
    pub fn columns(&self, name: &str) -> Option<&[(&'static str, ColumnType)]> {
        self.tables
            .iter()
            .find(|(_, table)| table.name == name)
            .map(|(_, table)| table.columns.as_slice())
    }

    /// The rows of one person in a table with a `person` column (`PERSON_TABLES`), without
    /// building the table; `None` for another table.
    pub fn person_table(&self, name: &str, person: &str) -> Option<Table> {
        let which = PERSON_TABLES.iter().position(|table| *table == name)?;
        Some(Table {
            name: self.table_names().find(|(_, n)| *n == name)?.1,
            columns: self.columns(name)?.to_vec(),
            rows: self.rows_of(person, which),
        })
    }

    /// The rows of a table if it is built already or cheap to build: `None` for the
    /// attribution ledger not read before (worked out per request, see `attribution::ledger`).
    pub fn rows_if_built(&self, name: &str) -> Option<usize> {
        if name == crate::attribution::LEDGER {
            return self
                .ledger
                .get()
                .and_then(|built| built.as_ref().ok())
                .map(|table| table.rows.len());
        }
        self.table(name).map(|table| table.rows.len())
    }

    /// Every table's name and view, without building any.
    pub fn table_names(&self) -> impl Iterator<Item = (ViewKind, &'static str)> + '_ {
        self.tables.iter().map(|(kind, table)| (*kind, table.name))
    }

    fn row_table(&self, which: usize) -> Table {
        let table = match ROW_TABLES[which].0 {
            "person_scores" => person_scores_table(self.rows.score_rows()),
            "account_scores" => account_scores_table(&self.rows.account_rows()),
            "opportunities" => opportunities_table(self.rows.opportunity_rows()),
            _ => handoffs_table(self.rows.handoff_rows()),
        };
        debug_assert_eq!(table.name, ROW_TABLES[which].0);
        debug_assert!(
            self.tables
                .iter()
                .any(|(kind, t)| t.name == table.name && *kind == ROW_TABLES[which].1)
        );
        table
    }

    /// The rows of `person` in the table `PERSON_TABLES[which]`, in table order, without
    /// building any table.
    pub(crate) fn rows_of(&self, person: &str, which: usize) -> Vec<Vec<Value>> {
        match PERSON_TABLES[which] {
            "person_scores" => self
                .rows
                .get(person)
                .map(|row| person_scores_table(vec![self.rows.score_row(row)]).rows)
                .unwrap_or_default(),
            "handoffs" => self
                .rows
                .get(person)
                .map(|row| handoffs_table(row.handoffs.clone()).rows)
                .unwrap_or_default(),
            _ => opportunities_table(self.rows.opportunities_of(person)).rows,
        }
    }
}

/// The tables of one view of a refreshed projection (the attribution ledger with its
/// columns only: see [`Snapshot::ledger_part`] and `PersonRows::attribution_ledger_part`).
pub fn tables(projection: &FunnelProjection, kind: ViewKind) -> Vec<Table> {
    match kind {
        ViewKind::Marketing => marketing_tables(projection.marketing_view()),
        ViewKind::Sales => sales_tables(projection.sales_view()),
        ViewKind::Funnel => shared_tables(projection.shared_view()),
        // The ledger is its columns alone here: `baton report` writes it a part at a time.
        ViewKind::Attribution => {
            crate::attribution::attribution_tables(projection.attribution_view())
        }
        ViewKind::Customer => {
            let mut tables = crate::customer::customer_tables(projection.customer_view());
            tables.extend(crate::customer::account_tables(
                &projection.person_rows().customer_tables(),
            ));
            tables
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::example::example_event;
    use baton_core::{FunnelDefinition, Kind, Money, Payload};

    fn money(minor_units: i64, currency: &str) -> Money {
        Money {
            minor_units,
            currency: currency.to_owned(),
        }
    }

    /// Regression: every amount was divided by 100, so ¥5,000 showed as 50 and 1,234.567 KWD
    /// as 12,345.67.
    #[test]
    fn amounts_have_their_currency_s_decimal_places() {
        let mut created_jpy = example_event(Kind::OpportunityCreated, 0);
        created_jpy.opportunity_id = Some("opp-jp".to_owned());
        created_jpy.payload = Payload::OpportunityCreated {
            amount: Some(money(5_000, "JPY")),
            stage: None,
        };
        let mut created_kwd = example_event(Kind::OpportunityCreated, 1);
        created_kwd.opportunity_id = Some("opp-kw".to_owned());
        created_kwd.payload = Payload::OpportunityCreated {
            amount: Some(money(1_234_567, "KWD")),
            stage: None,
        };
        let mut won_kwd = example_event(Kind::OpportunityClosedWon, 2);
        won_kwd.opportunity_id = Some("opp-kw".to_owned());
        won_kwd.payload = Payload::OpportunityClosedWon {
            amount: money(1_234_567, "KWD"),
        };
        let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in [created_jpy, created_kwd, won_kwd] {
            projection.apply(&event);
        }
        projection.refresh();
        let sales = sales_tables(projection.sales_view());
        let opportunities = sales
            .iter()
            .find(|table| table.name == "opportunities")
            .expect("an opportunities table");
        let column = |name: &str| {
            opportunities
                .columns
                .iter()
                .position(|(column, _)| *column == name)
                .expect("column")
        };
        let (id, amount, currency) = (column("opportunity"), column("amount"), column("currency"));
        let mut amounts: Vec<(Value, Value, Value)> = opportunities
            .rows
            .iter()
            .map(|row| (row[id].clone(), row[amount].clone(), row[currency].clone()))
            .collect();
        amounts.sort_by_key(|(id, _, _)| format!("{id:?}"));
        assert_eq!(
            amounts,
            [
                ("opp-jp".into(), Value::Float(5_000.0), "JPY".into()),
                ("opp-kw".into(), Value::Float(1_234.567), "KWD".into()),
            ]
        );
        let shared = shared_tables(projection.shared_view());
        let totals = &shared[0];
        assert_eq!(totals.name, "funnel_totals");
        let revenue = totals.columns.iter().position(|(c, _)| *c == "revenue");
        let revenue = revenue.expect("a revenue column");
        assert_eq!(totals.rows[0][revenue], Value::Float(1_234.567));
        assert_eq!(totals.rows[0][revenue + 1], "KWD".into());
    }
}
