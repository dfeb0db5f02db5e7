//! Real API Gateway WebSocket events ($connect, $default, $disconnect) and a DynamoDB Stream
//! event fed into the Lambda entry points, with a gateway that records what was posted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::realtime::broadcaster::{ConnectionGateway, GatewayError};
use momentum_shared::storage::embedded::EmbeddedStore;
use realtime::Realtime;
use serde_json::{Value, json};

mod common;

/// Records posts; connections listed in `gone` answer 410.
#[derive(Default)]
struct RecordingGateway {
    posts: Mutex<Vec<(String, Value)>>,
    gone: Mutex<Vec<String>>,
    closed: Mutex<Vec<String>>,
}

#[async_trait]
impl ConnectionGateway for RecordingGateway {
    async fn post(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        if self.gone.lock().unwrap().iter().any(|g| g == id) {
            return Err(GatewayError::Gone);
        }
        let v: Value = serde_json::from_slice(&data).unwrap();
        self.posts.lock().unwrap().push((id.to_owned(), v));
        Ok(())
    }
    async fn close(&self, id: &str) -> Result<(), GatewayError> {
        self.closed.lock().unwrap().push(id.to_owned());
        Ok(())
    }
    async fn exists(&self, id: &str) -> Result<bool, GatewayError> {
        Ok(!self.gone.lock().unwrap().iter().any(|g| g == id))
    }
}

