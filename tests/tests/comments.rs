//! Comments on issues through the shim, on the embedded store and on DynamoDB.

use momentum_shared::kernel::access::Role;
use momentum_shared::kernel::ids::{self, Kind};
use momentum_tests::{Reply, TestServer, User, id, join, on_every_store, user};
use serde_json::{Value, json};

/// A new user owning a new workspace: (owner, workspace id, default team id).
async fn workspace_of_new_owner(s: &TestServer, name: &str) -> (User, Ws) {
    let owner = user(s, name).await;
    let created = s
        .post(
            "/workspaces",
            Some(&owner.token),
            &json!({"name": format!("{name} {}", &uuid::Uuid::new_v4().simple().to_string()[..8])}),
        )
        .await
        .expect(201);
    let ws = Ws {
        id: created.data()["id"].as_str().unwrap().to_owned(),
        team: created.data()["default_team"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        owner_token: owner.token.clone(),
    };
    (owner, ws)
}

struct Ws {
    id: String,
    team: String,
    owner_token: String,
}

/// A new issue of the workspace, through the issues API.
async fn new_issue(s: &TestServer, ws: &Ws) -> String {
    let r = s
        .post(
            "/issues",
            Some(&ws.owner_token),
            &json!({"team_id": ws.team, "title": "Something to discuss"}),
        )
        .await
        .expect(201);
    let id = r.data()["id"].as_str().unwrap().to_owned();
    assert_eq!(ids::workspace_of(Kind::Issue, &id).unwrap(), ws.id);
    id
}

async fn comment(s: &TestServer, token: &str, issue: &str, body: &str) -> Reply {
    s.post(
        "/comments",
        Some(token),
        &json!({"issue_id": issue, "body": body}),
    )
    .await
}

/// Every comment of an issue, following cursors.
async fn all_comments(s: &TestServer, token: &str, issue: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/comments?issue_id={issue}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(&path, Some(token)).await.expect(200);
        assert!(r.storage_calls() <= 2, "access batch + one Query");
        out.extend(r.data()["items"].as_array().unwrap().iter().cloned());
        match r.data()["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn comment_thread_lifecycle(s: TestServer) {
    let (owner, ws) = workspace_of_new_owner(&s, "owner").await;
    let issue = new_issue(&s, &ws).await;

    let first = comment(&s, &owner.token, &issue, "\n\nFirst **comment**\n  ")
        .await
        .expect(201);
    let c = first.data().clone();
    assert_eq!(c["body"], "First **comment**");
    assert_eq!(c["issue_id"], json!(issue));
    assert_eq!(c["workspace_id"], json!(ws.id));
    assert_eq!(c["author_id"], json!(owner.id));
    assert_eq!(c["parent_id"], Value::Null);
    assert_eq!(c["deleted"], false);
    assert_eq!(c["edited_at"], Value::Null);
    assert_eq!(c["mentions"], json!([]));
    assert_eq!(c["version"], 1);
    let cid = id(first.data());

    // A threaded reply, then more top-level comments.
    let reply = s
        .post(
            "/comments",
            Some(&owner.token),
            &json!({"issue_id": issue, "body": "a reply", "parent_id": cid}),
        )
        .await
        .expect(201);
    assert_eq!(reply.data()["parent_id"], json!(cid));
    let mut expected = vec![cid.clone(), id(reply.data())];
    for i in 0..4 {
        expected.push(id(comment(&s, &owner.token, &issue, &format!("n{i}"))
            .await
            .expect(201)
            .data()));
    }
    // Another issue's comments stay apart.
    let other_issue = new_issue(&s, &ws).await;
    comment(&s, &owner.token, &other_issue, "elsewhere")
        .await
        .expect(201);

    // Oldest first, across pages, replies carry parent_id.
    let listed = all_comments(&s, &owner.token, &issue, 2).await;
    let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected);
    assert_eq!(listed[1]["parent_id"], json!(cid));
    assert_eq!(listed[0], c, "the listing copy is the comment");

    // One comment: one batch (session, membership, comment).
    let got = s
        .get(&format!("/comments/{cid}"), Some(&owner.token))
        .await
        .expect(200);
    assert_eq!(got.storage_calls(), 1);
    assert_eq!(got.data(), &c);

    // The author edits: edited_at set, version moves; stale versions are 412.
    let path = format!("/comments/{cid}");
    let edited = s
        .put(
            &path,
            Some(&owner.token),
            &json!({"body": "First, edited", "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(edited.data()["body"], "First, edited");
    assert_eq!(edited.data()["version"], 2);
    assert!(edited.data()["edited_at"].is_string());
    let stale = s
        .put(
            &path,
            Some(&owner.token),
            &json!({"body": "again", "version": 1}),
        )
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    s.put_if_match(
        &path,
        Some(&owner.token),
        "\"1\"",
        &json!({"body": "again"}),
    )
    .await
    .expect(412);
    let again = s
        .put_if_match(
            &path,
            Some(&owner.token),
            "\"2\"",
            &json!({"body": "again"}),
        )
        .await
        .expect(200);
    assert_eq!(again.data()["version"], 3);
    let listed = all_comments(&s, &owner.token, &issue, 50).await;
    assert_eq!(listed[0]["body"], "again", "the list shows the edit");

    // Soft delete keeps the thread: the reply still points at a tombstone.
    let gone = s.delete(&path, Some(&owner.token)).await.expect(200);
    assert_eq!(gone.data()["deleted"], true);
    assert_eq!(gone.data()["body"], "");
    assert_eq!(gone.data()["version"], 4);
    let got = s.get(&path, Some(&owner.token)).await.expect(200);
    assert_eq!(got.data()["deleted"], true);
    assert_eq!(got.data()["body"], "");
    let listed = all_comments(&s, &owner.token, &issue, 50).await;
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0]["id"], json!(cid));
    assert_eq!(listed[0]["deleted"], true);
    assert_eq!(listed[1]["parent_id"], json!(cid));
    // A deleted comment is not edited; deleting it again changes nothing.
    let r = s
        .put(&path, Some(&owner.token), &json!({"body": "back"}))
        .await
        .expect(409);
    assert_eq!(r.error_code(), "CONFLICT");
    let twice = s.delete(&path, Some(&owner.token)).await.expect(200);
    assert_eq!(twice.data()["version"], 4);

    // The change feed: one change per mutation, on the issue's topic.
    let feed = s
        .get(
            &format!("/workspaces/{}/changes?since=0&limit=1000", ws.id),
            Some(&owner.token),
        )
        .await
        .expect(200);
    let mine: Vec<&Value> = feed.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["entity_id"] == json!(cid))
        .collect();
    let events: Vec<&str> = mine.iter().map(|c| c["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "comment.created",
            "comment.updated",
            "comment.updated",
            "comment.deleted"
        ]
    );
    assert!(mine.iter().all(|c| {
        c["topics"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("issue:{issue}")))
    }));
}

