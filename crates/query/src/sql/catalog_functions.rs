//! PostgreSQL's catalog functions over Baton's system catalog (`super::system`): what BI
//! tools call while they sync, answered exactly or refused, never guessed.
//!
//! - `col_description(table oid, column number)`, `obj_description(oid [, catalog])`: the
//!   descriptions from docs/views.md (Metabase imports them, `\d+` shows them).
//! - `pg_get_indexdef(index oid [, column, pretty])`, `pg_get_constraintdef(oid [, pretty])`:
//!   the primary keys (pgjdbc's `getIndexInfo` reads a column's name from the former).
//! - `_pg_expandarray(int2vector)`: the positions of a key, as `(x, n)` records; pgjdbc's
//!   `getPrimaryKeys` and Metabase's index sync read them (`rewrite.rs` turns the call into an
//!   `unnest`).
//! - `pg_get_expr(expression, relation)`: NULL for no expression (the views have none).
//! - `pg_regclass(text)`: `'schema.table'::regclass` for a name that is not a literal.
//! - `like_pattern_with_backslashes(pattern, escape)`: a `LIKE` pattern of a bound parameter
//!   with another escape character than the backslash, which DataFusion lacks
//!   (`rewrite.rs` calls it).
//! - `pg_get_function_result(function oid)`: `integer`, `SETOF record`... (`functions_catalog`).
//! - `format(pattern, ...)`: `%s`, `%I`, `%L` and `%%`.
//! - `has_table_privilege` and its kin: SELECT (and USAGE, CONNECT) only: the endpoint is
//!   read-only.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Builder, ListBuilder, StructBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::system;

/// A function evaluated row by row on [`ScalarValue`]s: catalog queries read a few hundred
/// rows, and this keeps each function a plain match.
struct RowFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: fn(&[ScalarValue]) -> Result<ScalarValue>,
}

impl std::fmt::Debug for RowFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowFunction")
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for RowFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowFunction {}

impl std::hash::Hash for RowFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for RowFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|arg| arg.to_array(rows))
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values: Vec<ScalarValue> = arrays
                .iter()
                .map(|array| ScalarValue::try_from_array(array, row))
                .collect::<Result<_>>()?;
            out.push((self.body)(&values)?);
        }
        if scalar {
            let value = out.pop().unwrap_or(ScalarValue::Null);
            return Ok(ColumnarValue::Scalar(value.cast_to(&self.returns)?));
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                ScalarValue::try_from(&self.returns)?.to_array_of_size(0)?,
            ));
        }
        let out: Vec<ScalarValue> = out
            .into_iter()
            .map(|value| value.cast_to(&self.returns))
            .collect::<Result<_>>()?;
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

fn udf(
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: fn(&[ScalarValue]) -> Result<ScalarValue>,
) -> ScalarUDF {
    ScalarUDF::from(RowFunction {
        name,
        signature,
        returns,
        body,
    })
}

fn int(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(v) => v.map(i64::from),
        ScalarValue::Int16(v) => v.map(i64::from),
        ScalarValue::Int32(v) => v.map(i64::from),
        ScalarValue::Int64(v) => *v,
        ScalarValue::UInt8(v) => v.map(i64::from),
        ScalarValue::UInt16(v) => v.map(i64::from),
        ScalarValue::UInt32(v) => v.map(i64::from),
        ScalarValue::UInt64(v) => v.and_then(|v| i64::try_from(v).ok()),
        ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) => {
            text.trim().parse().ok()
        }
        _ => None,
    }
}

fn text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v) => v.clone(),
        ScalarValue::Null => None,
        other if other.is_null() => None,
        other => Some(other.to_string()),
    }
}

fn oid(value: &ScalarValue) -> Option<i32> {
    int(value).and_then(|v| i32::try_from(v).ok())
}

fn utf8(value: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(value)
}

