//! The quarantine: items the collector rejected, kept with the reason and the original payload
//! until a fix (of the source, or of a mapping) lets `baton quarantine retry` append them.
//!
//! It is a directory of files, one per request that had rejected items: one compact JSON line
//! per item (`{hash}.ndjson`). One file per item made one 511 KB body of small bad lines into
//! 43,510 files and 173 MB (issue 24.7); a file per request keeps what a request costs to
//! about its own size plus a line's fields per item. Each item has an id, a hash of (adapter,
//! source, payload): the same bad item sent twice is listed once. Files need no lock and no
//! database, so `baton quarantine list` and `retry` work while `baton serve` runs. Files are
//! written to a temporary name, synced and renamed, so a reader never sees half a file.
//!
//! The quarantine has a size limit. Once it is reached, the rejected items of a request that
//! do not fit are answered as rejected and not kept (the answer says so), the valid ones are
//! still appended, and nothing already kept is dropped: what is kept is what a person can
//! still look at and fix. (Single-entry `{id}.json` files of earlier builds are read too.)

use crate::adapter::{Adapter, Adapters, Problem, Translation};
use baton_core::{Event, Timestamp};
use baton_log::{AppendOutcome, EventLog, LogError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("quarantine at {path}: {problem}")]
    Io { path: String, problem: String },
    #[error("quarantine entry {path}: not a quarantine entry: {problem}")]
    Entry { path: String, problem: String },
    #[error("appending retried events: {0}")]
    Append(#[from] LogError),
}

/// One rejected item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// Hash of (adapter, source, payload); also the file name.
    pub id: String,
    /// When the collector received it (RFC 3339); retries translate it as of that moment.
    pub received_at: String,
    pub adapter: Adapter,
    /// The source whose write key sent it, when keys are configured.
    pub source: Option<String>,
    pub field: String,
    pub reason: String,
    /// The item as it arrived (a string when it was not valid JSON).
    pub payload: Value,
}

impl QuarantineEntry {
    pub fn new(
        adapter: Adapter,
        source: Option<&str>,
        received_at: Timestamp,
        problem: &Problem,
        payload: Value,
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(adapter.to_string().as_bytes());
        hasher.update([0]);
        hasher.update(source.unwrap_or("").as_bytes());
        hasher.update([0]);
        hasher.update(payload.to_string().as_bytes());
        let digest = hasher.finalize();
        let id = digest[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        QuarantineEntry {
            id,
            received_at: received_at.to_rfc3339(),
            adapter,
            source: source.map(str::to_owned),
            field: problem.field.clone(),
            reason: problem.reason.clone(),
            payload,
        }
    }
}

/// What `retry` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetrySummary {
    /// Entries looked at.
    pub entries: u64,
    /// Entries whose events are now on the log (appended or already there), removed.
    pub released: u64,
    pub appended: u64,
    pub duplicates: u64,
    /// Entries that now translate to nothing to record (ignored), removed.
    pub ignored: u64,
    /// Entries still invalid; kept, with the new reason.
    pub still_rejected: u64,
    /// Entries whose events the log could not store; kept for the next retry.
    pub not_written: u64,
}

/// The quarantine directory.
#[derive(Clone, Debug)]
pub struct Quarantine {
    dir: PathBuf,
    /// The most bytes its files may hold.
    max_bytes: u64,
}

/// [`Quarantine::open`]'s size limit: room for about a million small rejected items.
pub const DEFAULT_QUARANTINE_BYTES: u64 = 256 << 20;

/// What [`Quarantine::put`] kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The first `kept` entries given are stored; the rest were not, the quarantine being full.
    pub kept: usize,
    /// Bytes its files hold now, and the limit.
    pub bytes: u64,
    pub max_bytes: u64,
}

/// What a rewrite does with an entry.
enum Change {
    Remove,
    Replace(Box<QuarantineEntry>),
}

