//! Comments on issues: /comments (filled in by the resource-group work; see docs/conventions.md).

use momentum_shared::AppState;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
