//! Certificates: checked before any listener starts (the rustls listener panics on a bad path),
//! generated self-signed for `aragora up`, and read for their expiry so an alert can fire weeks
//! ahead (`aragora_tls_cert_expiry_timestamp_seconds`); the [`CertStore`] that serves the
//! certificate, swapped on reload, with its OCSP staple ([`crate::ocsp`]).

use aragora_config::ConfigProblem;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Checks that the certificate and key files exist, parse as PEM, and that the certificate has
/// a readable expiry. Returns the expiry (Unix seconds).
pub fn check_files(cert: &Path, key: &Path) -> Result<i64, ConfigProblem> {
    let cert_text = std::fs::read(cert).map_err(|err| {
        ConfigProblem::new(
            "ARAGORA_TLS_CERT",
            format!("{} cannot be read: {err}", cert.display()),
        )
    })?;
    let key_text = std::fs::read_to_string(key).map_err(|err| {
        ConfigProblem::new(
            "ARAGORA_TLS_KEY",
            format!("{} cannot be read: {err}", key.display()),
        )
    })?;
    if !key_text.contains("PRIVATE KEY-----") {
        return Err(ConfigProblem::new(
            "ARAGORA_TLS_KEY",
            format!(
                "{} holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)",
                key.display()
            ),
        ));
    }
    expiry_of(&cert_text).map_err(|reason| {
        ConfigProblem::new(
            "ARAGORA_TLS_CERT",
            format!("{} is not a PEM certificate: {reason}", cert.display()),
        )
    })
}

/// The `notAfter` of the first certificate in a PEM chain, as Unix seconds.
pub fn expiry_of(pem: &[u8]) -> Result<i64, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|err| err.to_string())?;
    let certificate = pem.parse_x509().map_err(|err| err.to_string())?;
    Ok(certificate.validity().not_after.timestamp())
}

/// A self-signed certificate for localhost kept in `dir` (`cert.pem`, `key.pem`), generated on
/// first use and regenerated when it expires within a week.
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let week_ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 + 7 * 86_400)
        .unwrap_or_default();
    if let Ok(expiry) = check_files(&cert_path, &key_path) {
        if expiry > week_ahead {
            return Ok((cert_path, key_path));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|err| err.to_string())?;
    std::fs::write(&cert_path, generated.cert.pem()).map_err(|err| err.to_string())?;
    aragora_config::files::write_private(
        &key_path,
        &generated.key_pair.serialize_pem(),
        aragora_config::files::Existing::Replace,
    )
    .map_err(|err| err.to_string())?;
    tracing::warn!(cert = %cert_path.display(), "generated a self-signed certificate for localhost; give --tls-cert and --tls-key for a real one");
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_checks_out_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path()).unwrap();
        let expiry = check_files(&cert, &key).unwrap();
        assert!(expiry > 1_700_000_000);
        let first = std::fs::read(&cert).unwrap();
        self_signed(dir.path()).unwrap();
        assert_eq!(
            first,
            std::fs::read(&cert).unwrap(),
            "a valid certificate is kept"
        );
    }

    #[test]
    fn bad_files_are_named_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let missing =
            check_files(&dir.path().join("nope.pem"), &dir.path().join("nope.key")).unwrap_err();
        assert_eq!(missing.setting, "ARAGORA_TLS_CERT");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let (_, key) = self_signed(dir.path()).unwrap();
        let problem = check_files(&junk, &key).unwrap_err();
        assert!(
            problem.message.contains("not a PEM certificate"),
            "{problem}"
        );
        let problem = check_files(&dir.path().join("cert.pem"), &junk).unwrap_err();
        assert_eq!(problem.setting, "ARAGORA_TLS_KEY");
    }
}

/// A certificate as loaded for serving: its expiry, what rustls serves, and what is stapled.
pub struct Loaded {
    pub expiry: i64,
    pub key: rustls::sign::CertifiedKey,
    pub plan: crate::ocsp::Plan,
}

/// Checks and loads the certificate and key, and decides its OCSP stapling under `config`:
/// what start and every reload go through, and what validation runs ahead of start.
pub fn load(
    config: &crate::GatewayConfig,
    cert: &Path,
    key: &Path,
) -> Result<Loaded, ConfigProblem> {
    let expiry = check_files(cert, key)?;
    let certified = load_certified_key(cert, key)
        .map_err(|reason| ConfigProblem::new("ARAGORA_TLS_CERT", reason))?;
    let plan = crate::ocsp::plan::plan(config, &certified.cert, std::time::SystemTime::now())?;
    Ok(Loaded {
        expiry,
        key: certified,
        plan,
    })
}

