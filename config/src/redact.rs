//! Keeping secrets out of everything the process shows: logs, errors, reports, `Debug`.
//!
//! One place decides what a secret looks like, so every component hides the same things:
//! - a URL is shown with its password as `***` ([`redact_url`]): `postgres://app:***@db/aragora`;
//! - a request target is shown with the values of credential query parameters as `***`
//!   ([`redact_query`]): `/ws?debate_id=d1&token=***`;
//! - a config field whose name says it holds a secret ([`is_secret_key`]) is shown as `***` by
//!   the `Debug` of the config structs ([`debug_redacted`]), which also redacts every URL;
//! - text that may quote a secret (a library's error, a problem message) is scrubbed of the
//!   known secret values ([`scrub`], values from [`secret_values`]).

use std::borrow::Cow;
use std::fmt;

/// What a hidden secret is shown as.
pub const MASK: &str = "***";

/// Query parameters that carry credentials (share links, browser WebSockets, API keys).
const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "password",
];

/// Field-name endings that mark a secret (after an optional `_previous`): name new secret
/// fields so (`..._secret`, `..._token`, `..._password`, `api_key`, `..._signing_key`,
/// `..._encryption_key`) and every `Debug`, `validate-env` and report hides them.
const SECRET_ENDINGS: &[&str] = &[
    "secret",
    "token",
    "password",
    "api_key",
    "signing_key",
    "encryption_key",
];

/// Whether a config field of this name holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.strip_suffix("_previous").unwrap_or(key);
    SECRET_ENDINGS.iter().any(|ending| key.ends_with(ending))
}

/// The password of `scheme://user:password@host/...` (or of a `password=` query parameter),
/// if the URL has one.
pub fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let from_userinfo = rest[..authority_end]
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    from_userinfo.or_else(|| {
        let (_, query) = rest.split_once('?')?;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("password="))
            .filter(|password| !password.is_empty())
    })
}

/// `url` with its password (in the userinfo or a `password=` parameter) shown as `***`;
/// unchanged when it has none. `postgres://app:hunter2@db:5432/aragora` becomes
/// `postgres://app:***@db:5432/aragora`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// A request target (`/path?query`) with the values of credential parameters (`token`,
/// `access_token`, `api_key`, `key`, `password`) shown as `***`; borrowed when there are none.
pub fn redact_query(target: &str) -> Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    let is_credential = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        CREDENTIAL_PARAMS
            .iter()
            .any(|param| name.eq_ignore_ascii_case(param))
            && pair.contains('=')
    };
    if !query.split('&').any(is_credential) {
        return Cow::Borrowed(target);
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential(pair) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", query.join("&")))
}

/// `text` with every one of `secrets` replaced by `***` (longest first, so no part of a
/// longer secret that contains a shorter one is left). For text a library wrote, which may
/// quote a URL or a key it was given.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut ordered: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    ordered.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    ordered.into_iter().fold(text.to_string(), |text, secret| {
        text.replace(secret.as_str(), MASK)
    })
}

