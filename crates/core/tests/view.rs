//! The funnel projection over whole events: identity stitching, revenue without double
//! counting, retractions, corrections, and the summary's counts.

use baton_core::example::{example_event, example_payload};
use baton_core::{
    Event, EventId, FunnelDefinition, FunnelProjection, Identity, Kind, Money, Payload, Timestamp,
};

const HOUR: i64 = 3_600_000;

struct History {
    events: Vec<Event>,
    next: u128,
}

impl History {
    fn new() -> Self {
        History {
            events: Vec::new(),
            next: 1,
        }
    }

    fn push(
        &mut self,
        hours: i64,
        identity: (Option<&str>, Option<&str>, Option<&str>),
        payload: Payload,
    ) -> EventId {
        let mut event = example_event(payload.kind(), 0);
        self.next += 1;
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(self.next));
        event.occurred_at = Timestamp::from_unix_millis(1_767_225_600_000 + hours * HOUR);
        event.identity = Identity {
            anonymous_id: identity.0.map(str::to_owned),
            person_id: identity.1.map(str::to_owned),
            account_id: identity.2.map(str::to_owned),
        };
        event.payload = payload;
        if event.kind().family() != baton_core::Family::Crm && event.kind() != Kind::ProposalSent {
            event.opportunity_id = None;
        }
        let id = event.event_id;
        self.events.push(event);
        id
    }

    /// The stored state of a projection of the first `events` events: what a store holds.
    fn stored(&self, events: usize) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        let mut stored = FunnelProjection::tracking_changes(FunnelDefinition::default_funnel());
        for event in &self.events[..events] {
            stored.apply(event);
        }
        stored
            .take_changes()
            .expect("encodes")
            .into_iter()
            .filter_map(|entry| Some((entry.key, entry.value?)))
            .collect()
    }

    fn project(&self) -> FunnelProjection {
        let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in &self.events {
            projection.apply(event);
        }
        projection.refresh();
        projection
    }
}

fn person(id: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    (None, Some(id), Some("acct-1"))
}

fn won(amount: i64) -> Payload {
    Payload::OpportunityClosedWon {
        amount: Money {
            minor_units: amount,
            currency: "USD".into(),
        },
    }
}

#[test]
fn anonymous_touches_join_the_person_once_identified() {
    let mut history = History::new();
    for hour in 0..3 {
        history.push(
            hour,
            (Some("anon-1"), None, None),
            Payload::ContentViewed {
                url: "u".into(),
                content_type: baton_core::ContentType::Pricing,
                title: None,
            },
        );
    }
    history.push(
        5,
        (None, None, None),
        Payload::Identified {
            anonymous_id: "anon-1".into(),
            person_id: "p-1".into(),
        },
    );
    history.push(
        6,
        (Some("anon-1"), None, None),
        Payload::FormSubmitted {
            form_id: "f".into(),
            form_kind: baton_core::FormKind::ContactUs,
        },
    );
    let projection = history.project();
    assert_eq!(
        projection.facts_of("p-1").expect("in memory"),
        [
            Kind::ContentViewed,
            Kind::ContentViewed,
            Kind::ContentViewed,
            Kind::Identified,
            Kind::FormSubmitted
        ],
        "three anonymous views, the identification and the form"
    );
    let journey = projection.journey("p-1").expect("journey");
    assert!(
        journey.engagement > 35.0,
        "the anonymous views scored: {}",
        journey.engagement
    );
    assert_eq!(projection.people(), 1);
}

#[test]
fn revenue_counts_each_deal_once_and_follows_corrections_and_retractions() {
    let mut history = History::new();
    history.push(0, person("p-1"), Payload::DemoRequested { product: None });
    history.push(1, person("p-2"), Payload::DemoRequested { product: None });
    let close = history.push(100, person("p-1"), won(4_800_000));
    history.push(100, person("p-2"), won(4_800_000)); // the same deal, seen on a second contact
    let projection = history.project();
    let summary = projection.summary();
    assert_eq!(summary.won_deals, 1);
    assert_eq!(
        summary.revenue_minor_units,
        vec![("USD".to_owned(), 4_800_000)]
    );
    let won_stage = summary
        .stages
        .iter()
        .find(|s| s.name == "won")
        .expect("won");
    assert_eq!(won_stage.current, 2, "both people's journeys end won");

    history.push(
        200,
        person("p-1"),
        Payload::Corrected {
            target: close,
            reason: "discount".into(),
            occurred_at: None,
            replacement: Some(Box::new(won(4_500_000))),
        },
    );
    assert_eq!(
        history.project().summary().revenue_minor_units,
        vec![("USD".to_owned(), 4_500_000)]
    );

    history.push(
        300,
        person("p-1"),
        Payload::Retracted {
            target: close,
            reason: "test".into(),
        },
    );
    let summary = history.project().summary();
    // p-2's report of the same close still stands: the deal is won, at p-2's amount.
    assert_eq!(summary.won_deals, 1);
    assert_eq!(
        summary.revenue_minor_units,
        vec![("USD".to_owned(), 4_800_000)]
    );
    let won_stage = summary
        .stages
        .iter()
        .find(|s| s.name == "won")
        .expect("won");
    assert_eq!(won_stage.current, 1, "p-1's close no longer counts");
}

#[test]
fn a_retracted_demo_request_is_no_longer_an_mql() {
    let mut history = History::new();
    history.push(
        0,
        person("p-1"),
        Payload::FormSubmitted {
            form_id: "f".into(),
            form_kind: baton_core::FormKind::Newsletter,
        },
    );
    let demo = history.push(1, person("p-1"), Payload::DemoRequested { product: None });
    assert_eq!(history.project().summary().handoffs, 1);
    // The retraction arrives without identity: every journey is re-folded.
    history.push(
        50,
        (None, None, None),
        Payload::Retracted {
            target: demo,
            reason: "bot".into(),
        },
    );
    let summary = history.project().summary();
    assert_eq!(summary.handoffs, 0);
    let mql = summary
        .stages
        .iter()
        .find(|s| s.name == "mql")
        .expect("mql");
    assert_eq!(mql.entered, 0);
}

