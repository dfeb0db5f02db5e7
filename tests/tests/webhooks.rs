//! Black-box tests of outgoing webhooks through the shim, on the embedded store and on
//! DynamoDB (moto): a plain-HTTP receiver on 127.0.0.1 (the test configuration sets
//! `MOMENTUM_WEBHOOKS_ALLOW_PRIVATE`) checks every signature as a receiver would; time moves
//! through the server's `ManualClock`, so retries are seen without waiting for them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use momentum_shared::AppState;
use momentum_shared::clock::ManualClock;
use momentum_tests::{Backend, PASSWORD, TestServer, User, World, backend_store, world};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Whether `Momentum-Signature` carries a valid `v1=` for `secret`: HMAC-SHA256 over
    /// `{Momentum-Timestamp}.{body}`, computed here as a receiver does.
    fn signed_by(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.header("momentum-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.header("momentum-signature")
            .split(',')
            .any(|part| part.strip_prefix("v1=") == Some(expected.as_str()))
    }
}

/// A tiny HTTP server on 127.0.0.1 that records requests and answers with scripted
/// statuses (then `fallback`).
#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    fallback: Arc<Mutex<u16>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver {
            url: format!("{base}/hook"),
            hits: Default::default(),
            script: Default::default(),
            fallback: Arc::new(Mutex::new(200)),
            arrived: Arc::new(Notify::new()),
        };
        let state = r.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let r = state.clone();
            async move {
                let status = r
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(*r.fallback.lock().unwrap());
                r.hits.lock().unwrap().push(Hit {
                    path: uri.path().to_owned(),
                    headers,
                    body,
                });
                r.arrived.notify_waiters();
                let status = StatusCode::from_u16(status).unwrap();
                let mut response = status.into_response();
                if status.is_redirection() {
                    // Somewhere a follower would go next: this receiver, another path.
                    let to = format!("{base}/followed");
                    response
                        .headers_mut()
                        .insert("location", to.parse().unwrap());
                }
                response
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn answer(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }

    fn always(&self, status: u16) {
        *self.fallback.lock().unwrap() = status;
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                let hits = self.hits();
                if hits.len() >= n {
                    return hits;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("expected {n} requests, got {:?}", self.hits().len()))
    }
}

