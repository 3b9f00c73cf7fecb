//! The views as DataFusion tables. A [`Catalog`] is converted to Arrow once (on the first query
//! that sees it); the `baton` SQL catalog resolves schemas and tables against the catalog
//! *pinned* for the running query, so that every table a query reads comes from one snapshot.
//!
//! Pinning: the protocol handlers run each parse and each execution inside
//! [`CatalogSource::pinned`], which stores the current converted catalog in a task-local.
//! DataFusion resolves table names while planning and calls [`TableProvider::scan`] while
//! building the physical plan, both inside that scope, so a snapshot swap in the middle of a
//! query cannot mix two positions. A prepared statement re-executed later scans the catalog
//! pinned for that execution, so it sees new snapshots too.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::watch;

use crate::{Catalog, ColumnType, Snapshot, Table, Value};

/// The schema that holds the live view (PostgreSQL's default schema, so unqualified table
/// names work).
pub(super) const LIVE_SCHEMA: &str = "public";
/// The table listing every served view and the position it reflects.
pub(super) const SNAPSHOTS_TABLE: &str = "snapshots";
/// Schema names a view cannot take because PostgreSQL clients expect them to mean something
/// else.
const RESERVED_SCHEMAS: [&str; 3] = [LIVE_SCHEMA, "pg_catalog", "information_schema"];

tokio::task_local! {
    static PINNED: Arc<ServedCatalog>;
}

/// One table's rows in Arrow form.
type ServedTable = Arc<MemTable>;

/// A table of a snapshot, converted to Arrow the first time a query scans all of it: a new
/// snapshot every quarter second must not cost every table's conversion, nor a lookup of
/// one person the conversion of a row per person.
struct LazyTable {
    schema: SchemaRef,
    rows: TableRows,
}

enum TableRows {
    /// Converted already (`public.snapshots`).
    Ready(ServedTable),
    /// A table of this snapshot, by name, converted when first scanned in full.
    Snapshot {
        snapshot: Arc<Snapshot>,
        name: String,
        converted: OnceLock<std::result::Result<ServedTable, String>>,
    },
}

impl LazyTable {
    fn ready(table: ServedTable) -> Arc<LazyTable> {
        Arc::new(LazyTable {
            schema: table.schema(),
            rows: TableRows::Ready(table),
        })
    }

    /// Every row.
    fn served(&self) -> Result<ServedTable> {
        match &self.rows {
            TableRows::Ready(table) => Ok(table.clone()),
            TableRows::Snapshot {
                snapshot,
                name,
                converted,
            } => converted
                .get_or_init(|| {
                    let table = snapshot
                        .checked_table(name)?
                        .ok_or_else(|| format!("table {name} is not in the snapshot"))?;
                    mem_table(table).map_err(|error| error.to_string())
                })
                .clone()
                .map_err(DataFusionError::Plan),
        }
    }

    /// Only the rows of `person`, when this table has a row per person or per their
    /// hand-offs or deals.
    fn person(&self, person: &str) -> Option<Result<ServedTable>> {
        self.some_rows(|snapshot, name| snapshot.person_table(name, person))
    }

    /// Only the rows of `opportunity`, when this is the attribution ledger.
    fn opportunity(&self, opportunity: &str) -> Option<Result<ServedTable>> {
        self.some_rows(|snapshot, name| snapshot.opportunity_table(name, opportunity))
    }

    /// The rows `pick` reads of this snapshot's table without building it whole.
    fn some_rows(
        &self,
        pick: impl FnOnce(&Snapshot, &str) -> Option<Table>,
    ) -> Option<Result<ServedTable>> {
        let TableRows::Snapshot { snapshot, name, .. } = &self.rows else {
            return None;
        };
        pick(snapshot, name).map(|table| mem_table(&table))
    }
}

/// The whole attribution ledger of a snapshot as a stream of record batches, each the rows of
/// a few hundred opportunities, worked out as the query reads them.
#[derive(Debug)]
struct LedgerStream {
    snapshot: Arc<Snapshot>,
    schema: SchemaRef,
}

/// Opportunities per batch of the ledger's stream.
const LEDGER_DEALS_PER_BATCH: usize = 256;

impl datafusion::physical_plan::streaming::PartitionStream for LedgerStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(
        &self,
        _context: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::execution::SendableRecordBatchStream {
        use futures::StreamExt;
        let (snapshot, schema) = (self.snapshot.clone(), self.schema.clone());
        let deals = snapshot.ledger_deals();
        let parts = deals.div_ceil(LEDGER_DEALS_PER_BATCH);
        let batches = futures::stream::iter(0..parts).map(move |part| {
            let from = part * LEDGER_DEALS_PER_BATCH;
            let table = snapshot.ledger_part(from, from + LEDGER_DEALS_PER_BATCH);
            rows_batch(&table, &table.rows, schema.clone())
        });
        Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                self.schema.clone(),
                batches,
            ),
        )
    }
}

