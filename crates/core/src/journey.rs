//! One person's journey through a funnel: a pure fold of their facts, in business-time order,
//! under one definition. The projector keeps each person's facts and calls [`Journey::fold`]
//! again when a late fact lands before others; the rules are in `docs/funnels.md`.

use crate::event::{ContentType, Event, EventId, Kind, Money, Payload};
use crate::funnel::{FitCondition, FunnelDefinition, Outcome, Owner, Trait, Trigger};
use crate::symbol::{AttributeTable, AttributesId, Symbol, Symbols};
use crate::timestamp::Timestamp;

/// What a fact contributes to a journey and to the views: its time, the few fields the rules
/// read, and the attributes the views group by, as an id in the projection's
/// [`AttributeTable`]. 32 bytes: a projection holds one per event. Stored in the projector's
/// state (`view::state`): a change here bumps `STATE_VERSION`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fact {
    pub at: Timestamp,
    pub event_id: EventId,
    pub kind: Kind,
    pub content_type: Option<ContentType>,
    pub need_declared: Option<bool>,
    /// The attributes the event carried. A correction's replacement does not change them
    /// here: its payload's are laid over them where the views read them
    /// (`FunnelProjection::attributes_of`).
    pub attributes: AttributesId,
}

/// The fields of a fact the views group and sum by, as symbols of the projection's table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Attributes {
    /// The source system (`web`, `sendgrid`, `salesforce`, ...).
    pub source: Symbol,
    pub channel: Symbol,
    pub campaign: Symbol,
    /// The campaign's content id, else a viewed page's url.
    pub content: Symbol,
    pub opportunity: Symbol,
    /// The seller or marketer who acted (assigned, accepted, rejected, activity, meeting).
    pub owner: Symbol,
    /// A reason (rejected, recycled, disqualified, closed lost) or a CRM stage (opportunity
    /// created, stage changed).
    pub detail: Symbol,
    /// An amount in minor units (proposal sent, opportunity created or amount changed, closed
    /// won) and its currency; `currency` is `NONE` without one.
    pub amount_minor: i64,
    pub currency: Symbol,
}

impl Attributes {
    /// Takes the owner, detail and amount of `payload` (a correction's replacement, or the
    /// event's own). Its strings must be interned already ([`intern_payload`]).
    pub fn take_payload(&mut self, payload: &Payload, symbols: &Symbols) {
        let (owner, detail, amount) = payload_fields(payload);
        self.owner = owner.map_or(Symbol::NONE, |o| symbols.lookup(o));
        self.detail = detail.map_or(Symbol::NONE, |d| symbols.lookup(d));
        (self.amount_minor, self.currency) = match amount {
            Some(money) => (money.minor_units, symbols.lookup(&money.currency)),
            None => (0, Symbol::NONE),
        };
    }
}

/// A fact with its attributes as the views read them: the table's, with a correction's
/// replacement laid over them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attributed {
    pub fact: Fact,
    pub attributes: Attributes,
}

impl Fact {
    /// Whether this event can be a fact of a person's journey (identity, traits and
    /// governance events shape journeys but are not facts in them).
    pub fn applies_to_journeys(kind: Kind) -> bool {
        use crate::event::Family;
        match kind.family() {
            Family::Touch | Family::Action | Family::Crm => true,
            // Being identified makes someone a known inquiry; other identity and governance
            // events shape journeys without being facts in them.
            Family::Identity => kind == Kind::Identified,
            Family::Governance => false,
            // Post-sale facts are on the journey of the person they name (the customer stages
            // of a definition are entered by them); one that names only an account is on
            // none, as an account-only touch.
            Family::Customer => true,
        }
    }

    /// The fact an event contributes to its person's journey, interning its attributes.
    pub fn from_event(event: &Event, symbols: &mut Symbols, table: &mut AttributeTable) -> Fact {
        intern_payload(&event.payload, symbols);
        let content = event
            .campaign
            .content_id
            .as_deref()
            .or(match &event.payload {
                Payload::ContentViewed { url, .. } => Some(url.as_str()),
                _ => None,
            });
        let mut attributes = Attributes {
            source: symbols.intern(&event.source.system),
            channel: symbols.intern_option(event.campaign.channel.as_deref()),
            campaign: symbols.intern_option(event.campaign.campaign_id.as_deref()),
            content: symbols.intern_option(content),
            opportunity: symbols.intern_option(event.opportunity_id.as_deref()),
            ..Attributes::default()
        };
        attributes.take_payload(&event.payload, symbols);
        let mut fact = Fact {
            at: event.occurred_at,
            event_id: event.event_id,
            kind: event.kind(),
            content_type: None,
            need_declared: None,
            attributes: table.intern(attributes),
        };
        fact.take_payload(&event.payload);
        fact
    }

