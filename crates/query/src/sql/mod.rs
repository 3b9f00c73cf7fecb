//! The SQL endpoint: the views as tables over the PostgreSQL wire protocol, so that psql and
//! BI tools (Metabase, Grafana, Superset, Tableau) connect as they would to PostgreSQL.
//! DataFusion plans and runs the queries; datafusion-postgres speaks the protocol and answers
//! the `pg_catalog` queries drivers send. Read-only; see `docs/sql.md`.

mod auth;
mod cancel;
mod catalog_functions;
mod cursor;
mod datetime;
mod engine;
mod functions;
mod functions_catalog;
mod information_schema;
mod peer;
mod rewrite;
mod runtime;
mod session;
mod sqlstate;
mod system;
mod tables;
mod tls;
mod yielding;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::tokio::process_socket;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::{Catalog, QueryError};
use auth::TokenStartupHandler;
pub(crate) use engine::{SqlEngine, SqlFailure};
use peer::Peers;
use session::SqlService;
use sqlstate::SqlErrorHandler;
use tables::CatalogSource;
pub use tls::SqlTls;

/// Where the SQL endpoint listens and who may use it.
#[derive(Clone)]
pub struct SqlConfig {
    /// Port 0 picks a free port; [`SqlServer::local_addr`] says which.
    pub addr: SocketAddr,
    /// Passwords that admit a client (with any user name). With none, only clients on this
    /// machine (loopback) are admitted, without a password.
    pub read_tokens: Vec<String>,
    /// With a certificate, every connection must use TLS; without, none can.
    pub tls: Option<SqlTls>,
    /// The longest a statement may run; a session's `statement_timeout` may only lower it.
    pub statement_timeout: Duration,
    /// The views as known at a time, for sessions that `SET baton.as_known_at` (`None`: a
    /// session that sets it is told it needs `baton serve`).
    pub known_at: Option<Arc<crate::KnownAt>>,
}

impl fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConfig")
            .field("addr", &self.addr)
            .field(
                "read_tokens",
                &format_args!("[{} redacted]", self.read_tokens.len()),
            )
            .field("tls", &self.tls)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// A running SQL endpoint.
#[derive(Debug)]
pub struct SqlServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SqlServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped: after the shutdown future given to [`serve_sql`]
    /// completes, it stops accepting, closes every connection and returns.
    pub async fn join(self) -> Result<(), QueryError> {
        self.task.await.map_err(|error| QueryError::Stopped {
            message: error.to_string(),
        })
    }
}

/// Binds `config.addr` and serves the catalogs sent on `catalogs` until `shutdown` completes.
///
/// Each query reads the newest catalog on the channel when it starts (a statement prepared
/// earlier reads the newest one when executed), and sees all its tables at that catalog's
/// positions. The first catalog is converted here, so a catalog the engine cannot hold is
/// reported now rather than on the first query.
pub async fn serve_sql(
    config: SqlConfig,
    catalogs: watch::Receiver<Arc<Catalog>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SqlServer, QueryError> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| QueryError::Bind {
            addr: config.addr,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| QueryError::Bind {
        addr: config.addr,
        source,
    })?;
    let local_only = config.read_tokens.is_empty();
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let source = Arc::new(CatalogSource::new(catalogs));
    source.current().map_err(|error| QueryError::Engine {
        message: format!("cannot convert the views to Arrow: {error}"),
    })?;
    let context = session::session_context(source.clone(), session::QUERY_MEMORY_LIMIT)?;
    let connections = Arc::new(ConnectionManager::new());
    let peers = Arc::new(Peers::default());
    let handlers = Arc::new(SqlHandlers {
        service: Arc::new(SqlService::new(
            context,
            source,
            config.statement_timeout,
            peers.clone(),
            config.known_at.clone(),
        )),
        startup: Arc::new(TokenStartupHandler::new(
            config.read_tokens.into(),
            tls.is_some(),
            connections.clone(),
        )),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    tracing::info!(%local_addr, local_only, tls = tls.is_some(), "SQL endpoint listening");
    // The listener moves to the SQL runtime, so that connections, and the statements they
    // run, live on its threads and not on the collector's and the HTTP API's.
    let listener = listener.into_std().map_err(|source| QueryError::Bind {
        addr: config.addr,
        source,
    })?;
    let addr = config.addr;
    let task = runtime::runtime().spawn(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => accept(listener, tls, handlers, peers, shutdown).await,
            Err(error) => tracing::error!(%addr, %error, "the SQL endpoint cannot listen"),
        }
    });
    Ok(SqlServer { local_addr, task })
}

async fn accept(
    listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    handlers: Arc<SqlHandlers>,
    peers: Arc<Peers>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = handlers.clone();
                    let tls = tls.clone();
                    let watched = peers.watch(peer, &socket);
                    connections.spawn(async move {
                        let _watched = watched;
                        if let Err(error) = process_socket(socket, tls, handlers).await {
                            tracing::debug!(%peer, %error, "SQL connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Typically out of file descriptors: give connections a moment to close
                    // instead of spinning on the error.
                    tracing::warn!(%error, "cannot accept a SQL connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::error!(%error, "a SQL connection task failed");
                }
            }
        }
    }
    // Connections are idle most of the time (BI tools keep pools open), so waiting for them
    // to end could take forever: they are closed.
    connections.shutdown().await;
    tracing::info!("SQL endpoint stopped");
}

struct SqlHandlers {
    service: Arc<SqlService>,
    startup: Arc<TokenStartupHandler>,
    /// Cancel requests, matched to connections by (pid, secret key).
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for SqlHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlErrorHandler)
    }
}
