//! Matrix rows of teams and team members (one per route, plus the self-service variants of
//! joining and leaving; see matrix/mod.rs).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, Who, row};

/// A key no other team of the fixture uses.
pub fn fresh_key() -> String {
    format!(
        "M{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase()
    )
}

/// A new team of the fixture workspace, created by the owner (its lead): its id.
pub async fn fresh_team(f: &Fixture) -> String {
    let team = f
        .as_owner(
            Method::POST,
            "/teams",
            json!({"workspace_id": f.ws, "key": fresh_key(), "name": "Matrix team"}),
            201,
        )
        .await;
    team["id"].as_str().unwrap().to_owned()
}

/// The caller's user id, or the owner's for the anonymous caller (who has none).
fn user_of(f: &Fixture, who: Who) -> String {
    let who = if who == Who::Anonymous {
        Who::Owner
    } else {
        who
    };
    f.user_id(who).to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/teams",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/teams?workspace_id={}&limit=5", f.ws)) })
            },
        ),
        row(
            Method::POST,
            "/teams",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/teams")
                        .body(json!({"workspace_id": f.ws, "key": fresh_key(), "name": "Created"}))
                })
            },
        ),
        row(
            Method::GET,
            "/teams/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/teams/{}", f.team_id)) }),
        ),
        row(
            Method::PUT,
            "/teams/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/teams/{}", f.team_id))
                        .body(json!({"description": format!("matrix {}", fresh_key())}))
                })
            },
        ),
        // A fresh team per caller, so a delete has a target.
        row(
            Method::DELETE,
            "/teams/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let team = fresh_team(f).await;
                    Req::new(format!("/teams/{team}"))
                })
            },
        ),
        row(
            Method::GET,
            "/teams/{id}/members",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/teams/{}/members", f.team_id)) }),
        ),
        // Adding someone else: admins.
        row(
            Method::POST,
            "/teams/{id}/members",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    let (user, _) = f.fresh_member(Role::Member).await;
                    Req::new(format!("/teams/{}/members", f.team_id)).body(json!({"user_id": user}))
                })
            },
        ),
        // Joining as `member`: members (not guests), each into a team they are not in yet.
        row(
            Method::POST,
            "/teams/{id}/members",
            Expect::MinRole(Role::Member, 201),
            |f, who| {
                Box::pin(async move {
                    let team = fresh_team(f).await;
                    let owner = f.user_id(Who::Owner).to_owned();
                    f.as_owner(
                        Method::DELETE,
                        &format!("/teams/{team}/members/{owner}"),
                        json!(null),
                        200,
                    )
                    .await;
                    Req::new(format!("/teams/{team}/members"))
                        .body(json!({"user_id": user_of(f, who)}))
                })
            },
        ),
        row(
            Method::PUT,
            "/teams/{id}/members/{user_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let (user, _) = f.fresh_member(Role::Member).await;
                    f.as_owner(
                        Method::POST,
                        &format!("/teams/{}/members", f.team_id),
                        json!({"user_id": user}),
                        201,
                    )
                    .await;
                    Req::new(format!("/teams/{}/members/{user}", f.team_id))
                        .body(json!({"role": "lead"}))
                })
            },
        ),
        // Removing someone else: admins.
        row(
            Method::DELETE,
            "/teams/{id}/members/{user_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let (user, _) = f.fresh_member(Role::Member).await;
                    f.as_owner(
                        Method::POST,
                        &format!("/teams/{}/members", f.team_id),
                        json!({"user_id": user}),
                        201,
                    )
                    .await;
                    Req::new(format!("/teams/{}/members/{user}", f.team_id))
                })
            },
        ),
        // Leaving: anyone in the workspace, for themselves.
        row(
            Method::DELETE,
            "/teams/{id}/members/{user_id}",
            Expect::MinRole(Role::Guest, 200),
            |f, who| {
                Box::pin(async move {
                    let team = fresh_team(f).await;
                    if who.role().is_some() && who != Who::Owner {
                        f.as_owner(
                            Method::POST,
                            &format!("/teams/{team}/members"),
                            json!({"user_id": f.user_id(who)}),
                            201,
                        )
                        .await;
                    }
                    Req::new(format!("/teams/{team}/members/{}", user_of(f, who)))
                })
            },
        ),
    ]
}
