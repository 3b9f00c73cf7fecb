//! The account's ledger: the facts the customer view reads per account rather than per person.
//!
//! A contract is the account's (`docs/events.md`, *Customer*): every subscription event, every
//! usage summary naming an account, and every referral naming the account referred, is kept in
//! that account's ledger in (business time, event id) order. When a ledger changes (an event,
//! a retraction or correction of one of its events, a change of the account's traits), the
//! refresh works out its part again ([`LedgerPart`]): the account's recurring revenue after
//! each of its events, its latest usage, the referral that brought it. Everything the customer
//! tables show of an account is read from that part (`view/customer_accounts.rs`).
//!
//! Recurring revenue (`docs/views.md`, *Customer accounts*): a subscription's annual recurring
//! revenue (ARR) is its amount per term × 12 ÷ its term in months, in minor units rounded
//! toward zero, while it is active; the account's ARR in a currency is the sum over its
//! subscriptions in that currency.

use super::marketing::Segment;
use super::{Correction, HashMap, HashSet};
use crate::event::{EventId, Payload};
use crate::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// One event an account's ledger holds, as it arrived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LedgerEvent {
    pub(crate) at: Timestamp,
    pub(crate) id: EventId,
    /// Who made it, for a referral: the envelope's `person_id`.
    pub(crate) person: Option<String>,
    pub(crate) payload: Payload,
}

/// Every ledger event of one account, in (business time, event id) order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AccountLedger {
    pub(crate) events: Vec<LedgerEvent>,
}

impl AccountLedger {
    /// Whether an event of this payload goes to the ledger of an account, and which: the
    /// envelope's account for the subscription kinds and usage summaries, the account referred
    /// for a referral.
    pub(crate) fn account_of<'a>(
        payload: &'a Payload,
        envelope_account: Option<&'a String>,
    ) -> Option<&'a String> {
        match payload {
            Payload::SubscriptionStarted { .. }
            | Payload::SubscriptionRenewed { .. }
            | Payload::SubscriptionExpanded { .. }
            | Payload::SubscriptionContracted { .. }
            | Payload::SubscriptionChurned { .. }
            | Payload::ProductUsageSummarized { .. } => envelope_account,
            Payload::Advocated {
                act: crate::event::AdvocacyAct::Referral,
                referred_account_id,
                ..
            } => referred_account_id.as_ref(),
            _ => None,
        }
    }

    /// Whether a payload is of a kind a ledger holds.
    fn holds(payload: &Payload) -> bool {
        AccountLedger::account_of(payload, Some(&String::new())).is_some()
    }

    pub(crate) fn insert(&mut self, event: LedgerEvent) {
        let at = self
            .events
            .partition_point(|e| (e.at, e.id) < (event.at, event.id));
        if self.events.get(at).is_some_and(|e| e.id == event.id) {
            return;
        }
        self.events.insert(at, event);
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = EventId> + '_ {
        self.events.iter().map(|event| event.id)
    }

    /// The events that count, corrections applied, in (business time, event id) order. A
    /// correction's time moves the event; its replacement is read when it is of a kind the
    /// ledger holds, and otherwise takes the event out of the ledger.
    fn governed<'a>(
        &'a self,
        retracted: &HashSet<EventId>,
        corrections: &'a HashMap<EventId, Correction>,
    ) -> Vec<(Timestamp, EventId, Option<&'a str>, &'a Payload)> {
        let mut events: Vec<_> = self
            .events
            .iter()
            .filter(|event| !retracted.contains(&event.id))
            .filter_map(|event| {
                let Some(correction) = corrections.get(&event.id) else {
                    return Some((event.at, event.id, event.person.as_deref(), &event.payload));
                };
                let at = correction.occurred_at.unwrap_or(event.at);
                let payload = match &correction.replacement {
                    None => &event.payload,
                    Some(replacement) if AccountLedger::holds(replacement) => replacement,
                    Some(_) => return None,
                };
                Some((at, event.id, event.person.as_deref(), payload))
            })
            .collect();
        events.sort_by_key(|(at, id, _, _)| (*at, *id));
        events
    }
}

