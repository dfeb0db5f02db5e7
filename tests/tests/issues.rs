//! Issues through the shim on both stores: numbering under concurrency, identifiers,
//! validation, optimistic concurrency, activity, filters/sorts/pagination, transitions,
//! sub-issues and tenancy.

use std::collections::BTreeSet;

use momentum_shared::kernel::access::Role;
use momentum_shared::kernel::ids::{self, Kind};
use momentum_shared::kernel::keys;
use momentum_shared::kernel::record::record_item;
use momentum_shared::storage::{Table, WriteOp};
use momentum_tests::{Reply, TestServer, Ws, id, new_member, on_every_store, sign_up, workspace};
use serde_json::{Value, json};

async fn create(s: &TestServer, w: &Ws, body: Value) -> Reply {
    let mut body = body;
    if body.get("team_id").is_none() {
        body["team_id"] = json!(w.team);
    }
    s.post("/issues", Some(&w.token), &body).await
}

async fn issue(s: &TestServer, w: &Ws, title: &str) -> Value {
    create(s, w, json!({"title": title}))
        .await
        .expect(201)
        .data()
        .clone()
}

/// A label record, written directly (labels are another area's API).
async fn seed_label(s: &TestServer, ws: &str, name: &str) -> String {
    let id = ids::new_id(Kind::Label, ws);
    let item = record_item(
        &keys::label(ws, &id),
        "label",
        &json!({"id": id, "workspace_id": ws, "name": name, "color": "#FF0000"}),
    );
    s.state
        .store
        .transact(vec![WriteOp::put(Table::Main, item)])
        .await
        .unwrap();
    id
}

/// A project record, written directly (projects are another area's API).
async fn seed_project(s: &TestServer, ws: &str, name: &str) -> String {
    let id = ids::new_id(Kind::Project, ws);
    let item = record_item(
        &keys::project(ws, &id),
        "project",
        &json!({"id": id, "workspace_id": ws, "name": name}),
    );
    s.state
        .store
        .transact(vec![WriteOp::put(Table::Main, item)])
        .await
        .unwrap();
    id
}

/// Restricts where issues in `from` may go (the workflows API is another area's).
async fn restrict_state(s: &TestServer, w: &Ws, from: &str, to: &[&str]) {
    let key = keys::state(&w.ws, &w.workflow, w.state(from));
    let mut item = s.state.store.get(Table::Main, &key).await.unwrap().unwrap();
    let targets: Vec<&str> = to.iter().map(|n| w.state(n)).collect();
    item.insert("transitions_to".into(), json!(targets));
    s.state
        .store
        .transact(vec![WriteOp::put(Table::Main, item)])
        .await
        .unwrap();
}

/// Every page of a list: (identifiers in order, pages).
async fn all_pages(s: &TestServer, token: &str, query: &str) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/issues?{query}&cursor={c}"),
            None => format!("/issues?{query}"),
        };
        let r = s.get(&path, Some(token)).await.expect(200);
        pages += 1;
        for i in r.data()["items"].as_array().unwrap() {
            out.push(i["identifier"].as_str().unwrap().to_owned());
        }
        match r.data()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (out, pages),
        }
        assert!(pages < 100, "runaway pagination");
    }
}

// ---------------------------------------------------------------------------------------

