//! Teams and team members: create (the creator as lead, a workflow with the default
//! states), list, read, update (a key change swaps the key marker), delete (only teams that
//! never had issues), and membership (list, add or join, change role, remove or leave).

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::layout::NewTeam;
use super::model::{Team, TeamMember, TeamRole};
use crate::areas::workflows::{Workflow, WorkflowState};
use crate::areas::workflows::{WorkflowView, sort_states};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Member;
use crate::kernel::access::Principal;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, claim, delete_any, delete_existing, expected_version, found,
    put_new, put_versioned, required_text, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::limits::{MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS};
use crate::kernel::paging::workspace_items;
use crate::kernel::paging::workspace_page;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::{from_item, record_item};
use crate::kernel::topic::Topic;
use crate::storage::{Condition, Item, Key, Query, SortKey, Table, WriteOp};

pub use crate::kernel::limits::MAX_TEAM_KEY;

/// Team keys: 1-10 ASCII letters or digits, starting with a letter; stored upper-case.
pub fn validate_team_key(field: &str, raw: &str) -> AppResult<String> {
    let key = raw.trim().to_ascii_uppercase();
    let ok = (1..=MAX_TEAM_KEY).contains(&key.len())
        && key.chars().all(|c| c.is_ascii_alphanumeric())
        && key.starts_with(|c: char| c.is_ascii_alphabetic());
    if ok {
        Ok(key)
    } else {
        Err(AppError::validation(
            field,
            "must be 1-10 letters or digits, starting with a letter",
        ))
    }
}

fn key_taken(field: &str) -> AppError {
    AppError::validation(field, "this team key is already used in the workspace")
        .with_code(ErrorCode::Conflict)
}

/// User ids are UUIDs; anything else names no user.
fn user_id_or(raw: &str, err: impl FnOnce() -> AppError) -> AppResult<String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.to_string())
        .map_err(|_| err())
}

/// The change-log entity id of a team membership.
pub fn team_member_entity_id(team_id: &str, user_id: &str) -> String {
    format!("{team_id}:{user_id}")
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// Default: the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// 1-10 letters or digits starting with a letter; stored upper-case; unique per workspace.
    #[schema(pattern = "^\\s*[A-Za-z][A-Za-z0-9]{0,9}\\s*$")]
    pub key: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// Absent fields stay; `description: null` clears it. `version`, when given, must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    #[serde(default)]
    #[schema(pattern = "^\\s*[A-Za-z][A-Za-z0-9]{0,9}\\s*$")]
    pub key: Option<String>,
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 2000)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTeamMember {
    /// A member of the team's workspace.
    pub user_id: String,
    /// Default `member`.
    #[serde(default)]
    pub role: Option<TeamRole>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeTeamMemberRole {
    pub role: TeamRole,
}

/// What creating a team made: the team, its workflow with states, and its lead (the
/// creator).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedTeam {
    #[serde(flatten)]
    pub team: Team,
    pub workflow: WorkflowView,
    pub lead: TeamMember,
}

pub struct TeamService {
    ctx: ServiceContext,
}

