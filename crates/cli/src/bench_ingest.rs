//! `baton bench ingest`: `baton ingest` of a generated NDJSON file into a fresh embedded log,
//! against DuckDB loading the same file into a table of a database file, alternated in one
//! run; each as its own process, timed from outside, with its peak memory.

use anyhow::Context;
use baton_producer::{History, HistoryConfig};
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Events in the generated file (a synthetic history, as `baton gen` writes it).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Nurture touches per person, as a multiple of the default (as `baton gen --engagement`).
    #[arg(long, default_value_t = 7)]
    engagement: u32,
    /// Rounds; each runs baton then DuckDB, and the medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Python interpreter with the `duckdb` package, for the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print `{"events":..,"baton_eps":..,"duckdb_eps":..,"ratio":..,...}`.
    #[arg(long)]
    json: bool,
}

/// What one load of the file took.
#[derive(Clone, Copy, Debug)]
struct Load {
    seconds: f64,
    peak_mb: Option<f64>,
}

/// DuckDB's load: the file into a table of a new database file, in one statement, timed in
/// the interpreter around that statement alone (its start and import are not counted).
const DUCKDB_LOAD: &str = r#"
import json, resource, sys, time
import duckdb
path, database = sys.argv[1], sys.argv[2]
con = duckdb.connect(database)
con.execute("SET enable_progress_bar = false")
started = time.perf_counter()
con.execute("CREATE TABLE events AS SELECT * FROM read_json(?, format = 'newline_delimited')", [path])
con.execute("CHECKPOINT")
seconds = time.perf_counter() - started
rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
con.close()
print(json.dumps({"seconds": seconds, "rows": rows}))
"#;

pub fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.events > 0,
        "--events 0: a benchmark needs at least one line to load"
    );
    let dir = tempfile::tempdir().context("temp dir")?;
    let file = dir.path().join("history.ndjson");
    let (lines, bytes) = write_history(&file, args.events, args.engagement)?;
    let duckdb = duckdb_version(&args.python);
    if let Err(reason) = &duckdb {
        eprintln!("DuckDB baseline skipped: {reason}");
    }
    let exe = std::env::current_exe().context("finding the baton executable")?;
    let mut baton_loads = Vec::new();
    let mut duckdb_loads = Vec::new();
    let mut accepted = None;
    for round in 0..args.rounds.max(1) {
        let data = dir.path().join(format!("baton-{round}"));
        let (load, summary) = baton_ingest(&exe, &data, &file)?;
        accepted = summary["accepted"].as_u64();
        baton_loads.push(load);
        std::fs::remove_dir_all(&data).ok();
        if duckdb.is_ok() {
            let database = dir.path().join(format!("duckdb-{round}.db"));
            let load = duckdb_load(&args.python, &database, &file, lines)?;
            duckdb_loads.push(load);
            std::fs::remove_file(&database).ok();
        }
    }
    let baton = median_load(&baton_loads);
    let base = (!duckdb_loads.is_empty()).then(|| median_load(&duckdb_loads));
    let eps = |load: Load| lines as f64 / load.seconds.max(1e-9);
    let ratio = base.map(|base| base.seconds / baton.seconds);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": lines,
                "bytes": bytes,
                "accepted": accepted,
                "rounds": baton_loads.len(),
                "baton_seconds": round3(baton.seconds),
                "baton_eps": eps(baton).round(),
                "baton_peak_rss_mb": baton.peak_mb.map(f64::round),
                "duckdb": duckdb.as_ref().ok(),
                "duckdb_seconds": base.map(|b| round3(b.seconds)),
                "duckdb_eps": base.map(|b| eps(b).round()),
                "duckdb_peak_rss_mb": base.and_then(|b| b.peak_mb).map(f64::round),
                "ratio": ratio.map(round3),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "ingest, {lines} lines ({:.0} MiB, {} accepted), median of {} rounds, each a new process",
        bytes as f64 / (1024.0 * 1024.0),
        accepted.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        baton_loads.len()
    );
    let show = |name: &str, load: Load| {
        println!(
            "  {name:<38} {:>8.2} s  {:>10.0} lines/s  peak {}",
            load.seconds,
            eps(load),
            load.peak_mb
                .map_or_else(|| "?".to_owned(), |mb| format!("{mb:.0} MiB"))
        );
    };
    show("baton ingest (embedded log)", baton);
    match (&duckdb, base) {
        (Ok(version), Some(base)) => {
            show(&format!("DuckDB {version} read_json into a table"), base);
            println!(
                "  ratio (DuckDB's time / baton's)      {:>8.3}",
                base.seconds / baton.seconds
            );
        }
        (Err(reason), _) => println!("  DuckDB baseline skipped: {reason}"),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn median_load(loads: &[Load]) -> Load {
    let seconds = crate::bench::median(loads.iter().map(|l| l.seconds).collect());
    let peaks: Vec<f64> = loads.iter().filter_map(|l| l.peak_mb).collect();
    Load {
        seconds,
        peak_mb: (!peaks.is_empty()).then(|| crate::bench::median(peaks)),
    }
}

/// Writes a synthetic history of `events` lines (retried deliveries included, as sources
/// send them); returns the lines and bytes written.
fn write_history(path: &Path, events: usize, engagement: u32) -> anyhow::Result<(u64, u64)> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut config = HistoryConfig::new(1, u64::MAX);
    config.engagement = engagement.max(1);
    let mut lines = 0_u64;
    for event in History::new(config).take(events) {
        crate::generate::write_line(&mut out, &event)?;
        lines += 1;
    }
    out.flush().context("writing the history")?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok((lines, bytes))
}

