//! The compose profiles (`deploy/compose/`) and their env file (`deploy/.env.example`) against
//! the code and the real tools: the env file documents every setting of every `settings!`
//! table with its doc line and the code's default, and holds secrets only as `change-me`
//! placeholders; the compose Alertmanager configuration is the renderer's, pointed at the
//! control service; Debian's `docker-compose` accepts both files; `promtool` the Prometheus
//! configuration with its rule files as the compose file mounts them, and `amtool` the
//! Alertmanager one; the services the files name each other by exist; Grafana's provisioning
//! reaches the dashboards with the datasource they ask for.

use crate::support::assert_succeeded;
use crate::support::compose::{compose_dir, env_example, repo, ComposeFile};
use aragora_config::Setting;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Output};

/// Every settings table aragora reads, with the serialized defaults of its struct.
fn tables() -> Vec<(&'static str, &'static [Setting], Value)> {
    let json = |value: Result<Value, serde_json::Error>| value.unwrap();
    vec![
        (
            "engine",
            aragora_engine::config::SETTINGS,
            json(serde_json::to_value(aragora_engine::EngineConfig::default())),
        ),
        (
            "auth",
            aragora_auth::SETTINGS,
            json(serde_json::to_value(aragora_auth::AuthConfig::default())),
        ),
        (
            "gateway",
            aragora_gateway::SETTINGS,
            json(serde_json::to_value(
                aragora_gateway::GatewayConfig::default(),
            )),
        ),
        (
            "dr",
            aragora_chaos::SETTINGS,
            json(serde_json::to_value(aragora_chaos::DrConfig::default())),
        ),
        (
            "chaos schedule",
            aragora_chaos::experiment::scheduled::SETTINGS,
            json(serde_json::to_value(
                aragora_chaos::experiment::scheduled::ChaosConfig::default(),
            )),
        ),
        (
            "slo receivers",
            aragora_slo::receivers::SETTINGS,
            json(serde_json::to_value(
                aragora_slo::receivers::ReceiverSettings::default(),
            )),
        ),
        (
            "slo live",
            aragora_slo::live::SETTINGS,
            json(serde_json::to_value(
                aragora_slo::live::LiveSettings::default(),
            )),
        ),
        (
            "slo settings",
            aragora_slo::settings::SETTINGS,
            json(serde_json::to_value(aragora_slo::SloSettings::default())),
        ),
    ]
}

/// The comment block right above the line that sets (or leaves commented) `name`.
fn block_of<'a>(lines: &[&'a str], name: &str) -> Option<Vec<&'a str>> {
    let at = lines.iter().position(|line| {
        let line = line.strip_prefix('#').unwrap_or(line);
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('='))
    })?;
    let mut block: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with("# "))
        .copied()
        .collect();
    block.reverse();
    block.push(lines[at]);
    Some(block)
}

