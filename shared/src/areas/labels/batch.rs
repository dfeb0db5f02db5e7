//! Label batches: create, update or delete several labels in one request, all or nothing.
//!
//! Every item is validated first (input, names against each other and against existing
//! labels, ids, versions) and a batch with a refused item writes nothing, its answer listing
//! each refused item (`error.items`: `index`, `id`, `code`, `field`, `message`). The rest is
//! committed in ONE transaction with its change records, so no reader ever sees part of a
//! batch; a concurrent writer that takes a name, changes or deletes a label in between makes
//! the transaction fail as a whole, and the answer names the item. The batch sizes are what
//! one transaction holds (`kernel::limits::MAX_LABEL_BATCH_*`).

use std::collections::{HashMap, HashSet};

use super::layout::{
    create_ops, delete_ops, label_name_key, name_conflict, owner_of, renamed, update_ops,
};
use super::model::*;
use super::service::{LabelInput, LabelService, parse_input, patched};
use crate::areas::issues::references;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::kernel::access::{Action, Principal};
use crate::kernel::changes::Plan;
use crate::kernel::context::{check_version, required_text, retry_unversioned};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::record::from_item;
use crate::storage::{Item, Key, Table};

/// A batch holds at least one and at most `max` items (400 on `field` otherwise).
fn check_count(field: &str, n: usize, max: usize) -> AppResult<()> {
    if n == 0 {
        return Err(AppError::validation(field, "must hold at least one item"));
    }
    if n > max {
        return Err(AppError::validation(
            field,
            format!("must hold at most {max} items (what one transaction holds), got {n}"),
        ));
    }
    Ok(())
}

fn item_error(index: usize, id: Option<&str>, e: &AppError) -> ErrorBody {
    ErrorBody::item(index, id, e)
}

/// The overall answer to a batch with refused items: the most basic problem wins
/// (400, then 404, 412, 409).
fn reject(field: &str, total: usize, mut items: Vec<ErrorBody>) -> BatchRejected {
    let rank = |code: ErrorCode| match code {
        ErrorCode::ValidationError => 0,
        ErrorCode::NotFound => 1,
        ErrorCode::PreconditionFailed => 2,
        _ => 3,
    };
    items.sort_by_key(|e| e.index);
    let worst = items
        .iter()
        .map(|i| i.code)
        .min_by_key(|c| rank(*c))
        .unwrap_or(ErrorCode::ValidationError);
    let code = match worst {
        ErrorCode::NotFound | ErrorCode::PreconditionFailed | ErrorCode::Conflict => worst,
        _ => ErrorCode::ValidationError,
    };
    let mut error = AppError::new(
        code,
        format!(
            "{} of {total} items refused; nothing was written (see error.items)",
            items.len()
        ),
    );
    error.field = Some(field.to_owned());
    BatchRejected { error, items }
}

/// A batch whose one transaction (or the step before it) failed: nothing of it was written.
/// An error about an item (its `index`; `id_of` names the item's label) lists that item
/// and names it in the message ("item 3: ..."); any other (e.g. a 503) is passed on as is.
fn commit_failure(mut error: AppError, id_of: impl Fn(usize) -> Option<String>) -> BatchRejected {
    let Some(index) = error.index.take() else {
        return error.into();
    };
    let item = item_error(index, id_of(index).as_deref(), &error);
    error.message = format!("item {index}: {}; nothing was written", error.message);
    BatchRejected {
        error,
        items: vec![item],
    }
}

/// Per-item results of a batch whose items all ended the same way.
fn batch_result(done: Vec<(usize, Label)>, status: BatchItemStatus) -> BatchResult {
    BatchResult {
        items: done
            .into_iter()
            .map(|(index, label)| BatchItemResult {
                index,
                id: label.id.clone(),
                status,
                label,
            })
            .collect(),
    }
}

/// The workspace all ids of a batch must belong to: that of the first well-formed id.
fn batch_workspace<'a>(ids: impl Iterator<Item = &'a str>) -> Option<String> {
    ids.filter_map(|id| ids::workspace_of(Kind::Label, id).ok())
        .next()
}

/// Whether `id` is a well-formed label id of workspace `ws`.
fn in_workspace(id: &str, ws: &str) -> bool {
    ids::workspace_of(Kind::Label, id).is_ok_and(|w| w == ws)
}

