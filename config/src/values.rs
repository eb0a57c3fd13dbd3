//! Values shared by the engine's and the gateway's settings, parsed once with one message per
//! bad spelling: the deployment [`Environment`], the [`LogLevel`], the [`LogFormat`] and the
//! gateway's [`OcspStapling`] mode, [`H1Engine`] and [`H2Engine`].
//! Each reads from the environment ([`FromEnv`]) and from TOML (serde) with the same spellings.

use crate::FromEnv;
use std::fmt;

/// Declares a value enum: its variants with their accepted spellings (the first is the
/// canonical one, written back by `Display` and serde), how case is treated, and the message
/// naming the accepted values.
macro_rules! value_enum {
    (
        $(#[$meta:meta])*
        $name:ident, case_insensitive: $insensitive:literal, expected: $expected:literal,
        { $($variant:ident => [$canonical:literal $(, $alias:literal)*]),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $canonical),*
                }
            }
        }

        impl FromEnv for $name {
            fn from_env(raw: &str) -> Result<Self, String> {
                let spelled = if $insensitive { raw.trim().to_ascii_lowercase() } else { raw.trim().to_string() };
                let matches = |candidate: &str| {
                    if $insensitive { candidate.eq_ignore_ascii_case(&spelled) } else { candidate == spelled }
                };
                $(
                    if matches($canonical) $(|| matches($alias))* {
                        return Ok(Self::$variant);
                    }
                )*
                Err(format!($expected, raw))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::from_env(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

value_enum! {
    /// Where the process runs; production turns on the stricter checks (secrets required).
    Environment, case_insensitive: false,
    expected: "{:?} is not an environment; use development, staging, test or production",
    {
        Development => ["development"],
        Staging => ["staging"],
        Test => ["test"],
        Production => ["production"],
    }
}

value_enum! {
    /// The least severe log lines written; the Python runbooks' names (WARNING, CRITICAL)
    /// are accepted beside tracing's.
    LogLevel, case_insensitive: true,
    expected: "{:?} is not a level; use DEBUG, INFO, WARNING or ERROR",
    {
        Trace => ["TRACE"],
        Debug => ["DEBUG"],
        Info => ["INFO"],
        Warning => ["WARNING", "WARN"],
        Error => ["ERROR"],
        Critical => ["CRITICAL"],
    }
}

value_enum! {
    /// How log lines are written: one JSON object per line, or text for a terminal; `auto`
    /// (the default) leaves it to the command ([`LogFormat::resolve`]).
    LogFormat, case_insensitive: false,
    expected: "{:?} is not a format; use json, text or auto",
    {
        Json => ["json"],
        Text => ["text"],
        Auto => ["auto"],
    }
}

value_enum! {
    /// Whether the gateway staples OCSP responses it fetches from its certificate's responder:
    /// `auto` (the default) when the certificate names one (Authority Information Access),
    /// `on` requires that it does, `off` staples nothing.
    OcspStapling, case_insensitive: true,
    expected: "{:?} is not a stapling mode; use auto, on or off",
    {
        Auto => ["auto"],
        On => ["on", "true"],
        Off => ["off", "false"],
    }
}

value_enum! {
    /// What serves the gateway's HTTP/1.1 requests: the gateway's lean engine (the default:
    /// httparse, one pinned replica connection per client connection) or pingora's
    /// `HttpProxy`; WebSocket upgrades take pingora's path either way.
    H1Engine, case_insensitive: true,
    expected: "{:?} is not an HTTP/1.1 engine; use pingora or lean",
    {
        Pingora => ["pingora"],
        Lean => ["lean"],
    }
}

value_enum! {
    /// What serves the gateway's HTTP/2 connections: the gateway's lean HTTP/2 engine (the
    /// default: h2's streams to HTTP/1.1 replica connections kept per client connection), or
    /// pingora's `HttpProxy`.
    H2Engine, case_insensitive: true,
    expected: "{:?} is not an HTTP/2 engine; use pingora or lean",
    {
        Pingora => ["pingora"],
        Lean => ["lean"],
    }
}

impl LogFormat {
    /// The format lines are written in: a chosen one as it is; `auto` is text when the
    /// command is one a person watches (`aragora up`: its banner must stay readable) and its
    /// log goes to a terminal, else JSON (what log shippers parse).
    pub fn resolve(self, watched: bool, stderr_is_terminal: bool) -> LogFormat {
        match self {
            Self::Auto if watched && stderr_is_terminal => Self::Text,
            Self::Auto => Self::Json,
            chosen => chosen,
        }
    }
}

impl LogLevel {
    /// The `tracing` filter directive of the level (tracing has no critical: error).
    pub fn directive(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warn",
            Self::Error | Self::Critical => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_spellings_are_those_of_the_runbooks() {
        assert_eq!(LogLevel::from_env("warning"), Ok(LogLevel::Warning));
        assert_eq!(LogLevel::from_env("WARN"), Ok(LogLevel::Warning));
        assert_eq!(LogLevel::from_env("Critical"), Ok(LogLevel::Critical));
        assert!(LogLevel::from_env("loud")
            .unwrap_err()
            .contains("DEBUG, INFO"));
        assert_eq!(Environment::from_env("staging"), Ok(Environment::Staging));
        assert!(
            Environment::from_env("Production").is_err(),
            "environments are lower case, as before"
        );
        assert_eq!(LogFormat::from_env("text"), Ok(LogFormat::Text));
        assert!(LogFormat::from_env("xml")
            .unwrap_err()
            .contains("json, text or auto"));
    }

    #[test]
    fn auto_is_text_only_for_a_watched_command_on_a_terminal() {
        use LogFormat::*;
        assert_eq!(Auto.resolve(true, true), Text);
        assert_eq!(Auto.resolve(true, false), Json, "piped `up`");
        assert_eq!(Auto.resolve(false, true), Json, "`serve` on a terminal");
        assert_eq!(Json.resolve(true, true), Json, "ARAGORA_LOG_FORMAT wins");
        assert_eq!(Text.resolve(false, false), Text, "ARAGORA_LOG_FORMAT wins");
    }

    #[test]
    fn toml_uses_the_same_spellings_and_messages() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct Doc {
            level: LogLevel,
        }
        let doc: Doc = toml::from_str("level = \"warn\"").unwrap();
        assert_eq!(doc.level, LogLevel::Warning);
        assert_eq!(toml::to_string(&doc).unwrap().trim(), "level = \"WARNING\"");
        let err = toml::from_str::<Doc>("level = \"loud\"").err().unwrap();
        assert!(err.to_string().contains("is not a level"), "{err}");
    }
}
