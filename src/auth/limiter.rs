//! Brute-force and flood limits: token buckets keyed by who is asking.
//!
//! A request takes its tokens *before* the expensive work (the password
//! hash) and settles afterwards, so concurrent requests cannot all pass one
//! check and then all do the work: the take is atomic over every key it
//! names, and an empty bucket means `429` with the seconds until the next
//! token. A taken charge that is dropped unsettled (the server could not
//! serve the request) gives its tokens back.
//!
//! Logins ([`LoginLimiter`], after OWASP's authentication guidance) count
//! per (username, address), per address and per username across addresses,
//! so an attacker's failures from one address do not lock the owner out
//! from another while a distributed guesser is still slowed down. Sign-ups
//! ([`SignupLimiter`]) count per address.
//!
//! Memory is bounded: a limiter keeps at most [`MAX_BUCKETS`] buckets. To
//! make room it drops buckets touched long ago that have refilled (a full
//! bucket is the same as none); while none of those has, a request that
//! needs a new bucket is refused (`429`) rather than let a flood of new
//! keys evict, and so refill, the buckets of a name being guessed. A key is
//! kept as its 64-bit keyed hash (std's `RandomState`: SipHash-1-3 under
//! random keys), so an entry's size does not depend on what the client
//! sent, and a client cannot aim two keys at one bucket, nor at one slot of
//! the maps, which place that hash as it is rather than hash it again
//! (`KeyedAlready`). IPv6 clients count by their /64, which one host
//! usually holds whole.
//!
//! Which buckets were touched long ago is an order of use kept to within a
//! slack (`AGE_SLACK_DIVISOR`): a take moves its bucket to the newest
//! only once its place has grown that stale, so that most requests of a
//! busy client leave the order alone.
//!
//! With a database several instances share, the login and sign-up
//! limiters keep their buckets there ([`SharedBuckets`]) under keys every
//! instance computes alike (SHA-256 under a key from the shared secret),
//! so that attempts spread over the instances are counted together; they
//! fall back to their own memory while the database does not answer.
//!
//! Request rate limits ([`RequestLimiter`]: every request per client
//! address, or per account or API key) use the same buckets with two
//! differences. Each request takes one token from one bucket, so the
//! buckets are split over [`REQUEST_SHARDS`] locks by key, and concurrent
//! requests from different clients seldom wait for each other. And when a
//! shard is full of buckets still refilling, the one used longest ago is
//! dropped rather than the request refused: refusing would shut every new
//! client out during a flood of addresses, while dropping the stalest bucket
//! only hands its client a fresh burst (an address that keeps sending, even
//! while refused, is never the stalest, unless its shard takes nearly its
//! whole capacity of other requests between two of its own).

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::peer::client_address;

/// The most buckets one limiter keeps (under 10 MiB). Room is made by
/// dropping buckets touched long ago once they have refilled.
pub const MAX_BUCKETS: usize = 100_000;

/// How many of the buckets touched longest ago are looked at for refilled
/// ones to drop when the limiter is full: a bound on the work one request
/// can cause.
const ROOM_SCAN: usize = 64;

/// An address may fail twice as often as one username from it, so that one
/// person's forgotten password does not lock out everyone behind the same
/// NAT address.
pub const ADDRESS_SCALE: u32 = 2;

/// One username may fail five times as often across all addresses as from
/// one (burst and rate): no single address can keep it empty, but a guesser
/// spread over many addresses is delayed once it has spent five bursts.
pub const USERNAME_SCALE: u32 = 5;

/// How much one bucket holds and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    burst: f64,
    per_second: f64,
}

impl Limit {
    /// `burst` at once, then `rate` a minute.
    pub fn per_minute(rate: u32, burst: u32) -> Limit {
        Limit {
            burst: f64::from(burst),
            per_second: f64::from(rate) / 60.0,
        }
    }

    /// `burst` at once, then `rate` an hour.
    pub fn per_hour(rate: u32, burst: u32) -> Limit {
        Limit {
            burst: f64::from(burst),
            per_second: f64::from(rate) / 3600.0,
        }
    }

    /// `burst` at once, then `rate` a second.
    pub fn per_second(rate: u32, burst: u32) -> Limit {
        Limit {
            burst: f64::from(burst),
            per_second: f64::from(rate),
        }
    }

    /// The most tokens a bucket holds: the requests allowed at once.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    /// Tokens a second.
    pub fn rate(&self) -> f64 {
        self.per_second
    }

    /// How long an empty bucket takes to fill again.
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.per_second)
    }

    /// `factor` times the burst and the rate.
    pub fn scaled(self, factor: u32) -> Limit {
        Limit {
            burst: self.burst * f64::from(factor),
            per_second: self.per_second * f64::from(factor),
        }
    }

    /// How long `tokens` take to come back.
    fn time_for(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(tokens.max(0.0) / self.per_second)
    }

    /// The tokens of `bucket` at `now`.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        self.refill(bucket.tokens, elapsed)
    }

    /// The tokens a bucket holding `tokens` holds `elapsed` seconds later:
    /// the one rule of refilling, for [`SharedBuckets`] too.
    pub fn refill(&self, tokens: f64, elapsed: f64) -> f64 {
        (tokens + elapsed.max(0.0) * self.per_second).min(self.burst)
    }

    /// How long a bucket holding `tokens` waits for its next whole one.
    pub fn wait_for_one(&self, tokens: f64) -> Duration {
        self.time_for(1.0 - tokens)
    }

    /// How long a bucket holding `tokens` takes to be full again.
    pub fn time_to_full(&self, tokens: f64) -> Duration {
        self.time_for(self.burst - tokens)
    }
}

