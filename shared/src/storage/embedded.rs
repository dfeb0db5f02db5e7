//! The embedded adapter: SQLite (a file under the data directory, or `:memory:` for tests)
//! with DynamoDB's semantics for the operations of the port. One table holds the items of
//! every logical table; index key columns are copied out of the item so that index queries
//! are range scans on a real SQLite index, as they are Query calls on DynamoDB.
//!
//! Layout (schema version 2, `PRAGMA user_version`), chosen for size (docs/performance.md,
//! "Storage footprint"):
//! - `items` is a rowid table: the body stays in the table's leaves and never in an index
//!   page. (Version 1 kept it in a `WITHOUT ROWID` key B-tree, where every row over ~1,000
//!   bytes spilled to an overflow page of its own and pages were mostly empty.)
//! - Partition keys (table and index) are long and shared by many items
//!   (`WS#{ws}#TEAM#{team}#ISSUES#UPDATED`): each is stored once in `names` and items hold
//!   its integer id, so key and index entries are short.
//! - The body is the item without the attributes held in columns (`pk`, `sk`, the index
//!   keys); reads put them back.
//! - Index entries are `(tbl, partition id, sort key)` and the row id SQLite appends, which
//!   orders items that share an index sort key (a cursor finds its item's row id).
//!
//! A file store keeps one writer connection, owned by a writer thread that commits writes in
//! groups, and a pool of read-only connections (WAL lets them read while a group commits);
//! an in-memory store has one connection, used on the calling task.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;

use super::cursor::Position;
use super::local::{
    Expiring, INDEXES, TokenLog, all_index_keys, body_json, internal, key_only_item, restore,
};
use super::retry::TransactionToken;
use super::{
    CancelReason, Condition, Index, Item, Key, Page, Query, SortKey, Store, StoreError,
    StoreResult, Table, WriteOp, schema, validate_transaction,
};

/// The layout this code writes (`PRAGMA user_version`); 0 with an `items` table is version 1.
const SCHEMA_VERSION: i64 = 2;

