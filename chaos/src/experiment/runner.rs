//! Runs an experiment: steady state before → method → steady state after → undos and rollbacks,
//! which always run (after a failed action, a deviation, or Ctrl-C), and writes down what
//! happened as a [`Report`].
//!
//! The order is Chaos Toolkit's: the hypothesis is checked again while the method's faults are
//! still in place, because "it keeps working while a replica is down" is the claim. A method
//! that cannot be carried out (an action fails) stops there; the hypothesis is not checked
//! after it, since the system is in no state the experiment meant to create.

use super::actions::Undo;
use super::{Experiment, NamedProbe, Step};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The hypothesis held before and after (and through the method's probes).
    Passed,
    /// The hypothesis did not hold after the method, or a method probe failed.
    Deviated,
    /// The hypothesis did not hold before anything was done: the method was not run.
    NotSteady,
    /// An action failed: the method could not be carried out.
    Failed,
    /// Stopped by a signal; rollbacks ran.
    Aborted,
}

impl Status {
    /// The exit code of `aragora chaos run`: 0 passed, 1 the hypothesis failed, 2 the
    /// experiment could not be carried out.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Passed => 0,
            Status::Deviated | Status::NotSteady => 1,
            Status::Failed | Status::Aborted => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Deviated => "deviated",
            Status::NotSteady => "not_steady",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub name: String,
    pub asks: String,
    pub passed: bool,
    pub detail: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hypothesis {
    pub met: bool,
    pub probes: Vec<ProbeResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    pub kind: String,
    /// `ok`, `failed` (an action failed), `deviated` (a probe failed), `skipped` or `aborted`.
    pub outcome: String,
    pub detail: String,
    pub seconds: f64,
}

/// What happened, written as JSON by `aragora chaos run --report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub experiment: String,
    pub title: String,
    pub status: Status,
    /// One sentence: what happened and, when it did not pass, what to look at.
    pub summary: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub duration_seconds: f64,
    pub steady_state_before: Hypothesis,
    pub method: Vec<StepResult>,
    pub steady_state_after: Option<Hypothesis>,
    /// The automatic undos of the method's actions, then the experiment's own rollbacks.
    pub rollbacks: Vec<StepResult>,
}

impl Report {
    /// The name a report gets in a report directory: `<experiment file stem>-<start>.json`.
    pub fn file_name(&self) -> String {
        let stem = std::path::Path::new(&self.experiment)
            .file_stem()
            .map_or_else(|| "experiment".into(), |s| s.to_string_lossy());
        format!("{stem}-{}.json", self.started_at.format("%Y%m%dT%H%M%SZ"))
    }

    /// Writes the report as JSON to `path`, creating its directory.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)
    }
}

/// Where the experiment came from and how to show progress.
pub struct RunOptions<'a> {
    /// The file, for the report.
    pub source: String,
    /// Called with one line per step as it starts and ends.
    pub progress: &'a (dyn Fn(&str) + Send + Sync),
    /// Turns true to abort (Ctrl-C); rollbacks still run.
    pub abort: watch::Receiver<bool>,
}

