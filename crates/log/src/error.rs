//! The log crate's one error type, with a kind that callers map to exit codes and statuses.

use crate::port::Position;
use baton_core::{CodecError, EventId};

/// How a caller should treat an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong: fix it, retrying will not help.
    InvalidInput,
    /// The log or its server is unavailable or timed out: retrying later may help.
    Transient,
    /// Stored data cannot be read: a human must look.
    Corrupt,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event {event_id} cannot be stored: {source}")]
    Encode {
        event_id: EventId,
        #[source]
        source: CodecError,
    },
    #[error("corrupt event at position {position}: {source}")]
    Corrupt {
        position: Position,
        #[source]
        source: CodecError,
    },
    #[error("corrupt log entry: {0}")]
    CorruptEntry(String),
    #[error("embedded log at {path}: {message}")]
    Storage { path: String, message: String },
    #[error("nats: {0}")]
    Nats(String),
    /// The NATS settings themselves are wrong (a URL that does not parse, a credentials file
    /// that cannot be read): waiting will not help.
    #[error("nats: {0}")]
    NatsSettings(String),
    #[error("jetstream stream {stream}: {problem}")]
    StreamConfig { stream: String, problem: String },
}

impl LogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::Encode { .. } | LogError::StreamConfig { .. } | LogError::NatsSettings(_) => {
                ErrorKind::InvalidInput
            }
            LogError::Corrupt { .. } | LogError::CorruptEntry(_) => ErrorKind::Corrupt,
            LogError::Storage { .. } | LogError::Nats(_) => ErrorKind::Transient,
        }
    }

    pub(crate) fn nats(context: &str, error: impl std::fmt::Display) -> Self {
        LogError::Nats(format!("{context}: {error}"))
    }
}