/// Creates a webhook as `by`; returns (id, secret).
async fn create(s: &TestServer, by: &User, ws: &str, url: &str, extra: Value) -> (String, String) {
    let mut body = json!({"workspace_id": ws, "url": url});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = s.post("/webhooks", by.t(), &body).await.expect(201);
    let secret = r.data()["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (r.data()["id"].as_str().unwrap().to_owned(), secret)
}

async fn new_issue(s: &TestServer, w: &World, title: &str) -> String {
    let r = s
        .post(
            "/issues",
            w.member.t(),
            &json!({"team_id": w.team_id, "title": title}),
        )
        .await
        .expect(201);
    r.data()["id"].as_str().unwrap().to_owned()
}

async fn deliveries(s: &TestServer, w: &World, webhook: &str) -> Vec<Value> {
    let r = s
        .get(&format!("/webhooks/{webhook}/deliveries"), w.admin.t())
        .await
        .expect(200);
    r.data()["items"].as_array().unwrap().clone()
}

/// Waits until the webhook's delivery `i` satisfies `done` (as the dispatcher records it
/// after the receiver answered).
async fn delivery_where(
    s: &TestServer,
    w: &World,
    webhook: &str,
    i: usize,
    done: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(d) = deliveries(s, w, webhook).await.get(i)
                && done(d)
            {
                return d.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("delivery {i} of {webhook} never got there"))
}

/// Waits until the webhook satisfies `done`.
async fn webhook_where(
    s: &TestServer,
    w: &World,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let hook = webhook(s, w, id).await;
            if done(&hook) {
                return hook;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("webhook {id} never got there"))
}

async fn webhook(s: &TestServer, w: &World, id: &str) -> Value {
    s.get(&format!("/webhooks/{id}"), w.admin.t())
        .await
        .expect(200)
        .data()
        .clone()
}

/// Moves the server's clock, then signs the users in again (access tokens last 15 minutes).
async fn advance(s: &TestServer, clock: &ManualClock, w: &mut World, secs: i64) {
    clock.advance_secs(secs);
    for u in [&mut w.owner, &mut w.admin, &mut w.member] {
        let r = s
            .post(
                "/auth/login",
                None,
                &json!({"email": u.email, "password": PASSWORD}),
            )
            .await
            .expect(200);
        u.token = r.data()["access_token"].as_str().unwrap().to_owned();
    }
}

async fn signed_deliveries_retry_in_order_and_redeliver(s: TestServer, clock: ManualClock) {
    let mut w = world(&s).await;
    let rx = Receiver::start().await;
    let (id, secret) = create(
        &s,
        &w.admin,
        &w.ws,
        &rx.url,
        json!({"event_types": ["issue.*"]}),
    )
    .await;
    // The secret is never shown again.
    assert!(webhook(&s, &w, &id).await.get("secret").is_none());

    rx.answer(&[500, 500]);
    let first = new_issue(&s, &w, "first").await;
    let hits = rx.wait_for(1).await;
    let body = hits[0].json();
    assert!(hits[0].signed_by(&secret), "signature");
    assert_eq!(body["event"], "issue.created");
    assert_eq!(body["entity_type"], "issue");
    assert_eq!(body["entity_id"], json!(first));
    assert_eq!(body["webhook_id"], json!(id));
    assert_eq!(body["actor_id"], json!(w.member.id));
    assert_eq!(body["data"]["title"], "first");
    let delivery_id = body["delivery_id"].as_str().unwrap().to_owned();
    assert_eq!(hits[0].header("momentum-delivery-id"), delivery_id);
    let seq = body["seq"].as_i64().unwrap();
    assert!(seq > 0);

    // A later record waits behind the failing one (strict per-webhook order).
    let second = new_issue(&s, &w, "second").await;
    delivery_where(&s, &w, &id, 0, |d| {
        d["attempts"] == 1 && d["response_code"] == 500
    })
    .await;

    // 1 minute later: the first retry (fails again); 5 minutes after it: the second.
    advance(&s, &clock, &mut w, 60).await;
    let hits = rx.wait_for(2).await;
    assert_eq!(hits[1].json()["delivery_id"], json!(delivery_id));
    assert!(hits[1].signed_by(&secret));
    delivery_where(&s, &w, &id, 0, |d| d["attempts"] == 2).await;
    advance(&s, &clock, &mut w, 300).await;
    let hits = rx.wait_for(4).await;
    assert_eq!(hits[2].json()["delivery_id"], json!(delivery_id));
    assert_eq!(
        hits[3].json()["entity_id"],
        json!(second),
        "then the next one"
    );
    assert!(hits[3].json()["seq"].as_i64().unwrap() > seq);
    assert!(hits.iter().all(|h| h.signed_by(&secret)));
    let d = delivery_where(&s, &w, &id, 0, |d| d["status"] == "succeeded").await;
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["response_code"], 200);
    assert!(d["latency_ms"].is_u64());

    // Redelivery: the same record and delivery id, signed again.
    let r = s
        .post(
            &format!("/webhooks/{id}/deliveries/{delivery_id}/redeliver"),
            w.admin.t(),
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["attempts"], 4);
    assert_eq!(r.data()["status"], "succeeded");
    let hits = rx.wait_for(5).await;
    assert_eq!(hits[4].json()["delivery_id"], json!(delivery_id));
    assert_eq!(hits[4].json()["entity_id"], json!(first));
    assert!(hits[4].signed_by(&secret));

    // Rotation: a new secret; during the grace period both sign.
    let r = s
        .post(
            &format!("/webhooks/{id}/rotate-secret"),
            w.admin.t(),
            &json!({}),
        )
        .await
        .expect(200);
    let rotated = r.data()["secret"].as_str().unwrap().to_owned();
    assert_ne!(rotated, secret);
    s.post(&format!("/webhooks/{id}/test"), w.admin.t(), &json!({}))
        .await
        .expect(200);
    let hits = rx.wait_for(6).await;
    assert_eq!(hits[5].json()["event"], "webhook.test");
    assert!(hits[5].signed_by(&rotated) && hits[5].signed_by(&secret));
    // After the grace period (a day), only the new one.
    advance(&s, &clock, &mut w, 24 * 3600 + 1).await;
    s.post(&format!("/webhooks/{id}/test"), w.admin.t(), &json!({}))
        .await
        .expect(200);
    let hits = rx.wait_for(7).await;
    assert!(hits[6].signed_by(&rotated) && !hits[6].signed_by(&secret));
    // Nothing of the secret in the change feed.
    let feed = w.changes_since(&s, 0).await;
    let text = serde_json::to_string(&feed).unwrap();
    assert!(text.contains("webhook.created"));
    assert!(!text.contains(&secret) && !text.contains(&rotated) && !text.contains("whsec_"));
}

