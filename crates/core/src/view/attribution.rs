//! The attribution view: which touches earned each opportunity's amount, under every model
//! the definition declares (`docs/views.md`, *Attribution*; the models themselves are in
//! `crate::attribution`).
//!
//! Its own part of each person (their touches that count, and when they became a lead and
//! an MQL; read from their facts when their journey is folded), its own contributions (per
//! opportunity: what each model credits each channel, campaign and content, and what sourced
//! it; taken back and added again whenever the opportunity or its people change) and its own
//! rows (the ledger: one row per model, opportunity and credited touch, worked out from a
//! snapshot's rows when read, so that it is never kept whole in memory).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::report::{DealStatus, PersonRecord};
use super::totals::Deal;
use super::{HashMap, HashSet};
use crate::attribution::{Attribution, Credit, MILESTONES, Scope, allocate};
use crate::event::{EventId, Kind};
use crate::funnel::FunnelDefinition;
use crate::journey::{Attributes, Fact, Journey, Place};
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;

/// A touch as attribution reads it, unpacked from a person's [`Touches`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Touch {
    pub(crate) at: Timestamp,
    pub(crate) event_id: EventId,
    pub(crate) kind: Kind,
    pub(crate) channel: Symbol,
    pub(crate) campaign: Symbol,
    pub(crate) content: Symbol,
}

impl Touch {
    /// The touch's value in each dimension, in [`DIMENSIONS`] order.
    fn values(&self) -> [Symbol; 3] {
        [self.channel, self.campaign, self.content]
    }
}

/// A person's touches that count, in (business time, event id) order, packed: a person keeps
/// every touch of their history, so these are most of attribution's memory. Laid out as the
/// number of touches, then the person's distinct (kind, channel, campaign, content) tuples,
/// then per touch the milliseconds since the touch before (from the epoch for the first), the
/// tuple's number and the 16 bytes of the event id: about 22 bytes a touch where the unpacked
/// [`Touch`] takes 40. Shared (an `Arc`) between the person's part and their row.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Touches(Arc<[u8]>);

impl std::fmt::Debug for Touches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Default for Touches {
    fn default() -> Self {
        Touches(Arc::from([]))
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0_u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

impl Touches {
    /// Packs touches given in (business time, event id) order.
    pub(crate) fn pack(touches: &[Touch]) -> Touches {
        if touches.is_empty() {
            return Touches::default();
        }
        let mut tuples: Vec<(Kind, [Symbol; 3])> = Vec::new();
        // Found by a scan while there are few, by a map past that.
        let mut found: HashMap<(Kind, [Symbol; 3]), u32> = HashMap::default();
        let mut numbers: Vec<u32> = Vec::with_capacity(touches.len());
        for touch in touches {
            let tuple = (touch.kind, touch.values());
            let known = if tuples.len() <= 16 {
                tuples
                    .iter()
                    .position(|known| *known == tuple)
                    .map(|n| n as u32)
            } else {
                if found.is_empty() {
                    found.extend(tuples.iter().enumerate().map(|(n, t)| (*t, n as u32)));
                }
                found.get(&tuple).copied()
            };
            let number = known.unwrap_or_else(|| {
                tuples.push(tuple);
                let number = (tuples.len() - 1) as u32;
                if !found.is_empty() {
                    found.insert(tuple, number);
                }
                number
            });
            numbers.push(number);
        }
        let mut out = Vec::with_capacity(8 + tuples.len() * 8 + touches.len() * 22);
        put_varint(&mut out, touches.len() as u64);
        put_varint(&mut out, tuples.len() as u64);
        for (kind, values) in &tuples {
            put_varint(&mut out, *kind as u64);
            for value in values {
                put_varint(&mut out, u64::from(value.index()));
            }
        }
        let mut before = 0_i64;
        for (touch, number) in touches.iter().zip(numbers) {
            let millis = touch.at.unix_millis();
            debug_assert!(millis >= before, "touches are packed in time order");
            // Times are never before the epoch and come in order; a zigzag keeps an
            // out-of-order pair exact all the same.
            let delta = millis.wrapping_sub(before);
            put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
            before = millis;
            put_varint(&mut out, u64::from(number));
            out.extend_from_slice(&touch.event_id.as_u128().to_be_bytes());
        }
        Touches(out.into())
    }

    /// How many touches there are.
    pub(crate) fn len(&self) -> usize {
        if self.0.is_empty() {
            return 0;
        }
        take_varint(&self.0, &mut 0) as usize
    }

    /// The touches, unpacked, in order.
    pub(crate) fn iter(&self) -> TouchIter<'_> {
        let bytes: &[u8] = &self.0;
        if bytes.is_empty() {
            return TouchIter {
                bytes,
                at: 0,
                left: 0,
                before: 0,
                tuples: Vec::new(),
            };
        }
        let mut at = 0;
        let left = take_varint(bytes, &mut at) as usize;
        let count = take_varint(bytes, &mut at) as usize;
        let mut tuples = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = Kind::ALL[take_varint(bytes, &mut at) as usize];
            let mut values = [Symbol::NONE; 3];
            for value in &mut values {
                *value = Symbol::from_index(take_varint(bytes, &mut at) as u32);
            }
            tuples.push((kind, values));
        }
        TouchIter {
            bytes,
            at,
            left,
            before: 0,
            tuples,
        }
    }

