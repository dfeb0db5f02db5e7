//! Limits and security over real HTTP and WebSocket through the shim: rate limits (per IP,
//! per account, per WebSocket connection; X-Forwarded-For cannot escape them), security
//! headers on every response, the CORS allowlist, input limits, and refused JWTs.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::http::{MAX_BODY_BYTES, STRICT_TRANSPORT_SECURITY};
use momentum_shared::ratelimit::{Rate, RateLimitConfig};
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_tests::{Backend, PASSWORD, Reply, TestServer, WsClient, user, workspace};
use reqwest::Method;
use serde_json::{Value, json};

async fn server_with(limits: RateLimitConfig) -> TestServer {
    let mut config = AppConfig::for_tests();
    config.expose_storage_calls = true;
    config.rate_limits = limits;
    let state = AppState::with_store(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    TestServer::serve(state).await
}

async fn embedded() -> TestServer {
    TestServer::start(Backend::Embedded, "limits")
        .await
        .expect("embedded server")
}

/// A POST with extra headers, read as an envelope.
async fn post_with(s: &TestServer, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut req = s.http.post(format!("{}{path}", s.base)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::read(req.send().await.expect("request")).await
}

#[track_caller]
fn assert_rate_limited(r: &Reply) {
    assert_eq!(r.status.as_u16(), 429, "{}", r.body);
    assert_eq!(r.error_code(), "RATE_LIMITED", "{}", r.body);
    assert_eq!(r.body["success"], json!(false));
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    assert_security_headers(&r.headers, "429");
}

#[track_caller]
fn assert_security_headers(h: &reqwest::header::HeaderMap, what: &str) {
    assert_eq!(h["cache-control"], "no-store", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(
        h["strict-transport-security"], STRICT_TRANSPORT_SECURITY,
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_limited_per_ip_and_forwarded_for_does_not_escape_it() {
    let s = server_with(RateLimitConfig {
        auth_ip: Some(Rate::new(4, 1)),
        ..RateLimitConfig::off()
    })
    .await;
    // Every request claims another client address; the limit keys on the socket peer.
    for i in 0..4 {
        let spoofed = format!("198.51.100.{i}");
        let r = post_with(
            &s,
            "/auth/login",
            &[("x-forwarded-for", &spoofed), ("x-real-ip", &spoofed)],
            &json!({"email": format!("nobody{i}@example.com"), "password": "wrong password"}),
        )
        .await;
        assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    }
    let r = post_with(
        &s,
        "/auth/login",
        &[
            ("x-forwarded-for", "203.0.113.99"),
            ("forwarded", "for=203.0.113.99"),
        ],
        &json!({"email": "other@example.com", "password": "wrong password"}),
    )
    .await;
    assert_rate_limited(&r);
    // Register and refresh share the address's bucket.
    let r = s
        .post(
            "/auth/register",
            None,
            &json!({"email": "new@example.com", "username": "newbie", "password": PASSWORD}),
        )
        .await;
    assert_rate_limited(&r);
    let r = s
        .post("/auth/refresh", None, &json!({"refresh_token": "x"}))
        .await;
    assert_rate_limited(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_refresh_are_limited_per_account() {
    let s = server_with(RateLimitConfig {
        auth_user: Some(Rate::new(3, 1)),
        ..RateLimitConfig::off()
    })
    .await;
    let u = user(&s, "limited").await; // register + 1 login of this email
    let wrong = json!({"email": u.email, "password": "wrong password"});
    s.post("/auth/login", None, &wrong).await.expect(401);
    s.post("/auth/login", None, &wrong).await.expect(401);
    assert_rate_limited(&s.post("/auth/login", None, &wrong).await);
    // The right password does not bypass it either; the email is normalised.
    let upper = json!({"email": u.email.to_uppercase(), "password": PASSWORD});
    assert_rate_limited(&s.post("/auth/login", None, &upper).await);
    // Another account is not affected.
    let other = json!({"email": "someone.else@example.com", "password": "wrong password"});
    s.post("/auth/login", None, &other).await.expect(401);

    // Refresh: per user, whichever of their tokens is used.
    let v = user(&s, "refresher").await;
    let login = s
        .post(
            "/auth/login",
            None,
            &json!({"email": v.email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    let mut token = login.data()["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let r = s
            .post("/auth/refresh", None, &json!({"refresh_token": token}))
            .await
            .expect(200);
        token = r.data()["refresh_token"].as_str().unwrap().to_owned();
    }
    let r = s
        .post("/auth/refresh", None, &json!({"refresh_token": token}))
        .await;
    assert_rate_limited(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_commands_are_limited_per_connection_and_it_stays_up() {
    let s = server_with(RateLimitConfig {
        ws_command: Some(Rate::new(3, 60)),
        ..RateLimitConfig::off()
    })
    .await;
    let u = user(&s, "chatty").await;
    let mut ws = WsClient::connect(&s, u.t()).await.expect("connected");
    for _ in 0..3 {
        let r = ws.request("ping", json!({})).await;
        assert_eq!(r["type"], "pong", "{r}");
    }
    let r = ws.request("ping", json!({})).await;
    assert_eq!(r["success"], json!(false), "{r}");
    assert_eq!(r["error"]["code"], "RATE_LIMITED", "{r}");
    assert_eq!(r["error"]["retry_after"], json!(1), "{r}");
    // Another connection of the same user has its own bucket.
    let mut second = WsClient::connect(&s, u.t()).await.expect("connected");
    assert_eq!(second.request("ping", json!({})).await["type"], "pong");
    // The refused connection is still up and served once a token has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = ws.request("ping", json!({})).await;
    assert_eq!(r["type"], "pong", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_on_every_response() {
    let s = embedded().await;
    let u = user(&s, "headers").await;
    let ok = s.get("/auth/profile", u.t()).await.expect(200);
    assert_security_headers(&ok.headers, "200");
    let unauthorized = s.get("/auth/profile", None).await.expect(401);
    assert_security_headers(&unauthorized.headers, "401");
    let not_found = s.get("/no/such/route", None).await.expect(404);
    assert_security_headers(&not_found.headers, "404 fallback");
    let not_allowed = s.get("/auth/login", None).await.expect(405);
    assert_security_headers(&not_allowed.headers, "405 fallback");
    let invalid = s
        .post("/auth/login", None, &json!({"email": "a@b.c"}))
        .await
        .expect(400);
    assert_security_headers(&invalid.headers, "400");
    let big = oversize_body(&s, "/auth/login", None).await;
    assert_eq!(big.status.as_u16(), 413, "{}", big.body);
    assert_security_headers(&big.headers, "413 body limit");
}

async fn oversize_body(s: &TestServer, path: &str, token: Option<&str>) -> Reply {
    let body = json!({"email": "x".repeat(MAX_BODY_BYTES), "password": "p"}).to_string();
    let mut req = s
        .http
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Reply::read(req.send().await.expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_listed_origins_only() {
    let s = embedded().await;
    let allowed = "http://localhost:3000";
    let preflight = |origin: &'static str| {
        s.http
            .request(Method::OPTIONS, format!("{}/auth/login", s.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let r = preflight(allowed).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], allowed);
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        headers.contains("authorization") && headers.contains("idempotency-key"),
        "{headers}"
    );
    assert_security_headers(h, "preflight");

    let r = preflight("https://evil.example").await.unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "unknown origin got CORS headers"
    );

    // Actual requests: success and error responses carry CORS for a listed origin only.
    for (path, status) in [("/health", 200), ("/no/such/route", 404)] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header("origin", allowed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            allowed,
            "{path}"
        );
        let exposed = r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(exposed.contains("retry-after"), "{exposed}");
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_limits_are_4xx_naming_the_field() {
    let s = embedded().await;
    let w = workspace(&s, "Limits").await;
    let t = Some(w.token.as_str());

    let r = oversize_body(&s, "/workspaces", t).await;
    assert_eq!(r.status.as_u16(), 413, "{}", r.body);
    assert_eq!(r.error_code(), "PAYLOAD_TOO_LARGE");

    let r = s
        .post("/workspaces", t, &json!({"name": "n".repeat(101)}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("name"), "{}", r.body);

    let labels: Vec<Value> = (0..101)
        .map(|i| json!({"name": format!("l{i}"), "color": "#112233"}))
        .collect();
    let r = s
        .post(
            "/labels/batch",
            t,
            &json!({"workspace_id": w.ws, "labels": labels}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("labels"), "{}", r.body);

    let label_ids: Vec<String> = (0..21).map(|i| format!("label-{i}")).collect();
    let r = s
        .post(
            "/issues",
            t,
            &json!({"team_id": w.team, "title": "too many labels", "label_ids": label_ids}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("label_ids"), "{}", r.body);

    for path in [
        format!("/labels?workspace_id={}&limit=1000", w.ws),
        format!("/labels?workspace_id={}&limit=0", w.ws),
        format!("/labels?workspace_id={}&limit=-1", w.ws),
        format!("/workspaces/{}/changes?since=0&limit=1001", w.ws),
    ] {
        let r = s.get(&path, t).await.expect(400);
        assert_eq!(r.error_field(), Some("limit"), "{path}: {}", r.body);
    }
    let r = s
        .get(
            &format!("/labels?workspace_id={}&cursor={}", w.ws, "A".repeat(5000)),
            t,
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("cursor"), "{}", r.body);

    let r = s
        .post(
            "/auth/login",
            None,
            &json!({"email": format!("{}@example.com", "a".repeat(300)), "password": "p"}),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("email"), "{}", r.body);
}

fn forged(claims: &Value, alg: Algorithm, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_over_http() {
    let s = embedded().await;
    let u = user(&s, "bearer").await;
    let login = s
        .post(
            "/auth/login",
            None,
            &json!({"email": u.email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    let refresh = login.data()["refresh_token"].as_str().unwrap().to_owned();
    let access = login.data()["access_token"].as_str().unwrap().to_owned();
    s.get("/auth/profile", Some(&access)).await.expect(200);

    let config = &s.state.config.auth;
    let claims = s.state.auth.tokens().verify(&access).unwrap();
    let mut good = serde_json::to_value(&claims).unwrap();
    let now = claims.iat;
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let parts: Vec<&str> = access.split('.').collect();
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let secret = &config.jwt_secret;
    let cases = [
        ("refresh token as bearer", refresh.clone()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                parts[1]
            ),
        ),
        (
            "RS256 header",
            format!(
                "{}.{}.{}",
                b64(json!({"alg": "RS256", "typ": "JWT"})),
                parts[1],
                parts[2]
            ),
        ),
        ("HS512 token", forged(&good, Algorithm::HS512, secret)),
        (
            "wrong key",
            forged(
                &good,
                Algorithm::HS256,
                b"not-the-server-secret-not-the-secret",
            ),
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(with("sub", json!("someone-else"))),
                parts[2]
            ),
        ),
        (
            "expired",
            forged(&with("exp", json!(now - 60)), Algorithm::HS256, secret),
        ),
        (
            "not yet valid",
            forged(&with("nbf", json!(now + 3600)), Algorithm::HS256, secret),
        ),
        (
            "issued in the future",
            forged(&with("iat", json!(now + 3600)), Algorithm::HS256, secret),
        ),
        (
            "wrong issuer",
            forged(&with("iss", json!("mallory")), Algorithm::HS256, secret),
        ),
        (
            "wrong audience",
            forged(&with("aud", json!("elsewhere")), Algorithm::HS256, secret),
        ),
    ];
    for (name, token) in cases {
        let r = s.get("/auth/profile", Some(&token)).await;
        assert_eq!(r.status.as_u16(), 401, "{name}: {}", r.body);
        assert_eq!(r.error_code(), "UNAUTHORIZED", "{name}");
        assert_eq!(r.headers["www-authenticate"], "Bearer", "{name}");
    }
    // The forging itself is sound: the same claims signed correctly are accepted.
    good["jti"] = json!("forged-but-valid");
    let valid = forged(&good, Algorithm::HS256, secret);
    s.get("/auth/profile", Some(&valid)).await.expect(200);
}

/// On AWS the HTTP API answers CORS itself: the template must allow what the code allows,
/// take its origins from the same setting, and throttle the stage (the rate limits' global
/// backstop).
#[test]
fn template_cors_and_throttling_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("infra/template.yaml")).unwrap();
    let t: Value = serde_norway::from_str(&text).expect("template parses");
    let api = &t["Resources"]["HttpApi"]["Properties"];
    let cors = &api["CorsConfiguration"];
    let list = |v: &Value| -> Vec<String> {
        let mut l: Vec<String> = v
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|h| h.as_str().unwrap().to_ascii_lowercase())
            .collect();
        l.sort();
        l
    };
    let sorted = |a: &[&str]| {
        let mut l: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        l.sort();
        l
    };
    use momentum_shared::http::{CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS};
    assert_eq!(list(&cors["AllowHeaders"]), sorted(&CORS_ALLOW_HEADERS));
    assert_eq!(list(&cors["ExposeHeaders"]), sorted(&CORS_EXPOSE_HEADERS));
    assert!(
        cors["AllowOrigins"].to_string().contains("CorsOrigins"),
        "AllowOrigins must come from the CorsOrigins parameter: {}",
        cors["AllowOrigins"]
    );
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(env["MOMENTUM_CORS_ORIGINS"]["Ref"], "CorsOrigins");
    assert!(api["DefaultRouteSettings"]["ThrottlingRateLimit"].is_number());
    assert!(api["DefaultRouteSettings"]["ThrottlingBurstLimit"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_input_limits_name_the_field() {
    let s = embedded().await;
    let w = workspace(&s, "Ws limits").await;
    let mut ws = WsClient::connect(&s, Some(&w.token))
        .await
        .expect("connected");
    let r = ws
        .request(
            "sync",
            json!({"workspace_id": w.ws, "since": 0, "limit": 5000}),
        )
        .await;
    assert_eq!(r["success"], json!(false), "{r}");
    assert_eq!(r["error"]["field"], "limit", "{r}");
    let r = ws
        .request(
            "sync",
            json!({"workspace_id": w.ws, "since": 0, "limit": 1000}),
        )
        .await;
    assert_eq!(r["success"], json!(true), "{r}");
    let labels: Vec<Value> = (0..101)
        .map(|i| json!({"name": format!("l{i}"), "color": "#112233"}))
        .collect();
    let r = ws
        .request(
            "batch_create_labels",
            json!({"workspace_id": w.ws, "labels": labels}),
        )
        .await;
    assert_eq!(r["error"]["field"], "labels", "{r}");
    // Over API Gateway's 128 KiB message limit: refused, the connection stays up.
    ws.send_text(json!({"type": "ping", "pad": "x".repeat(130 * 1024)}).to_string())
        .await;
    let r = ws.next(Duration::from_secs(10)).await.expect("a reply");
    assert_eq!(r["error"]["code"], "PAYLOAD_TOO_LARGE", "{r}");
    assert_eq!(ws.request("ping", json!({})).await["type"], "pong");
}
