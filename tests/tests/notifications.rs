//! Black-box tests of the notification inbox and issue subscriptions through the shim, on
//! the embedded store and on DynamoDB (moto). Notifications are made asynchronously from
//! committed change records, so a test waits for an expected notification by polling (a
//! bounded number of times); to show that someone got *nothing*, it first waits for a later
//! notification of the same dispatcher (records are processed in commit order), then looks.

use std::sync::Arc;

use momentum_shared::AppResult;
use momentum_shared::AppState;
use momentum_shared::areas::push::{PushMessage, PushOutcome, PushOutlet};
use momentum_shared::clock::{Clock, ManualClock, SystemClock};
use momentum_shared::kernel::access::Role;
use momentum_tests::{
    Backend, TestServer, User, World, WsClient, backend_store, id, new_member,
    on_every_store_with_clock, world,
};
use serde_json::{Value, json};

const POLLS: usize = 200;
const POLL_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

async fn inbox_with(s: &TestServer, who: &User, query: &str) -> Vec<Value> {
    let r = s
        .get(&format!("/notifications?limit=100{query}"), who.t())
        .await
        .expect(200);
    r.data()["items"].as_array().unwrap().clone()
}

async fn inbox(s: &TestServer, who: &User) -> Vec<Value> {
    inbox_with(s, who, "").await
}

