//! What the views read of one person's facts, worked out when the person's journey is folded
//! (`FunnelProjection::refresh`) instead of on every build of the views. A build then reads
//! a few values per person rather than every fact, and a person whose facts did not change
//! costs the same whatever the length of their history.
//!
//! A part depends on exactly what the journey depends on (the person's facts after stitching,
//! retractions and corrections), so it is as fresh as the journey. What depends on "now"
//! (ages, decay, breaches, in-flight windows) or on other people (opportunities carried by
//! several people, accounts) stays in the views and their totals (`totals.rs`).

use crate::event::{Family, Kind};
use crate::journey::{Attributed, Attributes, Fact, Journey};
use crate::symbol::Symbol;
use crate::timestamp::Timestamp;

/// One person's facts as the views read them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PersonPart {
    /// The earliest touch: what first-touch attribution credits.
    pub(crate) first_touch: Option<Attributed>,
    /// The first demo request, and how many touches came before it.
    pub(crate) first_demo: Option<(Timestamp, u64)>,
    /// Follow-up clocks accepted and rejected: each clock by the first acceptance or
    /// rejection from its start to the next clock's.
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    /// For each follow-up clock, in order: the owner named by the latest fact up to its first
    /// action (or its deadline when unanswered), `Symbol::NONE` when no fact names one.
    pub(crate) clock_owners: Vec<Symbol>,
    /// Each piece of content and each campaign the person touched.
    pub(crate) touched: Vec<Touched>,
    /// The facts that name an opportunity, in (business time, event id) order.
    pub(crate) deal_facts: Vec<Attributed>,
    /// The person's account when the journey was folded: what the views count them under
    /// until the next fold (a link applied since is not counted until then).
    pub(crate) account: Option<String>,
    /// The event ids of their closes won, for `FunnelProjection::outcomes` (which close of an
    /// opportunity counts is decided across people there).
    pub(crate) closes_won: Vec<crate::event::EventId>,
    /// Whether they have a close lost.
    pub(crate) closed_lost: bool,
    /// What the customer view reads (`view/customer.rs`).
    pub(crate) customer: super::customer::CustomerPart,
    /// What the attribution view reads (`view/attribution.rs`).
    pub(crate) attribution: super::attribution::AttributionPart,
    /// Who the facts name as owner, from when: a new entry at each fact naming another
    /// owner than the one before.
    pub(crate) owners: Vec<(Timestamp, Symbol)>,
}

/// A piece of content or a campaign, as one person touched it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Touched {
    pub(crate) campaign: bool,
    pub(crate) symbol: Symbol,
    /// 32 bits each: a person has tens of these, and 24 bytes instead of 32 is 30 MB at a
    /// hundred thousand people.
    pub(crate) touches: u32,
    pub(crate) views: u32,
    /// The first touch's business time.
    pub(crate) first_at: Timestamp,
}

impl PersonPart {
    /// The owner named by the latest fact with an owner at or before `at`.
    pub(crate) fn owner_at(&self, at: Timestamp) -> Symbol {
        let named = self.owners.partition_point(|(from, _)| *from <= at);
        named
            .checked_sub(1)
            .map_or(Symbol::NONE, |index| self.owners[index].1)
    }

    /// The opportunities the facts name, each once, in symbol order.
    pub(crate) fn opportunities(&self) -> Vec<Symbol> {
        let mut named: Vec<Symbol> = self
            .deal_facts
            .iter()
            .map(|deal| deal.attributes.opportunity)
            .collect();
        named.sort_unstable();
        named.dedup();
        named
    }

    /// The part of a person with these facts (stitched, governed, in (business time, event
    /// id) order) and the journey folded from them; `attributes_of` gives a fact's attributes
    /// as the views read them.
    pub(crate) fn of(
        facts: &[Fact],
        journey: &Journey,
        attributes_of: impl Fn(&Fact) -> Attributes,
    ) -> PersonPart {
        let mut part = PersonPart::default();
        for fact in facts {
            match fact.kind {
                Kind::OpportunityClosedWon => part.closes_won.push(fact.event_id),
                Kind::OpportunityClosedLost => part.closed_lost = true,
                _ => {}
            }
            let attributes = attributes_of(fact);
            if attributes.owner.is_some()
                && part
                    .owners
                    .last()
                    .is_none_or(|(_, owner)| *owner != attributes.owner)
            {
                part.owners.push((fact.at, attributes.owner));
            }
            if attributes.opportunity.is_some() {
                part.deal_facts.push(Attributed {
                    fact: *fact,
                    attributes,
                });
            }
            if fact.kind == Kind::DemoRequested && part.first_demo.is_none() {
                part.first_demo = Some((fact.at, 0));
            }
            if fact.kind.family() != Family::Touch {
                continue;
            }
            if part.first_touch.is_none() {
                part.first_touch = Some(Attributed {
                    fact: *fact,
                    attributes,
                });
            }
            for (campaign, symbol) in [(false, attributes.content), (true, attributes.campaign)] {
                if symbol.is_none() {
                    continue;
                }
                let viewed = u32::from(fact.kind == Kind::ContentViewed);
                match part
                    .touched
                    .iter_mut()
                    .find(|t| t.campaign == campaign && t.symbol == symbol)
                {
                    Some(touched) => {
                        touched.touches = touched.touches.saturating_add(1);
                        touched.views = touched.views.saturating_add(viewed);
                    }
                    None => part.touched.push(Touched {
                        campaign,
                        symbol,
                        touches: 1,
                        views: viewed,
                        first_at: fact.at,
                    }),
                }
            }
        }
        if let Some((demo, _)) = part.first_demo {
            // Touches strictly before it: one at the same time as the demo is not before.
            let before = facts
                .iter()
                .filter(|fact| fact.kind.family() == Family::Touch && fact.at < demo)
                .count();
            part.first_demo = Some((demo, before as u64));
        }
        for (index, clock) in journey.follow_ups.iter().enumerate() {
            let until = journey.follow_ups.get(index + 1).map(|next| next.mql_at);
            let answer = facts.iter().find(|fact| {
                fact.at >= clock.mql_at
                    && until.is_none_or(|until| fact.at < until)
                    && matches!(fact.kind, Kind::LeadAccepted | Kind::LeadRejected)
            });
            match answer.map(|fact| fact.kind) {
                Some(Kind::LeadAccepted) => part.accepted += 1,
                Some(_) => part.rejected += 1,
                None => {}
            }
            let held_until = clock.first_action_at.unwrap_or(clock.deadline);
            let owner = facts
                .iter()
                .take_while(|fact| fact.at <= held_until)
                .map(|fact| attributes_of(fact).owner)
                .filter(|owner| owner.is_some())
                .last()
                .unwrap_or(Symbol::NONE);
            part.clock_owners.push(owner);
        }
        // Kept until the person's next fold: without the room left by growing them.
        part.touched.shrink_to_fit();
        part.deal_facts.shrink_to_fit();
        part.owners.shrink_to_fit();
        part
    }
}
