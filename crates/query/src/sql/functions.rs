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
