//! The stapler: a background service that keeps the certificate's staple current. For a
//! fetched plan it POSTs the OCSP request to the responder (plain HTTP is normal for OCSP: the
//! answer is signed), verifies the answer and staples it when it says good; it refreshes at
//! half the response's validity (at most `ARAGORA_TLS_OCSP_REFRESH_SECS` apart), and after a
//! failure retries with a doubling backoff (from 5 s, at most that interval), while
//! [`CertStore`] keeps handing out the last good staple until its nextUpdate. A response that
//! verifies and says revoked drops the staple at once. For a file plan it only says, once,
//! when the file's response has expired. Handshakes never wait for any of this.
//!
//! Metrics: `aragora_tls_ocsp_stapled`, `aragora_tls_ocsp_staple_age_seconds`,
//! `aragora_tls_ocsp_staple_expires_in_seconds` and `aragora_tls_ocsp_stapling_enabled` (all
//! computed from the store when scraped), and `aragora_tls_ocsp_refresh_failures_total{reason}`.
//! The alerts over them (a staple missing while stapling is on, one past two thirds of its
//! validity, refreshes failing, a revocation) are `slo/src/rules/infrastructure.rs`'.

use super::subject::OcspSubject;
use super::verify::{verify, Status, Verified};
use super::{OcspError, Plan, Staple};
use crate::state::Shared;
use crate::tls::CertStore;
use aragora_telemetry::catalogue as cat;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, Registry};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long one request to the responder may take.
const RESPONDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from a responder (real ones are a few KiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The first retry after a failure; each further failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The shortest wait between two successful fetches, so that a responder (or a CDN in front of
/// it) that keeps handing out a response past its half-life is not asked in a loop.
const SHORTEST_REFRESH: Duration = Duration::from_secs(60);

/// The `reason` label values of `aragora_tls_ocsp_refresh_failures_total`.
const REASONS: [&str; 5] = ["unreachable", "refused", "invalid", "revoked", "unknown"];

/// Registers the OCSP metrics; returns the failure counter the stapler counts into.
pub fn register_metrics(registry: &Registry, certs: &Arc<CertStore>) -> IntCounterVec {
    let store = certs.clone();
    cat::TLS_OCSP_STAPLED.gauge_computed(registry, move || {
        f64::from(u8::from(store.served_staple(SystemTime::now()).is_some()))
    });
    let store = certs.clone();
    cat::TLS_OCSP_STAPLE_AGE_SECONDS.gauge_computed(registry, move || {
        let now = SystemTime::now();
        store
            .served_staple(now)
            .and_then(|(this_update, _)| now.duration_since(this_update).ok())
            .map_or(0.0, |age| age.as_secs_f64())
    });
    let store = certs.clone();
    cat::TLS_OCSP_STAPLE_EXPIRES_IN_SECONDS.gauge_computed(registry, move || {
        let now = SystemTime::now();
        store
            .served_staple(now)
            .and_then(|(_, next_update)| next_update.duration_since(now).ok())
            .map_or(0.0, |left| left.as_secs_f64())
    });
    let store = certs.clone();
    // Whether a staple is wanted at all: without it a missing staple cannot be told from
    // stapling off, and an alert on "no staple" would fire on every gateway that staples none.
    cat::TLS_OCSP_STAPLING_ENABLED.gauge_computed(registry, move || {
        f64::from(u8::from(!matches!(*store.plan().1, Plan::Off)))
    });
    let failures = cat::TLS_OCSP_REFRESH_FAILURES_TOTAL.counter(registry);
    for reason in REASONS {
        failures.with_label_values(&[reason]);
    }
    failures
}

/// Why one refresh did not staple.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the responder could not be reached: {0}")]
    Unreachable(String),
    #[error("the responder refused: {0}")]
    Refused(String),
    #[error("the response {0}")]
    Invalid(OcspError),
    #[error("the responder says the certificate was revoked at {0}")]
    Revoked(String),
    #[error("the responder does not know the certificate (status unknown)")]
    Unknown,
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "unreachable",
            Failure::Refused(_) | Failure::Invalid(OcspError::Unsuccessful(_)) => "refused",
            Failure::Invalid(_) => "invalid",
            Failure::Revoked(_) => "revoked",
            Failure::Unknown => "unknown",
        }
    }

    /// What the operator should do about it.
    fn fix(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "check that the gateway can reach the responder (DNS, firewall, HTTP_PROXY/NO_PROXY)",
            Failure::Refused(_) | Failure::Invalid(OcspError::Unsuccessful(_)) => "check that ARAGORA_TLS_CERT holds the certificate and issuer this responder serves; tryLater passes by itself",
            Failure::Invalid(_) => "check that the chain in ARAGORA_TLS_CERT is the one the CA issued and that this machine's clock is right",
            Failure::Revoked(_) => "the CA revoked the certificate: replace ARAGORA_TLS_CERT and ARAGORA_TLS_KEY and send SIGHUP",
            Failure::Unknown => "check that ARAGORA_TLS_CERT is the certificate the CA issued (the responder does not know its serial)",
        }
    }
}

/// The certificate's staple kept current, as a pingora background service.
pub struct Stapler {
    pub certs: Arc<CertStore>,
    pub shared: Arc<Shared>,
    pub failures: IntCounterVec,
}

#[async_trait]
impl BackgroundService for Stapler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// When to refresh after a good response: at its half-life, within the configured interval.
fn next_refresh(now: SystemTime, staple: &Staple, longest: Duration) -> Duration {
    let validity = staple
        .next_update
        .duration_since(staple.this_update)
        .unwrap_or_default();
    let halfway = staple.this_update + validity / 2;
    halfway
        .duration_since(now)
        .unwrap_or_default()
        .clamp(longest.min(SHORTEST_REFRESH), longest)
}

