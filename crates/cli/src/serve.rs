//! `baton serve`: one process that owns the log and serves HTTP. Today it runs the collector;
//! the projector and the query API join through [`add_services`], which gives them the same
//! log, the same HTTP server (their routes are merged) and the same shutdown signal.
//!
//! Shutdown (Ctrl-C or SIGTERM): the HTTP server stops accepting, finishes the requests in
//! flight, the collector's appender drains, then every background task is told to stop and
//! awaited. Nothing is left running when `run` returns.

use crate::backend::LogArgs;
use crate::settings::Settings;
use anyhow::Context;
use baton_log::AnyLog;
use baton_producer::{Collector, WriteKey};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

impl ServeArgs {
    /// What `baton demo` serves with: defaults, on `http`.
    pub fn on(http: String, sql: Option<String>) -> ServeArgs {
        ServeArgs {
            http: Some(http),
            config: None,
            write_keys: Vec::new(),
            sql,
            sql_tls_cert: None,
            sql_tls_key: None,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// HTTP address to listen on [default: 127.0.0.1:7070; config key `http`].
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// TOML config file (see docs/configuration.md); BATON_* variables override its keys.
    #[arg(long, env = "BATON_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// A write key, SOURCE:KEY; repeatable. Replaces the keys of the file and environment.
    #[arg(long = "write-key", value_name = "SOURCE:KEY")]
    write_keys: Vec<WriteKey>,
    /// SQL (PostgreSQL wire protocol) address, or `off` [default: 127.0.0.1:5433; config key
    /// `sql`].
    #[arg(long, value_name = "ADDR")]
    sql: Option<String>,
    /// Certificate chain (PEM) for TLS on the SQL endpoint; with it, clients must use TLS
    /// [config key `sql_tls_cert`, BATON_SQL_TLS_CERT].
    #[arg(long, value_name = "FILE", requires = "sql_tls_key")]
    sql_tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM) [config key `sql_tls_key`, BATON_SQL_TLS_KEY].
    #[arg(long, value_name = "FILE", requires = "sql_tls_cert")]
    sql_tls_key: Option<PathBuf>,
}

/// What services other than the collector contribute to `baton serve`.
#[derive(Debug)]
pub struct Services {
    /// Routes merged into the collector's HTTP server (for example `/v1/funnel/...`).
    pub router: axum::Router,
    /// Background tasks (for example the projector following the log). Each must return
    /// once `shutdown` turns `true`.
    pub tasks: JoinSet<anyhow::Result<()>>,
    /// Turns `true` when the process is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// The hook where the projector and the query API are wired into `baton serve`: add routes to
/// `services.router` and spawn tasks on `services.tasks` that watch `services.shutdown`.
/// `log` is the log the collector appends to (clone it; it is cheap).
pub async fn add_services(
    services: &mut Services,
    log: &AnyLog,
    log_args: &LogArgs,
    settings: &Settings,
    collector_metrics: baton_producer::CollectorMetrics,
) -> anyhow::Result<()> {
    // The projector: the live view (created under the configured definition when missing),
    // followed until shutdown, publishing snapshots of its tables to the query routes.
    let store = baton_projector::ViewStore::open(log_args.views_dir())?;
    let view = crate::view::live_view(&store, settings.funnel.as_ref())?;
    let name = view.name().to_owned();
    let status = Arc::new(baton_projector::Status::default());
    let (mut publisher, snapshots, wanted) = baton_query::SnapshotPublisher::new(
        &name,
        Duration::from_millis(settings.publish_every_ms),
    );
    // The views as known at a time, for the HTTP routes and SQL sessions alike.
    let known_at = known_at(log, &name, view.definition()?);
    // The SQL endpoint's catalogs, which `POST /v1/sql` also reads when the endpoint runs.
    let mut sql_catalogs = None;
    if settings.sql != "off" {
        let addr: std::net::SocketAddr = settings.sql.parse().with_context(|| {
            format!(
                "sql address {:?}: expected HOST:PORT (e.g. 127.0.0.1:5433) or `off`",
                settings.sql
            )
        })?;
        // Until the projector publishes the live view (moments after start), SQL sees its
        // tables empty, at position 0.
        let definition = view.definition()?;
        let definition_hash = &definition.hash().to_owned();
        let empty = baton_core::FunnelProjection::new(definition);
        let initial = Arc::new(baton_query::Snapshot::build(
            &name,
            &empty,
            baton_projector::Position::ZERO,
        ));
        let candidates = candidate_snapshots(&store, &name, definition_hash)?;
        let catalogs = publisher.with_catalogs(initial, candidates);
        sql_catalogs = Some(catalogs.clone());
        let mut stopping = services.shutdown.clone();
        let server = baton_query::serve_sql(
            baton_query::SqlConfig {
                addr,
                read_tokens: settings.read_tokens.clone(),
                tls: settings.sql_tls()?,
                statement_timeout: Duration::from_secs(settings.sql_statement_timeout_secs),
                known_at: Some(known_at.clone()),
            },
            catalogs,
            async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            },
        )
        .await
        .context("starting the SQL endpoint")?;
        let bound = server.local_addr();
        eprintln!(
            "  SQL:     psql -h {} -p {} -d baton{}{}",
            bound.ip(),
            bound.port(),
            if settings.read_tokens.is_empty() {
                ""
            } else {
                " (password: a read token)"
            },
            if settings.sql_tls_cert.is_some() {
                " (TLS required)"
            } else {
                ""
            }
        );
        services.tasks.spawn(async move {
            server.join().await.context("the SQL endpoint")?;
            Ok(())
        });
    }
    if settings.read_tokens.is_empty() {
        tracing::warn!("no read token configured: the query API answers loopback clients only");
    }
    let mut state = baton_query::QueryState::new(
        snapshots,
        status.clone(),
        settings.read_tokens.clone(),
        wanted,
    );
    if let Some(catalogs) = sql_catalogs {
        state = state.with_catalogs(catalogs);
    }
    state = state
        .with_sql_timeout(Duration::from_secs(settings.sql_statement_timeout_secs))
        .with_metrics(|registry| collector_metrics.register(registry))
        .with_known_at(known_at)
        .with_backtests(backtests(
            log,
            &name,
            view.definition()?,
            store.dir(),
            settings.backtest_max_events,
        ));
    services.router = std::mem::take(&mut services.router).merge(baton_query::router(state));
    let log = log.clone();
    let shutdown = services.shutdown.clone();
    services.tasks.spawn(supervise_projector(
        log, store, view, status, publisher, shutdown,
    ));
    Ok(())
}

/// Backtests over HTTP (`/v1/backtests`): the candidate and the live definition folded in
/// memory to the log's head in one reading of the log (a thread each), compared, as `baton
/// replay --funnel FILE --no-keep` does beside a running `serve`; with `keep`, the candidate
/// is then kept whole as a view in `views`, as `baton replay --name` keeps one. On a blocking
/// thread, so the folds never hold up the server's work.
fn backtests(
    log: &AnyLog,
    view: &str,
    live: baton_core::FunnelDefinition,
    views: &std::path::Path,
    max_events: Option<u64>,
) -> Arc<baton_query::backtest::Backtests> {
    let (log, view, views) = (log.clone(), view.to_owned(), views.to_owned());
    let run: baton_query::backtest::RunBacktest = Arc::new(move |candidate, keep, progress| {
        let (log, view, live, views) = (log.clone(), view.clone(), live.clone(), views.clone());
        Box::pin(async move {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let store = baton_projector::ViewStore::open(&views)
                    .map_err(|error| format!("opening the views: {error}"))?;
                if let Some(keep) = &keep {
                    // Refused before the folds, not after.
                    match store.open_view(&keep.name) {
                        Err(baton_projector::StoreError::NoSuchView { .. }) => {}
                        Ok(_) | Err(baton_projector::StoreError::InUse { .. }) => {
                            return Err(format!(
                                "a view named {:?} already exists; keep the backtest under another name, or `baton drop {}` first",
                                keep.name, keep.name
                            ));
                        }
                        Err(other) => return Err(other.to_string()),
                    }
                }
                let mut folds = runtime.block_on(async {
                    let head = baton_log::EventLog::stat(&log)
                        .await
                        .map_err(|error| error.to_string())?
                        .head;
                    backtest_fits(head.get(), max_events)?;
                    progress.phase("folding", head.get());
                    baton_projector::fold_log_to_each(
                        &log,
                        vec![candidate, live],
                        head,
                        |reached, _| progress.reached(reached.get()),
                    )
                    .await
                    .map_err(|error| format!("folding {}: {error}", log.describe()))
                })?;
                let live = folds.pop().expect("two folds");
                let mut candidate = folds.pop().expect("two folds");
                let at = candidate.position;
                let comparison = baton_core::compare(&live.projection, &candidate.projection);
                drop(live);
                let name = keep
                    .as_ref()
                    .map_or(crate::view::UNKEPT_CANDIDATE, |keep| keep.name.as_str());
                let json = baton_query::comparison::comparison_json(
                    &comparison,
                    (view.as_str(), at),
                    (name, at),
                    at,
                );
                if let Some(keep) = &keep {
                    progress.phase("keeping", 0);
                    store
                        .keep_view(
                            &keep.name,
                            &keep.definition_text,
                            "POST /v1/backtests",
                            baton_projector::Bound::Position(at),
                            &mut candidate.projection,
                            at,
                            |written, total| {
                                progress.phase_total(total as u64);
                                progress.reached(written as u64);
                                std::ops::ControlFlow::Continue(())
                            },
                        )
                        .map_err(|error| format!("keeping the candidate: {error}"))?;
                    if let Err(error) = store.save_comparison(&keep.name, &json.to_string()) {
                        tracing::warn!(view = %keep.name, %error, "the comparison is not kept beside the view");
                    }
                }
                Ok(json)
            })
            .await
            .map_err(|error| format!("the backtest stopped: {error}"))?
        })
    });
    Arc::new(baton_query::backtest::Backtests::new(run))
}

