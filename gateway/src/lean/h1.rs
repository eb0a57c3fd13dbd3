//! HTTP/1.1 on the wire for the lean engine: request heads parsed by `httparse` into offsets of
//! the connection's read buffer (so the parsed head is a borrowed [`Head`] view, and no header
//! is copied), response heads parsed and written out again, and bodies relayed as they came
//! (`Content-Length`, or chunked: a chunked body is scanned for its end, not decoded and
//! encoded again).

use crate::head::{Head, Version};
use bytes::{Buf, BytesMut};
use pingora::prelude::fast_timeout::fast_timeout;
use std::io;
use std::ops::Range;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAX_HEADERS: usize = 128;
/// What one read asks for.
pub const READ_CHUNK: usize = 16 * 1024;

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// A response without a length: its body ends when the upstream closes.
    UntilClose,
}

/// A request head parsed from a connection's read buffer: offsets into it.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    method: Range<usize>,
    target: Range<usize>,
    http10: bool,
    headers: Vec<(Range<usize>, Range<usize>)>,
}

/// What became of parsing the start of a buffer as a request head.
pub enum Parse {
    Complete,
    Partial,
    /// Not HTTP/1.x the way httparse reads it: pingora's parser answers it.
    Invalid,
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

impl Parsed {
    /// Parses the head at the start of `buf` into `self` (its header list reused).
    pub fn parse(&mut self, buf: &[u8]) -> Parse {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parse::Partial,
            Err(_) => return Parse::Invalid,
        };
        let (Some(method), Some(target), Some(version)) =
            (request.method, request.path, request.version)
        else {
            return Parse::Invalid;
        };
        self.len = len;
        self.method = offset(buf, method.as_bytes());
        self.target = offset(buf, target.as_bytes());
        self.http10 = version == 0;
        self.headers.clear();
        for header in request.headers.iter() {
            self.headers.push((
                offset(buf, header.name.as_bytes()),
                offset(buf, header.value),
            ));
        }
        Parse::Complete
    }

    /// The parsed head over the buffer it was parsed from.
    pub fn view<'a>(&'a self, buf: &'a [u8]) -> LeanHead<'a> {
        // httparse checked the method, target and names are tokens of visible ASCII.
        let text = |range: &Range<usize>| std::str::from_utf8(&buf[range.clone()]).unwrap_or("");
        let target = text(&self.target);
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        LeanHead {
            buf,
            parsed: self,
            method: text(&self.method),
            path,
            query,
        }
    }
}

/// A request head of the lean engine, borrowed from its connection's buffer.
pub struct LeanHead<'a> {
    buf: &'a [u8],
    parsed: &'a Parsed,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

impl LeanHead<'_> {
    pub fn http10(&self) -> bool {
        self.parsed.http10
    }

    /// Origin-form (`/path?query`): the only form the lean engine serves (others go to
    /// pingora's path, which parses them into a URI).
    pub fn origin_form(&self) -> bool {
        self.path.starts_with('/')
    }
}

impl Head for LeanHead<'_> {
    fn method(&self) -> &str {
        self.method
    }

    fn raw_target(&self) -> &[u8] {
        &self.buf[self.parsed.target.clone()]
    }

    fn path(&self) -> &str {
        self.path
    }

    fn query(&self) -> Option<&str> {
        self.query
    }

    fn has_scheme(&self) -> bool {
        false
    }

    fn has_authority(&self) -> bool {
        false
    }

    fn target_len(&self) -> usize {
        self.parsed.target.len()
    }

    fn version(&self) -> Version {
        if self.parsed.http10 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.parsed.headers.iter().map(|(name, value)| {
            (
                std::str::from_utf8(&self.buf[name.clone()]).unwrap_or(""),
                &self.buf[value.clone()],
            )
        })
    }
}

/// A `Connection` header's tokens: (close, keep-alive, upgrade).
pub fn connection_tokens(value: &[u8]) -> (bool, bool, bool) {
    let (mut close, mut keep, mut upgrade) = (false, false, false);
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        close |= token.eq_ignore_ascii_case(b"close");
        keep |= token.eq_ignore_ascii_case(b"keep-alive");
        upgrade |= token.eq_ignore_ascii_case(b"upgrade");
    }
    (close, keep, upgrade)
}

