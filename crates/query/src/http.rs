//! The views over HTTP: every table as a resource, JSON by default and CSV on request, filters
//! and pagination, the log position every answer reflects, read-your-writes with
//! `?min_position=N`, one read-only SQL query per `POST /v1/sql` (feature `sql`), an OpenAPI
//! document, health, readiness and Prometheus metrics.
//!
//! Answers are computed from the latest [`Snapshot`] the projector published: every table of
//! one answer comes from the same log position. Read tokens guard every route but `/healthz`;
//! with no token configured, only loopback peers are served.

use crate::dashboard;
use crate::format::rows_json;
use crate::table::{ColumnType, Snapshot, Table, Value};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use baton_projector::{Position, Status};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The longest `?min_position` wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The wait when a request gives `min_position` without `wait_ms`.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The most rows a page may ask for (`limit`); without `limit` or `offset`, an answer holds
/// every matching row, streamed.
const MAX_LIMIT: usize = 100_000;
/// The most rows one `POST /v1/sql` answer holds; a query with more answers with the first
/// ones and `"truncated": true` (and `Baton-Truncated: true`).
pub const MAX_SQL_ROWS: usize = 100_000;
/// The longest a SQL statement may run unless configured ([`QueryState::with_sql_timeout`],
/// `SqlConfig::statement_timeout`): long enough for any query over the views of a large
/// history (they answer in milliseconds), short enough that a runaway one gives its thread
/// back within a minute.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest SQL text `POST /v1/sql` accepts.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// The largest funnel definition `POST /v1/backtests` accepts.
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;

/// What the query routes read.
#[derive(Clone, Debug)]
pub struct QueryState {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    status: Arc<Status>,
    read_tokens: Arc<Vec<String>>,
    /// The highest position a waiting request asked for: the projector publishes a snapshot
    /// as soon as it reaches it, instead of at its usual pace.
    wanted: Arc<AtomicU64>,
    metrics: Arc<QueryMetrics>,
    /// What `/metrics` encodes: this state's figures, SQL's, and what other services register.
    registry: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    /// The catalogs the SQL endpoint serves (live and candidate views), when published: SQL
    /// over HTTP then sees the candidates too; without them it sees the live view.
    catalogs: Option<watch::Receiver<Arc<crate::Catalog>>>,
    /// The longest a statement of `POST /v1/sql` may run.
    sql_timeout: Duration,
    /// The engine of `POST /v1/sql`, set up on its first query (or the reason it cannot be).
    #[cfg(feature = "sql")]
    sql: Arc<std::sync::OnceLock<Result<Arc<crate::sql::SqlEngine>, String>>>,
    /// The dashboards built lately, so that every open page at a position shares one build.
    dashboards: Arc<dashboard::Built>,
    /// The views as known at a time (`as_known_at`), when the process can fold the log.
    known_at: Option<Arc<crate::KnownAt>>,
    /// Backtests (`/v1/backtests`), when the process can fold the log.
    backtests: Option<Arc<crate::backtest::Backtests>>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct QueryMetrics {
    requests: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

impl QueryMetrics {
    /// Requests, errors, and seconds spent finding snapshots.
    pub(crate) fn figures(&self) -> (u64, u64, f64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

impl QueryState {
    /// `snapshots` carries what the projector publishes (`None` before the first); `status` is
    /// the projector's; `wanted` is shared with the publisher (see [`SnapshotPublisher`]).
    pub fn new(
        snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        status: Arc<Status>,
        read_tokens: Vec<String>,
        wanted: Arc<AtomicU64>,
    ) -> QueryState {
        let metrics = Arc::<QueryMetrics>::default();
        let registry = crate::metrics::registry(status.clone(), snapshots.clone(), metrics.clone());
        QueryState {
            snapshots,
            status,
            read_tokens: Arc::new(read_tokens),
            wanted,
            metrics,
            registry: Arc::new(std::sync::Mutex::new(registry)),
            catalogs: None,
            sql_timeout: DEFAULT_STATEMENT_TIMEOUT,
            #[cfg(feature = "sql")]
            sql: Arc::default(),
            dashboards: Arc::default(),
            known_at: None,
            backtests: None,
        }
    }

    /// Serves `/v1/backtests` with these runs.
    pub fn with_backtests(mut self, backtests: Arc<crate::backtest::Backtests>) -> QueryState {
        self.backtests = Some(backtests);
        self
    }

    /// Serves `as_known_at` on every route that reads the views, from these folds.
    pub fn with_known_at(mut self, known_at: Arc<crate::KnownAt>) -> QueryState {
        self.known_at = Some(known_at);
        self
    }

    /// Serves `POST /v1/sql` from the catalogs published for the SQL endpoint (see
    /// [`SnapshotPublisher::with_catalogs`]), so that candidate views are tables there too.
    pub fn with_catalogs(mut self, catalogs: watch::Receiver<Arc<crate::Catalog>>) -> QueryState {
        self.catalogs = Some(catalogs);
        self
    }

    /// Lets another service of the process register its metrics, served at `/metrics` beside
    /// these (the collector's).
    pub fn with_metrics(
        self,
        register: impl FnOnce(&mut prometheus_client::registry::Registry),
    ) -> QueryState {
        register(
            &mut self
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self
    }

    /// The longest a statement of `POST /v1/sql` may run (by default
    /// [`DEFAULT_STATEMENT_TIMEOUT`]).
    pub fn with_sql_timeout(mut self, limit: Duration) -> QueryState {
        self.sql_timeout = limit;
        self
    }
}

/// An error answer: a status and a message naming what is wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// More fields of the JSON answer (a SQL error's `sqlstate`, `detail`, `hint`).
    more: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            more: serde_json::Map::new(),
        }
    }

    fn with(mut self, field: &str, value: impl Into<serde_json::Value>) -> ApiError {
        self.more.insert(field.to_owned(), value.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".to_owned(), self.message.into());
        body.extend(self.more);
        let mut response = (self.status, Json(serde_json::Value::Object(body))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The query routes.
pub fn router(state: QueryState) -> Router {
    // The read API: counted in `/metrics`, refusals by `authorize` included (its layer is
    // inside the counting one).
    let reads = Router::new()
        .route("/v1/views", get(list_tables))
        .route("/v1/views/{table}", get(table_rows))
        .route("/v1/funnel", get(funnel))
        .route("/v1/people/{person}", get(person))
        .route("/v1/dashboard", get(dashboard))
        .route("/v1/comparisons", get(comparisons))
        .route("/v1/comparisons/{candidate}", get(comparison))
        .route(
            "/v1/sql",
            post(sql).layer(DefaultBodyLimit::max(MAX_SQL_BYTES)),
        )
        .route(
            "/v1/backtests",
            get(list_backtests)
                .post(start_backtest)
                .layer(DefaultBodyLimit::max(MAX_DEFINITION_BYTES)),
        )
        .route("/v1/backtests/{id}", get(backtest))
        .route("/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), count));
    // Probes: guarded, but not counted, so that a scrape or a readiness check while catching
    // up does not read as a failed request.
    let probes = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ));
    // The dashboard's page and files hold no data (it asks `/v1/dashboard`, under the read
    // tokens), so they are served to anyone: the page is where a token is typed.
    let page = Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", dashboard::PAGE) }),
        )
        .route(
            "/dashboard/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", dashboard::SCRIPT) }),
        )
        .route(
            "/dashboard/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", dashboard::STYLE) }),
        );
    Router::new()
        .merge(page)
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(reads)
        .merge(probes)
        .with_state(state)
}

