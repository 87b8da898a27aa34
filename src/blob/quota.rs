//! Per-account quotas: how many bytes and files an account may store, and
//! how uploads in progress are held to that while their bodies stream.
//!
//! Two figures meet here:
//! - **What an account stores**, kept durably by its backend beside the
//!   record of each object ([`Book`]): for the local backend the files
//!   index, for S3 the backend's size record (see `local` and `s3`). There
//!   a `usage` row per account is kept equal to the sum over that account's
//!   objects by SQLite triggers, in the same transaction as every change to
//!   an object's row, so the two can never disagree.
//! - **What uploads in progress may add**, held in memory by the [`Ledger`]
//!   while they stream. Every upload takes a [`Claim`] before its first byte
//!   and covers each byte before its backend sees it, so an upload is
//!   refused as soon as it would not fit (before reading its body when its
//!   length is declared), and two uploads that each fit alone but not
//!   together cannot both go through: whichever covers its bytes second is
//!   refused.
//!
//! The invariant: the stored usage plus everything claimed never exceeds the
//! quota, counting each key once, at its largest claimed size (only one of
//! the uploads racing for one key is kept; replacing a file counts the
//! difference). A claim becomes stored usage when its backend *settles* it:
//! right after the durable record changed, and before any later write of
//! the same key can commit (both backends order the commits of one key), so
//! the ledger applies changes in the order the record took them and its
//! copy of each key's recorded size stays exact. A delete settles the same
//! way. The ledger keeps an account only while it has claims: when the last
//! one ends, the next is loaded afresh from the durable record.
//!
//! What a crash does: the ledger is memory, so a crash forgets only claims,
//! which hold nothing durable, and the next start loads the durable figures
//! afresh. Those are as exact as the record they sum: on local storage the
//! index, which a write changes in one transaction with the usage (a crash
//! leaves the old object or the new one, and its size with it); on S3 a
//! record that follows the store, where a crash between the two can leave
//! the keys being written at that moment at their old size (bounded and
//! repaired as `s3::record` describes).
//!
//! The same pass checks the disk: an upload starts only when the data
//! folder's filesystem keeps `--min-free-disk` free beyond what the upload
//! declares it will write there, and a local upload checks again every
//! [`DISK_CHECK_INTERVAL`] bytes ([`DiskFloor`]), so that the database
//! always has room to commit.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::BlobError;

/// How much one account may store; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    pub bytes: Option<u64>,
    pub files: Option<u64>,
}

/// What an account stores: bytes and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes: u64,
    pub files: u64,
}

/// Which of an account's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes,
    Files,
}

impl Limit {
    /// Refuses `needed` more of this limit when what is `stored`, what
    /// other writes in flight have `reserved` and `needed` together pass
    /// `allowed` (none: no limit). Nothing needed is never refused, so a
    /// limit lowered below what is stored still lets an account shrink.
    pub fn admit(
        self,
        allowed: Option<u64>,
        stored: u64,
        reserved: u64,
        needed: u64,
        whole: bool,
    ) -> Result<(), Exceeded> {
        match allowed {
            Some(allowed)
                if needed > 0
                    && stored.saturating_add(reserved).saturating_add(needed) > allowed =>
            {
                Err(Exceeded {
                    limit: self,
                    allowed,
                    stored,
                    reserved,
                    needed,
                    whole,
                })
            }
            _ => Ok(()),
        }
    }
}

/// An upload refused because the account would pass one of its limits, with
/// the figures its message gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: Limit,
    /// The account's limit.
    pub allowed: u64,
    /// What it stores now.
    pub stored: u64,
    /// What its other uploads in progress may add.
    pub reserved: u64,
    /// What this upload adds: all of it when its size was known, else what
    /// it had sent when it was stopped.
    pub needed: u64,
    /// Whether `needed` is the upload's whole size.
    pub whole: bool,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, unit) = match self.limit {
            Limit::Bytes => ("storage", "bytes"),
            Limit::Files => ("file", "files"),
        };
        let at_least = if self.whole { "" } else { "at least " };
        write!(
            f,
            "{what} quota exceeded: the account may store {} {unit} and stores {}",
            self.allowed, self.stored
        )?;
        if self.reserved > 0 {
            write!(f, ", uploads in progress may add {} more", self.reserved)?;
        }
        write!(f, ", and this upload needs {at_least}{} more", self.needed)
    }
}

