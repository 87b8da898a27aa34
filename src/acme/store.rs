//! The ACME folder (`<data-dir>/acme`): the account key, and the
//! certificate being served with its key.
//!
//! - `account.key`: the account's PKCS#8 PEM key, made once and kept: the
//!   CA knows the account by it.
//! - `certificate.pem`: the chain, leaf first, as the CA sent it.
//! - `certificate.key`: the certificate's PKCS#8 PEM key.
//!
//! The folder is 0700 and each file 0600 (they hold private keys). Every
//! file is written whole or not at all: a temporary file in the same
//! folder, fsynced, renamed over the old one, and the folder fsynced. The
//! certificate and its key are two files, so a crash between the two
//! renames can pair a new key with the old chain; reading checks that the
//! leaf's public key is the key's, and a mismatched pair counts as no
//! certificate (a new one is ordered).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use super::certs::{CertificateInfo, CertificateKey, read_certificate};
use super::error::{AcmeError, Step};
use super::jws::AccountKey;
use super::pem;

pub const ACCOUNT_KEY_FILE: &str = "account.key";
pub const CERTIFICATE_FILE: &str = "certificate.pem";
pub const CERTIFICATE_KEY_FILE: &str = "certificate.key";

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// A certificate kept in the folder, with its key and what it says.
pub(super) struct Stored {
    pub(super) chain_pem: String,
    pub(super) key_pem: String,
    pub(super) leaf: CertificateInfo,
}

/// Creates the folder (and its parents) if missing, and holds it to 0700.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Writes `name` in `dir` whole or not at all (see the module doc).
fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    ensure_dir(dir)?;
    let temporary = dir.join(format!(".{name}.{}.tmp", fastrand::u64(..)));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    // The rename is durable once the folder's entry is.
    File::open(dir)?.sync_all()
}

/// The file's contents, or `None` when there is no such file.
fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(contents) => Ok(Some(contents)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The account key in `dir`, made and stored first if there is none. A
/// key file that cannot be read is an error, never replaced: the account
/// lives on that key.
pub(super) fn account_key(dir: &Path) -> Result<AccountKey, AcmeError> {
    let path = dir.join(ACCOUNT_KEY_FILE);
    let failed = |reason: String| AcmeError::new(Step::Setup, reason);
    let stored = read_if_present(&path)
        .map_err(|err| failed(format!("cannot read {}: {err}", path.display())))?;
    if let Some(text) = stored {
        return pem::private_key(&text)
            .and_then(|pkcs8| AccountKey::from_pkcs8(&pkcs8))
            .map_err(|reason| failed(format!("{}: {reason}", path.display())));
    }
    let (key, pkcs8) = AccountKey::generate().map_err(failed)?;
    write_atomically(
        dir,
        ACCOUNT_KEY_FILE,
        pem::encode(pem::PRIVATE_KEY, &pkcs8).as_bytes(),
    )
    .map_err(|err| failed(format!("cannot write {}: {err}", path.display())))?;
    Ok(key)
}

/// The stored certificate: `Ok(None)` when there is none, an error when
/// one is there but cannot serve (unreadable, or not for its key).
pub(super) fn load_certificate(dir: &Path) -> Result<Option<Stored>, AcmeError> {
    let chain_path = dir.join(CERTIFICATE_FILE);
    let key_path = dir.join(CERTIFICATE_KEY_FILE);
    let unusable = |path: &Path, reason: String| {
        AcmeError::new(
            Step::Setup,
            format!(
                "the stored certificate cannot be used: {}: {reason}",
                path.display()
            ),
        )
    };
    let read = |path: &Path| read_if_present(path).map_err(|err| unusable(path, err.to_string()));
    let (Some(chain), Some(key)) = (read(&chain_path)?, read(&key_path)?) else {
        return Ok(None);
    };
    let chain_pem =
        String::from_utf8(chain).map_err(|_| unusable(&chain_path, "not text".into()))?;
    let key_pem = String::from_utf8(key).map_err(|_| unusable(&key_path, "not text".into()))?;
    let leaf = pem::certificates(chain_pem.as_bytes())
        .and_then(|certificates| {
            read_certificate(&certificates[0]).ok_or_else(|| "not an X.509 certificate".to_owned())
        })
        .map_err(|reason| unusable(&chain_path, reason))?;
    let key = pem::private_key(key_pem.as_bytes())
        .and_then(|pkcs8| CertificateKey::from_pkcs8(&pkcs8))
        .map_err(|reason| unusable(&key_path, reason))?;
    if key.public_key() != leaf.public_key {
        return Err(unusable(&key_path, "not the certificate's key".into()));
    }
    Ok(Some(Stored {
        chain_pem,
        key_pem,
        leaf,
    }))
}

/// Keeps a new certificate and its key, the key first (see the module doc).
pub(super) fn save_certificate(
    dir: &Path,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(), AcmeError> {
    for (name, contents) in [
        (CERTIFICATE_KEY_FILE, key_pem),
        (CERTIFICATE_FILE, chain_pem),
    ] {
        write_atomically(dir, name, contents.as_bytes()).map_err(|err| {
            AcmeError::new(
                Step::Store,
                format!("cannot write {}: {err}", dir.join(name).display()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::acme::certs::challenge_certificate;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wren-acme-store-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_account_key_is_made_once_private_and_reused() {
        let dir = temp_dir("account").join("acme");
        let first = account_key(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&dir.join(ACCOUNT_KEY_FILE)), FILE_MODE);
        let again = account_key(&dir).unwrap();
        assert_eq!(first.jwk(), again.jwk());
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");

        fs::write(dir.join(ACCOUNT_KEY_FILE), "garbage").unwrap();
        let error = account_key(&dir).err().unwrap();
        assert!(error.to_string().contains(ACCOUNT_KEY_FILE), "{error}");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_stored_certificate_is_read_back_only_with_its_own_key() {
        let dir = temp_dir("certificate");
        assert!(load_certificate(&dir).unwrap().is_none());
        let key = CertificateKey::generate().unwrap();
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let der = challenge_certificate("a.example", "t.k", &key, now).unwrap();
        let chain_pem = pem::encode(pem::CERTIFICATE, &der);
        let key_pem = pem::encode(pem::PRIVATE_KEY, key.pkcs8());
        save_certificate(&dir, &chain_pem, &key_pem).unwrap();
        assert_eq!(mode(&dir.join(CERTIFICATE_FILE)), FILE_MODE);
        assert_eq!(mode(&dir.join(CERTIFICATE_KEY_FILE)), FILE_MODE);

        let stored = load_certificate(&dir).unwrap().unwrap();
        assert_eq!(stored.chain_pem, chain_pem);
        assert_eq!(stored.key_pem, key_pem);
        assert_eq!(stored.leaf.names, ["a.example"]);
        assert!(stored.leaf.not_after > now);

        let other = CertificateKey::generate().unwrap();
        let other_pem = pem::encode(pem::PRIVATE_KEY, other.pkcs8());
        write_atomically(&dir, CERTIFICATE_KEY_FILE, other_pem.as_bytes()).unwrap();
        let error = load_certificate(&dir).err().unwrap();
        assert!(
            error.to_string().contains("not the certificate's key"),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