fn backtests_of(state: &QueryState) -> Result<&Arc<crate::backtest::Backtests>, ApiError> {
    state.backtests.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "backtests run in `baton serve`, the process that owns the log",
        )
    })
}

/// `POST /v1/backtests`: starts a backtest of the definition in the body (TOML); with
/// `?keep=NAME`, its candidate is kept as a view of that name once compared.
async fn start_backtest(
    State(state): State<QueryState>,
    Query(params): Query<BTreeMap<String, String>>,
    body: String,
) -> Result<Response, ApiError> {
    let backtests = backtests_of(&state)?;
    if let Some(unknown) = params.keys().find(|key| key.as_str() != "keep") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown query parameter {unknown:?}: a backtest takes only `keep` (the view to keep its candidate as)"
            ),
        ));
    }
    match backtests.start("the request body", &body, params.get("keep").map(String::as_str)) {
        Ok(answer) => {
            let href = answer["href"].as_str().unwrap_or_default().to_owned();
            let mut response = (StatusCode::ACCEPTED, Json(answer)).into_response();
            if let Ok(value) = HeaderValue::from_str(&href) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        Err(crate::backtest::StartError::Invalid(message)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message))
        }
        Err(crate::backtest::StartError::Busy(running)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "a backtest is already running (one at a time: each reads the whole log); follow it, and start this one when it is done",
        )
        .with("running", running)),
    }
}

/// `GET /v1/backtests`: the kept backtests, newest first.
async fn list_backtests(State(state): State<QueryState>) -> Result<Response, ApiError> {
    let backtests = backtests_of(&state)?;
    Ok(Json(serde_json::json!({"backtests": backtests.list()})).into_response())
}

/// `GET /v1/backtests/{id}`: one backtest, with its comparison once done.
async fn backtest(
    State(state): State<QueryState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let backtests = backtests_of(&state)?;
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no backtest {id:?} (ids are numbers; the last {} finished are kept)",
                crate::backtest::KEEP
            ),
        )
    };
    let id: u64 = id.parse().map_err(|_| missing())?;
    backtests
        .get(id)
        .map(|answer| Json(answer).into_response())
        .ok_or_else(missing)
}

