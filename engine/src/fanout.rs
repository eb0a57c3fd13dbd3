//! Debate events across engine replicas, through Redis pub/sub.
//!
//! Each replica publishes every event it persists (and streamed text) on one channel and
//! forwards what the others publish to its own WebSocket subscribers, so a watcher connected
//! to any replica sees a debate running on another. Delivery needs no guarantee: subscribers
//! skip what they already have and fill gaps from the shared store by seq.

use crate::events::{EventHub, HubMessage, PublishedEvent, Relay};
use crate::model::DebateEvent;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The one channel every replica publishes on.
pub const CHANNEL: &str = "aragora:debate-events";

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    debate_id: String,
    #[serde(default)]
    event: Option<DebateEvent>,
    #[serde(default)]
    delta: Option<String>,
}

/// The publishing side, handed to the hub.
#[derive(Clone)]
pub struct FanoutSender {
    outbox: mpsc::UnboundedSender<(String, HubMessage)>,
}

impl Relay for FanoutSender {
    fn relay(&self, debate_id: &str, message: HubMessage) {
        let _ = self.outbox.send((debate_id.to_string(), message));
    }
}

/// Connects to Redis, starts the publisher and the subscriber, and returns what the hub uses
/// to publish. Errors are logged; Redis reconnects by itself.
pub async fn start(url: &str, hub: EventHub) -> Result<FanoutSender, String> {
    // Messages name the URL without its password, and fred's errors are scrubbed of it.
    let shown = aragora_config::redact_url(url);
    let secrets: Vec<String> = aragora_config::url_password(url)
        .map(str::to_string)
        .into_iter()
        .collect();
    let scrub = |err: fred::error::Error| aragora_config::scrub(&err.to_string(), &secrets);
    let config = Config::from_url(url)
        .map_err(|err| format!("{shown:?} is not a Redis URL: {}", scrub(err)))?;
    let policy = ReconnectPolicy::new_constant(0, 500);
    let publisher = Builder::from_config(config.clone())
        .set_policy(policy.clone())
        .build()
        .map_err(scrub)?;
    let subscriber = Builder::from_config(config)
        .set_policy(policy)
        .build_subscriber_client()
        .map_err(scrub)?;
    publisher
        .init()
        .await
        .map_err(|err| format!("cannot reach Redis at {shown}: {}", scrub(err)))?;
    subscriber
        .init()
        .await
        .map_err(|err| format!("cannot reach Redis at {shown}: {}", scrub(err)))?;
    // Re-subscribe after every reconnect.
    let _resubscribe = subscriber.manage_subscriptions();
    let mut messages = subscriber.message_rx();
    subscriber
        .subscribe(CHANNEL)
        .await
        .map_err(|err| format!("cannot subscribe to {CHANNEL}: {}", scrub(err)))?;
    let origin = uuid::Uuid::new_v4().to_string();

    let own = origin.clone();
    let local = hub.clone();
    tokio::spawn(async move {
        // Keep the subscriber client alive as long as the task runs.
        let _subscriber = subscriber;
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
            if let Some(event) = envelope.event {
                let event = PublishedEvent::new(event);
                local.deliver(&envelope.debate_id, HubMessage::Event(Arc::new(event)));
            } else if let Some(delta) = envelope.delta {
                local.deliver(&envelope.debate_id, HubMessage::Delta(delta.into()));
            }
        }
    });

    let (outbox, mut queue) = mpsc::unbounded_channel::<(String, HubMessage)>();
    tokio::spawn(async move {
        // One publisher task keeps a debate's events in order on the channel.
        while let Some((debate_id, message)) = queue.recv().await {
            let envelope = match message {
                HubMessage::Event(event) => Envelope {
                    origin: origin.clone(),
                    debate_id,
                    event: Some(event.event.clone()),
                    delta: None,
                },
                HubMessage::Delta(delta) => Envelope {
                    origin: origin.clone(),
                    debate_id,
                    event: None,
                    delta: Some(delta.to_string()),
                },
            };
            let Ok(text) = serde_json::to_string(&envelope) else {
                continue;
            };
            if let Err(err) = publisher.publish::<i64, _, _>(CHANNEL, text).await {
                tracing::warn!(error = %err, "could not publish a debate event to Redis; watchers on other replicas catch up from the store");
            }
        }
    });
    tracing::info!(url = %shown, "debate events fan out across replicas through Redis");
    Ok(FanoutSender { outbox })
}
