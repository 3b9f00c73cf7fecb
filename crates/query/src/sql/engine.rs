//! One read-only SQL query run to completion, for `POST /v1/sql`: the same DataFusion session
//! setup as the PostgreSQL endpoint (the `baton` catalog, `pg_catalog`, PostgreSQL's
//! functions, the memory limit) and the same refusal of anything that writes, with the answer
//! converted back to the crate's [`Value`]s so that it leaves as the other routes' JSON or CSV.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use pgwire::error::ErrorInfo;
use tokio::sync::watch;

use super::session::{self, query_writes, refused_command};
use super::sqlstate::{engine_error, syntax_error};
use super::tables::CatalogSource;
use crate::{Catalog, ColumnType, QueryError, Value};

/// What a query answered: typed columns and rows, cut at the row cap.
#[derive(Debug)]
pub(crate) struct SqlAnswer {
    pub(crate) columns: Vec<(String, ColumnType)>,
    pub(crate) rows: Vec<Vec<Value>>,
    /// The query had more rows than the cap; `rows` holds the first ones.
    pub(crate) truncated: bool,
}

/// At which step a query failed, which decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqlFailure {
    /// Not SQL, or not one statement.
    Syntax,
    /// A statement that would write (DML, DDL, `COPY`, `SELECT INTO`).
    Write,
    /// A statement that is not a query (`SET`, `BEGIN`, `SHOW`, ...): it belongs to a session.
    NotAQuery,
    /// Valid SQL that cannot be planned (unknown table or column, type mismatch, ...).
    Plan,
    /// The query failed on the data (division by zero, a bad cast: SQLSTATE class 22) or ran
    /// out of memory (class 53), whether while running or while planning.
    Execution,
    /// A defect: the engine failed in a way a query should not make it.
    Internal,
}

/// Why a query was refused or failed, in PostgreSQL's terms (SQLSTATE, message, detail, hint).
#[derive(Debug)]
pub(crate) struct SqlError {
    pub(crate) failure: SqlFailure,
    /// Boxed: PostgreSQL's error fields make it large, and it travels in `Result`s.
    pub(crate) info: Box<ErrorInfo>,
}

impl SqlError {
    fn new(failure: SqlFailure, code: &str, message: String) -> SqlError {
        SqlError {
            failure,
            info: Box::new(ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message)),
        }
    }

    fn engine(failure: SqlFailure, error: &DataFusionError) -> SqlError {
        let info = Box::new(engine_error(error));
        // Whatever the step at which DataFusion noticed it (constant folding evaluates while
        // planning), a data exception or an exhausted resource is the query failing on the
        // data, and an internal error is a defect, not the caller's.
        let failure = match info.code.get(..2) {
            Some("XX") => SqlFailure::Internal,
            Some("22" | "53") => SqlFailure::Execution,
            _ => failure,
        };
        SqlError { failure, info }
    }
}

/// The engine behind `POST /v1/sql`.
pub(crate) struct SqlEngine {
    context: SessionContext,
    source: Arc<CatalogSource>,
}

impl std::fmt::Debug for SqlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlEngine").finish_non_exhaustive()
    }
}

impl SqlEngine {
    /// An engine over `catalogs` when the projector publishes them (so catalog listings that
    /// DataFusion runs outside a query's task see the newest), else over the catalog each
    /// query pins.
    pub(crate) fn new(
        catalogs: Option<watch::Receiver<Arc<Catalog>>>,
    ) -> Result<SqlEngine, QueryError> {
        let source = Arc::new(match catalogs {
            Some(catalogs) => CatalogSource::new(catalogs),
            None => CatalogSource::unfed(),
        });
        let context = session::session_context(source.clone(), session::QUERY_MEMORY_LIMIT)?;
        Ok(SqlEngine { context, source })
    }

    /// Runs `sql`, one read-only statement, over `catalog`, keeping at most `max_rows` rows.
    pub(crate) async fn run(
        &self,
        catalog: Arc<Catalog>,
        sql: &str,
        max_rows: usize,
    ) -> Result<SqlAnswer, SqlError> {
        let statement = one_query(sql)?;
        let work = self.plan_and_collect(statement, max_rows);
        self.source
            .pinned_to(catalog, work)
            .await
            .map_err(|error| SqlError::engine(SqlFailure::Internal, &error))?
    }

