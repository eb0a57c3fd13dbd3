//! The gateway's configuration: listeners, certificate, upstreams, health checks, limits and
//! drain timing. Defaults, then TOML, then `ARAGORA_*` environment, then flags; every problem is
//! reported at once, and nothing is bound before the configuration validates (the rustls
//! listener panics on a bad certificate path, so paths are checked here first). Settings a
//! running gateway cannot change are marked `restart` in [`SETTINGS`]; a reload refuses them.

use crate::headers::{RouteHeader, SecurityHeader, DEFAULT_SECURITY_HEADERS};
use crate::limit::RouteLimit;
use crate::parsed::{Networks, ParsedList};
use aragora_auth::AuthConfig;
use aragora_config::{ConfigProblem, Env, Environment, H1Engine, H2Engine, OcspStapling, Settings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The gateway's settings. Its `Debug` hides the password of the Redis URL
/// ([`aragora_config::redact`]).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub host: String,
    pub http_port: u16,
    pub https_port: u16,
    pub admin_host: String,
    pub admin_port: u16,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ocsp_stapling: OcspStapling,
    pub tls_ocsp_response_file: Option<PathBuf>,
    pub tls_ocsp_refresh_secs: u64,
    pub upstreams: Vec<String>,
    pub health_path: String,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub dns_refresh_secs: u64,
    pub slow_start_secs: u64,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub client_read_timeout_secs: u64,
    pub max_inflight_requests: usize,
    pub max_connections: usize,
    pub websocket_idle_timeout_secs: u64,
    pub max_websockets_per_client: usize,
    pub upstream_connect_timeout_ms: u64,
    pub upstream_read_timeout_secs: u64,
    pub hsts_max_age_secs: u64,
    pub server_header: String,
    pub security_headers: ParsedList<SecurityHeader>,
    pub security_header_routes: ParsedList<RouteHeader>,
    pub drain_delay_secs: u64,
    pub drain_timeout_secs: u64,
    pub threads: usize,
    pub share_https_port: bool,
    pub h1_engine: H1Engine,
    pub h2_engine: H2Engine,
    pub acme_challenge_dir: Option<PathBuf>,
    pub rate_limit_per_minute: u64,
    pub rate_limit_burst: u64,
    pub trusted_proxies: Networks,
    pub rate_limit_routes: ParsedList<RouteLimit>,
    pub rate_limit_allow: Networks,
    pub redis_url: Option<String>,
    pub redis_ca_file: Option<PathBuf>,
    pub rate_limit_fail_open: bool,
    pub rate_limit_key_prefix: String,
    /// Who may call the admin listener (`[auth]` in TOML; env in [`aragora_auth::SETTINGS`]):
    /// admins by the stateless credentials (API keys are the engine's to verify). Never
    /// serialized: it holds secrets. A reload replaces it, so a rotated secret counts at once.
    #[serde(skip_serializing)]
    pub auth: AuthConfig,
    /// `ARAGORA_ENV` (the engine's setting, read here for the auth checks); unset or
    /// unreadable is development, and the engine reports a bad spelling.
    #[serde(skip)]
    pub environment: Environment,
}