    /// How many touches came at or before `cut`.
    pub(crate) fn count_until(&self, cut: Timestamp) -> usize {
        self.iter().take_while(|touch| touch.at <= cut).count()
    }
}

/// Unpacks [`Touches`] one at a time.
pub(crate) struct TouchIter<'a> {
    bytes: &'a [u8],
    at: usize,
    left: usize,
    before: i64,
    tuples: Vec<(Kind, [Symbol; 3])>,
}

impl Iterator for TouchIter<'_> {
    type Item = Touch;

    fn next(&mut self) -> Option<Touch> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let zigzag = take_varint(self.bytes, &mut self.at);
        let delta = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        self.before = self.before.wrapping_add(delta);
        let (kind, [channel, campaign, content]) =
            self.tuples[take_varint(self.bytes, &mut self.at) as usize];
        let mut id = [0_u8; 16];
        id.copy_from_slice(&self.bytes[self.at..self.at + 16]);
        self.at += 16;
        Some(Touch {
            at: Timestamp::from_unix_millis(self.before),
            event_id: EventId::from_uuid(uuid::Uuid::from_u128(u128::from_be_bytes(id))),
            kind,
            channel,
            campaign,
            content,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The dimensions credits roll up by.
pub const DIMENSIONS: [&str; 3] = ["channel", "campaign", "content"];

/// What attribution reads of one person's facts, when their journey is folded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AttributionPart {
    /// Their touches that count (`attribution.touches`), in (business time, event id) order;
    /// shared with their row, so a snapshot's ledger reads them without a copy.
    pub(crate) touches: Touches,
    /// Their earliest `form_submitted` or `identified`: when they became a known lead.
    pub(crate) lead_at: Option<Timestamp>,
    /// When their journey first entered the MQL stage by its rule.
    pub(crate) mql_at: Option<Timestamp>,
}

impl AttributionPart {
    /// The part of a person with these facts (stitched, governed, in order) and this
    /// journey; empty when the definition declares no model.
    pub(crate) fn of(
        definition: &FunnelDefinition,
        facts: &[Fact],
        journey: &Journey,
        attributes_of: impl Fn(&Fact) -> Attributes,
    ) -> AttributionPart {
        let settings = definition.attribution();
        if settings.models.is_empty() {
            return AttributionPart::default();
        }
        let touches: Vec<Touch> = facts
            .iter()
            .filter(|fact| settings.counts(fact.kind))
            .map(|fact| {
                let attributes = attributes_of(fact);
                Touch {
                    at: fact.at,
                    event_id: fact.event_id,
                    kind: fact.kind,
                    channel: attributes.channel,
                    campaign: attributes.campaign,
                    content: attributes.content,
                }
            })
            .collect();
        let lead_at = facts
            .iter()
            .find(|fact| matches!(fact.kind, Kind::FormSubmitted | Kind::Identified))
            .map(|fact| fact.at);
        let mql = Place::Stage(definition.mql_stage());
        let mql_at = journey
            .transitions
            .iter()
            .find(|t| t.to == mql && !t.is_return())
            .map(|t| t.at);
        AttributionPart {
            touches: Touches::pack(&touches),
            lead_at,
            mql_at,
        }
    }
}

/// What an opportunity's set is cut and placed by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DealTimes {
    pub(crate) created_at: Timestamp,
    pub(crate) status: DealStatus,
    pub(crate) closed_at: Option<Timestamp>,
}

/// The touches of an opportunity's people that count for it, with its milestones.
#[derive(Debug, Default)]
pub(crate) struct TouchSet {
    /// (index of the person among those given, touch), in (business time, event id) order.
    pub(crate) touches: Vec<(usize, Touch)>,
    /// The milestone touches, in `COMPONENTS` order.
    pub(crate) milestones: [Option<usize>; MILESTONES],
    /// The first touch, when it came at or before the opportunity was created.
    pub(crate) source: Option<usize>,
}

impl TouchSet {
    /// The set of an opportunity with these times, from its people's parts.
    pub(crate) fn of(deal: DealTimes, people: &[&AttributionPart]) -> TouchSet {
        // Touches after a close never count; an open opportunity's count up to now.
        let until = match deal.status {
            DealStatus::Open => None,
            _ => deal.closed_at,
        };
        let within = |at: Timestamp| until.is_none_or(|until| at <= until);
        let mut touches: Vec<(usize, Touch)> = people
            .iter()
            .enumerate()
            .flat_map(|(index, part)| {
                part.touches
                    .iter()
                    .take_while(|touch| within(touch.at))
                    .map(move |touch| (index, touch))
            })
            .collect();
        touches.sort_by_key(|(_, touch)| (touch.at, touch.event_id));
        // The last touch at or before a milestone that happened by the cut.
        let before = |at: Option<Timestamp>| {
            let at = at.filter(|at| within(*at))?;
            touches
                .partition_point(|(_, touch)| touch.at <= at)
                .checked_sub(1)
        };
        let earliest = |of: fn(&AttributionPart) -> Option<Timestamp>| {
            people.iter().filter_map(|part| of(part)).min()
        };
        let first = (!touches.is_empty()).then_some(0);
        let close = match deal.status {
            DealStatus::Won => before(deal.closed_at),
            _ => None,
        };
        let milestones = [
            first,
            before(earliest(|part| part.lead_at)),
            before(earliest(|part| part.mql_at)),
            before(Some(deal.created_at)),
            close,
        ];
        let source = first.filter(|_| touches[0].1.at <= deal.created_at);
        TouchSet {
            touches,
            milestones,
            source,
        }
    }

