//! The S3 backend against a real S3-compatible store, through wren's
//! public storage API ([`S3Blobs`] and the [`Blobs`] trait).
//!
//! They run in the environment `scripts/with-garage.sh` sets up (`make test`
//! runs them so): `S3_ENDPOINT`, `S3_REGION`, `S3_BUCKET`,
//! `S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY` for the server's store, and
//! `WREN_TEST_USER_KEY_ID`, `WREN_TEST_USER_KEY_SECRET` and
//! `WREN_TEST_USER_BUCKET` for an account's own keys. Without them each test
//! returns at once, saying so, unless `WREN_TEST_S3=required`. Each test
//! writes under its own prefix.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use wren::blob::s3::{PART_SIZE, S3Blobs};
use wren::blob::{
    BlobError, Blobs, Book, ByteRange, Download, Owner, Page, S3Addressing, S3Config,
    UserCredentials, WriteCondition, Written,
};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Notes a skipped test, or fails it when S3 tests are required.
fn skip(test: &str, missing: &str) {
    assert!(
        var("WREN_TEST_S3").as_deref() != Some("required"),
        "{test}: {missing} is not set, and WREN_TEST_S3=required"
    );
    eprintln!("skipped {test}: {missing} is not set (run through scripts/with-garage.sh)");
}

/// The store's config with a prefix of the test's own, or `None`
/// (and a note) when no store is configured.
fn config(test: &str) -> Option<S3Config> {
    let Some(endpoint) = var("S3_ENDPOINT") else {
        skip(test, "S3_ENDPOINT");
        return None;
    };
    Some(S3Config {
        endpoint,
        region: var("S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
        bucket: var("S3_BUCKET"),
        prefix: format!("wren-test-{}-{test}/", std::process::id()),
        addressing: S3Addressing::Path,
        access_key_id: var("S3_ACCESS_KEY_ID"),
        secret_access_key: var("S3_SECRET_ACCESS_KEY"),
    })
}

/// A fresh folder for a backend's size record.
fn record_folder(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("s3-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn setup(test: &str) -> Option<(S3Blobs, Owner)> {
    let blobs = S3Blobs::new(&config(test)?, &record_folder(test)).unwrap();
    let owner = Owner {
        namespace: "ann".to_owned(),
        credentials: None,
    };
    Some((blobs, owner))
}

fn put(blobs: &S3Blobs, owner: &Owner, key: &str, bytes: &[u8]) -> Written {
    put_if(blobs, owner, key, &WriteCondition::Always, bytes).unwrap()
}

fn put_if(
    blobs: &S3Blobs,
    owner: &Owner,
    key: &str,
    condition: &WriteCondition,
    mut bytes: &[u8],
) -> Result<Written, BlobError> {
    blobs.put(owner, key, "text/plain", condition, &mut bytes, &|_| {})
}

fn read_all(mut download: Download) -> Vec<u8> {
    let mut bytes = Vec::new();
    download.body.read_to_end(&mut bytes).unwrap();
    bytes
}

/// `size` reproducible pseudo-random bytes, handed out in reads of
/// uneven sizes, as a socket would. The bytes do not depend on how
/// they are read.
struct Noise {
    bytes: fastrand::Rng,
    chunks: fastrand::Rng,
    left: usize,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left).min(self.chunks.usize(1..100_000));
        buf[..n].iter_mut().for_each(|b| *b = self.bytes.u8(..));
        self.left -= n;
        Ok(n)
    }
}

fn noise(size: usize) -> Noise {
    Noise {
        bytes: fastrand::Rng::with_seed(7),
        chunks: fastrand::Rng::with_seed(8),
        left: size,
    }
}

fn keys(page: &Page) -> Vec<&str> {
    page.objects.iter().map(|info| info.key.as_str()).collect()
}

