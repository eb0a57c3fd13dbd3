//! The SLO control plane's generator: SLO specs in, Prometheus rules and their tests out.
//!
//! spec file ([`spec`]: the project's own `aragora/v1`, Sloth `prometheus/v1`, OpenSLO v1)
//! → [`SloSpec`] ([`model`], plain data) → [`check`] (every problem, each with its fix)
//! → renderers, pure functions of the model: [`rules::sloth`] (Sloth-compatible recording
//! rules and multiwindow multi-burn-rate alerts), [`rules::operational`] (the runbook's 15
//! alerts, and [`rules::infrastructure`]'s over the exporters), [`promtool`] (unit tests for every alert) → [`generate`] (the files of `alerts/`);
//! [`receivers`] renders Alertmanager's configuration from the `ARAGORA_ALERT_*` settings, and
//! [`sink`] is the webhook `aragora control` serves to receive what it sends.
//!
//! The default SLOs and the environment variables that override their targets live in
//! [`settings`]. Metric names are checked against the telemetry catalogue, so rules can only
//! name what aragora exports.

pub mod check;
pub mod dashboards;
pub mod duration;
pub mod generate;
pub mod live;
pub mod model;
pub mod promql;
pub mod promtool;
pub mod receivers;
pub mod rules;
pub mod settings;
pub mod sink;
pub mod spec;

pub use check::{check, Problem};
pub use generate::{generate, GeneratedFile};
pub use model::SloSpec;
pub use settings::SloSettings;

use std::path::Path;

/// Why a spec could not be read, checked or rendered.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not a spec this crate reads; the message says what to change.
    #[error("{0}")]
    Format(String),
    #[error("the spec has {} problem(s):\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
    #[error("cannot render {file}: {message}")]
    Render { file: &'static str, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  - {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads a spec file in any supported format.
pub fn load_spec(path: &Path) -> Result<SloSpec, SloError> {
    let text = std::fs::read_to_string(path).map_err(|source| SloError::Read {
        path: path.display().to_string(),
        source,
    })?;
    spec::parse(&text)
}
