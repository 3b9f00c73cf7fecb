//! The `baton` binary end to end: gen, ingest, log stat and bench, on the embedded log and on
//! a real nats-server.

#[path = "../../../tests/common/mod.rs"]
mod common;

use baton_testkit::NatsServer;
use common::{Served, baton, generate, json_of, json_ok};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Runs a `baton bench` subcommand with `--json` and returns its figures.
fn bench_figures(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = baton(dir, &all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_of(&output)
}

#[test]
fn gen_is_deterministic_and_streams_to_stdout_too() {
    let dir = tempfile::tempdir().expect("dir");
    let a = generate(dir.path(), "11", "30", "a.ndjson");
    let b = generate(dir.path(), "11", "30", "b.ndjson");
    let c = generate(dir.path(), "12", "30", "c.ndjson");
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, another history");
    let stdout = baton(dir.path(), &["gen", "--seed", "11", "--accounts", "30"]);
    assert_eq!(stdout.stdout, a);
    assert!(a.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() > 300);
}

/// Ingests a generated file twice plus a file with bad lines, and checks every count.
fn ingest_round_trip(dir: &Path, backend: &[&str]) {
    let bytes = generate(dir, "3", "40", "history.ndjson");
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;

    let args = |extra: &[&str]| -> Vec<String> {
        backend.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |extra: &[&str]| {
        let args = args(extra);
        baton(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let first = run(&["ingest", "history.ndjson", "--json"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = json_of(&first);
    let accepted = first["accepted"].as_u64().expect("accepted");
    let duplicates = first["duplicates"].as_u64().expect("duplicates");
    assert_eq!(first["rejected"], 0);
    assert_eq!(accepted + duplicates, lines);
    assert!(duplicates > 0, "the history carries retried deliveries");

    let second = json_of(&run(&["ingest", "history.ndjson", "--json"]));
    assert_eq!(second["accepted"], 0, "the second ingest stores nothing");
    assert_eq!(second["duplicates"].as_u64(), Some(lines));

    let stat = json_of(&run(&["log", "stat", "--json"]));
    assert_eq!(stat["events"].as_u64(), Some(accepted));
    assert!(stat["head"].as_u64().expect("head") >= accepted);

    let good = r#"{"kind":"demo_requested","occurred_at":"2026-01-05T10:00:00Z","source":"web","person_id":"p-new","message_id":"fresh-1"}"#;
    // The last line has neither event_id nor message_id: its id comes from its own text.
    let bad = format!(
        "{good}\n{}\n\nnot json at all\n{}\n{}\n",
        r#"{"kind":"content_viewed","occurred_at":"yesterday","source":"web","person_id":"p","data":{"url":"u","content_type":"blog"}}"#,
        r#"{"kind":"meeting_held","occurred_at":"2026-01-05T10:00:00Z","source":"crm","person_id":"p","message_id":"m-2","data":{"need_declared":true}}"#,
        r#"{"kind":"email_opened","occurred_at":"2026-01-06T10:00:00Z","source":"sendgrid","person_id":"p","data":{"email_id":"e-1"}}"#,
    );
    std::fs::write(dir.join("bad.ndjson"), bad).expect("write");
    let output = run(&["ingest", "bad.ndjson", "--json"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "partly rejected input exits 2"
    );
    let summary = json_of(&output);
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64()),
        (Some(3), Some(2))
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2: field `occurred_at`: not an RFC 3339 timestamp: \"yesterday\""),
        "{stderr}"
    );
    assert!(stderr.contains("line 4: not valid JSON"), "{stderr}");

    let stat = json_of(&run(&["log", "stat", "--json"]));
    assert_eq!(stat["events"].as_u64(), Some(accepted + 3));

    let human = run(&["ingest", "bad.ndjson"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("accepted     0")
            && text.contains("duplicates   3")
            && text.contains("rejected     2"),
        "{text}"
    );
}

#[test]
fn ingest_on_the_embedded_log() {
    let dir = tempfile::tempdir().expect("dir");
    ingest_round_trip(dir.path(), &["--data", "data"]);
    assert!(dir.path().join("data").is_dir());
}

#[test]
fn ingest_on_jetstream() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    ingest_round_trip(dir.path(), &["--nats", server.url()]);
    let data = dir.path().join("baton-data");
    assert!(
        !data.join("segments").exists(),
        "JetStream runs write no local log"
    );
    // Only the writer's id index, kept across runs (issue 32).
    assert!(
        data.join("jetstream-ids/BATON/0/manifest").is_file(),
        "the writer's id index is on disk"
    );
}

/// Output piped into a reader that stops early (`baton funnel | head`) ends quietly, with the
/// status a shell gives a tool killed by SIGPIPE, not with a panic or an error message.
#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "3", "20", "history.ndjson");
    let ingested = baton(dir.path(), &["ingest", "history.ndjson"]);
    assert!(ingested.status.success());
    for args in [
        &["funnel"][..],
        &["report", "marketing"],
        &["log", "read"],
        &["gen", "--seed", "3", "--accounts", "20"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("BATON_NATS")
            .env_remove("BATON_DATA")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("baton runs");
        // The reader goes away before baton writes anything.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("baton ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let output = baton(dir.path(), &["ingest", "nope.ndjson"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("opening nope.ndjson"), "{stderr}");
}

#[test]
fn bench_append_prints_side_by_side_figures() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let figures = bench_figures(
        dir.path(),
        &[
            "append",
            "--events",
            "3000",
            "--rounds",
            "1",
            "--nats",
            server.url(),
        ],
    );
    for key in ["raw_eps", "nats_eps", "embedded_eps", "ratio"] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {figures}"
        );
    }
    let ratio =
        figures["nats_eps"].as_f64().unwrap_or(0.0) / figures["raw_eps"].as_f64().unwrap_or(1.0);
    assert!(
        (ratio - figures["ratio"].as_f64().unwrap_or(0.0)).abs() < 0.01,
        "{figures}"
    );
}

/// `bench share` checks every retried id itself (a writer that starts must find each as a
/// duplicate); here: a writer on another machine that downloads the shared index reads only
/// the ids after it, one that does not reads every id, and the benchmark's streams are gone
/// afterwards.
#[test]
fn bench_share_measures_a_writer_starting_from_the_shared_index() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let figures = bench_figures(
        dir.path(),
        &[
            "share",
            "--nats",
            server.url(),
            "--events",
            "20000",
            "--every",
            "3000",
            "--recent-ids",
            "1000",
        ],
    );
    let number = |path: &[&str]| {
        path.iter()
            .fold(&figures, |value, key| &value[*key])
            .as_u64()
            .unwrap_or_else(|| panic!("{path:?} in {figures}"))
    };
    let shared = number(&["shared_cover"]);
    assert!((3_000..=20_000).contains(&shared), "{figures}");
    // The shared writer appended 100 events of its own before the reading one started.
    assert_eq!(number(&["start_reading", "ids_read_from_stream"]), 20_100);
    assert_eq!(
        number(&["start_shared", "ids_read_from_stream"]),
        20_000 - shared
    );
    assert!(number(&["side_stream_bytes"]) > 24 * 3_000, "{figures}");
    for key in ["append_eps_sharing", "append_eps_not_sharing"] {
        assert!(figures[key].as_f64().is_some_and(|v| v > 0.0), "{figures}");
    }
    let streams: Vec<String> = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            use futures::TryStreamExt;
            let client = async_nats::connect(server.url()).await.expect("connect");
            async_nats::jetstream::new(client)
                .stream_names()
                .try_collect()
                .await
                .expect("stream names")
        });
    assert!(
        streams.is_empty(),
        "the benchmark deleted its streams: {streams:?}"
    );
}

