#![allow(dead_code)] // shared by the matrix rows; not every helper is used by every area
//! The authorization matrix: every route x {owner, admin, member, guest, member of another
//! workspace, anonymous}, with the documented outcome (docs/permissions.md) and, for every
//! refused request, proof that nothing changed (the workspace change log did not move).
//!
//! Each area adds its rows in `matrix/<area>.rs` (`pub fn rows() -> Vec<Row>`), registered in
//! `ALL_ROWS` below. A route served by the shim without a row fails the test.

pub mod auth;
pub mod comments;
pub mod cycles;
pub mod devices;
pub mod invitations;
pub mod issues;
pub mod labels;
pub mod notifications;
pub mod projects;
pub mod realtime;
pub mod teams;
pub mod tokens;
pub mod webhooks;
pub mod workflows;
pub mod workspaces;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use momentum_shared::kernel::access::Role;
use momentum_shared::kernel::changes::log_partition;
use momentum_shared::storage::{Query, Table};
use momentum_tests::{Backend, PASSWORD, Reply, TestServer, new_member, seed_member, sign_up};
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    Owner,
    Admin,
    Member,
    Guest,
    /// Owner of another workspace, member of none of this one's.
    Outsider,
    Anonymous,
}

pub const EVERYONE: [Who; 6] = [
    Who::Owner,
    Who::Admin,
    Who::Member,
    Who::Guest,
    Who::Outsider,
    Who::Anonymous,
];

impl Who {
    pub fn role(self) -> Option<Role> {
        match self {
            Who::Owner => Some(Role::Owner),
            Who::Admin => Some(Role::Admin),
            Who::Member => Some(Role::Member),
            Who::Guest => Some(Role::Guest),
            Who::Outsider | Who::Anonymous => None,
        }
    }
}

/// The expected status for each caller.
#[derive(Clone, Copy)]
pub enum Expect {
    /// Workspace-scoped: callers with at least `min` get `ok`; weaker members 403; the
    /// outsider 404 (the resource is invisible); anonymous 401.
    MinRole(Role, u16),
    /// Any signed-in user gets `ok` (e.g. their own profile or list); anonymous 401.
    AnyUser(u16),
    /// No authentication needed: everyone gets `ok`.
    Public(u16),
    /// Anything else, spelled out.
    Custom(fn(Who) -> u16),
}

impl Expect {
    pub fn status(self, who: Who) -> u16 {
        match self {
            Expect::Public(ok) => ok,
            _ if who == Who::Anonymous => 401,
            Expect::AnyUser(ok) => ok,
            Expect::MinRole(_, _) if who == Who::Outsider => 404,
            Expect::MinRole(min, ok) => {
                if who.role().expect("members have roles") >= min {
                    ok
                } else {
                    403
                }
            }
            Expect::Custom(f) => f(who),
        }
    }
}

/// A concrete request.
pub struct Req {
    pub path: String,
    pub body: Option<Value>,
    /// Send this token instead of the caller's fixture token (for routes that spend it).
    pub token: Option<String>,
    /// Another workspace whose change log must not move when the request is refused.
    pub watch: Option<String>,
}

impl Req {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            body: None,
            token: None,
            watch: None,
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn watch(mut self, workspace_id: impl Into<String>) -> Self {
        self.watch = Some(workspace_id.into());
        self
    }
}

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One route of the matrix. `request` runs once per caller and may create what the request
/// needs first (as the owner), so destructive routes get a fresh target each time.
pub struct Row {
    pub method: Method,
    /// The OpenAPI path template, e.g. `/issues/{id}`.
    pub path: &'static str,
    pub expect: Expect,
    pub request: for<'a> fn(&'a Fixture, Who) -> BoxFut<'a, Req>,
}

pub fn row(
    method: Method,
    path: &'static str,
    expect: Expect,
    request: for<'a> fn(&'a Fixture, Who) -> BoxFut<'a, Req>,
) -> Row {
    Row {
        method,
        path,
        expect,
        request,
    }
}

/// A workspace with one user per role, an outsider with a workspace of their own, and the
/// default team of each.
pub struct Fixture {
    pub server: TestServer,
    pub ws: String,
    pub team_id: String,
    pub other_ws: String,
    pub tokens: HashMap<Who, String>,
    pub user_ids: HashMap<Who, String>,
    pub emails: HashMap<Who, String>,
}

