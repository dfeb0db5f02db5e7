//! The storage conformance suite against the adapters in this process: the embedded one (in
//! SQLite's memory, and on a file) and the memory store.

use std::sync::Arc;

use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::{Expiring, MemoryStore, Store};

/// A store that also deletes expired items (both adapters here).
trait ExpiringStore: Store + Expiring {}
impl<T: Store + Expiring> ExpiringStore for T {}

async fn in_memory() -> Option<Arc<dyn Store>> {
    Some(Arc::new(EmbeddedStore::in_memory()))
}

momentum_shared::storage_conformance_tests!(in_memory());

mod on_file {
    use super::*;

    async fn on_file() -> Option<Arc<dyn Store>> {
        let dir = std::env::temp_dir().join(format!("momentum-conf-{}", uuid::Uuid::new_v4()));
        Some(Arc::new(
            EmbeddedStore::open(&dir.join("db.sqlite3")).expect("open file store"),
        ))
    }

    momentum_shared::storage_conformance_tests!(on_file());
}

mod memory_store {
    use super::*;

    async fn memory_store() -> Option<Arc<dyn Store>> {
        Some(Arc::new(MemoryStore::new()))
    }

    momentum_shared::storage_conformance_tests!(memory_store());

    #[tokio::test]
    async fn transaction_token_applies_once() {
        momentum_shared::storage::conformance::transaction_token_applies_once(
            memory_store().await.unwrap(),
        )
        .await;
    }
}

/// Token idempotency: the adapters in this process (see the case's docs).
#[tokio::test]
async fn transaction_token_applies_once() {
    momentum_shared::storage::conformance::transaction_token_applies_once(
        in_memory().await.unwrap(),
    )
    .await;
}

/// Data written through one handle is there after reopening the file (the shim's restart).
#[tokio::test]
async fn file_store_survives_reopen() {
    use momentum_shared::storage::{Key, Table, WriteOp};
    let path =
        std::env::temp_dir().join(format!("momentum-reopen-{}.sqlite3", uuid::Uuid::new_v4()));
    {
        let store = EmbeddedStore::open(&path).unwrap();
        let item = serde_json::json!({"pk": "P", "sk": "S", "v": 7});
        store
            .transact(vec![WriteOp::put(
                Table::Main,
                item.as_object().unwrap().clone(),
            )])
            .await
            .unwrap();
    }
    let reopened = EmbeddedStore::open(&path).unwrap();
    let got = reopened
        .get(Table::Main, &Key::new("P", "S"))
        .await
        .unwrap();
    assert_eq!(got.unwrap()["v"], 7);
}

