//! Black-box tests of invitations and invite codes through the shim over real HTTP, on the
//! embedded store and on DynamoDB (moto).

use momentum_shared::areas::invitations::{
    CODE_ALPHABET, invite_code_key, invite_code_lookup_key, invite_for_key, pending_invite_key,
};
use momentum_shared::kernel::keys;
use momentum_shared::storage::{Condition, Key, Table, Update, WriteOp};
use momentum_tests::{Reply, TestServer, User, change_events, on_every_store, user};
use serde_json::{Value, json};

const PAST: &str = "2020-01-01T00:00:00Z";

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (civil calendar).
fn epoch_days(date: &str) -> i64 {
    let part = |r: std::ops::Range<usize>| date[r].parse::<i64>().unwrap();
    let (y, m, d) = (part(0..4), part(5..7), part(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A workspace owned by `owner` (it becomes their current one): its id.
async fn workspace(s: &TestServer, owner: &User) -> String {
    let name = format!("Team {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let created = s
        .post("/workspaces", Some(&owner.token), &json!({"name": name}))
        .await
        .expect(201);
    created.data()["id"].as_str().unwrap().to_owned()
}

async fn invite(s: &TestServer, by: &User, ws: &str, email: &str, role: &str) -> Reply {
    s.post(
        "/invitations",
        Some(&by.token),
        &json!({"workspace_id": ws, "email": email, "role": role}),
    )
    .await
}

async fn action(s: &TestServer, who: &User, id: &str, what: &str) -> Reply {
    s.post(
        &format!("/invitations/{id}/{what}"),
        Some(&who.token),
        &json!({}),
    )
    .await
}

async fn my_invitations(s: &TestServer, who: &User) -> Vec<Value> {
    let r = s.get("/invitations", Some(&who.token)).await.expect(200);
    r.data()["items"].as_array().unwrap().clone()
}

async fn workspace_invitations(s: &TestServer, who: &User, ws: &str) -> Vec<Value> {
    let r = s
        .get(&format!("/workspaces/{ws}/invitations"), Some(&who.token))
        .await
        .expect(200);
    r.data()["items"].as_array().unwrap().clone()
}

/// The role of `who` in `ws`, or the status when they cannot see it.
async fn role_in(s: &TestServer, who: &User, ws: &str) -> Result<String, u16> {
    let r = s.get(&format!("/workspaces/{ws}"), Some(&who.token)).await;
    if r.status.as_u16() == 200 {
        Ok(r.data()["role"].as_str().unwrap().to_owned())
    } else {
        Err(r.status.as_u16())
    }
}

async fn set_attr(s: &TestServer, key: Key, attr: &str, value: &str) {
    s.state
        .store
        .transact(vec![WriteOp::Update {
            table: Table::Main,
            key,
            update: Update::default().set(attr, value),
            condition: Some(Condition::Exists),
        }])
        .await
        .unwrap();
}

/// Invite -> the invitee sees it -> someone else cannot accept -> the invitee accepts and
/// is a member with the invited role; the invitation is answered for good.
async fn invite_and_accept(s: TestServer) {
    let owner = user(&s, "owner").await;
    let bob = user(&s, "bob").await;
    let carol = user(&s, "carol").await;
    let ws = workspace(&s, &owner).await;

    let created = invite(&s, &owner, &ws, &bob.email.to_uppercase(), "admin")
        .await
        .expect(201);
    let inv = created.data().clone();
    let id = inv["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inv_"));
    assert_eq!(inv["status"], "pending");
    assert_eq!(inv["role"], "admin");
    assert_eq!(inv["workspace_id"], json!(ws));
    assert_eq!(inv["invited_by"], json!(owner.id));
    let (created, expires) = (
        inv["created_at"].as_str().unwrap(),
        inv["expires_at"].as_str().unwrap(),
    );
    assert_eq!(created[10..], expires[10..], "same time of day");
    assert_eq!(
        epoch_days(&expires[..10]) - epoch_days(&created[..10]),
        7,
        "{created} -> {expires}"
    );

    // The invitee's list (any case of their email), and the workspace's.
    let mine = s.get("/invitations", Some(&bob.token)).await.expect(200);
    assert_eq!(mine.data()["items"], json!([inv]));
    assert!(mine.storage_calls() <= 2, "my invitations: user + query");
    assert!(my_invitations(&s, &carol).await.is_empty());
    let listed = s
        .get(&format!("/workspaces/{ws}/invitations"), Some(&owner.token))
        .await
        .expect(200);
    assert_eq!(listed.data()["items"], json!([inv]));
    assert!(listed.storage_calls() <= 2);

    // Not the invitee: 404, as if it did not exist; nothing changes.
    let wrong = action(&s, &carol, &id, "accept").await.expect(404);
    assert_eq!(wrong.error_code(), "NOT_FOUND");
    action(&s, &carol, &id, "decline").await.expect(404);
    action(&s, &owner, &id, "accept").await.expect(404);
    assert_eq!(role_in(&s, &carol, &ws).await, Err(404));
    assert_eq!(role_in(&s, &bob, &ws).await, Err(404));

    let accepted = action(&s, &bob, &id, "accept").await.expect(200);
    assert_eq!(accepted.data()["invitation"]["status"], "accepted");
    assert_eq!(accepted.data()["invitation"]["version"], 2);
    assert_eq!(accepted.data()["member"]["role"], "admin");
    assert_eq!(accepted.data()["member"]["user_id"], json!(bob.id));
    assert_eq!(role_in(&s, &bob, &ws).await, Ok("admin".into()));
    // The joined workspace became bob's current one (he had none).
    let current = s
        .get("/workspaces/current", Some(&bob.token))
        .await
        .expect(200);
    assert_eq!(current.data()["id"], json!(ws));
    let members = s
        .get(&format!("/workspaces/{ws}/members"), Some(&bob.token))
        .await
        .expect(200);
    assert_eq!(members.data()["items"].as_array().unwrap().len(), 2);

    assert!(
        my_invitations(&s, &bob).await.is_empty(),
        "answered: not listed"
    );
    let again = action(&s, &bob, &id, "accept").await.expect(409);
    assert!(
        again.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accepted")
    );
    action(&s, &bob, &id, "decline").await.expect(409);
    s.delete(&format!("/invitations/{id}"), Some(&owner.token))
        .await
        .expect(409);
    assert_eq!(
        workspace_invitations(&s, &owner, &ws).await[0]["status"],
        "accepted"
    );

    // Inviting a member is a conflict.
    let member = invite(&s, &owner, &ws, &bob.email, "member")
        .await
        .expect(409);
    assert_eq!(member.error_field(), Some("email"));

    let log = change_events(&s, &owner.token, &ws).await;
    let tail: Vec<&str> = log.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(tail, ["workspace_member.created", "invitation.updated"]);
    assert!(log.contains(&"invitation.created".to_owned()));
}

/// Every invalid request is refused and writes nothing.
async fn invitation_validation(s: TestServer) {
    let owner = user(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let admin = user(&s, "admin").await;
    let guest = user(&s, "guest").await;
    let plain = user(&s, "plain").await;
    // Admin, guest and member join through invitations.
    for (user, role) in [(&admin, "admin"), (&guest, "guest"), (&plain, "member")] {
        let inv = invite(&s, &owner, &ws, &user.email, role).await.expect(201);
        action(&s, user, inv.data()["id"].as_str().unwrap(), "accept")
            .await
            .expect(200);
    }
    let before = change_events(&s, &owner.token, &ws).await.len();

    for (body, field) in [
        (
            json!({"workspace_id": ws, "email": "not-an-email"}),
            "email",
        ),
        (json!({"workspace_id": ws, "email": ""}), "email"),
        (
            json!({"workspace_id": ws, "email": "a@b.com", "role": "boss"}),
            "role",
        ),
        (
            json!({"workspace_id": ws, "email": "a@b.com", "status": "accepted"}),
            "status",
        ),
        (json!({"workspace_id": ws}), "email"),
    ] {
        let r = s
            .post("/invitations", Some(&owner.token), &body)
            .await
            .expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    // Roles: admins may not invite owners; owners may.
    let r = invite(&s, &admin, &ws, "new.owner@example.com", "owner")
        .await
        .expect(403);
    assert_eq!(r.error_code(), "FORBIDDEN");
    for user in [&guest, &plain] {
        invite(&s, user, &ws, "someone@example.com", "member")
            .await
            .expect(403);
        s.get(&format!("/workspaces/{ws}/invitations"), Some(&user.token))
            .await
            .expect(403);
    }
    let stranger = user(&s, "stranger").await;
    invite(&s, &stranger, &ws, "someone@example.com", "member")
        .await
        .expect(404);
    s.get(
        &format!("/workspaces/{ws}/invitations"),
        Some(&stranger.token),
    )
    .await
    .expect(404);
    // Members' emails, in any case.
    invite(&s, &owner, &ws, &guest.email.to_uppercase(), "member")
        .await
        .expect(409);
    assert_eq!(
        change_events(&s, &owner.token, &ws).await.len(),
        before,
        "nothing written"
    );

    invite(&s, &owner, &ws, "new.owner@example.com", "owner")
        .await
        .expect(201);
    invite(&s, &admin, &ws, "dup@example.com", "guest")
        .await
        .expect(201);
    let dup = invite(&s, &owner, &ws, "DUP@Example.com", "member")
        .await
        .expect(409);
    assert_eq!(dup.error_code(), "CONFLICT");
    assert_eq!(dup.error_field(), Some("email"));
    // Without workspace_id: the caller's current workspace; default role member.
    let current = s
        .post(
            "/invitations",
            Some(&owner.token),
            &json!({"email": "cur@example.com"}),
        )
        .await
        .expect(201);
    assert_eq!(current.data()["workspace_id"], json!(ws));
    assert_eq!(current.data()["role"], "member");
    // Another workspace may invite the same email.
    let ws2 = workspace(&s, &owner).await;
    invite(&s, &owner, &ws2, "dup@example.com", "member")
        .await
        .expect(201);

    for bad in [
        "inv_nope",
        "nope",
        "lbl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        action(&s, &owner, bad, "accept").await.expect(404);
        s.delete(&format!("/invitations/{bad}"), Some(&owner.token))
            .await
            .expect(404);
    }
    s.get("/invitations", None).await.expect(401);
    let r = s
        .get("/invitations?limit=0", Some(&owner.token))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("limit"));
}

/// Decline and revoke answer the invitation for good and free the email for a new one.
async fn decline_and_revoke(s: TestServer) {
    let owner = user(&s, "owner").await;
    let bob = user(&s, "bob").await;
    let ws = workspace(&s, &owner).await;

    let first = invite(&s, &owner, &ws, &bob.email, "member")
        .await
        .expect(201);
    let first_id = first.data()["id"].as_str().unwrap().to_owned();
    let declined = action(&s, &bob, &first_id, "decline").await.expect(200);
    assert_eq!(declined.data()["status"], "declined");
    assert!(declined.data()["responded_at"].is_string());
    action(&s, &bob, &first_id, "accept").await.expect(409);
    assert_eq!(role_in(&s, &bob, &ws).await, Err(404));
    assert!(my_invitations(&s, &bob).await.is_empty());

    // The email is free again; an admin revokes the new invitation.
    let second = invite(&s, &owner, &ws, &bob.email, "guest")
        .await
        .expect(201);
    let second_id = second.data()["id"].as_str().unwrap().to_owned();
    assert_eq!(my_invitations(&s, &bob).await.len(), 1);
    s.delete(&format!("/invitations/{second_id}"), Some(&bob.token))
        .await
        .expect(404);
    let revoked = s
        .delete(&format!("/invitations/{second_id}"), Some(&owner.token))
        .await
        .expect(200);
    assert_eq!(revoked.data()["status"], "revoked");
    assert!(my_invitations(&s, &bob).await.is_empty());
    let late = action(&s, &bob, &second_id, "accept").await.expect(409);
    assert!(
        late.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    s.delete(&format!("/invitations/{second_id}"), Some(&owner.token))
        .await
        .expect(409);
    assert_eq!(role_in(&s, &bob, &ws).await, Err(404));

    // And again: a third invitation works end to end.
    let third = invite(&s, &owner, &ws, &bob.email, "guest")
        .await
        .expect(201);
    action(&s, &bob, third.data()["id"].as_str().unwrap(), "accept")
        .await
        .expect(200);
    assert_eq!(role_in(&s, &bob, &ws).await, Ok("guest".into()));

    let statuses: Vec<String> = workspace_invitations(&s, &owner, &ws)
        .await
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["accepted", "declined", "revoked"]);
}

/// An invitation past its expiry reads as expired, cannot be accepted, and does not block
/// a new invitation of the same email.
async fn expired_invitation(s: TestServer) {
    let owner = user(&s, "owner").await;
    let bob = user(&s, "bob").await;
    let ws = workspace(&s, &owner).await;
    let inv = invite(&s, &owner, &ws, &bob.email, "member")
        .await
        .expect(201);
    let id = inv.data()["id"].as_str().unwrap().to_owned();
    // Seven days later (moved in storage: the invitation, its marker and its mirror).
    let email_key = bob.email.to_lowercase();
    set_attr(&s, keys::invitation(&ws, &id), "expires_at", PAST).await;
    set_attr(&s, pending_invite_key(&ws, &email_key), "expires_at", PAST).await;
    set_attr(&s, invite_for_key(&email_key, &id), "expires_at", PAST).await;

    assert_eq!(
        workspace_invitations(&s, &owner, &ws).await[0]["status"],
        "expired"
    );
    assert!(
        my_invitations(&s, &bob).await.is_empty(),
        "expired: not listed"
    );
    let late = action(&s, &bob, &id, "accept").await.expect(409);
    assert_eq!(late.error_code(), "CONFLICT");
    assert!(
        late.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    action(&s, &bob, &id, "decline").await.expect(409);
    assert_eq!(role_in(&s, &bob, &ws).await, Err(404));

    // A new invitation takes over; the old one stays expired.
    let fresh = invite(&s, &owner, &ws, &bob.email, "admin")
        .await
        .expect(201);
    let fresh_id = fresh.data()["id"].as_str().unwrap().to_owned();
    let mine = my_invitations(&s, &bob).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], json!(fresh_id));
    action(&s, &bob, &fresh_id, "accept").await.expect(200);
    assert_eq!(role_in(&s, &bob, &ws).await, Ok("admin".into()));
    // An expired invitation may still be revoked (cleaned up).
    let revoked = s
        .delete(&format!("/invitations/{id}"), Some(&owner.token))
        .await
        .expect(200);
    assert_eq!(revoked.data()["status"], "revoked");
}

async fn create_code(s: &TestServer, by: &User, ws: &str, body: Value) -> Reply {
    s.post(
        &format!("/workspaces/{ws}/invite-codes"),
        Some(&by.token),
        &body,
    )
    .await
}

async fn join(s: &TestServer, who: &User, code: &str) -> Reply {
    s.post(
        &format!("/invite-codes/{code}/join"),
        Some(&who.token),
        &json!({}),
    )
    .await
}

/// Codes: create, list, join (case-insensitive), max uses, already a member.
async fn invite_codes(s: TestServer) {
    let owner = user(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let created = create_code(&s, &owner, &ws, json!({"role": "guest", "max_uses": 2}))
        .await
        .expect(201);
    let code = created.data()["code"].as_str().unwrap().to_owned();
    assert!(code.len() >= 10);
    assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
    assert_eq!(created.data()["role"], "guest");
    assert_eq!(created.data()["uses"], 0);
    assert_eq!(created.data()["status"], "active");
    let other = create_code(&s, &owner, &ws, json!({})).await.expect(201);
    assert_eq!(other.data()["role"], "member", "default role");
    assert_eq!(
        other.data()["max_uses"],
        Value::Null,
        "unlimited by default"
    );
    assert_ne!(other.data()["code"], json!(code));

    let a = user(&s, "anna").await;
    let b = user(&s, "bert").await;
    let c = user(&s, "cleo").await;
    let joined = join(&s, &a, &code.to_lowercase()).await.expect(200);
    assert_eq!(joined.data()["role"], "guest");
    assert_eq!(joined.data()["workspace_id"], json!(ws));
    assert!(
        joined.storage_calls() <= 4,
        "lookup, counters, change numbers, transaction"
    );
    assert_eq!(role_in(&s, &a, &ws).await, Ok("guest".into()));
    let twice = join(&s, &a, &code).await.expect(409);
    assert!(
        twice.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already a member")
    );
    join(&s, &owner, &code).await.expect(409);
    join(&s, &b, &code).await.expect(200);
    let full = join(&s, &c, &code).await.expect(409);
    assert!(
        full.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum")
    );
    assert_eq!(role_in(&s, &c, &ws).await, Err(404));

    let listed = s
        .get(
            &format!("/workspaces/{ws}/invite-codes"),
            Some(&owner.token),
        )
        .await
        .expect(200);
    assert!(listed.storage_calls() <= 2);
    let items = listed.data()["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let used = items.iter().find(|i| i["code"] == json!(code)).unwrap();
    assert_eq!(used["uses"], 2);
    assert_eq!(used["status"], "exhausted");

    // The unlimited code still admits c, as a member.
    join(&s, &c, other.data()["code"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(role_in(&s, &c, &ws).await, Ok("member".into()));
    let log = change_events(&s, &owner.token, &ws).await;
    let joins = log
        .iter()
        .filter(|e| *e == "workspace_member.created")
        .count();
    assert_eq!(joins, 4, "owner + a, b, c");
    assert_eq!(
        log.iter().filter(|e| *e == "invite_code.updated").count(),
        3
    );
}

/// Code validation, permissions, deletion and expiry.
async fn invite_code_rules(s: TestServer) {
    let owner = user(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    for (body, field) in [
        (json!({"max_uses": 0}), "max_uses"),
        (json!({"max_uses": 1001}), "max_uses"),
        (json!({"expires_in_hours": 0}), "expires_in_hours"),
        (json!({"expires_in_hours": 721}), "expires_in_hours"),
        (json!({"role": "owner"}), "role"),
        (json!({"role": "chief"}), "role"),
        (json!({"uses": 3}), "uses"),
    ] {
        let r = create_code(&s, &owner, &ws, body.clone()).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    let limits = create_code(
        &s,
        &owner,
        &ws,
        json!({"role": "admin", "max_uses": 1000, "expires_in_hours": 720}),
    )
    .await
    .expect(201);
    assert_eq!(limits.data()["role"], "admin");

    // Guests cannot create or list codes; strangers do not see the workspace.
    let guest = user(&s, "guest").await;
    let g = create_code(&s, &owner, &ws, json!({"role": "guest"}))
        .await
        .expect(201);
    let g_code = g.data()["code"].as_str().unwrap().to_owned();
    join(&s, &guest, &g_code).await.expect(200);
    create_code(&s, &guest, &ws, json!({})).await.expect(403);
    s.get(
        &format!("/workspaces/{ws}/invite-codes"),
        Some(&guest.token),
    )
    .await
    .expect(403);
    let stranger = user(&s, "stranger").await;
    create_code(&s, &stranger, &ws, json!({})).await.expect(404);
    s.delete(&format!("/invite-codes/{g_code}"), Some(&stranger.token))
        .await
        .expect(404);
    s.delete(&format!("/invite-codes/{g_code}"), Some(&guest.token))
        .await
        .expect(403);

    // Unknown and malformed codes.
    for bad in ["ABCDEFGHJKMN", "short", "0000000000OO", "%20"] {
        join(&s, &stranger, bad).await.expect(404);
    }
    join(&s, &stranger, &g_code).await.expect(200);

    // Deleted: gone for joiners and for the list.
    let doomed = create_code(&s, &owner, &ws, json!({})).await.expect(201);
    let doomed_code = doomed.data()["code"].as_str().unwrap().to_owned();
    let deleted = s
        .delete(
            &format!("/invite-codes/{}", doomed_code.to_lowercase()),
            Some(&owner.token),
        )
        .await
        .expect(200);
    assert_eq!(deleted.data()["code"], json!(doomed_code));
    let late = user(&s, "late").await;
    join(&s, &late, &doomed_code).await.expect(404);
    s.delete(&format!("/invite-codes/{doomed_code}"), Some(&owner.token))
        .await
        .expect(404);
    let listed = s
        .get(
            &format!("/workspaces/{ws}/invite-codes"),
            Some(&owner.token),
        )
        .await
        .expect(200);
    assert!(
        listed.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["code"] != json!(doomed_code))
    );

    // Expired (moved in storage): refused, and listed as expired.
    let old = create_code(&s, &owner, &ws, json!({"expires_in_hours": 1}))
        .await
        .expect(201);
    let old_code = old.data()["code"].as_str().unwrap().to_owned();
    set_attr(&s, invite_code_lookup_key(&old_code), "expires_at", PAST).await;
    set_attr(&s, invite_code_key(&ws, &old_code), "expires_at", PAST).await;
    let refused = join(&s, &late, &old_code).await.expect(409);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(role_in(&s, &late, &ws).await, Err(404));
    let listed = s
        .get(
            &format!("/workspaces/{ws}/invite-codes?limit=100"),
            Some(&owner.token),
        )
        .await
        .expect(200);
    let expired = listed.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == json!(old_code))
        .unwrap()
        .clone();
    assert_eq!(expired["status"], "expired");
    s.post("/invite-codes/ABCDEFGHJKMN/join", None, &json!({}))
        .await
        .expect(401);
}

/// Concurrent joins on a one-use code: exactly one gets in.
async fn max_uses_hold_under_concurrency(s: TestServer) {
    let owner = user(&s, "owner").await;
    let ws = workspace(&s, &owner).await;
    let code = create_code(&s, &owner, &ws, json!({"max_uses": 1}))
        .await
        .expect(201)
        .data()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(user(&s, &format!("racer{i}")).await);
    }
    let replies = futures::future::join_all(users.iter().map(|u| join(&s, u, &code))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let members = s
        .get(&format!("/workspaces/{ws}/members"), Some(&owner.token))
        .await
        .expect(200);
    assert_eq!(members.data()["items"].as_array().unwrap().len(), 2);
}

/// Invitations and codes of a deleted workspace lead nowhere.
async fn deleted_workspace(s: TestServer) {
    let owner = user(&s, "owner").await;
    let bob = user(&s, "bob").await;
    let carl = user(&s, "carl").await;
    let ws = workspace(&s, &owner).await;
    let inv = invite(&s, &owner, &ws, &bob.email, "member")
        .await
        .expect(201);
    let code = create_code(&s, &owner, &ws, json!({}))
        .await
        .expect(201)
        .data()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    s.delete(&format!("/workspaces/{ws}"), Some(&owner.token))
        .await
        .expect(200);
    let r = action(&s, &bob, inv.data()["id"].as_str().unwrap(), "accept")
        .await
        .expect(404);
    assert_eq!(r.error_code(), "NOT_FOUND");
    join(&s, &carl, &code).await.expect(404);
    let mine = s.get("/workspaces", Some(&bob.token)).await.expect(200);
    assert_eq!(mine.data(), &json!([]));
    let mine = s.get("/workspaces", Some(&carl.token)).await.expect(200);
    assert_eq!(mine.data(), &json!([]));
}

on_every_store!(
    deleted_workspace,
    invite_and_accept,
    invitation_validation,
    decline_and_revoke,
    expired_invitation,
    invite_codes,
    invite_code_rules,
    max_uses_hold_under_concurrency,
);
