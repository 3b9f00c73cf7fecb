//! `baton bench`: figures printed side by side with a baseline measured in the same run.
//!
//! - `append`: append throughput on the same server and the same generated events: a raw
//!   async-nats JetStream publisher (pipelined, every ack awaited, no idempotency) as the
//!   baseline, the same with `Nats-Msg-Id`, a raw core publisher with `Nats-Msg-Id` that
//!   matches acks itself (as baton does), baton's JetStream append (idempotent), and the
//!   embedded log.
//! - `replay`: on one log, read-and-decode as the baseline against the in-memory fold and the
//!   persistent projector; then the append-to-visible latency of a live projector.

use crate::cpu::{CpuSample, CpuShare};
use anyhow::Context;
use async_nats::jetstream;
use baton_core::Event;
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog, Position};
use baton_producer::{History, HistoryConfig};
use futures::StreamExt;
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::Arc;
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

/// One contender's run: its rate and, where `/proc` can be read, where the CPU went.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phase {
    pub(crate) eps: f64,
    pub(crate) cpu: Option<CpuShare>,
}

impl Phase {
    /// Ends a phase of `events` events that started at `started` with `cpu` read.
    pub(crate) fn end(events: usize, started: Instant, cpu: Option<CpuSample>) -> Phase {
        let eps = rate(events, started.elapsed());
        let cpu = cpu
            .zip(CpuSample::now())
            .map(|(before, after)| before.until(after, events));
        Phase { eps, cpu }
    }
}

/// The median rate of some rounds of one contender, and the median of their CPU shares.
pub(crate) fn median_phase(phases: &[Phase]) -> (f64, Option<CpuShare>) {
    let cpu: Vec<CpuShare> = phases.iter().filter_map(|phase| phase.cpu).collect();
    (
        median(phases.iter().map(|phase| phase.eps).collect()),
        crate::cpu::median_share(&cpu),
    )
}

pub(crate) fn unique_events(count: usize) -> Vec<Event> {
    History::new(HistoryConfig::new(1, u64::MAX))
        .stored()
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

/// Creates a file-storage stream for a raw contender and returns each event's subject, fixed
/// per kind as baton's are (building them is set-up, not publishing).
async fn bench_stream(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
    events: &[Event],
) -> anyhow::Result<Vec<async_nats::Subject>> {
    js.create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the stream {name}"))?;
    Ok(events
        .iter()
        .map(|event| {
            let kind = event.kind();
            format!("{prefix}.{}.{}", kind.family().as_str(), kind.name()).into()
        })
        .collect())
}

async fn raw_publish(
    url: &str,
    tag: &str,
    events: &[Event],
    window: usize,
    with_message_id: bool,
) -> anyhow::Result<Phase> {
    let client = async_nats::connect(url).await.context("raw client")?;
    let js = jetstream::context::ContextBuilder::new()
        .max_ack_inflight(window)
        .backpressure_on_inflight(true)
        .build(client);
    let name = format!("BENCH_RAW_{tag}");
    let subjects = bench_stream(&js, &name, &format!("benchraw{tag}"), events).await?;
    let (started, cpu) = (Instant::now(), CpuSample::now());
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
    let phase = Phase::end(events.len(), started, cpu);
    js.delete_stream(&name)
        .await
        .context("deleting the raw stream")?;
    Ok(phase)
}

/// A raw publisher with `Nats-Msg-Id` that publishes with core NATS and matches the acks
/// itself on one subscription, as baton's JetStream log does: what the server's
/// de-duplication costs without async-nats' per-message ack futures. No idempotency index, no
/// batches, no retries; every ack is awaited and checked.
async fn raw_core_publish(
    url: &str,
    tag: &str,
    events: &[Event],
    window: usize,
) -> anyhow::Result<Phase> {
    #[derive(serde::Deserialize)]
    struct Ack {
        #[serde(default)]
        seq: u64,
        error: Option<serde_json::Value>,
    }
    let client = async_nats::connect(url).await.context("raw core client")?;
    let js = jetstream::new(client.clone());
    let name = format!("BENCH_CORE_{tag}");
    let subjects = bench_stream(&js, &name, &format!("benchcore{tag}"), events).await?;
    let inbox = client.new_inbox();
    let mut acks = client
        .subscribe(format!("{inbox}.*"))
        .await
        .context("subscribing to acks")?;
    let mut await_ack = async || -> anyhow::Result<()> {
        let message = futures::StreamExt::next(&mut acks)
            .await
            .context("the ack subscription ended")?;
        let ack: Ack = serde_json::from_slice(&message.payload).context("raw core ack")?;
        anyhow::ensure!(
            ack.error.is_none() && ack.seq > 0,
            "raw core ack: {:?}",
            ack.error
        );
        Ok(())
    };
    let (started, cpu) = (Instant::now(), CpuSample::now());
    let mut unanswered = 0;
    for (token, (event, subject)) in events.iter().zip(subjects).enumerate() {
        let frame = bytes::Bytes::from(baton_core::encode(event)?);
        if unanswered >= window {
            await_ack().await?;
            unanswered -= 1;
        }
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = event.event_id.as_uuid().hyphenated().encode_lower(&mut id);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, &*id);
        client
            .publish_with_reply_and_headers(subject, format!("{inbox}.{token}"), headers, frame)
            .await
            .context("raw core publish")?;
        unanswered += 1;
    }
    for _ in 0..unanswered {
        await_ack().await?;
    }
    let phase = Phase::end(events.len(), started, cpu);
    js.delete_stream(&name)
        .await
        .context("deleting the raw core stream")?;
    Ok(phase)
}

