//! [`AuthConfig`]: the authentication settings every component reads the same way (the engine
//! enforces them; the gateway's admin listener and the chaos proxy's API check admins with the
//! stateless credentials), with a default, a doc line and validation each.

use crate::role::Role;
use aragora_config::{ConfigProblem, Environment, FromEnv};
use serde::{Deserialize, Serialize};

/// `ARAGORA_AUTH_ANONYMOUS`: off, or the role a request without any credential gets (demos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnonymousAccess(pub Option<Role>);

impl FromEnv for AnonymousAccess {
    fn from_env(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "off" | "false" | "no" | "0" => Ok(Self(None)),
            "reader" => Ok(Self(Some(Role::Reader))),
            "operator" => Ok(Self(Some(Role::Operator))),
            _ => Err(format!(
                "{raw:?} is not an anonymous role; use off, reader or operator (never admin)"
            )),
        }
    }
}

/// Authentication settings.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: Option<String>,
    pub jwt_secret_previous: Option<String>,
    pub jwt_ttl_secs: u64,
    pub api_token: Option<String>,
    pub allowed_origins: Vec<String>,
    pub anonymous: AnonymousAccess,
    pub api_key_cache_secs: u64,
}

aragora_config::settings! {
    AuthConfig;
    jwt_secret: ["ARAGORA_JWT_SECRET"] "HS256 secret JWTs are signed and verified with; at least 32 characters (`openssl rand -base64 32`); required in production.";
    jwt_secret_previous: ["ARAGORA_JWT_SECRET_PREVIOUS"] "The secret before a rotation: tokens it signed keep verifying while it is set (remove it after the overlap, e.g. 24 h).";
    jwt_ttl_secs: ["ARAGORA_JWT_TTL"] "Lifetime in seconds of the JWTs aragora mints (POST /api/auth/token, `aragora token create --jwt`); 60 to 2592000.";
    api_token: ["ARAGORA_API_TOKEN"] "Admin credential, and the key the runbook's `{loop_id}:{expires}:{signature}` tokens are signed with (`aragora token create --loop admin`).";
    allowed_origins: ["ARAGORA_ALLOWED_ORIGINS"] "Comma-separated browser origins (scheme://host[:port]) allowed CORS requests and WebSocket upgrades; a wildcard is refused.";
    anonymous: ["ARAGORA_AUTH_ANONYMOUS"] "off, or reader/operator: the role of requests without a credential, for demos; refused when ARAGORA_ENV=production.";
    api_key_cache_secs: ["ARAGORA_API_KEY_CACHE_SECONDS"] "Seconds a verified API key is trusted before the database is asked again, so a revocation reaches every replica within this time; 0 to 60.";
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secret_previous: None,
            jwt_ttl_secs: 24 * 3600,
            api_token: None,
            allowed_origins: vec!["http://localhost:3000".into()],
            anonymous: AnonymousAccess(None),
            api_key_cache_secs: 5,
        }
    }
}

/// Secrets are never printed, not even by `{:?}`.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &shown(&self.jwt_secret))
            .field("jwt_secret_previous", &shown(&self.jwt_secret_previous))
            .field("jwt_ttl_secs", &self.jwt_ttl_secs)
            .field("api_token", &shown(&self.api_token))
            .field("allowed_origins", &self.allowed_origins)
            .field("anonymous", &self.anonymous)
            .field("api_key_cache_secs", &self.api_key_cache_secs)
            .finish()
    }
}

const MIN_SECRET_CHARS: usize = 32;

impl AuthConfig {
    /// Reads the settings from the environment over `self` (defaults or a file's `[auth]`).
    pub fn overlay_env(&mut self, env: &aragora_config::Env, problems: &mut Vec<ConfigProblem>) {
        <Self as aragora_config::EnvSettings>::apply_env(self, env, problems);
    }

    /// `ARAGORA_ENV` as the engine reads it, for components that check auth without the
    /// engine's settings (the gateway, the chaos proxy); unset or misspelt (the engine's
    /// checks name that) is development.
    pub fn environment_in(env: &aragora_config::Env) -> Environment {
        ["ARAGORA_ENV", "ARAGORA_ENVIRONMENT"]
            .iter()
            .find_map(|name| env.get(*name))
            .and_then(|raw| Environment::from_env(raw).ok())
            .unwrap_or(Environment::Development)
    }

    /// The settings from the environment alone, with every problem for its deployment.
    pub fn from_env(env: &aragora_config::Env) -> (Self, Vec<ConfigProblem>) {
        let mut config = Self::default();
        let mut problems = Vec::new();
        config.overlay_env(env, &mut problems);
        problems.extend(config.problems(Self::environment_in(env)));
        (config, problems)
    }

    /// The role of a request without a credential, if anonymous access is on.
    pub fn anonymous_role(&self) -> Option<Role> {
        self.anonymous.0
    }

