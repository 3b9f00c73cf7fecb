//! Client SQL that DataFusion cannot plan, rewritten before it is parsed.
//!
//! Grafana's table and column pickers find the schemas on the search path with a subquery that
//! calls `string_to_array(...)` as a table in `FROM`, which DataFusion does not support.
//! Unqualified names always resolve in `public` here (the live view), so that subquery is
//! replaced by `SELECT 'public'`, which is what it evaluates to.

use std::borrow::Cow;

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
    rewritten
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
    fn other_sql_is_untouched() {
        let sql = "select current_setting('search_path')";
        assert!(matches!(rewrite(sql), Cow::Borrowed(_)));
    }
}
