//! Storage-call counting: every call through the port is counted globally (per operation
//! kind) and, inside a request scope, per request. The per-request count is what a request
//! costs in DynamoDB calls; it is exposed to tests and benchmarks as a response header.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Item, Key, Page, Query, Store, StoreResult, Table, WriteOp};

tokio::task_local! {
    static REQUEST_CALLS: Arc<AtomicU64>;
}

/// Counts the storage calls made while a future runs.
pub struct StorageCallScope;

impl StorageCallScope {
    /// Runs `fut` and returns its output with the number of storage calls it made.
    pub async fn run<F: Future>(fut: F) -> (F::Output, u64) {
        let counter = Arc::new(AtomicU64::new(0));
        let out = REQUEST_CALLS.scope(counter.clone(), fut).await;
        (out, counter.load(Ordering::Relaxed))
    }
}

/// Totals since start, by operation kind.
#[derive(Debug, Default)]
pub struct CallTotals {
    pub get: AtomicU64,
    pub batch_get: AtomicU64,
    pub query: AtomicU64,
    pub transact: AtomicU64,
    pub increment: AtomicU64,
}

impl CallTotals {
    pub fn total(&self) -> u64 {
        [
            &self.get,
            &self.batch_get,
            &self.query,
            &self.transact,
            &self.increment,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// A store decorator that counts calls.
pub struct Metered<S> {
    inner: S,
    totals: Arc<CallTotals>,
}

impl<S> Metered<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            totals: Arc::default(),
        }
    }

    pub fn totals(&self) -> Arc<CallTotals> {
        self.totals.clone()
    }

    fn count(&self, kind: &AtomicU64) {
        kind.fetch_add(1, Ordering::Relaxed);
        let _ = REQUEST_CALLS.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
    }
}

#[async_trait]
impl<S: Store> Store for Metered<S> {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.count(&self.totals.get);
        self.inner.get(table, key).await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        self.count(&self.totals.batch_get);
        self.inner.batch_get(table, keys).await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.count(&self.totals.query);
        self.inner.query(query).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        self.count(&self.totals.transact);
        self.inner.transact(ops).await
    }

    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        self.count(&self.totals.increment);
        self.inner.increment(table, key, attr, by).await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.inner.flush().await
    }
}