/// Buckets kept where several instances share them (their database), so
/// that the login and sign-up limits count the attempts every instance
/// sees. Keys are the limiter's keyed hashes, which instances sharing a
/// secret compute alike ([`LoginLimiter::shared_through`]); times are seconds since
/// the Unix epoch.
pub trait SharedBuckets: Send + Sync {
    /// Takes a token from each of `keys`, or from none of them:
    /// `Ok(Err(wait))` when any is empty, `wait` being the time until all
    /// have one. `Err` when the buckets cannot be reached.
    fn take(&self, keys: &[(u64, Limit)], now: f64) -> Result<Result<(), Duration>, String>;

    /// Gives a token back to each of `keys`, except that `forget`'s bucket
    /// is dropped whole.
    fn give_back(&self, keys: &[(u64, Limit)], forget: Option<u64>, now: f64)
    -> Result<(), String>;
}

/// Buckets instances share, and the secret they share, from which each
/// derives the same key for a subject.
pub struct Sharing {
    pub buckets: Arc<dyn SharedBuckets>,
    pub secret: Vec<u8>,
}

/// Seconds since the Unix epoch, the clock [`SharedBuckets`] count in.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// What it holds and how fast it refills, to know when it is full.
    limit: Limit,
    /// Its place in `Ages::by_age`: when, in the limiter's count of takes,
    /// it was last moved there (at most a slack before its last use).
    touched: u64,
    /// Whether it has refused a request since it was last full: the first
    /// refusal of a run of them is worth a line in the log, the rest not.
    tripped: bool,
}

impl Bucket {
    /// Takes a token from the bucket, which held `tokens` at `now`: a run of
    /// refusals ends once it was full again.
    fn spend(&mut self, limit: Limit, tokens: f64, now: Instant) {
        self.tripped = self.tripped && tokens < limit.burst;
        self.tokens = tokens - 1.0;
        self.updated = now;
        self.limit = limit;
    }
}

/// The hasher of the maps of buckets, whose keys are already hashes under
/// the limiter's random keys: it hands a key on as it is, since hashing it
/// again would only cost time. A client can no more aim keys at one slot of
/// the map than at one bucket.
#[derive(Default)]
struct KeyedAlready(u64);

impl Hasher for KeyedAlready {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    /// Not reached: the maps' keys are `u64`, which comes to `write_u64`.
    /// Folds the bytes in rather than losing them, were it ever.
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
}

/// How stale a bucket's place in the order of use may grow before a take
/// moves it to the newest: a sixteenth of the capacity of its limiter (or
/// shard), counted in takes. Moving it on every take cost a removal and an
/// insertion in `by_age` per request; with the slack, a client that keeps
/// sending moves once in that many. The order stays close: a bucket is the
/// stalest, the one dropped, only once its limiter has had at least
/// `capacity - 1 - slack` takes since the bucket's last (`capacity - 1` in
/// exact order), so a client that keeps sending more often than that is
/// never dropped. Under 16 buckets the slack is 0 and the order exact.
const AGE_SLACK_DIVISOR: u64 = 16;

/// The order buckets were used in, oldest first, each bucket's place at
/// most a slack of takes older than its last use ([`AGE_SLACK_DIVISOR`]).
#[derive(Default)]
struct Ages {
    /// The bucket keys by the count of takes at their place.
    by_age: BTreeMap<u64, u64>,
    /// Takes so far: the clock of the order.
    touches: u64,
    /// How many takes old a bucket's place may be before a use moves it.
    slack: u64,
}

impl Ages {
    /// A new bucket of `key`, placed as the newest: its place.
    fn newest(&mut self, key: u64) -> u64 {
        self.touches += 1;
        self.by_age.insert(self.touches, key);
        self.touches
    }

    /// A use of `bucket`, the bucket of `key`: it moves to the newest place
    /// if its place is more than the slack of takes old.
    fn renew(&mut self, key: u64, bucket: &mut Bucket) {
        self.touches += 1;
        if self.touches - bucket.touched > self.slack {
            self.by_age.remove(&bucket.touched);
            self.by_age.insert(self.touches, key);
            bucket.touched = self.touches;
        }
    }
}

/// The buckets and their order of use.
#[derive(Default)]
struct Buckets {
    by_key: HashMap<u64, Bucket, BuildHasherDefault<KeyedAlready>>,
    ages: Ages,
}

impl Buckets {
    /// No buckets yet, for a limiter (or shard) of `capacity`.
    fn within(capacity: usize) -> Buckets {
        Buckets {
            by_key: HashMap::default(),
            ages: Ages {
                slack: capacity as u64 / AGE_SLACK_DIVISOR,
                ..Ages::default()
            },
        }
    }

