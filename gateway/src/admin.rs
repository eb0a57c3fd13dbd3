//! Listeners that answer by themselves: the admin listener (loopback: metrics, upstreams,
//! maintenance mode, as [`crate::admin_api`] documents and routes them; everything but
//! `/metrics`, `/healthz` and `/readyz` for admins only, by the stateless credentials of
//! [`aragora_auth::Authenticator`]) and the plain-HTTP listener (308 to HTTPS, except ACME challenges and
//! `/healthz`).

use crate::state::Shared;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::admin_api::{respond, Answer, Route};

fn json_response(status: u16, body: Value) -> Answer {
    crate::admin_api::json_response(status, &body)
}

fn not_found(path: &str, hint: &str) -> Answer {
    json_response(
        404,
        aragora_telemetry::error_body("not_found", &format!("no endpoint at {path}; {hint}")),
    )
}

/// `None` when an admin asks; otherwise the 401 or 403 to answer. The authenticator is built
/// from the configuration in force at each request (cheap: no key store, no cache), so a
/// SIGHUP with a rotated secret applies to the next request.
async fn refuse_non_admin(
    shared: &Shared,
    headers: &http::HeaderMap,
    path: &str,
) -> Option<http::Response<Vec<u8>>> {
    let auth = aragora_auth::Authenticator::new(shared.config().auth.clone(), None);
    let err = auth.require_admin(headers).await.err()?;
    if let Some(reason) = err.metric_reason() {
        shared
            .metrics
            .auth_failures
            .with_label_values(&[reason])
            .inc();
    }
    // Which check failed is for the log (never the credential); the client gets the status.
    tracing::warn!(
        path,
        reason = err.metric_reason().unwrap_or("unavailable"),
        "admin request refused"
    );
    let (code, message) = err.keyless_code_and_message();
    let mut extra = Vec::new();
    if err.status() == 401 {
        extra.push((
            "WWW-Authenticate",
            aragora_auth::AuthError::WWW_AUTHENTICATE.to_string(),
        ));
    }
    let body = aragora_telemetry::error_body(code, &message).to_string();
    Some(respond(
        err.status(),
        "application/json",
        body.into_bytes(),
        &extra,
    ))
}

/// The admin listener: each request routed by the admin API's document
/// ([`crate::admin_api::route`]), the admin credential checked first unless the operation (or,
/// for a 405, every operation of the path) is open.
pub struct AdminApp {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Answer {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let shared = &self.shared;
        let route = crate::admin_api::route(method.as_str(), &path);
        let open = match &route {
            Route::Operation { secured, .. } => !secured,
            Route::MethodNotAllowed { open, .. } => *open,
            Route::NotFound => false,
        };
        if !open {
            if let Some(refusal) =
                refuse_non_admin(shared, &session.req_header().headers, &path).await
            {
                return refusal;
            }
        }
        match route {
            Route::Operation { handler, .. } => handler(shared),
            Route::MethodNotAllowed { allow, .. } => {
                let body = aragora_telemetry::error_body(
                    "method_not_allowed",
                    &format!("{method} is not supported on {path}; use {allow}"),
                );
                respond(
                    405,
                    "application/json",
                    body.to_string().into_bytes(),
                    &[("Allow", allow)],
                )
            }
            Route::NotFound => not_found(
                &path,
                "the admin API's paths are in GET /openapi.json (docs/gateway-admin-openapi.json)",
            ),
        }
    }
}

/// The plain-HTTP listener.
pub struct RedirectApp {
    pub shared: Arc<Shared>,
}

/// `example.com:80` → `example.com`, `[::1]:80` → `[::1]`, `example.com` unchanged.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map(|end| &host[..=end]).unwrap_or(host);
    }
    match host.split_once(':') {
        Some((name, _)) => name,
        None => host,
    }
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address: nothing that could change what
/// the `Location` of a redirect points to (`evil.com/`, `a@b`, spaces, CR/LF).
fn plausible_host(host: &str) -> bool {
    let bracketed_v6 = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok());
    bracketed_v6
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
}

/// An ACME token is base64url: anything else (a path traversal) is refused.
fn acme_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix("/.well-known/acme-challenge/")?;
    (!token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(token)
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let header = session.req_header();
        let path = header.uri.path().to_string();
        if path == "/healthz" {
            return json_response(200, json!({"status": "ok"}));
        }
        if path.starts_with("/.well-known/acme-challenge/") {
            let config = self.shared.config();
            let file = acme_token(&path).zip(config.acme_challenge_dir.as_ref());
            return match file.and_then(|(token, dir)| std::fs::read(dir.join(token)).ok()) {
                Some(content) => respond(200, "text/plain", content, &[]),
                None => not_found(
                    &path,
                    "no such ACME challenge token (ARAGORA_ACME_CHALLENGE_DIR)",
                ),
            };
        }
        let host = header
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .or_else(|| header.uri.host())
            .unwrap_or("localhost");
        // Keep the host, swap the port for the HTTPS one.
        let bare_host = strip_port(host);
        if !plausible_host(bare_host) {
            return json_response(
                400,
                aragora_telemetry::error_body("bad_host", "the Host header is not a host name or address; send the name this site is served under"),
            );
        }
        let https_port = self.shared.config().https_port;
        let authority = if https_port == 443 {
            bare_host.to_string()
        } else {
            format!("{bare_host}:{https_port}")
        };
        let path_and_query = header
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let location = format!("https://{authority}{path_and_query}");
        let body = json!({"redirect": location}).to_string().into_bytes();
        respond(
            308,
            "application/json",
            body,
            &[("Location", location.clone())],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{acme_token, plausible_host, strip_port};

    #[test]
    fn redirects_only_to_plausible_hosts() {
        for good in ["example.com", "10.0.0.1", "[::1]", "localhost"] {
            assert!(plausible_host(good), "{good}");
        }
        for bad in ["evil.com/x", "a@b", "", "[nope]", "x y", "a\\b"] {
            assert!(!plausible_host(bad), "{bad}");
        }
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }

    #[test]
    fn acme_tokens_cannot_escape_the_directory() {
        assert_eq!(
            acme_token("/.well-known/acme-challenge/abc_DEF-123"),
            Some("abc_DEF-123")
        );
        assert_eq!(
            acme_token("/.well-known/acme-challenge/../../etc/passwd"),
            None
        );
        assert_eq!(acme_token("/.well-known/acme-challenge/"), None);
    }
}
