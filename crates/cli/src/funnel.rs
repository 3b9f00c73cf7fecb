//! `baton funnel`: the shared-funnel summary of the log under a funnel definition.

use crate::backend::LogArgs;
use anyhow::Context;
use baton_core::{FunnelDefinition, FunnelSummary};
use baton_log::AnyLog;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FunnelArgs {
    /// Funnel definition file (TOML, see docs/funnels.md); the shipped default when absent.
    #[arg(long, env = "BATON_FUNNEL")]
    pub funnel: Option<PathBuf>,
    /// Print the summary as JSON (keys in docs/funnels.md).
    #[arg(long)]
    pub json: bool,
    /// The summary as the log was known at this time (RFC 3339): only the events recorded by
    /// then count, under the live definition (or --funnel). Folded in memory from the log.
    #[arg(long, value_name = "TIME")]
    pub as_known_at: Option<String>,
}

/// A knowledge time given to `flag` (`--as-known-at`, `--from`, `--to`): an RFC 3339 time.
pub fn parse_known_at(flag: &str, text: &str) -> anyhow::Result<baton_core::Timestamp> {
    baton_core::Timestamp::parse_rfc3339(text)
        .map_err(|error| anyhow::anyhow!("{flag} {text:?} is not an RFC 3339 time: {error}"))
}

/// The log folded as it was known at `at` under `definition` (the live view's when `None`,
/// the shipped default without a live view), with a progress bar on a terminal: the folded
/// projection and how many events were recorded later and left out.
pub async fn fold_known_at(
    log_args: &LogArgs,
    definition: Option<FunnelDefinition>,
    at: baton_core::Timestamp,
) -> anyhow::Result<(baton_projector::Folded, u64)> {
    let definition = match definition {
        Some(definition) => definition,
        None => {
            crate::view::live_definition(log_args)?.unwrap_or_else(FunnelDefinition::default_funnel)
        }
    };
    let log = log_args.open().await?;
    let bar = progress_bar();
    let folded = baton_projector::fold_log_known_at(&log, definition, at, |reached, head| {
        bar.set_length(head.get());
        bar.set_position(reached.get());
    })
    .await
    .with_context(|| format!("folding {} as known at {}", log.describe(), at.to_rfc3339()))?;
    bar.finish_and_clear();
    Ok(folded)
}

fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} folding [{bar:30}] {pos}/{len} events  {per_sec}  ETA {eta}",
        )
        .expect("invariant: valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Reads and validates a definition file, or the default.
pub fn load_definition(path: Option<&PathBuf>) -> anyhow::Result<FunnelDefinition> {
    load_definition_text(path).map(|(definition, _)| definition)
}

/// Reads and validates a definition file (or the default), with its text.
pub fn load_definition_text(path: Option<&PathBuf>) -> anyhow::Result<(FunnelDefinition, String)> {
    let Some(path) = path else {
        return Ok((
            FunnelDefinition::default_funnel(),
            baton_core::DEFAULT_FUNNEL_TOML.to_owned(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the funnel definition {}", path.display()))?;
    let definition = FunnelDefinition::parse(&path.display().to_string(), &text)
        .map_err(|errors| anyhow::anyhow!("invalid funnel definition:\n{errors}"))?;
    Ok((definition, text))
}

/// Folds the log under `definition`, with a progress bar on a terminal.
pub async fn summarize(
    log: &AnyLog,
    definition: FunnelDefinition,
) -> anyhow::Result<(FunnelSummary, u64)> {
    let bar = progress_bar();
    let folded = baton_projector::fold_log(log, definition, |reached, head| {
        bar.set_length(head.get());
        bar.set_position(reached.get());
    })
    .await
    .with_context(|| format!("folding {}", log.describe()))?;
    bar.finish_and_clear();
    Ok((folded.projection.summary(), folded.position.get()))
}

/// An amount with thousands grouped and the currency's own decimal places (ISO 4217):
/// `1,234,567.89` USD, `5,000` JPY, `1,234.567` KWD.
pub fn money(minor_units: i64, currency: &str) -> String {
    let text = baton_core::decimal_amount(minor_units, currency);
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (mut digits, fraction) = match unsigned.split_once('.') {
        Some((units, fraction)) => (units.to_owned(), format!(".{fraction}")),
        None => (unsigned.to_owned(), String::new()),
    };
    let mut grouped = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        grouped = format!(",{tail}{grouped}");
    }
    format!("{sign}{digits}{grouped}{fraction}")
}

pub use baton_query::comparison::summary_json;

pub fn print_summary(summary: &FunnelSummary, position: u64) {
    println!(
        "funnel {} ({}): {} events to position {}, {} people",
        summary.definition, summary.definition_hash, summary.events, position, summary.people
    );
    println!(
        "  {:<14} {:<18} {:>9} {:>9} {:>10} {:>11} {:>12} {:>9}",
        "stage",
        "owner",
        "entered",
        "current",
        "converted",
        "conversion",
        "median days",
        "returned"
    );
    for stage in &summary.stages {
        let rate = stage
            .conversion_rate()
            .map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", rate * 100.0));
        let days = stage
            .median_days_in_stage
            .map_or_else(|| "-".to_owned(), |days| format!("{days:.1}"));
        println!(
            "  {:<14} {:<18} {:>9} {:>9} {:>10} {:>11} {:>12} {:>9}",
            stage.name,
            stage.owner.as_str(),
            stage.entered,
            stage.current,
            stage.converted,
            rate,
            days,
            stage.returned
        );
    }
    let revenue: Vec<String> = summary
        .revenue_minor_units
        .iter()
        .map(|(currency, minor)| format!("{currency} {}", money(*minor, currency)))
        .collect();
    println!(
        "  won deals {}, revenue {}",
        summary.won_deals,
        if revenue.is_empty() {
            "0".to_owned()
        } else {
            revenue.join(", ")
        }
    );
    println!(
        "  hand-offs to sales {}, hand-backs to marketing {}, journeys handed back and forth {}",
        summary.handoffs, summary.handbacks, summary.ping_pong_journeys
    );
    let hours = |h: Option<f64>| h.map_or_else(|| "-".to_owned(), |h| format!("{h:.1} h"));
    let follow_up = &summary.follow_up;
    println!(
        "  follow-up SLA: {} MQLs, {} breached, {} untouched; first action median {}, p90 {}",
        follow_up.mqls,
        follow_up.breached,
        follow_up.untouched,
        hours(follow_up.median_hours_to_first_action),
        hours(follow_up.p90_hours_to_first_action)
    );
}

pub async fn run(log_args: &LogArgs, args: FunnelArgs) -> anyhow::Result<ExitCode> {
    if let Some(text) = &args.as_known_at {
        let at = parse_known_at("--as-known-at", text)?;
        let definition = args
            .funnel
            .as_ref()
            .map(|path| load_definition(Some(path)))
            .transpose()?;
        let (folded, later) = fold_known_at(log_args, definition, at).await?;
        let summary = folded.projection.summary();
        let position = folded.position.get();
        if args.json {
            let mut json = summary_json(&summary, position);
            json["as_known_at"] = serde_json::json!(at.to_rfc3339());
            json["recorded_later"] = serde_json::json!(later);
            println!("{json}");
        } else {
            println!(
                "as known at {}: {later} events recorded since are left out",
                at.to_rfc3339()
            );
            print_summary(&summary, position);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = args.funnel.as_ref() else {
        return crate::view::live_summary(log_args, args.json).await;
    };
    let definition = load_definition(Some(path))?;
    if crate::view::live_definition(log_args)?.is_some_and(|live| live.hash() == definition.hash())
    {
        return crate::view::live_summary(log_args, args.json).await;
    }
    // Another definition than the live view's: an answer folded in memory, nothing stored
    // (`baton replay` builds a stored candidate and compares it).
    let log = log_args.open().await?;
    let (summary, position) = summarize(&log, definition).await?;
    if args.json {
        println!("{}", summary_json(&summary, position));
    } else {
        print_summary(&summary, position);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_groups_thousands() {
        assert_eq!(super::money(123_456_789, "USD"), "1,234,567.89");
        assert_eq!(super::money(5, "USD"), "0.05");
        assert_eq!(super::money(-100_000, "USD"), "-1,000.00");
    }

    /// Regression: every currency had two decimal places.
    #[test]
    fn money_has_the_currency_s_decimal_places() {
        assert_eq!(super::money(5_000, "JPY"), "5,000");
        assert_eq!(super::money(-1_234_567, "KWD"), "-1,234.567");
        let json = baton_query::comparison::amounts_json(&[
            ("JPY".to_owned(), 5_000),
            ("KWD".to_owned(), 1_234_567),
        ]);
        assert_eq!(json, serde_json::json!({"JPY": "5000", "KWD": "1234.567"}));
    }
}
