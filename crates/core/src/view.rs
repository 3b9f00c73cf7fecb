//! The funnel projection: a pure fold of the log (in log order) into every person's journey
//! under one definition, with identity stitching, traits, retractions and corrections, and the
//! shared-funnel summary computed from it.
//!
//! Applying events only records facts and marks people dirty; [`FunnelProjection::refresh`]
//! re-folds the dirty journeys (so a late fact lands where it belongs). Summaries read
//! refreshed journeys.

use crate::event::{Event, EventId, Kind, Payload};
use crate::funnel::{FunnelDefinition, Owner};
use crate::journey::{Fact, Journey, Place, Traits};
use crate::symbol::{AttributeTable, Symbols};
use crate::timestamp::Timestamp;
use facts::{Facts, Filters, Holder, Targets};
use serde::{Deserialize, Serialize};
use state::{FactFile, StateError, Unsaved};
use std::collections::BTreeMap;

pub(crate) mod attribution;
pub(crate) mod customer;
pub(crate) mod customer_accounts;
mod facts;
pub(crate) mod ledger;
pub(crate) mod lookalike;
pub(crate) mod marketing;
pub(crate) mod part;
pub(crate) mod report;
pub(crate) mod rows;
pub(crate) mod sales;
pub(crate) mod shared;
pub(crate) mod state;
pub(crate) mod totals;

// Folding hashes a person id or two per event; FxHash is several times cheaper than SipHash,
// and ids come from the log, where flooding a hash table gains an attacker nothing.
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;
type HashSet<K> = rustc_hash::FxHashSet<K>;
/// The tables folding looks up on nearly every event, by an id it holds as `&str`: hashbrown's
/// `entry_ref` finds or inserts with one hash, and allocates the key only when inserting
/// (the standard map needs a lookup and then an insert or a second lookup).
type ByIdMap<V> = hashbrown::HashMap<String, V, rustc_hash::FxBuildHasher>;

/// The value of the earliest (business time, event id) offered: settled by when it was true,
/// not by when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Earliest<T>(Option<(Timestamp, EventId, T)>);

impl<T> Default for Earliest<T> {
    fn default() -> Self {
        Earliest(None)
    }
}

impl<T> Earliest<T> {
    /// Keeps the value with the earliest (business time, event id).
    fn offer_earliest(&mut self, at: Timestamp, id: EventId, value: T) {
        if self.0.as_ref().is_none_or(|(a, i, _)| (at, id) < (*a, *i)) {
            self.0 = Some((at, id, value));
        }
    }

    fn get(&self) -> Option<&T> {
        self.0.as_ref().map(|(_, _, value)| value)
    }
}

/// Every value the events offered for one trait or link, in (business time, event id) order:
/// the value in effect is the latest whose event is not retracted, so retracting the event
/// that set a trait brings back the one before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Offers<T>(Vec<(Timestamp, EventId, T)>);

impl<T> Default for Offers<T> {
    fn default() -> Self {
        Offers(Vec::new())
    }
}

impl<T> Offers<T> {
    fn offer(&mut self, at: Timestamp, id: EventId, value: T) {
        let place = self.0.partition_point(|(a, i, _)| (*a, *i) < (at, id));
        if self
            .0
            .get(place)
            .is_some_and(|(a, i, _)| (*a, *i) == (at, id))
        {
            return; // The same event again (a merge of two ids it named).
        }
        self.0.insert(place, (at, id, value));
    }

    /// The value in effect: the latest offer whose event counts.
    fn current(&self, retracted: &HashSet<EventId>) -> Option<&T> {
        self.0
            .iter()
            .rev()
            .find(|(_, id, _)| !retracted.contains(id))
            .map(|(_, _, value)| value)
    }

    fn absorb(&mut self, other: Offers<T>) {
        for (at, id, value) in other.0 {
            self.offer(at, id, value);
        }
    }

    fn ids(&self) -> impl Iterator<Item = EventId> + '_ {
        self.0.iter().map(|(_, id, _)| *id)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Person {
    /// In (business time, event id) order, as recorded (before retractions and corrections),
    /// the latest in memory and the rest in the fact file (`view/facts.rs`).
    facts: Facts,
    /// Every explicit `linked_to_account`: the latest that counts is the person's account.
    linked_account: Offers<String>,
    /// Without an explicit link: the account on the person's earliest event that names one
    /// (retracted or not: a retraction takes a fact out, not where the person was seen).
    seen_account: Earliest<String>,
    title: Offers<String>,
    seniority: Offers<String>,
    department: Offers<String>,
    country: Offers<String>,
    /// The `person_updated` and `linked_to_account` events that named the person: while one
    /// of them counts, the person is in the views even without a fact.
    named_by: Vec<EventId>,
    /// Derived from the rest by `refresh`; not stored.
    #[serde(skip)]
    journey: Journey,
    /// What the views read of the facts, derived with the journey; not stored.
    #[serde(skip)]
    part: part::PersonPart,
    /// Set when the person's id went into the projection's dirty set, cleared when the refresh
    /// re-folds them (so set implies in the set; the set may hold ids another way too).
    #[serde(skip)]
    dirty: bool,
    /// Set once `refresh` has folded the journey: from then on the person counts in the views
    /// (and in the projection's totals, when it keeps them).
    #[serde(skip)]
    folded: bool,
}

impl Person {
    fn account(&self, retracted: &HashSet<EventId>) -> Option<&String> {
        self.linked_account
            .current(retracted)
            .or(self.seen_account.get())
    }

    /// Whether an event that is not a fact still names the person (see `named_by`).
    fn named(&self, retracted: &HashSet<EventId>) -> bool {
        self.named_by.iter().any(|id| !retracted.contains(id))
    }

    /// Adds a fact in (business time, event id) order. Facts mostly arrive in time order, so
    /// this is nearly always a push.
    fn record(&mut self, fact: Fact) {
        self.facts.insert_in_order(fact);
    }

    /// Takes another person's facts and traits (a merge).
    fn absorb(&mut self, other: Person) {
        self.facts.absorb(other.facts);
        self.linked_account.absorb(other.linked_account);
        if let Some((at, id, value)) = other.seen_account.0 {
            self.seen_account.offer_earliest(at, id, value);
        }
        self.title.absorb(other.title);
        self.seniority.absorb(other.seniority);
        self.department.absorb(other.department);
        self.country.absorb(other.country);
        for id in other.named_by {
            if !self.named_by.contains(&id) {
                self.named_by.push(id);
            }
        }
    }
}

/// Makes room for one more item in a full list by growing it an eighth (at least one).
fn grow_by_an_eighth<T>(list: &mut Vec<T>) {
    if list.len() == list.capacity() {
        list.reserve_exact((list.len() / 8).max(1));
    }
}

/// The order the views read facts in: business time, then event id.
fn fact_order(a: &Fact, b: &Fact) -> std::cmp::Ordering {
    a.at.cmp(&b.at).then(a.event_id.cmp(&b.event_id))
}

pub(crate) fn sort_facts(facts: &mut [Fact]) {
    facts.sort_by(fact_order);
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Account {
    employees: Offers<u32>,
    industry: Offers<String>,
    region: Offers<String>,
    /// Everyone ever linked to it (some may have moved on), by the person id the events named
    /// (each stands for its survivor through merges, so the list never changes with them):
    /// whom to re-fold when it changes.
    people: Vec<String>,
}

/// An anonymous visitor's facts and the people they were identified as.
///
/// A visitor's fact belongs to the person of the latest `identified` at or before the fact's
/// time, or, before any, to the first person identified (history before sign-up is stitched
/// back). That depends on business time only, so arrival order does not change it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Visitor {
    /// (time, event id, person), sorted.
    identities: Vec<(Timestamp, EventId, String)>,
    facts: Facts,
}

impl Visitor {
    /// Who the visitor stood for at `at`, by the identifications that count (a retracted
    /// `identified` stitches nothing).
    fn owner_at(&self, at: Timestamp, retracted: &HashSet<EventId>) -> Option<&str> {
        let counts = |identity: &&(Timestamp, EventId, String)| !retracted.contains(&identity.1);
        let later = self.identities.partition_point(|(time, _, _)| *time <= at);
        self.identities[..later]
            .iter()
            .rev()
            .find(counts)
            .or_else(|| self.identities[later..].iter().find(counts))
            .map(|(_, _, person)| person.as_str())
    }

    /// Everyone the visitor was ever identified as, retracted or not: whom a change to the
    /// visitor may concern.
    fn people(&self) -> impl Iterator<Item = &String> {
        self.identities.iter().map(|(_, _, person)| person)
    }