impl AccountLedger {
    /// The ledger's subscription events and usage summaries at or after `since`, as facts of
    /// the journey of a person of the account past the sale (what the customer stages of a
    /// definition are entered by), governed as above.
    pub(crate) fn customer_facts(
        &self,
        since: Timestamp,
        retracted: &HashSet<EventId>,
        corrections: &HashMap<EventId, Correction>,
    ) -> Vec<crate::journey::Fact> {
        self.governed(retracted, corrections)
            .into_iter()
            .filter(|(at, _, _, payload)| {
                *at >= since && !matches!(payload, Payload::Advocated { .. })
            })
            .map(|(at, id, _, payload)| crate::journey::Fact {
                at,
                event_id: id,
                kind: payload.kind(),
                content_type: None,
                need_declared: None,
                attributes: crate::symbol::AttributesId::NONE,
            })
            .collect()
    }
}

/// How an event moved an account's recurring revenue in one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Movement {
    /// From nothing, the account's first revenue ever.
    New,
    /// From nothing, after the account had revenue before.
    Reactivation,
    Expansion,
    Contraction,
    /// To nothing.
    Churn,
    /// A renewal that left it unchanged.
    Renewal,
}

impl Movement {
    pub const fn as_str(self) -> &'static str {
        match self {
            Movement::New => "new",
            Movement::Reactivation => "reactivation",
            Movement::Expansion => "expansion",
            Movement::Contraction => "contraction",
            Movement::Churn => "churn",
            Movement::Renewal => "renewal",
        }
    }
}

/// One change of an account's ARR in one currency.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) at: Timestamp,
    pub(crate) currency: String,
    pub(crate) movement: Movement,
    /// Why: a churn's or contraction's reason, an expansion's motion (`upsell`,
    /// `cross_sell`), `new_subscription` for a subscription started beside others,
    /// `renewal` for a renewal at another amount; `None` otherwise.
    pub(crate) reason: Option<String>,
    /// The account's ARR in `currency` before and after the event.
    pub(crate) before: i64,
    pub(crate) after: i64,
}

/// What the customer tables read of one account's ledger, worked out when it changes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LedgerPart {
    pub(crate) account: String,
    pub(crate) segment: Segment,
    /// Every change of the account's ARR, in order.
    pub(crate) changes: Vec<Change>,
    /// Subscriptions ever started, renewed, expanded, contracted or churned.
    pub(crate) subscriptions: u32,
    /// The latest usage summary naming the account: when, active users, period in days.
    pub(crate) usage: Option<(Timestamp, u32, u32)>,
    /// The earliest referral of the account that counts: when, and the person who made it
    /// (as the event named them).
    pub(crate) referral: Option<(Timestamp, String)>,
}

impl super::rows::Keyed for LedgerPart {
    type Key = str;
    fn key(&self) -> &str {
        &self.account
    }
}

/// A subscription as its events left it.
struct Subscription {
    currency: String,
    amount: i64,
    term_months: u32,
    active: bool,
}

impl Subscription {
    /// Active at `amount` per term of `term_months` (a start or a renewal).
    fn new(amount: &crate::event::Money, term_months: u32) -> Subscription {
        Subscription {
            currency: amount.currency.clone(),
            amount: amount.minor_units,
            term_months,
            active: true,
        }
    }

    /// Annual recurring revenue in minor units, rounded toward zero.
    fn arr(&self) -> i64 {
        if !self.active {
            return 0;
        }
        let annual = i128::from(self.amount) * 12 / i128::from(self.term_months.max(1));
        i64::try_from(annual).unwrap_or(if annual < 0 { i64::MIN } else { i64::MAX })
    }
}

/// A subscription first seen in an expansion or contraction has this term until a start or a
/// renewal names one.
const DEFAULT_TERM_MONTHS: u32 = 12;

/// Sets a subscription's amount per term (an expansion or a contraction): one not seen before
/// starts here, with the default term.
fn set_amount<'a>(
    subscriptions: &mut std::collections::BTreeMap<&'a str, Subscription>,
    id: &'a str,
    amount: &crate::event::Money,
) {
    let subscription = subscriptions
        .entry(id)
        .or_insert_with(|| Subscription::new(amount, DEFAULT_TERM_MONTHS));
    subscription.currency = amount.currency.clone();
    subscription.amount = amount.minor_units;
    subscription.active = true;
}

