//! Log setup: JSON lines by default (what log shippers parse), text for a terminal.

use tracing_subscriber::EnvFilter;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber. `level` is the seeds' `ARAGORA_LOG_LEVEL` (DEBUG, INFO,
/// WARNING, ERROR, case-insensitive) or a full `tracing` filter (`info,sqlx=warn`).
/// Calling it twice keeps the first subscriber.
pub fn init_logging(level: &str, format: LogFormat) {
    let directive = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "critical" => "error".to_string(),
        other => other.to_string(),
    };
    // sqlx logs every statement at info; that is noise for an operator.
    let filter = EnvFilter::try_new(format!("{directive},sqlx=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
