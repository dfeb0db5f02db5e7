//! Benchmarks against the local shim on the embedded store, printing tables.
//!
//!   cargo build --profile bench --bins      # or --release: the shim and Lambda binaries
//!   target/release/bench http                # login 5, list 50, get 25, write 20; 32 conns, 30 s
//!   target/release/bench ws-fanout --subscribers 100,1000
//!   target/release/bench ws-sharded              # 10,000 subscribers, 30 ms posts, simulated
//!   target/release/bench cold-start
//!   target/release/bench writers             # 1/8/32/128 writers under the DynamoDB latency model
//!   target/release/bench footprint --issues 50000 --store file
//!   target/release/bench all                 # every figure of docs/performance.md
//!
//! The HTTP and WebSocket scenarios start their own shim (by default the built `local`
//! binary as a child process on a free port, so its memory is measured alone; or
//! `--server in-process`, or `--server http://...` for a running one) and talk real HTTP and
//! WebSocket over loopback.

mod all;
mod cold_start;
mod footprint;
mod http_mix;
mod notifications;
mod server;
mod webhooks;
mod writers;
mod ws_fanout;
mod ws_sharded;

use clap::{Parser, Subcommand};

/// mimalloc, set here in the binary (a library never sets the allocator): with glibc malloc,
/// list requests spent ~40 % of their CPU in malloc/free and per-thread arenas kept argon2's
/// 19 MiB blocks after a burst of logins (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Momentum benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N WebSocket connections subscribed to one workspace, one writer at a fixed rate:
    /// delivery latency (commit -> received), lost and duplicated events, server RSS.
    WsFanout(ws_fanout::Args),
    /// Simulated sharded fan-out: N subscribers of one workspace, a fake gateway whose posts
    /// take a fixed time, shards in parallel: delivery latency p50/p99 by shard size.
    WsSharded(ws_sharded::Args),
    /// Weighted HTTP workload (login, list issues, get issue, create/update issue) at fixed
    /// concurrency: req/s, p50/p99, errors, storage calls per request by endpoint.
    Http(http_mix::Args),
    /// Process start to first served request of every Lambda binary (against a fake Lambda
    /// Runtime API) and of the shim, plus binary sizes. Builds nothing: build first.
    ColdStart(cold_start::Args),
    /// Concurrent writers creating issues under the DynamoDB latency model (in-process):
    /// commits/s, p50/p99, attempts per commit, failures; 1 and 8 workspaces.
    Writers(writers::Args),
    /// Items, bytes, DynamoDB write units and memory per issue (N issues seeded over HTTP
    /// into an in-process shim on the embedded store).
    Footprint(footprint::Args),
    /// Webhook deliveries from the shim's dispatcher to a local receiver: deliveries/s and
    /// latency from commit, lost and duplicated.
    Webhooks(webhooks::Args),
    /// Notifications from a burst of assignments to one member's socket: notifications/s
    /// and commit-to-inbox latency p50/p99.
    Notifications(notifications::Args),
    /// Every scenario behind docs/performance.md, one after another.
    All(all::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_fd_limit();
    run(Cli::parse().scenario).await
}

async fn run(scenario: Scenario) -> anyhow::Result<()> {
    match scenario {
        Scenario::WsFanout(args) => ws_fanout::run(args).await,
        Scenario::WsSharded(args) => ws_sharded::run(args).await,
        Scenario::Http(args) => http_mix::run(args).await,
        Scenario::ColdStart(args) => cold_start::run(args).await,
        Scenario::Writers(args) => writers::run(args).await,
        Scenario::Footprint(args) => footprint::run(args).await,
        Scenario::Webhooks(args) => webhooks::run(args).await,
        Scenario::Notifications(args) => notifications::run(args).await,
        Scenario::All(args) => all::run(args).await,
    }
}

/// Parses and runs one scenario's command line (for `all`).
pub async fn run_line(line: &[String]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("bench".to_owned()).chain(line.iter().cloned()))?;
    Box::pin(run(cli.scenario)).await
}

/// Raises the soft open-files limit to the hard one: 1,000 client sockets (and a child
/// shim, which inherits the limit, serving them) need more than the usual 1,024.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                eprintln!("warning: could not raise the open-files limit");
            }
        }
    }
}

/// Percentile of sorted microsecond samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// KiB as MiB for tables.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Starts the shim in-process on a free loopback port with an in-memory store.
pub async fn start_shim() -> anyhow::Result<(String, momentum_shared::AppState)> {
    use std::sync::Arc;
    let mut config = momentum_shared::config::AppConfig::for_tests();
    config.expose_storage_calls = true;
    let state = momentum_shared::AppState::with_store(
        config,
        Arc::new(momentum_shared::storage::MemoryStore::new()),
        Arc::new(momentum_shared::clock::SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let served = state.clone();
    tokio::spawn(async move {
        let _ = local::serve(listener, served, std::future::pending()).await;
    });
    Ok((base, state))
}

/// Registers and logs in a user; returns the access token.
pub async fn sign_up(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<String> {
    let email = format!("{name}.{}@bench.example.com", uuid::Uuid::new_v4().simple());
    let password = "benchmark password";
    http.post(format!("{base}/auth/register"))
        .json(&serde_json::json!({"email": email, "username": name, "password": password}))
        .send()
        .await?
        .error_for_status()?;
    let login: serde_json::Value = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login["data"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Signs up `name` and creates a workspace of theirs; returns the token and workspace id.
pub async fn owner_and_workspace(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    workspace: &str,
) -> anyhow::Result<(String, String)> {
    let token = sign_up(http, base, name).await?;
    let created: serde_json::Value = http
        .post(format!("{base}/workspaces"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": workspace}))
        .send()
        .await?
        .json()
        .await?;
    let ws = created["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((token, ws))
}
