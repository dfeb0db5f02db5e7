//! Matrix rows of cycles (one per route; see matrix/mod.rs). Routes that change a cycle get
//! a fresh one per caller.

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::issues::fresh_issue;
use super::{Expect, Fixture, Req, Row, row};

/// A new cycle in the fixture team, made by the owner: its id.
async fn fresh_cycle(f: &Fixture) -> String {
    let created = f
        .as_owner(
            Method::POST,
            "/cycles",
            json!({"team_id": f.team_id, "starts_on": "2026-03-02", "ends_on": "2026-03-15"}),
            201,
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/cycles",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/cycles?team_id={}&limit=5", f.team_id)) })
            },
        ),
        row(
            Method::POST,
            "/cycles",
            Expect::MinRole(Role::Member, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/cycles").body(json!({
                        "team_id": f.team_id, "starts_on": "2026-04-06", "ends_on": "2026-04-19"
                    }))
                })
            },
        ),
        row(
            Method::GET,
            "/cycles/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/cycles/{}", fresh_cycle(f).await)) }),
        ),
        row(
            Method::PUT,
            "/cycles/{id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/cycles/{}", fresh_cycle(f).await))
                        .body(json!({"name": "renamed", "version": 1}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/cycles/{id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| Box::pin(async move { Req::new(format!("/cycles/{}", fresh_cycle(f).await)) }),
        ),
        row(
            Method::POST,
            "/cycles/{id}/issues",
            Expect::MinRole(Role::Member, 200),
            |f, _| {
                Box::pin(async move {
                    let cycle = fresh_cycle(f).await;
                    let issue = fresh_issue(f).await;
                    Req::new(format!("/cycles/{cycle}/issues")).body(json!({"issue_ids": [issue]}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/cycles/{id}/issues/{issue_id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| {
                Box::pin(async move {
                    let cycle = fresh_cycle(f).await;
                    let issue = f
                        .as_owner(
                            Method::POST,
                            "/issues",
                            json!({"team_id": f.team_id, "title": "in a cycle", "cycle_id": cycle}),
                            201,
                        )
                        .await;
                    Req::new(format!(
                        "/cycles/{cycle}/issues/{}",
                        issue["id"].as_str().unwrap()
                    ))
                })
            },
        ),
        row(
            Method::GET,
            "/cycles/{id}/stats",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/cycles/{}/stats", fresh_cycle(f).await)) })
            },
        ),
    ]
}