/// `bench ids` checks every retried id itself (it fails when one is stored again or lands at
/// another position); here: the figures it prints, with ids in runs on disk and retries from
/// both the recent and the old part of the history, and the comparison with another build
/// (this one again, as a stand-in).
#[test]
fn bench_ids_measures_the_index_at_checkpoints_and_beside_a_baseline() {
    let dir = tempfile::tempdir().expect("dir");
    let figures = bench_figures(
        dir.path(),
        &[
            "ids",
            "--events",
            "300000",
            "--checkpoints",
            "120000",
            "--tail",
            "6000",
            "--retried",
            "0.05",
            "--old-share",
            "0.5",
            "--rounds",
            "1",
            "--baseline",
            env!("CARGO_BIN_EXE_baton"),
        ],
    );
    let rows = figures["checkpoints"].as_array().expect("checkpoints");
    let events: Vec<u64> = rows.iter().filter_map(|r| r["events"].as_u64()).collect();
    assert_eq!(events, [120_000, 300_000], "{figures}");
    let last = &rows[1];
    assert!(last["runs"].as_u64().is_some_and(|n| n >= 1), "{last}");
    let per_event = last["filter_bytes_per_event"].as_f64().expect("bytes");
    assert!(per_event > 0.5 && per_event <= 4.0, "{last}");
    for row in rows {
        assert!(row["retried"].as_u64().is_some_and(|n| n > 150), "{row}");
        for key in ["append_eps", "tail_eps", "ready_ms"] {
            assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {row}");
        }
    }
    assert!(
        last["retried_old"].as_u64().is_some_and(|n| n > 0),
        "{last}"
    );
    assert!(
        figures["index_disk_bytes"]
            .as_u64()
            .is_some_and(|b| b > 24 * 300_000)
    );
    let comparison = &figures["comparison"];
    for side in ["this", "baseline"] {
        assert!(
            comparison[side]["eps"].as_f64().is_some_and(|v| v > 0.0),
            "{comparison}"
        );
    }
}

#[test]
fn bench_ingest_prints_baton_beside_duckdb_and_says_when_duckdb_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let events = ["ingest", "--events", "4000", "--rounds", "1"];
    let figures = bench_figures(dir.path(), &events);
    assert_eq!(figures["events"].as_u64(), Some(4000), "{figures}");
    let accepted = figures["accepted"].as_u64().expect("accepted");
    assert!(accepted > 3000 && accepted <= 4000, "{figures}");
    for key in ["baton_eps", "duckdb_eps", "ratio", "baton_peak_rss_mb"] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {figures}"
        );
    }
    let ratio = figures["duckdb_seconds"].as_f64().unwrap_or(0.0)
        / figures["baton_seconds"].as_f64().unwrap_or(1.0);
    assert!(
        (ratio - figures["ratio"].as_f64().unwrap_or(0.0)).abs() < 0.01,
        "{figures}"
    );

    let mut without = events.to_vec();
    without.extend(["--python", "/nonexistent/python3"]);
    let figures = bench_figures(dir.path(), &without);
    assert!(figures["baton_eps"].as_f64().is_some_and(|v| v > 0.0));
    assert!(
        figures["duckdb_eps"].is_null() && figures["ratio"].is_null(),
        "{figures}"
    );
    let output = baton(
        dir.path(),
        &[
            "bench",
            "ingest",
            "--events",
            "500",
            "--rounds",
            "1",
            "--python",
            "/nonexistent/python3",
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("DuckDB baseline skipped: /nonexistent/python3 could not be started"),
        "{text}"
    );
}

#[test]
fn log_read_exports_what_ingest_takes_back() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "5", "20", "history.ndjson");
    let first = baton(
        dir.path(),
        &["--data", "one", "ingest", "history.ndjson", "--json"],
    );
    let accepted = json_of(&first)["accepted"].as_u64().expect("accepted");

    let export = baton(dir.path(), &["--data", "one", "log", "read"]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(lines.len() as u64, accepted);
    assert_eq!(lines[0]["position"], 1);
    assert_eq!(lines[lines.len() - 1]["position"].as_u64(), Some(accepted));
    std::fs::write(dir.path().join("export.ndjson"), &export.stdout).expect("write");

    let again = json_of(&baton(
        dir.path(),
        &["--data", "two", "ingest", "export.ndjson", "--json"],
    ));
    assert_eq!(
        again["accepted"].as_u64(),
        Some(accepted),
        "an export re-imports whole"
    );
    let round_trip = baton(dir.path(), &["--data", "two", "log", "read"]);
    let ids = |output: &Output| -> Vec<String> {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("json")["event_id"].to_string())
            .collect()
    };
    assert_eq!(
        ids(&round_trip),
        ids(&export),
        "same events in the same order"
    );

    let window = baton(
        dir.path(),
        &[
            "--data", "one", "log", "read", "--from", "3", "--limit", "2",
        ],
    );
    let window: Vec<Value> = String::from_utf8_lossy(&window.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(window.len(), 2);
    assert_eq!(window[0]["position"], 3);
}

#[test]
fn demo_generates_folds_and_prints_the_funnel() {
    let dir = tempfile::tempdir().expect("dir");
    let output = baton(
        dir.path(),
        &["demo", "--accounts", "60", "--seed", "4", "--no-serve"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("funnel b2b-default (sha256:"), "{text}");
    for stage in [
        "inquiry",
        "engaged",
        "mql",
        "sal",
        "sql",
        "opportunity",
        "proposal",
        "won",
        "lost",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(stage)),
            "{stage} missing: {text}"
        );
    }
    assert!(
        dir.path().join("baton-data").is_dir(),
        "the embedded default"
    );

    // A second run folds what is there rather than appending the history again.
    let events = json_of(&baton(dir.path(), &["log", "stat", "--json"]))["events"].clone();
    let again = baton(
        dir.path(),
        &["demo", "--accounts", "60", "--seed", "4", "--no-serve"],
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
    assert_eq!(
        json_of(&baton(dir.path(), &["log", "stat", "--json"]))["events"],
        events
    );
}

#[test]
fn funnel_summaries_agree_across_backends_and_follow_the_definition() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "8", "80", "history.ndjson");
    baton(dir.path(), &["ingest", "history.ndjson"]);
    baton(
        dir.path(),
        &["--nats", server.url(), "ingest", "history.ndjson"],
    );
    let embedded = json_of(&baton(dir.path(), &["funnel", "--json"]));
    let jetstream = json_of(&baton(
        dir.path(),
        &["--nats", server.url(), "funnel", "--json"],
    ));
    let without_position = |mut v: Value| {
        v.as_object_mut().expect("object").remove("position");
        v
    };
    assert_eq!(
        without_position(embedded.clone()),
        without_position(jetstream)
    );
    assert_eq!(
        embedded["events"],
        json_of(&baton(dir.path(), &["log", "stat", "--json"]))["events"]
    );
    let stages = embedded["stages"].as_array().expect("stages");
    // The default's acquisition stages and its customer stages past won.
    assert_eq!(stages.len(), 15);
    for key in [
        "name",
        "owner",
        "entered",
        "current",
        "converted",
        "conversion_rate",
        "median_days_in_stage",
        "returned",
    ] {
        assert!(stages[0].get(key).is_some(), "{key}");
    }
    assert!(
        embedded["won"]["deals"].as_u64().is_some_and(|d| d > 0),
        "{embedded}"
    );

    // A stricter MQL rule, tested against the same history.
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../funnels/default.toml"
    ))
    .expect("default funnel");
    let strict = default.replace(
        "high_intent = [\"demo_requested\", \"executive_event_attended\"]",
        "high_intent = []",
    );
    std::fs::write(dir.path().join("strict.toml"), strict).expect("write");
    let candidate = json_of(&baton(
        dir.path(),
        &["funnel", "--funnel", "strict.toml", "--json"],
    ));
    assert_ne!(candidate["definition_hash"], embedded["definition_hash"]);
    let mql = |v: &Value| v["stages"][2]["entered"].as_u64().expect("mql entered");
    assert!(
        mql(&candidate) < mql(&embedded),
        "fewer MQLs without high intent"
    );

    std::fs::write(
        dir.path().join("broken.toml"),
        default.replace(
            "owner = \"sales\"\nenter_on = [\"proposal_sent\"]",
            "owner = \"sales\"\nenter_on = [\"proposal_mailed\"]",
        ),
    )
    .expect("write");
    let broken = baton(dir.path(), &["funnel", "--funnel", "broken.toml"]);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("broken.toml:")
            && stderr.contains("unknown event kind \"proposal_mailed\""),
        "{stderr}"
    );
}