async fn create_get_and_identifier(s: TestServer) {
    let w = workspace(&s, "Engine Room").await;
    let first = create(&s, &w, json!({"title": "  Fix the login bug  "}))
        .await
        .expect(201);
    let d = first.data().clone();
    assert_eq!(d["title"], "Fix the login bug", "titles are trimmed");
    assert_eq!(d["number"], 1);
    assert_eq!(d["identifier"], format!("{}-1", w.team_key));
    assert_eq!(
        d["state_id"],
        w.state("Todo"),
        "the workflow's default state"
    );
    assert_eq!(d["priority"], "none");
    assert_eq!(d["created_by"], json!(w.user_id));
    assert_eq!(d["version"], 1);
    assert_eq!(d["workspace_id"], json!(w.ws));
    assert_eq!(d["label_ids"], json!([]));
    println!("x-storage-calls create issue: {}", first.storage_calls());
    // Authorize (one batch), the default state, the issue number and the change number (two
    // atomic adds that no concurrent create conflicts on), one transaction.
    assert!(
        first.storage_calls() <= 5,
        "create: {}",
        first.storage_calls()
    );

    let got = s
        .get(&format!("/issues/{}", id(&d)), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(got.data(), &d);
    println!("x-storage-calls get issue by id: {}", got.storage_calls());
    assert_eq!(
        got.storage_calls(),
        1,
        "session + membership + issue in one batch"
    );

    // By identifier, in the current workspace (any case) or a named one.
    let ident = d["identifier"].as_str().unwrap();
    let by_ident = s
        .get(&format!("/issues/{}", ident.to_lowercase()), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(by_ident.data()["id"], d["id"]);
    let named = s
        .get(
            &format!("/issues/{ident}?workspace_id={}", w.ws),
            Some(&w.token),
        )
        .await
        .expect(200);
    assert_eq!(named.data()["id"], d["id"]);
    assert!(named.storage_calls() <= 2);
    s.get(&format!("/issues/{}-999", w.team_key), Some(&w.token))
        .await
        .expect(404);
    s.get("/issues/not-an-id", Some(&w.token)).await.expect(404);
    s.get("/issues/iss_garbage", Some(&w.token))
        .await
        .expect(404);

    // Everything a create can set.
    let label = seed_label(&s, &w.ws, "bug").await;
    let project = seed_project(&s, &w.ws, "Launch").await;
    let cycle = s
        .post(
            "/cycles",
            Some(&w.token),
            &json!({"team_id": w.team, "starts_on": "2026-01-05", "ends_on": "2026-01-19"}),
        )
        .await
        .expect(201)
        .data()["id"]
        .clone();
    let full = create(
        &s,
        &w,
        json!({
            "title": "Everything",
            "description": "Line one\n\tindented",
            "priority": "urgent",
            "assignee_id": w.user_id,
            "label_ids": [label, label],
            "project_id": project,
            "cycle_id": cycle,
            "parent_id": d["id"],
            "state_id": w.state("Backlog"),
        }),
    )
    .await
    .expect(201);
    let f = full.data();
    assert_eq!(f["number"], 2);
    assert_eq!(f["priority"], "urgent");
    assert_eq!(f["assignee_id"], json!(w.user_id));
    assert_eq!(f["label_ids"], json!([label]), "duplicates collapse");
    assert_eq!(f["project_id"], json!(project));
    assert_eq!(f["cycle_id"], cycle);
    assert_eq!(f["parent_id"], d["id"]);
    assert_eq!(f["state_id"], w.state("Backlog"));
    assert_eq!(f["description"], "Line one\n\tindented");

    // The change feed carries it with its topics.
    let changes = s
        .get(
            &format!("/workspaces/{}/changes?since=0&limit=1000", w.ws),
            Some(&w.token),
        )
        .await
        .expect(200);
    let created: Vec<&Value> = changes.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"] == "issue.created")
        .collect();
    assert_eq!(created.len(), 2);
    let topics = created[1]["topics"].as_array().unwrap();
    for t in [
        format!("team:{}", w.team),
        format!("issue:{}", id(f)),
        format!("project:{project}"),
    ] {
        assert!(topics.contains(&json!(t)), "{t} in {topics:?}");
    }
}

async fn create_validation(s: TestServer) {
    let w = workspace(&s, "Validation").await;
    let other = workspace(&s, "Elsewhere").await;
    let expect_field = |r: Reply, field: &str| {
        assert_eq!(r.status.as_u16(), 400, "{field}: {}", r.body);
        assert_eq!(r.error_field(), Some(field), "{}", r.body);
    };
    // A rule between fields (a cycle of another team): 422 naming the field.
    let expect_unprocessable = |r: Reply, field: &str| {
        assert_eq!(r.status.as_u16(), 422, "{field}: {}", r.body);
        assert_eq!(r.error_field(), Some(field), "{}", r.body);
    };
    // A well-formed reference to nothing the caller can see: 404 naming the field.
    let expect_unknown = |r: Reply, field: &str| {
        assert_eq!(r.status.as_u16(), 404, "{field}: {}", r.body);
        assert_eq!(r.error_field(), Some(field), "{}", r.body);
    };
    let long = "x".repeat(256);
    expect_field(create(&s, &w, json!({"title": ""})).await, "title");
    expect_field(create(&s, &w, json!({"title": "   "})).await, "title");
    expect_field(create(&s, &w, json!({"title": long})).await, "title");
    expect_field(create(&s, &w, json!({})).await, "title");
    expect_field(
        create(
            &s,
            &w,
            json!({"title": "t", "description": "d".repeat(10_001)}),
        )
        .await,
        "description",
    );
    expect_field(
        create(&s, &w, json!({"title": "t", "priority": "huge"})).await,
        "priority",
    );
    let (_, stranger, _) = sign_up(&s, "stranger").await;
    expect_unknown(
        create(&s, &w, json!({"title": "t", "assignee_id": stranger})).await,
        "assignee_id",
    );
    expect_unknown(
        create(
            &s,
            &w,
            json!({"title": "t", "label_ids": [ids::new_id(Kind::Label, &w.ws)]}),
        )
        .await,
        "label_ids",
    );
    let other_label = seed_label(&s, &other.ws, "theirs").await;
    expect_unknown(
        create(&s, &w, json!({"title": "t", "label_ids": [other_label]})).await,
        "label_ids",
    );
    let mut many = Vec::new();
    for i in 0..21 {
        many.push(seed_label(&s, &w.ws, &format!("l{i}")).await);
    }
    expect_field(
        create(&s, &w, json!({"title": "t", "label_ids": many})).await,
        "label_ids",
    );
    create(&s, &w, json!({"title": "t", "label_ids": &many[..20]}))
        .await
        .expect(201);
    expect_unknown(
        create(
            &s,
            &w,
            json!({"title": "t", "project_id": ids::new_id(Kind::Project, &w.ws)}),
        )
        .await,
        "project_id",
    );
    expect_unknown(
        create(
            &s,
            &w,
            json!({"title": "t", "cycle_id": ids::new_id(Kind::Cycle, &w.ws)}),
        )
        .await,
        "cycle_id",
    );
    // A cycle of another team of the workspace.
    let foreign_cycle = ids::new_id(Kind::Cycle, &w.ws);
    s.state
        .store
        .transact(vec![WriteOp::put(
            Table::Main,
            record_item(
                &keys::cycle(&w.ws, &foreign_cycle),
                "cycle",
                &json!({"id": foreign_cycle, "team_id": ids::new_id(Kind::Team, &w.ws)}),
            ),
        )])
        .await
        .unwrap();
    expect_unprocessable(
        create(&s, &w, json!({"title": "t", "cycle_id": foreign_cycle})).await,
        "cycle_id",
    );
    expect_unknown(
        create(
            &s,
            &w,
            json!({"title": "t", "parent_id": ids::new_id(Kind::Issue, &w.ws)}),
        )
        .await,
        "parent_id",
    );
    let theirs = issue(&s, &other, "theirs").await;
    expect_unknown(
        create(&s, &w, json!({"title": "t", "parent_id": id(&theirs)})).await,
        "parent_id",
    );
    expect_unknown(
        create(
            &s,
            &w,
            json!({"title": "t", "state_id": other.state("Done")}),
        )
        .await,
        "state_id",
    );
    expect_field(
        create(&s, &w, json!({"title": "t", "state_id": "x".repeat(500)})).await,
        "state_id",
    );
    // Server-owned and unknown fields.
    for field in [
        "id",
        "number",
        "identifier",
        "version",
        "created_by",
        "workspace_id",
        "color",
    ] {
        expect_field(
            create(&s, &w, json!({"title": "t", field: "1"})).await,
            field,
        );
    }
    expect_field(create(&s, &w, json!({"title": 5})).await, "title");
    // A team of another workspace is invisible; a malformed one too.
    create(&s, &w, json!({"title": "t", "team_id": other.team}))
        .await
        .expect(404);
    create(&s, &w, json!({"title": "t", "team_id": "team_nope"}))
        .await
        .expect(404);
    // Nothing was created by the refused requests: only the one good issue exists.
    let list = s
        .get(&format!("/issues?team_id={}", w.team), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(list.data()["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list.data()["items"][0]["number"],
        1,
        "refused creates take no number"
    );
}

/// REQUIRED: 20 concurrent creations in one team get 20 distinct numbers, 1..=20.
async fn concurrent_creates_get_distinct_numbers(s: TestServer) {
    let w = workspace(&s, "Concurrency").await;
    let s = std::sync::Arc::new(s);
    let w = std::sync::Arc::new(w);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, w) = (s.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            create(&s, &w, json!({"title": format!("parallel {i}")})).await
        }));
    }
    let mut numbers = BTreeSet::new();
    let mut identifiers = BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap().expect(201);
        numbers.insert(r.data()["number"].as_i64().unwrap());
        identifiers.insert(r.data()["identifier"].as_str().unwrap().to_owned());
    }
    assert_eq!(numbers, (1..=20).collect::<BTreeSet<i64>>());
    assert_eq!(identifiers.len(), 20);
    // Every identifier resolves to the issue with that number.
    for n in [1, 7, 20] {
        let r = s
            .get(&format!("/issues/{}-{n}", w.team_key), Some(&w.token))
            .await
            .expect(200);
        assert_eq!(r.data()["number"], n);
    }
    // The next one continues the sequence.
    let next = issue(&s, &w, "after").await;
    assert_eq!(next["number"], 21);
}

