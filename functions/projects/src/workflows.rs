//! Workflows and their states: `/workflows/*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::workflows::{
    CreateState, CreateWorkflow, UpdateState, UpdateWorkflow, WorkflowView,
};
use momentum_shared::areas::workflows::{Workflow, WorkflowState};
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update))
        .routes(routes!(create_state))
        .routes(routes!(update_state, delete_state))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkflowListParams {
    /// Only this team's workflows.
    pub team_id: Option<String>,
    /// The workspace's workflows (default: the caller's current workspace).
    pub workspace_id: Option<String>,
}

/// Workflows of a team or a workspace, each with its states sorted by position (any
/// member).
#[utoipa::path(get, path = "/workflows", tag = "workflows", security(("bearer" = []), ("api_token" = [])),
    params(WorkflowListParams),
    responses((status = 200, body = Envelope<Vec<WorkflowView>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<WorkflowListParams>,
) -> ApiResult<Vec<WorkflowView>> {
    Ok(ApiResponse::ok(
        s.workflows
            .list(&who, p.team_id.as_deref(), p.workspace_id.as_deref())
            .await?,
    ))
}

/// Create a workflow for a team with the default states (admins and owners);
/// `make_default` makes it the team's workflow.
#[utoipa::path(post, path = "/workflows", tag = "workflows", security(("bearer" = []), ("api_token" = [])),
    request_body = CreateWorkflow,
    responses((status = 201, body = Envelope<WorkflowView>), CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateWorkflow>,
) -> ApiResult<WorkflowView> {
    let created = s.workflows.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// One workflow with its states (any member).
#[utoipa::path(get, path = "/workflows/{id}", tag = "workflows", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workflow id")),
    responses((status = 200, body = Envelope<WorkflowView>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<WorkflowView> {
    Ok(ApiResponse::ok(s.workflows.get(&who, &id).await?))
}

/// Rename a workflow or change its default state (admins and owners).
#[utoipa::path(put, path = "/workflows/{id}", tag = "workflows", security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workflow id"),
        ("If-Match" = Option<String>, Header, description = "expected version, e.g. \"3\"")),
    request_body = UpdateWorkflow,
    responses((status = 200, body = Envelope<Workflow>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateWorkflow>,
) -> ApiResult<Workflow> {
    Ok(ApiResponse::ok(
        s.workflows.update(&who, &id, req, expected).await?,
    ))
}

/// Add a state to a workflow (admins and owners).
#[utoipa::path(post, path = "/workflows/{id}/states", tag = "workflows",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workflow id")),
    request_body = CreateState,
    responses((status = 201, body = Envelope<WorkflowState>), CommonErrors))]
async fn create_state(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<CreateState>,
) -> ApiResult<WorkflowState> {
    let created = s.workflows.create_state(&who, &id, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// Change a state's name, category, color, position or allowed transitions (admins and
/// owners).
#[utoipa::path(put, path = "/workflows/{id}/states/{state_id}", tag = "workflows",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workflow id"), ("state_id" = String, Path)),
    request_body = UpdateState,
    responses((status = 200, body = Envelope<WorkflowState>), CommonErrors))]
async fn update_state(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, state_id)): Path<(String, String)>,
    Json(req): Json<UpdateState>,
) -> ApiResult<WorkflowState> {
    Ok(ApiResponse::ok(
        s.workflows.update_state(&who, &id, &state_id, req).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteStateParams {
    /// Another state of the same workflow to move the state's issues to (required when the
    /// state holds issues).
    pub replacement_state_id: Option<String>,
}

/// Remove a state (admins and owners); not the workflow's default state nor its last one
/// (409). Its issues move to `replacement_state_id`; without one, a state that holds issues
/// is refused (409, saying how many).
#[utoipa::path(delete, path = "/workflows/{id}/states/{state_id}", tag = "workflows",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "workflow id"), ("state_id" = String, Path),
        DeleteStateParams),
    responses((status = 200, body = Envelope<Deleted>), CommonErrors))]
async fn delete_state(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, state_id)): Path<(String, String)>,
    Query(p): Query<DeleteStateParams>,
) -> ApiResult<Deleted> {
    s.workflows
        .delete_state(&who, &id, &state_id, p.replacement_state_id.as_deref())
        .await?;
    Ok(ApiResponse::ok(Deleted { deleted: true }))
}
