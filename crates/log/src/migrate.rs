//! Moves a log written by an earlier build (layout 2: blocks of frames in a sled tree under
//! `log/`) into segment files, once, the first time this build opens it.
//!
//! The segments are written into `segments.migrating/`, synced, and renamed to `segments/` in
//! one step; only then is the old database removed. A crash at any point leaves either the old
//! database alone (the next open starts over) or the finished segments (the next open removes
//! what is left of the old database).

use crate::error::LogError;
use crate::port::Position;
use crate::segment::{BLOCK_EVENTS, Segments, sync_dir};
use std::path::Path;

const OLD_DIR: &str = "log";
const STAGING_DIR: &str = "segments.migrating";
const BLOCK_PREFIX: u8 = b'b';
const LAYOUT_KEY: &[u8] = b"mlayout";
const LAYOUT_VERSION: u8 = 2;
/// Old blocks gathered into one append (about 16k events): a sync per append, not per block.
const BLOCKS_PER_APPEND: usize = 64;

fn storage(path: &Path, what: &str, error: impl std::fmt::Display) -> LogError {
    LogError::Storage {
        path: path.display().to_string(),
        message: format!("{what}: {error}"),
    }
}

/// Migrates `dir/log` into `segments` when there is an old database and no segments yet, and
/// removes the old database once the segments are in place.
/// Whether `dir` holds a log of the earlier layout that has not been moved yet (or whose move
/// was cut short).
pub(crate) fn needs_migration(dir: &Path) -> bool {
    dir.join(OLD_DIR).is_dir()
}

pub(crate) fn from_sled_if_there(dir: &Path, segments: &Path) -> Result<(), LogError> {
    let old = dir.join(OLD_DIR);
    if !old.is_dir() {
        return Ok(());
    }
    if !segments.is_dir() {
        migrate(&old, &dir.join(STAGING_DIR), segments)?;
    } else {
        // Both are there after a crash between putting the segments in place and removing the
        // old database, but also when an earlier build was run again on this directory after
        // the migration and wrote a new log: that one must not be deleted unread.
        let old_head = old_head(&old)?;
        let head = Segments::open(segments)?.head();
        if old_head != 0 && old_head != head.get() {
            return Err(storage(
                dir,
                "cannot open",
                format!(
                    "both an old sled log ({old_head} events, in {OLD_DIR}/) and segment files ({head} events) are here; move one of them aside"
                ),
            ));
        }
    }
    std::fs::remove_dir_all(&old).map_err(|e| storage(&old, "cannot remove the old log", e))
}

fn migrate(old: &Path, staging: &Path, segments: &Path) -> Result<(), LogError> {
    let started = std::time::Instant::now();
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .map_err(|e| storage(staging, "cannot clear an unfinished migration", e))?;
    }
    let (db, tree) = open_old(old)?;
    match tree
        .get(LAYOUT_KEY)
        .map_err(|e| storage(old, "cannot read", e))?
    {
        Some(layout) if layout.as_ref() == [LAYOUT_VERSION] => {}
        None if tree.is_empty() => {}
        other => {
            return Err(storage(
                old,
                "cannot migrate",
                format!(
                    "layout {:?} is not one this build can move (layout {LAYOUT_VERSION}); move it aside and re-ingest",
                    other.map(|layout| layout.to_vec())
                ),
            ));
        }
    }
    let target = Segments::open(staging)?;
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(BLOCKS_PER_APPEND * BLOCK_EVENTS);
    let mut blocks = 0usize;
    for entry in tree.scan_prefix([BLOCK_PREFIX]) {
        let (key, block) = entry.map_err(|e| storage(old, "cannot read", e))?;
        let first = block_first(&key)?;
        let expected = target.head().get() + frames.len() as u64 + 1;
        if first.get() != expected {
            return Err(LogError::CorruptEntry(format!(
                "old log at {}: a block starts at position {first} where {expected} was expected",
                old.display()
            )));
        }
        frames.extend(old_block_frames(first, &block)?);
        blocks += 1;
        if blocks.is_multiple_of(BLOCKS_PER_APPEND) {
            target.append(&frames)?;
            frames.clear();
        }
    }
    target.append(&frames)?;
    let events = target.head().get();
    drop(target);
    drop(tree);
    drop(db);
    std::fs::rename(staging, segments)
        .map_err(|e| storage(segments, "cannot put the migrated segments in place", e))?;
    if let Some(parent) = segments.parent() {
        sync_dir(parent)?;
    }
    tracing::info!(
        events,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "moved the log from sled into segment files"
    );
    Ok(())
}

/// The old database and its tree of blocks. The database handle is returned so the caller
/// closes it when done.
fn open_old(old: &Path) -> Result<(sled::Db, sled::Tree), LogError> {
    let db = sled::Config::new()
        .path(old)
        .open()
        .map_err(|e| storage(old, "cannot open the old log", e))?;
    let tree = db
        .open_tree("events")
        .map_err(|e| storage(old, "cannot open the old log's tree", e))?;
    Ok((db, tree))
}

/// The number of events in an old log.
fn old_head(old: &Path) -> Result<u64, LogError> {
    let (_db, tree) = open_old(old)?;
    match tree.scan_prefix([BLOCK_PREFIX]).next_back() {
        None => Ok(0),
        Some(entry) => {
            let (key, block) = entry.map_err(|e| storage(old, "cannot read", e))?;
            let first = block_first(&key)?;
            Ok(first.get() + old_block_frames(first, &block)?.len() as u64 - 1)
        }
    }
}

fn block_first(key: &[u8]) -> Result<Position, LogError> {
    match key {
        [BLOCK_PREFIX, rest @ ..] if rest.len() == 8 => {
            let array: [u8; 8] = rest.try_into().expect("invariant: 8 bytes");
            Ok(Position::new(u64::from_be_bytes(array)))
        }
        other => Err(LogError::CorruptEntry(format!(
            "old log: block key of {} bytes, expected 9",
            other.len()
        ))),
    }
}

/// The frames of an old block (`u32` count, then `u32` length and bytes per frame).
fn old_block_frames(first: Position, block: &[u8]) -> Result<Vec<Vec<u8>>, LogError> {
    let broken =
        |what: &str| LogError::CorruptEntry(format!("old log: block at position {first}: {what}"));
    let read_u32 = |at: usize| -> Option<usize> {
        block
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let count = read_u32(0).ok_or_else(|| broken("no frame count"))?;
    let mut frames = Vec::with_capacity(count.min(BLOCK_EVENTS));
    let mut at = 4;
    for _ in 0..count {
        let length = read_u32(at).ok_or_else(|| broken("truncated frame length"))?;
        let frame = block
            .get(at + 4..at + 4 + length)
            .ok_or_else(|| broken("truncated frame"))?;
        frames.push(frame.to_vec());
        at += 4 + length;
    }
    if at != block.len() {
        return Err(broken("trailing bytes"));
    }
    Ok(frames)
}