async fn failing_webhooks_are_disabled(s: TestServer, clock: ManualClock) {
    let mut w = world(&s).await;
    let rx = Receiver::start().await;
    rx.always(500);
    let (id, secret) = create(&s, &w.admin, &w.ws, &rx.url, json!({})).await;
    new_issue(&s, &w, "never delivered").await;
    // The schedule: now, then 1 min, 5 min, 30 min, 2 h, 6 h, 24 h later.
    let waits = [60, 300, 1800, 7200, 21_600, 86_400];
    rx.wait_for(1).await;
    for (i, wait) in waits.iter().enumerate() {
        delivery_where(&s, &w, &id, 0, |d| d["attempts"] == i as u64 + 1).await;
        assert_eq!(
            webhook(&s, &w, &id).await["enabled"],
            true,
            "after {} attempts",
            i + 1
        );
        advance(&s, &clock, &mut w, *wait).await;
        rx.wait_for(i + 2).await;
    }
    let d = delivery_where(&s, &w, &id, 0, |d| d["status"] == "failed").await;
    assert_eq!(d["attempts"], 7);
    assert!(rx.hits().iter().all(|h| h.signed_by(&secret)));
    // Seven failures over more than a day (>= 5 over >= 24 h): disabled, with a reason and a
    // change record saying so.
    let hook = webhook_where(&s, &w, &id, |h| h["enabled"] == false).await;
    let reason = hook["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("consecutive failed deliveries"), "{reason}");
    let feed = w.changes_since(&s, 0).await;
    assert!(feed.iter().any(|c| c["event"] == "webhook.updated"
        && c["entity_id"] == json!(id)
        && c["data"]["disabled_reason"] == json!(reason)));

    // 410 Gone disables at once.
    let gone = Receiver::start().await;
    gone.always(410);
    let (gone_id, _) = create(&s, &w.admin, &w.ws, &gone.url, json!({})).await;
    new_issue(&s, &w, "gone").await;
    gone.wait_for(1).await;
    let d = delivery_where(&s, &w, &gone_id, 0, |d| d["status"] == "failed").await;
    assert_eq!(d["response_code"], 410);
    let hook = webhook_where(&s, &w, &gone_id, |h| h["enabled"] == false).await;
    assert!(hook["disabled_reason"].as_str().unwrap().contains("410"));

    // Re-enabled, it delivers again.
    rx.always(200);
    s.put(
        &format!("/webhooks/{id}"),
        w.admin.t(),
        &json!({"enabled": true}),
    )
    .await
    .expect(200);
    let before = rx.hits().len();
    let again = new_issue(&s, &w, "after re-enabling").await;
    let hits = rx.wait_for(before + 1).await;
    assert_eq!(hits[before].json()["entity_id"], json!(again));
}

async fn guest_audience_gets_no_manage_only_records(s: TestServer) {
    let w = world(&s).await;
    let rx = Receiver::start().await;
    let (id, secret) = create(&s, &w.admin, &w.ws, &rx.url, json!({"audience": "guest"})).await;
    // Manage-only records: an invitation, an invite code, another webhook.
    s.post(
        "/invitations",
        w.admin.t(),
        &json!({"workspace_id": w.ws, "email": "someone@example.com", "role": "member"}),
    )
    .await
    .expect(201);
    s.post(
        &format!("/workspaces/{}/invite-codes", w.ws),
        w.admin.t(),
        &json!({"role": "member"}),
    )
    .await
    .expect(201);
    create(
        &s,
        &w.admin,
        &w.ws,
        "http://127.0.0.1:9/",
        json!({"enabled": false}),
    )
    .await;
    // Then one that every role sees. Deliveries go in seq order, so had any of the above
    // been delivered, it would have arrived first.
    let issue = new_issue(&s, &w, "for everyone").await;
    let hits = rx.wait_for(1).await;
    assert_eq!(hits[0].json()["entity_id"], json!(issue));
    assert!(hits[0].signed_by(&secret));
    let delivered = deliveries(&s, &w, &id).await;
    for d in &delivered {
        let event = d["event"].as_str().unwrap();
        assert!(
            !["invitation.", "invite_code.", "webhook."]
                .iter()
                .any(|p| event.starts_with(p)),
            "{event} reached a guest-audience webhook"
        );
    }

    // An admin-audience webhook does get them (the filter is the audience, not the type).
    let admin_rx = Receiver::start().await;
    create(
        &s,
        &w.admin,
        &w.ws,
        &admin_rx.url,
        json!({"audience": "admin", "event_types": ["invitation.*"]}),
    )
    .await;
    s.post(
        "/invitations",
        w.admin.t(),
        &json!({"workspace_id": w.ws, "email": "other@example.com", "role": "member"}),
    )
    .await
    .expect(201);
    let hits = admin_rx.wait_for(1).await;
    assert_eq!(hits[0].json()["event"], "invitation.created");

    // No audience above the creator's role.
    let r = s
        .post(
            "/webhooks",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "url": rx.url, "audience": "owner"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 403);
}

async fn management_is_for_admins(s: TestServer) {
    let w = world(&s).await;
    let (id, _) = create(
        &s,
        &w.admin,
        &w.ws,
        "http://127.0.0.1:9/",
        json!({"enabled": false}),
    )
    .await;
    let body = json!({"workspace_id": w.ws, "url": "http://127.0.0.1:9/"});
    for (who, status) in [(&w.member, 403), (&w.guest, 403), (&w.outsider, 404)] {
        assert_eq!(
            s.post("/webhooks", who.t(), &body).await.status.as_u16(),
            status
        );
        for path in [
            format!("/webhooks/{id}"),
            format!("/webhooks/{id}/deliveries"),
            format!("/webhooks?workspace_id={}", w.ws),
        ] {
            assert_eq!(
                s.get(&path, who.t()).await.status.as_u16(),
                status,
                "{path}"
            );
        }
        let r = s
            .post(
                &format!("/webhooks/{id}/rotate-secret"),
                who.t(),
                &json!({}),
            )
            .await;
        assert_eq!(r.status.as_u16(), status);
    }
    let listed = s
        .get(&format!("/webhooks?workspace_id={}", w.ws), w.owner.t())
        .await
        .expect(200);
    assert_eq!(listed.data()["items"][0]["id"], json!(id));
    assert!(listed.data()["items"][0].get("secret").is_none());
    // Input errors name their field.
    for (bad, field) in [
        (
            json!({"workspace_id": w.ws, "url": "ftp://x.example/"}),
            "url",
        ),
        (
            json!({"workspace_id": w.ws, "url": "http://127.0.0.1:9/", "event_types": ["issue"]}),
            "event_types",
        ),
        (
            json!({"workspace_id": w.ws, "url": "http://127.0.0.1:9/", "team_id": w.other_team_id}),
            "team_id",
        ),
        (
            json!({"workspace_id": w.ws, "url": "http://127.0.0.1:9/", "secret": "mine"}),
            "secret",
        ),
    ] {
        let r = s.post("/webhooks", w.admin.t(), &bad).await;
        assert_eq!(r.error_field(), Some(field), "{bad}: {:?}", r.body);
        assert!(matches!(r.status.as_u16(), 400 | 404), "{bad}");
    }
    s.delete(&format!("/webhooks/{id}"), w.admin.t())
        .await
        .expect(200);
    s.get(&format!("/webhooks/{id}"), w.admin.t())
        .await
        .expect(404);
}

/// Redirects are not followed: a 3xx is a failed attempt, and the place it points to is
/// never requested.
async fn redirects_are_not_followed(s: TestServer) {
    let w = world(&s).await;
    let rx = Receiver::start().await;
    rx.answer(&[302]);
    let (id, _) = create(&s, &w.admin, &w.ws, &rx.url, json!({})).await;
    new_issue(&s, &w, "redirected").await;
    let d = delivery_where(&s, &w, &id, 0, |d| d["attempts"] == 1).await;
    assert_eq!(d["response_code"], 302);
    assert_eq!(d["status"], "pending", "retried later");
    // The attempt is over (its outcome is recorded): a follower would have asked already.
    assert!(
        rx.hits().iter().all(|h| h.path == "/hook"),
        "{:?}",
        rx.hits()
    );
}

mod clocked {
    use super::*;
    momentum_tests::on_every_store_with_clock!(
        signed_deliveries_retry_in_order_and_redeliver,
        failing_webhooks_are_disabled,
    );
}

momentum_tests::on_every_store!(
    guest_audience_gets_no_manage_only_records,
    management_is_for_admins,
    redirects_are_not_followed,
);

/// In production configuration (https only, public addresses only), every non-public
/// target is refused at creation: the SSRF table.
async fn production_refuses_non_public_targets(backend: Backend) {
    let Some((mut config, store)) =
        backend_store(backend, "production_refuses_non_public_targets").await
    else {
        return;
    };
    config.webhooks = momentum_shared::config::WebhookConfig::production(Some(vec![7; 32]));
    let s = TestServer::serve(AppState::with_store(
        config,
        store,
        Arc::new(momentum_shared::clock::SystemClock),
    ))
    .await;
    let w = world(&s).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://127.1.2.3/hook",
        "https://10.0.0.1/hook",
        "https://172.16.0.1/hook",
        "https://172.31.255.255/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[fc00::1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "http://hooks.example.com/hook",
    ] {
        let r = s
            .post(
                "/webhooks",
                w.admin.t(),
                &json!({"workspace_id": w.ws, "url": url}),
            )
            .await;
        assert!(
            matches!(r.status.as_u16(), 400 | 422),
            "{url}: {} {:?}",
            r.status,
            r.body
        );
        assert_eq!(r.error_field(), Some("url"), "{url}");
    }
    let listed = s
        .get(&format!("/webhooks?workspace_id={}", w.ws), w.admin.t())
        .await
        .expect(200);
    assert_eq!(listed.data()["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_non_public_targets_embedded() {
    production_refuses_non_public_targets(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_non_public_targets_dynamodb() {
    production_refuses_non_public_targets(Backend::DynamoDb).await;
}
