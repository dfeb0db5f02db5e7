//! The storage port: the subset of DynamoDB that Momentum uses, as a small trait with three
//! adapters (DynamoDB, an embedded SQLite store and a memory store) that share one
//! conformance suite.
//!
//! Items are JSON objects. Every item has the string key attributes `pk` and `sk`; an item
//! joins a global secondary index only when it carries both of that index's key attributes
//! (sparse indexes, as in DynamoDB). Conditions are a typed enum, never expression strings.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod cursor;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(any(test, feature = "test-support"))]
pub mod faults;
pub mod latency;
pub mod local;
pub mod memory;
pub mod metered;
pub mod retry;
pub mod schema;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use local::{Expiring, expire_periodically};
pub use memory::MemoryStore;
pub use metered::{Metered, StorageCallScope};
pub use retry::{RequestDeadline, RetryPolicy, Retrying, TransactionToken};
pub use schema::{Index, Table};

/// One stored item: a JSON object holding at least `pk` and `sk`.
pub type Item = Map<String, Value>;

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    /// Reads the key of an item; `None` when `pk`/`sk` are missing or not strings.
    pub fn of(item: &Item) -> Option<Self> {
        Some(Self::new(
            item.get(schema::PK)?.as_str()?,
            item.get(schema::SK)?.as_str()?,
        ))
    }
}

/// A guard on a write. Evaluated against the item as it is before the transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// No item with this key exists.
    NotExists,
    /// An item with this key exists.
    Exists,
    /// The item exists and its numeric `version` attribute equals the value.
    VersionEquals(i64),
    /// The item exists and the attribute equals the value.
    AttrEquals(String, Value),
    /// The item exists and has no attribute of this name (e.g. no deletion mark).
    ExistsWithout(String),
}

impl Condition {
    /// The one definition of what a condition means, used by the embedded adapter and by
    /// tests; the DynamoDB adapter translates the same variants into expressions.
    pub fn holds(&self, existing: Option<&Item>) -> bool {
        match (self, existing) {
            (Condition::NotExists, existing) => existing.is_none(),
            (Condition::Exists, existing) => existing.is_some(),
            (Condition::VersionEquals(v), Some(item)) => {
                item.get(schema::VERSION).and_then(Value::as_i64) == Some(*v)
            }
            (Condition::AttrEquals(name, value), Some(item)) => item.get(name) == Some(value),
            (Condition::ExistsWithout(name), Some(item)) => !item.contains_key(name),
            (_, None) => false,
        }
    }
}

/// One write inside an atomic transaction.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Replace (or create) the whole item.
    Put {
        table: Table,
        item: Item,
        condition: Option<Condition>,
    },
    /// Set, remove and add attributes of an item; creates it when absent (as DynamoDB does)
    /// unless the condition says otherwise.
    Update {
        table: Table,
        key: Key,
        update: Update,
        condition: Option<Condition>,
    },
    Delete {
        table: Table,
        key: Key,
        condition: Option<Condition>,
    },
    /// Writes nothing; fails the transaction when the condition does not hold.
    ConditionCheck {
        table: Table,
        key: Key,
        condition: Condition,
    },
}

impl WriteOp {
    pub fn put(table: Table, item: Item) -> Self {
        WriteOp::Put {
            table,
            item,
            condition: None,
        }
    }

    pub fn put_new(table: Table, item: Item) -> Self {
        WriteOp::Put {
            table,
            item,
            condition: Some(Condition::NotExists),
        }
    }

    pub fn table(&self) -> Table {
        match self {
            WriteOp::Put { table, .. }
            | WriteOp::Update { table, .. }
            | WriteOp::Delete { table, .. }
            | WriteOp::ConditionCheck { table, .. } => *table,
        }
    }

    /// The key the operation touches, or `None` for a put whose item has no valid key.
    pub fn key(&self) -> Option<Key> {
        match self {
            WriteOp::Put { item, .. } => Key::of(item),
            WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. }
            | WriteOp::ConditionCheck { key, .. } => Some(key.clone()),
        }
    }

    /// Whether applying the operation twice leaves the same state as applying it once (no
    /// condition that the first application would falsify, no counter to add twice): such a
    /// write needs no idempotency token to be retried after an ambiguous failure.
    pub fn is_replay_safe(&self) -> bool {
        match self {
            WriteOp::ConditionCheck { .. } => true,
            WriteOp::Put { condition, .. } | WriteOp::Delete { condition, .. } => {
                condition.is_none()
            }
            WriteOp::Update {
                update, condition, ..
            } => condition.is_none() && update.add.is_empty(),
        }
    }

    pub fn condition(&self) -> Option<&Condition> {
        match self {
            WriteOp::Put { condition, .. }
            | WriteOp::Update { condition, .. }
            | WriteOp::Delete { condition, .. } => condition.as_ref(),
            WriteOp::ConditionCheck { condition, .. } => Some(condition),
        }
    }
}

/// Attribute changes of an update.
#[derive(Clone, Debug, Default)]
pub struct Update {
    pub set: Item,
    pub remove: Vec<String>,
    pub add: Vec<(String, i64)>,
}

impl Update {
    pub fn set(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set.insert(name.into(), value.into());
        self
    }

    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    pub fn add(mut self, name: impl Into<String>, by: i64) -> Self {
        self.add.push((name.into(), by));
        self
    }

    /// Applies the update to an item in memory (used by the embedded adapter).
    pub fn apply(&self, item: &mut Item) {
        for (k, v) in &self.set {
            item.insert(k.clone(), v.clone());
        }
        for k in &self.remove {
            item.remove(k);
        }
        for (k, by) in &self.add {
            let current = item.get(k).and_then(Value::as_i64).unwrap_or(0);
            item.insert(k.clone(), Value::from(current + by));
        }
    }