/// The durable figures a backend keeps, which the ledger starts from.
pub trait Book {
    /// What the account stores.
    fn usage(&self, namespace: &str) -> Result<Usage, BlobError>;

    /// The size recorded for the account's `key`, if it has one.
    fn recorded_size(&self, namespace: &str, key: &str) -> Result<Option<u64>, BlobError>;
}

/// Claims of uploads in progress, per account, over the durable figures.
/// See the module documentation.
#[derive(Default)]
pub struct Ledger {
    accounts: Mutex<HashMap<String, Account>>,
    next_hold: AtomicU64,
    /// Bumped (under the lock) by every settle: a registration that read
    /// the durable figures outside the lock uses them only if none came
    /// between its read and its entry.
    settled: AtomicU64,
}

/// One account while it has claims.
struct Account {
    /// The durable usage, kept in step by settled claims.
    stored: Usage,
    /// The keys with claims.
    keys: HashMap<String, KeyState>,
    /// Claims on any key.
    claims: usize,
}

/// One key while it has claims.
struct KeyState {
    /// The size the durable record holds for the key.
    recorded: Option<u64>,
    /// The bytes each upload to the key has covered, by hold id.
    holds: Vec<(u64, u64)>,
    /// Claims on the key, uploads and deletes.
    claims: usize,
}

impl Account {
    /// What the account would store if every upload in progress were
    /// stored, each key ending at its largest claim (or keeping its recorded
    /// size, when that is larger), leaving out the hold `skip`.
    fn at_most(&self, skip: Option<u64>) -> Usage {
        let mut usage = self.stored;
        for state in self.keys.values() {
            let largest = state
                .holds
                .iter()
                .filter(|(id, _)| Some(*id) != skip)
                .map(|(_, bytes)| *bytes)
                .max();
            if let Some(largest) = largest {
                usage.bytes += largest.saturating_sub(state.recorded.unwrap_or(0));
                usage.files += u64::from(state.recorded.is_none());
            }
        }
        usage
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Account>> {
        // Every change is made whole under the lock; a panic elsewhere
        // cannot leave half of one.
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A claim for an upload to `key`, covering no bytes yet; refused when a
    /// new key would take the account past its file limit.
    pub fn reserve<'l>(
        &'l self,
        book: &dyn Book,
        namespace: &str,
        key: &str,
        quota: Quota,
    ) -> Result<Claim<'l>, BlobError> {
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let claim = self.register(book, namespace, key, quota, Some(hold))?;
        let mut accounts = self.lock();
        let account = claim.account(&mut accounts);
        let before = account.at_most(Some(hold));
        let after = account.at_most(None);
        Limit::Files
            .admit(
                quota.files,
                account.stored.files,
                before.files - account.stored.files,
                after.files.saturating_sub(before.files),
                true,
            )
            .map_err(BlobError::QuotaExceeded)?;
        drop(accounts);
        Ok(claim)
    }

