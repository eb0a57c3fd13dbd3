//! Chaos experiments: a YAML file that states a steady-state hypothesis (probes), a method
//! (actions that break something, and probes while it is broken) and rollbacks, and the runner
//! behind `aragora chaos run FILE`.
//!
//! ```yaml
//! version: aragora.chaos/v1
//! title: One engine replica killed under load
//! configuration:                 # defaults of ${NAME}; the environment and --var override them
//!   GATEWAY_URL: https://127.0.0.1:443
//! steady_state:
//!   - name: the gateway serves
//!     http: {url: "${GATEWAY_URL}/api/health", insecure: true, repeat: 20}
//! method:
//!   - name: kill a replica
//!     kill: {port: "${REPLICA_PORT}", signal: KILL}
//! rollbacks:
//!   - name: say so
//!     command: {run: [logger, "replica killed by a chaos experiment"]}
//! ```
//!
//! | module | owns |
//! |---|---|
//! | this one | the file's model, `${VAR}` substitution, loading and checking |
//! | [`probes`] | `http`, `slo`, `alert` and `prometheus` probes |
//! | [`actions`] | `kill`, `pause`, `proxy_fault`, `engine_fault`, `http`, `command`, `wait`: each a type with its checks, act and undo |
//! | [`process`] | process targeting: pid files, the /proc socket scan, signals |
//! | [`runner`] | before → method → after → rollbacks, progress, the report |
//! | [`scheduled`] | experiments on a cron schedule (`aragora control`): settings, the job |

pub mod actions;
pub mod probes;
pub mod process;
pub mod runner;
pub mod scheduled;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub use actions::Action;
pub use probes::Probe;
pub use runner::{run, Report, RunOptions, Status};

pub const VERSION: &str = "aragora.chaos/v1";

/// An experiment as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub version: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Defaults for `${NAME}` in the rest of the file.
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    pub steady_state: Vec<NamedProbe>,
    pub method: Vec<Step>,
    #[serde(default)]
    pub rollbacks: Vec<Step>,
}

/// A probe of the steady-state hypothesis.
#[derive(Debug, Clone, Serialize)]
pub struct NamedProbe {
    pub name: String,
    pub probe: Probe,
}

/// One step of a method or of the rollbacks: an action, or (in a method) a probe.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub action: Action,
}

/// The keys a step may use besides `name`, for the message that lists them.
const STEP_KINDS: &str = "kill, pause, proxy_fault, engine_fault, http, command, wait, probe";
const PROBE_KINDS: &str = "http, slo, alert, prometheus";

/// serde_yaml reads an enum from a Value only as a tagged value (`!http {...}`); experiments
/// write `http: {...}`. This turns the one-entry map into the tagged form. A key that cannot
/// be a tag (empty, or `!`) is refused here: `Tag::new` panics on it (found by fuzzing).
fn tagged(
    kind: String,
    value: serde_yaml::Value,
    kinds: &str,
) -> Result<serde_yaml::Value, String> {
    if kind.trim_start_matches('!').is_empty() {
        return Err(format!("{kind:?} is not a kind; write one of: {kinds}"));
    }
    Ok(serde_yaml::Value::Tagged(Box::new(
        serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new(kind),
            value,
        },
    )))
}

/// Reads an enum written as a one-entry map (`http: {...}`) inside a Value.
fn one_of<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let map = BTreeMap::<String, serde_yaml::Value>::deserialize(deserializer)?;
    let mut entries = map.into_iter();
    let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
        return Err(D::Error::custom(format!(
            "write exactly one of: {PROBE_KINDS}"
        )));
    };
    serde_yaml::from_value(tagged(kind, value, PROBE_KINDS).map_err(D::Error::custom)?)
        .map_err(D::Error::custom)
}

