//! Invitations and invite codes: `/invitations/*`, `/workspaces/{id}/invitations`,
//! `/workspaces/{id}/invite-codes`, `/invite-codes/*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::invitations::{
    AcceptedInvitation, CreateInvitation, CreateInviteCode, Invitation, InviteCode,
};
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Json, Query};
use momentum_shared::kernel::access::Member;
use momentum_shared::kernel::paging::{PageParams, Paged};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mine, create))
        .routes(routes!(list_for_workspace))
        .routes(routes!(accept))
        .routes(routes!(decline))
        .routes(routes!(revoke))
        .routes(routes!(list_codes, create_code))
        .routes(routes!(delete_code))
        .routes(routes!(join))
}

/// The caller's pending invitations, across workspaces (expired ones are left out).
#[utoipa::path(get, path = "/invitations", tag = "invitations", security(("bearer" = []), ("api_token" = [])),
    params(PageParams),
    responses((status = 200, body = Envelope<Paged<Invitation>>), CommonErrors))]
async fn list_mine(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Invitation>> {
    Ok(ApiResponse::ok(s.invitations.list_mine(&who, &page).await?))
}

/// Invite an email to a workspace (default: the current one; admins and owners). Valid for
/// 7 days. 409 when the email already has a pending invitation there or is a member.
#[utoipa::path(post, path = "/invitations", tag = "invitations", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateInvitation,
    responses((status = 201, body = Envelope<Invitation>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateInvitation>,
) -> ApiResult<Invitation> {
    let created = s.invitations.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// A workspace's invitations, in id order (admins and owners).
#[utoipa::path(get, path = "/workspaces/{id}/invitations", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), PageParams),
    responses((status = 200, body = Envelope<Paged<Invitation>>), CommonErrors))]
async fn list_for_workspace(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Invitation>> {
    Ok(ApiResponse::ok(
        s.invitations.list_for_workspace(&who, &id, &page).await?,
    ))
}

/// Accept an invitation addressed to the caller's email: the caller becomes a member.
/// 409 when it is no longer pending or has expired.
#[utoipa::path(post, path = "/invitations/{id}/accept", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "invitation id")),
    responses((status = 200, body = Envelope<AcceptedInvitation>), CommonErrors))]
async fn accept(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<AcceptedInvitation> {
    Ok(ApiResponse::ok(s.invitations.accept(&who, &id).await?))
}

/// Decline an invitation addressed to the caller's email.
#[utoipa::path(post, path = "/invitations/{id}/decline", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "invitation id")),
    responses((status = 200, body = Envelope<Invitation>), CommonErrors))]
async fn decline(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Invitation> {
    Ok(ApiResponse::ok(s.invitations.decline(&who, &id).await?))
}

/// Revoke a pending invitation (admins and owners). Answers it with status `revoked`.
#[utoipa::path(delete, path = "/invitations/{id}", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "invitation id")),
    responses((status = 200, body = Envelope<Invitation>), CommonErrors))]
async fn revoke(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Invitation> {
    Ok(ApiResponse::ok(s.invitations.revoke(&who, &id).await?))
}

/// Create a shareable invite code (admins and owners).
#[utoipa::path(post, path = "/workspaces/{id}/invite-codes", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id")),
    request_body = CreateInviteCode,
    responses((status = 201, body = Envelope<InviteCode>), CommonErrors))]
async fn create_code(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<CreateInviteCode>,
) -> ApiResult<InviteCode> {
    let code = s.invitations.create_code(&who, &id, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, code))
}

/// A workspace's invite codes, with uses and status (admins and owners).
#[utoipa::path(get, path = "/workspaces/{id}/invite-codes", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), PageParams),
    responses((status = 200, body = Envelope<Paged<InviteCode>>), CommonErrors))]
async fn list_codes(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<InviteCode>> {
    Ok(ApiResponse::ok(
        s.invitations.list_codes(&who, &id, &page).await?,
    ))
}

/// Delete an invite code (admins and owners of its workspace). Answers the deleted code.
#[utoipa::path(delete, path = "/invite-codes/{code}", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("code" = String, Path, description = "invite code")),
    responses((status = 200, body = Envelope<InviteCode>), CommonErrors))]
async fn delete_code(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(code): Path<String>,
) -> ApiResult<InviteCode> {
    Ok(ApiResponse::ok(
        s.invitations.delete_code(&who, &code).await?,
    ))
}

/// Join the workspace of an invite code (any signed-in user). 409 when the code expired,
/// reached its maximum uses, or the caller is already a member.
#[utoipa::path(post, path = "/invite-codes/{code}/join", tag = "invitations",
    security(("bearer" = []), ("api_token" = [])),
    params(("code" = String, Path, description = "invite code (case-insensitive)")),
    responses((status = 200, body = Envelope<Member>), CommonErrors))]
async fn join(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(code): Path<String>,
) -> ApiResult<Member> {
    Ok(ApiResponse::ok(s.invitations.join(&who, &code).await?))
}
