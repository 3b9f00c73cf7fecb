//! `baton demo`: a seeded synthetic B2B history in the embedded log, projected into the live
//! view (kept in `DATA/views`), with the summary printed.

use crate::backend::LogArgs;
use crate::funnel::print_summary;
use anyhow::Context;
use baton_log::EventLog;
use baton_producer::{History, HistoryConfig};
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Accounts in the generated history (about 60 events each).
    #[arg(long, default_value_t = 2_000)]
    accounts: u64,
    /// Seed of the generated history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Address the demo serves HTTP on once the views are built.
    #[arg(long, default_value = crate::settings::DEFAULT_HTTP)]
    http: String,
    /// Address the demo serves SQL on (`off` for none).
    #[arg(long, default_value = crate::settings::DEFAULT_SQL)]
    sql: String,
    /// Print the summary and exit instead of serving.
    #[arg(long)]
    no_serve: bool,
}

pub async fn run(log_args: &LogArgs, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let log = log_args.open().await?;
    let before = log.stat().await?;
    if before.events > 0 {
        eprintln!(
            "{} already holds {} events; folding them (remove the directory for a fresh demo)",
            log.describe(),
            before.events
        );
    } else {
        eprintln!(
            "generating {} accounts (seed {}) into {}",
            args.accounts,
            args.seed,
            log.describe()
        );
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(args.accounts);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} appending [{bar:30}] {pos}/{len} accounts  {msg}  ETA {eta}",
                )
                .expect("invariant: valid template")
                .progress_chars("=> "),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut history = History::new(HistoryConfig::new(args.seed, args.accounts));
        let mut appended = 0u64;
        loop {
            let batch: Vec<_> = history.by_ref().take(5_000).collect();
            if batch.is_empty() {
                break;
            }
            let outcomes = log.append(batch).await.context("appending the history")?;
            appended += outcomes
                .iter()
                .filter(|o| matches!(o, baton_log::AppendOutcome::Appended(_)))
                .count() as u64;
            bar.set_position(history.accounts_done());
            bar.set_message(format!("{appended} events"));
        }
        bar.finish_and_clear();
        eprintln!(
            "appended {appended} events (retried deliveries in the history were stored once)"
        );
    }
    let outcome = crate::view::live_caught_up(log_args, &log).await?;
    print_summary(&outcome.projection.summary(), outcome.checkpoint.get());
    println!();
    println!(
        "next: `baton log read --limit 5` shows stored events; `baton funnel --json` the summary as JSON;"
    );
    println!(
        "      `baton replay --funnel my.toml` builds the history under your own definition and compares it (docs/funnels.md);"
    );
    println!(
        "      `baton report marketing|sales|funnel|customer` the views as tables (docs/views.md)."
    );
    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    // Serving opens the log again (sled allows one handle per process and database).
    drop(log);
    println!();
    // The addresses actually bound (port 0 picks one) are printed by serve.
    println!("serving the views, SQL and the collector; the addresses follow (Ctrl-C stops)");
    crate::serve::run(
        log_args,
        crate::serve::ServeArgs::on(args.http, Some(args.sql)),
    )
    .await
}
