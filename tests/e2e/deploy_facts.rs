//! Facts the deployment files share with the code, checked against the code so a renamed
//! setting, route or port fails CI instead of a deploy. It scans whatever exists under
//! `deploy/` (compose, Kubernetes, systemd, Prometheus, Alertmanager, `.env.example`) and the
//! Dockerfile: every `ARAGORA_*`, `SLO_*` and `OTEL_*` variable is one the code reads, every
//! probe path is a route, every port is a default of the code or a documented extra, and every
//! secret in an example environment file is a `change-me` placeholder.

use crate::support::deploy::repo;
use crate::support::settings::all_settings;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Variables the binary reads outside the `settings!` tables, each with where.
fn read_outside_the_tables() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        // src/main.rs, `ConfigArgs`: the TOML file of a command (clap `env`).
        "ARAGORA_CONFIG",
        // src/control.rs, `ControlArgs::listen` (clap `env`); also read by src/probe.rs.
        "ARAGORA_CONTROL_LISTEN",
        // src/settings.rs, `read_and_validate`: the DR settings' own TOML file.
        "ARAGORA_DR_CONFIG",
        // gateway/src/trace.rs, `SpanExport::from_env`: the OTLP/HTTP collector.
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .map(String::from)
    .into();
    // engine/src/config.rs, `apply_provider_env`: each provider's key, base URL and model.
    use aragora_engine::agents::providers::ProviderKind;
    for kind in ProviderKind::ALL {
        let prefix = aragora_engine::config::provider_env_prefix(kind);
        names.insert(format!("{prefix}_BASE_URL"));
        names.insert(format!("{prefix}_MODEL"));
        names.insert(kind.key_env().to_string());
    }
    names
}

/// Every file the check reads: all of `deploy/` and the Dockerfile.
fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("deploy"), &mut files);
    files.push(repo().join("Dockerfile"));
    files.sort();
    files
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
}

/// The `ARAGORA_*`, `SLO_*` and `OTEL_*` words of `text` (a word ending in `_`, as in
/// `ARAGORA_ALERT_*`, is a prefix).
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for prefix in ["ARAGORA_", "SLO_", "OTEL_"] {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| is_name_char(c) || c.is_ascii_lowercase()) {
                continue;
            }
            let word: String = text[at..]
                .chars()
                .take_while(|c| is_name_char(*c))
                .collect();
            found.insert(word);
        }
    }
    found
}

#[test]
fn every_variable_the_deploy_files_name_is_one_the_code_reads() {
    let mut known: BTreeSet<String> = all_settings()
        .flat_map(|setting| setting.env.iter().map(|env| env.to_string()))
        .collect();
    known.extend(read_outside_the_tables());
    let mut unknown = Vec::new();
    let mut checked = 0;
    for file in deploy_files() {
        let Some(text) = text(&file) else { continue };
        for name in variables(&text) {
            checked += 1;
            let ok = if name.ends_with('_') {
                known.iter().any(|known| known.starts_with(&name))
            } else {
                known.contains(&name)
            };
            if !ok {
                unknown.push(format!("{} names {name}", shown(&file)));
            }
        }
    }
    assert!(checked > 20, "the scan found the variables ({checked})");
    assert!(
        unknown.is_empty(),
        "variables no settings table (nor the list of those read elsewhere) knows:\n  {}",
        unknown.join("\n  ")
    );
}

/// Paths a deploy file probes: `httpGet` `path:` values, `metrics_path:`, ARAGORA_HEALTH_PATH,
/// and every `/...health...`, `/...ready...` or `/...live...` word.
fn probe_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    let value = |line: &str, key: &str| {
        let rest = line.trim().trim_start_matches("- ").strip_prefix(key)?;
        Some(rest.trim().trim_matches(['"', '\'']).to_string())
    };
    for (index, line) in lines.iter().enumerate() {
        let in_probe = lines[index.saturating_sub(3)..index]
            .iter()
            .any(|l| l.contains("httpGet"));
        if in_probe {
            paths.extend(value(line, "path:"));
        }
        paths.extend(value(line, "metrics_path:"));
        paths.extend(value(line, "ARAGORA_HEALTH_PATH="));
    }
    for (at, _) in text.match_indices('/') {
        let word: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'))
            .collect();
        let previous = text[..at].chars().next_back();
        let starts_path = previous.is_none_or(|c| c.is_whitespace() || "\"'`(=,:".contains(c))
            || text[..at].ends_with("://")
            || previous.is_some_and(|c| c.is_ascii_digit());
        if starts_path
            && ["healthz", "readyz", "livez"]
                .iter()
                .any(|probe| word.ends_with(probe))
        {
            paths.insert(word);
        }
    }
    paths.retain(|path| path.starts_with('/'));
    paths
}

#[test]
fn every_probe_path_in_the_deploy_files_is_a_route() {
    let routes: BTreeSet<&str> = aragora_telemetry::ROUTES
        .iter()
        .copied()
        .chain([aragora_slo::receivers::SINK_PATH])
        .collect();
    let mut missing = Vec::new();
    let mut found = 0;
    for file in deploy_files() {
        let Some(text) = text(&file) else { continue };
        for path in probe_paths(&text) {
            found += 1;
            if !routes.contains(path.as_str()) {
                missing.push(format!("{} probes {path}", shown(&file)));
            }
        }
    }
    assert!(found > 0, "the scan found the probe paths");
    assert!(
        missing.is_empty(),
        "paths that are no route of aragora_telemetry::ROUTES:\n  {}",
        missing.join("\n  ")
    );
}

