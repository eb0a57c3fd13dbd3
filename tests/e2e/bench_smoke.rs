//! The gateway benchmark harnesses (`scripts/bench-gateway.sh`, `scripts/bench-lean-h1.sh`) run
//! for a second per proxy and scenario, so they cannot rot: the binaries under test (the debug
//! `aragora` and the debug `bare_pingora` and `gateway_env` examples), real nginx, HAProxy, wrk,
//! h2load and openssl. Not a measurement: it checks that every table has every proxy with
//! requests served and CPU counted.

use crate::support::deploy::repo;
use crate::support::BINARY;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The tables the harness prints, by their heading's label, and the proxies each must have.
const SCENARIOS: [&str; 4] = ["(a)", "(b)", "(c)", "(d)"];
const PROXIES: [&str; 4] = ["nginx", "haproxy", "pingora (bare)", "aragora"];

/// The gateway's debug example `name` beside the binary under test. `cargo test --workspace`
/// (the test command) builds it before any test runs; a run of this test alone on a build
/// without it, or with one older than its source, builds it here. Not `--workspace`: that
/// unifies other features than the test build does and rebuilds half the dependencies.
fn debug_example(name: &str) -> PathBuf {
    let debug_dir = Path::new(BINARY).parent().unwrap();
    let example = debug_dir.join("examples").join(name);
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let source = repo().join(format!("gateway/examples/{name}.rs"));
    if modified(&example).is_none() || modified(&example) < modified(&source) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "-q", "-p", "aragora-gateway"])
            .args(["--example", name])
            .current_dir(repo())
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
        assert!(status.success(), "cargo build --example {name} failed");
    }
    assert!(example.exists(), "no {}", example.display());
    example
}

/// `scripts/SCRIPT` run for one round of a second per proxy with `env`; its stdout and stderr,
/// once it has succeeded.
fn run_harness(script: &str, env: &[(&str, PathBuf)]) -> (String, String) {
    let started = std::time::Instant::now();
    let output = Command::new("bash")
        .arg(repo().join("scripts").join(script))
        .envs(env.iter().map(|(key, value)| (key, value)))
        .env("RUNS", "1")
        .env("DURATION", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the harness failed:\n{stdout}\n{stderr}"
    );
    eprintln!("scripts/{script} took {:?}", started.elapsed());
    (stdout, stderr)
}

/// The cells of a table row (`| a | b |` gives `["a", "b"]`).
fn cells(row: &str) -> Vec<&str> {
    row.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

#[test]
fn the_gateway_benchmark_measures_every_proxy_in_every_scenario() {
    let (stdout, stderr) = run_harness(
        "bench-gateway.sh",
        &[
            ("ARAGORA_BIN", PathBuf::from(BINARY)),
            ("BARE_PINGORA_BIN", debug_example("bare_pingora")),
        ],
    );

    for scenario in SCENARIOS {
        let heading = format!("### {scenario} ");
        let table: Vec<&str> = stdout
            .lines()
            .skip_while(|line| !line.starts_with(&heading))
            .skip(1)
            .skip_while(|line| line.trim().is_empty())
            .take_while(|line| line.starts_with('|'))
            .collect();
        assert!(!table.is_empty(), "no table {scenario} in:\n{stdout}");
        let header = cells(table[0]);
        let cpu = header
            .iter()
            .position(|cell| cell.starts_with("CPU us/"))
            .unwrap_or_else(|| panic!("no CPU column in {scenario}: {header:?}"));
        for proxy in PROXIES {
            let row = table
                .iter()
                .map(|row| cells(row))
                .find(|row| row[0] == proxy)
                .unwrap_or_else(|| panic!("no {proxy} row in {scenario}:\n{}", table.join("\n")));
            assert_eq!(row.len(), header.len(), "{proxy} in {scenario}: {row:?}");
            if scenario == "(d)" && proxy == "pingora (bare)" {
                assert!(
                    row[1].starts_with("n/a"),
                    "bare pingora has no limiter: {row:?}"
                );
                continue;
            }
            for (column, value) in [(1, row[1]), (cpu, row[cpu])] {
                let number: f64 = value.parse().unwrap_or(0.0);
                assert!(
                    number > 0.0,
                    "{proxy} in {scenario}: {} is {value:?}\n{}\n{stderr}",
                    header[column],
                    table.join("\n")
                );
            }
        }
    }
}

/// The rows `bench-lean-h1.sh` prints per round, by proxy.
const LEAN_PROXIES: [&str; 6] = [
    "nginx",
    "nginx-log",
    "percore",
    "gw-pingora",
    "gw-lean",
    "gw-lean-quiet",
];

/// Runs `bench-lean-h1.sh` over `proto` (h1: wrk; h2: h2load) and checks every proxy's row.
fn lean_benchmark_measures_every_proxy(proto: &str) {
    let (stdout, stderr) = run_harness(
        "bench-lean-h1.sh",
        &[
            ("BARE_PINGORA_BIN", debug_example("bare_pingora")),
            ("GATEWAY_BIN", debug_example("gateway_env")),
            ("CALLGRIND", PathBuf::from("0")),
            ("PROTO", PathBuf::from(proto)),
        ],
    );
    // | round | proxy | load average (1 min) | req/s | p99 | CPU us/req |
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|line| line.starts_with("| 1 |"))
        .map(cells)
        .collect();
    for proxy in LEAN_PROXIES {
        let row = rows
            .iter()
            .find(|row| row[1] == proxy)
            .unwrap_or_else(|| panic!("{proto}: no {proxy} row in:\n{stdout}\n{stderr}"));
        for (what, value) in [("req/s", row[3]), ("CPU us/req", row[5])] {
            let number: f64 = value.parse().unwrap_or(0.0);
            assert!(
                number > 0.0,
                "{proto} {proxy}: {what} is {value:?}\n{stdout}"
            );
        }
    }
}

#[test]
fn the_lean_engine_benchmark_measures_every_proxy() {
    lean_benchmark_measures_every_proxy("h1");
}

/// The same over HTTP/2, the lean HTTP/2 engine beside pingora's h2 path and nginx's.
#[test]
fn the_lean_engine_benchmark_measures_every_proxy_over_http2() {
    lean_benchmark_measures_every_proxy("h2");
}