/// A `Content-Length` value: decimal digits, any number of them (leading zeros included, as
/// `framing::check` and a replica read them); a length beyond `u64` saturates, so it is over
/// every limit instead of unreadable (an unreadable one would read as no body at all).
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Whether a `Transfer-Encoding` value is exactly `chunked`.
pub fn only_chunked(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// Hop-by-hop headers: never passed on in either direction.
pub fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|hop| name.eq_ignore_ascii_case(hop))
}

pub fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A response head of a replica, read once.
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The replica's connection carries the next request.
    pub keep_upstream: bool,
}

/// Where a parsed response head's status and passing headers go: HTTP/1.1 bytes for this
/// engine's clients, a header map for the h2 engine's.
pub trait HeadSink {
    /// The status comes first: a sink written before starts over.
    fn status(&mut self, status: u16, reason: &str);
    fn header(&mut self, name: &str, value: &[u8]) -> io::Result<()>;
}

/// The status line and headers as HTTP/1.1 bytes; the caller appends its own and the final
/// CRLF.
impl HeadSink for Vec<u8> {
    fn status(&mut self, status: u16, reason: &str) {
        self.clear();
        self.extend_from_slice(b"HTTP/1.1 ");
        self.extend_from_slice(&itoa3(status));
        self.push(b' ');
        self.extend_from_slice(reason.as_bytes());
        self.extend_from_slice(b"\r\n");
    }

    fn header(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        push_header(self, name, value);
        Ok(())
    }
}

/// Parses a response head at the start of `buf`, giving its status and the headers that pass
/// (not hop-by-hop, not `dropped`) to `out`. `Ok(None)`: not all of it is here yet.
pub fn parse_response(
    buf: &[u8],
    head_method: bool,
    max_head: usize,
    out: &mut impl HeadSink,
    dropped: impl Fn(&str) -> bool,
) -> io::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(invalid("the replica's head is too large")),
        Err(error) => return Err(invalid(&format!("the replica's head: {error}"))),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let (mut length, mut chunked, mut other_coding, mut close) = (None, false, false, false);
    let bodiless = head_method || status < 200 || status == 204 || status == 304;
    out.status(status, response.reason.unwrap_or(""));
    for header in response.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(content_length(value).ok_or_else(|| invalid("the replica's length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = only_chunked(value);
            other_coding |= !chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= connection_tokens(value).0;
        }
        if hop_by_hop(name) || dropped(name) {
            continue;
        }
        out.header(name, value)?;
    }
    let framing = match (bodiless, chunked, other_coding, length) {
        (true, ..) => Framing::None,
        (false, _, true, _) => Framing::UntilClose,
        (false, true, false, _) => Framing::Chunked,
        (false, false, false, Some(0)) => Framing::None,
        (false, false, false, Some(n)) => Framing::Length(n),
        (false, false, false, None) => Framing::UntilClose,
    };
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        keep_upstream: http11 && !close && framing != Framing::UntilClose,
    }))
}

