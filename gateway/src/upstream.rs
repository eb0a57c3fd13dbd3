//! Engine replicas and whether they may get traffic.
//!
//! A replica gets requests only while it is *ready*: a new replica after its first passing
//! `GET /readyz`, a replica that was taken out after `healthy_threshold` consecutive passes. It
//! is taken out after `unhealthy_threshold` consecutive failures, counting both failed checks
//! and connection failures seen while proxying (passive checks), so a killed replica leaves the
//! rotation as fast as traffic notices. A replica that just became ready gets a share of traffic
//! that grows linearly over the slow-start window.
//!
//! Each check's answer also says whether the replica is in maintenance (the engine's `/readyz`
//! field `maintenance`, read from the database all replicas share): while any ready replica
//! says so, the gateway refuses new debates at the edge ([`UpstreamPool::maintenance`]).
//!
//! Upstream names are re-resolved every `dns_refresh_secs`: each address behind a name (a
//! Kubernetes headless service) is its own replica, and health state survives re-resolution.

use arc_swap::ArcSwap;
use prometheus::IntGaugeVec;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Thresholds and timing of readiness decisions.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub slow_start: Duration,
}

#[derive(Debug)]
struct Health {
    /// None until the first check: a replica nobody has checked gets no traffic.
    ready: Option<bool>,
    consecutive_ok: u32,
    consecutive_failures: u32,
    ready_since: Option<Instant>,
    last_error: Option<String>,
}

/// One engine replica.
#[derive(Debug)]
pub struct Replica {
    /// The configured name it came from (`engine-0.engine:8080`).
    pub name: String,
    pub addr: SocketAddr,
    health: Mutex<Health>,
    /// Mirror of `health.ready == Some(true)`, read lock-free on every request.
    ready: AtomicBool,
    pub inflight: AtomicUsize,
    /// The opaque token naming this replica in the `aragora-affinity` cookie, and the whole
    /// `Set-Cookie` value that pins a client to it: made once, not per response.
    pub affinity: String,
    pub pin_cookie: http::HeaderValue,
    /// The maintenance its last passing check reported (None: off, or not said).
    maintenance: Mutex<Option<ReplicaMaintenance>>,
}

/// A replica's report that maintenance mode is on: the message and `Retry-After` its own
/// refusal of a new debate carries, so the edge's refusal says the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaMaintenance {
    pub message: String,
    pub retry_after_seconds: u64,
}

impl ReplicaMaintenance {
    /// What a passing check's body says: `{"maintenance": {"enabled": true, "reason", "retry_after_seconds"}}`.
    /// A body without the field (an engine of an earlier version) means off.
    pub fn from_ready_body(body: &[u8]) -> Option<Self> {
        let body: serde_json::Value = serde_json::from_slice(body).ok()?;
        let maintenance = body.get("maintenance")?;
        if maintenance.get("enabled")? != &serde_json::Value::Bool(true) {
            return None;
        }
        let message = maintenance
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("maintenance: new debates are refused; reads and running debates continue")
            .chars()
            .take(300)
            .collect();
        let retry_after_seconds = maintenance
            .get("retry_after_seconds")
            .and_then(|r| r.as_u64())
            .unwrap_or(60)
            .clamp(1, 86_400);
        Some(Self {
            message,
            retry_after_seconds,
        })
    }
}

/// What `/api/system/upstreams` shows for a replica.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplicaView {
    pub name: String,
    pub addr: String,
    pub ready: bool,
    pub checked: bool,
    pub consecutive_ok: u32,
    pub consecutive_failures: u32,
    pub ready_for_seconds: Option<f64>,
    /// Share of a full weight while slow-starting (1.0 when done).
    pub weight: f64,
    pub inflight: usize,
    pub last_error: Option<String>,
}

