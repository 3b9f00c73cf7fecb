//! The customer view's account-level tables: recurring revenue from subscription events,
//! retention by cohort of first close, revenue movements with their reasons, concentration,
//! loyalty by how the customer was acquired, referrals and advocates. Every figure below is
//! worked out by hand from the history in `history()` (the rules are in docs/views.md,
//! *Customer*), with corrections and retractions applied, and the tables kept up to date
//! event by event equal a fresh fold in either order of arrival.

use baton_core::example::example_event;
use baton_core::{
    AdvocacyAct, Campaign, CustomerTables, Event, EventId, ExpansionMotion, FunnelDefinition,
    FunnelProjection, Identity, Money, Payload, Timestamp,
};

#[derive(Default)]
struct History {
    events: Vec<Event>,
}

struct On<'a> {
    person: Option<&'a str>,
    account: Option<&'a str>,
    opportunity: Option<&'a str>,
    channel: Option<&'a str>,
}

const NOBODY: On<'static> = On {
    person: None,
    account: None,
    opportunity: None,
    channel: None,
};

fn account(account: &str) -> On<'_> {
    On {
        account: Some(account),
        ..NOBODY
    }
}

fn person<'a>(person: &'a str, account: &'a str) -> On<'a> {
    On {
        person: Some(person),
        account: Some(account),
        ..NOBODY
    }
}

fn deal<'a>(person: &'a str, account: &'a str, opportunity: &'a str) -> On<'a> {
    On {
        person: Some(person),
        account: Some(account),
        opportunity: Some(opportunity),
        channel: None,
    }
}

fn usd(major: i64) -> Money {
    Money {
        minor_units: major * 100,
        currency: "USD".into(),
    }
}

fn eur(major: i64) -> Money {
    Money {
        minor_units: major * 100,
        currency: "EUR".into(),
    }
}

impl History {
    fn push(&mut self, at: &str, on: On<'_>, payload: Payload) -> EventId {
        let mut event = example_event(payload.kind(), 0);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(self.events.len() as u128 + 1));
        event.occurred_at = Timestamp::parse_rfc3339(at).expect("time");
        event.identity = Identity {
            anonymous_id: None,
            person_id: on.person.map(str::to_owned),
            account_id: on.account.map(str::to_owned),
        };
        event.opportunity_id = on.opportunity.map(str::to_owned);
        event.campaign = Campaign {
            campaign_id: on.channel.map(|_| "spring-launch".to_owned()),
            channel: on.channel.map(str::to_owned),
            content_id: None,
        };
        event.payload = payload;
        let id = event.event_id;
        self.events.push(event);
        id
    }
}

fn started(id: &str, amount: Money, term_months: u32) -> Payload {
    Payload::SubscriptionStarted {
        subscription_id: id.into(),
        amount,
        term_months,
        plan: None,
    }
}

