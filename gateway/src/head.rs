//! The request head as the gateway's decisions read it: a borrowed view ([`Head`]) that both
//! engines provide, pingora's parsed [`RequestHeader`] and the lean engine's httparse headers
//! ([`crate::lean`]). Everything decided from a head (framing and target checks, the route,
//! the debate key and affinity, the client, request id and trace context, the head and
//! declared body limits) reads it through this view, so both engines run the same code.

use pingora::http::RequestHeader;

/// The HTTP version of a head, as far as the decisions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// HTTP/2 (pingora's path only): the authority arrives in the target.
    Other,
}

/// A parsed request head, borrowed.
pub trait Head {
    fn method(&self) -> &str;
    /// The target as the client wrote it.
    fn raw_target(&self) -> &[u8];
    /// The target's path (percent-encoding kept).
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// The target names a scheme (absolute-form).
    fn has_scheme(&self) -> bool;
    /// The target names an authority (absolute-form, or HTTP/2's `:authority`).
    fn has_authority(&self) -> bool;
    /// The length of the path and query as forwarded (for the head's size).
    fn target_len(&self) -> usize;
    fn version(&self) -> Version;
    /// Every header, in order: name and value bytes.
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])>;

    /// Every value of the header `name` (any case), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The first value of the header `name`.
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The first value of `name` as text, when it is visible ASCII (what
    /// `HeaderValue::to_str` accepts).
    fn text(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(visible_text)
    }

    /// The request line and headers, in bytes, as the head limit counts them.
    fn head_size(&self) -> usize {
        let line = self.method().len() + self.target_len() + 12;
        line + self
            .headers()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum::<usize>()
    }
}

/// `value` as text when every byte is visible ASCII, space or tab.
pub fn visible_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

impl Head for RequestHeader {
    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn raw_target(&self) -> &[u8] {
        self.raw_path()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn has_scheme(&self) -> bool {
        self.uri.scheme().is_some()
    }

    fn has_authority(&self) -> bool {
        self.uri.authority().is_some()
    }

    fn target_len(&self) -> usize {
        self.uri.path_and_query().map_or(1, |pq| pq.as_str().len())
    }

    fn version(&self) -> Version {
        match self.version {
            http::Version::HTTP_10 => Version::Http10,
            http::Version::HTTP_11 => Version::Http11,
            _ => Version::Other,
        }
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
    }

    // The header map is indexed by name: a lookup, not a scan.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .get_all(name)
            .into_iter()
            .map(http::HeaderValue::as_bytes)
    }

    fn value(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(http::HeaderValue::as_bytes)
    }
}