    /// A claim for deleting `key`: it covers no bytes, but keeps the key's
    /// recorded size in step with the delete.
    pub fn track<'l>(
        &'l self,
        book: &dyn Book,
        namespace: &str,
        key: &str,
    ) -> Result<Claim<'l>, BlobError> {
        self.register(book, namespace, key, Quota::default(), None)
    }

    /// Enters a claim, loading the account's and the key's durable figures
    /// when the ledger holds no claim on them (then no change to them can be
    /// in flight, and the record is exact). The figures are read outside
    /// the ledger's lock, since a backend's record may be a database away,
    /// and entered only if nothing settled meanwhile and the account and
    /// key are as absent or present as they were; else read again (after a
    /// few tries, under the lock).
    fn register<'l>(
        &'l self,
        book: &dyn Book,
        namespace: &str,
        key: &str,
        quota: Quota,
        hold: Option<u64>,
    ) -> Result<Claim<'l>, BlobError> {
        const UNLOCKED_TRIES: u32 = 3;
        for tries in 1.. {
            let under_lock = tries > UNLOCKED_TRIES;
            let seen = |accounts: &HashMap<String, Account>| {
                let account = accounts.get(namespace);
                (
                    account.is_some(),
                    account.is_some_and(|account| account.keys.contains_key(key)),
                )
            };
            let mut held = Some(self.lock());
            let (known, key_known) = seen(held.as_deref().expect("just locked"));
            let settled = self.settled.load(Ordering::Relaxed);
            if !under_lock {
                held = None;
            }
            let stored = if known {
                None
            } else {
                Some(book.usage(namespace)?)
            };
            let recorded = if key_known {
                None
            } else {
                Some(book.recorded_size(namespace, key)?)
            };
            let mut accounts = match held {
                Some(accounts) => accounts,
                None => {
                    let accounts = self.lock();
                    if self.settled.load(Ordering::Relaxed) != settled
                        || seen(&accounts) != (known, key_known)
                    {
                        continue;
                    }
                    accounts
                }
            };
            let account = accounts
                .entry(namespace.to_owned())
                .or_insert_with(|| Account {
                    stored: stored.unwrap_or_default(),
                    keys: HashMap::new(),
                    claims: 0,
                });
            let state = account
                .keys
                .entry(key.to_owned())
                .or_insert_with(|| KeyState {
                    recorded: recorded.flatten(),
                    holds: Vec::new(),
                    claims: 0,
                });
            state.claims += 1;
            state.holds.extend(hold.map(|id| (id, 0)));
            account.claims += 1;
            return Ok(Claim {
                ledger: self,
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                hold,
                quota,
                covered: Cell::new(0),
            });
        }
        unreachable!("the tries under the lock always enter the claim")
    }
}

/// An upload's (or a delete's) place in the ledger, from before its first
/// byte until it is settled or given up; dropping it gives back what it
/// held.
pub struct Claim<'l> {
    ledger: &'l Ledger,
    namespace: String,
    key: String,
    /// The upload's hold; `None` for a delete.
    hold: Option<u64>,
    quota: Quota,
    /// The bytes the hold covers.
    covered: Cell<u64>,
}

impl Claim<'_> {
    /// This claim's account, which the ledger keeps while the claim lives.
    fn account<'a>(&self, accounts: &'a mut HashMap<String, Account>) -> &'a mut Account {
        accounts
            .get_mut(&self.namespace)
            .expect("the ledger keeps an account while it has claims")
    }

    /// Makes the hold cover `bytes` (the upload's whole declared size, or
    /// what it has sent so far), or refuses, holding what it held, when
    /// that would take the account past its byte limit. `whole` says which
    /// of the two `bytes` is, for the message.
    pub fn cover(&self, bytes: u64, whole: bool) -> Result<(), Exceeded> {
        let Some(hold) = self.hold else {
            return Ok(());
        };
        if bytes <= self.covered.get() {
            return Ok(());
        }
        let mut accounts = self.ledger.lock();
        let account = self.account(&mut accounts);
        let others = account.at_most(Some(hold));
        let before = account.at_most(None);
        set_hold(account, &self.key, hold, bytes);
        let after = account.at_most(None);
        if let Some(allowed) = self.quota.bytes
            && after.bytes > before.bytes
            && after.bytes > allowed
        {
            set_hold(account, &self.key, hold, self.covered.get());
            return Err(Exceeded {
                limit: Limit::Bytes,
                allowed,
                stored: account.stored.bytes,
                reserved: others.bytes - account.stored.bytes,
                needed: after.bytes - others.bytes,
                whole,
            });
        }
        self.covered.set(bytes);
        Ok(())
    }

    /// The key now holds `size` bytes (`None`: nothing) in the durable
    /// record. The backend calls this right after its record changed and
    /// before any later change of the key can commit, so that the ledger
    /// sees the changes of one key in the record's order.
    pub fn settle(&self, size: Option<u64>) {
        let mut accounts = self.ledger.lock();
        self.ledger.settled.fetch_add(1, Ordering::Relaxed);
        let Account { stored, keys, .. } = self.account(&mut accounts);
        let state = key_state(keys, &self.key);
        stored.bytes =
            (stored.bytes + size.unwrap_or(0)).saturating_sub(state.recorded.unwrap_or(0));
        stored.files = (stored.files + u64::from(size.is_some()))
            .saturating_sub(u64::from(state.recorded.is_some()));
        state.recorded = size;
        if let Some(hold) = self.hold {
            state.holds.retain(|(id, _)| *id != hold);
        }
    }
}

