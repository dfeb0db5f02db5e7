//! Lambda delivering webhooks: fed by the main table's DynamoDB Stream (new change records)
//! and by its own SQS queue (attempts and retries). See `realtime::webhooks`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use momentum_shared::AppState;
use momentum_shared::config::{AppConfig, Env, Mode};
use realtime::webhooks::SqsDeliveryQueue;
use serde_json::Value;

/// mimalloc, set here in the binary (a library never sets the allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = AppConfig::from_env(&Env::process(), Mode::Production)?;
    let state = AppState::from_config(config).await?;
    let queue_url = std::env::var("MOMENTUM_WEBHOOK_QUEUE_URL")
        .map_err(|_| "MOMENTUM_WEBHOOK_QUEUE_URL is required")?;
    let queue = SqsDeliveryQueue::new(queue_url).await;
    let (state, queue) = (&state, &queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let n = realtime::webhooks::handle(&state.webhooks, queue, event.payload)
            .await
            .map_err(|e| Error::from(e.message))?;
        tracing::info!(handled = n, "webhook batch");
        Ok::<(), Error>(())
    }))
    .await
}
