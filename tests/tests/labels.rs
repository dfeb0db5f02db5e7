//! Black-box label tests through the shim over real HTTP, on the embedded store and on
//! DynamoDB (moto): single and batch create/update/delete, name uniqueness, levels,
//! paging, permissions and tenancy.

use momentum_shared::kernel::access::Role;
use momentum_tests::{Reply, TestServer, change_events, new_member, on_every_store, sign_up};
use reqwest::Method;
use serde_json::{Value, json};

/// A workspace owned by `token`'s user (it becomes their current one): its id.
async fn workspace(s: &TestServer, token: &str) -> String {
    let created = s
        .post(
            "/workspaces",
            Some(token),
            &json!({"name": format!("Labels {}", &uuid::Uuid::new_v4().simple().to_string()[..8])}),
        )
        .await
        .expect(201);
    created.data()["id"].as_str().unwrap().to_owned()
}

async fn create(s: &TestServer, token: &str, ws: &str, name: &str) -> Value {
    s.post(
        "/labels",
        Some(token),
        &json!({"workspace_id": ws, "name": name, "color": "#a1b2c3"}),
    )
    .await
    .expect(201)
    .data()
    .clone()
}

/// `DELETE /labels/batch` with `body`.
async fn delete_batch(s: &TestServer, token: &str, body: &Value) -> Reply {
    s.call(Method::DELETE, "/labels/batch", Some(token), Some(body))
        .await
}

/// Every label of a workspace (following cursors), by name.
async fn names(s: &TestServer, token: &str, ws: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/labels?workspace_id={ws}&limit=100");
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let page = s.get(&path, Some(token)).await.expect(200);
        for l in page.data()["items"].as_array().unwrap() {
            out.push(l["name"].as_str().unwrap().to_owned());
        }
        match page.data()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out.sort();
    out
}

