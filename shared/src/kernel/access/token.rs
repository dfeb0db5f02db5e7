//! Personal API tokens as credentials: their format, their stored record, and the rules an
//! authorization applies to them (scope, workspace restriction, expiry, a workspace's block).
//! Creating, listing and revoking them is the `tokens` area; checking them is here, next to
//! the session check, because both run in the same authorization batch.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::role::Action;
use crate::error::{AppError, AppResult};
use crate::kernel::keys;
use crate::kernel::record::from_item;
use crate::storage::Item;

/// Every API token starts with this, so secret scanners can recognise a leaked one.
pub const TOKEN_PREFIX: &str = "mtm_pat_";

/// Random bytes of a token's secret part (256 bits).
const SECRET_BYTES: usize = 32;

pub const TOKEN_REVOKED: &str = "API token expired or revoked";

/// What a token may do. `write` implies `read` (a token is created with both then).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Everything `Action::Read` allows.
    Read,
    /// Every other action (create, change, delete, manage), within the user's role.
    Write,
}

impl TokenScope {
    /// The scope an action needs: the one place the read/write split is decided, so every
    /// route and command that authorizes an `Action` obeys it.
    pub fn needed_for(action: Action) -> Self {
        match action {
            Action::Read => TokenScope::Read,
            Action::Contribute | Action::Manage | Action::Configure | Action::Own => {
                TokenScope::Write
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
        }
    }
}

/// What a presented token proves before anything is read: whose token it claims to be,
/// which one, and the hash the stored record must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenProof {
    pub token_id: String,
    /// SHA-256 (hex) of the whole token string.
    pub hash: String,
}

/// A stored API token (`USER#{user}` / `TOKEN#{id}`). Holds the hash, never the token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// SHA-256 (hex) of the token.
    pub hash: String,
    /// What the token shows of itself in lists: `mtm_pat_` and the first 8 characters of
    /// its id.
    pub prefix: String,
    pub scopes: Vec<TokenScope>,
    /// The one workspace the token may act in, if restricted.
    pub workspace_id: Option<String>,
    pub created_at: String,
    /// Epoch seconds; none: never expires.
    pub expires_at: Option<u64>,
    pub last_used_at: Option<String>,
    /// Epoch seconds of `last_used_at` (what the at-most-hourly refresh compares).
    #[serde(default)]
    pub last_used_epoch: Option<u64>,
    /// `expires_at` when set (DynamoDB deletes expired tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

impl ApiTokenRecord {
    pub fn allows(&self, scope: TokenScope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A token's index item in a workspace (`WS#{ws}` / `TOKEN#{id}`): lists the tokens acting
/// there for its admins. Written with the token when it is restricted to the workspace, and
/// on an unrestricted token's first use there. `blocked`: an admin revoked the token for
/// this workspace (an unrestricted token keeps working elsewhere).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkspaceTokenRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub token_id: String,
    pub user_id: String,
    pub workspace_id: String,
    pub restricted: bool,
    pub blocked: bool,
    pub first_used_at: Option<String>,
}

impl WorkspaceTokenRecord {
    /// The index item of `token` in `workspace_id`; `first_used_at` for an unrestricted
    /// token registered by its first use there.
    pub fn new(token: &ApiTokenRecord, workspace_id: &str, first_used_at: Option<String>) -> Self {
        let key = keys::workspace_token(workspace_id, &token.id);
        Self {
            pk: key.pk,
            sk: key.sk,
            entity: "api_token_index".into(),
            token_id: token.id.clone(),
            user_id: token.user_id.clone(),
            workspace_id: workspace_id.to_owned(),
            restricted: token.workspace_id.as_deref() == Some(workspace_id),
            blocked: false,
            first_used_at,
        }
    }
}

/// A new token string for `user_id`'s token `token_id`:
/// `mtm_pat_{token id: 32 hex}_{user id: 32 hex}_{secret: 64 hex}`. The ids ride in the
/// token so the authorization batch can name the token item and the membership without a
/// lookup first; the 256 secret bits are what proves possession.
pub fn new_token(token_id: &str, user_id: &uuid::Uuid) -> String {
    use rand::RngCore;
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    format!(
        "{TOKEN_PREFIX}{token_id}_{}_{}",
        user_id.simple(),
        hex(&secret)
    )
}

/// A new token id: 128 random bits, 32 hex characters.
pub fn new_token_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `id` has the shape of a token id (a wrong shape names nothing: 404).
pub fn is_token_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a bearer credential is an API token rather than a JWT.
pub fn is_api_token(bearer: &str) -> bool {
    bearer.starts_with(TOKEN_PREFIX)
}

/// Reads the user id and proof out of a presented token; `None` when it is malformed.
pub fn parse_token(token: &str) -> Option<(String, TokenProof)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let mut parts = rest.split('_');
    let (id, user, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_token_id(id) || secret.len() != SECRET_BYTES * 2 {
        return None;
    }
    let user = uuid::Uuid::try_parse(user).ok()?;
    Some((
        user.hyphenated().to_string(),
        TokenProof {
            token_id: id.to_owned(),
            hash: token_hash(token),
        },
    ))
}

/// What lists show of a token: its prefix and the start of its id.
pub fn display_prefix(token_id: &str) -> String {
    format!("{TOKEN_PREFIX}{}", &token_id[..8.min(token_id.len())])
}

/// SHA-256 (hex) of a token: enough for 256 random bits (no salt or slow hash needed).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so timing says nothing about how much matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Errs (401) unless `item` is the live token `proof` names; returns its record.
pub fn check_token(item: Option<Item>, proof: &TokenProof, now: u64) -> AppResult<ApiTokenRecord> {
    let record: ApiTokenRecord = item
        .map(from_item)
        .transpose()?
        .ok_or_else(|| AppError::unauthorized(TOKEN_REVOKED))?;
    if !same(&record.hash, &proof.hash) || record.id != proof.token_id {
        return Err(AppError::unauthorized(TOKEN_REVOKED));
    }
    if record.expires_at.is_some_and(|at| at <= now) {
        return Err(AppError::unauthorized(TOKEN_REVOKED));
    }
    Ok(record)
}

/// Errs (403) unless the token's scopes cover `action`.
pub fn require_scope(record: &ApiTokenRecord, action: Action) -> AppResult<()> {
    let needed = TokenScope::needed_for(action);
    if record.allows(needed) {
        Ok(())
    } else {
        Err(AppError::forbidden(format!(
            "this API token lacks the {} scope",
            needed.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_parses_back_to_its_ids_and_hash() {
        let user = uuid::Uuid::now_v7();
        let id = new_token_id();
        let token = new_token(&id, &user);
        assert!(token.starts_with("mtm_pat_"));
        let (u, proof) = parse_token(&token).unwrap();
        assert_eq!(u, user.to_string());
        assert_eq!(proof.token_id, id);
        assert_eq!(proof.hash, token_hash(&token));
        assert_ne!(new_token(&id, &user), token, "secrets are random");
        for bad in [
            "mtm_pat_",
            &token[..token.len() - 1],
            &format!("{token}_x"),
            &token.replacen("mtm_pat_", "mtm_xxx_", 1),
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reads_need_read_and_everything_else_write() {
        assert_eq!(TokenScope::needed_for(Action::Read), TokenScope::Read);
        for a in [
            Action::Contribute,
            Action::Manage,
            Action::Configure,
            Action::Own,
        ] {
            assert_eq!(TokenScope::needed_for(a), TokenScope::Write);
        }
    }
}
