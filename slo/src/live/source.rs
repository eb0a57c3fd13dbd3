//! Where SLI error ratios come from ([`SliSource`]), and how asking can fail ([`LiveError`]):
//! callers tell a server that is not there from one that said no, one that took too long,
//! and an answer that cannot be read.

use crate::model::{Slo, SloSpec};
use std::time::Duration;

/// Why the live evaluation, or the delivery of its alerts, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// Nothing answered at the address (refused, unresolvable, reset).
    #[error("{service} at {url} does not answer: {reason}")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
    },
    /// The server did not answer within the client's timeout.
    #[error("{service} at {url} did not answer within {timeout_secs} s")]
    TimedOut {
        service: &'static str,
        url: String,
        timeout_secs: u64,
    },
    /// The server answered, and said no (an error status or an error body).
    #[error("{service} refused {what}: {reason}")]
    Refused {
        service: &'static str,
        what: String,
        reason: String,
    },
    /// The server answered something that is not what its API promises.
    #[error("{service} answered something unreadable: {reason}")]
    Invalid {
        service: &'static str,
        reason: String,
    },
}

/// HTTP clients of the live evaluation wait this long for an answer.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client the live evaluation talks to Prometheus and Alertmanager with: every request
/// bounded by [`HTTP_TIMEOUT`], so a hung server is a `TimedOut`, never a stalled evaluation.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("an HTTP client")
}

impl LiveError {
    /// A failed request to `service` at `url`: timed out, or not answered.
    /// The URL is named without its password, and reqwest's message (which quotes the URL
    /// whole) is scrubbed of it: a Prometheus or Alertmanager behind basic auth stays secret.
    pub(crate) fn from_request(service: &'static str, url: &str, err: &reqwest::Error) -> Self {
        let shown = aragora_config::redact_url(url);
        if err.is_timeout() {
            Self::TimedOut {
                service,
                url: shown,
                timeout_secs: HTTP_TIMEOUT.as_secs(),
            }
        } else {
            let secrets: Vec<String> = aragora_config::url_password(url)
                .map(str::to_string)
                .into_iter()
                .collect();
            Self::Unreachable {
                service,
                url: shown,
                reason: aragora_config::scrub(&err.to_string(), &secrets),
            }
        }
    }
}

/// Where SLI error ratios come from.
#[async_trait::async_trait]
pub trait SliSource: Send + Sync {
    /// The SLI's error ratio over the last `window`, None when there were no events.
    async fn error_ratio(&self, slo: &Slo, window: Duration) -> Result<Option<f64>, LiveError>;

    /// Called once per evaluation before any `error_ratio`: a moment to sample counters.
    fn sample(&self, _spec: &SloSpec) {}

    /// The SLI's error ratio over `window` at every `range` step, oldest first, when the
    /// source keeps history itself (Prometheus' `query_range`); None when it does not, and the
    /// evaluator's own series is the history.
    async fn error_ratio_range(
        &self,
        _slo: &Slo,
        _window: Duration,
        _range: &TimeRange,
    ) -> Result<Option<Vec<(f64, Option<f64>)>>, LiveError> {
        Ok(None)
    }
}

/// From `start` to `end` (Unix seconds) every `step` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeRange {
    pub start: f64,
    pub end: f64,
    pub step: f64,
}
