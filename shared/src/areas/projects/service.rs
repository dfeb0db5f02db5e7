//! Projects and project statuses (see docs/data-model.md, "Projects and comments").
//!
//! Project statuses are workspace structure (admins manage them); projects are work (members
//! create and change them). A project's key is unique per workspace through a marker item
//! claimed in the same transaction as the project.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::areas::issues::references::{self, exists_unmarked};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::kernel::access::Action;
use crate::kernel::access::EntityType;
use crate::kernel::access::Principal;
use crate::kernel::access::Scope;
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
use crate::kernel::topic::Topic;
use crate::storage::cursor::Position;
use crate::storage::{Condition, Item, Key, Query, SortKey, Table, WriteOp};

pub const MAX_PROJECT_NAME_CHARS: usize = 100;
pub const MAX_PROJECT_DESCRIPTION_CHARS: usize = 10_000;
pub const MAX_PROJECT_KEY_CHARS: usize = 10;
pub const MAX_STATUS_NAME_CHARS: usize = 50;
pub const MAX_POSITION: i64 = 1_000_000;
/// How many projects one filtered list request examines (one Query): a filtered page may
/// hold fewer than `limit` items while `next_cursor` says more may follow.
pub const FILTER_WINDOW: u32 = 300;

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatusCategory {
    Backlog,
    Planned,
    InProgress,
    Completed,
    Canceled,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    None,
    Low,
    Medium,
    High,
    Urgent,
}

/// A project status (`WS#{ws}` / `PSTATUS#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectStatus {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub category: ProjectStatusCategory,
    /// `#RRGGBB` (upper-case).
    pub color: String,
    /// Display order (ascending).
    pub position: i64,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A project (`WS#{ws}` / `PROJECT#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// 1–10 upper-case letters/digits, unique per workspace.
    pub project_key: String,
    pub description: Option<String>,
    /// A member of the workspace.
    pub owner_id: Option<String>,
    pub priority: Priority,
    /// `YYYY-MM-DD`.
    pub target_date: Option<String>,
    /// A project status of the workspace.
    pub status_id: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A project as single-project responses serve it: with its status's category, read in the
/// same batch as the project where possible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectView {
    #[serde(flatten)]
    pub project: Project,
    /// The category of `status_id` (absent without a status, or when it no longer exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_category: Option<ProjectStatusCategory>,
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectStatus {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 1, max_length = 50)]
    pub name: String,
    pub category: ProjectStatusCategory,
    /// `#RRGGBB`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
    /// 0..=1,000,000; defaults to after the last status.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub position: Option<i64>,
}

/// Absent fields stay. `version`, when given (or `If-Match`), must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectStatus {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, max_length = 50)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub category: Option<ProjectStatusCategory>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, minimum = 0, maximum = 1000000)]
    pub position: Option<i64>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// 1–10 letters/digits (stored upper-case), unique in the workspace.
    #[schema(pattern = "^\\s*[A-Za-z0-9]{1,10}\\s*$")]
    pub project_key: String,
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// A member of the workspace; defaults to the caller.
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub priority: Priority,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(format = Date)]
    pub target_date: Option<String>,
    /// A project status of the workspace.
    #[serde(default)]
    pub status_id: Option<String>,
}

/// Absent fields stay; an explicit `null` clears `description`, `owner_id`, `target_date`
/// and `status_id`. `version`, when given (or `If-Match`), must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, max_length = 100)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false, pattern = "^\\s*[A-Za-z0-9]{1,10}\\s*$")]
    pub project_key: Option<String>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 10000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "non_null")]
    #[schema(nullable = false)]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(format = Date)]
    pub target_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub status_id: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

/// For fields that may be absent (keep) but not `null` (they cannot be cleared): `null` is a
/// 400 naming the field. Use with `#[serde(default, deserialize_with = "non_null")]`.
pub fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Filters of `GET /projects` (all optional, combined with AND).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectFilter {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
    pub status_id: Option<String>,
    pub owner_id: Option<String>,
    #[param(value_type = Option<Priority>)]
    pub priority: Option<Priority>,
}

impl ProjectFilter {
    fn is_empty(&self) -> bool {
        self.status_id.is_none() && self.owner_id.is_none() && self.priority.is_none()
    }

