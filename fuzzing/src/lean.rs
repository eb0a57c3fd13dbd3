//! The lean HTTP/1.1 engine's reading of client bytes (`aragora_gateway::lean`): request heads
//! (`h1::Parsed`, `lean::examine`, then the gateway's framing and size checks), the head it
//! forwards (`lean::forward_head`), and the end of a chunked body (`h1::Chunks`), checked
//! against a strict reference decoder and an encoder.

use aragora_gateway::framing;
use aragora_gateway::head::{Head, Version};
use aragora_gateway::lean::h1::{self, Chunks, Framing, Parse, Parsed};
use aragora_gateway::lean::{examine, forward_head};

/// The gateway's default limits (`ARAGORA_GATEWAY_MAX_HEADER_BYTES`, `..._MAX_BODY_BYTES`).
const MAX_HEAD: usize = 32 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// The first byte picks what the rest is: a request (head and whatever follows), a chunked
/// body as it came (split where the byte says), or the makings of a valid chunked body.
pub fn lean_h1(data: &[u8]) {
    let Some((&what, rest)) = data.split_first() else {
        return;
    };
    match what % 3 {
        0 => request(rest),
        1 => chunked_as_sent(usize::from(what / 3), rest),
        _ => chunked_round_trip(rest),
    }
}

/// What the engine does with a head, as the client would notice it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// pingora's path reads it (and answers what it refuses: 400).
    Fallback,
    Refused(u16),
    Served(Framing),
}

fn request(buf: &[u8]) {
    let mut parsed = Parsed::default();
    match parsed.parse(buf) {
        Parse::Complete => {}
        Parse::Partial => {
            // Less of a partial head is not a whole one.
            let half = &buf[..buf.len() / 2];
            assert!(!matches!(Parsed::default().parse(half), Parse::Complete));
            return;
        }
        Parse::Invalid => return,
    }
    let len = parsed.len;
    // The head ends where its first empty line does: the same head parses from exactly its
    // bytes, and one byte less is not a head yet.
    assert!(len <= buf.len() && buf[..len].ends_with(b"\n"));
    let mut again = Parsed::default();
    assert!(matches!(again.parse(&buf[..len]), Parse::Complete));
    assert_eq!(again.len, len);
    assert!(matches!(
        Parsed::default().parse(&buf[..len - 1]),
        Parse::Partial
    ));

    let view = parsed.view(buf);
    let raw = view.raw_target();
    let written = match view.query() {
        Some(query) => format!("{}?{query}", view.path()),
        None => view.path().to_string(),
    };
    assert_eq!(raw, written.as_bytes());
    assert!(!view.method().is_empty());

    let lengths: Vec<&[u8]> = view.values("content-length").collect();
    let codings: Vec<&[u8]> = view.values("transfer-encoding").collect();
    let checked = framing::check(&view);
    if !lengths.is_empty() && !codings.is_empty() {
        // CL.TE / TE.CL: never passed on, on either engine.
        assert_eq!(checked.as_ref().map(|r| r.status), Some(400));
    }
    let verdict = match examine(&view) {
        None => Verdict::Fallback,
        Some(request) => match checked.or_else(|| framing::sizes(&view, MAX_HEAD, MAX_BODY)) {
            Some(refusal) => Verdict::Refused(refusal.status),
            None => Verdict::Served(request.framing),
        },
    };
    match &verdict {
        Verdict::Fallback => {
            let upgrade = view.value("upgrade").is_some()
                || view
                    .values("connection")
                    .any(|value| h1::connection_tokens(value).2);
            assert!(upgrade || !raw.starts_with(b"/"), "{verdict:?}");
        }
        Verdict::Refused(status) => {
            assert!(matches!(status, 400 | 413 | 431 | 501), "{status}");
        }
        Verdict::Served(framing) => {
            assert_eq!(*framing, reference_framing(&view, &lengths, &codings));
            forwarded(&view, *framing);
            body(&buf[len..], *framing);
        }
    }
}

/// How the body of an accepted head ends, read from its headers without the engine's code:
/// one `chunked` coding, or every length the same number (leading zeros and all).
fn reference_framing(view: &impl Head, lengths: &[&[u8]], codings: &[&[u8]]) -> Framing {
    if !codings.is_empty() {
        assert_eq!(codings.len(), 1);
        assert!(codings[0].trim_ascii().eq_ignore_ascii_case(b"chunked"));
        assert_eq!(view.version(), Version::Http11);
        return Framing::Chunked;
    }
    let Some(first) = lengths.first() else {
        return Framing::None;
    };
    assert!(lengths.iter().all(|length| length == first));
    let digits = first.trim_ascii_start();
    assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
    let significant: &[u8] = {
        let start = digits
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(digits.len());
        &digits[start..]
    };
    // An accepted length is within the body limit, so it has few digits.
    assert!(significant.len() <= 7, "{first:?}");
    let value = significant
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    assert!(value <= MAX_BODY as u64);
    if value == 0 {
        Framing::None
    } else {
        Framing::Length(value)
    }
}

