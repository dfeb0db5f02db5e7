//! The storage conformance suite: the same cases run against every adapter (embedded here in
//! `shared`'s tests, DynamoDB via moto and LocalStack in the `tests` crate). Each case works
//! in partitions of its own, so cases can share one store and run concurrently.
//!
//! `storage_conformance_tests!(make_store)` expands to one `#[tokio::test]` per case, where
//! `make_store` is an async expression yielding `Option<Arc<dyn Store>>` (`None` = skip; the
//! constructor prints why).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    CancelReason, Condition, Index, Item, Key, Query, SortKey, Store, StoreError, Table, Update,
    WriteOp,
};

fn unique(prefix: &str) -> String {
    format!("{prefix}#{}", uuid::Uuid::new_v4().simple())
}

fn item(v: Value) -> Item {
    match v {
        Value::Object(m) => m,
        _ => panic!("item must be an object"),
    }
}

/// A put with a not-exists condition fails on an existing key and leaves it unchanged.
pub async fn conditional_put_conflict(store: Arc<dyn Store>) {
    let pk = unique("COND");
    let first = item(json!({"pk": pk, "sk": "A", "v": 1}));
    store
        .transact(vec![WriteOp::put_new(Table::Main, first.clone())])
        .await
        .expect("first put");
    let second = item(json!({"pk": pk, "sk": "A", "v": 2}));
    let err = store
        .transact(vec![WriteOp::put_new(Table::Main, second)])
        .await
        .expect_err("second put must conflict");
    assert!(err.condition_failed_at(0), "unexpected error: {err:?}");
    let stored = store.get(Table::Main, &Key::new(&pk, "A")).await.unwrap();
    assert_eq!(stored, Some(first), "a failed put must not change the item");

    // Exists / AttrEquals guards.
    let missing = store
        .transact(vec![WriteOp::Delete {
            table: Table::Main,
            key: Key::new(&pk, "NOPE"),
            condition: Some(Condition::Exists),
        }])
        .await
        .expect_err("delete of a missing item with Exists must fail");
    assert!(missing.is_condition_failure());
    store
        .transact(vec![WriteOp::Update {
            table: Table::Main,
            key: Key::new(&pk, "A"),
            update: Update::default().set("v", 3),
            condition: Some(Condition::AttrEquals("v".into(), json!(1))),
        }])
        .await
        .expect("AttrEquals holds");
    let wrong = store
        .transact(vec![WriteOp::Update {
            table: Table::Main,
            key: Key::new(&pk, "A"),
            update: Update::default().set("v", 4),
            condition: Some(Condition::AttrEquals("v".into(), json!(1))),
        }])
        .await
        .expect_err("AttrEquals no longer holds");
    assert!(wrong.condition_failed_at(0));
    let stored = store.get(Table::Main, &Key::new(&pk, "A")).await.unwrap();
    assert_eq!(stored.unwrap()["v"], json!(3));

    // ExistsWithout: the item is there and lacks the attribute.
    let without = |key: &str, attr: &str| WriteOp::ConditionCheck {
        table: Table::Main,
        key: Key::new(&pk, key),
        condition: Condition::ExistsWithout(attr.into()),
    };
    store
        .transact(vec![without("A", "mark")])
        .await
        .expect("A exists without `mark`");
    let has = store
        .transact(vec![without("A", "v")])
        .await
        .expect_err("A has `v`");
    assert!(has.condition_failed_at(0));
    let absent = store
        .transact(vec![without("NOPE", "mark")])
        .await
        .expect_err("a missing item has no attributes, but does not exist");
    assert!(absent.condition_failed_at(0));
}

