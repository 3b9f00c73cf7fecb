//! The HTTP collector: Baton's native event API, a Segment-compatible tracking API, the
//! SendGrid Event Webhook and declaratively mapped webhooks, in front of the log.
//!
//! Every request is answered per item: `accepted`, `duplicate`, `ignored`, `rejected` (with the
//! field and the reason) or `not_written`. Valid items are stored even when a neighbour is
//! not; rejected items go to the quarantine. Nothing is acknowledged that the log has not made
//! durable: when it cannot store, the answer is 503 with `Retry-After`, and sending the same
//! request again is safe because event ids are derived from the sources' message ids.
//!
//! Status codes: 200 when every item is stored, already stored or ignored; 400 when any item
//! was rejected (the body still lists what was stored); 401/403 for write keys; 413 over the
//! size limits; 415 for an unknown `Content-Encoding`; 503 when the log (or the quarantine)
//! could not store.

use crate::adapter::{Adapter, Adapters, Mapping, MappingError, Problem, TrackRule, Translation};
use crate::appender::{AppenderHandle, AppenderOptions, spawn_appender};
use crate::quarantine::{Quarantine, QuarantineEntry, QuarantineError};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use baton_core::{ParseContext, Timestamp};
use baton_log::{AppendOutcome, EventLog};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

use crate::keys::{KeySet, WriteKey};

/// Size limits, Segment's by default: 32 KB per event, 500 KB per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single item (an event, a Segment call, a webhook item), in bytes of JSON.
    pub max_event_bytes: usize,
    /// Largest request body, after gzip is inflated.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_request_bytes: 500 * 1024,
        }
    }
}

/// Everything the collector needs besides the log.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Where to listen; port 0 picks a free port (see [`Collector::local_addr`]).
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Without any, only loopback clients may write (and no browser page).
    pub write_keys: Vec<WriteKey>,
    /// Whether the client address (each visitor's rate of a browser key) is the last one in
    /// `X-Forwarded-For`, as a load balancer in front appends it, rather than the peer's.
    pub trust_forwarded_for: bool,
    /// The `dist/umd` directory of `@segment/analytics-next`, to serve the browser library
    /// from this collector (see `browser.rs`).
    pub browser_library: Option<PathBuf>,
    /// Segment track event names to kinds, over the defaults.
    pub track_rules: BTreeMap<String, TrackRule>,
    /// Declarative webhook mappings by source name, over the shipped ones.
    pub mappings: BTreeMap<String, Mapping>,
    /// Directory of the quarantine (see [`Quarantine`]).
    pub quarantine_dir: PathBuf,
    pub max_future_skew_millis: i64,
    /// Most events appended at once when concurrent requests are grouped.
    pub max_batch_events: usize,
    /// What `Retry-After` says when the log could not store.
    pub retry_after: Duration,
    /// With a key, `/v1/webhooks/sendgrid` takes only requests SendGrid signed with it.
    pub sendgrid_key: Option<crate::SendgridKey>,
    /// The most bytes the quarantine keeps (see [`Quarantine`]).
    pub quarantine_max_bytes: u64,
    /// Items and bytes a second each write key may send, unless its scope says otherwise
    /// (answered 429 with `Retry-After` beyond); loopback clients without keys are not
    /// limited.
    pub key_rate: crate::KeyRate,
}

impl CollectorConfig {
    /// Defaults: Segment's limits, no write keys, the shipped tables.
    pub fn new(listen: SocketAddr, quarantine_dir: impl Into<PathBuf>) -> Self {
        CollectorConfig {
            listen,
            limits: Limits::default(),
            write_keys: Vec::new(),
            trust_forwarded_for: false,
            browser_library: None,
            track_rules: BTreeMap::new(),
            mappings: BTreeMap::new(),
            quarantine_dir: quarantine_dir.into(),
            max_future_skew_millis: ParseContext::DEFAULT_MAX_FUTURE_SKEW_MILLIS,
            max_batch_events: 5_000,
            retry_after: Duration::from_secs(2),
            sendgrid_key: None,
            quarantine_max_bytes: crate::quarantine::DEFAULT_QUARANTINE_BYTES,
            key_rate: crate::KeyRate::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    #[error("the appender task failed: {0}")]
    Appender(String),
}

/// What the handlers share.
#[derive(Debug)]
struct Shared {
    adapters: Adapters,
    keys: WriteKeys,
    key_rate: crate::KeyRate,
    trust_forwarded_for: bool,
    browser_library: Option<PathBuf>,
    limits: Limits,
    quarantine: Quarantine,
    appender: AppenderHandle,
    retry_after: Duration,
    sendgrid_key: Option<crate::SendgridKey>,
    rate: crate::rate::RateLimiter,
    metrics: crate::CollectorMetrics,
}

/// The collector's state, for [`router`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CollectorState {
    shared: Arc<Shared>,
}

impl CollectorState {
    /// The keys in force, to replace them while the collector runs (`baton serve` does on
    /// `SIGHUP`). The handle holds the keys only, not the collector: keeping it does not keep
    /// the collector (and its appender) from shutting down.
    pub fn write_keys(&self) -> WriteKeys {
        self.shared.keys.clone()
    }

