//! The local shim: every function router merged into one Axum app, served on one port, with
//! the same handler code the Lambda binaries run, plus `/health` and `/openapi.json`.

pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use momentum_shared::AppState;
use momentum_shared::config::StoreKind;
use momentum_shared::http::{ApiResponse, ApiResult};
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
    )
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
    let state = rt.state.clone();
    let (routes, _) = all_routes().split_for_parts();
    let doc = momentum_shared::openapi::document(&openapi());
    let routes = routes
        .route("/health", get(health))
        .route("/openapi.json", get(move || async move { axum::Json(doc) }))
        .with_state(state.clone())
        .layer(axum::Extension(rt.clone()))
        .merge(ws::routes(rt, hub));
    momentum_shared::http::serve_routes(routes, &state).layer(TraceLayer::new_for_http())
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

/// How the shim's broadcaster reaches sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gateway {
    /// Straight onto this process's sockets (`ws::HubGateway`).
    #[default]
    Direct,
    /// Through this server's `@connections` endpoint with the AWS SDK client the Lambdas use.
    Sdk,
}

/// Serves the shim on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Gateway::Direct, shutdown).await
}

/// `serve`, choosing how the broadcaster posts.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    gateway: Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = ws::Hub::default();
    let gateway: Arc<dyn momentum_shared::realtime::broadcaster::ConnectionGateway> = match gateway
    {
        Gateway::Direct => Arc::new(ws::HubGateway::new(hub.clone())),
        Gateway::Sdk => {
            let endpoint = format!("http://{}", listener.local_addr()?);
            Arc::new(ManagementApiGateway::new(&endpoint).await)
        }
    };
    let rt = Realtime::new(state.clone(), gateway);
    state
        .ctx
        .changes
        .set_sink(Arc::new(ws::LocalSink::start(rt.clone())));
    axum::serve(
        listener,
        app(rt, hub).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