/// Every secret value in a config value (serialized with serde): the value of each field named
/// as a secret ([`is_secret_key`]), at any depth, and the password of each URL. For scrubbing
/// text that may quote them ([`scrub`]).
pub fn secret_values<T: serde::Serialize>(config: &T) -> Vec<String> {
    fn walk(value: &toml::Value, secret: bool, found: &mut Vec<String>) {
        match value {
            toml::Value::String(text) if secret => found.push(text.clone()),
            toml::Value::String(text) => found.extend(url_password(text).map(str::to_string)),
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, secret, found)),
            toml::Value::Table(table) => table
                .iter()
                .for_each(|(key, v)| walk(v, secret || is_secret_key(key), found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    if let Ok(value) = toml::Value::try_from(config) {
        walk(&value, false, &mut found);
    }
    found.retain(|secret| !secret.is_empty());
    found.sort();
    found.dedup();
    found
}

/// `Debug` of a config struct without its secrets: its fields as serde sees them, secret
/// fields ([`is_secret_key`]) as `***`, every URL through [`redact_url`]. The config structs
/// implement `Debug` with this instead of deriving it, so no `{:?}` of a config can leak.
pub fn debug_redacted<T: serde::Serialize>(
    name: &str,
    config: &T,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    fn write(value: &toml::Value, secret: bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match value {
            toml::Value::String(_) if secret => f.write_str(MASK),
            toml::Value::String(text) => write!(f, "{:?}", redact_url(text)),
            toml::Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write(item, secret, f)?;
                }
                f.write_str("]")
            }
            toml::Value::Table(table) => {
                f.write_str("{ ")?;
                for (i, (key, item)) in table.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: ")?;
                    write(item, secret || is_secret_key(key), f)?;
                }
                f.write_str(" }")
            }
            other => write!(f, "{other}"),
        }
    }
    match toml::Value::try_from(config) {
        Ok(value) => {
            f.write_str(name)?;
            f.write_str(" ")?;
            write(&value, false, f)
        }
        Err(_) => write!(f, "{name} {{ .. }}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_nothing_else() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db.internal:5432/aragora?sslmode=require"),
            "postgres://app:***@db.internal:5432/aragora?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://default:p%40ss@127.0.0.1:6379/0"),
            "redis://default:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres://db/aragora?user=app&password=hunter2"),
            "postgres://db/aragora?user=app&password=***"
        );
        // A user without a password, and no userinfo at all: nothing to hide.
        assert_eq!(redact_url("redis://app@h:6379"), "redis://app@h:6379");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        // An `@` in the path is not userinfo.
        assert_eq!(redact_url("http://h/a:b@c"), "http://h/a:b@c");
        assert_eq!(
            url_password("postgres://app:hunter2@db/aragora"),
            Some("hunter2")
        );
        assert_eq!(url_password("postgres://db/x?password=pw"), Some("pw"));
        assert_eq!(url_password("redis://127.0.0.1:6379"), None);
    }

    #[test]
    fn credential_query_parameters_are_masked() {
        assert_eq!(
            redact_query("/ws?debate_id=d1&token=abc&last_seq=2"),
            "/ws?debate_id=d1&token=***&last_seq=2"
        );
        assert_eq!(
            redact_query("/x?API_KEY=k&access_token=t"),
            "/x?API_KEY=***&access_token=***"
        );
        assert!(matches!(
            redact_query("/api/debates?limit=5&tokens=3"),
            Cow::Borrowed(_)
        ));
        assert_eq!(redact_query("/api/debates"), "/api/debates");
    }

    #[test]
    fn secret_fields_are_found_by_name_at_any_depth() {
        #[derive(serde::Serialize)]
        struct Provider {
            api_key: Option<String>,
            base_url: String,
        }
        #[derive(serde::Serialize)]
        struct Config {
            host: String,
            jwt_secret: Option<String>,
            receipt_signing_key_previous: Option<String>,
            database_url: String,
            tls_key: String,
            providers: std::collections::BTreeMap<String, Provider>,
        }
        let config = Config {
            host: "0.0.0.0".into(),
            jwt_secret: Some("jwt-s3cret".into()),
            receipt_signing_key_previous: Some("old-key".into()),
            database_url: "postgres://app:pg-pass@db/aragora".into(),
            tls_key: "/etc/tls/key.pem".into(),
            providers: [(
                "openai".to_string(),
                Provider {
                    api_key: Some("sk-live".into()),
                    base_url: "https://api.openai.com/v1".into(),
                },
            )]
            .into(),
        };
        assert_eq!(
            secret_values(&config),
            ["jwt-s3cret", "old-key", "pg-pass", "sk-live"]
        );
        struct Shown<'a>(&'a Config);
        impl fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                debug_redacted("Config", self.0, f)
            }
        }
        let shown = format!("{:?}", Shown(&config));
        for secret in secret_values(&config) {
            assert!(!shown.contains(&secret), "{secret} in {shown}");
        }
        assert!(shown.contains("jwt_secret: ***"), "{shown}");
        assert!(shown.contains("postgres://app:***@db/aragora"), "{shown}");
        assert!(
            shown.contains("\"/etc/tls/key.pem\""),
            "paths stay: {shown}"
        );
        assert!(!is_secret_key("rate_limit_key_prefix"));
        assert!(is_secret_key("jwt_secret_previous"));
        assert_eq!(
            scrub("a sk-live b jwt-s3cret", &secret_values(&config)),
            "a *** b ***"
        );
    }
}
