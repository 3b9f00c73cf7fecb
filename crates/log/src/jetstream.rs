//! The JetStream log: one NATS JetStream stream, file storage, no limits, in production
//! clustered with replicas.
//!
//! Subjects are `{prefix}.{family}.{kind}` (47 subjects at most): low cardinality, so a
//! consumer that filters by family stays cheap. Each message carries the codec frame (which
//! holds the schema version) as its payload and the event id as `Nats-Msg-Id`, its only header.
//!
//! Publishing is pipelined: every event is a core publish whose reply subject is
//! `{inbox}.{n}`, with one subscription on `{inbox}.*` per publishing call (an append's
//! publishing, then each retry) taking the stream's acks, matched to their messages by `n` in a
//! window of at most `max_acks_in_flight` unanswered publishes. Tokens `n` are never reused on
//! a log handle, so a finished call's subscription is kept and taken over by the next call
//! instead of subscribing anew for every batch. An error answer, or none within the stall
//! limit or by the pass's cutoff, makes a message failed; it is published again with the same
//! `Nats-Msg-Id`, so one that did land comes back as a duplicate of itself. async-nats'
//! JetStream publish does the same matching with an inbox, a oneshot channel, a request-map
//! entry and a timer per message; here the window is the map and one timer bounds the pass.
//!
//! Idempotency never expires, in two layers:
//! 1. an index of every event id on the stream (id → stream sequence), kept by each writer and
//!    caught up from the stream (a headers-only ordered consumer) before every batch, so any id
//!    written before the batch started is found, however old;
//! 2. `Nats-Msg-Id`, which the server de-duplicates within the stream's duplicate window, and
//!    so covers what another writer appends while this batch is in flight.
//!
//! The guarantee holds while one batch takes less than the duplicate window (2 minutes by
//! default); a batch is also retried only within half that window.
//!
//! Batches are pipelined too: a batch hands the publishing turn on as soon as its last message
//! is handed to the client, so the next batch publishes while this one's last acks arrive.
//! The next batch shares the pass of the
//! batch before it while that pass is young; it holds back an id the batch before is still
//! publishing until that batch has settled into the index; and batches settle in the order
//! they were published. A batch that starts with nothing in flight makes its own pass.

use crate::error::LogError;
use crate::id_index::{IdHasher, IdIndex};
use crate::jetstream_ids::{DiskIds, WriterIds};
use crate::port::{AppendOutcome, EventLog, LogStat, Position, Record, RecordStream};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use baton_core::Event;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

/// How long a JetStream read or publish may wait without progress before the append gives up
/// (the client waits for a lost server to come back; an append should fail and be retried).
const STALL: Duration = Duration::from_secs(10);
/// Events between two shares of a writer's id index (see [`JetStreamConfig::share_ids_every`]).
pub const DEFAULT_SHARE_IDS_EVERY: u64 = 1_000_000;

/// How long the publishing connection may be lost before appends fail at once instead of
/// waiting for it: longer than a server restart takes.
const DISCONNECTED_GRACE: Duration = Duration::from_secs(3);

/// Options for [`JetStreamLog::connect`].
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// `nats://host:port`, or several separated by commas.
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    /// The server's duplicate window for `Nats-Msg-Id` (created streams only).
    pub duplicate_window: Duration,
    /// Publishes awaiting their ack at once.
    pub max_acks_in_flight: usize,
    /// Stream replicas when the stream is created (3 on a three-node cluster).
    pub replicas: usize,
    /// A `.creds` file for NATS authentication.
    pub credentials_file: Option<PathBuf>,
    /// A CA certificate to verify the server's TLS certificate; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Where this writer keeps its index of the stream's event ids on disk (about two bytes an
    /// event in memory, kept across restarts); `None` keeps the whole index in memory (about
    /// 32-64 bytes an event) and reads every id on the stream at the first append.
    pub ids_dir: Option<PathBuf>,
    /// Ids kept in memory before they are written to the index on disk.
    pub recent_ids: usize,
    /// With the index on disk: share it through the server (stream `{stream}_IDS`) whenever
    /// its runs reach this many events (or a sixteenth of the history, whichever is more)
    /// beyond the index shared last, so a writer on another machine downloads it instead of
    /// reading every id on the stream; `None` neither shares nor downloads.
    pub share_ids_every: Option<u64>,
}

impl JetStreamConfig {
    pub fn new(url: impl Into<String>) -> Self {
        JetStreamConfig {
            url: url.into(),
            stream: "BATON".into(),
            subject_prefix: "baton".into(),
            duplicate_window: Duration::from_secs(120),
            max_acks_in_flight: 1024,
            replicas: 1,
            credentials_file: None,
            tls_ca_file: None,
            ids_dir: None,
            recent_ids: crate::id_store::DEFAULT_RECENT_IDS,
            share_ids_every: Some(DEFAULT_SHARE_IDS_EVERY),
        }
    }
}

/// The JetStream-backed [`EventLog`]. Cheap to clone; clones share connections and the index.
#[derive(Clone)]
pub struct JetStreamLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("url", &self.inner.config.url)
            .field("stream", &self.inner.config.stream)
            .finish()
    }
}

struct Inner {
    /// Since when the publishing connection has been lost, while it is.
    disconnected: DisconnectedSince,
    config: JetStreamConfig,
    /// `{prefix}.{family}.{kind}` for every kind, indexed like `Kind::ALL`.
    subjects: Vec<async_nats::Subject>,
    /// Publishing connection: events go out as core publishes whose acks baton matches itself
    /// (see `publish_window`).
    publisher: async_nats::Client,
    /// The publishing connection as a JetStream context, for managing the stream.
    writer: jetstream::Context,
    /// Reading connection, separate so that a publish backlog cannot starve readers.
    reader: jetstream::Context,
    /// Taken once a batch is encoded, in the order appends were first polled, and held
    /// through its pass and de-duplication until its last message is handed to the client:
    /// batches are published one after another.
    turn: Mutex<Turn>,
    /// Every event id on the stream up to its `covered` sequence, and what settled batches
    /// stored.
    index: Mutex<WriterIds>,
    /// Shares the index on disk through the server, and downloads another writer's.
    sharer: Option<Arc<crate::jetstream_share::Sharer>>,
    /// Ids read from the stream's headers into the index, since connecting.
    ids_read: std::sync::atomic::AtomicU64,
    /// Batches handed to the client whose outcomes are not in the index yet.
    unsettled: std::sync::Mutex<Unsettled>,
    /// Woken whenever a batch settles.
    settled: tokio::sync::Notify,
    /// Batches settle into the index in the order they were published.
    settle: Mutex<()>,
    /// Publishes awaiting their ack, across every batch in flight (`max_acks_in_flight`).
    ack_budget: tokio::sync::Semaphore,
    /// Ack subscriptions (`{inbox}.*`) of finished publishing calls, for the next ones.
    ack_subscriptions: std::sync::Mutex<Vec<(String, async_nats::Subscriber)>>,
    /// The next ack token: tokens are never reused on one log handle.
    next_token: std::sync::atomic::AtomicU64,
    /// The stream's duplicate window as the server has it, in milliseconds (an existing stream
    /// keeps its own, whatever the config asks for).
    server_window_millis: std::sync::atomic::AtomicU64,
}

