//! One conformance suite for the `EventLog` port, run against both backends: the embedded
//! log (segment files) and JetStream on a real `nats-server`.

use baton_core::Event;
use baton_log::{
    AppendOutcome, EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog, LogError,
    Position, Record,
};
use baton_testkit::{NatsServer, events};
use futures::StreamExt;
use std::time::Duration;

/// What the suite needs from a backend besides the port itself.
trait Fixture {
    type Log: EventLog + Clone + 'static;
    fn log(&self) -> Self::Log;
    /// Closes and reopens the log (embedded) or restarts the server (JetStream), then
    /// connects a fresh log instance with nothing in memory.
    async fn reopen(&mut self);
    /// Puts bytes that are not a Baton event at the end of the log; returns their position.
    async fn inject_foreign(&mut self, bytes: &[u8]) -> Position;
}

struct Embedded {
    dir: tempfile::TempDir,
    log: Option<EmbeddedLog>,
    recent_ids: usize,
}

impl Embedded {
    async fn new() -> Self {
        Self::with_recent_ids(EmbeddedConfig::new("").recent_ids).await
    }

    /// A log whose id index keeps only `recent_ids` ids in memory, so the suite's ids are
    /// found in runs on disk, across merges.
    async fn with_recent_ids(recent_ids: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path()).with_recent_ids(recent_ids))
            .await
            .expect("open");
        Embedded {
            dir,
            log: Some(log),
            recent_ids,
        }
    }
}

impl Fixture for Embedded {
    type Log = EmbeddedLog;
    fn log(&self) -> EmbeddedLog {
        self.log.clone().expect("open")
    }
    async fn reopen(&mut self) {
        self.log = None;
        self.log = Some(
            EmbeddedLog::open(
                EmbeddedConfig::new(self.dir.path()).with_recent_ids(self.recent_ids),
            )
            .await
            .expect("reopen"),
        );
    }
    async fn inject_foreign(&mut self, bytes: &[u8]) -> Position {
        let head = self.log().stat().await.expect("stat").head;
        self.log = None;
        // Write straight into the last segment, as a foreign tool or a disk fault would: one
        // well-formed block of one frame (see crates/log/src/segment.rs for the format).
        let position = head.next();
        let mut block = b"BTNB".to_vec();
        block.extend_from_slice(&position.get().to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes());
        block.extend_from_slice(&(bytes.len() as u32 + 4).to_le_bytes());
        block.extend_from_slice(&1u32.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&block[4..24]);
        let mut payload = (bytes.len() as u32).to_le_bytes().to_vec();
        payload.extend_from_slice(bytes);
        crc.update(&payload);
        block.extend_from_slice(&crc.finalize().to_le_bytes());
        block.extend_from_slice(&payload);
        let last = last_segment(&self.dir.path().join("segments"));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(last)
            .expect("open the last segment");
        std::io::Write::write_all(&mut file, &block).expect("write the block");
        drop(file);
        self.reopen().await;
        position
    }
}

struct JetStream {
    server: NatsServer,
    config: JetStreamConfig,
    log: Option<JetStreamLog>,
    /// The writer's id index, when it is kept on disk.
    _ids: Option<tempfile::TempDir>,
}

impl JetStream {
    async fn new() -> Self {
        Self::with_window(Duration::from_secs(120)).await
    }
    async fn with_window(window: Duration) -> Self {
        Self::start(window, None).await
    }
    /// A writer whose id index is on disk and keeps only three ids in memory, so the suite's
    /// ids are found in runs, across merges and restarts.
    async fn with_ids_on_disk(window: Duration) -> Self {
        Self::start(window, Some(tempfile::tempdir().expect("ids dir"))).await
    }
    async fn start(window: Duration, ids: Option<tempfile::TempDir>) -> Self {
        let server = NatsServer::start();
        let mut config = JetStreamConfig::new(server.url());
        config.duplicate_window = window;
        if let Some(dir) = &ids {
            config.ids_dir = Some(dir.path().to_owned());
            config.recent_ids = 3;
        }
        let log = JetStreamLog::connect(config.clone())
            .await
            .expect("connect");
        JetStream {
            server,
            config,
            log: Some(log),
            _ids: ids,
        }
    }
}

