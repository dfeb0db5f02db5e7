//! Realtime through the shim with a real WebSocket client: handshake auth, subscriptions,
//! fan-out order and isolation, resume with `sync`, gone connections, commands.

use std::time::Duration;

use momentum_shared::kernel::access::Role;
use momentum_shared::realtime::connections::{Connection, ConnectionRegistry};
use momentum_shared::storage::{Query, Table};
use momentum_tests::{TestServer, WsClient, on_every_store, seed_member, sign_up};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn workspace(s: &TestServer, token: &str, name: &str) -> String {
    s.post("/workspaces", Some(token), &json!({"name": name}))
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn handshake_requires_a_valid_token(s: TestServer) {
    let (token, user_id, _) = sign_up(&s, "alice").await;
    let ws = workspace(&s, &token, "Handshake").await;
    assert_eq!(WsClient::connect(&s, None).await.err(), Some(401));
    assert_eq!(
        WsClient::connect(&s, Some("forged.token.here")).await.err(),
        Some(401)
    );
    // An expired token, correctly signed.
    let tokens = s.state.auth.tokens();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = momentum_shared::auth::AccessClaims {
        sub: user_id.clone(),
        sid: "whatever".into(),
        iat: now - 3600,
        exp: now - 1800,
        iss: "momentum".into(),
        aud: "momentum-api".into(),
        typ: "access".into(),
        jti: "x".into(),
        nbf: None,
    };
    let expired = tokens.sign(&claims).unwrap();
    assert_eq!(WsClient::connect(&s, Some(&expired)).await.err(), Some(401));
    // Refused handshakes left no connection behind.
    let registry = ConnectionRegistry::new(s.state.ctx.clone());
    assert!(registry.present(&ws).await.unwrap().is_empty());

    let mut client = WsClient::connect(&s, Some(&token))
        .await
        .expect("valid token connects");
    let info = client.request("get_connection_info", json!({})).await;
    assert_eq!(info["success"], true);
    assert_eq!(info["data"]["user_id"], json!(user_id));
    assert_eq!(info["data"]["workspace_id"], json!(ws));
    assert_eq!(registry.present(&ws).await.unwrap().len(), 1);
    let id = info["data"]["connection_id"].as_str().unwrap().to_owned();
    client.close().await;
    // $disconnect removes the row.
    let deadline = tokio::time::Instant::now() + WAIT;
    while registry.get(&id).await.unwrap().is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(registry.get(&id).await.unwrap().is_none());

    // A logged-out session cannot connect.
    s.post("/auth/logout", Some(&token), &json!({}))
        .await
        .expect(200);
    assert_eq!(WsClient::connect(&s, Some(&token)).await.err(), Some(401));
}

async fn subscribers_get_ordered_events_and_outsiders_nothing(s: TestServer) {
    let (alice, _, _) = sign_up(&s, "alice").await;
    let (bob, bob_id, bob_email) = sign_up(&s, "bob").await;
    let (eve, _, _) = sign_up(&s, "eve").await;
    let ws = workspace(&s, &alice, "Shared").await;
    seed_member(&s, &ws, &bob_id, &bob_email, Role::Member).await;
    let eve_ws = workspace(&s, &eve, "Eve's").await;

    let mut b = WsClient::connect(&s, Some(&bob)).await.unwrap();
    let sub = b
        .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;
    assert_eq!(sub["success"], true, "{sub}");
    let mut e = WsClient::connect(&s, Some(&eve)).await.unwrap();
    let refused = e
        .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;
    assert_eq!(refused["success"], false);
    assert_eq!(refused["error"]["code"], "NOT_FOUND");
    let info = e.request("get_connection_info", json!({})).await;
    assert_eq!(
        info["data"]["subscriptions"],
        json!([]),
        "no subscription after refusal"
    );
    e.request(
        "subscribe",
        json!({"topics": [format!("workspace:{eve_ws}")]}),
    )
    .await;

    for i in 0..5 {
        s.put(
            &format!("/workspaces/{ws}"),
            Some(&alice),
            &json!({"description": format!("v{i}")}),
        )
        .await
        .expect(200);
    }
    // A marker after them: Bob reads up to it, so every event of the five (and any
    // duplicate) has arrived by then, whatever the machine's load.
    let marker = last_seq(&s, &alice, &ws).await + 1;
    s.put(
        &format!("/workspaces/{ws}"),
        Some(&alice),
        &json!({"description": "marker"}),
    )
    .await
    .expect(200);
    let mut seen = Vec::new();
    loop {
        let ev = b.next(WAIT).await.expect("events up to the marker");
        if ev["type"] != "event" {
            continue;
        }
        let seq = ev["seq"].as_i64().unwrap();
        seen.push(ev);
        if seq == marker {
            break;
        }
    }
    let mut seqs: Vec<i64> = seen.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "no duplicates: {seqs:?}");
    // Creation events whose fan-out was still in flight when Bob subscribed may come first.
    let events: Vec<&Value> = seen
        .iter()
        .filter(|e| e["event"] == "workspace.updated" && e["seq"] != json!(marker))
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "increasing seq: {seqs:?}"
    );
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev["event"], "workspace.updated");
        assert_eq!(ev["topic"], format!("workspace:{ws}"));
        assert_eq!(ev["data"]["description"], format!("v{i}"));
    }
    // Eve reads up to a change of her own workspace: nothing of Alice's may come before it.
    // (Her own workspace's creation events may: their fan-out can still be in flight when
    // she subscribes, which is what made an "Eve got nothing" check fail on a busy machine.)
    let eve_marker = last_seq(&s, &eve, &eve_ws).await + 1;
    s.put(
        &format!("/workspaces/{eve_ws}"),
        Some(&eve),
        &json!({"description": "eve's marker"}),
    )
    .await
    .expect(200);
    loop {
        let ev = e.next(WAIT).await.expect("Eve's own events");
        if ev["type"] != "event" {
            continue;
        }
        assert_eq!(
            ev["workspace_id"],
            json!(eve_ws),
            "another workspace's user got {ev}"
        );
        if ev["seq"] == json!(eve_marker) {
            break;
        }
    }

    // Removed from the workspace: the open connection is closed and got nothing after.
    s.call(
        reqwest::Method::DELETE,
        &format!("/workspaces/{ws}/members/{bob_id}"),
        Some(&alice),
        None,
    )
    .await
    .expect(200);
    assert!(
        b.closed_within(WAIT).await,
        "a removed member's socket closes"
    );
    assert!(
        b.received()
            .iter()
            .all(|m| m["seq"].as_i64().is_none_or(|n| n <= marker)),
        "a removed member receives nothing"
    );
}