#[test]
fn bench_replay_prints_both_backends_side_by_side() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let figures = bench_figures(
        dir.path(),
        &[
            "replay",
            "--events",
            "4000",
            "--rounds",
            "1",
            "--visible-rate",
            "1000",
            "--visible-seconds",
            "0.5",
            "--nats",
            server.url(),
        ],
    );
    for key in [
        "read_eps",
        "replay_eps",
        "ratio",
        "persist_eps",
        "persist_ratio",
        "backtest_eps",
        "backtest_ratio",
        "backtest_kept_eps",
        "backtest_kept_ratio",
        "peak_rss_mb",
        "visible_p50_ms",
        "visible_p99_ms",
        "visible_max_ms",
        "visible_append_eps",
        "visible_batches",
        "nats_read_eps",
        "nats_replay_eps",
        "nats_ratio",
        "nats_persist_eps",
        "nats_persist_ratio",
        "nats_backtest_eps",
        "nats_visible_p50_ms",
        "nats_visible_p99_ms",
        "nats_visible_max_ms",
        "nats_visible_append_eps",
    ] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} in {figures}"
        );
    }
    let backtest = figures["backtest_eps"].as_f64().unwrap_or(0.0)
        / figures["read_eps"].as_f64().unwrap_or(1.0);
    assert!(
        (backtest - figures["backtest_ratio"].as_f64().unwrap_or(0.0)).abs() < 0.01,
        "{figures}"
    );
    // Keeping the view comes after the comparison is shown: never sooner.
    assert!(
        figures["backtest_kept_eps"].as_f64() <= figures["backtest_eps"].as_f64(),
        "{figures}"
    );
    // Percentiles of one set of latencies: whatever the machine's speed, they are ordered.
    for prefix in ["", "nats_"] {
        let ms = |name: &str| figures[format!("{prefix}visible_{name}_ms")].as_f64();
        assert!(
            ms("p50") <= ms("p99") && ms("p99") <= ms("max"),
            "{prefix}visible_* in {figures}"
        );
    }
}

#[test]
fn an_unreachable_nats_server_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    // Port 1 on loopback: nothing listens there. The command waits for it (a server may be
    // restarting) as long as it is told, saying so, then names what it could not reach.
    let output = baton(
        dir.path(),
        &[
            "--nats",
            "nats://127.0.0.1:1",
            "--wait-for-log",
            "2",
            "log",
            "stat",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to nats://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("waiting for it"), "{stderr}");
    let output = baton(dir.path(), &["--nats", "not a url", "log", "stat"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid NATS URL"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The projector killed with SIGKILL at many points resumes to exactly the state of a clean
/// rebuild: same stored bytes, same summary.
#[test]
fn a_projector_killed_anywhere_resumes_to_the_state_of_a_clean_rebuild() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "21", "1500", "history.ndjson");
    let output = baton(dir.path(), &["ingest", "history.ndjson", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = json_of(&baton(dir.path(), &["log", "stat", "--json"]))["head"]
        .as_u64()
        .expect("head");

    // A fixed seed picks the kill points: from before the view exists to mid-commit.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    let mut last_position = 0;
    for _ in 0..12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = std::time::Duration::from_millis(40 + seed % 150);
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["project", "--until-caught-up", "--commit-every", "300"])
            .current_dir(dir.path())
            .env_remove("BATON_NATS")
            .env_remove("BATON_DATA")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("baton runs");
        std::thread::sleep(delay);
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reaped");
        let views = json_of(&baton(dir.path(), &["views", "--json"]));
        if let Some(view) = views.as_array().and_then(|v| v.first()) {
            let position = view["position"].as_u64().expect("position");
            assert!(position >= last_position, "the checkpoint went back");
            assert!(position <= head);
            last_position = position;
        }
    }
    assert!(kills >= 3, "only {kills} runs were killed before finishing");
    let output = baton(dir.path(), &["project", "--until-caught-up", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json_of(&output)["position"].as_u64(), Some(head));

    let output = baton(
        dir.path(),
        &[
            "--views",
            "rebuilt",
            "project",
            "--until-caught-up",
            "--json",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored = |views: &str| {
        let store = baton_projector::ViewStore::open(dir.path().join(views)).expect("store");
        let name = store.live().expect("live").expect("a live view");
        store.open_view(&name).expect("open").dump().expect("dump")
    };
    let (resumed, rebuilt) = (stored("baton-data/views"), stored("rebuilt"));
    assert!(resumed.len() > 1000, "{} entries", resumed.len());
    assert!(
        resumed == rebuilt,
        "the resumed state differs from a clean rebuild"
    );
    let summary = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["funnel", "--json"]);
        json_of(&baton(dir.path(), &args))
    };
    assert_eq!(summary(&[]), summary(&["--views", "rebuilt"]));
}

/// Replay a candidate, list, compare, promote and drop, as a user would.
/// A candidate whose stages differ from the live ones (one more at the start, one more before
/// `won`, `sal` gone) is set beside the live definition stage by stage name, in the text and
/// JSON forms, with the stages of one definition only marked as such.
#[test]
fn replay_sets_stages_side_by_side_by_name() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "5", "60", "history.ndjson");
    let output = baton(dir.path(), &["ingest", "history.ndjson"]);
    assert!(output.status.success());
    let candidate = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/fixtures/more_stages.toml"
    ))
    .expect("the fixture");
    std::fs::write(dir.path().join("candidate.toml"), candidate).expect("write");
    // Not kept: the same comparison, folded in memory, and no candidate view stored (the
    // live view is brought up to date, as by any comparison).
    let views = |dir: &Path| {
        let listing = String::from_utf8_lossy(&baton(dir, &["views"]).stdout).into_owned();
        listing
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let unkept = json_ok(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--no-keep",
            "--json",
        ],
    );
    let listed = views(dir.path());
    assert_eq!(listed.len(), 1, "only the live view: {listed:?}");
    assert!(listed[0].contains("b2b-default"), "{listed:?}");
    let report = json_ok(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            "more",
            "--json",
        ],
    );
    assert_eq!(unkept["stages"], report["stages"]);
    assert_eq!(
        unkept["candidate"]["summary"],
        report["candidate"]["summary"]
    );
    assert_eq!(unkept["live"]["summary"], report["live"]["summary"]);
    assert_eq!(
        views(dir.path()).len(),
        2,
        "without it, the candidate is kept"
    );
    // A name that cannot be a view is refused before anything is folded or shown.
    let output = baton(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            "bad/name",
            "--json",
        ],
    );
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "nothing shown");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("\"bad/name\" is not allowed"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Kept whole after an in-memory fold, or built through the persistent projector with
    // --on-disk: the same comparison, and both views read back from their stores to it.
    let on_disk = json_ok(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            "more-disk",
            "--on-disk",
            "--json",
        ],
    );
    assert_eq!(on_disk["stages"], report["stages"]);
    assert_eq!(
        on_disk["candidate"]["summary"],
        report["candidate"]["summary"]
    );
    let reread = json_ok(dir.path(), &["compare", "more", "--json"]);
    let reread_disk = json_ok(dir.path(), &["compare", "more-disk", "--json"]);
    assert_eq!(reread["stages"], report["stages"]);
    assert_eq!(
        reread["candidate"]["summary"],
        report["candidate"]["summary"]
    );
    assert_eq!(
        reread_disk["candidate"]["summary"],
        report["candidate"]["summary"]
    );
    let listed = views(dir.path());
    assert!(
        listed
            .iter()
            .filter(|line| line.contains("built to position"))
            .count()
            == 2,
        "both candidates complete to their bound: {listed:?}"
    );
    let output = baton(dir.path(), &["drop", "more-disk"]);
    assert!(output.status.success());
    let stage_of = |side: &str, name: &str| -> Value {
        report[side]["summary"]["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let pairs = report["stages"].as_array().expect("stages side by side");
    let names: Vec<&str> = pairs
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "visitor",
            "inquiry",
            "engaged",
            "mql",
            "sal",
            "sql",
            "opportunity",
            "proposal",
            "negotiation",
            "won",
            "lost",
            "onboarding",
            "adopted",
            "renewed",
            "expanded",
            "advocate",
            "churned"
        ]
    );
    for pair in pairs {
        let name = pair["name"].as_str().expect("name");
        assert_eq!(pair["live"], stage_of("live", name), "{name}");
        assert_eq!(pair["candidate"], stage_of("candidate", name), "{name}");
    }
    assert!(pairs[0]["live"].is_null() && pairs[4]["candidate"].is_null());

    let output = baton(dir.path(), &["compare", "more"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let row = |name: &str| {
        text.lines()
            .find(|line| line.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .to_owned()
    };
    assert!(row("visitor").ends_with("(candidate only)"), "{text}");
    assert!(row("negotiation").ends_with("(candidate only)"), "{text}");
    assert!(row("sal").ends_with("(live only)"), "{text}");
    // The customer stages are the live default's: customers of the history went through them.
    assert!(row("onboarding").ends_with("(live only)"), "{text}");
    // How each MQL group's customers stayed: its customers and retained accounts, as the
    // JSON report counts them.
    let stayed = text
        .split("how their customers stayed")
        .nth(1)
        .unwrap_or_else(|| panic!("no customer block:\n{text}"));
    for (label, key) in [
        ("MQL under both", "mql_both"),
        ("MQL under live only", "mql_only_live"),
        ("MQL under candidate only", "mql_only_candidate"),
    ] {
        let line = stayed
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row:\n{stayed}"));
        let cells: Vec<&str> = line[line.find(label).expect("label") + label.len()..]
            .split_whitespace()
            .collect();
        assert_eq!(cells[0], report[key]["customers"].to_string(), "{line}");
        assert_eq!(cells[1], report[key]["retained"].to_string(), "{line}");
    }
    assert!(
        stage_of("live", "onboarding")["entered"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{report}"
    );
    // The `won` row holds each definition's own `won` count.
    let won_entered = |side: &str| stage_of(side, "won")["entered"].as_u64().expect("n");
    let won_row = row("won");
    let cells: Vec<&str> = won_row.split_whitespace().collect();
    assert_eq!(cells[1], won_entered("live").to_string(), "{text}");
    assert_eq!(cells[4], won_entered("candidate").to_string(), "{text}");

    // The comparison is kept beside the candidate, and `serve` serves it over HTTP as printed
    // and over SQL, stages matched by name.
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("baton-data/views/more/comparison.json"))
            .expect("kept beside the candidate"),
    )
    .expect("json");
    assert_eq!(kept["stages"], report["stages"]);
    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (served_report, rows, groups) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let report = client
            .get(format!("http://{}/v1/comparisons/more", served.addr))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        let rows = client
            .post(format!("http://{}/v1/sql", served.addr))
            .header("content-type", "application/sql")
            .body(
                "select stage, present_in, live_entered, candidate_entered \
                 from comparison_stages where candidate = 'more' order by ordinal",
            )
            .send()
            .await
            .expect("post")
            .text()
            .await
            .expect("body");
        let groups = client
            .post(format!("http://{}/v1/sql", served.addr))
            .header("content-type", "application/sql")
            .body(
                "select mql_under, people, customers, retained, logo_retention, nps_responses                  from comparison_mqls where candidate = 'more'",
            )
            .send()
            .await
            .expect("post")
            .text()
            .await
            .expect("body");
        let json = |text: &str| serde_json::from_str::<Value>(text).expect("json");
        (json(&report), json(&rows), json(&groups))
    });
    served.terminate();
    assert_eq!(served_report["stages"], report["stages"]);
    // How each MQL group's customers stayed, as the report has it.
    let groups = groups["rows"].as_array().expect("rows");
    let mut customers = 0;
    for (row, key) in groups
        .iter()
        .zip(["mql_both", "mql_only_live", "mql_only_candidate"])
    {
        let group = &report[key];
        for column in ["people", "customers", "retained", "nps_responses"] {
            assert_eq!(row[column], group[column], "{key}.{column}: {row}");
        }
        let (n, kept) = (
            group["customers"].as_u64().expect("n"),
            group["retained"].as_u64().expect("n"),
        );
        assert!(
            kept <= n && n <= group["people"].as_u64().expect("n"),
            "{group}"
        );
        if n > 0 {
            let share = row["logo_retention"].as_f64().expect("a share");
            assert!((share - kept as f64 / n as f64).abs() < 1e-12, "{row}");
        }
        customers += n;
    }
    assert!(
        customers > 0,
        "some MQLs' accounts became customers: {report}"
    );
    let rows = rows["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), pairs.len());
    for (row, pair) in rows.iter().zip(pairs) {
        assert_eq!(row["stage"], pair["name"]);
        let present = match (pair["live"].is_null(), pair["candidate"].is_null()) {
            (false, false) => "both",
            (false, true) => "live only",
            _ => "candidate only",
        };
        assert_eq!(row["present_in"], present, "{row}");
        assert_eq!(row["live_entered"], pair["live"]["entered"], "{row}");
        assert_eq!(
            row["candidate_entered"], pair["candidate"]["entered"],
            "{row}"
        );
    }
}

