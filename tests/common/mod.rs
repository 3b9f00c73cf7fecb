//! What the end-to-end tests share: running the `baton` binary, a `baton serve` child process,
//! and generated histories. Included by `tests/*.rs` here and by `crates/cli/tests/cli.rs`;
//! each uses part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Runs `baton` in `dir` with the environment's BATON_* settings removed.
pub fn baton(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .current_dir(dir)
        .env_remove("BATON_NATS")
        .env_remove("BATON_DATA")
        .output()
        .expect("baton runs")
}

pub fn json_of(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs baton, asserting it succeeds, and returns its JSON output.
pub fn json_ok(dir: &Path, args: &[&str]) -> Value {
    let output = baton(dir, args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_of(&output)
}

/// Generates a seeded history into `dir/file` and returns its bytes.
pub fn generate(dir: &Path, seed: &str, accounts: &str, file: &str) -> Vec<u8> {
    let output = baton(
        dir,
        &["gen", "--seed", seed, "--accounts", accounts, "--out", file],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(dir.join(file)).expect("generated file")
}

/// A `baton serve` child process, killed on drop if the test did not stop it. What it writes
/// to stderr is kept, so a test can look for a warning and print it all when it fails.
pub struct Served {
    pub child: std::process::Child,
    pub addr: String,
    /// The SQL endpoint's port, when it serves one.
    pub sql_port: Option<u16>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Served {
    pub fn start(dir: &Path, args: &[&str]) -> Served {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Served::run(dir, &all)
    }

    /// Any command that ends up serving (`serve`, `demo`).
    pub fn run(dir: &Path, args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .current_dir(dir)
            .env_remove("BATON_NATS")
            .env_remove("BATON_DATA")
            .env_remove("BATON_CONFIG")
            .env_remove("BATON_WRITE_KEYS")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("baton serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let kept = Arc::new(Mutex::new(Vec::new()));
        // The SQL line (when SQL is on) comes before the HTTP address.
        let mut sql_port = None;
        let addr = loop {
            let line = lines
                .next()
                .expect("baton serve prints its address before anything else ends")
                .expect("stderr line");
            kept.lock().expect("stderr lines").push(line.clone());
            if line.contains("SQL:")
                && let Some((_, port)) = line.split_once(" -p ")
            {
                sql_port = port.split_whitespace().next().and_then(|p| p.parse().ok());
            }
            if let Some((_, addr)) = line.split_once("http://") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        let draining = kept.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                draining.lock().expect("stderr lines").push(line);
            }
        });
        Served {
            child,
            addr,
            sql_port,
            stderr: kept,
        }
    }

    /// What the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lines").join("\n")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child.wait().expect("baton serve exits")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Chromium binary the browser tests drive (Debian's package; `.ci/run` installs it).
pub fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::process::Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if found {
            return candidate;
        }
    }
    panic!("no Chromium found: apt-get install chromium (.ci/run does)");
}
