//! PostgreSQL functions and settings that clients rely on and DataFusion lacks.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::session::{SERVER_VERSION, SERVER_VERSION_NUM};

/// What a built-in function does differently here; everything else about it (name,
/// signature, return type, coercion) stays the built-in's. See [`overridden`].
pub(super) trait Override:
    std::fmt::Debug + PartialEq + Eq + std::hash::Hash + Send + Sync + 'static
{
    fn invoke(&self, builtin: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue>;
}

/// `builtin` with its evaluation replaced by `with`: one mechanism for the functions that
/// answer as PostgreSQL where DataFusion's do not (`to_timestamp`'s patterns, `round` of
/// floats, bounded `repeat`/`lpad`/`rpad`).
pub(super) fn overridden(builtin: Arc<ScalarUDF>, with: impl Override) -> ScalarUDF {
    ScalarUDF::from(Overridden { builtin, with })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Overridden<T> {
    builtin: Arc<ScalarUDF>,
    with: T,
}

impl<T: Override> ScalarUDFImpl for Overridden<T> {
    fn name(&self) -> &str {
        self.builtin.name()
    }

    fn signature(&self) -> &Signature {
        self.builtin.signature()
    }

    fn return_type(&self, arguments: &[DataType]) -> Result<DataType> {
        self.builtin.return_type(arguments)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.builtin.return_field_from_args(args)
    }

    fn coerce_types(&self, arguments: &[DataType]) -> Result<Vec<DataType>> {
        self.builtin.coerce_types(arguments)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.with.invoke(&self.builtin, args)
    }
}

/// Server settings as `SHOW` and `current_setting()` report them. The endpoint has no
/// per-server configuration, so these are constants; per-connection settings (`SET
/// search_path`, `SET TIME ZONE`) live in the connection and are answered by `SHOW`.
pub(super) fn server_setting(name: &str) -> Option<&'static str> {
    Some(match name.to_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => SERVER_VERSION_NUM,
        "standard_conforming_strings"
        | "integer_datetimes"
        | "transaction_read_only"
        | "default_transaction_read_only" => "on",
        "is_superuser" => "off",
        "server_encoding" | "client_encoding" => "UTF8",
        "max_identifier_length" => "63",
        "max_index_keys" => "32",
        "search_path" => "public",
        "timezone" => "UTC",
        "datestyle" => "ISO, YMD",
        _ => return None,
    })
}