#[test]
fn replay_compares_a_candidate_and_promote_makes_it_live() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "3", "150", "history.ndjson");
    let output = baton(dir.path(), &["ingest", "history.ndjson"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let default = baton_core::DEFAULT_FUNNEL_TOML;
    // The candidate stops treating a demo request as an MQL on its own.
    let candidate = default
        .replace(
            r#"high_intent = ["demo_requested", "executive_event_attended"]"#,
            r#"high_intent = ["executive_event_attended"]"#,
        )
        .replace(r#"name = "b2b-default""#, r#"name = "no-demo""#);
    assert_ne!(candidate, default);
    std::fs::write(dir.path().join("candidate.toml"), candidate).expect("write");

    let output = baton(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            "nodemo",
            "--json",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_of(&output);
    let head = json_of(&baton(dir.path(), &["log", "stat", "--json"]))["head"].clone();
    assert_eq!(report["candidate"]["summary"]["position"], head);
    assert_eq!(report["live"]["summary"]["definition"], "b2b-default");
    assert_eq!(report["candidate"]["summary"]["definition"], "no-demo");
    // Demo requests no longer make MQLs: some people are MQLs under the live definition only,
    // none under the candidate only (it only removed a rule).
    let only_live = report["mql_only_live"]["people"].as_u64().expect("count");
    assert!(only_live > 0, "{report}");
    assert_eq!(report["mql_only_candidate"]["people"], 0);
    let mql = |side: &str| {
        report[side]["summary"]["stages"][2]["entered"]
            .as_u64()
            .expect("n")
    };
    assert_eq!(mql("live") - mql("candidate"), only_live);
    let group = &report["mql_only_live"];
    let total = ["won", "lost", "open"].map(|k| group[k].as_u64().expect("n"));
    assert_eq!(total.iter().sum::<u64>(), only_live);

    // The stored comparison is the same one.
    let again = json_of(&baton(dir.path(), &["compare", "nodemo", "--json"]));
    assert_eq!(again["mql_only_live"], report["mql_only_live"]);

    let views = json_of(&baton(dir.path(), &["views", "--json"]));
    let names: Vec<(&str, bool)> = views
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name"),
                v["live"].as_bool().expect("live"),
            )
        })
        .collect();
    assert_eq!(names, vec![("b2b-default", true), ("nodemo", false)]);

    // Bounded replays: by position, and a bad bound is a clear error.
    let replay_to_500 = |funnel: &str, name: &str| {
        let args = [
            "replay", "--funnel", funnel, "--name", name, "--until", "500", "--json",
        ];
        json_ok(dir.path(), &args)
    };
    let early = replay_to_500("candidate.toml", "early");
    assert_eq!(early["candidate"]["summary"]["position"], 500);
    // Both definitions are compared over the same 500 events, and how their MQLs ended is
    // read from the whole log.
    assert_eq!(early["live"]["summary"]["position"], 500);
    assert_eq!(early["outcomes_at"], head);
    let again = json_of(&baton(dir.path(), &["compare", "early", "--json"]));
    assert_eq!(again, early);
    // The live definition itself, bounded the same way, differs in nothing.
    std::fs::write(dir.path().join("live.toml"), default).expect("write");
    let same = replay_to_500("live.toml", "same");
    assert_eq!(same["mql_only_live"]["people"], 0, "{same}");
    assert_eq!(same["mql_only_candidate"]["people"], 0, "{same}");
    assert!(
        same["mql_both"]["people"].as_u64().expect("n") > 0,
        "{same}"
    );
    assert_eq!(
        same["live"]["summary"]["stages"],
        same["candidate"]["summary"]["stages"]
    );
    assert_eq!(same["sla_load"]["live"], same["sla_load"]["candidate"]);
    let output = baton(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            "bad",
            "--until",
            "soon",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--until \"soon\""), "{stderr}");
    let output = baton(
        dir.path(),
        &["replay", "--funnel", "candidate.toml", "--name", "nodemo"],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));

    // Promote: the candidate is live and follows the log; the old view is kept.
    let output = baton(dir.path(), &["promote", "nodemo"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json_of(&baton(dir.path(), &["funnel", "--json"]));
    assert_eq!(summary["definition"], "no-demo");
    assert_eq!(summary["position"], head);
    let output = baton(dir.path(), &["drop", "nodemo"]);
    assert!(!output.status.success(), "the live view cannot be dropped");
    let output = baton(dir.path(), &["drop", "b2b-default"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let views = json_of(&baton(dir.path(), &["views", "--json"]));
    // "nodemo" (live now), "early" and "same".
    assert_eq!(views.as_array().expect("array").len(), 3, "{views}");
    // Asking `project` for another definition than the live one says how to adopt it.
    let output = baton(
        dir.path(),
        &["project", "--until-caught-up", "--funnel", "candidate.toml"],
    );
    assert!(output.status.success(), "same definition as live now");
    std::fs::write(dir.path().join("default.toml"), default).expect("write");
    let output = baton(
        dir.path(),
        &["project", "--until-caught-up", "--funnel", "default.toml"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("baton replay --funnel default.toml"),
        "{stderr}"
    );
}

/// A replay while `baton serve` has the embedded log and the live view open: it reads the log
/// beside it, compares with the live definition folded from the log, and serving goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_runs_while_serve_holds_the_log_and_the_live_view() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "3", "150", "history.ndjson");
    json_ok(dir.path(), &["ingest", "history.ndjson", "--json"]);
    let head = json_ok(dir.path(), &["log", "stat", "--json"])["head"]
        .as_u64()
        .expect("head");
    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"127.0.0.1:0\"\npublish_every_ms = 100\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let client = reqwest::Client::new();
    let funnel = |position: u64| {
        let url = format!("http://{}/v1/funnel?min_position={position}", served.addr);
        let client = client.clone();
        async move {
            let response = client.get(&url).send().await.expect("get");
            assert_eq!(response.status().as_u16(), 200, "{url}");
            let text = response.text().await.expect("body");
            serde_json::from_str::<Value>(&text).expect("json")
        }
    };
    assert_eq!(funnel(head).await["totals"]["events"], head);

    let candidate = baton_core::DEFAULT_FUNNEL_TOML
        .replace(
            r#"high_intent = ["demo_requested", "executive_event_attended"]"#,
            r#"high_intent = ["executive_event_attended"]"#,
        )
        .replace(r#"name = "b2b-default""#, r#"name = "no-demo""#);
    std::fs::write(dir.path().join("candidate.toml"), candidate).expect("write");
    let replay = |name: &'static str, until: Option<&'static str>| {
        let mut args = vec![
            "replay",
            "--funnel",
            "candidate.toml",
            "--name",
            name,
            "--json",
        ];
        if let Some(until) = until {
            args.extend(["--until", until]);
        }
        let output = baton(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("open in another process"), "{stderr}");
        json_of(&output)
    };
    let whole = replay("nodemo", None);
    assert_eq!(whole["live"]["summary"]["definition"], "b2b-default");
    assert_eq!(whole["live"]["summary"]["position"], head);
    assert_eq!(whole["candidate"]["summary"]["position"], head);
    assert_eq!(whole["outcomes_at"], head);
    assert!(
        whole["mql_only_live"]["people"].as_u64().expect("n") > 0,
        "{whole}"
    );
    assert_eq!(whole["mql_only_candidate"]["people"], 0, "{whole}");
    let early = replay("early", Some("500"));
    assert_eq!(early["live"]["summary"]["position"], 500);
    assert_eq!(early["outcomes_at"], 500);
    // `compare` works beside the server too, and gives the same report.
    let again = json_of(&baton(dir.path(), &["compare", "nodemo", "--json"]));
    assert_eq!(again, whole);

    // Serving went on: new events are collected, projected and answered.
    let body = std::fs::read(dir.path().join("history.ndjson")).expect("history");
    let line = body.split(|b| *b == b'\n').next().expect("a line");
    let mut event: Value = serde_json::from_slice(line).expect("event");
    event["event_id"] = Value::String("0191a8d2-7e4c-7c3a-9a51-5f1d0c2e9b77".to_owned());
    let response = client
        .post(format!("http://{}/v1/events", served.addr))
        .header("content-type", "application/x-ndjson")
        .body(event.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(funnel(head + 1).await["totals"]["events"], head + 1);
    assert!(served.terminate().success());

    // With the server stopped, the live view (one event further on) is compared at the
    // candidate's position, with outcomes from the whole log.
    let later = json_of(&baton(dir.path(), &["compare", "nodemo", "--json"]));
    assert_eq!(later["live"]["summary"]["position"], head);
    assert_eq!(later["outcomes_at"], head + 1);
    assert_eq!(
        later["mql_only_live"]["people"],
        whole["mql_only_live"]["people"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_collects_over_http_stops_on_sigterm_and_quarantine_retry_fixes() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"off\"\n[[write_keys]]\nsource = \"web\"\nkey = \"wk_test\"\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, key: Option<&str>| {
        let mut request = client
            .post(format!("http://{}/v1/track", served.addr))
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.send()
    };
    let good = serde_json::json!({"messageId":"m-1","userId":"p-1","event":"Demo Requested"});
    let response = post(good.clone(), None).await.expect("post");
    assert_eq!(response.status().as_u16(), 401, "a key is configured");
    let response = post(good, Some("wk_test")).await.expect("post");
    assert_eq!(response.status().as_u16(), 200);
    // This source sends the webinar id as `properties.session`, so "Webinar Attended" is
    // rejected for want of `properties.webinar_id`.
    let bad = serde_json::json!({"messageId":"m-2","userId":"p-1","event":"Webinar Attended",
        "properties":{"session":"wb-9"}});
    let response = post(bad, Some("wk_test")).await.expect("post");
    assert_eq!(response.status().as_u16(), 400);

    let status = served.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    let stat = json_of(&baton(dir.path(), &["log", "stat", "--json"]));
    assert_eq!(stat["events"], 1);
    let listed = baton(dir.path(), &["quarantine", "list", "--json"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    let entries: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("entry"))
        .collect();
    assert_eq!(entries.len(), 1, "{text}");
    assert_eq!(entries[0]["field"], "properties.webinar_id");
    assert_eq!(entries[0]["source"], "web");

    // Unchanged tables: still rejected, kept.
    let retried = json_of(&baton(dir.path(), &["quarantine", "retry", "--json"]));
    assert_eq!(retried["still_rejected"], 1);
    // The fix: the config maps the event with a constant id; the entry goes in once.
    std::fs::write(
        dir.path().join("fixed.toml"),
        "[track]\n\"Webinar Attended\" = { kind = \"webinar_attended\", data = { webinar_id = \"wb-9\" } }\n",
    )
    .expect("config");
    let retried = json_of(&baton(
        dir.path(),
        &["quarantine", "retry", "--config", "fixed.toml", "--json"],
    ));
    assert_eq!(
        (retried["released"].as_u64(), retried["appended"].as_u64()),
        (Some(1), Some(1))
    );
    let stat = json_of(&baton(dir.path(), &["log", "stat", "--json"]));
    assert_eq!(stat["events"], 2);
    let listed = baton(dir.path(), &["quarantine", "list", "--json"]);
    assert!(listed.stdout.is_empty());
}

#[test]
fn bench_collect_prints_http_beside_direct_append() {
    let dir = tempfile::tempdir().expect("dir");
    let figures = bench_figures(
        dir.path(),
        &[
            "collect",
            "--events",
            "3000",
            "--rounds",
            "1",
            "--clients",
            "3",
        ],
    );
    for key in ["direct_eps", "http_eps", "ratio", "p50_ms", "p99_ms"] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {figures}"
        );
    }
    assert!(figures["p99_ms"].as_f64() >= figures["p50_ms"].as_f64());
    assert_eq!(figures["backend"], "embedded");
}

/// Collector, projector and query in one `baton serve`: events posted over HTTP are read back
/// from the views with `min_position`, and the view the process kept is the one `baton funnel`
/// reads after it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_projects_what_it_collects_and_answers_queries_at_a_position() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "8", "40", "history.ndjson");
    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"127.0.0.1:0\"\npublish_every_ms = 200\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let client = reqwest::Client::new();
    let body = std::fs::read(dir.path().join("history.ndjson")).expect("history");
    let mut accepted = 0u64;
    // In requests under the collector's size limit.
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for chunk in lines.chunks(200) {
        let response = client
            .post(format!("http://{}/v1/events", served.addr))
            .header("content-type", "application/x-ndjson")
            .body(chunk.join(&b'\n'))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        accepted += answer["accepted"].as_u64().expect("accepted");
    }
    assert!(accepted > 1000, "{accepted}");
    // The embedded log numbers events from 1, so the last accepted one is at `accepted`.
    let url = format!("http://{}/v1/funnel?min_position={accepted}", served.addr);
    let response = client.get(&url).send().await.expect("get");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["baton-position"]
            .to_str()
            .expect("ascii"),
        accepted.to_string()
    );
    let funnel: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(funnel["totals"]["events"], accepted);
    let campaigns = client
        .get(format!(
            "http://{}/v1/views/campaigns?format=csv",
            served.addr
        ))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("csv");
    assert!(campaigns.starts_with("campaign,touches"), "{campaigns}");
    let ready = client
        .get(format!("http://{}/readyz", served.addr))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = client
        .get(format!("http://{}/metrics", served.addr))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!("baton_projector_checkpoint {accepted}")),
        "{metrics}"
    );

    // The same views over SQL, at the same position, with a real PostgreSQL client.
    let port = served.sql_port.expect("serve printed its SQL port");
    let client = sql_client(port).await;
    let row = client
        .query_one("select events, people from funnel_totals", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0) as u64, accepted);
    assert_eq!(
        Some(row.get::<_, i64>(1) as u64),
        funnel["totals"]["people"].as_u64()
    );
    let rows = client
        .query(
            "select count(*) from campaigns where touches > $1",
            &[&0i64],
        )
        .await
        .expect("query with a parameter");
    assert!(rows[0].get::<_, i64>(0) > 0);
    let status = served.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    let summary = json_of(&baton(dir.path(), &["funnel", "--json"]));
    assert_eq!(summary["events"], accepted);
    assert_eq!(summary["position"], accepted);
    assert_eq!(summary["people"], funnel["totals"]["people"]);
    assert_eq!(summary["won"]["deals"], funnel["totals"]["won_deals"]);
}