/// When the connection was last lost, while it is; `None` while connected.
type DisconnectedSince = Arc<std::sync::Mutex<Option<std::time::Instant>>>;

async fn connect_client(
    config: &JetStreamConfig,
    role: &str,
    disconnected: Option<DisconnectedSince>,
) -> Result<async_nats::Client, LogError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("baton-{role}"))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(disconnected) = disconnected {
        options = options.event_callback(move |event| {
            let disconnected = disconnected.clone();
            async move {
                let mut since = disconnected
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match event {
                    async_nats::Event::Disconnected => {
                        since.get_or_insert_with(std::time::Instant::now);
                    }
                    async_nats::Event::Connected => *since = None,
                    _ => {}
                }
            }
        });
    }
    if let Some(path) = &config.credentials_file {
        options = options.credentials_file(path).await.map_err(|error| {
            LogError::NatsSettings(format!("credentials file {}: {error}", path.display()))
        })?;
    }
    if let Some(path) = &config.tls_ca_file {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    let servers = config
        .url
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            LogError::NatsSettings(format!("invalid NATS URL {:?}: {error}", config.url))
        })?;
    options
        .connect(servers.as_slice())
        .await
        .map_err(|error| LogError::nats(&format!("cannot connect to {}", config.url), error))
}

impl JetStreamLog {
    /// Connects (one connection to write, one to read) and creates the stream, or checks
    /// that an existing one keeps every event.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, LogError> {
        let disconnected = DisconnectedSince::default();
        let writer_client = connect_client(&config, "writer", Some(disconnected.clone())).await?;
        let reader_client = connect_client(&config, "reader", None).await?;
        let writer = jetstream::context::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(writer_client.clone());
        let reader = jetstream::new(reader_client);
        let subjects = baton_core::Kind::ALL
            .iter()
            .map(|kind| {
                async_nats::Subject::from(format!(
                    "{}.{}.{}",
                    config.subject_prefix,
                    kind.family().as_str(),
                    kind.name()
                ))
            })
            .collect();
        let ack_budget = config.max_acks_in_flight.max(1);
        let config_ids = config
            .ids_dir
            .clone()
            .map(|dir| (dir, config.recent_ids.max(1)));
        let sharer = match (&config.ids_dir, config.share_ids_every) {
            (Some(_), Some(every)) => Some(Arc::new(crate::jetstream_share::Sharer::new(
                crate::jetstream_share::Names::new(&config.stream, &config.subject_prefix),
                every,
            ))),
            _ => None,
        };
        let log = JetStreamLog {
            inner: Arc::new(Inner {
                sharer,
                ids_read: std::sync::atomic::AtomicU64::new(0),
                subjects,
                config,
                publisher: writer_client,
                writer,
                reader,
                turn: Mutex::new(Turn::default()),
                index: Mutex::new(match &config_ids {
                    Some((dir, recent_ids)) => WriterIds::Unopened {
                        dir: dir.clone(),
                        recent_ids: *recent_ids,
                    },
                    None => WriterIds::Memory(IdIndex::default()),
                }),
                unsettled: std::sync::Mutex::new(Unsettled::default()),
                settled: tokio::sync::Notify::new(),
                settle: Mutex::new(()),
                ack_budget: tokio::sync::Semaphore::new(ack_budget),
                ack_subscriptions: std::sync::Mutex::new(Vec::new()),
                next_token: std::sync::atomic::AtomicU64::new(0),
                server_window_millis: std::sync::atomic::AtomicU64::new(0),
                disconnected,
            }),
        };
        log.ensure_stream().await?;
        Ok(log)
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.inner.config
    }

    async fn ensure_stream(&self) -> Result<(), LogError> {
        let config = &self.inner.config;
        let problem = |problem: String| LogError::StreamConfig {
            stream: config.stream.clone(),
            problem,
        };
        let wanted_subjects = format!("{}.>", config.subject_prefix);
        match self.inner.writer.get_stream(&config.stream).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|error| LogError::nats("stream info", error))?;
                let c = &info.config;
                if c.max_age > Duration::ZERO
                    || c.max_messages > 0
                    || c.max_bytes > 0
                    || c.max_messages_per_subject > 0
                {
                    return Err(problem(format!(
                        "has retention limits (max_age {:?}, max_msgs {}, max_bytes {}, max_msgs_per_subject {}); \
                         Baton's log must keep every event: remove the limits",
                        c.max_age, c.max_messages, c.max_bytes, c.max_messages_per_subject
                    )));
                }
                if !c.deny_delete || !c.deny_purge {
                    return Err(problem(
                        "allows deleting or purging messages; Baton's log is append-only: \
                         create it with deny_delete and deny_purge (or let Baton create it)"
                            .into(),
                    ));
                }
                self.set_window(c.duplicate_window);
                if c.retention != stream::RetentionPolicy::Limits {
                    return Err(problem(format!(
                        "has retention policy {:?}; Baton's log needs `limits` (keep everything)",
                        c.retention
                    )));
                }
                if !c.subjects.contains(&wanted_subjects) {
                    return Err(problem(format!(
                        "listens on {:?}, not {wanted_subjects:?}",
                        c.subjects
                    )));
                }
                Ok(())
            }
            Err(error)
                if matches!(
                    error.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(inner)
                        if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                self.inner
                    .writer
                    .create_stream(stream::Config {
                        name: config.stream.clone(),
                        subjects: vec![wanted_subjects],
                        storage: stream::StorageType::File,
                        retention: stream::RetentionPolicy::Limits,
                        duplicate_window: config.duplicate_window,
                        num_replicas: config.replicas.max(1),
                        allow_direct: true,
                        deny_delete: true,
                        deny_purge: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|error| {
                        // A cluster still electing its leader, or with too few nodes up for the
                        // replicas yet, answers with a timeout or a 5xx-like JetStream error:
                        // worth waiting for. A refusal of the stream itself is not.
                        let refused = matches!(
                            error.kind(),
                            jetstream::context::CreateStreamErrorKind::EmptyStreamName
                                | jetstream::context::CreateStreamErrorKind::InvalidStreamName
                                | jetstream::context::CreateStreamErrorKind::DomainAndExternalSet
                        ) || matches!(
                            error.kind(),
                            jetstream::context::CreateStreamErrorKind::JetStream(inner)
                                if inner.code() == 400
                                    || inner.error_code()
                                        == jetstream::ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED
                        );
                        if refused {
                            problem(format!("cannot create: {error}"))
                        } else {
                            LogError::nats("creating the stream", error)
                        }
                    })?;
                self.set_window(config.duplicate_window);
                Ok(())
            }
            Err(error) => Err(LogError::nats("looking up the stream", error)),
        }
    }

    fn set_window(&self, window: Duration) {
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner
            .server_window_millis
            .store(millis, std::sync::atomic::Ordering::Relaxed);
    }

    fn window(&self) -> Duration {
        Duration::from_millis(
            self.inner
                .server_window_millis
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1),
        )
    }

    async fn last_sequence(&self) -> Result<(u64, u64), LogError> {
        // `get_stream` is itself a stream-info request; its answer is fresh, so one round trip.
        let stream = self
            .inner
            .reader
            .get_stream(&self.inner.config.stream)
            .await
            .map_err(|error| LogError::nats("looking up the stream", error))?;
        let state = &stream.cached_info().state;
        Ok((state.last_sequence, state.messages))
    }

    async fn ordered_messages(
        &self,
        from: u64,
        headers_only: bool,
    ) -> Result<consumer::pull::Ordered, LogError> {
        let stream = self
            .inner
            .reader
            .get_stream(&self.inner.config.stream)
            .await
            .map_err(|error| LogError::nats("looking up the stream", error))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                headers_only,
                ..Default::default()
            })
            .await
            .map_err(|error| LogError::nats("creating an ordered consumer", error))?;
        consumer
            .messages()
            .await
            .map_err(|error| LogError::nats("reading the stream", error))
    }

    fn unsettled_batches(&self) -> usize {
        self.inner
            .unsettled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .batches
            .len()
    }

    /// Waits for the batches in flight to settle, then brings the index up to the stream's last
    /// sequence, again until one pass takes under a quarter of the duplicate window; returns
    /// when that pass started.
    async fn own_pass(&self, window: Duration) -> Result<tokio::time::Instant, LogError> {
        self.all_settled().await;
        let mut index = self.inner.index.lock().await;
        self.open_ids(&mut index).await?;
        loop {
            let started = tokio::time::Instant::now();
            let (last, _) = self.last_sequence().await?;
            self.catch_up(&mut index, last).await?;
            if started.elapsed() < window / 4 {
                return Ok(started);
            }
        }
    }

    /// Waits until every batch handed to the client has settled into the index.
    async fn all_settled(&self) {
        loop {
            // Created before looking, so a batch settling in between still wakes it.
            let notified = self.inner.settled.notified();
            if self.unsettled_batches() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Opens the id index on disk, the first time: takes a slot and checks the slot's
    /// manifest against the stream (its sequence is there, with the id it names).
    async fn open_ids(&self, index: &mut WriterIds) -> Result<(), LogError> {
        let WriterIds::Unopened { dir, recent_ids } = index else {
            return Ok(());
        };
        let (dir, recent_ids) = (dir.clone(), *recent_ids);
        let (slot, lock) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || crate::jetstream_ids::take_slot(&dir))
                .await
                .map_err(|error| LogError::nats("opening the id index", error))??
        };
        let mut fits = match crate::jetstream_ids::manifest_in(&slot) {
            Some(manifest) if manifest.covered > 0 => self.manifest_fits(&manifest).await,
            _ => Err("no index in this slot yet".to_owned()),
        };
        if fits.is_err() {
            // Another writer's index, rather than every id on the stream.
            for (other, _) in crate::jetstream_ids::other_slots(&slot) {
                let adopted = {
                    let (other, slot) = (other.clone(), slot.clone());
                    tokio::task::spawn_blocking(move || {
                        (0..3).any(|_| crate::jetstream_ids::adopt(&other, &slot).unwrap_or(false))
                    })
                    .await
                    .unwrap_or(false)
                };
                let Some(manifest) = adopted
                    .then(|| crate::jetstream_ids::manifest_in(&slot))
                    .flatten()
                else {
                    continue;
                };
                fits = self.manifest_fits(&manifest).await;
                if fits.is_ok() {
                    tracing::info!(from = %other.display(), covered = manifest.covered, "starting from another writer's id index");
                    break;
                }
            }
        }
        // The index shared through the server, when nothing here fits or it reaches much
        // further than what does.
        if let Some(sharer) = &self.inner.sharer {
            let own = match &fits {
                Ok(()) => crate::jetstream_ids::manifest_in(&slot).map_or(0, |m| m.covered),
                Err(_) => 0,
            };
            self.download_shared(sharer, &slot, own, &mut fits).await;
        }
        if let Err(reason) = &fits {
            tracing::info!(%reason, "reading every id on the stream into the index");
        }
        // An empty slot, or one that does not fit, starts empty (and removes what it held).
        let fits = fits.or_else(|reason| {
            if crate::jetstream_ids::manifest_in(&slot).is_none() {
                Ok(())
            } else {
                Err(reason)
            }
        });
        let opened =
            tokio::task::spawn_blocking(move || DiskIds::open(&slot, lock, recent_ids, fits))
                .await
                .map_err(|error| LogError::nats("opening the id index", error))??;
        *index = WriterIds::Disk(opened);
        Ok(())
    }

    /// Downloads the shared index into `slot` when there is one that fits the stream and
    /// reaches well beyond `own` (how far what `slot` holds reaches, 0 when it holds nothing
    /// that fits); on success `fits` becomes `Ok`. A failure is logged and changes nothing
    /// but `slot`, which it leaves empty.
    async fn download_shared(
        &self,
        sharer: &crate::jetstream_share::Sharer,
        slot: &std::path::Path,
        own: u64,
        fits: &mut Result<(), String>,
    ) {
        let published =
            match crate::jetstream_share::latest(&self.inner.reader, &sharer.names).await {
                Ok(Some(published)) => published,
                Ok(None) => return,
                Err(reason) => {
                    tracing::info!(%reason, "no shared id index to start from");
                    return;
                }
            };
        let shared = published.manifest.covered;
        sharer.saw_shared(shared);
        if fits.is_ok() && !sharer.worth_downloading(own, shared) {
            return;
        }
        if let Err(reason) = self.manifest_fits(&published.manifest).await {
            tracing::info!(%reason, "the shared id index does not fit the stream");
            return;
        }
        let started = std::time::Instant::now();
        match crate::jetstream_share::download(&self.inner.reader, &sharer.names, &published, slot)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    covered = shared,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "starting from the id index shared on the server"
                );
                *fits = Ok(());
            }
            Err(reason) => {
                tracing::warn!(%reason, "the shared id index could not be downloaded");
                if own > 0 {
                    // What the slot held was cleared for the download.
                    *fits = Err(reason);
                }
            }
        }
    }

    /// Shares the index on disk in the background when its runs have gone far enough beyond
    /// the index shared last (see [`JetStreamConfig::share_ids_every`]).
    fn maybe_share(&self, index: &mut WriterIds) {
        let Some(sharer) = &self.inner.sharer else {
            return;
        };
        // What the flusher and merger finished since (a failure is reported by the next pass).
        let _ = index.refresh();
        let Some((slot, runs_cover)) = index.runs_in() else {
            return;
        };
        if !sharer.due(runs_cover) {
            return;
        }
        let (sharer, slot) = (sharer.clone(), slot.to_owned());
        // The reading connection: an upload goes out while reads come in, so it neither
        // queues behind nor delays the events' publishes on the writing connection.
        let js = self.inner.reader.clone();
        let replicas = self.inner.config.replicas;
        tokio::spawn(async move {
            // Again while the runs on disk went far enough meanwhile (a bulk load outruns an
            // upload), so a writer that goes idle has shared what it flushed.
            loop {
                let started = std::time::Instant::now();
                match crate::jetstream_share::share(&js, &sharer, &slot, replicas).await {
                    Ok(Some(covered)) => tracing::info!(
                        covered,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "shared the id index on the server"
                    ),
                    Ok(None) => break,
                    Err(reason) => {
                        tracing::warn!(%reason, "sharing the id index failed; trying again later");
                        break;
                    }
                }
                let on_disk = crate::jetstream_ids::manifest_in(&slot).map_or(0, |m| m.covered);
                if !sharer.worth(on_disk) {
                    break;
                }
            }
            sharer.done();
        });
    }

    /// Ids this writer has read from the stream's headers into its index since it connected:
    /// every id on the stream when it starts from nothing, only those after its index (its
    /// own, another slot's or the shared one) otherwise.
    pub fn ids_read_from_stream(&self) -> u64 {
        self.inner
            .ids_read
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How far the id index shared on the server reaches (`None`: nothing shared).
    pub async fn shared_ids_cover(&self) -> Result<Option<u64>, LogError> {
        let names = crate::jetstream_share::Names::new(
            &self.inner.config.stream,
            &self.inner.config.subject_prefix,
        );
        crate::jetstream_share::latest(&self.inner.reader, &names)
            .await
            .map(|published| published.map(|p| p.manifest.covered))
            .map_err(|reason| LogError::nats("reading the shared id index", reason))
    }

    /// Whether an index on disk belongs to this stream as it stands: the message at its
    /// sequence carries the id it recorded there.
    async fn manifest_fits(&self, manifest: &crate::id_store::Manifest) -> Result<(), String> {
        let stream = self
            .inner
            .reader
            .get_stream(&self.inner.config.stream)
            .await
            .map_err(|error| format!("looking up the stream: {error}"))?;
        let message = stream
            .get_raw_message(manifest.covered)
            .await
            .map_err(|error| {
                format!(
                    "the stream has no message {} that the index reaches: {error}",
                    manifest.covered
                )
            })?;
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .and_then(|value| Uuid::parse_str(value.as_str()).ok());
        if id.map(|id| id.as_u128()) != Some(manifest.anchor) {
            return Err(format!(
                "the message at sequence {} is not the one the index saw",
                manifest.covered
            ));
        }
        Ok(())
    }

    /// Brings the index up to `last`, reading only headers.
    async fn catch_up(&self, index: &mut WriterIds, last: u64) -> Result<(), LogError> {
        if index.covered() >= last {
            return Ok(());
        }
        index.refresh()?;
        let mut messages = self.ordered_messages(index.covered() + 1, true).await?;
        // Messages come in microseconds while the server is there; an ordered consumer whose
        // server went away keeps trying to recreate itself, so a long silence is an outage, and
        // the append fails (safe to retry) instead of hanging until the server is back.
        loop {
            let next = tokio::time::timeout(STALL, messages.next())
                .await
                .map_err(|_| {
                    LogError::nats(
                        "catching up the id index",
                        format!(
                            "no message for {} s at sequence {} of {last}: the server is unreachable",
                            STALL.as_secs(),
                            index.covered()
                        ),
                    )
                })?;
            let Some(message) = next else {
                break;
            };
            let message =
                message.map_err(|error| LogError::nats("catching up the id index", error))?;
            let info = message
                .info()
                .map_err(|error| LogError::nats("message metadata", error))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let id = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
                .and_then(|value| Uuid::parse_str(value.as_str()).ok());
            // A message without a Baton id is foreign; readers report it, the index skips it.
            if let Some(id) = id {
                self.inner
                    .ids_read
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                index.insert(id.as_u128(), Position::new(sequence));
                index.mark(Position::new(sequence), id.as_u128())?;
            }
            index.set_covered(sequence);
            // `pending` guards against waiting for a `last` that was deleted from the stream.
            if sequence >= last || pending == 0 {
                index.set_covered(index.covered().max(last));
                break;
            }
        }
        Ok(())
    }

    /// Publishes `pending` (index into `events`, frame) with a bounded window of acks in
    /// flight; returns the failures, to be retried.
    ///
    /// Each message is a core publish whose reply subject is `{inbox}.{token}`, `inbox` fresh
    /// for this call and `token` counting the call's messages; one wildcard subscription takes
    /// every ack, and the token finds its message in the window. async-nats' own JetStream
    /// publish does the same matching through a per-message inbox, oneshot channel, request
    /// map entry and timer; here the window itself is the map, and one timer bounds the call.
    ///
    /// The window is shared with the batch before, whose last acks may still be coming in:
    /// `turn`, when given, is released as soon as the last message is handed over, so that the
    /// next batch starts publishing while this one's acks arrive.
    async fn publish_window(
        &self,
        events: &[Outgoing],
        pending: Vec<(usize, Bytes)>,
        outcomes: &mut [Option<AppendOutcome>],
        deadline: tokio::time::Instant,
        mut turn: Option<tokio::sync::MutexGuard<'_, Turn>>,
    ) -> Vec<(usize, Bytes, String)> {
        // One cutoff for every ack of this call: acks awaited in turn, each with its own
        // timeout, added up from a server that went away (20 events took 200 s to come back
        // not written).
        let cutoff = deadline.max(tokio::time::Instant::now() + STALL);
        let mut failed = Vec::new();
        let mut pending = pending.into_iter().peekable();
        let publisher = &self.inner.publisher;
        let budget = &self.inner.ack_budget;

        // Tokens are never reused on this log handle, so an ack still travelling for an earlier
        // call (given up at its cutoff) cannot be taken for one of this call's, and a call can
        // take over the ack subscription of one that has finished: subscribing per batch cost
        // the server about a tenth of its publish rate. A new subscription goes out on the
        // publishing connection before any publish, and the server handles a connection's
        // commands in order, so it is in place when the first ack comes back.
        let count = u64::try_from(pending.len()).unwrap_or(u64::MAX);
        let base = self
            .inner
            .next_token
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        let pooled = self
            .inner
            .ack_subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let (inbox, mut acks) = match pooled {
            Some(pooled) => pooled,
            None => {
                let inbox = publisher.new_inbox();
                let subscribed =
                    tokio::time::timeout(STALL, publisher.subscribe(format!("{inbox}.*"))).await;
                match subscribed {
                    Ok(Ok(acks)) => (inbox, acks),
                    Ok(Err(error)) => {
                        let reason =
                            format!("not published: cannot subscribe to acknowledgements: {error}");
                        return pending
                            .map(|(slot, frame)| (slot, frame, reason.clone()))
                            .collect();
                    }
                    Err(_) => {
                        let reason = format!(
                            "not published: the client could not subscribe to acknowledgements within {} s",
                            STALL.as_secs()
                        );
                        return pending
                            .map(|(slot, frame)| (slot, frame, reason.clone()))
                            .collect();
                    }
                }
            }
        };
        let mut subscription_open = true;
        // One timer for the call, rearmed at most once per stall period: it fires at the
        // cutoff, and meanwhile every STALL to look for acks that are overdue.
        let timer = tokio::time::sleep_until(cutoff.min(tokio::time::Instant::now() + STALL));
        let mut timer = std::pin::pin!(timer);
        // When the timer was armed: the window's front token, and the next token to publish.
        let mut armed_front: u64 = base;
        let mut armed_next: u64 = base;

        // The window, oldest first; `in_flight[i]` was published with token `first_token + i`.
        // Each entry holds one permit of the shared budget, given back when it is settled (or
        // when this call is dropped).
        let mut in_flight: VecDeque<InFlight> =
            VecDeque::with_capacity(self.inner.config.max_acks_in_flight.max(1));
        let mut held = HeldPermits { budget, count: 0 };
        // A permit won by waiting, for the next message.
        let mut reserved = 0usize;
        let mut first_token: u64 = base;
        loop {
            // Settle the answered front of the window, in order, to make room.
            while in_flight.front().is_some_and(|entry| entry.acked.is_some()) {
                let entry = in_flight
                    .pop_front()
                    .expect("invariant: the front was just seen");
                first_token += 1;
                held.give_back(1);
                match entry.acked.expect("invariant: the front is answered") {
                    Ok(ack) if ack.duplicate => {
                        outcomes[entry.slot] =
                            Some(AppendOutcome::Duplicate(Position::new(ack.sequence)));
                    }
                    Ok(ack) => {
                        outcomes[entry.slot] =
                            Some(AppendOutcome::Appended(Position::new(ack.sequence)));
                    }
                    Err(reason) => failed.push((entry.slot, entry.frame, reason)),
                }
            }
            while pending.peek().is_some() {
                if reserved > 0 {
                    reserved -= 1;
                } else {
                    let Ok(permit) = budget.try_acquire() else {
                        break;
                    };
                    permit.forget();
                    held.count += 1;
                }
                let (slot, frame) = pending.next().expect("invariant: peeked");
                let acked = if tokio::time::Instant::now() > deadline {
                    // Past half the duplicate window the server might no longer catch a copy
                    // another writer just stored; appending these again is safe.
                    Some(Err(
                        "not published: the batch outlasted half the stream's duplicate window"
                            .into(),
                    ))
                } else {
                    let token = first_token + in_flight.len() as u64;
                    self.publish_one(events[slot], &inbox, token, frame.clone())
                        .await
                        .err()
                        .map(Err)
                };
                in_flight.push_back(InFlight { slot, frame, acked });
            }

            if pending.peek().is_none() {
                // Everything is handed over: the next batch may start publishing.
                drop(turn.take());
            }
            let Some(front) = in_flight.front() else {
                if pending.peek().is_none() {
                    break;
                }
                // Nothing of this call in flight and no room: the batch before holds the
                // budget, and gives it back as its acks come (or as its cutoff passes).
                match tokio::time::timeout_at(cutoff, budget.acquire()).await {
                    Ok(Ok(permit)) => {
                        permit.forget();
                        held.count += 1;
                        reserved += 1;
                    }
                    Ok(Err(_)) | Err(_) => {
                        let reason = "not published: no room among the acks in flight in time";
                        failed.extend(
                            pending
                                .by_ref()
                                .map(|(slot, frame)| (slot, frame, reason.into())),
                        );
                    }
                }
                continue;
            };
            if front.acked.is_some() {
                // Failed as it was handed over: settled at the top.
                continue;
            }

            // Acks that have already arrived are taken before the timer is looked at.
            let next = tokio::select! {
                biased;
                message = acks.next() => match message {
                    Some(message) => AckWait::Message(message),
                    None => AckWait::Ended,
                },
                () = &mut timer => AckWait::Timer,
            };
            let (reason, overdue_before) = match next {
                AckWait::Message(message) => {
                    let token = message
                        .subject
                        .as_str()
                        .rsplit_once('.')
                        .and_then(|(_, token)| token.parse::<u64>().ok());
                    // Anything else on the subject (a token outside the window, a second
                    // answer) changes nothing: the first answer for a token stands.
                    if let Some(entry) = token
                        .and_then(|token| token.checked_sub(first_token))
                        .and_then(|offset| usize::try_from(offset).ok())
                        .and_then(|offset| in_flight.get_mut(offset))
                        && entry.acked.is_none()
                    {
                        entry.acked = Some(read_ack(&message));
                    }
                    continue;
                }
                AckWait::Ended => {
                    subscription_open = false;
                    (
                        "no acknowledgement: the connection was closed".to_owned(),
                        u64::MAX,
                    )
                }
                AckWait::Timer if tokio::time::Instant::now() >= cutoff => (
                    "no acknowledgement in time: the server is unreachable".to_owned(),
                    u64::MAX,
                ),
                AckWait::Timer => {
                    // The front has not moved for a whole stall period: what was published
                    // before the timer was armed has waited that long, and its ack is taken
                    // as lost (a reconnection drops replies in flight). Otherwise all is well.
                    let overdue_before = if first_token == armed_front {
                        armed_next
                    } else {
                        0
                    };
                    armed_front = first_token;
                    armed_next = first_token + in_flight.len() as u64;
                    timer
                        .as_mut()
                        .reset(cutoff.min(tokio::time::Instant::now() + STALL));
                    (
                        format!(
                            "no acknowledgement within {} s: the server is unreachable or \
                             the acknowledgement was lost",
                            STALL.as_secs()
                        ),
                        overdue_before,
                    )
                }
            };
            // What is unanswered (and overdue) counts as failed; it is retried with the same
            // message id, so one that did land comes back as a duplicate of itself.
            for (token, entry) in (first_token..).zip(&mut in_flight) {
                if token >= overdue_before {
                    break;
                }
                entry.acked.get_or_insert_with(|| Err(reason.clone()));
            }
        }
        if subscription_open {
            let mut pool = self
                .inner
                .ack_subscriptions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Two batches are in flight at most with appends kept two in flight; more callers
            // at once subscribe for themselves, and the extra subscriptions end here.
            if pool.len() < 4 {
                pool.push((inbox, acks));
            }
        }
        failed
    }

    /// Hands one message to the client, with `Nats-Msg-Id` and the reply subject for its ack.
    async fn publish_one(
        &self,
        event: Outgoing,
        inbox: &str,
        token: u64,
        frame: Bytes,
    ) -> Result<(), String> {
        // The schema version travels in the frame itself; one header keeps the server's
        // per-message work to the de-duplication it must do.
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = event.id.hyphenated().encode_lower(&mut id);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, &*id);
        let publish = self.inner.publisher.publish_with_reply_and_headers(
            self.inner.subjects[usize::from(event.subject)].clone(),
            format!("{inbox}.{token}"),
            headers,
            frame,
        );
        let mut publish = std::pin::pin!(publish);
        // Handing over completes at once while the client has room; only a wait (a client
        // that lost its server and waits for the reconnection) needs a timer. Past the stall
        // limit the message counts as not published, and is retried.
        if let std::task::Poll::Ready(sent) = futures::poll!(&mut publish) {
            return sent.map_err(|error| format!("not published: {error}"));
        }
        match tokio::time::timeout(STALL, publish).await {
            Ok(sent) => sent.map_err(|error| format!("not published: {error}")),
            Err(_) => Err(format!(
                "not published: the client could not hand the message to the server within {} s",
                STALL.as_secs()
            )),
        }
    }
}

