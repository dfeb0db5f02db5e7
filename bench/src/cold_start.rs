//! Cold-start proxy: from process start to the first served request, for every Lambda
//! binary and the shim, plus each binary's size.
//!
//! Lambda binaries run as deployed (`MOMENTUM_ENV=production`, `MOMENTUM_STORE=dynamodb`), so
//! init includes what the real SDK costs: `aws-config` loading (region and credential
//! chains), the DynamoDB client, the SNS client (push is on, `MOMENTUM_PUSH=sns`, as the
//! template sets it when a platform application is given) and, in the realtime binaries,
//! the API Gateway management client. Their endpoints point at the fake runtime API below,
//! which would answer 404 to an SDK call: none is made before the first response (the
//! canned events are refused before storage is read, and the SDK resolves credentials and
//! opens connections on a client's first call), so nothing here depends on the network. `--store memory` runs
//! them on the memory store instead (no SDK client but the realtime gateway's): the
//! difference is the DynamoDB client's share.
//!
//! Lambda binaries are run against a fake Lambda Runtime API served here on 127.0.0.1: the
//! first `GET /2018-06-01/runtime/invocation/next` gets a canned event (an API Gateway v2
//! HTTP request without a token, a WebSocket `$connect` without a token, or an empty
//! DynamoDB stream batch) and the run ends when the binary posts its response (or error).
//! "init" is spawn -> first `/next` (everything the binary does before it can take an
//! event); "served" is spawn -> response posted. The shim is spawned on a free port with a
//! memory store and timed until `/health` answers 200. Nothing is built here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::mib;
use crate::server::{ChildGuard, Memory, binary, free_port, local_command, temp_dir};

#[derive(clap::Args)]
pub struct Args {
    /// Starts per binary (the table shows medians).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Directory of the release binaries (build them first: `cargo build --release --bins`).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Only these binaries (comma-separated, e.g. `auth,local`).
    #[arg(long)]
    only: Option<String>,
    /// Give up on one start after this many seconds.
    #[arg(long, default_value_t = 20)]
    timeout_secs: u64,
    /// The Lambda binaries' store: `dynamodb` as deployed (the SDK client is built at init),
    /// or `memory` to leave the DynamoDB client out.
    #[arg(long, value_enum, default_value_t = LambdaStore::Dynamodb)]
    store: LambdaStore,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LambdaStore {
    Dynamodb,
    Memory,
}

#[derive(Clone, Copy)]
enum Event {
    /// API Gateway HTTP API (payload v2) request for this path, without a token.
    Http(&'static str),
    /// `POST /auth/login` for an unknown address: the first storage read, so on the
    /// DynamoDB store the SDK's first call (credentials, signing, a local connection and
    /// round trip, answered `ResourceNotFoundException`).
    Login,
    /// API Gateway WebSocket `$connect` without a token.
    WsConnect,
    /// A DynamoDB stream batch with no records.
    Stream,
    /// Not a Lambda: the shim, timed to `/health` = 200.
    Shim,
}

/// (row label, binary, event).
const BINARIES: &[(&str, &str, Event)] = &[
    ("auth", "auth", Event::Http("/auth/profile")),
    ("auth login", "auth", Event::Login),
    ("workspaces", "workspaces", Event::Http("/workspaces")),
    ("projects", "projects", Event::Http("/projects")),
    ("labels", "labels", Event::Http("/labels")),
    ("comments", "comments", Event::Http("/comments")),
    ("ws_admin", "ws_admin", Event::Http("/ws/stats")),
    ("websocket", "websocket", Event::WsConnect),
    ("broadcaster", "broadcaster", Event::Stream),
    ("local", "local", Event::Shim),
];

/// One start's progress, reset before each spawn.
#[derive(Default)]
struct Invocation {
    request_id: String,
    event: Value,
    next_at: Option<Instant>,
    done: Option<(Instant, String)>,
}

#[derive(Default)]
struct FakeRuntime {
    current: Mutex<Invocation>,
    done: Notify,
}

type Shared = Arc<FakeRuntime>;

async fn next(State(rt): State<Shared>) -> (StatusCode, HeaderMap, Bytes) {
    let now = Instant::now();
    let (id, body) = {
        let mut inv = rt.current.lock().unwrap();
        if inv.next_at.is_some() {
            (None, Bytes::new())
        } else {
            inv.next_at = Some(now);
            (
                Some(inv.request_id.clone()),
                Bytes::from(inv.event.to_string()),
            )
        }
    };
    let Some(id) = id else {
        // The binary asks for its second event: keep it waiting (it is killed meanwhile).
        tokio::time::sleep(Duration::from_secs(60)).await;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            HeaderMap::new(),
            Bytes::new(),
        );
    };
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30_000;
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        headers.insert(k, HeaderValue::from_str(&v).expect("header value"));
    };
    set("content-type", "application/json".into());
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:momentum-bench".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".into(),
    );
    (StatusCode::OK, headers, body)
}

fn finish(rt: &FakeRuntime, id: &str, outcome: String) {
    let now = Instant::now();
    let mut inv = rt.current.lock().unwrap();
    if inv.request_id == id && inv.done.is_none() {
        inv.done = Some((now, outcome));
        rt.done.notify_one();
    }
}

