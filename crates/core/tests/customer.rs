//! The customer view: Net Promoter Score over every answer and over each person's latest,
//! for the whole view, by account, by the account's segment and by month, with corrections
//! and retractions applied, the same kept up to date as folded at once.

use baton_core::example::example_event;
use baton_core::{
    Event, EventId, FunnelDefinition, FunnelProjection, Identity, NpsRow, Payload, Timestamp,
};

struct History {
    events: Vec<Event>,
}

impl History {
    fn push(&mut self, at: &str, person: Option<&str>, account: &str, payload: Payload) -> EventId {
        let mut event = example_event(payload.kind(), 0);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(self.events.len() as u128 + 1));
        event.occurred_at = Timestamp::parse_rfc3339(at).expect("time");
        event.identity = Identity {
            anonymous_id: None,
            person_id: person.map(str::to_owned),
            account_id: Some(account.to_owned()),
        };
        event.opportunity_id = None;
        event.payload = payload;
        let id = event.event_id;
        self.events.push(event);
        id
    }
}

fn answer(score: u8) -> Payload {
    Payload::NpsResponded {
        score,
        comment: None,
    }
}

fn fold(events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

fn row<'a>(rows: &'a [NpsRow], basis: &str, dimension: &str, value: &str) -> &'a NpsRow {
    rows.iter()
        .find(|r| r.basis == basis && r.dimension == dimension && r.value == value)
        .unwrap_or_else(|| panic!("no row {basis} {dimension} {value}: {rows:#?}"))
}

fn counts(row: &NpsRow) -> (u64, u64, u64, u64) {
    (row.responses, row.promoters, row.passives, row.detractors)
}

#[test]
fn nps_counts_every_answer_and_each_latest_with_governance_applied() {
    let mut history = History { events: Vec::new() };
    history.push(
        "2026-01-01T00:00:00Z",
        None,
        "acct-1",
        Payload::AccountUpdated {
            name: None,
            domain: None,
            industry: Some("software".into()),
            employees: Some(300),
            region: Some("emea".into()),
        },
    );
    history.push("2026-01-10T00:00:00Z", Some("p-1"), "acct-1", answer(10));
    history.push("2026-02-10T00:00:00Z", Some("p-1"), "acct-1", answer(6));
    history.push("2026-02-11T00:00:00Z", Some("p-2"), "acct-2", answer(8));
    let corrected = history.push("2026-02-12T00:00:00Z", Some("p-3"), "acct-1", answer(9));
    let retracted = history.push("2026-02-13T00:00:00Z", Some("p-4"), "acct-2", answer(10));
    history.push(
        "2026-03-01T00:00:00Z",
        Some("p-3"),
        "acct-1",
        Payload::Corrected {
            target: corrected,
            reason: "keyed wrong".into(),
            occurred_at: None,
            replacement: Some(Box::new(answer(3))),
        },
    );
    history.push(
        "2026-03-02T00:00:00Z",
        None,
        "acct-2",
        Payload::Retracted {
            target: retracted,
            reason: "test".into(),
        },
    );
    let advocated = |act: baton_core::AdvocacyAct, referred: Option<&str>| Payload::Advocated {
        act,
        referred_account_id: referred.map(str::to_owned),
        channel: None,
    };
    use baton_core::AdvocacyAct::{Referral, Review};
    history.push(
        "2026-03-03T00:00:00Z",
        Some("p-1"),
        "acct-1",
        advocated(Review, None),
    );
    history.push(
        "2026-03-04T00:00:00Z",
        Some("p-1"),
        "acct-1",
        advocated(Referral, Some("acct-9")),
    );
    history.push(
        "2026-03-05T00:00:00Z",
        Some("p-2"),
        "acct-2",
        advocated(Referral, None),
    );
    let dropped = history.push(
        "2026-03-06T00:00:00Z",
        Some("p-3"),
        "acct-1",
        advocated(Review, None),
    );
    history.push(
        "2026-03-07T00:00:00Z",
        None,
        "acct-1",
        Payload::Retracted {
            target: dropped,
            reason: "duplicate".into(),
        },
    );
    let view = fold(&history.events).customer_view();
    let acts: Vec<(&str, u64, u64)> = view
        .advocacy
        .iter()
        .map(|row| (row.act, row.acts, row.people))
        .collect();
    assert_eq!(
        acts,
        [
            ("reference_call", 0, 0),
            ("case_study", 0, 0),
            ("review", 1, 1),
            ("referral", 2, 2)
        ]
    );
    let rows = &view.nps;
    // Every answer: 10, 6, 8, 3 (9 corrected to 3; p-4's retracted).
    let all = row(rows, "all", "all", "all");
    assert_eq!(counts(all), (4, 1, 1, 2));
    assert_eq!(all.nps, -25.0);
    // Latest per person: p-1 6, p-2 8, p-3 3.
    let latest = row(rows, "latest", "all", "all");
    assert_eq!(counts(latest), (3, 0, 1, 2));
    assert!((latest.nps - (-200.0 / 3.0)).abs() < 1e-9);
    assert_eq!(counts(row(rows, "all", "account", "acct-1")), (3, 1, 0, 2));
    assert_eq!(counts(row(rows, "all", "account", "acct-2")), (1, 0, 1, 0));
    assert_eq!(
        counts(row(rows, "latest", "account", "acct-1")),
        (2, 0, 0, 2)
    );
    assert_eq!(
        counts(row(rows, "all", "industry", "software")),
        (3, 1, 0, 2)
    );
    assert_eq!(counts(row(rows, "all", "region", "emea")), (3, 1, 0, 2));
    assert_eq!(counts(row(rows, "all", "size", "200-999")), (3, 1, 0, 2));
    assert_eq!(counts(row(rows, "all", "month", "2026-01")), (1, 1, 0, 0));
    assert_eq!(counts(row(rows, "all", "month", "2026-02")), (3, 0, 1, 2));
    assert_eq!(
        counts(row(rows, "latest", "month", "2026-02")),
        (3, 0, 1, 2)
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.dimension == "month" && r.value == "2026-03"),
        "a correction does not move the answer"
    );

    // Kept up to date event by event, and folded in reverse arrival order: the same view.
    let mut kept = FunnelProjection::new(FunnelDefinition::default_funnel());
    for (index, event) in history.events.iter().enumerate() {
        kept.apply(event);
        kept.refresh();
        assert_eq!(
            kept.customer_view(),
            fold(&history.events[..=index]).customer_view(),
            "after event {index}"
        );
    }
    let mut reversed = history.events.clone();
    reversed.reverse();
    assert_eq!(fold(&reversed).customer_view(), view);
}