#[test]
fn awkward_keys_round_trip() {
    let Some((blobs, owner)) = setup("keys") else {
        return;
    };
    let key = "dïr/sub dir/ünï cødé+plus%25 & ✓.txt";
    let written = blobs
        .put(
            &owner,
            key,
            "text/plain; charset=utf-8",
            &WriteCondition::Always,
            &mut &b"hello"[..],
            &|_| {},
        )
        .unwrap();
    assert!(written.created);
    assert_eq!(written.info.size, 5);
    assert!(written.info.etag.starts_with('"') && written.info.etag.ends_with('"'));

    let head = blobs.head(&owner, key).unwrap();
    assert_eq!(head.key, key);
    assert_eq!(head.size, 5);
    assert_eq!(head.etag, written.info.etag);
    assert_eq!(head.content_type, "text/plain; charset=utf-8");
    let age = SystemTime::now().duration_since(head.modified).unwrap();
    assert!(age < Duration::from_secs(60), "{age:?}");

    let download = blobs.get(&owner, key, None).unwrap();
    assert_eq!(download.info, head);
    assert_eq!(download.range, None);
    assert_eq!(read_all(download), b"hello");

    // The listing gives the key back exactly: '+', spaces and '%'
    // survive its URL encoding.
    let page = blobs.list(&owner, "dïr/", None, 10).unwrap();
    assert_eq!(page.objects, vec![head]);
    assert!(!page.truncated);
    // Another key differing only by what encoding could confuse.
    assert!(matches!(
        blobs.head(&owner, "dïr/sub dir/ünï cødé plus% & ✓.txt"),
        Err(BlobError::NotFound)
    ));

    let again = put(&blobs, &owner, key, b"bye");
    assert!(!again.created);
    assert_eq!(read_all(blobs.get(&owner, key, None).unwrap()), b"bye");

    let empty = put(&blobs, &owner, "empty", b"");
    assert_eq!(empty.info.size, 0);
    assert_eq!(blobs.head(&owner, "empty").unwrap().size, 0);
    assert_eq!(read_all(blobs.get(&owner, "empty", None).unwrap()), b"");
}

#[test]
fn large_bodies_go_up_in_parts() {
    let Some((blobs, owner)) = setup("multipart") else {
        return;
    };
    let size = 20 * 1024 * 1024 + 123;
    let mut expected = Sha256::new();
    io::copy(&mut noise(size), &mut expected).unwrap();
    let expected = expected.finalize();

    let written = blobs
        .put(
            &owner,
            "big.bin",
            "application/octet-stream",
            &WriteCondition::Always,
            &mut noise(size),
            &|_| {},
        )
        .unwrap();
    assert_eq!(written.info.size, size as u64);
    // A multipart ETag ends in the number of parts.
    assert!(written.info.etag.ends_with("-3\""), "{}", written.info.etag);

    let download = blobs.get(&owner, "big.bin", None).unwrap();
    assert_eq!(download.info.size, size as u64);
    assert_eq!(download.info.etag, written.info.etag);
    let mut actual = Sha256::new();
    io::copy(&mut { download.body }, &mut actual).unwrap();
    assert_eq!(actual.finalize(), expected);

    // Exactly one part's worth is still a single PutObject.
    let written = blobs
        .put(
            &owner,
            "one.bin",
            "application/octet-stream",
            &WriteCondition::Always,
            &mut noise(PART_SIZE),
            &|_| {},
        )
        .unwrap();
    assert_eq!(written.info.size, PART_SIZE as u64);
    assert!(!written.info.etag.contains('-'), "{}", written.info.etag);
    // One byte more is two parts.
    let written = blobs
        .put(
            &owner,
            "two.bin",
            "application/octet-stream",
            &WriteCondition::Always,
            &mut noise(PART_SIZE + 1),
            &|_| {},
        )
        .unwrap();
    assert!(written.info.etag.ends_with("-2\""), "{}", written.info.etag);
    assert_eq!(
        blobs.head(&owner, "two.bin").unwrap().size,
        PART_SIZE as u64 + 1
    );
}

