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
//!
//! SQLAlchemy reflects columns with correlated scalar subqueries that select one value without
//! an aggregate (`(SELECT typcollation FROM pg_type WHERE oid = atttypid)`); DataFusion plans a
//! correlated scalar subquery only when it is aggregated. Such a subquery is rewritten to select
//! `max(...)` of its value: the same value when it finds one row, NULL when it finds none (as in
//! PostgreSQL). Where PostgreSQL would fail on several rows, this answers the greatest. Its
//! subquery on `pg_sequence` for identity columns is NULL: Baton's tables have no sequences.
//!
//! SQLAlchemy reads the columns of indexes and primary keys with `unnest(indkey)` and
//! `generate_subscripts(indkey, 1)`. `pg_index`'s vector columns are text here, so both are
//! rewritten to work on the numbers in that text. It also reads `pg_class.reloptions`, which
//! Baton's catalog lacks: it is NULL for every view, and written so.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, JoinOperator, Query, SelectItem, SetExpr, Statement, TableFactor, Value, VisitMut,
    VisitorMut, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

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
    if let Some(text) = distinct_from_operands_parenthesized(sql) {
        rewritten = Cow::Owned(text);
    }
    while let Some((start, end)) = find_ignoring_space_and_case(&rewritten, &pattern) {
        let mut text = String::with_capacity(rewritten.len());
        text.push_str(&rewritten[..start]);
        text.push_str(SEARCH_PATH_SCHEMAS);
        text.push_str(&rewritten[end..]);
        rewritten = Cow::Owned(text);
    }
    match rewritten_tree(&rewritten) {
        Some(text) => Cow::Owned(text),
        None => rewritten,
    }
}

/// `sql` with every `a IS [NOT] DISTINCT FROM b` in parentheses; `None` when it has none (or
/// does not tokenize).
///
/// The SQL parser reads the right operand of `IS [NOT] DISTINCT FROM` as a whole expression,
/// so `a IS DISTINCT FROM b OR c` was `a IS DISTINCT FROM (b OR c)`, a different answer from
/// PostgreSQL's `(a IS DISTINCT FROM b) OR c` with no error (parentheses around `b` alone do
/// not help: the parser goes on past them). In PostgreSQL both operands bind tighter than
/// `IS`: outside parentheses, the right one ends at `AND` (but `BETWEEN`'s own), `OR`, `IS`, a
/// `NOT` that does not start `NOT IN`/`LIKE`/`ILIKE`/`BETWEEN`/`SIMILAR`, a comma, a closing
/// parenthesis, a keyword that ends an expression (`THEN`, `FROM`, `AS`, ...) or an alias; the
/// left one starts after the same kind of boundary (`IS` is left-associative, so an earlier
/// `IS ...` belongs to it). The parentheses are written into the text as sent, so everything
/// else (literals, comments, parameters) stays byte for byte.
fn distinct_from_operands_parenthesized(sql: &str) -> Option<String> {
    if !sql.to_ascii_lowercase().contains("distinct") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let tokens: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect();
    let keyword = |index: usize, wanted: Keyword| {
        tokens
            .get(index)
            .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.keyword == wanted && w.quote_style.is_none()))
    };
    let offsets = LineOffsets::of(sql);
    let mut inserts: Vec<(usize, char)> = Vec::new();
    for index in 0..tokens.len() {
        if !keyword(index, Keyword::IS) {
            continue;
        }
        let mut start = index + 1;
        if keyword(start, Keyword::NOT) {
            start += 1;
        }
        if !(keyword(start, Keyword::DISTINCT) && keyword(start + 1, Keyword::FROM)) {
            continue;
        }
        start += 2;
        let end = operand_end(&tokens, start);
        let first = operand_start(&tokens, index);
        if end == start || first == index {
            continue; // An operand is missing: the parser reports the error itself.
        }
        inserts.push((offsets.byte(&tokens[first].span.start), '('));
        inserts.push((offsets.byte(&tokens[end - 1].span.end), ')'));
    }
    if inserts.is_empty() {
        return None;
    }
    // Applied from the end, so earlier offsets stay right; at one offset a `)` goes before a
    // `(` (`b) OR (c` never happens, but `(b)` of one operand may end where another starts).
    inserts.sort_by_key(|(at, mark)| (*at, *mark == '('));
    let mut text = sql.to_owned();
    for (at, mark) in inserts.into_iter().rev() {
        text.insert(at, mark);
    }
    Some(text)
}

