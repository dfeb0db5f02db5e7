//! Workspaces as stored and served (plus `pk`/`sk`/`entity` when stored).

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
