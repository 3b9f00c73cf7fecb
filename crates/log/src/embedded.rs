//! The embedded log: one sled database on the local disk, no server.
//!
//! Layout: one tree of blocks, `b` + the first position in the block (u64 big-endian) → up to
//! 256 consecutive events' codec frames (`u32` count, then `u32` length and bytes per frame),
//! and `m` + `layout` → the layout version. Keys only ever grow, so sled appends at the right
//! edge of its tree; blocks keep reads from paying sled's per-item iteration cost for every
//! event (it clones a node's data per step), which made replay four times slower.
//!
//! Appends are serialised by a mutex; each batch is applied atomically and flushed before the
//! call returns, so an acknowledged append survives a crash. Idempotency: the id of every
//! stored event is in an in-memory [`IdIndex`], rebuilt at open by peeking at each frame's id
//! (no full decode). An id index in sled itself was measured at 2.4 times slower appends
//! (random keys scatter writes across the tree; see docs/benchmarks.md), so the index trades
//! memory for append speed.
//!
//! The index is built on the first append, not at open, so reading a log never pays for it.
//! When the log closes it is saved to `id-index.snapshot` beside the database; the next build
//! loads the snapshot and scans only the frames appended after it. A missing, torn or foreign
//! snapshot (checked by checksum and by the id of its last event) just means a full scan.

use crate::error::LogError;
use crate::id_index::IdIndex;
use crate::port::{AppendOutcome, EventLog, LogStat, Position, Record, RecordStream};
use baton_core::Event;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

const BLOCK_PREFIX: u8 = b'b';
/// Events per block: a full append batch is split into blocks of this many.
const BLOCK_EVENTS: usize = 256;
const LAYOUT_KEY: &[u8] = b"mlayout";
const LAYOUT_VERSION: u8 = 2;
/// Records read per trip to the blocking pool.
const READ_CHUNK: usize = 4096;

/// Options for [`EmbeddedLog::open`].
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
}

impl EmbeddedConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            path: path.into(),
            cache_bytes: 128 * 1024 * 1024,
        }
    }
}

/// The sled-backed [`EventLog`]. Cheap to clone; clones share one database.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("path", &self.inner.path)
            .finish()
    }
}

struct Inner {
    path: String,
    snapshot_path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    /// Holding this lock is the right to append.
    writer: Mutex<Writer>,
    head: watch::Sender<Position>,
}

fn block_key(first: Position) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = BLOCK_PREFIX;
    key[1..].copy_from_slice(&first.get().to_be_bytes());
    key
}

fn encode_block(frames: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = frames.iter().map(|f| f.len() + 4).sum::<usize>() + 4;
    let mut block = Vec::with_capacity(size);
    block.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for frame in frames {
        block.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        block.extend_from_slice(frame);
    }
    block
}

