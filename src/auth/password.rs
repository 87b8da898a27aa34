//! Password hashing: argon2id at the OWASP minimum cost (m = 19 MiB,
//! t = 2, p = 1), stored as PHC strings so that the parameters travel with
//! each hash and can be raised later without breaking old ones.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations.
pub const TIME_COST: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

fn hasher() -> Argon2<'static> {
    // These constants are valid argon2 parameters (checked by the tests).
    let params = Params::new(MEMORY_KIB, TIME_COST, PARALLELISM, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh random salt. Fails only when the OS
/// random source does.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|err| format!("no OS randomness for a salt: {err}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| format!("bad salt: {err}"))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| format!("cannot hash a password: {err}"))
}

/// Checks `password` against a stored PHC string. A hash that does not
/// parse never verifies.
pub fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the time a real verification takes, for a username that does not
/// exist, so that response times do not tell which usernames do.
pub fn verify_unknown_user(password: &str) {
    let _ = verify(dummy_hash(), password);
}

/// A real hash with the same parameters as every stored one, so that
/// verifying against it costs the same.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("wren: no such user").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_carry_their_parameters() {
        let stored = hash("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify(&stored, "correct horse"));
        assert!(!verify(&stored, "correct horsf"));
        assert!(!verify("not a hash", "correct horse"));
        assert_ne!(hash("correct horse").unwrap(), stored, "salts differ");
    }

    #[test]
    fn unknown_users_are_checked_against_a_hash_of_the_same_cost() {
        let real = hash("pw").unwrap();
        let params = |phc: &str| phc.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(dummy_hash()), params(&real));
        assert!(!verify(dummy_hash(), "pw"));
    }
}
