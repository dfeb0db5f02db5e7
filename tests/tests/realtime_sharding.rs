//! Sharded fan-out: a record with more subscribers than a shard holds is split, every shard
//! crosses the queue boundary as JSON (as it does on SQS) and is delivered by the worker,
//! which applies the same visibility rule as inline delivery.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use momentum_shared::AppState;
use momentum_shared::areas::workspaces::{CreateWorkspace, membership_of};
use momentum_shared::clock::SystemClock;
use momentum_shared::config::FanoutConfig;
use momentum_shared::error::AppResult;
use momentum_shared::kernel::access::{EntityType, Member, Role};
use momentum_shared::kernel::changes::{ChangeKind, ChangeRecord};
use momentum_shared::kernel::keys;
use momentum_shared::kernel::record::record_item;
use momentum_shared::kernel::topic::Topic;
use momentum_shared::realtime::broadcaster::{
    Broadcaster, ConnectionGateway, Delivery, GatewayError, ShardWorker,
};
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_shared::realtime::shards::{Shard, ShardQueue};
use momentum_shared::storage::{Table, WriteOp};
use momentum_tests::{Backend, sign_in_directly};
use serde_json::json;

/// Records which connection got which event.
#[derive(Default)]
struct RecordingGateway {
    posts: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl ConnectionGateway for RecordingGateway {
    async fn post(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        self.posts
            .lock()
            .unwrap()
            .push((id.to_owned(), v["event"].as_str().unwrap().to_owned()));
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn exists(&self, _: &str) -> Result<bool, GatewayError> {
        Ok(true)
    }
}

/// A shard queue that tells how many shards went through it.
trait CountingQueue: ShardQueue {
    fn shards_seen(&self) -> usize;
}

/// A queue like SQS: each shard leaves as JSON and is delivered from what was read back.
#[derive(Default)]
struct JsonQueue {
    shards: Mutex<Vec<String>>,
}

impl CountingQueue for JsonQueue {
    fn shards_seen(&self) -> usize {
        self.shards.lock().unwrap().len()
    }
}

#[async_trait]
impl ShardQueue for JsonQueue {
    async fn dispatch(&self, shards: Vec<Shard>, worker: &ShardWorker) -> AppResult<Delivery> {
        let mut total = Delivery::default();
        for shard in shards {
            let body = serde_json::to_string(&shard).unwrap();
            self.shards.lock().unwrap().push(shard.group.clone());
            let received: Shard = serde_json::from_str(&body).unwrap();
            total.add(&worker.deliver(&received).await?);
        }
        Ok(total)
    }
}

fn record(seq: i64, ws: &str, entity_type: EntityType, event: &str) -> ChangeRecord {
    ChangeRecord {
        seq,
        workspace_id: ws.to_owned(),
        event: event.into(),
        entity_type,
        entity_id: format!("ent_{seq}"),
        kind: ChangeKind::Created,
        actor_id: "usr_actor".into(),
        at: "2026-11-23T00:00:00Z".into(),
        topics: vec![Topic::Workspace(ws.to_owned())],
        data: json!({}),
        audience: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_delivery_applies_the_visibility_rule_embedded() {
    let test = "sharded_delivery_applies_the_visibility_rule_embedded";
    let Some(state) = state_on(Backend::Embedded, test).await else {
        return;
    };
    sharded_delivery_applies_the_visibility_rule(state, Arc::new(JsonQueue::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_delivery_applies_the_visibility_rule_dynamodb() {
    let test = "sharded_delivery_applies_the_visibility_rule_dynamodb";
    let Some(state) = state_on(Backend::DynamoDb, test).await else {
        return;
    };
    sharded_delivery_applies_the_visibility_rule(state, Arc::new(JsonQueue::default())).await;
}

/// The services on a fresh store of `backend` (`None`: DynamoDB unavailable, skip printed).
async fn state_on(backend: Backend, test: &str) -> Option<AppState> {
    let (config, store) = momentum_tests::backend_store(backend, test).await?;
    Some(AppState::with_store(config, store, Arc::new(SystemClock)))
}

/// The AWS path end to end on moto: the broadcaster's `SqsShardQueue` sends the shards to a
/// FIFO queue, the fan-out worker Lambda's `handle` gets them back as an SQS event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_delivery_through_sqs_applies_the_visibility_rule_dynamodb() {
    let test = "sharded_delivery_through_sqs_applies_the_visibility_rule_dynamodb";
    let Some(state) = state_on(Backend::DynamoDb, test).await else {
        return;
    };
    // moto serves SQS on the same endpoint as DynamoDB.
    let endpoint = momentum_tests::dynamodb_endpoint(test).expect("checked by state_on");
    let queue = SqsRoundTrip::create(&endpoint).await;
    sharded_delivery_applies_the_visibility_rule(state, Arc::new(queue)).await;
}

/// The broadcaster's SQS queue plus the worker's side: every dispatch is sent to a FIFO queue
/// on moto, then received in batches as the event source would (a message group's next
/// message only once the one before is deleted), handed to `realtime::fanout::handle` as an
/// SQS event, and deleted.
struct SqsRoundTrip {
    sender: realtime::fanout::SqsShardQueue,
    client: aws_sdk_sqs::Client,
    queue_url: String,
    shards: Mutex<usize>,
}

impl SqsRoundTrip {
    async fn create(endpoint: &str) -> Self {
        let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
            region: Some("us-east-1".into()),
            attempt_timeout: std::time::Duration::from_secs(10),
            local_credentials: true,
        })
        .await;
        let client = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .endpoint_url(endpoint)
                .build(),
        );
        let name = format!(
            "t{}-fanout.fifo",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let queue_url = client
            .create_queue()
            .queue_name(name)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create the FIFO queue")
            .queue_url
            .expect("a queue url");
        Self {
            sender: realtime::fanout::SqsShardQueue::with_client(client.clone(), queue_url.clone()),
            client,
            queue_url,
            shards: Mutex::new(0),
        }
    }

    /// Receives, delivers and deletes until `targets` targets went through the worker.
    async fn drain(&self, worker: &ShardWorker, targets: usize) {
        let mut seen = 0;
        for _ in 0..100 {
            if seen >= targets {
                return;
            }
            let got = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            let messages = got.messages.unwrap_or_default();
            let records: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| {
                    json!({
                        "messageId": m.message_id,
                        "receiptHandle": m.receipt_handle,
                        "body": m.body,
                        "attributes": m.attributes.as_ref().map(|a| a
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                            .collect::<serde_json::Map<_, _>>()),
                        "messageAttributes": {},
                        "eventSource": "aws:sqs",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fanout.fifo",
                        "awsRegion": "us-east-1",
                    })
                })
                .collect();
            for m in &messages {
                let shard: Shard = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
                seen += shard.targets.len();
            }
            *self.shards.lock().unwrap() += messages.len();
            let event: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
            let answer = realtime::fanout::handle(worker, event).await;
            assert!(answer.batch_item_failures.is_empty(), "no shard failed");
            for m in &messages {
                self.client
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        panic!("only {seen} of {targets} targets came back from the queue");
    }

    /// Messages waiting now (a receive that does not wait).
    async fn waiting(&self) -> usize {
        self.client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive")
            .messages
            .map_or(0, |m| m.len())
    }
}

#[async_trait]
impl ShardQueue for SqsRoundTrip {
    async fn dispatch(&self, shards: Vec<Shard>, worker: &ShardWorker) -> AppResult<Delivery> {
        let queued = self.sender.dispatch(shards.clone(), worker).await?;
        let targets = shards.iter().map(|s| s.targets.len()).sum();
        assert_eq!(queued.queued, targets, "every target queued");
        // A stream retry sends the same shards again before the worker ran: the
        // deduplication ids make it a no-op, so each target comes back once.
        self.sender.dispatch(shards, worker).await?;
        self.drain(worker, targets).await;
        assert_eq!(self.waiting().await, 0, "a resent shard was deduplicated");
        // What the worker delivered, the gateway recorded (the scenario asserts on that).
        Ok(queued)
    }
}

impl CountingQueue for SqsRoundTrip {
    fn shards_seen(&self) -> usize {
        *self.shards.lock().unwrap()
    }
}

async fn sharded_delivery_applies_the_visibility_rule(
    state: AppState,
    queue: Arc<dyn CountingQueue>,
) {
    let (owner_token, _) = sign_in_directly(&state, "owner").await;
    let owner = state.auth.authenticate(&owner_token).unwrap();
    let ws = state
        .workspaces
        .create(
            &owner,
            CreateWorkspace {
                name: "Sharded".into(),
                url_key: None,
                description: None,
            },
        )
        .await
        .unwrap()
        .workspace
        .id;
    let (guest_token, guest_id) = sign_in_directly(&state, "guest").await;
    let member = Member {
        workspace_id: ws.clone(),
        user_id: guest_id.clone(),
        role: Role::Guest,
        username: "guest".into(),
        email: "guest@example.com".into(),
        display_name: None,
        joined_at: "2026-01-01T00:00:00Z".into(),
    };
    state
        .store
        .transact(vec![
            WriteOp::put(
                Table::Main,
                record_item(&keys::member(&ws, &guest_id), "member", &member),
            ),
            WriteOp::put(
                Table::Main,
                record_item(
                    &keys::membership(&guest_id, &ws),
                    "membership",
                    &membership_of(&member),
                ),
            ),
        ])
        .await
        .unwrap();

    let registry = ConnectionRegistry::new(state.ctx.clone());
    let mut owner_conns = Vec::new();
    let mut guest_conns = Vec::new();
    for i in 0..6 {
        let (token, list) = if i % 2 == 0 {
            (&owner_token, &mut owner_conns)
        } else {
            (&guest_token, &mut guest_conns)
        };
        let id = format!("conn{i}=");
        let conn = registry
            .connect(&state.auth, &id, Some(token))
            .await
            .unwrap();
        registry
            .subscribe(&conn, &[format!("workspace:{ws}")])
            .await
            .unwrap();
        list.push(id);
    }

    let gateway = Arc::new(RecordingGateway::default());
    let broadcaster = Broadcaster::new(registry, gateway.clone())
        .with_config(&FanoutConfig {
            shard_size: 2,
            ..Default::default()
        })
        .with_queue(queue.clone());

    // Visible to every member: all six connections, over more than one shard, each once.
    broadcaster
        .deliver(&[record(1, &ws, EntityType::Workspace, "workspace.updated")])
        .await
        .unwrap();
    let shards = queue.shards_seen();
    assert!(shards >= 2, "split into shards ({shards})");

    // An invitation reaches admins and owners only: the guest's connections get nothing,
    // though their shards went through the queue like the others.
    broadcaster
        .deliver(&[record(2, &ws, EntityType::Invitation, "invitation.created")])
        .await
        .unwrap();
    let posts = gateway.posts.lock().unwrap().clone();
    let count = |event: &str| posts.iter().filter(|(_, e)| e == event).count();
    assert_eq!(count("workspace.updated"), 6, "{posts:?}");
    assert_eq!(count("invitation.created"), 3, "{posts:?}");
    for conn in &owner_conns {
        assert!(posts.contains(&(conn.clone(), "invitation.created".into())));
    }
    for conn in &guest_conns {
        assert!(posts.contains(&(conn.clone(), "workspace.updated".into())));
        assert!(
            !posts.contains(&(conn.clone(), "invitation.created".into())),
            "the guest's {conn} got an invitation"
        );
    }
}
