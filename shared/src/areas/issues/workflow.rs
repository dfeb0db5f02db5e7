//! The states of an issue's workflow and the moves between them (cycles read them too).

use crate::areas::workflows::WorkflowState;
use crate::error::AppResult;
use crate::kernel::context::ServiceContext;
use crate::kernel::keys;
use crate::kernel::record::from_item;
use crate::storage::{Query, SortKey, Table};

/// Every state of a workflow, by position.
pub async fn workflow_states(
    ctx: &ServiceContext,
    ws: &str,
    workflow_id: &str,
) -> AppResult<Vec<WorkflowState>> {
    let prefix = format!("{}#{workflow_id}#", keys::STATE);
    let mut states = states_from(ctx, ws, prefix).await?;
    states.sort_by_key(|s| s.position);
    Ok(states)
}

/// Every state of every workflow of the workspace.
pub(super) async fn workspace_states(
    ctx: &ServiceContext,
    ws: &str,
) -> AppResult<Vec<WorkflowState>> {
    states_from(ctx, ws, format!("{}#", keys::STATE)).await
}

/// The states whose keys begin with `prefix` (one query of up to 1,000).
async fn states_from(
    ctx: &ServiceContext,
    ws: &str,
    prefix: String,
) -> AppResult<Vec<WorkflowState>> {
    let page = ctx
        .store
        .query(
            &Query::new(Table::Main, keys::workspace_partition(ws))
                .sort(SortKey::BeginsWith(prefix))
                .limit(1000),
        )
        .await?;
    page.items.into_iter().map(from_item).collect()
}

/// The states `from` may move to (`transitions_to` of `None`: any other state).
pub fn allowed_targets<'a>(
    states: &'a [WorkflowState],
    from: Option<&WorkflowState>,
) -> Vec<&'a WorkflowState> {
    states
        .iter()
        .filter(|s| match from {
            None => true,
            Some(f) if s.id == f.id => false,
            Some(f) => f
                .transitions_to
                .as_ref()
                .is_none_or(|targets| targets.contains(&s.id)),
        })
        .collect()
}