/// Counts every answer of the read API, and every 4xx or 5xx one as an error.
async fn count(State(state): State<QueryState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        state.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn authorize(
    State(state): State<QueryState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    if state.read_tokens.is_empty() {
        return match peer {
            Some(peer) if peer.ip().is_loopback() => Ok(next.run(request).await),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no read token is configured, so reads are served to loopback peers only",
            )),
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing read token: send `Authorization: Bearer TOKEN`",
        ));
    };
    let known = state.read_tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(token, presented)
    });
    if !known {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown read token",
        ));
    }
    Ok(next.run(request).await)
}

/// Compares without stopping at the first difference, so timing tells nothing of a token.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut difference = a.len() ^ b.len();
    for (index, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

/// Query parameters every view route takes.
/// An RFC 3339 query parameter, if given; a 400 naming it when it is not one.
fn time_param(
    params: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<baton_core::Timestamp>, ApiError> {
    param(params, name)
        .map(|text| {
            baton_core::Timestamp::parse_rfc3339(text).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `{name}`: {error}"),
                )
            })
        })
        .transpose()
}

fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

fn number(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    param(params, name)
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `{name}`: not a whole number: {text:?}"),
                )
            })
        })
        .transpose()
}

/// The snapshot to answer from: the latest, after waiting for `min_position` if asked.
async fn snapshot(
    state: &QueryState,
    params: &BTreeMap<String, String>,
) -> Result<Arc<Snapshot>, ApiError> {
    if let Some(text) = param(params, "as_known_at") {
        let at = baton_core::Timestamp::parse_rfc3339(text).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("as_known_at {text:?} is not an RFC 3339 time: {error}"),
            )
        })?;
        if params.contains_key("min_position") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "as_known_at and min_position do not go together: the views as known at a time are at the position that time reached",
            ));
        }
        let Some(known_at) = &state.known_at else {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "as_known_at needs the process that owns the log (baton serve)",
            ));
        };
        let wait = match number(params, "wait_ms")? {
            Some(ms) => Duration::from_millis(ms).min(MAX_WAIT),
            None => DEFAULT_WAIT,
        };
        return known_at
            .snapshot(at, wait)
            .await
            .map_err(|error| match error {
                crate::KnownAtError::Busy => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
                }
                crate::KnownAtError::Failed { .. } => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
                }
            });
    }
    let started = std::time::Instant::now();
    let min = number(params, "min_position")?.map(Position::new);
    let wait = match number(params, "wait_ms")? {
        Some(ms) => Duration::from_millis(ms).min(MAX_WAIT),
        None => DEFAULT_WAIT,
    };
    let mut receiver = state.snapshots.clone();
    let current = receiver.borrow_and_update().clone();
    let result = match (current, min) {
        (Some(snapshot), None) => Ok(snapshot),
        (Some(snapshot), Some(min)) if snapshot.position >= min => Ok(snapshot),
        (current, min) => {
            // Ask for an early snapshot only for a position the log has: one far beyond the
            // head (a typo, another stream's sequence) must not hold the others back.
            if let Some(min) = min
                && min <= state.status.head()
            {
                state.wanted.fetch_max(min.get(), Ordering::AcqRel);
            }
            let reached = |snapshot: &Option<Arc<Snapshot>>| {
                snapshot
                    .as_ref()
                    .is_some_and(|s| min.is_none_or(|min| s.position >= min))
            };
            let waited = tokio::time::timeout(wait, receiver.wait_for(reached)).await;
            match waited {
                Ok(Ok(snapshot)) => Ok(snapshot.clone().expect("invariant: checked by wait_for")),
                _ => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    match (current, min) {
                        (Some(snapshot), Some(min)) => format!(
                            "the views reflect position {}, not yet {min} (waited {} ms; retry, or raise wait_ms up to {} ms)",
                            snapshot.position,
                            wait.as_millis(),
                            MAX_WAIT.as_millis()
                        ),
                        _ => "the views are not built yet: the projector is still catching up"
                            .to_owned(),
                    },
                )),
            }
        }
    };
    state
        .metrics
        .micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    result
}

fn wants_csv(params: &BTreeMap<String, String>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match param(params, "format") {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `format`: expected `json` or `csv`, got {other:?}"),
            ));
        }
        None => {}
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv")))
}

fn with_position(mut response: Response, snapshot: &Snapshot) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&snapshot.position.get().to_string()) {
        headers.insert("baton-position", value);
    }
    if let Ok(value) = HeaderValue::from_str(&snapshot.view) {
        headers.insert("baton-view", value);
    }
    if let Some(at) = snapshot.as_known_at
        && let Ok(value) = HeaderValue::from_str(&at.to_rfc3339())
    {
        headers.insert("baton-as-known-at", value);
    }
    response
}

