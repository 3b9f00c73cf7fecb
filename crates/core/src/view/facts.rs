//! A person's or a visitor's facts, and a small filter of their event ids.
//!
//! A retraction or correction that names nobody must find the fact it targets among everyone's
//! facts. The filter lets that search skip, with a test of two bits, every holder that cannot
//! hold the target: only the holders whose filter matches have their facts looked at. It is
//! derived from the facts (rebuilt when they are read back from the store), so the stored form
//! is the list alone. The filters live in one array ([`Filters`]), and a holder keeps only its
//! slot there: a hundred thousand people and a few hundred thousand visitors, most of them
//! with a handful of facts, would otherwise carry 64 bytes each twice.
//!
//! A person's facts are stored in buckets of business time ([`bucket_of`]: about 50 days
//! each), one store entry per person and bucket. A projection that spills
//! ([`FunnelProjection::spilling`](super::FunnelProjection::spilling)) keeps in memory only
//! each person's latest bucket and the facts not yet stored; the rest is read back from the
//! store when the person's journey is folded again. So its memory follows the number of
//! people, not the length of their histories.

use super::{fact_order, sort_facts};
use crate::event::EventId;
use crate::journey::Fact;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The bucket of business time a fact is stored in: the top 32 bits of its time in
/// milliseconds (offset so that the order of buckets is the order of times), so a bucket spans
/// 2^32 ms, about 49.7 days. Facts mostly arrive in time order, so a commit rewrites a
/// person's latest bucket, not their whole history.
pub(crate) fn bucket_of(at: Timestamp) -> u32 {
    (((at.unix_millis() as u64) ^ (1 << 63)) >> 32) as u32
}

/// No bucket: nothing unsaved, nothing spilled.
const NO_BUCKET: u32 = u32::MAX;

/// Facts in (business time, event id) order once `refresh` has seen them.
#[derive(Debug)]
pub(crate) struct Facts {
    /// The facts in memory, in order: every fact when nothing is spilled; else the facts of
    /// buckets from `stored_below` on, and before them the facts of earlier buckets that
    /// arrived since the last commit (late facts, not stored yet).
    list: Vec<Fact>,
    /// Where [`Filters`] keeps this holder's filter, once the holder has a fact.
    slot: Option<u32>,
    /// The buckets before this one are in the store only (0: nothing spilled).
    stored_below: u32,
    /// The earliest bucket holding a fact not yet stored ([`NO_BUCKET`]: none).
    unsaved_from: u32,
    /// Set when facts of a person merged into this one are still only in the store: they are
    /// read back before the facts are read (`FunnelProjection::resolve_merges`).
    absorbing: bool,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            list: Vec::new(),
            slot: None,
            stored_below: 0,
            unsaved_from: NO_BUCKET,
            absorbing: false,
        }
    }
}

