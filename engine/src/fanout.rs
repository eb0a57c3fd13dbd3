//! Debate events across engine replicas, through Redis pub/sub, and the engine's view of that
//! Redis for health checks ([`RedisLink`]).
//!
//! Each replica publishes every event it persists (and streamed text) on one channel and
//! forwards what the others publish to its own WebSocket subscribers, so a watcher connected
//! to any replica sees a debate running on another. Cancel notices travel the same channel. Delivery needs no guarantee: subscribers
//! skip what they already have and fill gaps from the shared store by seq.
//!
//! The connection is made in the background and retried until Redis answers (a replica started
//! while Redis is down joins the others once it is up); meanwhile events stay on this replica,
//! and `/readyz` says so when `ARAGORA_REQUIRE_DISTRIBUTED` is set.

use crate::events::{EventHub, HubMessage, PublishedEvent, Relay};
use crate::model::DebateEvent;
use aragora_config::redis::RedisSetupError;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The one channel every replica publishes on.
pub const CHANNEL: &str = "aragora:debate-events";

/// How long a health check waits for Redis' PONG before calling it unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between connection attempts while Redis is down (as the reconnect policy's).
const RETRY: Duration = Duration::from_millis(500);

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    debate_id: String,
    #[serde(default)]
    event: Option<DebateEvent>,
    #[serde(default)]
    delta: Option<String>,
    /// A cancel of the debate is recorded in the store (replicas older than this field
    /// ignore it and see the cancel at their next lease renewal).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cancel: bool,
}

/// What the publisher task sends: a hub message, or a cancel notice.
enum Outgoing {
    Message(HubMessage),
    Cancel,
}

/// The publishing side, handed to the hub.
#[derive(Clone)]
pub struct FanoutSender {
    outbox: mpsc::UnboundedSender<(String, Outgoing)>,
}

impl Relay for FanoutSender {
    fn relay(&self, debate_id: &str, message: HubMessage) {
        let _ = self
            .outbox
            .send((debate_id.to_string(), Outgoing::Message(message)));
    }

    fn relay_cancel(&self, debate_id: &str) {
        let _ = self.outbox.send((debate_id.to_string(), Outgoing::Cancel));
    }
}

/// The engine's Redis connection as health checks see it: connected or not, and why not.
#[derive(Clone)]
pub struct RedisLink {
    client: Client,
    /// The last connection error (password scrubbed), for "disconnected" answers.
    last_error: Arc<Mutex<String>>,
    /// The URL without its password.
    shown: String,
    /// True once the first connection settled: subscribed, or a first attempt failed.
    settled: tokio::sync::watch::Receiver<bool>,
}

impl RedisLink {
    /// Returns once the first connection has settled (subscribed, or failed once), so a
    /// replica that starts with Redis up announces itself ready with its events already
    /// fanning out, as before, and one that starts with Redis down does not wait for it.
    pub async fn settled(&self) {
        let mut settled = self.settled.clone();
        let _ = settled.wait_for(|done| *done).await;
    }

    /// The client commands go through (the publisher's), for the shared per-client counts.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A PING round trip: its latency, or why Redis is not answering.
    pub async fn ping(&self) -> Result<Duration, String> {
        if !self.client.is_connected() {
            let last = self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            return Err(format!("not connected to Redis at {}: {last}", self.shown));
        }
        let started = Instant::now();
        match tokio::time::timeout(PING_TIMEOUT, self.client.ping::<String>(None)).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(err)) => Err(format!("Redis at {} failed PING: {err}", self.shown)),
            Err(_) => Err(format!(
                "Redis at {} did not answer PING within {PING_TIMEOUT:?}",
                self.shown
            )),
        }
    }
}

