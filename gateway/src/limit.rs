//! Rate limiting per client, on this gateway (GCRA, the generic cell rate algorithm).
//!
//! A client may send `rate_per_minute` requests per minute on average and up to `burst` at
//! once. The client is the connection's peer address; `X-Forwarded-For` is believed only when
//! the peer is one of `ARAGORA_TRUSTED_PROXIES`, so a client cannot pick its own bucket by
//! sending the header. Every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset`; a refused request gets 429 with `Retry-After`.
//!
//! With Redis configured, [`SharedLimiter`] makes the limit one across all gateway replicas;
//! the local limiter stays in front of it.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the limiter decided for one request, and the headers that say so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The burst capacity (`RateLimit-Limit`).
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the client's allowance is whole again (`RateLimit-Reset`).
    pub reset_secs: u64,
    /// Seconds to wait before a refused request can succeed (`Retry-After`).
    pub retry_after_secs: u64,
}

pub struct RateLimiter {
    /// Seconds between requests at the steady rate.
    interval: f64,
    burst: u64,
    started: Instant,
    /// Theoretical arrival time per client, in seconds since `started`.
    buckets: Mutex<HashMap<IpAddr, f64>>,
}

impl RateLimiter {
    /// `None` when `rate_per_minute` is 0 (limiting off).
    pub fn new(rate_per_minute: u64, burst: u64) -> Option<Self> {
        (rate_per_minute > 0).then(|| Self {
            interval: 60.0 / rate_per_minute as f64,
            burst: burst.max(1),
            started: Instant::now(),
            buckets: Mutex::default(),
        })
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn check(&self, client: IpAddr) -> Decision {
        self.check_at(client, self.now())
    }

    fn check_at(&self, client: IpAddr, now: f64) -> Decision {
        let capacity = self.burst as f64 * self.interval;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tat = buckets.get(&client).copied().unwrap_or(now).max(now);
        let new_tat = tat + self.interval;
        let allow_at = new_tat - capacity;
        if now < allow_at {
            return Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset_secs: (tat - now).ceil() as u64,
                retry_after_secs: (allow_at - now).ceil().max(1.0) as u64,
            };
        }
        buckets.insert(client, new_tat);
        // The epsilon keeps float rounding (47.999... for 48) from costing a request.
        let remaining = ((now - allow_at) / self.interval + 1e-9).floor() as u64;
        Decision {
            allowed: true,
            limit: self.burst,
            remaining: remaining.min(self.burst - 1),
            reset_secs: (new_tat - now).ceil() as u64,
            retry_after_secs: 0,
        }
    }

    /// Forgets clients whose allowance is whole again (called periodically, bounds memory).
    pub fn sweep(&self) -> usize {
        self.sweep_at(self.now())
    }

    fn sweep_at(&self, now: f64) -> usize {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.retain(|_, tat| *tat > now);
        buckets.len()
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.interval * self.burst as f64)
    }

    /// The average rate this limiter admits.
    pub fn per_minute(&self) -> u64 {
        (60.0 / self.interval).round() as u64
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }
}

/// The client a request is from: the peer, or the nearest untrusted address in
/// `X-Forwarded-For` when the peer is a trusted proxy.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(chain) = forwarded_for else {
        return peer;
    };
    // Walk from the nearest hop outwards; the first address not ours is the client.
    let mut client = peer;
    for hop in chain.rsplit(',').map(str::trim) {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// A stricter (or looser) limit for one route: `POST /api/debates=10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    pub method: String,
    pub route: &'static str,
    pub per_minute: u64,
}

/// Parses `ARAGORA_RATE_LIMIT_ROUTES` entries (`METHOD /route/template=N`).
pub fn parse_route_limits(entries: &[String]) -> Result<Vec<RouteLimit>, String> {
    entries
        .iter()
        .map(|entry| {
            let hint = || {
                format!("{entry:?} is not METHOD /route=N (for example \"POST /api/debates=10\")")
            };
            let (target, rate) = entry.rsplit_once('=').ok_or_else(hint)?;
            let (method, route) = target.trim().split_once(' ').ok_or_else(hint)?;
            let per_minute: u64 = rate.trim().parse().map_err(|_| hint())?;
            let route = route.trim();
            let template = aragora_telemetry::ROUTES
                .iter()
                .find(|known| **known == route)
                .ok_or_else(|| {
                    format!(
                        "{route:?} is not a route template; use one of {}",
                        aragora_telemetry::ROUTES.join(", ")
                    )
                })?;
            Ok(RouteLimit {
                method: method.trim().to_ascii_uppercase(),
                route: template,
                per_minute,
            })
        })
        .collect()
}

/// Parses `ARAGORA_TRUSTED_PROXIES` entries (CIDRs or single addresses).
pub fn parse_networks(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{entry:?} is not a CIDR (10.0.0.0/8) or an address"))
        })
        .collect()
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
    /// A client for `url` (connected by [`start`](Self::start)); refuses a bad URL.
    pub fn new(
        url: &str,
        prefix: &str,
        fail_open: bool,
        errors: prometheus::IntCounter,
    ) -> Result<Self, String> {
        use fred::prelude::*;
        let config =
            Config::from_url(url).map_err(|err| format!("{url:?} is not a Redis URL: {err}"))?;
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

    /// Connects (inside the proxy's runtime) and keeps reconnecting in the background.
    pub async fn start(&self) {
        use fred::prelude::*;
        if let Err(err) = self.client.init().await {
            tracing::warn!(error = %err, "Redis for shared rate limits is not reachable yet; limiting locally until it is");
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
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = parse_networks(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap();
        let spoofed = client_address(ip("203.0.113.9"), Some("1.2.3.4"), &trusted);
        assert_eq!(
            spoofed,
            ip("203.0.113.9"),
            "an untrusted peer cannot choose its address"
        );
        let via_proxy = client_address(ip("10.1.2.3"), Some("1.2.3.4, 10.9.9.9"), &trusted);
        assert_eq!(
            via_proxy,
            ip("1.2.3.4"),
            "the nearest untrusted hop is the client"
        );
        assert!(parse_networks(&["not-a-net".into()]).is_err());
    }

    #[test]
    fn route_limits_name_real_routes() {
        let parsed = parse_route_limits(&["post /api/debates=10".into()]).unwrap();
        assert_eq!(
            parsed[0],
            RouteLimit {
                method: "POST".into(),
                route: "/api/debates",
                per_minute: 10
            }
        );
        assert!(parse_route_limits(&["POST /api/nope=1".into()])
            .unwrap_err()
            .contains("route template"));
        assert!(parse_route_limits(&["POST /api/debates".into()])
            .unwrap_err()
            .contains("METHOD /route=N"));
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
}
