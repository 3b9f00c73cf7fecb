//! The embedded log's id index, kept mostly on disk: idempotency that never expires, while an
//! appending process holds about two bytes an event of history in memory.
//!
//! In `ids/` beside the segments:
//! - `run-NNNNNNNNNNNN.ids`: immutable runs. A run holds the ids of a range of positions,
//!   sorted by a hash of the id (the hash that picks the id's block of the filter, so runs
//!   are written with their filter filled front to back), each with its position (24 bytes an
//!   id); after them a fence per block of
//!   [`BLOCK_IDS`] ids (its first id) and a Bloom filter of the run's ids, which a footer locates
//!   and checks.
//! - `manifest`: which runs make the index, the position up to which they hold every id, and
//!   the id of the event there (so a manifest from another log, or from before a repair, is
//!   noticed). Replaced by a rename.
//!
//! In memory: the ids appended since the runs were written (a hash map of at most
//! `recent_limit` ids, the bounded cache of recent ids; when full it is frozen and handed to a
//! flusher thread, and asked until its run is in place), and of each run its fences (16 bytes
//! per 170 ids) and its filter ([`FILTER_BITS_PER_ID`] bits an id). A lookup asks the recent ids,
//! the frozen ones, then each run from the newest: its filter, and where the filter says maybe,
//! one 4 KiB read of the block its fences point to. A filter has no false negatives and every
//! maybe is settled on disk, so the answer is exact: an id is never stored twice and a new id
//! is never refused.
//!
//! A merger thread folds runs together so there are about log2(history / recent_limit) of them:
//! when a run holds no more ids than all the runs after it, it and they become one run.
//!
//! After a crash: the log is written and synced before its ids enter the recent map; a run is
//! synced before the manifest names it. So the manifest's position says where the runs end, and
//! opening reads the ids of the frames after it again (at most the recent and frozen ids that
//! were not flushed). Run files the manifest does not name are leftovers and are deleted.
//!
//! Why not sled (already a dependency): an id index in sled was measured at 2.4 times slower
//! appends (random keys scatter writes across its tree, docs/benchmarks.md), and it keeps its
//! own cache and log. Sorted runs written once, in the background, cost appends nothing but the
//! filter probes, and their memory is exactly the filters and fences.

use crate::port::Position;
use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use crate::id_index::IdHasher;

/// Bytes of one entry of a run: the id (16, little-endian) and its position (8).
const ENTRY: usize = 24;
/// Ids per block of a run: one read of 4,080 bytes finds an id once its block is known.
pub(crate) const BLOCK_IDS: usize = 170;
/// The filter's size: 16 bits an id, in blocks of 512 bits (one cache line), 7 bits set per id.
pub(crate) const FILTER_BITS_PER_ID: usize = 16;
const FILTER_PROBES: u32 = 7;
/// Ids kept in memory before they are frozen and written as a run.
pub const DEFAULT_RECENT_IDS: usize = 1 << 18;
/// A merge under way when the store closes is finished when it holds at most this many ids
/// (about a second's work), and abandoned above: closing stays quick, and a short-lived
/// process still leaves the small runs it wrote merged.
const CLOSE_FINISHES_MERGES_UP_TO: u64 = 4 << 20;
/// Frozen maps waiting for the flusher before an append waits for it: bounds memory when the
/// disk is slower than the appends.
const MAX_FROZEN: usize = 4;

/// `BTIDRUN2`: entries in [`order_key`] order. `BTIDRUN1` runs (in id order, by builds before
/// it) are not read: the index starts again from the log once.
const RUN_MAGIC: &[u8; 8] = b"BTIDRUN2";
const RUN_MAGIC_IN_ID_ORDER: &[u8; 8] = b"BTIDRUN1";
const RUN_HEADER: u64 = 16;
const RUN_FOOTER: u64 = 48;
const MANIFEST_MAGIC: &[u8; 8] = b"BTIDMAN1";
const MANIFEST: &str = "manifest";

type Recent = HashMap<u128, u64, BuildHasherDefault<IdHasher>>;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first of an id's [`hashes`]: it picks the id's block of a filter, and orders a run.
fn first_hash(id: u128) -> u64 {
    #[allow(clippy::cast_possible_truncation)]
    let (low, high) = (id as u64, (id >> 64) as u64);
    splitmix(low ^ splitmix(high))
}

/// Two independent 64-bit hashes of an id. Ids supplied by sources may be time-ordered
/// (UUID v1, v7), so every bit is mixed rather than trusting any of them to be random.
fn hashes(id: u128) -> (u64, u64) {
    let first = first_hash(id);
    #[allow(clippy::cast_possible_truncation)]
    let second = splitmix((id >> 64) as u64 ^ first.rotate_left(32));
    (first, second)
}

/// The order of a run's entries: by the id's first hash, then by the id. The first hash also
/// picks the id's block of the run's filter (in the same order), so writing a run, a merge's
/// above all, fills its filter front to back instead of at random places in a filter larger
/// than the cache (that was the largest single cost of a bulk load: docs/benchmarks.md).
fn order_key(id: u128) -> (u64, u128) {
    (first_hash(id), id)
}

/// A blocked Bloom filter: each id sets [`FILTER_PROBES`] bits of one 512-bit block.
pub(crate) struct Filter {
    blocks: Vec<[u64; 8]>,
}

impl Filter {
    pub(crate) fn for_ids(count: u64) -> Filter {
        let bits = (count as usize).max(1).saturating_mul(FILTER_BITS_PER_ID);
        Filter {
            blocks: vec![[0; 8]; bits.div_ceil(512)],
        }
    }