    /// The people the identifications that count name.
    fn owners<'a>(&'a self, retracted: &'a HashSet<EventId>) -> impl Iterator<Item = &'a String> {
        self.identities
            .iter()
            .filter(|(_, id, _)| !retracted.contains(id))
            .map(|(_, _, person)| person)
    }
}

/// A `merged` event as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MergeRecord {
    at: Timestamp,
    id: EventId,
    from: String,
    into: String,
}

/// The people merges joined into one: every merge that joined them, kept so that who
/// survives is decided by event time, whatever order the merges arrived in.
///
/// Taken in (business time, event id) order, each merge joins the person its `from` stands for
/// into the person its `into` stands for, unless they are one person already (a merge that
/// would close a cycle does nothing). The survivor is who is left.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MergeGroup {
    /// As they arrived.
    records: Vec<MergeRecord>,
    /// The latest (business time, event id) among them.
    latest: Option<(Timestamp, EventId)>,
    /// Set when a merge arrived after later merges of the group: the survivor it is kept
    /// under may not be the one the rule gives, until the next refresh or commit settles it.
    /// Never stored (a commit settles first).
    #[serde(skip)]
    unsettled: bool,
}

impl MergeGroup {
    fn push(&mut self, record: MergeRecord) {
        self.latest = self.latest.max(Some((record.at, record.id)));
        self.records.push(record);
    }

    fn join(&mut self, other: MergeGroup) {
        let (mut big, small) = if other.records.len() > self.records.len() {
            (other, std::mem::take(self))
        } else {
            (std::mem::take(self), other)
        };
        big.latest = big.latest.max(small.latest);
        big.unsettled |= small.unsettled;
        big.records.extend(small.records);
        *self = big;
    }

    /// Every person id the merges name, each once.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &String> {
        let mut seen = HashSet::default();
        self.records
            .iter()
            .flat_map(|record| [&record.from, &record.into])
            .filter(move |id| seen.insert(id.as_str()))
    }

    /// Who is left when the merges are taken in event-time order.
    fn survivor(&self) -> &str {
        let mut order: Vec<&MergeRecord> = self.records.iter().collect();
        order.sort_by_key(|record| (record.at, record.id));
        let mut parent: HashMap<&str, &str> = HashMap::default();
        for record in &order {
            let from = root(&parent, &record.from);
            let into = root(&parent, &record.into);
            if from != into {
                parent.insert(from, into);
            }
        }
        order
            .first()
            .map_or("", |record| root(&parent, &record.from))
    }
}

/// Where a chain of joins from `id` ends (joins never close a cycle).
fn root<'a>(parent: &HashMap<&'a str, &'a str>, mut id: &'a str) -> &'a str {
    while let Some(next) = parent.get(id) {
        id = next;
    }
    id
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Correction {
    occurred_at: Option<Timestamp>,
    replacement: Option<Payload>,
}

/// A close as reported; which close of an opportunity counts is decided when summarising.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Won {
    opportunity: String,
    at: Timestamp,
    amount: crate::event::Money,
}

/// A person's journey and what the views read of their facts, folded together.
type Folded = (Journey, part::PersonPart);

/// What a refresh makes of one person id.
// Nearly every refold is `Folded`: boxing it would allocate once per journey folded.
#[allow(clippy::large_enum_variant)]
enum Refold {
    /// Not a person here (merged into another since it was marked).
    Missing,
    /// Nothing that names them counts (every such event retracted): in no view.
    Hidden,
    Folded(Folded),
}

/// Whom an event that sets a trait or a link concerns.
#[derive(Debug, Clone, PartialEq)]
enum Shaped {
    /// A `person_updated` or `linked_to_account`, by the person id it named.
    Person(String),
    /// An `account_updated`.
    Account(String),
    /// An event of this account's ledger (`view/ledger.rs`).
    Ledger(String),
}

/// Every journey under one definition, built from the log.
#[derive(Debug)]
pub struct FunnelProjection {
    definition: FunnelDefinition,
    /// Boxed: a person is several hundred bytes, and the table moves its entries every time it
    /// grows (at a million events a quarter of the fold went to copying them and faulting in
    /// the pages of the bigger table).
    people: ByIdMap<Box<Person>>,
    visitors: HashMap<String, Visitor>,
    /// The visitors each person was identified from, sorted (so the list is the same whatever
    /// path merges took to it).
    visitors_of: HashMap<String, Vec<String>>,
    /// Every person id merged into another → the survivor it stands for now (never a chain:
    /// a change of survivor re-points the whole group).
    merged_into: HashMap<String, String>,
    /// The merges of each group of people joined by them, by the group's survivor.
    merges: HashMap<String, MergeGroup>,
    /// Groups (by the survivor they are kept under) that may be unsettled; see `settle`.
    unsettled: Vec<String>,
    accounts: ByIdMap<Account>,
    /// Each account's subscription events, usage summaries and the referrals naming it
    /// (`view/ledger.rs`).
    ledgers: ByIdMap<ledger::AccountLedger>,
    /// Ledgers whose part is to be worked out again at the next refresh.
    dirty_ledgers: HashSet<String>,
    /// The best customers' profile, kept for a definition whose fit reads it
    /// (`view/lookalike.rs`). Not stored: a restore reads every ledger again.
    lookalike: lookalike::Lookalike,
    /// Accounts whose ledger holds a referral: the person it names may come to stand for
    /// another through a merge. Not stored: a restore rebuilds it from the ledgers.
    referred_accounts: HashSet<String>,
    /// The events that do not count: targets of retractions in effect.
    retracted: HashSet<EventId>,
    /// Every retraction's target, by the retraction's id: a retraction that is itself
    /// retracted stops taking effect, and its target counts again.
    retractions: HashMap<EventId, EventId>,
    corrections: HashMap<EventId, Correction>,
    /// The events that set a trait or a link, by id, with whom they concern: whose journeys
    /// to re-fold when one is retracted or counts again. Not stored: a restore rebuilds it
    /// from the people and accounts.
    shapers: HashMap<EventId, Shaped>,
    /// Targets whose retraction took effect or was undone since the last refresh: an
    /// `identified` among them changes whose facts its visitor's are.
    reidentify: Targets,
    /// Every `opportunity_closed_won`, by event id. Revenue counts each opportunity once, by
    /// its earliest close (business time, then id) that is not retracted, with corrections
    /// applied: the same whatever order the closes, retractions and corrections arrived in.
    wins: HashMap<EventId, Won>,
    dirty: HashSet<String>,
    /// Set when the state was restored: the next refresh re-folds everyone.
    refold_all: bool,
    /// How many threads a large refresh may fold journeys on (see `with_refresh_threads`).
    refresh_threads: std::num::NonZeroUsize,
    /// Retraction and correction targets whose holder is not known yet (see `dirty_target`).
    unplaced_targets: Targets,
    /// Every person's and visitor's id filter, side by side, for the pass that places them.
    filters: Filters,
    events: u64,
    /// The latest business time seen: "now" for clocks still running.
    latest: Option<Timestamp>,
    /// What changed since the projector last stored the state; `None` when nobody stores it.
    unsaved: Option<Unsaved>,
    /// The strings facts refer to by symbol.
    symbols: Symbols,
    /// The sets of attributes facts refer to by id.
    attributes: AttributeTable,
    /// The views' aggregates, built by the first build of the views and kept up to date by
    /// every refresh after it, so a build costs what changed (`view/totals.rs`).
    totals: std::sync::OnceLock<Box<totals::Totals>>,
    /// Where a commit writes facts to and a refresh reads them back from.
    file: std::sync::Arc<dyn FactFile>,
    /// How many facts a holder keeps in memory before a commit writes them to `file`.
    spill_at: usize,
}

/// How many facts a holder of a projection that stores its state keeps in memory before a
/// commit writes them to the fact file: at 32 bytes a fact, about a kilobyte per person at
/// most, and a run read back brings a few dozen facts.
pub const SPILL_AT: usize = 32;

impl FunnelProjection {
    pub fn new(definition: FunnelDefinition) -> Self {
        FunnelProjection {
            definition,
            people: ByIdMap::default(),
            visitors: HashMap::default(),
            visitors_of: HashMap::default(),
            merged_into: HashMap::default(),
            merges: HashMap::default(),
            unsettled: Vec::new(),
            accounts: ByIdMap::default(),
            ledgers: ByIdMap::default(),
            dirty_ledgers: HashSet::default(),
            referred_accounts: HashSet::default(),
            lookalike: lookalike::Lookalike::default(),
            retracted: HashSet::default(),
            retractions: HashMap::default(),
            corrections: HashMap::default(),
            shapers: HashMap::default(),
            reidentify: Targets::default(),
            wins: HashMap::default(),
            dirty: HashSet::default(),
            refold_all: false,
            refresh_threads: std::num::NonZeroUsize::MIN,
            unplaced_targets: Targets::default(),
            filters: Filters::default(),
            events: 0,
            latest: None,
            unsaved: None,
            symbols: Symbols::default(),
            attributes: AttributeTable::default(),
            totals: std::sync::OnceLock::new(),
            file: std::sync::Arc::new(state::MemoryFactFile::default()),
            spill_at: SPILL_AT,
        }
    }

