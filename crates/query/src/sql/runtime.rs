//! Where SQL runs: threads of its own, at a lower priority than the rest of the process.
//!
//! The SQL endpoint lives in the projector's process, beside the collector and the HTTP API.
//! On their runtime one heavy query (a cross join of four tables) kept both worker threads
//! busy and `/healthz`, `/v1/funnel` and collector writes waited 10–140 s for it. Statements
//! (over the PostgreSQL protocol and `POST /v1/sql`) run on this runtime instead: its threads
//! compete for the cores through the operating system's scheduler, which gives the other
//! threads their turn, and their nice value (10) makes a busy query yield to ingestion and the
//! other routes.

use std::future::Future;
use std::sync::OnceLock;

/// The nice value of SQL threads: lower priority than the collector, projector and HTTP
/// threads (0), so queries take what those leave.
const SQL_NICE: i32 = 10;

/// The runtime SQL statements run on, started on first use and kept for the process.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("baton-sql")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("invariant: a tokio runtime can be built (threads and a timer)")
    })
}

/// Runs `work` on the SQL runtime and waits for it. Dropping the returned future (an HTTP
/// client gone, a time limit) aborts the work at its next yield point.
pub(crate) async fn on_sql_runtime<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = runtime().spawn(work);
    let _abort = AbortOnDrop(task.abort_handle());
    task.await
}

fn lower_priority() {
    // On Linux the nice value belongs to the thread, and `None` names the calling thread.
    // Failing to lower it costs fairness, not correctness.
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(None, SQL_NICE) {
        tracing::debug!(%error, "cannot lower the priority of a SQL thread");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = SQL_NICE;
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_on_sql_threads_at_a_lower_priority() {
        let (name, nice) = super::on_sql_runtime(async {
            let name = std::thread::current().name().map(str::to_owned);
            let nice = rustix::process::getpriority_process(None).expect("getpriority");
            (name, nice)
        })
        .await
        .expect("the work runs");
        assert_eq!(name.as_deref(), Some("baton-sql"));
        assert!(nice >= super::SQL_NICE, "nice {nice}");
    }

    #[tokio::test]
    async fn dropping_the_wait_aborts_the_work() {
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let waiting = super::on_sql_runtime(async move {
            let _held = sender;
            std::future::pending::<()>().await;
        });
        // Polled once so the work is spawned, then dropped.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), waiting)
                .await
                .is_err()
        );
        // The aborted task drops what it held.
        assert!(receiver.await.is_err());
    }
}
