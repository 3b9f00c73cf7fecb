//! A person's journey under the default funnel: given these facts, expect this journey.

use baton_core::{
    ContentType, Direction, EventId, Fact, FunnelDefinition, Journey, Kind, Place, Timestamp,
    Traits,
};

const HOUR: i64 = 3_600_000;

fn t(hours: i64) -> Timestamp {
    // 2026-01-01T00:00:00Z plus hours.
    Timestamp::from_unix_millis(1_767_225_600_000 + hours * HOUR)
}

fn fact(n: u128, hours: i64, kind: Kind) -> Fact {
    Fact {
        at: t(hours),
        event_id: EventId::from_uuid(uuid::Uuid::from_u128(n)),
        kind,
        content_type: None,
        need_declared: None,
        attributes: baton_core::AttributesId::NONE,
    }
}

fn view(n: u128, hours: i64, content_type: ContentType) -> Fact {
    Fact {
        content_type: Some(content_type),
        ..fact(n, hours, Kind::ContentViewed)
    }
}

fn meeting(n: u128, hours: i64, need: bool) -> Fact {
    Fact {
        need_declared: Some(need),
        ..fact(n, hours, Kind::MeetingHeld)
    }
}

fn stage(definition: &FunnelDefinition, name: &str) -> Place {
    Place::Stage(
        definition
            .stages()
            .iter()
            .position(|s| s.name == name)
            .expect("stage"),
    )
}

fn stage_names(definition: &FunnelDefinition, journey: &Journey) -> Vec<String> {
    journey
        .transitions
        .iter()
        .map(|t| match t.to {
            Place::Stage(i) => definition.stages()[i].name.clone(),
            Place::Detour(i) => definition.detours()[i].name.clone(),
            Place::Outside => "outside".into(),
        })
        .collect()
}

fn straight_path() -> Vec<Fact> {
    vec![
        fact(1, 0, Kind::FormSubmitted),
        fact(2, 10, Kind::NurtureEnrolled),
        fact(3, 50, Kind::DemoRequested),
        fact(4, 52, Kind::SalesActivity),
        meeting(5, 100, true),
        fact(6, 120, Kind::OpportunityCreated),
        fact(7, 200, Kind::ProposalSent),
        fact(8, 400, Kind::OpportunityClosedWon),
    ]
}

#[test]
fn a_straight_path_enters_every_stage_once() {
    let definition = FunnelDefinition::default_funnel();
    let journey = Journey::fold(&definition, &straight_path(), &Traits::default());
    assert_eq!(
        stage_names(&definition, &journey),
        [
            "inquiry",
            "engaged",
            "mql",
            "sal",
            "sql",
            "opportunity",
            "proposal",
            "won"
        ]
    );
    assert!(journey.transitions.iter().all(|t| t.skipped.is_empty()));
    assert_eq!(journey.current(), stage(&definition, "won"));
    assert_eq!(journey.handoffs.len(), 1);
    assert_eq!(journey.handoffs[0].direction, Direction::ToSales);
    assert_eq!(journey.handoffs[0].at, t(50));
    let follow_up = &journey.follow_ups[0];
    assert_eq!(
        follow_up.first_action_at,
        Some(t(52)),
        "the SDR's call closes the loop"
    );
    assert!(!follow_up.breached(t(10_000)));
}

#[test]
fn arrival_order_does_not_matter() {
    let definition = FunnelDefinition::default_funnel();
    let mut shuffled = straight_path();
    shuffled.reverse();
    shuffled.swap(1, 5);
    assert_eq!(
        Journey::fold(&definition, &shuffled, &Traits::default()),
        Journey::fold(&definition, &straight_path(), &Traits::default())
    );
}

#[test]
fn a_jump_records_the_skipped_stages_and_the_hand_off() {
    let definition = FunnelDefinition::default_funnel();
    let facts = [
        fact(1, 0, Kind::FormSubmitted),
        fact(2, 5, Kind::OpportunityCreated),
    ];
    let journey = Journey::fold(&definition, &facts, &Traits::default());
    assert_eq!(
        stage_names(&definition, &journey),
        ["inquiry", "opportunity"]
    );
    let skipped: Vec<&str> = journey.transitions[1]
        .skipped
        .iter()
        .map(|i| definition.stages()[*i].name.as_str())
        .collect();
    assert_eq!(skipped, ["engaged", "mql", "sal", "sql"]);
    assert_eq!(
        journey.handoffs.len(),
        1,
        "passing the MQL stage is a hand-off"
    );
}

