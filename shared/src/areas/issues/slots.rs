//! The references a create or update names (assignee, labels, project, cycle, parent): read
//! in the authorization batch, then checked and turned into guards for the transaction.

use serde_json::Value;

use super::model::Issue;
use crate::areas::issues::references::exists_unmarked;
use crate::error::{AppError, AppResult};
use crate::kernel::context::exists_check;
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

/// Where each reference's item sits in the authorization batch.
pub(super) struct RefSlots {
    assignee: Option<usize>,
    labels: Vec<usize>,
    project: Option<usize>,
    cycle: Option<usize>,
    parent: Option<usize>,
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

    /// Keeps only the references an update changes, so that one left as it was is not
    /// checked again (an unchanged dangling reference is left alone).
    pub(super) fn keep_changed(
        mut self,
        mut slots: RefSlots,
        current: &Issue,
        next: &Issue,
    ) -> (Self, RefSlots) {
        if current.assignee_id == next.assignee_id {
            self.assignee = None;
            slots.assignee = None;
        }
        if current.project_id == next.project_id {
            self.project = None;
            slots.project = None;
        }
        if current.cycle_id == next.cycle_id {
            self.cycle = None;
            slots.cycle = None;
        }
        if current.parent_id == next.parent_id {
            self.parent = None;
            slots.parent = None;
        }
        (self.labels, slots.labels) = self
            .labels
            .iter()
            .cloned()
            .zip(slots.labels.iter().copied())
            .filter(|(label, _)| !current.label_ids.contains(label))
            .unzip();
        (self, slots)
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
            guards.push(still_there(
                &items[i],
                AppError::unknown_reference("assignee_id", "is not a member of this workspace"),
                keys::member(ws, user),
                AppError::validation(
                    "assignee_id",
                    "is no longer a member of this workspace (or is being removed)",
                ),
            )?);
        }
        for (&i, label) in self.labels.iter().zip(&req.labels) {
            guards.push(still_there(
                &items[i],
                AppError::unknown_reference(
                    "label_ids",
                    format!("label {label} not found in this workspace"),
                ),
                keys::label(ws, label),
                AppError::validation(
                    "label_ids",
                    format!("label {label} was deleted or is being deleted"),
                ),
            )?);
        }
        if let (Some(i), Some(project)) = (self.project, &req.project) {
            guards.push(still_there(
                &items[i],
                AppError::unknown_reference("project_id", "project not found in this workspace"),
                keys::project(ws, project),
                AppError::validation("project_id", "the project was deleted or is being deleted"),
            )?);
        }
        if let (Some(i), Some(cycle)) = (self.cycle, &req.cycle) {
            guards.push(cycle_guard(items[i].take(), ws, cycle, team_id)?);
        }
        let parent = match self.parent {
            Some(i) => Some(parent_of(&mut items[i], req, team_id, self_id)?),
            None => None,
        };
        Ok(Refs { parent, guards })
    }
}

/// A reference the batch found (else `missing`), guarded to still exist, unmarked, when the
/// transaction commits (else `gone`).
fn still_there(
    item: &Option<Item>,
    missing: AppError,
    key: Key,
    gone: AppError,
) -> AppResult<(WriteOp, AppError)> {
    if item.is_none() {
        return Err(missing);
    }
    Ok(exists_unmarked(key, gone))
}

/// A cycle must be the issue's team's; cycles are never marked, only deleted.
fn cycle_guard(
    item: Option<Item>,
    ws: &str,
    cycle: &str,
    team_id: &str,
) -> AppResult<(WriteOp, AppError)> {
    let item = item.ok_or_else(|| AppError::unknown_reference("cycle_id", "cycle not found"))?;
    if item.get("team_id").and_then(Value::as_str) != Some(team_id) {
        return Err(AppError::unprocessable(
            "cycle_id",
            "the cycle belongs to another team",
        ));
    }
    Ok((
        exists_check(keys::cycle(ws, cycle)),
        AppError::validation("cycle_id", "the cycle was deleted"),
    ))
}

/// The parent named: another issue of the same team (loops further up are the caller's to
/// check).
fn parent_of(
    item: &mut Option<Item>,
    req: &RefRequest,
    team_id: &str,
    self_id: Option<&str>,
) -> AppResult<Issue> {
    if req.parent.as_deref() == self_id {
        return Err(AppError::validation(
            "parent_id",
            "an issue cannot be its own parent",
        ));
    }
    let p: Issue = item
        .take()
        .map(from_item)
        .transpose()?
        .ok_or_else(|| AppError::unknown_reference("parent_id", "parent issue not found"))?;
    if p.team_id != team_id {
        return Err(AppError::validation(
            "parent_id",
            "the parent issue belongs to another team",
        ));
    }
    Ok(p)
}
