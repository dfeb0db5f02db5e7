//! Who is calling, and the session their token belongs to.

use serde::{Deserialize, Serialize};

use super::token::TokenProof;

/// Who is calling: from a verified access token (JWT) or a presented API token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    /// The login session of a JWT; empty for an API token (no session item has that key,
    /// so any path that reads a session for a token principal refuses it).
    pub session_id: String,
    /// An API token's proof: authorization reads the token item instead of the session.
    pub token: Option<TokenProof>,
}

impl Principal {
    /// A caller signed in with a session (JWT).
    pub fn session(user_id: impl Into<String>, session_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            session_id: session_id.into(),
            token: None,
        }
    }

    /// A caller presenting an API token.
    pub fn api_token(user_id: impl Into<String>, proof: TokenProof) -> Self {
        Self {
            user_id: user_id.into(),
            session_id: String::new(),
            token: Some(proof),
        }
    }

    pub fn is_api_token(&self) -> bool {
        self.token.is_some()
    }
}

/// A login session (`USER#{id}` / `SESSION#{sid}`): the family of its refresh tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub user_id: String,
    pub session_id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: u64,
    pub ttl: u64,
}
