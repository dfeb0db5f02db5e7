//! Reads and rewrites over many issues at once, for other areas' writes (cycles, the
//! dangling-reference guard) and for the sub-issues of a deleted issue.

use super::list::MAX_SORTED_SET;
use super::model::Issue;
use super::plan::{diff, exists_check, plan_update};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::changes::Plan;
use crate::kernel::context::ServiceContext;
use crate::kernel::keys;
use crate::kernel::paging::query_all;
use crate::kernel::record::from_item;
use crate::storage::{Key, Query, SortKey, Table, WriteOp};

/// Issues per transaction when one request changes many (cycle assignment, detaching).
pub(super) const BULK_CHUNK: usize = 10;

/// Every issue of a main-table relation partition (a cycle's, a parent's sub-issues), up to
/// `max`, oldest first.
pub async fn relation_issues(ctx: &ServiceContext, pk: &str, max: usize) -> AppResult<Vec<Issue>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = ctx
            .store
            .query(
                &Query::new(Table::Main, pk)
                    .limit(MAX_SORTED_SET)
                    .cursor(cursor.take()),
            )
            .await?;
        for item in page.items {
            out.push(from_item(item)?);
        }
        match page.next_cursor {
            Some(c) if out.len() < max => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Applies `mutate` to many issues, `BULK_CHUNK` per transaction (each atomic, with activity
/// and change records). An issue changed concurrently is re-read and the change re-applied.
/// `guard`, when given, must exist in every transaction (e.g. the cycle being assigned).
pub async fn rewrite_issues<F>(
    ctx: &ServiceContext,
    ws: &str,
    actor: &str,
    issues: Vec<Issue>,
    guard: Option<(Key, AppError)>,
    mutate: F,
) -> AppResult<Vec<Issue>>
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let guards: Vec<(WriteOp, AppError)> = guard
        .into_iter()
        .map(|(key, err)| exists_check(key, err))
        .collect();
    rewrite_issues_guarded(ctx, ws, actor, issues, &guards, mutate).await
}

/// `rewrite_issues` with any guards (conditions every transaction must meet).
pub async fn rewrite_issues_guarded<F>(
    ctx: &ServiceContext,
    ws: &str,
    actor: &str,
    issues: Vec<Issue>,
    guards: &[(WriteOp, AppError)],
    mutate: F,
) -> AppResult<Vec<Issue>>
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let mut out = Vec::with_capacity(issues.len());
    for chunk in issues.chunks(BULK_CHUNK) {
        let mut chunk = chunk.to_vec();
        let mut attempt = 0;
        loop {
            let now = ctx.now();
            let mut unchanged = Vec::new();
            let mut pairs = Vec::new();
            for current in &chunk {
                match mutate(current) {
                    Some(mut next) if !diff(current, &next).is_empty() => {
                        next.version = current.version + 1;
                        next.updated_at = now.clone();
                        pairs.push((current.clone(), next));
                    }
                    _ => unchanged.push(current.clone()),
                }
            }
            if pairs.is_empty() {
                out.extend(unchanged);
                break;
            }
            let result = ctx
                .changes
                .commit(ws, actor, &[], |_| {
                    let mut plan = Plan::new(());
                    for (op, err) in guards {
                        plan = plan.guarded(op.clone(), err.clone());
                    }
                    for (current, next) in &pairs {
                        plan = plan_update(plan, current, next, actor);
                    }
                    Ok(plan)
                })
                .await;
            match result {
                Ok(_) => {
                    out.extend(unchanged);
                    out.extend(pairs.into_iter().map(|(_, next)| next));
                    break;
                }
                Err(e) if e.code == ErrorCode::PreconditionFailed && attempt < 4 => {
                    // Someone changed one of them: re-read the chunk and decide again.
                    attempt += 1;
                    let keys: Vec<Key> = chunk.iter().map(|i| keys::issue(ws, &i.id)).collect();
                    let fresh = ctx.store.batch_get(Table::Main, &keys).await?;
                    chunk = fresh
                        .into_iter()
                        .flatten()
                        .map(from_item)
                        .collect::<AppResult<_>>()?;
                }
                // None of these writes states a version: losing every round is contention,
                // not the caller's stale read.
                Err(e) if e.code == ErrorCode::PreconditionFailed => {
                    return Err(AppError::unavailable(
                        "these issues are being changed by many writers at once; retry",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// Every issue of the workspace that `keep` accepts, from the canonical items (strongly
/// consistent, every page): for the rare write that must find issues by a field that no copy
/// is keyed by (a label, a state).
pub async fn workspace_issues(
    ctx: &ServiceContext,
    ws: &str,
    keep: impl Fn(&Issue) -> bool,
) -> AppResult<Vec<Issue>> {
    let items = query_all(
        ctx.store.as_ref(),
        Query::new(Table::Main, keys::workspace_partition(ws))
            .sort(SortKey::BeginsWith(format!("{}#", keys::ISSUE))),
    )
    .await?;
    let mut out = Vec::new();
    for item in items {
        let issue: Issue = from_item(item)?;
        if keep(&issue) {
            out.push(issue);
        }
    }
    Ok(out)
}
