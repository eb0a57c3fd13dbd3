//! Log setup: JSON lines by default (what log shippers parse), text for a terminal; access
//! lines follow the same format.

use serde::Serialize;
use std::io::Write;
use std::sync::OnceLock;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// A condition a library reports only by logging it, counted as a metric.
struct LogCounter {
    target_prefix: &'static str,
    message_prefix: &'static str,
    counter: prometheus::IntCounter,
}

static LOG_COUNTERS: std::sync::RwLock<Vec<LogCounter>> = std::sync::RwLock::new(Vec::new());

/// Counts warnings and errors whose target starts with `target_prefix` and whose message
/// starts with `message_prefix` in `counter`. Pingora, for one, reports a failed TLS handshake
/// only as an error line (`Downstream handshake error ...`) and carries on.
pub fn count_log_events(
    target_prefix: &'static str,
    message_prefix: &'static str,
    counter: prometheus::IntCounter,
) {
    LOG_COUNTERS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(LogCounter {
            target_prefix,
            message_prefix,
            counter,
        });
}

/// The layer behind [`count_log_events`]; looks only at warnings and errors.
struct CountingLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountingLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let counters = LOG_COUNTERS.read().unwrap_or_else(|e| e.into_inner());
        if counters.is_empty() {
            // Most processes count nothing: no field reading for their warnings.
            return;
        }
        // Records bridged from the `log` crate carry their target in a field, not metadata.
        let mut fields = MessageAndTarget::default();
        event.record(&mut fields);
        let target = fields
            .log_target
            .as_deref()
            .unwrap_or(event.metadata().target());
        for rule in counters.iter() {
            if target.starts_with(rule.target_prefix)
                && fields.message.starts_with(rule.message_prefix)
            {
                rule.counter.inc();
            }
        }
    }
}

#[derive(Default)]
struct MessageAndTarget {
    message: String,
    log_target: Option<String>,
}

impl tracing::field::Visit for MessageAndTarget {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "log.target" => self.log_target = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

/// Keeps the log writer's thread alive until [`flush_logs`] drops it: statics are never
/// dropped, so without that call the last lines before exit ("stopped") would be lost.
static WRITER_GUARD: std::sync::Mutex<Option<WorkerGuard>> = std::sync::Mutex::new(None);
/// The same writer, for access-log lines serialized without `tracing`'s field machinery.
static ACCESS_WRITER: OnceLock<NonBlocking> = OnceLock::new();
/// Whether access lines are wanted (the level allows `info`).
static ACCESS_ENABLED: OnceLock<bool> = OnceLock::new();
/// Whether access lines are text (the log format is text), else JSON.
static ACCESS_TEXT: OnceLock<bool> = OnceLock::new();

/// One access-log line, in the same JSON shape as the other log lines (timestamp, level,
/// target, message, then the fields), written off the request's thread. On the gateway's
/// request path: each thread serializes into a buffer it reuses, through a writer it cloned
/// once (a clone per line touched the channel's shared counts), under a timestamp whose
/// seconds are formatted once a second.
pub fn access_log<T: Serialize>(fields: &T) {
    if !ACCESS_ENABLED.get().copied().unwrap_or(false) {
        return;
    }
    let Some(writer) = ACCESS_WRITER.get() else {
        return;
    };
    thread_local! {
        static ACCESS: std::cell::RefCell<Option<AccessThread>> = const { std::cell::RefCell::new(None) };
    }
    ACCESS.with(|access| {
        let Ok(mut access) = access.try_borrow_mut() else {
            return;
        };
        let access = access.get_or_insert_with(|| AccessThread {
            writer: writer.clone(),
            line: Vec::with_capacity(512),
            clock: SecondClock::default(),
        });
        let timestamp = access.clock.now();
        access.line.clear();
        let written = if ACCESS_TEXT.get().copied().unwrap_or(false) {
            text_line(timestamp, fields).map(|text| access.line.extend_from_slice(&text))
        } else {
            json_line(&mut access.line, timestamp, fields)
        };
        if written.is_some() {
            access.line.push(b'\n');
            let _ = access.writer.write_all(&access.line);
        }
    });
}

/// An access line as JSON into `line`: the prefix every line shares written as bytes, then the
/// fields serialized as an object whose opening brace is the prefix's comma. (Through
/// `#[serde(flatten)]` the fields went through serde's map machinery, a few thousand
/// instructions per line on the gateway's path.) `None` when `fields` is not an object.
fn json_line<T: Serialize>(line: &mut Vec<u8>, timestamp: &str, fields: &T) -> Option<()> {
    line.extend_from_slice(b"{\"timestamp\":");
    serde_json::to_writer(&mut *line, timestamp).ok()?;
    line.extend_from_slice(b",\"level\":\"INFO\",\"target\":\"access\",\"message\":\"request\"");
    let start = line.len();
    serde_json::to_writer(&mut *line, fields).ok()?;
    match &line[start..] {
        b"{}" => {
            line.truncate(start);
            line.push(b'}');
        }
        [b'{', ..] => line[start] = b',',
        _ => return None,
    }
    Some(())
}

/// What one thread keeps for its access lines.
struct AccessThread {
    writer: NonBlocking,
    line: Vec<u8>,
    clock: SecondClock,
}

/// RFC 3339 UTC timestamps with microseconds (`2026-01-02T03:04:05.678901Z`, as chrono's
/// `to_rfc3339_opts(Micros, true)` writes them), the date and time formatted once a second.
#[derive(Default)]
struct SecondClock {
    second: Option<i64>,
    text: String,
    /// The length of the date and time, before the fraction.
    whole: usize,
}

impl SecondClock {
    fn now(&mut self) -> &str {
        self.at(chrono::Utc::now())
    }

