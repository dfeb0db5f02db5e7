//! Lambda of the `/ws/*` HTTP routes (presence and admin messaging).

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::config::{AppConfig, Env, Mode};
use realtime::Realtime;
use realtime::gateway::ManagementApiGateway;

/// mimalloc, set here in the binary (a library never sets the allocator): with glibc malloc,
/// list requests spent ~40 % of their CPU in malloc/free and per-thread arenas kept argon2's
/// 19 MiB blocks after a burst of logins (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = AppConfig::from_env(&Env::process(), Mode::Production)?;
    let state = AppState::from_config(config).await?;
    let gateway = ManagementApiGateway::new(&Realtime::management_endpoint_from_env()?).await;
    let rt = Realtime::new(state.clone(), Arc::new(gateway));
    lambda_http::run(realtime::admin_app(rt)).await
}
