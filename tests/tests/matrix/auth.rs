//! Matrix rows of the auth function: public entry points and the caller's own account.

use reqwest::Method;
use serde_json::json;

use super::{Expect, Req, Row, Who, row};
use momentum_tests::{PASSWORD, sign_up};

fn unique_email() -> String {
    format!("m.{}@example.com", uuid::Uuid::new_v4().simple())
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::POST,
            "/auth/register",
            Expect::Public(202),
            |_, _| {
                Box::pin(async {
                    Req::new("/auth/register").body(
                    json!({"email": unique_email(), "username": "newbie", "password": PASSWORD}),
                )
                })
            },
        ),
        row(Method::POST, "/auth/login", Expect::Public(200), |f, _| {
            Box::pin(async move {
                Req::new("/auth/login")
                    .body(json!({"email": f.emails[&Who::Member], "password": PASSWORD}))
            })
        }),
        row(
            Method::POST,
            "/auth/refresh",
            Expect::Public(200),
            |f, _| {
                Box::pin(async move {
                    let login = f
                        .server
                        .post(
                            "/auth/login",
                            None,
                            &json!({"email": f.emails[&Who::Member], "password": PASSWORD}),
                        )
                        .await
                        .expect(200);
                    Req::new("/auth/refresh")
                        .body(json!({"refresh_token": login.data()["refresh_token"]}))
                })
            },
        ),
        row(
            Method::POST,
            "/auth/logout",
            Expect::AnyUser(200),
            |f, who| {
                Box::pin(async move {
                    Req::new("/auth/logout")
                        .body(json!({}))
                        .token(f.fresh_token(who).await)
                })
            },
        ),
        row(
            Method::GET,
            "/auth/profile",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/auth/profile") }),
        ),
        row(
            Method::PUT,
            "/auth/profile",
            Expect::AnyUser(200),
            |_, _| Box::pin(async { Req::new("/auth/profile").body(json!({"bio": "matrix"})) }),
        ),
        // A password change revokes every session: it runs on a throwaway account.
        row(
            Method::PUT,
            "/auth/password",
            Expect::AnyUser(200),
            |f, _| {
                Box::pin(async move {
                    let (token, _, _) = sign_up(&f.server, "pwchange").await;
                    Req::new("/auth/password")
                    .body(json!({"current_password": PASSWORD, "new_password": "another long secret"}))
                    .token(Some(token))
                })
            },
        ),
    ]
}