/// The text `person = '…'` (either way round) asks for, if `filter` is that.
fn person_wanted(filter: &Expr) -> Option<&str> {
    text_wanted(filter, "person")
}

/// The text `column = '…'` (either way round) asks for, if `filter` is that.
fn text_wanted<'a>(filter: &'a Expr, wanted: &str) -> Option<&'a str> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = filter
    else {
        return None;
    };
    fn text(expr: &Expr) -> Option<&str> {
        match expr {
            Expr::Literal(
                ScalarValue::Utf8(Some(text))
                | ScalarValue::LargeUtf8(Some(text))
                | ScalarValue::Utf8View(Some(text)),
                _,
            ) => Some(text.as_str()),
            _ => None,
        }
    }
    let is_wanted = |expr: &Expr| matches!(expr, Expr::Column(column) if column.name == wanted);
    match (left.as_ref(), right.as_ref()) {
        (column, value) | (value, column) if is_wanted(column) => text(value),
        _ => None,
    }
}

/// A [`Catalog`] converted to Arrow: schema name → table name → table.
pub(super) struct ServedCatalog {
    source: Arc<Catalog>,
    schemas: BTreeMap<String, BTreeMap<String, Arc<LazyTable>>>,
    /// The schema named after the live view: queries can name it, but catalog listings leave
    /// it out, so that tools do not show (and Metabase does not sync) every table twice.
    unlisted: Option<String>,
    /// What `pg_catalog` and `information_schema` say of these schemas, built when first read.
    relations: OnceLock<Arc<super::system::Relations>>,
}

