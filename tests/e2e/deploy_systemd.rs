//! The systemd units of deploy/systemd: `systemd-analyze verify` and `security` on each, what
//! each must say (user, state directory, hardening, stop timeout over the drain, reload only
//! where the process reloads), and the engine and gateway run as their units run them, with
//! their example environment files, under the unit's NoNewPrivileges and
//! MemoryDenyWriteExecute (as the kernel's prctl equivalents): ready, reloaded by SIGHUP
//! (gateway), stopped by SIGTERM within TimeoutStopSec.

use crate::support::deploy::{filled_in, read_env_file, repo, timespan_secs, Unit};
use crate::support::{
    address, eventually, Process, TestDatabase, BINARY, ENGINE_LISTENING, GATEWAY_LISTENING,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const UNITS: [&str; 3] = ["gateway", "engine", "control"];
/// Where the units expect the binary (the image puts it there too).
const INSTALLED: &str = "/usr/local/bin/aragora";

fn unit_path(name: &str) -> PathBuf {
    repo().join(format!("deploy/systemd/aragora-{name}.service"))
}

fn unit(name: &str) -> Unit {
    Unit::read(&unit_path(name))
}

/// The example environment file a unit's `EnvironmentFile=/etc/aragora/X.env` is installed from.
fn env_example(unit: &Unit) -> PathBuf {
    let installed = unit.service("EnvironmentFile");
    let name = Path::new(installed.trim_start_matches('-'))
        .file_name()
        .unwrap()
        .to_owned();
    assert!(
        installed.starts_with("/etc/aragora/"),
        "{}: EnvironmentFile={installed}",
        unit.path.display()
    );
    let example = repo().join("deploy/systemd").join(name);
    assert!(
        example.is_file(),
        "{} reads {installed}; ship its example as {}",
        unit.path.display(),
        example.display()
    );
    example
}

/// A copy of the unit in `dir` whose ExecStart runs the built binary. `systemd-analyze verify`
/// checks that the ExecStart program exists and is executable, and /usr/local/bin/aragora is
/// not installed here; `--root=DIR` would need a whole tree (it fails looking for
/// sysinit.target), so the copy is the faithful way: every other line is verified as shipped.
fn with_built_binary(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit_path(name)).unwrap();
    assert!(
        text.contains(INSTALLED),
        "aragora-{name}.service runs {INSTALLED}"
    );
    let copy = dir.join(format!("aragora-{name}.service"));
    std::fs::write(&copy, text.replace(INSTALLED, BINARY)).unwrap();
    copy
}

#[test]
fn systemd_analyze_verifies_every_unit_and_rates_its_exposure_ok() {
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let copy = with_built_binary(name, dir.path());
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze (Debian package systemd; scripts/setup.sh installs it)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify aragora-{name}.service: {stderr}"
        );
        // Exposure 0 (locked down) to 10 (unprotected); threshold 20 fails above 2.0 ("OK").
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&copy)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "aragora-{name}.service is exposed more than 2.0:\n{report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The drain settings' value: the example environment file's, else the code's default.
fn setting(env: &[(String, String)], key: &str, default: u64) -> u64 {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(default)
}