pub(crate) async fn baton_append(
    log: &impl EventLog,
    events: &[Event],
    batch_size: usize,
) -> anyhow::Result<Phase> {
    // Batches are cloned before the clock starts: copying is the benchmark's cost, not baton's.
    let batches: Vec<Vec<Event>> = events
        .chunks(batch_size.max(1))
        .map(<[Event]>::to_vec)
        .collect();
    let (started, cpu) = (Instant::now(), CpuSample::now());
    // Two appends in flight, as `baton ingest` keeps them: the next batch is encoded while the
    // one before it is written.
    let mut appends = std::pin::pin!(
        futures::stream::iter(batches)
            .map(|batch| log.append(batch))
            .buffered(2)
    );
    while let Some(outcomes) = appends.next().await {
        let outcomes = outcomes?;
        anyhow::ensure!(
            outcomes
                .iter()
                .all(|o| matches!(o, baton_log::AppendOutcome::Appended(_))),
            "benchmark events must all be new"
        );
    }
    Ok(Phase::end(events.len(), started, cpu))
}

async fn nats_append(
    url: &str,
    tag: &str,
    events: &[Event],
    args: &AppendArgs,
) -> anyhow::Result<Phase> {
    let mut config = JetStreamConfig::new(url);
    config.stream = format!("BENCH_BATON_{tag}");
    config.subject_prefix = format!("benchbaton{tag}");
    config.max_acks_in_flight = args.window;
    // As `baton serve --nats` runs it: the writer's id index on disk.
    let ids = tempfile::tempdir()?;
    config.ids_dir = Some(ids.path().to_owned());
    let log = JetStreamLog::connect(config.clone()).await?;
    let phase = baton_append(&log, events, args.batch_size).await?;
    // The benchmark stream denies deletes of messages, not of the stream itself.
    let client = async_nats::connect(url).await?;
    jetstream::new(client)
        .delete_stream(&config.stream)
        .await
        .context("deleting the baton benchmark stream")?;
    Ok(phase)
}

async fn embedded_append(events: &[Event], batch_size: usize) -> anyhow::Result<Phase> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).await?;
    baton_append(&log, events, batch_size).await
}

