//! The local shim's own hardening (issue 10, reproduction 8): read timeouts for slow clients,
//! graceful shutdown, the management API for local callers only, WebSocket `Origin` against
//! the CORS allowlist, the access token in `Sec-WebSocket-Protocol`, and a clean answer to a
//! client's close frame. All of it is the shim's behaviour, not the store's: these run on the
//! embedded store. Timeouts are set short through `AppConfig::timeouts`; the tests wait for
//! the server to act (close, answer), never for silence.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::storage::Store;
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_tests::{TestServer, sign_up};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// Upper bound on waiting for something the server must do (close, answer): far above the
/// configured timeouts, only reached when the behaviour is missing.
const SAFETY: Duration = Duration::from_secs(20);

fn state_with(config: AppConfig, store: Arc<dyn Store>) -> AppState {
    AppState::with_store(config, store, Arc::new(SystemClock))
}

fn config_with(f: impl FnOnce(&mut AppConfig)) -> AppConfig {
    let mut config = AppConfig::for_tests();
    f(&mut config);
    config
}

fn addr_of(server: &TestServer) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the server closes the connection; what it sent, or a panic after `SAFETY`.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(SAFETY, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server held the connection open; got so far: {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Ok(Err(_)) => return out,
        }
    }
}

/// Reads one HTTP response head (up to the blank line) without waiting for more.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(SAFETY, stream.read(&mut byte))
            .await
            .expect("a response head in time")
            .expect("read");
        assert!(n > 0, "closed before a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A whole `Connection: close` response: status, lower-cased headers, JSON body.
fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).expect("JSON body"),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A client that opens a fresh connection per request, so that the short header timeout of
/// these servers (which also closes idle keep-alive connections) never meets a pooled one.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn health_ok(base: &str) {
    let r = unpooled()
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
}

/// Unfinished headers, or no bytes at all: the server closes the connection after the
/// header read timeout instead of holding it; other clients are served meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_headers_close_the_connection() {
    let config = config_with(|c| c.timeouts.header_read = Duration::from_millis(1000));
    let server = TestServer::serve(state_with(config, Arc::new(EmbeddedStore::in_memory()))).await;
    let addr = addr_of(&server);

    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Served while the two slow clients wait.
    health_ok(&server.base).await;

    for (what, stream) in [("partial headers", &mut partial), ("no bytes", &mut silent)] {
        let sent = read_until_closed(stream).await;
        let sent = String::from_utf8_lossy(&sent);
        assert!(
            sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
            "{what}: closed, or 408 then closed; got {sent:?}"
        );
    }
    health_ok(&server.base).await;
}

/// A body that stops arriving: 408 `REQUEST_TIMEOUT` in the envelope (with the request id)
/// and the connection closed. With an `Idempotency-Key`, the late attempt claims nothing: a
/// retry with the same key and the whole body succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_body_gets_408_and_the_connection_closes() {
    let config = config_with(|c| c.timeouts.body_read = Duration::from_millis(1000));
    let server = TestServer::serve(state_with(config, Arc::new(EmbeddedStore::in_memory()))).await;
    let addr = addr_of(&server);

    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /auth/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"email\": \"slow@",
    )
    .await
    .unwrap();
    let (status, headers, body) = parse_response(&read_until_closed(&mut slow).await);
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "REQUEST_TIMEOUT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000 ms")
    );
    assert_eq!(header(&headers, "connection"), Some("close"));
    let request_id = header(&headers, "x-request-id").expect("request id header");
    assert_eq!(body["meta"]["request_id"], request_id);

    // The same through the idempotency layer (a signed-in POST with a key).
    let (token, _, _) = sign_up(&server, "patient").await;
    let full = json!({"name": "Late but whole"}).to_string();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /workspaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Idempotency-Key: k-408\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            full.len(),
            &full[..5]
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, _, body) = parse_response(&read_until_closed(&mut slow).await);
    assert_eq!(status, 408, "{body}");
    let retry = unpooled()
        .post(format!("{}/workspaces", server.base))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k-408")
        .header("Content-Type", "application/json")
        .body(full)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201, "{}", retry.text().await.unwrap());
}

