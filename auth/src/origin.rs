//! The browser origins `ARAGORA_ALLOWED_ORIGINS` admits, for CORS and for WebSocket upgrades.
//! Origins compare exactly (scheme, host and port, case-insensitively, default ports spelled
//! or not); there is no wildcard.

/// Is `origin` of the form `scheme://host[:port]` with an http(s) scheme and nothing after?
pub(crate) fn is_origin(origin: &str) -> bool {
    origin.split_once("://").is_some_and(|(scheme, host)| {
        matches!(scheme, "http" | "https")
            && !host.is_empty()
            && !host.contains(['/', '?', '#', '@', ' '])
    })
}

/// `https://Example.com:443` and `https://example.com` are the same origin.
fn normalise(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if !is_origin(&origin) {
        return None;
    }
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    Some(
        origin
            .strip_suffix(default_port)
            .map(str::to_string)
            .unwrap_or(origin),
    )
}

/// The allowed origins.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new(origins: &[String]) -> Self {
        Self {
            allowed: origins.iter().filter_map(|o| normalise(o)).collect(),
        }
    }

    /// Is a request with `Origin: origin` from a listed origin?
    pub fn allows(&self, origin: &str) -> bool {
        normalise(origin).is_some_and(|origin| self.allowed.contains(&origin))
    }

    /// Is `origin` listed, or the origin of the request itself (`scheme://host`, from its
    /// `Host` and, behind the gateway, `X-Forwarded-Proto`)? A page aragora serves opens its
    /// WebSockets from its own origin; another site's page has another origin, which is what
    /// the check keeps out.
    pub fn allows_from(&self, origin: &str, scheme: &str, host: Option<&str>) -> bool {
        self.allows(origin)
            || host.is_some_and(|host| {
                normalise(&format!("{scheme}://{host}"))
                    .is_some_and(|own| normalise(origin) == Some(own))
            })
    }

    /// The listed origins, normalised.
    pub fn origins(&self) -> &[String] {
        &self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_pass_whatever_their_spelling() {
        let policy = OriginPolicy::new(&["https://app.example.com".into()]);
        assert!(policy.allows("https://app.example.com"));
        assert!(policy.allows("HTTPS://App.Example.com:443"));
        assert!(!policy.allows("http://app.example.com"));
        assert!(!policy.allows("https://app.example.com.evil.test"));
        assert!(!policy.allows("null"));
        assert!(!policy.allows(""));
    }

    #[test]
    fn a_page_of_the_requests_own_origin_passes_unlisted() {
        let policy = OriginPolicy::new(&[]);
        let host = Some("localhost:8443");
        assert!(policy.allows_from("https://localhost:8443", "https", host));
        assert!(!policy.allows_from("https://localhost:8443", "http", host));
        assert!(!policy.allows_from("https://evil.test", "https", host));
        assert!(!policy.allows_from("https://localhost:8443", "https", None));
        assert!(!policy.allows_from("null", "https", Some("null")));
    }
}
