//! The JetStream log: one NATS JetStream stream, file storage, no limits, in production
//! clustered with replicas.
//!
//! Subjects are `{prefix}.{family}.{kind}` (39 subjects at most): low cardinality, so a
//! consumer that filters by family stays cheap. Each message carries the codec frame as its
//! payload, the event id as `Nats-Msg-Id` and the schema version as `Baton-Schema`.
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

use crate::error::LogError;
use crate::id_index::IdIndex;
use crate::port::{AppendOutcome, EventLog, LogStat, Position, Record, RecordStream};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use baton_core::Event;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

/// How long a JetStream read or publish may wait without progress before the append gives up
/// (the client waits for a lost server to come back; an append should fail and be retried).
const STALL: Duration = Duration::from_secs(10);

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
    config: JetStreamConfig,
    /// `{prefix}.{family}.{kind}` for every kind, indexed like `Kind::ALL`.
    subjects: Vec<async_nats::Subject>,
    /// Publishing connection.
    writer: jetstream::Context,
    /// Reading connection, separate so that a publish backlog cannot starve readers.
    reader: jetstream::Context,
    /// Held for the whole of an append: one batch at a time per process.
    index: Mutex<IdIndex>,
    /// The stream's duplicate window as the server has it, in milliseconds (an existing stream
    /// keeps its own, whatever the config asks for).
    server_window_millis: std::sync::atomic::AtomicU64,
}