    /// How `model` credits the set for `amount` minor units; `None` when unattributed.
    pub(crate) fn credits(
        &self,
        model: &crate::attribution::Model,
        amount: i64,
    ) -> Option<Vec<Credit>> {
        let touches: Vec<(Timestamp, Kind)> = self
            .touches
            .iter()
            .map(|(_, touch)| (touch.at, touch.kind))
            .collect();
        allocate(model, &touches, &self.milestones, amount)
    }

    /// The milestones a touch holds, by name, comma-separated; `None` for none.
    pub(crate) fn milestones_of(&self, index: usize) -> Option<String> {
        let names: Vec<&str> = crate::attribution::COMPONENTS[..MILESTONES]
            .iter()
            .zip(self.milestones)
            .filter(|(_, held)| *held == Some(index))
            .map(|(name, _)| *name)
            .collect();
        (!names.is_empty()).then(|| names.join(","))
    }
}

/// One opportunity's credit in one dimension's value under one model.
#[derive(Clone, Debug)]
struct CreditEntry {
    model: u16,
    dimension: u8,
    /// `None`: the amount no touch earned (unattributed).
    value: Option<Symbol>,
    touches: u32,
    credited: i64,
}

/// What one opportunity adds to the roll-ups. Not kept: it is worked out again from the same
/// inputs to take it back (`AttributionTotals::take_back`): at ten million events the credits
/// of every opportunity would hold hundreds of megabytes.
#[derive(Clone, Debug)]
struct OppCredit {
    /// The account it is kept under for re-crediting when the account's people change.
    account: Option<String>,
    won: bool,
    currency: Symbol,
    amount: i64,
    /// Its source touch's values, `None` without one.
    source: Option<[Symbol; 3]>,
    /// Per model, whether it was unattributed.
    unattributed: Vec<bool>,
    entries: Vec<CreditEntry>,
}

/// One model's credit in one dimension's value and currency, over every opportunity.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RollUp {
    pub(crate) sourced: i64,
    pub(crate) sourced_won: i64,
    pub(crate) sourced_revenue: i128,
    pub(crate) sourced_pipeline: i128,
    pub(crate) influenced: i64,
    pub(crate) influenced_won: i64,
    pub(crate) touches: i64,
    pub(crate) credited_revenue: i128,
    pub(crate) credited_pipeline: i128,
}

/// One model's totals in one currency.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ModelTotals {
    pub(crate) won: i64,
    pub(crate) revenue: i128,
    pub(crate) unattributed_revenue: i128,
    pub(crate) open: i64,
    pub(crate) pipeline: i128,
    pub(crate) unattributed_pipeline: i128,
}

/// (model, dimension, value (`None`: unattributed), currency).
pub(crate) type RollUpKey = (u16, u8, Option<Symbol>, Symbol);

/// The attribution view's totals, kept up to date with the others (`totals.rs`).
#[derive(Clone, Debug, Default)]
pub(crate) struct AttributionTotals {
    /// Each account's people as of their last fold.
    members: HashMap<String, BTreeSet<String>>,
    /// Accounts whose people were folded again since the last settle.
    dirty_accounts: HashSet<String>,
    /// The opportunities credited from each account's touches.
    by_account: HashMap<String, BTreeSet<Symbol>>,
    /// The opportunities whose contribution is in the roll-ups, with the account they are
    /// kept under.
    credited: HashMap<Symbol, Option<String>>,
    /// Opportunities taken back since the last settle, to be credited again by it.
    pending: BTreeSet<Symbol>,
    /// Hashed: every opportunity credited adds to a few hundred of them; rows are sorted by
    /// their text when read.
    pub(crate) rollups: HashMap<RollUpKey, RollUp>,
    pub(crate) models: HashMap<(u16, Symbol), ModelTotals>,
    /// The text of every symbol the roll-ups ever held, for the ledger of a snapshot (which
    /// has no symbol table). Only grows; shared with snapshots.
    pub(crate) labels: Arc<HashMap<Symbol, String>>,
}

impl AttributionTotals {
    /// Adds or takes back a person: their account's opportunities are credited again at the
    /// next settle.
    pub(crate) fn person(&mut self, person: &PersonRecord<'_>, sign: i64) {
        let Some(account) = person.account else {
            return;
        };
        let members = self.members.entry(account.to_owned()).or_default();
        if sign > 0 {
            members.insert(person.id.to_owned());
        } else {
            members.remove(person.id);
            if members.is_empty() {
                self.members.remove(account);
            }
        }
        self.dirty_accounts.insert(account.to_owned());
    }

