//! Projects and project statuses: `/projects`, `/project-statuses`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::projects::{
    CreateProject, CreateProjectStatus, Project, ProjectFilter, ProjectStatus, ProjectView,
    StatusListParams, UpdateProject, UpdateProjectStatus,
};
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::{PageParams, Paged};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_statuses, create_status))
        .routes(routes!(get_status, update_status, delete_status))
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

// ----- project statuses ------------------------------------------------------------------

/// A workspace's project statuses, by position.
#[utoipa::path(get, path = "/project-statuses", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(StatusListParams),
    responses((status = 200, body = Envelope<Vec<ProjectStatus>>), CommonErrors))]
async fn list_statuses(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<StatusListParams>,
) -> ApiResult<Vec<ProjectStatus>> {
    Ok(ApiResponse::ok(
        s.projects
            .list_statuses(&who, p.workspace_id.as_deref())
            .await?,
    ))
}

/// Create a project status (admins and owners).
#[utoipa::path(post, path = "/project-statuses", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateProjectStatus,
    responses((status = 201, body = Envelope<ProjectStatus>), CommonErrors))]
async fn create_status(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateProjectStatus>,
) -> ApiResult<ProjectStatus> {
    let created = s.projects.create_status(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// One project status.
#[utoipa::path(get, path = "/project-statuses/{id}", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "project status id")),
    responses((status = 200, body = Envelope<ProjectStatus>), CommonErrors))]
async fn get_status(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<ProjectStatus> {
    Ok(ApiResponse::ok(s.projects.get_status(&who, &id).await?))
}

/// Change a project status's name, category, color or position (admins and owners).
/// The expected version may come as `version` or as an `If-Match` header.
#[utoipa::path(put, path = "/project-statuses/{id}", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "project status id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    request_body = UpdateProjectStatus,
    responses((status = 200, body = Envelope<ProjectStatus>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update_status(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateProjectStatus>,
) -> ApiResult<ProjectStatus> {
    Ok(ApiResponse::ok(
        s.projects.update_status(&who, &id, req, expected).await?,
    ))
}

/// Delete a project status no project uses (admins and owners; 409 while projects use it).
#[utoipa::path(delete, path = "/project-statuses/{id}", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "project status id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    responses((status = 200, body = Envelope<Deleted>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn delete_status(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Deleted> {
    s.projects.delete_status(&who, &id, expected).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}

// ----- projects --------------------------------------------------------------------------

/// A workspace's projects, paginated, optionally filtered by status, owner and priority.
/// A filtered page may hold fewer than `limit` items while `next_cursor` is present.
#[utoipa::path(get, path = "/projects", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(ProjectFilter, PageParams),
    responses((status = 200, body = Envelope<Paged<Project>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(filter): Query<ProjectFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Project>> {
    Ok(ApiResponse::ok(
        s.projects.list(&who, &filter, &page).await?,
    ))
}

/// Create a project (members and up). The key is unique in the workspace (409 on
/// `project_key`); the owner defaults to the caller.
#[utoipa::path(post, path = "/projects", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateProject,
    responses((status = 201, body = Envelope<ProjectView>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateProject>,
) -> ApiResult<ProjectView> {
    let created = s.projects.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// One project, with its status's category.
#[utoipa::path(get, path = "/projects/{id}", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "project id")),
    responses((status = 200, body = Envelope<ProjectView>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<ProjectView> {
    Ok(ApiResponse::ok(s.projects.get(&who, &id).await?))
}

/// Change a project (members and up). Absent fields stay; `null` clears optional ones. The
/// expected version may come as `version` or as an `If-Match` header.
#[utoipa::path(put, path = "/projects/{id}", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "project id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    request_body = UpdateProject,
    responses((status = 200, body = Envelope<ProjectView>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateProject>,
) -> ApiResult<ProjectView> {
    Ok(ApiResponse::ok(
        s.projects.update(&who, &id, req, expected).await?,
    ))
}

/// Delete a project (members and up); its key becomes free.
#[utoipa::path(delete, path = "/projects/{id}", tag = "projects", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "project id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    responses((status = 200, body = Envelope<Deleted>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Deleted> {
    s.projects.delete(&who, &id, expected).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}
