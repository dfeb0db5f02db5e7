//! Storage footprint of issues: seeds N issues through the HTTP API (an in-process shim on
//! the memory store, or on the embedded store in SQLite's memory or in a file) and reports,
//! per issue, the items and bytes each kind of item takes, what one create costs in DynamoDB
//! write units, the database file and the process memory they add.
//!
//!   target/release/bench footprint --issues 50000 --store file
//!   target/release/bench footprint --issues 50000 --store memory
//!
//! DynamoDB units are computed from the writes the creates committed (recorded under the
//! store), with DynamoDB's item-size rules: a transactional write costs 2 WCU per started
//! KB of the item, a ConditionCheck or Update of a small item 2, and every GSI whose keys
//! the item carries 1 WCU per started KB of what it projects (`ALL`: the whole item).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use momentum_shared::storage::embedded::{EmbeddedStore, PageStats};
use momentum_shared::storage::{
    Index, Item, Key, MemoryStore, Page, Query, Store, StoreResult, Table, WriteOp,
};
use serde_json::{Value, json};

use crate::server::{Memory, temp_dir};

#[derive(clap::Args)]
pub struct Args {
    /// Issues to create.
    #[arg(long, default_value_t = 5000)]
    issues: usize,
    /// `memory` (the memory store), `sqlite-memory` (SQLite `:memory:`) or `file` (a SQLite
    /// file in a fresh temporary directory).
    #[arg(long, default_value = "file")]
    store: String,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Characters of description per issue (0: none, as `bench http` seeds them).
    #[arg(long, default_value_t = 0)]
    description: usize,
    /// Keep the database file (its path is printed) for a closer look.
    #[arg(long)]
    keep: bool,
}

/// DynamoDB's size of an attribute value (strings and names in UTF-8 bytes, numbers about
/// one byte per two significant digits plus one, containers 3 bytes plus 1 per element).
fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::String(s) => s.len(),
        Value::Number(n) => {
            let digits = n.to_string().trim_start_matches('-').replace('.', "").len();
            digits.div_ceil(2) + 1
        }
        Value::Array(a) => 3 + a.iter().map(|e| value_size(e) + 1).sum::<usize>(),
        Value::Object(m) => {
            3 + m
                .iter()
                .map(|(k, e)| k.len() + value_size(e) + 1)
                .sum::<usize>()
        }
    }
}

/// DynamoDB's size of an item: attribute names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn kb(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

fn has_index(item: &Item, ix: Index) -> bool {
    item.get(ix.pk_attr()).is_some_and(Value::is_string)
        && item.get(ix.sk_attr()).is_some_and(Value::is_string)
}

/// Write units of the committed transactions, by what they wrote.
#[derive(Default, Debug, Clone)]
struct Units {
    transactions: u64,
    base_wcu: u64,
    gsi_wcu: u64,
    writes: u64,
    gsi_entries: u64,
}

/// Records the write units of every committed transaction (the store under the shim).
struct Recording {
    inner: Arc<dyn Store>,
    units: Mutex<Units>,
}

fn units_of(ops: &[WriteOp]) -> Units {
    let mut u = Units {
        transactions: 1,
        ..Units::default()
    };
    for op in ops {
        u.writes += 1;
        match op {
            WriteOp::Put { table, item, .. } => {
                let size = item_size(item);
                u.base_wcu += 2 * kb(size);
                for ix in table.indexes() {
                    if has_index(item, *ix) {
                        u.gsi_entries += 1;
                        u.gsi_wcu += kb(size);
                    }
                }
            }
            // Counters, marks and checks of small items: one KB, twice (transactional).
            _ => u.base_wcu += 2,
        }
    }
    u
}

#[async_trait]
impl Store for Recording {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.get(table, key).await
    }
    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        self.inner.batch_get(table, keys).await
    }
    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        let u = units_of(&ops);
        self.inner.transact(ops).await?;
        let mut t = self.units.lock().unwrap_or_else(|p| p.into_inner());
        t.transactions += u.transactions;
        t.base_wcu += u.base_wcu;
        t.gsi_wcu += u.gsi_wcu;
        t.writes += u.writes;
        t.gsi_entries += u.gsi_entries;
        Ok(())
    }
    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        self.inner.increment(table, key, attr, by).await
    }
    async fn flush(&self) -> StoreResult<()> {
        self.inner.flush().await
    }
}

/// Items and bytes of one kind (the `entity` attribute).
#[derive(Default, Clone, Copy)]
struct Kind {
    items: u64,
    json: u64,
    dynamo: u64,
}

/// The store under measurement.
#[derive(Clone)]
enum Measured {
    Memory(MemoryStore),
    Sqlite(EmbeddedStore),
}

impl Measured {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            Measured::Memory(s) => Arc::new(s.clone()),
            Measured::Sqlite(s) => Arc::new(s.clone()),
        }
    }

    async fn for_each_item(&self, f: impl FnMut(Table, Item) + Send + 'static) -> StoreResult<()> {
        match self {
            Measured::Memory(s) => s.for_each_item(f),
            Measured::Sqlite(s) => s.for_each_item(f).await,
        }
    }

    /// SQLite's page counts (none for the memory store).
    async fn page_stats(&self) -> StoreResult<Option<PageStats>> {
        match self {
            Measured::Memory(_) => Ok(None),
            Measured::Sqlite(s) => s.page_stats().await.map(Some),
        }
    }
}

