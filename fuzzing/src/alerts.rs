//! Alertmanager's webhook payloads as `aragora control`'s sink receives them: any body, from
//! whoever holds the sink's token (or a man in the middle of a plain-HTTP Alertmanager).

use aragora_slo::sink::WebhookSink;

const TOKEN: &str = "fuzz-sink-token";

#[derive(serde::Deserialize)]
struct AlertsOnly {
    alerts: Vec<serde::de::IgnoredAny>,
}

/// A body is counted or refused with the sink's 400/422, never a panic; a counted body
/// counts exactly its alerts, and without the token nothing is read at all.
pub fn alert_webhook(data: &[u8]) {
    let registry = prometheus::Registry::new();
    let sink = WebhookSink::new(&registry, Some(TOKEN));
    match sink.receive(Some(&format!("Bearer {TOKEN}")), data) {
        Ok(received) => {
            // Read as the sink reads it (unknown fields skipped unparsed), only the alerts.
            let alerts: AlertsOnly =
                serde_json::from_slice(data).expect("an accepted body has its alerts");
            assert_eq!(received.alerts, alerts.alerts.len(), "counted alerts");
        }
        Err(err) => {
            assert!(matches!(err.status(), 400 | 422), "{err}");
            assert!(!err.to_string().is_empty());
        }
    }
    let refused = sink.receive(None, data).expect_err("no token, no entry");
    assert_eq!(refused.status(), 401);
}