/// Refuses a backtest the serving process should not hold: more events than
/// `backtest_max_events` allows or, without that setting, two folds of the log that would hold
/// more than half the memory available now. A backtest that ran the process out of memory
/// would stop ingestion and queries for everyone.
fn backtest_fits(events: u64, max_events: Option<u64>) -> Result<(), String> {
    match max_events {
        Some(max) if events > max => Err(format!(
            "the log holds {events} events, more than backtest_max_events ({max}) lets a backtest fold beside the server; raise it, or run `baton replay --funnel FILE --on-disk` from the command line"
        )),
        Some(_) => Ok(()),
        None => match crate::view::memory_shortfall(events, 2) {
            Some((needed, available)) => Err(format!(
                "a backtest of the log's {events} events would hold about {:.1} GB (the candidate and the live definition), more than half of the {:.1} GB available to the server; run `baton replay --funnel FILE --on-disk` from the command line, or set backtest_max_events",
                needed as f64 / 1e9,
                available as f64 / 1e9
            )),
            None => Ok(()),
        },
    }
}

/// The views as known at a time (`as_known_at` on the query routes): the live definition
/// folded in memory from the events recorded by then, on a blocking thread so the fold's
/// work never holds up the server's.
fn known_at(
    log: &AnyLog,
    view: &str,
    definition: baton_core::FunnelDefinition,
) -> Arc<baton_query::KnownAt> {
    let (log, view) = (log.clone(), view.to_owned());
    let fold: baton_query::FoldKnownAt = Arc::new(move |at| {
        let (log, view, definition) = (log.clone(), view.clone(), definition.clone());
        Box::pin(async move {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                runtime.block_on(async {
                    let (folded, _) =
                        baton_projector::fold_log_known_at(&log, definition, at, |_, _| ())
                            .await
                            .map_err(|error| error.to_string())?;
                    Ok(
                        baton_query::Snapshot::build(&view, &folded.projection, folded.position)
                            .known_at(at),
                    )
                })
            })
            .await
            .map_err(|error| format!("the fold stopped: {error}"))?
        })
    });
    Arc::new(baton_query::KnownAt::new(fold))
}