    /// A browser key (one with origins) by its text; keys of other characters than letters,
    /// digits, `_` and `-` are never written into a script.
    pub(crate) fn browser_key(&self, key: &str) -> Option<WriteKey> {
        let plain = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let keys = self.shared.keys();
        keys.find(key)
            .filter(|found| plain && !found.scope.origins.is_empty())
            .cloned()
    }

    pub(crate) fn browser_library(&self) -> Option<PathBuf> {
        self.shared.browser_library.clone()
    }

    pub(crate) fn trusts_forwarded_for(&self) -> bool {
        self.shared.trust_forwarded_for
    }
}

/// The write keys in force, shared by the collector and whoever may replace them.
#[derive(Clone, Debug)]
pub struct WriteKeys(Arc<std::sync::RwLock<Arc<KeySet>>>);

impl WriteKeys {
    /// Puts `keys` in force in place of the ones before, for every request that starts after.
    /// A rotation adds the new key next to the old one, then removes the old one.
    pub fn replace(&self, keys: Vec<WriteKey>) {
        let keys = Arc::new(KeySet::new(keys));
        tracing::info!(keys = keys.len(), "write keys replaced");
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Shared {
    fn keys(&self) -> Arc<KeySet> {
        self.keys.current()
    }
}

/// A bound collector: the listener, the state and the appender task it owns.
#[derive(Debug)]
pub struct Collector {
    listener: tokio::net::TcpListener,
    state: CollectorState,
    appender: JoinHandle<()>,
}

impl Collector {
    /// Validates the tables, opens the quarantine, starts the appender on `log` and binds.
    pub async fn bind<L: EventLog + 'static>(
        config: CollectorConfig,
        log: L,
    ) -> Result<Self, CollectorError> {
        let adapters = Adapters::new(
            config.track_rules.clone(),
            config.mappings.clone(),
            config.max_future_skew_millis,
        )?;
        let quarantine =
            Quarantine::open_with_limit(&config.quarantine_dir, config.quarantine_max_bytes)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| CollectorError::Bind {
                addr: config.listen,
                source,
            })?;
        let (appender, task) = spawn_appender(
            log,
            AppenderOptions {
                max_batch_events: config.max_batch_events.max(1),
                queue_jobs: 1_024,
                // The log already retries within its own deadline; a request then gets its 503
                // promptly and the client's retry is the next attempt.
                retries: 0,
                first_retry_delay: Duration::from_millis(100),
            },
        );
        if config.write_keys.is_empty() {
            tracing::warn!(
                "no write keys configured: accepting writes from loopback clients only \
                 (configure [[write_keys]] or --write-key SOURCE:KEY)"
            );
        }
        let state = CollectorState {
            shared: Arc::new(Shared {
                adapters,
                keys: WriteKeys(Arc::new(std::sync::RwLock::new(Arc::new(KeySet::new(
                    config.write_keys,
                ))))),
                key_rate: config.key_rate,
                trust_forwarded_for: config.trust_forwarded_for,
                browser_library: config.browser_library,
                limits: config.limits,
                quarantine,
                appender,
                retry_after: config.retry_after,
                sendgrid_key: config.sendgrid_key.clone(),
                rate: crate::rate::RateLimiter::new(),
                metrics: crate::CollectorMetrics::default(),
            }),
        };
        Ok(Collector {
            listener,
            state,
            appender: task,
        })
    }

    /// The address actually bound (the port, when 0 was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, CollectorError> {
        self.listener.local_addr().map_err(CollectorError::Serve)
    }

    pub fn state(&self) -> CollectorState {
        self.state.clone()
    }

    /// The collector's metrics, to register where `/metrics` is served.
    pub fn metrics(&self) -> crate::CollectorMetrics {
        self.state.shared.metrics.clone()
    }

    /// Serves the collector's routes merged with `extra` (other services of the same process:
    /// the projector's and the query API's routes) until `shutdown` resolves; then finishes the
    /// requests in flight, lets the appender drain and waits for it.
    pub async fn serve(
        self,
        extra: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CollectorError> {
        let Collector {
            listener,
            state,
            appender,
        } = self;
        let app = router(state).merge(extra);
        tracing::info!(addr = %listener.local_addr().map_err(CollectorError::Serve)?, "collector listening");
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        // The router (and with it the last sender) is gone, so the appender ends once its
        // queue is empty.
        appender
            .await
            .map_err(|error| CollectorError::Appender(error.to_string()))?;
        served.map_err(CollectorError::Serve)
    }
}

/// Binds and serves until `shutdown`: the whole collector in one call.
pub async fn serve<L: EventLog + 'static>(
    config: CollectorConfig,
    log: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    Collector::bind(config, log)
        .await?
        .serve(Router::new(), shutdown)
        .await
}