pub async fn append(args: AppendArgs) -> anyhow::Result<ExitCode> {
    let events = unique_events(args.events);
    let mut raw = Vec::new();
    let mut raw_with_id = Vec::new();
    let mut raw_core = Vec::new();
    let mut nats = Vec::new();
    let mut embedded = Vec::new();
    for round in 0..args.rounds.max(1) {
        let tag = format!("{}_{round}", std::process::id());
        if let Some(url) = &args.nats {
            raw.push(raw_publish(url, &tag, &events, args.window, false).await?);
            let tag_with_id = format!("{tag}_id");
            raw_with_id.push(raw_publish(url, &tag_with_id, &events, args.window, true).await?);
            raw_core.push(raw_core_publish(url, &tag, &events, args.window).await?);
            nats.push(nats_append(url, &tag, &events, &args).await?);
        }
        embedded.push(embedded_append(&events, args.batch_size).await?);
        if !args.json {
            eprintln!("round {} of {} done", round + 1, args.rounds.max(1));
        }
    }
    let summary = |phases: &[Phase]| (!phases.is_empty()).then(|| median_phase(phases));
    let (raw, raw_with_id, raw_core, nats) = (
        summary(&raw),
        summary(&raw_with_id),
        summary(&raw_core),
        summary(&nats),
    );
    let embedded = summary(&embedded).expect("invariant: at least one round");
    let ratio = raw.zip(nats).map(|((raw, _), (nats, _))| nats / raw);
    if args.json {
        let cpu = |summary: Option<(f64, Option<CpuShare>)>| {
            summary.and_then(|(_, cpu)| cpu).map(|cpu| cpu.json())
        };
        let eps = |summary: Option<(f64, Option<CpuShare>)>| summary.map(|(eps, _)| eps.round());
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "raw_eps": eps(raw),
                "nats_eps": eps(nats),
                "ratio": ratio.map(thousandths),
                "raw_msg_id_eps": eps(raw_with_id),
                "raw_core_msg_id_eps": eps(raw_core),
                "embedded_eps": embedded.0.round(),
                "cpu": {
                    "raw": cpu(raw),
                    "raw_msg_id": cpu(raw_with_id),
                    "raw_core_msg_id": cpu(raw_core),
                    "nats": cpu(nats),
                    "embedded": cpu(Some(embedded)),
                },
            })
        );
    } else {
        println!(
            "append, {} events, median of {} rounds; CPU per event: this process / the rest \
             of the machine (the server), and the cores' idle share",
            args.events,
            args.rounds.max(1)
        );
        let line = |name: &str, (eps, cpu): (f64, Option<CpuShare>), note: String| {
            let cpu = cpu.map_or_else(String::new, |cpu| {
                format!(
                    "  cpu {:>5.2} / {:>5.2} us, idle {:>3.0}%",
                    cpu.own_us,
                    cpu.others_us,
                    cpu.idle * 100.0
                )
            });
            println!("  {name:<26} {eps:>12.0} events/s  {note:<12}{cpu}");
        };
        match (raw, ratio) {
            (Some(raw_summary), Some(ratio)) => {
                let base = raw_summary.0;
                line("raw async-nats publisher", raw_summary, "(baseline)".into());
                for (name, summary) in [
                    ("raw, with Nats-Msg-Id", raw_with_id),
                    ("raw core, Nats-Msg-Id", raw_core),
                ] {
                    if let Some(summary) = summary {
                        line(name, summary, format!("ratio {:.3}", summary.0 / base));
                    }
                }
                if let Some(nats) = nats {
                    line("baton on JetStream", nats, format!("ratio {ratio:.3}"));
                }
            }
            _ => println!("  (pass --nats URL to compare baton on JetStream with a raw publisher)"),
        }
        line("baton embedded", embedded, String::new());
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
    /// Events per second appended while the append-to-visible latency is measured.
    #[arg(long, default_value_t = 5_000)]
    visible_rate: u32,
    /// Seconds of appending while the append-to-visible latency is measured; 0 skips it.
    #[arg(long, default_value_t = 5.0)]
    visible_seconds: f64,
    /// Print `{"read_eps":..,"replay_eps":..,"ratio":..,"persist_eps":..,"peak_rss_mb":..,
    /// "visible_p50_ms":..,"visible_p99_ms":..}` (and `nats_*` with `--nats`).
    #[arg(long)]
    json: bool,
}

