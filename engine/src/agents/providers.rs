//! HTTP clients for the LLM providers' wire formats, with retries.
//!
//! Three families cover every provider: Anthropic's Messages API, OpenAI's Chat Completions
//! (also spoken by xAI, Mistral, OpenRouter and any OpenAI-compatible server such as Ollama,
//! vLLM or LM Studio) and Gemini's `generateContent`. Each can answer whole or as a stream of
//! server-sent events; streamed text is handed to the caller delta by delta.
//!
//! One [`ProviderClient::complete`] call retries 429 and 5xx answers and connection failures
//! with jittered exponential backoff, honouring `Retry-After`; other 4xx answers and malformed
//! bodies fail at once (retrying them cannot help).

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// The providers aragora can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Anthropic,
    Openai,
    Gemini,
    Xai,
    Mistral,
    Openrouter,
    OpenaiCompatible,
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    AnthropicMessages,
    OpenAiChat,
    GeminiGenerate,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 7] = [
        Self::Anthropic,
        Self::Openai,
        Self::Gemini,
        Self::Xai,
        Self::Mistral,
        Self::Openrouter,
        Self::OpenaiCompatible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Openai => "openai",
            Self::Gemini => "gemini",
            Self::Xai => "xai",
            Self::Mistral => "mistral",
            Self::Openrouter => "openrouter",
            Self::OpenaiCompatible => "openai-compatible",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn wire_format(self) -> WireFormat {
        match self {
            Self::Anthropic => WireFormat::AnthropicMessages,
            Self::Gemini => WireFormat::GeminiGenerate,
            _ => WireFormat::OpenAiChat,
        }
    }

    /// The environment variable holding the API key.
    pub fn key_env(self) -> &'static str {
        match self {
            Self::Anthropic => "ANTHROPIC_API_KEY",
            Self::Openai => "OPENAI_API_KEY",
            Self::Gemini => "GEMINI_API_KEY",
            Self::Xai => "XAI_API_KEY",
            Self::Mistral => "MISTRAL_API_KEY",
            Self::Openrouter => "OPENROUTER_API_KEY",
            Self::OpenaiCompatible => "ARAGORA_OPENAI_COMPATIBLE_API_KEY",
        }
    }
}

/// What a client needs to reach one provider. `Debug` shows whether a key is set, never it.
#[derive(Clone)]
pub struct ProviderEndpoint {
    pub kind: ProviderKind,
    /// Base URL including the API version (`https://api.openai.com/v1`).
    pub base_url: String,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for ProviderEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEndpoint")
            .field("kind", &self.kind)
            .field("base_url", &aragora_config::redact_url(&self.base_url))
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| aragora_config::MASK),
            )
            .finish()
    }
}

/// Retry policy for one call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// One completion request: a system prompt and a user message.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub model: String,
    pub system: String,
    pub user: String,
    pub max_tokens: u32,
    pub stream: bool,
}

/// A provider's answer and what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Why a provider call failed; `kind` is the `error_type` metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{provider} {kind}: {message}")]
pub struct ProviderError {
    pub provider: &'static str,
    pub kind: ProviderErrorKind,
    pub message: String,
    /// What the provider asked us to wait, if it said.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    RateLimited,
    ServerError,
    ClientError,
    Malformed,
    Connection,
    Timeout,
}

impl ProviderErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::ClientError => "client_error",
            Self::Malformed => "malformed_response",
            Self::Connection => "connection",
            Self::Timeout => "timeout",
        }
    }

    /// Whether another attempt can succeed where this one failed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::ServerError | Self::Connection
        )
    }
}

impl std::fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client for one provider endpoint.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    endpoint: ProviderEndpoint,
    retry: RetryPolicy,
}

/// How long a provider asks to be left alone (`Retry-After`: seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        // Beyond what a Duration holds (`1e400`, 24 digits) is "a very long time", which the
        // caller caps at its longest delay; `from_secs_f64` panicked there (found by fuzzing).
        return (seconds >= 0.0)
            .then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Full-jitter-free "equal jitter": half the exponential delay fixed, half random, so retries
