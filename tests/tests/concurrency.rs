//! Concurrent writes of one record, on both stores. A write that states no version (no
//! `version` in the body, no `If-Match`) never entered a race: it is applied to the latest
//! version, however many writers it meets. A write that states one gets 412 when that
//! version is gone. Contention past the retry bound is a 503 with `Retry-After`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::storage::{
    Condition, Item, Key, Page, Query, Store, StoreResult, Table, TransactionToken, Update, WriteOp,
};
use momentum_tests::{Backend, Reply, TestServer, World, backend_store, id, on_every_store, world};
use reqwest::Method;
use serde_json::{Value, json};

const WRITERS: usize = 10;

/// Sends `WRITERS` PUTs at once; `request(i)` gives writer i's path, `If-Match` and body.
async fn race(
    s: &TestServer,
    token: &str,
    request: impl Fn(usize) -> (String, Option<String>, Value),
) -> Vec<Reply> {
    let requests: Vec<_> = (0..WRITERS).map(request).collect();
    futures::future::join_all(requests.iter().map(|(path, if_match, body)| {
        s.request(
            Method::PUT,
            path,
            Some(token),
            if_match.as_deref(),
            Some(body),
        )
    }))
    .await
}

/// The change records of `event` about `entity_id` after `since`.
async fn records(
    s: &TestServer,
    w: &World,
    since: i64,
    event: &str,
    entity_id: &str,
) -> Vec<Value> {
    w.changes_since(s, since)
        .await
        .into_iter()
        .filter(|c| c["event"] == event && c["entity_id"] == entity_id)
        .collect()
}

async fn new_issue(s: &TestServer, w: &World) -> Value {
    s.post(
        "/issues",
        w.owner.t(),
        &json!({"team_id": w.team_id, "title": "contested"}),
    )
    .await
    .expect(201)
    .data()
    .clone()
}

