//! The memory adapter (`MOMENTUM_STORE=memory`, benches, throwaway runs): DynamoDB's
//! semantics for the operations of the port on ordered maps in this process, no database
//! engine underneath.
//!
//! Until 2026-12-07 the memory store was SQLite's `:memory:` behind one mutex. A create
//! then spent about half of its CPU in SQLite (its transaction 36 %, the two number draws
//! 10 %, docs/performance.md "Writes without turns") and 32 writers queued for the one
//! connection; here a transaction is a few map inserts under a lock held for microseconds.
//!
//! Layout, chosen for size (the memory store is held to <= 5 KB of RSS per issue,
//! docs/performance.md "Storage footprint"):
//! - A table is partitions of rows ordered by sort key. The maps intern names: a row's
//!   partition and sort key are `Arc<str>`s that its index entries and expiry entry share.
//! - A row holds its body as compact JSON without the key attributes (`local::body_json`),
//!   as the SQLite store does: reads copy an `Arc` under the lock and parse outside it.
//! - An index partition orders its entries by (index sort key, row id); an item keeps its
//!   row id for life, so ties are ordered as in the SQLite store and a cursor finds its place.
//!
//! One `RwLock` guards everything. A transaction holds it for writing while it checks its
//! conditions and applies its writes; bodies of puts are serialised before it takes the
//! lock. Readers share it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use serde_json::Value;

use super::cursor::Position;
use super::local::{Expiring, TokenLog, body_json, index_keys, internal, key_only_item, restore};
use super::retry::TransactionToken;
use super::{
    CancelReason, Condition, Index, Item, Key, Page, Query, SortKey, Store, StoreError,
    StoreResult, Table, WriteOp, schema, validate_transaction,
};

type Name = Arc<str>;

const INDEXES: [Index; 2] = [Index::Gsi1, Index::Gsi2];

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

/// A stored item.
struct Row {
    /// Orders items that share an index sort key; kept when the item is overwritten.
    id: u64,
    /// Index partition and sort key, per index the item joins.
    gsi: [Option<(Name, Name)>; 2],
    /// Epoch seconds of the numeric `ttl` attribute, if any (the expiry order holds it).
    ttl: Option<i64>,
    body: Arc<str>,
}

/// An index partition: (index sort key, row id) -> the item's key.
type IndexPartition = BTreeMap<(Name, u64), (Name, Name)>;

#[derive(Default)]
struct Space {
    partitions: HashMap<Name, BTreeMap<Name, Row>>,
    indexes: [HashMap<Name, IndexPartition>; 2],
}

#[derive(Default)]
struct State {
    spaces: [Space; 2],
    next_id: u64,
    /// Items with a `ttl`, soonest first.
    expiry: BTreeSet<(i64, Table, Name, Name)>,
    tokens: TokenLog,
}

/// An item ready to be stored: serialised outside the lock.
struct Prepared {
    key: Key,
    gsi: [Option<(String, String)>; 2],
    ttl: Option<i64>,
    body: Arc<str>,
}

impl Prepared {
    fn of(item: &Item) -> StoreResult<Self> {
        let key = Key::of(item).ok_or_else(|| StoreError::Invalid("item without pk/sk".into()))?;
        let gsi = INDEXES.map(|ix| index_keys(item, ix).map(|(p, s)| (p.to_owned(), s.to_owned())));
        Ok(Self {
            key,
            gsi,
            ttl: item.get(schema::TTL).and_then(ttl_seconds),
            body: body_json(item)?.into(),
        })
    }
}

/// A `ttl` as SQLite's `json_extract(body, '$.ttl') < now` compares it: numbers only.
fn ttl_seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f.ceil() as i64))
}

/// A row's parts copied under the lock (reference counts only), parsed after it.
struct Snapshot {
    pk: Name,
    sk: Name,
    gsi: [Option<(Name, Name)>; 2],
    body: Arc<str>,
}

impl Snapshot {
    fn of(pk: &Name, sk: &Name, row: &Row) -> Self {
        Self {
            pk: pk.clone(),
            sk: sk.clone(),
            gsi: row.gsi.clone(),
            body: row.body.clone(),
        }
    }

    fn parse(&self) -> StoreResult<Item> {
        let gsi = [0, 1].map(|i| self.gsi[i].as_ref().map(|(p, s)| (&**p, &**s)));
        restore(&self.body, &self.pk, &self.sk, gsi)
    }
}

impl State {
    fn space(&self, table: Table) -> &Space {
        &self.spaces[table_slot(table)]
    }

    fn row(&self, table: Table, key: &Key) -> Option<(&Name, &Name, &Row)> {
        let (pk, partition) = self.space(table).partitions.get_key_value(&*key.pk)?;
        let (sk, row) = partition.get_key_value(&*key.sk)?;
        Some((pk, sk, row))
    }

    fn item(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.row(table, key)
            .map(|(pk, sk, row)| Snapshot::of(pk, sk, row).parse())
            .transpose()
    }

