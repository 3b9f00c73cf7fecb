//! Where views live: a directory holding one sled database per view and a `LIVE` file naming
//! the live one.
//!
//! A view's database holds its definition (the TOML text, so it can be restored without the
//! file), and in one tree its state entries, the length of its fact file and its checkpoint,
//! always written together by one atomic `apply_batch`, after the facts the entries point to
//! are durable in the fact file (`facts.rs`): after a crash, the state on disk is exactly the
//! fold of the log up to the checkpoint it sits beside, and the fact file is cut back to the
//! length committed with it. Promoting a view rewrites `LIVE` by write-then-rename, which
//! is atomic on POSIX file systems. Each view's database is locked by the one process that has
//! it open (sled's rule); the live projector therefore serves queries itself.

use crate::facts::DiskFactFile;
use baton_core::{FunnelDefinition, FunnelProjection, STATE_VERSION, Timestamp};
use baton_log::Position;
use std::path::{Path, PathBuf};

/// The key of the checkpoint in a view's state tree. State keys start with a lowercase table
/// tag, so this cannot collide with one.
const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
/// The key of the fact file's committed length, beside the checkpoint.
const FACTS_LENGTH_KEY: &[u8] = b"\0facts";
const STATE_TREE: &[u8] = b"state";
const META_DEFINITION: &[u8] = b"definition";
const META_DEFINITION_FILE: &[u8] = b"definition_file";
/// A copy of the definition's text beside the view's database, readable while another process
/// has the view open (sled locks its database): a replay compares a candidate with the live
/// definition while `baton serve` holds the live view.
const DEFINITION_COPY: &str = "definition.toml";
/// A candidate's latest comparison with the live definition (`baton replay`, `baton compare`),
/// as `baton compare --json` prints it, beside the view's database: `baton serve` serves it.
const COMPARISON: &str = "comparison.json";
const META_STATE_VERSION: &[u8] = b"state_version";
const META_BOUND: &[u8] = b"bound";
const META_COMPLETE: &[u8] = b"complete";
const LIVE_FILE: &str = "LIVE";
/// How many entries a view kept whole writes per batch: as many as a projector's commit at
/// most. Batches of 16,384 measured no faster at ten million events (7.4 to 9.8 s against 7.8
/// to 10.4 s) and took the replay's peak from 2.8 to 3.2 GB.
const KEEP_BATCH: usize = crate::runner::COMMIT_ENTRIES;

/// A stored key and value, as [`View::dump`] gives them.
pub type StoredEntry = (Vec<u8>, Vec<u8>);

/// Why a view could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("view store {path}: {message}")]
    Storage { path: String, message: String },
    #[error(
        "view {name:?} is open in another process (a running `baton project`, `serve` or `replay`); stop it first"
    )]
    InUse { name: String },
    #[error("no view named {name:?} in {path} (`baton views` lists them)")]
    NoSuchView { name: String, path: String },
    #[error(
        "a view named {name:?} already exists in {path}; pick another --name or `baton drop {name}`"
    )]
    Exists { name: String, path: String },
    #[error(
        "view name {name:?} is not allowed: use 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit"
    )]
    BadName { name: String },
    #[error("view {name:?} is live; promote another view before dropping it")]
    DropLive { name: String },
    #[error("view {name:?}: its stored definition does not parse: {message}")]
    Definition { name: String, message: String },
    #[error(
        "view {name:?} was written with state version {found}, this build reads version {STATE_VERSION}: `baton project` builds the live view again from the log; build a candidate again with `baton drop {name}` and `baton replay`"
    )]
    StateVersion { name: String, found: u16 },
    #[error("view {name:?}: {error}")]
    State {
        name: String,
        error: baton_core::StateError,
    },
}

