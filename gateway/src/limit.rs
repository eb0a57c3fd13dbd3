//! Rate limiting per client, on this gateway (GCRA, the generic cell rate algorithm, whose
//! arithmetic is [`aragora_gcra`]'s: the engine's WebSocket message allowance is the same).
//!
//! A client (as the `client` module identifies it) may send `rate_per_minute` requests per minute
//! on average and up to `burst` at once; a route may have its own limit
//! (`ARAGORA_RATE_LIMIT_ROUTES`), and allow-listed clients none. [`decide`] is the whole
//! decision, returning a [`Verdict`]; every answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`, and a refused request gets 429 with
//! `Retry-After` (worded by the `refusal` module).
//!
//! With Redis configured, [`SharedLimiter`] makes the limit one across all gateway replicas;
//! the local limiter stays in front of it.

use crate::parsed::Entry;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use aragora_gcra::Decision;
use aragora_gcra::Gcra;

/// Locks the clients' buckets are spread over: every worker thread takes one per request, and
/// behind a single lock they queued on each other.
const SHARDS: usize = 16;

pub struct RateLimiter {
    gcra: Gcra,
    started: Instant,
    /// Theoretical arrival time per client, in seconds since `started`; a client's bucket is
    /// in the shard of its address ([`shard_of`]).
    buckets: [Mutex<HashMap<IpAddr, f64>>; SHARDS],
}

