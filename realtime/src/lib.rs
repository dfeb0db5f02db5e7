//! Momentum realtime: the WebSocket API's route handlers (`$connect`, `$disconnect`,
//! `$default`), the broadcaster fed by the DynamoDB Stream, and the `/ws/*` HTTP routes
//! (presence and admin). All rules live in `momentum_shared::realtime`.

pub mod admin;
pub mod fanout;
pub mod gateway;
pub mod handshake;
pub mod presence_timer;
pub mod stream;
pub mod webhooks;
pub mod websocket;

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::realtime::broadcaster::{Broadcaster, ConnectionGateway};
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_shared::realtime::presence::Presence;

/// What the realtime handlers need besides the app state.
#[derive(Clone)]
pub struct Realtime {
    pub state: AppState,
    pub registry: ConnectionRegistry,
    pub broadcaster: Broadcaster,
    /// `user_joined` / `user_left` with the reconnect grace window.
    pub presence: Presence,
    /// The cloud's clock for leaves coming due (`presence_timer`); none in the shim, which
    /// waits for them itself, and in tests.
    pub leave_timer: Option<Arc<presence_timer::LeaveTimer>>,
}

impl Realtime {
    pub fn new(state: AppState, gateway: Arc<dyn ConnectionGateway>) -> Self {
        let registry = ConnectionRegistry::new(state.ctx.clone());
        let broadcaster =
            Broadcaster::new(registry.clone(), gateway).with_config(&state.config.fanout);
        let presence = Presence::new(
            registry.clone(),
            broadcaster.clone(),
            state.config.presence_grace_secs,
        );
        Self {
            state,
            registry,
            broadcaster,
            presence,
            leave_timer: None,
        }
    }

    /// Schedules a sweep of each workspace a connection leaves (`presence_timer`).
    pub fn with_leave_timer(mut self, timer: Option<presence_timer::LeaveTimer>) -> Self {
        self.leave_timer = timer.map(Arc::new);
        self
    }

    /// The gateway endpoint from the environment (`MOMENTUM_WS_MANAGEMENT_ENDPOINT`).
    pub fn management_endpoint_from_env() -> Result<String, lambda_runtime::Error> {
        std::env::var("MOMENTUM_WS_MANAGEMENT_ENDPOINT")
            .map_err(|_| "MOMENTUM_WS_MANAGEMENT_ENDPOINT is required".into())
    }
}

/// The `/ws/*` app a Lambda serves.
pub fn admin_app(rt: Realtime) -> axum::Router {
    momentum_shared::http::function_app(admin::routes(), rt.state.clone())
        .layer(axum::Extension(rt))
}
