//! `baton log stat`: head position and event count, and with `--verify` every stored block
//! checked against its checksum; `baton log repair`: the one command that cuts damage off the
//! embedded log, saying what it cut.

use crate::backend::LogArgs;
use anyhow::Context;
use baton_log::{AnyLog, EventLog};
use futures::StreamExt;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatArgs {
    /// Print `{"head":N,"events":N}` (with `--verify`, also what was checked and found).
    #[arg(long)]
    json: bool,
    /// Read every stored event and check it: block checksums on the embedded log, decoding
    /// on both. Exits 1 when anything is damaged, naming where.
    #[arg(long)]
    verify: bool,
}

pub async fn run(log_args: &LogArgs, args: StatArgs) -> anyhow::Result<ExitCode> {
    // Beside a running `baton serve` or `baton project` on the embedded log, too: nothing
    // is cut or written by a command that only reads.
    let log = log_args.open_to_read().await?;
    let stat =
        baton_log::retry_transient("reading the log's head", log_args.patience(), || log.stat())
            .await
            .with_context(|| format!("reading the head of {}", log.describe()))?;
    let damaged = if args.verify {
        Some(verify(&log, stat.head).await?)
    } else {
        None
    };
    if args.json {
        let mut value = serde_json::json!({"head": stat.head.get(), "events": stat.events});
        if let Some(damaged) = &damaged {
            value["verified"] = damaged.is_empty().into();
            value["damaged"] = damaged.clone().into();
        }
        println!("{value}");
    } else {
        println!("{}", log.describe());
        println!("  head    {}", stat.head);
        println!("  events  {}", stat.events);
        if let Some(damaged) = &damaged {
            if damaged.is_empty() {
                println!("  verified: every event reads and matches its checksum");
            }
            for what in damaged {
                println!("  damaged: {what}");
            }
        }
    }
    let failed = damaged.is_some_and(|damaged| !damaged.is_empty());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Everything damaged up to `head`: every block whose checksum fails (embedded), then the
/// first event that does not decode, if any.
async fn verify(log: &AnyLog, head: baton_log::Position) -> anyhow::Result<Vec<String>> {
    let mut damaged = match log {
        AnyLog::Embedded(embedded) => embedded.verify().await?.1,
        AnyLog::JetStream(_) => Vec::new(),
    };
    if !damaged.is_empty() {
        return Ok(damaged);
    }
    let mut records = log.read(baton_log::Position::new(1)).await?;
    let mut read = 0u64;
    while let Some(record) = records.next().await {
        match record {
            Ok(_) => read += 1,
            Err(error) => {
                damaged.push(error.to_string());
                return Ok(damaged);
            }
        }
    }
    if read < head.get() {
        damaged.push(format!(
            "{read} events read, but the head is at position {}",
            head.get()
        ));
    }
    Ok(damaged)
}

#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// Print what was cut as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn repair(log_args: &LogArgs, args: RepairArgs) -> anyhow::Result<ExitCode> {
    if log_args.nats.is_some() {
        anyhow::bail!(
            "baton log repair works on the embedded log; a JetStream stream is repaired by its servers (replicas)"
        );
    }
    let cut = baton_log::EmbeddedLog::repair(baton_log::EmbeddedConfig::new(&log_args.data))
        .await
        .with_context(|| format!("repairing the embedded log in {}", log_args.data.display()))?;
    if args.json {
        let value = match &cut {
            None => serde_json::json!({"cut": null}),
            Some(cut) => serde_json::json!({"cut": {
                "segment": cut.segment.display().to_string(),
                "from_byte": cut.from_byte,
                "bytes": cut.bytes,
                "from_position": cut.from_position,
                "kept_in": cut.kept_in.display().to_string(),
                "reason": cut.reason,
            }}),
        };
        println!("{value}");
    } else {
        match &cut {
            None => {
                println!("nothing to repair: the last append is whole and matches its checksums")
            }
            Some(cut) => println!(
                "cut {} bytes off {} from byte {} (positions from {} on): {}\n  the bytes are kept in {}; send the events of that append again",
                cut.bytes,
                cut.segment.display(),
                cut.from_byte,
                cut.from_position,
                cut.reason,
                cut.kept_in.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
