//! `command`: runs a program (`systemctl stop redis`, `kubectl delete pod ...`) with a timeout;
//! nothing to undo, write a rollback for it.

use super::act::{seconds_problem, Act, Acting, ActionError, Done};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    /// The program and its arguments (no shell: write `[sh, -c, "..."]` for one).
    pub run: Vec<String>,
    #[serde(
        default = "sixty",
        deserialize_with = "crate::experiment::number_or_text"
    )]
    pub timeout_seconds: f64,
}

fn sixty() -> f64 {
    60.0
}

/// The last 300 characters of a program's output, for the report.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(300);
    text.chars().skip(skip).collect()
}

impl Act for CommandAction {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = seconds_problem("timeout_seconds", self.timeout_seconds)
            .into_iter()
            .collect();
        if self.run.is_empty() {
            problems.push("`run` is empty: give the program and its arguments".into());
        }
        problems
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let program = &self.run[0];
            let child = tokio::process::Command::new(program)
                .args(&self.run[1..])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs_f64(self.timeout_seconds), child)
                .await
                .map_err(|_| {
                    ActionError::TimedOut(format!(
                        "{program} did not finish within {} s; it was killed",
                        self.timeout_seconds
                    ))
                })?
                .map_err(|err| ActionError::NoTarget(format!("cannot run {program}: {err}")))?;
            if output.status.success() {
                Ok(Done::action(
                    format!("{program} exited 0 {}", tail(&output.stdout)),
                    None,
                ))
            } else {
                Err(ActionError::Failed(format!(
                    "{program} failed ({}): {}",
                    output.status,
                    tail(&output.stderr)
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(run: &[&str], timeout_seconds: f64) -> CommandAction {
        CommandAction {
            run: run.iter().map(|s| s.to_string()).collect(),
            timeout_seconds,
        }
    }

    #[test]
    fn a_command_needs_a_program_and_a_bounded_timeout() {
        assert!(command(&["true"], 60.0).problems().is_empty());
        let problems = command(&[], 0.0).problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("timeout_seconds"), "{problems:?}");
        assert!(problems[1].contains("`run` is empty"), "{problems:?}");
    }

    #[tokio::test]
    async fn success_failure_a_missing_program_and_a_timeout_are_told_apart() {
        let done = command(&["sh", "-c", "echo hello"], 10.0)
            .perform()
            .await
            .unwrap();
        assert_eq!(done.detail, "sh exited 0 hello");
        let failed = command(&["sh", "-c", "echo broken >&2; exit 3"], 10.0)
            .perform()
            .await
            .unwrap_err();
        assert!(
            matches!(&failed, ActionError::Failed(m) if m.contains("broken")),
            "{failed:?}"
        );
        let missing = command(&["/nonexistent/program"], 10.0)
            .perform()
            .await
            .unwrap_err();
        assert!(matches!(missing, ActionError::NoTarget(_)), "{missing:?}");
        let slow = command(&["sleep", "30"], 0.2).perform().await.unwrap_err();
        assert!(matches!(slow, ActionError::TimedOut(_)), "{slow:?}");
    }

    #[test]
    fn the_tail_keeps_the_last_300_characters() {
        let long = format!("{}end", "x".repeat(400));
        let kept = tail(long.as_bytes());
        assert_eq!(kept.chars().count(), 300);
        assert!(kept.ends_with("end"));
    }
}