/// REQUIRED: two updates at the same version: exactly one 200 and one 412.
async fn concurrent_updates_one_wins(s: TestServer) {
    let w = workspace(&s, "Races").await;
    let s = std::sync::Arc::new(s);
    for round in 0..3 {
        let i = issue(&s, &w, &format!("contested {round}")).await;
        let path = format!("/issues/{}", id(&i));
        let body_a = json!({"title": "from A", "version": 1});
        let body_b = json!({"title": "from B", "version": 1});
        let (a, b) = tokio::join!(
            s.put(&path, Some(&w.token), &body_a),
            s.put(&path, Some(&w.token), &body_b),
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "A: {} B: {}", a.body, b.body);
        let loser = if a.status.as_u16() == 412 { &a } else { &b };
        assert_eq!(loser.error_code(), "PRECONDITION_FAILED");
        let winner = if a.status.as_u16() == 200 { &a } else { &b };
        let now = s.get(&path, Some(&w.token)).await.expect(200);
        assert_eq!(now.data()["title"], winner.data()["title"]);
        assert_eq!(now.data()["version"], 2);
        // Exactly one title change in the history.
        let act = s
            .get(&format!("{path}/activity"), Some(&w.token))
            .await
            .expect(200);
        let titles = act.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["field"] == "title")
            .count();
        assert_eq!(titles, 1);
    }
}

