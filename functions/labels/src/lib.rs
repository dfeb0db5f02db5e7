//! The labels function.

pub mod labels;

use axum::Router;
use momentum_shared::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The function's routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(labels::routes())
}

/// The app the Lambda serves.
pub fn app(state: AppState) -> Router {
    momentum_shared::http::function_app(routes(), state)
}
