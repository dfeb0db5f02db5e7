//! References that must not outlive what they name.
//!
//! Issues name labels (`label_ids`), a project (`project_id`), an assignee (a member) and a
//! workflow state (`state_id`); projects name an owner (a member). Deleting a label, a
//! project or a state, or removing a member, rewrites what refers to it and removes the
//! entity **last**:
//!
//! 1. A *fence* (`WS#{ws}` / `DELETING#{id}`, with a random `token`) is put. Every write that
//!    newly refers to an entity carries `ConditionCheck attribute_not_exists` on its fence
//!    ([`unfenced`]), so from the fence's commit on no new reference can appear: a writer that
//!    read before the fence fails at commit (409, the entity "is being deleted").
//! 2. The referrers are found with strongly consistent reads (the fence is committed first, so
//!    every reference written before it is seen) and rewritten, at most 10 issues per
//!    transaction, each with its activity and its `issue.updated` record
//!    (`issues::rewrite_issues_guarded`). Writers that keep an existing reference are
//!    serialised with this by the issue's `version`.
//! 3. One transaction removes the entity, its change record and the fence, conditioned on the
//!    fence still holding the token read in step 1 ([`Fence::release`]): the fence then existed
//!    the whole time, so nothing can refer to the entity once it is gone.
//!
//! Until step 3 the entity exists, so nothing ever names an entity that is gone. A delete
//! interrupted in step 2 (a timeout, a crash, the per-request bound below) leaves a
//! consistent state: some referrers rewritten, the entity still there and refusing new
//! references. Repeating the request finds the fence, takes it over and continues, so the
//! delete is idempotent and resumable. Each request rewrites at most
//! [`MAX_REWRITES_PER_REQUEST`] issues and answers 503 with `Retry-After` when more remain,
//! so a fan-out over thousands of issues fits API Gateway's 29 s in as many requests as it
//! takes.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::domain::from_item;
use crate::domain::keys;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::services::changes::{Change, ChangeKind, Plan};
use crate::services::context::{ServiceContext, put_versioned, version_conflict};
use crate::services::issues::{self, Issue};
use crate::services::projects::Project;
use crate::storage::{Condition, Item, Key, MAX_TRANSACTION_OPS, Query, SortKey, Table, WriteOp};

/// Issues one request rewrites before it answers 503 (about 200 storage calls: a commit of
/// 10 issues is a counter read and a transaction).
pub const MAX_REWRITES_PER_REQUEST: usize = 1000;
/// Projects per transaction when their owner is cleared (a put and a change record each).
const PROJECTS_PER_COMMIT: usize = 40;
/// Rounds of re-reading when concurrent writers keep winning.
const MAX_ROUNDS: usize = 5;
const TOKEN: &str = "token";

/// A fence this request put or found (see the module docs).
#[derive(Clone, Debug)]
pub struct Fence {
    pub entity_id: String,
    token: String,
}

impl Fence {
    /// Removes the fence in the entity's last transaction, only if it is the one this request
    /// worked under (else another request released and re-fenced it meanwhile: retry).
    pub fn release<T>(&self, plan: Plan<T>, workspace_id: &str) -> Plan<T> {
        plan.guarded(
            WriteOp::Delete {
                table: Table::Main,
                key: keys::deletion_fence(workspace_id, &self.entity_id),
                condition: Some(Condition::AttrEquals(TOKEN.into(), json!(self.token))),
            },
            AppError::conflict("a concurrent request interfered with this delete; retry"),
        )
    }
}

/// The guard of a write that newly refers to `entity_id`: fails while it is being deleted.
pub fn unfenced(
    workspace_id: &str,
    entity_id: &str,
    field: &str,
    what: &str,
) -> (WriteOp, AppError) {
    (
        WriteOp::ConditionCheck {
            table: Table::Main,
            key: keys::deletion_fence(workspace_id, entity_id),
            condition: Condition::NotExists,
        },
        AppError {
            field: Some(field.into()),
            ..AppError::conflict(format!("{what} is being deleted"))
        },
    )
}

fn fence_item(workspace_id: &str, entity_id: &str, token: &str, now: &str) -> Item {
    let mut item = Item::new();
    let key = keys::deletion_fence(workspace_id, entity_id);
    item.insert("pk".into(), json!(key.pk));
    item.insert("sk".into(), json!(key.sk));
    item.insert("entity".into(), json!("deletion_fence"));
    item.insert("entity_id".into(), json!(entity_id));
    item.insert(TOKEN.into(), json!(token));
    item.insert("fenced_at".into(), json!(now));
    item
}

