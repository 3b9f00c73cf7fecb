//! Ending a running statement early: PostgreSQL's cancel request (psql's Ctrl-C, JDBC's
//! `Statement.cancel`, a BI tool's "stop") and `statement_timeout`.
//!
//! DataFusion plans a statement when it is handed over, but runs it while its rows are sent:
//! the answer is a stream that the protocol layer drains after the handler has returned. So
//! both planning and that stream are watched, and either ends with `57014`, as in PostgreSQL.
//! A client that disconnects mid-statement stops it too ([`super::peer`]).

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::SecretKey;
use tokio::time::Instant;

use super::peer::Peers;

/// Where datafusion-postgres keeps a session's `statement_timeout` (milliseconds), set by
/// `SET statement_timeout`.
const STATEMENT_TIMEOUT_KEY: &str = "statement_timeout_ms";

/// A connection's entry in the cancel registry, kept in its session for as long as it lives.
struct Registered {
    handle: Arc<ConnectionHandle>,
    _guard: ConnectionGuard,
}

/// Makes the connection cancellable with its (pid, secret key), once it is admitted.
pub(super) fn register(
    manager: &Arc<ConnectionManager>,
    client: &dyn ClientInfo,
    pid: i32,
    secret_key: SecretKey,
) {
    let (handle, guard) = manager.register(pid, secret_key);
    client.session_extensions().insert(Registered {
        handle,
        _guard: guard,
    });
}

/// Why a statement was stopped.
#[derive(Clone, Copy, Debug)]
enum Reason {
    Cancelled,
    TimedOut,
    /// The client closed its connection: nobody is left to read the answer.
    Disconnected,
}

impl Reason {
    fn outcome(self) -> &'static str {
        match self {
            Reason::Cancelled => "cancelled",
            Reason::TimedOut => "timed_out",
            Reason::Disconnected => "disconnected",
        }
    }

    fn error(self) -> PgWireError {
        let message = match self {
            Reason::Cancelled => "canceling statement due to user request",
            Reason::TimedOut => "canceling statement due to statement timeout",
            Reason::Disconnected => "canceling statement because the client disconnected",
        };
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            "57014".to_owned(),
            message.to_owned(),
        )))
    }
}

/// What can end one statement (or one query string) early.
#[derive(Clone)]
pub(super) struct Stop {
    /// Resolves when a cancel request names this connection while the statement runs.
    cancelled: Shared<BoxFuture<'static, ()>>,
    /// Resolves when the client closes its connection while the statement runs.
    disconnected: Shared<BoxFuture<'static, ()>>,
    deadline: Option<Instant>,
    started: Instant,
}

impl Stop {
    /// Starts watching for a statement about to run on `client`.
    /// The statement stops after the session's `statement_timeout`, or after `limit` (the
    /// endpoint's) when the session set none, or a longer one, or 0.
    pub(super) async fn start(
        client: &(dyn ClientInfo + Send + Sync),
        limit: Duration,
        peers: &Arc<Peers>,
    ) -> Stop {
        let cancelled = match client.session_extensions().get::<Registered>() {
            Some(registered) => {
                let receiver = registered.handle.start_query().await;
                async move {
                    // The sender is dropped, not fired, when the next statement starts: that
                    // is no cancel.
                    if receiver.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                .boxed()
            }
            None => std::future::pending().boxed(),
        };
        let timeout = client
            .metadata()
            .get(STATEMENT_TIMEOUT_KEY)
            .and_then(|millis| millis.parse::<u64>().ok())
            .filter(|millis| *millis > 0)
            .map_or(limit, Duration::from_millis)
            .min(limit);
        let peers = peers.clone();
        let peer = client.socket_addr();
        let disconnected = async move { peers.gone(peer).await }.boxed();
        Stop {
            cancelled: cancelled.shared(),
            disconnected: disconnected.shared(),
            deadline: Some(Instant::now() + timeout),
            started: Instant::now(),
        }
    }

    async fn reason(&self) -> Reason {
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.cancelled.clone() => Reason::Cancelled,
            () = deadline => Reason::TimedOut,
            () = self.disconnected.clone() => Reason::Disconnected,
        }
    }

    /// Counts the statement in `/metrics` as ended with `outcome`.
    pub(super) fn ended(&self, outcome: &'static str) {
        crate::metrics::sql().ended("pgwire", outcome, self.started.elapsed().as_secs_f64());
    }

    /// Runs planning (or anything before the rows) unless stopped first.
    pub(super) async fn run<T>(&self, work: impl Future<Output = T>) -> PgWireResult<T> {
        tokio::select! {
            biased;
            reason = self.reason() => {
                self.ended(reason.outcome());
                Err(reason.error())
            }
            done = work => Ok(done),
        }
    }

    /// Watches the rows of an answer: once stopped, the next row is the error and the stream
    /// ends (dropping DataFusion's stream stops its work).
    pub(super) fn watch(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                query.data_rows = Box::pin(watched(query.data_rows, self.clone()));
                Response::Query(query)
            }
            other => other,
        }
    }
}

fn watched(
    rows: impl Stream<Item = PgWireResult<DataRow>> + Send + Unpin + 'static,
    stop: Stop,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    futures::stream::unfold(Some((rows, stop)), |state| async move {
        let (mut rows, stop) = state?;
        tokio::select! {
            biased;
            reason = stop.reason() => {
                stop.ended(reason.outcome());
                Some((Err(reason.error()), None))
            }
            next = rows.next() => match next {
                None => {
                    stop.ended("ok");
                    None
                }
                Some(Err(error)) => {
                    stop.ended("error");
                    Some((Err(error), None))
                }
                Some(row) => Some((row, Some((rows, stop)))),
            },
        }
    })
}
