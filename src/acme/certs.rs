//! The X.509 this module makes and reads: the certificate key, the
//! certificate signing request sent to finalize an order (RFC 8555 §7.4,
//! PKCS #10 / RFC 2986), the self-signed TLS-ALPN-01 challenge certificate
//! (RFC 8737 §3), and what a certificate says about itself (validity,
//! names, public key) to decide whether a stored one can be reused.
//!
//! Keys are ECDSA P-256 and everything is signed ecdsa-with-SHA256, in the
//! ASN.1 signature form X.509 wants. The DER is written by `der`, by hand
//! (see there why).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest as _, Sha256};

use super::der::{self, Reader};
use crate::date::{self, rfc3339_millis};

/// Object identifiers, as the content octets of an OBJECT IDENTIFIER.
/// id-ecPublicKey, 1.2.840.10045.2.1 (RFC 5480).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// secp256r1 (P-256), 1.2.840.10045.3.1.7 (RFC 5480).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// ecdsa-with-SHA256, 1.2.840.10045.4.3.2 (RFC 5758).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// pkcs-9-at-extensionRequest, 1.2.840.113549.1.9.14 (RFC 2985).
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31 (RFC 8737 §6.1).
pub(super) const OID_ACME_IDENTIFIER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];

/// The GeneralName tag of a `dNSName` (RFC 5280 §4.2.1.6).
const DNS_NAME: u8 = der::context_primitive(2);

/// Longest commonName (RFC 5280's ub-common-name). A longer first name is
/// left out of the request's subject; it is in the SAN all the same, which
/// is what CAs issue for.
const MAX_COMMON_NAME: usize = 64;

/// The challenge certificate is valid from a day before it is made (the
/// CA's clock may be behind) to a week after: it is served for minutes.
const CHALLENGE_BACKDATE: Duration = Duration::from_secs(24 * 60 * 60);
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Bytes of a challenge certificate's random serial number; RFC 5280 allows
/// up to 20, CAs use at least 8 bytes of randomness.
const SERIAL_BYTES: usize = 16;

/// A certificate's key: a P-256 pair and its PKCS#8 DER, which is what
/// gets stored and handed to the server.
pub(super) struct CertificateKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl CertificateKey {
    pub(super) fn generate() -> Result<CertificateKey, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| "cannot generate an ECDSA P-256 key".to_owned())?;
        CertificateKey::from_pkcs8(pkcs8.as_ref())
    }

    pub(super) fn from_pkcs8(pkcs8: &[u8]) -> Result<CertificateKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|err| format!("not an ECDSA P-256 PKCS#8 key ({err})"))?;
        Ok(CertificateKey {
            pair,
            pkcs8: pkcs8.to_vec(),
            rng,
        })
    }

    pub(super) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as the uncompressed point a certificate holds.
    pub(super) fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The SubjectPublicKeyInfo (RFC 5480 §2).
    fn subject_public_key_info(&self) -> Vec<u8> {
        let algorithm = der::sequence(&[
            &der::element(der::OBJECT_IDENTIFIER, OID_EC_PUBLIC_KEY),
            &der::element(der::OBJECT_IDENTIFIER, OID_P256),
        ]);
        der::sequence(&[&algorithm, &der::bit_string(self.public_key())])
    }

    /// `to_be_signed`, its algorithm and its signature: the shape of both a
    /// certificate and a certificate request.
    fn signed(&self, to_be_signed: &[u8]) -> Result<Vec<u8>, String> {
        let signature = self
            .pair
            .sign(&self.rng, to_be_signed)
            .map_err(|_| "cannot sign with the certificate key".to_owned())?;
        Ok(der::sequence(&[
            to_be_signed,
            &ecdsa_with_sha256(),
            &der::bit_string(signature.as_ref()),
        ]))
    }
}

/// The AlgorithmIdentifier ecdsa-with-SHA256, which has no parameters
/// (RFC 5758 §3.2).
fn ecdsa_with_sha256() -> Vec<u8> {
    der::sequence(&[&der::element(der::OBJECT_IDENTIFIER, OID_ECDSA_SHA256)])
}

