//! Feeds real API Gateway HTTP API (payload v2.0) event JSON through the same adapter
//! `lambda_http::run` uses, into the auth function's app, and reads the Lambda response.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::storage::embedded::EmbeddedStore;
use serde_json::{Value, json};

fn http_api_event(method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Value {
    let mut headers = json!({
        "accept": "application/json",
        "content-type": "application/json",
        "host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "MomentumMobile/1.0",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https"
    });
    if let Some(t) = token {
        headers["authorization"] = json!(format!("Bearer {t}"));
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "MomentumMobile/1.0"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:14:00:00 +0000",
            "timeEpoch": 1795442400000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

async fn invoke(
    app: &mut Adapter<'static, axum::response::Response, axum::Router>,
    event: Value,
) -> (u16, Value) {
    let request: LambdaRequest = serde_json::from_value(event).expect("an HTTP API v2 event");
    let response = app
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler");
    let raw = serde_json::to_value(&response).expect("lambda response serialises");
    let status = raw["statusCode"].as_u64().expect("statusCode") as u16;
    let body = raw["body"].as_str().expect("text body");
    (status, serde_json::from_str(body).expect("JSON envelope"))
}

#[tokio::test]
async fn http_api_v2_events_drive_the_auth_function() {
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let mut app = Adapter::from(auth::app(state));

    let creds =
        json!({"email": "lambda@example.com", "username": "lambda", "password": "correct horse"});
    let (status, body) = invoke(
        &mut app,
        http_api_event("POST", "/auth/register", Some(&creds), None),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let login = json!({"email": "lambda@example.com", "password": "correct horse"});
    let (status, body) = invoke(
        &mut app,
        http_api_event("POST", "/auth/login", Some(&login), None),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["access_token"].as_str().unwrap().to_owned();

    let (status, body) = invoke(
        &mut app,
        http_api_event("GET", "/auth/profile", None, Some(&token)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["email"], "lambda@example.com");

    let (status, body) = invoke(&mut app, http_api_event("GET", "/auth/profile", None, None)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    let bad = json!({"email": "lambda@example.com"});
    let (status, body) = invoke(
        &mut app,
        http_api_event("POST", "/auth/login", Some(&bad), None),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "password");

    let (status, _) = invoke(&mut app, http_api_event("GET", "/elsewhere", None, None)).await;
    assert_eq!(status, 404);
}

/// The per-IP limit keys on API Gateway's `requestContext.http.sourceIp`, never on the
/// `X-Forwarded-For` header a client can write.
#[tokio::test]
async fn rate_limit_keys_on_the_gateway_source_ip() {
    use momentum_shared::ratelimit::{Rate, RateLimitConfig};
    let mut config = AppConfig::for_tests();
    config.rate_limits = RateLimitConfig {
        auth_ip: Some(Rate::new(2, 1)),
        ..RateLimitConfig::off()
    };
    let state = AppState::with_store(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let mut app = Adapter::from(auth::app(state));
    let attempt = |source_ip: &str, forwarded_for: &str| {
        let body = json!({"email": "who@example.com", "password": "wrong password"});
        let mut event = http_api_event("POST", "/auth/login", Some(&body), None);
        event["requestContext"]["http"]["sourceIp"] = json!(source_ip);
        event["headers"]["x-forwarded-for"] = json!(forwarded_for);
        event
    };
    for i in 0..2 {
        let (status, body) = invoke(&mut app, attempt("203.0.113.7", &format!("10.0.0.{i}"))).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = invoke(&mut app, attempt("203.0.113.7", "10.9.9.9")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let (status, body) = invoke(&mut app, attempt("198.51.100.20", "203.0.113.7")).await;
    assert_eq!(
        status, 401,
        "another source address has its own bucket: {body}"
    );
}
