//! The caller's notification inbox and preferences (rules in
//! `momentum_shared::areas::notifications`; docs/notifications.md).

use axum::extract::{Path, State};
use momentum_shared::AppState;
use momentum_shared::areas::notifications::{
    ListNotificationsParams, MarkRead, MarkedRead, Notification, NotificationPreferences,
    UnreadCounts, UpdateNotification, UpdatePreferences,
};
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Json, Query};
use momentum_shared::kernel::paging::Paged;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(unread_count))
        .routes(routes!(update))
        .routes(routes!(mark_read))
        .routes(routes!(preferences, set_preferences))
}

/// The caller's notifications, newest first. Archived and snoozed ones only with
/// `archived=true` (archived) or once the snooze ends; those of workspaces the caller left
/// are never listed.
#[utoipa::path(get, path = "/notifications", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    params(ListNotificationsParams),
    responses((status = 200, body = Envelope<Paged<Notification>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(p): Query<ListNotificationsParams>,
) -> ApiResult<Paged<Notification>> {
    Ok(ApiResponse::ok(s.notifications.list(&who, &p).await?))
}

/// Unread notifications per workspace (not read, not archived).
#[utoipa::path(get, path = "/notifications/unread-count", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    responses((status = 200, body = Envelope<UnreadCounts>), CommonErrors))]
async fn unread_count(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<UnreadCounts> {
    Ok(ApiResponse::ok(s.notifications.unread_counts(&who).await?))
}

/// Mark one notification read or unread, archive or restore it, snooze or un-snooze it.
#[utoipa::path(put, path = "/notifications/{id}", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    params(("id" = String, Path, description = "notification id", pattern = "^[0-9]{10}[0-9a-f]{16}$")),
    request_body = UpdateNotification,
    responses((status = 200, body = Envelope<Notification>), CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateNotification>,
) -> ApiResult<Notification> {
    Ok(ApiResponse::ok(
        s.notifications.update(&who, &id, req).await?,
    ))
}

/// Mark unread notifications read: all, those up to `up_to_id`, or those of one issue.
#[utoipa::path(post, path = "/notifications/mark-read", tag = "notifications",
    security(("bearer" = []), ("api_token" = [])),
    request_body = MarkRead,
    responses((status = 200, body = Envelope<MarkedRead>), CommonErrors))]
async fn mark_read(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<MarkRead>,
) -> ApiResult<MarkedRead> {
    Ok(ApiResponse::ok(s.notifications.mark_read(&who, req).await?))
}

/// Which notification types reach the inbox and which are pushed (defaults: all).
#[utoipa::path(get, path = "/auth/notification-preferences", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 200, body = Envelope<NotificationPreferences>), CommonErrors))]
async fn preferences(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<NotificationPreferences> {
    Ok(ApiResponse::ok(s.notifications.preferences(&who).await?))
}

/// Change preferences; absent types and fields stay.
#[utoipa::path(put, path = "/auth/notification-preferences", tag = "notifications",
    security(("bearer" = [])),
    request_body = UpdatePreferences,
    responses((status = 200, body = Envelope<NotificationPreferences>), CommonErrors))]
async fn set_preferences(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<UpdatePreferences>,
) -> ApiResult<NotificationPreferences> {
    Ok(ApiResponse::ok(
        s.notifications.set_preferences(&who, req).await?,
    ))
}
