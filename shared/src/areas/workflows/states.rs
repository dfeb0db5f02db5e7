//! A workflow's states: create, update (rename, recolour, move, transitions) and delete,
//! each one commit that also bumps the workflow's version so clients see one change.

use std::collections::HashSet;

use super::model::*;
use super::service::*;
use crate::areas::issues::references;
use crate::error::{AppError, AppResult};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{
    color, found, put_new, put_versioned, required_text, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::limits::MAX_NAME_CHARS;
use crate::kernel::record::record_item;
use crate::kernel::topic::Topic;
use crate::storage::{Condition, Table, WriteOp};

pub(super) fn position(field: &str, p: i64) -> AppResult<i64> {
    if (0..=MAX_POSITION).contains(&p) {
        Ok(p)
    } else {
        Err(AppError::validation(
            field,
            format!("must be between 0 and {MAX_POSITION}"),
        ))
    }
}

impl WorkflowService {
    pub async fn create_state(
        &self,
        who: &Principal,
        workflow_id: &str,
        req: CreateState,
    ) -> AppResult<WorkflowState> {
        // States change under the workflow's version, which the caller never states: a
        // concurrent change to the workflow is retried, never the caller's to resolve.
        retry_unversioned(None, || self.create_state_once(who, workflow_id, &req)).await
    }

    pub(super) async fn create_state_once(
        &self,
        who: &Principal,
        workflow_id: &str,
        req: &CreateState,
    ) -> AppResult<WorkflowState> {
        let ws = ids::workspace_of(Kind::Workflow, workflow_id)?;
        let name = required_text("name", &req.name, MAX_NAME_CHARS)?;
        let state_color = color("color", &req.color)?;
        let requested_position = req.position.map(|p| position("position", p)).transpose()?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                Kind::Workflow.noun(),
                &[keys::workflow(&ws, workflow_id)],
            )
            .await?;
        let workflow: Workflow = found(got.pop().flatten(), Kind::Workflow.noun())?;
        let states = self.states(&ws, workflow_id).await?;
        if states.len() >= MAX_STATES {
            return Err(AppError::conflict(format!(
                "a workflow has at most {MAX_STATES} states"
            )));
        }
        let known: HashSet<&str> = states.iter().map(|s| s.id.as_str()).collect();
        let transitions_to = Self::transitions(&known, None, req.transitions_to.as_ref())?;
        let position = requested_position.unwrap_or_else(|| {
            states
                .iter()
                .map(|s| s.position + 1)
                .max()
                .unwrap_or(0)
                .min(MAX_POSITION)
        });
        let now = self.ctx.now();
        let state = WorkflowState {
            id: ids::new_id(Kind::State, &ws),
            workspace_id: ws.clone(),
            workflow_id: workflow_id.to_owned(),
            name,
            category: req.category,
            position,
            color: state_color,
            transitions_to,
            created_at: now.clone(),
            updated_at: now,
        };
        let next_workflow = self.touch(&workflow);
        let versioned = WorkflowVersion::new(&ws, workflow_id, &workflow, &next_workflow);
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(versioned.with_state(
                    |plan| {
                        plan.op(put_new(
                            &keys::state(&ws, workflow_id, &state.id),
                            "workflow_state",
                            &state,
                        ))
                    },
                    Change::new(
                        EntityType::WorkflowState,
                        &state.id,
                        ChangeKind::Created,
                        &state,
                    ),
                ))
            })
            .await?;
        Ok(state)
    }

    pub async fn update_state(
        &self,
        who: &Principal,
        workflow_id: &str,
        state_id: &str,
        req: UpdateState,
    ) -> AppResult<WorkflowState> {
        retry_unversioned(None, || {
            self.update_state_once(who, workflow_id, state_id, &req)
        })
        .await
    }

    pub(super) async fn update_state_once(
        &self,
        who: &Principal,
        workflow_id: &str,
        state_id: &str,
        req: &UpdateState,
    ) -> AppResult<WorkflowState> {
        let ws = ids::workspace_of(Kind::Workflow, workflow_id)?;
        state_in(&ws, state_id)?;
        let edits = StateEdits::validate(&ws, req)?;
        let mut extra = vec![
            keys::workflow(&ws, workflow_id),
            keys::state(&ws, workflow_id, state_id),
        ];
        extra.extend(
            edits
                .targets
                .iter()
                .map(|t| keys::state(&ws, workflow_id, t)),
        );
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Manage, Kind::Workflow.noun(), &extra)
            .await?;
        let mut got = got.into_iter();
        let workflow: Workflow = found(got.next().flatten(), Kind::Workflow.noun())?;
        let current: WorkflowState = found(got.next().flatten(), Kind::State.noun())?;
        let known: HashSet<&str> = edits
            .targets
            .iter()
            .zip(got)
            .filter(|(_, item)| item.is_some())
            .map(|(id, _)| id.as_str())
            .collect();
        let mut next = edits.apply(&current, &known, state_id)?;
        if next == current {
            return Ok(current);
        }
        next.updated_at = self.ctx.now();
        let next_workflow = self.touch(&workflow);
        let versioned = WorkflowVersion::new(&ws, workflow_id, &workflow, &next_workflow);
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(versioned.with_state(
                    |plan| {
                        plan.guarded(
                            WriteOp::Put {
                                table: Table::Main,
                                item: record_item(
                                    &keys::state(&ws, workflow_id, state_id),
                                    "workflow_state",
                                    &next,
                                ),
                                condition: Some(Condition::Exists),
                            },
                            AppError::not_found(Kind::State.noun()),
                        )
                    },
                    Change::new(
                        EntityType::WorkflowState,
                        state_id,
                        ChangeKind::Updated,
                        &next,
                    ),
                ))
            })
            .await?;
        Ok(next)
    }

    /// Removes a state (not the default one, not the last one). States that listed it in
    /// `transitions_to` stop listing it. Issues in it move to `replacement_state_id` (another
    /// state of the workflow, whatever the transition rules say); without one, a state that
    /// holds issues is refused (409, saying how many).
    pub async fn delete_state(
        &self,
        who: &Principal,
        workflow_id: &str,
        state_id: &str,
        replacement_state_id: Option<&str>,
    ) -> AppResult<()> {
        let ws = ids::workspace_of(Kind::Workflow, workflow_id)?;
        state_in(&ws, state_id)?;
        let (_, got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                Kind::Workflow.noun(),
                &[
                    keys::workflow(&ws, workflow_id),
                    keys::state(&ws, workflow_id, state_id),
                ],
            )
            .await?;
        let mut got = got.into_iter();
        let workflow: Workflow = found(got.next().flatten(), Kind::Workflow.noun())?;
        let target: WorkflowState = found(got.next().flatten(), Kind::State.noun())?;
        if workflow.default_state_id == state_id {
            return Err(AppError::conflict(
                "this is the workflow's default state: choose another default first",
            ));
        }
        let states = self.states(&ws, workflow_id).await?;
        if states.iter().all(|s| s.id == state_id) {
            return Err(AppError::conflict("a workflow keeps at least one state"));
        }
        let replacement = match replacement_state_id {
            None => None,
            Some(r) => match states.iter().find(|s| s.id == r.trim()) {
                Some(s) if s.id != state_id => Some(s.id.clone()),
                _ => {
                    return Err(AppError::unprocessable(
                        "replacement_state_id",
                        "must be another state of this workflow",
                    ));
                }
            },
        };
        // Its issues move first and the state goes last, marked so that no issue moves in
        // meanwhile (`areas::issues::references`).
        let key = keys::state(&ws, workflow_id, state_id);
        let marks = references::mark(&self.ctx, std::slice::from_ref(&key), |_| {
            AppError::not_found(Kind::State.noun())
        })
        .await?;
        let done = async {
            let in_state = references::issues_in_state(&self.ctx, &ws, state_id).await?;
            match (&replacement, in_state.len()) {
                (_, 0) => {}
                (None, n) => {
                    return Err(AppError::conflict(format!(
                        "{n} issue{} in this state: pass replacement_state_id (another state \
                         of this workflow) to move {} there, or move {} first",
                        if n == 1 { " is" } else { "s are" },
                        if n == 1 { "it" } else { "them" },
                        if n == 1 { "it" } else { "them" },
                    )));
                }
                (Some(to), _) => {
                    references::move_to_state(
                        &self.ctx,
                        &ws,
                        &who.user_id,
                        workflow_id,
                        state_id,
                        to,
                        in_state,
                    )
                    .await?;
                }
            }
            self.commit_state_delete(who, &workflow, &target, &states, &marks[0])
                .await
        }
        .await;
        references::settle(&self.ctx, &marks, done).await
    }

    /// The last step of a state delete: the state (if still marked by this delete), the
    /// workflow's new version and the states that listed it in `transitions_to`.
    pub(super) async fn commit_state_delete(
        &self,
        who: &Principal,
        workflow: &Workflow,
        target: &WorkflowState,
        states: &[WorkflowState],
        mark: &references::Mark,
    ) -> AppResult<()> {
        let ws = workflow.workspace_id.as_str();
        let (workflow_id, state_id) = (workflow.id.as_str(), target.id.as_str());
        let now = self.ctx.now();
        let referencing: Vec<WorkflowState> = states
            .iter()
            .filter(|s| {
                s.transitions_to
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|id| id == state_id))
            })
            .map(|s| {
                let mut next = s.clone();
                if let Some(t) = next.transitions_to.as_mut() {
                    t.retain(|id| id != state_id);
                }
                next.updated_at = now.clone();
                next
            })
            .collect();
        let next_workflow = self.touch(workflow);
        let topic = Topic::Team(workflow.team_id.clone());
        self.ctx
            .changes
            .commit(ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(())
                    .guarded(
                        put_versioned(
                            &keys::workflow(ws, workflow_id),
                            "workflow",
                            &next_workflow,
                            workflow.version,
                        ),
                        workflow_changed(),
                    )
                    .guarded(
                        mark.delete_op(),
                        references::changed_while_deleting(Kind::State.noun()),
                    )
                    .change(
                        Change::new(
                            EntityType::WorkflowState,
                            state_id,
                            ChangeKind::Deleted,
                            target,
                        )
                        .topic(topic.clone()),
                    );
                for s in &referencing {
                    plan = plan
                        .op(WriteOp::Put {
                            table: Table::Main,
                            item: record_item(
                                &keys::state(ws, workflow_id, &s.id),
                                "workflow_state",
                                s,
                            ),
                            condition: Some(Condition::Exists),
                        })
                        .change(
                            Change::new(EntityType::WorkflowState, &s.id, ChangeKind::Updated, s)
                                .topic(topic.clone()),
                        );
                }
                Ok(plan.change(
                    Change::new(
                        EntityType::Workflow,
                        workflow_id,
                        ChangeKind::Updated,
                        &next_workflow,
                    )
                    .topic(topic.clone()),
                ))
            })
            .await?;
        Ok(())
    }
}

