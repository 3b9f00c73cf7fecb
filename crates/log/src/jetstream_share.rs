//! A JetStream writer's id index shared through the server, so that a writer on another machine
//! (or with an empty directory) starts from it instead of reading every id on the stream.
//!
//! Beside the event stream `S`, a stream `S_IDS` holds, under `{prefix}-ids.S.`:
//! - `run.{token}.{seq}`: a run file of the index ([`crate::id_store`]), in parts of
//!   [`PART`] bytes; `token` names the writer process that uploaded it, so two writers' runs
//!   never mix, and a run (immutable) is uploaded once;
//! - `index`: the last shared index, one message kept by rollup: the uploading writer's
//!   manifest (how far its runs reach, the id at that sequence, the runs) and each run's
//!   length, parts and checksum.
//!
//! A writer shares when its runs reach [`JetStreamConfig::share_ids_every`] events (or a
//! sixteenth of the history, whichever is more) beyond the last shared index, in the
//! background, from hard links of its runs (the merger may replace them meanwhile). It then
//! purges what the index no longer names: its own older runs, and the runs of the index it
//! replaced. A writer with nothing usable on its machine downloads the shared index, checks it
//! against the stream as it checks its own (the message at the manifest's sequence carries the
//! id it recorded) and every run against its length and checksum, and reads only the headers
//! after it. Anything missing or wrong costs a read of every id, never a duplicate.
//!
//! [`JetStreamConfig::share_ids_every`]: crate::JetStreamConfig

use crate::id_store::{Manifest, parse_manifest, run_name};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes of a run in one message (the server's default limit is 1 MiB).
pub(crate) const PART: usize = 256 * 1024;
/// Parts published before their acks are awaited.
const IN_FLIGHT: usize = 16;
/// A download waits this long for a part before giving up.
const STALL: Duration = Duration::from_secs(10);
const MAGIC: &[u8; 8] = b"BATONSI1";
/// The directory of a slot where the runs being shared are linked.
const PINNED: &str = "sharing";

/// The side stream and its subjects for one event stream.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) stream: String,
    root: String,
}

impl Names {
    pub(crate) fn new(stream: &str, prefix: &str) -> Names {
        Names {
            stream: format!("{stream}_IDS"),
            root: format!("{prefix}-ids.{stream}"),
        }
    }

    fn index(&self) -> String {
        format!("{}.index", self.root)
    }

    fn run(&self, token: &str, seq: u64) -> String {
        format!("{}.run.{token}.{seq}", self.root)
    }

    fn runs_of(&self, token: &str) -> String {
        format!("{}.run.{token}.>", self.root)
    }
}

/// A run as shared: its length, parts and checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SharedRun {
    seq: u64,
    bytes: u64,
    parts: u32,
    crc: u32,
}

/// The shared index: whose runs, the manifest and the runs' lengths and checksums.
pub(crate) struct Published {
    token: String,
    manifest_bytes: Vec<u8>,
    pub(crate) manifest: Manifest,
    runs: Vec<SharedRun>,
}

