//! Outgoing webhooks of a workspace (admins and owners): `/webhooks`, `/webhooks/{id}`,
//! secret rotation, test pings, deliveries and redelivery. See docs/webhooks.md.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use momentum_shared::AppState;
use momentum_shared::areas::webhooks::{
    CreateWebhook, Delivery, ListDeliveriesParams, ListWebhooksParams, UpdateWebhook, Webhook,
    WebhookWithSecret,
};
use momentum_shared::http::schema::{CommonErrors, Envelope, ErrorEnvelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, IfMatch, Json, Query};
use momentum_shared::kernel::paging::Paged;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(test))
        .routes(routes!(deliveries))
        .routes(routes!(redeliver))
}

/// Webhooks of a workspace (default: the current one), oldest first (admins and owners).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(ListWebhooksParams),
    responses((status = 200, body = Envelope<Paged<Webhook>>), CommonErrors))]
async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Query(params): Query<ListWebhooksParams>,
) -> ApiResult<Paged<Webhook>> {
    Ok(ApiResponse::ok(s.webhooks.list(&who, &params).await?))
}

/// Create a webhook (admins and owners). The answer carries its `secret`, shown this once.
/// A URL that is not `https`, or whose host is (or resolves to) a non-public address, is
/// refused (400 or 422 on `url`).
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = CreateWebhook,
    responses((status = 201, body = Envelope<WebhookWithSecret>),
        (status = 503, description = "webhooks are not configured", body = ErrorEnvelope),
        CommonErrors))]
async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<CreateWebhook>,
) -> ApiResult<WebhookWithSecret> {
    let created = s.webhooks.create(&who, req).await?;
    Ok(ApiResponse::with_status(StatusCode::CREATED, created))
}

/// One webhook (no secret).
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 200, body = Envelope<Webhook>), CommonErrors))]
async fn get_one(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Webhook> {
    Ok(ApiResponse::ok(s.webhooks.get(&who, &id).await?))
}

/// Update a webhook (admins and owners). `enabled: true` re-enables a disabled one.
#[utoipa::path(put, path = "/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id"),
        ("If-Match" = Option<String>, Header, description = "expected version")),
    request_body = UpdateWebhook,
    responses((status = 200, body = Envelope<Webhook>),
        (status = 412, description = "version mismatch", body = ErrorEnvelope),
        CommonErrors))]
async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(req): Json<UpdateWebhook>,
) -> ApiResult<Webhook> {
    Ok(ApiResponse::ok(
        s.webhooks.update(&who, &id, req, expected).await?,
    ))
}

/// Delete a webhook (admins and owners). Answers the deleted webhook.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 200, body = Envelope<Webhook>), CommonErrors))]
async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Webhook> {
    Ok(ApiResponse::ok(s.webhooks.delete(&who, &id).await?))
}

/// A new secret (admins and owners), shown this once; the previous one keeps signing too
/// during the grace period.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 200, body = Envelope<WebhookWithSecret>),
        (status = 503, description = "webhooks are not configured", body = ErrorEnvelope),
        CommonErrors))]
async fn rotate_secret(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<WebhookWithSecret> {
    Ok(ApiResponse::ok(s.webhooks.rotate_secret(&who, &id).await?))
}

/// Send a `webhook.test` event now (admins and owners); answers its delivery.
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 200, body = Envelope<Delivery>),
        (status = 503, description = "webhooks are not configured", body = ErrorEnvelope),
        CommonErrors))]
async fn test(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Delivery> {
    Ok(ApiResponse::ok(s.webhooks.test(&who, &id).await?))
}

/// Deliveries of a webhook, oldest first (admins and owners): status, attempts, response
/// code, latency, error.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id"), ListDeliveriesParams),
    responses((status = 200, body = Envelope<Paged<Delivery>>), CommonErrors))]
async fn deliveries(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Query(params): Query<ListDeliveriesParams>,
) -> ApiResult<Paged<Delivery>> {
    Ok(ApiResponse::ok(
        s.webhooks.deliveries(&who, &id, &params).await?,
    ))
}

/// Deliver a past delivery's record again now (admins and owners): one attempt, recorded on
/// the same delivery.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "webhook id"),
        ("delivery_id" = String, Path, description = "delivery id")),
    responses((status = 200, body = Envelope<Delivery>),
        (status = 503, description = "webhooks are not configured", body = ErrorEnvelope),
        CommonErrors))]
async fn redeliver(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<Delivery> {
    Ok(ApiResponse::ok(
        s.webhooks.redeliver(&who, &id, &delivery_id).await?,
    ))
}