async fn update_fields_versions_and_activity(s: TestServer) {
    let w = workspace(&s, "Updates").await;
    let member_id = new_member(&s, &w.ws, "member", Role::Member).await.id;
    let label_a = seed_label(&s, &w.ws, "a").await;
    let label_b = seed_label(&s, &w.ws, "b").await;
    let project = seed_project(&s, &w.ws, "P").await;
    let i = create(
        &s,
        &w,
        json!({"title": "Original", "description": "desc", "label_ids": [label_a]}),
    )
    .await
    .expect(201)
    .data()
    .clone();
    let path = format!("/issues/{}", id(&i));

    let r = s
        .put(
            &path,
            Some(&w.token),
            &json!({
                "title": "Renamed",
                "priority": "high",
                "assignee_id": member_id,
                "label_ids": [label_b, label_a],
                "project_id": project,
                "description": null,
                "version": 1,
            }),
        )
        .await
        .expect(200);
    println!("x-storage-calls update issue: {}", r.storage_calls());
    assert!(r.storage_calls() <= 3, "update: {}", r.storage_calls());
    let u = r.data().clone();
    assert_eq!(u["version"], 2);
    assert_eq!(u["title"], "Renamed");
    assert_eq!(u["priority"], "high");
    assert_eq!(u["assignee_id"], json!(member_id));
    assert_eq!(u["label_ids"], json!([label_b, label_a]));
    assert_eq!(u["project_id"], json!(project));
    assert_eq!(u["description"], Value::Null, "explicit null clears");
    assert_eq!(u["number"], i["number"], "number never changes");
    assert_eq!(u["created_at"], i["created_at"]);
    assert_eq!(
        s.get(&path, Some(&w.token)).await.expect(200).data(),
        &u,
        "what was returned is what is stored"
    );

    // A no-op update writes nothing and keeps the version.
    let same = s
        .put(&path, Some(&w.token), &json!({"title": "Renamed"}))
        .await
        .expect(200);
    assert_eq!(same.data()["version"], 2);

    // Stale versions: body and If-Match (weak and strong forms).
    let stale = s
        .put(&path, Some(&w.token), &json!({"title": "x", "version": 1}))
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    s.put_if_match(&path, Some(&w.token), "W/\"1\"", &json!({"title": "x"}))
        .await
        .expect(412);
    s.put_if_match(&path, Some(&w.token), "\"1\"", &json!({"title": "x"}))
        .await
        .expect(412);
    let ok = s
        .put_if_match(
            &path,
            Some(&w.token),
            "W/\"2\"",
            &json!({"assignee_id": null}),
        )
        .await
        .expect(200);
    assert_eq!(ok.data()["assignee_id"], Value::Null);
    assert_eq!(ok.data()["version"], 3);
    let bad = s
        .put_if_match(&path, Some(&w.token), "soon", &json!({"title": "x"}))
        .await
        .expect(400);
    assert_eq!(bad.error_field(), Some("If-Match"));
    let mismatch = s
        .put_if_match(
            &path,
            Some(&w.token),
            "3",
            &json!({"title": "x", "version": 2}),
        )
        .await
        .expect(412);
    assert_eq!(mismatch.error_field(), Some("version"));

    // Validation.
    for (body, field, status) in [
        (json!({"title": null}), "title", 400),
        (json!({"title": ""}), "title", 400),
        (json!({"state_id": null}), "state_id", 400),
        (json!({"priority": "meh"}), "priority", 400),
        (json!({"number": 5}), "number", 400),
        (json!({"identifier": "X-1"}), "identifier", 400),
        (json!({"team_id": w.team}), "team_id", 400),
        (json!({"created_by": "me"}), "created_by", 400),
        (
            json!({"assignee_id": uuid::Uuid::new_v4().to_string()}),
            "assignee_id",
            404,
        ),
        (
            json!({"label_ids": [ids::new_id(Kind::Label, &w.ws)]}),
            "label_ids",
            404,
        ),
        (
            json!({"project_id": ids::new_id(Kind::Project, &w.ws)}),
            "project_id",
            404,
        ),
        (
            json!({"cycle_id": ids::new_id(Kind::Cycle, &w.ws)}),
            "cycle_id",
            404,
        ),
        (json!({"parent_id": id(&i)}), "parent_id", 400),
        (
            json!({"description": "d".repeat(10_001)}),
            "description",
            400,
        ),
    ] {
        let r = s.put(&path, Some(&w.token), &body).await.expect(status);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    assert_eq!(
        s.get(&path, Some(&w.token)).await.expect(200).data()["version"],
        3,
        "refused updates change nothing"
    );

    // Clearing labels and priority.
    let cleared = s
        .put(
            &path,
            Some(&w.token),
            &json!({"label_ids": null, "priority": null, "project_id": null}),
        )
        .await
        .expect(200);
    assert_eq!(cleared.data()["label_ids"], json!([]));
    assert_eq!(cleared.data()["priority"], "none");
    assert_eq!(cleared.data()["project_id"], Value::Null);

    // The activity history: oldest first, who changed which field from what to what.
    let act = s
        .get(&format!("{path}/activity?limit=100"), Some(&w.token))
        .await
        .expect(200);
    let entries = act.data()["items"].as_array().unwrap();
    let fields: Vec<&str> = entries
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "created",
            "title",
            "description",
            "priority",
            "assignee_id",
            "label_ids",
            "project_id",
            "assignee_id",
            "priority",
            "label_ids",
            "project_id",
        ]
    );
    let title = &entries[1];
    assert_eq!(title["from"], "Original");
    assert_eq!(title["to"], "Renamed");
    assert_eq!(title["actor_id"], json!(w.user_id));
    assert_eq!(title["version"], 2);
    assert_eq!(entries[2]["from"], "desc");
    assert_eq!(entries[2]["to"], Value::Null);
    assert_eq!(entries[5]["from"], json!([label_a]));
    assert_eq!(entries[5]["to"], json!([label_b, label_a]));
    assert_eq!(entries[7]["from"], json!(member_id));
    assert_eq!(entries[7]["to"], Value::Null);
    // Paged.
    let page = s
        .get(&format!("{path}/activity?limit=4"), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(page.data()["items"].as_array().unwrap().len(), 4);
    let cursor = page.data()["next_cursor"].as_str().unwrap().to_owned();
    let rest = s
        .get(
            &format!("{path}/activity?limit=100&cursor={cursor}"),
            Some(&w.token),
        )
        .await
        .expect(200);
    assert_eq!(
        rest.data()["items"].as_array().unwrap().len(),
        entries.len() - 4
    );
    assert_eq!(rest.data()["items"][0]["field"], "assignee_id");
}

