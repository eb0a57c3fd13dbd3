//! The production topology, run here: the SME profile as `deploy/compose/docker-compose.sme.yml`
//! ships it, started as plain processes on this machine. Each aragora service of the file
//! (`migrate`, three engines, two gateways, `control`) runs the real binary with that service's
//! `command` and environment (`env_file`, here `deploy/.env.example`, then `environment`);
//! Prometheus runs the compose `prometheus.yml` with the rules of `alerts/` as mounted,
//! Alertmanager the compose `alertmanager.yml`, and the exporters the Debian binaries with their
//! services' environment. Then debates go through both gateways, one is watched over a WebSocket
//! through the other, an engine and a gateway are killed with SIGKILL mid-debate, and the test
//! checks that no debate is lost, that the rate limit is one limit across both gateways, that
//! Prometheus has every target up, and that a total outage pages: the page reaches control's
//! webhook sink through Alertmanager. Each aragora service's compose healthcheck (`aragora probe`)
//! runs against its process: passing while it serves, failing once it is killed.
//!
//! What is rewritten, and nothing else (`REWRITTEN`; the test asserts every other variable a
//! process gets is the file's):
//!
//! | kind | keys | why |
//! |---|---|---|
//! | addresses | `ARAGORA_HOST`, `ARAGORA_PORT`, `ARAGORA_WS_PORT`, `ARAGORA_GATEWAY_HOST`, `ARAGORA_HTTP_PORT`, `ARAGORA_HTTPS_PORT`, `ARAGORA_ADMIN_HOST`, `ARAGORA_ADMIN_PORT`, `ARAGORA_UPSTREAMS`, `ARAGORA_CONTROL_LISTEN`, `ARAGORA_PROMETHEUS_URL`, `ARAGORA_ALERTMANAGER_URL`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `ARAGORA_REDIS_URL`, `REDIS_ADDR`; Prometheus' targets and Alertmanager's, Alertmanager's webhook URLs | service names become 127.0.0.1 and ports the processes bound (0) or `free_port` gave |
//! | database | `DATABASE_URL`, `DATA_SOURCE_NAME` | the test's own PostgreSQL database |
//! | paths | `ARAGORA_DATA_DIR` (a volume), `ARAGORA_TLS_CERT`, `ARAGORA_TLS_KEY` (the tls mount), Prometheus' `rule_files` (the alerts mount) | the temporary directory standing in for each volume or mount; a self-signed certificate for the operator's |
//! | per test | `ARAGORA_RATE_LIMIT_KEY_PREFIX`, `ARAGORA_API_TOKEN` | parallel tests share one Redis; the test's admin token |
//! | secrets | every `change-me` placeholder of the env file, filled in (one value per placeholder) | what the operator does before a deploy; production refuses a placeholder |
//! | time (marked `TEST TIME`) | Prometheus' `scrape_interval` and `evaluation_interval`, Alertmanager's `group_wait`, control's `ARAGORA_SLO_EVALUATION_INTERVAL` and `ARAGORA_SLO_WINDOW_SCALE` | a page in seconds instead of minutes |
//!
//! Debates are held running with the engines' own `agent_slow` fault (their admin API), not a
//! setting, and the rate limit is the shipped one (`ARAGORA_RATE_LIMIT` 100 a minute per client):
//! each phase's traffic comes from its own loopback address (127.0.0.x), so each is one client.

use crate::support::compose::ComposeFile;
use crate::support::deploy::filled_in;
use crate::support::otlp::OtlpSink;
use crate::support::process::{address, Process};
use crate::support::prom::PromServer;
use crate::support::{
    aragora_command, eventually, free_port, get_text, sample, test_token, tls_connector_trusting,
    with_bearer, ws_request, TestDatabase, ENGINE_LISTENING, GATEWAY_LISTENING,
};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);
const DEBATES: usize = 12;
const ROUNDS: u64 = 2;

