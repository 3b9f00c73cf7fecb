//! A real `nats-server` with JetStream for one test: loopback, a free port, a private store
//! directory, killed on drop, its log printed when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`, owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: Option<u16>,
    url: String,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "nats-server is not installed, and this test needs a real one.\n\
             Install it with `apt-get update && apt-get install -y nats-server` (Debian/Ubuntu),\n\
             or point NATS_SERVER_BIN at a nats-server binary (2.9 or later)."
        ),
    }
}

impl NatsServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let mut server = NatsServer {
            child: None,
            dir,
            port: None,
            url: String::new(),
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Stops the server (as a crash would: SIGKILL) and starts it again on the same port with
    /// the same store, as after a machine restart.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops the server cleanly (SIGTERM, as a service manager does for an upgrade) and waits
    /// for it to exit; `start_again` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGKILL; `start_again` brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, as with a
    /// server that hangs; `resume` lets it go on with what it was sent meanwhile.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {} failed", child.id());
    }

    /// Starts a killed server again on the same port and store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn spawn(&mut self) {
        let port = self.port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store_dir())
            .arg("--ports_file_dir")
            .arg(self.dir.path())
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let ports_file = self
            .dir
            .path()
            .join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        let url = self.wait_for_ports_file(&ports_file);
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in nats url {url:?}"));
        self.port = Some(port);
        self.url = url;
    }

    fn wait_for_ports_file(&mut self, path: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Some(url) = parse_ports_file(&text)
            {
                return url;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "nats-server exited with {status} before listening; its log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not write {} within 20 s; its log:\n{}",
                path.display(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn parse_ports_file(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value["nats"]
        .as_array()?
        .first()?
        .as_str()
        .map(str::to_owned)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- nats-server log tail ({}) ---\n{}",
                self.url,
                self.log_tail()
            );
        }
        self.kill();
    }
}

/// A three-node (or `n`-node) JetStream cluster on loopback, for tests where clustering is the
/// point: each node on free ports with its own store, killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct ClusterNode {
    child: Option<Child>,
    port: u16,
    cluster_port: u16,
}

/// A port free at the moment of asking (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other and waits until each listens.
    /// A port is free when asked for and bound by the node a moment later: another process
    /// can take it in between, and the node then stops at once (`address already in use`). Such
    /// a start is tried again, whole, on fresh ports.
    pub fn start(size: usize) -> Self {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir for the cluster");
            let nodes = (0..size)
                .map(|_| ClusterNode {
                    child: None,
                    port: free_port(),
                    cluster_port: free_port(),
                })
                .collect();
            let mut cluster = NatsCluster { nodes, dir };
            for index in 0..size {
                cluster.spawn(index);
            }
            let stopped: Vec<usize> = (0..size).filter(|index| !cluster.running(*index)).collect();
            if stopped.is_empty() {
                return cluster;
            }
            let tails: Vec<String> = stopped
                .iter()
                .map(|index| format!("node {index}:\n{}", cluster.log_tail(*index)))
                .collect();
            assert!(
                attempt < ATTEMPTS,
                "cluster nodes {stopped:?} stopped on start {ATTEMPTS} times:\n{}",
                tails.join("\n")
            );
            eprintln!(
                "cluster nodes {stopped:?} stopped on start; starting again on fresh ports:\n{}",
                tails.join("\n")
            );
        }
        unreachable!("the loop returns or asserts")
    }

    /// Whether node `index` listens on its route port (its log says so; a connection could
    /// reach whoever took the port) and still runs. Waits up to 10 s for the one or the other.
    fn running(&mut self, index: usize) -> bool {
        let listening = format!(
            "Listening for route connections on 127.0.0.1:{}",
            self.nodes[index].cluster_port
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self.nodes[index]
                .child
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            if exited {
                return false;
            }
            let log = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
            if log.contains(&listening) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every node's URL, comma-separated, as `--nats` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills node `index` (SIGKILL, as a crashed machine).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again with its store.
    pub fn start_again(&mut self, index: usize) {
        assert!(self.nodes[index].child.is_none(), "node {index} is running");
        self.spawn(index);
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("node-{index}.log"))
    }

    fn spawn(&mut self, index: usize) {
        let routes = self
            .nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[index];
        let store = self.dir.path().join(format!("store-{index}"));
        let child = Command::new(binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &node.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&store)
            .args(["-n", &format!("node-{index}"), "--cluster_name", "baton"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(["--routes", &routes])
            .arg("-l")
            .arg(self.log_path(index))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.nodes[index].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = self.nodes[index].port;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cluster node {index} did not listen within 20 s:\n{}",
                self.log_tail(index)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of node `index`'s log.
    pub fn log_tail(&self, index: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for index in 0..self.nodes.len() {
                eprintln!(
                    "--- cluster node {index} log tail ---\n{}",
                    self.log_tail(index)
                );
            }
        }
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}
