//! Direct messages (`/ws/send`, `/ws/broadcast`) in the seed's shape and presence messages
//! (`user_joined` / `user_left`, debounced), black box over WebSocket through the shim.
//!
//! "Nothing else arrived" is never asserted by waiting: a marker message is sent afterwards
//! and the next direct message a socket receives must be that marker.

use std::sync::Arc;
use std::time::Duration;

use momentum_shared::AppState;
use momentum_shared::clock::ManualClock;
use momentum_shared::config::DEFAULT_PRESENCE_GRACE_SECS;
use momentum_shared::ratelimit::{Rate, RateLimitConfig};
use momentum_shared::realtime::connections::IDLE_TIMEOUT_SECS;
use momentum_tests::{
    Backend, TestServer, World, WsClient, backend_store, on_every_store, on_every_store_with_clock,
    world,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// The Acme world with every member's current workspace set to Acme (connections are
/// present in the current workspace).
async fn acme(s: &TestServer) -> World {
    let w = world(s).await;
    for u in [&w.admin, &w.member, &w.guest] {
        s.post("/workspaces/switch", u.t(), &json!({"workspace_id": w.ws}))
            .await
            .expect(200);
    }
    w
}

/// A connection that has answered a ping (its `$connect`, presence included, is done).
async fn connect(s: &TestServer, token: &str) -> WsClient {
    let mut c = WsClient::connect(s, Some(token)).await.unwrap();
    assert_eq!(c.request("ping", json!({})).await["type"], "pong");
    c
}

/// The next direct or presence message (`type: "message"`); events and replies are skipped.
async fn next_direct(c: &mut WsClient) -> Value {
    loop {
        let m = c.next(WAIT).await.expect("a direct message");
        if m["type"] == "message" {
            return m;
        }
    }
}

/// Waits for the direct message with `id`, skipping others.
async fn direct_with_id(c: &mut WsClient, id: &str) -> Value {
    loop {
        let m = next_direct(c).await;
        if m["id"] == id {
            return m;
        }
    }
}

/// `from` sends a system message to themselves; returns its id (a marker in their stream).
async fn marker(s: &TestServer, token: Option<&str>, ws: &str, to: &str) -> String {
    s.post(
        "/ws/send",
        token,
        &json!({"workspace_id": ws, "to_user_id": to, "message_type": "system_message",
                "data": {"marker": true}}),
    )
    .await
    .expect(200)
    .data()["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn seed_shape_and_who_may_send_what(s: TestServer) {
    let w = acme(&s).await;
    let mut owner = connect(&s, &w.owner.token).await;
    let mut member = connect(&s, &w.member.token).await;
    let mut admin = connect(&s, &w.admin.token).await;
    let mut outsider = connect(&s, &w.outsider.token).await;

    // A member's text to another member: stamped by the server, whatever the client sent.
    let sent = s
        .post(
            "/ws/send",
            w.member.t(),
            &json!({"workspace_id": w.ws, "to_user_id": w.owner.id, "message_type": "text",
                    "data": {"content": "hi"}, "from_user_id": w.admin.id, "id": "forged",
                    "timestamp": "1999-01-01T00:00:00Z"}),
        )
        .await
        .expect(200);
    assert_eq!(sent.data()["delivered"], 1);
    let id = sent.data()["message"]["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "forged");
    let got = direct_with_id(&mut owner, &id).await;
    assert_eq!(got, sent.data()["message"]);
    assert_eq!(got["message_type"], "text");
    assert_eq!(got["from_user_id"], json!(w.member.id));
    assert_eq!(got["to_user_id"], json!(w.owner.id));
    assert_eq!(got["workspace_id"], json!(w.ws));
    assert_eq!(got["data"], json!({"content": "hi"}));
    let stamped = got["timestamp"].as_str().unwrap();
    assert!(stamped.starts_with("20") && !stamped.starts_with("1999"));

    // A member may send only text; only to members; a guest not even text.
    for kind in ["notification", "system_message"] {
        let r = s
            .post(
                "/ws/send",
                w.member.t(),
                &json!({"workspace_id": w.ws, "to_user_id": w.owner.id, "message_type": kind,
                        "data": {}}),
            )
            .await
            .expect(403);
        assert_eq!(r.error_code(), "FORBIDDEN");
    }
    let r = s
        .post(
            "/ws/send",
            w.member.t(),
            &json!({"workspace_id": w.ws, "to_user_id": w.outsider.id, "data": {"content": "x"}}),
        )
        .await
        .expect(404);
    assert_eq!(r.error_field(), Some("to_user_id"));
    s.post(
        "/ws/send",
        w.guest.t(),
        &json!({"workspace_id": w.ws, "to_user_id": w.owner.id, "data": {"content": "x"}}),
    )
    .await
    .expect(403);
    s.post(
        "/ws/send",
        w.outsider.t(),
        &json!({"workspace_id": w.ws, "to_user_id": w.owner.id, "data": {"content": "x"}}),
    )
    .await
    .expect(404);
    s.post(
        "/ws/broadcast",
        w.member.t(),
        &json!({"workspace_id": w.ws, "data": {"content": "x"}}),
    )
    .await
    .expect(403);
    // Presence types are the server's; bad input names its field.
    let r = s
        .post(
            "/ws/send",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "to_user_id": w.member.id,
                    "message_type": "user_joined", "data": {}}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("message_type"));
    let r = s
        .post(
            "/ws/send",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "to_user_id": w.member.id,
                    "data": {"content": "x".repeat(40 * 1024)}}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("data"));
    let r = s
        .post(
            "/ws/send",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "to_user_id": w.member.id}),
        )
        .await
        .expect(422);
    assert_eq!(r.error_field(), Some("data"));

    // An admin sends any type; the older `{user_id, message}` shape still works.
    let sys = s
        .post(
            "/ws/send",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "to_user_id": w.member.id,
                    "message_type": "system_message", "data": {"content": "maintenance"}}),
        )
        .await
        .expect(200);
    let got = direct_with_id(&mut member, sys.data()["message"]["id"].as_str().unwrap()).await;
    assert_eq!(got["message_type"], "system_message");
    assert_eq!(got["from_user_id"], json!(w.admin.id));
    let legacy = s
        .post(
            "/ws/send",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "user_id": w.member.id, "message": {"text": "old"}}),
        )
        .await
        .expect(200);
    let got = direct_with_id(
        &mut member,
        legacy.data()["message"]["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(got["message_type"], "text");
    assert_eq!(got["data"], json!({"text": "old"}));

    // A broadcast reaches every connection of the workspace, and no other workspace.
    let all = s
        .post(
            "/ws/broadcast",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "message_type": "notification",
                    "data": {"content": "all hands"}, "from_user_id": w.member.id}),
        )
        .await
        .expect(200);
    assert_eq!(all.data()["delivered"], 3);
    let id = all.data()["message"]["id"].as_str().unwrap().to_owned();
    for c in [&mut owner, &mut member, &mut admin] {
        let got = direct_with_id(c, &id).await;
        assert_eq!(got["message_type"], "notification");
        assert_eq!(got["from_user_id"], json!(w.admin.id));
        assert!(got.get("to_user_id").is_none(), "{got}");
    }
    let mark = marker(&s, w.outsider.t(), &w.other_ws, &w.outsider.id).await;
    assert_eq!(next_direct(&mut outsider).await["id"], json!(mark));
}