impl Quarantine {
    /// Opens (creating) the quarantine in `dir`, with the default size limit.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, QuarantineError> {
        Quarantine::open_with_limit(dir, DEFAULT_QUARANTINE_BYTES)
    }

    /// Opens (creating) the quarantine in `dir`, keeping at most `max_bytes` in its files.
    pub fn open_with_limit(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
    ) -> Result<Self, QuarantineError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|error| io_error(&dir, "cannot create it", error))?;
        Ok(Quarantine { dir, max_bytes })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry files and their sizes.
    fn files(&self) -> Result<Vec<(PathBuf, u64)>, QuarantineError> {
        let reader = std::fs::read_dir(&self.dir)
            .map_err(|error| io_error(&self.dir, "cannot list", error))?;
        let mut files = Vec::new();
        for item in reader {
            let item = item.map_err(|error| io_error(&self.dir, "cannot list", error))?;
            let path = item.path();
            let is_entries = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    !name.starts_with('.') && (name.ends_with(".ndjson") || name.ends_with(".json"))
                });
            if !is_entries {
                continue;
            }
            match item.metadata() {
                Ok(metadata) => files.push((path, metadata.len())),
                // Removed by a concurrent retry between listing and reading.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(&path, "cannot read", error)),
            }
        }
        files.sort();
        Ok(files)
    }

    /// Bytes the quarantine's files hold.
    pub fn bytes(&self) -> Result<u64, QuarantineError> {
        Ok(self.files()?.iter().map(|(_, size)| size).sum())
    }

    /// Stores entries durably, as one file, as many of them (from the first) as fit under the
    /// size limit; says how many.
    pub fn put(&self, entries: &[QuarantineEntry]) -> Result<Kept, QuarantineError> {
        let used = self.bytes()?;
        let mut text = Vec::new();
        let mut kept = 0;
        for entry in entries {
            let line = serde_json::to_vec(entry)
                .expect("invariant: a quarantine entry serializes to JSON");
            if used + (text.len() + line.len() + 1) as u64 > self.max_bytes {
                break;
            }
            text.extend_from_slice(&line);
            text.push(b'\n');
            kept += 1;
        }
        if kept > 0 {
            let mut hasher = Sha256::new();
            for entry in &entries[..kept] {
                hasher.update(entry.id.as_bytes());
            }
            let name: String = hasher.finalize()[..16]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            self.write_file(&self.dir.join(format!("{name}.ndjson")), &text)?;
        }
        Ok(Kept {
            kept,
            bytes: used + text.len() as u64,
            max_bytes: self.max_bytes,
        })
    }

    /// Writes `text` to `path` by a synced temporary file renamed into place, then syncs the
    /// directory.
    fn write_file(&self, path: &Path, text: &[u8]) -> Result<(), QuarantineError> {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("entries");
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&temporary)
            .map_err(|error| io_error(&temporary, "cannot create", error))?;
        file.write_all(text)
            .and_then(|()| file.sync_all())
            .map_err(|error| io_error(&temporary, "cannot write", error))?;
        std::fs::rename(&temporary, path)
            .map_err(|error| io_error(path, "cannot rename into place", error))?;
        // The rename is durable once the directory is.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The entries of one file (a missing file has none).
    fn read_file(path: &Path) -> Result<Vec<QuarantineEntry>, QuarantineError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error(path, "cannot read", error)),
        };
        let entry_error = |problem: String| QuarantineError::Entry {
            path: path.display().to_string(),
            problem,
        };
        if path.extension().is_some_and(|ext| ext == "json") {
            return serde_json::from_slice(&text)
                .map(|entry| vec![entry])
                .map_err(|error| entry_error(error.to_string()));
        }
        text.split(|byte| *byte == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.is_empty())
            .map(|(number, line)| {
                serde_json::from_slice(line)
                    .map_err(|error| entry_error(format!("line {}: {error}", number + 1)))
            })
            .collect()
    }

    /// Every entry, oldest first (by receipt, then id), each id once.
    pub fn list(&self) -> Result<Vec<QuarantineEntry>, QuarantineError> {
        let mut entries = Vec::new();
        for (path, _) in self.files()? {
            entries.extend(Self::read_file(&path)?);
        }
        entries.sort_by(|a, b| (&a.received_at, &a.id).cmp(&(&b.received_at, &b.id)));
        entries.dedup_by(|a, b| a.id == b.id);
        Ok(entries)
    }

    /// Removes an entry; removing one that is already gone is not an error.
    pub fn remove(&self, id: &str) -> Result<(), QuarantineError> {
        self.rewrite(&HashMap::from([(id.to_owned(), Change::Remove)]))
    }

    /// Rewrites every file holding an entry named in `changes`: removed, or replaced.
    fn rewrite(&self, changes: &HashMap<String, Change>) -> Result<(), QuarantineError> {
        if changes.is_empty() {
            return Ok(());
        }
        for (path, _) in self.files()? {
            let entries = Self::read_file(&path)?;
            if !entries.iter().any(|entry| changes.contains_key(&entry.id)) {
                continue;
            }
            let mut text = Vec::new();
            for entry in entries {
                let entry = match changes.get(&entry.id) {
                    Some(Change::Remove) => continue,
                    Some(Change::Replace(updated)) => (**updated).clone(),
                    None => entry,
                };
                text.extend(serde_json::to_vec(&entry).expect("invariant: an entry serializes"));
                text.push(b'\n');
            }
            if text.is_empty() {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io_error(&path, "cannot remove", error)),
                }
            } else {
                let path = path.with_extension("ndjson");
                self.write_file(&path, &text)?;
            }
        }
        Ok(())
    }

    /// Translates every entry again with today's tables; appends the events of those that now
    /// pass (their ids are derived as the first time, so nothing is counted twice) and removes
    /// them; keeps the rest with their new reason.
    pub async fn retry<L: EventLog>(
        &self,
        adapters: &Adapters,
        log: &L,
    ) -> Result<RetrySummary, QuarantineError> {
        let mut summary = RetrySummary::default();
        let entries = self.list()?;
        summary.entries = entries.len() as u64;
        let mut passing: Vec<(QuarantineEntry, Vec<Event>)> = Vec::new();
        let mut changes = HashMap::new();
        for entry in entries {
            let received_at = Timestamp::parse_rfc3339(&entry.received_at).map_err(|error| {
                QuarantineError::Entry {
                    path: entry.id.clone(),
                    problem: format!("received_at: {error}"),
                }
            })?;
            let payload = match (&entry.adapter, &entry.payload) {
                // An item that was not JSON at all is kept as its text; it may be fixed by hand.
                (_, Value::String(text)) => match serde_json::from_str::<Value>(text) {
                    Ok(value) if !value.is_string() => value,
                    _ => entry.payload.clone(),
                },
                _ => entry.payload.clone(),
            };
            match adapters.translate(
                &entry.adapter,
                &payload,
                entry.source.as_deref(),
                received_at,
            ) {
                Ok(Translation::Events(events)) => passing.push((entry, events)),
                Ok(Translation::Ignored(_)) => {
                    summary.ignored += 1;
                    changes.insert(entry.id.clone(), Change::Remove);
                }
                Err(problem) => {
                    summary.still_rejected += 1;
                    if problem.field != entry.field || problem.reason != entry.reason {
                        let id = entry.id.clone();
                        let updated = QuarantineEntry {
                            field: problem.field,
                            reason: problem.reason,
                            ..entry
                        };
                        changes.insert(id, Change::Replace(Box::new(updated)));
                    }
                }
            }
        }
        for chunk in passing.chunks(1_000) {
            let events: Vec<Event> = chunk
                .iter()
                .flat_map(|(_, events)| events.iter().cloned())
                .collect();
            let outcomes = log.append(events).await?;
            let mut outcomes = outcomes.into_iter();
            for (entry, events) in chunk {
                let mut written = true;
                for _ in events {
                    match outcomes.next() {
                        Some(AppendOutcome::Appended(_)) => summary.appended += 1,
                        Some(AppendOutcome::Duplicate(_)) => summary.duplicates += 1,
                        Some(AppendOutcome::NotWritten(_)) | None => written = false,
                    }
                }
                if written {
                    summary.released += 1;
                    changes.insert(entry.id.clone(), Change::Remove);
                } else {
                    summary.not_written += 1;
                }
            }
        }
        // One pass over the files: an entry whose events were appended but that is still
        // there after a crash here is appended again as duplicates, never twice.
        self.rewrite(&changes)?;
        Ok(summary)
    }
}

fn io_error(path: &Path, what: &str, error: std::io::Error) -> QuarantineError {
    QuarantineError::Io {
        path: path.display().to_string(),
        problem: format!("{what}: {error}"),
    }
}
