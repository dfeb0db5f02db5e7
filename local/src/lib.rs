//! The local shim: every function router merged into one Axum app, served on one port, with
//! the same handler code the Lambda binaries run, plus `/health` and `/openapi.json`.

mod order;
mod server;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use momentum_shared::AppState;
use momentum_shared::areas::notifications::UnreadListener;
use momentum_shared::areas::notifications::dispatcher::{LocalNotifier, NotificationDispatcher};
use momentum_shared::areas::webhooks::dispatcher::LocalDispatcher;
use momentum_shared::config::StoreKind;
use momentum_shared::error::AppError;
use momentum_shared::http::{ApiResponse, ApiResult, Auth};
use momentum_shared::kernel::changes::{ChangeRecord, ChangeSink, Revocation};
use momentum_shared::storage::{Key, Table};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use realtime::Realtime;
use realtime::gateway::ManagementApiGateway;

#[derive(OpenApi)]
#[openapi(
    info(title = "Momentum API", description = "Team-collaboration backend: REST API. Every response is the envelope {success, data, error, meta}."),
    tags(
        (name = "auth", description = "Accounts, sessions, tokens"),
        (name = "workspaces", description = "Workspaces, members, change feed"),
        (name = "realtime", description = "Presence and admin messaging over WebSocket connections"),
        (name = "tokens", description = "Personal API tokens (mtm_pat_...): created and listed by their owner, listed and revoked by workspace admins"),
        (name = "webhooks", description = "Outgoing signed webhooks: management, deliveries"),
        (name = "notifications", description = "The notification inbox, read state, unread counts, preferences and issue subscriptions"),
    ),
    components(schemas(momentum_shared::realtime::broadcaster::LiveEvent))
)]
struct ApiDoc;

/// Every function's routes, as one OpenAPI-described router.
pub fn all_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(workspaces::routes())
        .merge(projects::routes())
        .merge(labels::routes())
        .merge(comments::routes())
        .merge(realtime::admin::routes())
}

/// The OpenAPI 3.1 document of every route the shim serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = all_routes().split_for_parts();
    momentum_shared::http::schema::BearerAuth.modify(&mut doc);
    doc
}

/// All function routes plus `/health`, `/openapi.json`, the WebSocket endpoint `/ws` and
/// the management API emulation, wrapped like each Lambda's app.
pub fn app(rt: Realtime, hub: ws::Hub) -> Router {
    app_with(rt, hub, true)
}

/// `app`, with or without the WebSocket emulation (`/ws` and `/@connections/{id}`).
pub fn app_with(rt: Realtime, hub: ws::Hub, websocket: bool) -> Router {
    let state = rt.state.clone();
    let (routes, _) = all_routes().split_for_parts();
    let doc = momentum_shared::openapi::document(&openapi());
    let mut routes = routes
        .route("/health", get(health))
        .route("/dev/push-log", get(push_log))
        .route("/openapi.json", get(move || async move { axum::Json(doc) }))
        .with_state(state.clone())
        .layer(axum::Extension(rt.clone()));
    if websocket {
        routes = routes.merge(ws::routes(rt, hub));
    }
    // Spans name the path only: a query string may carry a token (`/ws?token=`).
    let trace = TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
        tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
    });
    momentum_shared::http::serve_routes(routes, &state).layer(trace)
}

async fn health(State(s): State<AppState>) -> ApiResult<Value> {
    // One cheap read proves the store answers.
    s.store
        .get(Table::Main, &Key::new("HEALTH", "HEALTH"))
        .await?;
    let store = match &s.config.store {
        StoreKind::Embedded { .. } => "embedded",
        StoreKind::Memory => "memory",
        StoreKind::DynamoDb { .. } => "dynamodb",
    };
    Ok(ApiResponse::ok(json!({
        "status": "ok",
        "store": store,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `GET /dev/push-log` (local only: the Lambdas do not serve it, and it answers 404 unless
/// `MOMENTUM_PUSH=log`): the pushes that would have been sent to the caller's devices,
/// oldest first. Not in the OpenAPI document: a development aid, not API.
async fn push_log(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<Vec<momentum_shared::areas::push::PushRecord>> {
    let Some(log) = &s.push_log else {
        return Err(AppError::not_found("push log (MOMENTUM_PUSH=log only)"));
    };
    // The same check as every authenticated read: the session must be live.
    s.devices.list(&who).await?;
    Ok(ApiResponse::ok(log.of_user(&who.user_id)))
}

/// The consumers of committed records without the WebSocket emulation.
struct Consumers {
    webhooks: LocalDispatcher,
    notifications: LocalNotifier,
}

impl ChangeSink for Consumers {
    fn committed(&self, records: Vec<ChangeRecord>) {
        self.webhooks.submit(records.clone());
        self.notifications.submit(records);
    }

    fn revoked(&self, _revocation: Revocation) {}
}

/// Sends a user's new unread count to their sockets after a read-state change.
struct UnreadToSockets(Realtime);

impl UnreadListener for UnreadToSockets {
    fn unread_changed(&self, user_id: &str, workspace_id: &str) {
        let rt = self.0.clone();
        let (user_id, workspace_id) = (user_id.to_owned(), workspace_id.to_owned());
        tokio::spawn(async move {
            let sent = momentum_shared::realtime::inbox::send_unread_count(
                &rt.broadcaster,
                &rt.state.notifications,
                &user_id,
                &workspace_id,
                None,
            )
            .await;
            if let Err(e) = sent {
                tracing::warn!(user = %user_id, error = %e, "unread count not sent");
            }
        });
    }
}

/// How the shim's broadcaster reaches sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gateway {
    /// Straight onto this process's sockets (`ws::HubGateway`).
    #[default]
    Direct,
    /// Through this server's `@connections` endpoint with the AWS SDK client the Lambdas use.
    Sdk,
}

/// What the shim serves besides the REST routes. Timeouts come from the state's
/// configuration (`AppConfig::timeouts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// How the broadcaster posts (`Sdk` needs the WebSocket emulation).
    pub gateway: Gateway,
    /// Serve the WebSocket emulation: `/ws` and the management API `/@connections/{id}`.
    /// Off, neither exists (404) and change records are not fanned out.
    pub websocket: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateway: Gateway::Direct,
            websocket: true,
        }
    }
}

impl Options {
    pub fn gateway(mut self, gateway: Gateway) -> Self {
        self.gateway = gateway;
        self
    }

    pub fn websocket(mut self, on: bool) -> Self {
        self.websocket = on;
        self
    }
}

/// Serves the shim on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_options(listener, state, Options::default(), shutdown).await
}

/// `serve`, choosing how the broadcaster posts.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    gateway: Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_options(
        listener,
        state,
        Options::default().gateway(gateway),
        shutdown,
    )
    .await
}

