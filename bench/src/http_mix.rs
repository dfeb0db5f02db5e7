//! HTTP workload against the shim: a weighted mix of login, list issues (page of 50), get
//! issue and create/update issue, at fixed concurrency for a fixed time. Defaults are the
//! issue's workload: login 5 %, list 50 %, get 25 %, write 20 % (half creates, half
//! updates), 32 connections, 30 s, 200 seeded issues.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{ServerArgs, Shim};
use crate::{mib, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Weights: login=5,list=50,get=25,write=20 (any subset; also create=, update=).
    #[arg(long, default_value = "login=5,list=50,get=25,write=20")]
    mix: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Issues created before the run.
    #[arg(long, default_value_t = 200)]
    issues: usize,
    /// Load generator: `reqwest` (in this process; counts storage calls) or `wrk` (the
    /// C tool the issue's reference figures were taken with, `apt-get install wrk`; one
    /// endpoint per run: `--mix create=1`, `list=1` or `get=1`). wrk spends less of the
    /// two cores than this process does, so its figures are the server's, closer.
    #[arg(long, default_value = "reqwest")]
    generator: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Login,
    List,
    Get,
    /// In the mix: half creates, half updates (reported apart).
    Write,
    Create,
    Update,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Login => "POST /auth/login",
            Op::List => "GET /issues (50)",
            Op::Get => "GET /issues/{id}",
            Op::Write => "POST|PUT /issues",
            Op::Create => "POST /issues",
            Op::Update => "PUT /issues/{id}",
        }
    }
}

#[derive(Default)]
struct Stats {
    latencies: Vec<u64>,
    errors: usize,
    storage_calls: u64,
}

