//! The stored form of a projection's state: what the projector keeps in sled beside its
//! checkpoint, so that a restart resumes from the checkpoint instead of replaying the log.
//!
//! The state is the projection's facts and settled values, one entry per person, visitor,
//! account, merge, retraction, correction and close, keyed by a one-byte table tag and the
//! entity's id. A person's facts are stored apart from the person, one entry per bucket of
//! business time (`view/facts.rs`), keyed by the tag, the person's id, `0xFF` (never in
//! UTF-8, so one person's keys are never a prefix of another's) and the bucket, big-endian:
//! a commit rewrites the buckets that changed (mostly the latest one), and the entries are the
//! same whatever the batching. Journeys are not stored: they are a pure function of the
//! entries and are re-folded when a projection is restored. A projection that tracks changes
//! ([`FunnelProjection::tracking_changes`]) hands out, at each commit, the entries written
//! or removed since the last one ([`FunnelProjection::take_changes`]).
//!
//! Values are bincode 2.0.1 in the legacy layout, like log frames. Bincode is not
//! self-describing: a change to any stored struct bumps [`STATE_VERSION`], and a store
//! written under another version is rebuilt from the log, never misread. The golden test in
//! `tests/state.rs` fails when the bytes change.

use super::{Account, Correction, FunnelProjection, Person, Visitor, Won};
use crate::event::EventId;
use crate::funnel::FunnelDefinition;
use crate::journey::Fact;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// The version of the stored state this build writes and reads.
pub const STATE_VERSION: u16 = 3;

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
const RETRACTED: u8 = b'r';
const CORRECTION: u8 = b'c';
const WON: u8 = b'w';
const GLOBALS: u8 = b'g';
const SYMBOL: u8 = b's';
const ATTRIBUTES: u8 = b't';
const FACTS: u8 = b'f';
/// Ends the person's id in a fact bucket's key.
const ID_END: u8 = 0xFF;

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
    #[error("reading the stored facts of {person:?}: {reason}")]
    Read { person: String, reason: String },
    #[error(
        "the facts of {person:?} are partly in the view store, and it was not given to read them back"
    )]
    NoStore { person: String },
}

/// Called with each stored entry a scan finds: its key and value.
pub type EachEntry<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StateError> + 'a;

/// Read access to the store a projection's commits went to (the projector's view), for a
/// projection that keeps part of its facts there only ([`FunnelProjection::spilling`]).
pub trait StoredState: Sync {
    /// Calls `each` with every stored entry whose key is in `start..end`, in key order, as of
    /// the last commit applied.
    fn scan(&self, start: &[u8], end: &[u8], each: &mut EachEntry<'_>) -> Result<(), StateError>;
}

/// The store, or the error that says a person's facts need it.
pub(crate) fn required<'a>(
    store: Option<&'a dyn StoredState>,
    person: &str,
) -> Result<&'a dyn StoredState, StateError> {
    store.ok_or_else(|| StateError::NoStore {
        person: person.to_owned(),
    })
}

/// The key of a person's facts in one bucket.
fn fact_key(person: &str, bucket: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(person.len() + 6);
    key.push(FACTS);
    key.extend_from_slice(person.as_bytes());
    key.push(ID_END);
    key.extend_from_slice(&bucket.to_be_bytes());
    key
}

/// The keys of a person's facts in these buckets.
pub(crate) fn fact_keys(person: &str, buckets: &[u32]) -> Vec<Vec<u8>> {
    buckets
        .iter()
        .map(|bucket| fact_key(person, *bucket))
        .collect()
}

/// Reads a person's stored buckets before `below`, in order, handing each bucket's key and
/// facts to `each`.
pub(crate) fn read_facts(
    store: &dyn StoredState,
    person: &str,
    below: u32,
    each: impl FnMut(&[u8], Vec<Fact>),
) -> Result<(), StateError> {
    read_buckets(store, person, 0..below, each)
}

/// Reads a person's stored buckets in `buckets`, in order.
fn read_buckets(
    store: &dyn StoredState,
    person: &str,
    buckets: std::ops::Range<u32>,
    mut each: impl FnMut(&[u8], Vec<Fact>),
) -> Result<(), StateError> {
    let (start, end) = (
        fact_key(person, buckets.start),
        fact_key(person, buckets.end),
    );
    store
        .scan(&start, &end, &mut |key, value| {
            each(key, decode(key, value)?);
            Ok(())
        })
        .map_err(|error| match error {
            StateError::Read { reason, .. } => StateError::Read {
                person: person.to_owned(),
                reason,
            },
            other => other,
        })
}