/// Every function of this module, to register on the session.
pub(super) fn functions() -> Vec<ScalarUDF> {
    let any = |n: usize| TypeSignature::Any(n);
    vec![
        udf(
            "col_description",
            Signature::any(2, Volatility::Stable),
            DataType::Utf8,
            |args| {
                let (Some(relation), Some(column)) = (oid(&args[0]), int(&args[1])) else {
                    return Ok(utf8(None));
                };
                let doc = system::relation_doc(relation);
                Ok(utf8(doc.and_then(|doc| {
                    let at = usize::try_from(column).ok()?.checked_sub(1)?;
                    doc.columns.get(at).cloned().flatten()
                })))
            },
        ),
        udf(
            "obj_description",
            Signature::one_of(vec![any(1), any(2)], Volatility::Stable),
            DataType::Utf8,
            |args| {
                // Only relations have descriptions: another catalog's object has none.
                let catalog = args.get(1).and_then(text);
                if catalog.as_deref().is_some_and(|c| c != "pg_class") {
                    return Ok(utf8(None));
                }
                let doc = oid(&args[0]).and_then(system::relation_doc);
                Ok(utf8(doc.and_then(|doc| doc.description)))
            },
        ),
        udf(
            "pg_get_indexdef",
            Signature::one_of(vec![any(1), any(3)], Volatility::Stable),
            DataType::Utf8,
            |args| {
                let Some(key) = oid(&args[0]).and_then(system::key_doc) else {
                    return Ok(utf8(None));
                };
                let column = args.get(1).and_then(int).unwrap_or(0);
                if column > 0 {
                    let at = usize::try_from(column - 1).unwrap_or(usize::MAX);
                    return Ok(utf8(key.columns.get(at).map(|c| quote_ident(c))));
                }
                Ok(utf8(Some(format!(
                    "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
                    quote_ident(&key.name),
                    quote_ident(&key.schema),
                    quote_ident(&key.table),
                    columns_list(&key.columns)
                ))))
            },
        ),
        udf(
            "pg_get_constraintdef",
            Signature::one_of(vec![any(1), any(2)], Volatility::Stable),
            DataType::Utf8,
            |args| {
                let key = oid(&args[0]).and_then(system::key_doc);
                Ok(utf8(key.map(|key| {
                    format!("PRIMARY KEY ({})", columns_list(&key.columns))
                })))
            },
        ),
        // The views have no expressions (no defaults, no partial indexes): an expression
        // column is NULL, and so is its text, as in PostgreSQL.
        udf(
            "pg_get_expr",
            Signature::one_of(vec![any(2), any(3)], Volatility::Stable),
            DataType::Utf8,
            |args| Ok(utf8(text(&args[0]))),
        ),
        udf(
            "pg_regclass",
            Signature::any(1, Volatility::Stable),
            DataType::Int32,
            |args| {
                // An oid is already a relation's (`attrelid::regclass`).
                if let Some(oid) = oid(&args[0]).filter(|_| {
                    !matches!(
                        args[0],
                        ScalarValue::Utf8(_) | ScalarValue::Utf8View(_) | ScalarValue::LargeUtf8(_)
                    )
                }) {
                    return Ok(ScalarValue::Int32(Some(oid)));
                }
                let Some(name) = text(&args[0]) else {
                    return Ok(ScalarValue::Int32(None));
                };
                match system::relation_oid(&name) {
                    Some(oid) => Ok(ScalarValue::Int32(Some(oid))),
                    None => exec_err!("relation \"{name}\" does not exist"),
                }
            },
        ),
        udf(
            "like_pattern_with_backslashes",
            Signature::any(2, Volatility::Immutable),
            DataType::Utf8,
            |args| {
                let (Some(pattern), Some(escape)) = (text(&args[0]), text(&args[1])) else {
                    return Ok(utf8(None));
                };
                let escape = escape.chars().next().unwrap_or('\\');
                match super::rewrite::with_backslashes(&pattern, escape) {
                    Some(converted) => Ok(utf8(Some(converted))),
                    None => exec_err!("LIKE pattern must not end with escape character"),
                }
            },
        ),
        udf(
            "to_regtype",
            Signature::any(1, Volatility::Stable),
            DataType::Int32,
            |args| {
                Ok(ScalarValue::Int32(
                    text(&args[0]).and_then(|name| type_oid(&name)),
                ))
            },
        ),
        udf(
            "_pg_expandarray",
            Signature::any(1, Volatility::Immutable),
            expanded_type(),
            |args| expand(&args[0]),
        ),
        udf(
            "pg_get_function_result",
            Signature::any(1, Volatility::Stable),
            DataType::Utf8,
            |args| match oid(&args[0]) {
                Some(function) => Ok(utf8(super::functions_catalog::function_result(function)?)),
                None => Ok(utf8(None)),
            },
        ),
        udf(
            "format",
            Signature::variadic_any(Volatility::Immutable),
            DataType::Utf8,
            format,
        ),
        privilege("has_table_privilege", &["SELECT"]),
        privilege("has_any_column_privilege", &["SELECT"]),
        privilege("has_column_privilege", &["SELECT"]),
        privilege("has_schema_privilege", &["USAGE"]),
        privilege("has_database_privilege", &["CONNECT"]),
    ]
}