async fn list_filters_sorts_and_pages(s: TestServer) {
    let w = workspace(&s, "Lists").await;
    let other_user = new_member(&s, &w.ws, "dev", Role::Member).await.id;
    let bug = seed_label(&s, &w.ws, "bug").await;
    let project = seed_project(&s, &w.ws, "Roadmap").await;
    // 9 issues, created in order ENG-1..ENG-9.
    let specs = [
        ("Alpha login", "high", Some(&w.user_id), true, false),
        ("Beta search", "low", None, false, true),
        ("Gamma LOGIN page", "urgent", Some(&other_user), true, true),
        ("Delta", "none", None, false, false),
        ("Epsilon", "medium", Some(&w.user_id), false, true),
        ("Zeta login", "high", Some(&other_user), true, false),
        ("Eta", "urgent", None, false, false),
        ("Theta", "none", Some(&w.user_id), true, true),
        ("Iota", "low", None, false, false),
    ];
    let mut made = Vec::new();
    for (title, priority, assignee, labeled, in_project) in specs {
        let mut body = json!({"title": title, "priority": priority});
        if let Some(a) = assignee {
            body["assignee_id"] = json!(a);
        }
        if labeled {
            body["label_ids"] = json!([bug]);
        }
        if in_project {
            body["project_id"] = json!(project);
        }
        made.push(create(&s, &w, body).await.expect(201).data().clone());
    }
    let ident = |n: usize| format!("{}-{n}", w.team_key);
    let idents = |ns: &[usize]| ns.iter().map(|&n| ident(n)).collect::<Vec<_>>();
    // Move some along the workflow.
    for (n, state) in [
        (2, "In Progress"),
        (5, "Done"),
        (9, "Done"),
        (7, "Canceled"),
    ] {
        s.put(
            &format!("/issues/{}", id(&made[n - 1])),
            Some(&w.token),
            &json!({"state_id": w.state(state)}),
        )
        .await
        .expect(200);
    }
    let team = format!("team_id={}", w.team);

    // Default: newest first; pages of 2 cover everything once.
    let (all, pages) = all_pages(&s, &w.token, &format!("{team}&limit=2")).await;
    assert_eq!(all, idents(&[9, 8, 7, 6, 5, 4, 3, 2, 1]));
    assert_eq!(pages, 5);
    let (asc, _) = all_pages(&s, &w.token, &format!("{team}&order=asc&limit=4")).await;
    assert_eq!(asc, idents(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    // Workspace-wide (current workspace and named), same order.
    let (ws_all, _) = all_pages(&s, &w.token, "limit=3").await;
    assert_eq!(ws_all, idents(&[9, 8, 7, 6, 5, 4, 3, 2, 1]));
    let (ws_named, _) = all_pages(
        &s,
        &w.token,
        &format!("workspace_id={}&order=asc&limit=5", w.ws),
    )
    .await;
    assert_eq!(ws_named, idents(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));

    // Storage cost of a page of 50 (team or workspace, by creation).
    let page = s
        .get(&format!("/issues?{team}&limit=50"), Some(&w.token))
        .await
        .expect(200);
    println!(
        "x-storage-calls list issues (team, page of 50): {}",
        page.storage_calls()
    );
    assert!(page.storage_calls() <= 2, "{}", page.storage_calls());
    assert_eq!(page.data()["next_cursor"], Value::Null);
    let page = s
        .get(
            &format!("/issues?workspace_id={}&limit=50", w.ws),
            Some(&w.token),
        )
        .await
        .expect(200);
    println!(
        "x-storage-calls list issues (workspace, page of 50): {}",
        page.storage_calls()
    );
    assert!(page.storage_calls() <= 2, "{}", page.storage_calls());

    // Filters, each across pages.
    let cases: Vec<(String, Vec<usize>)> = vec![
        (format!("assignee_id={}", w.user_id), vec![8, 5, 1]),
        (format!("assignee_id={other_user}"), vec![6, 3]),
        (format!("label_id={bug}"), vec![8, 6, 3, 1]),
        (format!("project_id={project}"), vec![8, 5, 3, 2]),
        ("priority=high".into(), vec![6, 1]),
        ("priority=none".into(), vec![8, 4]),
        (format!("state_id={}", w.state("Done")), vec![9, 5]),
        ("state_category=completed".into(), vec![9, 5]),
        ("state_category=unstarted".into(), vec![8, 6, 4, 3, 1]),
        ("state_category=canceled".into(), vec![7]),
        ("q=LoGiN".into(), vec![6, 3, 1]),
        (
            format!("q=login&label_id={bug}&assignee_id={other_user}"),
            vec![6, 3],
        ),
        (format!("project_id={project}&priority=urgent"), vec![3]),
        (
            format!("assignee_id={}&state_category=completed", w.user_id),
            vec![5],
        ),
        ("q=nothing-matches".into(), vec![]),
    ];
    for (filter, expected) in cases {
        for scope in [team.clone(), format!("workspace_id={}", w.ws)] {
            let (got, _) = all_pages(&s, &w.token, &format!("{scope}&{filter}&limit=2")).await;
            assert_eq!(got, idents(&expected), "{scope}&{filter}");
        }
    }

    // Sorts.
    let (by_priority, _) = all_pages(&s, &w.token, &format!("{team}&sort=priority&limit=2")).await;
    assert_eq!(
        by_priority,
        idents(&[7, 3, 6, 1, 5, 9, 2, 8, 4]),
        "urgent first, newest first within"
    );
    let (by_priority_asc, _) = all_pages(
        &s,
        &w.token,
        &format!("workspace_id={}&sort=priority&order=asc&limit=4", w.ws),
    )
    .await;
    assert_eq!(by_priority_asc, idents(&[4, 8, 2, 9, 5, 1, 6, 3, 7]));
    let (prio_assignee, _) = all_pages(
        &s,
        &w.token,
        &format!("sort=priority&assignee_id={}&limit=1", w.user_id),
    )
    .await;
    assert_eq!(
        prio_assignee,
        idents(&[1, 5, 8]),
        "in-memory sort of a relation set"
    );
    // Updated: touch 4, then 1 (each a distinct instant).
    for n in [4, 1] {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        s.put(
            &format!("/issues/{}", id(&made[n - 1])),
            Some(&w.token),
            &json!({"title": format!("touched {n}")}),
        )
        .await
        .expect(200);
    }
    let (by_updated, _) = all_pages(&s, &w.token, &format!("{team}&sort=updated&limit=3")).await;
    assert_eq!(
        &by_updated[..4],
        &idents(&[1, 4, 7, 9])[..],
        "most recently updated first"
    );
    assert_eq!(by_updated.len(), 9);
    let (upd_project, _) = all_pages(
        &s,
        &w.token,
        &format!("sort=updated&project_id={project}&limit=2"),
    )
    .await;
    assert_eq!(upd_project.len(), 4);
    let (by_updated_ws, _) = all_pages(
        &s,
        &w.token,
        &format!("workspace_id={}&sort=updated&order=asc&limit=4", w.ws),
    )
    .await;
    assert_eq!(&by_updated_ws[7..], &idents(&[4, 1])[..]);

    // Bad parameters name themselves.
    for (query, field) in [
        ("sort=title", "sort"),
        ("order=sideways", "order"),
        ("priority=highest", "priority"),
        ("state_category=done", "state_category"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("cursor=garbage", "cursor"),
        ("colour=red", "colour"),
    ] {
        let r = s
            .get(&format!("/issues?{team}&{query}"), Some(&w.token))
            .await
            .expect(400);
        assert_eq!(r.error_field(), Some(field), "{query}: {}", r.body);
    }
    // A cursor from one list is refused by another.
    let first = s
        .get(&format!("/issues?{team}&limit=1"), Some(&w.token))
        .await
        .expect(200);
    let c = first.data()["next_cursor"].as_str().unwrap().to_owned();
    let r = s
        .get(
            &format!("/issues?{team}&sort=priority&cursor={c}"),
            Some(&w.token),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("cursor"));
}

async fn transitions_allowed_and_refused(s: TestServer) {
    let w = workspace(&s, "Flow").await;
    let other = workspace(&s, "Other Flow").await;
    let i = issue(&s, &w, "Move me").await;
    let path = format!("/issues/{}", id(&i));

    // Unrestricted: every other state.
    let t = s
        .get(&format!("{path}/transitions"), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(t.data()["current_state"]["name"], "Todo");
    let names: Vec<&str> = t.data()["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Triage", "Backlog", "In Progress", "Done", "Canceled"]
    );

    // Todo may only go to In Progress or Canceled.
    restrict_state(&s, &w, "Todo", &["In Progress", "Canceled"]).await;
    let t = s
        .get(&format!("{path}/transitions"), Some(&w.token))
        .await
        .expect(200);
    let allowed: Vec<&str> = t.data()["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(allowed, [w.state("In Progress"), w.state("Canceled")]);

    let refused = s
        .post(
            &format!("{path}/transitions"),
            Some(&w.token),
            &json!({"state_id": w.state("Done")}),
        )
        .await
        .expect(409);
    assert_eq!(refused.error_code(), "CONFLICT");
    let msg = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("In Progress") && msg.contains(w.state("In Progress")),
        "{msg}"
    );
    assert!(msg.contains(w.state("Canceled")), "{msg}");
    // The same rule holds for PUT.
    s.put(&path, Some(&w.token), &json!({"state_id": w.state("Done")}))
        .await
        .expect(409);
    // A state of another workflow (or nothing at all) is not found.
    let foreign = s
        .post(
            &format!("{path}/transitions"),
            Some(&w.token),
            &json!({"state_id": other.state("Done")}),
        )
        .await
        .expect(404);
    assert_eq!(foreign.error_field(), Some("state_id"));
    let r = s
        .post(&format!("{path}/transitions"), Some(&w.token), &json!({}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("state_id"));
    let unchanged = s.get(&path, Some(&w.token)).await.expect(200);
    assert_eq!(
        unchanged.data()["version"],
        1,
        "refused moves change nothing"
    );

    // Allowed: moves, records activity, bumps the version; stale version -> 412.
    let moved = s
        .post(
            &format!("{path}/transitions"),
            Some(&w.token),
            &json!({"state_id": w.state("In Progress"), "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(moved.data()["state_id"], w.state("In Progress"));
    assert_eq!(moved.data()["version"], 2);
    println!(
        "x-storage-calls transition issue: {}",
        moved.storage_calls()
    );
    assert!(
        moved.storage_calls() <= 4,
        "auth+issue, states, counters, write"
    );
    s.post(
        &format!("{path}/transitions"),
        Some(&w.token),
        &json!({"state_id": w.state("Done"), "version": 1}),
    )
    .await
    .expect(412);
    // From In Progress (unrestricted) Done is fine.
    s.post(
        &format!("{path}/transitions"),
        Some(&w.token),
        &json!({"state_id": w.state("Done")}),
    )
    .await
    .expect(200);
    let act = s
        .get(&format!("{path}/activity"), Some(&w.token))
        .await
        .expect(200);
    let moves: Vec<(&Value, &Value)> = act.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["field"] == "state_id")
        .map(|a| (&a["from"], &a["to"]))
        .collect();
    assert_eq!(
        moves,
        [
            (&json!(w.state("Todo")), &json!(w.state("In Progress"))),
            (&json!(w.state("In Progress")), &json!(w.state("Done"))),
        ]
    );
    let changes = s
        .get(
            &format!("/workspaces/{}/changes?since=0&limit=1000", w.ws),
            Some(&w.token),
        )
        .await
        .expect(200);
    let updates = changes.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"] == "issue.updated" && c["entity_id"] == i["id"])
        .count();
    assert_eq!(updates, 2);
}

async fn sub_issues_and_parent_cycles(s: TestServer) {
    let w = workspace(&s, "Trees").await;
    let a = issue(&s, &w, "A").await;
    let b = create(&s, &w, json!({"title": "B", "parent_id": id(&a)}))
        .await
        .expect(201)
        .data()
        .clone();
    let c = create(&s, &w, json!({"title": "C", "parent_id": id(&b)}))
        .await
        .expect(201)
        .data()
        .clone();
    let d = create(&s, &w, json!({"title": "D", "parent_id": id(&a)}))
        .await
        .expect(201)
        .data()
        .clone();
    let kids = s
        .get(&format!("/issues/{}/children", id(&a)), Some(&w.token))
        .await
        .expect(200);
    println!("x-storage-calls children: {}", kids.storage_calls());
    assert_eq!(kids.storage_calls(), 2);
    let titles: Vec<&str> = kids.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["B", "D"], "oldest first");
    let (listed, _) = all_pages(
        &s,
        &w.token,
        &format!("parent_id={}&order=asc&limit=1", id(&a)),
    )
    .await;
    assert_eq!(
        listed,
        [
            b["identifier"].as_str().unwrap(),
            d["identifier"].as_str().unwrap()
        ]
    );

    // A under C would make a loop A -> B -> C -> A; A under itself too.
    for target in [&c, &b, &a] {
        let r = s
            .put(
                &format!("/issues/{}", id(&a)),
                Some(&w.token),
                &json!({"parent_id": id(target)}),
            )
            .await
            .expect(400);
        assert_eq!(r.error_field(), Some("parent_id"));
    }
    // Re-parenting that keeps a tree is fine: D under C; C's children then list it.
    let moved = s
        .put(
            &format!("/issues/{}", id(&d)),
            Some(&w.token),
            &json!({"parent_id": id(&c)}),
        )
        .await
        .expect(200);
    assert_eq!(moved.data()["parent_id"], c["id"]);
    let under_c = s
        .get(&format!("/issues/{}/children", id(&c)), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(under_c.data()["items"][0]["id"], d["id"]);
    let under_a = s
        .get(&format!("/issues/{}/children", id(&a)), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(under_a.data()["items"].as_array().unwrap().len(), 1);

    // Deleting B: C loses its parent (with activity); B's identifier is gone.
    s.delete(&format!("/issues/{}", id(&b)), Some(&w.token))
        .await
        .expect(200);
    let c_now = s
        .get(&format!("/issues/{}", id(&c)), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(c_now.data()["parent_id"], Value::Null);
    s.get(&format!("/issues/{}", id(&b)), Some(&w.token))
        .await
        .expect(404);
    s.get(
        &format!("/issues/{}", b["identifier"].as_str().unwrap()),
        Some(&w.token),
    )
    .await
    .expect(404);
    let (left, _) = all_pages(&s, &w.token, &format!("team_id={}&order=asc", w.team)).await;
    assert_eq!(left.len(), 3);
    assert!(!left.contains(&b["identifier"].as_str().unwrap().to_owned()));
    s.delete(&format!("/issues/{}", id(&b)), Some(&w.token))
        .await
        .expect(404);
    s.get(&format!("/issues/{}/children", id(&b)), Some(&w.token))
        .await
        .expect(404);
}

/// Two concurrent moves that together would close a loop (A under B, B under A): never both.
async fn concurrent_reparenting_keeps_a_tree(s: TestServer) {
    let w = workspace(&s, "Forest").await;
    for _ in 0..3 {
        let a = issue(&s, &w, "A").await;
        let b = issue(&s, &w, "B").await;
        let (path_a, path_b) = (format!("/issues/{}", id(&a)), format!("/issues/{}", id(&b)));
        let (under_b, under_a) = (json!({"parent_id": id(&b)}), json!({"parent_id": id(&a)}));
        let (ra, rb) = tokio::join!(
            s.put(&path_a, Some(&w.token), &under_b),
            s.put(&path_b, Some(&w.token), &under_a),
        );
        let ok = [&ra, &rb]
            .iter()
            .filter(|r| r.status.as_u16() == 200)
            .count();
        assert_eq!(ok, 1, "A: {} B: {}", ra.body, rb.body);
        let refused = if ra.status.as_u16() == 200 { &rb } else { &ra };
        assert!(
            [400, 409].contains(&refused.status.as_u16()),
            "a loop (400) or a concurrent change (409): {}",
            refused.body
        );
        let a_now = s.get(&path_a, Some(&w.token)).await.expect(200);
        let b_now = s.get(&path_b, Some(&w.token)).await.expect(200);
        let parents = [&a_now.data()["parent_id"], &b_now.data()["parent_id"]];
        assert_eq!(
            parents.iter().filter(|p| p.is_null()).count(),
            1,
            "exactly one of them has a parent: {parents:?}"
        );
    }
}

async fn tenancy_and_roles(s: TestServer) {
    let w = workspace(&s, "Tenant").await;
    let other = workspace(&s, "Intruder").await;
    let guest_token = new_member(&s, &w.ws, "guest", Role::Guest).await.token;
    let i = issue(&s, &w, "Private").await;
    let path = format!("/issues/{}", id(&i));

    // Another workspace's owner sees nothing and changes nothing.
    for r in [
        s.get(&path, Some(&other.token)).await,
        s.put(&path, Some(&other.token), &json!({"title": "mine"}))
            .await,
        s.delete(&path, Some(&other.token)).await,
        s.get(&format!("{path}/activity"), Some(&other.token)).await,
        s.get(&format!("{path}/transitions"), Some(&other.token))
            .await,
        s.get(&format!("{path}/children"), Some(&other.token)).await,
        s.get(&format!("/issues?team_id={}", w.team), Some(&other.token))
            .await,
        s.get(
            &format!("/issues?workspace_id={}", w.ws),
            Some(&other.token),
        )
        .await,
        s.get(
            &format!(
                "/issues/{}?workspace_id={}",
                i["identifier"].as_str().unwrap(),
                w.ws
            ),
            Some(&other.token),
        )
        .await,
    ] {
        assert_eq!(r.status.as_u16(), 404, "{}", r.body);
    }
    // The identifier in the intruder's own (current) workspace names nothing.
    s.get(
        &format!("/issues/{}", i["identifier"].as_str().unwrap()),
        Some(&other.token),
    )
    .await
    .expect(404);
    // Their issue ids do not open ours and vice versa: same number, different issues.
    let theirs = issue(&s, &other, "Theirs").await;
    assert_eq!(theirs["number"], 1);
    s.get(&format!("/issues/{}", id(&theirs)), Some(&w.token))
        .await
        .expect(404);

    // Guests read but do not write.
    s.get(&path, Some(&guest_token)).await.expect(200);
    s.get(&format!("/issues?team_id={}", w.team), Some(&guest_token))
        .await
        .expect(200);
    for r in [
        s.post(
            "/issues",
            Some(&guest_token),
            &json!({"team_id": w.team, "title": "g"}),
        )
        .await,
        s.put(&path, Some(&guest_token), &json!({"title": "g"}))
            .await,
        s.delete(&path, Some(&guest_token)).await,
        s.post(
            &format!("{path}/transitions"),
            Some(&guest_token),
            &json!({"state_id": w.state("Done")}),
        )
        .await,
    ] {
        assert_eq!(r.status.as_u16(), 403, "{}", r.body);
    }
    // No token at all.
    s.get(&path, None).await.expect(401);
    let still = s.get(&path, Some(&w.token)).await.expect(200);
    assert_eq!(still.data(), &i, "nothing changed");
}

on_every_store!(
    create_get_and_identifier,
    create_validation,
    concurrent_creates_get_distinct_numbers,
    concurrent_updates_one_wins,
    update_fields_versions_and_activity,
    list_filters_sorts_and_pages,
    transitions_allowed_and_refused,
    sub_issues_and_parent_cycles,
    concurrent_reparenting_keeps_a_tree,
    tenancy_and_roles,
);