    fn matches(&self, p: &Project) -> bool {
        self.status_id
            .as_ref()
            .is_none_or(|s| p.status_id.as_ref() == Some(s))
            && self
                .owner_id
                .as_ref()
                .is_none_or(|o| p.owner_id.as_ref() == Some(o))
            && self.priority.is_none_or(|pr| p.priority == pr)
    }
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusListParams {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------

/// The statuses every workspace starts with: (name, category, color).
pub const DEFAULT_PROJECT_STATUSES: [(&str, ProjectStatusCategory, &str); 5] = [
    ("Backlog", ProjectStatusCategory::Backlog, "#BEC2C8"),
    ("Planned", ProjectStatusCategory::Planned, "#E2E2E2"),
    ("In Progress", ProjectStatusCategory::InProgress, "#F2C94C"),
    ("Completed", ProjectStatusCategory::Completed, "#5E6AD2"),
    ("Canceled", ProjectStatusCategory::Canceled, "#95A2B3"),
];

/// New records of the default project statuses of a workspace (positions 0..5).
pub fn default_project_statuses(workspace_id: &str, now: &str) -> Vec<ProjectStatus> {
    DEFAULT_PROJECT_STATUSES
        .iter()
        .enumerate()
        .map(|(i, (name, category, color))| ProjectStatus {
            id: ids::new_id(Kind::ProjectStatus, workspace_id),
            workspace_id: workspace_id.to_owned(),
            name: (*name).to_owned(),
            category: *category,
            color: (*color).to_owned(),
            position: i as i64,
            version: 1,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        })
        .collect()
}

/// Adds the writes and change records of new project statuses to a plan (for seeding them
/// in the transaction that creates a workspace): one put and one change per status.
pub fn plan_project_statuses<T>(mut plan: Plan<T>, statuses: &[ProjectStatus]) -> Plan<T> {
    for s in statuses {
        plan = plan
            .op(put_new(
                &keys::project_status(&s.workspace_id, &s.id),
                "project_status",
                s,
            ))
            .change(Change::new(
                EntityType::ProjectStatus,
                &s.id,
                ChangeKind::Created,
                s,
            ));
    }
    plan
}

/// The uniqueness marker of a project key in a workspace.
pub fn project_key_marker(workspace_id: &str, project_key: &str) -> Key {
    keys::scoped(workspace_id, keys::PROJECT_KEY, project_key)
}

/// 1–10 ASCII letters/digits, upper-cased.
pub fn validate_project_key(field: &str, raw: &str) -> AppResult<String> {
    let key = raw.trim();
    let ok = (1..=MAX_PROJECT_KEY_CHARS).contains(&key.len())
        && key.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(key.to_ascii_uppercase())
    } else {
        Err(AppError::validation(
            field,
            "must be 1-10 letters or digits",
        ))
    }
}

/// A calendar date `YYYY-MM-DD` (a real day: no February 30th).
pub fn validate_date(field: &str, raw: &str) -> AppResult<String> {
    let bad = || AppError::validation(field, "must be a date like 2026-03-31");
    let b = raw.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(bad());
    }
    let year: i32 = raw[0..4].parse().map_err(|_| bad())?;
    let month: u8 = raw[5..7].parse().map_err(|_| bad())?;
    let day: u8 = raw[8..10].parse().map_err(|_| bad())?;
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(raw.to_owned())
}

fn validate_position(raw: i64) -> AppResult<i64> {
    if (0..=MAX_POSITION).contains(&raw) {
        Ok(raw)
    } else {
        Err(AppError::validation(
            "position",
            format!("must be between 0 and {MAX_POSITION}"),
        ))
    }
}

/// A user id the caller names (an owner): a UUID, else it names no member.
fn validate_user_id(field: &str, raw: &str) -> AppResult<String> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| AppError::validation(field, "is not a member of the workspace"))
}

/// A status id the caller names: one of this workspace's, else 400.
fn validate_status_id(field: &str, raw: &str, ws: &str) -> AppResult<String> {
    match ids::workspace_of(Kind::ProjectStatus, raw) {
        Ok(of) if of == ws => Ok(raw.to_owned()),
        _ => Err(not_a_status(field)),
    }
}

fn not_a_status(field: &str) -> AppError {
    AppError::unknown_reference(field, "is not a project status of the workspace")
}

fn not_a_member(field: &str) -> AppError {
    AppError::unknown_reference(field, "is not a member of the workspace")
}