    pub(crate) fn touches_key(&self) -> bool {
        let is_key = |k: &str| k == schema::PK || k == schema::SK;
        self.set.keys().any(|k| is_key(k))
            || self.remove.iter().any(|k| is_key(k))
            || self.add.iter().any(|(k, _)| is_key(k))
    }
}

/// A sort-key condition of a query (on the table's `sk` or the index's sort key).
#[derive(Clone, Debug, PartialEq)]
pub enum SortKey {
    Eq(String),
    BeginsWith(String),
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

impl SortKey {
    pub fn matches(&self, sk: &str) -> bool {
        match self {
            SortKey::Eq(v) => sk == v,
            SortKey::BeginsWith(p) => sk.starts_with(p.as_str()),
            SortKey::Between(a, b) => sk >= a.as_str() && sk <= b.as_str(),
            SortKey::Lt(v) => sk < v.as_str(),
            SortKey::Le(v) => sk <= v.as_str(),
            SortKey::Gt(v) => sk > v.as_str(),
            SortKey::Ge(v) => sk >= v.as_str(),
        }
    }
}

/// A query by partition key (of the table or of an index) with an optional sort-key range.
#[derive(Clone, Debug)]
pub struct Query {
    pub table: Table,
    pub index: Option<Index>,
    pub pk: String,
    pub sort: Option<SortKey>,
    /// Ascending sort-key order when true.
    pub forward: bool,
    pub limit: u32,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl Query {
    pub fn new(table: Table, pk: impl Into<String>) -> Self {
        Self {
            table,
            index: None,
            pk: pk.into(),
            sort: None,
            forward: true,
            limit: 100,
            cursor: None,
        }
    }

    pub fn index(mut self, index: Index) -> Self {
        self.index = Some(index);
        self
    }

    pub fn sort(mut self, sort: SortKey) -> Self {
        self.sort = Some(sort);
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// One page of a query. `next_cursor` is present exactly when more items follow.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub next_cursor: Option<String>,
}

impl Page {
    /// The page of `q` from the items an adapter read for it, in order: up to one more than
    /// the limit, so that a cursor is given exactly when more follow (after the last item
    /// of the page).
    pub(crate) fn of(mut items: Vec<Item>, q: &Query) -> StoreResult<Self> {
        let limit = q.limit.max(1) as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            Some(cursor::Position::of(items.last().expect("limit >= 1"), q.index)?.encode())
        } else {
            None
        };
        Ok(Self { items, next_cursor })
    }
}

/// Why one operation of a cancelled transaction failed (DynamoDB's `CancellationReason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The operation was fine; another one cancelled the transaction.
    None,
    ConditionalCheckFailed,
    TransactionConflict,
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The transaction wrote nothing; one reason per operation, in order.
    #[error("transaction cancelled: {reasons:?}")]
    TransactionCanceled { reasons: Vec<CancelReason> },
    /// A cursor that this store did not issue for this query.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A request the store refuses by its own rules (too many items, duplicate keys, ...).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// Throttled, timed out or otherwise temporarily unavailable: safe to retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// True when the transaction was cancelled because the condition of operation `index`
    /// failed.
    pub fn condition_failed_at(&self, index: usize) -> bool {
        matches!(self, StoreError::TransactionCanceled { reasons }
            if reasons.get(index) == Some(&CancelReason::ConditionalCheckFailed))
    }

    pub fn is_condition_failure(&self) -> bool {
        matches!(self, StoreError::TransactionCanceled { reasons }
            if reasons.contains(&CancelReason::ConditionalCheckFailed))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Most operations a DynamoDB transaction may hold.
pub const MAX_TRANSACTION_OPS: usize = 100;

/// The storage port.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>>;

    /// Reads many items in one call; the result is aligned with `keys`.
    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>>;

    async fn query(&self, query: &Query) -> StoreResult<Page>;

    /// Applies all operations atomically or none of them.
    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()>;

    /// Atomically adds `by` to a numeric attribute (creating item and attribute when absent)
    /// and returns the new value.
    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64>;

    /// Makes every committed write durable in the store's own files before the process
    /// exits (the embedded store checkpoints its write-ahead log). Committed writes are
    /// already durable against a crash of the process; this leaves the data directory
    /// self-contained. A no-op where the store keeps nothing locally (DynamoDB).
    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// Checks the rules every adapter enforces the same way before touching storage.
pub(crate) fn validate_transaction(ops: &[WriteOp]) -> StoreResult<()> {
    if ops.is_empty() {
        return Err(StoreError::Invalid("empty transaction".into()));
    }
    if ops.len() > MAX_TRANSACTION_OPS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds at most {MAX_TRANSACTION_OPS} operations, got {}",
            ops.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        let key = op
            .key()
            .ok_or_else(|| StoreError::Invalid("item without string pk/sk".into()))?;
        if !seen.insert((op.table(), key)) {
            return Err(StoreError::Invalid(
                "a transaction cannot touch the same item twice".into(),
            ));
        }
        if let WriteOp::Update { update, .. } = op
            && update.touches_key()
        {
            return Err(StoreError::Invalid("an update cannot change pk/sk".into()));
        }
    }
    Ok(())
}

/// A shared store is a store (so decorators such as `Metered` can wrap `Arc<dyn Store>`).
#[async_trait]
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        (**self).get(table, key).await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        (**self).batch_get(table, keys).await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        (**self).query(query).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        (**self).transact(ops).await
    }

    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        (**self).increment(table, key, attr, by).await
    }

    async fn flush(&self) -> StoreResult<()> {
        (**self).flush().await
    }
}