/// Runs the projector of the live view until shutdown. A failure it cannot wait out inside
/// the run (the views' disk full, a write that failed) does not stop the service: queries keep
/// answering from the last published snapshot, `/readyz` and `/metrics` report the fault, and
/// the view is opened again from its last commit after a backoff, as often as it takes.
async fn supervise_projector(
    log: AnyLog,
    store: baton_projector::ViewStore,
    view: baton_projector::View,
    status: Arc<baton_projector::Status>,
    publisher: baton_query::SnapshotPublisher,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let name = view.name().to_owned();
    let publisher = Arc::new(std::sync::Mutex::new(publisher));
    let mut view = Some(view);
    // Opening a view again reads its whole state: wait longer between tries than a read does.
    let mut backoff = baton_log::Backoff::between(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let opened = match view.take() {
            Some(view) => Ok(view),
            None => {
                let store = store.clone();
                let name = name.clone();
                tokio::task::spawn_blocking(move || store.open_view(&name))
                    .await
                    .context("opening the live view")?
            }
        };
        let failure = match opened {
            Ok(view) => {
                let options = baton_projector::RunOptions {
                    until: baton_projector::Until::Forever,
                    ..baton_projector::RunOptions::default()
                };
                let publisher = publisher.clone();
                let on_commit = move |projection: &baton_core::FunnelProjection, position| {
                    publisher
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .committed(projection, position);
                };
                let mut stopping = shutdown.clone();
                let stopping = async move {
                    let _ = stopping.wait_for(|stopping| *stopping).await;
                };
                let commits_before = status.commits();
                match baton_projector::run(&log, view, options, status.clone(), on_commit, stopping)
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(error) => {
                        if status.commits() > commits_before {
                            backoff.reset();
                        }
                        anyhow::Error::new(error)
                    }
                }
            }
            Err(error) => anyhow::Error::new(error),
        };
        if *shutdown.borrow() {
            return Ok(());
        }
        let wait = backoff.next_wait();
        let failure = format!("{failure:#}");
        tracing::error!(
            view = %name,
            error = %failure,
            retry_in_ms = wait.as_millis() as u64,
            "the projector stopped; queries answer from the last published views, and it starts again from the last commit"
        );
        let _ = status.set_fault(
            baton_projector::FaultSide::Storing,
            format!(
                "the projector of view {name:?} stopped and starts again from its last commit: {failure}"
            ),
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return Ok(()),
        }
    }
}