/// Builds the clients for `url` (TLS for `rediss://`, trusting `ca_file` too), connects them in
/// the background and returns what the hub publishes through and what health checks ask.
/// Fails only on a configuration it cannot use (the URL, the CA file).
pub fn start(
    url: &str,
    ca_file: Option<&Path>,
    hub: EventHub,
) -> Result<(FanoutSender, RedisLink), RedisSetupError> {
    // Messages name the URL without its password, and fred's errors are scrubbed of it.
    let shown = aragora_config::redact_url(url);
    let secrets: Vec<String> = aragora_config::url_password(url)
        .map(str::to_string)
        .into_iter()
        .collect();
    let scrub = move |err: &fred::error::Error| {
        aragora_config::redis::explain(&aragora_config::scrub(&err.to_string(), &secrets))
    };
    let config = aragora_config::redis::client_config(url, ca_file)?;
    let policy = ReconnectPolicy::new_constant(0, RETRY.as_millis() as u32);
    let setup = |err: fred::error::Error| RedisSetupError::Url {
        shown: shown.clone(),
        reason: scrub(&err),
    };
    let publisher = Builder::from_config(config.clone())
        .set_policy(policy.clone())
        .build()
        .map_err(setup)?;
    let subscriber = Builder::from_config(config)
        .set_policy(policy)
        .build_subscriber_client()
        .map_err(setup)?;
    let (settle, settled) = tokio::sync::watch::channel(false);
    let settle = Arc::new(settle);
    let link = RedisLink {
        client: publisher.clone(),
        last_error: Arc::new(Mutex::new("connecting".into())),
        shown: shown.clone(),
        settled,
    };

    // Every connection error of either client is the link's latest reason.
    for mut errors in [publisher.error_rx(), subscriber.error_rx()] {
        let last = link.last_error.clone();
        let scrub = scrub.clone();
        tokio::spawn(async move {
            while let Ok((err, _)) = errors.recv().await {
                if let Ok(mut last) = last.lock() {
                    *last = scrub(&err);
                }
            }
        });
    }

    let origin = uuid::Uuid::new_v4().to_string();
    let own = origin.clone();
    let local = hub.clone();
    let connecting = link.clone();
    let (shown_sub, scrub_sub) = (shown.clone(), scrub.clone());
    let sub = publisher.clone();
    tokio::spawn(async move {
        let failed = |what: &'static str| {
            let link = connecting.clone();
            let shown = shown_sub.clone();
            let scrub = scrub_sub.clone();
            let settle = settle.clone();
            move |attempt: u32, err: &fred::error::Error| {
                let _ = settle.send(true);
                let reason = scrub(err);
                if attempt == 1 || attempt.is_multiple_of(20) {
                    tracing::warn!(url = %shown, attempt, error = %reason, "cannot reach Redis for {what} yet; debate events stay on this replica until it answers");
                }
                if let Ok(mut last) = link.last_error.lock() {
                    *last = reason;
                }
            }
        };
        aragora_config::redis::connect_until_up(&sub, RETRY, failed("publishing")).await;
        aragora_config::redis::connect_until_up(&subscriber, RETRY, failed("subscribing")).await;
        // Re-subscribe after every reconnect.
        let _resubscribe = subscriber.manage_subscriptions();
        let mut messages = subscriber.message_rx();
        while let Err(err) = subscriber.subscribe(CHANNEL).await {
            tracing::warn!(error = %scrub_sub(&err), "cannot subscribe to {CHANNEL}; retrying");
            tokio::time::sleep(RETRY).await;
        }
        tracing::info!(url = %shown_sub, "debate events fan out across replicas through Redis");
        let _ = settle.send(true);
        while let Ok(message) = messages.recv().await {
            let Some(text) = message.value.as_str().map(|t| t.to_string()) else {
                continue;
            };
            let Ok(envelope) = serde_json::from_str::<Envelope>(&text) else {
                continue;
            };
            if envelope.origin == own {
                continue;
            }
            if envelope.cancel {
                local.deliver_cancel(&envelope.debate_id);
            } else if let Some(event) = envelope.event {
                let event = PublishedEvent::new(event);
                local.deliver(&envelope.debate_id, HubMessage::Event(Arc::new(event)));
            } else if let Some(delta) = envelope.delta {
                local.deliver(&envelope.debate_id, HubMessage::Delta(delta.into()));
            }
        }
    });

    let (outbox, mut queue) = mpsc::unbounded_channel::<(String, Outgoing)>();
    tokio::spawn(async move {
        // One publisher task keeps a debate's events in order on the channel.
        while let Some((debate_id, outgoing)) = queue.recv().await {
            // Not connected (yet, or again): watchers elsewhere catch up from the store, and
            // health checks already say Redis is down; a warning per event would flood the log.
            if !publisher.is_connected() {
                continue;
            }
            let mut envelope = Envelope {
                origin: origin.clone(),
                debate_id,
                event: None,
                delta: None,
                cancel: false,
            };
            match outgoing {
                Outgoing::Message(HubMessage::Event(event)) => {
                    envelope.event = Some(event.event.clone())
                }
                Outgoing::Message(HubMessage::Delta(delta)) => {
                    envelope.delta = Some(delta.to_string())
                }
                Outgoing::Cancel => envelope.cancel = true,
            }
            let Ok(text) = serde_json::to_string(&envelope) else {
                continue;
            };
            if let Err(err) = publisher.publish::<i64, _, _>(CHANNEL, text).await {
                tracing::warn!(error = %err, "could not publish a debate event to Redis; watchers on other replicas catch up from the store");
            }
        }
    });
    Ok((FanoutSender { outbox }, link))
}
