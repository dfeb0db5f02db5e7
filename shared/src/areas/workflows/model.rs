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
