//! Personal API tokens through the shim over real HTTP, on the embedded store and on DynamoDB
//! (moto): created, listed and deleted by their owner; accepted as `Authorization: Bearer`
//! within their scopes and workspace; refused at once when revoked, expired or when the
//! owner leaves the workspace; refused on account routes and WebSocket; listed and revoked
//! by workspace admins; rate limited per token; described in the OpenAPI document.

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::clock::ManualClock;
use momentum_shared::kernel::access::{Role, is_token_id, new_token_id, token_hash};
use momentum_shared::kernel::keys;
use momentum_shared::openapi::TOKEN_ID_PATTERN;
use momentum_shared::ratelimit::{Rate, RateLimitConfig};
use momentum_shared::storage::Table;
use momentum_tests::{
    Backend, Reply, TestServer, User, WsClient, backend_store, new_member, on_every_store,
    on_every_store_with_clock, user, world,
};
use serde_json::{Value, json};

/// A token of `who`'s: `(id, token string)`.
async fn create_token(s: &TestServer, who: &User, body: Value) -> (String, String) {
    let r = s.post("/auth/tokens", who.t(), &body).await.expect(201);
    let d = r.data();
    (
        d["id"].as_str().unwrap().to_owned(),
        d["token"].as_str().unwrap().to_owned(),
    )
}

async fn read_token(s: &TestServer, who: &User) -> String {
    create_token(s, who, json!({"name": "reader", "scopes": ["read"]}))
        .await
        .1
}

async fn write_token(s: &TestServer, who: &User) -> String {
    create_token(s, who, json!({"name": "writer", "scopes": ["write"]}))
        .await
        .1
}

async fn my_tokens(s: &TestServer, who: &User) -> Vec<Value> {
    let r = s.get("/auth/tokens", who.t()).await.expect(200);
    r.data().as_array().unwrap().clone()
}

async fn new_workspace(s: &TestServer, who: &User, name: &str) -> Value {
    s.post("/workspaces", who.t(), &json!({"name": name}))
        .await
        .expect(201)
        .data()
        .clone()
}

async fn new_issue(s: &TestServer, token: &str, team_id: &str, title: &str) -> Reply {
    s.post(
        "/issues",
        Some(token),
        &json!({"team_id": team_id, "title": title}),
    )
    .await
}