/// The frames of one block with their positions; a malformed block is an error naming the
/// position where it breaks.
fn block_frames(first: Position, block: &[u8]) -> Result<Vec<(Position, &[u8])>, LogError> {
    let broken = |position: Position, what: &str| {
        LogError::CorruptEntry(format!(
            "block at position {first}: {what} at position {position}"
        ))
    };
    let read_u32 = |at: usize| -> Option<u32> {
        block
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let count = read_u32(0).ok_or_else(|| broken(first, "no frame count"))? as usize;
    let mut frames = Vec::with_capacity(count.min(BLOCK_EVENTS));
    let mut at = 4;
    for index in 0..count {
        let position = Position::new(first.get() + index as u64);
        let length =
            read_u32(at).ok_or_else(|| broken(position, "truncated frame length"))? as usize;
        let frame = block
            .get(at + 4..at + 4 + length)
            .ok_or_else(|| broken(position, "truncated frame"))?;
        frames.push((position, frame));
        at += 4 + length;
    }
    if at != block.len() {
        return Err(broken(
            Position::new(first.get() + count as u64),
            "trailing bytes",
        ));
    }
    Ok(frames)
}

/// Calls `visit` with every frame from `from` to `until` in order, until it returns false.
fn visit_frames(
    tree: &sled::Tree,
    path: &str,
    from: Position,
    until: Position,
    mut visit: impl FnMut(Position, &[u8]) -> bool,
) -> Result<(), LogError> {
    if from > until {
        return Ok(());
    }
    let storage = |error: sled::Error| LogError::Storage {
        path: path.to_owned(),
        message: error.to_string(),
    };
    // The block holding `from` starts at or before it.
    let start = match tree
        .range(block_key(Position::ZERO)..=block_key(from))
        .next_back()
    {
        Some(entry) => block_first(&entry.map_err(storage)?.0)?,
        None => from,
    };
    let mut expected = start;
    for entry in tree.range(block_key(start)..=block_key(until)) {
        let (key, block) = entry.map_err(storage)?;
        let first = block_first(&key)?;
        if first != expected {
            // Positions are dense: a gap between blocks means entries went missing.
            return Err(LogError::CorruptEntry(format!(
                "positions {expected}..{first} are missing from the embedded log"
            )));
        }
        let frames = block_frames(first, &block)?;
        expected = Position::new(first.get() + frames.len() as u64);
        for (position, frame) in frames {
            if position < from {
                continue;
            }
            if position > until || !visit(position, frame) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The event id of the frame at `position`, when it is there and readable.
fn frame_id(tree: &sled::Tree, path: &str, position: Position) -> Option<baton_core::EventId> {
    let mut id = None;
    visit_frames(tree, path, position, position, |_, frame| {
        id = baton_core::event_id_of(frame).ok();
        false
    })
    .ok()?;
    id
}

fn block_first(key: &[u8]) -> Result<Position, LogError> {
    match key {
        [BLOCK_PREFIX, rest @ ..] if rest.len() == 8 => {
            let mut array = [0u8; 8];
            array.copy_from_slice(rest);
            Ok(Position::new(u64::from_be_bytes(array)))
        }
        other => Err(LogError::CorruptEntry(format!(
            "block key of {} bytes, expected 9",
            other.len()
        ))),
    }
}

struct Writer {
    head: Position,
    /// Built on the first append.
    index: Option<IdIndex>,
    /// How far the snapshot on disk reaches, so an unchanged index is not written again.
    snapshot_covers: u64,
    /// Applied to the tree but not yet flushed: readers do not see these events, and the next
    /// append flushes before it reports anything.
    unflushed: bool,
}

const SNAPSHOT_FILE: &str = "id-index.snapshot";

impl EmbeddedLog {
    /// Opens (or creates) the log in `config.path`. Only one process may have it open.
    pub async fn open(config: EmbeddedConfig) -> Result<Self, LogError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&config))
            .await
            .map_err(|error| LogError::Storage {
                path: String::new(),
                message: format!("open task failed: {error}"),
            })?
    }

    fn open_blocking(config: &EmbeddedConfig) -> Result<Self, LogError> {
        let path = config.path.display().to_string();
        let storage = |message: String| LogError::Storage {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(&config.path)
            .map_err(|error| storage(format!("cannot create directory: {error}")))?;
        // sled releases its file lock from background threads a moment after the last handle
        // drops, so a reopen right after a close (or a process that just exited) waits briefly.
        let lock_deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            let opened = sled::Config::new()
                .path(config.path.join("log"))
                .cache_capacity(config.cache_bytes)
                .open();
            match opened {
                Ok(db) => break db,
                // sled wraps the lock failure in an error of its own kind; its text is the only mark.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= lock_deadline {
                        return Err(storage(
                            "in use by another process (only one process may open an embedded log)"
                                .into(),
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(other) => return Err(storage(format!("cannot open: {other}"))),
            }
        };
        let tree = db
            .open_tree("events")
            .map_err(|error| storage(format!("cannot open tree: {error}")))?;
        match tree
            .get(LAYOUT_KEY)
            .map_err(|error| storage(error.to_string()))?
        {
            Some(layout) if layout.as_ref() == [LAYOUT_VERSION] => {}
            Some(layout) => {
                return Err(storage(format!(
                    "log layout {:?} is not one this build reads (layout {LAYOUT_VERSION})",
                    layout.as_ref()
                )));
            }
            None if tree.is_empty() => {
                tree.insert(LAYOUT_KEY, &[LAYOUT_VERSION])
                    .map_err(|error| storage(error.to_string()))?;
            }
            None => {
                return Err(storage(
                    "written by a development build with another layout; move it aside and re-ingest"
                        .into(),
                ));
            }
        }
        let head = match tree.scan_prefix([BLOCK_PREFIX]).next_back() {
            None => Position::ZERO,
            Some(entry) => {
                let (key, block) = entry.map_err(|error| storage(error.to_string()))?;
                let first = block_first(&key)?;
                let count = block_frames(first, &block)?.len() as u64;
                Position::new(first.get() + count.saturating_sub(1))
            }
        };
        let (head_sender, _) = watch::channel(head);
        Ok(EmbeddedLog {
            inner: Arc::new(Inner {
                path,
                db,
                tree,
                snapshot_path: config.path.join(SNAPSHOT_FILE),
                writer: Mutex::new(Writer {
                    head,
                    index: None,
                    snapshot_covers: 0,
                    unflushed: false,
                }),
                head: head_sender,
            }),
        })
    }

    /// The directory the log lives in.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    fn storage_error(&self, error: impl std::fmt::Display) -> LogError {
        LogError::Storage {
            path: self.inner.path.clone(),
            message: error.to_string(),
        }
    }

    fn append_blocking(
        &self,
        frames: Vec<(Event, Vec<u8>)>,
    ) -> Result<Vec<AppendOutcome>, LogError> {
        let inner = &self.inner;
        let mut writer = inner
            .writer
            .lock()
            .map_err(|_| self.storage_error("an earlier append panicked; reopen the log"))?;
        let writer = &mut *writer;
        let index = match &mut writer.index {
            Some(index) => index,
            None => {
                let (index, snapshot_covers) = self.build_index(writer.head)?;
                writer.snapshot_covers = snapshot_covers;
                writer.index.insert(index)
            }
        };
        let mut outcomes = Vec::with_capacity(frames.len());
        let mut added: Vec<u128> = Vec::new();
        let mut new_frames: Vec<Vec<u8>> = Vec::new();
        let mut next = writer.head;
        for (event, frame) in frames {
            let id = event.event_id.as_u128();
            if let Some(position) = index.get(id) {
                outcomes.push(AppendOutcome::Duplicate(position));
                continue;
            }
            next = next.next();
            new_frames.push(frame);
            // In the index at once, so a repeat later in this batch is a duplicate; taken out
            // again below if the batch does not become durable.
            index.insert(id, next);
            added.push(id);
            outcomes.push(AppendOutcome::Appended(next));
        }
        let mut batch = sled::Batch::default();
        let mut first = writer.head.next();
        for block in new_frames.chunks(BLOCK_EVENTS) {
            batch.insert(&block_key(first), encode_block(block));
            first = Position::new(first.get() + block.len() as u64);
        }
        if next != writer.head {
            if let Err(error) = inner.tree.apply_batch(batch) {
                for id in added {
                    index.remove(id);
                }
                return Err(self.storage_error(error));
            }
            writer.head = next;
            index.covered = next.get();
            writer.unflushed = true;
        }
        // Durable before anything is acknowledged or shown to readers; a failed flush leaves
        // the flag set, so a retry (which finds every event a duplicate) flushes again rather
        // than report success over events still only in memory.
        if writer.unflushed {
            inner.db.flush().map_err(|e| self.storage_error(e))?;
            writer.unflushed = false;
            inner.head.send_replace(writer.head);
        }
        Ok(outcomes)
    }

    /// The id index up to `head`: the snapshot when it fits this log, then a scan of the
    /// frames after it. Returns the index and how far the snapshot reached.
    fn build_index(&self, head: Position) -> Result<(IdIndex, u64), LogError> {
        let started = std::time::Instant::now();
        let loaded = match IdIndex::load(&self.inner.snapshot_path) {
            Ok((index, header)) => match self.snapshot_fits(&header, head) {
                Ok(()) => Some(index),
                Err(reason) => {
                    tracing::info!(%reason, "id index snapshot does not fit this log; rebuilding");
                    None
                }
            },
            Err(reason) if self.inner.snapshot_path.exists() => {
                tracing::warn!(%reason, "id index snapshot unreadable; rebuilding");
                None
            }
            Err(_) => None,
        };
        let mut index = loaded.unwrap_or_default();
        let snapshot_covers = index.covered;
        let from = Position::new(index.covered).next();
        if from <= head {
            self.visit_frames(from, head, |position, frame| {
                match baton_core::event_id_of(frame) {
                    Ok(id) => index.insert(id.as_u128(), position),
                    // Readers report it with its position; the index cannot hold what it cannot read.
                    Err(error) => {
                        tracing::warn!(%position, %error, "unreadable entry in the embedded log");
                    }
                }
                true
            })?;
        }
        index.covered = head.get();
        tracing::info!(
            events = head.get(),
            from_snapshot = snapshot_covers,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "id index ready"
        );
        Ok((index, snapshot_covers))
    }

    fn snapshot_fits(
        &self,
        header: &crate::id_index::SnapshotHeader,
        head: Position,
    ) -> Result<(), String> {
        if header.covered > head.get() {
            return Err(format!(
                "snapshot reaches {} but the log ends at {head}",
                header.covered
            ));
        }
        if header.covered == 0 {
            return Ok(());
        }
        let mut frame = None;
        self.visit_frames(
            Position::new(header.covered),
            Position::new(header.covered),
            |_, bytes| {
                frame = Some(bytes.to_vec());
                false
            },
        )
        .map_err(|e| e.to_string())?;
        let frame = frame.ok_or_else(|| format!("no event at position {}", header.covered))?;
        let id = baton_core::event_id_of(&frame).map_err(|e| e.to_string())?;
        if id.as_u128() != header.anchor {
            return Err(format!(
                "the event at position {} is not the one the snapshot saw",
                header.covered
            ));
        }
        Ok(())
    }

    fn visit_frames(
        &self,
        from: Position,
        until: Position,
        visit: impl FnMut(Position, &[u8]) -> bool,
    ) -> Result<(), LogError> {
        visit_frames(&self.inner.tree, &self.inner.path, from, until, visit)
    }

    /// Reads about `READ_CHUNK` records from `from`, not past `until`.
    fn read_chunk(&self, from: Position, until: Position) -> Vec<Result<Record, LogError>> {
        let mut records = Vec::new();
        let visited = self.visit_frames(from, until, |position, frame| {
            let record = baton_core::decode(frame)
                .map(|event| Record { position, event })
                .map_err(|source| LogError::Corrupt { position, source });
            let failed = record.is_err();
            records.push(record);
            !failed && records.len() < READ_CHUNK
        });
        if let Err(error) = visited {
            records.push(Err(error));
        }
        records
    }

    fn head(&self) -> Position {
        *self.inner.head.borrow()
    }

    /// A stream over `[from, until]`, or without end when `until` is `None`.
    fn stream(&self, from: Position, until: Option<Position>) -> RecordStream {
        type Chunk = Vec<Result<Record, LogError>>;
        struct State {
            log: EmbeddedLog,
            next: Position,
            until: Option<Position>,
            head: watch::Receiver<Position>,
            done: bool,
            /// The next chunk, already being read on the blocking pool: reading runs on one
            /// core while the consumer works through the previous chunk on another.
            ahead: Option<(Position, Position, tokio::task::JoinHandle<Chunk>)>,
        }
        fn spawn_read(
            log: &EmbeddedLog,
            from: Position,
            limit: Position,
        ) -> tokio::task::JoinHandle<Chunk> {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.read_chunk(from, limit))
        }
        let state = State {
            log: self.clone(),
            next: from.max(Position::new(1)),
            until,
            head: self.inner.head.subscribe(),
            done: false,
            ahead: None,
        };
        futures::stream::unfold(state, |mut state| async move {
            loop {
                if state.done {
                    return None;
                }
                let (from, limit, reading) = match state.ahead.take() {
                    Some(ahead) => ahead,
                    None => {
                        let head = *state.head.borrow_and_update();
                        let limit = match state.until {
                            Some(until) => until.min(head),
                            None => head,
                        };
                        if state.next > limit {
                            if state.until.is_some_and(|until| state.next > until) {
                                return None;
                            }
                            // Caught up: wait for the next append (or the log closing).
                            if state.head.changed().await.is_err() {
                                return None;
                            }
                            continue;
                        }
                        (state.next, limit, spawn_read(&state.log, state.next, limit))
                    }
                };
                let chunk = reading.await.unwrap_or_else(|error| {
                    vec![Err(LogError::Storage {
                        path: String::new(),
                        message: format!("read task failed: {error}"),
                    })]
                });
                match chunk.last() {
                    Some(Ok(record)) => state.next = record.position.next(),
                    Some(Err(_)) => state.done = true,
                    None => {
                        // Positions are dense, so an empty range below the head means entries
                        // went missing.
                        state.done = true;
                        let error = LogError::CorruptEntry(format!(
                            "positions {from}..={limit} are missing from the embedded log"
                        ));
                        return Some((futures::stream::iter(vec![Err(error)]), state));
                    }
                }
                if !state.done && state.next <= limit {
                    state.ahead =
                        Some((state.next, limit, spawn_read(&state.log, state.next, limit)));
                }
                return Some((futures::stream::iter(chunk), state));
            }
        })
        .flatten()
        .boxed()
    }
}

impl Drop for Inner {
    /// Saves the id index so the next open does not rescan the whole log.
    fn drop(&mut self) {
        let Ok(writer) = self.writer.get_mut() else {
            return;
        };
        let Some(index) = &writer.index else {
            return;
        };
        if index.covered == writer.snapshot_covers || index.covered == 0 {
            return;
        }
        let anchor = frame_id(&self.tree, &self.path, Position::new(index.covered));
        let Some(anchor) = anchor else {
            return;
        };
        if let Err(error) = index.save(&self.snapshot_path, anchor.as_u128()) {
            tracing::warn!(path = %self.snapshot_path.display(), %error, "could not save the id index snapshot");
        }
    }
}

fn encode_all(events: Vec<Event>) -> Result<Vec<(Event, Vec<u8>)>, LogError> {
    events
        .into_iter()
        .map(|event| match baton_core::encode(&event) {
            Ok(frame) => Ok((event, frame)),
            Err(source) => Err(LogError::Encode {
                event_id: event.event_id,
                source,
            }),
        })
        .collect()
}

impl EventLog for EmbeddedLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let log = self.clone();
        tokio::task::spawn_blocking(move || {
            let frames = encode_all(events)?;
            log.append_blocking(frames)
        })
        .await
        .map_err(|error| self.storage_error(format!("append task failed: {error}")))?
    }

    async fn stat(&self) -> Result<LogStat, LogError> {
        let head = self.head();
        // Positions are dense and never deleted, so the head is also the count.
        Ok(LogStat {
            head,
            events: head.get(),
        })
    }

    async fn read(&self, from: Position) -> Result<RecordStream, LogError> {
        Ok(self.stream(from, Some(self.head())))
    }

    async fn follow(&self, from: Position) -> Result<RecordStream, LogError> {
        Ok(self.stream(from, None))
    }
}
