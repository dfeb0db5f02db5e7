//! The issue service: create, read, update, transition, delete, and the reads that hang
//! off one issue (activity, sub-issues, allowed moves).

use serde_json::Value;

use super::bulk::{relation_issues, rewrite_issues};
use super::input::{
    IssuePatch, MAX_DESCRIPTION_CHARS, MAX_PARENT_DEPTH, MAX_TITLE_CHARS, id_input, label_input,
    opt_id_input, parse_identifier,
};
use super::layout::{activity_partition, identifier_key, parent_partition};
use super::list;
use super::model::{
    Activity, CreateIssue, Issue, ListIssuesParams, TransitionIssue, Transitions, UpdateIssue,
};
use super::plan::{
    diff, issue_change, plan_create, plan_issue_writes, plan_update, state_guard, with_guards,
};
use super::slots::RefRequest;
use super::workflow::{allowed_targets, workflow_states};
use crate::areas::teams::Team;
use crate::areas::workflows::Workflow;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, EntityType, Principal};
use crate::kernel::changes::{ChangeKind, CounterRef, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, exists_check, expected_version, found, required_text,
    retry_unversioned,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::storage::{Condition, Item, Key, Query, Table, WriteOp};

pub struct IssueService {
    ctx: ServiceContext,
}

impl IssueService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    pub async fn create(&self, who: &Principal, req: CreateIssue) -> AppResult<Issue> {
        let team_id = id_input("team_id", &req.team_id)?;
        let ws =
            ids::workspace_of(Kind::Team, &team_id).map_err(|_| AppError::not_found("team"))?;
        let title = required_text("title", &req.title, MAX_TITLE_CHARS)?;
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_DESCRIPTION_CHARS,
        )?;
        let refs = RefRequest {
            assignee: opt_id_input("assignee_id", req.assignee_id.as_deref())?,
            labels: label_input(req.label_ids.as_deref().unwrap_or_default())?,
            project: opt_id_input("project_id", req.project_id.as_deref())?,
            cycle: opt_id_input("cycle_id", req.cycle_id.as_deref())?,
            parent: opt_id_input("parent_id", req.parent_id.as_deref())?,
        };
        let state_input = opt_id_input("state_id", req.state_id.as_deref())?;

        let mut keys_wanted = vec![keys::team(&ws, &team_id)];
        let slots = refs.keys(&ws, &mut keys_wanted);
        let (_, mut items) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Contribute, "team", &keys_wanted)
            .await?;
        let team: Team = found(items[0].take(), "team")?;
        let checked = slots.check(&ws, &refs, &mut items, &team.id, None)?;
        let mut guards = checked.guards;
        guards.push((
            exists_check(keys::team(&ws, &team.id)),
            AppError::not_found("team"),
        ));
        if let Some(parent) = &checked.parent {
            guards.push((
                exists_check(keys::issue(&ws, &parent.id)),
                AppError::validation("parent_id", "the parent issue was deleted"),
            ));
        }

        let (state_id, state_guard) = self.initial_state(&ws, &team, state_input).await?;
        guards.extend(state_guard);

        let now = self.ctx.now();
        let template = Issue {
            id: ids::new_id(Kind::Issue, &ws),
            workspace_id: ws.clone(),
            team_id: team.id.clone(),
            workflow_id: team.workflow_id.clone(),
            number: 0,
            identifier: String::new(),
            title,
            description,
            priority: req.priority.unwrap_or_default(),
            state_id,
            assignee_id: refs.assignee.clone(),
            label_ids: refs.labels.clone(),
            project_id: refs.project.clone(),
            cycle_id: refs.cycle.clone(),
            parent_id: refs.parent.clone(),
            created_by: who.user_id.clone(),
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.commit_create(&who.user_id, template, &team, &guards)
            .await
    }

    /// The state of a new issue: the one asked for (a state of the team's workflow, guarded
    /// to still exist when the issue is written) or the workflow's default.
    async fn initial_state(
        &self,
        ws: &str,
        team: &Team,
        asked: Option<String>,
    ) -> AppResult<(String, Option<(WriteOp, AppError)>)> {
        let Some(state_id) = asked else {
            let key = keys::workflow(ws, &team.workflow_id);
            let workflow: Workflow = found(
                self.ctx.store.get(Table::Main, &key).await?,
                "team workflow",
            )?;
            return Ok((workflow.default_state_id, None));
        };
        let key = keys::state(ws, &team.workflow_id, &state_id);
        if self.ctx.store.get(Table::Main, &key).await?.is_none() {
            return Err(AppError::unknown_reference(
                "state_id",
                "is not a state of the team's workflow",
            ));
        }
        let guard = state_guard(ws, &team.workflow_id, &state_id);
        Ok((state_id, Some(guard)))
    }

    /// Numbers the issue with one draw from the team's counter, before the transaction that
    /// writes it, so concurrent creates in a team never conflict (the identifier lookup,
    /// `put_new`, still guards uniqueness). A create that fails leaves its number unused.
    async fn commit_create(
        &self,
        actor: &str,
        template: Issue,
        team: &Team,
        guards: &[(WriteOp, AppError)],
    ) -> AppResult<Issue> {
        let ws = template.workspace_id.clone();
        let counter = CounterRef {
            key: keys::team_issue_counter(&ws, &team.id),
            attr: "seq",
        };
        let number = self.ctx.changes.draw(&counter).await?;
        let mut issue = template;
        issue.number = number;
        issue.identifier = format!("{}-{number}", team.key);
        let committed = self
            .ctx
            .changes
            .commit(&ws, actor, &[], |_| {
                Ok(plan_create(issue.clone(), actor, guards))
            })
            .await?;
        Ok(committed.output)
    }

    /// By id (1 storage call), or by identifier (`ENG-42`) in `workspace_id` or the caller's
    /// current workspace.
    pub async fn get(
        &self,
        who: &Principal,
        id_or_identifier: &str,
        workspace_id: Option<&str>,
    ) -> AppResult<Issue> {
        if let Some(identifier) = parse_identifier(id_or_identifier) {
            let ws = self.ctx.access.target_workspace(who, workspace_id).await?;
            let (_, mut items) = self
                .ctx
                .access
                .authorize(
                    who,
                    &ws,
                    EntityType::Issue.read_action(),
                    "issue",
                    &[identifier_key(&ws, &identifier)],
                )
                .await?;
            let issue_id = items
                .pop()
                .flatten()
                .and_then(|i| i.get("issue_id").and_then(Value::as_str).map(str::to_owned))
                .ok_or_else(|| AppError::not_found("issue"))?;
            let item = self
                .ctx
                .store
                .get(Table::Main, &keys::issue(&ws, &issue_id))
                .await?;
            return found(item, "issue");
        }
        let (_, issue) = self
            .read(who, id_or_identifier, EntityType::Issue.read_action(), &[])
            .await?;
        Ok(issue)
    }

    /// Authorizes and reads an issue by id with `extra` keys in the same batch.
    async fn read(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
        extra: &[Key],
    ) -> AppResult<(Vec<Option<Item>>, Issue)> {
        let got = self
            .ctx
            .access
            .load(who, Kind::Issue, id, keys::issue, action, extra)
            .await?;
        Ok((got.extra, got.record))
    }

    /// Checks a move to `target` against the workflow: 400 when it is not a state of the
    /// issue's workflow, 409 (listing the allowed states) when the current state does not
    /// lead there.
    async fn check_transition(&self, issue: &Issue, target: &str) -> AppResult<()> {
        if target == issue.state_id {
            return Ok(());
        }
        let states = workflow_states(&self.ctx, &issue.workspace_id, &issue.workflow_id).await?;
        let Some(to) = states.iter().find(|s| s.id == target) else {
            return Err(AppError::unknown_reference(
                "state_id",
                "is not a state of this issue's workflow",
            ));
        };
        let from = states.iter().find(|s| s.id == issue.state_id);
        let allowed = allowed_targets(&states, from);
        if allowed.iter().any(|s| s.id == to.id) {
            return Ok(());
        }
        let list: Vec<String> = allowed
            .iter()
            .map(|s| format!("{} ({})", s.name, s.id))
            .collect();
        Err(AppError::conflict(format!(
            "cannot move from {} to {}; allowed: {}",
            from.map_or("its current state", |f| f.name.as_str()),
            to.name,
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            }
        )))
    }

    /// Walks up from `parent`, refusing a cycle through `issue_id` or a chain deeper than
    /// `MAX_PARENT_DEPTH`. Returns a version check per ancestor, so a concurrent re-parenting
    /// that would close a loop makes one of the two transactions fail.
    async fn ancestor_guards(
        &self,
        ws: &str,
        issue_id: &str,
        parent: &Issue,
    ) -> AppResult<Vec<(WriteOp, AppError)>> {
        let moved = || AppError::conflict("the issue hierarchy changed concurrently; retry");
        let mut guards = Vec::new();
        let mut current = parent.clone();
        for depth in 1.. {
            guards.push((
                WriteOp::ConditionCheck {
                    table: Table::Main,
                    key: keys::issue(ws, &current.id),
                    condition: Condition::VersionEquals(current.version),
                },
                moved(),
            ));
            let Some(up) = current.parent_id.clone() else {
                break;
            };
            if up == issue_id {
                return Err(AppError::validation(
                    "parent_id",
                    "would make the issue its own ancestor",
                ));
            }
            if depth >= MAX_PARENT_DEPTH {
                return Err(AppError::validation(
                    "parent_id",
                    format!("the parent chain is deeper than {MAX_PARENT_DEPTH}"),
                ));
            }
            match self
                .ctx
                .store
                .get(Table::Main, &keys::issue(ws, &up))
                .await?
            {
                Some(item) => current = from_item(item)?,
                None => break,
            }
        }
        Ok(guards)
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateIssue,
        if_match: Option<i64>,
    ) -> AppResult<Issue> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateIssue,
        expected: Option<i64>,
    ) -> AppResult<Issue> {
        let patch = IssuePatch::parse(req)?;
        let ws = ids::workspace_of(Kind::Issue, id)?;
        let refs = patch.refs();
        let mut extra = Vec::new();
        let slots = refs.keys(&ws, &mut extra);
        let (mut aligned, current) = self.read(who, id, Action::Contribute, &extra).await?;
        check_version(expected, current.version)?;
        let next = patch.apply(&current);
        if diff(&current, &next).is_empty() {
            return Ok(current);
        }
        let (refs, slots) = refs.keep_changed(slots, &current, &next);
        let checked = slots.check(&ws, &refs, &mut aligned, &current.team_id, Some(id))?;
        let mut guards = checked.guards;
        if let Some(parent) = &checked.parent {
            guards.extend(self.ancestor_guards(&ws, id, parent).await?);
        }
        if next.state_id != current.state_id {
            self.check_transition(&current, &next.state_id).await?;
            guards.push(state_guard(&ws, &current.workflow_id, &next.state_id));
        }
        self.commit_update(&who.user_id, &current, next, guards)
            .await
    }

    async fn commit_update(
        &self,
        actor: &str,
        current: &Issue,
        mut next: Issue,
        guards: Vec<(WriteOp, AppError)>,
    ) -> AppResult<Issue> {
        next.version = current.version + 1;
        next.updated_at = self.ctx.now();
        self.ctx
            .changes
            .commit(&current.workspace_id, actor, &[], |_| {
                Ok(with_guards(
                    plan_update(Plan::new(()), current, &next, actor),
                    &guards,
                ))
            })
            .await?;
        Ok(next)
    }

    /// Deletes the issue, its identifier and index copies; its sub-issues lose their parent.
    pub async fn delete(&self, who: &Principal, id: &str) -> AppResult<()> {
        // A delete states no version: an update committed since the read is re-read, not a 412.
        let ws = retry_unversioned(None, || self.delete_once(who, id)).await?;
        // After the delete no new sub-issue can name it (creates and re-parenting check that
        // the parent exists in their transaction), so this finds every child.
        let children = relation_issues(&self.ctx, &parent_partition(&ws, id), usize::MAX).await?;
        rewrite_issues(&self.ctx, &ws, &who.user_id, children, None, |child| {
            (child.parent_id.as_deref() == Some(id)).then(|| {
                let mut next = child.clone();
                next.parent_id = None;
                next
            })
        })
        .await?;
        Ok(())
    }

    /// Deletes the issue itself (its index copies and identifier with it); returns its
    /// workspace.
    async fn delete_once(&self, who: &Principal, id: &str) -> AppResult<String> {
        let (_, current) = self.read(who, id, Action::Contribute, &[]).await?;
        let ws = current.workspace_id.clone();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let plan = plan_issue_writes(Plan::new(()), Some(&current), None)
                    .op(WriteOp::Delete {
                        table: Table::Main,
                        key: identifier_key(&ws, &current.identifier),
                        condition: None,
                    })
                    .change(issue_change(ChangeKind::Deleted, &current, None));
                Ok(plan)
            })
            .await?;
        Ok(ws)
    }

    pub async fn list(&self, who: &Principal, p: &ListIssuesParams) -> AppResult<Paged<Issue>> {
        list::list(&self.ctx, who, p).await
    }

    /// A page of a partition that hangs off a readable issue (its activity, its children).
    async fn related(
        &self,
        who: &Principal,
        id: &str,
        page: &PageParams,
        partition: fn(&str, &str) -> String,
    ) -> AppResult<crate::storage::Page> {
        let limit = page.limit()?;
        let (_, issue) = self
            .read(who, id, EntityType::Issue.read_action(), &[])
            .await?;
        Ok(self
            .ctx
            .store
            .query(
                &Query::new(Table::Main, partition(&issue.workspace_id, id))
                    .limit(limit)
                    .cursor(page.cursor.clone()),
            )
            .await?)
    }

    /// The issue's history, oldest first.
    pub async fn activity(
        &self,
        who: &Principal,
        id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Activity>> {
        Paged::of(self.related(who, id, page, activity_partition).await?)
    }

    /// Sub-issues, oldest first.
    pub async fn children(
        &self,
        who: &Principal,
        id: &str,
        page: &PageParams,
    ) -> AppResult<Paged<Issue>> {
        Paged::of(self.related(who, id, page, parent_partition).await?)
    }

    pub async fn transitions(&self, who: &Principal, id: &str) -> AppResult<Transitions> {
        let (_, issue) = self
            .read(who, id, EntityType::Issue.read_action(), &[])
            .await?;
        let states = workflow_states(&self.ctx, &issue.workspace_id, &issue.workflow_id).await?;
        let current = states.iter().find(|s| s.id == issue.state_id).cloned();
        let allowed = allowed_targets(&states, current.as_ref())
            .into_iter()
            .cloned()
            .collect();
        Ok(Transitions {
            issue_id: issue.id,
            current_state: current,
            allowed,
        })
    }

    /// Moves the issue to another state of its workflow, if its current state allows it.
    pub async fn transition(
        &self,
        who: &Principal,
        id: &str,
        req: TransitionIssue,
        if_match: Option<i64>,
    ) -> AppResult<Issue> {
        let expected = expected_version(req.version, if_match)?;
        let target = id_input("state_id", &req.state_id)?;
        retry_unversioned(expected, || async {
            let (_, current) = self.read(who, id, Action::Contribute, &[]).await?;
            check_version(expected, current.version)?;
            self.check_transition(&current, &target).await?;
            if target == current.state_id {
                return Ok(current);
            }
            let guards = vec![state_guard(
                &current.workspace_id,
                &current.workflow_id,
                &target,
            )];
            let mut next = current.clone();
            next.state_id = target.clone();
            self.commit_update(&who.user_id, &current, next, guards)
                .await
        })
        .await
    }
}