/// Polls `who`'s inbox until `done` holds (bounded); returns the inbox.
async fn wait_inbox(s: &TestServer, who: &User, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..POLLS {
        let items = inbox(s, who).await;
        if done(&items) {
            return items;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!(
        "inbox of {} never got there: {:#}",
        who.username,
        json!(inbox(s, who).await)
    );
}

fn has(items: &[Value], kind: &str, subject: &str) -> bool {
    items.iter().any(|n| {
        n["subject_id"] == subject && n["types"].as_array().unwrap().contains(&json!(kind))
    })
}

fn types_of(items: &[Value], subject: &str) -> Vec<Vec<String>> {
    items
        .iter()
        .filter(|n| n["subject_id"] == subject)
        .map(|n| {
            n["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

async fn unread_count(s: &TestServer, who: &User, ws: &str) -> i64 {
    let r = s
        .get("/notifications/unread-count", who.t())
        .await
        .expect(200);
    r.data()["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["workspace_id"] == ws)
        .map_or(0, |c| c["count"].as_i64().unwrap())
}

async fn create_issue(s: &TestServer, by: &User, w: &World, body: Value) -> String {
    let mut body = body;
    body["team_id"] = json!(w.team_id);
    if body.get("title").is_none() {
        body["title"] = json!("Fix the login");
    }
    id(s.post("/issues", by.t(), &body).await.expect(201).data())
}

async fn update_issue(s: &TestServer, by: &User, issue: &str, body: Value) {
    s.put(&format!("/issues/{issue}"), by.t(), &body)
        .await
        .expect(200);
}

async fn comment(s: &TestServer, by: &User, issue: &str, body: &str) -> String {
    id(s.post(
        "/comments",
        by.t(),
        &json!({"issue_id": issue, "body": body}),
    )
    .await
    .expect(201)
    .data())
}

/// A notification for `witness` made after everything before it: once it is there, every
/// earlier record has been processed.
async fn barrier(s: &TestServer, w: &World, by: &User, witness: &User) {
    let issue = create_issue(
        s,
        by,
        w,
        json!({"assignee_id": witness.id, "title": "Barrier"}),
    )
    .await;
    wait_inbox(s, witness, |items| has(items, "assigned", &issue)).await;
}

/// Editing a comment to mention someone tells them (once); those it mentioned before, and
/// the issue's subscribers, hear nothing new.
async fn a_comment_edit_tells_whom_it_newly_mentions(s: TestServer, clock: ManualClock) {
    let w = world(&s).await;
    let issue = create_issue(&s, &w.owner, &w, json!({"title": "Edit me"})).await;
    let c = comment(&s, &w.admin, &issue, "@member first").await;
    wait_inbox(&s, &w.member, |i| has(i, "mentioned", &issue)).await;
    // Out of the fold window, so a second notification would be a new item.
    clock.advance_secs(600);
    let edit = |body: &'static str, version: i64| {
        let s = &s;
        let c = c.clone();
        let admin = w.admin.clone();
        async move {
            s.put(
                &format!("/comments/{c}"),
                admin.t(),
                &json!({"body": body, "version": version}),
            )
            .await
            .expect(200);
        }
    };
    edit("@member first, and @guest too", 1).await;
    let guest = wait_inbox(&s, &w.guest, |i| has(i, "mentioned", &issue)).await;
    assert_eq!(types_of(&guest, &issue), vec![vec!["mentioned".to_owned()]]);
    barrier(&s, &w, &w.owner, &w.member).await;
    let member = inbox(&s, &w.member).await;
    let mentions: Vec<&Value> = member
        .iter()
        .filter(|n| n["subject_id"] == json!(issue))
        .collect();
    assert_eq!(mentions.len(), 1, "mentioned before the edit: {member:#?}");
    let owner = inbox(&s, &w.owner).await;
    assert_eq!(
        types_of(&owner, &issue),
        vec![vec!["comment".to_owned()]],
        "the subscriber heard of the comment, not of the edit"
    );
}

async fn each_type_once_for_the_right_user_never_the_actor(s: TestServer, _clock: ManualClock) {
    let w = world(&s).await;
    // Assigned + mentioned in a description; the creator is subscribed, never notified.
    let issue = create_issue(
        &s,
        &w.owner,
        &w,
        json!({"assignee_id": w.member.id, "description": "@admin please review"}),
    )
    .await;
    let member = wait_inbox(&s, &w.member, |i| has(i, "assigned", &issue)).await;
    assert_eq!(types_of(&member, &issue), vec![vec!["assigned".to_owned()]]);
    assert_eq!(member[0]["actor_id"], json!(w.owner.id));
    assert_eq!(member[0]["workspace_id"], json!(w.ws));
    let admin = wait_inbox(&s, &w.admin, |i| has(i, "mentioned", &issue)).await;
    assert_eq!(types_of(&admin, &issue), vec![vec!["mentioned".to_owned()]]);

    // A comment by the assignee: subscribers (creator, mentioned admin) hear of it, the
    // guest is mentioned, the author nothing.
    let c = comment(&s, &w.member, &issue, "done, @guest can verify").await;
    let guest = wait_inbox(&s, &w.guest, |i| has(i, "mentioned", &issue)).await;
    assert_eq!(guest[0]["comment_id"], json!(c));
    let owner = wait_inbox(&s, &w.owner, |i| has(i, "comment", &issue)).await;
    assert_eq!(types_of(&owner, &issue), vec![vec!["comment".to_owned()]]);
    wait_inbox(&s, &w.admin, |i| {
        i.iter()
            .any(|n| n["actor_id"] == w.member.id.as_str() && has(i, "comment", &issue))
    })
    .await;

    // Unassigned / assigned, by the admin.
    update_issue(&s, &w.admin, &issue, json!({"assignee_id": w.guest.id})).await;
    wait_inbox(&s, &w.member, |i| has(i, "unassigned", &issue)).await;
    wait_inbox(&s, &w.guest, |i| has(i, "assigned", &issue)).await;

    // Invited (an existing account) and added to a team.
    let invitee = momentum_tests::user(&s, "invitee").await;
    s.post(
        "/invitations",
        w.owner.t(),
        &json!({"workspace_id": w.ws, "email": invitee.email, "role": "member"}),
    )
    .await
    .expect(201);
    let invited = wait_inbox(&s, &invitee, |i| !i.is_empty()).await;
    assert_eq!(invited.len(), 1);
    assert_eq!(invited[0]["type"], json!("invited"));
    assert_eq!(invited[0]["title"], json!("Acme"));
    s.post(
        &format!("/teams/{}/members", w.team_id),
        w.owner.t(),
        &json!({"user_id": w.admin.id}),
    )
    .await
    .expect(201);
    wait_inbox(&s, &w.admin, |i| has(i, "team_added", &w.team_id)).await;

    // Nothing ever for the actor of a change: the owner made most of them. Wait for a later
    // notification, then count the owner's: only the member's comment reached them.
    barrier(&s, &w, &w.admin, &w.member).await;
    let owner = inbox(&s, &w.owner).await;
    assert!(
        owner.iter().all(|n| n["actor_id"] != w.owner.id.as_str()),
        "{owner:#?}"
    );
    assert_eq!(types_of(&owner, &issue), vec![vec!["comment".to_owned()]]);
    // And each notification exactly once (no duplicates per subject and actor).
    let member = inbox(&s, &w.member).await;
    assert_eq!(
        member
            .iter()
            .filter(|n| n["subject_id"] == issue.as_str())
            .count(),
        2,
        "{member:#?}"
    );
}

async fn changes_by_one_actor_fold_within_the_window(s: TestServer, clock: ManualClock) {
    let now = clock.now().unix_timestamp();
    clock.advance_secs(300 - now.rem_euclid(300) + 1);
    let w = world(&s).await;
    let issue = create_issue(&s, &w.member, &w, json!({})).await;
    // The member created it (subscribed); the admin changes state and priority, twice.
    let states = s
        .get(&format!("/workflows/{}", w.workflow_id), w.owner.t())
        .await
        .expect(200);
    let state_ids: Vec<String> = states.data()["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    let current = s
        .get(&format!("/issues/{issue}"), w.owner.t())
        .await
        .expect(200)
        .data()["state_id"]
        .clone();
    let other = state_ids.iter().find(|st| json!(st) != current).unwrap();
    update_issue(&s, &w.admin, &issue, json!({"priority": "high"})).await;
    update_issue(&s, &w.admin, &issue, json!({"state_id": other})).await;
    update_issue(&s, &w.admin, &issue, json!({"priority": "low"})).await;
    let folded = wait_inbox(&s, &w.member, |i| {
        i.iter()
            .any(|n| n["subject_id"] == issue.as_str() && n["count"] == 3)
    })
    .await;
    let mine: Vec<&Value> = folded
        .iter()
        .filter(|n| n["subject_id"] == issue.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{folded:#?}");
    assert_eq!(mine[0]["type"], json!("priority_changed"));
    assert_eq!(
        mine[0]["types"],
        json!(["priority_changed", "state_changed"])
    );
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 1);
    // Read it; a later change in the same window makes it unread again, still one.
    let nid = mine[0]["id"].as_str().unwrap().to_owned();
    s.put(
        &format!("/notifications/{nid}"),
        w.member.t(),
        &json!({"read": true}),
    )
    .await
    .expect(200);
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 0);
    update_issue(&s, &w.admin, &issue, json!({"priority": "urgent"})).await;
    let again = wait_inbox(&s, &w.member, |i| {
        i.iter().any(|n| n["id"] == nid.as_str() && n["count"] == 4)
    })
    .await;
    assert!(
        again
            .iter()
            .any(|n| n["id"] == nid.as_str() && n["read_at"].is_null())
    );
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 1);
    // Another actor: a notification of its own. After the window: a new one.
    update_issue(&s, &w.owner, &issue, json!({"priority": "medium"})).await;
    wait_inbox(&s, &w.member, |i| {
        i.iter()
            .filter(|n| n["subject_id"] == issue.as_str())
            .count()
            == 2
    })
    .await;
    clock.advance_secs(300);
    update_issue(&s, &w.admin, &issue, json!({"priority": "low"})).await;
    let after = wait_inbox(&s, &w.member, |i| {
        i.iter()
            .filter(|n| n["subject_id"] == issue.as_str())
            .count()
            == 3
    })
    .await;
    // Newest window first.
    assert_eq!(after[0]["actor_id"], json!(w.admin.id));
    assert_eq!(after[0]["count"], json!(1));
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 3);
}

async fn subscriptions_follow_the_rules(s: TestServer, _clock: ManualClock) {
    let w = world(&s).await;
    let issue = create_issue(&s, &w.owner, &w, json!({"assignee_id": w.member.id})).await;
    comment(&s, &w.admin, &issue, "a first comment").await;
    let subscribers = |items: &Value| -> Vec<String> {
        let mut v: Vec<String> = items["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["user_id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    // Creator, assignee and commenter, once the consumer has seen the comment.
    wait_inbox(&s, &w.owner, |i| has(i, "comment", &issue)).await;
    let got = s
        .get(&format!("/issues/{issue}/subscribers"), w.guest.t())
        .await
        .expect(200);
    let mut expected = vec![w.owner.id.clone(), w.member.id.clone(), w.admin.id.clone()];
    expected.sort();
    assert_eq!(subscribers(got.data()), expected);

    // The guest subscribes explicitly, the member unsubscribes.
    let r = s
        .post(
            &format!("/issues/{issue}/subscription"),
            w.guest.t(),
            &json!({}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["subscribed"], json!(true));
    s.delete(&format!("/issues/{issue}/subscription"), w.member.t())
        .await
        .expect(200);
    comment(&s, &w.owner, &issue, "second").await;
    wait_inbox(&s, &w.guest, |i| has(i, "comment", &issue)).await;
    wait_inbox(&s, &w.admin, |i| has(i, "comment", &issue)).await;
    // The member unsubscribed: the owner's "second" comment did not reach them; a mention
    // does (it folds with anything else the owner did in the window), and does not
    // re-subscribe them over their explicit choice.
    comment(&s, &w.owner, &issue, "@member one thing").await;
    let member = wait_inbox(&s, &w.member, |i| has(i, "mentioned", &issue)).await;
    let from = |items: &[Value], actor: &User| -> Vec<Value> {
        items
            .iter()
            .filter(|n| n["actor_id"] == actor.id.as_str())
            .cloned()
            .collect()
    };
    let by_owner = from(&member, &w.owner);
    assert_eq!(by_owner.len(), 1, "{member:#?}");
    // The assignment at creation and the mention: two changes, no comment.
    assert_eq!(by_owner[0]["types"], json!(["assigned", "mentioned"]));
    assert_eq!(by_owner[0]["count"], json!(2));
    comment(&s, &w.admin, &issue, "third").await;
    wait_inbox(&s, &w.owner, |i| {
        i.iter()
            .any(|n| n["actor_id"] == w.admin.id.as_str() && n["count"] == 2)
    })
    .await;
    // Only the admin's first comment (before the unsubscribe) reached the member.
    let member = inbox(&s, &w.member).await;
    let by_admin = from(&member, &w.admin);
    assert_eq!(by_admin.len(), 1, "{member:#?}");
    assert_eq!(by_admin[0]["count"], json!(1));

    // Outsiders and unknown issues: 404.
    let r = s
        .post(
            &format!("/issues/{issue}/subscription"),
            w.outsider.t(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 404);
}

async fn read_state_snooze_archive_and_mark_read(s: TestServer, clock: ManualClock) {
    let w = world(&s).await;
    let mut issues = Vec::new();
    for n in 0..4 {
        issues.push(
            create_issue(
                &s,
                &w.owner,
                &w,
                json!({"assignee_id": w.member.id, "title": format!("Issue {n}")}),
            )
            .await,
        );
    }
    let all = wait_inbox(&s, &w.member, |i| i.len() == 4).await;
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 4);
    let id_of = |issue: &str| -> String {
        all.iter().find(|n| n["subject_id"] == issue).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let put = |nid: String, body: Value| {
        let s = &s;
        let t = w.member.token.clone();
        async move {
            s.put(&format!("/notifications/{nid}"), Some(&t), &body)
                .await
        }
    };
    // Read, then unread again.
    let r = put(id_of(&issues[0]), json!({"read": true}))
        .await
        .expect(200);
    assert!(r.data()["read_at"].is_string());
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 3);
    put(id_of(&issues[0]), json!({"read": true}))
        .await
        .expect(200);
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 3);
    assert_eq!(inbox_with(&s, &w.member, "&unread=true").await.len(), 3);
    put(id_of(&issues[0]), json!({"read": false}))
        .await
        .expect(200);
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 4);
    // Archived: out of the inbox and the count; listed with archived=true.
    put(id_of(&issues[1]), json!({"archived": true}))
        .await
        .expect(200);
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 3);
    assert_eq!(inbox(&s, &w.member).await.len(), 3);
    let archived = inbox_with(&s, &w.member, "&archived=true").await;
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0]["subject_id"], json!(issues[1]));
    // Snoozed: hidden until the time comes.
    let until = (clock.now() + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    put(id_of(&issues[2]), json!({"snoozed_until": until}))
        .await
        .expect(200);
    assert_eq!(inbox(&s, &w.member).await.len(), 2);
    clock.advance_secs(601);
    assert_eq!(inbox(&s, &w.member).await.len(), 3);
    // Bad input names its field; someone else's notification is 404.
    let r = put(id_of(&issues[2]), json!({"snoozed_until": "tomorrow"})).await;
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(r.error_field(), Some("snoozed_until"));
    let r = s
        .put(
            &format!("/notifications/{}", id_of(&issues[2])),
            w.admin.t(),
            &json!({"read": true}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 404);
    // Even with a bad body: whose it is comes first.
    let r = s
        .put(
            &format!("/notifications/{}", id_of(&issues[2])),
            w.admin.t(),
            &json!({"snoozed_until": "tomorrow"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 404);

    // Mark read: one issue's, then up to an id, then all.
    let r = s
        .post(
            "/notifications/mark-read",
            w.member.t(),
            &json!({"issue_id": issues[3]}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["marked"], json!(1));
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 2);
    let mut ids: Vec<String> = issues.iter().map(|i| id_of(i)).collect();
    ids.sort();
    s.post(
        "/notifications/mark-read",
        w.member.t(),
        &json!({"up_to_id": ids[0]}),
    )
    .await
    .expect(200);
    let r = s
        .post("/notifications/mark-read", w.member.t(), &json!({}))
        .await
        .expect(200);
    assert!(r.data()["marked"].as_u64().unwrap() >= 1);
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 0);
    assert!(inbox_with(&s, &w.member, "&unread=true").await.is_empty());
    // Filters: type, workspace.
    assert_eq!(inbox_with(&s, &w.member, "&type=assigned").await.len(), 3);
    assert!(inbox_with(&s, &w.member, "&type=comment").await.is_empty());
    assert!(
        inbox_with(&s, &w.member, &format!("&workspace_id={}", w.other_ws))
            .await
            .is_empty()
    );
}

async fn unread_counts_are_exact_under_eight_concurrent_writers(
    s: TestServer,
    _clock: ManualClock,
) {
    let w = world(&s).await;
    let target = w.member.clone();
    let mut actors = Vec::new();
    for n in 0..8 {
        actors.push(new_member(&s, &w.ws, &format!("actor{n}"), Role::Member).await);
    }
    const EACH: usize = 3;
    let mut tasks = Vec::new();
    let s = Arc::new(s);
    for actor in actors {
        let s = s.clone();
        let team = w.team_id.clone();
        let target = target.id.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                s.post(
                    "/issues",
                    actor.t(),
                    &json!({"team_id": team, "title": format!("Work {n}"), "assignee_id": target}),
                )
                .await
                .expect(201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = (8 * EACH) as i64;
    let mut count = 0;
    for _ in 0..POLLS {
        count = unread_count(&s, &target, &w.ws).await;
        if count >= expected {
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    assert_eq!(count, expected);
    assert_eq!(inbox(&s, &target).await.len(), expected as usize);
    // The count is then exact under concurrent reads too.
    let items = inbox(&s, &target).await;
    let mut reads = Vec::new();
    for n in items.iter().take(8) {
        let s = s.clone();
        let t = target.token.clone();
        let nid = n["id"].as_str().unwrap().to_owned();
        reads.push(tokio::spawn(async move {
            s.put(
                &format!("/notifications/{nid}"),
                Some(&t),
                &json!({"read": true}),
            )
            .await
            .expect(200);
        }));
    }
    for r in reads {
        r.await.unwrap();
    }
    assert_eq!(unread_count(&s, &target, &w.ws).await, expected - 8);
}

async fn a_removed_member_gets_nothing_further(s: TestServer, _clock: ManualClock) {
    let w = world(&s).await;
    let issue = create_issue(&s, &w.owner, &w, json!({"assignee_id": w.member.id})).await;
    wait_inbox(&s, &w.member, |i| has(i, "assigned", &issue)).await;
    s.delete(
        &format!("/workspaces/{}/members/{}", w.ws, w.member.id),
        w.owner.t(),
    )
    .await
    .expect(200);
    // The member was subscribed (assignee): a comment now reaches the admin only.
    comment(&s, &w.owner, &issue, "are you there?").await;
    update_issue(&s, &w.owner, &issue, json!({"priority": "urgent"})).await;
    barrier(&s, &w, &w.owner, &w.admin).await;
    assert!(inbox(&s, &w.member).await.is_empty());
    assert_eq!(unread_count(&s, &w.member, &w.ws).await, 0);
    let r = s
        .get(&format!("/issues/{issue}/subscribers"), w.owner.t())
        .await
        .expect(200);
    assert!(
        r.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["user_id"] != w.member.id.as_str())
    );
}

async fn preferences_are_respected(s: TestServer, _clock: ManualClock) {
    let w = world(&s).await;
    let r = s
        .get("/auth/notification-preferences", w.member.t())
        .await
        .expect(200);
    assert_eq!(r.data()["comment"], json!({"inbox": true, "push": true}));
    let r = s
        .put(
            "/auth/notification-preferences",
            w.member.t(),
            &json!({"comment": {"inbox": false}, "assigned": {"push": false}}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["comment"], json!({"inbox": false, "push": true}));
    assert_eq!(r.data()["assigned"], json!({"inbox": true, "push": false}));
    let r = s
        .put(
            "/auth/notification-preferences",
            w.member.t(),
            &json!({"comments": {"inbox": false}}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    // The member creates an issue (subscribed), the owner comments: no inbox entry; an
    // assignment still arrives.
    let issue = create_issue(&s, &w.member, &w, json!({})).await;
    comment(&s, &w.owner, &issue, "hello").await;
    barrier(&s, &w, &w.owner, &w.member).await;
    let member = inbox(&s, &w.member).await;
    assert!(!has(&member, "comment", &issue), "{member:#?}");
    assert_eq!(member.len(), 1);
    assert_eq!(member[0]["type"], json!("assigned"));
}

/// The next message of `kind` on `ws` (others are skipped), within a bounded wait.
async fn next_of(ws: &mut WsClient, kind: &str) -> Value {
    for _ in 0..50 {
        match ws.next(std::time::Duration::from_secs(5)).await {
            Some(v) if v["type"] == kind => return v,
            Some(_) => {}
            None => break,
        }
    }
    panic!("no {kind} message");
}

async fn notifications_reach_only_their_users_sockets(s: TestServer, _clock: ManualClock) {
    let w = world(&s).await;
    let mut member = WsClient::connect(&s, w.member.t()).await.unwrap();
    let mut admin = WsClient::connect(&s, w.admin.t()).await.unwrap();
    // Nobody subscribes to a user topic, not even their own.
    let refused = admin
        .request(
            "subscribe",
            json!({"topics": [format!("user:{}", w.member.id)]}),
        )
        .await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "FORBIDDEN");

    let issue = create_issue(&s, &w.owner, &w, json!({"assignee_id": w.member.id})).await;
    let created = next_of(&mut member, "notification.created").await;
    assert_eq!(created["topic"], json!(format!("user:{}", w.member.id)));
    assert_eq!(created["notification"]["subject_id"], json!(issue));
    assert_eq!(created["notification"]["type"], json!("assigned"));
    let count = next_of(&mut member, "notifications.unread_count").await;
    assert_eq!(count["workspace_id"], json!(w.ws));
    assert_eq!(count["count"], json!(1));
    // The socket took it: delivered.
    wait_inbox(&s, &w.member, |i| !i[0]["delivered_at"].is_null()).await;
    // Read state changed over REST moves the count on the same sockets.
    let path = format!(
        "/notifications/{}",
        created["notification"]["id"].as_str().unwrap()
    );
    s.put(&path, w.member.t(), &json!({"read": true}))
        .await
        .expect(200);
    let count = next_of(&mut member, "notifications.unread_count").await;
    assert_eq!(
        (&count["workspace_id"], &count["count"]),
        (&json!(w.ws), &json!(0))
    );
    s.put(&path, w.member.t(), &json!({"read": false}))
        .await
        .expect(200);
    assert_eq!(
        next_of(&mut member, "notifications.unread_count").await["count"],
        json!(1)
    );
    s.post("/notifications/mark-read", w.member.t(), &json!({}))
        .await
        .expect(200);
    assert_eq!(
        next_of(&mut member, "notifications.unread_count").await["count"],
        json!(0)
    );
    // The admin's socket gets its own notification (a later one) and never the member's.
    let later = create_issue(&s, &w.owner, &w, json!({"assignee_id": w.admin.id})).await;
    loop {
        let m = next_of(&mut admin, "notification.created").await;
        assert_eq!(m["notification"]["user_id"], json!(w.admin.id), "{m}");
        if m["notification"]["subject_id"] == later.as_str() {
            break;
        }
    }
}

/// Records pushes; every push is accepted by one device.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<PushMessage>>);

#[async_trait::async_trait]
impl PushOutlet for Recorder {
    async fn push(&self, message: PushMessage) -> AppResult<PushOutcome> {
        self.0.lock().unwrap().push(message);
        Ok(PushOutcome {
            accepted: 1,
            ..PushOutcome::default()
        })
    }
}

/// Push follows the preferences; an accepted push sets `delivered_at`.
async fn pushes_follow_preferences(backend: Backend) {
    let Some((config, store)) = backend_store(backend, "pushes_follow_preferences").await else {
        return;
    };
    let mut state = AppState::with_store(config, store, Arc::new(SystemClock));
    let recorder = Arc::new(Recorder::default());
    state.push = recorder.clone();
    let s = TestServer::serve(state).await;
    let w = world(&s).await;
    s.put(
        "/auth/notification-preferences",
        w.member.t(),
        &json!({"assigned": {"push": false}}),
    )
    .await
    .expect(200);
    let quiet = create_issue(&s, &w.owner, &w, json!({"assignee_id": w.member.id})).await;
    comment(&s, &w.admin, &quiet, "pushed").await;
    let items = wait_inbox(&s, &w.member, |i| {
        i.iter()
            .any(|n| n["subject_id"] == quiet.as_str() && !n["delivered_at"].is_null())
    })
    .await;
    let pushed: Vec<PushMessage> = recorder.0.lock().unwrap().clone();
    // Only the comment was pushed to the member (the owner, subscribed as creator, too).
    let to_member: Vec<&PushMessage> = pushed.iter().filter(|m| m.user_id == w.member.id).collect();
    assert_eq!(to_member.len(), 1, "{pushed:#?}");
    assert_eq!(to_member[0].data["type"], json!("comment"));
    assert_eq!(to_member[0].badge, 2);
    let by = |actor: &User| {
        items
            .iter()
            .find(|n| n["actor_id"] == actor.id.as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(by(&w.admin)["id"], json!(to_member[0].notification_id));
    assert!(by(&w.owner)["delivered_at"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_follow_preferences_embedded() {
    pushes_follow_preferences(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_follow_preferences_dynamodb() {
    pushes_follow_preferences(Backend::DynamoDb).await;
}

on_every_store_with_clock!(
    a_comment_edit_tells_whom_it_newly_mentions,
    each_type_once_for_the_right_user_never_the_actor,
    changes_by_one_actor_fold_within_the_window,
    subscriptions_follow_the_rules,
    read_state_snooze_archive_and_mark_read,
    unread_counts_are_exact_under_eight_concurrent_writers,
    a_removed_member_gets_nothing_further,
    preferences_are_respected,
    notifications_reach_only_their_users_sockets,
);
