//! The memory adapter (`MOMENTUM_STORE=memory`, benches, throwaway runs): DynamoDB's
//! semantics for the operations of the port on ordered maps in this process, no database
//! engine underneath.
//!
//! Until 2026-12-07 the memory store was SQLite's `:memory:` behind one mutex. A create
//! then spent about half of its CPU in SQLite (its transaction 36 %, the two number draws
//! 10 %, docs/performance.md "Writes without turns") and 32 writers queued for the one
//! connection; here a transaction is a few map inserts under a lock held for microseconds.
//!
//! Layout, for size (bench footprint, docs/performance.md "A memory store without SQLite":
//! 7,136 bytes of RSS per issue at 50,000 issues, against 5,324 for SQLite in memory):
//! - A table is one B-tree of rows ordered by (partition, sort key). A map per partition
//!   cost a B-tree node (~1.3 KB) for each one-item partition, and a create makes several.
//!   Lookups and range bounds are borrowed probes (`RowProbe`, `IndexProbe`): no allocation.
//! - Partition names are shared `Arc<str>`s: a new row takes the one of its partition's
//!   first row, and index entries and the expiry order share the row's.
//! - A row holds its body as compact JSON without the key attributes (`local::body_json`),
//!   as the SQLite store does; index keys and `ttl` sit in a box beside it only when the
//!   item has them. Reads copy the body under the lock and parse it outside.
//! - An index is one B-tree of (index partition, index sort key, pk, sk): items that share
//!   an index sort key are ordered by their key, so a cursor resumes after its item whether
//!   or not that item is still there.
//!
//! One `RwLock` guards everything. A transaction holds it for writing while it checks its
//! conditions and applies its writes; bodies of puts are serialised before it takes the
//! lock. Readers share it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use serde_json::Value;

use super::cursor::Position;
use super::local::{
    Expiring, TokenLog, all_index_keys, body_json, internal, key_only_item, restore,
};
use super::retry::TransactionToken;
use super::{
    CancelReason, Condition, Index, Item, Key, Page, Query, SortKey, Store, StoreError,
    StoreResult, Table, WriteOp, schema, validate_transaction,
};

type Name = Arc<str>;

fn index_slot(index: Index) -> usize {
    match index {
        Index::Gsi1 => 0,
        Index::Gsi2 => 1,
    }
}

fn table_slot(table: Table) -> usize {
    match table {
        Table::Main => 0,
        Table::Connections => 1,
    }
}

/// A name in a B-tree probe: a stored one, or a bound below or above every name (so a range
/// can start before the first sort key of a partition or end after its last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Edge<T> {
    Low,
    At(T),
    High,
}

/// A row's key: partition and sort key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey(Name, Name);

/// An index entry: index partition, index sort key, then the item's key (which orders items
/// that share an index sort key, and lets a cursor resume after one of them).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct IndexEntry(Name, Name, Name, Name);

/// What a row key is compared by. Stored keys and borrowed probes (`(&str, Edge<&str>)`)
/// compare alike, so lookups and range bounds need no allocation.
trait RowProbe {
    fn parts(&self) -> (&str, Edge<&str>);
}

impl RowProbe for RowKey {
    fn parts(&self) -> (&str, Edge<&str>) {
        (&self.0, Edge::At(&self.1))
    }
}

impl RowProbe for (&str, Edge<&str>) {
    fn parts(&self) -> (&str, Edge<&str>) {
        *self
    }
}

/// What an index entry is compared by (see `RowProbe`).
trait IndexProbe {
    fn parts(&self) -> (&str, Edge<&str>, Edge<(&str, &str)>);
}

impl IndexProbe for IndexEntry {
    fn parts(&self) -> (&str, Edge<&str>, Edge<(&str, &str)>) {
        (&self.0, Edge::At(&self.1), Edge::At((&self.2, &self.3)))
    }
}

impl IndexProbe for (&str, Edge<&str>, Edge<(&str, &str)>) {
    fn parts(&self) -> (&str, Edge<&str>, Edge<(&str, &str)>) {
        *self
    }
}