    /// Credits again the opportunities put together again (`changed`) and those of the
    /// accounts whose people changed. `record` gives a person as the views read them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn settle<'a>(
        &mut self,
        settings: &Attribution,
        changed: &[Symbol],
        opportunities: &BTreeMap<Symbol, Deal>,
        carriers: &HashMap<Symbol, BTreeSet<String>>,
        record: &(impl Fn(&str) -> Option<PersonRecord<'a>> + Sync),
        label: &impl Fn(Symbol) -> String,
        threads: usize,
    ) {
        /// Below this many opportunities they are credited on the calling thread.
        const PARALLEL_FROM: usize = 512;
        let mut dirty: BTreeSet<Symbol> = changed.iter().copied().collect();
        dirty.append(&mut self.pending);
        for account in std::mem::take(&mut self.dirty_accounts) {
            if let Some(ids) = self.by_account.get(&account) {
                dirty.extend(ids.iter().copied());
            }
        }
        let dirty: Vec<Symbol> = dirty.into_iter().collect();
        // Every change to what an opportunity's credit reads came through `take_back` first.
        let missed: Vec<Symbol> = dirty
            .iter()
            .filter(|id| self.credited.contains_key(id))
            .copied()
            .collect();
        debug_assert!(
            missed.is_empty(),
            "invariant: taken back before any change: {missed:?}"
        );
        self.take_back(settings, missed, opportunities, carriers, record);
        if settings.models.is_empty() {
            return;
        }
        let members = &self.members;
        let credit = |id: &Symbol| {
            contribution(settings, *id, opportunities, members, carriers, record)
                .map(|credit| (*id, credit))
        };
        let credited: Vec<(Symbol, OppCredit)> = if threads <= 1 || dirty.len() < PARALLEL_FROM {
            dirty.iter().filter_map(credit).collect()
        } else {
            // Every opportunity of a large refresh (a replay's end, a restore) on every core.
            std::thread::scope(|scope| {
                let workers: Vec<_> = dirty
                    .chunks(dirty.len().div_ceil(threads))
                    .map(|ids| {
                        let credit = &credit;
                        scope.spawn(move || ids.iter().filter_map(credit).collect::<Vec<_>>())
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| match worker.join() {
                        Ok(credited) => credited,
                        Err(panic) => std::panic::resume_unwind(panic),
                    })
                    .collect()
            })
        };
        for (id, credit) in credited {
            self.remember_labels(&credit, label);
            self.apply(&credit, 1);
            if let Some(account) = &credit.account {
                self.by_account
                    .entry(account.clone())
                    .or_default()
                    .insert(id);
            }
            self.credited.insert(id, credit.account);
        }
    }

    /// The credited opportunities whose credit reads a person about to be folded again,
    /// hidden or merged away: those of their account and those they carry, as folded before
    /// (`before`) and as the new fold has it (`after`), each (account, opportunities).
    pub(crate) fn reading(
        &self,
        before: Option<(Option<&str>, Vec<Symbol>)>,
        after: Option<(Option<&str>, Vec<Symbol>)>,
    ) -> Vec<Symbol> {
        let mut ids: BTreeSet<Symbol> = BTreeSet::new();
        for (account, carried) in before.into_iter().chain(after) {
            if let Some(of) = account.and_then(|account| self.by_account.get(account)) {
                ids.extend(of.iter().copied());
            }
            ids.extend(
                carried
                    .into_iter()
                    .filter(|id| self.credited.contains_key(id)),
            );
        }
        ids.into_iter().collect()
    }

    /// Takes back the contribution of each of `ids` still credited, worked out again from
    /// the inputs it was worked out from: called before any of them changes.
    pub(crate) fn take_back<'a>(
        &mut self,
        settings: &Attribution,
        ids: Vec<Symbol>,
        opportunities: &BTreeMap<Symbol, Deal>,
        carriers: &HashMap<Symbol, BTreeSet<String>>,
        record: &impl Fn(&str) -> Option<PersonRecord<'a>>,
    ) {
        for id in ids {
            let Some(account) = self.credited.remove(&id) else {
                continue;
            };
            self.pending.insert(id);
            if let Some(account) = &account
                && let Some(of) = self.by_account.get_mut(account)
            {
                of.remove(&id);
                if of.is_empty() {
                    self.by_account.remove(account);
                }
            }
            let credit = contribution(settings, id, opportunities, &self.members, carriers, record)
                .expect(
                    "invariant: a credited opportunity's inputs are unchanged until taken back",
                );
            debug_assert_eq!(credit.account, account);
            self.apply(&credit, -1);
        }
    }

    fn remember_labels(&mut self, credit: &OppCredit, label: &impl Fn(Symbol) -> String) {
        let symbols = credit
            .entries
            .iter()
            .filter_map(|entry| entry.value)
            .chain(credit.source.into_iter().flatten())
            .chain([credit.currency]);
        let new: Vec<Symbol> = symbols
            .filter(|symbol| !self.labels.contains_key(symbol))
            .collect();
        if !new.is_empty() {
            let labels = Arc::make_mut(&mut self.labels);
            for symbol in new {
                labels.insert(symbol, label(symbol));
            }
        }
    }

