//! `baton serve` settings: a TOML file (`--config`), every scalar key overridable by an
//! environment variable `BATON_<KEY>` (nested keys joined by `_`: `limits.max_event_bytes` is
//! `BATON_LIMITS_MAX_EVENT_BYTES`), and command-line flags over both. The reference is
//! `docs/configuration.md`.

use anyhow::{Context, bail};
use baton_producer::{CollectorConfig, Limits, Mapping, TrackRule, WriteKey};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default HTTP address: loopback only, so a fresh install exposes nothing.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7070";

/// The default SQL address: loopback, next to PostgreSQL's usual 5432.
pub const DEFAULT_SQL: &str = "127.0.0.1:5433";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_event_bytes: Option<usize>,
    max_request_bytes: Option<usize>,
    items_per_second_per_key: Option<u32>,
    burst_per_key: Option<u32>,
    bytes_per_second_per_key: Option<u64>,
    burst_bytes_per_key: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteKeyFile {
    source: String,
    key: String,
    /// What its rate and metrics go by (the source when unset).
    name: Option<String>,
    /// Kinds and families it may write; every kind when unset.
    kinds: Option<Vec<String>>,
    /// Routes it may use; every route when unset.
    routes: Option<Vec<String>>,
    /// Browser origins that may use it.
    #[serde(default)]
    origins: Vec<String>,
    /// Its own rate, over `[limits]`.
    rate: Option<RateFile>,
    /// Each client address's rate; a key with origins gets one visitor's by default.
    per_address: Option<RateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateFile {
    items_per_second: Option<u32>,
    burst: Option<u32>,
    bytes_per_second: Option<u64>,
    burst_bytes: Option<u64>,
}

impl RateFile {
    fn over(&self, base: baton_producer::KeyRate) -> baton_producer::KeyRate {
        baton_producer::KeyRate {
            items_per_second: self.items_per_second.unwrap_or(base.items_per_second),
            burst: self.burst.unwrap_or(base.burst),
            bytes_per_second: self.bytes_per_second.unwrap_or(base.bytes_per_second),
            burst_bytes: self.burst_bytes.unwrap_or(base.burst_bytes),
        }
    }
}

impl WriteKeyFile {
    /// The key with its scope; `at` names it in errors (`write_keys[2]`).
    fn into_key(self, at: &str) -> anyhow::Result<WriteKey> {
        let mut key = WriteKey::new(self.source.trim(), self.key);
        if key.source.is_empty() || key.key.is_empty() {
            bail!("{at}: source and key must not be empty");
        }
        key.scope.name = self.name;
        if let Some(kinds) = &self.kinds {
            key.scope.kinds = Some(
                baton_producer::KeyScope::parse_kinds(kinds)
                    .map_err(|error| anyhow::anyhow!("{at}.kinds: {error}"))?,
            );
        }
        if let Some(routes) = &self.routes {
            key.scope.routes = Some(
                routes
                    .iter()
                    .map(|route| route.parse::<baton_producer::Route>())
                    .collect::<Result<_, _>>()
                    .map_err(|error| anyhow::anyhow!("{at}.routes: {error}"))?,
            );
        }
        for origin in &self.origins {
            if origin != "*" && !baton_producer::valid_origin(origin) {
                bail!(
                    "{at}.origins: {origin:?} is not an origin; write scheme://host[:port] as the browser sends it, e.g. https://www.example.com"
                );
            }
        }
        key.scope.origins = self.origins;
        key.scope.rate = self
            .rate
            .as_ref()
            .map(|rate| rate.over(baton_producer::KeyRate::default()));
        key.scope.per_address = match &self.per_address {
            Some(rate) => Some(rate.over(baton_producer::KeyRate::PER_VISITOR)),
            None if !key.scope.origins.is_empty() => Some(baton_producer::KeyRate::PER_VISITOR),
            None => None,
        };
        Ok(key)
    }
}

/// The file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    http: Option<String>,
    data: Option<PathBuf>,
    nats: Option<String>,
    quarantine_dir: Option<PathBuf>,
    quarantine_max_bytes: Option<u64>,
    max_future_skew_secs: Option<u64>,
    retry_after_secs: Option<u64>,
    max_batch_events: Option<usize>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    write_keys: Vec<WriteKeyFile>,
    #[serde(default)]
    track: BTreeMap<String, TrackRule>,
    #[serde(default)]
    mappings: BTreeMap<String, Mapping>,
    #[serde(default)]
    read_tokens: Vec<String>,
    publish_every_ms: Option<u64>,
    funnel: Option<PathBuf>,
    sql: Option<String>,
    sql_tls_cert: Option<PathBuf>,
    sql_tls_key: Option<PathBuf>,
    sql_statement_timeout_secs: Option<u64>,
    backtest_max_events: Option<u64>,
    sendgrid_verification_key: Option<String>,
    trust_forwarded_for: Option<bool>,
    browser_library: Option<PathBuf>,
}