/// What the publishing turn remembers from one batch to the next.
#[derive(Default)]
struct Turn {
    /// When the last pass over the stream's state started.
    pass_started: Option<tokio::time::Instant>,
}

/// Batches handed to the client and not yet settled into the index: each one's new ids (id →
/// slot), which no later batch may publish before it settles. Two at most with appends kept two
/// in flight, so looking an id up is one or two hash lookups.
#[derive(Default)]
struct Unsettled {
    batches: Vec<Arc<BatchIds>>,
}

type BatchIds = HashMap<u128, usize, BuildHasherDefault<IdHasher>>;

impl Unsettled {
    fn holds(&self, id: u128) -> bool {
        self.batches.iter().any(|ids| ids.contains_key(&id))
    }
}

/// One batch's entry in [`Unsettled`], removed when dropped: when the batch has settled, or
/// when its append was abandoned. What an abandoned batch stored is then found by the next
/// own pass's catch-up (its sequences lie past `covered`), or, by a batch sharing a pass, in
/// the server's duplicate window.
struct Registered<'a> {
    inner: &'a Inner,
    ids: Arc<BatchIds>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.inner
            .unsettled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .batches
            .retain(|ids| !Arc::ptr_eq(ids, &self.ids));
        self.inner.settled.notify_waiters();
    }
}

