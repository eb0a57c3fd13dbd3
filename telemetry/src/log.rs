//! Log setup: JSON lines by default (what log shippers parse), text for a terminal.

use serde::Serialize;
use std::io::Write;
use std::sync::OnceLock;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Keeps the log writer's thread alive until [`flush_logs`] drops it: statics are never
/// dropped, so without that call the last lines before exit ("stopped") would be lost.
static WRITER_GUARD: std::sync::Mutex<Option<WorkerGuard>> = std::sync::Mutex::new(None);
/// The same writer, for access-log lines serialized without `tracing`'s field machinery.
static ACCESS_WRITER: OnceLock<NonBlocking> = OnceLock::new();
/// Whether access lines are wanted (the level allows `info`).
static ACCESS_ENABLED: OnceLock<bool> = OnceLock::new();

/// One access-log line, in the same JSON shape as the other log lines (timestamp, level,
/// target, message, then the fields), written off the request's thread.
pub fn access_log<T: Serialize>(fields: &T) {
    if !ACCESS_ENABLED.get().copied().unwrap_or(false) {
        return;
    }
    let Some(writer) = ACCESS_WRITER.get() else {
        return;
    };
    #[derive(Serialize)]
    struct Line<'a, T> {
        timestamp: String,
        level: &'static str,
        target: &'static str,
        message: &'static str,
        #[serde(flatten)]
        fields: &'a T,
    }
    let line = Line {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        level: "INFO",
        target: "access",
        message: "request",
        fields,
    };
    if let Ok(mut bytes) = serde_json::to_vec(&line) {
        bytes.push(b'\n');
        let _ = writer.clone().write_all(&bytes);
    }
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
    // sqlx logs every statement at info; that is noise for an operator.
    let filter = EnvFilter::try_new(format!("{directive},sqlx=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Lines are formatted on the calling thread but written by a dedicated one, so a request
    // never waits on a write to standard error. Not lossy: when the buffer is full, callers
    // wait rather than drop access-log lines.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stderr());
    {
        let mut slot = WRITER_GUARD.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() || ACCESS_WRITER.get().is_some() {
            return;
        }
        *slot = Some(guard);
    }
    let _ = ACCESS_WRITER.set(writer.clone());
    let _ = ACCESS_ENABLED.set(!matches!(directive.as_str(), "warn" | "error" | "off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