/// A state update's fields, checked before anything is read.
struct StateEdits<'r> {
    req: &'r UpdateState,
    name: Option<String>,
    color: Option<String>,
    position: Option<i64>,
    /// The listed transition targets. They ride along in the authorizing read: a key under
    /// this workflow that exists is a state of this workflow.
    targets: Vec<String>,
}

impl<'r> StateEdits<'r> {
    fn validate(ws: &str, req: &'r UpdateState) -> AppResult<Self> {
        let name = req
            .name
            .as_deref()
            .map(|n| required_text("name", n, MAX_NAME_CHARS))
            .transpose()?;
        let state_color = req
            .color
            .as_deref()
            .map(|c| color("color", c))
            .transpose()?;
        let new_position = req.position.map(|p| position("position", p)).transpose()?;
        let targets: Vec<String> = match &req.transitions_to {
            Some(Some(ids)) => ids.clone(),
            _ => Vec::new(),
        };
        if targets.len() > MAX_STATES {
            return Err(AppError::validation(
                "transitions_to",
                format!("lists at most {MAX_STATES} states"),
            ));
        }
        for t in &targets {
            state_in(ws, t).map_err(|_| {
                AppError::unknown_reference(
                    "transitions_to",
                    format!("{t} is not a state of this workflow"),
                )
            })?;
        }
        Ok(Self {
            req,
            name,
            color: state_color,
            position: new_position,
            targets,
        })
    }