/// A file of the first layout (schema version 1: one `WITHOUT ROWID` table with whole JSON
/// bodies) is migrated when opened: every item reads back as it was written, from the
/// table and from the indexes, and new writes land beside it.
#[tokio::test]
async fn version_1_file_is_migrated_on_open() {
    use momentum_shared::storage::{Index, Key, Query, SortKey, Table, WriteOp};
    use serde_json::json;
    let path = std::env::temp_dir().join(format!("momentum-v1-{}.sqlite3", uuid::Uuid::new_v4()));
    let items = [
        (
            "main",
            json!({"pk": "WS#1", "sk": "ISSUE#a", "entity": "issue", "title": "A",
                   "gsi1pk": "WS#1#TEAM#t#ISSUES", "gsi1sk": "0001",
                   "gsi2pk": "WS#1#ISSUES", "gsi2sk": "a", "labels": ["x"], "n": 1.5}),
        ),
        (
            "main",
            json!({"pk": "WS#1", "sk": "ISSUE#b", "entity": "issue", "title": "B",
                   "gsi1pk": "WS#1#TEAM#t#ISSUES", "gsi1sk": "0002", "description": null}),
        ),
        // Only half of an index's keys: not in the index, the attribute kept as it is.
        (
            "main",
            json!({"pk": "WS#1", "sk": "META", "gsi1pk": "dangling", "version": 3}),
        ),
        (
            "connections",
            json!({"pk": "CONN#c", "sk": "META", "gsi1pk": "PRESENCE#1", "gsi1sk": "u#c"}),
        ),
    ];
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE items (
                 tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
                 gsi1pk TEXT, gsi1sk TEXT, gsi2pk TEXT, gsi2sk TEXT, body TEXT NOT NULL,
                 PRIMARY KEY (tbl, pk, sk)
             ) WITHOUT ROWID;
             CREATE INDEX items_gsi1 ON items (tbl, gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
             CREATE INDEX items_gsi2 ON items (tbl, gsi2pk, gsi2sk, pk, sk) WHERE gsi2pk IS NOT NULL;",
        )
        .unwrap();
        for (tbl, item) in &items {
            let s = |k: &str| item.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let (g1, g2) = match (s("gsi1pk"), s("gsi1sk")) {
                (Some(p), Some(k)) => ((Some(p), Some(k)), (s("gsi2pk"), s("gsi2sk"))),
                _ => ((None, None), (None, None)),
            };
            conn.execute(
                "INSERT INTO items VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    tbl,
                    s("pk"),
                    s("sk"),
                    g1.0,
                    g1.1,
                    g2.0,
                    g2.1,
                    item.to_string()
                ],
            )
            .unwrap();
        }
    }
    let store = EmbeddedStore::open(&path).unwrap();
    for (tbl, item) in &items {
        let table = if *tbl == "main" {
            Table::Main
        } else {
            Table::Connections
        };
        let key = Key::new(item["pk"].as_str().unwrap(), item["sk"].as_str().unwrap());
        let got = store.get(table, &key).await.unwrap();
        assert_eq!(got.as_ref(), item.as_object(), "{key:?} reads back whole");
    }
    let team = store
        .query(&Query::new(Table::Main, "WS#1#TEAM#t#ISSUES").index(Index::Gsi1))
        .await
        .unwrap();
    let titles: Vec<_> = team.items.iter().map(|i| i["title"].clone()).collect();
    assert_eq!(titles, [json!("A"), json!("B")], "gsi1 after migration");
    let ws = store
        .query(&Query::new(Table::Main, "WS#1#ISSUES").index(Index::Gsi2))
        .await
        .unwrap();
    assert_eq!(ws.items.len(), 1, "gsi2 after migration");
    let presence = store
        .query(&Query::new(Table::Connections, "PRESENCE#1").index(Index::Gsi1))
        .await
        .unwrap();
    assert_eq!(presence.items.len(), 1, "connections table after migration");
    store
        .transact(vec![WriteOp::put_new(
            Table::Main,
            json!({"pk": "WS#1", "sk": "ISSUE#c", "title": "C"})
                .as_object()
                .unwrap()
                .clone(),
        )])
        .await
        .unwrap();
    let issues = store
        .query(&Query::new(Table::Main, "WS#1").sort(SortKey::BeginsWith("ISSUE#".into())))
        .await
        .unwrap();
    assert_eq!(issues.items.len(), 3, "writes after migration");
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let old: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'items_v1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the old table is gone");
}

fn file_store() -> EmbeddedStore {
    let path =
        std::env::temp_dir().join(format!("momentum-group-{}.sqlite3", uuid::Uuid::new_v4()));
    EmbeddedStore::open(&path).expect("open file store")
}

/// Token idempotency on a file, whose writes commit in groups: a repeat in the same group
/// as the first is answered like a repeat after it.
#[tokio::test]
async fn transaction_token_applies_once_on_file() {
    momentum_shared::storage::conformance::transaction_token_applies_once(Arc::new(file_store()))
        .await;
}