    /// [`Self::run`] on the SQL runtime, stopped after `limit` (`57014`, as PostgreSQL's
    /// `statement_timeout`) or when the caller stops waiting (an HTTP client gone).
    pub(crate) async fn run_limited(
        self: Arc<Self>,
        catalog: Arc<Catalog>,
        sql: &str,
        max_rows: usize,
        limit: std::time::Duration,
    ) -> Result<SqlAnswer, SqlError> {
        let sql = sql.to_owned();
        let work = async move {
            tokio::time::timeout(limit, self.run(catalog, &sql, max_rows))
                .await
                .unwrap_or_else(|_| {
                    Err(SqlError::new(
                        SqlFailure::Execution,
                        "57014",
                        format!(
                            "canceling statement due to statement timeout: it ran longer than the SQL endpoint's limit of {} s (sql_statement_timeout_secs)",
                            limit.as_secs_f64()
                        ),
                    ))
                })
        };
        super::runtime::on_sql_runtime(work)
            .await
            .map_err(|error| {
                SqlError::new(
                    SqlFailure::Internal,
                    "XX000",
                    format!("the statement's task failed: {error}"),
                )
            })?
    }

    async fn plan_and_collect(
        &self,
        statement: Statement,
        max_rows: usize,
    ) -> Result<SqlAnswer, SqlError> {
        let plan = self
            .context
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
            .map_err(|error| SqlError::engine(SqlFailure::Plan, &error))?;
        // A second guard behind the statement check: no plan node that writes or changes the
        // shared session may run.
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|error| {
                SqlError::new(
                    SqlFailure::Write,
                    "25006",
                    format!("cannot run this statement on a read-only endpoint: {error}"),
                )
            })?;
        let frame = self
            .context
            .execute_logical_plan(plan)
            .await
            .map_err(|error| SqlError::engine(SqlFailure::Plan, &error))?;
        let mut stream = frame
            .execute_stream()
            .await
            .map_err(|error| SqlError::engine(SqlFailure::Plan, &error))?;
        let schema = stream.schema();
        let columns: Vec<(String, ColumnType)> = schema
            .fields()
            .iter()
            .map(|field| (field.name().clone(), column_type(field.data_type())))
            .collect();
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|error| SqlError::engine(SqlFailure::Execution, &error))?;
            append_rows(&batch, &columns, &mut rows)
                .map_err(|error| SqlError::engine(SqlFailure::Internal, &error))?;
            if rows.len() > max_rows {
                // Dropping the stream stops the query.
                rows.truncate(max_rows);
                truncated = true;
                break;
            }
        }
        Ok(SqlAnswer {
            columns,
            rows,
            truncated,
        })
    }
}

const READ_ONLY_DETAIL: &str =
    "Baton's SQL endpoint is read-only: its tables are views folded from the event log.";
const ONE_QUERY_HINT: &str = "Send one SELECT (or WITH, VALUES, EXPLAIN); the PostgreSQL endpoint serves sessions with SET, SHOW and transactions.";

/// The one statement of `sql`, if it is a query that does not write.
fn one_query(sql: &str) -> Result<Statement, SqlError> {
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|error| SqlError {
            failure: SqlFailure::Syntax,
            info: Box::new(syntax_error(&error.to_string())),
        })?;
    let statement = match statements.len() {
        1 => statements.remove(0),
        0 => {
            return Err(SqlError::new(
                SqlFailure::Syntax,
                "42601",
                "no SQL statement in the request".to_owned(),
            ));
        }
        more => {
            let mut error = SqlError::new(
                SqlFailure::Syntax,
                "42601",
                format!("one statement per request, got {more}"),
            );
            error.info.hint = Some(ONE_QUERY_HINT.to_owned());
            return Err(error);
        }
    };
    if let Some(command) = refused_command(&statement) {
        let mut error = SqlError::new(
            SqlFailure::Write,
            "25006",
            format!("cannot execute {command} in a read-only transaction"),
        );
        error.info.detail = Some(READ_ONLY_DETAIL.to_owned());
        error.info.hint = Some(
            "Change what the views hold by appending events to the log, and how they are computed with a funnel definition and `baton replay`."
                .to_owned(),
        );
        return Err(error);
    }
    let is_query = match &statement {
        Statement::Query(query) => !query_writes(query),
        Statement::Explain { statement, .. } => {
            matches!(&**statement, Statement::Query(query) if !query_writes(query))
        }
        _ => false,
    };
    if !is_query {
        let mut error = SqlError::new(
            SqlFailure::NotAQuery,
            "0A000",
            format!(
                "only queries run over HTTP, not {}",
                statement_keyword(&statement)
            ),
        );
        error.info.hint = Some(ONE_QUERY_HINT.to_owned());
        return Err(error);
    }
    Ok(statement)
}