impl Fixture for JetStream {
    type Log = JetStreamLog;
    fn log(&self) -> JetStreamLog {
        self.log.clone().expect("connected")
    }
    async fn reopen(&mut self) {
        // Gone before the next connects, so the next writer finds its index where it was.
        self.log = None;
        self.server.restart();
        self.log = Some(connect_with_deadline(&self.config).await);
    }
    async fn inject_foreign(&mut self, bytes: &[u8]) -> Position {
        let client = async_nats::connect(self.server.url())
            .await
            .expect("raw client");
        let js = async_nats::jetstream::new(client);
        let ack = js
            .publish("baton.touch.foreign", bytes.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        Position::new(ack.sequence)
    }
}

/// The embedded log's last segment file.
fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("segments")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .max()
        .expect("a segment")
}

/// JetStream needs a moment after a restart to recover its streams.
async fn connect_with_deadline(config: &JetStreamConfig) -> JetStreamLog {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match JetStreamLog::connect(config.clone()).await {
            Ok(log) => return log,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for the restarted server: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("server did not come back: {error}"),
        }
    }
}

async fn read_all(log: &impl EventLog, from: Position) -> Vec<Record> {
    let stream = log.read(from).await.expect("read");
    stream.map(|record| record.expect("record")).collect().await
}

fn positions(outcomes: &[AppendOutcome]) -> Vec<Position> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            AppendOutcome::Appended(position) => *position,
            other => panic!("expected appended, got {other:?}"),
        })
        .collect()
}

async fn order_is_kept(fixture: impl Fixture) {
    let log = fixture.log();
    let all = events("order", 30);
    let mut appended = Vec::new();
    for chunk in all.chunks(10) {
        appended.extend(positions(
            &log.append(chunk.to_vec()).await.expect("append"),
        ));
    }
    assert!(
        appended.windows(2).all(|w| w[0] < w[1]),
        "positions increase: {appended:?}"
    );
    let records = read_all(&log, Position::ZERO).await;
    let read: Vec<&Event> = records.iter().map(|r| &r.event).collect();
    assert_eq!(read, all.iter().collect::<Vec<_>>());
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        appended
    );
    let stat = log.stat().await.expect("stat");
    assert_eq!(stat.events, 30);
    assert_eq!(stat.head, *appended.last().expect("some"));
}

/// Appends in flight together are stored in the order they started, whichever is encoded first:
/// a large batch started first lands before a one-event batch started right after it, and that
/// one's copy of an event of the large batch is its duplicate.
async fn concurrent_appends_store_in_call_order(fixture: impl Fixture) {
    let log = fixture.log();
    let large = events("concurrent-large", 20_000);
    let mut small = events("concurrent-small", 1);
    small.push(large[7].clone());
    let (first, second) = futures::join!(log.append(large.clone()), log.append(small.clone()));
    let first = positions(&first.expect("append the large batch"));
    let second = second.expect("append the small batch");
    let AppendOutcome::Appended(new) = second[0] else {
        panic!("the small batch's own event is new: {:?}", second[0])
    };
    assert!(
        first.iter().all(|position| *position < new),
        "the large batch, started first, is stored first (its last at {:?}, the small one at {new:?})",
        first.last()
    );
    assert_eq!(second[1], AppendOutcome::Duplicate(first[7]));
    let records = read_all(&log, Position::ZERO).await;
    assert_eq!(records.len(), 20_001);
    assert_eq!(records[20_000].event, small[0]);
}

/// A writer that keeps two appends in flight (as `baton ingest` does), where every other batch
/// repeats events of the batch just before it, still in flight: each repeat is the duplicate
/// of its first copy, nothing is stored twice, and the batches land in the order they started.
async fn batches_in_flight_repeating_each_other_store_each_event_once(fixture: impl Fixture) {
    let log = fixture.log();
    let mut batches: Vec<Vec<Event>> = (0..12)
        .map(|n| events(&format!("pipelined-{n}"), 2_000))
        .collect();
    for n in (1..batches.len()).step_by(2) {
        let repeated: Vec<Event> = batches[n - 1].iter().step_by(100).cloned().collect();
        batches[n].extend(repeated);
    }
    let outcomes: Vec<Vec<AppendOutcome>> = futures::stream::iter(batches.clone())
        .map(|batch| log.append(batch))
        .buffered(2)
        .map(|outcomes| outcomes.expect("append"))
        .collect()
        .await;
    let mut first_copy = std::collections::HashMap::new();
    let mut last_stored = Position::ZERO;
    for (batch, outcomes) in batches.iter().zip(&outcomes) {
        for (event, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                AppendOutcome::Appended(position) => {
                    // On a healthy server nothing is retried, so nothing lands out of order.
                    assert!(*position > last_stored, "stored out of order: {position}");
                    last_stored = *position;
                    assert!(first_copy.insert(event.event_id, *position).is_none());
                }
                AppendOutcome::Duplicate(position) => {
                    assert_eq!(first_copy.get(&event.event_id), Some(position));
                }
                AppendOutcome::NotWritten(reason) => panic!("not written: {reason}"),
            }
        }
    }
    assert_eq!(first_copy.len(), 24_000);
    let stat = log.stat().await.expect("stat");
    assert_eq!((stat.events, stat.head), (24_000, last_stored));
    let records = read_all(&log, Position::ZERO).await;
    assert_eq!(records.len(), 24_000);
    assert!(
        records
            .iter()
            .all(|record| first_copy.get(&record.event.event_id) == Some(&record.position))
    );
}

