//! No dangling references (issue 10, reproduction 5): deleting a label, a project or a
//! workflow state, or removing a member, leaves no issue or project naming it, and the list
//! filters by it answer nothing. Each case runs on the embedded store and on DynamoDB (moto);
//! the large fan-out and the interrupted delete run on the embedded store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::areas::issues::references::{self, MAX_REWRITES_PER_REQUEST};
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::kernel::keys;
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::faults::{Fault, FaultyStore, OpKind};
use momentum_shared::storage::{Query, Store, Table};
use momentum_tests::{Backend, TestServer, World, id, on_every_store, world};
use serde_json::{Value, json};

/// A new issue of the world's team, created by the owner.
async fn new_issue(s: &TestServer, w: &World, body: Value) -> String {
    let mut body = body;
    body["team_id"] = json!(w.team_id);
    id(s.post("/issues", w.owner.t(), &body)
        .await
        .expect(201)
        .data())
}

async fn issue(s: &TestServer, w: &World, id: &str) -> Value {
    s.get(&format!("/issues/{id}"), w.owner.t())
        .await
        .expect(200)
        .data()
        .clone()
}

async fn new_label(s: &TestServer, w: &World, name: &str) -> String {
    let body = json!({"workspace_id": w.ws, "name": name, "color": "#3366AA"});
    id(s.post("/labels", w.admin.t(), &body)
        .await
        .expect(201)
        .data())
}

async fn new_project(s: &TestServer, w: &World, extra: Value) -> String {
    let key = format!(
        "P{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6].to_uppercase()
    );
    let mut body = json!({"workspace_id": w.ws, "name": "Website", "project_key": key});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    id(s.post("/projects", w.owner.t(), &body)
        .await
        .expect(201)
        .data())
}

/// Ids of every issue `GET /issues?workspace_id=..&{query}` lists, over all pages.
async fn listed(s: &TestServer, w: &World, query: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/issues?workspace_id={}&limit=100&{query}", w.ws);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = s.get(&path, w.owner.t()).await.expect(200);
        for item in page.data()["items"].as_array().unwrap() {
            out.insert(id(item));
        }
        match page.data()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn set<const N: usize>(ids: [&String; N]) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

/// (event, entity id) of every change record after `since`, in order.
async fn events_since(s: &TestServer, w: &World, since: i64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut since = since;
    loop {
        let page = s
            .get(
                &format!("/workspaces/{}/changes?since={since}&limit=1000", w.ws),
                w.owner.t(),
            )
            .await
            .expect(200);
        for c in page.data()["changes"].as_array().unwrap() {
            out.push((
                c["event"].as_str().unwrap().to_owned(),
                c["entity_id"].as_str().unwrap().to_owned(),
            ));
        }
        since = page.data()["last_seq"].as_i64().unwrap();
        if page.data()["has_more"] != json!(true) {
            return out;
        }
    }
}

/// How many records of each event name.
fn counts(events: &[(String, String)]) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for (event, _) in events {
        *out.entry(event.as_str()).or_default() += 1;
    }
    out
}

/// The entity ids of the `issue.updated` records.
fn updated_issues(events: &[(String, String)]) -> Vec<String> {
    events
        .iter()
        .filter(|(e, _)| e == "issue.updated")
        .map(|(_, id)| id.clone())
        .collect()
}

/// Items of the workspace still marked as being deleted (a finished delete leaves none).
async fn marked(s: &TestServer, ws: &str) -> usize {
    let page = s
        .state
        .store
        .query(&Query::new(Table::Main, keys::workspace_partition(ws)).limit(1000))
        .await
        .unwrap();
    assert!(page.next_cursor.is_none());
    page.items
        .iter()
        .filter(|i| references::is_marked(i))
        .count()
}

