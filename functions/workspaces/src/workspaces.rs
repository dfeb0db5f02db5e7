//! Workspaces, members and the change feed: `/workspaces/*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::workspaces::{
    ChangeMemberRole, ChangesPage, CreateWorkspace, CreatedWorkspace, SwitchWorkspace,
    UpdateWorkspace, WorkspaceView,
};
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::access::Member;
use momentum_shared::kernel::paging::{PageParams, Paged};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mine, create))
        .routes(routes!(current))
        .routes(routes!(switch))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(members))
        .routes(routes!(change_role, remove_member))
        .routes(routes!(changes))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

/// The caller's workspaces, each with the caller's role.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    responses((status = 200, body = Envelope<Vec<WorkspaceView>>), CommonErrors))]
async fn list_mine(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Vec<WorkspaceView>> {
    Ok(ApiResponse::ok(s.workspaces.list_mine(&who).await?))
}

/// Create a workspace: the caller becomes its owner; it gets a default team and workflow
/// and becomes the caller's current workspace.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateWorkspace,
    responses((status = 201, body = Envelope<CreatedWorkspace>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateWorkspace>,
) -> ApiResult<CreatedWorkspace> {
    let created = s.workspaces.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// The caller's current workspace.
#[utoipa::path(get, path = "/workspaces/current", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    responses((status = 200, body = Envelope<WorkspaceView>), CommonErrors))]
async fn current(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<WorkspaceView> {
    Ok(ApiResponse::ok(s.workspaces.current(&who).await?))
}

/// Make a workspace the caller's current one (members only).
#[utoipa::path(post, path = "/workspaces/switch", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    request_body = SwitchWorkspace,
    responses((status = 200, body = Envelope<WorkspaceView>), CommonErrors))]
async fn switch(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<SwitchWorkspace>,
) -> ApiResult<WorkspaceView> {
    Ok(ApiResponse::ok(s.workspaces.switch(&who, req).await?))
}

/// One workspace.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = Envelope<WorkspaceView>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<WorkspaceView> {
    Ok(ApiResponse::ok(s.workspaces.get(&who, &id).await?))
}

/// Update name, url key or description (admins and owners).
#[utoipa::path(put, path = "/workspaces/{id}", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"),
        ("If-Match" = Option<String>, Header, description = "expected version, e.g. \"3\"")),
    request_body = UpdateWorkspace,
    responses((status = 200, body = Envelope<WorkspaceView>),
        (status = 412, description = "version mismatch", body = momentum_shared::http::schema::ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateWorkspace>,
) -> ApiResult<WorkspaceView> {
    Ok(ApiResponse::ok(
        s.workspaces.update(&who, &id, req, expected).await?,
    ))
}

/// Delete the workspace (owners only).
#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id")),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Deleted> {
    s.workspaces.delete(&who, &id).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}

/// Members of a workspace, paginated.
#[utoipa::path(get, path = "/workspaces/{id}/members", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), PageParams),
    responses((status = 200, body = Envelope<Paged<Member>>), CommonErrors))]
async fn members(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Member>> {
    Ok(ApiResponse::ok(
        s.workspaces.members(&who, &id, &page).await?,
    ))
}

/// Change a member's role (admins; owner role by owners only).
#[utoipa::path(put, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), ("user_id" = String, Path)),
    request_body = ChangeMemberRole,
    responses((status = 200, body = Envelope<Member>), CommonErrors))]
async fn change_role(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, user_id)): Path<(String, String)>,
    Json(req): Json<ChangeMemberRole>,
) -> ApiResult<Member> {
    Ok(ApiResponse::ok(
        s.workspaces.change_role(&who, &id, &user_id, req).await?,
    ))
}

/// Remove a member (admins; owners for owners), or leave (any member, for themselves).
#[utoipa::path(delete, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), ("user_id" = String, Path)),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn remove_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Deleted> {
    s.workspaces.remove_member(&who, &id, &user_id).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last `seq` the client has seen (0 for everything retained).
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// At most this many changes (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Changes after `since`, in commit order: delta sync and resume after reconnect.
/// A `since` older than retention answers 410 `RESYNC_REQUIRED`.
#[utoipa::path(get, path = "/workspaces/{id}/changes", tag = "workspaces", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), ChangesParams),
    responses((status = 200, body = Envelope<ChangesPage>),
        (status = 410, description = "cursor older than retention", body = momentum_shared::http::schema::ErrorEnvelope),
        CommonErrors))]
async fn changes(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(p): Query<ChangesParams>,
) -> ApiResult<ChangesPage> {
    let since = p.since.unwrap_or(0);
    if since < 0 {
        return Err(momentum_shared::AppError::validation(
            "since",
            "must be >= 0",
        ));
    }
    let limit = momentum_shared::kernel::paging::changes_limit(p.limit, 100)?;
    Ok(ApiResponse::ok(
        s.workspaces.changes(&who, &id, since, limit).await?,
    ))
}
