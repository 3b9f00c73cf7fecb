//! `pg_get_function_result(oid)`: what a function of `pg_catalog.pg_proc` returns, as
//! PostgreSQL writes it (`integer`, `SETOF record`, `double precision`). pgjdbc's
//! `getFunctions` (DBeaver's and Tableau's function lists) reads it to tell set-returning
//! functions from the others.
//!
//! `pg_proc` and `pg_type` are PostgreSQL 16's built-in catalogs, as datafusion-pg-catalog
//! ships them; this reads them once, the first time the function is called.

use std::collections::HashMap;
use std::sync::OnceLock;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

/// A function's result, from `pg_proc`.
struct Returns {
    type_oid: i32,
    set: bool,
    /// Declared with `RETURNS TABLE (...)` (an argument mode `t`).
    table: bool,
}

struct Functions {
    returns: HashMap<i32, Returns>,
    type_names: HashMap<i32, String>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    match batch.column_by_name(name) {
        Some(column) => Ok(column.as_ref()),
        None => exec_err!("pg_catalog has no column {name}"),
    }
}

fn cell(batch: &RecordBatch, name: &str, row: usize) -> Result<ScalarValue> {
    let array = column(batch, name)?;
    ScalarValue::try_from_array(array, row)
}

fn as_i32(value: &ScalarValue) -> Option<i32> {
    match value {
        ScalarValue::Int32(v) => *v,
        ScalarValue::Int64(v) => v.and_then(|v| i32::try_from(v).ok()),
        ScalarValue::UInt32(v) => v.and_then(|v| i32::try_from(v).ok()),
        _ => None,
    }
}

fn load() -> Result<Functions> {
    let tables = PgCatalogStaticTables::try_new()?;
    let mut returns = HashMap::new();
    for batch in tables.pg_proc.data() {
        for row in 0..batch.num_rows() {
            let Some(oid) = as_i32(&cell(batch, "oid", row)?) else {
                continue;
            };
            let type_oid = as_i32(&cell(batch, "prorettype", row)?).unwrap_or(0);
            let set = matches!(
                cell(batch, "proretset", row)?,
                ScalarValue::Boolean(Some(true))
            );
            // The modes are written as a list of one-letter strings.
            let modes = cell(batch, "proargmodes", row)?.to_string();
            let table = modes.contains("'t'") || modes.split(',').any(|m| m.trim() == "t");
            returns.insert(
                oid,
                Returns {
                    type_oid,
                    set,
                    table,
                },
            );
        }
    }
    let mut type_names = HashMap::new();
    for batch in tables.pg_type.data() {
        for row in 0..batch.num_rows() {
            if let (Some(oid), ScalarValue::Utf8(Some(name)) | ScalarValue::Utf8View(Some(name))) = (
                as_i32(&cell(batch, "oid", row)?),
                cell(batch, "typname", row)?,
            ) {
                type_names.insert(oid, name);
            }
        }
    }
    Ok(Functions {
        returns,
        type_names,
    })
}

fn functions() -> Result<&'static Functions> {
    static FUNCTIONS: OnceLock<std::result::Result<Functions, String>> = OnceLock::new();
    match FUNCTIONS.get_or_init(|| load().map_err(|error| error.to_string())) {
        Ok(functions) => Ok(functions),
        Err(error) => exec_err!("cannot read pg_proc: {error}"),
    }
}

/// A type's name as `format_type` writes it: SQL's names for the types that have one,
/// `name[]` for arrays, else the catalog's name.
fn sql_name(type_names: &HashMap<i32, String>, oid: i32) -> String {
    let Some(name) = type_names.get(&oid) else {
        // What PostgreSQL's format_type writes for an oid it does not know.
        return "???".into();
    };
    if let Some(element) = name.strip_prefix('_')
        && let Some((element_oid, _)) = type_names.iter().find(|(_, n)| n.as_str() == element)
    {
        return format!("{}[]", sql_name(type_names, *element_oid));
    }
    match name.as_str() {
        "bool" => "boolean",
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "varchar" => "character varying",
        "bpchar" => "character",
        "char" => "\"char\"",
        "bit" => "bit",
        "varbit" => "bit varying",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        other => other,
    }
    .to_owned()
}

/// `pg_get_function_result(oid)`: NULL for an oid that is no function, as in PostgreSQL.
pub(super) fn function_result(oid: i32) -> Result<Option<String>> {
    let functions = functions()?;
    let Some(returns) = functions.returns.get(&oid) else {
        return Ok(None);
    };
    if returns.table {
        // PostgreSQL 16's built-in functions declare OUT arguments, never RETURNS TABLE;
        // rather than guess the column list, say so.
        return exec_err!(
            "pg_get_function_result: function {oid} returns TABLE(...), which this endpoint does not describe"
        );
    }
    let name = sql_name(&functions.type_names, returns.type_oid);
    Ok(Some(if returns.set {
        format!("SETOF {name}")
    } else {
        name
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_written_as_postgresql_writes_them() {
        // abs(integer), abs(double precision), generate_series(int4, int4), pg_get_keywords()
        assert_eq!(
            function_result(1397).expect("pg_proc reads").as_deref(),
            Some("integer")
        );
        assert_eq!(
            function_result(1395).expect("pg_proc reads").as_deref(),
            Some("double precision")
        );
        assert_eq!(
            function_result(1066).expect("pg_proc reads").as_deref(),
            Some("SETOF integer")
        );
        assert_eq!(
            function_result(1686).expect("pg_proc reads").as_deref(),
            Some("SETOF record")
        );
        assert_eq!(function_result(-5).expect("pg_proc reads"), None);
    }
}
