//! PostgreSQL's `to_char(timestamp, pattern)` and `timezone(zone, timestamp)`, which BI tools
//! put in the SQL they generate (Metabase's report time zone, a dashboard's date labels).
//! DataFusion's `to_char` reads chrono's patterns (`%Y-%m-%d`), so PostgreSQL's `YYYY-MM-DD`
//! came back as the literal text: a silently wrong answer. Here the PostgreSQL patterns are
//! computed, and a pattern PostgreSQL knows but this does not compute is refused by name
//! (`0A000`), never printed as text. `to_timestamp(text, pattern)` and `to_date(text,
//! pattern)` (Metabase's `YYYYMMDDHH24MISS` coercion) read PostgreSQL's patterns too: they
//! are translated to the chrono patterns DataFusion's functions read.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, Result, exec_err, not_impl_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `to_char(timestamp, pattern)`.
pub(super) fn to_char() -> ScalarUDF {
    ScalarUDF::from(ToChar {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

/// `timezone(zone, timestamp)` (also written `timestamp AT TIME ZONE zone`).
pub(super) fn timezone() -> ScalarUDF {
    ScalarUDF::from(Timezone {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

/// DataFusion's `to_timestamp` or `to_date` (`inner`), reading PostgreSQL's patterns.
pub(super) fn with_postgresql_patterns(inner: Arc<ScalarUDF>) -> ScalarUDF {
    super::functions::overridden(inner, PgPatterns)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgPatterns;

impl super::functions::Override for PgPatterns {
    fn invoke(&self, builtin: &ScalarUDF, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // The first argument is the value; every later one a pattern.
        for pattern in args.args.iter_mut().skip(1) {
            *pattern = match &*pattern {
                ColumnarValue::Scalar(value) => match value {
                    datafusion::common::ScalarValue::Utf8(Some(text))
                    | datafusion::common::ScalarValue::Utf8View(Some(text))
                    | datafusion::common::ScalarValue::LargeUtf8(Some(text)) => {
                        ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(
                            chrono_pattern(text)?,
                        )))
                    }
                    other => ColumnarValue::Scalar(other.clone()),
                },
                ColumnarValue::Array(array) => {
                    let texts = cast(array, &DataType::Utf8)?;
                    let texts = texts.as_string::<i32>();
                    let mut out = StringBuilder::new();
                    for row in 0..texts.len() {
                        if texts.is_null(row) {
                            out.append_null();
                        } else {
                            out.append_value(chrono_pattern(texts.value(row))?);
                        }
                    }
                    let translated =
                        cast(&(Arc::new(out.finish()) as ArrayRef), array.data_type())?;
                    ColumnarValue::Array(translated)
                }
            };
        }
        builtin.invoke_with_args(args)
    }
}

/// A PostgreSQL `to_timestamp`/`to_date` template as the chrono pattern DataFusion reads.
/// Patterns without a chrono equivalent are refused by name.
fn chrono_pattern(pattern: &str) -> Result<String> {
    const PATTERNS: &[(&str, &str)] = &[
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("YYYY", "%Y"),
        ("YY", "%y"),
        ("MONTH", "%B"),
        ("MON", "%b"),
        ("MM", "%m"),
        ("DAY", "%A"),
        ("DY", "%a"),
        ("DDD", "%j"),
        ("DD", "%d"),
    ];
    const REFUSED: &[&str] = &[
        "IYYY", "IW", "ID", "WW", "W", "CC", "Q", "J", "D", "TZ", "OF", "SSSS", "RM", "Y,YYY",
        "YYY", "Y", "FF",
    ];
    let mut out = String::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end].replace('%', "%%"));
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        let body = match rest.get(..2) {
            Some(prefix) if prefix.eq_ignore_ascii_case("FM") => &rest[2..],
            _ => rest,
        };
        let upper = body.to_ascii_uppercase();
        let matched = PATTERNS
            .iter()
            .filter(|(name, _)| upper.starts_with(name))
            .max_by_key(|(name, _)| name.len());
        let refused = REFUSED
            .iter()
            .filter(|name| upper.starts_with(**name))
            .max_by_key(|name| name.len());
        if let Some(name) = refused
            && matched.is_none_or(|(m, _)| name.len() > m.len())
        {
            return not_impl_err!(
                "to_timestamp/to_date: the template pattern \"{}\" is not supported here \
                 (supported: YYYY YY MM MON MONTH DD DDD DY DAY HH HH12 HH24 MI SS MS US AM PM, \
                 FM, \"text\")",
                &body[..name.len()]
            );
        }
        match matched {
            Some((name, chrono)) => {
                out.push_str(chrono);
                rest = &body[name.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                if c == '%' {
                    out.push_str("%%");
                } else {
                    out.push(c);
                }
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Timezone {
    signature: Signature,
}

/// The values as microseconds since the epoch (UTC) and whether they carry a time zone.
fn micros(value: &ColumnarValue, rows: usize) -> Result<(ArrayRef, bool)> {
    let array = value.to_array(rows)?;
    let zoned = match array.data_type() {
        DataType::Timestamp(_, zone) => zone.is_some(),
        DataType::Date32 | DataType::Date64 | DataType::Null => false,
        other => {
            return not_impl_err!(
                "to_char and timezone take a timestamp or a date here, not {other}"
            );
        }
    };
    let as_micros = cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok((as_micros, zoned))
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (values, _) = micros(&args.args[0], rows)?;
        let patterns = args.args[1].to_array(rows)?;
        let patterns = cast(&patterns, &DataType::Utf8)?;
        let patterns = patterns.as_string::<i32>();
        let values =
            values.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let mut out = StringBuilder::new();
        for row in 0..values.len() {
            if values.is_null(row) || patterns.is_null(row) {
                out.append_null();
                continue;
            }
            let Some(at) = DateTime::<Utc>::from_timestamp_micros(values.value(row)) else {
                return exec_err!("timestamp out of range");
            };
            out.append_value(format(&at.naive_utc(), patterns.value(row))?);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(
            if rows == 1
                && args
                    .args
                    .iter()
                    .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}

impl ScalarUDFImpl for Timezone {
    fn name(&self) -> &str {
        "timezone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// A zoned timestamp becomes the wall-clock time in the zone (no zone); a timestamp
    /// without a zone is read as wall-clock time in the zone and becomes a zoned one, as in
    /// PostgreSQL.
    fn return_type(&self, arguments: &[DataType]) -> Result<DataType> {
        Ok(match arguments.get(1) {
            Some(DataType::Timestamp(_, Some(_))) => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            _ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let zones = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
        let zones = zones.as_string::<i32>();
        let (values, zoned) = micros(&args.args[1], rows)?;
        let values =
            values.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let mut out = TimestampMicrosecondBuilder::new();
        for row in 0..values.len() {
            if values.is_null(row) || zones.is_null(row) {
                out.append_null();
                continue;
            }
            let zone = zone(zones.value(row))?;
            let Some(at) = DateTime::<Utc>::from_timestamp_micros(values.value(row)) else {
                return exec_err!("timestamp out of range");
            };
            let converted = if zoned {
                // The instant's wall-clock time in the zone.
                at.with_timezone(&zone)
                    .naive_local()
                    .and_utc()
                    .timestamp_micros()
            } else {
                // The wall-clock time read in the zone, as an instant.
                match zone.from_local_datetime(&at.naive_utc()).earliest() {
                    Some(local) => local.with_timezone(&Utc).timestamp_micros(),
                    None => return exec_err!("{} does not exist in {}", at.naive_utc(), zone),
                }
            };
            out.append_value(converted);
        }
        let array = out.finish();
        let array: ArrayRef = if zoned {
            Arc::new(array)
        } else {
            Arc::new(array.with_timezone("UTC"))
        };
        Ok(ColumnarValue::Array(array))
    }
}

fn zone(name: &str) -> Result<chrono_tz::Tz> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") || name.eq_ignore_ascii_case("z") {
        return Ok(chrono_tz::UTC);
    }
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| DataFusionError::Execution(format!("time zone \"{name}\" not recognized")))
}

/// PostgreSQL's template patterns that this does not compute: refused by name rather than
/// printed as text.
const NOT_COMPUTED: &[&str] = &[
    "Y,YYY", "SSSSS", "SSSS", "FF1", "FF2", "FF3", "FF4", "FF5", "FF6", "A.M.", "P.M.", "B.C.",
    "A.D.", "IDDD", "IYY", "IY", "BC", "AD", "RM", "TZH", "TZM", "OF", "J", "I",
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Text in the capitalization of the pattern that asked for it: `MONTH`, `Month`, `month`.
fn cased(text: &str, pattern: &str) -> String {
    let mut letters = pattern.chars();
    let first_upper = letters.next().is_some_and(|c| c.is_ascii_uppercase());
    let rest_upper = letters.next().is_some_and(|c| c.is_ascii_uppercase());
    match (first_upper, rest_upper) {
        (true, true) => text.to_uppercase(),
        (true, false) => text.to_owned(),
        _ => text.to_lowercase(),
    }
}

/// How one template pattern is written, given the pattern as the template spells it.
type Field<'a> = Box<dyn Fn(&str) -> String + 'a>;

/// `at` written with PostgreSQL's `to_char` template `pattern`.
fn format(at: &NaiveDateTime, pattern: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        // "quoted text" is copied; \" is a quote.
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end]);
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        let (fill, body) = match rest.get(..2) {
            Some(prefix) if prefix.eq_ignore_ascii_case("FM") => (false, &rest[2..]),
            _ => (true, rest),
        };
        let upper = body.to_ascii_uppercase();
        let pad = |value: i64, width: usize| {
            if fill {
                format!("{value:0width$}")
            } else {
                value.to_string()
            }
        };
        let padded_text = |text: String| {
            if fill { format!("{text:<9}") } else { text }
        };
        let hour12 = match at.hour() % 12 {
            0 => 12,
            h => h,
        };
        let iso = at.iso_week();
        let patterns: Vec<(&str, Field<'_>)> = vec![
            ("HH24", Box::new(|_| pad(at.hour().into(), 2))),
            ("HH12", Box::new(|_| pad(hour12.into(), 2))),
            ("HH", Box::new(|_| pad(hour12.into(), 2))),
            ("MI", Box::new(|_| pad(at.minute().into(), 2))),
            ("SS", Box::new(|_| pad(at.second().into(), 2))),
            (
                "MS",
                Box::new(|_| pad((at.nanosecond() / 1_000_000).into(), 3)),
            ),
            ("US", Box::new(|_| pad((at.nanosecond() / 1_000).into(), 6))),
            (
                "AM",
                Box::new(|p| cased(if at.hour() < 12 { "AM" } else { "PM" }, p)),
            ),
            (
                "PM",
                Box::new(|p| cased(if at.hour() < 12 { "AM" } else { "PM" }, p)),
            ),
            ("YYYY", Box::new(|_| pad(at.year().into(), 4))),
            ("YYY", Box::new(|_| pad((at.year() % 1000).into(), 3))),
            ("YY", Box::new(|_| pad((at.year() % 100).into(), 2))),
            ("IYYY", Box::new(|_| pad(iso.year().into(), 4))),
            ("Y", Box::new(|_| (at.year() % 10).to_string())),
            (
                "MONTH",
                Box::new(|p| padded_text(cased(MONTHS[at.month0() as usize], p))),
            ),
            (
                "MON",
                Box::new(|p| cased(&MONTHS[at.month0() as usize][..3], p)),
            ),
            ("MM", Box::new(|_| pad(at.month().into(), 2))),
            (
                "DAY",
                Box::new(|p| {
                    padded_text(cased(DAYS[at.weekday().num_days_from_sunday() as usize], p))
                }),
            ),
            (
                "DY",
                Box::new(|p| cased(&DAYS[at.weekday().num_days_from_sunday() as usize][..3], p)),
            ),
            ("DDD", Box::new(|_| pad(at.ordinal().into(), 3))),
            ("DD", Box::new(|_| pad(at.day().into(), 2))),
            (
                "D",
                Box::new(|_| (at.weekday().num_days_from_sunday() + 1).to_string()),
            ),
            (
                "ID",
                Box::new(|_| at.weekday().number_from_monday().to_string()),
            ),
            ("IW", Box::new(|_| pad(iso.week().into(), 2))),
            (
                "WW",
                Box::new(|_| pad(((at.ordinal() - 1) / 7 + 1).into(), 2)),
            ),
            ("W", Box::new(|_| ((at.day() - 1) / 7 + 1).to_string())),
            (
                "CC",
                Box::new(|_| pad(((at.year() - 1) / 100 + 1).into(), 2)),
            ),
            ("Q", Box::new(|_| ((at.month0() / 3) + 1).to_string())),
            ("TZ", Box::new(|p| cased("UTC", p))),
        ];
        // The longest pattern at this point wins (`HH24` over `HH`, `SSSS` over `SS`); one
        // PostgreSQL has and this does not compute is refused by name.
        let matched = patterns
            .iter()
            .filter(|(name, _)| upper.starts_with(name))
            .max_by_key(|(name, _)| name.len());
        let refused = NOT_COMPUTED
            .iter()
            .filter(|word| upper.starts_with(**word))
            .max_by_key(|word| word.len());
        if let Some(word) = refused
            && matched.is_none_or(|(name, _)| word.len() >= name.len())
        {
            return not_impl_err!(
                "to_char: the template pattern \"{}\" is not supported here (supported: YYYY YY \
                 MM MON MONTH DD DDD D ID DY DAY HH HH12 HH24 MI SS MS US AM PM Q W WW IW IYYY \
                 CC TZ, FM, \"text\")",
                &body[..word.len()]
            );
        }
        match matched {
            Some((name, write)) => {
                out.push_str(&write(&body[..name.len()]));
                rest = &body[name.len()..];
            }
            None => {
                // Not a pattern: the character itself, as PostgreSQL copies it.
                let c = rest.chars().next().unwrap_or_default();
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("a time")
    }

    #[test]
    fn postgresql_patterns_are_computed() {
        let t = at("2026-03-09 15:04:05.123456");
        // The values PostgreSQL 16 prints for the same timestamp and patterns.
        assert_eq!(format(&t, "YYYY-MM-DD").expect("ok"), "2026-03-09");
        assert_eq!(
            format(&t, "YYYY-MM-DD HH24:MI:SS").expect("ok"),
            "2026-03-09 15:04:05"
        );
        assert_eq!(format(&t, "HH12:MI AM").expect("ok"), "03:04 PM");
        assert_eq!(format(&t, "Mon DD, YYYY").expect("ok"), "Mar 09, 2026");
        assert_eq!(format(&t, "FMMonth FMDD").expect("ok"), "March 9");
        assert_eq!(format(&t, "Month").expect("ok"), "March    ");
        assert_eq!(format(&t, "DAY dy").expect("ok"), "MONDAY    mon");
        assert_eq!(format(&t, "YYYY \"Q\"Q").expect("ok"), "2026 Q1");
        assert_eq!(format(&t, "IYYY-IW").expect("ok"), "2026-11");
        assert_eq!(format(&t, "MS US").expect("ok"), "123 123456");
        assert_eq!(
            format(&t, "DDD D ID WW W CC").expect("ok"),
            "068 2 1 10 2 21"
        );
    }

    #[test]
    fn postgresql_templates_translate_to_chrono() {
        assert_eq!(
            chrono_pattern("YYYYMMDDHH24MISS").expect("ok"),
            "%Y%m%d%H%M%S"
        );
        assert_eq!(chrono_pattern("YYYY-MM-DD").expect("ok"), "%Y-%m-%d");
        assert_eq!(
            chrono_pattern("DD Mon YYYY HH12:MI AM").expect("ok"),
            "%d %b %Y %I:%M %p"
        );
        assert_eq!(chrono_pattern("\"at\" HH24%").expect("ok"), "at %H%%");
        assert!(chrono_pattern("IYYY-IW").is_err());
    }

    #[test]
    fn patterns_not_computed_are_refused_by_name() {
        let t = at("2026-03-09 15:04:05.0");
        let error = format(&t, "J").expect_err("refused");
        assert!(error.to_string().contains("\"J\""), "{error}");
        assert!(format(&t, "YYYY-MM-DD SSSS").is_err());
    }
}
