//! Tables as JSON (an array of objects, keys in column order) and as CSV (RFC 4180: a header
//! row, fields quoted when they hold a comma, quote or line break, CRLF line ends, times in
//! ISO 8601), so they open cleanly in scripts, BI tools and spreadsheets.

use crate::table::{Table, Value};

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Text(text) => serde_json::Value::String(text.clone()),
        Value::Int(int) => serde_json::Value::from(*int),
        // JSON has no NaN or infinity: those become null.
        Value::Float(float) => serde_json::Number::from_f64(*float)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Time(time) => serde_json::Value::String(time.to_rfc3339()),
    }
}

/// The rows of a table as an array of objects.
pub fn rows_json(table: &Table) -> serde_json::Value {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    json_rows(&names, &table.rows)
}

/// Rows as an array of objects, keys in column order: the one JSON shape of every table and
/// of SQL answers.
pub(crate) fn json_rows(names: &[&str], rows: &[Vec<Value>]) -> serde_json::Value {
    let rows = rows.iter().map(|row| json_row(names, row)).collect();
    serde_json::Value::Array(rows)
}

/// Several tables as one object: `{"table": [rows...], ...}`.
pub fn tables_json(tables: &[Table]) -> serde_json::Value {
    let object: serde_json::Map<String, serde_json::Value> = tables
        .iter()
        .map(|table| (table.name.to_owned(), rows_json(table)))
        .collect();
    serde_json::Value::Object(object)
}

fn csv_field(out: &mut String, text: &str) {
    // A text starting like a formula would run as one in a spreadsheet (`=HYPERLINK(...)` in a
    // campaign id): prefix a quote, as spreadsheets themselves do to show text.
    let guarded;
    let text = if text.starts_with(['=', '+', '-', '@']) {
        guarded = format!("'{text}");
        guarded.as_str()
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// A table as CSV.
pub fn csv(table: &Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    csv_rows(&names, &table.rows)
}

/// A header row and rows as CSV: the one CSV shape of every table and of SQL answers.
pub(crate) fn csv_rows(names: &[&str], rows: &[Vec<Value>]) -> String {
    let mut out = csv_header(names);
    for row in rows {
        csv_row(&mut out, row);
    }
    out
}

/// The header row of a CSV answer.
pub(crate) fn csv_header(names: &[&str]) -> String {
    let mut out = String::new();
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        csv_field(&mut out, name);
    }
    out.push_str("\r\n");
    out
}

/// One row of a CSV answer, appended to `out`.
pub(crate) fn csv_row(out: &mut String, row: &[Value]) {
    for (index, value) in row.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match value {
            Value::Null => {}
            Value::Text(text) => csv_field(out, text),
            Value::Int(int) => out.push_str(&int.to_string()),
            Value::Float(float) if float.is_finite() => out.push_str(&float.to_string()),
            Value::Float(_) => {}
            Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
            Value::Time(time) => out.push_str(&time.to_rfc3339()),
        }
    }
    out.push_str("\r\n");
}

/// One row as a JSON object, keys in column order.
pub(crate) fn json_row(names: &[&str], row: &[Value]) -> serde_json::Value {
    let object: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(row)
        .map(|(name, value)| ((*name).to_owned(), json_value(value)))
        .collect();
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ColumnType;

    #[test]
    fn csv_quotes_what_needs_quoting_and_leaves_nulls_empty() {
        let table = Table {
            name: "t",
            columns: vec![("name", ColumnType::Text), ("n", ColumnType::Float)],
            rows: vec![
                vec![Value::Text("a, \"b\"".into()), Value::Float(1.5)],
                vec![Value::Null, Value::Float(f64::NAN)],
            ],
        };
        assert_eq!(csv(&table), "name,n\r\n\"a, \"\"b\"\"\",1.5\r\n,\r\n");
        let formula = Table {
            name: "t",
            columns: vec![("campaign", ColumnType::Text)],
            rows: vec![vec![Value::Text("=HYPERLINK(\"x\")".into())]],
        };
        assert_eq!(csv(&formula), "campaign\r\n\"'=HYPERLINK(\"\"x\"\")\"\r\n");
        assert_eq!(
            rows_json(&table),
            serde_json::json!([{"name": "a, \"b\"", "n": 1.5}, {"name": null, "n": null}])
        );
    }
}
