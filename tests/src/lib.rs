//! Helpers for black-box tests: start the real shim on a free loopback port over either
//! store, and reach DynamoDB (moto here, LocalStack where Docker runs).
//!
//! DynamoDB-backed tests read `MOMENTUM_TEST_DYNAMODB_ENDPOINT` (set by `scripts/test.sh`,
//! which starts moto). Without it they print a visible SKIP line; with
//! `MOMENTUM_REQUIRE_DYNAMODB=1` a missing endpoint fails them instead, so CI cannot pass
//! by skipping.

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::clock::SystemClock;
use momentum_shared::config::{AppConfig, StoreKind};
use momentum_shared::storage::Store;
use momentum_shared::storage::dynamo::{DynamoSettings, DynamoStore};
use momentum_shared::storage::embedded::EmbeddedStore;
use momentum_shared::storage::schema::TableNames;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// The test binaries that link these helpers allocate like the deployed binaries (each sets
/// mimalloc in its main.rs; `momentum-shared` sets no allocator), so timings in the tests
/// match the shim's. Only this crate's own tests link it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use momentum_shared::http::STORAGE_CALLS_HEADER;

/// Says that a test is skipped, past libtest's output capture so it shows in every run.
pub fn visible_skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// The moto (or other DynamoDB-compatible) endpoint for tests, if configured.
pub fn dynamodb_endpoint(test: &str) -> Option<String> {
    match std::env::var("MOMENTUM_TEST_DYNAMODB_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var("MOMENTUM_REQUIRE_DYNAMODB").as_deref() == Ok("1") => {
            panic!(
                "{test}: MOMENTUM_REQUIRE_DYNAMODB=1 but MOMENTUM_TEST_DYNAMODB_ENDPOINT is unset"
            )
        }
        _ => {
            visible_skip(
                test,
                "no DynamoDB endpoint (set MOMENTUM_TEST_DYNAMODB_ENDPOINT or run scripts/test.sh, which starts moto)",
            );
            None
        }
    }
}

/// moto for SNS (`MOMENTUM_TEST_SNS_ENDPOINT`; scripts/test.sh runs it apart from the
/// DynamoDB one), or the DynamoDB endpoint when only one moto runs. Skips like that one.
pub fn sns_endpoint(test: &str) -> Option<String> {
    match std::env::var("MOMENTUM_TEST_SNS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => dynamodb_endpoint(test),
    }
}