impl Published {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.manifest_bytes.len() + self.runs.len() * 24);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.token.len() as u32).to_le_bytes());
        out.extend_from_slice(self.token.as_bytes());
        out.extend_from_slice(&(self.manifest_bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.manifest_bytes);
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for run in &self.runs {
            out.extend_from_slice(&run.seq.to_le_bytes());
            out.extend_from_slice(&run.bytes.to_le_bytes());
            out.extend_from_slice(&run.parts.to_le_bytes());
            out.extend_from_slice(&run.crc.to_le_bytes());
        }
        let sum = crc32fast::hash(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Published, String> {
        let fail = |what: &str| format!("the shared id index is unreadable: {what}");
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(fail("not a shared index"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != sum {
            return Err(fail("it fails its checksum"));
        }
        let mut at = MAGIC.len();
        let mut take = |n: usize| -> Result<&[u8], String> {
            let slice = body
                .get(at..at + n)
                .ok_or_else(|| fail("it is cut short"))?;
            at += n;
            Ok(slice)
        };
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let token_len = u32_of(take(4)?) as usize;
        let token = String::from_utf8(take(token_len)?.to_vec()).map_err(|_| fail("its token"))?;
        let manifest_len = u32_of(take(4)?) as usize;
        let manifest_bytes = take(manifest_len)?.to_vec();
        let count = u32_of(take(4)?) as usize;
        let mut runs = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            runs.push(SharedRun {
                seq: u64_of(take(8)?),
                bytes: u64_of(take(8)?),
                parts: u32_of(take(4)?),
                crc: u32_of(take(4)?),
            });
        }
        let manifest = parse_manifest(&manifest_bytes, "the shared manifest")?;
        let named: Vec<u64> = manifest.run_seqs().collect();
        if named != runs.iter().map(|run| run.seq).collect::<Vec<_>>() {
            return Err(fail("its runs are not the ones its manifest names"));
        }
        Ok(Published {
            token,
            manifest_bytes,
            manifest,
            runs,
        })
    }
}

/// A writer's part in sharing: when it last saw the index shared, whether it is uploading,
/// and the runs it uploaded (by sequence), so they are not uploaded again.
pub(crate) struct Sharer {
    pub(crate) names: Names,
    every: u64,
    token: String,
    busy: AtomicBool,
    shared: AtomicU64,
    uploaded: std::sync::Mutex<HashMap<u64, SharedRun>>,
}

impl Sharer {
    pub(crate) fn new(names: Names, every: u64) -> Sharer {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!("{}-{nanos}-{}", std::process::id(), names.root);
        let token = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes())
            .simple()
            .to_string();
        Sharer {
            names,
            every: every.max(1),
            token,
            busy: AtomicBool::new(false),
            shared: AtomicU64::new(0),
            uploaded: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Remembers how far the shared index reaches.
    pub(crate) fn saw_shared(&self, covered: u64) {
        self.shared.fetch_max(covered, Ordering::Relaxed);
    }

    /// Whether runs reaching `runs_cover` are worth sharing now; when they are, marks the sharer
    /// busy (the caller then runs [`share`] and [`Sharer::done`]).
    pub(crate) fn due(&self, runs_cover: u64) -> bool {
        self.worth(runs_cover)
            && self
                .busy
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether runs reaching `runs_cover` go far enough beyond the shared index.
    pub(crate) fn worth(&self, runs_cover: u64) -> bool {
        let shared = self.shared.load(Ordering::Relaxed);
        let gap = self.every.max(shared / 16);
        runs_cover >= shared.saturating_add(gap)
    }

    pub(crate) fn done(&self) {
        self.busy.store(false, Ordering::Release);
    }

    /// Events a writer may read from the stream rather than download a shared index that
    /// reaches further than its own: what a share leaves unshared at most.
    pub(crate) fn worth_downloading(&self, own: u64, shared: u64) -> bool {
        shared > own.saturating_add(4 * self.every.max(own / 16))
    }
}

/// The side stream, created when missing: file storage, purges allowed (what an index no
/// longer names is purged), rollup for the index message.
async fn side_stream(
    js: &jetstream::Context,
    names: &Names,
    replicas: usize,
) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: names.stream.clone(),
        subjects: vec![format!("{}.>", names.root)],
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        ..Default::default()
    })
    .await
    .map_err(|error| format!("the stream {}: {error}", names.stream))
}

/// The shared index, if there is one.
pub(crate) async fn latest(
    js: &jetstream::Context,
    names: &Names,
) -> Result<Option<Published>, String> {
    let stream = match js.get_stream_no_info(&names.stream).await {
        Ok(stream) => stream,
        Err(error) => return Err(format!("the stream {}: {error}", names.stream)),
    };
    match stream.get_last_raw_message_by_subject(&names.index()).await {
        Ok(message) => Published::decode(&message.payload).map(Some),
        Err(error)
            if matches!(
                error.kind(),
                stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Ok(None)
        }
        Err(error) => {
            // A missing stream answers "stream not found": nothing shared yet.
            let text = error.to_string();
            if text.contains("not found") {
                Ok(None)
            } else {
                Err(format!("reading the shared id index: {text}"))
            }
        }
    }
}

/// Downloads `published` into `slot`: its runs, each checked against its length and checksum,
/// then its manifest, last (a slot without a manifest holds nothing). What `slot` held is
/// removed first.
pub(crate) async fn download(
    js: &jetstream::Context,
    names: &Names,
    published: &Published,
    slot: &Path,
) -> Result<(), String> {
    clear(slot).await?;
    let result = download_runs(js, names, published, slot).await;
    if result.is_err() {
        let _ = clear(slot).await;
        return result;
    }
    let fetched = slot.join("manifest.fetched");
    let io = |error: std::io::Error| format!("writing the shared manifest: {error}");
    tokio::fs::write(&fetched, &published.manifest_bytes)
        .await
        .map_err(io)?;
    tokio::fs::rename(&fetched, slot.join("manifest"))
        .await
        .map_err(io)?;
    Ok(())
}

async fn download_runs(
    js: &jetstream::Context,
    names: &Names,
    published: &Published,
    slot: &Path,
) -> Result<(), String> {
    let stream = js
        .get_stream_no_info(&names.stream)
        .await
        .map_err(|error| format!("the stream {}: {error}", names.stream))?;
    // Every run there in full, before reading any.
    let present = messages_by_subject(&stream, names.runs_of(&published.token)).await?;
    for run in &published.runs {
        let subject = names.run(&published.token, run.seq);
        let count = present.get(&subject).copied().unwrap_or(0);
        if count != run.parts as usize {
            return Err(format!(
                "{subject} holds {count} parts where the index names {}",
                run.parts
            ));
        }
    }
    for run in &published.runs {
        let subject = names.run(&published.token, run.seq);
        let mut messages = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|error| format!("reading {subject}: {error}"))?
            .messages()
            .await
            .map_err(|error| format!("reading {subject}: {error}"))?;
        let name = run_name(run.seq);
        let partial = slot.join(format!("{name}.part"));
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|error| format!("writing {name}: {error}"))?;
        let mut crc = crc32fast::Hasher::new();
        let mut bytes = 0u64;
        for part in 0..run.parts {
            let message = tokio::time::timeout(STALL, messages.next())
                .await
                .map_err(|_| format!("part {part} of {subject} did not come"))?
                .ok_or_else(|| format!("{subject} ended at part {part}"))?
                .map_err(|error| format!("reading {subject}: {error}"))?;
            crc.update(&message.payload);
            bytes += message.payload.len() as u64;
            file.write_all(&message.payload)
                .await
                .map_err(|error| format!("writing {name}: {error}"))?;
        }
        if bytes != run.bytes || crc.finalize() != run.crc {
            return Err(format!(
                "{subject} is not the run the index names ({bytes} bytes against {})",
                run.bytes
            ));
        }
        file.sync_all()
            .await
            .map_err(|error| format!("writing {name}: {error}"))?;
        drop(file);
        tokio::fs::rename(&partial, slot.join(&name))
            .await
            .map_err(|error| format!("writing {name}: {error}"))?;
    }
    Ok(())
}