/// Parameters that are not column filters.
const RESERVED: &[&str] = &[
    "format",
    "limit",
    "offset",
    "min_position",
    "wait_ms",
    "as_known_at",
    "from",
    "to",
];

fn cell_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Text(text) => Some(text.clone()),
        Value::Int(int) => Some(int.to_string()),
        Value::Float(float) => Some(float.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Time(time) => Some(time.to_rfc3339()),
    }
}

/// Applies column filters (`?column=value`, exact match), the date range (`from`, `to`, RFC
/// 3339, on the table's first time column) and pagination.
fn select(table: &Table, params: &BTreeMap<String, String>) -> Result<Selection, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let mut filters = Vec::new();
    for (name, wanted) in params {
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        let Some(index) = table.columns.iter().position(|(column, _)| column == name) else {
            let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
            return Err(bad(format!(
                "query parameter `{name}`: table `{}` has no such column; its columns: {}",
                table.name,
                columns.join(", ")
            )));
        };
        filters.push((index, wanted.as_str()));
    }
    let (from, to) = (time_param(params, "from")?, time_param(params, "to")?);
    let time_column = table
        .columns
        .iter()
        .position(|(_, kind)| *kind == ColumnType::Time);
    if (from.is_some() || to.is_some()) && time_column.is_none() {
        return Err(bad(format!(
            "query parameters `from`/`to`: table `{}` has no time column",
            table.name
        )));
    }
    // Paging is asked for: without `limit` and `offset`, every matching row.
    let limit = number(params, "limit")?.map(|n| n as usize);
    if let Some(limit) = limit
        && limit > MAX_LIMIT
    {
        return Err(bad(format!(
            "query parameter `limit`: at most {MAX_LIMIT}, got {limit}"
        )));
    }
    let offset = number(params, "offset")?.map(|n| n as usize);
    let matching: Vec<usize> = table
        .rows
        .iter()
        .enumerate()
        .filter(|(_, row)| {
            filters
                .iter()
                .all(|(index, wanted)| cell_text(&row[*index]).as_deref() == Some(*wanted))
        })
        .filter(|(_, row)| match time_column.map(|index| &row[index]) {
            Some(Value::Time(at)) => from.is_none_or(|f| *at >= f) && to.is_none_or(|t| *at < t),
            Some(_) => from.is_none() && to.is_none(),
            None => true,
        })
        .map(|(at, _)| at)
        .collect();
    let total = matching.len();
    let paging = (limit.is_some() || offset.is_some()).then(|| {
        let offset = offset.unwrap_or(0);
        let limit = limit.unwrap_or(MAX_LIMIT);
        let end = offset.saturating_add(limit).min(total);
        Paging {
            offset,
            limit,
            next_offset: (end < total).then_some(end),
        }
    });
    let rows = match &paging {
        Some(paging) => matching
            .into_iter()
            .skip(paging.offset)
            .take(paging.limit)
            .collect(),
        None => matching,
    };
    Ok(Selection {
        rows,
        total,
        paging,
    })
}

/// The rows of a table a request selects: their indices in the table, how many matched before
/// paging, and the page when one was asked for.
struct Selection {
    rows: Vec<usize>,
    total: usize,
    paging: Option<Paging>,
}

/// A page: asked for with `limit` or `offset`, and said in the answer.
#[derive(Clone, Copy)]
struct Paging {
    offset: usize,
    limit: usize,
    next_offset: Option<usize>,
}

/// Rows rendered per chunk of a streamed answer.
const ROWS_PER_CHUNK: usize = 100;

