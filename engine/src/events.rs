//! Live fan-out of debate events to WebSocket subscribers, one broadcast channel per debate.
//!
//! The hub only carries events that are already persisted: a subscriber that misses some (it
//! connected late, or fell behind and lagged) reads them back from the store by seq, so the hub
//! can drop freely without losing anything.
//!
//! Other replicas are reached through a [`Relay`] handed to the hub (`fanout` is the Redis
//! one); the hub knows the seam, not Redis. The same seam carries cancel notices: a replica
//! that recorded a cancel for a debate another replica runs tells the others at once
//! ([`EventHub::announce_cancel`]), so the runner stops it now instead of at its next lease
//! renewal (which still finds the request if a notice is lost).

use crate::model::{format_ms, now_ms, DebateEvent, EventPayload, Phase};
use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;

/// Events a slow subscriber may fall behind by before it must catch up from the store.
const CHANNEL_CAPACITY: usize = 1024;

/// Text on its way to watchers, rendered once: the JSON, and the WebSocket text frame that
/// carries it (header and payload), which every watcher's connection is sent as it is.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: Utf8Bytes,
    pub frame: Bytes,
}

impl Rendered {
    pub fn new(json: String) -> Self {
        let frame = crate::http::ws_wire::text_frame(&json);
        Self {
            json: json.into(),
            frame,
        }
    }
}

impl From<String> for Rendered {
    fn from(json: String) -> Self {
        Self::new(json)
    }
}

impl std::ops::Deref for Rendered {
    type Target = str;

    fn deref(&self) -> &str {
        &self.json
    }
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.json)
    }
}

/// A stored event on its way to watchers, rendered once: a debate with 10,000 watchers would
/// otherwise serialize (and frame) every event 10,000 times. Its frame is a shared,
/// reference-counted buffer written to every watcher, not a copy each.
#[derive(Debug)]
pub struct PublishedEvent {
    pub event: DebateEvent,
    pub json: Utf8Bytes,
    pub frame: Bytes,
}

impl PublishedEvent {
    pub fn new(event: DebateEvent) -> Self {
        let json = serde_json::to_string(&event).expect("an event of plain fields serializes");
        let Rendered { json, frame } = Rendered::new(json);
        Self { event, json, frame }
    }
}

/// What travels on a debate's channel: persisted events, and streamed text that is not
/// persisted (a reconnecting client gets the finished message from the store instead).
#[derive(Debug, Clone)]
pub enum HubMessage {
    Event(Arc<PublishedEvent>),
    /// A `token_delta` message, already rendered as JSON and framed.
    Delta(Rendered),
}

/// Where a hub also sends what it publishes: the other replicas, when fan-out is configured
/// (`fanout` implements it over Redis). The hub knows only this seam, so the relay can depend
/// on the hub and not the reverse.
pub trait Relay: Send + Sync + 'static {
    fn relay(&self, debate_id: &str, message: HubMessage);
    /// Tells the other replicas that a cancel of `debate_id` is recorded in the store.
    fn relay_cancel(&self, debate_id: &str);
}

/// Cancel notices a replica may fall behind by; a lagging listener loses some, and the lease
/// renewal picks those cancels up.
const CANCEL_CAPACITY: usize = 256;

#[derive(Clone)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<HubMessage>>>>,
    /// Other replicas, when Redis fan-out is configured.
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
    /// Cancel notices from other replicas: debate ids.
    cancels: broadcast::Sender<String>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            channels: Arc::default(),
            relay: Arc::default(),
            cancels: broadcast::channel(CANCEL_CAPACITY).0,
        }
    }
}

impl EventHub {
    /// Tells the other replicas (with fan-out) that a cancel of `debate_id` is recorded, for
    /// the one that runs it.
    pub fn announce_cancel(&self, debate_id: &str) {
        if let Some(relay) = self.relay.get() {
            relay.relay_cancel(debate_id);
        }
    }

    /// Hands a cancel notice from another replica to this replica's listeners.
    pub fn deliver_cancel(&self, debate_id: &str) {
        let _ = self.cancels.send(debate_id.to_string());
    }

    /// Cancel notices from other replicas, from now on.
    pub fn cancel_notices(&self) -> broadcast::Receiver<String> {
        self.cancels.subscribe()
    }

