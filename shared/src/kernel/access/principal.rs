//! Who is calling, and the session their token belongs to.

use serde::{Deserialize, Serialize};

/// Who is calling: from a verified access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
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