    /// Room for `new` more buckets within `capacity`: refilled buckets are
    /// dropped, looking among the [`ROOM_SCAN`] touched longest ago.
    /// `Err(wait)` when too few of those are full, `wait` being the time
    /// until the first of them is.
    fn make_room(&mut self, new: usize, capacity: usize, now: Instant) -> Result<(), Duration> {
        let needed = (self.by_key.len() + new).saturating_sub(capacity);
        if needed == 0 {
            return Ok(());
        }
        let mut full = Vec::with_capacity(needed);
        let mut wait = Duration::MAX;
        for key in self.ages.by_age.values().take(ROOM_SCAN) {
            let bucket = &self.by_key[key];
            let missing = bucket.limit.burst - bucket.limit.refilled(bucket, now);
            if missing <= 0.0 {
                full.push(*key);
                if full.len() == needed {
                    break;
                }
            } else {
                wait = wait.min(Duration::from_secs_f64(missing / bucket.limit.per_second));
            }
        }
        if full.len() < needed {
            return Err(wait);
        }
        for key in full {
            self.remove(key);
        }
        Ok(())
    }

    /// The bucket of `key` with a token taken (a new one starts full), made
    /// the newest; the tokens it has left.
    fn take(&mut self, key: u64, limit: Limit, now: Instant) -> f64 {
        let bucket = match self.by_key.entry(key) {
            Entry::Occupied(entry) => {
                let bucket = entry.into_mut();
                self.ages.renew(key, bucket);
                let tokens = limit.refilled(bucket, now);
                bucket.spend(limit, tokens, now);
                bucket
            }
            Entry::Vacant(entry) => {
                let bucket = entry.insert(Bucket {
                    tokens: limit.burst,
                    updated: now,
                    limit,
                    touched: self.ages.newest(key),
                    tripped: false,
                });
                bucket.spend(limit, limit.burst, now);
                bucket
            }
        };
        bucket.tokens
    }

    fn remove(&mut self, key: u64) {
        if let Some(bucket) = self.by_key.remove(&key) {
            self.ages.by_age.remove(&bucket.touched);
        }
    }

    /// Room for one more bucket within `capacity`: a refilled one among the
    /// oldest is dropped, else the one used longest ago.
    fn make_room_evicting(&mut self, capacity: usize, now: Instant) {
        if self.make_room(1, capacity, now).is_err()
            && let Some((_, key)) = self.ages.by_age.pop_first()
        {
            self.by_key.remove(&key);
        }
    }
}

/// Token buckets under one lock, at most `capacity` of them; or, when
/// `shared` is set, the buckets instances share, with these as the
/// fallback while those cannot be reached.
struct Limiter {
    buckets: Mutex<Buckets>,
    capacity: usize,
    keys: SubjectKeys,
    shared: Option<Arc<dyn SharedBuckets>>,
}

/// How a subject becomes its bucket's key.
enum SubjectKeys {
    /// SipHash under keys of this process's own.
    Random(RandomState),
    /// SHA-256 under a key from the secret instances share, so that each
    /// computes the same key for a subject; `name` keeps one limiter's
    /// keys apart from another's in the shared buckets. What is hashed is
    /// the subject's `Hash` output, the same for every instance of one
    /// build on one architecture; instances of builds whose output differs
    /// (possible across Rust versions, during a rolling upgrade) count the
    /// same client apart until all run one build.
    Shared {
        secret: [u8; 32],
        name: &'static str,
    },
}

impl SubjectKeys {
    fn shared(secret: &[u8], name: &'static str) -> SubjectKeys {
        use sha2::Digest;
        let secret = sha2::Sha256::new()
            .chain_update(b"wren limiter keys\0")
            .chain_update(secret)
            .finalize()
            .into();
        SubjectKeys::Shared { secret, name }
    }

    fn key(&self, subject: impl Hash) -> u64 {
        match self {
            SubjectKeys::Random(state) => state.hash_one(subject),
            SubjectKeys::Shared { secret, name } => {
                use sha2::Digest;
                let mut hasher = DigestHasher(sha2::Sha256::new_with_prefix(secret));
                name.hash(&mut hasher);
                subject.hash(&mut hasher);
                hasher.finish()
            }
        }
    }
}

/// Feeds what `Hash` writes into SHA-256.
struct DigestHasher(sha2::Sha256);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        use sha2::Digest;
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("SHA-256 is 32 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }
}

impl Limiter {
    /// Shared, so that a [`Charge`] can hold its limiter and be settled
    /// anywhere, on whichever thread the request's answer is decided.
    fn new(capacity: usize) -> Arc<Limiter> {
        Arc::new(Limiter {
            buckets: Mutex::new(Buckets::within(capacity)),
            capacity,
            keys: SubjectKeys::Random(RandomState::new()),
            shared: None,
        })
    }

    /// A limiter over the buckets of `sharing`; `name` tells its keys from
    /// other limiters' there.
    fn shared(capacity: usize, sharing: &Sharing, name: &'static str) -> Arc<Limiter> {
        Arc::new(Limiter {
            buckets: Mutex::new(Buckets::within(capacity)),
            capacity,
            keys: SubjectKeys::shared(&sharing.secret, name),
            shared: Some(Arc::clone(&sharing.buckets)),
        })
    }

