//! The cloud notification path fed a real DynamoDB Stream event: the broadcaster Lambda's
//! entry point makes the notification, counts it, sends it to the recipient's connection
//! (the implicit `user:{id}` topic), and a retried batch adds nothing.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use momentum_shared::AppState;
use momentum_shared::areas::notifications::ListNotificationsParams;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::kernel::access::{Member, Role};
use momentum_shared::kernel::keys;
use momentum_shared::kernel::record::record_item;
use momentum_shared::realtime::broadcaster::{ConnectionGateway, GatewayError};
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::{Table, WriteOp};
use realtime::Realtime;
use serde_json::{Value, json};

// Only the set-up of the shared fixtures is used here.
#[allow(dead_code)]
mod common;

#[derive(Default)]
struct RecordingGateway(Mutex<Vec<(String, Value)>>);

#[async_trait]
impl ConnectionGateway for RecordingGateway {
    async fn post(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        let v: Value = serde_json::from_slice(&data).unwrap();
        self.0.lock().unwrap().push((id.to_owned(), v));
        Ok(())
    }
    async fn close(&self, _id: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn exists(&self, _id: &str) -> Result<bool, GatewayError> {
        Ok(true)
    }
}

/// A stream INSERT of `team_member.created` (seq 7) adding `user` to a team of `ws`.
fn team_member_added(ws: &str, actor: &str, user: &str) -> Value {
    let sk = format!("{:016}", 7);
    json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795442400.0,
            "Keys": {"pk": {"S": format!("WS#{ws}#CHANGES")}, "sk": {"S": sk}},
            "NewImage": {
                "pk": {"S": format!("WS#{ws}#CHANGES")}, "sk": {"S": sk},
                "entity": {"S": "change"}, "seq": {"N": "7"}, "workspace_id": {"S": ws},
                "event": {"S": "team_member.created"}, "entity_type": {"S": "team_member"},
                "entity_id": {"S": format!("team_x:{user}")}, "kind": {"S": "created"},
                "actor_id": {"S": actor}, "at": {"S": "2026-11-23T14:00:00Z"},
                "topics": {"L": [{"S": format!("workspace:{ws}")}]},
                "data": {"M": {"user_id": {"S": user}, "team_id": {"S": "team_x"}}},
                "ttl": {"N": "1798034400"}
            },
            "SequenceNumber": "100", "SizeBytes": 300, "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/momentum-main/stream/2026-11-23T00:00:00.000"
    }]})
}

#[tokio::test]
async fn a_stream_batch_notifies_once_and_reaches_the_users_socket() {
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let (_, owner, ws) = common::owner_and_workspace(&state, "owner", "Lambda").await;
    let (bob_token, bob, _) = common::owner_and_workspace(&state, "bob", "Bob's").await;
    let member = Member {
        workspace_id: ws.clone(),
        user_id: bob.user_id.clone(),
        role: Role::Member,
        username: "bob".into(),
        email: "bob@example.com".into(),
        display_name: None,
        joined_at: "2026-11-23T13:00:00Z".into(),
    };
    state
        .store
        .transact(vec![WriteOp::put(
            Table::Main,
            record_item(&keys::member(&ws, &bob.user_id), "member", &member),
        )])
        .await
        .unwrap();
    let gateway = Arc::new(RecordingGateway::default());
    let rt = Realtime::new(state.clone(), gateway.clone());
    rt.registry
        .connect(&state.auth, "bob1=", Some(&bob_token))
        .await
        .unwrap();

    let event = team_member_added(&ws, &owner.user_id, &bob.user_id);
    for _ in 0..2 {
        // The second run is the event source retrying the batch.
        realtime::stream::handle(&rt, serde_json::from_value(event.clone()).unwrap())
            .await
            .unwrap();
    }

    let inbox = state
        .notifications
        .list(&bob, &ListNotificationsParams::default())
        .await
        .unwrap();
    assert_eq!(inbox.items.len(), 1);
    let n = &inbox.items[0];
    assert_eq!(n.types.len(), 1);
    assert_eq!(serde_json::to_value(n.kind).unwrap(), json!("team_added"));
    assert!(n.delivered_at.is_some(), "the socket accepted it");
    let counts = state.notifications.unread_counts(&bob).await.unwrap();
    assert_eq!(counts.total, 1);
    // The owner (the actor) got nothing.
    let owners = state
        .notifications
        .list(&owner, &ListNotificationsParams::default())
        .await
        .unwrap();
    assert!(owners.items.is_empty());

    let posts = gateway.0.lock().unwrap().clone();
    let created: Vec<&(String, Value)> = posts
        .iter()
        .filter(|(_, v)| v["type"] == "notification.created")
        .collect();
    assert_eq!(created.len(), 1, "{posts:?}");
    assert_eq!(created[0].0, "bob1=");
    assert_eq!(
        created[0].1["topic"],
        json!(format!("user:{}", bob.user_id))
    );
    assert!(posts.iter().any(|(c, v)| c == "bob1="
        && v["type"] == "notifications.unread_count"
        && v["count"] == 1));
}

/// A stream record of a user's unread counter (`eventName`, `changed_by`) in `ws`.
fn unread_counter(event: &str, ws: &str, user: &str, unread: i64, changed_by: &str) -> Value {
    json!({"Records": [{
        "eventID": "2", "eventName": event, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795442400.0,
            "Keys": {"pk": {"S": format!("USER#{user}")}, "sk": {"S": format!("NOTIFUNREAD#{ws}")}},
            "NewImage": {
                "pk": {"S": format!("USER#{user}")}, "sk": {"S": format!("NOTIFUNREAD#{ws}")},
                "entity": {"S": "notification_unread"}, "user_id": {"S": user},
                "workspace_id": {"S": ws}, "unread": {"N": unread.to_string()},
                "changed_by": {"S": changed_by}
            },
            "SequenceNumber": "101", "SizeBytes": 200, "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/momentum-main/stream/2026-11-23T00:00:00.000"
    }]})
}

/// A read-state change (the counter's MODIFY with `changed_by: read_state`) sends the new
/// count to the user's sockets; a counter moved by a new notification is not sent again.
#[tokio::test]
async fn a_read_state_change_sends_the_new_unread_count() {
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let (token, bob, ws) = common::owner_and_workspace(&state, "bob", "Bob's").await;
    let gateway = Arc::new(RecordingGateway::default());
    let rt = Realtime::new(state.clone(), gateway.clone());
    rt.registry
        .connect(&state.auth, "bob1=", Some(&token))
        .await
        .unwrap();
    for (event, unread, cause) in [
        ("MODIFY", 3, "notified"),
        ("MODIFY", 2, "read_state"),
        ("INSERT", 0, "read_state"),
    ] {
        let record = unread_counter(event, &ws, &bob.user_id, unread, cause);
        realtime::stream::handle(&rt, serde_json::from_value(record).unwrap())
            .await
            .unwrap();
    }
    let posts = gateway.0.lock().unwrap().clone();
    let counts: Vec<(&str, &Value, &Value)> = posts
        .iter()
        .map(|(c, v)| (c.as_str(), &v["type"], &v["count"]))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("bob1=", &json!("notifications.unread_count"), &json!(2)),
            ("bob1=", &json!("notifications.unread_count"), &json!(0)),
        ]
    );
}
