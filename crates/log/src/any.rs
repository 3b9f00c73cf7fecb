//! Either backend behind one type, for binaries that choose the backend at run time.

use crate::embedded::EmbeddedLog;
use crate::error::LogError;
use crate::jetstream::JetStreamLog;
use crate::port::{AppendOutcome, EventLog, LogStat, Position, RecordStream};
use baton_core::Event;

/// The embedded log or the JetStream log, chosen by configuration.
#[derive(Clone, Debug)]
pub enum AnyLog {
    Embedded(EmbeddedLog),
    JetStream(JetStreamLog),
}

impl AnyLog {
    /// A short description for messages: `embedded log at DIR` or `JetStream stream S at URL`.
    pub fn describe(&self) -> String {
        match self {
            AnyLog::Embedded(log) => format!("embedded log at {}", log.path()),
            AnyLog::JetStream(log) => format!(
                "JetStream stream {} at {}",
                log.config().stream,
                log.config().url
            ),
        }
    }
}

impl EventLog for AnyLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>, LogError> {
        match self {
            AnyLog::Embedded(log) => log.append(events).await,
            AnyLog::JetStream(log) => log.append(events).await,
        }
    }

    async fn stat(&self) -> Result<LogStat, LogError> {
        match self {
            AnyLog::Embedded(log) => log.stat().await,
            AnyLog::JetStream(log) => log.stat().await,
        }
    }

    async fn read(&self, from: Position) -> Result<RecordStream, LogError> {
        match self {
            AnyLog::Embedded(log) => log.read(from).await,
            AnyLog::JetStream(log) => log.read(from).await,
        }
    }

    async fn follow(&self, from: Position) -> Result<RecordStream, LogError> {
        match self {
            AnyLog::Embedded(log) => log.follow(from).await,
            AnyLog::JetStream(log) => log.follow(from).await,
        }
    }
}
