//! Account roles. Every sign-up is a `user`; `admin` accounts come from
//! `--admin` at start. The role is stored with the account and carried in
//! its tokens; the guard compares the two on every request, so a token
//! outlives no change of role.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Its own files, and whatever open routes anyone may call.
    #[default]
    User,
    /// Also every user's alert profile and history, the events of a
    /// protected server, and every API key.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::default(), Role::User);
    }
}
