//! The SQL engine behind the wire protocol: one DataFusion context over the `baton` catalog,
//! datafusion-postgres's handlers wrapped so that every parse and execution runs with one
//! snapshot pinned, and the hooks that make it read-only and PostgreSQL-looking (`version()`,
//! `SHOW server_version`, `DISCARD ALL`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{DFSchema, ParamValues, ScalarValue};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, EmptyRelation, LogicalPlan, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Query, Reset, Set, SetExpr, Statement, Value,
};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::cancel::Stop;
use super::peer::Peers;
use super::tables::{BatonCatalog, CatalogSource, LIVE_SCHEMA, ServedCatalog};
use super::{functions, rewrite};
use crate::QueryError;

/// The SQL catalog, i.e. PostgreSQL's database name.
pub(super) const DATABASE: &str = "baton";
/// The PostgreSQL version the endpoint claims. Drivers pick their catalog queries by it, and
/// datafusion-postgres answers the queries of PostgreSQL 16-era clients.
pub(super) const SERVER_VERSION: &str = "16.6";
pub(super) const SERVER_VERSION_NUM: &str = "160006";

/// What `select version()` returns. SQLAlchemy (Superset) requires `PostgreSQL <major>.<minor>`
/// at the start; the rest says what actually answers.
fn version_banner() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Baton {} SQL endpoint on Apache DataFusion {}) on {}-{}, 64-bit",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// The working memory (sorts, joins, aggregations) that all running queries may use together.
/// The endpoint runs inside the projector's process, so a runaway query must fail (`53200`)
/// rather than take the process down; spilling to disk is off for the same reason.
pub(super) const QUERY_MEMORY_LIMIT: usize = 1 << 30;

/// The DataFusion context shared by every connection: the `baton` catalog (a schema per view,
/// the live view also as `public`), `information_schema`, `pg_catalog` and PostgreSQL's
/// functions.
pub(super) fn session_context(
    source: Arc<CatalogSource>,
    memory_limit: usize,
) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(DATABASE, LIVE_SCHEMA)
        // `timestamptz` and `timestamp with time zone` carry a zone, as in PostgreSQL; the
        // server's zone is UTC.
        .set_str("datafusion.execution.time_zone", "UTC")
        // `1.005` is a `numeric` in PostgreSQL, exact: `round(1.005, 2)` is 1.01, where a
        // float would give 1.0.
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|error| QueryError::Engine {
            message: format!("cannot set up the query runtime: {error}"),
        })?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(super::yielding::YieldingJoins))
        .build();
    let context = SessionContext::new_with_state(state);
    context.register_catalog(DATABASE, Arc::new(BatonCatalog::new(source.clone())));
    setup_pg_catalog(&context, DATABASE, EmptyContextProvider).map_err(|error| {
        QueryError::Engine {
            message: format!("cannot set up pg_catalog: {error}"),
        }
    })?;
    // Baton's own system catalog answers for the views' relations (PostgreSQL's types and
    // oids, keys, descriptions); the rest of pg_catalog is datafusion-pg-catalog's.
    // `information_schema` is Baton's too (served by the `baton` catalog), in place of
    // DataFusion's, whose types are Arrow's.
    if let Some(catalog) = context.catalog(DATABASE)
        && let Some(fallback) = catalog.schema("pg_catalog")
    {
        catalog
            .register_schema(
                "pg_catalog",
                Arc::new(super::system::PgCatalogSchema {
                    fallback,
                    source: source.clone(),
                }),
            )
            .map_err(|error| QueryError::Engine {
                message: format!("cannot set up pg_catalog: {error}"),
            })?;
    }
    for function in super::catalog_functions::functions() {
        context.register_udf(function);
    }
    context.register_udf(super::datetime::to_char());
    for name in ["to_timestamp", "to_date"] {
        if let Some(builtin) = context.state().scalar_functions().get(name).cloned() {
            context.register_udf(super::datetime::with_postgresql_patterns(builtin));
        }
    }
    context.register_udf(super::datetime::timezone());
    // Registered after pg_catalog so that it replaces DataFusion's own `version()`, which does
    // not look like PostgreSQL's.
    let banner = version_banner();
    context.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                banner.clone(),
            ))))
        }),
    ));
    if let Some(builtin) = context.state().scalar_functions().get("round").cloned() {
        context.register_udf(functions::round_floats_half_even(builtin));
    }
    for name in ["repeat", "lpad", "rpad"] {
        let builtin = context.state().scalar_functions().get(name).cloned();
        if let Some(bounded) = builtin.and_then(functions::bounded_text_builder) {
            context.register_udf(bounded);
        }
    }
    context.register_udf(functions::current_setting());
    context.register_udf(functions::pg_get_serial_sequence());
    context.register_udf(functions::json_build_object());
    context.register_udf(functions::pg_collation_is_visible());
    Ok(context)
}

