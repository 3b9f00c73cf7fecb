//! Embedded-only behaviour: the id index on disk that spares a full scan at open and keeps
//! memory bounded must never make idempotency weaker, whatever state it is found in.

use baton_log::{AppendOutcome, EmbeddedConfig, EmbeddedLog, EventLog};
use baton_testkit::events;
use std::path::Path;

const IDS: &str = "ids";

async fn open(dir: &Path) -> EmbeddedLog {
    open_keeping(dir, EmbeddedConfig::new(dir).recent_ids).await
}

/// Opens the log keeping only `recent_ids` ids in memory, so the rest are looked up on disk.
async fn open_keeping(dir: &Path, recent_ids: usize) -> EmbeddedLog {
    EmbeddedLog::open(EmbeddedConfig::new(dir).with_recent_ids(recent_ids))
        .await
        .expect("open")
}

async fn append_all_new(log: &EmbeddedLog, salt: &str, count: usize) -> Vec<AppendOutcome> {
    let outcomes = log.append(events(salt, count)).await.expect("append");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::Appended(_))),
        "{outcomes:?}"
    );
    outcomes
}

async fn assert_all_duplicates(dir: &Path, salt: &str, count: usize, expected_events: u64) {
    let log = open(dir).await;
    assert_duplicates_in(&log, salt, count, expected_events).await;
}

async fn assert_duplicates_in(log: &EmbeddedLog, salt: &str, count: usize, expected_events: u64) {
    let outcomes = log.append(events(salt, count)).await.expect("append again");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::Duplicate(_))),
        "{salt}: {outcomes:?}"
    );
    assert_eq!(log.stat().await.expect("stat").events, expected_events);
}

/// The files of the id index whose names start with `prefix`.
fn index_files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(IDS))
        .expect("ids")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn closing_writes_the_recent_ids_as_a_run_that_the_next_open_uses() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "a", 300).await;
    assert_eq!(index_files(dir.path(), "manifest").len(), 1);
    assert_eq!(
        index_files(dir.path(), "run-").len(),
        1,
        "closing wrote a run"
    );
    assert_all_duplicates(dir.path(), "a", 300, 300).await;
}

/// Ids spread over many runs on disk, merged as they come: every repeat is found, in the
/// same batch, a later one, and after a reopen; and every new id is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_in_many_runs_are_each_stored_once() {
    let dir = tempfile::tempdir().expect("dir");
    let log = open_keeping(dir.path(), 37).await;
    let all = events("many", 3_000);
    let mut stored = 0u64;
    for (round, chunk) in all.chunks(250).enumerate() {
        // Each batch: the new events, one of them twice, and a few from every earlier batch.
        let mut batch = chunk.to_vec();
        batch.push(chunk[7].clone());
        for earlier in 0..round {
            batch.push(all[earlier * 250 + round].clone());
        }
        let outcomes = log.append(batch).await.expect("append");
        let appended = outcomes
            .iter()
            .filter(|o| matches!(o, AppendOutcome::Appended(_)))
            .count();
        assert_eq!(appended, chunk.len(), "round {round}");
        stored += appended as u64;
        assert_eq!(
            outcomes[chunk.len()],
            outcomes[7].clone().into_duplicate(),
            "round {round}"
        );
    }
    assert!(
        index_files(dir.path(), "run-").len() > 1,
        "the ids are in runs"
    );
    assert_duplicates_in(&log, "many", 3_000, stored).await;
    drop(log);
    let log = open_keeping(dir.path(), 37).await;
    assert_duplicates_in(&log, "many", 3_000, 3_000).await;
    append_all_new(&log, "more", 100).await;
}

trait IntoDuplicate {
    fn into_duplicate(self) -> AppendOutcome;
}