/// The README's first command: `baton demo` builds the views, then serves them until stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_views_it_built_until_stopped() {
    let dir = tempfile::tempdir().expect("dir");
    let served = Served::run(
        dir.path(),
        &[
            "demo",
            "--accounts",
            "30",
            "--seed",
            "9",
            "--http",
            "127.0.0.1:0",
            "--sql",
            "127.0.0.1:0",
        ],
    );
    let events = {
        // The views are published shortly after the projector catches up.
        let url = format!("http://{}/v1/funnel?min_position=1", served.addr);
        let body = reqwest::get(&url)
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        let funnel: Value = serde_json::from_str(&body).expect("json");
        funnel["totals"]["events"].as_u64().expect("events")
    };
    assert!(events > 500, "{events}");
    let status = served.terminate();
    assert!(status.success(), "clean exit: {status:?}");
    let stat = json_of(&baton(dir.path(), &["log", "stat", "--json"]));
    assert_eq!(
        stat["events"], events,
        "the served views reflect the whole log"
    );
}

#[test]
fn bench_query_prints_latency_idle_and_while_appending() {
    let dir = tempfile::tempdir().expect("dir");
    let figures = bench_figures(
        dir.path(),
        &[
            "query",
            "--events",
            "3000",
            "--rate",
            "1000",
            "--seconds",
            "0.6",
            "--clients",
            "2",
        ],
    );
    for key in [
        "http_p50_ms",
        "http_p99_ms",
        "lookup_p99_ms",
        "qps",
        "idle_qps",
    ] {
        assert!(
            figures[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {figures}"
        );
    }
    assert!(figures["http_p99_ms"].as_f64() >= figures["http_p50_ms"].as_f64());
    assert!(figures["views_position_after"].as_u64().expect("position") >= 3000);
}

/// Issue 24.8: `log stat` only reads (it used to cut a damaged last append with exit 0 and
/// say nothing); `--verify` names damage and exits 1; `log repair` is what cuts, saying what.
#[test]
fn log_stat_verifies_and_only_log_repair_cuts() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "2", "6", "first.ndjson");
    generate(dir.path(), "3", "6", "second.ndjson");
    json_ok(dir.path(), &["ingest", "first.ndjson", "--json"]);
    let first = json_ok(dir.path(), &["log", "stat", "--json"])["events"]
        .as_u64()
        .expect("events");
    json_ok(dir.path(), &["ingest", "second.ndjson", "--json"]);
    let whole = json_ok(dir.path(), &["log", "stat", "--verify", "--json"]);
    assert_eq!(whole["verified"], true, "{whole}");
    let total = whole["events"].as_u64().expect("events");

    // One byte flipped near the end: inside the last append's last block.
    let segment = std::fs::read_dir(dir.path().join("baton-data/segments"))
        .expect("segments")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let at = bytes.len() - 10;
    bytes[at] ^= 0x55;
    std::fs::write(&segment, &bytes).expect("damage it");

    let stat = baton(dir.path(), &["log", "stat", "--verify", "--json"]);
    assert_eq!(stat.status.code(), Some(1), "damage found exits 1");
    let found = json_of(&stat);
    assert_eq!(found["verified"], false);
    assert!(
        found["damaged"][0]
            .as_str()
            .is_some_and(|what| what.contains("baton log repair")),
        "{found}"
    );
    assert_eq!(
        std::fs::read(&segment).expect("segment"),
        bytes,
        "log stat cut nothing"
    );
    // An open to append refuses, naming it.
    let refused = baton(dir.path(), &["ingest", "second.ndjson"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("does not match its checksums"), "{error}");

    let repaired = json_ok(dir.path(), &["log", "repair", "--json"]);
    assert_eq!(repaired["cut"]["from_position"], first + 1, "{repaired}");
    let after = json_ok(dir.path(), &["log", "stat", "--verify", "--json"]);
    assert_eq!(
        (after["events"].as_u64(), after["verified"].as_bool()),
        (Some(first), Some(true))
    );
    // Sent again, the cut events are stored again.
    json_ok(dir.path(), &["ingest", "second.ndjson", "--json"]);
    assert_eq!(
        json_ok(dir.path(), &["log", "stat", "--json"])["events"].as_u64(),
        Some(total)
    );
}

