//! The embedded log: segment files on the local disk, no server.
//!
//! Layout of the directory:
//! - `segments/`: the events' codec frames in append-only files (see `segment.rs` for the
//!   format, the durability rules and why sled no longer holds them);
//! - `log.lock`: locked while a process has the log open;
//! - `id-index.snapshot`: the id index saved at close (below).
//!
//! Appends are serialised by a mutex; each batch is written and synced before the call returns,
//! so an acknowledged append survives a crash. Idempotency: the id of every stored event is in
//! an in-memory [`IdIndex`], rebuilt by peeking at each frame's id (no full decode). An id index
//! in sled was measured at 2.4 times slower appends (random keys scatter writes across the
//! tree; see docs/benchmarks.md), so the index trades memory for append speed.
//!
//! The index is built on the first append, not at open, so reading a log never pays for it.
//! When the log closes it is saved to `id-index.snapshot` beside the segments; the next build
//! loads the snapshot and scans only the frames appended after it. A missing, torn or foreign
//! snapshot (checked by checksum and by the id of its last event) just means a full scan.
//!
//! A log written by an earlier build (layout 2: blocks of frames in a sled tree under `log/`)
//! is moved into segment files the first time this build opens it.

use crate::error::LogError;
use crate::id_index::IdIndex;
use crate::port::{AppendOutcome, EventLog, LogStat, Position, Record, RecordStream};
use crate::segment::Segments;
use baton_core::Event;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Records read per trip to the blocking pool.
const READ_CHUNK: usize = 4096;
const SEGMENTS_DIR: &str = "segments";
const LOCK_FILE: &str = "log.lock";

/// Options for [`EmbeddedLog::open`].
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub path: PathBuf,
}

impl EmbeddedConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedConfig { path: path.into() }
    }
}

/// The segment-file [`EventLog`]. Cheap to clone; clones share one open log.
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
    segments: Segments,
    /// Holding this lock is the right to append.
    writer: Mutex<Writer>,
    /// Concurrent appends take their turn here, in the order they started, so they are stored
    /// in that order while each encodes its batch beforehand (`turn.rs`).
    turn: tokio::sync::Mutex<()>,
    head: watch::Sender<Position>,
    /// Locked for as long as the log is open; the lock goes with the handle. `None` for a
    /// handle opened only to read ([`EmbeddedLog::open_to_read`]).
    _lock: Option<std::fs::File>,
}

/// The event id of the frame at `position`, when it is there and readable.
fn frame_id(segments: &Segments, position: Position) -> Option<baton_core::EventId> {
    let mut id = None;
    segments
        .visit(position, position, |_, frame| {
            id = baton_core::event_id_of(frame).ok();
            false
        })
        .ok()?;
    id
}

/// Takes the log's lock file, waiting a moment for a handle of this process that is still
/// closing (a read task finishing on the blocking pool keeps the log open until it does).
fn lock(dir: &Path, path: &str) -> Result<std::fs::File, LogError> {
    let storage = |message: String| LogError::Storage {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|error| storage(format!("cannot open {LOCK_FILE}: {error}")))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(storage(
                    "in use by another process (only one process may open an embedded log)".into(),
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(storage(format!("cannot lock {LOCK_FILE}: {error}")));
            }
        }
    }
}

struct Writer {
    head: Position,
    /// Built on the first append.
    index: Option<IdIndex>,
    /// How far the snapshot on disk reaches, so an unchanged index is not written again.
    snapshot_covers: u64,
}

const SNAPSHOT_FILE: &str = "id-index.snapshot";

impl EmbeddedLog {
    /// Opens (or creates) the log in `config.path`. Only one process may have it open.
    pub async fn open(config: EmbeddedConfig) -> Result<Self, LogError> {
        Self::on_the_blocking_pool(move || Self::open_blocking(&config)).await
    }

    async fn on_the_blocking_pool(
        open: impl FnOnce() -> Result<Self, LogError> + Send + 'static,
    ) -> Result<Self, LogError> {
        tokio::task::spawn_blocking(open)
            .await
            .map_err(|error| LogError::Storage {
                path: String::new(),
                message: format!("open task failed: {error}"),
            })?
    }

    /// Opens the log in `config.path` to read it as it stands now, beside the process that
    /// has it open to append (a running `baton serve` or `baton project`), or none: no lock is
    /// taken and nothing on disk is changed. An append still being written is left out.
    /// Appending through this handle, or following the log, is an error; the head is the one
    /// at this call.
    pub async fn open_to_read(config: EmbeddedConfig) -> Result<Self, LogError> {
        Self::on_the_blocking_pool(move || Self::open_to_read_blocking(&config)).await
    }

    fn open_to_read_blocking(config: &EmbeddedConfig) -> Result<Self, LogError> {
        let path = config.path.display().to_string();
        if crate::migrate::needs_migration(&config.path) {
            return Err(LogError::Storage {
                path,
                message: "this log was written by an earlier build and is moved to segment files \
                          the first time a command that appends opens it (baton project, serve or \
                          ingest); run one first"
                    .to_owned(),
            });
        }
        let segments = Segments::open_to_read(&config.path.join(SEGMENTS_DIR))?;
        Ok(Self::with_segments(config, path, segments, None))
    }