    /// Takes the kind and the fields the rules read from `payload` (a correction's
    /// replacement, or the event's own). The attributes are the caller's
    /// ([`Attributes::take_payload`]).
    pub fn take_payload(&mut self, payload: &Payload) {
        self.kind = payload.kind();
        (self.content_type, self.need_declared) = match payload {
            Payload::ContentViewed { content_type, .. } => (Some(*content_type), None),
            Payload::MeetingHeld { need_declared, .. } => (None, Some(*need_declared)),
            _ => (None, None),
        };
    }

    fn matches(&self, trigger: Trigger) -> bool {
        match trigger {
            Trigger::Kind(kind) => self.kind == kind,
            Trigger::MeetingWithNeed => {
                self.kind == Kind::MeetingHeld && self.need_declared == Some(true)
            }
            Trigger::MeetingWithoutNeed => {
                self.kind == Kind::MeetingHeld && self.need_declared == Some(false)
            }
        }
    }
}

/// The traits fit rules read; `None` when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traits {
    pub account_employees: Option<u32>,
    pub account_industry: Option<String>,
    pub account_region: Option<String>,
    pub person_title: Option<String>,
    pub person_seniority: Option<String>,
    pub person_department: Option<String>,
    pub person_country: Option<String>,
    /// `yes` or `no` (see `Trait::AccountLookalike`); `None` without an account, or an account
    /// whose industry or size is unknown.
    pub account_lookalike: Option<&'static str>,
}

impl Traits {
    fn text(&self, on: Trait) -> Option<&str> {
        match on {
            Trait::AccountEmployees => None,
            Trait::AccountIndustry => self.account_industry.as_deref(),
            Trait::AccountRegion => self.account_region.as_deref(),
            Trait::PersonTitle => self.person_title.as_deref(),
            Trait::PersonSeniority => self.person_seniority.as_deref(),
            Trait::PersonDepartment => self.person_department.as_deref(),
            Trait::PersonCountry => self.person_country.as_deref(),
            Trait::AccountLookalike => self.account_lookalike,
        }
    }
}

/// The fit score of these traits: the sum of the points of every rule they satisfy.
pub fn fit_score(definition: &FunnelDefinition, traits: &Traits) -> f64 {
    definition
        .fit_rules()
        .iter()
        .filter(|rule| match &rule.condition {
            FitCondition::AnyOf(values) => traits
                .text(rule.on)
                .is_some_and(|value| values.iter().any(|v| v.eq_ignore_ascii_case(value))),
            FitCondition::Between { at_least, at_most } => {
                traits.account_employees.is_some_and(|employees| {
                    let employees = f64::from(employees);
                    at_least.is_none_or(|low| employees >= low)
                        && at_most.is_none_or(|high| employees <= high)
                })
            }
        })
        .map(|rule| rule.points)
        .sum()
}

/// Where a journey is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// Before the first stage: an anonymous visitor or a person with no qualifying fact yet.
    Outside,
    Stage(usize),
    Detour(usize),
}

/// A move from one place to another, with its time and the fact that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub at: Timestamp,
    pub from: Place,
    pub to: Place,
    pub cause: EventId,
    /// Stages passed over by a forward move (entered without their own trigger).
    pub skipped: Vec<usize>,
}

impl Transition {
    /// Whether the move is a detour's return to its `back_to` stage: the person is nurtured
    /// there again, but did not enter it by its rule (a return is not an entry, a conversion
    /// or an MQL; the `stages` table counts returns apart).
    pub fn is_return(&self) -> bool {
        matches!((self.from, self.to), (Place::Detour(_), Place::Stage(_)))
    }

    /// The stage the move entered by that stage's rule: a forward move's target, not a
    /// detour's return.
    pub fn entered_stage(&self) -> Option<usize> {
        match self.to {
            Place::Stage(index) if !self.is_return() => Some(index),
            _ => None,
        }
    }
}

