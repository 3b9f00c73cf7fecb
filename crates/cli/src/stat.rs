//! `baton log stat`: head position and event count.

use crate::backend::LogArgs;
use baton_log::EventLog;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatArgs {
    /// Print `{"head":N,"events":N}`.
    #[arg(long)]
    json: bool,
}

pub async fn run(log_args: &LogArgs, args: StatArgs) -> anyhow::Result<ExitCode> {
    let log = log_args.open().await?;
    let stat = log.stat().await?;
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