/// The keys a process's environment may differ in from the compose file's (see the table).
const REWRITTEN: &[&str] = &[
    "ARAGORA_HOST",
    "ARAGORA_PORT",
    "ARAGORA_WS_PORT",
    "ARAGORA_GATEWAY_HOST",
    "ARAGORA_HTTP_PORT",
    "ARAGORA_HTTPS_PORT",
    "ARAGORA_ADMIN_HOST",
    "ARAGORA_ADMIN_PORT",
    "ARAGORA_UPSTREAMS",
    "ARAGORA_CONTROL_LISTEN",
    "ARAGORA_PROMETHEUS_URL",
    "ARAGORA_ALERTMANAGER_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "ARAGORA_REDIS_URL",
    "REDIS_ADDR",
    "DATABASE_URL",
    "DATA_SOURCE_NAME",
    "ARAGORA_DATA_DIR",
    "ARAGORA_TLS_CERT",
    "ARAGORA_TLS_KEY",
    "ARAGORA_RATE_LIMIT_KEY_PREFIX",
    "ARAGORA_API_TOKEN",
    // TEST TIME
    "ARAGORA_SLO_EVALUATION_INTERVAL",
    "ARAGORA_SLO_WINDOW_SCALE",
];

/// TEST TIME: control's live SLO windows shrunk 50 times (the 5m window is 6 s, 1h 72 s).
const WINDOW_SCALE: &str = "0.02";

const REDIS: &str = "redis://127.0.0.1:6379/0";

/// One service's process environment: the file's, with `rewrites` applied; panics if a
/// rewrite touches a key outside [`REWRITTEN`].
fn environment(
    sme: &ComposeFile,
    service: &str,
    rewrites: &[(&str, String)],
) -> BTreeMap<String, String> {
    let shipped = sme.environment(service);
    let mut env = shipped.clone();
    // The operator fills in every placeholder before a deploy (production refuses one); the
    // same value for the same placeholder in every service, as one env file gives.
    for value in env.values_mut() {
        *value = filled_in(value);
    }
    for (key, value) in rewrites {
        env.insert(key.to_string(), value.clone());
    }
    for (key, value) in &env {
        if shipped.get(key).map(|v| filled_in(v)).as_ref() != Some(value) {
            assert!(
                REWRITTEN.contains(&key.as_str()),
                "{service}: {key} would be changed from the compose file's value"
            );
        }
    }
    env
}

/// `host:port` of `url` (with or without scheme), the host checked to be `service`.
fn expect_host(url: &str, service: &str) {
    let rest = url.split("://").last().unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    assert_eq!(rest.split([':', '/']).next().unwrap(), service, "{url}");
}

