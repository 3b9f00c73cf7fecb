//! The quarantine: items the collector rejected, kept with the reason and the original payload
//! until a fix (of the source, or of a mapping) lets `baton quarantine retry` append them.
//!
//! It is a directory with one JSON file per item, named by a hash of (adapter, source,
//! payload): the same bad item sent twice is kept once. One file per item needs no lock and no
//! database, so `baton quarantine list` and `retry` work while `baton serve` runs (the embedded
//! log's sled database admits one process; the quarantine must not). Files are written to a
//! temporary name, synced and renamed, so a reader never sees half an entry.

use crate::adapter::{Adapter, Adapters, Problem, Translation};
use baton_core::{Event, Timestamp};
use baton_log::{AppendOutcome, EventLog, LogError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
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
}

impl Quarantine {
    /// Opens (creating) the quarantine in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, QuarantineError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|error| io_error(&dir, "cannot create it", error))?;
        Ok(Quarantine { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores entries durably (each synced before it is renamed into place).
    pub fn put(&self, entries: &[QuarantineEntry]) -> Result<(), QuarantineError> {
        for entry in entries {
            let path = self.dir.join(format!("{}.json", entry.id));
            let temporary = self.dir.join(format!(".{}.json.tmp", entry.id));
            let text = serde_json::to_vec_pretty(entry)
                .expect("invariant: a quarantine entry serializes to JSON");
            let mut file = std::fs::File::create(&temporary)
                .map_err(|error| io_error(&temporary, "cannot create", error))?;
            file.write_all(&text)
                .and_then(|()| file.sync_all())
                .map_err(|error| io_error(&temporary, "cannot write", error))?;
            std::fs::rename(&temporary, &path)
                .map_err(|error| io_error(&path, "cannot rename into place", error))?;
        }
        if !entries.is_empty() {
            // The renames are durable once the directory is.
            if let Ok(dir) = std::fs::File::open(&self.dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }

    /// Every entry, oldest first (by receipt, then id).
    pub fn list(&self) -> Result<Vec<QuarantineEntry>, QuarantineError> {
        let reader = std::fs::read_dir(&self.dir)
            .map_err(|error| io_error(&self.dir, "cannot list", error))?;
        let mut entries = Vec::new();
        for item in reader {
            let item = item.map_err(|error| io_error(&self.dir, "cannot list", error))?;
            let path = item.path();
            let is_entry = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".json") && !name.starts_with('.'));
            if !is_entry {
                continue;
            }
            let text = match std::fs::read(&path) {
                Ok(text) => text,
                // Removed by a concurrent retry between listing and reading.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(&path, "cannot read", error)),
            };
            let entry: QuarantineEntry =
                serde_json::from_slice(&text).map_err(|error| QuarantineError::Entry {
                    path: path.display().to_string(),
                    problem: error.to_string(),
                })?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| (&a.received_at, &a.id).cmp(&(&b.received_at, &b.id)));
        Ok(entries)
    }

    /// Removes an entry; removing one that is already gone is not an error.
    pub fn remove(&self, id: &str) -> Result<(), QuarantineError> {
        let path = self.dir.join(format!("{id}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error(&path, "cannot remove", error)),
        }
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
        let mut updated = Vec::new();
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
                    self.remove(&entry.id)?;
                }
                Err(problem) => {
                    summary.still_rejected += 1;
                    if problem.field != entry.field || problem.reason != entry.reason {
                        updated.push(QuarantineEntry {
                            field: problem.field,
                            reason: problem.reason,
                            ..entry
                        });
                    }
                }
            }
        }
        self.put(&updated)?;
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
                    self.remove(&entry.id)?;
                } else {
                    summary.not_written += 1;
                }
            }
        }
        Ok(summary)
    }
}

fn io_error(path: &Path, what: &str, error: std::io::Error) -> QuarantineError {
    QuarantineError::Io {
        path: path.display().to_string(),
        problem: format!("{what}: {error}"),
    }
}
