//! Lambda fed by the fan-out SQS queue: delivers the shards of large fan-outs
//! (`realtime::fanout`), each through the same `ShardWorker` as inline delivery; and by the
//! presence queue: sweeps workspaces whose leaves came due (`realtime::presence_timer`).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
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
    let rt = Realtime::new(state, Arc::new(gateway));
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let rt = rt.clone();
        async move {
            let event = event.payload;
            Ok::<SqsBatchResponse, Error>(if realtime::presence_timer::is_presence_batch(&event) {
                realtime::presence_timer::handle(&rt, event).await
            } else {
                realtime::fanout::handle(rt.broadcaster.worker(), event).await
            })
        }
    }))
    .await
}