/// Runs service `name`'s compose healthcheck (`aragora probe URL`, the real binary) against
/// where its process listens: the URL's port, the container's, becomes `port`. Whether it passed.
fn healthcheck_passes(sme: &ComposeFile, name: &str, port: u16) -> bool {
    let test = crate::support::compose::strings(&sme.service(name)["healthcheck"]["test"]);
    assert_eq!(test[..3], ["CMD", "aragora", "probe"], "{name}: {test:?}");
    let mut url = reqwest::Url::parse(&test[3]).unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"), "{name} probes itself");
    url.set_port(Some(port)).unwrap();
    aragora_command()
        .args(["probe", url.as_str()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

/// A running aragora service of the file.
struct Service {
    name: String,
    process: Process,
    _dir: tempfile::TempDir,
}

fn spawn(name: &str, command: &[String], env: &BTreeMap<String, String>) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = aragora_command();
    cmd.args(command).envs(env);
    let process = Process::spawn(
        &mut cmd,
        &dir.path().join(format!("{name}.log")),
        &dir.path().join(format!("{name}.out")),
    );
    Service {
        name: name.to_string(),
        process,
        _dir: dir,
    }
}

/// A service's volume, standing in for its named volume or mount.
fn volume(base: &Path, service: &str) -> PathBuf {
    let dir = base.join(service);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An exporter (Debian's binary) on a free port, its environment taken from its service.
struct Exporter {
    child: std::process::Child,
    addr: String,
}

impl Exporter {
    fn start(
        program: &str,
        listen_flag: &str,
        env: &BTreeMap<String, String>,
        args: &[String],
    ) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(program)
            .arg(format!("{listen_flag}={addr}"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{program}: {err} (apt-get install {program}; scripts/setup.sh does)")
            });
        Self { child, addr }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client of the gateways from loopback address `from` (its own rate-limit client).
fn client_from(cert_pem: &[u8], from: IpAddr) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).unwrap())
        .local_address(from)
        .timeout(Duration::from_secs(10));
    with_bearer(builder, Some(&test_token())).build().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// What one watcher saw: the seqs in order and how many connections it took.
#[derive(Debug, Default)]
struct Watch {
    seqs: Vec<i64>,
    connections: usize,
}

/// Follows debate `id` over `wss://` through the gateway on `port` to its `debate_end`,
/// reconnecting after the last seq it has when a replica goes away under it.
async fn watch(port: u16, cert_pem: Vec<u8>, token: String, id: String) -> Watch {
    let connector = tls_connector_trusting(&cert_pem);
    let deadline = Instant::now() + 2 * PATIENCE;
    let mut seen = Watch::default();
    loop {
        assert!(
            Instant::now() < deadline,
            "the watcher did not see the end: {seen:?}"
        );
        let last = seen.seqs.last().copied().unwrap_or(0);
        let path = format!("/ws?debate_id={id}&last_seq={last}");
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let Ok(tls) = connector.connect(name, tcp).await else {
            continue;
        };
        let request = ws_request(&format!("wss://127.0.0.1:{port}{path}"), Some(&token));
        let Ok((mut socket, _)) = tokio_tungstenite::client_async(request, tls).await else {
            // No ready replica for the debate yet (its owner just died): retry, as a browser does.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        seen.connections += 1;
        while let Ok(Some(Ok(message))) = tokio::time::timeout(PATIENCE, socket.next()).await {
            let Message::Text(text) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let event: Value = serde_json::from_str(&text).expect("JSON event");
            let Some(seq) = event["seq"].as_i64() else {
                continue;
            };
            seen.seqs.push(seq);
            if event["type"] == "debate_end" {
                return seen;
            }
        }
    }
}

/// The body of a GET of `url`, or `None` while it cannot be had (for polling).
async fn text_of(http: &reqwest::Client, url: &str) -> Option<String> {
    http.get(url).send().await.ok()?.text().await.ok()
}

/// The replica id an engine logged at start.
fn replica_id(log: &str) -> String {
    let line = log
        .lines()
        .find(|line| line.contains("holds its debates under leases"))
        .unwrap_or_else(|| panic!("no replica id in the log:\n{log}"));
    let start = line.find("\"replica\":\"").expect("a replica field") + 11;
    line[start..].split('"').next().unwrap().to_string()
}

fn received_pages(metrics: &str) -> f64 {
    sample(
        metrics,
        "aragora_alert_notifications_received_total{receiver=\"pager\",status=\"firing\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sme_compose_topology_loses_no_debate_shares_its_limits_and_pages_on_an_outage() {
    let sme = ComposeFile::shipped("docker-compose.sme.yml");
    let database = TestDatabase::create().await;
    let volumes = tempfile::tempdir().unwrap();
    let token = test_token();
    let prefix = format!("aragora:test:{}:ratelimit:", uuid::Uuid::new_v4().simple());
    let aragora = sme.aragora_services();
    let by_command = |words: &[&str]| -> Vec<String> {
        aragora
            .iter()
            .filter(|name| sme.command(name) == words)
            .cloned()
            .collect()
    };
    let (engine_names, gateway_names) = (by_command(&["serve"]), by_command(&["gateway"]));
    assert_eq!((engine_names.len(), gateway_names.len()), (3, 2));

    // What every aragora service shares: the database, Redis, its own volume, the token.
    let common = |service: &str| -> Vec<(&'static str, String)> {
        let shipped = sme.environment(service);
        let mut rewrites = vec![("ARAGORA_API_TOKEN", token.clone())];
        if let Some(url) = shipped.get("DATABASE_URL") {
            expect_host(url, "postgres");
            rewrites.push(("DATABASE_URL", database.url.clone()));
        }
        if let Some(url) = shipped.get("ARAGORA_REDIS_URL") {
            expect_host(url, "redis");
            rewrites.push(("ARAGORA_REDIS_URL", REDIS.to_string()));
        }
        if shipped.contains_key("ARAGORA_DATA_DIR") {
            let dir = volume(volumes.path(), service);
            rewrites.push(("ARAGORA_DATA_DIR", dir.display().to_string()));
        }
        rewrites
    };

    // migrate: runs to completion first (the engines' `service_completed_successfully`).
    let migrate = &by_command(&["migrate", "up"])[0];
    let output = aragora_command()
        .args(sme.command(migrate))
        .envs(environment(&sme, migrate, &common(migrate)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        crate::support::describe_output(&output)
    );

    // The engines, with the shipped `ARAGORA_AUTO_MIGRATE=false`: they start on the schema
    // `migrate` applied.
    let mut engines = Vec::new();
    for name in &engine_names {
        let mut rewrites = common(name);
        rewrites.extend([
            ("ARAGORA_HOST", "127.0.0.1".to_string()),
            ("ARAGORA_PORT", "0".to_string()),
            ("ARAGORA_WS_PORT", "0".to_string()),
        ]);
        let env = environment(&sme, name, &rewrites);
        assert_eq!(env["ARAGORA_AUTO_MIGRATE"], "false");
        let mut service = spawn(name, &sme.command(name), &env);
        let api = address(&service.process.announcement(ENGINE_LISTENING), "api");
        engines.push((service, api));
    }
    let http = with_bearer(reqwest::Client::builder(), Some(&token))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for (service, api) in &engines {
        let url = format!("http://{api}/readyz");
        eventually(&format!("{} ready", service.name), PATIENCE, || async {
            let response = http.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }
    let engine_addr = |name: &str| -> SocketAddr {
        engines
            .iter()
            .find(|(service, _)| service.name == name)
            .map(|(_, api)| *api)
            .unwrap()
    };

    // The gateways: upstreams by service name, the certificate from the tls mount, spans to
    // a stand-in collector for the jaeger service.
    let otlp = OtlpSink::start().await;
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = aragora_gateway::tls::self_signed(tls.path()).unwrap();
    let cert_pem = std::fs::read(&cert).unwrap();
    let mut gateways = Vec::new();
    for name in &gateway_names {
        let shipped = sme.environment(name);
        let upstreams: Vec<String> = shipped["ARAGORA_UPSTREAMS"]
            .split(',')
            .map(|upstream| {
                let (service, port) = upstream.split_once(':').unwrap();
                assert_eq!(port, "8080", "{upstream}: the engines' ARAGORA_PORT");
                engine_addr(service).to_string()
            })
            .collect();
        expect_host(&shipped["OTEL_EXPORTER_OTLP_ENDPOINT"], "jaeger");
        for key in ["ARAGORA_TLS_CERT", "ARAGORA_TLS_KEY"] {
            assert!(
                sme.host_path(name, &shipped[key]).is_some(),
                "{key} outside a mount"
            );
        }
        let mut rewrites = common(name);
        rewrites.extend([
            ("ARAGORA_GATEWAY_HOST", "127.0.0.1".to_string()),
            ("ARAGORA_HTTP_PORT", "0".to_string()),
            ("ARAGORA_HTTPS_PORT", "0".to_string()),
            ("ARAGORA_ADMIN_HOST", "127.0.0.1".to_string()),
            ("ARAGORA_ADMIN_PORT", "0".to_string()),
            ("ARAGORA_UPSTREAMS", upstreams.join(",")),
            ("ARAGORA_TLS_CERT", cert.display().to_string()),
            ("ARAGORA_TLS_KEY", key.display().to_string()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", otlp.addr),
            ),
            ("ARAGORA_RATE_LIMIT_KEY_PREFIX", prefix.clone()),
        ]);
        let env = environment(&sme, name, &rewrites);
        let mut service = spawn(name, &sme.command(name), &env);
        let listening = service.process.announcement(GATEWAY_LISTENING);
        let (https, admin) = (
            address(&listening, "https").port(),
            address(&listening, "admin").port(),
        );
        gateways.push((service, https, admin));
    }
    for (service, _, admin) in &gateways {
        let url = format!("http://127.0.0.1:{admin}/api/system/upstreams");
        eventually(
            &format!("{} routing to 3 replicas", service.name),
            PATIENCE,
            || async {
                let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                (body["ready"] == 3).then_some(())
            },
        )
        .await;
    }

    // The exporters, each with its service's environment.
    let postgres_env = {
        let shipped = sme.environment("postgres-exporter");
        expect_host(&shipped["DATA_SOURCE_NAME"], "postgres");
        let url = format!("{}?sslmode=disable", database.url);
        environment(&sme, "postgres-exporter", &[("DATA_SOURCE_NAME", url)])
    };
    let redis_env = {
        expect_host(&sme.environment("redis-exporter")["REDIS_ADDR"], "redis");
        environment(
            &sme,
            "redis-exporter",
            &[("REDIS_ADDR", "redis://127.0.0.1:6379".into())],
        )
    };
    // node-exporter reads the host's root through its /host mount: here it is the root.
    let node_args: Vec<String> = sme
        .command("node-exporter")
        .iter()
        .map(|arg| arg.replace("=/host", "=/"))
        .collect();
    let exporters = [
        (
            "postgres-exporter",
            Exporter::start(
                "prometheus-postgres-exporter",
                "--web.listen-address",
                &postgres_env,
                &[],
            ),
        ),
        (
            "redis-exporter",
            Exporter::start(
                "prometheus-redis-exporter",
                "--web.listen-address",
                &redis_env,
                &[],
            ),
        ),
        (
            "node-exporter",
            Exporter::start(
                "prometheus-node-exporter",
                "--web.listen-address",
                &environment(&sme, "node-exporter", &[]),
                &node_args,
            ),
        ),
    ];

    // Control listens where Prometheus and Alertmanager are told it does; it needs both
    // their addresses, so its port is chosen first.
    let control_addr = format!("127.0.0.1:{}", free_port());
    let sink_url = format!("http://{control_addr}/api/alerts/webhook");

    // Alertmanager with the compose file's configuration, its receivers at this control.
    let am_config = sme.config_file_text("alertmanager");
    let listen = &sme.environment("control")["ARAGORA_CONTROL_LISTEN"];
    let shipped_sink = format!(
        "http://control:{}/api/alerts/webhook",
        listen.rsplit(':').next().unwrap()
    );
    assert!(am_config.contains(&shipped_sink), "{am_config}");
    let am_config = am_config.replace(&shipped_sink, &sink_url);
    // TEST TIME: the first notification's wait, 30 s in the file.
    let timed = am_config.replace("group_wait: 30s", "group_wait: 1s");
    assert_ne!(timed, am_config);
    let alertmanager = crate::support::alertmanager::Alertmanager::start_with_config(&timed).await;

    // Prometheus with the compose file's configuration: targets by service name become the
    // processes' addresses, rule files the repository's through the alerts mount.
    let prom_text = sme.config_file_text("prometheus");
    let mut prom: serde_yaml::Value = serde_yaml::from_str(&prom_text).unwrap();
    // TEST TIME: 15 s and 30 s in the file.
    prom["global"]["scrape_interval"] = "1s".into();
    prom["global"]["evaluation_interval"] = "1s".into();
    let rules: Vec<serde_yaml::Value> = crate::support::compose::strings(&prom["rule_files"])
        .iter()
        .map(|rule| {
            let host = sme
                .host_path("prometheus", rule)
                .expect("a mounted rule file");
            host.display().to_string().into()
        })
        .collect();
    prom["rule_files"] = rules.into();
    let prom_port = free_port();
    let am_addr = alertmanager.url().trim_start_matches("http://").to_string();
    let mut addresses: BTreeMap<String, String> = BTreeMap::new();
    addresses.insert("alertmanager:9093".into(), am_addr);
    addresses.insert("127.0.0.1:9090".into(), format!("127.0.0.1:{prom_port}"));
    addresses.insert(listen.replace("0.0.0.0", "control"), control_addr.clone());
    for (service, api) in &engines {
        addresses.insert(format!("{}:8080", service.name), api.to_string());
    }
    for (service, _, admin) in &gateways {
        let port = &sme.environment(&service.name)["ARAGORA_ADMIN_PORT"];
        addresses.insert(
            format!("{}:{port}", service.name),
            format!("127.0.0.1:{admin}"),
        );
    }
    for (service, exporter) in &exporters {
        let port = match *service {
            "postgres-exporter" => 9187,
            "redis-exporter" => 9121,
            _ => 9100,
        };
        addresses.insert(format!("{service}:{port}"), exporter.addr.clone());
    }
    let mut expected_targets = 0;
    let rewrite_targets = |groups: &mut serde_yaml::Value, count: &mut usize| {
        for group in groups.as_sequence_mut().unwrap() {
            let targets: Vec<serde_yaml::Value> =
                crate::support::compose::strings(&group["targets"])
                    .iter()
                    .map(|target| {
                        *count += 1;
                        addresses
                            .get(target)
                            .unwrap_or_else(|| panic!("no process stands for target {target}"))
                            .clone()
                            .into()
                    })
                    .collect();
            group["targets"] = targets.into();
        }
    };
    let mut unused = 0;
    rewrite_targets(
        &mut prom["alerting"]["alertmanagers"][0]["static_configs"],
        &mut unused,
    );
    for job in prom["scrape_configs"].as_sequence_mut().unwrap() {
        rewrite_targets(&mut job["static_configs"], &mut expected_targets);
    }
    let prom_config = serde_yaml::to_string(&prom).unwrap();
    let prometheus =
        PromServer::start_prometheus_on(tempfile::tempdir().unwrap(), &prom_config, prom_port)
            .await;

    // Control: schedules as shipped, live SLOs over this Prometheus, alerts to this Alertmanager.
    let control_name = &by_command(&["control"])[0];
    let control_env = {
        let shipped = sme.environment(control_name);
        expect_host(&shipped["ARAGORA_PROMETHEUS_URL"], "prometheus");
        expect_host(&shipped["ARAGORA_ALERTMANAGER_URL"], "alertmanager");
        let mut rewrites = common(control_name);
        rewrites.extend([
            ("ARAGORA_CONTROL_LISTEN", control_addr.clone()),
            ("ARAGORA_PROMETHEUS_URL", prometheus.url.clone()),
            ("ARAGORA_ALERTMANAGER_URL", alertmanager.url().to_string()),
            // TEST TIME
            ("ARAGORA_SLO_EVALUATION_INTERVAL", "1".to_string()),
            ("ARAGORA_SLO_WINDOW_SCALE", WINDOW_SCALE.to_string()),
        ]);
        environment(&sme, control_name, &rewrites)
    };
    let mut control = spawn(control_name, &sme.command(control_name), &control_env);
    let bound = address(
        &control.process.announcement("aragora control listening "),
        "http",
    );
    assert_eq!(bound.to_string(), control_addr);
    let control_metrics = format!("http://{control_addr}/metrics");

    // Every target of the compose Prometheus is up.
    let targets_url = format!("{}/api/v1/targets", prometheus.url);
    eventually("every Prometheus target up", PATIENCE, || async {
        let body: Value = reqwest::get(&targets_url).await.ok()?.json().await.ok()?;
        let active = body["data"]["activeTargets"].as_array()?;
        (active.len() == expected_targets && active.iter().all(|t| t["health"] == "up"))
            .then_some(())
    })
    .await;

    // Each aragora service's own compose healthcheck passes where it listens.
    for (service, api) in &engines {
        assert!(
            healthcheck_passes(&sme, &service.name, api.port()),
            "{} healthcheck",
            service.name
        );
    }
    for (service, _, admin) in &gateways {
        assert!(
            healthcheck_passes(&sme, &service.name, *admin),
            "{} healthcheck",
            service.name
        );
    }
    assert!(
        healthcheck_passes(&sme, control_name, bound.port()),
        "control healthcheck"
    );

    // One rate limit across both gateways: one client (127.0.0.2) spreading 160 requests over
    // them gets the shipped 100 a minute in all (each gateway alone would admit 100).
    let limited = client_from(&cert_pem, ip("127.0.0.2"));
    let mut admitted = [0usize; 2];
    let mut refused = [0usize; 2];
    let sending = Instant::now();
    for n in 0..160 {
        let (_, https, _) = &gateways[n % 2];
        let url = format!("https://127.0.0.1:{https}/api/debates?limit=1");
        let status = limited.get(&url).send().await.unwrap().status().as_u16();
        match status {
            200 => admitted[n % 2] += 1,
            429 => refused[n % 2] += 1,
            other => panic!("GET through {} answered {other}", gateways[n % 2].0.name),
        }
    }
    // The burst of 100, plus what the rate (100 a minute) refilled while they were sent.
    let refilled = (sending.elapsed().as_secs_f64() * 100.0 / 60.0).ceil() as usize;
    let total = admitted[0] + admitted[1];
    assert!(
        (99..=100 + refilled + 1).contains(&total) && refused[0] > 0 && refused[1] > 0,
        "admitted {admitted:?}, refused {refused:?} in {:?}: not one shared limit of 100 a minute",
        sending.elapsed()
    );

    // Debates held running (each agent call 300 ms slower, the engines' own fault).
    for (service, api) in &engines {
        let fault = json!({"kind": "agent_slow", "delay_ms": 300, "duration_seconds": 300});
        let response = http
            .post(format!("http://{api}/api/system/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", service.name);
    }
    let client = client_from(&cert_pem, ip("127.0.0.1"));
    let trace_id = format!("{:032x}", rand_u128());
    let mut ids = Vec::new();
    for n in 0..DEBATES {
        let (_, https, _) = &gateways[n % 2];
        let mut request = client
            .post(format!("https://127.0.0.1:{https}/api/debates"))
            .json(&json!({"topic": format!("Topology {n}"), "rounds": ROUNDS}));
        // Traced through gateway-2: gateway-1 dies with its batch of spans unsent.
        if n == 1 {
            request = request.header("traceparent", format!("00-{trace_id}-{:016x}-01", 7u64));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 202, "{}", gateways[n % 2].0.name);
        let body: Value = response.json().await.unwrap();
        ids.push(body["debate_id"].as_str().unwrap().to_string());
    }
    // Debate 0 (created through gateway-1) is watched through gateway-2.
    let watcher = tokio::spawn(watch(
        gateways[1].1,
        cert_pem.clone(),
        token.clone(),
        ids[0].clone(),
    ));

    // Kill the engine running the most debates once it runs some, and gateway-1, mid-debate.
    let (victim, victim_api) = eventually("an engine running debates", PATIENCE, || async {
        let mut best: Option<(usize, f64)> = None;
        for (n, (_, api)) in engines.iter().enumerate() {
            let text = text_of(&http, &format!("http://{api}/metrics")).await?;
            let active = sample(&text, "aragora_active_debates").unwrap_or(0.0);
            if active > best.map_or(0.0, |b| b.1) {
                best = Some((n, active));
            }
        }
        best.map(|(n, _)| (n, engines[n].1))
    })
    .await;
    let dead_replica = replica_id(&engines[victim].0.process.log_text());
    engines[victim].0.process.signal(libc::SIGKILL);
    gateways[0].0.process.signal(libc::SIGKILL);
    // The dead ones' healthchecks fail, as compose would see (and restart them).
    let (victim_name, dead_admin) = (engines[victim].0.name.clone(), gateways[0].2);
    eventually(
        "the killed services' healthchecks failing",
        PATIENCE,
        || async {
            (!healthcheck_passes(&sme, &victim_name, victim_api.port())
                && !healthcheck_passes(&sme, &gateways[0].0.name, dead_admin))
            .then_some(())
        },
    )
    .await;
    let survivor = engines
        .iter()
        .find(|(_, api)| *api != victim_api)
        .unwrap()
        .1;
    // What the dead replica held at its death, read from the database by a survivor before
    // its lease can expire (15 s).
    let mut orphans = Vec::new();
    for id in &ids {
        let debate: Value = http
            .get(format!("http://{survivor}/api/debates/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let open = !["completed", "failed", "cancelled", "timed_out"]
            .contains(&debate["status"].as_str().unwrap_or_default());
        if open && debate["replica"] == dead_replica.as_str() {
            orphans.push(id.clone());
        }
    }
    assert!(!orphans.is_empty(), "the killed engine held no open debate");

    // No debate lost: each completes (the orphans adopted by survivors), read through the
    // surviving gateway.
    let survivor_gateway = gateways[1].1;
    for id in &ids {
        let url = format!("http://{survivor}/api/debates/{id}");
        eventually(&format!("debate {id} to finish"), 2 * PATIENCE, || async {
            let debate: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let status = debate["status"].as_str()?.to_string();
            ["completed", "failed", "cancelled", "timed_out"]
                .contains(&status.as_str())
                .then_some(())
        })
        .await;
        let url = format!("https://127.0.0.1:{survivor_gateway}/api/debates/{id}");
        let debate: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(debate["status"], "completed", "{debate}");
        assert_ne!(debate["replica"], dead_replica.as_str(), "{debate}");
    }
    let mut adopted = 0.0;
    for (n, (_, api)) in engines.iter().enumerate() {
        if n != victim {
            let text = get_text(&http, &format!("http://{api}/metrics")).await;
            adopted += sample(&text, "aragora_debates_adopted_total").expect("exported");
        }
    }
    assert!(
        adopted >= orphans.len() as f64,
        "{} debates were left on the killed engine, {adopted} adopted",
        orphans.len()
    );
    // The watcher through the other gateway saw the whole debate, in order, once.
    let seen = watcher.await.unwrap();
    let expected: Vec<i64> = (1..=*seen.seqs.last().unwrap()).collect();
    assert_eq!(seen.seqs, expected, "{seen:?}");
    // The gateways' spans reached the collector, in the client's trace.
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    eventually(
        "the gateway's span exported over OTLP",
        PATIENCE,
        || async { otlp.received("/v1/traces", &trace_bytes).then_some(()) },
    )
    .await;

    // A total outage pages: every engine stopped, the edge answers 503, control's live SLO
    // evaluation over Prometheus raises the availability page, Alertmanager routes it to the
    // pager receiver: control's sink.
    assert!(
        !availability_paged(&control.process.log_text()),
        "an availability page before the outage: the kills cost users 5xx answers"
    );
    let before = received_pages(
        &http
            .get(&control_metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    for (n, (service, _)) in engines.iter_mut().enumerate() {
        if n != victim {
            service.process.signal(libc::SIGTERM);
            service.process.wait_exit(PATIENCE).await;
        }
    }
    let outage = client_from(&cert_pem, ip("127.0.0.3"));
    let url = format!("https://127.0.0.1:{survivor_gateway}/api/debates?limit=1");
    let started = Instant::now();
    eventually(
        "the outage's page at control's sink",
        2 * PATIENCE,
        || async {
            // Traffic paced under the shipped 100 a minute, so every answer is the outage's (a 5xx),
            // not the rate limit's 429.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let status = outage.get(&url).send().await.ok()?.status();
            assert!(status.is_server_error(), "{status}");
            let text = text_of(&http, &control_metrics).await?;
            // Other pages (latency) may come too; the outage must raise the availability page.
            (received_pages(&text) > before && availability_paged(&control.process.log_text()))
                .then_some(())
        },
    )
    .await;
    assert!(started.elapsed() < 2 * PATIENCE);
    control.process.signal(libc::SIGTERM);
    drop(exporters);
}

/// Whether control's sink logged a firing availability page from receiver `pager`.
fn availability_paged(log: &str) -> bool {
    log.lines().any(|line| {
        line.contains("alert notification received")
            && line.contains("\"receiver\":\"pager\"")
            && line.contains("Availability")
            && line.contains("\"severity\":\"critical\"")
            && line.contains("\"status\":\"firing\"")
    })
}

fn rand_u128() -> u128 {
    let id = uuid::Uuid::new_v4();
    u128::from_be_bytes(*id.as_bytes())
}
