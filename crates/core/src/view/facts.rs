//! A person's or a visitor's facts, and a small filter of their event ids.
//!
//! A holder keeps its latest facts in memory, a few dozen at most between commits; a commit
//! of a projection that stores its state writes a holder's facts to the projection's fact
//! file once they are that many ([`Facts::spill`]), and the holder keeps only where they went
//! (a [`Run`] of 16 bytes). A projection's memory then follows its number of people, not its
//! number of events: a refresh reads a journey's runs back when it re-folds it.
//!
//! A retraction or correction that names nobody must find the fact it targets among everyone's
//! facts. The filter lets that search skip, with a test of two bits, every holder that cannot
//! hold the target: only the holders whose filter matches have their facts looked at. It is
//! derived from the facts (rebuilt when they are read back from the store), so the stored form
//! is the runs and the list alone. The filters live in one array ([`Filters`]), and a holder
//! keeps only its slot there: a hundred thousand people and a few hundred thousand visitors,
//! most of them with a handful of facts, would otherwise carry 64 bytes each twice.

use super::state::{FactFile, StateError};
use super::{fact_order, sort_facts};
use crate::event::EventId;
use crate::journey::Fact;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Where a holder's facts sit in the fact file: `bytes` bytes at `offset`, the encoding of
/// `facts` facts in (business time, event id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) offset: u64,
    pub(crate) bytes: u32,
    pub(crate) facts: u32,
}

/// A holder's facts: the runs in the fact file, then the list in memory. The list is in
/// (business time, event id) order for a person, in arrival order for a visitor; each run is
/// in (business time, event id) order, and facts that arrived late may sort before the runs
/// written earlier.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Facts {
    runs: Vec<Run>,
    list: Vec<Fact>,
    /// Where [`Filters`] keeps this holder's filter, once the holder has a fact.
    #[serde(skip)]
    slot: Option<u32>,
}

impl Facts {
    /// Adds a fact in (business time, event id) order among those in memory. Facts mostly
    /// arrive in time order, so this is nearly always a push. The caller adds its id to the
    /// filter ([`Filters::add`]).
    pub(crate) fn insert_in_order(&mut self, fact: Fact) {
        self.make_room();
        if self
            .list
            .last()
            .is_none_or(|last| fact_order(last, &fact).is_le())
        {
            self.list.push(fact);
        } else {
            let at = self
                .list
                .partition_point(|other| fact_order(other, &fact).is_le());
            self.list.insert(at, fact);
        }
    }

    /// Adds a fact at the end, whatever its time (a visitor's facts, kept as they arrive).
    /// The caller adds its id to the filter ([`Filters::add`]).
    pub(crate) fn push(&mut self, fact: Fact) {
        self.make_room();
        self.list.push(fact);
    }

    /// Grows a full list by an eighth instead of doubling it: the lists of a projection that
    /// keeps every fact in memory (one that does not store its state) hold nearly all of its
    /// memory, and they stop growing wherever a history ends. Doubling leaves them about a
    /// quarter empty, an eighth's growth about a sixteenth.
    fn make_room(&mut self) {
        let length = self.list.len();
        if length == self.list.capacity() {
            self.list.reserve_exact((length / 8).max(4));
        }
    }

    /// Takes another holder's facts (runs and list). The caller moves the other holder's
    /// filter over ([`Filters::take`], [`Filters::merge`]).
    pub(crate) fn absorb(&mut self, other: Facts) {
        self.list.extend(other.list);
        sort_facts(&mut self.list);
        self.runs.extend(other.runs);
    }

    /// Puts the facts in memory in order (stores written before facts were kept in order).
    pub(crate) fn sort_if_needed(&mut self) {
        if !self.list.is_sorted_by(|a, b| fact_order(a, b).is_le()) {
            sort_facts(&mut self.list);
        }
    }

