//! The records and request bodies of projects and project statuses, and the statuses every
//! workspace starts with.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::kernel::ids::{self, Kind};

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

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusListParams {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
}

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

pub(super) fn sort_statuses(statuses: &mut [ProjectStatus]) {
    statuses.sort_by(|a, b| {
        (a.position, &a.created_at, &a.id).cmp(&(b.position, &b.created_at, &b.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