impl IntoDuplicate for AppendOutcome {
    fn into_duplicate(self) -> AppendOutcome {
        match self {
            AppendOutcome::Appended(position) => AppendOutcome::Duplicate(position),
            other => panic!("not appended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_damaged_index_falls_back_to_reading_every_id() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "torn", 200).await;
    let run = index_files(dir.path(), "run-").pop().expect("a run");
    let mut bytes = std::fs::read(&run).expect("run");
    let end = bytes.len() - 60;
    bytes[end] ^= 0xff;
    std::fs::write(&run, &bytes).expect("damage its filter");
    assert_all_duplicates(dir.path(), "torn", 200, 200).await;
    let manifest = dir.path().join(IDS).join("manifest");
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).expect("truncate it");
    assert_all_duplicates(dir.path(), "torn", 200, 200).await;
    std::fs::remove_dir_all(dir.path().join(IDS)).expect("remove the index");
    assert_all_duplicates(dir.path(), "torn", 200, 200).await;
}

#[tokio::test]
async fn an_old_index_is_completed_from_the_log() {
    let dir = tempfile::tempdir().expect("dir");
    let saved = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "early", 100).await;
    copy_dir(&dir.path().join(IDS), saved.path());
    append_all_new(&open(dir.path()).await, "late", 100).await;
    // As after a crash: the index on disk predates the last appends.
    std::fs::remove_dir_all(dir.path().join(IDS)).expect("remove");
    copy_dir(saved.path(), &dir.path().join(IDS));
    assert_all_duplicates(dir.path(), "late", 100, 200).await;
    assert_all_duplicates(dir.path(), "early", 100, 200).await;
}

/// A crash between the log write and the index write: the directory as the disk holds it
/// while the writer still has ids only in memory (the copy is what a killed process leaves),
/// with a run written after its manifest and a half-written run beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_log_write_and_the_index_write_loses_no_id() {
    let dir = tempfile::tempdir().expect("dir");
    let crashed = tempfile::tempdir().expect("dir");
    let log = open_keeping(dir.path(), 1_000).await;
    append_all_new(&log, "in-runs", 2_500).await;
    append_all_new(&log, "in-memory", 400).await;
    copy_dir(dir.path(), crashed.path());
    drop(log);
    let _ = std::fs::remove_file(crashed.path().join("log.lock"));
    let ids = crashed.path().join(IDS);
    std::fs::write(ids.join("run-000000999999.ids"), b"a run no manifest names").expect("stray");
    std::fs::write(ids.join("run-000001000000.tmp"), b"half a run").expect("stray");
    let log = open_keeping(crashed.path(), 1_000).await;
    assert_duplicates_in(&log, "in-memory", 400, 2_900).await;
    assert_duplicates_in(&log, "in-runs", 2_500, 2_900).await;
    assert!(
        index_files(crashed.path(), "run-")
            .iter()
            .all(|path| !path.to_string_lossy().contains("99999")),
        "leftovers are removed"
    );
    append_all_new(&log, "after", 10).await;
}

#[tokio::test]
async fn an_index_from_another_log_is_ignored() {
    let ours = tempfile::tempdir().expect("dir");
    let theirs = tempfile::tempdir().expect("dir");
    append_all_new(&open(ours.path()).await, "ours", 50).await;
    // Their log is longer, so only the check of the anchor event can tell.
    append_all_new(&open(theirs.path()).await, "theirs", 10).await;
    std::fs::remove_dir_all(ours.path().join(IDS)).expect("remove");
    copy_dir(&theirs.path().join(IDS), &ours.path().join(IDS));
    assert_all_duplicates(ours.path(), "ours", 50, 50).await;
    append_all_new(&open(ours.path()).await, "theirs", 10).await;
}

/// Earlier builds saved the whole index in `id-index.snapshot`; it is removed once the index
/// on disk is in use.
#[tokio::test]
async fn the_snapshot_of_earlier_builds_is_removed() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "before", 20).await;
    std::fs::write(dir.path().join("id-index.snapshot"), b"BTIX...").expect("old snapshot");
    std::fs::remove_dir_all(dir.path().join(IDS)).expect("as an earlier build left it");
    assert_all_duplicates(dir.path(), "before", 20, 20).await;
    assert!(!dir.path().join("id-index.snapshot").exists());
}

#[tokio::test]
async fn a_second_opener_is_told_the_log_is_in_use() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = open(dir.path()).await;
    let error = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect_err("one process at a time");
    assert!(
        error.to_string().contains("in use by another process"),
        "{error}"
    );
}