/// The oid of a built-in type by any of its names (`int8`, `bigint`, `pg_catalog.int8`),
/// as `to_regtype` resolves it; `None` for a type the server does not have (`hstore`, which
/// psycopg 3 looks up when SQLAlchemy connects).
fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim().to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let (base, array) = match name.strip_suffix("[]") {
        Some(base) => (base, true),
        None => (name, false),
    };
    const TYPES: &[(&[&str], i32, i32)] = &[
        (&["bool", "boolean"], 16, 1000),
        (&["bytea"], 17, 1001),
        (&["char", "\"char\""], 18, 1002),
        (&["name"], 19, 1003),
        (&["int8", "bigint"], 20, 1016),
        (&["int2", "smallint"], 21, 1005),
        (&["int4", "integer", "int"], 23, 1007),
        (&["text"], 25, 1009),
        (&["oid"], 26, 1028),
        (&["json"], 114, 199),
        (&["float4", "real"], 700, 1021),
        (&["float8", "double precision"], 701, 1022),
        (&["varchar", "character varying"], 1043, 1015),
        (&["date"], 1082, 1182),
        (&["time", "time without time zone"], 1083, 1183),
        (&["timestamp", "timestamp without time zone"], 1114, 1115),
        (&["timestamptz", "timestamp with time zone"], 1184, 1185),
        (&["interval"], 1186, 1187),
        (&["numeric", "decimal"], 1700, 1231),
        (&["uuid"], 2950, 2951),
        (&["jsonb"], 3802, 3807),
    ];
    TYPES
        .iter()
        .find(|(names, _, _)| names.contains(&base))
        .map(|(_, oid, array_oid)| if array { *array_oid } else { *oid })
}

fn columns_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An identifier as PostgreSQL's `quote_ident` writes it.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A literal as PostgreSQL's `quote_literal` writes it (`NULL` for none, with `%L`).
fn quote_literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// `format(pattern, args...)`: `%s` (the value as text, empty for NULL), `%I` (an
/// identifier), `%L` (a literal), `%%`. Width, position and `-` flags are refused by name.
fn format(args: &[ScalarValue]) -> Result<ScalarValue> {
    let Some(pattern) = args.first().and_then(text) else {
        return Ok(utf8(None));
    };
    let mut out = String::new();
    let mut next = 1;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next();
        if spec == Some('%') {
            out.push('%');
            continue;
        }
        let Some(value) = args.get(next) else {
            return exec_err!("too few arguments for format()");
        };
        next += 1;
        let value = text(value);
        match spec {
            Some('s') => out.push_str(value.as_deref().unwrap_or("")),
            Some('I') => match value {
                Some(value) => out.push_str(&quote_ident(&value)),
                None => return exec_err!("null values cannot be formatted as an SQL identifier"),
            },
            Some('L') => match value {
                Some(value) => out.push_str(&quote_literal(&value)),
                None => out.push_str("NULL"),
            },
            Some(other) => {
                return plan_err!(
                    "format(): the conversion \"%{other}\" is not supported here (only %s, %I, \
                     %L and %%)"
                );
            }
            None => return exec_err!("unterminated format() type specifier"),
        }
    }
    Ok(utf8(Some(out)))
}

/// What `_pg_expandarray` returns: a list of `(x, n)` records, `x` the element and `n` its
/// position from 1.
fn expanded_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(expanded_fields()),
        true,
    )))
}

fn expanded_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("n", DataType::Int64, true),
    ])
}

