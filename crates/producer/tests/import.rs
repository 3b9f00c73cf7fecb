//! Bulk import against a real embedded log: lines parsed side by side still go in in the
//! file's order, every bad line is named by its number, and a re-import stores nothing.

use baton_core::event_to_json;
use baton_log::{EmbeddedConfig, EmbeddedLog, EventLog, Position};
use baton_producer::{ImportError, ImportOptions, import_ndjson};
use baton_testkit::events;
use futures::StreamExt;
use std::io::Read;

async fn stored_ids(log: &EmbeddedLog) -> Vec<String> {
    let mut ids = Vec::new();
    let mut stream = log.read(Position::ZERO).await.expect("read");
    while let Some(record) = stream.next().await {
        ids.push(record.expect("record").event.event_id.to_string());
    }
    ids
}

/// A file of good lines with bad, blank and non-UTF-8 lines among them; the good lines' ids
/// in file order and the bad lines' numbers.
fn mixed_file(count: usize) -> (Vec<u8>, Vec<String>, Vec<u64>) {
    let mut file = Vec::new();
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    let mut line = 0_u64;
    for (index, event) in events("import", count).into_iter().enumerate() {
        match index % 37 {
            5 => {
                line += 1;
                bad.push(line);
                file.extend_from_slice(b"not json at all\n");
            }
            11 => {
                line += 1;
                file.extend_from_slice(b"   \n");
            }
            19 => {
                line += 1;
                bad.push(line);
                file.extend_from_slice(b"{\"kind\":\"x\xff\"}\n");
            }
            _ => {}
        }
        line += 1;
        ids.push(event.event_id.to_string());
        file.extend_from_slice(event_to_json(&event).to_string().as_bytes());
        file.push(b'\n');
    }
    (file, ids, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_parsed_side_by_side_are_stored_in_file_order_with_every_bad_line_named() {
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("log");
    let (file, ids, bad) = mixed_file(1_000);
    // Small batches: many of them are parsed at once and must be put back in order.
    let options = ImportOptions {
        batch_size: 7,
        ..ImportOptions::default()
    };
    let mut seen = Vec::new();
    let summary = import_ndjson(
        std::io::Cursor::new(file.clone()),
        &log,
        &options,
        |bytes| seen.push(bytes),
    )
    .await
    .expect("import");
    assert_eq!(summary.accepted, ids.len() as u64);
    assert_eq!(summary.rejected, bad.len() as u64);
    assert_eq!(
        summary.lines,
        (ids.len() + bad.len()) as u64,
        "blank lines are not lines"
    );
    let lines: Vec<u64> = summary.rejections.iter().map(|r| r.line).collect();
    assert_eq!(lines, bad, "every bad line, by its number, in order");
    assert!(summary.rejections[0].reason.contains("not valid JSON"));
    assert!(summary.rejections[1].reason.contains("not UTF-8"));
    assert_eq!(stored_ids(&log).await, ids, "stored in the file's order");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress only grows");
    assert_eq!(seen.last().copied(), Some(file.len() as u64));

    let again = import_ndjson(std::io::Cursor::new(file), &log, &options, |_| {})
        .await
        .expect("import again");
    assert_eq!((again.accepted, again.duplicates), (0, ids.len() as u64));
    assert_eq!(stored_ids(&log).await.len(), ids.len());
}

/// Gives the first `good` bytes of a file, then fails.
struct FailingAfter {
    inner: std::io::Cursor<Vec<u8>>,
    good: u64,
}

impl Read for FailingAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.good.saturating_sub(self.inner.position());
        if left == 0 {
            return Err(std::io::Error::other("the disk went away"));
        }
        let take = buf.len().min(left as usize);
        self.inner.read(&mut buf[..take])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_stops_the_import_after_the_lines_before_it() {
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("log");
    let lines: Vec<String> = events("failing", 100)
        .iter()
        .map(|event| event_to_json(event).to_string())
        .collect();
    // The error comes in the middle of line 43: the 42 lines before it are whole.
    let good = lines[..42].iter().map(|l| l.len() + 1).sum::<usize>() + 10;
    let file = lines.join("\n").into_bytes();
    let reader = std::io::BufReader::with_capacity(
        64,
        FailingAfter {
            inner: std::io::Cursor::new(file),
            good: good as u64,
        },
    );
    let options = ImportOptions {
        batch_size: 5,
        ..ImportOptions::default()
    };
    let error = import_ndjson(reader, &log, &options, |_| {})
        .await
        .expect_err("the read fails");
    assert!(matches!(error, ImportError::Read(_)), "{error}");
    assert!(error.to_string().contains("the disk went away"), "{error}");
    let stored = stored_ids(&log).await;
    assert_eq!(stored.len(), 42, "every whole line before the error, once");
}
