//! The server secret: the key that signs tokens and from which the key that
//! seals users' S3 credentials is derived.
//!
//! `WREN_SECRET` when set (several instances behind one balancer must share
//! it), otherwise `<data-dir>/secret`, created at first start from the OS
//! random source with mode 0600.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The secret's file in the data folder.
pub const SECRET_FILE: &str = "secret";

/// Returns the secret from `from_env`, or the one kept in `data_dir`
/// (creating it on first start).
pub fn load(from_env: Option<&str>, data_dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(secret) = from_env {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "WREN_SECRET must be at least {MIN_SECRET_BYTES} bytes long"
            ));
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => check(text.trim(), &path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(data_dir, &path),
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}

fn check(text: &str, path: &Path) -> Result<Vec<u8>, String> {
    if text.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{} holds fewer than {MIN_SECRET_BYTES} bytes; delete it to have a new one made",
            path.display()
        ));
    }
    Ok(text.as_bytes().to_vec())
}

/// Writes 32 random bytes, hex-encoded, to a private temporary file and
/// links it into place, so that a crash never leaves a partial secret and
/// two instances starting at once agree on one.
fn create(data_dir: &Path, path: &Path) -> Result<Vec<u8>, String> {
    let mut random = [0u8; 32];
    getrandom::getrandom(&mut random).map_err(|err| format!("no OS randomness: {err}"))?;
    let text: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let temp = data_dir.join(format!(".secret.{}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    let linked = written.and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(text.into_bytes()),
        // Another instance made one first: use that.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(path)
                .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            check(text.trim(), path)
        }
        Err(err) => Err(format!("cannot create {}: {err}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wren-secret-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn made_once_private_and_kept() {
        let dir = temp_dir("made");
        let first = load(None, &dir).unwrap();
        assert_eq!(first.len(), 64);
        let mode = fs::metadata(dir.join("secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(None, &dir).unwrap(), first);
        assert_ne!(load(None, &temp_dir("other")).unwrap(), first);
    }

    #[test]
    fn the_environment_wins_and_must_be_long_enough() {
        let dir = temp_dir("env");
        let secret = "x".repeat(MIN_SECRET_BYTES);
        assert_eq!(load(Some(&secret), &dir).unwrap(), secret.as_bytes());
        assert!(!dir.join("secret").exists());
        assert!(
            load(Some("short"), &dir)
                .unwrap_err()
                .contains("WREN_SECRET")
        );
    }

    #[test]
    fn a_truncated_secret_file_is_refused() {
        let dir = temp_dir("short");
        fs::write(dir.join("secret"), "abc").unwrap();
        assert!(load(None, &dir).unwrap_err().contains("delete it"));
    }
}
