//! Creating, listing and revoking API tokens.
//!
//! Storage cost (calls): create 3 (credential + membership batch, the owner's token count,
//! one transaction), list 2 (credential, Query), revoke 2 (credential + token batch,
//! transaction); workspace list 3 (authorization, Query, BatchGet of the tokens), workspace
//! revoke 2 (authorization + index batch, transaction).

use crate::areas::auth::require_session;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{
    Action, ApiTokenRecord, Principal, TokenScope, WorkspaceTokenRecord, display_prefix, new_token,
    new_token_id, token_hash,
};
use crate::kernel::context::{ServiceContext, found, required_text};
use crate::kernel::ids::parse_workspace_id;
use crate::kernel::keys;
use crate::kernel::limits::MAX_NAME_CHARS;
use crate::kernel::paging::{PageParams, Paged, query_all, workspace_page};
use crate::kernel::record::{from_item, to_item};
use crate::storage::{Condition, Key, Query, SortKey, Table, Update, WriteOp};

use super::model::*;

pub struct TokenService {
    ctx: ServiceContext,
}

const NOT_FOUND: &str = "API token";

/// `write` implies `read`; duplicates collapse; at least one scope.
fn normalize_scopes(scopes: &[TokenScope]) -> AppResult<Vec<TokenScope>> {
    if scopes.is_empty() {
        return Err(AppError::validation(
            "scopes",
            "at least one scope is required",
        ));
    }
    let mut out = vec![TokenScope::Read];
    if scopes.contains(&TokenScope::Write) {
        out.push(TokenScope::Write);
    }
    Ok(out)
}