/// A file store commits concurrent writes together; one that fails its condition is undone
/// alone: the writes beside it land whole, and none of its own operations does.
#[tokio::test]
async fn concurrent_writes_fail_alone_on_file() {
    use momentum_shared::storage::{Key, StoreError, Table, Update, WriteOp};
    use serde_json::json;
    let store: Arc<dyn Store> = Arc::new(file_store());
    let item = |v: serde_json::Value| v.as_object().unwrap().clone();
    store
        .transact(vec![WriteOp::put(
            Table::Main,
            item(json!({"pk": "P", "sk": "TAKEN"})),
        )])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = store.clone();
            let sk = if n % 2 == 0 {
                format!("NEW{n}")
            } else {
                "TAKEN".to_owned()
            };
            let ops = vec![
                WriteOp::put_new(Table::Main, item(json!({"pk": "P", "sk": sk, "n": n}))),
                WriteOp::Update {
                    table: Table::Main,
                    key: Key::new("P", "COUNTER"),
                    update: Update::default().add("applied", 1),
                    condition: None,
                },
            ];
            tokio::spawn(async move { (n, store.transact(ops).await) })
        })
        .collect();
    for task in tasks {
        let (n, outcome) = task.await.unwrap();
        if n % 2 == 0 {
            outcome.unwrap_or_else(|e| panic!("write {n} failed: {e}"));
        } else {
            assert!(
                matches!(outcome, Err(StoreError::TransactionCanceled { .. })),
                "write {n}: {outcome:?}"
            );
        }
    }
    let counter = store
        .get(Table::Main, &Key::new("P", "COUNTER"))
        .await
        .unwrap();
    assert_eq!(
        counter.unwrap()["applied"],
        json!(32),
        "only the 32 writes that landed count"
    );
    for n in (0..64).step_by(2) {
        let got = store
            .get(Table::Main, &Key::new("P", format!("NEW{n}")))
            .await
            .unwrap();
        assert_eq!(got.unwrap()["n"], json!(n));
    }
    let taken = store
        .get(Table::Main, &Key::new("P", "TAKEN"))
        .await
        .unwrap();
    assert!(
        taken.unwrap().get("n").is_none(),
        "the failed puts changed nothing"
    );
}

/// Time to live, as DynamoDB's: items whose `ttl` has passed are deleted, others stay; on a
/// file, in SQLite's memory and in the memory store.
#[tokio::test]
async fn expired_items_are_deleted() {
    use momentum_shared::storage::{Key, Query, Table, WriteOp};
    use serde_json::json;
    let stores: [Arc<dyn ExpiringStore>; 3] = [
        Arc::new(file_store()),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(MemoryStore::new()),
    ];
    for store in stores {
        let put = |sk: &str, ttl: Option<u64>| {
            let mut item = json!({"pk": "T", "sk": sk, "gsi1pk": "TG", "gsi1sk": sk});
            if let Some(ttl) = ttl {
                item["ttl"] = json!(ttl);
            }
            WriteOp::put(Table::Main, item.as_object().unwrap().clone())
        };
        store
            .transact(vec![
                put("past", Some(1_000)),
                put("also-past", Some(1_999)),
                put("future", Some(3_000)),
                put("forever", None),
            ])
            .await
            .unwrap();
        assert_eq!(store.expire(2_000, 1).await.unwrap(), 1, "one per batch");
        assert_eq!(store.expire(2_000, 10).await.unwrap(), 1);
        assert_eq!(store.expire(2_000, 10).await.unwrap(), 0);
        let left = store.query(&Query::new(Table::Main, "T")).await.unwrap();
        let sks: Vec<_> = left
            .items
            .iter()
            .map(|i| i["sk"].as_str().unwrap())
            .collect();
        assert_eq!(sks, ["forever", "future"]);
        let indexed = store
            .query(&Query::new(Table::Main, "TG").index(momentum_shared::storage::Index::Gsi1))
            .await
            .unwrap();
        assert_eq!(indexed.items.len(), 2, "the index forgets them too");
        assert!(
            store
                .get(Table::Main, &Key::new("T", "past"))
                .await
                .unwrap()
                .is_none()
        );
    }
}
