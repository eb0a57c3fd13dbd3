//! Checking an OCSP response before it is stapled (RFC 6960 3.2): a successful basic response,
//! signed by the certificate's issuer or by a responder the issuer delegated to (a certificate
//! in the response, issued by the issuer, with the OCSP-signing extended key usage, valid now),
//! naming the leaf's CertID, and current (thisUpdate not ahead of the clock, nextUpdate not
//! passed). The status it states is returned, good or not; the caller staples only good.

use super::signed;
use super::subject::OcspSubject;
use super::{OcspError, Staple};
use const_oid::db::rfc5912::ID_KP_OCSP_SIGNING;
use const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC;
use der::{Decode, Encode};
use sha2::Digest;
use spki::SubjectPublicKeyInfoOwned;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspResponse, OcspResponseStatus,
    ResponderId,
};

/// How far a response's thisUpdate may be ahead of our clock (the responder's clock is not
/// ours).
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// How long a response without nextUpdate counts as current after its thisUpdate ("newer
/// information is always available", RFC 6960 4.2.2.1): what Firefox allows such a response.
const WITHOUT_NEXT_UPDATE: Duration = Duration::from_secs(86_400);

/// What a verified response says of the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Good,
    /// Revoked at this time (as the response writes it).
    Revoked(String),
    Unknown,
}

/// A response that verified: what it says, and the response itself with its validity.
#[derive(Debug, Clone)]
pub struct Verified {
    pub status: Status,
    pub staple: Staple,
}

fn system_time(time: &OcspGeneralizedTime) -> SystemTime {
    UNIX_EPOCH + time.0.to_unix_duration()
}

fn shown(time: &OcspGeneralizedTime) -> String {
    time.0.to_date_time().to_string()
}

fn status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

/// Checks `der` as a response about `subject`'s leaf at `now`.
pub fn verify(subject: &OcspSubject, der: &[u8], now: SystemTime) -> Result<Verified, OcspError> {
    let malformed = |err: der::Error| OcspError::Malformed(err.to_string());
    let response = OcspResponse::from_der(der).map_err(malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::Unsuccessful(status_name(
            response.response_status,
        )));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| OcspError::Malformed("a successful response without a body".into()))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(OcspError::Malformed(format!(
            "a response of type {}, not a basic OCSP response",
            bytes.response_type
        )));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    let signer = signer_of(subject, &basic, now)?;
    let signed_part = basic.tbs_response_data.to_der().map_err(malformed)?;
    signed::verify(
        signer,
        &basic.signature_algorithm,
        &signed_part,
        basic.signature.raw_bytes(),
    )
    .map_err(OcspError::Signature)?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|single| subject.is_named_by(&single.cert_id))
        .ok_or_else(|| OcspError::NotOurs {
            serial: subject.serial(),
        })?;
    let this_update = system_time(&single.this_update);
    if this_update > now + CLOCK_SKEW {
        return Err(OcspError::NotYetValid(shown(&single.this_update)));
    }
    let next_update = match &single.next_update {
        Some(next) => system_time(next),
        None => this_update + WITHOUT_NEXT_UPDATE,
    };
    if next_update <= now {
        let when = single
            .next_update
            .as_ref()
            .map(shown)
            .unwrap_or_else(|| format!("{} plus a day", shown(&single.this_update)));
        return Err(OcspError::Expired(when));
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(info) => Status::Revoked(shown(&info.revocation_time)),
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok(Verified {
        status,
        staple: Staple {
            der: der.to_vec(),
            this_update,
            next_update,
        },
    })
}

/// Whether `id` names `cert`: by its subject, or by the SHA-1 of its public key.
fn names(id: &ResponderId, cert: &Certificate) -> bool {
    match id {
        ResponderId::ByName(name) => *name == cert.tbs_certificate.subject,
        ResponderId::ByKey(hash) => {
            let key = cert
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes();
            hash.as_bytes() == sha1::Sha1::digest(key).as_slice()
        }
    }
}

fn describe(id: &ResponderId) -> String {
    match id {
        ResponderId::ByName(name) => name.to_string(),
        ResponderId::ByKey(hash) => format!("the key {}", hex::encode(hash.as_bytes())),
    }
}