/// Three accounts: acct-a (won through paid social after a 20% discount, expanded, then
/// contracted), acct-b (referred by p-ref, a second subscription beside the first, then both
/// churned), acct-c (euros, its start corrected).
fn history() -> History {
    let mut h = History::default();
    // How acct-a was won.
    h.push(
        "2025-11-20T00:00:00Z",
        On {
            channel: Some("paid_social"),
            ..person("p-a", "acct-a")
        },
        Payload::ContentViewed {
            url: "https://example.com/pricing".into(),
            content_type: baton_core::ContentType::Pricing,
            title: None,
        },
    );
    h.push(
        "2025-12-01T00:00:00Z",
        deal("p-a", "acct-a", "opp-a"),
        Payload::OpportunityCreated {
            amount: Some(usd(15_000)),
            stage: None,
        },
    );
    h.push(
        "2025-12-02T00:00:00Z",
        person("p-a", "acct-a"),
        Payload::LeadAssigned {
            owner: "sam".into(),
        },
    );
    h.push(
        "2025-12-20T00:00:00Z",
        deal("p-a", "acct-a", "opp-a"),
        Payload::ProposalSent {
            proposal_id: "q-1".into(),
            amount: usd(15_000),
        },
    );
    h.push(
        "2026-01-04T00:00:00Z",
        deal("p-a", "acct-a", "opp-a"),
        Payload::OpportunityClosedWon {
            amount: usd(12_000),
        },
    );
    h.push(
        "2026-01-05T00:00:00Z",
        account("acct-a"),
        started("sub-a1", usd(12_000), 12),
    );
    // p-ref (at acct-a) refers acct-b, which is won soon after.
    h.push(
        "2026-01-02T00:00:00Z",
        person("p-ref", "acct-a"),
        Payload::Advocated {
            act: AdvocacyAct::Referral,
            referred_account_id: Some("acct-b".into()),
            channel: None,
        },
    );
    h.push(
        "2026-01-03T00:00:00Z",
        deal("p-b", "acct-b", "opp-b"),
        Payload::OpportunityCreated {
            amount: Some(usd(3_000)),
            stage: None,
        },
    );
    h.push(
        "2026-01-18T00:00:00Z",
        deal("p-b", "acct-b", "opp-b"),
        Payload::OpportunityClosedWon { amount: usd(3_000) },
    );
    h.push(
        "2026-01-20T00:00:00Z",
        account("acct-b"),
        started("sub-b1", usd(3_000), 3),
    );
    h.push(
        "2026-02-15T00:00:00Z",
        account("acct-b"),
        started("sub-b2", usd(1_000), 12),
    );
    let start_c = h.push(
        "2026-02-01T00:00:00Z",
        account("acct-c"),
        started("sub-c1", eur(5_000), 12),
    );
    h.push(
        "2026-03-10T00:00:00Z",
        account("acct-a"),
        Payload::SubscriptionExpanded {
            subscription_id: "sub-a1".into(),
            amount: usd(18_000),
            motion: ExpansionMotion::Upsell,
            plan: None,
        },
    );
    let wrong = h.push(
        "2026-04-01T00:00:00Z",
        account("acct-a"),
        Payload::SubscriptionExpanded {
            subscription_id: "sub-a1".into(),
            amount: usd(90_000),
            motion: ExpansionMotion::CrossSell,
            plan: None,
        },
    );
    h.push(
        "2026-04-01T00:00:00Z",
        account("acct-b"),
        Payload::SubscriptionChurned {
            subscription_id: "sub-b1".into(),
            reason: "budget_cut".into(),
        },
    );
    h.push(
        "2026-05-01T00:00:00Z",
        account("acct-b"),
        Payload::SubscriptionChurned {
            subscription_id: "sub-b2".into(),
            reason: "competitor".into(),
        },
    );
    h.push(
        "2026-06-01T00:00:00Z",
        account("acct-a"),
        Payload::SubscriptionContracted {
            subscription_id: "sub-a1".into(),
            amount: usd(15_000),
            reason: Some("fewer_seats".into()),
        },
    );
    h.push(
        "2026-05-01T00:00:00Z",
        account("acct-a"),
        Payload::ProductUsageSummarized {
            period_days: 30,
            active_users: 40,
        },
    );
    h.push(
        "2026-02-01T00:00:00Z",
        account("acct-b"),
        Payload::ProductUsageSummarized {
            period_days: 30,
            active_users: 10,
        },
    );
    h.push(
        "2026-03-01T00:00:00Z",
        account("acct-b"),
        Payload::ProductUsageSummarized {
            period_days: 30,
            active_users: 5,
        },
    );
    h.push(
        "2026-06-10T00:00:00Z",
        person("p-a", "acct-a"),
        Payload::NpsResponded {
            score: 9,
            comment: None,
        },
    );
    h.push(
        "2026-06-15T00:00:00Z",
        person("p-b", "acct-b"),
        Payload::NpsResponded {
            score: 3,
            comment: None,
        },
    );
    // Governance: the cross-sell was keyed by mistake; acct-c's amount was 6,000 EUR.
    h.push(
        "2026-06-15T00:00:00Z",
        NOBODY,
        Payload::Retracted {
            target: wrong,
            reason: "keyed twice".into(),
        },
    );
    h.push(
        "2026-06-15T00:00:00Z",
        NOBODY,
        Payload::Corrected {
            target: start_c,
            reason: "wrong amount".into(),
            occurred_at: None,
            replacement: Some(Box::new(started("sub-c1", eur(6_000), 12))),
        },
    );
    h
}