/// REQUIRED (issue 10, reproduction 4): ten unversioned PUTs of one issue all succeed, each
/// on the version the previous one left, and the issue ends as exactly one of them wrote it.
async fn unversioned_issue_puts_all_apply(s: TestServer) {
    let w = world(&s).await;
    let issue = new_issue(&s, &w).await;
    let path = format!("/issues/{}", id(&issue));
    let before = w.last_seq(&s).await;
    let replies = race(&s, &w.owner.token, |i| {
        let body = json!({"title": format!("title {i}"), "description": format!("text {i}")});
        (path.clone(), None, body)
    })
    .await;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "every writer succeeds: {}", r.body);
    }
    // Each write was applied to the latest version: versions 2..=11, one each.
    let versions: BTreeSet<i64> = replies
        .iter()
        .map(|r| r.data()["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, (2..=1 + WRITERS as i64).collect());
    // The final state is one writer's whole write (title and description from the same
    // writer), the one whose write made the last version.
    let now = s.get(&path, w.owner.t()).await.expect(200);
    let last = replies
        .iter()
        .find(|r| r.data()["version"] == now.data()["version"])
        .unwrap();
    assert_eq!(now.data()["version"], 1 + WRITERS as i64);
    assert_eq!(now.data()["title"], last.data()["title"]);
    assert_eq!(now.data()["description"], last.data()["description"]);
    let n = now.data()["title"]
        .as_str()
        .unwrap()
        .trim_start_matches("title ");
    assert_eq!(now.data()["description"], format!("text {n}"));
    // The change log has one issue.updated per write, each with that writer's title.
    let updated = records(&s, &w, before, "issue.updated", &id(&issue)).await;
    assert_eq!(updated.len(), WRITERS, "{updated:?}");
    let titles: BTreeSet<String> = updated
        .iter()
        .map(|c| c["data"]["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, (0..WRITERS).map(|i| format!("title {i}")).collect());
}

/// REQUIRED: ten PUTs stating the same version (in the body or as `If-Match`): exactly one
/// 200, nine 412, and only the winner's write is stored and recorded.
async fn stated_version_puts_one_wins(s: TestServer) {
    let w = world(&s).await;
    let issue = new_issue(&s, &w).await;
    let path = format!("/issues/{}", id(&issue));
    let before = w.last_seq(&s).await;
    let replies = race(&s, &w.owner.token, |i| {
        let title = json!(format!("title {i}"));
        if i % 2 == 0 {
            (path.clone(), None, json!({"title": title, "version": 1}))
        } else {
            (path.clone(), Some("\"1\"".into()), json!({"title": title}))
        }
    })
    .await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{replies:#?}");
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status.as_u16(), 412, "{}", r.body);
        assert_eq!(r.error_code(), "PRECONDITION_FAILED");
    }
    let now = s.get(&path, w.owner.t()).await.expect(200);
    assert_eq!(now.data()["version"], 2);
    assert_eq!(now.data()["title"], winners[0].data()["title"]);
    let updated = records(&s, &w, before, "issue.updated", &id(&issue)).await;
    assert_eq!(updated.len(), 1, "{updated:?}");
}

/// A DELETE states no version: racing unversioned PUTs, it succeeds (never 412) and each PUT
/// either applied before it (200) or finds the issue gone (404).
async fn delete_racing_updates_succeeds(s: TestServer) {
    let w = world(&s).await;
    for _ in 0..3 {
        let issue = new_issue(&s, &w).await;
        let path = format!("/issues/{}", id(&issue));
        let (s, path, token) = (&s, &path, w.owner.t());
        let puts = (0..WRITERS - 1).map(|i| {
            let body = json!({"title": format!("title {i}")});
            async move { s.put(path, token, &body).await }
        });
        let (deleted, updated) =
            tokio::join!(s.delete(path, token), futures::future::join_all(puts));
        assert_eq!(deleted.status.as_u16(), 200, "{}", deleted.body);
        for r in &updated {
            assert!([200, 404].contains(&r.status.as_u16()), "{}", r.body);
        }
        s.get(path, token).await.expect(404);
    }
}

/// One record under concurrent unversioned PUTs: where it is, what writer i sends, the two
/// fields that must end up from the same writer, and the change event (profiles have none).
struct Target {
    what: &'static str,
    path: String,
    /// Where the record is read back (and the envelope's record within it).
    read: String,
    body: fn(usize) -> Value,
    fields: [&'static str; 2],
    event: Option<(&'static str, String)>,
}

/// Ten unversioned PUTs of a label, a workspace, a team, a workflow state and a profile: all
/// 200, the record ends as one of them wrote it, one change record each.
async fn unversioned_puts_all_apply_everywhere(s: TestServer) {
    let w = world(&s).await;
    let label = s
        .post(
            "/labels",
            w.owner.t(),
            &json!({"workspace_id": w.ws, "name": "contested", "color": "#a1b2c3"}),
        )
        .await
        .expect(201)
        .data()
        .clone();
    let workflow = s
        .get(&format!("/workflows/{}", w.workflow_id), w.owner.t())
        .await
        .expect(200);
    let state_id = id(&workflow.data()["states"][0]);
    let targets = [
        Target {
            what: "label",
            path: format!("/labels/{}", id(&label)),
            read: format!("/labels/{}", id(&label)),
            body: |i| json!({"description": format!("text {i}"), "color": format!("#0000{i:02X}")}),
            fields: ["description", "color"],
            event: Some(("label.updated", id(&label))),
        },
        Target {
            what: "workspace",
            path: format!("/workspaces/{}", w.ws),
            read: format!("/workspaces/{}", w.ws),
            body: |i| json!({"name": format!("Acme {i}"), "description": format!("text {i}")}),
            fields: ["name", "description"],
            event: Some(("workspace.updated", w.ws.clone())),
        },
        Target {
            what: "team",
            path: format!("/teams/{}", w.team_id),
            read: format!("/teams/{}", w.team_id),
            body: |i| json!({"name": format!("Team {i}"), "description": format!("text {i}")}),
            fields: ["name", "description"],
            event: Some(("team.updated", w.team_id.clone())),
        },
        Target {
            what: "workflow state",
            path: format!("/workflows/{}/states/{state_id}", w.workflow_id),
            read: format!("/workflows/{}", w.workflow_id),
            body: |i| json!({"name": format!("State {i}"), "color": format!("#0000{i:02X}")}),
            fields: ["name", "color"],
            event: Some(("workflow_state.updated", state_id.clone())),
        },
        Target {
            what: "profile",
            path: "/auth/profile".into(),
            read: "/auth/profile".into(),
            body: |i| json!({"bio": format!("text {i}"), "display_name": format!("Name {i}")}),
            fields: ["bio", "display_name"],
            event: None,
        },
    ];
    for t in targets {
        let before = w.last_seq(&s).await;
        let replies = race(&s, &w.owner.token, |i| (t.path.clone(), None, (t.body)(i))).await;
        for r in &replies {
            assert_eq!(r.status.as_u16(), 200, "{}: {}", t.what, r.body);
        }
        let read = s.get(&t.read, w.owner.t()).await.expect(200);
        let now = match t.what {
            "workflow state" => read.data()["states"]
                .as_array()
                .unwrap()
                .iter()
                .find(|st| st["id"] == json!(state_id))
                .unwrap()
                .clone(),
            _ => read.data().clone(),
        };
        let [a, b] = t.fields;
        let writer = (0..WRITERS)
            .find(|&i| (t.body)(i)[a] == now[a])
            .unwrap_or_else(|| panic!("{}: {a} is nobody's: {now}", t.what));
        assert_eq!(
            now[b],
            (t.body)(writer)[b],
            "{}: one writer's whole write",
            t.what
        );
        if let Some(version) = now.get("version") {
            let versions: BTreeSet<i64> = replies
                .iter()
                .map(|r| r.data()["version"].as_i64().unwrap())
                .collect();
            let last = version.as_i64().unwrap();
            assert_eq!(
                versions,
                (last - WRITERS as i64 + 1..=last).collect(),
                "{}: each write on the latest version",
                t.what
            );
        }
        if let Some((event, entity)) = &t.event {
            let updated = records(&s, &w, before, event, entity).await;
            assert_eq!(updated.len(), WRITERS, "{}: {updated:?}", t.what);
        }
    }
}

/// Label batches without versions, racing single edits of the same labels: every request
/// succeeds, and each batch stays all-or-nothing (both labels end with the same batch's
/// color, the description with one single edit's).
async fn unversioned_label_batches_apply_under_contention(s: TestServer) {
    let w = world(&s).await;
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let body = json!({"workspace_id": w.ws, "name": name, "color": "#a1b2c3"});
        ids.push(id(s
            .post("/labels", w.owner.t(), &body)
            .await
            .expect(201)
            .data()));
    }
    let color = |i: usize| format!("#0000{i:02X}");
    let replies = race(&s, &w.owner.token, |i| {
        if i % 2 == 0 {
            let items: Vec<Value> = ids
                .iter()
                .map(|l| json!({"id": l, "color": color(i)}))
                .collect();
            ("/labels/batch".into(), None, json!({"labels": items}))
        } else {
            let body = json!({"description": format!("text {i}")});
            (format!("/labels/{}", ids[0]), None, body)
        }
    })
    .await;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    }
    let first = s
        .get(&format!("/labels/{}", ids[0]), w.owner.t())
        .await
        .expect(200);
    let second = s
        .get(&format!("/labels/{}", ids[1]), w.owner.t())
        .await
        .expect(200);
    assert_eq!(
        first.data()["color"],
        second.data()["color"],
        "one batch's whole write"
    );
    let batch_colors: Vec<String> = (0..WRITERS).step_by(2).map(color).collect();
    assert!(batch_colors.contains(&first.data()["color"].as_str().unwrap().to_owned()));
    let descriptions: Vec<Value> = (1..WRITERS)
        .step_by(2)
        .map(|i| json!(format!("text {i}")))
        .collect();
    assert!(
        descriptions.contains(&first.data()["description"]),
        "{}",
        first.body
    );
}

/// `If-Match` is a stated version on every versioned PUT, including workspaces, teams and
/// workflows: a stale one is 412 and writes nothing; one that disagrees with the body's
/// `version` is 412 on `version` (labels used to let the body win silently).
async fn if_match_is_a_stated_version_everywhere(s: TestServer) {
    let w = world(&s).await;
    let body = json!({"name": "Renamed"});
    let label = json!({"workspace_id": w.ws, "name": "bug", "color": "#a1b2c3"});
    let label = id(s
        .post("/labels", w.owner.t(), &label)
        .await
        .expect(201)
        .data());
    for path in [
        format!("/labels/{label}"),
        format!("/workspaces/{}", w.ws),
        format!("/teams/{}", w.team_id),
        format!("/workflows/{}", w.workflow_id),
    ] {
        let version = s.get(&path, w.owner.t()).await.expect(200).data()["version"]
            .as_i64()
            .unwrap();
        let tag = |v: i64| format!("\"{v}\"");
        let stale = s
            .put_if_match(&path, w.owner.t(), &tag(version + 5), &body)
            .await;
        assert_eq!(
            stale.expect(412).error_code(),
            "PRECONDITION_FAILED",
            "{path}"
        );
        let mut both = body.clone();
        both["version"] = json!(version);
        let disagree = s
            .put_if_match(&path, w.owner.t(), &tag(version + 1), &both)
            .await;
        assert_eq!(
            disagree.expect(412).error_field(),
            Some("version"),
            "{path}"
        );
        let now = s.get(&path, w.owner.t()).await.expect(200);
        assert_ne!(now.data()["name"], "Renamed", "{path}: nothing written");
        let fresh = s
            .put_if_match(&path, w.owner.t(), &tag(version), &body)
            .await;
        assert_eq!(fresh.expect(200).data()["name"], "Renamed", "{path}");
    }
}

on_every_store!(
    unversioned_issue_puts_all_apply,
    stated_version_puts_one_wins,
    delete_racing_updates_succeeds,
    unversioned_puts_all_apply_everywhere,
    unversioned_label_batches_apply_under_contention,
    if_match_is_a_stated_version_everywhere,
);

/// A store where, while `armed`, another writer commits to every record a versioned put is
/// about to replace, just before it: every optimistic write loses, however often it retries.
struct Outraced {
    inner: Arc<dyn Store>,
    armed: AtomicBool,
}

#[async_trait]
impl Store for Outraced {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.get(table, key).await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        self.inner.batch_get(table, keys).await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.inner.query(query).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        if self.armed.load(Ordering::SeqCst) {
            for op in &ops {
                let target = match op {
                    WriteOp::Put {
                        table,
                        item,
                        condition: Some(Condition::VersionEquals(_)),
                    } => Key::of(item).map(|key| (*table, key)),
                    WriteOp::Update {
                        table,
                        key,
                        condition: Some(Condition::VersionEquals(_)),
                        ..
                    } => Some((*table, key.clone())),
                    _ => None,
                };
                if let Some((table, key)) = target {
                    let bump = WriteOp::Update {
                        table,
                        key,
                        update: Update::default().add("version", 1),
                        condition: None,
                    };
                    // Its own transaction, not a retry of the caller's.
                    let other_writer = self.inner.transact(vec![bump]);
                    TransactionToken::scope(TransactionToken::fresh(), other_writer).await?;
                }
            }
        }
        self.inner.transact(ops).await
    }

    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        self.inner.increment(table, key, attr, by).await
    }
}