impl Facts {
    /// Adds a fact in (business time, event id) order. Facts mostly arrive in time order, so
    /// this is nearly always a push. The caller adds its id to the filter ([`Filters::add`]).
    pub(crate) fn insert_in_order(&mut self, fact: Fact) {
        self.make_room();
        self.unsaved_from = self.unsaved_from.min(bucket_of(fact.at));
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

    /// Grows a full list by an eighth instead of doubling it. The lists hold nearly all of a
    /// projection's memory, and they stop growing wherever a history ends: doubling leaves
    /// them about a quarter empty, an eighth's growth about a sixteenth. In exchange a fact
    /// is copied about nine times as its list grows instead of about twice (32 bytes each
    /// time), fewer where the allocator grows the block in place.
    fn make_room(&mut self) {
        let length = self.list.len();
        if length == self.list.capacity() {
            self.list.reserve_exact((length / 8).max(4));
        }
    }

    /// Takes another holder's facts and puts them all in order. The caller moves the other
    /// holder's filter over ([`Filters::take`], [`Filters::merge`]). The facts taken are
    /// unsaved here (they are stored under the other holder); what the other holder had
    /// spilled is read back later, when `absorbing` says so.
    pub(crate) fn absorb(&mut self, other: Facts) {
        if let Some(first) = other.list.first() {
            self.unsaved_from = self.unsaved_from.min(bucket_of(first.at));
        }
        self.absorbing |= other.stored_below > 0 || other.absorbing;
        self.list.extend(other.list);
        sort_facts(&mut self.list);
    }

    /// Adds facts read back from the store of a person merged into this one.
    pub(crate) fn absorb_stored(&mut self, facts: Vec<Fact>) {
        if let Some(first) = facts.first() {
            self.unsaved_from = self.unsaved_from.min(bucket_of(first.at));
        }
        self.list.extend(facts);
        sort_facts(&mut self.list);
    }

    /// Where the holder's filter is, once it has one.
    pub(crate) fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// Whether every fact is in memory (nothing spilled, nothing to read back from a merge).
    pub(crate) fn complete(&self) -> bool {
        self.stored_below == 0 && !self.absorbing
    }

    /// The buckets before this one are in the store only.
    pub(crate) fn stored_below(&self) -> u32 {
        self.stored_below
    }

    pub(crate) fn set_absorbing(&mut self, absorbing: bool) {
        self.absorbing = absorbing;
    }

    /// The facts in memory (all of them when [`complete`](Self::complete)).
    pub(crate) fn in_memory(&self) -> &[Fact] {
        &self.list
    }

    /// The distinct buckets of the facts in memory, in order.
    pub(crate) fn buckets(&self) -> Vec<u32> {
        let mut buckets: Vec<u32> = self.list.iter().map(|fact| bucket_of(fact.at)).collect();
        buckets.dedup();
        buckets
    }

    /// Whether some fact is not stored yet.
    pub(crate) fn unsaved(&self) -> bool {
        self.unsaved_from != NO_BUCKET
    }

    /// What a commit writes: the late facts (those before `stored_below`, which go into buckets
    /// only the store holds, to be merged with them), and the buckets in memory that changed,
    /// each as (bucket, its facts in memory).
    pub(crate) fn unsaved_buckets(&self) -> (Vec<Bucket<'_>>, Vec<Bucket<'_>>) {
        let late_end = self
            .list
            .partition_point(|fact| bucket_of(fact.at) < self.stored_below);
        let (late, resident) = self.list.split_at(late_end);
        let from = self.unsaved_from.max(self.stored_below);
        let changed_start = resident.partition_point(|fact| bucket_of(fact.at) < from);
        (
            group_by_bucket(late),
            group_by_bucket(&resident[changed_start..]),
        )
    }

    /// Marks everything stored once a commit has written [`unsaved_buckets`]: late facts are
    /// in their (spilled) buckets now, so they leave memory.
    pub(crate) fn mark_saved(&mut self) {
        let late_end = self
            .list
            .partition_point(|fact| bucket_of(fact.at) < self.stored_below);
        self.list.drain(..late_end);
        self.unsaved_from = NO_BUCKET;
    }

    /// Drops from memory every stored fact but the latest bucket's (where new facts mostly
    /// land). Only what is stored is dropped: nothing when a fact is unsaved or a merge is not
    /// read back yet. Returns how many facts left memory.
    pub(crate) fn spill(&mut self) -> usize {
        if self.unsaved() || self.absorbing {
            return 0;
        }
        let Some(last) = self.list.last() else {
            return 0;
        };
        let latest = bucket_of(last.at);
        let earlier = self
            .list
            .partition_point(|fact| bucket_of(fact.at) < latest);
        if earlier > 0 {
            self.list.drain(..earlier);
            self.list.shrink_to_fit();
        }
        self.stored_below = self.stored_below.max(latest);
        earlier
    }

    /// Facts as read back from the store, one bucket after another: with `keep_all`, every
    /// bucket stays in memory; otherwise only the latest, and the earlier ones count as
    /// spilled. Buckets must come in order.
    pub(crate) fn restore_bucket(&mut self, bucket: u32, facts: Vec<Fact>, keep_all: bool) {
        if keep_all {
            self.list.extend(facts);
        } else {
            if !self.list.is_empty() {
                self.stored_below = bucket;
            }
            self.list = facts;
        }
    }
}

/// One bucket's facts, as a commit writes them.
pub(crate) type Bucket<'a> = (u32, &'a [Fact]);

/// Facts in order, cut where their bucket changes.
fn group_by_bucket(facts: &[Fact]) -> Vec<Bucket<'_>> {
    facts
        .chunk_by(|a, b| bucket_of(a.at) == bucket_of(b.at))
        .map(|group| (bucket_of(group[0].at), group))
        .collect()
}

impl Serialize for Facts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Facts {
    /// The filter is rebuilt by [`Filters::rebuild`] once the holder is in place.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Facts {
            list: Vec::<Fact>::deserialize(deserializer)?,
            ..Facts::default()
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

    /// Names the holder of a filter built before the holder was known (facts read back from
    /// the store before their person).
    pub(crate) fn set_holder(&mut self, facts: &Facts, holder: Holder) {
        if let Some(slot) = facts.slot {
            self.holders[slot as usize] = Some(holder);
        }
    }

    /// Whether the holder's filter lets the id through: always when one of its facts has
    /// it, and now and then when none does.
    pub(crate) fn may_hold(&self, facts: &Facts, id: EventId) -> bool {
        self.filter_of(facts)
            .is_some_and(|filter| filter.may_hold(id))
    }