/// When to retry after `failures` failures in a row.
fn backoff(failures: u32, longest: Duration) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(longest)
}

impl Stapler {
    async fn run(&self) {
        // A fetch an hour is no reason to keep connections open (and some responders, openssl's
        // among them, answer one request per connection).
        let client = match reqwest::Client::builder()
            .timeout(RESPONDER_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()
        {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "cannot build the OCSP client; nothing is fetched to staple");
                return;
            }
        };
        let mut failures = 0u32;
        loop {
            let (generation, plan) = self.certs.plan();
            let wait = match &*plan {
                Plan::Off => None,
                Plan::File { path, staple } => {
                    match staple.next_update.duration_since(SystemTime::now()) {
                        Ok(left) => Some(left),
                        Err(_) => {
                            tracing::warn!(file = %path.display(), "the OCSP response of ARAGORA_TLS_OCSP_RESPONSE_FILE has expired (nextUpdate passed) and is no longer stapled; write a fresh one there and send SIGHUP");
                            None
                        }
                    }
                }
                Plan::Fetch { subject, url } => Some(
                    self.refresh(&client, generation, subject, url, &mut failures)
                        .await,
                ),
            };
            // A reload (a new certificate or plan) wakes the loop at once.
            match wait {
                Some(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.certs.changed() => { failures = 0; }
                    }
                }
                None => {
                    self.certs.changed().await;
                    failures = 0;
                }
            }
        }
    }

    /// One fetch; returns how long to wait before the next.
    async fn refresh(
        &self,
        client: &reqwest::Client,
        generation: u64,
        subject: &OcspSubject,
        url: &str,
        failures: &mut u32,
    ) -> Duration {
        let longest = Duration::from_secs(self.shared.config().tls_ocsp_refresh_secs.max(1));
        let outcome = match fetch(client, url, subject.request_der()).await {
            Ok(der) => match verify(subject, &der, SystemTime::now()) {
                Ok(Verified {
                    status: Status::Good,
                    staple,
                }) => Ok(staple),
                Ok(Verified {
                    status: Status::Revoked(at),
                    ..
                }) => Err(Failure::Revoked(at)),
                Ok(Verified {
                    status: Status::Unknown,
                    ..
                }) => Err(Failure::Unknown),
                Err(err) => Err(Failure::Invalid(err)),
            },
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(staple) => {
                *failures = 0;
                let wait = next_refresh(SystemTime::now(), &staple, longest);
                if self.certs.staple(generation, &staple) {
                    tracing::info!(
                        responder = url,
                        next_update = %httpdate::fmt_http_date(staple.next_update),
                        refresh_in_s = wait.as_secs(),
                        "OCSP response stapled"
                    );
                }
                wait
            }
            Err(failure) => {
                if matches!(failure, Failure::Revoked(_)) {
                    // A signed "revoked" ends the good staple now, not at its nextUpdate.
                    self.certs.unstaple(generation);
                }
                self.failures.with_label_values(&[failure.reason()]).inc();
                *failures += 1;
                let retry = backoff(*failures, longest);
                let served = match self.certs.served_staple(SystemTime::now()) {
                    Some((_, until)) => format!(
                        "the last good staple is served until {}",
                        httpdate::fmt_http_date(until)
                    ),
                    None => "no staple is served".to_string(),
                };
                let error = failure.to_string();
                let (reason, fix) = (failure.reason(), failure.fix());
                if matches!(failure, Failure::Revoked(_)) {
                    tracing::error!(
                        responder = url,
                        reason,
                        error,
                        serving = served,
                        fix,
                        retry_in_s = retry.as_secs(),
                        "OCSP refresh failed"
                    );
                } else {
                    tracing::warn!(
                        responder = url,
                        reason,
                        error,
                        serving = served,
                        fix,
                        retry_in_s = retry.as_secs(),
                        "OCSP refresh failed"
                    );
                }
                retry
            }
        }
    }
}

/// POSTs `request` to `url` (RFC 6960 A.1) and reads the answer, at most
/// [`MAX_RESPONSE_BYTES`].
async fn fetch(client: &reqwest::Client, url: &str, request: Vec<u8>) -> Result<Vec<u8>, Failure> {
    let mut response = client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .body(request)
        .send()
        .await
        .map_err(|err| Failure::Unreachable(aragora_telemetry::error_with_causes(&err)))?;
    if !response.status().is_success() {
        return Err(Failure::Refused(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| Failure::Unreachable(aragora_telemetry::error_with_causes(&err)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(Failure::Invalid(OcspError::Malformed(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            ))));
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staple(this_update: SystemTime, valid: Duration) -> Staple {
        Staple {
            der: Vec::new(),
            this_update,
            next_update: this_update + valid,
        }
    }

    #[test]
    fn a_good_response_is_refreshed_at_its_half_life_within_the_interval() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let week = staple(now, 7 * 24 * hour);
        assert_eq!(
            next_refresh(now, &week, hour),
            hour,
            "capped by the interval"
        );
        let short = staple(now, Duration::from_secs(600));
        assert_eq!(next_refresh(now, &short, hour), Duration::from_secs(300));
        let past_half = staple(now - Duration::from_secs(500), Duration::from_secs(600));
        assert_eq!(
            next_refresh(now, &past_half, hour),
            SHORTEST_REFRESH,
            "a response past its half-life is not refetched in a loop"
        );
        assert_eq!(
            next_refresh(now, &past_half, Duration::from_secs(2)),
            Duration::from_secs(2),
            "a shorter interval than the floor wins"
        );
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n, hour).as_secs()).collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff(1000, hour), hour);
        assert_eq!(backoff(1, Duration::from_secs(2)), Duration::from_secs(2));
    }
}
