//! `baton log read`: prints stored events as NDJSON, with their positions, optionally
//! following the log as it grows.

use crate::backend::LogArgs;
use anyhow::Context;
use baton_log::{EventLog, Position};
use futures::StreamExt;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// First position to print (1 is the first event).
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Keep printing new events as they are appended, until interrupted.
    #[arg(long)]
    follow: bool,
}

pub async fn run(log_args: &LogArgs, args: ReadArgs) -> anyhow::Result<ExitCode> {
    let log = log_args.open().await?;
    let from = Position::new(args.from);
    let mut records = if args.follow {
        log.follow(from).await?
    } else {
        log.read(from).await?
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    while args.limit.is_none_or(|limit| printed < limit) {
        let next = tokio::select! {
            next = records.next() => next,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(record) = next else { break };
        let record = record.with_context(|| format!("reading {}", log.describe()))?;
        let mut value = baton_core::event_to_json(&record.event);
        if let Some(object) = value.as_object_mut() {
            object.shift_insert(0, "position".into(), record.position.get().into());
        }
        serde_json::to_writer(&mut out, &value).map_err(crate::json_output_error)?;
        out.write_all(b"\n").map_err(crate::output_error)?;
        if args.follow {
            out.flush().map_err(crate::output_error)?;
        }
        printed += 1;
    }
    out.flush().map_err(crate::output_error)?;
    Ok(ExitCode::SUCCESS)
}