/// from many agents spread out but none retries immediately.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exponential = policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(policy.max_delay);
    let half = exponential / 2;
    half + half.mul_f64(rand::random::<f64>())
}

impl ProviderClient {
    pub fn new(http: reqwest::Client, endpoint: ProviderEndpoint, retry: RetryPolicy) -> Self {
        Self {
            http,
            endpoint,
            retry,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.endpoint.kind
    }

    /// An error of this provider. Its message (which ends up in the debate's events and the
    /// log) is scrubbed of the key and of any password in the base URL: a provider's error body
    /// may quote the key it refused, and reqwest's errors quote the URL.
    fn error(&self, kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        let secrets: Vec<String> = self
            .endpoint
            .api_key
            .iter()
            .cloned()
            .chain(aragora_config::url_password(&self.endpoint.base_url).map(str::to_string))
            .collect();
        ProviderError {
            provider: self.endpoint.kind.as_str(),
            kind,
            message: aragora_config::scrub(&message.into(), &secrets),
            retry_after: None,
        }
    }

    /// Sends the prompt, retrying what can be retried; streamed text goes to `on_delta`.
    pub async fn complete(
        &self,
        prompt: &Prompt,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Completion, ProviderError> {
        let mut attempt = 0;
        loop {
            match self.attempt(prompt, on_delta).await {
                Ok(completion) => return Ok(completion),
                Err(err) if err.kind.retryable() && attempt < self.retry.max_retries => {
                    let wait = err
                        .retry_after
                        .map(|asked| asked.min(self.retry.max_delay))
                        .unwrap_or_else(|| backoff(&self.retry, attempt));
                    tracing::info!(provider = self.endpoint.kind.as_str(), error = %err, attempt, wait_ms = wait.as_millis() as u64, "provider call failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn request(&self, prompt: &Prompt) -> reqwest::RequestBuilder {
        let base = self.endpoint.base_url.trim_end_matches('/');
        let key = self.endpoint.api_key.clone().unwrap_or_default();
        match self.endpoint.kind.wire_format() {
            WireFormat::AnthropicMessages => self
                .http
                .post(format!("{base}/messages"))
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
                .json(&json!({
                    "model": prompt.model,
                    "max_tokens": prompt.max_tokens,
                    "system": prompt.system,
                    "messages": [{"role": "user", "content": prompt.user}],
                    "stream": prompt.stream,
                })),
            WireFormat::OpenAiChat => {
                let mut body = json!({
                    "model": prompt.model,
                    "max_tokens": prompt.max_tokens,
                    "messages": [
                        {"role": "system", "content": prompt.system},
                        {"role": "user", "content": prompt.user},
                    ],
                    "stream": prompt.stream,
                });
                if prompt.stream {
                    body["stream_options"] = json!({"include_usage": true});
                }
                let request = self
                    .http
                    .post(format!("{base}/chat/completions"))
                    .json(&body);
                if key.is_empty() {
                    request
                } else {
                    request.bearer_auth(key)
                }
            }
            WireFormat::GeminiGenerate => {
                let method = if prompt.stream {
                    "streamGenerateContent?alt=sse"
                } else {
                    "generateContent"
                };
                self.http
                    .post(format!("{base}/models/{}:{method}", prompt.model))
                    .header("x-goog-api-key", key)
                    .json(&json!({
                        "systemInstruction": {"parts": [{"text": prompt.system}]},
                        "contents": [{"role": "user", "parts": [{"text": prompt.user}]}],
                        "generationConfig": {"maxOutputTokens": prompt.max_tokens},
                    }))
            }
        }
    }

    async fn attempt(
        &self,
        prompt: &Prompt,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Completion, ProviderError> {
        let response = self.request(prompt).send().await.map_err(|err| {
            let kind = if err.is_timeout() {
                ProviderErrorKind::Timeout
            } else {
                ProviderErrorKind::Connection
            };
            self.error(kind, format!("request failed: {err}"))
        })?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                ProviderErrorKind::RateLimited
            } else if status.is_server_error() {
                ProviderErrorKind::ServerError
            } else {
                ProviderErrorKind::ClientError
            };
            let snippet: String = body.chars().take(300).collect();
            return Err(ProviderError {
                retry_after: wait,
                ..self.error(kind, format!("HTTP {status}: {snippet}"))
            });
        }
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if streamed {
            self.read_stream(response, on_delta).await
        } else {
            let body = response.bytes().await.map_err(|err| {
                self.error(
                    ProviderErrorKind::Connection,
                    format!("body read failed: {err}"),
                )
            })?;
            parse_body(self.endpoint.kind.wire_format(), &body).map_err(|err| self.wire_error(err))
        }
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Completion, ProviderError> {
        let mut reader = StreamReader::new(self.endpoint.kind.wire_format());
        let mut bytes = response.bytes_stream();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|err| {
                self.error(
                    ProviderErrorKind::Connection,
                    format!("stream broke: {err}"),
                )
            })?;
            reader
                .feed(&chunk, on_delta)
                .map_err(|err| self.wire_error(err))?;
        }
        reader.finish().map_err(|err| self.wire_error(err))
    }

    fn wire_error(&self, err: WireError) -> ProviderError {
        self.error(err.kind, err.message)
    }
}

/// What was wrong with an answer's bytes, before the client names its provider and scrubs its
/// key from the message ([`ProviderClient`]'s `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub kind: ProviderErrorKind,
    pub message: String,
}

impl WireError {
    fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A whole (not streamed) answer's body in `format`: its text and token counts, or why not.
/// Pure, so that any bytes a provider or a man in the middle can send are tried (`fuzzing/`).
pub fn parse_body(format: WireFormat, body: &[u8]) -> Result<Completion, WireError> {
    let body: Value = serde_json::from_slice(body).map_err(|err| {
        WireError::new(
            ProviderErrorKind::Malformed,
            format!("body is not JSON: {err}"),
        )
    })?;
    let text = match format {
        WireFormat::AnthropicMessages => body["content"].as_array().map(|blocks| {
            blocks
                .iter()
                .filter_map(|block| block["text"].as_str())
                .collect::<String>()
        }),
        WireFormat::OpenAiChat => body["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string),
        WireFormat::GeminiGenerate => gemini_text(&body),
    };
    let text = text.ok_or_else(|| {
        WireError::new(
            ProviderErrorKind::Malformed,
            format!("no text in the answer: {}", truncate(&body.to_string())),
        )
    })?;
    let (input_tokens, output_tokens) = usage(format, &body);
    Ok(Completion {
        text,
        input_tokens,
        output_tokens,
    })
}

/// The longest server-sent event line a stream may carry. Events are single deltas (bytes to a
/// few KiB); without a bound a stream that never sends a newline would grow the buffer until
/// the agent timeout.
pub const MAX_STREAM_LINE: usize = 1024 * 1024;

/// A streamed answer read chunk by chunk as it arrives: server-sent event lines in, deltas and
/// the completion out. Lines are cut on bytes and decoded whole, so a character split across
/// two chunks arrives intact, and the result does not depend on where the network cut.
pub struct StreamReader {
    format: WireFormat,
    /// Bytes of the line not yet ended by `\n`.
    pending: Vec<u8>,
    completion: Completion,
    finished: bool,
}

impl StreamReader {
    pub fn new(format: WireFormat) -> Self {
        Self {
            format,
            pending: Vec::new(),
            completion: Completion::default(),
            finished: false,
        }
    }

    /// Reads the next chunk; each text delta goes to `on_delta` as its line completes.
    pub fn feed(&mut self, chunk: &[u8], on_delta: &dyn Fn(&str)) -> Result<(), WireError> {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.pending[start..start + end]).into_owned();
            start += end + 1;
            self.line(line.trim_end_matches('\r'), on_delta)?;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_STREAM_LINE {
            return Err(WireError::new(
                ProviderErrorKind::Malformed,
                format!("a stream line is over {MAX_STREAM_LINE} bytes"),
            ));
        }
        Ok(())
    }

    fn line(&mut self, line: &str, on_delta: &dyn Fn(&str)) -> Result<(), WireError> {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            return Ok(());
        };
        if data == "[DONE]" {
            self.finished = true;
            return Ok(());
        }
        let event: Value = serde_json::from_str(data).map_err(|err| {
            WireError::new(
                ProviderErrorKind::Malformed,
                format!("stream event is not JSON: {err}"),
            )
        })?;
        if let Some(delta) = stream_delta(self.format, &event) {
            if !delta.is_empty() {
                on_delta(&delta);
                self.completion.text.push_str(&delta);
            }
        }
        let (input, output) = usage(self.format, &event);
        self.completion.input_tokens = self.completion.input_tokens.max(input);
        self.completion.output_tokens = self.completion.output_tokens.max(output);
        if self.format == WireFormat::AnthropicMessages && event["type"] == "message_stop" {
            self.finished = true;
        }
        if event.get("error").is_some() {
            return Err(WireError::new(
                ProviderErrorKind::ServerError,
                format!("error in stream: {}", truncate(&event["error"].to_string())),
            ));
        }
        Ok(())
    }

    /// The completion once the stream has ended (a last line without `\n` is not an event).
    pub fn finish(self) -> Result<Completion, WireError> {
        // Gemini's stream simply ends; the others say when they are done.
        if !self.finished && self.format != WireFormat::GeminiGenerate {
            return Err(WireError::new(
                ProviderErrorKind::Connection,
                "the stream ended before the provider said it was complete",
            ));
        }
        if self.completion.text.is_empty() {
            return Err(WireError::new(
                ProviderErrorKind::Malformed,
                "the stream carried no text",
            ));
        }
        Ok(self.completion)
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

fn gemini_text(body: &Value) -> Option<String> {
    body["candidates"][0]["content"]["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect::<String>()
        })
}

fn stream_delta(format: WireFormat, event: &Value) -> Option<String> {
    match format {
        WireFormat::AnthropicMessages => (event["type"] == "content_block_delta")
            .then(|| event["delta"]["text"].as_str().map(str::to_string))
            .flatten(),
        WireFormat::OpenAiChat => event["choices"][0]["delta"]["content"]
            .as_str()
            .map(str::to_string),
        WireFormat::GeminiGenerate => gemini_text(event),
    }
}

/// (input, output) tokens reported in a body or stream event; 0 where absent.
fn usage(format: WireFormat, body: &Value) -> (u64, u64) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    match format {
        WireFormat::AnthropicMessages => {
            let usage = if body["usage"].is_object() {
                &body["usage"]
            } else {
                &body["message"]["usage"]
            };
            (n(&usage["input_tokens"]), n(&usage["output_tokens"]))
        }
        WireFormat::OpenAiChat => (
            n(&body["usage"]["prompt_tokens"]),
            n(&body["usage"]["completion_tokens"]),
        ),
        WireFormat::GeminiGenerate => (
            n(&body["usageMetadata"]["promptTokenCount"]),
            n(&body["usageMetadata"]["candidatesTokenCount"]),
        ),
    }
}

/// A shared HTTP client for every provider: rustls, pooled connections.
pub fn http_client(connect_timeout: Duration) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(concat!("aragora/", env!("CARGO_PKG_VERSION"))),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(connect_timeout)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let later = SystemTime::now() + Duration::from_secs(30);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
        // More seconds than a Duration holds: the longest wait, not a panic.
        for huge in ["1e400", "333333333333333333333333"] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(huge));
            assert_eq!(retry_after(&headers), Some(Duration::MAX));
        }
    }

    #[test]
    fn backoff_grows_and_is_jittered_within_bounds() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 0..6 {
            let ceiling =
                (Duration::from_millis(100) * 2u32.pow(attempt)).min(Duration::from_secs(1));
            let wait = backoff(&policy, attempt);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
