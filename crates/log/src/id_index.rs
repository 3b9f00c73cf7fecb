//! The in-memory index of every event id on a log, id → position: what makes idempotency
//! never expire without a lookup on disk per event.
//!
//! About 32 bytes per event (a 16-byte id, an 8-byte position, and the hash table's slack):
//! 320 MB for ten million events. Rebuilt from the log itself when a log opens, so it is
//! never out of step with what is stored.

use crate::port::Position;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Event ids are UUIDs, random in the bits that matter, so folding them is hash enough and
/// much cheaper than SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u128 keys; kept correct, not fast.
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, value: u128) {
        #[allow(clippy::cast_possible_truncation)]
        let folded = (value as u64) ^ ((value >> 64) as u64);
        self.0 = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Every event id up to `covered`, with its position.
#[derive(Default)]
pub(crate) struct IdIndex {
    positions: HashMap<u128, u64, BuildHasherDefault<IdHasher>>,
    /// The highest position whose id is in the index (all below it are too).
    pub(crate) covered: u64,
}

impl IdIndex {
    pub(crate) fn get(&self, id: u128) -> Option<Position> {
        self.positions.get(&id).copied().map(Position::new)
    }

    /// Records `id` at `position`, keeping the first position if it was already there.
    pub(crate) fn insert(&mut self, id: u128, position: Position) {
        self.positions.entry(id).or_insert(position.get());
    }

    pub(crate) fn remove(&mut self, id: u128) {
        self.positions.remove(&id);
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.positions.reserve(additional);
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"BTIX";
const SNAPSHOT_VERSION: u32 = 1;

/// FNV-1a, 64 bits: catches a torn or truncated snapshot file.
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// What a snapshot says about the log it was taken from.
pub(crate) struct SnapshotHeader {
    pub(crate) covered: u64,
    /// The id of the event at `covered`, to check the snapshot belongs to this log.
    pub(crate) anchor: u128,
}

impl IdIndex {
    /// Writes the index to `path` (through a temporary file and a rename, so a crash leaves
    /// either the old snapshot or the new one).
    pub(crate) fn save(&self, path: &std::path::Path, anchor: u128) -> std::io::Result<()> {
        use std::io::Write;
        let temporary = path.with_extension("tmp");
        let file = std::fs::File::create(&temporary)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut checksum = Checksum::new();
        let mut write = |out: &mut std::io::BufWriter<std::fs::File>, bytes: &[u8]| {
            checksum.update(bytes);
            out.write_all(bytes)
        };
        write(&mut out, SNAPSHOT_MAGIC)?;
        write(&mut out, &SNAPSHOT_VERSION.to_le_bytes())?;
        write(&mut out, &self.covered.to_le_bytes())?;
        write(&mut out, &anchor.to_le_bytes())?;
        write(&mut out, &(self.positions.len() as u64).to_le_bytes())?;
        for (id, position) in &self.positions {
            let mut entry = [0u8; 24];
            entry[..16].copy_from_slice(&id.to_le_bytes());
            entry[16..].copy_from_slice(&position.to_le_bytes());
            write(&mut out, &entry)?;
        }
        let sum = checksum.0;
        out.write_all(&sum.to_le_bytes())?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temporary, path)
    }

    /// Reads a snapshot written by [`IdIndex::save`]; `Err` says why it cannot be used.
    pub(crate) fn load(path: &std::path::Path) -> Result<(IdIndex, SnapshotHeader), String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        const HEADER: usize = 4 + 4 + 8 + 16 + 8;
        if bytes.len() < HEADER + 8 {
            return Err("too short".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut checksum = Checksum::new();
        checksum.update(body);
        if checksum.0.to_le_bytes() != sum {
            return Err("checksum mismatch".into());
        }
        if &body[..4] != SNAPSHOT_MAGIC {
            return Err("not an id index snapshot".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let version = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
        if version != SNAPSHOT_VERSION {
            return Err(format!("snapshot version {version}"));
        }
        let covered = u64_at(8);
        let anchor = u128::from_le_bytes(body[16..32].try_into().expect("16 bytes"));
        let count = usize::try_from(u64_at(32)).map_err(|_| "count too large".to_owned())?;
        let entries = &body[HEADER..];
        if entries.len() != count.saturating_mul(24) {
            return Err("entry count does not match the file size".into());
        }
        let mut index = IdIndex::default();
        index.reserve(count);
        for entry in entries.chunks_exact(24) {
            let id = u128::from_le_bytes(entry[..16].try_into().expect("16 bytes"));
            let position = u64::from_le_bytes(entry[16..].try_into().expect("8 bytes"));
            index.positions.insert(id, position);
        }
        index.covered = covered;
        Ok((index, SnapshotHeader { covered, anchor }))
    }
}
