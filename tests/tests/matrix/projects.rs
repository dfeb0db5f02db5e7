//! Matrix rows of projects and project statuses (one per route; see matrix/mod.rs).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, row};

fn unique_key() -> String {
    format!(
        "M{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase()
    )
}

/// A new project of the fixture workspace (made by the owner).
async fn project(f: &Fixture) -> String {
    let p = f
        .as_owner(
            Method::POST,
            "/projects",
            json!({"workspace_id": f.ws, "name": "Matrix project", "project_key": unique_key()}),
            201,
        )
        .await;
    p["id"].as_str().unwrap().to_owned()
}

/// A new project status of the fixture workspace (made by the owner).
async fn status(f: &Fixture) -> String {
    let s = f
        .as_owner(
            Method::POST,
            "/project-statuses",
            json!({"workspace_id": f.ws, "name": "Matrix", "category": "planned", "color": "#336699"}),
            201,
        )
        .await;
    s["id"].as_str().unwrap().to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/project-statuses",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(
                    async move { Req::new(format!("/project-statuses?workspace_id={}", f.ws)) },
                )
            },
        ),
        row(
            Method::POST,
            "/project-statuses",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/project-statuses").body(json!({
                        "workspace_id": f.ws, "name": "New", "category": "backlog", "color": "#112233"
                    }))
                })
            },
        ),
        row(
            Method::GET,
            "/project-statuses/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/project-statuses/{}", status(f).await)) })
            },
        ),
        row(
            Method::PUT,
            "/project-statuses/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/project-statuses/{}", status(f).await))
                        .body(json!({"name": "Renamed", "category": "completed"}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/project-statuses/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/project-statuses/{}", status(f).await)) })
            },
        ),
        row(
            Method::GET,
            "/projects",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(
                    async move { Req::new(format!("/projects?workspace_id={}&limit=2", f.ws)) },
                )
            },
        ),
        row(
            Method::POST,
            "/projects",
            Expect::MinRole(Role::Member, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/projects").body(json!({
                        "workspace_id": f.ws, "name": "Mine", "project_key": unique_key(),
                        "priority": "medium",
                    }))
                })
            },
        ),
        row(
            Method::GET,
            "/projects/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/projects/{}", project(f).await)) }),
        ),
        row(
            Method::PUT,
            "/projects/{id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/projects/{}", project(f).await))
                        .body(json!({"description": "matrix", "priority": "high"}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/projects/{id}",
            Expect::MinRole(Role::Member, 200),
            |f, _| Box::pin(async move { Req::new(format!("/projects/{}", project(f).await)) }),
        ),
    ]
}
