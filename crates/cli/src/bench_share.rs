//! `baton bench share`: what sharing a JetStream writer's id index through the server costs and
//! what it saves. The same synthetic history is appended to two fresh streams on one server, by
//! a writer that shares its index and by one that does not (their append rates side by side),
//! then writers with empty directories (as on another machine) start on the first stream, one
//! downloading the shared index and one reading every id, and each appends a batch of new
//! events and retried ids: the time from connecting to that batch's acknowledgement, and how
//! many ids each read from the stream.

use anyhow::Context;
use baton_core::Event;
use baton_log::{AppendOutcome, EventLog, JetStreamConfig, JetStreamLog};
use baton_producer::{History, HistoryConfig};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct ShareArgs {
    /// NATS server to measure on (streams named BENCH_SHARE_* are created and deleted).
    #[arg(long)]
    nats: String,
    /// Events of history appended to each stream.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events between two shares of the index (`--share-ids-every`); a quarter of --events by
    /// default, so a history of any size is shared a few times.
    #[arg(long)]
    every: Option<u64>,
    /// Print one JSON object and nothing else on stdout.
    #[arg(long)]
    json: bool,
}

const BATCH: usize = 5_000;
/// Ids of the history retried by the first batch of a writer that starts.
const RETRIED: usize = 1_000;

fn history() -> History {
    let mut config = HistoryConfig::new(1, u64::MAX);
    config.duplicate_rate = 0.0;
    History::new(config)
}

fn config(
    args: &ShareArgs,
    recent_ids: usize,
    tag: &str,
    ids: &std::path::Path,
    share: Option<u64>,
) -> JetStreamConfig {
    let mut config = JetStreamConfig::new(&args.nats);
    config.stream = format!("BENCH_SHARE_{}_{tag}", std::process::id());
    config.subject_prefix = format!("bench-share-{}-{}", std::process::id(), tag.to_lowercase());
    config.ids_dir = Some(ids.to_owned());
    config.recent_ids = recent_ids.max(1);
    config.share_ids_every = share;
    config
}

/// Appends the history's first `events` events; returns the append rate (generating the events
/// is not timed) and the first [`RETRIED`] events, to retry.
async fn append_history(log: &JetStreamLog, events: u64) -> anyhow::Result<(f64, Vec<Event>)> {
    let mut history = history();
    let mut appended = 0u64;
    let mut appending = Duration::ZERO;
    let mut first = Vec::new();
    while appended < events {
        let count = BATCH.min((events - appended) as usize);
        let batch: Vec<Event> = history.by_ref().take(count).collect();
        if first.len() < RETRIED {
            first.extend(batch.iter().take(RETRIED - first.len()).cloned());
        }
        let started = Instant::now();
        let outcomes = log.append(batch).await?;
        appending += started.elapsed();
        anyhow::ensure!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, AppendOutcome::Appended(_))),
            "an event of the history was not stored: {:?}",
            outcomes
                .iter()
                .find(|outcome| !matches!(outcome, AppendOutcome::Appended(_)))
        );
        appended += count as u64;
    }
    Ok((events as f64 / appending.as_secs_f64().max(1e-9), first))
}

/// A writer with an empty directory: from connecting to the acknowledgement of its first
/// batch (new events and retried ids, each retry checked to come back as a duplicate).
async fn start(
    config: JetStreamConfig,
    retried: &[Event],
    tag: &str,
) -> anyhow::Result<serde_json::Value> {
    // New events of their own (ids made from the tag), after the retries.
    let fresh: Vec<Event> = history()
        .take(100)
        .map(|mut event| {
            event.event_id = baton_core::EventId::from_source_message(
                "bench-share",
                &format!("{tag}-{}", event.event_id),
            );
            event
        })
        .collect();
    let mut batch = retried.to_vec();
    batch.extend(fresh);
    let started = Instant::now();
    let log = JetStreamLog::connect(config).await?;
    let outcomes = log.append(batch).await?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    let duplicates = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, AppendOutcome::Duplicate(_)))
        .count();
    let stored = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, AppendOutcome::Appended(_)))
        .count();
    anyhow::ensure!(
        duplicates == retried.len() && stored == outcomes.len() - retried.len(),
        "{duplicates} duplicates of {} retries, {stored} stored",
        retried.len()
    );
    Ok(serde_json::json!({
        "ready_ms": (ready_ms * 100.0).round() / 100.0,
        "ids_read_from_stream": log.ids_read_from_stream(),
    }))
}

