//! Client SQL that DataFusion cannot plan, rewritten before it is parsed.
//!
//! Grafana's table and column pickers find the schemas on the search path with a subquery that
//! calls `string_to_array(...)` as a table in `FROM`, which DataFusion does not support.
//! Unqualified names always resolve in `public` here (the live view), so that subquery is
//! replaced by `SELECT 'public'`, which is what it evaluates to.
//!
//! SQLAlchemy (Superset's connection layer) lists schemas with
//! `nspname NOT LIKE 'pg/_' || '%' ESCAPE '/'`, and DataFusion accepts no escape character but
//! the backslash. A `LIKE` or `ILIKE` whose pattern is literal text is rewritten to the same
//! pattern escaped with backslashes.

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Grafana's search-path subquery, as sent by its PostgreSQL data source.
const GRAFANA_SEARCH_PATH: &str = r#"SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s"#;

const SEARCH_PATH_SCHEMAS: &str = "SELECT 'public'";

/// `sql` with every known unsupported construct replaced.
pub(super) fn rewrite(sql: &str) -> Cow<'_, str> {
    let pattern = normalized(GRAFANA_SEARCH_PATH);
    let mut rewritten = Cow::Borrowed(sql);
    while let Some((start, end)) = find_ignoring_space_and_case(&rewritten, &pattern) {
        let mut text = String::with_capacity(rewritten.len());
        text.push_str(&rewritten[..start]);
        text.push_str(SEARCH_PATH_SCHEMAS);
        text.push_str(&rewritten[end..]);
        rewritten = Cow::Owned(text);
    }
    match backslash_escapes(&rewritten) {
        Some(text) => Cow::Owned(text),
        None => rewritten,
    }
}

/// `sql` again with every `LIKE`/`ILIKE` of literal pattern and an escape character other than
/// the backslash using the backslash instead; `None` when there is none (or `sql` does not
/// parse: DataFusion then reports the error itself).
fn backslash_escapes(sql: &str) -> Option<String> {
    if !sql.to_ascii_lowercase().contains("escape") {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    for statement in &mut statements {
        let _ = visit_expressions_mut(statement, |expr| {
            if let Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } = expr
                && let Some(escape) = escape_char.as_ref().and_then(|v| single_char(&v.value))
                && escape != '\\'
                && let Some(text) = literal_text(pattern)
                && let Some(escaped) = with_backslashes(&text, escape)
            {
                **pattern = Expr::value(Value::SingleQuotedString(escaped));
                *escape_char = Some(Value::SingleQuotedString("\\".to_owned()).with_empty_span());
                changed = true;
            }
            ControlFlow::<()>::Continue(())
        });
    }
    changed.then(|| {
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn single_char(value: &Value) -> Option<char> {
    let Value::SingleQuotedString(text) = value else {
        return None;
    };
    let mut chars = text.chars();
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// The text of a string literal, or of literals joined with `||`.
fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) => Some(text.clone()),
            _ => None,
        },
        Expr::Nested(inner) => literal_text(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => Some(literal_text(left)? + &literal_text(right)?),
        _ => None,
    }
}

/// A pattern escaped with `escape` as the same pattern escaped with backslashes; `None` when it
/// ends with a lone escape character (PostgreSQL refuses that, and so will DataFusion).
fn with_backslashes(pattern: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push('\\');
            out.push(chars.next()?);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Lowercase, without whitespace. The pattern has no whitespace inside string literals, so
/// removing it everywhere cannot join two tokens into a different one that still matches.
fn normalized(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The byte range of `sql` that matches `pattern` once both are normalized.
fn find_ignoring_space_and_case(sql: &str, pattern: &[char]) -> Option<(usize, usize)> {
    // (byte offset, byte end) of each character kept by `normalized`.
    let kept: Vec<(usize, usize, char)> = sql
        .char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .flat_map(|(offset, c)| {
            let end = offset + c.len_utf8();
            c.to_lowercase().map(move |lower| (offset, end, lower))
        })
        .collect();
    if pattern.is_empty() || kept.len() < pattern.len() {
        return None;
    }
    (0..=kept.len() - pattern.len()).find_map(|start| {
        let window = &kept[start..start + pattern.len()];
        window
            .iter()
            .zip(pattern)
            .all(|((_, _, c), p)| c == p)
            .then(|| (window[0].0, window[pattern.len() - 1].1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafanas_search_path_subquery_becomes_public() {
        let sql = "SELECT quote_ident(table_name) FROM information_schema.tables WHERE \
                   quote_ident(table_schema) IN (select case when trim(s[i]) = '\"$user\"' then user \
                   else trim(s[i]) end from generate_series(array_lower(string_to_array(\
                   current_setting('search_path'), ','), 1), array_upper(string_to_array(\
                   current_setting('search_path'), ','), 1)) AS i, string_to_array(\
                   current_setting('search_path'), ',') s) ORDER BY 1";
        assert_eq!(
            rewrite(sql),
            "SELECT quote_ident(table_name) FROM information_schema.tables WHERE \
             quote_ident(table_schema) IN (SELECT 'public') ORDER BY 1"
        );
    }

    #[test]
    fn like_escapes_other_than_backslash_become_backslashes() {
        // SQLAlchemy's schema listing, as psycopg2 sends it.
        let sql = "SELECT pg_catalog.pg_namespace.nspname FROM pg_catalog.pg_namespace WHERE \
                   (pg_catalog.pg_namespace.nspname NOT LIKE 'pg/_' || '%' ESCAPE '/') \
                   ORDER BY pg_catalog.pg_namespace.nspname";
        assert_eq!(
            rewrite(sql),
            "SELECT pg_catalog.pg_namespace.nspname FROM pg_catalog.pg_namespace WHERE \
             (pg_catalog.pg_namespace.nspname NOT LIKE 'pg\\_%' ESCAPE '\\') \
             ORDER BY pg_catalog.pg_namespace.nspname"
        );
        assert_eq!(
            with_backslashes(r"a!%b\c!!", '!').as_deref(),
            Some(r"a\%b\\c\!")
        );
        assert_eq!(with_backslashes("ends with !", '!'), None);
        // A backslash escape, or a pattern that is not literal, is left to DataFusion.
        for sql in [
            r"SELECT 1 WHERE 'a' LIKE 'a\_' ESCAPE '\'",
            "SELECT 1 WHERE 'a' LIKE lower('A') ESCAPE '/'",
            "SELECT 'escape' LIKE 'e%'",
        ] {
            assert!(matches!(rewrite(sql), Cow::Borrowed(_)), "{sql}");
        }
    }

    #[test]
    fn other_sql_is_untouched() {
        let sql = "select current_setting('search_path')";
        assert!(matches!(rewrite(sql), Cow::Borrowed(_)));
    }
}
