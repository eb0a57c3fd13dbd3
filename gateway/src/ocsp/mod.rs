//! OCSP stapling: the gateway hands each TLS client that asks (`status_request`) a recent,
//! verified answer of the CA's responder saying its certificate is good, so that clients need
//! not ask the responder themselves (their privacy, their latency, and a responder outage that
//! stays ours).
//!
//! | module | owns |
//! |---|---|
//! | [`subject`] | the leaf and its issuer as OCSP names them: CertID, responder URL, the request |
//! | [`signed`] | signatures over DER, checked by rustls' verification algorithms |
//! | [`verify`] | a response checked: ours, signed by the issuer or its delegate, current; its status |
//! | [`plan`] | what the settings make of a certificate: no staple, a file's, or fetched ones |
//! | [`stapler`] | the refresh loop (fetch, verify, staple, back off), its metrics and logs |
//!
//! The staple is held beside the certificate by [`crate::tls::CertStore`], which hands it out
//! only until its nextUpdate: a handshake never waits for the responder and never gets an
//! expired answer.

pub mod plan;
pub mod signed;
pub mod stapler;
pub mod subject;
pub mod verify;

pub use plan::Plan;
pub use subject::OcspSubject;

use std::time::SystemTime;

/// A verified OCSP response saying "good", as stapled, with the window it is current in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staple {
    /// The DER OCSPResponse, sent as is.
    pub der: Vec<u8>,
    pub this_update: SystemTime,
    /// The response's nextUpdate (a day after thisUpdate when it has none): not stapled after.
    pub next_update: SystemTime,
}

/// Why a chain cannot be stapled, or a response was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("the certificate cannot be read for OCSP: {0}")]
    Chain(String),
    #[error("the chain holds no certificate of its issuer ({issuer}), which OCSP needs; append the issuer (intermediate) certificate after the leaf in the file")]
    NoIssuer { issuer: String },
    #[error("is not a DER OCSP response: {0}")]
    Malformed(String),
    #[error("is an OCSP error ({0}), not a response")]
    Unsuccessful(&'static str),
    #[error("does not name this certificate (serial {serial}, from this issuer)")]
    NotOurs { serial: String },
    #[error("is signed by {0}, not by the issuer or a responder it delegated to")]
    UntrustedSigner(String),
    #[error("does not verify: {0}")]
    Signature(signed::SignatureError),
    #[error("is not valid yet (thisUpdate {0}): check the clocks")]
    NotYetValid(String),
    #[error("expired at {0} (nextUpdate)")]
    Expired(String),
}