    fn place(&self, id: u128) -> (usize, u64) {
        self.place_hashed(hashes(id))
    }

    /// Where an id of these [`hashes`] goes: worked out once per id, however many filters
    /// it is probed in.
    fn place_hashed(&self, (first, second): (u64, u64)) -> (usize, u64) {
        #[allow(clippy::cast_possible_truncation)]
        let block = ((u128::from(first) * self.blocks.len() as u128) >> 64) as usize;
        (block, second)
    }

    pub(crate) fn insert(&mut self, id: u128) {
        let (block, mut bits) = self.place(id);
        let block = &mut self.blocks[block];
        for _ in 0..FILTER_PROBES {
            let bit = (bits & 511) as usize;
            block[bit / 64] |= 1 << (bit % 64);
            bits >>= 9;
        }
    }

    #[cfg(test)]
    pub(crate) fn may_contain(&self, id: u128) -> bool {
        self.may_contain_hashed(hashes(id))
    }

    fn may_contain_hashed(&self, hashed: (u64, u64)) -> bool {
        let (block, mut bits) = self.place_hashed(hashed);
        let block = &self.blocks[block];
        for _ in 0..FILTER_PROBES {
            let bit = (bits & 511) as usize;
            if block[bit / 64] & (1 << (bit % 64)) == 0 {
                return false;
            }
            bits >>= 9;
        }
        true
    }

    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() * 64
    }
}

/// One immutable run on disk, with what a lookup needs of it in memory.
struct Run {
    seq: u64,
    ids: u64,
    file: File,
    path: PathBuf,
    /// The first id of each block.
    fences: Vec<u128>,
    filter: Filter,
}

fn run_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(run_name(seq))
}