/// Table names shared by the tests of one process (a unique prefix per run).
/// Fresh table names for one store. moto snapshots every table a transaction touches (a deep
/// copy, for rollback), so tables shared by many tests make every transaction slower and
/// moto's memory grow; small tables per test keep it fast.
pub fn test_tables() -> TableNames {
    TableNames::with_prefix(&format!(
        "t{}-",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
}

/// A DynamoDB store on the test endpoint with the tables created.
pub async fn dynamodb_store(endpoint: &str, tables: TableNames) -> DynamoStore {
    let store = DynamoStore::connect(&DynamoSettings {
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        tables,
    })
    .await;
    store.create_tables().await.expect("create tables");
    store
}

/// Which store a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    DynamoDb,
}

/// The shim, serving real HTTP on 127.0.0.1 until dropped.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A test configuration and a fresh store on `backend` (on DynamoDB: new tables, named in
/// the configuration); `None` when DynamoDB is not available (skip printed).
pub async fn backend_store(backend: Backend, test: &str) -> Option<(AppConfig, Arc<dyn Store>)> {
    let mut config = AppConfig::for_tests();
    // Webhook tests deliver to receivers on 127.0.0.1 (MOMENTUM_WEBHOOKS_ALLOW_PRIVATE=1).
    config.webhooks.allow_private = true;
    let store: Arc<dyn Store> = match backend {
        Backend::Embedded => Arc::new(EmbeddedStore::in_memory()),
        Backend::DynamoDb => {
            let endpoint = dynamodb_endpoint(test)?;
            config.store = StoreKind::DynamoDb {
                endpoint: Some(endpoint.clone()),
                region: Some("us-east-1".into()),
                create_tables: true,
            };
            config.tables = test_tables();
            // moto is one Python process serving every suite's tables: in a full run on a
            // loaded machine a call can take seconds, and the production budget (20 s, under
            // API Gateway's 29 s) then turns a slow emulator into a 503. Tests of the budget
            // itself set their own (`faults.rs`).
            config.request_budget = std::time::Duration::from_secs(120);
            Arc::new(dynamodb_store(&endpoint, config.tables.clone()).await)
        }
    };
    Some((config, store))
}

impl TestServer {
    /// Starts the shim on `backend`; `None` when DynamoDB is not available (skip printed).
    pub async fn start(backend: Backend, test: &str) -> Option<Self> {
        Self::start_with_clock(backend, test, Arc::new(SystemClock)).await
    }

    /// `start`, with the server's time read from `clock` (tests move a `ManualClock`).
    pub async fn start_with_clock(
        backend: Backend,
        test: &str,
        clock: Arc<dyn momentum_shared::clock::Clock>,
    ) -> Option<Self> {
        let (mut config, store) = backend_store(backend, test).await?;
        config.expose_storage_calls = true;
        let state = AppState::with_store(config, store, clock);
        Some(Self::serve(state).await)
    }

    pub async fn serve(state: AppState) -> Self {
        Self::serve_with(state, local::Gateway::Direct).await
    }

    /// The shim over `state` with the broadcaster posting through `gateway`.
    pub async fn serve_with(state: AppState, gateway: local::Gateway) -> Self {
        // MOMENTUM_TEST_LOG=debug (any EnvFilter) shows the server's logs while debugging.
        if let Ok(filter) = std::env::var("MOMENTUM_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            local::serve_with(listener, served, gateway, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Self {
            base,
            state,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    /// Sends a request; returns status, envelope and the storage calls it cost.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.request(method, path, token, None, body).await
    }

    /// Sends a request with an optional `If-Match` header (optimistic concurrency).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(v) = if_match {
            req = req.header("If-Match", v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Reply::read(req.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// A PUT with an `If-Match` header.
    pub async fn put_if_match(
        &self,
        path: &str,
        token: Option<&str>,
        if_match: &str,
        body: &Value,
    ) -> Reply {
        self.request(Method::PUT, path, token, Some(if_match), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response is not JSON ({status}): {text}"));
        Self {
            status,
            body,
            headers,
        }
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    pub fn storage_calls(&self) -> u64 {
        self.headers
            .get(STORAGE_CALLS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("x-storage-calls header")
    }

    /// The envelope without `meta` (request id, time): what must match between two
    /// responses that may not reveal a difference.
    pub fn without_meta(&self) -> Value {
        let mut v = self.body.clone();
        v.as_object_mut().unwrap().remove("meta");
        v
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {}",
            self.body
        );
        self
    }
}

/// Runs each listed `async fn(TestServer)` once on the embedded store and once on DynamoDB.
#[macro_export]
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = $crate::TestServer::start($crate::Backend::Embedded, stringify!($case))
                        .await
                        .expect("embedded server");
                    super::$case(server).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(server) =
                        $crate::TestServer::start($crate::Backend::DynamoDb, stringify!($case)).await
                    {
                        super::$case(server).await;
                    }
                }
            )*
        }
    };
}

/// Like `on_every_store!`, for cases that move time: each `async fn(TestServer, ManualClock)`
/// runs on a server whose clock is the `ManualClock` it is given.
#[macro_export]
macro_rules! on_every_store_with_clock {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let clock = momentum_shared::clock::ManualClock::starting_now();
                    let server = $crate::TestServer::start_with_clock(
                        $crate::Backend::Embedded,
                        stringify!($case),
                        std::sync::Arc::new(clock.clone()),
                    )
                    .await
                    .expect("embedded server");
                    super::$case(server, clock).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let clock = momentum_shared::clock::ManualClock::starting_now();
                    if let Some(server) = $crate::TestServer::start_with_clock(
                        $crate::Backend::DynamoDb,
                        stringify!($case),
                        std::sync::Arc::new(clock.clone()),
                    )
                    .await
                    {
                        super::$case(server, clock).await;
                    }
                }
            )*
        }
    };
}

