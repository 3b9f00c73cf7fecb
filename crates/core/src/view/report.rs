//! What the marketing, sales and shared-funnel views read of a projection: each person's
//! facts in business-time order with their journey, the opportunities those facts describe,
//! and first-touch attribution. The rules are in `docs/views.md`.

use super::FunnelProjection;
use super::part::PersonPart;
use crate::event::Kind;
use crate::journey::{Attributed, Fact, Journey};
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;

/// Amounts per currency (ISO code → minor units), sorted by currency.
pub type Amounts = Vec<(String, i64)>;

/// Written for an absent attribute (a touch without a campaign, an owner-less clock).
pub const NONE_LABEL: &str = "(none)";

/// One person as the views see them.
pub(crate) struct PersonRecord<'a> {
    pub(crate) id: &'a str,
    pub(crate) account: Option<&'a str>,
    pub(crate) journey: &'a Journey,
    /// What the views read of the person's facts.
    pub(crate) part: &'a PersonPart,
}

impl PersonRecord<'_> {
    /// The earliest touch: what first-touch attribution credits.
    pub(crate) fn first_touch(&self) -> Option<&Attributed> {
        self.part.first_touch.as_ref()
    }
}

/// How an opportunity ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DealStatus {
    Open,
    Won,
    Lost,
}

impl DealStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DealStatus::Open => "open",
            DealStatus::Won => "won",
            DealStatus::Lost => "lost",
        }
    }
}

/// An opportunity, put together from the CRM facts of the people who carry it.
#[derive(Clone, Debug)]
pub(crate) struct Opportunity {
    pub(crate) id: Symbol,
    /// The person with its `opportunity_created`, else the one with its earliest fact.
    pub(crate) person: String,
    pub(crate) account: Option<String>,
    pub(crate) created_at: Timestamp,
    created_by_event: bool,
    /// The latest amount (created, amount changed, proposal, won) by business time.
    pub(crate) amount: Option<(Timestamp, i64, Symbol)>,
    /// The latest CRM stage named (created, stage changed).
    pub(crate) stage: Option<(Timestamp, Symbol)>,
    pub(crate) status: DealStatus,
    pub(crate) closed_at: Option<Timestamp>,
    /// The reason of the latest close-lost.
    pub(crate) loss_reason: Symbol,
    pub(crate) proposals: u64,
    /// The first-touch fact of `person`, for attribution.
    pub(crate) first_touch: Option<Attributed>,
    /// The latest proposal's amount (by business time) and currency.
    pub(crate) proposal: Option<(Timestamp, i64, Symbol)>,
    /// The owner named by the latest fact with an owner of the person whose close won
    /// counts, at or before that close.
    pub(crate) owner: Symbol,
}

impl Opportunity {
    pub(crate) fn new(id: Symbol, person: &PersonRecord<'_>, fact: &Fact) -> Opportunity {
        Opportunity {
            id,
            person: person.id.to_owned(),
            account: person.account.map(str::to_owned),
            created_at: fact.at,
            created_by_event: false,
            amount: None,
            stage: None,
            status: DealStatus::Open,
            closed_at: None,
            loss_reason: Symbol::NONE,
            proposals: 0,
            first_touch: person.first_touch().copied(),
            proposal: None,
            owner: Symbol::NONE,
        }
    }

    pub(crate) fn take(&mut self, person: &PersonRecord<'_>, deal: &Attributed) {
        let (fact, attributes) = (&deal.fact, &deal.attributes);
        let created = fact.kind == Kind::OpportunityCreated;
        if created && (!self.created_by_event || fact.at < self.created_at) {
            self.created_by_event = true;
            self.created_at = fact.at;
            self.person = person.id.to_owned();
            self.account = person.account.map(str::to_owned);
            self.first_touch = person.first_touch().copied();
        } else if !self.created_by_event && fact.at < self.created_at {
            // Without a create event, the opportunity is the earliest fact's person's.
            self.created_at = fact.at;
            self.person = person.id.to_owned();
            self.account = person.account.map(str::to_owned);
            self.first_touch = person.first_touch().copied();
        }
        if attributes.currency.is_some() && self.amount.is_none_or(|(at, _, _)| fact.at >= at) {
            self.amount = Some((fact.at, attributes.amount_minor, attributes.currency));
        }
        let names_stage = matches!(
            fact.kind,
            Kind::OpportunityCreated | Kind::OpportunityStageChanged
        );
        if names_stage
            && attributes.detail.is_some()
            && self.stage.is_none_or(|(at, _)| fact.at >= at)
        {
            self.stage = Some((fact.at, attributes.detail));
        }
        match fact.kind {
            Kind::ProposalSent => {
                self.proposals += 1;
                if attributes.currency.is_some()
                    && self.proposal.is_none_or(|(at, _, _)| fact.at >= at)
                {
                    self.proposal = Some((fact.at, attributes.amount_minor, attributes.currency));
                }
            }
            Kind::OpportunityClosedWon => {
                // Won is final; the earliest close counts (as for revenue in the summary).
                if self.status != DealStatus::Won || self.closed_at.is_some_and(|c| fact.at < c) {
                    self.closed_at = Some(fact.at);
                    self.owner = person.part.owner_at(fact.at);
                }
                self.status = DealStatus::Won;
            }
            Kind::OpportunityClosedLost if self.status != DealStatus::Won => {
                if self.closed_at.is_none_or(|c| fact.at >= c) {
                    self.closed_at = Some(fact.at);
                    self.loss_reason = attributes.detail;
                }
                self.status = DealStatus::Lost;
            }
            _ => {}
        }
    }

    /// The amount a won deal brought: its latest amount (a close carries one).
    pub(crate) fn value(&self) -> Option<(i64, Symbol)> {
        self.amount.map(|(_, minor, currency)| (minor, currency))
    }
}

impl FunnelProjection {
    /// Every person with a journey, in id order, as the views read them: their journey and
    /// the part of their facts the views read, both worked out by `refresh`.
    pub(crate) fn person_records(&self) -> Vec<PersonRecord<'_>> {
        let mut ids: Vec<&String> = self
            .people
            .iter()
            .filter(|(_, person)| person.folded)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.record(id)).collect()
    }

    /// One person as the views read them, once `refresh` has folded their journey.
    pub(crate) fn record<'a>(&'a self, id: &str) -> Option<PersonRecord<'a>> {
        let (id, person) = self.people.get_key_value(id)?;
        person.folded.then(|| super::record_of(id, person))
    }

    /// The text of a symbol, `(none)` for none.
    pub(crate) fn label(&self, symbol: Symbol) -> String {
        super::label_of(&self.symbols, symbol)
    }

    /// "Now" for clocks and ages: the latest business time on the log.
    pub(crate) fn now(&self) -> Timestamp {
        self.latest.unwrap_or(Timestamp::from_unix_millis(0))
    }
}

pub(crate) fn hours(millis: i64) -> f64 {
    millis as f64 / 3_600_000.0
}

pub(crate) fn days(millis: i64) -> f64 {
    millis as f64 / Timestamp::MILLIS_PER_DAY as f64
}

/// `a / b`, `None` when `b` is zero.
pub(crate) fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}
