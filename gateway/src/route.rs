//! Which replica a request goes to. A request that names a debate (`/ws?debate_id=`,
//! `/api/debates/{id}/...`) goes to the replica the Ketama ring gives that debate, so every
//! watcher of a debate reaches the replica that runs it; a client pinned by its
//! `aragora-affinity` cookie goes to its replica while that is ready; everyone else to the best
//! ready replica. A client is (re-)pinned to the replica that answered it.

use crate::head::{visible_text, Head};
use crate::upstream::{Replica, UpstreamPool, AFFINITY_COOKIE};
use std::net::SocketAddr;
use std::sync::Arc;

/// What ties a request to a replica, read once from its head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stickiness {
    /// The debate the request is about (routed by consistent hash).
    pub debate: Option<String>,
    /// The replica token of the client's `aragora-affinity` cookie.
    pub affinity: Option<String>,
}

impl Stickiness {
    pub fn of(header: &impl Head) -> Self {
        Self {
            debate: debate_key(header),
            affinity: affinity_cookie(header),
        }
    }

    /// The replica for this request, excluding those `tried` already; after a failure with
    /// every replica tried, any ready one again (a stale pooled connection, a sole replica).
    pub fn choose(&self, pool: &UpstreamPool, tried: &[SocketAddr]) -> Option<Arc<Replica>> {
        let sticky = match (&self.debate, &self.affinity) {
            (Some(key), _) => pool.select_by_key(key, tried),
            (None, Some(token)) => pool.select_by_token(token, tried),
            (None, None) => None,
        };
        sticky
            .or_else(|| pool.select(tried))
            .or_else(|| (!tried.is_empty()).then(|| pool.select(&[])).flatten())
    }

    /// The `Set-Cookie` pinning the client to `replica`, unless it is pinned there already
    /// (new clients, and clients whose replica left, get one).
    pub fn pin<'a>(&self, replica: &'a Replica) -> Option<&'a http::HeaderValue> {
        (self.affinity.as_deref() != Some(replica.affinity.as_str())).then_some(&replica.pin_cookie)
    }
}

/// The debate id a request is about, if its path or query names one.
fn debate_key(header: &impl Head) -> Option<String> {
    let path = header.path();
    if path == "/ws" {
        return header.query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("debate_id="))
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        });
    }
    let rest = path
        .strip_prefix("/api/v1/debates/")
        .or_else(|| path.strip_prefix("/api/debates/"))?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    Some(id.to_string())
}

/// The `aragora-affinity` value among the request's cookies.
fn affinity_cookie(header: &impl Head) -> Option<String> {
    header
        .values("cookie")
        .filter_map(visible_text)
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(AFFINITY_COOKIE)?
                .strip_prefix('=')
                .map(str::to_string)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::RequestHeader;

    fn request(uri: &str, cookie: Option<&str>) -> RequestHeader {
        let mut header = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(cookie) = cookie {
            header.insert_header("cookie", cookie).unwrap();
        }
        header
    }

    #[test]
    fn debates_and_affinity_are_read_from_the_request() {
        let debate = |uri: &str| Stickiness::of(&request(uri, None)).debate;
        assert_eq!(
            debate("/ws?last_seq=3&debate_id=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            debate("/api/v1/debates/abc/messages").as_deref(),
            Some("abc")
        );
        assert_eq!(debate("/api/debates/abc").as_deref(), Some("abc"));
        assert_eq!(debate("/api/debates"), None);
        assert_eq!(debate("/api/debates/"), None);
        assert_eq!(debate("/ws?debate_id="), None);
        assert_eq!(debate("/ws?last_seq=3"), None);
        let pinned = Stickiness::of(&request(
            "/api/debates",
            Some("theme=dark; aragora-affinity=00ff; x=1"),
        ));
        assert_eq!(
            pinned,
            Stickiness {
                debate: None,
                affinity: Some("00ff".into())
            }
        );
        assert_eq!(
            Stickiness::of(&request("/", Some("aragora-affinityx=1"))).affinity,
            None
        );
    }
}
