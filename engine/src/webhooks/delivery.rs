//! The delivery worker every engine replica runs: it claims due deliveries under a lease
//! ([`outbox::claim`]), sends each (POST, the exact stored body, the signature headers of
//! [`signing`]) through a client whose resolver enforces [`egress`], and records the outcome
//! ([`outbox::finish`]): delivered on 2xx; retried on a timeout, a connection failure, 429
//! (after its `Retry-After`) or 5xx, with [`retry::backoff`]; dead-lettered after
//! `ARAGORA_WEBHOOK_MAX_RETRIES` retries, or at once on any other answer (a 4xx other than 429
//! will not change by retrying, nor will a refused address). Before sending, the endpoint's
//! shared breaker ([`breaker`]) is asked: an open one puts the delivery back unattempted, a
//! half-open one lets one trial through. At most
//! `ARAGORA_WEBHOOK_CONCURRENCY` deliveries are in flight per replica, each on its own task, and
//! at most `ARAGORA_WEBHOOK_CONCURRENCY_PER_ENDPOINT` of them to one endpoint: a receiver that
//! takes its whole timeout holds that many slots, not all of them, until its breaker opens; its
//! further claimed deliveries are put back unattempted for the next pass.

use super::breaker::{self, Admission, BreakerState, Breakers};
use super::egress::{self, EgressError, EgressPolicy, GuardedResolver};
use super::outbox::{self, Claimed, Finish};
use super::retry;
use super::secrets::{SecretBox, SecretError};
use super::signing;
use crate::config::{DbBackend, EngineConfig};
use crate::error_log::{ErrorKind, ErrorLog};
use crate::metrics::WebhookMetrics;
use crate::model::now_ms;
use crate::store::SqlStore;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::Url;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// The `status` values of `aragora_webhook_deliveries_total`.
pub const STATUSES: [&str; 3] = ["delivered", "retrying", "dead_lettered"];

/// How long a claimed delivery's lease outlasts the request's timeout: time to record the
/// outcome. A replica that died mid-delivery frees its rows after timeout + this.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// The worker's settings (`ARAGORA_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub poll: Duration,
    pub concurrency: usize,
    pub concurrency_per_endpoint: usize,
    pub egress: EgressPolicy,
}