aragora_config::settings! {
    GatewayConfig;
    host: ["ARAGORA_GATEWAY_HOST"] restart "Address the public listeners (HTTP and HTTPS) bind to.";
    http_port: ["ARAGORA_HTTP_PORT"] restart "Plain HTTP port: answers 308 to HTTPS (except ACME challenges and /healthz).";
    https_port: ["ARAGORA_HTTPS_PORT"] restart "HTTPS port (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1).";
    admin_host: ["ARAGORA_ADMIN_HOST"] restart "Address of the admin listener; keep it on loopback.";
    admin_port: ["ARAGORA_ADMIN_PORT"] restart "Admin listener port: /metrics, /api/system/upstreams, maintenance mode.";
    tls_cert: ["ARAGORA_TLS_CERT"] "PEM certificate chain; `aragora up` generates a self-signed one when unset.";
    tls_key: ["ARAGORA_TLS_KEY"] "PEM private key of the certificate.";
    tls_ocsp_stapling: ["ARAGORA_TLS_OCSP_STAPLING"] "OCSP stapling from the certificate's responder: auto (when the certificate names one), on (it must), off.";
    tls_ocsp_response_file: ["ARAGORA_TLS_OCSP_RESPONSE_FILE"] "A DER OCSP response stapled as is instead of fetching (verified first; re-read on reload).";
    tls_ocsp_refresh_secs: ["ARAGORA_TLS_OCSP_REFRESH_SECS"] "Longest wait in seconds between two fetches of the OCSP response (else at half its validity).";
    upstreams: ["ARAGORA_UPSTREAMS"] "Engine replicas, host:port, comma-separated; names are re-resolved (headless services).";
    health_path: ["ARAGORA_HEALTH_PATH"] "Path the gateway polls on each replica to decide it may get traffic.";
    health_interval_ms: ["ARAGORA_HEALTH_INTERVAL_MS"] "Milliseconds between active health checks of each replica.";
    health_timeout_ms: ["ARAGORA_HEALTH_TIMEOUT_MS"] "Milliseconds a health check may take before it counts as failed.";
    unhealthy_threshold: ["ARAGORA_UNHEALTHY_THRESHOLD"] "Consecutive failures (checks or connection errors) that take a replica out.";
    healthy_threshold: ["ARAGORA_HEALTHY_THRESHOLD"] "Consecutive passing checks that bring a replica back.";
    dns_refresh_secs: ["ARAGORA_DNS_REFRESH_SECS"] "Seconds between re-resolutions of upstream names.";
    slow_start_secs: ["ARAGORA_SLOW_START_SECS"] "Seconds over which a replica that became ready ramps up to a full share of traffic (0: at once).";
    max_body_bytes: ["ARAGORA_GATEWAY_MAX_BODY_BYTES"] "Largest request body; larger gets 413.";
    max_header_bytes: ["ARAGORA_GATEWAY_MAX_HEADER_BYTES"] "Largest request head (request line and headers); larger gets 431.";
    client_read_timeout_secs: ["ARAGORA_CLIENT_READ_TIMEOUT"] "Seconds a client may take to send its whole request head (then 408), for each read of its body, and for each write of its answer it does not read; slower clients are cut off.";
    max_inflight_requests: ["ARAGORA_GATEWAY_MAX_INFLIGHT"] "Requests (and open WebSockets) served at once; beyond it, 503.";
    websocket_idle_timeout_secs: ["ARAGORA_WS_IDLE_TIMEOUT"] "Seconds an upgraded WebSocket may stay silent before the gateway closes it (the seeds' proxy_read_timeout 86400); the engine's heartbeats keep a watched one alive.";
    max_websockets_per_client: ["ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT"] "WebSockets one client address (after trusted X-Forwarded-For) may hold open through this gateway at once; one more upgrade gets 429 `client_limit`. Clients behind one NAT share it.";
    max_connections: ["ARAGORA_GATEWAY_MAX_CONNECTIONS"] "TLS connections open at once on the HTTPS listener; beyond it, new connections are closed at accept.";
    upstream_connect_timeout_ms: ["ARAGORA_UPSTREAM_CONNECT_TIMEOUT_MS"] "Milliseconds to connect to a replica before trying another.";
    upstream_read_timeout_secs: ["ARAGORA_UPSTREAM_READ_TIMEOUT"] "Seconds to wait for a replica's response.";
    hsts_max_age_secs: ["ARAGORA_HSTS_MAX_AGE"] "max-age of the Strict-Transport-Security header on HTTPS responses.";
    server_header: ["ARAGORA_SERVER_HEADER"] "The Server header of every HTTPS answer, replacing a replica's; empty sends none.";
    security_headers: ["ARAGORA_SECURITY_HEADERS"] "Headers every HTTPS answer gets, replacing a replica's, comma-separated Name: value (default: nosniff, Referrer-Policy no-referrer, framing denied by X-Frame-Options and CSP frame-ancestors).";
    security_header_routes: ["ARAGORA_SECURITY_HEADER_ROUTES"] "Per-route changes to those headers, comma-separated /route Name: value; no value drops the header there (/api/debates/{id}/receipt X-Frame-Options: SAMEORIGIN).";
    drain_delay_secs: ["ARAGORA_GATEWAY_DRAIN_DELAY"] restart "On SIGTERM, seconds to keep serving while reporting not ready, so load balancers stop sending.";
    drain_timeout_secs: ["ARAGORA_GATEWAY_DRAIN_TIMEOUT"] restart "Seconds in-flight requests get to finish after the gateway stops accepting.";
    threads: ["ARAGORA_GATEWAY_THREADS"] restart "Proxy runtimes, one thread each (set it to the cores the gateway may use): each accepts on its own SO_REUSEPORT socket of the HTTPS port and keeps its own upstream connection pool.";
    share_https_port: ["ARAGORA_GATEWAY_SHARE_HTTPS_PORT"] restart "true: join the SO_REUSEPORT group of another gateway process already listening on the HTTPS port (same user) instead of refusing a port in use, and the kernel spreads new connections over both; for several gateway processes on one address where one process's open-file limit caps the connections it can hold. Only the HTTPS port is shared: each process still needs its own ARAGORA_HTTP_PORT and ARAGORA_ADMIN_PORT.";
    h1_engine: ["ARAGORA_GATEWAY_H1_ENGINE"] restart "What serves HTTP/1.1 requests: lean (the gateway's own HTTP/1.1 engine: about half the CPU per request, one replica connection pinned per client connection) or pingora (pingora's HttpProxy); WebSocket upgrades take pingora's path either way.";
    h2_engine: ["ARAGORA_GATEWAY_H2_ENGINE"] restart "What serves HTTP/2 connections: lean (the gateway's own HTTP/2 engine: each stream to a replica over HTTP/1.1 on connections kept per client connection, the request body read whole first, CONNECT answered 501; about half the CPU per request) or pingora (pingora's HttpProxy).";
    acme_challenge_dir: ["ARAGORA_ACME_CHALLENGE_DIR"] "Directory served at /.well-known/acme-challenge/ on the HTTP port.";
    rate_limit_per_minute: ["ARAGORA_RATE_LIMIT"] "Requests per minute per client address, on average; 0 turns limiting off.";
    rate_limit_burst: ["ARAGORA_RATE_LIMIT_BURST"] "Requests a client may send at once; 0 means the per-minute rate.";
    trusted_proxies: ["ARAGORA_TRUSTED_PROXIES"] "CIDRs of proxies in front of the gateway whose X-Forwarded-For is believed; from anyone else it is ignored.";
    rate_limit_routes: ["ARAGORA_RATE_LIMIT_ROUTES"] "Per-route limits replacing the default there, comma-separated METHOD /route=N (POST /api/debates=10).";
    rate_limit_allow: ["ARAGORA_RATE_LIMIT_ALLOW"] "CIDRs of clients never rate limited (monitoring, internal jobs).";
    redis_url: ["ARAGORA_REDIS_URL", "REDIS_URL"] restart "Redis shared by the gateway replicas so together they admit the configured rate; unset, each gateway limits alone.";
    redis_ca_file: ["ARAGORA_REDIS_CA_FILE"] restart "PEM file of the CA that signed a rediss:// server's certificate, trusted besides the system's roots.";
    rate_limit_fail_open: ["ARAGORA_RATE_LIMIT_FAIL_OPEN"] restart "While Redis does not answer: true limits locally, false refuses (429) what the shared limit cannot vouch for.";
    rate_limit_key_prefix: ["ARAGORA_RATE_LIMIT_KEY_PREFIX"] restart "Prefix of the rate-limit keys in Redis.";
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        aragora_config::redact::debug_redacted("GatewayConfig", self, f)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            http_port: 80,
            https_port: 443,
            admin_host: "127.0.0.1".into(),
            admin_port: 9091,
            tls_cert: None,
            tls_key: None,
            tls_ocsp_stapling: OcspStapling::Auto,
            tls_ocsp_response_file: None,
            tls_ocsp_refresh_secs: 3600,
            upstreams: Vec::new(),
            health_path: "/readyz".into(),
            health_interval_ms: 1000,
            health_timeout_ms: 1000,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            dns_refresh_secs: 10,
            slow_start_secs: 10,
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 32 * 1024,
            client_read_timeout_secs: 30,
            max_inflight_requests: 10_000,
            max_connections: 20_000,
            websocket_idle_timeout_secs: 86_400,
            max_websockets_per_client: 1024,
            upstream_connect_timeout_ms: 1000,
            upstream_read_timeout_secs: 300,
            hsts_max_age_secs: 31_536_000,
            server_header: String::new(),
            security_headers: ParsedList::new(DEFAULT_SECURITY_HEADERS.map(String::from).to_vec()),
            security_header_routes: ParsedList::default(),
            drain_delay_secs: 5,
            drain_timeout_secs: 30,
            threads: 2,
            share_https_port: false,
            h1_engine: H1Engine::Lean,
            h2_engine: H2Engine::Lean,
            acme_challenge_dir: None,
            rate_limit_per_minute: 100,
            rate_limit_burst: 0,
            trusted_proxies: Networks::default(),
            rate_limit_routes: ParsedList::default(),
            rate_limit_allow: Networks::default(),
            redis_url: None,
            redis_ca_file: None,
            rate_limit_fail_open: true,
            rate_limit_key_prefix: "aragora:ratelimit:".into(),
            auth: AuthConfig::default(),
            environment: Environment::Development,
        }
    }
}

