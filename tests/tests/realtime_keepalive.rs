//! Presence that does not trust `$disconnect`: a connection that stops sending messages is
//! treated as gone once API Gateway's 10-minute idle timeout has passed (left out of
//! presence and fan-out, its rows deleted), while one that pings stays. Time moves on a
//! `ManualClock`; nothing sleeps.

use std::sync::atomic::Ordering;
use std::time::Duration;

use momentum_shared::clock::{Clock, ManualClock};
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_tests::{TestServer, User, WsClient, on_every_store_with_clock, user};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// The server's id of a client's connection.
async fn connection_id(c: &mut WsClient) -> String {
    let info = c.request("get_connection_info", json!({})).await;
    info["data"]["connection_id"].as_str().unwrap().to_owned()
}

async fn ping(c: &mut WsClient) {
    let pong = c.request("ping", json!({})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(pong["success"], true, "{pong}");
}

/// Connections of the workspace's online list, by user.
async fn online(s: &TestServer, token: Option<&str>, ws: &str) -> Vec<Value> {
    s.get(&format!("/ws/online?workspace_id={ws}"), token)
        .await
        .expect(200)
        .data()["users"]
        .as_array()
        .unwrap()
        .clone()
}

/// A new user and the workspace they created (its id).
async fn owner_and_workspace(s: &TestServer, name: &str) -> (User, String) {
    let owner = user(s, "owner").await;
    let ws = s
        .post("/workspaces", owner.t(), &json!({"name": name}))
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (owner, ws)
}

async fn a_silent_connection_leaves_presence_and_fan_out(s: TestServer, clock: ManualClock) {
    let (owner, ws) = owner_and_workspace(&s, "Keepalive").await;
    let registry = ConnectionRegistry::new(s.state.ctx.clone());
    // a pings, b and c fall silent; a and b are subscribed, c is only present.
    let mut a = WsClient::connect(&s, owner.t()).await.unwrap();
    let mut b = WsClient::connect(&s, owner.t()).await.unwrap();
    let mut c = WsClient::connect(&s, owner.t()).await.unwrap();
    let (a_id, b_id, c_id) = (
        connection_id(&mut a).await,
        connection_id(&mut b).await,
        connection_id(&mut c).await,
    );
    for client in [&mut a, &mut b] {
        let r = client
            .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
            .await;
        assert_eq!(r["success"], true, "{r}");
    }
    let users = online(&s, owner.t(), &ws).await;
    assert_eq!(users, vec![json!({"user_id": owner.id, "connections": 3})]);

    // Five minutes in, a pings; at 10 min 1 s it pings again. b and c said nothing since
    // connecting: they are past the idle timeout, a is not.
    clock.advance_secs(300);
    ping(&mut a).await;
    clock.advance_secs(301);
    ping(&mut a).await;

    // A write: a gets the event; b gets no event, is closed and forgotten.
    s.put(
        &format!("/workspaces/{ws}"),
        owner.t(),
        &json!({"description": "after the silence"}),
    )
    .await
    .expect(200);
    let events = a.events(1, WAIT).await;
    assert_eq!(events.len(), 1, "the pinging connection gets the event");
    assert_eq!(events[0]["event"], "workspace.updated");
    assert!(
        b.closed_within(WAIT).await,
        "the silent subscriber is closed"
    );
    assert!(
        !b.received().iter().any(|m| m["type"] == "event"),
        "the silent subscriber got no event: {:?}",
        b.received()
    );
    assert!(registry.get(&b_id).await.unwrap().is_none(), "b is pruned");
    assert!(
        registry.subscriptions(&b_id).await.unwrap().is_empty(),
        "b's subscriptions are pruned"
    );

    // Presence lists a alone, and prunes c, which fan-out never met.
    assert!(registry.get(&c_id).await.unwrap().is_some());
    let users = online(&s, owner.t(), &ws).await;
    assert_eq!(users, vec![json!({"user_id": owner.id, "connections": 1})]);
    assert!(registry.get(&c_id).await.unwrap().is_none(), "c is pruned");
    assert!(registry.get(&a_id).await.unwrap().is_some(), "a stays");

    // a, still pinging, stays through the next ten minutes too.
    for _ in 0..10 {
        clock.advance_secs(60);
        ping(&mut a).await;
    }
    // (The access token has expired by now: ask the registry behind `/ws/online`.)
    let present = registry.present_live(&ws).await.unwrap();
    assert_eq!(present.len(), 1);
    assert_eq!(present[0].connection_id, a_id);
}

async fn pings_write_last_seen_at_most_once_a_minute(s: TestServer, clock: ManualClock) {
    let (owner, ws) = owner_and_workspace(&s, "Pings").await;
    let registry = ConnectionRegistry::new(s.state.ctx.clone());
    let mut a = WsClient::connect(&s, owner.t()).await.unwrap();
    let a_id = connection_id(&mut a).await;
    let r = a
        .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;
    assert_eq!(r["success"], true, "{r}");
    let connected = clock.epoch_secs();
    // Every write the server makes is a transaction (there is no other write call).
    let writes = || s.state.storage_totals.transact.load(Ordering::SeqCst);

    let before = writes();
    for _ in 0..5 {
        ping(&mut a).await;
    }
    clock.advance_secs(30);
    for _ in 0..5 {
        ping(&mut a).await;
    }
    assert_eq!(
        writes(),
        before,
        "pings within a minute of connecting write nothing"
    );

    clock.advance_secs(31);
    for _ in 0..5 {
        ping(&mut a).await;
    }
    assert_eq!(
        writes(),
        before + 1,
        "one write past the minute, however many pings"
    );
    let refreshed = connected + 61;
    let conn = registry.get(&a_id).await.unwrap().unwrap();
    assert_eq!(conn.last_seen, Some(refreshed));
    let subs = registry.subscriptions(&a_id).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(
        subs[0].last_seen,
        Some(refreshed),
        "the subscription's copy moves with it"
    );

    clock.advance_secs(59);
    ping(&mut a).await;
    assert_eq!(writes(), before + 1, "59 s after the last write: none");
    clock.advance_secs(1);
    ping(&mut a).await;
    assert_eq!(
        writes(),
        before + 2,
        "a minute after the last write: one more"
    );
}

on_every_store_with_clock!(
    a_silent_connection_leaves_presence_and_fan_out,
    pings_write_last_seen_at_most_once_a_minute
);