    /// Opens the log to append (as [`EmbeddedLog::open`]), after cutting off a last append
    /// that is torn or damaged: the one repair an open refuses to make by itself. Returns
    /// what was cut, if anything; the bytes cut are kept beside the segment.
    pub async fn repair(config: EmbeddedConfig) -> Result<Option<crate::segment::Cut>, LogError> {
        tokio::task::spawn_blocking(move || {
            let path = config.path.display().to_string();
            if !config.path.join(SEGMENTS_DIR).is_dir() {
                return Err(LogError::Storage {
                    path,
                    message: "no embedded log here (no segments directory)".to_owned(),
                });
            }
            let _lock = lock(&config.path, &path)?;
            let segments = Segments::repair(&config.path.join(SEGMENTS_DIR))?;
            Ok(segments.cut().cloned())
        })
        .await
        .map_err(|error| LogError::Storage {
            path: String::new(),
            message: format!("repair task failed: {error}"),
        })?
    }

    /// Reads every block of the log and checks its checksum: the blocks read, and each
    /// damaged block named by its positions, segment and byte.
    pub async fn verify(&self) -> Result<(u64, Vec<String>), LogError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || {
            let (blocks, mut damaged) = log.inner.segments.verify()?;
            if let Some(cut) = log.inner.segments.cut()
                && log.inner._lock.is_none()
            {
                damaged.push(format!("{}: {}", cut.segment.display(), cut.reason));
            }
            Ok((blocks, damaged))
        })
        .await
        .map_err(|error| self.storage_error(format!("verify task failed: {error}")))?
    }

    fn open_blocking(config: &EmbeddedConfig) -> Result<Self, LogError> {
        let path = config.path.display().to_string();
        std::fs::create_dir_all(&config.path).map_err(|error| LogError::Storage {
            path: path.clone(),
            message: format!("cannot create directory: {error}"),
        })?;
        let lock = lock(&config.path, &path)?;
        let segments_dir = config.path.join(SEGMENTS_DIR);
        crate::migrate::from_sled_if_there(&config.path, &segments_dir)?;
        let segments = Segments::open(&segments_dir)?;
        Ok(Self::with_segments(config, path, segments, Some(lock)))
    }

    fn with_segments(
        config: &EmbeddedConfig,
        path: String,
        segments: Segments,
        lock: Option<std::fs::File>,
    ) -> Self {
        let head = segments.head();
        let (head_sender, _) = watch::channel(head);
        EmbeddedLog {
            inner: Arc::new(Inner {
                path,
                segments,
                snapshot_path: config.path.join(SNAPSHOT_FILE),
                turn: tokio::sync::Mutex::new(()),
                writer: Mutex::new(Writer {
                    head,
                    index: None,
                    snapshot_covers: 0,
                }),
                head: head_sender,
                _lock: lock,
            }),
        }
    }

    /// An error for a handle opened only to read, which may not append or follow.
    fn writable(&self) -> Result<(), LogError> {
        match &self.inner._lock {
            Some(_) => Ok(()),
            None => Err(self.storage_error(
                "opened only to read (another process may be appending): cannot append or follow",
            )),
        }
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
        frames: Vec<(u128, Vec<u8>)>,
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
        for (id, frame) in frames {
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
        if next != writer.head {
            if let Err(error) = inner.segments.append(&new_frames) {
                for id in added {
                    index.remove(id);
                }
                return Err(error);
            }
            writer.head = next;
            index.covered = next.get();
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
        self.inner.segments.visit(from, until, visit)
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
        let anchor = frame_id(&self.segments, Position::new(index.covered));
        let Some(anchor) = anchor else {
            return;
        };
        if let Err(error) = index.save(&self.snapshot_path, anchor.as_u128()) {
            tracing::warn!(path = %self.snapshot_path.display(), %error, "could not save the id index snapshot");
        }
    }
}

/// Encodes every event, keeping only its id beside its frame: the events themselves are
/// dropped here, on the encoding thread, and not while the next append waits for the writer.
fn encode_all(events: Vec<Event>) -> Result<Vec<(u128, Vec<u8>)>, LogError> {
    events
        .into_iter()
        .map(|event| match baton_core::encode(&event) {
            Ok(frame) => Ok((event.event_id.as_u128(), frame)),
            Err(source) => Err(LogError::Encode {
                event_id: event.event_id,
                source,
            }),
        })
        .collect()
}

impl EventLog for EmbeddedLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>, LogError> {
        self.writable()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (turn, frames) =
            crate::turn::work_then_lock(&self.inner.turn, move || encode_all(events))
                .await
                .map_err(|error| self.storage_error(format!("encoding task failed: {error}")))?;
        let frames = frames?;
        let log = self.clone();
        let outcomes = tokio::task::spawn_blocking(move || log.append_blocking(frames))
            .await
            .map_err(|error| self.storage_error(format!("append task failed: {error}")))?;
        drop(turn);
        outcomes
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
        self.writable()?;
        Ok(self.stream(from, None))
    }
}