/// A Name with one commonName, or the empty Name when `common_name` is too
/// long for one.
fn name(common_name: &str) -> Vec<u8> {
    if common_name.len() > MAX_COMMON_NAME {
        return der::sequence(&[]);
    }
    let attribute = der::sequence(&[
        &der::element(der::OBJECT_IDENTIFIER, OID_COMMON_NAME),
        &der::element(der::UTF8_STRING, common_name.as_bytes()),
    ]);
    der::sequence(&[&der::constructed(der::SET, &[&attribute])])
}

/// One Extension; `critical` is written only when true (DER leaves out a
/// DEFAULT value).
fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let oid = der::element(der::OBJECT_IDENTIFIER, oid);
    let value = der::element(der::OCTET_STRING, value);
    if critical {
        der::sequence(&[&oid, &der::element(der::BOOLEAN, &[0xff]), &value])
    } else {
        der::sequence(&[&oid, &value])
    }
}

/// The subjectAltName extension listing `names` as dNSNames.
fn subject_alt_names(names: &[&str]) -> Vec<u8> {
    let names: Vec<Vec<u8>> = names
        .iter()
        .map(|name| der::element(DNS_NAME, name.as_bytes()))
        .collect();
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    extension(OID_SUBJECT_ALT_NAME, false, &der::sequence(&names))
}

/// The PKCS #10 request for `domains`, signed by `key`: the first name as
/// the subject's commonName, all of them as subjectAltNames.
pub(super) fn certificate_request(
    domains: &[&str],
    key: &CertificateKey,
) -> Result<Vec<u8>, String> {
    let first = domains.first().ok_or("a request needs at least one name")?;
    let extensions = der::sequence(&[&subject_alt_names(domains)]);
    let extension_request = der::sequence(&[
        &der::element(der::OBJECT_IDENTIFIER, OID_EXTENSION_REQUEST),
        &der::constructed(der::SET, &[&extensions]),
    ]);
    let info = der::sequence(&[
        &der::unsigned_integer(&[0]),
        &name(first),
        &key.subject_public_key_info(),
        &der::constructed(der::context(0), &[&extension_request]),
    ]);
    key.signed(&info)
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge for
/// `domain` (RFC 8737 §3): its only subjectAltName is `domain`, and a
/// critical id-pe-acmeIdentifier extension holds the SHA-256 of the key
/// authorization.
pub(super) fn challenge_certificate(
    domain: &str,
    key_authorization: &str,
    key: &CertificateKey,
    now: SystemTime,
) -> Result<Vec<u8>, String> {
    let mut serial = [0u8; SERIAL_BYTES];
    key.rng
        .fill(&mut serial)
        .map_err(|_| "cannot draw a serial number".to_owned())?;
    // Positive, and a full SERIAL_BYTES long.
    serial[0] = serial[0] & 0x7f | 0x40;
    let not_before = now.checked_sub(CHALLENGE_BACKDATE).unwrap_or(now);
    let not_after = now + CHALLENGE_LIFETIME;
    let digest = Sha256::digest(key_authorization.as_bytes());
    let acme_identifier = extension(
        OID_ACME_IDENTIFIER,
        true,
        &der::element(der::OCTET_STRING, &digest),
    );
    let extensions = der::sequence(&[&subject_alt_names(&[domain]), &acme_identifier]);
    let subject = name(domain);
    let to_be_signed = der::sequence(&[
        // [0] EXPLICIT Version: v3 (2), which extensions need.
        &der::constructed(der::context(0), &[&der::unsigned_integer(&[2])]),
        &der::unsigned_integer(&serial),
        &ecdsa_with_sha256(),
        &subject,
        &der::sequence(&[&time(not_before), &time(not_after)]),
        &subject,
        &key.subject_public_key_info(),
        &der::constructed(der::context(3), &[&extensions]),
    ]);
    key.signed(&to_be_signed)
}

/// A Time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime after.
fn time(at: SystemTime) -> Vec<u8> {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    // `YYYY-MM-DDTHH:MM:SS.000Z` → `YYYYMMDDHHMMSS`.
    let digits: String = rfc3339_millis(seconds, 0)
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    if digits.as_str() < "2050" {
        der::element(der::UTC_TIME, format!("{}Z", &digits[2..]).as_bytes())
    } else {
        der::element(der::GENERALIZED_TIME, format!("{digits}Z").as_bytes())
    }
}

/// What a certificate says about itself that decides whether it can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertificateInfo {
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    /// Its subjectAltName dNSNames, as written.
    pub(super) names: Vec<String>,
    /// The subject public key: for EC keys, the uncompressed point.
    pub(super) public_key: Vec<u8>,
}

