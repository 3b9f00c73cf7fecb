//! What the tables are, for tools that ask: each table's key (one row per ...) and the
//! descriptions of tables and columns, taken from docs/views.md so that the catalog a BI tool
//! imports says what the documentation says. The SQL endpoint declares the keys as primary
//! keys and serves the descriptions through `pg_description` and `information_schema`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The documentation the descriptions come from.
const VIEWS_DOC: &str = include_str!("../../../docs/views.md");

/// The columns that name one row, by table: a table with one row per view (`*_totals`) has
/// none. Each is unique and never null in every snapshot (a test checks it on generated
/// histories).
const KEYS: &[(&str, &[&str])] = &[
    ("nurture", &["place", "age"]),
    ("content", &["content"]),
    ("campaigns", &["campaign"]),
    ("attribution", &["dimension", "value"]),
    ("sla_by_owner", &["owner"]),
    ("pipeline", &["stage"]),
    ("loss_reasons", &["reason"]),
    ("opportunities", &["opportunity"]),
    ("stages", &["stage"]),
    ("cohorts", &["cohort", "stage"]),
    ("person_scores", &["person"]),
    ("account_scores", &["account"]),
    ("handoffs", &["person", "sequence"]),
    ("nps", &["basis", "dimension", "value"]),
    ("advocacy", &["act"]),
    ("customer_accounts", &["account"]),
    ("retention", &["cohort", "months_since", "currency"]),
    (
        "revenue_movements",
        &["month", "movement", "reason", "currency"],
    ),
    ("concentration", &["ranking", "unit", "decile"]),
    ("loyalty", &["dimension", "value", "currency"]),
    ("referrals", &["account"]),
    ("advocates", &["person"]),
    ("attribution_models", &["model", "currency"]),
    (
        "attribution_credit",
        &["model", "dimension", "value", "currency"],
    ),
    ("attribution_ledger", &["model", "opportunity", "position"]),
    ("snapshots", &["view"]),
    ("comparison_stages", &["candidate", "stage"]),
    ("comparison_mqls", &["candidate", "mql_under"]),
];

/// The key of `table`, in order; empty when it has none.
pub fn key_of(table: &str) -> &'static [&'static str] {
    KEYS.iter()
        .find(|(name, _)| *name == table)
        .map_or(&[], |(_, key)| key)
}

/// One table's documentation.
#[derive(Debug, Default)]
pub struct TableDoc {
    /// "One row per campaign." and what the documentation says around it.
    pub description: String,
    /// Column descriptions, for the columns the documentation describes.
    pub columns: BTreeMap<String, String>,
}

/// The documentation of `table`, when docs/views.md (or this module, for `snapshots`) has it.
pub fn table_doc(table: &str) -> Option<&'static TableDoc> {
    static DOCS: OnceLock<BTreeMap<String, TableDoc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut docs = parse(VIEWS_DOC);
        docs.insert(
            "snapshots".to_owned(),
            TableDoc {
                description: "One row per served view: the live view and each candidate, with \
                              the log position its tables reflect."
                    .to_owned(),
                columns: [
                    ("view", "the view's name: its schema"),
                    ("live", "true for the live view (the tables of public)"),
                    ("definition", "the funnel definition it was folded under"),
                    ("definition_hash", "that definition's hash"),
                    ("position", "the log position its tables reflect"),
                ]
                .into_iter()
                .map(|(column, text)| (column.to_owned(), text.to_owned()))
                .collect(),
            },
        );
        docs
    })
    .get(table)
}

/// The table rows of docs/views.md: `| \`name\` | one row per | columns |`.
fn parse(doc: &str) -> BTreeMap<String, TableDoc> {
    let mut docs = BTreeMap::new();
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let [name, per, columns] = cells.as_slice() else {
            continue;
        };
        let Some(name) = name.strip_suffix('`') else {
            continue;
        };
        let columns = columns.trim_end_matches('|').trim();
        let per = plain(per);
        let description = if per == "the view" {
            "One row: the totals of the view.".to_owned()
        } else {
            format!("One row per {per}.")
        };
        let mut doc = TableDoc {
            description,
            columns: BTreeMap::new(),
        };
        for piece in pieces(columns) {
            let piece = piece.trim();
            let Some(after) = piece.strip_prefix('`') else {
                continue;
            };
            let Some((column, rest)) = after.split_once('`') else {
                continue;
            };
            if !column
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                continue;
            }
            let rest = rest.trim();
            let text = if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')'))
            {
                plain(inner)
            } else if let Some(formula) = rest.strip_prefix('=') {
                format!("{column} = {}", plain(formula.trim()))
            } else {
                plain(rest)
            };
            if !text.is_empty() {
                doc.columns.entry(column.to_owned()).or_insert(text);
            }
        }
        docs.insert(name.to_owned(), doc);
    }
    docs
}

/// The text between top-level commas and semicolons (not inside parentheses).
fn pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' | ';' if depth == 0 => {
                pieces.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// Markdown to plain text: code spans and emphasis lose their marks.
fn plain(text: &str) -> String {
    text.replace(['`', '*'], "").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_come_from_the_views_documentation() {
        let campaigns = table_doc("campaigns").expect("campaigns is documented");
        assert_eq!(campaigns.description, "One row per campaign.");
        assert_eq!(
            campaigns.columns.get("touches").map(String::as_str),
            Some("touches naming it")
        );
        let totals = table_doc("marketing_totals").expect("documented");
        assert_eq!(
            totals.columns.get("acceptance_rate").map(String::as_str),
            Some("acceptance_rate = accepted / handoffs")
        );
        assert_eq!(
            totals.columns.get("mqls").map(String::as_str),
            Some("entries into the MQL stage")
        );
        assert!(table_doc("no_such_table").is_none());
        assert_eq!(key_of("person_scores"), ["person"]);
        assert!(key_of("funnel_totals").is_empty());
    }
}