impl DeliverySettings {
    pub fn from_config(config: &EngineConfig) -> Self {
        Self {
            timeout: Duration::from_millis(config.webhook_timeout_ms),
            max_retries: config.webhook_max_retries,
            backoff_base: Duration::from_millis(config.webhook_backoff_base_ms),
            backoff_max: Duration::from_millis(config.webhook_backoff_max_ms),
            breaker_threshold: config.webhook_breaker_threshold,
            breaker_cooldown: Duration::from_millis(config.webhook_breaker_cooldown_ms),
            poll: Duration::from_millis(config.webhook_poll_interval_ms),
            concurrency: config.webhook_concurrency,
            concurrency_per_endpoint: config.webhook_concurrency_per_endpoint,
            egress: EgressPolicy {
                allow_http: config.webhook_allow_http,
                allow_private: config.webhook_allow_private,
            },
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Delivered {
        status: u16,
    },
    /// Worth another try. `receiver` says whether it counts against the receiver's breaker.
    Retryable {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
        receiver: bool,
    },
    Permanent {
        status: Option<u16>,
        error: String,
    },
}

/// The webhooks of one replica: the tables, the key of the secrets, the breakers and the
/// delivery client.
pub struct Webhooks {
    store: SqlStore,
    settings: DeliverySettings,
    secrets: SecretBox,
    client: reqwest::Client,
    breakers: Breakers,
    metrics: WebhookMetrics,
    /// Where a dead-lettered delivery is noted for `GET /api/system/errors`.
    errors: ErrorLog,
    /// This replica's lease holder name.
    holder: String,
    in_flight: Arc<Semaphore>,
    /// Deliveries in flight per endpoint, against `concurrency_per_endpoint`.
    per_endpoint: EndpointSlots,
    /// The endpoints `aragora_webhook_circuit_breaker_state` has a series of.
    exported: Mutex<BTreeSet<String>>,
}

impl Webhooks {
    pub fn new(
        store: SqlStore,
        settings: DeliverySettings,
        secrets: SecretBox,
        metrics: WebhookMetrics,
        errors: ErrorLog,
        holder: &str,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A redirect would send the body somewhere nobody subscribed, and a proxy would
            // resolve the host where the egress check cannot see.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver::shared(settings.egress))
            .build()?;
        Ok(Self {
            breakers: Breakers::new(settings.breaker_threshold, settings.breaker_cooldown),
            in_flight: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            per_endpoint: EndpointSlots::new(
                settings
                    .concurrency_per_endpoint
                    .clamp(1, settings.concurrency.max(1)),
            ),
            store,
            settings,
            secrets,
            client,
            metrics,
            errors,
            holder: holder.to_string(),
            exported: Mutex::default(),
        })
    }

    pub fn pool(&self) -> &sqlx::AnyPool {
        self.store.pool()
    }

    pub fn backend(&self) -> DbBackend {
        crate::store::DebateStore::backend(&self.store)
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    pub fn egress(&self) -> EgressPolicy {
        self.settings.egress
    }

    pub fn metrics(&self) -> &WebhookMetrics {
        &self.metrics
    }

    /// The breaker of the endpoint of `url`, as every replica sees it (the database's).
    pub async fn breaker(&self, url: &str) -> Result<BreakerState, sqlx::Error> {
        match Url::parse(url) {
            Ok(url) => breaker::state(self.pool(), &egress::endpoint(&url), now_ms()).await,
            Err(_) => Ok(BreakerState::Closed),
        }
    }

    /// Sets `aragora_webhook_circuit_breaker_state` from the database, as of now: a series per
    /// endpoint some subscription delivers to (0 until it fails, so the alert on it and
    /// `rate()`s have a sample to start from), open turning half-open when its cooldown ends
    /// whether or not a delivery ran since, and no series of an endpoint nobody subscribes to
    /// any more. Called at every scrape.
    pub async fn refresh_breaker_gauges(&self) -> Result<(), sqlx::Error> {
        let subscriptions = outbox::subscriptions(self.pool()).await?;
        let states = breaker::states(self.pool(), now_ms()).await?;
        let endpoints: BTreeSet<String> = subscriptions
            .iter()
            .filter_map(|s| Url::parse(&s.url).ok())
            .map(|url| egress::endpoint(&url))
            .collect();
        let gauge = &self.metrics.breaker_state;
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        for gone in exported.difference(&endpoints) {
            // Absent already is what we want.
            let _ = gauge.remove_label_values(&[gone]);
        }
        for endpoint in &endpoints {
            let state = states
                .get(endpoint)
                .copied()
                .unwrap_or(BreakerState::Closed);
            gauge.with_label_values(&[endpoint]).set(state.gauge());
        }
        *exported = endpoints;
        Ok(())
    }

    /// Runs the worker until the process ends: a pass every `ARAGORA_WEBHOOK_POLL_INTERVAL_MS`.
    /// A replica killed mid-delivery leaves leases that expire; nothing needs stopping.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(worker.settings.poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = worker.pass().await {
                    tracing::warn!(error = %err, "webhook delivery pass failed; retrying next interval");
                }
            }
        })
    }

    /// Claims as many due deliveries as there are free slots and sends each on its own task.
    pub async fn pass(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let free = self.in_flight.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = now_ms();
        let lease = self.lease_ms();
        let claimed = outbox::claim(
            self.pool(),
            self.backend(),
            &self.holder,
            now,
            now + lease,
            free as i64,
        )
        .await?;
        let count = claimed.len();
        for delivery in claimed {
            let endpoint = endpoint_of(&delivery.url);
            let Some(slot) = self.per_endpoint.take(&endpoint) else {
                // Its endpoint's share is in flight: back for the next pass, unattempted, behind
                // the other receivers' due deliveries.
                let at_ms = now_ms() + self.settings.poll.as_millis() as i64;
                let finish = Finish::Defer { at_ms };
                if let Err(err) =
                    outbox::finish(self.pool(), &delivery.id, &self.holder, &finish, now_ms()).await
                {
                    tracing::warn!(delivery = %delivery.id, error = %err, "cannot put back a webhook delivery; it is taken again when its lease ends");
                }
                continue;
            };
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                break;
            };
            let worker = self.clone();
            tokio::spawn(async move {
                worker.deliver(delivery, &endpoint).await;
                drop((permit, slot));
            });
        }
        Ok(count)
    }

    /// How long a claimed delivery (and a half-open breaker's trial) is held.
    fn lease_ms(&self) -> i64 {
        (self.settings.timeout + LEASE_MARGIN).as_millis() as i64
    }

    async fn deliver(&self, delivery: Claimed, endpoint: &str) {
        let now = now_ms();
        let admission = self
            .breakers
            .admit(self.pool(), endpoint, now, now + self.lease_ms())
            .await;
        let outcome = match admission {
            Ok(Admission::Wait { until_ms }) => Finish::Defer { at_ms: until_ms },
            Ok(admitted) => {
                let attempt = self.attempt(&delivery).await;
                self.judge(&delivery, endpoint, attempt, admitted == Admission::Trial)
                    .await
            }
            Err(err) => {
                tracing::warn!(delivery = %delivery.id, %endpoint, error = %err, "cannot read the receiver's breaker; the delivery waits a moment");
                Finish::Defer {
                    at_ms: now + breaker::HALF_OPEN_RECHECK_MS,
                }
            }
        };
        match outbox::finish(self.pool(), &delivery.id, &self.holder, &outcome, now_ms()).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery = %delivery.id,
                "webhook delivery's lease ran out before its outcome was recorded; another replica took it (the receiver may see it again)"
            ),
            Err(err) => tracing::warn!(
                delivery = %delivery.id, error = %err,
                "cannot record a webhook delivery's outcome; it is tried again when its lease ends"
            ),
        }
    }

    /// The outcome to record for `attempt`, with the breaker and the metrics updated. `trial`:
    /// the attempt was a half-open breaker's one trial.
    async fn judge(
        &self,
        delivery: &Claimed,
        endpoint: &str,
        attempt: Attempt,
        trial: bool,
    ) -> Finish {
        let event = delivery.event_type.as_str();
        let now = now_ms();
        let pool = self.pool();
        let counted = match &attempt {
            Attempt::Delivered { .. } => Some(self.breakers.success(pool, endpoint).await),
            Attempt::Retryable { receiver: true, .. } => Some(
                self.breakers
                    .failure(pool, endpoint, now)
                    .await
                    .map(|state| self.set_breaker(endpoint, state)),
            ),
            _ if trial => Some(self.breakers.release_trial(pool, endpoint).await),
            _ => None,
        };
        if let Some(Err(err)) = counted {
            tracing::warn!(delivery = %delivery.id, endpoint, error = %err, "cannot record the outcome in the receiver's breaker");
        }
        let count = |status: &str| {
            self.metrics
                .deliveries
                .with_label_values(&[status, event])
                .inc();
        };
        let dead = |status: Option<u16>, error: String| {
            count("dead_lettered");
            self.metrics.dead_lettered.with_label_values(&[event]).inc();
            tracing::warn!(
                delivery = %delivery.id, subscription = %delivery.subscription_id,
                event_type = event, endpoint, attempts = delivery.attempts + 1, %error,
                "webhook delivery dead-lettered; retry it with POST /api/admin/webhooks/deliveries/{{id}}/retry"
            );
            // The endpoint, never the URL: a path or query may carry the receiver's token.
            self.errors.record(
                ErrorKind::WebhookFailed,
                &format!(
                    "webhook delivery {} ({event}) to {endpoint} dead-lettered after {} attempts: {error}",
                    delivery.id,
                    delivery.attempts + 1
                ),
            );
            Finish::Dead {
                status: status.map(i64::from),
                error,
            }
        };
        match attempt {
            Attempt::Delivered { status } => {
                self.set_breaker(endpoint, BreakerState::Closed);
                count("delivered");
                Finish::Delivered {
                    status: i64::from(status),
                }
            }
            Attempt::Permanent { status, error } => dead(status, error),
            Attempt::Retryable {
                status,
                error,
                retry_after,
                receiver: _,
            } => {
                let made = delivery.attempts + 1;
                if made > i64::from(self.settings.max_retries) {
                    return dead(
                        status,
                        format!(
                            "{error} (after {made} attempts, ARAGORA_WEBHOOK_MAX_RETRIES={})",
                            self.settings.max_retries
                        ),
                    );
                }
                let delay = retry_after.unwrap_or_else(|| {
                    retry::backoff(
                        u32::try_from(made - 1).unwrap_or(u32::MAX),
                        self.settings.backoff_base,
                        self.settings.backoff_max,
                        rand::random::<f64>(),
                    )
                });
                count("retrying");
                self.metrics.retries.with_label_values(&[event]).inc();
                Finish::Retry {
                    at_ms: now + delay.as_millis() as i64,
                    status: status.map(i64::from),
                    error,
                }
            }
        }
    }

    /// Shows a state this replica just recorded (the next scrape reads the database anyway).
    fn set_breaker(&self, endpoint: &str, state: BreakerState) {
        if self
            .exported
            .lock()
            .map(|e| e.contains(endpoint))
            .unwrap_or(false)
        {
            self.metrics
                .breaker_state
                .with_label_values(&[endpoint])
                .set(state.gauge());
        }
    }

    async fn attempt(&self, delivery: &Claimed) -> Attempt {
        // Checked again: the URL was checked at creation, but the settings may have changed.
        let url = match self.settings.egress.check_url(&delivery.url) {
            Ok(url) => url,
            Err(err) => {
                return Attempt::Permanent {
                    status: None,
                    error: err.to_string(),
                }
            }
        };
        let secret = match delivery.secret_sealed.as_deref() {
            None => None,
            Some(sealed) => match self.secrets.open(&delivery.subscription_id, sealed) {
                Ok(secret) => Some(secret),
                // Another replica may hold the right key: not the receiver's fault.
                Err(err @ SecretError::WrongKey { .. }) => {
                    return Attempt::Retryable {
                        status: None,
                        error: err.to_string(),
                        retry_after: None,
                        receiver: false,
                    }
                }
                Err(err) => {
                    return Attempt::Permanent {
                        status: None,
                        error: err.to_string(),
                    }
                }
            },
        };
        let body = delivery.body.as_bytes();
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("aragora-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(signing::DELIVERY, delivery.id.as_str())
            .header(signing::EVENT, delivery.event_type.as_str())
            .header(signing::ATTEMPT, (delivery.attempts + 1).to_string())
            .body(delivery.body.clone());
        if let Some(secret) = &secret {
            let unix = chrono::Utc::now().timestamp();
            request = request
                .header(signing::SIGNATURE, signing::signature(secret, body))
                .header(
                    signing::TIMESTAMPED_SIGNATURE,
                    signing::timestamped(secret, body, unix),
                );
        }
        let started = Instant::now();
        let response = request.send().await;
        self.metrics
            .latency
            .with_label_values(&[delivery.event_type.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match response {
            Ok(response) => self.answered(&response),
            Err(err) => self.failed(err),
        }
    }

    fn answered(&self, response: &reqwest::Response) -> Attempt {
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Attempt::Delivered { status: code };
        }
        if code == 429 || status.is_server_error() {
            let retry_after = (code == 429)
                .then(|| response.headers().get(RETRY_AFTER))
                .flatten()
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .and_then(|value| {
                    retry::retry_after(value, SystemTime::now(), self.settings.backoff_max)
                });
            return Attempt::Retryable {
                status: Some(code),
                error: format!("the receiver answered {status}"),
                retry_after,
                receiver: true,
            };
        }
        Attempt::Permanent {
            status: Some(code),
            error: format!(
                "the receiver answered {status}; only 2xx counts as delivered, and answers other than 429 and 5xx are not retried"
            ),
        }
    }

    fn failed(&self, err: reqwest::Error) -> Attempt {
        // The URL's path and query may hold the receiver's token: never in a message.
        let err = err.without_url();
        if let Some(refused) = find_source::<EgressError>(&err) {
            return Attempt::Permanent {
                status: None,
                error: refused.to_string(),
            };
        }
        let error = if err.is_timeout() {
            format!(
                "no answer within {} ms (ARAGORA_WEBHOOK_TIMEOUT_MS)",
                self.settings.timeout.as_millis()
            )
        } else {
            aragora_telemetry::error_with_causes(&err)
        };
        Attempt::Retryable {
            status: None,
            error,
            retry_after: None,
            receiver: true,
        }
    }
}

fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// The endpoint (`scheme://host:port`) a delivery's breaker and slot are counted under.
fn endpoint_of(url: &str) -> String {
    Url::parse(url)
        .map(|url| egress::endpoint(&url))
        .unwrap_or_else(|_| "invalid".into())
}

/// The deliveries in flight per endpoint, each endpoint allowed `share` at once.
struct EndpointSlots {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    share: usize,
}

impl EndpointSlots {
    fn new(share: usize) -> Self {
        Self {
            counts: Arc::default(),
            share,
        }
    }

    /// One of `endpoint`'s slots, freed when dropped; none while its share is in flight.
    fn take(&self, endpoint: &str) -> Option<EndpointSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let held = counts.entry(endpoint.to_string()).or_default();
        if *held >= self.share {
            return None;
        }
        *held += 1;
        Some(EndpointSlot {
            counts: self.counts.clone(),
            endpoint: endpoint.to_string(),
        })
    }
}

