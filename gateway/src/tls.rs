//! Certificates: checked before any listener starts (the rustls listener panics on a bad path),
//! generated self-signed for `aragora up`, and read for their expiry so an alert can fire weeks
//! ahead (`aragora_tls_cert_expiry_timestamp_seconds`).

use aragora_config::ConfigProblem;
use std::path::{Path, PathBuf};

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
    write_private(&key_path, &generated.key_pair.serialize_pem()).map_err(|err| err.to_string())?;
    tracing::warn!(cert = %cert_path.display(), "generated a self-signed certificate for localhost; give --tls-cert and --tls-key for a real one");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
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

/// The certificate the HTTPS listener presents, replaceable while it runs (SIGHUP): new
/// handshakes get the new certificate, established connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: std::sync::RwLock<std::sync::Arc<rustls::sign::CertifiedKey>>,
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

impl CertStore {
    pub fn new(key: rustls::sign::CertifiedKey) -> Self {
        Self {
            current: std::sync::RwLock::new(std::sync::Arc::new(key)),
        }
    }

    pub fn replace(&self, key: rustls::sign::CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(key);
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
