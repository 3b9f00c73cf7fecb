//! The stored form of a projection's state: what the projector keeps in sled beside its
//! checkpoint, so that a restart resumes from the checkpoint instead of replaying the log.
//!
//! The state is the projection's facts and settled values, one entry per person, visitor,
//! account, merge, retraction, correction and close, keyed by a one-byte table tag and the
//! entity's id. A person's or visitor's facts are in their entry while they are few; a commit
//! moves them, a few dozen at a time, to the projection's fact file ([`FactFile`]), an
//! append-only file beside the entries that the entry then points into (`view/facts.rs`).
//! Which runs a commit writes depends on the batching, so two stores of the same fold are
//! compared in their gathered form ([`gathered_entry`]), every fact back in its entry. Journeys are not stored: they are a pure function of the entries and are
//! re-folded when a projection is restored. A projection that tracks changes
//! ([`FunnelProjection::tracking_changes`]) hands out, at each commit, the entries written
//! or removed since the last one ([`FunnelProjection::take_changes`]).
//!
//! Values are bincode 2.0.1 in the legacy layout, like log frames. Bincode is not
//! self-describing: a change to any stored struct bumps [`STATE_VERSION`], and a store
//! written under another version is rebuilt from the log, never misread. The golden test in
//! `tests/state.rs` fails when the bytes change.

use super::{Account, Correction, FunnelProjection, MergeGroup, Person, Visitor, Won};
use crate::event::EventId;
use crate::funnel::FunnelDefinition;
use crate::journey::Fact;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// The version of the stored state this build writes and reads.
pub const STATE_VERSION: u16 = 8;

/// The largest stored value accepted when reading (a guard against a corrupt length prefix).
const MAX_VALUE_BYTES: usize = 1 << 30;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MAX_VALUE_BYTES>,
>;
const CONFIG: Config = bincode::config::legacy().with_limit::<MAX_VALUE_BYTES>();

/// Table tags: the first byte of every key.
const PERSON: u8 = b'p';
const VISITOR: u8 = b'v';
const VISITORS_OF: u8 = b'o';
const MERGED: u8 = b'm';
const ACCOUNT: u8 = b'a';
/// An account's ledger (`view/ledger.rs`).
const LEDGER: u8 = b'l';
const RETRACTED: u8 = b'r';
/// A retraction's target, by the retraction's id: what undoing it brings back.
const RETRACTION: u8 = b'x';
const CORRECTION: u8 = b'c';
const WON: u8 = b'w';
const GLOBALS: u8 = b'g';
const SYMBOL: u8 = b's';
const ATTRIBUTES: u8 = b't';

/// One change to the stored state: put `value` at `key`, or remove `key` when `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Why stored state could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("stored state entry {key:?}: unknown table tag {tag:?}")]
    UnknownTable { key: String, tag: char },
    #[error("stored state entry {key:?}: corrupt value: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("stored state entry {key:?}: could not be encoded: {reason}")]
    Encode { key: String, reason: String },
    #[error(
        "the projection already stores its state in a view; only one folded in memory can be kept whole"
    )]
    AlreadyStored,
    #[error(
        "the fact file: cannot {action} the facts of {holder:?} ({bytes} bytes at offset {offset}): {reason}"
    )]
    FactFile {
        action: &'static str,
        holder: String,
        offset: u64,
        bytes: u64,
        reason: String,
    },
}

/// The append-only file a projection that stores its state writes its facts to: runs of
/// encoded facts, each written once and never changed. The store commits the file's length
/// with the entries that point into it, so a restart can drop whatever a commit that never
/// finished appended (see the projector's view store).
pub trait FactFile: Send + Sync + std::fmt::Debug {
    /// Appends `bytes` at the end, returning the offset they start at.
    fn append(&self, bytes: &[u8]) -> std::io::Result<u64>;
    /// Reads exactly `into.len()` bytes starting at `offset`.
    fn read_at(&self, offset: u64, into: &mut [u8]) -> std::io::Result<()>;
}