/// Reads a PEM certificate chain and key into what rustls serves.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, String> {
    let (chain, key) =
        pingora::tls::load_certs_and_key_files(&cert.to_string_lossy(), &key.to_string_lossy())
            .map_err(|err| err.to_string())?
            .ok_or_else(|| {
                format!(
                    "{} or {} holds no usable certificate or key",
                    cert.display(),
                    key.display()
                )
            })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|err| format!("the key cannot sign: {err}"))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|err| format!("the key does not belong to the certificate: {err}"))?;
    Ok(certified)
}

/// The certificate the HTTPS listener presents, replaceable while it runs (SIGHUP): new
/// handshakes get the new certificate, established connections keep theirs. Beside it, its
/// OCSP plan and staple: the staple is handed out with the certificate only until its
/// nextUpdate, so a handshake never waits for a responder nor gets an expired response.
#[derive(Debug)]
pub struct CertStore {
    served: std::sync::RwLock<Served>,
    /// Wakes the stapler when the certificate (so its plan) changes.
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct Served {
    /// Counts replacements, so that a staple fetched for a replaced certificate is dropped.
    generation: u64,
    plan: Arc<crate::ocsp::Plan>,
    plain: Arc<rustls::sign::CertifiedKey>,
    /// The certificate with its staple, and the staple's thisUpdate and nextUpdate.
    stapled: Option<(Arc<rustls::sign::CertifiedKey>, SystemTime, SystemTime)>,
}

impl Served {
    fn new(generation: u64, loaded: Loaded) -> Self {
        let plain = Arc::new(loaded.key);
        let stapled = loaded
            .plan
            .initial_staple()
            .map(|staple| with_staple(&plain, staple));
        Self {
            generation,
            plan: Arc::new(loaded.plan),
            plain,
            stapled,
        }
    }
}

fn with_staple(
    plain: &rustls::sign::CertifiedKey,
    staple: &crate::ocsp::Staple,
) -> (Arc<rustls::sign::CertifiedKey>, SystemTime, SystemTime) {
    let mut stapled = plain.clone();
    stapled.ocsp = Some(staple.der.clone());
    (Arc::new(stapled), staple.this_update, staple.next_update)
}

impl CertStore {
    pub fn new(loaded: Loaded) -> Self {
        Self {
            served: std::sync::RwLock::new(Served::new(0, loaded)),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Served> {
        self.served.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Served> {
        self.served.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `loaded` from the next handshake on, with the file's staple if its plan has one
    /// (a fetched staple of the previous certificate is not carried over).
    pub fn replace(&self, loaded: Loaded) {
        {
            let mut served = self.write();
            let generation = served.generation + 1;
            *served = Served::new(generation, loaded);
        }
        self.changed.notify_one();
    }

    /// The current certificate's generation and OCSP plan.
    pub fn plan(&self) -> (u64, Arc<crate::ocsp::Plan>) {
        let served = self.read();
        (served.generation, served.plan.clone())
    }

    /// Waits until the certificate is replaced (one waiter: the stapler).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Staples `staple` to the certificate of `generation`; false (and nothing done) when
    /// that certificate was replaced meanwhile.
    pub fn staple(&self, generation: u64, staple: &crate::ocsp::Staple) -> bool {
        let mut served = self.write();
        if served.generation != generation {
            return false;
        }
        served.stapled = Some(with_staple(&served.plain, staple));
        true
    }

    /// Stops stapling for the certificate of `generation` (its status is no longer good).
    pub fn unstaple(&self, generation: u64) {
        let mut served = self.write();
        if served.generation == generation {
            served.stapled = None;
        }
    }

    /// The thisUpdate and nextUpdate of the staple handshakes get at `now`, if any.
    pub fn served_staple(&self, now: SystemTime) -> Option<(SystemTime, SystemTime)> {
        self.read()
            .stapled
            .as_ref()
            .filter(|(_, _, until)| now < *until)
            .map(|(_, from, until)| (*from, *until))
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let served = self.read();
        let now = SystemTime::now();
        // rustls sends the staple only to a client that asked for one (status_request).
        match &served.stapled {
            Some((stapled, _, until)) if now < *until => Some(stapled.clone()),
            _ => Some(served.plain.clone()),
        }
    }
}
