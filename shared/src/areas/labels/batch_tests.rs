//! Label batches are atomic: one transaction, so a batch refused at commit (a concurrent
//! writer injected just before it; black-box tests cannot time that) leaves no label, name
//! marker, deletion mark or change record behind; and the size limits are what one
//! transaction holds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::areas::issues::references;
use crate::clock::{Clock, SystemClock};
use crate::error::ErrorCode;
use crate::kernel::access::{Member, Principal, Role};
use crate::kernel::changes::log_partition;
use crate::kernel::context::{ServiceContext, claim, delete_existing, put_new, put_versioned};
use crate::kernel::ids::{self, Kind};
use crate::kernel::keys;
use crate::kernel::record::{from_item, record_item};
use crate::storage::embedded::EmbeddedStore;
use crate::storage::{Item, Key, Page, Query, SortKey, Store, StoreResult, Table, WriteOp};

/// A store that counts the transactions writing change records (commits through the change
/// log) and runs `inject` just before the next one: a concurrent writer.
struct Interfering {
    inner: EmbeddedStore,
    commits: AtomicUsize,
    armed: AtomicBool,
    inject: Mutex<Vec<WriteOp>>,
}

fn writes_a_change(ops: &[WriteOp]) -> bool {
    ops.iter().any(|op| match op {
        WriteOp::Put { item, .. } => item
            .get("pk")
            .and_then(|pk| pk.as_str())
            .is_some_and(|pk| pk.ends_with("#CHANGES")),
        _ => false,
    })
}

#[async_trait]
impl Store for Interfering {
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
        if writes_a_change(&ops) {
            self.commits.fetch_add(1, Ordering::SeqCst);
            if self.armed.swap(false, Ordering::SeqCst) {
                let injected = std::mem::take(&mut *self.inject.lock().unwrap());
                self.inner.transact(injected).await?;
            }
        }
        self.inner.transact(ops).await
    }
    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        self.inner.increment(table, key, attr, by).await
    }
}

struct Setup {
    store: Arc<Interfering>,
    service: LabelService,
    who: Principal,
    ws: String,
}

