//! The `EventLog` port: what every backend offers, and the values it speaks in.

use crate::error::LogError;
use baton_core::Event;
use futures::stream::BoxStream;
use std::fmt;
use std::future::Future;

/// The place of an event on the log: 1 for the first event, counting up without gaps on the
/// embedded log. `Position::ZERO` means "before the first event" (an empty log's head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    pub const ZERO: Position = Position(0);

    pub const fn new(value: u64) -> Self {
        Position(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event read back from the log, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub position: Position,
    pub event: Event,
}

/// What became of one event handed to [`EventLog::append`], in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored at this position.
    Appended(Position),
    /// Its event id was already on the log (or earlier in the same batch) at this position;
    /// nothing was stored.
    Duplicate(Position),
    /// It could not be written (the server stayed unreachable through the retries). Nothing is
    /// known to be stored; appending it again is safe and will not store it twice.
    NotWritten(String),
}

/// Size of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStat {
    /// Position of the last event; `Position::ZERO` when empty.
    pub head: Position,
    /// Number of events stored.
    pub events: u64,
}

/// Records in position order. A corrupt entry is yielded as an error naming its position, and
/// the stream ends after it: nothing is skipped silently.
pub type RecordStream = BoxStream<'static, Result<Record, LogError>>;

/// The append-only log of facts. Both backends pass one conformance suite.
pub trait EventLog: Send + Sync {
    /// Appends events in order. Each gets a position, or is reported as a duplicate of an
    /// event already on the log, however long ago it was appended. Returns once every stored
    /// event is durable (embedded: flushed to disk; JetStream: acknowledged by the stream).
    /// Appends in flight together on one handle are stored in the order they were first
    /// polled, each batch encoded while the one before it is written (on JetStream, an event
    /// published again after a lost acknowledgement may land after the next batch's first
    /// events).
    fn append(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, LogError>> + Send;

    /// Head position and event count.
    fn stat(&self) -> impl Future<Output = Result<LogStat, LogError>> + Send;

    /// Events from `from` (inclusive) up to the head as it is when called.
    fn read(&self, from: Position) -> impl Future<Output = Result<RecordStream, LogError>> + Send;

    /// Events from `from` (inclusive), then every event appended afterwards, without end.
    fn follow(&self, from: Position)
    -> impl Future<Output = Result<RecordStream, LogError>> + Send;
}
