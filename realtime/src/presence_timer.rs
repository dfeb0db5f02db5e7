//! The cloud's clock for due leaves. A leave (`user_left`) is announced only after the
//! reconnect grace window (`MOMENTUM_PRESENCE_GRACE_SECS`); the shim waits for it with a
//! timer, a Lambda cannot. So `$disconnect` sends the workspace to the presence queue
//! (`MOMENTUM_PRESENCE_QUEUE_URL`, a standard SQS queue) with a delivery delay of the window
//! plus a second, and the fan-out worker Lambda, fed by that queue too, sweeps the workspace
//! then (`Presence::sweep`, the same rule as every other sweep: a user who reconnected in the
//! meantime is not announced). A lost or failed message only delays the announcement until
//! the workspace's next connect, disconnect, `/ws/online` or `/ws/cleanup`.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use momentum_shared::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};

use crate::Realtime;

/// SQS delays a message by at most 15 minutes.
const MAX_DELAY_SECS: u64 = 900;

/// The presence queue's message: a workspace whose pending leaves come due.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepDue {
    pub presence_sweep: String,
}

impl SweepDue {
    /// The message, when `body` is one (the worker's other messages are fan-out shards).
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

/// Sends due sweeps to the presence queue.
pub struct LeaveTimer {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl LeaveTimer {
    /// The timer of `MOMENTUM_PRESENCE_QUEUE_URL`, when set.
    pub async fn from_env() -> Option<Self> {
        let queue_url = std::env::var("MOMENTUM_PRESENCE_QUEUE_URL").ok()?;
        let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
            region: None,
            attempt_timeout: std::time::Duration::from_secs(3),
            local_credentials: false,
        })
        .await;
        Some(Self::with_client(aws_sdk_sqs::Client::new(&sdk), queue_url))
    }

    /// A timer on a client built elsewhere (tests point one at moto's SQS).
    pub fn with_client(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Asks for a sweep of `workspace_id` in `after_secs` (at most 15 minutes).
    pub async fn schedule(&self, workspace_id: &str, after_secs: u64) -> AppResult<()> {
        let body = serde_json::to_string(&SweepDue {
            presence_sweep: workspace_id.to_owned(),
        })
        .map_err(|e| AppError::internal(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(after_secs.min(MAX_DELAY_SECS) as i32)
            .send()
            .await
            .map_err(|e| {
                AppError::unavailable(format!(
                    "presence queue: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}

/// The worker's presence batch: sweeps each workspace once; a sweep that failed (storage
/// unavailable) is reported for redelivery, and an unreadable message is dropped.
pub async fn handle(rt: &Realtime, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut swept = std::collections::HashSet::new();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let Some(due) = message.body.as_deref().and_then(SweepDue::parse) else {
            tracing::error!(message = %id, "unreadable presence message dropped");
            continue;
        };
        if !swept.insert(due.presence_sweep.clone()) {
            continue;
        }
        match rt.presence.sweep(&due.presence_sweep).await {
            Ok(left) => {
                tracing::info!(workspace = %due.presence_sweep, left = left.len(), "presence swept")
            }
            Err(e) => {
                tracing::error!(workspace = %due.presence_sweep, error = %e, "presence sweep failed");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

/// Whether a worker batch is the presence queue's (an event source mapping reads one queue
/// per invocation, so the first message says).
pub fn is_presence_batch(event: &SqsEvent) -> bool {
    event
        .records
        .first()
        .and_then(|m| m.body.as_deref())
        .is_some_and(|b| SweepDue::parse(b).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker tells its two queues apart by the body: a shard never reads as a sweep.
    #[test]
    fn only_a_sweep_message_reads_as_one() {
        assert_eq!(
            SweepDue::parse(r#"{"presence_sweep":"ws1"}"#),
            Some(SweepDue {
                presence_sweep: "ws1".into()
            })
        );
        let shard = r#"{"presence_sweep":"ws1","record":{},"group":"0","targets":[]}"#;
        assert_eq!(SweepDue::parse(shard), None);
        assert_eq!(
            SweepDue::parse(r#"{"record":{},"group":"0","targets":[]}"#),
            None
        );
    }
}
