//! `baton quarantine list` and `baton quarantine retry`: what the collector rejected, and
//! appending it once a fix (of the source's data or of a mapping in the config) lets it pass.

use crate::backend::LogArgs;
use crate::settings::Settings;
use anyhow::Context;
use baton_producer::{Adapters, Quarantine};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print one JSON object per entry (NDJSON), with the original payload.
    #[arg(long)]
    json: bool,
    /// The config file `baton serve` uses (for `quarantine_dir`).
    #[arg(long, env = "BATON_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Print `{"entries":N,"released":N,"appended":N,"duplicates":N,"ignored":N,"still_rejected":N,"not_written":N}`.
    #[arg(long)]
    json: bool,
    /// The config file `baton serve` uses: its track rules and mappings translate the entries.
    #[arg(long, env = "BATON_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

fn settings_and_dir(
    log_args: &LogArgs,
    config: Option<&Path>,
) -> anyhow::Result<(Settings, PathBuf)> {
    let environment = |name: &str| std::env::var(name).ok();
    let settings = Settings::load(config, &environment)?;
    let data = if log_args.data == Path::new(crate::backend::DEFAULT_DATA) {
        settings
            .data
            .clone()
            .unwrap_or_else(|| log_args.data.clone())
    } else {
        log_args.data.clone()
    };
    let dir = settings
        .quarantine_dir
        .clone()
        .unwrap_or_else(|| data.join("quarantine"));
    Ok((settings, dir))
}

pub fn list(log_args: &LogArgs, args: ListArgs) -> anyhow::Result<ExitCode> {
    let (_, dir) = settings_and_dir(log_args, args.config.as_deref())?;
    let quarantine = Quarantine::open(&dir)?;
    let entries = quarantine.list()?;
    if args.json {
        for entry in &entries {
            println!("{}", serde_json::to_string(entry)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} quarantined in {}", entries.len(), dir.display());
    for entry in &entries {
        println!(
            "{}  {}  {}{}  field `{}`: {}",
            entry.id,
            entry.received_at,
            entry.adapter,
            entry
                .source
                .as_deref()
                .map(|source| format!(" ({source})"))
                .unwrap_or_default(),
            entry.field,
            entry.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(log_args: &LogArgs, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let (settings, dir) = settings_and_dir(log_args, args.config.as_deref())?;
    let adapters = Adapters::new(
        settings.track.clone(),
        settings.mappings.clone(),
        i64::try_from(settings.max_future_skew_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    )?;
    let quarantine = Quarantine::open(&dir)?;
    let mut log_args = log_args.clone();
    if log_args.nats.is_none() {
        log_args.nats.clone_from(&settings.nats);
    }
    let log = log_args.open().await.context(
        "the embedded log admits one process: stop `baton serve` before retrying, or use --nats",
    )?;
    let summary = quarantine.retry(&adapters, &log).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("retried        {}", summary.entries);
        println!("released       {}", summary.released);
        println!("  appended     {}", summary.appended);
        println!("  duplicates   {}", summary.duplicates);
        println!("  ignored      {}", summary.ignored);
        println!("still rejected {}", summary.still_rejected);
        println!("not written    {}", summary.not_written);
    }
    Ok(if summary.not_written > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