/// Settings after file and environment, before flags.
#[derive(Debug)]
pub struct Settings {
    pub http: String,
    pub data: Option<PathBuf>,
    pub nats: Option<String>,
    pub quarantine_dir: Option<PathBuf>,
    /// The most bytes the quarantine keeps; rejected items beyond are answered, not kept.
    pub quarantine_max_bytes: u64,
    /// Items a second each write key may send, and its burst (0: no limit).
    pub key_rate: baton_producer::KeyRate,
    pub max_future_skew_secs: u64,
    pub retry_after_secs: u64,
    pub max_batch_events: usize,
    pub limits: Limits,
    pub write_keys: Vec<WriteKey>,
    pub track: BTreeMap<String, TrackRule>,
    pub mappings: BTreeMap<String, Mapping>,
    /// Bearer tokens for the query API (and SQL passwords); none: reads from loopback only.
    pub read_tokens: Vec<String>,
    /// How often the views queries see are rebuilt at most, while events come in.
    pub publish_every_ms: u64,
    /// The definition of the live view when it is first built.
    pub funnel: Option<PathBuf>,
    /// The SQL endpoint's address, or `off`.
    pub sql: String,
    /// The SQL endpoint's certificate chain and private key (PEM); with them, TLS is required.
    pub sql_tls_cert: Option<PathBuf>,
    pub sql_tls_key: Option<PathBuf>,
    /// The longest a SQL statement may run (over the PostgreSQL protocol and `POST /v1/sql`);
    /// a session's `statement_timeout` may only lower it.
    pub sql_statement_timeout_secs: u64,
    /// The most events a backtest over HTTP may fold beside the server; by default, as many
    /// as two folds hold in half of the memory available when it starts.
    pub backtest_max_events: Option<u64>,
    /// SendGrid's Signed Event Webhook public key (base64 DER); with it, unsigned or
    /// wrongly signed SendGrid requests are refused.
    pub sendgrid_verification_key: Option<String>,
    /// Whether a client's address (for a browser key's rate per visitor) is the last one of
    /// `X-Forwarded-For`, as the load balancer in front appends it.
    pub trust_forwarded_for: bool,
    /// The `dist/umd` directory of `@segment/analytics-next`, served to web pages.
    pub browser_library: Option<PathBuf>,
}

/// Reads an environment variable; `lookup` is the environment (a parameter so tests and
/// callers can pass their own).
fn env_value<T: std::str::FromStr>(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match lookup(name) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|error| anyhow::anyhow!("environment variable {name}: {error}: {text:?}")),
    }
}