/// The collector's routes. Serve them with
/// `into_make_service_with_connect_info::<SocketAddr>()` (as [`Collector::serve`] does): without
/// the peer address, writes are accepted only with a write key, never as "from loopback".
pub fn router(state: CollectorState) -> Router {
    // Every write route answers a CORS preflight; the Segment calls have their short paths
    // too (`/v1/t`, `/v1/p`...), which Segment's browser library posts to.
    fn segment<H, T>(handler: H) -> MethodRouter<CollectorState>
    where
        H: axum::handler::Handler<T, CollectorState>,
        T: 'static,
    {
        post(handler).options(preflight_segment)
    }
    Router::new()
        .route("/v1/health", get(|| async { "ok\n" }))
        .route("/v1/events", post(native).options(preflight_native))
        .route("/v1/track", segment(segment_track))
        .route("/v1/t", segment(segment_track))
        .route("/v1/page", segment(segment_page))
        .route("/v1/p", segment(segment_page))
        .route("/v1/screen", segment(segment_screen))
        .route("/v1/s", segment(segment_screen))
        .route("/v1/identify", segment(segment_identify))
        .route("/v1/i", segment(segment_identify))
        .route("/v1/group", segment(segment_group))
        .route("/v1/g", segment(segment_group))
        .route("/v1/alias", segment(segment_alias))
        .route("/v1/a", segment(segment_alias))
        .route("/v1/batch", segment(segment_batch))
        .route("/v1/b", segment(segment_batch))
        .route(
            "/v1/webhooks/sendgrid",
            post(sendgrid).options(preflight_sendgrid),
        )
        .route(
            "/v1/webhooks/{source}",
            post(mapped).options(preflight_mapped),
        )
        .merge(crate::browser::routes())
        .with_state(state)
}

/// How a request body splits into items.
#[derive(Clone, Copy, Debug)]
enum BodyShape<'a> {
    /// One event, an array, or NDJSON.
    Native,
    /// One Segment call of this type.
    SegmentCall(&'static str),
    /// `{"batch": [...], "sentAt": .., "context": ..}`
    SegmentBatch,
    /// An array of webhook items (or one).
    Array,
    /// A mapping's `items` pointer, or an array, or one item.
    Mapped(&'a Mapping),
    /// `/v1/webhooks/{source}` for a source with no mapping: 404 once the key is checked.
    Unmapped,
}

/// One item of a request, parsed or not.
struct Item<'a> {
    payload: ItemBody<'a>,
    /// Found before translation: not JSON, too large, sent to the wrong endpoint.
    problem: Option<Problem>,
}

/// An item as the request gave it.
enum ItemBody<'a> {
    /// Parsed; or, when it is not JSON, its text as a JSON string.
    Value(Value),
    /// The JSON text of one native event (an NDJSON line, an element of an array), validated
    /// straight from the text: parsing it into a `Value` first was most of the collector's
    /// work. Parsed into a `Value` only to be quarantined.
    Native(&'a str),
}

impl ItemBody<'_> {
    /// The item as the quarantine keeps it.
    fn into_value(self) -> Value {
        match self {
            ItemBody::Value(value) => value,
            ItemBody::Native(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            }
        }
    }
}

/// A problem with the whole request, answered without looking at items.
struct RequestError {
    status: StatusCode,
    message: String,
}

impl RequestError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        RequestError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"baton\""),
            );
        }
        response
    }
}

async fn native(State(state): State<CollectorState>, request: Request) -> Response {
    handle(state, request, Adapter::Native).await
}

macro_rules! segment_call {
    ($($handler:ident => $call:literal),* $(,)?) => {$(
        async fn $handler(State(state): State<CollectorState>, request: Request) -> Response {
            handle_shape(&state, request, Adapter::Segment, BodyShape::SegmentCall($call)).await
        }
    )*};
}

segment_call!(
    segment_track => "track",
    segment_page => "page",
    segment_screen => "screen",
    segment_identify => "identify",
    segment_group => "group",
    segment_alias => "alias",
);

async fn segment_batch(State(state): State<CollectorState>, request: Request) -> Response {
    handle_shape(&state, request, Adapter::Segment, BodyShape::SegmentBatch).await
}

async fn sendgrid(State(state): State<CollectorState>, request: Request) -> Response {
    handle_shape(&state, request, Adapter::Sendgrid, BodyShape::Array).await
}

async fn mapped(
    State(state): State<CollectorState>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    handle(state, request, Adapter::Mapping(source)).await
}

async fn handle(state: CollectorState, request: Request, adapter: Adapter) -> Response {
    let shared = Arc::clone(&state.shared);
    let shape = match &adapter {
        Adapter::Mapping(name) => match shared.adapters.mapping(name) {
            Some(mapping) => BodyShape::Mapped(mapping),
            None => BodyShape::Unmapped,
        },
        Adapter::Native => BodyShape::Native,
        Adapter::Segment => BodyShape::SegmentBatch,
        Adapter::Sendgrid => BodyShape::Array,
    };
    handle_shape(&state, request, adapter, shape).await
}

async fn handle_shape(
    state: &CollectorState,
    request: Request,
    adapter: Adapter,
    shape: BodyShape<'_>,
) -> Response {
    let (parts, body) = request.into_parts();
    let origin = match request_origin(&parts.headers) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let mut let_in = false;
    let mut response = write(
        state,
        parts,
        body,
        adapter,
        shape,
        origin.as_deref(),
        &mut let_in,
    )
    .await;
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    // A page may read the answer only when its origin was let in by the key.
    if let Some(origin) = origin
        && let_in
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    response
}

