//! Live fan-out of debate events to WebSocket subscribers, one broadcast channel per debate.
//!
//! The hub only carries events that are already persisted: a subscriber that misses some (it
//! connected late, or fell behind and lagged) reads them back from the store by seq, so the hub
//! can drop freely without losing anything.

use crate::model::DebateEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events a slow subscriber may fall behind by before it must catch up from the store.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<DebateEvent>>>>>,
}

impl EventHub {
    /// Live events of one debate from now on.
    pub fn subscribe(&self, debate_id: &str) -> broadcast::Receiver<Arc<DebateEvent>> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(debate_id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Announces a persisted event to the debate's current subscribers, if any.
    pub fn publish(&self, event: DebateEvent) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(&event.debate_id) {
            if sender.send(Arc::new(event.clone())).is_err() {
                channels.remove(&event.debate_id);
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
