//! API tokens acting in a workspace, for its admins: `/workspaces/{id}/tokens`.

use axum::extract::{Path, State};
use momentum_shared::AppState;
use momentum_shared::areas::tokens::{RevokedApiToken, WorkspaceApiToken};
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Query};
use momentum_shared::kernel::paging::{PageParams, Paged};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_for_workspace))
        .routes(routes!(revoke_in_workspace))
}

/// API tokens acting in a workspace (admins and owners): tokens restricted to it, and
/// members' unrestricted tokens once used in it.
#[utoipa::path(get, path = "/workspaces/{id}/tokens", tag = "tokens",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"), PageParams),
    responses((status = 200, body = Envelope<Paged<WorkspaceApiToken>>), CommonErrors))]
async fn list_for_workspace(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<WorkspaceApiToken>> {
    Ok(ApiResponse::ok(
        s.tokens.list_for_workspace(&who, &id, &page).await?,
    ))
}

/// Revoke an API token in a workspace (admins and owners): a token restricted to it is
/// deleted, an unrestricted one stops working in this workspace.
#[utoipa::path(delete, path = "/workspaces/{id}/tokens/{token_id}", tag = "tokens",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workspace id"),
        ("token_id" = String, Path, description = "token id (32 hex characters)")),
    responses((status = 200, body = Envelope<RevokedApiToken>), CommonErrors))]
async fn revoke_in_workspace(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, token_id)): Path<(String, String)>,
) -> ApiResult<RevokedApiToken> {
    Ok(ApiResponse::ok(
        s.tokens.revoke_in_workspace(&who, &id, &token_id).await?,
    ))
}