impl LedgerPart {
    pub(crate) fn of(
        account: &str,
        ledger: &AccountLedger,
        segment: Segment,
        retracted: &HashSet<EventId>,
        corrections: &HashMap<EventId, Correction>,
    ) -> LedgerPart {
        let mut part = LedgerPart {
            account: account.to_owned(),
            segment,
            changes: Vec::new(),
            subscriptions: 0,
            usage: None,
            referral: None,
        };
        let mut subscriptions: std::collections::BTreeMap<&str, Subscription> = Default::default();
        let mut had_revenue = false;
        for (at, _, person, payload) in ledger.governed(retracted, corrections) {
            let arr_by_currency =
                |subscriptions: &std::collections::BTreeMap<&str, Subscription>| {
                    let mut totals: std::collections::BTreeMap<String, i64> = Default::default();
                    for subscription in subscriptions.values() {
                        let total = totals.entry(subscription.currency.clone()).or_default();
                        *total = total.saturating_add(subscription.arr());
                    }
                    totals
                };
            let before = arr_by_currency(&subscriptions);
            let reason: Option<String> = match payload {
                Payload::ProductUsageSummarized {
                    period_days,
                    active_users,
                } => {
                    part.usage = Some((at, *active_users, *period_days));
                    continue;
                }
                Payload::Advocated { .. } => {
                    if part.referral.is_none()
                        && let Some(person) = person
                    {
                        part.referral = Some((at, person.to_owned()));
                    }
                    continue;
                }
                Payload::SubscriptionStarted {
                    subscription_id,
                    amount,
                    term_months,
                    ..
                } => {
                    let beside = subscriptions
                        .iter()
                        .any(|(id, s)| *id != subscription_id.as_str() && s.active);
                    subscriptions.insert(subscription_id, Subscription::new(amount, *term_months));
                    beside.then(|| "new_subscription".to_owned())
                }
                Payload::SubscriptionRenewed {
                    subscription_id,
                    amount,
                    term_months,
                } => {
                    subscriptions.insert(subscription_id, Subscription::new(amount, *term_months));
                    Some("renewal".to_owned())
                }
                Payload::SubscriptionExpanded {
                    subscription_id,
                    amount,
                    motion,
                    ..
                } => {
                    set_amount(&mut subscriptions, subscription_id, amount);
                    Some(motion.as_str().to_owned())
                }
                Payload::SubscriptionContracted {
                    subscription_id,
                    amount,
                    reason,
                } => {
                    set_amount(&mut subscriptions, subscription_id, amount);
                    reason.clone()
                }
                Payload::SubscriptionChurned {
                    subscription_id,
                    reason,
                } => {
                    if let Some(subscription) = subscriptions.get_mut(subscription_id.as_str()) {
                        subscription.active = false;
                    }
                    Some(reason.clone())
                }
                _ => continue,
            };
            part.subscriptions = subscriptions.len() as u32;
            let after = arr_by_currency(&subscriptions);
            let renewed = matches!(payload, Payload::SubscriptionRenewed { .. });
            let currencies: std::collections::BTreeSet<&String> =
                before.keys().chain(after.keys()).collect();
            for currency in currencies {
                let was = before.get(currency).copied().unwrap_or(0);
                let is = after.get(currency).copied().unwrap_or(0);
                let movement = if was <= 0 && is > 0 {
                    if had_revenue {
                        Movement::Reactivation
                    } else {
                        Movement::New
                    }
                } else if was > 0 && is <= 0 {
                    Movement::Churn
                } else if is > was {
                    Movement::Expansion
                } else if is < was {
                    Movement::Contraction
                } else if renewed && is > 0 {
                    Movement::Renewal
                } else {
                    continue;
                };
                let reason = match movement {
                    Movement::New | Movement::Renewal => None,
                    _ => reason.clone(),
                };
                part.changes.push(Change {
                    at,
                    currency: currency.clone(),
                    movement,
                    reason,
                    before: was.max(0),
                    after: is.max(0),
                });
            }
            had_revenue |= after.values().any(|arr| *arr > 0);
        }
        part
    }
}
