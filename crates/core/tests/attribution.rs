//! The attribution view: every model's credits worked out by hand from a small history (the
//! rules are in docs/funnels.md, *Attribution*, and docs/views.md, *Attribution*), exact to
//! the minor unit; a retraction, a re-linked person and a touch after the close move exactly
//! the credits they should; and the view kept up to date event by event equals a fresh fold
//! in either order of arrival.

use baton_core::example::example_event;
use baton_core::{
    Campaign, Event, EventId, FormKind, FunnelDefinition, FunnelProjection, Identity, LedgerRow,
    Money, Payload, Timestamp,
};
use std::collections::BTreeMap;

/// Stages enough for the milestones: MQL on a webinar attended.
const FUNNEL: &str = r#"
[funnel]
name = "attribution-test"

[mql]
high_intent = ["webinar_attended"]

[sla]
follow_up_hours = 24
met_by = ["sales_activity"]

[[stage]]
name = "inquiry"
owner = "marketing"
enter_on = ["content_viewed", "ad_clicked", "form_submitted"]

[[stage]]
name = "mql"
owner = "marketing"
mql = true

[[stage]]
name = "opportunity"
owner = "sales"
enter_on = ["opportunity_created"]

[[stage]]
name = "won"
owner = "sales"
outcome = "won"
enter_on = ["opportunity_closed_won"]

[attribution]
scope = "SCOPE"

[[attribution.model]]
name = "first_touch"
kind = "first_touch"

[[attribution.model]]
name = "last_touch"
kind = "last_touch"

[[attribution.model]]
name = "linear"
kind = "linear"

[[attribution.model]]
name = "u_shaped"
kind = "u_shaped"

[[attribution.model]]
name = "w_shaped"
kind = "w_shaped"

[[attribution.model]]
name = "events_heavy"
kind = "custom"
each = 1
touch_weights = { webinar_attended = 3 }
"#;

fn definition(scope: &str) -> FunnelDefinition {
    FunnelDefinition::parse("test.toml", &FUNNEL.replace("SCOPE", scope)).expect("valid")
}

struct History(Vec<Event>);

impl History {
    fn push(
        &mut self,
        at: &str,
        person: &str,
        account: &str,
        channel: Option<&str>,
        opportunity: Option<&str>,
        payload: Payload,
    ) -> EventId {
        let mut event = example_event(payload.kind(), 0);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(self.0.len() as u128 + 1));
        event.occurred_at = Timestamp::parse_rfc3339(at).expect("time");
        event.identity = Identity {
            anonymous_id: None,
            person_id: Some(person.into()),
            account_id: Some(account.into()),
        };
        event.opportunity_id = opportunity.map(str::to_owned);
        event.campaign = Campaign {
            campaign_id: channel.map(|c| format!("{c}-campaign")),
            channel: channel.map(str::to_owned),
            content_id: None,
        };
        event.payload = payload;
        let id = event.event_id;
        self.0.push(event);
        id
    }
}

fn viewed() -> Payload {
    Payload::ContentViewed {
        url: "https://example.com/pricing".into(),
        content_type: baton_core::ContentType::Pricing,
        title: None,
    }
}

fn amount() -> Money {
    // 10,000.01 USD: an odd number of cents, so remainders show.
    Money {
        minor_units: 1_000_001,
        currency: "USD".into(),
    }
}