/// The hooks, in the order they are asked: refuse writes first, then answer what
/// datafusion-postgres does not, then its own hooks (cursors, `SET`/`SHOW`, transactions).
pub(super) fn query_hooks() -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(ReadOnlyHook),
        Arc::new(ServerFactsHook),
        Arc::new(super::cursor::CursorHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}

/// The protocol handlers: datafusion-postgres's, run with a snapshot pinned.
pub(super) struct SqlService {
    inner: Arc<DfSessionService>,
    parser: Arc<PinningParser>,
    source: Arc<CatalogSource>,
    /// The longest a statement may run; a session's `statement_timeout` may only lower it.
    statement_timeout: std::time::Duration,
    /// Open connections, watched for a client that leaves mid-statement.
    peers: Arc<Peers>,
    /// The views as known at a time, for a session that sets `baton.as_known_at`.
    known_at: Option<Arc<crate::KnownAt>>,
    /// Those views converted for SQL lately, by knowledge time.
    known_catalogs: std::sync::Mutex<Vec<(baton_core::Timestamp, Arc<ServedCatalog>)>>,
}

/// The session setting that reads the views as the log was known at a time.
pub(super) const AS_KNOWN_AT: &str = "baton.as_known_at";

/// How long a statement waits for another knowledge time's fold before it is told to retry.
const KNOWN_AT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl SqlService {
    /// The catalog of the views as known at the time the session set (`SET
    /// baton.as_known_at = '…'`), folded when first asked for; `None` without the setting.
    async fn known_catalog(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> datafusion::error::Result<Option<Arc<ServedCatalog>>> {
        use datafusion::error::DataFusionError::Plan;
        let Some(text) = SessionSettings::of(client).lock().get(AS_KNOWN_AT).cloned() else {
            return Ok(None);
        };
        let at = baton_core::Timestamp::parse_rfc3339(&text).map_err(|error| {
            Plan(format!(
                "{AS_KNOWN_AT} {text:?} is not an RFC 3339 time: {error} (RESET {AS_KNOWN_AT} to read the views as they are)"
            ))
        })?;
        let Some(known_at) = &self.known_at else {
            return Err(Plan(format!(
                "{AS_KNOWN_AT} needs the process that owns the log (baton serve)"
            )));
        };
        let kept = |list: &[(baton_core::Timestamp, Arc<ServedCatalog>)]| {
            list.iter()
                .find(|(time, _)| *time == at)
                .map(|(_, c)| c.clone())
        };
        let lock = |m: &std::sync::Mutex<Vec<(baton_core::Timestamp, Arc<ServedCatalog>)>>| {
            let list = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            kept(&list)
        };
        if let Some(served) = lock(&self.known_catalogs) {
            return Ok(Some(served));
        }
        let snapshot = known_at
            .snapshot(at, KNOWN_AT_WAIT)
            .await
            .map_err(|error| Plan(error.to_string()))?;
        let served = Arc::new(ServedCatalog::build(Arc::new(crate::Catalog::new(
            snapshot,
        )))?);
        let mut list = self
            .known_catalogs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() == 4 {
            list.remove(0);
        }
        list.push((at, served.clone()));
        Ok(Some(served))
    }

    /// Runs `work` with the session's catalog pinned: the views as known at its
    /// `baton.as_known_at` when it set one (`known`), else the newest.
    async fn pin<F: std::future::Future>(
        &self,
        known: Option<Arc<ServedCatalog>>,
        work: F,
    ) -> datafusion::error::Result<F::Output> {
        match known {
            Some(served) => Ok(CatalogSource::pinned_served(served, work).await),
            None => self.source.pinned(work).await,
        }
    }

    pub(super) fn new(
        context: SessionContext,
        source: Arc<CatalogSource>,
        statement_timeout: std::time::Duration,
        peers: Arc<Peers>,
        known_at: Option<Arc<crate::KnownAt>>,
    ) -> SqlService {
        let inner = Arc::new(DfSessionService::new_with_hooks(
            Arc::new(context),
            query_hooks(),
        ));
        let parser = Arc::new(PinningParser {
            inner: ExtendedQueryHandler::query_parser(&*inner),
            source: source.clone(),
        });
        SqlService {
            inner,
            parser,
            source,
            statement_timeout,
            peers,
            known_at,
            known_catalogs: std::sync::Mutex::new(Vec::new()),
        }
    }
}

fn catalog_error(error: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(error))
}

