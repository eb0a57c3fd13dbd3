//! Actions: what a method does to the system, and the undo each one leaves behind. Each kind
//! is a small type with its checks, its act and its undo ([`Act`], [`Undo`]); [`Action`] is how
//! an experiment writes them, dispatched to its kind in one place ([`Action::act`]).
//!
//! | action | module | does | undo (always run) |
//! |---|---|---|---|
//! | `kill` | [`processes`] | signals a process (by `pid`, `pid_file` or the TCP `port` it listens on) | none: a dead process is the point |
//! | `pause` | [`processes`] | SIGSTOP now, SIGCONT after `seconds` | SIGCONT |
//! | `proxy_fault` | [`faults`] | adds a link fault to a running fault proxy (`aragora chaos proxy`) | removes it |
//! | `engine_fault` | [`faults`] | `POST /api/system/faults` on an engine (slow or failing agent, database outage) | `DELETE` it |
//! | `http` | [`http`] | any request, e.g. maintenance mode on | none (write a rollback) |
//! | `command` | [`command`] | runs a program (`systemctl stop redis`, `kubectl delete pod ...`) | none (write a rollback) |
//! | `wait` | [`wait`] | lets the system react | none |
//! | `probe` | here | a probe in the middle of the method: a failure is a deviation | none |

pub mod act;
pub mod command;
pub mod faults;
pub mod http;
pub mod processes;
pub mod wait;

pub use act::{Act, ActionError, Done, Undo};
pub use command::CommandAction;
pub use faults::{EngineFaultAction, ProxyFaultAction};
pub use http::HttpAction;
pub use processes::{KillAction, PauseAction, ProcessAction};
pub use wait::WaitAction;

use super::probes::Probe;
use act::Acting;
use serde::{Deserialize, Serialize};

/// A step's action as an experiment writes it (`kill: {...}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Kill(KillAction),
    Pause(PauseAction),
    ProxyFault(ProxyFaultAction),
    EngineFault(EngineFaultAction),
    Http(HttpAction),
    Command(CommandAction),
    Wait(WaitAction),
    Probe(#[serde(deserialize_with = "super::one_of")] Probe),
}

impl Action {
    /// The kind's name as written, and the kind itself: the one place an action is told apart.
    fn act(&self) -> (&'static str, &dyn Act) {
        match self {
            Action::Kill(kill) => ("kill", kill),
            Action::Pause(pause) => ("pause", pause),
            Action::ProxyFault(fault) => ("proxy_fault", fault),
            Action::EngineFault(fault) => ("engine_fault", fault),
            Action::Http(http) => ("http", http),
            Action::Command(command) => ("command", command),
            Action::Wait(wait) => ("wait", wait),
            Action::Probe(probe) => ("probe", probe),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.act().0
    }

    pub fn problems(&self) -> Vec<String> {
        self.act().1.problems()
    }

    /// How long the action itself takes at least (a wait), for progress.
    pub fn planned_seconds(&self) -> Option<f64> {
        self.act().1.planned_seconds()
    }

    pub async fn perform(&self) -> Result<Done, ActionError> {
        self.act().1.perform().await
    }
}

/// A probe as a method step: its verdict is the step's, it never fails the method.
impl Act for Probe {
    fn problems(&self) -> Vec<String> {
        Probe::problems(self)
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let outcome = self.check().await;
            Ok(Done {
                detail: outcome.detail,
                undo: None,
                probe_passed: outcome.passed,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(yaml: &str) -> Action {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        let serde_yaml::Value::Mapping(map) = value else {
            panic!("a map")
        };
        let (kind, value) = map.into_iter().next().unwrap();
        serde_yaml::from_value(
            super::super::tagged(kind.as_str().unwrap().to_string(), value, "").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn each_kind_is_named_as_written_and_checked_by_its_type() {
        for (yaml, kind, problems) in [
            ("kill: {pid: 4242}", "kill", 0),
            ("pause: {pid: 4242}", "pause", 1),
            (
                "proxy_fault: {api: 'http://p', proxy: e, fault: {kind: reset}}",
                "proxy_fault",
                0,
            ),
            (
                "engine_fault: {url: 'http://e', token: t, fault: {}}",
                "engine_fault",
                1,
            ),
            ("http: {url: 'http://e/x'}", "http", 0),
            ("command: {run: []}", "command", 1),
            ("wait: {seconds: 2}", "wait", 0),
            ("probe: {http: {url: 'http://e/healthz'}}", "probe", 0),
        ] {
            let action = action(yaml);
            assert_eq!(action.kind(), kind);
            assert_eq!(
                action.problems().len(),
                problems,
                "{yaml}: {:?}",
                action.problems()
            );
        }
        assert_eq!(action("wait: {seconds: 2}").planned_seconds(), Some(2.0));
        assert_eq!(action("kill: {pid: 4242}").planned_seconds(), None);
    }
}