/// The `id` of a record (an envelope's `data`, a list item).
pub fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// The password of every user `sign_up` registers.
pub const PASSWORD: &str = "correct horse battery";

/// Registers and logs in a new user; returns (access token, user id, email).
pub async fn sign_up(server: &TestServer, name: &str) -> (String, String, String) {
    let email = format!(
        "{name}.{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let creds = serde_json::json!({"email": email, "username": name, "password": PASSWORD});
    server
        .post("/auth/register", None, &creds)
        .await
        .expect(202);
    let login = server
        .post(
            "/auth/login",
            None,
            &serde_json::json!({"email": email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    (
        login.data()["access_token"].as_str().unwrap().to_owned(),
        login.data()["user"]["id"].as_str().unwrap().to_owned(),
        email,
    )
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
    pub id: String,
    pub email: String,
    pub username: String,
}

impl User {
    /// The token, as the request helpers take it.
    pub fn t(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// Registers and logs in a new user named `name` (3-32 of `[A-Za-z0-9_.-]`).
pub async fn user(server: &TestServer, name: &str) -> User {
    let (token, id, email) = sign_up(server, name).await;
    User {
        token,
        id,
        email,
        username: name.to_owned(),
    }
}

/// Makes `user` a member of a workspace with `role`, directly in storage, under their own
/// username (so `@username` mentions resolve to them).
pub async fn join(
    server: &TestServer,
    workspace_id: &str,
    user: &User,
    role: momentum_shared::kernel::access::Role,
) {
    seed_named_member(
        server,
        workspace_id,
        &user.id,
        &user.email,
        &user.username,
        role,
    )
    .await;
}

/// A new user made a member of a workspace with `role` (`user` then `join`).
pub async fn new_member(
    server: &TestServer,
    workspace_id: &str,
    name: &str,
    role: momentum_shared::kernel::access::Role,
) -> User {
    let u = user(server, name).await;
    join(server, workspace_id, &u, role).await;
    u
}

/// A workspace ("Acme") with its owner, an admin, a member and a guest, and an outsider who
/// owns another workspace ("Elsewhere"); the default team and workflow of each.
pub struct World {
    pub owner: User,
    pub admin: User,
    pub member: User,
    pub guest: User,
    pub outsider: User,
    pub ws: String,
    pub team_id: String,
    pub workflow_id: String,
    pub other_ws: String,
    pub other_team_id: String,
    pub other_workflow_id: String,
}

/// Builds a [`World`] (members joined directly in storage).
pub async fn world(server: &TestServer) -> World {
    use momentum_shared::kernel::access::Role;
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    let owner = user(server, "owner").await;
    let created = server
        .post(
            "/workspaces",
            owner.t(),
            &serde_json::json!({"name": "Acme"}),
        )
        .await
        .expect(201);
    let data = created.data();
    let ws = text(&data["id"]);
    let admin = user(server, "admin").await;
    let member = user(server, "member").await;
    let guest = user(server, "guest").await;
    join(server, &ws, &admin, Role::Admin).await;
    join(server, &ws, &member, Role::Member).await;
    join(server, &ws, &guest, Role::Guest).await;
    let outsider = user(server, "outsider").await;
    let other = server
        .post(
            "/workspaces",
            outsider.t(),
            &serde_json::json!({"name": "Elsewhere"}),
        )
        .await
        .expect(201);
    let o = other.data();
    World {
        owner,
        admin,
        member,
        guest,
        outsider,
        team_id: text(&data["default_team"]["id"]),
        workflow_id: text(&data["default_workflow"]["id"]),
        ws,
        other_ws: text(&o["id"]),
        other_team_id: text(&o["default_team"]["id"]),
        other_workflow_id: text(&o["default_workflow"]["id"]),
    }
}

impl World {
    /// The change records of the workspace after `since` (up to 100), read by the owner.
    pub async fn changes_since(&self, server: &TestServer, since: i64) -> Vec<Value> {
        // Every page, as a client does: numbers of failed commits (skips) take room in a
        // page without appearing in it.
        let mut cursor = since;
        let mut out = Vec::new();
        loop {
            let page = server
                .get(
                    &format!("/workspaces/{}/changes?since={cursor}&limit=100", self.ws),
                    self.owner.t(),
                )
                .await
                .expect(200);
            let data = page.data();
            out.extend(data["changes"].as_array().unwrap().iter().cloned());
            cursor = data["last_seq"].as_i64().unwrap();
            if data["has_more"] != Value::Bool(true) {
                return out;
            }
        }
    }

    /// The workspace's latest change sequence number.
    pub async fn last_seq(&self, server: &TestServer) -> i64 {
        server
            .get(
                &format!("/workspaces/{}/changes?since=0&limit=1000", self.ws),
                self.owner.t(),
            )
            .await
            .expect(200)
            .data()["last_seq"]
            .as_i64()
            .unwrap()
    }
}

/// A new workspace named `name` seen by its new owner ("owner"): its default team and
/// workflow, and the workflow's state ids by name.
pub struct Ws {
    pub token: String,
    pub user_id: String,
    pub ws: String,
    pub team: String,
    pub team_key: String,
    pub workflow: String,
    /// State ids by name (Triage, Backlog, Todo, In Progress, Done, Canceled).
    pub states: std::collections::HashMap<String, String>,
}

impl Ws {
    pub fn state(&self, name: &str) -> &str {
        &self.states[name]
    }
}

pub async fn workspace(server: &TestServer, name: &str) -> Ws {
    let (token, user_id, _) = sign_up(server, "owner").await;
    let created = server
        .post(
            "/workspaces",
            Some(&token),
            &serde_json::json!({"name": name}),
        )
        .await
        .expect(201);
    let d = created.data();
    Ws {
        token,
        user_id,
        ws: d["id"].as_str().unwrap().to_owned(),
        team: d["default_team"]["id"].as_str().unwrap().to_owned(),
        team_key: d["default_team"]["key"].as_str().unwrap().to_owned(),
        workflow: d["default_workflow"]["id"].as_str().unwrap().to_owned(),
        states: d["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| {
                (
                    st["name"].as_str().unwrap().to_owned(),
                    st["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

/// The events (`label.created`, ...) of a workspace's change log, in order.
pub async fn change_events(server: &TestServer, token: &str, workspace_id: &str) -> Vec<String> {
    let page = server
        .get(
            &format!("/workspaces/{workspace_id}/changes?since=0&limit=1000"),
            Some(token),
        )
        .await
        .expect(200);
    page.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["event"].as_str().unwrap().to_owned())
        .collect()
}

/// Makes a user a member of a workspace directly in storage (for tests that are about
/// something other than invitations).
pub async fn seed_member(
    server: &TestServer,
    workspace_id: &str,
    user_id: &str,
    email: &str,
    role: momentum_shared::kernel::access::Role,
) {
    seed_named_member(server, workspace_id, user_id, email, "seeded", role).await;
}

async fn seed_named_member(
    server: &TestServer,
    workspace_id: &str,
    user_id: &str,
    email: &str,
    username: &str,
    role: momentum_shared::kernel::access::Role,
) {
    use momentum_shared::areas::workspaces::membership_of;
    use momentum_shared::kernel::{access::Member, keys, record::record_item};
    use momentum_shared::storage::{Table, WriteOp};
    let member = Member {
        workspace_id: workspace_id.to_owned(),
        user_id: user_id.to_owned(),
        role,
        username: username.to_owned(),
        email: email.to_owned(),
        display_name: None,
        joined_at: "2026-01-01T00:00:00Z".into(),
    };
    server
        .state
        .store
        .transact(vec![
            WriteOp::put(
                Table::Main,
                record_item(&keys::member(workspace_id, user_id), "member", &member),
            ),
            WriteOp::put(
                Table::Main,
                record_item(
                    &keys::membership(user_id, workspace_id),
                    "membership",
                    &membership_of(&member),
                ),
            ),
        ])
        .await
        .expect("seed member");
}

/// A WebSocket client of the shim (tokio-tungstenite): replies are matched to requests by
/// `request_id`; events that arrive meanwhile are kept in order.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pending: std::collections::VecDeque<Value>,
    next_id: u64,
}

impl WsClient {
    /// Connects with `?token=`; `Err(status)` when the handshake is refused.
    pub async fn connect(server: &TestServer, token: Option<&str>) -> Result<Self, u16> {
        let ws_base = server.base.replacen("http://", "ws://", 1);
        let url = match token {
            Some(t) => format!("{ws_base}/ws?token={t}"),
            None => format!("{ws_base}/ws"),
        };
        match tokio_tungstenite::connect_async(url).await {
            Ok((stream, _)) => Ok(Self {
                stream,
                pending: Default::default(),
                next_id: 0,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    pub async fn send_text(&mut self, text: String) {
        use futures::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }

    async fn next_message(&mut self, wait: std::time::Duration) -> Option<Value> {
        use futures::StreamExt;
        loop {
            let msg = tokio::time::timeout(wait, self.stream.next())
                .await
                .ok()??;
            match msg.ok()? {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    return Some(serde_json::from_str(&t).expect("JSON message"));
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Sends a command and waits for its reply (events that come first are queued).
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        self.next_id += 1;
        let rid = format!("r{}", self.next_id);
        let msg = serde_json::json!({"type": kind, "data": data, "request_id": rid});
        self.send_text(msg.to_string()).await;
        self.reply_to(&rid).await
    }

    /// Waits for the reply with `request_id` (a bound on a hang, not a timing assertion: a
    /// command against moto on a loaded 2-core machine can take seconds).
    pub async fn reply_to(&mut self, rid: &str) -> Value {
        loop {
            let msg = self
                .next_message(std::time::Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("no reply to {rid}"));
            if msg["request_id"] == rid {
                return msg;
            }
            self.pending.push_back(msg);
        }
    }

    /// Waits for the next message (event or unmatched reply), up to `wait`.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        self.next_message(wait).await
    }

    /// Collects events until `n` arrived or `wait` passed without one.
    pub async fn events(&mut self, n: usize, wait: std::time::Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next(wait).await {
                Some(v) if v["type"] == "event" => out.push(v),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// Waits until the server closes the connection (a close frame or the end of the
    /// stream); messages that arrive first are kept. `false` when `wait` passes first.
    pub async fn closed_within(&mut self, wait: std::time::Duration) -> bool {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => return true,
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => self
                    .pending
                    .push_back(serde_json::from_str(&t).expect("JSON message")),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The messages received so far that no request or `next` has taken.
    pub fn received(&self) -> &std::collections::VecDeque<Value> {
        &self.pending
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// Registers `name` and logs in through the services of `state` (no HTTP): the access token
/// and the user id. For tests that drive a state of their own (fan-out, sharding).
pub async fn sign_in_directly(state: &AppState, name: &str) -> (String, String) {
    use momentum_shared::areas::auth::{LoginRequest, RegisterRequest};
    let email = format!("{name}@example.com");
    state
        .auth
        .register(
            None,
            RegisterRequest {
                email: email.clone(),
                username: name.into(),
                password: PASSWORD.into(),
                display_name: None,
            },
        )
        .await
        .unwrap();
    let login = state
        .auth
        .login(
            None,
            LoginRequest {
                email,
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap();
    (login.tokens.access_token, login.user.id)
}
