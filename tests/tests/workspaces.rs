//! Workspaces, members, switching, the change feed and Idempotency-Key, through the shim on
//! both stores.

use momentum_shared::kernel::access::Role;
use momentum_tests::{TestServer, id, on_every_store, seed_member, sign_up};
use serde_json::{Value, json};

async fn create_ws(s: &TestServer, token: &str, name: &str) -> Value {
    s.post("/workspaces", Some(token), &json!({"name": name}))
        .await
        .expect(201)
        .data()
        .clone()
}

async fn create_read_list_and_current(s: TestServer) {
    let (token, user_id, _) = sign_up(&s, "owner").await;
    let created = s
        .post(
            "/workspaces",
            Some(&token),
            &json!({"name": "Acme Robotics", "description": "We build robots"}),
        )
        .await
        .expect(201);
    let ws = created.data().clone();
    assert_eq!(ws["role"], "owner");
    assert_eq!(ws["url_key"], "acme-robotics");
    assert_eq!(ws["created_by"], json!(user_id));
    assert_eq!(ws["version"], 1);
    assert_eq!(ws["default_team"]["key"], "ACM");
    let states: Vec<&str> = ws["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "triage",
            "backlog",
            "unstarted",
            "started",
            "completed",
            "canceled"
        ]
    );
    assert_eq!(
        ws["default_workflow"]["default_state_id"],
        ws["states"][2]["id"]
    );

    let got = s
        .get(&format!("/workspaces/{}", id(&ws)), Some(&token))
        .await
        .expect(200);
    assert_eq!(got.data()["name"], "Acme Robotics");
    assert_eq!(
        got.storage_calls(),
        1,
        "session + membership + workspace in one batch"
    );

    let second = create_ws(&s, &token, "Acme Robotics").await;
    assert_ne!(
        second["url_key"], ws["url_key"],
        "a taken derived key gets a suffix"
    );
    assert!(
        second["url_key"]
            .as_str()
            .unwrap()
            .starts_with("acme-robotics-")
    );

    let mine = s.get("/workspaces", Some(&token)).await.expect(200);
    let ids: Vec<String> = mine.data().as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id(&ws)) && ids.contains(&id(&second)));
    assert!(mine.storage_calls() <= 2);

    // Creating switches to the new workspace; switching back works.
    let current = s.get("/workspaces/current", Some(&token)).await.expect(200);
    assert_eq!(current.data()["id"], second["id"]);
    s.post(
        "/workspaces/switch",
        Some(&token),
        &json!({"workspace_id": id(&ws)}),
    )
    .await
    .expect(200);
    let current = s.get("/workspaces/current", Some(&token)).await.expect(200);
    assert_eq!(current.data()["id"], ws["id"]);

    // A user with no workspace has no current one.
    let (lonely, _, _) = sign_up(&s, "lonely").await;
    s.get("/workspaces/current", Some(&lonely))
        .await
        .expect(404);
    assert_eq!(
        s.get("/workspaces", Some(&lonely)).await.expect(200).data(),
        &json!([])
    );
}

async fn validation_and_conflicts(s: TestServer) {
    let (token, _, _) = sign_up(&s, "owner").await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "A", "url_key": "Bad Key"}), "url_key"),
        (json!({"name": "A", "url_key": "-dash"}), "url_key"),
        (json!({"name": "A", "url_key": "ab"}), "url_key"),
        (json!({"name": "A", "id": "mine"}), "id"),
        (json!({"name": "A", "created_by": "someone"}), "created_by"),
        (json!({"name": 5}), "name"),
    ] {
        let r = s.post("/workspaces", Some(&token), &body).await.expect(400);
        assert_eq!(r.error_code(), "VALIDATION_ERROR", "{body}");
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    let key = format!("k-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    s.post(
        "/workspaces",
        Some(&token),
        &json!({"name": "A", "url_key": key}),
    )
    .await
    .expect(201);
    let taken = s
        .post(
            "/workspaces",
            Some(&token),
            &json!({"name": "B", "url_key": key}),
        )
        .await
        .expect(409);
    assert_eq!(taken.error_code(), "CONFLICT");
    assert_eq!(taken.error_field(), Some("url_key"));
    s.post(
        "/workspaces/switch",
        Some(&token),
        &json!({"workspace_id": "not-a-uuid"}),
    )
    .await
    .expect(404);
    s.get(
        "/workspaces/00000000-0000-0000-0000-000000000000",
        Some(&token),
    )
    .await
    .expect(404);
    let r = s.get("/workspaces/x/changes?since=-1", Some(&token)).await;
    assert!(r.status == 400 || r.status == 404, "{}", r.body);
}

