//! Requests the gateway will not pass on as they stand, because a replica (or anything behind
//! it) could read them otherwise than the gateway did: the classic smuggling and normalisation
//! gaps. Pingora's parser already refuses what HTTP/1.1 cannot parse (obs-fold, a space before
//! the colon, a bare CR, NUL in a header); this is what it parses but forwards as it came.
//!
//! | request | answer | why |
//! |---|---|---|
//! | `Content-Length` with `Transfer-Encoding` | 400 | RFC 9112 §6.3: the framing is ambiguous, the classic CL.TE / TE.CL desync. Over HTTP/1 pingora-core already drops the length (reading the body chunked, closing after) before this runs; kept for any head that arrives with both |
//! | two `Content-Length`s that differ, or one that is not digits | 400 | RFC 9112 §6.3: unrecoverable framing error |
//! | a transfer coding list that does not end in `chunked` (`chunked, identity`) | 400 | RFC 9112 §6.3: the length cannot be determined |
//! | other codings before `chunked` (`gzip, chunked`) | 501 | RFC 9112 §6.1: not understood |
//! | `Transfer-Encoding` on an HTTP/1.0 request | 400 | RFC 9112 §6.1: 1.0 has no transfer codings, so the framing is faulty |
//! | a `.` or `..` path segment, plain or percent-encoded (`/%2e%2e/`) | 400 | a replica that normalises would serve another path than the one routed and limited |
//! | a NUL in the path (`%00`) | 400 | truncates the path in C string handling behind the replica |
//! | an authority-form target (`GET host:443`) without `CONNECT` | 400 | RFC 9112 §3.2.3: only `CONNECT` uses it |
//! | no `Host` on HTTP/1.1, two `Host`s, or one that is not host[:port] | 400 | RFC 9112 §3.2 |

use crate::head::{Head, Version};
use crate::refusal::Refusal;

/// The first reason not to pass `header` on, if any (either engine's head: [`Head`]).
pub fn check(header: &impl Head) -> Option<Refusal> {
    length(header)
        .or_else(|| target(header))
        .or_else(|| host(header))
}

fn length(header: &impl Head) -> Option<Refusal> {
    let lengths: Vec<&[u8]> = header.values("content-length").collect();
    let codings: Vec<String> = header
        .values("transfer-encoding")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(|coding| String::from_utf8_lossy(coding).trim().to_ascii_lowercase())
        .collect();
    if !codings.is_empty() && !lengths.is_empty() {
        return Some(Refusal::bad_request(
            "the request has both Content-Length and Transfer-Encoding; send one of them",
        ));
    }
    if lengths
        .iter()
        .any(|length| length.is_empty() || !length.iter().all(u8::is_ascii_digit))
    {
        return Some(Refusal::bad_request(
            "Content-Length must be one decimal number of bytes",
        ));
    }
    if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
        return Some(Refusal::bad_request(
            "the request has two different Content-Lengths; send one",
        ));
    }
    if codings.is_empty() {
        return None;
    }
    if header.version() == Version::Http10 {
        return Some(Refusal::bad_request(
            "HTTP/1.0 has no Transfer-Encoding; send Content-Length, or use HTTP/1.1",
        ));
    }
    if codings.last().map(String::as_str) != Some("chunked") {
        return Some(Refusal::bad_request(
            "Transfer-Encoding must end in chunked; send Transfer-Encoding: chunked",
        ));
    }
    if codings.len() > 1 {
        return Some(Refusal::not_implemented(
            "only Transfer-Encoding: chunked is understood; send the body chunked and nothing else",
        ));
    }
    None
}

/// The head over `max_head` bytes (431), or a declared body over `max_body` (413); a length of
/// more digits than any number fits is over every limit.
pub fn sizes(header: &impl Head, max_head: usize, max_body: usize) -> Option<Refusal> {
    let head_bytes = header.head_size();
    if head_bytes > max_head {
        return Some(Refusal::headers_too_large(head_bytes, max_head));
    }
    let declared = header
        .value("content-length")
        .and_then(crate::lean::h1::content_length);
    if declared.is_some_and(|length| length > max_body as u64) {
        return Some(Refusal::payload_too_large(max_body));
    }
    None
}

/// Whether a path segment, percent-encoded or not, decodes to `.` or `..`. Runs on every
/// segment of every request, so it reads the bytes in place instead of decoding a copy.
fn dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() && dots < 3 {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    rest.is_empty() && (dots == 1 || dots == 2)
}

fn target(header: &impl Head) -> Option<Refusal> {
    // As the client wrote it: pingora's parsed URI of `host:443` has a path of its own.
    let written = header.raw_target();
    let origin_form = written.starts_with(b"/") || written == b"*";
    let absolute_form = header.has_scheme()
        || [&b"http://"[..], b"https://"].iter().any(|scheme| {
            written.len() > scheme.len() && written[..scheme.len()].eq_ignore_ascii_case(scheme)
        });
    if !origin_form && !absolute_form && header.method() != "CONNECT" {
        return Some(Refusal::bad_request(
            "an authority-form target (host:port) is only for CONNECT; send a path such as /api/debates",
        ));
    }
    let path = header.path();
    if path.split('/').any(dot_segment) {
        return Some(Refusal::bad_request(
            "the path has a . or .. segment (perhaps percent-encoded); send the path it resolves to",
        ));
    }
    let query = header.query().unwrap_or("");
    if path.contains("%00") || query.contains("%00") {
        return Some(Refusal::bad_request(
            "the target has a NUL byte (%00); remove it",
        ));
    }
    None
}