    fn apply(&mut self, credit: &OppCredit, sign: i64) {
        let amount = i128::from(sign) * i128::from(credit.amount);
        let models = credit.unattributed.len();
        for (model, unattributed) in credit.unattributed.iter().enumerate() {
            let model = u16::try_from(model).expect("invariant: fewer than 65536 models");
            let totals = self.models.entry((model, credit.currency)).or_default();
            if credit.won {
                totals.won += sign;
                totals.revenue += amount;
                if *unattributed {
                    totals.unattributed_revenue += amount;
                }
            } else {
                totals.open += sign;
                totals.pipeline += amount;
                if *unattributed {
                    totals.unattributed_pipeline += amount;
                }
            }
            if totals.won == 0 && totals.open == 0 {
                debug_assert_eq!(totals, &ModelTotals::default());
                self.models.remove(&(model, credit.currency));
            }
        }
        let mut touched: Vec<RollUpKey> = Vec::new();
        for model in 0..models {
            let model = u16::try_from(model).expect("invariant: fewer than 65536 models");
            for dimension in 0..3_u8 {
                let value = credit.source.map(|values| values[usize::from(dimension)]);
                let key = (model, dimension, value, credit.currency);
                let rollup = self.rollups.entry(key).or_default();
                rollup.sourced += sign;
                if credit.won {
                    rollup.sourced_won += sign;
                    rollup.sourced_revenue += amount;
                } else {
                    rollup.sourced_pipeline += amount;
                }
                touched.push(key);
            }
        }
        for entry in &credit.entries {
            let key = (entry.model, entry.dimension, entry.value, credit.currency);
            let rollup = self.rollups.entry(key).or_default();
            let credited = i128::from(sign) * i128::from(entry.credited);
            rollup.influenced += sign;
            rollup.touches += sign * i64::from(entry.touches);
            if credit.won {
                rollup.influenced_won += sign;
                rollup.credited_revenue += credited;
            } else {
                rollup.credited_pipeline += credited;
            }
            touched.push(key);
        }
        for key in touched {
            if self
                .rollups
                .get(&key)
                .is_some_and(|rollup| rollup.sourced == 0 && rollup.influenced == 0)
            {
                self.rollups.remove(&key);
            }
        }
    }
}

/// What opportunity `id` contributes under `settings`, from the current inputs: its deal,
/// its account's people (`members`) or the people named on it (`carriers`), and their parts;
/// `None` when it is credited nothing (lost, or without an amount).
fn contribution<'a>(
    settings: &Attribution,
    id: Symbol,
    opportunities: &BTreeMap<Symbol, Deal>,
    members: &HashMap<String, BTreeSet<String>>,
    carriers: &HashMap<Symbol, BTreeSet<String>>,
    record: &impl Fn(&str) -> Option<PersonRecord<'a>>,
) -> Option<OppCredit> {
    if settings.models.is_empty() {
        return None;
    }
    let opportunity = &opportunities.get(&id)?.opportunity;
    // Lost ones earn nothing; without an amount there is nothing to credit.
    let (amount, currency) = opportunity.value()?;
    if opportunity.status == DealStatus::Lost {
        return None;
    }
    let account = match (settings.scope, &opportunity.account) {
        (Scope::Account, Some(account)) => Some(account.clone()),
        _ => None,
    };
    let people: Vec<&String> = match &account {
        Some(account) => members.get(account).into_iter().flatten().collect(),
        None => carriers.get(&id).into_iter().flatten().collect(),
    };
    let records: Vec<PersonRecord<'a>> = people.into_iter().filter_map(|p| record(p)).collect();
    let parts: Vec<&AttributionPart> = records.iter().map(|r| &r.part.attribution).collect();
    let set = TouchSet::of(
        DealTimes {
            created_at: opportunity.created_at,
            status: opportunity.status,
            closed_at: opportunity.closed_at,
        },
        &parts,
    );
    Some(OppCredit::of(
        settings,
        &set,
        account,
        opportunity.status,
        amount,
        currency,
    ))
}

impl OppCredit {
    fn of(
        settings: &Attribution,
        set: &TouchSet,
        account: Option<String>,
        status: DealStatus,
        amount: i64,
        currency: Symbol,
    ) -> OppCredit {
        let mut entries = Vec::new();
        let mut unattributed = Vec::with_capacity(settings.models.len());
        for (index, model) in settings.models.iter().enumerate() {
            let index = u16::try_from(index).expect("invariant: fewer than 65536 models");
            let Some(credits) = set.credits(model, amount) else {
                unattributed.push(true);
                for dimension in 0..3 {
                    entries.push(CreditEntry {
                        model: index,
                        dimension,
                        value: None,
                        touches: 0,
                        credited: amount,
                    });
                }
                continue;
            };
            unattributed.push(false);
            // (dimension, value, credit) of every credited touch, summed by (dimension, value).
            let mut credited: Vec<(u8, Symbol, i64)> = set
                .touches
                .iter()
                .zip(&credits)
                .filter(|(_, credit)| credit.share > 0.0)
                .flat_map(|((_, touch), credit)| {
                    (0..3_u8)
                        .zip(touch.values())
                        .map(move |(dimension, value)| (dimension, value, credit.credited))
                })
                .collect();
            credited.sort_unstable_by_key(|(dimension, value, _)| (*dimension, *value));
            for (dimension, value, credit) in credited {
                match entries.last_mut() {
                    Some(entry)
                        if entry.model == index
                            && entry.dimension == dimension
                            && entry.value == Some(value) =>
                    {
                        entry.touches += 1;
                        entry.credited += credit;
                    }
                    _ => entries.push(CreditEntry {
                        model: index,
                        dimension,
                        value: Some(value),
                        touches: 1,
                        credited: credit,
                    }),
                }
            }
        }
        entries.shrink_to_fit();
        OppCredit {
            account,
            won: status == DealStatus::Won,
            currency,
            amount,
            source: set.source.map(|index| set.touches[index].1.values()),
            unattributed,
            entries,
        }
    }
}