/// The person's id and the bucket of a fact bucket's key.
fn fact_key_parts(key: &[u8]) -> Result<(String, u32), StateError> {
    let corrupt = |reason: &str| StateError::Corrupt {
        key: printable(key),
        reason: reason.to_owned(),
    };
    let Some(split) = key.len().checked_sub(5).filter(|split| *split >= 1) else {
        return Err(corrupt("a fact bucket's key is too short"));
    };
    if key[split] != ID_END {
        return Err(corrupt("a fact bucket's key does not end its id with 0xFF"));
    }
    let id =
        String::from_utf8(key[1..split].to_vec()).map_err(|_| corrupt("the id is not UTF-8"))?;
    let bucket = u32::from_be_bytes(key[split + 1..].try_into().expect("4 bytes by the split"));
    Ok((id, bucket))
}

/// The keys changed since the last commit, per table. Removal is not tracked apart: an
/// entity that is gone when the changes are taken becomes a removal.
#[derive(Debug, Default)]
pub(crate) struct Unsaved {
    /// People whose record (traits, links) changed, or who are new or gone.
    pub(crate) people: rustc_hash::FxHashSet<String>,
    /// People who gained facts.
    pub(crate) facts: rustc_hash::FxHashSet<String>,
    pub(crate) visitors: rustc_hash::FxHashSet<String>,
    pub(crate) visitors_of: rustc_hash::FxHashSet<String>,
    pub(crate) merged: rustc_hash::FxHashSet<String>,
    pub(crate) accounts: rustc_hash::FxHashSet<String>,
    pub(crate) retracted: Vec<EventId>,
    pub(crate) corrections: Vec<EventId>,
    pub(crate) wins: Vec<EventId>,
    /// Fact buckets of people merged away, to remove.
    pub(crate) removed: Vec<Vec<u8>>,
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

