//! API keys: credentials for services rather than people. A key is
//! `wren_` and 32 random bytes from the OS in base64url; only its SHA-256
//! is stored, so a copy of the database gives no key away. Each key has a
//! unique name, the scopes it may use, and, when it has the `files` scope,
//! the one account whose files it reaches.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::recent::Recent;

/// What every key starts with: it tells a key from a session token in an
/// `Authorization: Bearer` header, and a leaked key from other secrets.
pub const KEY_PREFIX: &str = "wren_";

/// Random bytes in a key (256 bits).
pub const KEY_RANDOM_BYTES: usize = 32;

/// The most keys bound to one account, so that an account creating keys
/// over HTTP cannot grow the database without bound.
pub const MAX_KEYS_PER_ACCOUNT: usize = 100;

/// How often a key's `last used` time is written, at most: a key in steady
/// use costs one write a minute rather than one per request.
pub const RECORD_USE_EVERY: Duration = Duration::from_secs(60);

/// What a key may do. A request a key makes is let through only when the
/// route's rule names one of its scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Post events (`POST /event`) when the server is protected.
    Events,
    /// Read and change any user's alert profile, read any user's history.
    Alerts,
    /// The prediction routes. They are open to everyone, so the scope lets
    /// a key through nowhere that no key would be; it names the key's
    /// purpose.
    Predict,
    /// The files of the one account the key is bound to.
    Files,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Events, Scope::Alerts, Scope::Predict, Scope::Files];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Events => "events",
            Scope::Alerts => "alerts",
            Scope::Predict => "predict",
            Scope::Files => "files",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

/// Scopes from their names: sorted, each once. The error names the first
/// unknown one, or says there were none.
pub fn parse_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in names {
        let scope = Scope::parse(name).ok_or_else(|| {
            format!(
                "unknown scope '{}'; the scopes are {}",
                crate::text::excerpt(name, 64),
                scope_list(&Scope::ALL)
            )
        })?;
        scopes.push(scope);
    }
    if scopes.is_empty() {
        return Err(format!(
            "a key needs at least one scope: {}",
            scope_list(&Scope::ALL)
        ));
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes)
}

/// `events,files`: how scopes are stored and printed.
pub fn scope_list(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
    names.join(",")
}

/// The key name rule: the username rule (1 to 64 letters, digits, `.`,
/// `_` and `-`, at least one letter or digit), since a name is also a path
/// segment (`DELETE /api/v1/keys/{name}`) where `.` and `..` would be
/// taken for dot-segments.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    super::check_username(name)
}

/// The SHA-256 of a key: what is stored and looked up.
pub type KeyHash = [u8; 32];

/// A new key. Fails only when the OS random source does.
pub fn generate() -> Result<String, String> {
    let mut random = [0u8; KEY_RANDOM_BYTES];
    getrandom::getrandom(&mut random).map_err(|err| format!("no OS randomness: {err}"))?;
    Ok(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random)))
}

pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether a bearer credential is an API key rather than a session token
/// (a JWT, which starts with its base64url header, never with `wren_`).
pub fn is_key(credential: &str) -> bool {
    credential.starts_with(KEY_PREFIX)
}

/// Decides when a key's use is worth writing down: at most once per
/// [`RECORD_USE_EVERY`] per key.
pub struct UseRecorder {
    written: Recent,
}

impl UseRecorder {
    pub fn new() -> UseRecorder {
        UseRecorder {
            written: Recent::new(RECORD_USE_EVERY),
        }
    }

    /// Whether the use of the key at `now` should be written; if so, it
    /// counts as written.
    pub fn due(&self, key: &KeyHash, now: Instant) -> bool {
        self.written.remember(*key, now)
    }
}

impl Default for UseRecorder {
    fn default() -> Self {
        UseRecorder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_and_32_random_bytes_in_base64url() {
        let key = generate().unwrap();
        let encoded = key.strip_prefix(KEY_PREFIX).unwrap();
        assert_eq!(encoded.len(), 43, "{key}");
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{key}"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(encoded).unwrap().len(), 32);
        assert_ne!(generate().unwrap(), key);
        assert!(is_key(&key));
        assert!(!is_key("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_key() {
        assert_eq!(
            crate::hex::encode(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scopes_parse_sorted_once_and_name_the_unknown_one() {
        assert_eq!(
            parse_scopes(["files", "events", "files"]).unwrap(),
            [Scope::Events, Scope::Files]
        );
        let unknown = parse_scopes(["events", "admin"]).unwrap_err();
        assert_eq!(
            unknown,
            "unknown scope 'admin'; the scopes are events,alerts,predict,files"
        );
        assert!(parse_scopes([]).unwrap_err().contains("at least one scope"));
        assert_eq!(
            scope_list(&[Scope::Alerts, Scope::Predict]),
            "alerts,predict"
        );
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }

    #[test]
    fn names_follow_the_username_rule() {
        for good in ["ci", "billing.v2", "a_b-c", &"k".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ключ", &"k".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_s_use_is_written_at_most_once_a_period() {
        let recorder = UseRecorder::new();
        let (a, b) = (hash("a"), hash("b"));
        let start = Instant::now();
        assert!(recorder.due(&a, start));
        assert!(!recorder.due(&a, start + Duration::from_secs(59)));
        assert!(recorder.due(&b, start + Duration::from_secs(59)));
        assert!(recorder.due(&a, start + RECORD_USE_EVERY));
    }

    #[test]
    fn the_recorder_forgets_old_writes_past_its_bound() {
        let recorder = UseRecorder::new();
        let start = Instant::now();
        for i in 0..crate::auth::recent::MAX_REMEMBERED as u32 {
            assert!(recorder.due(&hash(&i.to_string()), start));
        }
        let later = start + RECORD_USE_EVERY;
        assert!(recorder.due(&hash("new"), later));
        let remembered = recorder.written.held();
        assert_eq!(remembered, 1);
    }
}
