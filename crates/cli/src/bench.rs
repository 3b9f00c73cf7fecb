//! `baton bench append`: append throughput side by side in one run, on the same server and the
//! same generated events: a raw async-nats JetStream publisher (pipelined, every ack awaited,
//! no idempotency) as the baseline, baton's JetStream append (idempotent), and the embedded log.

use anyhow::Context;
use async_nats::jetstream;
use baton_core::Event;
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use baton_producer::{History, HistoryConfig};
use std::collections::{HashSet, VecDeque};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    /// Events per run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// NATS server for the raw and baton JetStream runs; without it only the embedded log runs.
    #[arg(long, env = "BATON_NATS")]
    nats: Option<String>,
    /// Rounds; each round runs every contender once, interleaved, and the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Events per append call for baton (as `baton ingest` does).
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// Acks in flight, for both the raw publisher and baton.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Print `{"raw_eps":..,"nats_eps":..,"ratio":..,"embedded_eps":..}`.
    #[arg(long)]
    json: bool,
}

pub(crate) fn unique_events(count: usize) -> Vec<Event> {
    let mut seen = HashSet::new();
    History::new(HistoryConfig::new(1, u64::MAX))
        .filter(|event| seen.insert(event.event_id))
        .take(count)
        .collect()
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[allow(clippy::cast_precision_loss)]
pub(crate) fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

async fn raw_publish(
    url: &str,
    tag: &str,
    events: &[Event],
    window: usize,
    with_message_id: bool,
) -> anyhow::Result<f64> {
    let client = async_nats::connect(url).await.context("raw client")?;
    let js = jetstream::context::ContextBuilder::new()
        .max_ack_inflight(window)
        .backpressure_on_inflight(true)
        .build(client);
    let name = format!("BENCH_RAW_{tag}");
    let prefix = format!("benchraw{tag}");
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the raw stream")?;
    // Subjects are fixed per kind, as baton's are; building them is set-up, not publishing.
    let subjects: Vec<async_nats::Subject> = events
        .iter()
        .map(|event| {
            let kind = event.kind();
            format!("{prefix}.{}.{}", kind.family().as_str(), kind.name()).into()
        })
        .collect();
    let started = Instant::now();
    let mut in_flight: VecDeque<jetstream::context::PublishAckFuture> =
        VecDeque::with_capacity(window);
    // A publisher of these events must serialise them too, so encoding is inside the clock,
    // with the same codec baton uses.
    for (event, subject) in events.iter().zip(subjects) {
        let frame = bytes::Bytes::from(baton_core::encode(event)?);
        if in_flight.len() >= window
            && let Some(ack) = in_flight.pop_front()
        {
            ack.await.context("raw ack")?;
        }
        let sent = if with_message_id {
            let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = event.event_id.as_uuid().hyphenated().encode_lower(&mut id);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, &*id);
            js.publish_with_headers(subject, headers, frame).await
        } else {
            js.publish(subject, frame).await
        };
        in_flight.push_back(sent.context("raw publish")?);
    }
    for ack in in_flight {
        ack.await.context("raw ack")?;
    }
    let eps = rate(events.len(), started.elapsed());
    js.delete_stream(&name)
        .await
        .context("deleting the raw stream")?;
    Ok(eps)
}

async fn baton_append(
    log: &impl EventLog,
    events: &[Event],
    batch_size: usize,
) -> anyhow::Result<f64> {
    // Batches are cloned before the clock starts: copying is the benchmark's cost, not baton's.
    let batches: Vec<Vec<Event>> = events
        .chunks(batch_size.max(1))
        .map(<[Event]>::to_vec)
        .collect();
    let started = Instant::now();
    for batch in batches {
        let outcomes = log.append(batch).await?;
        anyhow::ensure!(
            outcomes
                .iter()
                .all(|o| matches!(o, baton_log::AppendOutcome::Appended(_))),
            "benchmark events must all be new"
        );
    }
    Ok(rate(events.len(), started.elapsed()))
}

async fn nats_append(
    url: &str,
    tag: &str,
    events: &[Event],
    args: &AppendArgs,
) -> anyhow::Result<f64> {
    let mut config = JetStreamConfig::new(url);
    config.stream = format!("BENCH_BATON_{tag}");
    config.subject_prefix = format!("benchbaton{tag}");
    config.max_acks_in_flight = args.window;
    let log = JetStreamLog::connect(config.clone()).await?;
    let eps = baton_append(&log, events, args.batch_size).await?;
    // The benchmark stream denies deletes of messages, not of the stream itself.
    let client = async_nats::connect(url).await?;
    jetstream::new(client)
        .delete_stream(&config.stream)
        .await
        .context("deleting the baton benchmark stream")?;
    Ok(eps)
}

async fn embedded_append(events: &[Event], batch_size: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).await?;
    baton_append(&log, events, batch_size).await
}

