//! Lambda of the WebSocket API's routes ($connect, $disconnect, $default).

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
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
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = AppConfig::from_env(&Env::process(), Mode::Production)?;
    let state = AppState::from_config(config).await?;
    let gateway = ManagementApiGateway::new(&Realtime::management_endpoint_from_env()?).await;
    let rt = Realtime::new(state, Arc::new(gateway))
        .with_leave_timer(realtime::presence_timer::LeaveTimer::from_env().await);
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let rt = rt.clone();
            async move { realtime::websocket::run(&rt, event.payload).await }
        },
    ))
    .await
}
