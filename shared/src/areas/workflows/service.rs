//! Workflows and their states: list (with states), read, create (with the default states),
//! rename / change the default state, and add, change and remove states. Also the helpers
//! the issues service uses to move issues between states (`WorkflowService::states`,
//! `allowed_targets`).
//!
//! Every state mutation also advances its workflow's `version` (guarded by the version it
//! read), so changes to one workflow's states are serialised: "the last state" and "the
//! default state" checks and `transitions_to` validation cannot be raced.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::model::*;
use crate::areas::teams::Team;
use crate::error::{AppError, AppResult};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, expected_version, found, put_new, put_versioned, required_text,
    retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::limits::MAX_NAME_CHARS;
use crate::kernel::paging::workspace_items;
use crate::kernel::record::from_item;
use crate::kernel::topic::Topic;
use crate::storage::Item;

/// Largest accepted `position`.
pub use crate::kernel::limits::MAX_POSITION;
/// Most states one workflow holds.
pub use crate::kernel::limits::MAX_STATES;

/// The states an issue in `from_state_id` may move to: with `transitions_to` unset, every
/// other state of the workflow; otherwise the listed ones that exist. Order follows `states`.
/// A `from_state_id` that is not in `states` (a deleted state, another workflow's state)
/// restricts nothing: every state is a target, so such an issue can always be moved back
/// into the workflow.
pub fn allowed_targets<'a>(
    states: &'a [WorkflowState],
    from_state_id: &str,
) -> Vec<&'a WorkflowState> {
    let Some(from) = states.iter().find(|s| s.id == from_state_id) else {
        return states.iter().collect();
    };
    match &from.transitions_to {
        None => states.iter().filter(|s| s.id != from.id).collect(),
        Some(ids) => states
            .iter()
            .filter(|s| s.id != from.id && ids.contains(&s.id))
            .collect(),
    }
}

/// The default states of a new workflow (see `DEFAULT_STATES`) and the default one's id.
pub fn default_states(
    workspace_id: &str,
    workflow_id: &str,
    now: &str,
) -> (Vec<WorkflowState>, String) {
    let states: Vec<WorkflowState> = DEFAULT_STATES
        .iter()
        .enumerate()
        .map(|(i, (name, category, color))| WorkflowState {
            id: ids::new_id(Kind::State, workspace_id),
            workspace_id: workspace_id.to_owned(),
            workflow_id: workflow_id.to_owned(),
            name: (*name).to_owned(),
            category: *category,
            position: i as i64,
            color: (*color).to_owned(),
            transitions_to: None,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        })
        .collect();
    let default = states[DEFAULT_STATE_INDEX].id.clone();
    (states, default)
}

/// Sorts states for display: by position, then creation, then id.
pub fn sort_states(states: &mut [WorkflowState]) {
    states.sort_by(|a, b| {
        (a.position, &a.created_at, &a.id).cmp(&(b.position, &b.created_at, &b.id))
    });
}

/// The sort-key prefix of a workflow's states.
fn states_prefix(workflow_id: &str) -> String {
    format!("{}#{workflow_id}#", keys::STATE)
}

pub(super) fn workflow_changed() -> AppError {
    AppError::conflict("the workflow was changed concurrently; retry")
}

/// The workspace of a state id that must belong to `ws` (else "not found").
pub(super) fn state_in(ws: &str, state_id: &str) -> AppResult<()> {
    if ids::workspace_of(Kind::State, state_id)? == ws {
        Ok(())
    } else {
        Err(AppError::not_found(Kind::State.noun()))
    }
}

pub struct WorkflowService {
    pub(super) ctx: ServiceContext,
}