/// The label of a roll-up's value: `(unattributed)` for the amount no touch earned.
pub const UNATTRIBUTED_LABEL: &str = "(unattributed)";

/// One model's totals in one currency (`attribution_models`).
#[derive(Clone, Debug, PartialEq)]
pub struct AttributionModelRow {
    pub model: String,
    pub kind: &'static str,
    /// The model's weights as text (`first 0.4, lead 0.4, middle 0.2`).
    pub weights: String,
    pub currency: Option<String>,
    pub won: u64,
    pub revenue_minor: i64,
    pub credited_revenue_minor: i64,
    pub unattributed_revenue_minor: i64,
    pub open: u64,
    pub pipeline_minor: i64,
    pub credited_pipeline_minor: i64,
    pub unattributed_pipeline_minor: i64,
}

/// One model's credit to one channel, campaign or content in one currency
/// (`attribution_credit`).
#[derive(Clone, Debug, PartialEq)]
pub struct AttributionCreditRow {
    pub model: String,
    pub dimension: &'static str,
    pub value: String,
    pub currency: Option<String>,
    pub sourced_opportunities: u64,
    pub sourced_won: u64,
    pub sourced_revenue_minor: i64,
    pub sourced_pipeline_minor: i64,
    pub influenced_opportunities: u64,
    pub influenced_won: u64,
    pub credited_touches: u64,
    pub credited_revenue_minor: i64,
    pub credited_pipeline_minor: i64,
}

/// The attribution view's aggregate tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttributionView {
    pub models: Vec<AttributionModelRow>,
    pub credit: Vec<AttributionCreditRow>,
}

/// One model's credit to one touch of one opportunity (`attribution_ledger`); the touch
/// fields are `None` on the row of an unattributed amount, and its dimensions
/// `(unattributed)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerRow {
    pub model: String,
    pub opportunity: String,
    pub account: Option<String>,
    pub status: DealStatus,
    pub touch: Option<String>,
    pub occurred_at: Option<Timestamp>,
    pub person: Option<String>,
    pub kind: Option<&'static str>,
    pub channel: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    /// 1-based, in the opportunity's set; 0 on an unattributed amount's row.
    pub position: Option<u64>,
    /// How many touches the set holds.
    pub touches: u64,
    pub milestones: Option<String>,
    pub weight: f64,
    pub credited_minor: i64,
    pub currency: Option<String>,
}

impl super::FunnelProjection {
    /// The attribution view's aggregate tables (the ledger is read from a snapshot's rows,
    /// [`super::rows::PersonRows::attribution_ledger`]).
    pub fn attribution_view(&self) -> AttributionView {
        if self.totals.get().is_none() {
            // A one-off fold (a comparison): only what attribution reads, not every view's
            // totals, which would cost as much again as the fold.
            let mut totals = super::totals::Totals::default();
            for record in self.person_records() {
                totals.attribution.person(&record, 1);
                totals.deals_person(&record, 1);
            }
            totals.settle(
                &self.definition,
                |id| self.record(id),
                |symbol| self.label(symbol),
                self.refresh_threads.get(),
            );
            return self.attribution_view_of(&totals);
        }
        self.with_totals(|totals| self.attribution_view_of(totals))
    }

    fn attribution_view_of(&self, totals: &super::totals::Totals) -> AttributionView {
        {
            let models = &self.definition().attribution().models;
            let totals = &totals.attribution;
            let currency = |symbol: Symbol| symbol.is_some().then(|| self.label(symbol));
            let clamp = super::totals::clamp;
            let count = super::totals::count;
            let order = |name: &str| models.iter().position(|m| m.name == name);
            let mut model_rows: Vec<AttributionModelRow> = totals
                .models
                .iter()
                .filter_map(|((model, symbol), t)| {
                    let declared = models.get(usize::from(*model))?;
                    Some(AttributionModelRow {
                        model: declared.name.clone(),
                        kind: declared.kind.as_str(),
                        weights: declared.describe(),
                        currency: currency(*symbol),
                        won: count(t.won),
                        revenue_minor: clamp(t.revenue),
                        credited_revenue_minor: clamp(t.revenue - t.unattributed_revenue),
                        unattributed_revenue_minor: clamp(t.unattributed_revenue),
                        open: count(t.open),
                        pipeline_minor: clamp(t.pipeline),
                        credited_pipeline_minor: clamp(t.pipeline - t.unattributed_pipeline),
                        unattributed_pipeline_minor: clamp(t.unattributed_pipeline),
                    })
                })
                .collect();
            // Symbols are numbered in order of arrival: rows go by text.
            model_rows.sort_by(|a, b| {
                (order(&a.model), &a.currency).cmp(&(order(&b.model), &b.currency))
            });
            let mut credit: Vec<AttributionCreditRow> = totals
                .rollups
                .iter()
                .filter_map(|((model, dimension, value, symbol), r)| {
                    let declared = models.get(usize::from(*model))?;
                    Some(AttributionCreditRow {
                        model: declared.name.clone(),
                        dimension: DIMENSIONS[usize::from(*dimension)],
                        value: value
                            .map_or_else(|| UNATTRIBUTED_LABEL.to_owned(), |v| self.label(v)),
                        currency: currency(*symbol),
                        sourced_opportunities: count(r.sourced),
                        sourced_won: count(r.sourced_won),
                        sourced_revenue_minor: clamp(r.sourced_revenue),
                        sourced_pipeline_minor: clamp(r.sourced_pipeline),
                        influenced_opportunities: count(r.influenced),
                        influenced_won: count(r.influenced_won),
                        credited_touches: count(r.touches),
                        credited_revenue_minor: clamp(r.credited_revenue),
                        credited_pipeline_minor: clamp(r.credited_pipeline),
                    })
                })
                .collect();
            credit.sort_by(|a, b| {
                let key = |row: &AttributionCreditRow| {
                    let dimension = DIMENSIONS.iter().position(|d| *d == row.dimension);
                    (
                        order(&row.model),
                        dimension,
                        row.value.clone(),
                        row.currency.clone(),
                    )
                };
                key(a).cmp(&key(b))
            });
            AttributionView {
                models: model_rows,
                credit,
            }
        }
    }
}