    /// Where the holder's filter is, once it has one.
    pub(crate) fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// How many facts the holder has, in memory and in the file.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
            + self
                .runs
                .iter()
                .map(|run| run.facts as usize)
                .sum::<usize>()
    }

    /// Whether every fact is in memory (none was written to the fact file).
    pub(crate) fn complete(&self) -> bool {
        self.runs.is_empty()
    }

    /// Every fact, the runs read back from `file`: borrowed when all are in memory. In
    /// (business time, event id) order once any are read back (a person's always are).
    pub(crate) fn all<'a>(
        &'a self,
        file: &dyn FactFile,
        holder: &str,
    ) -> Result<Cow<'a, [Fact]>, StateError> {
        if self.runs.is_empty() {
            return Ok(Cow::Borrowed(&self.list));
        }
        let mut all = Vec::with_capacity(self.len());
        let mut buffer = Vec::new();
        for run in &self.runs {
            super::state::read_run(file, run, &mut buffer, &mut all, holder)?;
        }
        all.extend_from_slice(&self.list);
        // Sorted runs one after another: the sort merges them.
        sort_facts(&mut all);
        Ok(Cow::Owned(all))
    }

    /// Writes the facts in memory to `file` as one run once there are at least `at` of them,
    /// and lets go of them. `scratch` is a buffer for their encoding.
    pub(crate) fn spill(
        &mut self,
        at: usize,
        file: &dyn FactFile,
        scratch: &mut Vec<u8>,
        holder: &str,
    ) -> Result<(), StateError> {
        if self.list.len() < at.max(1) {
            return Ok(());
        }
        // A visitor's list is in arrival order; a run is in fact order.
        self.sort_if_needed();
        let run = super::state::write_run(file, &self.list, scratch, holder)?;
        self.runs.push(run);
        self.list = Vec::new();
        Ok(())
    }

    /// The same facts with all of them in memory, in order: the form two stores are compared
    /// in, whatever runs their commits happened to write.
    pub(crate) fn gathered(self, file: &dyn FactFile, holder: &str) -> Result<Facts, StateError> {
        let mut list = self.all(file, holder)?.into_owned();
        sort_facts(&mut list);
        Ok(Facts {
            runs: Vec::new(),
            list,
            slot: None,
        })
    }
}

/// Whose facts a filter summarises: a person or an anonymous visitor, by map key.
#[derive(Debug)]
pub(crate) enum Holder {
    Person(String),
    Visitor(String),
}

/// Every holder's filter side by side, so that the pass for unplaced targets reads 64 bytes
/// per holder in one array instead of a cache miss per holder in the hash maps.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    filters: Vec<IdFilter>,
    /// `None` for a holder merged away (its slot is not reused; merges are rare).
    holders: Vec<Option<Holder>>,
}

impl Filters {
    /// The slot of a holder's filter, giving it an empty one first.
    fn slot_of(&mut self, facts: &mut Facts, holder: impl FnOnce() -> Holder) -> usize {
        *facts.slot.get_or_insert_with(|| {
            self.filters.push(IdFilter::default());
            self.holders.push(Some(holder()));
            u32::try_from(self.filters.len() - 1).expect("invariant: fewer than 2^32 holders")
        }) as usize
    }

    /// Adds the id of a fact just added to a holder's facts to its filter.
    pub(crate) fn add(&mut self, facts: &mut Facts, id: EventId, holder: impl FnOnce() -> Holder) {
        let slot = self.slot_of(facts, holder);
        self.filters[slot].insert(id);
    }

    /// Adds an id to the filter in `slot` (a holder's [`Facts::slot`]): spares the caller a
    /// second lookup of the holder on every fact.
    pub(crate) fn add_at(&mut self, slot: u32, id: EventId) {
        self.filters[slot as usize].insert(id);
    }

    /// Builds a holder's filter from all its facts, `all` (facts read back from the store).
    pub(crate) fn rebuild(
        &mut self,
        facts: &mut Facts,
        all: &[Fact],
        holder: impl FnOnce() -> Holder,
    ) {
        let slot = self.slot_of(facts, holder);
        let mut filter = IdFilter::default();
        all.iter().for_each(|fact| filter.insert(fact.event_id));
        self.filters[slot] = filter;
    }

