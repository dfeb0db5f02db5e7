//! Membership records: the input of every authorization.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::role::Role;

/// A member as the workspace sees them (`WS#{ws}` / `MEMBER#{user}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub workspace_id: String,
    pub user_id: String,
    pub role: Role,
    pub username: String,
    pub email: String,
    pub display_name: Option<String>,
    pub joined_at: String,
}

/// The user-side mirror of a membership (`USER#{user}` / `WSMEMBER#{ws}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Membership {
    pub workspace_id: String,
    pub user_id: String,
    pub role: Role,
    pub joined_at: String,
}
