//! Lambda fed by the main table's DynamoDB Stream (filtered to change records).

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
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
    let mut rt = Realtime::new(state, Arc::new(gateway));
    // Large fan-outs go to the fan-out worker through SQS (set by the template); without a
    // queue they are delivered here, shards in parallel.
    if let Ok(queue_url) = std::env::var("MOMENTUM_FANOUT_QUEUE_URL") {
        let queue = realtime::fanout::SqsShardQueue::new(queue_url).await;
        rt.broadcaster = rt.broadcaster.with_queue(Arc::new(queue));
    }
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| {
        let rt = rt.clone();
        async move { realtime::stream::handle(&rt, event.payload).await }
    }))
    .await
}