/// The key that must have signed `basic`: the issuer's when the issuer is the responder, else
/// that of the delegated responder certificate the response carries, checked.
fn signer_of<'a>(
    subject: &'a OcspSubject,
    basic: &'a BasicOcspResponse,
    now: SystemTime,
) -> Result<&'a SubjectPublicKeyInfoOwned, OcspError> {
    let issuer = subject.issuer();
    let responder = &basic.tbs_response_data.responder_id;
    if names(responder, issuer) {
        return Ok(&issuer.tbs_certificate.subject_public_key_info);
    }
    let delegate = basic
        .certs
        .iter()
        .flatten()
        .find(|cert| names(responder, cert))
        .ok_or_else(|| {
            OcspError::UntrustedSigner(format!(
                "{}, which is not the issuer and sent no certificate",
                describe(responder)
            ))
        })?;
    let who = delegate.tbs_certificate.subject.to_string();
    if !signed::issued_by(delegate, issuer) {
        return Err(OcspError::UntrustedSigner(format!(
            "{who}, whose certificate the issuer did not sign"
        )));
    }
    let may_sign = delegate
        .tbs_certificate
        .get::<ExtendedKeyUsage>()
        .ok()
        .flatten()
        .is_some_and(|(_, usage)| usage.0.contains(&ID_KP_OCSP_SIGNING));
    if !may_sign {
        return Err(OcspError::UntrustedSigner(format!(
            "{who}, whose certificate lacks the OCSP-signing extended key usage"
        )));
    }
    let validity = &delegate.tbs_certificate.validity;
    let (from, until) = (
        UNIX_EPOCH + validity.not_before.to_unix_duration(),
        UNIX_EPOCH + validity.not_after.to_unix_duration(),
    );
    if now < from || now > until {
        return Err(OcspError::UntrustedSigner(format!(
            "{who}, whose certificate is not valid now"
        )));
    }
    Ok(&delegate.tbs_certificate.subject_public_key_info)
}

#[cfg(test)]
mod tests {
    //! Responses made by `openssl ocsp` (the same tool as the end-to-end responder) for a CA of
    //! the test's own, answering the request [`OcspSubject::request_der`] builds.
    use super::*;
    use std::path::Path;

    fn openssl(dir: &Path, args: &str) {
        let output = std::process::Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A CA signing `name`.pem with the extensions `ext`.
    fn issue(dir: &Path, name: &str, ext: &str, serial: &str) {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(dir, &format!("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}"));
        openssl(dir, &format!("x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -set_serial {serial} -days 2 -out {name}.pem -extfile {name}.ext"));
    }

    fn chain(dir: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        ["leaf.pem", "ca.pem"]
            .iter()
            .map(|file| {
                let pem = std::fs::read(dir.join(file)).unwrap();
                let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
                rustls::pki_types::CertificateDer::from(pem.contents)
            })
            .collect()
    }

    #[test]
    fn the_issuer_or_its_delegate_is_trusted_and_anyone_else_or_an_old_answer_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let ca = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -addext basicConstraints=critical,CA:TRUE";
        openssl(
            dir,
            &format!("req -x509 {ca} -keyout ca.key -out ca.pem -subj /CN=ca"),
        );
        openssl(
            dir,
            &format!("req -x509 {ca} -keyout rogue.key -out rogue.pem -subj /CN=ca"),
        );
        issue(
            dir,
            "leaf",
            "authorityInfoAccess=OCSP;URI:http://127.0.0.1:9\n",
            "0x4000000000000001",
        );
        issue(
            dir,
            "delegate",
            "extendedKeyUsage=OCSPSigning\n",
            "0x4000000000000002",
        );
        issue(
            dir,
            "plain",
            "extendedKeyUsage=serverAuth\n",
            "0x4000000000000003",
        );
        std::fs::write(
            dir.join("index.txt"),
            "V\t491231235959Z\t\t4000000000000001\tunknown\t/CN=leaf\n",
        )
        .unwrap();
        let subject = OcspSubject::from_chain(&chain(dir)).unwrap();
        std::fs::write(dir.join("request.der"), subject.request_der()).unwrap();
        let answer = |signer: &str| {
            openssl(dir, &format!("ocsp -index index.txt -rsigner {signer}.pem -rkey {signer}.key -CA ca.pem -reqin request.der -respout {signer}.der -nmin 5"));
            std::fs::read(dir.join(format!("{signer}.der"))).unwrap()
        };
        let now = SystemTime::now();
        for signer in ["ca", "delegate"] {
            let verified = verify(&subject, &answer(signer), now).unwrap();
            assert_eq!(verified.status, Status::Good, "signed by {signer}");
            let valid = verified
                .staple
                .next_update
                .duration_since(verified.staple.this_update)
                .unwrap();
            assert_eq!(valid, Duration::from_secs(300));
        }
        // Same name as the CA, another key.
        let rogue = verify(&subject, &answer("rogue"), now).unwrap_err();
        assert!(matches!(rogue, OcspError::Signature(_)), "{rogue}");
        let plain = verify(&subject, &answer("plain"), now).unwrap_err();
        assert!(
            plain.to_string().contains("lacks the OCSP-signing"),
            "{plain}"
        );
        let later = verify(&subject, &answer("ca"), now + Duration::from_secs(600)).unwrap_err();
        assert!(matches!(later, OcspError::Expired(_)), "{later}");
        let garbage = verify(&subject, b"\x30\x03\x0a\x01\x00", now).unwrap_err();
        assert!(matches!(garbage, OcspError::Malformed(_)), "{garbage}");
    }
}
