//! The embedded adapter: SQLite (a file under the data directory, or `:memory:` for tests)
//! with DynamoDB's semantics for the operations of the port. One table holds the items of
//! every logical table; index key columns are copied out of the item so that index queries
//! are range scans on a real SQLite index, as they are Query calls on DynamoDB.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::cursor::Position;
use super::retry::{TOKEN_WINDOW, TransactionToken};
use super::{
    CancelReason, Index, Item, Key, Page, Query, SortKey, Store, StoreError, StoreResult, Table,
    WriteOp, schema, validate_transaction,
};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS items (
    tbl    TEXT NOT NULL,
    pk     TEXT NOT NULL,
    sk     TEXT NOT NULL,
    gsi1pk TEXT,
    gsi1sk TEXT,
    gsi2pk TEXT,
    gsi2sk TEXT,
    body   TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (tbl, gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_gsi2 ON items (tbl, gsi2pk, gsi2sk, pk, sk) WHERE gsi2pk IS NOT NULL;
";

/// SQLite-backed store. Calls run on the blocking pool so a slow disk never stalls the async
/// workers; one connection behind a mutex serialises writes exactly like a single writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    tokens: Arc<Mutex<TokenLog>>,
}

/// Most transaction tokens remembered; past it the oldest are forgotten early. At this
/// store's write rates ten minutes of tokens stay far below it.
const MAX_TOKENS: usize = 100_000;

/// Tokens of committed transactions, as DynamoDB keeps `ClientRequestToken`s: a repeat
/// within the window is answered with success and applies nothing, so a retry after an
/// ambiguous failure is safe here too. Kept in memory: the retrying caller is this process.
#[derive(Default)]
struct TokenLog {
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

    fn contains(&mut self, token: &str) -> bool {
        self.forget_expired(Instant::now());
        self.known.contains(token)
    }

    fn insert(&mut self, token: String) {
        if self.known.insert(token.clone()) {
            self.order.push_back((Instant::now(), token));
        }
        self.forget_expired(Instant::now());
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating when needed) the database file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        Self::from_connection(Connection::open(path).map_err(internal)?)
    }

    /// A private in-memory database (tests, throwaway runs).
    pub fn in_memory() -> Self {
        Self::from_connection(Connection::open_in_memory().expect("sqlite in memory"))
            .expect("schema on a fresh in-memory database")
    }

    fn from_connection(conn: Connection) -> StoreResult<Self> {
        conn.execute_batch(SCHEMA).map_err(internal)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            tokens: Arc::default(),
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.with_conn_then(f, Ok).await
    }

    /// Runs `locked` holding the connection, then `unlocked` after releasing it (on the same
    /// blocking thread): reads copy raw rows under the lock and parse them outside, so
    /// concurrent readers parse in parallel instead of queueing behind one another.
    async fn with_conn_then<R, T, F, G>(&self, locked: F, unlocked: G) -> StoreResult<T>
    where
        R: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
        G: FnOnce(R) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let raw = {
                // A panic while holding the lock leaves the connection usable: SQLite rolls
                // an open transaction back when the next one begins.
                let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
                locked(&mut guard)?
            };
            unlocked(raw)
        })
        .await
        .map_err(internal)?
    }
}

/// What the database file holds, for the footprint report (`bench footprint`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PageStats {
    pub page_size: u64,
    /// Pages in the database (file size = pages x page size, the write-ahead log aside).
    pub pages: u64,
    /// Pages on the free list (allocated in the file, holding nothing).
    pub free_pages: u64,
}

impl EmbeddedStore {
    /// Every stored item of every table, in key order: tooling only (the footprint report),
    /// never a request path (there is no Scan in the port).
    pub async fn for_each_item<F>(&self, mut f: F) -> StoreResult<()>
    where
        F: FnMut(Table, Item) + Send + 'static,
    {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare("SELECT tbl, body FROM items ORDER BY tbl, pk, sk")
                .map_err(internal)?;
            let mut rows = stmt.query([]).map_err(internal)?;
            while let Some(row) = rows.next().map_err(internal)? {
                let tbl: String = row.get(0).map_err(internal)?;
                let body: String = row.get(1).map_err(internal)?;
                let table = Table::ALL
                    .into_iter()
                    .find(|t| t.as_str() == tbl)
                    .ok_or_else(|| internal(format!("unknown table {tbl}")))?;
                f(table, parse_body(&body)?);
            }
            Ok(())
        })
        .await
    }

    /// Page counts of the database (after `flush`, the file is exactly `pages` long).
    pub async fn page_stats(&self) -> StoreResult<PageStats> {
        self.with_conn(|c| {
            let pragma = |name: &str| -> StoreResult<u64> {
                c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                    .map(|v| v.max(0) as u64)
                    .map_err(internal)
            };
            Ok(PageStats {
                page_size: pragma("page_size")?,
                pages: pragma("page_count")?,
                free_pages: pragma("freelist_count")?,
            })
        })
        .await
    }
}