/// acct-a: p-1 clicks an ad (paid social) and later fills a form (organic search), p-2 reads
/// a page (organic search) and attends a webinar (events: the MQL), p-1's opportunity is
/// created, p-2 opens an email (email), the opportunity is won, and p-2 reads a page after
/// the close. An email sent (not an engagement) lies among them.
fn history() -> (History, EventId) {
    let mut h = History(Vec::new());
    let ad = h.push(
        "2026-01-01T00:00:00Z",
        "p-1",
        "acct-a",
        Some("paid_social"),
        None,
        Payload::AdClicked {
            network: "linkedin".into(),
            ad_id: None,
        },
    );
    h.push(
        "2026-01-05T00:00:00Z",
        "p-2",
        "acct-a",
        Some("organic_search"),
        None,
        viewed(),
    );
    h.push(
        "2026-01-06T00:00:00Z",
        "p-2",
        "acct-a",
        Some("email"),
        None,
        Payload::EmailSent {
            email_id: "e-1".into(),
        },
    );
    h.push(
        "2026-01-10T00:00:00Z",
        "p-1",
        "acct-a",
        Some("organic_search"),
        None,
        Payload::FormSubmitted {
            form_id: "contact".into(),
            form_kind: FormKind::ContactUs,
        },
    );
    h.push(
        "2026-01-20T00:00:00Z",
        "p-2",
        "acct-a",
        Some("events"),
        None,
        Payload::WebinarAttended {
            webinar_id: "w-1".into(),
            minutes: 30,
        },
    );
    h.push(
        "2026-02-01T00:00:00Z",
        "p-1",
        "acct-a",
        None,
        Some("opp-1"),
        Payload::OpportunityCreated {
            amount: Some(amount()),
            stage: None,
        },
    );
    h.push(
        "2026-02-10T00:00:00Z",
        "p-2",
        "acct-a",
        Some("email"),
        None,
        Payload::EmailOpened {
            email_id: "e-1".into(),
        },
    );
    h.push(
        "2026-03-01T00:00:00Z",
        "p-1",
        "acct-a",
        None,
        Some("opp-1"),
        Payload::OpportunityClosedWon { amount: amount() },
    );
    h.push(
        "2026-03-05T00:00:00Z",
        "p-2",
        "acct-a",
        Some("direct"),
        None,
        viewed(),
    );
    (h, ad)
}

