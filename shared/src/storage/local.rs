//! What the adapters that keep items in this process share (the embedded SQLite store and
//! the memory store): an item split into its key columns and a body, the transaction-token
//! log, and time to live.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::retry::TOKEN_WINDOW;
use super::{Index, Item, Key, StoreError, StoreResult, schema};

pub(crate) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// The item an update creates when none exists: just its key, as in DynamoDB.
pub(crate) fn key_only_item(key: &Key) -> Item {
    let mut item = Item::new();
    item.insert(schema::PK.into(), key.pk.clone().into());
    item.insert(schema::SK.into(), key.sk.clone().into());
    item
}

fn index_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_str)
}

/// The indexes an item may join, in the order adapters keep their keys.
pub(crate) const INDEXES: [Index; 2] = [Index::Gsi1, Index::Gsi2];

/// The index keys of an item: both keys of an index or neither (sparse index).
pub(crate) fn index_keys(item: &Item, index: Index) -> Option<(&str, &str)> {
    index_attr(item, index.pk_attr()).zip(index_attr(item, index.sk_attr()))
}

/// The keys of every index the item joins (`None` where it joins none), in `INDEXES` order.
pub(crate) fn all_index_keys(item: &Item) -> [Option<(&str, &str)>; 2] {
    INDEXES.map(|ix| index_keys(item, ix))
}

/// The body of an item as stored: the item without its key attributes (`pk`, `sk` and the
/// keys `gsi` of the indexes it joins, from `all_index_keys`), which the adapter keeps
/// beside it; `restore` puts them back.
pub(crate) fn body_json(item: &Item, gsi: &[Option<(&str, &str)>; 2]) -> StoreResult<String> {
    let mut columns = vec![schema::PK, schema::SK];
    for (ix, keys) in INDEXES.into_iter().zip(gsi) {
        if keys.is_some() {
            columns.extend([ix.pk_attr(), ix.sk_attr()]);
        }
    }
    serde_json::to_string(&Body {
        item,
        columns: &columns,
    })
    .map_err(internal)
}

struct Body<'a> {
    item: &'a Item,
    columns: &'a [&'a str],
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.item {
            if !self.columns.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// The item stored as `body` with these keys (the inverse of `body_json`).
pub(crate) fn restore(
    body: &str,
    pk: &str,
    sk: &str,
    gsi: [Option<(&str, &str)>; 2],
) -> StoreResult<Item> {
    let mut item: Item = serde_json::from_str(body).map_err(internal)?;
    item.insert(schema::PK.into(), pk.into());
    item.insert(schema::SK.into(), sk.into());
    for (ix, keys) in INDEXES.into_iter().zip(gsi) {
        if let Some((ipk, isk)) = keys {
            item.insert(ix.pk_attr().into(), ipk.into());
            item.insert(ix.sk_attr().into(), isk.into());
        }
    }
    Ok(item)
}

/// Most transaction tokens remembered; past it the oldest are forgotten early. At a local
/// store's write rates ten minutes of tokens stay far below it.
const MAX_TOKENS: usize = 100_000;

/// Tokens of committed transactions, as DynamoDB keeps `ClientRequestToken`s: a repeat
/// within the window is answered with success and applies nothing, so a retry after an
/// ambiguous failure is safe here too. Kept in memory: the retrying caller is this process.
#[derive(Default)]
pub(crate) struct TokenLog {
    known: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl TokenLog {
    fn forget_expired(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < TOKEN_WINDOW && self.order.len() <= MAX_TOKENS {
                break;
            }
            let (_, token) = self.order.pop_front().expect("front exists");
            self.known.remove(&token);
        }
    }

    pub(crate) fn contains(&mut self, token: &str) -> bool {
        self.forget_expired(Instant::now());
        self.known.contains(token)
    }

    pub(crate) fn insert(&mut self, token: String) {
        if self.known.insert(token.clone()) {
            self.order.push_back((Instant::now(), token));
        }
        self.forget_expired(Instant::now());
    }
}

/// A store that deletes expired items itself, as DynamoDB's time to live does for its
/// tables (change records, sessions, rate-limit windows, connections). Readers never rely on
/// it: expired items are already ignored where it matters, as on DynamoDB, which deletes
/// them within days.
#[async_trait]
pub trait Expiring: Send + Sync + 'static {
    /// Deletes up to `limit` items whose numeric `ttl` (epoch seconds) is before
    /// `now_epoch`; returns how many.
    async fn expire(&self, now_epoch: u64, limit: usize) -> StoreResult<usize>;
}

/// Deletes expired items now and every `every` from then on, in batches so writes waiting
/// behind a sweep wait for one batch at most. Runs as long as the process.
pub fn expire_periodically(store: Arc<dyn Expiring>, every: Duration) {
    /// Items per batch: a few milliseconds of the writer's time.
    const BATCH: usize = 1_000;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            loop {
                match store.expire(now, BATCH).await {
                    Ok(n) if n == BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting expired items failed");
                        break;
                    }
                }
            }
        }
    });
}
