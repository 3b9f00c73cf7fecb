//! The `baton` binary: parses the command line, sets up tracing, wires the chosen log backend
//! and hands over to the library crates. Kept thin on purpose.

mod backend;
mod bench;
mod bench_collect;
mod bench_ids;
mod bench_ingest;
mod bench_query;
mod bench_share;
mod cpu;
mod demo;
mod funnel;
mod generate;
mod ingest;
mod quarantine;
mod read;
mod report;
mod restate;
mod serve;
mod settings;
mod stat;
mod view;

use clap::{Parser, Subcommand};

// glibc's allocator spent most of a replay in malloc, free and arena-lock contention between
// the reader and folding threads; mimalloc does the same work several times faster
// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// Baton: an event-sourced revenue-process engine. Every buyer touchpoint goes on one
/// append-only log; marketing, sales and shared-funnel views are built from it.
#[derive(Debug, Parser)]
#[command(name = "baton", version, propagate_version = true)]
#[command(
    after_help = "Logs go to stderr; set RUST_LOG=info (or debug) for more.\n\
Exit codes: 0 success, 1 failure, 2 input partly rejected (the rest was stored)."
)]
struct Cli {
    #[command(flatten)]
    log: backend::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a seeded B2B history into the log and print the shared-funnel summary.
    Demo(demo::DemoArgs),
    /// Print the shared-funnel summary of the log under a funnel definition.
    Funnel(funnel::FunnelArgs),
    /// Write a deterministic synthetic B2B history as NDJSON.
    Gen(generate::GenArgs),
    /// Append an NDJSON file of events to the log.
    Ingest(ingest::IngestArgs),
    /// Print the marketing, sales or shared-funnel view as tables (text, JSON or CSV).
    Report(report::ReportArgs),
    /// Run the projector: keep the live view (state in sled) up to date with the log.
    Project(view::ProjectArgs),
    /// Why the figures changed between two knowledge times, by cause, with the events behind.
    Restate(restate::RestateArgs),
    /// Build a candidate view under another funnel definition and compare it with the live one.
    Replay(view::ReplayArgs),
    /// Compare a candidate view with the live one again.
    Compare(view::CompareArgs),
    /// List the live and candidate views.
    Views(view::ViewsArgs),
    /// Make a candidate view the live one (atomically); the previous one is kept.
    Promote(view::NameArgs),
    /// Delete a view that is not live.
    Drop(view::NameArgs),
    /// Inspect the log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Run the HTTP collector (and, later, the projector and query API) in one process.
    Serve(serve::ServeArgs),
    /// Items the collector rejected: list them, or append the ones that now pass.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Benchmarks that print their figures side by side with a baseline.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Head position and event count.
    Stat(stat::StatArgs),
    /// Print stored events as NDJSON with their positions (`position` first).
    Read(read::ReadArgs),
    /// Cut off the embedded log's last append when it is torn or damaged (an open refuses a
    /// damaged one), keeping its bytes beside the segment, and report what was cut.
    Repair(stat::RepairArgs),
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Print quarantined items with their reasons.
    List(quarantine::ListArgs),
    /// Translate every item again (with the config's current tables) and append those that
    /// pass, with their original ids; they leave the quarantine.
    Retry(quarantine::RetryArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Append throughput: raw async-nats publisher vs baton on JetStream, then embedded.
    Append(bench::AppendArgs),
    /// Replay throughput: reading the log vs folding it into the funnel.
    Replay(bench::ReplayArgs),
    /// HTTP ingest through the collector vs appending directly, with request latency.
    Collect(bench_collect::CollectArgs),
    /// Query latency over HTTP, idle and while appending, with a live projector.
    Query(bench_query::QueryArgs),
    /// `baton ingest` of an NDJSON file vs DuckDB loading the same file into a table.
    Ingest(bench_ingest::IngestArgs),
    /// What idempotency costs as the history grows: the id index's memory, start-up and
    /// appends with retried ids, at checkpoints of a history generated into an embedded log.
    Ids(bench_ids::IdsArgs),
    /// Sharing a JetStream writer's id index through the server: the append rate beside a
    /// writer that does not share, and how soon a writer on another machine is ready.
    Share(bench_share::ShareArgs),
}

/// The exit status of a tool whose reader went away (128 + SIGPIPE), as a shell reports it.
const CLOSED_STDOUT: u8 = 141;

/// Stdout's reader went away (`baton log read | head`): the command stops, quietly.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// A failed write of a command's output: [`StdoutClosed`] when the reader went away.
pub(crate) fn output_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(error)
    }
}

/// [`output_error`] for JSON written straight to the output.
pub(crate) fn json_output_error(error: serde_json::Error) -> anyhow::Error {
    if error.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe) {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(error)
    }
}

/// Output piped into a reader that stops early (`baton funnel | head`) ends the process
/// quietly with status 141, as a shell tool killed by SIGPIPE does: `println!` panics when
/// stdout is closed, and a panic message there is noise, not an error to report.
fn quiet_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(CLOSED_STDOUT));
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_when_stdout_closes();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(&cli.log, args).await,
            Command::Funnel(args) => funnel::run(&cli.log, args).await,
            Command::Gen(args) => generate::run(args),
            Command::Ingest(args) => ingest::run(&cli.log, args).await,
            Command::Report(args) => report::run(&cli.log, args).await,
            Command::Project(args) => view::project(&cli.log, args).await,
            Command::Restate(args) => restate::run(&cli.log, args).await,
            Command::Replay(args) => view::replay(&cli.log, args).await,
            Command::Compare(args) => view::compare(&cli.log, args).await,
            Command::Views(args) => view::views(&cli.log, args),
            Command::Promote(args) => view::promote(&cli.log, args),
            Command::Drop(args) => view::drop_view(&cli.log, args),
            Command::Log {
                command: LogCommand::Stat(args),
            } => stat::run(&cli.log, args).await,
            Command::Log {
                command: LogCommand::Read(args),
            } => read::run(&cli.log, args).await,
            Command::Log {
                command: LogCommand::Repair(args),
            } => stat::repair(&cli.log, args).await,
            Command::Serve(args) => serve::run(&cli.log, args).await,
            Command::Quarantine {
                command: QuarantineCommand::List(args),
            } => quarantine::list(&cli.log, args),
            Command::Quarantine {
                command: QuarantineCommand::Retry(args),
            } => quarantine::retry(&cli.log, args).await,
            Command::Bench {
                command: BenchCommand::Append(args),
            } => bench::append(args).await,
            Command::Bench {
                command: BenchCommand::Query(args),
            } => bench_query::run(args).await,
            Command::Bench {
                command: BenchCommand::Replay(args),
            } => bench::replay(args).await,
            Command::Bench {
                command: BenchCommand::Collect(args),
            } => bench_collect::collect(args).await,
            Command::Bench {
                command: BenchCommand::Ingest(args),
            } => tokio::task::block_in_place(|| bench_ingest::run(args)),
            Command::Bench {
                command: BenchCommand::Ids(args),
            } => bench_ids::run(args).await,
            Command::Bench {
                command: BenchCommand::Share(args),
            } => bench_share::run(args, cli.log.recent_ids as usize).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) if error.chain().any(|cause| cause.is::<StdoutClosed>()) => {
            ExitCode::from(CLOSED_STDOUT)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