/// Whether `token` is the unquoted keyword `keyword`.
fn is_keyword(token: Option<&&TokenWithSpan>, keyword: Keyword) -> bool {
    token.is_some_and(
        |t| matches!(&t.token, Token::Word(w) if w.keyword == keyword && w.quote_style.is_none()),
    )
}

/// The index of the first token of the left operand of the `IS` at `is`.
fn operand_start(tokens: &[&TokenWithSpan], is: usize) -> usize {
    // Keywords an expression follows: where a left operand starts, going left.
    const STARTS: &[Keyword] = &[
        Keyword::OR,
        Keyword::SELECT,
        Keyword::WHERE,
        Keyword::WHEN,
        Keyword::THEN,
        Keyword::ELSE,
        Keyword::CASE,
        Keyword::HAVING,
        Keyword::ON,
        Keyword::BY,
        Keyword::RETURNING,
        Keyword::ALL,
        Keyword::SET,
        Keyword::LIMIT,
        Keyword::OFFSET,
        Keyword::USING,
    ];
    let joins_not = |index: usize| {
        [
            Keyword::IN,
            Keyword::LIKE,
            Keyword::ILIKE,
            Keyword::BETWEEN,
            Keyword::SIMILAR,
        ]
        .into_iter()
        .any(|keyword| is_keyword(tokens.get(index + 1), keyword))
    };
    // Whether the `AND` at `and` is a `BETWEEN`'s: a `BETWEEN` comes before it, with nothing
    // that ends an operand in between.
    let betweens_and = |and: usize| {
        let mut depth = 0usize;
        for index in (0..and).rev() {
            match &tokens[index].token {
                Token::RParen | Token::RBracket => depth += 1,
                Token::LParen | Token::LBracket if depth == 0 => return false,
                Token::LParen | Token::LBracket => depth -= 1,
                Token::Comma if depth == 0 => return false,
                Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                    if w.keyword == Keyword::BETWEEN {
                        return true;
                    }
                    if [Keyword::AND, Keyword::OR].contains(&w.keyword)
                        || STARTS.contains(&w.keyword)
                    {
                        return false;
                    }
                }
                _ => {}
            }
        }
        false
    };
    let mut depth = 0usize;
    let mut index = is;
    while index > 0 {
        let at = index - 1;
        let token = tokens[at];
        match &token.token {
            Token::RParen | Token::RBracket => depth += 1,
            Token::LParen | Token::LBracket => {
                if depth == 0 {
                    return index;
                }
                depth -= 1;
            }
            Token::Comma | Token::SemiColon if depth == 0 => return index,
            Token::Word(word) if word.quote_style.is_none() && word.keyword == Keyword::END => {
                depth += 1;
            }
            Token::Word(word)
                if word.quote_style.is_none() && word.keyword == Keyword::CASE && depth > 0 =>
            {
                depth -= 1;
            }
            Token::Word(word)
                if depth == 0
                    && word.quote_style.is_none()
                    && !matches!(
                        at.checked_sub(1).map(|i| &tokens[i].token),
                        Some(Token::Period)
                    ) =>
            {
                let keyword = word.keyword;
                // An earlier `IS [NOT] DISTINCT FROM` belongs to this operand.
                let part_of_distinct_from = (keyword == Keyword::FROM
                    && is_keyword(tokens.get(at.wrapping_sub(1)), Keyword::DISTINCT))
                    || (keyword == Keyword::DISTINCT
                        && is_keyword(tokens.get(at + 1), Keyword::FROM));
                if part_of_distinct_from {
                    // Goes on.
                } else if keyword == Keyword::AND {
                    if !betweens_and(at) {
                        return index;
                    }
                } else if keyword == Keyword::NOT {
                    if !joins_not(at) {
                        return index;
                    }
                } else if STARTS.contains(&keyword) || keyword == Keyword::DISTINCT {
                    return index;
                }
            }
            _ => {}
        }
        index = at;
    }
    0
}

