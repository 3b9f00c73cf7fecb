//! `baton ingest FILE`: appends an NDJSON file to the log with progress and a summary.

use crate::backend::LogArgs;
use anyhow::Context;
use baton_producer::{ImportOptions, import_ndjson};
use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

/// Rejections printed with their reasons when not asked for more.
const SHOWN_REJECTIONS: usize = 20;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// NDJSON file of events (see docs/events.md); `-` reads standard input.
    file: PathBuf,
    /// Print `{"accepted":N,"duplicates":N,"rejected":N,"not_written":N}` and nothing else on stdout.
    #[arg(long)]
    json: bool,
    /// Events per append.
    #[arg(long, default_value_t = 5_000)]
    batch_size: usize,
    /// Print every kept rejection, not just the first 20.
    #[arg(long)]
    all_rejections: bool,
}

pub async fn run(log_args: &LogArgs, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let log = log_args.open().await?;
    let (reader, total): (Box<dyn std::io::BufRead + Send>, Option<u64>) =
        if args.file.as_os_str() == "-" {
            (Box::new(BufReader::new(std::io::stdin())), None)
        } else {
            let file = std::fs::File::open(&args.file)
                .with_context(|| format!("opening {}", args.file.display()))?;
            let size = file.metadata().map(|m| m.len()).ok();
            (Box::new(BufReader::with_capacity(1 << 20, file)), size)
        };

    let progress = match total {
        Some(total) if std::io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} ingesting [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}  ETA {eta}",
                )
                .expect("invariant: valid template")
                .progress_chars("=> "),
            );
            bar
        }
        _ => indicatif::ProgressBar::hidden(),
    };
    let options = ImportOptions {
        batch_size: args.batch_size.max(1),
        ..ImportOptions::default()
    };
    let started = std::time::Instant::now();
    let summary = import_ndjson(reader, &log, &options, |bytes| progress.set_position(bytes))
        .await
        .with_context(|| {
            format!(
                "ingesting {} (safe to re-run: nothing is stored twice)",
                args.file.display()
            )
        })?;
    progress.finish_and_clear();

    let shown = if args.all_rejections {
        usize::MAX
    } else {
        SHOWN_REJECTIONS
    };
    for rejection in summary.rejections.iter().take(shown) {
        eprintln!("line {}: {}", rejection.line, rejection.reason);
    }
    let unshown = summary
        .rejected
        .saturating_sub(shown.min(summary.rejections.len()) as u64);
    if unshown > 0 {
        eprintln!("... and {unshown} more rejected lines");
    }
    if let Some(reason) = &summary.not_written_reason {
        eprintln!(
            "{} events were not written ({reason}); re-run the same command to store them",
            summary.not_written
        );
    }

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "accepted": summary.accepted,
                "duplicates": summary.duplicates,
                "rejected": summary.rejected,
                "not_written": summary.not_written,
            })
        );
    } else {
        let seconds = started.elapsed().as_secs_f64();
        println!("ingested {} into {}", args.file.display(), log.describe());
        println!("  lines        {}", summary.lines);
        println!("  accepted     {}", summary.accepted);
        println!("  duplicates   {}", summary.duplicates);
        println!("  rejected     {}", summary.rejected);
        if summary.not_written > 0 {
            println!("  not written  {}", summary.not_written);
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = summary.lines as f64 / seconds.max(1e-9);
        println!("  time         {seconds:.1} s ({rate:.0} lines/s)");
    }
    Ok(if summary.not_written > 0 {
        ExitCode::FAILURE
    } else if summary.rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
