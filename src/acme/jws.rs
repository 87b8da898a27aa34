//! The account key and what it signs: ES256 JSON Web Signatures in the
//! flattened JSON serialization (RFC 7515 §7.2.2) that every ACME request
//! is (RFC 8555 §6.2), the account's public JWK, and its thumbprint
//! (RFC 7638), which key authorizations are built from (RFC 8555 §8.1).
//!
//! The key is ECDSA P-256: the one algorithm every ACME server takes, and
//! small. ring signs it in the fixed form JWS wants (r‖s, 64 bytes), not
//! the ASN.1 form X.509 uses.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Length of one P-256 coordinate, and of the uncompressed point ring
/// hands out (`0x04 ‖ x ‖ y`).
const COORDINATE_BYTES: usize = 32;
const UNCOMPRESSED_POINT_BYTES: usize = 1 + 2 * COORDINATE_BYTES;

/// base64url without padding, JOSE's encoding of every binary value.
pub(super) fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The ACME account's key pair.
pub(super) struct AccountKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

/// How a request names its signer (RFC 8555 §6.2): the whole public key
/// for newAccount, the account URL once there is one.
pub(super) enum Signer<'a> {
    Jwk,
    Kid(&'a str),
}

impl AccountKey {
    /// A fresh key, with its PKCS#8 DER to store.
    pub(super) fn generate() -> Result<(AccountKey, Vec<u8>), String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate an ECDSA P-256 key".to_owned())?;
        let key = AccountKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// The key stored as PKCS#8 DER.
    pub(super) fn from_pkcs8(pkcs8: &[u8]) -> Result<AccountKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|err| format!("not an ECDSA P-256 PKCS#8 key ({err})"))?;
        Ok(AccountKey { pair, rng })
    }

    /// The public point's x and y, base64url.
    fn coordinates(&self) -> (String, String) {
        let point = self.pair.public_key().as_ref();
        debug_assert_eq!(point.len(), UNCOMPRESSED_POINT_BYTES);
        let x = &point[1..=COORDINATE_BYTES];
        let y = &point[1 + COORDINATE_BYTES..];
        (base64url(x), base64url(y))
    }

    /// The public key as a JWK (RFC 7518 §6.2.1).
    pub(super) fn jwk(&self) -> Value {
        let (x, y) = self.coordinates();
        json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y })
    }

    /// The JWK thumbprint (RFC 7638): base64url SHA-256 of the required
    /// members in lexicographic order.
    pub(super) fn thumbprint(&self) -> String {
        let (x, y) = self.coordinates();
        thumbprint_of(&[("crv", "P-256"), ("kty", "EC"), ("x", &x), ("y", &y)])
    }

    /// The request body for `url`: `payload` (or the empty payload of a
    /// POST-as-GET, RFC 8555 §6.3, when `None`) signed with ES256.
    pub(super) fn sign(
        &self,
        url: &str,
        nonce: &str,
        signer: &Signer<'_>,
        payload: Option<&Value>,
    ) -> Result<String, String> {
        let mut protected = json!({ "alg": "ES256", "nonce": nonce, "url": url });
        match signer {
            Signer::Jwk => protected["jwk"] = self.jwk(),
            Signer::Kid(account) => protected["kid"] = Value::from(*account),
        }
        let protected = base64url(protected.to_string().as_bytes());
        let payload = match payload {
            Some(payload) => base64url(payload.to_string().as_bytes()),
            None => String::new(),
        };
        let signing_input = format!("{protected}.{payload}");
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "cannot sign the request".to_owned())?;
        let body = json!({
            "protected": protected,
            "payload": payload,
            "signature": base64url(signature.as_ref()),
        });
        Ok(body.to_string())
    }
}

/// A thumbprint of JWK `members`, given in lexicographic order by name,
/// whose values are strings JSON needs no escapes for (base64url and
/// names), so the canonical form is plain concatenation.
fn thumbprint_of(members: &[(&str, &str)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("\"{name}\":\"{value}\""))
        .collect();
    let canonical = format!("{{{}}}", members.join(","));
    base64url(&Sha256::digest(canonical.as_bytes()))
}

/// What the CA checks a challenge answer against (RFC 8555 §8.1).
pub(super) fn key_authorization(token: &str, thumbprint: &str) -> String {
    format!("{token}.{thumbprint}")
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;

    fn decode(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap()
    }

    fn field(body: &Value, name: &str) -> String {
        body[name].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_signed_request_verifies_with_the_public_key_and_carries_its_header() {
        let (key, pkcs8) = AccountKey::generate().unwrap();
        let payload = json!({ "termsOfServiceAgreed": true });
        let body = key
            .sign("https://ca/new-acct", "n0nce", &Signer::Jwk, Some(&payload))
            .unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        let (protected, payload_b64) = (field(&body, "protected"), field(&body, "payload"));
        let signature = decode(&field(&body, "signature"));
        assert_eq!(signature.len(), 2 * COORDINATE_BYTES, "r‖s, not ASN.1");

        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.pair.public_key());
        let signed = format!("{protected}.{payload_b64}");
        public.verify(signed.as_bytes(), &signature).unwrap();
        assert!(public.verify(b"something else", &signature).is_err());

        let header: Value = serde_json::from_slice(&decode(&protected)).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["nonce"], "n0nce");
        assert_eq!(header["url"], "https://ca/new-acct");
        assert_eq!(header["jwk"], key.jwk());
        assert!(header.get("kid").is_none());
        let sent: Value = serde_json::from_slice(&decode(&payload_b64)).unwrap();
        assert_eq!(sent, payload);

        // The stored key signs for the same public key.
        let again = AccountKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.jwk(), key.jwk());
    }

    #[test]
    fn post_as_get_has_an_empty_payload_and_names_the_account() {
        let (key, _) = AccountKey::generate().unwrap();
        let account = "https://ca/acct/1";
        let body = key
            .sign("https://ca/order/1", "n", &Signer::Kid(account), None)
            .unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["payload"], "");
        let header: Value = serde_json::from_slice(&decode(&field(&body, "protected"))).unwrap();
        assert_eq!(header["kid"], account);
        assert!(header.get("jwk").is_none());
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.pair.public_key());
        let signed = format!("{}.", field(&body, "protected"));
        public
            .verify(signed.as_bytes(), &decode(&field(&body, "signature")))
            .unwrap();
    }

    #[test]
    fn the_thumbprint_matches_rfc_7638s_example() {
        // RFC 7638 §3.1: the RSA key's required members, in order.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let thumbprint = thumbprint_of(&[("e", "AQAB"), ("kty", "RSA"), ("n", n)]);
        assert_eq!(thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn an_ec_thumbprint_hashes_the_canonical_jwk() {
        let (key, _) = AccountKey::generate().unwrap();
        let jwk = key.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let expected = base64url(&Sha256::digest(canonical.as_bytes()));
        assert_eq!(key.thumbprint(), expected);
        assert_eq!(decode(jwk["x"].as_str().unwrap()).len(), COORDINATE_BYTES);
        assert_eq!(
            key_authorization("tok", &key.thumbprint()),
            format!("tok.{expected}")
        );
    }
}