/// Reads `{name: ..., <kind>: {...}}` into the name and the tagged value of the enum.
fn named_entry<'de, D: Deserializer<'de>>(
    deserializer: D,
    kinds: &str,
) -> Result<(String, serde_yaml::Value), D::Error> {
    let mut map = BTreeMap::<String, serde_yaml::Value>::deserialize(deserializer)?;
    let name = match map.remove("name") {
        Some(serde_yaml::Value::String(name)) => name,
        Some(_) => return Err(D::Error::custom("`name` must be text")),
        None => return Err(D::Error::custom("every step and probe needs a `name`")),
    };
    let mut entries = map.into_iter();
    let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
        return Err(D::Error::custom(format!(
            "{name:?} must have exactly one of: {kinds}"
        )));
    };
    let tagged =
        tagged(kind, value, kinds).map_err(|err| D::Error::custom(format!("{name:?}: {err}")))?;
    Ok((name, tagged))
}

impl<'de> Deserialize<'de> for NamedProbe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, tagged) = named_entry(deserializer, PROBE_KINDS)?;
        let probe = serde_yaml::from_value(tagged)
            .map_err(|err| D::Error::custom(format!("probe {name:?}: {err}")))?;
        Ok(NamedProbe { name, probe })
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, tagged) = named_entry(deserializer, STEP_KINDS)?;
        let action = serde_yaml::from_value(tagged)
            .map_err(|err| D::Error::custom(format!("step {name:?}: {err}")))?;
        Ok(Step { name, action })
    }
}

/// The HTTP client of a probe or an action: `insecure` accepts a self-signed certificate.
fn client(insecure: bool, timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .timeout(timeout)
        .build()
        .map_err(|err| format!("cannot build an HTTP client: {err}"))
}

/// Why an experiment file cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid experiment: {source}")]
    Invalid {
        path: String,
        source: InvalidExperiment,
    },
}

/// Why a text is not a valid experiment.
#[derive(Debug, thiserror::Error)]
pub enum InvalidExperiment {
    /// Not YAML, or not in an experiment's shape (an unknown key, a step of no known kind).
    #[error("{0}")]
    Shape(#[from] serde_yaml::Error),
    #[error("a `${{` is never closed with `}}`")]
    UnclosedVariable,
    /// `${NAME}`s that nothing gives a value.
    #[error("no value for {}: give each in `configuration:`, the environment, or --var NAME=VALUE", .0.iter().map(|name| format!("${{{name}}}")).collect::<Vec<_>>().join(", "))]
    NoValue(Vec<String>),
    /// Every problem of an experiment that reads well but asks for what cannot be done.
    #[error("{}", .0.join("; "))]
    Problems(Vec<String>),
}

/// Reads an experiment, substitutes `${NAME}` (from `vars`, then the environment, then its
/// `configuration`) and checks it. Every problem is reported at once.
pub fn load(path: &Path, vars: &BTreeMap<String, String>) -> Result<Experiment, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, vars).map_err(|source| LoadError::Invalid {
        path: shown,
        source,
    })
}

/// [`load`] on text.
pub fn parse(text: &str, vars: &BTreeMap<String, String>) -> Result<Experiment, InvalidExperiment> {
    // The configuration is read first, unsubstituted, for the defaults it gives.
    #[derive(Deserialize)]
    struct Defaults {
        #[serde(default)]
        configuration: BTreeMap<String, String>,
    }
    let defaults: Defaults = serde_yaml::from_str(text)?;
    let substituted = substitute(text, |name| {
        vars.get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| defaults.configuration.get(name).cloned())
    })?;
    let experiment: Experiment = serde_yaml::from_str(&substituted)?;
    let problems = experiment.problems();
    if problems.is_empty() {
        Ok(experiment)
    } else {
        Err(InvalidExperiment::Problems(problems))
    }
}

