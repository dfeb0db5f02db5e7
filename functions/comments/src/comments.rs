//! Comments on issues: `/comments`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::comments::{Comment, CommentListParams, CreateComment, UpdateComment};
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::{PageParams, Paged};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
}

/// An issue's comments, oldest first, paginated. Replies carry `parent_id`; deleted
/// comments stay as tombstones (`deleted: true`, empty body).
#[utoipa::path(get, path = "/comments", tag = "comments", security(("bearer" = []), ("api_token" = [])),
    params(CommentListParams, PageParams),
    responses((status = 200, body = Envelope<Paged<Comment>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<CommentListParams>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Comment>> {
    Ok(ApiResponse::ok(
        s.comments.list(&who, &p.issue_id, &page).await?,
    ))
}

/// Comment on an issue (members and up), or reply to a comment of the same issue with
/// `parent_id`. `@username` mentions of members are recorded in `mentions`.
#[utoipa::path(post, path = "/comments", tag = "comments", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateComment,
    responses((status = 201, body = Envelope<Comment>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateComment>,
) -> ApiResult<Comment> {
    let created = s.comments.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// One comment.
#[utoipa::path(get, path = "/comments/{id}", tag = "comments", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "comment id")),
    responses((status = 200, body = Envelope<Comment>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Comment> {
    Ok(ApiResponse::ok(s.comments.get(&who, &id).await?))
}

/// Edit a comment's body (its author only); sets `edited_at`. The expected version may come
/// as `version` or as an `If-Match` header.
#[utoipa::path(put, path = "/comments/{id}", tag = "comments", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "comment id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    request_body = UpdateComment,
    responses((status = 200, body = Envelope<Comment>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateComment>,
) -> ApiResult<Comment> {
    Ok(ApiResponse::ok(
        s.comments.update(&who, &id, req, expected).await?,
    ))
}

/// Delete a comment (its author, or an admin or owner). The delete is soft: the comment
/// stays in its thread with `deleted: true` and an empty body; the tombstone is returned.
#[utoipa::path(delete, path = "/comments/{id}", tag = "comments", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "comment id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    responses((status = 200, body = Envelope<Comment>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Comment> {
    Ok(ApiResponse::ok(
        s.comments.delete(&who, &id, expected).await?,
    ))
}