/// State ids by name of a workflow, as `token` reads them.
async fn state_ids(
    s: &TestServer,
    token: Option<&str>,
    workflow_id: &str,
) -> BTreeMap<String, String> {
    let wf = s
        .get(&format!("/workflows/{workflow_id}"), token)
        .await
        .expect(200);
    wf.data()["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| (st["name"].as_str().unwrap().to_owned(), id(st)))
        .collect()
}

async fn deleting_a_label_removes_it_from_its_issues(s: TestServer) {
    let w = world(&s).await;
    let bug = new_label(&s, &w, "bug").await;
    let ui = new_label(&s, &w, "ui").await;
    let a = new_issue(&s, &w, json!({"title": "A", "label_ids": [bug, ui]})).await;
    let b = new_issue(
        &s,
        &w,
        json!({"title": "B", "label_ids": [bug], "priority": "high"}),
    )
    .await;
    let c = new_issue(&s, &w, json!({"title": "C", "label_ids": [ui]})).await;
    assert_eq!(
        listed(&s, &w, &format!("label_id={bug}")).await,
        set([&a, &b])
    );
    let before = w.last_seq(&s).await;

    let r = s
        .delete(&format!("/labels/{bug}"), w.admin.t())
        .await
        .expect(200);
    // Authorization, mark, the workspace's issues, one commit of both issues (2), the
    // label's commit (2).
    assert_eq!(r.storage_calls(), 7);

    assert_eq!(issue(&s, &w, &a).await["label_ids"], json!([ui]));
    assert_eq!(issue(&s, &w, &b).await["label_ids"], json!([]));
    assert_eq!(issue(&s, &w, &c).await["label_ids"], json!([ui]));
    // Every path a label filter rides on (workspace and team indexes, each sort).
    for extra in [
        String::new(),
        "&sort=updated".into(),
        "&sort=priority".into(),
        format!("&team_id={}", w.team_id),
    ] {
        let q = format!("label_id={bug}{extra}");
        assert!(listed(&s, &w, &q).await.is_empty(), "{q}");
        let q = format!("label_id={ui}{extra}");
        assert_eq!(listed(&s, &w, &q).await, set([&a, &c]), "{q}");
    }
    // One issue.updated per changed issue, then the label's own record.
    let events = events_since(&s, &w, before).await;
    let mut changed = updated_issues(&events);
    changed.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(changed, expected);
    assert_eq!(
        events.last().unwrap(),
        &("label.deleted".to_owned(), bug.clone())
    );
    assert_eq!(events.len(), 3, "{events:?}");
    let activity = s
        .get(&format!("/issues/{b}/activity"), w.owner.t())
        .await
        .expect(200);
    let last = activity.data()["items"].as_array().unwrap().last().unwrap();
    assert_eq!(last["field"], "label_ids");
    assert_eq!(last["from"], json!([bug]));
    // The id cannot come back.
    let r = s
        .post(
            "/issues",
            w.owner.t(),
            &json!({"team_id": w.team_id, "title": "D", "label_ids": [bug]}),
        )
        .await
        .expect(404);
    assert_eq!(r.error_field(), Some("label_ids"));
    assert_eq!(marked(&s, &w.ws).await, 0);
}

async fn deleting_labels_in_a_batch_removes_them_from_their_issues(s: TestServer) {
    let w = world(&s).await;
    let x = new_label(&s, &w, "x").await;
    let y = new_label(&s, &w, "y").await;
    let keep = new_label(&s, &w, "keep").await;
    let a = new_issue(&s, &w, json!({"title": "A", "label_ids": [x, y, keep]})).await;
    let b = new_issue(&s, &w, json!({"title": "B", "label_ids": [y]})).await;
    let before = w.last_seq(&s).await;
    s.call(
        reqwest::Method::DELETE,
        "/labels/batch",
        w.admin.t(),
        Some(&json!({"ids": [x, y]})),
    )
    .await
    .expect(200);
    assert_eq!(issue(&s, &w, &a).await["label_ids"], json!([keep]));
    assert_eq!(issue(&s, &w, &b).await["label_ids"], json!([]));
    assert!(listed(&s, &w, &format!("label_id={x}")).await.is_empty());
    assert!(listed(&s, &w, &format!("label_id={y}")).await.is_empty());
    let events = events_since(&s, &w, before).await;
    let n = counts(&events);
    assert_eq!(n.get("issue.updated"), Some(&2), "{events:?}");
    assert_eq!(n.get("label.deleted"), Some(&2), "{events:?}");
    assert_eq!(marked(&s, &w.ws).await, 0);
}

async fn deleting_a_project_clears_it_on_its_issues(s: TestServer) {
    let w = world(&s).await;
    let p = new_project(&s, &w, json!({})).await;
    let a = new_issue(&s, &w, json!({"title": "A", "project_id": p})).await;
    let b = new_issue(
        &s,
        &w,
        json!({"title": "B", "project_id": p, "priority": "urgent"}),
    )
    .await;
    let c = new_issue(&s, &w, json!({"title": "C"})).await;
    assert_eq!(
        listed(&s, &w, &format!("project_id={p}")).await,
        set([&a, &b])
    );
    let before = w.last_seq(&s).await;

    let r = s
        .delete(&format!("/projects/{p}"), w.member.t())
        .await
        .expect(200);
    // Authorization, mark, the project's issues (its key-only entries, then their records),
    // their commit (2), the project's (2).
    assert_eq!(r.storage_calls(), 8);

    assert_eq!(issue(&s, &w, &a).await["project_id"], Value::Null);
    assert_eq!(issue(&s, &w, &b).await["project_id"], Value::Null);
    // The relation copies moved too: the project's partition (every sort) is empty.
    for sort in ["created", "updated", "priority"] {
        let q = format!("project_id={p}&sort={sort}");
        assert!(listed(&s, &w, &q).await.is_empty(), "{q}");
    }
    assert_eq!(listed(&s, &w, "").await, set([&a, &b, &c]));
    let events = events_since(&s, &w, before).await;
    let mut changed = updated_issues(&events);
    changed.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(changed, expected);
    assert_eq!(
        events.last().unwrap(),
        &("project.deleted".to_owned(), p.clone())
    );
    assert_eq!(events.len(), 3, "{events:?}");
    let r = s
        .post(
            "/issues",
            w.owner.t(),
            &json!({"team_id": w.team_id, "title": "D", "project_id": p}),
        )
        .await
        .expect(404);
    assert_eq!(r.error_field(), Some("project_id"));
    assert_eq!(marked(&s, &w.ws).await, 0);
}

async fn deleting_a_state_with_issues_needs_a_replacement(s: TestServer) {
    let w = world(&s).await;
    let states = state_ids(&s, w.owner.t(), &w.workflow_id).await;
    let (doing, done, todo) = (&states["In Progress"], &states["Done"], &states["Todo"]);
    let a = new_issue(&s, &w, json!({"title": "A", "state_id": doing})).await;
    let b = new_issue(&s, &w, json!({"title": "B", "state_id": doing})).await;
    let c = new_issue(&s, &w, json!({"title": "C", "state_id": todo})).await;
    let path = format!("/workflows/{}/states/{doing}", w.workflow_id);
    let before = w.last_seq(&s).await;

    // Refused while issues are in it, saying how many; nothing changes.
    let r = s.delete(&path, w.admin.t()).await.expect(409);
    assert_eq!(r.error_code(), "CONFLICT");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 issues"), "{message}");
    assert!(message.contains("replacement_state_id"), "{message}");
    assert_eq!(w.last_seq(&s).await, before);
    assert!(
        state_ids(&s, w.owner.t(), &w.workflow_id)
            .await
            .contains_key("In Progress")
    );
    assert_eq!(issue(&s, &w, &a).await["state_id"], json!(doing));
    // The refusal removed its mark: issues may still move into the state.
    s.post(
        &format!("/issues/{c}/transitions"),
        w.owner.t(),
        &json!({"state_id": doing}),
    )
    .await
    .expect(200);
    s.post(
        &format!("/issues/{c}/transitions"),
        w.owner.t(),
        &json!({"state_id": todo}),
    )
    .await
    .expect(200);

    // The replacement must be another state of the same workflow.
    let other_states = state_ids(&s, w.outsider.t(), &w.other_workflow_id).await;
    for bad in [doing.as_str(), other_states["Done"].as_str(), "st_nope"] {
        let r = s
            .delete(&format!("{path}?replacement_state_id={bad}"), w.admin.t())
            .await
            .expect(422);
        assert_eq!(r.error_field(), Some("replacement_state_id"), "{bad}");
    }
    let r = s
        .delete(&format!("{path}?replacement={done}"), w.admin.t())
        .await
        .expect(400);
    assert_eq!(r.error_code(), "VALIDATION_ERROR");
    let before = w.last_seq(&s).await;

    let r = s
        .delete(&format!("{path}?replacement_state_id={done}"), w.admin.t())
        .await
        .expect(200);
    // Authorization, states, mark, the workspace's issues, their commit (2), the state's
    // commit (2).
    assert_eq!(r.storage_calls(), 8);

    assert_eq!(issue(&s, &w, &a).await["state_id"], json!(done));
    assert_eq!(issue(&s, &w, &b).await["state_id"], json!(done));
    assert_eq!(issue(&s, &w, &c).await["state_id"], json!(todo));
    let t = s
        .get(&format!("/issues/{a}/transitions"), w.owner.t())
        .await
        .expect(200);
    assert_eq!(t.data()["current_state"]["id"], json!(done));
    assert!(
        listed(&s, &w, &format!("state_id={doing}"))
            .await
            .is_empty()
    );
    assert_eq!(
        listed(&s, &w, &format!("state_id={done}")).await,
        set([&a, &b])
    );
    assert!(
        !state_ids(&s, w.owner.t(), &w.workflow_id)
            .await
            .contains_key("In Progress")
    );
    let events = events_since(&s, &w, before).await;
    let mut changed = updated_issues(&events);
    changed.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(changed, expected);
    let n = counts(&events);
    assert_eq!(n.get("workflow_state.deleted"), Some(&1), "{events:?}");
    assert_eq!(n.get("workflow.updated"), Some(&1), "{events:?}");
    let r = s
        .post(
            "/issues",
            w.owner.t(),
            &json!({"team_id": w.team_id, "title": "D", "state_id": doing}),
        )
        .await
        .expect(404);
    assert_eq!(r.error_field(), Some("state_id"));
    // An empty state needs no replacement.
    s.delete(
        &format!("/workflows/{}/states/{}", w.workflow_id, states["Canceled"]),
        w.admin.t(),
    )
    .await
    .expect(200);
    assert_eq!(marked(&s, &w.ws).await, 0);
}

async fn removing_a_member_unassigns_them(s: TestServer) {
    let w = world(&s).await;
    let m = &w.member.id;
    let a = new_issue(&s, &w, json!({"title": "A", "assignee_id": m})).await;
    let b = new_issue(&s, &w, json!({"title": "B", "assignee_id": m})).await;
    let c = new_issue(&s, &w, json!({"title": "C", "assignee_id": w.admin.id})).await;
    let owned = new_project(&s, &w, json!({"owner_id": m})).await;
    let other = new_project(&s, &w, json!({"owner_id": w.admin.id})).await;
    assert_eq!(
        listed(&s, &w, &format!("assignee_id={m}")).await,
        set([&a, &b])
    );
    let before = w.last_seq(&s).await;

    let r = s
        .delete(&format!("/workspaces/{}/members/{m}", w.ws), w.admin.t())
        .await
        .expect(200);
    // Authorization, team memberships, mark, the member's issues (entries, then records),
    // their commit (2), the projects, the owned one's commit (2), the removal's commit (2).
    assert_eq!(r.storage_calls(), 12);

    assert_eq!(issue(&s, &w, &a).await["assignee_id"], Value::Null);
    assert_eq!(issue(&s, &w, &b).await["assignee_id"], Value::Null);
    assert_eq!(issue(&s, &w, &c).await["assignee_id"], json!(w.admin.id));
    for sort in ["created", "updated", "priority"] {
        let q = format!("assignee_id={m}&sort={sort}");
        assert!(listed(&s, &w, &q).await.is_empty(), "{q}");
    }
    assert_eq!(
        listed(&s, &w, &format!("assignee_id={}", w.admin.id)).await,
        set([&c])
    );
    let project = |id: String| {
        let s = &s;
        let w = &w;
        async move {
            s.get(&format!("/projects/{id}"), w.owner.t())
                .await
                .expect(200)
                .data()
                .clone()
        }
    };
    assert_eq!(project(owned.clone()).await["owner_id"], Value::Null);
    assert_eq!(project(other.clone()).await["owner_id"], json!(w.admin.id));
    let by_owner = s
        .get(
            &format!("/projects?workspace_id={}&owner_id={m}", w.ws),
            w.owner.t(),
        )
        .await
        .expect(200);
    assert_eq!(by_owner.data()["items"], json!([]));
    let events = events_since(&s, &w, before).await;
    let mut changed = updated_issues(&events);
    changed.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(changed, expected);
    assert!(events.contains(&("project.updated".to_owned(), owned.clone())));
    assert_eq!(
        events.last().unwrap(),
        &("workspace_member.deleted".to_owned(), m.clone())
    );
    assert_eq!(events.len(), 4, "{events:?}");
    // Not assignable any more.
    s.put(
        &format!("/issues/{a}"),
        w.owner.t(),
        &json!({"assignee_id": m}),
    )
    .await
    .expect(404);

    // Leaving is removal too.
    let d = new_issue(&s, &w, json!({"title": "D", "assignee_id": w.guest.id})).await;
    s.delete(
        &format!("/workspaces/{}/members/{}", w.ws, w.guest.id),
        w.guest.t(),
    )
    .await
    .expect(200);
    assert_eq!(issue(&s, &w, &d).await["assignee_id"], Value::Null);
    assert!(
        listed(&s, &w, &format!("assignee_id={}", w.guest.id))
            .await
            .is_empty()
    );
    assert_eq!(marked(&s, &w.ws).await, 0);
}

on_every_store!(
    deleting_a_label_removes_it_from_its_issues,
    deleting_labels_in_a_batch_removes_them_from_their_issues,
    deleting_a_project_clears_it_on_its_issues,
    deleting_a_state_with_issues_needs_a_replacement,
    removing_a_member_unassigns_them,
);

/// More issues than one transaction holds (10 issues per transaction, 100 operations at
/// most): every one is rewritten, each with its own record. Embedded store only: moto would
/// take minutes for the creates alone, and the chunking is the same code on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_outs_larger_than_a_transaction_reach_every_issue() {
    const N: usize = 125;
    let s = TestServer::start(Backend::Embedded, "fan_out")
        .await
        .unwrap();
    let w = world(&s).await;
    let label = new_label(&s, &w, "everywhere").await;
    let project = new_project(&s, &w, json!({})).await;
    let states = state_ids(&s, w.owner.t(), &w.workflow_id).await;
    let mut all = BTreeSet::new();
    for n in 0..N {
        let body = json!({
            "title": format!("issue {n}"),
            "label_ids": [label],
            "project_id": project,
            "assignee_id": w.member.id,
            "state_id": states["In Progress"],
        });
        all.insert(new_issue(&s, &w, body).await);
    }
    let changed_by = |events: Vec<(String, String)>| -> BTreeSet<String> {
        let changed = updated_issues(&events);
        assert_eq!(changed.len(), N, "one issue.updated per issue");
        changed.into_iter().collect()
    };

    let before = w.last_seq(&s).await;
    s.delete(&format!("/labels/{label}"), w.admin.t())
        .await
        .expect(200);
    assert!(
        listed(&s, &w, &format!("label_id={label}"))
            .await
            .is_empty()
    );
    assert_eq!(changed_by(events_since(&s, &w, before).await), all);

    let before = w.last_seq(&s).await;
    s.delete(&format!("/projects/{project}"), w.admin.t())
        .await
        .expect(200);
    assert!(
        listed(&s, &w, &format!("project_id={project}"))
            .await
            .is_empty()
    );
    assert_eq!(changed_by(events_since(&s, &w, before).await), all);

    let before = w.last_seq(&s).await;
    s.delete(
        &format!(
            "/workflows/{}/states/{}?replacement_state_id={}",
            w.workflow_id, states["In Progress"], states["Done"]
        ),
        w.admin.t(),
    )
    .await
    .expect(200);
    assert_eq!(
        listed(&s, &w, &format!("state_id={}", states["Done"])).await,
        all
    );
    assert_eq!(changed_by(events_since(&s, &w, before).await), all);

    let before = w.last_seq(&s).await;
    s.delete(
        &format!("/workspaces/{}/members/{}", w.ws, w.member.id),
        w.admin.t(),
    )
    .await
    .expect(200);
    assert!(
        listed(&s, &w, &format!("assignee_id={}", w.member.id))
            .await
            .is_empty()
    );
    assert_eq!(changed_by(events_since(&s, &w, before).await), all);

    for id in &all {
        let i = issue(&s, &w, id).await;
        assert_eq!(i["label_ids"], json!([]));
        assert_eq!(i["project_id"], Value::Null);
        assert_eq!(i["assignee_id"], Value::Null);
        assert_eq!(i["state_id"], json!(states["Done"]));
    }
    const { assert!(N < MAX_REWRITES_PER_REQUEST, "one request each") };
    assert_eq!(marked(&s, &w.ws).await, 0);
}

