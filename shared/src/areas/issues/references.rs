//! References that must not outlive what they name.
//!
//! Issues name labels (`label_ids`), a project (`project_id`), an assignee (a member) and a
//! workflow state (`state_id`); projects name an owner (a member). Deleting a label, a
//! project or a state, or removing a member, rewrites what refers to it and removes the
//! entity **last**:
//!
//! 1. The entity is *marked*: its item gets a `deleting` attribute holding a random token.
//!    Every write that newly refers to an entity checks, in its transaction, that the item
//!    exists *without* that attribute ([`exists_unmarked`], in place of a plain existence
//!    check), so from the mark's commit on no new reference can appear: a writer that read
//!    before it fails at commit.
//! 2. The referrers are found with strongly consistent reads (the mark is committed first, so
//!    every reference written before it is seen) and rewritten, at most 10 issues per
//!    transaction, each with its activity and its `issue.updated` record
//!    (`issues::rewrite_issues_guarded`). Writers that keep an existing reference are
//!    serialised with this by the issue's `version`.
//! 3. One transaction deletes the entity, conditioned on it still carrying the token of step 1
//!    ([`Mark::delete_op`]), with its change record. A whole-item write of the entity in
//!    between (an edit) drops the mark; the last step then fails (409) instead of deleting
//!    something that may have been referred to again.
//!
//! Until step 3 the entity exists, so nothing ever names an entity that is gone. A delete
//! interrupted in step 2 (a timeout, a crash, the per-request bound below) leaves a
//! consistent state: some referrers rewritten, the entity still there and refusing new
//! references. Repeating the request finds the mark, adopts it and continues, so the delete is
//! idempotent and resumable. Each request rewrites at most [`MAX_REWRITES_PER_REQUEST`]
//! issues and answers 503 with `Retry-After` when more remain, so a fan-out over thousands of
//! issues fits API Gateway's 29 s in as many requests as it takes.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::areas::issues::{self, Issue};
use crate::areas::projects::Project;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::EntityType;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{ServiceContext, put_versioned, version_conflict};
use crate::kernel::keys;
use crate::kernel::paging::query_all;
use crate::kernel::record::from_item;
use crate::kernel::topic::Topic;
use crate::storage::{
    Condition, Item, Key, MAX_TRANSACTION_OPS, Query, SortKey, Table, Update, WriteOp,
};

/// The attribute that marks an entity being deleted; its value is the delete's token.
pub const MARK: &str = "deleting";
/// Issues one request rewrites before it answers 503 (about 200 storage calls: a commit of
/// 10 issues is a counter read and a transaction).
pub const MAX_REWRITES_PER_REQUEST: usize = 1000;
/// Projects per transaction when their owner is cleared (a put and a change record each).
const PROJECTS_PER_COMMIT: usize = 40;
/// Rounds of re-reading when concurrent writers keep winning.
const MAX_ROUNDS: usize = 5;

/// The mark this request put on an entity, or found there (see the module docs).
#[derive(Clone, Debug)]
pub struct Mark {
    pub key: Key,
    token: String,
}

impl Mark {
    /// Deletes the entity, only if it still carries this mark: the mark then held from
    /// before its referrers were read until now.
    pub fn delete_op(&self) -> WriteOp {
        WriteOp::Delete {
            table: Table::Main,
            key: self.key.clone(),
            condition: Some(Condition::AttrEquals(MARK.into(), json!(self.token))),
        }
    }

    fn unmark_op(&self) -> WriteOp {
        WriteOp::Update {
            table: Table::Main,
            key: self.key.clone(),
            update: Update::default().remove(MARK),
            condition: Some(Condition::AttrEquals(MARK.into(), json!(self.token))),
        }
    }
}

/// The guard of a write that newly refers to the entity at `key`: it exists and is not
/// being deleted.
pub fn exists_unmarked(key: Key, error: AppError) -> (WriteOp, AppError) {
    (
        WriteOp::ConditionCheck {
            table: Table::Main,
            key,
            condition: Condition::ExistsWithout(MARK.into()),
        },
        error,
    )
}

/// The answer when the last step of a delete found the entity changed since it was marked.
pub fn changed_while_deleting(what: &str) -> AppError {
    AppError::conflict(format!(
        "the {what} was changed while it was being deleted; retry the delete"
    ))
}

