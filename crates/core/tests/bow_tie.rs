//! The bow tie: customer stages past `won` (docs/funnels.md, *Customer stages*). The person who
//! won the deal moves through them on their own facts and on their account's subscription
//! events and usage summaries from the win on; a customer detour returns them to a customer
//! stage without a hand-back; churned ends the customer's life; a definition without customer
//! stages behaves as before.

use baton_core::example::example_event;
use baton_core::{
    AdvocacyAct, Event, EventId, ExpansionMotion, FunnelDefinition, FunnelProjection, Identity,
    Money, Payload, Place, Timestamp,
};

#[derive(Default)]
struct History {
    events: Vec<Event>,
}

impl History {
    fn push(&mut self, at: &str, person: Option<&str>, payload: Payload) -> EventId {
        let mut event = example_event(payload.kind(), 0);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(self.events.len() as u128 + 1));
        event.occurred_at = Timestamp::parse_rfc3339(at).expect("time");
        event.identity = Identity {
            anonymous_id: None,
            person_id: person.map(str::to_owned),
            account_id: Some("acct-1".to_owned()),
        };
        event.opportunity_id = Some("opp-1".to_owned());
        event.payload = payload;
        let id = event.event_id;
        self.events.push(event);
        id
    }
}

fn usd(major: i64) -> Money {
    Money {
        minor_units: major * 100,
        currency: "USD".into(),
    }
}

fn usage() -> Payload {
    Payload::ProductUsageSummarized {
        period_days: 30,
        active_users: 12,
    }
}

/// p-1 wins the deal; the account's contract and usage follow; p-2, of the same account,
/// never reaches won.
fn history() -> History {
    let mut h = History::default();
    h.push(
        "2026-01-01T00:00:00Z",
        Some("p-1"),
        Payload::OpportunityCreated {
            amount: Some(usd(10_000)),
            stage: None,
        },
    );
    h.push(
        "2026-01-02T00:00:00Z",
        Some("p-2"),
        Payload::FormSubmitted {
            form_id: "f".into(),
            form_kind: baton_core::FormKind::ContactUs,
        },
    );
    // Usage before the win moves nobody.
    h.push("2026-01-03T00:00:00Z", None, usage());
    h.push(
        "2026-01-10T00:00:00Z",
        Some("p-1"),
        Payload::OpportunityClosedWon {
            amount: usd(10_000),
        },
    );
    h.push(
        "2026-01-12T00:00:00Z",
        None,
        Payload::SubscriptionStarted {
            subscription_id: "s-1".into(),
            amount: usd(10_000),
            term_months: 12,
            plan: None,
        },
    );
    h.push("2026-02-12T00:00:00Z", None, usage());
    h.push(
        "2026-05-01T00:00:00Z",
        None,
        Payload::SubscriptionContracted {
            subscription_id: "s-1".into(),
            amount: usd(8_000),
            reason: Some("fewer_seats".into()),
        },
    );
    h.push("2026-06-01T00:00:00Z", None, usage());
    h.push(
        "2027-01-12T00:00:00Z",
        None,
        Payload::SubscriptionRenewed {
            subscription_id: "s-1".into(),
            amount: usd(9_000),
            term_months: 12,
        },
    );
    h.push(
        "2027-03-01T00:00:00Z",
        None,
        Payload::SubscriptionExpanded {
            subscription_id: "s-1".into(),
            amount: usd(12_000),
            motion: ExpansionMotion::Upsell,
            plan: None,
        },
    );
    h.push(
        "2027-04-01T00:00:00Z",
        Some("p-1"),
        Payload::Advocated {
            act: AdvocacyAct::Review,
            referred_account_id: None,
            channel: None,
        },
    );
    h
}