/// Median rates of one log over the rounds, in events/s.
#[derive(Clone, Copy, Debug)]
struct ReplayFigures {
    /// Every record read and decoded, nothing else: the baseline.
    read: f64,
    /// Folded into the funnel in memory (`fold_log`).
    fold: f64,
    /// Replayed by the persistent projector into a fresh view: state and checkpoint in sled.
    persist: f64,
    /// A backtest: a candidate definition folded as `baton replay` folds it and compared:
    /// the comparison shown.
    backtest: f64,
    /// The same backtest with its candidate then kept whole as a view, as `baton replay`
    /// keeps it.
    backtest_kept: f64,
}

/// Median read-and-decode, fold and persistent-replay rates of `log` over `rounds` rounds.
/// Each round runs the three in turn, so a noisy moment on the machine hits one round of
/// each rather than all rounds of one.
async fn replay_figures<L: EventLog>(
    log: &L,
    events: usize,
    rounds: usize,
) -> anyhow::Result<ReplayFigures> {
    use futures::StreamExt;
    let mut read = Vec::new();
    let mut fold = Vec::new();
    let mut persist = Vec::new();
    let mut backtests = Vec::new();
    let mut kept = Vec::new();
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
        fold.push(rate(events, started.elapsed()));

        persist.push(persistent_replay(log, events).await?);
        let (shown, stored) = backtest(log, events, &folded.projection).await?;
        backtests.push(shown);
        kept.push(stored);
        drop(folded);
    }
    Ok(ReplayFigures {
        read: median(read),
        fold: median(fold),
        persist: median(persist),
        backtest: median(backtests),
        backtest_kept: median(kept),
    })
}

/// Creates an empty view under the default definition in a new view store at `dir`.
async fn fresh_view(dir: &std::path::Path) -> anyhow::Result<baton_projector::View> {
    fresh_view_of(dir, baton_core::DEFAULT_FUNNEL_TOML).await
}

/// Creates an empty view under the definition `toml` in a new view store at `dir`.
async fn fresh_view_of(
    dir: &std::path::Path,
    toml: &'static str,
) -> anyhow::Result<baton_projector::View> {
    let dir = dir.to_owned();
    let definition = baton_core::FunnelDefinition::parse("bench.toml", toml)
        .map_err(|errors| anyhow::anyhow!("the benchmark's definition: {errors}"))?;
    // sled writes the view's metadata and flushes it: off the runtime, as the projector does.
    tokio::task::spawn_blocking(move || {
        let store = baton_projector::ViewStore::open(&dir)?;
        let view = store.create_view("bench", &definition, toml, "bench.toml", None)?;
        Ok::<_, baton_projector::StoreError>(view)
    })
    .await
    .context("creating the benchmark view")?
    .context("creating the benchmark view")
}

/// The candidate a backtest tries: the default definition with another daily cap.
fn candidate_toml() -> &'static str {
    static CANDIDATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CANDIDATE.get_or_init(|| {
        baton_core::DEFAULT_FUNNEL_TOML.replacen("daily_cap = 40", "daily_cap = 30", 1)
    })
}

/// A backtest as `baton replay --funnel FILE` runs one: the candidate folded in memory,
/// compared with the live definition's fold (`live`, already in memory; the command loads the
/// live view instead, which costs more), then kept whole as a candidate view in a fresh view
/// store. Its rates in events of the log per second: to the comparison, and to the view kept.
async fn backtest<L: EventLog>(
    log: &L,
    events: usize,
    live: &baton_core::FunnelProjection,
) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let store = baton_projector::ViewStore::open(dir.path())?;
    let definition = baton_core::FunnelDefinition::parse("bench.toml", candidate_toml())
        .map_err(|errors| anyhow::anyhow!("the benchmark's definition: {errors}"))?;
    let started = Instant::now();
    let mut folded = baton_projector::fold_log(log, definition, |_, _| ())
        .await
        .context("folding the backtest's candidate")?;
    anyhow::ensure!(
        folded.projection.events() as usize == events,
        "folded {} of {events} events",
        folded.projection.events()
    );
    let comparison = baton_core::compare(live, &folded.projection);
    anyhow::ensure!(
        comparison.live.definition_hash != comparison.candidate.definition_hash,
        "the backtest's candidate is the live definition"
    );
    let shown = rate(events, started.elapsed());
    tokio::task::spawn_blocking(move || {
        let bound = baton_projector::Bound::Position(folded.position);
        store.keep_view(
            "candidate",
            candidate_toml(),
            "bench.toml",
            bound,
            &mut folded.projection,
            folded.position,
            |_, _| std::ops::ControlFlow::Continue(()),
        )
    })
    .await
    .context("keeping the backtest's candidate")?
    .context("keeping the backtest's candidate")?;
    Ok((shown, rate(events, started.elapsed())))
}