fn stored_label(ws: &str, name: String) -> Label {
    Label {
        id: ids::new_id(Kind::Label, ws),
        workspace_id: ws.to_owned(),
        name,
        color: "#000000".into(),
        level: LabelLevel::Issue,
        description: None,
        created_by: "u1".into(),
        version: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

/// An admin in a workspace holding `existing` labels named `old 000`, `old 001`, ...
/// (written directly: the change log starts empty).
async fn setup(existing: usize) -> Setup {
    let ws = uuid::Uuid::now_v7().to_string();
    let who = Principal::session("u1", "s1");
    let inner = EmbeddedStore::in_memory();
    let far = SystemClock.epoch_secs() + 3600;
    let session = json!({
        "pk": keys::session("u1", "s1").pk, "sk": keys::session("u1", "s1").sk,
        "entity": "session", "user_id": "u1", "session_id": "s1",
        "created_at": "2026-01-01T00:00:00Z", "last_used_at": "2026-01-01T00:00:00Z",
        "expires_at": far, "ttl": far,
    });
    let member = Member {
        workspace_id: ws.clone(),
        user_id: "u1".into(),
        role: Role::Admin,
        username: "admin".into(),
        email: "admin@example.com".into(),
        display_name: None,
        joined_at: "2026-01-01T00:00:00Z".into(),
    };
    // The workspace's own item: its age tells a reader of the log from the start whether
    // numbers missing there expired or are still being written.
    let workspace = json!({
        "pk": keys::workspace(&ws).pk, "sk": keys::workspace(&ws).sk,
        "entity": "workspace", "created_at": SystemClock.rfc3339(),
    });
    inner
        .transact(vec![
            WriteOp::put(Table::Main, session.as_object().unwrap().clone()),
            WriteOp::put(Table::Main, workspace.as_object().unwrap().clone()),
            WriteOp::put(
                Table::Main,
                record_item(&keys::member(&ws, "u1"), "member", &member),
            ),
        ])
        .await
        .unwrap();
    for i in 0..existing {
        let label = stored_label(&ws, format!("old {i:03}"));
        inner
            .transact(vec![
                put_new(&keys::label(&ws, &label.id), "label", &label),
                claim(label_name_key(&ws, &label.name), &label.id),
            ])
            .await
            .unwrap();
    }
    let store = Arc::new(Interfering {
        inner,
        commits: AtomicUsize::new(0),
        armed: AtomicBool::new(false),
        inject: Mutex::new(Vec::new()),
    });
    let service = LabelService::new(ServiceContext::new(store.clone(), Arc::new(SystemClock)));
    Setup {
        store,
        service,
        who,
        ws,
    }
}

impl Setup {
    /// Runs `ops` just before the next commit.
    fn interfere(self, ops: Vec<WriteOp>) -> Self {
        *self.store.inject.lock().unwrap() = ops;
        self.store.armed.store(true, Ordering::SeqCst);
        self
    }

    /// Commits through the change log so far.
    fn commits(&self) -> usize {
        self.store.commits.load(Ordering::SeqCst)
    }

    async fn rows(&self, prefix: &str) -> Vec<Item> {
        self.store
            .query(
                &Query::new(Table::Main, keys::workspace_partition(&self.ws))
                    .sort(SortKey::BeginsWith(format!("{prefix}#")))
                    .limit(1000),
            )
            .await
            .unwrap()
            .items
    }

    /// Every label, in id order.
    async fn labels(&self) -> Vec<Label> {
        let rows = self.rows(keys::LABEL).await;
        rows.into_iter().map(|i| from_item(i).unwrap()).collect()
    }

    /// Every name marker: (sort key, owner).
    async fn markers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .rows(keys::LABEL_NAME)
            .await
            .into_iter()
            .map(|i| {
                (
                    i["sk"].as_str().unwrap().to_owned(),
                    i["owner_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The workspace's change feed: its events, oldest first.
    async fn feed(&self) -> Vec<String> {
        let read = self
            .service
            .ctx
            .changes
            .since(&self.ws, 0, 1000)
            .await
            .unwrap();
        read.records.into_iter().map(|c| c.event).collect()
    }

    /// No change record was written (checked on the table, not only through the feed; the
    /// numbers a failed commit drew are closed by skips, which hold nothing).
    async fn no_change_records(&self) -> bool {
        let page = self
            .store
            .query(&Query::new(Table::Main, log_partition(&self.ws)).limit(10))
            .await
            .unwrap();
        page.items.iter().all(|i| i["entity"] == "change_skip") && self.feed().await.is_empty()
    }
}

fn new_labels(n: usize) -> Vec<NewLabel> {
    (0..n)
        .map(|i| NewLabel {
            name: format!("new {i:03}"),
            color: "#123456".into(),
            level: None,
            description: None,
        })
        .collect()
}

fn create_req(s: &Setup, n: usize) -> BatchCreateLabels {
    BatchCreateLabels {
        workspace_id: Some(s.ws.clone()),
        labels: new_labels(n),
    }
}

/// Renames of every label in `labels`; item `versioned` states the version it read.
fn renames(labels: &[Label], versioned: Option<usize>) -> BatchUpdateLabels {
    BatchUpdateLabels {
        labels: labels
            .iter()
            .enumerate()
            .map(|(i, l)| LabelPatch {
                id: l.id.clone(),
                name: Some(format!("renamed {}", l.name)),
                color: None,
                level: None,
                description: None,
                version: (Some(i) == versioned).then_some(l.version),
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_full_create_batch_lands_whole_in_one_commit() {
    let s = setup(0).await;
    let done = s
        .service
        .batch_create(&s.who, create_req(&s, MAX_LABEL_BATCH_CREATE))
        .await
        .unwrap();
    assert_eq!(done.items.len(), MAX_LABEL_BATCH_CREATE);
    assert_eq!(s.commits(), 1, "one transaction");
    assert_eq!(s.labels().await.len(), MAX_LABEL_BATCH_CREATE);
    assert_eq!(s.markers().await.len(), MAX_LABEL_BATCH_CREATE);
    assert_eq!(
        s.feed().await,
        vec!["label.created"; MAX_LABEL_BATCH_CREATE]
    );
}

#[tokio::test]
async fn a_create_batch_whose_name_is_taken_meanwhile_writes_nothing() {
    let s = setup(0).await;
    let ws = s.ws.clone();
    // A concurrent writer takes the name of item 20 between the checks and the commit.
    let s = s.interfere(vec![claim(label_name_key(&ws, "NEW 020"), "lbl_other")]);
    let refused = s
        .service
        .batch_create(&s.who, create_req(&s, MAX_LABEL_BATCH_CREATE))
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::Conflict);
    assert!(refused.error.message.contains("nothing was written"));
    assert_eq!(refused.items.len(), 1);
    assert_eq!(refused.items[0].index, Some(20));
    assert_eq!(refused.items[0].field.as_deref(), Some("name"));
    assert_eq!(refused.items[0].code, ErrorCode::Conflict);
    assert!(s.labels().await.is_empty(), "no label created");
    assert_eq!(
        s.markers().await,
        [("LABELNAME#new 020".to_owned(), "lbl_other".to_owned())],
        "only the concurrent writer's marker"
    );
    assert!(s.no_change_records().await);
}

#[tokio::test]
async fn a_full_rename_batch_lands_whole_in_one_commit() {
    let s = setup(MAX_LABEL_BATCH_UPDATE).await;
    let before = s.labels().await;
    let done = s
        .service
        .batch_update(&s.who, renames(&before, None))
        .await
        .unwrap();
    assert!(
        done.items
            .iter()
            .all(|i| i.status == BatchItemStatus::Updated)
    );
    assert_eq!(s.commits(), 1, "one transaction");
    for (old, new) in before.iter().zip(s.labels().await) {
        assert_eq!(new.name, format!("renamed {}", old.name));
        assert_eq!(new.version, 2);
    }
    assert!(
        s.markers()
            .await
            .iter()
            .all(|(sk, _)| sk.starts_with("LABELNAME#renamed old"))
    );
    assert_eq!(
        s.feed().await,
        vec!["label.updated"; MAX_LABEL_BATCH_UPDATE]
    );
}

#[tokio::test]
async fn an_update_batch_losing_a_stated_version_writes_nothing() {
    let s = setup(MAX_LABEL_BATCH_UPDATE).await;
    let before = s.labels().await;
    let markers_before = s.markers().await;
    let mut bumped = before[10].clone();
    bumped.version = 2;
    bumped.description = Some("concurrent".into());
    let key = keys::label(&bumped.workspace_id, &bumped.id);
    let s = s.interfere(vec![put_versioned(&key, "label", &bumped, 1)]);
    // Item 10 states the version it read, so losing the race is the batch's 412 (an
    // unversioned batch would be done again instead).
    let refused = s
        .service
        .batch_update(&s.who, renames(&before, Some(10)))
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::PreconditionFailed);
    assert!(refused.error.message.contains("nothing was written"));
    assert_eq!(refused.items.len(), 1);
    assert_eq!(refused.items[0].index, Some(10));
    assert_eq!(refused.items[0].id.as_deref(), Some(bumped.id.as_str()));
    assert_eq!(refused.items[0].field.as_deref(), Some("version"));
    let expected: Vec<Label> = before
        .iter()
        .map(|l| {
            if l.id == bumped.id {
                bumped.clone()
            } else {
                l.clone()
            }
        })
        .collect();
    assert_eq!(s.labels().await, expected, "only the concurrent write");
    assert_eq!(s.markers().await, markers_before, "no name moved");
    assert!(s.no_change_records().await);
}

#[tokio::test]
async fn an_update_batch_whose_new_name_is_taken_meanwhile_writes_nothing() {
    let s = setup(5).await;
    let before = s.labels().await;
    let mut markers_before = s.markers().await;
    let ws = s.ws.clone();
    let s = s.interfere(vec![claim(
        label_name_key(&ws, "Renamed old 003"),
        "lbl_other",
    )]);
    let refused = s
        .service
        .batch_update(&s.who, renames(&before, None))
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::Conflict);
    assert_eq!(refused.items[0].index, Some(3));
    assert_eq!(refused.items[0].field.as_deref(), Some("name"));
    assert_eq!(s.labels().await, before, "no label changed");
    markers_before.push(("LABELNAME#renamed old 003".into(), "lbl_other".into()));
    markers_before.sort();
    assert_eq!(s.markers().await, markers_before);
    assert!(s.no_change_records().await);
}

#[tokio::test]
async fn an_unversioned_update_batch_losing_a_race_is_done_again() {
    let s = setup(MAX_LABEL_BATCH_UPDATE).await;
    let before = s.labels().await;
    let mut bumped = before[10].clone();
    bumped.version = 2;
    bumped.description = Some("concurrent".into());
    let key = keys::label(&bumped.workspace_id, &bumped.id);
    let s = s.interfere(vec![put_versioned(&key, "label", &bumped, 1)]);
    let done = s
        .service
        .batch_update(&s.who, renames(&before, None))
        .await
        .unwrap();
    assert!(
        done.items
            .iter()
            .all(|i| i.status == BatchItemStatus::Updated)
    );
    let after = s.labels().await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.name, format!("renamed {}", old.name));
    }
    assert_eq!(
        after[10].description.as_deref(),
        Some("concurrent"),
        "applied on the concurrent write, not over it"
    );
    assert_eq!(after[10].version, 3);
    assert_eq!(
        s.feed().await,
        vec!["label.updated"; MAX_LABEL_BATCH_UPDATE],
        "the lost attempt left nothing"
    );
}

#[tokio::test]
async fn a_full_delete_batch_lands_whole_in_one_commit() {
    let s = setup(MAX_LABEL_BATCH_DELETE).await;
    let ids: Vec<String> = s.labels().await.into_iter().map(|l| l.id).collect();
    let done = s
        .service
        .batch_delete(&s.who, BatchDeleteLabels { ids })
        .await
        .unwrap();
    assert_eq!(done.items.len(), MAX_LABEL_BATCH_DELETE);
    assert_eq!(s.commits(), 1, "one transaction");
    assert!(s.labels().await.is_empty());
    assert!(s.markers().await.is_empty());
    assert_eq!(
        s.feed().await,
        vec!["label.deleted"; MAX_LABEL_BATCH_DELETE]
    );
}

#[tokio::test]
async fn a_delete_batch_whose_label_goes_meanwhile_writes_nothing() {
    let s = setup(MAX_LABEL_BATCH_DELETE).await;
    let before = s.labels().await;
    let markers_before = s.markers().await;
    let gone = before[20].clone();
    let s = s.interfere(vec![
        delete_existing(keys::label(&gone.workspace_id, &gone.id)),
        WriteOp::Delete {
            table: Table::Main,
            key: label_name_key(&gone.workspace_id, &gone.name),
            condition: None,
        },
    ]);
    let refused = s
        .service
        .batch_delete(
            &s.who,
            BatchDeleteLabels {
                ids: before.iter().map(|l| l.id.clone()).collect(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::NotFound);
    assert_eq!(refused.items.len(), 1);
    assert_eq!(refused.items[0].index, Some(20));
    assert_eq!(refused.items[0].id.as_deref(), Some(gone.id.as_str()));
    let expected: Vec<Label> = before.into_iter().filter(|l| l.id != gone.id).collect();
    assert_eq!(s.labels().await, expected, "only the concurrent delete");
    assert_eq!(s.markers().await.len(), markers_before.len() - 1);
    assert!(
        !s.rows(keys::LABEL).await.iter().any(references::is_marked),
        "the refused batch removed its deletion marks"
    );
    assert!(s.no_change_records().await);
}

#[tokio::test]
async fn batches_over_one_transaction_are_refused_naming_the_field() {
    let s = setup(MAX_LABEL_BATCH_UPDATE + 1).await;
    let before = s.labels().await;

    let create = s
        .service
        .batch_create(&s.who, create_req(&s, MAX_LABEL_BATCH_CREATE + 1))
        .await
        .unwrap_err();
    let update = s
        .service
        .batch_update(&s.who, renames(&before, None))
        .await
        .unwrap_err();
    let ids = (0..=MAX_LABEL_BATCH_DELETE)
        .map(|i| before.get(i).map_or(format!("lbl_{i}"), |l| l.id.clone()))
        .collect();
    let delete = s
        .service
        .batch_delete(&s.who, BatchDeleteLabels { ids })
        .await
        .unwrap_err();
    for (refused, field, max) in [
        (create, "labels", MAX_LABEL_BATCH_CREATE),
        (update, "labels", MAX_LABEL_BATCH_UPDATE),
        (delete, "ids", MAX_LABEL_BATCH_DELETE),
    ] {
        assert_eq!(refused.error.code, ErrorCode::ValidationError);
        assert_eq!(refused.error.status(), 400);
        assert_eq!(refused.error.field.as_deref(), Some(field));
        assert!(
            refused
                .error
                .message
                .contains(&format!("at most {max} items")),
            "{}",
            refused.error.message
        );
        assert!(refused.items.is_empty());
    }
    assert_eq!(s.labels().await, before, "nothing written");
    assert_eq!(s.commits(), 0);
    assert!(s.no_change_records().await);
}