/// A default as the code has it, in the form the env file writes it; `None` when there is
/// none to compare (unset, empty, a list or a table).
fn shown_default(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(items) if !items.is_empty() => Some(
            items
                .iter()
                .filter_map(|item| item.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

fn same_default(written: &str, code: &str) -> bool {
    match (written.parse::<f64>(), code.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => written.eq_ignore_ascii_case(code),
    }
}

#[test]
fn the_env_example_documents_every_setting_with_its_doc_line_and_default() {
    let text = std::fs::read_to_string(env_example()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut count = 0;
    for (table, settings, defaults) in tables() {
        for setting in settings {
            count += 1;
            let name = setting.name();
            let Some(block) = block_of(&lines, name) else {
                problems.push(format!("{table}: no `{name}=` or `#{name}=` line"));
                continue;
            };
            if !block.contains(&format!("# {}", setting.doc).as_str()) {
                problems.push(format!(
                    "{table}: {name} lacks its doc line `# {}`",
                    setting.doc
                ));
            }
            for alias in &setting.env[1..] {
                if !block.iter().any(|line| line.contains(alias)) {
                    problems.push(format!("{table}: {name}'s block does not name {alias}"));
                }
            }
            let Some(written) = block
                .iter()
                .find_map(|line| line.strip_prefix("# default: "))
            else {
                problems.push(format!("{table}: {name} has no `# default:` line"));
                continue;
            };
            if let Some(code) = shown_default(&defaults[setting.key]) {
                if !same_default(written, &code) {
                    problems.push(format!(
                        "{table}: {name} says `default: {written}`; the code's default is {code}"
                    ));
                }
            }
        }
    }
    // Read outside the tables: provider keys and endpoints, process files, the OTLP exporter.
    let mut others: Vec<String> = aragora_engine::agents::providers::ProviderKind::ALL
        .iter()
        .flat_map(|kind| {
            let prefix = aragora_engine::config::provider_env_prefix(*kind);
            [
                kind.key_env().to_string(),
                format!("{prefix}_BASE_URL"),
                format!("{prefix}_MODEL"),
            ]
        })
        .collect();
    others.extend(
        [
            "ARAGORA_CONFIG",
            "ARAGORA_DR_CONFIG",
            "ARAGORA_CONTROL_LISTEN",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .map(String::from),
    );
    for name in &others {
        if block_of(&lines, name).is_none() {
            problems.push(format!("no `{name}=` or `#{name}=` line"));
        }
    }
    assert!(count > 100, "only {count} settings found");
    assert!(
        problems.is_empty(),
        "deploy/.env.example and the settings tables disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_env_example_holds_secrets_only_as_required_placeholders() {
    let text = std::fs::read_to_string(env_example()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let set = crate::support::compose::parse_env_file(&text);
    let secret_names: Vec<&str> = tables()
        .iter()
        .flat_map(|(_, settings, _)| settings.iter())
        .filter(|s| aragora_config::redact::is_secret_key(s.key))
        .map(|s| s.name())
        .collect();
    assert!(
        secret_names.contains(&"ARAGORA_JWT_SECRET"),
        "{secret_names:?}"
    );
    for (name, value) in &set {
        let secret = secret_names.contains(&name.as_str())
            || name.ends_with("_PASSWORD")
            || name.ends_with("_API_KEY");
        if secret {
            assert!(
                value.starts_with("change-me"),
                "{name} is set to something other than a change-me placeholder"
            );
            let block = block_of(&lines, name).unwrap();
            assert!(
                block.iter().any(|line| line.contains("REQUIRED for SME")),
                "{name} is not marked REQUIRED for SME: {block:?}"
            );
        }
    }
    // What production refuses to start without is set, as a placeholder.
    for name in [
        "ARAGORA_JWT_SECRET",
        "ARAGORA_RECEIPT_SIGNING_KEY",
        "ARAGORA_API_TOKEN",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        assert!(set.contains_key(name), "{name} is not set in the example");
    }
    assert_eq!(set["ARAGORA_ENV"], "production");
}

/// The compose variant's receivers: both webhooks at the control service's sink.
const CONTROL_SINK: &str = "http://control:9095/api/alerts/webhook";

#[test]
fn the_compose_alertmanager_config_matches_the_renderer() {
    let env = aragora_config::env_map(&[
        ("ARAGORA_ALERT_PAGER_WEBHOOK_URL", CONTROL_SINK),
        ("ARAGORA_ALERT_CHAT_WEBHOOK_URL", CONTROL_SINK),
    ]);
    let rendered = aragora_slo::receivers::ReceiverSettings::from_env(&env)
        .unwrap()
        .render();
    let committed =
        std::fs::read_to_string(compose_dir().join("alertmanager.yml")).unwrap_or_default();
    assert!(
        committed == rendered,
        "deploy/compose/alertmanager.yml differs from what the renderer writes; run \
         `ARAGORA_ALERT_PAGER_WEBHOOK_URL={CONTROL_SINK} ARAGORA_ALERT_CHAT_WEBHOOK_URL={CONTROL_SINK} \
         aragora slo generate --out alerts --alertmanager deploy/compose/alertmanager.yml` \
         (no other ARAGORA_ALERT_* variables set) and commit"
    );
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)], package: &str) -> Output {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run {program} ({err}); scripts/setup.sh installs it (Debian package {package})")
        })
}

#[test]
fn docker_compose_accepts_both_profiles_with_the_example_env_file() {
    for file in ["docker-compose.simple.yml", "docker-compose.sme.yml"] {
        let path = format!("deploy/compose/{file}");
        let output = run(
            "docker-compose",
            &["--env-file", "deploy/.env.example", "-f", &path, "config"],
            &[("DEPLOY_ENV_FILE", "../.env.example")],
            "docker-compose",
        );
        let rendered = assert_succeeded(&output, &format!("docker-compose config of {file}"));
        // What compose resolved: the secrets reached the containers from the env file.
        assert!(
            rendered.contains("ARAGORA_JWT_SECRET: change-me"),
            "{file}: {rendered}"
        );
    }
    // Without the env file's secrets compose refuses the SME file, naming the variable.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let output = run(
        "docker-compose",
        &[
            "--env-file",
            empty.path().to_str().unwrap(),
            "-f",
            "deploy/compose/docker-compose.sme.yml",
            "config",
        ],
        &[("DEPLOY_ENV_FILE", "../.env.example")],
        "docker-compose",
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("POSTGRES_PASSWORD"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_simple_profile_runs_up_on_the_guides_volume() {
    let simple = ComposeFile::shipped("docker-compose.simple.yml");
    assert_eq!(simple.services(), ["aragora"]);
    assert_eq!(simple.command("aragora"), ["up"]);
    let service = simple.service("aragora");
    let ports = crate::support::compose::strings(&service["ports"]);
    assert_eq!(ports, ["80:80", "443:443"]);
    assert_eq!(
        crate::support::compose::strings(&service["volumes"]),
        ["aragora-data:/var/lib/aragora"]
    );
    assert_eq!(
        simple.environment("aragora")["ARAGORA_DATA_DIR"],
        "/var/lib/aragora"
    );
    assert!(simple.doc["volumes"]
        .as_mapping()
        .unwrap()
        .contains_key("aragora-data"));
    assert!(!service["healthcheck"]["test"].is_null());
}

/// `host:port` words of a comma-separated list or a URL.
fn host_of(address: &str) -> String {
    let address = address.split("://").last().unwrap();
    let address = address.rsplit('@').next().unwrap();
    address.split([':', '/']).next().unwrap().to_string()
}

#[test]
fn the_sme_profile_wires_its_services_by_name() {
    let sme = ComposeFile::shipped("docker-compose.sme.yml");
    let services = sme.services();
    let engines: Vec<String> = sme
        .aragora_services()
        .into_iter()
        .filter(|name| sme.command(name) == ["serve"])
        .collect();
    let gateways: Vec<String> = sme
        .aragora_services()
        .into_iter()
        .filter(|name| sme.command(name) == ["gateway"])
        .collect();
    assert_eq!(engines, ["engine-1", "engine-2", "engine-3"]);
    assert_eq!(gateways, ["gateway-1", "gateway-2"]);
    let migrate = &sme.aragora_services()[0];
    assert_eq!(sme.command(migrate), ["migrate", "up"]);

    for engine in &engines {
        let env = sme.environment(engine);
        assert_eq!(env["ARAGORA_AUTO_MIGRATE"], "false", "{engine}");
        assert_eq!(env["ARAGORA_DB_BACKEND"], "postgres", "{engine}");
        assert_eq!(host_of(&env["DATABASE_URL"]), "postgres", "{engine}");
        assert_eq!(host_of(&env["ARAGORA_REDIS_URL"]), "redis", "{engine}");
        let service = sme.service(engine);
        assert_eq!(
            service["depends_on"][migrate.as_str()]["condition"],
            "service_completed_successfully"
        );
        assert_eq!(service["restart"], "unless-stopped");
        // The drain fits in the grace period.
        let drain: u64 = env["ARAGORA_DRAIN_TIMEOUT"].parse().unwrap();
        assert!(seconds(&service["stop_grace_period"]) > drain, "{engine}");
    }
    for gateway in &gateways {
        let env = sme.environment(gateway);
        let upstreams: Vec<String> = env["ARAGORA_UPSTREAMS"]
            .split(',')
            .map(|u| u.to_string())
            .collect();
        let expected: Vec<String> = engines.iter().map(|e| format!("{e}:8080")).collect();
        assert_eq!(upstreams, expected, "{gateway}");
        assert_eq!(host_of(&env["ARAGORA_REDIS_URL"]), "redis", "{gateway}");
        assert_eq!(env["ARAGORA_ADMIN_HOST"], "0.0.0.0", "{gateway}");
        let otlp = &env["OTEL_EXPORTER_OTLP_ENDPOINT"];
        assert!(services.contains(&host_of(otlp)), "{gateway}: {otlp}");
        let service = sme.service(gateway);
        let drain: u64 = env["ARAGORA_GATEWAY_DRAIN_DELAY"].parse::<u64>().unwrap()
            + env["ARAGORA_GATEWAY_DRAIN_TIMEOUT"].parse::<u64>().unwrap();
        assert!(seconds(&service["stop_grace_period"]) > drain, "{gateway}");
        // The certificate the gateway is told to load is inside a mount.
        assert!(
            sme.host_path(gateway, &env["ARAGORA_TLS_CERT"]).is_some(),
            "{gateway}: ARAGORA_TLS_CERT is not under a mounted directory"
        );
    }
    // Every service waited on exists, and every healthy wait has a healthcheck.
    for name in &services {
        if let Some(deps) = sme.service(name)["depends_on"].as_mapping() {
            for (dep, how) in deps {
                let dep = dep.as_str().unwrap();
                assert!(services.contains(&dep.to_string()), "{name} waits on {dep}");
                if how["condition"] == "service_healthy" {
                    assert!(
                        !sme.service(dep)["healthcheck"].is_null(),
                        "{name} waits for {dep} to be healthy but it has no healthcheck"
                    );
                }
            }
        }
        let long_running = sme.service(name)["restart"] != "no";
        assert!(
            !long_running || sme.service(name)["restart"] == "unless-stopped",
            "{name} has no restart policy"
        );
    }
    // Control's URLs and Alertmanager's receivers name services of the file.
    let control = sme.environment("control");
    for key in ["ARAGORA_PROMETHEUS_URL", "ARAGORA_ALERTMANAGER_URL"] {
        assert!(services.contains(&host_of(&control[key])), "{key}");
    }
    let listen = &control["ARAGORA_CONTROL_LISTEN"];
    assert!(
        CONTROL_SINK.contains(&format!(":{}/", listen.rsplit(':').next().unwrap())),
        "{listen}"
    );
    assert!(services.contains(&host_of(CONTROL_SINK)));
    // Prometheus scrapes services of the file, on the ports they listen on.
    let prometheus = prometheus_config(&sme);
    for target in scrape_targets(&prometheus) {
        let host = host_of(&target);
        assert!(
            host == "127.0.0.1" || services.contains(&host),
            "Prometheus scrapes {target}, not a service"
        );
    }
    let targets = scrape_targets(&prometheus);
    for gateway in &gateways {
        let port = &sme.environment(gateway)["ARAGORA_ADMIN_PORT"];
        assert!(targets.contains(&format!("{gateway}:{port}")), "{gateway}");
    }
    for engine in &engines {
        assert!(targets.contains(&format!("{engine}:8080")), "{engine}");
    }
}

/// `30s`, `1m30s` as seconds.
fn seconds(value: &serde_yaml::Value) -> u64 {
    let text = value.as_str().expect("a duration");
    aragora_slo::duration::PromDuration::parse(text)
        .unwrap()
        .seconds()
}

/// The compose Prometheus configuration, read from where the prometheus service mounts it.
fn prometheus_config(sme: &ComposeFile) -> serde_yaml::Value {
    let path = prometheus_config_path(sme);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn prometheus_config_path(sme: &ComposeFile) -> std::path::PathBuf {
    let command = sme.command("prometheus");
    let file = command
        .iter()
        .find_map(|arg| arg.strip_prefix("--config.file="))
        .expect("prometheus --config.file");
    sme.host_path("prometheus", file)
        .expect("the config file is mounted")
}

pub fn scrape_targets(config: &serde_yaml::Value) -> Vec<String> {
    config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().unwrap().iter())
        .flat_map(|group| crate::support::compose::strings(&group["targets"]))
        .collect()
}

#[test]
fn promtool_accepts_the_compose_prometheus_config_with_its_rules_as_mounted() {
    let sme = ComposeFile::shipped("docker-compose.sme.yml");
    let path = prometheus_config_path(&sme);
    let text = std::fs::read_to_string(&path).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    // The rule files are container paths: resolved through the service's mounts they must
    // exist in the repository, and promtool checks the copy that names them so.
    let mut resolved = text.clone();
    let rules = crate::support::compose::strings(&config["rule_files"]);
    assert_eq!(rules.len(), 2, "{rules:?}");
    for rule in &rules {
        let host = sme
            .host_path("prometheus", rule)
            .unwrap_or_else(|| panic!("{rule} is not under a mount of the prometheus service"));
        assert!(host.exists(), "{rule} -> {} does not exist", host.display());
        resolved = resolved.replace(rule.as_str(), host.to_str().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("prometheus.yml");
    std::fs::write(&copy, &resolved).unwrap();
    let checked = assert_succeeded(
        &run(
            "promtool",
            &["check", "config", copy.to_str().unwrap()],
            &[],
            "prometheus",
        ),
        "promtool check config",
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    // Broken rules fail the check: it reads the files it was pointed at.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(\n",
    )
    .unwrap();
    let mut bad = resolved.clone();
    let first = sme.host_path("prometheus", &rules[0]).unwrap();
    bad = bad.replace(first.to_str().unwrap(), broken.to_str().unwrap());
    std::fs::write(&copy, &bad).unwrap();
    let output = run(
        "promtool",
        &["check", "config", copy.to_str().unwrap()],
        &[],
        "prometheus",
    );
    assert!(!output.status.success());
}

#[test]
fn amtool_accepts_the_compose_alertmanager_config_and_pages_reach_the_pager() {
    let sme = ComposeFile::shipped("docker-compose.sme.yml");
    let command = sme.command("alertmanager");
    let file = command
        .iter()
        .find_map(|arg| arg.strip_prefix("--config.file="))
        .expect("alertmanager --config.file");
    let config = sme.host_path("alertmanager", file).expect("mounted");
    let config = config.to_str().unwrap();
    let checked = assert_succeeded(
        &run(
            "amtool",
            &["check-config", config],
            &[],
            "prometheus-alertmanager",
        ),
        "amtool check-config",
    );
    assert!(checked.contains("2 receivers"), "{checked}");
    let output = run(
        "amtool",
        &[
            "config",
            "routes",
            "test",
            "--config.file",
            config,
            "severity=critical",
        ],
        &[],
        "prometheus-alertmanager",
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "pager");
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(CONTROL_SINK), "{text}");
}

#[test]
fn grafana_provisions_the_datasource_the_dashboards_ask_for() {
    let sme = ComposeFile::shipped("docker-compose.sme.yml");
    let provisioning = sme
        .host_path("grafana", "/etc/grafana/provisioning")
        .expect("provisioning mounted");
    let datasources: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(provisioning.join("datasources/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    assert_eq!(source["isDefault"], true);
    let url = source["url"].as_str().unwrap();
    assert!(sme.services().contains(&host_of(url)), "{url}");

    let providers: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(provisioning.join("dashboards/aragora.yml")).unwrap(),
    )
    .unwrap();
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboards = sme.host_path("grafana", path).expect("dashboards mounted");
    let mut found = 0;
    for entry in std::fs::read_dir(&dashboards).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        found += 1;
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Each dashboard picks its datasource through a `datasource` variable of the
        // provisioned type (Grafana starts it at the default one), and every panel uses it.
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        let variable = variables
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{}: no datasource variable", path.display()));
        assert_eq!(variable["query"], source["type"].as_str().unwrap());
        let name = variable["name"].as_str().unwrap();
        let mut uses: HashMap<String, usize> = HashMap::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            *uses
                .entry(
                    panel["datasource"]["uid"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
                .or_default() += 1;
        }
        assert_eq!(
            uses.keys().collect::<Vec<_>>(),
            [&format!("${{{name}}}")],
            "{}",
            path.display()
        );
    }
    assert_eq!(found, 5, "the runbook's five dashboards");
}