/// Permits of the shared ack budget held by one call, given back when dropped.
struct HeldPermits<'a> {
    budget: &'a tokio::sync::Semaphore,
    count: usize,
}

impl HeldPermits<'_> {
    fn give_back(&mut self, count: usize) {
        self.count -= count;
        self.budget.add_permits(count);
    }
}

impl Drop for HeldPermits<'_> {
    fn drop(&mut self) {
        self.budget.add_permits(self.count);
    }
}

/// One published message awaiting its ack.
struct InFlight {
    slot: usize,
    frame: Bytes,
    /// The stream's answer, once known; an error is a failure to retry.
    acked: Option<Result<Ack, String>>,
}

/// What waiting on the ack subscription gave.
enum AckWait {
    Message(async_nats::Message),
    Ended,
    Timer,
}

/// A stored message as the stream acknowledged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ack {
    sequence: u64,
    /// Its `Nats-Msg-Id` was already in the stream's duplicate window; nothing was stored.
    duplicate: bool,
}

/// A JetStream publish acknowledgement as the server sends it: `{"stream":..,"seq":..}`,
/// with `"duplicate":true` for a de-duplicated message, or `{"error":{..}}`.
#[derive(serde::Deserialize)]
struct AckReply {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    error: Option<AckReplyError>,
}