/// Create, read, list, rename, version checks, delete — with their storage cost.
async fn label_lifecycle(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;

    let created = s
        .post(
            "/labels",
            Some(&owner),
            &json!({"workspace_id": ws, "name": "  Bug  ", "color": "#ff0000",
                    "description": "Something is broken"}),
        )
        .await
        .expect(201);
    let label = created.data().clone();
    let id = label["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("lbl_"));
    assert_eq!(label["name"], "Bug", "name is trimmed");
    assert_eq!(label["color"], "#FF0000", "color is upper-cased");
    assert_eq!(label["level"], "issue", "level defaults to issue");
    assert_eq!(label["workspace_id"], json!(ws));
    assert_eq!(label["version"], 1);

    let got = s
        .get(&format!("/labels/{id}"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(got.data(), &label);
    assert_eq!(got.storage_calls(), 1, "a label read is one batch get");

    let list = s
        .get(&format!("/labels?workspace_id={ws}"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(list.data()["items"], json!([label]));
    assert!(list.storage_calls() <= 2, "list: authorize + query");

    // Without workspace_id, the current workspace (set by creating it).
    let current = s.get("/labels", Some(&owner)).await.expect(200);
    assert_eq!(current.data()["items"][0]["id"], json!(id));
    let made_here = s
        .post(
            "/labels",
            Some(&owner),
            &json!({"name": "Feature", "color": "#00FF00", "level": "project"}),
        )
        .await
        .expect(201);
    assert_eq!(made_here.data()["workspace_id"], json!(ws));
    assert_eq!(made_here.data()["level"], "project");

    // Rename frees the old name; the new one is taken.
    let renamed = s
        .put(
            &format!("/labels/{id}"),
            Some(&owner),
            &json!({"name": "Defect", "description": null, "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(renamed.data()["name"], "Defect");
    assert_eq!(renamed.data()["description"], Value::Null, "null clears");
    assert_eq!(renamed.data()["version"], 2);
    create(&s, &owner, &ws, "bug").await;
    let taken = s
        .post(
            "/labels",
            Some(&owner),
            &json!({"workspace_id": ws, "name": "DEFECT", "color": "#000000"}),
        )
        .await
        .expect(409);
    assert_eq!(taken.error_field(), Some("name"));

    // A case-only rename keeps the label's own name.
    let recased = s
        .put(
            &format!("/labels/{id}"),
            Some(&owner),
            &json!({"name": "DEFECT"}),
        )
        .await
        .expect(200);
    assert_eq!(recased.data()["name"], "DEFECT");
    assert_eq!(recased.data()["version"], 3);

    // Stale versions: body and If-Match.
    let stale = s
        .put(
            &format!("/labels/{id}"),
            Some(&owner),
            &json!({"color": "#123456", "version": 1}),
        )
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    s.put_if_match(
        &format!("/labels/{id}"),
        Some(&owner),
        "\"2\"",
        &json!({"color": "#123456"}),
    )
    .await
    .expect(412);
    let ok = s
        .put_if_match(
            &format!("/labels/{id}"),
            Some(&owner),
            "\"3\"",
            &json!({"color": "#123456"}),
        )
        .await
        .expect(200);
    assert_eq!(ok.data()["color"], "#123456");
    assert_eq!(ok.data()["version"], 4);

    // Delete: gone, and its name is free again.
    let gone = s
        .delete(&format!("/labels/{id}"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(gone.data()["id"], json!(id));
    s.get(&format!("/labels/{id}"), Some(&owner))
        .await
        .expect(404);
    s.delete(&format!("/labels/{id}"), Some(&owner))
        .await
        .expect(404);
    create(&s, &owner, &ws, "Defect").await;

    let log = change_events(&s, &owner, &ws).await;
    let label_events: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("label."))
        .collect();
    assert_eq!(
        label_events,
        [
            "label.created",
            "label.created",
            "label.updated",
            "label.created",
            "label.updated",
            "label.updated",
            "label.deleted",
            "label.created"
        ]
    );
}

/// Names are unique per workspace whatever their case; other workspaces may reuse them.
async fn duplicate_names_conflict(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    create(&s, &owner, &ws, "Bug").await;
    let dup = s
        .post(
            "/labels",
            Some(&owner),
            &json!({"workspace_id": ws, "name": " bUG ", "color": "#000000"}),
        )
        .await
        .expect(409);
    assert_eq!(dup.error_code(), "CONFLICT");
    assert_eq!(dup.error_field(), Some("name"));

    let other = create(&s, &owner, &ws, "Chore").await;
    let clash = s
        .put(
            &format!("/labels/{}", other["id"].as_str().unwrap()),
            Some(&owner),
            &json!({"name": "BUG"}),
        )
        .await
        .expect(409);
    assert_eq!(clash.error_field(), Some("name"));
    assert_eq!(names(&s, &owner, &ws).await, ["Bug", "Chore"]);

    let ws2 = workspace(&s, &owner).await;
    create(&s, &owner, &ws2, "bug").await;
}

/// Every invalid input is a 400 naming the field, and writes nothing.
async fn validation_errors(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let cases = [
        (
            json!({"workspace_id": ws, "name": "", "color": "#000000"}),
            "name",
        ),
        (
            json!({"workspace_id": ws, "name": "   ", "color": "#000000"}),
            "name",
        ),
        (
            json!({"workspace_id": ws, "name": "x".repeat(51), "color": "#000000"}),
            "name",
        ),
        (
            json!({"workspace_id": ws, "name": "a\u{0}b", "color": "#000000"}),
            "name",
        ),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "red"}),
            "color",
        ),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "#12345G"}),
            "color",
        ),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "#1234567"}),
            "color",
        ),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "#000000", "level": "epic"}),
            "level",
        ),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "#000000",
                "description": "d".repeat(501)}),
            "description",
        ),
        (json!({"workspace_id": ws, "name": "ok"}), "color"),
        (json!({"workspace_id": ws, "color": "#000000"}), "name"),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "#000000", "id": "lbl_x"}),
            "id",
        ),
        (
            json!({"workspace_id": ws, "name": "ok", "color": "#000000", "version": 3}),
            "version",
        ),
        (
            json!({"workspace_id": ws, "name": 5, "color": "#000000"}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let r = s.post("/labels", Some(&owner), &body).await.expect(400);
        assert_eq!(r.error_code(), "VALIDATION_ERROR", "{body}");
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    assert!(names(&s, &owner, &ws).await.is_empty());

    let label = create(&s, &owner, &ws, "Fine").await;
    let path = format!("/labels/{}", label["id"].as_str().unwrap());
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"color": "#GGGGGG"}), "color"),
        (json!({"workspace_id": ws}), "workspace_id"),
        (json!({"level": "team"}), "level"),
    ] {
        let r = s.put(&path, Some(&owner), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    let r = s
        .get(&format!("/labels?workspace_id={ws}&limit=0"), Some(&owner))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("limit"));
    let r = s
        .get(
            &format!("/labels?workspace_id={ws}&level=epic"),
            Some(&owner),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("level"));
    let r = s
        .get(
            &format!("/labels?workspace_id={ws}&cursor=bogus"),
            Some(&owner),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("cursor"));
    // Unchanged by the refused updates.
    let got = s.get(&path, Some(&owner)).await.expect(200);
    assert_eq!(got.data(), &label);
}