/// Serves the shim until `shutdown` resolves, then shuts down gracefully:
///
/// 1. stops accepting (the listener is closed);
/// 2. lets every request in flight finish (idle keep-alive connections close at once) and
///    sends every WebSocket a close frame (1001, "server shutting down"), each socket then
///    running its `$disconnect` cleanup;
/// 3. waits for both, at most `AppConfig::timeouts.shutdown_grace`;
/// 4. flushes the store (the embedded store checkpoints its write-ahead log).
///
/// Reading a request is bounded too: headers within `timeouts.header_read` (else the
/// connection is closed), the body within `timeouts.body_read` (else 408).
pub async fn serve_options(
    listener: TcpListener,
    state: AppState,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if options.gateway == Gateway::Sdk && !options.websocket {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "Gateway::Sdk posts through /@connections, which only the WebSocket emulation serves",
        ));
    }
    let hub = ws::Hub::default();
    let gateway: Arc<dyn momentum_shared::realtime::broadcaster::ConnectionGateway> =
        match options.gateway {
            Gateway::Direct => Arc::new(ws::HubGateway::new(hub.clone())),
            Gateway::Sdk => {
                let endpoint = format!("http://{}", listener.local_addr()?);
                Arc::new(ManagementApiGateway::new(&endpoint).await)
            }
        };
    let rt = Realtime::new(state.clone(), gateway);
    // Webhooks are dispatched in-process from the same committed records.
    let webhooks = LocalDispatcher::start(state.webhooks.clone());
    // Notifications too: the same records, in the same order.
    let notifications = LocalNotifier::start(
        NotificationDispatcher::new(state.notifications.clone(), state.push.clone()),
        {
            // Each notification to its recipient's own sockets (the implicit `user:{id}`).
            let rt = rt.clone();
            move |delivered| {
                let rt = rt.clone();
                Box::pin(async move {
                    let inbox = rt.state.notifications.clone();
                    if let Err(e) = momentum_shared::realtime::inbox::send_to_users(
                        &rt.broadcaster,
                        &inbox,
                        &delivered,
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "notification fan-out failed");
                    }
                })
            }
        },
    );
    // A read-state change's new unread count, to the user's own sockets (in the cloud the
    // counter's stream record does this).
    state
        .notifications
        .set_unread_listener(Arc::new(UnreadToSockets(rt.clone())));
    if options.websocket {
        state.ctx.changes.set_sink(Arc::new(
            ws::LocalSink::start(rt.clone(), hub.clone())
                .with_webhooks(webhooks)
                .with_notifications(notifications),
        ));
    } else {
        state.ctx.changes.set_sink(Arc::new(Consumers {
            webhooks,
            notifications,
        }));
    }
    let timeouts = state.config.timeouts;
    let app = app_with(rt, hub.clone(), options.websocket);
    let connections = server::accept_until(listener, app, timeouts.header_read, shutdown).await;
    connections.stop();
    hub.close_all();
    let drained = tokio::time::timeout(timeouts.shutdown_grace, async {
        tokio::join!(connections.closed(), hub.closed());
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_ms = timeouts.shutdown_grace.as_millis() as u64,
            "shutdown grace elapsed with requests or sockets still open"
        );
    }
    if let Err(e) = state.store.flush().await {
        tracing::error!(error = %e, "could not flush the store");
        return Err(std::io::Error::other(e.to_string()));
    }
    tracing::info!("stopped");
    Ok(())
}