fn ws_event(
    route: &str,
    connection_id: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut query = json!({});
    if let Some(t) = token {
        query["token"] = json!(t);
    }
    let event_type = match route {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    let raw = json!({
        "headers": {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "Sec-WebSocket-Version": "13"},
        "multiValueHeaders": {"Host": ["abc123.execute-api.eu-west-1.amazonaws.com"]},
        "queryStringParameters": if token.is_some() { query.clone() } else { Value::Null },
        "multiValueQueryStringParameters": if let Some(t) = token { json!({"token": [t]}) } else { Value::Null },
        "requestContext": {
            "routeKey": route,
            "eventType": event_type,
            "extendedRequestId": "ZJ1pXF0YjoEFhpw=",
            "requestTime": "23/Nov/2026:14:00:00 +0000",
            "messageDirection": "IN",
            "stage": "prod",
            "connectedAt": 1795442400000u64,
            "requestTimeEpoch": 1795442400123u64,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "MomentumMobile/1.0"},
            "requestId": "ZJ1pXF0YjoEFhpw=",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "connectionId": connection_id,
            "apiId": "abc123"
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    serde_json::from_value(raw).expect("a WebSocket proxy event")
}

async fn setup() -> (Realtime, Arc<RecordingGateway>, String, String) {
    setup_with(AppConfig::for_tests()).await
}

async fn setup_with(config: AppConfig) -> (Realtime, Arc<RecordingGateway>, String, String) {
    let state = AppState::with_store(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let (token, _, ws) = common::owner_and_workspace(&state, "wsuser", "Lambda").await;
    let gateway = Arc::new(RecordingGateway::default());
    let rt = Realtime::new(state, gateway.clone());
    (rt, gateway, token, ws)
}

#[tokio::test]
async fn connect_default_disconnect_events() {
    let (rt, gateway, token, ws) = setup().await;

    let refused = realtime::websocket::run(&rt, ws_event("$connect", "c1=", None, None))
        .await
        .unwrap();
    assert_eq!(refused.status_code, 401);
    let forged = realtime::websocket::run(&rt, ws_event("$connect", "c1=", Some("x.y.z"), None))
        .await
        .unwrap();
    assert_eq!(forged.status_code, 401);
    assert!(
        rt.registry.get("c1=").await.unwrap().is_none(),
        "no row for a refused connect"
    );

    let ok = realtime::websocket::run(&rt, ws_event("$connect", "c2=", Some(&token), None))
        .await
        .unwrap();
    assert_eq!(ok.status_code, 200);
    assert!(rt.registry.get("c2=").await.unwrap().is_some());

    let cmd = json!({"type": "subscribe", "data": {"topics": [format!("workspace:{ws}")]}, "request_id": "s1"});
    let r = realtime::websocket::run(&rt, ws_event("$default", "c2=", None, Some(&cmd)))
        .await
        .unwrap();
    assert_eq!(r.status_code, 200);
    let ping = json!({"type": "ping", "request_id": "p1"});
    realtime::websocket::run(&rt, ws_event("$default", "c2=", None, Some(&ping)))
        .await
        .unwrap();
    let posts = gateway.posts.lock().unwrap().clone();
    assert_eq!(
        posts.len(),
        2,
        "each $default reply is posted back: {posts:?}"
    );
    assert_eq!(posts[0].0, "c2=");
    assert_eq!(posts[0].1["request_id"], "s1");
    assert_eq!(posts[0].1["success"], true);
    assert_eq!(posts[1].1["type"], "pong");

    let bye = realtime::websocket::run(&rt, ws_event("$disconnect", "c2=", None, None))
        .await
        .unwrap();
    assert_eq!(bye.status_code, 200);
    assert!(rt.registry.get("c2=").await.unwrap().is_none());
    assert!(rt.registry.subscriptions("c2=").await.unwrap().is_empty());
}

#[tokio::test]
async fn stream_events_fan_out_and_gone_connections_are_removed() {
    let (rt, gateway, token, ws) = setup().await;
    for id in ["live=", "dead="] {
        realtime::websocket::run(&rt, ws_event("$connect", id, Some(&token), None))
            .await
            .unwrap();
        let cmd = json!({"type": "subscribe", "data": {"topics": [format!("workspace:{ws}")]}, "request_id": id});
        realtime::websocket::run(&rt, ws_event("$default", id, None, Some(&cmd)))
            .await
            .unwrap();
    }
    gateway.posts.lock().unwrap().clear();
    gateway.gone.lock().unwrap().push("dead=".into());

    // A DynamoDB Stream INSERT of a change record, as the event source mapping delivers it.
    let event = json!({"Records": [
        common::issue_update_insert(&ws, 42),
        {
            "eventID": "2", "eventName": "MODIFY", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {"Keys": {"pk": {"S": "USER#1"}, "sk": {"S": "PROFILE"}},
                "NewImage": {"pk": {"S": "USER#1"}, "sk": {"S": "PROFILE"}, "entity": {"S": "user"}},
                "SequenceNumber": "112", "SizeBytes": 26, "StreamViewType": "NEW_IMAGE"},
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/momentum-prod-main/stream/2026-11-23T00:00:00.000"
        }
    ]});
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(event).unwrap();
    let records = realtime::stream::change_records(event.clone());
    assert_eq!(records.len(), 1, "only inserted change records");
    assert_eq!(records[0].seq, 42);
    realtime::stream::handle(&rt, event).await.unwrap();

    let posts: HashMap<String, Value> = gateway.posts.lock().unwrap().iter().cloned().collect();
    assert_eq!(posts.len(), 1);
    let ev = &posts["live="];
    assert_eq!(ev["type"], "event");
    assert_eq!(ev["event"], "issue.updated");
    assert_eq!(ev["seq"], 42);
    assert_eq!(ev["data"]["title"], "Fix login");
    assert!(
        rt.registry.get("dead=").await.unwrap().is_none(),
        "410 deleted that connection"
    );
    assert!(rt.registry.get("live=").await.unwrap().is_some());
}

/// A logout in another Lambda deletes the session and writes a revocation item; the stream
/// carries it here and the session's connection is closed through `@connections`. A command
/// that reaches a revoked connection first is refused and closes it too.
#[tokio::test]
async fn revoked_sessions_close_their_connections() {
    let (rt, gateway, token, _) = setup().await;
    let who = rt.state.auth.authenticate(&token).unwrap();
    for id in ["first=", "second="] {
        realtime::websocket::run(&rt, ws_event("$connect", id, Some(&token), None))
            .await
            .unwrap();
    }
    rt.state.auth.logout(&who).await.unwrap();

    // The command path: refused, then closed.
    let cmd = json!({"type": "get_connection_info", "request_id": "late"});
    realtime::websocket::run(&rt, ws_event("$default", "second=", None, Some(&cmd)))
        .await
        .unwrap();
    let reply = gateway.posts.lock().unwrap().last().cloned().unwrap();
    assert_eq!(reply.0, "second=");
    assert_eq!(reply.1["error"]["code"], "UNAUTHORIZED", "{}", reply.1);
    assert_eq!(*gateway.closed.lock().unwrap(), vec!["second=".to_owned()]);
    assert!(rt.registry.get("second=").await.unwrap().is_none());

    // The stream path: the revocation item as the event source mapping delivers it.
    let event = json!({"Records": [{
        "eventID": "3", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "Keys": {"pk": {"S": format!("REVOKED#{}", who.user_id)}, "sk": {"S": "2026-11-23T14:00:00Z#1"}},
            "NewImage": {
                "pk": {"S": format!("REVOKED#{}", who.user_id)}, "sk": {"S": "2026-11-23T14:00:00Z#1"},
                "entity": {"S": "revocation"}, "user_id": {"S": who.user_id},
                "session_ids": {"L": [{"S": who.session_id}]},
                "at": {"S": "2026-11-23T14:00:00Z"}, "ttl": {"N": "1795528800"}
            },
            "SequenceNumber": "113", "SizeBytes": 26, "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/momentum-prod-main/stream/2026-11-23T00:00:00.000"
    }]});
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(event).unwrap();
    let batch = realtime::stream::batch(event.clone());
    assert!(batch.changes.is_empty());
    assert_eq!(batch.revocations.len(), 1);
    realtime::stream::handle(&rt, event).await.unwrap();
    assert_eq!(
        *gateway.closed.lock().unwrap(),
        vec!["second=".to_owned(), "first=".to_owned()]
    );
    assert!(rt.registry.get("first=").await.unwrap().is_none());
}

/// A `$connect` event as API Gateway delivers it, with handshake headers (in both `headers`
/// and `multiValueHeaders`, as API Gateway sends them) and an optional `?token=`.
fn connect_event(
    connection_id: &str,
    query_token: Option<&str>,
    headers: &[(&str, &str)],
) -> ApiGatewayWebsocketProxyRequest {
    let mut event = serde_json::to_value(ws_event("$connect", connection_id, query_token, None))
        .expect("event as JSON");
    let mut single = json!({"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "Sec-WebSocket-Version": "13"});
    let mut multi = json!({"Host": ["abc123.execute-api.eu-west-1.amazonaws.com"], "Sec-WebSocket-Version": ["13"]});
    for (name, value) in headers {
        single[*name] = json!(value);
        multi[*name] = json!([value]);
    }
    event["headers"] = single;
    event["multiValueHeaders"] = multi;
    serde_json::from_value(event).expect("a $connect event")
}

fn protocol_header(r: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Option<String> {
    r.headers
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn body_text(r: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> String {
    match &r.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t.clone(),
        other => panic!("text body expected: {other:?}"),
    }
}

/// The token in `Sec-WebSocket-Protocol: momentum.v1, bearer.<token>`: the connection is
/// made for the token's user, the Lambda's answer carries `Sec-WebSocket-Protocol:
/// momentum.v1` (API Gateway passes it on; browsers drop the connection without it) and
/// never the token; the query-string token keeps working.
#[tokio::test]
async fn connect_takes_the_token_from_the_subprotocol_and_echoes_only_momentum_v1() {
    let (rt, _gateway, token, _ws) = setup().await;
    let offered = format!("momentum.v1, bearer.{token}");

    let ok = realtime::websocket::run(
        &rt,
        connect_event("p1=", None, &[("Sec-WebSocket-Protocol", &offered)]),
    )
    .await
    .unwrap();
    assert_eq!(ok.status_code, 200, "{}", body_text(&ok));
    assert_eq!(protocol_header(&ok).as_deref(), Some("momentum.v1"));
    let serialized = serde_json::to_string(&ok).unwrap();
    assert!(!serialized.contains(&token), "the token is never echoed");
    assert!(
        serialized.contains(r#""sec-websocket-protocol":"momentum.v1""#),
        "the header is in the Lambda's JSON answer: {serialized}"
    );
    let row = rt
        .registry
        .get("p1=")
        .await
        .unwrap()
        .expect("connection row");
    let who = rt.state.auth.authenticate(&token).unwrap();
    assert_eq!(row.user_id, who.user_id);

    // Back-compat: the query string alone; nothing offered, nothing echoed.
    let query = realtime::websocket::run(&rt, connect_event("p2=", Some(&token), &[]))
        .await
        .unwrap();
    assert_eq!(query.status_code, 200);
    assert_eq!(protocol_header(&query), None);

    // The header wins over the query string.
    let both = realtime::websocket::run(
        &rt,
        connect_event(
            "p3=",
            Some("not.a.token"),
            &[("Sec-WebSocket-Protocol", &offered)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(both.status_code, 200);

    // A forged token in the header: 401, nothing recorded, nothing echoed.
    let forged = realtime::websocket::run(
        &rt,
        connect_event(
            "p4=",
            None,
            &[("Sec-WebSocket-Protocol", "momentum.v1, bearer.x.y.z")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(forged.status_code, 401);
    assert_eq!(protocol_header(&forged), None);
    assert!(rt.registry.get("p4=").await.unwrap().is_none());

    // `bearer.` without `momentum.v1`: the server could only echo the token, so 400.
    let alone = realtime::websocket::run(
        &rt,
        connect_event(
            "p5=",
            None,
            &[("Sec-WebSocket-Protocol", &format!("bearer.{token}"))],
        ),
    )
    .await
    .unwrap();
    assert_eq!(alone.status_code, 400);
    let body: Value = serde_json::from_str(&body_text(&alone)).unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert_eq!(body["field"], "Sec-WebSocket-Protocol");
    assert!(!body_text(&alone).contains(&token));
    assert!(rt.registry.get("p5=").await.unwrap().is_none());
}

/// `$connect` checks `Origin` against `MOMENTUM_CORS_ORIGINS`: a listed origin and no origin
/// (native clients) connect, any other origin gets 403 and no connection row.
#[tokio::test]
async fn connect_checks_origin_against_the_cors_allowlist() {
    let (rt, gateway, token, _ws) = setup().await;
    let mut state = rt.state.clone();
    let mut config = (*state.config).clone();
    config.cors_origins = vec!["https://app.example.com".into()];
    config.local_default_origins = false;
    state.config = std::sync::Arc::new(config);
    let rt = Realtime::new(state, gateway);

    let listed = realtime::websocket::run(
        &rt,
        connect_event(
            "o1=",
            Some(&token),
            &[("Origin", "https://app.example.com")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(listed.status_code, 200);
    let native = realtime::websocket::run(&rt, connect_event("o2=", Some(&token), &[]))
        .await
        .unwrap();
    assert_eq!(native.status_code, 200);
    for (id, origin) in [
        ("o3=", "https://evil.example.com"),
        ("o4=", "http://localhost:3000"),
        ("o5=", "null"),
    ] {
        let refused =
            realtime::websocket::run(&rt, connect_event(id, Some(&token), &[("Origin", origin)]))
                .await
                .unwrap();
        assert_eq!(refused.status_code, 403, "{origin}");
        let body: Value = serde_json::from_str(&body_text(&refused)).unwrap();
        assert_eq!(body["code"], "FORBIDDEN");
        assert!(rt.registry.get(id).await.unwrap().is_none(), "{origin}");
    }
}

/// `$connect` is limited per source address (`requestContext.identity.sourceIp`): over the
/// limit the handshake is refused with 429 and nothing is recorded; another address is not
/// affected.
#[tokio::test]
async fn connect_is_limited_per_source_ip() {
    use momentum_shared::ratelimit::{Rate, RateLimitConfig};
    let mut config = AppConfig::for_tests();
    config.rate_limits = RateLimitConfig {
        ws_connect: Some(Rate::new(2, 1)),
        ..RateLimitConfig::off()
    };
    let (rt, _gateway, token, _ws) = setup_with(config).await;
    let from = |id: &str, ip: &str| {
        let mut event = ws_event("$connect", id, Some(&token), None);
        event.request_context.identity.source_ip = Some(ip.into());
        event
    };
    for id in ["l1=", "l2="] {
        let ok = realtime::websocket::run(&rt, from(id, "203.0.113.7"))
            .await
            .unwrap();
        assert_eq!(ok.status_code, 200, "{id}");
    }
    let refused = realtime::websocket::run(&rt, from("l3=", "203.0.113.7"))
        .await
        .unwrap();
    assert_eq!(refused.status_code, 429);
    let body: Value = serde_json::from_str(&body_text(&refused)).unwrap();
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    assert!(rt.registry.get("l3=").await.unwrap().is_none());
    let other = realtime::websocket::run(&rt, from("l4=", "198.51.100.20"))
        .await
        .unwrap();
    assert_eq!(other.status_code, 200, "another address has its own budget");
}

/// Records connection `id` of the token's session, subscribed to `workspace:{ws}`, straight
/// through the registry (no `$connect` event).
async fn subscribe_to_workspace(rt: &Realtime, id: &str, token: &str, ws: &str) {
    let conn = rt
        .registry
        .connect(&rt.state.auth, id, Some(token))
        .await
        .unwrap();
    rt.registry
        .subscribe(&conn, &[format!("workspace:{ws}")])
        .await
        .unwrap();
}

/// An SQS event of the fan-out queue as Lambda delivers it.
fn sqs_event(messages: &[(&str, String)]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("handle-{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795442400000",
                    "SenderId": "AROAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1795442400100",
                    "MessageGroupId": "g",
                    "MessageDeduplicationId": id
                },
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:momentum-prod-fanout.fifo",
                "awsRegion": "eu-west-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

#[tokio::test]
async fn the_fanout_worker_delivers_queued_shards_and_drops_unreadable_ones() {
    use momentum_shared::kernel::topic::Topic;
    use momentum_shared::realtime::shards::Shard;

    let (rt, gateway, token, ws) = setup().await;
    let mut targets = Vec::new();
    for c in ["q1=", "q2="] {
        subscribe_to_workspace(&rt, c, &token, &ws).await;
        let sub = rt.registry.subscriptions(c).await.unwrap().pop().unwrap();
        targets.push(momentum_shared::realtime::shards::Target::new(
            &sub,
            &Topic::Workspace(ws.clone()),
        ));
    }
    // A committed record, as the stream would carry it, split into one shard per target.
    let who = rt.state.auth.authenticate(&token).unwrap();
    let record = rt
        .state
        .workspaces
        .changes(&who, &ws, 0, 1)
        .await
        .unwrap()
        .changes
        .pop()
        .unwrap();
    let shards = Shard::split(&record, targets, 1);
    let mut messages: Vec<(String, String)> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("m{i}"), serde_json::to_string(s).unwrap()))
        .collect();
    messages.insert(1, ("bad".into(), "not a shard".into()));
    let refs: Vec<(&str, String)> = messages
        .iter()
        .map(|(id, b)| (id.as_str(), b.clone()))
        .collect();

    let response = realtime::fanout::handle(rt.broadcaster.worker(), sqs_event(&refs)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "an unreadable message is dropped, not redelivered forever"
    );
    let mut got: Vec<(String, i64)> = gateway
        .posts
        .lock()
        .unwrap()
        .iter()
        .map(|(c, v)| (c.clone(), v["seq"].as_i64().unwrap()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("q1=".into(), record.seq), ("q2=".into(), record.seq)]
    );
}

/// A shard queue that is down (SQS unreachable).
struct DownQueue;

#[async_trait]
impl momentum_shared::realtime::shards::ShardQueue for DownQueue {
    async fn dispatch(
        &self,
        _: Vec<momentum_shared::realtime::shards::Shard>,
        _: &momentum_shared::realtime::broadcaster::ShardWorker,
    ) -> momentum_shared::AppResult<momentum_shared::realtime::broadcaster::Delivery> {
        Err(momentum_shared::AppError::internal("queue unreachable"))
    }
}

/// Shards that could not be handed over fail the stream batch, so the event source retries
/// it (bisecting, bounded, then its failure queue: infra/template.yaml) instead of the
/// events being dropped in silence.
#[tokio::test]
async fn a_failed_shard_hand_off_fails_the_stream_batch() {
    let (mut rt, gateway, token, ws) = setup().await;
    for id in ["s1=", "s2="] {
        subscribe_to_workspace(&rt, id, &token, &ws).await;
    }
    rt.broadcaster = rt
        .broadcaster
        .clone()
        .with_config(&momentum_shared::config::FanoutConfig {
            shard_size: 1,
            ..Default::default()
        })
        .with_queue(Arc::new(DownQueue));
    let event = json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "Keys": {"pk": {"S": format!("WS#{ws}#CHANGES")}, "sk": {"S": "0000000000000042"}},
            "NewImage": {
                "pk": {"S": format!("WS#{ws}#CHANGES")}, "sk": {"S": "0000000000000042"},
                "entity": {"S": "change"}, "seq": {"N": "42"}, "workspace_id": {"S": ws},
                "event": {"S": "workspace.updated"}, "entity_type": {"S": "workspace"},
                "entity_id": {"S": ws}, "kind": {"S": "updated"}, "actor_id": {"S": "u1"},
                "at": {"S": "2026-11-23T14:00:00Z"},
                "topics": {"L": [{"S": format!("workspace:{ws}")}]},
                "data": {"M": {}}, "ttl": {"N": "1798034400"}
            },
            "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/momentum-prod-main/stream/2026-11-23T00:00:00.000"
    }]});
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_value(event).unwrap();
    assert!(realtime::stream::handle(&rt, event).await.is_err());
    assert!(gateway.posts.lock().unwrap().is_empty());
}

/// The owner of a workspace and bob, a member who switched to it, with a Realtime over a
/// recording gateway on `clock`: (rt, gateway, owner's token, bob's token, bob's id, ws).
async fn presence_fixture(
    clock: &momentum_shared::clock::ManualClock,
) -> (
    Realtime,
    Arc<RecordingGateway>,
    String,
    String,
    String,
    String,
) {
    use momentum_shared::areas::workspaces::{SwitchWorkspace, membership_of};
    use momentum_shared::kernel::access::{Member, Role};
    use momentum_shared::kernel::{keys, record::record_item};
    use momentum_shared::storage::{Table, WriteOp};

    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(clock.clone()),
    );
    let (owner, _, ws) = common::owner_and_workspace(&state, "owner", "Lambda").await;
    let (bob, bob_who, _) = common::owner_and_workspace(&state, "bob", "Elsewhere").await;
    let member = Member {
        workspace_id: ws.clone(),
        user_id: bob_who.user_id.clone(),
        role: Role::Member,
        username: "bob".into(),
        email: "bob@example.com".into(),
        display_name: None,
        joined_at: "2026-01-01T00:00:00Z".into(),
    };
    state
        .store
        .transact(vec![
            WriteOp::put(
                Table::Main,
                record_item(&keys::member(&ws, &member.user_id), "member", &member),
            ),
            WriteOp::put(
                Table::Main,
                record_item(
                    &keys::membership(&member.user_id, &ws),
                    "membership",
                    &membership_of(&member),
                ),
            ),
        ])
        .await
        .unwrap();
    state
        .workspaces
        .switch(
            &bob_who,
            SwitchWorkspace {
                workspace_id: ws.clone(),
            },
        )
        .await
        .unwrap();
    let gateway = Arc::new(RecordingGateway::default());
    let rt = Realtime::new(state, gateway.clone());
    (rt, gateway, owner, bob, bob_who.user_id, ws)
}

/// The presence messages of `kind` the gateway posted: (connection, message).
fn presence_posts(gateway: &RecordingGateway, kind: &str) -> Vec<(String, Value)> {
    gateway
        .posts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m["message_type"] == kind)
        .cloned()
        .collect()
}

/// Presence through the Lambda events: `$connect` announces `user_joined` to the others;
/// `$disconnect` records a leave that waits out the grace window in the store (no process
/// remembers it), and a later `$connect` in another invocation announces it once.
#[tokio::test]
async fn presence_messages_through_connect_and_disconnect_events() {
    use momentum_shared::clock::ManualClock;
    use momentum_shared::config::DEFAULT_PRESENCE_GRACE_SECS;

    let clock = ManualClock::starting_now();
    let (rt, gateway, owner, bob, bob_id, _) = presence_fixture(&clock).await;
    let presence = |kind: &str| presence_posts(&gateway, kind);

    for (id, token) in [("o1=", &owner), ("b1=", &bob)] {
        let r = realtime::websocket::run(&rt, ws_event("$connect", id, Some(token), None))
            .await
            .unwrap();
        assert_eq!(r.status_code, 200);
    }
    let joined = presence("user_joined");
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(joined[0].0, "o1=", "only the others hear of it");
    assert_eq!(joined[0].1["from_user_id"], json!(bob_id));
    assert_eq!(joined[0].1["type"], "message");

    realtime::websocket::run(&rt, ws_event("$disconnect", "b1=", None, None))
        .await
        .unwrap();
    assert!(presence("user_left").is_empty(), "not within the window");
    clock.advance_secs(DEFAULT_PRESENCE_GRACE_SECS as i64 + 1);
    realtime::websocket::run(&rt, ws_event("$connect", "o2=", Some(&owner), None))
        .await
        .unwrap();
    realtime::websocket::run(&rt, ws_event("$connect", "o3=", Some(&owner), None))
        .await
        .unwrap();
    let left = presence("user_left");
    let to: Vec<&str> = left.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        to,
        ["o1=", "o2="],
        "announced once, to the connections present then"
    );
    assert_eq!(left[0].1["data"]["user_id"], json!(bob_id));
    assert_eq!(
        presence("user_joined").len(),
        1,
        "the owner's second socket is no join"
    );
}

/// In the cloud nothing else may happen in the workspace after a leave: `$disconnect` puts
/// the workspace on the presence queue (moto's SQS) with the grace window as delivery delay,
/// and the fan-out worker's presence batch announces the leave once.
#[tokio::test]
async fn a_leave_comes_due_through_the_presence_queue() {
    use momentum_shared::clock::ManualClock;
    use momentum_shared::config::DEFAULT_PRESENCE_GRACE_SECS;

    let Ok(endpoint) = std::env::var("MOMENTUM_TEST_DYNAMODB_ENDPOINT") else {
        eprintln!(
            "SKIPPED a_leave_comes_due_through_the_presence_queue: no moto (MOMENTUM_TEST_DYNAMODB_ENDPOINT)"
        );
        return;
    };
    let sdk = momentum_shared::aws::load(&momentum_shared::aws::SdkOptions {
        region: Some("us-east-1".into()),
        attempt_timeout: std::time::Duration::from_secs(10),
        local_credentials: true,
    })
    .await;
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let queue_url = client
        .create_queue()
        .queue_name(format!(
            "t{}-presence",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ))
        .send()
        .await
        .expect("create the presence queue")
        .queue_url
        .expect("a queue url");
    let clock = ManualClock::starting_now();
    let (rt, gateway, owner, bob, bob_id, ws) = presence_fixture(&clock).await;
    let rt = rt.with_leave_timer(Some(realtime::presence_timer::LeaveTimer::with_client(
        client.clone(),
        queue_url.clone(),
    )));
    for (id, token) in [("o1=", &owner), ("b1=", &bob)] {
        realtime::websocket::run(&rt, ws_event("$connect", id, Some(token), None))
            .await
            .unwrap();
    }
    realtime::websocket::run(&rt, ws_event("$disconnect", "b1=", None, None))
        .await
        .unwrap();
    assert!(
        presence_posts(&gateway, "user_left").is_empty(),
        "not within the window"
    );

    // SQS holds the message for the window (11 s); receive waits for it.
    let mut messages = Vec::new();
    for _ in 0..60 {
        let got = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        messages = got.messages.unwrap_or_default();
        if !messages.is_empty() {
            break;
        }
    }
    assert_eq!(messages.len(), 1, "one sweep asked for");
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:presence",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    assert!(realtime::presence_timer::is_presence_batch(&event));
    assert_eq!(
        serde_json::from_str::<Value>(messages[0].body.as_deref().unwrap()).unwrap(),
        json!({"presence_sweep": ws})
    );
    // The worker runs when the window has passed (the store's clock says so).
    clock.advance_secs(DEFAULT_PRESENCE_GRACE_SECS as i64 + 1);
    for _ in 0..2 {
        // The second run is SQS delivering the message again: announced once all the same.
        let answer = realtime::presence_timer::handle(&rt, event.clone()).await;
        assert!(answer.batch_item_failures.is_empty());
    }
    let left = presence_posts(&gateway, "user_left");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, "o1=");
    assert_eq!(left[0].1["data"]["user_id"], json!(bob_id));
}