/// Removes a slot's runs and manifests.
async fn clear(slot: &Path) -> Result<(), String> {
    let slot = slot.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for entry in std::fs::read_dir(&slot)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("run-") || name.starts_with("manifest") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| format!("clearing {}: {error}", "the id index slot"))
}

/// Shares the index in `slot`: links its manifest's runs (so a merge cannot take them away
/// meanwhile), uploads those not uploaded yet, publishes the index, then purges what no index
/// names. Returns how far the shared index reaches, or `None` when there was nothing to do
/// (another writer's shared index reaches as far, or the runs changed while being linked).
pub(crate) async fn share(
    js: &jetstream::Context,
    sharer: &Sharer,
    slot: &Path,
    replicas: usize,
) -> Result<Option<u64>, String> {
    let pinned = slot.join(PINNED);
    let result = share_pinned(js, sharer, slot, &pinned, replicas).await;
    let _ = tokio::fs::remove_dir_all(&pinned).await;
    result
}

async fn share_pinned(
    js: &jetstream::Context,
    sharer: &Sharer,
    slot: &Path,
    pinned: &Path,
    replicas: usize,
) -> Result<Option<u64>, String> {
    let io = |error: std::io::Error| format!("linking the runs to share: {error}");
    let _ = tokio::fs::remove_dir_all(pinned).await;
    tokio::fs::create_dir_all(pinned).await.map_err(io)?;
    let manifest_bytes = match tokio::fs::read(slot.join("manifest")).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io(error)),
    };
    let manifest = parse_manifest(&manifest_bytes, "the manifest to share")?;
    for name in manifest.run_files() {
        match tokio::fs::hard_link(slot.join(&name), pinned.join(&name)).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io(error)),
        }
    }
    let names = &sharer.names;
    let stream = side_stream(js, names, replicas).await?;
    let previous = latest(js, names).await?;
    if let Some(previous) = &previous {
        sharer.saw_shared(previous.manifest.covered);
        if previous.manifest.covered >= manifest.covered {
            return Ok(None);
        }
    }
    // What this writer has up already, by subject and message count.
    let present = messages_by_subject(&stream, names.runs_of(&sharer.token)).await?;
    let mut runs = Vec::new();
    for seq in manifest.run_seqs() {
        let subject = names.run(&sharer.token, seq);
        let known = sharer
            .uploaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&seq)
            .copied();
        let run = match known {
            Some(run) if present.get(&subject) == Some(&(run.parts as usize)) => run,
            _ => {
                if present.contains_key(&subject) {
                    purge(&stream, &subject).await?;
                }
                let run = upload(js, &subject, &pinned.join(run_name(seq)), seq).await?;
                sharer
                    .uploaded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(seq, run);
                run
            }
        };
        runs.push(run);
    }
    let covered = manifest.covered;
    let published = Published {
        token: sharer.token.clone(),
        manifest_bytes,
        manifest,
        runs,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_ROLLUP, "sub");
    js.publish_with_headers(names.index(), headers, Bytes::from(published.encode()))
        .await
        .map_err(|error| format!("publishing the shared id index: {error}"))?
        .await
        .map_err(|error| format!("publishing the shared id index: {error}"))?;
    sharer.saw_shared(covered);
    // What no index names any more: this writer's older runs, and the replaced index's.
    let named: std::collections::HashSet<u64> = published.manifest.run_seqs().collect();
    let mut stale: Vec<String> = present
        .keys()
        .filter(|subject| {
            subject
                .rsplit('.')
                .next()
                .and_then(|seq| seq.parse::<u64>().ok())
                .is_none_or(|seq| !named.contains(&seq))
        })
        .cloned()
        .collect();
    if let Some(previous) = previous.filter(|previous| previous.token != sharer.token) {
        stale.extend(
            previous
                .runs
                .iter()
                .map(|run| names.run(&previous.token, run.seq)),
        );
    }
    {
        let mut uploaded = sharer
            .uploaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        uploaded.retain(|seq, _| named.contains(seq));
    }
    for subject in stale {
        purge(&stream, &subject).await?;
    }
    Ok(Some(covered))
}