fn with_peer(
    mut req: axum::http::Request<axum::body::Body>,
    peer: &str,
) -> axum::http::Request<axum::body::Body> {
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    req
}

async fn call(
    app: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (u16, axum::http::HeaderMap, Value) {
    use tower::ServiceExt;
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn request(method: &str, path: &str) -> axum::http::request::Builder {
    axum::http::Request::builder().method(method).uri(path)
}

fn shim_app(websocket: bool) -> axum::Router {
    let state = state_with(AppConfig::for_tests(), Arc::new(EmbeddedStore::in_memory()));
    let hub = local::ws::Hub::default();
    let rt = realtime::Realtime::new(state, Arc::new(local::ws::HubGateway::new(hub.clone())));
    local::app_with(rt, hub, websocket)
}

/// `POST/GET/DELETE /@connections/{id}` answer only loopback peers (IPv4, IPv6, IPv4-mapped)
/// that are not browser pages (no `Origin`): anyone else gets 403 in the envelope (with
/// API Gateway's `ForbiddenException` type), even on a shim bound to `0.0.0.0`.
#[tokio::test]
async fn management_api_answers_only_loopback_callers() {
    let app = shim_app(true);
    for method in ["POST", "GET", "DELETE"] {
        for peer in [
            "203.0.113.7:4000",
            "[2001:db8::1]:4000",
            "192.168.1.20:5000",
        ] {
            let req = with_peer(
                request(method, "/@connections/abc=")
                    .body("{}".into())
                    .unwrap(),
                peer,
            );
            let (status, headers, body) = call(&app, req).await;
            assert_eq!(status, 403, "{method} from {peer}: {body}");
            assert_eq!(body["error"]["code"], "FORBIDDEN");
            assert_eq!(headers["x-amzn-errortype"], "ForbiddenException");
        }
        // A loopback peer passes the guard: an unknown connection is Gone, as on AWS.
        for peer in ["127.0.0.1:4000", "[::1]:4000", "[::ffff:127.0.0.1]:4000"] {
            let req = with_peer(
                request(method, "/@connections/abc=")
                    .body("{}".into())
                    .unwrap(),
                peer,
            );
            let (status, headers, _) = call(&app, req).await;
            assert_eq!(status, 410, "{method} from {peer}");
            assert_eq!(headers["x-amzn-errortype"], "GoneException");
        }
        // A browser page on this machine (it sends Origin): refused.
        let req = with_peer(
            request(method, "/@connections/abc=")
                .header("Origin", "http://localhost:3000")
                .body("{}".into())
                .unwrap(),
            "127.0.0.1:4000",
        );
        assert_eq!(call(&app, req).await.0, 403, "{method} with Origin");
        // No peer address at all: refused (fail closed).
        let req = request(method, "/@connections/abc=")
            .body("{}".into())
            .unwrap();
        assert_eq!(call(&app, req).await.0, 403, "{method} without a peer");
    }
}

/// Without the WebSocket emulation neither `/ws` nor `/@connections` exists (404 envelope),
/// and the SDK gateway, which needs `/@connections`, is refused at start.
#[tokio::test]
async fn websocket_emulation_off_serves_no_management_api() {
    let app = shim_app(false);
    for (method, path) in [
        ("POST", "/@connections/abc="),
        ("DELETE", "/@connections/abc="),
        ("GET", "/ws"),
    ] {
        let req = with_peer(
            request(method, path).body("{}".into()).unwrap(),
            "127.0.0.1:1",
        );
        let (status, _, body) = call(&app, req).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND");
    }
    let req = with_peer(
        request("GET", "/health")
            .body(axum::body::Body::empty())
            .unwrap(),
        "127.0.0.1:1",
    );
    assert_eq!(call(&app, req).await.0, 200);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = state_with(AppConfig::for_tests(), Arc::new(EmbeddedStore::in_memory()));
    let options = local::Options::default()
        .websocket(false)
        .gateway(local::Gateway::Sdk);
    let err = local::serve_options(listener, state, options, async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens `/ws` with extra handshake headers; `Err((status, body))` when refused.
async fn open(
    server: &TestServer,
    query_token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), (u16, Value)> {
    let ws_base = server.base.replacen("http://", "ws://", 1);
    let url = match query_token {
        Some(t) => format!("{ws_base}/ws?token={t}"),
        None => format!("{ws_base}/ws"),
    };
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(ok) => Ok(ok),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).expect("JSON refusal"))
                .unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Sends a command and returns its reply.
async fn command(ws: &mut Ws, kind: &str) -> Value {
    ws.send(Message::Text(
        json!({"type": kind, "data": {}, "request_id": "c1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let msg = tokio::time::timeout(SAFETY, ws.next())
            .await
            .expect("a reply in time")
            .expect("open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["request_id"] == "c1" {
                return v;
            }
        }
    }
}

/// A handshake `Origin` must be in `MOMENTUM_CORS_ORIGINS`; no `Origin` (native clients)
/// is fine. With the local default allowlist, loopback origins on any port work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origin_is_checked_against_the_allowlist() {
    let config = config_with(|c| {
        c.cors_origins = vec!["https://app.example.com".into()];
        c.local_default_origins = false;
    });
    let server = TestServer::serve(state_with(config, Arc::new(EmbeddedStore::in_memory()))).await;
    let (token, _, _) = sign_up(&server, "origins").await;
    for origin in ["https://evil.example.com", "http://localhost:3000", "null"] {
        let (status, body) = open(&server, Some(&token), &[("Origin", origin)])
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(status, 403, "{origin}");
        assert_eq!(body["error"]["code"], "FORBIDDEN", "{origin}");
    }
    let (mut listed, _) = open(
        &server,
        Some(&token),
        &[("Origin", "https://app.example.com")],
    )
    .await
    .expect("listed origin");
    assert_eq!(command(&mut listed, "ping").await["type"], "pong");
    let (mut native, _) = open(&server, Some(&token), &[]).await.expect("no Origin");
    assert_eq!(command(&mut native, "ping").await["type"], "pong");

    // `cargo run -p local` defaults: a dev server on any loopback port may connect.
    let local = TestServer::serve(state_with(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
    ))
    .await;
    let (token, _, _) = sign_up(&local, "devserver").await;
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
    ] {
        assert!(
            open(&local, Some(&token), &[("Origin", origin)])
                .await
                .is_ok(),
            "{origin}"
        );
    }
    let (status, _) = open(
        &local,
        Some(&token),
        &[("Origin", "https://evil.example.com")],
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(status, 403);
}

/// `Sec-WebSocket-Protocol: momentum.v1, bearer.<token>` authenticates without a query
/// string; the server selects `momentum.v1` and never echoes the token. `bearer.` without
/// `momentum.v1` is 400 naming the header; a forged token 401; `?token=` still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_sec_websocket_protocol() {
    let server = TestServer::serve(state_with(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
    ))
    .await;
    let (token, user_id, _) = sign_up(&server, "subproto").await;
    let offered = format!("momentum.v1, bearer.{token}");
    let (mut ws, resp) = open(&server, None, &[("Sec-WebSocket-Protocol", &offered)])
        .await
        .expect("handshake with the token in the subprotocol");
    let answered: Vec<&str> = resp
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(answered, ["momentum.v1"]);
    for (name, value) in resp.headers() {
        assert!(
            !value.to_str().unwrap_or("").contains(&token),
            "{name} echoes the token"
        );
    }
    let info = command(&mut ws, "get_connection_info").await;
    assert_eq!(info["success"], true, "{info}");
    assert_eq!(info["data"]["user_id"], user_id);

    let (status, body) = open(
        &server,
        None,
        &[("Sec-WebSocket-Protocol", &format!("bearer.{token}"))],
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(body["error"]["field"], "Sec-WebSocket-Protocol");
    assert!(!body.to_string().contains(&token));

    let (status, body) = open(
        &server,
        None,
        &[("Sec-WebSocket-Protocol", "momentum.v1, bearer.x.y.z")],
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    let (mut legacy, resp) = open(&server, Some(&token), &[]).await.expect("query token");
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    assert_eq!(command(&mut legacy, "ping").await["type"], "pong");
}

/// The server answers a client's close frame with its own (echoing the code), so clients
/// see a clean close rather than 1006; the socket's connection row is then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_frame_is_answered() {
    let server = TestServer::serve(state_with(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
    ))
    .await;
    let (token, _, _) = sign_up(&server, "closer").await;
    let (mut ws, _) = open(&server, Some(&token), &[]).await.unwrap();
    let info = command(&mut ws, "get_connection_info").await;
    let connection_id = info["data"]["connection_id"].as_str().unwrap().to_owned();
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let answer = tokio::time::timeout(SAFETY, ws.next())
        .await
        .expect("an answer to the close frame");
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(SAFETY, ws.next())
            .await
            .unwrap()
            .is_none(),
        "closed after the handshake"
    );
    let registry = realtime::Realtime::new(
        server.state.clone(),
        Arc::new(local::ws::HubGateway::new(local::ws::Hub::default())),
    )
    .registry;
    // `$disconnect` runs right after the close handshake; wait for it, bounded.
    let deadline = tokio::time::Instant::now() + SAFETY;
    while registry.get(&connection_id).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection row kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shutdown: the listener closes, a request in flight is answered, open sockets get a
/// close frame (1001) and their rows are removed, the serve future ends well within the
/// grace, and the embedded store is flushed (its write-ahead log checkpointed to empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_closes_sockets_and_flushes_the_store() {
    let dir = std::env::temp_dir().join(format!("momentum-shutdown-{}", uuid::Uuid::new_v4()));
    let db = dir.join("momentum.sqlite3");
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let config = config_with(|c| c.timeouts.shutdown_grace = Duration::from_secs(60));
    let state = state_with(config, store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(local::serve_options(
        listener,
        state.clone(),
        local::Options::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let base = format!("http://{addr}");
    let http = unpooled();
    let register = |name: &str| json!({"email": format!("{name}@example.com"), "username": name, "password": "correct horse battery"});
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&register("first"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "first@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["access_token"].as_str().unwrap().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .unwrap();
    let info = command(&mut ws, "get_connection_info").await;
    let connection_id = info["data"]["connection_id"].as_str().unwrap().to_owned();

    // A request in flight: its headers are read and the server has started on its body
    // (the 100 Continue says so), but the body is not sent yet.
    let body = register("second").to_string();
    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /auth/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(read_head(&mut in_flight).await.starts_with("HTTP/1.1 100"));

    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    // The socket is told the server is going away.
    match tokio::time::timeout(SAFETY, ws.next())
        .await
        .expect("a close frame")
    {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a 1001 close frame, got {other:?}"),
    }
    // The client answers the close (the next read flushes the reply).
    assert!(
        tokio::time::timeout(SAFETY, ws.next())
            .await
            .unwrap()
            .is_none()
    );
    // No new connections once sockets are being closed.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
    // The request in flight completes.
    in_flight.write_all(body.as_bytes()).await.unwrap();
    let (status, _, answer) = parse_response(&read_until_closed(&mut in_flight).await);
    assert_eq!(status, 202, "{answer}");

    tokio::time::timeout(SAFETY, serving)
        .await
        .expect("serve ends")
        .unwrap()
        .expect("clean shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ended by itself, not by the grace"
    );
    let registry = realtime::Realtime::new(
        state.clone(),
        Arc::new(local::ws::HubGateway::new(local::ws::Hub::default())),
    )
    .registry;
    assert!(
        registry.get(&connection_id).await.unwrap().is_none(),
        "$disconnect ran for the closed socket"
    );
    let wal = std::fs::metadata(dir.join("momentum.sqlite3-wal")).map(|m| m.len());
    assert!(
        matches!(wal, Ok(0) | Err(_)),
        "the write-ahead log is checkpointed: {wal:?}"
    );
    drop(state);
    let _ = std::fs::remove_dir_all(&dir);
}