impl TeamService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    async fn query_all(&self, ws: &str, prefix: String) -> AppResult<Vec<Item>> {
        workspace_items(self.ctx.store.as_ref(), ws, &prefix).await
    }

    /// Reads a team with the caller's authorization and `more` keys (aligned after it).
    async fn authorized_team(
        &self,
        who: &Principal,
        team_id: &str,
        action: Action,
        more: &[Key],
    ) -> AppResult<(String, Team, Vec<Option<Item>>)> {
        let got = self
            .ctx
            .access
            .load(who, Kind::Team, team_id, keys::team, action, more)
            .await?;
        Ok((got.scope.workspace_id, got.record, got.extra))
    }

    pub async fn create(&self, who: &Principal, req: CreateTeam) -> AppResult<CreatedTeam> {
        let key = validate_team_key("key", &req.key)?;
        let name = required_text("name", &req.name, MAX_NAME_CHARS)?;
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let ws = scope.workspace_id;
        let new_team = NewTeam::build(&ws, key, name, description, &who.user_id, &self.ctx.now());
        let topic = Topic::Team(new_team.team.id.clone());
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(new_team.plan(Plan::new(()), "key").change(
                    Change::new(
                        EntityType::TeamMember,
                        team_member_entity_id(&new_team.team.id, &who.user_id),
                        ChangeKind::Created,
                        &new_team.lead,
                    )
                    .topic(topic.clone()),
                ))
            })
            .await?;
        let NewTeam {
            team,
            lead,
            workflow,
            states,
        } = new_team;
        Ok(CreatedTeam {
            team,
            workflow: WorkflowView { workflow, states },
            lead,
        })
    }

    /// The teams of a workspace (default: the caller's current one), paginated.
    pub async fn list(
        &self,
        who: &Principal,
        workspace_id: Option<&str>,
        page: &PageParams,
    ) -> AppResult<Paged<Team>> {
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .resolve(who, workspace_id, EntityType::Team.read_action())
            .await?;
        let got = workspace_page(
            self.ctx.store.as_ref(),
            &scope.workspace_id,
            &format!("{}#", keys::TEAM),
            limit,
            page.cursor.clone(),
        )
        .await?;
        Paged::of(got)
    }

    pub async fn get(&self, who: &Principal, team_id: &str) -> AppResult<Team> {
        Ok(self
            .authorized_team(who, team_id, EntityType::Team.read_action(), &[])
            .await?
            .1)
    }

    pub async fn update(
        &self,
        who: &Principal,
        team_id: &str,
        req: UpdateTeam,
        if_match: Option<i64>,
    ) -> AppResult<Team> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, team_id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        team_id: &str,
        req: &UpdateTeam,
        expected: Option<i64>,
    ) -> AppResult<Team> {
        let (ws, current, _) = self
            .authorized_team(who, team_id, Action::Manage, &[])
            .await?;
        check_version(expected, current.version)?;
        let mut next = current.clone();
        if let Some(key) = &req.key {
            next.key = validate_team_key("key", key)?;
        }
        if let Some(name) = &req.name {
            next.name = required_text("name", name, MAX_NAME_CHARS)?;
        }
        if let Some(description) = &req.description {
            next.description =
                optional_text("description", description.as_deref(), MAX_DESCRIPTION_CHARS)?;
        }
        if next == current {
            return Ok(current);
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        let topic = Topic::Team(team_id.to_string());
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(()).guarded(
                    put_versioned(&keys::team(&ws, team_id), "team", &next, current.version),
                    version_conflict(),
                );
                if next.key != current.key {
                    plan = plan
                        .guarded(
                            claim(keys::team_key(&ws, &next.key), team_id),
                            key_taken("key"),
                        )
                        .op(WriteOp::Delete {
                            table: Table::Main,
                            key: keys::team_key(&ws, &current.key),
                            condition: None,
                        });
                }
                Ok(plan.change(
                    Change::new(EntityType::Team, team_id, ChangeKind::Updated, &next)
                        .topic(topic.clone()),
                ))
            })
            .await?;
        Ok(next)
    }

    /// Deletes a team that never had issues (409 otherwise), with its key marker, its
    /// memberships, its workflows and their states. The team, its marker and its workflows
    /// go in one transaction; memberships and states that do not fit in it follow in more
    /// (they are unreachable once the team and workflows are gone).
    pub async fn delete(&self, who: &Principal, team_id: &str) -> AppResult<()> {
        let counter_key = {
            let ws = ids::workspace_of(Kind::Team, team_id)?;
            keys::team_issue_counter(&ws, team_id)
        };
        let (ws, team, rest) = self
            .authorized_team(
                who,
                team_id,
                Action::Manage,
                std::slice::from_ref(&counter_key),
            )
            .await?;
        let issues_seq = rest.into_iter().next().flatten().map(|c| {
            c.get("seq")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0)
        });
        if issues_seq.is_some_and(|n| n > 0) {
            return Err(team_has_issues());
        }
        let holdings = self.holdings(&ws, team_id).await?;
        let mut leftovers = holdings.leftover_keys(&ws, team_id);
        // team, marker, counter check, the workflows, one change each, the team's change.
        let essential = 3 + 2 * holdings.workflows.len() + 1;
        let room = crate::storage::MAX_TRANSACTION_OPS.saturating_sub(essential);
        let later = leftovers.split_off(room.min(leftovers.len()));
        let deletion = TeamDeletion {
            ws: &ws,
            team_id,
            team: &team,
            counter_key: &counter_key,
            issues_seq,
            holdings: &holdings,
            now_in: &leftovers,
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| Ok(deletion.plan()))
            .await?;
        self.delete_leftovers(&later).await
    }

    /// Everything a team owns, read before deleting it: the whole of it is written into the
    /// change records (workflows with their states) or deleted with the team (members).
    async fn holdings(&self, ws: &str, team_id: &str) -> AppResult<TeamHoldings> {
        let workflows: Vec<Workflow> = self
            .query_all(ws, format!("{}#", keys::WORKFLOW))
            .await?
            .into_iter()
            .map(from_item::<Workflow>)
            .collect::<AppResult<Vec<_>>>()?
            .into_iter()
            .filter(|w| w.team_id == team_id)
            .collect();
        let mut states: Vec<Vec<WorkflowState>> = Vec::with_capacity(workflows.len());
        for w in &workflows {
            let mut s: Vec<WorkflowState> = self
                .query_all(ws, format!("{}#{}#", keys::STATE, w.id))
                .await?
                .into_iter()
                .map(from_item)
                .collect::<AppResult<_>>()?;
            sort_states(&mut s);
            states.push(s);
        }
        let members: Vec<TeamMember> = self
            .query_all(ws, format!("{}#{team_id}#", keys::TEAM_MEMBER))
            .await?
            .into_iter()
            .map(from_item)
            .collect::<AppResult<_>>()?;
        Ok(TeamHoldings {
            workflows,
            states,
            members,
        })
    }

    /// Memberships and states that did not fit in the deletion transaction. Nothing reaches
    /// them once the team and its workflows are gone, so they go in plain transactions
    /// after it, with no change records.
    async fn delete_leftovers(&self, later: &[Key]) -> AppResult<()> {
        for chunk in later.chunks(crate::storage::MAX_TRANSACTION_OPS) {
            self.ctx
                .store
                .transact(chunk.iter().cloned().map(delete_any).collect())
                .await?;
        }
        Ok(())
    }

    /// A team's members, paginated.
    pub async fn members(
        &self,
        who: &Principal,
        team_id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<TeamMember>> {
        let limit = page.limit()?;
        let (ws, _, _) = self
            .authorized_team(who, team_id, EntityType::TeamMember.read_action(), &[])
            .await?;
        let got = self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(&ws))
                    .sort(SortKey::BeginsWith(format!(
                        "{}#{team_id}#",
                        keys::TEAM_MEMBER
                    )))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?;
        Paged::of(got)
    }

    /// Adds a workspace member to a team. Admins add anyone with any role; a member (not a
    /// guest) may join as `member` themselves.
    pub async fn add_member(
        &self,
        who: &Principal,
        team_id: &str,
        req: AddTeamMember,
    ) -> AppResult<TeamMember> {
        let not_member =
            || AppError::unknown_reference("user_id", "is not a member of this workspace");
        let user_id = user_id_or(&req.user_id, not_member)?;
        let role = req.role.unwrap_or(TeamRole::Member);
        let action = if user_id == who.user_id && role == TeamRole::Member {
            Action::Contribute
        } else {
            Action::Manage
        };
        let ws = ids::workspace_of(Kind::Team, team_id)?;
        let (ws, _team, rest) = self
            .authorized_team(
                who,
                team_id,
                action,
                &[
                    keys::member(&ws, &user_id),
                    keys::team_member(&ws, team_id, &user_id),
                ],
            )
            .await?;
        let mut rest = rest.into_iter();
        let _: Member = found(rest.next().flatten(), "member").map_err(|_| not_member())?;
        let already = || {
            AppError::validation("user_id", "is already a member of this team")
                .with_code(ErrorCode::Conflict)
        };
        if rest.next().flatten().is_some() {
            return Err(already());
        }
        let record = TeamMember {
            workspace_id: ws.clone(),
            team_id: team_id.to_owned(),
            user_id: user_id.clone(),
            role,
            joined_at: self.ctx.now(),
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        put_new(
                            &keys::team_member(&ws, team_id, &user_id),
                            "team_member",
                            &record,
                        ),
                        already(),
                    )
                    .guarded(
                        WriteOp::ConditionCheck {
                            table: Table::Main,
                            key: keys::team(&ws, team_id),
                            condition: Condition::Exists,
                        },
                        AppError::not_found(Kind::Team.noun()),
                    )
                    .guarded(
                        WriteOp::ConditionCheck {
                            table: Table::Main,
                            key: keys::member(&ws, &user_id),
                            condition: Condition::Exists,
                        },
                        not_member(),
                    )
                    .change(
                        Change::new(
                            EntityType::TeamMember,
                            team_member_entity_id(team_id, &user_id),
                            ChangeKind::Created,
                            &record,
                        )
                        .topic(Topic::Team(team_id.to_string())),
                    ))
            })
            .await?;
        Ok(record)
    }

    /// Changes a team member's role (admins).
    pub async fn change_member_role(
        &self,
        who: &Principal,
        team_id: &str,
        user_id: &str,
        req: ChangeTeamMemberRole,
    ) -> AppResult<TeamMember> {
        retry_unversioned(None, || {
            self.change_member_role_once(who, team_id, user_id, &req)
        })
        .await
    }

    async fn change_member_role_once(
        &self,
        who: &Principal,
        team_id: &str,
        user_id: &str,
        req: &ChangeTeamMemberRole,
    ) -> AppResult<TeamMember> {
        let not_found = || AppError::not_found("team member");
        let user_id = user_id_or(user_id, not_found)?;
        let ws = ids::workspace_of(Kind::Team, team_id)?;
        let (ws, _team, rest) = self
            .authorized_team(
                who,
                team_id,
                Action::Manage,
                &[keys::team_member(&ws, team_id, &user_id)],
            )
            .await?;
        let current: TeamMember = found(rest.into_iter().next().flatten(), "team member")?;
        if current.role == req.role {
            return Ok(current);
        }
        let mut next = current.clone();
        next.role = req.role;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        WriteOp::Put {
                            table: Table::Main,
                            item: record_item(
                                &keys::team_member(&ws, team_id, &user_id),
                                "team_member",
                                &next,
                            ),
                            condition: Some(Condition::AttrEquals(
                                "role".into(),
                                json!(current.role),
                            )),
                        },
                        version_conflict(),
                    )
                    .change(
                        Change::new(
                            EntityType::TeamMember,
                            team_member_entity_id(team_id, &user_id),
                            ChangeKind::Updated,
                            &next,
                        )
                        .topic(Topic::Team(team_id.to_string())),
                    ))
            })
            .await?;
        Ok(next)
    }

    /// Removes a team member (admins), or leaves the team (anyone, for themselves).
    pub async fn remove_member(
        &self,
        who: &Principal,
        team_id: &str,
        user_id: &str,
    ) -> AppResult<()> {
        let not_found = || AppError::not_found("team member");
        let user_id = user_id_or(user_id, not_found)?;
        let action = if user_id == who.user_id {
            Action::Read
        } else {
            Action::Manage
        };
        let ws = ids::workspace_of(Kind::Team, team_id)?;
        let (ws, _team, rest) = self
            .authorized_team(
                who,
                team_id,
                action,
                &[keys::team_member(&ws, team_id, &user_id)],
            )
            .await?;
        let current: TeamMember = found(rest.into_iter().next().flatten(), "team member")?;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        delete_existing(keys::team_member(&ws, team_id, &user_id)),
                        not_found(),
                    )
                    .change(
                        Change::new(
                            EntityType::TeamMember,
                            team_member_entity_id(team_id, &user_id),
                            ChangeKind::Deleted,
                            &current,
                        )
                        .topic(Topic::Team(team_id.to_string())),
                    ))
            })
            .await?;
        Ok(())
    }
}