/// A DER certificate's notBefore and notAfter, and the reader of its
/// TBSCertificate positioned just after them.
fn read_validity(der: &[u8]) -> Option<(Reader<'_>, SystemTime, SystemTime)> {
    let mut certificate = Reader::new(Reader::new(der).required(der::SEQUENCE)?);
    let mut tbs = Reader::new(certificate.required(der::SEQUENCE)?);
    tbs.optional(der::context(0)); // version
    tbs.required(der::INTEGER)?; // serialNumber
    tbs.required(der::SEQUENCE)?; // signature
    tbs.required(der::SEQUENCE)?; // issuer
    let mut validity = Reader::new(tbs.required(der::SEQUENCE)?);
    let not_before = read_time(&mut validity)?;
    let not_after = read_time(&mut validity)?;
    Some((tbs, not_before, not_after))
}

/// When a DER certificate, from any CA and with any key, stops being
/// valid (its notAfter); `None` when it is no certificate.
pub fn expiry(der: &[u8]) -> Option<SystemTime> {
    read_validity(der).map(|(_, _, not_after)| not_after)
}

/// Reads a DER certificate's validity, DNS names and key, walking only as
/// far as those fields (RFC 5280 §4.1). `None` when it is not a
/// certificate in the shape that RFC gives.
pub(super) fn read_certificate(der: &[u8]) -> Option<CertificateInfo> {
    let (mut tbs, not_before, not_after) = read_validity(der)?;
    tbs.required(der::SEQUENCE)?; // subject
    let mut key_info = Reader::new(tbs.required(der::SEQUENCE)?);
    key_info.required(der::SEQUENCE)?; // algorithm
    let public_key = key_info
        .required(der::BIT_STRING)?
        .split_first()?
        .1
        .to_vec();
    tbs.optional(der::context_primitive(1)); // issuerUniqueID
    tbs.optional(der::context_primitive(2)); // subjectUniqueID
    let names = match tbs.optional(der::context(3)) {
        Some(extensions) => read_dns_names(extensions)?,
        None => Vec::new(),
    };
    Some(CertificateInfo {
        not_before,
        not_after,
        names,
        public_key,
    })
}

/// The dNSNames in the subjectAltName among `[3]`'s extensions.
fn read_dns_names(explicit: &[u8]) -> Option<Vec<String>> {
    let mut extensions = Reader::new(Reader::new(explicit).required(der::SEQUENCE)?);
    while !extensions.is_empty() {
        let mut extension = Reader::new(extensions.required(der::SEQUENCE)?);
        if extension.required(der::OBJECT_IDENTIFIER)? != OID_SUBJECT_ALT_NAME {
            continue;
        }
        extension.optional(der::BOOLEAN);
        let value = extension.required(der::OCTET_STRING)?;
        let mut general_names = Reader::new(Reader::new(value).required(der::SEQUENCE)?);
        let mut names = Vec::new();
        while !general_names.is_empty() {
            let (tag, content) = general_names.element()?;
            if tag == DNS_NAME {
                names.push(String::from_utf8(content.to_vec()).ok()?);
            }
        }
        return Some(names);
    }
    Some(Vec::new())
}

