//! The local shim: every function router merged into one Axum app, served on one port, with
//! the same handler code the Lambda binaries run.

use std::net::SocketAddr;

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

/// All function routes plus `/health`, wrapped like each Lambda's app.
pub fn app(state: AppState) -> Router {
    let expose = state.config.expose_storage_calls;
    let routes = Router::new()
        .route("/health", get(health))
        .with_state(state.clone())
        .merge(auth::router(state));
    momentum_shared::http::serve_routes(routes, expose).layer(TraceLayer::new_for_http())
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

/// Serves the shim on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
