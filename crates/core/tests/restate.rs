//! Restating figures between two knowledge times (docs/funnels.md, *Restating*): each cause
//! moves what it should, the causes add up to the change, and the figures at the second time
//! are those of a fold of every event known then.

use baton_core::example::example_event;
use baton_core::restate::{Cause, Figure, figures, restate};
use baton_core::{
    Event, EventId, FunnelDefinition, FunnelProjection, Identity, Money, Payload, Timestamp,
};

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("time")
}

fn event(n: u128, at: &str, person: &str, opportunity: Option<&str>, payload: Payload) -> Event {
    let mut event = example_event(payload.kind(), 0);
    event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(n));
    event.occurred_at = ts(at);
    event.identity = Identity {
        anonymous_id: None,
        person_id: Some(person.to_owned()),
        account_id: Some(format!("acct-{person}")),
    };
    event.opportunity_id = opportunity.map(str::to_owned);
    event.payload = payload;
    event
}

fn usd(major: i64) -> Money {
    Money {
        minor_units: major * 100,
        currency: "USD".into(),
    }
}

fn won(n: u128, at: &str, person: &str, opportunity: &str, major: i64) -> Event {
    event(
        n,
        at,
        person,
        Some(opportunity),
        Payload::OpportunityClosedWon { amount: usd(major) },
    )
}

fn fold(definition: FunnelDefinition, events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(definition);
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

fn revenue() -> Figure {
    Figure {
        name: "won revenue".into(),
        currency: Some("USD".into()),
    }
}

#[test]
fn each_cause_moves_what_it_should_and_the_causes_add_up() {
    let from = ts("2026-01-31T23:59:59Z");
    let to = ts("2026-02-28T23:59:59Z");
    // Known at the month's end: three deals won in January.
    let known = vec![
        won(1, "2026-01-10T00:00:00Z", "p-1", "o-1", 1_000),
        won(2, "2026-01-12T00:00:00Z", "p-2", "o-2", 2_000),
        won(3, "2026-01-20T00:00:00Z", "p-3", "o-3", 4_000),
    ];
    // Recorded in February.
    let later = vec![
        // A January deal reported late.
        won(4, "2026-01-25T00:00:00Z", "p-4", "o-4", 500),
        // The first deal was a mistake; the second was 1,500.
        event(
            5,
            "2026-02-02T00:00:00Z",
            "p-1",
            None,
            Payload::Retracted {
                target: EventId::from_uuid(uuid::Uuid::from_u128(1)),
                reason: "test deal".into(),
            },
        ),
        event(
            6,
            "2026-02-03T00:00:00Z",
            "p-2",
            None,
            Payload::Corrected {
                target: EventId::from_uuid(uuid::Uuid::from_u128(2)),
                reason: "discount".into(),
                occurred_at: None,
                replacement: Some(Box::new(Payload::OpportunityClosedWon {
                    amount: usd(1_500),
                })),
            },
        ),
        // p-3 was a duplicate of p-5; a February deal.
        event(
            7,
            "2026-02-04T00:00:00Z",
            "p-5",
            None,
            Payload::Merged {
                from_person_id: "p-3".into(),
                into_person_id: "p-5".into(),
            },
        ),
        won(8, "2026-02-10T00:00:00Z", "p-6", "o-6", 3_000),
    ];
    let projection = fold(FunnelDefinition::default_funnel(), &known);
    let restatement = restate(projection, &later, from, to, None);
    let row = restatement
        .figures
        .iter()
        .find(|row| row.figure == revenue())
        .expect("revenue changed");
    assert_eq!(row.from, 700_000);
    // late +500, retractions −1,000, corrections −500, merges 0, relinks 0, new +3,000.
    assert_eq!(row.moved, [50_000, -100_000, -50_000, 0, 0, 300_000, 0]);
    assert_eq!(row.to, 700_000 + 50_000 - 100_000 - 50_000 + 300_000);
    // Every figure: the causes add up, and the end is a fold of every event known at `to`.
    let all: Vec<Event> = known.iter().chain(&later).cloned().collect();
    let expected = figures(&fold(FunnelDefinition::default_funnel(), &all));
    for row in &restatement.figures {
        assert_eq!(row.from + row.moved.iter().sum::<i64>(), row.to, "{row:?}");
        assert_eq!(
            expected.get(&row.figure).copied().unwrap_or(0),
            row.to,
            "{row:?}"
        );
    }
    let people = restatement
        .figures
        .iter()
        .find(|row| row.figure.name == "people")
        .expect("people changed");
    // +p-4 late, −p-1 (their one fact retracted), p-3 stands for p-5 now, +p-6.
    assert_eq!((people.from, people.to), (3, 4));
    assert_eq!(people.moved, [1, -1, 0, 0, 0, 1, 0]);
    // The events behind each cause, by id.
    let ids = |cause: Cause| -> Vec<u128> {
        restatement.events[&cause]
            .iter()
            .map(|(id, _, _)| id.as_u128())
            .collect()
    };
    assert_eq!(ids(Cause::Late), [4]);
    assert_eq!(ids(Cause::Retractions), [5]);
    assert_eq!(ids(Cause::Corrections), [6]);
    assert_eq!(ids(Cause::Merges), [7]);
    assert_eq!(ids(Cause::New), [8]);
    assert!(!restatement.events.contains_key(&Cause::Relinks));
}

#[test]
fn another_definition_is_the_last_cause() {
    let from = ts("2026-01-31T23:59:59Z");
    let to = ts("2026-02-28T23:59:59Z");
    let form = |n: u128, person: &str| {
        event(
            n,
            "2026-01-05T00:00:00Z",
            person,
            None,
            Payload::FormSubmitted {
                form_id: "f".into(),
                form_kind: baton_core::FormKind::ContactUs,
            },
        )
    };
    let known = vec![form(1, "p-1"), form(2, "p-2")];
    let strict = baton_core::DEFAULT_FUNNEL_TOML.replacen(
        "enter_on = [\"form_submitted\", \"webinar_registered\", \"identified\"]",
        "enter_on = [\"webinar_registered\", \"identified\"]",
        1,
    );
    let strict = FunnelDefinition::parse("strict.toml", &strict).expect("valid");
    let refolded = fold(strict, &known);
    let restatement = restate(
        fold(FunnelDefinition::default_funnel(), &known),
        &[],
        from,
        to,
        Some(&refolded),
    );
    let entered = restatement
        .figures
        .iter()
        .find(|row| row.figure.name == "stage inquiry entered")
        .expect("inquiry changed");
    assert_eq!((entered.from, entered.to), (2, 0));
    assert_eq!(entered.moved, [0, 0, 0, 0, 0, 0, -2]);
}
