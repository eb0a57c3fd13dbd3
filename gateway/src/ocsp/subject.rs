//! The served certificate as OCSP names it: the leaf, its issuer found in the chain (the
//! certificate whose subject is the leaf's issuer and whose key verifies the leaf's signature),
//! the responder URL of the leaf's Authority Information Access, the CertID (RFC 6960 4.1.1)
//! and the DER request the stapler POSTs.

use super::signed;
use super::OcspError;
use const_oid::db::rfc5912::{ID_AD_OCSP, ID_SHA_1, ID_SHA_256};
use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use rustls::pki_types::CertificateDer;
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::Certificate;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest};

/// The leaf of a chain and its issuer.
#[derive(Debug, Clone)]
pub struct OcspSubject {
    leaf: Certificate,
    issuer: Certificate,
}

/// The leaf (first) certificate of a chain, decoded.
pub fn leaf_of(chain: &[CertificateDer<'_>]) -> Result<Certificate, OcspError> {
    let first = chain
        .first()
        .ok_or_else(|| OcspError::Chain("it holds no certificate".into()))?;
    Certificate::from_der(first).map_err(|err| OcspError::Chain(err.to_string()))
}

/// The first http(s) OCSP responder URL of `leaf`'s Authority Information Access extension.
pub fn responder_url(leaf: &Certificate) -> Result<Option<String>, OcspError> {
    let access = leaf
        .tbs_certificate
        .get::<AuthorityInfoAccessSyntax>()
        .map_err(|err| OcspError::Chain(format!("its Authority Information Access: {err}")))?;
    let Some((_, access)) = access else {
        return Ok(None);
    };
    Ok(access.0.iter().find_map(|description| {
        match (&description.access_method, &description.access_location) {
            (method, GeneralName::UniformResourceIdentifier(uri)) if *method == ID_AD_OCSP => {
                let uri = uri.as_str();
                (uri.starts_with("http://") || uri.starts_with("https://")).then(|| uri.to_string())
            }
            _ => None,
        }
    }))
}

impl OcspSubject {
    /// The leaf and its issuer from a chain as served (leaf first). A self-issued leaf is
    /// its own issuer.
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Result<Self, OcspError> {
        let leaf = leaf_of(chain)?;
        let candidates = chain[1..]
            .iter()
            .filter_map(|der| Certificate::from_der(der).ok())
            .chain(std::iter::once(leaf.clone()));
        for candidate in candidates {
            if signed::issued_by(&leaf, &candidate) {
                return Ok(Self {
                    leaf,
                    issuer: candidate,
                });
            }
        }
        Err(OcspError::NoIssuer {
            issuer: leaf.tbs_certificate.issuer.to_string(),
        })
    }

    pub fn leaf(&self) -> &Certificate {
        &self.leaf
    }

    pub fn issuer(&self) -> &Certificate {
        &self.issuer
    }

    /// The leaf's serial number in hex, as `openssl x509 -serial` shows it.
    pub fn serial(&self) -> String {
        hex::encode_upper(self.leaf.tbs_certificate.serial_number.as_bytes())
    }

    /// The leaf's CertID with `hash` (SHA-1 or SHA-256), or `None` for another hash.
    fn cert_id_with(&self, hash: &AlgorithmIdentifierOwned) -> Option<CertId> {
        let name = self.issuer.tbs_certificate.subject.to_der().ok()?;
        let key = self
            .issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let (name_hash, key_hash) = match hash.oid {
            oid if oid == ID_SHA_1 => (
                sha1::Sha1::digest(&name).to_vec(),
                sha1::Sha1::digest(key).to_vec(),
            ),
            oid if oid == ID_SHA_256 => (
                sha2::Sha256::digest(&name).to_vec(),
                sha2::Sha256::digest(key).to_vec(),
            ),
            _ => return None,
        };
        Some(CertId {
            hash_algorithm: hash.clone(),
            issuer_name_hash: OctetString::new(name_hash).ok()?,
            issuer_key_hash: OctetString::new(key_hash).ok()?,
            serial_number: self.leaf.tbs_certificate.serial_number.clone(),
        })
    }

    /// Whether `id` names the leaf (hashes compared under the hash `id` uses; its parameters,
    /// NULL or absent, are not).
    pub fn is_named_by(&self, id: &CertId) -> bool {
        self.cert_id_with(&id.hash_algorithm).is_some_and(|ours| {
            ours.issuer_name_hash == id.issuer_name_hash
                && ours.issuer_key_hash == id.issuer_key_hash
                && ours.serial_number == id.serial_number
        })
    }

    /// The DER OCSP request for the leaf: one CertID with SHA-1, the hash every responder
    /// answers (RFC 5019 2.1.1), unsigned and without a nonce, so that a responder may answer
    /// from its cache, as stapling expects.
    pub fn request_der(&self) -> Vec<u8> {
        let sha1 = AlgorithmIdentifierOwned {
            oid: ID_SHA_1,
            parameters: Some(Null.into()),
        };
        let request = OcspRequest {
            tbs_request: TbsRequest {
                request_list: self
                    .cert_id_with(&sha1)
                    .map(|req_cert| Request {
                        req_cert,
                        single_request_extensions: None,
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            optional_signature: None,
        };
        request.to_der().unwrap_or_default()
    }
}
