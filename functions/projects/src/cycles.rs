//! Cycles, their issues and stats: `/cycles/*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::cycles::{
    AssignIssues, CreateCycle, CycleStats, CycleView, ListCyclesParams, UpdateCycle,
};
use momentum_shared::areas::issues::Issue;
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::Paged;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::issues::Deleted;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(add_issues))
        .routes(routes!(remove_issue))
        .routes(routes!(stats))
}

/// A team's cycles, by start date.
#[utoipa::path(get, path = "/cycles", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    params(ListCyclesParams),
    responses((status = 200, body = Envelope<Paged<CycleView>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<ListCyclesParams>,
) -> ApiResult<Paged<CycleView>> {
    Ok(ApiResponse::ok(s.cycles.list(&who, &p).await?))
}

/// Create a cycle in a team (numbered per team; members and up).
#[utoipa::path(post, path = "/cycles", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateCycle,
    responses((status = 201, body = Envelope<CycleView>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateCycle>,
) -> ApiResult<CycleView> {
    let cycle = s.cycles.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, cycle))
}

/// One cycle, with its status (planned, active, completed).
#[utoipa::path(get, path = "/cycles/{id}", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "cycle id")),
    responses((status = 200, body = Envelope<CycleView>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<CycleView> {
    Ok(ApiResponse::ok(s.cycles.get(&who, &id).await?))
}

/// Partial update of name, description and dates (`version` or `If-Match` -> 412 on
/// mismatch).
#[utoipa::path(put, path = "/cycles/{id}", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "cycle id"),
        ("If-Match" = Option<String>, Header, description = "expected version, e.g. \"3\"")),
    request_body = UpdateCycle,
    responses((status = 200, body = Envelope<CycleView>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateCycle>,
) -> ApiResult<CycleView> {
    Ok(ApiResponse::ok(
        s.cycles.update(&who, &id, req, expected).await?,
    ))
}

/// Delete a cycle; its issues leave it.
#[utoipa::path(delete, path = "/cycles/{id}", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "cycle id")),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Deleted> {
    s.cycles.delete(&who, &id).await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}

/// Put 1–50 issues of the cycle's team into the cycle; returns them.
#[utoipa::path(post, path = "/cycles/{id}/issues", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "cycle id")),
    request_body = AssignIssues,
    responses((status = 200, body = Envelope<Vec<Issue>>), CommonErrors))]
async fn add_issues(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<AssignIssues>,
) -> ApiResult<Vec<Issue>> {
    Ok(ApiResponse::ok(s.cycles.add_issues(&who, &id, req).await?))
}

/// Take an issue out of the cycle (404 when it is not in it).
#[utoipa::path(delete, path = "/cycles/{id}/issues/{issue_id}", tag = "cycles",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "cycle id"),
        ("issue_id" = String, Path, description = "issue id")),
    responses((status = 200, body = Envelope<Issue>), CommonErrors))]
async fn remove_issue(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, issue_id)): Path<(String, String)>,
) -> ApiResult<Issue> {
    Ok(ApiResponse::ok(
        s.cycles.remove_issue(&who, &id, &issue_id).await?,
    ))
}

/// Issue counts by state category and completion percent.
#[utoipa::path(get, path = "/cycles/{id}/stats", tag = "cycles", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "cycle id")),
    responses((status = 200, body = Envelope<CycleStats>), CommonErrors))]
async fn stats(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<CycleStats> {
    Ok(ApiResponse::ok(s.cycles.stats(&who, &id).await?))
}
