//! `cargo run -p local`: the whole backend on 127.0.0.1:8000 with the embedded store.

use std::collections::HashMap;

use clap::Parser;
use momentum_shared::AppState;
use momentum_shared::config::{AppConfig, Env, Mode};
use tokio::net::TcpListener;

/// mimalloc, set here in the binary (a library never sets the allocator): with glibc malloc,
/// list requests spent ~40 % of their CPU in malloc/free and per-thread arenas kept argon2's
/// 19 MiB blocks after a burst of logins (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Momentum local shim. Flags override the matching `MOMENTUM_*` environment variables.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "MOMENTUM_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to bind.
    #[arg(long, env = "MOMENTUM_PORT", default_value_t = 8000)]
    port: u16,
    /// Storage: embedded (SQLite file in --data-dir), memory, or dynamodb.
    #[arg(long)]
    store: Option<String>,
    /// Directory of the embedded store (default ./.momentum-data).
    #[arg(long)]
    data_dir: Option<String>,
    /// DynamoDB endpoint (LocalStack: http://localhost:4566); implies --store dynamodb.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Create the DynamoDB tables (keys, GSIs, TTL) when missing.
    #[arg(long)]
    create_tables: bool,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "MOMENTUM_LOG_JSON")]
    log_json: bool,
    /// Serve the WebSocket emulation (`/ws`) and its management API (`/@connections/{id}`,
    /// loopback callers only); `--websocket false` serves neither.
    #[arg(long, env = "MOMENTUM_WEBSOCKET", default_value_t = true, action = clap::ArgAction::Set)]
    websocket: bool,
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT); a second one exits at once, without
/// waiting for the graceful shutdown.
async fn shutdown_signal() {
    let which = signal().await;
    tracing::info!(signal = which, "shutting down");
    tokio::spawn(async {
        let again = signal().await;
        tracing::warn!(signal = again, "second signal: exiting without waiting");
        std::process::exit(130);
    });
}

#[cfg(unix)]
async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=info,aws=warn".into());
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }

    let mut overrides: HashMap<&str, String> = HashMap::new();
    if let Some(store) = &args.store {
        overrides.insert("MOMENTUM_STORE", store.clone());
    }
    if let Some(dir) = &args.data_dir {
        overrides.insert("MOMENTUM_DATA_DIR", dir.clone());
    }
    if let Some(endpoint) = &args.dynamodb_endpoint {
        overrides.insert("MOMENTUM_DYNAMODB_ENDPOINT", endpoint.clone());
        overrides
            .entry("MOMENTUM_STORE")
            .or_insert_with(|| "dynamodb".into());
    }
    if args.create_tables {
        overrides.insert("MOMENTUM_CREATE_TABLES", "true".into());
    }
    let process = Env::process();
    let lookup = |k: &str| overrides.get(k).cloned().or_else(|| (process.0)(k));
    let config = AppConfig::from_env(&Env(&lookup), Mode::Local)?;
    tracing::info!(store = ?config.store, mode = ?config.mode, "starting Momentum local shim");
    let state = AppState::from_config(config).await?;

    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    let options = local::Options::default().websocket(args.websocket);
    local::serve_options(listener, state, options, shutdown_signal()).await?;
    Ok(())
}