#[async_trait]
impl SimpleQueryHandler for SqlService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // One snapshot for every statement of the query string.
        let stop = Stop::start(client, self.statement_timeout, &self.peers).await;
        let query = rewrite::rewrite(query);
        // A `SET baton.as_known_at` in this very query string applies from the next one.
        let known = self.known_catalog(&*client).await.map_err(catalog_error)?;
        let work = SimpleQueryHandler::do_query(&*self.inner, client, &query);
        let responses = stop
            .run(self.pin(known, work))
            .await?
            .map_err(catalog_error)??;
        Ok(responses
            .into_iter()
            .map(|response| stop.watch(response))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for SqlService {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = PinningParser;

    fn query_parser(&self) -> Arc<PinningParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The plan was made at Parse time; its tables read the snapshot pinned now, so a
        // prepared statement executed again sees the newest snapshot.
        let stop = Stop::start(client, self.statement_timeout, &self.peers).await;
        let known = self.known_catalog(&*client).await.map_err(catalog_error)?;
        let work = ExtendedQueryHandler::do_query(&*self.inner, client, portal, max_rows);
        let response = stop
            .run(self.pin(known, work))
            .await?
            .map_err(catalog_error)??;
        Ok(stop.watch(response))
    }
}

/// datafusion-postgres's parser, planning with a snapshot pinned (planning resolves tables).
pub(super) struct PinningParser {
    inner: Arc<Parser>,
    source: Arc<CatalogSource>,
}

#[async_trait]
impl QueryParser for PinningParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = rewrite::rewrite(sql);
        let work = self.inner.parse_sql(client, &sql, types);
        self.source.pinned(work).await.map_err(catalog_error)?
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, column_format)
    }
}

/// Refuses every statement that would write (DML, DDL, `COPY`, `SELECT INTO`, ...) and
/// `SET datafusion.*`, which would change the engine for every connection.
#[derive(Debug)]
struct ReadOnlyHook;

