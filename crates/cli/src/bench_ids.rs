//! `baton bench ids`: what idempotency costs as the history grows. A synthetic history is
//! appended straight into a fresh embedded log (no file in between); at each checkpoint the
//! id index's memory, the time from opening the log to its first accepted append, and the rate
//! of appends with a share of retried ids (mostly recent, some from anywhere in the history)
//! are measured, and every retried id is checked to come back as a duplicate at its position.
//! With `--baseline BIN`, `baton ingest` of the same kind of tail by this build and by BIN
//! alternate on the log, each as its own process with its peak memory.

use anyhow::Context;
use baton_core::{Event, EventId};
use baton_log::{AppendOutcome, EmbeddedConfig, EmbeddedLog, EventLog};
use baton_producer::{History, HistoryConfig};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct IdsArgs {
    /// Events of history appended to the log.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Where to measure, as event counts; by default every power of ten from a million up to
    /// --events, and --events itself.
    #[arg(long, value_delimiter = ',')]
    checkpoints: Vec<u64>,
    /// Events appended at each checkpoint (and by each run of the comparison) with retried ids.
    #[arg(long, default_value_t = 500_000)]
    tail: usize,
    /// Share of a tail's events that repeat an id already on the log.
    #[arg(long, default_value_t = 0.01)]
    retried: f64,
    /// Of the retried ids, the share taken from anywhere in the history (months old); the rest
    /// repeat one of the last 100,000 events.
    #[arg(long, default_value_t = 0.1)]
    old_share: f64,
    /// An earlier build of baton: `baton ingest` of a tail by it and by this build alternate.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Rounds of the comparison (after one round each to warm up, not counted).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Directory for the log (a temporary one by default); it is left there when given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Nurture touches per person, as a multiple of the default (as `baton gen --engagement`).
    #[arg(long, default_value_t = 7)]
    engagement: u32,
    /// Print one JSON object and nothing else on stdout.
    #[arg(long)]
    json: bool,
}

const BATCH: usize = 5_000;
const RECENT: usize = 100_000;
/// One id in this many is kept as a candidate for an old retry.
const SAMPLE_EVERY: u64 = 997;

/// Ids already on the log, to retry: the last [`RECENT`] and a sample of the whole history.
struct Past {
    recent: VecDeque<(u128, u64)>,
    sample: Vec<(u128, u64)>,
}

impl Past {
    fn record(&mut self, id: u128, position: u64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((id, position));
        if position.is_multiple_of(SAMPLE_EVERY) {
            self.sample.push((id, position));
        }
    }
}

/// A small deterministic generator for which events retry and which id they repeat.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> Option<&'a T> {
        (!from.is_empty()).then(|| &from[(self.next() % from.len() as u64) as usize])
    }
}

/// A tail: new events from the history, some given an id already on the log; beside each,
/// the position its id already has.
fn tail(
    history: &mut History,
    past: &Past,
    dice: &mut Dice,
    args: &IdsArgs,
) -> (Vec<Event>, Vec<Option<u64>>) {
    let recent: Vec<(u128, u64)> = past.recent.iter().copied().collect();
    let mut events = Vec::with_capacity(args.tail);
    let mut expected = Vec::with_capacity(args.tail);
    for mut event in history.by_ref().take(args.tail) {
        let mut repeat = None;
        if dice.chance(args.retried) {
            let from = if dice.chance(args.old_share) {
                &past.sample
            } else {
                &recent
            };
            if let Some((id, position)) = dice.pick(from) {
                event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(*id));
                repeat = Some(*position);
            }
        }
        events.push(event);
        expected.push(repeat);
    }
    (events, expected)
}

/// Appends `events` in batches, recording new ids in `past`; checks that each event with an
/// expected position came back as a duplicate there and every other one was stored.
async fn append_checked(
    log: &EmbeddedLog,
    events: Vec<Event>,
    expected: &[Option<u64>],
    past: &mut Past,
) -> anyhow::Result<u64> {
    let mut duplicates = 0;
    let mut at = 0;
    let mut events = events.into_iter();
    loop {
        let batch: Vec<Event> = events.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            return Ok(duplicates);
        }
        let ids: Vec<u128> = batch.iter().map(|e| e.event_id.as_u128()).collect();
        let outcomes = log.append(batch).await?;
        for (offset, (outcome, id)) in outcomes.iter().zip(ids).enumerate() {
            let index = at + offset;
            match (outcome, expected.get(index).copied().flatten()) {
                (AppendOutcome::Appended(position), None) => past.record(id, position.get()),
                (AppendOutcome::Duplicate(position), Some(first)) if position.get() == first => {
                    duplicates += 1;
                }
                (outcome, expected) => anyhow::bail!(
                    "event {index} of the tail: {outcome:?}, expected {}",
                    expected.map_or("a new position".to_owned(), |p| format!(
                        "a duplicate of position {p}"
                    ))
                ),
            }
        }
        at += outcomes.len();
    }
}