pub async fn append(args: AppendArgs) -> anyhow::Result<ExitCode> {
    let events = unique_events(args.events);
    let mut raw = Vec::new();
    let mut raw_with_id = Vec::new();
    let mut nats = Vec::new();
    let mut embedded = Vec::new();
    for round in 0..args.rounds.max(1) {
        let tag = format!("{}_{round}", std::process::id());
        if let Some(url) = &args.nats {
            raw.push(raw_publish(url, &tag, &events, args.window, false).await?);
            let tag_with_id = format!("{tag}_id");
            raw_with_id.push(raw_publish(url, &tag_with_id, &events, args.window, true).await?);
            nats.push(nats_append(url, &tag, &events, &args).await?);
        }
        embedded.push(embedded_append(&events, args.batch_size).await?);
        if !args.json {
            eprintln!("round {} of {} done", round + 1, args.rounds.max(1));
        }
    }
    let embedded_eps = median(embedded);
    let (raw_eps, nats_eps, raw_with_id_eps) = if args.nats.is_some() {
        (
            Some(median(raw)),
            Some(median(nats)),
            Some(median(raw_with_id)),
        )
    } else {
        (None, None, None)
    };
    let ratio = raw_eps.zip(nats_eps).map(|(raw, nats)| nats / raw);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "raw_eps": raw_eps.map(f64::round),
                "nats_eps": nats_eps.map(f64::round),
                "ratio": ratio.map(|r| (r * 1000.0).round() / 1000.0),
                "raw_msg_id_eps": raw_with_id_eps.map(f64::round),
                "embedded_eps": embedded_eps.round(),
            })
        );
    } else {
        println!(
            "append, {} events, median of {} rounds",
            args.events,
            args.rounds.max(1)
        );
        match (raw_eps, nats_eps, ratio) {
            (Some(raw), Some(nats), Some(ratio)) => {
                println!("  raw async-nats publisher   {raw:>12.0} events/s  (baseline)");
                if let Some(with_id) = raw_with_id_eps {
                    let share = with_id / raw;
                    println!(
                        "  raw, with Nats-Msg-Id      {with_id:>12.0} events/s  ratio {share:.3}"
                    );
                }
                println!("  baton on JetStream         {nats:>12.0} events/s  ratio {ratio:.3}");
            }
            _ => println!("  (pass --nats URL to compare baton on JetStream with a raw publisher)"),
        }
        println!("  baton embedded (sled)      {embedded_eps:>12.0} events/s");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Events in the log replayed.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also replay the same events from JetStream on this server.
    #[arg(long, env = "BATON_NATS")]
    nats: Option<String>,
    /// Print `{"read_eps":..,"replay_eps":..,"ratio":..,"peak_rss_mb":..}` (and `nats_*` with
    /// `--nats`).
    #[arg(long)]
    json: bool,
}

/// Median read-and-decode and fold rates of `log` over `rounds` rounds.
async fn read_and_fold<L: EventLog>(
    log: &L,
    events: usize,
    rounds: usize,
) -> anyhow::Result<(f64, f64)> {
    use futures::StreamExt;
    let mut read = Vec::new();
    let mut replay = Vec::new();
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let mut stream = log.read(baton_log::Position::ZERO).await?;
        let mut count = 0usize;
        while let Some(record) = stream.next().await {
            record?;
            count += 1;
        }
        anyhow::ensure!(count == events, "read {count} of {events} events");
        read.push(rate(count, started.elapsed()));

        let started = Instant::now();
        let folded = baton_projector::fold_log(
            log,
            baton_core::FunnelDefinition::default_funnel(),
            |_, _| (),
        )
        .await?;
        anyhow::ensure!(
            folded.projection.events() as usize == events,
            "folded every event"
        );
        replay.push(rate(events, started.elapsed()));
    }
    Ok((median(read), median(replay)))
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `baton bench replay`: the raw read-and-decode rate of the embedded log against the rate of
/// folding it into the funnel, side by side on the same log.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).await?;
    let events = unique_events(args.events);
    for batch in events.chunks(10_000) {
        log.append(batch.to_vec()).await?;
    }
    let (read_eps, replay_eps) = read_and_fold(&log, args.events, args.rounds).await?;
    let mut nats = None;
    if let Some(url) = &args.nats {
        let mut config = JetStreamConfig::new(url);
        config.stream = format!("BENCH_REPLAY_{}", std::process::id());
        config.subject_prefix = format!("benchreplay{}", std::process::id());
        let jetstream = JetStreamLog::connect(config.clone()).await?;
        for batch in events.chunks(10_000) {
            jetstream.append(batch.to_vec()).await?;
        }
        let figures = read_and_fold(&jetstream, args.events, args.rounds).await?;
        let client = async_nats::connect(url.as_str()).await?;
        jetstream::new(client)
            .delete_stream(&config.stream)
            .await
            .context("deleting the replay benchmark stream")?;
        nats = Some(figures);
    }
    drop(events);
    let ratio = replay_eps / read_eps;
    let peak = peak_rss_mb();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "read_eps": read_eps.round(),
                "replay_eps": replay_eps.round(),
                "ratio": (ratio * 1000.0).round() / 1000.0,
                "peak_rss_mb": peak.map(f64::round),
                "nats_read_eps": nats.map(|(read, _)| read.round()),
                "nats_replay_eps": nats.map(|(_, replay)| replay.round()),
                "nats_ratio": nats.map(|(read, replay)| (replay / read * 1000.0).round() / 1000.0),
            })
        );
    } else {
        println!(
            "replay, {} events on the embedded log, median of {} rounds",
            args.events,
            args.rounds.max(1)
        );
        println!("  read and decode (baseline)   {read_eps:>12.0} events/s");
        println!("  fold into the funnel         {replay_eps:>12.0} events/s  ratio {ratio:.3}");
        if let Some((read, replay)) = nats {
            println!("  JetStream read and decode    {read:>12.0} events/s  (baseline)");
            let nats_ratio = replay / read;
            println!(
                "  JetStream fold               {replay:>12.0} events/s  ratio {nats_ratio:.3}"
            );
        }
        if let Some(peak) = peak {
            println!("  peak RSS (whole benchmark)   {peak:>12.0} MiB");
        }
    }
    Ok(ExitCode::SUCCESS)
}