/// A transaction whose third operation fails writes nothing and names the failed operation.
pub async fn transaction_all_or_nothing(store: Arc<dyn Store>) {
    let pk = unique("TX");
    store
        .transact(vec![
            WriteOp::put(
                Table::Main,
                item(json!({"pk": pk, "sk": "EXISTING", "n": 1})),
            ),
            WriteOp::put(Table::Main, item(json!({"pk": pk, "sk": "TAKEN"}))),
        ])
        .await
        .unwrap();
    let err = store
        .transact(vec![
            WriteOp::put_new(Table::Main, item(json!({"pk": pk, "sk": "NEW1"}))),
            WriteOp::Update {
                table: Table::Main,
                key: Key::new(&pk, "EXISTING"),
                update: Update::default().add("n", 10),
                condition: None,
            },
            WriteOp::put_new(Table::Main, item(json!({"pk": pk, "sk": "TAKEN"}))),
            WriteOp::Delete {
                table: Table::Main,
                key: Key::new(&pk, "OTHER"),
                condition: None,
            },
        ])
        .await
        .expect_err("the transaction must be cancelled");
    match &err {
        StoreError::TransactionCanceled { reasons } => {
            assert_eq!(reasons.len(), 4, "one reason per operation: {reasons:?}");
            assert_eq!(reasons[2], CancelReason::ConditionalCheckFailed);
            assert_eq!(reasons[0], CancelReason::None);
        }
        other => panic!("expected TransactionCanceled, got {other:?}"),
    }
    assert_eq!(
        store
            .get(Table::Main, &Key::new(&pk, "NEW1"))
            .await
            .unwrap(),
        None,
        "nothing of a cancelled transaction may be written"
    );
    let existing = store
        .get(Table::Main, &Key::new(&pk, "EXISTING"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(existing["n"], json!(1));

    // The same operations without the failing one commit together, across both tables.
    store
        .transact(vec![
            WriteOp::put_new(Table::Main, item(json!({"pk": pk, "sk": "NEW1"}))),
            WriteOp::Update {
                table: Table::Main,
                key: Key::new(&pk, "EXISTING"),
                update: Update::default().add("n", 10).set("tag", "x"),
                condition: Some(Condition::Exists),
            },
            WriteOp::put(
                Table::Connections,
                item(json!({"pk": pk, "sk": "CONN", "ttl": 1})),
            ),
            WriteOp::ConditionCheck {
                table: Table::Main,
                key: Key::new(&pk, "TAKEN"),
                condition: Condition::Exists,
            },
        ])
        .await
        .expect("valid transaction commits");
    let existing = store
        .get(Table::Main, &Key::new(&pk, "EXISTING"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(existing["n"], json!(11));
    assert_eq!(existing["tag"], json!("x"));
    assert!(
        store
            .get(Table::Connections, &Key::new(&pk, "CONN"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get(Table::Main, &Key::new(&pk, "CONN"))
            .await
            .unwrap()
            .is_none(),
        "tables are separate"
    );

    // The same item twice in one transaction is refused, as DynamoDB does.
    let dup = store
        .transact(vec![
            WriteOp::put(Table::Main, item(json!({"pk": pk, "sk": "D"}))),
            WriteOp::put(Table::Main, item(json!({"pk": pk, "sk": "D"}))),
        ])
        .await
        .expect_err("duplicate keys");
    assert!(matches!(dup, StoreError::Invalid(_)), "{dup:?}");
}

/// Pages of a sort-key range: every item exactly once, in order, both directions; cursors
/// round-trip and are bound to their partition.
pub async fn pagination_round_trip(store: Arc<dyn Store>) {
    let pk = unique("PAGE");
    let other = unique("PAGE");
    let mut ops = Vec::new();
    for i in 0..23 {
        ops.push(WriteOp::put(
            Table::Main,
            item(json!({"pk": pk, "sk": format!("ITEM#{i:03}"), "i": i})),
        ));
    }
    ops.push(WriteOp::put(
        Table::Main,
        item(json!({"pk": pk, "sk": "META"})),
    ));
    ops.push(WriteOp::put(
        Table::Main,
        item(json!({"pk": other, "sk": "ITEM#000"})),
    ));
    store.transact(ops).await.unwrap();

    for forward in [true, false] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let mut q = Query::new(Table::Main, &pk)
                .sort(SortKey::BeginsWith("ITEM#".into()))
                .limit(5)
                .cursor(cursor.take());
            if !forward {
                q = q.backward();
            }
            let page = store.query(&q).await.unwrap();
            pages += 1;
            assert!(page.items.len() <= 5);
            seen.extend(page.items.iter().map(|i| i["i"].as_i64().unwrap()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut expected: Vec<i64> = (0..23).collect();
        if !forward {
            expected.reverse();
        }
        assert_eq!(seen, expected, "forward={forward}");
        assert_eq!(pages, 5, "23 items in pages of 5");
    }

    // An exact multiple of the page size ends without a dangling cursor.
    let page = store
        .query(
            &Query::new(Table::Main, &pk)
                .sort(SortKey::Between("ITEM#000".into(), "ITEM#004".into()))
                .limit(5),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert!(page.next_cursor.is_none(), "no more items, no cursor");

    let lt = store
        .query(&Query::new(Table::Main, &pk).sort(SortKey::Lt("ITEM#002".into())))
        .await
        .unwrap();
    assert_eq!(lt.items.len(), 2);
    let ge = store
        .query(&Query::new(Table::Main, &pk).sort(SortKey::Ge("ITEM#020".into())))
        .await
        .unwrap();
    assert_eq!(ge.items.len(), 4, "ITEM#020..022 and META");

    // A cursor is opaque, but bound to its partition: it cannot page another one.
    let first = store
        .query(&Query::new(Table::Main, &pk).limit(3))
        .await
        .unwrap();
    let cursor = first.next_cursor.expect("more items");
    let err = store
        .query(&Query::new(Table::Main, &other).cursor(Some(cursor)))
        .await
        .expect_err("foreign cursor");
    assert!(matches!(err, StoreError::InvalidCursor));
    let err = store
        .query(&Query::new(Table::Main, &pk).cursor(Some("not-a-cursor".into())))
        .await
        .expect_err("garbage cursor");
    assert!(matches!(err, StoreError::InvalidCursor));
}

/// Sparse GSI queries: only items carrying the index keys, ordered by the index sort key,
/// paginated without loss even when index sort keys tie.
pub async fn gsi_query(store: Arc<dyn Store>) {
    let base = unique("GSI");
    let gpk = format!("{base}#G");
    let mut ops = Vec::new();
    for i in 0..12 {
        // Two items share each index sort key.
        ops.push(WriteOp::put(
            Table::Main,
            item(json!({
                "pk": format!("{base}#{i}"), "sk": "X",
                "gsi1pk": gpk, "gsi1sk": format!("S#{:02}", i / 2), "i": i
            })),
        ));
    }
    ops.push(WriteOp::put(
        Table::Main,
        item(json!({"pk": format!("{base}#nogsi"), "sk": "X", "gsi1pk": gpk})),
    ));
    ops.push(WriteOp::put(
        Table::Main,
        item(json!({"pk": format!("{base}#g2"), "sk": "X", "gsi2pk": gpk, "gsi2sk": "S#00"})),
    ));
    store.transact(ops).await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                &Query::new(Table::Main, &gpk)
                    .index(Index::Gsi1)
                    .limit(5)
                    .cursor(cursor.take()),
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|i| i["i"].as_i64().unwrap()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..12).collect::<Vec<_>>(),
        "each indexed item once: {seen:?}"
    );
    let order: Vec<i64> = seen.iter().map(|i| i / 2).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "sorted by gsi1sk");

    let ranged = store
        .query(
            &Query::new(Table::Main, &gpk)
                .index(Index::Gsi1)
                .sort(SortKey::Ge("S#04".into()))
                .backward(),
        )
        .await
        .unwrap();
    let got: Vec<i64> = ranged
        .items
        .iter()
        .map(|i| i["i"].as_i64().unwrap())
        .collect();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|i| *i >= 8));
    assert!(got[0] >= got[3], "descending");

    let g2 = store
        .query(&Query::new(Table::Main, &gpk).index(Index::Gsi2))
        .await
        .unwrap();
    assert_eq!(g2.items.len(), 1, "indexes are separate");
}

/// 50 concurrent increments: every caller sees a distinct value and none is lost.
pub async fn concurrent_counter(store: Arc<dyn Store>) {
    let key = Key::new(unique("COUNTER"), "C");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.increment(Table::Main, &key, "n", 1).await })
        })
        .collect();
    let mut values = HashSet::new();
    for t in tasks {
        values.insert(t.await.unwrap().expect("increment"));
    }
    assert_eq!(values, (1..=50).collect::<HashSet<i64>>());
    let stored = store.get(Table::Main, &key).await.unwrap().unwrap();
    assert_eq!(stored["n"], json!(50));
    assert_eq!(
        store.increment(Table::Main, &key, "n", -5).await.unwrap(),
        45
    );
}

