//! Sharded fan-out simulation: N subscribers of one workspace, a fake connection gateway
//! whose every `PostToConnection` takes `--post-ms` (API Gateway's management API answers
//! in tens of milliseconds), and the real broadcaster: the same subscriber Query, visibility
//! check and shard split as production. Each shard stands for one fan-out worker Lambda
//! (posting `DEFAULT_CONCURRENCY` at once); `--queue-ms` adds the SQS hop and the worker's
//! invocation before a shard starts. Latency is from the start of the record's delivery to
//! each post's completion. In process, on the embedded store: no shim, no sockets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use momentum_shared::AppState;
use momentum_shared::areas::auth::{LoginRequest, RegisterRequest};
use momentum_shared::areas::workspaces::{CreateWorkspace, UpdateWorkspace};
use momentum_shared::clock::SystemClock;
use momentum_shared::config::{AppConfig, FanoutConfig};
use momentum_shared::error::AppResult;
use momentum_shared::realtime::broadcaster::{
    Broadcaster, ConnectionGateway, DEFAULT_CONCURRENCY, Delivery, GatewayError, ShardWorker,
};
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_shared::realtime::shards::{InProcessShards, Shard, ShardQueue};
use momentum_shared::storage::MemoryStore;

use crate::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Subscribed connections of the one workspace.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Subscribers per shard (comma-separated runs each; one at least as large as
    /// `--subscribers` is the unsharded broadcaster).
    #[arg(long, default_value = "500,100000")]
    shard_size: String,
    /// Time each post takes at the fake gateway.
    #[arg(long, default_value_t = 30)]
    post_ms: u64,
    /// Delay before each shard starts (the SQS hop and the worker invocation).
    #[arg(long, default_value_t = 100)]
    queue_ms: u64,
    /// Change records delivered per run.
    #[arg(long, default_value_t = 3)]
    events: usize,
    /// Accepted for `bench all` (this scenario runs no binary).
    #[arg(long, hide = true)]
    bin_dir: Option<std::path::PathBuf>,
}

/// A gateway whose posts take a fixed time and are timed on arrival.
struct SlowGateway {
    post: Duration,
    done: Mutex<Vec<Instant>>,
}

#[async_trait]
impl ConnectionGateway for SlowGateway {
    async fn post(&self, _: &str, _: Vec<u8>) -> Result<(), GatewayError> {
        tokio::time::sleep(self.post).await;
        self.done.lock().unwrap().push(Instant::now());
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn exists(&self, _: &str) -> Result<bool, GatewayError> {
        Ok(true)
    }
}

/// Shards start after the queue delay, all in parallel (one worker Lambda each).
struct QueuedShards {
    delay: Duration,
}

#[async_trait]
impl ShardQueue for QueuedShards {
    async fn dispatch(&self, shards: Vec<Shard>, worker: &ShardWorker) -> AppResult<Delivery> {
        tokio::time::sleep(self.delay).await;
        InProcessShards.dispatch(shards, worker).await
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
    );
    let (token, ws) = owner_of_workspace(&state).await?;
    let who = state.auth.authenticate(&token)?;
    let registry = ConnectionRegistry::new(state.ctx.clone());
    let setup = Instant::now();
    let topic = format!("workspace:{ws}");
    let connected: Vec<anyhow::Result<()>> = futures::stream::iter(0..args.subscribers)
        .map(|i| {
            let (registry, state, token, topic) = (
                registry.clone(),
                state.clone(),
                token.clone(),
                topic.clone(),
            );
            async move {
                let conn = registry
                    .connect(&state.auth, &format!("sim{i:06}="), Some(&token))
                    .await?;
                registry.subscribe(&conn, &[topic]).await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    connected.into_iter().collect::<anyhow::Result<()>>()?;
    println!(
        "{} subscribers of one workspace (set up in {:.1} s); each post {} ms, {} posts at \
         once per shard, {} ms before a shard starts; {} events per run",
        args.subscribers,
        setup.elapsed().as_secs_f64(),
        args.post_ms,
        DEFAULT_CONCURRENCY,
        args.queue_ms,
        args.events
    );
    println!(
        "{:>10} {:>7} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "shard size", "shards", "delivered", "p50 ms", "p99 ms", "max ms", "failed"
    );
    // Start after the workspace's own creation records: one record per event below.
    let mut since = state.workspaces.changes(&who, &ws, 0, 1000).await?.last_seq;
    for size in args.shard_size.split(',') {
        let shard_size: usize = size.trim().parse()?;
        let gateway = Arc::new(SlowGateway {
            post: Duration::from_millis(args.post_ms),
            done: Mutex::default(),
        });
        let broadcaster = Broadcaster::new(registry.clone(), gateway.clone())
            .with_config(&FanoutConfig {
                shard_size,
                ..FanoutConfig::default()
            })
            .with_queue(Arc::new(QueuedShards {
                delay: Duration::from_millis(args.queue_ms),
            }));
        let mut latencies: Vec<u64> = Vec::new();
        let mut total = Delivery::default();
        for i in 0..args.events {
            // A real commit, read back from the change log as the stream would carry it.
            state
                .workspaces
                .update(
                    &who,
                    &ws,
                    UpdateWorkspace {
                        description: Some(Some(format!("event {i} at shard size {shard_size}"))),
                        ..Default::default()
                    },
                    None,
                )
                .await?;
            let page = state.workspaces.changes(&who, &ws, since, 10).await?;
            since = page.last_seq;
            anyhow::ensure!(page.changes.len() == 1, "one record per write");
            let started = Instant::now();
            total.add(&broadcaster.deliver(&page.changes).await?);
            latencies.extend(
                gateway
                    .done
                    .lock()
                    .unwrap()
                    .drain(..)
                    .map(|t| (t - started).as_micros() as u64),
            );
        }
        latencies.sort_unstable();
        let shards = if shard_size >= args.subscribers {
            1
        } else {
            args.subscribers.div_ceil(shard_size).next_power_of_two()
        };
        println!(
            "{:>10} {:>7} {:>10} {:>9.0} {:>9.0} {:>9.0} {:>7}",
            shard_size,
            shards,
            total.delivered,
            percentile(&latencies, 0.50) as f64 / 1000.0,
            percentile(&latencies, 0.99) as f64 / 1000.0,
            latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
            total.failed,
        );
    }
    Ok(())
}

async fn owner_of_workspace(state: &AppState) -> anyhow::Result<(String, String)> {
    let (email, password) = ("sim@bench.example.com", "benchmark password");
    state
        .auth
        .register(
            None,
            RegisterRequest {
                email: email.into(),
                username: "sim".into(),
                password: password.into(),
                display_name: None,
            },
        )
        .await?;
    let login = state
        .auth
        .login(
            None,
            LoginRequest {
                email: email.into(),
                password: password.into(),
            },
        )
        .await?;
    let who = state.auth.authenticate(&login.tokens.access_token)?;
    let ws = state
        .workspaces
        .create(
            &who,
            CreateWorkspace {
                name: "Sharded".into(),
                url_key: None,
                description: None,
            },
        )
        .await?;
    Ok((login.tokens.access_token, ws.workspace.id))
}
