//! Workflows and their states as stored and served.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    pub id: String,
    pub workspace_id: String,
    pub team_id: String,
    pub name: String,
    /// The state new issues start in.
    pub default_state_id: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StateCategory {
    Triage,
    Backlog,
    Unstarted,
    Started,
    Completed,
    Canceled,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowState {
    pub id: String,
    pub workspace_id: String,
    pub workflow_id: String,
    pub name: String,
    pub category: StateCategory,
    pub position: i64,
    /// `#RRGGBB`.
    pub color: String,
    /// States an issue in this state may move to; `None` means any state of the workflow.
    pub transitions_to: Option<Vec<String>>,
    pub created_at: String,
    pub updated_at: String,
}

/// The states every new workflow starts with: (name, category, color).
pub const DEFAULT_STATES: [(&str, StateCategory, &str); 6] = [
    ("Triage", StateCategory::Triage, "#FC7840"),
    ("Backlog", StateCategory::Backlog, "#BEC2C8"),
    ("Todo", StateCategory::Unstarted, "#E2E2E2"),
    ("In Progress", StateCategory::Started, "#F2C94C"),
    ("Done", StateCategory::Completed, "#5E6AD2"),
    ("Canceled", StateCategory::Canceled, "#95A2B3"),
];

/// Index of the default state for new issues in `DEFAULT_STATES` (Todo).
pub const DEFAULT_STATE_INDEX: usize = 2;

/// A workflow with its states, sorted by `position`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    #[serde(flatten)]
    pub workflow: Workflow,
    pub states: Vec<WorkflowState>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    pub team_id: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Make it the team's workflow (the one new issues use).
    #[serde(default)]
    pub make_default: bool,
}

/// Absent fields stay. `version`, when given, must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflow {
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// A state of this workflow: where new issues start.
    #[serde(default)]
    pub default_state_id: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateState {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub category: StateCategory,
    /// `#RRGGBB`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
    /// 0..=1000000; after the last state when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub position: Option<i64>,
    /// Ids of states of this workflow an issue may move to; absent or `null`: any.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub transitions_to: Option<Vec<String>>,
}

/// Absent fields stay; `transitions_to: null` allows every state again.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateState {
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[serde(default)]
    pub category: Option<StateCategory>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub position: Option<i64>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<Vec<String>>)]
    #[schema(max_items = 50)]
    pub transitions_to: Option<Option<Vec<String>>>,
}
