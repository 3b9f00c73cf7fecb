//! The embedded log's frames, in append-only segment files.
//!
//! A segment is a file `{first position:020}.seg` holding blocks back to back. A block is a
//! 28-byte header, then its frames (`u32` length, little-endian, then the bytes, per frame):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `BTNB` |
//! | 8 | position of the block's first frame, `u64` LE |
//! | 4 | frames in the block (1 to 256), `u32` LE |
//! | 4 | payload bytes after the header, `u32` LE |
//! | 4 | flags: bit 0 set on the last block of an append |
//! | 4 | CRC-32 (IEEE) of the 20 bytes from the position to the flags, then the payload |
//!
//! Why files and not sled: sled 0.34 keeps in memory every node a read pages in, whatever its
//! cache capacity says, so one full read of ten million events held about 2.2 GB. A read here
//! is `pread` into a buffer that is reused; the kernel's page cache holds the bytes, not the
//! process.
//!
//! Durability: an append writes its blocks with one write at the end of the last segment and
//! syncs the file before it returns; a new segment is created only between appends, and the
//! directory is synced when one is. Only the last append can therefore be torn by a crash, and
//! it was never acknowledged. Opening walks every block header (no payload is read; a sealed
//! segment's headers are read from its `.blocks` file instead, below) and checks
//! the checksums of the last append only when it ends the file: when any of its blocks is
//! incomplete or does not match its checksum, the whole append is cut off the file, and the
//! bytes cut are kept beside the segment (`.seg.cut-{byte}`). Damage anywhere else is reported,
//! never repaired: a broken header fails the open with the segment and byte offset (in the last
//! segment too, when a finished append follows the damage), and a payload that does not match
//! its checksum fails the read that reaches it, naming its positions. A header damaged inside
//! the last append itself cannot be told from a tear; that append is cut, and kept aside.

//!
//! When a new segment starts, the one before is sealed: its blocks (position, count, offset,
//! payload length) are written beside it in `{first position:020}.blocks`, so opening a long
//! log reads one small file per sealed segment instead of every block header (at a hundred
//! million events, 390,000 headers over 30 GB took half a minute on a cold page cache). A
//! blocks file is trusted only when its checksum holds, it describes the segment's current
//! length, and its blocks follow one another without gaps; otherwise the headers are walked as
//! before (and the file written again). A block's checksum is still checked by every read.

use crate::error::LogError;
use crate::port::Position;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Frames per block: an append is cut into blocks of this many.
pub(crate) const BLOCK_EVENTS: usize = 256;
/// A new segment is started, between appends, once the last one holds this many bytes.
const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 28;
const MAGIC: [u8; 4] = *b"BTNB";
const ENDS_APPEND: u32 = 1;
const BLOCKS_MAGIC: &[u8; 8] = b"BTSEGBL1";
/// Bytes of one block in a `.blocks` file: first position, count, offset, payload length.
const BLOCKS_ENTRY: usize = 24;
/// Blocks looked up per visit of the directory, so a long read does not hold its lock.
const BLOCKS_PER_LOOKUP: usize = 32;

/// Where one block is.
#[derive(Clone, Copy, Debug)]
struct BlockRef {
    first: u64,
    count: u32,
    /// Index into [`Directory::files`].
    file: u32,
    offset: u64,
    payload: u32,
}

impl BlockRef {
    fn end(&self) -> u64 {
        self.first + u64::from(self.count)
    }
}

/// What readers look blocks up in. Blocks are in position order, without gaps.
#[derive(Default)]
struct Directory {
    files: Vec<(PathBuf, Arc<File>)>,
    blocks: Vec<BlockRef>,
}

/// Where the next append goes. Only the appender uses it.
struct Tail {
    /// Bytes in the last segment.
    end: u64,
    /// The position the next frame gets.
    next: u64,
    /// A failed append may have left bytes after `end` that could not be cut off; nothing is
    /// appended until they are.
    dirty: bool,
}

/// The segment files of one log. Appends must come from one caller at a time (the log's
/// writer lock); reads may run alongside and see what the last finished append published.
pub(crate) struct Segments {
    dir: PathBuf,
    /// What opening cut off the last segment, if anything.
    cut: Option<Cut>,
    /// A new segment is started, between appends, once the last one holds this many bytes.
    segment_bytes: u64,
    directory: RwLock<Directory>,
    tail: Mutex<Tail>,
}

/// An append cut off the end of the log when it was opened: a torn one (a crash during its
/// write, never acknowledged), or a damaged one that `baton log repair` was asked to cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub segment: PathBuf,
    /// Where the cut starts in the segment, and how many bytes went.
    pub from_byte: u64,
    pub bytes: u64,
    /// The first position cut (the appends after it, if any, had not been numbered).
    pub from_position: u64,
    /// The file beside the segment holding the bytes cut.
    pub kept_in: PathBuf,
    pub reason: String,
}