    /// Forgets a holder that is gone (a person merged into another), handing back its filter.
    pub(crate) fn take(&mut self, facts: &Facts) -> IdFilter {
        match facts.slot {
            Some(slot) => {
                self.holders[slot as usize] = None;
                std::mem::take(&mut self.filters[slot as usize])
            }
            None => IdFilter::default(),
        }
    }

    /// Lays a filter taken from a holder that is gone over the filter of the one that took
    /// its facts.
    pub(crate) fn merge(
        &mut self,
        facts: &mut Facts,
        other: IdFilter,
        holder: impl FnOnce() -> Holder,
    ) {
        let slot = self.slot_of(facts, holder);
        self.filters[slot].union(&other);
    }

    fn filter_of(&self, facts: &Facts) -> Option<&IdFilter> {
        facts.slot.map(|slot| &self.filters[slot as usize])
    }

    /// Whether one of the holder's facts has the id, or may have: its filter matches and some
    /// of its facts are in the fact file only. Re-folding a holder that turns out not to hold
    /// it costs time, never a wrong result.
    pub(crate) fn may_hold(&self, facts: &Facts, id: EventId) -> bool {
        self.filter_of(facts)
            .is_some_and(|filter| filter.may_hold(id))
            && (!facts.complete() || facts.list.iter().any(|fact| fact.event_id == id))
    }

    /// Whether one of the holder's facts has one of the ids: the filter first, then the facts,
    /// read back from `file` when some are there.
    pub(crate) fn holds_any(
        &self,
        facts: &Facts,
        ids: &Targets,
        file: &dyn FactFile,
        holder: &str,
    ) -> Result<bool, StateError> {
        if !self
            .filter_of(facts)
            .is_some_and(|filter| filter.may_hold_any(ids))
        {
            return Ok(false);
        }
        let all = facts.all(file, holder)?;
        Ok(all.iter().any(|fact| ids.contains(fact.event_id)))
    }

    /// The holders whose filter may hold one of the targets.
    pub(crate) fn candidates<'a>(
        &'a self,
        targets: &'a Targets,
    ) -> impl Iterator<Item = &'a Holder> {
        self.filters
            .iter()
            .zip(&self.holders)
            .filter(|(filter, _)| filter.may_hold_any(targets))
            .filter_map(|(_, holder)| holder.as_ref())
    }
}

/// Event ids looked for in one pass, with the union of their filter bits. A live projector
/// looks for a few at a time, best compared one by one; a replay gathers thousands before its
/// first refresh, which a hash set serves.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    few: Vec<EventId>,
    many: rustc_hash::FxHashSet<EventId>,
    filter: IdFilter,
}

/// Beyond this many targets, a hash lookup per fact costs less than comparing with each.
const FEW_TARGETS: usize = 16;

impl Targets {
    pub(crate) fn insert(&mut self, id: EventId) {
        if self.many.is_empty() {
            if self.few.contains(&id) {
                return;
            }
            self.few.push(id);
            if self.few.len() > FEW_TARGETS {
                self.many.extend(self.few.drain(..));
            }
        } else {
            self.many.insert(id);
        }
        self.filter.insert(id);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.few.is_empty() && self.many.is_empty()
    }

    pub(crate) fn contains(&self, id: EventId) -> bool {
        if self.many.is_empty() {
            self.few.contains(&id)
        } else {
            self.many.contains(&id)
        }
    }
}

/// A Bloom filter of 512 bits with two bits per event id: no false negatives; a holder of 30
/// facts lets an absent id through about one time in eighty, one of 100 about one in ten.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdFilter([u64; 8]);