impl Replica {
    fn new(name: &str, addr: SocketAddr) -> Self {
        let affinity = affinity_token(addr);
        Self {
            name: name.to_string(),
            addr,
            health: Mutex::new(Health {
                ready: None,
                consecutive_ok: 0,
                consecutive_failures: 0,
                ready_since: None,
                last_error: None,
            }),
            ready: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            maintenance: Mutex::new(None),
            pin_cookie: pin_cookie(&affinity),
            affinity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Takes the maintenance a passing check reported.
    pub fn set_maintenance(&self, report: Option<ReplicaMaintenance>) {
        let mut current = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        if *current != report {
            tracing::warn!(upstream = %self.addr, maintenance = report.is_some(), "replica reports a maintenance change");
            *current = report;
        }
    }

    fn maintenance(&self) -> Option<ReplicaMaintenance> {
        self.maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Traffic weight in (0, 1]: ramps up over the slow-start window after becoming ready.
    fn weight(&self, slow_start: Duration) -> f64 {
        if !self.is_ready() {
            return 0.0;
        }
        if slow_start.is_zero() {
            return 1.0;
        }
        let health = self.lock();
        match (health.ready, health.ready_since) {
            (Some(true), Some(since)) if !slow_start.is_zero() => {
                (since.elapsed().as_secs_f64() / slow_start.as_secs_f64()).clamp(0.05, 1.0)
            }
            (Some(true), _) => 1.0,
            _ => 0.0,
        }
    }

    fn label(&self) -> String {
        self.addr.to_string()
    }
}

/// The replicas the gateway routes to.
pub struct UpstreamPool {
    names: RwLock<Vec<String>>,
    replicas: ArcSwap<Vec<Arc<Replica>>>,
    /// Ketama ring over every known replica (ready or not): a debate's replica changes only
    /// when its own replica leaves, so removing one remaps only its share.
    ring: ArcSwap<Option<pingora_ketama::Continuum>>,
    policy: RwLock<HealthPolicy>,
    ready_gauge: IntGaugeVec,
    /// One resolution at a time: a reload and the periodic refresh must not interleave, or the
    /// older answer could replace the newer.
    resolving: tokio::sync::Mutex<()>,
}

impl UpstreamPool {
    pub fn new(names: Vec<String>, policy: HealthPolicy, ready_gauge: IntGaugeVec) -> Self {
        Self {
            names: RwLock::new(names),
            replicas: ArcSwap::default(),
            ring: ArcSwap::default(),
            policy: RwLock::new(policy),
            ready_gauge,
            resolving: tokio::sync::Mutex::new(()),
        }
    }

    fn policy(&self) -> HealthPolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes new upstream names and thresholds (a reload); replicas whose address remains keep
    /// their health. Call [`resolve`](Self::resolve) after.
    pub fn reconfigure(&self, names: Vec<String>, policy: HealthPolicy) {
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    pub fn replicas(&self) -> Arc<Vec<Arc<Replica>>> {
        self.replicas.load_full()
    }

    /// Re-resolves every upstream name; keeps the health of addresses that remain.
    pub async fn resolve(&self) {
        let _one_at_a_time = self.resolving.lock().await;
        let mut resolved: Vec<(String, SocketAddr)> = Vec::new();
        let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
        for name in &names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => {
                    let mut addrs: Vec<SocketAddr> = addrs.collect();
                    addrs.sort();
                    addrs.dedup();
                    resolved.extend(addrs.into_iter().map(|addr| (name.clone(), addr)));
                }
                Err(err) => {
                    tracing::warn!(upstream = %name, error = %err, "cannot resolve upstream; keeping its last known addresses");
                    resolved.extend(
                        self.replicas()
                            .iter()
                            .filter(|r| &r.name == name)
                            .map(|r| (name.clone(), r.addr)),
                    );
                }
            }
        }
        let current = self.replicas();
        let next: Vec<Arc<Replica>> = resolved
            .iter()
            .map(|(name, addr)| {
                current
                    .iter()
                    .find(|r| r.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Replica::new(name, *addr)))
            })
            .collect();
        for gone in current
            .iter()
            .filter(|r| !next.iter().any(|n| n.addr == r.addr))
        {
            tracing::info!(upstream = %gone.addr, "replica no longer resolves; removed");
            let _ = self.ready_gauge.remove_label_values(&[&gone.label()]);
        }
        for replica in &next {
            self.ready_gauge
                .with_label_values(&[&replica.label()])
                .set(i64::from(replica.is_ready()));
        }
        let same_set = {
            let current = self.replicas.load();
            current.len() == next.len() && current.iter().zip(&next).all(|(a, b)| a.addr == b.addr)
        };
        if !same_set || self.ring.load().is_none() {
            let buckets: Vec<pingora_ketama::Bucket> = next
                .iter()
                .map(|r| pingora_ketama::Bucket::new(r.addr, 1))
                .collect();
            self.ring.store(Arc::new(
                (!buckets.is_empty()).then(|| pingora_ketama::Continuum::new(&buckets)),
            ));
        }
        self.replicas.store(Arc::new(next));
    }

    /// Records a health observation: an active check, or a connection failure while proxying.
    pub fn observe(&self, replica: &Replica, ok: bool, error: Option<String>) {
        let policy = self.policy();
        let (changed_to, first_failure) = {
            let mut health = replica.lock();
            if ok {
                health.consecutive_ok += 1;
                health.consecutive_failures = 0;
            } else {
                health.consecutive_failures += 1;
                health.consecutive_ok = 0;
                health.last_error = error;
            }
            let next = match health.ready {
                // A new replica serves after its first pass; until then it stays unchecked
                // (no traffic), not "taken out" (which would ask for `healthy_threshold` passes).
                None if ok => Some(true),
                None => None,
                Some(true) if health.consecutive_failures >= policy.unhealthy_threshold => {
                    Some(false)
                }
                Some(false) if health.consecutive_ok >= policy.healthy_threshold => Some(true),
                same => same,
            };
            let changed = next != health.ready;
            health.ready = next;
            replica.ready.store(next == Some(true), Ordering::Relaxed);
            if changed && next == Some(true) {
                health.ready_since = Some(Instant::now());
            }
            let first_failure = next.is_none() && health.consecutive_failures == 1;
            (changed.then_some(next == Some(true)), first_failure)
        };
        if first_failure {
            tracing::info!(upstream = %replica.addr, error = ?replica.lock().last_error, "replica not ready yet; no traffic until its first passing check");
        }
        if let Some(ready) = changed_to {
            self.ready_gauge
                .with_label_values(&[&replica.label()])
                .set(i64::from(ready));
            if ready {
                tracing::info!(upstream = %replica.addr, "replica is ready; routing to it");
            } else {
                tracing::warn!(upstream = %replica.addr, error = ?replica.lock().last_error, "replica taken out of rotation");
            }
        }
    }

    /// A connection to `addr` failed while proxying.
    pub fn observe_failure(&self, addr: SocketAddr, error: String) {
        if let Some(replica) = self.replicas().iter().find(|r| r.addr == addr) {
            self.observe(replica, false, Some(error));
        }
    }

    /// The maintenance a ready replica reports, if any does. Replicas share one database, so
    /// one report holds for all; a replica that is not ready is not asked.
    pub fn maintenance(&self) -> Option<ReplicaMaintenance> {
        self.replicas
            .load()
            .iter()
            .filter(|r| r.is_ready())
            .find_map(|r| r.maintenance())
    }

    pub fn any_ready(&self) -> bool {
        self.replicas.load().iter().any(|r| r.is_ready())
    }

    /// Picks a ready replica not in `exclude`, at random weighted by slow start, preferring the
    /// less loaded of two draws (power of two choices).
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<Arc<Replica>> {
        // On every request: no allocation, and locks only while a replica slow-starts.
        let slow_start = self.policy().slow_start;
        let replicas = self.replicas.load();
        let weight = |r: &Replica| {
            if exclude.contains(&r.addr) {
                0.0
            } else {
                r.weight(slow_start)
            }
        };
        let total: f64 = replicas.iter().map(|r| weight(r)).sum();
        if total <= 0.0 {
            return None;
        }
        let draw = || {
            let mut point = rand::random::<f64>() * total;
            let mut last = None;
            for replica in replicas.iter() {
                let w = weight(replica);
                if w <= 0.0 {
                    continue;
                }
                if point < w {
                    return Some(replica.clone());
                }
                point -= w;
                last = Some(replica);
            }
            // Rounding, or readiness changed since `total` was summed: the last eligible one,
            // and never a replica that is not ready or was already tried.
            last.cloned()
        };
        let load = |r: &Replica| r.inflight.load(Ordering::Relaxed);
        match (draw(), draw()) {
            (Some(first), Some(second)) if load(&second) < load(&first) => Some(second),
            (Some(first), _) => Some(first),
            (None, second) => second,
        }
    }

    /// The ready replica owning `key` on the consistent-hash ring (skipping `exclude`).
    pub fn select_by_key(&self, key: &str, exclude: &[SocketAddr]) -> Option<Arc<Replica>> {
        let ring = self.ring.load();
        let ring = ring.as_ref().as_ref()?;
        let replicas = self.replicas.load();
        for addr in ring.node_iter(key.as_bytes()).take(replicas.len() * 4) {
            if let Some(replica) = replicas.iter().find(|r| r.addr == *addr) {
                if replica.is_ready() && !exclude.contains(&replica.addr) {
                    return Some(replica.clone());
                }
            }
        }
        None
    }

    /// The ready replica an affinity token names, if any.
    pub fn select_by_token(&self, token: &str, exclude: &[SocketAddr]) -> Option<Arc<Replica>> {
        self.replicas
            .load()
            .iter()
            .find(|r| r.affinity == token && r.is_ready() && !exclude.contains(&r.addr))
            .cloned()
    }

    pub fn views(&self) -> Vec<ReplicaView> {
        self.replicas()
            .iter()
            .map(|replica| {
                let weight = replica.weight(self.policy().slow_start);
                let health = replica.lock();
                ReplicaView {
                    name: replica.name.clone(),
                    addr: replica.addr.to_string(),
                    ready: health.ready == Some(true),
                    checked: health.ready.is_some(),
                    consecutive_ok: health.consecutive_ok,
                    consecutive_failures: health.consecutive_failures,
                    ready_for_seconds: health
                        .ready_since
                        .filter(|_| health.ready == Some(true))
                        .map(|since| since.elapsed().as_secs_f64()),
                    weight,
                    inflight: replica.inflight.load(Ordering::Relaxed),
                    last_error: health.last_error.clone(),
                }
            })
            .collect()
    }
}

/// The opaque name of a replica in the `aragora-affinity` cookie (no address leaks out).
/// `Set-Cookie` value pinning a client to the replica its `token` names (HttpOnly, Secure,
/// Lax, 30 min).
fn pin_cookie(token: &str) -> http::HeaderValue {
    let cookie =
        format!("{AFFINITY_COOKIE}={token}; Path=/; Max-Age=1800; HttpOnly; Secure; SameSite=Lax");
    http::HeaderValue::from_str(&cookie).expect("a cookie of hex digits is a valid header")
}

/// Cookie naming the replica a client is pinned to.
pub const AFFINITY_COOKIE: &str = "aragora-affinity";

fn affinity_token(addr: SocketAddr) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in addr.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(slow_start: Duration) -> (UpstreamPool, Arc<Replica>, Arc<Replica>) {
        let gauge = IntGaugeVec::new(prometheus::Opts::new("g", "g"), &["upstream"]).unwrap();
        let pool = UpstreamPool::new(
            vec![],
            HealthPolicy {
                unhealthy_threshold: 3,
                healthy_threshold: 2,
                slow_start,
            },
            gauge,
        );
        let a = Arc::new(Replica::new("a", "127.0.0.1:1".parse().unwrap()));
        let b = Arc::new(Replica::new("b", "127.0.0.1:2".parse().unwrap()));
        pool.replicas.store(Arc::new(vec![a.clone(), b.clone()]));
        (pool, a, b)
    }