impl ReadOnlyHook {
    fn check(statement: &Statement) -> Option<PgWireError> {
        if let Some(parameter) = engine_parameter(statement) {
            let mut info = ErrorInfo::new(
                "ERROR".to_owned(),
                "42501".to_owned(),
                format!("permission denied to set parameter \"{parameter}\""),
            );
            info.detail = Some(
                "DataFusion settings are shared by every connection to the endpoint.".to_owned(),
            );
            return Some(PgWireError::UserError(Box::new(info)));
        }
        let command = refused_command(statement)?;
        let mut info = ErrorInfo::new(
            "ERROR".to_owned(),
            "25006".to_owned(),
            format!("cannot execute {command} in a read-only transaction"),
        );
        info.detail = Some(
            "Baton's SQL endpoint is read-only: its tables are views folded from the event log."
                .to_owned(),
        );
        info.hint = Some(
            "Change what the views hold by appending events to the log, and how they are computed with a funnel definition and `baton replay`."
                .to_owned(),
        );
        Some(PgWireError::UserError(Box::new(info)))
    }
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        ReadOnlyHook::check(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        ReadOnlyHook::check(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// The `datafusion.*` parameter a `SET` would change, if any.
fn engine_parameter(statement: &Statement) -> Option<String> {
    let Statement::Set(set) = statement else {
        return None;
    };
    let names: Vec<&ObjectName> = match set {
        Set::SingleAssignment { variable, .. } => vec![variable],
        Set::ParenthesizedAssignments { variables, .. } => variables.iter().collect(),
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|assignment| &assignment.name)
            .collect(),
        _ => Vec::new(),
    };
    names
        .into_iter()
        // Quoted, `"datafusion.runtime.memory_limit"` names the same setting (issue 24.6:
        // it was let through and lifted the memory guard of every session).
        .map(|name| name.to_string().replace('"', "").to_lowercase())
        .find(|name| name.starts_with("datafusion."))
}

/// The command a statement runs when it is not read-only, named as PostgreSQL would.
pub(super) fn refused_command(statement: &Statement) -> Option<String> {
    match statement {
        Statement::Query(query) => query_writes(query).then(|| "SELECT INTO".to_owned()),
        Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
            refused_command(statement)
        }
        Statement::Declare { stmts } => stmts
            .iter()
            .filter_map(|declare| declare.for_query.as_deref())
            .any(query_writes)
            .then(|| "SELECT INTO".to_owned()),
        Statement::ExplainTable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Discard { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Deallocate { .. }
        | Statement::Execute { .. } => None,
        Statement::Insert(_) => Some("INSERT".to_owned()),
        Statement::Update(_) => Some("UPDATE".to_owned()),
        Statement::Delete(_) => Some("DELETE".to_owned()),
        Statement::Merge(_) => Some("MERGE".to_owned()),
        Statement::CreateTable(_) => Some("CREATE TABLE".to_owned()),
        Statement::CreateView(_) => Some("CREATE VIEW".to_owned()),
        Statement::CreateIndex(_) => Some("CREATE INDEX".to_owned()),
        Statement::CreateSchema { .. } => Some("CREATE SCHEMA".to_owned()),
        Statement::CreateDatabase { .. } => Some("CREATE DATABASE".to_owned()),
        Statement::CreateFunction(_) => Some("CREATE FUNCTION".to_owned()),
        Statement::AlterTable(_) => Some("ALTER TABLE".to_owned()),
        Statement::Drop { object_type, .. } => Some(format!("DROP {object_type}")),
        other => Some(first_keywords(other)),
    }
}

/// `CREATE SEQUENCE`, `VACUUM`, `GRANT`, ...: the statement's leading keywords.
fn first_keywords(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("statement").to_uppercase();
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" => match words.next() {
            Some(second) => format!("{first} {}", second.to_uppercase()),
            None => first,
        },
        _ => first,
    }
}

/// Whether a query writes: `SELECT ... INTO`, or a data-modifying statement inside it.
pub(super) fn query_writes(query: &Query) -> bool {
    let in_ctes = query
        .with
        .as_ref()
        .is_some_and(|with| with.cte_tables.iter().any(|cte| query_writes(&cte.query)));
    in_ctes || set_expr_writes(&query.body)
}

fn set_expr_writes(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::Query(query) => query_writes(query),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_writes(left) || set_expr_writes(right)
        }
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => true,
        _ => false,
    }
}