fn fold(definition: FunnelDefinition, events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(definition);
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

fn path(projection: &FunnelProjection, person: &str) -> Vec<(String, bool)> {
    projection
        .journey(person)
        .expect("a journey")
        .transitions
        .iter()
        .map(|t| (projection.place_name(t.to), t.is_return()))
        .collect()
}

#[test]
fn the_winner_moves_through_the_customer_stages() {
    let projection = fold(FunnelDefinition::default_funnel(), &history().events);
    let path: Vec<(String, bool)> = path(&projection, "p-1");
    let expected = [
        ("opportunity", false),
        ("won", false),
        ("onboarding", false),
        ("adopted", false),
        // The contraction: at risk, back to onboarding (a return, not an entry).
        ("at_risk", false),
        ("onboarding", true),
        ("adopted", false),
        ("renewed", false),
        ("expanded", false),
        ("advocate", false),
    ];
    let expected: Vec<(String, bool)> = expected
        .iter()
        .map(|(name, back)| ((*name).to_owned(), *back))
        .collect();
    assert_eq!(path, expected);
    let journey = projection.journey("p-1").expect("p-1");
    // Hand-offs are marketing's and sales': the customer detour hands nothing back.
    assert!(
        journey
            .handoffs
            .iter()
            .all(|h| h.at < ts("2026-01-11T00:00:00Z"))
    );
    // p-2 never won: the account's contract moves nobody else.
    assert_eq!(path_of_p2(&projection), ["inquiry"]);
    let summary = projection.summary();
    let stage = |name: &str| {
        summary
            .stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    };
    assert_eq!(
        (stage("onboarding").entered, stage("onboarding").returned),
        (1, 1)
    );
    assert_eq!(stage("won").converted, 1, "won converts to onboarding");
    assert_eq!(stage("advocate").current, 1);
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("time")
}

fn path_of_p2(projection: &FunnelProjection) -> Vec<String> {
    path(projection, "p-2")
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn churned_ends_the_customer_s_life_and_a_retraction_undoes_it() {
    let mut history = history();
    let churn = history.push(
        "2027-06-01T00:00:00Z",
        None,
        Payload::SubscriptionChurned {
            subscription_id: "s-1".into(),
            reason: "budget_cut".into(),
        },
    );
    history.push("2027-07-01T00:00:00Z", None, usage());
    let projection = fold(FunnelDefinition::default_funnel(), &history.events);
    let journey = projection.journey("p-1").expect("p-1");
    assert_eq!(projection.place_name(journey.current()), "churned");
    let summary = projection.summary();
    let advocate = summary
        .stages
        .iter()
        .find(|s| s.name == "advocate")
        .expect("advocate");
    assert_eq!(advocate.converted, 0, "churning is not converting");
    history.push(
        "2027-08-01T00:00:00Z",
        None,
        Payload::Retracted {
            target: churn,
            reason: "cancelled by mistake".into(),
        },
    );
    let projection = fold(FunnelDefinition::default_funnel(), &history.events);
    let journey = projection.journey("p-1").expect("p-1");
    assert_eq!(projection.place_name(journey.current()), "advocate");
}

#[test]
fn without_customer_stages_a_won_journey_is_over() {
    let text = baton_core::DEFAULT_FUNNEL_TOML;
    let cut = text.find("# The customer's life").expect("customer stages");
    let detours = text.find("[[detour]]").expect("detours");
    let at_risk = text
        .find("[[detour]]\nname = \"at_risk\"")
        .expect("at_risk");
    let without = format!("{}{}", &text[..cut], &text[detours..at_risk]);
    let definition = FunnelDefinition::parse("acquisition.toml", &without).expect("valid");
    assert_eq!(definition.customer_from(), None);
    let projection = fold(definition, &history().events);
    let journey = projection.journey("p-1").expect("p-1");
    assert_eq!(projection.place_name(journey.current()), "won");
    assert_eq!(
        journey.transitions.last().map(|t| t.to),
        Some(Place::Stage(7))
    );
}

#[test]
fn kept_journeys_equal_a_fresh_fold_in_any_order() {
    let events = history().events;
    let expected = fold(FunnelDefinition::default_funnel(), &events);
    for order in [events.clone(), events.iter().rev().cloned().collect()] {
        let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in &order {
            projection.apply(event);
            projection.refresh();
        }
        for person in ["p-1", "p-2"] {
            assert_eq!(
                projection.journey(person),
                expected.journey(person),
                "{person}"
            );
        }
        assert_eq!(projection.summary(), expected.summary());
    }
}

/// Fit against the best customers: `account.lookalike` is `yes` for an account with the
/// industry and size of one of the top tenth of customers by ARR, and a prospect's fit
/// follows when the best customers change.
#[test]
fn fit_can_read_whether_an_account_looks_like_the_best_customers() {
    let text = baton_core::DEFAULT_FUNNEL_TOML.replacen(
        "# MQL:",
        "[[fit.points]]\ntrait = \"account.lookalike\"\nany_of = [\"yes\"]\npoints = 50\n\n# MQL:",
        1,
    );
    let definition = FunnelDefinition::parse("lookalike.toml", &text).expect("valid");
    assert!(definition.reads_lookalike());
    let mut events: Vec<Event> = Vec::new();
    let push = |events: &mut Vec<Event>,
                at: &str,
                person: Option<&str>,
                account: &str,
                payload: Payload| {
        let mut event = example_event(payload.kind(), 0);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(events.len() as u128 + 1));
        event.occurred_at = Timestamp::parse_rfc3339(at).expect("time");
        event.identity = Identity {
            anonymous_id: None,
            person_id: person.map(str::to_owned),
            account_id: Some(account.to_owned()),
        };
        event.opportunity_id = None;
        event.payload = payload;
        events.push(event);
    };
    let traits = |industry: &str, employees: u32| Payload::AccountUpdated {
        name: None,
        domain: None,
        industry: Some(industry.into()),
        employees: Some(employees),
        region: None,
    };
    let start = |id: &str, major: i64| Payload::SubscriptionStarted {
        subscription_id: id.into(),
        amount: usd(major),
        term_months: 12,
        plan: None,
    };
    let form = || Payload::FormSubmitted {
        form_id: "f".into(),
        form_kind: baton_core::FormKind::ContactUs,
    };
    push(
        &mut events,
        "2026-01-01T00:00:00Z",
        None,
        "acct-big",
        traits("software", 500),
    );
    push(
        &mut events,
        "2026-01-01T00:00:00Z",
        None,
        "acct-small",
        traits("retail", 20),
    );
    push(
        &mut events,
        "2026-01-01T00:00:00Z",
        None,
        "acct-p1",
        traits("software", 300),
    );
    push(
        &mut events,
        "2026-01-01T00:00:00Z",
        None,
        "acct-p2",
        traits("retail", 30),
    );
    push(
        &mut events,
        "2026-02-01T00:00:00Z",
        None,
        "acct-big",
        start("s-big", 100_000),
    );
    push(
        &mut events,
        "2026-02-01T00:00:00Z",
        None,
        "acct-small",
        start("s-small", 1_000),
    );
    push(
        &mut events,
        "2026-03-01T00:00:00Z",
        Some("p-x"),
        "acct-p1",
        form(),
    );
    push(
        &mut events,
        "2026-03-01T00:00:00Z",
        Some("p-y"),
        "acct-p2",
        form(),
    );
    let before = events.clone();
    // The small customer grows past the big one: it is the best customer now.
    push(
        &mut events,
        "2026-04-01T00:00:00Z",
        None,
        "acct-small",
        Payload::SubscriptionExpanded {
            subscription_id: "s-small".into(),
            amount: usd(200_000),
            motion: ExpansionMotion::Upsell,
            plan: None,
        },
    );
    let fit = |projection: &FunnelProjection, person: &str| {
        projection.journey(person).expect("a journey").fit
    };
    let base = fold(FunnelDefinition::default_funnel(), &events);
    let projection = fold(definition.clone(), &before);
    assert_eq!(
        fit(&projection, "p-x"),
        fit(&base, "p-x") + 50.0,
        "like acct-big"
    );
    assert_eq!(
        fit(&projection, "p-y"),
        fit(&base, "p-y"),
        "like nobody's best"
    );
    let projection = fold(definition.clone(), &events);
    assert_eq!(fit(&projection, "p-x"), fit(&base, "p-x"));
    assert_eq!(
        fit(&projection, "p-y"),
        fit(&base, "p-y") + 50.0,
        "like acct-small"
    );
    // Kept up to date event by event, in either order, as folded at once.
    for order in [events.clone(), events.iter().rev().cloned().collect()] {
        let mut kept = FunnelProjection::new(definition.clone());
        for event in &order {
            kept.apply(event);
            kept.refresh();
        }
        for person in ["p-x", "p-y"] {
            assert_eq!(kept.journey(person), projection.journey(person), "{person}");
        }
    }
    // Stored and restored: the profile is read again from the ledgers.
    let mut stored = FunnelProjection::tracking_changes(definition.clone());
    for event in &events {
        stored.apply(event);
    }
    stored.refresh();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = stored
        .take_changes()
        .expect("entries")
        .into_iter()
        .filter_map(|entry| Some((entry.key, entry.value?)))
        .collect();
    let restored = FunnelProjection::restore(definition.clone(), entries).expect("restores");
    for person in ["p-x", "p-y"] {
        assert_eq!(
            restored.journey(person),
            projection.journey(person),
            "{person}"
        );
    }
    let wrong = text.replacen("any_of = [\"yes\"]", "any_of = [\"maybe\"]", 1);
    let message = FunnelDefinition::parse("lookalike.toml", &wrong)
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("account.lookalike is `yes` or `no`, got any_of = [\"maybe\"]"),
        "{message}"
    );
}
