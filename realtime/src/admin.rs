//! `/ws/*`: presence and admin messaging over the realtime connections of one workspace.
//! Presence is readable by any member; stats, send, broadcast and cleanup need an admin.
//! Only connections whose session is live and whose user is a member now are listed,
//! counted or sent to (`ConnectionRegistry::present_live`).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use momentum_shared::AppState;
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Json, Query};
use momentum_shared::kernel::access::Action;
use momentum_shared::kernel::access::Principal;
use momentum_shared::kernel::access::Scope;
use momentum_shared::kernel::keys;
use momentum_shared::kernel::topic::Topic;
use momentum_shared::realtime::broadcaster::Delivery;
use momentum_shared::realtime::connections::is_silent;
use momentum_shared::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Realtime;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(online))
        .routes(routes!(stats))
        .routes(routes!(send))
        .routes(routes!(broadcast))
        .routes(routes!(cleanup))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspaceParam {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct OnlineUser {
    pub user_id: String,
    pub connections: usize,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Online {
    pub workspace_id: String,
    pub users: Vec<OnlineUser>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub workspace_id: String,
    pub connections: usize,
    pub users_online: usize,
    pub workspace_subscribers: usize,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub workspace_id: Option<String>,
    pub user_id: String,
    pub message: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    pub workspace_id: Option<String>,
    pub message: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    pub workspace_id: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Sent {
    pub delivered: usize,
    pub gone: usize,
    pub failed: usize,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Cleaned {
    pub checked: usize,
    pub pruned: usize,
}

impl From<Delivery> for Sent {
    fn from(d: Delivery) -> Self {
        Self {
            delivered: d.delivered,
            gone: d.gone,
            failed: d.failed,
        }
    }
}

const MAX_MESSAGE_BYTES: usize = 32 * 1024;

fn check_message(message: &Value) -> AppResult<()> {
    if message.is_null() {
        return Err(AppError::validation("message", "is required"));
    }
    if message.to_string().len() > MAX_MESSAGE_BYTES {
        return Err(AppError::validation(
            "message",
            format!("at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    Ok(())
}

async fn scope(
    s: &AppState,
    who: &Principal,
    ws: Option<&str>,
    action: Action,
) -> AppResult<Scope> {
    s.ctx.access.resolve(who, ws, action).await
}

/// Members of the workspace with open realtime connections.
#[utoipa::path(get, path = "/ws/online", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    params(WorkspaceParam),
    responses((status = 200, body = Envelope<Online>), CommonErrors))]
async fn online(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Query(p): Query<WorkspaceParam>,
) -> ApiResult<Online> {
    let scope = scope(&s, &who, p.workspace_id.as_deref(), Action::Read).await?;
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for c in rt.registry.present_live(&scope.workspace_id).await? {
        *users.entry(c.user_id).or_default() += 1;
    }
    Ok(ApiResponse::ok(Online {
        workspace_id: scope.workspace_id,
        users: users
            .into_iter()
            .map(|(user_id, connections)| OnlineUser {
                user_id,
                connections,
            })
            .collect(),
    }))
}

/// Connection statistics of the workspace (admins).
#[utoipa::path(get, path = "/ws/stats", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    params(WorkspaceParam),
    responses((status = 200, body = Envelope<Stats>), CommonErrors))]
async fn stats(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Query(p): Query<WorkspaceParam>,
) -> ApiResult<Stats> {
    let scope = scope(&s, &who, p.workspace_id.as_deref(), Action::Manage).await?;
    let present = rt.registry.present_live(&scope.workspace_id).await?;
    let users: std::collections::HashSet<&str> =
        present.iter().map(|c| c.user_id.as_str()).collect();
    let subscriptions = rt
        .registry
        .subscribers(&Topic::Workspace(scope.workspace_id.clone()))
        .await?;
    let live = rt
        .registry
        .live_readers(
            &scope.workspace_id,
            subscriptions
                .iter()
                .map(|s| (s.user_id.clone(), s.session_id.clone())),
        )
        .await?;
    let subscribers = subscriptions
        .iter()
        .filter(|s| live.contains_key(&(s.user_id.clone(), s.session_id.clone())))
        .count();
    Ok(ApiResponse::ok(Stats {
        workspace_id: scope.workspace_id.clone(),
        connections: present.len(),
        users_online: users.len(),
        workspace_subscribers: subscribers,
    }))
}

/// Send a message to one member's connections (admins).
#[utoipa::path(post, path = "/ws/send", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    request_body = SendRequest,
    responses((status = 200, body = Envelope<Sent>), CommonErrors))]
async fn send(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Json(req): Json<SendRequest>,
) -> ApiResult<Sent> {
    check_message(&req.message)?;
    let scope = scope(&s, &who, req.workspace_id.as_deref(), Action::Manage).await?;
    let target = s
        .store
        .get(
            momentum_shared::storage::Table::Main,
            &keys::member(&scope.workspace_id, &req.user_id),
        )
        .await?;
    if target.is_none() {
        return Err(AppError::unknown_reference(
            "user_id",
            "is not a member of this workspace",
        ));
    }
    let conns: Vec<String> = rt
        .registry
        .present_live(&scope.workspace_id)
        .await?
        .into_iter()
        .filter(|c| c.user_id == req.user_id)
        .map(|c| c.connection_id)
        .collect();
    let message = json!({
        "type": "message", "workspace_id": scope.workspace_id,
        "from_user_id": who.user_id, "to_user_id": req.user_id, "data": req.message,
    });
    Ok(ApiResponse::ok(
        rt.broadcaster.post_all(conns, &message).await.into(),
    ))
}

/// Send a message to every connection of the workspace (admins).
#[utoipa::path(post, path = "/ws/broadcast", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    request_body = BroadcastRequest,
    responses((status = 200, body = Envelope<Sent>), CommonErrors))]
async fn broadcast(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Json(req): Json<BroadcastRequest>,
) -> ApiResult<Sent> {
    check_message(&req.message)?;
    let scope = scope(&s, &who, req.workspace_id.as_deref(), Action::Manage).await?;
    let conns = rt
        .registry
        .present_live(&scope.workspace_id)
        .await?
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    let message = json!({
        "type": "broadcast", "workspace_id": scope.workspace_id,
        "from_user_id": who.user_id, "data": req.message,
    });
    Ok(ApiResponse::ok(
        rt.broadcaster.post_all(conns, &message).await.into(),
    ))
}

/// Prune the workspace's stale connections: expired, silent past API Gateway's idle timeout,
/// or no longer held by the gateway (admins).
#[utoipa::path(post, path = "/ws/cleanup", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    request_body = CleanupRequest,
    responses((status = 200, body = Envelope<Cleaned>), CommonErrors))]
async fn cleanup(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Json(req): Json<CleanupRequest>,
) -> ApiResult<Cleaned> {
    let scope = scope(&s, &who, req.workspace_id.as_deref(), Action::Manage).await?;
    let now = s.ctx.clock.epoch_secs();
    let present = rt.registry.present(&scope.workspace_id).await?;
    let mut pruned = 0;
    for c in &present {
        let stale = c.ttl <= now
            || is_silent(c.last_seen(), now)
            || matches!(
                rt.broadcaster.gateway().exists(&c.connection_id).await,
                Ok(false)
            );
        if stale {
            rt.registry.disconnect(&c.connection_id).await?;
            pruned += 1;
        }
    }
    Ok(ApiResponse::ok(Cleaned {
        checked: present.len(),
        pruned,
    }))
}