/// The head sent to the replica reads as the client's did: one head, the same request line and
/// framing, no hop-by-hop header, and the gateway's forwarded headers once each.
fn forwarded(view: &aragora_gateway::lean::h1::LeanHead<'_>, framing: Framing) {
    let own = [
        ("X-Request-Id", http::HeaderValue::from_static("r-1")),
        (
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ),
        (
            "X-Forwarded-For",
            http::HeaderValue::from_static("203.0.113.9"),
        ),
        ("X-Forwarded-Proto", http::HeaderValue::from_static("https")),
    ];
    let http10 = view.version() == Version::Http10;
    let mut out = Vec::new();
    forward_head(view, http10, &own, &mut out);
    // A head within a few headers of the limit goes out with more than a parser of that
    // capacity reads (the engine's hyper takes 100, under both): the replica refuses it, 431.
    if view.headers().count() + own.len() > aragora_gateway::lean::h1::MAX_HEADERS {
        return;
    }
    let mut parsed = Parsed::default();
    assert!(
        matches!(parsed.parse(&out), Parse::Complete),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(parsed.len, out.len());
    let sent = parsed.view(&out);
    assert_eq!(sent.method(), view.method());
    assert_eq!(sent.raw_target(), view.raw_target());
    assert_eq!(sent.version(), view.version());
    let request = examine(&sent).expect("the forwarded head is served as it is");
    assert_eq!(request.framing, framing);
    assert_eq!(framing::check(&sent), None);
    for (name, _) in sent.headers() {
        assert!(
            !h1::hop_by_hop(name) || (http10 && name == "Connection"),
            "{name}"
        );
    }
    for (name, value) in &own {
        let values: Vec<&[u8]> = sent.values(name).collect();
        assert_eq!(values, [value.as_bytes()], "{name}");
    }
}

/// What follows an accepted head: its body ends where its framing says, and the scanner
/// agrees with the reference decoder on a chunked one.
fn body(rest: &[u8], framing: Framing) {
    if framing == Framing::Chunked {
        agree(rest, &[rest.len() / 2]);
    }
}

/// What the reference decoder makes of a chunked body at the start of some bytes.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// The body's length in bytes (final CRLF included) and its data.
    Whole(usize, Vec<u8>),
    /// Valid so far; more is needed.
    Partial,
    Invalid,
}

/// A strict decoder of RFC 9112 §7.1: `size *(SP / HTAB) [";" ext] CRLF data CRLF ...`, the
/// last chunk `0`, then trailer lines (no CR or LF in them) and an empty line. At most 15 hex
/// digits of size (the scanner's bound).
fn reference(bytes: &[u8]) -> Decoded {
    let mut at = 0;
    let mut data = Vec::new();
    // `None`: the bytes ran out (Partial).
    let next = |at: &mut usize| -> Option<u8> {
        let byte = bytes.get(*at).copied();
        *at += 1;
        byte
    };
    macro_rules! byte {
        () => {
            match next(&mut at) {
                Some(byte) => byte,
                None => return Decoded::Partial,
            }
        };
    }
    macro_rules! crlf_after_cr {
        () => {
            if byte!() != b'\n' {
                return Decoded::Invalid;
            }
        };
    }
    loop {
        let (mut size, mut digits) = (0u64, 0);
        let mut byte = byte!();
        while let Some(digit) = (byte as char).to_digit(16) {
            digits += 1;
            if digits > 15 {
                return Decoded::Invalid;
            }
            size = size * 16 + u64::from(digit);
            byte = byte!();
        }
        if digits == 0 {
            return Decoded::Invalid;
        }
        while matches!(byte, b' ' | b'\t') {
            byte = byte!();
        }
        if byte == b';' {
            loop {
                byte = byte!();
                match byte {
                    b'\r' => break,
                    b'\n' => return Decoded::Invalid,
                    _ => {}
                }
            }
        }
        if byte != b'\r' {
            return Decoded::Invalid;
        }
        crlf_after_cr!();
        if size == 0 {
            loop {
                match byte!() {
                    b'\r' => {
                        crlf_after_cr!();
                        return Decoded::Whole(at, data);
                    }
                    b'\n' => return Decoded::Invalid,
                    _ => loop {
                        match byte!() {
                            b'\r' => {
                                crlf_after_cr!();
                                break;
                            }
                            b'\n' => return Decoded::Invalid,
                            _ => {}
                        }
                    },
                }
            }
        }
        let left = bytes.len().saturating_sub(at) as u64;
        if left < size {
            return Decoded::Partial;
        }
        data.extend_from_slice(&bytes[at..at + size as usize]);
        at += size as usize;
        if byte!() != b'\r' {
            return Decoded::Invalid;
        }
        crlf_after_cr!();
    }
}