    /// A projection that writes its facts to `file` at each commit and reads them back from
    /// it: the projector's, with the file beside the view's entries.
    pub fn with_fact_file(mut self, file: std::sync::Arc<dyn FactFile>) -> Self {
        self.file = file;
        self
    }

    /// Sets how many facts a holder keeps in memory before a commit writes them to the fact
    /// file ([`SPILL_AT`] unless set; at least one). Tests set it low to write many runs.
    pub fn with_spill_at(mut self, facts: usize) -> Self {
        self.spill_at = facts.max(1);
        self
    }

    /// The file the projection's commits write facts to.
    pub fn fact_file(&self) -> &std::sync::Arc<dyn FactFile> {
        &self.file
    }

    pub fn definition(&self) -> &FunnelDefinition {
        &self.definition
    }

    /// The strings the facts' attributes refer to.
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    fn touch_person(&mut self, id: &str) -> &mut Person {
        if let Some(unsaved) = &mut self.unsaved {
            Unsaved::mark(&mut unsaved.people, id);
        }
        let person = self.people.entry_ref(id).or_default();
        // Most events are about someone already known and dirty: no second lookup for them.
        if !person.dirty {
            person.dirty = true;
            self.dirty.insert(id.to_owned());
        }
        person
    }

    /// Records a fact of a (canonical) person and keeps their filter's copy in step.
    fn record_fact(&mut self, person: &str, fact: Fact) {
        let id = fact.event_id;
        let holder = self.touch_person(person);
        holder.record(fact);
        match holder.facts.slot() {
            Some(slot) => self.filters.add_at(slot, id),
            // The person's first fact: a second lookup, once per person.
            None => {
                if let Some(holder) = self.people.get_mut(person) {
                    self.filters
                        .add(&mut holder.facts, id, || Holder::Person(person.to_owned()));
                }
            }
        }
    }