fn storage(path: &Path, what: &str, error: impl std::fmt::Display) -> LogError {
    LogError::Storage {
        path: path.display().to_string(),
        message: format!("{what}: {error}"),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("invariant: 4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("invariant: 8 bytes"))
}

/// A block header, parsed but not yet checked against anything.
struct Header {
    magic: [u8; 4],
    first: u64,
    count: u32,
    payload: u32,
    flags: u32,
    crc: u32,
}

impl Header {
    fn parse(bytes: &[u8]) -> Header {
        Header {
            magic: bytes[0..4].try_into().expect("invariant: 4 bytes"),
            first: read_u64(bytes, 4),
            count: read_u32(bytes, 12),
            payload: read_u32(bytes, 16),
            flags: read_u32(bytes, 20),
            crc: read_u32(bytes, 24),
        }
    }
}

/// The checksum of a block: the header's fields after the magic and before the checksum, then
/// the payload.
fn checksum(block: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&block[4..24]);
    hasher.update(&block[HEADER..]);
    hasher.finalize()
}

/// Appends one block of `frames`, the first at position `first`, to `out`.
fn encode_block(out: &mut Vec<u8>, first: u64, frames: &[impl AsRef<[u8]>], flags: u32) {
    let start = out.len();
    let payload: usize = frames.iter().map(|f| f.as_ref().len() + 4).sum();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for frame in frames {
        let frame = frame.as_ref();
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(frame);
    }
    let crc = checksum(&out[start..]);
    out[start + 24..start + 28].copy_from_slice(&crc.to_le_bytes());
}

/// Calls `visit` with each frame of a block's payload and its position, until it returns false.
/// Returns whether every frame was visited.
fn visit_payload(
    block: &BlockRef,
    payload: &[u8],
    from: u64,
    until: u64,
    visit: &mut impl FnMut(Position, &[u8]) -> bool,
) -> Result<bool, LogError> {
    let mut at = 0;
    for index in 0..u64::from(block.count) {
        let position = block.first + index;
        let broken = |what: &str| {
            LogError::CorruptEntry(format!(
                "block at position {}: {what} at position {position}",
                block.first
            ))
        };
        let length = payload
            .get(at..at + 4)
            .map(|bytes| read_u32(bytes, 0) as usize)
            .ok_or_else(|| broken("truncated frame length"))?;
        let frame = payload
            .get(at + 4..at + 4 + length)
            .ok_or_else(|| broken("truncated frame"))?;
        at += 4 + length;
        if position < from {
            continue;
        }
        if position > until || !visit(Position::new(position), frame) {
            return Ok(false);
        }
    }
    if at != payload.len() {
        return Err(LogError::CorruptEntry(format!(
            "block at position {}: trailing bytes after its {} frames",
            block.first, block.count
        )));
    }
    Ok(true)
}

/// A segment file's name for its first position.
fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// The `.blocks` file of a segment.
fn blocks_path(segment: &Path) -> PathBuf {
    segment.with_extension("blocks")
}

/// Writes a sealed segment's blocks beside it (through a temporary file and a rename; not
/// synced: a lost or torn one only means walking the headers again).
fn write_blocks_file(segment: &Path, length: u64, blocks: &[BlockRef]) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(24 + blocks.len() * BLOCKS_ENTRY + 4);
    body.extend_from_slice(BLOCKS_MAGIC);
    body.extend_from_slice(&length.to_le_bytes());
    body.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    for block in blocks {
        body.extend_from_slice(&block.first.to_le_bytes());
        body.extend_from_slice(&block.count.to_le_bytes());
        body.extend_from_slice(&block.offset.to_le_bytes());
        body.extend_from_slice(&block.payload.to_le_bytes());
    }
    let sum = crc32fast::hash(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    let temporary = segment.with_extension("blocks.tmp");
    std::fs::write(&temporary, &body)?;
    std::fs::rename(&temporary, blocks_path(segment))
}

/// A sealed segment's blocks from its `.blocks` file, when that file can be trusted: its
/// checksum holds, it was written for a segment of `length` bytes starting at `first`, and
/// its blocks tile the segment exactly.
fn read_blocks_file(segment: &Path, number: u32, first: u64, length: u64) -> Option<Vec<BlockRef>> {
    let bytes = std::fs::read(blocks_path(segment)).ok()?;
    if bytes.len() < 28 || &bytes[..8] != BLOCKS_MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != sum
        || read_u64(body, 8) != length
        || body.len() != 24 + read_u64(body, 16) as usize * BLOCKS_ENTRY
    {
        return None;
    }
    let mut blocks = Vec::with_capacity((body.len() - 24) / BLOCKS_ENTRY);
    let (mut next, mut offset) = (first, 0u64);
    for entry in body[24..].chunks_exact(BLOCKS_ENTRY) {
        let block = BlockRef {
            first: read_u64(entry, 0),
            count: read_u32(entry, 8),
            file: number,
            offset: read_u64(entry, 12),
            payload: read_u32(entry, 20),
        };
        if block.first != next
            || block.offset != offset
            || block.count == 0
            || block.count as usize > BLOCK_EVENTS
        {
            return None;
        }
        next = block.end();
        offset += HEADER as u64 + u64::from(block.payload);
        blocks.push(block);
    }
    (offset == length && !blocks.is_empty()).then_some(blocks)
}

/// The segments in `dir`, by first position.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| storage(dir, "cannot list segments", e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| storage(dir, "cannot list segments", e))?
            .path();
        if path.extension().is_none_or(|ext| ext != "seg") {
            continue;
        }
        let first = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<u64>().ok())
            .ok_or_else(|| {
                LogError::CorruptEntry(format!(
                    "{}: a segment's name must be its first position",
                    path.display()
                ))
            })?;
        segments.push((first, path));
    }
    segments.sort();
    Ok(segments)
}

