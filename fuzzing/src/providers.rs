//! What an LLM provider (or anyone between it and aragora) can send: streamed and whole
//! answers of each wire format, `Retry-After`, and the vote a model writes.

use crate::pick;
use aragora_engine::agents::parse_vote;
use aragora_engine::agents::providers::{
    parse_body, retry_after, Completion, StreamReader, WireError, WireFormat,
};
use http::{HeaderMap, HeaderValue};
use std::cell::RefCell;

const FORMATS: [WireFormat; 3] = [
    WireFormat::AnthropicMessages,
    WireFormat::OpenAiChat,
    WireFormat::GeminiGenerate,
];

/// Feeds `chunks` to a reader: the completion (or error) and the deltas handed out.
fn read(format: WireFormat, chunks: &[&[u8]]) -> (Result<Completion, WireError>, String) {
    let deltas = RefCell::new(String::new());
    let on_delta = |delta: &str| deltas.borrow_mut().push_str(delta);
    let mut reader = StreamReader::new(format);
    let mut result = Ok(());
    for chunk in chunks {
        result = reader.feed(chunk, &on_delta);
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| reader.finish());
    (result, deltas.into_inner())
}

/// A server-sent event stream. Input: a format byte, a cut byte, then the stream; the stream
/// is read whole and cut into chunks at every `cut`-th byte (1..=16) plus the first byte, and
/// both reads must give the same answer and the same deltas.
pub fn provider_stream(data: &[u8]) {
    let Some((format, rest)) = pick(data, &FORMATS) else {
        return;
    };
    let Some((&cut, stream)) = rest.split_first() else {
        return;
    };
    let (whole, whole_deltas) = read(format, &[stream]);
    let step = usize::from(cut % 16) + 1;
    let mut chunks: Vec<&[u8]> = Vec::new();
    if let Some((first, tail)) = stream.split_first() {
        chunks.push(std::slice::from_ref(first));
        chunks.extend(tail.chunks(step));
    }
    let (cut_up, cut_deltas) = read(format, &chunks);
    assert_eq!(
        whole, cut_up,
        "the answer depends on where the stream was cut"
    );
    assert_eq!(whole_deltas, cut_deltas, "the deltas depend on the cuts");
    if let Ok(completion) = &whole {
        assert!(!completion.text.is_empty());
        assert_eq!(completion.text, whole_deltas, "the deltas are the text");
    }
}

/// A whole answer: a format byte, then a selector of what the bytes are (the body, a
/// `Retry-After` value, a model's vote), then the bytes.
pub fn provider_body(data: &[u8]) {
    let Some((format, rest)) = pick(data, &FORMATS) else {
        return;
    };
    let Some((&what, bytes)) = rest.split_first() else {
        return;
    };
    match what % 3 {
        0 => {
            if let Err(err) = parse_body(format, bytes) {
                assert!(!err.message.is_empty());
            }
        }
        1 => {
            let Ok(value) = HeaderValue::from_bytes(bytes) else {
                return;
            };
            let mut headers = HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, value);
            let _ = retry_after(&headers);
        }
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let positions: Vec<(String, String)> = ["Claude", "gpt-4o", "Ära", "x"]
                .iter()
                .map(|name| (name.to_string(), format!("{name}'s position")))
                .collect();
            if let Some(vote) = parse_vote(&text, &positions) {
                assert!(positions.iter().any(|(name, _)| *name == vote), "{vote:?}");
            }
        }
    }
}