/// A three-digit status code as text, without formatting machinery.
pub fn itoa3(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

pub fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Finds where a chunked body ends, byte by byte across reads, without decoding it. Strict
/// (RFC 9112 §7.1): what it passes on as one body, a replica must read as the same body, so
/// whitespace after a size is only allowed before `;` or the CRLF, and a bare LF ends nothing
/// (it is refused in a size line, an extension and a trailer alike).
#[derive(Debug, Clone, Copy)]
pub enum Chunks {
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size: an extension or the CRLF follows.
    SizeWs {
        size: u64,
    },
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

impl Chunks {
    pub fn new() -> Self {
        Chunks::Size {
            value: 0,
            digits: 0,
        }
    }

    /// How many bytes of `buf` belong to the body, and whether the body ends there.
    pub fn scan(&mut self, buf: &[u8]) -> io::Result<(usize, bool)> {
        self.scan_data(buf, |_| {})
    }

    /// [`scan`](Self::scan), giving each range of `buf` that is chunk data (the body decoded)
    /// to `data`.
    pub fn scan_data(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> io::Result<(usize, bool)> {
        let bad = || invalid("bad chunked encoding");
        let mut i = 0;
        while i < buf.len() {
            let byte = buf[i];
            *self = match *self {
                Chunks::Size { value, digits } => match (byte as char).to_digit(16) {
                    Some(d) if digits < 15 => Chunks::Size {
                        value: value * 16 + u64::from(d),
                        digits: digits + 1,
                    },
                    None if digits > 0 && byte == b';' => Chunks::Extension { size: value },
                    None if digits > 0 && matches!(byte, b' ' | b'\t') => {
                        Chunks::SizeWs { size: value }
                    }
                    None if digits > 0 && byte == b'\r' => Chunks::SizeLf { size: value },
                    _ => return Err(bad()),
                },
                Chunks::SizeWs { size } => match byte {
                    b' ' | b'\t' => Chunks::SizeWs { size },
                    b';' => Chunks::Extension { size },
                    b'\r' => Chunks::SizeLf { size },
                    _ => return Err(bad()),
                },
                Chunks::Extension { size } => match byte {
                    b'\r' => Chunks::SizeLf { size },
                    b'\n' => return Err(bad()),
                    _ => Chunks::Extension { size },
                },
                Chunks::SizeLf { size: 0 } if byte == b'\n' => Chunks::TrailerStart,
                Chunks::SizeLf { size } if byte == b'\n' => Chunks::Data(size),
                Chunks::Data(left) => {
                    let take = (buf.len() - i).min(left as usize);
                    data(i..i + take);
                    i += take;
                    *self = if left == take as u64 {
                        Chunks::DataCr
                    } else {
                        Chunks::Data(left - take as u64)
                    };
                    continue;
                }
                Chunks::DataCr if byte == b'\r' => Chunks::DataLf,
                Chunks::DataLf if byte == b'\n' => Chunks::new(),
                Chunks::TrailerStart => match byte {
                    b'\r' => Chunks::TrailerLf { empty: true },
                    b'\n' => return Err(bad()),
                    _ => Chunks::TrailerLine,
                },
                Chunks::TrailerLine => match byte {
                    b'\r' => Chunks::TrailerLf { empty: false },
                    b'\n' => return Err(bad()),
                    _ => Chunks::TrailerLine,
                },
                Chunks::TrailerLf { empty } if byte == b'\n' => {
                    if empty {
                        *self = Chunks::Done;
                        return Ok((i + 1, true));
                    }
                    Chunks::TrailerStart
                }
                Chunks::Done => return Ok((i, true)),
                _ => return Err(bad()),
            };
            i += 1;
        }
        Ok((i, matches!(self, Chunks::Done)))
    }
}

impl Default for Chunks {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads more of `src` into `buf` within `wait`; `Ok(0)` at its end.
pub async fn fill<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut BytesMut,
    wait: Duration,
) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    fast_timeout(wait, src.read_buf(buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))?
}

/// Writes `bytes` to `dst` within `wait`.
pub async fn send<W: AsyncWrite + Unpin>(
    dst: &mut W,
    bytes: &[u8],
    wait: Duration,
) -> io::Result<()> {
    fast_timeout(wait, async {
        dst.write_all(bytes).await?;
        dst.flush().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
}

/// Which side of a relay failed.
#[derive(Debug)]
pub enum RelayError {
    /// Reading the source (`read_side`) or writing the destination.
    Read(io::Error),
    Write(io::Error),
    /// The body is over the limit the `counted` callback enforces.
    Refused,
}

/// Sends `out` (a head, maybe empty) and then the body of `framing` from `buf` and `src` to
/// `dst`, as the bytes came; what of `buf` follows the body stays there. `counted` sees the
/// size of each part of the body and may stop it (`false`).
pub async fn relay<R, W>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    out: &mut Vec<u8>,
    framing: Framing,
    (read_wait, write_wait): (Duration, Duration),
    mut counted: impl FnMut(usize) -> bool,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunks = Chunks::new();
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        // The part of `buf` that is body, and whether the body ends with it.
        let (take, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(_) => {
                let take = (buf.len() as u64).min(left) as usize;
                left -= take as u64;
                (take, left == 0)
            }
            Framing::Chunked => chunks.scan(buf).map_err(RelayError::Read)?,
            Framing::UntilClose => (buf.len(), false),
        };
        if take > 0 && !counted(take) {
            return Err(RelayError::Refused);
        }
        // The head goes out with the first part of the body, in one write.
        if !out.is_empty() {
            out.extend_from_slice(&buf[..take]);
            send(dst, out, write_wait)
                .await
                .map_err(RelayError::Write)?;
            out.clear();
        } else if take > 0 {
            send(dst, &buf[..take], write_wait)
                .await
                .map_err(RelayError::Write)?;
        }
        buf.advance(take);
        if done {
            return Ok(());
        }
        match fill(src, buf, read_wait).await {
            Ok(0) if framing == Framing::UntilClose => return Ok(()),
            Ok(0) => {
                return Err(RelayError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body cut short",
                )))
            }
            Ok(_) => {}
            Err(error) => return Err(RelayError::Read(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_scanner_refuses_a_bad_size_and_a_bare_lf() {
        assert!(Chunks::new().scan(b"zz\r\n").is_err());
        assert!(Chunks::new().scan(b"4\nWiki").is_err());
        assert!(Chunks::new().scan(b"4\r\nWikiX").is_err());
        assert!(Chunks::new().scan(b"ffffffffffffffff0\r\n").is_err());
        // Whitespace after the size only before an extension or the CRLF.
        assert!(Chunks::new().scan(b"4 x\r\n").is_err());
        assert!(Chunks::new().scan(b"4 \t;a=b\r\nWiki\r\n").is_ok());
        // A bare LF in a trailer ends neither the line nor the body.
        assert!(Chunks::new().scan(b"0\r\nX-T: 1\n\r\n").is_err());
        assert!(Chunks::new().scan(b"0\r\n\n").is_err());
    }

    #[test]
    fn a_length_of_many_digits_is_read_not_dropped() {
        assert_eq!(content_length(b"0000000000000000000005"), Some(5));
        assert_eq!(content_length(b"99999999999999999999999"), Some(u64::MAX));
        assert_eq!(content_length(b"5 "), None);
        assert_eq!(content_length(b""), None);
    }

    #[test]
    fn chunk_data_is_decoded_across_reads() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut chunks = Chunks::new();
            let mut decoded = Vec::new();
            let (a, _) = chunks
                .scan_data(&body[..split], |r| decoded.extend_from_slice(&body[r]))
                .unwrap();
            let rest = &body[a..];
            let (_, done) = chunks
                .scan_data(rest, |r| decoded.extend_from_slice(&rest[r]))
                .unwrap();
            assert!(done, "split at {split}");
            assert_eq!(decoded, b"Wikipedia", "split at {split}");
        }
    }

    #[test]
    fn chunk_scanner_finds_the_end_across_reads() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        for split in 0..body.len() {
            let mut chunks = Chunks::new();
            let end = body.len() - "GET /next".len();
            let (a, done_a) = chunks.scan(&body[..split]).unwrap();
            if done_a {
                // The body ended in the first part: the next request's bytes are not taken.
                assert_eq!(a, end, "split at {split}");
                continue;
            }
            assert_eq!(a, split);
            let (b, done_b) = chunks.scan(&body[split..]).unwrap();
            assert!(done_b);
            assert_eq!(a + b, end, "split at {split}");
        }
    }

    #[test]
    fn a_parsed_head_reads_like_pingoras() {
        let buf = b"GET /api/debates/abc?x=1 HTTP/1.1\r\nHost: a\r\nCookie: aragora-affinity=00ff\r\nX-Request-Id: r-1\r\n\r\nrest";
        let mut parsed = Parsed::default();
        assert!(matches!(parsed.parse(buf), Parse::Complete));
        let view = parsed.view(buf);
        assert_eq!(parsed.len, buf.len() - 4);
        assert_eq!(
            (view.method(), view.path(), view.query()),
            ("GET", "/api/debates/abc", Some("x=1"))
        );
        assert_eq!(view.text("x-request-id"), Some("r-1"));
        let sticky = crate::route::Stickiness::of(&view);
        assert_eq!(sticky.debate.as_deref(), Some("abc"));
        assert_eq!(sticky.affinity.as_deref(), Some("00ff"));
        let pingora = pingora::http::RequestHeader::build("GET", b"/api/debates/abc?x=1", None)
            .map(|mut header| {
                for (name, value) in view.headers() {
                    header.append_header(name.to_string(), value).unwrap();
                }
                header
            })
            .unwrap();
        assert_eq!(view.head_size(), pingora.head_size());
        assert_eq!(crate::framing::check(&view), None);
        let mut partial = Parsed::default();
        assert!(matches!(partial.parse(&buf[..20]), Parse::Partial));
    }
}