/// The selected rows of a table as CSV or JSON, rendered chunk by chunk while the answer is
/// sent, so a million rows never sit in memory a second time.
fn streamed_rows(
    snapshot: Arc<Snapshot>,
    owned: Option<Arc<Table>>,
    name: String,
    selection: Selection,
    as_csv: bool,
) -> axum::body::Body {
    let Selection {
        rows,
        total,
        paging,
    } = selection;
    let names: Vec<&'static str> = owned
        .as_deref()
        .or_else(|| snapshot.table(&name))
        .map(|t| t.columns.iter().map(|(n, _)| *n).collect())
        .unwrap_or_default();
    let head = if as_csv {
        crate::format::csv_header(&names)
    } else {
        let mut head = serde_json::Map::new();
        head.insert("table".into(), name.clone().into());
        head.insert("view".into(), snapshot.view.clone().into());
        head.insert("position".into(), snapshot.position.get().into());
        head.insert("total".into(), total.into());
        if let Some(paging) = paging {
            head.insert("offset".into(), paging.offset.into());
            head.insert("limit".into(), paging.limit.into());
            head.insert("next_offset".into(), paging.next_offset.into());
        }
        let head = serde_json::Value::Object(head).to_string();
        // `{...}` without its closing brace, then the rows.
        format!("{},\"rows\":[", &head[..head.len() - 1])
    };
    let chunks = rows.len().div_ceil(ROWS_PER_CHUNK);
    let body = (0..chunks).map(move |chunk| {
        let mut out = String::new();
        if let Some(table) = owned.as_deref().or_else(|| snapshot.table(&name)) {
            let start = chunk * ROWS_PER_CHUNK;
            let end = (start + ROWS_PER_CHUNK).min(rows.len());
            for (at, index) in rows[start..end].iter().enumerate() {
                let row = &table.rows[*index];
                if as_csv {
                    crate::format::csv_row(&mut out, row);
                } else {
                    if start + at > 0 {
                        out.push(',');
                    }
                    out.push_str(&crate::format::json_row(&names, row).to_string());
                }
            }
        }
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(out))
    });
    let tail = (!as_csv).then(|| Ok(axum::body::Bytes::from_static(b"]}")));
    let stream = futures::stream::iter(
        std::iter::once(Ok(axum::body::Bytes::from(head)))
            .chain(body)
            .chain(tail),
    );
    axum::body::Body::from_stream(stream)
}

async fn list_tables(
    State(state): State<QueryState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let snapshot = snapshot(&state, &params).await?;
    let tables: Vec<serde_json::Value> = snapshot
        .table_names()
        .map(|(kind, name)| {
            let columns = snapshot.columns(name).unwrap_or_default();
            serde_json::json!({
                "table": name,
                "view": kind.as_str(),
                // The whole attribution ledger is worked out only when read.
                "rows": snapshot.rows_if_built(name),
                "columns": columns.iter().map(|(name, kind)| serde_json::json!({
                    "name": name,
                    "type": format!("{kind:?}").to_lowercase(),
                })).collect::<Vec<_>>(),
                "href": format!("/v1/views/{name}"),
            })
        })
        .collect();
    let body = serde_json::json!({
        "view": snapshot.view,
        "definition": snapshot.definition,
        "definition_hash": snapshot.definition_hash,
        "position": snapshot.position.get(),
        "tables": tables,
    });
    Ok(with_position(Json(body).into_response(), &snapshot))
}

async fn table_rows(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let as_csv = wants_csv(&params, &headers)?;
    let snapshot = snapshot(&state, &params).await?;
    // `?person=` on a table with a row per person, hand-off or deal reads that person's rows
    // alone, without building the whole table for this snapshot.
    let one_person = param(&params, "person")
        .and_then(|person| snapshot.person_table(&name, person))
        .or_else(|| {
            // `?opportunity=` on the attribution ledger: that opportunity's rows alone.
            param(&params, "opportunity")
                .and_then(|opportunity| snapshot.opportunity_table(&name, opportunity))
        });
    let whole = match &one_person {
        Some(_) => None,
        None => snapshot
            .checked_table(&name)
            .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message))?,
    };
    let Some(table) = one_person.as_ref().or(whole) else {
        let names: Vec<&str> = snapshot.table_names().map(|(_, name)| name).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no table {name:?}; the tables: {}", names.join(", ")),
        ));
    };
    let selection = select(table, &params)?;
    let total = selection.total;
    let owned = one_person.clone().map(Arc::new);
    let table_name = table.name;
    let body = streamed_rows(
        snapshot.clone(),
        owned,
        table_name.to_owned(),
        selection,
        as_csv,
    );
    let mut response = Response::new(body);
    let content_type = if as_csv {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if as_csv
        && let Ok(value) =
            HeaderValue::from_str(&format!("attachment; filename=\"{table_name}.csv\""))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    let mut response = with_position(response, &snapshot);
    if let Ok(value) = HeaderValue::from_str(&total.to_string()) {
        response.headers_mut().insert("baton-total-rows", value);
    }
    Ok(response)
}

async fn funnel(
    State(state): State<QueryState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let snapshot = snapshot(&state, &params).await?;
    let one = |name: &str| snapshot.table(name).map(rows_json);
    let totals = one("funnel_totals")
        .and_then(|rows| rows.as_array().and_then(|rows| rows.first().cloned()))
        .unwrap_or(serde_json::Value::Null);
    let body = serde_json::json!({
        "view": snapshot.view,
        "position": snapshot.position.get(),
        "totals": totals,
        "stages": one("stages"),
    });
    Ok(with_position(Json(body).into_response(), &snapshot))
}