/// A delivery's hold on one of its endpoint's slots (`ARAGORA_WEBHOOK_CONCURRENCY_PER_ENDPOINT`).
struct EndpointSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    endpoint: String,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = counts.get_mut(&self.endpoint) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aragora_config::Settings;

    /// What an operator gets without a setting: the runbook's WebhookDeliveryManager.
    #[test]
    fn the_defaults_are_the_runbooks() {
        let config = EngineConfig::load(None, &std::collections::HashMap::new()).unwrap();
        let settings = DeliverySettings::from_config(&config);
        assert_eq!(settings.timeout, Duration::from_secs(30));
        assert_eq!(settings.max_retries, 5);
        assert_eq!(settings.backoff_base, Duration::from_secs(1));
        assert_eq!(settings.backoff_max, Duration::from_secs(300));
        assert_eq!(settings.breaker_threshold, 5);
        assert_eq!(settings.breaker_cooldown, Duration::from_secs(60));
        assert_eq!(settings.concurrency, 16);
        assert_eq!(settings.concurrency_per_endpoint, 4);
        assert!(!settings.egress.allow_http && !settings.egress.allow_private);
    }

    #[test]
    fn a_delivery_holds_one_of_its_endpoints_slots_until_it_ends() {
        let slots = EndpointSlots::new(2);
        let first = slots.take("http://a:1").unwrap();
        let second = slots.take("http://a:1").unwrap();
        assert!(
            slots.take("http://a:1").is_none(),
            "a third over a share of 2"
        );
        assert!(
            slots.take("http://b:1").is_some(),
            "another endpoint has its own"
        );
        drop(first);
        assert!(
            slots.take("http://a:1").is_some(),
            "a freed slot is taken again"
        );
        drop(second);
        assert!(
            slots.counts.lock().unwrap().is_empty(),
            "nothing held, nothing kept"
        );
        assert_eq!(
            endpoint_of("https://hooks.example:8443/x?token=t"),
            "https://hooks.example:8443"
        );
    }
}
