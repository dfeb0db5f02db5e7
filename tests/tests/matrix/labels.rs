//! Matrix rows of labels (one per route; see matrix/mod.rs).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, row};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix} {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A fresh label of the fixture workspace, made by the owner: its id.
async fn fresh_label(f: &Fixture) -> String {
    let label = f
        .as_owner(
            Method::POST,
            "/labels",
            json!({"workspace_id": f.ws, "name": unique("matrix"), "color": "#112233"}),
            201,
        )
        .await;
    label["id"].as_str().unwrap().to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/labels",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/labels?workspace_id={}&limit=5", f.ws)) })
            },
        ),
        row(
            Method::POST,
            "/labels",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/labels").body(json!({
                        "workspace_id": f.ws, "name": unique("new"), "color": "#A1B2C3",
                    }))
                })
            },
        ),
        row(
            Method::GET,
            "/labels/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    let id = fresh_label(f).await;
                    Req::new(format!("/labels/{id}"))
                })
            },
        ),
        row(
            Method::PUT,
            "/labels/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let id = fresh_label(f).await;
                    Req::new(format!("/labels/{id}"))
                        .body(json!({"name": unique("renamed"), "color": "#000000"}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/labels/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let id = fresh_label(f).await;
                    Req::new(format!("/labels/{id}"))
                })
            },
        ),
        row(
            Method::POST,
            "/labels/batch",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/labels/batch").body(json!({
                        "workspace_id": f.ws,
                        "labels": [
                            {"name": unique("batch"), "color": "#010203"},
                            {"name": unique("batch"), "color": "#040506", "level": "project"},
                        ],
                    }))
                })
            },
        ),
        row(
            Method::PUT,
            "/labels/batch",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let a = fresh_label(f).await;
                    let b = fresh_label(f).await;
                    Req::new("/labels/batch").body(json!({"labels": [
                        {"id": a, "color": "#FFFFFF"},
                        {"id": b, "name": unique("batch renamed")},
                    ]}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/labels/batch",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let a = fresh_label(f).await;
                    let b = fresh_label(f).await;
                    Req::new("/labels/batch").body(json!({"ids": [a, b]}))
                })
            },
        ),
    ]
}