    #[test]
    fn unchecked_replicas_get_nothing_and_thresholds_apply() {
        let (pool, a, b) = pool(Duration::ZERO);
        assert!(pool.select(&[]).is_none(), "nobody checked yet");
        pool.observe(&a, true, None);
        assert_eq!(
            pool.select(&[]).unwrap().addr,
            a.addr,
            "one pass makes a new replica ready"
        );
        pool.observe(&b, false, Some("down".into()));
        for _ in 0..2 {
            pool.observe(&a, false, None);
            assert!(a.is_ready(), "two failures are not enough");
        }
        pool.observe(&a, false, None);
        assert!(!a.is_ready());
        pool.observe(&a, true, None);
        assert!(!a.is_ready(), "one pass is not enough to come back");
        pool.observe(&a, true, None);
        assert!(a.is_ready());
        assert!(
            pool.select(&[a.addr]).is_none(),
            "b is not ready and a is excluded"
        );
    }

    #[test]
    fn a_replica_that_failed_before_its_first_pass_serves_after_that_pass() {
        let (pool, a, _) = pool(Duration::ZERO);
        for _ in 0..5 {
            pool.observe(&a, false, Some("starting".into()));
        }
        assert!(!a.is_ready());
        assert!(
            pool.select(&[]).is_none(),
            "a failing new replica gets nothing"
        );
        pool.observe(&a, true, None);
        assert!(
            a.is_ready(),
            "its first pass brings it in, like any new replica"
        );
        assert_eq!(pool.select(&[]).unwrap().addr, a.addr);
        assert!(pool.select(&[a.addr]).is_none(), "never a tried replica");
    }