#[test]
fn every_unit_runs_as_aragora_hardened_and_outlasts_its_drain() {
    let engine_defaults = aragora_engine::EngineConfig::default();
    let gateway_defaults = aragora_gateway::GatewayConfig::default();
    for name in UNITS {
        let unit = unit(name);
        let shown = unit.path.display().to_string();
        let env = read_env_file(&env_example(&unit));
        assert_eq!(unit.service("User"), "aragora", "{shown}");
        assert_eq!(unit.service("StateDirectory"), "aragora", "{shown}");
        assert_eq!(unit.service("Restart"), "on-failure", "{shown}");
        assert_eq!(unit.service("Type"), "exec", "{shown}");
        let exec: Vec<&str> = unit.service("ExecStart").split_whitespace().collect();
        let command = match name {
            "engine" => "serve",
            other => other,
        };
        assert_eq!(exec, [INSTALLED, command], "{shown}");
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectKernelLogs", "yes"),
            ("ProtectControlGroups", "yes"),
            ("LockPersonality", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("SystemCallFilter", "@system-service"),
        ] {
            assert_eq!(unit.get("Service", key), Some(value), "{shown}: {key}");
        }
        assert!(
            unit.service("RestrictAddressFamilies")
                .split_whitespace()
                .all(|family| ["AF_INET", "AF_INET6", "AF_UNIX"].contains(&family)),
            "{shown}"
        );
        // Only the gateway binds ports below 1024, so only it gets the one capability.
        let capabilities = if name == "gateway" {
            "CAP_NET_BIND_SERVICE"
        } else {
            ""
        };
        assert_eq!(
            unit.service("CapabilityBoundingSet"),
            capabilities,
            "{shown}"
        );
        assert_eq!(
            unit.get("Service", "AmbientCapabilities").unwrap_or(""),
            capabilities,
            "{shown}"
        );
        // Only the gateway reloads on SIGHUP; the others would end (the reload test below).
        match name {
            "gateway" => assert_eq!(
                unit.get("Service", "ExecReload"),
                Some("/bin/kill -HUP $MAINPID"),
                "{shown}"
            ),
            _ => assert_eq!(unit.get("Service", "ExecReload"), None, "{shown}"),
        }
        let drain = match name {
            "gateway" => {
                setting(
                    &env,
                    "ARAGORA_GATEWAY_DRAIN_DELAY",
                    gateway_defaults.drain_delay_secs,
                ) + setting(
                    &env,
                    "ARAGORA_GATEWAY_DRAIN_TIMEOUT",
                    gateway_defaults.drain_timeout_secs,
                )
            }
            "engine" => setting(
                &env,
                "ARAGORA_DRAIN_TIMEOUT",
                engine_defaults.drain_timeout_secs,
            ),
            _ => 0,
        };
        let stop = timespan_secs(unit.service("TimeoutStopSec"));
        assert!(
            stop >= drain + 10,
            "{shown}: TimeoutStopSec={stop}s leaves under 10 s beyond the {drain} s drain"
        );
        let after = unit.get("Unit", "After").unwrap_or_default();
        assert!(after.contains("network-online.target"), "{shown}");
        if name != "gateway" {
            assert!(after.contains("postgresql.service"), "{shown}: {after}");
        }
    }
}

