//! Users, sessions and refresh tokens as stored and served.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stored user (`USER#{id}` / `PROFILE`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub id: String,
    pub email: String,
    /// Lower-cased email: the uniqueness key.
    pub email_key: String,
    pub username: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub password_hash: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// What clients see of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub bio: Option<String>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UserRecord> for Profile {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            avatar_url: u.avatar_url.clone(),
            bio: u.bio.clone(),
            version: u.version,
            created_at: u.created_at.clone(),
            updated_at: u.updated_at.clone(),
        }
    }
}

/// Email marker (`EMAIL#{email_key}` / `EMAIL`): makes emails unique case-insensitively.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmailMarker {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub user_id: String,
}

/// A refresh token (`REFRESH#{sha256}` / `REFRESH`). Single use: `used` flips once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub user_id: String,
    pub session_id: String,
    pub used: bool,
    pub expires_at: u64,
    pub ttl: u64,
}
