//! Business and knowledge time as milliseconds since the Unix epoch, UTC.
//!
//! Core never reads a clock: callers hand timestamps in as values.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

/// A timestamp that could not be parsed, with the text that was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {text:?}")]
pub struct TimestampError {
    text: String,
}

/// Earliest accepted timestamp: 1970-01-01. Years before it are almost always a zero or a bug.
const MIN_MILLIS: i64 = 0;
/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    pub const MILLIS_PER_DAY: i64 = 86_400_000;

    /// Wraps milliseconds since the epoch, clamped to the range RFC 3339 can express.
    pub const fn from_unix_millis(millis: i64) -> Self {
        if millis < MIN_MILLIS {
            Timestamp(MIN_MILLIS)
        } else if millis > MAX_MILLIS {
            Timestamp(MAX_MILLIS)
        } else {
            Timestamp(millis)
        }
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Parses `2026-03-01T12:00:00Z`, `2026-03-01T12:00:00.250+02:00` and the like.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let error = || TimestampError {
            text: text.to_owned(),
        };
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| error())?;
        let millis = parsed.unix_timestamp_nanos() / 1_000_000;
        let millis = i64::try_from(millis).map_err(|_| error())?;
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            return Err(error());
        }
        Ok(Timestamp(millis))
    }

    /// Formats as RFC 3339 in UTC with millisecond precision, e.g. `2026-03-01T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        let moment = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .expect("invariant: a Timestamp is always within the range RFC 3339 can write");
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            moment.year(),
            u8::from(moment.month()),
            moment.day(),
            moment.hour(),
            moment.minute(),
            moment.second(),
            moment.millisecond()
        )
    }

    /// This timestamp moved by `millis` (negative moves back), clamped to the valid range.
    pub const fn add_millis(self, millis: i64) -> Self {
        Timestamp::from_unix_millis(self.0.saturating_add(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_into_utc() {
        let a = Timestamp::parse_rfc3339("2026-03-01T12:00:00Z").expect("valid");
        let b = Timestamp::parse_rfc3339("2026-03-01T14:00:00+02:00").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.to_rfc3339(), "2026-03-01T12:00:00.000Z");
    }

    #[test]
    fn keeps_milliseconds() {
        let t = Timestamp::parse_rfc3339("2026-03-01T12:00:00.25Z").expect("valid");
        assert_eq!(t.unix_millis() % 1000, 250);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
    }

    #[test]
    fn rejects_prose_and_dates_without_time() {
        for text in ["yesterday", "2026-03-01", "", "2026-13-01T00:00:00Z"] {
            let error = Timestamp::parse_rfc3339(text).expect_err(text);
            assert!(error.to_string().contains(&format!("{text:?}")));
        }
    }

    #[test]
    fn rejects_before_epoch() {
        assert!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").is_err());
    }
}