fn parse_mix(mix: &str) -> anyhow::Result<Vec<(Op, u32)>> {
    let mut out = Vec::new();
    for part in mix.split(',') {
        let (name, w) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad mix entry {part:?}"))?;
        let op = match name.trim() {
            "login" => Op::Login,
            "list" => Op::List,
            "get" => Op::Get,
            "write" => Op::Write,
            "create" => Op::Create,
            "update" => Op::Update,
            other => anyhow::bail!("unknown op {other:?}"),
        };
        out.push((op, w.trim().parse()?));
    }
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mix = parse_mix(&args.mix)?;
    let total_weight: u32 = mix.iter().map(|(_, w)| w).sum();
    let shim = Shim::start(&args.server).await?;
    let base = shim.base.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let (email, password) = (
        format!("bench.{}@example.com", uuid::Uuid::new_v4().simple()),
        "benchmark password",
    );
    http.post(format!("{base}/auth/register"))
        .json(&json!({"email": email, "username": "bencher", "password": password}))
        .send()
        .await?
        .error_for_status()?;
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["data"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ws: Value = http
        .post(format!("{base}/workspaces"))
        .bearer_auth(&token)
        .json(&json!({"name": "Bench"}))
        .send()
        .await?
        .json()
        .await?;
    let team = ws["data"]["default_team"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut issue_ids = Vec::new();
    for i in 0..args.issues {
        let r: Value = http
            .post(format!("{base}/issues"))
            .bearer_auth(&token)
            .json(
                &json!({"team_id": team, "title": format!("Seed issue {i}"), "priority": "medium"}),
            )
            .send()
            .await?
            .json()
            .await?;
        issue_ids.push(r["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let cpu_before = shim.cpu_time();
    if args.generator == "wrk" {
        let (requests, secs) = wrk::run(&args, &mix, &shim, &token, &team, &issue_ids)?;
        print_server_cpu(&shim, cpu_before, requests, secs);
        return Ok(());
    }
    anyhow::ensure!(
        args.generator == "reqwest",
        "unknown generator {:?} (reqwest or wrk)",
        args.generator
    );
    let issue_ids = Arc::new(issue_ids);
    let counter = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (http, base, token, team) =
                (http.clone(), base.clone(), token.clone(), team.clone());
            let (email, mix, ids, counter) = (
                email.clone(),
                mix.clone(),
                issue_ids.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                let mut stats: BTreeMap<Op, Stats> = BTreeMap::new();
                let mut i = w;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed) as u32;
                    let mut pick = n.wrapping_mul(2_654_435_761) % total_weight;
                    let op = mix
                        .iter()
                        .find(|(_, wgt)| {
                            if pick < *wgt {
                                true
                            } else {
                                pick -= wgt;
                                false
                            }
                        })
                        .map(|(op, _)| *op)
                        .unwrap_or(Op::List);
                    i = i.wrapping_add(7919);
                    let id = &ids[i % ids.len()];
                    let op = match op {
                        Op::Write if n.is_multiple_of(2) => Op::Create,
                        Op::Write => Op::Update,
                        other => other,
                    };
                    let req = match op {
                        Op::Login => http
                            .post(format!("{base}/auth/login"))
                            .json(&json!({"email": email, "password": password})),
                        Op::List => http
                            .get(format!("{base}/issues?team_id={team}&limit=50"))
                            .bearer_auth(&token),
                        Op::Get => http.get(format!("{base}/issues/{id}")).bearer_auth(&token),
                        Op::Create | Op::Write => http
                            .post(format!("{base}/issues"))
                            .bearer_auth(&token)
                            .json(&json!({"team_id": team, "title": "Bench write"})),
                        Op::Update => http
                            .put(format!("{base}/issues/{id}"))
                            .bearer_auth(&token)
                            .json(&json!({"description": format!("edit {n}")})),
                    };
                    let t = Instant::now();
                    let result = req.send().await;
                    let micros = t.elapsed().as_micros() as u64;
                    let s = stats.entry(op).or_default();
                    match result {
                        Ok(resp) => {
                            s.storage_calls += resp
                                .headers()
                                .get("x-storage-calls")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            let ok = resp.status().is_success()
                                // a concurrent update of the same issue is a correct 412
                                || resp.status().as_u16() == 412;
                            let _ = resp.bytes().await;
                            if !ok {
                                s.errors += 1;
                            }
                        }
                        Err(_) => s.errors += 1,
                    }
                    s.latencies.push(micros);
                }
                stats
            })
        })
        .collect();
    let mut all: BTreeMap<Op, Stats> = BTreeMap::new();
    for w in workers {
        for (op, s) in w.await? {
            let t = all.entry(op).or_default();
            t.latencies.extend(s.latencies);
            t.errors += s.errors;
            t.storage_calls += s.storage_calls;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let memory = shim
        .memory()
        .map(|m| {
            format!(
                "server rss {:.1} MiB, peak {:.1} MiB",
                mib(m.rss_kib),
                mib(m.hwm_kib)
            )
        })
        .unwrap_or_else(|| "server rss unknown".into());
    println!(
        "mix {} | concurrency {} | {:.1} s | {} shim, store {} | {memory}",
        args.mix, args.concurrency, secs, shim.kind, args.server.store,
    );
    println!(
        "{:<20} {:>8} {:>9} {:>8} {:>8} {:>7} {:>14}",
        "endpoint", "count", "req/s", "p50 ms", "p99 ms", "errors", "storage calls"
    );
    let row = |name: &str, s: &mut Stats| {
        s.latencies.sort_unstable();
        let n = s.latencies.len();
        println!(
            "{:<20} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>14.2}",
            name,
            n,
            n as f64 / secs,
            percentile(&s.latencies, 0.5) as f64 / 1000.0,
            percentile(&s.latencies, 0.99) as f64 / 1000.0,
            s.errors,
            s.storage_calls as f64 / n.max(1) as f64
        );
    };
    let mut total = Stats::default();
    for (op, mut s) in all {
        row(op.name(), &mut s);
        total.latencies.extend(s.latencies);
        total.errors += s.errors;
        total.storage_calls += s.storage_calls;
    }
    let requests = total.latencies.len() as u64;
    row("total", &mut total);
    print_server_cpu(&shim, cpu_before, requests, secs);
    Ok(())
}

/// The child shim's CPU over the load: per request (the issue compares a create's server
/// CPU with the original stack's ~0.47 ms) and in cores (how much of the machine the server
/// got; the load generator and the kernel's network work share the rest).
fn print_server_cpu(shim: &Shim, before: Option<Duration>, requests: u64, secs: f64) {
    let (Some(before), Some(after)) = (before, shim.cpu_time()) else {
        return;
    };
    let used = after.saturating_sub(before).as_secs_f64();
    println!(
        "server cpu {:.2} s: {:.3} ms per request, {:.2} cores",
        used,
        used * 1000.0 / requests.max(1) as f64,
        used / secs.max(f64::EPSILON)
    );
}

/// The same single-endpoint load through wrk (`--generator wrk`).
mod wrk {
    use std::process::Command;

    use super::{Args, Op, Shim};

    pub fn run(
        args: &Args,
        mix: &[(Op, u32)],
        shim: &Shim,
        token: &str,
        team: &str,
        issue_ids: &[String],
    ) -> anyhow::Result<(u64, f64)> {
        let [(op, _)] = mix else {
            anyhow::bail!("--generator wrk runs one endpoint: --mix create=1, list=1 or get=1");
        };
        let (method, path, body) = match op {
            Op::Create => (
                "POST",
                "/issues".to_owned(),
                format!(r#"{{"team_id":"{team}","title":"Bench write"}}"#),
            ),
            Op::List => (
                "GET",
                format!("/issues?team_id={team}&limit=50"),
                String::new(),
            ),
            Op::Get => {
                let id = issue_ids
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("--mix get=1 needs --issues >= 1"))?;
                ("GET", format!("/issues/{id}"), String::new())
            }
            other => anyhow::bail!("--generator wrk does not run {}", other.name()),
        };
        let script = std::env::temp_dir().join(format!("momentum-wrk-{}.lua", std::process::id()));
        std::fs::write(
            &script,
            format!(
                "wrk.method = {method:?}\nwrk.body = {body:?}\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
            ),
        )?;
        let out = Command::new("wrk")
            .args([
                "-t2".to_owned(),
                format!("-c{}", args.concurrency),
                format!("-d{}s", args.duration),
                "--latency".to_owned(),
                "-s".to_owned(),
                script.display().to_string(),
                format!("{}{path}", shim.base),
            ])
            .output();
        let _ = std::fs::remove_file(&script);
        let out = out.map_err(|e| anyhow::anyhow!("cannot run wrk ({e}): apt-get install wrk"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |prefix: &str| {
            text.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(prefix))
                .map(|v| v.trim().to_owned())
        };
        let ms = |v: Option<String>| v.map(|v| wrk_ms(&v)).unwrap_or(f64::NAN);
        let count: u64 = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0);
        let errors: u64 = field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        println!(
            "mix {} | concurrency {} | {} s | {} shim, store {} | wrk",
            args.mix, args.concurrency, args.duration, shim.kind, args.server.store,
        );
        println!(
            "{:<20} {:>8} {:>9} {:>8} {:>8} {:>7}",
            "endpoint", "count", "req/s", "p50 ms", "p99 ms", "errors"
        );
        println!(
            "{:<20} {:>8} {:>9} {:>8.2} {:>8.2} {:>7}",
            op.name(),
            count,
            field("Requests/sec:").unwrap_or_default(),
            ms(field("50%")),
            ms(field("99%")),
            errors,
        );
        if let Some(socket) = field("Socket errors:") {
            println!("wrk socket errors: {socket}");
        }
        Ok((count, args.duration as f64))
    }

    /// wrk's latencies: `812.00us`, `3.21ms`, `1.02s`.
    fn wrk_ms(v: &str) -> f64 {
        let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
        let (n, unit) = v.split_at(split);
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn wrk_latencies_in_ms() {
            assert_eq!(super::wrk_ms("812.00us"), 0.812);
            assert_eq!(super::wrk_ms("3.21ms"), 3.21);
            assert_eq!(super::wrk_ms("1.02s"), 1020.0);
        }
    }
}