#[test]
fn a_failing_body_leaves_nothing_behind() {
    let Some((blobs, owner)) = setup("body-error") else {
        return;
    };
    // Fails after two and a half parts, mid multipart upload.
    let mut failing = noise(2 * PART_SIZE + PART_SIZE / 2).chain(Failing);
    let err = blobs
        .put(
            &owner,
            "broken",
            "text/plain",
            &WriteCondition::Always,
            &mut failing,
            &|_| {},
        )
        .unwrap_err();
    match err {
        BlobError::Body(err) => assert_eq!(err.to_string(), "client went away"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        blobs.head(&owner, "broken"),
        Err(BlobError::NotFound)
    ));
    // And within the first part, before any upload starts.
    let err = blobs
        .put(
            &owner,
            "broken",
            "text/plain",
            &WriteCondition::Always,
            &mut noise(10).chain(Failing),
            &|_| {},
        )
        .unwrap_err();
    assert!(matches!(err, BlobError::Body(_)), "{err:?}");
    assert!(matches!(
        blobs.head(&owner, "broken"),
        Err(BlobError::NotFound)
    ));
}

struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::TimedOut, "client went away"))
    }
}

#[test]
fn ranges() {
    let Some((blobs, owner)) = setup("ranges") else {
        return;
    };
    let bytes: Vec<u8> = (0..100).collect();
    let written = put(&blobs, &owner, "r", &bytes);
    let cases = [
        (
            ByteRange::From {
                first: 10,
                last: Some(19),
            },
            (10, 19),
        ),
        (
            ByteRange::From {
                first: 95,
                last: None,
            },
            (95, 99),
        ),
        (
            ByteRange::From {
                first: 90,
                last: Some(1000),
            },
            (90, 99),
        ),
        (ByteRange::Suffix(5), (95, 99)),
        (ByteRange::Suffix(500), (0, 99)),
    ];
    for (range, (first, last)) in cases {
        let download = blobs.get(&owner, "r", Some(range)).unwrap();
        assert_eq!(download.range, Some((first, last)), "{range:?}");
        assert_eq!(download.info.size, 100);
        assert_eq!(download.info.etag, written.info.etag);
        let expected = &bytes[first as usize..=last as usize];
        assert_eq!(read_all(download), expected, "{range:?}");
    }
    for range in [
        ByteRange::From {
            first: 100,
            last: None,
        },
        ByteRange::From {
            first: 500,
            last: Some(600),
        },
    ] {
        match blobs.get(&owner, "r", Some(range)) {
            Err(BlobError::RangeNotSatisfiable { size }) => assert_eq!(size, 100),
            other => panic!("{range:?}: {:?}", other.map(|d| d.range)),
        }
    }
    assert!(matches!(
        blobs.get(&owner, "missing", Some(ByteRange::Suffix(1))),
        Err(BlobError::NotFound)
    ));
}

#[test]
fn write_conditions() {
    let Some((blobs, owner)) = setup("conditions") else {
        return;
    };
    let first = put_if(&blobs, &owner, "c", &WriteCondition::Absent, b"1").unwrap();
    assert!(first.created);
    assert!(matches!(
        put_if(&blobs, &owner, "c", &WriteCondition::Absent, b"2"),
        Err(BlobError::PreconditionFailed)
    ));
    let wrong = WriteCondition::Matches(vec!["\"nope\"".to_owned()]);
    assert!(matches!(
        put_if(&blobs, &owner, "c", &wrong, b"2"),
        Err(BlobError::PreconditionFailed)
    ));
    let right = WriteCondition::Matches(vec!["\"nope\"".to_owned(), first.info.etag.clone()]);
    let second = put_if(&blobs, &owner, "c", &right, b"2").unwrap();
    assert!(!second.created);
    assert_ne!(second.info.etag, first.info.etag);
    assert!(matches!(
        put_if(&blobs, &owner, "c", &right, b"3"),
        Err(BlobError::PreconditionFailed)
    ));
    let any = WriteCondition::Matches(vec!["*".to_owned()]);
    assert!(matches!(
        put_if(&blobs, &owner, "absent", &any, b"3"),
        Err(BlobError::PreconditionFailed)
    ));
    assert_eq!(read_all(blobs.get(&owner, "c", None).unwrap()), b"2");
}