fn read_body(conn: &Connection, table: Table, key: &Key) -> StoreResult<Option<String>> {
    conn.prepare_cached("SELECT body FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(internal)?
        .query_row(params![table.as_str(), key.pk, key.sk], |r| r.get(0))
        .optional()
        .map_err(internal)
}

fn read_item(conn: &Connection, table: Table, key: &Key) -> StoreResult<Option<Item>> {
    read_body(conn, table, key)?
        .map(|b| parse_body(&b))
        .transpose()
}

/// The item an update creates when none exists: just its key, as in DynamoDB.
fn key_only_item(key: &Key) -> Item {
    let mut item = Item::new();
    item.insert(schema::PK.into(), key.pk.clone().into());
    item.insert(schema::SK.into(), key.sk.clone().into());
    item
}

fn parse_body(body: &str) -> StoreResult<Item> {
    serde_json::from_str(body).map_err(internal)
}

fn index_attr(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// The index columns of an item: both keys of an index or neither (sparse index).
fn index_columns(item: &Item, index: Index) -> (Option<String>, Option<String>) {
    match (
        index_attr(item, index.pk_attr()),
        index_attr(item, index.sk_attr()),
    ) {
        (Some(pk), Some(sk)) => (Some(pk), Some(sk)),
        _ => (None, None),
    }
}

fn write_item(conn: &Connection, table: Table, item: &Item) -> StoreResult<()> {
    let key = Key::of(item).ok_or_else(|| StoreError::Invalid("item without pk/sk".into()))?;
    let (g1pk, g1sk) = index_columns(item, Index::Gsi1);
    let (g2pk, g2sk) = index_columns(item, Index::Gsi2);
    let body = serde_json::to_string(item).map_err(internal)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO items (tbl, pk, sk, gsi1pk, gsi1sk, gsi2pk, gsi2sk, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(internal)?
    .execute(params![
        table.as_str(),
        key.pk,
        key.sk,
        g1pk,
        g1sk,
        g2pk,
        g2sk,
        body
    ])
    .map_err(internal)?;
    Ok(())
}

fn delete_item(conn: &Connection, table: Table, key: &Key) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
        .map_err(internal)?
        .execute(params![table.as_str(), key.pk, key.sk])
        .map_err(internal)?;
    Ok(())
}

fn run_transaction(conn: &mut Connection, ops: &[WriteOp]) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(internal)?;
    // Evaluate every condition against the state before the transaction, as DynamoDB does,
    // and report a reason per operation.
    let mut current = Vec::with_capacity(ops.len());
    let mut reasons = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key().expect("validated");
        let existing = read_item(&tx, op.table(), &key)?;
        let ok = op.condition().is_none_or(|c| c.holds(existing.as_ref()));
        reasons.push(if ok {
            CancelReason::None
        } else {
            CancelReason::ConditionalCheckFailed
        });
        current.push((key, existing));
    }
    if reasons.iter().any(|r| *r != CancelReason::None) {
        return Err(StoreError::TransactionCanceled { reasons });
    }
    for (op, (key, existing)) in ops.iter().zip(current) {
        match op {
            WriteOp::Put { table, item, .. } => write_item(&tx, *table, item)?,
            WriteOp::Update { table, update, .. } => {
                let mut item = existing.unwrap_or_else(|| key_only_item(&key));
                update.apply(&mut item);
                write_item(&tx, *table, &item)?;
            }
            WriteOp::Delete { table, .. } => delete_item(&tx, *table, &key)?,
            WriteOp::ConditionCheck { .. } => {}
        }
    }
    tx.commit().map_err(internal)
}

fn sort_clause(column: &str, sort: &SortKey, args: &mut Vec<String>) -> String {
    let mut bind = |v: &str| {
        args.push(v.to_owned());
        format!("?{}", args.len())
    };
    match sort {
        SortKey::Eq(v) => format!("{column} = {}", bind(v)),
        SortKey::BeginsWith(p) => {
            // A range the index can seek, then an exact prefix check.
            let lo = bind(p);
            let hi = bind(&format!("{p}\u{10FFFF}"));
            format!(
                "{column} >= {lo} AND {column} < {hi} AND substr({column}, 1, length({lo})) = {lo}"
            )
        }
        SortKey::Between(a, b) => format!("{column} BETWEEN {} AND {}", bind(a), bind(b)),
        SortKey::Lt(v) => format!("{column} < {}", bind(v)),
        SortKey::Le(v) => format!("{column} <= {}", bind(v)),
        SortKey::Gt(v) => format!("{column} > {}", bind(v)),
        SortKey::Ge(v) => format!("{column} >= {}", bind(v)),
    }
}