#[derive(serde::Deserialize)]
struct AckReplyError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// Reads the answer to one publish; an error is a reason the message was not stored.
fn read_ack(message: &async_nats::Message) -> Result<Ack, String> {
    if let Some(status) = message.status {
        // 503 when no stream listens on the subject (or its leader is being elected).
        return Err(format!(
            "no acknowledgement: the server answered status {status}{}",
            message
                .description
                .as_deref()
                .map(|description| format!(" ({description})"))
                .unwrap_or_default()
        ));
    }
    let reply: AckReply = serde_json::from_slice(&message.payload)
        .map_err(|error| format!("unreadable acknowledgement: {error}"))?;
    if let Some(error) = reply.error {
        return Err(format!(
            "the stream refused the message: {} (status {}, error code {})",
            error.description, error.code, error.err_code
        ));
    }
    if reply.seq == 0 {
        return Err("acknowledgement without a stream sequence".into());
    }
    Ok(Ack {
        sequence: reply.seq,
        duplicate: reply.duplicate,
    })
}

/// What publishing needs of one event, once its frame is encoded: the event itself is dropped
/// on the blocking pool, off the thread that publishes.
#[derive(Clone, Copy)]
struct Outgoing {
    id: Uuid,
    /// Its subject's index in `Kind::ALL`.
    subject: u8,
}

