//! Where projects and statuses are stored, and the writes, guards and change records their
//! changes consist of.

use super::input::{not_a_member, not_a_status};
use super::model::{Project, ProjectStatus};
use crate::areas::issues::references::exists_unmarked;
use crate::kernel::access::EntityType;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{exists_check, put_new};
use crate::kernel::keys;
use crate::kernel::topic::Topic;
use crate::storage::{Condition, Key, Query, SortKey, Table, WriteOp};

/// Every project status of a workspace (all in the workspace's partition).
pub(super) fn statuses_query(ws: &str) -> Query {
    Query::new(Table::Main, keys::workspace_partition(ws))
        .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT_STATUS)))
}

/// Every project of a workspace, in id order.
pub(super) fn projects_query(ws: &str) -> Query {
    Query::new(Table::Main, keys::workspace_partition(ws))
        .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT)))
}

/// Adds the writes and change records of new project statuses to a plan (for seeding them
/// in the transaction that creates a workspace): one put and one change per status.
pub fn plan_project_statuses<T>(mut plan: Plan<T>, statuses: &[ProjectStatus]) -> Plan<T> {
    for s in statuses {
        plan = plan
            .op(put_new(
                &keys::project_status(&s.workspace_id, &s.id),
                "project_status",
                s,
            ))
            .change(status_change(ChangeKind::Created, s));
    }
    plan
}

pub(super) fn status_change(kind: ChangeKind, status: &ProjectStatus) -> Change {
    Change::new(EntityType::ProjectStatus, &status.id, kind, status)
}

/// The change record of a project, on the project's own topic too.
pub(super) fn project_change(kind: ChangeKind, project: &Project) -> Change {
    Change::new(EntityType::Project, &project.id, kind, project)
        .topic(Topic::Project(project.id.to_string()))
}

/// The uniqueness marker of a project key in a workspace.
pub fn project_key_marker(workspace_id: &str, project_key: &str) -> Key {
    keys::scoped(workspace_id, keys::PROJECT_KEY, project_key)
}

/// Adds the guards that the owner and status `next` names still exist when the transaction
/// commits (the owner not being removed either: such a member cannot take a project on).
/// With `before` (an update), a reference that stays as it was is not checked again, so an
/// unrelated edit does not fail on it.
pub(super) fn reference_guards<T>(
    mut plan: Plan<T>,
    ws: &str,
    next: &Project,
    before: Option<&Project>,
) -> Plan<T> {
    if let Some(owner) = &next.owner_id
        && before.is_none_or(|b| b.owner_id != next.owner_id)
    {
        let (op, err) = exists_unmarked(keys::member(ws, owner), not_a_member("owner_id"));
        plan = plan.guarded(op, err);
    }
    if let Some(status) = &next.status_id
        && before.is_none_or(|b| b.status_id != next.status_id)
    {
        plan = plan.guarded(
            exists_check(keys::project_status(ws, status)),
            not_a_status("status_id"),
        );
    }
    plan
}

pub(super) fn delete_op(key: Key, condition: Option<Condition>) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition,
    }
}