fn run_query(conn: &Connection, q: &Query) -> StoreResult<Vec<String>> {
    let (pk_col, sk_col) = match q.index {
        Some(ix) => (ix.pk_attr(), ix.sk_attr()),
        None => (schema::PK, schema::SK),
    };
    let mut args: Vec<String> = vec![q.table.as_str().to_owned(), q.pk.clone()];
    let mut sql = format!("SELECT body FROM items WHERE tbl = ?1 AND {pk_col} = ?2");
    if let Some(sort) = &q.sort {
        sql += " AND ";
        sql += &sort_clause(sk_col, sort, &mut args);
    }
    let (cmp, dir) = if q.forward {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(cursor) = &q.cursor {
        let pos = Position::decode(cursor, q.index, &q.pk)?;
        match &pos.index_key {
            // Ties on the index sort key are ordered by the table key, so pages never skip
            // or repeat items that share an index sort key.
            Some((_, isk)) => {
                args.extend([isk.clone(), pos.pk.clone(), pos.sk.clone()]);
                let n = args.len();
                sql += &format!(
                    " AND ({sk_col}, pk, sk) {cmp} (?{}, ?{}, ?{})",
                    n - 2,
                    n - 1,
                    n
                );
            }
            None => {
                args.push(pos.sk.clone());
                sql += &format!(" AND sk {cmp} ?{}", args.len());
            }
        }
    }
    match q.index {
        Some(_) => sql += &format!(" ORDER BY {sk_col} {dir}, pk {dir}, sk {dir}"),
        None => sql += &format!(" ORDER BY sk {dir}"),
    }
    let limit = q.limit.max(1) as usize;
    sql += &format!(" LIMIT {}", limit + 1);

    let mut stmt = conn.prepare_cached(&sql).map_err(internal)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args.iter()))
        .map_err(internal)?;
    let mut bodies = Vec::with_capacity(limit + 1);
    while let Some(row) = rows.next().map_err(internal)? {
        bodies.push(row.get::<_, String>(0).map_err(internal)?);
    }
    Ok(bodies)
}

/// Turns the raw rows of a query into a page (outside the connection lock).
fn page_of(bodies: Vec<String>, q: &Query) -> StoreResult<Page> {
    let limit = q.limit.max(1) as usize;
    let mut items = bodies
        .iter()
        .map(|b| parse_body(b))
        .collect::<StoreResult<Vec<_>>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        Some(Position::of(items.last().expect("limit >= 1"), q.index)?.encode())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        let key = key.clone();
        self.with_conn_then(
            move |c| read_body(c, table, &key),
            |body| body.map(|b| parse_body(&b)).transpose(),
        )
        .await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        let keys = keys.to_vec();
        self.with_conn_then(
            move |c| keys.iter().map(|k| read_body(c, table, k)).collect(),
            |bodies: Vec<Option<String>>| {
                bodies
                    .into_iter()
                    .map(|b| b.map(|b| parse_body(&b)).transpose())
                    .collect()
            },
        )
        .await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        let query = query.clone();
        let q2 = query.clone();
        self.with_conn_then(
            move |c| run_query(c, &query),
            move |bodies| page_of(bodies, &q2),
        )
        .await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        let Some(token) = TransactionToken::current() else {
            return self.with_conn(move |c| run_transaction(c, &ops)).await;
        };
        let tokens = self.tokens.clone();
        self.with_conn(move |c| {
            // Checked and recorded under the connection lock, so no other transaction can
            // slip between the commit and its token.
            let mut tokens = tokens.lock().unwrap_or_else(|p| p.into_inner());
            if tokens.contains(&token) {
                return Ok(());
            }
            run_transaction(c, &ops)?;
            tokens.insert(token);
            Ok(())
        })
        .await
    }

    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        if attr == schema::PK || attr == schema::SK {
            return Err(StoreError::Invalid(
                "cannot increment a key attribute".into(),
            ));
        }
        let key = key.clone();
        let attr = attr.to_owned();
        self.with_conn(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(internal)?;
            let mut item = read_item(&tx, table, &key)?.unwrap_or_else(|| key_only_item(&key));
            let value = item.get(&attr).and_then(Value::as_i64).unwrap_or(0) + by;
            item.insert(attr, value.into());
            write_item(&tx, table, &item)?;
            tx.commit().map_err(internal)?;
            Ok(value)
        })
        .await
    }

    /// Copies the write-ahead log into the database file and truncates the log, so the
    /// database file alone holds every committed write (a private in-memory database has no
    /// log: nothing to do).
    async fn flush(&self) -> StoreResult<()> {
        self.with_conn(|c| {
            let busy: i64 = c
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(internal)?;
            if busy != 0 {
                return Err(StoreError::Internal(
                    "the write-ahead log checkpoint could not complete".into(),
                ));
            }
            Ok(())
        })
        .await
    }
}
