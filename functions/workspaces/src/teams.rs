//! Teams and team members: `/teams/*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::teams::{
    AddTeamMember, ChangeTeamMemberRole, CreateTeam, CreatedTeam, UpdateTeam,
};
use momentum_shared::areas::teams::{Team, TeamMember};
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::{PageParams, Paged};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::workspaces::Deleted;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(members, add_member))
        .routes(routes!(change_member_role, remove_member))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TeamListParams {
    /// The workspace (default: the caller's current workspace).
    pub workspace_id: Option<String>,
}

/// Teams of a workspace, paginated (any member).
#[utoipa::path(get, path = "/teams", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    params(TeamListParams, PageParams),
    responses((status = 200, body = Envelope<Paged<Team>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<TeamListParams>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Team>> {
    Ok(ApiResponse::ok(
        s.teams.list(&who, p.workspace_id.as_deref(), &page).await?,
    ))
}

/// Create a team (admins and owners): the caller becomes its lead; it gets a workflow with
/// the default states. A taken key is 409 on `key`.
#[utoipa::path(post, path = "/teams", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateTeam,
    responses((status = 201, body = Envelope<CreatedTeam>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateTeam>,
) -> ApiResult<CreatedTeam> {
    let created = s.teams.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// One team (any member).
#[utoipa::path(get, path = "/teams/{id}", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id")),
    responses((status = 200, body = Envelope<Team>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Team> {
    Ok(ApiResponse::ok(s.teams.get(&who, &id).await?))
}

/// Update key, name or description (admins and owners).
#[utoipa::path(put, path = "/teams/{id}", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id"),
        ("If-Match" = Option<String>, Header, description = "expected version, e.g. \"3\"")),
    request_body = UpdateTeam,
    responses((status = 200, body = Envelope<Team>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateTeam>,
) -> ApiResult<Team> {
    Ok(ApiResponse::ok(
        s.teams.update(&who, &id, req, expected).await?,
    ))
}

/// Delete a team that never had issues (admins and owners), with its memberships and
/// workflows. A team with issues is 409.
#[utoipa::path(delete, path = "/teams/{id}", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id")),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Deleted> {
    s.teams.delete(&who, &id).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}

/// Members of a team, paginated (any member).
#[utoipa::path(get, path = "/teams/{id}/members", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id"), PageParams),
    responses((status = 200, body = Envelope<Paged<TeamMember>>), CommonErrors))]
async fn members(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<TeamMember>> {
    Ok(ApiResponse::ok(s.teams.members(&who, &id, &page).await?))
}

/// Add a workspace member to the team (admins), or join it as `member` (members, for
/// themselves).
#[utoipa::path(post, path = "/teams/{id}/members", tag = "teams", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id")),
    request_body = AddTeamMember,
    responses((status = 201, body = Envelope<TeamMember>), CommonErrors))]
async fn add_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<AddTeamMember>,
) -> ApiResult<TeamMember> {
    let added = s.teams.add_member(&who, &id, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, added))
}

/// Change a team member's role (admins and owners).
#[utoipa::path(put, path = "/teams/{id}/members/{user_id}", tag = "teams",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id"), ("user_id" = String, Path)),
    request_body = ChangeTeamMemberRole,
    responses((status = 200, body = Envelope<TeamMember>), CommonErrors))]
async fn change_member_role(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, user_id)): Path<(String, String)>,
    Json(req): Json<ChangeTeamMemberRole>,
) -> ApiResult<TeamMember> {
    Ok(ApiResponse::ok(
        s.teams.change_member_role(&who, &id, &user_id, req).await?,
    ))
}

/// Remove a team member (admins and owners), or leave the team (anyone, for themselves).
#[utoipa::path(delete, path = "/teams/{id}/members/{user_id}", tag = "teams",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "team id"), ("user_id" = String, Path)),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn remove_member(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Deleted> {
    s.teams.remove_member(&who, &id, &user_id).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}