    /// Every problem, for a deployment in `environment`; values never appear in messages.
    pub fn problems(&self, environment: Environment) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, setting: &str, message: String| {
            if !ok {
                problems.push(ConfigProblem::new(setting, message));
            }
        };
        let production = environment == Environment::Production;
        for (setting, secret) in [
            ("ARAGORA_JWT_SECRET", &self.jwt_secret),
            ("ARAGORA_JWT_SECRET_PREVIOUS", &self.jwt_secret_previous),
        ] {
            if let Some(secret) = secret {
                check(
                    secret.chars().count() >= MIN_SECRET_CHARS,
                    setting,
                    format!(
                        "is {} characters long; use at least {MIN_SECRET_CHARS} (for example the output of `openssl rand -base64 32`)",
                        secret.chars().count()
                    ),
                );
            }
        }
        check(
            !production || self.jwt_secret.is_some(),
            "ARAGORA_JWT_SECRET",
            "is required when ARAGORA_ENV=production; set a secret of at least 32 characters"
                .into(),
        );
        check(
            self.jwt_secret.is_some() || self.jwt_secret_previous.is_none(),
            "ARAGORA_JWT_SECRET_PREVIOUS",
            "is set without ARAGORA_JWT_SECRET; a rotation needs the new secret in ARAGORA_JWT_SECRET".into(),
        );
        check(
            self.jwt_secret.is_none() || self.jwt_secret != self.jwt_secret_previous,
            "ARAGORA_JWT_SECRET_PREVIOUS",
            "is the same as ARAGORA_JWT_SECRET; set it to the secret before the rotation".into(),
        );
        check(
            (60..=30 * 24 * 3600).contains(&self.jwt_ttl_secs),
            "ARAGORA_JWT_TTL",
            format!(
                "is {}; use 60 to 2592000 seconds (default 86400, a day)",
                self.jwt_ttl_secs
            ),
        );
        if let Some(token) = &self.api_token {
            check(
                token.trim() == token && !token.is_empty(),
                "ARAGORA_API_TOKEN",
                "has leading or trailing whitespace; remove it".into(),
            );
            check(
                !production || token.chars().count() >= MIN_SECRET_CHARS,
                "ARAGORA_API_TOKEN",
                format!("is {} characters long; in production use at least {MIN_SECRET_CHARS} (`openssl rand -base64 32`)", token.chars().count()),
            );
        }
        check(
            !production || self.anonymous.0.is_none(),
            "ARAGORA_AUTH_ANONYMOUS",
            "is on while ARAGORA_ENV=production; anonymous access is for demos, set it to off"
                .into(),
        );
        check(
            self.api_key_cache_secs <= 60,
            "ARAGORA_API_KEY_CACHE_SECONDS",
            format!(
                "is {}; use 0 to 60, so a revoked key stops working within a minute",
                self.api_key_cache_secs
            ),
        );
        for origin in &self.allowed_origins {
            if origin.contains('*') {
                check(
                    false,
                    "ARAGORA_ALLOWED_ORIGINS",
                    format!("contains the wildcard {origin:?}; list each origin explicitly (https://app.example.com)"),
                );
            } else {
                check(
                    crate::origin::is_origin(origin),
                    "ARAGORA_ALLOWED_ORIGINS",
                    format!("{origin:?} is not an origin; write scheme://host[:port] with no path"),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (AuthConfig, Vec<ConfigProblem>) {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut config = AuthConfig::default();
        let mut problems = Vec::new();
        config.overlay_env(&env, &mut problems);
        (config, problems)
    }

    #[test]
    fn production_needs_a_jwt_secret_and_refuses_anonymous_access() {
        let (config, read_problems) = read(&[("ARAGORA_AUTH_ANONYMOUS", "operator")]);
        assert!(read_problems.is_empty());
        let problems = config.problems(Environment::Production);
        let settings: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert!(settings.contains(&"ARAGORA_JWT_SECRET"), "{problems:?}");
        assert!(settings.contains(&"ARAGORA_AUTH_ANONYMOUS"), "{problems:?}");
        assert!(config.problems(Environment::Development).is_empty());
    }

    #[test]
    fn short_secrets_wildcards_and_admin_anonymous_are_refused_without_echoing_secrets() {
        let (config, read_problems) = read(&[
            ("ARAGORA_JWT_SECRET", "short-secret-value"),
            (
                "ARAGORA_ALLOWED_ORIGINS",
                "https://ok.example.com,*,not an origin",
            ),
            ("ARAGORA_AUTH_ANONYMOUS", "admin"),
        ]);
        assert_eq!(read_problems.len(), 1, "{read_problems:?}");
        let problems = config.problems(Environment::Development);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let all = format!("{problems:?}{read_problems:?}");
        assert!(!all.contains("short-secret-value"), "{all}");
        assert!(!format!("{config:?}").contains("short-secret-value"));
    }
}