/// Replaces `${NAME}` with its value; a name with no value is an error naming every such name.
fn substitute(
    text: &str,
    value: impl Fn(&str) -> Option<String>,
) -> Result<String, InvalidExperiment> {
    let mut out = String::with_capacity(text.len());
    let mut missing: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(InvalidExperiment::UnclosedVariable);
        };
        let name = &after[..end];
        match value(name) {
            Some(v) => out.push_str(&v),
            None => {
                if !missing.iter().any(|known| known == name) {
                    missing.push(name.to_string());
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(InvalidExperiment::NoValue(missing))
    }
}

impl Experiment {
    /// Every problem a loaded experiment still has.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.version != VERSION {
            problems.push(format!(
                "version is {:?}; write `version: {VERSION}`",
                self.version
            ));
        }
        if self.steady_state.is_empty() {
            problems.push(
                "steady_state has no probes: say what \"working\" means, or the experiment proves nothing"
                    .into(),
            );
        }
        if self.method.is_empty() {
            problems.push("method has no steps: say what to break".into());
        }
        for probe in &self.steady_state {
            for problem in probe.probe.problems() {
                problems.push(format!("probe {:?}: {problem}", probe.name));
            }
        }
        for (part, steps) in [("method", &self.method), ("rollbacks", &self.rollbacks)] {
            for step in steps {
                for problem in step.action.problems() {
                    problems.push(format!("{part} step {:?}: {problem}", step.name));
                }
            }
        }
        problems
    }
}

/// Reads a number that YAML may give as text (after `${VAR}` substitution a port is "8081").
fn number_or_text<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + serde::de::DeserializeOwned,
{
    let value = serde_yaml::Value::deserialize(deserializer)?;
    match &value {
        serde_yaml::Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{text:?} is not a number"))),
        _ => serde_yaml::from_value(value).map_err(D::Error::custom),
    }
}

fn optional_number_or_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + serde::de::DeserializeOwned,
{
    number_or_text(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
version: aragora.chaos/v1
title: t
configuration:
  URL: http://127.0.0.1:1
steady_state:
  - name: up
    http: {url: "${URL}/healthz"}
method:
  - name: nap
    wait: {seconds: 1}
"#;

    #[test]
    fn variables_come_from_vars_then_the_environment_then_the_configuration() {
        let experiment = parse(MINIMAL, &BTreeMap::new()).unwrap();
        let Probe::Http(http) = &experiment.steady_state[0].probe else {
            panic!("an http probe")
        };
        assert_eq!(http.url, "http://127.0.0.1:1/healthz");
        let vars = BTreeMap::from([("URL".to_string(), "http://h:2".to_string())]);
        let experiment = parse(MINIMAL, &vars).unwrap();
        let Probe::Http(http) = &experiment.steady_state[0].probe else {
            panic!("an http probe")
        };
        assert_eq!(http.url, "http://h:2/healthz");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let text = MINIMAL.replace("${URL}", "${NOWHERE_SET_ANYWHERE}");
        let err = parse(&text, &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(&err, InvalidExperiment::NoValue(names) if names == &["NOWHERE_SET_ANYWHERE"]),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("${NOWHERE_SET_ANYWHERE}"), "{err}");
        assert!(err.contains("--var"), "{err}");
    }

    #[test]
    fn a_step_with_no_or_two_kinds_says_which_kinds_exist() {
        let text = MINIMAL.replace(
            "wait: {seconds: 1}",
            "wait: {seconds: 1}\n    kill: {pid: 1}",
        );
        let err = parse(&text, &BTreeMap::new()).unwrap_err().to_string();
        assert!(
            err.contains("exactly one of") && err.contains("proxy_fault"),
            "{err}"
        );
        let text = MINIMAL.replace("wait: {seconds: 1}", "explode: {}");
        let err = parse(&text, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("explode") && err.contains("kill"), "{err}");
    }

    #[test]
    fn a_step_or_probe_keyed_by_an_empty_kind_is_refused_with_the_kinds() {
        for (from, to) in [
            ("wait: {seconds: 1}", "\"\": {seconds: 1}"),
            ("wait: {seconds: 1}", "\"!\": {seconds: 1}"),
            ("http: {url:", "\"\": {url:"),
        ] {
            let text = MINIMAL.replace(from, to);
            let err = parse(&text, &BTreeMap::new()).unwrap_err().to_string();
            assert!(err.contains("is not a kind; write one of"), "{err}");
        }
    }

    #[test]
    fn an_experiment_without_hypothesis_or_method_is_refused() {
        let text = "version: aragora.chaos/v2\ntitle: t\nsteady_state: []\nmethod: []\n";
        let err = parse(text, &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, InvalidExperiment::Problems(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("aragora.chaos/v1"), "{err}");
        assert!(err.contains("steady_state has no probes"), "{err}");
        assert!(err.contains("method has no steps"), "{err}");
    }
}
