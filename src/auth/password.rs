//! Password hashing: argon2id at the OWASP minimum cost (m = 19 MiB,
//! t = 2, p = 1), stored as PHC strings so that the parameters travel with
//! each hash and can be raised later without breaking old ones.
//!
//! Every hash and verification runs in a slot of a [`HashPool`]: at most
//! its number of slots run at once, each in a 19 MiB workspace, so hashing
//! memory stays at slots × 19 MiB however many sign-ups and logins arrive
//! together. One workspace is kept for the next hash (argon2 allocating
//! its own for each would leave freed ones resident in the allocator's
//! per-thread arenas); those of hashes that ran beside it are freed when
//! they end, which gives their memory back (measured: RSS 46.2 MiB after
//! bursts of four sign-ups when each slot kept its own, 26.7 MiB now). A
//! request that waits [`SLOT_WAIT`] without a slot is refused with
//! [`Busy`]. Nothing else in wren hashes: the functions that do are
//! private to this module.
//!
//! A password that verified is remembered for a while
//! (`--password-cache-seconds`) as an HMAC-SHA-256 of the stored hash and
//! the password, under a key drawn at start and never written anywhere: the
//! same account signing in again with it is checked against that in
//! microseconds instead of 15 ms of argon2id, as Elasticsearch's realm
//! cache and Apache's `mod_authn_socache` do. What that costs: someone who
//! can read the process's memory can test guesses of those recent
//! passwords at HMAC speed (but could as well read passwords as they
//! arrive). A wrong password is never remembered and always costs a full
//! verification; a changed password changes the stored hash, so the old
//! one is no longer recognised.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::recent::Recent;

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations.
pub const TIME_COST: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

/// How long a request waits for a hashing slot before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// The default number of slots: one hash per core, plus one so that a core
/// freed between two hashes is not left idle.
pub fn default_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get()) + 1
}

fn params() -> Params {
    // These constants are valid argon2 parameters (checked by the tests).
    Params::new(MEMORY_KIB, TIME_COST, PARALLELISM, None).unwrap_or_default()
}

/// Every slot stayed taken for the whole [`SLOT_WAIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub slots: usize,
}

/// Why a password could not be hashed.
#[derive(Debug)]
pub enum HashError {
    Busy(Busy),
    /// The OS random source gave no salt, or argon2 refused its input.
    Failed(String),
}

impl From<Busy> for HashError {
    fn from(busy: Busy) -> Self {
        HashError::Busy(busy)
    }
}

impl std::fmt::Display for HashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashError::Busy(Busy { slots }) => {
                write!(f, "all {slots} password hashing slots are busy")
            }
            HashError::Failed(why) => f.write_str(why),
        }
    }
}

/// The argon2 memory of one slot, kept between hashes.
type Workspace = Vec<Block>;

/// At most `slots` password hashes at once, each in a workspace of its own;
/// and the passwords verified lately.
pub struct HashPool {
    slots: usize,
    idle: Mutex<Idle>,
    freed: Condvar,
    wait: Duration,
    verified: Verified,
}

/// Passwords that verified lately, as keyed hashes (at most
/// [`super::recent::MAX_REMEMBERED`]).
struct Verified {
    /// `None` when nothing is remembered (`--password-cache-seconds 0`, or
    /// no OS randomness for the key).
    key: Option<ring::hmac::Key>,
    remembered: Recent,
}

impl Verified {
    fn new(ttl: Duration) -> Verified {
        let mut key = [0u8; 32];
        let key = (!ttl.is_zero() && getrandom::getrandom(&mut key).is_ok())
            .then(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
        Verified {
            key,
            remembered: Recent::new(ttl),
        }
    }

    /// What `password` against `stored` is remembered as. A stored PHC
    /// string holds no NUL, so the first one ends it.
    fn tag(&self, stored: &str, password: &str) -> Option<[u8; 32]> {
        let mut context = ring::hmac::Context::with_key(self.key.as_ref()?);
        context.update(stored.as_bytes());
        context.update(&[0]);
        context.update(password.as_bytes());
        context.sign().as_ref().try_into().ok()
    }
}

struct Idle {
    /// Slots free to take.
    free: usize,
    /// The workspace kept from a slot used before; a slot taken finds it
    /// here or makes its own. Only one is kept: each is 19 MiB, so hashes
    /// that ran beside another (a burst of sign-ups) give theirs back
    /// rather than holding that memory for good (the soak saw RSS step up
    /// 19.5 MiB, and stay, the first time two hashes met), while hashes one
    /// after another reuse this one.
    kept: Option<Workspace>,
}

/// A taken slot with its workspace, both given back on drop.
struct Slot<'p> {
    pool: &'p HashPool,
    workspace: Workspace,
}