impl GatewayConfig {
    /// The burst a client may send: the configured one, or a minute's worth.
    pub fn burst(&self) -> u64 {
        if self.rate_limit_burst == 0 {
            self.rate_limit_per_minute
        } else {
            self.rate_limit_burst
        }
    }

    /// Checks every value except the certificate (which `aragora up` may still generate).
    pub fn validate_settings(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, setting: &str, message: String| {
            if !ok {
                problems.push(ConfigProblem::new(setting, message));
            }
        };
        for (setting, host) in [
            ("ARAGORA_GATEWAY_HOST", &self.host),
            ("ARAGORA_ADMIN_HOST", &self.admin_host),
        ] {
            check(
                host.parse::<std::net::IpAddr>().is_ok(),
                setting,
                format!("{host:?} is not an IP address"),
            );
        }
        let ports = [
            ("ARAGORA_HTTP_PORT", self.http_port),
            ("ARAGORA_HTTPS_PORT", self.https_port),
            ("ARAGORA_ADMIN_PORT", self.admin_port),
        ];
        // Port 0 binds a free port; the gateway announces the ports it bound.
        for (i, (setting, port)) in ports.iter().enumerate() {
            for (other, other_port) in &ports[..i] {
                check(
                    *port == 0 || port != other_port,
                    setting,
                    format!("is the same port as {other} ({port}); give each listener its own"),
                );
            }
        }
        check(
            !self.upstreams.is_empty(),
            "ARAGORA_UPSTREAMS",
            "names no engine replica; give at least one host:port (--upstream 127.0.0.1:8080)"
                .into(),
        );
        for upstream in &self.upstreams {
            let valid = upstream.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            check(
                valid,
                "ARAGORA_UPSTREAMS",
                format!("{upstream:?} is not host:port"),
            );
        }
        check(
            self.health_path.starts_with('/'),
            "ARAGORA_HEALTH_PATH",
            format!("{:?} does not start with /", self.health_path),
        );
        check(
            self.health_interval_ms >= 50,
            "ARAGORA_HEALTH_INTERVAL_MS",
            "use at least 50 ms".into(),
        );
        check(
            (1..=self.health_interval_ms.max(1) * 10).contains(&self.health_timeout_ms),
            "ARAGORA_HEALTH_TIMEOUT_MS",
            "use at least 1 ms".into(),
        );
        check(
            self.unhealthy_threshold >= 1,
            "ARAGORA_UNHEALTHY_THRESHOLD",
            "use at least 1".into(),
        );
        check(
            self.healthy_threshold >= 1,
            "ARAGORA_HEALTHY_THRESHOLD",
            "use at least 1".into(),
        );
        check(
            self.dns_refresh_secs >= 1,
            "ARAGORA_DNS_REFRESH_SECS",
            "use at least 1 second".into(),
        );
        check(
            self.max_body_bytes >= 1024,
            "ARAGORA_GATEWAY_MAX_BODY_BYTES",
            "use at least 1024".into(),
        );
        check(
            (1024..=1024 * 1024).contains(&self.max_header_bytes),
            "ARAGORA_GATEWAY_MAX_HEADER_BYTES",
            "use 1024 to 1048576 (the proxy's own ceiling is 1 MiB)".into(),
        );
        check(
            self.client_read_timeout_secs >= 1,
            "ARAGORA_CLIENT_READ_TIMEOUT",
            "use at least 1 second".into(),
        );
        check(
            self.max_inflight_requests >= 1,
            "ARAGORA_GATEWAY_MAX_INFLIGHT",
            "use at least 1".into(),
        );
        check(
            self.websocket_idle_timeout_secs >= 1,
            "ARAGORA_WS_IDLE_TIMEOUT",
            "use at least 1 second (86400 keeps an idle WebSocket for a day)".into(),
        );
        check(
            (1..=1_000_000).contains(&self.max_websockets_per_client),
            "ARAGORA_GATEWAY_MAX_WEBSOCKETS_PER_CLIENT",
            format!(
                "is {}; use 1 to 1000000 (a client behind a NAT shares its address with the others there)",
                self.max_websockets_per_client
            ),
        );
        check(
            self.max_connections >= 1,
            "ARAGORA_GATEWAY_MAX_CONNECTIONS",
            "use at least 1 (each connection also needs a file descriptor: raise `ulimit -n` with it)".into(),
        );
        check(
            self.upstream_connect_timeout_ms >= 1,
            "ARAGORA_UPSTREAM_CONNECT_TIMEOUT_MS",
            "use at least 1 ms".into(),
        );
        check(
            self.upstream_read_timeout_secs >= 1,
            "ARAGORA_UPSTREAM_READ_TIMEOUT",
            "use at least 1 second".into(),
        );
        check(
            (1..=86_400).contains(&self.tls_ocsp_refresh_secs),
            "ARAGORA_TLS_OCSP_REFRESH_SECS",
            "use 1 to 86400 seconds (a day)".into(),
        );
        check(
            self.tls_ocsp_response_file.is_none()
                || self.tls_ocsp_stapling == OcspStapling::Auto,
            "ARAGORA_TLS_OCSP_RESPONSE_FILE",
            format!(
                "is set while ARAGORA_TLS_OCSP_STAPLING is {}: a file is stapled instead of fetching, so leave the mode at auto (or unset the file)",
                self.tls_ocsp_stapling
            ),
        );
        check(
            (1..=256).contains(&self.threads),
            "ARAGORA_GATEWAY_THREADS",
            "use 1 to 256".into(),
        );
        if let Some(reason) = self.trusted_proxies.problem() {
            problems.push(ConfigProblem::new("ARAGORA_TRUSTED_PROXIES", reason));
        }
        if let Some(reason) = self.rate_limit_allow.problem() {
            problems.push(ConfigProblem::new("ARAGORA_RATE_LIMIT_ALLOW", reason));
        }
        problems.extend(aragora_config::redis::problems(
            self.redis_url.as_deref(),
            self.redis_ca_file.as_deref(),
        ));
        if let Some(reason) = self.rate_limit_routes.problem() {
            problems.push(ConfigProblem::new("ARAGORA_RATE_LIMIT_ROUTES", reason));
        }
        if let Some(reason) = crate::headers::server_problem(&self.server_header) {
            problems.push(ConfigProblem::new("ARAGORA_SERVER_HEADER", reason));
        }
        if let Some(reason) = self.security_headers.problem() {
            problems.push(ConfigProblem::new("ARAGORA_SECURITY_HEADERS", reason));
        }
        if let Some(reason) = self.security_header_routes.problem() {
            problems.push(ConfigProblem::new("ARAGORA_SECURITY_HEADER_ROUTES", reason));
        }
        problems.extend(self.auth.problems(self.environment));
        problems
    }

