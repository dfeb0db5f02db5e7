//! Matrix rows of push devices (`/auth/devices`): the caller's own, any signed-in user.

use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, Who, row};

/// A fresh device body (a unique token: registering a token again would move it).
fn device_body() -> serde_json::Value {
    json!({
        "platform": "apns",
        "token": uuid::Uuid::new_v4().simple().to_string(),
        "app_id": "com.example.momentum",
    })
}

/// A new device of `who`'s (the owner's for the anonymous caller, who has no session).
async fn device_of(f: &Fixture, who: Who) -> String {
    let as_who = if who == Who::Anonymous {
        Who::Owner
    } else {
        who
    };
    f.call(as_who, Method::POST, "/auth/devices", Some(&device_body()))
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
            "/auth/devices",
            Expect::AnyUser(201),
            |_, _| Box::pin(async { Req::new("/auth/devices").body(device_body()) }),
        ),
        row(
            Method::GET,
            "/auth/devices",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/auth/devices") }),
        ),
        row(
            Method::DELETE,
            "/auth/devices/{id}",
            Expect::AnyUser(200),
            |f, who| {
                Box::pin(async move {
                    let id = device_of(f, who).await;
                    Req::new(format!("/auth/devices/{id}"))
                })
            },
        ),
    ]
}