async fn create_list_delete_with_the_secret_shown_once(s: TestServer) {
    let u = user(&s, "maker").await;
    let r = s
        .post(
            "/auth/tokens",
            u.t(),
            &json!({"name": "CI", "scopes": ["read", "write"], "expires_in_days": 30}),
        )
        .await
        .expect(201);
    let created = r.data().clone();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mtm_pat_"), "{token}");
    // Prefix, token id and user id, 256 random bits as 64 hex characters.
    assert!(token.len() >= 8 + 32 + 1 + 32 + 1 + 64, "{token}");
    let prefix = created["prefix"].as_str().unwrap();
    assert!(token.starts_with(prefix), "{prefix} of {token}");
    assert_eq!(created["scopes"], json!(["read", "write"]));
    assert!(created["expires_at"].is_string(), "{created}");

    let listed = my_tokens(&s, &u).await;
    assert_eq!(listed.len(), 1);
    let item = &listed[0];
    assert_eq!(item["id"], json!(id));
    assert_eq!(item["name"], json!("CI"));
    assert_eq!(item["prefix"], json!(prefix));
    assert!(item["created_at"].is_string() && item["last_used_at"].is_null());
    assert!(item.get("token").is_none(), "{item}");
    assert!(!item.to_string().contains(&token[prefix.len()..]), "{item}");

    // At rest: the hash, never the token.
    let stored = s
        .state
        .store
        .get(Table::Main, &keys::api_token(&u.id, &id))
        .await
        .unwrap()
        .expect("token item");
    let raw = serde_json::to_string(&stored).unwrap();
    assert!(!raw.contains(&token[prefix.len()..]), "{raw}");
    assert_eq!(stored["hash"], json!(token_hash(&token)));

    s.delete(&format!("/auth/tokens/{id}"), u.t())
        .await
        .expect(200);
    assert!(my_tokens(&s, &u).await.is_empty());
    s.delete(&format!("/auth/tokens/{id}"), u.t())
        .await
        .expect(404);
    s.delete("/auth/tokens/not-a-token", u.t())
        .await
        .expect(404);

    // Bad input names its field.
    for (body, field) in [
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["admin"]}), "scopes"),
        (json!({"name": " ", "scopes": ["read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["read"], "expires_in_days": 0}),
            "expires_in_days",
        ),
    ] {
        let r = s.post("/auth/tokens", u.t(), &body).await.expect(400);
        assert!(
            r.error_field().is_some_and(|f| f.starts_with(field)),
            "{body}: {}",
            r.body
        );
    }
}

async fn tokens_act_within_their_scopes(s: TestServer) {
    let w = world(&s).await;
    let writer = write_token(&s, &w.member).await;
    let reader = read_token(&s, &w.member).await;
    let ws = format!("/workspaces/{}", w.ws);

    s.get(&ws, Some(&writer)).await.expect(200);
    s.get(&ws, Some(&reader)).await.expect(200);
    new_issue(&s, &writer, &w.team_id, "by a write token")
        .await
        .expect(201);
    let refused = new_issue(&s, &reader, &w.team_id, "by a read token")
        .await
        .expect(403);
    assert_eq!(refused.error_code(), "FORBIDDEN");
    // The token cannot do more than its user's role: a member may not rename the workspace.
    s.put(&ws, Some(&writer), &json!({"name": "Renamed"}))
        .await
        .expect(403);
    // Used tokens show when they were used.
    let listed = my_tokens(&s, &w.member).await;
    assert!(
        listed.iter().all(|t| t["last_used_at"].is_string()),
        "{listed:?}"
    );

    // Storage calls at the floor: a token costs what a JWT costs (the token item replaces
    // the session item in the authorization batch). The calls above recorded the use.
    let jwt = s.get(&ws, w.member.t()).await.expect(200);
    let tok = s.get(&ws, Some(&reader)).await.expect(200);
    assert_eq!(tok.storage_calls(), jwt.storage_calls());
    let by_jwt = new_issue(&s, &w.member.token, &w.team_id, "jwt")
        .await
        .expect(201);
    let by_token = new_issue(&s, &writer, &w.team_id, "token")
        .await
        .expect(201);
    assert_eq!(by_token.storage_calls(), by_jwt.storage_calls());

    // A garbled token is a 401, like a garbled JWT.
    let (head, last) = writer.split_at(writer.len() - 1);
    let garbled = format!("{head}{}", if last == "0" { "1" } else { "0" });
    s.get(&ws, Some(&garbled)).await.expect(401);
    s.get(&ws, Some("mtm_pat_nonsense")).await.expect(401);
}

async fn a_restricted_token_acts_in_its_workspace_only(s: TestServer) {
    let u = user(&s, "twoplaces").await;
    let a = new_workspace(&s, &u, "A").await;
    let b = new_workspace(&s, &u, "B").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (_, token) = create_token(
        &s,
        &u,
        json!({"name": "A only", "scopes": ["write"], "workspace_id": a_id}),
    )
    .await;
    s.get(&format!("/workspaces/{a_id}"), Some(&token))
        .await
        .expect(200);
    s.get(&format!("/workspaces/{b_id}"), Some(&token))
        .await
        .expect(404);
    let team_b = b["default_team"]["id"].as_str().unwrap();
    new_issue(&s, &token, team_b, "not here").await.expect(404);
    let team_a = a["default_team"]["id"].as_str().unwrap();
    new_issue(&s, &token, team_a, "here").await.expect(201);
    // Its current workspace is its own, whatever the user's is (B, created last).
    let current = s.get("/workspaces/current", Some(&token)).await.expect(200);
    assert_eq!(current.data()["id"], json!(a_id));
    // Account-wide requests are outside its workspace.
    s.get("/workspaces", Some(&token)).await.expect(403);
    s.post("/workspaces", Some(&token), &json!({"name": "C"}))
        .await
        .expect(403);
    // A restriction to a workspace the user is not in is refused at creation.
    let other = user(&s, "stranger").await;
    s.post(
        "/auth/tokens",
        other.t(),
        &json!({"name": "x", "scopes": ["read"], "workspace_id": a_id}),
    )
    .await
    .expect(404);
}

async fn an_expired_token_is_refused(s: TestServer, clock: ManualClock) {
    let u = user(&s, "expiring").await;
    let ws = new_workspace(&s, &u, "Soon").await;
    let path = format!("/workspaces/{}", ws["id"].as_str().unwrap());
    let (_, token) = create_token(
        &s,
        &u,
        json!({"name": "a day", "scopes": ["read"], "expires_in_days": 1}),
    )
    .await;
    s.get(&path, Some(&token)).await.expect(200);
    clock.advance_secs(86_400 - 60);
    s.get(&path, Some(&token)).await.expect(200);
    clock.advance_secs(60);
    let r = s.get(&path, Some(&token)).await.expect(401);
    assert_eq!(r.error_code(), "UNAUTHORIZED");
}

async fn a_revoked_token_is_refused_on_the_next_request(s: TestServer) {
    let u = user(&s, "revoker").await;
    let ws = new_workspace(&s, &u, "Gone").await;
    let path = format!("/workspaces/{}", ws["id"].as_str().unwrap());
    let (id, token) = create_token(&s, &u, json!({"name": "short", "scopes": ["read"]})).await;
    s.get(&path, Some(&token)).await.expect(200);
    s.delete(&format!("/auth/tokens/{id}"), u.t())
        .await
        .expect(200);
    let r = s.get(&path, Some(&token)).await.expect(401);
    assert_eq!(r.error_code(), "UNAUTHORIZED");
}

async fn a_removed_members_tokens_stop_at_once(s: TestServer) {
    let w = world(&s).await;
    let unrestricted = write_token(&s, &w.member).await;
    let (_, restricted) = create_token(
        &s,
        &w.member,
        json!({"name": "acme", "scopes": ["read"], "workspace_id": w.ws}),
    )
    .await;
    let path = format!("/workspaces/{}", w.ws);
    s.get(&path, Some(&unrestricted)).await.expect(200);
    s.get(&path, Some(&restricted)).await.expect(200);
    s.delete(
        &format!("/workspaces/{}/members/{}", w.ws, w.member.id),
        w.owner.t(),
    )
    .await
    .expect(200);
    s.get(&path, Some(&unrestricted)).await.expect(404);
    s.get(&path, Some(&restricted)).await.expect(404);
    new_issue(&s, &unrestricted, &w.team_id, "after removal")
        .await
        .expect(404);
}

async fn account_routes_and_websocket_refuse_tokens(s: TestServer) {
    let u = user(&s, "guarded").await;
    let token = write_token(&s, &u).await;
    let t = Some(token.as_str());
    let password =
        json!({"current_password": momentum_tests::PASSWORD, "new_password": "another long one"});
    for r in [
        s.put("/auth/password", t, &password).await,
        s.post(
            "/auth/tokens",
            t,
            &json!({"name": "more", "scopes": ["read"]}),
        )
        .await,
        s.get("/auth/tokens", t).await,
        s.post("/auth/logout", t, &json!({})).await,
        s.get("/auth/profile", t).await,
        s.put("/auth/profile", t, &json!({"bio": "changed"})).await,
        s.post(
            "/workspaces/switch",
            t,
            &json!({"workspace_id": uuid::Uuid::now_v7().to_string()}),
        )
        .await,
    ] {
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
        assert_eq!(r.error_code(), "FORBIDDEN", "{}", r.body);
    }
    // The password, the session and the token list are unchanged.
    s.get("/auth/profile", u.t()).await.expect(200);
    assert_eq!(my_tokens(&s, &u).await.len(), 1);
    s.post(
        "/auth/login",
        None,
        &json!({"email": u.email, "password": momentum_tests::PASSWORD}),
    )
    .await
    .expect(200);
    // Sockets belong to sessions: a token cannot open one.
    assert_eq!(WsClient::connect(&s, t).await.err(), Some(401));
}

async fn admins_list_and_revoke_tokens_acting_in_their_workspace(s: TestServer) {
    let w = world(&s).await;
    let (restricted_id, restricted) = create_token(
        &s,
        &w.member,
        json!({"name": "acme bot", "scopes": ["write"], "workspace_id": w.ws}),
    )
    .await;
    let (everywhere_id, everywhere) =
        create_token(&s, &w.member, json!({"name": "mine", "scopes": ["read"]})).await;
    let own = new_workspace(&s, &w.member, "Member's own").await;
    let own_path = format!("/workspaces/{}", own["id"].as_str().unwrap());
    let path = format!("/workspaces/{}", w.ws);
    let list_path = format!("/workspaces/{}/tokens", w.ws);
    let ids = |r: &Reply| -> Vec<String> {
        let mut v: Vec<String> = r.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };

    // The restricted token is listed from its creation; the unrestricted one once used here.
    let listed = s.get(&list_path, w.admin.t()).await.expect(200);
    assert_eq!(ids(&listed), vec![restricted_id.clone()]);
    s.get(&path, Some(&everywhere)).await.expect(200);
    let listed = s.get(&list_path, w.admin.t()).await.expect(200);
    let mut both = vec![restricted_id.clone(), everywhere_id.clone()];
    both.sort();
    assert_eq!(ids(&listed), both);
    for t in listed.data()["items"].as_array().unwrap() {
        assert_eq!(t["user_id"], json!(w.member.id));
        assert!(t.get("token").is_none(), "{t}");
        assert_eq!(t["blocked"], json!(false));
    }
    assert!(!listed.body.to_string().contains(&restricted[20..]));
    // Only admins and owners.
    s.get(&list_path, w.member.t()).await.expect(403);
    s.get(&list_path, w.guest.t()).await.expect(403);
    s.get(&list_path, w.outsider.t()).await.expect(404);
    s.get(&list_path, w.owner.t()).await.expect(200);
    s.delete(&format!("{list_path}/{restricted_id}"), w.member.t())
        .await
        .expect(403);

    // Revoking the restricted token deletes it: it works nowhere.
    let r = s
        .delete(&format!("{list_path}/{restricted_id}"), w.admin.t())
        .await
        .expect(200);
    assert_eq!(r.data()["deleted"], json!(true));
    s.get(&path, Some(&restricted)).await.expect(401);
    // Revoking the unrestricted one stops it here; the member's own workspace is theirs.
    let r = s
        .delete(&format!("{list_path}/{everywhere_id}"), w.admin.t())
        .await
        .expect(200);
    assert_eq!(r.data()["deleted"], json!(false));
    s.get(&path, Some(&everywhere)).await.expect(403);
    s.get(&own_path, Some(&everywhere)).await.expect(200);
    let listed = s.get(&list_path, w.admin.t()).await.expect(200);
    assert_eq!(ids(&listed), vec![everywhere_id.clone()]);
    assert_eq!(listed.data()["items"][0]["blocked"], json!(true));
    let mine: Vec<String> = my_tokens(&s, &w.member)
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mine, vec![everywhere_id.clone()]);
    // Nothing to revoke: 404.
    s.delete(&format!("{list_path}/{restricted_id}"), w.admin.t())
        .await
        .expect(404);
    s.delete(&format!("{list_path}/zz"), w.admin.t())
        .await
        .expect(404);
    // Deleted by its owner, it leaves the workspace's list too.
    s.delete(&format!("/auth/tokens/{everywhere_id}"), w.member.t())
        .await
        .expect(200);
    let listed = s.get(&list_path, w.admin.t()).await.expect(200);
    assert!(ids(&listed).is_empty(), "{}", listed.body);
}