/// A delete interrupted part-way (the store fails for good after two of its transactions)
/// leaves the label in place and every issue either cleaned or still naming an existing
/// label; new references are refused while it is marked (an edit of the label drops the mark);
/// repeating the request finishes the job, with exactly one record per issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_delete_is_finished_by_repeating_it() {
    const N: usize = 30;
    let faulty = Arc::new(FaultyStore::new(EmbeddedStore::in_memory(), 7));
    let mut config = AppConfig::for_tests();
    config.expose_storage_calls = true;
    let state = AppState::with_store(config, faulty.clone(), Arc::new(SystemClock));
    let s = TestServer::serve(state).await;
    let w = world(&s).await;
    let label = new_label(&s, &w, "doomed").await;
    let mut all = BTreeSet::new();
    for n in 0..N {
        let body = json!({"title": format!("issue {n}"), "label_ids": [label]});
        all.insert(new_issue(&s, &w, body).await);
    }
    let before = w.last_seq(&s).await;

    // The mark and the first chunk of 10 commit; then every attempt fails.
    faulty.script(
        OpKind::Transact,
        [None, None]
            .into_iter()
            .chain(std::iter::repeat_n(Some(Fault::Throttle), 50)),
    );
    let r = s.delete(&format!("/labels/{label}"), w.admin.t()).await;
    faulty.heal();
    let r = r.expect(503);
    assert!(r.headers.contains_key("retry-after"));

    // Half-way: the label is still there, and what names it is consistent.
    s.get(&format!("/labels/{label}"), w.admin.t())
        .await
        .expect(200);
    let still = listed(&s, &w, &format!("label_id={label}")).await;
    assert_eq!(still.len(), N - 10, "one chunk was committed");
    for id in &all {
        let has = issue(&s, &w, id).await["label_ids"] == json!([label]);
        assert_eq!(has, still.contains(id));
    }
    // No new reference while the delete is pending.
    let r = s
        .post(
            "/issues",
            w.owner.t(),
            &json!({"team_id": w.team_id, "title": "late", "label_ids": [label]}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("label_ids"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("being deleted")
    );
    let first = all.iter().next().unwrap();
    s.put(
        &format!("/issues/{first}"),
        w.owner.t(),
        &json!({"label_ids": [label]}),
    )
    .await
    .expect(400);
    assert_eq!(marked(&s, &w.ws).await, 1);
    // An edit of the label drops the mark (the delete is no longer in progress): it may be
    // used again, and the repeated delete, marking it anew, finds that use too.
    s.put(
        &format!("/labels/{label}"),
        w.admin.t(),
        &json!({"name": "doomed, renamed"}),
    )
    .await
    .expect(200);
    assert_eq!(marked(&s, &w.ws).await, 0);
    let late = new_issue(&s, &w, json!({"title": "late", "label_ids": [label]})).await;
    all.insert(late);

    s.delete(&format!("/labels/{label}"), w.admin.t())
        .await
        .expect(200);
    assert!(
        listed(&s, &w, &format!("label_id={label}"))
            .await
            .is_empty()
    );
    s.get(&format!("/labels/{label}"), w.admin.t())
        .await
        .expect(404);
    let events = events_since(&s, &w, before).await;
    let changed = updated_issues(&events);
    assert_eq!(
        changed.len(),
        N + 1,
        "exactly one issue.updated per issue: {events:?}"
    );
    assert_eq!(changed.into_iter().collect::<BTreeSet<_>>(), all);
    assert_eq!(
        events.last().unwrap(),
        &("label.deleted".to_owned(), label.clone())
    );
    assert_eq!(marked(&s, &w.ws).await, 0);
}