#[test]
fn recycling_hands_back_and_a_second_mql_hands_off_again() {
    let definition = FunnelDefinition::default_funnel();
    let facts = [
        fact(1, 0, Kind::FormSubmitted),
        fact(2, 10, Kind::DemoRequested),
        fact(3, 12, Kind::LeadRejected),
        fact(4, 500, Kind::DemoRequested),
        fact(5, 501, Kind::LeadAccepted),
    ];
    let journey = Journey::fold(&definition, &facts, &Traits::default());
    assert_eq!(
        stage_names(&definition, &journey),
        ["inquiry", "mql", "recycled", "engaged", "mql", "sal"]
    );
    let directions: Vec<Direction> = journey.handoffs.iter().map(|h| h.direction).collect();
    assert_eq!(
        directions,
        [
            Direction::ToSales,
            Direction::ToMarketing,
            Direction::ToSales
        ]
    );
    assert_eq!(journey.follow_ups.len(), 2, "each MQL starts its own clock");
    assert_eq!(
        journey.follow_ups[0].first_action_at,
        Some(t(12)),
        "a rejection closes the loop too"
    );
    assert_eq!(journey.follow_ups[1].first_action_at, Some(t(501)));
}

#[test]
fn engagement_decays_by_half_life_and_is_capped_per_day() {
    let definition = FunnelDefinition::default_funnel();
    let facts = [
        view(1, 0, ContentType::Pricing),
        view(2, 30 * 24, ContentType::Pricing),
    ];
    let journey = Journey::fold(&definition, &facts, &Traits::default());
    assert!(
        (journey.engagement - 15.0).abs() < 1e-9,
        "10 halved over 30 days, plus 10: {}",
        journey.engagement
    );
    assert!((journey.engagement_at(&definition, t(60 * 24)) - 7.5).abs() < 1e-9);

    let burst: Vec<Fact> = (0..10).map(|n| view(n, 1, ContentType::Pricing)).collect();
    let journey = Journey::fold(&definition, &burst, &Traits::default());
    assert!(
        (journey.engagement - 40.0).abs() < 1e-9,
        "capped at 40 a day: {}",
        journey.engagement
    );
}

#[test]
fn score_and_fit_together_make_an_mql() {
    let definition = FunnelDefinition::default_funnel();
    let mut facts = vec![fact(100, 0, Kind::FormSubmitted)];
    // Four days of reading: 10 (form) + 4 × 20 (two pricing views a day), minus a little decay.
    for day in 0..4 {
        facts.push(view(2 * day, day as i64 * 24 + 1, ContentType::Pricing));
        facts.push(view(
            2 * day + 1,
            day as i64 * 24 + 2,
            ContentType::CaseStudy,
        ));
    }
    let unfit = Journey::fold(&definition, &facts, &Traits::default());
    assert!(unfit.engagement >= 40.0);
    assert!(
        !unfit
            .transitions
            .iter()
            .any(|t| t.to == stage(&definition, "mql")),
        "no fit, no MQL"
    );

    let director = Traits {
        account_employees: Some(800),
        person_seniority: Some("director".into()),
        ..Traits::default()
    };
    let fit = Journey::fold(&definition, &facts, &director);
    assert!((fit.fit - 60.0).abs() < 1e-9);
    assert_eq!(fit.current(), stage(&definition, "mql"));
    assert_eq!(fit.handoffs.len(), 1);
}

#[test]
fn follow_up_breaches_when_late_or_missing() {
    let definition = FunnelDefinition::default_funnel();
    let late = [
        fact(1, 0, Kind::DemoRequested),
        fact(2, 30, Kind::SalesActivity),
    ];
    let journey = Journey::fold(&definition, &late, &Traits::default());
    assert!(journey.follow_ups[0].breached(t(31)));

    let untouched = [fact(1, 0, Kind::DemoRequested)];
    let journey = Journey::fold(&definition, &untouched, &Traits::default());
    assert!(
        !journey.follow_ups[0].breached(t(23)),
        "still within the 24 hours"
    );
    assert!(journey.follow_ups[0].breached(t(25)));
    assert_eq!(journey.follow_ups[0].deadline, t(24));
}