impl Settings {
    /// Loads `file` (when given) and applies `BATON_*` variables from `lookup`.
    pub fn load(
        file: Option<&Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let parsed: SettingsFile = match file {
            None => SettingsFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the config file {}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|error| anyhow::anyhow!("config file {}: {error}", path.display()))?
            }
        };
        let defaults = Limits::default();
        let mut settings = Settings {
            http: parsed.http.unwrap_or_else(|| DEFAULT_HTTP.to_owned()),
            data: parsed.data,
            nats: parsed.nats,
            quarantine_dir: parsed.quarantine_dir,
            quarantine_max_bytes: parsed
                .quarantine_max_bytes
                .unwrap_or(baton_producer::DEFAULT_QUARANTINE_BYTES),
            key_rate: baton_producer::KeyRate {
                items_per_second: parsed
                    .limits
                    .items_per_second_per_key
                    .unwrap_or(baton_producer::KeyRate::default().items_per_second),
                burst: parsed
                    .limits
                    .burst_per_key
                    .unwrap_or(baton_producer::KeyRate::default().burst),
                bytes_per_second: parsed
                    .limits
                    .bytes_per_second_per_key
                    .unwrap_or(baton_producer::KeyRate::default().bytes_per_second),
                burst_bytes: parsed
                    .limits
                    .burst_bytes_per_key
                    .unwrap_or(baton_producer::KeyRate::default().burst_bytes),
            },
            max_future_skew_secs: parsed.max_future_skew_secs.unwrap_or(86_400),
            retry_after_secs: parsed.retry_after_secs.unwrap_or(2),
            max_batch_events: parsed.max_batch_events.unwrap_or(5_000),
            limits: Limits {
                max_event_bytes: parsed
                    .limits
                    .max_event_bytes
                    .unwrap_or(defaults.max_event_bytes),
                max_request_bytes: parsed
                    .limits
                    .max_request_bytes
                    .unwrap_or(defaults.max_request_bytes),
            },
            write_keys: parsed
                .write_keys
                .into_iter()
                .enumerate()
                .map(|(at, key)| key.into_key(&format!("write_keys[{at}]")))
                .collect::<anyhow::Result<_>>()?,
            track: parsed.track,
            mappings: parsed.mappings,
            read_tokens: parsed.read_tokens,
            publish_every_ms: parsed
                .publish_every_ms
                .unwrap_or(baton_query::SnapshotPublisher::DEFAULT_EVERY.as_millis() as u64),
            funnel: parsed.funnel,
            sql: parsed.sql.unwrap_or_else(|| DEFAULT_SQL.to_owned()),
            sql_tls_cert: parsed.sql_tls_cert,
            sql_tls_key: parsed.sql_tls_key,
            sql_statement_timeout_secs: parsed
                .sql_statement_timeout_secs
                .unwrap_or(baton_query::DEFAULT_STATEMENT_TIMEOUT.as_secs()),
            backtest_max_events: parsed.backtest_max_events,
            sendgrid_verification_key: parsed.sendgrid_verification_key,
            trust_forwarded_for: parsed.trust_forwarded_for.unwrap_or(false),
            browser_library: parsed.browser_library,
        };
        if let Some(http) = env_value(lookup, "BATON_HTTP")? {
            settings.http = http;
        }
        if let Some(data) = env_value::<String>(lookup, "BATON_DATA")? {
            settings.data = Some(PathBuf::from(data));
        }
        if let Some(nats) = env_value(lookup, "BATON_NATS")? {
            settings.nats = Some(nats);
        }
        if let Some(dir) = env_value::<String>(lookup, "BATON_QUARANTINE_DIR")? {
            settings.quarantine_dir = Some(PathBuf::from(dir));
        }
        if let Some(value) = env_value(lookup, "BATON_MAX_FUTURE_SKEW_SECS")? {
            settings.max_future_skew_secs = value;
        }
        if let Some(value) = env_value(lookup, "BATON_RETRY_AFTER_SECS")? {
            settings.retry_after_secs = value;
        }
        if let Some(value) = env_value(lookup, "BATON_MAX_BATCH_EVENTS")? {
            settings.max_batch_events = value;
        }
        if let Some(value) = env_value(lookup, "BATON_LIMITS_MAX_EVENT_BYTES")? {
            settings.limits.max_event_bytes = value;
        }
        if let Some(value) = env_value(lookup, "BATON_LIMITS_MAX_REQUEST_BYTES")? {
            settings.limits.max_request_bytes = value;
        }
        if let Some(value) = env_value(lookup, "BATON_LIMITS_ITEMS_PER_SECOND_PER_KEY")? {
            settings.key_rate.items_per_second = value;
        }
        if let Some(value) = env_value(lookup, "BATON_LIMITS_BURST_PER_KEY")? {
            settings.key_rate.burst = value;
        }
        if let Some(value) = env_value(lookup, "BATON_LIMITS_BYTES_PER_SECOND_PER_KEY")? {
            settings.key_rate.bytes_per_second = value;
        }
        if let Some(value) = env_value(lookup, "BATON_LIMITS_BURST_BYTES_PER_KEY")? {
            settings.key_rate.burst_bytes = value;
        }
        if let Some(dir) = env_value::<String>(lookup, "BATON_BROWSER_LIBRARY")? {
            settings.browser_library = Some(PathBuf::from(dir));
        }
        if let Some(value) = env_value(lookup, "BATON_TRUST_FORWARDED_FOR")? {
            settings.trust_forwarded_for = value;
        }
        if let Some(value) = env_value(lookup, "BATON_QUARANTINE_MAX_BYTES")? {
            settings.quarantine_max_bytes = value;
        }
        // The file's keys are replaced, not extended: an environment that sets keys says
        // which keys are valid.
        if let Some(text) = lookup("BATON_WRITE_KEYS") {
            settings.write_keys = text
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| {
                    part.parse::<WriteKey>().map_err(|error| {
                        anyhow::anyhow!("environment variable BATON_WRITE_KEYS: {error}")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(text) = lookup("BATON_READ_TOKENS") {
            settings.read_tokens = text
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(value) = env_value(lookup, "BATON_PUBLISH_EVERY_MS")? {
            settings.publish_every_ms = value;
        }
        if let Some(sql) = env_value(lookup, "BATON_SQL")? {
            settings.sql = sql;
        }
        if let Some(cert) = env_value::<String>(lookup, "BATON_SQL_TLS_CERT")? {
            settings.sql_tls_cert = Some(PathBuf::from(cert));
        }
        if let Some(key) = env_value::<String>(lookup, "BATON_SQL_TLS_KEY")? {
            settings.sql_tls_key = Some(PathBuf::from(key));
        }
        if let Some(secs) = env_value(lookup, "BATON_SQL_STATEMENT_TIMEOUT_SECS")? {
            settings.sql_statement_timeout_secs = secs;
        }
        if settings.sql_statement_timeout_secs == 0 {
            anyhow::bail!(
                "sql_statement_timeout_secs is 0: give the longest a SQL statement may run, in seconds (the default is {})",
                baton_query::DEFAULT_STATEMENT_TIMEOUT.as_secs()
            );
        }
        if let Some(max) = env_value(lookup, "BATON_BACKTEST_MAX_EVENTS")? {
            settings.backtest_max_events = Some(max);
        }
        if let Some(key) = env_value::<String>(lookup, "BATON_SENDGRID_VERIFICATION_KEY")? {
            settings.sendgrid_verification_key = Some(key);
        }
        if let Some(funnel) = env_value::<String>(lookup, "BATON_FUNNEL")? {
            settings.funnel = Some(PathBuf::from(funnel));
        }
        if settings.limits.max_event_bytes == 0 || settings.limits.max_request_bytes == 0 {
            bail!("limits.max_event_bytes and limits.max_request_bytes must be above 0");
        }
        Ok(settings)
    }

    /// The SQL endpoint's TLS files: both or neither.
    pub fn sql_tls(&self) -> anyhow::Result<Option<baton_query::SqlTls>> {
        match (&self.sql_tls_cert, &self.sql_tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(baton_query::SqlTls {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (Some(_), None) => bail!(
                "sql_tls_cert is set but sql_tls_key is not: TLS for the SQL endpoint needs the certificate and its private key"
            ),
            (None, Some(_)) => bail!(
                "sql_tls_key is set but sql_tls_cert is not: TLS for the SQL endpoint needs the certificate and its private key"
            ),
        }
    }

    /// The collector's configuration, its quarantine under `data` unless set.
    pub fn collector_config(&self, data: &Path) -> anyhow::Result<CollectorConfig> {
        let listen: SocketAddr = self.http.parse().map_err(|error| {
            anyhow::anyhow!(
                "http address {:?}: {error} (expected HOST:PORT, e.g. {DEFAULT_HTTP})",
                self.http
            )
        })?;
        let quarantine_dir = self
            .quarantine_dir
            .clone()
            .unwrap_or_else(|| data.join("quarantine"));
        let mut config = CollectorConfig::new(listen, quarantine_dir);
        config.limits = self.limits;
        config.write_keys.clone_from(&self.write_keys);
        config.track_rules.clone_from(&self.track);
        config.mappings.clone_from(&self.mappings);
        config.max_future_skew_millis =
            i64::try_from(self.max_future_skew_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        config.max_batch_events = self.max_batch_events.max(1);
        config.retry_after = Duration::from_secs(self.retry_after_secs.max(1));
        config.quarantine_max_bytes = self.quarantine_max_bytes;
        config.key_rate = self.key_rate;
        config.trust_forwarded_for = self.trust_forwarded_for;
        if let Some(dir) = &self.browser_library
            && !dir.join("standalone.js").is_file()
        {
            bail!(
                "browser_library {}: no standalone.js there; point it at the dist/umd directory of @segment/analytics-next (npm install @segment/analytics-next)",
                dir.display()
            );
        }
        config.browser_library.clone_from(&self.browser_library);
        if let Some(key) = &self.sendgrid_verification_key {
            config.sendgrid_key = Some(
                key.parse()
                    .map_err(|error| anyhow::anyhow!("sendgrid_verification_key: {error}"))?,
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("baton.toml");
        std::fs::write(
            &path,
            "http = \"127.0.0.1:9000\"\n[limits]\nmax_event_bytes = 1000\n\
             [[write_keys]]\nsource = \"web\"\nkey = \"k1\"\n\
             [track]\n\"Trial Started\" = \"demo_requested\"\n",
        )
        .expect("write");
        let env = |name: &str| match name {
            "BATON_LIMITS_MAX_EVENT_BYTES" => Some("2000".to_owned()),
            "BATON_WRITE_KEYS" => Some("app:k2, web:k3".to_owned()),
            _ => None,
        };
        let settings = Settings::load(Some(&path), &env).expect("settings");
        assert_eq!(settings.http, "127.0.0.1:9000");
        assert_eq!(settings.limits.max_event_bytes, 2000);
        assert_eq!(settings.limits.max_request_bytes, 500 * 1024);
        assert_eq!(settings.write_keys.len(), 2);
        assert_eq!(settings.track["Trial Started"].kind, "demo_requested");

        let bad = |name: &str| (name == "BATON_RETRY_AFTER_SECS").then(|| "soon".to_owned());
        let error = Settings::load(Some(&path), &bad).expect_err("not a number");
        assert!(
            error.to_string().contains("BATON_RETRY_AFTER_SECS"),
            "{error}"
        );
    }

    #[test]
    fn the_shipped_deployment_config_loads_as_documented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/baton.toml");
        let none = |_: &str| None;
        let settings = Settings::load(Some(&path), &none).expect("deploy/baton.toml loads");
        assert_eq!(settings.sql_statement_timeout_secs, 60);
        assert_eq!(settings.quarantine_max_bytes, 256 << 20);
        assert_eq!(settings.key_rate, baton_producer::KeyRate::default());
        // The website's key: public, so scoped; a rate per visitor by default.
        let web = &settings.write_keys[0];
        assert_eq!(web.source, "web");
        assert_eq!(web.scope.origins.len(), 2);
        assert_eq!(
            web.scope.per_address,
            Some(baton_producer::KeyRate::PER_VISITOR)
        );
        let kinds = web.scope.kinds.as_ref().expect("kinds");
        assert!(kinds.contains(&baton_core::Kind::ContentViewed));
        assert!(!kinds.contains(&baton_core::Kind::OpportunityClosedWon));
        assert!(web.allows_route(&baton_producer::Adapter::Segment));
        assert!(!web.allows_route(&baton_producer::Adapter::Native));
        assert!(settings.write_keys[1].scope.per_address.is_none());
        let env =
            |name: &str| (name == "BATON_LIMITS_ITEMS_PER_SECOND_PER_KEY").then(|| "0".to_owned());
        let settings = Settings::load(Some(&path), &env).expect("loads");
        assert_eq!(
            settings.key_rate.items_per_second, 0,
            "the environment turns it off"
        );
        let env = |name: &str| (name == "BATON_SQL_STATEMENT_TIMEOUT_SECS").then(|| "0".to_owned());
        let error = Settings::load(Some(&path), &env).expect_err("no limit is refused");
        assert!(
            error.to_string().contains("sql_statement_timeout_secs"),
            "{error}"
        );
    }

    #[test]
    fn a_mistaken_scope_stops_start_up_naming_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let none = |_: &str| None;
        for (scope, expected) in [
            (
                "kinds = [\"touches\"]",
                "write_keys[1].kinds: unknown kind or family \"touches\"",
            ),
            (
                "routes = [\"graphql\"]",
                "write_keys[1].routes: unknown route \"graphql\"",
            ),
            (
                "origins = [\"https://www.example.com/\"]",
                "write_keys[1].origins: \"https://www.example.com/\" is not an origin",
            ),
        ] {
            let path = dir.path().join("baton.toml");
            std::fs::write(
                &path,
                format!(
                    "[[write_keys]]\nsource = \"crm\"\nkey = \"k0\"\n\n\
                     [[write_keys]]\nsource = \"web\"\nkey = \"k1\"\n{scope}\n"
                ),
            )
            .expect("write");
            let error = Settings::load(Some(&path), &none).expect_err("refused");
            assert!(format!("{error:#}").contains(expected), "{error:#}");
        }
    }

    #[test]
    fn sql_tls_takes_both_files_or_neither() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("baton.toml");
        std::fs::write(&path, "sql_tls_cert = \"/etc/baton/sql.crt\"\n").expect("write");
        let none = |_: &str| None;
        let settings = Settings::load(Some(&path), &none).expect("loads");
        let error = settings
            .sql_tls()
            .expect_err("a certificate without its key");
        assert!(error.to_string().contains("sql_tls_key is not"), "{error}");
        let env =
            |name: &str| (name == "BATON_SQL_TLS_KEY").then(|| "/etc/baton/sql.key".to_owned());
        let tls = Settings::load(Some(&path), &env)
            .expect("loads")
            .sql_tls()
            .expect("both files")
            .expect("TLS on");
        assert_eq!(tls.cert, PathBuf::from("/etc/baton/sql.crt"));
        assert_eq!(tls.key, PathBuf::from("/etc/baton/sql.key"));
        assert!(
            Settings::load(None, &none)
                .expect("loads")
                .sql_tls()
                .expect("neither")
                .is_none()
        );
    }

    #[test]
    fn a_sendgrid_key_that_is_not_one_is_named() {
        let env = |name: &str| {
            (name == "BATON_SENDGRID_VERIFICATION_KEY").then(|| "bm90IGEga2V5".to_owned())
        };
        let settings = Settings::load(None, &env).expect("settings");
        let error = settings
            .collector_config(Path::new("/tmp"))
            .expect_err("not a key");
        assert!(
            error.to_string().contains("sendgrid_verification_key"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors_with_a_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("baton.toml");
        std::fs::write(&path, "http = \"127.0.0.1:9000\"\nhtpp = 1\n").expect("write");
        let error = Settings::load(Some(&path), &|_| None).expect_err("unknown key");
        let text = error.to_string();
        assert!(text.contains("htpp") && text.contains("line 2"), "{text}");
    }
}