    /// The certificate and key are both given, exist and parse, and what the OCSP settings
    /// ask of them can be done (the responder is not asked).
    pub fn validate_certificate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                if let Err(problem) = crate::tls::load(self, cert, key) {
                    problems.push(problem);
                }
            }
            (None, None) => problems.push(ConfigProblem::new(
                "ARAGORA_TLS_CERT",
                "no certificate: give --tls-cert and --tls-key (PEM files), or run `aragora up`, which generates a self-signed pair",
            )),
            _ => problems.push(ConfigProblem::new(
                "ARAGORA_TLS_KEY",
                "give both the certificate and its key (--tls-cert and --tls-key)",
            )),
        }
        problems
    }
}

impl Settings for GatewayConfig {
    fn finish_read(&mut self, env: &Env, problems: &mut Vec<ConfigProblem>) {
        self.auth.overlay_env(env, problems);
        self.environment = AuthConfig::environment_in(env);
    }

    /// Every value, the certificate files included.
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = self.validate_settings();
        problems.extend(self.validate_certificate());
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_settings_but_not_the_redis_password() {
        let config = GatewayConfig {
            redis_url: Some("redis://u:redis-pass-2@127.0.0.1:6379/0".into()),
            ..GatewayConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("redis-pass-2"), "{shown}");
        assert!(shown.contains("redis://u:***@127.0.0.1:6379/0"), "{shown}");
        assert!(
            shown.contains("https_port: 443"),
            "every field shown: {shown}"
        );
    }
    use aragora_config::EnvSettings;