/// 4 KiB pages (set when a file is created; a file made with 16 KiB pages keeps them). A
/// write copies each page it touches whole, into the rollback journal (in memory) or the
/// write-ahead log (file): with 16 KiB pages a create copied four times the bytes and spent
/// 14 % of its CPU doing so (docs/performance.md, "Writes that scale"). 16 KiB pages were
/// ~5 % smaller on disk (bench footprint, 2,000 issues: 4,131 bytes/issue on 4 KiB pages,
/// 3,949 on 16).
const PRAGMAS: &str = "
PRAGMA page_size = 4096;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS names (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS items (
    id   INTEGER PRIMARY KEY,
    tbl  INTEGER NOT NULL,
    pk   INTEGER NOT NULL,
    sk   TEXT NOT NULL,
    g1pk INTEGER,
    g1sk TEXT,
    g2pk INTEGER,
    g2sk TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_key ON items (tbl, pk, sk);
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (tbl, g1pk, g1sk) WHERE g1pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_gsi2 ON items (tbl, g2pk, g2sk) WHERE g2pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_ttl ON items (json_extract(body, '$.ttl'))
    WHERE json_extract(body, '$.ttl') IS NOT NULL;
";

/// Read-only connections of a file store.
const READERS: usize = 4;

/// SQLite-backed store. One writer connection serialises writes exactly like a single
/// writer; reads of a file store go to a pool of read-only connections, on the calling task
/// (see `read_then`: a local shim's file is in the page cache, and a hand-off per read cost
/// more than the read).
#[derive(Clone)]
pub struct EmbeddedStore {
    writer: Arc<Writer>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
    tokens: Arc<Mutex<TokenLog>>,
}

/// Who holds the writer connection.
enum Writer {
    /// The in-memory database: calls run on the calling task under the mutex. It never
    /// waits on a disk: its calls take microseconds, and handing each to another thread (a
    /// wake-up and a futex round trip there and back) cost ~30 % of a create's CPU under load
    /// (perf, `scripts/profile.sh` with `MIX=write=1`).
    Inline(Mutex<Connection>),
    /// A file: a writer thread owns the connection and commits the writes waiting for it
    /// together, each in a savepoint of one SQLite transaction (group commit). Every commit
    /// appends each page it touched to the write-ahead log; a create's three writes (two
    /// number draws and the commit) touch the same hot pages (the counters, the tails of the
    /// indexes) as the creates beside it, so one commit for all of them writes those pages
    /// once instead of once per write.
    Grouped(mpsc::Sender<Job>),
}

/// Most writes committed together: bounds the latency a write waits behind the others.
const MAX_GROUP: usize = 64;

type JobOutput = StoreResult<Box<dyn Any + Send>>;
type JobRun = Box<dyn FnOnce(&Connection, &mut Vec<String>) -> JobOutput + Send>;

/// A write for the writer thread. `run` sees the connection inside the group's transaction
/// and the tokens of the transactions committed before it in the group (recorded in the
/// token log once the group commits).
struct Job {
    run: JobRun,
    /// Runs on its own, outside any group transaction (checkpoints, tooling).
    alone: bool,
    reply: tokio::sync::oneshot::Sender<JobOutput>,
}

fn table_id(table: Table) -> i64 {
    match table {
        Table::Main => 0,
        Table::Connections => 1,
    }
}

fn table_of(id: i64) -> StoreResult<Table> {
    Table::ALL
        .into_iter()
        .find(|t| table_id(*t) == id)
        .ok_or_else(|| internal(format!("unknown table {id}")))
}

impl EmbeddedStore {
    /// Opens (creating when needed) the database file at `path`, migrating a file of an
    /// earlier layout.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        let writer = Connection::open(path).map_err(internal)?;
        prepare(&writer)?;
        let tokens: Arc<Mutex<TokenLog>> = Arc::default();
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(internal)?;
                // Reads map the file instead of copying pages into each reader's cache.
                c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA mmap_size = 1073741824;")
                    .map_err(internal)?;
                Ok(Mutex::new(c))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let (jobs, queue) = mpsc::channel();
        let log = tokens.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || group_writer(writer, queue, log))
            .map_err(internal)?;
        Ok(Self {
            writer: Arc::new(Writer::Grouped(jobs)),
            readers: Arc::new(readers),
            next_reader: Arc::default(),
            tokens,
        })
    }

    /// A private in-memory database (tests, throwaway runs).
    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("sqlite in memory");
        prepare(&conn).expect("schema on a fresh in-memory database");
        Self {
            writer: Arc::new(Writer::Inline(Mutex::new(conn))),
            readers: Arc::default(),
            next_reader: Arc::default(),
            tokens: Arc::default(),
        }
    }

    fn inline(&self) -> Option<&Mutex<Connection>> {
        match &*self.writer {
            Writer::Inline(conn) => Some(conn),
            Writer::Grouped(_) => None,
        }
    }

    /// Runs `write` in a transaction of the writer connection: its own (in memory), or a
    /// savepoint of the writer thread's group (a file). Its changes are undone when it fails.
    /// `write` pushes the token of a transaction it applied onto the list it is given; the
    /// token is recorded once the transaction is committed.
    async fn write<T, F>(&self, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<String>) -> StoreResult<T> + Send + 'static,
    {
        match &*self.writer {
            Writer::Inline(conn) => {
                // A panic while holding the lock leaves the connection usable: SQLite rolls
                // an open transaction back when the next one begins.
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(internal)?;
                let mut applied = Vec::new();
                let value = write(&tx, &mut applied)?;
                tx.commit().map_err(internal)?;
                // Recorded while the writer is still held: no other transaction can slip
                // between the commit and its token.
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                applied.into_iter().for_each(|t| tokens.insert(t));
                Ok(value)
            }
            Writer::Grouped(jobs) => self.submit(jobs, false, write).await,
        }
    }

    /// Runs `f` on the writer connection outside any transaction of the store's own.
    async fn exclusive<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        match &*self.writer {
            Writer::Inline(conn) => f(&conn.lock().unwrap_or_else(|p| p.into_inner())),
            Writer::Grouped(jobs) => self.submit(jobs, true, move |c, _| f(c)).await,
        }
    }

    async fn submit<T, F>(&self, jobs: &mpsc::Sender<Job>, alone: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<String>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let run = Box::new(
            move |c: &Connection, applied: &mut Vec<String>| -> JobOutput {
                f(c, applied).map(|v| Box::new(v) as Box<dyn Any + Send>)
            },
        );
        let gone = || internal("the writer thread has stopped");
        jobs.send(Job { run, alone, reply }).map_err(|_| gone())?;
        let value = answer.await.map_err(|_| gone())??;
        Ok(*value
            .downcast::<T>()
            .expect("a job answers with its own type"))
    }

    /// Runs `locked` on a reader (the writer when there is none), then `unlocked` after
    /// releasing it: reads copy raw rows under the lock and parse them outside, so
    /// concurrent readers parse in parallel. On the calling task, for a file too: a WAL
    /// reader never waits for the writer and reads mapped pages, so a read takes
    /// microseconds, less than handing it to the blocking pool and back (two thread
    /// wake-ups per read; the in-memory store stopped doing that for the same reason).
    async fn read_then<R, T, F, G>(&self, locked: F, unlocked: G) -> StoreResult<T>
    where
        R: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        G: FnOnce(R) -> StoreResult<T> + Send + 'static,
    {
        unlocked(self.on_reader(locked)?)
    }

    /// A free reader if there is one, else waits for the next in turn.
    fn on_reader<R>(&self, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        if let Some(conn) = self.inline() {
            return f(&conn.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = self.readers[(start + i) % n].try_lock() {
                return f(&guard);
            }
        }
        let guard = self.readers[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }
}

/// Pragmas, then the schema: a version 1 file is migrated, a new one created.
fn prepare(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(PRAGMAS).map_err(internal)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(internal)?;
    let has_items: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items')",
            [],
            |r| r.get(0),
        )
        .map_err(internal)?;
    match (version, has_items) {
        (SCHEMA_VERSION, _) | (0, false) => {
            conn.execute_batch(SCHEMA).map_err(internal)?;
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
                .map_err(internal)
        }
        (0, true) => migrate_v1(conn),
        (v, _) => Err(internal(format!(
            "database schema version {v} is newer than this build ({SCHEMA_VERSION})"
        ))),
    }
}

