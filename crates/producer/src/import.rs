//! Bulk import of an NDJSON file: every line validated on its own, valid lines appended in
//! batches, bad lines reported with their line number and reason while the rest still go in.
//!
//! One thread reads the file into batches of lines, a parser on every core validates them,
//! and the appender stores the parsed batches in the file's order, so reading, validating and
//! appending overlap. Re-importing the same file stores nothing new: lines keep their
//! `event_id`/`message_id`, and a line with neither gets an id derived from its own bytes.

use baton_core::{EventId, ParseContext, Timestamp, parse_event_or};
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

/// Lines read from the input, not parsed yet: one batch of the file.
struct Chunk {
    /// The line number of the chunk's first line, less one.
    lines_before: u64,
    text: Vec<u8>,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

/// What the reader hands the parsers: lines, or the error that stopped it, in its place.
enum Piece {
    Lines(Chunk),
    Failed(std::io::Error),
}

/// Reads the input into chunks of `batch_size` lines for the parsers, until its end, a read
/// error (handed on in its place in the order) or the parsers' going away.
fn read_chunks(
    mut reader: impl BufRead,
    batch_size: usize,
    parsers: Vec<std::sync::mpsc::SyncSender<Piece>>,
) {
    // Batch `seq` goes to parser `seq % parsers`, which the appender reads it back from.
    let to = |seq: u64| &parsers[(seq % parsers.len() as u64) as usize];
    let mut lines = 0u64;
    for seq in 0.. {
        let mut chunk = Chunk {
            lines_before: lines,
            // Room for typical lines, never a huge reservation for a huge `batch_size`.
            text: Vec::with_capacity(batch_size.saturating_mul(200).min(8 << 20)),
            ends: Vec::with_capacity(batch_size),
        };
        let mut failed = None;
        while chunk.ends.len() < batch_size {
            match reader.read_until(b'\n', &mut chunk.text) {
                Ok(0) => break,
                Ok(_) => chunk.ends.push(chunk.text.len()),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        lines += chunk.ends.len() as u64;
        let full = chunk.ends.len() == batch_size;
        let next = match chunk.ends.is_empty() {
            true => seq,
            false => {
                if to(seq).send(Piece::Lines(chunk)).is_err() {
                    return; // The parsers stopped; the appender reports why.
                }
                seq + 1
            }
        };
        if let Some(error) = failed {
            let _ = to(next).send(Piece::Failed(error));
            return;
        }
        if !full {
            return;
        }
    }
}

/// Parses the chunks handed to this parser into batches, each line on its own, until the
/// reader is done with it.
fn parse_chunks(
    pieces: std::sync::mpsc::Receiver<Piece>,
    options: &ImportOptions,
    batches: &mpsc::Sender<std::io::Result<Batch>>,
) {
    while let Ok(piece) = pieces.recv() {
        let batch = match piece {
            Piece::Lines(chunk) => Ok(parse_chunk(chunk, options)),
            Piece::Failed(error) => Err(error),
        };
        if batches.blocking_send(batch).is_err() {
            return; // The appender stopped; it reports why.
        }
    }
}

fn parse_chunk(chunk: Chunk, options: &ImportOptions) -> Batch {
    let mut batch = Batch {
        events: Vec::with_capacity(chunk.ends.len()),
        last_line: chunk.lines_before + chunk.ends.len() as u64,
        lines: 0,
        rejections: Vec::new(),
        bytes: chunk.text.len() as u64,
    };
    let context = ParseContext {
        recorded_at: now(),
        fresh_event_id: EventId::from_source_message("", ""),
        max_future_skew_millis: options.max_future_skew_millis,
    };
    let mut start = 0;
    for (index, end) in chunk.ends.iter().enumerate() {
        let line = &chunk.text[start..*end];
        start = *end;
        let line_number = chunk.lines_before + index as u64 + 1;
        let text = match std::str::from_utf8(line) {
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
        // A line with neither `event_id` nor `message_id` gets an id derived from its bytes.
        match parse_event_or(text, &context, || {
            EventId::from_source_message("baton-import-line", text)
        }) {
            Ok(event) => batch.events.push(event),
            Err(error) => batch.rejections.push(Rejection {
                line: line_number,
                reason: error.to_string(),
            }),
        }
    }
    batch
}

/// Threads that parse an import: one per core.
fn parsers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Imports NDJSON from `reader` into `log`. `progress` is called with the bytes consumed so far
/// after each batch.
pub async fn import_ndjson<L: EventLog>(
    reader: impl BufRead + Send + 'static,
    log: &L,
    options: &ImportOptions,
    mut progress: impl FnMut(u64),
) -> Result<ImportSummary, ImportError> {
    let threads = parsers();
    let batch_size = options.batch_size.max(1);
    let mut piece_senders = Vec::with_capacity(threads);
    let mut receivers = Vec::with_capacity(threads);
    let mut parser_threads = Vec::with_capacity(threads);
    for index in 0..threads {
        let (piece_sender, pieces) = std::sync::mpsc::sync_channel(1);
        let (sender, receiver) = mpsc::channel(1);
        piece_senders.push(piece_sender);
        receivers.push(receiver);
        let options = options.clone();
        parser_threads.push(
            std::thread::Builder::new()
                .name(format!("baton-import-parse-{index}"))
                .spawn(move || parse_chunks(pieces, &options, &sender))?,
        );
    }
    let reader_thread = std::thread::Builder::new()
        .name("baton-import-read".into())
        .spawn(move || read_chunks(reader, batch_size, piece_senders))?;

    // Batches are parsed side by side and taken back in the file's order, each from the
    // parser it went to: at most three batches a parser are held, whatever the file's length.
    let batches =
        futures::stream::unfold((receivers, 0usize), |(mut receivers, next)| async move {
            let batch = receivers[next].recv().await?;
            let after = (next + 1) % receivers.len();
            Some((batch, (receivers, after)))
        });

    // Appends are kept in flight two at a time: the log encodes the next batch while it
    // writes the one before, and stores them in order (`EventLog::append`).
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
    // The parsers have sent their last batch; joining only collects the threads.
    let _ = reader_thread.join();
    for parser in parser_threads {
        if parser.join().is_err() {
            // Its batch never came, so the ones after it were not appended either.
            return Err(ImportError::Read(std::io::Error::other(
                "a parser thread failed; what was appended before it is stored, re-running \
                 stores the rest",
            )));
        }
    }
    Ok(summary)
}
