//! The comments function.

pub mod comments;

use axum::Router;
use momentum_shared::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The function's routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(comments::routes())
}

/// The app the Lambda serves.
pub fn app(state: AppState) -> Router {
    momentum_shared::http::function_app(routes(), state)
}
