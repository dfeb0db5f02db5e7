//! Sharded fan-out on AWS: the stream broadcaster hands the shards of a large fan-out to an
//! SQS FIFO queue (`SqsShardQueue`); the fan-out worker Lambda reads them (`handle`) and
//! delivers each with the same `ShardWorker::deliver` as inline delivery, so the visibility
//! rule is asked in one place.
//!
//! FIFO, because a message group (workspace + shard group) is delivered in order, and a
//! connection stays in its group from one record to the next: its events keep their `seq`
//! order. The deduplication id (workspace, seq, group, part) makes a stream retry that
//! sends the same shard again within SQS's 5-minute window a no-op.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use momentum_shared::error::{AppError, AppResult};
use momentum_shared::realtime::broadcaster::{Delivery, ShardWorker};
use momentum_shared::realtime::shards::{Shard, ShardQueue};

/// SQS takes messages (and a whole batch) of at most 256 KiB; leave room for attributes.
pub const MAX_MESSAGE_BYTES: usize = 200 * 1024;
/// Entries per `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;

/// One SQS message of a shard (or of part of one, when a shard is too large for a message).
#[derive(Debug, PartialEq)]
pub struct Message {
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    /// Targets it carries.
    pub targets: usize,
}

/// The messages for a record's shards: one per shard, or its halves (recursively) while a
/// body exceeds `max_bytes`. A single target whose message is still too large (a record
/// near the size limit) is sent anyway and refused by SQS: an error the stream retries and
/// then sends to its failure queue, while clients recover the record with `sync`.
pub fn messages(shards: Vec<Shard>, max_bytes: usize) -> Vec<Message> {
    let mut out = Vec::new();
    for shard in shards {
        let group_id = format!("{}#{}", shard.record.workspace_id, shard.group);
        let mut parts = vec![shard];
        let mut part = 0usize;
        while let Some(mut shard) = parts.pop() {
            let body = serde_json::to_string(&shard).expect("shards serialise");
            if body.len() > max_bytes && shard.targets.len() > 1 {
                let back = shard.targets.split_off(shard.targets.len() / 2);
                let mut second = shard.clone();
                second.targets = back;
                // Popped first-half first, so parts go out in target order.
                parts.push(second);
                parts.push(shard);
                continue;
            }
            out.push(Message {
                dedup_id: format!("{}#{}#{part}", shard.record.seq, shard.group),
                group_id: group_id.clone(),
                targets: shard.targets.len(),
                body,
            });
            part += 1;
        }
    }
    out
}

/// Hands shards to the fan-out queue.
pub struct SqsShardQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsShardQueue {
    pub async fn new(queue_url: String) -> Self {
        // The shared SDK set-up (one TLS stack, no SDK retries): a failed hand-off fails the
        // stream batch, whose bounded retries (template) send it again.
        let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
            region: None,
            attempt_timeout: std::time::Duration::from_secs(3),
            local_credentials: false,
        })
        .await;
        Self::with_client(aws_sdk_sqs::Client::new(&sdk), queue_url)
    }

    /// A queue on a client built elsewhere (tests point one at moto's SQS).
    pub fn with_client(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }
}

#[async_trait]
impl ShardQueue for SqsShardQueue {
    async fn dispatch(&self, shards: Vec<Shard>, _worker: &ShardWorker) -> AppResult<Delivery> {
        let messages = messages(shards, MAX_MESSAGE_BYTES);
        let mut queued = 0;
        // A batch holds at most 10 entries and 256 KiB in all: fill by both.
        let mut batch: Vec<&Message> = Vec::new();
        let mut bytes = 0;
        for m in &messages {
            if batch.len() == MAX_BATCH_ENTRIES || bytes + m.body.len() > MAX_MESSAGE_BYTES {
                queued += self.send(&batch).await?;
                batch.clear();
                bytes = 0;
            }
            bytes += m.body.len();
            batch.push(m);
        }
        if !batch.is_empty() {
            queued += self.send(&batch).await?;
        }
        Ok(Delivery {
            queued,
            ..Delivery::default()
        })
    }
}