async fn comment_permissions(s: TestServer) {
    let (owner, ws) = workspace_of_new_owner(&s, "owner").await;
    let author = user(&s, "author").await;
    let member = user(&s, "member").await;
    let admin = user(&s, "admin").await;
    let guest = user(&s, "guest").await;
    join(&s, &ws.id, &author, Role::Member).await;
    join(&s, &ws.id, &member, Role::Member).await;
    join(&s, &ws.id, &admin, Role::Admin).await;
    join(&s, &ws.id, &guest, Role::Guest).await;
    let (outsider, _) = workspace_of_new_owner(&s, "outsider").await;
    let issue = new_issue(&s, &ws).await;

    let c = comment(&s, &author.token, &issue, "mine").await.expect(201);
    let path = format!("/comments/{}", id(c.data()));

    // Guests read, never write.
    s.get(&path, Some(&guest.token)).await.expect(200);
    s.get(&format!("/comments?issue_id={issue}"), Some(&guest.token))
        .await
        .expect(200);
    let r = comment(&s, &guest.token, &issue, "hello").await.expect(403);
    assert_eq!(r.error_code(), "FORBIDDEN");

    // Only the author edits, whatever the others' roles.
    for other in [&member, &admin, &owner] {
        let r = s
            .put(&path, Some(&other.token), &json!({"body": "hijack"}))
            .await
            .expect(403);
        assert_eq!(r.error_code(), "FORBIDDEN");
    }
    s.put(&path, Some(&guest.token), &json!({"body": "hijack"}))
        .await
        .expect(403);
    s.put(&path, Some(&author.token), &json!({"body": "still mine"}))
        .await
        .expect(200);

    // Others' comments: members and guests may not delete them, admins and owners may.
    s.delete(&path, Some(&member.token)).await.expect(403);
    s.delete(&path, Some(&guest.token)).await.expect(403);
    let got = s.get(&path, Some(&author.token)).await.expect(200);
    assert_eq!(got.data()["body"], "still mine");
    let r = s.delete(&path, Some(&admin.token)).await.expect(200);
    assert_eq!(r.data()["deleted"], true);
    let c2 = comment(&s, &author.token, &issue, "second")
        .await
        .expect(201);
    s.delete(&format!("/comments/{}", id(c2.data())), Some(&owner.token))
        .await
        .expect(200);
    // Authors delete their own.
    let c3 = comment(&s, &member.token, &issue, "third")
        .await
        .expect(201);
    s.delete(&format!("/comments/{}", id(c3.data())), Some(&member.token))
        .await
        .expect(200);

    // Another workspace's comments and issues are invisible.
    s.get(&path, Some(&outsider.token)).await.expect(404);
    s.get(
        &format!("/comments?issue_id={issue}"),
        Some(&outsider.token),
    )
    .await
    .expect(404);
    comment(&s, &outsider.token, &issue, "hi").await.expect(404);
    s.put(&path, Some(&outsider.token), &json!({"body": "x"}))
        .await
        .expect(404);
    s.delete(&path, Some(&outsider.token)).await.expect(404);
    s.get(&path, None).await.expect(401);
}

