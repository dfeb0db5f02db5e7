//! Matrix rows of comments (one per route; see matrix/mod.rs).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, Who, row};

/// A new issue of the fixture workspace (made by the owner, in the default team).
async fn issue(f: &Fixture) -> String {
    let issue = f
        .as_owner(
            Method::POST,
            "/issues",
            json!({"team_id": f.team_id, "title": "matrix"}),
            201,
        )
        .await;
    issue["id"].as_str().unwrap().to_owned()
}

/// A new comment by the fixture's member on a new issue.
async fn members_comment(f: &Fixture) -> String {
    let issue = issue(f).await;
    let c = f
        .call(
            Who::Member,
            Method::POST,
            "/comments",
            Some(&json!({"issue_id": issue, "body": "by the member"})),
        )
        .await
        .expect(201);
    c.data()["id"].as_str().unwrap().to_owned()
}

/// Editing: the author only (here the member); everyone else in the workspace 403.
fn author_only(who: Who) -> u16 {
    match who {
        Who::Member => 200,
        Who::Owner | Who::Admin | Who::Guest => 403,
        Who::Outsider => 404,
        Who::Anonymous => 401,
    }
}

/// Deleting: the author (the member), admins and owners; guests 403.
fn author_or_admin(who: Who) -> u16 {
    match who {
        Who::Owner | Who::Admin | Who::Member => 200,
        Who::Guest => 403,
        Who::Outsider => 404,
        Who::Anonymous => 401,
    }
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/comments",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    let issue = issue(f).await;
                    Req::new(format!("/comments?issue_id={issue}&limit=5"))
                })
            },
        ),
        row(
            Method::POST,
            "/comments",
            Expect::MinRole(Role::Member, 201),
            |f, _| {
                Box::pin(async move {
                    let issue = issue(f).await;
                    Req::new("/comments").body(json!({"issue_id": issue, "body": "hello @member"}))
                })
            },
        ),
        row(
            Method::GET,
            "/comments/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/comments/{}", members_comment(f).await)) })
            },
        ),
        row(
            Method::PUT,
            "/comments/{id}",
            Expect::Custom(author_only),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/comments/{}", members_comment(f).await))
                        .body(json!({"body": "edited"}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/comments/{id}",
            Expect::Custom(author_or_admin),
            |f, _| {
                Box::pin(async move { Req::new(format!("/comments/{}", members_comment(f).await)) })
            },
        ),
    ]
}