fn unknown_label() -> AppError {
    let mut e = AppError::not_found("label");
    e.field = Some("id".into());
    e
}

/// One planned update of a batch.
struct PlannedUpdate {
    index: usize,
    current: Label,
    next: Label,
}

impl LabelService {
    /// Creates up to `MAX_LABEL_BATCH_CREATE` labels in one transaction, all or none.
    pub async fn batch_create(&self, who: &Principal, req: BatchCreateLabels) -> BatchOutcome {
        check_count("labels", req.labels.len(), MAX_LABEL_BATCH_CREATE)?;
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let ws = scope.workspace_id;
        let inputs = self.validate_creates(&ws, &req.labels).await?;
        let now = self.ctx.now();
        let labels: Vec<(usize, Label)> = inputs
            .into_iter()
            .map(|(index, input)| (index, self.new_label(&ws, who, input, &now)))
            .collect();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(labels.iter().fold(Plan::new(()), |plan, (index, label)| {
                    create_ops(plan, label, Some(*index))
                }))
            })
            .await
            // A label that was never created has no id to name.
            .map_err(|e| commit_failure(e, |_| None))?;
        Ok(batch_result(labels, BatchItemStatus::Created))
    }

    /// The batch's labels as valid input, or every refused item: invalid input, a name given
    /// twice in the batch or taken in the workspace.
    async fn validate_creates(
        &self,
        ws: &str,
        items: &[NewLabel],
    ) -> Result<Vec<(usize, LabelInput)>, BatchRejected> {
        let mut errors = Vec::new();
        let mut inputs = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let description = item.description.as_deref();
            match parse_input(&item.name, &item.color, item.level, description) {
                Err(e) => errors.push(item_error(index, None, &e)),
                Ok(input) => {
                    let key = input.name.to_lowercase();
                    if let Some(first) = seen.get(&key) {
                        let e = name_conflict(format!(
                            "the batch names this label twice (also item {first})"
                        ));
                        errors.push(item_error(index, None, &e));
                    } else {
                        seen.insert(key, index);
                        inputs.push((index, input));
                    }
                }
            }
        }
        let markers: Vec<Key> = inputs
            .iter()
            .map(|(_, i)| label_name_key(ws, &i.name))
            .collect();
        let existing = if markers.is_empty() {
            Vec::new()
        } else {
            self.ctx.store.batch_get(Table::Main, &markers).await?
        };
        for ((index, _), marker) in inputs.iter().zip(&existing) {
            if marker.is_some() {
                let e = name_conflict("a label with this name already exists in the workspace");
                errors.push(item_error(*index, None, &e));
            }
        }
        if !errors.is_empty() {
            return Err(reject("labels", items.len(), errors));
        }
        Ok(inputs)
    }

    /// Updates up to `MAX_LABEL_BATCH_UPDATE` labels of one workspace in one transaction, all
    /// or none. A batch refused only because items that stated no `version` lost a race is
    /// done again on what is stored then, bounded like a single update; a stale stated
    /// version is 412.
    pub async fn batch_update(&self, who: &Principal, req: BatchUpdateLabels) -> BatchOutcome {
        let lost_race = |r: &BatchRejected| {
            r.error.code == ErrorCode::PreconditionFailed
                && r.items.iter().all(|i| {
                    i.code != ErrorCode::PreconditionFailed
                        || i.index
                            .and_then(|index| req.labels.get(index))
                            .is_some_and(|p| p.version.is_none())
                })
        };
        let outcome = retry_unversioned(None, || async {
            match self.batch_update_once(who, &req).await {
                Err(rejected) if lost_race(&rejected) => Err(rejected.error),
                other => Ok(other),
            }
        })
        .await;
        outcome.unwrap_or_else(|e| Err(e.into()))
    }

    async fn batch_update_once(&self, who: &Principal, req: &BatchUpdateLabels) -> BatchOutcome {
        check_count("labels", req.labels.len(), MAX_LABEL_BATCH_UPDATE)?;
        let Some(ws) = batch_workspace(req.labels.iter().map(|p| p.id.as_str())) else {
            return Err(AppError::not_found("label").into());
        };
        let stored = self.read_for_update(who, &ws, &req.labels).await?;
        let planned = plan_updates(&ws, &req.labels, &stored)?;
        let now = self.ctx.now();
        let mut results: Vec<BatchItemResult> = Vec::new();
        let mut writes = Vec::new();
        for mut p in planned {
            if p.next == p.current {
                results.push(BatchItemResult {
                    index: p.index,
                    id: p.current.id.clone(),
                    status: BatchItemStatus::Unchanged,
                    label: p.current,
                });
            } else {
                p.next.version += 1;
                p.next.updated_at = now.clone();
                writes.push(p);
            }
        }
        if !writes.is_empty() {
            self.ctx
                .changes
                .commit(&ws, &who.user_id, &[], |_| {
                    Ok(writes.iter().fold(Plan::new(()), |plan, p| {
                        update_ops(plan, &p.current, &p.next, Some(p.index))
                    }))
                })
                .await
                .map_err(|e| commit_failure(e, |i| req.labels.get(i).map(|p| p.id.clone())))?;
        }
        results.extend(writes.into_iter().map(|p| BatchItemResult {
            index: p.index,
            id: p.next.id.clone(),
            status: BatchItemStatus::Updated,
            label: p.next,
        }));
        results.sort_by_key(|r| r.index);
        Ok(BatchResult { items: results })
    }

    /// Authorizes `Manage` on workspace `ws` and reads, in the same call, the labels the
    /// patches name and the markers of the names they give: stored items by key.
    async fn read_for_update(
        &self,
        who: &Principal,
        ws: &str,
        patches: &[LabelPatch],
    ) -> AppResult<HashMap<Key, Item>> {
        let label_keys = patches
            .iter()
            .filter(|p| in_workspace(&p.id, ws))
            .map(|p| keys::label(ws, &p.id));
        let name_keys = patches
            .iter()
            .filter_map(|p| p.name.as_deref())
            .filter_map(|n| required_text("name", n, MAX_LABEL_NAME_CHARS).ok())
            .map(|n| label_name_key(ws, &n));
        let wanted: Vec<Key> = label_keys.chain(name_keys).collect();
        let (_, got) = self
            .ctx
            .access
            .authorize(who, ws, Action::Manage, "label", &wanted)
            .await?;
        Ok(wanted
            .into_iter()
            .zip(got)
            .filter_map(|(k, item)| item.map(|i| (k, i)))
            .collect())
    }

    /// Deletes up to `MAX_LABEL_BATCH_DELETE` labels of one workspace, all or none, after
    /// removing them from every issue (`areas::issues::references`). The labels go in one
    /// transaction; issues keep losing the labels even when that transaction then fails
    /// (an issue without a label is consistent, and a repeat of the batch finishes the job).
    pub async fn batch_delete(&self, who: &Principal, req: BatchDeleteLabels) -> BatchOutcome {
        check_count("ids", req.ids.len(), MAX_LABEL_BATCH_DELETE)?;
        let Some(ws) = batch_workspace(req.ids.iter().map(String::as_str)) else {
            return Err(AppError::not_found("label").into());
        };
        let labels = self.read_for_delete(who, &ws, &req.ids).await?;
        let label_keys: Vec<Key> = labels
            .iter()
            .map(|(_, l)| keys::label(&ws, &l.id))
            .collect();
        let id_of = |i: usize| req.ids.get(i).cloned();
        let marks = references::mark(&self.ctx, &label_keys, |i| {
            unknown_label().for_item(labels[i].0)
        })
        .await
        .map_err(|e| commit_failure(e, id_of))?;
        let label_ids: Vec<String> = labels.iter().map(|(_, l)| l.id.clone()).collect();
        let done = async {
            references::detach_labels(&self.ctx, &ws, &who.user_id, &label_ids).await?;
            self.ctx
                .changes
                .commit(&ws, &who.user_id, &[], |_| {
                    let plan = labels.iter().zip(&marks).fold(
                        Plan::new(()),
                        |plan, ((index, label), mark)| {
                            let changed = AppError::unknown_reference(
                                "id",
                                "label not found or changed meanwhile",
                            )
                            .with_code(ErrorCode::NotFound)
                            .for_item(*index);
                            delete_ops(plan, mark, label, changed)
                        },
                    );
                    Ok(plan)
                })
                .await
        }
        .await;
        references::settle(&self.ctx, &marks, done)
            .await
            .map_err(|e| commit_failure(e, id_of))?;
        Ok(batch_result(labels, BatchItemStatus::Deleted))
    }

    /// Authorizes `Manage` on workspace `ws` and reads the labels `ids` name, in request
    /// order; refuses the batch when an id is given twice or names no label of `ws`.
    async fn read_for_delete(
        &self,
        who: &Principal,
        ws: &str,
        ids: &[String],
    ) -> Result<Vec<(usize, Label)>, BatchRejected> {
        let label_keys: Vec<Key> = ids
            .iter()
            .filter(|id| in_workspace(id, ws))
            .map(|id| keys::label(ws, id))
            .collect();
        let (_, got) = self
            .ctx
            .access
            .authorize(who, ws, Action::Manage, "label", &label_keys)
            .await?;
        let mut stored: HashMap<Key, Item> = label_keys
            .into_iter()
            .zip(got)
            .filter_map(|(k, item)| item.map(|i| (k, i)))
            .collect();
        let mut errors = Vec::new();
        let mut labels = Vec::new();
        let mut seen_ids = HashSet::new();
        for (index, id) in ids.iter().enumerate() {
            if !seen_ids.insert(id.as_str()) {
                let e = AppError::validation("id", "the batch names this label twice");
                errors.push(item_error(index, Some(id), &e));
                continue;
            }
            let item = in_workspace(id, ws)
                .then(|| stored.remove(&keys::label(ws, id)))
                .flatten();
            match item {
                Some(item) => labels.push((index, from_item(item)?)),
                None => errors.push(item_error(index, Some(id), &unknown_label())),
            }
        }
        if !errors.is_empty() {
            return Err(reject("ids", ids.len(), errors));
        }
        Ok(labels)
    }
}

