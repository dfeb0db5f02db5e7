//! Benchmarks against the local shim on the embedded store, printing tables.
//!
//!   cargo run -p bench --release -- ws-fanout --subscribers 1,10,100,1000 --writes 200 --rate 50
//!   cargo run -p bench --release -- http --mix list=1 --duration 10 --concurrency 32
//!
//! Every scenario starts its own shim in-process on 127.0.0.1 (an in-memory store), so
//! numbers include real HTTP and WebSocket framing on loopback.

mod http_mix;
mod ws_fanout;

use clap::{Parser, Subcommand};

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
    /// Weighted HTTP workload (login, list issues, get issue, create/update issue) at fixed
    /// concurrency: req/s, p50/p99, errors, storage calls per request by endpoint.
    Http(http_mix::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::WsFanout(args) => ws_fanout::run(args).await,
        Scenario::Http(args) => http_mix::run(args).await,
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

/// Resident memory of this process in KiB (Linux), for "server RSS" (the shim runs here).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts the shim in-process on a free loopback port with an in-memory store.
pub async fn start_shim() -> anyhow::Result<(String, momentum_shared::AppState)> {
    use std::sync::Arc;
    let mut config = momentum_shared::config::AppConfig::for_tests();
    config.expose_storage_calls = true;
    let state = momentum_shared::AppState::with_store(
        config,
        Arc::new(momentum_shared::storage::embedded::EmbeddedStore::in_memory()),
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