async fn write(
    state: &CollectorState,
    parts: axum::http::request::Parts,
    body: Body,
    adapter: Adapter,
    shape: BodyShape<'_>,
    origin: Option<&str>,
    let_in: &mut bool,
) -> Response {
    let shared = &state.shared;
    let headers = parts.headers;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|connect| connect.0);
    let keys = shared.keys();
    let mut body = Some(body);
    // A key in a header is checked before the body is read; Segment's browser library puts
    // it in the body (`writeKey`) so that a page can post without a CORS preflight.
    let mut read = None;
    let key = if keys.is_empty() {
        match authorize_loopback(peer, origin) {
            Ok(()) => None,
            Err(error) => return error.into_response(),
        }
    } else {
        let in_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(key_of_authorization);
        let presented = match in_header {
            Some(presented) => presented,
            None if matches!(adapter, Adapter::Segment) => {
                let body = body.take().unwrap_or_default();
                let bytes = match read_body(&headers, body, &shared.limits).await {
                    Ok(bytes) => bytes,
                    Err(error) => return error.into_response(),
                };
                let presented = write_key_in_body(&bytes);
                read = Some(bytes);
                match presented {
                    Some(presented) => presented,
                    None => return missing_key().into_response(),
                }
            }
            None => return missing_key().into_response(),
        };
        match keys.find(&presented) {
            Some(key) => Some(key.clone()),
            None => {
                return RequestError::new(StatusCode::UNAUTHORIZED, "unknown write key")
                    .into_response();
            }
        }
    };
    if let Some(key) = &key {
        if let Some(origin) = origin
            && !key.allows_origin(origin)
        {
            return RequestError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "pages from {origin} may not use this write key: its origins are {}",
                    origins_text(&key.scope.origins)
                ),
            )
            .into_response();
        }
        *let_in = origin.is_some();
        if !key.allows_route(&adapter) {
            return RequestError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this write key may not use {}: its routes are {}",
                    parts.uri.path(),
                    routes_text(key)
                ),
            )
            .into_response();
        }
    }
    // Checked after the key, so an unauthenticated client cannot probe which sources exist.
    if let (BodyShape::Unmapped, Adapter::Mapping(name)) = (shape, &adapter) {
        return RequestError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no mapping named {name:?} is configured (see docs/ingest.md, declarative mappings)"
            ),
        )
        .into_response();
    }
    let bytes = match read {
        Some(bytes) => bytes,
        None => match read_body(&headers, body.take().unwrap_or_default(), &shared.limits).await {
            Ok(bytes) => bytes,
            Err(error) => return error.into_response(),
        },
    };
    if let (Adapter::Sendgrid, Some(sendgrid_key)) = (&adapter, &shared.sendgrid_key)
        && let Err(error) = check_signature(sendgrid_key, &headers, &bytes)
    {
        return error.into_response();
    }
    let items = match split(&headers, &bytes, shape, &shared.limits) {
        Ok(items) => items,
        Err(error) => return error.into_response(),
    };
    if let Some(key) = &key {
        let client = client_address(&headers, peer, shared.trust_forwarded_for);
        // A request counts as one item at least, so empty requests are bounded too.
        let counted = items.len().max(1);
        if let Err(response) = take_rate(shared, key, client, counted, bytes.len()) {
            return *response;
        }
    }
    ingest(shared, adapter, key.as_ref(), items).await
}

fn missing_key() -> RequestError {
    RequestError::new(
        StatusCode::UNAUTHORIZED,
        "missing write key: send it as the HTTP Basic user name, as `Authorization: Bearer KEY`, \
         or (Segment's calls) as `writeKey` in the body",
    )
}

/// Without keys, only loopback clients write, and no browser page: a page on any site could
/// otherwise post to a collector on its visitor's own machine.
fn authorize_loopback(peer: Option<SocketAddr>, origin: Option<&str>) -> Result<(), RequestError> {
    if let Some(origin) = origin {
        return Err(RequestError::new(
            StatusCode::FORBIDDEN,
            format!(
                "pages from {origin} may not write: no write keys are configured, and a browser \
                 page writes only with a key that lists its origin (docs/ingest.md, browsers)"
            ),
        ));
    }
    match peer {
        Some(peer) if peer.ip().is_loopback() => Ok(()),
        _ => Err(RequestError::new(
            StatusCode::FORBIDDEN,
            "no write keys are configured, so only loopback clients may write \
             (configure write keys: docs/configuration.md)",
        )),
    }
}

/// The request's `Origin`: none from servers, the page's from browsers. `null` (a sandboxed
/// or file page) is refused: no key can name it.
fn request_origin(headers: &HeaderMap) -> Result<Option<String>, RequestError> {
    let Some(value) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(origin) if crate::keys::valid_origin(origin) => Ok(Some(origin.to_owned())),
        _ => Err(RequestError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Origin {:?} cannot be allowed: write from a page served over http or https",
                String::from_utf8_lossy(value.as_bytes())
            ),
        )),
    }
}

