//! How every component reaches Redis: one fred client configuration from `ARAGORA_REDIS_URL`
//! and, for a `rediss://` URL (TLS, as managed Redis services require), the certificates it
//! trusts: the system's roots, plus the PEM file of `ARAGORA_REDIS_CA_FILE` when set (the CA
//! of a private or self-signed Redis). The engine's event fan-out and the gateway's shared rate
//! limiter both build their clients here, so both speak TLS the same way.

use fred::types::config::{Config, TlsConnector};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a Redis client could not be configured. Messages name the URL without its password.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error(
        "{shown:?} is not a Redis URL: {reason}; write redis://host:6379/0 or rediss://host:6380/0"
    )]
    Url { shown: String, reason: String },
    #[error("cannot read the Redis CA file {path}: {reason}; point ARAGORA_REDIS_CA_FILE at a PEM file of the CA that signed the Redis server's certificate")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS for Redis: {0}")]
    Tls(String),
}

/// Whether `url` asks for TLS (`rediss://`, fred's `valkeys://` too).
pub fn uses_tls(url: &str) -> bool {
    url.starts_with("rediss") || url.starts_with("valkeys")
}

/// The client configuration for `url`; for a TLS URL, trusting the system's roots and the
/// certificates of `ca_file`.
pub fn client_config(url: &str, ca_file: Option<&Path>) -> Result<Config, RedisSetupError> {
    let secrets: Vec<String> = crate::url_password(url)
        .map(str::to_string)
        .into_iter()
        .collect();
    let mut config = Config::from_url(url).map_err(|err| RedisSetupError::Url {
        shown: crate::redact_url(url),
        reason: crate::scrub(&err.to_string(), &secrets),
    })?;
    if uses_tls(url) {
        config.tls = Some(TlsConnector::from(tls_config(ca_file)?).into());
    }
    Ok(config)
}

/// A rustls client configuration (ring, as the rest of aragora) trusting the system's roots and
/// `ca_file`. A system without usable roots is no error when `ca_file` is given.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, RedisSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    // Unreadable system certificates are skipped: the CA file (or the ones that loaded) decide.
    let (_added, _skipped) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let failed = |reason: String| RedisSetupError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|err| failed(err.to_string()))?;
        let certs = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| failed(format!("not PEM: {err}")))?;
        if certs.is_empty() {
            return Err(failed("it holds no PEM certificate".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|err| failed(format!("not a usable CA certificate: {err}")))?;
        }
    }
    if roots.is_empty() {
        return Err(RedisSetupError::Tls(
            "the system has no trusted root certificates; set ARAGORA_REDIS_CA_FILE to the CA of the Redis server".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| RedisSetupError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The problems of a component's Redis settings: a URL that is no Redis URL, a CA file
/// without TLS or that cannot be read. Shared by the engine and the gateway, so both say it
/// the same way.
pub fn problems(url: Option<&str>, ca_file: Option<&Path>) -> Vec<crate::ConfigProblem> {
    let mut problems = Vec::new();
    if let Some(url) = url {
        if !(url.starts_with("redis://") || uses_tls(url)) {
            problems.push(crate::ConfigProblem::new(
                "ARAGORA_REDIS_URL",
                format!(
                    "{:?} is not a Redis URL; write redis://host:6379/0 (or rediss:// for TLS)",
                    crate::redact_url(url)
                ),
            ));
        }
    }
    if let Some(path) = ca_file {
        match url {
            Some(url) if uses_tls(url) => {
                if let Err(err) = std::fs::metadata(path) {
                    problems.push(crate::ConfigProblem::new(
                        "ARAGORA_REDIS_CA_FILE",
                        format!("{} cannot be read ({err}); give the PEM file of the CA that signed the Redis server's certificate", path.display()),
                    ));
                }
            }
            _ => problems.push(crate::ConfigProblem::new(
                "ARAGORA_REDIS_CA_FILE",
                "is set but ARAGORA_REDIS_URL is not a rediss:// (TLS) URL; write rediss://host:port, or unset it".to_string(),
            )),
        }
    }
    problems
}

/// A Redis client error as an operator should read it: a TLS certificate that does not verify
/// gets what to do about it (rustls' own words, such as `InvalidCertificate(UnknownIssuer)`,
/// name no setting).
pub fn explain(error: &str) -> String {
    if error.contains("InvalidCertificate") || error.contains("UnknownIssuer") {
        format!("{error}: the Redis server's TLS certificate is not trusted; set ARAGORA_REDIS_CA_FILE to the PEM of the CA that signed it")
    } else {
        error.to_string()
    }
}

/// Connects `client`, retrying every `pause` until Redis answers: fred gives up after a failed
/// first connection (its reconnect policy only covers connections that once worked), so a
/// component started while Redis is down would otherwise never use it. `on_failure` is told
/// each failed attempt (its number and the error).
pub async fn connect_until_up<C: fred::interfaces::ClientLike>(
    client: &C,
    pause: std::time::Duration,
    mut on_failure: impl FnMut(u32, &fred::error::Error),
) {
    let mut attempt = 1u32;
    while let Err(err) = client.init().await {
        on_failure(attempt, &err);
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_problems_name_the_setting_and_the_fix() {
        let named = |url: Option<&str>, ca: Option<&Path>| -> Vec<String> {
            problems(url, ca)
                .into_iter()
                .map(|p| p.to_string())
                .collect()
        };
        assert!(named(Some("redis://127.0.0.1:6379"), None).is_empty());
        assert!(named(Some("rediss://127.0.0.1:6380"), None).is_empty());
        let bad = named(Some("http://u:pw-77@host"), None);
        assert!(
            bad[0].starts_with("ARAGORA_REDIS_URL") && !bad[0].contains("pw-77"),
            "{bad:?}"
        );
        let plain = named(Some("redis://h:6379"), Some(Path::new("/etc/ca.pem")));
        assert!(plain[0].contains("rediss://"), "{plain:?}");
        let missing = named(
            Some("rediss://h:6380"),
            Some(Path::new("/nonexistent/ca.pem")),
        );
        assert!(missing[0].contains("/nonexistent/ca.pem"), "{missing:?}");
    }

    #[test]
    fn an_untrusted_certificate_names_the_setting() {
        let told = explain("IO Error: InvalidCertificate(BadSignature)");
        assert!(told.contains("ARAGORA_REDIS_CA_FILE"), "{told}");
        assert_eq!(explain("Connection refused"), "Connection refused");
    }

    #[test]
    fn a_plain_url_has_no_tls_and_a_tls_url_has_it() {
        let plain = client_config("redis://127.0.0.1:6379/0", None).unwrap();
        assert!(plain.tls.is_none());
        let tls = client_config("rediss://127.0.0.1:6380/0", None);
        // Without system roots there is nothing to trust: say so, not a handshake error later.
        match tls {
            Ok(config) => assert!(config.tls.is_some()),
            Err(err) => assert!(err.to_string().contains("ARAGORA_REDIS_CA_FILE"), "{err}"),
        }
    }

    #[test]
    fn a_bad_ca_file_or_url_is_named_without_the_password() {
        let dir = std::env::temp_dir().join(format!("aragora-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let err = client_config("rediss://127.0.0.1:6380", Some(&empty)).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        let missing =
            client_config("rediss://127.0.0.1:6380", Some(&dir.join("missing.pem"))).unwrap_err();
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
        let url = client_config("redis://u:hunter2-pw@[::1:6379", None).unwrap_err();
        assert!(!url.to_string().contains("hunter2-pw"), "{url}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
