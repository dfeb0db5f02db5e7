//! Sharded fan-out: a record with more subscribers than a shard holds is split, every shard
//! crosses the queue boundary as JSON (as it does on SQS) and is delivered by the worker,
//! which applies the same visibility rule as inline delivery.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use momentum_shared::AppState;
use momentum_shared::areas::workspaces::{CreateWorkspace, membership_of};
use momentum_shared::clock::SystemClock;
use momentum_shared::config::{AppConfig, FanoutConfig};
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
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::{Table, WriteOp};
use momentum_tests::sign_in_directly;
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

/// A queue like SQS: each shard leaves as JSON and is delivered from what was read back.
#[derive(Default)]
struct JsonQueue {
    shards: Mutex<Vec<String>>,
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
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    sharded_delivery_applies_the_visibility_rule(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_delivery_applies_the_visibility_rule_dynamodb() {
    let test = "sharded_delivery_applies_the_visibility_rule_dynamodb";
    let Some(endpoint) = momentum_tests::dynamodb_endpoint(test) else {
        return;
    };
    let mut config = AppConfig::for_tests();
    config.tables = momentum_tests::test_tables();
    let store = momentum_tests::dynamodb_store(&endpoint, config.tables.clone()).await;
    let state = AppState::with_store(config, Arc::new(store), Arc::new(SystemClock));
    sharded_delivery_applies_the_visibility_rule(state).await;
}

async fn sharded_delivery_applies_the_visibility_rule(state: AppState) {
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
    let queue = Arc::new(JsonQueue::default());
    let broadcaster = Broadcaster::new(registry, gateway.clone())
        .with_config(&FanoutConfig {
            shard_size: 2,
            ..Default::default()
        })
        .with_queue(queue.clone());

    // Visible to every member: all six connections, over more than one shard.
    let all = broadcaster
        .deliver(&[record(1, &ws, EntityType::Workspace, "workspace.updated")])
        .await
        .unwrap();
    assert_eq!(all.delivered, 6, "{all:?}");
    let shards = queue.shards.lock().unwrap().len();
    assert!(shards >= 2, "split into shards ({shards})");

    // An invitation reaches admins and owners only: the guest's connections get nothing,
    // though their shards went through the queue like the others.
    let invite = broadcaster
        .deliver(&[record(2, &ws, EntityType::Invitation, "invitation.created")])
        .await
        .unwrap();
    assert_eq!(invite.delivered, 3, "{invite:?}");
    assert_eq!(invite.skipped_not_member, 3, "{invite:?}");
    let posts = gateway.posts.lock().unwrap().clone();
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