fn origins_text(origins: &[String]) -> String {
    if origins.is_empty() {
        "none (it is not for browser pages)".into()
    } else {
        origins.join(", ")
    }
}

fn routes_text(key: &WriteKey) -> String {
    match &key.scope.routes {
        None => "all".into(),
        Some(routes) => routes
            .iter()
            .map(|route| match route {
                crate::keys::Route::Native => "native (/v1/events)".to_owned(),
                crate::keys::Route::Segment => "segment (/v1/track, /v1/t, /v1/batch...)".into(),
                crate::keys::Route::Sendgrid => "sendgrid (/v1/webhooks/sendgrid)".into(),
                crate::keys::Route::Webhooks => "webhooks (/v1/webhooks/...)".into(),
                crate::keys::Route::Mapping(name) => {
                    format!("mapping:{name} (/v1/webhooks/{name})")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `writeKey` at the top of a Segment call or batch, as Segment's browser library sends it.
fn write_key_in_body(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Keyed {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    serde_json::from_slice::<Keyed>(bytes)
        .ok()
        .and_then(|keyed| keyed.write_key)
        .filter(|key| !key.is_empty())
}

/// The client's address: the peer's, or with `trust_forwarded_for`, the last address of
/// `X-Forwarded-For` (the one the load balancer in front appended; earlier ones are the
/// client's word).
fn client_address(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<std::net::IpAddr> {
    if trust_forwarded_for
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .rfind(|part| !part.is_empty())
        && let Ok(address) = forwarded.parse()
    {
        return Some(address);
    }
    peer.map(|peer| peer.ip())
}

/// Takes a request's items and bytes from its key's budget and its client's, or answers 429.
fn take_rate(
    shared: &Shared,
    key: &WriteKey,
    client: Option<std::net::IpAddr>,
    items: usize,
    bytes: usize,
) -> Result<(), Box<Response>> {
    let now = std::time::Instant::now();
    let name = key.rate_name();
    let rate = key.scope.rate.unwrap_or(shared.key_rate);
    let mut over = shared
        .rate
        .take(name, rate, items, bytes, now)
        .err()
        .map(|wait| {
            (
                wait,
                format!("write key {name:?} is over its rate ({})", rate.describe()),
            )
        });
    if over.is_none()
        && let (Some(per_address), Some(client)) = (key.scope.per_address, client)
    {
        over = shared
            .rate
            .take(&format!("{name}@{client}"), per_address, items, bytes, now)
            .err()
            .map(|wait| {
                (
                    wait,
                    format!(
                        "client {client} is over write key {name:?}'s rate for each client ({})",
                        per_address.describe()
                    ),
                )
            });
    }
    let Some((wait, message)) = over else {
        return Ok(());
    };
    shared.metrics.rate_limited.inc();
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = RequestError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{message}: nothing in this request was stored; retry in {seconds} s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Err(Box::new(response))
}

/// Answers a CORS preflight: the page's origin may post to this route when some key lets it.
/// A preflight carries no key, so the request itself is checked against its own key.
fn preflight(state: &CollectorState, headers: &HeaderMap, adapter: &Adapter) -> Response {
    let origin = match request_origin(headers) {
        Ok(Some(origin)) => origin,
        Ok(None) => {
            return RequestError::new(
                StatusCode::BAD_REQUEST,
                "a CORS preflight without an Origin header",
            )
            .into_response();
        }
        Err(error) => return error.into_response(),
    };
    if !state.shared.keys().any_allows(&origin, adapter) {
        return RequestError::new(
            StatusCode::FORBIDDEN,
            format!("no write key lets pages from {origin} post here (docs/ingest.md, browsers)"),
        )
        .into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&origin) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Content-Encoding, X-Retry-Count"),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

async fn preflight_native(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers, &Adapter::Native)
}

async fn preflight_segment(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers, &Adapter::Segment)
}

async fn preflight_sendgrid(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers, &Adapter::Sendgrid)
}

async fn preflight_mapped(
    State(state): State<CollectorState>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Response {
    preflight(&state, &headers, &Adapter::Mapping(source))
}

/// SendGrid's signature over the timestamp header and the body, when a key is configured.
fn check_signature(
    key: &crate::SendgridKey,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), RequestError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                RequestError::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "missing {name}: this collector takes only signed SendGrid webhooks \
                         (enable Signed Event Webhook in SendGrid's mail settings)"
                    ),
                )
            })
    };
    let signature = header(crate::SIGNATURE_HEADER)?;
    let timestamp = header(crate::TIMESTAMP_HEADER)?;
    key.verify(timestamp, body, signature)
        .map_err(|problem| RequestError::new(StatusCode::UNAUTHORIZED, problem))
}

fn key_of_authorization(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = decode_base64(rest)?;
        let text = String::from_utf8(decoded).ok()?;
        let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
        return (!user.is_empty()).then(|| user.to_owned());
    }
    None
}

