//! Mobile push (issue 14): devices (`/auth/devices`), the local push log (`GET
//! /dev/push-log`), the foreground skip (`presence`), and the SNS path against moto. Every
//! case runs on the embedded store and on DynamoDB (moto).
//!
//! The inbox that decides what to push is another part of the issue: these tests hand the
//! outlet a `PushMessage` through the server's `AppState::push`, as the inbox does.

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::areas::push::{PushMessage, PushOutcome, SnsPlatforms, SnsPush};
use momentum_tests::{Backend, PASSWORD, TestServer, User, WsClient, backend_store, user};
use serde_json::{Value, json};

fn device(platform: &str, token: &str) -> Value {
    json!({"platform": platform, "token": token, "app_id": "com.example.momentum"})
}

fn unique_token() -> String {
    format!("tok{}", uuid::Uuid::new_v4().simple())
}

async fn register(s: &TestServer, who: &User, platform: &str, token: &str) -> Value {
    s.post("/auth/devices", who.t(), &device(platform, token))
        .await
        .expect(201)
        .data()
        .clone()
}

async fn devices(s: &TestServer, token: Option<&str>) -> Vec<Value> {
    s.get("/auth/devices", token)
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

fn message(who: &User, id: &str, badge: u64) -> PushMessage {
    PushMessage {
        user_id: who.id.clone(),
        workspace_id: "ws-1".into(),
        notification_id: id.into(),
        title: "Ana assigned you MOM-12".into(),
        body: "Fix the login page".into(),
        badge,
        data: json!({"type": "issue_assigned", "issue_id": "i-12"}),
    }
}

async fn push(s: &TestServer, m: PushMessage) -> PushOutcome {
    s.state.push.push(m).await.expect("push")
}

async fn push_log(s: &TestServer, who: &User) -> Vec<Value> {
    s.get("/dev/push-log", who.t())
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

async fn register_list_and_delete(s: TestServer) {
    let ana = user(&s, "ana").await;
    let bob = user(&s, "bob").await;
    let d = register(&s, &ana, "apns", "a1b2c3d4e5f60718").await;
    assert_eq!(d["platform"], "apns");
    assert_eq!(d["app_id"], "com.example.momentum");
    assert_eq!(
        d["token_suffix"], "e5f60718",
        "the token is shown by its end only"
    );
    assert_eq!(d["this_session"], true);
    let fcm = register(&s, &ana, "fcm", &unique_token()).await;
    let listed = devices(&s, ana.t()).await;
    assert_eq!(
        listed.iter().map(momentum_tests::id).collect::<Vec<_>>(),
        vec![momentum_tests::id(&d), momentum_tests::id(&fcm)]
    );
    assert!(
        devices(&s, bob.t()).await.is_empty(),
        "devices are per user"
    );

    // Another user cannot see or delete them.
    let path = format!("/auth/devices/{}", momentum_tests::id(&d));
    s.delete(&path, bob.t()).await.expect(404);
    s.delete(&path, ana.t()).await.expect(200);
    s.delete(&path, ana.t()).await.expect(404);
    assert_eq!(devices(&s, ana.t()).await, vec![fcm]);
    s.delete("/auth/devices/not-an-id", ana.t())
        .await
        .expect(404);
}

async fn bad_input_names_the_field(s: TestServer) {
    let ana = user(&s, "ana").await;
    for (body, field) in [
        (device("sms", "abc"), "platform"),
        (device("apns", ""), "token"),
        (device("apns", "has space"), "token"),
        (device("apns", &"a".repeat(4097)), "token"),
        (
            json!({"platform": "apns", "token": "abc", "app_id": ""}),
            "app_id",
        ),
        (
            json!({"platform": "apns", "token": "abc", "app_id": "a/b"}),
            "app_id",
        ),
        (json!({"platform": "apns", "token": "abc"}), "app_id"),
        (
            json!({"platform": "apns", "token": "abc", "app_id": "x", "user_id": "u"}),
            "user_id",
        ),
    ] {
        let r = s.post("/auth/devices", ana.t(), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    // The longest token is accepted.
    register(&s, &ana, "fcm", &"a".repeat(4096)).await;
    assert_eq!(devices(&s, ana.t()).await.len(), 1);
    // An API token is refused like on every account route.
    let created = s
        .post(
            "/auth/tokens",
            ana.t(),
            &json!({"name": "ci", "scopes": ["read", "write"]}),
        )
        .await
        .expect(201);
    let api = created.data()["token"].as_str().unwrap().to_owned();
    s.post("/auth/devices", Some(&api), &device("apns", "abc"))
        .await
        .expect(403);
    s.get("/auth/devices", Some(&api)).await.expect(403);
}

async fn a_token_moves_to_the_user_who_registers_it(s: TestServer) {
    let ana = user(&s, "ana").await;
    let bob = user(&s, "bob").await;
    let token = unique_token();
    register(&s, &ana, "apns", &token).await;
    // The same phone, now signed in as Bob: the token is his alone.
    let moved = register(&s, &bob, "apns", &token).await;
    assert!(devices(&s, ana.t()).await.is_empty());
    assert_eq!(devices(&s, bob.t()).await, vec![moved.clone()]);
    // Registering it again (an app reinstall) keeps one device, not two.
    let again = register(&s, &bob, "apns", &token).await;
    assert_ne!(momentum_tests::id(&again), momentum_tests::id(&moved));
    assert_eq!(devices(&s, bob.t()).await, vec![again]);
    // The same token string on the other platform is another device.
    register(&s, &bob, "fcm", &token).await;
    assert_eq!(devices(&s, bob.t()).await.len(), 2);
    // Only Bob is pushed to.
    let outcome = push(&s, message(&ana, "n-ana", 1)).await;
    assert_eq!(outcome.accepted, 0);
    assert_eq!(push(&s, message(&bob, "n-bob", 1)).await.accepted, 2);
}

async fn logout_removes_the_devices_of_that_session(s: TestServer) {
    let ana = user(&s, "ana").await;
    let second = s
        .post(
            "/auth/login",
            None,
            &json!({"email": ana.email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    let tablet = second.data()["access_token"].as_str().unwrap().to_owned();
    register(&s, &ana, "apns", &unique_token()).await;
    let kept = s
        .post(
            "/auth/devices",
            Some(&tablet),
            &device("fcm", &unique_token()),
        )
        .await
        .expect(201)
        .data()
        .clone();
    assert_eq!(devices(&s, Some(&tablet)).await.len(), 2);
    s.post("/auth/logout", ana.t(), &json!({}))
        .await
        .expect(200);
    assert_eq!(devices(&s, Some(&tablet)).await, vec![kept]);
    assert_eq!(push(&s, message(&ana, "n1", 1)).await.accepted, 1);
}

async fn pushes_are_recorded_in_the_local_log(s: TestServer) {
    let ana = user(&s, "ana").await;
    let bob = user(&s, "bob").await;
    let phone = register(&s, &ana, "apns", &unique_token()).await;
    let android = register(&s, &ana, "fcm", &unique_token()).await;
    let mut long = message(&ana, "n-1", 3);
    long.body = "é".repeat(5000);
    let outcome = push(&s, long).await;
    assert_eq!(
        outcome,
        PushOutcome {
            accepted: 2,
            skipped_foreground: false,
            removed: 0
        }
    );
    let log = push_log(&s, &ana).await;
    assert_eq!(log.len(), 2);
    let apns = log
        .iter()
        .find(|r| r["device_id"] == phone["id"])
        .expect("the iPhone's push");
    assert_eq!(apns["platform"], "apns");
    assert_eq!(apns["notification_id"], "n-1");
    assert_eq!(apns["payload"]["aps"]["badge"], 3);
    assert_eq!(
        apns["payload"]["aps"]["alert"]["title"],
        "Ana assigned you MOM-12"
    );
    assert_eq!(apns["payload"]["data"]["issue_id"], "i-12");
    let fcm = log
        .iter()
        .find(|r| r["device_id"] == android["id"])
        .expect("the Android push");
    let msg = &fcm["payload"]["fcmV1Message"]["message"];
    assert_eq!(msg["data"]["badge"], "3");
    // Both payloads were cut to what the providers accept.
    for r in &log {
        assert!(r["payload"].to_string().len() <= 4096, "{}", r["payload"]);
    }
    assert!(
        push_log(&s, &bob).await.is_empty(),
        "each user sees their own"
    );
    s.get("/dev/push-log", None).await.expect(401);
}

async fn a_foreground_socket_suppresses_push(s: TestServer) {
    let ana = user(&s, "ana").await;
    register(&s, &ana, "apns", &unique_token()).await;
    let mut ws = WsClient::connect(&s, ana.t()).await.expect("connect");
    // Connected but never said it is in the foreground (an app in the background).
    assert_eq!(push(&s, message(&ana, "n-1", 1)).await.accepted, 1);
    let r = ws.request("presence", json!({"state": "foreground"})).await;
    assert_eq!(r["data"]["foreground"], true, "{r}");
    let skipped = push(&s, message(&ana, "n-2", 2)).await;
    assert!(skipped.skipped_foreground);
    assert_eq!(skipped.accepted, 0);
    let r = ws.request("presence", json!({"state": "background"})).await;
    assert_eq!(r["data"]["foreground"], false, "{r}");
    assert_eq!(push(&s, message(&ana, "n-3", 3)).await.accepted, 1);
    let ids: Vec<Value> = push_log(&s, &ana)
        .await
        .iter()
        .map(|r| r["notification_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("n-1"), json!("n-3")]);
    let r = ws.request("presence", json!({"state": "asleep"})).await;
    assert_eq!(r["error"]["code"], "VALIDATION_ERROR", "{r}");
    // A foreground socket whose session ended does not count.
    ws.request("presence", json!({"state": "foreground"})).await;
    s.post("/auth/logout", ana.t(), &json!({}))
        .await
        .expect(200);
    let after = push(&s, message(&ana, "n-4", 4)).await;
    assert!(!after.skipped_foreground);
}

/// The whole path: an assignment committed through REST becomes a notification for the
/// assignee, pushed to the assignee's device with the unread count as the badge; the actor's
/// own device gets nothing.
async fn an_assignment_is_pushed_to_the_assignees_device(s: TestServer) {
    let w = momentum_tests::world(&s).await;
    let phone = register(&s, &w.member, "apns", &unique_token()).await;
    register(&s, &w.admin, "fcm", &unique_token()).await;
    let issue = s
        .post(
            "/issues",
            w.admin.t(),
            &json!({"team_id": w.team_id, "title": "Fix the login", "assignee_id": w.member.id}),
        )
        .await
        .expect(201)
        .data()["id"]
        .clone();
    let mut log = Vec::new();
    for _ in 0..400 {
        log = push_log(&s, &w.member).await;
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(log.len(), 1, "one push for the assignment: {log:?}");
    let pushed = &log[0];
    assert_eq!(pushed["device_id"], phone["id"]);
    assert_eq!(pushed["payload"]["aps"]["badge"], 1, "{pushed}");
    let inbox = s.get("/notifications", w.member.t()).await.expect(200);
    let notification = &inbox.data()["items"][0];
    assert_eq!(pushed["notification_id"], notification["id"], "{inbox:?}");
    assert_eq!(notification["subject_id"], issue, "{inbox:?}");
    assert!(
        push_log(&s, &w.admin).await.is_empty(),
        "the actor is not pushed for their own change"
    );
}

momentum_tests::on_every_store!(
    an_assignment_is_pushed_to_the_assignees_device,
    register_list_and_delete,
    bad_input_names_the_field,
    a_token_moves_to_the_user_who_registers_it,
    logout_removes_the_devices_of_that_session,
    pushes_are_recorded_in_the_local_log,
    a_foreground_socket_suppresses_push,
);

/// The SNS path on moto: the platform applications the template's parameters would name,
/// and a server whose push provider is `SnsPush` on them.
struct Sns {
    client: aws_sdk_sns::Client,
    endpoint: String,
    apns_app: String,
}

impl Sns {
    async fn start(backend: Backend, test: &str) -> Option<(TestServer, Sns)> {
        // moto's SNS (skips like every moto test).
        let endpoint = momentum_tests::sns_endpoint(test)?;
        let (mut config, store) = backend_store(backend, test).await?;
        config.push = momentum_shared::config::PushConfig::Sns {
            platforms: SnsPlatforms::default(),
            endpoint: Some(endpoint.clone()),
            region: Some("us-east-1".into()),
        };
        let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
            region: Some("us-east-1".into()),
            // Generous: reading what moto recorded (`/moto-api/data.json`) dumps the state
            // of every service of that moto while it holds every other request (when the
            // SNS moto is the DynamoDB one, every suite's tables too).
            attempt_timeout: std::time::Duration::from_secs(120),
            local_credentials: true,
        })
        .await;
        let client = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(&sdk)
                .endpoint_url(&endpoint)
                .build(),
        );
        let name = format!(
            "momentum-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let app = |platform: &'static str| {
            client
                .create_platform_application()
                .name(name.clone())
                .platform(platform)
                .attributes("PlatformCredential", "test-credential")
                .send()
        };
        let apns_app = app("APNS")
            .await
            .expect("APNS app")
            .platform_application_arn;
        let fcm_app = app("GCM").await.expect("GCM app").platform_application_arn;
        let platforms = SnsPlatforms {
            apns_arn: apns_app.clone(),
            fcm_arn: fcm_app,
            apns_sandbox: false,
        };
        let state =
            AppState::with_store(config, store, Arc::new(momentum_shared::clock::SystemClock))
                .with_push_provider(Arc::new(SnsPush::with_client(client.clone(), platforms)));
        let server = TestServer::serve(state).await;
        Some((
            server,
            Sns {
                client,
                endpoint,
                apns_app: apns_app.expect("an APNS application ARN"),
            },
        ))
    }

    /// The endpoint moto holds for `token` on the APNs application: (ARN, enabled).
    async fn endpoint_of(&self, token: &str) -> Option<String> {
        let listed = self
            .client
            .list_endpoints_by_platform_application()
            .platform_application_arn(&self.apns_app)
            .send()
            .await
            .expect("list endpoints");
        listed
            .endpoints()
            .iter()
            .find(|e| {
                e.attributes()
                    .and_then(|a| a.get("Token"))
                    .is_some_and(|t| t == token)
            })
            .and_then(|e| e.endpoint_arn().map(str::to_owned))
    }

    /// The messages moto recorded as published to `endpoint_arn` (its model data: SNS has
    /// no API that reads what was sent to a device).
    async fn messages_to(&self, endpoint_arn: &str) -> Vec<Value> {
        let data: Value = reqwest::get(format!("{}/moto-api/data.json", self.endpoint))
            .await
            .expect("moto data")
            .json()
            .await
            .expect("moto data JSON");
        data["sns"]["PlatformEndpoint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["arn"] == endpoint_arn)
            .flat_map(|e| {
                e["messages"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .into_values()
            })
            .map(|m| serde_json::from_str(m.as_str().unwrap()).expect("a JSON message"))
            .collect()
    }
}

async fn sns_publishes_to_the_device_endpoint(backend: Backend, test: &str) {
    let Some((s, sns)) = Sns::start(backend, test).await else {
        return;
    };
    let ana = user(&s, "ana").await;
    let bob = user(&s, "bob").await;
    let token = unique_token();
    register(&s, &ana, "apns", &token).await;
    let bobs_token = unique_token();
    register(&s, &bob, "apns", &bobs_token).await;
    let arn = sns
        .endpoint_of(&token)
        .await
        .expect("an endpoint created at registration");
    let bobs_arn = sns.endpoint_of(&bobs_token).await.expect("Bob's endpoint");

    let outcome = push(&s, message(&ana, "n-sns", 5)).await;
    assert_eq!(outcome.accepted, 1, "{outcome:?}");
    let sent = sns.messages_to(&arn).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["default"], "Ana assigned you MOM-12");
    let apns: Value = serde_json::from_str(sent[0]["APNS"].as_str().unwrap()).unwrap();
    assert_eq!(apns["aps"]["badge"], 5);
    assert_eq!(apns["notification_id"], "n-sns");
    assert!(
        sns.messages_to(&bobs_arn).await.is_empty(),
        "only Ana's endpoint"
    );

    // Deleting the device deletes its endpoint.
    let bobs = devices(&s, bob.t()).await;
    s.delete(
        &format!("/auth/devices/{}", momentum_tests::id(&bobs[0])),
        bob.t(),
    )
    .await
    .expect(200);
    assert_eq!(sns.endpoint_of(&bobs_token).await, None);
}

async fn sns_removes_a_disabled_endpoint(backend: Backend, test: &str) {
    let Some((s, sns)) = Sns::start(backend, test).await else {
        return;
    };
    let ana = user(&s, "ana").await;
    let stale = unique_token();
    register(&s, &ana, "apns", &stale).await;
    let live = register(&s, &ana, "fcm", &unique_token()).await;
    let arn = sns.endpoint_of(&stale).await.expect("endpoint");
    // What SNS does when APNs answers "Unregistered" for the token.
    sns.client
        .set_endpoint_attributes()
        .endpoint_arn(&arn)
        .attributes("Enabled", "false")
        .send()
        .await
        .expect("disable the endpoint");
    let outcome = push(&s, message(&ana, "n-1", 1)).await;
    assert_eq!(
        outcome,
        PushOutcome {
            accepted: 1,
            skipped_foreground: false,
            removed: 1
        }
    );
    assert_eq!(devices(&s, ana.t()).await, vec![live]);
    assert_eq!(
        sns.endpoint_of(&stale).await,
        None,
        "the endpoint is deleted"
    );
    // The next push goes to the live device only, with nothing left to remove.
    let next = push(&s, message(&ana, "n-2", 2)).await;
    assert_eq!((next.accepted, next.removed), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publishes_to_the_device_endpoint_embedded() {
    sns_publishes_to_the_device_endpoint(Backend::Embedded, "sns_publishes_embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publishes_to_the_device_endpoint_dynamodb() {
    sns_publishes_to_the_device_endpoint(Backend::DynamoDb, "sns_publishes_dynamodb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_removes_a_disabled_endpoint_embedded() {
    sns_removes_a_disabled_endpoint(Backend::Embedded, "sns_removes_embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_removes_a_disabled_endpoint_dynamodb() {
    sns_removes_a_disabled_endpoint(Backend::DynamoDb, "sns_removes_dynamodb").await;
}