/// What each patch makes of its label, or every refused item: an id given twice or naming
/// no label of `ws`, invalid input, a stale stated `version`, a name taken by another label
/// or given twice in the batch.
fn plan_updates(
    ws: &str,
    patches: &[LabelPatch],
    stored: &HashMap<Key, Item>,
) -> Result<Vec<PlannedUpdate>, BatchRejected> {
    let mut errors = Vec::new();
    let mut planned = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut claimed: HashMap<String, usize> = HashMap::new();
    for (index, patch) in patches.iter().enumerate() {
        let id = Some(patch.id.as_str());
        if !seen_ids.insert(patch.id.as_str()) {
            let e = AppError::validation("id", "the batch names this label twice");
            errors.push(item_error(index, id, &e));
            continue;
        }
        let item = in_workspace(&patch.id, ws)
            .then(|| stored.get(&keys::label(ws, &patch.id)))
            .flatten();
        let Some(item) = item else {
            errors.push(item_error(index, id, &unknown_label()));
            continue;
        };
        let current: Label = from_item(item.clone())?;
        let next = match plan_update(ws, patch, &current, stored) {
            Ok(next) => next,
            Err(e) => {
                errors.push(item_error(index, id, &e));
                continue;
            }
        };
        if renamed(&current, &next) {
            let name_key = next.name.to_lowercase();
            if let Some(first) = claimed.get(&name_key) {
                let e = name_conflict(format!(
                    "the batch gives this name twice (also item {first})"
                ));
                errors.push(item_error(index, id, &e));
                continue;
            }
            claimed.insert(name_key, index);
        }
        planned.push(PlannedUpdate {
            index,
            current,
            next,
        });
    }
    if !errors.is_empty() {
        return Err(reject("labels", patches.len(), errors));
    }
    Ok(planned)
}

/// What `patch` makes of `current`: its input valid, its stated version current, a new name
/// free (or already this label's).
fn plan_update(
    ws: &str,
    patch: &LabelPatch,
    current: &Label,
    stored: &HashMap<Key, Item>,
) -> AppResult<Label> {
    let next = patched(
        current,
        patch.name.as_deref(),
        patch.color.as_deref(),
        patch.level,
        patch.description.as_ref().map(Option::as_deref),
    )?;
    check_version(patch.version, current.version).map_err(|mut e| {
        e.field = Some("version".into());
        e
    })?;
    if renamed(current, &next) {
        let marker = stored.get(&label_name_key(ws, &next.name));
        if owner_of(marker).is_some_and(|owner| owner != current.id) {
            return Err(name_conflict(
                "a label with this name already exists in the workspace",
            ));
        }
    }
    Ok(next)
}
