//! The webhook dispatcher Lambda (cloud): the main table's DynamoDB Stream (filtered to
//! inserted change records) says what was committed; each matching webhook gets a delivery
//! record and a job on an SQS queue; the same Lambda, triggered by that queue, makes the
//! attempt. A failed attempt is queued again with the wait of the retry schedule; SQS delays
//! a message at most 15 minutes, so a longer wait hops: a job that arrives before its
//! delivery is due is put back with the time still left (`WebhookService::attempt` sends
//! nothing then). Nothing polls. Rules, signing and target checks are
//! `momentum_shared::areas::webhooks`, as in the shim.
//!
//! Ordering in the cloud is best effort (jobs of one webhook may overtake each other; SQS
//! FIFO queues take no per-message delay). The shim's dispatcher is strict.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use momentum_shared::areas::webhooks::{Next, WebhookService};
use momentum_shared::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY_SECS: i64 = 900;

/// One delivery waiting for an attempt: the body of a queue message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub workspace_id: String,
    pub webhook_id: String,
    pub delivery_id: String,
}

/// Where jobs wait (SQS in the cloud; tests record them).
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn enqueue(&self, job: &DeliveryJob, delay_secs: u32) -> AppResult<()>;
}

/// The wait before a job's next look, at most what SQS can delay.
pub fn delay_until(due: i64, now: i64) -> u32 {
    (due - now).clamp(0, MAX_DELAY_SECS) as u32
}

/// A stream batch: a delivery and a job per (record, matching webhook). An error fails the
/// batch, so the event source retries it; a record may then get a second delivery (another
/// delivery id, same `seq`): at least once.
pub async fn on_stream(
    service: &WebhookService,
    queue: &dyn DeliveryQueue,
    event: StreamEvent,
) -> AppResult<usize> {
    let records = crate::stream::change_records(event);
    // A webhook created in this very batch is known by its record before it is stored
    // with its `created_seq`.
    let created: HashMap<String, i64> = records
        .iter()
        .filter(|r| r.event == "webhook.created")
        .map(|r| (r.entity_id.clone(), r.seq))
        .collect();
    let matched = service
        .matching(&records, &created, &mut Default::default())
        .await?;
    let count = matched.len();
    for (webhook, record) in matched {
        let delivery = service.new_delivery(&webhook, record).await?;
        let job = DeliveryJob {
            workspace_id: delivery.workspace_id,
            webhook_id: delivery.webhook_id,
            delivery_id: delivery.id,
        };
        queue.enqueue(&job, 0).await?;
    }
    Ok(count)
}

/// A batch of jobs: one attempt each (or a hop when not yet due). An unreadable message is
/// dropped (logged); a store error fails the batch, so SQS delivers it again and, after its
/// receive limit, moves it to the dead-letter queue.
pub async fn on_jobs(
    service: &WebhookService,
    queue: &dyn DeliveryQueue,
    event: SqsEvent,
) -> AppResult<usize> {
    let mut attempted = 0;
    for message in event.records {
        let Some(job) = message
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<DeliveryJob>(b).ok())
        else {
            tracing::error!(message_id = ?message.message_id, "unreadable webhook job dropped");
            continue;
        };
        match service
            .attempt(&job.workspace_id, &job.webhook_id, &job.delivery_id)
            .await?
        {
            Next::RetryAt(due) => {
                queue
                    .enqueue(&job, delay_until(due, service.now_epoch()))
                    .await?
            }
            Next::Done | Next::WebhookOff => {}
        }
        attempted += 1;
    }
    Ok(attempted)
}

/// One Lambda for both triggers: the event says which.
pub async fn handle(
    service: &WebhookService,
    queue: &dyn DeliveryQueue,
    event: Value,
) -> AppResult<usize> {
    let source = event["Records"][0]["eventSource"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let unreadable = |e: serde_json::Error| AppError::internal(format!("event: {e}"));
    match source.as_str() {
        "aws:sqs" => {
            on_jobs(
                service,
                queue,
                serde_json::from_value(event).map_err(unreadable)?,
            )
            .await
        }
        "aws:dynamodb" => {
            on_stream(
                service,
                queue,
                serde_json::from_value(event).map_err(unreadable)?,
            )
            .await
        }
        _ => Ok(0),
    }
}

/// The SQS queue of jobs (`MOMENTUM_WEBHOOK_QUEUE_URL`, set by the template).
pub struct SqsDeliveryQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeliveryQueue {
    pub async fn new(queue_url: String) -> Self {
        let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
            region: None,
            attempt_timeout: std::time::Duration::from_secs(3),
            local_credentials: false,
        })
        .await;
        Self {
            client: aws_sdk_sqs::Client::new(&sdk),
            queue_url,
        }
    }
}

#[async_trait]
impl DeliveryQueue for SqsDeliveryQueue {
    async fn enqueue(&self, job: &DeliveryJob, delay_secs: u32) -> AppResult<()> {
        let body = serde_json::to_string(job).map_err(|e| AppError::internal(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs as i32)
            .send()
            .await
            .map_err(|e| AppError::unavailable(format!("queueing a webhook job: {e:?}")))?;
        Ok(())
    }
}