/// A claimed key's state, which the ledger keeps while the key has claims.
fn key_state<'a>(keys: &'a mut HashMap<String, KeyState>, key: &str) -> &'a mut KeyState {
    keys.get_mut(key)
        .expect("the ledger keeps a key while it has claims")
}

/// Sets the bytes a hold covers.
fn set_hold(account: &mut Account, key: &str, hold: u64, bytes: u64) {
    let state = key_state(&mut account.keys, key);
    for entry in state.holds.iter_mut().filter(|(id, _)| *id == hold) {
        entry.1 = bytes;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut accounts = self.ledger.lock();
        let account = self.account(&mut accounts);
        let state = key_state(&mut account.keys, &self.key);
        if let Some(hold) = self.hold {
            state.holds.retain(|(id, _)| *id != hold);
        }
        state.claims -= 1;
        if state.claims == 0 {
            account.keys.remove(&self.key);
        }
        account.claims -= 1;
        if account.claims == 0 {
            accounts.remove(&self.namespace);
        }
    }
}

/// How often a local upload checks the disk's free space as it streams.
pub const DISK_CHECK_INTERVAL: u64 = 1024 * 1024;

/// The free space kept on the data folder's filesystem, below which uploads
/// are refused; 0 turns the check off.
pub struct DiskFloor {
    /// The data folder, as `statvfs(3)` takes it.
    path: CString,
    min_free: u64,
}

/// The disk has less free space than an upload needs beyond the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowDisk {
    pub free: u64,
    pub floor: u64,
    /// What the upload said it would write.
    pub needed: u64,
}

impl fmt::Display for LowDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes free on the data folder's filesystem, which keeps {} free \
             (--min-free-disk), and the upload needs {}",
            self.free, self.floor, self.needed
        )
    }
}

impl DiskFloor {
    pub fn new(data_dir: &Path, min_free: u64) -> Result<DiskFloor, String> {
        let path = CString::new(data_dir.as_os_str().as_bytes())
            .map_err(|_| format!("the data folder {} has a NUL byte", data_dir.display()))?;
        Ok(DiskFloor { path, min_free })
    }

    /// Whether `incoming` more bytes leave the floor free.
    pub fn check(&self, incoming: u64) -> Result<(), BlobError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let free = self.free().map_err(|err| {
            BlobError::Local(format!(
                "cannot read the free space of {}: {err}",
                self.path.to_string_lossy()
            ))
        })?;
        if free < self.min_free.saturating_add(incoming) {
            return Err(BlobError::InsufficientStorage(LowDisk {
                free,
                floor: self.min_free,
                needed: incoming,
            }));
        }
        Ok(())
    }

    /// Bytes an unprivileged process may still write on the filesystem.
    fn free(&self) -> io::Result<u64> {
        let mut stats = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: a NUL-terminated path and a buffer of the size statvfs
        // writes; it is read only after statvfs reports success.
        let stats = unsafe {
            if libc::statvfs(self.path.as_ptr(), stats.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            stats.assume_init()
        };
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }
}

