//! Staying up in production: end-to-end scenarios across the crates, each against real
//! processes (`baton serve`, `nats-server`) on loopback. A NATS server restarted under a
//! running `serve`; the views' disk filled and freed; a runaway SQL query while ingesting.

mod common;

use baton_testkit::{NatsCluster, NatsServer};
use common::{Served, baton, generate, json_of};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Posts NDJSON lines to `/v1/events` in requests of `per_request`, retrying a request the
/// collector answers 503 (it says when, in `Retry-After`); returns how many were accepted,
/// how many were duplicates (of the history's own retries, or of what a try answered 503
/// stored after all) and how many 503s were seen.
async fn post_all(
    client: &reqwest::Client,
    addr: &str,
    lines: &[&[u8]],
    per_request: usize,
) -> (u64, u64, u64) {
    let mut accepted = 0;
    let mut duplicates = 0;
    let mut unavailable = 0;
    for chunk in lines.chunks(per_request) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let response = client
                .post(format!("http://{addr}/v1/events"))
                .header("content-type", "application/x-ndjson")
                .body(chunk.join(&b'\n'))
                .send()
                .await
                .expect("the collector answers");
            let status = response.status().as_u16();
            if status == 503 {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "a 503 says when to retry"
                );
                unavailable += 1;
                assert!(
                    Instant::now() < deadline,
                    "the collector stayed unavailable for 120 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_eq!(status, 200, "{}", response.text().await.unwrap_or_default());
            let answer: Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("json");
            accepted += answer["accepted"].as_u64().expect("accepted");
            duplicates += answer["duplicates"].as_u64().expect("duplicates");
            break;
        }
    }
    (accepted, duplicates, unavailable)
}

/// The distinct events of an NDJSON history: its ids are derived from (source, message id),
/// and a generated history repeats some on purpose, as sources retry.
fn distinct_events(lines: &[&[u8]]) -> u64 {
    let ids: std::collections::HashSet<(String, String)> = lines
        .iter()
        .map(|line| {
            let event: Value = serde_json::from_slice(line).expect("a JSON line");
            (
                event["source"]["system"].to_string(),
                event["message_id"].to_string(),
            )
        })
        .collect();
    ids.len() as u64
}

