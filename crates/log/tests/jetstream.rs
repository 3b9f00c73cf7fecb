//! JetStream-only behaviour: server restarts under a live log instance, unreachable servers,
//! and streams that would lose history.

use baton_log::{AppendOutcome, EventLog, JetStreamConfig, JetStreamLog, LogError, Position};
use baton_testkit::{NatsServer, events};
use futures::StreamExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_log_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let log = JetStreamLog::connect(JetStreamConfig::new(server.url()))
        .await
        .expect("connect");
    let before = log
        .append(events("restart-before", 10))
        .await
        .expect("append");
    assert!(
        before
            .iter()
            .all(|o| matches!(o, AppendOutcome::Appended(_)))
    );

    server.restart();

    // The same instance reconnects and retries until the server is back.
    let after = log
        .append(events("restart-after", 10))
        .await
        .expect("append after restart");
    assert!(
        after
            .iter()
            .all(|o| matches!(o, AppendOutcome::Appended(_))),
        "{after:?}"
    );
    let stat = log.stat().await.expect("stat");
    assert_eq!(stat.events, 20);
    let records: Vec<_> = log
        .read(Position::ZERO)
        .await
        .expect("read")
        .collect()
        .await;
    assert_eq!(records.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_reports_not_written_and_a_retry_stores_once() {
    let mut server = NatsServer::start();
    let mut config = JetStreamConfig::new(server.url());
    // Retries last half the window: keep the test short.
    config.duplicate_window = Duration::from_secs(2);
    let log = JetStreamLog::connect(config).await.expect("connect");
    log.append(events("down-first", 2)).await.expect("append");

    server.kill();
    let batch = events("down-batch", 5);
    let outcomes = match log.append(batch.clone()).await {
        Ok(outcomes) => outcomes,
        // Finding the head may fail outright while the server is down: also "not written".
        Err(error) => {
            assert!(matches!(error, LogError::Nats(_)), "{error}");
            vec![AppendOutcome::NotWritten(error.to_string()); batch.len()]
        }
    };
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::NotWritten(_))),
        "{outcomes:?}"
    );

    server.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let outcomes = loop {
        match log.append(batch.clone()).await {
            Ok(outcomes)
                if outcomes
                    .iter()
                    .all(|o| !matches!(o, AppendOutcome::NotWritten(_))) =>
            {
                break outcomes;
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "server did not come back: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::Appended(_))),
        "{outcomes:?}"
    );
    assert_eq!(log.stat().await.expect("stat").events, 7);
}

/// Creates `BATON` by hand with `config`, then expects Baton to refuse it, saying `fragment`.
async fn assert_existing_stream_refused(
    config: async_nats::jetstream::stream::Config,
    fragment: &str,
) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("client");
    async_nats::jetstream::new(client)
        .create_stream(config)
        .await
        .expect("create the stream by hand");
    let error = JetStreamLog::connect(JetStreamConfig::new(server.url()))
        .await
        .expect_err("the stream must be refused");
    assert!(matches!(error, LogError::StreamConfig { .. }), "{error}");
    assert!(error.to_string().contains(fragment), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_retention_limits_is_refused() {
    assert_existing_stream_refused(
        async_nats::jetstream::stream::Config {
            name: "BATON".into(),
            subjects: vec!["baton.>".into()],
            max_age: Duration::from_secs(3600),
            ..Default::default()
        },
        "must keep every event",
    )
    .await;
}

/// A writer's config: its id index in memory, or on disk in `ids` keeping three recent ids
/// (so ids are looked up in runs), as `serve --nats` keeps it.
fn writer_config(url: &str, ids: Option<&std::path::Path>) -> JetStreamConfig {
    let mut config = JetStreamConfig::new(url);
    if let Some(dir) = ids {
        config.ids_dir = Some(dir.to_owned());
        config.recent_ids = 3;
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_never_store_an_id_twice() {
    two_writers_race(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_their_index_on_disk_never_store_an_id_twice() {
    let ids = tempfile::tempdir().expect("ids");
    two_writers_race(Some(ids.path())).await;
}

async fn two_writers_race(ids: Option<&std::path::Path>) {
    let server = NatsServer::start();
    let a = JetStreamLog::connect(writer_config(server.url(), ids))
        .await
        .expect("a");
    let b = JetStreamLog::connect(writer_config(server.url(), ids))
        .await
        .expect("b");
    let batch = events("two-writers", 500);
    let (left, right) = tokio::join!(a.append(batch.clone()), b.append(batch.clone()));
    let appended = left
        .expect("a")
        .into_iter()
        .chain(right.expect("b"))
        .filter(|o| matches!(o, AppendOutcome::Appended(_)))
        .count();
    assert_eq!(appended, 500);
    assert_eq!(a.stat().await.expect("stat").events, 500);
    // Subjects are per family and kind, never per buyer.
    let client = async_nats::connect(server.url()).await.expect("client");
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("BATON")
        .await
        .expect("stream");
    let info = stream.info().await.expect("info");
    assert!(info.state.subjects_count <= baton_core::Kind::ALL.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_writer_catches_up_on_what_others_wrote() {
    long_running_writer_catches_up(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_writer_with_its_index_on_disk_catches_up_on_what_others_wrote() {
    let ids = tempfile::tempdir().expect("ids");
    long_running_writer_catches_up(Some(ids.path())).await;
}

async fn long_running_writer_catches_up(ids: Option<&std::path::Path>) {
    let server = NatsServer::start();
    let mut config = writer_config(server.url(), ids);
    config.duplicate_window = Duration::from_secs(1);
    let long_running = JetStreamLog::connect(config.clone())
        .await
        .expect("long-running writer");
    long_running
        .append(events("own", 5))
        .await
        .expect("own events");

    let other = JetStreamLog::connect(config).await.expect("another writer");
    let theirs = events("theirs", 20);
    let stored = other.append(theirs.clone()).await.expect("their events");
    // Past the server's window: only the long-running writer's catch-up can see their ids.
    let window_passed = tokio::time::Instant::now() + Duration::from_millis(1500);
    tokio::time::sleep_until(window_passed).await;

    let outcomes = long_running
        .append(theirs)
        .await
        .expect("append theirs again");
    assert_eq!(
        outcomes,
        stored
            .into_iter()
            .map(|o| match o {
                AppendOutcome::Appended(p) => AppendOutcome::Duplicate(p),
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(long_running.stat().await.expect("stat").events, 25);
}

/// Regression (review of stop 6): a stream that allowed deletes was accepted, and deleting its
/// last message made bounded reads and the id catch-up wait forever for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_allows_deletes_is_refused() {
    assert_existing_stream_refused(
        async_nats::jetstream::stream::Config {
            name: "BATON".into(),
            subjects: vec!["baton.>".into()],
            ..Default::default()
        },
        "append-only",
    )
    .await;
}

/// Starts appending `batch` and returns once the stream holds its first events: the batch is
/// then mid-flight.
async fn append_until_first_stored(
    server: &NatsServer,
    log: &JetStreamLog,
    batch: &[baton_core::Event],
) -> tokio::task::JoinHandle<Result<Vec<AppendOutcome>, LogError>> {
    let appending = tokio::spawn({
        let log = log.clone();
        let batch = batch.to_vec();
        async move { log.append(batch).await }
    });
    let watcher = async_nats::jetstream::new(
        async_nats::connect(server.url())
            .await
            .expect("watching client"),
    );
    loop {
        let mut stream = watcher.get_stream("BATON").await.expect("stream");
        if stream.info().await.expect("info").state.messages > 0 {
            return appending;
        }
        assert!(
            !appending.is_finished(),
            "the batch ended before any event was stored"
        );
        tokio::task::yield_now().await;
    }
}

/// Acks that never come: the server hangs (SIGSTOP) in the middle of a batch, with publishes
/// in flight and more waiting in the client. The batch comes back with the unanswered events
/// not written; once the server goes on (and stores what it was sent meanwhile, acking to a
/// subscription that is gone), appending the batch again stores every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_that_never_come_are_retried_and_nothing_is_stored_twice() {
    let server = NatsServer::start();
    let mut config = JetStreamConfig::new(server.url());
    // Retries last half the window: keep the test short.
    config.duplicate_window = Duration::from_secs(2);
    let log = JetStreamLog::connect(config).await.expect("connect");
    let batch = events("no-acks", 20_000);

    // Hang the server once the first events are stored: the batch is then mid-flight.
    let appending = append_until_first_stored(&server, &log, &batch).await;
    server.pause();
    let first = appending.await.expect("append task").expect("append");
    server.resume();
    let not_written = first
        .iter()
        .filter(|o| matches!(o, AppendOutcome::NotWritten(_)))
        .count();
    assert!(
        not_written > 0,
        "the server hung before the batch was acked"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let again = loop {
        let outcomes = log.append(batch.clone()).await;
        match outcomes {
            Ok(outcomes)
                if outcomes
                    .iter()
                    .all(|o| !matches!(o, AppendOutcome::NotWritten(_))) =>
            {
                break outcomes;
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the server did not answer again: {:?}",
                    other.map(|o| o
                        .into_iter()
                        .find(|o| matches!(o, AppendOutcome::NotWritten(_))))
                );
            }
        }
    };
    // Every event has one place, whether stored by the hung batch or by the second.
    let mut positions: Vec<u64> = again
        .iter()
        .map(|o| match o {
            AppendOutcome::Appended(p) | AppendOutcome::Duplicate(p) => p.get(),
            AppendOutcome::NotWritten(reason) => panic!("{reason}"),
        })
        .collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), batch.len());
    assert_eq!(log.stat().await.expect("stat").events, batch.len() as u64);
    let stored: std::collections::HashSet<_> = log
        .read(Position::ZERO)
        .await
        .expect("read")
        .map(|record| record.expect("record").event.event_id)
        .collect()
        .await;
    assert_eq!(stored.len(), batch.len());
    assert!(batch.iter().all(|event| stored.contains(&event.event_id)));
}

/// Acks lost in a restart: the server goes away in the middle of a batch and comes back on
/// the same store, so the replies to what was in flight never come while later publishes are
/// answered. The stuck messages are given up after the stall limit and published again within
/// the same append (before this, they held the window until half the duplicate window had
/// passed, and came back not written): every event is stored, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_batch_loses_no_event_and_stores_none_twice() {
    let mut server = NatsServer::start();
    let log = JetStreamLog::connect(JetStreamConfig::new(server.url()))
        .await
        .expect("connect");
    let batch = events("restart-mid-batch", 20_000);

    let appending = append_until_first_stored(&server, &log, &batch).await;
    server.restart();
    let outcomes = appending.await.expect("append task").expect("append");

    let mut positions: Vec<u64> = outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Appended(p) | AppendOutcome::Duplicate(p) => p.get(),
            AppendOutcome::NotWritten(reason) => panic!("not written: {reason}"),
        })
        .collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), batch.len());
    assert_eq!(log.stat().await.expect("stat").events, batch.len() as u64);
}

fn all(outcomes: &[AppendOutcome], duplicate: bool) -> bool {
    outcomes.iter().all(|outcome| {
        if duplicate {
            matches!(outcome, AppendOutcome::Duplicate(_))
        } else {
            matches!(outcome, AppendOutcome::Appended(_))
        }
    })
}

/// Issue 32: a writer's id index on disk. A writer that starts again takes its own slot back
/// and finds every id in its runs; another writer at the same time takes another slot; an
/// index from another stream is noticed (the message at its sequence is not the one it saw)
/// and read again from the stream, never trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_with_their_index_on_disk_share_the_directory_and_start_where_they_stopped() {
    let server = NatsServer::start();
    let ids = tempfile::tempdir().expect("ids");
    let mut config = JetStreamConfig::new(server.url());
    config.ids_dir = Some(ids.path().to_owned());
    config.recent_ids = 16;
    let log = JetStreamLog::connect(config.clone())
        .await
        .expect("connect");
    let first = events("disk-first", 200);
    assert!(all(
        &log.append(first.clone()).await.expect("append"),
        false
    ));
    drop(log);
    assert!(ids.path().join("0").join("manifest").is_file());

    let again = JetStreamLog::connect(config.clone())
        .await
        .expect("connect again");
    let beside = JetStreamLog::connect(config.clone())
        .await
        .expect("connect a second writer");
    assert!(all(
        &again.append(first.clone()).await.expect("append"),
        true
    ));
    assert!(all(
        &beside.append(first.clone()).await.expect("append"),
        true
    ));
    let second = events("disk-second", 50);
    assert!(all(
        &beside.append(second.clone()).await.expect("append"),
        false
    ));
    assert!(all(&again.append(second).await.expect("append"), true));
    assert!(
        ids.path().join("1").join("lock").is_file(),
        "the second writer took the next slot"
    );
    drop((again, beside));

    // A writer that finds its slot empty starts from another slot's index (linked, not read
    // from the stream): slot 0 is held, as by an idle writer, and 1 is emptied.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(ids.path().join("0").join("lock"))
        .expect("slot 0's lock");
    held.try_lock().expect("slot 0 is free again");
    std::fs::remove_dir_all(ids.path().join("1")).expect("empty slot 1");
    let runs_of = |slot: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(ids.path().join(slot))
            .expect("slot")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("run-") && name.ends_with(".ids"))
            .collect();
        names.sort();
        names
    };
    let late = JetStreamLog::connect(config.clone())
        .await
        .expect("connect a late writer");
    assert!(all(
        &late.append(first.clone()).await.expect("append"),
        true
    ));
    assert!(!runs_of("0").is_empty());
    // A writer that has written nothing merges nothing, so they are as it found them.
    assert_eq!(runs_of("1"), runs_of("0"), "slot 1 took slot 0's runs");
    for name in runs_of("1") {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::metadata(ids.path().join("1").join(&name))
            .expect("run")
            .nlink();
        assert_eq!(links, 2, "{name} is linked, not copied");
    }
    drop((late, held));

    // The same directory against another stream on the same server.
    let mut other = config.clone();
    other.stream = "OTHER".into();
    other.subject_prefix = "other".into();
    let log = JetStreamLog::connect(other).await.expect("connect");
    let outcomes = log.append(first.clone()).await.expect("append");
    assert!(all(&outcomes, false), "{outcomes:?}");
    assert_eq!(log.stat().await.expect("stat").events, 200);
}

/// Issue 32: writers on different machines share their id index through the server. A writer
/// whose directory is empty (another machine) downloads the index another writer shared and
/// reads only the ids after it from the stream; it finds every id before as a duplicate, and
/// the writers keep storing each id once between them. A writer that shares nothing reads
/// every id; a shared run that does not match its checksum is refused, never trusted, and costs
/// a read of every id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_on_another_machine_starts_from_the_index_shared_on_the_server() {
    let server = NatsServer::start();
    let machines: Vec<tempfile::TempDir> =
        (0..4).map(|_| tempfile::tempdir().expect("ids")).collect();
    let config_for = |dir: &tempfile::TempDir| {
        let mut config = writer_config(server.url(), Some(dir.path()));
        config.share_ids_every = Some(100);
        config
    };
    let first = JetStreamLog::connect(config_for(&machines[0]))
        .await
        .expect("connect");
    let mut appended = events("shared-first", 600);
    for chunk in appended.chunks(100) {
        assert!(all(
            &first.append(chunk.to_vec()).await.expect("append"),
            false
        ));
    }
    // Sharing runs in the background; an append starts it once the runs reach 100 events
    // beyond the index shared last.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let shared = loop {
        let shared = first
            .shared_ids_cover()
            .await
            .expect("shared index")
            .unwrap_or(0);
        if shared >= 300 {
            break shared;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing shared: {shared}"
        );
        let more = events(&format!("shared-more-{}", appended.len()), 1);
        assert!(all(
            &first.append(more.clone()).await.expect("append"),
            false
        ));
        appended.extend(more);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let a share that was still running finish: the index then stays put, the writer idle.
    let mut shared = shared;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = first.shared_ids_cover().await.expect("shared").unwrap_or(0);
        if now == shared {
            break;
        }
        shared = now;
    }
    let total = appended.len() as u64;
    assert!(shared <= total);

    let second = JetStreamLog::connect(config_for(&machines[1]))
        .await
        .expect("connect on another machine");
    assert!(all(
        &second.append(appended.clone()).await.expect("append"),
        true
    ));
    assert_eq!(
        second.ids_read_from_stream(),
        total - shared,
        "read only the ids after the shared index"
    );
    let runs = std::fs::read_dir(machines[1].path().join("0"))
        .expect("slot")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("run-"))
        })
        .count();
    assert!(runs > 0, "the shared runs were downloaded");
    let later = events("shared-later", 50);
    assert!(all(
        &second.append(later.clone()).await.expect("append"),
        false
    ));
    assert!(all(
        &first.append(later.clone()).await.expect("append"),
        true
    ));
    let total = total + later.len() as u64;
    assert_eq!(first.stat().await.expect("stat").events, total);

    // Sharing turned off: every id read from the stream.
    let mut alone = config_for(&machines[2]);
    alone.share_ids_every = None;
    let alone = JetStreamLog::connect(alone).await.expect("connect");
    assert!(all(
        &alone.append(appended.clone()).await.expect("append"),
        true
    ));
    assert_eq!(alone.ids_read_from_stream(), total);
    drop(alone);

    // A shared run damaged on the server (its parts replaced by as many others).
    let client = async_nats::connect(server.url()).await.expect("client");
    let js = async_nats::jetstream::new(client);
    let side = js.get_stream("BATON_IDS").await.expect("the side stream");
    let mut subjects = side
        .info_with_subjects("baton-ids.BATON.run.>")
        .await
        .expect("subjects");
    let (subject, parts) = subjects
        .next()
        .await
        .expect("a shared run")
        .expect("listing");
    side.purge().filter(&subject).await.expect("purge");
    for _ in 0..parts {
        js.publish(subject.clone(), vec![7u8; 64].into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let damaged = JetStreamLog::connect(config_for(&machines[3]))
        .await
        .expect("connect");
    assert!(all(
        &damaged.append(appended.clone()).await.expect("append"),
        true
    ));
    assert_eq!(
        damaged.ids_read_from_stream(),
        total,
        "the damaged index was refused and every id read"
    );
    assert_eq!(damaged.stat().await.expect("stat").events, total);
}