async fn response(
    State(rt): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let outcome = match v.get("statusCode").and_then(Value::as_u64) {
        Some(status) => format!("response {status}"),
        None => "response".to_owned(),
    };
    finish(&rt, &id, outcome);
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Shared>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    finish(
        &rt,
        &id,
        format!("error {}", v["errorType"].as_str().unwrap_or("?")),
    );
    StatusCode::ACCEPTED
}

/// Any SDK call (the endpoints point here): DynamoDB's answer for a missing table, which the
/// store maps to a non-retryable error, so a request that reads storage answers at once.
async fn sdk_call() -> (StatusCode, HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    headers.insert("x-amzn-requestid", HeaderValue::from_static("bench"));
    let body = json!({
        "__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
        "message": "Requested resource not found (momentum bench)"
    });
    (
        StatusCode::BAD_REQUEST,
        headers,
        Bytes::from(body.to_string()),
    )
}

async fn init_error(State(rt): State<Shared>, body: Bytes) -> StatusCode {
    let id = rt.current.lock().unwrap().request_id.clone();
    finish(
        &rt,
        &id,
        format!("init error {}", String::from_utf8_lossy(&body)),
    );
    StatusCode::ACCEPTED
}

fn event_json(event: Event, request_id: &str) -> Value {
    let epoch_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let (method, path, body) = match event {
        Event::Login => (
            "POST",
            "/auth/login",
            Some(r#"{"email":"nobody@bench.example","password":"bench-password"}"#),
        ),
        Event::Http(path) => ("GET", path, None),
        _ => ("GET", "", None),
    };
    match event {
        Event::Http(_) | Event::Login => json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {
                "accept": "application/json",
                "content-type": "application/json",
                "host": "bench.execute-api.us-east-1.amazonaws.com",
                "user-agent": "momentum-bench",
                "x-forwarded-for": "127.0.0.1",
                "x-forwarded-port": "443",
                "x-forwarded-proto": "https"
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "bench",
                "domainName": "bench.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "bench",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "momentum-bench"
                },
                "requestId": request_id,
                "routeKey": "$default",
                "stage": "$default",
                "time": "23/Nov/2026:12:00:00 +0000",
                "timeEpoch": epoch_ms
            },
            "body": body,
            "isBase64Encoded": false
        }),
        Event::WsConnect => json!({
            "headers": {"Host": "bench.execute-api.us-east-1.amazonaws.com"},
            "multiValueHeaders": {"Host": ["bench.execute-api.us-east-1.amazonaws.com"]},
            "requestContext": {
                "routeKey": "$connect",
                "eventType": "CONNECT",
                "extendedRequestId": request_id,
                "requestTime": "23/Nov/2026:12:00:00 +0000",
                "messageDirection": "IN",
                "stage": "prod",
                "connectedAt": epoch_ms,
                "requestTimeEpoch": epoch_ms,
                "identity": {"sourceIp": "127.0.0.1"},
                "requestId": request_id,
                "domainName": "bench.execute-api.us-east-1.amazonaws.com",
                "connectionId": "YmVuY2hjb25uPQ=",
                "apiId": "bench"
            },
            "isBase64Encoded": false
        }),
        Event::Stream => json!({"Records": []}),
        Event::Shim => Value::Null,
    }
}

/// The environment Lambda gives a function plus the template's `MOMENTUM_*` variables, and
/// nothing else. Both SDK endpoints are the fake runtime API (never called; see the module
/// comment).
fn lambda_command(
    bin: &Path,
    name: &str,
    runtime_api: &str,
    store: LambdaStore,
    log: &Path,
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("momentum-{name}"))
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/momentum-{name}"),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_SESSION_TOKEN", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "MOMENTUM_JWT_SECRET",
            "benchmark-secret-benchmark-secret-benchmark",
        )
        .env(
            "MOMENTUM_WS_MANAGEMENT_ENDPOINT",
            format!("http://{runtime_api}"),
        )
        // Push on, as the template sets it when a platform application is given: every
        // function then builds an SNS client at init too (the heavier case).
        .env("MOMENTUM_PUSH", "sns")
        .env(
            "MOMENTUM_PUSH_APNS_ARN",
            "arn:aws:sns:us-east-1:123456789012:app/APNS/momentum",
        )
        .env(
            "MOMENTUM_PUSH_SNS_ENDPOINT",
            format!("http://{runtime_api}"),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?);
    match store {
        LambdaStore::Dynamodb => cmd
            .env("MOMENTUM_ENV", "production")
            .env("MOMENTUM_STORE", "dynamodb")
            .env(
                "MOMENTUM_DYNAMODB_ENDPOINT",
                format!("http://{runtime_api}"),
            ),
        LambdaStore::Memory => cmd
            .env("MOMENTUM_ENV", "local")
            .env("MOMENTUM_STORE", "memory"),
    };
    Ok(cmd)
}

struct Sample {
    init: Option<Duration>,
    served: Duration,
    outcome: String,
    rss_kib: u64,
}

