//! The marketing, sales and shared-funnel views of a seeded history, checked against an
//! independent computation from the raw events (for what can be computed without the fold)
//! and against each other and the summary (for what must add up).

use baton_core::{
    DealStatus, Direction, Event, EventId, FunnelDefinition, FunnelProjection, Kind, Payload,
};
use baton_producer::{History, HistoryConfig};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the log stores of a seeded history: its events without retried deliveries.
fn history(seed: u64, accounts: u64) -> Vec<Event> {
    History::new(HistoryConfig::new(seed, accounts))
        .stored()
        .collect()
}

fn project(events: &[Event]) -> FunnelProjection {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection
}

/// Events as they count: retracted ones gone, corrected ones replaced.
fn effective(events: &[Event]) -> Vec<Event> {
    let mut retracted = HashSet::new();
    let mut corrections: HashMap<EventId, (Option<baton_core::Timestamp>, Option<Payload>)> =
        HashMap::new();
    for event in events {
        match &event.payload {
            Payload::Retracted { target, .. } => {
                retracted.insert(*target);
            }
            Payload::Corrected {
                target,
                occurred_at,
                replacement,
                ..
            } => {
                corrections.insert(*target, (*occurred_at, replacement.as_deref().cloned()));
            }
            _ => {}
        }
    }
    events
        .iter()
        .filter(|event| !retracted.contains(&event.event_id))
        .map(|event| {
            let mut event = event.clone();
            if let Some((at, payload)) = corrections.get(&event.event_id) {
                if let Some(at) = at {
                    event.occurred_at = *at;
                }
                if let Some(payload) = payload {
                    event.payload = payload.clone();
                }
            }
            event
        })
        .collect()
}

#[derive(Default, Debug)]
struct Deal {
    won: bool,
    lost: Option<((baton_core::Timestamp, EventId), String)>,
    proposals: u64,
    stage: Option<((baton_core::Timestamp, EventId), String)>,
}