impl Fixture {
    pub async fn new() -> Self {
        let server = TestServer::start(Backend::Embedded, "authorization matrix")
            .await
            .expect("embedded server");
        let mut tokens = HashMap::new();
        let mut user_ids = HashMap::new();
        let mut emails = HashMap::new();
        for who in [
            Who::Owner,
            Who::Admin,
            Who::Member,
            Who::Guest,
            Who::Outsider,
        ] {
            let (token, id, email) = sign_up(&server, &format!("{who:?}").to_lowercase()).await;
            tokens.insert(who, token);
            user_ids.insert(who, id);
            emails.insert(who, email);
        }
        let created = server
            .post(
                "/workspaces",
                Some(&tokens[&Who::Owner]),
                &json!({"name": "Matrix"}),
            )
            .await
            .expect(201);
        let ws = created.data()["id"].as_str().unwrap().to_owned();
        let team_id = created.data()["default_team"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let other = server
            .post(
                "/workspaces",
                Some(&tokens[&Who::Outsider]),
                &json!({"name": "Elsewhere"}),
            )
            .await
            .expect(201);
        let other_ws = other.data()["id"].as_str().unwrap().to_owned();
        let fixture = Self {
            server,
            ws,
            team_id,
            other_ws,
            tokens,
            user_ids,
            emails,
        };
        for who in [Who::Admin, Who::Member, Who::Guest] {
            let ws = fixture.ws.clone();
            fixture.add_member(&ws, who, who.role().unwrap()).await;
        }
        fixture
    }

    /// Makes `who` a member of `ws` with `role` (directly in storage: the matrix tests
    /// authorization, not invitations).
    pub async fn add_member(&self, ws: &str, who: Who, role: Role) {
        seed_member(
            &self.server,
            ws,
            &self.user_ids[&who],
            &self.emails[&who],
            role,
        )
        .await;
    }

    pub fn token(&self, who: Who) -> Option<&str> {
        self.tokens.get(&who).map(String::as_str)
    }

    pub fn user_id(&self, who: Who) -> &str {
        &self.user_ids[&who]
    }

    /// Sends a request as `who`.
    pub async fn call(&self, who: Who, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.server.call(method, path, self.token(who), body).await
    }

    /// Sends a request as the owner and expects `status` (setup of resources).
    pub async fn as_owner(&self, method: Method, path: &str, body: Value, status: u16) -> Value {
        self.call(Who::Owner, method, path, Some(&body))
            .await
            .expect(status)
            .data()
            .clone()
    }

    /// A fresh member of the fixture workspace with `role`: (user id, token).
    pub async fn fresh_member(&self, role: Role) -> (String, String) {
        let u = new_member(&self.server, &self.ws, "extra", role).await;
        (u.id, u.token)
    }

    /// A new token for `who` (a new session), for routes that revoke the one they use.
    pub async fn fresh_token(&self, who: Who) -> Option<String> {
        let email = self.emails.get(&who)?;
        let login = self
            .server
            .post(
                "/auth/login",
                None,
                &json!({"email": email, "password": PASSWORD}),
            )
            .await
            .expect(200);
        Some(login.data()["access_token"].as_str().unwrap().to_owned())
    }

    async fn log_seqs(&self, watched: &[Option<String>]) -> Vec<i64> {
        let mut out = Vec::new();
        for ws in watched.iter().flatten() {
            out.push(self.log_seq(ws).await);
        }
        out
    }

    /// The number of the workspace's latest change record (skips, which close the numbers
    /// of failed commits, hold nothing and do not count).
    pub async fn log_seq(&self, ws: &str) -> i64 {
        let mut cursor = None;
        loop {
            let page = self
                .server
                .state
                .store
                .query(
                    &Query::new(Table::Main, log_partition(ws))
                        .backward()
                        .limit(100)
                        .cursor(cursor),
                )
                .await
                .unwrap();
            if let Some(seq) = page
                .items
                .iter()
                .find(|i| i.get("entity") == Some(&json!("change")))
                .and_then(|i| i.get("seq").and_then(Value::as_i64))
            {
                return seq;
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                return 0;
            }
        }
    }
}

pub fn all_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(auth::rows());
    rows.extend(workspaces::rows());
    rows.extend(teams::rows());
    rows.extend(workflows::rows());
    rows.extend(invitations::rows());
    rows.extend(labels::rows());
    rows.extend(webhooks::rows());
    rows.extend(projects::rows());
    rows.extend(issues::rows());
    rows.extend(cycles::rows());
    rows.extend(comments::rows());
    rows.extend(realtime::rows());
    rows.extend(tokens::rows());
    rows.extend(devices::rows());
    rows.extend(notifications::rows());
    rows
}

/// Runs every row for every caller.
pub async fn run_matrix(fixture: Arc<Fixture>, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for r in &rows {
        for who in EVERYONE {
            let req = (r.request)(&fixture, who).await;
            let watched = [
                Some(fixture.ws.clone()),
                Some(fixture.other_ws.clone()),
                req.watch.clone(),
            ];
            let before = fixture.log_seqs(&watched).await;
            let token = match (&req.token, who) {
                (_, Who::Anonymous) => None,
                (Some(t), _) => Some(t.as_str()),
                (None, _) => fixture.token(who),
            };
            let reply = fixture
                .server
                .call(r.method.clone(), &req.path, token, req.body.as_ref())
                .await;
            let expected = r.expect.status(who);
            if reply.status.as_u16() != expected {
                failures.push(format!(
                    "{} {} as {who:?}: expected {expected}, got {} {}",
                    r.method, req.path, reply.status, reply.body
                ));
                continue;
            }
            if expected >= 400 {
                let after = fixture.log_seqs(&watched).await;
                if after != before {
                    failures.push(format!(
                        "{} {} as {who:?}: refused ({expected}) but the change log moved {before:?} -> {after:?}",
                        r.method, req.path
                    ));
                }
                if reply.body["success"] != json!(false)
                    || reply.body["error"]["code"].as_str().is_none()
                {
                    failures.push(format!(
                        "{} {} as {who:?}: error without envelope: {}",
                        r.method, req.path, reply.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} matrix failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The (method, path) of every route in the served OpenAPI document.
pub fn served_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(local::openapi()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}
