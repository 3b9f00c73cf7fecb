//! Folding a real log: the same history gives the same summary on both backends, in any
//! order of people, and however the log is batched.

use baton_core::{Event, FunnelDefinition, FunnelProjection};
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use baton_producer::{History, HistoryConfig};
use baton_projector::{fold_log, fold_log_to};
use baton_testkit::NatsServer;

fn history() -> Vec<Event> {
    History::new(HistoryConfig::new(9, 120)).collect()
}

fn fold_in_memory(events: &[Event]) -> baton_core::FunnelSummary {
    let mut projection = FunnelProjection::new(FunnelDefinition::default_funnel());
    for event in events {
        projection.apply(event);
    }
    projection.refresh();
    projection.summary()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_fold_to_the_same_summary() {
    let events = history();
    let dir = tempfile::tempdir().expect("dir");
    let embedded = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    for chunk in events.chunks(700) {
        embedded.append(chunk.to_vec()).await.expect("append");
    }
    let server = NatsServer::start();
    let jetstream = JetStreamLog::connect(JetStreamConfig::new(server.url()))
        .await
        .expect("connect");
    for chunk in events.chunks(1_300) {
        jetstream.append(chunk.to_vec()).await.expect("append");
    }
    let mut calls = 0;
    let a = fold_log(&embedded, FunnelDefinition::default_funnel(), |_, _| {
        calls += 1
    })
    .await
    .expect("fold embedded");
    assert_eq!(
        a.position.get(),
        embedded.stat().await.expect("stat").head.get()
    );
    let a = a.projection.summary();
    let b = fold_log(&jetstream, FunnelDefinition::default_funnel(), |_, _| ())
        .await
        .expect("fold jetstream")
        .projection
        .summary();
    assert!(calls >= 1, "progress is reported");
    assert_eq!(a, b);
    assert!(
        a.won_deals > 0 && a.handoffs > 0 && a.handbacks > 0,
        "{a:?}"
    );
    // The log stored each duplicate delivery once; folding the deduplicated history in memory
    // gives the same numbers.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<Event> = events
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect();
    assert_eq!(a, fold_in_memory(&unique));
}

/// Folding to a position folds exactly the events up to it, on both backends, and a bound
/// past the head stops at the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_to_a_position_is_the_fold_of_the_log_up_to_it() {
    let mut seen = std::collections::HashSet::new();
    let events: Vec<Event> = history()
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let embedded = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    embedded.append(events.clone()).await.expect("append");
    let server = NatsServer::start();
    let jetstream = JetStreamLog::connect(JetStreamConfig::new(server.url()))
        .await
        .expect("connect");
    jetstream.append(events.clone()).await.expect("append");
    let definition = FunnelDefinition::default_funnel;
    for at in [1, 777, events.len() / 2] {
        let expected = fold_in_memory(&events[..at]);
        let position = baton_log::Position::new(at as u64);
        let a = fold_log_to(&embedded, definition(), position, |_, _| ())
            .await
            .expect("fold embedded");
        let b = fold_log_to(&jetstream, definition(), position, |_, _| ())
            .await
            .expect("fold jetstream");
        assert_eq!(a.position, position);
        assert_eq!(b.position, position);
        assert_eq!(a.projection.summary(), expected, "at {at}");
        assert_eq!(b.projection.summary(), expected, "at {at}");
    }
    let past = baton_log::Position::new(events.len() as u64 + 50);
    let whole = fold_log_to(&embedded, definition(), past, |_, _| ())
        .await
        .expect("fold");
    assert_eq!(whole.position.get(), events.len() as u64);
    assert_eq!(whole.projection.summary(), fold_in_memory(&events));
}

#[test]
fn the_order_of_people_does_not_change_the_summary() {
    let mut seen = std::collections::HashSet::new();
    let events: Vec<Event> = history()
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect();
    let forward = fold_in_memory(&events);
    // Events of different people interleaved differently: group by account, accounts reversed,
    // each account's events kept in their own relative order.
    let mut by_account: Vec<(String, Vec<Event>)> = Vec::new();
    for event in &events {
        let key = event.identity.account_id.clone().unwrap_or_default();
        match by_account.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(event.clone()),
            None => by_account.push((key, vec![event.clone()])),
        }
    }
    let regrouped: Vec<Event> = by_account
        .into_iter()
        .rev()
        .flat_map(|(_, list)| list)
        .collect();
    assert_eq!(fold_in_memory(&regrouped), forward);
}

#[test]
fn late_events_land_where_they_belong() {
    let mut seen = std::collections::HashSet::new();
    let events: Vec<Event> = history()
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect();
    let mut by_time = events.clone();
    by_time.sort_by_key(|e| e.occurred_at);
    // Identity must come before the facts it stitches only within a person's own order, which
    // business-time order keeps; the fold of the delivery order (with late arrivals) agrees.
    assert_eq!(fold_in_memory(&events), fold_in_memory(&by_time));
}
