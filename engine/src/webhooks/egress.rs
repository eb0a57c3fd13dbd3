//! Where webhooks may be sent: a subscription's URL is checked when it is created, and every
//! address its host resolves to is checked again at each delivery (the client's resolver,
//! [`GuardedResolver`]), so a name that resolved to a public address at creation cannot be
//! re-pointed at the internal network later (DNS rebinding).
//!
//! Refused unless `ARAGORA_WEBHOOK_ALLOW_PRIVATE`: loopback, private (RFC 1918, IPv6 unique
//! local), link-local (cloud metadata at 169.254.169.254 included), carrier-grade NAT,
//! benchmarking (198.18.0.0/15), reserved (240.0.0.0/4), unspecified, broadcast and multicast
//! addresses, and the IPv6 addresses that carry one of them inside: IPv4-mapped
//! (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, and the local-use
//! `64:ff9b:1::/48` whatever it embeds) and 6to4 (`2002::/16`). Only
//! `https` unless `ARAGORA_WEBHOOK_ALLOW_HTTP`.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// What egress allows (from the `ARAGORA_WEBHOOK_ALLOW_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EgressPolicy {
    pub allow_http: bool,
    pub allow_private: bool,
}

/// Why a URL or address is refused; messages name the setting that would allow it, never
/// anything of the URL beyond its host (a path or query may hold a receiver's token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("the URL is not valid: {0}")]
    Malformed(String),
    #[error("the URL's scheme is {0:?}; webhooks are sent to https:// URLs only (http:// needs ARAGORA_WEBHOOK_ALLOW_HTTP=true)")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry a user name or password; put a receiver's credential in the path or rely on the signature")]
    Credentials,
    #[error("{host} is (or resolves to) {addr}, a {kind} address; webhooks are not sent into private networks (ARAGORA_WEBHOOK_ALLOW_PRIVATE=true allows it)")]
    Private {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// What kind of non-public address `addr` is, or `None` for a public one.
pub fn non_public(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            let first = s[0];
            let last_v4 =
                Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            let embedded = |wrapper: &'static str, v4: Ipv4Addr| non_public_v4(v4).map(|_| wrapper);
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[..6] == [0; 6] {
                // ::a.b.c.d (deprecated, but some stacks still route it as IPv4).
                embedded(
                    "IPv4-compatible IPv6 (embedding a non-public IPv4)",
                    last_v4,
                )
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                embedded("NAT64 (embedding a non-public IPv4)", last_v4)
            } else if s[..3] == [0x64, 0xff9b, 1] {
                Some("local-use NAT64")
            } else if first == 0x2002 {
                let v4 =
                    Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
                embedded("6to4 (embedding a non-public IPv4)", v4)
            } else {
                None
            }
        }
    }
}

fn non_public_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking (reserved)")
    } else if a >= 240 {
        Some("reserved")
    } else if v4.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

impl EgressPolicy {
    /// Checks one address `host` resolved to.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), EgressError> {
        if self.allow_private {
            return Ok(());
        }
        match non_public(addr) {
            Some(kind) => Err(EgressError::Private {
                host: host.to_string(),
                addr,
                kind,
            }),
            None => Ok(()),
        }
    }

    /// Parses and checks a subscription's URL: scheme, no credentials, and (for an address
    /// literal) the address. A host name's addresses are checked by [`Self::resolve`].
    pub fn check_url(&self, raw: &str) -> Result<Url, EgressError> {
        let url = Url::parse(raw.trim()).map_err(|err| EgressError::Malformed(err.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(EgressError::Scheme(other.to_string())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::Credentials);
        }
        let host = url.host_str().ok_or(EgressError::NoHost)?.to_string();
        if let Some(addr) = literal(&url) {
            self.check_addr(&host, addr)?;
        }
        Ok(url)
    }

    /// Every address of `url`'s host, each checked; an address literal is its own answer.
    pub async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, EgressError> {
        let host = url.host_str().ok_or(EgressError::NoHost)?.to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        if let Some(addr) = literal(url) {
            self.check_addr(&host, addr)?;
            return Ok(vec![SocketAddr::new(addr, port)]);
        }
        resolve_checked(*self, &host, port).await
    }
}