/// Two writers at the same version: exactly one wins, the other changes nothing.
pub async fn optimistic_version_conflict(store: Arc<dyn Store>) {
    let key = Key::new(unique("VER"), "DOC");
    store
        .transact(vec![WriteOp::put_new(
            Table::Main,
            item(json!({"pk": key.pk, "sk": key.sk, "version": 1, "title": "a"})),
        )])
        .await
        .unwrap();
    let write = |title: &'static str| {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move {
            store
                .transact(vec![WriteOp::Update {
                    table: Table::Main,
                    key,
                    update: Update::default().set("title", title).add("version", 1),
                    condition: Some(Condition::VersionEquals(1)),
                }])
                .await
        })
    };
    let (a, b) = (write("b"), write("c"));
    let results = [a.await.unwrap(), b.await.unwrap()];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one writer wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                e.condition_failed_at(0),
                "loser sees a condition failure: {e:?}"
            );
        }
    }
    let stored = store.get(Table::Main, &key).await.unwrap().unwrap();
    assert_eq!(stored["version"], json!(2));
    let winner = if results[0].is_ok() { "b" } else { "c" };
    assert_eq!(stored["title"], json!(winner));
}

/// Batch reads come back aligned with the keys, missing items as `None`; values of every
/// JSON type round-trip unchanged.
pub async fn batch_get_and_values(store: Arc<dyn Store>) {
    let pk = unique("BATCH");
    let rich = item(json!({
        "pk": pk, "sk": "RICH", "int": 42, "neg": -7, "float": 1.5, "flag": true,
        "none": null, "list": [1, "two", {"three": 3}], "map": {"a": {"b": "c"}},
        "empty": "", "unicode": "naïve 🚀"
    }));
    store
        .transact(vec![
            WriteOp::put(Table::Main, rich.clone()),
            WriteOp::put(Table::Main, item(json!({"pk": pk, "sk": "B"}))),
        ])
        .await
        .unwrap();
    let keys: Vec<Key> = (0..120)
        .map(|i| Key::new(&pk, format!("MISSING{i}")))
        .chain([Key::new(&pk, "B"), Key::new(&pk, "RICH")])
        .collect();
    let got = store.batch_get(Table::Main, &keys).await.unwrap();
    assert_eq!(got.len(), keys.len());
    assert!(got[..120].iter().all(Option::is_none));
    assert_eq!(got[121].as_ref(), Some(&rich), "values round-trip");
    assert_eq!(got[120].as_ref().unwrap()["sk"], json!("B"));
}

