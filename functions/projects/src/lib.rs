//! The projects function: projects, project statuses, workflows and transitions, issues, cycles.

pub mod cycles;
pub mod issues;
pub mod projects;
pub mod subscriptions;
pub mod workflows;

use axum::Router;
use momentum_shared::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The function's routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(projects::routes())
        .merge(workflows::routes())
        .merge(issues::routes())
        .merge(cycles::routes())
        .merge(subscriptions::routes())
}

/// The app the Lambda serves.
pub fn app(state: AppState) -> Router {
    momentum_shared::http::function_app(routes(), state)
}
