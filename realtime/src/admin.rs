//! `/ws/*`: presence and admin messaging over the realtime connections of one workspace.
//! Presence is readable by any member; a member may send `text` to another member
//! (`/ws/send`); stats, other message types, broadcast and cleanup need an admin.
//! Only connections whose session is live and whose user is a member now are listed,
//! counted or sent to (`ConnectionRegistry::present_live`).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use momentum_shared::AppResult;
use momentum_shared::AppState;
use momentum_shared::http::schema::{CommonErrors, Envelope};
use momentum_shared::http::{ApiResponse, ApiResult, Auth, Json, Query};
use momentum_shared::kernel::access::Action;
use momentum_shared::kernel::access::Principal;
use momentum_shared::kernel::access::Scope;
use momentum_shared::kernel::topic::Topic;
use momentum_shared::realtime::connections::is_silent;
use momentum_shared::realtime::direct::{self, BroadcastRequest, SendRequest, Sent};
use serde::{Deserialize, Serialize};
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
pub struct CleanupRequest {
    pub workspace_id: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Cleaned {
    pub checked: usize,
    pub pruned: usize,
}

async fn scope(
    s: &AppState,
    who: &Principal,
    ws: Option<&str>,
    action: Action,
) -> AppResult<Scope> {
    s.ctx.access.resolve(who, ws, action).await
}

/// Members of the workspace with open realtime connections (announcing the `user_left`
/// that have come due).
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
    // Leaves that have come due are announced as the list without them is read (in the
    // cloud nothing else wakes up when a grace window ends; one Query when none is due).
    if let Err(e) = rt.presence.sweep(&scope.workspace_id).await {
        tracing::warn!(workspace = %scope.workspace_id, error = %e, "presence sweep failed");
    }
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

/// Send a message to one member's live connections, in the seed's shape (`id`,
/// `timestamp` and `from_user_id` stamped here). Admins may send any type; members only
/// `text` (403 otherwise); the recipient must be a member (404 on `to_user_id`). Per-user
/// rate limit (429).
#[utoipa::path(post, path = "/ws/send", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    request_body = SendRequest,
    responses((status = 200, body = Envelope<Sent>), CommonErrors))]
async fn send(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Json(req): Json<SendRequest>,
) -> ApiResult<Sent> {
    let sent = direct::send(&s, &rt.registry, &rt.broadcaster, &who, req).await?;
    Ok(ApiResponse::ok(sent))
}

/// Send a message to every live connection of the workspace, in the seed's shape (admins;
/// per-user rate limit).
#[utoipa::path(post, path = "/ws/broadcast", tag = "realtime", security(("bearer" = []), ("api_token" = [])),
    request_body = BroadcastRequest,
    responses((status = 200, body = Envelope<Sent>), CommonErrors))]
async fn broadcast(
    State(s): State<AppState>,
    Extension(rt): Extension<Realtime>,
    Auth(who): Auth,
    Json(req): Json<BroadcastRequest>,
) -> ApiResult<Sent> {
    let sent = direct::broadcast(&s, &rt.registry, &rt.broadcaster, &who, req).await?;
    Ok(ApiResponse::ok(sent))
}

/// Prune the workspace's stale connections: expired, silent past API Gateway's idle timeout,
/// or no longer held by the gateway (admins); then announce the `user_left` that have come
/// due (the pruned connections' leaves wait out the grace window like any other).
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
    rt.presence.sweep(&scope.workspace_id).await?;
    Ok(ApiResponse::ok(Cleaned {
        checked: present.len(),
        pruned,
    }))
}