async fn connect_client(
    config: &JetStreamConfig,
    role: &str,
) -> Result<async_nats::Client, LogError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("baton-{role}"))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(path) = &config.credentials_file {
        options = options.credentials_file(path).await.map_err(|error| {
            LogError::Nats(format!("credentials file {}: {error}", path.display()))
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
        .map_err(|error| LogError::Nats(format!("invalid NATS URL {:?}: {error}", config.url)))?;
    options
        .connect(servers.as_slice())
        .await
        .map_err(|error| LogError::nats(&format!("cannot connect to {}", config.url), error))
}

impl JetStreamLog {
    /// Connects (one connection to write, one to read) and creates the stream, or checks
    /// that an existing one keeps every event.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, LogError> {
        let writer_client = connect_client(&config, "writer").await?;
        let reader_client = connect_client(&config, "reader").await?;
        let writer = jetstream::context::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .max_ack_inflight(config.max_acks_in_flight.max(1))
            .backpressure_on_inflight(true)
            .build(writer_client);
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
        let log = JetStreamLog {
            inner: Arc::new(Inner {
                subjects,
                config,
                writer,
                reader,
                index: Mutex::new(IdIndex::default()),
                server_window_millis: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        log.ensure_stream().await?;
        Ok(log)
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.inner.config
    }

    fn subject(&self, event: &Event) -> async_nats::Subject {
        let kind = event.kind();
        let index = baton_core::Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("invariant: Kind::ALL lists every kind");
        self.inner.subjects[index].clone()
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
                    .map_err(|error| problem(format!("cannot create: {error}")))?;
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

    /// Brings the index up to `last`, reading only headers.
    async fn catch_up(&self, index: &mut IdIndex, last: u64) -> Result<(), LogError> {
        if index.covered >= last {
            return Ok(());
        }
        let mut messages = self.ordered_messages(index.covered + 1, true).await?;
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
                            index.covered
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
                index.insert(id.as_u128(), Position::new(sequence));
            }
            index.covered = sequence;
            // `pending` guards against waiting for a `last` that was deleted from the stream.
            if sequence >= last || pending == 0 {
                index.covered = index.covered.max(last);
                break;
            }
        }
        Ok(())
    }

    /// Publishes `pending` (index into `events`, frame) with a bounded window of acks in
    /// flight; returns the failures, to be retried.
    async fn publish_window(
        &self,
        events: &[Event],
        pending: Vec<(usize, Bytes)>,
        outcomes: &mut [Option<AppendOutcome>],
        deadline: tokio::time::Instant,
    ) -> Vec<(usize, Bytes, String)> {
        let window = self.inner.config.max_acks_in_flight.max(1);
        // One cutoff for every ack of this call: each ack future times out on its own only
        // once awaited, so awaiting them in turn from a server that went away added up (20
        // events took 200 s to come back not written).
        let cutoff = deadline.max(tokio::time::Instant::now() + STALL);
        let mut in_flight = VecDeque::with_capacity(window);
        let mut failed = Vec::new();
        let mut pending = pending.into_iter();
        loop {
            while in_flight.len() < window {
                let Some((slot, frame)) = pending.next() else {
                    break;
                };
                if tokio::time::Instant::now() > deadline {
                    // Past half the duplicate window the server might no longer catch a copy
                    // another writer just stored; appending these again is safe.
                    failed.push((
                        slot,
                        frame,
                        "not published: the batch outlasted half the stream's duplicate window"
                            .into(),
                    ));
                    continue;
                }
                let event = &events[slot];
                // The schema version travels in the frame itself; one header keeps the server's
                // per-message work to the de-duplication it must do.
                let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let id = event.event_id.as_uuid().hyphenated().encode_lower(&mut id);
                let mut headers = HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, &*id);
                // Handing a message to a client that lost its server can wait for the
                // reconnection; past the stall limit it counts as not published (retried).
                let sent = match tokio::time::timeout(
                    STALL,
                    self.inner.writer.publish_with_headers(
                        self.subject(event),
                        headers,
                        frame.clone(),
                    ),
                )
                .await
                {
                    Ok(sent) => sent.map_err(|error| error.to_string()),
                    Err(_) => Err(format!(
                        "not published: the client could not hand the message to the server within {} s",
                        STALL.as_secs()
                    )),
                };
                in_flight.push_back((slot, frame, sent));
            }
            let Some((slot, frame, sent)) = in_flight.pop_front() else {
                break;
            };
            let acked = match sent {
                Ok(future) => match tokio::time::timeout_at(cutoff, future).await {
                    Ok(acked) => acked.map_err(|error| error.to_string()),
                    Err(_) => Err("no acknowledgement in time: the server is unreachable".into()),
                },
                Err(error) => Err(error),
            };
            match acked {
                Ok(ack) if ack.duplicate => {
                    outcomes[slot] = Some(AppendOutcome::Duplicate(Position::new(ack.sequence)));
                }
                Ok(ack) => {
                    outcomes[slot] = Some(AppendOutcome::Appended(Position::new(ack.sequence)))
                }
                Err(reason) => failed.push((slot, frame, reason)),
            }
        }
        failed
    }
}

impl EventLog for JetStreamLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut frames = Vec::with_capacity(events.len());
        for event in &events {
            let frame = baton_core::encode(event).map_err(|source| LogError::Encode {
                event_id: event.event_id,
                source,
            })?;
            frames.push(Bytes::from(frame));
        }

        let mut index = self.inner.index.lock().await;
        // Everything on the stream when a pass starts is in the index after it; what others
        // append later must meet this batch inside the server's duplicate window. So the batch
        // must be published within half the window of the pass's start, and a pass that took
        // long is followed by another.
        let window = self.window();
        let pass_started = loop {
            let started = tokio::time::Instant::now();
            let (last, _) = self.last_sequence().await?;
            self.catch_up(&mut index, last).await?;
            if started.elapsed() < window / 4 {
                break started;
            }
        };
        let deadline = pass_started + window / 2;

        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; events.len()];
        let mut first_in_batch: HashMap<u128, usize> = HashMap::new();
        let mut repeats = Vec::new();
        let mut pending = Vec::new();
        for (slot, (event, frame)) in events.iter().zip(frames).enumerate() {
            let id = event.event_id.as_u128();
            if let Some(position) = index.get(id) {
                outcomes[slot] = Some(AppendOutcome::Duplicate(position));
            } else if let Some(first) = first_in_batch.get(&id) {
                repeats.push((slot, *first));
            } else {
                first_in_batch.insert(id, slot);
                pending.push((slot, frame));
            }
        }

        // Retry what failed (server restarting, leader moving) with the same message ids, so
        // a publish that did land but lost its ack comes back as a duplicate of itself.
        let mut delay = Duration::from_millis(100);
        loop {
            let failed = self
                .publish_window(&events, pending, &mut outcomes, deadline)
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
        let mut stored: Vec<u64> = Vec::new();
        for (slot, outcome) in outcomes.iter().enumerate() {
            if let Some(AppendOutcome::Appended(position) | AppendOutcome::Duplicate(position)) =
                outcome
            {
                index.insert(events[slot].event_id.as_u128(), *position);
                if matches!(outcome, Some(AppendOutcome::Appended(_))) {
                    stored.push(position.get());
                }
            }
        }
        stored.sort_unstable();
        let contiguous = stored
            .iter()
            .enumerate()
            .all(|(offset, sequence)| *sequence == index.covered + 1 + offset as u64);
        if contiguous && let Some(last) = stored.last() {
            index.covered = *last;
        }
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
