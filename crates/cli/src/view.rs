//! The persistent views from the command line: `baton project` keeps the live view, `baton
//! replay` builds a candidate under another definition and compares it, `baton views`,
//! `baton promote` and `baton drop` manage them.

use crate::backend::LogArgs;
use crate::funnel::{load_definition_text, money, print_summary, summary_json};
use anyhow::Context;
use baton_core::{
    Comparison, FunnelDefinition, FunnelProjection, OutcomeGroup, SlaLoad, Timestamp,
};
use baton_log::{AnyLog, EventLog, Position};
use baton_projector::{Bound, RunOptions, Status, Until, View, ViewStore};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct ProjectArgs {
    /// Funnel definition of the live view when it is first built (TOML, docs/funnels.md); the
    /// shipped default when absent. Changing the live definition is `replay` + `promote`.
    #[arg(long, env = "BATON_FUNNEL")]
    pub funnel: Option<PathBuf>,
    /// Exit once the view reflects the log's head as it is at the start.
    #[arg(long)]
    pub until_caught_up: bool,
    /// The most events folded between two commits of state and checkpoint. A commit holds
    /// what it replaces in sled until it is applied, so much larger values cost memory: one
    /// commit of 10M events took 12.8 GB (docs/benchmarks.md). A commit also comes sooner,
    /// once 4,096 stored entries (people, visitors, accounts...) have changed.
    #[arg(long, default_value_t = 100_000)]
    pub commit_every: usize,
    /// Print the outcome as JSON: `{"view":..,"position":..,"events":..,"commits":..}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The candidate funnel definition (TOML).
    #[arg(long)]
    pub funnel: PathBuf,
    /// Name of the candidate view; by default the definition's name and hash.
    #[arg(long)]
    pub name: Option<String>,
    /// Stop at this log position, or at the first event recorded after this time (RFC 3339);
    /// by default at the head as it is at the start. The live definition is then compared
    /// over the same events, and the MQLs' outcomes read from the whole log.
    #[arg(long)]
    pub until: Option<String>,
    /// Replay the log as it was known at this time (RFC 3339): `--until TIME`, the events up
    /// to the first one recorded after it.
    #[arg(long, value_name = "TIME", conflicts_with = "until")]
    pub as_known_at: Option<String>,
    /// Fold the candidate in memory and show the comparison without storing it: no
    /// candidate view to promote, and none of its state written.
    #[arg(long, conflicts_with_all = ["name", "on_disk"])]
    pub no_keep: bool,
    /// Build the candidate through the persistent projector, committing its state as it goes:
    /// memory bounded by the state rather than every fact, and an interrupted replay resumes
    /// where it stopped. By default the candidate is folded in memory, compared (shown about
    /// 40% sooner), then kept whole without folding again; a log whose fold would not fit in
    /// half the available memory is built on disk anyway (docs/funnels.md).
    #[arg(long)]
    pub on_disk: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The candidate view to set beside the live one.
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ViewsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The view's name (`baton views` lists them).
    pub name: String,
}

fn open_store(log_args: &LogArgs) -> anyhow::Result<ViewStore> {
    let dir = log_args.views_dir();
    ViewStore::open(&dir).with_context(|| format!("opening the views in {}", dir.display()))
}

fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}}  {{per_sec}}  ETA {{eta}}"
        ))
        .expect("invariant: valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Runs a view to its end (`until`), with a progress bar on a terminal and Ctrl-C as a clean
/// stop. Returns the projection, its position and whether it reached the end.
async fn run_view(
    log: &AnyLog,
    view: View,
    until: Until,
    commit_every: usize,
    what: &str,
) -> anyhow::Result<baton_projector::Outcome> {
    let status = Arc::new(Status::default());
    let bar = progress_bar(what);
    let watcher = {
        let status = status.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let start = status.checkpoint();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let head = status.head().get();
                bar.set_length(head.saturating_sub(start.get()));
                bar.set_position(status.checkpoint().get().saturating_sub(start.get()));
            }
        })
    };
    let name = view.name().to_owned();
    let options = RunOptions {
        until,
        commit_every: commit_every.max(1),
        ..RunOptions::default()
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let outcome = baton_projector::run(log, view, options, status, |_: &_, _| {}, shutdown).await;
    watcher.abort();
    bar.finish_and_clear();
    outcome.with_context(|| format!("projecting view {name:?} from {}", log.describe()))
}

