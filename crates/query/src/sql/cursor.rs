//! Server-side cursors: `DECLARE name CURSOR FOR query`, `FETCH n FROM name`, `CLOSE name`;
//! and `DEALLOCATE` of a prepared statement, which names the same store.
//! pandas and SQLAlchemy stream large results this way (`stream_results`), psycopg 3 for every
//! named cursor.
//!
//! A client that fetches over the extended protocol learns the columns from a `Describe` of
//! the cursor's portal (psycopg 3) or of the `FETCH` statement (psycopg2 over pgjdbc-like
//! drivers), before any row arrives: without a RowDescription there, psycopg 3's C
//! implementation crashed on the first row. So a cursor keeps its query's plan, which
//! describes the portal, and its schema, by name, in the session, which describes a `FETCH`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use datafusion::common::{DFSchema, DFSchemaRef, ParamValues};
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, Declare, DeclareType, FetchDirection, Statement,
};
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use pgwire::api::ClientInfo;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// What a connection's open cursors return, by name: the plan's schema (to describe a
/// `FETCH` before it runs) and the row description (for a `FETCH` past the last row, which
/// still describes the columns, as in PostgreSQL).
#[derive(Default)]
struct CursorSchemas(Mutex<HashMap<String, Described>>);

/// A cursor's plan schema and row description.
type Described = (DFSchemaRef, Arc<Vec<FieldInfo>>);

impl CursorSchemas {
    fn of(client: &(dyn ClientInfo + Send + Sync)) -> Arc<CursorSchemas> {
        client
            .session_extensions()
            .get_or_insert_with(CursorSchemas::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Described>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// Answers `DECLARE`, `FETCH` and `CLOSE`.
#[derive(Debug)]
pub(super) struct CursorHook;

impl CursorHook {
    async fn run(
        statement: &Statement,
        params: Option<&ParamValues>,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Some(match statement {
            Statement::Declare { stmts } => declare(stmts, params, context, client).await,
            Statement::Fetch {
                name, direction, ..
            } => fetch(&name.value, direction, client).await,
            Statement::Close { cursor } => {
                let schemas = CursorSchemas::of(&*client);
                match cursor {
                    CloseCursor::All => {
                        client.portal_store().clear_portals();
                        schemas.lock().clear();
                    }
                    CloseCursor::Specific { name } => {
                        client.portal_store().rm_portal(&name.value);
                        schemas.lock().remove(&name.value);
                    }
                }
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
            Statement::Deallocate { name, .. } => Ok(deallocate(&name.value, client)),
            _ => return None,
        })
    }
}

/// `DEALLOCATE name` forgets a statement prepared over the protocol (psycopg 3 prepares
/// the statements it runs often); `DEALLOCATE ALL`, which psycopg 3 sends on a rollback, is
/// acknowledged: the store cannot list its statements, and names are not reused (psycopg
/// numbers them), so the ones left only take memory until the connection closes.
fn deallocate(name: &str, client: &mut dyn HookClient) -> Response {
    if name.eq_ignore_ascii_case("all") {
        return Response::Execution(Tag::new("DEALLOCATE ALL"));
    }
    client.portal_store().rm_statement(name);
    Response::Execution(Tag::new("DEALLOCATE"))
}

async fn declare(
    stmts: &[Declare],
    params: Option<&ParamValues>,
    context: &SessionContext,
    client: &mut dyn HookClient,
) -> PgWireResult<Response> {
    for declare in stmts {
        if declare.declare_type != Some(DeclareType::Cursor) {
            return Err(error(
                "0A000",
                "only DECLARE ... CURSOR FOR a query is supported".to_owned(),
            ));
        }
        let Some(name) = declare.names.first().map(|name| name.value.clone()) else {
            return Err(error("42601", "DECLARE needs a cursor name".to_owned()));
        };
        let Some(query) = &declare.for_query else {
            return Err(error(
                "42601",
                format!("DECLARE {name} CURSOR needs FOR and a query"),
            ));
        };
        if client.portal_store().get_portal(&name).is_some() {
            return Err(error("42P03", format!("cursor \"{name}\" already exists")));
        }
        let text = query.to_string();
        let planned = context
            .sql(&text)
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let plan = planned.logical_plan().clone();
        let schema = plan.schema().clone();
        // The query's parameters are the DECLARE's (SQLAlchemy streams bound queries).
        let frame = match params {
            Some(params) => planned
                .with_param_values(params.clone())
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?,
            None => planned,
        };
        let rows = encode_dataframe(frame, &Format::UnifiedText, None).await?;
        let fields = rows.row_schema();
        let statement = (text, Some((Statement::Query(query.clone()), plan)));
        let stored = Arc::new(StoredStatement::new(name.clone(), statement, Vec::new()));
        let portal = Portal::new_cursor(name.clone(), stored);
        portal.start(rows).await;
        client.portal_store().put_portal(Arc::new(portal));
        CursorSchemas::of(&*client)
            .lock()
            .insert(name, (schema, fields));
    }
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

async fn fetch(
    name: &str,
    direction: &FetchDirection,
    client: &mut dyn HookClient,
) -> PgWireResult<Response> {
    let count = |value: &datafusion::sql::sqlparser::ast::Value| {
        value.to_string().parse::<usize>().map_err(|_| {
            error(
                "22023",
                format!("FETCH {value}: a count of rows is a whole number"),
            )
        })
    };
    // 0 is "every row left", as the portal counts.
    let rows = match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => 1,
        FetchDirection::Forward { limit: Some(n) } | FetchDirection::Count { limit: n } => {
            match count(n)? {
                0 => return Err(error("0A000", "FETCH 0 (the current row again) is not supported: cursors here only move forward".to_owned())),
                n => n,
            }
        }
        FetchDirection::ForwardAll | FetchDirection::All => 0,
        other => {
            return Err(error(
                "0A000",
                format!("FETCH {other}: cursors here only move forward (NEXT, FORWARD n, ALL)"),
            ));
        }
    };
    let portal = client
        .portal_store()
        .get_portal(name)
        .and_then(|entry| entry.value().cloned())
        .ok_or_else(|| error("34000", format!("cursor \"{name}\" does not exist")))?;
    let fetched = portal.fetch(rows).await?;
    if fetched.response.row_schema().is_empty() {
        let fields = CursorSchemas::of(&*client)
            .lock()
            .get(name)
            .map(|(_, fields)| fields.clone());
        if let Some(fields) = fields {
            return Ok(Response::Query(QueryResponse::new(
                fields,
                futures::stream::empty(),
            )));
        }
    }
    Ok(Response::Query(fetched.response))
}

#[async_trait]
impl QueryHook for CursorHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        CursorHook::run(statement, None, context, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let schema = match statement {
            // A FETCH describes the rows of its cursor.
            Statement::Fetch { name, .. } => CursorSchemas::of(client)
                .lock()
                .get(&name.value)
                .map(|(schema, _)| schema.clone())
                .unwrap_or_else(|| Arc::new(DFSchema::empty())),
            Statement::Declare { .. } | Statement::Close { .. } | Statement::Deallocate { .. } => {
                Arc::new(DFSchema::empty())
            }
            _ => return None,
        };
        Some(Ok(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: false,
            schema,
        })))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        params: &ParamValues,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        CursorHook::run(statement, Some(params), context, client).await
    }
}