macro_rules! probe_order {
    ($probe:ident, $stored:ident) => {
        impl<'a> std::borrow::Borrow<dyn $probe + 'a> for $stored {
            fn borrow(&self) -> &(dyn $probe + 'a) {
                self
            }
        }
        impl PartialEq for dyn $probe + '_ {
            fn eq(&self, other: &Self) -> bool {
                self.parts() == other.parts()
            }
        }
        impl Eq for dyn $probe + '_ {}
        impl PartialOrd for dyn $probe + '_ {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for dyn $probe + '_ {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.parts().cmp(&other.parts())
            }
        }
    };
}

probe_order!(RowProbe, RowKey);
probe_order!(IndexProbe, IndexEntry);

/// A stored item: its body (the item without `pk`, `sk` and index keys) and, for the items
/// that have them, its index keys and expiry (most items have neither: one word for them).
struct Row {
    body: Box<str>,
    extra: Option<Box<Extra>>,
}

struct Extra {
    /// Index partition and sort key, per index the item joins (shared with the entries).
    gsi: [Option<(Name, Name)>; 2],
    /// Epoch seconds of the numeric `ttl` attribute (the expiry order holds it).
    ttl: Option<i64>,
}

#[derive(Default)]
struct Space {
    rows: BTreeMap<RowKey, Row>,
    indexes: [BTreeSet<IndexEntry>; 2],
}

#[derive(Default)]
struct State {
    spaces: [Space; 2],
    /// Items with a `ttl`, soonest first.
    expiry: BTreeSet<(i64, Table, Name, Name)>,
    tokens: TokenLog,
}

/// An item ready to be stored: serialised outside the lock.
struct Prepared {
    key: Key,
    gsi: [Option<(String, String)>; 2],
    ttl: Option<i64>,
    body: Box<str>,
}

impl Prepared {
    fn of(item: &Item) -> StoreResult<Self> {
        let key = Key::of(item).ok_or_else(|| StoreError::Invalid("item without pk/sk".into()))?;
        let gsi = all_index_keys(item);
        Ok(Self {
            key,
            body: body_json(item, &gsi)?.into(),
            gsi: gsi.map(|keys| keys.map(|(p, s)| (p.to_owned(), s.to_owned()))),
            ttl: item.get(schema::TTL).and_then(ttl_seconds),
        })
    }
}

/// A `ttl` as SQLite's `json_extract(body, '$.ttl') < now` compares it with a whole `now`:
/// numbers only, a fraction rounded down (1999.5 < 2000, 2000.5 is not).
fn ttl_seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64))
}

/// A row copied under the lock (reference counts and the body's bytes), parsed after it.
struct Snapshot {
    pk: Name,
    sk: Name,
    gsi: [Option<(Name, Name)>; 2],
    body: String,
}

impl Snapshot {
    fn of(key: &RowKey, row: &Row) -> Self {
        Self {
            pk: key.0.clone(),
            sk: key.1.clone(),
            gsi: row.extra.as_ref().map_or([None, None], |e| e.gsi.clone()),
            body: row.body.to_string(),
        }
    }

    fn parse(&self) -> StoreResult<Item> {
        let gsi = [0, 1].map(|i| self.gsi[i].as_ref().map(|(p, s)| (&**p, &**s)));
        restore(&self.body, &self.pk, &self.sk, gsi)
    }
}

/// The first stored name equal to `name` in a set ordered by it: the one to share.
fn shared_name<'a>(mut first: impl Iterator<Item = &'a Name>, name: String) -> Name {
    match first.next() {
        Some(n) if **n == *name => n.clone(),
        _ => Name::from(name),
    }
}

impl State {
    fn space(&self, table: Table) -> &Space {
        &self.spaces[table_slot(table)]
    }

    fn row(&self, table: Table, key: &Key) -> Option<(&RowKey, &Row)> {
        let probe = (key.pk.as_str(), Edge::At(key.sk.as_str()));
        self.space(table)
            .rows
            .get_key_value(&probe as &dyn RowProbe)
    }

    fn item(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.row(table, key)
            .map(|(key, row)| Snapshot::of(key, row).parse())
            .transpose()
    }