/// A fact file in memory: a projection's own until it is given one on disk, and the file of
/// tests.
#[derive(Debug, Default)]
pub struct MemoryFactFile {
    bytes: std::sync::RwLock<Vec<u8>>,
}

impl MemoryFactFile {
    /// How many bytes have been appended.
    pub fn len(&self) -> u64 {
        self.bytes.read().map_or(0, |bytes| bytes.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FactFile for MemoryFactFile {
    fn append(&self, bytes: &[u8]) -> std::io::Result<u64> {
        let mut file = self
            .bytes
            .write()
            .map_err(|_| std::io::Error::other("a writer panicked"))?;
        let offset = file.len() as u64;
        file.extend_from_slice(bytes);
        Ok(offset)
    }

    fn read_at(&self, offset: u64, into: &mut [u8]) -> std::io::Result<()> {
        let file = self
            .bytes
            .read()
            .map_err(|_| std::io::Error::other("a writer panicked"))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let source = start
            .checked_add(into.len())
            .and_then(|end| file.get(start..end))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file holds {} bytes", file.len()),
                )
            })?;
        into.copy_from_slice(source);
        Ok(())
    }
}

/// Appends `facts` to `file` as one run.
pub(crate) fn write_run(
    file: &dyn FactFile,
    facts: &[Fact],
    scratch: &mut Vec<u8>,
    holder: &str,
) -> Result<super::facts::Run, StateError> {
    let failed = |action, offset, bytes, reason: String| StateError::FactFile {
        action,
        holder: holder.to_owned(),
        offset,
        bytes,
        reason,
    };
    scratch.clear();
    bincode::serde::encode_into_std_write(facts, scratch, CONFIG)
        .map_err(|error| failed("encode", 0, 0, error.to_string()))?;
    let bytes = scratch.len() as u64;
    let too_big = || failed("write", 0, bytes, "a run holds less than 4 GiB".to_owned());
    let run_bytes = u32::try_from(bytes).map_err(|_| too_big())?;
    let count = u32::try_from(facts.len()).map_err(|_| too_big())?;
    let offset = file
        .append(scratch)
        .map_err(|error| failed("write", 0, bytes, error.to_string()))?;
    Ok(super::facts::Run {
        offset,
        bytes: run_bytes,
        facts: count,
    })
}

/// Reads a run back from `file` and appends its facts to `into`.
pub(crate) fn read_run(
    file: &dyn FactFile,
    run: &super::facts::Run,
    buffer: &mut Vec<u8>,
    into: &mut Vec<Fact>,
    holder: &str,
) -> Result<(), StateError> {
    let failed = |reason: String| StateError::FactFile {
        action: "read",
        holder: holder.to_owned(),
        offset: run.offset,
        bytes: u64::from(run.bytes),
        reason,
    };
    buffer.resize(run.bytes as usize, 0);
    file.read_at(run.offset, buffer)
        .map_err(|error| failed(error.to_string()))?;
    let (facts, read): (Vec<Fact>, usize) = bincode::serde::decode_from_slice(buffer, CONFIG)
        .map_err(|error| failed(format!("corrupt run: {error}")))?;
    if read != buffer.len() || facts.len() != run.facts as usize {
        return Err(failed(format!(
            "corrupt run: {} facts in {read} bytes, where {} facts in {} bytes were written",
            facts.len(),
            run.facts,
            run.bytes
        )));
    }
    into.extend(facts);
    Ok(())
}

/// A stored entry in the form two stores of the same fold are compared in: a person's or
/// visitor's facts all back in their entry, in order, whatever runs the commits wrote to the
/// fact file. Other entries are as they are.
pub fn gathered_entry(
    key: &[u8],
    value: &[u8],
    file: &dyn FactFile,
) -> Result<Vec<u8>, StateError> {
    match key.first() {
        Some(&PERSON) => {
            let mut person: Person = decode(key, value)?;
            person.facts = person.facts.gathered(file, &printable(key))?;
            encode(key, &person)
        }
        Some(&VISITOR) => {
            let mut visitor: Visitor = decode(key, value)?;
            visitor.facts = visitor.facts.gathered(file, &printable(key))?;
            encode(key, &visitor)
        }
        _ => Ok(value.to_vec()),
    }
}