impl super::rows::PersonRows {
    /// The opportunities the ledger credits (won and open), by creation time and id; only
    /// `opportunity` when given.
    fn credited_deals(
        &self,
        opportunity: Option<&str>,
    ) -> Vec<(Symbol, &super::sales::OpportunityRow)> {
        let mut deals: Vec<(Symbol, &super::sales::OpportunityRow)> = self
            .opportunity_entries()
            .filter(|(_, row)| row.status != DealStatus::Lost && row.amount_minor.is_some())
            .filter(|(_, row)| opportunity.is_none_or(|wanted| row.opportunity == wanted))
            .collect();
        deals.sort_by(|a, b| {
            (a.1.created_at, &a.1.opportunity).cmp(&(b.1.created_at, &b.1.opportunity))
        });
        deals
    }

    /// The people of the accounts of `deals`, and the people named on each of them.
    #[allow(clippy::type_complexity)]
    fn people_of(
        &self,
        deals: &[(Symbol, &super::sales::OpportunityRow)],
    ) -> (
        HashMap<&str, Vec<&super::rows::PersonRow>>,
        HashMap<Symbol, Vec<&super::rows::PersonRow>>,
    ) {
        let wanted: HashSet<Symbol> = deals.iter().map(|(id, _)| *id).collect();
        let accounts: HashSet<&str> = deals
            .iter()
            .filter_map(|(_, row)| row.account.as_deref())
            .collect();
        let mut members: HashMap<&str, Vec<&super::rows::PersonRow>> = HashMap::default();
        let mut carriers: HashMap<Symbol, Vec<&super::rows::PersonRow>> = HashMap::default();
        for person in self.iter() {
            if let Some(account) = person.account.as_deref()
                && accounts.contains(account)
            {
                members.entry(account).or_default().push(person);
            }
            for deal in &person.deals {
                if wanted.contains(deal) {
                    carriers.entry(*deal).or_default().push(person);
                }
            }
        }
        (members, carriers)
    }

    /// At most how many rows the whole ledger has: per model, every touch of every credited
    /// opportunity's set (or its one unattributed row). Counted without working out a credit.
    pub fn attribution_ledger_bound(&self) -> u64 {
        let settings = self.attribution_settings();
        let deals = self.credited_deals(None);
        if settings.models.is_empty() || deals.is_empty() {
            return 0;
        }
        let (members, carriers) = self.people_of(&deals);
        let mut rows = 0_u64;
        for (id, row) in &deals {
            let people: &[&super::rows::PersonRow] = match (settings.scope, row.account.as_deref())
            {
                (Scope::Account, Some(account)) => members.get(account).map_or(&[], Vec::as_slice),
                _ => carriers.get(id).map_or(&[], Vec::as_slice),
            };
            let cut = match row.status {
                DealStatus::Open => None,
                _ => row.closed_at,
            };
            let touches: usize = people
                .iter()
                .map(|p| {
                    let touches = &p.attribution.touches;
                    cut.map_or(touches.len(), |cut| touches.count_until(cut))
                })
                .sum();
            rows += touches.max(1) as u64;
        }
        rows * settings.models.len() as u64
    }

    /// The attribution ledger of this snapshot (`attribution_ledger`): one row per model,
    /// opportunity (won or open) and touch the model gives a share, or one row for an
    /// amount the model left unattributed; by opportunity (creation time, then id), then
    /// model in declaration order, then touch. Only `opportunity`'s rows when given.
    pub fn attribution_ledger(&self, opportunity: Option<&str>) -> Vec<LedgerRow> {
        self.ledger_of(&self.credited_deals(opportunity))
    }

    /// How many opportunities the whole ledger credits: [`attribution_ledger_part`]
    /// (Self::attribution_ledger_part) reads it a slice of them at a time.
    pub fn attribution_ledger_deals(&self) -> usize {
        self.credited_deals(None).len()
    }

    /// The ledger rows of the credited opportunities `from..to` (in the ledger's order of
    /// opportunities), by model, then opportunity, then position: the whole ledger read a
    /// part at a time, so that it is never held whole.
    pub fn attribution_ledger_part(&self, from: usize, to: usize) -> Vec<LedgerRow> {
        let deals = self.credited_deals(None);
        let to = to.min(deals.len());
        self.ledger_of(&deals[from.min(to)..to])
    }