async fn purge(stream: &stream::Stream, subject: &str) -> Result<(), String> {
    stream
        .purge()
        .filter(subject)
        .await
        .map(|_| ())
        .map_err(|error| format!("purging {subject}: {error}"))
}

/// Publishes a run's file in parts, [`IN_FLIGHT`] awaiting their acks at once.
async fn upload(
    js: &jetstream::Context,
    subject: &str,
    path: &Path,
    seq: u64,
) -> Result<SharedRun, String> {
    let fail = |error: String| format!("sharing {}: {error}", path.display());
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|error| fail(error.to_string()))?;
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    let mut parts = 0u32;
    let mut acks = std::collections::VecDeque::new();
    loop {
        let mut buffer = vec![0u8; PART];
        let mut filled = 0;
        while filled < PART {
            let read = file
                .read(&mut buffer[filled..])
                .await
                .map_err(|error| fail(error.to_string()))?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        if filled == 0 {
            break;
        }
        buffer.truncate(filled);
        crc.update(&buffer);
        bytes += filled as u64;
        parts += 1;
        let ack = js
            .publish(subject.to_owned(), Bytes::from(buffer))
            .await
            .map_err(|error| fail(error.to_string()))?;
        acks.push_back(ack);
        if acks.len() >= IN_FLIGHT
            && let Some(ack) = acks.pop_front()
        {
            ack.await.map_err(|error| fail(error.to_string()))?;
        }
        if filled < PART {
            break;
        }
    }
    for ack in acks {
        ack.await.map_err(|error| fail(error.to_string()))?;
    }
    Ok(SharedRun {
        seq,
        bytes,
        parts,
        crc: crc.finalize(),
    })
}