#[test]
fn journeys_move_back_only_through_detours_and_endings_hold() {
    let definition = FunnelDefinition::default_funnel();
    let mut facts = straight_path();
    facts.truncate(7); // up to the proposal
    facts.push(fact(20, 300, Kind::FormSubmitted));
    let journey = Journey::fold(&definition, &facts, &Traits::default());
    assert_eq!(
        journey.current(),
        stage(&definition, "proposal"),
        "a new form does not move back"
    );

    let mut won = straight_path();
    won.push(fact(21, 600, Kind::LeadRecycled));
    let journey = Journey::fold(&definition, &won, &Traits::default());
    assert_eq!(journey.current(), stage(&definition, "won"), "won is final");

    let lost_then_recycled = [
        fact(1, 0, Kind::DemoRequested),
        fact(2, 10, Kind::OpportunityCreated),
        fact(3, 20, Kind::OpportunityClosedLost),
        fact(4, 30, Kind::ProposalSent),
        fact(5, 40, Kind::LeadRecycled),
    ];
    let journey = Journey::fold(&definition, &lost_then_recycled, &Traits::default());
    assert_eq!(
        stage_names(&definition, &journey),
        ["mql", "opportunity", "lost", "recycled", "engaged"],
        "lost holds until a detour brings the person back"
    );

    let disqualified = [
        fact(1, 0, Kind::FormSubmitted),
        fact(2, 5, Kind::LeadDisqualified),
        fact(3, 9, Kind::DemoRequested),
    ];
    let journey = Journey::fold(&definition, &disqualified, &Traits::default());
    assert_eq!(
        stage_names(&definition, &journey),
        ["inquiry", "disqualified"]
    );
}

#[test]
fn a_meeting_without_a_declared_need_recycles() {
    let definition = FunnelDefinition::default_funnel();
    let facts = [
        fact(1, 0, Kind::DemoRequested),
        fact(2, 3, Kind::LeadAccepted),
        meeting(3, 50, false),
    ];
    let journey = Journey::fold(&definition, &facts, &Traits::default());
    assert_eq!(
        stage_names(&definition, &journey),
        ["mql", "sal", "recycled", "engaged"]
    );
    assert_eq!(
        journey.handoffs.last().map(|h| h.direction),
        Some(Direction::ToMarketing)
    );
}

mod laws {
    use super::*;
    use proptest::prelude::*;

    fn any_fact() -> impl Strategy<Value = Fact> {
        (
            0..Kind::ALL.len(),
            0i64..2_000,
            any::<u128>(),
            any::<bool>(),
            0..ContentType::ALL.len(),
        )
            .prop_map(|(kind, hours, id, need, content)| {
                let kind = Kind::ALL[kind];
                Fact {
                    at: t(hours),
                    event_id: EventId::from_uuid(uuid::Uuid::from_u128(id)),
                    kind,
                    content_type: (kind == Kind::ContentViewed)
                        .then_some(ContentType::ALL[content]),
                    need_declared: (kind == Kind::MeetingHeld).then_some(need),
                    attributes: baton_core::AttributesId::NONE,
                }
            })
    }

    proptest! {
        #[test]
        fn the_fold_ignores_arrival_order(
            facts in proptest::collection::vec(any_fact(), 0..60),
            seed in any::<u64>(),
        ) {
            let definition = FunnelDefinition::default_funnel();
            let mut shuffled = facts.clone();
            // A deterministic shuffle driven by the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = (state % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            let traits = Traits { person_seniority: Some("vp".into()), ..Traits::default() };
            prop_assert_eq!(
                Journey::fold(&definition, &facts, &traits),
                Journey::fold(&definition, &shuffled, &traits)
            );
        }

        #[test]
        fn transitions_are_in_time_order_and_hand_offs_alternate(
            facts in proptest::collection::vec(any_fact(), 0..80),
        ) {
            let definition = FunnelDefinition::default_funnel();
            let journey = Journey::fold(&definition, &facts, &Traits::default());
            prop_assert!(journey.transitions.windows(2).all(|w| w[0].at <= w[1].at));
            for pair in journey.handoffs.windows(2) {
                prop_assert_ne!(pair[0].direction, pair[1].direction);
            }
            if let Some(first) = journey.handoffs.first() {
                prop_assert_eq!(first.direction, Direction::ToSales);
            }
        }
    }
}

/// A projection holds one fact per event: their size is most of its memory at ten million
/// events (`docs/benchmarks.md`).
#[test]
fn a_fact_is_32_bytes() {
    assert_eq!(std::mem::size_of::<baton_core::Fact>(), 32);
}
