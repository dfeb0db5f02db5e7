//! Labels: per-workspace, with names unique case-insensitively (a `LABELNAME#{name}` marker
//! claimed in the same transaction as the label), single and batch create/update/delete.
//!
//! Batches are all-or-nothing: every item is validated first (input, names against each
//! other and against existing labels, ids) and nothing is written when any item is refused.
//! A DynamoDB transaction holds at most 100 operations, so a large batch commits chunk by
//! chunk; if a later chunk fails (a concurrent writer took a name, changed or deleted a
//! label), the chunks already committed are undone. A concurrent reader may therefore see
//! part of a batch for the moment between two chunks, and the change log records both the
//! partial batch and its undoing.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::areas::issues::references::{self, Mark};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::changes::{Change, ChangeKind, Plan};
use crate::kernel::context::{
    ServiceContext, check_version, claim, color, expected_version, found, put_new, put_versioned,
    required_text, retry_unversioned, version_conflict,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::storage::cursor::Position;
use crate::storage::{Condition, Item, Key, Query, SortKey, Table, WriteOp};

pub const MAX_LABEL_NAME_CHARS: usize = 50;
pub const MAX_LABEL_DESCRIPTION_CHARS: usize = 500;
/// Most items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 100;
/// Operations one transaction may spend on batch items (the change-sequence counter takes
/// the hundredth).
const CHUNK_OPS: usize = 99;
/// Rows a level-filtered list reads to fill one page.
const FILTER_SCAN_LIMIT: u32 = 1000;

/// Where a label may be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LabelLevel {
    Project,
    #[default]
    Issue,
}

/// A label (`WS#{ws}` / `LABEL#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Label {
    pub id: String,
    pub workspace_id: String,
    /// 1–50 characters, unique in the workspace (case-insensitively).
    pub name: String,
    /// `#RRGGBB`, upper-case.
    pub color: String,
    pub level: LabelLevel,
    pub description: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// The uniqueness marker of a label name in a workspace (`WS#{ws}` / `LABELNAME#{lower}`).
pub fn label_name_key(workspace_id: &str, name: &str) -> Key {
    keys::scoped(workspace_id, keys::LABEL_NAME, &name.to_lowercase())
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLabel {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 1, max_length = 50)]
    pub name: String,
    /// `#RRGGBB`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
    /// `issue` when absent.
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Absent fields stay; `description: null` clears it. `version`, when given, must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLabel {
    #[serde(default)]
    #[schema(max_length = 50)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListLabelsParams {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
    /// Only labels of this level.
    pub level: Option<LabelLevel>,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One label of a batch create.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    #[schema(min_length = 1, max_length = 50)]
    pub name: String,
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreateLabels {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// 1–100 labels.
    #[schema(min_items = 1, max_items = 100)]
    pub labels: Vec<NewLabel>,
}

/// One label of a batch update: absent fields stay; `description: null` clears it.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelPatch {
    pub id: String,
    #[serde(default)]
    #[schema(max_length = 50)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchUpdateLabels {
    /// 1–100 labels of one workspace.
    #[schema(min_items = 1, max_items = 100)]
    pub labels: Vec<LabelPatch>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDeleteLabels {
    /// 1–100 label ids of one workspace.
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchItemStatus {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

/// What a batch did to one item.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItemResult {
    /// Position of the item in the request.
    pub index: usize,
    pub id: String,
    pub status: BatchItemStatus,
    /// The label after the operation (before it, for deletes).
    pub label: Label,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub items: Vec<BatchItemResult>,
}

/// A refused batch: the overall error and, when items are to blame, which and why (each an
/// item's error: its `index`, `id`, `code`, `field`, `message`). Nothing was written.
#[derive(Clone, Debug)]
pub struct BatchRejected {
    pub error: AppError,
    pub items: Vec<ErrorBody>,
}

/// The answer's `error`: the overall error with the refused items.
impl From<BatchRejected> for ErrorBody {
    fn from(r: BatchRejected) -> Self {
        ErrorBody {
            items: r.items,
            ..ErrorBody::from(r.error)
        }
    }
}

impl From<crate::storage::StoreError> for BatchRejected {
    fn from(error: crate::storage::StoreError) -> Self {
        AppError::from(error).into()
    }
}

impl From<AppError> for BatchRejected {
    fn from(error: AppError) -> Self {
        Self {
            error,
            items: Vec::new(),
        }
    }
}

pub type BatchOutcome = Result<BatchResult, BatchRejected>;

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

fn item_error(index: usize, id: Option<&str>, e: &AppError) -> ErrorBody {
    ErrorBody::item(index, id, e)
}

fn name_conflict(message: impl Into<String>) -> AppError {
    AppError::validation("name", message).with_code(ErrorCode::Conflict)
}

/// The overall answer to a batch with refused items: the most basic problem wins
/// (400, then 404, 412, 409).
fn reject(field: &str, total: usize, items: Vec<ErrorBody>) -> BatchRejected {
    let rank = |code: ErrorCode| match code {
        ErrorCode::ValidationError => 0,
        ErrorCode::NotFound => 1,
        ErrorCode::PreconditionFailed => 2,
        _ => 3,
    };
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

fn check_count(field: &str, n: usize) -> AppResult<()> {
    if n == 0 {
        return Err(AppError::validation(field, "must hold at least one item"));
    }
    if n > MAX_BATCH_ITEMS {
        return Err(AppError::validation(
            field,
            format!("must hold at most {MAX_BATCH_ITEMS} items, got {n}"),
        ));
    }
    Ok(())
}

/// Validated label input.
struct LabelInput {
    name: String,
    color: String,
    level: LabelLevel,
    description: Option<String>,
}

fn parse_input(
    name: &str,
    raw_color: &str,
    level: Option<LabelLevel>,
    description: Option<&str>,
) -> AppResult<LabelInput> {
    Ok(LabelInput {
        name: required_text("name", name, MAX_LABEL_NAME_CHARS)?,
        color: color("color", raw_color)?,
        level: level.unwrap_or_default(),
        description: optional_text("description", description, MAX_LABEL_DESCRIPTION_CHARS)?,
    })
}

/// Applies a patch to a label (validating it); the result is unchanged when nothing differs.
fn patched(
    current: &Label,
    name: Option<&str>,
    raw_color: Option<&str>,
    level: Option<LabelLevel>,
    description: Option<Option<&str>>,
) -> AppResult<Label> {
    let mut next = current.clone();
    if let Some(name) = name {
        next.name = required_text("name", name, MAX_LABEL_NAME_CHARS)?;
    }
    if let Some(c) = raw_color {
        next.color = color("color", c)?;
    }
    if let Some(level) = level {
        next.level = level;
    }
    if let Some(description) = description {
        next.description = optional_text("description", description, MAX_LABEL_DESCRIPTION_CHARS)?;
    }
    Ok(next)
}

fn renamed(current: &Label, next: &Label) -> bool {
    current.name.to_lowercase() != next.name.to_lowercase()
}

fn owner_of(marker: Option<&Item>) -> Option<&str> {
    marker
        .and_then(|m| m.get("owner_id"))
        .and_then(|v| v.as_str())
}

fn delete_op(key: Key) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition: None,
    }
}

/// Splits items into chunks whose operations fit one transaction.
fn chunks_by_ops<T>(items: Vec<T>, ops_of: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = ops_of(&item);
        if out.is_empty() || used + n > CHUNK_OPS {
            out.push(Vec::new());
            used = 0;
        }
        used += n;
        out.last_mut().expect("pushed above").push(item);
    }
    out
}