impl HashPool {
    /// `slots` hashes at once, each waiting at most `wait` for its turn; a
    /// password that verified is remembered for `remember` (zero: never).
    pub fn new(slots: usize, wait: Duration, remember: Duration) -> HashPool {
        HashPool {
            slots,
            idle: Mutex::new(Idle {
                free: slots,
                kept: None,
            }),
            freed: Condvar::new(),
            wait,
            verified: Verified::new(remember),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Result<Slot<'_>, Busy> {
        let (mut idle, _) = self
            .freed
            .wait_timeout_while(self.lock(), self.wait, |idle| idle.free == 0)
            .unwrap_or_else(PoisonError::into_inner);
        if idle.free == 0 {
            return Err(Busy { slots: self.slots });
        }
        idle.free -= 1;
        let workspace = idle.kept.take().unwrap_or_default();
        Ok(Slot {
            pool: self,
            workspace,
        })
    }

    /// Hashes `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        hash(&mut self.take()?.workspace, password).map_err(HashError::Failed)
    }

    /// Checks `password` against a stored PHC string: remembered from a
    /// recent verification, else verified (and remembered when right). A
    /// hash that does not parse never verifies.
    pub fn verify(&self, stored: &str, password: &str) -> Result<bool, Busy> {
        let tag = self.verified.tag(stored, password);
        let remembered = &self.verified.remembered;
        if tag.is_some_and(|tag| remembered.holds(&tag, Instant::now())) {
            return Ok(true);
        }
        let right = verify(&mut self.take()?.workspace, stored, password);
        if let Some(tag) = tag.filter(|_| right) {
            remembered.remember(tag, Instant::now());
        }
        Ok(right)
    }

    /// Spends the time (and the slot) a real verification takes, for a
    /// username that does not exist, so that neither response times nor
    /// the pool's load tell which usernames do.
    pub fn verify_unknown_user(&self, password: &str) -> Result<(), Busy> {
        let mut slot = self.take()?;
        let dummy = dummy_hash(&mut slot.workspace);
        verify(&mut slot.workspace, dummy, password);
        Ok(())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let workspace = std::mem::take(&mut self.workspace);
        let mut idle = self.pool.lock();
        idle.free += 1;
        // Another's is kept already: this one is freed, outside the lock.
        let extra = if idle.kept.is_none() {
            idle.kept = Some(workspace);
            None
        } else {
            Some(workspace)
        };
        drop(idle);
        self.pool.freed.notify_one();
        drop(extra);
    }
}

/// Runs argon2 with `params` in `workspace`, growing it when the
/// parameters ask for more memory than it has (a hash stored with a higher
/// cost); returns the `len`-byte output.
fn argon2_output(
    workspace: &mut Workspace,
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    len: usize,
) -> Result<Output, String> {
    if workspace.len() < params.block_count() {
        workspace.resize(params.block_count(), Block::default());
    }
    Output::init_with(len, |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut workspace[..])
            .map_err(argon2::password_hash::Error::from)
    })
    .map_err(|err| format!("cannot hash a password: {err}"))
}