impl TokenService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    /// Creates a token of the caller's; the answer carries the token string, once.
    pub async fn create(&self, who: &Principal, req: CreateApiToken) -> AppResult<CreatedApiToken> {
        require_session(who)?;
        let name = required_text("name", &req.name, MAX_NAME_CHARS)?;
        let scopes = normalize_scopes(&req.scopes)?;
        let days = match req.expires_in_days {
            Some(d) if !(1..=MAX_TOKEN_DAYS).contains(&d) => {
                return Err(AppError::validation(
                    "expires_in_days",
                    format!("must be between 1 and {MAX_TOKEN_DAYS}"),
                ));
            }
            d => d,
        };
        let user = uuid::Uuid::try_parse(&who.user_id)
            .map_err(|_| AppError::unauthorized(crate::kernel::access::SESSION_REVOKED))?;
        let workspace_id = match req.workspace_id.as_deref() {
            Some(ws) => {
                let ws = parse_workspace_id(ws)?;
                // The caller must be a member there (404 otherwise), checked with the session.
                self.ctx
                    .access
                    .authorize(who, &ws, Action::Read, "workspace", &[])
                    .await?;
                Some(ws)
            }
            None => {
                self.ctx.access.session(who, Action::Read, &[]).await?;
                None
            }
        };
        let held = self.owned(&who.user_id).await?.len();
        if held >= MAX_TOKENS_PER_USER {
            return Err(AppError::unprocessable(
                "name",
                format!("at most {MAX_TOKENS_PER_USER} API tokens per user; delete one first"),
            ));
        }
        let now = self.ctx.clock.epoch_secs();
        let expires_at = days.map(|d| now + u64::from(d) * 86_400);
        let id = new_token_id();
        let token = new_token(&id, &user);
        let key = keys::api_token(&who.user_id, &id);
        let record = ApiTokenRecord {
            pk: key.pk,
            sk: key.sk,
            entity: "api_token".into(),
            id: id.clone(),
            user_id: who.user_id.clone(),
            name,
            hash: token_hash(&token),
            prefix: display_prefix(&id),
            scopes,
            workspace_id: workspace_id.clone(),
            created_at: self.ctx.now(),
            expires_at,
            last_used_at: None,
            last_used_epoch: None,
            ttl: expires_at,
        };
        let mut ops = vec![WriteOp::put_new(Table::Main, to_item(&record))];
        if let Some(ws) = &workspace_id {
            let index = WorkspaceTokenRecord::new(&record, ws, None);
            ops.push(WriteOp::put_new(Table::Main, to_item(&index)));
        }
        self.ctx.store.transact(ops).await?;
        Ok(CreatedApiToken {
            info: ApiToken::from(&record),
            token,
        })
    }

    /// The caller's tokens, oldest first (never their secrets).
    pub async fn list(&self, who: &Principal) -> AppResult<Vec<ApiToken>> {
        require_session(who)?;
        self.ctx.access.session(who, Action::Read, &[]).await?;
        let now = self.ctx.clock.epoch_secs();
        Ok(self
            .owned(&who.user_id)
            .await?
            .iter()
            // Expired tokens wait for their TTL; they are gone for the owner already.
            .filter(|t| t.expires_at.is_none_or(|at| at > now))
            .map(ApiToken::from)
            .collect())
    }

    async fn owned(&self, user_id: &str) -> AppResult<Vec<ApiTokenRecord>> {
        query_all(
            self.ctx.store.as_ref(),
            Query::new(Table::Main, keys::user_partition(user_id))
                .sort(SortKey::BeginsWith(keys::API_TOKEN_PREFIX.into())),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }

    /// Deletes one of the caller's tokens: the next request with it is refused.
    pub async fn revoke(&self, who: &Principal, token_id: &str) -> AppResult<RevokedApiToken> {
        require_session(who)?;
        if !crate::kernel::access::is_token_id(token_id) {
            return Err(AppError::not_found(NOT_FOUND));
        }
        let key = keys::api_token(&who.user_id, token_id);
        let mut got = self
            .ctx
            .access
            .session(who, Action::Read, std::slice::from_ref(&key))
            .await?;
        let record: ApiTokenRecord = found(got.pop().flatten(), NOT_FOUND)?;
        self.delete(&record).await?;
        Ok(RevokedApiToken {
            id: record.id,
            deleted: true,
        })
    }

    /// Deletes a token and the index item of the workspace it is restricted to. Index items
    /// an unrestricted token left in workspaces it was used in stay; the workspace lists
    /// skip them once the token is gone.
    async fn delete(&self, record: &ApiTokenRecord) -> AppResult<()> {
        let mut ops = vec![WriteOp::Delete {
            table: Table::Main,
            key: keys::api_token(&record.user_id, &record.id),
            condition: None,
        }];
        if let Some(ws) = &record.workspace_id {
            ops.push(WriteOp::Delete {
                table: Table::Main,
                key: keys::workspace_token(ws, &record.id),
                condition: None,
            });
        }
        self.ctx.store.transact(ops).await?;
        Ok(())
    }

    /// The tokens acting in a workspace (`Manage`): those restricted to it, and members'
    /// unrestricted tokens once used there. In index order (by token id).
    pub async fn list_for_workspace(
        &self,
        who: &Principal,
        workspace_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<WorkspaceApiToken>> {
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .scope(who, workspace_id, Action::Manage)
            .await?;
        let got = workspace_page(
            self.ctx.store.as_ref(),
            &scope.workspace_id,
            keys::API_TOKEN_PREFIX,
            limit,
            page.cursor.clone(),
        )
        .await?;
        let index: Vec<WorkspaceTokenRecord> = got
            .items
            .into_iter()
            .map(from_item)
            .collect::<AppResult<_>>()?;
        let token_keys: Vec<Key> = index
            .iter()
            .map(|i| keys::api_token(&i.user_id, &i.token_id))
            .collect();
        let tokens = if token_keys.is_empty() {
            Vec::new()
        } else {
            self.ctx.store.batch_get(Table::Main, &token_keys).await?
        };
        let now = self.ctx.clock.epoch_secs();
        let mut items = Vec::with_capacity(index.len());
        for (i, token) in index.iter().zip(tokens) {
            let Some(token) = token else { continue };
            let token: ApiTokenRecord = from_item(token)?;
            if token.expires_at.is_none_or(|at| at > now) {
                items.push(WorkspaceApiToken::of(&token, i));
            }
        }
        Ok(Paged {
            items,
            next_cursor: got.next_cursor,
        })
    }

    /// Revokes a token in a workspace (`Manage`): a token restricted to it is deleted; an
    /// unrestricted one is blocked there (its owner's other workspaces are not this
    /// admin's to decide).
    pub async fn revoke_in_workspace(
        &self,
        who: &Principal,
        workspace_id: &str,
        token_id: &str,
    ) -> AppResult<RevokedApiToken> {
        let ws = parse_workspace_id(workspace_id)?;
        if !crate::kernel::access::is_token_id(token_id) {
            return Err(AppError::not_found(NOT_FOUND));
        }
        let index_key = keys::workspace_token(&ws, token_id);
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "workspace",
                std::slice::from_ref(&index_key),
            )
            .await?;
        let index: WorkspaceTokenRecord = found(got.pop().flatten(), NOT_FOUND)?;
        if index.restricted {
            let key = keys::api_token(&index.user_id, token_id);
            self.ctx
                .store
                .transact(vec![
                    WriteOp::Delete {
                        table: Table::Main,
                        key,
                        condition: None,
                    },
                    WriteOp::Delete {
                        table: Table::Main,
                        key: index_key,
                        condition: None,
                    },
                ])
                .await?;
            return Ok(RevokedApiToken {
                id: token_id.to_owned(),
                deleted: true,
            });
        }
        self.ctx
            .store
            .transact(vec![WriteOp::Update {
                table: Table::Main,
                key: index_key,
                update: Update::default().set("blocked", true),
                condition: Some(Condition::Exists),
            }])
            .await?;
        Ok(RevokedApiToken {
            id: token_id.to_owned(),
            deleted: false,
        })
    }
}