/// Standard base64 with optional padding, for HTTP Basic credentials and signatures.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Reads the body under the request limit, inflating gzip (or deflate) under the same limit.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
) -> Result<bytes::Bytes, RequestError> {
    let too_large = || {
        RequestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body over the limit of {} bytes (after decompression); send smaller batches",
                limits.max_request_bytes
            ),
        )
    };
    let raw = axum::body::to_bytes(body, limits.max_request_bytes)
        .await
        .map_err(|_| too_large())?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_ascii_lowercase());
    let limit = limits.max_request_bytes as u64 + 1;
    let mut inflated = Vec::new();
    let read = match encoding.as_deref() {
        None | Some("" | "identity") => return Ok(raw),
        Some("gzip" | "x-gzip") => flate2::read::GzDecoder::new(&raw[..])
            .take(limit)
            .read_to_end(&mut inflated),
        Some("deflate") => flate2::read::ZlibDecoder::new(&raw[..])
            .take(limit)
            .read_to_end(&mut inflated),
        Some(other) => {
            return Err(RequestError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?}; send gzip, deflate or none"),
            ));
        }
    };
    read.map_err(|error| {
        RequestError::new(
            StatusCode::BAD_REQUEST,
            format!("body is not valid compressed data: {error}"),
        )
    })?;
    if inflated.len() > limits.max_request_bytes {
        return Err(too_large());
    }
    Ok(inflated.into())
}

/// Bytes of a value's JSON text, without keeping the text.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

fn oversize(bytes: usize, limits: &Limits) -> Problem {
    Problem::new(
        "(item)",
        format!(
            "{bytes} bytes, over the limit of {} bytes per event",
            limits.max_event_bytes
        ),
    )
}

fn item_of(value: Value, limits: &Limits) -> Item<'static> {
    let bytes = json_len(&value);
    Item {
        problem: (bytes > limits.max_event_bytes).then(|| oversize(bytes, limits)),
        payload: ItemBody::Value(value),
    }
}

/// A native event's JSON text, measured as sent.
fn native_item<'a>(text: &'a str, limits: &Limits) -> Item<'a> {
    Item {
        problem: (text.len() > limits.max_event_bytes).then(|| oversize(text.len(), limits)),
        payload: ItemBody::Native(text),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, RequestError> {
    serde_json::from_slice(bytes).map_err(|error| {
        RequestError::new(
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON: {error}"),
        )
    })
}

/// Splits a body into items. One malformed NDJSON line is one rejected item; a body that is
/// not JSON at all (and not NDJSON) is a 400 for the whole request.
fn split<'a>(
    headers: &HeaderMap,
    bytes: &'a [u8],
    shape: BodyShape<'_>,
    limits: &Limits,
) -> Result<Vec<Item<'a>>, RequestError> {
    let single_too_large = || {
        RequestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "event of {} bytes, over the limit of {} bytes per event",
                bytes.len(),
                limits.max_event_bytes
            ),
        )
    };
    match shape {
        BodyShape::Native => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            let declared_ndjson = content_type.contains("ndjson")
                || content_type.contains("jsonl")
                || content_type.contains("json-seq");
            if !declared_ndjson {
                // Only the items' extent is found here; each is validated from its text.
                let is_array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
                let parsed = if is_array {
                    serde_json::from_slice::<Vec<&RawValue>>(bytes)
                } else {
                    serde_json::from_slice::<&RawValue>(bytes).map(|raw| vec![raw])
                };
                match parsed {
                    Ok(items) => {
                        if !is_array && bytes.len() > limits.max_event_bytes {
                            return Err(single_too_large());
                        }
                        return Ok(items
                            .into_iter()
                            .map(|raw| native_item(raw.get(), limits))
                            .collect());
                    }
                    // Several lines that are not one JSON document: NDJSON sent as JSON.
                    Err(_) if bytes.iter().filter(|b| **b == b'\n').count() >= 1 => {}
                    Err(error) => {
                        return Err(RequestError::new(
                            StatusCode::BAD_REQUEST,
                            format!("body is not valid JSON: {error}"),
                        ));
                    }
                }
            }
            Ok(split_ndjson(bytes, limits))
        }
        BodyShape::SegmentCall(call) => {
            if bytes.len() > limits.max_event_bytes {
                return Err(single_too_large());
            }
            let mut value = parse_json(bytes)?;
            if let Value::Object(object) = &mut value {
                // The browser library's key travels in the body; it is not a fact.
                object.remove("writeKey");
            }
            let problem = match &mut value {
                Value::Object(object) => match object.get("type") {
                    None => {
                        object.insert("type".into(), Value::String(call.to_owned()));
                        None
                    }
                    Some(Value::String(given)) if given == call => None,
                    Some(given) => Some(Problem::new(
                        "type",
                        format!("{given} sent to /v1/{call}; send it to /v1/batch or fix the type"),
                    )),
                },
                other => Some(Problem::new(
                    "(item)",
                    format!(
                        "expected a Segment call (a JSON object), got {}",
                        crate::adapter::describe(other)
                    ),
                )),
            };
            Ok(vec![Item {
                payload: ItemBody::Value(value),
                problem,
            }])
        }
        BodyShape::SegmentBatch => {
            let value = parse_json(bytes)?;
            let Value::Object(mut body) = value else {
                return Err(RequestError::new(
                    StatusCode::BAD_REQUEST,
                    "a batch body is a JSON object with a `batch` array",
                ));
            };
            let Some(Value::Array(calls)) = body.remove("batch") else {
                return Err(RequestError::new(
                    StatusCode::BAD_REQUEST,
                    "field `batch`: required, an array of calls",
                ));
            };
            // Batch-level `sentAt` and `context` apply to every call that lacks its own.
            let sent_at = body.get("sentAt").cloned();
            let context = body.get("context").and_then(Value::as_object).cloned();
            Ok(calls
                .into_iter()
                .map(|mut call| {
                    if let Value::Object(object) = &mut call {
                        object.remove("writeKey");
                        if let Some(sent_at) = &sent_at {
                            object.entry("sentAt").or_insert_with(|| sent_at.clone());
                        }
                        if let Some(context) = &context {
                            merge_context(object, context);
                        }
                    }
                    item_of(call, limits)
                })
                .collect())
        }
        BodyShape::Array => match parse_json(bytes)? {
            Value::Array(values) => Ok(values
                .into_iter()
                .map(|value| item_of(value, limits))
                .collect()),
            value => Ok(vec![item_of(value, limits)]),
        },
        BodyShape::Unmapped => Ok(Vec::new()),
        BodyShape::Mapped(mapping) => {
            let value = parse_json(bytes)?;
            let items = match &mapping.items {
                Some(pointer) => match value.pointer(pointer) {
                    Some(Value::Array(values)) => values.clone(),
                    // A forwarder that posts one item at a time.
                    None => vec![value],
                    Some(other) => {
                        return Err(RequestError::new(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "field `{pointer}`: expected the array of items, got {}",
                                crate::adapter::describe(other)
                            ),
                        ));
                    }
                },
                None => match value {
                    Value::Array(values) => values,
                    value => vec![value],
                },
            };
            Ok(items
                .into_iter()
                .map(|value| item_of(value, limits))
                .collect())
        }
    }
}