    fn problems_of(config: &GatewayConfig, setting: &str) -> Vec<String> {
        config
            .validate()
            .into_iter()
            .filter(|problem| problem.setting == setting)
            .map(|problem| problem.message)
            .collect()
    }

    #[test]
    fn list_settings_are_stored_parsed_and_bad_entries_reported_by_name() {
        let env = aragora_config::env_map(&[
            ("ARAGORA_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
            ("ARAGORA_RATE_LIMIT_ROUTES", "post /api/debates=10"),
            ("ARAGORA_RATE_LIMIT_ALLOW", "10.0.0.0/8,nope"),
        ]);
        let (config, read_problems) = GatewayConfig::read(None, &env);
        assert!(read_problems.is_empty(), "{read_problems:?}");
        assert_eq!(config.trusted_proxies.entries().len(), 2);
        assert_eq!(config.rate_limit_routes.entries()[0].method, "POST");
        assert_eq!(
            problems_of(&config, "ARAGORA_TRUSTED_PROXIES"),
            Vec::<String>::new()
        );
        assert_eq!(
            problems_of(&config, "ARAGORA_RATE_LIMIT_ALLOW"),
            ["\"nope\" is not a CIDR (10.0.0.0/8) or an address"]
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(
            &file,
            "trusted_proxies = [\"10.0.0.0/33\"]\nrate_limit_routes = [\"POST /api/debates\"]\n",
        )
        .unwrap();
        let (config, read_problems) = GatewayConfig::read(Some(&file), &Default::default());
        assert!(
            read_problems.is_empty(),
            "a bad entry is not a bad file: {read_problems:?}"
        );
        assert_eq!(
            problems_of(&config, "ARAGORA_TRUSTED_PROXIES"),
            ["\"10.0.0.0/33\" is not a CIDR (10.0.0.0/8) or an address"]
        );
        assert_eq!(
            problems_of(&config, "ARAGORA_RATE_LIMIT_ROUTES"),
            ["\"POST /api/debates\" is not METHOD /route=N (for example \"POST /api/debates=10\")"]
        );
    }

    #[test]
    fn listeners_threads_and_the_shared_limiter_need_a_restart() {
        let old = GatewayConfig::default();
        let next = GatewayConfig {
            https_port: 8443,
            threads: 4,
            redis_url: Some("redis://127.0.0.1:6379".into()),
            // Reloadable: no restart needed.
            upstreams: vec!["127.0.0.1:9000".into()],
            rate_limit_per_minute: 5,
            ..GatewayConfig::default()
        };
        let changed: Vec<&str> = old
            .restart_changes(&next)
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            changed,
            [
                "ARAGORA_HTTPS_PORT",
                "ARAGORA_GATEWAY_THREADS",
                "ARAGORA_REDIS_URL"
            ]
        );
        let marked: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.restart)
            .map(|s| s.key)
            .collect();
        assert_eq!(marked.len(), 15, "{marked:?}");
    }

