//! Label records and the request and answer types of the labels API.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, ErrorBody};
pub use crate::kernel::limits::{
    MAX_LABEL_BATCH_CREATE, MAX_LABEL_BATCH_DELETE, MAX_LABEL_BATCH_UPDATE,
    MAX_LABEL_DESCRIPTION_CHARS, MAX_LABEL_NAME_CHARS,
};

/// Where a label may be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LabelLevel {
    Project,
    #[default]
    Issue,
}

/// A label (`WS#{ws}` / `LABEL#{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Label {
    pub id: String,
    pub workspace_id: String,
    /// 1–50 characters, unique in the workspace (case-insensitively).
    pub name: String,
    /// `#RRGGBB`, upper-case.
    pub color: String,
    pub level: LabelLevel,
    pub description: Option<String>,
    pub created_by: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLabel {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[schema(min_length = 1, max_length = 50)]
    pub name: String,
    /// `#RRGGBB`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
    /// `issue` when absent.
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Absent fields stay; `description: null` clears it. `version`, when given, must match.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLabel {
    #[serde(default)]
    #[schema(max_length = 50)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListLabelsParams {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
    /// Only labels of this level.
    pub level: Option<LabelLevel>,
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One label of a batch create.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    #[schema(min_length = 1, max_length = 50)]
    pub name: String,
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: String,
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreateLabels {
    /// Defaults to the caller's current workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// 1–33 labels (`MAX_LABEL_BATCH_CREATE`: what one transaction holds).
    #[schema(min_items = 1, max_items = 33)]
    pub labels: Vec<NewLabel>,
}

/// One label of a batch update: absent fields stay; `description: null` clears it.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelPatch {
    pub id: String,
    #[serde(default)]
    #[schema(max_length = 50)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub color: Option<String>,
    #[serde(default)]
    pub level: Option<LabelLevel>,
    #[serde(default, deserialize_with = "crate::kernel::context::present")]
    #[schema(value_type = Option<String>)]
    #[schema(max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub version: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchUpdateLabels {
    /// 1–25 labels of one workspace (`MAX_LABEL_BATCH_UPDATE`: what one transaction holds
    /// when every item is a rename).
    #[schema(min_items = 1, max_items = 25)]
    pub labels: Vec<LabelPatch>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDeleteLabels {
    /// 1–33 label ids of one workspace (`MAX_LABEL_BATCH_DELETE`: what one transaction
    /// holds).
    #[schema(min_items = 1, max_items = 33)]
    pub ids: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchItemStatus {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

/// What a batch did to one item.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItemResult {
    /// Position of the item in the request.
    pub index: usize,
    pub id: String,
    pub status: BatchItemStatus,
    /// The label after the operation (before it, for deletes).
    pub label: Label,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    pub items: Vec<BatchItemResult>,
}

/// A refused batch: the overall error and, when items are to blame, which and why (each an
/// item's error: its `index`, `id`, `code`, `field`, `message`). Nothing was written.
#[derive(Clone, Debug)]
pub struct BatchRejected {
    pub error: AppError,
    pub items: Vec<ErrorBody>,
}

/// The answer's `error`: the overall error with the refused items.
impl From<BatchRejected> for ErrorBody {
    fn from(r: BatchRejected) -> Self {
        ErrorBody {
            items: r.items,
            ..ErrorBody::from(r.error)
        }
    }
}

impl From<crate::storage::StoreError> for BatchRejected {
    fn from(error: crate::storage::StoreError) -> Self {
        AppError::from(error).into()
    }
}

impl From<AppError> for BatchRejected {
    fn from(error: AppError) -> Self {
        Self {
            error,
            items: Vec::new(),
        }
    }
}

pub type BatchOutcome = Result<BatchResult, BatchRejected>;

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use utoipa::PartialSchema;

    use super::*;

    fn max_items<T: PartialSchema>(field: &str) -> Value {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"][field]["maxItems"].clone()
    }

    /// The OpenAPI document states the limits the service enforces (`schema` attributes take
    /// literals only, so this keeps the two in step).
    #[test]
    fn batch_schemas_state_the_enforced_limits() {
        assert_eq!(
            max_items::<BatchCreateLabels>("labels"),
            json!(MAX_LABEL_BATCH_CREATE)
        );
        assert_eq!(
            max_items::<BatchUpdateLabels>("labels"),
            json!(MAX_LABEL_BATCH_UPDATE)
        );
        assert_eq!(
            max_items::<BatchDeleteLabels>("ids"),
            json!(MAX_LABEL_BATCH_DELETE)
        );
    }
}