#[test]
fn retractions_that_name_nobody_find_their_fact_among_many_people() {
    let mql_entered = |projection: &FunnelProjection| {
        projection
            .summary()
            .stages
            .iter()
            .find(|s| s.name == "mql")
            .expect("mql")
            .entered
    };
    let mut history = History::new();
    let names: Vec<String> = (0..300).map(|n| format!("p-{n}")).collect();
    let mut demos = Vec::new();
    for (n, name) in names.iter().enumerate() {
        for hour in 0..5 {
            history.push(
                hour,
                person(name),
                Payload::ContentViewed {
                    url: format!("u-{n}-{hour}"),
                    content_type: baton_core::ContentType::Blog,
                    title: None,
                },
            );
        }
        demos.push(history.push(6, person(name), Payload::DemoRequested { product: None }));
    }
    // A visitor's demo request, stitched to p-0 by an identification.
    let anonymous_demo = history.push(
        7,
        (Some("anon-9"), None, None),
        Payload::DemoRequested { product: None },
    );
    history.push(
        8,
        (None, None, None),
        Payload::Identified {
            anonymous_id: "anon-9".into(),
            person_id: "p-299".into(),
        },
    );
    let mut live = history.project();
    assert_eq!(mql_entered(&live), 300);

    // Retractions without identity, applied to the live projection after it was refreshed.
    let targets = [demos[137], anonymous_demo, demos[299]];
    let before = history.events.len();
    for (hour, target) in (50..).zip(targets) {
        history.push(
            hour,
            (None, None, None),
            Payload::Retracted {
                target,
                reason: "bot".into(),
            },
        );
    }
    for event in &history.events[before..] {
        live.apply(event);
    }
    live.refresh();
    // p-137 is no MQL any more; p-299 still has the visitor's demo until that goes too.
    assert_eq!(mql_entered(&live), 298);
    assert_eq!(live.summary(), history.project().summary());

    // The same after a restart: the stored state is read back, then the retractions come.
    let store = history.stored(before);
    let mut restored = FunnelProjection::restore(FunnelDefinition::default_funnel(), store.iter())
        .expect("restores");
    assert_eq!(mql_entered(&restored), 300);
    for event in &history.events[before..] {
        restored.apply(event);
    }
    restored.refresh();
    assert_eq!(mql_entered(&restored), 298);
    assert_eq!(restored.summary(), history.project().summary());
}

#[test]
fn a_refresh_on_several_threads_folds_the_same_journeys_as_on_one() {
    // Enough people for a refresh to use its threads, with visitors to stitch, hand-offs,
    // deals and governance, so that every part of a journey is folded.
    let mut history = History::new();
    for n in 0..6_000_i64 {
        let name = format!("p-{n}");
        let account = format!("acct-{}", n % 700);
        let who = (None, Some(name.as_str()), Some(account.as_str()));
        for hour in 0..(n % 5) {
            history.push(n + hour, who, example_payload(Kind::ContentViewed));
        }
        if n % 3 == 0 {
            let visitor = format!("anon-{n}");
            let anonymous = (Some(visitor.as_str()), None, None);
            history.push(n, anonymous, example_payload(Kind::WebinarAttended));
            history.push(
                n + 1,
                (None, None, None),
                Payload::Identified {
                    anonymous_id: visitor.clone(),
                    person_id: name.clone(),
                },
            );
        }
        if n % 2 == 0 {
            let demo = history.push(n + 6, who, Payload::DemoRequested { product: None });
            if n % 10 == 0 {
                let retraction = Payload::Retracted {
                    target: demo,
                    reason: "bot".into(),
                };
                history.push(n + 7, (None, None, None), retraction);
            }
        }
        // Each person's deal is their own.
        let deal = |history: &mut History, hours: i64, payload: Payload| {
            history.push(hours, who, payload);
            let event = history.events.last_mut().expect("pushed");
            event.opportunity_id = Some(format!("opp-{n}"));
        };
        if n % 4 == 0 {
            history.push(n + 8, who, example_payload(Kind::LeadAccepted));
            deal(
                &mut history,
                n + 9,
                example_payload(Kind::OpportunityCreated),
            );
        }
        if n % 8 == 0 {
            deal(&mut history, n + 30, won(1_000 + n));
        }
    }
    let fold = |threads: usize| {
        let threads = std::num::NonZeroUsize::new(threads).expect("threads");
        let mut projection =
            FunnelProjection::new(FunnelDefinition::default_funnel()).with_refresh_threads(threads);
        for event in &history.events {
            projection.apply(event);
        }
        projection.refresh();
        projection
    };
    let one = fold(1);
    let (marketing, sales, shared) = one.views();
    assert!(
        shared
            .summary
            .stages
            .iter()
            .any(|s| s.name == "mql" && s.entered > 1_000)
    );
    assert!(sales.won > 100, "won {}", sales.won);
    // Hundreds of opportunities: credited on several threads too.
    let attribution = one.attribution_view();
    let credited: u64 = attribution
        .models
        .iter()
        .filter(|m| m.model == "linear")
        .map(|m| m.won + m.open)
        .sum();
    assert!(
        credited >= 512,
        "enough to be credited on threads: {credited}"
    );
    for threads in [2, 3] {
        let many = fold(threads);
        assert_eq!(
            many.views(),
            (marketing.clone(), sales.clone(), shared.clone())
        );
        assert_eq!(many.attribution_view(), attribution, "{threads} threads");
    }

    // A restore re-folds everyone: on two threads as on one.
    let store = history.stored(history.events.len());
    let two = std::num::NonZeroUsize::new(2).expect("two");
    let restored =
        FunnelProjection::restore_on(FunnelDefinition::default_funnel(), store.iter(), two)
            .expect("restores");
    assert_eq!(restored.views(), (marketing, sales, shared));
    assert_eq!(restored.attribution_view(), attribution);
}