/// Issue 29: the summary and a report as the log was known at a time. The first half of a
/// history is ingested, the time noted, then the rest (late events for earlier months,
/// retractions, corrections): `--as-known-at` that time gives exactly what a log holding only
/// the first half gives, under the same definition, and says how many events came later.
#[test]
fn figures_as_known_at_a_time_are_those_of_the_log_as_it_stood() {
    let dir = tempfile::tempdir().expect("dir");
    let (at, stored_first) = ingest_in_two_halves(dir.path(), "60");
    let stored = json_of(&baton(dir.path(), &["log", "stat", "--json"]))["events"]
        .as_u64()
        .expect("events");
    assert!(stored > stored_first);

    // The log as it stood: only the first half.
    let then = tempfile::tempdir().expect("dir");
    std::fs::copy(
        dir.path().join("first.ndjson"),
        then.path().join("first.ndjson"),
    )
    .expect("copy");
    assert!(
        baton(then.path(), &["ingest", "first.ndjson"])
            .status
            .success()
    );

    let known = json_of(&baton(
        dir.path(),
        &["funnel", "--json", "--as-known-at", &at],
    ));
    assert_eq!(known["as_known_at"], at.as_str());
    assert_eq!(known["recorded_later"], stored - stored_first);
    let as_it_stood = json_of(&baton(then.path(), &["funnel", "--json"]));
    let figures = |mut value: Value| {
        let object = value.as_object_mut().expect("object");
        for key in ["position", "as_known_at", "recorded_later"] {
            object.remove(key);
        }
        value
    };
    assert_eq!(figures(known.clone()), figures(as_it_stood.clone()));
    let now = json_of(&baton(dir.path(), &["funnel", "--json"]));
    assert_ne!(
        figures(now.clone()),
        figures(known.clone()),
        "the rest of the history counts now"
    );

    // Why the figures changed since: the causes add up, from the figures as known then to
    // the figures now, and every event recorded since is behind one cause.
    let restated = json_of(&baton(dir.path(), &["restate", "--from", &at, "--json"]));
    let rows = restated["figures"].as_array().expect("figures");
    assert!(!rows.is_empty());
    let number = |value: &Value| -> f64 {
        value
            .as_f64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .expect("a figure")
    };
    for row in rows {
        let moved: f64 = row["moved"]
            .as_object()
            .expect("causes")
            .values()
            .map(number)
            .sum();
        assert!(
            (number(&row["from"]) + moved - number(&row["to"])).abs() < 1e-6,
            "{row}"
        );
    }
    let people = rows
        .iter()
        .find(|row| row["figure"] == "people")
        .expect("people changed");
    assert_eq!(people["from"], known["people"]);
    assert_eq!(people["to"], now["people"]);
    let behind: usize = restated["events"]
        .as_object()
        .expect("events")
        .values()
        .map(|list| list.as_array().expect("list").len())
        .sum();
    assert_eq!(behind as u64, stored - stored_first);
    let text = String::from_utf8_lossy(&baton(dir.path(), &["restate", "--from", &at]).stdout)
        .into_owned();
    assert!(
        text.contains("restated as known at") && text.contains("people"),
        "{text}"
    );

    // A replay as known at the time: a candidate of the events recorded by then.
    std::fs::write(
        dir.path().join("candidate.toml"),
        baton_core::DEFAULT_FUNNEL_TOML.replace("name = \"b2b-default\"", "name = \"again\""),
    )
    .expect("write");
    let replayed = json_of(&baton(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--as-known-at",
            &at,
            "--json",
        ],
    ));
    assert_eq!(
        replayed["candidate"]["summary"]["people"], known["people"],
        "{replayed}"
    );
    assert_eq!(replayed["candidate"]["summary"]["position"], stored_first);

    for view in ["sales", "customer", "attribution"] {
        let known = json_of(&baton(
            dir.path(),
            &["report", view, "--json", "--as-known-at", &at],
        ));
        let as_it_stood = json_of(&baton(then.path(), &["report", view, "--json"]));
        assert_eq!(known["tables"], as_it_stood["tables"], "{view}");
    }

    let output = baton(dir.path(), &["restate", "--from", "last month"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--from \"last month\" is not an RFC 3339 time"),
        "{stderr}"
    );
    let output = baton(dir.path(), &["funnel", "--as-known-at", "last tuesday"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--as-known-at \"last tuesday\" is not an RFC 3339 time"),
        "{stderr}"
    );
}