/// Snapshots of every candidate view, built once at start so SQL can join them with the live
/// view, each with its kept comparison with the live definition when there is one. A
/// candidate open in another process (a replay running) is left out, with a warning.
fn candidate_snapshots(
    store: &baton_projector::ViewStore,
    live: &str,
    live_hash: &str,
) -> anyhow::Result<Vec<Arc<baton_query::Snapshot>>> {
    let mut snapshots = Vec::new();
    for name in store.names()? {
        if name == live {
            continue;
        }
        let view = match store.open_view(&name) {
            Ok(view) => view,
            Err(baton_projector::StoreError::InUse { .. }) => {
                tracing::warn!(view = %name, "candidate view in use elsewhere; not served over SQL");
                continue;
            }
            Err(baton_projector::StoreError::NoSuchView { .. }) => continue,
            Err(other) => return Err(other.into()),
        };
        let (projection, position) = match view.load() {
            Ok(loaded) => loaded,
            Err(error @ baton_projector::StoreError::StateVersion { .. }) => {
                tracing::warn!(view = %name, "{error}; not served over SQL");
                continue;
            }
            Err(other) => {
                return Err(
                    anyhow::Error::new(other).context(format!("loading candidate view {name:?}"))
                );
            }
        };
        let mut snapshot = baton_query::Snapshot::build(&name, &projection, position);
        if let Some(comparison) = kept_comparison(store, &name, live_hash) {
            snapshot = snapshot.with_comparison(comparison);
        }
        snapshots.push(Arc::new(snapshot));
    }
    Ok(snapshots)
}

/// A candidate's kept comparison, when there is one and it was made against the live
/// definition as it is now (one made before another view was promoted compares with a
/// definition no longer live: left out, with a warning saying how to make a new one).
fn kept_comparison(
    store: &baton_projector::ViewStore,
    name: &str,
    live_hash: &str,
) -> Option<serde_json::Value> {
    let text = match store.comparison_of(name) {
        Ok(text) => text?,
        Err(error) => {
            tracing::warn!(view = %name, "{error}; its comparison is not served");
            return None;
        }
    };
    let report: serde_json::Value = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(error) => {
            tracing::warn!(view = %name, "its kept comparison is not JSON ({error}); run `baton compare {name}`");
            return None;
        }
    };
    let compared_with = report["live"]["summary"]["definition_hash"].as_str();
    if compared_with != Some(live_hash) {
        tracing::warn!(
            view = %name,
            "its kept comparison is with another live definition ({}); run `baton compare {name}` to compare it with the live one",
            compared_with.unwrap_or("none named")
        );
        return None;
    }
    Some(report)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// The data directory and the NATS URL: flags and their `BATON_DATA`/`BATON_NATS` variables
/// first, then the config file.
fn log_args_with(log_args: &LogArgs, settings: &Settings) -> LogArgs {
    let mut resolved = log_args.clone();
    if resolved.data == std::path::Path::new(crate::backend::DEFAULT_DATA)
        && let Some(data) = &settings.data
    {
        resolved.data.clone_from(data);
    }
    if resolved.nats.is_none() {
        resolved.nats.clone_from(&settings.nats);
    }
    resolved
}