    /// The key a subject's bucket is kept under.
    fn key(&self, subject: impl Hash) -> u64 {
        self.keys.key(subject)
    }

    fn lock(&self) -> MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token from each of `keys`, or from none of them: `Err(wait)`
    /// when any is empty, `wait` being the time until all have one. A
    /// refused request creates no bucket.
    fn charge(self: &Arc<Self>, keys: Vec<(u64, Limit)>, now: Instant) -> Result<Charge, Duration> {
        // The shared buckets when they answer; this instance's own while
        // they do not (the database is down: nothing is lost by counting
        // here meanwhile).
        if let Some(shared) = &self.shared
            && let Ok(taken) = shared.take(&keys, unix_now())
        {
            taken?;
            return Ok(Charge {
                limiter: Arc::clone(self),
                keys,
                settled: false,
                in_shared: true,
            });
        }
        let mut buckets = self.lock();
        let mut wait = Duration::ZERO;
        for (key, limit) in &keys {
            if let Some(bucket) = buckets.by_key.get(key) {
                let tokens = limit.refilled(bucket, now);
                if tokens < 1.0 {
                    wait = wait.max(Duration::from_secs_f64((1.0 - tokens) / limit.per_second));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        let new = keys
            .iter()
            .filter(|(key, _)| !buckets.by_key.contains_key(key))
            .count();
        buckets.make_room(new, self.capacity, now)?;
        for (key, limit) in &keys {
            buckets.take(*key, *limit, now);
        }
        Ok(Charge {
            limiter: Arc::clone(self),
            keys,
            settled: false,
            in_shared: false,
        })
    }

    /// How many buckets are kept.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        let buckets = self.lock();
        assert_eq!(buckets.by_key.len(), buckets.ages.by_age.len());
        buckets.by_key.len()
    }
}

/// Tokens taken for one request, before its work. [`Charge::keep`] counts
/// the request; dropping the charge unsettled gives the tokens back, for a
/// request the server could not serve. It holds its limiter, so it can go
/// with the request's work to another thread (a sign-up's goes to the
/// store's callback, where its answer is decided).
#[must_use = "a charge dropped unsettled gives its tokens back"]
pub struct Charge {
    limiter: Arc<Limiter>,
    keys: Vec<(u64, Limit)>,
    settled: bool,
    /// Whether the tokens came from the shared buckets.
    in_shared: bool,
}

impl Charge {
    /// The request counts: its tokens stay taken.
    pub fn keep(mut self) {
        self.settled = true;
    }

    /// Gives the tokens back, except that `forget`'s bucket is dropped
    /// whole (a success wipes the failures before it).
    fn give_back(&mut self, forget: Option<u64>) {
        self.settled = true;
        if self.in_shared
            && let Some(shared) = &self.limiter.shared
        {
            // Unreachable now: the tokens stay taken, which errs on the
            // side of the limit.
            let _ = shared.give_back(&self.keys, forget, unix_now());
            return;
        }
        let now = Instant::now();
        let mut buckets = self.limiter.lock();
        for (key, limit) in &self.keys {
            if Some(*key) == forget {
                buckets.remove(*key);
            } else if let Some(bucket) = buckets.by_key.get_mut(key) {
                // An evicted bucket is not recreated: a new one starts full.
                bucket.tokens = (limit.refilled(bucket, now) + 1.0).min(limit.burst);
                bucket.updated = now;
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if !self.settled {
            self.give_back(None);
        }
    }
}

/// How many locks a [`RequestLimiter`]'s buckets are split over: enough
/// that the worker threads of a busy server seldom meet at one.
pub const REQUEST_SHARDS: usize = 16;

/// The most buckets a [`RequestLimiter`] keeps: 3,584 per shard, the most a
/// hash table of 8,192 slots keeps while buckets come and go (it rehashes
/// in place while at most half its capacity of 7,168 is used, rather than
/// doubling), so a full limiter holds about 9 MiB. A bucket is needed only
/// while it refills (2 s at the default `--rate-limit` and `--rate-burst`),
/// so this is room for about 28,000 new clients a second.
pub const MAX_REQUEST_BUCKETS: usize = REQUEST_SHARDS * 3_584;

/// A bucket's level after a request, for the `RateLimit` header: the whole
/// tokens left, and when the quota is back (the bucket full again or, when
/// none is left, the next token, which is when a refused request may retry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub remaining: u64,
    pub reset: Duration,
}

/// A request a [`RequestLimiter`] refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused {
    /// The bucket's level: empty, and when the next token is due.
    pub level: Level,
    /// Whether this is the first refusal since the bucket was last full:
    /// the moment a client went over its limit, rather than one more
    /// request of a client still over it.
    pub first: bool,
}

/// One token per request from the bucket of who sends it, at most
/// `capacity` buckets kept, split over [`REQUEST_SHARDS`] locks.
pub struct RequestLimiter {
    shards: Box<[Mutex<Buckets>]>,
    shard_capacity: usize,
    keys: RandomState,
    limit: Limit,
}

impl RequestLimiter {
    pub fn new(limit: Limit, capacity: usize) -> Self {
        let shard_capacity = capacity.div_ceil(REQUEST_SHARDS).max(1);
        RequestLimiter {
            shards: (0..REQUEST_SHARDS)
                .map(|_| Mutex::new(Buckets::within(shard_capacity)))
                .collect(),
            shard_capacity,
            keys: RandomState::new(),
            limit,
        }
    }

    /// Takes a token for one request of `subject`: `Ok` with what is left,
    /// or `Err` with the wait for the next token when the bucket is empty.
    pub fn take(&self, subject: impl Hash, now: Instant) -> Result<Level, Refused> {
        let key = self.keys.hash_one(subject);
        let limit = self.limit;
        // Bits the map of a shard does not use: it places a key by its low
        // bits and tells keys apart in a slot group by its top seven.
        let shard = &self.shards[(key >> 32) as usize % REQUEST_SHARDS];
        let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let buckets = &mut *guard;
        let tokens = match buckets.by_key.get_mut(&key) {
            Some(bucket) => {
                // Taken from or refused, a client that sends is in use.
                buckets.ages.renew(key, bucket);
                let tokens = limit.refilled(bucket, now);
                if tokens < 1.0 {
                    let first = !bucket.tripped;
                    bucket.tripped = true;
                    return Err(Refused {
                        level: Level {
                            remaining: 0,
                            reset: limit.time_for(1.0 - tokens),
                        },
                        first,
                    });
                }
                bucket.spend(limit, tokens, now);
                bucket.tokens
            }
            None => {
                buckets.make_room_evicting(self.shard_capacity, now);
                buckets.take(key, limit, now)
            }
        };
        let reset = if tokens < 1.0 {
            limit.time_for(1.0 - tokens)
        } else {
            limit.time_for(limit.burst - tokens)
        };
        Ok(Level {
            remaining: tokens as u64,
            reset,
        })
    }

    /// How many buckets are kept.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let buckets = shard.lock().unwrap();
                assert_eq!(buckets.by_key.len(), buckets.ages.by_age.len());
                buckets.by_key.len()
            })
            .sum()
    }
}