/// The frames of a batch in one buffer (one allocation per batch instead of one per event, each
/// freed by the connection's thread once sent), and per event its id and subject.
fn encode_batch(events: Vec<Event>) -> Result<(Vec<Bytes>, Vec<Outgoing>), LogError> {
    let mut buffer = Vec::with_capacity(events.len() * 256);
    let mut ends = Vec::with_capacity(events.len());
    let mut outgoing = Vec::with_capacity(events.len());
    let mut frame = Vec::with_capacity(256);
    for event in &events {
        baton_core::encode_into(event, &mut frame).map_err(|source| LogError::Encode {
            event_id: event.event_id,
            source,
        })?;
        buffer.extend_from_slice(&frame);
        ends.push(buffer.len());
        let kind = event.kind();
        let subject = baton_core::Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|index| u8::try_from(index).ok())
            .expect("invariant: Kind::ALL lists every kind, fewer than 256");
        outgoing.push(Outgoing {
            id: *event.event_id.as_uuid(),
            subject,
        });
    }
    drop(events);
    let buffer = Bytes::from(buffer);
    let mut start = 0;
    let frames = ends
        .into_iter()
        .map(|end| {
            let frame = buffer.slice(start..end);
            start = end;
            frame
        })
        .collect();
    Ok((frames, outgoing))
}

