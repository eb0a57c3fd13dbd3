//! Wall-clock times as the DR records keep them: Unix milliseconds for arithmetic and the DR
//! log, and, for people, manifests and reports, RFC 3339 with milliseconds in UTC (the form of
//! every timestamp in the engine's API, so a drill's times read like a debate's).

use chrono::{DateTime, SecondsFormat, Utc};

/// A moment on the wall clock, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(Utc::now())
    }

    /// The moment `ms` milliseconds after the Unix epoch (the epoch itself when out of range).
    pub fn from_ms(ms: i64) -> Timestamp {
        Timestamp(DateTime::from_timestamp_millis(ms).unwrap_or_default())
    }

    /// Milliseconds since the Unix epoch.
    pub fn ms(self) -> i64 {
        self.0.timestamp_millis()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn shown_in_utc_with_milliseconds_and_round_trips_its_milliseconds() {
        let at = Timestamp::from_ms(1_764_581_238_123);
        assert_eq!(at.to_string(), "2025-12-01T09:27:18.123Z");
        assert_eq!(at.ms(), 1_764_581_238_123);
        assert_eq!(
            Timestamp::from_ms(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
