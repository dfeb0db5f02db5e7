//! Cycles through the shim on both stores: numbering, dates and status, optimistic
//! concurrency, issue assignment, stats, tenancy.

use std::collections::BTreeSet;

use momentum_shared::kernel::access::Role;
use momentum_tests::{Reply, TestServer, Ws, id, new_member, on_every_store, workspace};
use serde_json::{Value, json};

/// Today's date (the server's clock) shifted by `days`, as YYYY-MM-DD.
fn day(s: &TestServer, days: i64) -> String {
    let mut d = s.state.ctx.clock.now().date();
    for _ in 0..days.abs() {
        d = if days < 0 {
            d.previous_day().unwrap()
        } else {
            d.next_day().unwrap()
        };
    }
    d.to_string()
}

async fn new_cycle(s: &TestServer, w: &Ws, starts: &str, ends: &str) -> Reply {
    s.post(
        "/cycles",
        Some(&w.token),
        &json!({"team_id": w.team, "starts_on": starts, "ends_on": ends}),
    )
    .await
}

async fn new_issue(s: &TestServer, w: &Ws, title: &str) -> Value {
    s.post(
        "/issues",
        Some(&w.token),
        &json!({"team_id": w.team, "title": title}),
    )
    .await
    .expect(201)
    .data()
    .clone()
}