/// What a login bucket counts. Each kind hashes apart from the others, so
/// a username and an address can never share a bucket by spelling.
#[derive(Hash)]
enum LoginSubject<'a> {
    Pair(&'a str, IpAddr),
    Address(IpAddr),
    Username(&'a str),
}

/// Failed logins: per (username, address) at `--login-rate` and
/// `--login-burst`, per address at [`ADDRESS_SCALE`] times that, per
/// username across addresses at [`USERNAME_SCALE`] times that.
pub struct LoginLimiter {
    limiter: Arc<Limiter>,
    pair: Limit,
}

impl LoginLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        LoginLimiter {
            limiter: Limiter::new(MAX_BUCKETS),
            pair: Limit::per_minute(per_minute, burst),
        }
    }

    /// The same limits, counted in the buckets instances share when there
    /// are some: a guesser spreading attempts over them is counted once.
    pub fn shared_through(mut self, sharing: Option<&Sharing>) -> Self {
        if let Some(sharing) = sharing {
            self.limiter = Limiter::shared(MAX_BUCKETS, sharing, "login");
        }
        self
    }

    /// Takes the tokens for one login attempt, before its password is
    /// checked; `Err(wait)` when the attempt must wait. `username` is `None`
    /// for a name no account can have: the client chose it, so it gets no
    /// bucket of its own, and the address alone counts it.
    pub fn attempt(&self, username: Option<&str>, ip: IpAddr) -> Result<LoginAttempt, Duration> {
        let address = client_address(ip);
        let limiter = &self.limiter;
        let mut keys = vec![(
            limiter.key(LoginSubject::Address(address)),
            self.pair.scaled(ADDRESS_SCALE),
        )];
        let mut pair = None;
        if let Some(name) = username {
            let key = limiter.key(LoginSubject::Pair(name, address));
            keys.push((key, self.pair));
            keys.push((
                limiter.key(LoginSubject::Username(name)),
                self.pair.scaled(USERNAME_SCALE),
            ));
            pair = Some(key);
        }
        let charge = limiter.charge(keys, Instant::now())?;
        Ok(LoginAttempt { charge, pair })
    }

    /// How many buckets are kept.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.limiter.tracked()
    }
}

/// One login attempt's tokens. Dropped unsettled (the password was never
/// checked), it gives them back.
#[must_use = "an attempt dropped unsettled gives its tokens back"]
pub struct LoginAttempt {
    charge: Charge,
    pair: Option<u64>,
}

impl LoginAttempt {
    /// A wrong password: the tokens stay taken.
    pub fn failed(self) {
        self.charge.keep();
    }

    /// The right password: the owner's failures from this address are
    /// forgotten, and the address's and the username's tokens given back
    /// (a success is no failure; resetting those would let an attacker
    /// with an account of their own wipe their address's count).
    pub fn succeeded(mut self) {
        self.charge.give_back(self.pair);
    }
}

/// Sign-ups per address, at `--signup-rate` an hour after `--signup-burst`.
pub struct SignupLimiter {
    limiter: Arc<Limiter>,
    limit: Limit,
}

impl SignupLimiter {
    pub fn new(per_hour: u32, burst: u32) -> Self {
        SignupLimiter {
            limiter: Limiter::new(MAX_BUCKETS),
            limit: Limit::per_hour(per_hour, burst),
        }
    }