async fn empty_log_reads_nothing(fixture: impl Fixture) {
    let log = fixture.log();
    let stat = log.stat().await.expect("stat");
    assert_eq!((stat.head, stat.events), (Position::ZERO, 0));
    assert!(read_all(&log, Position::ZERO).await.is_empty());
    assert!(
        log.append(Vec::new())
            .await
            .expect("empty append")
            .is_empty()
    );
}

async fn duplicates_in_one_batch_are_stored_once(fixture: impl Fixture) {
    let log = fixture.log();
    let mut batch = events("same-batch", 3);
    batch.push(batch[1].clone());
    let outcomes = log.append(batch).await.expect("append");
    let AppendOutcome::Appended(first) = outcomes[1] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(outcomes[3], AppendOutcome::Duplicate(first));
    assert_eq!(log.stat().await.expect("stat").events, 3);
}

async fn duplicates_in_a_later_batch_are_stored_once(fixture: impl Fixture) {
    let log = fixture.log();
    let batch = events("later-batch", 5);
    let first = positions(&log.append(batch.clone()).await.expect("append"));
    let mut again = events("later-batch-new", 2);
    again.extend(batch.iter().cloned());
    let outcomes = log.append(again).await.expect("append again");
    assert!(matches!(outcomes[0], AppendOutcome::Appended(_)));
    assert!(matches!(outcomes[1], AppendOutcome::Appended(_)));
    for (outcome, original) in outcomes[2..].iter().zip(&first) {
        assert_eq!(*outcome, AppendOutcome::Duplicate(*original));
    }
    assert_eq!(log.stat().await.expect("stat").events, 7);
    assert_eq!(read_all(&log, Position::ZERO).await.len(), 7);
}

/// The later append comes from a fresh log instance (nothing in memory) after a reopen, and on
/// JetStream after the server's duplicate window has passed, so only Baton's own index can
/// catch it.
async fn duplicates_long_after_are_stored_once(mut fixture: impl Fixture, wait_past: Duration) {
    let batch = events("week-later", 4);
    let first = positions(&fixture.log().append(batch.clone()).await.expect("append"));
    let passed = tokio::time::Instant::now() + wait_past;
    fixture.reopen().await;
    tokio::time::sleep_until(passed).await;
    let outcomes = fixture.log().append(batch).await.expect("append again");
    let expected: Vec<AppendOutcome> = first.into_iter().map(AppendOutcome::Duplicate).collect();
    assert_eq!(outcomes, expected);
    assert_eq!(fixture.log().stat().await.expect("stat").events, 4);
}

async fn reads_from_the_middle(fixture: impl Fixture) {
    let log = fixture.log();
    let all = events("middle", 20);
    let appended = positions(&log.append(all.clone()).await.expect("append"));
    let records = read_all(&log, appended[12]).await;
    assert_eq!(records.len(), 8);
    assert_eq!(records[0].position, appended[12]);
    assert_eq!(records[0].event, all[12]);
    assert!(read_all(&log, appended[19].next()).await.is_empty());
}

async fn follow_sees_new_appends(fixture: impl Fixture) {
    let log = fixture.log();
    log.append(events("before-follow", 3))
        .await
        .expect("append");
    let mut follow = log.follow(Position::new(2)).await.expect("follow");
    let later = events("after-follow", 2);
    let writer = log.clone();
    let appended = {
        let later = later.clone();
        tokio::spawn(async move { writer.append(later).await.expect("append") })
    };
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(20), follow.next())
            .await
            .expect("follow delivers within 20 s")
            .expect("follow does not end")
            .expect("record");
        seen.push(next);
    }
    let appended = positions(&appended.await.expect("append task"));
    assert_eq!(seen[0].position, Position::new(2));
    assert_eq!(seen[2].event, later[0]);
    assert_eq!(seen[3].event, later[1]);
    assert_eq!(seen[3].position, appended[1]);
}