/// The index just past the right operand of `IS [NOT] DISTINCT FROM` starting at `start`.
fn operand_end(tokens: &[&TokenWithSpan], start: usize) -> usize {
    // Keywords that end an expression where they stand.
    const ENDS: &[Keyword] = &[
        Keyword::OR,
        Keyword::IS,
        Keyword::THEN,
        Keyword::WHEN,
        Keyword::ELSE,
        Keyword::FROM,
        Keyword::WHERE,
        Keyword::GROUP,
        Keyword::HAVING,
        Keyword::ORDER,
        Keyword::LIMIT,
        Keyword::OFFSET,
        Keyword::UNION,
        Keyword::EXCEPT,
        Keyword::INTERSECT,
        Keyword::AS,
        Keyword::ASC,
        Keyword::DESC,
        Keyword::NULLS,
        Keyword::ON,
        Keyword::USING,
        Keyword::JOIN,
        Keyword::INNER,
        Keyword::LEFT,
        Keyword::RIGHT,
        Keyword::FULL,
        Keyword::CROSS,
        Keyword::WINDOW,
        Keyword::FETCH,
        Keyword::FOR,
        Keyword::RETURNING,
        Keyword::ROWS,
        Keyword::RANGE,
        Keyword::INTO,
    ];
    // Keywords that go on an operand (operators and their parts), not aliases.
    const CONTINUES: &[Keyword] = &[
        Keyword::IN,
        Keyword::LIKE,
        Keyword::ILIKE,
        Keyword::SIMILAR,
        Keyword::TO,
        Keyword::BETWEEN,
        Keyword::ESCAPE,
        Keyword::COLLATE,
        Keyword::AT,
        Keyword::TIME,
        Keyword::ZONE,
        Keyword::OVER,
        Keyword::FILTER,
        Keyword::WITHIN,
        Keyword::SYMMETRIC,
    ];
    let mut depth = 0usize;
    let mut betweens = 0usize;
    // Whether the token before was the end of an operand: a word after one is an alias.
    let mut after_operand = false;
    let mut index = start;
    while let Some(token) = tokens.get(index) {
        match &token.token {
            Token::LParen | Token::LBracket => {
                depth += 1;
                after_operand = false;
            }
            Token::RParen | Token::RBracket => {
                if depth == 0 {
                    return index;
                }
                depth -= 1;
                after_operand = true;
            }
            Token::Comma | Token::SemiColon if depth == 0 => return index,
            Token::Word(word) if word.quote_style.is_none() && word.keyword == Keyword::CASE => {
                depth += 1;
                after_operand = false;
            }
            Token::Word(word) if word.quote_style.is_none() && word.keyword == Keyword::END => {
                if depth == 0 {
                    return index;
                }
                depth -= 1;
                after_operand = true;
            }
            // A name after a `.` is a name, whatever word it is (`t.range`).
            Token::Word(word)
                if depth == 0
                    && word.quote_style.is_none()
                    && !matches!(
                        index.checked_sub(1).map(|i| &tokens[i].token),
                        Some(Token::Period)
                    ) =>
            {
                let keyword = word.keyword;
                if keyword == Keyword::AND {
                    if betweens == 0 {
                        return index;
                    }
                    betweens -= 1;
                    after_operand = false;
                } else if keyword == Keyword::NOT {
                    let next = tokens.get(index + 1).map(|t| &t.token);
                    let joins = matches!(next, Some(Token::Word(w)) if [
                        Keyword::IN,
                        Keyword::LIKE,
                        Keyword::ILIKE,
                        Keyword::BETWEEN,
                        Keyword::SIMILAR,
                    ]
                    .contains(&w.keyword));
                    if !joins {
                        return index;
                    }
                    after_operand = false;
                } else if ENDS.contains(&keyword) {
                    return index;
                } else if CONTINUES.contains(&keyword) {
                    betweens += usize::from(keyword == Keyword::BETWEEN);
                    after_operand = false;
                } else if after_operand {
                    return index; // An alias.
                } else {
                    after_operand = true;
                }
            }
            Token::Word(_) | Token::Number(..) | Token::Placeholder(_) => after_operand = true,
            Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::HexStringLiteral(_) => after_operand = true,
            _ => after_operand = false,
        }
        index += 1;
    }
    index
}

