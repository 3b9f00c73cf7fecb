//! `baton gen`: writes a deterministic synthetic history as NDJSON, streaming.

use anyhow::Context;
use baton_producer::{History, HistoryConfig};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Seed: the same seed and account count give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of accounts (about 60 events each).
    #[arg(long, default_value_t = 1_000)]
    accounts: u64,
    /// Days of history, starting 2025-01-01.
    #[arg(long, default_value_t = 540)]
    span_days: u32,
    /// Nurture touches per person, as a multiple of the default: 4 gives about 110 events per
    /// person instead of 30, over the same people (for memory measurements).
    #[arg(long, default_value_t = 1)]
    engagement: u32,
    /// Output file; standard output when absent or `-`.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    let mut config = HistoryConfig::new(args.seed, args.accounts);
    config.span_days = args.span_days;
    config.engagement = args.engagement;
    let to_file = args.out.as_ref().filter(|p| p.as_os_str() != "-");
    let sink: Box<dyn Write> = match to_file {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
    let progress = indicatif::ProgressBar::new(args.accounts);
    if to_file.is_none() {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} generating [{bar:30}] {pos}/{len} accounts  {msg}  ETA {eta}",
        )
        .expect("invariant: valid template")
        .progress_chars("=> "),
    );
    let mut history = History::new(config);
    let mut written = 0u64;
    while let Some(event) = history.next() {
        write_line(&mut out, &event)?;
        written += 1;
        if written.is_multiple_of(10_000) {
            progress.set_position(history.accounts_done());
            progress.set_message(format!("{written} events"));
        }
    }
    out.flush()
        .map_err(crate::output_error)
        .context("flushing the output")?;
    progress.finish_and_clear();
    if let Some(path) = to_file {
        eprintln!(
            "wrote {written} events for {} accounts to {} (seed {})",
            args.accounts,
            path.display(),
            args.seed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `event` as one NDJSON line as a source would send it: without `event_id` (it
/// follows from the source and `message_id`) or `recorded_at` (assigned on ingest).
pub(crate) fn write_line(out: &mut impl Write, event: &baton_core::Event) -> anyhow::Result<()> {
    let mut value = baton_core::event_to_json(event);
    if let Some(object) = value.as_object_mut() {
        object.shift_remove("event_id");
        object.shift_remove("recorded_at");
    }
    serde_json::to_writer(&mut *out, &value)
        .map_err(crate::json_output_error)
        .context("writing an event")?;
    out.write_all(b"\n")
        .map_err(crate::output_error)
        .context("writing an event")
}