/// One of the dashboard's files: revalidated on every load (`no-cache`), so a new build's
/// page is never mixed with an old script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// Everything the dashboard shows, from one snapshot (`crate::dashboard`). The answer's ETag
/// is its position, filters and candidates: a page asking again with `If-None-Match` while
/// nothing moved gets a 304 without a build, and pages at the same position share one build.
async fn dashboard(
    State(state): State<QueryState>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let text = |name: &str| param(&params, name).map(str::to_owned);
    let filters = dashboard::Filters {
        from: time_param(&params, "from")?,
        to: time_param(&params, "to")?,
        industry: text("industry"),
        region: text("region"),
        size: text("size"),
    };
    let snapshot = snapshot(&state, &params).await?;
    let candidates = served_candidates(&state);
    let tag = dashboard::tag(&snapshot, &candidates, &filters);
    let etag = HeaderValue::from_str(&format!("\"{tag}\"")).ok();
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .zip(etag.as_ref())
        .is_some_and(|(asked, current)| asked == current);
    if unchanged {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Some(etag) = etag {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return Ok(with_position(response, &snapshot));
    }
    let body = match state.dashboards.get(&tag) {
        Some(body) => body,
        None => {
            // Building it reads every row-level table once: off the async workers.
            let built = snapshot.clone();
            let body = tokio::task::spawn_blocking(move || {
                Arc::new(dashboard::dashboard(&built, &candidates, &filters))
            })
            .await
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
            state.dashboards.keep(tag, body.clone());
            body
        }
    };
    let mut response = Json(&*body).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(with_position(response, &snapshot))
}

/// The candidates served (the SQL endpoint's catalog), each with whether a comparison is
/// kept for it.
fn served_candidates(state: &QueryState) -> Vec<Arc<Snapshot>> {
    state
        .catalogs
        .as_ref()
        .map(|catalogs| catalogs.borrow().candidates.clone())
        .unwrap_or_default()
}

/// Every candidate served, with its definition, position and whether a comparison is kept.
async fn comparisons(State(state): State<QueryState>) -> Response {
    let candidates: Vec<serde_json::Value> = served_candidates(&state)
        .iter()
        .map(|candidate| {
            serde_json::json!({
                "candidate": candidate.view,
                "definition": candidate.definition,
                "definition_hash": candidate.definition_hash,
                "position": candidate.position.get(),
                "comparison": candidate.comparison().is_some(),
            })
        })
        .collect();
    Json(serde_json::json!({ "candidates": candidates })).into_response()
}

/// A candidate's kept comparison with the live definition, as `baton compare --json` prints it.
async fn comparison(
    State(state): State<QueryState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let candidates = served_candidates(&state);
    let Some(candidate) = candidates.iter().find(|c| c.view == name) else {
        let served: Vec<&str> = candidates.iter().map(|c| c.view.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no candidate view {name:?} is served (served: {}); `baton replay` builds one, \
                 and `baton serve` loads candidates when it starts",
                if served.is_empty() {
                    "none".to_owned()
                } else {
                    served.join(", ")
                }
            ),
        ));
    };
    let Some(report) = candidate.comparison() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no comparison is kept for candidate {name:?}: run `baton compare {name}` \
                 (then restart `baton serve`)"
            ),
        ));
    };
    Ok(Json(report.clone()).into_response())
}

async fn person(
    State(state): State<QueryState>,
    Path(person): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let snapshot = snapshot(&state, &params).await?;
    let of_person = |name: &str| snapshot.person_table(name, &person);
    let Some(single) = of_person("person_scores").filter(|table| !table.rows.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no person {person:?} in view {} at position {}",
                snapshot.view, snapshot.position
            ),
        ));
    };
    let of_person = |name: &str| of_person(name).map_or(serde_json::Value::Null, |t| rows_json(&t));
    let body = serde_json::json!({
        "view": snapshot.view,
        "position": snapshot.position.get(),
        "person": rows_json(&single).as_array().and_then(|r| r.first().cloned()),
        "handoffs": of_person("handoffs"),
        "opportunities": of_person("opportunities"),
    });
    Ok(with_position(Json(body).into_response(), &snapshot))
}

async fn readyz(State(state): State<QueryState>) -> Response {
    let published = state.snapshots.borrow().as_ref().map(|s| s.position);
    let head = state.status.head();
    if let Some(fault) = state.status.fault() {
        let serving = published.map_or_else(
            || "no views yet".to_owned(),
            |position| format!("queries answer from the views at position {position}"),
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            format!("not ready: {fault}; {serving}, log head {head}\n"),
        )
            .into_response();
    }
    match published {
        Some(position) if position >= head => (
            StatusCode::OK,
            format!("ready: views at position {position}\n"),
        )
            .into_response(),
        Some(position) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("catching up: views at position {position}, log head {head}\n"),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("catching up: no views yet, log head {head}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<QueryState>) -> Response {
    let mut text = String::new();
    let encoded = {
        let registry = state
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut text, &registry)
    };
    if let Err(error) = encoded {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {error}"),
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `POST /v1/sql`: one read-only query over the views, answered as JSON or CSV.
async fn sql(
    State(state): State<QueryState>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    for name in params.keys() {
        if !["format", "min_position", "wait_ms"].contains(&name.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "query parameter `{name}`: not one of /v1/sql's (format, min_position, wait_ms); filter and page in the SQL"
                ),
            ));
        }
    }
    let as_csv = wants_csv(&params, &headers)?;
    let text = sql_text(&headers, body)?;
    run_sql(&state, &params, &text, as_csv).await
}