/// Which way a hand-off went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Marketing to sales: the journey entered the MQL stage.
    ToSales,
    /// Sales back to marketing: a detour that returns to a marketing stage while the lead is
    /// with sales (handed off and not handed back since).
    ToMarketing,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Handoff {
    pub at: Timestamp,
    pub direction: Direction,
    pub cause: EventId,
}

/// The follow-up clock an MQL starts.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowUp {
    pub mql_at: Timestamp,
    pub deadline: Timestamp,
    /// The first fact of a `met_by` kind at or after the MQL.
    pub first_action_at: Option<Timestamp>,
}

impl FollowUp {
    /// Breached as of `now`: no action by the deadline (or none yet and the deadline passed).
    pub fn breached(&self, now: Timestamp) -> bool {
        match self.first_action_at {
            Some(at) => at > self.deadline,
            None => now > self.deadline,
        }
    }
}

/// Everything the views need from one person's facts.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Journey {
    pub place: Option<Place>,
    pub transitions: Vec<Transition>,
    pub handoffs: Vec<Handoff>,
    pub follow_ups: Vec<FollowUp>,
    /// The engagement score just after the last fact, and that fact's time.
    pub engagement: f64,
    pub engagement_at: Option<Timestamp>,
    pub fit: f64,
}

impl Journey {
    /// Where the journey is now (`Outside` before any stage).
    pub fn current(&self) -> Place {
        self.place.unwrap_or(Place::Outside)
    }

    /// The engagement score decayed to `now`.
    pub fn engagement_at(&self, definition: &FunnelDefinition, now: Timestamp) -> f64 {
        decayed(
            self.engagement,
            self.engagement_at,
            now,
            definition.half_life_days(),
        )
    }

    /// Folds a person's facts (in any order: they are sorted by time, then id) under a
    /// definition.
    pub fn fold(definition: &FunnelDefinition, facts: &[Fact], traits: &Traits) -> Journey {
        let order = |a: &&Fact, b: &&Fact| a.at.cmp(&b.at).then(a.event_id.cmp(&b.event_id));
        // The projection keeps facts in order already: then they are read as they are.
        let mut ordered: Vec<&Fact> = Vec::new();
        if !facts.is_sorted_by(|a, b| order(&a, &b).is_le()) {
            ordered = facts.iter().collect();
            ordered.sort_by(order);
        }
        let mut folder = Folder {
            definition,
            journey: Journey {
                fit: fit_score(definition, traits),
                ..Journey::default()
            },
            day: i64::MIN,
            day_points: 0.0,
        };
        if ordered.is_empty() {
            facts.iter().for_each(|fact| folder.apply(fact));
        } else {
            ordered.into_iter().for_each(|fact| folder.apply(fact));
        }
        // Kept until the person's next fold: without the room left by growing them.
        let mut journey = folder.journey;
        journey.transitions.shrink_to_fit();
        journey.handoffs.shrink_to_fit();
        journey.follow_ups.shrink_to_fit();
        journey
    }
}

/// A score reached at `at` (none: no score), decayed to `now`.
pub(crate) fn decayed(
    score: f64,
    at: Option<Timestamp>,
    now: Timestamp,
    half_life_days: f64,
) -> f64 {
    at.map_or(0.0, |at| decay(score, at, now, half_life_days))
}

fn decay(score: f64, from: Timestamp, to: Timestamp, half_life_days: f64) -> f64 {
    let elapsed = (to.unix_millis() - from.unix_millis()).max(0);
    #[allow(clippy::cast_precision_loss)]
    let days = elapsed as f64 / Timestamp::MILLIS_PER_DAY as f64;
    score * 0.5f64.powf(days / half_life_days)
}

struct Folder<'a> {
    definition: &'a FunnelDefinition,
    journey: Journey,
    /// The UTC day (days since the epoch) the daily cap is counting, and the points so far.
    day: i64,
    day_points: f64,
}