/// Hashes `password` with a fresh random salt. Fails only when the OS
/// random source does.
fn hash(workspace: &mut Workspace, password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|err| format!("no OS randomness for a salt: {err}"))?;
    let params = params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = argon2_output(
        workspace,
        &argon2,
        &params,
        password,
        &salt,
        Params::DEFAULT_OUTPUT_LEN,
    )?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| format!("bad salt: {err}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|err| format!("bad argon2 parameters: {err}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a stored PHC string, with the parameters and
/// salt it carries; outputs are compared in constant time (`Output`'s
/// equality).
fn verify(workspace: &mut Workspace, stored: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    argon2_output(workspace, &argon2, &params, password, salt, expected.len())
        .is_ok_and(|actual| actual == expected)
}

/// A real hash with the same parameters as every stored one, so that
/// verifying against it costs the same. Made once, in the first caller's
/// slot.
fn dummy_hash(workspace: &mut Workspace) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash(workspace, "wren: no such user").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use argon2::PasswordHasher;

    use super::*;

    fn pool() -> HashPool {
        HashPool::new(2, SLOT_WAIT, Duration::ZERO)
    }

    #[test]
    fn hashes_verify_and_carry_their_parameters() {
        let pool = pool();
        let stored = pool.hash("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_eq!(pool.verify(&stored, "correct horse"), Ok(true));
        assert_eq!(pool.verify(&stored, "correct horsf"), Ok(false));
        assert_eq!(pool.verify("not a hash", "correct horse"), Ok(false));
        assert_ne!(pool.hash("correct horse").unwrap(), stored, "salts differ");
    }

    #[test]
    fn a_password_that_verified_is_remembered_for_its_hash_alone_and_a_while() {
        // One slot, held while checking: whatever needs argon2 is Busy.
        let pool = HashPool::new(1, Duration::from_millis(20), Duration::from_millis(400));
        let stored = pool.hash("correct horse").unwrap();
        let rehashed = pool.hash("correct horse").unwrap();
        assert_eq!(pool.verify(&stored, "correct horsf"), Ok(false));
        let held = pool.take().unwrap();
        assert_eq!(
            pool.verify(&stored, "correct horsf"),
            Err(Busy { slots: 1 }),
            "a wrong password is never remembered"
        );
        assert!(
            pool.verify(&stored, "correct horse").is_err(),
            "not yet verified"
        );
        drop(held);
        assert_eq!(pool.verify(&stored, "correct horse"), Ok(true));
        let held = pool.take().unwrap();
        assert_eq!(
            pool.verify(&stored, "correct horse"),
            Ok(true),
            "remembered"
        );
        assert!(pool.verify(&stored, "correct horsf").is_err());
        assert!(pool.verify(&stored, "correct horse ").is_err());
        // The same password under another hash (changed, or another
        // account's): not remembered.
        assert!(pool.verify(&rehashed, "correct horse").is_err());
        thread::sleep(Duration::from_millis(450));
        assert!(
            pool.verify(&stored, "correct horse").is_err(),
            "forgotten after its time"
        );
        drop(held);
        // Zero remembers nothing.
        let pool = HashPool::new(1, Duration::from_millis(20), Duration::ZERO);
        assert_eq!(pool.verify(&stored, "correct horse"), Ok(true));
        let _held = pool.take().unwrap();
        assert!(pool.verify(&stored, "correct horse").is_err());
    }

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        let pool = pool();
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let theirs = argon2.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(pool.verify(&theirs, "pw"), Ok(true));
        // Other parameters (a cheaper, older hash; a costlier, newer one)
        // verify with the parameters they carry.
        for m in [8 * 1024, 24 * 1024] {
            let other = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, 1, 1, None).unwrap(),
            );
            let stored = other.hash_password(b"pw", &salt).unwrap().to_string();
            assert_eq!(pool.verify(&stored, "pw"), Ok(true), "{stored}");
            assert_eq!(pool.verify(&stored, "pW"), Ok(false), "{stored}");
        }
        let ours = pool.hash("pw").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2::PasswordVerifier::verify_password(&argon2, b"pw", &parsed).is_ok());
    }

    #[test]
    fn unknown_users_are_checked_against_a_hash_of_the_same_cost() {
        let pool = pool();
        let real = pool.hash("pw").unwrap();
        let mut workspace = Workspace::new();
        let dummy = dummy_hash(&mut workspace);
        let params = |phc: &str| phc.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(dummy), params(&real));
        assert_eq!(pool.verify(dummy, "pw"), Ok(false));
        assert_eq!(pool.verify_unknown_user("pw"), Ok(()));
    }

    #[test]
    fn no_more_than_the_slots_run_and_a_long_wait_is_refused() {
        let pool = Arc::new(HashPool::new(2, Duration::from_millis(50), Duration::ZERO));
        let first = pool.take().unwrap();
        let second = pool.take().unwrap();
        assert_eq!(pool.take().err(), Some(Busy { slots: 2 }));
        assert!(matches!(pool.hash("pw"), Err(HashError::Busy(_))));
        drop(first);
        assert!(pool.take().is_ok(), "a freed slot is taken again");
        drop(second);

        // Eight threads at once on two slots: every hash done (the wait is
        // long enough here), one workspace kept after.
        let pool = Arc::new(HashPool::new(2, Duration::from_secs(60), Duration::ZERO));
        let done = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pool, done) = (pool.clone(), done.clone());
                thread::spawn(move || {
                    pool.hash("pw").unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 8);
        let idle = pool.lock();
        assert_eq!(idle.free, 2);
        assert!(idle.kept.is_some());
    }
}
