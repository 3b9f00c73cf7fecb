//! `baton bench collect`: HTTP ingest through the collector against appending the same events
//! directly, in one run, on the same kind of log.
//!
//! The baseline is the best direct path: one caller appending batches of 5,000, two in flight
//! (what `baton ingest` does). A second direct figure appends the HTTP clients' batches (100 events)
//! from as many concurrent callers, without HTTP or JSON. The HTTP side is several concurrent clients posting NDJSON batches of
//! 100 events to `POST /v1/events` on a collector served in-process on a loopback port, each
//! request timed from send to the answer; every answer must be 200 with every event accepted.
//! Request bodies are rendered before the clock starts (a source has its JSON already).

use crate::bench::{Phase, median_phase, unique_events};
use crate::cpu::CpuSample;
use anyhow::Context;
use async_nats::jetstream;
use baton_core::Event;
use baton_log::{AnyLog, EmbeddedConfig, EmbeddedLog, EventLog, JetStreamConfig, JetStreamLog};
use baton_producer::{Collector, CollectorConfig};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Events per run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Run both sides on JetStream at this URL instead of the embedded log.
    #[arg(long, env = "BATON_NATS")]
    nats: Option<String>,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Rounds; each runs both sides, and the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print `{"direct_eps":..,"http_eps":..,"ratio":..,"p50_ms":..,"p99_ms":..}` (plus
    /// `direct_batch_eps` and `batch_ratio`).
    #[arg(long)]
    json: bool,
}

/// A fresh, empty log of the kind under test, and how to clean it up.
async fn fresh_log(nats: Option<&str>, tag: &str, dir: &std::path::Path) -> anyhow::Result<AnyLog> {
    match nats {
        Some(url) => {
            let mut config = JetStreamConfig::new(url);
            config.stream = format!("BENCH_COLLECT_{tag}");
            config.subject_prefix = format!("benchcollect{tag}");
            // As `baton serve --nats` runs it: the writer's id index on disk.
            config.ids_dir = Some(dir.join(tag).join("jetstream-ids"));
            Ok(AnyLog::JetStream(JetStreamLog::connect(config).await?))
        }
        None => Ok(AnyLog::Embedded(
            EmbeddedLog::open(EmbeddedConfig::new(dir.join(tag))).await?,
        )),
    }
}

async fn drop_log(log: AnyLog, nats: Option<&str>) -> anyhow::Result<()> {
    if let (AnyLog::JetStream(log), Some(url)) = (&log, nats) {
        let client = async_nats::connect(url).await?;
        jetstream::new(client)
            .delete_stream(&log.config().stream)
            .await
            .context("deleting the benchmark stream")?;
    }
    Ok(())
}

async fn direct(log: &AnyLog, events: &[Event]) -> anyhow::Result<Phase> {
    crate::bench::baton_append(log, events, 5_000).await
}

