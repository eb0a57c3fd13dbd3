//! Prometheus durations (`5m`, `30d`, `4w`), parsed and printed the way Prometheus and Sloth
//! print them, so generated rule names (`slo:sli_error:ratio_rate30d`) match Sloth's exactly.

use std::fmt;

/// A whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 86_400),
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

impl PromDuration {
    pub const fn minutes(n: u64) -> Self {
        Self(n * 60)
    }
    pub const fn hours(n: u64) -> Self {
        Self(n * 3_600)
    }
    pub const fn days(n: u64) -> Self {
        Self(n * 86_400)
    }

    pub fn seconds(self) -> u64 {
        self.0
    }

    /// Parses `30d`, `1h30m`, `4w`; milliseconds are refused (no SLO window needs them).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a duration; write it like 30d, 6h or 5m");
        let mut total = 0u64;
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit = rest.chars().take_while(char::is_ascii_alphabetic).count();
            let (_, seconds) = UNITS
                .iter()
                .find(|(name, _)| *name == &rest[..unit])
                .ok_or_else(bad)?;
            // Checked: beyond u64 seconds is no duration (it wrapped to a wrong one in release
            // builds and panicked in debug ones).
            total = value
                .checked_mul(*seconds)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(bad)?;
            rest = &rest[unit..];
        }
        Ok(Self(total))
    }
}

impl fmt::Display for PromDuration {
    /// As Prometheus' `model.Duration`: years and weeks only when they divide exactly (`30d`,
    /// not `4w2d`), then days, hours, minutes, seconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (index, (name, seconds)) in UNITS.iter().enumerate() {
            let exact_only = index < 2;
            if exact_only && !rest.is_multiple_of(*seconds) {
                continue;
            }
            if rest >= *seconds {
                write!(f, "{}{name}", rest / seconds)?;
                rest %= seconds;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_beyond_u64_seconds_is_refused() {
        assert!(PromDuration::parse("99999999999999999y").is_err());
        assert!(PromDuration::parse("18446744073709551615s1s").is_err());
        assert_eq!(
            PromDuration::parse("18446744073709551615s"),
            Ok(PromDuration(u64::MAX))
        );
    }

    #[test]
    fn prints_like_prometheus() {
        for (seconds, text) in [
            (300, "5m"),
            (1800, "30m"),
            (3600, "1h"),
            (86_400, "1d"),
            (3 * 86_400, "3d"),
            (30 * 86_400, "30d"),
            (28 * 86_400, "4w"),
            (5400, "1h30m"),
        ] {
            assert_eq!(PromDuration(seconds).to_string(), text);
            assert_eq!(PromDuration::parse(text), Ok(PromDuration(seconds)));
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "30", "d", "5 minutes", "1.5h"] {
            assert!(
                PromDuration::parse(text).unwrap_err().contains("30d"),
                "{text}"
            );
        }
    }
}