/// A transaction repeated with the token of a committed one succeeds and writes nothing
/// (DynamoDB's `ClientRequestToken`); a new token applies again. Not in the shared list:
/// moto does not emulate token idempotency, so on DynamoDB this holds by AWS's contract.
pub async fn transaction_token_applies_once(store: Arc<dyn Store>) {
    use super::TransactionToken;
    let pk = unique("TOKEN");
    let ops = |n: i64| {
        vec![
            WriteOp::put_new(Table::Main, item(json!({"pk": pk, "sk": format!("I{n}")}))),
            WriteOp::Update {
                table: Table::Main,
                key: Key::new(&pk, "COUNTER"),
                update: Update::default().add("n", 1),
                condition: None,
            },
        ]
    };
    let single = || {
        vec![WriteOp::put_new(
            Table::Main,
            item(json!({"pk": pk, "sk": "ONE"})),
        )]
    };
    let token = TransactionToken::fresh();
    for _ in 0..3 {
        TransactionToken::scope(token.clone(), store.transact(ops(1)))
            .await
            .expect("a repeat of a committed token succeeds");
    }
    let one = TransactionToken::fresh();
    for _ in 0..2 {
        TransactionToken::scope(one.clone(), store.transact(single()))
            .await
            .expect("a repeated single conditional write succeeds too");
    }
    let counter = store
        .get(Table::Main, &Key::new(&pk, "COUNTER"))
        .await
        .unwrap();
    assert_eq!(counter.unwrap()["n"], json!(1), "applied once");
    TransactionToken::scope(TransactionToken::fresh(), store.transact(ops(2)))
        .await
        .unwrap();
    let counter = store
        .get(Table::Main, &Key::new(&pk, "COUNTER"))
        .await
        .unwrap();
    assert_eq!(
        counter.unwrap()["n"],
        json!(2),
        "a new token is a new transaction"
    );
    // Without a token nothing is deduplicated: the condition catches the repeat.
    let again = store.transact(ops(2)).await.unwrap_err();
    assert!(again.condition_failed_at(0), "{again:?}");
}

