//! Matrix rows of the `/ws/*` presence and admin routes.

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Req, Row, Who, row};

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/ws/online",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/ws/online?workspace_id={}", f.ws)) }),
        ),
        row(
            Method::GET,
            "/ws/stats",
            Expect::MinRole(Role::Admin, 200),
            |f, _| Box::pin(async move { Req::new(format!("/ws/stats?workspace_id={}", f.ws)) }),
        ),
        row(
            Method::POST,
            "/ws/send",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    // Members may send `text`; other types are the admins'.
                    Req::new("/ws/send").body(json!({
                        "workspace_id": f.ws, "to_user_id": f.user_id(Who::Member),
                        "message_type": "notification", "data": {"text": "hi"}
                    }))
                })
            },
        ),
        row(
            Method::POST,
            "/ws/broadcast",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new("/ws/broadcast")
                        .body(json!({"workspace_id": f.ws, "data": {"text": "all"}}))
                })
            },
        ),
        row(
            Method::POST,
            "/ws/cleanup",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move { Req::new("/ws/cleanup").body(json!({"workspace_id": f.ws})) })
            },
        ),
    ]
}
