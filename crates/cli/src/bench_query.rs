//! `baton bench query`: query latency of the views over HTTP and SQL, idle and while events are
//! appended at a steady rate, in one run, on one embedded log with a live projector in the
//! same process (as `baton serve` runs them).
//!
//! Timed, each sequentially from one client (send to full body): the funnel summary
//! (`/v1/funnel`) and a per-person lookup (`/v1/people/{id}`, ids drawn with a fixed seed from
//! the people of the history); then the queries per second several concurrent clients get on
//! the funnel summary. The idle figures are the baseline; the ingesting ones are what the goal
//! is about.

use crate::bench::unique_events;
use anyhow::Context;
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Events in the history behind the views.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per second appended during the ingesting phase.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients for the queries-per-second figure.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Print `{"http_p50_ms":..,"http_p99_ms":..,"sql_p50_ms":..,"sql_p99_ms":..,
    /// "lookup_p99_ms":..,"qps":..}` plus the idle baseline (`idle_*`).
    #[arg(long)]
    json: bool,
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e3
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    funnel_p50: f64,
    funnel_p99: f64,
    lookup_p50: f64,
    lookup_p99: f64,
    sql_p50: f64,
    sql_p99: f64,
    sql_lookup_p99: f64,
    qps: f64,
    /// Published view position at the end of the phase (shows the views kept up).
    position: u64,
}

async fn timed(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = client.get(url).send().await.context("query request")?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.context("query body")?;
    Ok(started.elapsed())
}

async fn phase(
    base: &str,
    sql: &tokio_postgres::Client,
    people: &[String],
    seconds: f64,
    clients: usize,
) -> anyhow::Result<Figures> {
    let client = reqwest::Client::new();
    let deadline = Duration::from_secs_f64(seconds / 5.0);
    let funnel_url = format!("{base}/v1/funnel");
    let mut funnel = Vec::new();
    let started = Instant::now();
    while started.elapsed() < deadline {
        funnel.push(timed(&client, &funnel_url).await?);
    }
    let mut lookups = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let started = Instant::now();
    while started.elapsed() < deadline {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let person = &people[(seed % people.len() as u64) as usize];
        lookups.push(timed(&client, &format!("{base}/v1/people/{person}")).await?);
    }
    // The same two questions over SQL: the stages of the funnel, and one person's row.
    let stages = sql
        .prepare("select * from stages")
        .await
        .context("prepare")?;
    let person = sql
        .prepare("select * from person_scores where person = $1")
        .await
        .context("prepare")?;
    let mut sql_funnel = Vec::new();
    let started = Instant::now();
    while started.elapsed() < deadline {
        let at = Instant::now();
        sql.query(&stages, &[]).await.context("SQL funnel query")?;
        sql_funnel.push(at.elapsed());
    }
    let mut sql_lookups = Vec::new();
    let started = Instant::now();
    while started.elapsed() < deadline {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = &people[(seed % people.len() as u64) as usize];
        let at = Instant::now();
        let rows = sql.query(&person, &[id]).await.context("SQL lookup")?;
        anyhow::ensure!(rows.len() == 1, "person {id}: {} rows over SQL", rows.len());
        sql_lookups.push(at.elapsed());
    }
    sql_funnel.sort_unstable();
    sql_lookups.sort_unstable();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (client, url) = (client.clone(), funnel_url.clone());
        workers.spawn(async move {
            let mut count = 0u64;
            while started.elapsed() < deadline {
                timed(&client, &url).await?;
                count += 1;
            }
            Ok::<_, anyhow::Error>(count)
        });
    }
    let mut answered = 0;
    while let Some(joined) = workers.join_next().await {
        answered += joined.context("query client")??;
    }
    let qps = answered as f64 / started.elapsed().as_secs_f64();
    funnel.sort_unstable();
    lookups.sort_unstable();
    let body: serde_json::Value = serde_json::from_str(
        &client
            .get(&funnel_url)
            .send()
            .await?
            .text()
            .await
            .context("funnel body")?,
    )?;
    Ok(Figures {
        funnel_p50: percentile_ms(&funnel, 50),
        funnel_p99: percentile_ms(&funnel, 99),
        lookup_p50: percentile_ms(&lookups, 50),
        lookup_p99: percentile_ms(&lookups, 99),
        sql_p50: percentile_ms(&sql_funnel, 50),
        sql_p99: percentile_ms(&sql_funnel, 99),
        sql_lookup_p99: percentile_ms(&sql_lookups, 99),
        qps,
        position: body["position"].as_u64().unwrap_or(0),
    })
}

/// Append-to-visible latency: for each acknowledged batch, the time until the first snapshot
/// published at or past its last position.
struct Freshness {
    p50: f64,
    p99: f64,
    max: f64,
    /// Batches no snapshot reflected before the run ended.
    missing: usize,
}