impl SqsShardQueue {
    /// Sends one batch; entries SQS refused are an error (the stream batch is retried, and
    /// the deduplication ids keep the ones that did go from going twice).
    async fn send(&self, batch: &[&Message]) -> AppResult<usize> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .message_group_id(&m.group_id)
                    .message_deduplication_id(&m.dedup_id)
                    .build()
                    .map_err(|e| AppError::internal(format!("shard message: {e}")))
            })
            .collect::<AppResult<Vec<_>>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AppError::internal(format!("queueing shards: {e:?}")))?;
        if let Some(failed) = out.failed().first() {
            return Err(AppError::internal(format!(
                "{} shard message(s) refused, first: {:?}",
                out.failed().len(),
                failed.message()
            )));
        }
        Ok(batch.iter().map(|m| m.targets).sum())
    }
}

/// The fan-out worker: delivers each shard of an SQS batch. A message that cannot be read
/// is logged and dropped (a retry would not make it readable); one whose delivery failed
/// (storage unavailable) is reported for redelivery, and so is every later message of the
/// batch, as FIFO order requires (SQS then sends it to the dead-letter queue after
/// `maxReceiveCount` attempts). Post failures are not errors: they are counted.
pub async fn handle(worker: &ShardWorker, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failing = false;
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        if failing {
            response.batch_item_failures.push(failure(id));
            continue;
        }
        let shard: Shard = match serde_json::from_str(message.body.as_deref().unwrap_or("")) {
            Ok(shard) => shard,
            Err(e) => {
                tracing::error!(message = %id, error = %e, "unreadable shard message dropped");
                continue;
            }
        };
        match worker.deliver(&shard).await {
            Ok(d) => tracing::info!(
                workspace = %shard.record.workspace_id,
                seq = shard.record.seq,
                group = %shard.group,
                delivered = d.delivered,
                gone = d.gone,
                failed = d.failed,
                stale = d.stale,
                "shard delivered"
            ),
            Err(e) => {
                tracing::error!(message = %id, error = %e, "shard delivery failed; redelivering");
                failing = true;
                response.batch_item_failures.push(failure(id));
            }
        }
    }
    response
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

#[cfg(test)]
mod tests {
    use momentum_shared::kernel::changes::ChangeRecord;
    use momentum_shared::kernel::topic::Topic;
    use momentum_shared::realtime::shards::Target;

    use super::*;

    const WS: &str = "0190b1c2-7d3e-7a4b-8c5d-6e7f8a9b0c1d";

    fn shard(targets: usize) -> Shard {
        let record: ChangeRecord = serde_json::from_value(serde_json::json!({
            "seq": 7, "workspace_id": WS, "event": "workspace.updated",
            "entity_type": "workspace", "entity_id": WS, "kind": "updated",
            "actor_id": "usr_1", "at": "2026-01-01T00:00:00Z", "topics": [], "data": {},
        }))
        .unwrap();
        let targets = (0..targets)
            .map(|i| Target {
                connection_id: format!("conn{i:05}="),
                user_id: "usr_1".into(),
                session_id: "ses_1".into(),
                topic: Topic::Workspace(WS.into()),
                last_seen: 0,
            })
            .collect();
        Shard {
            record,
            group: "3/8".into(),
            targets,
        }
    }

    #[test]
    fn a_shard_that_fits_is_one_message_with_stable_ids() {
        let m = messages(vec![shard(10)], MAX_MESSAGE_BYTES);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].group_id, format!("{WS}#3/8"));
        assert_eq!(m[0].dedup_id, "7#3/8#0");
        assert_eq!(m[0].targets, 10);
        assert!(m[0].group_id.len() <= 128 && m[0].dedup_id.len() <= 128);
        let back: Shard = serde_json::from_str(&m[0].body).unwrap();
        assert_eq!(back, shard(10));
    }

    #[test]
    fn a_shard_too_large_for_one_message_is_split_in_order() {
        let whole = shard(1000);
        let one = serde_json::to_string(&whole).unwrap().len();
        let m = messages(vec![whole.clone()], one / 3);
        assert!(m.len() >= 3, "{}", m.len());
        assert!(m.iter().all(|m| m.body.len() <= one / 3));
        let mut ids: Vec<&str> = m.iter().map(|m| m.dedup_id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), m.len(), "distinct deduplication ids");
        let targets: Vec<Target> = m
            .iter()
            .flat_map(|m| serde_json::from_str::<Shard>(&m.body).unwrap().targets)
            .collect();
        assert_eq!(targets, whole.targets, "every target once, in order");
    }
}
