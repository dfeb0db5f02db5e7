//! Who may touch a workspace: one batch read of the caller's session, their membership and
//! whatever else the request needs. A non-member sees the workspace as absent (404), never
//! its data.

mod member;
mod principal;
mod role;
mod visibility;

pub use member::{Member, Membership};
pub use principal::{Principal, SessionRecord};
pub use role::{Action, Role};
pub use visibility::{Audience, EntityType};

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{AppError, AppResult};
use crate::kernel::keys;
use serde::de::DeserializeOwned;

use crate::kernel::ids::Kind;
use crate::kernel::record::from_item;
use crate::storage::{Item, Key, Store, Table};

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

    /// Reads session, membership and `extra` keys in one call. Errs with 401 for a dead
    /// session, 404 (`not_found`) when the caller is not a member, 403 when the role does not
    /// allow `action`. Returns the scope and the extra items, aligned with `extra`.
    pub async fn authorize(
        &self,
        who: &Principal,
        workspace_id: &str,
        action: Action,
        not_found: &str,
        extra: &[Key],
    ) -> AppResult<(Scope, Vec<Option<Item>>)> {
        let mut keys = Vec::with_capacity(extra.len() + 2);
        keys.push(keys::session(&who.user_id, &who.session_id));
        keys.push(keys::member(workspace_id, &who.user_id));
        keys.extend_from_slice(extra);
        let mut items = self.store.batch_get(Table::Main, &keys).await?;
        let rest = items.split_off(2);
        let member = items.pop().flatten();
        check_session(items.pop().flatten(), self.clock.epoch_secs())?;
        let member: Member = member
            .map(from_item)
            .transpose()?
            .ok_or_else(|| AppError::not_found(not_found))?;
        let scope = Scope {
            workspace_id: workspace_id.to_owned(),
            user_id: who.user_id.clone(),
            role: member.role,
            member,
        };
        scope.require(action)?;
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

    /// The caller's current workspace id, if any (checks the session too).
    pub async fn current_workspace(&self, who: &Principal) -> AppResult<Option<String>> {
        let user = self
            .session(who, &[keys::user(&who.user_id)])
            .await?
            .pop()
            .flatten()
            .ok_or_else(|| AppError::unauthorized(SESSION_REVOKED))?;
        Ok(user
            .get("current_workspace_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned))
    }

    /// Checks only the session (for requests outside any workspace), reading `extra` along.
    pub async fn session(&self, who: &Principal, extra: &[Key]) -> AppResult<Vec<Option<Item>>> {
        let mut keys = Vec::with_capacity(extra.len() + 1);
        keys.push(keys::session(&who.user_id, &who.session_id));
        keys.extend_from_slice(extra);
        let mut items = self.store.batch_get(Table::Main, &keys).await?;
        let rest = items.split_off(1);
        check_session(items.pop().flatten(), self.clock.epoch_secs())?;
        Ok(rest)
    }
}