impl EventLog for JetStreamLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // A server gone for longer than a restart takes: say so at once (the collector answers
        // 503 with Retry-After) instead of waiting out the batch's deadline. A quick restart
        // is ridden through: the append waits for the reconnect.
        let gone_for = self
            .inner
            .disconnected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|since| since.elapsed());
        if let Some(gone_for) = gone_for.filter(|gone_for| *gone_for > DISCONNECTED_GRACE) {
            return Err(LogError::Nats(format!(
                "the NATS server has been unreachable for {} s (the client is reconnecting); nothing was written",
                gone_for.as_secs()
            )));
        }
        // Every event is encoded before anything is published, so an event that cannot be
        // stored fails the batch whole. Encoding runs on the blocking pool after this append
        // has taken its place in line to publish: with appends in flight one after another,
        // this batch is encoded while the one before it is published, and still stored after
        // it.
        let (mut turn, encoded) =
            crate::turn::work_then_lock(&self.inner.turn, move || encode_batch(events))
                .await
                .map_err(|error| LogError::Storage {
                    path: self.inner.config.stream.clone(),
                    message: format!("encoding task failed: {error}"),
                })?;
        // The place in line to settle is taken while publishing in order, so batches settle
        // into the index in the order they were published.
        let settle_place = crate::turn::take_place(&self.inner.settle).await;
        let (frames, events) = encoded?;

        // Everything on the stream when a pass starts is in the index after it; what others
        // append later must meet this batch inside the server's duplicate window. So the batch
        // must be published within half the window of the pass's start, and a pass that took
        // long is followed by another.
        //
        // A batch that starts while the one before it is still in flight shares that batch's
        // pass when it is young (under a quarter of the window) and the connection is up: what
        // others stored since the pass started is then still inside the server's window when
        // this batch is published. Every other batch waits for the ones before it to settle
        // and makes its own pass, which also finds out at once when the server is gone.
        let window = self.window();
        let shared_pass = turn.pass_started.filter(|started| {
            started.elapsed() < window / 4
                && self.unsettled_batches() > 0
                && self.inner.publisher.connection_state()
                    == async_nats::connection::State::Connected
        });
        let mut pass_started = match shared_pass {
            Some(started) => started,
            None => self.own_pass(window).await?,
        };
        turn.pass_started = Some(pass_started);

        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; events.len()];
        let mut repeats = Vec::new();
        let mut pending = Vec::new();
        // An id that a batch still in flight is publishing waits for that batch to settle,
        // and is then found in the index.
        let registered = loop {
            let index = self.inner.index.lock().await;
            let mut first_in_batch =
                BatchIds::with_capacity_and_hasher(events.len(), BuildHasherDefault::default());
            outcomes.fill(None);
            repeats.clear();
            pending.clear();
            let registered = {
                let mut unsettled = self
                    .inner
                    .unsettled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut in_flight_elsewhere = false;
                for (slot, (event, frame)) in events.iter().zip(&frames).enumerate() {
                    let id = event.id.as_u128();
                    if let Some(position) = index.get(id)? {
                        outcomes[slot] = Some(AppendOutcome::Duplicate(position));
                    } else if let Some(first) = first_in_batch.get(&id) {
                        repeats.push((slot, *first));
                    } else if unsettled.holds(id) {
                        in_flight_elsewhere = true;
                        break;
                    } else {
                        first_in_batch.insert(id, slot);
                        pending.push((slot, frame.clone()));
                    }
                }
                (!in_flight_elsewhere).then(|| {
                    let ids = Arc::new(first_in_batch);
                    unsettled.batches.push(Arc::clone(&ids));
                    Registered {
                        inner: &self.inner,
                        ids,
                    }
                })
            };
            drop(index);
            match registered {
                Some(registered) => break registered,
                None => {
                    // The batches before have settled; a pass that aged meanwhile (a slow
                    // batch before, retrying) is renewed rather than run past its deadline.
                    self.all_settled().await;
                    if pass_started.elapsed() >= window / 4 {
                        pass_started = self.own_pass(window).await?;
                        turn.pass_started = Some(pass_started);
                    }
                }
            }
        };
        drop(frames);
        let deadline = pass_started + window / 2;

        // Retry what failed (server restarting, leader moving) with the same message ids, so
        // a publish that did land but lost its ack comes back as a duplicate of itself.
        // Retries run after the publishing turn is handed on, so a retried event may be
        // stored after the next batch's first events.
        let mut turn = Some(turn);
        let mut delay = Duration::from_millis(100);
        loop {
            let failed = self
                .publish_window(&events, pending, &mut outcomes, deadline, turn.take())
                .await;
            if failed.is_empty() {
                break;
            }
            if tokio::time::Instant::now() + delay > deadline {
                tracing::warn!(count = failed.len(), "events not written after retries");
                for (slot, _, reason) in failed {
                    outcomes[slot] = Some(AppendOutcome::NotWritten(reason));
                }
                break;
            }
            tracing::debug!(count = failed.len(), ?delay, reason = %failed[0].2, "retrying unacknowledged publishes");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            pending = failed
                .into_iter()
                .map(|(slot, frame, _)| (slot, frame))
                .collect();
        }

        // Remember what this batch stored, and skip re-reading it when nobody else wrote.
        let _settling = settle_place.wait().await;
        let mut index = self.inner.index.lock().await;
        let mut stored: Vec<u64> = Vec::new();
        for (slot, outcome) in outcomes.iter().enumerate() {
            if let Some(AppendOutcome::Appended(position) | AppendOutcome::Duplicate(position)) =
                outcome
            {
                index.insert(events[slot].id.as_u128(), *position);
                if matches!(outcome, Some(AppendOutcome::Appended(_))) {
                    stored.push(position.get());
                }
            }
        }
        stored.sort_unstable();
        let covered = index.covered();
        let contiguous = stored
            .iter()
            .enumerate()
            .all(|(offset, sequence)| *sequence == covered + 1 + offset as u64);
        if contiguous && let Some(last) = stored.last() {
            index.set_covered(*last);
            let at_last = outcomes.iter().position(|outcome| {
                matches!(outcome, Some(AppendOutcome::Appended(position)) if position.get() == *last)
            });
            if let Some(slot) = at_last
                && let Err(error) = index.mark(Position::new(*last), events[slot].id.as_u128())
            {
                // What this batch stored is acknowledged; the next pass reports the failure.
                tracing::warn!(%error, "the id index could not keep up");
            }
        }
        self.maybe_share(&mut index);
        // Out of the unsettled set only once in the index, under its lock: a later batch
        // checking its ids sees them in one place or the other.
        drop(registered);
        drop(index);

        for (slot, first) in repeats {
            outcomes[slot] = Some(match &outcomes[first] {
                Some(AppendOutcome::Appended(position) | AppendOutcome::Duplicate(position)) => {
                    AppendOutcome::Duplicate(*position)
                }
                Some(AppendOutcome::NotWritten(reason)) => {
                    AppendOutcome::NotWritten(reason.clone())
                }
                None => {
                    AppendOutcome::NotWritten("its first copy in the batch was not written".into())
                }
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.expect("invariant: every slot gets an outcome"))
            .collect())
    }

    async fn stat(&self) -> Result<LogStat, LogError> {
        let (last, messages) = self.last_sequence().await?;
        Ok(LogStat {
            head: Position::new(last),
            events: messages,
        })
    }

    async fn read(&self, from: Position) -> Result<RecordStream, LogError> {
        let (last, _) = self.last_sequence().await?;
        if from.get().max(1) > last {
            return Ok(futures::stream::empty().boxed());
        }
        let messages = self.ordered_messages(from.get(), false).await?;
        Ok(records(messages, Some(last)))
    }

    async fn follow(&self, from: Position) -> Result<RecordStream, LogError> {
        let messages = self.ordered_messages(from.get(), false).await?;
        Ok(records(messages, None))
    }
}