/// What the store itself does with the conditional headers wren repeats to
/// it. Each write here passes wren's own HEAD check, then a rival write
/// lands while its body is read, so the header reaches the store as it would
/// after a lost race: `If-None-Match: *` on a key that now exists, `If-Match`
/// with an ETag that is no longer current. Stores differ (Garage ignores
/// them); either way they must not break a write.
#[test]
fn the_store_takes_conditional_headers() {
    let Some((blobs, owner)) = setup("store-conditions") else {
        return;
    };
    let current = put(&blobs, &owner, "replaced", b"1");
    let replaced = WriteCondition::Matches(vec![current.info.etag]);
    for (key, condition, size) in [
        ("created", WriteCondition::Absent, 5),
        ("replaced", replaced, 5),
        ("created-in-parts", WriteCondition::Absent, PART_SIZE + 5),
    ] {
        let mut body = Rivalled {
            blobs: &blobs,
            owner: &owner,
            key,
            rival_written: false,
            body: noise(size),
        };
        let result = blobs.put(&owner, key, "text/plain", &condition, &mut body, &|_| {});
        assert!(body.rival_written, "{key}");
        // Whichever write the store kept is there whole.
        let kept = blobs.head(&owner, key).unwrap().size;
        match result {
            Ok(_) => {
                eprintln!("the store ignored {condition:?} ({size} bytes)");
                assert_eq!(kept, size as u64, "{key}");
            }
            Err(BlobError::PreconditionFailed) => {
                eprintln!("the store enforced {condition:?} ({size} bytes)");
                assert_eq!(kept, RIVAL.len() as u64, "{key}");
            }
            Err(other) => panic!("{condition:?}, {size} bytes: {other:?}"),
        }
    }
}

/// What the rival of a [`Rivalled`] body writes.
const RIVAL: &[u8] = b"the rival's";

/// A body whose first read lets a rival write its key first.
struct Rivalled<'a> {
    blobs: &'a S3Blobs,
    owner: &'a Owner,
    key: &'a str,
    rival_written: bool,
    body: Noise,
}

impl Read for Rivalled<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.rival_written {
            self.rival_written = true;
            put(self.blobs, self.owner, self.key, RIVAL);
        }
        self.body.read(buf)
    }
}

#[test]
fn delete_then_gone() {
    let Some((blobs, owner)) = setup("delete") else {
        return;
    };
    put(&blobs, &owner, "d/x", b"x");
    blobs.delete(&owner, "d/x", &|_| {}).unwrap();
    assert!(matches!(
        blobs.head(&owner, "d/x"),
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        blobs.get(&owner, "d/x", None),
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        blobs.delete(&owner, "d/x", &|_| {}),
        Err(BlobError::NotFound)
    ));
    assert!(blobs.list(&owner, "", None, 10).unwrap().objects.is_empty());
}

/// Each write and delete the store takes is recorded (the object's size
/// and the account's usage) and settled, in order; a write the store
/// refused is neither. A record the store no longer backs (an object
/// deleted behind this backend's back, as a crash between a delete and its
/// record would leave) goes when the key is deleted.
#[test]
fn the_size_record_follows_the_store() {
    let Some(config) = config("record") else {
        return;
    };
    let folder = record_folder("record");
    let blobs = S3Blobs::new(&config, &folder).unwrap();
    let owner = Owner {
        namespace: "ann".to_owned(),
        credentials: None,
    };
    let settled = std::sync::Mutex::new(Vec::new());
    let settle = |size: Option<u64>| settled.lock().unwrap().push(size);
    let write = |key: &str, body: &mut dyn Read, condition: &WriteCondition| {
        blobs.put(&owner, key, "text/plain", condition, body, &settle)
    };
    write("a", &mut &[1u8; 10][..], &WriteCondition::Always).unwrap();
    write("big", &mut noise(PART_SIZE + 5), &WriteCondition::Always).unwrap();
    write("a", &mut &[2u8; 3][..], &WriteCondition::Always).unwrap();
    let refused = write("a", &mut &[3u8; 50][..], &WriteCondition::Absent);
    assert!(
        matches!(refused, Err(BlobError::PreconditionFailed)),
        "{refused:?}"
    );
    let usage = |blobs: &S3Blobs| {
        let usage = blobs.usage("ann").unwrap();
        (usage.bytes, usage.files)
    };
    assert_eq!(usage(&blobs), (PART_SIZE as u64 + 8, 2));
    assert_eq!(blobs.recorded_size("ann", "a").unwrap(), Some(3));
    blobs.delete(&owner, "big", &settle).unwrap();
    assert_eq!(usage(&blobs), (3, 1));

    // Another backend (its own record) deletes "a" from the store.
    let other = S3Blobs::new(&config, &record_folder("record-other")).unwrap();
    other.delete(&owner, "a", &|_| {}).unwrap();
    assert_eq!(usage(&blobs), (3, 1));
    assert!(matches!(
        blobs.delete(&owner, "a", &settle),
        Err(BlobError::NotFound)
    ));
    assert_eq!(usage(&blobs), (0, 0));
    write("c", &mut &[4u8; 7][..], &WriteCondition::Always).unwrap();
    assert_eq!(
        *settled.lock().unwrap(),
        [
            Some(10),
            Some(PART_SIZE as u64 + 5),
            Some(3),
            None,
            None,
            Some(7)
        ]
    );
    // The record is durable.
    drop(blobs);
    let reopened = S3Blobs::new(&config, &folder).unwrap();
    assert_eq!(usage(&reopened), (7, 1));
}

