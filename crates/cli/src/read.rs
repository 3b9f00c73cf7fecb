//! `baton log read`: prints stored events as NDJSON, with their positions, optionally
//! following the log as it grows.

use crate::backend::LogArgs;
use baton_log::{EventLog, Patience, Position};
use futures::StreamExt;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

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
    // Opened to read, so it runs beside a `baton serve` or `baton project` appending to the
    // embedded log; following that log is done by opening it again to read what was added.
    let mut log = log_args.open_to_read().await?;
    let follows_natively = log_args.nats.is_some();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut next = Position::new(args.from);
    // Transient failures (a NATS server restarting, a cluster electing a leader) are waited
    // out for the patience the command was given, then the log is read again from `next`.
    let mut patience = Patience::new(log_args.patience());
    let what = format!("reading {}", log.describe());
    let wait_out = |patience: &mut Patience, error| {
        patience
            .failed(&what, error)
            .map_err(|error| anyhow::Error::new(error).context(what.clone()))
    };
    'open: while args.limit.is_none_or(|limit| printed < limit) {
        let opened = if args.follow && follows_natively {
            log.follow(next).await
        } else {
            log.read(next).await
        };
        let mut records = match opened {
            Ok(records) => records,
            Err(error) => {
                let wait = wait_out(&mut patience, error)?;
                if interrupted_during(wait).await {
                    break 'open;
                }
                continue 'open;
            }
        };
        while args.limit.is_none_or(|limit| printed < limit) {
            let item = tokio::select! {
                item = records.next() => item,
                _ = tokio::signal::ctrl_c() => break 'open,
            };
            let record = match item {
                Some(Ok(record)) => record,
                Some(Err(error)) => {
                    out.flush().map_err(crate::output_error)?;
                    let wait = wait_out(&mut patience, error)?;
                    if interrupted_during(wait).await {
                        break 'open;
                    }
                    continue 'open;
                }
                None if args.follow && !follows_natively => {
                    // The end of the log as it stood at the open: look again shortly.
                    out.flush().map_err(crate::output_error)?;
                    if interrupted_during(FOLLOW_POLL).await {
                        break 'open;
                    }
                    log = log_args.open_to_read().await?;
                    continue 'open;
                }
                None => break 'open,
            };
            patience.succeeded(&what);
            next = record.position.next();
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
    }
    out.flush().map_err(crate::output_error)?;
    Ok(ExitCode::SUCCESS)
}

/// How often `log read --follow` looks for new events on an embedded log it opened to read.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Sleeps for `wait`; true when Ctrl-C came first.
async fn interrupted_during(wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        _ = tokio::signal::ctrl_c() => true,
    }
}