fn encode<T: Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(value, CONFIG).map_err(|error| StateError::Encode {
        key: printable(key),
        reason: error.to_string(),
    })
}

/// The keys changed since the last commit, per table. Removal is not tracked apart: an
/// entity that is gone when the changes are taken becomes a removal.
#[derive(Debug, Default)]
pub(crate) struct Unsaved {
    pub(crate) people: rustc_hash::FxHashSet<String>,
    pub(crate) visitors: rustc_hash::FxHashSet<String>,
    pub(crate) visitors_of: rustc_hash::FxHashSet<String>,
    /// Merge groups, by survivor.
    pub(crate) merged: rustc_hash::FxHashSet<String>,
    pub(crate) accounts: rustc_hash::FxHashSet<String>,
    pub(crate) ledgers: rustc_hash::FxHashSet<String>,
    pub(crate) retracted: Vec<EventId>,
    pub(crate) retractions: Vec<EventId>,
    pub(crate) corrections: Vec<EventId>,
    pub(crate) wins: Vec<EventId>,
}

impl Unsaved {
    /// Marks a key, allocating only when it was not marked yet (most events are about
    /// someone touched earlier in the same commit).
    pub(crate) fn mark(set: &mut rustc_hash::FxHashSet<String>, id: &str) {
        if !set.contains(id) {
            set.insert(id.to_owned());
        }
    }
}

/// The entries of a projection folded in memory still to be handed to a store
/// ([`FunnelProjection::start_keeping`]).
#[derive(Debug, Default)]
pub struct Keeping {
    people: Vec<String>,
    visitors: Vec<String>,
    visitors_of: Vec<String>,
    merged: Vec<String>,
    accounts: Vec<String>,
    ledgers: Vec<String>,
    retracted: Vec<EventId>,
    retractions: Vec<EventId>,
    corrections: Vec<EventId>,
    wins: Vec<EventId>,
    /// Whether a first batch was marked (it also carries the tables and the globals).
    started: bool,
}

impl Keeping {
    /// How many entries are left to mark.
    pub fn len(&self) -> usize {
        self.people.len()
            + self.visitors.len()
            + self.visitors_of.len()
            + self.merged.len()
            + self.accounts.len()
            + self.ledgers.len()
            + self.retracted.len()
            + self.retractions.len()
            + self.corrections.len()
            + self.wins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Serialize, Deserialize)]
struct Globals {
    events: u64,
    latest: Option<Timestamp>,
}

fn key(tag: u8, id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(tag);
    key.extend_from_slice(id);
    key
}

fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        key: printable(key),
        reason,
    };
    let (value, read) = bincode::serde::decode_from_slice(bytes, CONFIG)
        .map_err(|error| corrupt(error.to_string()))?;
    if read != bytes.len() {
        return Err(corrupt(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        )));
    }
    Ok(value)
}

fn id_text(key: &[u8]) -> Result<String, StateError> {
    String::from_utf8(key[1..].to_vec()).map_err(|_| StateError::Corrupt {
        key: printable(key),
        reason: "the id is not UTF-8".to_owned(),
    })
}

/// The index of a symbol's or an attribute set's key: 4 bytes, big-endian, after the tag.
fn table_index(key: &[u8]) -> Result<u32, StateError> {
    key[1..]
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| StateError::Corrupt {
            key: printable(key),
            reason: format!("a table key holds a 4-byte index, not {}", key.len() - 1),
        })
}

fn event_id(key: &[u8]) -> Result<EventId, StateError> {
    let bytes: [u8; 16] = key[1..].try_into().map_err(|_| StateError::Corrupt {
        key: printable(key),
        reason: format!("an event id is 16 bytes, not {}", key.len() - 1),
    })?;
    Ok(EventId::from_uuid(uuid::Uuid::from_bytes(bytes)))
}

