//! Bulk import of an NDJSON file: every line validated on its own, valid lines appended in
//! batches, bad lines reported with their line number and reason while the rest still go in.
//!
//! Parsing runs on its own thread and hands batches to the appender, so reading, validating
//! and appending overlap. Re-importing the same file stores nothing new: lines keep their
//! `event_id`/`message_id`, and a line with neither gets an id derived from its own bytes.

use baton_core::{EventId, ParseContext, Timestamp, parse_event};
use baton_log::{AppendOutcome, EventLog, LogError};
use futures::StreamExt;
use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Appends an import keeps in flight.
const APPENDS_IN_FLIGHT: usize = 2;

/// Options for [`import_ndjson`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Events per append.
    pub batch_size: usize,
    /// Rejections kept in the summary with their reasons; the rest are only counted.
    pub max_rejections_kept: usize,
    pub max_future_skew_millis: i64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_size: 5_000,
            max_rejections_kept: 1_000,
            max_future_skew_millis: ParseContext::DEFAULT_MAX_FUTURE_SKEW_MILLIS,
        }
    }
}

/// A line that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 1-based line number in the file.
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Non-blank lines read.
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Valid events the log could not store (server unreachable); re-running stores them.
    pub not_written: u64,
    /// The first rejections, in line order.
    pub rejections: Vec<Rejection>,
    /// Why events were not written, when some were not.
    pub not_written_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the input: {0}")]
    Read(#[from] std::io::Error),
    #[error("appending the batch that ends at line {line}: {source}")]
    Append {
        line: u64,
        #[source]
        source: LogError,
    },
}

struct Batch {
    events: Vec<baton_core::Event>,
    last_line: u64,
    lines: u64,
    rejections: Vec<Rejection>,
    bytes: u64,
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(millis)
}

fn parse_lines(
    mut reader: impl BufRead,
    options: ImportOptions,
    batches: mpsc::Sender<std::io::Result<Batch>>,
) {
    let mut line_number = 0u64;
    let mut buffer = Vec::with_capacity(1024);
    let new_batch = || Batch {
        events: Vec::with_capacity(options.batch_size),
        last_line: 0,
        lines: 0,
        rejections: Vec::new(),
        bytes: 0,
    };
    let mut batch = new_batch();
    let mut context = ParseContext {
        recorded_at: now(),
        fresh_event_id: EventId::from_source_message("", ""),
        max_future_skew_millis: options.max_future_skew_millis,
    };
    loop {
        buffer.clear();
        let read = match reader.read_until(b'\n', &mut buffer) {
            Ok(read) => read,
            Err(error) => {
                let _ = batches.blocking_send(Err(error));
                return;
            }
        };
        if read == 0 {
            break;
        }
        line_number += 1;
        batch.bytes += read as u64;
        batch.last_line = line_number;
        let text = match std::str::from_utf8(&buffer) {
            Ok(text) => text.trim(),
            Err(error) => {
                batch.lines += 1;
                batch.rejections.push(Rejection {
                    line: line_number,
                    reason: format!("not UTF-8 text (byte {})", error.valid_up_to()),
                });
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        batch.lines += 1;
        context.fresh_event_id = EventId::from_source_message("baton-import-line", text);
        match parse_event(text, &context) {
            Ok(event) => batch.events.push(event),
            Err(error) => batch.rejections.push(Rejection {
                line: line_number,
                reason: error.to_string(),
            }),
        }
        if batch.events.len() >= options.batch_size {
            if batches
                .blocking_send(Ok(std::mem::replace(&mut batch, new_batch())))
                .is_err()
            {
                return; // The appender stopped; it reports why.
            }
            context.recorded_at = now();
        }
    }
    let _ = batches.blocking_send(Ok(batch));
}

/// Imports NDJSON from `reader` into `log`. `progress` is called with the bytes consumed so far
/// after each batch.
pub async fn import_ndjson<L: EventLog>(
    reader: impl BufRead + Send + 'static,
    log: &L,
    options: &ImportOptions,
    mut progress: impl FnMut(u64),
) -> Result<ImportSummary, ImportError> {
    let (sender, receiver) = mpsc::channel(4);
    let parser_options = options.clone();
    let parser = std::thread::Builder::new()
        .name("baton-import-parse".into())
        .spawn(move || parse_lines(reader, parser_options, sender))?;

    // Appends are kept in flight two at a time: the log encodes the next batch while it
    // writes the one before, and stores them in order (`EventLog::append`).
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let appended = batches
        .map(|batch| async move {
            let mut batch = batch?;
            let events = std::mem::take(&mut batch.events);
            let outcomes = if events.is_empty() {
                Vec::new()
            } else {
                log.append(events)
                    .await
                    .map_err(|source| ImportError::Append {
                        line: batch.last_line,
                        source,
                    })?
            };
            Ok::<_, ImportError>((batch, outcomes))
        })
        .buffered(APPENDS_IN_FLIGHT);
    let mut appended = std::pin::pin!(appended);

    let mut summary = ImportSummary::default();
    let mut bytes = 0u64;
    while let Some(result) = appended.next().await {
        let (batch, outcomes) = result?;
        bytes += batch.bytes;
        summary.lines += batch.lines;
        summary.rejected += batch.rejections.len() as u64;
        let room = options
            .max_rejections_kept
            .saturating_sub(summary.rejections.len());
        summary
            .rejections
            .extend(batch.rejections.into_iter().take(room));
        for outcome in outcomes {
            match outcome {
                AppendOutcome::Appended(_) => summary.accepted += 1,
                AppendOutcome::Duplicate(_) => summary.duplicates += 1,
                AppendOutcome::NotWritten(reason) => {
                    summary.not_written += 1;
                    summary.not_written_reason.get_or_insert(reason);
                }
            }
        }
        progress(bytes);
    }
    // The parser has sent its last batch; joining only collects the thread.
    let _ = parser.join();
    Ok(summary)
}