/// A UTCTime or GeneralizedTime in the `Z` forms RFC 5280 allows.
fn read_time(reader: &mut Reader<'_>) -> Option<SystemTime> {
    let (tag, content) = reader.element()?;
    let text = std::str::from_utf8(content).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (der::UTC_TIME, 12) => {
            let short: i64 = digits[..2].parse().ok()?;
            (
                if short >= 50 {
                    1900 + short
                } else {
                    2000 + short
                },
                &digits[2..],
            )
        }
        (der::GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |at: usize| rest[at..at + 2].parse::<u32>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    date::system_time(year, month, day, hour, minute, second)
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

    use super::*;

    /// Splits a signed structure into (what was signed, signature), checking
    /// the algorithm is ecdsa-with-SHA256. DER has one encoding per value,
    /// so writing the first element again gives exactly the signed bytes.
    fn signed_parts(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut outer = Reader::new(Reader::new(der).required(der::SEQUENCE).unwrap());
        let (tag, content) = outer.element().unwrap();
        let signed = der::element(tag, content);
        assert_eq!(
            outer.required(der::SEQUENCE).unwrap(),
            &ecdsa_with_sha256()[2..]
        );
        let signature = outer.required(der::BIT_STRING).unwrap();
        assert_eq!(signature[0], 0, "no unused bits");
        (signed, signature[1..].to_vec())
    }

    fn verify(der: &[u8], key: &CertificateKey) {
        let (signed, signature) = signed_parts(der);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key())
            .verify(&signed, &signature)
            .expect("signature verifies");
    }

    #[test]
    fn the_request_names_every_domain_and_is_signed_by_the_key() {
        let key = CertificateKey::generate().unwrap();
        let csr = certificate_request(&["a.example", "b.example"], &key).unwrap();
        verify(&csr, &key);

        let mut request = Reader::new(Reader::new(&csr).required(der::SEQUENCE).unwrap());
        let mut info = Reader::new(request.required(der::SEQUENCE).unwrap());
        assert_eq!(info.required(der::INTEGER).unwrap(), [0]);
        assert_eq!(
            info.required(der::SEQUENCE).unwrap(),
            &name("a.example")[2..]
        );
        let mut key_info = Reader::new(info.required(der::SEQUENCE).unwrap());
        key_info.required(der::SEQUENCE).unwrap();
        assert_eq!(
            &key_info.required(der::BIT_STRING).unwrap()[1..],
            key.public_key()
        );
        let mut attributes = Reader::new(info.required(der::context(0)).unwrap());
        let mut attribute = Reader::new(attributes.required(der::SEQUENCE).unwrap());
        assert_eq!(
            attribute.required(der::OBJECT_IDENTIFIER).unwrap(),
            OID_EXTENSION_REQUEST
        );
        // The SET holds the same Extensions a certificate's [3] holds.
        let extensions = attribute.required(der::SET).unwrap();
        let names = read_dns_names(extensions);
        assert_eq!(names.unwrap(), ["a.example", "b.example"]);
    }

    #[test]
    fn a_long_first_name_is_left_out_of_the_subject() {
        let key = CertificateKey::generate().unwrap();
        let long = format!("{}.example", "a".repeat(60));
        let csr = certificate_request(&[&long], &key).unwrap();
        let mut request = Reader::new(Reader::new(&csr).required(der::SEQUENCE).unwrap());
        let mut info = Reader::new(request.required(der::SEQUENCE).unwrap());
        info.required(der::INTEGER).unwrap();
        assert_eq!(info.required(der::SEQUENCE).unwrap(), b"");
    }

    #[test]
    fn the_challenge_certificate_carries_the_critical_acme_identifier() {
        let key = CertificateKey::generate().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_796_119_932);
        let der = challenge_certificate("a.example", "token.thumb", &key, now).unwrap();
        verify(&der, &key);

        let info = read_certificate(&der).unwrap();
        assert_eq!(info.names, ["a.example"]);
        assert_eq!(info.public_key, key.public_key());
        assert_eq!(info.not_before, now - CHALLENGE_BACKDATE);
        assert_eq!(info.not_after, now + CHALLENGE_LIFETIME);

        // Walk to the extensions and find id-pe-acmeIdentifier.
        let mut certificate = Reader::new(Reader::new(&der).required(der::SEQUENCE).unwrap());
        let mut tbs = Reader::new(certificate.required(der::SEQUENCE).unwrap());
        let mut found = None;
        while let Some((tag, content)) = tbs.element() {
            if tag != der::context(3) {
                continue;
            }
            let mut extensions = Reader::new(Reader::new(content).required(der::SEQUENCE).unwrap());
            while !extensions.is_empty() {
                let mut extension = Reader::new(extensions.required(der::SEQUENCE).unwrap());
                if extension.required(der::OBJECT_IDENTIFIER).unwrap() == OID_ACME_IDENTIFIER {
                    let critical = extension.required(der::BOOLEAN).unwrap();
                    let value = extension.required(der::OCTET_STRING).unwrap();
                    found = Some((critical.to_vec(), value.to_vec()));
                }
            }
        }
        let (critical, value) = found.expect("an acmeIdentifier extension");
        assert_eq!(critical, [0xff]);
        let digest = Sha256::digest(b"token.thumb");
        assert_eq!(value, der::element(der::OCTET_STRING, &digest));
    }

    #[test]
    fn times_after_2049_are_generalized_and_read_back() {
        let late = UNIX_EPOCH + Duration::from_secs(2_660_119_932);
        let written = time(late);
        assert_eq!(written[0], der::GENERALIZED_TIME);
        assert_eq!(&written[2..], b"20540418101212Z");
        assert_eq!(read_time(&mut Reader::new(&written)), Some(late));
        let early = UNIX_EPOCH + Duration::from_secs(951_782_400);
        let written = time(early);
        assert_eq!(&written[2..], b"000229000000Z");
        assert_eq!(read_time(&mut Reader::new(&written)), Some(early));
        let sixties = der::element(der::UTC_TIME, b"690720201800Z");
        assert_eq!(read_time(&mut Reader::new(&sixties)), None, "before 1970");
        let local = der::element(der::UTC_TIME, b"2612011012+0100");
        assert_eq!(read_time(&mut Reader::new(&local)), None);
    }

    /// Made by `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
    /// -subj /CN=a.test -addext subjectAltName=DNS:a.test,DNS:b.test,IP:127.0.0.1
    /// -days 10000`: notBefore Dec 1 10:12:12 2026 GMT (UTCTime), notAfter
    /// Apr 18 10:12:12 2054 GMT (GeneralizedTime).
    const OPENSSL_CERTIFICATE: &str = "\
MIIBmzCCAUCgAwIBAgIUOlUjAUANMxjSPdukRHOmK+auKF4wCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGYS50ZXN0MCAXDTI2MTIwMTEwMTIxMloYDzIwNTQwNDE4MTAx
MjEyWjARMQ8wDQYDVQQDDAZhLnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AARaArurUplBGUVJJ2I5QL4Q6e4B9F26HuRv3zE7e+VP1xfdmXSL7/FFxzKPmrPR
C1I2LkVTfI8u0LD/CLlKmD50o3QwcjAdBgNVHQ4EFgQUM3i7IF5WlrIjm4JLIXjr
30Z8YQ0wHwYDVR0jBBgwFoAUM3i7IF5WlrIjm4JLIXjr30Z8YQ0wDwYDVR0TAQH/
BAUwAwEB/zAfBgNVHREEGDAWggZhLnRlc3SCBmIudGVzdIcEfwAAATAKBggqhkjO
PQQDAgNJADBGAiEAo1J2nyGi7LrZ0CG//89TkQmf96FY0qiCRFd8efh3QKgCIQCk
aeqGlRcpVIUdktGPxzNn4CaIT1wf13mA8gSixRzjzw==";

    #[test]
    fn a_certificate_made_elsewhere_reads() {
        use base64::Engine as _;
        let text: String = OPENSSL_CERTIFICATE.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let info = read_certificate(&der).unwrap();
        assert_eq!(
            info.not_before,
            UNIX_EPOCH + Duration::from_secs(1_796_119_932)
        );
        assert_eq!(
            info.not_after,
            UNIX_EPOCH + Duration::from_secs(2_660_119_932)
        );
        assert_eq!(
            info.names,
            ["a.test", "b.test"],
            "the IP address is not a DNS name"
        );
        assert_eq!(info.public_key.len(), 65);
        assert_eq!(expiry(&der), Some(info.not_after));
        assert_eq!(expiry(&der[..der.len() / 2]), None);
        assert_eq!(read_certificate(&der[..der.len() - 1]), None);
    }
}