/// Guests and members read but do not manage; outsiders and other workspaces see nothing.
async fn permissions_and_tenancy(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let label = create(&s, &owner, &ws, "Bug").await;
    let id = label["id"].as_str().unwrap();
    let guest = new_member(&s, &ws, "teammate", Role::Guest).await.token;
    let plain = new_member(&s, &ws, "teammate", Role::Member).await.token;
    let admin = new_member(&s, &ws, "teammate", Role::Admin).await.token;

    s.get(&format!("/labels/{id}"), Some(&guest))
        .await
        .expect(200);
    s.get(&format!("/labels?workspace_id={ws}"), Some(&guest))
        .await
        .expect(200);
    for token in [&guest, &plain] {
        let r = s
            .post(
                "/labels",
                Some(token),
                &json!({"workspace_id": ws, "name": "Nope", "color": "#000000"}),
            )
            .await
            .expect(403);
        assert_eq!(r.error_code(), "FORBIDDEN");
        s.put(
            &format!("/labels/{id}"),
            Some(token),
            &json!({"name": "Nope"}),
        )
        .await
        .expect(403);
        s.delete(&format!("/labels/{id}"), Some(token))
            .await
            .expect(403);
        s.post(
            "/labels/batch",
            Some(token),
            &json!({"workspace_id": ws, "labels": [{"name": "Nope", "color": "#000000"}]}),
        )
        .await
        .expect(403);
        delete_batch(&s, token, &json!({"ids": [id]}))
            .await
            .expect(403);
    }
    create(&s, &admin, &ws, "By admin").await;
    assert_eq!(names(&s, &owner, &ws).await, ["Bug", "By admin"]);

    // An owner of another workspace: the label does not exist for them, even as an admin
    // elsewhere, and their own workspace's id does not reach it.
    let (stranger, _, _) = sign_up(&s, "stranger").await;
    let theirs = workspace(&s, &stranger).await;
    let r = s
        .get(&format!("/labels/{id}"), Some(&stranger))
        .await
        .expect(404);
    assert_eq!(r.error_code(), "NOT_FOUND");
    s.get(&format!("/labels?workspace_id={ws}"), Some(&stranger))
        .await
        .expect(404);
    s.put(
        &format!("/labels/{id}"),
        Some(&stranger),
        &json!({"name": "Mine"}),
    )
    .await
    .expect(404);
    s.delete(&format!("/labels/{id}"), Some(&stranger))
        .await
        .expect(404);
    s.put(
        "/labels/batch",
        Some(&stranger),
        &json!({"labels": [{"id": id, "name": "Mine"}]}),
    )
    .await
    .expect(404);
    // The stranger's own label id in a batch with the victim's: the victim's is unknown.
    let own = create(&s, &stranger, &theirs, "Own").await;
    let mixed = delete_batch(&s, &stranger, &json!({"ids": [own["id"], id]}))
        .await
        .expect(404);
    assert_eq!(mixed.body["error"]["items"][0]["index"], 1);
    assert_eq!(names(&s, &stranger, &theirs).await, ["Own"]);
    for bad in [
        "lbl_nope",
        "nope",
        "iss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        s.get(&format!("/labels/{bad}"), Some(&owner))
            .await
            .expect(404);
    }
    s.get("/labels", None).await.expect(401);
    assert_eq!(names(&s, &owner, &ws).await, ["Bug", "By admin"]);
}

