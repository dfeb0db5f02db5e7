//! Labels: per-workspace, with names unique case-insensitively (a `LABELNAME#{name}` marker
//! claimed in the same transaction as the label, see `layout`). Single-label operations are
//! here; batches, committed whole in one transaction, are in `batch`.

use super::layout::{create_ops, delete_ops, update_ops};
use super::model::*;
use crate::areas::issues::references;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, EntityType, Principal};
use crate::kernel::changes::Plan;
use crate::kernel::context::{
    ServiceContext, check_version, color, expected_version, found, required_text, retry_unversioned,
};
use crate::kernel::ids::{self, Kind};
use crate::kernel::input::text::optional_text;
use crate::kernel::keys;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::storage::cursor::Position;
use crate::storage::{Item, Query, SortKey, Table};

/// Rows a level-filtered list reads to fill one page.
const FILTER_SCAN_LIMIT: u32 = 1000;

/// Validated label input.
pub(super) struct LabelInput {
    pub(super) name: String,
    color: String,
    level: LabelLevel,
    description: Option<String>,
}

pub(super) fn parse_input(
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
pub(super) fn patched(
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

pub struct LabelService {
    pub(super) ctx: ServiceContext,
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
        Ok(self
            .ctx
            .access
            .load(
                who,
                Kind::Label,
                label_id,
                keys::label,
                EntityType::Label.read_action(),
                &[],
            )
            .await?
            .record)
    }

    pub(super) fn new_label(
        &self,
        ws: &str,
        who: &Principal,
        input: LabelInput,
        now: &str,
    ) -> Label {
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
                Ok(create_ops(Plan::new(()), &label, None))
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
        let got = self
            .ctx
            .access
            .load(who, Kind::Label, label_id, keys::label, Action::Manage, &[])
            .await?;
        let ws = got.scope.workspace_id;
        let current: Label = got.record;
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
                Ok(update_ops(Plan::new(()), &current, &next, None))
            })
            .await?;
        Ok(next)
    }

    /// Deletes a label and frees its name (`Manage`), after removing it from every issue
    /// (`areas::issues::references`: a repeat of an interrupted delete continues it).
    pub async fn delete(&self, who: &Principal, label_id: &str) -> AppResult<Label> {
        let got = self
            .ctx
            .access
            .load(who, Kind::Label, label_id, keys::label, Action::Manage, &[])
            .await?;
        let ws = got.scope.workspace_id;
        let mut label: Label = got.record;
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
                        Ok(delete_ops(
                            Plan::new(()),
                            &marks[0],
                            &label,
                            changed.clone(),
                        ))
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
}