fn fold(events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

fn tables(events: &[Event]) -> CustomerTables {
    fold(events).person_rows().customer_tables()
}

#[test]
fn recurring_revenue_is_read_from_subscription_events() {
    let tables = tables(&history().events);
    let accounts: Vec<&str> = tables.accounts.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(accounts, ["acct-a", "acct-b", "acct-c"]);
    let [a, b, c] = [0, 1, 2].map(|i| &tables.accounts[i]);
    assert_eq!(
        (a.status, a.cohort.as_deref(), a.currency.as_deref()),
        ("active", Some("2026-01"), Some("USD"))
    );
    assert_eq!((a.starting_arr, a.arr), (Some(1_200_000), 1_500_000));
    assert_eq!((a.expansions, a.contractions, a.subscriptions), (1, 1, 1));
    assert_eq!(
        (a.active_users, a.usage_rank, a.revenue_rank),
        (Some(40), Some(1), Some(1))
    );
    assert_eq!((a.nps_responses, a.nps), (1, Some(100.0)));
    // How acct-a was won: 34 days from creation to close, 12,000 against 15,000 proposed.
    assert_eq!(a.acquired_by.as_deref(), Some("opp-a"));
    assert_eq!(a.first_touch_channel.as_deref(), Some("paid_social"));
    assert_eq!(a.sales_owner.as_deref(), Some("sam"));
    assert_eq!(a.cycle_days, Some(34.0));
    assert!((a.discount.expect("a discount") - 0.2).abs() < 1e-12);
    assert_eq!(a.handbacks, Some(0));
    // acct-b: two subscriptions, the 3-month one at 12,000 a year, both churned.
    assert_eq!(
        (b.status, b.starting_arr, b.arr),
        ("churned", Some(1_200_000), 0)
    );
    assert_eq!(b.churn_reason.as_deref(), Some("competitor"));
    assert_eq!(
        (b.active_users, b.usage_rank, b.revenue_rank),
        (Some(5), Some(2), None)
    );
    assert_eq!(b.referred_by.as_deref(), Some("p-ref"));
    assert_eq!((b.nps_responses, b.nps), (1, Some(-100.0)));
    // acct-c: the corrected amount; no won opportunity.
    assert_eq!(
        (c.currency.as_deref(), c.starting_arr, c.arr),
        (Some("EUR"), Some(600_000), 600_000)
    );
    assert_eq!((c.acquired_by.as_deref(), c.revenue_rank), (None, Some(1)));
}

#[test]
fn retention_follows_each_cohort_month_by_month() {
    let tables = tables(&history().events);
    let row = |cohort: &str, since: u32| {
        tables
            .retention
            .iter()
            .find(|r| r.cohort == cohort && r.months_since == since)
            .unwrap_or_else(|| panic!("no row {cohort} +{since}: {:#?}", tables.retention))
    };
    // January's cohort, USD: acct-a and acct-b, 12,000 each at the end of January.
    let january = row("2026-01", 0);
    assert_eq!(
        (
            january.accounts,
            january.retained,
            january.starting_arr,
            january.arr
        ),
        (2, 2, 2_400_000, 2_400_000)
    );
    // March: acct-a upsold to 18,000, acct-b has a second subscription of 1,000.
    let march = row("2026-01", 2);
    assert_eq!(march.month, "2026-03");
    assert_eq!(
        (march.arr, march.expansion, march.contraction),
        (3_100_000, 700_000, 0)
    );
    // April: acct-b's first subscription churned (13,000 → 1,000); the retracted cross-sell
    // counts for nothing.
    let april = row("2026-01", 3);
    assert_eq!(
        (
            april.retained,
            april.arr,
            april.expansion,
            april.contraction
        ),
        (2, 1_900_000, 600_000, 1_100_000)
    );
    // June, the current month: acct-a contracted to 15,000, acct-b gone.
    let june = row("2026-01", 5);
    assert_eq!(
        (june.retained, june.arr, june.expansion, june.churned_arr),
        (1, 1_500_000, 300_000, 1_200_000)
    );
    assert!(!tables.retention.iter().any(|r| r.months_since > 5));
    let euros = row("2026-02", 4);
    assert_eq!(
        (euros.currency.as_str(), euros.accounts, euros.arr),
        ("EUR", 1, 600_000)
    );
}

#[test]
fn movements_carry_their_reasons() {
    let tables = tables(&history().events);
    /// Month, movement, reason, currency, events, ARR change.
    type Moved<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u64, i64);
    let movements: Vec<Moved> = tables
        .movements
        .iter()
        .map(|m| {
            (
                m.month.as_str(),
                m.movement,
                m.reason.as_deref(),
                m.currency.as_str(),
                m.events,
                m.arr_change,
            )
        })
        .collect();
    assert_eq!(
        movements,
        [
            ("2026-01", "new", None, "USD", 2, 2_400_000),
            ("2026-02", "new", None, "EUR", 1, 600_000),
            (
                "2026-02",
                "expansion",
                Some("new_subscription"),
                "USD",
                1,
                100_000
            ),
            ("2026-03", "expansion", Some("upsell"), "USD", 1, 600_000),
            (
                "2026-04",
                "contraction",
                Some("budget_cut"),
                "USD",
                1,
                -1_200_000
            ),
            ("2026-05", "churn", Some("competitor"), "USD", 1, -100_000),
            (
                "2026-06",
                "contraction",
                Some("fewer_seats"),
                "USD",
                1,
                -300_000
            ),
        ]
    );
}

