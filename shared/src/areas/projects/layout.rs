//! Where projects and statuses are stored, and the items and change records their writes
//! consist of.

use super::model::ProjectStatus;
use crate::kernel::access::EntityType;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::put_new;
use crate::kernel::keys;
use crate::storage::{Condition, Key, Table, WriteOp};

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
            .change(Change::new(
                EntityType::ProjectStatus,
                &s.id,
                ChangeKind::Created,
                s,
            ));
    }
    plan
}

/// The uniqueness marker of a project key in a workspace.
pub fn project_key_marker(workspace_id: &str, project_key: &str) -> Key {
    keys::scoped(workspace_id, keys::PROJECT_KEY, project_key)
}

pub(super) fn delete_op(key: Key, condition: Option<Condition>) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition,
    }
}

pub(super) fn exists_check(key: Key) -> WriteOp {
    WriteOp::ConditionCheck {
        table: Table::Main,
        key,
        condition: Condition::Exists,
    }
}
