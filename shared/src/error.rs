//! One error type for every service, mapped to one JSON envelope with stable codes:
//! `{"success": false, "data": null, "error": {"code", "message", "field"?}, "meta": {...}}`.
//! The `error` object is an [`ErrorBody`], whoever answers: a REST response, a WebSocket
//! reply, or one refused item of a batch.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::storage::StoreError;

/// Stable, machine-readable error codes. Clients branch on these, never on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    /// The client did not send its request (body) in time (the local shim's read timeout).
    RequestTimeout,
    UnsupportedMediaType,
    UnprocessableEntity,
    RateLimited,
    /// A change-log cursor older than retention: reload state.
    ResyncRequired,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ValidationError => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::UnprocessableEntity => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::ResyncRequired => 410,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::InternalError => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::UnprocessableEntity => "UNPROCESSABLE_ENTITY",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::ResyncRequired => "RESYNC_REQUIRED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// The error of every service call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// The item of a batch request this error is about (its position in the request).
    pub index: Option<usize>,
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        if let Some(index) = self.index {
            write!(f, " (item {index})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            index: None,
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(ErrorCode::ValidationError, message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// A well-formed reference (`field`) to something the caller cannot see or that does not
    /// exist: 404, naming the field.
    pub fn unknown_reference(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(ErrorCode::NotFound, message)
        }
    }

    /// Well-formed input that breaks a rule between fields (`ends_on` before `starts_on`),
    /// which no schema of one field can state: 422, naming the field.
    pub fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(ErrorCode::UnprocessableEntity, message)
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(ErrorCode::ServiceUnavailable, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    /// The same error, about item `index` of a batch request.
    pub fn for_item(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// The same error under another code (e.g. a field-level CONFLICT).
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

/// Storage failures that reach a handler unhandled. Expected conflicts (conditions) are
/// translated by services into domain errors before this; what is left is either the
/// caller's fault (a bad cursor) or ours (retryable or not).
impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => {
                AppError::validation("cursor", "invalid or foreign cursor")
            }
            StoreError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "storage unavailable");
                AppError::unavailable("storage temporarily unavailable, retry shortly")
            }
            StoreError::TransactionCanceled { .. } => {
                AppError::conflict("the resource was changed concurrently, retry")
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                AppError::internal("internal error")
            }
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

// The `error` object of every failed answer, built from an `AppError` in one place: REST
// responses (`http.rs`), WebSocket replies (`realtime::commands`), and the refused items of
// a batch (`items`, each with its `index` and `id`).
//
// As JSON: `code` and `message` always; `field` and `retry_after` when set (REST moves
// `retry_after` to the `Retry-After` header); `items` when items of a batch are to blame.
// An item's error (one with an `index`) always writes `index`, `id` and `field`, `null`
// when unset. The OpenAPI document describes it as `ErrorBody` (code, message, field) and,
// for batches, `BatchErrorBody` / `BatchItemError` (functions/labels).
//
// (Plain comments, not `///`: the schema would take them as its description.)
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `VALIDATION_ERROR`.
    #[schema(value_type = String)]
    pub code: ErrorCode,
    pub message: String,
    /// The offending input field, for validation errors.
    pub field: Option<String>,
    #[schema(ignore)]
    pub retry_after: Option<u64>,
    #[schema(ignore)]
    pub index: Option<usize>,
    #[schema(ignore)]
    pub id: Option<String>,
    #[schema(ignore)]
    pub items: Vec<ErrorBody>,
}

impl ErrorBody {
    /// The error of item `index` (with `id`, when the item names one) of a batch request.
    pub fn item(index: usize, id: Option<&str>, e: &AppError) -> Self {
        Self {
            index: Some(index),
            id: id.map(str::to_owned),
            ..Self::from(e)
        }
    }
}

impl From<&AppError> for ErrorBody {
    fn from(e: &AppError) -> Self {
        Self {
            code: e.code,
            message: e.message.clone(),
            field: e.field.clone(),
            retry_after: e.retry_after,
            index: e.index,
            id: None,
            items: Vec::new(),
        }
    }
}

impl From<AppError> for ErrorBody {
    fn from(e: AppError) -> Self {
        Self {
            code: e.code,
            message: e.message,
            field: e.field,
            retry_after: e.retry_after,
            index: e.index,
            id: None,
            items: Vec::new(),
        }
    }
}

/// For answers that carry the body boxed (it is large for a `Result`'s error).
impl From<AppError> for Box<ErrorBody> {
    fn from(e: AppError) -> Self {
        Box::new(e.into())
    }
}

impl Serialize for ErrorBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let item = self.index.is_some();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("code", &self.code)?;
        map.serialize_entry("message", &self.message)?;
        if item || self.field.is_some() {
            map.serialize_entry("field", &self.field)?;
        }
        if let Some(secs) = self.retry_after {
            map.serialize_entry("retry_after", &secs)?;
        }
        if item {
            map.serialize_entry("index", &self.index)?;
            map.serialize_entry("id", &self.id)?;
        }
        if !self.items.is_empty() {
            map.serialize_entry("items", &self.items)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_write_what_each_answer_wrote() {
        let plain = ErrorBody::from(&AppError::conflict("taken"));
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"code": "CONFLICT", "message": "taken"})
        );
        let busy = ErrorBody::from(AppError::unavailable("later"));
        assert_eq!(
            serde_json::to_value(&busy).unwrap(),
            json!({"code": "SERVICE_UNAVAILABLE", "message": "later", "retry_after": 1})
        );
        let bad = AppError::validation("color", "must be a hex colour");
        let item = ErrorBody::item(3, None, &bad);
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"code": "VALIDATION_ERROR", "message": "must be a hex colour",
                "field": "color", "index": 3, "id": null})
        );
        let unnamed = ErrorBody::item(0, Some("lbl_1"), &AppError::not_found("label"));
        let batch = ErrorBody {
            items: vec![unnamed, item],
            ..ErrorBody::from(AppError::validation("labels", "2 of 4 items refused"))
        };
        assert_eq!(
            serde_json::to_value(&batch).unwrap(),
            json!({"code": "VALIDATION_ERROR", "message": "2 of 4 items refused",
            "field": "labels", "items": [
                {"code": "NOT_FOUND", "message": "label not found", "field": null,
                    "index": 0, "id": "lbl_1"},
                {"code": "VALIDATION_ERROR", "message": "must be a hex colour",
                    "field": "color", "index": 3, "id": null},
            ]})
        );
        // An error about one item of a batch names it.
        let of_item = ErrorBody::from(AppError::conflict("taken").for_item(7));
        assert_eq!(of_item.index, Some(7));
    }
}
