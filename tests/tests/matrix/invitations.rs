//! Matrix rows of invitations and invite codes (one per route; see matrix/mod.rs).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Fixture, Req, Row, Who, row};

fn unique_email() -> String {
    format!(
        "invitee.{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A fresh workspace owned by the fixture owner, with the admin, member and guest in their
/// roles (the outsider stays outside): its id.
async fn fresh_workspace(f: &Fixture) -> String {
    let created = f
        .as_owner(
            Method::POST,
            "/workspaces",
            json!({"name": "Joinable"}),
            201,
        )
        .await;
    let ws = created["id"].as_str().unwrap().to_owned();
    for who in [Who::Admin, Who::Member, Who::Guest] {
        f.add_member(&ws, who, who.role().unwrap()).await;
    }
    ws
}

/// An invitation made by the owner: its id.
async fn invitation(f: &Fixture, ws: &str, email: &str) -> String {
    let inv = f
        .as_owner(
            Method::POST,
            "/invitations",
            json!({"workspace_id": ws, "email": email, "role": "member"}),
            201,
        )
        .await;
    inv["id"].as_str().unwrap().to_owned()
}

/// An invitation only the outsider may answer: in a fresh workspace (so accepting does not
/// make the outsider a member of the fixture workspace), addressed to the outsider when the
/// outsider calls and to someone else otherwise. Admins and owners of that workspace are not
/// the invitee either: 404.
async fn invitee_only(f: &Fixture, who: Who, action: &str) -> Req {
    let ws = fresh_workspace(f).await;
    let email = if who == Who::Outsider {
        f.emails[&Who::Outsider].clone()
    } else {
        unique_email()
    };
    let id = invitation(f, &ws, &email).await;
    Req::new(format!("/invitations/{id}/{action}")).watch(ws)
}

fn invitee_only_expect(who: Who) -> u16 {
    match who {
        Who::Outsider => 200,
        Who::Anonymous => 401,
        _ => 404,
    }
}

/// An invite code of the fixture workspace: the code.
async fn code_of(f: &Fixture, ws: &str) -> String {
    let code = f
        .as_owner(
            Method::POST,
            &format!("/workspaces/{ws}/invite-codes"),
            json!({"role": "guest", "max_uses": 5}),
            201,
        )
        .await;
    code["code"].as_str().unwrap().to_owned()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(Method::GET, "/invitations", Expect::AnyUser(200), |_, _| {
            Box::pin(async { Req::new("/invitations") })
        }),
        row(
            Method::POST,
            "/invitations",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/invitations").body(
                        json!({"workspace_id": f.ws, "email": unique_email(), "role": "guest"}),
                    )
                })
            },
        ),
        row(
            Method::GET,
            "/workspaces/{id}/invitations",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(
                    async move { Req::new(format!("/workspaces/{}/invitations?limit=5", f.ws)) },
                )
            },
        ),
        row(
            Method::POST,
            "/invitations/{id}/accept",
            Expect::Custom(invitee_only_expect),
            |f, who| Box::pin(async move { invitee_only(f, who, "accept").await }),
        ),
        row(
            Method::POST,
            "/invitations/{id}/decline",
            Expect::Custom(invitee_only_expect),
            |f, who| Box::pin(async move { invitee_only(f, who, "decline").await }),
        ),
        row(
            Method::DELETE,
            "/invitations/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let id = invitation(f, &f.ws, &unique_email()).await;
                    Req::new(format!("/invitations/{id}"))
                })
            },
        ),
        row(
            Method::POST,
            "/workspaces/{id}/invite-codes",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/workspaces/{}/invite-codes", f.ws))
                        .body(json!({"role": "member", "expires_in_hours": 24}))
                })
            },
        ),
        row(
            Method::GET,
            "/workspaces/{id}/invite-codes",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(
                    async move { Req::new(format!("/workspaces/{}/invite-codes?limit=5", f.ws)) },
                )
            },
        ),
        row(
            Method::DELETE,
            "/invite-codes/{code}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let code = code_of(f, &f.ws).await;
                    Req::new(format!("/invite-codes/{code}"))
                })
            },
        ),
        // A code of a fresh workspace per caller: its members (owner, admin, member, guest)
        // are already in (409); the outsider joins.
        row(
            Method::POST,
            "/invite-codes/{code}/join",
            Expect::Custom(|who| match who {
                Who::Outsider => 200,
                Who::Anonymous => 401,
                _ => 409,
            }),
            |f, _| {
                Box::pin(async move {
                    let ws = fresh_workspace(f).await;
                    let code = code_of(f, &ws).await;
                    Req::new(format!("/invite-codes/{code}/join"))
                        .body(json!({}))
                        .watch(ws)
                })
            },
        ),
    ]
}