/// The same batches as the HTTP clients send, appended directly by as many concurrent callers:
/// what the HTTP layer and JSON cost over the same batching, without the collector's grouping.
async fn direct_batched(
    log: &AnyLog,
    events: &[Event],
    batch: usize,
    callers: usize,
) -> anyhow::Result<Phase> {
    let callers = callers.max(1);
    let shares: Vec<Vec<Vec<Event>>> = (0..callers)
        .map(|caller| {
            events
                .chunks(batch.max(1))
                .skip(caller)
                .step_by(callers)
                .map(<[Event]>::to_vec)
                .collect()
        })
        .collect();
    let (started, cpu) = (Instant::now(), CpuSample::now());
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let log = log.clone();
        tasks.spawn(async move {
            for chunk in share {
                log.append(chunk).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("direct caller")??;
    }
    Ok(Phase::end(events.len(), started, cpu))
}

/// Events per second and every request's latency.
async fn over_http(
    log: AnyLog,
    bodies: &[String],
    events: usize,
    clients: usize,
    quarantine: &std::path::Path,
) -> anyhow::Result<(Phase, Vec<Duration>)> {
    let mut config = CollectorConfig::new(
        "127.0.0.1:0".parse().expect("invariant: a valid address"),
        quarantine,
    );
    // Batches of 100 of the generator's events stay well under the default 500 KB, but the
    // bench should not fail on a larger --batch.
    config.limits.max_request_bytes = 64 * 1024 * 1024;
    let collector = Collector::bind(config, log.clone()).await?;
    let addr = collector.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(collector.serve(axum::Router::new(), async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let url = format!("http://{addr}/v1/events");
    let shares: Vec<Vec<String>> = (0..clients.max(1))
        .map(|client_index| {
            bodies
                .iter()
                .skip(client_index)
                .step_by(clients.max(1))
                .cloned()
                .collect()
        })
        .collect();
    let (started, cpu) = (Instant::now(), CpuSample::now());
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let client = client.clone();
        let url = url.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(share.len());
            for body in share {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let answer = response.bytes().await?;
                latencies.push(sent.elapsed());
                anyhow::ensure!(
                    status.as_u16() == 200,
                    "the collector answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("client task")??);
    }
    let phase = Phase::end(events, started, cpu);
    let _ = stop.send(());
    server.await.context("collector task")??;
    let stat = log.stat().await?;
    anyhow::ensure!(
        stat.events as usize == events,
        "the log holds {} events after HTTP ingest of {events}",
        stat.events
    );
    Ok((phase, latencies))
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub async fn collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let events = unique_events(args.events);
    let bodies: Vec<String> = events
        .chunks(args.batch.max(1))
        .map(|chunk| {
            let mut body = String::new();
            for event in chunk {
                body.push_str(&baton_core::event_to_json(event).to_string());
                body.push('\n');
            }
            body
        })
        .collect();
    let dir = tempfile::tempdir().context("temp dir")?;
    let nats = args.nats.as_deref();
    let mut direct_rates = Vec::new();
    let mut http_rates = Vec::new();
    let mut batched_rates = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..args.rounds.max(1) {
        let tag = format!("{}_{round}", std::process::id());
        let log = fresh_log(nats, &format!("direct{tag}"), dir.path()).await?;
        direct_rates.push(direct(&log, &events).await?);
        drop_log(log, nats).await?;

        let log = fresh_log(nats, &format!("batched{tag}"), dir.path()).await?;
        batched_rates.push(direct_batched(&log, &events, args.batch, args.clients).await?);
        drop_log(log, nats).await?;

        let log = fresh_log(nats, &format!("http{tag}"), dir.path()).await?;
        let quarantine = dir.path().join(format!("quarantine{tag}"));
        let (phase, round_latencies) = over_http(
            log.clone(),
            &bodies,
            events.len(),
            args.clients,
            &quarantine,
        )
        .await?;
        http_rates.push(phase);
        latencies.extend(round_latencies);
        drop_log(log, nats).await?;
        if !args.json {
            eprintln!("round {} of {} done", round + 1, args.rounds.max(1));
        }
    }
    latencies.sort();
    let ((direct_eps, direct_cpu), (http_eps, http_cpu), (batched_eps, batched_cpu)) = (
        median_phase(&direct_rates),
        median_phase(&http_rates),
        median_phase(&batched_rates),
    );
    let ratio = http_eps / direct_eps.max(1e-9);
    let batched_ratio = http_eps / batched_eps.max(1e-9);
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "backend": if nats.is_some() { "jetstream" } else { "embedded" },
                "direct_eps": direct_eps.round(),
                "http_eps": http_eps.round(),
                "ratio": (ratio * 1000.0).round() / 1000.0,
                "direct_batch_eps": batched_eps.round(),
                "batch_ratio": (batched_ratio * 1000.0).round() / 1000.0,
                "p50_ms": (p50 * 100.0).round() / 100.0,
                "p99_ms": (p99 * 100.0).round() / 100.0,
                "cpu": {
                    "direct": direct_cpu.map(|cpu| cpu.json()),
                    "direct_batch": batched_cpu.map(|cpu| cpu.json()),
                    "http": http_cpu.map(|cpu| cpu.json()),
                },
            })
        );
    } else {
        println!(
            "collect, {} events on the {} log, median of {} rounds",
            args.events,
            if nats.is_some() {
                "JetStream"
            } else {
                "embedded"
            },
            args.rounds.max(1)
        );
        println!("  direct append, batches of 5000   {direct_eps:>12.0} events/s  (baseline)");
        println!(
            "  direct, {} callers, batches of {:<4} {batched_eps:>11.0} events/s  (HTTP is {batched_ratio:.3} of it)",
            args.clients, args.batch
        );
        println!(
            "  HTTP, {} clients, batches of {:<5} {http_eps:>12.0} events/s  ratio {ratio:.3}",
            args.clients, args.batch
        );
        println!("  request latency                  p50 {p50:.2} ms, p99 {p99:.2} ms");
        // Clients, collector and log are all this process; the rest of the machine should be
        // near zero here, and the idle share says how far the phase was from using both cores.
        for (name, cpu) in [
            ("direct, batches of 5000", direct_cpu),
            ("direct, batches of the clients'", batched_cpu),
            ("HTTP", http_cpu),
        ] {
            if let Some(cpu) = cpu {
                println!(
                    "  cpu, {name:<32} {:>5.2} us/event here, {:>5.2} elsewhere, cores idle {:>3.0}%",
                    cpu.own_us,
                    cpu.others_us,
                    cpu.idle * 100.0
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