/// Issue 29: the views as known at a time over HTTP (`as_known_at` on the routes) and over
/// SQL (`SET baton.as_known_at`) from a running `baton serve`: the same tables as a log
/// holding only what was recorded by then, while the current views count everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_as_known_at_a_time_over_http_and_sql() {
    let dir = tempfile::tempdir().expect("dir");
    let (at, _) = ingest_in_two_halves(dir.path(), "40");
    // The log as it stood.
    let then = tempfile::tempdir().expect("dir");
    std::fs::copy(
        dir.path().join("first.ndjson"),
        then.path().join("first.ndjson"),
    )
    .expect("copy");
    assert!(
        baton(then.path(), &["ingest", "first.ndjson"])
            .status
            .success()
    );
    let as_it_stood = json_of(&baton(then.path(), &["report", "attribution", "--json"]));
    let now = json_of(&baton(dir.path(), &["report", "attribution", "--json"]));
    let credit = |report: &Value| report["tables"]["attribution_credit"].clone();
    assert_ne!(
        credit(&now),
        credit(&as_it_stood),
        "the rest of the history counts now"
    );

    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"127.0.0.1:0\"\npublish_every_ms = 200\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let client = reqwest::Client::new();
    let rows = |table: &str, query: &str| {
        let url = format!("http://{}/v1/views/{table}?{query}", served.addr);
        let client = client.clone();
        async move {
            let response = client.get(&url).send().await.expect("get");
            let status = response.status().as_u16();
            let header = response
                .headers()
                .get("baton-as-known-at")
                .map(|v| v.to_str().expect("ascii").to_owned());
            let body: Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("json");
            (status, header, body)
        }
    };
    let (status, header, body) = rows("attribution_credit", &format!("as_known_at={at}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header.as_deref(), Some(at.as_str()));
    assert_eq!(body["rows"], credit(&as_it_stood));
    // Another table of the same time comes from the same fold.
    let (status, _, body) = rows("opportunities", &format!("as_known_at={at}")).await;
    assert_eq!(status, 200);
    let sales = json_of(&baton(then.path(), &["report", "sales", "--json"]));
    assert_eq!(body["rows"], sales["tables"]["opportunities"]);
    let (status, _, body) = rows("attribution_credit", "as_known_at=yesterday").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("as_known_at \"yesterday\" is not an RFC 3339 time")),
        "{body}"
    );

    // Over SQL, a session setting.
    let port = served.sql_port.expect("serve printed its SQL port");
    let sql = sql_client(port).await;
    let linear = "select coalesce(sum(credited_revenue), 0)::float8, count(*) from attribution_credit \
                  where model = 'linear' and dimension = 'channel'";
    let expected = |report: &Value| {
        let rows = credit(report);
        let rows: Vec<&Value> = rows
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["model"] == "linear" && r["dimension"] == "channel")
            .collect();
        let sum: f64 = rows
            .iter()
            .map(|r| r["credited_revenue"].as_f64().unwrap_or(0.0))
            .sum();
        (sum, rows.len() as i64)
    };
    let read = |row: tokio_postgres::Row| (row.get::<_, f64>(0), row.get::<_, i64>(1));
    let close = |a: (f64, i64), b: (f64, i64)| (a.0 - b.0).abs() < 0.01 && a.1 == b.1;
    sql.batch_execute(&format!("SET baton.as_known_at = '{at}'"))
        .await
        .expect("set");
    let known = read(sql.query_one(linear, &[]).await.expect("query as known at"));
    assert!(
        close(known, expected(&as_it_stood)),
        "{known:?} vs {:?}",
        expected(&as_it_stood)
    );
    sql.batch_execute("RESET baton.as_known_at")
        .await
        .expect("reset");
    let current = read(sql.query_one(linear, &[]).await.expect("query now"));
    assert!(
        close(current, expected(&now)),
        "{current:?} vs {:?}",
        expected(&now)
    );
    sql.batch_execute("SET baton.as_known_at = 'soon'")
        .await
        .expect("set");
    let error = sql.query_one(linear, &[]).await.expect_err("not a time");
    assert!(
        error.as_db_error().is_some_and(|e| e
            .message()
            .contains("baton.as_known_at \"soon\" is not an RFC 3339 time")),
        "{error:?}"
    );
    let status = served.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// Issue 29: a recomputation of every shipped model's credit by channel, written from the