    /// Live events of one debate from now on.
    pub fn subscribe(&self, debate_id: &str) -> broadcast::Receiver<HubMessage> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(debate_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Sends this replica's events to the other replicas too, from now on.
    pub fn fan_out(&self, relay: impl Relay) {
        let _ = self.relay.set(Arc::new(relay));
    }

    /// Announces a persisted event to the debate's current subscribers, here and (with
    /// fan-out) on the other replicas.
    pub fn publish(&self, event: DebateEvent) {
        let id = event.debate_id.clone();
        let message = HubMessage::Event(Arc::new(PublishedEvent::new(event)));
        if let Some(relay) = self.relay.get() {
            relay.relay(&id, message.clone());
        }
        self.send(&id, message);
    }

    /// Hands a message from another replica to this replica's subscribers.
    pub fn deliver(&self, debate_id: &str, message: HubMessage) {
        self.send(debate_id, message);
    }

    /// Streams a fragment of a message being written to the debate's subscribers.
    pub fn publish_delta(
        &self,
        debate_id: &str,
        round: i64,
        agent: &str,
        phase: Phase,
        delta: &str,
    ) {
        let has_subscribers = self
            .channels
            .lock()
            .map(|c| c.contains_key(debate_id))
            .unwrap_or(false);
        let relay = self.relay.get();
        if !has_subscribers && relay.is_none() {
            return;
        }
        let (kind, data) = EventPayload::TokenDelta {
            phase,
            delta: delta.to_string(),
        }
        .into_parts();
        let message = json!({
            "type": kind,
            "debate_id": debate_id,
            "seq": null,
            "round": round,
            "agent": agent,
            "data": data,
            "timestamp": format_ms(now_ms()),
        });
        let message = HubMessage::Delta(message.to_string().into());
        if let Some(relay) = relay {
            relay.relay(debate_id, message.clone());
        }
        self.send(debate_id, message);
    }

    fn send(&self, debate_id: &str, message: HubMessage) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(debate_id) {
            if sender.send(message).is_err() {
                channels.remove(debate_id);
            }
        }
    }

    /// Forgets a debate's channel once its last subscriber has gone.
    pub fn release(&self, debate_id: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if channels
            .get(debate_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(debate_id);
        }
    }

    /// Debates with a live channel (for tests and diagnostics).
    pub fn channel_count(&self) -> usize {
        self.channels.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay that keeps what it is given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<(String, HubMessage)>>>);

    impl Relay for Kept {
        fn relay(&self, debate_id: &str, message: HubMessage) {
            self.0
                .lock()
                .unwrap()
                .push((debate_id.to_string(), message));
        }

        fn relay_cancel(&self, _debate_id: &str) {}
    }

    fn round_start(debate_id: &str, seq: i64) -> DebateEvent {
        let payload = EventPayload::RoundStart { round: 1, of: 2 };
        DebateEvent::of(debate_id, seq, Some(1), None, payload, 0)
    }

    #[test]
    fn a_published_event_reaches_its_debates_subscribers_and_the_relay_only() {
        let hub = EventHub::default();
        let relay = Kept::default();
        hub.fan_out(relay.clone());
        let mut watcher = hub.subscribe("d1");
        let mut other = hub.subscribe("d2");

        hub.publish(round_start("d1", 3));

        let HubMessage::Event(published) = watcher.try_recv().unwrap() else {
            panic!("an event arrives as an event");
        };
        assert_eq!(published.event.seq, 3);
        assert_eq!(
            &*published.json,
            serde_json::to_string(&published.event).unwrap()
        );
        assert!(
            other.try_recv().is_err(),
            "another debate's watcher gets nothing"
        );
        let relayed = relay.0.lock().unwrap();
        assert_eq!(relayed.len(), 1);
        assert_eq!(relayed[0].0, "d1");
    }

    #[test]
    fn streamed_text_keeps_its_wire_form_and_is_skipped_with_nobody_listening() {
        let hub = EventHub::default();
        hub.publish_delta("quiet", 1, "a", Phase::Proposal, "unheard");
        assert_eq!(
            hub.channel_count(),
            0,
            "nothing is kept for a debate nobody watches"
        );

        let mut watcher = hub.subscribe("d1");
        hub.publish_delta("d1", 2, "offline-skeptic", Phase::Revision, "Ship ");
        let HubMessage::Delta(json) = watcher.try_recv().unwrap() else {
            panic!("streamed text arrives as a delta");
        };
        let mut message: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(message["timestamp"].as_str().is_some());
        message["timestamp"] = serde_json::Value::Null;
        assert_eq!(
            message.to_string(),
            r#"{"agent":"offline-skeptic","data":{"delta":"Ship ","phase":"revision"},"debate_id":"d1","round":2,"seq":null,"timestamp":null,"type":"token_delta"}"#
        );
    }

    #[test]
    fn a_channel_is_forgotten_once_its_last_subscriber_leaves() {
        let hub = EventHub::default();
        let watcher = hub.subscribe("d1");
        hub.release("d1");
        assert_eq!(hub.channel_count(), 1, "kept while someone watches");
        drop(watcher);
        hub.release("d1");
        assert_eq!(hub.channel_count(), 0);
    }
}