async fn comment_validation(s: TestServer) {
    let (owner, ws) = workspace_of_new_owner(&s, "owner").await;
    let issue = new_issue(&s, &ws).await;
    let other_issue = new_issue(&s, &ws).await;
    let on_other = comment(&s, &owner.token, &other_issue, "there")
        .await
        .expect(201);
    let parent = comment(&s, &owner.token, &issue, "here").await.expect(201);

    // Issues that do not exist, or are not issue ids, are 404 "issue".
    let missing = ids::new_id(Kind::Issue, &ws.id);
    let r = comment(&s, &owner.token, &missing, "hello")
        .await
        .expect(404);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("issue")
    );
    comment(&s, &owner.token, "iss_nonsense", "hello")
        .await
        .expect(404);
    comment(&s, &owner.token, &id(parent.data()), "hello")
        .await
        .expect(404);
    s.get(&format!("/comments?issue_id={missing}"), Some(&owner.token))
        .await
        .expect(404);
    let r = s.get("/comments", Some(&owner.token)).await.expect(400);
    assert_eq!(r.error_field(), Some("issue_id"));
    s.get("/comments/cmt_nonsense", Some(&owner.token))
        .await
        .expect(404);
    s.get(
        &format!("/comments/{}", ids::new_id(Kind::Comment, &ws.id)),
        Some(&owner.token),
    )
    .await
    .expect(404);

    // A reply's parent must be a comment of the same issue.
    let other_ws_comment = {
        let (other, other_ws) = workspace_of_new_owner(&s, "other").await;
        let their_issue = new_issue(&s, &other_ws).await;
        id(comment(&s, &other.token, &their_issue, "x")
            .await
            .expect(201)
            .data())
    };
    for bad in [
        id(on_other.data()),
        other_ws_comment,
        ids::new_id(Kind::Comment, &ws.id),
        "cmt_nonsense".to_owned(),
        issue.clone(),
    ] {
        let r = s
            .post(
                "/comments",
                Some(&owner.token),
                &json!({"issue_id": issue, "body": "reply", "parent_id": bad}),
            )
            .await
            .expect(404);
        assert_eq!(r.error_field(), Some("parent_id"), "{bad}");
    }

    for (body, field) in [
        (json!({"issue_id": issue, "body": ""}), "body"),
        (json!({"issue_id": issue, "body": " \n\t "}), "body"),
        (
            json!({"issue_id": issue, "body": "x".repeat(10_001)}),
            "body",
        ),
        (json!({"issue_id": issue, "body": "bell\u{7}"}), "body"),
        (json!({"issue_id": issue}), "body"),
        (json!({"body": "x"}), "issue_id"),
        (
            json!({"issue_id": issue, "body": "x", "author_id": "me"}),
            "author_id",
        ),
        (json!({"issue_id": issue, "body": "x", "id": "cmt_x"}), "id"),
        (
            json!({"issue_id": issue, "body": "x", "version": 1}),
            "version",
        ),
        (json!({"issue_id": issue, "body": 5}), "body"),
    ] {
        let r = s
            .post("/comments", Some(&owner.token), &body)
            .await
            .expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    let long = comment(&s, &owner.token, &issue, &"é".repeat(10_000))
        .await
        .expect(201);
    assert_eq!(
        long.data()["body"].as_str().unwrap().chars().count(),
        10_000
    );
    let code = comment(&s, &owner.token, &issue, "```\n\tindented\r\n```")
        .await
        .expect(201);
    assert_eq!(code.data()["body"], "```\n\tindented\n```");

    let path = format!("/comments/{}", id(parent.data()));
    for (body, field) in [
        (json!({"body": ""}), "body"),
        (json!({}), "body"),
        (json!({"body": "x", "issue_id": issue}), "issue_id"),
        (json!({"body": "x", "deleted": true}), "deleted"),
    ] {
        let r = s.put(&path, Some(&owner.token), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}: {}", r.body);
    }
    let r = s
        .put_if_match(&path, Some(&owner.token), "v1", &json!({"body": "x"}))
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("If-Match"));
    let r = s
        .get(
            &format!("/comments?issue_id={issue}&limit=101"),
            Some(&owner.token),
        )
        .await
        .expect(400);
    assert_eq!(r.error_field(), Some("limit"));
    // Nothing above changed the parent.
    let got = s.get(&path, Some(&owner.token)).await.expect(200);
    assert_eq!(got.data()["version"], 1);
}

