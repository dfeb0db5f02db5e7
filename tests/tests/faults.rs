//! Faults at the storage and connection-gateway ports, seen through the shim over HTTP:
//! transient failures are absorbed by retries, lasting ones become 503 + `Retry-After` within
//! the request budget, and no fault leaves a partial or doubled write (checked by reading
//! everything back: issues, identifiers, the team's counter, the change feed).
//!
//! Embedded store only: `FaultyStore`'s ambiguous fault relies on the inner store honouring
//! transaction tokens, which moto does not emulate (DynamoDB does, by contract).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use momentum_shared::AppState;
use momentum_shared::clock::{ManualClock, SystemClock};
use momentum_shared::config::AppConfig;
use momentum_shared::kernel::access::EntityType;
use momentum_shared::kernel::changes::HOLE_GRACE_SECS;
use momentum_shared::kernel::changes::{ChangeKind, ChangeRecord};
use momentum_shared::kernel::keys;
use momentum_shared::kernel::topic::Topic;
use momentum_shared::realtime::broadcaster::{Broadcaster, ConnectionGateway, GatewayError};
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_shared::realtime::faults::FaultyGateway;
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::faults::{Fault, FaultyStore, OpKind};
use momentum_shared::storage::{RetryPolicy, Store, Table};
use momentum_tests::{Reply, TestServer, Ws, id, sign_in_directly, workspace};
use serde_json::{Value, json};

type Faulty = Arc<FaultyStore<EmbeddedStore>>;

/// Budget of the test servers: small, so giving up is quick, yet far above what the
/// transient faults below cost.
const BUDGET: Duration = Duration::from_millis(3000);

/// The server's clock is moved by hand: reading back (`written`) moves it past
/// `HOLE_GRACE_SECS`, as time would, so change numbers left open by commits that failed with
/// the store down are closed by the reader.
async fn faulty_server(seed: u64) -> (TestServer, Faulty, ManualClock) {
    let clock = ManualClock::starting_now();
    let mut config = AppConfig::for_tests();
    config.expose_storage_calls = true;
    config.request_budget = BUDGET;
    let faulty = Arc::new(FaultyStore::new(EmbeddedStore::in_memory(), seed));
    let state = AppState::with_store(config, faulty.clone(), Arc::new(clock.clone()));
    (TestServer::serve(state).await, faulty, clock)
}

async fn create(s: &TestServer, w: &Ws, title: &str) -> Reply {
    s.post(
        "/issues",
        Some(&w.token),
        &json!({"team_id": w.team, "title": title}),
    )
    .await
}

/// Everything a create-issue writes, read back with faults off.
#[derive(Debug, PartialEq)]
struct Written {
    /// (number, title) of every issue of the team, by number.
    issues: Vec<(i64, String)>,
    /// Issue ids in `issue.created` change records, in feed order.
    created_events: Vec<String>,
    /// The team's issue counter.
    counter: i64,
    /// Numbers whose identifier (`KEY-n`) resolves, for n in 1..=5.
    identifiers: Vec<i64>,
}