    /// The id a person id stands for now, following merges. Borrows `id` when it was never
    /// merged (nearly always), so folding allocates nothing for it.
    fn canonical<'a>(&self, id: &'a str) -> std::borrow::Cow<'a, str> {
        match self.merged_into.get(id) {
            Some(survivor) => std::borrow::Cow::Owned(survivor.clone()),
            None => std::borrow::Cow::Borrowed(id),
        }
    }

    fn canonical_owned(&self, id: &str) -> String {
        self.canonical(id).into_owned()
    }

    fn note_account_member(&mut self, account: &str, person: &str) {
        let entry = self.accounts.entry_ref(account).or_default();
        if !entry.people.iter().any(|p| p == person) {
            entry.people.push(person.to_owned());
            if let Some(unsaved) = &mut self.unsaved {
                Unsaved::mark(&mut unsaved.accounts, account);
            }
        }
    }

    /// The person an event is about: its `person_id`, or the person its `anonymous_id` stood
    /// for at the event's time. `None` for an anonymous visitor never identified.
    fn person_of(&self, event: &Event) -> Option<String> {
        if let Some(person) = &event.identity.person_id {
            return Some(self.canonical_owned(person));
        }
        let anonymous = event.identity.anonymous_id.as_ref()?;
        self.visitors
            .get(anonymous)?
            .owner_at(event.occurred_at, &self.retracted)
            .map(|person| self.canonical_owned(person))
    }

    fn dirty_visitor(&mut self, anonymous: &str) {
        if let Some(visitor) = self.visitors.get(anonymous) {
            let people: Vec<String> = visitor.people().map(|p| self.canonical_owned(p)).collect();
            self.dirty.extend(people);
        }
    }

    /// Marks dirty the journeys a governance event's target fact belongs to. The envelope
    /// says whose fact it is; when it names nobody, or the fact is not where it says (a wrong
    /// identity, or a target not on the log yet), the target is looked for among everyone's
    /// facts at the next refresh. A target not found anywhere needs nothing: when it arrives,
    /// its journey is re-folded with the retraction or correction already known.
    fn dirty_target(&mut self, event: &Event, target: EventId) {
        let Some(person) = self.person_of(event) else {
            self.unplaced_targets.insert(target);
            return;
        };
        if let Some(holder) = self.people.get(&person)
            && self.filters.may_hold(&holder.facts, target)
        {
            self.dirty.insert(person);
            return;
        }
        // A visitor's fact: whoever it is stitched to may change (a corrected time can move it
        // to the person the visitor stood for at that time).
        let visitor = self
            .visitors_of
            .get(&person)
            .into_iter()
            .flatten()
            .find(|anonymous| {
                self.visitors
                    .get(*anonymous)
                    .is_some_and(|v| self.filters.may_hold(&v.facts, target))
            })
            .cloned();
        match visitor {
            Some(anonymous) => self.dirty_visitor(&anonymous),
            None => {
                self.unplaced_targets.insert(target);
            }
        }
    }

    /// Makes `target` stop counting. When it is a retraction, that retraction stops taking
    /// effect: its own target counts again (unless another retraction in effect holds it).
    /// The target's holder is marked dirty by the caller for the direct target, here for the
    /// ones further down a chain.
    fn retract(&mut self, target: EventId, depth: usize) {
        if depth > MAX_RETRACTION_CHAIN || !self.retracted.insert(target) {
            return;
        }
        if let Some(unsaved) = &mut self.unsaved {
            unsaved.retracted.push(target);
        }
        if depth > 0 {
            self.unplaced_targets.insert(target);
        }
        self.reshape(target);
        if let Some(&undone) = self.retractions.get(&target) {
            self.unretract(undone, depth + 1);
        }
    }

    /// Makes `target` count again, unless a retraction still in effect holds it; when it is a
    /// retraction, its own target stops counting again.
    fn unretract(&mut self, target: EventId, depth: usize) {
        if depth > MAX_RETRACTION_CHAIN || !self.retracted.contains(&target) {
            return;
        }
        let held = self
            .retractions
            .iter()
            .any(|(retraction, held)| *held == target && !self.retracted.contains(retraction));
        if held {
            return;
        }
        self.retracted.remove(&target);
        if let Some(unsaved) = &mut self.unsaved {
            unsaved.retracted.push(target);
        }
        self.unplaced_targets.insert(target);
        self.reshape(target);
        if let Some(&resumed) = self.retractions.get(&target) {
            self.retract(resumed, depth + 1);
        }
    }

    /// Marks an account's ledger to be read again, and, when the definition has customer
    /// stages, the journeys of the account's people, which its events may move.
    fn dirty_ledger(&mut self, account: &str) {
        self.dirty_ledgers.insert(account.to_owned());
        if self.definition.customer_from().is_some()
            && let Some(entry) = self.accounts.get(account)
        {
            // Only a journey past the sale reads the ledger; one that gets there later reads
            // it when it is folded then.
            let people: Vec<String> = entry
                .people
                .iter()
                .map(|person| self.canonical_owned(person))
                .filter(|person| {
                    self.people
                        .get(person)
                        .is_some_and(|held| self.customer_since(&held.journey).is_some())
                })
                .collect();
            self.dirty.extend(people);
        }
    }

    /// The map of events that set traits and links, from the people and accounts (a restore).
    fn rebuild_shapers(&mut self) {
        for (id, person) in &self.people {
            for event in &person.named_by {
                self.shapers.insert(*event, Shaped::Person(id.clone()));
            }
        }
        for (id, account) in &self.accounts {
            let events = account
                .employees
                .ids()
                .chain(account.industry.ids())
                .chain(account.region.ids());
            for event in events {
                self.shapers.insert(event, Shaped::Account(id.clone()));
            }
        }
        for (id, ledger) in &self.ledgers {
            for event in ledger.ids() {
                self.shapers.insert(event, Shaped::Ledger(id.clone()));
            }
            if ledger
                .events
                .iter()
                .any(|event| matches!(event.payload, Payload::Advocated { .. }))
            {
                self.referred_accounts.insert(id.clone());
            }
        }
    }

    /// Marks dirty whom a target that stopped counting, or counts again, concerns beyond the
    /// holder of its fact: the person or account a trait or link set, and (at the next
    /// refresh, see `place_identities`) everyone a visitor an `identified` stitched stands for.
    fn reshape(&mut self, target: EventId) {
        self.reidentify.insert(target);
        match self.shapers.get(&target) {
            Some(Shaped::Person(person)) => {
                let person = self.canonical_owned(person);
                self.dirty.insert(person);
            }
            Some(Shaped::Account(account)) => {
                let people: Vec<String> = self
                    .accounts
                    .get(account)
                    .into_iter()
                    .flat_map(|account| &account.people)
                    .map(|person| self.canonical_owned(person))
                    .collect();
                self.dirty.extend(people);
                if self.ledgers.contains_key(account) {
                    self.dirty_ledgers.insert(account.clone());
                }
            }
            Some(Shaped::Ledger(account)) => {
                let account = account.clone();
                self.dirty_ledger(&account);
            }
            None => {}
        }
    }

    /// Marks dirty everyone a visitor stands for when one of its identifications stopped
    /// counting or counts again: the visitor's facts move between people. The `identified`
    /// fact is held by the person it named, so only the visitors of the people whose id
    /// filters may hold a target are looked at.
    fn place_identities(&mut self) {
        if self.reidentify.is_empty() {
            return;
        }
        let targets = std::mem::take(&mut self.reidentify);
        let mut visitors = Vec::new();
        for holder in self.filters.candidates(&targets) {
            let Holder::Person(id) = holder else {
                continue;
            };
            for anonymous in self.visitors_of.get(id).into_iter().flatten() {
                if self.visitors.get(anonymous).is_some_and(|visitor| {
                    visitor
                        .identities
                        .iter()
                        .any(|(_, event, _)| targets.contains(*event))
                }) {
                    visitors.push(anonymous.clone());
                }
            }
        }
        for anonymous in visitors {
            self.dirty_visitor(&anonymous);
        }
    }

    /// Finds the holders of governance targets the envelopes did not place, in one pass over
    /// every holder's id filter (reading the facts of those that match), and marks their
    /// journeys dirty.
    fn place_targets(&mut self) -> Result<(), StateError> {
        if self.unplaced_targets.is_empty() {
            return Ok(());
        }
        // The filters, side by side, turn most holders away without touching them.
        let targets = std::mem::take(&mut self.unplaced_targets);
        let mut people = Vec::new();
        let mut visitors = Vec::new();
        let everyone = self.refold_all;
        let file = &*self.file;
        for holder in self.filters.candidates(&targets) {
            match holder {
                Holder::Person(id) => {
                    // Whoever is re-folded anyway needs no search (at the end of a replay,
                    // everyone).
                    if everyone || self.dirty.contains(id) {
                        continue;
                    }
                    let Some(person) = self.people.get(id) else {
                        continue;
                    };
                    if self.filters.holds_any(&person.facts, &targets, file, id)? {
                        people.push(id.clone());
                    }
                }
                Holder::Visitor(id) => {
                    let Some(visitor) = self.visitors.get(id) else {
                        continue;
                    };
                    if self.filters.holds_any(&visitor.facts, &targets, file, id)? {
                        visitors.push(id.clone());
                    }
                }
            }
        }
        self.dirty.extend(people);
        for anonymous in visitors {
            self.dirty_visitor(&anonymous);
        }
        Ok(())
    }

    /// Joins the people a merge names: moves `from`'s person into `into`'s. That is who the
    /// rule makes survive when the merge is later in time than every merge of the groups it
    /// joins (nearly always), or when no merge named its `from` before. Otherwise the group
    /// is marked unsettled, and `settle` decides the survivor again from all its merges at the
    /// next refresh or commit: once for however many such merges arrived in between.
    fn merge(&mut self, record: MergeRecord) {
        if record.from == record.into {
            return; // Says nothing.
        }
        // A referral names its person as the event did: who that stands for may change.
        self.dirty_ledgers
            .extend(self.referred_accounts.iter().cloned());
        let old_from = self.canonical_owned(&record.from);
        let old_into = self.canonical_owned(&record.into);
        let mut group = self.merges.remove(&old_into).unwrap_or_default();
        // Who stands for whom changes for these ids only.
        let mut moved: Vec<String> = Vec::new();
        // Whether `from` is named by no merge yet (an id merged away stands for a survivor,
        // and a survivor of merges has a group): joined whenever, it is a leaf no later merge
        // goes through, so it cannot change who survives (a duplicate merged into its record,
        // the common case, costs the same in any order).
        let mut fresh_from = false;
        if old_from != old_into {
            let absorbed = self.merges.remove(&old_from).unwrap_or_default();
            fresh_from = absorbed.records.is_empty();
            moved.extend(absorbed.ids().cloned());
            moved.push(old_from.clone());
            group.join(absorbed);
        }
        let in_time_order = group
            .latest
            .is_none_or(|latest| latest < (record.at, record.id));
        group.push(record);
        let newly = !(in_time_order || fresh_from || group.unsettled);
        group.unsettled |= newly;
        if group.unsettled && (newly || old_from != old_into) {
            // Listed under its key from now on (an unsettled group joined into another is
            // listed under its old key too, which `settle` then skips).
            self.unsettled.push(old_into.clone());
        }
        self.keep_group(&old_from, old_into, group, moved);
    }

    /// Keeps `group` under `survivor`: moves what `absorbed` held there (when it is someone
    /// else), and makes every id in `ids` stand for `survivor`.
    fn keep_group(
        &mut self,
        absorbed: &str,
        survivor: String,
        group: MergeGroup,
        ids: Vec<String>,
    ) {
        if absorbed != survivor {
            self.rehome(absorbed, &survivor);
        }
        for id in ids {
            if id == survivor {
                self.merged_into.remove(&id);
            } else {
                self.merged_into.insert(id, survivor.clone());
            }
        }
        if let Some(unsaved) = &mut self.unsaved {
            Unsaved::mark(&mut unsaved.merged, absorbed);
            Unsaved::mark(&mut unsaved.merged, &survivor);
        }
        self.merges.insert(survivor, group);
    }

    /// Gives each unsettled group the survivor the rule gives, from all its merges taken in
    /// event-time order, and moves everyone to them.
    fn settle(&mut self) {
        for key in std::mem::take(&mut self.unsettled) {
            let Some(group) = self.merges.get_mut(&key) else {
                continue; // Joined into another group since: listed under that one's key.
            };
            if !group.unsettled {
                continue;
            }
            group.unsettled = false;
            let survivor = group.survivor().to_owned();
            if survivor == key {
                continue;
            }
            let group = self.merges.remove(&key).expect("looked up above");
            let ids: Vec<String> = group.ids().cloned().collect();
            self.keep_group(&key, survivor, group, ids);
        }
    }

    /// Moves everything held under a person who no longer survives a merge to the survivor.
    fn rehome(&mut self, from: &str, into: &str) {
        if let Some(unsaved) = &mut self.unsaved {
            // The absorbed person's entries go; the survivor's are rewritten.
            Unsaved::mark(&mut unsaved.people, from);
            Unsaved::mark(&mut unsaved.visitors_of, from);
            Unsaved::mark(&mut unsaved.visitors_of, into);
        }
        self.take_back_attribution(from, None);
        if let Some(absorbed) = self.people.remove(from) {
            self.dirty.remove(from);
            if let Some(totals) = self.totals.get_mut()
                && absorbed.folded
            {
                totals.person(&self.definition, &record_of(from, &absorbed), -1);
                if let Some(rows) = totals.rows.get_mut() {
                    rows.remove(from);
                }
            }
            let absorbed_filter = self.filters.take(&absorbed.facts);
            self.touch_person(into).absorb(*absorbed);
            if let Some(holder) = self.people.get_mut(into) {
                self.filters.merge(&mut holder.facts, absorbed_filter, || {
                    Holder::Person(into.to_owned())
                });
            }
        }
        if let Some(visitors) = self.visitors_of.remove(from) {
            let entry = self.visitors_of.entry(into.to_owned()).or_default();
            for anonymous in visitors {
                if let Err(at) = entry.binary_search(&anonymous) {
                    entry.insert(at, anonymous);
                }
            }
            self.dirty.insert(into.to_owned());
        }
    }

    /// Applies one event from the log.
    pub fn apply(&mut self, event: &Event) {
        self.events += 1;
        self.latest = self.latest.max(Some(event.occurred_at));
        if let Some(account) = &event.identity.account_id
            && let Some(person) = &event.identity.person_id
        {
            let canonical = self.canonical(person);
            self.touch_person(&canonical).seen_account.offer_earliest(
                event.occurred_at,
                event.event_id,
                account.clone(),
            );
            self.note_account_member(account, person);
        }
        if let Some(account) =
            ledger::AccountLedger::account_of(&event.payload, event.identity.account_id.as_ref())
        {
            self.ledgers
                .entry_ref(account.as_str())
                .or_default()
                .insert(ledger::LedgerEvent {
                    at: event.occurred_at,
                    id: event.event_id,
                    person: event.identity.person_id.clone(),
                    payload: event.payload.clone(),
                });
            self.shapers
                .insert(event.event_id, Shaped::Ledger(account.clone()));
            if matches!(event.payload, Payload::Advocated { .. }) {
                self.referred_accounts.insert(account.clone());
            }
            if let Some(unsaved) = &mut self.unsaved {
                Unsaved::mark(&mut unsaved.ledgers, account);
            }
            self.dirty_ledger(account);
        }
        match &event.payload {
            Payload::Identified {
                anonymous_id,
                person_id,
            } => {
                let visitor = self.visitors.entry(anonymous_id.clone()).or_default();
                let entry = (event.occurred_at, event.event_id, person_id.clone());
                let at = visitor
                    .identities
                    .partition_point(|e| (e.0, e.1) < (entry.0, entry.1));
                // Nearly every visitor is identified once and every person from one or two
                // visitors: room for about an eighth more, not the four a first push makes
                // (and not one at a time, which a visitor identified thousands of times would
                // pay for quadratically).
                grow_by_an_eighth(&mut visitor.identities);
                visitor.identities.insert(at, entry);
                let person = self.canonical_owned(person_id);
                let visitors = self.visitors_of.entry(person.clone()).or_default();
                if let Err(at) = visitors.binary_search(anonymous_id) {
                    grow_by_an_eighth(visitors);
                    visitors.insert(at, anonymous_id.clone());
                }
                if let Some(unsaved) = &mut self.unsaved {
                    Unsaved::mark(&mut unsaved.visitors, anonymous_id);
                    Unsaved::mark(&mut unsaved.visitors_of, &person);
                }
                // Everyone this visitor stood for may gain or lose facts.
                self.dirty_visitor(anonymous_id);
                // Being identified is itself a fact of the person's journey.
                let fact = Fact::from_event(event, &mut self.symbols, &mut self.attributes);
                self.record_fact(&person, fact);
                return;
            }
            Payload::LinkedToAccount {
                person_id,
                account_id,
            } => {
                let person = self.canonical_owned(person_id);
                let holder = self.touch_person(&person);
                holder
                    .linked_account
                    .offer(event.occurred_at, event.event_id, account_id.clone());
                holder.named_by.push(event.event_id);
                self.shapers
                    .insert(event.event_id, Shaped::Person(person_id.clone()));
                self.note_account_member(account_id, person_id);
                return;
            }
            Payload::Merged {
                from_person_id,
                into_person_id,
            } => {
                self.merge(MergeRecord {
                    at: event.occurred_at,
                    id: event.event_id,
                    from: from_person_id.clone(),
                    into: into_person_id.clone(),
                });
                return;
            }
            Payload::AccountUpdated {
                industry,
                employees,
                region,
                ..
            } => {
                if let Some(account_id) = &event.identity.account_id {
                    let (at, id) = (event.occurred_at, event.event_id);
                    if let Some(unsaved) = &mut self.unsaved {
                        Unsaved::mark(&mut unsaved.accounts, account_id);
                    }
                    if employees.is_some() || industry.is_some() || region.is_some() {
                        self.shapers.insert(id, Shaped::Account(account_id.clone()));
                    }
                    let account = self.accounts.entry(account_id.clone()).or_default();
                    if let Some(employees) = employees {
                        account.employees.offer(at, id, *employees);
                    }
                    if let Some(industry) = industry {
                        account.industry.offer(at, id, industry.clone());
                    }
                    if let Some(region) = region {
                        account.region.offer(at, id, region.clone());
                    }
                    let people = account.people.clone();
                    let people: Vec<String> =
                        people.iter().map(|p| self.canonical_owned(p)).collect();
                    self.dirty.extend(people);
                    if self.ledgers.contains_key(account_id) {
                        self.dirty_ledgers.insert(account_id.clone());
                    }
                }
                return;
            }
            Payload::PersonUpdated {
                title,
                seniority,
                department,
                country,
            } => {
                if let Some(person_id) = &event.identity.person_id {
                    let (at, id) = (event.occurred_at, event.event_id);
                    self.shapers.insert(id, Shaped::Person(person_id.clone()));
                    let person_id = self.canonical_owned(person_id);
                    let person = self.touch_person(&person_id);
                    person.named_by.push(id);
                    for (slot, value) in [
                        (&mut person.title, title),
                        (&mut person.seniority, seniority),
                        (&mut person.department, department),
                        (&mut person.country, country),
                    ] {
                        if let Some(value) = value {
                            slot.offer(at, id, value.clone());
                        }
                    }
                }
                return;
            }
            Payload::Retracted { target, .. } => {
                self.retractions.insert(event.event_id, *target);
                if let Some(unsaved) = &mut self.unsaved {
                    unsaved.retractions.push(event.event_id);
                }
                // A retraction already retracted (its own retraction came first) takes no
                // effect; otherwise its target stops counting.
                if !self.retracted.contains(&event.event_id) && !self.retracted.contains(target) {
                    self.dirty_target(event, *target);
                    self.retract(*target, 0);
                }
                return;
            }
            Payload::Corrected {
                target,
                occurred_at,
                replacement,
                ..
            } => {
                if let Some(replacement) = replacement {
                    crate::journey::intern_payload(replacement, &mut self.symbols);
                }
                self.corrections.insert(
                    *target,
                    Correction {
                        occurred_at: *occurred_at,
                        replacement: replacement.as_deref().cloned(),
                    },
                );
                if let Some(unsaved) = &mut self.unsaved {
                    unsaved.corrections.push(*target);
                }
                if let Some(Shaped::Ledger(account)) = self.shapers.get(target) {
                    let account = account.clone();
                    self.dirty_ledger(&account);
                }
                self.dirty_target(event, *target);
                return;
            }
            Payload::OpportunityClosedWon { amount } => {
                if let Some(opportunity) = &event.opportunity_id {
                    self.wins.insert(
                        event.event_id,
                        Won {
                            opportunity: opportunity.clone(),
                            at: event.occurred_at,
                            amount: amount.clone(),
                        },
                    );
                    if let Some(unsaved) = &mut self.unsaved {
                        unsaved.wins.push(event.event_id);
                    }
                }
            }
            _ => {}
        }
        if !Fact::applies_to_journeys(event.kind()) {
            return;
        }
        let fact = Fact::from_event(event, &mut self.symbols, &mut self.attributes);
        if let Some(person) = &event.identity.person_id {
            let person = self.canonical(person);
            self.record_fact(&person, fact);
        } else if let Some(anonymous) = &event.identity.anonymous_id {
            let visitor = self.visitors.entry(anonymous.clone()).or_default();
            let id = fact.event_id;
            visitor.facts.push(fact);
            self.filters.add(&mut visitor.facts, id, || {
                Holder::Visitor(anonymous.clone())
            });
            if let Some(unsaved) = &mut self.unsaved {
                Unsaved::mark(&mut unsaved.visitors, anonymous);
            }
            self.dirty_visitor(anonymous);
        }
        // An account-only touch has no person journey; account views count it.
    }

    /// Lets a large refresh (thousands of journeys: the end of a replay, a restore) fold on up
    /// to `threads` threads. Each journey is folded from state the refresh only reads, so the
    /// result is the same on any number of threads; refreshes of a few journeys (a live
    /// commit) stay on the calling thread, where starting threads would cost more than it saves.
    pub fn with_refresh_threads(mut self, threads: std::num::NonZeroUsize) -> Self {
        self.refresh_threads = threads;
        self
    }

    /// Re-folds every journey whose facts or traits changed since the last refresh.
    ///
    /// # Panics
    /// When facts cannot be read back from the fact file, which only a projection given one
    /// on disk ([`with_fact_file`](Self::with_fact_file)) can meet: the projector calls
    /// [`try_refresh`](Self::try_refresh) instead.
    pub fn refresh(&mut self) {
        if let Err(error) = self.try_refresh() {
            panic!("refreshing the projection: {error}");
        }
    }

    /// Re-folds every journey whose facts or traits changed since the last refresh, reading
    /// back from the fact file the facts commits wrote there.
    pub fn try_refresh(&mut self) -> Result<(), StateError> {
        /// Below this many journeys a refresh stays on one thread.
        const PARALLEL_FROM: usize = 4_096;
        self.settle();
        self.place_identities();
        self.place_targets()?;
        if self.refold_all {
            self.dirty_ledgers.extend(self.ledgers.keys().cloned());
        }
        if self.definition.reads_lookalike() {
            self.settle_lookalike();
        }
        let dirty: Vec<String> = if std::mem::take(&mut self.refold_all) {
            self.dirty.clear();
            self.people.keys().cloned().collect()
        } else {
            self.dirty.drain().collect()
        };
        let threads = self.refresh_threads.get();
        if threads == 1 || dirty.len() < PARALLEL_FROM {
            for id in dirty {
                let refold = self.fold_person(&id)?;
                self.store(&id, refold);
            }
            self.settle_totals();
            return Ok(());
        }
        // In rounds, so that only a round's new journeys wait beside the old ones.
        for round in dirty.chunks(PARALLEL_FROM * 8) {
            let this = &*self;
            type Round<'a> = Result<Vec<(&'a String, Refold)>, StateError>;
            let folded: Vec<Round> = std::thread::scope(|scope| {
                let workers: Vec<_> = round
                    .chunks(round.len().div_ceil(threads))
                    .map(|ids| {
                        scope.spawn(move || {
                            ids.iter()
                                .map(|id| Ok((id, this.fold_person(id)?)))
                                .collect::<Round>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|worker| match worker.join() {
                        Ok(folded) => folded,
                        Err(panic) => std::panic::resume_unwind(panic),
                    })
                    .collect()
            });
            for worker in folded {
                for (id, refold) in worker? {
                    self.store(id, refold);
                }
            }
        }
        self.settle_totals();
        Ok(())
    }

    fn store(&mut self, id: &str, refold: Refold) {
        let (journey, part) = match refold {
            Refold::Missing => return,
            Refold::Hidden => return self.hide(id),
            Refold::Folded(folded) => folded,
        };
        self.take_back_attribution(id, Some((part.account.as_deref(), part.opportunities())));
        // The row as folded, worked out before the person is borrowed to store it.
        let keeps_rows = self
            .totals
            .get()
            .is_some_and(|totals| totals.rows.get().is_some());
        let row = keeps_rows.then(|| {
            self.person_row(&report::PersonRecord {
                id,
                account: part.account.as_deref(),
                journey: &journey,
                part: &part,
            })
        });
        let Some((id, person)) = self.people.get_key_value_mut(id) else {
            return;
        };
        let mut totals = self.totals.get_mut();
        if let Some(totals) = totals.as_deref_mut()
            && person.folded
        {
            totals.person(&self.definition, &record_of(id, person), -1);
        }
        person.journey = journey;
        person.part = part;
        person.dirty = false;
        person.folded = true;
        if let Some(totals) = totals {
            totals.person(&self.definition, &record_of(id, person), 1);
            if let (Some(row), Some(rows)) = (row, totals.rows.get_mut()) {
                rows.upsert(row);
            }
        }
    }

    /// Takes the attribution credit of the opportunities that read a person out of the
    /// roll-ups before the person changes: as folded before, and as `after` (the new fold's
    /// account and opportunities) will have them.
    fn take_back_attribution(
        &mut self,
        id: &str,
        after: Option<(Option<&str>, Vec<crate::symbol::Symbol>)>,
    ) {
        let Some(totals) = self.totals.get_mut() else {
            return;
        };
        let people = &self.people;
        let before = people
            .get(id)
            .filter(|person| person.folded)
            .map(|person| (person.part.account.as_deref(), person.part.opportunities()));
        let ids = totals.attribution.reading(before, after);
        let record = |id: &str| {
            let (id, person) = people.get_key_value(id)?;
            person.folded.then(|| record_of(id, person))
        };
        totals.take_back_attribution(&self.definition, ids, &record);
    }

    /// Takes out of the views a person nothing of whom counts any more.
    fn hide(&mut self, id: &str) {
        self.take_back_attribution(id, None);
        let Some((id, person)) = self.people.get_key_value_mut(id) else {
            return;
        };
        if person.folded
            && let Some(totals) = self.totals.get_mut()
        {
            totals.person(&self.definition, &record_of(id, person), -1);
            if let Some(rows) = totals.rows.get_mut() {
                rows.remove(id);
            }
        }
        person.journey = Journey::default();
        person.part = part::PersonPart::default();
        person.dirty = false;
        person.folded = false;
    }

    /// Puts together again the opportunities whose people changed, and works out again the
    /// parts of the ledgers that changed, when the totals are kept.
    fn settle_totals(&mut self) {
        let dirty_ledgers = std::mem::take(&mut self.dirty_ledgers);
        if self.totals.get().is_some() && !dirty_ledgers.is_empty() {
            let parts: Vec<Result<ledger::LedgerPart, String>> = dirty_ledgers
                .into_iter()
                .map(|account| match self.ledgers.get(&account) {
                    Some(ledger) => Ok(self.ledger_part(&account, ledger)),
                    None => Err(account),
                })
                .collect();
            if let Some(totals) = self.totals.get_mut() {
                for part in parts {
                    match part {
                        Ok(part) => totals.ledger_rows.upsert(part),
                        Err(account) => totals.ledger_rows.remove(account.as_str()),
                    }
                }
            }
        }
        if let Some(totals) = self.totals.get_mut() {
            let (people, symbols) = (&self.people, &self.symbols);
            let threads = self.refresh_threads.get();
            totals.settle(
                &self.definition,
                |id| {
                    let (id, person) = people.get_key_value(id)?;
                    person.folded.then(|| record_of(id, person))
                },
                |symbol| label_of(symbols, symbol),
                threads,
            );
        }
    }

    /// Runs `view` on the totals: the kept ones, built now from every folded journey if this
    /// is the first build.
    pub(crate) fn with_totals<T>(&self, view: impl FnOnce(&totals::Totals) -> T) -> T {
        let totals = self.totals.get_or_init(|| {
            let mut totals = Box::<totals::Totals>::default();
            for record in self.person_records() {
                totals.person(&self.definition, &record, 1);
            }
            totals.settle(
                &self.definition,
                |id| self.record(id),
                |symbol| self.label(symbol),
                self.refresh_threads.get(),
            );
            let mut accounts: Vec<&String> = self.ledgers.keys().collect();
            accounts.sort_unstable();
            totals.ledger_rows = rows::RowChunks::from_sorted(
                accounts
                    .into_iter()
                    .map(|account| self.ledger_part(account, &self.ledgers[account])),
            );
            totals
        });
        view(totals)
    }

    /// Reads the revenue of the accounts whose ledgers changed, works the best customers'
    /// profile out again, and marks dirty the people of the accounts whose (industry, size)
    /// came into it or left it.
    fn settle_lookalike(&mut self) {
        if self.dirty_ledgers.is_empty() {
            return;
        }
        let mut dirty: Vec<&String> = self.dirty_ledgers.iter().collect();
        dirty.sort_unstable();
        let parts: Vec<(String, Option<ledger::LedgerPart>)> = dirty
            .into_iter()
            .map(|account| {
                let part = self
                    .ledgers
                    .get(account)
                    .map(|ledger| self.ledger_part(account, ledger));
                (account.clone(), part)
            })
            .collect();
        let now = self.now();
        for (account, part) in &parts {
            self.lookalike.update(account, part.as_ref(), now);
        }
        let mut lookalike = std::mem::take(&mut self.lookalike);
        let changed = lookalike.settle(|account| self.segment(Some(account)));
        self.lookalike = lookalike;
        if changed.is_empty() {
            return;
        }
        let mut people = Vec::new();
        for account in self.accounts.values() {
            let segment = marketing::Segment {
                industry: account.industry.current(&self.retracted).cloned(),
                region: None,
                employees: account.employees.current(&self.retracted).copied(),
            };
            if lookalike::pair_of(&segment).is_some_and(|pair| changed.contains(&pair)) {
                people.extend(account.people.iter().map(|p| self.canonical_owned(p)));
            }
        }
        self.dirty.extend(people);
    }

    /// When the journey first entered a won stage, when the definition has customer stages.
    fn customer_since(&self, journey: &Journey) -> Option<Timestamp> {
        self.definition.customer_from()?;
        let stages = self.definition.stages();
        journey
            .transitions
            .iter()
            .find(|t| {
                matches!(t.to, Place::Stage(index)
                    if stages[index].outcome == Some(crate::funnel::Outcome::Won))
            })
            .map(|t| t.at)
    }

    /// What the customer tables read of an account's ledger, as it stands.
    fn ledger_part(&self, account: &str, ledger: &ledger::AccountLedger) -> ledger::LedgerPart {
        let mut part = ledger::LedgerPart::of(
            account,
            ledger,
            self.segment(Some(account)),
            &self.retracted,
            &self.corrections,
        );
        if let Some((_, person)) = &mut part.referral {
            *person = self.canonical_owned(person);
        }
        part
    }

    /// A person's journey and the part of their facts the views read, folded from their
    /// current facts and traits; `Hidden` when no fact of theirs counts and no event that
    /// counts names them, `Missing` for someone no longer a person here.
    fn fold_person(&self, id: &str) -> Result<Refold, StateError> {
        let Some(person) = self.people.get(id) else {
            return Ok(Refold::Missing);
        };
        let retracted = &self.retracted;
        let facts = self.facts_for(id, person)?;
        if facts.is_empty() && !person.named(retracted) {
            return Ok(Refold::Hidden);
        }
        let account = person.account(retracted).and_then(|a| self.accounts.get(a));
        let traits = Traits {
            account_employees: account.and_then(|a| a.employees.current(retracted).copied()),
            account_industry: account.and_then(|a| a.industry.current(retracted).cloned()),
            account_region: account.and_then(|a| a.region.current(retracted).cloned()),
            person_title: person.title.current(retracted).cloned(),
            person_seniority: person.seniority.current(retracted).cloned(),
            person_department: person.department.current(retracted).cloned(),
            person_country: person.country.current(retracted).cloned(),
            account_lookalike: account
                .filter(|_| self.definition.reads_lookalike())
                .and_then(|account| {
                    self.lookalike.of(&marketing::Segment {
                        industry: account.industry.current(retracted).cloned(),
                        region: None,
                        employees: account.employees.current(retracted).copied(),
                    })
                }),
        };
        let mut journey = Journey::fold(&self.definition, &facts, &traits);
        // Past the sale, the customer stages also read the account's contract and usage.
        if let Some(won_at) = self.customer_since(&journey)
            && let Some(ledger) = person
                .account(retracted)
                .and_then(|account| self.ledgers.get(account))
        {
            let extra = ledger.customer_facts(won_at, retracted, &self.corrections);
            if !extra.is_empty() {
                let mut all = facts.to_vec();
                all.extend(extra);
                all.sort_by_key(|fact| (fact.at, fact.event_id));
                all.dedup_by_key(|fact| fact.event_id);
                journey = Journey::fold(&self.definition, &all, &traits);
            }
        }
        let mut part = part::PersonPart::of(&facts, &journey, |fact| self.attributes_of(fact));
        part.account = person.account(retracted).cloned();
        part.attribution =
            attribution::AttributionPart::of(&self.definition, &facts, &journey, |fact| {
                self.attributes_of(fact)
            });
        let score_of = |fact: &Fact| {
            let detail = self.symbols.name(self.attributes_of(fact).detail)?;
            let score = customer::SCORES.iter().position(|score| *score == detail)?;
            u8::try_from(score).ok()
        };
        let act_of = |fact: &Fact| {
            let detail = self.symbols.name(self.attributes_of(fact).detail)?;
            crate::event::AdvocacyAct::from_name(detail)
        };
        // Most people never answer NPS or advocate: their customer part is empty, and working
        // out their account's segment (strings cloned) would be paid on every re-fold.
        if facts
            .iter()
            .any(|fact| customer::CustomerPart::reads(fact.kind))
        {
            let segment = self.segment(part.account.as_deref());
            part.customer = customer::CustomerPart::of(&facts, score_of, act_of, segment);
        }
        Ok(Refold::Folded((journey, part)))
    }

    /// A person's own facts and the facts of the visitors they stood for, without retracted
    /// facts, with corrections applied, in (business time, event id) order. Borrowed when
    /// that is the person's own facts as recorded, as it is for most people.
    fn facts_for<'a>(
        &self,
        id: &str,
        person: &'a Person,
    ) -> Result<std::borrow::Cow<'a, [Fact]>, StateError> {
        let governed = |fact: &Fact| {
            self.retracted.contains(&fact.event_id) || self.corrections.contains_key(&fact.event_id)
        };
        let stitches = self
            .visitors_of
            .get(id)
            .is_some_and(|visitors| !visitors.is_empty());
        let own = person.facts.all(&*self.file, id)?;
        // Looked at only without visitors: a person with visitors is gathered anyway.
        let untouched = || {
            (self.retracted.is_empty() && self.corrections.is_empty()) || !own.iter().any(governed)
        };
        if !stitches && untouched() {
            return Ok(own);
        }
        let mut facts = self.gathered_facts(id, &own)?;
        sort_facts(&mut facts);
        Ok(std::borrow::Cow::Owned(facts))
    }

    fn gathered_facts(&self, id: &str, own: &[Fact]) -> Result<Vec<Fact>, StateError> {
        let visitors: Vec<(&String, &Visitor)> = self
            .visitors_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|anonymous| self.visitors.get_key_value(anonymous))
            .collect();
        let capacity = own.len() + visitors.iter().map(|(_, v)| v.facts.len()).sum::<usize>();
        let mut facts = Vec::with_capacity(capacity);
        let governed = !(self.retracted.is_empty() && self.corrections.is_empty());
        let mut take = |fact: &Fact| {
            if !governed {
                facts.push(*fact);
            } else if !self.retracted.contains(&fact.event_id) {
                facts.push(self.corrected(fact));
            }
        };
        own.iter().for_each(&mut take);
        for (anonymous, visitor) in visitors {
            let stitched = visitor.facts.all(&*self.file, anonymous)?;
            // A visitor identified as this person only (the usual case) is theirs at any time;
            // one whose identifications are all retracted is nobody's.
            let mut owners = visitor.owners(&self.retracted).peekable();
            let only_this = owners.peek().is_some() && owners.all(|o| self.canonical(o) == id);
            if only_this {
                stitched.iter().for_each(&mut take);
                continue;
            }
            for fact in stitched.iter() {
                // Stitched by the fact's business time, as corrected.
                let at = self
                    .corrections
                    .get(&fact.event_id)
                    .and_then(|c| c.occurred_at)
                    .unwrap_or(fact.at);
                if visitor
                    .owner_at(at, &self.retracted)
                    .is_some_and(|owner| self.canonical(owner) == id)
                {
                    take(fact);
                }
            }
        }
        Ok(facts)
    }

    fn corrected(&self, fact: &Fact) -> Fact {
        let Some(correction) = self.corrections.get(&fact.event_id) else {
            return *fact;
        };
        let mut fact = *fact;
        if let Some(at) = correction.occurred_at {
            fact.at = at;
        }
        if let Some(replacement) = &correction.replacement {
            fact.take_payload(replacement);
        }
        fact
    }

    /// A fact's attributes as the views read them: its set in the table, with the payload's
    /// fields of a correction's replacement laid over them.
    fn attributes_of(&self, fact: &Fact) -> crate::journey::Attributes {
        let mut attributes = *self.attributes.get(fact.attributes);
        if let Some(replacement) = self
            .corrections
            .get(&fact.event_id)
            .and_then(|correction| correction.replacement.as_ref())
        {
            attributes.take_payload(replacement, &self.symbols);
        }
        attributes
    }

    /// A refreshed person's journey; `None` for someone in no view.
    pub fn journey(&self, person_id: &str) -> Option<&Journey> {
        self.people
            .get(&self.canonical_owned(person_id))
            .filter(|p| p.folded)
            .map(|p| &p.journey)
    }

    /// People in the views: named by an event that counts (a fact of theirs, stitched or
    /// their own, a `person_updated` or a `linked_to_account`), as of the last refresh.
    pub fn people(&self) -> usize {
        self.people.values().filter(|p| p.folded).count()
    }

    /// The counting close of each opportunity: its earliest close by (business time, id)
    /// that is not retracted, with corrections applied, by opportunity id.
    fn counted_deals(&self) -> HashMap<&str, (Timestamp, EventId, crate::event::Money)> {
        let mut deals: HashMap<&str, (Timestamp, EventId, crate::event::Money)> =
            HashMap::default();
        for (id, won) in &self.wins {
            if self.retracted.contains(id) {
                continue;
            }
            let correction = self.corrections.get(id);
            let at = correction.and_then(|c| c.occurred_at).unwrap_or(won.at);
            let amount = match correction.and_then(|c| c.replacement.as_ref()) {
                Some(Payload::OpportunityClosedWon { amount }) => amount.clone(),
                _ => won.amount.clone(),
            };
            let entry = deals
                .entry(won.opportunity.as_str())
                .or_insert((at, *id, amount.clone()));
            if (at, *id) < (entry.0, entry.1) {
                *entry = (at, *id, amount);
            }
        }
        deals
    }

    /// How every person's deals actually ended, whatever the definition: won when one of
    /// their facts is the counting close of an opportunity (with that revenue), else lost
    /// when they have a close-lost fact, else open. By person id, from refreshed journeys.
    pub fn outcomes(&self) -> Outcomes {
        let counting: HashMap<EventId, crate::event::Money> = self
            .counted_deals()
            .into_values()
            .map(|(_, id, amount)| (id, amount))
            .collect();
        let now = self.now();
        let revenue: HashMap<&str, AccountRevenue> = self
            .ledgers
            .iter()
            .filter_map(|(account, ledger)| {
                let part = self.ledger_part(account, ledger);
                let revenue = customer_accounts::account_revenue(&part, now)?;
                Some((account.as_str(), revenue))
            })
            .collect();
        let mut outcomes = HashMap::default();
        for (id, person) in self.people.iter().filter(|(_, p)| p.folded) {
            let mut outcome = PersonOutcome {
                customer: person
                    .part
                    .account
                    .as_deref()
                    .and_then(|account| revenue.get(account))
                    .cloned(),
                latest_nps: person.part.customer.latest_score(),
                ..PersonOutcome::default()
            };
            for close in &person.part.closes_won {
                if let Some(amount) = counting.get(close) {
                    outcome.won = true;
                    outcome.revenue.push(amount.clone());
                }
            }
            outcome.lost = person.part.closed_lost && !outcome.won;
            outcomes.insert(id.clone(), outcome);
        }
        outcomes
    }

    /// Every person the definition made an MQL (their journey entered the MQL stage by its
    /// rule, not passed over it), with the time of each entry (refreshed journeys).
    pub fn mqls(&self) -> impl Iterator<Item = (&str, Vec<Timestamp>)> {
        let mql = Place::Stage(self.definition.mql_stage());
        self.people.iter().filter_map(move |(id, person)| {
            let times: Vec<Timestamp> = person
                .journey
                .transitions
                .iter()
                .filter(|t| t.to == mql && !t.is_return())
                .map(|t| t.at)
                .collect();
            (!times.is_empty()).then_some((id.as_str(), times))
        })
    }

    /// The start of every follow-up clock (each hand-off to sales), across all people.
    pub fn follow_up_starts(&self) -> impl Iterator<Item = Timestamp> {
        self.people
            .values()
            .flat_map(|person| person.journey.follow_ups.iter().map(|f| f.mql_at))
    }

    /// The shared-funnel summary of refreshed journeys.
    pub fn summary(&self) -> FunnelSummary {
        if let Some(totals) = self.totals.get() {
            return self.summary_with(totals);
        }
        // Without kept totals (a one-off fold: `baton funnel`, a comparison), only the
        // summary's part of them, which costs a fraction of the rest.
        let mut totals = totals::Totals::default();
        for record in self.person_records() {
            totals.summary_person(&self.definition, &record, 1);
        }
        self.summary_with(&totals)
    }

    pub(crate) fn summary_with(&self, totals: &totals::Totals) -> FunnelSummary {
        use totals::count;
        let stages = self.definition.stages();
        let now = self.latest.unwrap_or(Timestamp::from_unix_millis(0));
        let clocks = &totals.clocks;
        let hours = |millis: i64| millis as f64 / 3_600_000.0;
        let follow_up = FollowUpSummary {
            mqls: count(clocks.started),
            breached: clocks.breached(now),
            untouched: count(clocks.untouched),
            median_hours_to_first_action: clocks.response_millis.percentile(50).map(hours),
            p90_hours_to_first_action: clocks.response_millis.percentile(90).map(hours),
            as_of: self.latest,
        };
        let no_stage = totals::StageTotals::default();
        let stage = |index: usize| totals.stages.get(index).unwrap_or(&no_stage);
        let deals = self.counted_deals();
        let mut currencies: BTreeMap<String, i64> = BTreeMap::new();
        for (_, _, amount) in deals.values() {
            let sum = currencies.entry(amount.currency.clone()).or_default();
            *sum = sum.saturating_add(amount.minor_units);
        }
        FunnelSummary {
            definition: self.definition.name().to_owned(),
            definition_hash: self.definition.hash().to_owned(),
            events: self.events,
            people: count(totals.people),
            stages: stages
                .iter()
                .enumerate()
                .map(|(index, definition)| {
                    let totals = stage(index);
                    StageSummary {
                        name: definition.name.clone(),
                        owner: definition.owner,
                        entered: count(totals.entered),
                        current: count(totals.current),
                        converted: count(totals.converted),
                        returned: count(totals.returned),
                        outcome: definition.outcome.is_some(),
                        median_days_in_stage: median_days(&totals.stays),
                    }
                })
                .collect(),
            won_deals: deals.len() as u64,
            revenue_minor_units: currencies.into_iter().collect(),
            handoffs: count(totals.to_sales),
            handbacks: count(totals.handbacks),
            ping_pong_journeys: count(totals.ping_pong_journeys),
            follow_up,
        }
    }

    /// People who were with sales and are now owned by marketing again, for checks.
    pub fn owner_of(&self, person_id: &str) -> Option<Owner> {
        let journey = self.journey(person_id)?;
        crate::journey::owner_of(&self.definition, journey.current())
    }

    /// The kinds of a person's facts (stitched, retractions and corrections applied), in
    /// business-time order.
    pub fn facts_of(&self, person_id: &str) -> Result<Vec<Kind>, StateError> {
        let person_id = self.canonical_owned(person_id);
        let Some(person) = self.people.get(&person_id) else {
            return Ok(Vec::new());
        };
        Ok(self
            .facts_for(&person_id, person)?
            .iter()
            .map(|fact| fact.kind)
            .collect())
    }
}

