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

/// A timestamp that could not be taken, with what was given and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 timestamp: {text:?}")]
    NotRfc3339 { text: String },
    /// A well-formed time outside what Baton keeps.
    #[error(
        "{given} is out of range: Baton accepts times from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z"
    )]
    OutOfRange { given: String },
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

    /// Milliseconds since the epoch from an input, refused (not clamped) when outside the
    /// range Baton keeps: a SendGrid `timestamp` of -1e15 is a mistake to report, not 1970.
    pub fn try_from_unix_millis(millis: i64) -> Result<Self, TimestampError> {
        if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            Ok(Timestamp(millis))
        } else {
            Err(TimestampError::OutOfRange {
                given: format!("{millis} ms since the Unix epoch"),
            })
        }
    }

    /// [`Self::try_from_unix_millis`] for whole seconds.
    pub fn try_from_unix_seconds(seconds: i64) -> Result<Self, TimestampError> {
        let out_of_range = || TimestampError::OutOfRange {
            given: format!("{seconds} s since the Unix epoch"),
        };
        let millis = seconds.checked_mul(1000).ok_or_else(out_of_range)?;
        Timestamp::try_from_unix_millis(millis).map_err(|_| out_of_range())
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Parses `2026-03-01T12:00:00Z`, `2026-03-01T12:00:00.250+02:00` and the like.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let parsed =
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimestampError::NotRfc3339 {
                text: text.to_owned(),
            })?;
        let out_of_range = || TimestampError::OutOfRange {
            given: format!("{text:?}"),
        };
        let millis = parsed.unix_timestamp_nanos() / 1_000_000;
        let millis = i64::try_from(millis).map_err(|_| out_of_range())?;
        if !(MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
            return Err(out_of_range());
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
    fn times_out_of_range_are_refused_saying_so() {
        assert_eq!(
            Timestamp::try_from_unix_seconds(1_764_000_000).map(Timestamp::unix_millis),
            Ok(1_764_000_000_000)
        );
        for refused in [
            Timestamp::try_from_unix_seconds(-1_000_000_000_000_000),
            Timestamp::try_from_unix_seconds(i64::MAX),
            Timestamp::try_from_unix_millis(-1),
            Timestamp::try_from_unix_millis(MAX_MILLIS + 1),
        ] {
            let error = refused.expect_err("out of range");
            assert!(
                matches!(error, TimestampError::OutOfRange { .. }),
                "{error}"
            );
            assert!(
                error.to_string().contains("1970-01-01T00:00:00Z"),
                "{error}"
            );
        }
        let before = Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").expect_err("before 1970");
        assert!(before.to_string().contains("out of range"), "{before}");
        let garbled = Timestamp::parse_rfc3339("yesterday").expect_err("not a time");
        assert!(garbled.to_string().contains("not an RFC 3339"), "{garbled}");
    }

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