/// Marks the entities at `keys` (at most 100, each existing), adopting marks already there
/// (a delete being repeated, or running twice). Usually one storage call. A key whose item
/// is gone is `not_found`.
pub async fn mark(
    ctx: &ServiceContext,
    keys: &[Key],
    not_found: impl Fn(usize) -> AppError,
) -> AppResult<Vec<Mark>> {
    debug_assert!(keys.len() <= MAX_TRANSACTION_OPS);
    let mut found: Vec<Option<String>> = vec![None; keys.len()];
    for _ in 0..MAX_ROUNDS {
        let mut ops = Vec::new();
        let tokens: Vec<String> = found
            .iter()
            .zip(keys)
            .map(|(token, key)| match token {
                Some(t) => t.clone(),
                None => {
                    let t = uuid::Uuid::new_v4().simple().to_string();
                    ops.push(WriteOp::Update {
                        table: Table::Main,
                        key: key.clone(),
                        update: Update::default().set(MARK, t.clone()),
                        condition: Some(Condition::ExistsWithout(MARK.into())),
                    });
                    t
                }
            })
            .collect();
        let done = ops.is_empty() || {
            match ctx.store.transact(ops).await {
                Ok(()) => true,
                Err(e) if e.is_condition_failure() => false,
                Err(e) => return Err(e.into()),
            }
        };
        if done {
            return Ok(keys
                .iter()
                .zip(tokens)
                .map(|(key, token)| Mark {
                    key: key.clone(),
                    token,
                })
                .collect());
        }
        // Marked already (adopt it) or gone.
        let stored = ctx.store.batch_get(Table::Main, keys).await?;
        for (i, item) in stored.into_iter().enumerate() {
            let Some(item) = item else {
                return Err(not_found(i));
            };
            found[i] = item.get(MARK).and_then(Value::as_str).map(str::to_owned);
        }
    }
    Err(AppError::unavailable(
        "concurrent deletes of the same records kept interfering; retry",
    ))
}

/// Removes marks of a delete that was refused (best effort: a mark left behind only makes
/// the entity refuse new references until a delete of it is repeated or it is edited).
/// Marks already gone or replaced are left alone.
pub async fn unmark_all(ctx: &ServiceContext, marks: &[Mark]) {
    for chunk in marks.chunks(MAX_TRANSACTION_OPS) {
        let result = match ctx
            .store
            .transact(chunk.iter().map(Mark::unmark_op).collect())
            .await
        {
            // One of them is gone: the others one by one.
            Err(e) if e.is_condition_failure() && chunk.len() > 1 => {
                for m in chunk {
                    let _ = ctx.store.transact(vec![m.unmark_op()]).await;
                }
                Ok(())
            }
            Err(e) if e.is_condition_failure() => Ok(()),
            other => other,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not remove deletion marks");
        }
    }
}

/// Ends the work a delete did under `marks`. A refusal removes them: the entity stays and
/// may be referred to again. Success needs nothing (the entity is gone), and a 503 keeps
/// them: the client is told to repeat the request, which continues under them.
pub async fn settle<T>(ctx: &ServiceContext, marks: &[Mark], result: AppResult<T>) -> AppResult<T> {
    if let Err(e) = &result
        && e.code != ErrorCode::ServiceUnavailable
    {
        unmark_all(ctx, marks).await;
    }
    result
}

/// Rewrites `pending` with `mutate` (each issue: activity + `issue.updated`), at most
/// `MAX_REWRITES_PER_REQUEST` of them; 503 when more remain or writers kept interfering,
/// so that the client repeats the request, which continues where this one stopped.
async fn rewrite<F>(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    mut pending: Vec<Issue>,
    guards: &[(WriteOp, AppError)],
    mutate: F,
) -> AppResult<()>
where
    F: Fn(&Issue) -> Option<Issue>,
{
    let more = pending.len() > MAX_REWRITES_PER_REQUEST;
    pending.truncate(MAX_REWRITES_PER_REQUEST);
    let n = pending.len();
    issues::rewrite_issues_guarded(ctx, workspace_id, actor, pending, guards, mutate)
        .await
        .map_err(|e| match e.code {
            ErrorCode::PreconditionFailed => AppError::unavailable(
                "issues kept changing while this delete updated them; repeat the request to continue",
            ),
            _ => e,
        })?;
    if more {
        return Err(AppError::unavailable(format!(
            "{n} issues were updated and more remain; repeat the request to continue"
        )));
    }
    Ok(())
}

/// Removes `label_ids` from every issue of the workspace that has any of them.
pub async fn detach_labels(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    label_ids: &[String],
) -> AppResult<()> {
    let gone: HashSet<&str> = label_ids.iter().map(String::as_str).collect();
    let has = |i: &Issue| i.label_ids.iter().any(|l| gone.contains(l.as_str()));
    let pending = issues::workspace_issues(ctx, workspace_id, has).await?;
    rewrite(ctx, workspace_id, actor, pending, &[], |issue| {
        let mut next = issue.clone();
        next.label_ids.retain(|l| !gone.contains(l.as_str()));
        Some(next)
    })
    .await
}

/// Clears `project_id` on every issue of the project.
pub async fn detach_project(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    project_id: &str,
) -> AppResult<()> {
    let pk = issues::project_partition(workspace_id, Some(project_id));
    clear_relation(ctx, workspace_id, actor, &pk, project_id, |i| {
        &mut i.project_id
    })
    .await
}

