//! The references a create or update names (assignee, labels, project, cycle, parent): read
//! in the authorization batch, then checked and turned into guards for the transaction.

use serde_json::Value;

use super::model::Issue;
use super::plan::exists_check;
use crate::areas::issues::references::exists_unmarked;
use crate::error::{AppError, AppResult};
use crate::kernel::keys;
use crate::kernel::record::from_item;
use crate::storage::{Item, Key, WriteOp};

/// References a create or update names, read in the authorization batch.
#[derive(Default)]
pub(super) struct RefRequest {
    pub(super) assignee: Option<String>,
    pub(super) labels: Vec<String>,
    pub(super) project: Option<String>,
    pub(super) cycle: Option<String>,
    pub(super) parent: Option<String>,
}

pub(super) struct RefSlots {
    pub(super) assignee: Option<usize>,
    pub(super) labels: Vec<usize>,
    pub(super) project: Option<usize>,
    pub(super) cycle: Option<usize>,
    pub(super) parent: Option<usize>,
}

impl RefRequest {
    pub(super) fn keys(&self, ws: &str, keys_out: &mut Vec<Key>) -> RefSlots {
        let mut push = |k: Key| {
            keys_out.push(k);
            keys_out.len() - 1
        };
        RefSlots {
            assignee: self.assignee.as_ref().map(|u| push(keys::member(ws, u))),
            labels: self
                .labels
                .iter()
                .map(|l| push(keys::label(ws, l)))
                .collect(),
            project: self.project.as_ref().map(|p| push(keys::project(ws, p))),
            cycle: self.cycle.as_ref().map(|c| push(keys::cycle(ws, c))),
            parent: self.parent.as_ref().map(|p| push(keys::issue(ws, p))),
        }
    }
}

/// What the referenced records said, checked.
pub(super) struct Refs {
    pub(super) parent: Option<Issue>,
    pub(super) guards: Vec<(WriteOp, AppError)>,
}

impl RefSlots {
    /// Checks the references of an issue of `team_id` (`self_id` for updates).
    pub(super) fn check(
        &self,
        ws: &str,
        req: &RefRequest,
        items: &mut [Option<Item>],
        team_id: &str,
        self_id: Option<&str>,
    ) -> AppResult<Refs> {
        let mut guards = Vec::new();
        if let (Some(i), Some(user)) = (self.assignee, &req.assignee) {
            if items[i].is_none() {
                return Err(AppError::unknown_reference(
                    "assignee_id",
                    "is not a member of this workspace",
                ));
            }
            guards.push(exists_unmarked(
                keys::member(ws, user),
                AppError::validation(
                    "assignee_id",
                    "is no longer a member of this workspace (or is being removed)",
                ),
            ));
        }
        for (&i, label) in self.labels.iter().zip(&req.labels) {
            if items[i].is_none() {
                return Err(AppError::unknown_reference(
                    "label_ids",
                    format!("label {label} not found in this workspace"),
                ));
            }
            guards.push(exists_unmarked(
                keys::label(ws, label),
                AppError::validation(
                    "label_ids",
                    format!("label {label} was deleted or is being deleted"),
                ),
            ));
        }
        if let (Some(i), Some(project)) = (self.project, &req.project) {
            if items[i].is_none() {
                return Err(AppError::unknown_reference(
                    "project_id",
                    "project not found in this workspace",
                ));
            }
            guards.push(exists_unmarked(
                keys::project(ws, project),
                AppError::validation("project_id", "the project was deleted or is being deleted"),
            ));
        }
        if let (Some(i), Some(cycle)) = (self.cycle, &req.cycle) {
            let item = items[i]
                .take()
                .ok_or_else(|| AppError::unknown_reference("cycle_id", "cycle not found"))?;
            if item.get("team_id").and_then(Value::as_str) != Some(team_id) {
                return Err(AppError::unprocessable(
                    "cycle_id",
                    "the cycle belongs to another team",
                ));
            }
            guards.push(exists_check(
                keys::cycle(ws, cycle),
                AppError::validation("cycle_id", "the cycle was deleted"),
            ));
        }
        let mut parent = None;
        if let Some(i) = self.parent {
            if req.parent.as_deref() == self_id {
                return Err(AppError::validation(
                    "parent_id",
                    "an issue cannot be its own parent",
                ));
            }
            let p: Issue = items[i].take().map(from_item).transpose()?.ok_or_else(|| {
                AppError::unknown_reference("parent_id", "parent issue not found")
            })?;
            if p.team_id != team_id {
                return Err(AppError::validation(
                    "parent_id",
                    "the parent issue belongs to another team",
                ));
            }
            parent = Some(p);
        }
        Ok(Refs { parent, guards })
    }
}
