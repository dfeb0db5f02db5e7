//! How labels lie in the table and the writes that change them.
//!
//! A label is `WS#{ws}` / `LABEL#{id}`; its name is claimed by a marker `WS#{ws}` /
//! `LABELNAME#{lower-case name}` (owner: the label's id), written in the same transaction as
//! the label, so names are unique per workspace case-insensitively. The builders below are
//! the only writers of both, for single requests and batches alike; what each costs is
//! stated in `kernel::limits` (`LABEL_*_OPS`), which bounds the batches.

use serde_json::json;

use super::model::Label;
use crate::areas::issues::references::Mark;
use crate::error::{AppError, ErrorCode};
use crate::kernel::access::EntityType;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{claim, put_new, put_versioned, version_conflict};
use crate::kernel::keys;
use crate::storage::{Condition, Item, Key, Table, WriteOp};

/// The uniqueness marker of a label name in a workspace (`WS#{ws}` / `LABELNAME#{lower}`).
pub fn label_name_key(workspace_id: &str, name: &str) -> Key {
    keys::scoped(workspace_id, keys::LABEL_NAME, &name.to_lowercase())
}

/// A name another label holds: 409 on `name`.
pub(super) fn name_conflict(message: impl Into<String>) -> AppError {
    AppError::validation("name", message).with_code(ErrorCode::Conflict)
}

fn name_taken(index: Option<usize>) -> AppError {
    AppError {
        index,
        ..name_conflict("a label with this name already exists in the workspace")
    }
}

/// Whether an update moves the label's name marker.
pub(super) fn renamed(current: &Label, next: &Label) -> bool {
    current.name.to_lowercase() != next.name.to_lowercase()
}

/// The label a stored name marker belongs to.
pub(super) fn owner_of(marker: Option<&Item>) -> Option<&str> {
    marker
        .and_then(|m| m.get("owner_id"))
        .and_then(|v| v.as_str())
}

/// Creating `label` (`LABEL_CREATE_OPS`): the label, its name marker (a taken name is the
/// 409, about batch item `index` when given) and its `label.created` record.
pub(super) fn create_ops<T>(plan: Plan<T>, label: &Label, index: Option<usize>) -> Plan<T> {
    let ws = &label.workspace_id;
    plan.op(put_new(&keys::label(ws, &label.id), "label", label))
        .guarded(
            claim(label_name_key(ws, &label.name), &label.id),
            name_taken(index),
        )
        .change(Change::new(
            EntityType::Label,
            &label.id,
            ChangeKind::Created,
            label,
        ))
}

/// Updating `current` to `next` (at most `LABEL_UPDATE_OPS`): the put conditioned on the
/// version read (412), for a rename the marker swap (409 when the new name was taken
/// meanwhile), and the `label.updated` record. Errors name batch item `index` when given.
pub(super) fn update_ops<T>(
    plan: Plan<T>,
    current: &Label,
    next: &Label,
    index: Option<usize>,
) -> Plan<T> {
    let ws = &current.workspace_id;
    let mut plan = plan.guarded(
        put_versioned(&keys::label(ws, &next.id), "label", next, current.version),
        AppError {
            index,
            // A batch item names what did not match (as when it was stale when read).
            field: index.map(|_| "version".to_owned()),
            ..version_conflict()
        },
    );
    if renamed(current, next) {
        plan = plan
            .guarded(
                claim(label_name_key(ws, &next.name), &next.id),
                name_taken(index),
            )
            .op(WriteOp::Delete {
                table: Table::Main,
                key: label_name_key(ws, &current.name),
                condition: Some(Condition::AttrEquals("owner_id".into(), json!(current.id))),
            });
    }
    plan.change(Change::new(
        EntityType::Label,
        &next.id,
        ChangeKind::Updated,
        next,
    ))
}