#[test]
fn listing_pages() {
    let Some((blobs, owner)) = setup("list") else {
        return;
    };
    for key in ["a/1", "a/2", "a/3", "a/4", "a/5", "b/1", "a0"] {
        put(&blobs, &owner, key, key.as_bytes());
    }
    // Another account's files never show.
    let other = Owner {
        namespace: "an".to_owned(),
        credentials: None,
    };
    put(&blobs, &other, "n/1", b"x");

    let page = blobs.list(&owner, "a/", None, 2).unwrap();
    assert_eq!(keys(&page), ["a/1", "a/2"]);
    assert!(page.truncated);
    assert_eq!(page.objects[0].content_type, "text/plain");
    assert_eq!(page.objects[0].size, 3);
    let page = blobs.list(&owner, "a/", Some("a/2"), 2).unwrap();
    assert_eq!(keys(&page), ["a/3", "a/4"]);
    assert!(page.truncated);
    let page = blobs.list(&owner, "a/", Some("a/4"), 2).unwrap();
    assert_eq!(keys(&page), ["a/5"]);
    assert!(!page.truncated);
    let page = blobs.list(&owner, "", None, 100).unwrap();
    assert_eq!(
        keys(&page),
        ["a/1", "a/2", "a/3", "a/4", "a/5", "a0", "b/1"]
    );
    assert!(!page.truncated);
    let page = blobs.list(&owner, "", Some("a0"), 100).unwrap();
    assert_eq!(keys(&page), ["b/1"]);
    let page = blobs.list(&owner, "", None, 0).unwrap();
    assert!(page.objects.is_empty() && page.truncated);
    let page = blobs.list(&owner, "zzz", None, 0).unwrap();
    assert!(page.objects.is_empty() && !page.truncated);
    assert_eq!(keys(&blobs.list(&other, "", None, 10).unwrap()), ["n/1"]);

    // Pages longer than the HEADs in flight keep their order.
    let many: Vec<String> = (0..30).map(|n| format!("c/{n:02}")).collect();
    for key in &many {
        put(&blobs, &owner, key, b"c");
    }
    let page = blobs.list(&owner, "c/", None, 1000).unwrap();
    assert_eq!(keys(&page), many);
    assert!(!page.truncated);
}