fn merge_context(call: &mut Map<String, Value>, batch_context: &Map<String, Value>) {
    let entry = call
        .entry("context")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(context) = entry {
        for (key, value) in batch_context {
            context.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

fn split_ndjson<'a>(bytes: &'a [u8], limits: &Limits) -> Vec<Item<'a>> {
    let mut items = Vec::new();
    for line in bytes.split(|byte| *byte == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            items.push(Item {
                problem: Some(Problem::new("(item)", "not UTF-8 text")),
                payload: ItemBody::Value(Value::String(String::from_utf8_lossy(line).into_owned())),
            });
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        items.push(native_item(text, limits));
    }
    items
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(millis)
}

/// The answer for one item (or one event of an item that produced several), as it is
/// written in the response.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    index: usize,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Outcome {
    fn new(index: usize, status: &'static str) -> Self {
        Outcome {
            index,
            status,
            event_id: None,
            kind: None,
            field: None,
            reason: None,
        }
    }
}

/// Translates, quarantines the rejected, appends the valid, and answers per item.
async fn ingest(
    shared: &Shared,
    adapter: Adapter,
    key: Option<&WriteKey>,
    items: Vec<Item<'_>>,
) -> Response {
    let source = key.map(|key| key.source.as_str());
    let received_at = now();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(items.len());
    let mut events = Vec::new();
    let mut event_slots = Vec::new();
    let mut quarantined = Vec::new();
    let mut quarantined_slots = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let translated = match item.problem {
            Some(problem) => Err(problem),
            None => match &item.payload {
                ItemBody::Native(text) => shared.adapters.translate_native_text(text, received_at),
                ItemBody::Value(value) => {
                    shared
                        .adapters
                        .translate(&adapter, value, source, received_at)
                }
            },
        };
        match translated {
            Ok(Translation::Events(produced)) => {
                for event in produced {
                    // Outside the key's scope: answered, never stored, not quarantined (it is
                    // not a fact to repair but a write the key may not make).
                    if let Some((field, reason)) = key.and_then(|key| key.refusal(&event)) {
                        outcomes.push(Outcome {
                            event_id: Some(event.event_id.to_string()),
                            kind: Some(event.kind().name()),
                            field: Some(field.to_owned()),
                            reason: Some(reason),
                            ..Outcome::new(index, "refused")
                        });
                        continue;
                    }
                    event_slots.push(outcomes.len());
                    outcomes.push(Outcome {
                        event_id: Some(event.event_id.to_string()),
                        kind: Some(event.kind().name()),
                        ..Outcome::new(index, "pending")
                    });
                    events.push(event);
                }
            }
            Ok(Translation::Ignored(reason)) => {
                outcomes.push(Outcome {
                    reason: Some(reason),
                    ..Outcome::new(index, "ignored")
                });
            }
            Err(problem) => {
                quarantined_slots.push(outcomes.len());
                outcomes.push(Outcome {
                    field: Some(problem.field.clone()),
                    reason: Some(problem.reason.clone()),
                    ..Outcome::new(index, "rejected")
                });
                quarantined.push(QuarantineEntry::new(
                    adapter.clone(),
                    source,
                    received_at,
                    &problem,
                    item.payload.into_value(),
                ));
            }
        }
    }

    // Rejected items are kept before anything is acknowledged: if the quarantine cannot
    // store them, the client must send again, and nothing is appended yet.
    if !quarantined.is_empty() {
        let quarantine = shared.quarantine.clone();
        let stored = tokio::task::spawn_blocking(move || quarantine.put(&quarantined)).await;
        let failure = match stored {
            Ok(Ok(kept)) => {
                let refused = &quarantined_slots[kept.kept..];
                if !refused.is_empty() {
                    tracing::warn!(
                        refused = refused.len(),
                        bytes = kept.bytes,
                        max_bytes = kept.max_bytes,
                        "the quarantine is full: rejected items answered but not kept"
                    );
                }
                shared
                    .metrics
                    .count(source, "quarantined", kept.kept as u64);
                shared
                    .metrics
                    .count(source, "not_kept", refused.len() as u64);
                for slot in refused {
                    let outcome = &mut outcomes[*slot];
                    let reason = outcome.reason.take().unwrap_or_default();
                    outcome.reason = Some(format!(
                        "{reason}; not kept in the quarantine: it is full ({} of {} bytes; `baton quarantine retry` or removing entries makes room)",
                        kept.bytes, kept.max_bytes
                    ));
                }
                None
            }
            Ok(Err(error)) => Some(error.to_string()),
            Err(error) => Some(format!("quarantine task failed: {error}")),
        };
        if let Some(message) = failure {
            tracing::error!(%message, "cannot quarantine rejected items");
            return unavailable(
                shared,
                format!("cannot quarantine rejected items, nothing was stored: {message}"),
            );
        }
    }

    let mut log_failure = None;
    if !events.is_empty() {
        let started = std::time::Instant::now();
        let appended = shared.appender.append(events).await;
        shared
            .metrics
            .append_seconds
            .observe(started.elapsed().as_secs_f64());
        match appended {
            Ok(results) => {
                for (slot, result) in event_slots.iter().zip(results) {
                    let outcome = &mut outcomes[*slot];
                    match result {
                        AppendOutcome::Appended(_) => outcome.status = "accepted",
                        AppendOutcome::Duplicate(_) => outcome.status = "duplicate",
                        AppendOutcome::NotWritten(reason) => {
                            outcome.status = "not_written";
                            outcome.reason = Some(reason.clone());
                            log_failure.get_or_insert(reason);
                        }
                    }
                }
            }
            Err(failure) => {
                for slot in &event_slots {
                    let outcome = &mut outcomes[*slot];
                    outcome.status = "not_written";
                    outcome.reason = Some(failure.message.clone());
                }
                if !failure.transient {
                    tracing::error!(message = %failure.message, "append failed");
                }
                log_failure = Some(failure.message);
            }
        }
    }
    for outcome in [
        "accepted",
        "duplicate",
        "ignored",
        "rejected",
        "refused",
        "not_written",
    ] {
        let items = outcomes.iter().filter(|o| o.status == outcome).count();
        shared.metrics.count(source, outcome, items as u64);
    }
    respond(shared, outcomes, log_failure)
}