    /// The same limit, counted in the buckets instances share when there
    /// are some.
    pub fn shared_through(mut self, sharing: Option<&Sharing>) -> Self {
        if let Some(sharing) = sharing {
            self.limiter = Limiter::shared(MAX_BUCKETS, sharing, "signup");
        }
        self
    }

    /// Takes a token for one sign-up from `ip`, before its password is
    /// hashed; `Err(wait)` when it must wait.
    pub fn attempt(&self, ip: IpAddr) -> Result<Charge, Duration> {
        let key = self.limiter.key(client_address(ip));
        self.limiter.charge(vec![(key, self.limit)], Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const ONE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const TWO: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn charge(
        limiter: &Arc<Limiter>,
        keys: &[u64],
        limit: Limit,
        now: Instant,
    ) -> Result<(), Duration> {
        let keys = keys.iter().map(|key| (*key, limit)).collect();
        limiter.charge(keys, now).map(Charge::keep)
    }

    #[test]
    fn shared_keys_agree_between_instances_of_one_secret_only() {
        let subject = LoginSubject::Pair("ann", ONE);
        let one = SubjectKeys::shared(b"the shared secret", "login");
        let other_instance = SubjectKeys::shared(b"the shared secret", "login");
        assert_eq!(one.key(&subject), other_instance.key(&subject));
        let other_secret = SubjectKeys::shared(b"another secret", "login");
        assert_ne!(one.key(&subject), other_secret.key(&subject));
        let other_limiter = SubjectKeys::shared(b"the shared secret", "signup");
        assert_ne!(one.key(&subject), other_limiter.key(&subject));
        assert_ne!(one.key(&subject), one.key(LoginSubject::Pair("ann", TWO)));
        // A process's own keys are its own.
        let random = SubjectKeys::Random(RandomState::new());
        let again = SubjectKeys::Random(RandomState::new());
        assert_ne!(random.key(&subject), again.key(&subject));
    }

    #[test]
    fn refilling_is_one_rule() {
        let limit = Limit::per_minute(6, 3);
        assert_eq!(limit.refill(0.0, 10.0), 1.0);
        assert_eq!(limit.refill(2.5, 60.0), 3.0, "never past the burst");
        assert_eq!(
            limit.refill(1.0, -5.0),
            1.0,
            "a clock going back adds nothing"
        );
        assert_eq!(limit.wait_for_one(0.5).as_secs(), 5);
        assert_eq!(limit.time_to_full(1.0).as_secs(), 20);
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = Limiter::new(MAX_BUCKETS);
        let limit = Limit::per_minute(6, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(charge(&limiter, &[1], limit, start), Ok(()));
        }
        let wait = charge(&limiter, &[1], limit, start).unwrap_err();
        assert_eq!(wait.as_secs(), 10, "6 a minute: one every 10 s");
        let later = start + Duration::from_secs(10);
        assert_eq!(charge(&limiter, &[1], limit, later), Ok(()));
        assert_eq!(charge(&limiter, &[2], limit, start), Ok(()));
    }

    #[test]
    fn a_charge_takes_from_every_key_or_from_none() {
        let limiter = Limiter::new(MAX_BUCKETS);
        let limit = Limit::per_minute(1, 1);
        let now = Instant::now();
        charge(&limiter, &[1], limit, now).unwrap();
        assert!(charge(&limiter, &[2, 1], limit, now).is_err());
        // The refused charge took nothing from key 2 and made no bucket.
        assert_eq!(limiter.tracked(), 1);
        assert_eq!(charge(&limiter, &[2, 3], limit, now), Ok(()));
    }

    #[test]
    fn an_unsettled_charge_gives_its_tokens_back() {
        let limiter = Limiter::new(MAX_BUCKETS);
        let limit = Limit::per_minute(1, 1);
        let now = Instant::now();
        drop(limiter.charge(vec![(1, limit)], now).unwrap());
        assert_eq!(charge(&limiter, &[1], limit, now), Ok(()));
        assert!(charge(&limiter, &[1], limit, now).is_err());
    }

    #[test]
    fn a_million_keys_keep_the_map_at_its_bound() {
        let limiter = Limiter::new(MAX_BUCKETS);
        // One token back every 12 s: a bucket charged once is full again
        // 12 s later. A new key arrives every millisecond.
        let limit = Limit::per_minute(5, 10);
        let start = Instant::now();
        let at = |key: u64| start + Duration::from_millis(key);
        for key in 0..1_000_000u64 {
            charge(&limiter, &[key], limit, at(key)).unwrap();
            if key % 100_000 == 0 {
                assert!(limiter.tracked() <= MAX_BUCKETS);
            }
        }
        assert_eq!(limiter.tracked(), MAX_BUCKETS);
        // The newest are kept, the refilled oldest dropped: a dropped key
        // starts full again, a kept one has spent a token.
        let (kept, now) = (999_999, at(999_999));
        for _ in 0..9 {
            charge(&limiter, &[kept], limit, now).unwrap();
        }
        assert!(charge(&limiter, &[kept], limit, now).is_err());
        for _ in 0..10 {
            charge(&limiter, &[0], limit, now).unwrap();
        }
    }

    #[test]
    fn a_flood_of_new_keys_cannot_refill_a_drained_bucket() {
        let limiter = Limiter::new(100);
        let limit = Limit::per_minute(5, 10);
        let now = Instant::now();
        // The victim's bucket, drained by a guesser.
        for _ in 0..10 {
            charge(&limiter, &[7], limit, now).unwrap();
        }
        // Fresh keys fill the limiter; past its bound they are refused, not
        // let in by dropping the drained bucket.
        let refused = (1000..1200u64)
            .filter(|key| charge(&limiter, &[*key], limit, now).is_err())
            .count();
        assert_eq!(refused, 101);
        assert_eq!(limiter.tracked(), 100);
        assert!(charge(&limiter, &[7], limit, now).is_err());
        // Once the oldest have refilled, new keys take their place.
        let later = now + Duration::from_secs(12);
        assert_eq!(charge(&limiter, &[5000], limit, later), Ok(()));
        assert!(limiter.tracked() <= 100);
    }

    #[test]
    fn the_owner_signs_in_from_another_address_after_an_attack() {
        let logins = LoginLimiter::new(5, 10);
        for _ in 0..10 {
            logins.attempt(Some("ann"), ONE).unwrap().failed();
        }
        assert!(logins.attempt(Some("ann"), ONE).is_err());
        logins.attempt(Some("ann"), TWO).unwrap().succeeded();
        // The attacker's address may still try other names, up to its own
        // bucket.
        for _ in 0..10 {
            logins.attempt(Some("bob"), ONE).unwrap().failed();
        }
        assert!(logins.attempt(Some("cat"), ONE).is_err());
    }

    #[test]
    fn a_distributed_guesser_is_delayed_at_five_bursts() {
        let logins = LoginLimiter::new(5, 2);
        let addresses = (1..=5u8).map(|n| IpAddr::V4(Ipv4Addr::new(10, 0, 1, n)));
        for address in addresses {
            for _ in 0..2 {
                logins.attempt(Some("ann"), address).unwrap().failed();
            }
        }
        let fresh = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));
        let wait = logins.attempt(Some("ann"), fresh).err().unwrap();
        assert!(wait <= Duration::from_secs(3), "25 a minute: {wait:?}");
        assert!(logins.attempt(Some("bob"), fresh).is_ok());
    }

