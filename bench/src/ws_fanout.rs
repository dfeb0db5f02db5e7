//! WebSocket fan-out: N subscribers of one workspace, one writer at a fixed rate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{percentile, rss_kib, sign_up, start_shim};

#[derive(clap::Args)]
pub struct Args {
    /// Subscribed connections (comma-separated list runs each in turn).
    #[arg(long, default_value = "1,10,100")]
    subscribers: String,
    /// Writes (each one change record) per run.
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 50)]
    rate: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "{:>11} {:>7} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9}",
        "subscribers", "writes", "p50 ms", "p99 ms", "max ms", "lost", "dup", "rss MiB"
    );
    for n in args.subscribers.split(',') {
        let n: usize = n.trim().parse()?;
        one(n, args.writes, args.rate).await?;
    }
    Ok(())
}

async fn one(subscribers: usize, writes: usize, rate: u64) -> anyhow::Result<()> {
    let (base, _state) = start_shim().await?;
    let http = reqwest::Client::new();
    let token = sign_up(&http, &base, "writer").await?;
    let created: Value = http
        .post(format!("{base}/workspaces"))
        .bearer_auth(&token)
        .json(&json!({"name": "Fanout"}))
        .send()
        .await?
        .json()
        .await?;
    let ws = created["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ws_url = base.replacen("http://", "ws://", 1);

    // Open and subscribe every connection before writing.
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let (mut stream, _) =
            tokio_tungstenite::connect_async(format!("{ws_url}/ws?token={token}")).await?;
        let sub = json!({"type": "subscribe", "data": {"topics": [format!("workspace:{ws}")]}, "request_id": "s"});
        stream.send(Message::Text(sub.to_string().into())).await?;
        loop {
            if let Some(Ok(Message::Text(t))) = stream.next().await {
                let v: Value = serde_json::from_str(&t)?;
                if v["request_id"] == "s" {
                    break;
                }
            }
        }
        readers.push(stream);
    }
    // Each reader records (seq -> latency) for every event it sees.
    let deadline = Duration::from_secs(10);
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut seen: HashMap<i64, u64> = HashMap::new();
                let mut dups = 0usize;
                while let Ok(Some(Ok(msg))) = tokio::time::timeout(deadline, stream.next()).await {
                    let Message::Text(t) = msg else { continue };
                    let received = time::OffsetDateTime::now_utc();
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["type"] != "event" || v["event"] != "workspace.updated" {
                        continue;
                    }
                    let at = time::OffsetDateTime::parse(
                        v["at"].as_str().unwrap_or_default(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap_or(received);
                    let micros = (received - at).whole_microseconds().max(0) as u64;
                    if seen
                        .insert(v["seq"].as_i64().unwrap_or(-1), micros)
                        .is_some()
                    {
                        dups += 1;
                    }
                }
                (seen, dups)
            })
        })
        .collect();

    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let started = Instant::now();
    for i in 0..writes {
        let target = started + interval * i as u32;
        tokio::time::sleep_until(target.into()).await;
        http.put(format!("{base}/workspaces/{ws}"))
            .bearer_auth(&token)
            .json(&json!({"description": format!("write {i}")}))
            .send()
            .await?
            .error_for_status()?;
    }
    let rss = rss_kib();
    let mut latencies = Vec::new();
    let mut lost = 0usize;
    let mut dups = 0usize;
    for t in tasks {
        let (seen, d) = t.await?;
        dups += d;
        lost += writes.saturating_sub(seen.len());
        latencies.extend(seen.into_values());
    }
    latencies.sort_unstable();
    println!(
        "{:>11} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>6} {:>9.1}",
        subscribers,
        writes,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        lost,
        dups,
        rss as f64 / 1024.0
    );
    Ok(())
}
