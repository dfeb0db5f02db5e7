//! Matrix rows of the inbox (`/notifications`, preferences: the caller's own, any signed-in
//! user) and of issue subscriptions (whoever may read the issue).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::issues::fresh_issue;
use super::{Expect, Fixture, Req, Row, Who, row};

/// A notification of the owner's (an issue the admin assigned to them), once the dispatcher
/// wrote it: its id.
async fn owners_notification(f: &Fixture) -> String {
    let issue = f
        .call(
            Who::Admin,
            Method::POST,
            "/issues",
            Some(&json!({"team_id": f.team_id, "title": "for the owner",
                         "assignee_id": f.user_ids[&Who::Owner]})),
        )
        .await
        .expect(201)
        .data()["id"]
        .clone();
    for _ in 0..400 {
        let inbox = f
            .call(Who::Owner, Method::GET, "/notifications", None)
            .await
            .expect(200);
        if let Some(n) = inbox.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["subject_id"] == issue)
        {
            return n["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the owner was never notified of {issue}");
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/notifications",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/notifications?unread=true") }),
        ),
        row(
            Method::GET,
            "/notifications/unread-count",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/notifications/unread-count") }),
        ),
        // Only its recipient may change a notification; to anyone else it does not exist.
        row(
            Method::PUT,
            "/notifications/{id}",
            Expect::Custom(|who| match who {
                Who::Owner => 200,
                Who::Anonymous => 401,
                _ => 404,
            }),
            |f, _| {
                Box::pin(async move {
                    let id = owners_notification(f).await;
                    Req::new(format!("/notifications/{id}")).body(json!({"read": true}))
                })
            },
        ),
        row(
            Method::POST,
            "/notifications/mark-read",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/notifications/mark-read").body(json!({})) }),
        ),
        row(
            Method::GET,
            "/auth/notification-preferences",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/auth/notification-preferences") }),
        ),
        row(
            Method::PUT,
            "/auth/notification-preferences",
            Expect::AnyUser(200),
            |_, _| {
                Box::pin(async {
                    Req::new("/auth/notification-preferences")
                        .body(json!({"comment": {"push": false}}))
                })
            },
        ),
        row(
            Method::POST,
            "/issues/{id}/subscription",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/issues/{}/subscription", fresh_issue(f).await))
                })
            },
        ),
        row(
            Method::DELETE,
            "/issues/{id}/subscription",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/issues/{}/subscription", fresh_issue(f).await))
                })
            },
        ),
        row(
            Method::GET,
            "/issues/{id}/subscribers",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/issues/{}/subscribers", fresh_issue(f).await))
                })
            },
        ),
    ]
}