#[test]
fn the_summary_counts_entries_conversions_and_stays() {
    let mut history = History::new();
    // p-1: inquiry -> mql (2 h later) -> sal (3 h later).
    history.push(
        0,
        person("p-1"),
        Payload::FormSubmitted {
            form_id: "f".into(),
            form_kind: baton_core::FormKind::ContactUs,
        },
    );
    history.push(2, person("p-1"), Payload::DemoRequested { product: None });
    history.push(
        5,
        person("p-1"),
        Payload::LeadAccepted {
            owner: "sdr".into(),
        },
    );
    // p-2: inquiry only.
    history.push(
        0,
        person("p-2"),
        Payload::FormSubmitted {
            form_id: "f".into(),
            form_kind: baton_core::FormKind::ContactUs,
        },
    );
    // p-3: inquiry, then recycled from mql back to engaged, then mql again.
    history.push(
        0,
        person("p-3"),
        Payload::FormSubmitted {
            form_id: "f".into(),
            form_kind: baton_core::FormKind::ContactUs,
        },
    );
    history.push(4, person("p-3"), Payload::DemoRequested { product: None });
    history.push(
        8,
        person("p-3"),
        Payload::LeadRejected {
            owner: None,
            reason: "timing".into(),
        },
    );
    history.push(20, person("p-3"), Payload::DemoRequested { product: None });
    let summary = history.project().summary();
    let by_name = |name: &str| {
        summary
            .stages
            .iter()
            .find(|s| s.name == name)
            .expect("stage")
            .clone()
    };
    let inquiry = by_name("inquiry");
    assert_eq!(
        (inquiry.entered, inquiry.current, inquiry.converted),
        (3, 1, 2)
    );
    assert_eq!(inquiry.conversion_rate(), Some(2.0 / 3.0));
    let mql = by_name("mql");
    assert_eq!((mql.entered, mql.current, mql.converted), (2, 1, 1));
    // Stays in mql: p-1 3 h, p-3 4 h (the second stay is still open).
    assert_eq!(mql.median_days_in_stage, Some(3.5 / 24.0));
    let engaged = by_name("engaged");
    assert_eq!(
        (engaged.entered, engaged.returned),
        (0, 1),
        "p-3 was returned to engaged by a detour, not entered by its rule"
    );
    assert_eq!(
        (
            summary.handoffs,
            summary.handbacks,
            summary.ping_pong_journeys
        ),
        (3, 1, 1)
    );
    assert_eq!(summary.people, 3);

    let follow_up = &summary.follow_up;
    assert_eq!(
        (follow_up.mqls, follow_up.untouched, follow_up.breached),
        (3, 1, 0)
    );
    assert_eq!(follow_up.median_hours_to_first_action, Some(3.0));
    assert_eq!(follow_up.p90_hours_to_first_action, Some(4.0));

    // Business time moves on past the open clock's deadline (20 h + 24 h): it is breached.
    history.push(
        50,
        person("p-2"),
        Payload::EmailOpened {
            email_id: "e".into(),
        },
    );
    let later = history.project().summary();
    assert_eq!(later.follow_up.breached, 1);
    assert_eq!(later.follow_up.untouched, 1);
}

#[test]
fn a_shared_device_splits_by_business_time_whatever_the_arrival_order() {
    let view = |n: u128| Payload::ContentViewed {
        url: format!("u{n}"),
        content_type: baton_core::ContentType::Blog,
        title: None,
    };
    let mut history = History::new();
    history.push(0, (Some("anon-1"), None, None), view(1));
    history.push(
        5,
        (None, None, None),
        Payload::Identified {
            anonymous_id: "anon-1".into(),
            person_id: "p-1".into(),
        },
    );
    history.push(50, (Some("anon-1"), None, None), view(2));
    history.push(
        100,
        (None, None, None),
        Payload::Identified {
            anonymous_id: "anon-1".into(),
            person_id: "p-2".into(),
        },
    );
    history.push(150, (Some("anon-1"), None, None), view(3));
    let forward = history.project();
    assert_eq!(
        forward.facts_of("p-1").expect("in memory"),
        [Kind::ContentViewed, Kind::Identified, Kind::ContentViewed]
    );
    assert_eq!(
        forward.facts_of("p-2").expect("in memory"),
        [Kind::Identified, Kind::ContentViewed]
    );

    history.events.reverse();
    let backward = history.project();
    assert_eq!(
        backward.facts_of("p-1").expect("in memory"),
        forward.facts_of("p-1").expect("in memory")
    );
    assert_eq!(
        backward.facts_of("p-2").expect("in memory"),
        forward.facts_of("p-2").expect("in memory")
    );
    assert_eq!(backward.journey("p-1"), forward.journey("p-1"));
    assert_eq!(backward.summary(), forward.summary());
}

/// Regressions from the review of stop 6: each history gives the same summary and journeys
/// forwards and backwards.
mod arrival_order {
    use super::*;

    fn both_ways(history: &mut History) -> (FunnelProjection, FunnelProjection) {
        let forward = history.project();
        history.events.reverse();
        let backward = history.project();
        history.events.reverse();
        assert_eq!(forward.summary(), backward.summary());
        (forward, backward)
    }

    #[test]
    fn merges_take_facts_that_arrive_after_them() {
        let mut history = History::new();
        history.push(0, person("p-a"), Payload::DemoRequested { product: None });
        history.push(
            1,
            person("p-b"),
            Payload::FormSubmitted {
                form_id: "f".into(),
                form_kind: baton_core::FormKind::ContactUs,
            },
        );
        history.push(
            2,
            (None, None, None),
            Payload::Merged {
                from_person_id: "p-a".into(),
                into_person_id: "p-b".into(),
            },
        );
        let (forward, backward) = both_ways(&mut history);
        assert_eq!(forward.people(), 1);
        assert_eq!(backward.people(), 1);
        assert_eq!(
            forward.facts_of("p-b").expect("in memory"),
            backward.facts_of("p-b").expect("in memory")
        );
        assert_eq!(
            forward.journey("p-a"),
            forward.journey("p-b"),
            "a merged id resolves"
        );
    }

    fn merge(from: &str, into: &str) -> Payload {
        Payload::Merged {
            from_person_id: from.into(),
            into_person_id: into.into(),
        }
    }