    /// Hands every stored-state entry written or removed since the last call to `put`: its
    /// key, and its value (`None` to remove it). Each value is encoded into one buffer reused
    /// for all of them, so a store can copy it straight into its own batch. A key marked twice
    /// (a retraction repeated) may be handed over twice, with the same value. Nothing when not
    /// tracking changes.
    ///
    /// `store` is where the earlier changes went, as of the last one applied: a fact that
    /// lands in a bucket a spilling projection keeps in the store only is merged with what
    /// is stored there. Once the changes are handed over, a spilling projection drops from
    /// memory the stored facts of the people they were about but their latest bucket's.
    pub fn drain_changes(
        &mut self,
        store: Option<&dyn StoredState>,
        put: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<(), StateError> {
        if self.unsaved.is_none() {
            return Ok(());
        }
        self.resolve_merges(store)?;
        let Some(unsaved) = self.unsaved.replace(Unsaved::default()) else {
            return Ok(());
        };
        let mut sink = Sink {
            scratch: Vec::with_capacity(4096),
            put,
        };
        let entries = &mut sink;
        for key in unsaved.removed {
            entries.put::<()>(key, None)?;
        }
        for id in &unsaved.people {
            entries.put(key(PERSON, id.as_bytes()), self.people.get(id))?;
        }
        for id in &unsaved.facts {
            let Some(person) = self.people.get_mut(id) else {
                continue; // Merged away: its buckets are in `removed`.
            };
            if !person.facts.unsaved() {
                continue;
            }
            let (late, changed) = person.facts.unsaved_buckets();
            for (bucket, facts) in late {
                let store = required(store, id)?;
                let mut merged = Vec::new();
                read_buckets(store, id, bucket..bucket + 1, |_, stored| merged = stored)?;
                merged.extend_from_slice(facts);
                super::sort_facts(&mut merged);
                entries.put(fact_key(id, bucket), Some(&merged))?;
            }
            for (bucket, facts) in changed {
                entries.put(fact_key(id, bucket), Some(&facts))?;
            }
            person.facts.mark_saved();
            if self.spills {
                person.facts.spill();
            }
        }
        for id in &unsaved.visitors {
            let value = self.visitors.get(id);
            entries.put(key(VISITOR, id.as_bytes()), value)?;
        }
        for id in &unsaved.visitors_of {
            let value = self.visitors_of.get(id);
            entries.put(key(VISITORS_OF, id.as_bytes()), value)?;
        }
        for id in &unsaved.merged {
            let value = self.merged_into.get(id);
            entries.put(key(MERGED, id.as_bytes()), value)?;
        }
        for id in &unsaved.accounts {
            let value = self.accounts.get(id);
            entries.put(key(ACCOUNT, id.as_bytes()), value)?;
        }
        for id in &unsaved.retracted {
            let value = self.retracted.contains(id).then_some(&());
            entries.put(key(RETRACTED, id.as_uuid().as_bytes()), value)?;
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
        self.take_changes_from(None)
    }

    /// [`take_changes`](Self::take_changes) of a projection that may have spilled facts to
    /// `store` (see [`drain_changes`](Self::drain_changes)).
    pub fn take_changes_from(
        &mut self,
        store: Option<&dyn StoredState>,
    ) -> Result<Vec<StateEntry>, StateError> {
        let mut entries = Vec::new();
        self.drain_changes(store, |key, value| {
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
        Self::restore_from(definition, entries, threads, None)
    }

    /// [`restore_on`](Self::restore_on), and with a `store` (the one `entries` come from) the
    /// projection spills ([`spilling`](Self::spilling)): of each person's stored facts only
    /// the latest bucket is kept in memory, the rest read back from `store` when needed, the
    /// first refresh included.
    pub fn restore_from<K, V>(
        definition: FunnelDefinition,
        entries: impl IntoIterator<Item = (K, V)>,
        threads: std::num::NonZeroUsize,
        store: Option<&dyn StoredState>,
    ) -> Result<Self, StateError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut projection =
            FunnelProjection::tracking_changes(definition).with_refresh_threads(threads);
        projection.spills = store.is_some();
        // People's facts come before the people (their tag sorts first), bucket after bucket;
        // they wait here for their person. The attribute sets come after both: the largest
        // set a fact refers to is checked against the table at the end.
        let mut facts_of: rustc_hash::FxHashMap<String, super::Facts> = Default::default();
        let mut largest_set: Option<(crate::symbol::AttributesId, Vec<u8>, EventId)> = None;
        for (key, value) in entries {
            let (key, value) = (key.as_ref(), value.as_ref());
            let Some(&tag) = key.first() else {
                return Err(StateError::Corrupt {
                    key: String::new(),
                    reason: "an empty key".to_owned(),
                });
            };
            match tag {
                FACTS => {
                    let (id, bucket) = fact_key_parts(key)?;
                    let stored: Vec<Fact> = decode(key, value)?;
                    if let Some(fact) = stored.iter().max_by_key(|fact| fact.attributes)
                        && largest_set
                            .as_ref()
                            .is_none_or(|(set, _, _)| fact.attributes > *set)
                    {
                        largest_set = Some((fact.attributes, key.to_vec(), fact.event_id));
                    }
                    let facts = facts_of.entry(id).or_default();
                    for fact in &stored {
                        // The slot is given a holder when the person is put in place.
                        projection.filters.add(facts, fact.event_id, || {
                            super::Holder::Person(String::new())
                        });
                    }
                    facts.restore_bucket(bucket, stored, store.is_none());
                }
                PERSON => {
                    let mut person: Box<Person> = decode(key, value)?;
                    let id = id_text(key)?;
                    if let Some(facts) = facts_of.remove(&id) {
                        projection
                            .filters
                            .set_holder(&facts, super::Holder::Person(id.clone()));
                        person.facts = facts;
                    }
                    projection.people.insert(id, person);
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
                    let into: String = decode(key, value)?;
                    projection.merged_into.insert(id_text(key)?, into);
                }
                ACCOUNT => {
                    let account: Account = decode(key, value)?;
                    projection.accounts.insert(id_text(key)?, account);
                }
                RETRACTED => {
                    decode::<()>(key, value)?;
                    projection.retracted.insert(event_id(key)?);
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
        if let Some(id) = facts_of.keys().next() {
            return Err(StateError::Corrupt {
                key: printable(&key(FACTS, id.as_bytes())),
                reason: "facts are stored for a person who is not".to_owned(),
            });
        }
        // Every fact's attributes must be in the table (their entries are written in the same
        // commit as the facts that first use them). The error names the fact's holder.
        let unknown = |fact: &Fact| {
            (!projection.attributes.holds(fact.attributes)).then(|| {
                format!(
                    "fact {} refers to attribute set {:?}, and the table holds {}",
                    fact.event_id,
                    fact.attributes,
                    projection.attributes.len()
                )
            })
        };
        if let Some((set, fact_key, event_id)) = &largest_set
            && !projection.attributes.holds(*set)
        {
            let (id, _) = fact_key_parts(fact_key)?;
            return Err(StateError::Corrupt {
                key: printable(&key(PERSON, id.as_bytes())),
                reason: format!(
                    "fact {event_id} refers to attribute set {set:?}, and the table holds {}",
                    projection.attributes.len()
                ),
            });
        }
        for (id, visitor) in &projection.visitors {
            if let Some(reason) = visitor.facts.in_memory().iter().find_map(unknown) {
                return Err(StateError::Corrupt {
                    key: printable(&key(VISITOR, id.as_bytes())),
                    reason,
                });
            }
        }
        // A visitor's facts are kept as they arrived.
        for (id, visitor) in &mut projection.visitors {
            if !visitor.facts.in_memory().is_empty() {
                projection
                    .filters
                    .rebuild(&mut visitor.facts, || super::Holder::Visitor(id.clone()));
            }
        }
        projection.refold_all = true;
        projection.refresh_from(store)?;
        Ok(projection)
    }
}