/// The workspace all ids of a batch must belong to: that of the first well-formed id.
fn batch_workspace<'a>(ids: impl Iterator<Item = &'a str>) -> Option<String> {
    ids.filter_map(|id| ids::workspace_of(Kind::Label, id).ok())
        .next()
}

/// A refused chunk: the item the error is about (its `index`), else the chunk as a whole.
/// The overall message names the item too ("item 3: ...").
fn chunk_failure<'a>(
    e: AppError,
    chunk: impl Iterator<Item = (usize, &'a String)>,
    undone: bool,
) -> BatchRejected {
    let chunk: Vec<(usize, &String)> = chunk.collect();
    let items = match e.index {
        Some(index) => {
            let id = chunk
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, id)| id.as_str());
            vec![item_error(index, id, &e)]
        }
        None => Vec::new(),
    };
    let mut error = e;
    if let Some(index) = error.index.take() {
        error.message = format!("item {index}: {}", error.message);
    }
    error.message = if undone {
        format!("{}; nothing was written", error.message)
    } else {
        tracing::error!(error = %error, "a label batch failed part-way and could not be undone");
        format!(
            "{}; part of the batch was written and could not be undone",
            error.message
        )
    };
    BatchRejected { error, items }
}

/// A batch chunk that failed: the error, what earlier chunks did, the failed chunk.
struct ChunkFailed<I> {
    error: AppError,
    done: Vec<I>,
    chunk: Vec<I>,
}

/// Whether `id` is a well-formed label id of workspace `ws`.
fn in_workspace(id: &str, ws: &str) -> bool {
    ids::workspace_of(Kind::Label, id).is_ok_and(|w| w == ws)
}

/// One planned update of a batch.
struct PlannedUpdate {
    index: usize,
    current: Label,
    next: Label,
}

pub struct LabelService {
    ctx: ServiceContext,
}