/// The rate of replaying the whole log through the persistent projector into a fresh view
/// (as `baton project` or `baton replay` build one): folded, state and checkpoint committed
/// to sled every `commit_every` events and at the end, then flushed.
async fn persistent_replay<L: EventLog>(log: &L, events: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let view = fresh_view(dir.path()).await?;
    let started = Instant::now();
    build_view(log, view, events)
        .await
        .context("replaying into a persistent view")?;
    Ok(rate(events, started.elapsed()))
}

/// Replays the whole log of `events` events into `view` through the persistent projector.
async fn build_view<L: EventLog>(
    log: &L,
    view: baton_projector::View,
    events: usize,
) -> anyhow::Result<baton_core::FunnelProjection> {
    let options = baton_projector::RunOptions {
        until: baton_projector::Until::CaughtUp,
        ..baton_projector::RunOptions::default()
    };
    let outcome = baton_projector::run(
        log,
        view,
        options,
        Arc::new(baton_projector::Status::default()),
        |_: &_, _| {},
        std::future::pending(),
    )
    .await?;
    anyhow::ensure!(
        outcome.reached && outcome.projection.events() as usize == events,
        "folded {} of {events} events",
        outcome.projection.events()
    );
    Ok(outcome.projection)
}

/// How long appended events take to show in the live view.
#[derive(Clone, Copy, Debug)]
struct Visibility {
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// The append rate achieved, in events/s.
    append_eps: f64,
    batches: usize,
}

/// The interval between two appends while measuring visibility.
const VISIBLE_BATCH_EVERY: Duration = Duration::from_millis(10);