/// The SQL text of a request body: raw (`text/plain`, `application/sql`, or no content type)
/// or `{"query": "..."}` (`application/json`).
fn sql_text(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!(
                    "the request body is larger than the {MAX_SQL_BYTES} bytes a SQL query may take"
                ),
            )
        } else {
            ApiError::new(
                status,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let text = match content_type.as_deref() {
        Some("application/json") => {
            let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("request body: not JSON: {error}"),
                )
            })?;
            match parsed.get("query") {
                Some(serde_json::Value::String(query)) => query.clone(),
                Some(_) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "request body: field `query` must be a string of SQL",
                    ));
                }
                None => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        r#"request body: expected {"query": "SELECT ..."}, found no field `query`"#,
                    ));
                }
            }
        }
        None | Some("text/plain" | "application/sql") => {
            String::from_utf8(body.to_vec()).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "request body: the SQL is not UTF-8",
                )
            })?
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type {other:?}: send the SQL as text/plain or application/sql, or as {{\"query\": \"...\"}} in application/json"
                ),
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request body holds no SQL",
        ));
    }
    Ok(text)
}

#[cfg(not(feature = "sql"))]
async fn run_sql(
    _state: &QueryState,
    _params: &BTreeMap<String, String>,
    _text: &str,
    _as_csv: bool,
) -> Result<Response, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "this build of baton has no SQL engine (built without the `sql` feature of baton-query)",
    ))
}

/// Counts a `/v1/sql` statement in `/metrics` when it ends, however it ends.
#[cfg(feature = "sql")]
struct RunningStatement {
    started: std::time::Instant,
    outcome: &'static str,
}

#[cfg(feature = "sql")]
impl Drop for RunningStatement {
    fn drop(&mut self) {
        crate::metrics::sql().ended("http", self.outcome, self.started.elapsed().as_secs_f64());
    }
}

#[cfg(feature = "sql")]
async fn run_sql(
    state: &QueryState,
    params: &BTreeMap<String, String>,
    text: &str,
    as_csv: bool,
) -> Result<Response, ApiError> {
    use crate::sql::{SqlEngine, SqlFailure};

    let snapshot = snapshot(state, params).await?;
    // The published catalog is sent before the snapshot, so it reflects at least the position
    // waited for; without catalogs, the live view alone.
    let catalog = match &state.catalogs {
        Some(catalogs) => catalogs.borrow().clone(),
        None => Arc::new(crate::Catalog::new(snapshot)),
    };
    let engine = state
        .sql
        .get_or_init(|| {
            SqlEngine::new(state.catalogs.clone())
                .map(Arc::new)
                .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error))?;
    // A client that hangs up drops this future, and with it the statement (at its next
    // yield point); the guard counts it then.
    let mut running = RunningStatement {
        started: std::time::Instant::now(),
        outcome: "disconnected",
    };
    let answer = engine
        .run_limited(catalog.clone(), text, MAX_SQL_ROWS, state.sql_timeout)
        .await;
    running.outcome = match &answer {
        Ok(_) => "ok",
        Err(error) if error.info.code == "57014" => "timed_out",
        Err(_) => "error",
    };
    drop(running);
    let answer = answer.map_err(|error| {
        // The one place where SQL failures become HTTP statuses.
        let status = match error.failure {
            SqlFailure::Syntax | SqlFailure::NotAQuery | SqlFailure::Plan => {
                StatusCode::BAD_REQUEST
            }
            SqlFailure::Write => StatusCode::FORBIDDEN,
            SqlFailure::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            SqlFailure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let info = *error.info;
        let mut api = ApiError::new(status, info.message).with("sqlstate", info.code);
        if let Some(detail) = info.detail {
            api = api.with("detail", detail);
        }
        if let Some(hint) = info.hint {
            api = api.with("hint", hint);
        }
        api
    })?;
    let names: Vec<&str> = answer
        .columns
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let response = if as_csv {
        let mut response = crate::format::csv_rows(&names, &answer.rows).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        response
    } else {
        // A JSON row is an object, so two columns of one name would lose one.
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the result has two columns named {name:?}, which a JSON row cannot hold: name one with AS (or ask for CSV)"
                    ),
                ));
            }
        }
        let columns: Vec<serde_json::Value> = answer
            .columns
            .iter()
            .map(|(name, kind)| {
                serde_json::json!({"name": name, "type": format!("{kind:?}").to_lowercase()})
            })
            .collect();
        Json(serde_json::json!({
            "view": catalog.live.view,
            "position": catalog.live.position.get(),
            "columns": columns,
            "rows": crate::format::json_rows(&names, &answer.rows),
            "row_count": answer.rows.len(),
            "truncated": answer.truncated,
        }))
        .into_response()
    };
    let mut response = with_position(response, &catalog.live);
    response.headers_mut().insert(
        "baton-truncated",
        HeaderValue::from_static(if answer.truncated { "true" } else { "false" }),
    );
    Ok(response)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// Where the SQL endpoint's catalogs go, and the candidates' snapshots each one carries.