/// Posts one NDJSON line to `/v1/events` once, as it is answered.
async fn post_line(client: &reqwest::Client, addr: &str, line: &[u8]) -> reqwest::Response {
    client
        .post(format!("http://{addr}/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(line.to_vec())
        .send()
        .await
        .expect("the collector answers")
}

/// Waits until the views reflect `position` (read-your-writes over HTTP) and returns the
/// funnel there.
async fn funnel_at(client: &reqwest::Client, addr: &str, position: u64) -> Value {
    let url = format!("http://{addr}/v1/funnel?min_position={position}&wait_ms=30000");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let response = client.get(&url).send().await.expect("get");
        if response.status().as_u16() == 200 {
            return serde_json::from_str(&response.text().await.expect("body")).expect("json");
        }
        assert!(
            Instant::now() < deadline,
            "the views did not reach position {position}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
}

async fn metrics_text(client: &reqwest::Client, addr: &str) -> String {
    client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

async fn metric(client: &reqwest::Client, addr: &str, name: &str) -> f64 {
    let text = metrics_text(client, addr).await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// The value of a labelled metric: the line of `name` whose labels include every one of
/// `labels` (each `key="value"`), 0 when there is none yet.
async fn labelled(client: &reqwest::Client, addr: &str, name: &str, labels: &[&str]) -> f64 {
    metrics_text(client, addr)
        .await
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn lines_of(body: &[u8]) -> Vec<&[u8]> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

fn write_config(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("baton.toml"),
        format!("http = \"127.0.0.1:0\"\npublish_every_ms = 100\n{extra}"),
    )
    .expect("config");
}

/// Issue 24.1: `baton serve --nats` exited about 17 s after every NATS server restart
/// ("consumer not found"). Now the projector reads again from its checkpoint however long the
/// outage, the collector answers 503 with `Retry-After` meanwhile, and nothing is lost or
/// counted twice. Once with a clean stop (an upgrade) and once with SIGKILL (a crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_rides_through_nats_server_restarts() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let body = generate(dir.path(), "3", "30", "history.ndjson");
    let lines = lines_of(&body);
    let thirds: Vec<&[&[u8]]> = lines.chunks(lines.len().div_ceil(3)).collect();
    write_config(dir.path(), "sql = \"off\"\n");
    let mut served = Served::start(
        dir.path(),
        &["--config", "baton.toml", "--nats", server.url()],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    let (first, _, _) = post_all(&client, &served.addr, thirds[0], 100).await;
    funnel_at(&client, &served.addr, first).await;

    for (round, crash) in [(1, false), (2, true)] {
        if crash {
            server.kill();
        } else {
            server.stop();
        }
        // While the server is down the collector refuses promptly, and says when to retry.
        let response = post_line(&client, &served.addr, thirds[round][0]).await;
        assert_eq!(response.status().as_u16(), 503, "round {round}");
        assert!(response.headers().contains_key("retry-after"));
        // Down for longer than the 17 s after which the projector used to give up.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(
            served.is_running(),
            "serve exited while NATS was down:\n{}",
            served.stderr()
        );
        let ready = client
            .get(format!("http://{}/readyz", served.addr))
            .send()
            .await
            .expect("readyz");
        // Once the server has been gone longer than a restart takes, a write is refused at
        // once, saying so, instead of waiting out the append's deadline.
        let response = post_line(&client, &served.addr, thirds[round][0]).await;
        assert_eq!(response.status().as_u16(), 503, "round {round}");
        let refused = response.text().await.unwrap_or_default();
        assert!(
            refused.contains("has been unreachable for"),
            "round {round}: {refused}"
        );
        // Reads keep answering from the views the projector last published.
        let funnel = client
            .get(format!("http://{}/v1/funnel", served.addr))
            .send()
            .await
            .expect("funnel");
        assert_eq!(funnel.status().as_u16(), 200);
        // A command started while the server is down waits for it and says so.
        let stat = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["--nats", server.url(), "log", "stat", "--json"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("baton log stat starts");
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.start_again();
        let stat = stat.wait_with_output().expect("baton log stat ends");
        let waited = String::from_utf8_lossy(&stat.stderr);
        assert!(stat.status.success(), "round {round}: {waited}");
        assert!(waited.contains("waiting for it"), "round {round}: {waited}");
        assert_eq!(json_of(&stat)["events"], first, "round {round}");
        let status = ready.status().as_u16();
        let text = ready.text().await.unwrap_or_default();
        assert_eq!(status, 503, "round {round}: {text}\n{}", served.stderr());
        assert!(
            text.contains("waiting for the log"),
            "round {round}: {text}"
        );
    }
    let (rest, duplicates, unavailable) =
        post_all(&client, &served.addr, &[thirds[1], thirds[2]].concat(), 100).await;
    // Every event is stored once: accepted, or found stored by an earlier try (the history's
    // own retries, or a try answered 503 whose publish the client delivered once the server
    // was back).
    let distinct = distinct_events(&lines);
    let total = first + rest;
    assert!(total <= distinct, "{total} accepted of {distinct}");
    assert_eq!(
        rest + duplicates,
        (thirds[1].len() + thirds[2].len()) as u64,
        "every line has one final answer; {unavailable} answers were 503"
    );
    let stat = json_of(&baton(
        dir.path(),
        &["--nats", server.url(), "log", "stat", "--json"],
    ));
    assert_eq!(stat["events"], distinct, "each event stored once");
    let total = distinct;
    let funnel = funnel_at(&client, &served.addr, total).await;
    assert_eq!(funnel["totals"]["events"], total, "each event counted once");
    assert!(served.is_running(), "{}", served.stderr());
    assert!(metric(&client, &served.addr, "baton_projector_faults_total").await >= 1.0);
    assert_eq!(
        metric(&client, &served.addr, "baton_projector_faulted").await,
        0.0
    );
    assert!(
        served.stderr().contains("the projector waits for it"),
        "serve says what it waits for:\n{}",
        served.stderr()
    );
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
}

/// A cross join that runs for minutes over any history with a few hundred people.
const RUNAWAY: &str = "select max(a.person || b.person || c.person || d.person) \
                       from person_scores a, person_scores b, person_scores c, person_scores d";

/// psql running the runaway query against the SQL endpoint on `port`; its output to `output`.
fn runaway_psql(port: &str, output: fn() -> std::process::Stdio) -> std::process::Child {
    std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-d",
            "baton",
            "-U",
            "analyst",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-c", RUNAWAY])
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("psql starts")
}

/// Issue 24.5: a runaway SQL query made `/healthz`, `/v1/funnel` and collector writes time
/// out for 10–140 s. Now statements run on threads of their own at a lower priority, stop at
/// the endpoint's time limit (over the PostgreSQL protocol and `POST /v1/sql` alike), and the
/// rest of the service answers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_query_starves_neither_ingestion_nor_the_other_routes() {
    let dir = tempfile::tempdir().expect("dir");
    let body = generate(dir.path(), "5", "60", "history.ndjson");
    let lines = lines_of(&body);
    write_config(
        dir.path(),
        "sql = \"127.0.0.1:0\"\nsql_statement_timeout_secs = 8\n",
    );
    let served = Served::start(dir.path(), &["--config", "baton.toml"]);
    let port = served
        .sql_port
        .expect("serve printed its SQL port")
        .to_string();
    // Every answer below must come well within this; before, they took 10–140 s.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let (half, _, _) = post_all(&client, &served.addr, &lines[..lines.len() / 2], 100).await;
    funnel_at(&client, &served.addr, half).await;

    let runaway = runaway_psql(&port, std::process::Stdio::piped);
    // Wait until the query is running: its thread takes the CPU.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut accepted = half;
    for chunk in lines[lines.len() / 2..].chunks(lines.len() / 6) {
        let health = client
            .get(format!("http://{}/healthz", served.addr))
            .send()
            .await
            .expect("/healthz answers while the query runs");
        assert_eq!(health.status().as_u16(), 200);
        let funnel = client
            .get(format!("http://{}/v1/funnel", served.addr))
            .send()
            .await
            .expect("/v1/funnel answers while the query runs");
        assert_eq!(funnel.status().as_u16(), 200);
        let (stored, _, unavailable) =
            post_all(&client, &served.addr, &[chunk].concat(), 500).await;
        assert_eq!(unavailable, 0);
        accepted += stored;
    }
    let output = runaway.wait_with_output().expect("psql ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the cross join ended by itself: {stderr}"
    );
    assert!(stderr.contains("statement timeout"), "{stderr}");
    // The events written while it ran are in the views.
    let funnel = funnel_at(&client, &served.addr, accepted).await;
    assert_eq!(funnel["totals"]["events"], accepted);

    // Over HTTP the same limit holds, answered with PostgreSQL's code.
    let slow = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let response = slow
        .post(format!("http://{}/v1/sql", served.addr))
        .body(RUNAWAY)
        .send()
        .await
        .expect("/v1/sql answers");
    assert_eq!(response.status().as_u16(), 422);
    let answer: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(answer["sqlstate"], "57014", "{answer}");
    // Stopped statements give their threads back: a small query answers at once. (Before
    // joins yielded, the cross join ran on for 100 s after its time limit.)
    let quick = client
        .post(format!("http://{}/v1/sql", served.addr))
        .body("select 41 + 1 as n")
        .send()
        .await
        .expect("a small query answers at once after a stopped one");
    assert_eq!(quick.status().as_u16(), 200);
    // /metrics counts them, and what the collector did, by source and outcome.
    let addr = &served.addr;
    for protocol in ["protocol=\"pgwire\"", "protocol=\"http\""] {
        let stopped = labelled(
            &client,
            addr,
            "baton_sql_statements_total",
            &[protocol, "outcome=\"timed_out\""],
        )
        .await;
        assert!(stopped >= 1.0, "{protocol}: {stopped}");
    }
    let ok = labelled(
        &client,
        addr,
        "baton_sql_statements_total",
        &["protocol=\"http\"", "outcome=\"ok\""],
    )
    .await;
    assert!(ok >= 1.0);
    let collected = labelled(
        &client,
        addr,
        "baton_collector_items_total",
        &["source=\"loopback\"", "outcome=\"accepted\""],
    )
    .await;
    assert_eq!(collected, accepted as f64);
    assert!(
        labelled(&client, addr, "baton_collector_append_seconds_count", &[]).await >= 1.0 || {
            // A histogram without labels has no braces on its lines.
            metric(&client, addr, "baton_collector_append_seconds_count").await >= 1.0
        }
    );
    assert!(
        client
            .get(format!("http://{}/healthz", served.addr))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    );

    // A client that hangs up mid-statement stops it: psql killed, and an HTTP client that
    // gives up. Without the check the statements would run to their time limit and be
    // counted as timed out.
    let mut killed = runaway_psql(&port, std::process::Stdio::null);
    tokio::time::sleep(Duration::from_secs(1)).await;
    killed.kill().expect("psql killed");
    killed.wait().expect("psql reaped");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let gave_up = impatient
        .post(format!("http://{}/v1/sql", served.addr))
        .body(RUNAWAY)
        .send()
        .await;
    assert!(gave_up.is_err(), "the cross join answered within a second");
    drop(impatient);
    for protocol in ["protocol=\"pgwire\"", "protocol=\"http\""] {
        let labels = [protocol, "outcome=\"disconnected\""];
        let mut disconnected = 0.0;
        for _ in 0..60 {
            disconnected = labelled(&client, addr, "baton_sql_statements_total", &labels).await;
            if disconnected >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(
            disconnected,
            1.0,
            "{protocol}: {}",
            metrics_text(&client, addr).await
        );
        let timed_out = labelled(
            &client,
            addr,
            "baton_sql_statements_total",
            &[protocol, "outcome=\"timed_out\""],
        )
        .await;
        assert_eq!(
            timed_out, 1.0,
            "{protocol}: only the first statement timed out"
        );
    }
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
}

/// A small tmpfs mounted for one test, unmounted on drop. Mounting needs root, as CI runs.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, megabytes: u32) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "this test fills a small disk: it mounts a tmpfs, which needs root (CI runs as root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }

    /// Writes a ballast file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut file = std::fs::File::create(&ballast).expect("ballast");
        let block = vec![0u8; 1 << 16];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Issue 24.3: when the views' disk filled, `serve` exited ("cannot commit state: No space
/// left on device"). Now it keeps answering reads from the last published views, reports the
/// fault on `/readyz` and `/metrics`, keeps collecting (the log is on another disk), and
/// folds what it missed once space returns, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_views_disk_keeps_reads_up_and_folding_resumes_when_space_returns() {
    let dir = tempfile::tempdir().expect("dir");
    let body = generate(dir.path(), "6", "40", "history.ndjson");
    let lines = lines_of(&body);
    let disk = SmallDisk::mount(&dir.path().join("views"), 48);
    write_config(dir.path(), "sql = \"off\"\n");
    let mut served = Served::start(dir.path(), &["--config", "baton.toml", "--views", "views"]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let (half, _, _) = post_all(&client, &served.addr, &lines[..lines.len() / 2], 100).await;
    let before = funnel_at(&client, &served.addr, half).await;
    // Issue 24.4: an operator inspects the live log beside the running serve.
    let stat = json_of(&baton(dir.path(), &["log", "stat", "--verify", "--json"]));
    assert_eq!(
        (stat["events"].as_u64(), stat["verified"].as_bool()),
        (Some(half), Some(true))
    );
    let read = baton(dir.path(), &["log", "read", "--limit", "3"]);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout).lines().count(), 3);

    let ballast = disk.fill();
    let (rest, _, unavailable) =
        post_all(&client, &served.addr, &lines[lines.len() / 2..], 100).await;
    assert_eq!(
        unavailable, 0,
        "the log is on another disk: collecting goes on"
    );
    let total = half + rest;
    // The projector cannot commit: /readyz says why, reads answer from what was published.
    let deadline = Instant::now() + Duration::from_secs(120);
    let fault = loop {
        let ready = client
            .get(format!("http://{}/readyz", served.addr))
            .send()
            .await
            .expect("readyz");
        let status = ready.status().as_u16();
        let text = ready.text().await.unwrap_or_default();
        if status == 503 && text.contains("not ready") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no fault reported with the views' disk full: {status} {text}\n{}",
            served.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(fault.contains("space"), "{fault}");
    assert!(served.is_running(), "{}", served.stderr());
    let funnel = client
        .get(format!("http://{}/v1/funnel", served.addr))
        .send()
        .await
        .expect("funnel");
    assert_eq!(funnel.status().as_u16(), 200);
    let funnel: Value = serde_json::from_str(&funnel.text().await.expect("body")).expect("json");
    assert!(
        funnel["totals"]["events"].as_u64() >= before["totals"]["events"].as_u64(),
        "{funnel}"
    );
    assert_eq!(
        metric(&client, &served.addr, "baton_projector_faulted").await,
        1.0
    );

    // Space returns: folding resumes without a restart, and every event counts once.
    std::fs::remove_file(ballast).expect("ballast removed");
    let funnel = funnel_at(&client, &served.addr, total).await;
    assert_eq!(funnel["totals"]["events"], total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&client, &served.addr, "baton_projector_faulted").await != 0.0 {
        assert!(Instant::now() < deadline, "the fault stays reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served.is_running(), "{}", served.stderr());
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
    // The stored view is the fold of the whole log: what `baton funnel` reads agrees.
    let stored = json_of(&baton(
        dir.path(),
        &["--views", "views", "funnel", "--json"],
    ));
    assert_eq!(stored["events"], total);
    drop(disk);
}

/// Issue 24.2: on a three-node cluster (R3) `serve` rode through a node loss, but `baton log
/// stat` failed with `request timed out` while the cluster elected a leader. Here a node is
/// killed under HTTP ingest: nothing is lost or stored twice, a command started meanwhile
/// waits for the election, and the views count every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_lost_under_http_ingest_loses_and_doubles_nothing() {
    let mut cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let dir = tempfile::tempdir().expect("dir");
    let body = generate(dir.path(), "7", "40", "history.ndjson");
    let lines = lines_of(&body);
    let distinct = distinct_events(&lines);
    let thirds: Vec<&[&[u8]]> = lines.chunks(lines.len().div_ceil(3)).collect();
    write_config(dir.path(), "sql = \"off\"\n");
    let mut served = Served::start(
        dir.path(),
        &["--config", "baton.toml", "--nats", &urls, "--replicas", "3"],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let (first, _, _) = post_all(&client, &served.addr, thirds[0], 50).await;
    funnel_at(&client, &served.addr, first).await;

    // A node dies while requests are in flight.
    let posting = post_all(&client, &served.addr, thirds[1], 50);
    let killing = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill(0);
    };
    let ((second, _, _), ()) = tokio::join!(posting, killing);
    // A command run right after the loss rides through the election.
    let stat = baton(dir.path(), &["--nats", &urls, "log", "stat", "--json"]);
    assert!(
        stat.status.success(),
        "{}",
        String::from_utf8_lossy(&stat.stderr)
    );
    assert!(json_of(&stat)["events"].as_u64() >= Some(first + second));
    let (rest, _, _) = post_all(&client, &served.addr, thirds[2], 50).await;
    assert!(first + second + rest <= distinct);

    let stat = json_of(&baton(
        dir.path(),
        &["--nats", &urls, "log", "stat", "--json"],
    ));
    assert_eq!(stat["events"], distinct, "each event stored once");
    let funnel = funnel_at(&client, &served.addr, distinct).await;
    assert_eq!(
        funnel["totals"]["events"], distinct,
        "each event counted once"
    );
    assert!(served.is_running(), "{}", served.stderr());
    cluster.start_again(0);
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
}
