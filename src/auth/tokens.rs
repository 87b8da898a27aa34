//! Session tokens: JWTs signed with HS256. `jsonwebtoken` checks them: only
//! HS256 is accepted (`alg: none` and every other algorithm are refused by
//! the validation), and `sub`, `iat`, `exp` and `jti` are all required. The
//! `role` claim says which role the account had when the token was issued.
//!
//! Issuing is done here, with the HMAC key prepared once: a token's header
//! never changes, and `jsonwebtoken::encode` serialized it and set up the
//! HMAC key again for every token, a third of what issuing cost (perf, on
//! `POST /login`).

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// The account's role at issue; tokens from before roles existed had
    /// none and were all users' tokens.
    #[serde(default)]
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    /// The token's id, by which it is revoked.
    pub jti: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    /// Malformed, tampered with, or signed otherwise.
    Invalid,
}

/// Every token's header, `{"typ":"JWT","alg":"HS256"}` in base64url.
const HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

pub struct Tokens {
    signing: ring::hmac::Key,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["sub", "iat", "exp", "jti"]);
        Tokens {
            signing: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `username` in `role`, with a random id.
    pub fn issue(&self, username: &str, role: Role) -> Result<(String, Claims), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = token_id()?;
        let claims = Claims {
            sub: username.to_owned(),
            role,
            iat: now,
            exp: now + self.ttl.as_secs().max(1),
            jti: crate::hex::encode(&id),
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|err| format!("cannot write a token: {err}"))?;
        // Header, payload and signature, each base64url (4 characters for
        // each 3 bytes), and two dots.
        let mut token = String::with_capacity(HEADER.len() + (payload.len() + 32) * 4 / 3 + 6);
        token.push_str(HEADER);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = ring::hmac::sign(&self.signing, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok((token, claims))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// Token ids drawn from the OS at a time, per thread.
const IDS_PER_DRAW: usize = 32;

/// A new token id: 16 bytes from the OS's random source. They are drawn
/// [`IDS_PER_DRAW`] at a time and each handed out once: a `getrandom`
/// call per token was 1.4% of a `POST /login`'s CPU (perf). An id is no
/// secret (it travels in the token); it only has to be unique.
fn token_id() -> Result<[u8; 16], String> {
    thread_local! {
        static DRAWN: RefCell<([[u8; 16]; IDS_PER_DRAW], usize)> =
            const { RefCell::new(([[0; 16]; IDS_PER_DRAW], IDS_PER_DRAW)) };
    }
    DRAWN.with_borrow_mut(|(ids, used)| {
        if *used == IDS_PER_DRAW {
            getrandom::getrandom(ids.as_flattened_mut())
                .map_err(|err| format!("no OS randomness: {err}"))?;
            *used = 0;
        }
        *used += 1;
        Ok(ids[*used - 1])
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[7u8; 32], Duration::from_secs(3600))
    }

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn issued_tokens_verify() {
        let (token, claims) = tokens().issue("alice", Role::Admin).unwrap();
        assert_eq!(
            HEADER,
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Header::new(Algorithm::HS256)).unwrap())
        );
        assert_eq!(tokens().verify(&token), Ok(claims.clone()));
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.jti.len(), 32);
    }

    #[test]
    fn token_ids_stay_unique_across_draws() {
        let ids: std::collections::HashSet<[u8; 16]> = (0..5 * IDS_PER_DRAW + 3)
            .map(|_| token_id().unwrap())
            .collect();
        assert_eq!(ids.len(), 5 * IDS_PER_DRAW + 3);
    }

    #[test]
    fn tokens_from_before_roles_are_users_tokens() {
        #[derive(Serialize)]
        struct Unroled<'a> {
            sub: &'a str,
            iat: u64,
            exp: u64,
            jti: &'a str,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = Unroled {
            sub: "alice",
            iat: now,
            exp: now + 60,
            jti: "old",
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(tokens().verify(&token).unwrap().role, Role::User);
    }

    #[test]
    fn another_key_or_a_tampered_token_is_invalid() {
        let (token, _) = tokens().issue("alice", Role::User).unwrap();
        let other = Tokens::new(&[8u8; 32], Duration::from_secs(3600));
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(br#"{"sub":"admin","iat":1,"exp":99999999999,"jti":"x"}"#);
        parts[1] = &forged;
        assert_eq!(tokens().verify(&parts.join(".")), Err(TokenError::Invalid));
        assert_eq!(tokens().verify("not.a.token"), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_is_refused() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(br#"{"sub":"alice","iat":1,"exp":99999999999,"jti":"x"}"#);
        assert_eq!(
            tokens().verify(&format!("{header}.{claims}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_tokens_say_so() {
        let short = Tokens::new(&[7u8; 32], Duration::from_secs(1));
        let (token, _) = short.issue("alice", Role::User).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(short.verify(&token), Err(TokenError::Expired));
    }
}