/// `current_setting(name [, missing_ok])`, which Grafana uses to read `search_path`.
pub(super) fn current_setting() -> ScalarUDF {
    ScalarUDF::from(CurrentSetting {
        signature: Signature::one_of(
            vec![
                TypeSignature::String(1),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Stable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

fn setting(name: &str, missing_ok: bool) -> Result<Option<&'static str>> {
    match server_setting(name) {
        Some(value) => Ok(Some(value)),
        None if missing_ok => Ok(None),
        None => exec_err!("unrecognized configuration parameter \"{name}\""),
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(flag))) => flag.unwrap_or(false),
            Some(_) => {
                return Err(DataFusionError::NotImplemented(
                    "current_setting with a missing_ok that is not a constant".to_owned(),
                ));
            }
            None => false,
        };
        let Some(name) = args.args.first() else {
            return exec_err!("current_setting needs the setting's name");
        };
        match name {
            ColumnarValue::Scalar(scalar) => {
                let name = match scalar {
                    ScalarValue::Utf8(name)
                    | ScalarValue::LargeUtf8(name)
                    | ScalarValue::Utf8View(name) => name.clone(),
                    other => return exec_err!("current_setting: not a setting name: {other}"),
                };
                let value = match name {
                    Some(name) => setting(&name, missing_ok)?.map(str::to_owned),
                    None => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
            }
            ColumnarValue::Array(names) => {
                let names = cast(names, &DataType::Utf8)?;
                let names = names.as_string::<i32>();
                let values = (0..names.len())
                    .map(|row| {
                        if names.is_null(row) {
                            return Ok(None);
                        }
                        setting(names.value(row), missing_ok)
                    })
                    .collect::<Result<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
        }
    }
}

/// `pg_get_serial_sequence(table, column)`: the sequence behind a serial column, which no view
/// column has, so always `NULL`. SQLAlchemy's column reflection (Superset) calls it.
pub(super) fn pg_get_serial_sequence() -> ScalarUDF {
    ScalarUDF::from(NullText {
        name: "pg_get_serial_sequence",
        signature: Signature::string(2, Volatility::Stable),
    })
}

/// A catalog function whose answer is always a text `NULL` here.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullText {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for NullText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `json_build_object(key, value, ...)`: a JSON object as text, keys as text, numbers and
/// booleans as themselves, other values as their text. SQLAlchemy's column reflection builds
/// identity-column details with it.
pub(super) fn json_build_object() -> ScalarUDF {
    ScalarUDF::from(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

fn json_value(column: &dyn Array, row: usize) -> Result<serde_json::Value> {
    // A bare `null` is an array of type Null, which has no validity bits: ask the value.
    let value = ScalarValue::try_from_array(column, row)?;
    if value.is_null() {
        return Ok(serde_json::Value::Null);
    }
    Ok(match value {
        ScalarValue::Boolean(Some(flag)) => serde_json::Value::Bool(flag),
        ScalarValue::Int8(Some(n)) => n.into(),
        ScalarValue::Int16(Some(n)) => n.into(),
        ScalarValue::Int32(Some(n)) => n.into(),
        ScalarValue::Int64(Some(n)) => n.into(),
        ScalarValue::UInt8(Some(n)) => n.into(),
        ScalarValue::UInt16(Some(n)) => n.into(),
        ScalarValue::UInt32(Some(n)) => n.into(),
        ScalarValue::UInt64(Some(n)) => n.into(),
        ScalarValue::Float32(Some(x)) => serde_json::Number::from_f64(f64::from(x))
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        ScalarValue::Float64(Some(x)) => serde_json::Number::from_f64(x)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        ScalarValue::Utf8(Some(text))
        | ScalarValue::LargeUtf8(Some(text))
        | ScalarValue::Utf8View(Some(text)) => serde_json::Value::String(text),
        other => serde_json::Value::String(other.to_string()),
    })
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return exec_err!("json_build_object needs keys and values in pairs");
        }
        let columns = args
            .args
            .iter()
            .map(|arg| arg.to_array(args.number_rows))
            .collect::<Result<Vec<_>>>()?;
        let objects = (0..args.number_rows)
            .map(|row| {
                let mut object = serde_json::Map::new();
                for pair in columns.chunks(2) {
                    let key = match json_value(&pair[0], row)? {
                        serde_json::Value::String(key) => key,
                        serde_json::Value::Null => {
                            return exec_err!("json_build_object: a key is null");
                        }
                        other => other.to_string(),
                    };
                    object.insert(key, json_value(&pair[1], row)?);
                }
                Ok(Some(serde_json::Value::Object(object).to_string()))
            })
            .collect::<Result<StringArray>>()?;
        Ok(ColumnarValue::Array(Arc::new(objects)))
    }
}

/// `pg_collation_is_visible(oid)`: true; every object here is on the search path. SQLAlchemy's
/// column reflection asks it of each column's collation.
pub(super) fn pg_collation_is_visible() -> ScalarUDF {
    ScalarUDF::from(CollationIsVisible {
        signature: Signature::any(1, Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CollationIsVisible {
    signature: Signature,
}

impl ScalarUDFImpl for CollationIsVisible {
    fn name(&self) -> &str {
        "pg_collation_is_visible"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
    }
}

/// The longest text one value of `repeat`, `lpad` or `rpad` may be.
const MAX_VALUE_BYTES: i64 = 1 << 20;
/// The most text one call of them may build over a batch of rows.
const MAX_BATCH_BYTES: i64 = 64 << 20;

/// Which argument of a text-building function says how long its result is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Builds {
    /// `repeat(text, count)`: the text's length times the count.
    Repeat,
    /// `lpad(text, length [, fill])`, `rpad`: `length` characters, up to 4 bytes each.
    Pad,
}

/// DataFusion's `repeat`, `lpad` or `rpad`, refusing (`53200`, out of resources) a result longer than 1 MiB a
/// value or 64 MiB a call before building it. Their text is built outside the query memory
/// pool, so `repeat('x', 1e9)` took the process to 4–5 GB (issue 24.6).
pub(super) fn bounded_text_builder(inner: Arc<ScalarUDF>) -> Option<ScalarUDF> {
    let builds = match inner.name() {
        "repeat" => Builds::Repeat,
        "lpad" | "rpad" => Builds::Pad,
        _ => return None,
    };
    Some(overridden(inner, BoundedText { builds }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedText {
    builds: Builds,
}

impl BoundedText {
    /// The bytes each row's result would take, at most, from the arguments.
    fn sizes(&self, args: &ScalarFunctionArgs) -> Result<Vec<i64>> {
        let rows = args.number_rows;
        let count = match args.args.get(1) {
            Some(count) => cast(&count.to_array(rows)?, &DataType::Int64)?,
            None => return Ok(Vec::new()),
        };
        let count = count.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let text_lengths = match (self.builds, args.args.first()) {
            (Builds::Repeat, Some(text)) => {
                let text = cast(&text.to_array(rows)?, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                (0..rows)
                    .map(|row| {
                        if text.is_null(row) {
                            0
                        } else {
                            text.value(row).len() as i64
                        }
                    })
                    .collect()
            }
            _ => vec![4; rows],
        };
        Ok((0..rows)
            .map(|row| {
                if count.is_null(row) {
                    0
                } else {
                    count.value(row).max(0).saturating_mul(text_lengths[row])
                }
            })
            .collect())
    }
}

impl Override for BoundedText {
    fn invoke(&self, builtin: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let sizes = self.sizes(&args)?;
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let total = sizes
            .iter()
            .fold(0i64, |sum, size| sum.saturating_add(*size));
        if largest > MAX_VALUE_BYTES || total > MAX_BATCH_BYTES {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {} bytes ({} in one value): the SQL endpoint allows {} bytes a value and {} a call",
                builtin.name(),
                total,
                largest,
                MAX_VALUE_BYTES,
                MAX_BATCH_BYTES
            )));
        }
        builtin.invoke_with_args(args)
    }
}

/// `round(double precision)` rounds half to even in PostgreSQL (it is C's `rint`):
/// `round(2.5::float8)` is 2. DataFusion's `round` rounds half away from zero, right for
/// `numeric` (which PostgreSQL rounds that way too) but not for floats, where the views'
/// scores and amounts are. The one-argument float case is computed here; the rest is
/// DataFusion's.
pub(super) fn round_floats_half_even(inner: Arc<ScalarUDF>) -> ScalarUDF {
    overridden(inner, RoundHalfEven)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RoundHalfEven;

impl Override for RoundHalfEven {
    fn invoke(&self, builtin: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 1 {
            return builtin.invoke_with_args(args);
        }
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Float64(value)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Float64(value.map(f64::round_ties_even)),
            )),
            ColumnarValue::Scalar(ScalarValue::Float32(value)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Float32(value.map(f32::round_ties_even)),
            )),
            ColumnarValue::Array(array) if array.data_type() == &DataType::Float64 => {
                let values = array
                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                    .unary::<_, datafusion::arrow::datatypes::Float64Type>(f64::round_ties_even);
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            ColumnarValue::Array(array) if array.data_type() == &DataType::Float32 => {
                let values = array
                    .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
                    .unary::<_, datafusion::arrow::datatypes::Float32Type>(f32::round_ties_even);
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            _ => builtin.invoke_with_args(args),
        }
    }
}
