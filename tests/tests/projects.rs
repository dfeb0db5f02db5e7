//! Projects and project statuses through the shim, on the embedded store and on DynamoDB.

use momentum_shared::kernel::access::Role;
use momentum_tests::{Reply, TestServer, id, join, new_member, on_every_store, sign_up, user};
use reqwest::Method;
use serde_json::{Value, json};

/// A new user with a new workspace: (token, user id, workspace id).
async fn owner_with_workspace(s: &TestServer, name: &str) -> (String, String, String) {
    let (token, user, _) = sign_up(s, name).await;
    let ws = s
        .post(
            "/workspaces",
            Some(&token),
            &json!({"name": format!("{name} {}", &uuid::Uuid::new_v4().simple().to_string()[..8])}),
        )
        .await
        .expect(201);
    let ws = ws.data()["id"].as_str().unwrap().to_owned();
    (token, user, ws)
}

fn unique_key() -> String {
    format!(
        "K{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6].to_uppercase()
    )
}

async fn new_status(s: &TestServer, token: &str, ws: &str, name: &str, category: &str) -> String {
    let r = s
        .post(
            "/project-statuses",
            Some(token),
            &json!({"workspace_id": ws, "name": name, "category": category, "color": "#aabbcc"}),
        )
        .await
        .expect(201);
    id(r.data())
}