    fn at(&mut self, now: chrono::DateTime<chrono::Utc>) -> &str {
        use std::fmt::Write as _;
        let second = now.timestamp();
        if self.second != Some(second) {
            self.second = Some(second);
            self.text.clear();
            let _ = write!(self.text, "{}", now.format("%Y-%m-%dT%H:%M:%S"));
            self.whole = self.text.len();
        } else {
            self.text.truncate(self.whole);
        }
        // A leap second's nanoseconds run past 10^9: chrono writes those microseconds as 7
        // digits too.
        let _ = write!(self.text, ".{:06}Z", now.timestamp_subsec_micros());
        &self.text
    }
}

/// An access line as the text format writes its other lines: time, level, target, message,
/// then `key=value` for each field that has a value.
fn text_line<T: Serialize>(timestamp: &str, fields: &T) -> Option<Vec<u8>> {
    let serde_json::Value::Object(fields) = serde_json::to_value(fields).ok()? else {
        return None;
    };
    let mut line = format!("{timestamp}  INFO access: request");
    for (key, value) in fields {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::String(text) => line.push_str(&format!(" {key}={text}")),
            other => line.push_str(&format!(" {key}={other}")),
        }
    }
    Some(line.into_bytes())
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber. `level` is the seeds' `ARAGORA_LOG_LEVEL` (DEBUG, INFO,
/// WARNING, ERROR, case-insensitive) or a full `tracing` filter (`info,sqlx=warn`).
/// Calling it twice keeps the first subscriber.
/// Writes out every buffered log line and stops the writer thread; call once, last, before
/// the process exits. Lines logged afterwards are dropped.
pub fn flush_logs() {
    let guard = WRITER_GUARD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    drop(guard);
}

pub fn init_logging(level: &str, format: LogFormat) {
    let directive = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "critical" => "error".to_string(),
        other => other.to_string(),
    };
    // sqlx logs every statement at info; that is noise for an operator. Pingora's debug and
    // trace lines dump whole request and response heads (Authorization, cookies, `?token=`):
    // a debug log keeps pingora at info unless the filter names pingora itself.
    let mut directives = format!("{directive},sqlx=warn");
    if (directive.contains("debug") || directive.contains("trace"))
        && !directive.contains("pingora")
    {
        directives.push_str(",pingora=info");
    }
    let filter =
        EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Lines are formatted on the calling thread but written by a dedicated one, so a request
    // never waits on a write to standard error. Not lossy: when the buffer is full, callers
    // wait rather than drop access-log lines.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        // Buffered: the worker flushes after each batch it drains, so a burst of lines costs one
        // write(2), not one per line.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    {
        let mut slot = WRITER_GUARD.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() || ACCESS_WRITER.get().is_some() {
            return;
        }
        *slot = Some(guard);
    }
    let _ = ACCESS_WRITER.set(writer.clone());
    let _ = ACCESS_ENABLED.set(!matches!(directive.as_str(), "warn" | "error" | "off"));
    let _ = ACCESS_TEXT.set(format == LogFormat::Text);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CountingLayer);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(false))
            .try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
}

/// An error and its causes on one line (`outer: cause: root cause`): what a log line or an
/// operator-facing message should say, where `Display` alone names only the outermost.
pub fn error_with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::SecondClock;
    use chrono::{SecondsFormat, TimeZone, Utc};
    use serde::Serialize;

    #[test]
    fn an_access_line_reads_as_the_flattened_one_did() {
        #[derive(Serialize)]
        struct Fields<'a> {
            path: &'a str,
            status: u16,
            error: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Nothing {}
        #[derive(Serialize)]
        struct Line<'a, T> {
            timestamp: &'a str,
            level: &'static str,
            target: &'static str,
            message: &'static str,
            #[serde(flatten)]
            fields: &'a T,
        }
        fn flattened<T: Serialize>(fields: &T) -> Vec<u8> {
            serde_json::to_vec(&Line {
                timestamp: "2026-12-03T12:00:00.000001Z",
                level: "INFO",
                target: "access",
                message: "request",
                fields,
            })
            .unwrap()
        }
        let fields = Fields {
            path: "/a\"b\\",
            status: 200,
            error: None,
        };
        let mut line = Vec::new();
        super::json_line(&mut line, "2026-12-03T12:00:00.000001Z", &fields).unwrap();
        assert_eq!(line, flattened(&fields));
        let mut line = Vec::new();
        super::json_line(&mut line, "2026-12-03T12:00:00.000001Z", &Nothing {}).unwrap();
        assert_eq!(line, flattened(&Nothing {}));
        assert!(super::json_line(&mut Vec::new(), "t", &5).is_none());
    }

    #[test]
    fn the_access_clock_writes_what_chrono_writes() {
        let mut clock = SecondClock::default();
        let base = Utc.with_ymd_and_hms(2026, 12, 1, 23, 59, 59).unwrap();
        for micros in [0, 1, 999_999, 500_000, 1_000_000, 1_000_001, 86_400_000_123] {
            let at = base + chrono::Duration::microseconds(micros);
            assert_eq!(
                clock.at(at),
                at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "{micros}"
            );
        }
    }
}
