//! Teams and their members as stored and served.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: String,
    pub workspace_id: String,
    /// Up to 10 upper-case letters/digits, unique per workspace; prefixes issue identifiers.
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    /// The team's workflow (created with the team).
    pub workflow_id: String,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    Member,
    Lead,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TeamMember {
    pub workspace_id: String,
    pub team_id: String,
    pub user_id: String,
    pub role: TeamRole,
    pub joined_at: String,
}