    /// Stores an item in place of any with its key.
    fn put(&mut self, table: Table, item: Prepared) {
        let key = match self.unlink(table, &item.key) {
            Some(key) => key,
            None => {
                let rows = &self.space(table).rows;
                let first = (item.key.pk.as_str(), Edge::Low);
                let pk = shared_name(
                    rows.range::<dyn RowProbe, _>((
                        Bound::Included(&first as &dyn RowProbe),
                        Bound::Unbounded,
                    ))
                    .map(|(k, _)| &k.0),
                    item.key.pk,
                );
                RowKey(pk, Name::from(item.key.sk))
            }
        };
        let space = &mut self.spaces[table_slot(table)];
        let mut gsi: [Option<(Name, Name)>; 2] = [None, None];
        for (slot, keys) in item.gsi.into_iter().enumerate() {
            let Some((ipk, isk)) = keys else { continue };
            let entries = &mut space.indexes[slot];
            let first = (ipk.as_str(), Edge::Low, Edge::Low);
            let ipk = shared_name(
                entries
                    .range::<dyn IndexProbe, _>((
                        Bound::Included(&first as &dyn IndexProbe),
                        Bound::Unbounded,
                    ))
                    .map(|e| &e.0),
                ipk,
            );
            let isk = Name::from(isk);
            entries.insert(IndexEntry(
                ipk.clone(),
                isk.clone(),
                key.0.clone(),
                key.1.clone(),
            ));
            gsi[slot] = Some((ipk, isk));
        }
        if let Some(ttl) = item.ttl {
            self.expiry
                .insert((ttl, table, key.0.clone(), key.1.clone()));
        }
        let extra = (gsi.iter().any(Option::is_some) || item.ttl.is_some())
            .then(|| Box::new(Extra { gsi, ttl: item.ttl }));
        space.rows.insert(
            key,
            Row {
                body: item.body,
                extra,
            },
        );
    }

    /// Removes an item and its index and expiry entries; returns its key (to be reused).
    fn unlink(&mut self, table: Table, key: &Key) -> Option<RowKey> {
        let space = &mut self.spaces[table_slot(table)];
        let probe = (key.pk.as_str(), Edge::At(key.sk.as_str()));
        let (key, row) = space.rows.remove_entry(&probe as &dyn RowProbe)?;
        if let Some(extra) = row.extra {
            for (slot, keys) in extra.gsi.into_iter().enumerate() {
                if let Some((ipk, isk)) = keys {
                    space.indexes[slot].remove(&IndexEntry(ipk, isk, key.0.clone(), key.1.clone()));
                }
            }
            if let Some(ttl) = extra.ttl {
                self.expiry
                    .remove(&(ttl, table, key.0.clone(), key.1.clone()));
            }
        }
        Some(key)
    }

    /// Checks every condition against the state before the transaction (one reason per
    /// operation, as DynamoDB reports them), then applies every write.
    fn transact(&mut self, ops: Vec<WriteOp>, mut puts: Vec<Option<Prepared>>) -> StoreResult<()> {
        let mut reasons = Vec::with_capacity(ops.len());
        let mut updated = Vec::with_capacity(ops.len());
        for op in &ops {
            let key = op.key().expect("validated");
            let existing = match (op, op.condition()) {
                (WriteOp::Update { .. }, _) => self.item(op.table(), &key)?,
                (_, None) => None,
                (_, Some(Condition::NotExists | Condition::Exists)) => {
                    self.row(op.table(), &key).map(|_| Item::new())
                }
                (_, Some(_)) => self.item(op.table(), &key)?,
            };
            let holds = op.condition().is_none_or(|c| c.holds(existing.as_ref()));
            reasons.push(if holds {
                CancelReason::None
            } else {
                CancelReason::ConditionalCheckFailed
            });
            updated.push(match op {
                WriteOp::Update { update, .. } if holds => {
                    let mut item = existing.unwrap_or_else(|| key_only_item(&key));
                    update.apply(&mut item);
                    Some(Prepared::of(&item)?)
                }
                _ => None,
            });
        }
        if reasons.iter().any(|r| *r != CancelReason::None) {
            return Err(StoreError::TransactionCanceled { reasons });
        }
        for ((op, put), update) in ops.into_iter().zip(puts.iter_mut()).zip(updated) {
            match op {
                WriteOp::Put { table, .. } => self.put(table, put.take().expect("prepared")),
                WriteOp::Update { table, .. } => self.put(table, update.expect("applied")),
                WriteOp::Delete { table, key, .. } => {
                    self.unlink(table, &key);
                }
                WriteOp::ConditionCheck { .. } => {}
            }
        }
        Ok(())
    }

