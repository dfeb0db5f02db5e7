//! Key layout of the main table (see docs/data-model.md). Every key is built here.

use crate::storage::Key;

pub const USER_PROFILE_SK: &str = "PROFILE";
pub const SESSION_PREFIX: &str = "SESSION#";

pub fn user(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), USER_PROFILE_SK)
}

/// Uniqueness marker of an email (lower-cased).
pub fn email(email_key: &str) -> Key {
    Key::new(format!("EMAIL#{email_key}"), "EMAIL")
}

pub fn session(user_id: &str, session_id: &str) -> Key {
    Key::new(
        format!("USER#{user_id}"),
        format!("{SESSION_PREFIX}{session_id}"),
    )
}

pub fn user_partition(user_id: &str) -> String {
    format!("USER#{user_id}")
}

/// A refresh token, keyed by its SHA-256.
pub fn refresh_token(token_hash: &str) -> Key {
    Key::new(format!("REFRESH#{token_hash}"), "REFRESH")
}