/// A page resumes after its cursor's item even when that item was deleted in between, on
/// the table and on an index: nothing is skipped or repeated.
pub async fn cursor_after_deleted_item(store: Arc<dyn Store>) {
    let base = unique("CURDEL");
    let gpk = format!("{base}#G");
    let ops = (0..6)
        .map(|i| {
            WriteOp::put(
                Table::Main,
                item(json!({
                    "pk": &base, "sk": format!("S#{i}"),
                    "gsi1pk": gpk, "gsi1sk": format!("G#{i}"), "i": i
                })),
            )
        })
        .collect();
    store.transact(ops).await.unwrap();
    // The table pass deletes item 1 (the end of its first page), the index pass item 2.
    for (index, first_page, rest_page) in [
        (None, [0, 1], vec![2, 3, 4, 5]),
        (Some(Index::Gsi1), [0, 2], vec![3, 4, 5]),
    ] {
        let query = match index {
            None => Query::new(Table::Main, &base),
            Some(ix) => Query::new(Table::Main, &gpk).index(ix),
        };
        let first = store.query(&query.clone().limit(2)).await.unwrap();
        let got: Vec<i64> = first
            .items
            .iter()
            .map(|i| i["i"].as_i64().unwrap())
            .collect();
        assert_eq!(got, first_page);
        let last = Key::of(first.items.last().unwrap()).unwrap();
        store
            .transact(vec![WriteOp::Delete {
                table: Table::Main,
                key: last,
                condition: None,
            }])
            .await
            .unwrap();
        let rest = store
            .query(&query.limit(10).cursor(first.next_cursor))
            .await
            .unwrap();
        let got: Vec<i64> = rest
            .items
            .iter()
            .map(|i| i["i"].as_i64().unwrap())
            .collect();
        assert_eq!(got, rest_page, "index {index:?}");
    }
}

/// Every sort-key condition, forward and backward, on the table and on an index, in pages
/// of 3: each query returns exactly the matching items, in order (checked against a plain
/// filter of what was written).
pub async fn sort_conditions(store: Arc<dyn Store>) {
    let base = unique("SORT");
    let gpk = format!("{base}#G");
    let sks = ["a", "ab", "abc", "abd", "b", "ba", "c"];
    let ops = sks
        .iter()
        .map(|sk| {
            WriteOp::put(
                Table::Main,
                item(json!({"pk": &base, "sk": sk, "gsi1pk": &gpk, "gsi1sk": sk})),
            )
        })
        .collect();
    store.transact(ops).await.unwrap();
    let conditions = [
        SortKey::Eq("ab".into()),
        SortKey::BeginsWith("ab".into()),
        SortKey::BeginsWith("z".into()),
        SortKey::Between("ab".into(), "b".into()),
        SortKey::Lt("abd".into()),
        SortKey::Le("abd".into()),
        SortKey::Gt("abd".into()),
        SortKey::Ge("abd".into()),
    ];
    for sort in conditions {
        for index in [None, Some(Index::Gsi1)] {
            for forward in [true, false] {
                let mut want: Vec<&str> = sks.iter().copied().filter(|s| sort.matches(s)).collect();
                if !forward {
                    want.reverse();
                }
                let mut query = match index {
                    None => Query::new(Table::Main, &base),
                    Some(ix) => Query::new(Table::Main, &gpk).index(ix),
                }
                .sort(sort.clone())
                .limit(3);
                if !forward {
                    query = query.backward();
                }
                let mut got = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store
                        .query(&query.clone().cursor(cursor.take()))
                        .await
                        .unwrap();
                    got.extend(
                        page.items
                            .iter()
                            .map(|i| i["sk"].as_str().unwrap().to_owned()),
                    );
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                assert_eq!(got, want, "{sort:?} index {index:?} forward {forward}");
            }
        }
    }
}

#[macro_export]
macro_rules! storage_conformance_tests {
    ($make:expr) => {
        $crate::storage_conformance_tests!(@cases $make;
            conditional_put_conflict, transaction_all_or_nothing, pagination_round_trip,
            gsi_query, concurrent_counter, optimistic_version_conflict, batch_get_and_values,
            cursor_after_deleted_item, sort_conditions);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(store) = $make.await {
                    $crate::storage::conformance::$case(store).await;
                }
            }
        )*
    };
}
