//! Accounts and authentication: password hashing (in a bounded pool),
//! tokens, roles, API keys, the server secret, the username rule, and the
//! limits on failed logins and on sign-ups. (The HTTP side, credentials
//! from headers and cookies and who may call which route, is
//! `handlers::session`.)

pub mod keys;
pub mod limiter;
pub mod password;
pub mod recent;
mod role;
pub mod seal;
pub mod secret;
pub mod tokens;

pub use keys::Scope;
pub use role::Role;

/// The longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// The username rule, for sign-up and for `--user` accounts alike: 1 to 64
/// letters, digits, `.`, `_` and `-`. The error is the rule broken.
pub fn check_username(name: &str) -> Result<(), &'static str> {
    let count = name.chars().count();
    if count > MAX_USERNAME_CHARS {
        return Err("must be at most 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err("may hold only letters, digits, '.', '_' and '-'");
    }
    // The name is also the account's folder and key prefix for its files:
    // `.` and `..` must never be one.
    if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err("must hold at least one letter or digit");
    }
    Ok(())
}
