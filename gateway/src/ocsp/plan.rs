//! What the settings make of a certificate, decided each time one is loaded (at start, and on
//! each reload, which re-reads the response file): nothing stapled, the operator's file, or
//! responses fetched from the certificate's responder. Anything that cannot work is a
//! [`ConfigProblem`] naming the setting, so the gateway refuses to start (or to reload) rather
//! than serve without the staple it was asked for (`on`, or a response file); under the default
//! `auto` a chain that lacks its issuer only loses the staple, with a warning. The responder
//! itself is never asked here.

use super::subject::{leaf_of, responder_url, OcspSubject};
use super::verify::{verify, Status};
use super::{OcspError, Staple};
use crate::config::GatewayConfig;
use aragora_config::{ConfigProblem, OcspStapling};
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::time::SystemTime;

const STAPLING: &str = "ARAGORA_TLS_OCSP_STAPLING";
const FILE: &str = "ARAGORA_TLS_OCSP_RESPONSE_FILE";

/// What is stapled for one certificate.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Nothing: stapling off, or `auto` and the certificate names no OCSP responder.
    Off,
    /// The response file, verified, stapled as is until its nextUpdate.
    File { path: PathBuf, staple: Staple },
    /// Responses fetched from the responder at `url` by the stapler.
    Fetch {
        subject: Box<OcspSubject>,
        url: String,
    },
}

impl Plan {
    /// The staple to serve as soon as the certificate is (the file's).
    pub fn initial_staple(&self) -> Option<&Staple> {
        match self {
            Plan::File { staple, .. } => Some(staple),
            _ => None,
        }
    }
}

/// The plan for `chain` (leaf first) under `config`, at `now`.
pub fn plan(
    config: &GatewayConfig,
    chain: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<Plan, ConfigProblem> {
    if config.tls_ocsp_stapling == OcspStapling::Off {
        return Ok(Plan::Off);
    }
    if let Some(path) = &config.tls_ocsp_response_file {
        return from_file(path, chain, now);
    }
    let leaf = leaf_of(chain).map_err(|err| ConfigProblem::new(STAPLING, err.to_string()))?;
    let url = responder_url(&leaf).map_err(|err| ConfigProblem::new(STAPLING, err.to_string()))?;
    let Some(url) = url else {
        return match config.tls_ocsp_stapling {
            OcspStapling::On => Err(ConfigProblem::new(
                STAPLING,
                "is on, but the certificate (ARAGORA_TLS_CERT) names no http OCSP responder (Authority Information Access); use auto or off, or give ARAGORA_TLS_OCSP_RESPONSE_FILE",
            )),
            _ => Ok(Plan::Off),
        };
    };
    let subject = match OcspSubject::from_chain(chain) {
        Ok(subject) => subject,
        // `auto` is the default, so a leaf-only certificate file that worked before stapling
        // existed must keep starting: it serves without a staple, and says how to get one.
        Err(err) if config.tls_ocsp_stapling == OcspStapling::Auto => {
            tracing::warn!(
                responder = %url,
                "OCSP stapling is off for this certificate: {err} (ARAGORA_TLS_CERT); set {STAPLING}=off to silence this"
            );
            return Ok(Plan::Off);
        }
        Err(err) => {
            return Err(ConfigProblem::new(
                STAPLING,
                format!(
                    "is on and the certificate names the OCSP responder {url}, but {err} (ARAGORA_TLS_CERT); or set {STAPLING}=auto or off"
                ),
            ))
        }
    };
    Ok(Plan::Fetch {
        subject: Box::new(subject),
        url,
    })
}

fn from_file(
    path: &std::path::Path,
    chain: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<Plan, ConfigProblem> {
    let shown = path.display();
    let der = std::fs::read(path)
        .map_err(|err| ConfigProblem::new(FILE, format!("{shown} cannot be read: {err}")))?;
    let subject = OcspSubject::from_chain(chain).map_err(|err| {
        ConfigProblem::new(
            FILE,
            format!("{shown} cannot be checked: {err} (ARAGORA_TLS_CERT)"),
        )
    })?;
    let verified = verify(&subject, &der, now).map_err(|err| {
        let hint = match err {
            OcspError::Malformed(_) => {
                "; give the DER response (openssl ocsp -respout), not PEM or text"
            }
            OcspError::Expired(_) => "; fetch a fresh one and send SIGHUP",
            _ => "",
        };
        ConfigProblem::new(FILE, format!("{shown} {err}{hint}"))
    })?;
    match verified.status {
        Status::Good => Ok(Plan::File {
            path: path.to_path_buf(),
            staple: verified.staple,
        }),
        Status::Revoked(at) => Err(ConfigProblem::new(
            FILE,
            format!("{shown} says the certificate was revoked at {at}: replace the certificate"),
        )),
        Status::Unknown => Err(ConfigProblem::new(
            FILE,
            format!("{shown} says the responder does not know the certificate (status unknown)"),
        )),
    }
}