fn key_taken() -> AppError {
    AppError::validation(
        "project_key",
        "this project key is already used in the workspace",
    )
    .with_code(ErrorCode::Conflict)
}

fn sort_statuses(statuses: &mut [ProjectStatus]) {
    statuses.sort_by(|a, b| {
        (a.position, &a.created_at, &a.id).cmp(&(b.position, &b.created_at, &b.id))
    });
}

fn delete_op(key: Key, condition: Option<Condition>) -> WriteOp {
    WriteOp::Delete {
        table: Table::Main,
        key,
        condition,
    }
}

fn exists_check(key: Key) -> WriteOp {
    WriteOp::ConditionCheck {
        table: Table::Main,
        key,
        condition: Condition::Exists,
    }
}

// ---------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------

pub struct ProjectService {
    ctx: ServiceContext,
}

impl ProjectService {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    /// The workspace a create means: the given id, else the caller's current workspace (the
    /// rule of `Access::resolve`, without authorizing yet, so that authorization can read
    /// the request's other keys in the same batch).
    async fn target_workspace(
        &self,
        who: &Principal,
        workspace_id: Option<&str>,
    ) -> AppResult<String> {
        match workspace_id {
            Some(id) => ids::parse_workspace_id(id),
            None => self
                .ctx
                .access
                .current_workspace(who)
                .await?
                .ok_or_else(|| {
                    AppError::validation(
                        "workspace_id",
                        "no current workspace: pass workspace_id or switch to a workspace first",
                    )
                }),
        }
    }

    // ----- project statuses --------------------------------------------------------------

