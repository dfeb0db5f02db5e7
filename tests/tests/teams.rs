//! Black-box tests of teams and team members through the shim, on the embedded store and on
//! DynamoDB (moto).

use momentum_shared::kernel::access::Role;
use momentum_shared::kernel::keys;
use momentum_shared::storage::{Table, Update, WriteOp};
use momentum_tests::{TestServer, User, World, join, on_every_store, user, world};
use serde_json::{Value, json};

async fn create_team(s: &TestServer, w: &World, key: &str) -> Value {
    s.post(
        "/teams",
        w.admin.t(),
        &json!({"workspace_id": w.ws, "key": key, "name": format!("Team {key}")}),
    )
    .await
    .expect(201)
    .data()
    .clone()
}

fn events(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c["event"].as_str().unwrap().to_owned())
        .collect()
}

/// An admin creates a team: the key is upper-cased, the admin is its lead, it has a workflow
/// with the six default states; everyone in the workspace can read and list it.
async fn create_read_and_list(s: TestServer) {
    let w = world(&s).await;
    let before = w.last_seq(&s).await;
    let r = s
        .post(
            "/teams",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "key": " eng2 ", "name": "  Engineering ", "description": "Builds"}),
        )
        .await
        .expect(201);
    assert_eq!(
        r.storage_calls(),
        3,
        "create: authorize, counter read, transaction"
    );
    let team = r.data().clone();
    let id = team["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("team_"));
    assert_eq!(team["key"], "ENG2");
    assert_eq!(team["name"], "Engineering");
    assert_eq!(team["description"], "Builds");
    assert_eq!(team["workspace_id"], json!(w.ws));
    assert_eq!(team["version"], 1);
    assert_eq!(team["created_by"], json!(w.admin.id));
    assert_eq!(team["lead"]["user_id"], json!(w.admin.id));
    assert_eq!(team["lead"]["role"], "lead");
    let workflow = &team["workflow"];
    assert_eq!(team["workflow_id"], workflow["id"]);
    assert_eq!(workflow["team_id"], json!(id));
    let names: Vec<&str> = workflow["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Triage",
            "Backlog",
            "Todo",
            "In Progress",
            "Done",
            "Canceled"
        ]
    );
    let todo = &workflow["states"][2];
    assert_eq!(workflow["default_state_id"], todo["id"]);

    // The change log says what happened, on the team's topic.
    let log = w.changes_since(&s, before).await;
    let mut got = events(&log);
    got.sort();
    assert_eq!(
        got,
        ["team.created", "team_member.created", "workflow.created"]
    );
    for c in &log {
        assert!(
            c["topics"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("team:{id}"))),
            "{c}"
        );
    }

    // Anyone in the workspace reads it, in one storage call.
    for who in [&w.owner, &w.member, &w.guest] {
        let got = s.get(&format!("/teams/{id}"), who.t()).await.expect(200);
        assert_eq!(got.data()["key"], "ENG2");
        assert_eq!(got.storage_calls(), 1);
    }
    // And lists it with the default team, in two calls.
    let list = s
        .get(&format!("/teams?workspace_id={}", w.ws), w.guest.t())
        .await
        .expect(200);
    assert_eq!(list.storage_calls(), 2);
    let mut keys: Vec<&str> = list.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["ACM", "ENG2"]);
    // Pages of one.
    let first = s
        .get(
            &format!("/teams?workspace_id={}&limit=1", w.ws),
            w.guest.t(),
        )
        .await
        .expect(200);
    assert_eq!(first.data()["items"].as_array().unwrap().len(), 1);
    let cursor = first.data()["next_cursor"].as_str().unwrap().to_owned();
    let second = s
        .get(
            &format!("/teams?workspace_id={}&limit=1&cursor={cursor}", w.ws),
            w.guest.t(),
        )
        .await
        .expect(200);
    assert_eq!(second.data()["items"].as_array().unwrap().len(), 1);
    assert_ne!(
        second.data()["items"][0]["id"],
        first.data()["items"][0]["id"]
    );
    assert!(second.data()["next_cursor"].is_null());
    s.get(
        &format!("/teams?workspace_id={}&limit=0", w.ws),
        w.guest.t(),
    )
    .await
    .expect(400);

    // The team's members: its lead.
    let members = s
        .get(&format!("/teams/{id}/members"), w.guest.t())
        .await
        .expect(200);
    assert_eq!(members.storage_calls(), 2);
    assert_eq!(members.data()["items"][0]["user_id"], json!(w.admin.id));
}