pub async fn run(log_args: &LogArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let environment = |name: &str| std::env::var(name).ok();
    let mut settings = Settings::load(args.config.as_deref(), &environment)?;
    if let Some(http) = args.http {
        settings.http = http;
    }
    let keys_from_flags = !args.write_keys.is_empty();
    if keys_from_flags {
        settings.write_keys = args.write_keys;
    }
    if let Some(sql) = args.sql {
        settings.sql = sql;
    }
    if args.sql_tls_cert.is_some() {
        settings.sql_tls_cert = args.sql_tls_cert;
        settings.sql_tls_key = args.sql_tls_key;
    }
    let log_args = log_args_with(log_args, &settings);
    let config = settings.collector_config(&log_args.data)?;
    let log = log_args.open().await?;
    let collector = Collector::bind(config, log.clone())
        .await
        .context("starting the collector")?;
    let addr = collector.local_addr()?;
    #[cfg(unix)]
    if let Some(file) = args.config.clone() {
        tokio::spawn(reload_keys_on_hangup(
            file,
            collector.state().write_keys(),
            keys_from_flags,
        ));
    }

    let (stop, shutdown) = watch::channel(false);
    let mut services = Services {
        router: axum::Router::new(),
        tasks: JoinSet::new(),
        shutdown: shutdown.clone(),
    };
    add_services(
        &mut services,
        &log,
        &log_args,
        &settings,
        collector.metrics(),
    )
    .await?;
    let Services {
        router, mut tasks, ..
    } = services;

    eprintln!("baton serve: {} on http://{addr}", log.describe());
    eprintln!(
        "  dashboard: http://{addr}/ (open it in a browser)\n  \
         views:   http://{addr}/v1/views (tables; /v1/views/TABLE?format=csv for CSV)\n  \
         funnel:  http://{addr}/v1/funnel\n  API:     http://{addr}/openapi.json\n  \
         collect: POST http://{addr}/v1/events (docs/ingest.md)\n  Ctrl-C stops."
    );
    let mut http_shutdown = shutdown.clone();
    let served = collector.serve(router, async move {
        let _ = http_shutdown.wait_for(|stopping| *stopping).await;
    });
    tokio::pin!(served);

    // Stop on a signal, or when the server or a background task ends on its own (an error).
    let mut result: anyhow::Result<()> = Ok(());
    let mut served_done = false;
    tokio::select! {
        () = signal() => {
            tracing::info!("shutting down");
        }
        outcome = &mut served => {
            served_done = true;
            result = outcome.context("the HTTP server stopped");
        }
        Some(joined) = tasks.join_next() => {
            result = flatten(joined).context("a background service stopped");
        }
    }
    let _ = stop.send(true);
    if !served_done && let Err(error) = served.await {
        result = result.and(Err(error).context("the HTTP server stopped"));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = flatten(joined) {
            result = result.and(Err(error).context("a background service failed"));
        }
    }
    result?;
    eprintln!("baton serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// On SIGHUP (`systemctl reload baton`), reads the write keys of the config file (and
/// `BATON_WRITE_KEYS`) again and puts them in force: a key is rotated by adding the new one,
/// reloading, moving the clients, then removing the old one and reloading again. A file that
/// does not load keeps the keys in force and says why.
#[cfg(unix)]
async fn reload_keys_on_hangup(
    file: PathBuf,
    keys: baton_producer::WriteKeys,
    keys_from_flags: bool,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP: write keys reload only on restart");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        if keys_from_flags {
            eprintln!(
                "baton serve: SIGHUP: write keys were given with --write-key, so they stay as they are"
            );
            continue;
        }
        let environment = |name: &str| std::env::var(name).ok();
        match Settings::load(Some(&file), &environment) {
            Ok(settings) => {
                let count = settings.write_keys.len();
                keys.replace(settings.write_keys);
                eprintln!(
                    "baton serve: SIGHUP: {count} write keys from {} are in force",
                    file.display()
                );
            }
            Err(error) => {
                tracing::error!(%error, "SIGHUP: the config file does not load; the write keys in force stay");
                eprintln!(
                    "baton serve: SIGHUP: {error:#}; the write keys in force stay as they were"
                );
            }
        }
    }
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.map_err(|error| anyhow::anyhow!("task failed: {error}"))?
}