/// Deleting `label` (`LABEL_DELETE_OPS`): the label, only while it carries `mark` (else
/// `changed`), its name marker and its `label.deleted` record.
pub(super) fn delete_ops<T>(
    plan: Plan<T>,
    mark: &Mark,
    label: &Label,
    changed: AppError,
) -> Plan<T> {
    plan.guarded(mark.delete_op(), changed)
        .op(WriteOp::Delete {
            table: Table::Main,
            key: label_name_key(&label.workspace_id, &label.name),
            condition: None,
        })
        .change(Change::new(
            EntityType::Label,
            &label.id,
            ChangeKind::Deleted,
            label,
        ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::areas::issues::references;
    use crate::areas::labels::LabelLevel;
    use crate::clock::SystemClock;
    use crate::kernel::context::ServiceContext;
    use crate::kernel::ids::{self, Kind};
    use crate::kernel::limits::{
        LABEL_CREATE_OPS, LABEL_DELETE_OPS, LABEL_UPDATE_OPS, MAX_LABEL_BATCH_CREATE,
        MAX_LABEL_BATCH_DELETE, MAX_LABEL_BATCH_UPDATE,
    };
    use crate::storage::MAX_TRANSACTION_OPS;
    use crate::storage::embedded::EmbeddedStore;

    fn label(ws: &str, name: &str) -> Label {
        Label {
            id: ids::new_id(Kind::Label, ws),
            workspace_id: ws.to_owned(),
            name: name.to_owned(),
            color: "#000000".into(),
            level: LabelLevel::Issue,
            description: None,
            created_by: "u1".into(),
            version: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// Operations `plan` spends on its items.
    fn item_ops(plan: Plan<()>) -> usize {
        plan.op_count()
    }

    /// The costs `kernel::limits` states are what the builders write, and the batch limits
    /// derived from them fit one transaction (a batch one larger would not).
    #[tokio::test]
    async fn the_stated_costs_are_what_the_builders_write() {
        let ws = uuid::Uuid::now_v7().to_string();
        let current = label(&ws, "old");
        let create = create_ops(Plan::new(()), &current, None);
        assert_eq!(item_ops(create), LABEL_CREATE_OPS);

        let mut rename = current.clone();
        rename.name = "new".into();
        let mut recolor = current.clone();
        recolor.color = "#FFFFFF".into();
        let mut recase = current.clone();
        recase.name = "OLD".into();
        assert_eq!(
            item_ops(update_ops(Plan::new(()), &current, &rename, None)),
            LABEL_UPDATE_OPS
        );
        assert!(item_ops(update_ops(Plan::new(()), &current, &recolor, None)) < LABEL_UPDATE_OPS);
        assert!(item_ops(update_ops(Plan::new(()), &current, &recase, None)) < LABEL_UPDATE_OPS);

        let ctx = ServiceContext::new(Arc::new(EmbeddedStore::in_memory()), Arc::new(SystemClock));
        let key = keys::label(&ws, &current.id);
        ctx.store
            .transact(vec![put_new(&key, "label", &current)])
            .await
            .unwrap();
        let marks = references::mark(&ctx, &[key], |_| AppError::not_found("label"))
            .await
            .unwrap();
        let delete = delete_ops(
            Plan::new(()),
            &marks[0],
            &current,
            AppError::not_found("label"),
        );
        assert_eq!(item_ops(delete), LABEL_DELETE_OPS);

        for (max, cost) in [
            (MAX_LABEL_BATCH_CREATE, LABEL_CREATE_OPS),
            (MAX_LABEL_BATCH_UPDATE, LABEL_UPDATE_OPS),
            (MAX_LABEL_BATCH_DELETE, LABEL_DELETE_OPS),
        ] {
            let transaction = |items: usize| items * cost;
            assert!(transaction(max) <= MAX_TRANSACTION_OPS);
            assert!(transaction(max + 1) > MAX_TRANSACTION_OPS);
        }
        assert_eq!(
            (
                MAX_LABEL_BATCH_CREATE,
                MAX_LABEL_BATCH_UPDATE,
                MAX_LABEL_BATCH_DELETE
            ),
            (33, 25, 33)
        );
    }
}