    #[test]
    fn success_forgets_the_pair_and_gives_back_the_rest() {
        let logins = LoginLimiter::new(1, 2);
        logins.attempt(Some("ann"), ONE).unwrap().failed();
        logins.attempt(Some("ann"), ONE).unwrap().succeeded();
        // The pair is forgotten: two more failures before it is empty.
        logins.attempt(Some("ann"), ONE).unwrap().failed();
        logins.attempt(Some("ann"), ONE).unwrap().failed();
        assert!(logins.attempt(Some("ann"), ONE).is_err());
        // Successes never empty the address's bucket (4 tokens: 3 failures
        // so far, the success given back).
        for _ in 0..10 {
            logins.attempt(Some("bob"), ONE).unwrap().succeeded();
        }
    }

    #[test]
    fn impossible_names_count_against_the_address_only() {
        let logins = LoginLimiter::new(5, 10);
        logins.attempt(None, ONE).unwrap().failed();
        assert_eq!(logins.tracked(), 1);
        logins.attempt(Some("ann"), ONE).unwrap().failed();
        assert_eq!(logins.tracked(), 3);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        // The grouping itself is tested in crate::peer.
        let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        let signups = SignupLimiter::new(1, 1);
        signups.attempt(host(1)).unwrap().keep();
        assert!(signups.attempt(host(2)).is_err());
        assert!(signups.attempt(other).is_ok());
    }

    #[test]
    fn a_request_limiter_tells_what_is_left_and_when() {
        let limiter = RequestLimiter::new(Limit::per_second(10, 20), MAX_REQUEST_BUCKETS);
        let start = Instant::now();
        let first = limiter.take(ONE, start).unwrap();
        assert_eq!(first.remaining, 19);
        // One token spent: full again in a tenth of a second.
        assert_eq!(first.reset, Duration::from_millis(100));
        for left in (0..19).rev() {
            assert_eq!(limiter.take(ONE, start).unwrap().remaining, left);
        }
        let refused = limiter.take(ONE, start).unwrap_err();
        assert_eq!(
            refused,
            Refused {
                level: Level {
                    remaining: 0,
                    reset: Duration::from_millis(100)
                },
                first: true,
            }
        );
        // Still over the limit: not the first refusal of the run.
        assert!(!limiter.take(ONE, start).unwrap_err().first);
        // Another client has its own bucket.
        assert_eq!(limiter.take(TWO, start).unwrap().remaining, 19);
        // A token comes back every 100 ms; the last one taken tells when the
        // next is due, not when the bucket is full.
        let later = start + Duration::from_millis(150);
        let level = limiter.take(ONE, later).unwrap();
        assert_eq!(level.remaining, 0);
        assert_eq!(level.reset, Duration::from_millis(50));
    }

