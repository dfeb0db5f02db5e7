//! Black-box auth tests through the shim over real HTTP, on the embedded store and on
//! DynamoDB (moto).

use momentum_tests::{Reply, TestServer, on_every_store};
use serde_json::{Value, json};

fn unique_email() -> String {
    format!(
        "User.{}@Example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn register(s: &TestServer, email: &str, password: &str) -> Reply {
    s.post(
        "/auth/register",
        None,
        &json!({"email": email, "username": "ada_l", "password": password}),
    )
    .await
}

async fn login(s: &TestServer, email: &str, password: &str) -> Reply {
    s.post(
        "/auth/login",
        None,
        &json!({"email": email, "password": password}),
    )
    .await
}

/// Registers and logs in; returns (access, refresh).
async fn signed_in(s: &TestServer) -> (String, String, String) {
    let email = unique_email();
    register(s, &email, "correct horse battery")
        .await
        .expect(202);
    let r = login(s, &email, "correct horse battery").await.expect(200);
    (
        r.data()["access_token"].as_str().unwrap().to_owned(),
        r.data()["refresh_token"].as_str().unwrap().to_owned(),
        email,
    )
}

async fn refresh(s: &TestServer, token: &str) -> Reply {
    s.post("/auth/refresh", None, &json!({"refresh_token": token}))
        .await
}

/// The whole journey: register -> login -> profile -> refresh rotation -> reuse detection
/// -> logout, with the storage cost of each step.
async fn full_session_lifecycle(s: TestServer) {
    let email = unique_email();
    let reg = register(&s, &email, "correct horse battery")
        .await
        .expect(202);
    assert_eq!(reg.body["success"], json!(true));
    assert_eq!(reg.storage_calls(), 1, "register is one transaction");

    // Login is case-insensitive on the email.
    let login = login(&s, &email.to_uppercase(), "correct horse battery")
        .await
        .expect(200);
    assert!(
        login.storage_calls() <= 3,
        "login: marker, user, session write"
    );
    let data = login.data();
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["user"]["email"], json!(email));
    assert!(data["user"].get("password_hash").is_none(), "no hash leaks");
    let access = data["access_token"].as_str().unwrap().to_owned();
    let refresh1 = data["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh1.len() >= 43, "refresh token carries >= 256 bits");

    let profile = s.get("/auth/profile", Some(&access)).await.expect(200);
    assert_eq!(profile.data()["email"], json!(email));
    assert_eq!(profile.data()["username"], "ada_l");
    assert_eq!(profile.storage_calls(), 1, "profile read is one batch get");

    // Rotation: each refresh token works once and yields a new one.
    let r2 = refresh(&s, &refresh1).await.expect(200);
    assert!(r2.storage_calls() <= 2);
    let refresh2 = r2.data()["refresh_token"].as_str().unwrap().to_owned();
    let access2 = r2.data()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh1);
    s.get("/auth/profile", Some(&access2)).await.expect(200);
    let r3 = refresh(&s, &refresh2).await.expect(200);
    let refresh3 = r3.data()["refresh_token"].as_str().unwrap().to_owned();

    // Reuse of a spent token revokes the family: even the newest token and the session's
    // access tokens stop working.
    let reuse = refresh(&s, &refresh1).await.expect(401);
    assert_eq!(reuse.error_code(), "UNAUTHORIZED");
    assert!(
        reuse.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reuse")
    );
    refresh(&s, &refresh3).await.expect(401);
    s.get("/auth/profile", Some(&access2)).await.expect(401);

    // A new login is a new session; logout revokes exactly it.
    let again = self::login(&s, &email, "correct horse battery")
        .await
        .expect(200);
    let access = again.data()["access_token"].as_str().unwrap().to_owned();
    let refresh_again = again.data()["refresh_token"].as_str().unwrap().to_owned();
    let other = self::login(&s, &email, "correct horse battery")
        .await
        .expect(200);
    let other_access = other.data()["access_token"].as_str().unwrap().to_owned();
    let out = s
        .post("/auth/logout", Some(&access), &json!({}))
        .await
        .expect(200);
    // The Query of the session's push devices, then one transaction (session, revocation
    // and those devices).
    assert_eq!(out.storage_calls(), 2);
    s.get("/auth/profile", Some(&access)).await.expect(401);
    refresh(&s, &refresh_again).await.expect(401);
    s.get("/auth/profile", Some(&other_access))
        .await
        .expect(200);
}

