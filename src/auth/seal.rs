//! Sealing secrets at rest: the S3 secret keys users bring at sign-up are
//! stored encrypted (ChaCha20-Poly1305), under a key derived from the server
//! secret, so a copy of the database alone does not give them away.
//!
//! A sealed value is `nonce (12 bytes) || ciphertext || tag (16 bytes)`,
//! with a fresh random nonce each time. The account name is bound in as
//! associated data, so a sealed secret moved to another account's row does
//! not open.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;

/// Separates this key from every other use of the server secret.
const CONTEXT: &[u8] = b"wren/1 seal users' S3 secrets";

pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new(server_secret: &[u8]) -> Sealer {
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, server_secret), CONTEXT);
        let key = UnboundKey::new(&CHACHA20_POLY1305, derived.as_ref())
            .expect("HMAC-SHA256 gives the 32 bytes ChaCha20-Poly1305 takes");
        Sealer {
            key: LessSafeKey::new(key),
        }
    }

    pub fn seal(&self, account: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|err| format!("no OS randomness: {err}"))?;
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(account.as_bytes()),
                &mut body,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The plain value, or an error when the value was not sealed by this
    /// server secret for this account (or was altered).
    pub fn open(&self, account: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err("the sealed value is too short".into());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_owned())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(account.as_bytes()), &mut body)
            .map_err(|_| {
                "cannot open the sealed value: the server secret changed, or the value was altered"
                    .to_owned()
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_secret_and_account() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal("ann", b"s3 secret").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"s3 secret"));
        assert_eq!(sealer.open("ann", &sealed).unwrap(), b"s3 secret");
        assert!(sealer.open("bob", &sealed).is_err());
        assert!(Sealer::new(&[8; 32]).open("ann", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(sealer.open("ann", &altered).is_err());
        assert!(sealer.open("ann", &sealed[..10]).is_err());
        // A fresh nonce each time.
        assert_ne!(sealer.seal("ann", b"s3 secret").unwrap(), sealed);
    }
}
