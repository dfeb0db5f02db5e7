//! Labels, including batch operations: `/labels`, `/labels/{id}`, `/labels/batch`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use momentum_shared::AppState;
use momentum_shared::areas::labels::{
    BatchCreateLabels, BatchDeleteLabels, BatchOutcome, BatchResult, BatchUpdateLabels,
    CreateLabel, Label, ListLabelsParams, UpdateLabel,
};
use momentum_shared::error::ErrorBody;
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope, Meta};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::Paged;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(batch_create, batch_update, batch_delete))
        .routes(routes!(get_one, update, delete))
}

// The OpenAPI description of an item of `error.items`, an `ErrorBody` with `index` and `id`.
/// Why one item of a refused batch was refused.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchItemError {
    /// Position of the item in the request.
    pub index: usize,
    pub id: Option<String>,
    /// `VALIDATION_ERROR`, `NOT_FOUND`, `PRECONDITION_FAILED` or `CONFLICT`.
    pub code: String,
    /// The offending field of the item (`name`, `color`, `id`, ...).
    pub field: Option<String>,
    pub message: String,
}

/// The error of a refused batch: the usual error plus one entry per refused item.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchErrorBody {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// Which items were refused and why (absent when the request as a whole was refused).
    pub items: Option<Vec<BatchItemError>>,
}

/// A refused batch: nothing was written.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BatchErrorEnvelope {
    pub success: bool,
    #[schema(value_type = Option<Object>)]
    pub data: Option<()>,
    pub error: BatchErrorBody,
    pub meta: Meta,
}

/// The batch's result, or the error envelope of a refused batch (`error.items` listing the
/// refused items).
fn batch_reply(outcome: BatchOutcome, ok: StatusCode) -> Response {
    match outcome {
        Ok(result) => ApiResponse::with_status(ok, result).into_response(),
        Err(r) => ErrorBody::from(r).into_response(),
    }
}

/// Labels of a workspace (default: the current one), in id order; `level` filters.
#[utoipa::path(get, path = "/labels", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    params(ListLabelsParams),
    responses((status = 200, body = Envelope<Paged<Label>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(params): Query<ListLabelsParams>,
) -> ApiResult<Paged<Label>> {
    Ok(ApiResponse::ok(s.labels.list(&who, &params).await?))
}

/// Create a label (admins and owners). A name already used in the workspace (whatever its
/// case) is a 409 on `name`.
#[utoipa::path(post, path = "/labels", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateLabel,
    responses((status = 201, body = Envelope<Label>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateLabel>,
) -> ApiResult<Label> {
    let label = s.labels.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, label))
}

/// One label.
#[utoipa::path(get, path = "/labels/{id}", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "label id")),
    responses((status = 200, body = Envelope<Label>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Label> {
    Ok(ApiResponse::ok(s.labels.get(&who, &id).await?))
}

/// Update a label (admins and owners). `version` (or `If-Match`) must match the current one.
#[utoipa::path(put, path = "/labels/{id}", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "label id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    request_body = UpdateLabel,
    responses((status = 200, body = Envelope<Label>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateLabel>,
) -> ApiResult<Label> {
    Ok(ApiResponse::ok(
        s.labels.update(&who, &id, req, expected).await?,
    ))
}

/// Delete a label (admins and owners); its name becomes free. Answers the deleted label.
#[utoipa::path(delete, path = "/labels/{id}", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "label id")),
    responses((status = 200, body = Envelope<Label>), CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Label> {
    Ok(ApiResponse::ok(s.labels.delete(&who, &id).await?))
}

/// Create 1–33 labels at once in one transaction, all or none (admins and owners). When any
/// item is refused, nothing is written and `error.items` says which and why; more than 33
/// labels is a 400 on `labels`.
#[utoipa::path(post, path = "/labels/batch", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    request_body = BatchCreateLabels,
    responses((status = 201, body = Envelope<BatchResult>),
        (status = 400, description = "invalid items; nothing written", body = BatchErrorEnvelope),
        (status = 409, description = "names taken; nothing written", body = BatchErrorEnvelope),
        CommonErrors))]
async fn batch_create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<BatchCreateLabels>,
) -> Response {
    batch_reply(s.labels.batch_create(&who, req).await, StatusCode::CREATED)
}

/// Update 1–24 labels of one workspace at once in one transaction, all or none (admins and
/// owners); more than 24 is a 400 on `labels`.
#[utoipa::path(put, path = "/labels/batch", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    request_body = BatchUpdateLabels,
    responses((status = 200, body = Envelope<BatchResult>),
        (status = 400, description = "invalid items; nothing written", body = BatchErrorEnvelope),
        (status = 404, description = "unknown ids; nothing written", body = BatchErrorEnvelope),
        (status = 409, description = "names taken; nothing written", body = BatchErrorEnvelope),
        (status = 412, description = "version mismatch; nothing written", body = BatchErrorEnvelope),
        CommonErrors))]
async fn batch_update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<BatchUpdateLabels>,
) -> Response {
    batch_reply(s.labels.batch_update(&who, req).await, StatusCode::OK)
}

/// Delete 1–33 labels of one workspace at once, all or none (admins and owners): they are
/// removed from their issues, then deleted in one transaction; more than 33 is a 400 on
/// `ids`.
#[utoipa::path(delete, path = "/labels/batch", tag = "labels", security(("bearer" = []), ("api_token" = [])),
    request_body = BatchDeleteLabels,
    responses((status = 200, body = Envelope<BatchResult>),
        (status = 404, description = "unknown ids; nothing written", body = BatchErrorEnvelope),
        CommonErrors))]
async fn batch_delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<BatchDeleteLabels>,
) -> Response {
    batch_reply(s.labels.batch_delete(&who, req).await, StatusCode::OK)
}