async fn a_batch_of_100k(fixture: impl Fixture) {
    let log = fixture.log();
    let all = events("big", 100_000);
    let outcomes = log.append(all.clone()).await.expect("append 100k");
    let appended = positions(&outcomes);
    assert_eq!(appended.len(), 100_000);
    assert_eq!(log.stat().await.expect("stat").events, 100_000);
    let mut stream = log.read(Position::ZERO).await.expect("read");
    let mut count = 0;
    while let Some(record) = stream.next().await {
        let record = record.expect("record");
        assert_eq!(record.event.event_id, all[count].event_id);
        count += 1;
    }
    assert_eq!(count, 100_000);
}

async fn reopen_loses_nothing_acknowledged(mut fixture: impl Fixture) {
    let all = events("reopen", 50);
    let appended = positions(&fixture.log().append(all.clone()).await.expect("append"));
    fixture.reopen().await;
    let log = fixture.log();
    let records = read_all(&log, Position::ZERO).await;
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        appended
    );
    assert_eq!(
        records.into_iter().map(|r| r.event).collect::<Vec<_>>(),
        all
    );
    // And the log goes on after the reopen.
    let more = positions(
        &log.append(events("reopen-more", 5))
            .await
            .expect("append after"),
    );
    assert!(more[0] > appended[49]);
}

async fn foreign_message_is_an_error_naming_its_position(mut fixture: impl Fixture) {
    fixture
        .log()
        .append(events("foreign", 3))
        .await
        .expect("append");
    let position = fixture.inject_foreign(b"{\"not\":\"baton\"}").await;
    let log = fixture.log();
    let mut stream = log.read(Position::ZERO).await.expect("read");
    for _ in 0..3 {
        stream.next().await.expect("record").expect("valid record");
    }
    let error = stream
        .next()
        .await
        .expect("an error, not the end")
        .expect_err("foreign");
    assert!(
        matches!(error, LogError::Corrupt { position: p, .. } if p == position),
        "{error}"
    );
    assert!(
        error.to_string().contains(&format!("position {position}")),
        "{error}"
    );
    assert!(error.to_string().contains("not a Baton event"), "{error}");
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the error"
    );
}

macro_rules! conformance {
    ($module:ident, $fixture:expr, $long_wait:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn order_is_kept() {
                super::order_is_kept($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_store_in_call_order() {
                super::concurrent_appends_store_in_call_order($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batches_in_flight_repeating_each_other_store_each_event_once() {
                super::batches_in_flight_repeating_each_other_store_each_event_once($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn empty_log_reads_nothing() {
                super::empty_log_reads_nothing($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicates_in_one_batch_are_stored_once() {
                super::duplicates_in_one_batch_are_stored_once($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicates_in_a_later_batch_are_stored_once() {
                super::duplicates_in_a_later_batch_are_stored_once($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn duplicates_long_after_are_stored_once() {
                let (fixture, wait) = $long_wait;
                super::duplicates_long_after_are_stored_once(fixture, wait).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_from_the_middle() {
                super::reads_from_the_middle($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn follow_sees_new_appends() {
                super::follow_sees_new_appends($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_batch_of_100k() {
                super::a_batch_of_100k($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reopen_loses_nothing_acknowledged() {
                super::reopen_loses_nothing_acknowledged($fixture).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn foreign_message_is_an_error_naming_its_position() {
                super::foreign_message_is_an_error_naming_its_position($fixture).await;
            }
        }
    };
}

conformance!(
    embedded,
    Embedded::new().await,
    (Embedded::new().await, Duration::ZERO)
);
conformance!(
    embedded_ids_on_disk,
    Embedded::with_recent_ids(3).await,
    (Embedded::with_recent_ids(3).await, Duration::ZERO)
);
conformance!(
    jetstream_ids_on_disk,
    JetStream::with_ids_on_disk(Duration::from_secs(120)).await,
    (
        JetStream::with_ids_on_disk(Duration::from_secs(1)).await,
        Duration::from_millis(1500)
    )
);
conformance!(
    jetstream,
    JetStream::new().await,
    // A one-second duplicate window, waited out, so the server's own de-duplication is gone.
    (
        JetStream::with_window(Duration::from_secs(1)).await,
        Duration::from_millis(1500)
    )
);