fn storage(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Storage {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Whether `name` can name a view (it becomes a directory name).
pub fn valid_view_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The directory of views.
#[derive(Clone, Debug)]
pub struct ViewStore {
    dir: PathBuf,
}

/// What `baton views` shows of one view.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewInfo {
    pub name: String,
    pub live: bool,
    /// `None` when the view is open in another process.
    pub detail: Option<ViewDetail>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ViewDetail {
    pub definition_name: String,
    pub definition_hash: String,
    pub definition_file: String,
    pub position: Position,
    /// For a replay: the bound it was built to, and whether it got there.
    pub bound: Option<Bound>,
    pub complete: bool,
    pub entries: u64,
    pub bytes_on_disk: u64,
}

/// How far a view is built: the live view follows the log without end; a candidate stops at a
/// position, or at the last event recorded at or before a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Position(Position),
    RecordedBy(Timestamp),
}

impl Bound {
    fn encode(self) -> Vec<u8> {
        match self {
            Bound::Position(position) => format!("position {position}").into_bytes(),
            Bound::RecordedBy(time) => format!("recorded {}", time.to_rfc3339()).into_bytes(),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Bound> {
        let text = std::str::from_utf8(bytes).ok()?;
        if let Some(position) = text.strip_prefix("position ") {
            return position
                .parse()
                .ok()
                .map(|p| Bound::Position(Position::new(p)));
        }
        let time = text.strip_prefix("recorded ")?;
        Timestamp::parse_rfc3339(time).ok().map(Bound::RecordedBy)
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Position(position) => write!(f, "position {position}"),
            Bound::RecordedBy(time) => write!(f, "recorded by {time}"),
        }
    }
}

impl ViewStore {
    /// Opens (creating when missing) a directory of views.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ViewStore, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|error| storage(&dir, format!("cannot create directory: {error}")))?;
        Ok(ViewStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn view_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The name of the live view, if there is one.
    pub fn live(&self) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(LIVE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())).map(|n| n.filter(|n| !n.is_empty())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(storage(&path, format!("cannot read: {error}"))),
        }
    }

    /// Makes `name` the live view, atomically (write a temporary file, then rename it).
    pub fn set_live(&self, name: &str) -> Result<(), StoreError> {
        if !self.view_dir(name).is_dir() {
            return Err(self.no_such(name));
        }
        let temporary = self.dir.join(format!("{LIVE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(format!("{name}\n").as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, self.dir.join(LIVE_FILE))?;
            // The rename is durable once the directory is.
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|error| storage(&self.dir, format!("cannot write {LIVE_FILE}: {error}")))
    }

    fn no_such(&self, name: &str) -> StoreError {
        StoreError::NoSuchView {
            name: name.to_owned(),
            path: self.dir.display().to_string(),
        }
    }

    /// The names of every view, sorted.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|error| storage(&self.dir, format!("cannot list: {error}")))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| storage(&self.dir, error.to_string()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && valid_view_name(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every view with what can be read of it (a view open elsewhere shows no detail).
    pub fn list(&self) -> Result<Vec<ViewInfo>, StoreError> {
        let live = self.live()?;
        let mut views = Vec::new();
        for name in self.names()? {
            let detail = match self.open_view(&name) {
                Ok(view) => Some(view.detail()?),
                Err(StoreError::InUse { .. }) => None,
                // A creation cut short by a crash: `open_view` removed it, so there is no view.
                Err(StoreError::NoSuchView { .. }) => continue,
                Err(other) => return Err(other),
            };
            views.push(ViewInfo {
                live: live.as_deref() == Some(name.as_str()),
                name,
                detail,
            });
        }
        Ok(views)
    }

    /// Creates an empty view under `definition`; `bound` is set for a candidate built by replay.
    pub fn create_view(
        &self,
        name: &str,
        definition: &FunnelDefinition,
        definition_text: &str,
        definition_file: &str,
        bound: Option<Bound>,
    ) -> Result<View, StoreError> {
        let view = self.begin_view(name, definition_file, bound)?;
        view.finish_creation(definition, definition_text, None)?;
        Ok(view)
    }

    /// A new view's database with its metadata but not its definition yet: until
    /// [`View::finish_creation`] writes that, a crash leaves a view `open_view` removes.
    fn begin_view(
        &self,
        name: &str,
        definition_file: &str,
        bound: Option<Bound>,
    ) -> Result<View, StoreError> {
        if !valid_view_name(name) {
            return Err(StoreError::BadName {
                name: name.to_owned(),
            });
        }
        let dir = self.view_dir(name);
        if dir.exists() {
            // A creation cut short is removed by `open_view`; anything else is a real view.
            match self.open_view(name) {
                Err(StoreError::NoSuchView { .. }) => {}
                Ok(_) => {
                    return Err(StoreError::Exists {
                        name: name.to_owned(),
                        path: self.dir.display().to_string(),
                    });
                }
                Err(other) => return Err(other),
            }
        }
        let view = View::open(name, &dir)?;
        let mut batch = sled::Batch::default();
        batch.insert(META_DEFINITION_FILE, definition_file.as_bytes());
        batch.insert(META_STATE_VERSION, &STATE_VERSION.to_le_bytes());
        if let Some(bound) = bound {
            batch.insert(META_BOUND, bound.encode());
        }
        view.db
            .apply_batch(batch)
            .map_err(|error| storage(&dir, format!("cannot write the view's metadata: {error}")))?;
        Ok(view)
    }

    /// Stores `projection`, folded in memory up to `position` under `definition` (a backtest's
    /// candidate), whole as a new view built to `bound`, without folding the log again: its
    /// entries go in batches of at most [`KEEP_BATCH`], in key order, its facts to the
    /// view's fact file, and the view exists (complete, to promote) only once all of it is
    /// written: a failure or a stop part-way removes what was written, and a crash leaves a
    /// view that the next `open_view` removes. A projection that already tracks changes for a
    /// store is refused before anything is written.
    /// `progress` gets (entries written, entries in all) after each batch, and stops the
    /// keeping when it breaks.
    #[allow(clippy::too_many_arguments)]
    pub fn keep_view(
        &self,
        name: &str,
        definition_text: &str,
        definition_file: &str,
        bound: Bound,
        projection: &mut FunnelProjection,
        position: Position,
        mut progress: impl FnMut(usize, usize) -> std::ops::ControlFlow<()>,
    ) -> Result<View, StoreError> {
        if projection.tracks_changes() {
            return Err(StoreError::State {
                name: name.to_owned(),
                error: baton_core::StateError::AlreadyStored,
            });
        }
        let view = self.begin_view(name, definition_file, Some(bound))?;
        let kept = (|| {
            let mut keeping = projection
                .start_keeping(view.facts.clone())
                .map_err(|error| StoreError::State {
                    name: name.to_owned(),
                    error,
                })?;
            let total = keeping.len();
            while projection.keep_more(&mut keeping, KEEP_BATCH) {
                view.commit(projection, None)?;
                if progress(total - keeping.len(), total).is_break() {
                    return Err(storage(
                        &view.dir,
                        format!("keeping view {name:?} was stopped part-way"),
                    ));
                }
            }
            view.finish_creation(projection.definition(), definition_text, Some(position))
        })();
        match kept {
            Ok(()) => Ok(view),
            Err(error) => {
                // Nothing of it is a view yet: removed now (a crash leaves it to the next
                // `open_view`, which removes it then).
                let dir = view.dir.clone();
                drop(view);
                if let Err(removal) = self.remove_torn(name, &dir) {
                    tracing::warn!(view = name, %removal, "a view cut short is left for the next open to remove");
                }
                Err(error)
            }
        }
    }

    /// Removes a view whose creation did not finish, once sled has let go of its directory.
    fn remove_torn(&self, name: &str, dir: &Path) -> Result<(), StoreError> {
        match self.open_view(name) {
            // Opening removes a view without a definition, and says there is none.
            Err(StoreError::NoSuchView { .. }) => Ok(()),
            Ok(_) => Err(storage(dir, "a view cut short has its definition")),
            Err(other) => Err(other),
        }
    }

    /// The definition a view is built under, read from its copy beside the database when there
    /// is one, so that it can be read while another process has the view open; otherwise
    /// (a view created by an earlier build, not opened since) from the database.
    pub fn definition_of(&self, name: &str) -> Result<FunnelDefinition, StoreError> {
        let dir = self.view_dir(name);
        if !valid_view_name(name) || !dir.is_dir() {
            return Err(self.no_such(name));
        }
        let copy = dir.join(DEFINITION_COPY);
        match std::fs::read_to_string(&copy) {
            Ok(text) => {
                FunnelDefinition::parse(&copy.display().to_string(), &text).map_err(|errors| {
                    StoreError::Definition {
                        name: name.to_owned(),
                        message: errors.to_string(),
                    }
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.open_view(name)?.definition()
            }
            Err(error) => Err(storage(&copy, format!("cannot read: {error}"))),
        }
    }

    /// Keeps `text`, a candidate's comparison with the live definition, beside the view's
    /// database (write, sync, rename: a reader finds the whole text or the one before).
    pub fn save_comparison(&self, name: &str, text: &str) -> Result<(), StoreError> {
        let dir = self.view_dir(name);
        if !valid_view_name(name) || !dir.is_dir() {
            return Err(self.no_such(name));
        }
        let path = dir.join(COMPARISON);
        let partial = dir.join(format!("{COMPARISON}.partial"));
        let written = std::fs::File::create(&partial).and_then(|mut file| {
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|error| storage(&path, format!("cannot write the comparison: {error}")))
    }

    /// The comparison kept beside a view by [`save_comparison`](Self::save_comparison), if
    /// any. Readable while another process has the view open.
    pub fn comparison_of(&self, name: &str) -> Result<Option<String>, StoreError> {
        let dir = self.view_dir(name);
        if !valid_view_name(name) || !dir.is_dir() {
            return Err(self.no_such(name));
        }
        let path = dir.join(COMPARISON);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(storage(&path, format!("cannot read: {error}"))),
        }
    }

    /// Opens an existing view. A database left without a definition (its creation was cut
    /// short by a crash) is removed, and reported as no view.
    pub fn open_view(&self, name: &str) -> Result<View, StoreError> {
        let dir = self.view_dir(name);
        if !valid_view_name(name) || !dir.is_dir() {
            return Err(self.no_such(name));
        }
        let view = View::open(name, &dir)?;
        if view.read_meta(META_DEFINITION)?.is_some() {
            view.keep_definition_copy()?;
            return Ok(view);
        }
        drop(view);
        tracing::warn!(view = name, "removing a view whose creation was cut short");
        std::fs::remove_dir_all(&dir)
            .map_err(|error| storage(&dir, format!("cannot remove a torn view: {error}")))?;
        Err(self.no_such(name))
    }

    /// Removes a view that is not live.
    pub fn drop_view(&self, name: &str) -> Result<(), StoreError> {
        if self.live()?.as_deref() == Some(name) {
            return Err(StoreError::DropLive {
                name: name.to_owned(),
            });
        }
        // Opening proves no other process has it.
        let view = self.open_view(name)?;
        drop(view);
        let dir = self.view_dir(name);
        std::fs::remove_dir_all(&dir)
            .map_err(|error| storage(&dir, format!("cannot remove: {error}")))
    }
}

/// One view: its definition, its state and its checkpoint, in one sled database.
#[derive(Debug)]
pub struct View {
    name: String,
    dir: PathBuf,
    db: sled::Db,
    state: sled::Tree,
    facts: std::sync::Arc<DiskFactFile>,
}

/// sled's page cache per view. The projector holds a view's whole state in memory and reads
/// the store only when it starts, so sled's default of 1 GiB only held copies of what was
/// written: at ten million events it was most of the difference between a replay's memory and
/// a fold's (`docs/benchmarks.md`). 32 MiB instead of 64 MiB took a replay of ten million
/// events from about 1,055 MB to about 1,020 MB at its peak, for 6% more written.
const VIEW_CACHE_BYTES: u64 = 32 << 20;

impl View {
    fn open(name: &str, dir: &Path) -> Result<View, StoreError> {
        // sled releases its file lock from background threads a moment after the last handle
        // drops, so a reopen right after a close waits briefly before calling it "in use".
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(VIEW_CACHE_BYTES)
                .open()
            {
                Ok(db) => break db,
                // sled wraps the lock failure in an error of its own kind; its text is the only mark.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::InUse {
                            name: name.to_owned(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(other) => return Err(storage(dir, format!("cannot open: {other}"))),
            }
        };
        let state = db
            .open_tree(STATE_TREE)
            .map_err(|error| storage(dir, format!("cannot open the state tree: {error}")))?;
        // Opened once sled holds the directory's lock: one process writes it at a time.
        let facts = DiskFactFile::open(dir)
            .map_err(|error| storage(dir, format!("cannot open the fact file: {error}")))?;
        Ok(View {
            name: name.to_owned(),
            dir: dir.to_owned(),
            db,
            state,
            facts: std::sync::Arc::new(facts),
        })
    }

    /// Ends a view's creation: its definition (and, for a view kept whole, its checkpoint and
    /// completion) in one atomic batch, flushed; before it, the view does not exist.
    fn finish_creation(
        &self,
        definition: &FunnelDefinition,
        definition_text: &str,
        kept_at: Option<Position>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(META_DEFINITION, definition_text.as_bytes());
        if let Some(position) = kept_at {
            batch.insert(META_COMPLETE, &[1u8]);
            self.state
                .insert(CHECKPOINT_KEY, &position.get().to_be_bytes())
                .map_err(|error| {
                    storage(&self.dir, format!("cannot write the checkpoint: {error}"))
                })?;
        }
        // The state tree's checkpoint is flushed with the definition: sled flushes every tree.
        self.db
            .apply_batch(batch)
            .and_then(|()| self.db.flush().map(|_| ()))
            .map_err(|error| {
                storage(
                    &self.dir,
                    format!("cannot write the view's metadata: {error}"),
                )
            })?;
        // Parsing again checks that what was stored reads back as the same definition.
        let stored = self.definition()?;
        debug_assert_eq!(stored.hash(), definition.hash());
        self.keep_definition_copy()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn read_meta(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db
            .get(key)
            .map_err(|error| storage(&self.dir, format!("cannot read metadata: {error}")))
    }

    /// The definition the view is built under, as stored when it was created.
    pub fn definition(&self) -> Result<FunnelDefinition, StoreError> {
        let text = self.read_meta(META_DEFINITION)?.unwrap_or_default();
        let file = self.definition_file()?;
        let text = String::from_utf8_lossy(&text);
        FunnelDefinition::parse(&file, &text).map_err(|errors| StoreError::Definition {
            name: self.name.clone(),
            message: errors.to_string(),
        })
    }

    /// Writes the copy of the definition beside the database when it is not there yet (write,
    /// sync, rename): a reader finds the whole text or none.
    fn keep_definition_copy(&self) -> Result<(), StoreError> {
        let copy = self.dir.join(DEFINITION_COPY);
        if copy.exists() {
            return Ok(());
        }
        let text = self.definition_text()?;
        let partial = self.dir.join(format!("{DEFINITION_COPY}.partial"));
        let written = std::fs::File::create(&partial).and_then(|mut file| {
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&partial, &copy))
            .map_err(|error| {
                storage(
                    &copy,
                    format!("cannot write the definition's copy: {error}"),
                )
            })
    }

    /// The TOML text of the definition.
    pub fn definition_text(&self) -> Result<String, StoreError> {
        let text = self.read_meta(META_DEFINITION)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    fn definition_file(&self) -> Result<String, StoreError> {
        let file = self.read_meta(META_DEFINITION_FILE)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&file).into_owned())
    }

    /// The bound of a candidate view; `None` for a view that follows the log.
    pub fn bound(&self) -> Result<Option<Bound>, StoreError> {
        Ok(self
            .read_meta(META_BOUND)?
            .and_then(|bytes| Bound::decode(&bytes)))
    }

    /// Whether a bounded build reached its bound.
    pub fn complete(&self) -> Result<bool, StoreError> {
        Ok(self.read_meta(META_COMPLETE)?.is_some())
    }

    /// Records that a bounded build reached its bound.
    pub fn mark_complete(&self) -> Result<(), StoreError> {
        self.db
            .insert(META_COMPLETE, &[1u8])
            .and_then(|_| self.db.flush())
            .map(|_| ())
            .map_err(|error| storage(&self.dir, format!("cannot write metadata: {error}")))
    }

    /// Lets a view follow the log (a promoted candidate keeps up from its bound on).
    pub fn clear_bound(&self) -> Result<(), StoreError> {
        self.db
            .remove(META_BOUND)
            .and_then(|_| self.db.flush())
            .map(|_| ())
            .map_err(|error| storage(&self.dir, format!("cannot write metadata: {error}")))
    }

    /// The log position the stored state reflects (`Position::ZERO` before the first commit).
    pub fn checkpoint(&self) -> Result<Position, StoreError> {
        let bytes = self
            .state
            .get(CHECKPOINT_KEY)
            .map_err(|error| storage(&self.dir, format!("cannot read the checkpoint: {error}")))?;
        let Some(bytes) = bytes else {
            return Ok(Position::ZERO);
        };
        let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
            storage(
                &self.dir,
                format!("corrupt checkpoint: {} bytes, not 8", bytes.len()),
            )
        })?;
        Ok(Position::new(u64::from_be_bytes(bytes)))
    }

    /// The version of the stored state's format the view was written under (0 when unknown).
    fn state_version(&self) -> Result<u16, StoreError> {
        Ok(match self.read_meta(META_STATE_VERSION)? {
            Some(bytes) if bytes.len() == 2 => u16::from_le_bytes([bytes[0], bytes[1]]),
            _ => 0,
        })
    }

    /// Empties a view whose state a build with another [`STATE_VERSION`] wrote, so that the
    /// projector builds it again from the start of the log under its definition: such state
    /// is never misread, and an upgrade needs no step by hand. The definition, and a bounded
    /// build's bound, stay. Gives the version found when it emptied the view. A crash part-way
    /// leaves the old version recorded, and the next run empties the view again.
    pub fn clear_if_outdated(&self) -> Result<Option<u16>, StoreError> {
        let found = self.state_version()?;
        if found == STATE_VERSION {
            return Ok(None);
        }
        let write = |what: &str, result: sled::Result<()>| {
            result.map_err(|error| storage(&self.dir, format!("cannot {what}: {error}")))
        };
        write("empty the state", self.state.clear())?;
        write("empty the state", self.state.flush().map(|_| ()))?;
        self.facts.truncate_to(0).map_err(|error| {
            storage(
                self.facts.path(),
                format!("cannot empty the fact file: {error}"),
            )
        })?;
        let mut batch = sled::Batch::default();
        batch.remove(META_COMPLETE);
        batch.insert(META_STATE_VERSION, &STATE_VERSION.to_le_bytes());
        write("write metadata", self.db.apply_batch(batch))?;
        write("write metadata", self.db.flush().map(|_| ()))?;
        Ok(Some(found))
    }

    fn check_state_version(&self) -> Result<(), StoreError> {
        let found = self.state_version()?;
        if found != STATE_VERSION {
            return Err(StoreError::StateVersion {
                name: self.name.clone(),
                found,
            });
        }
        Ok(())
    }

    /// The fact file's length as of the last commit.
    fn committed_facts_length(&self) -> Result<u64, StoreError> {
        let bytes = self.state.get(FACTS_LENGTH_KEY).map_err(|error| {
            storage(
                &self.dir,
                format!("cannot read the fact file's length: {error}"),
            )
        })?;
        let Some(bytes) = bytes else {
            return Ok(0);
        };
        let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
            storage(
                &self.dir,
                format!("corrupt fact file length: {} bytes, not 8", bytes.len()),
            )
        })?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The stored state as a projection (journeys re-folded), with its checkpoint. The fact
    /// file is cut back to the length committed with the checkpoint, and the projection
    /// goes on writing its facts there.
    pub fn load(&self) -> Result<(FunnelProjection, Position), StoreError> {
        self.check_state_version()?;
        let definition = self.definition()?;
        let checkpoint = self.checkpoint()?;
        let committed = self.committed_facts_length()?;
        self.facts.truncate_to(committed).map_err(|error| {
            storage(
                self.facts.path(),
                format!(
                    "the fact file does not match the view's state: {error}; drop the view and build it again"
                ),
            )
        })?;
        let mut failure = None;
        let entries = self.state.iter().filter_map(|entry| match entry {
            Ok((key, _)) if key.starts_with(b"\0") => None,
            Ok(pair) => Some(pair),
            Err(error) => {
                failure.get_or_insert(error);
                None
            }
        });
        let projection = FunnelProjection::restore_with(
            definition,
            entries,
            crate::refresh_threads(),
            self.facts.clone(),
        )
        .map_err(|error| StoreError::State {
            name: self.name.clone(),
            error,
        })?;
        if let Some(error) = failure {
            return Err(storage(
                &self.dir,
                format!("cannot read the state: {error}"),
            ));
        }
        Ok((projection, checkpoint))
    }

    /// Every stored state entry and the checkpoint, in key order, with every person's and
    /// visitor's facts read back from the fact file into their entry: for comparing two
    /// views byte for byte, whatever runs their commits wrote.
    pub fn dump(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in self.state.iter() {
            let (key, value) = entry
                .map_err(|error| storage(&self.dir, format!("cannot read the state: {error}")))?;
            if key.as_ref() == FACTS_LENGTH_KEY {
                continue;
            }
            let value = if key.starts_with(b"\0") {
                value.to_vec()
            } else {
                baton_core::gathered_entry(&key, &value, &*self.facts).map_err(|error| {
                    StoreError::State {
                        name: self.name.clone(),
                        error,
                    }
                })?
            };
            entries.push((key.to_vec(), value));
        }
        Ok(entries)
    }

    /// Writes what changed in `projection` since its last commit, and the checkpoint it brings
    /// the view to, in one atomic batch. Each value goes from the projection's encoding buffer
    /// straight into the batch, so a commit holds one copy of what it writes, not two.
    pub fn commit_changes(
        &self,
        projection: &mut FunnelProjection,
        checkpoint: Position,
    ) -> Result<(), StoreError> {
        self.commit(projection, Some(checkpoint))
    }

    /// [`commit_changes`](Self::commit_changes), leaving the checkpoint as it is when `None`
    /// (a view being kept whole gets its checkpoint with its definition, at the end).
    fn commit(
        &self,
        projection: &mut FunnelProjection,
        checkpoint: Option<Position>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let (mut entries, mut bytes) = (0usize, 0usize);
        projection
            .drain_changes(|key, value| {
                entries += 1;
                bytes += key.len() + value.map_or(0, <[u8]>::len);
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            })
            .map_err(|error| StoreError::State {
                name: self.name.clone(),
                error,
            })?;
        // The entries may point to facts appended just now: they are durable first.
        self.facts.sync().map_err(|error| {
            storage(
                self.facts.path(),
                format!("cannot sync the fact file: {error}"),
            )
        })?;
        batch.insert(FACTS_LENGTH_KEY, &self.facts.len().to_be_bytes());
        if let Some(checkpoint) = checkpoint {
            batch.insert(CHECKPOINT_KEY, &checkpoint.get().to_be_bytes());
        }
        let started = std::time::Instant::now();
        self.state
            .apply_batch(batch)
            .map_err(|error| storage(&self.dir, format!("cannot commit state: {error}")))?;
        tracing::debug!(
            view = %self.name,
            checkpoint = checkpoint.map(Position::get),
            entries,
            bytes,
            apply_ms = started.elapsed().as_secs_f64() * 1e3,
            "committed"
        );
        Ok(())
    }

    /// Makes every commit so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|error| storage(&self.dir, format!("cannot flush: {error}")))
    }

    /// What `baton views` shows.
    pub fn detail(&self) -> Result<ViewDetail, StoreError> {
        let definition = self.definition()?;
        Ok(ViewDetail {
            definition_name: definition.name().to_owned(),
            definition_hash: definition.hash().to_owned(),
            definition_file: self.definition_file()?,
            position: self.checkpoint()?,
            bound: self.bound()?,
            complete: self.complete()?,
            entries: (self.state.len() - self.state.scan_prefix(b"\0").count()) as u64,
            bytes_on_disk: self.db.size_on_disk().unwrap_or(0) + self.facts.len(),
        })
    }
}
