//! `baton restate`: why the figures changed between two knowledge times, by cause
//! (`docs/funnels.md`, *Restating*).

use crate::backend::LogArgs;
use crate::funnel::{load_definition, money, parse_known_at};
use anyhow::Context;
use baton_core::restate::{Cause, Restatement, restate};
use baton_core::{FunnelDefinition, Timestamp};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RestateArgs {
    /// The first knowledge time (RFC 3339): the figures as the log was known then.
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// The second knowledge time (RFC 3339); now when absent.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// The definition at the second time, when it differs from the live view's: its
    /// difference is the last cause.
    #[arg(long, env = "BATON_FUNNEL")]
    pub funnel: Option<PathBuf>,
    /// Print the restatement as JSON.
    #[arg(long)]
    pub json: bool,
    /// Event ids listed per cause in the text output.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

pub async fn run(log_args: &LogArgs, args: RestateArgs) -> anyhow::Result<ExitCode> {
    let from = parse_known_at("--from", &args.from)?;
    let to = match &args.to {
        Some(text) => parse_known_at("--to", text)?,
        None => Timestamp::from_unix_millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock")?
                .as_millis() as i64,
        ),
    };
    anyhow::ensure!(
        from <= to,
        "--from {} is after --to {}: restate from the earlier time",
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    let live =
        crate::view::live_definition(log_args)?.unwrap_or_else(FunnelDefinition::default_funnel);
    let other = args
        .funnel
        .as_ref()
        .map(|path| load_definition(Some(path)))
        .transpose()?
        .filter(|definition| definition.hash() != live.hash());
    let log = log_args.open().await?;
    let (folded, later) = baton_projector::fold_log_between(&log, live, from, to)
        .await
        .with_context(|| format!("folding {}", log.describe()))?;
    let refolded = match other {
        Some(definition) => Some(
            baton_projector::fold_log_known_at(&log, definition, to, |_, _| ())
                .await
                .with_context(|| format!("folding {}", log.describe()))?
                .0
                .projection,
        ),
        None => None,
    };
    let restatement = restate(folded.projection, &later, from, to, refolded.as_ref());
    if args.json {
        println!("{}", json(&restatement));
    } else {
        print(&restatement, args.limit);
    }
    Ok(ExitCode::SUCCESS)
}

fn shown(value: i64, currency: Option<&str>) -> String {
    match currency {
        Some(currency) => money(value, currency),
        None => value.to_string(),
    }
}

fn json(restatement: &Restatement) -> serde_json::Value {
    let figures: Vec<serde_json::Value> = restatement
        .figures
        .iter()
        .map(|row| {
            let amount = |value: i64| match &row.figure.currency {
                Some(currency) => serde_json::json!(baton_core::decimal_amount(value, currency)),
                None => serde_json::json!(value),
            };
            let mut moved = serde_json::Map::new();
            for (cause, value) in Cause::ALL.iter().zip(row.moved) {
                moved.insert(cause.as_str().to_owned(), amount(value));
            }
            serde_json::json!({
                "figure": row.figure.name,
                "currency": row.figure.currency,
                "from": amount(row.from),
                "to": amount(row.to),
                "moved": moved,
            })
        })
        .collect();
    let events: serde_json::Map<String, serde_json::Value> = restatement
        .events
        .iter()
        .map(|(cause, events)| {
            let list: Vec<serde_json::Value> = events
                .iter()
                .map(|(id, kind, at)| {
                    serde_json::json!({"event_id": id.to_string(), "kind": kind.name(), "occurred_at": at.to_rfc3339()})
                })
                .collect();
            (cause.as_str().to_owned(), serde_json::json!(list))
        })
        .collect();
    serde_json::json!({
        "from": restatement.from.to_rfc3339(),
        "to": restatement.to.to_rfc3339(),
        "figures": figures,
        "events": events,
    })
}

fn print(restatement: &Restatement, limit: usize) {
    println!(
        "figures as known at {}, restated as known at {}",
        restatement.from.to_rfc3339(),
        restatement.to.to_rfc3339()
    );
    if restatement.figures.is_empty() {
        println!("  nothing changed");
        return;
    }
    let name_of = |row: &baton_core::restate::Restated| match &row.figure.currency {
        Some(currency) => format!("{} ({currency})", row.figure.name),
        None => row.figure.name.clone(),
    };
    let width = restatement
        .figures
        .iter()
        .map(|row| name_of(row).chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut header = format!("  {:<width$} {:>14}", "figure", "from");
    for cause in Cause::ALL {
        header.push_str(&format!(" {:>12}", cause.as_str()));
    }
    header.push_str(&format!(" {:>14}", "to"));
    println!("{header}");
    for row in &restatement.figures {
        let currency = row.figure.currency.as_deref();
        let name = name_of(row);
        let mut line = format!("  {name:<width$} {:>14}", shown(row.from, currency));
        for moved in row.moved {
            let cell = if moved == 0 {
                "-".to_owned()
            } else {
                format!("{:+}", moved).chars().take(1).collect::<String>()
                    + &shown(moved.abs(), currency)
            };
            line.push_str(&format!(" {cell:>12}"));
        }
        line.push_str(&format!(" {:>14}", shown(row.to, currency)));
        println!("{line}");
    }
    println!();
    for (cause, events) in &restatement.events {
        let ids: Vec<String> = events
            .iter()
            .take(limit)
            .map(|(id, kind, _)| format!("{id} ({})", kind.name()))
            .collect();
        let more = events.len().saturating_sub(limit);
        println!(
            "  {}: {} events{}{}",
            cause.as_str(),
            events.len(),
            if ids.is_empty() { "" } else { ": " },
            ids.join(", ")
                + &if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
        );
    }
}