    fn query(&self, q: &Query, position: Option<&Position>) -> Vec<Snapshot> {
        let limit = q.limit.max(1) as usize + 1;
        let space = self.space(q.table);
        let (lower, upper) = sort_bounds(q.sort.as_ref());
        let pk = q.pk.as_str();
        match q.index {
            None => {
                let after = position.map(|p| Bound::Excluded((pk, Edge::At(p.sk.as_str()))));
                let (lower, upper) = (
                    row_bound(pk, lower.as_ref().map(String::as_str), true),
                    row_bound(pk, upper.as_ref().map(String::as_str), false),
                );
                let Some((lower, upper)) = range_of(lower, upper, after, q.forward) else {
                    return Vec::new();
                };
                let range = (
                    lower.as_ref().map(|k| k as &dyn RowProbe),
                    upper.as_ref().map(|k| k as &dyn RowProbe),
                );
                let rows = space.rows.range::<dyn RowProbe, _>(range);
                in_order(rows, q.forward)
                    .take(limit)
                    .map(|(k, row)| Snapshot::of(k, row))
                    .collect()
            }
            Some(index) => {
                // After the cursor's item, whether or not it is still there.
                let after = position.map(|p| {
                    let isk = p.index_key.as_ref().map_or("", |(_, s)| s.as_str());
                    Bound::Excluded((pk, Edge::At(isk), Edge::At((p.pk.as_str(), p.sk.as_str()))))
                });
                let (lower, upper) = (
                    index_bound(pk, lower.as_ref().map(String::as_str), true),
                    index_bound(pk, upper.as_ref().map(String::as_str), false),
                );
                let Some((lower, upper)) = range_of(lower, upper, after, q.forward) else {
                    return Vec::new();
                };
                let range = (
                    lower.as_ref().map(|k| k as &dyn IndexProbe),
                    upper.as_ref().map(|k| k as &dyn IndexProbe),
                );
                let entries = space.indexes[index_slot(index)].range::<dyn IndexProbe, _>(range);
                in_order(entries, q.forward)
                    .filter_map(|e| {
                        let probe = (&*e.2, Edge::At(&*e.3));
                        let (key, row) = space.rows.get_key_value(&probe as &dyn RowProbe)?;
                        Some(Snapshot::of(key, row))
                    })
                    .take(limit)
                    .collect()
            }
        }
    }
}

/// A range in the query's direction.
fn in_order<'a, T>(
    range: impl DoubleEndedIterator<Item = T> + 'a,
    forward: bool,
) -> Box<dyn Iterator<Item = T> + 'a> {
    if forward {
        Box::new(range)
    } else {
        Box::new(range.rev())
    }
}

/// A bound of a table query in partition `pk`: a sort-key bound, or the partition's edge.
fn row_bound<'a>(pk: &'a str, b: Bound<&'a str>, low: bool) -> Bound<(&'a str, Edge<&'a str>)> {
    match b {
        Bound::Included(s) => Bound::Included((pk, Edge::At(s))),
        Bound::Excluded(s) => Bound::Excluded((pk, Edge::At(s))),
        Bound::Unbounded if low => Bound::Included((pk, Edge::Low)),
        Bound::Unbounded => Bound::Included((pk, Edge::High)),
    }
}

type IndexBound<'a> = (&'a str, Edge<&'a str>, Edge<(&'a str, &'a str)>);