/// A reader beside the process that appends: it reads the log as it stood when it opened,
/// takes no lock, and may not append or follow.
#[tokio::test]
async fn a_log_in_use_can_still_be_opened_to_read() {
    let dir = tempfile::tempdir().expect("dir");
    let writer = open(dir.path()).await;
    append_all_new(&writer, "before", 700).await;
    let reader = EmbeddedLog::open_to_read(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open to read while the log is in use");
    append_all_new(&writer, "after", 30).await;
    assert_eq!(reader.stat().await.expect("stat").head.get(), 700);
    let records = read_all(&reader).await;
    assert_eq!(records.len(), 700);
    let expected = events("before", 700);
    for (record, event) in records.iter().zip(&expected) {
        let record = record.as_ref().expect("record");
        assert_eq!(record.event.event_id, event.event_id);
    }
    let refused = reader
        .append(events("mine", 1))
        .await
        .expect_err("a reader cannot append");
    assert!(
        refused.to_string().contains("opened only to read"),
        "{refused}"
    );
    assert!(reader.follow(baton_log::Position::ZERO).await.is_err());
    // The writer goes on, and a later reader sees its appends.
    append_all_new(&writer, "later", 5).await;
    let again = EmbeddedLog::open_to_read(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open to read");
    assert_eq!(again.stat().await.expect("stat").head.get(), 735);
    let missing = EmbeddedLog::open_to_read(EmbeddedConfig::new(dir.path().join("nothing")))
        .await
        .expect_err("no log there");
    assert!(
        missing.to_string().contains("no embedded log here"),
        "{missing}"
    );
}

/// The segment files of a log, in order.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .expect("segments")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

async fn read_all(log: &EmbeddedLog) -> Vec<Result<baton_log::Record, baton_log::LogError>> {
    use futures::StreamExt;
    log.read(baton_log::Position::ZERO)
        .await
        .expect("read")
        .collect()
        .await
}

/// Cuts `bytes` into the last append of a closed log's last segment, as a crash in the middle
/// of its write would, and checks that the next open keeps exactly the appends before it.
async fn tear_last_append(damage: impl FnOnce(&mut Vec<u8>, usize)) {
    let dir = tempfile::tempdir().expect("dir");
    let kept = events("kept", 600);
    {
        let log = open(dir.path()).await;
        append_all_new(&log, "kept", 600).await;
        let before = std::fs::metadata(&segments(dir.path())[0])
            .expect("segment")
            .len();
        append_all_new(&log, "torn", 300).await;
        drop(log);
        let path = &segments(dir.path())[0];
        let mut bytes = std::fs::read(path).expect("segment");
        damage(&mut bytes, before as usize);
        std::fs::write(path, &bytes).expect("damage it");
    }
    let log = open(dir.path()).await;
    assert_eq!(log.stat().await.expect("stat").events, 600);
    let read: Vec<_> = read_all(&log)
        .await
        .into_iter()
        .map(|record| record.expect("every kept event reads").event)
        .collect();
    assert_eq!(read, kept);
    // The torn append was never acknowledged: appending it again stores it, after the rest.
    let outcomes = append_all_new(&log, "torn", 300).await;
    assert_eq!(
        outcomes.first(),
        Some(&AppendOutcome::Appended(baton_log::Position::new(601)))
    );
    drop(log);
    assert_eq!(
        open(dir.path()).await.stat().await.expect("stat").events,
        900
    );
}

#[tokio::test]
async fn an_append_cut_short_by_a_crash_is_dropped_at_open() {
    // Its last block is missing half its bytes.
    tear_last_append(|bytes, _| bytes.truncate(bytes.len() - 500)).await;
    // Only part of its first block's header made it.
    tear_last_append(|bytes, start| bytes.truncate(start + 10)).await;
}

/// Issue 24.8: a flipped byte inside the last append made the next open cut the whole append
/// (acknowledged events) as if it were torn. A crash cuts a write short; it does not change
/// bytes in place. Now the open refuses, naming the damage, and only a repair cuts it.
#[tokio::test]
async fn a_whole_last_append_that_fails_its_checksums_is_refused_until_repaired() {
    let dir = tempfile::tempdir().expect("dir");
    let kept = events("kept", 600);
    let before = {
        let log = open(dir.path()).await;
        append_all_new(&log, "kept", 600).await;
        let before = std::fs::metadata(&segments(dir.path())[0])
            .expect("segment")
            .len();
        append_all_new(&log, "damaged", 300).await;
        before
    };
    let path = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&path).expect("segment");
    bytes[before as usize + 200] ^= 0x55;
    std::fs::write(&path, &bytes).expect("damage it");

    let error = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect_err("a damaged acknowledged append is refused");
    let message = error.to_string();
    assert_eq!(error.kind(), baton_log::ErrorKind::Corrupt, "{message}");
    assert!(message.contains("positions 601..=900"), "{message}");
    assert!(message.contains("baton log repair"), "{message}");
    assert_eq!(
        std::fs::read(&path).expect("segment"),
        bytes,
        "nothing was cut by the refused open"
    );
    // A reader beside it sees the appends before it.
    let reader = EmbeddedLog::open_to_read(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open to read");
    assert_eq!(reader.stat().await.expect("stat").events, 600);
    drop(reader);

    let cut = EmbeddedLog::repair(EmbeddedConfig::new(dir.path()))
        .await
        .expect("repair")
        .expect("the repair cut the damaged append");
    assert_eq!((cut.from_byte, cut.from_position), (before, 601));
    assert_eq!(cut.bytes, bytes.len() as u64 - before);
    assert!(cut.reason.contains("damaged"), "{}", cut.reason);
    assert_eq!(
        std::fs::read(&cut.kept_in).expect("kept"),
        &bytes[before as usize..]
    );
    assert_eq!(
        EmbeddedLog::repair(EmbeddedConfig::new(dir.path()))
            .await
            .expect("repair again"),
        None,
        "nothing more to cut"
    );
    let log = open(dir.path()).await;
    let read: Vec<_> = read_all(&log)
        .await
        .into_iter()
        .map(|record| record.expect("every kept event reads").event)
        .collect();
    assert_eq!(read, kept);
    let outcomes = append_all_new(&log, "damaged", 300).await;
    assert_eq!(
        outcomes.first(),
        Some(&AppendOutcome::Appended(baton_log::Position::new(601)))
    );
}

/// A closed log of two appends of 300 events in one segment, with one byte of the segment
/// flipped: its directory, the segment and the damaged bytes.
async fn two_appends_damaged_at(byte: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().expect("dir");
    {
        let log = open(dir.path()).await;
        append_all_new(&log, "first", 300).await;
        append_all_new(&log, "second", 300).await;
    }
    let path = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&path).expect("segment");
    bytes[byte] ^= 0x55;
    std::fs::write(&path, &bytes).expect("damage it");
    (dir, path, bytes)
}

#[tokio::test]
async fn a_damaged_block_before_the_last_append_is_reported_with_its_positions() {
    let (dir, _, _) = two_appends_damaged_at(100).await;
    let log = open(dir.path()).await;
    // Nothing acknowledged is cut off because of it.
    assert_eq!(log.stat().await.expect("stat").events, 600);
    let read = read_all(&log).await;
    let error = read
        .iter()
        .find_map(|record| record.as_ref().err())
        .expect("the damage is reported");
    assert_eq!(error.kind(), baton_log::ErrorKind::Corrupt);
    assert!(
        error.to_string().contains("positions 1..=256"),
        "names the positions: {error}"
    );
}

/// Writes `events` as an earlier build stored them, in `dir/log`: a sled tree with `mlayout` = 2
/// and blocks of up to 256 frames under `b` + the first position.
fn write_old_log(dir: &Path, events: &[baton_core::Event]) {
    let db = sled::open(dir.join("log")).expect("sled");
    let tree = db.open_tree("events").expect("tree");
    tree.insert(b"mlayout", &[2u8]).expect("layout");
    for (index, chunk) in events.chunks(256).enumerate() {
        let mut key = vec![b'b'];
        key.extend_from_slice(&(index as u64 * 256 + 1).to_be_bytes());
        let mut block = (chunk.len() as u32).to_le_bytes().to_vec();
        for event in chunk {
            let frame = baton_core::encode(event).expect("encode");
            block.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            block.extend_from_slice(&frame);
        }
        tree.insert(key, block).expect("block");
    }
    db.flush().expect("flush");
}

#[tokio::test]
async fn a_log_written_in_sled_by_an_earlier_build_moves_into_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let written = events("old", 700);
    write_old_log(dir.path(), &written);
    let log = open(dir.path()).await;
    assert!(!dir.path().join("log").exists(), "the old database is gone");
    let read: Vec<_> = read_all(&log)
        .await
        .into_iter()
        .map(|record| record.expect("reads").event)
        .collect();
    assert_eq!(read, written);
    drop(log);
    assert_all_duplicates(dir.path(), "old", 700, 700).await;
}

