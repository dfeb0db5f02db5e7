//! Revocation reaches sockets: an ended session (logout, password change, refresh-token
//! reuse) or an ended membership closes its connections, and every outlet re-checks the
//! session and the membership at use (fan-out, presence, stats, send, broadcast, commands).

use std::time::Duration;

use momentum_shared::kernel::keys;
use momentum_shared::storage::{Table, WriteOp};
use momentum_tests::{PASSWORD, TestServer, User, WsClient, on_every_store, world};
use serde_json::{Value, json};

/// Generous: a closed socket is seen as soon as the server closes it; this only bounds a
/// failing run.
const WAIT: Duration = Duration::from_secs(20);

/// A second session of `u`: (access token, refresh token).
async fn login(s: &TestServer, u: &User) -> (String, String) {
    let r = s
        .post(
            "/auth/login",
            None,
            &json!({"email": u.email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    (
        r.data()["access_token"].as_str().unwrap().to_owned(),
        r.data()["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn subscribed(s: &TestServer, token: &str, ws: &str) -> WsClient {
    let mut c = WsClient::connect(s, Some(token)).await.unwrap();
    let sub = c
        .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;
    assert_eq!(sub["success"], true, "{sub}");
    c
}

/// Commits a change every member sees; returns its seq.
async fn touch(s: &TestServer, token: &str, ws: &str, what: &str) -> i64 {
    s.put(
        &format!("/workspaces/{ws}"),
        Some(token),
        &json!({"description": what}),
    )
    .await
    .expect(200);
    let page = s
        .get(
            &format!("/workspaces/{ws}/changes?since=0&limit=1000"),
            Some(token),
        )
        .await
        .expect(200);
    page.data()["last_seq"].as_i64().unwrap()
}

/// Waits for the event with `seq` on `c` (other messages are skipped).
async fn event(c: &mut WsClient, seq: i64) -> Value {
    loop {
        let m = c
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("no event {seq}"));
        if m["type"] == "event" && m["seq"] == json!(seq) {
            return m;
        }
    }
}

async fn ended_sessions_close_their_sockets(s: TestServer) {
    let w = world(&s).await;
    let ws = w.ws.clone();
    let (second, _) = login(&s, &w.member).await;
    let (third, third_refresh) = login(&s, &w.member).await;
    let mut first_socket = subscribed(&s, &w.member.token, &ws).await;
    let mut second_socket = subscribed(&s, &second, &ws).await;
    let mut third_socket = subscribed(&s, &third, &ws).await;

    // Logout ends that session's socket only.
    s.post("/auth/logout", w.member.t(), &json!({}))
        .await
        .expect(200);
    assert!(
        first_socket.closed_within(WAIT).await,
        "logout: socket open"
    );
    let seq = touch(&s, &w.owner.token, &ws, "after logout").await;
    assert_eq!(event(&mut second_socket, seq).await["seq"], json!(seq));

    // A refresh token presented twice revokes its session: its socket closes.
    let fresh = s
        .post(
            "/auth/refresh",
            None,
            &json!({"refresh_token": third_refresh}),
        )
        .await
        .expect(200);
    assert!(fresh.data()["refresh_token"].is_string());
    s.post(
        "/auth/refresh",
        None,
        &json!({"refresh_token": third_refresh}),
    )
    .await
    .expect(401);
    assert!(third_socket.closed_within(WAIT).await, "reuse: socket open");

    // A password change ends every session; the new pair connects again.
    let changed = s
        .put(
            "/auth/password",
            Some(&second),
            &json!({"current_password": PASSWORD, "new_password": "another horse battery"}),
        )
        .await
        .expect(200);
    assert!(
        second_socket.closed_within(WAIT).await,
        "password change: socket open"
    );
    let renewed = changed.data()["access_token"].as_str().unwrap().to_owned();
    let mut again = subscribed(&s, &renewed, &ws).await;
    let seq = touch(&s, &w.owner.token, &ws, "after the password change").await;
    assert_eq!(event(&mut again, seq).await["seq"], json!(seq));
}

async fn a_removed_member_is_cut_off(s: TestServer) {
    let w = world(&s).await;
    let ws = w.ws.clone();
    let mut member = subscribed(&s, &w.member.token, &ws).await;
    let mut admin = subscribed(&s, &w.admin.token, &ws).await;
    s.call(
        reqwest::Method::DELETE,
        &format!("/workspaces/{ws}/members/{}", w.member.id),
        w.owner.t(),
        None,
    )
    .await
    .expect(200);
    assert!(member.closed_within(WAIT).await, "removed: socket open");
    let seq = touch(&s, &w.owner.token, &ws, "after the removal").await;
    event(&mut admin, seq).await;
    assert!(
        member
            .received()
            .iter()
            .all(|m| m["seq"].as_i64().is_none_or(|n| n < seq)),
        "the removed member got a later event"
    );
}

async fn deleting_the_workspace_closes_its_sockets(s: TestServer) {
    let w = world(&s).await;
    let mut member = subscribed(&s, &w.member.token, &w.ws).await;
    let mut outsider = subscribed(&s, &w.outsider.token, &w.other_ws).await;
    s.call(
        reqwest::Method::DELETE,
        &format!("/workspaces/{}", w.ws),
        w.owner.t(),
        None,
    )
    .await
    .expect(200);
    assert!(member.closed_within(WAIT).await, "member's socket open");
    // Another workspace's connection is untouched: it still gets its own events.
    let seq = touch(&s, &w.outsider.token, &w.other_ws, "still here").await;
    assert_eq!(event(&mut outsider, seq).await["seq"], json!(seq));
}

/// With the session gone from storage but its socket still open (the closing path not
/// taken), every outlet still refuses it: fan-out skips it, presence and stats do not count
/// it, send and broadcast do not reach it, and its next command is refused and closes it.
async fn a_revoked_session_is_refused_at_use(s: TestServer) {
    let w = world(&s).await;
    let ws = w.ws.clone();
    for u in [&w.member, &w.owner] {
        s.post("/workspaces/switch", u.t(), &json!({"workspace_id": ws}))
            .await
            .expect(200);
    }
    let mut member = subscribed(&s, &w.member.token, &ws).await;
    let mut owner = subscribed(&s, &w.owner.token, &ws).await;
    // The owner's arrival, announced while the member's session was still valid.
    let joined = member.next(WAIT).await.expect("user_joined");
    assert_eq!(joined["message_type"], "user_joined", "{joined}");
    let online = s
        .get(&format!("/ws/online?workspace_id={ws}"), w.owner.t())
        .await
        .expect(200);
    assert_eq!(online.data()["users"].as_array().unwrap().len(), 2);

    let session = s
        .state
        .auth
        .authenticate(&w.member.token)
        .expect("a valid token")
        .session_id;
    s.state
        .store
        .transact(vec![WriteOp::Delete {
            table: Table::Main,
            key: keys::session(&w.member.id, &session),
            condition: None,
        }])
        .await
        .unwrap();

    let first = touch(&s, &w.owner.token, &ws, "one").await;
    let second = touch(&s, &w.owner.token, &ws, "two").await;
    // The shim delivers records one after another: once the owner has the second, every
    // post of the first has been queued on the member's socket too.
    event(&mut owner, second).await;

    let online = s
        .get(&format!("/ws/online?workspace_id={ws}"), w.owner.t())
        .await
        .expect(200);
    let users: Vec<&Value> = online.data()["users"].as_array().unwrap().iter().collect();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["user_id"], json!(w.owner.id));
    let stats = s
        .get(&format!("/ws/stats?workspace_id={ws}"), w.owner.t())
        .await
        .expect(200);
    assert_eq!(stats.data()["connections"], 1);
    assert_eq!(stats.data()["users_online"], 1);
    assert_eq!(stats.data()["workspace_subscribers"], 1);
    let sent = s
        .post(
            "/ws/send",
            w.owner.t(),
            &json!({"workspace_id": ws, "user_id": w.member.id, "message": {"text": "hi"}}),
        )
        .await
        .expect(200);
    assert_eq!(sent.data()["delivered"], 0);
    let all = s
        .post(
            "/ws/broadcast",
            w.owner.t(),
            &json!({"workspace_id": ws, "message": {"text": "all"}}),
        )
        .await
        .expect(200);
    assert_eq!(all.data()["delivered"], 1);

    let info = member.request("get_connection_info", json!({})).await;
    assert_eq!(info["success"], false, "{info}");
    assert_eq!(info["error"]["code"], "UNAUTHORIZED");
    assert!(
        member.closed_within(WAIT).await,
        "refused command: socket open"
    );
    let leaked: Vec<&Value> = member
        .received()
        .iter()
        .filter(|m| m["type"] != "response")
        .collect();
    assert!(
        leaked.is_empty(),
        "a revoked session received {leaked:?} (events {first}, {second})"
    );
}

on_every_store!(
    ended_sessions_close_their_sockets,
    a_removed_member_is_cut_off,
    deleting_the_workspace_closes_its_sockets,
    a_revoked_session_is_refused_at_use,
);