/// Where [`FunnelProjection::drain_changes`] encodes each value before handing it over.
struct Sink<F> {
    scratch: Vec<u8>,
    put: F,
}

impl<F: FnMut(&[u8], Option<&[u8]>)> Sink<F> {
    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: Option<&T>) -> Result<(), StateError> {
        match value {
            Some(value) => {
                self.scratch.clear();
                bincode::serde::encode_into_std_write(value, &mut self.scratch, CONFIG).map_err(
                    |error| StateError::Encode {
                        key: printable(&key),
                        reason: error.to_string(),
                    },
                )?;
                (self.put)(&key, Some(&self.scratch));
            }
            None => (self.put)(&key, None),
        }
        Ok(())
    }
}

impl FunnelProjection {
    /// A projection that records which entries change, for a projector that stores them.
    pub fn tracking_changes(definition: FunnelDefinition) -> Self {
        let mut projection = FunnelProjection::new(definition);
        projection.unsaved = Some(Unsaved::default());
        projection
    }

    /// How many entries the next [`drain_changes`](Self::drain_changes) will hand over, not
    /// counting the symbol and attribute tables and the one global entry: what a store that
    /// writes them in one batch may want to bound. Zero when not tracking changes.
    pub fn unsaved_entries(&self) -> usize {
        self.unsaved.as_ref().map_or(0, |unsaved| {
            unsaved.people.len()
                + unsaved.visitors.len()
                + unsaved.visitors_of.len()
                + unsaved.merged.len()
                + unsaved.accounts.len()
                + unsaved.ledgers.len()
                + unsaved.retracted.len()
                + unsaved.retractions.len()
                + unsaved.corrections.len()
                + unsaved.wins.len()
        })
    }