async fn census(store: &Measured) -> anyhow::Result<BTreeMap<String, Kind>> {
    let out = Arc::new(Mutex::new(BTreeMap::<String, Kind>::new()));
    let sink = out.clone();
    store
        .for_each_item(move |_, item| {
            let entity = item
                .get("entity")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned();
            let json = serde_json::to_string(&item).map(|s| s.len()).unwrap_or(0);
            let mut m = sink.lock().unwrap_or_else(|p| p.into_inner());
            let k = m.entry(entity).or_default();
            k.items += 1;
            k.json += json as u64;
            k.dynamo += item_size(&item) as u64;
        })
        .await?;
    let m = out.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(m)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (store, dir): (Measured, Option<PathBuf>) = match args.store.as_str() {
        "memory" => (Measured::Memory(MemoryStore::new()), None),
        "sqlite-memory" => (Measured::Sqlite(EmbeddedStore::in_memory()), None),
        "file" => {
            let dir = temp_dir("footprint")?;
            let file = EmbeddedStore::open(&dir.join("momentum.db"))?;
            (Measured::Sqlite(file), Some(dir))
        }
        other => anyhow::bail!("--store {other:?}: use memory, sqlite-memory or file"),
    };
    let recording = Arc::new(Recording {
        inner: store.store(),
        units: Mutex::default(),
    });
    let mut config = momentum_shared::config::AppConfig::for_tests();
    config.expose_storage_calls = true;
    let state = momentum_shared::AppState::with_store(
        config,
        recording.clone(),
        Arc::new(momentum_shared::clock::SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let served = state.clone();
    tokio::spawn(async move {
        let _ = local::serve(listener, served, std::future::pending()).await;
    });

    let http = reqwest::Client::new();
    let token = crate::sign_up(&http, &base, "footprint").await?;
    let ws: Value = http
        .post(format!("{base}/workspaces"))
        .bearer_auth(&token)
        .json(&json!({"name": "Footprint"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let team = ws["data"]["default_team"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    store.store().flush().await?;
    let before = census(&store).await?;
    let pages_before = store.page_stats().await?;
    let rss_before = Memory::of(std::process::id()).rss_kib;
    *recording.units.lock().unwrap_or_else(|p| p.into_inner()) = Units::default();

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let description = "d".repeat(args.description);
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (http, base, token, team, next) = (
                http.clone(),
                base.clone(),
                token.clone(),
                team.clone(),
                next.clone(),
            );
            let description = description.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= args.issues {
                        return anyhow::Ok(());
                    }
                    let mut body =
                        json!({"team_id": team, "title": format!("Seed issue {i}"), "priority": "medium"});
                    if !description.is_empty() {
                        body["description"] = json!(description);
                    }
                    http.post(format!("{base}/issues"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?
                        .error_for_status()?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    let seeding = started.elapsed().as_secs_f64();
    store.store().flush().await?;
    let rss_after = Memory::of(std::process::id()).rss_kib;
    let units = recording
        .units
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let after = census(&store).await?;
    let pages = store.page_stats().await?;

    let n = args.issues.max(1) as f64;
    println!(
        "footprint | {} issues | store {} | description {} chars | seeded in {seeding:.1} s ({:.0}/s)",
        args.issues,
        args.store,
        args.description,
        n / seeding
    );
    println!(
        "{:<18} {:>12} {:>15} {:>17}",
        "kind", "items/issue", "JSON bytes/issue", "DynamoDB B/issue"
    );
    let (mut items, mut json_bytes, mut dynamo) = (0.0, 0.0, 0.0);
    for (kind, k) in &after {
        let b = before.get(kind).copied().unwrap_or_default();
        let (di, dj, dd) = (
            (k.items - b.items.min(k.items)) as f64 / n,
            (k.json as f64 - b.json as f64) / n,
            (k.dynamo as f64 - b.dynamo as f64) / n,
        );
        if di.abs() < 0.005 && dj.abs() < 1.0 {
            continue;
        }
        println!("{kind:<18} {di:>12.2} {dj:>15.0} {dd:>17.0}");
        items += di;
        json_bytes += dj;
        dynamo += dd;
    }
    println!(
        "{:<18} {items:>12.2} {json_bytes:>15.0} {dynamo:>17.0}",
        "total"
    );
    let t = units.transactions.max(1) as f64;
    println!(
        "DynamoDB per create: {:.2} transactions, {:.1} writes, {:.1} WCU table (transactional x2) + {:.1} WCU GSI ({:.1} GSI entries) = {:.1} WCU",
        units.transactions as f64 / n,
        units.writes as f64 / t,
        units.base_wcu as f64 / n,
        units.gsi_wcu as f64 / n,
        units.gsi_entries as f64 / n,
        (units.base_wcu + units.gsi_wcu) as f64 / n,
    );
    let page_bytes = |p: &PageStats| p.pages * p.page_size;
    if let (Some(pages), Some(pages_before)) = (pages, pages_before) {
        println!(
            "SQLite: {:.0} bytes/issue in pages ({} pages of {} B, {} free){}",
            (page_bytes(&pages) as f64 - page_bytes(&pages_before) as f64) / n,
            pages.pages,
            pages.page_size,
            pages.free_pages,
            dir.as_ref()
                .map(|d| format!(
                    ", files on disk {:.1} MiB = {:.0} bytes/issue",
                    dir_bytes(d) as f64 / 1048576.0,
                    dir_bytes(d) as f64 / n
                ))
                .unwrap_or_default()
        );
    }
    println!(
        "process RSS: {:.1} -> {:.1} MiB = {:.0} bytes/issue",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) * 1024.0 / n
    );
    drop(state);
    match dir {
        Some(d) if args.keep => println!("kept {}", d.join("momentum.db").display()),
        Some(d) => {
            let _ = std::fs::remove_dir_all(d);
        }
        None => {}
    }
    Ok(())
}