/// Burst 3, then one a minute per sender, on `backend` with a manual clock.
async fn rate_limited(backend: Backend, test: &str) {
    let Some((mut config, store)) = backend_store(backend, test).await else {
        return;
    };
    config.rate_limits = RateLimitConfig {
        direct_message: Some(Rate::new(3, 1)),
        ..RateLimitConfig::off()
    };
    let clock = ManualClock::starting_now();
    let state = AppState::with_store(config, store, Arc::new(clock.clone()));
    let s = TestServer::serve(state).await;
    let w = acme(&s).await;
    let text = json!({"workspace_id": w.ws, "to_user_id": w.owner.id, "data": {"content": "x"}});
    for _ in 0..3 {
        s.post("/ws/send", w.member.t(), &text).await.expect(200);
    }
    let refused = s.post("/ws/send", w.member.t(), &text).await.expect(429);
    assert_eq!(refused.error_code(), "RATE_LIMITED");
    // Per sender: another member's budget is untouched.
    s.post(
        "/ws/send",
        w.admin.t(),
        &json!({"workspace_id": w.ws, "to_user_id": w.owner.id, "data": {}}),
    )
    .await
    .expect(200);
    // A rate, not a ban: a minute later one more is allowed.
    clock.advance_secs(61);
    s.post("/ws/send", w.member.t(), &text).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_embedded() {
    rate_limited(Backend::Embedded, "direct_rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_dynamodb() {
    rate_limited(Backend::DynamoDb, "direct_rate_limited").await;
}

/// Waits until `/ws/online` lists `n` connections of `user_id` (a closed one's
/// `$disconnect` is done).
async fn until_connections(s: &TestServer, token: Option<&str>, ws: &str, user_id: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let online = s
            .get(&format!("/ws/online?workspace_id={ws}"), token)
            .await
            .expect(200);
        let users = online.data()["users"].as_array().unwrap().clone();
        let count = users
            .iter()
            .find(|u| u["user_id"] == user_id)
            .map_or(0, |u| u["connections"].as_u64().unwrap());
        if count == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} connections, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn presence_joined_and_debounced_left(s: TestServer, clock: ManualClock) {
    let w = acme(&s).await;
    let grace = DEFAULT_PRESENCE_GRACE_SECS as i64;
    let mut owner = connect(&s, &w.owner.token).await;
    let mut outsider = connect(&s, &w.outsider.token).await;

    // The member's first connection: the owner hears of it, in the seed's shape.
    let m1 = connect(&s, &w.member.token).await;
    let joined = next_direct(&mut owner).await;
    assert_eq!(joined["message_type"], "user_joined", "{joined}");
    assert_eq!(joined["from_user_id"], json!(w.member.id));
    assert_eq!(joined["data"]["user_id"], json!(w.member.id));
    assert_eq!(joined["workspace_id"], json!(w.ws));
    assert!(joined["id"].is_string() && joined["timestamp"].is_string());

    // A second connection is no second join; closing one of two is no leave.
    let m2 = connect(&s, &w.member.token).await;
    m2.close().await;
    until_connections(&s, w.owner.t(), &w.ws, &w.member.id, 1).await;
    clock.advance_secs(grace + 1);
    s.post("/ws/cleanup", w.owner.t(), &json!({"workspace_id": w.ws}))
        .await
        .expect(200);
    let mark = marker(&s, w.owner.t(), &w.ws, &w.owner.id).await;
    assert_eq!(next_direct(&mut owner).await["id"], json!(mark));

    // The last connection closes and the member is back within the grace window: neither a
    // leave nor a second join, even once the window has passed.
    m1.close().await;
    until_connections(&s, w.owner.t(), &w.ws, &w.member.id, 0).await;
    let m3 = connect(&s, &w.member.token).await;
    clock.advance_secs(grace + 1);
    s.post("/ws/cleanup", w.owner.t(), &json!({"workspace_id": w.ws}))
        .await
        .expect(200);
    let mark = marker(&s, w.owner.t(), &w.ws, &w.owner.id).await;
    assert_eq!(next_direct(&mut owner).await["id"], json!(mark));

    // Gone past the window: exactly one user_left.
    m3.close().await;
    until_connections(&s, w.owner.t(), &w.ws, &w.member.id, 0).await;
    s.post("/ws/cleanup", w.owner.t(), &json!({"workspace_id": w.ws}))
        .await
        .expect(200);
    clock.advance_secs(grace + 1);
    for _ in 0..2 {
        s.post("/ws/cleanup", w.owner.t(), &json!({"workspace_id": w.ws}))
            .await
            .expect(200);
    }
    let left = next_direct(&mut owner).await;
    assert_eq!(left["message_type"], "user_left", "{left}");
    assert_eq!(left["from_user_id"], json!(w.member.id));
    assert_eq!(left["data"]["user_id"], json!(w.member.id));
    let mark = marker(&s, w.owner.t(), &w.ws, &w.owner.id).await;
    assert_eq!(next_direct(&mut owner).await["id"], json!(mark));

    // Another workspace heard nothing of it.
    let mark = marker(&s, w.outsider.t(), &w.other_ws, &w.outsider.id).await;
    assert_eq!(next_direct(&mut outsider).await["id"], json!(mark));
}

/// A connection that went silent (no `$disconnect`) is pruned, and its user's leave is
/// announced like any other once the grace window has passed.
async fn a_silent_connection_leaves_after_the_grace_window(s: TestServer, clock: ManualClock) {
    let w = acme(&s).await;
    let grace = DEFAULT_PRESENCE_GRACE_SECS as i64;
    let mut owner = connect(&s, &w.owner.token).await;
    let _member = connect(&s, &w.member.token).await;
    let joined = next_direct(&mut owner).await;
    assert_eq!(joined["message_type"], "user_joined", "{joined}");

    // Past API Gateway's idle timeout the member's socket, still open, counts as gone; the
    // owner pings, so theirs does not.
    clock.advance_secs(IDLE_TIMEOUT_SECS as i64 + 1);
    assert_eq!(owner.request("ping", json!({})).await["type"], "pong");
    let cleaned = s
        .post("/ws/cleanup", w.owner.t(), &json!({"workspace_id": w.ws}))
        .await
        .expect(200);
    assert_eq!(cleaned.data()["pruned"], 1, "{}", cleaned.data());
    // Reading the presence list announces what has come due.
    clock.advance_secs(grace + 1);
    let online = s
        .get(&format!("/ws/online?workspace_id={}", w.ws), w.owner.t())
        .await
        .expect(200);
    assert_eq!(online.data()["users"].as_array().unwrap().len(), 1);
    let left = next_direct(&mut owner).await;
    assert_eq!(left["message_type"], "user_left", "{left}");
    assert_eq!(left["from_user_id"], json!(w.member.id));
}

on_every_store!(seed_shape_and_who_may_send_what);
mod clocked {
    use super::*;
    on_every_store_with_clock!(
        presence_joined_and_debounced_left,
        a_silent_connection_leaves_after_the_grace_window
    );
}