/// The ports `text` names: `host:port` and `:port` in addresses and URLs, `*_PORT=N`,
/// `EXPOSE`, and Kubernetes/compose `port`, `containerPort`, `targetPort` keys and
/// `"HOST:CONTAINER"` mappings. A number after `:` followed by `.` or a letter is a version
/// (`grafana:11.2.0`), below 80 an image tag (`postgres:16`).
fn ports(text: &str) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for line in text.lines() {
        // `uid:gid`, not a port.
        if line.trim_start().starts_with("USER ") || line.contains("chown ") {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        for (index, _) in chars.iter().enumerate().filter(|(_, c)| **c == ':') {
            let digits: String = chars[index + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let next = chars.get(index + 1 + digits.len()).copied();
            let version = next.is_some_and(|c| c == '.' || c.is_ascii_alphanumeric() || c == '-');
            if let (false, Ok(port)) = (version, digits.parse::<u16>()) {
                if port >= 80 {
                    ports.insert(port);
                }
            }
        }
    }
    for line in text.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        let numbers_after = |rest: &str| -> Vec<u16> {
            rest.split(|c: char| c.is_whitespace() || c == ',' || c == '"' || c == '\'')
                .filter_map(|word| word.trim_end_matches("/tcp").parse().ok())
                .collect()
        };
        if let Some(rest) = line.strip_prefix("EXPOSE ") {
            ports.extend(numbers_after(rest));
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.ends_with("_PORT") {
                ports.extend(numbers_after(value));
            }
        }
        let key_value = line.trim_start_matches("- ");
        for key in [
            "port:",
            "containerPort:",
            "targetPort:",
            "hostPort:",
            "nodePort:",
        ] {
            if let Some(rest) = key_value.strip_prefix(key) {
                ports.extend(numbers_after(rest));
            }
        }
    }
    ports.remove(&0);
    ports
}

#[test]
fn every_port_in_the_deploy_files_is_a_default_of_the_code_or_a_documented_extra() {
    let engine = aragora_engine::EngineConfig::default();
    let gateway = aragora_gateway::GatewayConfig::default();
    let mut allowed: BTreeSet<u16> = [
        gateway.http_port,
        gateway.https_port,
        gateway.admin_port,
        engine.api_port,
        engine.ws_port,
        crate::deploy_image::control_default_port(),
    ]
    .into();
    // What aragora runs beside (README "Deploying"): their standard ports.
    allowed.extend([
        9090,  // Prometheus
        9093,  // Alertmanager
        9094,  // Alertmanager's cluster peers
        3000,  // Grafana
        5432,  // PostgreSQL
        6379,  // Redis
        9100,  // node exporter
        9121,  // Redis exporter
        9187,  // PostgreSQL exporter
        4317,  // OTLP gRPC (collector)
        4318,  // OTLP HTTP (collector; the gateway exports here)
        16686, // Jaeger's UI
        587,   // SMTP submission (ARAGORA_ALERT_SMTP_SMARTHOST)
        8081,  // the gateway's HTTP port moved up for a non-root container (README)
        8443,  // the gateway's HTTPS port moved up for a non-root container (README)
    ]);
    let mut unknown = Vec::new();
    let mut found = BTreeSet::new();
    for file in deploy_files() {
        let Some(text) = text(&file) else { continue };
        for port in ports(&text) {
            found.insert(port);
            if !allowed.contains(&port) {
                unknown.push(format!("{} names port {port}", shown(&file)));
            }
        }
    }
    assert!(found.contains(&8080) && found.contains(&443), "{found:?}");
    assert!(
        unknown.is_empty(),
        "ports that are no default of the code and no documented extra:\n  {}",
        unknown.join("\n  ")
    );
}

#[test]
fn every_secret_in_an_example_environment_file_is_a_placeholder() {
    let mut problems = Vec::new();
    let mut secrets = 0;
    for file in deploy_files() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".env") || name.contains(".env.")) {
            continue;
        }
        let Some(text) = text(&file) else { continue };
        let mut comment = String::new();
        for line in text.lines() {
            let line = line.trim();
            let assignment = line.trim_start_matches('#').trim();
            let Some((key, value)) = assignment
                .split_once('=')
                .filter(|(key, _)| !key.is_empty() && key.chars().all(is_name_char))
            else {
                if line.starts_with('#') {
                    comment.push_str(line);
                    comment.push('\n');
                } else {
                    comment.clear();
                }
                continue;
            };
            let secret = aragora_config::redact::is_secret_key(&key.to_ascii_lowercase())
                || aragora_config::url_password(value).is_some();
            if secret {
                secrets += 1;
                if !value.contains("change-me") {
                    problems.push(format!(
                        "{}: {key} is not a change-me placeholder",
                        shown(&file)
                    ));
                }
                if file.starts_with(repo().join("deploy/systemd")) && !comment.contains("SECRET") {
                    problems.push(format!(
                        "{}: {key} has no SECRET comment saying to set it",
                        shown(&file)
                    ));
                }
            }
            if !line.starts_with('#') {
                comment.clear();
            }
        }
    }
    assert!(secrets > 5, "the scan found the secrets ({secrets})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
