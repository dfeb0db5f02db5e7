//! Webhook delivery from the shim's in-process dispatcher to a receiver in the bench
//! process: N workspace updates are committed (at `--concurrency` in flight), and the
//! receiver records when each signed POST arrives. Deliveries per second (first commit to
//! last delivery) and latency from commit (the record's `at`, stamped when its change number
//! is drawn) to arrival, p50/p99; lost and duplicated deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;

use crate::server::{ServerArgs, Shim};
use crate::{owner_and_workspace, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Changes committed (each one delivery).
    #[arg(long, default_value_t = 2000)]
    changes: usize,
    /// Commits in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// What the receiver saw: seq -> (arrivals, latency from `at` in microseconds).
#[derive(Default)]
struct Seen {
    by_seq: HashMap<i64, (usize, u64)>,
    last: Option<Instant>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let arrived = Arc::new(Notify::new());
    let receiver = {
        let seen = seen.clone();
        let arrived = arrived.clone();
        Router::new().route(
            "/hook",
            post(move |body: String| {
                let seen = seen.clone();
                let arrived = arrived.clone();
                async move {
                    let now = OffsetDateTime::now_utc();
                    let v: Value = serde_json::from_str(&body).unwrap_or_default();
                    let at = v["at"]
                        .as_str()
                        .and_then(|a| OffsetDateTime::parse(a, &Rfc3339).ok())
                        .unwrap_or(now);
                    let micros = (now - at).whole_microseconds().max(0) as u64;
                    let mut s = seen.lock().unwrap();
                    let e = s
                        .by_seq
                        .entry(v["seq"].as_i64().unwrap_or(-1))
                        .or_insert((0, micros));
                    e.0 += 1;
                    s.last = Some(Instant::now());
                    arrived.notify_one();
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let shim = Shim::start(&args.server).await?;
    let base = shim.base.clone();
    let http = reqwest::Client::new();
    let (token, ws) = owner_and_workspace(&http, &base, "hooks", "Hooks").await?;
    let hook: Value = http
        .post(format!("{base}/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"workspace_id": ws, "url": hook_url, "event_types": ["workspace.updated"]}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(
        hook["success"] == true,
        "creating the webhook: {hook}\n{}",
        shim.log_tail()
    );

    let started = Instant::now();
    let statuses: Vec<reqwest::StatusCode> = futures::stream::iter(0..args.changes)
        .map(|i| {
            let (http, base, token, ws) = (http.clone(), base.clone(), token.clone(), ws.clone());
            async move {
                http.put(format!("{base}/workspaces/{ws}"))
                    .bearer_auth(&token)
                    .json(&json!({"description": format!("change {i}")}))
                    .send()
                    .await
                    .map(|r| r.status())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let committed = statuses.iter().filter(|s| s.is_success()).count();
    let commit_secs = started.elapsed().as_secs_f64();

    // Wait for every delivery (each arrival wakes us), at most 60 s without progress.
    loop {
        let notified = arrived.notified();
        if seen.lock().unwrap().by_seq.len() >= committed {
            break;
        }
        if tokio::time::timeout(std::time::Duration::from_secs(60), notified)
            .await
            .is_err()
        {
            break;
        }
    }
    let s = seen.lock().unwrap();
    let mut latencies: Vec<u64> = s.by_seq.values().map(|(_, l)| *l).collect();
    latencies.sort_unstable();
    let dups: usize = s.by_seq.values().map(|(n, _)| n - 1).sum();
    let lost = committed.saturating_sub(s.by_seq.len());
    let span = s
        .last
        .map_or(0.0, |l| (l - started).as_secs_f64())
        .max(1e-3);
    println!(
        "webhooks: {} changes at {} in flight; shim: {}, store {}; commits took {commit_secs:.2} s",
        args.changes, args.concurrency, shim.kind, args.server.store
    );
    println!(
        "{:>9} {:>10} {:>13} {:>9} {:>9} {:>9} {:>6} {:>6}",
        "committed", "delivered", "deliveries/s", "p50 ms", "p99 ms", "max ms", "lost", "dup"
    );
    println!(
        "{:>9} {:>10} {:>13.0} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>6}",
        committed,
        s.by_seq.len(),
        s.by_seq.len() as f64 / span,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        lost,
        dups,
    );
    Ok(())
}