/// The head of a workspace's change log as `token` sees it.
async fn last_seq(s: &TestServer, token: &str, ws: &str) -> i64 {
    s.get(
        &format!("/workspaces/{ws}/changes?since=0&limit=1000"),
        Some(token),
    )
    .await
    .expect(200)
    .data()["last_seq"]
        .as_i64()
        .unwrap()
}

async fn resume_with_sync_gets_exactly_the_missed_changes(s: TestServer) {
    let (alice, _, _) = sign_up(&s, "alice").await;
    let (bob, bob_id, bob_email) = sign_up(&s, "bob").await;
    let ws = workspace(&s, &alice, "Resume").await;
    seed_member(&s, &ws, &bob_id, &bob_email, Role::Member).await;
    let mut b = WsClient::connect(&s, Some(&bob)).await.unwrap();
    b.request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;
    s.put(
        &format!("/workspaces/{ws}"),
        Some(&alice),
        &json!({"description": "seen"}),
    )
    .await
    .expect(200);
    // Events of changes committed before the subscription may still arrive first (fan-out
    // is asynchronous); the client tracks the seq of what it saw last.
    let mut last_seen = -1;
    while last_seen < 0 {
        let ev = b.events(1, WAIT).await.pop().expect("the update event");
        if ev["data"]["description"] == "seen" {
            last_seen = ev["seq"].as_i64().unwrap();
        }
    }
    b.close().await;

    // 100 changes while away, from 4 concurrent writers.
    let mut extra = Vec::new();
    for i in 0..4 {
        let (_, uid, email) = sign_up(&s, &format!("writer{i}")).await;
        seed_member(&s, &ws, &uid, &email, Role::Guest).await;
        extra.push(uid);
    }
    let writers = extra.iter().map(|uid| {
        let path = format!("/workspaces/{ws}/members/{uid}");
        let s = &s;
        let alice = &alice;
        async move {
            for round in 0..25 {
                let role = if round % 2 == 0 { "member" } else { "guest" };
                s.put(&path, Some(alice), &json!({"role": role}))
                    .await
                    .expect(200);
            }
        }
    });
    futures::future::join_all(writers).await;

    let mut b = WsClient::connect(&s, Some(&bob)).await.unwrap();
    let mut got: Vec<Value> = Vec::new();
    let mut since = last_seen;
    loop {
        let reply = b
            .request(
                "sync",
                json!({"workspace_id": ws, "since": since, "limit": 30}),
            )
            .await;
        assert_eq!(reply["success"], true, "{reply}");
        let page = reply["data"]["changes"].as_array().unwrap().clone();
        since = reply["data"]["last_seq"].as_i64().unwrap();
        got.extend(page);
        if reply["data"]["has_more"] != true {
            break;
        }
    }
    let seqs: Vec<i64> = got.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        ((last_seen + 1)..=(last_seen + 100)).collect::<Vec<_>>(),
        "exactly the 100 missed changes, in order"
    );
    // The REST feed says the same.
    let rest = s
        .get(
            &format!("/workspaces/{ws}/changes?since={last_seen}&limit=1000"),
            Some(&bob),
        )
        .await
        .expect(200);
    assert_eq!(rest.data()["changes"].as_array().unwrap().len(), 100);
}