/// docs alone (`tests/recompute/attribution.py`, standard-library Python), agrees with
/// `baton report attribution` to the cent on a generated history with retractions,
/// corrections, merges and stitched visitors.
#[test]
fn an_independent_recomputation_of_the_docs_agrees_with_the_attribution_credits() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "9", "300", "history.ndjson");
    assert!(
        baton(dir.path(), &["ingest", "history.ndjson"])
            .status
            .success()
    );
    let report = baton(dir.path(), &["report", "attribution", "--json"]);
    assert!(report.status.success());
    std::fs::write(dir.path().join("report.json"), &report.stdout).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/recompute/attribution.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(dir.path().join("history.ndjson"))
        .arg(dir.path().join("report.json"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 differ"), "{stdout}");
}

/// A client of the SQL endpoint on `port`, its connection driven in the background.
async fn sql_client(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} dbname=baton user=analyst"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect over SQL");
    tokio::spawn(connection);
    client
}

/// Generates a history of `accounts` accounts, ingests its first half (kept as
/// `first.ndjson`), notes the time, then ingests the rest: that time (RFC 3339) and how many
/// events the first half stored.
fn ingest_in_two_halves(dir: &Path, accounts: &str) -> (String, u64) {
    generate(dir, "4", accounts, "history.ndjson");
    let text = std::fs::read_to_string(dir.join("history.ndjson")).expect("history");
    let lines: Vec<&str> = text.lines().collect();
    let (first, rest) = lines.split_at(lines.len() / 2);
    std::fs::write(dir.join("first.ndjson"), first.join("\n") + "\n").expect("write");
    std::fs::write(dir.join("rest.ndjson"), rest.join("\n") + "\n").expect("write");
    assert!(baton(dir, &["ingest", "first.ndjson"]).status.success());
    let stored_first = json_of(&baton(dir, &["log", "stat", "--json"]))["events"]
        .as_u64()
        .expect("events");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let at = baton_core::Timestamp::from_unix_millis(millis).to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(baton(dir, &["ingest", "rest.ndjson"]).status.success());
    (at, stored_first)
}

/// Issue 30: a backtest started and followed over HTTP beside a running `baton serve` answers
/// the comparison `baton replay --funnel FILE --no-keep --json` prints beside it; a definition
/// that does not validate is refused naming what is wrong, and an unknown backtest is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_backtest_over_http_and_answers_what_replay_prints() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "5", "60", "history.ndjson");
    assert!(
        baton(dir.path(), &["ingest", "history.ndjson"])
            .status
            .success()
    );
    let candidate = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/fixtures/more_stages.toml"
    ))
    .expect("the fixture");
    std::fs::write(dir.path().join("candidate.toml"), &candidate).expect("write");
    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"off\"\npublish_every_ms = 200\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let client = reqwest::Client::new();
    let base = format!("http://{}", served.addr);

    let response = client
        .post(format!("{base}/v1/backtests"))
        .header("content-type", "application/toml")
        .body(candidate.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 202);
    let location = response
        .headers()
        .get("location")
        .expect("a location")
        .to_str()
        .expect("ascii")
        .to_owned();
    let started = body_json(response).await;
    assert_eq!(started["href"], location.as_str(), "{started}");
    assert_eq!(started["state"], "running", "{started}");
    assert!(started["progress"]["until"].is_u64(), "{started}");

    // Followed until it ends (a small log: well within the deadline).
    let done = follow_backtest(&client, &base, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    let printed = json_ok(
        dir.path(),
        &[
            "replay",
            "--funnel",
            "candidate.toml",
            "--no-keep",
            "--json",
        ],
    );
    assert_eq!(done["comparison"], printed);
    assert_eq!(printed["candidate"]["summary"]["definition"], "more-stages");
    assert_eq!(printed["live"]["summary"]["definition"], "b2b-default");

    let listed = body_json(
        client
            .get(format!("{base}/v1/backtests"))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(listed["backtests"][0]["id"], started["id"], "{listed}");
    assert!(listed["backtests"][0].get("comparison").is_none());

    let refused = client
        .post(format!("{base}/v1/backtests"))
        .body("name = \"broken\"\n[[stages]]\nname = 42\n")
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 422);
    let refused = body_json(refused).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid funnel definition")
                && e.contains("the request body:1: unknown field `name`")),
        "{refused}"
    );
    let huge = client
        .post(format!("{base}/v1/backtests"))
        .body("#".repeat(300 * 1024))
        .send()
        .await
        .expect("post");
    assert_eq!(huge.status().as_u16(), 413);
    let missing = client
        .get(format!("{base}/v1/backtests/999"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status().as_u16(), 404);

    // Kept as a view once compared: the same comparison under the view's name, and the view
    // reads back to it (compared again beside the running serve). A second keep under the
    // same name fails naming it; an unknown parameter is a 400.
    let start_kept = || {
        client
            .post(format!("{base}/v1/backtests?keep=kept-bt"))
            .body(candidate.clone())
            .send()
    };
    let kept = body_json(start_kept().await.expect("post")).await;
    assert_eq!(kept["keep"], "kept-bt", "{kept}");
    let kept = follow_backtest(&client, &base, kept["href"].as_str().expect("href")).await;
    assert_eq!(kept["state"], "done", "{kept}");
    assert_eq!(kept["comparison"]["candidate"]["view"], "kept-bt", "{kept}");
    assert_eq!(kept["comparison"]["stages"], printed["stages"]);
    assert_eq!(
        kept["comparison"]["candidate"]["summary"],
        printed["candidate"]["summary"]
    );
    let reread = json_ok(dir.path(), &["compare", "kept-bt", "--json"]);
    assert_eq!(
        reread["candidate"]["summary"],
        printed["candidate"]["summary"]
    );
    assert_eq!(reread["stages"], printed["stages"]);
    let again = body_json(start_kept().await.expect("post")).await;
    let again = follow_backtest(&client, &base, again["href"].as_str().expect("href")).await;
    assert_eq!(again["state"], "failed", "{again}");
    assert!(
        again["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"kept-bt\" already exists")),
        "{again}"
    );
    let unknown = client
        .post(format!("{base}/v1/backtests?keeep=x"))
        .body(candidate.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status().as_u16(), 400);
    assert!(
        body_json(unknown).await["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"keeep\""))
    );
}

/// A backtest the server should not hold (here: more events than `backtest_max_events`) fails
/// at once naming the setting, before it folds anything, and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_over_the_servers_bound_fails_at_once_and_the_server_stays_up() {
    let dir = tempfile::tempdir().expect("dir");
    generate(dir.path(), "5", "20", "history.ndjson");
    assert!(
        baton(dir.path(), &["ingest", "history.ndjson"])
            .status
            .success()
    );
    std::fs::write(
        dir.path().join("baton.toml"),
        "http = \"127.0.0.1:0\"\nsql = \"off\"\nbacktest_max_events = 10\n",
    )
    .expect("config");
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let client = reqwest::Client::new();
    let base = format!("http://{}", served.addr);
    let started = body_json(
        client
            .post(format!("{base}/v1/backtests?keep=never"))
            .body(baton_core::DEFAULT_FUNNEL_TOML)
            .send()
            .await
            .expect("post"),
    )
    .await;
    let ended = follow_backtest(&client, &base, started["href"].as_str().expect("href")).await;
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(
        ended["error"]
            .as_str()
            .is_some_and(|e| e.contains("more than backtest_max_events (10)")),
        "{ended}"
    );
    let funnel = client
        .get(format!("{base}/v1/funnel"))
        .send()
        .await
        .expect("get");
    assert_eq!(funnel.status().as_u16(), 200);
    let views = String::from_utf8_lossy(&baton(dir.path(), &["views"]).stdout).into_owned();
    assert!(!views.contains("never"), "{views}");
}

/// Follows a backtest at `href` until it is no longer running (three minutes at most): its
/// last answer.
async fn follow_backtest(client: &reqwest::Client, base: &str, href: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let answer = body_json(
            client
                .get(format!("{base}{href}"))
                .send()
                .await
                .expect("get"),
        )
        .await;
        if answer["state"] != "running" {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn body_json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}