async fn cycle_crud_and_status(s: TestServer) {
    let w = workspace(&s, "Cycles").await;
    let past = new_cycle(&s, &w, &day(&s, -20), &day(&s, -7))
        .await
        .expect(201);
    let p = past.data().clone();
    assert_eq!(p["number"], 1);
    assert_eq!(p["name"], "Cycle 1");
    assert_eq!(p["status"], "completed");
    assert_eq!(p["team_id"], json!(w.team));
    assert_eq!(p["version"], 1);
    let current = new_cycle(&s, &w, &day(&s, -3), &day(&s, 10))
        .await
        .expect(201);
    assert_eq!(current.data()["number"], 2);
    assert_eq!(current.data()["status"], "active");
    let future = s
        .post(
            "/cycles",
            Some(&w.token),
            &json!({"team_id": w.team, "name": "Next up", "description": "stretch",
                "starts_on": day(&s, 11), "ends_on": day(&s, 25)}),
        )
        .await
        .expect(201);
    let f = future.data().clone();
    assert_eq!(f["number"], 3);
    assert_eq!(f["name"], "Next up");
    assert_eq!(f["status"], "planned");
    // Today is inside a cycle that starts or ends today.
    let edge = new_cycle(&s, &w, &day(&s, 0), &day(&s, 1))
        .await
        .expect(201);
    assert_eq!(edge.data()["status"], "active");

    let got = s
        .get(&format!("/cycles/{}", id(&f)), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(got.data(), &f);
    assert_eq!(got.storage_calls(), 1);

    // Listed by start date, paged.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/cycles?team_id={}&limit=3&cursor={c}", w.team),
            None => format!("/cycles?team_id={}&limit=3", w.team),
        };
        let page = s.get(&path, Some(&w.token)).await.expect(200);
        for c in page.data()["items"].as_array().unwrap() {
            seen.push(c["number"].as_i64().unwrap());
        }
        match page.data()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, [1, 2, 4, 3]);

    // Update: partial, versioned, dates checked together.
    let path = format!("/cycles/{}", id(&f));
    let u = s
        .put(
            &path,
            Some(&w.token),
            &json!({"name": "Renamed", "description": null, "ends_on": day(&s, 30), "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(u.data()["name"], "Renamed");
    assert_eq!(u.data()["description"], Value::Null);
    assert_eq!(u.data()["ends_on"], json!(day(&s, 30)));
    assert_eq!(u.data()["starts_on"], f["starts_on"]);
    assert_eq!(u.data()["version"], 2);
    let stale = s
        .put(&path, Some(&w.token), &json!({"name": "x", "version": 1}))
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    // Moving the start past the end is refused on ends_on.
    let r = s
        .put(&path, Some(&w.token), &json!({"starts_on": day(&s, 40)}))
        .await
        .expect(422);
    assert_eq!(r.error_field(), Some("ends_on"));
    for (body, field) in [
        (json!({"number": 9}), "number"),
        (json!({"team_id": w.team}), "team_id"),
        (json!({"name": ""}), "name"),
        (json!({"starts_on": "someday"}), "starts_on"),
        (json!({"ends_on": "2026-13-01"}), "ends_on"),
    ] {
        let r = s.put(&path, Some(&w.token), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }

    // Delete.
    s.delete(&path, Some(&w.token)).await.expect(200);
    s.get(&path, Some(&w.token)).await.expect(404);
    s.delete(&path, Some(&w.token)).await.expect(404);
}

async fn cycle_validation_and_tenancy(s: TestServer) {
    let w = workspace(&s, "Cycle Rules").await;
    let other = workspace(&s, "Other Cycles").await;
    for (body, field, status) in [
        (
            json!({"team_id": w.team, "starts_on": "2026-02-10", "ends_on": "2026-02-01"}),
            "ends_on",
            422,
        ),
        (
            json!({"team_id": w.team, "starts_on": "2026-02-10", "ends_on": "2026-02-10"}),
            "ends_on",
            422,
        ),
        (
            json!({"team_id": w.team, "starts_on": "10/02/2026", "ends_on": "2026-02-20"}),
            "starts_on",
            400,
        ),
        (
            json!({"team_id": w.team, "starts_on": "2026-02-10"}),
            "ends_on",
            400,
        ),
        (
            json!({"team_id": w.team, "starts_on": "2026-02-10", "ends_on": "2026-02-30"}),
            "ends_on",
            400,
        ),
        (
            json!({"team_id": w.team, "name": "n".repeat(101), "starts_on": "2026-02-10", "ends_on": "2026-02-20"}),
            "name",
            400,
        ),
        (
            json!({"team_id": w.team, "number": 3, "starts_on": "2026-02-10", "ends_on": "2026-02-20"}),
            "number",
            400,
        ),
        (
            json!({"team_id": w.team, "status": "active", "starts_on": "2026-02-10", "ends_on": "2026-02-20"}),
            "status",
            400,
        ),
    ] {
        let r = s
            .post("/cycles", Some(&w.token), &body)
            .await
            .expect(status);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    // Another workspace's team, cycle and list are invisible.
    new_cycle(&s, &other, "2026-02-01", "2026-02-14").await;
    s.post(
        "/cycles",
        Some(&w.token),
        &json!({"team_id": other.team, "starts_on": "2026-02-01", "ends_on": "2026-02-14"}),
    )
    .await
    .expect(404);
    let theirs = new_cycle(&s, &other, "2026-03-01", "2026-03-14")
        .await
        .expect(201);
    s.get(&format!("/cycles/{}", id(theirs.data())), Some(&w.token))
        .await
        .expect(404);
    s.get(&format!("/cycles?team_id={}", other.team), Some(&w.token))
        .await
        .expect(404);
    s.get("/cycles", Some(&w.token)).await.expect(400);
    s.get("/cycles/cyc_nope", Some(&w.token)).await.expect(404);

    // Guests read, do not write.
    let guest = new_member(&s, &w.ws, "guest", Role::Guest).await.token;
    let mine = new_cycle(&s, &w, "2026-02-01", "2026-02-14")
        .await
        .expect(201);
    let path = format!("/cycles/{}", id(mine.data()));
    s.get(&path, Some(&guest)).await.expect(200);
    s.get(&format!("{path}/stats"), Some(&guest))
        .await
        .expect(200);
    s.post(
        "/cycles",
        Some(&guest),
        &json!({"team_id": w.team, "starts_on": "2026-02-01", "ends_on": "2026-02-14"}),
    )
    .await
    .expect(403);
    s.put(&path, Some(&guest), &json!({"name": "g"}))
        .await
        .expect(403);
    s.delete(&path, Some(&guest)).await.expect(403);

    // Concurrent creates in one team get distinct numbers.
    let s = std::sync::Arc::new(s);
    let w = std::sync::Arc::new(w);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (s, w) = (s.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            new_cycle(&s, &w, "2026-04-01", "2026-04-14").await
        }));
    }
    let mut numbers = BTreeSet::new();
    for t in tasks {
        numbers.insert(
            t.await.unwrap().expect(201).data()["number"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(numbers, (2..=7).collect::<BTreeSet<i64>>());
}

async fn cycle_issues_and_stats(s: TestServer) {
    let w = workspace(&s, "Sprint").await;
    let other = workspace(&s, "Not Ours").await;
    let cycle = new_cycle(&s, &w, &day(&s, -1), &day(&s, 13))
        .await
        .expect(201);
    let cid = id(cycle.data());
    let path = format!("/cycles/{cid}");

    let empty = s
        .get(&format!("{path}/stats"), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(empty.data()["total"], 0);
    assert_eq!(empty.data()["completion_percent"], 0.0);

    let mut issues = Vec::new();
    for t in ["one", "two", "three", "four", "five"] {
        issues.push(new_issue(&s, &w, t).await);
    }
    let ids: Vec<String> = issues.iter().map(id).collect();
    let added = s
        .post(
            &format!("{path}/issues"),
            Some(&w.token),
            &json!({"issue_ids": [ids[0], ids[1], ids[2], ids[3], ids[0]]}),
        )
        .await
        .expect(200);
    println!(
        "x-storage-calls assign 4 issues to a cycle: {}",
        added.storage_calls()
    );
    assert!(
        added.storage_calls() <= 3,
        "auth+cycle+issues, counters, write"
    );
    let returned = added.data().as_array().unwrap();
    assert_eq!(returned.len(), 4, "duplicates collapse");
    assert!(returned.iter().all(|i| i["cycle_id"] == json!(cid)));
    assert!(returned.iter().all(|i| i["version"] == 2));
    // Adding again is a no-op.
    let again = s
        .post(
            &format!("{path}/issues"),
            Some(&w.token),
            &json!({"issue_ids": [ids[0]]}),
        )
        .await
        .expect(200);
    assert_eq!(again.data()[0]["version"], 2);
    // The issue list filter and the issue itself agree.
    let listed = s
        .get(&format!("/issues?cycle_id={cid}&order=asc"), Some(&w.token))
        .await
        .expect(200);
    let listed: Vec<String> = listed.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(listed, &ids[..4]);
    let act = s
        .get(&format!("/issues/{}/activity", ids[1]), Some(&w.token))
        .await
        .expect(200);
    let entry = act.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["field"] == "cycle_id")
        .cloned()
        .expect("activity of the assignment");
    assert_eq!(entry["from"], Value::Null);
    assert_eq!(entry["to"], json!(cid));

    // Move them along: one done, one canceled, one started, one left in Todo.
    for (n, state) in [(0, "Done"), (1, "Canceled"), (2, "In Progress")] {
        s.post(
            &format!("/issues/{}/transitions", ids[n]),
            Some(&w.token),
            &json!({"state_id": w.states[state]}),
        )
        .await
        .expect(200);
    }
    let stats = s
        .get(&format!("{path}/stats"), Some(&w.token))
        .await
        .expect(200);
    println!("x-storage-calls cycle stats: {}", stats.storage_calls());
    assert!(
        stats.storage_calls() <= 3,
        "auth+cycle, cycle issues, states"
    );
    let st = stats.data();
    assert_eq!(st["total"], 4);
    assert_eq!(st["completed"], 1);
    assert_eq!(st["canceled"], 1);
    assert_eq!(st["by_category"]["started"], 1);
    assert_eq!(st["by_category"]["unstarted"], 1);
    assert_eq!(st["by_category"]["completed"], 1);
    assert_eq!(st["completion_percent"], 33.3, "1 of the 3 not canceled");

    // Taking one out.
    let out = s
        .delete(&format!("{path}/issues/{}", ids[3]), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(out.data()["cycle_id"], Value::Null);
    s.delete(&format!("{path}/issues/{}", ids[3]), Some(&w.token))
        .await
        .expect(404);
    s.delete(&format!("{path}/issues/{}", ids[4]), Some(&w.token))
        .await
        .expect(404);
    let stats = s
        .get(&format!("{path}/stats"), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(stats.data()["total"], 3);
    assert_eq!(stats.data()["completion_percent"], 50.0);

    // Assignment validation.
    let theirs = new_issue(&s, &other, "theirs").await;
    let too_many: Vec<String> = (0..51).map(|n| format!("iss_{n}")).collect();
    for (body, field, status) in [
        (json!({"issue_ids": []}), "issue_ids", 400),
        (json!({"issue_ids": too_many}), "issue_ids", 400),
        (json!({"issue_ids": [id(&theirs)]}), "issue_ids", 404),
        (json!({"issue_ids": ["iss_missing"]}), "issue_ids", 404),
        (json!({"issue_ids": [ids[4]], "extra": 1}), "extra", 400),
        (json!({}), "issue_ids", 400),
    ] {
        let r = s
            .post(&format!("{path}/issues"), Some(&w.token), &body)
            .await
            .expect(status);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }

    // Deleting the cycle takes its issues out of it.
    s.delete(&path, Some(&w.token)).await.expect(200);
    for i in &ids[..3] {
        let got = s
            .get(&format!("/issues/{i}"), Some(&w.token))
            .await
            .expect(200);
        assert_eq!(got.data()["cycle_id"], Value::Null);
    }
    let listed = s
        .get(&format!("/issues?cycle_id={cid}"), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(listed.data()["items"], json!([]));
    s.post(
        &format!("{path}/issues"),
        Some(&w.token),
        &json!({"issue_ids": [ids[4]]}),
    )
    .await
    .expect(404);
}

on_every_store!(
    cycle_crud_and_status,
    cycle_validation_and_tenancy,
    cycle_issues_and_stats,
);