fn team_has_issues() -> AppError {
    AppError::conflict("the team has issues; it cannot be deleted")
}

/// What a team owns: its workflows (each with its states, in display order) and members.
struct TeamHoldings {
    workflows: Vec<Workflow>,
    states: Vec<Vec<WorkflowState>>,
    members: Vec<TeamMember>,
}

impl TeamHoldings {
    /// The keys that may be deleted after the team's transaction, if they do not fit in it:
    /// memberships first, then each workflow's states.
    fn leftover_keys(&self, ws: &str, team_id: &str) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .members
            .iter()
            .map(|m| keys::team_member(ws, team_id, &m.user_id))
            .collect();
        for (w, s) in self.workflows.iter().zip(&self.states) {
            keys.extend(s.iter().map(|st| keys::state(ws, &w.id, &st.id)));
        }
        keys
    }
}

/// The deletion transaction of a team, as read before the commit.
struct TeamDeletion<'a> {
    ws: &'a str,
    team_id: &'a str,
    team: &'a Team,
    counter_key: &'a Key,
    /// The team's issue counter as read (None: never created); checked unchanged so an
    /// issue created meanwhile makes the deletion fail.
    issues_seq: Option<i64>,
    holdings: &'a TeamHoldings,
    /// The leftover keys that fit in this transaction.
    now_in: &'a [Key],
}

