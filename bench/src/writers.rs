//! Concurrent writers under the DynamoDB latency model: N tasks create issues as fast as
//! they can, in one workspace or spread over several, through the services (no HTTP) on the
//! memory store behind `storage::latency::WithLatency`, so what is measured is
//! the commit protocol at DynamoDB's round-trip times: commits/s, latency, commit attempts
//! (transactions per committed create) and failures.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::kernel::access::Principal;
use momentum_shared::storage::MemoryStore;
use momentum_shared::storage::Store;
use momentum_shared::storage::latency::{LatencyModel, WithLatency};
use serde_json::json;

use crate::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent writers, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    writers: Vec<usize>,
    /// Workspaces the writers are spread over, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    workspaces: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

/// One workspace to write into: its owner and default team.
struct Target {
    who: Principal,
    team_id: String,
}

async fn setup(plain: &AppState, n: usize, run: &str) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for i in 0..n {
        let email = format!("writer-{run}-{i}@bench.test");
        let password = "correct horse battery";
        plain
            .auth
            .register(
                None,
                serde_json::from_value(json!({
                    "email": email, "username": format!("w{run}x{i}"), "password": password
                }))?,
            )
            .await?;
        let login = plain
            .auth
            .login(
                None,
                serde_json::from_value(json!({"email": email, "password": password}))?,
            )
            .await?;
        let who = plain.auth.authenticate(&login.tokens.access_token)?;
        let created = plain
            .workspaces
            .create(
                &who,
                serde_json::from_value(json!({"name": format!("Writers {run} {i}")}))?,
            )
            .await?;
        targets.push(Target {
            who,
            team_id: created.default_team.id,
        });
    }
    Ok(targets)
}

struct Outcome {
    latencies_us: Vec<u64>,
    failures: u64,
}

async fn write_for(state: AppState, target: Arc<Target>, until: Instant, writer: usize) -> Outcome {
    let mut out = Outcome {
        latencies_us: Vec::new(),
        failures: 0,
    };
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let req = serde_json::from_value(json!({
            "team_id": target.team_id,
            "title": format!("writer {writer} issue {n}"),
        }))
        .expect("request");
        let started = Instant::now();
        match state.issues.create(&target.who, req).await {
            Ok(_) => out.latencies_us.push(started.elapsed().as_micros() as u64),
            Err(e) => {
                out.failures += 1;
                if out.failures <= 3 {
                    eprintln!("writer {writer}: {} {}", e.code.as_str(), e.message);
                }
            }
        }
    }
    out
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "Concurrent writers, POST /issues through the services, memory store \
         behind the DynamoDB latency model (storage/latency.rs), {} s per run",
        args.duration
    );
    println!(
        "| writers | workspaces | commits/s | per workspace | p50 ms | p99 ms | attempts/commit | failures |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut run = 0;
    for &workspaces in &args.workspaces {
        for &writers in &args.writers {
            run += 1;
            let inner = Arc::new(MemoryStore::new());
            let plain =
                AppState::with_store(AppConfig::for_tests(), inner.clone(), Arc::new(SystemClock));
            let targets: Vec<Arc<Target>> = setup(&plain, workspaces, &run.to_string())
                .await?
                .into_iter()
                .map(Arc::new)
                .collect();
            let modelled = Arc::new(WithLatency::new(
                inner.clone(),
                LatencyModel::dynamodb(),
                run as u64,
            ));
            let state = AppState::with_store(
                AppConfig::for_tests(),
                modelled.clone() as Arc<dyn Store>,
                Arc::new(SystemClock),
            );
            let started = Instant::now();
            let until = started + Duration::from_secs(args.duration);
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    tokio::spawn(write_for(
                        state.clone(),
                        targets[w % workspaces].clone(),
                        until,
                        w,
                    ))
                })
                .collect();
            let mut latencies = Vec::new();
            let mut failures = 0;
            for t in tasks {
                let o = t.await?;
                latencies.extend(o.latencies_us);
                failures += o.failures;
            }
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort_unstable();
            let commits = latencies.len() as f64;
            let attempts = modelled.counts.commit_transactions.load(Ordering::Relaxed) as f64;
            println!(
                "| {writers} | {workspaces} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {failures} |",
                commits / elapsed,
                commits / elapsed / workspaces as f64,
                percentile(&latencies, 0.50) as f64 / 1000.0,
                percentile(&latencies, 0.99) as f64 / 1000.0,
                if commits > 0.0 {
                    attempts / commits
                } else {
                    0.0
                },
            );
        }
    }
    Ok(())
}