/// `level` filters; pages are full and cursors continue where the last page stopped.
async fn level_filter_and_paging(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    for (name, level) in [
        ("i1", "issue"),
        ("p1", "project"),
        ("i2", "issue"),
        ("p2", "project"),
        ("i3", "issue"),
    ] {
        s.post(
            "/labels",
            Some(&owner),
            &json!({"workspace_id": ws, "name": name, "color": "#000000", "level": level}),
        )
        .await
        .expect(201);
    }
    let projects = s
        .get(
            &format!("/labels?workspace_id={ws}&level=project"),
            Some(&owner),
        )
        .await
        .expect(200);
    let got: Vec<&str> = projects.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(got, ["p1", "p2"]);
    assert!(projects.storage_calls() <= 2);

    let first = s
        .get(
            &format!("/labels?workspace_id={ws}&level=issue&limit=2"),
            Some(&owner),
        )
        .await
        .expect(200);
    let mut seen: Vec<String> = first.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.len(), 2, "a full page");
    let cursor = first.data()["next_cursor"].as_str().unwrap();
    let second = s
        .get(
            &format!("/labels?workspace_id={ws}&level=issue&limit=2&cursor={cursor}"),
            Some(&owner),
        )
        .await
        .expect(200);
    let rest = second.data()["items"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["level"], "issue");
    seen.push(rest[0]["name"].as_str().unwrap().to_owned());
    seen.sort();
    assert_eq!(seen, ["i1", "i2", "i3"], "no label skipped or repeated");
    assert_eq!(second.data()["next_cursor"], Value::Null);

    let unfiltered = s
        .get(&format!("/labels?workspace_id={ws}&limit=4"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(unfiltered.data()["items"].as_array().unwrap().len(), 4);
    assert!(unfiltered.data()["next_cursor"].is_string());
}

/// A batch create answers per-item results and writes one change per label.
async fn batch_create_happy_path(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let r = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": [
                {"name": "Bug", "color": "#ff0000"},
                {"name": "Epic", "color": "#00ff00", "level": "project", "description": "big"},
                {"name": "Chore", "color": "#0000ff"},
            ]}),
        )
        .await
        .expect(201);
    let items = r.data()["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["status"], "created");
        assert_eq!(item["id"], item["label"]["id"]);
    }
    assert_eq!(items[1]["label"]["level"], "project");
    assert_eq!(items[1]["label"]["color"], "#00FF00");
    assert_eq!(names(&s, &owner, &ws).await, ["Bug", "Chore", "Epic"]);
    let created = change_events(&s, &owner, &ws)
        .await
        .into_iter()
        .filter(|e| e == "label.created")
        .count();
    assert_eq!(created, 3);

    // Without workspace_id: the current workspace.
    s.post(
        "/labels/batch",
        Some(&owner),
        &json!({"labels": [{"name": "Docs", "color": "#111111"}]}),
    )
    .await
    .expect(201);
    assert_eq!(
        names(&s, &owner, &ws).await,
        ["Bug", "Chore", "Docs", "Epic"]
    );
}

/// One bad item refuses the whole batch, naming it; nothing is written.
async fn batch_create_one_bad_item_writes_nothing(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    create(&s, &owner, &ws, "Existing").await;
    let before = change_events(&s, &owner, &ws).await.len();

    let bad_color = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": [
                {"name": "One", "color": "#111111"},
                {"name": "Two", "color": "blue"},
                {"name": "Three", "color": "#333333"},
                {"name": "", "color": "#444444"},
            ]}),
        )
        .await
        .expect(400);
    assert_eq!(bad_color.error_code(), "VALIDATION_ERROR");
    assert_eq!(bad_color.error_field(), Some("labels"));
    let items = bad_color.body["error"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["index"], 1);
    assert_eq!(items[0]["field"], "color");
    assert_eq!(items[1]["index"], 3);
    assert_eq!(items[1]["field"], "name");

    // Names colliding inside the batch, or with an existing label: 409, nothing written.
    let twice = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": [
                {"name": "Fresh", "color": "#111111"},
                {"name": "fresh", "color": "#222222"},
            ]}),
        )
        .await
        .expect(409);
    assert_eq!(twice.body["error"]["items"][0]["index"], 1);
    assert_eq!(twice.body["error"]["items"][0]["code"], "CONFLICT");
    let existing = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": [
                {"name": "New", "color": "#111111"},
                {"name": "EXISTING", "color": "#222222"},
            ]}),
        )
        .await
        .expect(409);
    assert_eq!(existing.body["error"]["items"][0]["index"], 1);
    assert_eq!(existing.body["error"]["items"][0]["field"], "name");

    // Malformed items are refused by the parser, naming the item's field.
    let unknown = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": [
                {"name": "A", "color": "#111111"},
                {"name": "B", "color": "#111111", "id": "lbl_x"},
            ]}),
        )
        .await
        .expect(400);
    assert_eq!(unknown.error_field(), Some("labels[1].id"));

    assert_eq!(names(&s, &owner, &ws).await, ["Existing"]);
    assert_eq!(change_events(&s, &owner, &ws).await.len(), before);
}

