//! What every component's configuration shares, so each reads, documents and validates its
//! settings the same way.
//!
//! A component declares its settings once with [`settings!`]: field, environment variables and
//! doc line. That generates the `SETTINGS` table (README and `validate-env` use it) and the
//! environment overlay. Every part of the process configuration implements [`Settings`]: it is
//! *read* (defaults, TOML file, environment) without validating, the binary applies its flags,
//! and only then is it validated, so a flag can fix an environment value and all problems of all
//! parts come out together. Nothing stops at the first mistake: every problem is collected as a
//! [`ConfigProblem`] naming the setting and saying how to fix it.
//!
//! | module | owns |
//! |---|---|
//! | `values` | the values every component's settings share: [`Environment`], [`LogLevel`], [`LogFormat`] |
//! | `redact` | keeping secrets out of what is shown: [`redact_url`], [`redact_query`], [`scrub`], the config structs' redacting `Debug` |
//! | `files` | files of secrets aragora writes itself: owner-only, never half-written ([`files::write_private`], [`files::read_or_generate_key`]) |
//! | `lock_file` | an exclusive lock on a file, held while its `File` is open ([`lock_file::try_lock_exclusive`]): SQLite's stand-in for PostgreSQL's advisory locks |
//! | `redis` | the Redis client configuration every component uses: `redis://` or `rediss://` (TLS, system roots plus `ARAGORA_REDIS_CA_FILE`) |

pub mod files;
pub mod lock_file;
mod placeholder;
pub mod redact;
pub mod redis;
mod values;

pub use placeholder::{placeholder_problems, PLACEHOLDER};
pub use redact::{redact_query, redact_url, scrub, url_password, MASK};

pub use values::{Environment, H1Engine, H2Engine, LogFormat, LogLevel, OcspStapling};

use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment a loader reads: variable name to value (a snapshot, so tests pass their own).
pub type Env = HashMap<String, String>;

/// A snapshot of the process environment.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

/// One thing wrong with the configuration: which setting, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigProblem {
    pub setting: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// A listener that could not bind: which address, what it is for, why, and the setting that
/// moves it. Shared so every component words it the same way.
#[derive(Debug)]
pub struct BindError {
    pub addr: String,
    pub what: &'static str,
    pub setting: &'static str,
    pub source: std::io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen on {} ({}): {}; stop the process using it or choose another port with {}",
            self.addr, self.what, self.source, self.setting
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A documented setting: its TOML key, the environment variables that set it, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static [&'static str],
    pub doc: &'static str,
    /// A running process cannot apply a change of it (a listener, a thread count, a client
    /// built at start); a reload that changes it is refused.
    pub restart: bool,
}

impl Setting {
    /// The name operators know it by: its first environment variable (else its key).
    pub fn name(&self) -> &'static str {
        self.env.first().copied().unwrap_or(self.key)
    }
}

/// What [`settings!`] generates for a config struct: its documented settings, the environment
/// overlay, and which restart-only settings differ between two values.
pub trait EnvSettings {
    const SETTINGS: &'static [Setting];

    /// Sets every field whose environment variable is present; a value that does not parse
    /// adds a problem and leaves the field as it was.
    fn apply_env(&mut self, env: &Env, problems: &mut Vec<ConfigProblem>);

    /// The settings marked `restart` whose value differs between `self` and `next`.
    fn restart_changes(&self, next: &Self) -> Vec<&'static Setting>;
}

/// One part of the process configuration: read from defaults, an optional TOML file and the
/// environment without judging, then (after the binary's flags) validated once.
pub trait Settings: EnvSettings + DeserializeOwned + Default {
    /// What a part reads beyond its declared settings (derived variables, normalised values).
    fn finish_read(&mut self, _env: &Env, _problems: &mut Vec<ConfigProblem>) {}

    /// Every problem of the values as they are; empty when the part is usable.
    fn validate(&self) -> Vec<ConfigProblem>;

    /// Defaults, then `file` (TOML) when given, then `env`: not validated (flags may still
    /// change it), with the problems found reading.
    fn read(file: Option<&Path>, env: &Env) -> (Self, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut config: Self = defaults_or_file(file, &mut problems);
        config.apply_env(env, &mut problems);
        config.finish_read(env, &mut problems);
        (config, problems)
    }

    /// [`read`](Self::read), then [`validate`](Self::validate): the value, or every problem.
    fn load(file: Option<&Path>, env: &Env) -> Result<Self, Vec<ConfigProblem>> {
        let (config, mut problems) = Self::read(file, env);
        problems.extend(config.validate());
        checked(config, problems)
    }
}

/// A value that can be read from an environment variable.
pub trait FromEnv: Sized {
    fn from_env(raw: &str) -> Result<Self, String>;
}

macro_rules! number_from_env {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn from_env(raw: &str) -> Result<Self, String> {
                raw.trim().parse().map_err(|_| {
                    format!("{raw:?} is not a whole number between {} and {}", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}
number_from_env!(u16, u32, u64, usize);

impl FromEnv for bool {
    fn from_env(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("{raw:?} is not a boolean; use true or false")),
        }
    }
}

impl FromEnv for f64 {
    fn from_env(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .ok_or_else(|| format!("{raw:?} is not a number; write it like 99.9"))
    }
}

impl FromEnv for String {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
}

impl FromEnv for PathBuf {
    fn from_env(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("is empty; give a path".into());
        }
        Ok(PathBuf::from(raw))
    }
}

impl FromEnv for Option<String> {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok((!raw.is_empty()).then(|| raw.to_string()))
    }
}

