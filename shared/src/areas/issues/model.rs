//! The records, request bodies and list parameters of issues.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::areas::workflows::WorkflowState;
use crate::error::{AppError, AppResult};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
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

impl Priority {
    /// Importance, least first (so `order=desc` lists urgent first, none last).
    pub fn rank(self) -> u8 {
        match self {
            Priority::None => 0,
            Priority::Low => 1,
            Priority::Medium => 2,
            Priority::High => 3,
            Priority::Urgent => 4,
        }
    }

    pub fn parse(field: &str, raw: &str) -> AppResult<Self> {
        Ok(match raw {
            "none" => Priority::None,
            "low" => Priority::Low,
            "medium" => Priority::Medium,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => {
                return Err(AppError::validation(
                    field,
                    "must be one of none, low, medium, high, urgent",
                ));
            }
        })
    }
}

/// An issue, as stored and served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Issue {
    pub id: String,
    pub workspace_id: String,
    pub team_id: String,
    /// The team's workflow, whose states the issue moves through.
    pub workflow_id: String,
    /// Per-team sequence number, from 1.
    pub number: i64,
    /// `{TEAMKEY}-{number}`, e.g. `ENG-42`; `GET /issues/ENG-42` finds the issue.
    pub identifier: String,
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub state_id: String,
    pub assignee_id: Option<String>,
    #[serde(default)]
    pub label_ids: Vec<String>,
    pub project_id: Option<String>,
    pub cycle_id: Option<String>,
    pub parent_id: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// One changed field of an issue: who changed it, from what to what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    pub issue_id: String,
    pub workspace_id: String,
    pub actor_id: String,
    /// The field (`title`, `state_id`, ...) or `created`.
    pub field: String,
    pub from: Value,
    pub to: Value,
    pub at: String,
    /// The issue version this change produced.
    pub version: i64,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssue {
    pub team_id: String,
    /// 1–255 characters.
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// Default `none`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// A member of the workspace.
    #[serde(default)]
    pub assignee_id: Option<String>,
    /// Up to 20 labels of the workspace.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub label_ids: Option<Vec<String>>,
    #[serde(default)]
    pub project_id: Option<String>,
    /// A cycle of the same team.
    #[serde(default)]
    pub cycle_id: Option<String>,
    /// An issue of the same team.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// A state of the team's workflow; default the workflow's default state.
    #[serde(default)]
    pub state_id: Option<String>,
}

/// Absent fields stay; `null` clears an optional field. `version` (or `If-Match`), when
/// given, must match the stored version.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIssue {
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(nullable = false, value_type = String, min_length = 1, max_length = 255)]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 10000)]
    pub description: Option<Option<String>>,
    /// `null` means `none`.
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<Priority>)]
    pub priority: Option<Option<Priority>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub assignee_id: Option<Option<String>>,
    /// The whole set; `null` or `[]` removes every label.
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<Vec<String>>)]
    #[schema(max_items = 20)]
    pub label_ids: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub project_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub cycle_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
    /// Must be an allowed transition from the current state (409 otherwise).
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = String, nullable = false)]
    pub state_id: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionIssue {
    pub state_id: String,
    #[serde(default)]
    pub version: Option<i64>,
}

/// The states an issue may move to from its current state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Transitions {
    pub issue_id: String,
    pub current_state: Option<WorkflowState>,
    pub allowed: Vec<WorkflowState>,
}

/// Filters, sort and page of `GET /issues`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListIssuesParams {
    /// Default: the team's workspace, else the caller's current workspace.
    pub workspace_id: Option<String>,
    pub team_id: Option<String>,
    pub project_id: Option<String>,
    pub assignee_id: Option<String>,
    pub state_id: Option<String>,
    /// triage | backlog | unstarted | started | completed | canceled
    #[param(pattern = "^(triage|backlog|unstarted|started|completed|canceled)$")]
    pub state_category: Option<String>,
    /// none | low | medium | high | urgent
    #[param(pattern = "^(none|low|medium|high|urgent)$")]
    pub priority: Option<String>,
    pub label_id: Option<String>,
    pub cycle_id: Option<String>,
    pub parent_id: Option<String>,
    /// Case-insensitive substring of the title.
    #[param(max_length = 255)]
    pub q: Option<String>,
    /// created (default) | updated | priority
    #[param(pattern = "^(created|updated|priority)$")]
    pub sort: Option<String>,
    /// desc (default: newest, most recently updated or most urgent first) | asc
    #[param(pattern = "^(asc|desc)$")]
    pub order: Option<String>,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor` (same filters and sort).
    pub cursor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Created,
    Updated,
    Priority,
}

impl SortBy {
    pub(super) fn parse(raw: Option<&str>) -> AppResult<Self> {
        match raw {
            None | Some("created") => Ok(SortBy::Created),
            Some("updated") => Ok(SortBy::Updated),
            Some("priority") => Ok(SortBy::Priority),
            Some(_) => Err(AppError::validation(
                "sort",
                "must be one of created, updated, priority",
            )),
        }
    }

    pub(super) fn tag(self) -> &'static str {
        match self {
            SortBy::Created => "CREATED",
            SortBy::Updated => "UPDATED",
            SortBy::Priority => "PRIORITY",
        }
    }
}
