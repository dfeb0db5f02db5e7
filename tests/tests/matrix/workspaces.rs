//! Matrix rows of workspaces, members and the change feed.

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::json;

use super::{Expect, Req, Row, Who, row};

pub fn rows() -> Vec<Row> {
    vec![
        row(Method::GET, "/workspaces", Expect::AnyUser(200), |_, _| {
            Box::pin(async { Req::new("/workspaces") })
        }),
        row(Method::POST, "/workspaces", Expect::AnyUser(201), |_, _| {
            Box::pin(async { Req::new("/workspaces").body(json!({"name": "Another one"})) })
        }),
        // Each caller first makes some workspace current (members this one, the outsider
        // their own), so everyone signed in has a current workspace.
        row(
            Method::GET,
            "/workspaces/current",
            Expect::AnyUser(200),
            |f, who| {
                Box::pin(async move {
                    let target = if who == Who::Outsider {
                        &f.other_ws
                    } else {
                        &f.ws
                    };
                    if who != Who::Anonymous {
                        f.call(
                            who,
                            Method::POST,
                            "/workspaces/switch",
                            Some(&json!({"workspace_id": target})),
                        )
                        .await
                        .expect(200);
                    }
                    Req::new("/workspaces/current")
                })
            },
        ),
        row(
            Method::POST,
            "/workspaces/switch",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new("/workspaces/switch").body(json!({"workspace_id": f.ws}))
                })
            },
        ),
        row(
            Method::GET,
            "/workspaces/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/workspaces/{}", f.ws)) }),
        ),
        row(
            Method::PUT,
            "/workspaces/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/workspaces/{}", f.ws)).body(json!({"description": "matrix"}))
                })
            },
        ),
        // A fresh workspace per caller, with the same roles, so a delete has a target.
        row(
            Method::DELETE,
            "/workspaces/{id}",
            Expect::MinRole(Role::Owner, 200),
            |f, _| {
                Box::pin(async move {
                    let created = f
                        .call(
                            Who::Owner,
                            Method::POST,
                            "/workspaces",
                            Some(&json!({"name": "Doomed"})),
                        )
                        .await
                        .expect(201);
                    let ws = created.data()["id"].as_str().unwrap().to_owned();
                    for who in [Who::Admin, Who::Member, Who::Guest] {
                        f.add_member(&ws, who, who.role().unwrap()).await;
                    }
                    Req::new(format!("/workspaces/{ws}")).watch(ws)
                })
            },
        ),
        row(
            Method::GET,
            "/workspaces/{id}/members",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move { Req::new(format!("/workspaces/{}/members?limit=2", f.ws)) })
            },
        ),
        row(
            Method::PUT,
            "/workspaces/{id}/members/{user_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let (user, _) = f.fresh_member(Role::Guest).await;
                    Req::new(format!("/workspaces/{}/members/{user}", f.ws))
                        .body(json!({"role": "member"}))
                })
            },
        ),
        row(
            Method::DELETE,
            "/workspaces/{id}/members/{user_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let (user, _) = f.fresh_member(Role::Member).await;
                    Req::new(format!("/workspaces/{}/members/{user}", f.ws))
                })
            },
        ),
        row(
            Method::GET,
            "/workspaces/{id}/changes",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    Req::new(format!("/workspaces/{}/changes?since=0&limit=5", f.ws))
                })
            },
        ),
    ]
}