/// Whether `host` is `name` or `name:port` with nothing else (no path, user or fragment).
fn valid_host(host: &[u8]) -> bool {
    let text = match std::str::from_utf8(host) {
        Ok(text) if !text.is_empty() => text,
        _ => return false,
    };
    let (name, port) = match text.strip_prefix('[') {
        // An IPv6 literal: [::1]:443
        Some(rest) => match rest.split_once(']') {
            Some((address, port)) => (address, port),
            None => return false,
        },
        None => match text.rsplit_once(':') {
            Some((name, _)) => (name, &text[name.len()..]),
            None => (text, ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    port_ok && name_ok
}

fn host(header: &impl Head) -> Option<Refusal> {
    let hosts: Vec<&[u8]> = header.values("host").collect();
    match hosts.as_slice() {
        // HTTP/2 says it in :authority, which arrives as the target's authority.
        [] if header.version() == Version::Http11 && !header.has_authority() => {
            Some(Refusal::bad_request(
                "an HTTP/1.1 request needs a Host header; send Host: the gateway's name",
            ))
        }
        [] => None,
        [one] if valid_host(one) => None,
        [_] => Some(Refusal::bad_request(
            "the Host header is not host[:port]; send the name only, without a path",
        )),
        _ => Some(Refusal::bad_request(
            "the request has more than one Host header; send one",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::RequestHeader;

    fn request(target: &str, version: http::Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut header = RequestHeader::build("POST", target.as_bytes(), None).unwrap();
        header.set_version(version);
        for (name, value) in headers {
            header.append_header(name.to_string(), *value).unwrap();
        }
        header
    }

    fn answer(target: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
        let mut all = vec![("host", "example.com")];
        all.extend_from_slice(headers);
        check(&request(target, http::Version::HTTP_11, &all)).map(|r| (r.status, r.message))
    }

    #[test]
    fn ambiguous_framing_is_refused_and_plain_framing_passes() {
        let te = ("transfer-encoding", "chunked");
        let status = |headers: &[(&str, &str)]| answer("/api/debates", headers).map(|a| a.0);
        assert_eq!(status(&[te]), None);
        assert_eq!(status(&[("content-length", "10")]), None);
        assert_eq!(
            status(&[("content-length", "10"), ("content-length", "10")]),
            None
        );
        assert_eq!(status(&[te, ("content-length", "10")]), Some(400));
        assert_eq!(
            status(&[("content-length", "10"), ("content-length", "11")]),
            Some(400)
        );
        assert_eq!(status(&[("content-length", "+10")]), Some(400));
        assert_eq!(
            status(&[("transfer-encoding", "chunked, identity")]),
            Some(400)
        );
        assert_eq!(status(&[("transfer-encoding", "gzip, chunked")]), Some(501));
        assert_eq!(status(&[("transfer-encoding", "gzip"), te]), Some(501));
        let old = request("/api/debates", http::Version::HTTP_10, &[("host", "a"), te]);
        assert_eq!(check(&old).map(|r| r.status), Some(400));
    }

    #[test]
    fn dot_segments_nul_and_authority_form_are_refused() {
        for target in [
            "/api/%2e%2e/metrics",
            "/a/./b",
            "/a/..",
            "/%2E%2e/x",
            "/a%00b",
            "/a?x=%00",
            "/a/.%2E/b",
            "/a/%2e",
        ] {
            assert_eq!(answer(target, &[]).map(|a| a.0), Some(400), "{target}");
        }
        for target in [
            "/api/debates",
            "/a/...",
            "/a/.b/c",
            "/a%2eb",
            "/a/%2e%2e%2e/b",
            "/a/%2/b",
            "/a/%2ex/b",
            "http://example.com/x",
        ] {
            assert_eq!(answer(target, &[]), None, "{target}");
        }
        let authority = answer("example.com:443", &[]).unwrap();
        assert!(authority.1.contains("only for CONNECT"), "{}", authority.1);
    }

    #[test]
    fn host_must_be_one_name_and_port() {
        let with_host = |hosts: &[&str]| {
            let headers: Vec<(&str, &str)> = hosts.iter().map(|h| ("host", *h)).collect();
            check(&request("/", http::Version::HTTP_11, &headers)).map(|r| r.status)
        };
        for good in [
            &["example.com"][..],
            &["example.com:8443"],
            &["127.0.0.1"],
            &["[::1]:443"],
        ] {
            assert_eq!(with_host(good), None, "{good:?}");
        }
        for bad in [
            &["example.com:443/path"][..],
            &["a@example.com"],
            &["example.com:"],
            &["a", "b"],
            &[],
        ] {
            assert_eq!(with_host(bad), Some(400), "{bad:?}");
        }
        assert_eq!(
            check(&request("/", http::Version::HTTP_10, &[])).map(|r| r.status),
            None,
            "HTTP/1.0 needs no Host"
        );
    }
}