async fn update_versions_and_url_keys(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let (admin, admin_id, admin_email) = sign_up(&s, "admin").await;
    let (member, member_id, member_email) = sign_up(&s, "member").await;
    let ws = create_ws(&s, &owner, "Versioned").await;
    let ws_id = id(&ws);
    seed_member(&s, &ws_id, &admin_id, &admin_email, Role::Admin).await;
    seed_member(&s, &ws_id, &member_id, &member_email, Role::Member).await;
    let path = format!("/workspaces/{ws_id}");

    let updated = s
        .put(
            &path,
            Some(&admin),
            &json!({"name": "Renamed", "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(updated.data()["version"], 2);
    let stale = s
        .put(&path, Some(&admin), &json!({"name": "Again", "version": 1}))
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    s.put(&path, Some(&member), &json!({"name": "Nope"}))
        .await
        .expect(403);
    let read = s.get(&path, Some(&member)).await.expect(200);
    assert_eq!(read.data()["name"], "Renamed");

    // Changing the url key frees the old one.
    let old_key = ws["url_key"].as_str().unwrap().to_owned();
    let new_key = format!("nk-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    s.put(&path, Some(&owner), &json!({"url_key": new_key}))
        .await
        .expect(200);
    s.post(
        "/workspaces",
        Some(&member),
        &json!({"name": "Taker", "url_key": old_key}),
    )
    .await
    .expect(201);
    let clash = s
        .post(
            "/workspaces",
            Some(&member),
            &json!({"name": "Clash", "url_key": new_key}),
        )
        .await
        .expect(409);
    assert_eq!(clash.error_field(), Some("url_key"));
    let cleared = s
        .put(&path, Some(&owner), &json!({"description": null}))
        .await
        .expect(200);
    assert_eq!(cleared.data()["description"], Value::Null);
}

async fn member_roles_and_removal(s: TestServer) {
    let (owner, owner_id, _) = sign_up(&s, "owner").await;
    let (admin, admin_id, admin_email) = sign_up(&s, "admin").await;
    let (guest, guest_id, guest_email) = sign_up(&s, "guest").await;
    let (member, member_id, member_email) = sign_up(&s, "member").await;
    let ws = id(&create_ws(&s, &owner, "Roles").await);
    seed_member(&s, &ws, &admin_id, &admin_email, Role::Admin).await;
    seed_member(&s, &ws, &guest_id, &guest_email, Role::Guest).await;
    seed_member(&s, &ws, &member_id, &member_email, Role::Member).await;
    let role_path = |u: &str| format!("/workspaces/{ws}/members/{u}");

    let listed = s
        .get(&format!("/workspaces/{ws}/members?limit=2"), Some(&guest))
        .await
        .expect(200);
    assert_eq!(listed.data()["items"].as_array().unwrap().len(), 2);
    let cursor = listed.data()["next_cursor"].as_str().unwrap().to_owned();
    let rest = s
        .get(
            &format!("/workspaces/{ws}/members?limit=2&cursor={cursor}"),
            Some(&guest),
        )
        .await
        .expect(200);
    assert_eq!(rest.data()["items"].as_array().unwrap().len(), 2);
    assert!(rest.data()["next_cursor"].is_null());
    s.get(&format!("/workspaces/{ws}/members?limit=500"), Some(&guest))
        .await
        .expect(400);
    let bad = s
        .get(&format!("/workspaces/{ws}/members?limit=abc"), Some(&guest))
        .await
        .expect(400);
    assert_eq!(bad.error_field(), Some("limit"));

    // Admins manage roles below owner; only owners grant owner.
    let promoted = s
        .put(
            &role_path(&guest_id),
            Some(&admin),
            &json!({"role": "member"}),
        )
        .await
        .expect(200);
    assert_eq!(promoted.data()["role"], "member");
    s.put(
        &role_path(&guest_id),
        Some(&admin),
        &json!({"role": "owner"}),
    )
    .await
    .expect(403);
    s.put(
        &role_path(&owner_id),
        Some(&admin),
        &json!({"role": "member"}),
    )
    .await
    .expect(403);
    s.put(
        &role_path(&admin_id),
        Some(&member),
        &json!({"role": "owner"}),
    )
    .await
    .expect(403);
    let bad_role = s
        .put(
            &role_path(&guest_id),
            Some(&owner),
            &json!({"role": "emperor"}),
        )
        .await
        .expect(400);
    assert_eq!(bad_role.error_field(), Some("role"));
    // The last owner cannot step down.
    s.put(
        &role_path(&owner_id),
        Some(&owner),
        &json!({"role": "admin"}),
    )
    .await
    .expect(409);
    s.put(
        &role_path(&admin_id),
        Some(&owner),
        &json!({"role": "owner"}),
    )
    .await
    .expect(200);
    s.put(
        &role_path(&owner_id),
        Some(&owner),
        &json!({"role": "admin"}),
    )
    .await
    .expect(200);

    // Removal: members leave, admins remove members, the removed lose access at once.
    s.delete(&role_path(&member_id), Some(&member))
        .await
        .expect(200);
    s.get(&format!("/workspaces/{ws}"), Some(&member))
        .await
        .expect(404);
    s.delete(&role_path(&guest_id), Some(&owner))
        .await
        .expect(200);
    s.get(&format!("/workspaces/{ws}"), Some(&guest))
        .await
        .expect(404);
    s.delete(&role_path(&guest_id), Some(&owner))
        .await
        .expect(404);
    let mine = s.get("/workspaces", Some(&guest)).await.expect(200);
    assert_eq!(
        mine.data(),
        &json!([]),
        "the user side of the membership is gone"
    );
}

async fn tenant_isolation(s: TestServer) {
    let (alice, _, _) = sign_up(&s, "alice").await;
    let (mallory, _, _) = sign_up(&s, "mallory").await;
    let ws = id(&create_ws(&s, &alice, "Private").await);
    create_ws(&s, &mallory, "Mallory's").await;
    let path = format!("/workspaces/{ws}");
    let hidden = s.get(&path, Some(&mallory)).await.expect(404);
    assert!(hidden.body["data"].is_null());
    s.put(&path, Some(&mallory), &json!({"name": "Pwned"}))
        .await
        .expect(404);
    s.delete(&path, Some(&mallory)).await.expect(404);
    s.get(&format!("{path}/members"), Some(&mallory))
        .await
        .expect(404);
    s.get(&format!("{path}/changes"), Some(&mallory))
        .await
        .expect(404);
    s.post(
        "/workspaces/switch",
        Some(&mallory),
        &json!({"workspace_id": ws}),
    )
    .await
    .expect(404);
    let intact = s.get(&path, Some(&alice)).await.expect(200);
    assert_eq!(intact.data()["name"], "Private");
    assert_eq!(intact.data()["version"], 1);
}

async fn change_feed_is_gapless_and_ordered(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = id(&create_ws(&s, &owner, "Feed").await);
    let mut users = Vec::new();
    for i in 0..8 {
        let (_, uid, email) = sign_up(&s, &format!("user{i}")).await;
        seed_member(&s, &ws, &uid, &email, Role::Guest).await;
        users.push(uid);
    }
    let initial = s
        .get(&format!("/workspaces/{ws}/changes?since=0"), Some(&owner))
        .await
        .expect(200);
    let events: Vec<&str> = initial.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "workspace.created",
            "workspace_member.created",
            "project_status.created",
            "project_status.created",
            "project_status.created",
            "project_status.created",
            "project_status.created",
            "team.created",
            "workflow.created"
        ]
    );
    let base = initial.data()["last_seq"].as_i64().unwrap();
    assert_eq!(base, 9);

    // Concurrent writers: every change gets its own number, none is skipped.
    let body = json!({"role": "member"});
    let paths: Vec<String> = users
        .iter()
        .map(|u| format!("/workspaces/{ws}/members/{u}"))
        .collect();
    let tasks: Vec<_> = paths
        .iter()
        .map(|path| s.put(path, Some(&owner), &body))
        .collect();
    for r in futures::future::join_all(tasks).await {
        r.expect(200);
    }
    let feed = s
        .get(
            &format!("/workspaces/{ws}/changes?since={base}"),
            Some(&owner),
        )
        .await
        .expect(200);
    let seqs: Vec<i64> = feed.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, ((base + 1)..=(base + 8)).collect::<Vec<_>>());
    let changed: std::collections::BTreeSet<String> = feed.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["entity_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(changed, users.iter().cloned().collect());

    let paged = s
        .get(
            &format!("/workspaces/{ws}/changes?since={base}&limit=3"),
            Some(&owner),
        )
        .await
        .expect(200);
    assert_eq!(paged.data()["has_more"], true);
    assert_eq!(paged.data()["last_seq"], base + 3);
    let tail = s
        .get(
            &format!("/workspaces/{ws}/changes?since={}", base + 8),
            Some(&owner),
        )
        .await
        .expect(200);
    assert_eq!(tail.data()["changes"], json!([]));
    assert_eq!(tail.data()["last_seq"], base + 8);
    let bad = s
        .get(&format!("/workspaces/{ws}/changes?limit=0"), Some(&owner))
        .await
        .expect(400);
    assert_eq!(bad.error_field(), Some("limit"));
}

async fn delete_is_owner_only_and_complete(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let (admin, admin_id, admin_email) = sign_up(&s, "admin").await;
    let ws = create_ws(&s, &owner, "Doomed").await;
    let ws_id = id(&ws);
    seed_member(&s, &ws_id, &admin_id, &admin_email, Role::Admin).await;
    let path = format!("/workspaces/{ws_id}");
    s.delete(&path, Some(&admin)).await.expect(403);
    s.delete(&path, Some(&owner)).await.expect(200);
    s.get(&path, Some(&owner)).await.expect(404);
    s.get(&path, Some(&admin)).await.expect(404);
    assert_eq!(
        s.get("/workspaces", Some(&admin)).await.expect(200).data(),
        &json!([])
    );
    // Its url key can be used again.
    s.post(
        "/workspaces",
        Some(&owner),
        &json!({"name": "Reborn", "url_key": ws["url_key"]}),
    )
    .await
    .expect(201);
}

async fn idempotency_key_replays_and_guards(s: TestServer) {
    let (token, _, _) = sign_up(&s, "owner").await;
    let key = uuid::Uuid::new_v4().to_string();
    let send = |body: Value| {
        let req = s
            .http
            .post(format!("{}/workspaces", s.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&body);
        async move { momentum_tests::Reply::read(req.send().await.unwrap()).await }
    };
    let first = send(json!({"name": "Once"})).await.expect(201);
    let again = send(json!({"name": "Once"})).await.expect(201);
    assert_eq!(
        first.data()["id"],
        again.data()["id"],
        "same resource, not a second one"
    );
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    let mine = s.get("/workspaces", Some(&token)).await.expect(200);
    assert_eq!(mine.data().as_array().unwrap().len(), 1);
    let other = send(json!({"name": "Different"})).await.expect(422);
    assert_eq!(other.error_code(), "UNPROCESSABLE_ENTITY");

    // A failed request does not burn its key.
    let key2 = uuid::Uuid::new_v4().to_string();
    let with_key = |body: Value| {
        let req = s
            .http
            .post(format!("{}/workspaces", s.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key2)
            .json(&body);
        async move { momentum_tests::Reply::read(req.send().await.unwrap()).await }
    };
    with_key(json!({"name": ""})).await.expect(400);
    with_key(json!({"name": "Second"})).await.expect(201);

    // Concurrent duplicates create one workspace.
    let key3 = uuid::Uuid::new_v4().to_string();
    let race = || {
        let req = s
            .http
            .post(format!("{}/workspaces", s.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key3)
            .json(&json!({"name": "Raced"}));
        async move { momentum_tests::Reply::read(req.send().await.unwrap()).await }
    };
    let (a, b) = tokio::join!(race(), race());
    assert!(a.status == 201 || b.status == 201, "{} {}", a.body, b.body);
    for r in [&a, &b] {
        assert!(r.status == 201 || r.status == 409, "{}", r.body);
    }
    let names: Vec<String> = s
        .get("/workspaces", Some(&token))
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "Raced").count(),
        1,
        "{names:?}"
    );

    let bad = s
        .http
        .post(format!("{}/workspaces", s.base))
        .bearer_auth(&token)
        .header("Idempotency-Key", "")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    let bad = momentum_tests::Reply::read(bad).await.expect(400);
    assert_eq!(bad.error_field(), Some("Idempotency-Key"));
}

on_every_store!(
    create_read_list_and_current,
    validation_and_conflicts,
    update_versions_and_url_keys,
    member_roles_and_removal,
    tenant_isolation,
    change_feed_is_gapless_and_ordered,
    delete_is_owner_only_and_complete,
    idempotency_key_replays_and_guards,
);