#[test]
fn the_sales_view_agrees_with_an_independent_count_of_crm_events() {
    let events = history(17, 300);
    let projection = project(&events);
    let view = projection.sales_view();

    // Independently: every opportunity named on a CRM event or proposal of an identified
    // person, straight from the events.
    let mut deals: BTreeMap<String, Deal> = BTreeMap::new();
    for event in effective(&events) {
        let (Some(opportunity), Some(_)) = (&event.opportunity_id, &event.identity.person_id)
        else {
            continue;
        };
        let key = (event.occurred_at, event.event_id);
        let deal = deals.entry(opportunity.clone()).or_default();
        match &event.payload {
            Payload::OpportunityClosedWon { .. } => deal.won = true,
            Payload::OpportunityClosedLost { reason }
                if deal.lost.as_ref().is_none_or(|(k, _)| key >= *k) =>
            {
                deal.lost = Some((key, reason.clone()));
            }
            Payload::ProposalSent { .. } => deal.proposals += 1,
            Payload::OpportunityCreated {
                stage: Some(stage), ..
            }
            | Payload::OpportunityStageChanged { to: stage, .. }
                if deal.stage.as_ref().is_none_or(|(k, _)| key >= *k) =>
            {
                deal.stage = Some((key, stage.clone()));
            }
            _ => {}
        }
    }
    let won = deals.values().filter(|d| d.won).count() as u64;
    let lost = deals
        .values()
        .filter(|d| !d.won && d.lost.is_some())
        .count() as u64;
    let open = deals.len() as u64 - won - lost;
    assert!(won > 5 && lost > 5 && open > 0, "a rich enough history");
    assert_eq!((view.won, view.lost, view.open), (won, lost, open));
    assert_eq!(
        view.proposals_sent,
        deals.values().map(|d| d.proposals).sum::<u64>()
    );
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for deal in deals.values().filter(|d| !d.won) {
        if let Some((_, reason)) = &deal.lost {
            *reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    let view_reasons: BTreeMap<String, u64> = view.loss_reasons.iter().cloned().collect();
    assert_eq!(view_reasons, reasons);
    let mut stages: BTreeMap<String, u64> = BTreeMap::new();
    for deal in deals.values().filter(|d| !d.won && d.lost.is_none()) {
        let stage = deal
            .stage
            .as_ref()
            .map_or(baton_core::NONE_LABEL.to_owned(), |(_, s)| s.clone());
        *stages.entry(stage).or_default() += 1;
    }
    let view_stages: BTreeMap<String, u64> = view
        .pipeline
        .iter()
        .map(|row| (row.stage.clone(), row.opportunities))
        .collect();
    assert_eq!(view_stages, stages);
    // Rows: one per opportunity, statuses as counted.
    assert_eq!(view.opportunities.len(), deals.len());
    let won_rows = view
        .opportunities
        .iter()
        .filter(|row| row.status == DealStatus::Won)
        .count() as u64;
    assert_eq!(won_rows, won);
    // The summary counts revenue by the same closes.
    let summary = projection.summary();
    assert_eq!(summary.won_deals, won);
    let win_rate = view.win_rate().expect("closed deals");
    assert!((win_rate - won as f64 / (won + lost) as f64).abs() < 1e-12);
    assert!(view.cycle_days_median.expect("won deals") > 0.0);
    assert!(!view.velocity_per_day.is_empty());
}

#[test]
fn the_views_add_up_to_the_summary_and_to_each_other() {
    let events = history(23, 250);
    let projection = project(&events);
    let summary = projection.summary();
    let marketing = projection.marketing_view();
    let sales = projection.sales_view();
    let shared = projection.shared_view();

    // Every person once in the score table; accounts roll people up without double counting.
    assert_eq!(marketing.people.len() as u64, summary.people);
    let with_account = marketing
        .people
        .iter()
        .filter(|row| row.account.is_some())
        .count() as u64;
    assert_eq!(
        marketing.accounts.iter().map(|a| a.people).sum::<u64>(),
        with_account
    );
    // Each attribution dimension credits every person exactly once.
    for dimension in ["source", "channel", "campaign"] {
        let rows = marketing
            .attribution
            .iter()
            .filter(|row| row.dimension == dimension);
        let (people, opportunities) = rows.fold((0, 0), |(p, o), row| {
            (p + row.people, o + row.opportunities)
        });
        assert_eq!(people, summary.people, "{dimension}");
        assert_eq!(
            opportunities,
            sales.opportunities.len() as u64,
            "{dimension}"
        );
    }
    // Customers: every change of recurring revenue is a movement, so the movements in the
    // customers' currencies add up to their revenue now; the deciles cover every active one.
    let customers = projection.person_rows().customer_tables();
    assert!(
        customers.accounts.iter().any(|a| a.status == "active"),
        "the history has customers"
    );
    let mut moved: std::collections::BTreeMap<&str, i64> = Default::default();
    for movement in &customers.movements {
        *moved.entry(&movement.currency).or_default() += movement.arr_change;
    }
    let mut now: std::collections::BTreeMap<&str, i64> = Default::default();
    for account in &customers.accounts {
        if let Some(currency) = &account.currency {
            *now.entry(currency).or_default() += account.arr;
        }
    }
    assert_eq!(moved, now);
    let ranked: u64 = customers
        .concentration
        .iter()
        .filter(|r| r.ranking == "revenue")
        .map(|r| r.accounts)
        .sum();
    let active = customers
        .accounts
        .iter()
        .filter(|a| a.status == "active")
        .count() as u64;
    assert_eq!(ranked, active);
    // MQL entries: the marketing count is the MQL stage's entries in the summary.
    let mql_stage = &summary.stages[FunnelDefinition::default_funnel().mql_stage()];
    assert_eq!(marketing.mql_people, mql_stage.entered);
    assert!(marketing.mqls >= marketing.mql_people);
    // Hand-offs: the SLA table, the ledger and the summary count the same clocks.
    let by_owner: u64 = sales.sla_by_owner.iter().map(|row| row.handoffs).sum();
    assert_eq!(by_owner, summary.follow_up.mqls);
    assert_eq!(marketing.handoffs, summary.follow_up.mqls);
    let breached: u64 = sales.sla_by_owner.iter().map(|row| row.breached).sum();
    assert_eq!(breached, summary.follow_up.breached);
    let to_sales = shared
        .handoffs
        .iter()
        .filter(|h| h.direction == Direction::ToSales)
        .count() as u64;
    assert_eq!(to_sales, summary.handoffs);
    assert_eq!(
        shared.handoffs.len() as u64,
        summary.handoffs + summary.handbacks
    );
    let ping_pong_people: HashSet<&str> = shared
        .handoffs
        .iter()
        .filter(|h| h.ping_pongs > 0)
        .map(|h| h.person.as_str())
        .collect();
    assert_eq!(ping_pong_people.len() as u64, summary.ping_pong_journeys);
    assert!(marketing.accepted + marketing.rejected <= marketing.handoffs);
    assert!(marketing.accepted > 0 && marketing.recycled > 0);
    // Cohorts: every reached person is converted, in flight or dropped; per stage, the cohorts
    // add up to everyone who reached it.
    for row in &shared.cohorts {
        assert_eq!(
            row.reached,
            row.converted + row.in_flight + row.dropped,
            "{row:?}"
        );
    }
    let first_stage: u64 = shared
        .cohorts
        .iter()
        .filter(|row| row.stage == summary.stages[0].name)
        .map(|row| row.reached)
        .sum();
    let in_a_stage = marketing
        .people
        .iter()
        .filter(|row| row.place != "outside")
        .count() as u64;
    // Everyone who ever entered a stage is in exactly one cohort and reached the first stage.
    assert_eq!(first_stage, in_a_stage);
    assert!(shared.cohorts.iter().any(|row| row.in_flight > 0));
    assert!(shared.cohorts.iter().any(|row| row.dropped > 0));
    // Content and campaigns: views are content touches; people never exceed touches.
    assert!(!marketing.content.is_empty() && !marketing.campaigns.is_empty());
    for row in &marketing.content {
        assert!(
            row.views <= row.touches && row.people <= row.touches,
            "{row:?}"
        );
        assert!(row.accounts <= row.people);
    }
    let content_views: u64 = marketing.content.iter().map(|row| row.views).sum();
    let person_views = effective(&events)
        .iter()
        .filter(|e| e.kind() == Kind::ContentViewed && e.identity.person_id.is_some())
        .count() as u64;
    assert!(
        content_views >= person_views,
        "identified views ({person_views}) are all counted ({content_views})"
    );
    assert!(marketing.touches_before_demo_median.is_some());
    let nurtured: u64 = marketing.nurture.iter().map(|row| row.people).sum();
    let marketing_owned = marketing
        .people
        .iter()
        .filter(|row| row.owner == Some(baton_core::Owner::Marketing))
        .count() as u64;
    assert_eq!(nurtured, marketing_owned);
}

/// A late event lands where it belongs: folding the log in time order or in log order gives
/// the same views.
#[test]
fn the_views_do_not_depend_on_arrival_order() {
    let events = history(29, 120);
    let mut by_time = events.clone();
    by_time.sort_by_key(|e| (e.occurred_at, e.event_id));
    let (a, b) = (project(&events), project(&by_time));
    assert_eq!(a.marketing_view(), b.marketing_view());
    assert_eq!(a.sales_view(), b.sales_view());
    assert_eq!(a.shared_view(), b.shared_view());
    assert_eq!(a.customer_view(), b.customer_view());
    assert_eq!(
        a.person_rows().customer_tables(),
        b.person_rows().customer_tables()
    );
    assert_eq!(a.attribution_view(), b.attribution_view());
    assert_eq!(
        a.person_rows().attribution_ledger(None),
        b.person_rows().attribution_ledger(None)
    );
}

/// What a refresh works out per person is kept until that person changes: refreshing after
/// every few events, as a live projector does, gives the views of one refresh at the end.
#[test]
fn refreshing_as_events_arrive_gives_the_views_of_one_refresh() {
    let events = history(31, 60);
    let whole = project(&events);
    for batch in [1, 7, 250] {
        let mut live = FunnelProjection::new(FunnelDefinition::default_funnel());
        for chunk in events.chunks(batch) {
            for event in chunk {
                live.apply(event);
            }
            live.refresh();
        }
        assert_eq!(
            live.views(),
            whole.views(),
            "refreshed every {batch} events"
        );
        assert_eq!(live.customer_view(), whole.customer_view());
        assert_eq!(
            live.person_rows().customer_tables(),
            whole.person_rows().customer_tables(),
            "refreshed every {batch} events"
        );
        assert_eq!(live.attribution_view(), whole.attribution_view());
        assert_eq!(
            live.person_rows().attribution_ledger(None),
            whole.person_rows().attribution_ledger(None),
            "refreshed every {batch} events"
        );
    }
}

/// The views' totals are built by the first build and then kept up to date by each refresh,
/// taking back a re-folded person's old contribution and adding the new one. Building the
/// views after every batch, as the live publisher does, gives at every step the views of a
/// projection that folded the same events at once: with people merged, linked to other
/// accounts, retracted and corrected facts, and deals carried by several people.
#[test]
fn views_kept_up_to_date_by_refreshes_equal_the_views_of_one_fold() {
    // This seed's history has merges, a correction and retractions.
    let events = history(31, 80);
    for batch in [5, 97] {
        let mut live = FunnelProjection::new(FunnelDefinition::default_funnel());
        let chunks: Vec<&[Event]> = events.chunks(batch).collect();
        let checks = chunks.len() / 6;
        for (index, chunk) in chunks.iter().enumerate() {
            for event in *chunk {
                live.apply(event);
            }
            live.refresh();
            let kept = live.views();
            if index % checks == checks - 1 || index + 1 == chunks.len() {
                let seen = (index + 1) * batch;
                let fresh = project(&events[..seen.min(events.len())]);
                assert_eq!(
                    kept,
                    fresh.views(),
                    "batches of {batch}, after {seen} events"
                );
                assert_eq!(
                    live.customer_view(),
                    fresh.customer_view(),
                    "batches of {batch}, after {seen} events"
                );
                assert_eq!(
                    live.person_rows().customer_tables(),
                    fresh.person_rows().customer_tables(),
                    "batches of {batch}, after {seen} events"
                );
                assert_eq!(
                    live.attribution_view(),
                    fresh.attribution_view(),
                    "batches of {batch}, after {seen} events"
                );
                assert_eq!(
                    live.person_rows().attribution_ledger(None),
                    fresh.person_rows().attribution_ledger(None),
                    "batches of {batch}, after {seen} events"
                );
            }
        }
    }
}
