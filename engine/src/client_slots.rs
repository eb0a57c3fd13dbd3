//! Per-client counts shared by the engine replicas through Redis: how many WebSockets a client
//! holds open and how many debates it has queued or running, on every replica together, so
//! that `ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT` and `ARAGORA_DEBATE_QUEUE_PER_CLIENT` hold
//! across N replicas instead of allowing N times as much (`http::limits` says what is limited).
//!
//! **Leases, not counters.** Each slot a client holds is a member of a sorted set per client
//! and limit (`<ARAGORA_CLIENT_LIMIT_KEY_PREFIX><limit>:<subject>`), scored with the Redis time
//! its lease ends. A Lua script takes a slot atomically (drop expired members, count, add) on
//! Redis' own clock, so two replicas cannot both take the last one and their clocks do not
//! matter. The replica renews the leases of what it holds every third of
//! `ARAGORA_CLIENT_LIMIT_LEASE_SECS` and removes a slot when it is given back; a replica that
//! dies stops renewing, and its clients' slots expire within the lease. A WebSocket's member is
//! this replica's id and a sequence number; a debate's is the debate's id, so a debate adopted
//! by another replica stays one slot (the adopter renews it from then on).
//!
//! **Redis down is not everyone refused.** When Redis is not connected, or does not answer
//! within [`CALL_TIMEOUT`], the decision falls back to this replica's own count (a warning when
//! it starts and when it ends, `aragora_client_limits_shared` 0). Slots taken meanwhile are
//! renewed into Redis once it answers again, so the shared count catches up with them.
//! Without `ARAGORA_REDIS_URL` the counts are this replica's, as before.

use fred::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one call to Redis may take before the decision is made locally: an upgrade or a
/// new debate must not wait on a Redis that hangs.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// Drops expired leases, then adds `ARGV[3]` leased for `ARGV[2]` ms if fewer than `ARGV[1]`
/// are held. Returns {1, held after} or {0, held}.
const TAKE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  return {1, held}
end
if held >= tonumber(ARGV[1]) then
  return {0, held}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return {1, held + 1}
"#;

/// Renews the members `ARGV[3..]` for `ARGV[1]` ms: only those still there when `ARGV[2]` is
/// `XX` (a slot given back meanwhile is not brought back), all of them after Redis was away.
const RENEW_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 3, #ARGV do
  if ARGV[2] == 'XX' then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
  else
    redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return #ARGV - 2
"#;

/// [`Shared::up`] before Redis was first asked.
const UNKNOWN: u8 = 2;

/// Gives the slot `ARGV[1]` back.
const RELEASE_SCRIPT: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/// Where a decision was made, for the refusal's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Counted across the replicas sharing Redis.
    Replicas,
    /// Counted on this replica alone (no Redis configured, or it did not answer).
    ThisReplica,
}

impl Scope {
    /// How a message says where the count was taken.
    pub fn phrase(self) -> &'static str {
        match self {
            Scope::Replicas => "across the engine replicas",
            Scope::ThisReplica => "on this replica",
        }
    }
}

/// A refusal: the client holds `held` already, counted where `scope` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub held: usize,
    pub scope: Scope,
}

/// The replicas' shared counts, or this replica's alone.
#[derive(Clone)]
pub struct ClientSlots {
    shared: Option<Arc<Shared>>,
    /// 1 while decisions are made through Redis (`aragora_client_limits_shared`).
    gauge: prometheus::IntGauge,
}

struct Shared {
    client: Client,
    prefix: String,
    lease: Duration,
    /// This replica's WebSocket members are `<replica>:<n>`.
    replica: String,
    next: AtomicU64,
    /// What this replica holds: key → member → holders here (a debate's member may be held
    /// twice for a moment: by its admission and by its task).
    held: Mutex<HashMap<String, HashMap<String, usize>>>,
    /// Whether the last call reached Redis ([`UNKNOWN`] before the first), so the fallback is
    /// announced once each way.
    up: AtomicU8,
    /// Set while Redis was away: the next renewal re-adds every slot held here (some were
    /// taken while it could not be told).
    readd: AtomicBool,
}