fn median_days(values: &totals::Multiset<i64>) -> Option<f64> {
    let (low, high) = values.middle()?;
    let millis = if values.len() % 2 == 1 {
        low as f64
    } else {
        (low as f64 + high as f64) / 2.0
    };
    Some(millis / Timestamp::MILLIS_PER_DAY as f64)
}

/// The text of a symbol, `(none)` for none.
fn label_of(symbols: &Symbols, symbol: crate::symbol::Symbol) -> String {
    symbols
        .name(symbol)
        .map_or_else(|| report::NONE_LABEL.to_owned(), str::to_owned)
}

/// One person as the views read them.
fn record_of<'a>(id: &'a str, person: &'a Person) -> report::PersonRecord<'a> {
    report::PersonRecord {
        id,
        account: person.part.account.as_deref(),
        journey: &person.journey,
        part: &person.part,
    }
}

/// Every person's outcome, by person id.
pub type Outcomes = HashMap<String, PersonOutcome>;

/// How a person's deals ended, as the log tells it (not an interpretation of a definition).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PersonOutcome {
    pub won: bool,
    /// Lost, and never won.
    pub lost: bool,
    /// The revenue of the deals they closed won.
    pub revenue: Vec<crate::event::Money>,
    /// Their account's recurring revenue, when it became a customer (a first close).
    pub customer: Option<AccountRevenue>,
    /// Their latest NPS answer's score.
    pub latest_nps: Option<u8>,
}