    #[test]
    fn the_engines_are_lean_unless_set_and_a_bad_name_says_the_choices() {
        let (config, problems) = GatewayConfig::read(None, &Default::default());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.h1_engine, H1Engine::Lean);
        assert_eq!(config.h2_engine, H2Engine::Lean);
        let env = aragora_config::env_map(&[
            ("ARAGORA_GATEWAY_H1_ENGINE", "Pingora"),
            ("ARAGORA_GATEWAY_H2_ENGINE", "PINGORA"),
        ]);
        let config = GatewayConfig::read(None, &env).0;
        assert_eq!(
            (config.h1_engine, config.h2_engine),
            (H1Engine::Pingora, H2Engine::Pingora)
        );
        let env = aragora_config::env_map(&[
            ("ARAGORA_GATEWAY_H1_ENGINE", "fast"),
            ("ARAGORA_GATEWAY_H2_ENGINE", "h3"),
        ]);
        let (_, problems) = GatewayConfig::read(None, &env);
        let mut named: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.setting.as_str(), p.message.as_str()))
            .collect();
        named.sort();
        assert_eq!(
            named,
            [
                (
                    "ARAGORA_GATEWAY_H1_ENGINE",
                    "\"fast\" is not an HTTP/1.1 engine; use pingora or lean"
                ),
                (
                    "ARAGORA_GATEWAY_H2_ENGINE",
                    "\"h3\" is not an HTTP/2 engine; use pingora or lean"
                )
            ]
        );
    }
}
