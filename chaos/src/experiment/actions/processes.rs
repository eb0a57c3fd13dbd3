//! `kill` and `pause`: signals to a process named by `pid`, `pid_file` or `port`
//! ([`crate::experiment::process`] finds it), and the resume a pause leaves behind.

use super::act::{seconds_problem, Act, Acting, ActionError, Done, Undo};
use crate::experiment::process::{self, ProcessTarget, Signal, TargetError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How `kill` and `pause` are written: a process (by `pid`, `pid_file` or `port`), and for
/// `kill` the signal, for `pause` how long. One shape, so a field of the other kind is named
/// as such instead of being an unknown field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessAction {
    #[serde(
        default,
        deserialize_with = "crate::experiment::optional_number_or_text"
    )]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::experiment::optional_number_or_text"
    )]
    pub port: Option<u16>,
    /// `kill`: `KILL` (default), `TERM`, `INT` or `HUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `pause`: resumed after this long (the method goes on meanwhile), or at rollback.
    #[serde(
        default,
        deserialize_with = "crate::experiment::optional_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub seconds: Option<f64>,
}

impl ProcessAction {
    fn target(&self) -> ProcessTarget {
        ProcessTarget {
            pid: self.pid,
            pid_file: self.pid_file.clone(),
            port: self.port,
        }
    }

    fn resolve(&self) -> Result<(ProcessTarget, u32), ActionError> {
        let target = self.target();
        let pid = target.resolve().map_err(|err| match err {
            TargetError::NotFound(message) => ActionError::NoTarget(message),
            refused @ TargetError::Refused(_) => ActionError::Refused(refused.to_string()),
        })?;
        Ok((target, pid))
    }
}

fn signalled(pid: u32, signal: Signal) -> Result<(), ActionError> {
    process::send(pid, signal).map_err(ActionError::Failed)
}

/// How long a SIGKILLed process may take to end before the kill is reported failed.
const KILL_TAKES_EFFECT: Duration = Duration::from_secs(5);

/// `kill`: sends a signal; nothing to undo, a dead process is the point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KillAction(pub ProcessAction);

impl KillAction {
    fn signal_name(&self) -> &str {
        self.0.signal.as_deref().unwrap_or("KILL")
    }
}

impl Act for KillAction {
    fn problems(&self) -> Vec<String> {
        let mut problems = self.0.target().problems();
        if Signal::for_kill(self.signal_name()).is_none() {
            problems.push(format!(
                "signal {:?} is not one of KILL, TERM, INT, HUP (use `pause` to stop a process)",
                self.signal_name()
            ));
        }
        if self.0.seconds.is_some() {
            problems.push("`seconds` is for `pause`; a kill is not undone".into());
        }
        problems
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let (target, pid) = self.0.resolve()?;
            let signal = Signal::for_kill(self.signal_name())
                .ok_or_else(|| ActionError::Failed("unknown signal".into()))?;
            signalled(pid, signal)?;
            let mut detail = format!(
                "sent SIG{} to {} (pid {pid})",
                self.signal_name().trim_start_matches("SIG"),
                target.describe()
            );
            // A SIGKILL is done when the process is: the kernel ends it a moment after the
            // signal, and until then it still holds its port and its connections (a probe sent
            // in that moment would measure the dying process, not the system without it).
            // Other signals may be handled (a drain on TERM), so the method goes on at once.
            if signal == Signal::Kill {
                let deadline = tokio::time::Instant::now() + KILL_TAKES_EFFECT;
                while !process::has_exited(pid) {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ActionError::Failed(format!(
                            "{detail}, but it still runs after {} s (uninterruptible I/O? `cat /proc/{pid}/stack`)",
                            KILL_TAKES_EFFECT.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                detail.push_str("; it exited");
            }
            Ok(Done::action(detail, None))
        })
    }
}

/// `pause`: SIGSTOP now, SIGCONT after `seconds`; its undo is SIGCONT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PauseAction(pub ProcessAction);

impl Act for PauseAction {
    fn problems(&self) -> Vec<String> {
        let mut problems = self.0.target().problems();
        match self.0.seconds {
            None => {
                problems.push("a pause needs `seconds`: how long the process stays stopped".into())
            }
            Some(seconds) => problems.extend(seconds_problem("seconds", seconds)),
        }
        if self.0.signal.is_some() {
            problems.push("`signal` is for `kill`; a pause is SIGSTOP, then SIGCONT".into());
        }
        problems
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let (target, pid) = self.0.resolve()?;
            signalled(pid, Signal::Stop)?;
            let seconds = self.0.seconds.unwrap_or_default();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                if process::send(pid, Signal::Cont).is_ok() {
                    tracing::info!(pid, "paused process resumed");
                }
            });
            Ok(Done::action(
                format!("stopped {} (pid {pid}) for {seconds} s", target.describe()),
                Some(Box::new(Resume { pid })),
            ))
        })
    }
}

/// The undo of a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub pid: u32,
}

impl Undo for Resume {
    fn describe(&self) -> String {
        format!("resume process {}", self.pid)
    }

    fn perform(&self) -> Acting<'_, String> {
        let pid = self.pid;
        Box::pin(async move {
            match process::send(pid, Signal::Cont) {
                Ok(()) => Ok(format!("process {pid} resumed")),
                Err(_) if !process::exists(pid) => Ok(format!("process {pid} is gone")),
                Err(err) => Err(ActionError::Failed(err)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(yaml: &str) -> ProcessAction {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_kill_takes_one_target_and_a_signal_kill_may_send() {
        assert!(KillAction(written("{pid: 4242}")).problems().is_empty());
        assert!(KillAction(written("{port: 8080, signal: SIGTERM}"))
            .problems()
            .is_empty());
        let problems =
            KillAction(written("{pid: 4242, port: 8080, signal: STOP, seconds: 3}")).problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("exactly one of"), "{problems:?}");
        assert!(problems[1].contains("use `pause`"), "{problems:?}");
        assert!(problems[2].contains("is for `pause`"), "{problems:?}");
    }

    #[tokio::test]
    async fn a_sigkill_is_done_once_the_process_has_ended() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let done = KillAction(written(&format!("{{pid: {pid}}}")))
            .perform()
            .await
            .unwrap();
        // Checked before anything reaps it: ended (a zombie) by the time the kill is done.
        assert!(process::has_exited(pid), "{}", done.detail);
        assert!(done.detail.ends_with("; it exited"), "{}", done.detail);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_pause_needs_bounded_seconds_and_no_signal() {
        assert!(
            PauseAction(written("{pid_file: /run/engine.pid, seconds: 5}"))
                .problems()
                .is_empty()
        );
        let none = PauseAction(written("{pid: 4242}")).problems();
        assert!(none[0].contains("needs `seconds`"), "{none:?}");
        let long = PauseAction(written("{pid: 4242, seconds: 3601, signal: KILL}")).problems();
        assert_eq!(long.len(), 2, "{long:?}");
        assert!(long[0].contains("at most 3600"), "{long:?}");
        assert!(long[1].contains("is for `kill`"), "{long:?}");
    }

    #[tokio::test]
    async fn init_is_refused_and_a_missing_process_is_no_target() {
        let init = KillAction(written("{pid: 1}")).perform().await.unwrap_err();
        assert!(matches!(init, ActionError::Refused(_)), "{init:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let nobody = PauseAction(written(&format!("{{port: {port}, seconds: 1}}")))
            .perform()
            .await
            .unwrap_err();
        assert!(matches!(nobody, ActionError::NoTarget(_)), "{nobody:?}");
    }
}
