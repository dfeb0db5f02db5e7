//! The workspaces function: workspaces, members, change feed, teams, invitations, the
//! workspace's API tokens, webhooks.

pub mod invitations;
pub mod teams;
pub mod tokens;
pub mod webhooks;
pub mod workspaces;

use axum::Router;
use momentum_shared::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The function's routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(workspaces::routes())
        .merge(teams::routes())
        .merge(invitations::routes())
        .merge(tokens::routes())
        .merge(webhooks::routes())
}

/// The app the Lambda serves.
pub fn app(state: AppState) -> Router {
    momentum_shared::http::function_app(routes(), state)
}
