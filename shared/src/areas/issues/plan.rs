//! The writes of an issue change: its items, activity entries, change record and guards.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::layout::{activity_partition, identifier_item, index_items};
use super::model::{Activity, Issue};
use crate::areas::issues::references::exists_unmarked;
use crate::error::{AppError, ErrorCode};
use crate::kernel::access::EntityType;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::keys;
use crate::kernel::record::record_item;
use crate::kernel::topic::Topic;
use crate::storage::{Condition, Item, Key, Table, WriteOp};

/// Adds the writes that take an issue from `prev` to `next` (either may be absent: create,
/// delete). The canonical item is conditioned on the version read (or on not existing), so
/// the copies, written or deleted in the same transaction, always follow the winner.
pub(super) fn plan_issue_writes<T>(
    mut plan: Plan<T>,
    prev: Option<&Issue>,
    next: Option<&Issue>,
) -> Plan<T> {
    let old: Vec<Item> = prev.map(index_items).unwrap_or_default();
    let new: Vec<Item> = next.map(index_items).unwrap_or_default();
    let new_keys: HashSet<Key> = new.iter().filter_map(Key::of).collect();
    let guard = match prev {
        Some(p) => Condition::VersionEquals(p.version),
        None => Condition::NotExists,
    };
    let lost_race = || {
        AppError::new(
            ErrorCode::PreconditionFailed,
            "the issue was modified concurrently; reload and retry",
        )
    };
    for (i, item) in new.into_iter().enumerate() {
        if i == 0 {
            plan = plan.guarded(
                WriteOp::Put {
                    table: Table::Main,
                    item,
                    condition: Some(guard.clone()),
                },
                lost_race(),
            );
        } else {
            plan = plan.op(WriteOp::put(Table::Main, item));
        }
    }
    for (i, item) in old.iter().enumerate() {
        let Some(key) = Key::of(item) else { continue };
        if new_keys.contains(&key) {
            continue;
        }
        if i == 0 {
            // Deleting the issue itself.
            plan = plan.guarded(
                WriteOp::Delete {
                    table: Table::Main,
                    key,
                    condition: Some(guard.clone()),
                },
                lost_race(),
            );
        } else {
            plan = plan.op(WriteOp::Delete {
                table: Table::Main,
                key,
                condition: None,
            });
        }
    }
    plan
}

/// One field change, for the activity history.
#[derive(Clone, Debug)]
pub(super) struct FieldChange {
    field: &'static str,
    from: Value,
    to: Value,
}

/// The user-visible fields that differ between two versions of an issue.
pub(super) fn diff(a: &Issue, b: &Issue) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut cmp = |field: &'static str, x: Value, y: Value| {
        if x != y {
            out.push(FieldChange {
                field,
                from: x,
                to: y,
            });
        }
    };
    cmp("title", json!(a.title), json!(b.title));
    cmp("description", json!(a.description), json!(b.description));
    cmp("priority", json!(a.priority), json!(b.priority));
    cmp("state_id", json!(a.state_id), json!(b.state_id));
    cmp("assignee_id", json!(a.assignee_id), json!(b.assignee_id));
    cmp("label_ids", json!(a.label_ids), json!(b.label_ids));
    cmp("project_id", json!(a.project_id), json!(b.project_id));
    cmp("cycle_id", json!(a.cycle_id), json!(b.cycle_id));
    cmp("parent_id", json!(a.parent_id), json!(b.parent_id));
    out
}

fn activity_op(issue: &Issue, actor: &str, at: &str, n: usize, change: FieldChange) -> WriteOp {
    let record = Activity {
        issue_id: issue.id.clone(),
        workspace_id: issue.workspace_id.clone(),
        actor_id: actor.to_owned(),
        field: change.field.to_owned(),
        from: change.from,
        to: change.to,
        at: at.to_owned(),
        version: issue.version,
    };
    let key = Key::new(
        activity_partition(&issue.workspace_id, &issue.id),
        format!("{:010}#{n:03}", issue.version),
    );
    WriteOp::put_new(Table::Main, record_item(&key, "issue_activity", &record))
}

/// The change record of an issue, with its realtime topics.
pub(super) fn issue_change(kind: ChangeKind, issue: &Issue, previous: Option<&Issue>) -> Change {
    let mut change = Change::new(EntityType::Issue, &issue.id, kind, issue)
        .topic(Topic::Team(issue.team_id.clone()))
        .topic(Topic::Issue(issue.id.clone()));
    let mut projects: Vec<&String> = issue.project_id.iter().collect();
    if let Some(old) = previous.and_then(|p| p.project_id.as_ref())
        && !projects.contains(&old)
    {
        projects.push(old);
    }
    for p in projects {
        change = change.topic(Topic::Project(p.to_string()));
    }
    change
}

/// Adds an update of `current` to `next` (version and time already advanced): the issue
/// writes, one activity entry per changed field and the change record.
pub(super) fn plan_update<T>(
    mut plan: Plan<T>,
    current: &Issue,
    next: &Issue,
    actor: &str,
) -> Plan<T> {
    plan = plan_issue_writes(plan, Some(current), Some(next));
    for (n, change) in diff(current, next).into_iter().enumerate() {
        plan = plan.op(activity_op(next, actor, &next.updated_at, n, change));
    }
    plan.change(issue_change(ChangeKind::Updated, next, Some(current)))
}

/// The writes of a new issue, numbered already: its items, its identifier lookup (a
/// concurrent create that took the same number fails on it), the `created` activity entry,
/// `guards` and the change record.
pub(super) fn plan_create(
    issue: Issue,
    actor: &str,
    guards: &[(WriteOp, AppError)],
) -> Plan<Issue> {
    let created = FieldChange {
        field: "created",
        from: Value::Null,
        to: json!(issue.identifier),
    };
    let plan = plan_issue_writes(Plan::new(issue.clone()), None, Some(&issue))
        .guarded(
            WriteOp::put_new(Table::Main, identifier_item(&issue)),
            AppError::conflict("the issue number was taken concurrently; retry"),
        )
        .op(activity_op(&issue, actor, &issue.created_at, 0, created));
    with_guards(plan, guards).change(issue_change(ChangeKind::Created, &issue, None))
}

/// Adds conditions the transaction must meet, each failing with its own error.
pub(super) fn with_guards<T>(mut plan: Plan<T>, guards: &[(WriteOp, AppError)]) -> Plan<T> {
    for (op, err) in guards {
        plan = plan.guarded(op.clone(), err.clone());
    }
    plan
}

/// The guard of a move into a state: it still exists and is not being deleted (else the
/// issue could land in a state deleted meanwhile).
pub(super) fn state_guard(ws: &str, workflow_id: &str, state_id: &str) -> (WriteOp, AppError) {
    exists_unmarked(
        keys::state(ws, workflow_id, state_id),
        AppError::validation("state_id", "the state was deleted or is being deleted"),
    )
}