/// Version 1 (one `WITHOUT ROWID` table keyed by `(tbl TEXT, pk, sk)`, whole JSON items
/// in `body`) to version 2, in one transaction, then `VACUUM` to give the space back.
fn migrate_v1(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         DROP INDEX IF EXISTS items_gsi1;
         DROP INDEX IF EXISTS items_gsi2;
         ALTER TABLE items RENAME TO items_v1;",
    )
    .map_err(internal)?;
    let copied = (|| {
        conn.execute_batch(SCHEMA).map_err(internal)?;
        let mut stmt = conn
            .prepare("SELECT tbl, body FROM items_v1")
            .map_err(internal)?;
        let mut rows = stmt.query([]).map_err(internal)?;
        while let Some(row) = rows.next().map_err(internal)? {
            let tbl: String = row.get(0).map_err(internal)?;
            let body: String = row.get(1).map_err(internal)?;
            let table = Table::ALL
                .into_iter()
                .find(|t| t.as_str() == tbl)
                .ok_or_else(|| internal(format!("unknown table {tbl}")))?;
            let item: Item = serde_json::from_str(&body).map_err(internal)?;
            write_item(conn, table, &item)?;
        }
        conn.execute_batch(&format!(
            "DROP TABLE items_v1; PRAGMA user_version = {SCHEMA_VERSION};"
        ))
        .map_err(internal)
    })();
    match copied {
        Ok(()) => {
            conn.execute_batch("COMMIT; VACUUM;").map_err(internal)?;
            tracing::info!("embedded store migrated to schema version {SCHEMA_VERSION}");
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
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
    /// Every stored item of every table: tooling only (the footprint report), never a
    /// request path (there is no Scan in the port).
    pub async fn for_each_item<F>(&self, mut f: F) -> StoreResult<()>
    where
        F: FnMut(Table, Item) + Send + 'static,
    {
        self.exclusive(move |c| {
            let mut stmt = c
                .prepare(&format!("SELECT i.tbl, {ROW_COLUMNS} {ROW_JOINS}"))
                .map_err(internal)?;
            let mut rows = stmt.query([]).map_err(internal)?;
            while let Some(row) = rows.next().map_err(internal)? {
                let table = table_of(row.get(0).map_err(internal)?)?;
                f(table, raw_row(row, 1)?.parse()?);
            }
            Ok(())
        })
        .await
    }

    /// Page counts of the database (after `flush`, the file is exactly `pages` long).
    pub async fn page_stats(&self) -> StoreResult<PageStats> {
        self.exclusive(|c| {
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

/// The columns of a stored item, read back (`raw_row`), and the joins that name its keys.
const ROW_COLUMNS: &str = "p.name, i.sk, g1.name, i.g1sk, g2.name, i.g2sk, i.body";
const ROW_JOINS: &str = "FROM items i JOIN names p ON p.id = i.pk
    LEFT JOIN names g1 ON g1.id = i.g1pk LEFT JOIN names g2 ON g2.id = i.g2pk";

/// A stored row as read under the connection lock; parsed into an item outside it.
struct RawRow {
    pk: String,
    sk: String,
    gsi1: Option<(String, String)>,
    gsi2: Option<(String, String)>,
    body: String,
}

fn raw_row(row: &rusqlite::Row<'_>, at: usize) -> StoreResult<RawRow> {
    let get = |i: usize| row.get::<_, Option<String>>(at + i).map_err(internal);
    let pair = |a: Option<String>, b: Option<String>| a.zip(b);
    Ok(RawRow {
        pk: get(0)?.unwrap_or_default(),
        sk: get(1)?.unwrap_or_default(),
        gsi1: pair(get(2)?, get(3)?),
        gsi2: pair(get(4)?, get(5)?),
        body: get(6)?.unwrap_or_default(),
    })
}

impl RawRow {
    fn parse(self) -> StoreResult<Item> {
        let gsi = [&self.gsi1, &self.gsi2].map(|k| k.as_ref().map(|(p, s)| (&**p, &**s)));
        restore(&self.body, &self.pk, &self.sk, gsi)
    }
}

/// The id of a partition name, if any item ever used it.
fn name_id(conn: &Connection, name: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached("SELECT id FROM names WHERE name = ?1")
        .map_err(internal)?
        .query_row([name], |r| r.get(0))
        .optional()
        .map_err(internal)
}

/// The id of a partition name, recorded when new (names are never removed: an emptied
/// partition costs its name only).
fn ensure_name(conn: &Connection, name: &str) -> StoreResult<i64> {
    if let Some(id) = name_id(conn, name)? {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO names (name) VALUES (?1)")
        .map_err(internal)?
        .execute([name])
        .map_err(internal)?;
    Ok(conn.last_insert_rowid())
}

/// The row id of a stored item.
fn row_id(conn: &Connection, table: Table, pk: &str, sk: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached(
        "SELECT i.id FROM items i JOIN names p ON p.id = i.pk
         WHERE i.tbl = ?1 AND p.name = ?2 AND i.sk = ?3",
    )
    .map_err(internal)?
    .query_row(params![table_id(table), pk, sk], |r| r.get(0))
    .optional()
    .map_err(internal)
}

fn read_raw(conn: &Connection, table: Table, key: &Key) -> StoreResult<Option<RawRow>> {
    conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} {ROW_JOINS} WHERE i.tbl = ?1 AND p.name = ?2 AND i.sk = ?3"
    ))
    .map_err(internal)?
    .query_row(params![table_id(table), key.pk, key.sk], |r| {
        Ok(raw_row(r, 0))
    })
    .optional()
    .map_err(internal)?
    .transpose()
}

fn read_item(conn: &Connection, table: Table, key: &Key) -> StoreResult<Option<Item>> {
    read_raw(conn, table, key)?.map(RawRow::parse).transpose()
}

fn write_item(conn: &Connection, table: Table, item: &Item) -> StoreResult<()> {
    let key = Key::of(item).ok_or_else(|| StoreError::Invalid("item without pk/sk".into()))?;
    let gsi = all_index_keys(item);
    let body = body_json(item, &gsi)?;
    let [g1, g2] = gsi;
    let pk = ensure_name(conn, &key.pk)?;
    let g1pk = g1.map(|(p, _)| ensure_name(conn, p)).transpose()?;
    let g2pk = g2.map(|(p, _)| ensure_name(conn, p)).transpose()?;
    conn.prepare_cached(
        "INSERT INTO items (tbl, pk, sk, g1pk, g1sk, g2pk, g2sk, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tbl, pk, sk) DO UPDATE SET g1pk = excluded.g1pk, g1sk = excluded.g1sk,
             g2pk = excluded.g2pk, g2sk = excluded.g2sk, body = excluded.body",
    )
    .map_err(internal)?
    .execute(params![
        table_id(table),
        pk,
        key.sk,
        g1pk,
        g1.map(|(_, s)| s),
        g2pk,
        g2.map(|(_, s)| s),
        body
    ])
    .map_err(internal)?;
    Ok(())
}

/// Adds `by` to a numeric attribute of an existing item in one statement; `None` when there
/// is no such item (or the attribute is held in a column, not in the body).
fn increment_in_place(
    conn: &Connection,
    table: Table,
    key: &Key,
    attr: &str,
    by: i64,
) -> StoreResult<Option<i64>> {
    if attr.contains(['"', '\\'])
        || INDEXES
            .iter()
            .any(|ix| ix.pk_attr() == attr || ix.sk_attr() == attr)
    {
        return Ok(None);
    }
    let path = format!("$.\"{attr}\"");
    conn.prepare_cached(
        "UPDATE items SET body = json_set(body, ?1, coalesce(json_extract(body, ?1), 0) + ?2)
         WHERE tbl = ?3 AND pk = (SELECT id FROM names WHERE name = ?4) AND sk = ?5
         RETURNING json_extract(body, ?1)",
    )
    .map_err(internal)?
    .query_row(params![path, by, table_id(table), key.pk, key.sk], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map_err(internal)
}

fn delete_item(conn: &Connection, table: Table, key: &Key) -> StoreResult<()> {
    conn.prepare_cached(
        "DELETE FROM items WHERE tbl = ?1 AND pk = (SELECT id FROM names WHERE name = ?2)
         AND sk = ?3",
    )
    .map_err(internal)?
    .execute(params![table_id(table), key.pk, key.sk])
    .map_err(internal)?;
    Ok(())
}

/// The writer thread of a file store: takes the writes waiting, runs each in a savepoint of
/// one transaction (a failed one is rolled back alone), commits once, then answers them all.
/// Answers wait for the commit, so a caller told "done" finds its write in every later read.
fn group_writer(conn: Connection, jobs: mpsc::Receiver<Job>, tokens: Arc<Mutex<TokenLog>>) {
    let mut next = None;
    while let Some(first) = next.take().or_else(|| jobs.recv().ok()) {
        if first.alone {
            let mut none = Vec::new();
            let _ = first.reply.send(run_job(first.run, &conn, &mut none));
            continue;
        }
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) if job.alone => {
                    next = Some(job);
                    break;
                }
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for job in group {
                let _ = job.reply.send(Err(internal(&e)));
            }
            continue;
        }
        let mut applied = Vec::new();
        let mut answers = Vec::with_capacity(group.len());
        for job in group {
            let before = applied.len();
            let answer = match conn.execute_batch("SAVEPOINT job") {
                Ok(()) => run_job(job.run, &conn, &mut applied),
                Err(e) => Err(internal(e)),
            };
            let closed = if answer.is_ok() {
                conn.execute_batch("RELEASE job")
            } else {
                applied.truncate(before);
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            answers.push((job.reply, closed.map_err(internal).and(answer)));
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                let mut log = tokens.lock().unwrap_or_else(|p| p.into_inner());
                applied.into_iter().for_each(|t| log.insert(t));
            }
            Err(e) => {
                // Nothing of the group was written: every write in it fails.
                let _ = conn.execute_batch("ROLLBACK");
                for (_, answer) in &mut answers {
                    if answer.is_ok() {
                        *answer = Err(internal(format!("commit failed: {e}")));
                    }
                }
            }
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }
}

/// Runs one job; a panic fails that job only (its savepoint is rolled back).
fn run_job(run: JobRun, conn: &Connection, applied: &mut Vec<String>) -> JobOutput {
    catch_unwind(AssertUnwindSafe(|| run(conn, applied)))
        .unwrap_or_else(|_| Err(internal("a write panicked")))
}

/// Applies `ops` inside the caller's transaction (which undoes them on an error).
fn run_transaction(tx: &Connection, ops: &[WriteOp]) -> StoreResult<()> {
    // Evaluate every condition against the state before the transaction, as DynamoDB does,
    // and report a reason per operation.
    // Each operation reads only what it needs of the stored item: nothing for an
    // unconditional put or delete, whether it exists for `NotExists`/`Exists` (no body is
    // parsed: most puts of a commit are new items), the item for other conditions and for
    // updates (which apply to it).
    let mut current = Vec::with_capacity(ops.len());
    let mut reasons = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key().expect("validated");
        let is_update = matches!(op, WriteOp::Update { .. });
        let existing = match op.condition() {
            _ if is_update => read_item(tx, op.table(), &key)?,
            None => None,
            Some(Condition::NotExists | Condition::Exists) => {
                row_id(tx, op.table(), &key.pk, &key.sk)?.map(|_| Item::new())
            }
            Some(_) => read_item(tx, op.table(), &key)?,
        };
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
            WriteOp::Put { table, item, .. } => write_item(tx, *table, item)?,
            WriteOp::Update { table, update, .. } => {
                let mut item = existing.unwrap_or_else(|| key_only_item(&key));
                update.apply(&mut item);
                write_item(tx, *table, &item)?;
            }
            WriteOp::Delete { table, .. } => delete_item(tx, *table, &key)?,
            WriteOp::ConditionCheck { .. } => {}
        }
    }
    Ok(())
}

type SqlValue = rusqlite::types::Value;

fn sort_clause(column: &str, sort: &SortKey, args: &mut Vec<SqlValue>) -> String {
    let mut bind = |v: &str| {
        args.push(SqlValue::Text(v.to_owned()));
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

fn run_query(conn: &Connection, q: &Query) -> StoreResult<Vec<RawRow>> {
    let (pk_col, sk_col) = match q.index {
        Some(Index::Gsi1) => ("i.g1pk", "i.g1sk"),
        Some(Index::Gsi2) => ("i.g2pk", "i.g2sk"),
        None => ("i.pk", "i.sk"),
    };
    // The cursor is checked before anything is read, as on DynamoDB.
    let position = q
        .cursor
        .as_deref()
        .map(|c| Position::decode(c, q.index, &q.pk))
        .transpose()?;
    let Some(partition) = name_id(conn, &q.pk)? else {
        // No item ever lived in this partition.
        return Ok(Vec::new());
    };
    let mut args: Vec<SqlValue> = vec![table_id(q.table).into(), partition.into()];
    let mut sql = format!("SELECT {ROW_COLUMNS} {ROW_JOINS} WHERE i.tbl = ?1 AND {pk_col} = ?2");
    if let Some(sort) = &q.sort {
        sql += " AND ";
        sql += &sort_clause(sk_col, sort, &mut args);
    }
    let (cmp, dir) = if q.forward {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(pos) = &position {
        match &pos.index_key {
            // Ties on the index sort key are ordered by row id, so pages never skip or
            // repeat items that share an index sort key. When the cursor's item is gone
            // (deleted since), the page starts at its sort key: an item tied with it may
            // be listed again, none is skipped.
            Some((_, isk)) => {
                args.push(SqlValue::Text(isk.clone()));
                let at = args.len();
                match row_id(conn, q.table, &pos.pk, &pos.sk)? {
                    Some(id) => {
                        args.push(id.into());
                        sql += &format!(" AND ({sk_col}, i.id) {cmp} (?{at}, ?{})", at + 1);
                    }
                    None => sql += &format!(" AND {sk_col} {cmp}= ?{at}"),
                }
            }
            None => {
                args.push(SqlValue::Text(pos.sk.clone()));
                sql += &format!(" AND i.sk {cmp} ?{}", args.len());
            }
        }
    }
    match q.index {
        Some(_) => sql += &format!(" ORDER BY {sk_col} {dir}, i.id {dir}"),
        None => sql += &format!(" ORDER BY i.sk {dir}"),
    }
    let limit = q.limit.max(1) as usize;
    sql += &format!(" LIMIT {}", limit + 1);

    let mut stmt = conn.prepare_cached(&sql).map_err(internal)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args.iter()))
        .map_err(internal)?;
    let mut out = Vec::with_capacity(limit + 1);
    while let Some(row) = rows.next().map_err(internal)? {
        out.push(raw_row(row, 0)?);
    }
    Ok(out)
}

/// Turns the raw rows of a query into a page (outside the connection lock).
fn page_of(rows: Vec<RawRow>, q: &Query) -> StoreResult<Page> {
    let items = rows
        .into_iter()
        .map(RawRow::parse)
        .collect::<StoreResult<Vec<_>>>()?;
    Page::of(items, q)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        let key = key.clone();
        self.read_then(
            move |c| read_raw(c, table, &key),
            |row| row.map(RawRow::parse).transpose(),
        )
        .await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        let keys = keys.to_vec();
        self.read_then(
            move |c| {
                // One snapshot for the whole batch (a reader sees no commit half-way).
                let tx = c.unchecked_transaction().map_err(internal)?;
                let rows = keys.iter().map(|k| read_raw(&tx, table, k)).collect();
                tx.finish().map_err(internal)?;
                rows
            },
            |rows: Vec<Option<RawRow>>| {
                rows.into_iter()
                    .map(|r| r.map(RawRow::parse).transpose())
                    .collect()
            },
        )
        .await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        let query = query.clone();
        let q2 = query.clone();
        self.read_then(
            move |c| run_query(c, &query),
            move |rows| page_of(rows, &q2),
        )
        .await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        let token = TransactionToken::current();
        let tokens = self.tokens.clone();
        self.write(move |c, applied| {
            // Checked on the writer, so no other transaction can slip between a commit and
            // its token: a repeat finds the token in the log, or in the group it joined.
            if let Some(token) = &token {
                let mut known = tokens.lock().unwrap_or_else(|p| p.into_inner());
                if known.contains(token) || applied.contains(token) {
                    return Ok(());
                }
            }
            run_transaction(c, &ops)?;
            applied.extend(token);
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
        if let Some(conn) = self.inline() {
            // One statement commits on its own: no BEGIN and COMMIT around it.
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(value) = increment_in_place(&conn, table, key, attr, by)? {
                return Ok(value);
            }
        }
        let key = key.clone();
        let attr = attr.to_owned();
        self.write(move |c, _| {
            // Counters take every commit (change numbers, issue numbers): an existing one is
            // advanced in SQL, without parsing and re-serialising its item in Rust.
            if let Some(value) = increment_in_place(c, table, &key, &attr, by)? {
                return Ok(value);
            }
            let mut item = read_item(c, table, &key)?.unwrap_or_else(|| key_only_item(&key));
            let value = item.get(&attr).and_then(Value::as_i64).unwrap_or(0) + by;
            item.insert(attr, value.into());
            write_item(c, table, &item)?;
            Ok(value)
        })
        .await
    }

    /// Copies the write-ahead log into the database file and truncates the log, so the
    /// database file alone holds every committed write (a private in-memory database has no
    /// log: nothing to do).
    async fn flush(&self) -> StoreResult<()> {
        self.exclusive(|c| {
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

#[async_trait]
impl Expiring for EmbeddedStore {
    async fn expire(&self, now_epoch: u64, limit: usize) -> StoreResult<usize> {
        self.write(move |c, _| {
            c.prepare_cached(
                "DELETE FROM items WHERE id IN (SELECT id FROM items
                 WHERE json_extract(body, '$.ttl') < ?1 LIMIT ?2)",
            )
            .map_err(internal)?
            .execute(params![now_epoch as i64, limit as i64])
            .map_err(internal)
        })
        .await
    }
}