    /// Builds a holder's filter from its facts (facts read back from the store).
    pub(crate) fn rebuild(&mut self, facts: &mut Facts, holder: impl FnOnce() -> Holder) {
        let slot = self.slot_of(facts, holder);
        let mut filter = IdFilter::default();
        facts
            .list
            .iter()
            .for_each(|fact| filter.insert(fact.event_id));
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

    /// Whether one of the holder's facts has the id.
    pub(crate) fn holds(&self, facts: &Facts, id: EventId) -> bool {
        self.filter_of(facts)
            .is_some_and(|filter| filter.may_hold(id))
            && facts.list.iter().any(|fact| fact.event_id == id)
    }

    /// Whether one of the holder's facts has one of the ids.
    pub(crate) fn holds_any(&self, facts: &Facts, ids: &Targets) -> bool {
        self.filter_of(facts)
            .is_some_and(|filter| filter.may_hold_any(ids))
            && facts.list.iter().any(|fact| ids.contains(fact.event_id))
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
    fn a_holder_keeps_its_list_a_slot_and_its_buckets_only() {
        // The filter's 64 bytes live in `Filters` alone.
        assert_eq!(std::mem::size_of::<Facts>(), 48);
    }

    const BUCKET_MS: i64 = 1 << 32;

    #[test]
    fn buckets_follow_time_and_a_commit_writes_the_changed_ones() {
        let day = 86_400_000;
        let start = 1_767_225_600_000;
        assert!(bucket_of(Timestamp::from_unix_millis(start)) > 0);
        assert!(
            bucket_of(Timestamp::from_unix_millis(start))
                < bucket_of(Timestamp::from_unix_millis(start + BUCKET_MS))
        );
        let mut facts = Facts::default();
        // Five months, a fact a week: four buckets or so.
        for week in 0..22i64 {
            facts.insert_in_order(fact(week as u128 + 1, start + week * 7 * day));
        }
        let (late, changed) = facts.unsaved_buckets();
        assert!(late.is_empty());
        assert!(changed.len() >= 3, "{} buckets", changed.len());
        assert_eq!(changed.iter().map(|(_, f)| f.len()).sum::<usize>(), 22);
        let latest = changed.last().map(|(bucket, f)| (*bucket, f.len()));
        let (latest_bucket, latest_len) = latest.expect("buckets");
        facts.mark_saved();
        assert!(!facts.unsaved());
        let spilled = facts.spill();
        assert_eq!(spilled, 22 - latest_len);
        assert_eq!(facts.in_memory().len(), latest_len);
        assert_eq!(facts.stored_below(), latest_bucket);
        assert!(!facts.complete());

        // A new fact in the latest bucket rewrites that bucket alone; one in an early bucket is
        // late: it waits in memory for its bucket to be read back and merged.
        let last = facts.in_memory().last().expect("a fact").at.unix_millis();
        facts.insert_in_order(fact(100, last + 1));
        facts.insert_in_order(fact(101, start + 1));
        let (late, changed) = facts.unsaved_buckets();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].1.len(), 1);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0], (latest_bucket, &facts.in_memory()[1..]));
        drop((late, changed));
        facts.mark_saved();
        assert_eq!(
            facts.in_memory().len(),
            latest_len + 1,
            "the late fact left"
        );
        // Nothing unsaved is ever dropped.
        facts.insert_in_order(fact(102, last + 2));
        assert_eq!(facts.spill(), 0);
    }

    #[test]
    fn every_held_id_is_found_and_absent_ones_mostly_are_not() {
        let mut filters = Filters::default();
        let mut facts = Facts::default();
        for n in 0..40u128 {
            facts.insert_in_order(fact(n * 7919, 1_000 - n as i64));
            filters.add(&mut facts, id(n * 7919), person(1));
        }
        assert!(
            facts
                .in_memory()
                .is_sorted_by(|a, b| fact_order(a, b).is_le())
        );
        for n in 0..40u128 {
            assert!(filters.holds(&facts, id(n * 7919)), "fact {n} is held");
        }
        assert!(!filters.holds(&facts, id(3)));
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
        assert!(!filters.holds(&unslotted, id(5)));
    }

    #[test]
    fn targets_are_found_after_absorbing_and_reading_back() {
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
        assert_eq!(one.in_memory().first().map(|f| f.event_id), Some(id(2)));
        let mut targets = Targets::default();
        targets.insert(id(2));
        assert!(filters.holds_any(&one, &targets));
        // The holder merged away is no longer a candidate; the one that took its facts is.
        let candidates: Vec<_> = filters.candidates(&targets).collect();
        assert!(
            matches!(candidates.as_slice(), [Holder::Person(p)] if p == "p1"),
            "{candidates:?}"
        );

        let bytes =
            bincode::serde::encode_to_vec(&one, bincode::config::legacy()).expect("facts encode");
        let list_bytes = bincode::serde::encode_to_vec(&*one.list, bincode::config::legacy())
            .expect("facts encode");
        assert_eq!(bytes, list_bytes, "stored as the list alone");
        let (mut back, _): (Facts, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::legacy())
                .expect("facts encode");
        let mut restored = Filters::default();
        restored.rebuild(&mut back, person(1));
        assert_eq!(restored.filter_of(&back), filters.filter_of(&one));
        assert!(restored.holds_any(&back, &targets));
        let mut absent = Targets::default();
        absent.insert(id(99));
        assert!(!restored.holds_any(&back, &absent));

        // Past a few targets they move to a hash set, and are all still found.
        let mut many = Targets::default();
        for n in 100..200u128 {
            many.insert(id(n));
            many.insert(id(n));
        }
        assert!(!restored.holds_any(&back, &many));
        many.insert(id(1));
        assert!(restored.holds_any(&back, &many));
        assert!((100..200u128).all(|n| many.contains(id(n))));
        assert!(!many.contains(id(99)));
    }
}