#[tokio::test]
async fn a_damaged_header_with_a_finished_append_after_it_fails_the_open_and_cuts_nothing() {
    // The first block's position field.
    let (dir, path, bytes) = two_appends_damaged_at(5).await;
    let error = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect_err("damage inside acknowledged appends is not a torn tail");
    assert!(
        error.to_string().contains("at byte 0") && error.to_string().contains("finished append"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).expect("segment").len(),
        bytes.len(),
        "nothing was cut"
    );
}

#[tokio::test]
async fn what_a_torn_append_cut_off_is_kept_beside_the_segment() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let log = open(dir.path()).await;
        append_all_new(&log, "kept", 100).await;
        append_all_new(&log, "torn", 100).await;
    }
    let path = segments(dir.path())[0].clone();
    let whole = std::fs::read(&path).expect("segment");
    std::fs::write(&path, &whole[..whole.len() - 7]).expect("tear it");
    let log = open(dir.path()).await;
    assert_eq!(log.stat().await.expect("stat").events, 100);
    let kept = std::fs::metadata(&path).expect("segment").len() as usize;
    let cut = std::fs::read_dir(dir.path().join("segments"))
        .expect("segments")
        .map(|entry| entry.expect("entry").path())
        .find(|p| p.to_string_lossy().contains(".seg.cut-"))
        .expect("the cut bytes are kept");
    assert_eq!(
        std::fs::read(cut).expect("cut"),
        &whole[kept..whole.len() - 7]
    );
}

#[tokio::test]
async fn an_old_log_written_after_the_migration_is_not_deleted() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "new", 10).await;
    // As if an earlier build had been run on this directory again and written its own log.
    write_old_log(dir.path(), &events("rollback", 3));
    let error = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect_err("two logs in one directory");
    assert!(
        error.to_string().contains("move one of them aside"),
        "{error}"
    );
    assert!(
        dir.path().join("log").is_dir(),
        "the old log is still there"
    );
}
