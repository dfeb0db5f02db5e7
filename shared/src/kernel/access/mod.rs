//! Who may touch a workspace: one batch read of the caller's session, their membership and
//! whatever else the request needs. A non-member sees the workspace as absent (404), never
//! its data.

mod member;
mod principal;
mod role;
mod token;
mod visibility;

pub use member::{Member, Membership};
pub use principal::{Principal, SessionRecord};
pub use role::{Action, Role};
pub use token::{
    ApiTokenRecord, TOKEN_PREFIX, TOKEN_REVOKED, TokenProof, TokenScope, WorkspaceTokenRecord,
    check_token, display_prefix, is_api_token, is_token_id, new_token, new_token_id, parse_token,
    token_hash,
};
pub use visibility::{Audience, EntityType};

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{AppError, AppResult};
use crate::kernel::keys;
use serde::de::DeserializeOwned;

use crate::kernel::ids::Kind;
use crate::kernel::record::{from_item, to_item};
use crate::storage::{Condition, Item, Key, Store, Table, Update, WriteOp};

/// The caller inside one workspace.
#[derive(Clone, Debug)]
pub struct Scope {
    pub workspace_id: String,
    pub user_id: String,
    pub role: Role,
    pub member: Member,
}

impl Scope {
    pub fn require(&self, action: Action) -> AppResult<()> {
        self.role.require(action)
    }
}

/// What `Access::load` read: the caller's scope, the record, and the extra items.
#[derive(Debug)]
pub struct Loaded<T> {
    pub scope: Scope,
    pub record: T,
    pub extra: Vec<Option<Item>>,
}

pub const SESSION_REVOKED: &str = "session expired or revoked; log in again";