fn open_config(path: &Path) -> EmbeddedConfig {
    EmbeddedConfig::new(path)
}

/// This process's resident memory now, in MiB.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

pub async fn run(args: IdsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.events > 0,
        "--events 0: there is no history to measure"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.retried) && (0.0..=1.0).contains(&args.old_share),
        "--retried and --old-share are shares between 0 and 1"
    );
    let mut checkpoints = args.checkpoints.clone();
    if checkpoints.is_empty() {
        let mut at = 1_000_000;
        while at < args.events {
            checkpoints.push(at);
            at *= 10;
        }
    }
    checkpoints.push(args.events);
    checkpoints.retain(|at| *at > 0 && *at <= args.events);
    checkpoints.sort_unstable();
    checkpoints.dedup();

    let temporary = tempfile::tempdir().context("temp dir")?;
    let dir = args.dir.clone().unwrap_or_else(|| temporary.path().into());
    let path = dir.join("log");
    anyhow::ensure!(
        !path.exists(),
        "{} already holds a log: the benchmark starts from an empty one",
        path.display()
    );
    let mut config = HistoryConfig::new(1, u64::MAX);
    config.engagement = args.engagement.max(1);
    // The only repeats are the benchmark's own, so each can be checked.
    config.duplicate_rate = 0.0;
    let mut history = History::new(config);
    let mut past = Past {
        recent: VecDeque::with_capacity(RECENT),
        sample: Vec::new(),
    };
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let mut log = EmbeddedLog::open(open_config(&path)).await?;
    let mut appended: u64 = 0;
    let mut rows = Vec::new();
    for checkpoint in &checkpoints {
        // Only the appends are timed, not generating the events.
        let mut appending = std::time::Duration::ZERO;
        let from = appended;
        while appended < *checkpoint {
            let count = BATCH.min((*checkpoint - appended) as usize);
            let batch: Vec<Event> = history.by_ref().take(count).collect();
            anyhow::ensure!(batch.len() == count, "the history ran out");
            let expected = vec![None; batch.len()];
            let started = Instant::now();
            append_checked(&log, batch, &expected, &mut past).await?;
            appending += started.elapsed();
            appended += count as u64;
        }
        let append_eps = (appended - from) as f64 / appending.as_secs_f64().max(1e-9);
        let before = log.id_index_memory().unwrap_or_default();
        let rss = rss_mb();
        let (events, expected) = tail(&mut history, &past, &mut dice, &args);
        let retries = expected.iter().flatten().count() as u64;
        let old = expected
            .iter()
            .flatten()
            .filter(|p| **p + RECENT as u64 <= appended)
            .count();
        let count = events.len() as u64;
        let started = Instant::now();
        let duplicates = append_checked(&log, events, &expected, &mut past).await?;
        let tail_eps = count as f64 / started.elapsed().as_secs_f64().max(1e-9);
        appended += count - duplicates;
        anyhow::ensure!(
            duplicates == retries,
            "{duplicates} duplicates of {retries} retries"
        );
        // Start-up: from opening the log to its first accepted append.
        drop(log);
        let first: Vec<Event> = history.by_ref().take(1).collect();
        let started = Instant::now();
        log = EmbeddedLog::open(open_config(&path)).await?;
        let open_ms = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = log.append(first).await?;
        let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            matches!(outcome.first(), Some(AppendOutcome::Appended(_))),
            "the first append after reopening: {outcome:?}"
        );
        appended += 1;
        let after = log.id_index_memory().unwrap_or_default();
        let row = serde_json::json!({
            "events": checkpoint,
            "append_eps": append_eps.round(),
            "filter_bytes": before.filter_bytes,
            "filter_bytes_per_event": round2(before.filter_bytes as f64 / *checkpoint as f64),
            "recent_bytes": before.recent_bytes,
            "runs": before.runs,
            "rss_mb": rss.map(f64::round),
            "tail": count,
            "retried": retries,
            "retried_old": old,
            "tail_eps": tail_eps.round(),
            "open_ms": round2(open_ms),
            "ready_ms": round2(ready_ms),
            "filter_bytes_after_reopen": after.filter_bytes,
        });
        if !args.json {
            eprintln!("{row}");
        }
        rows.push(row);
    }
    drop(log);

    let comparison = match &args.baseline {
        Some(baseline) => Some(tokio::task::block_in_place(|| {
            compare(&args, &path, baseline, &mut history, &past, &mut dice)
        })?),
        None => None,
    };
    let disk = disk_use(&path.join("ids")).unwrap_or(0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "checkpoints": rows,
                "index_disk_bytes": disk,
                "comparison": comparison,
            })
        );
    } else {
        println!("id index as the history grows (embedded log, generated straight into it)");
        println!(
            "  {:>12} {:>11} {:>10} {:>8} {:>5} {:>8} {:>11} {:>8} {:>10}",
            "events", "append/s", "filters", "B/event", "runs", "RSS", "tail/s", "retried", "ready"
        );
        for row in &rows {
            let number = |key: &str| row[key].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {:>12} {:>11.0} {:>8.2}MB {:>8.2} {:>5} {:>6.0}MB {:>11.0} {:>8} {:>8.1}ms",
                number("events"),
                number("append_eps"),
                number("filter_bytes") / 1e6,
                number("filter_bytes_per_event"),
                number("runs"),
                number("rss_mb"),
                number("tail_eps"),
                number("retried"),
                number("ready_ms"),
            );
        }
        println!("  index on disk: {:.1} MB", disk as f64 / 1e6);
        if let Some(comparison) = comparison {
            println!(
                "baton ingest of a {}-event tail ({}% retried), this build vs baseline, medians:",
                args.tail,
                args.retried * 100.0
            );
            for side in ["this", "baseline"] {
                let side_row = &comparison[side];
                println!(
                    "  {side:<9} {:>8.2} s  {:>10.0} events/s  peak {:.0} MB",
                    side_row["seconds"].as_f64().unwrap_or(f64::NAN),
                    side_row["eps"].as_f64().unwrap_or(f64::NAN),
                    side_row["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn disk_use(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// `baton ingest` of tails by this build and by `baseline`, alternated on the log; the
/// earlier build's id index snapshot is put back before each of its runs (this build removes
/// it), so each runs as it would on its own.
fn compare(
    args: &IdsArgs,
    log: &Path,
    baseline: &Path,
    history: &mut History,
    past: &Past,
    dice: &mut Dice,
) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("finding the baton executable")?;
    let work = log.with_file_name("tails");
    std::fs::create_dir_all(&work)?;
    let snapshot = log.join("id-index.snapshot");
    let saved = work.join("baseline-id-index.snapshot");
    let mut runs: [Vec<(f64, Option<f64>)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=args.rounds.max(1) {
        for (side, binary) in [(0, exe.as_path()), (1, baseline)] {
            let (events, expected) = tail(history, past, dice, args);
            let retries = expected.iter().flatten().count() as u64;
            let file = work.join(format!("tail-{round}-{side}.ndjson"));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
            for event in &events {
                // With its event id, so the retried ones repeat ids on the log.
                let mut value = baton_core::event_to_json(event);
                if let Some(object) = value.as_object_mut() {
                    object.shift_remove("recorded_at");
                }
                serde_json::to_writer(&mut out, &value)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            drop(out);
            if side == 1 && saved.exists() {
                std::fs::copy(&saved, &snapshot)?;
            }
            let mut command = Command::new(binary);
            command
                .arg("--data")
                .arg(log)
                .arg("ingest")
                .arg(&file)
                .arg("--json")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let started = Instant::now();
            let run = crate::bench_ingest::run_measured(command)?;
            let seconds = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                run.status.success(),
                "{} ingest failed: {}",
                binary.display(),
                String::from_utf8_lossy(&run.stderr)
            );
            let summary: serde_json::Value =
                serde_json::from_slice(&run.stdout).context("reading ingest's summary")?;
            anyhow::ensure!(
                summary["duplicates"].as_u64() == Some(retries)
                    && summary["accepted"].as_u64() == Some(events.len() as u64 - retries),
                "{}: {summary} for {} events of which {retries} retried",
                binary.display(),
                events.len()
            );
            if side == 1 && snapshot.exists() {
                std::fs::copy(&snapshot, &saved)?;
            }
            std::fs::remove_file(&file)?;
            if round > 0 {
                runs[side].push((seconds, run.peak_mb));
            }
        }
    }
    let summary = |runs: &[(f64, Option<f64>)]| {
        let seconds = crate::bench::median(runs.iter().map(|r| r.0).collect());
        let peaks: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
        serde_json::json!({
            "seconds": round2(seconds),
            "eps": (args.tail as f64 / seconds.max(1e-9)).round(),
            "peak_rss_mb": (!peaks.is_empty()).then(|| crate::bench::median(peaks).round()),
        })
    };
    Ok(serde_json::json!({
        "this": summary(&runs[0]),
        "baseline": summary(&runs[1]),
        "baseline_binary": baseline.display().to_string(),
        "rounds": runs[0].len(),
    }))
}