/// The elements of an `int2vector` (text `1 2`) or an integer list, with their positions.
fn expand(value: &ScalarValue) -> Result<ScalarValue> {
    let elements: Vec<i64> = match value {
        ScalarValue::List(list) => {
            let values = list.value(0);
            (0..values.len())
                .filter_map(|at| {
                    ScalarValue::try_from_array(&values, at)
                        .ok()
                        .and_then(|v| int(&v))
                })
                .collect()
        }
        other => match text(other) {
            Some(text) => text
                .trim_matches(|c| c == '{' || c == '}')
                .split([' ', ','])
                .filter(|part| !part.is_empty())
                .map(|part| part.parse::<i64>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "_pg_expandarray: \"{text}\" is not an array of integers"
                    ))
                })?,
            None => Vec::new(),
        },
    };
    let mut builder = ListBuilder::new(StructBuilder::new(
        expanded_fields(),
        vec![Box::new(Int64Builder::new()), Box::new(Int64Builder::new())],
    ));
    for (at, element) in elements.iter().enumerate() {
        let record = builder.values();
        if let Some(x) = record.field_builder::<Int64Builder>(0) {
            x.append_value(*element);
        }
        if let Some(n) = record.field_builder::<Int64Builder>(1) {
            n.append_value(at as i64 + 1);
        }
        record.append(true);
    }
    builder.append(true);
    let array = builder.finish();
    ScalarValue::try_from_array(&array, 0)
}

/// A `has_*_privilege` function: true when the privileges asked (a comma-separated list, any
/// of which suffices, as in PostgreSQL) include one of `granted`.
fn privilege(name: &'static str, granted: &'static [&'static str]) -> ScalarUDF {
    let body: fn(&[ScalarValue]) -> Result<ScalarValue> = match granted {
        ["SELECT"] => |args| held(args, &["SELECT"]),
        ["USAGE"] => |args| held(args, &["USAGE"]),
        _ => |args| held(args, &["CONNECT"]),
    };
    udf(
        name,
        Signature::one_of(
            vec![
                TypeSignature::Any(2),
                TypeSignature::Any(3),
                TypeSignature::Any(4),
            ],
            Volatility::Stable,
        ),
        DataType::Boolean,
        body,
    )
}

fn held(args: &[ScalarValue], granted: &[&str]) -> Result<ScalarValue> {
    let Some(asked) = args.last().and_then(text) else {
        return Ok(ScalarValue::Boolean(None));
    };
    let any = asked.split(',').any(|privilege| {
        let privilege = privilege.trim().to_uppercase();
        let privilege = privilege.trim_end_matches(" WITH GRANT OPTION").trim();
        granted.contains(&privilege)
    });
    Ok(ScalarValue::Boolean(Some(any)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(text.to_owned()))
    }

    #[test]
    fn format_quotes_as_postgresql_does() {
        let out = format(&[
            t("%I.%I = %L (%s%%)"),
            t("public"),
            t("My Table"),
            t("it's"),
            t("x"),
        ])
        .expect("formats");
        assert_eq!(out, t("public.\"My Table\" = 'it''s' (x%)"));
        assert!(format(&[t("%5s"), t("x")]).is_err(), "widths are refused");
    }

    #[test]
    fn type_names_resolve_to_postgresql_oids() {
        assert_eq!(type_oid("bigint"), Some(20));
        assert_eq!(type_oid("pg_catalog.timestamptz"), Some(1184));
        assert_eq!(type_oid("text[]"), Some(1009));
        assert_eq!(type_oid("hstore"), None);
    }

    #[test]
    fn privileges_are_select_only() {
        let yes = |asked: &str| held(&[t("people"), t(asked)], &["SELECT"]).expect("answers");
        assert_eq!(yes("SELECT"), ScalarValue::Boolean(Some(true)));
        assert_eq!(yes("insert"), ScalarValue::Boolean(Some(false)));
        assert_eq!(yes("UPDATE, select"), ScalarValue::Boolean(Some(true)));
        assert_eq!(yes("DELETE"), ScalarValue::Boolean(Some(false)));
    }

    #[test]
    fn an_int2vector_expands_to_its_elements_and_positions() {
        let ScalarValue::List(list) = expand(&t("3 1")).expect("expands") else {
            panic!("a list");
        };
        let records = list.value(0);
        assert_eq!(records.len(), 2);
        let second = ScalarValue::try_from_array(&records, 1).expect("record");
        assert_eq!(second.to_string(), "{x:1,n:2}");
    }
}