type CatalogFeed = (watch::Sender<Arc<crate::Catalog>>, Vec<Arc<Snapshot>>);

/// Builds snapshots on the projector's fold thread and publishes them: at most once per
/// `every`, and after waiting at least as long as the last build took (so building the views
/// takes at most half the fold thread's time), and at once when a waiting request wants a
/// position just committed.
#[derive(Debug)]
pub struct SnapshotPublisher {
    view: String,
    sender: watch::Sender<Option<Arc<Snapshot>>>,
    /// The SQL endpoint's catalogs: the live snapshot with the candidates' (built once).
    catalogs: Option<CatalogFeed>,
    wanted: Arc<AtomicU64>,
    every: Duration,
    last: Option<std::time::Instant>,
    last_cost: Duration,
    published: Position,
}

impl SnapshotPublisher {
    /// The default `every`. With a build waiting as long as the last one took, new data shows
    /// within about three build times: under a second while a build takes under a third of a
    /// second (well under a million events on a 2-core machine; `bench query` measures it).
    pub const DEFAULT_EVERY: Duration = Duration::from_millis(250);

    /// A publisher and the receiving end for [`QueryState::new`], with the shared `wanted`.
    pub fn new(
        view: &str,
        every: Duration,
    ) -> (
        SnapshotPublisher,
        watch::Receiver<Option<Arc<Snapshot>>>,
        Arc<AtomicU64>,
    ) {
        let (sender, receiver) = watch::channel(None);
        let wanted = Arc::new(AtomicU64::new(0));
        (
            SnapshotPublisher {
                view: view.to_owned(),
                sender,
                catalogs: None,
                wanted: wanted.clone(),
                every,
                last: None,
                last_cost: Duration::ZERO,
                published: Position::ZERO,
            },
            receiver,
            wanted,
        )
    }

    /// Also publishes [`Catalog`](crate::Catalog)s for the SQL endpoint: each new live snapshot
    /// with `candidates` beside it. The receiver starts with `initial`.
    pub fn with_catalogs(
        &mut self,
        initial: Arc<Snapshot>,
        candidates: Vec<Arc<Snapshot>>,
    ) -> watch::Receiver<Arc<crate::Catalog>> {
        let mut catalog = crate::Catalog::new(initial);
        for candidate in &candidates {
            catalog = catalog.with_candidate(candidate.clone());
        }
        let (sender, receiver) = watch::channel(Arc::new(catalog));
        self.catalogs = Some((sender, candidates));
        receiver
    }

    /// Called after each commit with the refreshed projection.
    pub fn committed(&mut self, projection: &baton_core::FunnelProjection, position: Position) {
        if position <= self.published && self.last.is_some() {
            return;
        }
        let wanted = Position::new(self.wanted.load(Ordering::Acquire));
        let asked = wanted > self.published && wanted <= position;
        // At most every `every`, and never more than half the fold thread's time: a build
        // waits at least as long as the last one took.
        let due = self
            .last
            .is_none_or(|last| last.elapsed() >= self.every.max(self.last_cost));
        if !(asked || due) {
            return;
        }
        let started = std::time::Instant::now();
        let snapshot = Snapshot::build(&self.view, projection, position);
        self.last_cost = started.elapsed();
        self.last = Some(std::time::Instant::now());
        self.published = position;
        // Served: clear the request unless a later one came in meanwhile.
        let _ = self
            .wanted
            .compare_exchange(wanted.get(), 0, Ordering::AcqRel, Ordering::Acquire);
        tracing::debug!(
            position = position.get(),
            build_ms = self.last_cost.as_secs_f64() * 1e3,
            "published the views"
        );
        let snapshot = Arc::new(snapshot);
        if let Some((sender, candidates)) = &self.catalogs {
            let mut catalog = crate::Catalog::new(snapshot.clone());
            for candidate in candidates {
                catalog = catalog.with_candidate(candidate.clone());
            }
            sender.send_replace(Arc::new(catalog));
        }
        self.sender.send_replace(Some(snapshot));
    }
}