/// The `duckdb` package's version, or why it cannot be used.
fn duckdb_version(python: &str) -> Result<String, String> {
    let output = Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .map_err(|error| format!("{python} could not be started ({error})"))?;
    if !output.status.success() {
        return Err(format!(
            "{python} has no `duckdb` package (pip install duckdb): {}",
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn baton_ingest(exe: &Path, data: &Path, file: &Path) -> anyhow::Result<(Load, serde_json::Value)> {
    let mut command = Command::new(exe);
    command
        .arg("--data")
        .arg(data)
        .arg("ingest")
        .arg(file)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let run = run_measured(command)?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        run.status.success(),
        "baton ingest failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&run.stdout).context("reading baton ingest's summary")?;
    let peak_mb = run.peak_mb;
    Ok((Load { seconds, peak_mb }, summary))
}

fn duckdb_load(python: &str, database: &Path, file: &Path, lines: u64) -> anyhow::Result<Load> {
    let mut command = Command::new(python);
    command
        .arg("-c")
        .arg(DUCKDB_LOAD)
        .arg(file)
        .arg(database)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = run_measured(command)?;
    anyhow::ensure!(
        run.status.success(),
        "the DuckDB load failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let peak_mb = run.peak_mb;
    // The result is the last line: DuckDB may write a progress bar before it.
    let stdout = String::from_utf8_lossy(&run.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let result: serde_json::Value = serde_json::from_str(last)
        .with_context(|| format!("reading the DuckDB load's result from {stdout:?}"))?;
    let rows = result["rows"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        rows == lines,
        "DuckDB loaded {rows} rows of {lines} lines: the baseline did not load the whole file"
    );
    Ok(Load {
        seconds: result["seconds"]
            .as_f64()
            .context("the DuckDB load's time")?,
        peak_mb,
    })
}

/// A benchmark process that ended.
pub(crate) struct Finished {
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) peak_mb: Option<f64>,
}

/// Runs `command` to its end; its status, stdout and stderr, and its peak resident memory in
/// MiB (the kernel's high-water mark, `VmHWM`, read every 20 ms while it runs).
pub(crate) fn run_measured(mut command: Command) -> anyhow::Result<Finished> {
    use std::io::Read;
    let mut child = command.spawn().context("starting a benchmark process")?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let _ = pipe.read_to_end(&mut buffer);
            buffer
        })
    };
    let out = drain(Box::new(child.stdout.take().context("stdout")?));
    let err = drain(Box::new(child.stderr.take().context("stderr")?));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib: Option<f64> = None;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        }) {
            peak_kib = Some(peak_kib.map_or(kib, |peak| peak.max(kib)));
        }
        if let Some(status) = child
            .try_wait()
            .context("waiting for a benchmark process")?
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    Ok(Finished {
        status,
        stdout: out,
        stderr: err,
        peak_mb: peak_kib.map(|kib| kib / 1024.0),
    })
}