/// An upload's body as its backend reads it: each byte is covered by the
/// upload's claim before the backend sees it, and, when the bytes land on
/// the local disk, the disk's floor is checked every
/// [`DISK_CHECK_INTERVAL`] bytes.
pub struct Metered<'a> {
    body: &'a mut dyn Read,
    claim: &'a Claim<'a>,
    /// Set when the backend writes the bytes to the data folder's disk.
    floor: Option<&'a DiskFloor>,
    /// Whether the claim already covers the declared size.
    declared: bool,
    read: u64,
    next_check: u64,
    /// Why the body was stopped, once it was.
    stop: Option<BlobError>,
}

impl<'a> Metered<'a> {
    pub fn new(
        body: &'a mut dyn Read,
        claim: &'a Claim<'a>,
        floor: Option<&'a DiskFloor>,
        declared: bool,
    ) -> Metered<'a> {
        Metered {
            body,
            claim,
            floor,
            declared,
            read: 0,
            next_check: DISK_CHECK_INTERVAL,
            stop: None,
        }
    }

    /// The backend's answer, where a failure that this reader caused (the
    /// body's read error it returned) becomes the refusal it was: a quota
    /// or the disk, not the client's broken body.
    pub fn outcome<T>(self, result: Result<T, BlobError>) -> Result<T, BlobError> {
        match (result, self.stop) {
            (Err(_), Some(refusal)) => Err(refusal),
            (result, _) => result,
        }
    }

    fn stop(&mut self, refusal: BlobError) -> io::Error {
        self.stop = Some(refusal);
        io::Error::other("the upload was stopped")
    }
}

