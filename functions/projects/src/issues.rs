//! Issues, their activity, workflow transitions and sub-issues: `/issues/*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::issues::{
    Activity, CreateIssue, Issue, ListIssuesParams, TransitionIssue, Transitions, UpdateIssue,
};
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::{PageParams, Paged};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(activity))
        .routes(routes!(transitions, transition))
        .routes(routes!(children))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Where to resolve an identifier such as `ENG-42` (default: the current workspace).
    pub workspace_id: Option<String>,
}

/// Issues of a team or workspace, filtered and sorted, by cursor. With filters the chosen
/// index does not answer, a page may hold fewer than `limit` issues and still have a
/// `next_cursor`: keep paging until `next_cursor` is null.
#[utoipa::path(get, path = "/issues", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(ListIssuesParams),
    responses((status = 200, body = Envelope<Paged<Issue>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<ListIssuesParams>,
) -> ApiResult<Paged<Issue>> {
    Ok(ApiResponse::ok(s.issues.list(&who, &p).await?))
}

/// Create an issue in a team: numbered per team (`ENG-1`, `ENG-2`, ...), in the workflow's
/// default state unless `state_id` says otherwise (members and up).
#[utoipa::path(post, path = "/issues", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateIssue,
    responses((status = 201, body = Envelope<Issue>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateIssue>,
) -> ApiResult<Issue> {
    let issue = s.issues.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, issue))
}

/// One issue, by id or by identifier (`ENG-42`, resolved in `workspace_id` or the caller's
/// current workspace).
#[utoipa::path(get, path = "/issues/{id}", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id, or identifier such as ENG-42"), GetParams),
    responses((status = 200, body = Envelope<Issue>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(p): Query<GetParams>,
) -> ApiResult<Issue> {
    Ok(ApiResponse::ok(
        s.issues.get(&who, &id, p.workspace_id.as_deref()).await?,
    ))
}

/// Partial update; `null` clears optional fields. Send the version you read as `version`
/// or `If-Match` to fail with 412 instead of overwriting someone else's change.
#[utoipa::path(put, path = "/issues/{id}", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id"),
        ("If-Match" = Option<String>, Header, description = "expected version, e.g. \"3\"")),
    request_body = UpdateIssue,
    responses((status = 200, body = Envelope<Issue>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateIssue>,
) -> ApiResult<Issue> {
    Ok(ApiResponse::ok(
        s.issues.update(&who, &id, req, expected).await?,
    ))
}

/// Delete an issue (members and up); its sub-issues lose their parent.
#[utoipa::path(delete, path = "/issues/{id}", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id")),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Deleted> {
    s.issues.delete(&who, &id).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}

/// The issue's history, oldest first: who changed which field from what to what.
#[utoipa::path(get, path = "/issues/{id}/activity", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id"), PageParams),
    responses((status = 200, body = Envelope<Paged<Activity>>), CommonErrors))]
async fn activity(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Activity>> {
    Ok(ApiResponse::ok(s.issues.activity(&who, &id, &page).await?))
}

/// The states the issue may move to from its current state.
#[utoipa::path(get, path = "/issues/{id}/transitions", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id")),
    responses((status = 200, body = Envelope<Transitions>), CommonErrors))]
async fn transitions(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Transitions> {
    Ok(ApiResponse::ok(s.issues.transitions(&who, &id).await?))
}

/// Move the issue to another state: 409 (listing the allowed states) when the current
/// state does not lead there; 400 for a state of another workflow.
#[utoipa::path(post, path = "/issues/{id}/transitions", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id"),
        ("If-Match" = Option<String>, Header, description = "expected version, e.g. \"3\"")),
    request_body = TransitionIssue,
    responses((status = 200, body = Envelope<Issue>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn transition(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<TransitionIssue>,
) -> ApiResult<Issue> {
    Ok(ApiResponse::ok(
        s.issues.transition(&who, &id, req, expected).await?,
    ))
}

/// Sub-issues, oldest first.
#[utoipa::path(get, path = "/issues/{id}/children", tag = "issues", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id"), PageParams),
    responses((status = 200, body = Envelope<Paged<Issue>>), CommonErrors))]
async fn children(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<Issue>> {
    Ok(ApiResponse::ok(s.issues.children(&who, &id, &page).await?))
}