/// The address of a URL whose host is an IP literal.
fn literal(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

async fn resolve_checked(
    policy: EgressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, EgressError> {
    let unresolvable = |reason: String| EgressError::Unresolvable {
        host: host.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|err| unresolvable(err.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(unresolvable("no addresses".into()));
    }
    // Every address, not just the first: the client may try any of them.
    for addr in &addrs {
        policy.check_addr(host, addr.ip())?;
    }
    Ok(addrs)
}

/// The delivery client's resolver: the system's, with every answer checked by the policy, so
/// the addresses the client connects to are the ones that were checked.
pub struct GuardedResolver(pub EgressPolicy);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            // reqwest puts the URL's port on the address it connects to; 0 is a placeholder.
            let addrs = resolve_checked(policy, name.as_str(), 0)
                .await
                .map_err(|err| Box::new(err) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl GuardedResolver {
    pub fn shared(policy: EgressPolicy) -> Arc<Self> {
        Arc::new(Self(policy))
    }
}

/// What a metric or a listing may show of a receiver: `scheme://host[:port]`, never the path
/// or query (which may hold a receiver's token).
pub fn endpoint(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EgressPolicy = EgressPolicy {
        allow_http: false,
        allow_private: false,
    };

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for url in [
            "https://127.0.0.1/hook",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert!(
                matches!(STRICT.check_url(url), Err(EgressError::Private { .. })),
                "{url} passed"
            );
        }
        for url in [
            "https://93.184.216.34/",
            "https://[2606:4700::1111]/",
            "https://example.com/x",
        ] {
            assert!(STRICT.check_url(url).is_ok(), "{url} refused");
        }
        let open = EgressPolicy {
            allow_private: true,
            ..STRICT
        };
        assert!(open.check_url("https://127.0.0.1/").is_ok());
    }

    #[test]
    fn ipv6_forms_embedding_internal_ipv4_and_reserved_ranges_are_refused() {
        let kind = |addr: &str| non_public(addr.parse().unwrap());
        for (addr, says) in [
            ("::127.0.0.1", "IPv4-compatible"),
            ("::10.0.0.1", "IPv4-compatible"),
            ("::169.254.169.254", "IPv4-compatible"),
            ("64:ff9b::10.1.2.3", "NAT64"),
            ("64:ff9b::127.0.0.1", "NAT64"),
            ("64:ff9b::169.254.169.254", "NAT64"),
            ("64:ff9b:1::93.184.216.34", "local-use NAT64"),
            ("2002:c0a8:0101::1", "6to4"),
            ("2002:7f00:1::", "6to4"),
            ("2002:a9fe:a9fe::1", "6to4"),
            ("::ffff:192.168.0.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.254", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("254.1.2.3", "reserved"),
            ("255.255.255.255", "broadcast"),
        ] {
            let found = kind(addr).unwrap_or_else(|| panic!("{addr} passed as public"));
            assert!(found.contains(says), "{addr}: {found}");
            let url = format!(
                "https://{}/",
                if addr.contains(':') {
                    format!("[{addr}]")
                } else {
                    addr.to_string()
                }
            );
            assert!(
                matches!(STRICT.check_url(&url), Err(EgressError::Private { .. })),
                "{url} passed"
            );
        }
        // The same forms around public addresses, and the ranges' neighbours, pass.
        for addr in [
            "64:ff9b::93.184.216.34",
            "2002:5db8:d822::1",
            "198.17.255.255",
            "198.20.0.1",
            "239.255.255.255",
            "223.255.255.254",
        ] {
            let found = kind(addr);
            let multicast = addr.starts_with("239.");
            assert!(found.is_none() || multicast, "{addr}: {found:?}");
        }
        assert_eq!(kind("::93.184.216.34"), None);
    }

    #[test]
    fn only_https_unless_http_is_allowed_and_no_credentials() {
        assert!(matches!(
            STRICT.check_url("http://example.com/"),
            Err(EgressError::Scheme(_))
        ));
        assert!(matches!(
            STRICT.check_url("ftp://example.com/"),
            Err(EgressError::Scheme(_))
        ));
        assert!(matches!(
            STRICT.check_url("not a url"),
            Err(EgressError::Malformed(_))
        ));
        assert!(matches!(
            STRICT.check_url("https://user:pw@example.com/"),
            Err(EgressError::Credentials)
        ));
        let http = EgressPolicy {
            allow_http: true,
            ..STRICT
        };
        assert!(http.check_url("http://example.com/").is_ok());
    }

    #[test]
    fn the_endpoint_never_shows_path_or_query() {
        let url = Url::parse("https://hooks.example.com:8443/t/SECRET?token=x").unwrap();
        assert_eq!(endpoint(&url), "https://hooks.example.com:8443");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_resolution() {
        let url = STRICT.check_url("https://localhost/hook").unwrap();
        assert!(matches!(
            STRICT.resolve(&url).await,
            Err(EgressError::Private { .. })
        ));
    }
}
