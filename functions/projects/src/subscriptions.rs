//! Issue subscriptions (rules in `momentum_shared::areas::notifications`).

use axum::extract::{Path, State};
use momentum_shared::AppState;
use momentum_shared::areas::notifications::{IssueSubscription, SubscriptionState};
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Query};
use momentum_shared::kernel::paging::{PageParams, Paged};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subscribe, unsubscribe))
        .routes(routes!(subscribers))
}

/// Subscribe the caller to an issue's comments, state and priority changes.
#[utoipa::path(post, path = "/issues/{id}/subscription", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id")),
    responses((status = 200, body = Envelope<SubscriptionState>), CommonErrors))]
async fn subscribe(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<SubscriptionState> {
    Ok(ApiResponse::ok(
        s.notifications.set_subscription(&who, &id, true).await?,
    ))
}

/// Unsubscribe the caller; later automatic subscriptions (assignment, mention, comment) do
/// not undo it.
#[utoipa::path(delete, path = "/issues/{id}/subscription", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id")),
    responses((status = 200, body = Envelope<SubscriptionState>), CommonErrors))]
async fn unsubscribe(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<SubscriptionState> {
    Ok(ApiResponse::ok(
        s.notifications.set_subscription(&who, &id, false).await?,
    ))
}

/// The issue's subscribers (current members only).
#[utoipa::path(get, path = "/issues/{id}/subscribers", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "issue id"), PageParams),
    responses((status = 200, body = Envelope<Paged<IssueSubscription>>), CommonErrors))]
async fn subscribers(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<Paged<IssueSubscription>> {
    Ok(ApiResponse::ok(
        s.notifications.subscribers(&who, &id, &page).await?,
    ))
}
