//! `baton report`: the marketing, sales and shared-funnel views as tables, printed for people
//! (aligned, the first rows of each), or as JSON or CSV for scripts and spreadsheets.

use crate::backend::LogArgs;
use anyhow::Context;
use baton_query::{Table, Value, ViewKind};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Which view: marketing, sales, funnel, customer or attribution.
    #[arg(value_parser = ["marketing", "sales", "funnel", "customer", "attribution"])]
    pub view: String,
    /// Only this table (e.g. `campaigns`, `sla_by_owner`, `cohorts`; docs/views.md lists them).
    #[arg(long)]
    pub table: Option<String>,
    /// A stored candidate view instead of the live one (as it stands; not caught up).
    #[arg(long = "view", value_name = "NAME")]
    pub view_name: Option<String>,
    /// Rows per table in the text output.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Print JSON: an object of tables (or, with --table, the table's rows).
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print one table (--table) as CSV.
    #[arg(long, requires = "table")]
    pub csv: bool,
    /// The view as the log was known at this time (RFC 3339): only the events recorded by
    /// then count, under the live definition. Folded in memory from the log.
    #[arg(long, value_name = "TIME", conflicts_with = "view_name")]
    pub as_known_at: Option<String>,
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::Text(text) => text.clone(),
        Value::Int(int) => int.to_string(),
        // Not "-0.00" for a small negative (a fit of -0.001).
        Value::Float(float) if float.abs() < 0.005 => "0.00".to_owned(),
        Value::Float(float) => format!("{float:.2}"),
        Value::Bool(flag) => flag.to_string(),
        Value::Time(time) => time.to_rfc3339()[..16].replace('T', " "),
    }
}

fn print_table(table: &Table, limit: usize) {
    print_table_of(table, limit, Some(table.rows.len()));
}

/// [`print_table`] of the first rows of a table of `total` rows (`None`: not counted).
fn print_table_of(table: &Table, limit: usize, total: Option<usize>) {
    let shown: Vec<Vec<String>> = table
        .rows
        .iter()
        .take(limit)
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(index, (name, _))| {
            shown
                .iter()
                .map(|row| row[index].chars().count())
                .chain([name.len()])
                .max()
                .unwrap_or(0)
                .min(40)
        })
        .collect();
    match total {
        Some(total) => {
            let more = total.saturating_sub(limit);
            println!(
                "{} ({} rows{})",
                table.name,
                total,
                if more > 0 {
                    format!(", first {limit} shown")
                } else {
                    String::new()
                }
            );
        }
        None => println!(
            "{} (first {} rows shown; --table {} --csv writes every row)",
            table.name,
            limit.min(table.rows.len()),
            table.name
        ),
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(text, width)| {
                let text: String = text.chars().take(*width).collect();
                format!("{text:<width$}")
            })
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(table.columns.iter().map(|(n, _)| (*n).to_owned()).collect());
    for row in shown {
        line(row);
    }
    println!();
}