impl FromEnv for Option<PathBuf> {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok((!raw.trim().is_empty()).then(|| PathBuf::from(raw)))
    }
}

impl FromEnv for Vec<String> {
    fn from_env(raw: &str) -> Result<Self, String> {
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect())
    }
}

/// The defaults, or the TOML file's values over them when a file is given; a file that cannot
/// be read or parsed adds its problem and leaves the defaults.
pub fn defaults_or_file<T: DeserializeOwned + Default>(
    file: Option<&Path>,
    problems: &mut Vec<ConfigProblem>,
) -> T {
    match file {
        Some(path) => from_toml_file(path).unwrap_or_else(|problem| {
            problems.push(problem);
            T::default()
        }),
        None => T::default(),
    }
}

/// `config` when nothing is wrong, else every problem found.
pub fn checked<T>(config: T, problems: Vec<ConfigProblem>) -> Result<T, Vec<ConfigProblem>> {
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Reads a TOML file into a config struct (which should `deny_unknown_fields`), or says why not.
pub fn from_toml_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigProblem> {
    let setting = format!("config file {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigProblem::new(&setting, format!("cannot be read: {err}")))?;
    from_toml_str(&text, &setting)
}

/// [`from_toml_file`] on text; `setting` names where it came from in the problem.
pub fn from_toml_str<T: DeserializeOwned>(text: &str, setting: &str) -> Result<T, ConfigProblem> {
    toml::from_str(text).map_err(|err| {
        ConfigProblem::new(setting, format!("is not valid: {}", err.to_string().trim()))
    })
}

/// Whether the TOML file sets `key` at its top level (an explicit choice, even of the default
/// value); false when there is no file or it cannot be read (its problem is reported by the
/// read).
pub fn file_sets(file: Option<&Path>, key: &str) -> bool {
    file.and_then(|path| from_toml_file::<toml::Table>(path).ok())
        .is_some_and(|table| table.contains_key(key))
}

/// Whether a configured URL is one an HTTP client can call (`http://` or `https://`).
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// An environment built from pairs, as the config loaders take it (for tests and tools).
pub fn env_map(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Declares a config struct's settings once: field, environment variables, an optional
/// `restart` marker (a running process cannot apply a change of it), doc line. Generates
/// `pub const SETTINGS: &[Setting]` and the struct's [`EnvSettings`] impl (also callable as
/// the inherent `apply_env`).
#[macro_export]
macro_rules! settings {
    ($config:ty; $($field:ident: [$($env:literal),*] $($marker:ident)? $doc:literal;)*) => {
        /// Every setting, in the order the README documents them.
        pub const SETTINGS: &[$crate::Setting] = &[
            $($crate::Setting {
                key: stringify!($field),
                env: &[$($env),*],
                doc: $doc,
                restart: $crate::__restart_marker!($($marker)?),
            }),*
        ];

        impl $config {
            #[allow(dead_code)]
            fn apply_env(
                &mut self,
                env: &std::collections::HashMap<String, String>,
                problems: &mut Vec<$crate::ConfigProblem>,
            ) {
                <Self as $crate::EnvSettings>::apply_env(self, env, problems)
            }
        }

        impl $crate::EnvSettings for $config {
            const SETTINGS: &'static [$crate::Setting] = SETTINGS;

            fn apply_env(
                &mut self,
                env: &std::collections::HashMap<String, String>,
                problems: &mut Vec<$crate::ConfigProblem>,
            ) {
                $(
                    for name in [$($env),*] {
                        if let Some(raw) = env.get(name) {
                            match $crate::FromEnv::from_env(raw) {
                                Ok(value) => self.$field = value,
                                Err(message) => problems.push($crate::ConfigProblem::new(name, message)),
                            }
                            break;
                        }
                    }
                )*
            }

            fn restart_changes(&self, next: &Self) -> Vec<&'static $crate::Setting> {
                let mut changed = Vec::new();
                $(
                    if $crate::__restart_marker!($($marker)?) && self.$field != next.$field {
                        changed.extend(SETTINGS.iter().find(|s| s.key == stringify!($field)));
                    }
                )*
                changed
            }
        }
    };
}

/// `restart` (the only marker) is true; no marker is false.
#[doc(hidden)]
#[macro_export]
macro_rules! __restart_marker {
    () => {
        false
    };
    (restart) => {
        true
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_say_what_is_wrong() {
        assert_eq!(u16::from_env("8080"), Ok(8080));
        assert!(u16::from_env("70000")
            .unwrap_err()
            .contains("between 0 and 65535"));
        assert_eq!(bool::from_env("yes"), Ok(true));
        assert_eq!(f64::from_env(" 99.9"), Ok(99.9));
        assert!(f64::from_env("NaN").unwrap_err().contains("99.9"));
        assert!(bool::from_env("maybe").is_err());
        assert_eq!(
            Vec::<String>::from_env("a, b,,c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(Option::<String>::from_env(""), Ok(None));
    }
}
