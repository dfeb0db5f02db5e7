//! API tokens as requested and served. The token string appears once, in `CreatedApiToken`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::access::{ApiTokenRecord, TokenScope, WorkspaceTokenRecord};

/// Longest lifetime a token may be given, in days (ten years).
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// Tokens one user may hold at once (bounds the owner's list and what a leaked session
/// can mint).
pub const MAX_TOKENS_PER_USER: usize = 50;

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `read`, `write` or both; `write` implies `read`.
    #[schema(min_items = 1)]
    pub scopes: Vec<TokenScope>,
    /// Restricts the token to this workspace (the caller must be a member).
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Days until the token expires; absent: it never does.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// A token as its owner sees it: never the secret, only its prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    /// 32 hex characters.
    pub id: String,
    pub name: String,
    /// The token's first characters (`mtm_pat_` and 8 of its id), to recognise it.
    pub prefix: String,
    pub scopes: Vec<TokenScope>,
    pub workspace_id: Option<String>,
    pub created_at: String,
    /// Updated at most once an hour.
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

impl From<&ApiTokenRecord> for ApiToken {
    fn from(r: &ApiTokenRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            prefix: r.prefix.clone(),
            scopes: r.scopes.clone(),
            workspace_id: r.workspace_id.clone(),
            created_at: r.created_at.clone(),
            last_used_at: r.last_used_at.clone(),
            expires_at: r.expires_at.map(rfc3339),
        }
    }
}

/// The answer to a create: the token itself, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiToken {
    #[serde(flatten)]
    pub info: ApiToken,
    /// The bearer credential (`mtm_pat_...`). Not stored and never shown again.
    pub token: String,
}

/// A token acting in a workspace, as its admins see it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceApiToken {
    #[serde(flatten)]
    pub info: ApiToken,
    /// The owner.
    pub user_id: String,
    /// Restricted to this workspace (otherwise: an owner's unrestricted token that was used
    /// here).
    pub restricted: bool,
    /// Revoked for this workspace by an admin (an unrestricted token still works elsewhere).
    pub blocked: bool,
}

impl WorkspaceApiToken {
    pub fn of(token: &ApiTokenRecord, index: &WorkspaceTokenRecord) -> Self {
        Self {
            info: ApiToken::from(token),
            user_id: token.user_id.clone(),
            restricted: index.restricted,
            blocked: index.blocked,
        }
    }
}

/// What a revocation did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedApiToken {
    pub id: String,
    /// The token was deleted (it works nowhere); otherwise it is blocked in one workspace.
    pub deleted: bool,
}

fn rfc3339(epoch: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