/// `SET`, `BEGIN`, `SHOW`, ...: the statement's first keyword, for messages.
fn statement_keyword(statement: &Statement) -> String {
    statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("statement")
        .to_uppercase()
}

/// How an Arrow column leaves: numbers, booleans and timestamps as themselves, everything else
/// (dates, intervals, lists, ...) as its text.
fn column_type(data_type: &DataType) -> ColumnType {
    match data_type {
        DataType::Boolean => ColumnType::Bool,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Int,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnType::Float,
        DataType::Timestamp(..) => ColumnType::Time,
        _ => ColumnType::Text,
    }
}

fn append_rows(
    batch: &RecordBatch,
    columns: &[(String, ColumnType)],
    rows: &mut Vec<Vec<Value>>,
) -> Result<(), DataFusionError> {
    let cells: Vec<Vec<Value>> = batch
        .columns()
        .iter()
        .zip(columns)
        .map(|(array, (_, kind))| column_values(array, *kind))
        .collect::<Result<_, _>>()?;
    for row in 0..batch.num_rows() {
        rows.push(cells.iter().map(|column| column[row].clone()).collect());
    }
    Ok(())
}

/// One column's cells. Numbers are cast to 64 bits (a `UInt64` beyond `i64::MAX` becomes
/// null), timestamps to milliseconds (the precision of Baton's times).
fn column_values(array: &ArrayRef, kind: ColumnType) -> Result<Vec<Value>, DataFusionError> {
    let length = array.len();
    let values = match kind {
        ColumnType::Bool => {
            let booleans = array.as_boolean();
            (0..length)
                .map(|i| cell(array, i, || Value::Bool(booleans.value(i))))
                .collect()
        }
        ColumnType::Int => {
            let cast = cast(array, &DataType::Int64)?;
            let ints = cast.as_primitive::<Int64Type>();
            (0..length)
                .map(|i| cell(&cast, i, || Value::Int(ints.value(i))))
                .collect()
        }
        ColumnType::Float => {
            let cast = cast(array, &DataType::Float64)?;
            let floats = cast.as_primitive::<Float64Type>();
            (0..length)
                .map(|i| cell(&cast, i, || Value::Float(floats.value(i))))
                .collect()
        }
        ColumnType::Time => {
            let zone = match array.data_type() {
                DataType::Timestamp(_, zone) => zone.clone(),
                _ => None,
            };
            // The same zone keeps the instant; a zone-less timestamp is taken as UTC.
            let cast = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, zone))?;
            let times = cast.as_primitive::<TimestampMillisecondType>();
            (0..length)
                .map(|i| {
                    cell(&cast, i, || {
                        Value::Time(baton_core::Timestamp::from_unix_millis(times.value(i)))
                    })
                })
                .collect()
        }
        ColumnType::Text => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
            (0..length)
                .map(|i| cell(array, i, || Value::Text(formatter.value(i).to_string())))
                .collect()
        }
    };
    Ok(values)
}

fn cell(array: &ArrayRef, index: usize, value: impl FnOnce() -> Value) -> Value {
    if array.is_null(index) {
        Value::Null
    } else {
        value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(sql: &str) -> Option<SqlFailure> {
        one_query(sql).err().map(|error| error.failure)
    }

    #[test]
    fn only_one_read_only_query_passes() {
        assert_eq!(failure("select 1"), None);
        assert_eq!(failure("with a as (select 1) select * from a"), None);
        assert_eq!(failure("explain select 1"), None);
        assert_eq!(failure("select 1; select 2"), Some(SqlFailure::Syntax));
        assert_eq!(failure(""), Some(SqlFailure::Syntax));
        assert_eq!(failure("selec 1"), Some(SqlFailure::Syntax));
        assert_eq!(failure("delete from campaigns"), Some(SqlFailure::Write));
        assert_eq!(failure("select 1 into t"), Some(SqlFailure::Write));
        assert_eq!(failure("drop table campaigns"), Some(SqlFailure::Write));
        assert_eq!(
            failure("explain analyze delete from campaigns"),
            Some(SqlFailure::Write)
        );
        assert_eq!(
            failure("set datafusion.execution.target_partitions = 1"),
            Some(SqlFailure::NotAQuery)
        );
        assert_eq!(failure("begin"), Some(SqlFailure::NotAQuery));
        assert_eq!(failure("show server_version"), Some(SqlFailure::NotAQuery));
    }
}
