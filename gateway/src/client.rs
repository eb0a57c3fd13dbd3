//! Who a request is from, decided once per request: the connection's peer, or, when the peer
//! is one of `ARAGORA_TRUSTED_PROXIES`, the nearest untrusted address in its
//! `X-Forwarded-For`. A client cannot pick its own rate-limit bucket, nor tell the engine's
//! logs a made-up address, by sending the header itself.

use crate::parsed::contains;
use ipnet::IpNet;
use std::net::IpAddr;

/// The request's client as the rate limit and the forwarded headers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The connection's peer (none for a connection without an IP address).
    pub peer: Option<IpAddr>,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-For` is passed on.
    pub peer_trusted: bool,
    /// The address the request is from (the rate limit's key).
    pub address: IpAddr,
}

impl Client {
    pub fn identify(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> Self {
        // A peer without an address is limited as 0.0.0.0, all such peers in one bucket.
        let address = client_address(
            peer.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            forwarded_for,
            trusted,
        );
        Self {
            peer,
            peer_trusted: peer.is_some_and(|ip| contains(trusted, &ip)),
            address,
        }
    }

    /// The `X-Forwarded-For` to send upstream: a trusted proxy's chain with the peer appended,
    /// from anyone else the peer alone. None when the peer has no address.
    pub fn forwarded_for(&self, incoming: Option<&str>) -> Option<String> {
        let peer = self.peer?;
        Some(match incoming.filter(|_| self.peer_trusted) {
            Some(chain) => format!("{chain}, {peer}"),
            None => peer.to_string(),
        })
    }
}

/// The peer, or the nearest untrusted address in `X-Forwarded-For` when the peer is trusted.
fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !contains(trusted, &peer) {
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
                if !contains(trusted, &ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsed::Networks;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = Networks::new(vec!["10.0.0.0/8".into(), "192.168.1.1".into()]);
        let trusted = trusted.entries();
        let spoofed = Client::identify(Some(ip("203.0.113.9")), Some("1.2.3.4"), trusted);
        assert_eq!(
            spoofed.address,
            ip("203.0.113.9"),
            "an untrusted peer cannot choose its address"
        );
        assert_eq!(
            spoofed.forwarded_for(Some("1.2.3.4")).as_deref(),
            Some("203.0.113.9"),
            "its chain is replaced"
        );
        let via_proxy = Client::identify(Some(ip("10.1.2.3")), Some("1.2.3.4, 10.9.9.9"), trusted);
        assert_eq!(
            via_proxy.address,
            ip("1.2.3.4"),
            "the nearest untrusted hop is the client"
        );
        assert_eq!(
            via_proxy
                .forwarded_for(Some("1.2.3.4, 10.9.9.9"))
                .as_deref(),
            Some("1.2.3.4, 10.9.9.9, 10.1.2.3"),
            "a trusted proxy's chain is passed on"
        );
        assert_eq!(
            Client::identify(None, None, trusted).forwarded_for(None),
            None
        );
    }
}