/// A customer account's recurring revenue in its currency (`docs/views.md`, *Customer*).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountRevenue {
    pub account: String,
    pub currency: String,
    /// ARR at the end of its first month, and now, in minor units.
    pub starting_arr: i64,
    pub arr: i64,
}

/// How far a chain of retractions of retractions is followed (a retraction retracting a
/// retraction retracting ...); beyond, the rest of the chain is ignored.
const MAX_RETRACTION_CHAIN: usize = 64;

/// One stage's line in the shared-funnel summary.
#[derive(Clone, Debug, PartialEq)]
pub struct StageSummary {
    pub name: String,
    pub owner: Owner,
    /// People who entered the stage (by its own rule, not skipped over) at least once.
    pub entered: u64,
    /// People in the stage now.
    pub current: u64,
    /// Of those who entered, people who later entered a stage further along.
    pub converted: u64,
    /// People a detour's `back_to` returned to the stage at least once (a return is not an
    /// entry: the recycled path, counted apart).
    pub returned: u64,
    /// Whether the stage ends a deal (won, lost): nothing converts from it.
    pub outcome: bool,
    /// Median time between entering the stage and the next move, over completed stays.
    pub median_days_in_stage: Option<f64>,
}

impl StageSummary {
    /// `converted / entered`; `None` for an outcome stage or one nobody entered.
    pub fn conversion_rate(&self) -> Option<f64> {
        (self.entered > 0 && !self.outcome).then(|| self.converted as f64 / self.entered as f64)
    }
}

