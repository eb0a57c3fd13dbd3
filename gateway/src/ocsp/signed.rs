//! Signatures over DER, checked with the verification algorithms rustls uses for certificates
//! (its *ring* provider: ECDSA P-256/P-384, Ed25519, RSA PKCS#1 and PSS with SHA-2). Nothing
//! here computes cryptography: it only finds the algorithm whose identifiers match the
//! signature's and the key's, and hands it the bytes. SHA-1 signatures are not among them and
//! are refused as unsupported.

use der::Encode;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("its signature does not verify")]
    Invalid,
    #[error("its signature algorithm ({signature}) with a {key} key is not supported")]
    Unsupported { signature: String, key: String },
}

/// The contents of an AlgorithmIdentifier SEQUENCE (OID, then parameters), the form rustls'
/// algorithm constants take.
fn contents(algorithm: &AlgorithmIdentifierOwned) -> Vec<u8> {
    let mut out = algorithm.oid.to_der().unwrap_or_default();
    if let Some(parameters) = &algorithm.parameters {
        out.extend(parameters.to_der().unwrap_or_default());
    }
    out
}

/// Checks that `signature` over `message` was made with the key of `signer` by `algorithm`.
pub fn verify(
    signer: &SubjectPublicKeyInfoOwned,
    algorithm: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let signature_id = contents(algorithm);
    let key_id = contents(&signer.algorithm);
    let supported = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let candidate = supported.iter().find(|candidate| {
        candidate.signature_alg_id().as_ref() == signature_id.as_slice()
            && candidate.public_key_alg_id().as_ref() == key_id.as_slice()
    });
    let Some(candidate) = candidate else {
        return Err(SignatureError::Unsupported {
            signature: algorithm.oid.to_string(),
            key: signer.algorithm.oid.to_string(),
        });
    };
    candidate
        .verify_signature(signer.subject_public_key.raw_bytes(), message, signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Whether `issuer`'s key signed `cert` (and `cert` names `issuer` as its issuer).
pub fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    verify(
        &issuer.tbs_certificate.subject_public_key_info,
        &cert.signature_algorithm,
        &tbs,
        cert.signature.raw_bytes(),
    )
    .is_ok()
}