/// The live view, created under `definition` (or the default) when there is none.
pub fn live_view(store: &ViewStore, funnel: Option<&PathBuf>) -> anyhow::Result<View> {
    match store.live()? {
        Some(name) => {
            let view = store.open_view(&name)?;
            if let Some(path) = funnel {
                let (definition, _) = load_definition_text(Some(path))?;
                let live = view.definition()?;
                if live.hash() != definition.hash() {
                    anyhow::bail!(
                        "the live view {name:?} is built under {} ({}), and {} is {} ({}); to adopt it, \
                         `baton replay --funnel {}` and then `baton promote` the candidate",
                        live.name(),
                        live.hash(),
                        path.display(),
                        definition.name(),
                        definition.hash(),
                        path.display()
                    );
                }
            }
            Ok(view)
        }
        None => {
            let (definition, text) = load_definition_text(funnel)?;
            let file = funnel.map_or_else(
                || "funnels/default.toml (shipped)".to_owned(),
                |p| p.display().to_string(),
            );
            let name = definition.name().to_owned();
            let name = if baton_projector::valid_view_name(&name) {
                name
            } else {
                "live".to_owned()
            };
            // A run cut short between creating the view and making it live left it behind:
            // take it up when it is under the same definition.
            let view = match store.open_view(&name) {
                Ok(view) if view.definition()?.hash() == definition.hash() => view,
                Ok(_) => anyhow::bail!(
                    "there is no live view, and a view named {name:?} exists under another definition; \
                     `baton promote` it or `baton drop {name}`"
                ),
                Err(baton_projector::StoreError::NoSuchView { .. }) => {
                    store.create_view(&name, &definition, &text, &file, None)?
                }
                Err(other) => return Err(other.into()),
            };
            store.set_live(&name)?;
            tracing::info!(view = %name, "created the live view");
            Ok(view)
        }
    }
}

/// Brings the live view up to the log's head (creating it when missing) and returns it
/// refreshed: what `baton funnel` and `baton demo` print.
pub async fn live_caught_up(
    log_args: &LogArgs,
    log: &AnyLog,
) -> anyhow::Result<baton_projector::Outcome> {
    let store = open_store(log_args)?;
    let view = live_view(&store, None)?;
    run_view(log, view, Until::CaughtUp, 100_000, "projecting").await
}