/// `Idempotency-Key` replays are scoped to the credential's owner before the handler runs:
/// a forged token naming a user's id must not replay (or claim) that user's keys.
async fn a_forged_token_never_replays_a_users_idempotent_response(s: TestServer) {
    let u = user(&s, "idem").await;
    let post = |token: String| {
        let req = s
            .http
            .post(format!("{}/workspaces", s.base))
            .bearer_auth(token)
            .header("idempotency-key", "same-key")
            .json(&json!({"name": "Once"}));
        async move { Reply::read(req.send().await.expect("request")).await }
    };
    post(u.token.clone()).await.expect(201);
    let user_hex = uuid::Uuid::parse_str(&u.id).unwrap().simple().to_string();
    let forged = format!("mtm_pat_{}_{user_hex}_{}", new_token_id(), "0".repeat(64));
    let r = post(forged).await.expect(401);
    assert!(r.headers.get("idempotent-replayed").is_none());
    // A real token of the user's has keys of its own too: it creates, it does not replay.
    let token = write_token(&s, &u).await;
    let r = post(token).await.expect(201);
    assert!(r.headers.get("idempotent-replayed").is_none());
}

async fn the_openapi_document_describes_the_token_scheme(s: TestServer) {
    let doc = s.get("/openapi.json", None).await.expect(200).body;
    let scheme = &doc["components"]["securitySchemes"]["api_token"];
    assert_eq!(scheme["type"], json!("http"), "{scheme}");
    assert_eq!(scheme["scheme"], json!("bearer"), "{scheme}");
    let security = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no security"))
            .iter()
            .flat_map(|s| s.as_object().unwrap().keys().cloned())
            .collect()
    };
    assert_eq!(security("/workspaces/{id}", "get"), ["bearer", "api_token"]);
    assert_eq!(security("/issues", "post"), ["bearer", "api_token"]);
    assert_eq!(
        security("/workspaces/{id}/tokens", "get"),
        ["bearer", "api_token"]
    );
    for (path, method) in [
        ("/auth/password", "put"),
        ("/auth/tokens", "post"),
        ("/auth/tokens", "get"),
        ("/auth/tokens/{id}", "delete"),
    ] {
        assert_eq!(security(path, method), ["bearer"], "{method} {path}");
    }
    // Token ids have their exact shape, so fuzzers and clients know what can name one.
    let pattern = |path: &str, name: &str| -> String {
        doc["paths"][path]["delete"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == json!(name))
            .unwrap_or_else(|| panic!("{name} of {path}"))["schema"]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("no pattern on {name} of {path}"))
            .to_owned()
    };
    assert_eq!(pattern("/auth/tokens/{id}", "id"), TOKEN_ID_PATTERN);
    assert_eq!(
        pattern("/workspaces/{id}/tokens/{token_id}", "token_id"),
        TOKEN_ID_PATTERN
    );
    assert!(is_token_id(&new_token_id()));
}

