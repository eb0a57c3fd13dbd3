//! The webhook sink of a first install: `aragora control` answers Alertmanager's webhook
//! notifications (payload version 4) at [`crate::receivers::SINK_PATH`], logs each alert
//! (receiver, name, severity, status) and counts it in `aragora_alert_notifications_received_
//! total{receiver,status}`. The default receivers point here, so pages land somewhere visible
//! before a real pager is wired.
//!
//! It changes no state beyond a counter and a log line, so it is open unless
//! `ARAGORA_ALERT_WEBHOOK_TOKEN_FILE` is set; then it takes only requests bearing that file's
//! token (what Alertmanager sends with `http_config.authorization.credentials_file`), compared
//! in constant time. The HTTP part is the caller's: [`WebhookSink::receive`] takes the
//! `Authorization` header and the body and answers what to count or why not.

use crate::receivers::{CHAT, PAGER};
use aragora_telemetry::catalogue::ALERT_NOTIFICATIONS_RECEIVED_TOTAL;
use prometheus::{IntCounterVec, Registry};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The alert statuses of Alertmanager's payload.
const STATUSES: &[&str] = &["firing", "resolved"];

/// Alertmanager's webhook payload, version 4; fields the sink does not use are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub status: String,
    pub receiver: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a [`Notification`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<String>,
}

/// Why a notification was refused; [`status`](Self::status) and [`code`](Self::code) are the
/// HTTP answer's.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("this sink takes only requests with the bearer token of ARAGORA_ALERT_WEBHOOK_TOKEN_FILE (Alertmanager: http_config.authorization.credentials_file)")]
    Unauthenticated,
    #[error("the body is not an Alertmanager webhook payload: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
}

impl SinkError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthenticated => 401,
            Self::Malformed(_) => 400,
            Self::Invalid(_) => 422,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Malformed(_) => "malformed_payload",
            Self::Invalid(_) => "validation_failed",
        }
    }
}

/// What a notification brought: how many alerts, and of which receiver label.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub receiver: &'static str,
    pub alerts: usize,
}

/// The sink: its counter and the token it requires, if any.
pub struct WebhookSink {
    received: IntCounterVec,
    token_digest: Option<[u8; 32]>,
}

impl WebhookSink {
    /// Registers the counter in `registry`, every known receiver × status at 0 (so `rate()`
    /// sees the first notification).
    pub fn new(registry: &Registry, token: Option<&str>) -> Self {
        let received = ALERT_NOTIFICATIONS_RECEIVED_TOTAL.counter(registry);
        for receiver in [PAGER, CHAT] {
            for status in STATUSES {
                let _ = received.with_label_values(&[receiver, *status]);
            }
        }
        Self {
            received,
            token_digest: token.map(digest),
        }
    }

    /// Checks the credential, parses `body`, logs and counts each alert.
    pub fn receive(&self, authorization: Option<&str>, body: &[u8]) -> Result<Received, SinkError> {
        if let Some(expected) = &self.token_digest {
            let given = authorization
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(|token| digest(token.trim()));
            // Comparing digests keeps the time taken independent of where the tokens differ.
            if given.as_ref() != Some(expected) {
                return Err(SinkError::Unauthenticated);
            }
        }
        let notification: Notification =
            serde_json::from_slice(body).map_err(|err| SinkError::Malformed(err.to_string()))?;
        if notification.version != "4" {
            return Err(SinkError::Invalid(format!(
                "version is {:?}; this sink reads Alertmanager's webhook payload version \"4\"",
                notification.version
            )));
        }
        if let Some(alert) = notification
            .alerts
            .iter()
            .find(|alert| !STATUSES.contains(&alert.status.as_str()))
        {
            return Err(SinkError::Invalid(format!(
                "an alert's status is {:?}; use \"firing\" or \"resolved\"",
                alert.status
            )));
        }
        // The label is bounded: receiver names come from the request.
        let receiver = match notification.receiver.as_str() {
            PAGER => PAGER,
            CHAT => CHAT,
            _ => "other",
        };
        for alert in &notification.alerts {
            let label = |name: &str| alert.labels.get(name).map(String::as_str).unwrap_or("");
            tracing::info!(
                receiver = notification.receiver.as_str(),
                alertname = label("alertname"),
                severity = label("severity"),
                status = alert.status.as_str(),
                summary = alert
                    .annotations
                    .get("summary")
                    .map(String::as_str)
                    .unwrap_or(""),
                starts_at = alert.starts_at.as_deref().unwrap_or(""),
                "alert notification received"
            );
            self.received
                .with_label_values(&[receiver, alert.status.as_str()])
                .inc();
        }
        Ok(Received {
            receiver,
            alerts: notification.alerts.len(),
        })
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = r#"{"version":"4","status":"firing","receiver":"pager","groupKey":"{}",
        "alerts":[{"status":"firing","labels":{"alertname":"AragoraHighErrorRate","severity":"critical"},
                   "annotations":{"summary":"5xx"},"startsAt":"2026-01-01T00:00:00Z"}]}"#;

    fn count(registry: &Registry, receiver: &str, status: &str) -> u64 {
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == ALERT_NOTIFICATIONS_RECEIVED_TOTAL.name)
            .unwrap();
        family
            .get_metric()
            .iter()
            .find(|m| {
                let labels = m.get_label();
                labels.iter().any(|l| l.value() == receiver)
                    && labels.iter().any(|l| l.value() == status)
            })
            .map(|m| m.get_counter().get_value() as u64)
            .unwrap_or(0)
    }

    #[test]
    fn each_alert_is_counted_by_receiver_and_status() {
        let registry = Registry::new();
        let sink = WebhookSink::new(&registry, None);
        assert_eq!(count(&registry, "pager", "firing"), 0);
        let received = sink.receive(None, PAYLOAD.as_bytes()).unwrap();
        assert_eq!(
            received,
            Received {
                receiver: "pager",
                alerts: 1
            }
        );
        assert_eq!(count(&registry, "pager", "firing"), 1);
        let stranger = PAYLOAD.replace("\"receiver\":\"pager\"", "\"receiver\":\"x-1\"");
        sink.receive(None, stranger.as_bytes()).unwrap();
        assert_eq!(count(&registry, "other", "firing"), 1);
    }

    #[test]
    fn bad_payloads_and_missing_tokens_are_refused() {
        let registry = Registry::new();
        let sink = WebhookSink::new(&registry, Some("a-token-of-enough-length"));
        let status = |auth: Option<&str>, body: &str| {
            sink.receive(auth, body.as_bytes()).map_err(|e| e.status())
        };
        assert_eq!(status(None, PAYLOAD), Err(401));
        assert_eq!(
            status(Some("Bearer wrong-token-wrong-token"), PAYLOAD),
            Err(401)
        );
        let auth = Some("Bearer a-token-of-enough-length");
        assert_eq!(status(auth, "not json"), Err(400));
        assert_eq!(status(auth, r#"{"version":"4"}"#), Err(400));
        assert_eq!(status(auth, &PAYLOAD.replace("\"4\"", "\"3\"")), Err(422));
        assert_eq!(
            status(
                auth,
                &PAYLOAD.replace(
                    "\"status\":\"firing\",\"labels\"",
                    "\"status\":\"odd\",\"labels\""
                )
            ),
            Err(422)
        );
        assert!(status(auth, PAYLOAD).is_ok());
    }
}
