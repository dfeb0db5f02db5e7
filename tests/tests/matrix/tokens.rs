//! Matrix rows of API tokens: the owner's own tokens (`/auth/tokens`, any signed-in user)
//! and a workspace's tokens (admins and owners).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, Who, row};

/// A new read token of `who`'s (the owner's for the anonymous caller, who has no session):
/// its id.
async fn token_of(f: &Fixture, who: Who, body: serde_json::Value) -> String {
    let as_who = if who == Who::Anonymous {
        Who::Owner
    } else {
        who
    };
    f.call(as_who, Method::POST, "/auth/tokens", Some(&body))
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::POST,
            "/auth/tokens",
            Expect::AnyUser(201),
            |_, _| {
                Box::pin(async {
                    Req::new("/auth/tokens").body(json!({"name": "matrix", "scopes": ["read"]}))
                })
            },
        ),
        row(Method::GET, "/auth/tokens", Expect::AnyUser(200), |_, _| {
            Box::pin(async { Req::new("/auth/tokens") })
        }),
        row(
            Method::DELETE,
            "/auth/tokens/{id}",
            Expect::AnyUser(200),
            |f, who| {
                Box::pin(async move {
                    let id = token_of(f, who, json!({"name": "gone", "scopes": ["read"]})).await;
                    Req::new(format!("/auth/tokens/{id}"))
                })
            },
        ),
        row(
            Method::GET,
            "/workspaces/{id}/tokens",
            Expect::MinRole(Role::Admin, 200),
            |f, _| Box::pin(async move { Req::new(format!("/workspaces/{}/tokens", f.ws)) }),
        ),
        row(
            Method::DELETE,
            "/workspaces/{id}/tokens/{token_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let body = json!({"name": "bot", "scopes": ["write"], "workspace_id": f.ws});
                    let id = token_of(f, Who::Owner, body).await;
                    Req::new(format!("/workspaces/{}/tokens/{id}", f.ws))
                })
            },
        ),
    ]
}