/// Answers what datafusion-postgres gets wrong or does not know: the server's version and
/// settings (`SHOW server_version` must agree with `version()`), `DISCARD`, which poolers
/// and Power BI send to reset a connection, and savepoints (`SAVEPOINT`, `RELEASE`,
/// `ROLLBACK TO`), which psycopg 3 sets inside a transaction when SQLAlchemy connects: a
/// read-only transaction has nothing to undo, so they only need PostgreSQL's answers.
#[derive(Debug)]
struct ServerFactsHook;

enum ServerFact {
    Show { name: String, value: String },
    Discard { tag: String },
    Savepoint { tag: &'static str },
}

/// What a connection has `SET`, by lower-case name: `SHOW` answers it back, as PostgreSQL
/// does (`SET extra_float_digits = 3` then `SHOW extra_float_digits` says 3).
#[derive(Default)]
struct SessionSettings(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl SessionSettings {
    fn of(client: &(dyn ClientInfo + Send + Sync)) -> Arc<SessionSettings> {
        client
            .session_extensions()
            .get_or_insert_with(SessionSettings::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers a `SET name = value` or forgets on `RESET`; the statement is still answered
    /// by the hooks after this one.
    fn remember(statement: &Statement, client: &(dyn ClientInfo + Send + Sync)) {
        match statement {
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) => {
                let value = values
                    .iter()
                    .map(|value| match value {
                        Expr::Value(value) => match &value.value {
                            Value::SingleQuotedString(text) => text.clone(),
                            other => other.to_string(),
                        },
                        Expr::Identifier(ident) => ident.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                SessionSettings::of(client)
                    .lock()
                    .insert(variable.to_string().to_lowercase(), value);
            }
            Statement::Reset(reset) => match &reset.reset {
                Reset::ALL => SessionSettings::of(client).lock().clear(),
                Reset::ConfigurationParameter(name) => {
                    SessionSettings::of(client)
                        .lock()
                        .remove(&name.to_string().to_lowercase());
                }
            },
            _ => {}
        }
    }
}

impl ServerFactsHook {
    fn fact(statement: &Statement, client: &(dyn ClientInfo + Send + Sync)) -> Option<ServerFact> {
        match statement {
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|part| part.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                let set = SessionSettings::of(client).lock().get(&name).cloned();
                let value = match name.as_str() {
                    // What the session set, shown back (the time zone has its own answer).
                    _ if set.is_some() && name != "timezone" => set.unwrap_or_default(),
                    "timezone" => client
                        .metadata()
                        .get("timezone")
                        .cloned()
                        .unwrap_or_else(|| "UTC".to_owned()),
                    // A connection's own `SET search_path` is answered by datafusion-postgres.
                    "search_path" => return None,
                    other => functions::server_setting(other)?.to_owned(),
                };
                Some(ServerFact::Show {
                    name: if name == "timezone" {
                        "TimeZone".to_owned()
                    } else {
                        name
                    },
                    value,
                })
            }
            Statement::Discard { object_type } => Some(ServerFact::Discard {
                tag: format!("DISCARD {object_type}"),
            }),
            // Baton's own settings (`baton.as_known_at`) are the session's, answered here:
            // DataFusion has no such namespace.
            Statement::Set(Set::SingleAssignment { variable, .. })
                if variable.to_string().to_lowercase().starts_with("baton.") =>
            {
                Some(ServerFact::Savepoint { tag: "SET" })
            }
            Statement::Reset(reset)
                if matches!(&reset.reset, Reset::ConfigurationParameter(name)
                    if name.to_string().to_lowercase().starts_with("baton.")) =>
            {
                Some(ServerFact::Savepoint { tag: "RESET" })
            }
            Statement::Savepoint { .. } => Some(ServerFact::Savepoint { tag: "SAVEPOINT" }),
            Statement::ReleaseSavepoint { .. } => Some(ServerFact::Savepoint { tag: "RELEASE" }),
            Statement::Rollback {
                savepoint: Some(_), ..
            } => Some(ServerFact::Savepoint { tag: "ROLLBACK" }),
            _ => None,
        }
    }

    fn respond(fact: ServerFact) -> PgWireResult<Response> {
        match fact {
            ServerFact::Discard { tag } => Ok(Response::Execution(Tag::new(&tag))),
            ServerFact::Savepoint { tag } => Ok(Response::Execution(Tag::new(tag))),
            ServerFact::Show { name, value } => {
                let fields = Arc::new(vec![FieldInfo::new(
                    name,
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )]);
                let mut encoder = DataRowEncoder::new(fields.clone());
                encoder.encode_field(&Some(value))?;
                let row = encoder.take_row();
                let rows = futures::stream::once(async move { Ok(row) });
                Ok(Response::Query(QueryResponse::new(fields, rows)))
            }
        }
    }

    fn plan(fact: &ServerFact) -> PgWireResult<LogicalPlan> {
        let fields = match fact {
            ServerFact::Discard { .. } | ServerFact::Savepoint { .. } => vec![],
            ServerFact::Show { name, .. } => vec![Field::new(name, DataType::Utf8, false)],
        };
        let schema = DFSchema::try_from(Schema::new(fields))
            .map_err(|error| PgWireError::ApiError(Box::new(error)))?;
        Ok(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: true,
            schema: Arc::new(schema),
        }))
    }
}

#[async_trait]
impl QueryHook for ServerFactsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        SessionSettings::remember(statement, &*client);
        let fact = ServerFactsHook::fact(statement, &*client)?;
        Some(ServerFactsHook::respond(fact))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let fact = ServerFactsHook::fact(statement, client)?;
        Some(ServerFactsHook::plan(&fact))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        SessionSettings::remember(statement, &*client);
        let fact = ServerFactsHook::fact(statement, &*client)?;
        Some(ServerFactsHook::respond(fact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser as SqlParser;

    fn refused(sql: &str) -> Option<String> {
        let statements = SqlParser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        refused_command(&statements[0])
    }

    #[test]
    fn reads_pass_and_writes_are_named() {
        assert_eq!(refused("select * from campaigns"), None);
        assert_eq!(refused("with a as (select 1) select * from a"), None);
        assert_eq!(refused("explain select 1"), None);
        assert_eq!(refused("set search_path = public"), None);
        assert_eq!(refused("show server_version"), None);
        assert_eq!(refused("begin"), None);
        assert_eq!(refused("discard all"), None);
        assert_eq!(
            refused("insert into t values (1)").as_deref(),
            Some("INSERT")
        );
        assert_eq!(refused("update t set a = 1").as_deref(), Some("UPDATE"));
        assert_eq!(refused("delete from t").as_deref(), Some("DELETE"));
        assert_eq!(
            refused("create table t (a int)").as_deref(),
            Some("CREATE TABLE")
        );
        assert_eq!(
            refused("drop table campaigns").as_deref(),
            Some("DROP TABLE")
        );
        assert_eq!(refused("truncate campaigns").as_deref(), Some("TRUNCATE"));
        assert_eq!(refused("select 1 into t").as_deref(), Some("SELECT INTO"));
        assert_eq!(
            refused("explain analyze delete from t").as_deref(),
            Some("DELETE")
        );
        assert_eq!(
            refused("copy campaigns to '/tmp/x.csv'").as_deref(),
            Some("COPY")
        );
        assert_eq!(
            refused("create sequence s").as_deref(),
            Some("CREATE SEQUENCE")
        );
    }

    #[test]
    fn engine_settings_cannot_be_set() {
        let statements = SqlParser::parse_sql(
            &PostgreSqlDialect {},
            "set datafusion.execution.target_partitions = 1",
        )
        .expect("parses");
        assert_eq!(
            engine_parameter(&statements[0]).as_deref(),
            Some("datafusion.execution.target_partitions")
        );
        for quoted in [
            r#"set "datafusion.runtime.memory_limit" = '64G'"#,
            r#"SET "DataFusion"."execution"."batch_size" TO 1"#,
            r#"set session "datafusion.execution.batch_size" = 1"#,
        ] {
            let statements = SqlParser::parse_sql(&PostgreSqlDialect {}, quoted).expect("parses");
            assert!(
                engine_parameter(&statements[0])
                    .is_some_and(|name| name.starts_with("datafusion.")),
                "{quoted}"
            );
        }
        let statements = SqlParser::parse_sql(&PostgreSqlDialect {}, "set application_name = 'x'")
            .expect("parses");
        assert_eq!(engine_parameter(&statements[0]), None);
    }

    #[tokio::test]
    async fn a_query_over_the_memory_limit_fails_instead_of_growing() {
        use crate::{Catalog, Snapshot};
        use baton_core::{FunnelDefinition, FunnelProjection};
        use baton_producer::{History, HistoryConfig};

        let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in History::new(HistoryConfig::new(3, 20)) {
            projection.apply(&event);
        }
        projection.refresh();
        let snapshot = Snapshot::build("main", &projection, baton_projector::Position::new(1));
        let (_sender, receiver) =
            tokio::sync::watch::channel(Arc::new(Catalog::new(Arc::new(snapshot))));
        let source = Arc::new(CatalogSource::new(receiver));
        let context = session_context(source.clone(), 64 * 1024).expect("context");
        // Small enough for the limit: a plain count.
        let count = source
            .pinned(async {
                context
                    .sql("select count(*) from person_scores")
                    .await?
                    .collect()
                    .await
            })
            .await
            .expect("pinned")
            .expect("a small query runs");
        assert_eq!(count.len(), 1);
        // A sorted self-join needs far more than 64 KiB of working memory.
        let error = source
            .pinned(async {
                context
                    .sql("select a.person, b.person from person_scores a cross join person_scores b order by 1, 2")
                    .await?
                    .collect()
                    .await
            })
            .await
            .expect("pinned")
            .expect_err("over the limit");
        let info = crate::sql::sqlstate::engine_error(&error);
        assert_eq!(info.code, "53200", "{error}");
    }

    #[tokio::test]
    async fn a_lookup_in_a_table_larger_than_the_working_memory_streams() {
        use crate::table::{ColumnType, Table, Value, ViewKind};
        use crate::{Catalog, Snapshot};

        // 200,000 rows of about 40 bytes: 8 MB as one Arrow batch, eight times the limit.
        let rows = (0..200_000)
            .map(|n| {
                vec![
                    Value::Text(format!("person-{n:08}-with-some-padding")),
                    Value::Float(f64::from(n)),
                ]
            })
            .collect();
        let table = Table {
            name: "big",
            columns: vec![("person", ColumnType::Text), ("score", ColumnType::Float)],
            rows,
        };
        let snapshot = Snapshot::of_tables("main", vec![(ViewKind::Marketing, table)]);
        let (_sender, receiver) =
            tokio::sync::watch::channel(Arc::new(Catalog::new(Arc::new(snapshot))));
        let source = Arc::new(CatalogSource::new(receiver));
        let context = session_context(source.clone(), 1 << 20).expect("context");
        let found = source
            .pinned(async {
                context
                    .sql("select score from big where person = 'person-00199999-with-some-padding'")
                    .await?
                    .collect()
                    .await
            })
            .await
            .expect("pinned")
            .expect("a lookup streams the table instead of holding it");
        let rows: usize = found.iter().map(|batch| batch.num_rows()).sum();
        assert_eq!(rows, 1);
    }

    #[test]
    fn the_version_banner_reads_as_postgresql() {
        // SQLAlchemy's pattern: `PostgreSQL <major>.<minor>` somewhere in the string.
        let banner = version_banner();
        assert!(
            banner.starts_with(&format!("PostgreSQL {SERVER_VERSION} ")),
            "{banner}"
        );
    }
}
