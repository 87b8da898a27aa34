//! PEM (RFC 7468), the text form of everything this module stores and
//! hands over: keys as PKCS#8 `PRIVATE KEY`, certificates as
//! `CERTIFICATE`. Reading is `rustls-pki-types`'s; writing is a few lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// RFC 7468 §2: base64 lines of 64 characters.
const LINE_CHARS: usize = 64;

pub(super) const PRIVATE_KEY: &str = "PRIVATE KEY";
/// Chains come from the CA; only tests write them.
#[cfg(test)]
pub(super) const CERTIFICATE: &str = "CERTIFICATE";

/// `der` as one PEM block with `label`.
pub(super) fn encode(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(LINE_CHARS) {
        // base64 output is ASCII, so every chunk is text.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every certificate in `pem`, in order; an error when there is none or a
/// block is malformed.
pub(super) fn certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .map(|certificate| certificate.map(|der| der.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("malformed PEM ({err})"))?;
    if certificates.is_empty() {
        return Err("no certificate in it".to_owned());
    }
    Ok(certificates)
}

/// The PKCS#8 DER of the first `PRIVATE KEY` block in `pem`.
pub(super) fn private_key(pem: &[u8]) -> Result<Vec<u8>, String> {
    PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map(|key| key.secret_pkcs8_der().to_vec())
        .map_err(|err| format!("no PKCS#8 private key in it ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_written_read_back() {
        let der: Vec<u8> = (0..=255).collect();
        let text = encode(CERTIFICATE, &der);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.lines().all(|line| line.len() <= LINE_CHARS));
        let twice = format!("{text}{text}");
        assert_eq!(
            certificates(twice.as_bytes()).unwrap(),
            [der.clone(), der.clone()]
        );
        assert_eq!(
            private_key(encode(PRIVATE_KEY, &der).as_bytes()).unwrap(),
            der
        );
        assert!(certificates(b"").is_err());
        assert!(private_key(text.as_bytes()).is_err());
    }
}
