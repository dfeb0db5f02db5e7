//! Notifications from a burst of changes: the owner of a workspace creates N issues (at
//! `--concurrency` in flight), each assigned to a second member, whose WebSocket receives a
//! `notification.created` per issue on its implicit `user:{id}` topic. Notifications per
//! second (first commit to last arrival) and commit-to-inbox latency, p50/p99: from the
//! change record's `at` (the notification's `updated_at`) to the socket's receipt, which
//! comes after the notification and its unread counter are written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_tungstenite::tungstenite::Message;

use crate::server::{ServerArgs, Shim};
use crate::{percentile, sign_up};

#[derive(clap::Args)]
pub struct Args {
    /// Changes committed (each one notification).
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// Commits in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[command(flatten)]
    server: ServerArgs,
}

async fn json_of(r: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    Ok(r.send().await?.json().await?)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let shim = Shim::start(&args.server).await?;
    let base = shim.base.clone();
    let http = reqwest::Client::new();
    let owner = sign_up(&http, &base, "notifier").await?;
    let created = json_of(
        http.post(format!("{base}/workspaces"))
            .bearer_auth(&owner)
            .json(&json!({"name": "Notifications"})),
    )
    .await?;
    let ws = created["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let team = created["data"]["default_team"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // The recipient joins through an invitation.
    let email = format!("reader.{}@bench.example.com", uuid::Uuid::new_v4().simple());
    let password = "benchmark password";
    http.post(format!("{base}/auth/register"))
        .json(&json!({"email": email, "username": "reader", "password": password}))
        .send()
        .await?
        .error_for_status()?;
    let login = json_of(
        http.post(format!("{base}/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await?;
    let reader = login["data"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reader_id = login["data"]["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let invitation = json_of(
        http.post(format!("{base}/invitations"))
            .bearer_auth(&owner)
            .json(&json!({"workspace_id": ws, "email": email, "role": "member"})),
    )
    .await?;
    let accepted = json_of(
        http.post(format!(
            "{base}/invitations/{}/accept",
            invitation["data"]["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(&reader)
        .json(&json!({})),
    )
    .await?;
    anyhow::ensure!(
        accepted["success"] == true,
        "joining: {accepted}\n{}",
        shim.log_tail()
    );
    let ws_url = base.replacen("http://", "ws://", 1);
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{ws_url}/ws?token={reader}")).await?;
    // A ping answered means the connection is recorded before the burst starts.
    socket
        .send(Message::Text(
            json!({"type": "ping", "request_id": "p"})
                .to_string()
                .into(),
        ))
        .await?;
    while let Some(msg) = socket.next().await {
        if let Message::Text(t) = msg?
            && serde_json::from_str::<Value>(&t)?["request_id"] == "p"
        {
            break;
        }
    }

    let started = Instant::now();
    let writer = {
        let (http, base) = (http.clone(), base.clone());
        let n = args.changes;
        let concurrency = args.concurrency.max(1);
        tokio::spawn(async move {
            futures::stream::iter(0..n)
                .map(|i| {
                    let (http, base, owner, team, reader_id) = (
                        http.clone(),
                        base.clone(),
                        owner.clone(),
                        team.clone(),
                        reader_id.clone(),
                    );
                    async move {
                        http.post(format!("{base}/issues"))
                            .bearer_auth(&owner)
                            .json(&json!({"team_id": team, "title": format!("Burst {i}"), "assignee_id": reader_id}))
                            .send()
                            .await
                            .map(|r| r.status().is_success())
                            .unwrap_or(false)
                    }
                })
                .buffer_unordered(concurrency)
                .filter(|ok| futures::future::ready(*ok))
                .count()
                .await
        })
    };
    // Arrivals by notification id: latency from the change's `at`, in microseconds.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut dups = 0usize;
    let mut last = started;
    let mut committed: Option<usize> = None;
    let mut writer = Some(writer);
    loop {
        if let Some(c) = committed
            && seen.len() >= c
        {
            break;
        }
        let next = tokio::time::timeout(Duration::from_secs(30), socket.next());
        tokio::select! {
            done = async { writer.as_mut().unwrap().await }, if writer.is_some() => {
                committed = Some(done?);
                writer = None;
            }
            msg = next => {
                let Ok(Some(msg)) = msg else { break };
                let Message::Text(t) = msg? else { continue };
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] != "notification.created" {
                    continue;
                }
                let now = OffsetDateTime::now_utc();
                let at = v["notification"]["updated_at"]
                    .as_str()
                    .and_then(|a| OffsetDateTime::parse(a, &Rfc3339).ok())
                    .unwrap_or(now);
                let id = v["notification"]["id"].as_str().unwrap_or_default().to_owned();
                let micros = (now - at).whole_microseconds().max(0) as u64;
                if seen.insert(id, micros).is_some() {
                    dups += 1;
                }
                last = Instant::now();
            }
        }
    }
    let committed = committed.unwrap_or(0);
    let mut latencies: Vec<u64> = seen.values().copied().collect();
    latencies.sort_unstable();
    let span = (last - started).as_secs_f64().max(1e-3);
    println!(
        "notifications: {} changes at {} in flight; shim: {}, store {}",
        args.changes, args.concurrency, shim.kind, args.server.store
    );
    println!(
        "{:>9} {:>9} {:>16} {:>9} {:>9} {:>9} {:>6} {:>6}",
        "committed", "notified", "notifications/s", "p50 ms", "p99 ms", "max ms", "lost", "dup"
    );
    println!(
        "{:>9} {:>9} {:>16.0} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>6}",
        committed,
        seen.len(),
        seen.len() as f64 / span,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        committed.saturating_sub(seen.len()),
        dups,
    );
    Ok(())
}