impl Folder<'_> {
    fn apply(&mut self, fact: &Fact) {
        self.score(fact);
        // Closing the loop does not depend on where the fact moves the journey (a rejection
        // recycles, and still counts as the first action).
        self.follow_up(fact);
        let stages = self.definition.stages();
        let current = self.journey.current();
        // Past the sale (won, or a customer stage): only customer stages and customer detours
        // move the journey, and only when the definition has them.
        let customer_from = self.definition.customer_from();
        let customer = match current {
            Place::Stage(index) => {
                stages[index].outcome == Some(Outcome::Won)
                    || customer_from.is_some_and(|from| index >= from)
            }
            _ => false,
        };
        // A won journey without customer stages is over; a lost, churned or disqualified one
        // moves again only through a detour.
        if customer && customer_from.is_none() {
            return;
        }

        if let Some((detour_index, detour)) =
            self.definition
                .detours()
                .iter()
                .enumerate()
                .find(|(index, detour)| {
                    self.definition.is_customer_detour_at(*index) == customer
                        && detour.enter_on.iter().any(|t| fact.matches(*t))
                })
        {
            if current == Place::Outside || current == Place::Detour(detour_index) {
                return; // Nothing to detour from.
            }
            self.moved(fact, current, Place::Detour(detour_index), Vec::new());
            if let Some(back_to) = detour.back_to {
                self.moved(
                    fact,
                    Place::Detour(detour_index),
                    Place::Stage(back_to),
                    Vec::new(),
                );
                if !customer && self.with_sales() {
                    self.journey.handoffs.push(Handoff {
                        at: fact.at,
                        direction: Direction::ToMarketing,
                        cause: fact.event_id,
                    });
                }
            }
            return;
        }
        if matches!(current, Place::Detour(index) if self.definition.detours()[index].back_to.is_none())
            || matches!(current, Place::Stage(index) if stages[index].outcome.is_some_and(Outcome::is_loss))
        {
            return; // Ended: disqualified, lost or churned, until a detour (above) brings it back.
        }

        let score = self.journey.engagement;
        let mut target: Option<usize> = None;
        // The customer stages are entered only past the sale; the others only before it.
        let line = match (customer, customer_from) {
            (true, Some(from)) => from..stages.len(),
            (_, from) => 0..from.unwrap_or(stages.len()),
        };
        for (index, stage) in stages.iter().enumerate().take(line.end).skip(line.start) {
            let by_trigger = stage.enter_on.iter().any(|t| fact.matches(*t));
            let by_score = stage.min_engagement.is_some_and(|min| score >= min);
            let by_mql = stage.by_mql && self.qualifies(fact, score);
            if by_trigger || by_score || by_mql {
                target = Some(index);
            }
        }
        let Some(target) = target else { return };
        let from_index = match current {
            Place::Stage(index) => Some(index),
            Place::Outside | Place::Detour(_) => None,
        };
        if from_index.is_some_and(|from| target <= from) {
            return; // Journeys move back only through detours.
        }
        let first_skipped = from_index.map_or(0, |from| from + 1);
        let skipped: Vec<usize> = (first_skipped..target).collect();
        let mql = self.definition.mql_stage();
        let passes_mql = target >= mql && from_index.is_none_or(|from| from < mql);
        self.moved(fact, current, Place::Stage(target), skipped);
        if passes_mql {
            self.journey.handoffs.push(Handoff {
                at: fact.at,
                direction: Direction::ToSales,
                cause: fact.event_id,
            });
            let sla = self.definition.sla();
            self.journey.follow_ups.push(FollowUp {
                mql_at: fact.at,
                deadline: fact.at.add_millis(sla.follow_up_millis),
                first_action_at: None,
            });
        }
        // The fact that carries the journey past the MQL (say, an accepted lead) also meets
        // the follow-up it starts; that is handled with every other fact below.
        self.follow_up(fact);
    }

    /// Whether the lead is with sales: handed off, and not handed back since.
    fn with_sales(&self) -> bool {
        self.journey
            .handoffs
            .last()
            .is_some_and(|handoff| handoff.direction == Direction::ToSales)
    }

    fn qualifies(&self, fact: &Fact, score: f64) -> bool {
        let mql = self.definition.mql();
        if mql.high_intent.contains(&fact.kind) {
            return true;
        }
        mql.min_engagement.is_some_and(|min| score >= min) && self.journey.fit >= mql.min_fit
    }

    fn follow_up(&mut self, fact: &Fact) {
        if !self.definition.sla().met_by.contains(&fact.kind) {
            return;
        }
        if let Some(open) = self.journey.follow_ups.last_mut()
            && open.first_action_at.is_none()
            && fact.at >= open.mql_at
        {
            open.first_action_at = Some(fact.at);
        }
    }

    fn moved(&mut self, fact: &Fact, from: Place, to: Place, skipped: Vec<usize>) {
        self.journey.transitions.push(Transition {
            at: fact.at,
            from,
            to,
            cause: fact.event_id,
            skipped,
        });
        self.journey.place = Some(to);
    }

    fn score(&mut self, fact: &Fact) {
        let definition = self.definition;
        let mut points: f64 = definition
            .engagement_rules()
            .iter()
            .filter(|rule| {
                rule.kind == fact.kind
                    && (rule.content_types.is_empty()
                        || fact
                            .content_type
                            .is_some_and(|c| rule.content_types.contains(&c)))
            })
            .map(|rule| rule.points)
            .sum();
        let day = fact.at.unix_millis().div_euclid(Timestamp::MILLIS_PER_DAY);
        if day != self.day {
            self.day = day;
            self.day_points = 0.0;
        }
        if let Some(cap) = definition.daily_cap()
            && points > 0.0
        {
            points = points.min((cap - self.day_points).max(0.0));
            self.day_points += points;
        }
        let decayed = match self.journey.engagement_at {
            None => 0.0,
            Some(at) => decay(
                self.journey.engagement,
                at,
                fact.at,
                definition.half_life_days(),
            ),
        };
        self.journey.engagement = decayed + points;
        self.journey.engagement_at = Some(fact.at);
    }
}