/// Without `workspace_id`, create and list use the caller's current workspace; with none
/// at all they are a 400 on `workspace_id`.
async fn current_workspace_default(s: TestServer) {
    let w = world(&s).await;
    // The owner's current workspace is the one they created.
    let r = s
        .post("/teams", w.owner.t(), &json!({"key": "OPS", "name": "Ops"}))
        .await
        .expect(201);
    assert_eq!(r.data()["workspace_id"], json!(w.ws));
    let list = s.get("/teams", w.owner.t()).await.expect(200);
    assert_eq!(list.data()["items"].as_array().unwrap().len(), 2);
    // A user with no workspace at all.
    let loner = user(&s, "loner").await;
    let r = s
        .post("/teams", loner.t(), &json!({"key": "OPS", "name": "Ops"}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("workspace_id"));
    let r = s.get("/teams", loner.t()).await.expect(400);
    assert_eq!(r.error_field(), Some("workspace_id"));
}

/// Every invalid create is a 400 naming the field; a taken key is a 409 on `key`; nothing
/// is written by a refused request.
async fn create_validation(s: TestServer) {
    let w = world(&s).await;
    let before = w.last_seq(&s).await;
    let base = json!({"workspace_id": w.ws, "key": "WEB", "name": "Web"});
    let with = |field: &str, value: Value| {
        let mut b = base.clone();
        b[field] = value;
        b
    };
    let cases = [
        (with("key", json!("")), "key"),
        (with("key", json!("1AB")), "key"),
        (with("key", json!("ABCDEFGHIJK")), "key"),
        (with("key", json!("A-B")), "key"),
        (with("key", json!("ÄBC")), "key"),
        (with("key", json!(42)), "key"),
        (with("name", json!("   ")), "name"),
        (with("name", json!("x".repeat(101))), "name"),
        (with("description", json!("d".repeat(2001))), "description"),
        (with("color", json!("#FFFFFF")), "color"),
        (with("id", json!("team_forged")), "id"),
        (with("version", json!(7)), "version"),
        (json!({"workspace_id": w.ws, "name": "Web"}), "key"),
    ];
    for (body, field) in cases {
        let r = s.post("/teams", w.admin.t(), &body).await.expect(400);
        assert_eq!(r.error_code(), "VALIDATION_ERROR", "{body}");
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    // Ten characters is fine.
    create_team(&s, &w, "abcdefghij").await;
    // Keys are unique per workspace, whatever the case; the default team's too.
    create_team(&s, &w, "web").await;
    for key in ["WEB", "Web", "acm"] {
        let r = s
            .post("/teams", w.admin.t(), &with("key", json!(key)))
            .await
            .expect(409);
        assert_eq!(r.error_code(), "CONFLICT");
        assert_eq!(r.error_field(), Some("key"));
    }
    // Another workspace may use the same key.
    s.post(
        "/teams",
        w.outsider.t(),
        &json!({"workspace_id": w.other_ws, "key": "WEB", "name": "Web"}),
    )
    .await
    .expect(201);
    // (The refused creates drew change numbers too; they are skipped, not records.)
    let changes = w.changes_since(&s, before).await;
    assert_eq!(changes.len(), 6, "two teams, three changes each");
}

/// Members and guests may not create teams; outsiders do not see the workspace.
async fn create_requires_admin(s: TestServer) {
    let w = world(&s).await;
    let body = json!({"workspace_id": w.ws, "key": "NOPE", "name": "Nope"});
    for who in [&w.member, &w.guest] {
        let r = s.post("/teams", who.t(), &body).await.expect(403);
        assert_eq!(r.error_code(), "FORBIDDEN");
    }
    s.post("/teams", w.outsider.t(), &body).await.expect(404);
    s.post("/teams", None, &body).await.expect(401);
    s.get(&format!("/teams?workspace_id={}", w.ws), w.outsider.t())
        .await
        .expect(404);
    let list = s
        .get(&format!("/teams?workspace_id={}", w.ws), w.owner.t())
        .await
        .expect(200);
    assert_eq!(list.data()["items"].as_array().unwrap().len(), 1);
}

/// Updating a team: partial changes, the version guard, key swaps that free the old key,
/// and the same validation as create.
async fn update_team(s: TestServer) {
    let w = world(&s).await;
    let team = create_team(&s, &w, "APP").await;
    let id = team["id"].as_str().unwrap();
    let path = format!("/teams/{id}");

    let r = s
        .put(
            &path,
            w.admin.t(),
            &json!({"name": "Apps", "description": "Mobile", "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(r.storage_calls(), 3);
    assert_eq!(r.data()["name"], "Apps");
    assert_eq!(r.data()["key"], "APP");
    assert_eq!(r.data()["description"], "Mobile");
    assert_eq!(r.data()["version"], 2);
    // A stale version is refused and changes nothing.
    let stale = s
        .put(&path, w.admin.t(), &json!({"name": "Stale", "version": 1}))
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    assert_eq!(
        s.get(&path, w.guest.t()).await.expect(200).data()["name"],
        "Apps"
    );
    // null clears the description; absent fields stay.
    let r = s
        .put(&path, w.owner.t(), &json!({"description": null}))
        .await
        .expect(200);
    assert!(r.data()["description"].is_null());
    assert_eq!(r.data()["name"], "Apps");
    assert_eq!(r.data()["version"], 3);

    // Key change: the new key is taken now, the old one free.
    let r = s
        .put(&path, w.admin.t(), &json!({"key": "mob"}))
        .await
        .expect(200);
    assert_eq!(r.data()["key"], "MOB");
    create_team(&s, &w, "APP").await;
    let taken = s
        .put(&path, w.admin.t(), &json!({"key": "app"}))
        .await
        .expect(409);
    assert_eq!(taken.error_field(), Some("key"));
    let r = s
        .post(
            "/teams",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "key": "MOB", "name": "Dup"}),
        )
        .await
        .expect(409);
    assert_eq!(r.error_field(), Some("key"));

    for (body, field) in [
        (json!({"key": "9X"}), "key"),
        (json!({"name": ""}), "name"),
        (json!({"workflow_id": "wf_x"}), "workflow_id"),
        (json!({"version": "two"}), "version"),
    ] {
        let r = s.put(&path, w.admin.t(), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    for who in [&w.member, &w.guest] {
        s.put(&path, who.t(), &json!({"name": "Mine"}))
            .await
            .expect(403);
    }
    s.put(&path, w.outsider.t(), &json!({"name": "Mine"}))
        .await
        .expect(404);
    let log = w.changes_since(&s, 0).await;
    assert_eq!(
        log.iter()
            .filter(|c| c["event"] == "team.updated" && c["entity_id"] == json!(id))
            .count(),
        3
    );
}

/// A team of another workspace, a forged id and a malformed id are all 404, for reads and
/// writes alike.
async fn other_workspace_is_not_found(s: TestServer) {
    let w = world(&s).await;
    let other_team = s
        .get(
            &format!("/teams?workspace_id={}", w.other_ws),
            w.outsider.t(),
        )
        .await
        .expect(200)
        .data()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged =
        momentum_shared::kernel::ids::new_id(momentum_shared::kernel::ids::Kind::Team, &w.ws);
    // ... and this workspace's teams are invisible to the outsider.
    let r = s
        .get(&format!("/teams/{}", w.team_id), w.outsider.t())
        .await
        .expect(404);
    assert!(r.data().is_null());
    s.get(&format!("/teams/{}/members", w.team_id), w.outsider.t())
        .await
        .expect(404);
    for id in [other_team.as_str(), forged.as_str(), "team_nope", "wf_x"] {
        let r = s
            .get(&format!("/teams/{id}"), w.owner.t())
            .await
            .expect(404);
        assert_eq!(r.error_code(), "NOT_FOUND");
        s.put(&format!("/teams/{id}"), w.owner.t(), &json!({"name": "X"}))
            .await
            .expect(404);
        s.delete(&format!("/teams/{id}"), w.owner.t())
            .await
            .expect(404);
        s.get(&format!("/teams/{id}/members"), w.owner.t())
            .await
            .expect(404);
        s.post(
            &format!("/teams/{id}/members"),
            w.owner.t(),
            &json!({"user_id": w.member.id}),
        )
        .await
        .expect(404);
    }
    // The other workspace's team is untouched.
    let r = s
        .get(&format!("/teams/{other_team}"), w.outsider.t())
        .await
        .expect(200);
    assert_eq!(r.data()["version"], 1);
}

/// Deleting a team removes it, its key, memberships and workflows; a team that ever had
/// issues stays (409).
async fn delete_team(s: TestServer) {
    let w = world(&s).await;
    let team = create_team(&s, &w, "TMP").await;
    let id = team["id"].as_str().unwrap().to_owned();
    let workflow_id = team["workflow_id"].as_str().unwrap().to_owned();
    s.post(
        &format!("/teams/{id}/members"),
        w.admin.t(),
        &json!({"user_id": w.member.id}),
    )
    .await
    .expect(201);
    for who in [&w.member, &w.guest] {
        s.delete(&format!("/teams/{id}"), who.t()).await.expect(403);
    }
    s.delete(&format!("/teams/{id}"), w.outsider.t())
        .await
        .expect(404);
    let before = w.last_seq(&s).await;
    let r = s
        .delete(&format!("/teams/{id}"), w.admin.t())
        .await
        .expect(200);
    assert_eq!(r.data()["deleted"], true);
    assert_eq!(
        r.storage_calls(),
        6,
        "authorize, workflows, states, members, counter read, transaction"
    );
    let log = w.changes_since(&s, before).await;
    let mut got = events(&log);
    got.sort();
    assert_eq!(got, ["team.deleted", "workflow.deleted"]);

    s.get(&format!("/teams/{id}"), w.owner.t())
        .await
        .expect(404);
    s.get(&format!("/teams/{id}/members"), w.owner.t())
        .await
        .expect(404);
    s.get(&format!("/workflows/{workflow_id}"), w.owner.t())
        .await
        .expect(404);
    s.delete(&format!("/teams/{id}"), w.admin.t())
        .await
        .expect(404);
    // No membership items are left behind.
    let left = s
        .state
        .store
        .query(
            &momentum_shared::storage::Query::new(Table::Main, keys::workspace_partition(&w.ws))
                .sort(momentum_shared::storage::SortKey::BeginsWith(format!(
                    "TEAMMEMBER#{id}#"
                ))),
        )
        .await
        .unwrap();
    assert!(left.items.is_empty());
    let states = s
        .state
        .store
        .query(
            &momentum_shared::storage::Query::new(Table::Main, keys::workspace_partition(&w.ws))
                .sort(momentum_shared::storage::SortKey::BeginsWith(format!(
                    "STATE#{workflow_id}#"
                ))),
        )
        .await
        .unwrap();
    assert!(states.items.is_empty());
    // The key is free again.
    create_team(&s, &w, "TMP").await;

    // A team whose issue counter moved (it had issues) cannot be deleted. The counter is set
    // directly: issues are another area's routes.
    let busy = create_team(&s, &w, "BUSY").await;
    let busy_id = busy["id"].as_str().unwrap();
    s.state
        .store
        .transact(vec![WriteOp::Update {
            table: Table::Main,
            key: keys::team_issue_counter(&w.ws, busy_id),
            update: Update::default().set("seq", 3),
            condition: None,
        }])
        .await
        .unwrap();
    let r = s
        .delete(&format!("/teams/{busy_id}"), w.owner.t())
        .await
        .expect(409);
    assert_eq!(r.error_code(), "CONFLICT");
    s.get(&format!("/teams/{busy_id}"), w.owner.t())
        .await
        .expect(200);
}

/// Team membership: admins add and remove anyone and change roles; members join and leave
/// themselves; only workspace members can be added, once.
async fn team_members(s: TestServer) {
    let w = world(&s).await;
    let team = create_team(&s, &w, "CORE").await;
    let id = team["id"].as_str().unwrap();
    let members_path = format!("/teams/{id}/members");
    let member_path = |u: &User| format!("/teams/{id}/members/{}", u.id);

    // An admin adds the guest.
    let r = s
        .post(&members_path, w.admin.t(), &json!({"user_id": w.guest.id}))
        .await
        .expect(201);
    assert_eq!(r.storage_calls(), 3);
    assert_eq!(r.data()["role"], "member");
    assert_eq!(r.data()["team_id"], json!(id));
    // Twice is a conflict on user_id.
    let r = s
        .post(&members_path, w.admin.t(), &json!({"user_id": w.guest.id}))
        .await
        .expect(409);
    assert_eq!(r.error_field(), Some("user_id"));
    // Someone outside the workspace, or no user at all, cannot be added.
    for user_id in [
        w.outsider.id.clone(),
        uuid::Uuid::new_v4().to_string(),
        "nobody".into(),
    ] {
        let r = s
            .post(&members_path, w.admin.t(), &json!({"user_id": user_id}))
            .await
            .expect(404);
        assert_eq!(r.error_field(), Some("user_id"));
    }
    for (body, field) in [
        (json!({}), "user_id"),
        (json!({"user_id": w.member.id, "role": "boss"}), "role"),
        (json!({"user_id": w.member.id, "team_id": id}), "team_id"),
    ] {
        let r = s.post(&members_path, w.admin.t(), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    // A member may not add others, nor join as lead, but may join as member.
    s.post(&members_path, w.member.t(), &json!({"user_id": w.owner.id}))
        .await
        .expect(403);
    s.post(
        &members_path,
        w.member.t(),
        &json!({"user_id": w.member.id, "role": "lead"}),
    )
    .await
    .expect(403);
    let r = s
        .post(
            &members_path,
            w.member.t(),
            &json!({"user_id": w.member.id}),
        )
        .await
        .expect(201);
    assert_eq!(r.data()["user_id"], json!(w.member.id));
    // A guest may not join by themselves.
    let guest2 = user(&s, "guest2").await;
    join(&s, &w.ws, &guest2, Role::Guest).await;
    s.post(&members_path, guest2.t(), &json!({"user_id": guest2.id}))
        .await
        .expect(403);

    let list = s.get(&members_path, w.guest.t()).await.expect(200);
    let mut ids: Vec<&str> = list.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![
        w.admin.id.as_str(),
        w.member.id.as_str(),
        w.guest.id.as_str(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    let page = s
        .get(&format!("{members_path}?limit=2"), w.guest.t())
        .await
        .expect(200);
    assert_eq!(page.data()["items"].as_array().unwrap().len(), 2);
    assert!(page.data()["next_cursor"].is_string());

    // Roles: admins only.
    let r = s
        .put(
            &member_path(&w.member),
            w.owner.t(),
            &json!({"role": "lead"}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["role"], "lead");
    assert_eq!(r.storage_calls(), 3);
    s.put(
        &member_path(&w.guest),
        w.member.t(),
        &json!({"role": "lead"}),
    )
    .await
    .expect(403);
    let r = s
        .put(
            &member_path(&w.member),
            w.owner.t(),
            &json!({"role": "owner"}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("role"));
    s.put(
        &member_path(&w.outsider),
        w.owner.t(),
        &json!({"role": "lead"}),
    )
    .await
    .expect(404);

    // Removal: members may not remove others, anyone may leave, admins remove anyone.
    s.delete(&member_path(&w.guest), w.member.t())
        .await
        .expect(403);
    let r = s
        .delete(&member_path(&w.guest), w.guest.t())
        .await
        .expect(200);
    assert_eq!(r.storage_calls(), 3);
    s.delete(&member_path(&w.guest), w.guest.t())
        .await
        .expect(404);
    s.delete(&member_path(&w.member), w.admin.t())
        .await
        .expect(200);
    let list = s.get(&members_path, w.owner.t()).await.expect(200);
    let items = list.data()["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["user_id"], json!(w.admin.id));

    // Outsiders see nothing.
    s.get(&members_path, w.outsider.t()).await.expect(404);
    s.delete(&member_path(&w.admin), w.outsider.t())
        .await
        .expect(404);

    let log = w.changes_since(&s, 0).await;
    let member_events: Vec<String> = log
        .iter()
        .filter(|c| c["entity_type"] == "team_member")
        .filter(|c| c["data"]["team_id"] == json!(id))
        .map(|c| c["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        member_events,
        [
            "team_member.created", // the lead
            "team_member.created", // guest
            "team_member.created", // member
            "team_member.updated",
            "team_member.deleted",
            "team_member.deleted",
        ]
    );
}

on_every_store!(
    create_read_and_list,
    current_workspace_default,
    create_validation,
    create_requires_admin,
    update_team,
    other_workspace_is_not_found,
    delete_team,
    team_members,
);