    /// Stores an item in place of any with its key.
    fn put(&mut self, table: Table, item: Prepared) {
        let previous = self.unlink(table, &item.key);
        let id = previous.unwrap_or_else(|| {
            self.next_id += 1;
            self.next_id
        });
        let space = &mut self.spaces[table_slot(table)];
        let pk = match space.partitions.get_key_value(item.key.pk.as_str()) {
            Some((pk, _)) => pk.clone(),
            None => Name::from(item.key.pk),
        };
        let sk = Name::from(item.key.sk);
        let mut gsi: [Option<(Name, Name)>; 2] = [None, None];
        for (slot, keys) in item.gsi.into_iter().enumerate() {
            let Some((ipk, isk)) = keys else { continue };
            let partitions = &mut space.indexes[slot];
            let ipk = match partitions.get_key_value(ipk.as_str()) {
                Some((name, _)) => name.clone(),
                None => Name::from(ipk),
            };
            let isk = Name::from(isk);
            partitions
                .entry(ipk.clone())
                .or_default()
                .insert((isk.clone(), id), (pk.clone(), sk.clone()));
            gsi[slot] = Some((ipk, isk));
        }
        if let Some(ttl) = item.ttl {
            self.expiry.insert((ttl, table, pk.clone(), sk.clone()));
        }
        let row = Row {
            id,
            gsi,
            ttl: item.ttl,
            body: item.body,
        };
        space.partitions.entry(pk).or_default().insert(sk, row);
    }

    /// Removes an item and its index and expiry entries; returns its row id.
    fn unlink(&mut self, table: Table, key: &Key) -> Option<u64> {
        let space = &mut self.spaces[table_slot(table)];
        let partition = space.partitions.get_mut(key.pk.as_str())?;
        let (sk, row) = partition.remove_entry(key.sk.as_str())?;
        let pk = if partition.is_empty() {
            space
                .partitions
                .remove_entry(key.pk.as_str())
                .map(|(pk, _)| pk)
        } else {
            space
                .partitions
                .get_key_value(key.pk.as_str())
                .map(|(pk, _)| pk.clone())
        }
        .expect("the partition was there");
        for (slot, keys) in row.gsi.into_iter().enumerate() {
            let Some((ipk, isk)) = keys else { continue };
            let partitions = &mut space.indexes[slot];
            if let Some(entries) = partitions.get_mut(&ipk) {
                entries.remove(&(isk, row.id));
                if entries.is_empty() {
                    partitions.remove(&ipk);
                }
            }
        }
        if let Some(ttl) = row.ttl {
            self.expiry.remove(&(ttl, table, pk, sk));
        }
        Some(row.id)
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
        match q.index {
            None => {
                let Some((pk, partition)) = space.partitions.get_key_value(q.pk.as_str()) else {
                    return Vec::new();
                };
                let after = position.map(|p| Bound::Excluded(Name::from(p.sk.as_str())));
                let Some(range) = range_of(lower, upper, after, q.forward) else {
                    return Vec::new();
                };
                let rows = partition.range::<Name, _>(range);
                let take = |it: &mut dyn Iterator<Item = (&Name, &Row)>| {
                    it.take(limit)
                        .map(|(sk, row)| Snapshot::of(pk, sk, row))
                        .collect()
                };
                if q.forward {
                    take(&mut rows.into_iter())
                } else {
                    take(&mut rows.rev())
                }
            }
            Some(index) => {
                let Some(entries) = space.indexes[index_slot(index)].get(q.pk.as_str()) else {
                    return Vec::new();
                };
                let tie = |bound: Bound<Name>, low: bool| match bound {
                    Bound::Included(s) => Bound::Included((s, if low { 0 } else { u64::MAX })),
                    Bound::Excluded(s) => Bound::Excluded((s, if low { u64::MAX } else { 0 })),
                    Bound::Unbounded => Bound::Unbounded,
                };
                // After the cursor's item; when it is gone (deleted since), from its index
                // sort key on: an item tied with it may be listed again, none is skipped.
                let after = position.map(|p| {
                    let isk: Name = p.index_key.as_ref().map_or("", |(_, s)| s.as_str()).into();
                    match self.row(q.table, &Key::new(&p.pk, &p.sk)) {
                        Some((_, _, row)) => Bound::Excluded((isk, row.id)),
                        None if q.forward => Bound::Included((isk, 0)),
                        None => Bound::Included((isk, u64::MAX)),
                    }
                });
                let Some(range) = range_of(tie(lower, true), tie(upper, false), after, q.forward)
                else {
                    return Vec::new();
                };
                let entries = entries.range(range);
                let take = |it: &mut dyn Iterator<Item = (&(Name, u64), &(Name, Name))>| {
                    it.filter_map(|(_, (pk, sk))| {
                        let row = space.partitions.get(pk)?.get(sk)?;
                        Some(Snapshot::of(pk, sk, row))
                    })
                    .take(limit)
                    .collect()
                };
                if q.forward {
                    take(&mut entries.into_iter())
                } else {
                    take(&mut entries.rev())
                }
            }
        }
    }
}

/// The sort-key range of a query's sort condition.
fn sort_bounds(sort: Option<&SortKey>) -> (Bound<Name>, Bound<Name>) {
    use Bound::{Excluded, Included, Unbounded};
    let name = |s: &str| Name::from(s);
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
                        .partitions
                        .iter()
                        .flat_map(move |(pk, p)| {
                            p.iter()
                                .map(move |(sk, row)| (table, Snapshot::of(pk, sk, row)))
                        })
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
            .map(|(pk, sk, row)| Snapshot::of(pk, sk, row));
        row.map(|r| r.parse()).transpose()
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        // One read lock for the whole batch: it sees no transaction half-way.
        let rows: Vec<Option<Snapshot>> = {
            let state = self.read();
            keys.iter()
                .map(|k| {
                    state
                        .row(table, k)
                        .map(|(pk, sk, row)| Snapshot::of(pk, sk, row))
                })
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
        let limit = query.limit.max(1) as usize;
        let mut items = rows
            .iter()
            .map(Snapshot::parse)
            .collect::<StoreResult<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            Some(Position::of(items.last().expect("limit >= 1"), query.index)?.encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
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