    async fn all_statuses(&self, ws: &str) -> AppResult<Vec<ProjectStatus>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .ctx
                .store
                .query(
                    &Query::new(Table::Main, keys::workspace_partition(ws))
                        .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT_STATUS)))
                        .limit(1000)
                        .cursor(cursor.take()),
                )
                .await?;
            for item in page.items {
                out.push(from_item(item)?);
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        sort_statuses(&mut out);
        Ok(out)
    }

    /// A workspace's project statuses, by position.
    pub async fn list_statuses(
        &self,
        who: &Principal,
        workspace_id: Option<&str>,
    ) -> AppResult<Vec<ProjectStatus>> {
        let scope = self
            .ctx
            .access
            .resolve(who, workspace_id, EntityType::ProjectStatus.read_action())
            .await?;
        self.all_statuses(&scope.workspace_id).await
    }

    pub async fn create_status(
        &self,
        who: &Principal,
        req: CreateProjectStatus,
    ) -> AppResult<ProjectStatus> {
        let name = required_text("name", &req.name, MAX_STATUS_NAME_CHARS)?;
        let color = color("color", &req.color)?;
        let position = req.position.map(validate_position).transpose()?;
        let scope = self
            .ctx
            .access
            .resolve(who, req.workspace_id.as_deref(), Action::Manage)
            .await?;
        let ws = scope.workspace_id;
        let position = match position {
            Some(p) => p,
            None => self
                .all_statuses(&ws)
                .await?
                .iter()
                .map(|s| s.position + 1)
                .max()
                .unwrap_or(0)
                .min(MAX_POSITION),
        };
        let now = self.ctx.now();
        let status = ProjectStatus {
            id: ids::new_id(Kind::ProjectStatus, &ws),
            workspace_id: ws.clone(),
            name,
            category: req.category,
            color,
            position,
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(plan_project_statuses(
                    Plan::new(()),
                    std::slice::from_ref(&status),
                ))
            })
            .await?;
        Ok(status)
    }

    async fn authorize_status(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
    ) -> AppResult<(Scope, ProjectStatus)> {
        let ws = ids::workspace_of(Kind::ProjectStatus, id)?;
        let (scope, mut got) = self
            .ctx
            .access
            .authorize(
                who,
                &ws,
                action,
                Kind::ProjectStatus.noun(),
                &[keys::project_status(&ws, id)],
            )
            .await?;
        let status = found(got.pop().flatten(), Kind::ProjectStatus.noun())?;
        Ok((scope, status))
    }

    pub async fn get_status(&self, who: &Principal, id: &str) -> AppResult<ProjectStatus> {
        Ok(self
            .authorize_status(who, id, EntityType::ProjectStatus.read_action())
            .await?
            .1)
    }

    pub async fn update_status(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateProjectStatus,
        if_match: Option<i64>,
    ) -> AppResult<ProjectStatus> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || {
            self.update_status_once(who, id, &req, expected)
        })
        .await
    }

    async fn update_status_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateProjectStatus,
        expected: Option<i64>,
    ) -> AppResult<ProjectStatus> {
        let name = req
            .name
            .as_deref()
            .map(|n| required_text("name", n, MAX_STATUS_NAME_CHARS))
            .transpose()?;
        let new_color = req
            .color
            .as_deref()
            .map(|c| color("color", c))
            .transpose()?;
        let position = req.position.map(validate_position).transpose()?;
        let (scope, current) = self.authorize_status(who, id, Action::Manage).await?;
        check_version(expected, current.version)?;
        let mut next = current.clone();
        if let Some(name) = name {
            next.name = name;
        }
        if let Some(category) = req.category {
            next.category = category;
        }
        if let Some(c) = new_color {
            next.color = c;
        }
        if let Some(p) = position {
            next.position = p;
        }
        if next == current {
            return Ok(current);
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        let ws = scope.workspace_id;
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        put_versioned(
                            &keys::project_status(&ws, id),
                            "project_status",
                            &next,
                            current.version,
                        ),
                        version_conflict(),
                    )
                    .change(Change::new(
                        EntityType::ProjectStatus,
                        id,
                        ChangeKind::Updated,
                        &next,
                    )))
            })
            .await?;
        Ok(next)
    }

    /// Deletes a status no project uses (409 otherwise: move those projects first).
    pub async fn delete_status(
        &self,
        who: &Principal,
        id: &str,
        if_match: Option<i64>,
    ) -> AppResult<()> {
        retry_unversioned(if_match, || self.delete_status_once(who, id, if_match)).await
    }

    async fn delete_status_once(
        &self,
        who: &Principal,
        id: &str,
        if_match: Option<i64>,
    ) -> AppResult<()> {
        let (scope, current) = self.authorize_status(who, id, Action::Manage).await?;
        check_version(if_match, current.version)?;
        let ws = scope.workspace_id;
        let used = self
            .count_projects(&ws, |p| p.status_id.as_deref() == Some(id))
            .await?;
        if used > 0 {
            return Err(AppError::conflict(format!(
                "this status is used by {used} project(s); move them to another status first"
            )));
        }
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                Ok(Plan::new(())
                    .guarded(
                        delete_op(
                            keys::project_status(&ws, id),
                            Some(Condition::VersionEquals(current.version)),
                        ),
                        version_conflict(),
                    )
                    .change(Change::new(
                        EntityType::ProjectStatus,
                        id,
                        ChangeKind::Deleted,
                        &current,
                    )))
            })
            .await?;
        Ok(())
    }

    async fn count_projects(&self, ws: &str, pred: impl Fn(&Project) -> bool) -> AppResult<usize> {
        let mut n = 0;
        let mut cursor = None;
        loop {
            let page = self
                .ctx
                .store
                .query(
                    &Query::new(Table::Main, keys::workspace_partition(ws))
                        .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT)))
                        .limit(1000)
                        .cursor(cursor.take()),
                )
                .await?;
            for item in page.items {
                if pred(&from_item::<Project>(item)?) {
                    n += 1;
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    // ----- projects ----------------------------------------------------------------------

    /// A workspace's projects, filtered, in id order. Unfiltered pages are full; a filtered
    /// request examines up to `FILTER_WINDOW` projects (one Query), so its page may be short
    /// while `next_cursor` is present.
    pub async fn list(
        &self,
        who: &Principal,
        filter: &ProjectFilter,
        page: &PageParams,
    ) -> AppResult<Paged<Project>> {
        let limit = page.limit()?;
        let scope = self
            .ctx
            .access
            .resolve(
                who,
                filter.workspace_id.as_deref(),
                EntityType::Project.read_action(),
            )
            .await?;
        let query = Query::new(Table::Main, keys::workspace_partition(&scope.workspace_id))
            .sort(SortKey::BeginsWith(format!("{}#", keys::PROJECT)))
            .cursor(page.cursor.clone());
        if filter.is_empty() {
            let got = self.ctx.store.query(&query.limit(limit)).await?;
            return Paged::of(got);
        }
        let got = self
            .ctx
            .store
            .query(&query.limit(FILTER_WINDOW.max(limit)))
            .await?;
        let examined = got.items.len();
        let mut items = Vec::new();
        let mut cut = None;
        for (i, item) in got.items.into_iter().enumerate() {
            let key = Key::of(&item);
            let project: Project = from_item(item)?;
            if !filter.matches(&project) {
                continue;
            }
            items.push(project);
            if items.len() as u32 == limit {
                if i + 1 < examined {
                    let key = key.ok_or_else(|| AppError::internal("internal error"))?;
                    cut = Some(
                        Position {
                            pk: key.pk,
                            sk: key.sk,
                            index_key: None,
                        }
                        .encode(),
                    );
                }
                break;
            }
        }
        let next_cursor = if items.len() as u32 == limit {
            cut.or(got.next_cursor)
        } else {
            got.next_cursor
        };
        Ok(Paged { items, next_cursor })
    }

    pub async fn create(&self, who: &Principal, req: CreateProject) -> AppResult<ProjectView> {
        let name = required_text("name", &req.name, MAX_PROJECT_NAME_CHARS)?;
        let project_key = validate_project_key("project_key", &req.project_key)?;
        let description = optional_text(
            "description",
            req.description.as_deref(),
            MAX_PROJECT_DESCRIPTION_CHARS,
        )?;
        let target_date = req
            .target_date
            .as_deref()
            .map(|d| validate_date("target_date", d))
            .transpose()?;
        let owner_id = match req.owner_id.as_deref() {
            Some(o) => validate_user_id("owner_id", o)?,
            None => who.user_id.clone(),
        };
        let ws = self
            .target_workspace(who, req.workspace_id.as_deref())
            .await?;
        let status_id = req
            .status_id
            .as_deref()
            .map(|s| validate_status_id("status_id", s, &ws))
            .transpose()?;

        let mut extra = Vec::new();
        let owner_is_caller = owner_id == who.user_id;
        if !owner_is_caller {
            extra.push(keys::member(&ws, &owner_id));
        }
        if let Some(s) = &status_id {
            extra.push(keys::project_status(&ws, s));
        }
        let (_, got) = self
            .ctx
            .access
            .authorize(who, &ws, Action::Contribute, "workspace", &extra)
            .await?;
        let mut got = got.into_iter();
        if !owner_is_caller && got.next().flatten().is_none() {
            return Err(not_a_member("owner_id"));
        }
        let status: Option<ProjectStatus> = match &status_id {
            Some(_) => Some(
                got.next()
                    .flatten()
                    .map(from_item)
                    .transpose()?
                    .ok_or_else(|| not_a_status("status_id"))?,
            ),
            None => None,
        };

        let now = self.ctx.now();
        let id = ids::new_id(Kind::Project, &ws);
        let project = Project {
            id: id.clone(),
            workspace_id: ws.clone(),
            name,
            project_key,
            description,
            owner_id: Some(owner_id),
            priority: req.priority,
            target_date,
            status_id,
            created_by: who.user_id.clone(),
            version: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(())
                    .op(put_new(&keys::project(&ws, &id), "project", &project))
                    .guarded(
                        claim(project_key_marker(&ws, &project.project_key), &id),
                        key_taken(),
                    );
                // The caller too: a member being removed cannot take a project on.
                if let Some(owner) = &project.owner_id {
                    let (op, err) =
                        exists_unmarked(keys::member(&ws, owner), not_a_member("owner_id"));
                    plan = plan.guarded(op, err);
                }
                if let Some(s) = &project.status_id {
                    plan = plan.guarded(
                        exists_check(keys::project_status(&ws, s)),
                        not_a_status("status_id"),
                    );
                }
                Ok(plan.change(
                    Change::new(EntityType::Project, &id, ChangeKind::Created, &project)
                        .topic(Topic::Project(id.to_string())),
                ))
            })
            .await?;
        Ok(ProjectView {
            status_category: status.map(|s| s.category),
            project,
        })
    }

    /// The view of a project; reads its status when `status` was not read along.
    async fn view(&self, project: Project, status: Option<Item>) -> AppResult<ProjectView> {
        let status: Option<ProjectStatus> = match (status, &project.status_id) {
            (Some(item), _) => Some(from_item(item)?),
            (None, Some(s)) => self
                .ctx
                .store
                .get(Table::Main, &keys::project_status(&project.workspace_id, s))
                .await?
                .map(from_item)
                .transpose()?,
            (None, None) => None,
        };
        Ok(ProjectView {
            status_category: status
                .filter(|s| project.status_id.as_deref() == Some(s.id.as_str()))
                .map(|s| s.category),
            project,
        })
    }

    async fn authorize_project(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
        extra: &[Key],
    ) -> AppResult<(Scope, Project, Vec<Option<Item>>)> {
        let ws = ids::workspace_of(Kind::Project, id)?;
        let mut keys_to_read = vec![keys::project(&ws, id)];
        keys_to_read.extend_from_slice(extra);
        let (scope, got) = self
            .ctx
            .access
            .authorize(who, &ws, action, Kind::Project.noun(), &keys_to_read)
            .await?;
        let mut got = got.into_iter();
        let project = found(got.next().flatten(), Kind::Project.noun())?;
        Ok((scope, project, got.collect()))
    }

    /// One project with its status's category (1 call, 2 with a status).
    pub async fn get(&self, who: &Principal, id: &str) -> AppResult<ProjectView> {
        let (_, project, _) = self
            .authorize_project(who, id, EntityType::Project.read_action(), &[])
            .await?;
        self.view(project, None).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateProject,
        if_match: Option<i64>,
    ) -> AppResult<ProjectView> {
        let expected = expected_version(req.version, if_match)?;
        retry_unversioned(expected, || self.update_once(who, id, &req, expected)).await
    }

    async fn update_once(
        &self,
        who: &Principal,
        id: &str,
        req: &UpdateProject,
        expected: Option<i64>,
    ) -> AppResult<ProjectView> {
        let ws = ids::workspace_of(Kind::Project, id)?;
        let name = req
            .name
            .as_deref()
            .map(|n| required_text("name", n, MAX_PROJECT_NAME_CHARS))
            .transpose()?;
        let project_key = req
            .project_key
            .as_deref()
            .map(|k| validate_project_key("project_key", k))
            .transpose()?;
        let description = req
            .description
            .as_ref()
            .map(|d| optional_text("description", d.as_deref(), MAX_PROJECT_DESCRIPTION_CHARS))
            .transpose()?;
        let target_date = req
            .target_date
            .as_ref()
            .map(|d| {
                d.as_deref()
                    .map(|d| validate_date("target_date", d))
                    .transpose()
            })
            .transpose()?;
        let owner_id = req
            .owner_id
            .as_ref()
            .map(|o| {
                o.as_deref()
                    .map(|o| validate_user_id("owner_id", o))
                    .transpose()
            })
            .transpose()?;
        let status_id = req
            .status_id
            .as_ref()
            .map(|s| {
                s.as_deref()
                    .map(|s| validate_status_id("status_id", s, &ws))
                    .transpose()
            })
            .transpose()?;

        // Read the named owner's membership and the named status with the project.
        let new_owner = owner_id.clone().flatten().filter(|o| *o != who.user_id);
        let new_status = status_id.clone().flatten();
        let mut extra = Vec::new();
        if let Some(o) = &new_owner {
            extra.push(keys::member(&ws, o));
        }
        if let Some(s) = &new_status {
            extra.push(keys::project_status(&ws, s));
        }
        let (_, current, got) = self
            .authorize_project(who, id, Action::Contribute, &extra)
            .await?;
        let mut got = got.into_iter();
        if new_owner.is_some() && got.next().flatten().is_none() {
            return Err(not_a_member("owner_id"));
        }
        let status_item = match new_status {
            Some(_) => Some(
                got.next()
                    .flatten()
                    .ok_or_else(|| not_a_status("status_id"))?,
            ),
            None => None,
        };
        check_version(expected, current.version)?;

        let mut next = current.clone();
        if let Some(name) = name {
            next.name = name;
        }
        if let Some(key) = project_key {
            next.project_key = key;
        }
        if let Some(d) = description {
            next.description = d;
        }
        if let Some(d) = target_date {
            next.target_date = d;
        }
        if let Some(o) = owner_id {
            next.owner_id = o;
        }
        if let Some(s) = status_id {
            next.status_id = s;
        }
        if let Some(p) = req.priority {
            next.priority = p;
        }
        if next == current {
            return self.view(current, status_item).await;
        }
        next.version += 1;
        next.updated_at = self.ctx.now();
        self.ctx
            .changes
            .commit(&ws, &who.user_id, &[], |_| {
                let mut plan = Plan::new(()).guarded(
                    put_versioned(&keys::project(&ws, id), "project", &next, current.version),
                    version_conflict(),
                );
                if next.project_key != current.project_key {
                    plan = plan
                        .guarded(
                            claim(project_key_marker(&ws, &next.project_key), id),
                            key_taken(),
                        )
                        .op(delete_op(
                            project_key_marker(&ws, &current.project_key),
                            None,
                        ));
                }
                if let Some(o) = &next.owner_id
                    && next.owner_id != current.owner_id
                {
                    let (op, err) = exists_unmarked(keys::member(&ws, o), not_a_member("owner_id"));
                    plan = plan.guarded(op, err);
                }
                if let Some(s) = &next.status_id
                    && next.status_id != current.status_id
                {
                    plan = plan.guarded(
                        exists_check(keys::project_status(&ws, s)),
                        not_a_status("status_id"),
                    );
                }
                Ok(plan.change(
                    Change::new(EntityType::Project, id, ChangeKind::Updated, &next)
                        .topic(Topic::Project(id.to_string())),
                ))
            })
            .await?;
        self.view(next, status_item).await
    }

    /// Deletes a project after clearing `project_id` on its issues
    /// (`areas::issues::references`: a repeat of an interrupted delete continues it).
    pub async fn delete(&self, who: &Principal, id: &str, if_match: Option<i64>) -> AppResult<()> {
        let (scope, mut current, _) = self
            .authorize_project(who, id, Action::Contribute, &[])
            .await?;
        check_version(if_match, current.version)?;
        let ws = scope.workspace_id;
        let key = keys::project(&ws, id);
        let changed = references::changed_while_deleting("project");
        for round in 0.. {
            let marks = references::mark(&self.ctx, std::slice::from_ref(&key), |_| {
                AppError::not_found(Kind::Project.noun())
            })
            .await?;
            let done = async {
                references::detach_project(&self.ctx, &ws, &who.user_id, id).await?;
                self.ctx
                    .changes
                    .commit(&ws, &who.user_id, &[], |_| {
                        Ok(Plan::new(())
                            .guarded(marks[0].delete_op(), changed.clone())
                            .op(delete_op(
                                project_key_marker(&ws, &current.project_key),
                                None,
                            ))
                            .change(
                                Change::new(EntityType::Project, id, ChangeKind::Deleted, &current)
                                    .topic(Topic::Project(id.to_string())),
                            ))
                    })
                    .await
            }
            .await;
            match references::settle(&self.ctx, &marks, done).await {
                // Edited while its issues were detached (a whole-record write drops the mark):
                // a stated version no longer matches; without one, again at the latest.
                Err(e) if e == changed && if_match.is_some() => return Err(version_conflict()),
                Err(e) if e == changed && round < 2 => {
                    let fresh = self.ctx.store.get(Table::Main, &key).await?;
                    current = found(fresh, Kind::Project.noun())?;
                }
                other => return other.map(|_| ()),
            }
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(validate_date("d", "2024-02-29").is_ok());
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "+202-01-01",
            "2026-01-01T00:00:00Z",
            "",
        ] {
            assert!(validate_date("d", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_keys() {
        assert_eq!(validate_project_key("k", " ab1 ").unwrap(), "AB1");
        for bad in ["", "ABCDEFGHIJK", "A-B", "ÄB", "A B"] {
            assert!(validate_project_key("k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn if_match() {
        assert_eq!(crate::kernel::context::parse_if_match(None).unwrap(), None);
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("\"3\"")).unwrap(),
            Some(3)
        );
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("W/\"4\"")).unwrap(),
            Some(4)
        );
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("5")).unwrap(),
            Some(5)
        );
        assert_eq!(
            crate::kernel::context::parse_if_match(Some("*")).unwrap(),
            None
        );
        assert!(crate::kernel::context::parse_if_match(Some("abc")).is_err());
        assert!(crate::kernel::context::expected_version(Some(1), Some(2)).is_err());
        assert_eq!(
            crate::kernel::context::expected_version(None, Some(2)).unwrap(),
            Some(2)
        );
    }

    #[test]
    fn default_statuses() {
        let ws = uuid::Uuid::new_v4().to_string();
        let statuses = default_project_statuses(&ws, "2026-01-01T00:00:00Z");
        let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["Backlog", "Planned", "In Progress", "Completed", "Canceled"]
        );
        assert!(
            statuses
                .iter()
                .all(|s| ids::workspace_of(Kind::ProjectStatus, &s.id).unwrap() == ws)
        );
    }
}