impl Read for Metered<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.body.read(out)?;
        self.read += n as u64;
        if let Err(exceeded) = self.claim.cover(self.read, self.declared) {
            return Err(self.stop(BlobError::QuotaExceeded(exceeded)));
        }
        if let Some(floor) = self.floor
            && self.read >= self.next_check
        {
            if let Err(refusal) = floor.check(0) {
                return Err(self.stop(refusal));
            }
            self.next_check = self.read + DISK_CHECK_INTERVAL;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A durable record in memory: sizes by (namespace, key).
    #[derive(Default)]
    struct Sizes(Mutex<HashMap<(String, String), u64>>);

    impl Sizes {
        fn with(entries: &[(&str, &str, u64)]) -> Sizes {
            let sizes = Sizes::default();
            for (namespace, key, size) in entries {
                sizes.set(namespace, key, Some(*size));
            }
            sizes
        }

        fn set(&self, namespace: &str, key: &str, size: Option<u64>) {
            let mut map = self.0.lock().unwrap();
            let id = (namespace.to_owned(), key.to_owned());
            match size {
                Some(size) => map.insert(id, size),
                None => map.remove(&id),
            };
        }
    }

    impl Book for Sizes {
        fn usage(&self, namespace: &str) -> Result<Usage, BlobError> {
            let map = self.0.lock().unwrap();
            let mine = map.iter().filter(|((ns, _), _)| ns == namespace);
            Ok(mine.fold(Usage::default(), |usage, (_, size)| Usage {
                bytes: usage.bytes + size,
                files: usage.files + 1,
            }))
        }

        fn recorded_size(&self, namespace: &str, key: &str) -> Result<Option<u64>, BlobError> {
            let map = self.0.lock().unwrap();
            Ok(map.get(&(namespace.to_owned(), key.to_owned())).copied())
        }
    }

    const MB: u64 = 1_000_000;

    fn quota(bytes: u64, files: u64) -> Quota {
        Quota {
            bytes: Some(bytes),
            files: Some(files),
        }
    }

    /// Stores `size` bytes under `key` as a backend would: reserve, cover,
    /// record, settle.
    fn store(
        ledger: &Ledger,
        book: &Sizes,
        key: &str,
        size: u64,
        quota: Quota,
    ) -> Result<(), BlobError> {
        let claim = ledger.reserve(book, "ann", key, quota)?;
        claim.cover(size, true).map_err(BlobError::QuotaExceeded)?;
        book.set("ann", key, Some(size));
        claim.settle(Some(size));
        Ok(())
    }

    fn exceeded(result: Result<(), BlobError>) -> Exceeded {
        match result {
            Err(BlobError::QuotaExceeded(exceeded)) => exceeded,
            other => panic!("expected a quota refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_second_file_that_does_not_fit_is_refused_with_the_figures() {
        let (ledger, book) = (Ledger::new(), Sizes::default());
        store(&ledger, &book, "a", 600_000, quota(MB, 10)).unwrap();
        let refused = exceeded(store(&ledger, &book, "b", 600_000, quota(MB, 10)));
        assert_eq!(
            refused,
            Exceeded {
                limit: Limit::Bytes,
                allowed: MB,
                stored: 600_000,
                reserved: 0,
                needed: 600_000,
                whole: true,
            }
        );
        assert_eq!(
            refused.to_string(),
            "storage quota exceeded: the account may store 1000000 bytes and stores 600000, \
             and this upload needs 600000 more"
        );
        // Nothing of it stays: the ledger forgot the account.
        assert!(ledger.lock().is_empty());
        book.set("ann", "a", None);
        store(&ledger, &book, "b", 600_000, quota(MB, 10)).unwrap();
    }

    #[test]
    fn replacing_counts_only_the_difference() {
        let (ledger, book) = (Ledger::new(), Sizes::with(&[("ann", "a", 600_000)]));
        store(&ledger, &book, "a", 900_000, quota(MB, 10)).unwrap();
        assert_eq!(book.usage("ann").unwrap().bytes, 900_000);
        let refused = exceeded(store(&ledger, &book, "a", 1_100_000, quota(MB, 10)));
        assert_eq!((refused.stored, refused.needed), (900_000, 200_000));
        // Shrinking always fits, even an account over a lowered quota.
        store(&ledger, &book, "a", 10, quota(5, 10)).unwrap();
    }

    #[test]
    fn uploads_in_progress_hold_their_room_until_they_end() {
        let (ledger, book) = (Ledger::new(), Sizes::default());
        let first = ledger.reserve(&book, "ann", "a", quota(MB, 10)).unwrap();
        first.cover(400_000, false).unwrap();
        let second = ledger.reserve(&book, "ann", "b", quota(MB, 10)).unwrap();
        second.cover(600_000, false).unwrap();
        let refused = second.cover(600_001, false).unwrap_err();
        assert_eq!(
            (refused.stored, refused.reserved, refused.needed),
            (0, 400_000, 600_001)
        );
        assert!(refused.to_string().contains("needs at least 600001 more"));
        // The refused bytes were not kept: the first may not grow either.
        assert!(first.cover(400_001, false).is_err());
        drop(second);
        first.cover(1_000_000, false).unwrap();
        // Other accounts are not touched.
        let bob = ledger.reserve(&book, "bob", "a", quota(MB, 10)).unwrap();
        bob.cover(MB, true).unwrap();
    }

    #[test]
    fn uploads_racing_for_one_key_count_once_at_the_largest() {
        let (ledger, book) = (Ledger::new(), Sizes::with(&[("ann", "k", 500_000)]));
        let small = ledger.reserve(&book, "ann", "k", quota(MB, 1)).unwrap();
        let large = ledger.reserve(&book, "ann", "k", quota(MB, 1)).unwrap();
        small.cover(100_000, true).unwrap();
        large.cover(MB, true).unwrap();
        // The large one settles first, then the small one replaces it: the
        // stored figure follows the record's order.
        book.set("ann", "k", Some(MB));
        large.settle(Some(MB));
        book.set("ann", "k", Some(100_000));
        small.settle(Some(100_000));
        let other = ledger.reserve(&book, "ann", "other", quota(MB, 2)).unwrap();
        other.cover(900_000, true).unwrap();
        assert!(other.cover(900_001, true).is_err());
    }

    #[test]
    fn deletes_settle_in_order_with_uploads() {
        let (ledger, book) = (Ledger::new(), Sizes::with(&[("ann", "k", 700_000)]));
        let upload = ledger.reserve(&book, "ann", "n", quota(MB, 10)).unwrap();
        assert!(upload.cover(400_000, true).is_err());
        let delete = ledger.track(&book, "ann", "k").unwrap();
        book.set("ann", "k", None);
        delete.settle(None);
        upload.cover(MB, true).unwrap();
    }

    #[test]
    fn the_file_limit_counts_new_keys_only() {
        let (ledger, book) = (
            Ledger::new(),
            Sizes::with(&[("ann", "a", 1), ("ann", "b", 1)]),
        );
        let refused = exceeded(ledger.reserve(&book, "ann", "c", quota(MB, 2)).map(drop));
        assert_eq!(refused.limit, Limit::Files);
        assert_eq!(
            refused.to_string(),
            "file quota exceeded: the account may store 2 files and stores 2, \
             and this upload needs 1 more"
        );
        // Replacing an existing file adds none.
        store(&ledger, &book, "a", 5, quota(MB, 2)).unwrap();
        // Two uploads to one new key add one file between them.
        let (ledger, book) = (Ledger::new(), Sizes::with(&[("ann", "a", 1)]));
        let one = ledger.reserve(&book, "ann", "new", quota(MB, 2)).unwrap();
        let two = ledger.reserve(&book, "ann", "new", quota(MB, 2)).unwrap();
        assert!(ledger.reserve(&book, "ann", "third", quota(MB, 2)).is_err());
        drop((one, two));
        assert!(ledger.lock().is_empty());
    }

    #[test]
    fn no_limits_take_anything() {
        let (ledger, book) = (Ledger::new(), Sizes::default());
        let claim = ledger.reserve(&book, "ann", "k", Quota::default()).unwrap();
        claim.cover(u64::MAX / 2, true).unwrap();
    }

    #[test]
    fn a_stopped_body_read_becomes_the_refusal_it_was() {
        let (ledger, book) = (Ledger::new(), Sizes::default());
        let claim = ledger.reserve(&book, "ann", "k", quota(10, 10)).unwrap();
        let mut body: &[u8] = &[7u8; 64];
        let mut metered = Metered::new(&mut body, &claim, None, false);
        let err = io::copy(&mut metered, &mut io::sink()).unwrap_err();
        let refusal = metered.outcome::<()>(Err(BlobError::Body(err)));
        assert!(
            matches!(refusal, Err(BlobError::QuotaExceeded(_))),
            "{refusal:?}"
        );
        // A body that broke on its own stays the client's fault.
        let mut body: &[u8] = &[7u8; 5];
        let metered = Metered::new(&mut body, &claim, None, false);
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        let broken = metered.outcome::<()>(Err(BlobError::Body(timeout)));
        assert!(matches!(broken, Err(BlobError::Body(_))), "{broken:?}");
    }

    #[test]
    fn the_disk_floor_compares_free_space() {
        let dir = std::env::temp_dir();
        DiskFloor::new(&dir, 0).unwrap().check(u64::MAX).unwrap();
        DiskFloor::new(&dir, 1).unwrap().check(0).unwrap();
        let refused = DiskFloor::new(&dir, u64::MAX / 2).unwrap().check(5);
        match refused {
            Err(BlobError::InsufficientStorage(low)) => {
                assert_eq!((low.floor, low.needed), (u64::MAX / 2, 5));
                assert!(low.free > 0);
            }
            other => panic!("{other:?}"),
        }
        let missing = DiskFloor::new(Path::new("/no/such/folder"), 1)
            .unwrap()
            .check(0);
        assert!(matches!(missing, Err(BlobError::Local(_))), "{missing:?}");
    }
}