/// Fences `entity_ids` (at most 100): puts the missing fences, adopts the existing ones (a
/// delete being repeated, or running concurrently). Usually one storage call.
pub async fn fence(
    ctx: &ServiceContext,
    workspace_id: &str,
    entity_ids: &[String],
) -> AppResult<Vec<Fence>> {
    debug_assert!(entity_ids.len() <= MAX_TRANSACTION_OPS);
    let mut found: Vec<Option<String>> = vec![None; entity_ids.len()];
    for _ in 0..MAX_ROUNDS {
        let now = ctx.now();
        let mut ops = Vec::new();
        let tokens: Vec<String> = found
            .iter()
            .zip(entity_ids)
            .map(|(token, id)| match token {
                Some(t) => t.clone(),
                None => {
                    let t = uuid::Uuid::new_v4().simple().to_string();
                    ops.push(WriteOp::put_new(
                        Table::Main,
                        fence_item(workspace_id, id, &t, &now),
                    ));
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
            return Ok(entity_ids
                .iter()
                .zip(tokens)
                .map(|(id, token)| Fence {
                    entity_id: id.clone(),
                    token,
                })
                .collect());
        }
        // Some fences exist already: adopt them and put the others.
        let fence_keys: Vec<Key> = entity_ids
            .iter()
            .map(|id| keys::deletion_fence(workspace_id, id))
            .collect();
        let stored = ctx.store.batch_get(Table::Main, &fence_keys).await?;
        found = stored
            .into_iter()
            .map(|item| item.and_then(|i| i.get(TOKEN).and_then(Value::as_str).map(str::to_owned)))
            .collect();
    }
    Err(AppError::unavailable(
        "concurrent deletes of the same records kept interfering; retry",
    ))
}

/// Removes fences of a delete that was refused (best effort: a fence left behind only makes
/// the entity refuse new references until a delete of it is repeated). Fences already
/// released or taken over are left alone.
pub async fn release_all(ctx: &ServiceContext, workspace_id: &str, fences: &[Fence]) {
    let op = |f: &Fence| WriteOp::Delete {
        table: Table::Main,
        key: keys::deletion_fence(workspace_id, &f.entity_id),
        condition: Some(Condition::AttrEquals(TOKEN.into(), json!(f.token))),
    };
    for chunk in fences.chunks(MAX_TRANSACTION_OPS) {
        let result = match ctx.store.transact(chunk.iter().map(op).collect()).await {
            // One of them is gone: release the others one by one.
            Err(e) if e.is_condition_failure() && chunk.len() > 1 => {
                for f in chunk {
                    let _ = ctx.store.transact(vec![op(f)]).await;
                }
                Ok(())
            }
            Err(e) if e.is_condition_failure() => Ok(()),
            other => other,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, workspace_id, "could not release deletion fences");
        }
    }
}

/// Ends the work a delete did under `fences`. A refusal releases them: the entity stays and
/// may be referred to again. Success needs nothing (the last transaction released them), and
/// a 503 keeps them: the client is told to repeat the request, which continues under them.
pub async fn settle<T>(
    ctx: &ServiceContext,
    workspace_id: &str,
    fences: &[Fence],
    result: AppResult<T>,
) -> AppResult<T> {
    if let Err(e) = &result
        && e.code != ErrorCode::ServiceUnavailable
    {
        release_all(ctx, workspace_id, fences).await;
    }
    result
}

/// Rewrites `issues` with `mutate` (each issue: activity + `issue.updated`), at most
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
    let pending = issues::relation_issues(ctx, &pk, MAX_REWRITES_PER_REQUEST + 1).await?;
    rewrite(ctx, workspace_id, actor, pending, &[], |issue| {
        (issue.project_id.as_deref() == Some(project_id)).then(|| {
            let mut next = issue.clone();
            next.project_id = None;
            next
        })
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
/// exist and not be being deleted in every transaction). `transitions_to` does not apply:
/// the old state is going away.
pub async fn move_to_state(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    workflow_id: &str,
    from: &str,
    to: &str,
    pending: Vec<Issue>,
) -> AppResult<()> {
    let guards = [
        (
            WriteOp::ConditionCheck {
                table: Table::Main,
                key: keys::state(workspace_id, workflow_id, to),
                condition: Condition::Exists,
            },
            AppError::unprocessable("replacement_state_id", "the replacement state was deleted"),
        ),
        unfenced(
            workspace_id,
            to,
            "replacement_state_id",
            "the replacement state",
        ),
    ];
    rewrite(ctx, workspace_id, actor, pending, &guards, |issue| {
        (issue.state_id == from).then(|| {
            let mut next = issue.clone();
            next.state_id = to.to_owned();
            next
        })
    })
    .await
}

/// Before a member leaves a workspace: fences them (no new assignment or ownership), unassigns
/// their issues and clears them as project owner. The removal's own transaction must release
/// the returned fence (`Fence::release`).
pub async fn unassign_member(
    ctx: &ServiceContext,
    workspace_id: &str,
    actor: &str,
    user_id: &str,
) -> AppResult<Fence> {
    let fences = fence(ctx, workspace_id, &[user_id.to_owned()]).await?;
    let done = async {
        let pk = issues::assignee_partition(workspace_id, Some(user_id));
        let pending = issues::relation_issues(ctx, &pk, MAX_REWRITES_PER_REQUEST + 1).await?;
        rewrite(ctx, workspace_id, actor, pending, &[], |issue| {
            (issue.assignee_id.as_deref() == Some(user_id)).then(|| {
                let mut next = issue.clone();
                next.assignee_id = None;
                next
            })
        })
        .await?;
        clear_project_owner(ctx, workspace_id, actor, user_id).await
    }
    .await;
    settle(ctx, workspace_id, &fences, done).await?;
    Ok(fences.into_iter().next().expect("one fence per id"))
}

/// Every project of the workspace owned by `user_id`.
async fn projects_owned_by(
    ctx: &ServiceContext,
    workspace_id: &str,
    user_id: &str,
) -> AppResult<Vec<Project>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = ctx
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(workspace_id))
                    .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT)))
                    .limit(1000)
                    .cursor(cursor.take()),
            )
            .await?;
        for item in page.items {
            if item.get("owner_id").and_then(Value::as_str) == Some(user_id) {
                out.push(from_item(item)?);
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
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
                                Change::new("project", &next.id, ChangeKind::Updated, &next)
                                    .topic(format!("project:{}", next.id)),
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
