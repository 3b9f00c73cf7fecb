//! The publisher library against real logs: batching many sends, duplicates, and a NATS
//! server killed and started again under it.

use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog, Position};
use baton_producer::{Published, Publisher, PublisherOptions};
use baton_testkit::{NatsServer, events};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

async fn stored_ids<L: EventLog>(log: &L) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    let mut stream = log.read(Position::ZERO).await.expect("read");
    while let Some(record) = stream.next().await {
        let id = record.expect("record").event.event_id.to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_sends_are_stored_once_and_resent_ones_are_duplicates() {
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("log");
    let (publisher, task) = Publisher::start(
        log.clone(),
        PublisherOptions {
            max_batch_events: 64,
            max_queued_sends: 8,
            ..PublisherOptions::default()
        },
    );
    let all = events("publisher", 500);
    // Keep many sends in flight: the queue bound makes `send` wait, not grow.
    let mut pending = Vec::new();
    for chunk in all.chunks(5) {
        pending.push(publisher.send(chunk.to_vec()).await.expect("send"));
    }
    let mut appended = 0;
    for receipt in pending {
        for outcome in receipt.outcome().await.expect("outcome") {
            assert!(matches!(outcome, Published::Appended(_)), "{outcome:?}");
            appended += 1;
        }
    }
    assert_eq!(appended, 500);
    let again = publisher.publish(all[7].clone()).await.expect("publish");
    assert!(matches!(again, Published::Duplicate(_)));
    drop(publisher);
    task.join().await.expect("join");
    let counts = stored_ids(&log).await;
    assert_eq!(counts.len(), 500);
    assert!(counts.values().all(|count| *count == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_across_a_nats_restart_keep_the_event_ids() {
    let mut server = NatsServer::start();
    let mut config = JetStreamConfig::new(server.url());
    config.duplicate_window = Duration::from_secs(2);
    let log = JetStreamLog::connect(config).await.expect("connect");
    let (publisher, task) = Publisher::start(
        log.clone(),
        PublisherOptions {
            max_batch_events: 50,
            retries: 30,
            first_retry_delay: Duration::from_millis(100),
            ..PublisherOptions::default()
        },
    );
    let all = events("publisher-restart", 300);
    let first = publisher.send(all[..100].to_vec()).await.expect("send");
    assert_eq!(first.outcome().await.expect("stored").len(), 100);

    server.kill();
    let mut pending = Vec::new();
    for chunk in all[100..].chunks(20) {
        pending.push(publisher.send(chunk.to_vec()).await.expect("send"));
    }
    server.start_again();
    for receipt in pending {
        let outcomes = receipt.outcome().await.expect("stored after the restart");
        assert!(
            outcomes.iter().all(|o| matches!(o, Published::Appended(_))),
            "{outcomes:?}"
        );
    }
    drop(publisher);
    task.join().await.expect("join");
    let counts = stored_ids(&log).await;
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|count| *count == 1), "every event once");
}
