//! Workspace rules that no compiler checks: the dependency graph is a one-way chain, and core
//! stays pure. Reads `cargo metadata`, like rust-analyzer's tidy tests.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Crates that would give `baton-core` IO, async, a clock source, NATS or sled.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "tokio",
    "async-nats",
    "sled",
    "futures",
    "mio",
    "socket2",
    "hyper",
    "reqwest",
    "axum",
    "rand",
    "getrandom",
    "tracing",
    "async-std",
    "smol",
    "libc",
    "nix",
    "rustix",
    "tempfile",
];

fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--all-features"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let names: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                p["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    let mut graph = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
    {
        let name = names[node["id"].as_str().expect("id")].clone();
        let dependencies: BTreeSet<String> = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            // Normal (non-dev, non-build) dependencies only.
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .map(|dep| names[dep["pkg"].as_str().expect("pkg")].clone())
            .collect();
        graph.insert(name, dependencies);
    }
    graph
}

/// Normal dependencies of `baton-core` built on its own. `cargo metadata` unifies features
/// across the workspace (a `uuid` feature another crate turns on would show up under core), so
/// this asks `cargo tree`, which resolves features for the one package.
fn core_dependencies() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "baton-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "baton-core")
        .map(str::to_owned)
        .collect()
}

#[test]
fn core_does_no_io() {
    let reachable = core_dependencies();
    assert!(
        reachable.contains("bincode"),
        "cargo tree output understood: {reachable:?}"
    );
    let forbidden: Vec<&&str> = FORBIDDEN_IN_CORE
        .iter()
        .filter(|name| reachable.contains(**name))
        .collect();
    assert!(
        forbidden.is_empty(),
        "baton-core reaches {forbidden:?}; core must stay pure"
    );
    assert!(
        reachable.iter().all(|name| !name.starts_with("baton-")),
        "core depends on no other baton crate"
    );
}

#[test]
fn nothing_depends_on_the_cli_and_the_chain_is_one_way() {
    let graph = workspace_graph();
    let allowed: &[(&str, &[&str])] = &[
        ("baton-core", &[]),
        ("baton-log", &["baton-core"]),
        ("baton-producer", &["baton-core", "baton-log"]),
        ("baton-projector", &["baton-core", "baton-log"]),
        ("baton-query", &["baton-core", "baton-projector"]),
        ("baton-testkit", &["baton-core"]),
    ];
    for (name, dependencies) in &graph {
        if !name.starts_with("baton-") {
            continue;
        }
        let baton_deps: Vec<&String> = dependencies
            .iter()
            .filter(|d| d.starts_with("baton-"))
            .collect();
        assert!(
            !baton_deps.iter().any(|d| *d == "baton-cli"),
            "{name} depends on baton-cli"
        );
        assert!(
            !baton_deps.iter().any(|d| *d == "baton-testkit"),
            "{name} links the testkit outside tests"
        );
        if let Some((_, permitted)) = allowed.iter().find(|(crate_name, _)| crate_name == name) {
            for dep in baton_deps {
                assert!(
                    permitted.contains(&dep.as_str()),
                    "{name} must not depend on {dep}"
                );
            }
        }
    }
    assert!(graph.contains_key("baton-cli"));
}