async fn written(s: &TestServer, faulty: &Faulty, clock: &ManualClock, w: &Ws) -> Written {
    faulty.heal();
    clock.advance_secs(HOLE_GRACE_SECS + 1);
    let list = s
        .get(
            &format!("/issues?team_id={}&limit=100", w.team),
            Some(&w.token),
        )
        .await
        .expect(200);
    let mut issues: Vec<(i64, String)> = list.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["number"].as_i64().unwrap(),
                i["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    issues.sort();
    let feed = s
        .get(
            &format!("/workspaces/{}/changes?since=0&limit=1000", w.ws),
            Some(&w.token),
        )
        .await
        .expect(200);
    let created_events = feed.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"] == "issue.created")
        .map(|c| c["entity_id"].as_str().unwrap().to_owned())
        .collect();
    let counter = faulty
        .inner()
        .get(Table::Main, &keys::team_issue_counter(&w.ws, &w.team))
        .await
        .unwrap()
        .and_then(|i| i.get("seq").and_then(Value::as_i64))
        .unwrap_or(0);
    let mut identifiers = Vec::new();
    for n in 1..=5 {
        let r = s
            .get(&format!("/issues/{}-{n}", w.team_key), Some(&w.token))
            .await;
        match r.status.as_u16() {
            200 => identifiers.push(n),
            404 => {}
            other => panic!("identifier lookup answered {other}: {}", r.body),
        }
    }
    Written {
        issues,
        created_events,
        counter,
        identifiers,
    }
}

/// Issues numbered 1..=n, each with one `issue.created` record and its identifier.
#[track_caller]
fn assert_exactly(written: &Written, titles: &[&str], ids: &[String]) {
    let got: Vec<&str> = written.issues.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(got, titles, "each issue once, in creation order");
    let numbers: Vec<i64> = written.issues.iter().map(|(n, _)| *n).collect();
    // Numbers are drawn before the commit (so concurrent creates never conflict on them): a
    // create that failed may have used one up, so they increase but may skip.
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]) && numbers.first().is_none_or(|n| *n >= 1),
        "increasing issue numbers: {numbers:?}"
    );
    assert_eq!(written.created_events, ids, "one change record per issue");
    assert!(
        written.counter >= numbers.last().copied().unwrap_or(0),
        "team counter {} behind the numbers {numbers:?}",
        written.counter
    );
    assert_eq!(written.identifiers, numbers, "identifiers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_on_every_operation_are_absorbed() {
    let (s, faulty, clock) = faulty_server(11).await;
    let w = workspace(&s, "Acme").await;
    for kind in [OpKind::Get, OpKind::BatchGet, OpKind::Query] {
        faulty.fail_next(kind, 2, Fault::Throttle);
        faulty.set_rate(kind, 0.3, Fault::Throttle);
    }
    faulty.script(
        OpKind::Transact,
        [
            Some(Fault::Throttle),
            Some(Fault::Conflict),
            Some(Fault::Timeout(Duration::from_millis(50))),
        ],
    );
    faulty.set_rate(OpKind::Transact, 0.3, Fault::Throttle);

    let titles = ["one", "two", "three", "four"];
    let mut ids = Vec::new();
    for t in titles {
        let created = create(&s, &w, t).await.expect(201);
        ids.push(id(created.data()));
    }
    for issue in &ids {
        let got = s
            .get(&format!("/issues/{issue}"), Some(&w.token))
            .await
            .expect(200);
        assert_eq!(got.data()["id"], json!(issue));
    }
    let list = s
        .get(&format!("/issues?team_id={}", w.team), Some(&w.token))
        .await
        .expect(200);
    assert_eq!(list.data()["items"].as_array().unwrap().len(), titles.len());
    // The faults did hit every kind of call the requests made.
    for kind in [
        OpKind::Get,
        OpKind::BatchGet,
        OpKind::Query,
        OpKind::Transact,
    ] {
        assert!(faulty.injected(kind) >= 2, "{kind:?} got faults");
    }
    assert_exactly(&written(&s, &faulty, &clock, &w).await, &titles, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stays_down_answers_503_with_retry_after_within_the_budget() {
    let (s, faulty, clock) = faulty_server(12).await;
    let w = workspace(&s, "Acme").await;
    let first = create(&s, &w, "before").await.expect(201);
    let before = written(&s, &faulty, &clock, &w).await;

    let check = |r: &Reply, started: Instant| {
        assert_eq!(r.status.as_u16(), 503, "{}", r.body);
        assert_eq!(r.error_code(), "SERVICE_UNAVAILABLE");
        let retry_after = r.headers.get("retry-after").expect("Retry-After header");
        assert!(retry_after.to_str().unwrap().parse::<u64>().unwrap() >= 1);
        // Generous: the budget plus slack for a loaded machine, but below what retrying
        // without a deadline would take (8 attempts of 1 s timeouts).
        assert!(
            started.elapsed() < BUDGET + Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    };

    // Throttled on every call: retries run out, the client hears "retry later".
    faulty.fail_always(Fault::Throttle);
    let started = Instant::now();
    let r = s
        .get(&format!("/issues/{}", id(first.data())), Some(&w.token))
        .await;
    check(&r, started);
    let started = Instant::now();
    check(&create(&s, &w, "throttled").await, started);

    // Every call times out after 1 s: the request budget, not the attempt count, ends it.
    faulty.fail_always(Fault::Timeout(Duration::from_secs(1)));
    let started = Instant::now();
    check(&create(&s, &w, "timed out").await, started);

    assert_eq!(
        written(&s, &faulty, &clock, &w).await,
        before,
        "nothing of the 503s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_create_is_applied_exactly_once() {
    let (s, faulty, clock) = faulty_server(13).await;
    let w = workspace(&s, "Acme").await;
    let mut ids = Vec::new();
    // The commit is applied but its answer lost; then again, twice, around a throttle.
    faulty.fail_next(OpKind::Transact, 1, Fault::Ambiguous);
    ids.push(id(create(&s, &w, "first").await.expect(201).data()));
    assert_eq!(faulty.injected(OpKind::Transact), 1);
    faulty.script(
        OpKind::Transact,
        [
            Some(Fault::Ambiguous),
            Some(Fault::Throttle),
            Some(Fault::Ambiguous),
        ],
    );
    ids.push(id(create(&s, &w, "second").await.expect(201).data()));
    assert_eq!(faulty.injected(OpKind::Transact), 4);
    ids.push(id(create(&s, &w, "third").await.expect(201).data()));
    assert_exactly(
        &written(&s, &faulty, &clock, &w).await,
        &["first", "second", "third"],
        &ids,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_transaction_keeps_failing_leaves_nothing() {
    let (s, faulty, clock) = faulty_server(14).await;
    let w = workspace(&s, "Acme").await;
    let first = id(create(&s, &w, "kept").await.expect(201).data());
    for fault in [
        Fault::Conflict,
        Fault::Throttle,
        Fault::Timeout(Duration::from_millis(400)),
    ] {
        faulty.set_rate(OpKind::Transact, 1.0, fault);
        let r = create(&s, &w, "lost").await;
        assert_eq!(r.status.as_u16(), 503, "{fault:?}: {}", r.body);
        assert!(r.headers.contains_key("retry-after"));
        assert_exactly(
            &written(&s, &faulty, &clock, &w).await,
            &["kept"],
            std::slice::from_ref(&first),
        );
    }
    // The next write takes a number above every earlier one.
    let next = id(create(&s, &w, "next").await.expect(201).data());
    assert_exactly(
        &written(&s, &faulty, &clock, &w).await,
        &["kept", "next"],
        &[first, next],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_by_the_client_is_all_or_nothing() {
    let (s, faulty, clock) = faulty_server(15).await;
    let w = workspace(&s, "Acme").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let mut titles: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    // Slow before the counter read, slow before the commit, a commit that times out, and a
    // commit that is applied but answered slowly: the client gives up first each time.
    let cases = [
        (OpKind::BatchGet, Fault::Slow(Duration::from_millis(600))),
        (OpKind::Transact, Fault::Slow(Duration::from_millis(600))),
        (OpKind::Transact, Fault::Timeout(Duration::from_millis(600))),
        (
            OpKind::Transact,
            Fault::SlowAnswer(Duration::from_millis(600)),
        ),
    ];
    for (n, (kind, fault)) in cases.into_iter().enumerate() {
        faulty.fail_next(kind, 1, fault);
        let title = format!("dropped {n}");
        let sent = impatient
            .post(format!("{}/issues", s.base))
            .bearer_auth(&w.token)
            .json(&json!({"team_id": w.team, "title": title}))
            .send()
            .await;
        assert!(sent.is_err(), "the client timed out first");
        // Let whatever the server still does finish.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = written(&s, &faulty, &clock, &w).await;
        let present = now.issues.iter().any(|(_, t)| *t == title);
        if present {
            titles.push(title);
            ids.push(now.created_events.last().unwrap().clone());
        }
        if matches!(fault, Fault::SlowAnswer(_)) {
            assert!(present, "a commit that happened is there in full");
        }
        // Whichever way it went: all of it or none of it.
        let expected: Vec<&str> = titles.iter().map(String::as_str).collect();
        assert_exactly(&now, &expected, &ids);
    }
    ids.push(id(create(&s, &w, "after").await.expect(201).data()));
    titles.push("after".into());
    let expected: Vec<&str> = titles.iter().map(String::as_str).collect();
    assert_exactly(&written(&s, &faulty, &clock, &w).await, &expected, &ids);
}

/// Records each post's connection and event sequence number.
#[derive(Default)]
struct RecordingGateway {
    posts: Mutex<Vec<(String, i64)>>,
}

#[async_trait]
impl ConnectionGateway for RecordingGateway {
    async fn post(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        let v: Value = serde_json::from_slice(&data).unwrap();
        self.posts
            .lock()
            .unwrap()
            .push((id.to_owned(), v["seq"].as_i64().unwrap()));
        Ok(())
    }
    async fn close(&self, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn exists(&self, _: &str) -> Result<bool, GatewayError> {
        Ok(true)
    }
}

/// Registers a user who creates a workspace; returns the access token and workspace id.
async fn owner_of_workspace(state: &AppState) -> (String, String) {
    use momentum_shared::areas::workspaces::CreateWorkspace;
    let (token, _) = sign_in_directly(state, "live").await;
    let who = state.auth.authenticate(&token).unwrap();
    let ws = state
        .workspaces
        .create(
            &who,
            CreateWorkspace {
                name: "Live".into(),
                url_key: None,
                description: None,
            },
        )
        .await
        .unwrap();
    (token, ws.workspace.id)
}

/// A workspace of a new owner and `n` connections of that owner subscribed to it.
async fn subscribed_connections(
    state: &AppState,
    n: usize,
) -> (String, ConnectionRegistry, Vec<String>) {
    let (token, ws) = owner_of_workspace(state).await;
    let registry = ConnectionRegistry::new(state.ctx.clone());
    let connections: Vec<String> = (0..n).map(|i| format!("conn{i}=")).collect();
    for c in &connections {
        let conn = registry
            .connect(&state.auth, c, Some(&token))
            .await
            .unwrap();
        registry
            .subscribe(&conn, &[format!("workspace:{ws}")])
            .await
            .unwrap();
    }
    (ws, registry, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_gateway_still_delivers_every_event_exactly_once() {
    // A state of its own, not a served one: the shim's own fan-out would find these
    // connections unknown to its gateway and delete them as gone.
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let (ws, registry, connections) = subscribed_connections(&state, 8).await;
    let gateway = Arc::new(FaultyGateway::new(RecordingGateway::default(), 17));
    gateway.set_rate(0.3);
    let fast = RetryPolicy {
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        max_attempts: 12,
        request_budget: Duration::from_secs(10),
    };
    let broadcaster = Broadcaster::new(registry, gateway.clone()).with_retry(fast);
    let records: Vec<ChangeRecord> = (1..=10)
        .map(|seq| ChangeRecord {
            seq,
            workspace_id: ws.clone(),
            event: "issue.updated".into(),
            entity_type: EntityType::Issue,
            entity_id: format!("iss_{seq}"),
            kind: ChangeKind::Updated,
            actor_id: "usr_actor".into(),
            at: "2026-11-23T00:00:00Z".into(),
            topics: vec![Topic::Workspace(ws.clone())],
            data: json!({}),
            audience: None,
        })
        .collect();
    let delivery = broadcaster.deliver(&records).await.unwrap();
    assert_eq!(
        delivery.delivered,
        connections.len() * records.len(),
        "{delivery:?}"
    );
    assert_eq!(delivery.failed, 0);
    assert!(gateway.injected() >= 10, "faults were injected");
    let mut seen: HashMap<(String, i64), usize> = HashMap::new();
    for post in gateway.inner().posts.lock().unwrap().iter() {
        *seen.entry(post.clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), connections.len() * records.len(), "every event");
    assert!(seen.values().all(|n| *n == 1), "exactly once each");
}

/// Never answers posts to one connection (a hung TCP stream to API Gateway); answers the
/// rest at once.
struct HangingGateway {
    hung: String,
    attempts_on_hung: std::sync::atomic::AtomicUsize,
    inner: RecordingGateway,
}

#[async_trait]
impl ConnectionGateway for HangingGateway {
    async fn post(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        if id == self.hung {
            self.attempts_on_hung
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        self.inner.post(id, data).await
    }
    async fn close(&self, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn exists(&self, _: &str) -> Result<bool, GatewayError> {
        Ok(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_post_fails_its_connection_alone_within_the_post_timeout() {
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let (ws, registry, _) = subscribed_connections(&state, 6).await;
    let gateway = Arc::new(HangingGateway {
        hung: "conn3=".into(),
        attempts_on_hung: Default::default(),
        inner: RecordingGateway::default(),
    });
    // Retries would have a minute: only the post timeout (100 ms) can end the hung post
    // in time for the 30 s bound below.
    let patient = RetryPolicy {
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        max_attempts: 12,
        request_budget: Duration::from_secs(60),
    };
    let broadcaster = Broadcaster::new(registry, gateway.clone())
        .with_retry(patient)
        .with_config(&momentum_shared::config::FanoutConfig {
            post_timeout: Duration::from_millis(100),
            ..Default::default()
        });
    let record = ChangeRecord {
        seq: 1,
        workspace_id: ws.clone(),
        event: "workspace.updated".into(),
        entity_type: EntityType::Workspace,
        entity_id: ws.clone(),
        kind: ChangeKind::Updated,
        actor_id: "usr_actor".into(),
        at: "2026-11-23T00:00:00Z".into(),
        topics: vec![Topic::Workspace(ws.clone())],
        data: json!({}),
        audience: None,
    };
    let delivery = tokio::time::timeout(Duration::from_secs(30), broadcaster.deliver(&[record]))
        .await
        .expect("the hung post does not hold up the batch")
        .unwrap();
    assert_eq!(delivery.delivered, 5, "{delivery:?}");
    assert_eq!(delivery.failed, 1, "{delivery:?}");
    assert_eq!(
        gateway
            .attempts_on_hung
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a timed-out post is not retried"
    );
    let posted: Vec<String> = gateway
        .inner
        .posts
        .lock()
        .unwrap()
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    assert_eq!(posted.len(), 5);
    assert!(!posted.contains(&"conn3=".to_owned()));
}