/// A bound of an index query in index partition `pk`: an index sort-key bound (before or
/// after every item with that sort key), or the partition's edge.
fn index_bound<'a>(pk: &'a str, b: Bound<&'a str>, low: bool) -> Bound<IndexBound<'a>> {
    let (near, far) = if low {
        (Edge::Low, Edge::High)
    } else {
        (Edge::High, Edge::Low)
    };
    match b {
        Bound::Included(s) => Bound::Included((pk, Edge::At(s), near)),
        Bound::Excluded(s) => Bound::Excluded((pk, Edge::At(s), far)),
        Bound::Unbounded if low => Bound::Included((pk, Edge::Low, near)),
        Bound::Unbounded => Bound::Included((pk, Edge::High, near)),
    }
}

/// The sort-key range of a query's sort condition.
fn sort_bounds(sort: Option<&SortKey>) -> (Bound<String>, Bound<String>) {
    use Bound::{Excluded, Included, Unbounded};
    let name = |s: &str| s.to_owned();
    match sort {
        None => (Unbounded, Unbounded),
        Some(SortKey::Eq(v)) => (Included(name(v)), Included(name(v))),
        Some(SortKey::BeginsWith(p)) => (
            Included(name(p)),
            prefix_end(p).map_or(Unbounded, |end| Excluded(name(&end))),
        ),
        Some(SortKey::Between(a, b)) => (Included(name(a)), Included(name(b))),
        Some(SortKey::Lt(v)) => (Unbounded, Excluded(name(v))),
        Some(SortKey::Le(v)) => (Unbounded, Included(name(v))),
        Some(SortKey::Gt(v)) => (Excluded(name(v)), Unbounded),
        Some(SortKey::Ge(v)) => (Included(name(v)), Unbounded),
    }
}

/// The least string after every string that starts with `prefix` (`None`: no such string,
/// the range is open). `str` order is code-point order, so it is the prefix with its last
/// character advanced, dropping characters that cannot advance.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The range of a query: its sort condition, narrowed to what follows the cursor (in the
/// query's direction). `None` when it is empty (`BTreeMap::range` panics on such bounds).
fn range_of<K: Ord>(
    lower: Bound<K>,
    upper: Bound<K>,
    after: Option<Bound<K>>,
    forward: bool,
) -> Option<(Bound<K>, Bound<K>)> {
    let (lower, upper) = match after {
        None => (lower, upper),
        Some(after) if forward => (tighter(lower, after, true), upper),
        Some(after) => (lower, tighter(upper, after, false)),
    };
    let empty = match (&lower, &upper) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
        _ => false,
    };
    (!empty).then_some((lower, upper))
}

/// The narrower of two lower (`low`) or two upper bounds.
fn tighter<K: Ord>(a: Bound<K>, b: Bound<K>, low: bool) -> Bound<K> {
    use Bound::{Excluded, Included, Unbounded};
    fn key<K>(b: &Bound<K>) -> Option<&K> {
        match b {
            Included(k) | Excluded(k) => Some(k),
            Unbounded => None,
        }
    }
    let (Some(ka), Some(kb)) = (key(&a), key(&b)) else {
        return if matches!(a, Unbounded) { b } else { a };
    };
    match ka.cmp(kb) {
        std::cmp::Ordering::Equal => {
            if matches!(a, Excluded(_)) {
                a
            } else {
                b
            }
        }
        std::cmp::Ordering::Greater if low => a,
        std::cmp::Ordering::Less if !low => a,
        _ => b,
    }
}