impl LabelService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    /// Labels of a workspace (`Read`), in id order, optionally of one level.
    pub async fn list(
        &self,
        who: &Principal,
        params: &ListLabelsParams,
    ) -> AppResult<Paged<Label>> {
        let page = PageParams {
            limit: params.limit,
            cursor: params.cursor.clone(),
        };
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .resolve(
                who,
                params.workspace_id.as_deref(),
                EntityType::Label.read_action(),
            )
            .await?;
        let query = Query::new(Table::Main, keys::workspace_partition(&scope.workspace_id))
            .sort(SortKey::BeginsWith(format!("{}#", keys::LABEL)))
            .cursor(page.cursor.clone());
        let Some(level) = params.level else {
            let got = self.ctx.store.query(&query.limit(limit)).await?;
            return Paged::of(got);
        };
        // Filtered: read ahead, keep the level's labels, and continue after the last one kept
        // when the page is full (so pages are full and nothing is skipped).
        let got = self
            .ctx
            .store
            .query(&query.limit(FILTER_SCAN_LIMIT))
            .await?;
        let mut items = Vec::new();
        let mut next_cursor = got.next_cursor;
        for item in got.items {
            let label: Label = from_item(item.clone())?;
            if label.level != level {
                continue;
            }
            if items.len() == limit as usize {
                let last = items
                    .last()
                    .map(|l: &Label| keys::label(&l.workspace_id, &l.id));
                next_cursor = last
                    .map(|k| {
                        let mut key_item = Item::new();
                        key_item.insert("pk".into(), k.pk.into());
                        key_item.insert("sk".into(), k.sk.into());
                        Position::of(&key_item, None).map(|p| p.encode())
                    })
                    .transpose()?;
                break;
            }
            items.push(label);
        }
        Ok(Paged { items, next_cursor })
    }

    pub async fn get(&self, who: &Principal, label_id: &str) -> AppResult<Label> {
        let ws = ids::workspace_of(Kind::Label, label_id)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                EntityType::Label.read_action(),
                "label",
                &[keys::label(&ws, label_id)],
            )
            .await?;
        found(got.pop().flatten(), "label")
    }

    fn new_label(&self, ws: &str, who: &Principal, input: LabelInput, now: &str) -> Label {
        Label {
            id: ids::new_id(Kind::Label, ws),
            workspace_id: ws.to_owned(),
            name: input.name,
            color: input.color,
            level: input.level,
            description: input.description,
            created_by: who.user_id.clone(),
            version: 1,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }

    /// Creates a label (`Manage`); a taken name is a 409 on `name`.
    pub async fn create(&self, who: &Principal, req: CreateLabel) -> AppResult<Label> {
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let input = parse_input(&req.name, &req.color, req.level, req.description.as_deref())?;
        let ws = scope.workspace_id;
        let label = self.new_label(&ws, who, input, &self.ctx.now());
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .op(put_new(&keys::label(&ws, &label.id), "label", &label))
                    .guarded(
                        claim(label_name_key(&ws, &label.name), &label.id),
                        name_conflict("a label with this name already exists in the workspace"),
                    )
                    .change(Change::new(
                        EntityType::Label,
                        &label.id,
                        ChangeKind::Created,
                        &label,
                    )))
            })
            .await?;
        Ok(label)
    }

    /// Updates a label (`Manage`). A rename moves the name marker; `version` (or `If-Match`;
    /// the two must agree) must match (412).
    pub async fn update(
        &self,
        who: &Principal,
        label_id: &str,
        req: UpdateLabel,
        if_match: Option<i64>,
    ) -> AppResult<Label> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, label_id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        label_id: &str,
        req: &UpdateLabel,
        expected: Option<i64>,
    ) -> AppResult<Label> {
        let ws = ids::workspace_of(Kind::Label, label_id)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "label",
                &[keys::label(&ws, label_id)],
            )
            .await?;
        let current: Label = found(got.pop().flatten(), "label")?;
        check_version(expected, current.version)?;
        let mut next = patched(
            &current,
            req.name.as_deref(),
            req.color.as_deref(),
            req.level,
            req.description.as_ref().map(Option::as_deref),
        )?;
        if next == current {
            return Ok(current);
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let plan = update_ops(Plan::new(()), &current, &next);
                Ok(plan.change(Change::new(
                    EntityType::Label,
                    &next.id,
                    ChangeKind::Updated,
                    &next,
                )))
            })
            .await?;
        Ok(next)
    }

    /// Deletes a label and frees its name (`Manage`), after removing it from every issue
    /// (`areas::issues::references`: a repeat of an interrupted delete continues it).
    pub async fn delete(&self, who: &Principal, label_id: &str) -> AppResult<Label> {
        let ws = ids::workspace_of(Kind::Label, label_id)?;
        let (_, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                Action::Manage,
                "label",
                &[keys::label(&ws, label_id)],
            )
            .await?;
        let mut label: Label = found(got.pop().flatten(), "label")?;
        let key = keys::label(&ws, &label.id);
        let changed = references::changed_while_deleting("label");
        for round in 0.. {
            let marks = references::mark(&self.ctx, std::slice::from_ref(&key), |_| {
                AppError::not_found("label")
            })
            .await?;
            let done = async {
                references::detach_labels(
                    &self.ctx,
                    &ws,
                    &who.user_id,
                    std::slice::from_ref(&label.id),
                )
                .await?;
                self.ctx
                    .changes
                    .commit(&ws, &who.user_id, &[], |_| {
                        Ok(Plan::new(())
                            .guarded(marks[0].delete_op(), changed.clone())
                            .op(delete_op(label_name_key(&ws, &label.name)))
                            .change(Change::new(
                                EntityType::Label,
                                &label.id,
                                ChangeKind::Deleted,
                                &label,
                            )))
                    })
                    .await
            }
            .await;
            match references::settle(&self.ctx, &marks, done).await {
                // Edited meanwhile (a rename moves the name marker): again, as it is now.
                Err(e) if e == changed && round < 2 => {
                    label = found(self.ctx.store.get(Table::Main, &key).await?, "label")?;
                }
                other => return other.map(|_| label),
            }
        }
        unreachable!("the loop returns")
    }

    /// Creates up to 100 labels, all or none.
    pub async fn batch_create(&self, who: &Principal, req: BatchCreateLabels) -> BatchOutcome {
        check_count("labels", req.labels.len())?;
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let ws = scope.workspace_id;
        let mut errors = Vec::new();
        let mut inputs = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, item) in req.labels.iter().enumerate() {
            match parse_input(
                &item.name,
                &item.color,
                item.level,
                item.description.as_deref(),
            ) {
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
            .map(|(_, i)| label_name_key(&ws, &i.name))
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
            errors.sort_by_key(|e| e.index);
            return Err(reject("labels", req.labels.len(), errors));
        }
        let now = self.ctx.now();
        let labels: Vec<(usize, Label)> = inputs
            .into_iter()
            .map(|(index, input)| (index, self.new_label(&ws, who, input, &now)))
            .collect();
        let chunks = chunks_by_ops(labels, |_| 3);
        let run = self
            .run_chunks(
                &ws,
                who,
                chunks,
                |plan, (index, label)| {
                    plan.op(put_new(&keys::label(&ws, &label.id), "label", label))
                        .guarded(
                            claim(label_name_key(&ws, &label.name), &label.id),
                            name_conflict("a label with this name already exists in the workspace")
                                .for_item(*index),
                        )
                        .change(Change::new(
                            EntityType::Label,
                            &label.id,
                            ChangeKind::Created,
                            label,
                        ))
                },
                // A chunk is atomic: one of its labels stored means all were.
                |chunk| vec![keys::label(&ws, &chunk[0].1.id)],
                |_, stored| stored[0].is_some(),
            )
            .await;
        match run {
            Ok(done) => Ok(batch_result(done, BatchItemStatus::Created)),
            Err(failed) => {
                let undo: Vec<Label> = failed.done.into_iter().map(|(_, l)| l).collect();
                let undone = self.undo_creates(&ws, who, &undo).await;
                Err(chunk_failure(
                    failed.error,
                    failed.chunk.iter().map(|(i, l)| (*i, &l.id)),
                    undone,
                ))
            }
        }
    }

    /// Commits `chunks` one transaction each, in order. A chunk whose commit fails
    /// ambiguously (a timeout: it may have been applied) is checked by reading `probe`'s
    /// keys: applied, it counts as done; not applied and unavailable, it is tried once more.
    /// On failure, returns what was done and the failed chunk, for the caller to undo.
    async fn run_chunks<I>(
        &self,
        ws: &str,
        who: &Principal,
        chunks: Vec<Vec<I>>,
        add: impl Fn(Plan<()>, &I) -> Plan<()>,
        probe: impl Fn(&[I]) -> Vec<Key>,
        applied: impl Fn(&[I], &[Option<Item>]) -> bool,
    ) -> Result<Vec<I>, ChunkFailed<I>> {
        let mut done: Vec<I> = Vec::new();
        for chunk in chunks {
            let mut attempt = 0;
            loop {
                let result = self
                    .ctx
                    .changes
                    .commit(ws, &who.user_id, &[], |_| {
                        Ok(chunk.iter().fold(Plan::new(()), &add))
                    })
                    .await;
                let error = match result {
                    Ok(_) => break,
                    Err(e) => e,
                };
                let verified = match self.ctx.store.batch_get(Table::Main, &probe(&chunk)).await {
                    Ok(stored) => Some(applied(&chunk, &stored)),
                    Err(_) => None,
                };
                match verified {
                    Some(true) => break,
                    Some(false) if error.code == ErrorCode::ServiceUnavailable && attempt == 0 => {
                        attempt += 1;
                    }
                    _ => {
                        // Unverifiable: assume the chunk may have landed, so it is undone too.
                        if verified.is_none() {
                            done.extend(chunk);
                            return Err(ChunkFailed {
                                error,
                                done,
                                chunk: Vec::new(),
                            });
                        }
                        return Err(ChunkFailed { error, done, chunk });
                    }
                }
            }
            done.extend(chunk);
        }
        Ok(done)
    }

    /// Deletes labels a failed batch created (best effort: logged when it fails).
    async fn undo_creates(&self, ws: &str, who: &Principal, labels: &[Label]) -> bool {
        let mut ok = true;
        for chunk in labels.chunks(CHUNK_OPS / 3) {
            let result = self
                .ctx
                .changes
                .commit(ws, &who.user_id, &[], |_| {
                    let mut plan = Plan::new(());
                    for label in chunk {
                        plan = plan
                            .op(delete_op(keys::label(ws, &label.id)))
                            .op(delete_op(label_name_key(ws, &label.name)))
                            .change(Change::new(
                                EntityType::Label,
                                &label.id,
                                ChangeKind::Deleted,
                                label,
                            ));
                    }
                    Ok(plan)
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, workspace_id = ws, "could not undo a partial label batch");
                ok = false;
            }
        }
        ok
    }

    /// Updates up to 100 labels of one workspace, all or none. A batch refused only because
    /// items that stated no `version` lost a race (any earlier chunks undone) is done again
    /// on what is stored then, bounded like a single update; a stale stated version is 412.
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
        let total = req.labels.len();
        check_count("labels", total)?;
        let Some(ws) = batch_workspace(req.labels.iter().map(|p| p.id.as_str())) else {
            return Err(AppError::not_found("label").into());
        };
        let label_keys: Vec<Key> = req
            .labels
            .iter()
            .filter(|p| in_workspace(&p.id, &ws))
            .map(|p| keys::label(&ws, &p.id))
            .collect();
        let name_keys: Vec<Key> = req
            .labels
            .iter()
            .filter_map(|p| p.name.as_deref())
            .filter_map(|n| required_text("name", n, MAX_LABEL_NAME_CHARS).ok())
            .map(|n| label_name_key(&ws, &n))
            .collect();
        let mut extra = label_keys;
        extra.extend(name_keys);
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Manage, "label", &extra)
            .await?;
        let stored: HashMap<Key, Item> = extra
            .into_iter()
            .zip(got)
            .filter_map(|(k, item)| item.map(|i| (k, i)))
            .collect();
        let now = self.ctx.now();
        let mut errors = Vec::new();
        let mut planned = Vec::new();
        let mut seen_ids = HashSet::new();
        let mut claimed: HashMap<String, usize> = HashMap::new();
        for (index, patch) in req.labels.iter().enumerate() {
            let id = Some(patch.id.as_str());
            let item = in_workspace(&patch.id, &ws)
                .then(|| stored.get(&keys::label(&ws, &patch.id)))
                .flatten();
            if !seen_ids.insert(patch.id.as_str()) {
                let e = AppError::validation("id", "the batch names this label twice");
                errors.push(item_error(index, id, &e));
                continue;
            }
            let current: Label = match item {
                Some(item) => from_item(item.clone())?,
                None => {
                    let mut e = AppError::not_found("label");
                    e.field = Some("id".into());
                    errors.push(item_error(index, id, &e));
                    continue;
                }
            };
            let next = match patched(
                &current,
                patch.name.as_deref(),
                patch.color.as_deref(),
                patch.level,
                patch.description.as_ref().map(Option::as_deref),
            ) {
                Ok(next) => next,
                Err(e) => {
                    errors.push(item_error(index, id, &e));
                    continue;
                }
            };
            if let Err(mut e) = check_version(patch.version, current.version) {
                e.field = Some("version".into());
                errors.push(item_error(index, id, &e));
                continue;
            }
            if renamed(&current, &next) {
                let name_key = next.name.to_lowercase();
                let marker = stored.get(&label_name_key(&ws, &next.name));
                if owner_of(marker).is_some_and(|owner| owner != current.id) {
                    let e = name_conflict("a label with this name already exists in the workspace");
                    errors.push(item_error(index, id, &e));
                    continue;
                }
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
            errors.sort_by_key(|e| e.index);
            return Err(reject("labels", total, errors));
        }
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
        let ops_of = |p: &PlannedUpdate| if renamed(&p.current, &p.next) { 4 } else { 2 };
        let run = self
            .run_chunks(
                &ws,
                who,
                chunks_by_ops(writes, ops_of),
                |plan, p| {
                    update_ops_indexed(plan, &p.current, &p.next, Some(p.index)).change(
                        Change::new(EntityType::Label, &p.next.id, ChangeKind::Updated, &p.next),
                    )
                },
                |chunk| vec![keys::label(&ws, &chunk[0].next.id)],
                |chunk, stored| {
                    stored[0]
                        .clone()
                        .and_then(|i| from_item::<Label>(i).ok())
                        .is_some_and(|l| l == chunk[0].next)
                },
            )
            .await;
        let done = match run {
            Ok(done) => done,
            Err(failed) => {
                let undone = self.undo_updates(&ws, who, &failed.done, &now).await;
                return Err(chunk_failure(
                    failed.error,
                    failed.chunk.iter().map(|p| (p.index, &p.current.id)),
                    undone,
                ));
            }
        };
        results.extend(done.into_iter().map(|p| BatchItemResult {
            index: p.index,
            id: p.next.id.clone(),
            status: BatchItemStatus::Updated,
            label: p.next,
        }));
        results.sort_by_key(|r| r.index);
        Ok(BatchResult { items: results })
    }

    /// Puts back what a failed batch updated: the old content under a new version, and the
    /// old name markers (best effort: logged when it fails).
    async fn undo_updates(
        &self,
        ws: &str,
        who: &Principal,
        done: &[PlannedUpdate],
        now: &str,
    ) -> bool {
        let mut ok = true;
        let reverted: Vec<(Label, Label)> = done
            .iter()
            .map(|p| {
                let mut back = p.current.clone();
                back.version = p.next.version + 1;
                back.updated_at = now.to_owned();
                (p.next.clone(), back)
            })
            .collect();
        let ops_of = |(from, to): &(Label, Label)| if renamed(from, to) { 4 } else { 2 };
        for chunk in chunks_by_ops(reverted, ops_of) {
            let result = self
                .ctx
                .changes
                .commit(ws, &who.user_id, &[], |_| {
                    let mut plan = Plan::new(());
                    for (from, to) in &chunk {
                        plan = update_ops(plan, from, to).change(Change::new(
                            EntityType::Label,
                            &to.id,
                            ChangeKind::Updated,
                            to,
                        ));
                    }
                    Ok(plan)
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, workspace_id = ws, "could not undo a partial label batch");
                ok = false;
            }
        }
        ok
    }

    /// Deletes up to 100 labels of one workspace, all or none, after removing them from every
    /// issue. Issues keep losing the labels even when the batch is then undone: an issue
    /// without a label is consistent, and a repeat of the batch finishes the job.
    pub async fn batch_delete(&self, who: &Principal, req: BatchDeleteLabels) -> BatchOutcome {
        let total = req.ids.len();
        check_count("ids", total)?;
        let Some(ws) = batch_workspace(req.ids.iter().map(String::as_str)) else {
            return Err(AppError::not_found("label").into());
        };
        let label_keys: Vec<Key> = req
            .ids
            .iter()
            .filter(|id| in_workspace(id, &ws))
            .map(|id| keys::label(&ws, id))
            .collect();
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Manage, "label", &label_keys)
            .await?;
        let mut stored: HashMap<Key, Item> = label_keys
            .into_iter()
            .zip(got)
            .filter_map(|(k, item)| item.map(|i| (k, i)))
            .collect();
        let mut errors = Vec::new();
        let mut labels: Vec<(usize, Label)> = Vec::new();
        let mut seen_ids = HashSet::new();
        for (index, id) in req.ids.iter().enumerate() {
            if !seen_ids.insert(id.as_str()) {
                let e = AppError::validation("id", "the batch names this label twice");
                errors.push(item_error(index, Some(id), &e));
                continue;
            }
            let item = in_workspace(id, &ws)
                .then(|| stored.remove(&keys::label(&ws, id)))
                .flatten();
            match item {
                Some(item) => labels.push((index, from_item(item)?)),
                None => {
                    let mut e = AppError::not_found("label");
                    e.field = Some("id".into());
                    errors.push(item_error(index, Some(id), &e));
                }
            }
        }
        if !errors.is_empty() {
            return Err(reject("ids", total, errors));
        }
        let label_keys: Vec<Key> = labels
            .iter()
            .map(|(_, l)| keys::label(&ws, &l.id))
            .collect();
        let marks = references::mark(&self.ctx, &label_keys, |i| {
            AppError::unknown_reference("id", format!("item {}: label not found", labels[i].0))
                .with_code(ErrorCode::NotFound)
        })
        .await
        .map_err(|e| chunk_failure(e, labels.iter().map(|(i, l)| (*i, &l.id)), true))?;
        let label_ids: Vec<String> = labels.iter().map(|(_, l)| l.id.clone()).collect();
        let detached = references::detach_labels(&self.ctx, &ws, &who.user_id, &label_ids).await;
        references::settle(&self.ctx, &marks, detached).await?;
        let mark_of: HashMap<String, Mark> = label_ids.into_iter().zip(marks.clone()).collect();
        let run = self
            .run_chunks(
                &ws,
                who,
                chunks_by_ops(labels, |_| 3),
                |plan, (index, label)| {
                    plan.guarded(
                        mark_of[&label.id].delete_op(),
                        AppError::unknown_reference("id", "label not found or changed meanwhile")
                            .with_code(ErrorCode::NotFound)
                            .for_item(*index),
                    )
                    .op(delete_op(label_name_key(&ws, &label.name)))
                    .change(Change::new(
                        EntityType::Label,
                        &label.id,
                        ChangeKind::Deleted,
                        label,
                    ))
                },
                // Applied when every label of the chunk is gone.
                |chunk| chunk.iter().map(|(_, l)| keys::label(&ws, &l.id)).collect(),
                |_, stored| stored.iter().all(Option::is_none),
            )
            .await;
        match run {
            Ok(done) => Ok(batch_result(done, BatchItemStatus::Deleted)),
            Err(failed) => {
                let undo: Vec<Label> = failed.done.into_iter().map(|(_, l)| l).collect();
                let undone = self.undo_deletes(&ws, who, &undo).await;
                references::unmark_all(&self.ctx, &marks).await;
                Err(chunk_failure(
                    failed.error,
                    failed.chunk.iter().map(|(i, l)| (*i, &l.id)),
                    undone,
                ))
            }
        }
    }

    /// Re-creates labels a failed batch deleted (best effort: logged when it fails, e.g.
    /// when a name was taken in between).
    async fn undo_deletes(&self, ws: &str, who: &Principal, labels: &[Label]) -> bool {
        let mut ok = true;
        for chunk in labels.chunks(CHUNK_OPS / 3) {
            let result = self
                .ctx
                .changes
                .commit(ws, &who.user_id, &[], |_| {
                    let mut plan = Plan::new(());
                    for label in chunk {
                        plan = plan
                            .op(put_new(&keys::label(ws, &label.id), "label", label))
                            .op(claim(label_name_key(ws, &label.name), &label.id))
                            .change(Change::new(
                                EntityType::Label,
                                &label.id,
                                ChangeKind::Created,
                                label,
                            ));
                    }
                    Ok(plan)
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, workspace_id = ws, "could not undo a partial label batch");
                ok = false;
            }
        }
        ok
    }
}

