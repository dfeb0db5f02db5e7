//! The storage conformance suite against the embedded adapter: in memory, and on a file.

use std::sync::Arc;

use momentum_shared::storage::Store;
use momentum_shared::storage::embedded::EmbeddedStore;

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

/// Token idempotency: embedded only (see the case's docs).
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
