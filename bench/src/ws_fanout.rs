//! WebSocket fan-out: N subscribers of one workspace, one writer at a fixed rate. Each N
//! gets a fresh shim (by default a child process, so RSS is the server's alone).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{Memory, ServerArgs, Shim};
use crate::{mib, owner_and_workspace, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Subscribed connections (comma-separated list runs each in turn).
    #[arg(long, default_value = "100,1000")]
    subscribers: String,
    /// Writes (each one change record) per run.
    #[arg(long, default_value_t = 100)]
    writes: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 10)]
    rate: u64,
    /// Connections opened (and subscribed) at once while setting up.
    #[arg(long, default_value_t = 50)]
    connect_concurrency: usize,
    /// A subscriber that has received nothing for this long stops waiting (what it has
    /// not received by then counts as lost).
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "writer: {} writes at {}/s; shim: {}, store {}; memory of the shim process (MiB): \
         rss before connecting, rss after the last write (all connections open), peak (VmHWM); \
         KiB/sub = (rss after - rss before) / subscribers",
        args.writes, args.rate, args.server.server, args.server.store
    );
    println!(
        "{:>11} {:>7} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8}",
        "subscribers",
        "writes",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dup",
        "events/s",
        "connect s",
        "rss before",
        "rss after",
        "rss peak",
        "KiB/sub"
    );
    for n in args.subscribers.split(',') {
        let n: usize = n.trim().parse()?;
        one(n, &args).await?;
    }
    Ok(())
}

type Reader =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(url: String, topic: String) -> anyhow::Result<Reader> {
    let (mut stream, _) = tokio_tungstenite::connect_async(url).await?;
    let sub = json!({"type": "subscribe", "data": {"topics": [topic]}, "request_id": "s"});
    stream.send(Message::Text(sub.to_string().into())).await?;
    let wait = async {
        while let Some(msg) = stream.next().await {
            if let Message::Text(t) = msg? {
                let v: Value = serde_json::from_str(&t)?;
                if v["request_id"] == "s" {
                    return anyhow::Ok(());
                }
            }
        }
        anyhow::bail!("connection closed before the subscription was acknowledged")
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await??;
    Ok(stream)
}

async fn one(subscribers: usize, args: &Args) -> anyhow::Result<()> {
    let (writes, rate) = (args.writes, args.rate);
    let shim = Shim::start(&args.server).await?;
    let base = shim.base.clone();
    let http = reqwest::Client::new();
    let (token, ws) = owner_and_workspace(&http, &base, "writer", "Fanout").await?;
    let ws_url = base.replacen("http://", "ws://", 1);
    let before = shim.memory().unwrap_or_default();

    // Open and subscribe every connection before writing.
    let connecting = Instant::now();
    let readers: Vec<Reader> = futures::stream::iter(0..subscribers)
        .map(|_| {
            subscribe(
                format!("{ws_url}/ws?token={token}"),
                format!("workspace:{ws}"),
            )
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()
        .map_err(|e| anyhow::anyhow!("subscribing: {e}\n{}", shim.log_tail()))?;
    let connect_secs = connecting.elapsed().as_secs_f64();

    // Each reader records (seq -> latency) for every event it sees; it stops once it has
    // every write (then lingers briefly for duplicates) or after `idle` without messages.
    let idle = Duration::from_secs(args.idle_secs);
    let linger = Duration::from_millis(500);
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut seen: HashMap<i64, u64> = HashMap::new();
                let mut dups = 0usize;
                let mut last = None;
                loop {
                    let wait = if seen.len() >= writes { linger } else { idle };
                    let Ok(Some(Ok(msg))) = tokio::time::timeout(wait, stream.next()).await else {
                        break;
                    };
                    let Message::Text(t) = msg else { continue };
                    let received = time::OffsetDateTime::now_utc();
                    last = Some(Instant::now());
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
                let _ = stream.close(None).await;
                (seen, dups, last)
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
    // Every connection is still open here (readers close theirs when done).
    let after: Memory = shim.memory().unwrap_or_default();
    let mut latencies = Vec::new();
    let mut lost = 0usize;
    let mut dups = 0usize;
    let mut last_event = started;
    for t in tasks {
        let (seen, d, last) = t.await?;
        last_event = last_event.max(last.unwrap_or(started));
        dups += d;
        lost += writes.saturating_sub(seen.len());
        latencies.extend(seen.into_values());
    }
    latencies.sort_unstable();
    // First write to the last event received anywhere: delivered events per second.
    let span = (last_event - started).as_secs_f64().max(1e-3);
    println!(
        "{:>11} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>6} {:>9.0} {:>10.1} {:>10.1} {:>9.1} {:>9.1} {:>8.1}",
        subscribers,
        writes,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        lost,
        dups,
        latencies.len() as f64 / span,
        connect_secs,
        mib(before.rss_kib),
        mib(after.rss_kib),
        mib(after.hwm_kib),
        after.rss_kib.saturating_sub(before.rss_kib) as f64 / subscribers.max(1) as f64,
    );
    Ok(())
}