impl fmt::Debug for ServedCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedCatalog")
            .field("live", &self.source.live.view)
            .field("position", &self.source.live.position)
            .field("schemas", &self.schemas.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServedCatalog {
    pub(super) fn build(source: Arc<Catalog>) -> Result<ServedCatalog> {
        let mut schemas = BTreeMap::new();
        let live = view_tables(&source.live)?;
        let mut public = live.clone();
        public.insert(
            SNAPSHOTS_TABLE.to_owned(),
            LazyTable::ready(snapshots_table(&source)?),
        );
        for table in comparison_tables(&source)? {
            public.insert(table.name.to_owned(), LazyTable::ready(mem_table(&table)?));
        }
        schemas.insert(LIVE_SCHEMA.to_owned(), public);
        let mut unlisted = None;
        if !RESERVED_SCHEMAS.contains(&source.live.view.as_str()) {
            schemas.insert(source.live.view.clone(), live);
            unlisted = Some(source.live.view.clone());
        }
        for candidate in &source.candidates {
            if RESERVED_SCHEMAS.contains(&candidate.view.as_str())
                || schemas.contains_key(&candidate.view)
            {
                tracing::warn!(
                    view = %candidate.view,
                    "candidate view not served over SQL: its name is taken by a schema already"
                );
                continue;
            }
            schemas.insert(candidate.view.clone(), view_tables(candidate)?);
        }
        Ok(ServedCatalog {
            source,
            schemas,
            unlisted,
            relations: OnceLock::new(),
        })
    }

    /// Every schema with its tables' names and Arrow schemas, and whether catalog listings
    /// show it.
    pub(super) fn schemas_with_tables(
        &self,
    ) -> impl Iterator<Item = (&str, Vec<(&str, SchemaRef)>, bool)> {
        self.schemas.iter().map(|(schema, tables)| {
            let tables = tables
                .iter()
                .map(|(name, table)| (name.as_str(), table.schema.clone()))
                .collect();
            let listed = self.unlisted.as_ref() != Some(schema);
            (schema.as_str(), tables, listed)
        })
    }

    /// The relations `pg_catalog` and `information_schema` describe.
    pub(super) fn relations(&self) -> Arc<super::system::Relations> {
        self.relations
            .get_or_init(|| Arc::new(super::system::Relations::of(self)))
            .clone()
    }

    fn table(&self, schema: &str, table: &str) -> Option<&Arc<LazyTable>> {
        self.schemas.get(schema)?.get(table)
    }
}

fn view_tables(snapshot: &Arc<Snapshot>) -> Result<BTreeMap<String, Arc<LazyTable>>> {
    snapshot
        .table_names()
        .map(|(_, name)| {
            let columns = snapshot.columns(name).unwrap_or_default();
            let table = LazyTable {
                schema: arrow_schema_of(columns),
                rows: TableRows::Snapshot {
                    snapshot: snapshot.clone(),
                    name: name.to_owned(),
                    converted: OnceLock::new(),
                },
            };
            Ok((name.to_owned(), Arc::new(table)))
        })
        .collect()
}

/// `public.snapshots`: one row per served view.
fn snapshots_table(catalog: &Catalog) -> Result<ServedTable> {
    let mut table = Table {
        name: SNAPSHOTS_TABLE,
        columns: vec![
            ("view", ColumnType::Text),
            ("live", ColumnType::Bool),
            ("definition", ColumnType::Text),
            ("definition_hash", ColumnType::Text),
            ("position", ColumnType::Int),
        ],
        rows: Vec::new(),
    };
    let views = std::iter::once((&catalog.live, true)).chain(
        catalog
            .candidates
            .iter()
            .map(|candidate| (candidate, false)),
    );
    for (snapshot, live) in views {
        table.rows.push(vec![
            snapshot.view.clone().into(),
            live.into(),
            snapshot.definition.clone().into(),
            snapshot.definition_hash.clone().into(),
            snapshot.position.get().into(),
        ]);
    }
    mem_table(&table)
}

/// `public.comparison_stages` and `public.comparison_mqls`: the kept comparison of every
/// candidate served that has one. A comparison that cannot be read leaves its candidate out
/// of them, with a warning naming what is wrong.
fn comparison_tables(catalog: &Catalog) -> Result<[Table; 2]> {
    let mut comparisons = Vec::new();
    for candidate in &catalog.candidates {
        let Some(report) = candidate.comparison() else {
            continue;
        };
        let one = [(candidate.view.as_str(), report)];
        match crate::comparison::comparison_tables(&one) {
            Ok(_) => comparisons.push(one[0]),
            Err(error) => tracing::warn!(view = %candidate.view, "{error}; not served"),
        }
    }
    crate::comparison::comparison_tables(&comparisons)
        .map_err(|error| DataFusionError::Execution(error.to_string()))
}

fn arrow_type(column: ColumnType) -> DataType {
    match column {
        ColumnType::Text => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The Arrow schema of a table. Every column is nullable: which ones hold nulls depends on the
/// data, and a table's schema must not change from one snapshot to the next.
pub(super) fn arrow_schema(table: &Table) -> SchemaRef {
    arrow_schema_of(&table.columns)
}

fn arrow_schema_of(columns: &[(&'static str, ColumnType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, column)| Field::new(*name, arrow_type(*column), true))
            .collect::<Vec<_>>(),
    ))
}

/// Rows per Arrow batch of a served table. Queries stream a table batch by batch, so a batch
/// is what one scan holds at a time: one batch of a whole large table (600,000 people at ten
/// million events) made every concurrent lookup reserve the whole table and exhaust the
/// working memory.
const ROWS_PER_BATCH: usize = 8192;

fn mem_table(table: &Table) -> Result<ServedTable> {
    let schema = arrow_schema(table);
    let batches = table
        .rows
        .chunks(ROWS_PER_BATCH)
        .map(|rows| rows_batch(table, rows, schema.clone()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// Converts some of a table's rows to one Arrow record batch.
fn rows_batch(table: &Table, rows: &[Vec<Value>], schema: SchemaRef) -> Result<RecordBatch> {
    let columns = table
        .columns
        .iter()
        .enumerate()
        .map(|(index, (name, column))| {
            let cells = rows.iter().map(|row| row.get(index));
            column_array(*column, cells).map_err(|found| {
                DataFusionError::Internal(format!(
                    "table {}: column {name} is {column:?} but holds {found}",
                    table.name
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// One column as an Arrow array; the error describes a cell of the wrong type.
fn column_array<'a>(
    column: ColumnType,
    cells: impl Iterator<Item = Option<&'a Value>>,
) -> std::result::Result<ArrayRef, String> {
    let wrong = |cell: Option<&Value>| match cell {
        None => "a short row".to_owned(),
        Some(value) => format!("{value:?}"),
    };
    Ok(match column {
        ColumnType::Text => {
            let mut builder = StringBuilder::new();
            for cell in cells {
                match cell {
                    Some(Value::Text(text)) => builder.append_value(text),
                    Some(Value::Null) => builder.append_null(),
                    other => return Err(wrong(other)),
                }
            }
            Arc::new(builder.finish())
        }
        ColumnType::Int => {
            let mut builder = Int64Builder::new();
            for cell in cells {
                match cell {
                    Some(Value::Int(int)) => builder.append_value(*int),
                    Some(Value::Null) => builder.append_null(),
                    other => return Err(wrong(other)),
                }
            }
            Arc::new(builder.finish())
        }
        ColumnType::Float => {
            let mut builder = Float64Builder::new();
            for cell in cells {
                match cell {
                    Some(Value::Float(float)) => builder.append_value(*float),
                    Some(Value::Null) => builder.append_null(),
                    other => return Err(wrong(other)),
                }
            }
            Arc::new(builder.finish())
        }
        ColumnType::Bool => {
            let mut builder = BooleanBuilder::new();
            for cell in cells {
                match cell {
                    Some(Value::Bool(bool)) => builder.append_value(*bool),
                    Some(Value::Null) => builder.append_null(),
                    other => return Err(wrong(other)),
                }
            }
            Arc::new(builder.finish())
        }
        ColumnType::Time => {
            let mut builder = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for cell in cells {
                match cell {
                    Some(Value::Time(time)) => {
                        builder.append_value(time.unix_millis().saturating_mul(1000))
                    }
                    Some(Value::Null) => builder.append_null(),
                    other => return Err(wrong(other)),
                }
            }
            Arc::new(builder.finish())
        }
    })
}

/// Where queries get their catalog: the newest one sent on the channel, converted once; or,
/// for a source without a channel (the HTTP SQL route when no catalogs are published), the
/// catalog each query pins explicitly.
pub(super) struct CatalogSource {
    catalogs: Option<watch::Receiver<Arc<Catalog>>>,
    served: Mutex<Option<Arc<ServedCatalog>>>,
}

impl fmt::Debug for CatalogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogSource").finish_non_exhaustive()
    }
}

impl CatalogSource {
    pub(super) fn new(catalogs: watch::Receiver<Arc<Catalog>>) -> CatalogSource {
        CatalogSource {
            catalogs: Some(catalogs),
            served: Mutex::new(None),
        }
    }

    /// A source whose queries each pin the catalog they read with [`CatalogSource::pinned_to`].
    pub(super) fn unfed() -> CatalogSource {
        CatalogSource {
            catalogs: None,
            served: Mutex::new(None),
        }
    }

    /// The newest catalog, converted to Arrow (converting it if no query has yet). A source
    /// without a channel answers with the catalog converted last.
    pub(super) fn current(&self) -> Result<Arc<ServedCatalog>> {
        let Some(catalogs) = &self.catalogs else {
            let served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
            return served.clone().ok_or_else(|| {
                DataFusionError::Internal("no catalog is pinned for this query".to_owned())
            });
        };
        let catalog = catalogs.borrow().clone();
        self.converted(catalog)
    }

    /// `catalog` converted to Arrow, reusing the last conversion when it is the same catalog.
    fn converted(&self, catalog: Arc<Catalog>) -> Result<Arc<ServedCatalog>> {
        // Held while converting, so that concurrent queries convert a new catalog only once.
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(served) = served.as_ref()
            && Arc::ptr_eq(&served.source, &catalog)
        {
            return Ok(served.clone());
        }
        let converted = Arc::new(ServedCatalog::build(catalog)?);
        *served = Some(converted.clone());
        Ok(converted)
    }

    /// Runs `work` with the newest catalog pinned: every table it resolves or scans comes
    /// from that catalog.
    pub(super) async fn pinned<F: Future>(&self, work: F) -> Result<F::Output> {
        let catalog = self.current()?;
        Ok(PINNED.scope(catalog, work).await)
    }

    /// Runs `work` with `served` pinned: a catalog converted apart from the channel's (the
    /// views as known at a time).
    pub(super) async fn pinned_served<F: Future>(served: Arc<ServedCatalog>, work: F) -> F::Output {
        PINNED.scope(served, work).await
    }

    /// Runs `work` with `catalog` pinned.
    pub(super) async fn pinned_to<F: Future>(
        &self,
        catalog: Arc<Catalog>,
        work: F,
    ) -> Result<F::Output> {
        let catalog = self.converted(catalog)?;
        Ok(PINNED.scope(catalog, work).await)
    }

    /// The catalog pinned for the running query, else the newest one (for catalog listings
    /// that DataFusion runs outside the query's task).
    pub(super) fn pinned_or_current(&self) -> Result<Arc<ServedCatalog>> {
        match PINNED.try_with(Arc::clone) {
            Ok(pinned) => Ok(pinned),
            Err(_) => self.current(),
        }
    }
}

/// The `baton` SQL catalog: a schema per served view, plus the schemas registered by the
/// PostgreSQL compatibility layer (`pg_catalog`).
#[derive(Debug)]
pub(super) struct BatonCatalog {
    source: Arc<CatalogSource>,
    registered: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl BatonCatalog {
    pub(super) fn new(source: Arc<CatalogSource>) -> BatonCatalog {
        BatonCatalog {
            source,
            registered: RwLock::new(BTreeMap::new()),
        }
    }
}

impl CatalogProvider for BatonCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .registered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        match self.source.pinned_or_current() {
            Ok(served) => names.extend(
                served
                    .schemas
                    .keys()
                    .filter(|name| served.unlisted.as_ref() != Some(*name))
                    .cloned(),
            ),
            Err(error) => tracing::warn!(%error, "cannot list the views' schemas"),
        }
        names.push("information_schema".to_owned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self
            .registered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Some(schema.clone());
        }
        if name == "information_schema" {
            return Some(Arc::new(super::information_schema::InformationSchema {
                source: self.source.clone(),
            }));
        }
        let served = self.source.pinned_or_current().ok()?;
        served.schemas.contains_key(name).then(|| {
            Arc::new(ViewSchema {
                name: name.to_owned(),
                source: self.source.clone(),
            }) as Arc<dyn SchemaProvider>
        })
    }

    /// Used once, at setup, by the PostgreSQL compatibility layer to add `pg_catalog`.
    /// `CREATE SCHEMA` never gets here: the endpoint refuses it before planning.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .registered
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), schema))
    }
}

/// The tables of one view (or `public`).
#[derive(Debug)]
struct ViewSchema {
    name: String,
    source: Arc<CatalogSource>,
}

#[async_trait]
impl SchemaProvider for ViewSchema {
    fn table_names(&self) -> Vec<String> {
        match self.source.pinned_or_current() {
            Ok(served) => served
                .schemas
                .get(&self.name)
                .map(|tables| tables.keys().cloned().collect())
                .unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, schema = %self.name, "cannot list the view's tables");
                Vec::new()
            }
        }
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let served = self.source.pinned_or_current()?;
        Ok(served.table(&self.name, name).map(|table| {
            Arc::new(ViewTable {
                schema_name: self.name.clone(),
                table_name: name.to_owned(),
                schema: table.schema.clone(),
                source: self.source.clone(),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.source
            .pinned_or_current()
            .is_ok_and(|served| served.table(&self.name, name).is_some())
    }
}

/// A view's table by name; its rows are those of the catalog pinned when it is scanned.
#[derive(Debug)]
struct ViewTable {
    schema_name: String,
    table_name: String,
    schema: SchemaRef,
    source: Arc<CatalogSource>,
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// `person = '…'` is used to read one person's rows instead of the whole table; the
    /// filter is still applied after.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let person_table = crate::table::PERSON_TABLES.contains(&self.table_name.as_str());
        let ledger = self.table_name == crate::attribution::LEDGER;
        Ok(filters
            .iter()
            .map(|filter| {
                if (person_table && person_wanted(filter).is_some())
                    || (ledger && text_wanted(filter, "opportunity").is_some())
                {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let served = self.source.pinned_or_current()?;
        let Some(table) = served.table(&self.schema_name, &self.table_name) else {
            return plan_err!(
                "view {} is no longer served, so {}.{} is gone (the statement was prepared before the view was dropped or renamed)",
                self.schema_name,
                self.schema_name,
                self.table_name
            );
        };
        let opportunity_wanted = filters
            .iter()
            .any(|filter| text_wanted(filter, "opportunity").is_some());
        if self.table_name == crate::attribution::LEDGER && !opportunity_wanted {
            // The whole ledger, read a part at a time: never held whole.
            let TableRows::Snapshot { snapshot, .. } = &table.rows else {
                return plan_err!("the attribution ledger is read from a snapshot");
            };
            let stream = LedgerStream {
                snapshot: snapshot.clone(),
                schema: table.schema.clone(),
            };
            let streaming = datafusion::catalog::streaming::StreamingTable::try_new(
                table.schema.clone(),
                vec![Arc::new(stream)],
            )?;
            return streaming.scan(state, projection, filters, limit).await;
        }
        let person = filters.iter().find_map(person_wanted);
        let opportunity = filters
            .iter()
            .find_map(|filter| text_wanted(filter, "opportunity"));
        let one = person
            .and_then(|person| table.person(person))
            .or_else(|| opportunity.and_then(|opportunity| table.opportunity(opportunity)));
        let rows = match one {
            Some(rows) => rows?,
            None => table.served()?,
        };
        rows.scan(state, projection, filters, limit).await
    }
}