fn unavailable(shared: &Shared, message: String) -> Response {
    shared.metrics.unavailable.inc();
    let mut response = RequestError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    insert_retry_after(shared, &mut response);
    response
}

fn insert_retry_after(shared: &Shared, response: &mut Response) {
    let seconds = shared.retry_after.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// The body of every per-item answer.
#[derive(Debug, serde::Serialize)]
struct Answer {
    accepted: u64,
    duplicates: u64,
    ignored: u64,
    rejected: u64,
    /// Items outside the write key's scope (another source, a kind it may not write).
    #[serde(skip_serializing_if = "is_zero")]
    refused: u64,
    not_written: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    items: Vec<Outcome>,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

fn respond(shared: &Shared, outcomes: Vec<Outcome>, log_failure: Option<String>) -> Response {
    let count = |status: &str| outcomes.iter().filter(|o| o.status == status).count() as u64;
    let answer = Answer {
        accepted: count("accepted"),
        duplicates: count("duplicate"),
        ignored: count("ignored"),
        rejected: count("rejected"),
        refused: count("refused"),
        not_written: count("not_written"),
        error: log_failure.map(|reason| {
            format!(
                "the log could not store every event; send the request again (it is safe: \
                 stored events come back as duplicates): {reason}"
            )
        }),
        items: outcomes,
    };
    let status = if answer.not_written > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if answer.rejected > 0 {
        StatusCode::BAD_REQUEST
    } else if answer.refused > 0 {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    let mut response = (status, axum::Json(answer)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        shared.metrics.unavailable.inc();
        insert_retry_after(shared, &mut response);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_from_basic_and_bearer() {
        // "wk_1:" in base64, as Segment's libraries send the write key.
        assert_eq!(key_of_authorization("Basic d2tfMTo="), Some("wk_1".into()));
        assert_eq!(key_of_authorization("Bearer wk_2"), Some("wk_2".into()));
        assert_eq!(key_of_authorization("Basic !!!"), None);
        assert_eq!(key_of_authorization("Digest x"), None);
    }
}