/// The memory store. Cheap to clone (one shared state).
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave a half-applied transaction: conditions are
    // checked and every body prepared before the first map is changed.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored item of every table: tooling only (the footprint report), never a
    /// request path (there is no Scan in the port).
    pub fn for_each_item(&self, mut f: impl FnMut(Table, Item)) -> StoreResult<()> {
        let rows: Vec<(Table, Snapshot)> = {
            let state = self.read();
            Table::ALL
                .into_iter()
                .flat_map(|table| {
                    state
                        .space(table)
                        .rows
                        .iter()
                        .map(move |(key, row)| (table, Snapshot::of(key, row)))
                })
                .collect()
        };
        for (table, row) in rows {
            f(table, row.parse()?);
        }
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        let row = self
            .read()
            .row(table, key)
            .map(|(key, row)| Snapshot::of(key, row));
        row.map(|r| r.parse()).transpose()
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        // One read lock for the whole batch: it sees no transaction half-way.
        let rows: Vec<Option<Snapshot>> = {
            let state = self.read();
            keys.iter()
                .map(|k| state.row(table, k).map(|(key, row)| Snapshot::of(key, row)))
                .collect()
        };
        rows.into_iter()
            .map(|r| r.map(|r| r.parse()).transpose())
            .collect()
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        // The cursor is checked before anything is read, as on DynamoDB.
        let position = query
            .cursor
            .as_deref()
            .map(|c| Position::decode(c, query.index, &query.pk))
            .transpose()?;
        let rows = self.read().query(query, position.as_ref());
        let items = rows
            .iter()
            .map(Snapshot::parse)
            .collect::<StoreResult<Vec<_>>>()?;
        Page::of(items, query)
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        let token = TransactionToken::current();
        let puts = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { item, .. } => Prepared::of(item).map(Some),
                _ => Ok(None),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let mut state = self.write();
        // Checked and recorded under the same lock as the writes: no other transaction can
        // slip between a commit and its token.
        if let Some(token) = &token
            && state.tokens.contains(token)
        {
            return Ok(());
        }
        state.transact(ops, puts)?;
        if let Some(token) = token {
            state.tokens.insert(token);
        }
        Ok(())
    }

    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        if attr == schema::PK || attr == schema::SK {
            return Err(StoreError::Invalid(
                "cannot increment a key attribute".into(),
            ));
        }
        let mut state = self.write();
        let mut item = state
            .item(table, key)?
            .unwrap_or_else(|| key_only_item(key));
        let value = item.get(attr).and_then(Value::as_i64).unwrap_or(0) + by;
        item.insert(attr.to_owned(), value.into());
        state.put(table, Prepared::of(&item)?);
        Ok(value)
    }
}

#[async_trait]
impl Expiring for MemoryStore {
    async fn expire(&self, now_epoch: u64, limit: usize) -> StoreResult<usize> {
        let now = i64::try_from(now_epoch).map_err(internal)?;
        let mut state = self.write();
        let due: Vec<(Table, Key)> = state
            .expiry
            .iter()
            .take_while(|(ttl, ..)| *ttl < now)
            .take(limit)
            .map(|(_, table, pk, sk)| (*table, Key::new(&**pk, &**sk)))
            .collect();
        for (table, key) in &due {
            state.unlink(*table, key);
        }
        Ok(due.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_least_string_after_the_prefix() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[tokio::test]
    async fn a_fractional_ttl_expires_as_in_sqlite() {
        let store = MemoryStore::new();
        let put = |sk: &str, ttl: f64| {
            let item = serde_json::json!({"pk": "T", "sk": sk, "ttl": ttl});
            WriteOp::put(Table::Main, item.as_object().unwrap().clone())
        };
        store
            .transact(vec![put("before", 1_999.5), put("after", 2_000.5)])
            .await
            .unwrap();
        assert_eq!(store.expire(2_000, 10).await.unwrap(), 1);
        let left = store
            .get(Table::Main, &Key::new("T", "after"))
            .await
            .unwrap();
        assert!(left.is_some(), "2000.5 is not before 2000");
    }

    #[test]
    fn empty_ranges_are_refused_before_btreemap_sees_them() {
        use Bound::*;
        assert!(range_of(Included(2), Included(1), None, true).is_none());
        assert!(range_of(Included(1), Excluded(1), None, true).is_none());
        assert!(range_of(Included(1), Included(1), None, true).is_some());
        assert!(range_of(Included(1), Included(5), Some(Excluded(5)), true).is_none());
        assert!(range_of(Included(1), Included(5), Some(Excluded(1)), false).is_none());
        assert_eq!(
            range_of(Included(1), Unbounded, Some(Excluded(3)), true),
            Some((Excluded(3), Unbounded))
        );
    }
}