impl std::fmt::Debug for ClientSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSlots")
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl ClientSlots {
    /// This replica's counts alone (no Redis configured).
    pub fn local(gauge: prometheus::IntGauge) -> Self {
        Self {
            shared: None,
            gauge,
        }
    }

    /// Counts shared through `client` (connected elsewhere, see `fanout`), keys under
    /// `prefix`, leases of `lease`; renews what this replica holds in the background.
    pub fn shared(
        client: Client,
        prefix: &str,
        lease: Duration,
        replica: &str,
        gauge: prometheus::IntGauge,
    ) -> Self {
        gauge.set(0);
        let shared = Arc::new(Shared {
            client,
            prefix: prefix.to_string(),
            lease,
            replica: replica.to_string(),
            next: AtomicU64::new(0),
            held: Mutex::default(),
            up: AtomicU8::new(UNKNOWN),
            readd: AtomicBool::new(false),
        });
        let slots = Self {
            shared: Some(shared.clone()),
            gauge,
        };
        let renewing = slots.clone();
        let every = (lease / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                renewing.renew().await;
            }
        });
        slots
    }

    /// A slot for `subject` under `limit` (a `ClientLimit` label) if it holds fewer than
    /// `max`: counted across the replicas when Redis answers, else by `held_here` (what this
    /// replica counts, the new one excluded). A debate names itself as `member`; a WebSocket
    /// gets a member of its own. The slot is given back when the [`Slot`] drops.
    pub async fn take(
        &self,
        limit: &'static str,
        subject: &str,
        member: Option<&str>,
        max: usize,
        held_here: usize,
    ) -> Result<Slot, Refused> {
        let local = |slot: Slot| {
            if held_here < max {
                Ok(slot)
            } else {
                Err(Refused {
                    held: held_here,
                    scope: Scope::ThisReplica,
                })
            }
        };
        let Some(shared) = &self.shared else {
            return local(Slot { held: None });
        };
        let key = format!("{}{limit}:{subject}", shared.prefix);
        let member = match member {
            Some(member) => member.to_string(),
            None => format!(
                "{}:{}",
                shared.replica,
                shared.next.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let outcome = if shared.client.is_connected() {
            let call = shared.client.eval::<Vec<i64>, _, _, _>(
                TAKE_SCRIPT,
                vec![key.clone()],
                vec![
                    max.to_string(),
                    shared.lease.as_millis().to_string(),
                    member.clone(),
                ],
            );
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(reply)) if reply.len() == 2 => Ok((reply[0] == 1, reply[1].max(0) as usize)),
                Ok(Ok(reply)) => Err(format!("unexpected reply {reply:?}")),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
            }
        } else {
            Err("not connected".to_string())
        };
        match outcome {
            Ok((taken, held)) => {
                self.mark(true, None);
                if !taken {
                    return Err(Refused {
                        held,
                        scope: Scope::Replicas,
                    });
                }
                Ok(self.hold(shared, key, member))
            }
            Err(reason) => {
                self.mark(false, Some(&reason));
                // Held here and renewed into Redis once it answers again.
                local(self.hold(shared, key, member))
            }
        }
    }

    /// Holds `subject`'s slot `member` under `limit` without asking (a debate this replica
    /// resumes or adopts: it is the client's already); renewed into Redis from the next pass.
    pub fn hold_existing(&self, limit: &'static str, subject: &str, member: &str) -> Slot {
        match &self.shared {
            Some(shared) => {
                let key = format!("{}{limit}:{subject}", shared.prefix);
                self.hold(shared, key, member.to_string())
            }
            None => Slot { held: None },
        }
    }

    fn hold(&self, shared: &Arc<Shared>, key: String, member: String) -> Slot {
        *shared
            .lock()
            .entry(key.clone())
            .or_default()
            .entry(member.clone())
            .or_default() += 1;
        Slot {
            held: Some((shared.clone(), key, member)),
        }
    }

    /// Renews every lease this replica holds (one script per client and limit).
    async fn renew(&self) {
        let Some(shared) = &self.shared else { return };
        let batches: Vec<(String, Vec<String>)> = shared
            .lock()
            .iter()
            .map(|(key, members)| (key.clone(), members.keys().cloned().collect()))
            .collect();
        if !shared.client.is_connected() {
            self.mark(false, Some("not connected"));
            return;
        }
        if batches.is_empty() {
            // Nothing to renew: connected is the best there is to go by until the next take.
            return self.mark(true, None);
        }
        let readd = shared.readd.swap(false, Ordering::Relaxed);
        let mode = if readd { "ALL" } else { "XX" };
        for (key, members) in batches {
            let mut args = vec![shared.lease.as_millis().to_string(), mode.to_string()];
            args.extend(members);
            let call = shared
                .client
                .eval::<i64, _, _, _>(RENEW_SCRIPT, vec![key], args);
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(_)) => self.mark(true, None),
                Ok(Err(err)) => return self.mark(false, Some(&err.to_string())),
                Err(_) => return self.mark(false, Some("no answer in time")),
            }
        }
    }

    /// Records whether Redis answered; a change is logged once and shown on the gauge.
    fn mark(&self, up: bool, error: Option<&str>) {
        let Some(shared) = &self.shared else { return };
        self.gauge.set(i64::from(up));
        if !up {
            shared.readd.store(true, Ordering::Relaxed);
        }
        if shared.up.swap(u8::from(up), Ordering::Relaxed) == u8::from(up) {
            return;
        }
        if up {
            tracing::info!(
                "Redis answers: per-client limits (WebSockets, debates) are counted across the engine replicas"
            );
        } else {
            tracing::warn!(
                error = error.unwrap_or(""),
                "Redis does not answer: per-client limits (WebSockets, debates) are counted on this replica alone until it does (a client may hold up to the limit on each replica meanwhile)"
            );
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, usize>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One slot of a client, given back (and removed from Redis) when dropped.
#[derive(Default)]
pub struct Slot {
    held: Option<(Arc<Shared>, String, String)>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("shared", &self.held.is_some())
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((shared, key, member)) = self.held.take() else {
            return;
        };
        let last = {
            let mut held = shared.lock();
            let Some(members) = held.get_mut(&key) else {
                return;
            };
            let count = members.entry(member.clone()).or_default();
            *count = count.saturating_sub(1);
            let last = *count == 0;
            if last {
                members.remove(&member);
                if members.is_empty() {
                    held.remove(&key);
                }
            }
            last
        };
        if !last || !shared.client.is_connected() {
            // Not reachable now: the lease, no longer renewed, expires by itself.
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let call =
                    shared
                        .client
                        .eval::<i64, _, _, _>(RELEASE_SCRIPT, vec![key], vec![member]);
                let _ = tokio::time::timeout(CALL_TIMEOUT, call).await;
            });
        }
    }
}