/// The writes of one label update: the versioned put and, for a rename, the marker swap.
fn update_ops<T>(plan: Plan<T>, current: &Label, next: &Label) -> Plan<T> {
    update_ops_indexed(plan, current, next, None)
}

fn update_ops_indexed<T>(
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
            ..version_conflict()
        },
    );
    if renamed(current, next) {
        plan = plan
            .guarded(
                claim(label_name_key(ws, &next.name), &next.id),
                AppError {
                    index,
                    ..name_conflict("a label with this name already exists in the workspace")
                },
            )
            .op(WriteOp::Delete {
                table: Table::Main,
                key: label_name_key(ws, &current.name),
                condition: Some(Condition::AttrEquals(
                    "owner_id".into(),
                    serde_json::json!(current.id),
                )),
            });
    }
    plan
}

#[cfg(test)]
mod tests {
    //! The undo of a batch that fails part-way, with a concurrent writer injected between
    //! two chunks (black-box tests cannot time that).

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::kernel::access::Member;
    use crate::kernel::access::Role;
    use crate::kernel::context::delete_existing;
    use crate::kernel::record::record_item;
    use crate::storage::embedded::EmbeddedStore;
    use crate::storage::{Page, Store, StoreResult};

    /// A store that runs `inject` just before its `at`-th transaction: a concurrent writer.
    struct Interfering {
        inner: EmbeddedStore,
        calls: AtomicUsize,
        at: AtomicUsize,
        inject: Mutex<Option<Vec<WriteOp>>>,
    }