pub async fn project(log_args: &LogArgs, args: ProjectArgs) -> anyhow::Result<ExitCode> {
    let log = log_args.open().await?;
    let store = open_store(log_args)?;
    let view = live_view(&store, args.funnel.as_ref())?;
    let name = view.name().to_owned();
    let started = std::time::Instant::now();
    let outcome = if args.until_caught_up {
        run_view(&log, view, Until::CaughtUp, args.commit_every, "projecting").await?
    } else {
        eprintln!(
            "projecting view {name:?} from {} and following it; Ctrl-C stops",
            log.describe()
        );
        let status = Arc::new(Status::default());
        let reporter = {
            let status = status.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    tracing::info!(
                        checkpoint = status.checkpoint().get(),
                        head = status.head().get(),
                        lag = status.lag(),
                        "projector"
                    );
                }
            })
        };
        let options = RunOptions {
            until: Until::Forever,
            commit_every: args.commit_every.max(1),
            ..RunOptions::default()
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let outcome =
            baton_projector::run(&log, view, options, status, |_: &_, _| {}, shutdown).await;
        reporter.abort();
        outcome.with_context(|| format!("projecting view {name:?}"))?
    };
    let events = outcome.projection.events();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "view": name,
                "position": outcome.checkpoint.get(),
                "events": events,
                "seconds": started.elapsed().as_secs_f64(),
            })
        );
    } else {
        println!(
            "view {name:?} reflects the log to position {} ({events} events folded in all)",
            outcome.checkpoint
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--until`: a position, or an RFC 3339 time.
fn parse_until(text: &str) -> anyhow::Result<Bound> {
    if let Ok(position) = text.parse::<u64>() {
        return Ok(Bound::Position(Position::new(position)));
    }
    Timestamp::parse_rfc3339(text)
        .map(Bound::RecordedBy)
        .map_err(|error| {
            anyhow::anyhow!(
                "--until {text:?}: neither a log position (a whole number) nor an RFC 3339 time: {error}"
            )
        })
}

pub async fn replay(log_args: &LogArgs, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (definition, text) = load_definition_text(Some(&args.funnel))?;
    // Only read: a running `baton serve` or `baton project` may have the log open to append.
    let log = log_args.open_to_read().await?;
    let store = open_store(log_args)?;
    let head = log.stat().await?.head;
    let bound = match (&args.until, &args.as_known_at) {
        (_, Some(text)) => Bound::RecordedBy(crate::funnel::parse_known_at("--as-known-at", text)?),
        (Some(text), None) => match parse_until(text)? {
            Bound::Position(position) if position > head => {
                eprintln!(
                    "--until {position} is past the log's head; replaying to the head, {head}"
                );
                Bound::Position(head)
            }
            bound => bound,
        },
        (None, None) => Bound::Position(head),
    };
    if args.no_keep {
        return replay_in_memory(log_args, &log, definition, bound, None, args.json).await;
    }
    let name = args.name.clone().unwrap_or_else(|| {
        let hash = definition.hash();
        let hash = hash.strip_prefix("sha256:").unwrap_or(hash);
        format!("{}-{}", definition.name(), &hash[..hash.len().min(8)])
    });
    if store.live()?.as_deref() == Some(name.as_str()) {
        anyhow::bail!("{name:?} is the live view; give the candidate another --name");
    }
    // Refused before folding, not once the fold is done and shown.
    if !baton_projector::valid_view_name(&name) {
        return Err(baton_projector::StoreError::BadName { name }.into());
    }
    // A candidate left half-built (interrupted) under the same definition resumes, to the
    // bound it was started with unless --until names another.
    let mut bound = bound;
    let view = match store.open_view(&name) {
        Ok(view) => {
            let stored = view.bound()?;
            if args.until.is_none()
                && let Some(stored) = stored
            {
                bound = stored;
            }
            let same = view.definition()?.hash() == definition.hash()
                && stored == Some(bound)
                && !view.complete()?;
            if !same {
                anyhow::bail!(
                    "a view named {name:?} already exists; pick another --name or `baton drop {name}`"
                );
            }
            eprintln!("resuming the interrupted replay of {name:?}");
            view
        }
        Err(baton_projector::StoreError::NoSuchView { .. })
            if !args.on_disk && fits_in_memory(bound_events(bound, head)) =>
        {
            let keep = Keep {
                name,
                text,
                file: args.funnel.display().to_string(),
            };
            return replay_in_memory(log_args, &log, definition, bound, Some(keep), args.json)
                .await;
        }
        Err(baton_projector::StoreError::NoSuchView { .. }) => store.create_view(
            &name,
            &definition,
            &text,
            &args.funnel.display().to_string(),
            Some(bound),
        )?,
        Err(other) => return Err(other.into()),
    };
    eprintln!(
        "replaying {} under {} ({}) into view {name:?}, to {bound}",
        log.describe(),
        definition.name(),
        definition.hash()
    );
    let candidate = run_view(&log, view, Until::Bound(bound), 200_000, "replaying").await?;
    if !candidate.reached {
        eprintln!(
            "interrupted at position {}; run the same command again to resume",
            candidate.checkpoint
        );
        return Ok(ExitCode::FAILURE);
    }
    let (comparison, outcomes_at) = compare_with_live(
        log_args,
        &store,
        &log,
        &candidate.projection,
        candidate.checkpoint,
    )
    .await?;
    let live_name = store.live()?.unwrap_or_default();
    let sides = (
        (live_name.as_str(), candidate.checkpoint),
        (name.as_str(), candidate.checkpoint),
    );
    keep_comparison(&store, &comparison, sides, outcomes_at);
    print_comparison(&comparison, sides.0, sides.1, outcomes_at, args.json);
    if !args.json {
        println!();
        println!("adopt it: `baton promote {name}`; discard it: `baton drop {name}`");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a candidate folded in memory and not kept is called in a comparison.
pub(crate) const UNKEPT_CANDIDATE: &str = "candidate (not kept)";

/// About how much memory a fold holds per event of the log, measured: 2.8 GB at the peak of
/// a replay of 10.5M events kept after an in-memory fold, the live view loaded beside it
/// (docs/benchmarks.md).
const FOLD_BYTES_PER_EVENT: u64 = 300;

/// How many events a replay to `bound` folds at most: the head's, unless a position comes first.
fn bound_events(bound: Bound, head: Position) -> u64 {
    match bound {
        Bound::Position(position) => position.min(head).get(),
        Bound::RecordedBy(_) => head.get(),
    }
}

/// Whether folding `events` in memory fits in half the memory available now (the kernel's
/// `MemAvailable`); when it does not, `replay` builds on disk instead, and says so. Where the
/// kernel does not say, it is taken to fit.
fn fits_in_memory(events: u64) -> bool {
    match memory_shortfall(events, 1) {
        Some((needed, available)) => {
            eprintln!(
                "folding {events} events in memory would take about {:.1} GB, more than half of the {:.1} GB available: building the candidate on disk instead (as --on-disk)",
                needed as f64 / 1e9,
                available as f64 / 1e9
            );
            false
        }
        None => true,
    }
}

/// When `folds` folds of `events` events would hold more than half the memory available now:
/// the bytes they would hold and the bytes available. `None` when they fit, or when the
/// kernel does not say.
pub(crate) fn memory_shortfall(events: u64, folds: u64) -> Option<(u64, u64)> {
    let needed = events
        .saturating_mul(FOLD_BYTES_PER_EVENT)
        .saturating_mul(folds);
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
        })?;
    (needed > available / 2).then_some((needed, available))
}

/// The definition of the live view `name` while another process holds it, from the copy
/// beside its database.
fn held_live_definition(store: &ViewStore, name: &str) -> anyhow::Result<FunnelDefinition> {
    store.definition_of(name).with_context(|| {
        format!(
            "the live view {name:?} is open in another process (a running `baton serve` or \
             `baton project`) and its definition cannot be read beside it; stop that process \
             once with this build, or compare later"
        )
    })
}

/// The live view's name and definition when another process holds it open (a running `baton
/// serve` or `baton project`); `None` when there is no live view or it can be opened here.
fn live_held_elsewhere(store: &ViewStore) -> anyhow::Result<Option<(String, FunnelDefinition)>> {
    let Some(name) = store.live()? else {
        return Ok(None);
    };
    match store.open_view(&name) {
        Ok(_) | Err(baton_projector::StoreError::NoSuchView { .. }) => Ok(None),
        Err(baton_projector::StoreError::InUse { .. }) => {
            let definition = held_live_definition(store, &name)?;
            Ok(Some((name, definition)))
        }
        Err(other) => Err(other.into()),
    }
}

/// Where a candidate folded in memory is kept, once compared.
struct Keep {
    name: String,
    /// The definition's text and the file it came from, stored with the view.
    text: String,
    file: String,
}

/// `replay` without `--on-disk`: the candidate folded in memory to `bound`, compared with the
/// live definition over the same events and shown; then, given `keep`, stored whole as a
/// candidate view (complete, to promote) without folding the log again. `--no-keep` stores
/// nothing.
async fn replay_in_memory(
    log_args: &LogArgs,
    log: &AnyLog,
    definition: FunnelDefinition,
    bound: Bound,
    keep: Option<Keep>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match &keep {
        Some(keep) => eprintln!(
            "replaying {} under {} ({}) in memory, to {bound}; kept as view {:?} once compared",
            log.describe(),
            definition.name(),
            definition.hash(),
            keep.name
        ),
        None => eprintln!(
            "replaying {} under {} ({}) in memory, to {bound}; the candidate is not kept",
            log.describe(),
            definition.name(),
            definition.hash()
        ),
    }
    let store = open_store(log_args)?;
    // A live view held by a running `serve` or `project` cannot be loaded: its definition is
    // folded beside the candidate instead, in the same reading of the log.
    let held = live_held_elsewhere(&store)?;
    let mut definitions = vec![definition];
    if let Some((name, live)) = held {
        eprintln!(
            "the live view {name:?} is open in another process; folding its definition beside the candidate, in one reading of the log"
        );
        definitions.push(live);
    }
    let bar = progress_bar("replaying");
    let progress = |reached: Position, last: Position| {
        bar.set_length(last.get());
        bar.set_position(reached.get());
    };
    let mut folds = match bound {
        Bound::Position(position) => {
            baton_projector::fold_log_to_each(log, definitions, position, progress).await
        }
        Bound::RecordedBy(at) => {
            baton_projector::fold_log_recorded_by_each(log, definitions, at, progress).await
        }
    }
    .with_context(|| format!("folding {}", log.describe()))?;
    bar.finish_and_clear();
    let live_folded = (folds.len() == 2).then(|| folds.pop()).flatten();
    let folded = folds.pop().context("the candidate's fold")?;
    let (comparison, outcomes_at) = match live_folded {
        Some(live) => (
            baton_core::compare(&live.projection, &folded.projection),
            folded.position,
        ),
        None => {
            compare_with_live(log_args, &store, log, &folded.projection, folded.position).await?
        }
    };
    let live_name = store.live()?.unwrap_or_default();
    let candidate_name = keep
        .as_ref()
        .map_or(UNKEPT_CANDIDATE.to_owned(), |keep| keep.name.clone());
    let sides = (
        (live_name.as_str(), folded.position),
        (candidate_name.as_str(), folded.position),
    );
    print_comparison(&comparison, sides.0, sides.1, outcomes_at, json);
    let Some(keep) = keep else {
        if !json {
            println!();
            println!("not kept: run it again without --no-keep to keep a view to promote");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let started = std::time::Instant::now();
    let kept = {
        let store = open_store(log_args)?;
        let name = candidate_name.clone();
        let bar = progress_bar("keeping");
        tokio::task::spawn_blocking(move || {
            let mut folded = folded;
            store
                .keep_view(
                    &keep.name,
                    &keep.text,
                    &keep.file,
                    bound,
                    &mut folded.projection,
                    folded.position,
                    |written, total| {
                        bar.set_length(total as u64);
                        bar.set_position(written as u64);
                        std::ops::ControlFlow::Continue(())
                    },
                )
                .map(drop)
        })
        .await
        .context("keeping the candidate")?
        .with_context(|| format!("keeping the candidate as view {name:?}"))
    };
    kept?;
    eprintln!(
        "kept as view {:?} in {:.1} s",
        candidate_name,
        started.elapsed().as_secs_f64()
    );
    keep_comparison(&store, &comparison, sides, outcomes_at);
    if !json {
        println!();
        println!(
            "adopt it: `baton promote {candidate_name}`; discard it: `baton drop {candidate_name}`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn compare(log_args: &LogArgs, args: CompareArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(log_args)?;
    let Some(live_name) = store.live()? else {
        anyhow::bail!("there is no live view yet: run `baton project` first");
    };
    let load = |name: &str| -> anyhow::Result<(FunnelProjection, Position)> {
        let view = store.open_view(name)?;
        Ok(view.load()?)
    };
    let (candidate, candidate_position) = load(&args.name)?;
    let (comparison, outcomes_at) = match load(&live_name) {
        Ok((live, live_position)) if live_position == candidate_position => {
            (baton_core::compare(&live, &candidate), live_position)
        }
        Ok((live, live_position)) => {
            let log = log_args.open_to_read().await?;
            compare_at_candidate(&log, live, live_position, &candidate, candidate_position).await?
        }
        Err(error) if in_use(&error) => {
            let log = log_args.open_to_read().await?;
            live_in_use(&store, &log, &candidate, candidate_position).await?
        }
        Err(error) => return Err(error),
    };
    let sides = (
        (live_name.as_str(), candidate_position),
        (args.name.as_str(), candidate_position),
    );
    keep_comparison(&store, &comparison, sides, outcomes_at);
    print_comparison(&comparison, sides.0, sides.1, outcomes_at, args.json);
    Ok(ExitCode::SUCCESS)
}

/// Compares `candidate`, which reflects the log up to `at`, with the live definition over the
/// same events: the live view itself when it stands at `at`, otherwise the live definition
/// folded into memory up to `at` (a replay bounded by `--until`, or a live view that moved on
/// since). How the MQLs ended is read from whichever saw more of the log, and its position is
/// returned beside the comparison.
/// `candidate`, which reflects the log up to `at`, beside the live definition: the live view
/// brought up to the head, or, while another process holds it, the live definition folded in
/// memory (`live_in_use`).
async fn compare_with_live(
    log_args: &LogArgs,
    store: &ViewStore,
    log: &AnyLog,
    candidate: &FunnelProjection,
    at: Position,
) -> anyhow::Result<(Comparison, Position)> {
    match live_caught_up(log_args, log).await {
        Ok(live) => {
            compare_at_candidate(log, live.projection, live.checkpoint, candidate, at).await
        }
        Err(error) if in_use(&error) => live_in_use(store, log, candidate, at).await,
        Err(error) => Err(error),
    }
}

async fn compare_at_candidate(
    log: &AnyLog,
    live: FunnelProjection,
    live_position: Position,
    candidate: &FunnelProjection,
    at: Position,
) -> anyhow::Result<(Comparison, Position)> {
    if live_position == at {
        return Ok((baton_core::compare(&live, candidate), at));
    }
    let definition = live.definition().clone();
    // Read before the live projection goes: only the folded one is kept in memory.
    let ended = (live_position > at).then(|| (live.outcomes(), live_position));
    drop(live);
    fold_and_compare(log, definition, ended, candidate, at).await
}

/// Whether `error` is a view that another process has open.
fn in_use(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<baton_projector::StoreError>(),
        Some(baton_projector::StoreError::InUse { .. })
    )
}

/// The comparison when the live view is open in another process (a running `baton serve` or
/// `baton project`): its definition, read from the copy beside its database, folded from the
/// log up to the candidate's position. The outcomes are then those at that position.
async fn live_in_use(
    store: &ViewStore,
    log: &AnyLog,
    candidate: &FunnelProjection,
    at: Position,
) -> anyhow::Result<(Comparison, Position)> {
    let name = store.live()?.unwrap_or_default();
    let definition = held_live_definition(store, &name)?;
    eprintln!(
        "the live view {name:?} is open in another process; comparing with its definition folded from the log"
    );
    fold_and_compare(log, definition, None, candidate, at).await
}

/// Folds the log up to `at` under `definition` and compares `candidate` with it. How the MQLs
/// ended is read from `ended` (outcomes and their position) when given, else from the fold.
async fn fold_and_compare(
    log: &AnyLog,
    definition: FunnelDefinition,
    ended: Option<(baton_core::Outcomes, Position)>,
    candidate: &FunnelProjection,
    at: Position,
) -> anyhow::Result<(Comparison, Position)> {
    eprintln!(
        "folding the log to position {at} under the live definition, to compare at the candidate's position"
    );
    let bar = progress_bar("folding");
    let folded = baton_projector::fold_log_to(log, definition, at, |reached, last| {
        bar.set_length(last.get());
        bar.set_position(reached.get());
    })
    .await
    .context("folding the live definition to the candidate's position")?;
    bar.finish_and_clear();
    let (outcomes, outcomes_at) = match ended {
        Some(ended) => ended,
        None => (folded.projection.outcomes(), folded.position),
    };
    let comparison = baton_core::compare_with(&folded.projection, candidate, &outcomes);
    Ok((comparison, outcomes_at))
}

pub fn views(log_args: &LogArgs, args: ViewsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(log_args)?;
    let views = store.list()?;
    if args.json {
        let rows: Vec<serde_json::Value> = views
            .iter()
            .map(|view| {
                let mut row = serde_json::json!({"name": view.name, "live": view.live});
                match &view.detail {
                    None => row["in_use"] = serde_json::Value::Bool(true),
                    Some(detail) => {
                        row["in_use"] = serde_json::Value::Bool(false);
                        row["definition"] = detail.definition_name.clone().into();
                        row["definition_hash"] = detail.definition_hash.clone().into();
                        row["definition_file"] = detail.definition_file.clone().into();
                        row["position"] = detail.position.get().into();
                        row["bound"] = detail.bound.map(|b| b.to_string()).into();
                        row["complete"] = detail.complete.into();
                        row["entries"] = detail.entries.into();
                        row["bytes_on_disk"] = detail.bytes_on_disk.into();
                    }
                }
                row
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        println!(
            "no views in {} yet: `baton project` builds the live one",
            store.dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  {:<28} {:<5} {:<22} {:<24} {:>10} {:>9} {:>10}  state",
        "view", "live", "definition", "hash", "position", "entries", "disk"
    );
    for view in &views {
        let live = if view.live { "yes" } else { "" };
        match &view.detail {
            None => println!("  {:<28} {live:<5} (open in another process)", view.name),
            Some(detail) => {
                let state = match (detail.bound, detail.complete) {
                    (None, _) => "follows the log".to_owned(),
                    (Some(bound), true) => format!("built to {bound}"),
                    (Some(bound), false) => format!("building to {bound} (interrupted?)"),
                };
                println!(
                    "  {:<28} {live:<5} {:<22} {:<24} {:>10} {:>9} {:>9.1}M  {state}",
                    view.name,
                    detail.definition_name,
                    detail.definition_hash,
                    detail.position,
                    detail.entries,
                    detail.bytes_on_disk as f64 / 1_048_576.0,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn promote(log_args: &LogArgs, args: NameArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(log_args)?;
    let view = store.open_view(&args.name)?;
    if view.bound()?.is_some() && !view.complete()? {
        anyhow::bail!(
            "view {:?} is not built to its bound yet (an interrupted replay); finish it with the same `baton replay` first",
            args.name
        );
    }
    let previous = store.live()?;
    // A running projector (serve, project) holds the live view and would keep serving it.
    if let Some(live) = &previous
        && live != &args.name
    {
        drop(store.open_view(live).map_err(|error| match error {
            baton_projector::StoreError::InUse { .. } => anyhow::anyhow!(
                "the live view {live:?} is open in a running `baton serve` or `baton project`; \
                 stop it, promote, then start it again"
            ),
            other => other.into(),
        })?);
    }
    // From here on it follows the log like any live view.
    view.clear_bound()?;
    drop(view);
    store.set_live(&args.name)?;
    match previous {
        Some(previous) if previous != args.name => println!(
            "{:?} is now the live view; {previous:?} is kept (promote it to go back, drop it to delete it)",
            args.name
        ),
        _ => println!("{:?} is now the live view", args.name),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn drop_view(log_args: &LogArgs, args: NameArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(log_args)?;
    store.drop_view(&args.name)?;
    println!("dropped view {:?}", args.name);
    Ok(ExitCode::SUCCESS)
}

/// `baton funnel` without `--funnel`: the live view, caught up.
pub async fn live_summary(log_args: &LogArgs, json: bool) -> anyhow::Result<ExitCode> {
    let log = log_args.open().await?;
    let outcome = live_caught_up(log_args, &log).await?;
    let summary = outcome.projection.summary();
    if json {
        println!("{}", summary_json(&summary, outcome.checkpoint.get()));
    } else {
        print_summary(&summary, outcome.checkpoint.get());
    }
    Ok(ExitCode::SUCCESS)
}

fn revenue_text(group: &OutcomeGroup) -> String {
    amounts_text(&group.revenue_minor_units)
}

fn amounts_text(amounts: &[(String, i64)]) -> String {
    if amounts.is_empty() {
        return "0".to_owned();
    }
    amounts
        .iter()
        .map(|(currency, minor)| format!("{currency} {}", money(*minor, currency)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keeps the comparison beside the candidate, for `baton serve` to serve over HTTP and SQL.
/// Failing to is a warning: the comparison is printed all the same.
fn keep_comparison(
    store: &ViewStore,
    comparison: &Comparison,
    (live, candidate): ((&str, Position), (&str, Position)),
    outcomes_at: Position,
) {
    let report = baton_query::comparison::comparison_json(comparison, live, candidate, outcomes_at);
    if let Err(error) = store.save_comparison(candidate.0, &report.to_string()) {
        eprintln!("warning: the comparison is not kept for `baton serve`: {error}");
    }
}

/// Prints a comparison of the two definitions at the candidate's position, with their MQLs'
/// outcomes as of `outcomes_at`.
fn print_comparison(
    comparison: &Comparison,
    live: (&str, Position),
    candidate: (&str, Position),
    outcomes_at: Position,
    json: bool,
) {
    if json {
        println!(
            "{}",
            baton_query::comparison::comparison_json(comparison, live, candidate, outcomes_at)
        );
        return;
    }
    let (l, c) = (&comparison.live, &comparison.candidate);
    println!(
        "live {:?}: {} ({}) at position {}   |   candidate {:?}: {} ({}) at position {}",
        live.0,
        l.definition,
        l.definition_hash,
        live.1,
        candidate.0,
        c.definition,
        c.definition_hash,
        candidate.1
    );
    println!(
        "  {:<14} {:>9} {:>9} {:>10}   {:>9} {:>9} {:>10}",
        "stage", "entered", "current", "conversion", "entered", "current", "conversion"
    );
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    for pair in comparison.stage_pairs() {
        let cell = |s: Option<&baton_core::StageSummary>| match s {
            Some(s) => format!(
                "{:>9} {:>9} {:>10}",
                s.entered,
                s.current,
                rate(s.conversion_rate())
            ),
            None => format!("{:>9} {:>9} {:>10}", "-", "-", "-"),
        };
        let only = match (pair.live, pair.candidate) {
            (Some(_), None) => "   (live only)",
            (None, Some(_)) => "   (candidate only)",
            _ => "",
        };
        println!(
            "  {:<14} {}   {}{only}",
            pair.name,
            cell(pair.live),
            cell(pair.candidate)
        );
    }
    println!();
    if outcomes_at == candidate.1 {
        println!("who becomes an MQL, and how they actually ended:");
    } else {
        println!(
            "who becomes an MQL by position {}, and how they actually ended (as of position {outcomes_at}):",
            candidate.1
        );
    }
    println!(
        "  {:<25} {:>8} {:>7} {:>7} {:>7} {:>9}  revenue",
        "group", "people", "won", "lost", "open", "won share"
    );
    for (label, group) in [
        ("MQL under both", &comparison.mql_both),
        ("MQL under live only", &comparison.mql_only_live),
        ("MQL under candidate only", &comparison.mql_only_candidate),
    ] {
        println!(
            "  {label:<25} {:>8} {:>7} {:>7} {:>7} {:>9}  {}",
            group.people,
            group.won,
            group.lost,
            group.open,
            rate(group.won_share()),
            revenue_text(group)
        );
    }
    println!();
    println!("how their customers stayed (accounts that became customers, as of the outcomes):");
    println!(
        "  {:<25} {:>9} {:>8} {:>9} {:>9} {:>9}  arr now",
        "group", "customers", "retained", "logo ret", "net ret", "NPS"
    );
    for (label, group) in [
        ("MQL under both", &comparison.mql_both),
        ("MQL under live only", &comparison.mql_only_live),
        ("MQL under candidate only", &comparison.mql_only_candidate),
    ] {
        println!(
            "  {label:<25} {:>9} {:>8} {:>9} {:>9} {:>9}  {}",
            group.customers,
            group.retained,
            rate(group.logo_retention()),
            rate(group.net_retention()),
            group
                .nps()
                .map_or_else(|| "-".to_owned(), |nps| format!("{nps:.0}")),
            amounts_text(&group.arr_minor_units)
        );
    }
    println!();
    let load = |load: &SlaLoad| {
        format!(
            "{} hand-offs over {} weeks, {} a week on average, peak {}",
            load.mqls,
            load.weeks,
            load.mean_per_week
                .map_or_else(|| "-".to_owned(), |m| format!("{m:.1}")),
            load.peak_week.map_or_else(
                || "-".to_owned(),
                |(week, count)| format!("{count} in the week of {}", &week.to_rfc3339()[..10])
            )
        )
    };
    println!("follow-up load on sales:");
    println!("  live       {}", load(&comparison.live_load));
    println!("  candidate  {}", load(&comparison.candidate_load));
    if comparison.attribution.is_empty() {
        return;
    }
    println!();
    println!("credited revenue by channel, per attribution model (docs/views.md, Attribution):");
    println!(
        "  {:<14} {:<18} {:>16} {:>16} {:>16}",
        "model", "channel", "live", "candidate", "change"
    );
    for row in &comparison.attribution {
        let currency = row.currency.as_deref().unwrap_or("");
        let money = |minor: Option<i64>| {
            minor.map_or_else(
                || "-".to_owned(),
                |minor| format!("{} {currency}", baton_core::decimal_amount(minor, currency)),
            )
        };
        let live = row.live.map(|(revenue, _)| revenue);
        let candidate = row.candidate.map(|(revenue, _)| revenue);
        let change = live.zip(candidate).map(|(l, c)| c.saturating_sub(l));
        println!(
            "  {:<14} {:<18} {:>16} {:>16} {:>16}",
            row.model,
            row.channel,
            money(live),
            money(candidate),
            money(change)
        );
    }
}

/// Used by `baton funnel --funnel FILE`: whether FILE is the live view's definition.
pub fn live_definition(log_args: &LogArgs) -> anyhow::Result<Option<FunnelDefinition>> {
    let store = open_store(log_args)?;
    let Some(name) = store.live()? else {
        return Ok(None);
    };
    match store.open_view(&name) {
        Ok(view) => Ok(Some(view.definition()?)),
        Err(baton_projector::StoreError::InUse { .. }) => Ok(None),
        Err(other) => Err(other.into()),
    }
}