async fn gone_connections_are_deleted_and_the_rest_still_served(s: TestServer) {
    let (alice, _, _) = sign_up(&s, "alice").await;
    let (bob, bob_id, bob_email) = sign_up(&s, "bob").await;
    let ws = workspace(&s, &alice, "Gone").await;
    seed_member(&s, &ws, &bob_id, &bob_email, Role::Member).await;
    let registry = ConnectionRegistry::new(s.state.ctx.clone());
    // Three connections recorded (as $connect would) whose sockets no longer exist.
    let mut ghosts: Vec<Connection> = Vec::new();
    for i in 0..3 {
        let id = format!("ghost{i}-{}", uuid::Uuid::new_v4().simple());
        let conn = registry
            .connect(&s.state.auth, &id, Some(&bob))
            .await
            .unwrap();
        registry
            .subscribe(&conn, &[format!("workspace:{ws}")])
            .await
            .unwrap();
        ghosts.push(conn);
    }
    let mut live = WsClient::connect(&s, Some(&bob)).await.unwrap();
    live.request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;

    s.put(
        &format!("/workspaces/{ws}"),
        Some(&alice),
        &json!({"name": "Still here"}),
    )
    .await
    .expect(200);
    let events = live.events(1, WAIT).await;
    assert_eq!(events.len(), 1, "the live connection still got the event");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let mut left = 0;
        for g in &ghosts {
            if registry.get(&g.connection_id).await.unwrap().is_some() {
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for g in &ghosts {
        assert!(
            registry.get(&g.connection_id).await.unwrap().is_none(),
            "gone row deleted"
        );
        let subs = s
            .state
            .store
            .query(&Query::new(
                Table::Connections,
                format!("CONN#{}", g.connection_id),
            ))
            .await
            .unwrap();
        assert!(subs.items.is_empty(), "and its subscriptions");
    }
    let info = live.request("get_connection_info", json!({})).await;
    let live_id = info["data"]["connection_id"].as_str().unwrap();
    assert!(
        registry.get(live_id).await.unwrap().is_some(),
        "the live row stays"
    );
}

async fn commands_answer_and_fail_cleanly(s: TestServer) {
    let (alice, _, _) = sign_up(&s, "alice").await;
    let ws = workspace(&s, &alice, "Commands").await;
    let mut c = WsClient::connect(&s, Some(&alice)).await.unwrap();

    let pong = c.request("ping", json!({})).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["success"], true);

    // Bad JSON, unknown type, oversize: an error reply, and the connection stays up.
    c.send_text("{not json".into()).await;
    let bad = c.next(WAIT).await.unwrap();
    assert_eq!(bad["success"], false);
    assert_eq!(bad["error"]["code"], "VALIDATION_ERROR");
    let unknown = c.request("teleport", json!({})).await;
    assert_eq!(unknown["error"]["field"], "type");
    c.send_text(json!({"type": "ping", "data": "x".repeat(130 * 1024)}).to_string())
        .await;
    let big = c.next(WAIT).await.unwrap();
    assert_eq!(big["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(c.request("ping", json!({})).await["type"], "pong");

    // Subscriptions.
    let sub = c
        .request(
            "subscribe",
            json!({"topics": ["issues", format!("workspace:{ws}")]}),
        )
        .await;
    assert_eq!(
        sub["data"]["subscribed"],
        json!([format!("issues:{ws}"), format!("workspace:{ws}")])
    );
    let bad_topic = c.request("subscribe", json!({"topics": ["mars:1"]})).await;
    assert_eq!(bad_topic["error"]["field"], "topics");
    let none = c.request("subscribe", json!({})).await;
    assert_eq!(none["error"]["field"], "topics");
    let unsub = c
        .request("unsubscribe", json!({"topics": ["issues"]}))
        .await;
    assert_eq!(unsub["success"], true);
    let info = c.request("get_connection_info", json!({})).await;
    assert_eq!(
        info["data"]["subscriptions"],
        json!([format!("workspace:{ws}")])
    );
    // The seed's shape: topics at the top level.
    c.send_text(
        json!({"type": "subscribe", "topics": ["projects"], "request_id": "top"}).to_string(),
    )
    .await;
    assert_eq!(c.reply_to("top").await["success"], true);

    // Workspace commands and profile.
    let current = c.request("get_current_workspace", json!({})).await;
    assert_eq!(current["data"]["id"], json!(ws));
    let created = c
        .request("create_workspace", json!({"name": "From WS"}))
        .await;
    assert_eq!(created["success"], true);
    let new_ws = created["data"]["id"].as_str().unwrap().to_owned();
    let invalid = c.request("create_workspace", json!({"name": ""})).await;
    assert_eq!(invalid["error"]["field"], "name");
    let updated = c
        .request("update_workspace", json!({"id": new_ws, "name": "Renamed"}))
        .await;
    assert_eq!(updated["data"]["name"], "Renamed");
    let no_id = c.request("update_workspace", json!({"name": "x"})).await;
    assert_eq!(no_id["error"]["field"], "id");
    let members = c
        .request("query_workspace_members", json!({"workspace_id": ws}))
        .await;
    assert_eq!(members["data"]["items"].as_array().unwrap().len(), 1);
    let foreign = c
        .request(
            "query_workspace_members",
            json!({"workspace_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(foreign["error"]["code"], "NOT_FOUND");
    let deleted = c.request("delete_workspace", json!({"id": new_ws})).await;
    assert_eq!(deleted["success"], true);
    let again = c.request("delete_workspace", json!({"id": new_ws})).await;
    assert_eq!(again["error"]["code"], "NOT_FOUND");
    let profile = c
        .request("update_profile", json!({"display_name": "Alice A."}))
        .await;
    assert_eq!(profile["data"]["display_name"], "Alice A.");
    let bad_profile = c
        .request("update_profile", json!({"avatar_url": "ftp://x"}))
        .await;
    assert_eq!(bad_profile["error"]["field"], "avatar_url");

    // Sync validation.
    let sync = c
        .request("sync", json!({"workspace_id": ws, "since": 0}))
        .await;
    assert!(sync["data"]["changes"].as_array().unwrap().len() >= 4);
    let bad_sync = c
        .request("sync", json!({"workspace_id": ws, "since": -5}))
        .await;
    assert_eq!(bad_sync["error"]["field"], "since");
    let missing = c.request("sync", json!({"workspace_id": ws})).await;
    assert_eq!(missing["error"]["field"], "since");
}

/// A live event is the feed's record plus `type` and the topic it came on: one parser reads
/// both, and the OpenAPI document describes it as `LiveEvent`.
async fn live_events_are_feed_records_with_their_topic(s: TestServer) {
    let (alice, _, _) = sign_up(&s, "alice").await;
    let ws = workspace(&s, &alice, "Shapes").await;
    let mut c = WsClient::connect(&s, Some(&alice)).await.unwrap();
    let topic = format!("workspace:{ws}");
    c.request("subscribe", json!({"topics": [topic]})).await;
    s.put(
        &format!("/workspaces/{ws}"),
        Some(&alice),
        &json!({"description": "shape"}),
    )
    .await
    .expect(200);
    let head = last_seq(&s, &alice, &ws).await;
    let record = s
        .get(
            &format!("/workspaces/{ws}/changes?since={}", head - 1),
            Some(&alice),
        )
        .await
        .expect(200)
        .data()["changes"][0]
        .clone();
    let mut live = loop {
        let ev = c.next(WAIT).await.expect("the event");
        if ev["seq"] == json!(head) {
            break ev;
        }
    };
    assert_eq!(live["type"], "event");
    assert_eq!(live["topic"], json!(topic));
    let live = live.as_object_mut().unwrap();
    live.remove("type");
    live.remove("topic");
    assert_eq!(Value::Object(live.clone()), record);
    let doc = s.get("/openapi.json", None).await.expect(200);
    let schema = &doc.body["components"]["schemas"]["LiveEvent"];
    assert!(schema.is_object(), "LiveEvent in the OpenAPI document");
}

/// Commits of one workspace run concurrently (nothing makes a writer wait for another), yet
/// a subscriber receives every one of their events once, in strictly increasing `seq`.
async fn concurrent_writers_events_arrive_once_in_seq_order(s: TestServer) {
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let momentum_tests::Ws {
        token: alice,
        ws,
        team,
        ..
    } = momentum_tests::workspace(&s, "Busy").await;
    let (bob, bob_id, bob_email) = sign_up(&s, "bob").await;
    seed_member(&s, &ws, &bob_id, &bob_email, Role::Member).await;
    let mut b = WsClient::connect(&s, Some(&bob)).await.unwrap();
    let sub = b
        .request("subscribe", json!({"topics": [format!("issues:{ws}")]}))
        .await;
    assert_eq!(sub["success"], true, "{sub}");

    let writers = (0..WRITERS).map(|w| {
        let (s, alice, team) = (&s, &alice, &team);
        async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let issue = s
                    .post(
                        "/issues",
                        Some(alice),
                        &json!({"team_id": team, "title": format!("w{w} i{i}")}),
                    )
                    .await
                    .expect(201);
                ids.push(issue.data()["id"].as_str().unwrap().to_owned());
            }
            ids
        }
    });
    let mut expected: Vec<String> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    expected.sort();

    let mut seqs = Vec::new();
    let mut ids = Vec::new();
    while ids.len() < expected.len() {
        let ev = b.next(WAIT).await.expect("every creation event");
        if ev["type"] != "event" || ev["event"] != "issue.created" {
            continue;
        }
        seqs.push(ev["seq"].as_i64().unwrap());
        ids.push(ev["data"]["id"].as_str().unwrap().to_owned());
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing seq: {seqs:?}"
    );
    ids.sort();
    assert_eq!(ids, expected, "each created issue's event, once");
}

on_every_store!(
    concurrent_writers_events_arrive_once_in_seq_order,
    live_events_are_feed_records_with_their_topic,
    handshake_requires_a_valid_token,
    subscribers_get_ordered_events_and_outsiders_nothing,
    resume_with_sync_gets_exactly_the_missed_changes,
    gone_connections_are_deleted_and_the_rest_still_served,
    commands_answer_and_fail_cleanly,
);

/// The Lambdas' gateway client (aws-sdk-apigatewaymanagement) against the shim's
/// `@connections` emulation: delivery and 410 Gone handling work over the SDK path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_gateway_delivers_and_forgets_gone_connections() {
    let mut config = momentum_shared::config::AppConfig::for_tests();
    config.expose_storage_calls = true;
    let state = momentum_shared::AppState::with_store(
        config,
        std::sync::Arc::new(momentum_shared::storage::embedded::EmbeddedStore::in_memory()),
        std::sync::Arc::new(momentum_shared::clock::SystemClock),
    );
    let server = TestServer::serve_with(state, local::Gateway::Sdk).await;
    gone_connections_are_deleted_and_the_rest_still_served(server).await;
}