    #[async_trait]
    impl Store for Interfering {
        async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
            self.inner.get(table, key).await
        }
        async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
            self.inner.batch_get(table, keys).await
        }
        async fn query(&self, query: &Query) -> StoreResult<Page> {
            self.inner.query(query).await
        }
        async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
            if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.at.load(Ordering::SeqCst) {
                let injected = self.inject.lock().unwrap().take();
                if let Some(injected) = injected {
                    self.inner.transact(injected).await?;
                }
            }
            self.inner.transact(ops).await
        }
        async fn increment(
            &self,
            table: Table,
            key: &Key,
            attr: &str,
            by: i64,
        ) -> StoreResult<i64> {
            self.inner.increment(table, key, attr, by).await
        }
    }

    struct Setup {
        store: Arc<Interfering>,
        service: LabelService,
        who: Principal,
        ws: String,
    }

    /// An admin in a workspace holding `existing` labels named `old 000`, `old 001`, ...
    async fn setup(existing: usize) -> Setup {
        let ws = uuid::Uuid::now_v7().to_string();
        let who = Principal {
            user_id: "u1".into(),
            session_id: "s1".into(),
        };
        let inner = EmbeddedStore::in_memory();
        let far = SystemClock.epoch_secs() + 3600;
        let session = json!({
            "pk": keys::session("u1", "s1").pk, "sk": keys::session("u1", "s1").sk,
            "entity": "session", "user_id": "u1", "session_id": "s1",
            "created_at": "2026-01-01T00:00:00Z", "last_used_at": "2026-01-01T00:00:00Z",
            "expires_at": far, "ttl": far,
        });
        let member = Member {
            workspace_id: ws.clone(),
            user_id: "u1".into(),
            role: Role::Admin,
            username: "admin".into(),
            email: "admin@example.com".into(),
            display_name: None,
            joined_at: "2026-01-01T00:00:00Z".into(),
        };
        inner
            .transact(vec![
                WriteOp::put(Table::Main, session.as_object().unwrap().clone()),
                WriteOp::put(
                    Table::Main,
                    record_item(&keys::member(&ws, "u1"), "member", &member),
                ),
            ])
            .await
            .unwrap();
        for i in 0..existing {
            let label = Label {
                id: ids::new_id(Kind::Label, &ws),
                workspace_id: ws.clone(),
                name: format!("old {i:03}"),
                color: "#000000".into(),
                level: LabelLevel::Issue,
                description: None,
                created_by: "u1".into(),
                version: 1,
                created_at: "2026-01-01T00:00:00Z".into(),
                updated_at: "2026-01-01T00:00:00Z".into(),
            };
            inner
                .transact(vec![
                    put_new(&keys::label(&ws, &label.id), "label", &label),
                    claim(label_name_key(&ws, &label.name), &label.id),
                ])
                .await
                .unwrap();
        }
        let store = Arc::new(Interfering {
            inner,
            calls: AtomicUsize::new(0),
            at: AtomicUsize::new(usize::MAX),
            inject: Mutex::new(None),
        });
        let service = LabelService::new(ServiceContext::new(store.clone(), Arc::new(SystemClock)));
        Setup {
            store,
            service,
            who,
            ws,
        }
    }

    impl Setup {
        /// Runs `inject` before the `at`-th transaction from now on.
        fn interfere(self, at: usize, inject: Vec<WriteOp>) -> Self {
            self.store.calls.store(0, Ordering::SeqCst);
            self.store.at.store(at, Ordering::SeqCst);
            *self.store.inject.lock().unwrap() = Some(inject);
            self
        }

        async fn labels(&self) -> Vec<Label> {
            let page = self
                .store
                .query(
                    &Query::new(Table::Main, keys::workspace_partition(&self.ws))
                        .sort(SortKey::BeginsWith(format!("{}#", keys::LABEL)))
                        .limit(1000),
                )
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|i| from_item(i).unwrap())
                .collect()
        }

        async fn markers(&self) -> Vec<(String, String)> {
            let page = self
                .store
                .query(
                    &Query::new(Table::Main, keys::workspace_partition(&self.ws))
                        .sort(SortKey::BeginsWith(format!("{}#", keys::LABEL_NAME)))
                        .limit(1000),
                )
                .await
                .unwrap();
            let mut out: Vec<(String, String)> = page
                .items
                .into_iter()
                .map(|i| {
                    (
                        i["sk"].as_str().unwrap().to_owned(),
                        i["owner_id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            out.sort();
            out
        }
    }

    fn new_labels(n: usize) -> Vec<NewLabel> {
        (0..n)
            .map(|i| NewLabel {
                name: format!("new {i:03}"),
                color: "#123456".into(),
                level: None,
                description: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_create_batch_failing_in_its_second_chunk_is_undone() {
        let s = setup(0).await;
        let ws = s.ws.clone();
        // A concurrent writer takes the name of item 40 (in the second chunk of 33).
        let s = s.interfere(2, vec![claim(label_name_key(&ws, "NEW 040"), "lbl_other")]);
        let refused = s
            .service
            .batch_create(
                &s.who,
                BatchCreateLabels {
                    workspace_id: Some(ws.clone()),
                    labels: new_labels(70),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(refused.error.code, ErrorCode::Conflict);
        assert!(refused.error.message.contains("nothing was written"));
        assert_eq!(refused.items.len(), 1);
        assert_eq!(refused.items[0].index, Some(40));
        assert_eq!(refused.items[0].field.as_deref(), Some("name"));
        assert!(s.labels().await.is_empty(), "the first chunk was undone");
        assert_eq!(
            s.markers().await,
            [("LABELNAME#new 040".to_owned(), "lbl_other".to_owned())],
            "only the concurrent writer's marker is left"
        );
        let (log, _) = s.service.ctx.changes.since(&ws, 0, 1000).await.unwrap();
        let created = log.iter().filter(|c| c.event == "label.created").count();
        let deleted = log.iter().filter(|c| c.event == "label.deleted").count();
        assert_eq!((created, deleted), (33, 33));
    }

    #[tokio::test]
    async fn an_update_batch_failing_in_its_second_chunk_is_undone() {
        let s = setup(30).await;
        let before = s.labels().await;
        let markers_before = s.markers().await;
        // Renames take 4 operations: 24 per chunk. A concurrent writer bumps label 25.
        let mut bumped = before[25].clone();
        bumped.version = 2;
        let s = s.interfere(
            2,
            vec![put_versioned(
                &keys::label(&bumped.workspace_id, &bumped.id),
                "label",
                &bumped,
                1,
            )],
        );
        // Label 25 states the version it read, so losing the race is the batch's 412 (an
        // unversioned batch would be done again instead).
        let refused = s
            .service
            .batch_update(
                &s.who,
                BatchUpdateLabels {
                    labels: before
                        .iter()
                        .map(|l| LabelPatch {
                            id: l.id.clone(),
                            name: Some(format!("renamed {}", l.name)),
                            color: None,
                            level: None,
                            description: None,
                            version: (l.id == bumped.id).then_some(1),
                        })
                        .collect(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(refused.error.code, ErrorCode::PreconditionFailed);
        assert_eq!(refused.items[0].index, Some(25));
        let after = s.labels().await;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(new.name, old.name, "names are back");
            if old.id == bumped.id {
                assert_eq!(new.version, 2, "the concurrent write stays");
            } else if before.iter().position(|l| l.id == old.id).unwrap() < 24 {
                assert_eq!(new.version, 3, "updated, then put back under a new version");
            } else {
                assert_eq!(new.version, 1, "never touched");
            }
        }
        assert_eq!(s.markers().await, markers_before, "old names claimed again");
    }

    #[tokio::test]
    async fn an_unversioned_update_batch_losing_a_race_is_done_again() {
        let s = setup(30).await;
        let before = s.labels().await;
        let mut bumped = before[25].clone();
        bumped.version = 2;
        bumped.description = Some("concurrent".into());
        let s = s.interfere(
            2,
            vec![put_versioned(
                &keys::label(&bumped.workspace_id, &bumped.id),
                "label",
                &bumped,
                1,
            )],
        );
        let done = s
            .service
            .batch_update(
                &s.who,
                BatchUpdateLabels {
                    labels: before
                        .iter()
                        .map(|l| LabelPatch {
                            id: l.id.clone(),
                            name: Some(format!("renamed {}", l.name)),
                            color: None,
                            level: None,
                            description: None,
                            version: None,
                        })
                        .collect(),
                },
            )
            .await
            .unwrap();
        assert!(
            done.items
                .iter()
                .all(|i| i.status == BatchItemStatus::Updated)
        );
        let after = s.labels().await;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(new.name, format!("renamed {}", old.name));
        }
        assert_eq!(
            after[25].description.as_deref(),
            Some("concurrent"),
            "applied on the concurrent write, not over it"
        );
    }

    #[tokio::test]
    async fn a_delete_batch_failing_in_its_second_chunk_is_undone() {
        let s = setup(40).await;
        let before = s.labels().await;
        let gone = before[35].clone();
        // Transaction 1 marks the labels, 2 is the first chunk.
        let s = s.interfere(
            3,
            vec![
                delete_existing(keys::label(&gone.workspace_id, &gone.id)),
                delete_op(label_name_key(&gone.workspace_id, &gone.name)),
            ],
        );
        let refused = s
            .service
            .batch_delete(
                &s.who,
                BatchDeleteLabels {
                    ids: before.iter().map(|l| l.id.clone()).collect(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(refused.error.code, ErrorCode::NotFound);
        assert_eq!(refused.items[0].index, Some(35));
        let after = s.labels().await;
        let expected: Vec<Label> = before.into_iter().filter(|l| l.id != gone.id).collect();
        assert_eq!(
            after, expected,
            "all but the concurrently deleted label are back"
        );
        assert_eq!(s.markers().await.len(), 39);
        let stored = s
            .store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(&s.ws))
                    .sort(SortKey::BeginsWith(format!("{}#", keys::LABEL))),
            )
            .await
            .unwrap();
        assert!(
            !stored.items.iter().any(references::is_marked),
            "the refused batch removed its deletion marks"
        );
    }
}