/// The shared-funnel summary: `baton funnel`.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelSummary {
    pub definition: String,
    pub definition_hash: String,
    pub events: u64,
    pub people: u64,
    pub stages: Vec<StageSummary>,
    /// Distinct opportunities closed won (not retracted).
    pub won_deals: u64,
    /// Revenue of those deals per currency, in minor units, after corrections.
    pub revenue_minor_units: Vec<(String, i64)>,
    pub handoffs: u64,
    pub handbacks: u64,
    /// Journeys handed back and then handed off again.
    pub ping_pong_journeys: u64,
    pub follow_up: FollowUpSummary,
}

/// The follow-up SLA over every MQL: did sales close the loop, and how fast.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FollowUpSummary {
    /// Follow-up clocks started (one per MQL, so a person can have several).
    pub mqls: u64,
    /// Clocks whose first action came after the deadline, or that have none and whose deadline
    /// lies before `as_of`.
    pub breached: u64,
    /// Clocks with no action yet.
    pub untouched: u64,
    /// Nearest-rank median and 90th percentile of MQL to first action, over clocks with one.
    pub median_hours_to_first_action: Option<f64>,
    pub p90_hours_to_first_action: Option<f64>,
    /// The latest business time in the log: "now" for clocks still running.
    pub as_of: Option<Timestamp>,
}