/// Unknown account and wrong password look the same; so do new and taken emails at
/// registration.
async fn no_account_enumeration(s: TestServer) {
    let email = unique_email();
    let first = register(&s, &email, "first password").await.expect(202);
    let dup = register(&s, &email.to_lowercase(), "second password")
        .await
        .expect(202);
    assert_eq!(first.without_meta(), dup.without_meta());
    // The taken email kept its account and password.
    login(&s, &email, "second password").await.expect(401);
    login(&s, &email, "first password").await.expect(200);

    let wrong = login(&s, &email, "not the password").await.expect(401);
    let unknown = login(&s, &unique_email(), "not the password")
        .await
        .expect(401);
    assert_eq!(wrong.without_meta(), unknown.without_meta());
    assert_eq!(wrong.error_code(), "UNAUTHORIZED");
}

/// Two refreshes racing with one token: exactly one wins, and the winner's tokens work.
async fn concurrent_refresh_one_winner(s: TestServer) {
    let (_, refresh_token, _) = signed_in(&s).await;
    let (a, b) = tokio::join!(refresh(&s, &refresh_token), refresh(&s, &refresh_token));
    let statuses = [a.status.as_u16(), b.status.as_u16()];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one refresh succeeds: {statuses:?} {} {}",
        a.body,
        b.body
    );
    assert!(statuses.contains(&401), "{statuses:?}");
    let (winner, loser) = if a.status == 200 { (a, b) } else { (b, a) };
    // A loser that lost inside the rotation transaction is refused; one that arrived after
    // the winner committed presented a spent token, which is reuse and revokes the family.
    let reuse = loser.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reuse");
    let access = winner.data()["access_token"].as_str().unwrap();
    let expected = if reuse { 401 } else { 200 };
    s.get("/auth/profile", Some(access)).await.expect(expected);
}

/// A password change revokes every session and hands the caller a new one.
async fn password_change_revokes_all_sessions(s: TestServer) {
    let (access_a, refresh_a, email) = signed_in(&s).await;
    let b = login(&s, &email, "correct horse battery").await.expect(200);
    let access_b = b.data()["access_token"].as_str().unwrap().to_owned();

    let wrong = s
        .put(
            "/auth/password",
            Some(&access_a),
            &json!({"current_password": "nope nope", "new_password": "a brand new secret"}),
        )
        .await
        .expect(403);
    assert_eq!(wrong.error_code(), "FORBIDDEN");
    let short = s
        .put(
            "/auth/password",
            Some(&access_a),
            &json!({"current_password": "correct horse battery", "new_password": "short"}),
        )
        .await
        .expect(400);
    assert_eq!(short.error_field(), Some("new_password"));

    let changed = s
        .put(
            "/auth/password",
            Some(&access_a),
            &json!({"current_password": "correct horse battery", "new_password": "a brand new secret"}),
        )
        .await
        .expect(200);
    let fresh = changed.data()["access_token"].as_str().unwrap().to_owned();
    s.get("/auth/profile", Some(&access_a)).await.expect(401);
    s.get("/auth/profile", Some(&access_b)).await.expect(401);
    refresh(&s, &refresh_a).await.expect(401);
    s.get("/auth/profile", Some(&fresh)).await.expect(200);
    login(&s, &email, "correct horse battery").await.expect(401);
    login(&s, &email, "a brand new secret").await.expect(200);
}

