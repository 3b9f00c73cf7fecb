//! Choosing and opening the log backend from the command line and environment.

use anyhow::Context;
use baton_log::{AnyLog, EmbeddedConfig, EmbeddedLog, JetStreamConfig, JetStreamLog};
use std::path::PathBuf;

/// The embedded log's directory when none is given.
pub const DEFAULT_DATA: &str = "./baton-data";

/// Where the log lives. Every command takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Directory of the embedded log, the default backend (no server needed).
    #[arg(
        long,
        global = true,
        env = "BATON_DATA",
        default_value = DEFAULT_DATA
    )]
    pub data: PathBuf,
    /// Directory of the views (the projector's state); `DATA/views` by default. Views are
    /// local to each projector, whichever log it reads.
    #[arg(long, global = true, env = "BATON_VIEWS")]
    pub views: Option<PathBuf>,
    /// Use NATS JetStream at this URL (e.g. nats://127.0.0.1:4222) instead of the embedded log.
    #[arg(long, global = true, env = "BATON_NATS")]
    pub nats: Option<String>,
    /// JetStream stream that holds the log.
    #[arg(
        long,
        global = true,
        env = "BATON_NATS_STREAM",
        default_value = "BATON"
    )]
    pub stream: String,
    /// Replicas when the stream is created (3 on a three-node cluster).
    #[arg(long, global = true, env = "BATON_NATS_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// JetStream duplicate window in seconds, when the stream is created. Baton's own index makes
    /// idempotency permanent; the window covers writers racing on the same ids.
    #[arg(
        long,
        global = true,
        env = "BATON_NATS_DUPLICATE_WINDOW",
        default_value_t = 120
    )]
    pub duplicate_window_secs: u64,
    /// Share this writer's id index through the server (stream `STREAM_IDS`) whenever its
    /// runs reach this many events beyond the index shared last, so a writer on another
    /// machine downloads it instead of reading every id on the stream; 0 neither shares nor
    /// downloads.
    #[arg(
        long,
        global = true,
        env = "BATON_NATS_SHARE_IDS_EVERY",
        default_value_t = baton_log::DEFAULT_SHARE_IDS_EVERY,
        value_name = "EVENTS"
    )]
    pub share_ids_every: u64,
    /// Ids of the latest appends an appending process keeps in memory (about 32 to 56 bytes
    /// each) before writing them to its id index on disk as a run. More means fewer runs to
    /// merge and to look new ids up in, for more memory (up to five such maps while the disk
    /// catches up); a bulk load of 10M lines measured no faster at 1M or 2M. Both backends.
    #[arg(
        long,
        global = true,
        env = "BATON_RECENT_IDS",
        default_value_t = baton_log::DEFAULT_RECENT_IDS as u64,
        value_name = "IDS",
        value_parser = clap::value_parser!(u64).range(1..=(1 << 28))
    )]
    pub recent_ids: u64,
    /// NATS credentials file (.creds).
    #[arg(long, global = true, env = "BATON_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate for the NATS server's TLS certificate; requires TLS.
    #[arg(long, global = true, env = "BATON_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Seconds a command waits for a log that is briefly unavailable (a NATS server
    /// restarting, a JetStream cluster electing a leader), retrying with backoff and saying
    /// what it waits for, before it gives up. `baton serve` and `baton project` wait as long
    /// as it takes once they run.
    #[arg(
        long,
        global = true,
        env = "BATON_WAIT_FOR_LOG",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub wait_for_log: u64,
}

impl LogArgs {
    pub fn views_dir(&self) -> PathBuf {
        self.views
            .clone()
            .unwrap_or_else(|| self.data.join("views"))
    }

    pub fn jetstream_config(&self, url: &str) -> JetStreamConfig {
        let mut config = JetStreamConfig::new(url);
        config.stream = self.stream.clone();
        config.replicas = self.replicas;
        config.duplicate_window = std::time::Duration::from_secs(self.duplicate_window_secs.max(1));
        config.credentials_file = self.nats_creds.clone();
        config.tls_ca_file = self.nats_ca.clone();
        // The writer's id index on disk, beside the views: about two bytes an event in memory,
        // and a writer that starts again reads only what was appended since it stopped.
        config.ids_dir = Some(self.data.join("jetstream-ids").join(&self.stream));
        config.share_ids_every = (self.share_ids_every > 0).then_some(self.share_ids_every);
        config.recent_ids = self.recent_ids as usize;
        config
    }

    /// [`open`](Self::open) for a command that only reads the log: the embedded log is opened
    /// beside a process that may have it open to append (`baton serve`, `baton project`), as
    /// it stands now.
    pub async fn open_to_read(&self) -> anyhow::Result<AnyLog> {
        match &self.nats {
            Some(_) => self.open().await,
            None => {
                let log = EmbeddedLog::open_to_read(EmbeddedConfig::new(&self.data))
                    .await
                    .with_context(|| {
                        format!(
                            "opening the embedded log in {} to read",
                            self.data.display()
                        )
                    })?;
                Ok(AnyLog::Embedded(log))
            }
        }
    }

    /// How long a command waits out a transient failure of the log.
    pub fn patience(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.wait_for_log)
    }

    pub async fn open(&self) -> anyhow::Result<AnyLog> {
        match &self.nats {
            Some(url) => {
                let log =
                    baton_log::retry_transient("connecting to JetStream", self.patience(), || {
                        JetStreamLog::connect(self.jetstream_config(url))
                    })
                    .await
                    .with_context(|| format!("opening the JetStream log at {url}"))?;
                Ok(AnyLog::JetStream(log))
            }
            None => {
                let config =
                    EmbeddedConfig::new(&self.data).with_recent_ids(self.recent_ids as usize);
                let log = EmbeddedLog::open(config).await.with_context(|| {
                    format!("opening the embedded log in {}", self.data.display())
                })?;
                Ok(AnyLog::Embedded(log))
            }
        }
    }
}