/// Clears a reference to `id` on the issues its relation index `pk` lists (those whose
/// field still names it: the index may be behind the issues).
async fn clear_relation<F>(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    pk: &str,
    id: &str,
    field: F,
) -> AppResult<()>
where
    F: Fn(&mut Issue) -> &mut Option<String>,
{
    let pending = issues::relation_issues(ctx, pk, MAX_REWRITES_PER_REQUEST + 1).await?;
    rewrite(ctx, workspace_id, actor, pending, &[], |issue| {
        let mut next = issue.clone();
        let slot = field(&mut next);
        if slot.as_deref() != Some(id) {
            return None;
        }
        *slot = None;
        Some(next)
    })
    .await
}

/// The issues of the workspace in `state_id`.
pub async fn issues_in_state(
    ctx: &ServiceContext,
    workspace_id: &str,
    state_id: &str,
) -> AppResult<Vec<Issue>> {
    issues::workspace_issues(ctx, workspace_id, |i| i.state_id == state_id).await
}

/// Moves issues from state `from` to `to` (a state of the same workflow, which must still
/// exist, unmarked, in every transaction). `transitions_to` does not apply: the old state is
/// going away.
pub async fn move_to_state(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    workflow_id: &str,
    from: &str,
    to: &str,
    pending: Vec<Issue>,
) -> AppResult<()> {
    let guards = [exists_unmarked(
        keys::state(workspace_id, workflow_id, to),
        AppError::unprocessable(
            "replacement_state_id",
            "the replacement state was deleted or is being deleted",
        ),
    )];
    rewrite(ctx, workspace_id, actor, pending, &guards, |issue| {
        (issue.state_id == from).then(|| {
            let mut next = issue.clone();
            next.state_id = to.to_owned();
            next
        })
    })
    .await
}

/// Before a member leaves a workspace: marks their member item (no new assignment or
/// ownership), unassigns their issues and clears them as project owner. The removal's own
/// transaction must delete the member item with [`Mark::delete_op`].
pub async fn unassign_member(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    user_id: &str,
) -> AppResult<Mark> {
    let marks = mark(ctx, &[keys::member(workspace_id, user_id)], |_| {
        AppError::not_found("member")
    })
    .await?;
    let done = async {
        let pk = issues::assignee_partition(workspace_id, Some(user_id));
        clear_relation(ctx, workspace_id, actor, &pk, user_id, |i| {
            &mut i.assignee_id
        })
        .await?;
        clear_project_owner(ctx, workspace_id, actor, user_id).await
    }
    .await;
    settle(ctx, &marks, done).await?;
    Ok(marks.into_iter().next().expect("one mark per key"))
}

/// Every project of the workspace owned by `user_id`.
async fn projects_owned_by(
    ctx: &ServiceContext,
    workspace_id: &str,
    user_id: &str,
) -> AppResult<Vec<Project>> {
    query_all(
        ctx.store.as_ref(),
        Query::new(Table::Main, keys::workspace_partition(workspace_id))
            .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT))),
    )
    .await?
    .into_iter()
    .filter(|item| item.get("owner_id").and_then(Value::as_str) == Some(user_id))
    .map(from_item)
    .collect()
}

/// Sets `owner_id` to null on the member's projects (`project.updated` each). A project
/// changed concurrently is re-read and cleared again.
async fn clear_project_owner(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    user_id: &str,
) -> AppResult<()> {
    for _ in 0..MAX_ROUNDS {
        let owned = projects_owned_by(ctx, workspace_id, user_id).await?;
        let mut raced = false;
        for chunk in owned.chunks(PROJECTS_PER_COMMIT) {
            let now = ctx.now();
            let result = ctx
                .changes
                .commit(workspace_id, actor, &[], |_| {
                    let mut plan = Plan::new(());
                    for current in chunk {
                        let mut next = current.clone();
                        next.owner_id = None;
                        next.version += 1;
                        next.updated_at = now.clone();
                        plan = plan
                            .guarded(
                                put_versioned(
                                    &keys::project(workspace_id, &next.id),
                                    "project",
                                    &next,
                                    current.version,
                                ),
                                version_conflict(),
                            )
                            .change(
                                Change::new(
                                    EntityType::Project,
                                    &next.id,
                                    ChangeKind::Updated,
                                    &next,
                                )
                                .topic(Topic::Project(next.id.clone())),
                            );
                    }
                    Ok(plan)
                })
                .await;
            match result {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::PreconditionFailed => {
                    raced = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !raced {
            return Ok(());
        }
    }
    Err(AppError::unavailable(
        "projects kept changing while their owner was being removed; repeat the request",
    ))
}

/// Whether a stored item carries a deletion mark (for tests and diagnostics).
pub fn is_marked(item: &Item) -> bool {
    item.contains_key(MARK)
}