/// The shim over an `Outraced` store on `backend` (None: DynamoDB not configured).
async fn outraced_server(backend: Backend, test: &str) -> Option<(TestServer, Arc<Outraced>)> {
    let (config, inner) = backend_store(backend, test).await?;
    let store = Arc::new(Outraced {
        inner,
        armed: AtomicBool::new(false),
    });
    let state = AppState::with_store(config, store.clone(), Arc::new(SystemClock));
    Some((TestServer::serve(state).await, store))
}

/// A write that keeps losing to other writers is not held forever: past the bound it gets
/// 503 with `Retry-After` (never 412: it stated no version) and nothing of it is stored.
/// With a stated version the first lost race is its 412.
async fn endless_contention_is_503_with_retry_after(backend: Backend, test: &str) {
    let Some((s, store)) = outraced_server(backend, test).await else {
        return;
    };
    let w = world(&s).await;
    let issue = new_issue(&s, &w).await;
    let path = format!("/issues/{}", id(&issue));
    store.armed.store(true, Ordering::SeqCst);
    let busy = s
        .put(&path, w.owner.t(), &json!({"title": "mine"}))
        .await
        .expect(503);
    assert_eq!(busy.error_code(), "SERVICE_UNAVAILABLE");
    assert!(
        busy.headers.get("retry-after").is_some(),
        "{:?}",
        busy.headers
    );
    let profile = s
        .put("/auth/profile", w.owner.t(), &json!({"bio": "mine"}))
        .await
        .expect(503);
    assert!(profile.headers.get("retry-after").is_some());
    let current = s.get(&path, w.owner.t()).await.expect(200).data()["version"].clone();
    let stated = s
        .put(
            &path,
            w.owner.t(),
            &json!({"title": "mine", "version": current}),
        )
        .await
        .expect(412);
    assert_eq!(stated.error_code(), "PRECONDITION_FAILED");
    store.armed.store(false, Ordering::SeqCst);
    let now = s.get(&path, w.owner.t()).await.expect(200);
    assert_eq!(now.data()["title"], "contested", "no lost write was stored");
    let me = s.get("/auth/profile", w.owner.t()).await.expect(200);
    assert_eq!(me.data()["bio"], Value::Null);
    // Once the other writers stop, the same unversioned write applies.
    s.put(&path, w.owner.t(), &json!({"title": "mine"}))
        .await
        .expect(200);
}

mod outraced {
    use momentum_tests::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        super::endless_contention_is_503_with_retry_after(Backend::Embedded, "outraced::embedded")
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb() {
        super::endless_contention_is_503_with_retry_after(Backend::DynamoDb, "outraced::dynamodb")
            .await;
    }
}
