//! Workspaces and their members: create (with a default team and workflow), read, list,
//! current/switch, update, delete, member roles and removal, and the change feed.

use serde_json::json;

use super::model::*;
use crate::areas::auth::UserRecord;
use crate::areas::issues::references;
use crate::areas::teams::NewTeam;
use crate::error::{AppError, AppResult};
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::access::Scope;
use crate::kernel::access::{Action, Role};
use crate::kernel::access::{Member, Membership};
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, claim, delete_existing, expected_version, found, put_new,
    put_versioned, required_text, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::workspace_members;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::storage::{Condition, Key, Query, SortKey, Table, Update, WriteOp};

pub use crate::kernel::limits::{MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_URL_KEY, MIN_URL_KEY};

pub fn validate_url_key(field: &str, raw: &str) -> AppResult<String> {
    let key = raw.trim().to_owned();
    let n = key.chars().count();
    let ok = (MIN_URL_KEY..=MAX_URL_KEY).contains(&n)
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !key.starts_with('-')
        && !key.ends_with('-');
    if ok {
        Ok(key)
    } else {
        Err(AppError::validation(
            field,
            "must be 3-48 lower-case letters, digits or dashes, not starting or ending with a dash",
        ))
    }
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(40).collect();
    let out = out.trim_matches('-').to_owned();
    if out.len() < MIN_URL_KEY {
        format!("workspace-{out}").trim_matches('-').to_owned()
    } else {
        out
    }
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

/// A default team key from the workspace name: its first three letters/digits.
fn default_team_key(name: &str) -> String {
    let key: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(3)
        .collect::<String>()
        .to_ascii_uppercase();
    if key.len() < 2 { "TEAM".into() } else { key }
}

pub struct WorkspaceService {
    ctx: ServiceContext,
}

impl WorkspaceService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    async fn scope(&self, who: &Principal, workspace_id: &str, action: Action) -> AppResult<Scope> {
        self.ctx.access.scope(who, workspace_id, action).await
    }

    async fn user(&self, who: &Principal) -> AppResult<serde_json::Map<String, serde_json::Value>> {
        let mut got = self
            .ctx
            .access
            .session(who, Action::Contribute, &[keys::user(&who.user_id)])
            .await?;
        got.pop()
            .flatten()
            .ok_or_else(|| AppError::unauthorized(crate::kernel::access::SESSION_REVOKED))
    }

    pub async fn create(
        &self,
        who: &Principal,
        req: CreateWorkspace,
    ) -> AppResult<CreatedWorkspace> {
        let name = required_text("name", &req.name, MAX_NAME_CHARS)?;
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        let explicit_key = req
            .url_key
            .as_deref()
            .map(|k| validate_url_key("url_key", k))
            .transpose()?;
        let user: UserRecord = from_item(self.user(who).await?)?;
        let mut url_key = explicit_key.clone().unwrap_or_else(|| slug(&name));
        for attempt in 0..3 {
            match self
                .try_create(&user, &name, &url_key, description.clone())
                .await
            {
                // A derived key that is taken gets a random suffix; an explicit one is a 409.
                Err(e)
                    if e.field.as_deref() == Some("url_key")
                        && explicit_key.is_none()
                        && attempt < 2 =>
                {
                    let base: String = slug(&name).chars().take(MAX_URL_KEY - 7).collect();
                    url_key = format!("{}-{}", base.trim_end_matches('-'), random_suffix());
                }
                other => return other,
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn try_create(
        &self,
        user: &UserRecord,
        name: &str,
        url_key: &str,
        description: Option<String>,
    ) -> AppResult<CreatedWorkspace> {
        let now = self.ctx.now();
        let ws_id = uuid::Uuid::now_v7().to_string();
        let workspace = Workspace {
            id: ws_id.clone(),
            name: name.to_owned(),
            url_key: url_key.to_owned(),
            description,
            created_by: user.id.clone(),
            version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let member = Member {
            workspace_id: ws_id.clone(),
            user_id: user.id.clone(),
            role: Role::Owner,
            username: user.username.clone(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            joined_at: now.clone(),
        };
        let new_team = NewTeam::build(
            &ws_id,
            default_team_key(name),
            name.to_owned(),
            None,
            &user.id,
            &now,
        );
        let statuses = crate::areas::projects::default_project_statuses(&ws_id, &now);
        let committed = self
            .ctx
            .changes
            .commit(&ws_id, &user.id, &[], |_| {
                let plan = Plan::new(())
                    .op(put_new(&keys::workspace(&ws_id), "workspace", &workspace))
                    .guarded(
                        claim(keys::workspace_url_key(url_key), &ws_id),
                        AppError::validation("url_key", "this url key is taken")
                            .with_code(crate::error::ErrorCode::Conflict),
                    )
                    .op(put_new(&keys::member(&ws_id, &user.id), "member", &member))
                    .op(put_new(
                        &keys::membership(&user.id, &ws_id),
                        "membership",
                        &membership_of(&member),
                    ))
                    .op(WriteOp::Update {
                        table: Table::Main,
                        key: keys::user(&user.id),
                        update: Update::default().set("current_workspace_id", ws_id.clone()),
                        condition: Some(Condition::Exists),
                    })
                    .change(Change::new(
                        EntityType::Workspace,
                        &ws_id,
                        ChangeKind::Created,
                        &workspace,
                    ))
                    .change(Change::new(
                        EntityType::WorkspaceMember,
                        &user.id,
                        ChangeKind::Created,
                        &member,
                    ));
                let plan = crate::areas::projects::plan_project_statuses(plan, &statuses);
                Ok(new_team.plan(plan, "name"))
            })
            .await?;
        let () = committed.output;
        Ok(CreatedWorkspace {
            workspace,
            role: Role::Owner,
            default_team: new_team.team,
            default_workflow: new_team.workflow,
            states: new_team.states,
        })
    }

    pub async fn get(&self, who: &Principal, workspace_id: &str) -> AppResult<WorkspaceView> {
        let ws = ids::parse_workspace_id(workspace_id)?;
        let (scope, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                EntityType::Workspace.read_action(),
                "workspace",
                &[keys::workspace(&ws)],
            )
            .await?;
        let workspace: Workspace = found(got.pop().flatten(), "workspace")?;
        Ok(WorkspaceView {
            workspace,
            role: scope.role,
        })
    }

    /// The caller's workspaces (newest membership last).
    pub async fn list_mine(&self, who: &Principal) -> AppResult<Vec<WorkspaceView>> {
        let page = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, keys::user_partition(&who.user_id))
                    .sort(SortKey::BeginsWith(keys::MEMBERSHIP_PREFIX.into()))
                    .limit(1000),
            )
            .await?;
        let memberships: Vec<Membership> = page
            .items
            .into_iter()
            .map(from_item)
            .collect::<AppResult<_>>()?;
        let metas: Vec<Key> = memberships
            .iter()
            .map(|m| keys::workspace(&m.workspace_id))
            .collect();
        let got = self.ctx.access.session(who, Action::Read, &metas).await?;
        let mut out = Vec::with_capacity(memberships.len());
        for (m, item) in memberships.into_iter().zip(got) {
            if let Some(item) = item {
                out.push(WorkspaceView {
                    workspace: from_item(item)?,
                    role: m.role,
                });
            }
        }
        Ok(out)
    }

    pub async fn current(&self, who: &Principal) -> AppResult<WorkspaceView> {
        let current = self
            .ctx
            .access
            .current_workspace(who)
            .await?
            .ok_or_else(|| AppError::not_found("current workspace"))?;
        self.get(who, &current).await
    }

    pub async fn switch(&self, who: &Principal, req: SwitchWorkspace) -> AppResult<WorkspaceView> {
        // The current workspace is the signed-in user's state; an API token names the
        // workspace of each request instead.
        if who.is_api_token() {
            return Err(AppError::forbidden(
                "an API token cannot switch the current workspace; pass workspace_id",
            ));
        }
        let view = self.get(who, &req.workspace_id).await?;
        self.ctx
            .store
            .transact(vec![WriteOp::Update {
                table: Table::Main,
                key: keys::user(&who.user_id),
                update: Update::default().set("current_workspace_id", view.workspace.id.clone()),
                condition: Some(Condition::Exists),
            }])
            .await?;
        Ok(view)
    }

    pub async fn update(
        &self,
        who: &Principal,
        workspace_id: &str,
        req: UpdateWorkspace,
        if_match: Option<i64>,
    ) -> AppResult<WorkspaceView> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || {
            self.update_once(who, workspace_id, &req, expected)
        })
        .await
    }

    async fn update_once(
        &self,
        who: &Principal,
        workspace_id: &str,
        req: &UpdateWorkspace,
        expected: Option<i64>,
    ) -> AppResult<WorkspaceView> {
        let ws = ids::parse_workspace_id(workspace_id)?;
        let (scope, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Configure,
                "workspace",
                &[keys::workspace(&ws)],
            )
            .await?;
        let current: Workspace = found(got.pop().flatten(), "workspace")?;
        check_version(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = &req.name {
            next.name = required_text("name", name, MAX_NAME_CHARS)?;
        }
        if let Some(description) = &req.description {
            next.description =
                optional_text("description", description.as_deref(), MAX_DESCRIPTION_CHARS)?;
        }
        if let Some(key) = &req.url_key {
            next.url_key = validate_url_key("url_key", key)?;
        }
        if next == current {
            return Ok(WorkspaceView {
                workspace: current,
                role: scope.role,
            });
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(()).guarded(
                    put_versioned(&keys::workspace(&ws), "workspace", &next, current.version),
                    version_conflict(),
                );
                if next.url_key != current.url_key {
                    plan = plan
                        .guarded(
                            claim(keys::workspace_url_key(&next.url_key), &ws),
                            AppError::validation("url_key", "this url key is taken")
                                .with_code(crate::error::ErrorCode::Conflict),
                        )
                        .op(WriteOp::Delete {
                            table: Table::Main,
                            key: keys::workspace_url_key(&current.url_key),
                            condition: None,
                        });
                }
                Ok(plan.change(Change::new(
                    EntityType::Workspace,
                    &ws,
                    ChangeKind::Updated,
                    &next,
                )))
            })
            .await?;
        Ok(WorkspaceView {
            workspace: next,
            role: scope.role,
        })
    }

    /// Owner only. Removes the workspace, its url key and every membership; what else the
    /// partition holds becomes unreachable (no member can authorize) and expires with it.
    pub async fn delete(&self, who: &Principal, workspace_id: &str) -> AppResult<()> {
        let ws = ids::parse_workspace_id(workspace_id)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Own, "workspace", &[keys::workspace(&ws)])
            .await?;
        let workspace: Workspace = found(got.pop().flatten(), "workspace")?;
        let members = workspace_members(self.ctx.store.as_ref(), &ws).await?;
        // Members other than the caller first (in chunks), then the workspace itself with
        // the caller's membership, so a failure part-way leaves the owner in control.
        let others: Vec<&Member> = members
            .iter()
            .filter(|m| m.user_id != who.user_id)
            .collect();
        for chunk in others.chunks(40) {
            let mut ops = Vec::new();
            for m in chunk {
                ops.push(WriteOp::Delete {
                    table: Table::Main,
                    key: keys::member(&ws, &m.user_id),
                    condition: None,
                });
                ops.push(WriteOp::Delete {
                    table: Table::Main,
                    key: keys::membership(&m.user_id, &ws),
                    condition: None,
                });
            }
            self.ctx.store.transact(ops).await?;
        }
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        delete_existing(keys::workspace(&ws)),
                        AppError::not_found("workspace"),
                    )
                    .op(WriteOp::Delete {
                        table: Table::Main,
                        key: keys::workspace_url_key(&workspace.url_key),
                        condition: None,
                    })
                    .op(WriteOp::Delete {
                        table: Table::Main,
                        key: keys::member(&ws, &who.user_id),
                        condition: None,
                    })
                    .op(WriteOp::Delete {
                        table: Table::Main,
                        key: keys::membership(&who.user_id, &ws),
                        condition: None,
                    })
                    .change(Change::new(
                        EntityType::Workspace,
                        &ws,
                        ChangeKind::Deleted,
                        &workspace,
                    )))
            })
            .await?;
        Ok(())
    }

    pub async fn members(
        &self,
        who: &Principal,
        workspace_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Member>> {
        let scope = self
            .scope(who, workspace_id, EntityType::WorkspaceMember.read_action())
            .await?;
        let got = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(&scope.workspace_id))
                    .sort(SortKey::BeginsWith(keys::MEMBER_PREFIX.into()))
                    .limit(page.limit()?)
                    .cursor(page.cursor.clone()),
            )
            .await?;
        Paged::of(got)
    }

    /// Changes a member's role. Admins manage members and admins; only owners grant or take
    /// the owner role; the last owner cannot be demoted.
    pub async fn change_role(
        &self,
        who: &Principal,
        workspace_id: &str,
        user_id: &str,
        req: ChangeMemberRole,
    ) -> AppResult<Member> {
        retry_unversioned(None, || {
            self.change_role_once(who, workspace_id, user_id, &req)
        })
        .await
    }

    async fn change_role_once(
        &self,
        who: &Principal,
        workspace_id: &str,
        user_id: &str,
        req: &ChangeMemberRole,
    ) -> AppResult<Member> {
        let ws = ids::parse_workspace_id(workspace_id)?;
        let (scope, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "workspace",
                &[keys::member(&ws, user_id)],
            )
            .await?;
        let target: Member = found(got.pop().flatten(), "member")?;
        if (target.role == Role::Owner || req.role == Role::Owner) && scope.role != Role::Owner {
            return Err(AppError::forbidden(
                "only owners grant or change the owner role",
            ));
        }
        if target.role == req.role {
            return Ok(target);
        }
        if target.role == Role::Owner {
            self.ensure_other_owner(&ws, user_id).await?;
        }
        let mut next = target.clone();
        next.role = req.role;
        let prev_role = target.role;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        WriteOp::Put {
                            table: Table::Main,
                            item: record_item(&keys::member(&ws, user_id), "member", &next),
                            condition: Some(Condition::AttrEquals("role".into(), json!(prev_role))),
                        },
                        version_conflict(),
                    )
                    .op(WriteOp::Put {
                        table: Table::Main,
                        item: record_item(
                            &keys::membership(user_id, &ws),
                            "membership",
                            &membership_of(&next),
                        ),
                        condition: None,
                    })
                    .change(Change::new(
                        EntityType::WorkspaceMember,
                        user_id,
                        ChangeKind::Updated,
                        &next,
                    )))
            })
            .await?;
        Ok(next)
    }

    async fn ensure_other_owner(&self, ws: &str, except: &str) -> AppResult<()> {
        let others = workspace_members(self.ctx.store.as_ref(), ws)
            .await?
            .into_iter()
            .filter(|m| m.role == Role::Owner && m.user_id != except)
            .count();
        if others == 0 {
            return Err(AppError::conflict(
                "a workspace needs an owner: make someone else owner first",
            ));
        }
        Ok(())
    }

    /// Removes a member (admins remove non-owners, owners anyone); any member may leave.
    /// Their open realtime connections stop receiving this workspace's events at once, since
    /// delivery checks membership.
    pub async fn remove_member(
        &self,
        who: &Principal,
        workspace_id: &str,
        user_id: &str,
    ) -> AppResult<()> {
        let ws = ids::parse_workspace_id(workspace_id)?;
        let leaving = user_id == who.user_id;
        let action = if leaving {
            Action::Read
        } else {
            Action::Manage
        };
        let (scope, mut got) = self
            .ctx
            .access
            .authorize(who, &ws, action, "workspace", &[keys::member(&ws, user_id)])
            .await?;
        let target: Member = found(got.pop().flatten(), "member")?;
        if target.role == Role::Owner && !leaving && scope.role != Role::Owner {
            return Err(AppError::forbidden("only owners remove owners"));
        }
        if target.role == Role::Owner {
            self.ensure_other_owner(&ws, user_id).await?;
        }
        let team_links = self.team_memberships_of(&ws, user_id).await?;
        let mark = self.unassign_member(&ws, who, user_id).await?;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(())
                    .guarded(
                        mark.delete_op(),
                        references::changed_while_deleting("membership"),
                    )
                    .op(WriteOp::Delete {
                        table: Table::Main,
                        key: keys::membership(user_id, &ws),
                        condition: None,
                    });
                for key in &team_links {
                    plan = plan.op(WriteOp::Delete {
                        table: Table::Main,
                        key: key.clone(),
                        condition: None,
                    });
                }
                Ok(plan.change(Change::new(
                    EntityType::WorkspaceMember,
                    user_id,
                    ChangeKind::Deleted,
                    &target,
                )))
            })
            .await?;
        Ok(())
    }

    /// Before a removal: unassigns the member's issues and clears them as project owner, with
    /// the member item marked so that nothing new is given to them meanwhile; the removal
    /// deletes the member item only while it carries that mark (`areas::issues::references`), so
    /// a repeat of an interrupted removal continues it.
    async fn unassign_member(
        &self,
        ws: &str,
        who: &Principal,
        user_id: &str,
    ) -> AppResult<references::Mark> {
        references::unassign_member(&self.ctx, ws, &who.user_id, user_id).await
    }

    async fn team_memberships_of(&self, ws: &str, user_id: &str) -> AppResult<Vec<Key>> {
        let page = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(ws))
                    .sort(SortKey::BeginsWith(format!("{}#", keys::TEAM_MEMBER)))
                    .limit(1000),
            )
            .await?;
        Ok(page
            .items
            .into_iter()
            .filter(|i| i.get("user_id").and_then(|v| v.as_str()) == Some(user_id))
            .filter_map(|i| Key::of(&i))
            .take(90)
            .collect())
    }

    /// The change feed: changes after `since` in commit order (delta sync and WS resume).
    pub async fn changes(
        &self,
        who: &Principal,
        workspace_id: &str,
        since: i64,
        limit: u32,
    ) -> AppResult<ChangesPage> {
        let scope = self.scope(who, workspace_id, Action::Read).await?;
        let read = self
            .ctx
            .changes
            .since(&scope.workspace_id, since, limit)
            .await?;
        // The cursor moves past records the reader may not see (and skipped numbers), so it
        // never re-reads them and still learns the head.
        let last_seq = read.last_seq;
        let has_more = read.has_more;
        let mut changes = read.records;
        changes.retain(|c| c.visible_to(&scope.user_id, scope.role));
        Ok(ChangesPage {
            changes,
            last_seq,
            has_more,
        })
    }
}

pub fn membership_of(m: &Member) -> Membership {
    Membership {
        workspace_id: m.workspace_id.clone(),
        user_id: m.user_id.clone(),
        role: m.role,
        joined_at: m.joined_at.clone(),
    }
}