/// The `percent`th percentile of sorted `values`, nearest-rank: the smallest value with at
/// least `percent`% of the values at or below it.
fn nearest_rank(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Append-to-visible latency on `log` with a live projector following it: `events` appended
/// at `events_per_second`, a small batch every [`VISIBLE_BATCH_EVERY`], each batch timed from
/// just before its append until the projector's commit callback reports a position at or
/// past the batch's last one (the moment the query side can publish it). The projector first
/// catches up with what is already on the log; that is not timed.
async fn visible_latency<L: EventLog + Clone + 'static>(
    log: &L,
    events: Vec<Event>,
    events_per_second: u32,
) -> anyhow::Result<Visibility> {
    let total = events.len();
    anyhow::ensure!(
        total > 0 && events_per_second > 0,
        "nothing to append for the visibility figures"
    );
    let dir = tempfile::tempdir().context("temp dir")?;
    let view = fresh_view(dir.path()).await?;
    // The callback runs on the fold thread: it only stamps the time and hands it over.
    let (commits, mut committed) = tokio::sync::mpsc::unbounded_channel::<(Position, Instant)>();
    let on_commit = move |_: &baton_core::FunnelProjection, position: Position| {
        let _ = commits.send((position, Instant::now()));
    };
    let status = Arc::new(baton_projector::Status::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projector = {
        let log = log.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let options = baton_projector::RunOptions {
                until: baton_projector::Until::Forever,
                ..baton_projector::RunOptions::default()
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            baton_projector::run(&log, view, options, status, on_commit, shutdown).await
        })
    };

    // Catch up with the log as it is before timing anything: until a commit at the head was
    // published (the checkpoint is stored before the refresh that publishes it, and the first
    // refresh after a long catch-up is the slow one).
    let head = log.stat().await?.head;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut published = Position::ZERO;
    loop {
        while let Ok((position, _)) = committed.try_recv() {
            published = published.max(position);
        }
        if published >= head {
            break;
        }
        anyhow::ensure!(
            !projector.is_finished(),
            "the live projector stopped while catching up"
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the live projector did not catch up with position {head} in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Append at a steady rate: at each tick, whatever is due by then, so the average rate
    // holds even when a tick comes late.
    let mut ticker = tokio::time::interval(VISIBLE_BATCH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = events.into_iter();
    let mut appended = 0usize;
    let mut batches: Vec<(Instant, Position)> = Vec::new();
    let started = Instant::now();
    while appended < total {
        ticker.tick().await;
        let due = (f64::from(events_per_second) * started.elapsed().as_secs_f64()) as usize;
        let count = due.min(total).saturating_sub(appended);
        if count == 0 {
            continue;
        }
        let batch: Vec<Event> = pending.by_ref().take(count).collect();
        let before = Instant::now();
        let outcomes = log.append(batch).await?;
        let mut last = None;
        for outcome in &outcomes {
            match outcome {
                baton_log::AppendOutcome::Appended(position) => last = Some(*position),
                other => anyhow::bail!("benchmark events must all be new, got {other:?}"),
            }
        }
        batches.push((
            before,
            last.expect("invariant: a batch holds at least one event"),
        ));
        appended += count;
    }
    let append_eps = rate(appended, started.elapsed());

    // Wait for the last batch to be visible, then stop the projector.
    let last = batches.last().map_or(head, |(_, position)| *position);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.last().is_none_or(|(position, _)| *position < last) {
        match tokio::time::timeout_at(deadline, committed.recv()).await {
            Ok(Some(commit)) => seen.push(commit),
            Ok(None) => anyhow::bail!("the live projector stopped before position {last}"),
            Err(_) => anyhow::bail!("position {last} was not visible within a minute"),
        }
    }
    let _ = stop.send(());
    projector
        .await
        .context("the live projector panicked")?
        .context("the live projector failed")?;

    // Commits come in position order: match each batch with the first commit covering it.
    let mut latencies = Vec::with_capacity(batches.len());
    let mut commits = seen.iter().peekable();
    for (before, position) in &batches {
        while commits.next_if(|(at, _)| at < position).is_some() {}
        let (_, visible) = commits
            .peek()
            .expect("invariant: the last commit covers the last batch");
        latencies.push(visible.saturating_duration_since(*before));
    }
    latencies.sort();
    Ok(Visibility {
        p50: nearest_rank(&latencies, 50),
        p99: nearest_rank(&latencies, 99),
        max: latencies.last().copied().unwrap_or_default(),
        append_eps,
        batches: batches.len(),
    })
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn milliseconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn thousandths(ratio: f64) -> f64 {
    (ratio * 1000.0).round() / 1000.0
}

/// `baton bench replay`: on one log, the raw read-and-decode rate against the rate of folding
/// it into the funnel in memory and of replaying it through the persistent projector; then
/// the append-to-visible latency of a live projector following that log. The same on
/// JetStream with `--nats`.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let visible_events = if args.visible_seconds > 0.0 {
        (f64::from(args.visible_rate) * args.visible_seconds) as usize
    } else {
        0
    };
    // One generated history: the first `events` fill the log, the rest are appended live.
    let mut events = unique_events(args.events + visible_events);
    let live_events = events.split_off(args.events);

    let dir = tempfile::tempdir().context("temp dir")?;
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path())).await?;
    for batch in events.chunks(10_000) {
        log.append(batch.to_vec()).await?;
    }
    let embedded = replay_figures(&log, args.events, args.rounds).await?;
    let visible = match visible_events {
        0 => None,
        _ => Some(visible_latency(&log, live_events.clone(), args.visible_rate).await?),
    };
    drop(log);

    let mut nats = None;
    let mut nats_visible = None;
    if let Some(url) = &args.nats {
        let mut config = JetStreamConfig::new(url);
        config.stream = format!("BENCH_REPLAY_{}", std::process::id());
        config.subject_prefix = format!("benchreplay{}", std::process::id());
        let jetstream = JetStreamLog::connect(config.clone()).await?;
        for batch in events.chunks(10_000) {
            jetstream.append(batch.to_vec()).await?;
        }
        nats = Some(replay_figures(&jetstream, args.events, args.rounds).await?);
        if visible_events > 0 {
            nats_visible =
                Some(visible_latency(&jetstream, live_events.clone(), args.visible_rate).await?);
        }
        let client = async_nats::connect(url.as_str()).await?;
        jetstream::new(client)
            .delete_stream(&config.stream)
            .await
            .context("deleting the replay benchmark stream")?;
    }
    drop(events);
    drop(live_events);
    let peak = peak_rss_mb();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "read_eps": embedded.read.round(),
                "replay_eps": embedded.fold.round(),
                "ratio": thousandths(embedded.fold / embedded.read),
                "persist_eps": embedded.persist.round(),
                "persist_ratio": thousandths(embedded.persist / embedded.read),
                "backtest_eps": embedded.backtest.round(),
                "backtest_ratio": thousandths(embedded.backtest / embedded.read),
                "backtest_kept_eps": embedded.backtest_kept.round(),
                "backtest_kept_ratio": thousandths(embedded.backtest_kept / embedded.read),
                "peak_rss_mb": peak.map(f64::round),
                "visible_p50_ms": visible.map(|v| milliseconds(v.p50)),
                "visible_p99_ms": visible.map(|v| milliseconds(v.p99)),
                "visible_max_ms": visible.map(|v| milliseconds(v.max)),
                "visible_append_eps": visible.map(|v| v.append_eps.round()),
                "visible_batches": visible.map(|v| v.batches),
                "nats_read_eps": nats.map(|n| n.read.round()),
                "nats_replay_eps": nats.map(|n| n.fold.round()),
                "nats_ratio": nats.map(|n| thousandths(n.fold / n.read)),
                "nats_persist_eps": nats.map(|n| n.persist.round()),
                "nats_persist_ratio": nats.map(|n| thousandths(n.persist / n.read)),
                "nats_backtest_eps": nats.map(|n| n.backtest.round()),
                "nats_visible_p50_ms": nats_visible.map(|v| milliseconds(v.p50)),
                "nats_visible_p99_ms": nats_visible.map(|v| milliseconds(v.p99)),
                "nats_visible_max_ms": nats_visible.map(|v| milliseconds(v.max)),
                "nats_visible_append_eps": nats_visible.map(|v| v.append_eps.round()),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "replay, {} events, median of {} rounds",
        args.events,
        args.rounds.max(1)
    );
    print_replay("embedded", embedded);
    if let Some(figures) = nats {
        print_replay("JetStream", figures);
    }
    match visible {
        Some(_) => println!(
            "append-to-visible, {} events/s asked, a batch every {} ms for {} s, live projector \
             following the log above",
            args.visible_rate,
            VISIBLE_BATCH_EVERY.as_millis(),
            args.visible_seconds
        ),
        None => println!("append-to-visible: skipped (--visible-seconds 0)"),
    }
    if let Some(visible) = visible {
        print_visibility("embedded", visible);
    }
    if let Some(visible) = nats_visible {
        print_visibility("JetStream", visible);
    }
    if let Some(peak) = peak {
        println!("peak RSS (whole benchmark)  {peak:>12.0} MiB");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_replay(backend: &str, figures: ReplayFigures) {
    let fold_ratio = figures.fold / figures.read;
    let persist_ratio = figures.persist / figures.read;
    println!("  {backend}");
    println!(
        "    read and decode (baseline)   {:>12.0} events/s",
        figures.read
    );
    println!(
        "    fold into the funnel         {:>12.0} events/s  ratio {fold_ratio:.3}",
        figures.fold
    );
    println!(
        "    persistent projector (sled)  {:>12.0} events/s  ratio {persist_ratio:.3}",
        figures.persist
    );
    println!(
        "    backtest (fold + compare)    {:>12.0} events/s  ratio {:.3}",
        figures.backtest,
        figures.backtest / figures.read
    );
    println!(
        "    backtest kept as a view      {:>12.0} events/s  ratio {:.3}",
        figures.backtest_kept,
        figures.backtest_kept / figures.read
    );
}

fn print_visibility(backend: &str, visible: Visibility) {
    println!(
        "  {backend:<10} appended {:>8.0} events/s in {} batches; visible p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        visible.append_eps,
        visible.batches,
        milliseconds(visible.p50),
        milliseconds(visible.p99),
        milliseconds(visible.max)
    );
}