/// The environment a unit's process gets: systemd's PATH, the unit's `Environment=`, then its
/// environment file (which wins) with its placeholders filled in, then `adjust` (ports, paths,
/// database).
fn unit_environment(unit: &Unit, adjust: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([(
        "PATH".to_string(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".to_string(),
    )]);
    for assignment in unit.all("Service", "Environment") {
        let (key, value) = assignment.split_once('=').unwrap();
        env.insert(key.to_string(), value.to_string());
    }
    env.extend(
        read_env_file(&env_example(unit))
            .into_iter()
            .map(|(key, value)| (key, filled_in(&value))),
    );
    for (key, value) in adjust {
        assert!(
            env.contains_key(*key),
            "the test adjusts {key}, which the example does not set"
        );
        env.insert(key.to_string(), value.clone());
    }
    env
}

/// The unit's ExecStart run as systemd runs it: that environment only, stdin closed, with the
/// unit's NoNewPrivileges and MemoryDenyWriteExecute applied by prctl (PR_SET_NO_NEW_PRIVS;
/// PR_SET_MDWE, Linux 6.3+, the kernel's own form of what systemd does with seccomp): a binary
/// that maps writable code fails here as it would there.
fn spawn_unit(unit: &Unit, env: &BTreeMap<String, String>, dir: &Path, name: &str) -> Process {
    use std::os::unix::process::CommandExt;
    let exec: Vec<&str> = unit.service("ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], INSTALLED);
    let mut command = Command::new(BINARY);
    command.args(&exec[1..]).env_clear().envs(env);
    // SAFETY: prctl only changes this (forked, not yet exec'd) process's own flags.
    unsafe {
        command.pre_exec(|| {
            const PR_SET_NO_NEW_PRIVS: libc::c_int = 38;
            const PR_SET_MDWE: libc::c_int = 65;
            const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
            if libc::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Process::spawn(
        &mut command,
        &dir.join(format!("{name}.log")),
        &dir.join(format!("{name}.out")),
    )
}

/// SIGTERM, and the exit within the unit's TimeoutStopSec (systemd's SIGKILL after it).
async fn stops_within_timeout(process: &mut Process, unit: &Unit) {
    let patience = Duration::from_secs(timespan_secs(unit.service("TimeoutStopSec")));
    let sent = Instant::now();
    process.signal(libc::SIGTERM);
    let status = process.wait_exit(patience).await;
    assert!(
        status.success(),
        "{} exited with {status} after SIGTERM; log:\n{}",
        unit.path.display(),
        process.log_text()
    );
    assert!(sent.elapsed() < patience);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_and_gateway_units_start_with_their_examples_reload_and_stop_in_time() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();

    let engine_unit = unit("engine");
    let engine_env = unit_environment(
        &engine_unit,
        &[
            ("ARAGORA_HOST", "127.0.0.1".into()),
            ("ARAGORA_PORT", "0".into()),
            ("ARAGORA_WS_PORT", "0".into()),
            ("ARAGORA_DATA_DIR", dir.path().display().to_string()),
            ("DATABASE_URL", database.url.clone()),
            // Many engines share the test PostgreSQL.
            ("ARAGORA_DB_POOL_SIZE", "4".into()),
        ],
    );
    let token = engine_env["ARAGORA_API_TOKEN"].clone();
    let mut engine = spawn_unit(&engine_unit, &engine_env, dir.path(), "engine");
    let api = address(&engine.announcement(ENGINE_LISTENING), "api");
    let client = crate::support::with_bearer(reqwest::Client::builder(), Some(&token))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    eventually(
        "the engine unit to report ready",
        Duration::from_secs(60),
        || async {
            let response = client
                .get(format!("http://{api}/readyz"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;

    // The gateway in front of it, with its example file and a certificate at the paths it names.
    let gateway_unit = unit("gateway");
    let tls = dir.path().join("tls");
    let first = aragora_gateway::tls::self_signed(&tls.join("first")).unwrap();
    let (cert, key) = (tls.join("fullchain.pem"), tls.join("privkey.pem"));
    std::fs::copy(&first.0, &cert).unwrap();
    std::fs::copy(&first.1, &key).unwrap();
    let gateway_env = unit_environment(
        &gateway_unit,
        &[
            ("ARAGORA_GATEWAY_HOST", "127.0.0.1".into()),
            ("ARAGORA_HTTP_PORT", "0".into()),
            ("ARAGORA_HTTPS_PORT", "0".into()),
            ("ARAGORA_ADMIN_PORT", "0".into()),
            ("ARAGORA_TLS_CERT", cert.display().to_string()),
            ("ARAGORA_TLS_KEY", key.display().to_string()),
            ("ARAGORA_UPSTREAMS", api.to_string()),
        ],
    );
    // Not in the example: this test's own rate-limit keys in the shared Redis.
    let mut gateway_env = gateway_env;
    gateway_env.insert(
        "ARAGORA_RATE_LIMIT_KEY_PREFIX".into(),
        format!("e2e-units-{}", uuid::Uuid::new_v4().simple()),
    );
    assert_eq!(
        gateway_env["ARAGORA_API_TOKEN"], token,
        "one admin token in both examples"
    );
    let mut gateway = spawn_unit(&gateway_unit, &gateway_env, dir.path(), "gateway");
    let https = address(&gateway.announcement(GATEWAY_LISTENING), "https");
    let trusting = |pem: &Path| {
        let root = reqwest::Certificate::from_pem(&std::fs::read(pem).unwrap()).unwrap();
        crate::support::with_bearer(reqwest::Client::builder(), Some(&token))
            .add_root_certificate(root)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let base = format!("https://127.0.0.1:{}", https.port());
    let before = trusting(&first.0);
    eventually(
        "a debate through the gateway unit",
        Duration::from_secs(60),
        || async {
            let response = before
                .post(format!("{base}/api/debates"))
                .json(&serde_json::json!({"topic": "Units or containers?", "rounds": 1}))
                .send()
                .await
                .ok()?;
            (response.status() == 202).then_some(())
        },
    )
    .await;

    // `systemctl reload`: a renewed certificate at the same paths is presented after SIGHUP.
    let renewed = aragora_gateway::tls::self_signed(&tls.join("renewed")).unwrap();
    std::fs::copy(&renewed.0, &cert).unwrap();
    std::fs::copy(&renewed.1, &key).unwrap();
    gateway.signal(libc::SIGHUP);
    let after = trusting(&renewed.0);
    eventually(
        "the renewed certificate after SIGHUP",
        Duration::from_secs(30),
        || async {
            let response = after.get(format!("{base}/healthz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    assert!(
        gateway.exited().is_none(),
        "SIGHUP reloads, it does not stop the gateway"
    );

    stops_within_timeout(&mut gateway, &gateway_unit).await;
    stops_within_timeout(&mut engine, &engine_unit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_ends_the_engine_which_is_why_its_unit_has_no_exec_reload() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::support::aragora_command();
    command
        .arg("serve")
        .env("ARAGORA_HOST", "127.0.0.1")
        .env("ARAGORA_PORT", "0")
        .env("ARAGORA_WS_PORT", "0")
        .env("ARAGORA_DATA_DIR", dir.path());
    let mut engine = Process::spawn(
        &mut command,
        &dir.path().join("engine.log"),
        &dir.path().join("engine.out"),
    );
    engine.announcement(ENGINE_LISTENING);
    engine.signal(libc::SIGHUP);
    let status = engine.wait_exit(Duration::from_secs(30)).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGHUP),
        "the engine does not handle SIGHUP; if it learns to reload, give its unit ExecReload"
    );
}

/// An example file copied and not filled in must not run in production: the engine unit's
/// example as shipped (only ports, paths and the database adjusted) is refused before anything
/// listens, naming every placeholder and printing none.
#[test]
fn the_engine_unit_refuses_its_example_file_with_the_placeholders_left_in() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit("engine");
    let mut env = BTreeMap::from([(
        "PATH".to_string(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".to_string(),
    )]);
    env.extend(read_env_file(&env_example(&unit)));
    assert_eq!(
        env["ARAGORA_ENV"], "production",
        "the example is production's"
    );
    for (key, value) in [
        ("ARAGORA_HOST", "127.0.0.1".to_string()),
        ("ARAGORA_PORT", "0".into()),
        ("ARAGORA_WS_PORT", "0".into()),
        ("ARAGORA_DATA_DIR", dir.path().display().to_string()),
    ] {
        env.insert(key.to_string(), value);
    }
    let exec: Vec<&str> = unit.service("ExecStart").split_whitespace().collect();
    let output = Command::new(BINARY)
        .args(&exec[1..])
        .env_clear()
        .envs(&env)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    for name in [
        "ARAGORA_JWT_SECRET",
        "ARAGORA_API_TOKEN",
        "ARAGORA_RECEIPT_SIGNING_KEY",
        "DATABASE_URL",
    ] {
        assert!(
            stderr
                .lines()
                .any(|line| line.contains(name) && line.contains("placeholder")),
            "names {name}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("change-me-"), "prints no value:\n{stderr}");
}