    /// Every order of `items`, by Heap's algorithm.
    fn every_order<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn go<T: Clone>(k: usize, items: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(items.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, items, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                items.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        go(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    /// Who survives merges is decided by their event time, not by the order they arrive in: a
    /// merge that would close a cycle is the latest in time, and one that arrives late moves
    /// everyone to whoever survives now. Restoring the stored state half-way changes nothing.
    #[test]
    fn merges_in_any_arrival_order_leave_the_same_survivor() {
        let mut history = History::new();
        history.push(0, person("p-0"), Payload::DemoRequested { product: None });
        let view = Payload::ContentViewed {
            url: "u1".into(),
            content_type: baton_core::ContentType::Blog,
            title: None,
        };
        history.push(1, person("p-5"), view);
        // A cycle: p-0 → 1 → 2 → 3 → 4 → 0; the last in time (4 → 0) joins no one.
        for (hour, (from, into)) in [("p-0", "p-1"), ("p-1", "p-2"), ("p-2", "p-3")]
            .into_iter()
            .enumerate()
        {
            history.push(10 + hour as i64, (None, None, None), merge(from, into));
        }
        history.push(20, (None, None, None), merge("p-3", "p-4"));
        history.push(30, (None, None, None), merge("p-4", "p-0"));
        // p-5 merged twice: into p-6 first, so the later merge takes p-6 (and everyone) into p-4.
        history.push(5, (None, None, None), merge("p-5", "p-6"));
        history.push(25, (None, None, None), merge("p-5", "p-4"));
        let in_order = history.project();
        assert_eq!(in_order.people(), 1);
        let survivors: Vec<String> = in_order.mqls().map(|(id, _)| id.to_owned()).collect();
        assert_eq!(survivors, ["p-4"]);
        let facts = in_order.facts_of("p-4").expect("in memory");
        assert_eq!(facts, [Kind::DemoRequested, Kind::ContentViewed]);

        let events = history.events.clone();
        let orders = every_order(&events[2..]);
        assert_eq!(orders.len(), 5040);
        for (n, merges) in orders.into_iter().enumerate() {
            history.events = events[..2].iter().cloned().chain(merges).collect();
            let anyhow = history.project();
            let survivors: Vec<String> = anyhow.mqls().map(|(id, _)| id.to_owned()).collect();
            let arrived: Vec<String> = history.events[2..]
                .iter()
                .map(|event| match &event.payload {
                    Payload::Merged {
                        from_person_id,
                        into_person_id,
                    } => format!("{from_person_id}→{into_person_id}"),
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(survivors, ["p-4"], "merges arriving as {arrived:?}");
            assert_eq!(anyhow.summary(), in_order.summary());
            for id in ["p-0", "p-3", "p-5", "p-6"] {
                assert_eq!(anyhow.facts_of(id).expect("in memory"), facts, "{id}");
            }
            if n % 97 == 0 {
                // Stored after some of the merges, restored, and the rest applied.
                let half = 2 + n % 7;
                let mut restored = FunnelProjection::restore(
                    FunnelDefinition::default_funnel(),
                    history.stored(half),
                )
                .expect("restores");
                for event in &history.events[half..] {
                    restored.apply(event);
                }
                restored.refresh();
                assert_eq!(restored.summary(), in_order.summary(), "order {n}");
                assert_eq!(restored.facts_of("p-0").expect("in memory"), facts);
            }
        }
    }

    proptest::proptest! {
        /// Random merges among a few people, each with a demo request (so every survivor is
        /// an MQL, named by `mqls`): any arrival order leaves the survivors, and everyone's
        /// facts, of the merges taken in time order.
        #[test]
        fn random_merges_leave_the_survivors_of_time_order(
            merges in proptest::collection::vec((0u8..7, 0u8..7, 0i64..40), 1..14),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut history = History::new();
            for id in 0..7 {
                history.push(100 + id, person(&format!("p-{id}")), Payload::DemoRequested { product: None });
            }
            for (from, into, hour) in &merges {
                history.push(*hour, (None, None, None), merge(&format!("p-{from}"), &format!("p-{into}")));
            }
            let mut in_time = history.events.clone();
            in_time.sort_by_key(|event| (event.occurred_at, event.event_id));
            let mut state = seed | 1;
            for i in (1..history.events.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                history.events.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let anyhow = history.project();
            history.events = in_time;
            let in_order = history.project();
            let survivors = |projection: &FunnelProjection| {
                let mut ids: Vec<String> = projection.mqls().map(|(id, _)| id.to_owned()).collect();
                ids.sort();
                ids
            };
            proptest::prop_assert_eq!(survivors(&anyhow), survivors(&in_order));
            for id in 0..7 {
                let id = format!("p-{id}");
                proptest::prop_assert_eq!(
                    anyhow.facts_of(&id).expect("in memory"),
                    in_order.facts_of(&id).expect("in memory")
                );
            }
            proptest::prop_assert_eq!(anyhow.summary(), in_order.summary());
        }
    }

    #[test]
    fn the_earliest_unretracted_close_counts_once() {
        let mut history = History::new();
        let first = history.push(10, person("p-1"), won(10_000));
        history.push(20, person("p-1"), won(20_000));
        history.push(
            30,
            person("p-1"),
            Payload::Retracted {
                target: first,
                reason: "test".into(),
            },
        );
        let (forward, _) = both_ways(&mut history);
        let summary = forward.summary();
        assert_eq!(summary.won_deals, 1);
        assert_eq!(
            summary.revenue_minor_units,
            vec![("USD".to_owned(), 20_000)]
        );
    }

    #[test]
    fn a_correction_replaces_the_whole_amount() {
        let mut history = History::new();
        let close = history.push(10, person("p-1"), won(10_000));
        history.push(
            20,
            person("p-1"),
            Payload::Corrected {
                target: close,
                reason: "currency".into(),
                occurred_at: None,
                replacement: Some(Box::new(Payload::OpportunityClosedWon {
                    amount: Money {
                        minor_units: 9_000,
                        currency: "EUR".into(),
                    },
                })),
            },
        );
        let (forward, _) = both_ways(&mut history);
        assert_eq!(
            forward.summary().revenue_minor_units,
            vec![("EUR".to_owned(), 9_000)]
        );
    }

    #[test]
    fn the_latest_trait_by_business_time_wins() {
        let mut history = History::new();
        history.push(
            0,
            person("p-1"),
            Payload::PersonUpdated {
                title: None,
                seniority: Some("vp".into()),
                department: None,
                country: None,
            },
        );
        history.push(
            10,
            person("p-1"),
            Payload::PersonUpdated {
                title: None,
                seniority: Some("individual".into()),
                department: None,
                country: None,
            },
        );
        history.push(
            11,
            person("p-1"),
            Payload::FormSubmitted {
                form_id: "f".into(),
                form_kind: baton_core::FormKind::ContactUs,
            },
        );
        for hour in 12..20 {
            history.push(
                hour * 24,
                person("p-1"),
                Payload::ContentViewed {
                    url: "u".into(),
                    content_type: baton_core::ContentType::Pricing,
                    title: None,
                },
            );
        }
        let (forward, backward) = both_ways(&mut history);
        // An individual contributor with no account: fit -10, never an MQL by score.
        assert_eq!(forward.journey("p-1").map(|j| j.fit), Some(-10.0));
        assert_eq!(forward.journey("p-1"), backward.journey("p-1"));
    }
}

/// Regression: a deal lost from `proposal` counted as converting from `proposal` (lost is the
/// last stage, so it looked "further along"), in the summary and in cohorts.
#[test]
fn losing_a_deal_is_not_converting() {
    let mut history = History::new();
    let who = person("p-lost");
    history.push(0, who, example_payload(Kind::FormSubmitted));
    history.push(1, who, example_payload(Kind::DemoRequested));
    history.push(2, who, example_payload(Kind::LeadAccepted));
    history.push(
        3,
        who,
        Payload::MeetingHeld {
            owner: None,
            need_declared: true,
        },
    );
    history.push(4, who, example_payload(Kind::OpportunityCreated));
    history.push(5, who, example_payload(Kind::ProposalSent));
    history.push(6, who, example_payload(Kind::OpportunityClosedLost));
    let projection = history.project();
    let summary = projection.summary();
    let stage = |name: &str| {
        summary
            .stages
            .iter()
            .find(|s| s.name == name)
            .expect("stage")
            .clone()
    };
    assert_eq!(stage("proposal").entered, 1);
    assert_eq!(stage("proposal").converted, 0);
    assert_eq!(stage("lost").current, 1);
    assert_eq!(stage("opportunity").converted, 1);
    let cohorts = projection.shared_view().cohorts;
    let proposal = cohorts
        .iter()
        .find(|row| row.stage == "proposal")
        .expect("a proposal row");
    assert_eq!(
        (proposal.reached, proposal.converted, proposal.dropped),
        (1, 0, 1)
    );
    let account = &projection.marketing_view().accounts[0];
    assert_eq!(account.furthest_stage.as_deref(), Some("proposal"));
}

/// The views' totals are built by the first build of the views and kept up to date by each
/// refresh after it. After every event here (a deal carried by two people, one of them then
/// merged into a third, a move to another account, account traits, a retraction, a
/// correction and a late touch) the kept views equal those of a projection that folded the
/// same events at once.
#[test]
fn views_kept_up_to_date_equal_a_fresh_fold_after_every_event() {
    let mut history = History::new();
    let at = |id: &'static str, account: &'static str| (None, Some(id), Some(account));
    for (n, who) in ["p-a", "p-b", "p-c"].into_iter().enumerate() {
        let hours = n as i64;
        history.push(
            hours,
            at(who, "acct-1"),
            example_payload(Kind::ContentViewed),
        );
        history.push(
            hours + 1,
            at(who, "acct-1"),
            example_payload(Kind::WebinarAttended),
        );
    }
    history.push(2, at("p-d", "acct-2"), example_payload(Kind::ContentViewed));
    history.push(
        4,
        at("p-a", "acct-1"),
        Payload::DemoRequested { product: None },
    );
    history.push(5, at("p-a", "acct-1"), example_payload(Kind::LeadAccepted));
    let deal = |history: &mut History, hours: i64, who: &'static str, payload: Payload| {
        let id = history.push(hours, at(who, "acct-1"), payload);
        let event = history.events.last_mut().expect("pushed");
        event.opportunity_id = Some("opp-1".into());
        id
    };
    let created = deal(
        &mut history,
        6,
        "p-a",
        example_payload(Kind::OpportunityCreated),
    );
    deal(
        &mut history,
        7,
        "p-b",
        example_payload(Kind::OpportunityStageChanged),
    );
    deal(&mut history, 8, "p-b", example_payload(Kind::ProposalSent));
    let close = deal(&mut history, 9, "p-b", won(5_000));
    history.push(
        10,
        (None, None, None),
        Payload::Merged {
            from_person_id: "p-b".into(),
            into_person_id: "p-c".into(),
        },
    );
    history.push(
        11,
        (None, None, None),
        Payload::LinkedToAccount {
            person_id: "p-c".into(),
            account_id: "acct-2".into(),
        },
    );
    history.push(
        12,
        (None, None, Some("acct-2")),
        Payload::AccountUpdated {
            name: None,
            domain: None,
            industry: Some("Retail".into()),
            employees: Some(40),
            region: None,
        },
    );
    history.push(
        13,
        (None, None, None),
        Payload::Retracted {
            target: created,
            reason: "duplicate".into(),
        },
    );
    history.push(
        14,
        (None, None, None),
        Payload::Corrected {
            target: close,
            reason: "amount".into(),
            occurred_at: None,
            replacement: Some(Box::new(won(7_000))),
        },
    );
    history.push(1, at("p-d", "acct-2"), example_payload(Kind::ContentViewed));
    // A second deal whose amount moves to another currency, then is lost: the first
    // currency's amount is taken back and must not stay listed at zero.
    let second = |history: &mut History, hours: i64, payload: Payload| {
        history.push(hours, at("p-d", "acct-2"), payload);
        let event = history.events.last_mut().expect("pushed");
        event.opportunity_id = Some("opp-2".into());
    };
    second(&mut history, 15, example_payload(Kind::OpportunityCreated));
    for (hours, currency) in [(16, "GBP"), (17, "EUR")] {
        second(
            &mut history,
            hours,
            Payload::OpportunityAmountChanged {
                amount: Money {
                    minor_units: 900,
                    currency: currency.into(),
                },
            },
        );
    }

    let mut live = FunnelProjection::new(FunnelDefinition::default_funnel());
    for (index, event) in history.events.iter().enumerate() {
        live.apply(event);
        live.refresh();
        let mut fresh = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in &history.events[..=index] {
            fresh.apply(event);
        }
        fresh.refresh();
        assert_eq!(
            live.views(),
            fresh.views(),
            "after event {index} ({:?})",
            event.kind()
        );
    }
    let sales = live.sales_view();
    assert_eq!(sales.won, 1, "one deal, won");
    assert_eq!(
        sales.opportunities[0].person, "p-c",
        "carried on by the merge"
    );
    let open: Vec<_> = sales.pipeline.iter().map(|row| &row.amount).collect();
    assert!(
        open.iter()
            .all(|amount| amount.iter().all(|(currency, _)| currency == "EUR")),
        "the open deal is in EUR only now: {open:?}"
    );
}

/// The hand-off ledger holds every hand-off the summary counts, also those of someone whose
/// only move is into a lost outcome (they reach no stage a cohort counts).
#[test]
fn the_hand_off_ledger_holds_every_hand_off_the_summary_counts() {
    let mut history = History::new();
    history.push(
        0,
        person("p-lost"),
        example_payload(Kind::OpportunityClosedLost),
    );
    history.push(1, person("p-mql"), Payload::DemoRequested { product: None });
    let projection = history.project();
    let (_, _, shared) = projection.views();
    let summary = &shared.summary;
    assert!(summary.handoffs >= 1, "{summary:?}");
    assert_eq!(
        shared.handoffs.len() as u64,
        summary.handoffs + summary.handbacks,
        "{:?}",
        shared.handoffs
    );
    assert!(
        shared.handoffs.iter().any(|row| row.person == "p-lost"),
        "{:?}",
        shared.handoffs
    );
}

/// Facts keep their attributes as an id in the projection's table; a correction's replacement
/// is laid over them where the views read them. A corrected loss reason, amount and stage show
/// in the sales view, whether the correction comes after its target or before it, and after
/// the state is stored and read back.
#[test]
fn a_correction_changes_what_the_views_read_of_its_fact() {
    let usd = |minor_units| Money {
        minor_units,
        currency: "USD".into(),
    };
    let mut history = History::new();
    let who = person("p-1");
    let created = history.push(
        0,
        who,
        Payload::OpportunityCreated {
            amount: Some(usd(10_000)),
            stage: Some("discovery".into()),
        },
    );
    let lost = history.push(
        5,
        who,
        Payload::OpportunityClosedLost {
            reason: "price".into(),
        },
    );
    let correct = |target, payload: Payload| Payload::Corrected {
        target,
        reason: "crm fix".into(),
        occurred_at: None,
        replacement: Some(Box::new(payload)),
    };
    history.push(
        6,
        who,
        correct(
            created,
            Payload::OpportunityCreated {
                amount: Some(usd(12_000)),
                stage: Some("proposal".into()),
            },
        ),
    );
    history.push(
        7,
        who,
        correct(
            lost,
            Payload::OpportunityClosedLost {
                reason: "timing".into(),
            },
        ),
    );
    let row = |projection: &FunnelProjection| {
        let sales = projection.sales_view();
        assert_eq!(sales.opportunities.len(), 1, "one opportunity");
        let row = sales.opportunities[0].clone();
        (
            row.loss_reason,
            row.amount_minor,
            row.stage,
            sales.loss_reasons,
        )
    };
    let corrected = (
        Some("timing".to_owned()),
        Some(12_000),
        "proposal".to_owned(),
        vec![("timing".to_owned(), 1)],
    );
    assert_eq!(
        row(&history.project()),
        corrected,
        "corrections after their targets"
    );

    // The corrections first, their targets after them.
    let mut reversed = History::new();
    reversed.events = history.events.iter().rev().cloned().collect();
    assert_eq!(row(&reversed.project()), corrected, "corrections first");

    // Stored after the targets and restored, then the corrections applied.
    let store = history.stored(2);
    let mut restored = FunnelProjection::restore(FunnelDefinition::default_funnel(), store.iter())
        .expect("restores");
    restored.refresh();
    assert_eq!(
        row(&restored).0,
        Some("price".to_owned()),
        "before the corrections"
    );
    for event in &history.events[2..] {
        restored.apply(event);
    }
    restored.refresh();
    assert_eq!(row(&restored), corrected, "restored, then corrected");
}

/// `account_scores.engagement_max` is the highest engagement of the account's people, so an
/// account whose people all score below zero (one careers-page view: -5 under the default
/// definition) has a negative maximum, not 0.
#[test]
fn an_accounts_highest_engagement_may_be_negative() {
    let careers = || Payload::ContentViewed {
        url: "https://example.com/careers".into(),
        content_type: baton_core::ContentType::Careers,
        title: None,
    };
    let mut history = History::new();
    history.push(0, (None, Some("p-job-1"), Some("acct-jobs")), careers());
    history.push(1, (None, Some("p-job-2"), Some("acct-jobs")), careers());
    history.push(1, (None, Some("p-job-2"), Some("acct-jobs")), careers());
    history.push(0, (None, Some("p-mixed-1"), Some("acct-mixed")), careers());
    history.push(
        0,
        (None, Some("p-mixed-2"), Some("acct-mixed")),
        example_payload(Kind::ContentViewed),
    );
    let projection = history.project();
    let accounts = projection.marketing_view().accounts;
    let account = |id: &str| {
        accounts
            .iter()
            .find(|row| row.account == id)
            .expect("an account row")
            .clone()
    };
    let jobs = account("acct-jobs");
    assert!(jobs.engagement_max < 0.0, "{jobs:?}");
    assert!(
        jobs.engagement_max > jobs.engagement_total,
        "the better of two negative people: {jobs:?}"
    );
    assert_eq!(jobs.engaged_people, 0);
    let mixed = account("acct-mixed");
    assert!(mixed.engagement_max > 0.0, "{mixed:?}");
}

/// A retraction that is itself retracted stops taking effect: its target counts again, and
/// retracting that second retraction brings the first back. The same whatever order the
/// retractions arrive in, and kept views equal a fresh fold.
#[test]
fn retracting_a_retraction_brings_its_target_back() {
    let mut history = History::new();
    history.push(0, person("p-1"), Payload::DemoRequested { product: None });
    let close = history.push(100, person("p-1"), won(4_800_000));
    let revenue = |history: &History| history.project().summary().revenue_minor_units;
    let all = vec![("USD".to_owned(), 4_800_000)];
    let retract = |target: EventId| Payload::Retracted {
        target,
        reason: "test".into(),
    };
    let first = history.push(200, person("p-1"), retract(close));
    assert_eq!(revenue(&history), vec![], "the close is retracted");
    let second = history.push(300, person("p-1"), retract(first));
    assert_eq!(revenue(&history), all, "the retraction is undone");
    assert_eq!(history.project().summary().won_deals, 1);
    history.push(400, person("p-1"), retract(second));
    assert_eq!(revenue(&history), vec![], "the undoing is undone");

    // Arriving in the reverse order (the last retraction first), the same holds.
    let mut reversed = History::new();
    reversed.events = history.events.clone();
    let n = reversed.events.len();
    reversed.events[n - 3..].reverse();
    assert_eq!(revenue(&reversed), vec![]);
    let mut without_last = History::new();
    without_last.events = history.events[..n - 1].to_vec();
    without_last.events[n - 3..].reverse();
    assert_eq!(revenue(&without_last), all);

    // Another retraction of the close still holds it when one is undone.
    let mut twice = History::new();
    twice.events = history.events[..3].to_vec();
    twice.next = history.next + 10;
    twice.push(250, person("p-1"), retract(close));
    twice.push(300, person("p-1"), retract(first));
    assert_eq!(
        revenue(&twice),
        vec![],
        "a second retraction still holds it"
    );

    // What a projection kept up to date stores equals a fresh fold's, after every event.
    for events in 1..=history.events.len() {
        let mut kept = FunnelProjection::tracking_changes(FunnelDefinition::default_funnel());
        for event in &history.events[..events] {
            kept.apply(event);
            kept.refresh();
        }
        let mut fresh = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in &history.events[..events] {
            fresh.apply(event);
        }
        fresh.refresh();
        assert_eq!(kept.summary(), fresh.summary(), "after {events} events");
    }
}

/// A detour's `back_to` return puts the person in the stage without entering it by its rule:
/// no entry, conversion, cohort reach or MQL comes of it; the `returned` count shows the
/// recycled path.
#[test]
fn a_detours_return_is_not_an_entry() {
    let mut history = History::new();
    let form = || Payload::FormSubmitted {
        form_id: "f".into(),
        form_kind: baton_core::FormKind::ContactUs,
    };
    // p-1: inquiry, then rejected for timing: recycled and returned to engaged (never entered
    // by its rule, 15 points or a nurture enrolment).
    history.push(0, person("p-1"), form());
    history.push(
        2,
        person("p-1"),
        Payload::LeadRejected {
            owner: None,
            reason: "timing".into(),
        },
    );
    // p-2: inquiry, then enrolled in nurture: engaged by its rule.
    history.push(0, person("p-2"), form());
    history.push(
        3,
        person("p-2"),
        Payload::NurtureEnrolled {
            track_id: "n".into(),
        },
    );
    let projection = history.project();
    let summary = projection.summary();
    let stage = |name: &str| {
        summary
            .stages
            .iter()
            .find(|s| s.name == name)
            .expect("stage")
            .clone()
    };
    let (inquiry, engaged) = (stage("inquiry"), stage("engaged"));
    assert_eq!(
        (inquiry.entered, inquiry.converted),
        (2, 1),
        "only p-2 converted"
    );
    assert_eq!(
        (engaged.entered, engaged.current, engaged.returned),
        (1, 2, 1),
        "both are in engaged now; p-2 entered it, p-1 was returned to it"
    );
    assert_eq!(inquiry.returned, 0);
    let journey = projection.journey("p-1").expect("p-1");
    let path: Vec<bool> = journey.transitions.iter().map(|t| t.is_return()).collect();
    assert_eq!(
        path,
        [false, false, true],
        "inquiry, recycled, back to engaged"
    );

    // Cohorts: p-1 reached inquiry only (and dropped from it); p-2 reached engaged.
    let cohorts = projection.shared_view().cohorts;
    let row = |stage: &str| {
        cohorts
            .iter()
            .find(|row| row.stage == stage)
            .map(|row| (row.reached, row.converted, row.in_flight, row.dropped))
    };
    assert_eq!(row("inquiry"), Some((2, 1, 0, 1)));
    assert_eq!(row("engaged"), Some((1, 0, 1, 0)));

    // Marketing: the recycle is counted, and nobody became an MQL.
    let view = projection.marketing_view();
    assert_eq!((view.mqls, view.mql_people, view.recycled), (0, 0, 1));
}

/// The views of a projection kept up to date event by event equal a fresh fold's after every
/// event, and so do those of the events in reverse arrival order (the views depend on
/// business time, not arrival).
fn assert_kept_equals_fresh(history: &History) -> FunnelProjection {
    let fresh = |events: &[Event]| {
        let mut fresh = FunnelProjection::new(FunnelDefinition::default_funnel());
        for event in events {
            fresh.apply(event);
        }
        fresh.refresh();
        fresh
    };
    let mut kept = FunnelProjection::new(FunnelDefinition::default_funnel());
    for (index, event) in history.events.iter().enumerate() {
        kept.apply(event);
        kept.refresh();
        let fresh = fresh(&history.events[..=index]);
        assert_eq!(kept.views(), fresh.views(), "after event {index}");
    }
    let mut reversed = history.events.clone();
    reversed.reverse();
    assert_eq!(fresh(&reversed).views(), kept.views(), "in reverse order");
    kept
}

fn person_ids(projection: &FunnelProjection) -> Vec<String> {
    let mut ids: Vec<String> = projection
        .marketing_view()
        .people
        .into_iter()
        .map(|row| row.person)
        .collect();
    ids.sort();
    ids
}

fn retract(target: EventId) -> Payload {
    Payload::Retracted {
        target,
        reason: "test".into(),
    }
}

fn visitor(id: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    (Some(id), None, None)
}

fn nobody() -> (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
) {
    (None, None, None)
}

fn identified(anonymous: &str, person: &str) -> Payload {
    Payload::Identified {
        anonymous_id: anonymous.into(),
        person_id: person.into(),
    }
}

/// A retracted `identified` unlinks the visitor from the person in every view, as if it had
/// never been made: the visitor's facts go to whoever else it was identified as (by the rule
/// of the identifications that count), or to nobody.
#[test]
fn a_retracted_identification_stitches_nothing() {
    let mut history = History::new();
    let view = || example_payload(Kind::ContentViewed);
    history.push(0, visitor("v-1"), view());
    history.push(1, visitor("v-1"), Payload::DemoRequested { product: None });
    let wrong = history.push(2, visitor("v-1"), identified("v-1", "p-1"));
    history.push(3, person("p-1"), example_payload(Kind::EmailOpened));
    history.push(4, visitor("v-2"), view());
    let shared = history.push(5, visitor("v-2"), identified("v-2", "p-2"));
    history.push(6, visitor("v-2"), identified("v-2", "p-3"));
    history.push(7, visitor("v-2"), view());
    let before = history.project();
    assert_eq!(
        before.facts_of("p-1").expect("reads"),
        [
            Kind::ContentViewed,
            Kind::DemoRequested,
            Kind::Identified,
            Kind::EmailOpened
        ]
    );
    assert_eq!(
        before.marketing_view().mql_people,
        1,
        "p-1 by the demo request"
    );

    // The identification of v-1 as p-1 was wrong: p-1 keeps their own email only, and the
    // demo request made nobody an MQL.
    history.push(8, nobody(), retract(wrong));
    // v-2 stood for p-2, then p-3; without the first, all of it is p-3's.
    history.push(9, person("p-2"), retract(shared));
    let after = assert_kept_equals_fresh(&history);
    assert_eq!(after.facts_of("p-1").expect("reads"), [Kind::EmailOpened]);
    assert_eq!(after.marketing_view().mql_people, 0);
    assert_eq!(
        after.facts_of("p-3").expect("reads"),
        [Kind::ContentViewed, Kind::Identified, Kind::ContentViewed]
    );
    assert!(
        after.journey("p-2").is_none(),
        "p-2 was named by nothing else"
    );
    assert_eq!(person_ids(&after), ["p-1", "p-3"]);

    // As if never made: the same views as the history without the identification (save
    // `as_of` and the count of events, which count every event on the log).
    let mut without = History::new();
    without.events = history
        .events
        .iter()
        .filter(|e| ![wrong, shared].contains(&e.event_id) && e.kind() != Kind::Retracted)
        .cloned()
        .collect();
    let without = without.project();
    assert_eq!(after.marketing_view().people, {
        let mut rows = without.marketing_view().people;
        for row in &mut rows {
            row.engagement = after
                .marketing_view()
                .people
                .iter()
                .find(|r| r.person == row.person)
                .map_or(f64::NAN, |r| r.engagement);
        }
        rows
    });
    assert_eq!(after.summary().stages, without.summary().stages);

    // Undoing the retraction stitches v-1 to p-1 again.
    let undo = history.events[history.events.len() - 2].event_id;
    history.push(10, nobody(), retract(undo));
    let again = assert_kept_equals_fresh(&history);
    assert_eq!(again.facts_of("p-1").expect("reads").len(), 4);
}

/// A person named only by events that were all retracted is in no view; a trait or link
/// whose event is retracted stops counting, and the one before it counts again.
#[test]
fn a_person_whose_events_are_all_retracted_is_gone() {
    let mut history = History::new();
    let touch = history.push(0, person("p-1"), example_payload(Kind::ContentViewed));
    let traits = history.push(
        1,
        person("p-1"),
        Payload::PersonUpdated {
            title: None,
            seniority: Some("vp".into()),
            department: None,
            country: None,
        },
    );
    history.push(0, person("p-2"), example_payload(Kind::ContentViewed));
    history.push(
        1,
        person("p-2"),
        Payload::PersonUpdated {
            title: None,
            seniority: Some("vp".into()),
            department: None,
            country: None,
        },
    );
    let demoted = history.push(
        2,
        person("p-2"),
        Payload::PersonUpdated {
            title: None,
            seniority: Some("individual".into()),
            department: None,
            country: None,
        },
    );
    let before = history.project();
    assert_eq!(person_ids(&before), ["p-1", "p-2"]);
    let fit =
        |projection: &FunnelProjection, id: &str| projection.journey(id).map(|journey| journey.fit);
    assert_eq!(fit(&before, "p-2"), Some(-10.0));

    history.push(3, nobody(), retract(touch));
    let touch_gone = assert_kept_equals_fresh(&history);
    assert_eq!(
        person_ids(&touch_gone),
        ["p-1", "p-2"],
        "p-1's person_updated still names them (outside)"
    );
    assert_eq!(touch_gone.facts_of("p-1").expect("reads"), []);

    history.push(4, nobody(), retract(traits));
    history.push(5, nobody(), retract(demoted));
    let after = assert_kept_equals_fresh(&history);
    assert_eq!(person_ids(&after), ["p-2"], "nothing names p-1 any more");
    assert_eq!(after.summary().people, 1);
    assert_eq!(after.people(), 1);
    assert!(after.journey("p-1").is_none());
    let attributed: u64 = after
        .marketing_view()
        .attribution
        .iter()
        .filter(|row| row.dimension == "source")
        .map(|row| row.people)
        .sum();
    assert_eq!(attributed, 1, "attribution credits p-2 only");
    assert_eq!(fit(&after, "p-2"), Some(30.0), "back to vp");
}
