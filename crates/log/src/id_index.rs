//! The in-memory index of every event id on a JetStream stream, id → stream sequence, kept by
//! each writer (the embedded log keeps its index on disk: `id_store.rs`).
//!
//! About 32 bytes per event (a 16-byte id, an 8-byte position, and the hash table's slack)
//! when the table has just grown, up to twice that after. Rebuilt from the stream's headers
//! when a writer starts, so it is never out of step with what is stored.

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
}