/// Decodes ordered-consumer messages into records, stopping after `last` when given and after
/// the first error. Once done it never polls the consumer again (which would wait forever).
fn records(messages: consumer::pull::Ordered, last: Option<u64>) -> RecordStream {
    futures::stream::unfold((messages, false), move |(mut messages, done)| async move {
        if done {
            return None;
        }
        let (record, pending) = match messages.next().await? {
            Err(error) => (Err(LogError::nats("reading the stream", error)), None),
            Ok(message) => (
                decode_message(&message),
                message.info().ok().map(|i| i.pending),
            ),
        };
        let done = match &record {
            Err(_) => true,
            // A bounded read also ends when nothing is pending, should `last` be gone.
            Ok(record) => {
                last.is_some_and(|last| record.position.get() >= last || pending == Some(0))
            }
        };
        Some((record, (messages, done)))
    })
    .boxed()
}

fn decode_message(message: &jetstream::Message) -> Result<Record, LogError> {
    let sequence = message
        .info()
        .map_err(|error| LogError::nats("message metadata", error))?
        .stream_sequence;
    let position = Position::new(sequence);
    baton_core::decode(&message.payload)
        .map(|event| Record { position, event })
        .map_err(|source| LogError::Corrupt { position, source })
}

#[cfg(test)]
mod tests {
    use super::{Ack, read_ack};

    fn reply(payload: &str, status: Option<u16>) -> async_nats::Message {
        async_nats::Message {
            subject: "_INBOX.test.0".into(),
            reply: None,
            payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
            headers: None,
            status: status
                .map(|code| async_nats::StatusCode::from_u16(code).expect("a valid status code")),
            description: status.map(|_| "No Responders".to_owned()),
            length: payload.len(),
        }
    }

    /// The answers as nats-server 2.9 sends them to a publish's reply subject.
    #[test]
    fn acks_are_read_as_the_server_sends_them() {
        assert_eq!(
            read_ack(&reply(r#"{"stream":"BATON","seq":7}"#, None)),
            Ok(Ack {
                sequence: 7,
                duplicate: false
            })
        );
        assert_eq!(
            read_ack(&reply(
                r#"{"stream":"BATON","domain":"hub","seq":7,"duplicate":true}"#,
                None
            )),
            Ok(Ack {
                sequence: 7,
                duplicate: true
            })
        );
        let refused = read_ack(&reply(
            r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#,
            None,
        ))
        .expect_err("an error answer is a failure");
        assert!(refused.contains("maximum messages exceeded"), "{refused}");
        assert!(refused.contains("10077"), "{refused}");
        let no_stream = read_ack(&reply("", Some(503))).expect_err("no responders is a failure");
        assert!(no_stream.contains("503"), "{no_stream}");
        let garbled = read_ack(&reply("{\"seq\":", None)).expect_err("garbled is a failure");
        assert!(garbled.contains("unreadable"), "{garbled}");
        let without_sequence = read_ack(&reply(r#"{"stream":"BATON"}"#, None))
            .expect_err("an ack must say where the message is");
        assert!(without_sequence.contains("sequence"), "{without_sequence}");
    }
}