    fn ledger_of(&self, deals: &[(Symbol, &super::sales::OpportunityRow)]) -> Vec<LedgerRow> {
        let settings = self.attribution_settings();
        if settings.models.is_empty() || deals.is_empty() {
            return Vec::new();
        }
        let (members, carriers) = self.people_of(deals);
        let labels = self.attribution_labels();
        let text = |symbol: Symbol| {
            labels
                .get(&symbol)
                .cloned()
                .unwrap_or_else(|| super::report::NONE_LABEL.to_owned())
        };
        let mut sets = Vec::with_capacity(deals.len());
        for (id, row) in deals {
            let people: &[&super::rows::PersonRow] = match (settings.scope, row.account.as_deref())
            {
                (Scope::Account, Some(account)) => members.get(account).map_or(&[], Vec::as_slice),
                _ => carriers.get(id).map_or(&[], Vec::as_slice),
            };
            let parts: Vec<&AttributionPart> = people.iter().map(|p| &p.attribution).collect();
            let set = TouchSet::of(
                DealTimes {
                    created_at: row.created_at,
                    status: row.status,
                    closed_at: row.closed_at,
                },
                &parts,
            );
            sets.push((people, set));
        }
        let mut rows = Vec::new();
        for ((_, deal), (people, set)) in deals.iter().zip(&sets) {
            for model in &settings.models {
                let amount = deal.amount_minor.unwrap_or(0);
                let base = LedgerRow {
                    model: model.name.clone(),
                    opportunity: deal.opportunity.clone(),
                    account: deal.account.clone(),
                    status: deal.status,
                    touch: None,
                    occurred_at: None,
                    person: None,
                    kind: None,
                    // Grouping the ledger by a dimension gives the roll-ups' rows.
                    channel: Some(UNATTRIBUTED_LABEL.to_owned()),
                    campaign: Some(UNATTRIBUTED_LABEL.to_owned()),
                    content: Some(UNATTRIBUTED_LABEL.to_owned()),
                    position: Some(0),
                    touches: set.touches.len() as u64,
                    milestones: None,
                    weight: 1.0,
                    credited_minor: amount,
                    currency: deal.currency.clone(),
                };
                let Some(credits) = set.credits(model, amount) else {
                    rows.push(base);
                    continue;
                };
                for (index, ((person, touch), credit)) in
                    set.touches.iter().zip(credits).enumerate()
                {
                    if credit.share <= 0.0 {
                        continue;
                    }
                    rows.push(LedgerRow {
                        touch: Some(touch.event_id.to_string()),
                        occurred_at: Some(touch.at),
                        person: Some(people[*person].person.clone()),
                        kind: Some(touch.kind.name()),
                        channel: Some(text(touch.channel)),
                        campaign: Some(text(touch.campaign)),
                        content: Some(text(touch.content)),
                        position: Some(index as u64 + 1),
                        milestones: set.milestones_of(index),
                        weight: credit.share,
                        credited_minor: credit.credited,
                        ..base.clone()
                    });
                }
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(at: i64, id: u128, kind: Kind, values: [u32; 3]) -> Touch {
        Touch {
            at: Timestamp::from_unix_millis(at),
            event_id: EventId::from_uuid(uuid::Uuid::from_u128(id)),
            kind,
            channel: Symbol::from_index(values[0]),
            campaign: Symbol::from_index(values[1]),
            content: Symbol::from_index(values[2]),
        }
    }

    #[test]
    fn packed_touches_unpack_to_what_was_packed() {
        assert_eq!(Touches::pack(&[]).len(), 0);
        assert_eq!(Touches::pack(&[]).iter().count(), 0);
        // Ties in time, repeated and new tuples, symbols past one varint byte, ids that
        // differ only in their last bytes, times at the epoch and at the end of time.
        let touches = vec![
            touch(0, 1, Kind::ContentViewed, [0, 0, 0]),
            touch(0, 2, Kind::ContentViewed, [0, 0, 0]),
            touch(
                1_700_000_000_000,
                u128::MAX,
                Kind::EmailClicked,
                [3, 300, 70_000],
            ),
            touch(
                1_700_000_000_000,
                u128::MAX - 1,
                Kind::ContentViewed,
                [0, 0, 0],
            ),
            touch(
                1_700_000_000_001,
                7 << 100,
                Kind::EmailClicked,
                [3, 300, 70_000],
            ),
            touch(
                253_402_300_799_999,
                9,
                Kind::FormSubmitted,
                [u32::MAX, 1, 2],
            ),
        ];
        let packed = Touches::pack(&touches);
        assert_eq!(packed.len(), touches.len());
        assert_eq!(packed.iter().collect::<Vec<_>>(), touches);
        assert_eq!(packed.count_until(Timestamp::from_unix_millis(0)), 2);
        assert_eq!(
            packed.count_until(Timestamp::from_unix_millis(1_700_000_000_000)),
            4
        );
        // Smaller than the unpacked touches: one tuple table, deltas, ids.
        assert!(packed.0.len() < touches.len() * std::mem::size_of::<Touch>());
        // Many distinct tuples (found by a map past the first sixteen), each seen again.
        let many: Vec<Touch> = (0..200_u32)
            .map(|n| {
                touch(
                    i64::from(n) * 1000,
                    u128::from(n),
                    Kind::ContentViewed,
                    [1, 2, n % 40],
                )
            })
            .collect();
        assert_eq!(Touches::pack(&many).iter().collect::<Vec<_>>(), many);
    }
}
