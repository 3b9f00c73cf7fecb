//! Embedded-only behaviour: the id index snapshot that spares a full scan at open must never
//! make idempotency weaker, whatever state it is found in.

use baton_log::{AppendOutcome, EmbeddedConfig, EmbeddedLog, EventLog};
use baton_testkit::events;
use std::path::Path;

const SNAPSHOT: &str = "id-index.snapshot";

async fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(EmbeddedConfig::new(dir))
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
    let outcomes = log.append(events(salt, count)).await.expect("append again");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::Duplicate(_))),
        "{salt}: {outcomes:?}"
    );
    assert_eq!(log.stat().await.expect("stat").events, expected_events);
}

#[tokio::test]
async fn closing_saves_a_snapshot_that_the_next_open_uses() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "a", 300).await;
    assert!(
        dir.path().join(SNAPSHOT).is_file(),
        "closing wrote the snapshot"
    );
    assert_all_duplicates(dir.path(), "a", 300, 300).await;
}

#[tokio::test]
async fn a_torn_snapshot_falls_back_to_a_full_scan() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "torn", 200).await;
    let path = dir.path().join(SNAPSHOT);
    let mut bytes = std::fs::read(&path).expect("snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt it");
    assert_all_duplicates(dir.path(), "torn", 200, 200).await;
    std::fs::write(&path, &bytes[..bytes.len() / 3]).expect("truncate it");
    assert_all_duplicates(dir.path(), "torn", 200, 200).await;
}

#[tokio::test]
async fn an_old_snapshot_is_completed_from_the_log() {
    let dir = tempfile::tempdir().expect("dir");
    append_all_new(&open(dir.path()).await, "early", 100).await;
    let old = std::fs::read(dir.path().join(SNAPSHOT)).expect("snapshot");
    append_all_new(&open(dir.path()).await, "late", 100).await;
    // As after a crash: the snapshot on disk predates the last appends.
    std::fs::write(dir.path().join(SNAPSHOT), old).expect("restore the old snapshot");
    assert_all_duplicates(dir.path(), "late", 100, 200).await;
    assert_all_duplicates(dir.path(), "early", 100, 200).await;
}

#[tokio::test]
async fn a_snapshot_from_another_log_is_ignored() {
    let ours = tempfile::tempdir().expect("dir");
    let theirs = tempfile::tempdir().expect("dir");
    append_all_new(&open(ours.path()).await, "ours", 50).await;
    // Their log is longer, so only the check of the anchor event can tell.
    append_all_new(&open(theirs.path()).await, "theirs", 10).await;
    std::fs::copy(theirs.path().join(SNAPSHOT), ours.path().join(SNAPSHOT)).expect("copy");
    assert_all_duplicates(ours.path(), "ours", 50, 50).await;
}

#[tokio::test]
async fn a_second_opener_is_told_the_log_is_in_use() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = open(dir.path()).await;
    let error = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect_err("sled allows one opener");
    assert!(
        error.to_string().contains("in use by another process"),
        "{error}"
    );
}