/// Which team owns a place: stages by their owner, detours back to marketing by marketing.
pub fn owner_of(definition: &FunnelDefinition, place: Place) -> Option<Owner> {
    match place {
        Place::Outside => None,
        Place::Stage(index) => Some(definition.stages()[index].owner),
        Place::Detour(index) => definition.detours()[index]
            .back_to
            .map(|_| Owner::Marketing),
    }
}

/// The owner, the reason or CRM stage, and the amount a payload carries.
fn payload_fields(payload: &Payload) -> (Option<&str>, Option<&str>, Option<&Money>) {
    match payload {
        Payload::LeadAssigned { owner } | Payload::LeadAccepted { owner } => {
            (Some(owner), None, None)
        }
        Payload::SalesActivity { owner, .. } => (Some(owner), None, None),
        Payload::MeetingHeld { owner, .. } => (owner.as_deref(), None, None),
        Payload::LeadRejected { owner, reason } => (owner.as_deref(), Some(reason), None),
        Payload::LeadRecycled { reason }
        | Payload::LeadDisqualified { reason }
        | Payload::OpportunityClosedLost { reason } => (None, Some(reason), None),
        Payload::ProposalSent { amount, .. }
        | Payload::OpportunityAmountChanged { amount }
        | Payload::OpportunityClosedWon { amount } => (None, None, Some(amount)),
        Payload::OpportunityCreated { amount, stage } => (None, stage.as_deref(), amount.as_ref()),
        Payload::OpportunityStageChanged { to, .. } => (None, Some(to), None),
        Payload::SubscriptionStarted { amount, .. }
        | Payload::SubscriptionRenewed { amount, .. }
        | Payload::SubscriptionExpanded { amount, .. } => (None, None, Some(amount)),
        Payload::SubscriptionContracted { amount, reason, .. } => {
            (None, reason.as_deref(), Some(amount))
        }
        Payload::SubscriptionChurned { reason, .. } => (None, Some(reason), None),
        Payload::Advocated { act, .. } => (None, Some(act.as_str()), None),
        // The score, as text: corrections lay a replacement's score over it like any field.
        Payload::NpsResponded { score, .. } => (
            None,
            crate::view::customer::SCORES
                .get(usize::from(*score))
                .copied(),
            None,
        ),
        _ => (None, None, None),
    }
}

/// Interns the strings of a payload that [`Attributes::take_payload`] looks up.
pub fn intern_payload(payload: &Payload, symbols: &mut Symbols) {
    let (owner, detail, amount) = payload_fields(payload);
    symbols.intern_option(owner);
    symbols.intern_option(detail);
    if let Some(money) = amount {
        symbols.intern(&money.currency);
    }
}