async fn new_project(s: &TestServer, token: &str, ws: &str, extra: Value) -> Reply {
    let mut body = json!({"workspace_id": ws, "name": "Website", "project_key": unique_key()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.post("/projects", Some(token), &body).await
}

fn ids_of(list: &Reply) -> Vec<String> {
    list.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The changes of `ws` as (event, entity id, topics).
async fn changes(s: &TestServer, token: &str, ws: &str) -> Vec<(String, String, Vec<String>)> {
    let r = s
        .get(
            &format!("/workspaces/{ws}/changes?since=0&limit=1000"),
            Some(token),
        )
        .await
        .expect(200);
    r.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["event"].as_str().unwrap().to_owned(),
                c["entity_id"].as_str().unwrap().to_owned(),
                c["topics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

// ----- project statuses --------------------------------------------------------------------

async fn statuses_lifecycle(s: TestServer) {
    let (token, _, ws) = owner_with_workspace(&s, "owner").await;
    let list = s
        .get(
            &format!("/project-statuses?workspace_id={ws}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert!(list.storage_calls() <= 2, "access batch + one Query");
    let before = list.data().as_array().unwrap().len();

    // Created in the given workspace, color upper-cased, placed after the last status.
    let created = s
        .post(
            "/project-statuses",
            Some(&token),
            &json!({"workspace_id": ws, "name": "Scoping", "category": "planned", "color": "#a1b2c3"}),
        )
        .await
        .expect(201);
    let st = created.data().clone();
    assert_eq!(st["workspace_id"], json!(ws));
    assert_eq!(st["name"], "Scoping");
    assert_eq!(st["category"], "planned");
    assert_eq!(st["color"], "#A1B2C3");
    assert_eq!(st["version"], 1);
    let first_pos = st["position"].as_i64().unwrap();

    // Without workspace_id: the caller's current workspace (the one just created).
    let second = s
        .post(
            "/project-statuses",
            Some(&token),
            &json!({"name": "Shipping", "category": "in_progress", "color": "#000000"}),
        )
        .await
        .expect(201);
    assert_eq!(second.data()["workspace_id"], json!(ws));
    assert!(second.data()["position"].as_i64().unwrap() > first_pos);
    let early = s
        .post(
            "/project-statuses",
            Some(&token),
            &json!({"workspace_id": ws, "name": "Ideas", "category": "backlog", "color": "#FFFFFF", "position": 0}),
        )
        .await
        .expect(201);

    let list = s
        .get(
            &format!("/project-statuses?workspace_id={ws}"),
            Some(&token),
        )
        .await
        .expect(200);
    let all = list.data().as_array().unwrap();
    assert_eq!(all.len(), before + 3);
    let positions: Vec<i64> = all
        .iter()
        .map(|s| s["position"].as_i64().unwrap())
        .collect();
    assert!(positions.is_sorted(), "listed by position: {positions:?}");
    assert_eq!(all[0]["position"], 0);
    assert!(all.iter().any(|x| x["id"] == early.data()["id"]));
    // Without workspace_id, the list is of the current workspace too.
    let current = s.get("/project-statuses", Some(&token)).await.expect(200);
    assert_eq!(current.data().as_array().unwrap().len(), before + 3);

    // One status: session, membership and status in one batch.
    let sid = st["id"].as_str().unwrap();
    let got = s
        .get(&format!("/project-statuses/{sid}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(got.storage_calls(), 1);
    assert_eq!(got.data(), &st);

    // Partial update: absent fields stay, the version moves.
    let path = format!("/project-statuses/{sid}");
    let up = s
        .put(
            &path,
            Some(&token),
            &json!({"name": "Scoped", "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(up.data()["name"], "Scoped");
    assert_eq!(up.data()["category"], "planned");
    assert_eq!(up.data()["color"], "#A1B2C3");
    assert_eq!(up.data()["version"], 2);
    let stale = s
        .put(&path, Some(&token), &json!({"name": "Again", "version": 1}))
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    s.put_if_match(
        &path,
        Some(&token),
        "\"1\"",
        &json!({"category": "completed"}),
    )
    .await
    .expect(412);
    let up = s
        .put_if_match(
            &path,
            Some(&token),
            "\"2\"",
            &json!({"category": "completed"}),
        )
        .await
        .expect(200);
    assert_eq!(up.data()["category"], "completed");
    assert_eq!(up.data()["version"], 3);
    let got = s.get(&path, Some(&token)).await.expect(200);
    assert_eq!(got.data()["name"], "Scoped");
    assert_eq!(got.data()["category"], "completed");

    // A status in use cannot go; once free it can, and is gone.
    let p = new_project(&s, &token, &ws, json!({"status_id": sid}))
        .await
        .expect(201);
    let busy = s.delete(&path, Some(&token)).await.expect(409);
    assert_eq!(busy.error_code(), "CONFLICT");
    s.put(
        &format!("/projects/{}", id(p.data())),
        Some(&token),
        &json!({"status_id": null}),
    )
    .await
    .expect(200);
    s.request(Method::DELETE, &path, Some(&token), Some("\"1\""), None)
        .await
        .expect(412);
    s.delete(&path, Some(&token)).await.expect(200);
    s.get(&path, Some(&token)).await.expect(404);
    s.delete(&path, Some(&token)).await.expect(404);

    let log = changes(&s, &token, &ws).await;
    let events: Vec<&str> = log
        .iter()
        .filter(|(_, e, _)| e == sid)
        .map(|(ev, _, _)| ev.as_str())
        .collect();
    assert_eq!(
        events,
        [
            "project_status.created",
            "project_status.updated",
            "project_status.updated",
            "project_status.deleted"
        ]
    );
}

async fn status_validation_and_roles(s: TestServer) {
    let (token, _, ws) = owner_with_workspace(&s, "owner").await;
    let post = |body: Value| {
        let s = &s;
        let token = token.clone();
        async move { s.post("/project-statuses", Some(&token), &body).await }
    };
    let base = json!({"workspace_id": ws, "name": "Ok", "category": "planned", "color": "#123456"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("name", json!("  ")), "name"),
        (with("name", json!("x".repeat(51))), "name"),
        (with("category", json!("started")), "category"),
        (with("color", json!("red")), "color"),
        (with("color", json!("#12345G")), "color"),
        (with("position", json!(-1)), "position"),
        (with("id", json!("ps_x")), "id"),
        (with("version", json!(3)), "version"),
    ] {
        let r = post(body.clone()).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    post(with("name", json!("x".repeat(50)))).await.expect(201);

    // Members read statuses but do not manage them; outsiders see nothing.
    let member = new_member(&s, &ws, "member", Role::Member).await.token;
    s.post("/project-statuses", Some(&member), &base)
        .await
        .expect(403);
    let sid = new_status(&s, &token, &ws, "Mine", "backlog").await;
    s.get(&format!("/project-statuses/{sid}"), Some(&member))
        .await
        .expect(200);
    s.put(
        &format!("/project-statuses/{sid}"),
        Some(&member),
        &json!({"name": "x"}),
    )
    .await
    .expect(403);
    s.delete(&format!("/project-statuses/{sid}"), Some(&member))
        .await
        .expect(403);
    let (outsider, _, _) = owner_with_workspace(&s, "outsider").await;
    s.get(&format!("/project-statuses/{sid}"), Some(&outsider))
        .await
        .expect(404);
    s.get(
        &format!("/project-statuses?workspace_id={ws}"),
        Some(&outsider),
    )
    .await
    .expect(404);
    s.get("/project-statuses/ps_garbage", Some(&token))
        .await
        .expect(404);
    let r = s
        .put(
            &format!("/project-statuses/{sid}"),
            Some(&token),
            &json!({"workspace_id": ws}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("workspace_id"));
}

// ----- projects ----------------------------------------------------------------------------

async fn project_create_and_read(s: TestServer) {
    let (token, user, ws) = owner_with_workspace(&s, "owner").await;
    let sid = new_status(&s, &token, &ws, "Doing", "in_progress").await;
    let created = s
        .post(
            "/projects",
            Some(&token),
            &json!({
                "workspace_id": ws, "name": "  Website relaunch ", "project_key": "web2",
                "description": "New **site**", "priority": "high", "target_date": "2026-06-30",
                "status_id": sid,
            }),
        )
        .await
        .expect(201);
    let p = created.data().clone();
    assert_eq!(p["name"], "Website relaunch");
    assert_eq!(p["project_key"], "WEB2", "keys are upper-cased");
    assert_eq!(p["description"], "New **site**");
    assert_eq!(p["priority"], "high");
    assert_eq!(p["target_date"], "2026-06-30");
    assert_eq!(p["status_id"], json!(sid));
    assert_eq!(p["status_category"], "in_progress");
    assert_eq!(
        p["owner_id"],
        json!(user),
        "the owner defaults to the caller"
    );
    assert_eq!(p["created_by"], json!(user));
    assert_eq!(p["workspace_id"], json!(ws));
    assert_eq!(p["version"], 1);

    let pid = p["id"].as_str().unwrap();
    let got = s
        .get(&format!("/projects/{pid}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(got.data(), &p);
    assert!(got.storage_calls() <= 2, "project batch + its status");

    // Defaults: priority none, no status, current workspace.
    let bare = s
        .post(
            "/projects",
            Some(&token),
            &json!({"name": "Bare", "project_key": "B1"}),
        )
        .await
        .expect(201);
    assert_eq!(bare.data()["workspace_id"], json!(ws));
    assert_eq!(bare.data()["priority"], "none");
    assert_eq!(bare.data()["status_id"], Value::Null);
    assert!(bare.data().get("status_category").is_none());
    let got = s
        .get(&format!("/projects/{}", id(bare.data())), Some(&token))
        .await
        .expect(200);
    assert_eq!(got.storage_calls(), 1, "no status: one batch");

    let list = s
        .get(&format!("/projects?workspace_id={ws}"), Some(&token))
        .await
        .expect(200);
    assert!(list.storage_calls() <= 2);
    let ids = ids_of(&list);
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&pid.to_owned()) && ids.contains(&id(bare.data())));

    // Another member may own a project.
    let mate = new_member(&s, &ws, "mate", Role::Guest).await.id;
    let owned = new_project(&s, &token, &ws, json!({"owner_id": mate}))
        .await
        .expect(201);
    assert_eq!(owned.data()["owner_id"], json!(mate));

    let log = changes(&s, &token, &ws).await;
    let (event, _, topics) = log.iter().find(|(_, e, _)| e == pid).unwrap();
    assert_eq!(event, "project.created");
    assert!(topics.contains(&format!("project:{pid}")));
    assert!(topics.contains(&format!("workspace:{ws}")));
}

async fn project_validation(s: TestServer) {
    let (token, _, ws) = owner_with_workspace(&s, "owner").await;
    let (other_token, stranger, other_ws) = owner_with_workspace(&s, "other").await;
    let foreign_status = new_status(&s, &other_token, &other_ws, "Theirs", "planned").await;
    let missing_status = {
        let sid = new_status(&s, &token, &ws, "Gone", "planned").await;
        s.delete(&format!("/project-statuses/{sid}"), Some(&token))
            .await
            .expect(200);
        sid
    };

    new_project(&s, &token, &ws, json!({"project_key": "dup1"}))
        .await
        .expect(201);
    let dup = new_project(&s, &token, &ws, json!({"project_key": "DUP1"}))
        .await
        .expect(409);
    assert_eq!(dup.error_code(), "CONFLICT");
    assert_eq!(dup.error_field(), Some("project_key"));
    // Keys are per workspace.
    new_project(&s, &other_token, &other_ws, json!({"project_key": "DUP1"}))
        .await
        .expect(201);

    for (extra, field, status) in [
        (json!({"target_date": "2026-02-30"}), "target_date", 400),
        (json!({"target_date": "tomorrow"}), "target_date", 400),
        (json!({"target_date": "2026-1-05"}), "target_date", 400),
        (json!({"priority": "extreme"}), "priority", 400),
        (json!({"owner_id": stranger}), "owner_id", 404),
        (json!({"owner_id": "not-a-user"}), "owner_id", 400),
        (json!({"status_id": foreign_status}), "status_id", 404),
        (json!({"status_id": missing_status}), "status_id", 404),
        (json!({"status_id": "ps_nonsense"}), "status_id", 404),
        (json!({"name": ""}), "name", 400),
        (json!({"name": "x".repeat(101)}), "name", 400),
        (json!({"project_key": ""}), "project_key", 400),
        (json!({"project_key": "ABCDEFGHIJK"}), "project_key", 400),
        (json!({"project_key": "WE-B"}), "project_key", 400),
        (
            json!({"description": "x".repeat(10_001)}),
            "description",
            400,
        ),
        (json!({"id": "proj_x"}), "id", 400),
        (json!({"created_by": "me"}), "created_by", 400),
        (json!({"version": 2}), "version", 400),
    ] {
        let r = new_project(&s, &token, &ws, extra.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{extra}: {}", r.body);
        assert_eq!(r.error_field(), Some(field), "{extra}: {}", r.body);
    }
    new_project(&s, &token, &ws, json!({"name": "x".repeat(100), "project_key": "ABCDEFGHIJ", "description": "x".repeat(10_000), "target_date": "2028-02-29"}))
        .await
        .expect(201);

    // Missing required fields and bodies that are not objects are 400s, not panics.
    let r = s
        .post(
            "/projects",
            Some(&token),
            &json!({"workspace_id": ws, "name": "x"}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("project_key"));
    s.post("/projects", Some(&token), &json!([1, 2]))
        .await
        .expect(400);
}

async fn project_update(s: TestServer) {
    let (token, _, ws) = owner_with_workspace(&s, "owner").await;
    let sid = new_status(&s, &token, &ws, "Planned", "planned").await;
    let created = new_project(
        &s,
        &token,
        &ws,
        json!({"project_key": "OLD", "description": "d", "target_date": "2026-01-31", "status_id": sid, "priority": "low"}),
    )
    .await
    .expect(201);
    let pid = id(created.data());
    let path = format!("/projects/{pid}");

    // Partial: only the name changes.
    let up = s
        .put(&path, Some(&token), &json!({"name": "Renamed"}))
        .await
        .expect(200);
    let p = up.data();
    assert_eq!(p["name"], "Renamed");
    assert_eq!(p["description"], "d");
    assert_eq!(p["priority"], "low");
    assert_eq!(p["status_category"], "planned");
    assert_eq!(p["version"], 2);

    // Explicit nulls clear optional fields.
    let up = s
        .put(
            &path,
            Some(&token),
            &json!({"description": null, "target_date": null, "status_id": null, "owner_id": null, "version": 2}),
        )
        .await
        .expect(200);
    let p = up.data();
    assert_eq!(p["description"], Value::Null);
    assert_eq!(p["target_date"], Value::Null);
    assert_eq!(p["status_id"], Value::Null);
    assert_eq!(p["owner_id"], Value::Null);
    assert!(p.get("status_category").is_none());
    assert_eq!(p["version"], 3);
    let got = s.get(&path, Some(&token)).await.expect(200);
    assert_eq!(got.data()["description"], Value::Null);
    assert_eq!(got.data()["name"], "Renamed");

    // Versions: body and If-Match.
    let stale = s
        .put(
            &path,
            Some(&token),
            &json!({"priority": "urgent", "version": 2}),
        )
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    s.put_if_match(&path, Some(&token), "\"2\"", &json!({"priority": "urgent"}))
        .await
        .expect(412);
    s.put_if_match(
        &path,
        Some(&token),
        "nonsense",
        &json!({"priority": "urgent"}),
    )
    .await
    .expect(400);
    let up = s
        .put_if_match(
            &path,
            Some(&token),
            "\"3\"",
            &json!({"priority": "urgent", "status_id": sid}),
        )
        .await
        .expect(200);
    assert_eq!(up.data()["priority"], "urgent");
    assert_eq!(up.data()["status_category"], "planned");
    assert_eq!(up.data()["version"], 4);
    // The same values again change nothing.
    let same = s
        .put(&path, Some(&token), &json!({"priority": "urgent"}))
        .await
        .expect(200);
    assert_eq!(same.data()["version"], 4);

    // A key change moves the marker: the old key is free, the new one taken.
    let other = new_project(&s, &token, &ws, json!({"project_key": "TAKEN"}))
        .await
        .expect(201);
    let clash = s
        .put(&path, Some(&token), &json!({"project_key": "taken"}))
        .await
        .expect(409);
    assert_eq!(clash.error_field(), Some("project_key"));
    let up = s
        .put(&path, Some(&token), &json!({"project_key": "new"}))
        .await
        .expect(200);
    assert_eq!(up.data()["project_key"], "NEW");
    new_project(&s, &token, &ws, json!({"project_key": "OLD"}))
        .await
        .expect(201);
    new_project(&s, &token, &ws, json!({"project_key": "NEW"}))
        .await
        .expect(409);

    // Owners must be members; validation names the field.
    let stranger = user(&s, "stranger").await;
    let r = s
        .put(&path, Some(&token), &json!({"owner_id": stranger.id}))
        .await
        .expect(404);
    assert_eq!(r.error_field(), Some("owner_id"));
    join(&s, &ws, &stranger, Role::Member).await;
    let up = s
        .put(&path, Some(&token), &json!({"owner_id": stranger.id}))
        .await
        .expect(200);
    assert_eq!(up.data()["owner_id"], json!(stranger.id));
    for (body, field, status) in [
        (json!({"target_date": "2026-04-31"}), "target_date", 400),
        (json!({"priority": "meh"}), "priority", 400),
        (json!({"name": null}), "name", 400),
        (json!({"status_id": "ps_nope"}), "status_id", 404),
        (json!({"workspace_id": ws}), "workspace_id", 400),
        (json!({"created_by": "x"}), "created_by", 400),
    ] {
        let r = s.put(&path, Some(&token), &body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.body);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }

    // Delete, with a version check; the key becomes free.
    s.request(Method::DELETE, &path, Some(&token), Some("\"1\""), None)
        .await
        .expect(412);
    s.delete(&path, Some(&token)).await.expect(200);
    s.get(&path, Some(&token)).await.expect(404);
    s.put(&path, Some(&token), &json!({"name": "ghost"}))
        .await
        .expect(404);
    new_project(&s, &token, &ws, json!({"project_key": "NEW"}))
        .await
        .expect(201);
    assert!(
        ids_of(
            &s.get(&format!("/projects?workspace_id={ws}"), Some(&token))
                .await
                .expect(200)
        )
        .contains(&id(other.data()))
    );

    let log = changes(&s, &token, &ws).await;
    let events: Vec<&str> = log
        .iter()
        .filter(|(_, e, _)| *e == pid)
        .map(|(ev, _, _)| ev.as_str())
        .collect();
    assert_eq!(events.first(), Some(&"project.created"));
    assert_eq!(events.last(), Some(&"project.deleted"));
    assert_eq!(
        events.iter().filter(|e| **e == "project.updated").count(),
        5,
        "one change per committed update: {events:?}"
    );
}

/// A project made by a test: (id, priority, status id, owner id).
type Made = (String, &'static str, String, String);

async fn project_list_filters_and_paging(s: TestServer) {
    let (token, user, ws) = owner_with_workspace(&s, "owner").await;
    let mate = new_member(&s, &ws, "mate", Role::Member).await.id;
    let a = new_status(&s, &token, &ws, "A", "planned").await;
    let b = new_status(&s, &token, &ws, "B", "completed").await;
    let mut made: Vec<Made> = Vec::new();
    for (priority, status, owner) in [
        ("high", &a, &user),
        ("low", &a, &mate),
        ("high", &b, &mate),
        ("none", &b, &user),
        ("high", &a, &mate),
    ] {
        let r = new_project(
            &s,
            &token,
            &ws,
            json!({"priority": priority, "status_id": status, "owner_id": owner}),
        )
        .await
        .expect(201);
        made.push((id(r.data()), priority, status.clone(), owner.clone()));
    }
    let expect = |pred: &dyn Fn(&Made) -> bool| {
        let mut v: Vec<String> = made
            .iter()
            .filter(|m| pred(m))
            .map(|m| m.0.clone())
            .collect();
        v.sort();
        v
    };
    // Every page of a filtered list, collected.
    let all_pages = |query: String, limit: u32| {
        let s = &s;
        let token = token.clone();
        async move {
            let mut out = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..20 {
                let mut path = format!("/projects?{query}&limit={limit}");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let r = s.get(&path, Some(&token)).await.expect(200);
                assert!(r.storage_calls() <= 2, "{path}: {}", r.storage_calls());
                let items = ids_of(&r);
                assert!(items.len() <= limit as usize);
                out.extend(items);
                match r.data()["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            out.sort();
            out
        }
    };
    let ws_q = format!("workspace_id={ws}");
    assert_eq!(all_pages(ws_q.clone(), 2).await, expect(&|_| true));
    assert_eq!(
        all_pages(format!("{ws_q}&priority=high"), 1).await,
        expect(&|m| m.1 == "high")
    );
    assert_eq!(
        all_pages(format!("{ws_q}&status_id={b}"), 10).await,
        expect(&|m| m.2 == b)
    );
    assert_eq!(
        all_pages(
            format!("{ws_q}&owner_id={mate}&priority=high&status_id={a}"),
            1
        )
        .await,
        expect(&|m| m.3 == mate && m.1 == "high" && m.2 == a)
    );
    assert_eq!(
        all_pages(format!("{ws_q}&priority=urgent"), 5).await,
        Vec::<String>::new()
    );

    let r = s
        .get(&format!("/projects?{ws_q}&priority=extreme"), Some(&token))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("priority"));
    let r = s
        .get(&format!("/projects?{ws_q}&limit=0"), Some(&token))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("limit"));
    let r = s
        .get(&format!("/projects?{ws_q}&cursor=garbage"), Some(&token))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("cursor"));
}

async fn project_access(s: TestServer) {
    let (token, _, ws) = owner_with_workspace(&s, "owner").await;
    let guest = new_member(&s, &ws, "guest", Role::Guest).await.token;
    let member = new_member(&s, &ws, "member", Role::Member).await.token;
    let (outsider, _, outsider_ws) = owner_with_workspace(&s, "outsider").await;

    let p = new_project(&s, &token, &ws, json!({})).await.expect(201);
    let path = format!("/projects/{}", id(p.data()));

    // Guests read but do not contribute.
    s.get(&path, Some(&guest)).await.expect(200);
    s.get(&format!("/projects?workspace_id={ws}"), Some(&guest))
        .await
        .expect(200);
    let r = new_project(&s, &guest, &ws, json!({})).await.expect(403);
    assert_eq!(r.error_code(), "FORBIDDEN");
    s.put(&path, Some(&guest), &json!({"name": "g"}))
        .await
        .expect(403);
    s.delete(&path, Some(&guest)).await.expect(403);

    // Members contribute: create, change, delete.
    let mine = new_project(&s, &member, &ws, json!({})).await.expect(201);
    s.put(&path, Some(&member), &json!({"name": "By a member"}))
        .await
        .expect(200);
    s.delete(&format!("/projects/{}", id(mine.data())), Some(&member))
        .await
        .expect(200);

    // Another workspace's project is invisible: 404 whatever the verb.
    let r = s.get(&path, Some(&outsider)).await.expect(404);
    assert_eq!(r.error_code(), "NOT_FOUND");
    s.put(&path, Some(&outsider), &json!({"name": "x"}))
        .await
        .expect(404);
    s.delete(&path, Some(&outsider)).await.expect(404);
    s.get(&format!("/projects?workspace_id={ws}"), Some(&outsider))
        .await
        .expect(404);
    new_project(&s, &outsider, &ws, json!({})).await.expect(404);
    // ... and the outsider's own list does not show it.
    let theirs = s
        .get(
            &format!("/projects?workspace_id={outsider_ws}"),
            Some(&outsider),
        )
        .await
        .expect(200);
    assert!(ids_of(&theirs).is_empty());
    s.get("/projects/proj_garbage", Some(&token))
        .await
        .expect(404);
    s.get("/projects/ps_garbage", Some(&token))
        .await
        .expect(404);
    s.get(&path, None).await.expect(401);
    // Nothing the refused callers sent changed the project.
    let got = s.get(&path, Some(&token)).await.expect(200);
    assert_eq!(got.data()["name"], "By a member");
    assert_eq!(got.data()["version"], 2);
}

on_every_store!(
    statuses_lifecycle,
    status_validation_and_roles,
    project_create_and_read,
    project_validation,
    project_update,
    project_list_filters_and_paging,
    project_access,
);
