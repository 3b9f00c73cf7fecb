//! A JetStream writer's index of every event id on the stream: in memory, or, when
//! [`JetStreamConfig::ids_dir`](crate::JetStreamConfig) names a directory, the embedded log's
//! index on disk ([`IdStore`]: runs with a filter and fences in memory, about two bytes an
//! event), kept across restarts so a writer that starts again reads only the headers appended
//! since it stopped.
//!
//! Several writers on one machine may share the directory: each takes the first of its slots
//! (`0/`, `1/`, ...) whose lock is free, so a process never writes another's runs, and a writer
//! that starts again usually finds its own slot where it left it. A writer whose slot holds no
//! index that fits the stream starts from another slot's instead of reading every id on the
//! stream: it links that slot's runs (immutable files) into its own and copies its manifest,
//! then reads only the headers after it.

use crate::error::LogError;
use crate::id_index::IdIndex;
use crate::id_store::{IdStore, Manifest};
use crate::port::Position;
use std::path::{Path, PathBuf};

/// Slots tried under the directory before giving up.
const SLOTS: usize = 16;

pub(crate) enum WriterIds {
    Memory(IdIndex),
    /// On disk, not opened yet (it is at the first pass, which can check it against the
    /// stream).
    Unopened {
        dir: PathBuf,
        recent_ids: usize,
    },
    Disk(DiskIds),
}

pub(crate) struct DiskIds {
    store: IdStore,
    /// The slot it lives in.
    slot: PathBuf,
    /// Every id at a sequence up to here is in the store (foreign messages included).
    covered: u64,
    /// Held while this writer uses the slot.
    _lock: std::fs::File,
}

/// A slot of the directory: its path and its lock, held.
pub(crate) fn take_slot(dir: &Path) -> Result<(PathBuf, std::fs::File), LogError> {
    let storage = |message: String| LogError::Storage {
        path: dir.display().to_string(),
        message,
    };
    for slot in 0..SLOTS {
        let path = dir.join(slot.to_string());
        std::fs::create_dir_all(&path)
            .map_err(|error| storage(format!("cannot create the id index: {error}")))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .map_err(|error| storage(format!("cannot open the id index's lock: {error}")))?;
        match lock.try_lock() {
            Ok(()) => return Ok((path, lock)),
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(storage(format!("cannot lock the id index: {error}")));
            }
        }
    }
    Err(storage(format!(
        "all {SLOTS} id index slots are in use by other processes"
    )))
}

impl DiskIds {
    /// Opens the store in `slot`; `fits` is what checking its manifest against the stream
    /// found.
    pub(crate) fn open(
        slot: &Path,
        lock: std::fs::File,
        recent_ids: usize,
        fits: Result<(), String>,
    ) -> Result<DiskIds, LogError> {
        let (store, opened) =
            IdStore::open(slot, recent_ids, |_| fits).map_err(|error| LogError::Storage {
                path: slot.display().to_string(),
                message: format!("opening the id index: {error}"),
            })?;
        tracing::info!(
            slot = %slot.display(),
            from_runs = opened.from_runs,
            runs = opened.runs,
            "JetStream id index on disk opened"
        );
        Ok(DiskIds {
            store,
            slot: slot.to_owned(),
            covered: opened.from_runs,
            _lock: lock,
        })
    }
}

/// The manifest in `slot`, if there is a readable one.
pub(crate) fn manifest_in(slot: &Path) -> Option<Manifest> {
    crate::id_store::read_manifest(slot).ok().flatten()
}

/// The other slots of `slot`'s directory that hold a manifest, the furthest-reaching first.
pub(crate) fn other_slots(slot: &Path) -> Vec<(PathBuf, u64)> {
    let Some(dir) = slot.parent() else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, u64)> = (0..SLOTS)
        .map(|n| dir.join(n.to_string()))
        .filter(|other| other != slot)
        .filter_map(|other| manifest_in(&other).map(|m| (other, m.covered)))
        .filter(|(_, covered)| *covered > 0)
        .collect();
    found.sort_by_key(|(_, covered)| std::cmp::Reverse(*covered));
    found
}

/// Makes `slot` hold the index of `from`: its runs linked (they are never changed, only
/// deleted once merged away, which a link survives) and its manifest copied. `Ok(false)` when
/// `from` changed meanwhile (a run named by the manifest read was merged away).
pub(crate) fn adopt(from: &Path, slot: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(slot)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("run-") || name.starts_with("manifest") {
            std::fs::remove_file(&path)?;
        }
    }
    let copied = slot.join("manifest.adopted");
    std::fs::copy(from.join("manifest"), &copied)?;
    let manifest = crate::id_store::read_manifest_file(&copied)
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other("the manifest went away"))?;
    for name in manifest.run_files() {
        match std::fs::hard_link(from.join(&name), slot.join(&name)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    std::fs::rename(&copied, slot.join("manifest"))?;
    Ok(true)
}

fn not_open() -> LogError {
    LogError::Storage {
        path: String::new(),
        message: "invariant: the id index is opened by the first pass".to_owned(),
    }
}

impl WriterIds {
    /// Every id at a sequence up to this is in the index.
    pub(crate) fn covered(&self) -> u64 {
        match self {
            WriterIds::Memory(index) => index.covered,
            WriterIds::Unopened { .. } => 0,
            WriterIds::Disk(disk) => disk.covered,
        }
    }

    pub(crate) fn set_covered(&mut self, covered: u64) {
        match self {
            WriterIds::Memory(index) => index.covered = covered,
            WriterIds::Unopened { .. } => {}
            WriterIds::Disk(disk) => disk.covered = covered,
        }
    }

    pub(crate) fn get(&self, id: u128) -> Result<Option<Position>, LogError> {
        match self {
            WriterIds::Memory(index) => Ok(index.get(id)),
            WriterIds::Unopened { .. } => Err(not_open()),
            WriterIds::Disk(disk) => disk.store.get(id).map_err(|error| LogError::Storage {
                path: String::new(),
                message: format!("reading the id index: {error}"),
            }),
        }
    }

    pub(crate) fn insert(&mut self, id: u128, position: Position) {
        match self {
            WriterIds::Memory(index) => index.insert(id, position),
            WriterIds::Unopened { .. } => {}
            WriterIds::Disk(disk) => disk.store.insert(id, position),
        }
    }

    /// Says that every id up to `position` is in, with `id` there (see
    /// [`IdStore::mark_covered`]); then hands full recent ids on to be written.
    pub(crate) fn mark(&mut self, position: Position, id: u128) -> Result<(), LogError> {
        if let WriterIds::Disk(disk) = self {
            disk.store.mark_covered(position, id);
            disk.store.settle().map_err(|message| LogError::Storage {
                path: String::new(),
                message,
            })?;
        }
        Ok(())
    }

    /// The slot of an index on disk and how far its runs reach: what it could share.
    pub(crate) fn runs_in(&self) -> Option<(&Path, u64)> {
        match self {
            WriterIds::Disk(disk) => Some((&disk.slot, disk.store.runs_cover())),
            _ => None,
        }
    }

    /// Takes in what the store's threads finished; before a batch's lookups.
    pub(crate) fn refresh(&mut self) -> Result<(), LogError> {
        if let WriterIds::Disk(disk) = self {
            disk.store.refresh().map_err(|message| LogError::Storage {
                path: String::new(),
                message,
            })?;
        }
        Ok(())
    }
}