fn elapsed(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

async fn check(probes: &[NamedProbe], stage: &str, options: &RunOptions<'_>) -> Hypothesis {
    let mut results = Vec::with_capacity(probes.len());
    for probe in probes {
        let asks = probe.probe.describe();
        (options.progress)(&format!("[{stage}] probe {:?}: {asks} ...", probe.name));
        let started = Instant::now();
        let outcome = probe.probe.check().await;
        (options.progress)(&format!(
            "[{stage}] probe {:?}: {} ({})",
            probe.name,
            if outcome.passed { "ok" } else { "FAILED" },
            outcome.detail
        ));
        results.push(ProbeResult {
            name: probe.name.clone(),
            asks,
            passed: outcome.passed,
            detail: outcome.detail,
            seconds: elapsed(started),
        });
    }
    Hypothesis {
        met: results.iter().all(|r| r.passed),
        probes: results,
    }
}

fn step_result(step: &Step, outcome: &str, detail: String, seconds: f64) -> StepResult {
    StepResult {
        name: step.name.clone(),
        kind: step.action.kind().into(),
        outcome: outcome.into(),
        detail,
        seconds,
    }
}

/// Carries out the method until it ends, an action fails or `abort` turns true. Returns the
/// step results, the undos left behind and the method's verdict.
async fn method(
    steps: &[Step],
    options: &mut RunOptions<'_>,
) -> (Vec<StepResult>, Vec<Box<dyn Undo>>, Option<Status>) {
    let mut results = Vec::new();
    let mut undos = Vec::new();
    let mut verdict = None;
    for (index, step) in steps.iter().enumerate() {
        let stage = format!("method {}/{}", index + 1, steps.len());
        if verdict == Some(Status::Failed) || verdict == Some(Status::Aborted) {
            results.push(step_result(
                step,
                "skipped",
                "an earlier step ended the method".into(),
                0.0,
            ));
            continue;
        }
        let planned = step
            .action
            .planned_seconds()
            .map(|s| format!(" ({s} s)"))
            .unwrap_or_default();
        (options.progress)(&format!(
            "[{stage}] {} {:?}{planned} ...",
            step.action.kind(),
            step.name
        ));
        let started = Instant::now();
        let performed = tokio::select! {
            performed = step.action.perform() => Some(performed),
            _ = options.abort.wait_for(|stop| *stop) => None,
        };
        let seconds = elapsed(started);
        let (outcome, detail) = match performed {
            None => {
                verdict = Some(Status::Aborted);
                ("aborted", "stopped by a signal".to_string())
            }
            Some(Err(error)) => {
                verdict = Some(Status::Failed);
                ("failed", error.to_string())
            }
            Some(Ok(done)) => {
                undos.extend(done.undo);
                if done.probe_passed {
                    ("ok", done.detail)
                } else {
                    verdict.get_or_insert(Status::Deviated);
                    ("deviated", done.detail)
                }
            }
        };
        (options.progress)(&format!("[{stage}] {:?}: {outcome} ({detail})", step.name));
        results.push(step_result(step, outcome, detail, seconds));
    }
    (results, undos, verdict)
}

/// Undoes the method's actions (newest first), then runs the experiment's rollbacks. Nothing
/// here can be aborted: leaving a fault behind is worse than a slow exit.
async fn roll_back(
    undos: Vec<Box<dyn Undo>>,
    rollbacks: &[Step],
    options: &RunOptions<'_>,
) -> Vec<StepResult> {
    let mut results = Vec::new();
    for undo in undos.into_iter().rev() {
        let name = undo.describe();
        let started = Instant::now();
        let (outcome, detail) = match undo.perform().await {
            Ok(detail) => ("ok", detail),
            Err(error) => ("failed", error.to_string()),
        };
        (options.progress)(&format!("[rollback] {name}: {outcome} ({detail})"));
        results.push(StepResult {
            name,
            kind: "undo".into(),
            outcome: outcome.into(),
            detail,
            seconds: elapsed(started),
        });
    }
    for step in rollbacks {
        (options.progress)(&format!(
            "[rollback] {} {:?} ...",
            step.action.kind(),
            step.name
        ));
        let started = Instant::now();
        let (outcome, detail) = match step.action.perform().await {
            Ok(done) if done.probe_passed => ("ok", done.detail),
            Ok(done) => ("deviated", done.detail),
            Err(error) => ("failed", error.to_string()),
        };
        (options.progress)(&format!("[rollback] {:?}: {outcome} ({detail})", step.name));
        results.push(step_result(step, outcome, detail, elapsed(started)));
    }
    results
}

fn summary(status: Status, report: &Report) -> String {
    let failed_probes = |hypothesis: &Hypothesis| {
        hypothesis
            .probes
            .iter()
            .filter(|p| !p.passed)
            .map(|p| format!("{:?} ({})", p.name, p.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let failed_rollbacks = report
        .rollbacks
        .iter()
        .filter(|r| r.outcome == "failed")
        .count();
    let rollback_note = if failed_rollbacks > 0 {
        format!(" {failed_rollbacks} rollback step(s) FAILED: check the system by hand.")
    } else {
        String::new()
    };
    let main = match status {
        Status::Passed => "The hypothesis held before, during and after the method.".to_string(),
        Status::NotSteady => format!(
            "The system was not in its steady state before the experiment, so nothing was done: {}. Fix that first.",
            failed_probes(&report.steady_state_before)
        ),
        Status::Deviated => {
            let during: Vec<String> = report
                .method
                .iter()
                .filter(|s| s.outcome == "deviated")
                .map(|s| format!("{:?} ({})", s.name, s.detail))
                .collect();
            let after = report
                .steady_state_after
                .as_ref()
                .map(failed_probes)
                .unwrap_or_default();
            format!(
                "The system did not survive what was done: {}. This is a finding: the system does not tolerate this fault as claimed.",
                [during.join("; "), after]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
        Status::Failed => format!(
            "The method could not be carried out: {}. The experiment's targets may be wrong (check its configuration).",
            report
                .method
                .iter()
                .filter(|s| s.outcome == "failed")
                .map(|s| format!("{:?}: {}", s.name, s.detail))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Status::Aborted => "Stopped by a signal during the method; rollbacks ran.".to_string(),
    };
    main + &rollback_note
}

/// Runs the experiment. Never panics on what the system does; every failure is in the report.
pub async fn run(experiment: &Experiment, mut options: RunOptions<'_>) -> Report {
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    (options.progress)(&format!("experiment: {}", experiment.title));
    let before = check(&experiment.steady_state, "before", &options).await;
    let (method_results, undos, verdict, after) = if before.met {
        let (results, undos, verdict) = method(&experiment.method, &mut options).await;
        let after = match verdict {
            Some(Status::Failed) | Some(Status::Aborted) => None,
            _ => Some(check(&experiment.steady_state, "after", &options).await),
        };
        (results, undos, verdict, after)
    } else {
        let skipped = experiment
            .method
            .iter()
            .map(|step| {
                step_result(
                    step,
                    "skipped",
                    "the steady state did not hold before".into(),
                    0.0,
                )
            })
            .collect();
        (skipped, Vec::new(), Some(Status::NotSteady), None)
    };
    let rollbacks = roll_back(undos, &experiment.rollbacks, &options).await;
    let status = match verdict {
        Some(status) => status,
        None if after.as_ref().is_some_and(|a| a.met) => Status::Passed,
        None => Status::Deviated,
    };
    let mut report = Report {
        experiment: options.source.clone(),
        title: experiment.title.clone(),
        status,
        summary: String::new(),
        started_at,
        finished_at: chrono::Utc::now(),
        duration_seconds: elapsed(started),
        steady_state_before: before,
        method: method_results,
        steady_state_after: after,
        rollbacks,
    };
    report.summary = summary(status, &report);
    report
}

/// The report as text for a terminal: status, each stage's steps, the summary.
pub fn render(report: &Report) -> String {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    let mut out = format!(
        "{}: {} ({:.1} s)\n",
        report.title,
        report.status.as_str().to_uppercase(),
        report.duration_seconds
    );
    let hypothesis = |label: &str, hypothesis: &Hypothesis, out: &mut String| {
        out.push_str(&format!("  steady state {label}:\n"));
        for probe in &hypothesis.probes {
            out.push_str(&format!(
                "    {} {} — {}\n",
                mark(probe.passed),
                probe.name,
                probe.detail
            ));
        }
    };
    hypothesis("before", &report.steady_state_before, &mut out);
    out.push_str("  method:\n");
    for step in &report.method {
        out.push_str(&format!(
            "    {:<8} {} — {}\n",
            step.outcome, step.name, step.detail
        ));
    }
    if let Some(after) = &report.steady_state_after {
        hypothesis("after", after, &mut out);
    }
    out.push_str("  rollbacks:\n");
    for step in &report.rollbacks {
        out.push_str(&format!(
            "    {:<8} {} — {}\n",
            step.outcome, step.name, step.detail
        ));
    }
    out.push_str(&format!("  {}\n", report.summary));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn experiment(method: &str) -> Experiment {
        let text = format!(
            "version: aragora.chaos/v1\ntitle: t\nsteady_state:\n  - name: local\n    http: {{url: \"http://127.0.0.1:1/\", status: 200, timeout_seconds: 1}}\nmethod:\n{method}\n"
        );
        super::super::parse(&text, &BTreeMap::new()).unwrap()
    }

    #[tokio::test]
    async fn a_hypothesis_that_fails_before_skips_the_method_and_still_rolls_back() {
        let mut experiment = experiment("  - name: nap\n    wait: {seconds: 30}");
        experiment.rollbacks = experiment.method.clone();
        experiment.rollbacks[0].action =
            super::super::actions::Action::Wait(super::super::actions::WaitAction {
                seconds: 0.01,
            });
        let (_stop, abort) = watch::channel(false);
        let report = run(
            &experiment,
            RunOptions {
                source: "t.yaml".into(),
                progress: &|_| {},
                abort,
            },
        )
        .await;
        assert_eq!(report.status, Status::NotSteady);
        assert_eq!(report.status.exit_code(), 1);
        assert_eq!(report.method[0].outcome, "skipped");
        assert_eq!(report.rollbacks.len(), 1);
        assert_eq!(report.rollbacks[0].outcome, "ok");
        assert!(
            report.summary.contains("not in its steady state"),
            "{}",
            report.summary
        );
    }
}