#[test]
fn loyalty_concentration_referrals_and_advocates() {
    let tables = tables(&history().events);
    let loyalty = |dimension: &str, value: &str| {
        tables
            .loyalty
            .iter()
            .find(|r| r.dimension == dimension && r.value == value)
            .unwrap_or_else(|| panic!("no row {dimension} {value}: {:#?}", tables.loyalty))
    };
    let social = loyalty("first_touch_channel", "paid_social");
    assert_eq!(
        (
            social.accounts,
            social.active,
            social.starting_arr,
            social.arr
        ),
        (1, 1, 1_200_000, 1_500_000)
    );
    assert_eq!((social.nps_responses, social.promoters), (1, 1));
    let untouched = loyalty("first_touch_channel", "(none)");
    assert_eq!(
        (untouched.accounts, untouched.churned, untouched.arr),
        (1, 1, 0)
    );
    assert_eq!(loyalty("discount", "10-25%").accounts, 1);
    assert_eq!(loyalty("discount", "(no proposal)").accounts, 1);
    assert_eq!(loyalty("cycle", "31-90 days").accounts, 1);
    assert_eq!(loyalty("cycle", "0-30 days").accounts, 1);
    assert_eq!(loyalty("sales_owner", "sam").kept_arr, 1_200_000);
    let unwon = loyalty("sales_owner", "(no won opportunity)");
    assert_eq!((unwon.currency.as_str(), unwon.accounts), ("EUR", 1));

    let usage: Vec<(u32, u64, i64)> = tables
        .concentration
        .iter()
        .filter(|r| r.ranking == "usage")
        .map(|r| (r.decile, r.accounts, r.value))
        .collect();
    assert_eq!(usage, [(5, 1, 40), (10, 1, 5)]);
    let top = &tables
        .concentration
        .iter()
        .find(|r| r.ranking == "usage")
        .expect("usage");
    assert!((top.share - 40.0 / 45.0).abs() < 1e-12);

    assert_eq!(tables.referrals.len(), 1);
    let referral = &tables.referrals[0];
    assert_eq!(
        (referral.account.as_str(), referral.referred_by.as_str()),
        ("acct-b", "p-ref")
    );
    assert_eq!((referral.opportunities, referral.won), (1, 1));
    assert_eq!(referral.revenue, [("USD".to_owned(), 300_000)]);
    let advocate = tables
        .advocates
        .iter()
        .find(|a| a.person == "p-ref")
        .expect("p-ref advocated");
    assert_eq!(advocate.acts, [0, 0, 0, 1]);
    assert_eq!((advocate.referred_accounts, advocate.referred_won), (1, 1));
}

#[test]
fn kept_tables_equal_a_fresh_fold_in_any_order() {
    let events = history().events;
    let expected = tables(&events);
    for order in [events.clone(), events.iter().rev().cloned().collect()] {
        let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
        for (index, event) in order.iter().enumerate() {
            projection.apply(event);
            projection.refresh();
            if index == 0 {
                // The totals (and the ledgers' parts) are kept from the first build on.
                projection.person_rows();
            }
        }
        assert_eq!(projection.person_rows().customer_tables(), expected);
    }
}