/// The side stream's subjects matching `filter`, each with its count of messages.
async fn messages_by_subject<I>(
    stream: &async_nats::jetstream::stream::Stream<I>,
    filter: String,
) -> Result<HashMap<String, usize>, String> {
    let mut present = HashMap::new();
    let mut listed = stream
        .info_with_subjects(filter)
        .await
        .map_err(|error| format!("listing the shared runs: {error}"))?;
    while let Some(entry) = listed.next().await {
        let (subject, count) =
            entry.map_err(|error| format!("listing the shared runs: {error}"))?;
        present.insert(subject, count);
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_index_reads_back_and_a_damaged_one_is_refused() {
        // A manifest as the store writes it: magic, covered, anchor, next run, runs.
        let mut body = Vec::new();
        body.extend_from_slice(b"BTIDMAN1");
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&9u128.to_le_bytes());
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(&2u64.to_le_bytes());
        for (seq, ids) in [(1u64, 4u64), (2, 3)] {
            body.extend_from_slice(&seq.to_le_bytes());
            body.extend_from_slice(&ids.to_le_bytes());
        }
        let sum = crc32fast::hash(&body);
        body.extend_from_slice(&sum.to_le_bytes());
        let manifest = parse_manifest(&body, "test").expect("a manifest");
        let runs = vec![
            SharedRun {
                seq: 1,
                bytes: 100,
                parts: 1,
                crc: 5,
            },
            SharedRun {
                seq: 2,
                bytes: 300_000,
                parts: 2,
                crc: 6,
            },
        ];
        let published = Published {
            token: "abc".into(),
            manifest_bytes: body.clone(),
            manifest,
            runs: runs.clone(),
        };
        let encoded = published.encode();
        let back = Published::decode(&encoded).expect("reads back");
        assert_eq!(back.token, "abc");
        assert_eq!(back.runs, runs);
        assert_eq!(back.manifest.covered, 7);
        assert_eq!(back.manifest.anchor, 9);
        for at in [3, 20, encoded.len() - 2] {
            let mut damaged = encoded.clone();
            damaged[at] ^= 1;
            assert!(Published::decode(&damaged).is_err(), "byte {at}");
        }
        assert!(Published::decode(&encoded[..encoded.len() - 5]).is_err());
        // Runs that are not the manifest's.
        let other = Published {
            runs: runs[..1].to_vec(),
            manifest: parse_manifest(&body, "test").expect("a manifest"),
            ..published
        };
        assert!(Published::decode(&other.encode()).is_err());
    }
}