    #[test]
    fn a_ready_replicas_maintenance_report_refuses_for_all_and_a_not_ready_ones_does_not() {
        let on = br#"{"status": "ready", "maintenance": {"enabled": true, "reason": "maintenance: upgrade", "retry_after_seconds": 120}}"#;
        let report = ReplicaMaintenance::from_ready_body(on).unwrap();
        assert_eq!(report.message, "maintenance: upgrade");
        assert_eq!(report.retry_after_seconds, 120);
        for off in [
            &br#"{"status": "ready"}"#[..],
            br#"{"status": "ready", "maintenance": {"enabled": false}}"#,
            b"not json",
        ] {
            assert_eq!(ReplicaMaintenance::from_ready_body(off), None);
        }

        let (pool, a, b) = pool(Duration::ZERO);
        pool.observe(&b, true, None);
        a.set_maintenance(Some(report.clone()));
        assert_eq!(
            pool.maintenance(),
            None,
            "a is not ready: its word does not count"
        );
        pool.observe(&a, true, None);
        assert_eq!(pool.maintenance(), Some(report));
        a.set_maintenance(None);
        assert_eq!(pool.maintenance(), None);
    }

    #[test]
    fn slow_start_gives_a_new_replica_a_small_share() {
        let (pool, a, b) = pool(Duration::from_secs(3600));
        pool.observe(&a, true, None);
        a.lock().ready_since = Some(Instant::now() - Duration::from_secs(3600));
        pool.observe(&b, true, None);
        let picks_b = (0..2000)
            .filter(|_| pool.select(&[]).unwrap().addr == b.addr)
            .count();
        assert!(
            picks_b < 200,
            "b just became ready, yet got {picks_b} of 2000"
        );
    }
}