/// The shard of a client: its address' bits mixed (a multiplicative hash), so neighbouring
/// addresses spread. Only where a bucket lives, never what it holds: the maps keep their
/// keyed hashing.
fn shard_of(client: &IpAddr) -> usize {
    let bits = match client {
        IpAddr::V4(v4) => u64::from(u32::from(*v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(*v6);
            (bits as u64) ^ ((bits >> 64) as u64)
        }
    };
    (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

impl RateLimiter {
    /// `None` when `rate_per_minute` is 0 (limiting off).
    pub fn new(rate_per_minute: u64, burst: u64) -> Option<Self> {
        Gcra::per_minute(rate_per_minute, burst).map(|gcra| Self {
            gcra,
            started: Instant::now(),
            buckets: Default::default(),
        })
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn check(&self, client: IpAddr) -> Decision {
        self.check_at(client, self.now())
    }

    fn check_at(&self, client: IpAddr, now: f64) -> Decision {
        let mut buckets = self.buckets[shard_of(&client)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // One lookup: a client seen for the first time is always admitted, so its entry is
        // inserted either way.
        self.gcra.check(buckets.entry(client).or_insert(now), now)
    }

    /// Forgets clients whose allowance is whole again (called periodically, bounds memory).
    pub fn sweep(&self) -> usize {
        self.sweep_at(self.now())
    }

    fn sweep_at(&self, now: f64) -> usize {
        self.buckets
            .iter()
            .map(|shard| {
                let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
                buckets.retain(|_, tat| !Gcra::is_whole(*tat, now));
                buckets.len()
            })
            .sum()
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.gcra.window_secs())
    }

    /// The average rate this limiter admits.
    pub fn per_minute(&self) -> u64 {
        self.gcra.per_minute_rate()
    }

    pub fn burst(&self) -> u64 {
        self.gcra.burst()
    }
}

/// A stricter (or looser) limit for one route: `POST /api/debates=10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    pub method: String,
    pub route: &'static str,
    pub per_minute: u64,
}

/// An `ARAGORA_RATE_LIMIT_ROUTES` entry: `METHOD /route/template=N`.
impl Entry for RouteLimit {
    fn parse(entry: &str) -> Result<Self, String> {
        let hint =
            || format!("{entry:?} is not METHOD /route=N (for example \"POST /api/debates=10\")");
        let (target, rate) = entry.rsplit_once('=').ok_or_else(hint)?;
        let (method, route) = target.trim().split_once(' ').ok_or_else(hint)?;
        let per_minute: u64 = rate.trim().parse().map_err(|_| hint())?;
        let route = route.trim();
        let template = crate::parsed::known_route(route, &[])?;
        Ok(RouteLimit {
            method: method.trim().to_ascii_uppercase(),
            route: template,
            per_minute,
        })
    }
}

/// Rate limiting as configured: the default limiter (None when off), the routes' own, and the
/// clients never limited. Rebuilt when a reload changes them.
pub struct Limits {
    pub limiter: Option<RateLimiter>,
    /// Per-route limiters, by (method, route template), replacing the default there.
    pub routes: Vec<(RouteLimit, Option<RateLimiter>)>,
    allow: Vec<IpNet>,
    /// Refusals per client, for the admin listener's top list (bounded).
    refused: Mutex<HashMap<IpAddr, u64>>,
}

/// Clients whose refusals are remembered for `/api/system/rate-limits`.
const REFUSED_CLIENTS_KEPT: usize = 10_000;

impl Limits {
    /// `per_minute` 0 turns the default limit off; a route's 0 turns limiting off there.
    pub fn new(per_minute: u64, burst: u64, routes: &[RouteLimit], allow: &[IpNet]) -> Self {
        let routes = routes
            .iter()
            .map(|route| {
                let limiter = RateLimiter::new(route.per_minute, route.per_minute);
                (route.clone(), limiter)
            })
            .collect();
        Self {
            limiter: RateLimiter::new(per_minute, burst),
            routes,
            allow: allow.to_vec(),
            refused: Mutex::default(),
        }
    }

    /// The limiter for a request (the route's own if configured, else the default) and
    /// whether it is a route's.
    fn limiter_for(&self, method: &str, route: &str) -> Option<(&RateLimiter, bool)> {
        match self
            .routes
            .iter()
            .find(|(r, _)| r.method == method && r.route == route)
        {
            Some((_, limiter)) => limiter.as_ref().map(|l| (l, true)),
            None => self.limiter.as_ref().map(|l| (l, false)),
        }
    }

    fn note_refusal(&self, client: IpAddr) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() < REFUSED_CLIENTS_KEPT || refused.contains_key(&client) {
            *refused.entry(client).or_default() += 1;
        }
    }

    /// The clients refused most, most first.
    pub fn top_refused(&self, count: usize) -> Vec<(IpAddr, u64)> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let mut top: Vec<(IpAddr, u64)> = refused.iter().map(|(ip, n)| (*ip, *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(count);
        top
    }

    pub fn sweep(&self) {
        for limiter in self
            .limiter
            .iter()
            .chain(self.routes.iter().filter_map(|(_, l)| l.as_ref()))
        {
            limiter.sweep();
        }
    }
}

/// What the rate limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// No limit applies: limiting is off for the route, or the client is on the allow list.
    Unlimited,
    /// Within the limit.
    Allowed(Decision),
    /// Over the limit of `per_minute`; `retry_after_secs` says when to come back.
    OverLimit { decision: Decision, per_minute: u64 },
    /// Within this gateway's limit, but Redis does not answer and
    /// `ARAGORA_RATE_LIMIT_FAIL_OPEN` is false, so the shared limit cannot vouch for it.
    Unverified(Decision),
}

impl Verdict {
    /// The decision the `RateLimit-*` headers report.
    pub fn decision(&self) -> Option<Decision> {
        match *self {
            Verdict::Unlimited => None,
            Verdict::Allowed(decision)
            | Verdict::OverLimit { decision, .. }
            | Verdict::Unverified(decision) => Some(decision),
        }
    }

    pub fn refused(&self) -> bool {
        matches!(self, Verdict::OverLimit { .. } | Verdict::Unverified(_))
    }
}

/// The rate limit's verdict on a request of `client` to `method route`: the route's own limit
/// or the default, this gateway's GCRA first, then the one shared through Redis (asked only
/// about requests the local one lets through). Redis not answering falls back to the local
/// decision, or refuses when fail-open is off. Refusals are counted per client.
pub async fn decide(
    limits: &Limits,
    shared: Option<&SharedLimiter>,
    client: IpAddr,
    method: &str,
    route: &str,
) -> Verdict {
    let Some((limiter, per_route)) = limits.limiter_for(method, route) else {
        return Verdict::Unlimited;
    };
    if crate::parsed::contains(&limits.allow, &client) {
        return Verdict::Unlimited;
    }
    let judged = |decision: Decision| {
        if decision.allowed {
            Verdict::Allowed(decision)
        } else {
            Verdict::OverLimit {
                decision,
                per_minute: limiter.per_minute(),
            }
        }
    };
    let local = limiter.check(client);
    let verdict = match shared.filter(|_| local.allowed) {
        None => judged(local),
        Some(redis) => {
            // A route's limit has its own buckets, apart from the default's.
            let key = if per_route {
                format!("{method} {route} {client}")
            } else {
                client.to_string()
            };
            // Boxed: the Redis round trip's future is large, and only this branch needs it;
            // inline it would make every request's future (and the task each HTTP/2 stream
            // is spawned as) that much larger to create and move.
            match Box::pin(redis.check(&key, limiter.per_minute(), limiter.burst())).await {
                Some(decision) => judged(decision),
                None if redis.fail_open() => Verdict::Allowed(local),
                None => Verdict::Unverified(local),
            }
        }
    };
    if verdict.refused() {
        limits.note_refusal(client);
    }
    verdict
}

/// The limit shared by every gateway replica: one GCRA state per client in Redis, updated
/// atomically by a Lua script with Redis' own clock, so two gateways together admit the
/// configured rate, not twice it. The local limiter still answers first: a client it refuses
/// is over the shared limit too, so Redis is only asked about requests that may pass.
pub struct SharedLimiter {
    client: fred::clients::Client,
    prefix: String,
    fail_open: bool,
    timeout: Duration,
    up: std::sync::atomic::AtomicBool,
    errors: prometheus::IntCounter,
}

/// Arguments: interval and capacity in microseconds. Returns {allowed, a, b}: when allowed,
/// a = how far ahead of the limit (µs) and b = time until whole (µs); when refused, a = time
/// until allowed (µs) and b = time until whole (µs).
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - capacity
if now < allow_at then
  return {0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, now - allow_at, new_tat - now}
"#;

impl SharedLimiter {
    /// A client for `url` (connected by [`start`](Self::start); `rediss://` with TLS, trusting
    /// `ca_file` besides the system's roots); refuses a bad URL or CA file.
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        prefix: &str,
        fail_open: bool,
        errors: prometheus::IntCounter,
    ) -> Result<Self, String> {
        use fred::prelude::*;
        let config =
            aragora_config::redis::client_config(url, ca_file).map_err(|err| err.to_string())?;
        let client = Builder::from_config(config)
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(1);
                connection.max_command_attempts = 1;
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = Duration::from_millis(250);
            })
            // Keep reconnecting for ever, twice a second: the limit recovers by itself.
            .set_policy(ReconnectPolicy::new_constant(0, 500))
            .build()
            .map_err(|err| err.to_string())?;
        Ok(Self {
            client,
            prefix: prefix.to_string(),
            fail_open,
            timeout: Duration::from_millis(100),
            up: std::sync::atomic::AtomicBool::new(false),
            errors,
        })
    }

    /// Connects (inside the proxy's runtime) and keeps reconnecting in the background; a first
    /// connection that fails is retried in the background too (fred's reconnect policy covers
    /// only connections that once worked), so the limit becomes shared once Redis answers.
    pub async fn start(&self) {
        use fred::prelude::*;
        if let Err(err) = self.client.init().await {
            tracing::warn!(error = %err, "Redis for shared rate limits is not reachable yet; limiting locally until it is");
            let client = self.client.clone();
            tokio::spawn(async move {
                aragora_config::redis::connect_until_up(
                    &client,
                    Duration::from_millis(500),
                    |_, _| {},
                )
                .await;
                tracing::info!("connected to Redis: rate limits are shared across gateways");
            });
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    fn mark(&self, up: bool, error: Option<&str>) {
        let was = self.up.swap(up, std::sync::atomic::Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("Redis answers again: rate limits are shared across gateways");
            } else {
                tracing::warn!(
                    error = error.unwrap_or(""),
                    fail_open = self.fail_open,
                    "Redis does not answer: rate limits fall back to this gateway alone"
                );
            }
        }
    }

    /// The shared decision for `key`, or None when Redis did not answer in time (counted).
    pub async fn check(&self, key: &str, per_minute: u64, burst: u64) -> Option<Decision> {
        use fred::prelude::*;
        let interval = 60_000_000 / per_minute.max(1);
        let capacity = interval * burst.max(1);
        let redis_key = format!("{}{key}", self.prefix);
        let call = self.client.eval::<Vec<i64>, _, _, _>(
            GCRA_SCRIPT,
            redis_key,
            vec![interval as i64, capacity as i64],
        );
        let reply = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) if reply.len() == 3 => reply,
            Ok(Ok(reply)) => {
                self.failed(&format!("unexpected reply {reply:?}"));
                return None;
            }
            Ok(Err(err)) => {
                self.failed(&err.to_string());
                return None;
            }
            Err(_) => {
                self.failed("no answer within 100 ms");
                return None;
            }
        };
        self.mark(true, None);
        let secs = |micros: i64| (micros.max(0) as u64).div_ceil(1_000_000);
        Some(if reply[0] == 1 {
            Decision {
                allowed: true,
                limit: burst,
                remaining: ((reply[1].max(0) as u64) / interval).min(burst - 1),
                reset_secs: secs(reply[2]),
                retry_after_secs: 0,
            }
        } else {
            Decision {
                allowed: false,
                limit: burst,
                remaining: 0,
                reset_secs: secs(reply[2]),
                retry_after_secs: secs(reply[1]).max(1),
            }
        })
    }

    fn failed(&self, error: &str) {
        self.errors.inc();
        self.mark(false, Some(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_is_allowed_then_the_steady_rate() {
        let limiter = RateLimiter::new(60, 3).unwrap();
        let client = ip("10.0.0.1");
        let remaining: Vec<u64> = (0..3)
            .map(|_| limiter.check_at(client, 0.0).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = limiter.check_at(client, 0.0);
        assert!(!refused.allowed);
        assert_eq!(
            refused.retry_after_secs, 1,
            "one request per second at 60/min"
        );
        assert!(
            limiter.check_at(client, 1.0).allowed,
            "a second later one more is allowed"
        );
        assert!(!limiter.check_at(client, 1.0).allowed);
        assert!(
            limiter.check_at(ip("10.0.0.2"), 1.0).allowed,
            "another client has its own bucket"
        );
    }

    #[test]
    fn route_limits_name_real_routes() {
        assert_eq!(
            RouteLimit::parse("post /api/debates=10").unwrap(),
            RouteLimit {
                method: "POST".into(),
                route: "/api/debates",
                per_minute: 10
            }
        );
        assert!(RouteLimit::parse("POST /api/nope=1")
            .unwrap_err()
            .contains("route template"));
        assert!(RouteLimit::parse("POST /api/debates")
            .unwrap_err()
            .contains("METHOD /route=N"));
    }

    #[test]
    fn a_burst_of_one_admits_a_first_request_at_any_instant() {
        // Instants at which `now + 60 - 60` rounds above `now`.
        for now in [0.1, 0.7, 1.1, 123.456, 5.5e-5] {
            let limiter = RateLimiter::new(1, 1).unwrap();
            assert!(limiter.check_at(ip("10.0.0.1"), now).allowed, "at {now}");
            let refused = limiter.check_at(ip("10.0.0.1"), now);
            assert_eq!((refused.allowed, refused.retry_after_secs), (false, 60));
        }
    }

    #[test]
    fn sweeping_forgets_clients_that_recovered() {
        let limiter = RateLimiter::new(60, 2).unwrap();
        limiter.check_at(ip("10.0.0.1"), 0.0);
        limiter.check_at(ip("10.0.0.2"), 5.0);
        assert_eq!(
            limiter.sweep_at(5.5),
            1,
            "the first client recovered after a second"
        );
        assert_eq!(limiter.sweep_at(6.5), 0);
    }

    #[test]
    fn every_client_has_its_own_bucket_whatever_shard_it_is_in() {
        let limiter = RateLimiter::new(60, 1).unwrap();
        let clients: Vec<IpAddr> = (0..64u8)
            .map(|i| IpAddr::from([10, 0, 0, i]))
            .chain((0..64u16).map(|i| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i])))
            .collect();
        for client in &clients {
            assert!(limiter.check_at(*client, 0.0).allowed, "{client}");
        }
        for client in &clients {
            assert!(!limiter.check_at(*client, 0.0).allowed, "{client}");
        }
        assert_eq!(
            limiter.sweep_at(0.5),
            clients.len(),
            "all kept, in every shard"
        );
        assert_eq!(limiter.sweep_at(1.5), 0);
    }
    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn redis(url: &str, fail_open: bool) -> SharedLimiter {
        let prefix = format!("aragora-test:{}:", uuid::Uuid::new_v4());
        let errors = prometheus::IntCounter::new("errors", "Redis errors").unwrap();
        SharedLimiter::new(url, None, &prefix, fail_open, errors).unwrap()
    }

    #[tokio::test]
    async fn a_verdict_allows_the_burst_then_refuses_with_retry_after() {
        // One a minute, two at once: the third request waits a whole interval.
        let limits = Limits::new(1, 2, &[], &[]);
        let client = ip("10.0.0.1");
        let mut remaining = Vec::new();
        for _ in 0..2 {
            match decide(&limits, None, client, "GET", "/api/debates").await {
                Verdict::Allowed(decision) => remaining.push(decision.remaining),
                other => panic!("within the burst, got {other:?}"),
            }
        }
        assert_eq!(remaining, vec![1, 0]);
        let refused = decide(&limits, None, client, "GET", "/api/debates").await;
        let Verdict::OverLimit {
            decision,
            per_minute,
        } = refused
        else {
            panic!("over the burst, got {refused:?}");
        };
        assert_eq!((decision.retry_after_secs, per_minute), (60, 1));
        assert_eq!(
            refused.decision(),
            Some(decision),
            "reported in the headers"
        );
        assert_eq!(
            limits.top_refused(5),
            vec![(client, 1)],
            "counted per client"
        );
    }

    #[tokio::test]
    async fn a_route_override_replaces_the_default_there_only() {
        let routes = [
            RouteLimit::parse("POST /api/debates=1").unwrap(),
            RouteLimit::parse("GET /api/agents=0").unwrap(),
        ];
        let limits = Limits::new(100, 100, &routes, &[net("192.168.0.0/16")]);
        let client = ip("10.0.0.1");
        assert!(matches!(
            decide(&limits, None, client, "POST", "/api/debates").await,
            Verdict::Allowed(_)
        ));
        let second = decide(&limits, None, client, "POST", "/api/debates").await;
        assert!(
            matches!(second, Verdict::OverLimit { per_minute: 1, .. }),
            "the route's limit, got {second:?}"
        );
        let other_route = decide(&limits, None, client, "GET", "/api/debates").await;
        assert!(
            matches!(other_route, Verdict::Allowed(d) if d.limit == 100),
            "the default elsewhere, got {other_route:?}"
        );
        assert_eq!(
            decide(&limits, None, client, "GET", "/api/agents").await,
            Verdict::Unlimited,
            "a route's 0 turns limiting off there"
        );
        for _ in 0..3 {
            assert_eq!(
                decide(&limits, None, ip("192.168.3.4"), "POST", "/api/debates").await,
                Verdict::Unlimited,
                "an allow-listed client is never limited"
            );
        }
        assert_eq!(
            decide(&Limits::new(0, 0, &[], &[]), None, client, "GET", "/").await,
            Verdict::Unlimited
        );
    }

    #[tokio::test]
    async fn redis_not_answering_falls_back_to_the_local_decision_unless_fail_closed() {
        // Nothing listens on port 1, and the client is never connected.
        let client = ip("10.0.0.1");
        let open = redis("redis://127.0.0.1:1", true);
        let limits = Limits::new(60, 2, &[], &[]);
        let verdict = decide(&limits, Some(&open), client, "GET", "/api/debates").await;
        assert!(
            matches!(verdict, Verdict::Allowed(d) if d.remaining == 1),
            "fail open: this gateway's own decision, got {verdict:?}"
        );
        assert_eq!(open.errors.get(), 1, "the failed call is counted");
        let closed = redis("redis://127.0.0.1:1", false);
        let verdict = decide(&limits, Some(&closed), client, "GET", "/api/debates").await;
        assert!(
            matches!(verdict, Verdict::Unverified(d) if d.allowed),
            "fail closed: refused although within the local limit, got {verdict:?}"
        );
        assert!(verdict.refused());
        let over = decide(&limits, Some(&closed), client, "GET", "/api/debates").await;
        assert!(
            matches!(over, Verdict::OverLimit { .. }),
            "over the local limit Redis is not asked, got {over:?}"
        );
    }

    #[tokio::test]
    async fn the_redis_limit_is_one_across_gateways() {
        let shared = redis("redis://127.0.0.1:6379", false);
        shared.start().await;
        let client = ip("10.0.0.1");
        // Two gateways, each with its own local limiter, one request a minute between them.
        let first = Limits::new(1, 1, &[], &[]);
        let second = Limits::new(1, 1, &[], &[]);
        let verdict = decide(&first, Some(&shared), client, "GET", "/api/debates").await;
        assert!(matches!(verdict, Verdict::Allowed(_)), "got {verdict:?}");
        let verdict = decide(&second, Some(&shared), client, "GET", "/api/debates").await;
        let Verdict::OverLimit { decision, .. } = verdict else {
            panic!("the other gateway's request counts here too, got {verdict:?}");
        };
        assert!((59..=60).contains(&decision.retry_after_secs));
        assert!(shared.is_up());
    }
}