    #[test]
    fn a_run_of_refusals_ends_when_the_bucket_is_full_again() {
        let limiter = RequestLimiter::new(Limit::per_second(1, 2), MAX_REQUEST_BUCKETS);
        let start = Instant::now();
        let firsts = |at: Instant, requests: usize| -> Vec<bool> {
            (0..requests)
                .filter_map(|_| limiter.take(ONE, at).err().map(|refused| refused.first))
                .collect()
        };
        assert_eq!(firsts(start, 4), [true, false]);
        // A token back, taken, and refused again: the same run.
        let soon = start + Duration::from_secs(1);
        assert_eq!(firsts(soon, 2), [false]);
        // Quiet until the bucket is full: the next refusal starts a run.
        let later = soon + Duration::from_secs(2);
        assert_eq!(firsts(later, 3), [true]);
    }

    #[test]
    fn a_request_limiter_keeps_its_bound_and_drops_the_stalest() {
        let capacity = REQUEST_SHARDS * 8;
        let limiter = RequestLimiter::new(Limit::per_second(1, 5), capacity);
        let now = Instant::now();
        // The victim empties its bucket, then keeps sending while refused.
        for _ in 0..5 {
            limiter.take(0u32, now).unwrap();
        }
        // A flood of new clients, all still refilling: the bound holds and
        // nobody is refused for want of room.
        for (n, client) in (1..10_000u32).enumerate() {
            limiter.take(client, now).unwrap();
            if n % 10 == 0 {
                assert!(limiter.take(0u32, now).is_err(), "refused, so still in use");
            }
            assert!(limiter.tracked() <= capacity);
        }
        assert!(limiter.tracked() <= capacity);
        // The first flooders were the stalest and were dropped: a full
        // bucket again. The sender kept its empty one.
        assert_eq!(limiter.take(1u32, now).unwrap().remaining, 4);
        assert!(limiter.take(0u32, now).is_err());
    }

    #[test]
    fn room_is_made_from_refilled_buckets_before_the_stalest() {
        let mut buckets = Buckets::default();
        let start = Instant::now();
        let slow = Limit::per_minute(1, 2);
        let fast = Limit::per_second(1, 2);
        // The stalest still refills at 5 s; the one after it has refilled.
        buckets.take(1, slow, start);
        buckets.take(2, fast, start + Duration::from_millis(1));
        buckets.take(3, slow, start + Duration::from_millis(2));
        let now = start + Duration::from_secs(5);
        buckets.make_room_evicting(3, now);
        assert!(buckets.by_key.contains_key(&1) && !buckets.by_key.contains_key(&2));
        // None refilled: the stalest goes.
        buckets.take(4, slow, now);
        buckets.make_room_evicting(3, now);
        assert_eq!(buckets.by_key.len(), 2);
        assert!(!buckets.by_key.contains_key(&1));
        assert_eq!(buckets.ages.by_age.len(), 2);
    }

    #[test]
    fn a_take_moves_its_bucket_only_once_its_place_is_a_slack_old() {
        // 64 buckets: a slack of 4 takes.
        let mut buckets = Buckets::within(64);
        let limit = Limit::per_second(1, 1_000);
        let now = Instant::now();
        buckets.take(0, limit, now);
        for key in 1..=3 {
            buckets.take(key, limit, now);
        }
        // Its place is 4 takes old with this one: it stays the oldest.
        buckets.take(0, limit, now);
        assert_eq!(buckets.ages.by_age.first_key_value(), Some((&1, &0)));
        // 6 takes old: it moves to the newest.
        buckets.take(4, limit, now);
        buckets.take(0, limit, now);
        assert_eq!(buckets.ages.by_age.last_key_value(), Some((&7, &0)));
        assert_eq!(buckets.ages.by_age.first_key_value(), Some((&2, &1)));
        assert_eq!(buckets.ages.by_age.len(), buckets.by_key.len());
    }

    #[test]
    fn the_slack_never_lets_a_client_that_keeps_sending_be_dropped() {
        let capacity = 64;
        let slack = capacity as u64 / AGE_SLACK_DIVISOR;
        // The most takes of others between two of its own that the slack
        // lets a bucket have and never be the stalest.
        let others = capacity as u64 - 1 - slack;
        let mut buckets = Buckets::within(capacity);
        // Nothing refills at one instant: room is made by dropping the
        // stalest.
        let limit = Limit::per_second(1, 1_000_000);
        let now = Instant::now();
        let sender = u64::MAX;
        let mut clients = 0..;
        let mut newcomer = |buckets: &mut Buckets| {
            buckets.make_room_evicting(capacity, now);
            buckets.take(clients.next().unwrap(), limit, now);
            assert!(buckets.by_key.len() <= capacity);
        };
        for _ in 0..1_000 {
            // The worst case: its last take finds its place just a slack
            // old, and leaves it there.
            buckets.take(sender, limit, now);
            for _ in 1..slack {
                newcomer(&mut buckets);
            }
            buckets.take(sender, limit, now);
            for _ in 0..others {
                newcomer(&mut buckets);
                assert!(buckets.by_key.contains_key(&sender));
            }
        }
        // The newcomers, each seen once, were dropped oldest first.
        assert!(!buckets.by_key.contains_key(&0));
        // Once it stops sending, it is the stalest in time.
        for _ in 0..capacity {
            newcomer(&mut buckets);
        }
        assert!(!buckets.by_key.contains_key(&sender));
    }
}
