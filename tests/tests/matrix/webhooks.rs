//! Matrix rows of webhooks (one per route; see matrix/mod.rs). Webhooks are `Manage`: admins
//! and owners; members and guests 403; outsiders 404.

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, row};

/// Nothing listens there: attempts fail fast, which these rows do not look at.
const URL: &str = "http://127.0.0.1:9/hook";

/// A fresh webhook of the fixture workspace, made by the owner: its id.
async fn fresh_webhook(f: &Fixture) -> String {
    let created = f
        .as_owner(
            Method::POST,
            "/webhooks",
            json!({"workspace_id": f.ws, "url": URL, "enabled": false}),
            201,
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

pub fn rows() -> Vec<Row> {
    let admin = Expect::MinRole(Role::Admin, 200);
    vec![
        row(Method::GET, "/webhooks", admin, |f, _| {
            Box::pin(async move { Req::new(format!("/webhooks?workspace_id={}", f.ws)) })
        }),
        row(
            Method::POST,
            "/webhooks",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/webhooks")
                        .body(json!({"workspace_id": f.ws, "url": URL, "enabled": false}))
                })
            },
        ),
        row(Method::GET, "/webhooks/{id}", admin, |f, _| {
            Box::pin(async move { Req::new(format!("/webhooks/{}", fresh_webhook(f).await)) })
        }),
        row(Method::PUT, "/webhooks/{id}", admin, |f, _| {
            Box::pin(async move {
                Req::new(format!("/webhooks/{}", fresh_webhook(f).await))
                    .body(json!({"description": "changed"}))
            })
        }),
        row(Method::DELETE, "/webhooks/{id}", admin, |f, _| {
            Box::pin(async move { Req::new(format!("/webhooks/{}", fresh_webhook(f).await)) })
        }),
        row(
            Method::POST,
            "/webhooks/{id}/rotate-secret",
            admin,
            |f, _| {
                Box::pin(async move {
                    Req::new(format!(
                        "/webhooks/{}/rotate-secret",
                        fresh_webhook(f).await
                    ))
                    .body(json!({}))
                })
            },
        ),
        row(Method::POST, "/webhooks/{id}/test", admin, |f, _| {
            Box::pin(async move {
                Req::new(format!("/webhooks/{}/test", fresh_webhook(f).await)).body(json!({}))
            })
        }),
        row(Method::GET, "/webhooks/{id}/deliveries", admin, |f, _| {
            Box::pin(
                async move { Req::new(format!("/webhooks/{}/deliveries", fresh_webhook(f).await)) },
            )
        }),
        row(
            Method::POST,
            "/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            admin,
            |f, _| {
                Box::pin(async move {
                    let id = fresh_webhook(f).await;
                    let delivery = f
                        .as_owner(
                            Method::POST,
                            &format!("/webhooks/{id}/test"),
                            json!({}),
                            200,
                        )
                        .await;
                    let did = delivery["id"].as_str().unwrap().to_owned();
                    Req::new(format!("/webhooks/{id}/deliveries/{did}/redeliver")).body(json!({}))
                })
            },
        ),
    ]
}