/// 0 items, or more than one transaction holds (33 creates, 25 updates, 33 deletes), are a
/// 400 naming the array and stating the limit; a full batch lands whole.
async fn batch_size_limits(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let empty = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": []}),
        )
        .await
        .expect(400);
    assert_eq!(empty.error_field(), Some("labels"));
    let many = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("label {i:03}"), "color": "#123456"}))
            .collect()
    };
    let too_many = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": many(34)}),
        )
        .await
        .expect(400);
    assert_eq!(too_many.error_field(), Some("labels"));
    assert!(
        too_many.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 33 items"),
        "{}",
        too_many.body
    );
    s.put("/labels/batch", Some(&owner), &json!({"labels": []}))
        .await
        .expect(400);
    let r = delete_batch(&s, &owner, &json!({"ids": []}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("ids"));
    let ids34: Vec<String> = (0..34).map(|i| format!("lbl_{i}")).collect();
    let r = delete_batch(&s, &owner, &json!({"ids": ids34}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("ids"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 33 items")
    );
    assert!(names(&s, &owner, &ws).await.is_empty());
    let before = change_events(&s, &owner, &ws).await.len();

    let full = s
        .post(
            "/labels/batch",
            Some(&owner),
            &json!({"workspace_id": ws, "labels": many(33)}),
        )
        .await
        .expect(201);
    assert_eq!(full.data()["items"].as_array().unwrap().len(), 33);
    assert_eq!(full.data()["items"][32]["index"], 32);
    assert_eq!(
        full.storage_calls(),
        4,
        "authorize, name markers, one commit (counter read + transaction)"
    );
    assert_eq!(names(&s, &owner, &ws).await.len(), 33);
    let ids: Vec<Value> = full.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].clone())
        .collect();

    // 26 renames are more than one transaction holds; 25 land whole.
    let renames = |n: usize| -> Vec<Value> {
        ids[..n]
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"id": id, "name": format!("renamed {i:03}")}))
            .collect()
    };
    let r = s
        .put(
            "/labels/batch",
            Some(&owner),
            &json!({"labels": renames(26)}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("labels"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 25 items")
    );
    let renamed = s
        .put(
            "/labels/batch",
            Some(&owner),
            &json!({"labels": renames(25)}),
        )
        .await
        .expect(200);
    assert_eq!(renamed.data()["items"].as_array().unwrap().len(), 25);
    assert_eq!(
        renamed.storage_calls(),
        3,
        "authorize with the reads, one commit"
    );
    let renamed_names = names(&s, &owner, &ws).await;
    assert_eq!(
        renamed_names
            .iter()
            .filter(|n| n.starts_with("renamed "))
            .count(),
        25
    );

    // And all 33 deleted in one request.
    let deleted = delete_batch(&s, &owner, &json!({"ids": ids}))
        .await
        .expect(200);
    assert_eq!(deleted.data()["items"].as_array().unwrap().len(), 33);
    assert_eq!(
        deleted.storage_calls(),
        5,
        "authorize, mark, query issues, one commit"
    );
    assert!(names(&s, &owner, &ws).await.is_empty());
    let events = change_events(&s, &owner, &ws).await;
    let n = |event: &str| events[before..].iter().filter(|e| *e == event).count();
    assert_eq!(
        (n("label.created"), n("label.updated"), n("label.deleted")),
        (33, 25, 33)
    );
}

/// Batch updates: per-item results; a stale version, an unknown id or a taken name refuses
/// the whole batch.
async fn batch_update(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let a = create(&s, &owner, &ws, "Alpha").await;
    let b = create(&s, &owner, &ws, "Beta").await;
    let c = create(&s, &owner, &ws, "Gamma").await;
    let (a_id, b_id, c_id) = (
        a["id"].as_str().unwrap(),
        b["id"].as_str().unwrap(),
        c["id"].as_str().unwrap(),
    );

    let ok = s
        .put(
            "/labels/batch",
            Some(&owner),
            &json!({"labels": [
                {"id": a_id, "name": "Alpha 2", "version": 1},
                {"id": b_id, "color": "#abcdef", "description": "blue-ish"},
                {"id": c_id, "name": "Gamma"},
            ]}),
        )
        .await
        .expect(200);
    let items = ok.data()["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "updated");
    assert_eq!(items[0]["label"]["name"], "Alpha 2");
    assert_eq!(items[0]["label"]["version"], 2);
    assert_eq!(items[1]["status"], "updated");
    assert_eq!(items[1]["label"]["color"], "#ABCDEF");
    assert_eq!(items[2]["status"], "unchanged");
    assert_eq!(items[2]["label"]["version"], 1);
    // The old name is free.
    create(&s, &owner, &ws, "alpha").await;

    let snapshot = names(&s, &owner, &ws).await;
    let before = change_events(&s, &owner, &ws).await.len();
    let refused = [
        // Stale version on one item.
        (
            json!({"labels": [{"id": a_id, "color": "#000000"},
                              {"id": b_id, "color": "#000000", "version": 1}]}),
            412,
            1,
        ),
        // Unknown id.
        (
            json!({"labels": [{"id": a_id, "color": "#000000"},
                              {"id": format!("{}x", &c_id[..c_id.len() - 1]), "color": "#000000"}]}),
            404,
            1,
        ),
        // A name another label has (case-insensitively).
        (
            json!({"labels": [{"id": a_id, "color": "#000000"}, {"id": b_id, "name": "ALPHA"}]}),
            409,
            1,
        ),
        // Two items taking the same new name.
        (
            json!({"labels": [{"id": a_id, "name": "Same"}, {"id": b_id, "name": "same"}]}),
            409,
            1,
        ),
        // The same label twice.
        (
            json!({"labels": [{"id": a_id, "color": "#000000"}, {"id": a_id, "color": "#111111"}]}),
            400,
            1,
        ),
        // An invalid color.
        (
            json!({"labels": [{"id": a_id, "color": "#000000"}, {"id": b_id, "color": "nope"}]}),
            400,
            1,
        ),
    ];
    for (body, status, index) in refused {
        let r = s
            .put("/labels/batch", Some(&owner), &body)
            .await
            .expect(status);
        assert_eq!(
            r.body["error"]["items"][0]["index"], index,
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(names(&s, &owner, &ws).await, snapshot);
    assert_eq!(
        change_events(&s, &owner, &ws).await.len(),
        before,
        "nothing written"
    );
    let a_now = s
        .get(&format!("/labels/{a_id}"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(a_now.data()["color"], "#A1B2C3");
}

/// Batch deletes: all listed labels go and their names are free; an unknown id refuses all.
async fn batch_delete(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let a = create(&s, &owner, &ws, "Alpha").await;
    let b = create(&s, &owner, &ws, "Beta").await;
    create(&s, &owner, &ws, "Keep").await;

    let missing = delete_batch(&s, &owner, &json!({"ids": [a["id"], "lbl_missing"]}))
        .await
        .expect(404);
    assert_eq!(missing.body["error"]["items"][0]["index"], 1);
    assert_eq!(missing.body["error"]["items"][0]["code"], "NOT_FOUND");
    let twice = delete_batch(&s, &owner, &json!({"ids": [a["id"], a["id"]]}))
        .await
        .expect(400);
    assert_eq!(twice.body["error"]["items"][0]["index"], 1);
    assert_eq!(names(&s, &owner, &ws).await, ["Alpha", "Beta", "Keep"]);

    let ok = delete_batch(&s, &owner, &json!({"ids": [b["id"], a["id"]]}))
        .await
        .expect(200);
    let items = ok.data()["items"].as_array().unwrap();
    assert_eq!(items[0]["index"], 0);
    assert_eq!(items[0]["id"], b["id"]);
    assert_eq!(items[0]["status"], "deleted");
    assert_eq!(names(&s, &owner, &ws).await, ["Keep"]);
    create(&s, &owner, &ws, "Alpha").await;
    let deleted = change_events(&s, &owner, &ws)
        .await
        .into_iter()
        .filter(|e| e == "label.deleted")
        .count();
    assert_eq!(deleted, 2);
}

on_every_store!(
    label_lifecycle,
    duplicate_names_conflict,
    validation_errors,
    permissions_and_tenancy,
    level_filter_and_paging,
    batch_create_happy_path,
    batch_create_one_bad_item_writes_nothing,
    batch_size_limits,
    batch_update,
    batch_delete,
);