fn freshness(acknowledged: &[(u64, Instant)], published: &[(u64, Instant)]) -> Freshness {
    let mut delays = Vec::with_capacity(acknowledged.len());
    let mut missing = 0;
    for (position, at) in acknowledged {
        let seen = published
            .iter()
            .find(|(reflected, when)| reflected >= position && when >= at);
        match seen {
            Some((_, when)) => delays.push(when.duration_since(*at)),
            None => missing += 1,
        }
    }
    delays.sort_unstable();
    Freshness {
        p50: percentile_ms(&delays, 50),
        p99: percentile_ms(&delays, 99),
        max: delays.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        missing,
    }
}

pub async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path().join("log"))).await?;
    let appended_during = (f64::from(args.rate) * args.seconds) as usize + 1;
    let mut events = unique_events(args.events + appended_during);
    let later = events.split_off(args.events);
    for batch in events.chunks(10_000) {
        log.append(batch.to_vec()).await?;
    }
    drop(events);
    let head = log.stat().await?.head;

    // The live projector and the query routes, as `baton serve` wires them.
    let store = baton_projector::ViewStore::open(dir.path().join("views"))?;
    let definition = baton_core::FunnelDefinition::default_funnel();
    let view = store.create_view(
        "bench",
        &definition,
        baton_core::DEFAULT_FUNNEL_TOML,
        "default",
        None,
    )?;
    let status = Arc::new(baton_projector::Status::default());
    let (mut publisher, snapshots, wanted) =
        baton_query::SnapshotPublisher::new("bench", baton_query::SnapshotPublisher::DEFAULT_EVERY);
    let empty = baton_core::FunnelProjection::new(definition.clone());
    let catalogs = publisher.with_catalogs(
        Arc::new(baton_query::Snapshot::build(
            "bench",
            &empty,
            baton_log::Position::ZERO,
        )),
        Vec::new(),
    );
    let (sql_stop, sql_stopped) = tokio::sync::oneshot::channel::<()>();
    let sql_server = baton_query::serve_sql(
        baton_query::SqlConfig {
            addr: "127.0.0.1:0".parse().expect("invariant: a valid address"),
            read_tokens: Vec::new(),
            tls: None,
            statement_timeout: baton_query::DEFAULT_STATEMENT_TIMEOUT,
            known_at: None,
        },
        catalogs,
        async {
            let _ = sql_stopped.await;
        },
    )
    .await?;
    let (sql, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} dbname=baton user=bench",
            sql_server.local_addr().port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .context("connecting to the SQL endpoint")?;
    let connection = tokio::spawn(connection);
    let state = baton_query::QueryState::new(snapshots.clone(), status.clone(), Vec::new(), wanted);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projector = {
        let (log, status) = (log.clone(), status.clone());
        tokio::spawn(async move {
            let options = baton_projector::RunOptions {
                until: baton_projector::Until::Forever,
                ..baton_projector::RunOptions::default()
            };
            let on_commit = move |projection: &baton_core::FunnelProjection, position| {
                publisher.committed(projection, position);
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            baton_projector::run(&log, view, options, status, on_commit, shutdown).await
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = baton_query::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });

    // Wait for the views of the whole history.
    let mut receiver = snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(1800),
        receiver.wait_for(|s| s.as_ref().is_some_and(|s| s.position >= head)),
    )
    .await
    .context("the views of the history were not published within 30 minutes")??;
    let history_build = receiver
        .borrow()
        .as_ref()
        .map_or(Duration::ZERO, |snapshot| snapshot.built_in);
    let people: Vec<String> = {
        let snapshot = receiver.borrow().clone().expect("invariant: waited for it");
        let table = snapshot
            .table("person_scores")
            .context("no person_scores table")?;
        table
            .rows
            .iter()
            .filter_map(|row| match &row[0] {
                baton_query::Value::Text(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    anyhow::ensure!(!people.is_empty(), "the history has no people");

    let idle = phase(&base, &sql, &people, args.seconds, args.clients).await?;

    // Freshness: when each published snapshot arrived, to time every appended batch from its
    // acknowledgement to the first snapshot that reflects it.
    let published = {
        let mut receiver = snapshots.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(u64, Instant)> = Vec::new();
            while receiver.changed().await.is_ok() {
                if let Some(snapshot) = receiver.borrow_and_update().as_ref() {
                    seen.push((snapshot.position.get(), Instant::now()));
                }
            }
            seen
        })
    };

    // Ingesting: append at a steady rate while the same queries run.
    let appender = {
        let log = log.clone();
        let rate = args.rate;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            let mut pending = later.into_iter();
            let started = Instant::now();
            let mut appended = 0usize;
            // (the batch's last position, when its append was acknowledged)
            let mut acknowledged: Vec<(u64, Instant)> = Vec::new();
            loop {
                ticker.tick().await;
                let due = (f64::from(rate) * started.elapsed().as_secs_f64()) as usize;
                let batch: Vec<_> = pending
                    .by_ref()
                    .take(due.saturating_sub(appended))
                    .collect();
                if batch.is_empty() && appended > 0 && pending.len() == 0 {
                    break;
                }
                appended += batch.len();
                if !batch.is_empty() {
                    let outcomes = log.append(batch).await?;
                    let last = outcomes
                        .iter()
                        .filter_map(|outcome| match outcome {
                            baton_log::AppendOutcome::Appended(at) => Some(at.get()),
                            _ => None,
                        })
                        .max();
                    if let Some(last) = last {
                        acknowledged.push((last, Instant::now()));
                    }
                }
            }
            let eps = appended as f64 / started.elapsed().as_secs_f64();
            Ok::<_, anyhow::Error>((eps, acknowledged))
        })
    };
    let ingesting = phase(&base, &sql, &people, args.seconds, args.clients).await?;
    let (append_eps, acknowledged) = appender.await.context("appender")??;
    // Every batch should become visible once the appending stops; wait for the last.
    if let Some((last, _)) = acknowledged.last() {
        let mut receiver = snapshots.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(120),
            receiver.wait_for(|s| s.as_ref().is_some_and(|s| s.position.get() >= *last)),
        )
        .await;
    }
    // Freshness: how far the views queries saw at the end trailed the log, and what one
    // computation of the views cost.
    let head_after = log.stat().await?.head;
    let last_build = snapshots
        .borrow()
        .as_ref()
        .map_or(Duration::ZERO, |snapshot| snapshot.built_in);
    let _ = stop.send(());
    projector.await.context("projector")??;
    // The publisher went with the projector, which ends the watcher.
    drop(snapshots);
    let published = published.await.context("snapshot watcher")?;
    let fresh = freshness(&acknowledged, &published);
    let _ = http_stop.send(());
    server.await.context("server")??;
    drop(sql);
    let _ = connection.await;
    let _ = sql_stop.send(());
    sql_server.join().await?;

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "http_p50_ms": ingesting.funnel_p50,
                "http_p99_ms": ingesting.funnel_p99,
                "lookup_p50_ms": ingesting.lookup_p50,
                "lookup_p99_ms": ingesting.lookup_p99,
                "qps": ingesting.qps.round(),
                "append_eps": append_eps.round(),
                "views_position_after": ingesting.position,
                "head_after": head_after.get(),
                "history_build_ms": (history_build.as_secs_f64() * 1e5).round() / 100.0,
                "last_build_ms": (last_build.as_secs_f64() * 1e5).round() / 100.0,
                "idle_http_p50_ms": idle.funnel_p50,
                "idle_http_p99_ms": idle.funnel_p99,
                "idle_lookup_p99_ms": idle.lookup_p99,
                "idle_qps": idle.qps.round(),
                "sql_p50_ms": ingesting.sql_p50,
                "sql_p99_ms": ingesting.sql_p99,
                "sql_lookup_p99_ms": ingesting.sql_lookup_p99,
                "idle_sql_p50_ms": idle.sql_p50,
                "idle_sql_p99_ms": idle.sql_p99,
                "visible_p50_ms": fresh.p50,
                "visible_p99_ms": fresh.p99,
                "visible_max_ms": fresh.max,
                "not_visible": fresh.missing,
            })
        );
    } else {
        println!(
            "query latency over HTTP, {} events behind the views, {} concurrent clients for qps",
            args.events, args.clients
        );
        println!(
            "  {:<34} {:>10} {:>10} {:>12} {:>12} {:>9} {:>9} {:>9} {:>11}",
            "",
            "funnel p50",
            "funnel p99",
            "lookup p50",
            "lookup p99",
            "qps",
            "SQL p50",
            "SQL p99",
            "SQL lookup"
        );
        for (label, figures) in [
            ("idle (baseline)".to_owned(), idle),
            (format!("appending {append_eps:.0} events/s"), ingesting),
        ] {
            println!(
                "  {label:<34} {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>10.2}ms {:>9.0} {:>7.2}ms {:>7.2}ms {:>9.2}ms",
                figures.funnel_p50,
                figures.funnel_p99,
                figures.lookup_p50,
                figures.lookup_p99,
                figures.qps,
                figures.sql_p50,
                figures.sql_p99,
                figures.sql_lookup_p99
            );
        }
        println!(
            "  the views reflected position {} at the end (head before appending: {head}, after: {head_after})",
            ingesting.position
        );
        println!(
            "  appended events visible to queries after p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} batches; {} never visible)",
            fresh.p50,
            fresh.p99,
            fresh.max,
            acknowledged.len(),
            fresh.missing
        );
        println!(
            "  computing the views took {:.1} ms for the history, {:.1} ms for the last snapshot",
            history_build.as_secs_f64() * 1e3,
            last_build.as_secs_f64() * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