/// What the scanner makes of `bytes` fed in the parts `cuts` make, as the reference says it.
fn scanned(bytes: &[u8], cuts: &[usize]) -> Decoded {
    let mut chunks = Chunks::new();
    let mut from = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|&cut| cut.min(bytes.len())).collect();
    bounds.sort_unstable();
    bounds.push(bytes.len());
    for to in bounds {
        if to < from {
            continue;
        }
        match chunks.scan(&bytes[from..to]) {
            Err(_) => return Decoded::Invalid,
            Ok((taken, true)) => return Decoded::Whole(from + taken, Vec::new()),
            Ok((taken, false)) => {
                assert_eq!(taken, to - from, "a part taken short without an end");
                from = to;
            }
        }
    }
    Decoded::Partial
}

/// The scanner and the reference agree on where the body ends, whether it is valid, and
/// whether more is needed, however the bytes are cut.
fn agree(bytes: &[u8], cuts: &[usize]) -> Option<Vec<u8>> {
    let reference = reference(bytes);
    let scanned = scanned(bytes, cuts);
    match (&reference, &scanned) {
        (Decoded::Whole(end, data), Decoded::Whole(scanned_end, _)) => {
            assert_eq!(end, scanned_end, "{:?}", String::from_utf8_lossy(bytes));
            Some(data.clone())
        }
        _ => {
            assert_eq!(
                reference,
                scanned,
                "{:?} cut at {cuts:?}",
                String::from_utf8_lossy(bytes)
            );
            None
        }
    }
}

fn chunked_as_sent(cut: usize, bytes: &[u8]) {
    agree(bytes, &[cut]);
}

/// Encodes a body chunk by chunk from `data` (a length byte, the chunk's bytes, a flag byte
/// for the size's spelling and an extension), a trailer or not, and bytes of the next request
/// after it: decoding gives the body back, and the scanner ends exactly at its end, fed whole,
/// byte by byte, or cut in two.
fn chunked_round_trip(data: &[u8]) {
    let mut rest = data;
    let mut encoded = Vec::new();
    let mut body = Vec::new();
    let mut flags = 0u8;
    while let [len, flag, tail @ ..] = rest {
        let len = usize::from(*len % 64).min(tail.len());
        if len == 0 {
            flags = *flag;
            break;
        }
        let (chunk, tail) = tail.split_at(len);
        let size = match flag % 3 {
            0 => format!("{len:x}"),
            1 => format!("{len:04X}"),
            _ => format!("{len:x}"),
        };
        encoded.extend_from_slice(size.as_bytes());
        if flag & 4 != 0 {
            encoded.extend_from_slice(b" ;name=\"v a l\"");
        } else if flag & 8 != 0 {
            encoded.extend_from_slice(b";x");
        }
        encoded.extend_from_slice(b"\r\n");
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
        body.extend_from_slice(chunk);
        rest = tail;
    }
    encoded.extend_from_slice(b"0\r\n");
    if flags & 1 != 0 {
        encoded.extend_from_slice(b"X-Checksum: abc\r\nX-More: 1\r\n");
    }
    encoded.extend_from_slice(b"\r\n");
    let end = encoded.len();
    encoded.extend_from_slice(b"GET /next HTTP/1.1\r\n");
    let decoded = agree(&encoded, &[]).expect("a valid encoding decodes");
    assert_eq!(decoded, body);
    assert_eq!(scanned(&encoded, &[]), Decoded::Whole(end, Vec::new()));
    let every: Vec<usize> = (1..encoded.len()).collect();
    assert_eq!(scanned(&encoded, &every), Decoded::Whole(end, Vec::new()));
    let cut = usize::from(flags) * encoded.len() / 256;
    assert_eq!(scanned(&encoded, &[cut]), Decoded::Whole(end, Vec::new()));
}
