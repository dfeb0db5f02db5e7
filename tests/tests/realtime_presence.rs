//! Presence and admin messaging (`/ws/*`) and resync after retention, through the shim.

use std::time::Duration;

use momentum_shared::kernel::access::Role;
use momentum_shared::kernel::changes::log_partition;
use momentum_shared::kernel::keys;
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_shared::storage::{Key, Query, Table, Update, WriteOp};
use momentum_tests::{TestServer, WsClient, on_every_store, seed_member, sign_up};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

async fn presence_send_broadcast_cleanup(s: TestServer) {
    let (admin, admin_id, _) = sign_up(&s, "admin").await;
    let (bob, bob_id, bob_email) = sign_up(&s, "bob").await;
    let ws = s
        .post("/workspaces", Some(&admin), &json!({"name": "Presence"}))
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    seed_member(&s, &ws, &bob_id, &bob_email, Role::Member).await;
    s.post(
        "/workspaces/switch",
        Some(&bob),
        &json!({"workspace_id": ws}),
    )
    .await
    .expect(200);

    let mut b1 = WsClient::connect(&s, Some(&bob)).await.unwrap();
    let mut b2 = WsClient::connect(&s, Some(&bob)).await.unwrap();
    let mut a = WsClient::connect(&s, Some(&admin)).await.unwrap();
    for c in [&mut b1, &mut b2, &mut a] {
        let reply = c.request("ping", json!({})).await;
        assert_eq!(reply["type"], "pong", "{reply}");
    }

    let online = s
        .get(&format!("/ws/online?workspace_id={ws}"), Some(&bob))
        .await
        .expect(200);
    let users = online.data()["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 2, "{users:?}");
    let bob_entry = users.iter().find(|u| u["user_id"] == bob_id).unwrap();
    assert_eq!(bob_entry["connections"], 2);
    assert!(users.iter().any(|u| u["user_id"] == admin_id));

    let stats = s
        .get(&format!("/ws/stats?workspace_id={ws}"), Some(&admin))
        .await
        .expect(200);
    assert_eq!(stats.data()["connections"], 3);
    assert_eq!(stats.data()["users_online"], 2);
    s.get(&format!("/ws/stats?workspace_id={ws}"), Some(&bob))
        .await
        .expect(403);

    // Send reaches every connection of the target, and only them. Bob's sockets first heard
    // of the admin's arrival.
    let sent = s
        .post(
            "/ws/send",
            Some(&admin),
            &json!({"workspace_id": ws, "user_id": bob_id, "message": {"text": "hi bob"}}),
        )
        .await
        .expect(200);
    assert_eq!(sent.data()["delivered"], 2);
    for c in [&mut b1, &mut b2] {
        let joined = c.next(WAIT).await.unwrap();
        assert_eq!(joined["message_type"], "user_joined", "{joined}");
        assert_eq!(joined["from_user_id"], json!(admin_id));
        let m = c.next(WAIT).await.unwrap();
        assert_eq!(m, sent.data()["message"]);
        assert_eq!(m["type"], "message");
        assert_eq!(m["data"]["text"], "hi bob");
        assert_eq!(m["from_user_id"], json!(admin_id));
    }
    // The sender's socket got nothing: its next message (below) is the broadcast, which was
    // posted after `send` had answered.
    let stranger = s
        .post(
            "/ws/send",
            Some(&admin),
            &json!({"workspace_id": ws, "user_id": "nobody", "message": {"x": 1}}),
        )
        .await
        .expect(404);
    assert_eq!(stranger.error_field(), Some("user_id"));
    let empty = s
        .post(
            "/ws/send",
            Some(&admin),
            &json!({"workspace_id": ws, "user_id": bob_id}),
        )
        .await
        .expect(422);
    assert_eq!(empty.error_field(), Some("data"));

    let all = s
        .post(
            "/ws/broadcast",
            Some(&admin),
            &json!({"workspace_id": ws, "message": {"text": "all hands"}}),
        )
        .await
        .expect(200);
    assert_eq!(all.data()["delivered"], 3);
    for c in [&mut b1, &mut b2, &mut a] {
        let m = c.next(WAIT).await.unwrap();
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["id"], all.data()["message"]["id"]);
        assert_eq!(m["data"]["text"], "all hands");
    }

    // Cleanup prunes connections the gateway no longer holds, and only those.
    let registry = ConnectionRegistry::new(s.state.ctx.clone());
    registry
        .connect(&s.state.auth, "stale-1=", Some(&bob))
        .await
        .unwrap();
    let cleaned = s
        .post("/ws/cleanup", Some(&admin), &json!({"workspace_id": ws}))
        .await
        .expect(200);
    assert_eq!(cleaned.data()["checked"], 4);
    assert_eq!(cleaned.data()["pruned"], 1);
    assert!(registry.get("stale-1=").await.unwrap().is_none());
    let online = s
        .get(&format!("/ws/online?workspace_id={ws}"), Some(&admin))
        .await
        .expect(200);
    let bob_entry = online.data()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == bob_id)
        .cloned()
        .unwrap();
    assert_eq!(bob_entry["connections"], 2);
}

