//! The shipped compose files as data: `deploy/compose/*.yml` read with serde_yaml (anchors and
//! merge keys applied), the env file parsed as docker compose reads it, `${...}` interpolated
//! from it, and each service's environment (`env_file`, then `environment`, which wins) and bind
//! mounts resolved. What `tests/e2e/compose.rs` checks and `tests/e2e/topology.rs` runs.

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use super::deploy::repo;

/// `deploy/compose/`, the directory compose resolves the files' relative paths against.
pub fn compose_dir() -> PathBuf {
    repo().join("deploy/compose")
}

/// The shipped env file (`deploy/.env.example`), the one CI has.
pub fn env_example() -> PathBuf {
    repo().join("deploy/.env.example")
}

/// `NAME=value` lines of an env file as docker compose reads them: comments and blank lines
/// skipped, no quoting (the example quotes nothing).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            Some((name.trim().to_string(), value.to_string()))
        })
        .collect()
}

/// `text` with `${NAME}`, `${NAME:-default}`, `${NAME-default}` and `${NAME:?message}` replaced
/// from `vars`, as compose interpolates; `$$` is a literal `$`. Panics on a required variable
/// that is unset, as compose refuses the file.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').expect("a closed ${...}");
            let expr = &body[..end];
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let value = vars.get(name).cloned();
            let replaced = if let Some(default) = op.strip_prefix(":-") {
                value
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default.to_string())
            } else if let Some(default) = op.strip_prefix('-') {
                value.unwrap_or_else(|| default.to_string())
            } else if let Some(message) = op.strip_prefix(":?") {
                value
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| panic!("${{{name}}} is required: {message}"))
            } else {
                assert!(op.is_empty(), "unsupported interpolation ${{{expr}}}");
                value.unwrap_or_default()
            };
            out.push_str(&replaced);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A compose file read as compose reads it, interpolated from an env file.
pub struct ComposeFile {
    pub path: PathBuf,
    pub doc: Value,
    /// The variables it was interpolated with (the env file's, plus `DEPLOY_ENV_FILE`).
    pub vars: BTreeMap<String, String>,
}

impl ComposeFile {
    /// `deploy/compose/NAME` interpolated from `deploy/.env.example`, which also stands in for
    /// the operator's `deploy/.env` as every aragora container's `env_file`.
    pub fn shipped(name: &str) -> Self {
        let env = std::fs::read_to_string(env_example()).unwrap();
        let mut vars = parse_env_file(&env);
        vars.insert("DEPLOY_ENV_FILE".into(), "../.env.example".into());
        Self::load(&compose_dir().join(name), vars)
    }

    pub fn load(path: &Path, vars: BTreeMap<String, String>) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let mut doc: Value =
            serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        // Compose interpolates the values of the parsed file (not its comments).
        interpolate_values(&mut doc, &vars);
        // serde_yaml applies one level of `<<` per pass; a merged mapping may bring its own.
        while has_merge_key(&doc) {
            doc.apply_merge().unwrap();
        }
        Self {
            path: path.to_path_buf(),
            doc,
            vars,
        }
    }

    /// The service names, in the file's order.
    pub fn services(&self) -> Vec<String> {
        self.doc["services"]
            .as_mapping()
            .expect("services")
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect()
    }

    pub fn service(&self, name: &str) -> &Value {
        let service = &self.doc["services"][name];
        assert!(!service.is_null(), "no service {name}");
        service
    }

    /// The services running the aragora image.
    pub fn aragora_services(&self) -> Vec<String> {
        self.services()
            .into_iter()
            .filter(|name| self.service(name)["image"] == "aragora:latest")
            .collect()
    }

    /// The service's `command` as a list of words.
    pub fn command(&self, name: &str) -> Vec<String> {
        strings(&self.service(name)["command"])
    }

    /// The environment a container of `name` gets: its `env_file` (relative to the compose
    /// file's directory), then its `environment`, which wins.
    pub fn environment(&self, name: &str) -> BTreeMap<String, String> {
        let service = self.service(name);
        let mut env = BTreeMap::new();
        let dir = self.path.parent().unwrap();
        let files = match &service["env_file"] {
            Value::Null => Vec::new(),
            Value::String(file) => vec![file.clone()],
            other => strings(other),
        };
        for file in files {
            let text = std::fs::read_to_string(dir.join(&file))
                .unwrap_or_else(|err| panic!("{name}'s env_file {file}: {err}"));
            env.extend(parse_env_file(&text));
        }
        match &service["environment"] {
            Value::Mapping(map) => {
                for (key, value) in map {
                    env.insert(scalar(key), scalar(value));
                }
            }
            Value::Sequence(list) => {
                for item in list {
                    let item = scalar(item);
                    let (key, value) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(key.to_string(), value.to_string());
                }
            }
            _ => {}
        }
        env
    }

    /// The service's bind mounts as (host path, container path): relative sources resolved
    /// against the compose file's directory; named volumes left out.
    pub fn bind_mounts(&self, name: &str) -> Vec<(PathBuf, String)> {
        let dir = self.path.parent().unwrap();
        strings(&self.service(name)["volumes"])
            .into_iter()
            .filter_map(|volume| {
                let mut parts = volume.split(':');
                let source = parts.next()?;
                let target = parts.next()?;
                (source.starts_with('.') || source.starts_with('/'))
                    .then(|| (dir.join(source), target.to_string()))
            })
            .collect()
    }

    /// The text of the file service `name` is started with (`--config.file=`, a path in the
    /// container), read from the host through its bind mounts.
    pub fn config_file_text(&self, name: &str) -> String {
        let command = self.command(name);
        let file = command
            .iter()
            .find_map(|arg| arg.strip_prefix("--config.file="))
            .unwrap_or_else(|| panic!("{name} is started with no --config.file"));
        let host = self
            .host_path(name, file)
            .unwrap_or_else(|| panic!("{name}'s {file} is not in a bind mount"));
        std::fs::read_to_string(&host).unwrap_or_else(|err| panic!("{}: {err}", host.display()))
    }

    /// The host path of `container_path` in service `name`, through its bind mounts.
    pub fn host_path(&self, name: &str, container_path: &str) -> Option<PathBuf> {
        self.bind_mounts(name)
            .into_iter()
            .find_map(|(host, target)| {
                let rest = container_path.strip_prefix(&target)?;
                match rest {
                    "" => Some(host),
                    _ if rest.starts_with('/') => Some(host.join(rest.trim_start_matches('/'))),
                    _ => None,
                }
            })
    }
}

fn interpolate_values(value: &mut Value, vars: &BTreeMap<String, String>) {
    match value {
        Value::String(text) => *text = interpolate(text, vars),
        Value::Mapping(map) => map
            .iter_mut()
            .for_each(|(_, value)| interpolate_values(value, vars)),
        Value::Sequence(list) => list.iter_mut().for_each(|v| interpolate_values(v, vars)),
        _ => {}
    }
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(key, value)| key == "<<" || has_merge_key(value)),
        Value::Sequence(list) => list.iter().any(has_merge_key),
        _ => false,
    }
}

/// A YAML scalar as compose passes it to a container (numbers and booleans as written).
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A list of scalars (or one scalar) as strings.
pub fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(list) => list.iter().map(scalar).collect(),
        Value::Null => Vec::new(),
        other => vec![scalar(other)],
    }
}