/// Errs unless the session item exists and has not expired.
pub fn check_session(item: Option<Item>, now: u64) -> AppResult<()> {
    let session: SessionRecord = item
        .map(from_item)
        .transpose()?
        .ok_or_else(|| AppError::unauthorized(SESSION_REVOKED))?;
    if session.expires_at <= now {
        return Err(AppError::unauthorized(SESSION_REVOKED));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Access {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Access {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Reads the credential (session, or API token and its index item in the workspace),
    /// membership and `extra` keys in one call. Errs with 401 for a dead session or token,
    /// 404 (`not_found`) when the caller is not a member (or the token is restricted to
    /// another workspace), 403 when the role or the token's scopes do not allow `action` or
    /// an admin revoked the token in this workspace. Returns the scope and the extra items,
    /// aligned with `extra`.
    pub async fn authorize(
        &self,
        who: &Principal,
        workspace_id: &str,
        action: Action,
        not_found: &str,
        extra: &[Key],
    ) -> AppResult<(Scope, Vec<Option<Item>>)> {
        let mut keys = Vec::with_capacity(extra.len() + 3);
        keys.push(credential_key(who));
        keys.push(keys::member(workspace_id, &who.user_id));
        if let Some(proof) = &who.token {
            keys.push(keys::workspace_token(workspace_id, &proof.token_id));
        }
        let fixed = keys.len();
        keys.extend_from_slice(extra);
        let mut items = self.store.batch_get(Table::Main, &keys).await?;
        let rest = items.split_off(fixed);
        let mut fixed = items.into_iter();
        let credential = fixed.next().flatten();
        let member = fixed.next().flatten();
        let index = fixed.next().flatten();
        let now = self.clock.epoch_secs();
        let token = match &who.token {
            None => {
                check_session(credential, now)?;
                None
            }
            Some(proof) => {
                let record = check_token(credential, proof, now)?;
                if record
                    .workspace_id
                    .as_deref()
                    .is_some_and(|ws| ws != workspace_id)
                {
                    return Err(AppError::not_found(not_found));
                }
                Some(record)
            }
        };
        let member: Member = member
            .map(from_item)
            .transpose()?
            .ok_or_else(|| AppError::not_found(not_found))?;
        let index: Option<WorkspaceTokenRecord> = index.map(from_item).transpose()?;
        if let Some(record) = &token {
            if index.as_ref().is_some_and(|i| i.blocked) {
                return Err(AppError::forbidden(
                    "an admin of this workspace revoked this API token here",
                ));
            }
            token::require_scope(record, action)?;
        }
        let scope = Scope {
            workspace_id: workspace_id.to_owned(),
            user_id: who.user_id.clone(),
            role: member.role,
            member,
        };
        scope.require(action)?;
        if let Some(record) = token {
            self.note_token_use(&record, Some(workspace_id), index.is_some(), now)
                .await;
        }
        Ok((scope, rest))
    }

    /// One record by its id, authorized: the workspace comes from the id, the record's key
    /// from `key`, and `extra` keys ride in the same batch (returned aligned with `extra`).
    /// A malformed id, a caller who is not a member and a missing record all read as
    /// "{noun} not found", so an outsider learns nothing about what exists.
    pub async fn load<T: DeserializeOwned>(
        &self,
        who: &Principal,
        kind: Kind,
        id: &str,
        key: fn(&str, &str) -> Key,
        action: Action,
        extra: &[Key],
    ) -> AppResult<Loaded<T>> {
        let ws = crate::kernel::ids::workspace_of(kind, id)?;
        let mut wanted = Vec::with_capacity(extra.len() + 1);
        wanted.push(key(&ws, id));
        wanted.extend_from_slice(extra);
        let (scope, mut items) = self
            .authorize(who, &ws, action, kind.noun(), &wanted)
            .await?;
        let extra = items.split_off(1);
        let record = items
            .pop()
            .flatten()
            .map(from_item)
            .transpose()?
            .ok_or_else(|| AppError::not_found(kind.noun()))?;
        Ok(Loaded {
            scope,
            record,
            extra,
        })
    }

    /// Authorizes `who` in a workspace given by a client-supplied id (404 if malformed).
    pub async fn scope(
        &self,
        who: &Principal,
        workspace_id: &str,
        action: Action,
    ) -> AppResult<Scope> {
        let ws = crate::kernel::ids::parse_workspace_id(workspace_id)?;
        Ok(self.authorize(who, &ws, action, "workspace", &[]).await?.0)
    }

    /// The workspace a list or create request means: the given id, else the caller's current
    /// workspace (400 on `workspace_id` when there is none).
    pub async fn resolve(
        &self,
        who: &Principal,
        workspace_id: Option<&str>,
        action: Action,
    ) -> AppResult<Scope> {
        let ws = self.target_workspace(who, workspace_id).await?;
        Ok(self.authorize(who, &ws, action, "workspace", &[]).await?.0)
    }

    /// The workspace a request means, not yet authorized: the given id (404 if malformed),
    /// else the caller's current workspace (400 on `workspace_id` when there is none). For
    /// requests that read their other keys in the authorization batch.
    pub async fn target_workspace(
        &self,
        who: &Principal,
        workspace_id: Option<&str>,
    ) -> AppResult<String> {
        match workspace_id {
            Some(id) => crate::kernel::ids::parse_workspace_id(id),
            None => self.current_workspace(who).await?.ok_or_else(|| {
                AppError::validation(
                    "workspace_id",
                    "no current workspace: pass workspace_id or switch to a workspace first",
                )
            }),
        }
    }

    /// The caller's current workspace id, if any (checks the credential too). A token
    /// restricted to a workspace means that workspace.
    pub async fn current_workspace(&self, who: &Principal) -> AppResult<Option<String>> {
        let (token, mut got) = self.credential(who, &[keys::user(&who.user_id)]).await?;
        let user = got
            .pop()
            .flatten()
            .ok_or_else(|| AppError::unauthorized(SESSION_REVOKED))?;
        if let Some(ws) = token.and_then(|t| t.workspace_id) {
            return Ok(Some(ws));
        }
        Ok(user
            .get("current_workspace_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned))
    }

    /// Checks only the credential (for requests outside any workspace), reading `extra`
    /// along. `action` is what the request does, for an API token's scopes; a token
    /// restricted to one workspace may not act outside it (403).
    pub async fn session(
        &self,
        who: &Principal,
        action: Action,
        extra: &[Key],
    ) -> AppResult<Vec<Option<Item>>> {
        let (token, rest) = self.credential(who, extra).await?;
        if let Some(record) = token {
            if record.workspace_id.is_some() {
                return Err(AppError::forbidden(
                    "this API token is restricted to one workspace",
                ));
            }
            token::require_scope(&record, action)?;
            self.note_token_use(&record, None, true, self.clock.epoch_secs())
                .await;
        }
        Ok(rest)
    }

    /// Reads the caller's session or API token with `extra` in one call and checks that it
    /// is live; returns the token's record (none for a session) and the extra items.
    async fn credential(
        &self,
        who: &Principal,
        extra: &[Key],
    ) -> AppResult<(Option<ApiTokenRecord>, Vec<Option<Item>>)> {
        let mut keys = Vec::with_capacity(extra.len() + 1);
        keys.push(credential_key(who));
        keys.extend_from_slice(extra);
        let mut items = self.store.batch_get(Table::Main, &keys).await?;
        let rest = items.split_off(1);
        let item = items.pop().flatten();
        let now = self.clock.epoch_secs();
        let token = match &who.token {
            None => {
                check_session(item, now)?;
                None
            }
            Some(proof) => Some(check_token(item, proof, now)?),
        };
        Ok((token, rest))
    }

    /// Records that a token was used, cheaply and at best effort: `last_used_at` is written
    /// at most once per `TOKEN_TOUCH_SECS`, and the token's index item in `workspace` on its
    /// first use there (so the workspace's admins see it). A failed write costs the request
    /// nothing: the next use tries again.
    async fn note_token_use(
        &self,
        record: &ApiTokenRecord,
        workspace: Option<&str>,
        listed: bool,
        now: u64,
    ) {
        if let (Some(ws), false) = (workspace, listed) {
            let index = WorkspaceTokenRecord::new(record, ws, Some(self.clock.rfc3339()));
            // Never over an item an admin may just have blocked.
            let put = WriteOp::put_new(Table::Main, to_item(&index));
            if let Err(e) = self.store.transact(vec![put]).await
                && !e.is_condition_failure()
            {
                tracing::warn!(error = %e, "API token: workspace index not written");
            }
        }
        let stale = record
            .last_used_epoch
            .is_none_or(|at| now.saturating_sub(at) >= TOKEN_TOUCH_SECS);
        if stale {
            let touch = WriteOp::Update {
                table: Table::Main,
                key: keys::api_token(&record.user_id, &record.id),
                update: Update::default()
                    .set("last_used_at", self.clock.rfc3339())
                    .set("last_used_epoch", now),
                condition: Some(Condition::Exists),
            };
            if let Err(e) = self.store.transact(vec![touch]).await
                && !e.is_condition_failure()
            {
                tracing::warn!(error = %e, "API token: last use not recorded");
            }
        }
    }
}

/// How often at most a token's `last_used_at` is written (seconds): a busy integration
/// costs one write an hour, not one per request.
pub const TOKEN_TOUCH_SECS: u64 = 3600;

/// The item that proves the caller's credential: the session a JWT names, or the API token.
pub fn credential_key(who: &Principal) -> Key {
    match &who.token {
        None => keys::session(&who.user_id, &who.session_id),
        Some(proof) => keys::api_token(&who.user_id, &proof.token_id),
    }
}
