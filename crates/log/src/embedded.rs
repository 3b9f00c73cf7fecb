//! The embedded log: segment files on the local disk, no server.
//!
//! Layout of the directory:
//! - `segments/`: the events' codec frames in append-only files (see `segment.rs` for the
//!   format, the durability rules and why sled no longer holds them);
//! - `log.lock`: locked while a process has the log open;
//! - `ids/`: the id index (below).
//!
//! Appends are serialised by a mutex; each batch is written and synced before the call returns,
//! so an acknowledged append survives a crash. Idempotency: the id of every stored event is in
//! an [`IdStore`] in `ids/`: sorted runs on disk with a Bloom filter and fences of each in
//! memory, plus the recent ids (about two bytes an event of history in memory; see
//! `id_store.rs`). An id index in sled was measured at 2.4 times slower appends (random keys
//! scatter writes across the tree; see docs/benchmarks.md).
//!
//! The index is opened on the first append, not at open, so reading a log never pays for it.
//! Opening reads its manifest, the runs' filters and fences, and the ids of the frames after
//! the position the runs reach (the recent ids of a process that stopped without closing).
//! A missing, damaged or foreign index (checked by checksums and by the id of the event at its
//! position) just means every id is read again.
//!
//! A log written by an earlier build (layout 2: blocks of frames in a sled tree under `log/`)
//! is moved into segment files the first time this build opens it.

use crate::error::LogError;
use crate::id_store::IdStore;
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
    /// Event ids kept in memory before they are written to the id index's runs on disk.
    pub recent_ids: usize,
}

impl EmbeddedConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            path: path.into(),
            recent_ids: crate::id_store::DEFAULT_RECENT_IDS,
        }
    }

    /// Keeps `count` recent ids in memory (at least one) before writing them to a run.
    pub fn with_recent_ids(mut self, count: usize) -> Self {
        self.recent_ids = count.max(1);
        self
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
    ids_dir: PathBuf,
    /// The id index snapshot of earlier builds, removed when the index is first opened.
    old_snapshot: PathBuf,
    recent_ids: usize,
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
    /// Opened on the first append.
    index: Option<IdStore>,
}

const IDS_DIR: &str = "ids";
const OLD_SNAPSHOT_FILE: &str = "id-index.snapshot";

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
                ids_dir: config.path.join(IDS_DIR),
                old_snapshot: config.path.join(OLD_SNAPSHOT_FILE),
                recent_ids: config.recent_ids,
                turn: tokio::sync::Mutex::new(()),
                writer: Mutex::new(Writer { head, index: None }),
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

    /// What the id index holds in memory and in runs, once an append has opened it.
    pub fn id_index_memory(&self) -> Option<crate::id_store::IdMemory> {
        let writer = self.inner.writer.lock().ok()?;
        writer.index.as_ref().map(IdStore::memory)
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
            None => writer.index.insert(self.open_index(writer.head)?),
        };
        index.refresh().map_err(|error| self.storage_error(error))?;
        let mut outcomes = Vec::with_capacity(frames.len());
        let mut added: Vec<u128> = Vec::new();
        let mut new_frames: Vec<Vec<u8>> = Vec::new();
        let mut next = writer.head;
        for (id, frame) in frames {
            let found = index.get(id).map_err(|error| {
                for id in &added {
                    index.remove(*id);
                }
                self.storage_error(format!("reading the id index: {error}"))
            })?;
            if let Some(position) = found {
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
            if let Some(last) = added.last() {
                index.mark_covered(next, *last);
            }
            writer.head = next;
            inner.head.send_replace(writer.head);
            // The batch is durable; a failure to hand its ids on is reported on the next
            // append (and mended by reading them from the log at the next open).
            if let Err(error) = index.settle() {
                tracing::warn!(%error, "the id index could not keep up");
            }
        }
        Ok(outcomes)
    }

    /// Opens the id index and brings it up to `head`: the runs its manifest names when they
    /// fit this log, then the ids of the frames after them.
    fn open_index(&self, head: Position) -> Result<IdStore, LogError> {
        let started = std::time::Instant::now();
        if self.inner.old_snapshot.exists() {
            // Earlier builds kept the whole index in memory and saved it here at close.
            let _ = std::fs::remove_file(&self.inner.old_snapshot);
        }
        let (mut index, opened) =
            IdStore::open(&self.inner.ids_dir, self.inner.recent_ids, |manifest| {
                self.index_fits(manifest.covered, manifest.anchor, head)
            })
            .map_err(|error| self.storage_error(format!("opening the id index: {error}")))?;
        let from = Position::new(opened.from_runs).next();
        let mut failed = None;
        if from <= head {
            self.visit_frames(from, head, |position, frame| {
                match baton_core::event_id_of(frame) {
                    Ok(id) => {
                        index.insert(id.as_u128(), position);
                        index.mark_covered(position, id.as_u128());
                    }
                    // Readers report it with its position; the index cannot hold what it cannot read.
                    Err(error) => {
                        tracing::warn!(%position, %error, "unreadable entry in the embedded log");
                    }
                }
                match index.settle() {
                    Ok(()) => true,
                    Err(error) => {
                        failed = Some(error);
                        false
                    }
                }
            })?;
        }
        if let Some(error) = failed {
            return Err(self.storage_error(error));
        }
        tracing::info!(
            events = head.get(),
            from_runs = opened.from_runs,
            runs = opened.runs,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "id index ready"
        );
        Ok(index)
    }

    /// Whether an id index reaching `covered`, whose event there has id `anchor`, belongs to
    /// this log as it stands at `head`.
    fn index_fits(&self, covered: u64, anchor: u128, head: Position) -> Result<(), String> {
        if covered > head.get() {
            return Err(format!(
                "the index reaches {covered} but the log ends at {head}"
            ));
        }
        if covered == 0 {
            return Ok(());
        }
        let mut frame = None;
        self.visit_frames(
            Position::new(covered),
            Position::new(covered),
            |_, bytes| {
                frame = Some(bytes.to_vec());
                false
            },
        )
        .map_err(|e| e.to_string())?;
        let frame = frame.ok_or_else(|| format!("no event at position {covered}"))?;
        let id = baton_core::event_id_of(&frame).map_err(|e| e.to_string())?;
        if id.as_u128() != anchor {
            return Err(format!(
                "the event at position {covered} is not the one the index saw"
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
        // Sized for the whole chunk (and a failure after it): growing it moved every record
        // read so far each time, 1.5% of a fold of the log (docs/benchmarks.md).
        let wanted = until.get().saturating_sub(from.get()).saturating_add(1);
        let mut records = Vec::with_capacity((READ_CHUNK as u64).min(wanted) as usize + 1);
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