/// Syncs a directory, so a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| storage(dir, "cannot sync the directory", e))
}

impl Segments {
    /// Opens the segments in `dir` (created when missing), cutting off a torn last append.
    /// A last append that is whole but does not match its checksums is damage to an
    /// acknowledged append: the open fails naming it, and only [`Segments::repair`] cuts it.
    pub(crate) fn open(dir: &Path) -> Result<Segments, LogError> {
        Self::open_with(dir, SEGMENT_BYTES, Access::Write)
    }

    /// Opens the segments in `dir` to append, cutting off a last append that is torn or
    /// damaged (kept beside the segment); [`Segments::cut`] says what was cut.
    pub(crate) fn repair(dir: &Path) -> Result<Segments, LogError> {
        Self::open_with(dir, SEGMENT_BYTES, Access::Repair)
    }

    /// What opening cut off the end of the log, if anything.
    pub(crate) fn cut(&self) -> Option<&Cut> {
        self.cut.as_ref()
    }

    /// Reads every block and checks it against its checksum; returns the blocks read and
    /// what each damaged one is (its positions, segment and byte).
    pub(crate) fn verify(&self) -> Result<(u64, Vec<String>), LogError> {
        let (files, blocks) = {
            let directory = self
                .directory
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (directory.files.clone(), directory.blocks.clone())
        };
        let mut buffer = Vec::new();
        let mut damaged = Vec::new();
        for block in &blocks {
            let (path, file) = &files[block.file as usize];
            match read_block(file, path, block, &mut buffer) {
                Ok(()) => {}
                Err(LogError::CorruptEntry(what)) => damaged.push(what),
                Err(other) => return Err(other),
            }
        }
        Ok((blocks.len() as u64, damaged))
    }

    /// Opens the segments in `dir` to read, while another process may be appending: nothing
    /// is created, cut or written, and an append that has not finished (or not yet reached
    /// the file whole) is left out. What is read is the log as it stood at this call.
    pub(crate) fn open_to_read(dir: &Path) -> Result<Segments, LogError> {
        if !dir.is_dir() {
            return Err(LogError::Storage {
                path: dir.display().to_string(),
                message: "no embedded log here (no segments directory)".to_owned(),
            });
        }
        Self::open_with(dir, SEGMENT_BYTES, Access::Read)
    }