    /// The state with these edits; `known` are the listed targets that exist.
    fn apply(
        &self,
        current: &WorkflowState,
        known: &HashSet<&str>,
        state_id: &str,
    ) -> AppResult<WorkflowState> {
        let mut next = current.clone();
        if let Some(name) = &self.name {
            next.name = name.clone();
        }
        if let Some(category) = self.req.category {
            next.category = category;
        }
        if let Some(c) = &self.color {
            next.color = c.clone();
        }
        if let Some(p) = self.position {
            next.position = p;
        }
        if let Some(t) = &self.req.transitions_to {
            next.transitions_to = WorkflowService::transitions(known, Some(state_id), t.as_ref())?;
        }
        Ok(next)
    }
}

/// A state created or updated together with its workflow's next version: clients see the
/// workflow change with every state change, and a concurrent change to the workflow fails
/// the transaction (to be retried by `retry_unversioned`).
struct WorkflowVersion<'a> {
    ws: &'a str,
    workflow_id: &'a str,
    current: &'a Workflow,
    next: &'a Workflow,
}

impl<'a> WorkflowVersion<'a> {
    fn new(ws: &'a str, workflow_id: &'a str, current: &'a Workflow, next: &'a Workflow) -> Self {
        Self {
            ws,
            workflow_id,
            current,
            next,
        }
    }

    /// The workflow's put, then what `state_write` adds, then the state's change and the
    /// workflow's, both on the team's topic.
    fn with_state(
        &self,
        state_write: impl FnOnce(Plan<()>) -> Plan<()>,
        state_change: Change,
    ) -> Plan<()> {
        let topic = Topic::Team(self.current.team_id.clone());
        let plan = Plan::new(()).guarded(
            put_versioned(
                &keys::workflow(self.ws, self.workflow_id),
                "workflow",
                self.next,
                self.current.version,
            ),
            version_conflict(),
        );
        state_write(plan)
            .change(state_change.topic(topic.clone()))
            .change(
                Change::new(
                    EntityType::Workflow,
                    self.workflow_id,
                    ChangeKind::Updated,
                    self.next,
                )
                .topic(topic),
            )
    }
}
