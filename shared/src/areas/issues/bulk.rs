//! Reads and rewrites over many issues at once, for other areas' writes (cycles, the
//! dangling-reference guard) and for the sub-issues of a deleted issue.

use super::layout::entry_target;
use super::model::Issue;
use super::plan::{diff, plan_update, with_guards};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::changes::Plan;
use crate::kernel::context::{ServiceContext, exists_check};
use crate::kernel::keys;
use crate::kernel::paging::{query_all, query_until};
use crate::kernel::record::from_item;
use crate::storage::{Item, Key, Query, SortKey, Table, WriteOp};

/// Issues per transaction when one request changes many (cycle assignment, detaching).
const BULK_CHUNK: usize = 10;

/// Every issue of a main-table relation partition (a cycle's, a parent's sub-issues), up to
/// `max`, oldest first.
pub async fn relation_issues(ctx: &ServiceContext, pk: &str, max: usize) -> AppResult<Vec<Issue>> {
    let items = query_until(ctx.store.as_ref(), Query::new(Table::Main, pk), max).await?;
    items_to_issues(resolve(ctx, items).await?)
}

/// Most keys of one BatchGet.
const BATCH_GET_KEYS: usize = 100;

/// The records behind what a query of issue items returned, in its order: key-only index
/// entries (`layout::ISSUE_REF`) are read with one BatchGet per 100; canonical items and
/// whole copies are records already. Each comes with the entry it was found by, when that
/// is not the record itself (pages resume after the entry). An entry whose issue is gone
/// (deleted since an eventually consistent index was read) is left out.
pub(super) async fn records(
    ctx: &ServiceContext,
    items: Vec<Item>,
) -> AppResult<Vec<(Option<Item>, Item)>> {
    let keys: Vec<Key> = items.iter().filter_map(entry_target).collect();
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH_GET_KEYS) {
        found.extend(ctx.store.batch_get(Table::Main, chunk).await?);
    }
    let mut found = found.into_iter();
    Ok(items
        .into_iter()
        .filter_map(|item| match entry_target(&item) {
            Some(_) => found.next().flatten().map(|record| (Some(item), record)),
            None => Some((None, item)),
        })
        .collect())
}

/// `records` without the entries.
pub(super) async fn resolve(ctx: &ServiceContext, items: Vec<Item>) -> AppResult<Vec<Item>> {
    Ok(records(ctx, items)
        .await?
        .into_iter()
        .map(|(_, record)| record)
        .collect())
}

pub(super) fn items_to_issues(items: Vec<Item>) -> AppResult<Vec<Issue>> {
    items.into_iter().map(from_item).collect()
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
        .map(|(key, err)| (exists_check(key), err))
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
        out.extend(rewrite_chunk(ctx, ws, actor, chunk.to_vec(), guards, &mutate).await?);
    }
    Ok(out)
}

/// One transaction of `rewrite_issues_guarded`, re-read and decided again when a concurrent
/// write wins the race (a few times: then the caller is told to retry).
async fn rewrite_chunk<F>(
    ctx: &ServiceContext,
    ws: &str,
    actor: &str,
    mut chunk: Vec<Issue>,
    guards: &[(WriteOp, AppError)],
    mutate: &F,
) -> AppResult<Vec<Issue>>
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let mut attempt = 0;
    loop {
        let (mut out, pairs) = decide(&chunk, mutate, &ctx.now());
        if pairs.is_empty() {
            return Ok(out);
        }
        let result = ctx
            .changes
            .commit(ws, actor, &[], |_| {
                let mut plan = with_guards(Plan::new(()), guards);
                for (current, next) in &pairs {
                    plan = plan_update(plan, current, next, actor);
                }
                Ok(plan)
            })
            .await;
        match result {
            Ok(_) => {
                out.extend(pairs.into_iter().map(|(_, next)| next));
                return Ok(out);
            }
            Err(e) if e.code == ErrorCode::PreconditionFailed && attempt < 4 => {
                // Someone changed one of them: re-read the chunk and decide again.
                attempt += 1;
                let keys: Vec<Key> = chunk.iter().map(|i| keys::issue(ws, &i.id)).collect();
                let fresh = ctx.store.batch_get(Table::Main, &keys).await?;
                chunk = items_to_issues(fresh.into_iter().flatten().collect())?;
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

/// Splits a chunk into the issues `mutate` leaves as they are and (current, next) pairs for
/// the others, with next's version and time advanced.
fn decide<F>(chunk: &[Issue], mutate: &F, now: &str) -> (Vec<Issue>, Vec<(Issue, Issue)>)
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let mut unchanged = Vec::new();
    let mut pairs = Vec::new();
    for current in chunk {
        match mutate(current) {
            Some(mut next) if !diff(current, &next).is_empty() => {
                next.version = current.version + 1;
                next.updated_at = now.to_owned();
                pairs.push((current.clone(), next));
            }
            _ => unchanged.push(current.clone()),
        }
    }
    (unchanged, pairs)
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