impl TeamDeletion<'_> {
    fn plan(&self) -> Plan<()> {
        let (ws, team_id, team) = (self.ws, self.team_id, self.team);
        let topic = Topic::Team(team_id.to_string());
        let mut plan = Plan::new(())
            .guarded(
                WriteOp::Delete {
                    table: Table::Main,
                    key: keys::team(ws, team_id),
                    condition: Some(Condition::VersionEquals(team.version)),
                },
                AppError::conflict("the team was changed concurrently; retry"),
            )
            .op(delete_any(keys::team_key(ws, &team.key)))
            .guarded(
                WriteOp::ConditionCheck {
                    table: Table::Main,
                    key: self.counter_key.clone(),
                    condition: match self.issues_seq {
                        None => Condition::NotExists,
                        Some(n) => Condition::AttrEquals("seq".into(), json!(n)),
                    },
                },
                team_has_issues(),
            );
        let holdings = self.holdings;
        for (w, s) in holdings.workflows.iter().zip(&holdings.states) {
            plan = plan.op(delete_existing(keys::workflow(ws, &w.id))).change(
                Change::new(
                    EntityType::Workflow,
                    &w.id,
                    ChangeKind::Deleted,
                    json!({"workflow": w, "states": s}),
                )
                .topic(topic.clone()),
            );
        }
        for key in self.now_in {
            plan = plan.op(delete_any(key.clone()));
        }
        plan.change(Change::new(EntityType::Team, team_id, ChangeKind::Deleted, team).topic(topic))
    }
}