/// `recent_ids`: the global `--recent-ids`, as `serve` would take it.
pub async fn run(args: ShareArgs, recent_ids: usize) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.events > 0, "--events 0: there is no history to share");
    let every = args.every.unwrap_or((args.events / 4).max(1));
    let dirs = tempfile::tempdir().context("temp dir")?;
    let sharing = config(
        &args,
        recent_ids,
        "ON",
        &dirs.path().join("on"),
        Some(every),
    );
    let alone = config(&args, recent_ids, "OFF", &dirs.path().join("off"), None);
    let client = async_nats::connect(&args.nats)
        .await
        .with_context(|| format!("connecting to {}", args.nats))?;
    let js = async_nats::jetstream::new(client);
    let result = measure(&args, every, &sharing, &alone, dirs.path(), &js).await;
    for stream in [
        sharing.stream.clone(),
        format!("{}_IDS", sharing.stream),
        alone.stream.clone(),
    ] {
        let _ = js.delete_stream(&stream).await;
    }
    let row = result?;
    if args.json {
        println!("{row}");
    } else {
        let number = |path: &[&str]| {
            path.iter()
                .fold(&row, |value, key| &value[*key])
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        println!(
            "sharing the id index through the server ({} events, shared every {every})",
            args.events
        );
        println!(
            "  append/s  sharing {:>10.0}  not sharing {:>10.0}  ratio {:.3}",
            number(&["append_eps_sharing"]),
            number(&["append_eps_not_sharing"]),
            number(&["append_ratio"])
        );
        println!(
            "  shared index reaches {:.0} events; {:.1} MB on the side stream beside {:.1} MB of events",
            number(&["shared_cover"]),
            number(&["side_stream_bytes"]) / 1e6,
            number(&["stream_bytes"]) / 1e6
        );
        for (label, key) in [
            ("downloading the shared index", "start_shared"),
            ("reading every id", "start_reading"),
        ] {
            println!(
                "  a writer on another machine, {label:<28} ready in {:>9.1} ms, {:>10.0} ids read",
                number(&[key, "ready_ms"]),
                number(&[key, "ids_read_from_stream"])
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    args: &ShareArgs,
    every: u64,
    sharing: &JetStreamConfig,
    alone: &JetStreamConfig,
    dir: &std::path::Path,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<serde_json::Value> {
    let writer = JetStreamLog::connect(sharing.clone()).await?;
    let (eps_sharing, retried) = append_history(&writer, args.events).await?;
    // The last share may still be uploading: wait until the shared index stays put.
    let mut shared = writer.shared_ids_cover().await?.unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let now = writer.shared_ids_cover().await?.unwrap_or(0);
        if now == shared || Instant::now() > deadline {
            break;
        }
        shared = now;
    }
    drop(writer);
    let other = JetStreamLog::connect(alone.clone()).await?;
    let (eps_alone, _) = append_history(&other, args.events).await?;
    drop(other);

    let bytes_of = |name: String| async move {
        let mut stream = js.get_stream(&name).await.ok()?;
        stream.info().await.ok().map(|info| info.state.bytes)
    };
    let side_bytes = bytes_of(format!("{}_IDS", sharing.stream))
        .await
        .unwrap_or(0);
    let stream_bytes = bytes_of(sharing.stream.clone()).await.unwrap_or(0);

    let mut downloading = sharing.clone();
    downloading.ids_dir = Some(dir.join("on-elsewhere"));
    let start_shared = start(downloading, &retried, "shared").await?;
    let mut reading = sharing.clone();
    reading.ids_dir = Some(dir.join("on-reading"));
    reading.share_ids_every = None;
    let start_reading = start(reading, &retried, "reading").await?;
    Ok(serde_json::json!({
        "events": args.events,
        "every": every,
        "append_eps_sharing": eps_sharing.round(),
        "append_eps_not_sharing": eps_alone.round(),
        "append_ratio": ((eps_sharing / eps_alone) * 1000.0).round() / 1000.0,
        "shared_cover": shared,
        "side_stream_bytes": side_bytes,
        "stream_bytes": stream_bytes,
        "start_shared": start_shared,
        "start_reading": start_reading,
    }))
}