impl WorkflowService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    /// Every state of a workflow, sorted by position (no authorization: for services that
    /// have already authorized the caller, e.g. issues).
    pub async fn states(
        &self,
        workspace_id: &str,
        workflow_id: &str,
    ) -> AppResult<Vec<WorkflowState>> {
        let mut states: Vec<WorkflowState> = self
            .query_all(workspace_id, &states_prefix(workflow_id))
            .await?
            .into_iter()
            .map(from_item)
            .collect::<AppResult<_>>()?;
        sort_states(&mut states);
        Ok(states)
    }

    async fn query_all(&self, ws: &str, prefix: &str) -> AppResult<Vec<Item>> {
        workspace_items(self.ctx.store.as_ref(), ws, prefix).await
    }

    /// The workflows of a team (`team_id`) or of a workspace (`workspace_id`, default: the
    /// caller's current one), each with its states.
    ///
    /// Two storage calls: one Query of the workspace's states (every workflow has at least
    /// one, so they name every workflow), then one batch read of the session, membership,
    /// team and those workflows. Nothing is returned unless that batch authorizes the caller.
    pub async fn list(
        &self,
        who: &Principal,
        team_id: Option<&str>,
        workspace_id: Option<&str>,
    ) -> AppResult<Vec<WorkflowView>> {
        let ws = match (team_id, workspace_id) {
            (Some(team), given) => {
                let ws = ids::workspace_of(Kind::Team, team)?;
                if let Some(given) = given
                    && ids::parse_workspace_id(given)? != ws
                {
                    return Err(AppError::not_found(Kind::Team.noun()));
                }
                ws
            }
            (None, Some(given)) => ids::parse_workspace_id(given)?,
            (None, None) => self
                .ctx
                .access
                .current_workspace(who)
                .await?
                .ok_or_else(|| {
                    AppError::validation(
                        "workspace_id",
                        "no current workspace: pass workspace_id or team_id",
                    )
                })?,
        };
        let mut states: Vec<WorkflowState> = self
            .query_all(&ws, &format!("{}#", keys::STATE))
            .await?
            .into_iter()
            .map(from_item)
            .collect::<AppResult<_>>()?;
        let mut workflow_ids: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for s in &states {
            if seen.insert(s.workflow_id.clone()) {
                workflow_ids.push(s.workflow_id.clone());
            }
        }
        let mut extra = Vec::with_capacity(workflow_ids.len() + 1);
        if let Some(team) = team_id {
            extra.push(keys::team(&ws, team));
        }
        extra.extend(workflow_ids.iter().map(|id| keys::workflow(&ws, id)));
        let noun = if team_id.is_some() {
            Kind::Team.noun()
        } else {
            "workspace"
        };
        let (_, mut got) = self
            .ctx
            .access
            .authorize(who, &ws, EntityType::Workflow.read_action(), noun, &extra)
            .await?;
        if team_id.is_some() {
            let _: Team = found(got.remove(0), Kind::Team.noun())?;
        }
        let mut by_workflow: HashMap<String, Vec<WorkflowState>> = HashMap::new();
        for s in states.drain(..) {
            by_workflow
                .entry(s.workflow_id.clone())
                .or_default()
                .push(s);
        }
        let mut out = Vec::new();
        for item in got.into_iter().flatten() {
            let workflow: Workflow = from_item(item)?;
            if team_id.is_some_and(|t| t != workflow.team_id) {
                continue;
            }
            let mut states = by_workflow.remove(&workflow.id).unwrap_or_default();
            sort_states(&mut states);
            out.push(WorkflowView { workflow, states });
        }
        out.sort_by(|a, b| {
            (&a.workflow.created_at, &a.workflow.id).cmp(&(&b.workflow.created_at, &b.workflow.id))
        });
        Ok(out)
    }

    /// One workflow with its states (two storage calls).
    pub async fn get(&self, who: &Principal, workflow_id: &str) -> AppResult<WorkflowView> {
        let got = self
            .ctx
            .access
            .load(
                who,
                Kind::Workflow,
                workflow_id,
                keys::workflow,
                EntityType::Workflow.read_action(),
                &[],
            )
            .await?;
        let workflow: Workflow = got.record;
        let states = self.states(&got.scope.workspace_id, workflow_id).await?;
        Ok(WorkflowView { workflow, states })
    }

    /// A new workflow for a team, with the default states. The team's `version` advances
    /// (its set of workflows changed; with `make_default` its `workflow_id` too), so a
    /// concurrent team deletion cannot leave the workflow behind.
    pub async fn create(&self, who: &Principal, req: CreateWorkflow) -> AppResult<WorkflowView> {
        retry_unversioned(None, || self.create_once(who, &req)).await
    }

    async fn create_once(&self, who: &Principal, req: &CreateWorkflow) -> AppResult<WorkflowView> {
        let ws = ids::workspace_of(Kind::Team, &req.team_id)?;
        let name = required_text("name", &req.name, MAX_NAME_CHARS)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                Kind::Team.noun(),
                &[keys::team(&ws, &req.team_id)],
            )
            .await?;
        let team: Team = found(got.pop().flatten(), Kind::Team.noun())?;
        let now = self.ctx.now();
        let workflow_id = ids::new_id(Kind::Workflow, &ws);
        let (states, default_state_id) = default_states(&ws, &workflow_id, &now);
        let workflow = Workflow {
            id: workflow_id.clone(),
            workspace_id: ws.clone(),
            team_id: team.id.clone(),
            name,
            default_state_id,
            version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let mut next_team = team.clone();
        next_team.version += 1;
        next_team.updated_at = now.clone();
        if req.make_default {
            next_team.workflow_id = workflow_id.clone();
        }
        let topic = Topic::Team(team.id.clone());
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(())
                    .guarded(
                        put_versioned(&keys::team(&ws, &team.id), "team", &next_team, team.version),
                        version_conflict(),
                    )
                    .op(put_new(
                        &keys::workflow(&ws, &workflow_id),
                        "workflow",
                        &workflow,
                    ));
                for s in &states {
                    plan = plan.op(put_new(
                        &keys::state(&ws, &workflow_id, &s.id),
                        "workflow_state",
                        s,
                    ));
                }
                Ok(plan
                    .change(
                        Change::new(
                            EntityType::Workflow,
                            &workflow_id,
                            ChangeKind::Created,
                            json!({"workflow": workflow, "states": states}),
                        )
                        .topic(topic.clone()),
                    )
                    .change(
                        Change::new(EntityType::Team, &team.id, ChangeKind::Updated, &next_team)
                            .topic(topic.clone()),
                    ))
            })
            .await?;
        Ok(WorkflowView { workflow, states })
    }

    /// Renames a workflow or changes its default state.
    pub async fn update(
        &self,
        who: &Principal,
        workflow_id: &str,
        req: UpdateWorkflow,
        if_match: Option<i64>,
    ) -> AppResult<Workflow> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || {
            self.update_once(who, workflow_id, &req, expected)
        })
        .await
    }

    async fn update_once(
        &self,
        who: &Principal,
        workflow_id: &str,
        req: &UpdateWorkflow,
        expected: Option<i64>,
    ) -> AppResult<Workflow> {
        let ws = ids::workspace_of(Kind::Workflow, workflow_id)?;
        let not_a_state =
            || AppError::unknown_reference("default_state_id", "must be a state of this workflow");
        let mut extra = vec![keys::workflow(&ws, workflow_id)];
        if let Some(state_id) = &req.default_state_id {
            state_in(&ws, state_id).map_err(|_| not_a_state())?;
            extra.push(keys::state(&ws, workflow_id, state_id));
        }
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Manage, Kind::Workflow.noun(), &extra)
            .await?;
        let mut got = got.into_iter();
        let current: Workflow = found(got.next().flatten(), Kind::Workflow.noun())?;
        check_version(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = &req.name {
            next.name = required_text("name", name, MAX_NAME_CHARS)?;
        }
        if let Some(state_id) = &req.default_state_id {
            if got.next().flatten().is_none() {
                return Err(not_a_state());
            }
            next.default_state_id = state_id.clone();
        }
        if next == current {
            return Ok(current);
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        let topic = Topic::Team(current.team_id.clone());
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                // States only change with the workflow's version advancing, so the version
                // guard also guarantees the new default state still exists.
                Ok(Plan::new(())
                    .guarded(
                        put_versioned(
                            &keys::workflow(&ws, workflow_id),
                            "workflow",
                            &next,
                            current.version,
                        ),
                        crate::kernel::context::version_conflict(),
                    )
                    .change(
                        Change::new(
                            EntityType::Workflow,
                            workflow_id,
                            ChangeKind::Updated,
                            &next,
                        )
                        .topic(topic.clone()),
                    ))
            })
            .await?;
        Ok(next)
    }

    /// Checks `transitions_to` against the states of the workflow (`known`), excluding
    /// `self_id`; returns the ids without duplicates, in the given order.
    pub(super) fn transitions(
        known: &HashSet<&str>,
        self_id: Option<&str>,
        raw: Option<&Vec<String>>,
    ) -> AppResult<Option<Vec<String>>> {
        let Some(raw) = raw else { return Ok(None) };
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for id in raw {
            if Some(id.as_str()) == self_id {
                return Err(AppError::unprocessable(
                    "transitions_to",
                    "a state cannot list itself",
                ));
            }
            if !known.contains(id.as_str()) {
                return Err(AppError::unknown_reference(
                    "transitions_to",
                    format!("{id} is not a state of this workflow"),
                ));
            }
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        Ok(Some(out))
    }

    /// The workflow with its version advanced, for a change to its states.
    pub(super) fn touch(&self, current: &Workflow) -> Workflow {
        let mut next = current.clone();
        next.version += 1;
        next.updated_at = self.ctx.now();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, to: Option<&[&str]>) -> WorkflowState {
        WorkflowState {
            id: id.into(),
            workspace_id: "ws".into(),
            workflow_id: "wf".into(),
            name: id.into(),
            category: StateCategory::Backlog,
            position: 0,
            color: "#000000".into(),
            transitions_to: to.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn ids_of(v: Vec<&WorkflowState>) -> Vec<&str> {
        v.into_iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn allowed_targets_follow_transitions() {
        let states = vec![
            state("a", None),
            state("b", Some(&["c", "gone", "b"])),
            state("c", Some(&[])),
        ];
        assert_eq!(ids_of(allowed_targets(&states, "a")), ["b", "c"]);
        assert_eq!(ids_of(allowed_targets(&states, "b")), ["c"]);
        assert!(allowed_targets(&states, "c").is_empty());
        assert_eq!(ids_of(allowed_targets(&states, "deleted")), ["a", "b", "c"]);
    }
}
