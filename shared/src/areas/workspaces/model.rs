//! Workspaces as stored and served (plus `pk`/`sk`/`entity` when stored), and the requests and
//! views of the workspace endpoints.

use crate::areas::teams::Team;
use crate::areas::workflows::{Workflow, WorkflowState};
use crate::kernel::access::Role;
use crate::kernel::changes::ChangeRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// Unique, URL-safe: lower-case letters, digits and dashes.
    pub url_key: String,
    pub description: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Lower-case letters, digits and dashes, 3–48; derived from the name when absent.
    #[serde(default)]
    #[schema(pattern = "^\\s*[a-z0-9]([a-z0-9-]{1,46})[a-z0-9]\\s*$")]
    pub url_key: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// Absent fields stay; `description: null` clears it. `version`, when given, must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^\\s*[a-z0-9]([a-z0-9-]{1,46})[a-z0-9]\\s*$")]
    pub url_key: Option<String>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 2000)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchWorkspace {
    pub workspace_id: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeMemberRole {
    pub role: Role,
}

/// A workspace with the caller's role in it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceView {
    #[serde(flatten)]
    pub workspace: Workspace,
    pub role: Role,
}

/// What creating a workspace made.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedWorkspace {
    #[serde(flatten)]
    pub workspace: Workspace,
    pub role: Role,
    pub default_team: Team,
    pub default_workflow: Workflow,
    pub states: Vec<WorkflowState>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangesPage {
    /// The records the caller may see now (docs/permissions.md, "Visibility"); others are
    /// left out without a gap in `last_seq`.
    pub changes: Vec<ChangeRecord>,
    /// The `seq` to pass as `since` next time.
    pub last_seq: i64,
    pub has_more: bool,
}