impl IdFilter {
    /// The two bits of an id, as (word, mask) pairs. Ids may be UUIDv7 (time in the high
    /// bits, random low bits), derived from a source's message id (hashed), or chosen by a
    /// producer (perhaps sequential): both halves are mixed so that none of these crowd a few
    /// bits.
    fn bits(id: EventId) -> [(usize, u64); 2] {
        let value = id.as_u128();
        let folded = (value as u64) ^ ((value >> 64) as u64);
        let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let bit = |position: u64| ((position >> 6) as usize, 1u64 << (position & 63));
        [bit(mixed >> 55), bit((mixed >> 46) & 511)]
    }

    fn insert(&mut self, id: EventId) {
        for (word, mask) in Self::bits(id) {
            self.0[word] |= mask;
        }
    }

    fn union(&mut self, other: &IdFilter) {
        for (word, other) in self.0.iter_mut().zip(other.0) {
            *word |= other;
        }
    }

    fn may_hold(&self, id: EventId) -> bool {
        Self::bits(id)
            .iter()
            .all(|(word, mask)| self.0[*word] & mask != 0)
    }

    /// Whether one of the targets may be held: both bits of one of them when they are few,
    /// else any bit of their union.
    fn may_hold_any(&self, targets: &Targets) -> bool {
        if targets.many.is_empty() {
            targets.few.iter().any(|id| self.may_hold(*id))
        } else {
            self.0
                .iter()
                .zip(targets.filter.0)
                .any(|(word, other)| word & other != 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Kind;
    use crate::timestamp::Timestamp;

    fn fact(id: u128, at: i64) -> Fact {
        Fact {
            at: Timestamp::from_unix_millis(at),
            event_id: EventId::from_uuid(uuid::Uuid::from_u128(id)),
            kind: Kind::ContentViewed,
            content_type: None,
            need_declared: None,
            attributes: Default::default(),
        }
    }

    fn id(value: u128) -> EventId {
        EventId::from_uuid(uuid::Uuid::from_u128(value))
    }

    fn person(n: u32) -> impl FnOnce() -> Holder {
        move || Holder::Person(format!("p{n}"))
    }

    #[test]
    fn a_holder_keeps_its_runs_its_list_and_a_slot_only() {
        // The filter's 64 bytes live in `Filters` alone.
        assert_eq!(std::mem::size_of::<Facts>(), 56);
    }

    #[test]
    fn spilled_facts_read_back_in_order_and_move_with_a_merge() {
        let file = crate::view::state::MemoryFactFile::default();
        let mut scratch = Vec::new();
        let mut facts = Facts::default();
        for n in 0..5u128 {
            facts.insert_in_order(fact(n, 100 + n as i64));
        }
        facts.spill(6, &file, &mut scratch, "p1").expect("spills");
        assert!(facts.complete(), "five facts stay in memory below six");
        facts.spill(5, &file, &mut scratch, "p1").expect("spills");
        assert!(!facts.complete() && facts.list.is_empty() && facts.len() == 5);
        // A late fact sorts before the run written earlier.
        facts.insert_in_order(fact(9, 1));
        facts.insert_in_order(fact(10, 200));
        let all = facts.all(&file, "p1").expect("reads back");
        let ids: Vec<_> = all.iter().map(|f| f.event_id).collect();
        assert_eq!(ids, [9, 0, 1, 2, 3, 4, 10].map(id));

        // A visitor's facts, in arrival order, go out in fact order.
        let mut visitor = Facts::default();
        visitor.push(fact(20, 50));
        visitor.push(fact(21, 10));
        visitor.spill(1, &file, &mut scratch, "v1").expect("spills");
        facts.absorb(visitor);
        assert_eq!(facts.runs.len(), 2);
        // A run that is not in the file is an error naming the holder and the place.
        let empty = crate::view::state::MemoryFactFile::default();
        let error = facts.all(&empty, "p1").expect_err("nothing to read");
        let text = error.to_string();
        assert!(
            text.contains("\"p1\"") && text.contains("at offset 0"),
            "{text}"
        );
        let merged = facts.gathered(&file, "p1").expect("reads back");
        let times: Vec<_> = merged.list.iter().map(|f| f.at.unix_millis()).collect();
        assert_eq!(times, [1, 10, 50, 100, 101, 102, 103, 104, 200]);
        assert!(merged.complete());
    }

    #[test]
    fn every_held_id_is_found_and_absent_ones_mostly_are_not() {
        let mut filters = Filters::default();
        let mut facts = Facts::default();
        for n in 0..40u128 {
            facts.insert_in_order(fact(n * 7919, 1_000 - n as i64));
            filters.add(&mut facts, id(n * 7919), person(1));
        }
        assert!(facts.list.is_sorted_by(|a, b| fact_order(a, b).is_le()));
        for n in 0..40u128 {
            assert!(filters.may_hold(&facts, id(n * 7919)), "fact {n} is held");
        }
        assert!(!filters.may_hold(&facts, id(3)));
        // The filter, not the list, turns most absent ids away: 80 of 512 bits are set at most.
        let filter = filters
            .filter_of(&facts)
            .expect("a slot once a fact is added");
        let passed = (1_000_000..1_010_000u128)
            .filter(|n| filter.may_hold(id(*n)))
            .count();
        assert!(
            passed < 500,
            "{passed} of 10,000 absent ids passed the filter"
        );
        // A holder without a slot holds nothing, whatever its list.
        let mut unslotted = Facts::default();
        unslotted.push(fact(5, 1));
        assert!(!filters.may_hold(&unslotted, id(5)));
    }

    #[test]
    fn targets_are_found_after_absorbing_and_reading_back() {
        let file = crate::view::state::MemoryFactFile::default();
        let mut filters = Filters::default();
        let mut one = Facts::default();
        one.push(fact(1, 5));
        filters.add(&mut one, id(1), person(1));
        let mut other = Facts::default();
        other.push(fact(2, 1));
        filters.add(&mut other, id(2), person(2));
        let taken = filters.take(&other);
        one.absorb(other);
        filters.merge(&mut one, taken, person(1));
        assert_eq!(one.list.first().map(|f| f.event_id), Some(id(2)));
        let mut targets = Targets::default();
        targets.insert(id(2));
        assert!(
            filters
                .holds_any(&one, &targets, &file, "p1")
                .expect("in memory")
        );
        // The holder merged away is no longer a candidate; the one that took its facts is.
        let candidates: Vec<_> = filters.candidates(&targets).collect();
        assert!(
            matches!(candidates.as_slice(), [Holder::Person(p)] if p == "p1"),
            "{candidates:?}"
        );

        let bytes =
            bincode::serde::encode_to_vec(&one, bincode::config::legacy()).expect("facts encode");
        let list_bytes =
            bincode::serde::encode_to_vec((&one.runs, &one.list), bincode::config::legacy())
                .expect("facts encode");
        assert_eq!(bytes, list_bytes, "stored as the runs and the list alone");
        let (mut back, _): (Facts, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::legacy())
                .expect("facts encode");
        let mut restored = Filters::default();
        let back_list = back.list.clone();
        restored.rebuild(&mut back, &back_list, person(1));
        assert_eq!(restored.filter_of(&back), filters.filter_of(&one));
        assert!(
            restored
                .holds_any(&back, &targets, &file, "p1")
                .expect("in memory")
        );
        let mut absent = Targets::default();
        absent.insert(id(99));
        assert!(
            !restored
                .holds_any(&back, &absent, &file, "p1")
                .expect("in memory")
        );

        // Past a few targets they move to a hash set, and are all still found.
        let mut many = Targets::default();
        for n in 100..200u128 {
            many.insert(id(n));
            many.insert(id(n));
        }
        assert!(
            !restored
                .holds_any(&back, &many, &file, "p1")
                .expect("in memory")
        );
        many.insert(id(1));
        assert!(
            restored
                .holds_any(&back, &many, &file, "p1")
                .expect("in memory")
        );
        assert!((100..200u128).all(|n| many.contains(id(n))));
        assert!(!many.contains(id(99)));
    }
}
