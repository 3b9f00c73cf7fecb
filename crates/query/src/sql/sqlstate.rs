//! The one place where engine errors become PostgreSQL errors: a SQLSTATE, a primary message,
//! and a detail and hint where they help. Without it every DataFusion error would reach the
//! client as `XX000` with DataFusion's own wording.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::api::{ClientInfo, ErrorHandler};
use pgwire::error::{ErrorInfo, PgWireError};

/// Rewrites engine errors before they are sent.
#[derive(Debug)]
pub(super) struct SqlErrorHandler;

impl ErrorHandler for SqlErrorHandler {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::ApiError(source) = error {
            let info = if let Some(engine) = source.downcast_ref::<DataFusionError>() {
                engine_error(engine)
            } else if let Some(parser) = source.downcast_ref::<ParserError>() {
                syntax_error(&parser.to_string())
            } else {
                error_info("XX000", source.to_string())
            };
            *error = PgWireError::UserError(Box::new(info));
        }
        if let PgWireError::UserError(info) = error {
            tracing::debug!(
                peer = %client.socket_addr(),
                code = %info.code,
                message = %info.message,
                "SQL error"
            );
        }
    }
}

const TABLES_HINT: &str = "The live view's tables are in schema public, each view's in a schema named after it: \\dt *.* or information_schema.tables lists them, and docs/views.md describes every column.";
const COLUMNS_HINT: &str = "docs/views.md describes every table's columns.";
const DIALECT_HINT: &str =
    "The endpoint speaks DataFusion's PostgreSQL dialect (docs/sql.md lists what differs).";

fn error_info(code: &str, message: String) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message)
}

pub(super) fn syntax_error(message: &str) -> ErrorInfo {
    let message = message
        .strip_prefix("sql parser error: ")
        .unwrap_or(message);
    let mut info = error_info("42601", format!("syntax error: {message}"));
    info.hint = Some(DIALECT_HINT.to_owned());
    info
}

/// PostgreSQL messages start in lower case and carry no DataFusion prefix.
fn primary(message: &str) -> String {
    let message = message.trim();
    let mut chars = message.chars();
    match chars.next() {
        Some(first) if !message.starts_with("SQL") => first.to_lowercase().chain(chars).collect(),
        _ => message.to_owned(),
    }
}

pub(super) fn engine_error(error: &DataFusionError) -> ErrorInfo {
    let root = error.find_root();
    let text = root.message();
    // DataFusion puts suggestions ("Valid fields are ...") on lines after the first; in
    // PostgreSQL they belong in DETAIL.
    let (first_line, more) = match text.split_once('\n') {
        Some((first, more)) => (first, Some(more.trim().to_owned())),
        None => (&*text, None),
    };
    let message = primary(first_line.trim_end_matches('.'));
    let (code, hint) = match root {
        DataFusionError::SQL(parser, _) => return syntax_error(&parser.to_string()),
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => ("42703", Some(COLUMNS_HINT)),
            SchemaError::AmbiguousReference { .. } => ("42702", None),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => ("42701", None),
        },
        DataFusionError::Plan(text) if is_missing_table(text) => ("42P01", Some(TABLES_HINT)),
        DataFusionError::Plan(text) if is_missing_function(text) => ("42883", Some(DIALECT_HINT)),
        DataFusionError::Plan(_) => ("42000", None),
        DataFusionError::NotImplemented(_) => ("0A000", Some(DIALECT_HINT)),
        DataFusionError::Configuration(_) => ("22023", None),
        DataFusionError::ResourcesExhausted(_) => ("53200", None),
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::DivideByZero => ("22012", None),
            ArrowError::CastError(_) | ArrowError::ParseError(_) => ("22P02", None),
            ArrowError::ArithmeticOverflow(_) => ("22003", None),
            _ => ("22000", None),
        },
        DataFusionError::Execution(text) if text.starts_with("unrecognized configuration") => {
            ("42704", None)
        }
        DataFusionError::Execution(text) if text.to_lowercase().contains("cast") => ("22P02", None),
        _ => ("XX000", None),
    };
    let mut info = error_info(code, message);
    // So does the context DataFusion added around the root cause.
    let full = error.strip_backtrace();
    let context = (!std::ptr::eq(root, error) && full != root.strip_backtrace()).then_some(full);
    let detail: Vec<String> = more.into_iter().chain(context).collect();
    if !detail.is_empty() {
        info.detail = Some(detail.join("\n"));
    }
    info.hint = hint.map(str::to_owned);
    info
}

fn is_missing_table(text: &str) -> bool {
    text.starts_with("table '") && text.ends_with("' not found")
}

fn is_missing_function(text: &str) -> bool {
    text.starts_with("Invalid function") || text.contains("function") && text.contains("not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tables_and_functions_get_their_codes() {
        let info = engine_error(&DataFusionError::Plan(
            "table 'baton.public.nope' not found".to_owned(),
        ));
        assert_eq!(info.code, "42P01");
        assert_eq!(info.message, "table 'baton.public.nope' not found");
        assert!(info.hint.is_some());
        let info = engine_error(&DataFusionError::Plan(
            "Invalid function 'nope'.\nDid you mean 'now'?".to_owned(),
        ));
        assert_eq!(info.code, "42883");
        assert_eq!(info.message, "invalid function 'nope'");
        assert_eq!(info.detail.as_deref(), Some("Did you mean 'now'?"));
    }

    #[test]
    fn context_goes_to_detail() {
        let error = DataFusionError::Context(
            "while planning".to_owned(),
            Box::new(DataFusionError::NotImplemented("LATERAL".to_owned())),
        );
        let info = engine_error(&error);
        assert_eq!(info.code, "0A000");
        assert!(info.detail.expect("detail").contains("while planning"));
    }
}