pub(crate) fn run_name(seq: u64) -> String {
    format!("run-{seq:012}.ids")
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn entry(bytes: &[u8]) -> (u128, u64) {
    (
        u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes")),
        u64_at(bytes, 16),
    )
}

impl Run {
    /// The position of `id`, of these [`hashes`], if this run holds it.
    fn get(&self, id: u128, hashed: (u64, u64)) -> std::io::Result<Option<u64>> {
        if !self.filter.may_contain_hashed(hashed) {
            return Ok(None);
        }
        let key = (hashed.0, id);
        let block = self
            .fences
            .partition_point(|first| order_key(*first) <= key);
        let Some(block) = block.checked_sub(1) else {
            return Ok(None);
        };
        let start = block * BLOCK_IDS;
        let count = BLOCK_IDS.min(self.ids as usize - start);
        let mut buffer = [0u8; BLOCK_IDS * ENTRY];
        let bytes = &mut buffer[..count * ENTRY];
        self.file
            .read_exact_at(bytes, RUN_HEADER + (start * ENTRY) as u64)?;
        let entries: Vec<(u128, u64)> = bytes.chunks_exact(ENTRY).map(entry).collect();
        Ok(entries
            .binary_search_by_key(&key, |(entry_id, _)| order_key(*entry_id))
            .ok()
            .map(|at| entries[at].1))
    }

    /// Reads a run's fences and filter, checking them against its footer.
    fn open(dir: &Path, seq: u64, ids: u64) -> Result<Run, String> {
        let path = run_path(dir, seq);
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let length = file.metadata().map_err(|e| e.to_string())?.len();
        let broken = |what: &str| format!("{}: {what}", path.display());
        let entries_end = RUN_HEADER + ids * ENTRY as u64;
        if length < entries_end + RUN_FOOTER {
            return Err(broken("shorter than its ids"));
        }
        let mut footer = [0u8; RUN_FOOTER as usize];
        file.read_exact_at(&mut footer, length - RUN_FOOTER)
            .map_err(|e| broken(&e.to_string()))?;
        if &footer[40..48] == RUN_MAGIC_IN_ID_ORDER {
            return Err(broken(
                "a run written by an earlier build, in another order",
            ));
        }
        if &footer[40..48] != RUN_MAGIC {
            return Err(broken("not a run of ids"));
        }
        let (fences_at, filter_at, filter_blocks, count) = (
            u64_at(&footer, 0),
            u64_at(&footer, 8),
            u64_at(&footer, 16),
            u64_at(&footer, 24),
        );
        let fence_count = ids.div_ceil(BLOCK_IDS as u64);
        if count != ids
            || fences_at != entries_end
            || filter_at != fences_at + fence_count * 16
            || length != filter_at + filter_blocks * 64 + RUN_FOOTER
        {
            return Err(broken("its footer does not match its size"));
        }
        let mut meta = vec![0u8; (length - RUN_FOOTER - fences_at) as usize];
        file.read_exact_at(&mut meta, fences_at)
            .map_err(|e| broken(&e.to_string()))?;
        let mut checksum = crc32fast::Hasher::new();
        checksum.update(&meta);
        checksum.update(&footer[..32]);
        if checksum.finalize().to_le_bytes() != footer[32..36] {
            return Err(broken("its fences or filter fail their checksum"));
        }
        let (fence_bytes, filter_bytes) = meta.split_at((fence_count * 16) as usize);
        let fences = fence_bytes
            .chunks_exact(16)
            .map(|bytes| u128::from_le_bytes(bytes.try_into().expect("16 bytes")))
            .collect();
        let blocks = filter_bytes
            .chunks_exact(64)
            .map(|block| std::array::from_fn(|word| u64_at(block, word * 8)))
            .collect();
        Ok(Run {
            seq,
            ids,
            file,
            path,
            fences,
            filter: Filter { blocks },
        })
    }

    /// Every entry, in id order, checked against the run's checksum of them at the end.
    fn entries(&self) -> std::io::Result<RunEntries> {
        let mut file = File::open(&self.path)?;
        let mut header = [0u8; RUN_HEADER as usize];
        file.read_exact(&mut header)?;
        let mut footer = [0u8; RUN_FOOTER as usize];
        let length = file.metadata()?.len();
        file.read_exact_at(&mut footer, length - RUN_FOOTER)?;
        let expected = u32::from_le_bytes(footer[36..40].try_into().expect("4 bytes"));
        Ok(RunEntries {
            reader: BufReader::with_capacity(1 << 20, file),
            left: self.ids,
            chunk: Vec::with_capacity(ENTRY_CHUNK),
            at: 0,
            checksum: crc32fast::Hasher::new(),
            expected,
            path: self.path.clone(),
        })
    }

    fn memory(&self) -> usize {
        self.fences.len() * 16 + self.filter.bytes()
    }
}

struct RunEntries {
    reader: BufReader<File>,
    /// Entries not read yet.
    left: u64,
    /// Entries read and checksummed, a chunk at a time, from `at` on not handed out yet.
    chunk: Vec<u8>,
    at: usize,
    checksum: crc32fast::Hasher,
    expected: u32,
    path: PathBuf,
}

impl RunEntries {
    /// [`RunEntries::next`] with the id's [`order_key`].
    fn next_keyed(&mut self) -> std::io::Result<Option<((u64, u128), u64)>> {
        Ok(self.next()?.map(|(id, position)| (order_key(id), position)))
    }

    fn next(&mut self) -> std::io::Result<Option<(u128, u64)>> {
        if self.at < self.chunk.len() {
            let next = entry(&self.chunk[self.at..self.at + ENTRY]);
            self.at += ENTRY;
            return Ok(Some(next));
        }
        if self.left > 0 {
            let count = self.left.min((ENTRY_CHUNK / ENTRY) as u64);
            self.chunk.resize(count as usize * ENTRY, 0);
            self.reader.read_exact(&mut self.chunk)?;
            self.checksum.update(&self.chunk);
            self.left -= count;
            self.at = ENTRY;
            return Ok(Some(entry(&self.chunk[..ENTRY])));
        }
        let checksum = self.checksum.clone().finalize();
        if checksum != self.expected {
            return Err(std::io::Error::other(format!(
                "{}: its ids fail their checksum",
                self.path.display()
            )));
        }
        Ok(None)
    }
}

/// Writes a run from ids in ascending order; [`RunWriter::finish`] syncs it and puts it in
/// place.
struct RunWriter {
    out: BufWriter<File>,
    temporary: PathBuf,
    dir: PathBuf,
    seq: u64,
    expected: u64,
    written: u64,
    fences: Vec<u128>,
    filter: Filter,
    entries_checksum: crc32fast::Hasher,
    /// Entries not written yet: checksummed and written a chunk at a time, not one 24-byte
    /// entry at a time (`RunWriter::push` and the checksum were 12% of a bulk load's CPU).
    pending: Vec<u8>,
    last: Option<(u64, u128)>,
}

/// How many bytes of entries a run is written and read in at a time.
const ENTRY_CHUNK: usize = ENTRY * 2_730;

impl RunWriter {
    fn create(dir: &Path, seq: u64, ids: u64) -> std::io::Result<RunWriter> {
        let temporary = dir.join(format!("run-{seq:012}.tmp"));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        out.write_all(RUN_MAGIC)?;
        out.write_all(&ids.to_le_bytes())?;
        Ok(RunWriter {
            out,
            temporary,
            dir: dir.to_owned(),
            seq,
            expected: ids,
            written: 0,
            fences: Vec::with_capacity(ids.div_ceil(BLOCK_IDS as u64) as usize),
            filter: Filter::for_ids(ids),
            entries_checksum: crc32fast::Hasher::new(),
            pending: Vec::with_capacity(ENTRY_CHUNK),
            last: None,
        })
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        self.entries_checksum.update(&self.pending);
        self.out.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    /// `key` is the id's [`order_key`], which the caller has worked out to order the ids.
    fn push(&mut self, key: (u64, u128), position: u64) -> std::io::Result<()> {
        let id = key.1;
        if self.last.is_some_and(|last| last >= key) || self.written == self.expected {
            return Err(std::io::Error::other(
                "invariant: a run's ids are written once each, in order",
            ));
        }
        if self.written.is_multiple_of(BLOCK_IDS as u64) {
            self.fences.push(id);
        }
        self.filter.insert(id);
        self.pending.extend_from_slice(&id.to_le_bytes());
        self.pending.extend_from_slice(&position.to_le_bytes());
        if self.pending.len() >= ENTRY_CHUNK {
            self.write_pending()?;
        }
        self.written += 1;
        self.last = Some(key);
        Ok(())
    }

    /// Fewer ids than announced are fine (a merge drops an id that two runs held); the header
    /// is corrected, the filter stays sized for the announced count.
    fn finish(mut self) -> std::io::Result<Run> {
        if self.written > self.expected || self.written == 0 {
            return Err(std::io::Error::other(format!(
                "invariant: a run of {} ids got {}",
                self.expected, self.written
            )));
        }
        self.write_pending()?;
        let mut checksum = crc32fast::Hasher::new();
        let fences_at = RUN_HEADER + self.written * ENTRY as u64;
        for fence in &self.fences {
            checksum.update(&fence.to_le_bytes());
            self.out.write_all(&fence.to_le_bytes())?;
        }
        let filter_at = fences_at + self.fences.len() as u64 * 16;
        for block in &self.filter.blocks {
            for word in block {
                checksum.update(&word.to_le_bytes());
                self.out.write_all(&word.to_le_bytes())?;
            }
        }
        let mut footer = [0u8; RUN_FOOTER as usize];
        footer[0..8].copy_from_slice(&fences_at.to_le_bytes());
        footer[8..16].copy_from_slice(&filter_at.to_le_bytes());
        footer[16..24].copy_from_slice(&(self.filter.blocks.len() as u64).to_le_bytes());
        footer[24..32].copy_from_slice(&self.written.to_le_bytes());
        checksum.update(&footer[..32]);
        footer[32..36].copy_from_slice(&checksum.finalize().to_le_bytes());
        footer[36..40].copy_from_slice(&self.entries_checksum.finalize().to_le_bytes());
        footer[40..48].copy_from_slice(RUN_MAGIC);
        self.out.write_all(&footer)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.write_all_at(&self.written.to_le_bytes(), 8)?;
        file.sync_all()?;
        let path = run_path(&self.dir, self.seq);
        std::fs::rename(&self.temporary, &path)?;
        Ok(Run {
            seq: self.seq,
            ids: self.written,
            file: File::open(&path)?,
            path,
            fences: self.fences,
            filter: self.filter,
        })
    }
}

/// The runs that make the index at one moment: every id at a position up to `covered` is in
/// one of them.
#[derive(Clone, Default)]
struct RunSet {
    /// Oldest first.
    runs: Vec<Arc<Run>>,
    covered: u64,
    /// The id at `covered`.
    anchor: u128,
    /// The number of the last frozen map whose run is among `runs` (this process's count).
    flushed: u64,
}

/// What the manifest says.
pub(crate) struct Manifest {
    pub(crate) covered: u64,
    pub(crate) anchor: u128,
    next_seq: u64,
    runs: Vec<(u64, u64)>,
}

pub(crate) fn read_manifest(dir: &Path) -> Result<Option<Manifest>, String> {
    read_manifest_file(&dir.join(MANIFEST))
}

pub(crate) fn read_manifest_file(path: &Path) -> Result<Option<Manifest>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    parse_manifest(&bytes, &path.display().to_string()).map(Some)
}

/// A manifest from its bytes; `label` names where they came from in errors.
pub(crate) fn parse_manifest(bytes: &[u8], label: &str) -> Result<Manifest, String> {
    let path = label;
    if bytes.len() < 8 + 8 + 16 + 8 + 8 + 4 || &bytes[..8] != MANIFEST_MAGIC {
        return Err(format!("{path}: not a manifest of ids"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != sum {
        return Err(format!("{path}: fails its checksum"));
    }
    let covered = u64_at(body, 8);
    let anchor = u128::from_le_bytes(body[16..32].try_into().expect("16 bytes"));
    let next_seq = u64_at(body, 32);
    let count = u64_at(body, 40) as usize;
    let listed = &body[48..];
    if listed.len() != count.saturating_mul(16) {
        return Err(format!("{path}: its run count does not match"));
    }
    let runs = listed
        .chunks_exact(16)
        .map(|run| (u64_at(run, 0), u64_at(run, 8)))
        .collect();
    Ok(Manifest {
        covered,
        anchor,
        next_seq,
        runs,
    })
}

impl Manifest {
    /// The sequence numbers of the runs it names.
    pub(crate) fn run_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().map(|(seq, _)| *seq)
    }

    /// The file names of the runs it names.
    pub(crate) fn run_files(&self) -> Vec<String> {
        self.runs.iter().map(|(seq, _)| run_name(*seq)).collect()
    }
}

fn write_manifest(dir: &Path, set: &RunSet, next_seq: u64) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(48 + set.runs.len() * 16 + 4);
    body.extend_from_slice(MANIFEST_MAGIC);
    body.extend_from_slice(&set.covered.to_le_bytes());
    body.extend_from_slice(&set.anchor.to_le_bytes());
    body.extend_from_slice(&next_seq.to_le_bytes());
    body.extend_from_slice(&(set.runs.len() as u64).to_le_bytes());
    for run in &set.runs {
        body.extend_from_slice(&run.seq.to_le_bytes());
        body.extend_from_slice(&run.ids.to_le_bytes());
    }
    let sum = crc32fast::hash(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    let temporary = dir.join("manifest.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&body)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(MANIFEST))?;
    File::open(dir)?.sync_all()
}

/// Ids frozen out of the recent map, waiting for their run.
struct Frozen {
    ids: Recent,
    /// Its place in the order of freezing, counted from 1 in this process: a lookup asks it
    /// until its run is in place. (Not `covered`, which two maps can share: a JetStream writer
    /// records other writers' ids without its position moving.)
    number: u64,
    /// Every id at a position up to here is in the runs once this one's run is.
    covered: u64,
    anchor: u128,
}

struct State {
    set: Arc<RunSet>,
    next_seq: u64,
    /// Why the background threads stopped, if they failed.
    failed: Option<String>,
    /// Runs written, merges done: for the benchmark and the logs.
    merges: u64,
    /// Whether this process has written a run yet: merges wait for the first, so a process
    /// that only looks ids up leaves the runs as it found them.
    flushed: bool,
}

/// What the appender shares with the flusher and the merger.
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, error: impl std::fmt::Display) {
        let mut state = self.lock();
        state.failed.get_or_insert_with(|| error.to_string());
        self.changed.notify_all();
    }

    fn take_seq(&self) -> u64 {
        let mut state = self.lock();
        state.next_seq += 1;
        state.next_seq - 1
    }

    /// Puts `change` of the current set in place, once the manifest naming it is on disk.
    fn install(&self, change: impl FnOnce(&RunSet) -> RunSet) -> std::io::Result<()> {
        let mut state = self.lock();
        let set = change(&state.set);
        write_manifest(&self.dir, &set, state.next_seq)?;
        state.set = Arc::new(set);
        self.changed.notify_all();
        Ok(())
    }
}

/// Writes each frozen map as a run.
fn flusher(shared: Arc<Shared>, frozen: mpsc::Receiver<Arc<Frozen>>) {
    for table in frozen {
        let written = (|| {
            let mut entries: Vec<((u64, u128), u64)> = table
                .ids
                .iter()
                .map(|(id, position)| (order_key(*id), *position))
                .collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            let seq = shared.take_seq();
            let mut writer = RunWriter::create(&shared.dir, seq, entries.len() as u64)?;
            for (key, position) in entries {
                writer.push(key, position)?;
            }
            let run = Arc::new(writer.finish()?);
            shared.lock().flushed = true;
            shared.install(|set| {
                let mut runs = set.runs.clone();
                runs.push(run);
                RunSet {
                    runs,
                    covered: table.covered,
                    anchor: table.anchor,
                    flushed: table.number,
                }
            })
        })();
        if let Err(error) = written {
            shared.fail(format!("writing a run of ids: {error}"));
            return;
        }
    }
}

/// The runs to merge now: from the newest run that holds no more ids than all the runs after
/// it together, to the newest. Repeated, this keeps each run larger than all newer ones
/// together, so there are at most log2(history / recent ids) + 1; taking the newest such run
/// first merges small runs before large ones, so a short-lived process (an `ingest`) tidies
/// what it wrote before it closes.
fn to_merge(runs: &[Arc<Run>]) -> Option<usize> {
    let mut after: u64 = 0;
    for (at, run) in runs.iter().enumerate().rev() {
        if at + 1 < runs.len() && run.ids <= after {
            return Some(at);
        }
        after += run.ids;
    }
    None
}

/// Merges runs in the background.
fn merger(shared: Arc<Shared>) {
    loop {
        let inputs: Vec<Arc<Run>> = {
            let mut state = shared.lock();
            loop {
                let stopping = shared.stop.load(Ordering::Acquire);
                if state.failed.is_some() {
                    return;
                }
                let next = to_merge(&state.set.runs).filter(|_| state.flushed);
                if let Some(from) = next {
                    let inputs = state.set.runs[from..].to_vec();
                    let total: u64 = inputs.iter().map(|run| run.ids).sum();
                    // Closing: small merges are still done, large ones left for later.
                    if !stopping || total <= CLOSE_FINISHES_MERGES_UP_TO {
                        break inputs;
                    }
                }
                if stopping {
                    return;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        match merge(&shared, &inputs) {
            Ok(Some(merged)) => {
                let merged = Arc::new(merged);
                let installed = shared.install(|set| {
                    let first = set
                        .runs
                        .iter()
                        .position(|run| run.seq == inputs[0].seq)
                        .expect("invariant: only the merger removes runs");
                    let mut runs = set.runs[..first].to_vec();
                    runs.push(merged);
                    runs.extend(set.runs[first + inputs.len()..].iter().cloned());
                    RunSet {
                        runs,
                        ..set.clone()
                    }
                });
                if let Err(error) = installed {
                    shared.fail(format!("writing the manifest of ids: {error}"));
                    return;
                }
                shared.lock().merges += 1;
                for input in &inputs {
                    // Lookups still holding the old set keep its files open.
                    let _ = std::fs::remove_file(&input.path);
                }
            }
            Ok(None) => return,
            Err(error) => {
                shared.fail(format!("merging runs of ids: {error}"));
                return;
            }
        }
    }
}

/// One run holding the ids of `inputs`; `None` when asked to stop first.
fn merge(shared: &Shared, inputs: &[Arc<Run>]) -> std::io::Result<Option<Run>> {
    let total: u64 = inputs.iter().map(|run| run.ids).sum();
    let seq = shared.take_seq();
    let mut writer = RunWriter::create(&shared.dir, seq, total)?;
    let mut readers = inputs
        .iter()
        .map(|run| run.entries())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut heads = readers
        .iter_mut()
        .map(RunEntries::next_keyed)
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut written: u64 = 0;
    // The same id may be in two runs: a JetStream writer records an id another writer
    // stored, and may meet it again catching up. It is written once, at its first position.
    while let Some((key, _)) = heads.iter().flatten().min_by_key(|(key, _)| *key).copied() {
        let mut position = u64::MAX;
        for (head, reader) in heads.iter_mut().zip(readers.iter_mut()) {
            while let Some((at_key, at_position)) = *head
                && at_key == key
            {
                position = position.min(at_position);
                *head = reader.next_keyed()?;
            }
        }
        writer.push(key, position)?;
        written += 1;
        if total > CLOSE_FINISHES_MERGES_UP_TO
            && written.is_multiple_of(1 << 16)
            && shared.stop.load(Ordering::Acquire)
        {
            drop(writer);
            let _ = std::fs::remove_file(shared.dir.join(format!("run-{seq:012}.tmp")));
            return Ok(None);
        }
    }
    writer.finish().map(Some)
}

/// What opening found, for the log's own messages.
pub(crate) struct Opened {
    pub(crate) from_runs: u64,
    pub(crate) runs: usize,
}

/// The id index of an embedded log: see the module's documentation.
pub(crate) struct IdStore {
    shared: Arc<Shared>,
    set: Arc<RunSet>,
    recent: Recent,
    recent_limit: usize,
    /// Newest last.
    frozen: Vec<Arc<Frozen>>,
    /// Maps frozen so far.
    frozen_count: u64,
    /// A position up to which every id is in the store, and the id there (see
    /// [`IdStore::mark_covered`]).
    last: (u64, u128),
    to_flusher: Option<mpsc::Sender<Arc<Frozen>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl IdStore {
    /// Opens the index in `dir`, creating it when missing. `fits` checks a manifest's position
    /// and anchor against the log; when it does not fit, or anything is unreadable, the index
    /// starts empty (and the caller reads every id again). Returns the store and how far its runs
    /// reach; the caller inserts the ids of the frames after that.
    pub(crate) fn open(
        dir: &Path,
        recent_limit: usize,
        fits: impl FnOnce(&Manifest) -> Result<(), String>,
    ) -> std::io::Result<(IdStore, Opened)> {
        std::fs::create_dir_all(dir)?;
        let loaded = match read_manifest(dir) {
            Ok(Some(manifest)) => match fits(&manifest) {
                Ok(()) => {
                    let runs: Result<Vec<Arc<Run>>, String> = manifest
                        .runs
                        .iter()
                        .map(|(seq, ids)| Run::open(dir, *seq, *ids).map(Arc::new))
                        .collect();
                    match runs {
                        Ok(runs) => Some((manifest, runs)),
                        Err(reason) => {
                            tracing::warn!(%reason, "a run of ids is unreadable; reading every id again");
                            None
                        }
                    }
                }
                Err(reason) => {
                    tracing::info!(%reason, "the id index does not fit this log; reading every id again");
                    None
                }
            },
            Ok(None) => None,
            Err(reason) => {
                tracing::warn!(%reason, "the id index is unreadable; reading every id again");
                None
            }
        };
        let (set, next_seq) = match loaded {
            Some((manifest, runs)) => (
                RunSet {
                    runs,
                    covered: manifest.covered,
                    anchor: manifest.anchor,
                    flushed: 0,
                },
                manifest.next_seq,
            ),
            None => (RunSet::default(), 0),
        };
        // Leftovers: runs the manifest does not name (merged away, or written before a crash).
        let named: std::collections::HashSet<PathBuf> =
            set.runs.iter().map(|run| run.path.clone()).collect();
        for file in std::fs::read_dir(dir)? {
            let path = file?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("run-") && !named.contains(&path) {
                std::fs::remove_file(&path)?;
            }
        }
        let seq_after_runs = set.runs.iter().map(|run| run.seq + 1).max().unwrap_or(0);
        let opened = Opened {
            from_runs: set.covered,
            runs: set.runs.len(),
        };
        let set = Arc::new(set);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                set: set.clone(),
                next_seq: next_seq.max(seq_after_runs),
                failed: None,
                merges: 0,
                flushed: false,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        if opened.from_runs == 0 && opened.runs == 0 {
            // Starting empty: a manifest left here (foreign, damaged, or naming the runs just
            // deleted) must not be read again. Removing it needs no sync: if a crash brings it
            // back, the runs it names are gone and the next open starts empty again.
            match std::fs::remove_file(dir.join(MANIFEST)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        let (to_flusher, from_appender) = mpsc::channel();
        let threads = vec![
            {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name("baton-id-flush".into())
                    .spawn(move || flusher(shared, from_appender))?
            },
            {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name("baton-id-merge".into())
                    .spawn(move || merger(shared))?
            },
        ];
        let last = (set.covered, set.anchor);
        Ok((
            IdStore {
                shared,
                set,
                recent: Recent::default(),
                recent_limit: recent_limit.max(1),
                frozen: Vec::new(),
                frozen_count: 0,
                last,
                to_flusher: Some(to_flusher),
                threads,
            },
            opened,
        ))
    }

    /// The position of `id`, if it is on the log.
    pub(crate) fn get(&self, id: u128) -> std::io::Result<Option<Position>> {
        if let Some(position) = self.recent.get(&id) {
            return Ok(Some(Position::new(*position)));
        }
        for table in self.frozen.iter().rev() {
            if let Some(position) = table.ids.get(&id) {
                return Ok(Some(Position::new(*position)));
            }
        }
        if self.set.runs.is_empty() {
            return Ok(None);
        }
        let hashed = hashes(id);
        for run in self.set.runs.iter().rev() {
            if let Some(position) = run.get(id, hashed)? {
                return Ok(Some(Position::new(position)));
            }
        }
        Ok(None)
    }

    /// Records `id` at `position`, keeping the first position if it was already there.
    pub(crate) fn insert(&mut self, id: u128, position: Position) {
        self.recent.entry(id).or_insert(position.get());
    }

    /// Takes back an id inserted by a batch that did not become durable.
    pub(crate) fn remove(&mut self, id: u128) {
        self.recent.remove(&id);
    }

    /// Says that every id at a position up to `position` is in the store, and that `id` is
    /// the one there: what a manifest records, so the next open reads only what is after it
    /// and can tell this log from another. Positions only move forward.
    pub(crate) fn mark_covered(&mut self, position: Position, id: u128) {
        if position.get() > self.last.0 {
            self.last = (position.get(), id);
        }
    }

    /// Takes in what the background threads finished, and fails when they failed. Called
    /// before a batch's lookups.
    pub(crate) fn refresh(&mut self) -> Result<(), String> {
        let state = self.shared.lock();
        if let Some(failed) = &state.failed {
            return Err(format!("the id index: {failed}"));
        }
        if !Arc::ptr_eq(&self.set, &state.set) {
            self.set = state.set.clone();
            let flushed = self.set.flushed;
            self.frozen.retain(|table| table.number > flushed);
        }
        Ok(())
    }

    /// After a durable batch: when the recent ids are at their limit, freezes them and hands
    /// them to the flusher, waiting for it when it is [`MAX_FROZEN`] maps behind.
    pub(crate) fn settle(&mut self) -> Result<(), String> {
        if self.recent.len() < self.recent_limit {
            return Ok(());
        }
        self.freeze();
        let mut state = self.shared.lock();
        loop {
            if let Some(failed) = &state.failed {
                return Err(format!("the id index: {failed}"));
            }
            let flushed = state.set.flushed;
            let behind = self.frozen.iter().filter(|t| t.number > flushed).count();
            if behind <= MAX_FROZEN {
                break;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(state);
        self.refresh()
    }

    fn freeze(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        self.frozen_count += 1;
        let table = Arc::new(Frozen {
            ids: std::mem::take(&mut self.recent),
            number: self.frozen_count,
            covered: self.last.0,
            anchor: self.last.1,
        });
        self.recent.reserve(self.recent_limit.min(1 << 20));
        self.frozen.push(table.clone());
        if let Some(sender) = &self.to_flusher {
            // A closed channel means the flusher failed; refresh reports why.
            let _ = sender.send(table);
        }
    }

    /// How far the runs on disk reach (as of the last [`IdStore::refresh`]).
    pub(crate) fn runs_cover(&self) -> u64 {
        self.set.covered
    }

    /// Memory held for lookups: the recent and frozen ids (their entries and the map's slack,
    /// about 32 bytes an id), and every run's fences and filter.
    pub(crate) fn memory(&self) -> IdMemory {
        let per_id = 32;
        let cached = self.recent.capacity() * per_id
            + self
                .frozen
                .iter()
                .map(|t| t.ids.capacity() * per_id)
                .sum::<usize>();
        IdMemory {
            recent_bytes: cached as u64,
            filter_bytes: self.set.runs.iter().map(|run| run.memory() as u64).sum(),
            runs: self.set.runs.len() as u64,
            in_runs: self.set.runs.iter().map(|run| run.ids).sum(),
        }
    }

    /// Writes the recent ids as a run and waits for it, leaving merges for the next open: the
    /// next open then reads no frames again.
    fn close(&mut self) {
        self.freeze();
        self.to_flusher = None;
        // The flusher writes what is left and ends; then the merger does what small merges
        // there are and ends.
        let mut threads = self.threads.drain(..);
        if let Some(flusher) = threads.next() {
            let _ = flusher.join();
        }
        {
            // Under the lock: the merger checks `stop` holding it and then waits, so a wake-up
            // sent between its check and its wait would be lost (and this join would hang).
            let _state = self.shared.lock();
            self.shared.stop.store(true, Ordering::Release);
            self.shared.changed.notify_all();
        }
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
impl IdStore {
    /// Waits until every frozen map is in a run and the merger has nothing left to merge.
    fn wait_for_merges(&mut self) {
        let mut state = self.shared.lock();
        while state.failed.is_none()
            && (state.set.flushed < self.frozen_count
                || (state.flushed && to_merge(&state.set.runs).is_some()))
        {
            state = self.shared.changed.wait(state).expect("lock");
        }
        drop(state);
        self.refresh().expect("refresh");
    }
}

impl Drop for IdStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the id index holds in memory and on disk, for `baton bench ids` and the logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdMemory {
    /// The recent and frozen ids not yet in runs.
    pub recent_bytes: u64,
    /// The runs' filters and fences.
    pub filter_bytes: u64,
    pub runs: u64,
    /// Ids in runs.
    pub in_runs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> u128 {
        u128::from(splitmix(n)) << 64 | u128::from(splitmix(n ^ 0xABCD))
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let mut filter = Filter::for_ids(100_000);
        for n in 0..100_000 {
            filter.insert(id(n));
        }
        assert!((0..100_000).all(|n| filter.may_contain(id(n))));
        let false_positives = (100_000..1_100_000)
            .filter(|n| filter.may_contain(id(*n)))
            .count();
        // 16 bits an id, 7 probes in a 512-bit block: about 0.1% in theory.
        assert!(false_positives < 3_000, "{false_positives} of 1,000,000");
        assert!(false_positives > 0, "a filter this size does err sometimes");
    }

    /// Time-ordered ids (UUID v7: 48 bits of milliseconds first) spread as well as random ones.
    #[test]
    fn time_ordered_ids_do_not_crowd_the_filter() {
        let v7 = |n: u64| (u128::from(1_700_000_000_000 + n) << 80) | u128::from(n & 0xfff);
        let mut filter = Filter::for_ids(50_000);
        for n in 0..50_000 {
            filter.insert(v7(n));
        }
        let false_positives = (50_000..550_000)
            .filter(|n| filter.may_contain(v7(*n)))
            .count();
        assert!(false_positives < 1_500, "{false_positives} of 500,000");
    }

    fn a_run_file(dir: &Path) -> PathBuf {
        std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "ids"))
            .expect("a run")
    }

    fn store(dir: &Path, limit: usize) -> IdStore {
        IdStore::open(dir, limit, |_| Ok(())).expect("open").0
    }

    fn fill(store: &mut IdStore, from: u64, to: u64) {
        for n in from..to {
            store.refresh().expect("refresh");
            store.insert(id(n), Position::new(n + 1));
            store.mark_covered(Position::new(n + 1), id(n));
            store.settle().expect("settle");
        }
    }

    #[test]
    fn ids_are_found_in_runs_and_merges_keep_every_one() {
        let dir = tempfile::tempdir().expect("dir");
        let mut ids = store(dir.path(), 100);
        fill(&mut ids, 0, 5_000);
        ids.wait_for_merges();
        drop(ids);
        let (mut ids, opened) = IdStore::open(dir.path(), 100, |m| {
            assert_eq!(m.covered, 5_000);
            assert_eq!(m.anchor, id(4_999));
            Ok(())
        })
        .expect("reopen");
        assert_eq!(opened.from_runs, 5_000);
        ids.refresh().expect("refresh");
        for n in 0..5_000 {
            assert_eq!(
                ids.get(id(n)).expect("get"),
                Some(Position::new(n + 1)),
                "{n}"
            );
        }
        for n in 5_000..20_000 {
            assert_eq!(ids.get(id(n)).expect("get"), None, "{n} is new");
        }
        // Merges kept the run count near log2(5000 / 100), whatever order they ran in (plus the
        // run closing wrote).
        let memory = ids.memory();
        assert_eq!(memory.in_runs, 5_000);
        assert!(memory.runs <= 8, "{memory:?}");
    }

    /// Closing never waits for ever: the merger is told to stop while it checks whether to
    /// (a wake-up sent between its check and its wait was lost once, and a close hung).
    #[test]
    fn opening_and_closing_in_quick_succession_never_hangs() {
        let dir = tempfile::tempdir().expect("dir");
        for n in 0..1_500 {
            let mut ids = store(dir.path(), 2);
            fill(&mut ids, n * 3, n * 3 + 3);
        }
        let ids = store(dir.path(), 2);
        assert_eq!(ids.get(id(0)).expect("get"), Some(Position::new(1)));
        assert_eq!(ids.get(id(4_499)).expect("get"), Some(Position::new(4_500)));
    }

    /// A JetStream writer may record an id that is already in a run (one another writer
    /// stored, met again while catching up): merging keeps it once, at its first position.
    #[test]
    fn an_id_in_two_runs_is_merged_into_one_entry() {
        let dir = tempfile::tempdir().expect("dir");
        let mut ids = store(dir.path(), 1);
        for (n, position) in [(0, 1), (1, 2), (0, 1), (2, 3), (1, 2)] {
            ids.refresh().expect("refresh");
            ids.insert(id(n), Position::new(position));
            ids.mark_covered(Position::new(position), id(n));
            ids.settle().expect("settle");
        }
        ids.wait_for_merges();
        let memory = ids.memory();
        assert_eq!((memory.runs, memory.in_runs), (1, 3), "{memory:?}");
        for (n, position) in [(0, 1), (1, 2), (2, 3)] {
            assert_eq!(ids.get(id(n)).expect("get"), Some(Position::new(position)));
        }
        drop(ids);
        let ids = store(dir.path(), 1);
        assert_eq!(ids.get(id(1)).expect("get"), Some(Position::new(2)));
    }

    /// A false positive of a filter is settled by the run: the id is new.
    #[test]
    fn a_filter_false_positive_is_not_taken_for_a_duplicate() {
        let dir = tempfile::tempdir().expect("dir");
        let mut ids = store(dir.path(), 1_000);
        fill(&mut ids, 0, 1_000);
        drop(ids);
        let ids = store(dir.path(), 1_000);
        let run = ids.set.runs.first().expect("one run").clone();
        let fooled = (1_000..1_000_000)
            .map(id)
            .filter(|candidate| run.filter.may_contain(*candidate))
            .take(20)
            .collect::<Vec<_>>();
        assert!(!fooled.is_empty(), "some new ids pass the filter");
        for candidate in fooled {
            assert_eq!(ids.get(candidate).expect("get"), None);
        }
    }

    /// A run of an earlier build (ids in id order, `BTIDRUN1`) is not read in this build's
    /// order, which would miss ids: the index starts again, and the log's ids are read again.
    #[test]
    fn a_run_in_the_earlier_order_is_not_read() {
        let dir = tempfile::tempdir().expect("dir");
        let mut ids = store(dir.path(), 500);
        fill(&mut ids, 0, 500);
        drop(ids);
        let (ids, opened) = IdStore::open(dir.path(), 500, |_| Ok(())).expect("open");
        assert_eq!(
            (opened.from_runs, opened.runs),
            (500, 1),
            "this build's run is read"
        );
        drop(ids);
        let run = a_run_file(dir.path());
        let mut bytes = std::fs::read(&run).expect("run");
        let footer_magic = bytes.len() - 8;
        bytes[footer_magic..].copy_from_slice(RUN_MAGIC_IN_ID_ORDER);
        std::fs::write(&run, &bytes).expect("an earlier build's run");
        let error = Run::open(dir.path(), 0, 500).err().unwrap_or_default();
        assert!(error.contains("earlier build"), "{error}");
        let (_, opened) = IdStore::open(dir.path(), 500, |_| Ok(())).expect("open");
        assert_eq!((opened.from_runs, opened.runs), (0, 0), "starts again");
    }

    #[test]
    fn a_damaged_run_or_manifest_is_noticed() {
        let dir = tempfile::tempdir().expect("dir");
        let mut ids = store(dir.path(), 500);
        fill(&mut ids, 0, 500);
        drop(ids);
        let run = a_run_file(dir.path());
        let mut bytes = std::fs::read(&run).expect("run");
        let at = bytes.len() - 100;
        bytes[at] ^= 1;
        std::fs::write(&run, &bytes).expect("damage");
        let (_, opened) = IdStore::open(dir.path(), 500, |_| Ok(())).expect("open");
        assert_eq!((opened.from_runs, opened.runs), (0, 0), "starts again");
        std::fs::write(dir.path().join(MANIFEST), b"BTIDMAN1 and then nonsense").expect("damage");
        let (_, opened) = IdStore::open(dir.path(), 500, |_| Ok(())).expect("open");
        assert_eq!((opened.from_runs, opened.runs), (0, 0), "starts again");
    }
}