/// Byte offsets of the tokenizer's (line, column) locations, columns counted in characters.
struct LineOffsets<'a> {
    sql: &'a str,
    /// The byte offset each line starts at.
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn of(sql: &'a str) -> LineOffsets<'a> {
        let starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        LineOffsets { sql, starts }
    }

    fn byte(&self, location: &datafusion::sql::sqlparser::tokenizer::Location) -> usize {
        let line = usize::try_from(location.line.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(&start) = self.starts.get(line) else {
            return self.sql.len();
        };
        let column = usize::try_from(location.column.saturating_sub(1)).unwrap_or(usize::MAX);
        self.sql[start..]
            .char_indices()
            .nth(column)
            .map_or(self.sql.len(), |(at, _)| start + at)
    }
}

/// `sql` again with every rewrite of its syntax tree applied; `None` when none applies (or
/// `sql` does not parse: DataFusion then reports the error itself).
fn rewritten_tree(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let escapes = lower.contains("escape");
    let subqueries = lower.matches("select").nth(1).is_some();
    let vectors = lower.contains("unnest") || lower.contains("generate_subscripts");
    let missing = MISSING_COLUMNS
        .iter()
        .any(|(_, column)| lower.contains(column));
    let unnamed = lower.contains("null, null");
    let zones = lower.contains("at time zone");
    let catalog = lower.contains("_pg_expandarray")
        || lower.contains("regclass")
        || lower.contains("regproc");
    if !escapes && !subqueries && !vectors && !missing && !catalog && !unnamed && !zones {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    for statement in &mut statements {
        let before = placeholders(statement);
        if escapes {
            changed |= backslash_escapes(statement);
        }
        if subqueries {
            changed |= aggregated_scalar_subqueries(statement);
        }
        if vectors {
            changed |= vectors_as_arrays(statement);
        }
        if missing {
            changed |= missing_columns_as_null(statement);
        }
        if catalog {
            changed |= catalog_calls(statement);
        }
        if unnamed {
            changed |= distinct_column_names(statement);
        }
        if zones {
            changed |= at_time_zone_as_timezone(statement);
        }
        keep_placeholders(statement, before);
    }
    changed.then(|| {
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// `ts AT TIME ZONE zone` is `timezone(zone, ts)` in PostgreSQL: a `timestamptz` becomes the
/// wall-clock time there (a timestamp without zone), a timestamp without zone is read as that
/// zone's wall-clock time. DataFusion's own `AT TIME ZONE` only relabels the zone, so a
/// client reading the value in binary got the instant back, not the wall-clock time.
fn at_time_zone_as_timezone(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::AtTimeZone {
            timestamp,
            time_zone,
        } = expr
            && let Ok(replacement) = parse_expr(&format!("timezone({time_zone}, {timestamp})"))
        {
            *expr = replacement;
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// The parameters (`$1`, ...) a statement names.
fn placeholders(statement: &Statement) -> Vec<String> {
    let mut found = Vec::new();
    let _ = visit_expressions(statement, |expr| {
        if let Expr::Value(value) = expr
            && let Value::Placeholder(name) = &value.value
            && !found.contains(name)
        {
            found.push(name.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Names again the parameters a rewrite took out of `statement` (with the subquery or the
/// argument that held them), in a condition that is always true: parameters are numbered, and
/// one that disappeared would take the type of another (psycopg 3, which binds on the server,
/// then had `''` parsed as a number).
fn keep_placeholders(statement: &mut Statement, before: Vec<String>) {
    let after = placeholders(statement);
    let lost: Vec<String> = before
        .into_iter()
        .filter(|name| !after.contains(name))
        .map(|name| format!("({name} IS NULL OR {name} IS NOT NULL)"))
        .collect();
    if lost.is_empty() {
        return;
    }
    let Statement::Query(query) = statement else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let Ok(condition) = parse_expr(&lost.join(" AND ")) else {
        return;
    };
    select.selection = Some(match select.selection.take() {
        Some(existing) => Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(existing))),
            op: BinaryOperator::And,
            right: Box::new(condition),
        },
        None => condition,
    });
}

/// Makes every `LIKE`/`ILIKE` with an escape character other than the backslash use the
/// backslash instead: a literal pattern is rewritten now, another one (a bound parameter, as
/// psycopg 3 sends SQLAlchemy's) is converted when the statement runs. Whether it changed
/// anything.
fn backslash_escapes(statement: &mut Statement) -> bool {
    let mut changed = false;
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
        {
            let converted = match literal_text(pattern) {
                Some(text) => with_backslashes(&text, escape)
                    .map(|t| Expr::value(Value::SingleQuotedString(t))),
                None => parse_expr(&format!(
                    "like_pattern_with_backslashes({pattern}, {})",
                    Value::SingleQuotedString(escape.to_string())
                ))
                .ok(),
            };
            if let Some(converted) = converted {
                **pattern = converted;
                *escape_char = Some(Value::SingleQuotedString("\\".to_owned()).with_empty_span());
                changed = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// The `pg_index` columns that are vectors in PostgreSQL (`int2vector`, `oidvector`) and text
/// of space-separated numbers in Baton's catalog.
const VECTOR_COLUMNS: &[&str] = &["indkey", "indclass", "indcollation"];

/// Makes `unnest(v)` and `generate_subscripts(v, 1)` of a vector column of `pg_index` work on
/// its text: `unnest` of its numbers, and their subscripts from 0 as PostgreSQL numbers a
/// vector's. SQLAlchemy reads index and primary-key columns this way. Whether it changed
/// anything.
fn vectors_as_arrays(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        let Expr::Function(function) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        let Some(name) = function.name.0.last().and_then(|part| part.as_ident()) else {
            return ControlFlow::Continue(());
        };
        let name = name.value.to_lowercase();
        let FunctionArguments::List(list) = &function.args else {
            return ControlFlow::Continue(());
        };
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(column))) = list.args.first() else {
            return ControlFlow::Continue(());
        };
        let last = match column {
            Expr::Identifier(ident) => Some(ident),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if !last.is_some_and(|ident| VECTOR_COLUMNS.contains(&ident.value.to_lowercase().as_str()))
        {
            return ControlFlow::Continue(());
        }
        let numbers = format!("string_to_array({column}, ' ')");
        let replacement = match (name.as_str(), list.args.len()) {
            ("unnest", 1) => format!("unnest(CAST({numbers} AS BIGINT[]))"),
            ("generate_subscripts", 2) => {
                format!("unnest(range(CAST(coalesce(array_length({numbers}), 0) AS BIGINT)))")
            }
            _ => return ControlFlow::Continue(()),
        };
        if let Ok(replacement) = parse_expr(&replacement) {
            *expr = replacement;
            changed = true;
        }
        ControlFlow::Continue(())
    });
    changed
}

/// Makes the catalog idioms of pgjdbc and Metabase plannable (`catalog_functions.rs` has
/// the functions):
/// - `information_schema._pg_expandarray(v)`, a set-returning function of `(x, n)` records,
///   becomes `unnest(_pg_expandarray(v))`, so `(... ).n` reads a field of each record;
/// - `name::regclass` becomes `pg_regclass(name)`, which resolves a (qualified) name that
///   is not a literal too (`format('%I.%I', schema, table)::regclass`).
///
/// Whether it changed anything.
fn catalog_calls(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        match expr {
            Expr::Function(function)
                if function
                    .name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .is_some_and(|name| name.value.eq_ignore_ascii_case("_pg_expandarray")) =>
            {
                let FunctionArguments::List(list) = &function.args else {
                    return ControlFlow::<()>::Continue(());
                };
                let args: Vec<String> = list.args.iter().map(ToString::to_string).collect();
                if let Ok(replacement) =
                    parse_expr(&format!("unnest(_pg_expandarray({}))", args.join(", ")))
                {
                    *expr = replacement;
                    changed = true;
                }
            }
            // `pg_type.typinput` and the other `regproc` columns hold function names here,
            // which is how PostgreSQL shows a `regproc`: the name, without its schema.
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if data_type.to_string().eq_ignore_ascii_case("regproc")
                && literal_text(inner).is_some() =>
            {
                let name = literal_text(inner).unwrap_or_default();
                let name = name.rsplit('.').next().unwrap_or_default().to_owned();
                *expr = Expr::value(Value::SingleQuotedString(name));
                changed = true;
            }
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if data_type.to_string().eq_ignore_ascii_case("regclass") => {
                if let Ok(replacement) = parse_expr(&format!("pg_regclass({inner})")) {
                    *expr = replacement;
                    changed = true;
                }
            }
            // `(record).field`: DataFusion reads a struct's field with `get_field`.
            Expr::CompoundFieldAccess { root, access_chain }
                if access_chain
                    .iter()
                    .all(|access| matches!(access, AccessExpr::Dot(Expr::Identifier(_)))) =>
            {
                let mut text = root.to_string();
                for access in access_chain.iter() {
                    if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                        text = format!("get_field({text}, '{}')", field.value.to_lowercase());
                    }
                }
                if let Ok(replacement) = parse_expr(&text) {
                    *expr = replacement;
                    changed = true;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    changed
}

/// Gives a name of its own to each unnamed select item that would repeat an earlier one's:
/// PostgreSQL names them all `?column?`, DataFusion wants names to differ (pgjdbc's
/// `getProcedures` selects `NULL, NULL, NULL`). Whether it changed anything.
fn distinct_column_names(statement: &mut Statement) -> bool {
    let Statement::Query(query) = statement else {
        return false;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    let mut seen = HashSet::new();
    let mut changed = false;
    for (at, item) in select.projection.iter_mut().enumerate() {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = expr.to_string().to_lowercase();
                if !seen.insert(name) {
                    let alias = Ident::with_quote('"', format!("?column?{}", at + 1));
                    seen.insert(alias.value.clone());
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias,
                    };
                    changed = true;
                }
            }
            SelectItem::ExprWithAlias { alias, .. } => {
                seen.insert(alias.value.to_lowercase());
            }
            _ => {}
        }
    }
    changed
}

/// Catalog columns of PostgreSQL that Baton's catalog lacks, as (table, column), and that are
/// NULL for every table here.
const MISSING_COLUMNS: &[(&str, &str)] = &[("pg_class", "reloptions")];

/// Makes `pg_catalog.pg_class.reloptions` (written with its table's name) NULL: the views have
/// no storage options. SQLAlchemy's index reflection reads it. Whether it changed anything.
fn missing_columns_as_null(statement: &mut Statement) -> bool {
    // Selected as they are, they keep their name.
    struct Named;
    impl VisitorMut for Named {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    if let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item
                        && let [.., table, column] = parts.as_slice()
                        && is_missing(table, column)
                    {
                        let alias = column.clone();
                        let expr = Expr::CompoundIdentifier(std::mem::take(parts));
                        *item = SelectItem::ExprWithAlias { expr, alias };
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Named);
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [.., table, column] = parts.as_slice()
            && is_missing(table, column)
        {
            *expr = Expr::value(Value::Null);
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

fn is_missing(table: &Ident, column: &Ident) -> bool {
    MISSING_COLUMNS
        .iter()
        .any(|(t, c)| table.value.eq_ignore_ascii_case(t) && column.value.eq_ignore_ascii_case(c))
}

/// Aggregate functions a subquery's value may already be (then it is left alone).
const AGGREGATES: &[&str] = &[
    "array_agg",
    "avg",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "json_agg",
    "jsonb_agg",
    "max",
    "min",
    "string_agg",
    "sum",
];

/// Wraps the value of every correlated scalar subquery that selects one plain value in
/// `max(...)`. Conditions of its `WHERE` on the enclosing query's tables alone move out in front
/// of it, `CASE WHEN condition THEN (subquery) END` (the same value: the aggregate of no rows
/// is NULL), since DataFusion cannot decorrelate them inside a `CASE`. Whether it changed
/// anything.
fn aggregated_scalar_subqueries(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        let Expr::Subquery(query) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        if reads_sequences(query) {
            *expr = Expr::value(Value::Null);
            changed = true;
            return ControlFlow::Continue(());
        }
        let Some(outer_conditions) = aggregate_in_place(query) else {
            return ControlFlow::Continue(());
        };
        changed = true;
        if !outer_conditions.is_empty() {
            let condition = outer_conditions
                .iter()
                .map(|condition| format!("({condition})"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let guarded = format!("CASE WHEN {condition} THEN ({query}) ELSE NULL END");
            if let Ok(guarded) = parse_expr(&guarded) {
                *expr = guarded;
            }
        }
        ControlFlow::Continue(())
    });
    changed
}

fn parse_expr(text: &str) -> Result<Expr, ParserError> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
}

/// Whether a subquery is a single `SELECT` that reads `pg_sequence` in an inner join: Baton's
/// tables have no sequences, so it finds no row and its value is NULL. (SQLAlchemy asks for
/// identity columns this way, with a column of the enclosing query in the value, which
/// DataFusion cannot plan.)
fn reads_sequences(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let is_sequences = |factor: &TableFactor| match factor {
        TableFactor::Table { name, .. } => {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|part| part.as_ident())
                .map(|ident| ident.value.to_lowercase())
                .collect();
            parts == ["pg_sequence"] || parts == ["pg_catalog", "pg_sequence"]
        }
        _ => false,
    };
    select.from.iter().any(|table| {
        is_sequences(&table.relation)
            || table.joins.iter().any(|join| {
                matches!(
                    join.join_operator,
                    JoinOperator::Join(_) | JoinOperator::Inner(_)
                ) && is_sequences(&join.relation)
            })
    })
}

/// Aggregates the one value of a scalar subquery when it is a single `SELECT` of one expression
/// with no aggregate, grouping, `DISTINCT`, ordering or limit, whose `WHERE` names a table of
/// the enclosing query; returns the conditions taken out of its `WHERE` because they name
/// only the enclosing query's tables. `None` when the subquery is not such.
fn aggregate_in_place(query: &mut Query) -> Option<Vec<Expr>> {
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let ungrouped =
        matches!(&select.group_by, GroupByExpr::Expressions(exprs, _) if exprs.is_empty());
    if select.projection.len() != 1
        || select.distinct.is_some()
        || !ungrouped
        || select.having.is_some()
        || select.from.is_empty()
    {
        return None;
    }
    // The names its own tables go by: an alias, else the table's own name.
    let mut own: HashSet<String> = HashSet::new();
    for table in &select.from {
        for factor in
            std::iter::once(&table.relation).chain(table.joins.iter().map(|join| &join.relation))
        {
            let TableFactor::Table { name, alias, .. } = factor else {
                return None;
            };
            let own_name = match alias {
                Some(alias) => alias.name.value.clone(),
                None => name.0.last()?.as_ident()?.value.clone(),
            };
            own.insert(own_name.to_lowercase());
        }
    }
    let is_outer = |parts: &[Ident]| {
        parts.len() >= 2 && !own.contains(&parts[parts.len() - 2].value.to_lowercase())
    };
    let selection = select.selection.as_ref()?;
    let correlated = visit_expressions(selection, |expr| match expr {
        Expr::CompoundIdentifier(parts) if is_outer(parts) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) =
        &mut select.projection[0]
    else {
        return None;
    };
    let aggregated = visit_expressions(&*value, |expr| match expr {
        Expr::Function(function)
            if function
                .name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .is_some_and(|name| AGGREGATES.contains(&name.value.to_lowercase().as_str())) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    if !correlated || aggregated {
        return None;
    }
    *value = parse_expr(&format!("max({value})")).ok()?;

    // A condition names only enclosing tables when every column in it is qualified by one of
    // them and it holds no subquery of its own.
    let only_outer = |condition: &Expr| {
        let mut outer = false;
        let other = visit_expressions(condition, |expr| match expr {
            Expr::CompoundIdentifier(parts) if is_outer(parts) => {
                outer = true;
                ControlFlow::Continue(())
            }
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::InSubquery { .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break();
        outer && !other
    };
    let mut conditions = Vec::new();
    conjuncts(select.selection.take()?, &mut conditions);
    let (outer, own): (Vec<Expr>, Vec<Expr>) = conditions.into_iter().partition(only_outer);
    select.selection = own.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    });
    Some(outer)
}

/// The conditions `expr` is the conjunction of.
fn conjuncts(expr: Expr, into: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, into);
            conjuncts(*right, into);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, into)
        }
        other => into.push(other),
    }
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
pub(super) fn with_backslashes(pattern: &str, escape: char) -> Option<String> {
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
    fn distinct_from_takes_only_its_own_operand() {
        let cases = [
            (
                "select a is distinct from b or c",
                "select (a is distinct from b) or c",
            ),
            (
                "select * from t where x = 1 and y IS NOT DISTINCT FROM $1 AND z = 2",
                "select * from t where x = 1 and (y IS NOT DISTINCT FROM $1) AND z = 2",
            ),
            (
                "select a is distinct from b and c idf, x + 1 is distinct from f(x, y) + 1 as z from t",
                "select (a is distinct from b) and c idf, (x + 1 is distinct from f(x, y) + 1) as z from t",
            ),
            (
                "select x between 1 and 2 is distinct from b between 1 and 2 and c",
                "select (x between 1 and 2 is distinct from b between 1 and 2) and c",
            ),
            (
                "select not a not in (1) is distinct from b not in (1, 2) or not c",
                "select not (a not in (1) is distinct from b not in (1, 2)) or not c",
            ),
            (
                "select case when a is distinct from 'it''s' then 1 end x, t.range is distinct from t.rows from t",
                "select case when (a is distinct from 'it''s') then 1 end x, (t.range is distinct from t.rows) from t",
            ),
            (
                "select f(a) is distinct from (b or c) -- a comment\n, 2",
                "select (f(a) is distinct from (b or c)) -- a comment\n, 2",
            ),
            (
                "select 'é' is null is distinct from\n  b is distinct from c x",
                "select (('é' is null is distinct from\n  b) is distinct from c) x",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(
                distinct_from_operands_parenthesized(sql).as_deref(),
                Some(expected),
                "{sql}"
            );
        }
        assert_eq!(
            distinct_from_operands_parenthesized("select distinct a from t"),
            None
        );
    }

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
        // A backslash escape is left to DataFusion.
        for sql in [
            r"SELECT 1 WHERE 'a' LIKE 'a\_' ESCAPE '\'",
            "SELECT 'escape' LIKE 'e%'",
        ] {
            assert!(matches!(rewrite(sql), Cow::Borrowed(_)), "{sql}");
        }
        // A pattern that is not literal (a parameter bound on the server, as psycopg 3
        // sends it) is converted when the statement runs.
        assert_eq!(
            rewrite("SELECT 1 WHERE 'a' NOT LIKE $1 || '%' ESCAPE '/'"),
            "SELECT 1 WHERE 'a' NOT LIKE like_pattern_with_backslashes($1 || '%', '/') \
             ESCAPE '\\'"
        );
    }

    #[test]
    fn correlated_scalar_subqueries_of_one_plain_value_are_aggregated() {
        // From SQLAlchemy's column reflection.
        let sql = "SELECT a.attname, CASE WHEN a.atthasdef THEN (SELECT \
                   pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS e FROM pg_catalog.pg_attrdef \
                   AS d WHERE a.atthasdef AND d.adrelid = a.attrelid) ELSE NULL END, \
                   (SELECT pg_catalog.pg_type.typcollation FROM pg_catalog.pg_type WHERE \
                   pg_catalog.pg_type.oid = a.atttypid) FROM pg_catalog.pg_attribute AS a";
        assert_eq!(
            rewrite(sql),
            "SELECT a.attname, CASE WHEN a.atthasdef THEN CASE WHEN (a.atthasdef) THEN (SELECT \
             max(pg_catalog.pg_get_expr(d.adbin, d.adrelid)) AS e FROM pg_catalog.pg_attrdef \
             AS d WHERE d.adrelid = a.attrelid) ELSE NULL END ELSE NULL END, \
             (SELECT max(pg_catalog.pg_type.typcollation) FROM pg_catalog.pg_type WHERE \
             pg_catalog.pg_type.oid = a.atttypid) FROM pg_catalog.pg_attribute AS a"
        );
        // Identity options come from sequences, and there are none.
        assert_eq!(
            rewrite(
                "SELECT CASE WHEN a.attidentity <> '' THEN (SELECT json_build_object('always', \
                 a.attidentity = 'a', 'start', pg_catalog.pg_sequence.seqstart) FROM \
                 pg_catalog.pg_sequence WHERE pg_catalog.pg_sequence.seqrelid = a.attrelid) \
                 ELSE NULL END FROM pg_catalog.pg_attribute AS a"
            ),
            "SELECT CASE WHEN a.attidentity <> '' THEN NULL ELSE NULL END FROM \
             pg_catalog.pg_attribute AS a"
        );
        // Already aggregated, limited, grouped, or not correlated: left as written.
        for sql in [
            "SELECT (SELECT count(*) FROM t WHERE t.k = o.k) FROM o",
            "SELECT (SELECT t.v FROM t WHERE t.k = o.k LIMIT 1) FROM o",
            "SELECT (SELECT t.v FROM t WHERE t.k = o.k ORDER BY t.v) FROM o",
            "SELECT (SELECT t.v FROM t WHERE t.k = o.k GROUP BY t.v) FROM o",
            "SELECT (SELECT t.v FROM t WHERE t.k = 1) FROM o",
            "SELECT (SELECT x.v FROM t AS x WHERE x.k = 1) FROM o",
            "SELECT o.k FROM o WHERE o.k IN (SELECT t.k FROM t WHERE t.v = o.v)",
        ] {
            assert!(matches!(rewrite(sql), Cow::Borrowed(_)), "{sql}");
        }
    }

    #[test]
    fn index_vectors_are_unnested_from_their_text() {
        assert_eq!(
            rewrite(
                "SELECT unnest(pg_catalog.pg_index.indkey) AS attnum, \
                 generate_subscripts(pg_catalog.pg_index.indkey, 1) AS ord FROM pg_catalog.pg_index"
            ),
            "SELECT unnest(CAST(string_to_array(pg_catalog.pg_index.indkey, ' ') AS BIGINT[])) \
             AS attnum, unnest(range(CAST(coalesce(array_length(string_to_array(\
             pg_catalog.pg_index.indkey, ' ')), 0) AS BIGINT))) AS ord FROM pg_catalog.pg_index"
        );
        assert_eq!(
            rewrite(
                "SELECT pg_catalog.pg_class.reloptions, c.relname FROM pg_catalog.pg_class AS c"
            ),
            "SELECT NULL AS reloptions, c.relname FROM pg_catalog.pg_class AS c"
        );
        let sql = "SELECT unnest(make_array(1, 2))";
        assert!(matches!(rewrite(sql), Cow::Borrowed(_)), "{sql}");
    }

    #[test]
    fn other_sql_is_untouched() {
        let sql = "select current_setting('search_path')";
        assert!(matches!(rewrite(sql), Cow::Borrowed(_)));
    }
}
