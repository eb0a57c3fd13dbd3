//! What the gateway reads from a request head before choosing a replica: the debate id and
//! the affinity cookie (`route::Stickiness`), the client's address from `X-Forwarded-For`
//! (`client::Client`), and the route template of the path (`telemetry::route_index`).

use aragora_gateway::client::Client;
use aragora_gateway::parsed::Networks;
use aragora_gateway::route::Stickiness;
use aragora_gateway::trace::{request_id, TraceContext};
use aragora_telemetry::{route_index, route_name, ROUTES};
use pingora::http::RequestHeader;
use std::net::IpAddr;
use std::sync::OnceLock;

/// The first byte picks what the rest is: a request target and cookie (split at the first
/// `\n`), an `X-Forwarded-For` behind one of four peers, a path, or a `traceparent` and
/// `X-Request-Id`.
pub fn gateway_route(data: &[u8]) {
    let Some((&what, rest)) = data.split_first() else {
        return;
    };
    match what % 4 {
        0 => stickiness(rest),
        1 => forwarded_for(what / 4, rest),
        2 => route(rest),
        _ => trace_headers(rest),
    }
}

/// A caller's trace is continued only from a valid `traceparent`; what goes on is always one.
fn trace_headers(data: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let text = value.to_str().ok();
    let context = TraceContext::from_header(text);
    let sent = context.header();
    assert_eq!(sent.len(), 55);
    assert!(sent.to_str().is_ok_and(|s| s.starts_with("00-")));
    if context.parent_span_id().is_some() {
        let given = text.expect("a parent comes from a header").trim();
        assert_eq!(context.trace_id(), given[3..35].to_ascii_lowercase());
    }
    let id = request_id(Some(value.as_bytes()));
    assert!((1..=128).contains(&id.len()));
}

fn stickiness(data: &[u8]) {
    let (target, cookie) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(mut header) = RequestHeader::build("GET", target, None) else {
        return;
    };
    if let Some(cookie) = cookie {
        if header.insert_header("cookie", cookie).is_err() {
            return;
        }
    }
    let sticky = Stickiness::of(&header);
    if let Some(debate) = &sticky.debate {
        assert!(!debate.is_empty());
        let path = header.uri.path();
        if path == "/ws" {
            assert!(!debate.contains('&'), "{debate:?}");
        } else {
            assert!(!debate.contains('/'), "{debate:?}");
            assert!(path.contains(&format!("/debates/{debate}")), "{path:?}");
        }
    }
    if let Some(affinity) = &sticky.affinity {
        assert!(!affinity.contains(';'), "{affinity:?}");
    }
}

fn trusted() -> &'static Networks {
    static TRUSTED: OnceLock<Networks> = OnceLock::new();
    TRUSTED.get_or_init(|| Networks::new(vec!["10.0.0.0/8".into(), "fd00::/8".into()]))
}

fn forwarded_for(peer: u8, data: &[u8]) {
    let Ok(chain) = std::str::from_utf8(data) else {
        return;
    };
    let peers: [Option<IpAddr>; 4] = [
        Some([10, 1, 2, 3].into()),
        Some([203, 0, 113, 9].into()),
        Some("fd00::1".parse().expect("an address")),
        None,
    ];
    let peer = peers[usize::from(peer) % peers.len()];
    let trusted = trusted().entries();
    let client = Client::identify(peer, Some(chain), trusted);
    let sent = client.forwarded_for(Some(chain));
    match peer {
        None => assert_eq!(sent, None),
        Some(ip) if !client.peer_trusted => {
            // An untrusted peer cannot choose its address, nor pass a chain on.
            assert_eq!(client.address, ip);
            assert_eq!(sent, Some(ip.to_string()));
        }
        Some(ip) => {
            // Behind a trusted proxy: an address of the chain, or the proxy itself.
            assert!(
                client.address == ip
                    || chain
                        .split(',')
                        .any(|hop| hop.trim().parse() == Ok(client.address)),
                "{:?} from {chain:?}",
                client.address
            );
            assert!(sent.is_some_and(|sent| sent.ends_with(&ip.to_string())));
        }
    }
}

/// The template a segment-by-segment comparison gives: the oracle for the gateway's
/// allocation-free walk.
fn reference_index(path: &str) -> usize {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES
        .iter()
        .position(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(part, segment)| part.starts_with('{') || part == segment)
        })
        .unwrap_or(ROUTES.len())
}

fn route(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let index = route_index(path);
    assert_eq!(index, reference_index(path), "{path:?}");
    assert!(!route_name(index).is_empty());
}