    fn open_with(dir: &Path, segment_bytes: u64, access: Access) -> Result<Segments, LogError> {
        if access != Access::Read {
            std::fs::create_dir_all(dir).map_err(|e| storage(dir, "cannot create directory", e))?;
        }
        let listed = list_segments(dir)?;
        let mut directory = Directory::default();
        let mut next = 1u64;
        let mut end = 0u64;
        let mut cut = None;
        let last_index = listed.len().saturating_sub(1);
        for (index, (first, path)) in listed.into_iter().enumerate() {
            if first != next {
                return Err(LogError::CorruptEntry(format!(
                    "{}: starts at position {first}, but the segments before it end at {}",
                    path.display(),
                    next - 1
                )));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(access != Access::Read)
                .open(&path)
                .map_err(|e| storage(&path, "cannot open segment", e))?;
            let number = u32::try_from(directory.files.len()).expect("invariant: < 2^32 segments");
            let sealed = index != last_index;
            let from_file = if sealed {
                let length = file
                    .metadata()
                    .map_err(|e| storage(&path, "cannot read segment metadata", e))?
                    .len();
                read_blocks_file(&path, number, first, length).map(|blocks| Scanned {
                    next: blocks.last().map_or(first, BlockRef::end),
                    end: length,
                    blocks,
                    cut: None,
                })
            } else {
                None
            };
            let scanned = match from_file {
                Some(scanned) => scanned,
                None => {
                    let scanned = scan_segment(&file, &path, number, first, !sealed, access)?;
                    if sealed
                        && access != Access::Read
                        && !scanned.blocks.is_empty()
                        && let Err(error) = write_blocks_file(&path, scanned.end, &scanned.blocks)
                    {
                        tracing::warn!(segment = %path.display(), %error, "could not write the segment's blocks file");
                    }
                    scanned
                }
            };
            next = scanned.next;
            end = scanned.end;
            cut = cut.or(scanned.cut);
            directory.blocks.extend(scanned.blocks);
            directory.files.push((path, Arc::new(file)));
        }
        Ok(Segments {
            dir: dir.to_owned(),
            cut,
            segment_bytes,
            directory: RwLock::new(directory),
            tail: Mutex::new(Tail {
                end,
                next,
                dirty: false,
            }),
        })
    }

    /// The position of the last frame, or zero when there is none.
    pub(crate) fn head(&self) -> Position {
        let tail = self
            .tail
            .lock()
            .expect("invariant: the tail lock is never poisoned");
        Position::new(tail.next - 1)
    }

    /// Writes `frames` after the last one, durably, then makes them visible to readers. On an
    /// error nothing is visible and the file is cut back to where it was.
    pub(crate) fn append(&self, frames: &[impl AsRef<[u8]>]) -> Result<(), LogError> {
        if frames.is_empty() {
            return Ok(());
        }
        let mut tail = self
            .tail
            .lock()
            .map_err(|_| storage(&self.dir, "append", "an earlier append panicked"))?;
        if tail.dirty {
            let directory = self.directory.read().expect("invariant: never poisoned");
            if let Some((path, file)) = directory.files.last() {
                file.set_len(tail.end)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| storage(path, "cannot cut off a failed append", e))?;
            }
            tail.dirty = false;
        }
        if tail.end >= self.segment_bytes || self.files() == 0 {
            self.seal_last(tail.end);
            self.start_segment(tail.next)?;
            tail.end = 0;
        }
        let (number, file) = {
            let directory = self.directory.read().expect("invariant: never poisoned");
            let (_, file) = directory
                .files
                .last()
                .expect("invariant: a segment was started");
            (directory.files.len() as u32 - 1, Arc::clone(file))
        };
        let mut bytes = Vec::with_capacity(
            frames.iter().map(|f| f.as_ref().len() + 4).sum::<usize>()
                + HEADER * frames.len().div_ceil(BLOCK_EVENTS),
        );
        for chunk in frames.chunks(BLOCK_EVENTS) {
            let payload: usize = chunk.iter().map(|f| f.as_ref().len() + 4).sum();
            if u32::try_from(payload).is_err() {
                return Err(storage(
                    &self.dir,
                    "append",
                    format!("a block of {payload} bytes does not fit the format (4 GiB at most)"),
                ));
            }
        }
        let mut blocks = Vec::with_capacity(frames.len().div_ceil(BLOCK_EVENTS));
        let mut first = tail.next;
        let chunks = frames.len().div_ceil(BLOCK_EVENTS);
        for (index, chunk) in frames.chunks(BLOCK_EVENTS).enumerate() {
            let offset = bytes.len();
            let flags = if index + 1 == chunks { ENDS_APPEND } else { 0 };
            encode_block(&mut bytes, first, chunk, flags);
            blocks.push(BlockRef {
                first,
                count: chunk.len() as u32,
                file: number,
                offset: tail.end + offset as u64,
                payload: (bytes.len() - offset - HEADER) as u32,
            });
            first += chunk.len() as u64;
        }
        let written = file
            .write_all_at(&bytes, tail.end)
            .and_then(|()| file.sync_data());
        if let Err(error) = written {
            // What part of this append landed must go before anything else is written after
            // it; when it cannot go now, the next append tries again first.
            tail.dirty = file.set_len(tail.end).is_err();
            return Err(self.error_in_last("cannot write an append", error));
        }
        tail.end += bytes.len() as u64;
        tail.next = first;
        self.directory
            .write()
            .expect("invariant: never poisoned")
            .blocks
            .extend(blocks);
        Ok(())
    }

    fn files(&self) -> usize {
        self.directory
            .read()
            .expect("invariant: never poisoned")
            .files
            .len()
    }

    fn error_in_last(&self, what: &str, error: impl std::fmt::Display) -> LogError {
        let directory = self.directory.read().expect("invariant: never poisoned");
        match directory.files.last() {
            Some((path, _)) => storage(path, what, error),
            None => storage(&self.dir, what, error),
        }
    }