async fn lambda_once(
    rt: &Shared,
    runtime_api: &str,
    bin: &Path,
    name: &str,
    event: Event,
    store: LambdaStore,
    timeout: Duration,
) -> anyhow::Result<Sample> {
    let dir = temp_dir(name)?;
    let log = dir.join("stdout.log");
    let request_id = uuid::Uuid::new_v4().to_string();
    *rt.current.lock().unwrap() = Invocation {
        event: event_json(event, &request_id),
        request_id,
        ..Invocation::default()
    };
    let mut cmd = lambda_command(bin, name, runtime_api, store, &log)?;
    let spawned = Instant::now();
    let mut child = ChildGuard(cmd.spawn()?, Some(log.with_extension("err")));
    loop {
        // A stale wake-up from an earlier start is harmless: the state decides.
        let _ = tokio::time::timeout(Duration::from_millis(20), rt.done.notified()).await;
        if rt.current.lock().unwrap().done.is_some() {
            break;
        }
        if let Some(status) = child.0.try_wait()? {
            anyhow::bail!(
                "{name} exited ({status}) before serving:\n{}",
                child.log_tail()
            );
        }
        if spawned.elapsed() > timeout {
            anyhow::bail!(
                "{name} served nothing within {timeout:?}:\n{}",
                child.log_tail()
            );
        }
    }
    let rss_kib = Memory::of(child.0.id()).rss_kib;
    drop(child);
    let inv = std::mem::take(&mut *rt.current.lock().unwrap());
    let (done_at, outcome) = inv.done.expect("finished");
    Ok(Sample {
        init: inv.next_at.map(|t| t - spawned),
        served: done_at - spawned,
        outcome,
        rss_kib,
    })
}

async fn shim_once(bin: &Path, timeout: Duration) -> anyhow::Result<Sample> {
    let dir = temp_dir("shim")?;
    let port = free_port()?;
    let mut cmd = local_command(bin, "memory", port, &dir)?;
    let spawned = Instant::now();
    let mut child = ChildGuard(cmd.spawn()?, Some(dir.join("stderr.log")));
    crate::server::wait_healthy(&format!("http://127.0.0.1:{port}"), &mut child, timeout).await?;
    let served = spawned.elapsed();
    Ok(Sample {
        init: None,
        served,
        outcome: "/health 200".into(),
        rss_kib: Memory::of(child.0.id()).rss_kib,
    })
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let only: Option<Vec<&str>> = args
        .only
        .as_deref()
        .map(|s| s.split(',').map(str::trim).collect());
    let chosen: Vec<(&str, &str, Event)> = BINARIES
        .iter()
        .copied()
        .filter(|(label, name, _)| {
            only.as_ref()
                .is_none_or(|o| o.contains(label) || o.contains(name))
        })
        .collect();
    if chosen.is_empty() {
        anyhow::bail!("--only matched none of the binaries");
    }
    let mut missing = Vec::new();
    let mut bins = Vec::new();
    for (label, name, event) in &chosen {
        match binary(&args.bin_dir, name) {
            Ok(path) => bins.push((*label, *name, *event, path)),
            Err(_) if !missing.contains(name) => missing.push(*name),
            Err(_) => {}
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "missing in {}: {}. This scenario builds nothing: run `cargo build --release --bins` \
             first (the Lambda build; `cargo build --profile bench --bins` also writes to \
             target/release) or pass --bin-dir",
            args.bin_dir.display(),
            missing.join(", ")
        );
    }

    let rt: Shared = Arc::default();
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/", post(sdk_call))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let timeout = Duration::from_secs(args.timeout_secs);
    println!(
        "{} starts per binary from {}; Lambdas on the {} store; times are medians, ms from spawn",
        args.runs,
        args.bin_dir.display(),
        match args.store {
            LambdaStore::Dynamodb => "DynamoDB (SDK clients built at init)",
            LambdaStore::Memory => "memory",
        }
    );
    println!(
        "{:<12} {:>12} {:>9} {:>10} {:>9} {:>9} {:>8}  first answer",
        "binary", "size bytes", "init ms", "served ms", "min ms", "max ms", "rss MiB",
    );
    for (label, name, event, path) in bins {
        let size = std::fs::metadata(&path)?.len();
        let mut samples = Vec::new();
        for _ in 0..args.runs.max(1) {
            let s = match event {
                Event::Shim => shim_once(&path, timeout).await?,
                _ => {
                    lambda_once(&rt, &runtime_api, &path, name, event, args.store, timeout).await?
                }
            };
            samples.push(s);
        }
        let served: Vec<Duration> = samples.iter().map(|s| s.served).collect();
        let init: Vec<Duration> = samples.iter().filter_map(|s| s.init).collect();
        let mut rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
        rss.sort_unstable();
        println!(
            "{:<12} {:>12} {:>9} {:>10} {:>9} {:>9} {:>8.1}  {}",
            label,
            size,
            ms(median(init)),
            ms(median(served.clone())),
            ms(served.iter().min().copied()),
            ms(served.iter().max().copied()),
            mib(rss[rss.len() / 2]),
            samples[0].outcome,
        );
    }
    server.abort();
    Ok(())
}
