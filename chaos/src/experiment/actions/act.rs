//! What every kind of action provides ([`Act`]: its checks, its act) and leaves behind ([`Undo`]),
//! and what carrying one out can end in ([`Done`], [`ActionError`]).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future an action or undo returns (boxed: the kinds are dispatched through `dyn`).
pub type Acting<'a, T> = Pin<Box<dyn Future<Output = Result<T, ActionError>> + Send + 'a>>;

/// One kind of action.
pub trait Act: Debug + Send + Sync {
    /// Every problem of the step as written, each saying what to write instead.
    fn problems(&self) -> Vec<String>;
    /// How long the action itself takes at least (a wait), for progress.
    fn planned_seconds(&self) -> Option<f64> {
        None
    }
    /// Does it; what it left to undo is in the [`Done`].
    fn perform(&self) -> Acting<'_, Done>;
}

/// What an action left to undo; undos run newest first, after the method, whatever happened.
pub trait Undo: Debug + Send + Sync {
    fn describe(&self) -> String;
    /// Undoes; something already gone by itself (an expired fault) counts as undone.
    fn perform(&self) -> Acting<'_, String>;
}

/// A carried-out action: what happened, and what to undo.
#[derive(Debug)]
pub struct Done {
    pub detail: String,
    pub undo: Option<Box<dyn Undo>>,
    /// A method probe's verdict (actions always "pass").
    pub probe_passed: bool,
}

impl Done {
    pub fn action(detail: impl Into<String>, undo: Option<Box<dyn Undo>>) -> Done {
        Done {
            detail: detail.into(),
            undo,
            probe_passed: true,
        }
    }
}

/// Why an action or an undo was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// What the step names is not there: no such process, no pid in the file, nobody on the port.
    #[error("{0}")]
    NoTarget(String),
    /// Refused: by the target (a non-2xx answer), or by the action itself (init, this process).
    #[error("{0}")]
    Refused(String),
    /// It did not finish in time: a command past its timeout, a request past its patience.
    #[error("{0}")]
    TimedOut(String),
    /// It could not be carried out: no answer, a program that failed, a signal not delivered.
    #[error("{0}")]
    Failed(String),
}

/// Longest wait, pause or command an experiment may ask for.
pub const MAX_SECONDS: f64 = 3600.0;

/// How long an action's own request may take.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(15);

pub fn seconds_problem(field: &str, seconds: f64) -> Option<String> {
    (!(seconds > 0.0 && seconds <= MAX_SECONDS))
        .then(|| format!("{field} must be above 0 and at most {MAX_SECONDS}, not {seconds}"))
}

pub fn url_problem(url: &str) -> Option<String> {
    (!aragora_config::is_http_url(url)).then(|| format!("{url:?} is not an http(s) URL"))
}

/// A request that got no answer: timed out, or failed (refused connection, DNS, TLS).
pub fn no_answer(what: &str, err: reqwest::Error) -> ActionError {
    let message = format!("{what}: no answer: {err}");
    if err.is_timeout() {
        ActionError::TimedOut(message)
    } else {
        ActionError::Failed(message)
    }
}

/// The HTTP client of an action (`insecure`: accept a self-signed certificate).
pub fn client(insecure: bool) -> Result<reqwest::Client, ActionError> {
    super::super::client(insecure, ACTION_TIMEOUT).map_err(ActionError::Failed)
}