async fn profile_update_and_validation(s: TestServer) {
    let (access, _, _) = signed_in(&s).await;
    let updated = s
        .put(
            "/auth/profile",
            Some(&access),
            &json!({"display_name": "Ada Lovelace", "avatar_url": "https://cdn.example.com/ada.png", "bio": "Analyst"}),
        )
        .await
        .expect(200);
    assert_eq!(updated.data()["display_name"], "Ada Lovelace");
    assert_eq!(updated.data()["version"], 2);
    assert_eq!(
        updated.storage_calls(),
        2,
        "batch read + one conditional update"
    );
    let read = s.get("/auth/profile", Some(&access)).await.expect(200);
    assert_eq!(read.data()["avatar_url"], "https://cdn.example.com/ada.png");

    // null clears, absent keeps.
    let cleared = s
        .put("/auth/profile", Some(&access), &json!({"bio": null}))
        .await
        .expect(200);
    assert_eq!(cleared.data()["bio"], Value::Null);
    assert_eq!(cleared.data()["display_name"], "Ada Lovelace");

    for (body, field) in [
        (
            json!({"avatar_url": "http://insecure.example.com/a.png"}),
            "avatar_url",
        ),
        (json!({"username": "x"}), "username"),
        (json!({"display_name": "x".repeat(101)}), "display_name"),
        (json!({"email": "new@example.com"}), "email"),
        (json!({"id": "someone-else"}), "id"),
        (json!({"username": 42}), "username"),
    ] {
        let r = s
            .put("/auth/profile", Some(&access), &body)
            .await
            .expect(400);
        assert_eq!(r.error_code(), "VALIDATION_ERROR");
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    let after = s.get("/auth/profile", Some(&access)).await.expect(200);
    assert_eq!(after.data()["version"], 3, "refused writes changed nothing");
}

async fn bad_input_is_4xx_with_field(s: TestServer) {
    for (body, field) in [
        (
            json!({"username": "ada_l", "password": "correct horse"}),
            "email",
        ),
        (
            json!({"email": "not-an-email", "username": "ada_l", "password": "correct horse"}),
            "email",
        ),
        (
            json!({"email": unique_email(), "username": "a", "password": "correct horse"}),
            "username",
        ),
        (
            json!({"email": unique_email(), "username": "ada_l", "password": "short"}),
            "password",
        ),
        (
            json!({"email": unique_email(), "username": "ada_l", "password": "x".repeat(129)}),
            "password",
        ),
        (
            json!({"email": unique_email(), "username": "ada_l", "password": "correct horse", "role": "admin"}),
            "role",
        ),
        (json!([1, 2]), "body"),
    ] {
        let r = s.post("/auth/register", None, &body).await.expect(400);
        assert_eq!(r.error_code(), "VALIDATION_ERROR", "{body}");
        assert_eq!(r.error_field(), Some(field), "{body}");
        assert_eq!(r.body["success"], json!(false));
    }

    let url = format!("{}/auth/login", s.base);
    let malformed = Reply::read(
        s.http
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"email\": ")
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(400);
    assert_eq!(malformed.error_field(), Some("body"));

    let empty = Reply::read(s.http.post(&url).send().await.unwrap())
        .await
        .expect(400);
    assert_eq!(empty.error_field(), Some("body"));

    let form = Reply::read(
        s.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("email=a")
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(415);
    assert_eq!(form.error_code(), "UNSUPPORTED_MEDIA_TYPE");

    let huge = format!(
        "{{\"email\":\"a@b.co\",\"password\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let too_big = Reply::read(
        s.http
            .post(&url)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(413);
    assert_eq!(too_big.error_code(), "PAYLOAD_TOO_LARGE");

    // Tokens: missing, malformed, forged.
    s.get("/auth/profile", None).await.expect(401);
    let r = Reply::read(
        s.http
            .get(format!("{}/auth/profile", s.base))
            .header("authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(401);
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    s.get("/auth/profile", Some("not.a.jwt")).await.expect(401);
    refresh(&s, "never-issued").await.expect(401);
    let r = s
        .post("/auth/refresh", None, &json!({"refresh_token": ""}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("refresh_token"));

    s.get("/no/such/route", None).await.expect(404);
    s.get("/auth/login", None).await.expect(405);
}

on_every_store!(
    full_session_lifecycle,
    no_account_enumeration,
    concurrent_refresh_one_winner,
    password_change_revokes_all_sessions,
    profile_update_and_validation,
    bad_input_is_4xx_with_field,
);

/// The shim's health endpoint answers with the store it runs on.
#[tokio::test]
async fn health_reports_store() {
    let s = TestServer::start(momentum_tests::Backend::Embedded, "health")
        .await
        .unwrap();
    let r = s.get("/health", None).await.expect(200);
    assert_eq!(r.data()["status"], "ok");
}
