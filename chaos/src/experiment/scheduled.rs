//! Chaos experiments on a schedule (`aragora control`): which files, when, where the reports go,
//! and the job that runs them one after another and counts how each ended.

use super::runner::{self, RunOptions};
use crate::schedule::{ScheduledJob, Work};
use aragora_config::ConfigProblem;
use aragora_telemetry::catalogue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosConfig {
    pub chaos_schedule: String,
    pub chaos_experiments: Vec<String>,
    pub chaos_report_dir: Option<PathBuf>,
}

aragora_config::settings! {
    ChaosConfig;
    chaos_schedule: ["ARAGORA_CHAOS_SCHEDULE"] "Cron expression (sec min hour day month weekday, UTC) on which `aragora control` runs the chaos experiments; empty turns it off.";
    chaos_experiments: ["ARAGORA_CHAOS_EXPERIMENTS"] "Experiment files run on that schedule, comma-separated, one after another; ${NAME}s come from the environment.";
    chaos_report_dir: ["ARAGORA_CHAOS_REPORT_DIR"] "Directory for the JSON reports of scheduled experiments; `chaos` in the data directory when unset.";
}

impl aragora_config::Settings for ChaosConfig {
    /// A valid schedule, and experiments that load.
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Err(message) = crate::cron::check(&self.chaos_schedule) {
            problems.push(ConfigProblem::new("ARAGORA_CHAOS_SCHEDULE", message));
        }
        let scheduled = !self.chaos_schedule.trim().is_empty();
        if scheduled && self.chaos_experiments.is_empty() {
            problems.push(ConfigProblem::new(
                "ARAGORA_CHAOS_EXPERIMENTS",
                "is empty but ARAGORA_CHAOS_SCHEDULE is set; list the experiment files to run (chaos/experiments/ has examples)",
            ));
        }
        for file in &self.chaos_experiments {
            if let Err(err) = super::load(file.as_ref(), &BTreeMap::new()) {
                problems.push(ConfigProblem::new(
                    "ARAGORA_CHAOS_EXPERIMENTS",
                    err.to_string(),
                ));
            }
        }
        problems
    }
}

/// The job that runs every configured experiment when the schedule fires (none when off).
/// Each run is read from its file again (so edits apply), reported to `report_dir` and
/// counted in `aragora_chaos_experiment_runs_total{experiment,status}` of `registry`.
pub fn job(
    config: &ChaosConfig,
    report_dir: PathBuf,
    registry: &prometheus::Registry,
) -> Option<ScheduledJob> {
    if config.chaos_schedule.trim().is_empty() {
        return None;
    }
    let runs = catalogue::CHAOS_EXPERIMENT_RUNS_TOTAL.counter(registry);
    let files = Arc::new(config.chaos_experiments.clone());
    let work: Work = Arc::new(move || {
        let (files, runs, report_dir) = (files.clone(), runs.clone(), report_dir.clone());
        Box::pin(async move {
            for file in files.iter() {
                let status = run_one(file, &report_dir).await;
                runs.with_label_values(&[file.as_str(), status]).inc();
            }
        })
    });
    Some(ScheduledJob {
        name: "chaos",
        expression: config.chaos_schedule.clone(),
        work,
    })
}

/// Runs one experiment file; returns how it ended (`invalid` when it no longer loads).
async fn run_one(file: &str, report_dir: &std::path::Path) -> &'static str {
    let experiment = match super::load(file.as_ref(), &BTreeMap::new()) {
        Ok(experiment) => experiment,
        Err(err) => {
            tracing::error!(experiment = %file, error = %err, "scheduled chaos experiment not run");
            return "invalid";
        }
    };
    // Scheduled runs are never aborted halfway: the process stops after the rollbacks.
    let (_never, abort) = tokio::sync::watch::channel(false);
    let progress = |line: &str| tracing::info!(experiment = %file, "{line}");
    let report = runner::run(
        &experiment,
        RunOptions {
            source: file.to_string(),
            progress: &progress,
            abort,
        },
    )
    .await;
    let path = report_dir.join(report.file_name());
    if let Err(err) = report.write(&path) {
        tracing::warn!(path = %path.display(), error = %err, "cannot write the chaos report");
    }
    if report.status == runner::Status::Passed {
        tracing::info!(experiment = %file, report = %path.display(), "scheduled chaos experiment passed");
    } else {
        tracing::error!(experiment = %file, status = report.status.as_str(), summary = %report.summary, report = %path.display(), "scheduled chaos experiment did not pass");
    }
    report.status.as_str()
}