    /// Hands every stored-state entry written or removed since the last call to `put`: its
    /// key, and its value (`None` to remove it). Each value is encoded into one buffer reused
    /// for all of them, so a store can copy it straight into its own batch. A key marked twice
    /// (a retraction repeated) may be handed over twice, with the same value. Nothing when not
    /// tracking changes.
    pub fn drain_changes(
        &mut self,
        put: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<(), StateError> {
        if self.unsaved.is_none() {
            return Ok(());
        }
        // Groups are stored under the survivor the rule gives.
        self.settle();
        let Some(unsaved) = self.unsaved.replace(Unsaved::default()) else {
            return Ok(());
        };
        let mut sink = Sink {
            scratch: Vec::with_capacity(4096),
            put,
        };
        let entries = &mut sink;
        // Facts go to the fact file a few dozen at a time: what a holder keeps in memory
        // between commits stays small, and each run is worth the read that brings it back.
        let file = self.file.clone();
        let mut run = Vec::new();
        for id in &unsaved.people {
            if let Some(person) = self.people.get_mut(id) {
                person.facts.spill(self.spill_at, &*file, &mut run, id)?;
            }
            entries.put(key(PERSON, id.as_bytes()), self.people.get(id))?;
        }
        for id in &unsaved.visitors {
            if let Some(visitor) = self.visitors.get_mut(id) {
                visitor.facts.spill(self.spill_at, &*file, &mut run, id)?;
            }
            let value = self.visitors.get(id);
            entries.put(key(VISITOR, id.as_bytes()), value)?;
        }
        for id in &unsaved.visitors_of {
            let value = self.visitors_of.get(id);
            entries.put(key(VISITORS_OF, id.as_bytes()), value)?;
        }
        for id in &unsaved.merged {
            let value = self.merges.get(id);
            entries.put(key(MERGED, id.as_bytes()), value)?;
        }
        for id in &unsaved.accounts {
            let value = self.accounts.get(id);
            entries.put(key(ACCOUNT, id.as_bytes()), value)?;
        }
        for id in &unsaved.ledgers {
            let value = self.ledgers.get(id);
            entries.put(key(LEDGER, id.as_bytes()), value)?;
        }
        for id in &unsaved.retracted {
            let value = self.retracted.contains(id).then_some(&());
            entries.put(key(RETRACTED, id.as_uuid().as_bytes()), value)?;
        }
        for id in &unsaved.retractions {
            let value = self.retractions.get(id);
            entries.put(key(RETRACTION, id.as_uuid().as_bytes()), value)?;
        }
        for id in &unsaved.corrections {
            let value = self.corrections.get(id);
            entries.put(key(CORRECTION, id.as_uuid().as_bytes()), value)?;
        }
        for id in &unsaved.wins {
            entries.put(key(WON, id.as_uuid().as_bytes()), self.wins.get(id))?;
        }
        for (index, name) in self.symbols.unsaved() {
            let key = key(SYMBOL, &index.to_be_bytes());
            entries.put(key, Some(&name))?;
        }
        self.symbols.saved = self.symbols.len();
        for (index, set) in self.attributes.unsaved() {
            let key = key(ATTRIBUTES, &index.to_be_bytes());
            entries.put(key, Some(set))?;
        }
        self.attributes.saved = self.attributes.len();
        let globals = Globals {
            events: self.events,
            latest: self.latest,
        };
        entries.put(vec![GLOBALS], Some(&globals))?;
        Ok(())
    }

    /// The stored-state entries written or removed since the last call (or since the
    /// projection was created or restored), in key order. Empty when not tracking changes.
    pub fn take_changes(&mut self) -> Result<Vec<StateEntry>, StateError> {
        let mut entries = Vec::new();
        self.drain_changes(|key, value| {
            entries.push(StateEntry {
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
            });
        })?;
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        // A key marked twice (a retraction repeated) is written once.
        entries.dedup_by(|a, b| a.key == b.key);
        Ok(entries)
    }

    /// Whether the projection tracks changes for a store (and so cannot be kept whole into
    /// another: [`start_keeping`](Self::start_keeping)).
    pub fn tracks_changes(&self) -> bool {
        self.unsaved.is_some()
    }

    /// Prepares a projection folded in memory (one that never tracked changes: a backtest's
    /// candidate) to be stored whole without folding it again: from here on it tracks changes
    /// and writes its facts to `file`, and each [`keep_more`](Self::keep_more) marks more of its
    /// entries unsaved, for the store to take with [`drain_changes`](Self::drain_changes) in
    /// batches of a bounded size. The symbol and attribute tables and the globals go with the
    /// first drain.
    pub fn start_keeping(
        &mut self,
        file: std::sync::Arc<dyn FactFile>,
    ) -> Result<Keeping, StateError> {
        if self.unsaved.is_some() {
            return Err(StateError::AlreadyStored);
        }
        // Groups are stored under the survivor the rule gives, before their keys are listed.
        self.settle();
        // Each list in descending key order, taken from its end: every batch then covers one
        // range of keys, so a store that keeps them in order (sled's tree) writes each batch
        // into a few leaves instead of copying leaves all over the tree for every batch (at
        // ten million events, in hash order, a third of the keeping's time).
        fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
            let mut items: Vec<T> = items.collect();
            items.sort_unstable_by(|a, b| b.cmp(a));
            items
        }
        let by_key = |ids: Vec<EventId>| {
            let mut ids = ids;
            ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id.as_uuid().as_bytes()));
            ids
        };
        let keeping = Keeping {
            people: sorted(self.people.keys().cloned()),
            visitors: sorted(self.visitors.keys().cloned()),
            visitors_of: sorted(self.visitors_of.keys().cloned()),
            merged: sorted(self.merges.keys().cloned()),
            accounts: sorted(self.accounts.keys().cloned()),
            ledgers: sorted(self.ledgers.keys().cloned()),
            retracted: by_key(self.retracted.iter().copied().collect()),
            retractions: by_key(self.retractions.keys().copied().collect()),
            corrections: by_key(self.corrections.keys().copied().collect()),
            wins: by_key(self.wins.keys().copied().collect()),
            started: false,
        };
        self.unsaved = Some(Unsaved::default());
        self.file = file;
        Ok(keeping)
    }

    /// Marks up to `entries` more of the entries `keeping` lists unsaved (at least one);
    /// `false` once none are left. A person or visitor marked hands over their facts too.
    pub fn keep_more(&mut self, keeping: &mut Keeping, entries: usize) -> bool {
        let Some(unsaved) = self.unsaved.as_mut() else {
            return false;
        };
        let mut budget = entries.max(1);
        fn take<T>(from: &mut Vec<T>, budget: &mut usize, mut into: impl FnMut(T)) {
            let count = from.len().min(*budget);
            *budget -= count;
            for item in from.drain(from.len() - count..) {
                into(item);
            }
        }
        let before = keeping.len();
        take(&mut keeping.people, &mut budget, |id| {
            unsaved.people.insert(id);
        });
        take(&mut keeping.visitors, &mut budget, |id| {
            unsaved.visitors.insert(id);
        });
        take(&mut keeping.visitors_of, &mut budget, |id| {
            unsaved.visitors_of.insert(id);
        });
        take(&mut keeping.merged, &mut budget, |id| {
            unsaved.merged.insert(id);
        });
        take(&mut keeping.accounts, &mut budget, |id| {
            unsaved.accounts.insert(id);
        });
        take(&mut keeping.ledgers, &mut budget, |id| {
            unsaved.ledgers.insert(id);
        });
        take(&mut keeping.retracted, &mut budget, |id| {
            unsaved.retracted.push(id)
        });
        take(&mut keeping.retractions, &mut budget, |id| {
            unsaved.retractions.push(id)
        });
        take(&mut keeping.corrections, &mut budget, |id| {
            unsaved.corrections.push(id)
        });
        take(&mut keeping.wins, &mut budget, |id| unsaved.wins.push(id));
        // The first call counts even with nothing listed: the tables and globals are due.
        let first = !std::mem::replace(&mut keeping.started, true);
        first || before > keeping.len()
    }

    /// Rebuilds a projection from stored entries (in key order, as a store iterates them) and
    /// re-folds every journey. The result tracks changes from here on.
    pub fn restore<K, V>(
        definition: FunnelDefinition,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, StateError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        Self::restore_on(definition, entries, std::num::NonZeroUsize::MIN)
    }

    /// [`restore`](Self::restore) with its refreshes, the first (every journey) included, on up
    /// to `threads` threads (see [`with_refresh_threads`](Self::with_refresh_threads)).
    pub fn restore_on<K, V>(
        definition: FunnelDefinition,
        entries: impl IntoIterator<Item = (K, V)>,
        threads: std::num::NonZeroUsize,
    ) -> Result<Self, StateError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let file = std::sync::Arc::new(MemoryFactFile::default());
        Self::restore_with(definition, entries, threads, file)
    }

    /// [`restore_on`](Self::restore_on) from entries whose facts were partly written to
    /// `file`, which the projection goes on writing its facts to.
    pub fn restore_with<K, V>(
        definition: FunnelDefinition,
        entries: impl IntoIterator<Item = (K, V)>,
        threads: std::num::NonZeroUsize,
        file: std::sync::Arc<dyn FactFile>,
    ) -> Result<Self, StateError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut projection = FunnelProjection::tracking_changes(definition)
            .with_refresh_threads(threads)
            .with_fact_file(file);
        for (key, value) in entries {
            let (key, value) = (key.as_ref(), value.as_ref());
            let Some(&tag) = key.first() else {
                return Err(StateError::Corrupt {
                    key: String::new(),
                    reason: "an empty key".to_owned(),
                });
            };
            match tag {
                PERSON => {
                    let person: Box<Person> = decode(key, value)?;
                    projection.people.insert(id_text(key)?, person);
                }
                VISITOR => {
                    let visitor: Visitor = decode(key, value)?;
                    projection.visitors.insert(id_text(key)?, visitor);
                }
                VISITORS_OF => {
                    let visitors: Vec<String> = decode(key, value)?;
                    projection.visitors_of.insert(id_text(key)?, visitors);
                }
                MERGED => {
                    let group: MergeGroup = decode(key, value)?;
                    let survivor = id_text(key)?;
                    // A commit settles every group before storing it.
                    debug_assert_eq!(group.survivor(), survivor, "a stored group is settled");
                    for id in group.ids() {
                        if *id != survivor {
                            projection.merged_into.insert(id.clone(), survivor.clone());
                        }
                    }
                    projection.merges.insert(survivor, group);
                }
                ACCOUNT => {
                    let account: Account = decode(key, value)?;
                    projection.accounts.insert(id_text(key)?, account);
                }
                LEDGER => {
                    let ledger: super::ledger::AccountLedger = decode(key, value)?;
                    projection.ledgers.insert(id_text(key)?, ledger);
                }
                RETRACTED => {
                    decode::<()>(key, value)?;
                    projection.retracted.insert(event_id(key)?);
                }
                RETRACTION => {
                    let target: EventId = decode(key, value)?;
                    projection.retractions.insert(event_id(key)?, target);
                }
                CORRECTION => {
                    let correction: Correction = decode(key, value)?;
                    projection.corrections.insert(event_id(key)?, correction);
                }
                WON => {
                    let won: Won = decode(key, value)?;
                    projection.wins.insert(event_id(key)?, won);
                }
                SYMBOL => {
                    let name: String = decode(key, value)?;
                    let index = table_index(key)?;
                    // Keys sort by index (big-endian), and a store is read in key order.
                    projection.symbols.restore(index, name).map_err(|reason| {
                        StateError::Corrupt {
                            key: printable(key),
                            reason,
                        }
                    })?;
                }
                ATTRIBUTES => {
                    let set: crate::journey::Attributes = decode(key, value)?;
                    let index = table_index(key)?;
                    projection
                        .attributes
                        .restore(index, set)
                        .map_err(|reason| StateError::Corrupt {
                            key: printable(key),
                            reason,
                        })?;
                }
                GLOBALS => {
                    let globals: Globals = decode(key, value)?;
                    projection.events = globals.events;
                    projection.latest = globals.latest;
                }
                other => {
                    return Err(StateError::UnknownTable {
                        key: printable(key),
                        tag: char::from(other),
                    });
                }
            }
        }
        // Every fact's attributes must be in the table (their entries are written in the same
        // commit as the facts that first use them). The facts are read back once here, to
        // check that and to rebuild the id filters.
        let file = projection.file.clone();
        let attributes = &projection.attributes;
        let check = |tag: u8, id: &str, facts: &[Fact]| match facts
            .iter()
            .find(|fact| !attributes.holds(fact.attributes))
        {
            Some(fact) => Err(StateError::Corrupt {
                key: printable(&key(tag, id.as_bytes())),
                reason: format!(
                    "fact {} refers to attribute set {:?}, and the table holds {}",
                    fact.event_id,
                    fact.attributes,
                    attributes.len()
                ),
            }),
            None => Ok(()),
        };
        for (id, person) in &mut projection.people {
            // Stores written before facts were kept in order hold them as they arrived.
            person.facts.sort_if_needed();
            let all = person.facts.all(&*file, id)?.into_owned();
            check(PERSON, id, &all)?;
            if !all.is_empty() {
                projection.filters.rebuild(&mut person.facts, &all, || {
                    super::Holder::Person(id.clone())
                });
            }
        }
        for (id, visitor) in &mut projection.visitors {
            let all = visitor.facts.all(&*file, id)?.into_owned();
            check(VISITOR, id, &all)?;
            if !all.is_empty() {
                projection.filters.rebuild(&mut visitor.facts, &all, || {
                    super::Holder::Visitor(id.clone())
                });
            }
        }
        projection.rebuild_shapers();
        projection.refold_all = true;
        projection.try_refresh()?;
        Ok(projection)
    }
}