    /// Writes the last segment's `.blocks` file, before a new segment starts after it.
    fn seal_last(&self, length: u64) {
        let directory = self.directory.read().expect("invariant: never poisoned");
        let Some(number) = directory.files.len().checked_sub(1) else {
            return;
        };
        let (path, _) = &directory.files[number];
        let start = directory
            .blocks
            .partition_point(|block| (block.file as usize) < number);
        let blocks = &directory.blocks[start..];
        if blocks.is_empty() {
            return;
        }
        if let Err(error) = write_blocks_file(path, length, blocks) {
            tracing::warn!(segment = %path.display(), %error, "could not write the segment's blocks file");
        }
    }

    /// Creates the segment whose first frame will be at `first`, and syncs the directory.
    fn start_segment(&self, first: u64) -> Result<(), LogError> {
        let path = self.dir.join(segment_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| storage(&path, "cannot create segment", e))?;
        sync_dir(&self.dir)?;
        self.directory
            .write()
            .expect("invariant: never poisoned")
            .files
            .push((path, Arc::new(file)));
        Ok(())
    }

    /// Calls `visit` with every frame from `from` to `until` in order, until it returns false.
    pub(crate) fn visit(
        &self,
        from: Position,
        until: Position,
        mut visit: impl FnMut(Position, &[u8]) -> bool,
    ) -> Result<(), LogError> {
        let (from, until) = (from.get().max(1), until.get());
        let mut cursor = from;
        let mut buffer = Vec::new();
        while cursor <= until {
            let batch: Vec<(BlockRef, Arc<File>, PathBuf)> = {
                let directory = self.directory.read().expect("invariant: never poisoned");
                let start = directory.blocks.partition_point(|b| b.end() <= cursor);
                directory.blocks[start..]
                    .iter()
                    .take_while(|b| b.first <= until)
                    .take(BLOCKS_PER_LOOKUP)
                    .map(|b| {
                        let (path, file) = &directory.files[b.file as usize];
                        (*b, Arc::clone(file), path.clone())
                    })
                    .collect()
            };
            let Some((last, _, _)) = batch.last() else {
                return Ok(());
            };
            cursor = last.end();
            for (block, file, path) in batch {
                read_block(&file, &path, &block, &mut buffer)?;
                if !visit_payload(&block, &buffer[HEADER..], from, until, &mut visit)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Reads one block into `buffer` and checks it against its checksum and its place.
fn read_block(
    file: &File,
    path: &Path,
    block: &BlockRef,
    buffer: &mut Vec<u8>,
) -> Result<(), LogError> {
    buffer.clear();
    buffer.resize(HEADER + block.payload as usize, 0);
    file.read_exact_at(buffer, block.offset)
        .map_err(|e| storage(path, &format!("cannot read at byte {}", block.offset), e))?;
    let header = Header::parse(buffer);
    let last = block.end() - 1;
    if header.first != block.first || header.count != block.count || header.crc != checksum(buffer)
    {
        return Err(LogError::CorruptEntry(format!(
            "positions {}..={last} in {} (byte {}): the block does not match its checksum",
            block.first,
            path.display(),
            block.offset
        )));
    }
    Ok(())
}

/// What a walk over one segment's headers found.
struct Scanned {
    blocks: Vec<BlockRef>,
    /// The position after the segment's last frame.
    next: u64,
    /// The segment's length once a torn append is cut off.
    end: u64,
    cut: Option<Cut>,
}

/// Whether segments are opened by the process that appends, or only to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Write,
    /// To append, after cutting off a damaged last append too (`baton log repair`).
    Repair,
    /// Another process may be appending: a torn or unfinished last append is left out, not cut.
    Read,
}

/// Walks a segment's block headers. In the last segment, a torn last append is cut off (left
/// out, when only reading); in any other, a header that does not fit is an error.
fn scan_segment(
    file: &File,
    path: &Path,
    number: u32,
    first: u64,
    last_segment: bool,
    access: Access,
) -> Result<Scanned, LogError> {
    let length = file
        .metadata()
        .map_err(|e| storage(path, "cannot read segment metadata", e))?
        .len();
    let mut blocks: Vec<BlockRef> = Vec::new();
    let mut offset = 0u64;
    let mut next = first;
    // Where the last complete append ends: the blocks before index `complete`, `complete_end`
    // bytes, positions before `complete_next`.
    let (mut complete, mut complete_end, mut complete_next) = (0usize, 0u64, first);
    // Where the append before that one ends, in blocks.
    let mut before_complete = 0usize;
    let mut header = [0u8; HEADER];
    let broken = loop {
        if offset == length {
            break None;
        }
        if length - offset < HEADER as u64 {
            break Some("a truncated block header");
        }
        file.read_exact_at(&mut header, offset)
            .map_err(|e| storage(path, &format!("cannot read at byte {offset}"), e))?;
        let parsed = Header::parse(&header);
        if parsed.magic != MAGIC {
            break Some("no block starts here");
        }
        if parsed.first != next {
            break Some("a block out of place");
        }
        if parsed.count == 0 || parsed.count as usize > BLOCK_EVENTS {
            break Some("a block with an impossible frame count");
        }
        if offset + (HEADER as u64) + u64::from(parsed.payload) > length {
            break Some("a truncated block");
        }
        blocks.push(BlockRef {
            first: next,
            count: parsed.count,
            file: number,
            offset,
            payload: parsed.payload,
        });
        offset += HEADER as u64 + u64::from(parsed.payload);
        next += u64::from(parsed.count);
        if parsed.flags & ENDS_APPEND != 0 {
            before_complete = complete;
            (complete, complete_end, complete_next) = (blocks.len(), offset, next);
        }
    };
    if !last_segment {
        return match broken {
            None if complete == blocks.len() => Ok(Scanned {
                blocks,
                next,
                end: offset,
                cut: None,
            }),
            None => Err(LogError::CorruptEntry(format!(
                "{}: ends inside an append (position {next}), and segments follow it",
                path.display()
            ))),
            Some(what) => Err(LogError::CorruptEntry(format!(
                "{}: {what} at byte {offset} (position {next}), and segments follow it",
                path.display()
            ))),
        };
    }
    // The last segment. A header that does not fit is a torn tail only when no finished
    // append follows it: otherwise it is damage inside acknowledged appends, and cutting there
    // would drop them.
    if let Some(what) = broken
        && finished_append_after(file, path, offset, length)?
    {
        return Err(LogError::CorruptEntry(format!(
            "{}: {what} at byte {offset} (position {next}), and a finished append follows it",
            path.display()
        )));
    }
    // Blocks after the last finished append belong to an append that never finished. The last
    // finished append is checked against its checksums only when it ends the file: a crash may
    // have kept some of its blocks and not others. (When anything follows it, it was synced
    // before that was written, so it was acknowledged, and a mismatch is damage for a read to
    // report.)
    let mut keep = complete;
    let mut damaged = false;
    if broken.is_none() && complete == blocks.len() {
        let mut buffer = Vec::new();
        for block in &blocks[before_complete..complete] {
            match read_block(file, path, block, &mut buffer) {
                Ok(()) => {}
                Err(LogError::CorruptEntry(_)) => {
                    keep = before_complete;
                    damaged = true;
                    break;
                }
                Err(other) => return Err(other),
            }
        }
    }
    let (end, next) = match keep {
        k if k == complete => (complete_end, complete_next),
        0 => (0, first),
        k => (
            blocks[k - 1].offset + HEADER as u64 + u64::from(blocks[k - 1].payload),
            blocks[k - 1].end(),
        ),
    };
    // Every block of the last append is whole and it ends the append, yet its bytes do not
    // match: a crash cuts a write short, it does not change bytes in place. That is damage to
    // an append that was acknowledged, to be named, not dropped as if torn.
    if damaged && access == Access::Write {
        return Err(LogError::CorruptEntry(format!(
            "{}: the last append (positions {next}..={}, bytes {end}..{length}) is whole but does \
             not match its checksums: that is damage to acknowledged events, not a write torn by \
             a crash; `baton log repair` cuts it off (keeping its bytes beside the segment) \
             after which its events may be sent again",
            path.display(),
            complete_next - 1
        )));
    }
    blocks.truncate(keep);
    let mut cut = None;
    if end < length && access != Access::Read {
        let kept = keep_cut_bytes(file, path, end, length)?;
        let reason = match broken {
            Some(what) => format!("a torn append: {what}"),
            None if damaged => {
                "a damaged append: whole, but its blocks do not match their checksums".to_owned()
            }
            None => "a torn append: it did not finish".to_owned(),
        };
        tracing::warn!(
            segment = %path.display(),
            dropped_bytes = length - end,
            %reason,
            kept_in = %kept.display(),
            "cutting off the log's last append"
        );
        file.set_len(end)
            .and_then(|()| file.sync_data())
            .map_err(|e| storage(path, "cannot cut off the last append", e))?;
        cut = Some(Cut {
            segment: path.to_owned(),
            from_byte: end,
            bytes: length - end,
            from_position: next,
            kept_in: kept,
            reason,
        });
    }
    if damaged && access == Access::Read {
        // Left out, not cut: it may be an append being written right now.
        cut = Some(Cut {
            segment: path.to_owned(),
            from_byte: end,
            bytes: length - end,
            from_position: next,
            kept_in: PathBuf::new(),
            reason: format!(
                "left out: the last append (positions {next}..={}) is whole but does not match its \
                 checksums: an append being written right now, or damage (then stop the process \
                 that appends and run `baton log repair`)",
                complete_next - 1
            ),
        });
    }
    Ok(Scanned {
        blocks,
        next,
        end,
        cut,
    })
}

/// Whether, somewhere after byte `from`, a block that ends an append and matches its checksum
/// is followed by more bytes: then what lies at `from` is not the torn tail of the last append.
fn finished_append_after(
    file: &File,
    path: &Path,
    from: u64,
    length: u64,
) -> Result<bool, LogError> {
    let mut bytes = vec![0u8; (length - from) as usize];
    file.read_exact_at(&mut bytes, from)
        .map_err(|e| storage(path, &format!("cannot read at byte {from}"), e))?;
    for at in 1..bytes.len().saturating_sub(HEADER) {
        if bytes[at..at + 4] != MAGIC {
            continue;
        }
        let header = Header::parse(&bytes[at..]);
        let block_end = at + HEADER + header.payload as usize;
        if header.flags & ENDS_APPEND == 0
            || block_end >= bytes.len()
            || header.crc != checksum(&bytes[at..block_end])
        {
            continue;
        }
        return Ok(true);
    }
    Ok(false)
}

/// Copies the bytes about to be cut off a segment into a file beside it (`.seg.cut-{byte}`,
/// which is not a segment), so that a cut made in error can still be undone by hand.
fn keep_cut_bytes(file: &File, path: &Path, from: u64, length: u64) -> Result<PathBuf, LogError> {
    let mut bytes = vec![0u8; (length - from) as usize];
    file.read_exact_at(&mut bytes, from)
        .map_err(|e| storage(path, &format!("cannot read at byte {from}"), e))?;
    let kept = path.with_extension(format!("seg.cut-{from}"));
    std::fs::write(&kept, &bytes)
        .and_then(|()| File::open(&kept)?.sync_all())
        .map_err(|e| storage(&kept, "cannot keep the bytes cut off a torn append", e))?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(from: u64, count: u64) -> Vec<Vec<u8>> {
        (from..from + count)
            .map(|n| {
                format!("frame {n}")
                    .repeat(1 + (n % 7) as usize)
                    .into_bytes()
            })
            .collect()
    }

    fn read(segments: &Segments, from: u64, until: u64) -> Vec<(u64, Vec<u8>)> {
        let mut read = Vec::new();
        segments
            .visit(
                Position::new(from),
                Position::new(until),
                |position, frame| {
                    read.push((position.get(), frame.to_vec()));
                    true
                },
            )
            .expect("visit");
        read
    }

    #[test]
    fn appends_roll_into_new_segments_and_read_back_from_any_position() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("segments");
        let mut next = 1;
        {
            let segments = Segments::open_with(&path, 4096, Access::Write).expect("open");
            for count in [1, 255, 256, 257, 600, 3, 1000] {
                segments.append(&frames(next, count)).expect("append");
                next += count;
            }
            assert_eq!(segments.head().get(), next - 1);
        }
        let files = list_segments(&path).expect("list");
        assert!(files.len() > 3, "rolled into {} segments", files.len());
        assert_eq!(files[0].0, 1);
        let segments = Segments::open_with(&path, 4096, Access::Write).expect("reopen");
        assert_eq!(segments.head().get(), next - 1);
        let whole = read(&segments, 1, next - 1);
        let expected: Vec<_> = (1..next).zip(frames(1, next - 1)).collect();
        assert_eq!(whole, expected);
        for (from, until) in [
            (1, 1),
            (256, 258),
            (511, 1400),
            (next - 2, next + 5),
            (7, 3),
        ] {
            let part = read(&segments, from, until);
            let expected: Vec<_> = expected
                .iter()
                .filter(|(position, _)| (from..=until).contains(position))
                .cloned()
                .collect();
            assert_eq!(part, expected, "{from}..={until}");
        }
        segments
            .append(&frames(next, 10))
            .expect("append after reopen");
        assert_eq!(
            read(&segments, next, next + 9),
            (next..next + 10).zip(frames(next, 10)).collect::<Vec<_>>()
        );
    }

    /// Sealed segments open from their `.blocks` files; a damaged, stale or missing one is
    /// walked instead (and written again), and the log reads back the same either way.
    #[test]
    fn sealed_segments_open_from_their_blocks_files_and_distrust_a_bad_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("segments");
        let mut next = 1;
        {
            let segments = Segments::open_with(&path, 4096, Access::Write).expect("open");
            for count in [300, 7, 520, 1, 900, 256] {
                segments.append(&frames(next, count)).expect("append");
                next += count;
            }
        }
        let listed = list_segments(&path).expect("list");
        let sealed = &listed[..listed.len() - 1];
        assert!(sealed.len() > 2, "{} segments", listed.len());
        for (_, segment) in sealed {
            assert!(blocks_path(segment).is_file(), "{}", segment.display());
        }
        assert!(!blocks_path(&listed.last().expect("last").1).exists());
        let expected: Vec<_> = (1..next).zip(frames(1, next - 1)).collect();
        let reopened = |access| {
            let segments = Segments::open_with(&path, 4096, access).expect("reopen");
            assert_eq!(segments.head().get(), next - 1);
            assert_eq!(read(&segments, 1, next - 1), expected);
        };
        reopened(Access::Write);

        // A flipped byte, a file for another length, and a missing one.
        let damaged = blocks_path(&sealed[0].1);
        let mut bytes = std::fs::read(&damaged).expect("blocks");
        bytes[30] ^= 1;
        std::fs::write(&damaged, &bytes).expect("damage");
        let (number, first) = (1, sealed[1].0);
        let length = std::fs::metadata(&sealed[1].1).expect("segment").len();
        let blocks = read_blocks_file(&sealed[1].1, number, first, length).expect("trusted");
        write_blocks_file(&sealed[1].1, length + 28, &blocks).expect("stale");
        assert!(read_blocks_file(&sealed[1].1, number, first, length).is_none());
        assert!(read_blocks_file(&sealed[0].1, 0, 1, length).is_none());
        std::fs::remove_file(blocks_path(&sealed[2].1)).expect("remove");
        reopened(Access::Read);
        reopened(Access::Write);
        // The open to append wrote them again.
        for (_, segment) in sealed {
            let length = std::fs::metadata(segment).expect("segment").len();
            assert!(
                read_blocks_file(
                    segment,
                    0,
                    listed.iter().find(|(_, p)| p == segment).expect("listed").0,
                    length
                )
                .is_some(),
                "{}",
                segment.display()
            );
        }
        // What the open used was the blocks file: a header a walk would refuse (its magic,
        // which no checksum covers) does not stop it, and the frames read back whole.
        let mut segment = std::fs::read(&sealed[1].1).expect("segment");
        segment[0] ^= 0xff;
        std::fs::write(&sealed[1].1, &segment).expect("damage the magic");
        reopened(Access::Write);
        std::fs::remove_file(blocks_path(&sealed[1].1)).expect("remove");
        assert!(
            Segments::open_with(&path, 4096, Access::Write).is_err(),
            "a walk refuses it"
        );
    }

    /// A reader beside the appender sees the log as it stood when it opened, leaves out an
    /// append that has not reached the file whole, and changes nothing on disk.
    #[test]
    fn a_reader_leaves_an_unfinished_append_out_and_cuts_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("segments");
        let writer = Segments::open_with(&path, 1 << 20, Access::Write).expect("open");
        writer.append(&frames(1, 300)).expect("append");
        writer.append(&frames(301, 5)).expect("append");
        let files = list_segments(&path).expect("list");
        let last = &files.last().expect("a segment").1;
        let before = std::fs::metadata(last).expect("metadata").len();
        writer.append(&frames(306, 400)).expect("append");
        drop(writer);
        // Half of the third append's bytes, as a reader may find them while it is written.
        let after = std::fs::metadata(last).expect("metadata").len();
        let length = before + (after - before) / 2;
        OpenOptions::new()
            .write(true)
            .open(last)
            .and_then(|file| file.set_len(length))
            .expect("tear");

        let reader = Segments::open_to_read(&path).expect("open to read");
        assert_eq!(reader.head().get(), 305);
        let read_back = read(&reader, 1, 400);
        assert_eq!(read_back, (1..=305).zip(frames(1, 305)).collect::<Vec<_>>());
        assert_eq!(
            std::fs::metadata(last).expect("metadata").len(),
            length,
            "the reader cut nothing"
        );
        assert!(
            std::fs::read_dir(&path).expect("list").all(|entry| !entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .contains("cut")),
            "the reader kept nothing aside"
        );
        let error = Segments::open_to_read(&dir.path().join("elsewhere"))
            .err()
            .expect("no log there");
        assert!(
            error.to_string().contains("no embedded log here"),
            "{error}"
        );
    }

    #[test]
    fn a_gap_between_segments_fails_the_open_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("segments");
        {
            let segments = Segments::open_with(&path, 1024, Access::Write).expect("open");
            for start in [1, 101, 201] {
                segments.append(&frames(start, 100)).expect("append");
            }
        }
        let files = list_segments(&path).expect("list");
        assert_eq!(files.len(), 3);
        std::fs::remove_file(&files[1].1).expect("lose the middle segment");
        let error = Segments::open_with(&path, 1024, Access::Write)
            .err()
            .expect("the gap is an error");
        let text = error.to_string();
        assert!(
            text.contains("00000000000000000201.seg") && text.contains("end at 100"),
            "{text}"
        );
    }
}
