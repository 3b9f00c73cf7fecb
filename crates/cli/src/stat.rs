//! `baton log stat`: head position and event count.

use crate::backend::LogArgs;
use anyhow::Context;
use baton_log::EventLog;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatArgs {
    /// Print `{"head":N,"events":N}`.
    #[arg(long)]
    json: bool,
}

pub async fn run(log_args: &LogArgs, args: StatArgs) -> anyhow::Result<ExitCode> {
    // Beside a running `baton serve` or `baton project` on the embedded log, too.
    let log = log_args.open_to_read().await?;
    let stat =
        baton_log::retry_transient("reading the log's head", log_args.patience(), || log.stat())
            .await
            .with_context(|| format!("reading the head of {}", log.describe()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"head": stat.head.get(), "events": stat.events})
        );
    } else {
        println!("{}", log.describe());
        println!("  head    {}", stat.head);
        println!("  events  {}", stat.events);
    }
    Ok(ExitCode::SUCCESS)
}