on_every_store!(
    create_list_delete_with_the_secret_shown_once,
    tokens_act_within_their_scopes,
    a_restricted_token_acts_in_its_workspace_only,
    a_revoked_token_is_refused_on_the_next_request,
    a_removed_members_tokens_stop_at_once,
    account_routes_and_websocket_refuse_tokens,
    admins_list_and_revoke_tokens_acting_in_their_workspace,
    a_forged_token_never_replays_a_users_idempotent_response,
    the_openapi_document_describes_the_token_scheme,
);

mod with_clock {
    use super::*;
    on_every_store_with_clock!(an_expired_token_is_refused);
}

/// Burst 3, then one a minute per token, on `backend` with a manual clock.
async fn limited_server(backend: Backend, test: &str) -> Option<(TestServer, ManualClock)> {
    let (mut config, store) = backend_store(backend, test).await?;
    config.expose_storage_calls = true;
    config.rate_limits = RateLimitConfig {
        api_token: Some(Rate::new(3, 1)),
        ..RateLimitConfig::off()
    };
    let clock = ManualClock::starting_now();
    let state = AppState::with_store(config, store, Arc::new(clock.clone()));
    Some((TestServer::serve(state).await, clock))
}

async fn requests_are_limited_per_token(s: TestServer, clock: ManualClock) {
    let w = world(&s).await;
    let path = format!("/workspaces/{}", w.ws);
    let first = read_token(&s, &w.member).await;
    let second = read_token(&s, &w.member).await;
    for _ in 0..3 {
        s.get(&path, Some(&first)).await.expect(200);
    }
    let r = s.get(&path, Some(&first)).await.expect(429);
    assert_eq!(r.error_code(), "RATE_LIMITED");
    assert_eq!(r.storage_calls(), 0, "refused by the local bucket");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another token of the same user, and the user's session, have budgets of their own.
    s.get(&path, Some(&second)).await.expect(200);
    let jwt = s.get(&path, w.member.t()).await.expect(200);
    // An admitted check adds its read and conditional put to the authorization batch.
    let warm = s.get(&path, Some(&second)).await.expect(200);
    assert_eq!(warm.storage_calls(), jwt.storage_calls() + 2);
    // Nor does another member's token pay for this one's flood.
    let other = new_member(&s, &w.ws, "another", Role::Member).await;
    let third = read_token(&s, &other).await;
    s.get(&path, Some(&third)).await.expect(200);
    clock.advance_secs(60);
    s.get(&path, Some(&first)).await.expect(200);
    s.get(&path, Some(&first)).await.expect(429);
}

mod rate_limit {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        let (s, clock) = limited_server(Backend::Embedded, "api_token_limit")
            .await
            .expect("embedded server");
        requests_are_limited_per_token(s, clock).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb() {
        if let Some((s, clock)) = limited_server(Backend::DynamoDb, "api_token_limit").await {
            requests_are_limited_per_token(s, clock).await;
        }
    }
}