fn fold(definition: &FunnelDefinition, events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(definition.clone());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

/// Each model's credit per touch position (1-based), from the ledger.
fn credits(projection: &FunnelProjection) -> BTreeMap<String, Vec<(u64, i64, Option<String>)>> {
    let mut by_model: BTreeMap<String, Vec<(u64, i64, Option<String>)>> = BTreeMap::new();
    for row in projection.person_rows().attribution_ledger(None) {
        by_model.entry(row.model.clone()).or_default().push((
            row.position.expect("a position"),
            row.credited_minor,
            row.channel.clone(),
        ));
    }
    by_model
}

fn positions(rows: &[(u64, i64, Option<String>)]) -> Vec<(u64, i64)> {
    rows.iter().map(|(p, c, _)| (*p, *c)).collect()
}

#[test]
fn every_model_credits_the_touches_as_worked_out_by_hand() {
    let (h, _) = history();
    let projection = fold(&definition("account"), &h.0);
    let credits = credits(&projection);
    // The set: 1 ad (paid_social, first), 2 page (organic_search), 3 form (organic_search,
    // lead), 4 webinar (events, MQL and the last touch before the opportunity), 5 email
    // opened (email, the last before the close). The email sent and the page after the close
    // are not in it.
    assert_eq!(positions(&credits["first_touch"]), [(1, 1_000_001)]);
    assert_eq!(positions(&credits["last_touch"]), [(4, 1_000_001)]);
    // 200,000.2 each: the unit left goes to the earliest.
    assert_eq!(
        positions(&credits["linear"]),
        [
            (1, 200_001),
            (2, 200_000),
            (3, 200_000),
            (4, 200_000),
            (5, 200_000)
        ]
    );
    // 40% first, 40% lead, 20% over the middle (2, 4, 5): 400,000.4 | 400,000.4 | 200,000.2,
    // the unit left to the first component; the middle's 200,000 is 66,666.67 each, its two
    // units left to the earliest two.
    assert_eq!(
        positions(&credits["u_shaped"]),
        [
            (1, 400_001),
            (2, 66_667),
            (3, 400_000),
            (4, 66_667),
            (5, 66_666)
        ]
    );
    // 30% first, lead, opportunity; 10% over the middle (2 and 5).
    assert_eq!(
        positions(&credits["w_shaped"]),
        [
            (1, 300_001),
            (2, 50_000),
            (3, 300_000),
            (4, 300_000),
            (5, 50_000)
        ]
    );
    // Every touch, the webinar weighing 3: 1,000,001 × 1/7 and × 3/7.
    assert_eq!(
        positions(&credits["events_heavy"]),
        [
            (1, 142_858),
            (2, 142_857),
            (3, 142_857),
            (4, 428_572),
            (5, 142_857)
        ]
    );
    for (model, rows) in &credits {
        let sum: i64 = rows.iter().map(|(_, credit, _)| credit).sum();
        assert_eq!(sum, 1_000_001, "{model} adds up to the booked amount");
    }
    // The roll-ups are the ledger grouped by channel; the sourcing touch is the ad.
    let view = projection.attribution_view();
    let w_channels: BTreeMap<&str, (f64, u64)> = view
        .credit
        .iter()
        .filter(|row| row.model == "w_shaped" && row.dimension == "channel")
        .map(|row| {
            (
                row.value.as_str(),
                (row.credited_revenue_minor as f64, row.sourced_won),
            )
        })
        .collect();
    assert_eq!(
        w_channels,
        BTreeMap::from([
            ("email", (50_000.0, 0)),
            ("events", (300_000.0, 0)),
            ("organic_search", (350_000.0, 0)),
            ("paid_social", (300_001.0, 1)),
        ])
    );
    let models: Vec<(&str, i64, i64)> = view
        .models
        .iter()
        .map(|m| (m.model.as_str(), m.revenue_minor, m.credited_revenue_minor))
        .collect();
    assert!(
        models
            .iter()
            .all(|(_, revenue, credited)| *revenue == 1_000_001 && *credited == 1_000_001),
        "{models:?}"
    );
}

#[test]
fn a_retraction_and_a_relinked_person_move_exactly_their_credits() {
    let (mut h, ad) = history();
    let definition = definition("account");
    // The ad retracted: the page is now the first touch and the source.
    let retraction = {
        let mut event = example_event(baton_core::Kind::Retracted, 0);
        event.event_id = EventId::from_uuid(uuid::Uuid::from_u128(1000));
        event.occurred_at = Timestamp::parse_rfc3339("2026-03-10T00:00:00Z").expect("time");
        event.payload = Payload::Retracted {
            target: ad,
            reason: "bot".into(),
        };
        event
    };
    h.0.push(retraction);
    let after = credits(&fold(&definition, &h.0));
    assert_eq!(
        after["w_shaped"]
            .iter()
            .map(|(p, c, ch)| (*p, *c, ch.clone().unwrap_or_default()))
            .collect::<Vec<_>>(),
        [
            (1, 300_001, "organic_search".to_owned()),
            (2, 300_000, "organic_search".to_owned()),
            (3, 300_000, "events".to_owned()),
            (4, 100_000, "email".to_owned()),
        ]
    );
    // p-2 moves to acct-b before anything else: acct-a's set is p-1's ad and form alone.
    // W-shaped: first (the ad), lead and opportunity (both the form), no middle: a third of
    // 1,000,001 each, the two units left to the first two components.
    let (mut h, _) = history();
    h.push(
        "2025-12-01T00:00:00Z",
        "p-2",
        "acct-b",
        None,
        None,
        Payload::LinkedToAccount {
            person_id: "p-2".into(),
            account_id: "acct-b".into(),
        },
    );
    let relinked = credits(&fold(&definition, &h.0));
    assert_eq!(
        positions(&relinked["w_shaped"]),
        [(1, 333_334), (2, 666_667)]
    );
    // Only the people named on the opportunity (p-1): the same two touches.
    let (h, _) = history();
    let named = credits(&fold(&self::definition("people"), &h.0));
    assert_eq!(positions(&named["w_shaped"]), [(1, 333_334), (2, 666_667)]);
    assert_eq!(positions(&named["linear"]), [(1, 500_001), (2, 500_000)]);
}

/// The view and its ledger kept up to date event by event equal a fresh fold of the same
/// events, in the log's order and backwards.
#[test]
fn the_view_kept_event_by_event_equals_a_fresh_fold() {
    let (mut h, ad) = history();
    let mut retraction = example_event(baton_core::Kind::Retracted, 0);
    retraction.event_id = EventId::from_uuid(uuid::Uuid::from_u128(1000));
    retraction.occurred_at = Timestamp::parse_rfc3339("2026-03-10T00:00:00Z").expect("time");
    retraction.payload = Payload::Retracted {
        target: ad,
        reason: "bot".into(),
    };
    h.0.push(retraction);
    h.push(
        "2026-02-15T00:00:00Z",
        "p-2",
        "acct-b",
        None,
        None,
        Payload::LinkedToAccount {
            person_id: "p-2".into(),
            account_id: "acct-b".into(),
        },
    );
    for scope in ["account", "people"] {
        let definition = definition(scope);
        let mut kept = FunnelProjection::new(definition.clone());
        // Totals kept from the first event on: the view is kept up to date, not folded anew.
        let _ = kept.sales_view();
        for (index, event) in h.0.iter().enumerate() {
            kept.apply(event);
            kept.refresh();
            let fresh = fold(&definition, &h.0[..=index]);
            assert_eq!(
                kept.attribution_view(),
                fresh.attribution_view(),
                "{scope}, after event {index}"
            );
            assert_eq!(
                kept.person_rows().attribution_ledger(None),
                fresh.person_rows().attribution_ledger(None),
                "{scope}, after event {index}"
            );
        }
        let mut reversed = h.0.clone();
        reversed.reverse();
        let backwards = fold(&definition, &reversed);
        assert_eq!(backwards.attribution_view(), kept.attribution_view());
        let ledger: Vec<LedgerRow> = backwards.person_rows().attribution_ledger(Some("opp-1"));
        assert_eq!(ledger, kept.person_rows().attribution_ledger(None));
    }
}

#[test]
fn validation_names_each_mistake_with_its_line() {
    let text = FUNNEL.replace("SCOPE", "everyone").replace(
        "kind = \"w_shaped\"",
        "kind = \"w_shaped\"\nhalf_life_days = 3",
    ) + "\n[[attribution.model]]\nname = \"linear\"\nkind = \"straight\"\n";
    let errors = FunnelDefinition::parse("test.toml", &text)
        .expect_err("invalid")
        .to_string();
    assert!(
        errors.contains("attribution.scope must be \"account\" or \"people\", got \"everyone\""),
        "{errors}"
    );
    assert!(
        errors.contains("half_life_days is for kind = \"time_decay\" or \"custom\", not w_shaped"),
        "{errors}"
    );
    assert!(
        errors.contains("attribution.model name \"linear\" is used twice"),
        "{errors}"
    );
    assert!(errors.contains("unknown kind \"straight\""), "{errors}");
    // Each names its line.
    let scope_line = text
        .lines()
        .position(|l| l.contains("everyone"))
        .expect("line")
        + 1;
    assert!(
        errors.contains(&format!("test.toml:{scope_line}: attribution.scope")),
        "{errors}"
    );
}

/// A replay sets each model's credit by channel beside the live one's, models matched by
/// name: a model of one side only has nothing on the other.
#[test]
fn a_comparison_sets_credits_by_channel_side_by_side_by_model() {
    let (h, _) = history();
    let live = fold(&definition("account"), &h.0);
    let candidate_text = FUNNEL.replace("SCOPE", "people").replace(
        "name = \"u_shaped\"\nkind = \"u_shaped\"",
        "name = \"decayed\"\nkind = \"time_decay\"\nhalf_life_days = 7",
    );
    let candidate = fold(
        &FunnelDefinition::parse("candidate.toml", &candidate_text).expect("valid"),
        &h.0,
    );
    let comparison = baton_core::compare(&live, &candidate);
    let row = |model: &str, channel: &str| {
        comparison
            .attribution
            .iter()
            .find(|row| row.model == model && row.channel == channel)
            .unwrap_or_else(|| panic!("{model} {channel}"))
            .clone()
    };
    // Linear over five touches live (events: the webinar, 200,000), over p-1's two on the
    // candidate (events: none).
    assert_eq!(row("linear", "events").live, Some((200_000, 0)));
    assert_eq!(row("linear", "events").candidate, Some((0, 0)));
    assert_eq!(row("linear", "paid_social").candidate, Some((500_001, 0)));
    assert_eq!(row("u_shaped", "paid_social").candidate, None);
    assert_eq!(row("decayed", "paid_social").live, None);
    assert!(row("decayed", "paid_social").candidate.is_some());
    // Live models first, in their order, then the candidate's own.
    let models: Vec<&str> = comparison
        .attribution
        .iter()
        .map(|r| r.model.as_str())
        .collect();
    let first_decayed = models
        .iter()
        .position(|m| *m == "decayed")
        .expect("decayed");
    assert!(
        models[first_decayed..].iter().all(|m| *m == "decayed"),
        "{models:?}"
    );
}

/// A restatement lists each model's credited revenue by channel, and the cause that moved it:
/// the ad retracted after the month's end takes W-shaped's 300,001 from paid social and gives
/// it to organic search (the page became the first touch).
#[test]
fn a_restatement_explains_credited_revenue_by_cause() {
    let (h, ad) = history();
    let definition = definition("account");
    let from = Timestamp::parse_rfc3339("2026-03-31T23:59:59Z").expect("time");
    let to = Timestamp::parse_rfc3339("2026-04-30T23:59:59Z").expect("time");
    let mut retraction = example_event(baton_core::Kind::Retracted, 0);
    retraction.event_id = EventId::from_uuid(uuid::Uuid::from_u128(1000));
    retraction.occurred_at = Timestamp::parse_rfc3339("2026-04-02T00:00:00Z").expect("time");
    retraction.payload = Payload::Retracted {
        target: ad,
        reason: "bot".into(),
    };
    let restatement =
        baton_core::restate::restate(fold(&definition, &h.0), &[retraction], from, to, None);
    let moved = |name: &str| {
        restatement
            .figures
            .iter()
            .find(|f| f.figure.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    let paid = moved("credited revenue w_shaped channel paid_social");
    assert_eq!((paid.from, paid.to), (300_001, 0));
    assert_eq!(paid.moved[1], -300_001, "all of it by the retraction");
    let organic = moved("credited revenue w_shaped channel organic_search");
    assert_eq!((organic.from, organic.to), (350_000, 600_001));
    assert_eq!(organic.figure.currency.as_deref(), Some("USD"));
}

/// An opportunity with no touch before its creation: `last_touch` leaves its amount
/// unattributed (one ledger row, position 0, `(unattributed)` in every dimension), the others
/// credit the later touch, and it is sourced by `(unattributed)`.
#[test]
fn an_amount_no_touch_earned_is_unattributed_and_still_adds_up() {
    let (mut h, _) = history();
    h.push(
        "2026-01-01T00:00:00Z",
        "p-3",
        "acct-c",
        None,
        Some("opp-2"),
        Payload::OpportunityCreated {
            amount: Some(Money {
                minor_units: 50_000,
                currency: "USD".into(),
            }),
            stage: None,
        },
    );
    h.push(
        "2026-01-05T00:00:00Z",
        "p-3",
        "acct-c",
        Some("events"),
        None,
        viewed(),
    );
    let projection = fold(&definition("account"), &h.0);
    let ledger = projection.person_rows().attribution_ledger(Some("opp-2"));
    let last: Vec<&LedgerRow> = ledger.iter().filter(|r| r.model == "last_touch").collect();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].position, Some(0));
    assert_eq!(last[0].touch, None);
    assert_eq!(last[0].channel.as_deref(), Some("(unattributed)"));
    assert_eq!(last[0].credited_minor, 50_000);
    let linear: Vec<(Option<u64>, i64)> = ledger
        .iter()
        .filter(|r| r.model == "linear")
        .map(|r| (r.position, r.credited_minor))
        .collect();
    assert_eq!(linear, [(Some(1), 50_000)]);
    let view = projection.attribution_view();
    let model = view
        .models
        .iter()
        .find(|m| m.model == "last_touch")
        .expect("last_touch");
    assert_eq!(
        (
            model.open,
            model.pipeline_minor,
            model.unattributed_pipeline_minor
        ),
        (1, 50_000, 50_000)
    );
    let sourced = view
        .credit
        .iter()
        .find(|r| r.model == "linear" && r.dimension == "channel" && r.value == "(unattributed)")
        .expect("sourced by nothing");
    assert_eq!(
        (
            sourced.sourced_opportunities,
            sourced.sourced_pipeline_minor
        ),
        (1, 50_000)
    );
    assert_eq!(sourced.influenced_opportunities, 0);
}