pub async fn run(log_args: &LogArgs, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let kind = ViewKind::from_name(&args.view).expect("invariant: clap checked the name");
    let known_at = args
        .as_known_at
        .as_deref()
        .map(|text| crate::funnel::parse_known_at("--as-known-at", text))
        .transpose()?;
    let (projection, position, name) = match (&args.view_name, known_at) {
        (_, Some(at)) => {
            let (folded, _) = crate::funnel::fold_known_at(log_args, None, at).await?;
            let name = format!("as known at {}", at.to_rfc3339());
            (folded.projection, folded.position, name)
        }
        (Some(name), None) => {
            let store = baton_projector::ViewStore::open(log_args.views_dir())?;
            let (projection, position) = store
                .open_view(name)?
                .load()
                .with_context(|| format!("loading view {name:?}"))?;
            (projection, position, name.clone())
        }
        (None, None) => {
            let log = log_args.open().await?;
            let outcome = crate::view::live_caught_up(log_args, &log).await?;
            let store = baton_projector::ViewStore::open(log_args.views_dir())?;
            let name = store.live()?.unwrap_or_default();
            (outcome.projection, outcome.checkpoint, name)
        }
    };
    let mut tables = baton_query::tables(&projection, kind);
    if let Some(wanted) = &args.table {
        let names: Vec<&str> = tables.iter().map(|t| t.name).collect();
        let Some(index) = tables.iter().position(|t| t.name == wanted) else {
            anyhow::bail!(
                "the {} view has no table {wanted:?}; its tables: {}",
                kind.as_str(),
                names.join(", ")
            );
        };
        tables = vec![tables.swap_remove(index)];
    }
    let ledger = tables
        .iter()
        .position(|table| table.name == "attribution_ledger");
    if let Some(at) = ledger {
        return write_with_ledger(&args, &projection, tables, at, (name, position, known_at));
    }
    if args.csv {
        print!("{}", baton_query::csv(&tables[0]));
    } else if args.json {
        let body = match (&args.table, tables.as_slice()) {
            (Some(_), [table]) => baton_query::rows_json(table),
            _ => baton_query::tables_json(&tables),
        };
        let mut out = serde_json::json!({"view": name, "position": position.get(), "tables": body});
        if let Some(at) = known_at {
            out["as_known_at"] = serde_json::json!(at.to_rfc3339());
        }
        println!("{out}");
    } else {
        println!(
            "{} view of {name:?} at log position {position}\n",
            kind.as_str()
        );
        for table in &tables {
            print_table(table, args.limit);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opportunities per part of the ledger written.
const LEDGER_DEALS_PER_PART: usize = 256;

/// Writes the tables with the attribution ledger (at `at`, its columns only) filled a part
/// at a time, so that the whole ledger is never held: several rows per touch of every
/// credited opportunity.
fn write_with_ledger(
    args: &ReportArgs,
    projection: &baton_core::FunnelProjection,
    mut tables: Vec<Table>,
    at: usize,
    (name, position, known_at): (
        String,
        baton_projector::Position,
        Option<baton_core::Timestamp>,
    ),
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let rows = projection.person_rows();
    let deals = rows.attribution_ledger_deals();
    let parts = (0..deals.div_ceil(LEDGER_DEALS_PER_PART)).map(|part| {
        let from = part * LEDGER_DEALS_PER_PART;
        baton_query::ledger_table(rows.attribution_ledger_part(from, from + LEDGER_DEALS_PER_PART))
    });
    let ledger = tables.remove(at);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if args.csv {
        // `--csv` needs `--table`: the ledger alone.
        write!(out, "{}", baton_query::csv(&ledger))?;
        for part in parts {
            let text = baton_query::csv(&part);
            // Each part's CSV starts with the header, written once above.
            write!(
                out,
                "{}",
                text.split_once('\n').map_or("", |(_, rows)| rows)
            )?;
        }
    } else if args.json {
        let rows_of =
            |out: &mut std::io::BufWriter<std::io::StdoutLock<'_>>| -> anyhow::Result<()> {
                write!(out, "[")?;
                let mut first = true;
                for part in parts {
                    if let serde_json::Value::Array(rows) = baton_query::rows_json(&part) {
                        for row in rows {
                            write!(out, "{}{row}", if first { "" } else { "," })?;
                            first = false;
                        }
                    }
                }
                write!(out, "]")?;
                Ok(())
            };
        let mut head = serde_json::json!({"view": name, "position": position.get()});
        if let Some(at) = known_at {
            head["as_known_at"] = serde_json::json!(at.to_rfc3339());
        }
        let head = head.to_string();
        // `{"view":..,"position":..` then the tables, the ledger last.
        write!(out, "{},\"tables\":", &head[..head.len() - 1])?;
        if args.table.is_some() {
            rows_of(&mut out)?;
        } else {
            let others = baton_query::tables_json(&tables).to_string();
            write!(
                out,
                "{},\"attribution_ledger\":",
                &others[..others.len() - 1]
            )?;
            rows_of(&mut out)?;
            write!(out, "}}")?;
        }
        writeln!(out, "}}")?;
    } else {
        drop(out);
        println!("attribution view of {name:?} at log position {position}\n");
        for table in &tables {
            print_table(table, args.limit);
        }
        // The ledger's first rows: parts until there are enough.
        let mut shown = ledger;
        for part in parts {
            shown.rows.extend(part.rows);
            if shown.rows.len() > args.limit {
                break;
            }
        }
        print_table_of(&shown, args.limit, None);
        return Ok(ExitCode::SUCCESS);
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_negative_prints_as_zero_not_minus_zero() {
        assert_eq!(cell(&Value::Float(-0.001)), "0.00");
        assert_eq!(cell(&Value::Float(0.004)), "0.00");
        assert_eq!(cell(&Value::Float(-1.234)), "-1.23");
        assert_eq!(cell(&Value::Float(0.005)), "0.01");
    }
}