/// Asserts that the store refuses an account's `credentials` as the
/// account's problem, both when they are checked and on a write, with a
/// reason for the account that does not name the store's address; the
/// account with them, for more.
fn assert_refused(blobs: &S3Blobs, credentials: UserCredentials) -> Owner {
    match blobs.check_credentials(&credentials) {
        Err(BlobError::Credentials { reason, detail }) => {
            eprintln!("refused: {reason} (logged: {detail})");
            // Only tests with a configured store get here.
            let endpoint = var("S3_ENDPOINT").expect("S3_ENDPOINT");
            let address = endpoint.rsplit("://").next().unwrap_or(&endpoint);
            assert!(!reason.contains(address), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let owner = Owner {
        namespace: "ann".to_owned(),
        credentials: Some(credentials),
    };
    let err = put_if(blobs, &owner, "k", &WriteCondition::Always, b"x").unwrap_err();
    assert!(matches!(err, BlobError::Credentials { .. }), "{err:?}");
    owner
}

#[test]
fn refused_credentials() {
    let Some(config) = config("refused") else {
        return;
    };
    let blobs = S3Blobs::new(&config, &record_folder("credentials")).unwrap();
    let key_id = config.access_key_id.clone().unwrap();
    let wrong_secret = UserCredentials {
        access_key_id: key_id,
        secret_access_key: "0".repeat(64),
        bucket: None,
    };
    let unknown_key = UserCredentials {
        access_key_id: "GK000000000000000000000000".to_owned(),
        secret_access_key: "0".repeat(64),
        bucket: None,
    };
    for credentials in [wrong_secret, unknown_key] {
        let owner = assert_refused(&blobs, credentials);
        let err = blobs.get(&owner, "k", None).err();
        assert!(
            matches!(err, Some(BlobError::Credentials { .. })),
            "{err:?}"
        );
        let err = blobs.list(&owner, "", None, 10).unwrap_err();
        assert!(matches!(err, BlobError::Credentials { .. }), "{err:?}");
    }

    // The server's own keys refused are the server's problem.
    let mut broken = config.clone();
    broken.secret_access_key = Some("0".repeat(64));
    let broken = S3Blobs::new(&broken, &record_folder("broken")).unwrap();
    let owner = Owner {
        namespace: "ann".to_owned(),
        credentials: None,
    };
    let err = put_if(&broken, &owner, "k", &WriteCondition::Always, b"x").unwrap_err();
    assert!(matches!(err, BlobError::Upstream(_)), "{err:?}");

    // A store that cannot be reached is not the account's fault.
    let mut away = config;
    away.endpoint = "http://127.0.0.1:9".to_owned();
    let away = S3Blobs::new(&away, &record_folder("away")).unwrap();
    let err = away
        .check_credentials(&UserCredentials {
            access_key_id: "id".to_owned(),
            secret_access_key: "secret".to_owned(),
            bucket: Some("b".to_owned()),
        })
        .unwrap_err();
    assert!(matches!(err, BlobError::Upstream(_)), "{err:?}");
}

#[test]
fn accounts_with_their_own_keys() {
    let Some((blobs, server_owner)) = setup("own-keys") else {
        return;
    };
    let (Some(key_id), Some(secret)) = (
        var("WREN_TEST_USER_KEY_ID"),
        var("WREN_TEST_USER_KEY_SECRET"),
    ) else {
        skip("accounts_with_their_own_keys", "WREN_TEST_USER_KEY_ID");
        return;
    };
    let bucket = var("WREN_TEST_USER_BUCKET");
    let credentials = UserCredentials {
        access_key_id: key_id,
        secret_access_key: secret,
        bucket: bucket.clone(),
    };
    blobs.check_credentials(&credentials).unwrap();
    let owner = Owner {
        namespace: "ann".to_owned(),
        credentials: Some(credentials.clone()),
    };
    let written = put(&blobs, &owner, "mine.txt", b"own keys");
    assert!(written.created);
    assert_eq!(
        read_all(blobs.get(&owner, "mine.txt", None).unwrap()),
        b"own keys"
    );
    assert_eq!(
        keys(&blobs.list(&owner, "", None, 10).unwrap()),
        ["mine.txt"]
    );
    let server_bucket = var("S3_BUCKET").unwrap_or_default();
    let expected = bucket.clone().unwrap_or_else(|| server_bucket.clone());
    assert!(
        blobs
            .location(&owner, "mine.txt")
            .starts_with(&format!("s3://{expected}/"))
    );

    // Missing bucket: refused, with the store's reason.
    let mut nowhere = credentials.clone();
    nowhere.bucket = Some("no-such-bucket-for-wren".to_owned());
    assert_refused(&blobs, nowhere);

    if bucket.as_ref().is_some_and(|own| *own != server_bucket) {
        // The account's bucket is not the server's.
        assert!(matches!(
            blobs.head(&server_owner, "mine.txt"),
            Err(BlobError::NotFound)
        ));
        // Keys allowed only on their own bucket, used without naming
        // it, land on the server's bucket and are refused there.
        let mut unnamed = credentials;
        unnamed.bucket = None;
        assert_refused(&blobs, unnamed);
    }
}
