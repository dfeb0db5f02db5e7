//! Rate limits hold across instances: four shims (four `AppState`s, each with its own
//! in-process buckets, as four warm Lambda instances have) over ONE store admit a limit once
//! in all, not four times. On the embedded store and on DynamoDB (moto). Time is a manual
//! clock shared by the four, so refills happen only when the test moves it.

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::clock::ManualClock;
use momentum_shared::ratelimit::{Rate, RateLimitConfig};
use momentum_tests::{Backend, Reply, TestServer, WsClient, backend_store, user};
use serde_json::json;

const INSTANCES: usize = 4;

/// Four shims over one store, plus a fifth without limits (the baseline a limited request's
/// storage calls are compared with). `None` when DynamoDB is not available.
async fn instances(
    backend: Backend,
    test: &str,
    limits: RateLimitConfig,
) -> Option<(Vec<TestServer>, TestServer, ManualClock)> {
    let (mut config, store) = backend_store(backend, test).await?;
    config.expose_storage_calls = true;
    let clock = ManualClock::starting_now();
    let state = |limits: RateLimitConfig| {
        let mut config = config.clone();
        config.rate_limits = limits;
        AppState::with_store(config, store.clone(), Arc::new(clock.clone()))
    };
    let mut servers = Vec::new();
    for _ in 0..INSTANCES {
        servers.push(TestServer::serve(state(limits.clone())).await);
    }
    let unlimited = TestServer::serve(state(RateLimitConfig::off())).await;
    Some((servers, unlimited, clock))
}

async fn wrong_login(s: &TestServer, email: &str) -> Reply {
    s.post(
        "/auth/login",
        None,
        &json!({"email": email, "password": "wrong password"}),
    )
    .await
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status.as_u16()).collect()
}

#[track_caller]
fn assert_refused(r: &Reply) {
    assert_eq!(r.status.as_u16(), 429, "{}", r.body);
    assert_eq!(r.error_code(), "RATE_LIMITED", "{}", r.body);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
}

async fn auth_limits_hold_across_instances(backend: Backend, test: &str) {
    let limits = RateLimitConfig {
        auth_ip: Some(Rate::new(4, 1)),
        auth_user: Some(Rate::new(2, 1)),
        ..RateLimitConfig::off()
    };
    let Some((servers, unlimited, clock)) = instances(backend, test, limits).await else {
        return;
    };
    let baseline = wrong_login(&unlimited, "baseline@example.com").await;
    assert_eq!(baseline.status.as_u16(), 401, "{}", baseline.body);

    // Per IP: twelve logins spread over the four instances. Each instance's own bucket
    // would admit four (sixteen in all); the global budget admits four.
    let mut replies = Vec::new();
    for i in 0..12 {
        let s = &servers[i % INSTANCES];
        replies.push(wrong_login(s, &format!("nobody{i}@example.com")).await);
    }
    assert_eq!(
        statuses(&replies),
        [401, 401, 401, 401, 429, 429, 429, 429, 429, 429, 429, 429]
    );
    for r in &replies[4..] {
        assert_refused(r);
        assert!(
            r.storage_calls() <= 1,
            "a refused request reads the limit item at most: {}",
            r.storage_calls()
        );
    }
    // What the global check costs an admitted login: one read and one write per limit.
    for r in &replies[..4] {
        assert_eq!(
            r.storage_calls(),
            baseline.storage_calls() + 4,
            "an admitted login: two limits x (read + conditional write)"
        );
    }

    // A minute refills one request of the address's budget, for all instances together.
    clock.advance_secs(60);
    let mut replies = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        replies.push(wrong_login(s, &format!("later{i}@example.com")).await);
    }
    assert_eq!(statuses(&replies), [401, 429, 429, 429]);

    // Per account: the address's budget is whole again after an hour; one email, four
    // instances, a budget of two.
    clock.advance_secs(3600);
    let mut replies = Vec::new();
    for s in &servers {
        replies.push(wrong_login(s, "target@example.com").await);
    }
    assert_eq!(statuses(&replies), [401, 401, 429, 429]);
    assert!(
        replies[2].body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("account")
    );
}

/// Sixteen logins at once over the four instances: racing conditional writes never admit
/// more than the budget, and every other request is a clean 429 (no 409, no 5xx).
async fn concurrent_logins_stay_within_the_budget(backend: Backend, test: &str) {
    let limits = RateLimitConfig {
        auth_ip: Some(Rate::new(4, 1)),
        ..RateLimitConfig::off()
    };
    let Some((servers, _unlimited, _clock)) = instances(backend, test, limits).await else {
        return;
    };
    let emails: Vec<String> = (0..16).map(|i| format!("racer{i}@example.com")).collect();
    let replies = futures::future::join_all(
        emails
            .iter()
            .enumerate()
            .map(|(i, email)| wrong_login(&servers[i % INSTANCES], email)),
    )
    .await;
    let admitted = replies.iter().filter(|r| r.status.as_u16() == 401).count();
    assert!(
        (1..=4).contains(&admitted),
        "{admitted} admitted of a budget of 4: {:?}",
        statuses(&replies)
    );
    for r in replies.iter().filter(|r| r.status.as_u16() != 401) {
        assert_refused(r);
    }
}

async fn websocket_connects_hold_across_instances(backend: Backend, test: &str) {
    let limits = RateLimitConfig {
        ws_connect: Some(Rate::new(3, 1)),
        ..RateLimitConfig::off()
    };
    let Some((servers, _unlimited, clock)) = instances(backend, test, limits).await else {
        return;
    };
    let u = user(&servers[0], "connector").await;
    let mut open = Vec::new();
    let mut outcomes = Vec::new();
    for i in 0..8 {
        match WsClient::connect(&servers[i % INSTANCES], u.t()).await {
            Ok(ws) => {
                open.push(ws);
                outcomes.push(101);
            }
            Err(status) => outcomes.push(status),
        }
    }
    assert_eq!(outcomes, [101, 101, 101, 429, 429, 429, 429, 429]);
    // The refused handshakes recorded nothing; the open sockets work.
    let r = open[0].request("ping", json!({})).await;
    assert_eq!(r["type"], "pong", "{r}");
    clock.advance_secs(60);
    let mut outcomes = Vec::new();
    for s in &servers {
        outcomes.push(match WsClient::connect(s, u.t()).await {
            Ok(ws) => {
                open.push(ws);
                101
            }
            Err(status) => status,
        });
    }
    assert_eq!(outcomes, [101, 429, 429, 429]);
}

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auth_limits_hold_across_four_instances() {
        auth_limits_hold_across_instances(Backend::Embedded, "global_auth::embedded").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_connects_hold_across_four_instances() {
        websocket_connects_hold_across_instances(Backend::Embedded, "global_ws::embedded").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_stay_within_the_budget() {
        super::concurrent_logins_stay_within_the_budget(Backend::Embedded, "global_race::embedded")
            .await;
    }
}

mod dynamodb {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auth_limits_hold_across_four_instances() {
        auth_limits_hold_across_instances(Backend::DynamoDb, "global_auth::dynamodb").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_connects_hold_across_four_instances() {
        websocket_connects_hold_across_instances(Backend::DynamoDb, "global_ws::dynamodb").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_stay_within_the_budget() {
        super::concurrent_logins_stay_within_the_budget(Backend::DynamoDb, "global_race::dynamodb")
            .await;
    }
}
