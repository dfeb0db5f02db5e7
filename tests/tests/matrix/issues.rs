//! Matrix rows of issues (one per route; see matrix/mod.rs). Routes that change an issue get
//! a fresh one per caller.

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, row};

/// A new issue in the fixture team, made by the owner: its id.
pub async fn fresh_issue(f: &Fixture) -> String {
    let created = f
        .as_owner(
            Method::POST,
            "/issues",
            json!({"team_id": f.team_id, "title": "matrix issue"}),
            201,
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/issues",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/issues?team_id={}&limit=5", f.team_id)) })
            },
        ),
        row(
            Method::POST,
            "/issues",
            Expect::MinRole(Role::Member, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/issues").body(json!({"team_id": f.team_id, "title": "by matrix"}))
                })
            },
        ),
        row(
            Method::GET,
            "/issues/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/issues/{}", fresh_issue(f).await)) }),
        ),
        row(
            Method::PUT,
            "/issues/{id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/issues/{}", fresh_issue(f).await))
                        .body(json!({"title": "renamed", "priority": "high", "version": 1}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/issues/{id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| Box::pin(async move { Req::new(format!("/issues/{}", fresh_issue(f).await)) }),
        ),
        row(
            Method::GET,
            "/issues/{id}/activity",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(
                    async move { Req::new(format!("/issues/{}/activity", fresh_issue(f).await)) },
                )
            },
        ),
        row(
            Method::GET,
            "/issues/{id}/transitions",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/issues/{}/transitions", fresh_issue(f).await))
                })
            },
        ),
        row(
            Method::POST,
            "/issues/{id}/transitions",
            Expect::MinRole(Role::Member, 200),
            |f, _| {
                Box::pin(async move {
                    let issue = fresh_issue(f).await;
                    let allowed = f
                        .as_owner(
                            Method::GET,
                            &format!("/issues/{issue}/transitions"),
                            json!(null),
                            200,
                        )
                        .await;
                    let target = allowed["allowed"][0]["id"].clone();
                    Req::new(format!("/issues/{issue}/transitions"))
                        .body(json!({"state_id": target}))
                })
            },
        ),
        row(
            Method::GET,
            "/issues/{id}/children",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(
                    async move { Req::new(format!("/issues/{}/children", fresh_issue(f).await)) },
                )
            },
        ),
    ]
}