async fn expired_history_requires_resync(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = s
        .post("/workspaces", Some(&owner), &json!({"name": "Retention"}))
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        s.put(
            &format!("/workspaces/{ws}"),
            Some(&owner),
            &json!({"description": format!("v{i}")}),
        )
        .await
        .expect(200);
    }
    let feed = s
        .get(&format!("/workspaces/{ws}/changes?since=0"), Some(&owner))
        .await
        .expect(200);
    let last = feed.data()["last_seq"].as_i64().unwrap();

    // TTL expiry of the oldest records, as DynamoDB would do after 30 days.
    let oldest = s
        .state
        .store
        .query(&Query::new(Table::Main, log_partition(&ws)).limit(5))
        .await
        .unwrap();
    let deletes = oldest
        .items
        .iter()
        .map(|i| WriteOp::Delete {
            table: Table::Main,
            key: Key::of(i).unwrap(),
            condition: None,
        })
        .collect();
    s.state.store.transact(deletes).await.unwrap();
    // Records expire 30 days after their commit, so the workspace is older than that. (A
    // young workspace's missing numbers are holes still being written, not expiry.)
    let month_ago = time::OffsetDateTime::now_utc() - time::Duration::days(31);
    let backdate = WriteOp::Update {
        table: Table::Main,
        key: keys::workspace(&ws),
        update: Update::default().set(
            "created_at",
            month_ago
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        ),
        condition: None,
    };
    s.state.store.transact(vec![backdate]).await.unwrap();

    let stale = s
        .get(&format!("/workspaces/{ws}/changes?since=0"), Some(&owner))
        .await
        .expect(410);
    assert_eq!(stale.error_code(), "RESYNC_REQUIRED");
    // A recent cursor still works.
    let recent = s
        .get(
            &format!("/workspaces/{ws}/changes?since={}", last - 1),
            Some(&owner),
        )
        .await
        .expect(200);
    assert_eq!(recent.data()["changes"].as_array().unwrap().len(), 1);

    // Everything after the cursor expired: still a resync, not an empty "up to date".
    let all = s
        .state
        .store
        .query(&Query::new(Table::Main, log_partition(&ws)).limit(100))
        .await
        .unwrap();
    let deletes = all
        .items
        .iter()
        .map(|i| WriteOp::Delete {
            table: Table::Main,
            key: Key::of(i).unwrap(),
            condition: None,
        })
        .collect();
    s.state.store.transact(deletes).await.unwrap();
    let mut c = WsClient::connect(&s, Some(&owner)).await.unwrap();
    let r = c
        .request("sync", json!({"workspace_id": ws, "since": last - 2}))
        .await;
    assert_eq!(r["success"], false);
    assert_eq!(r["error"]["code"], "RESYNC_REQUIRED");
    let up_to_date = c
        .request("sync", json!({"workspace_id": ws, "since": last}))
        .await;
    assert_eq!(up_to_date["data"]["changes"], json!([]), "{up_to_date}");
}

on_every_store!(
    presence_send_broadcast_cleanup,
    expired_history_requires_resync
);