async fn mentions_are_recorded(s: TestServer) {
    let (owner, ws) = workspace_of_new_owner(&s, "owner").await;
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    let stranger = user(&s, "stranger").await;
    join(&s, &ws.id, &ada, Role::Member).await;
    join(&s, &ws.id, &bob, Role::Guest).await;
    let issue = new_issue(&s, &ws).await;

    let body = format!(
        "@{} please review, cc @{}. Not @{} (not a member), not @nobody, not mail{}@example.com; @{} again",
        ada.username,
        bob.username.to_uppercase(),
        stranger.username,
        ada.username,
        ada.username,
    );
    let c = comment(&s, &owner.token, &issue, &body).await.expect(201);
    assert_eq!(c.data()["mentions"], json!([ada.id, bob.id]));
    assert!(
        c.storage_calls() <= 4,
        "access batch, members Query, commit"
    );
    let got = s
        .get(&format!("/comments/{}", id(c.data())), Some(&owner.token))
        .await
        .expect(200);
    assert_eq!(got.data()["mentions"], json!([ada.id, bob.id]));

    // Editing resolves mentions again.
    let edited = s
        .put(
            &format!("/comments/{}", id(c.data())),
            Some(&owner.token),
            &json!({"body": format!("only @{}", bob.username)}),
        )
        .await
        .expect(200);
    assert_eq!(edited.data()["mentions"], json!([bob.id]));
    let plain = comment(&s, &owner.token, &issue, "no mentions @ all")
        .await
        .expect(201);
    assert_eq!(plain.data()["mentions"], json!([]));
}

on_every_store!(
    comment_thread_lifecycle,
    comment_permissions,
    comment_validation,
    mentions_are_recorded,
);
