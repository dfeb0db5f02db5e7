//! One visibility rule, every outlet: for every entity type and every role, REST reads, the
//! change feed and live WebSocket events agree with the "Visibility" table of
//! docs/permissions.md. The scenario must produce a change of every `EntityType::ALL`, so a
//! new entity type fails here until it has a row in the table, a REST read below and a step
//! in the scenario.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use momentum_shared::kernel::access::EntityType;
use momentum_shared::kernel::access::Role;
use momentum_tests::{TestServer, User, World, WsClient, on_every_store, user, world};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Guest];

/// The documented table: (entity type, role) -> visible.
fn documented() -> HashMap<(EntityType, Role), bool> {
    let doc = include_str!("../../docs/permissions.md");
    let section = doc
        .split("## Visibility")
        .nth(1)
        .expect("docs/permissions.md has a Visibility section");
    let mut table = HashMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(t) = cells.get(1).and_then(|c| c.parse::<EntityType>().ok()) else {
            continue;
        };
        for (i, role) in [Role::Guest, Role::Member, Role::Admin, Role::Owner]
            .into_iter()
            .enumerate()
        {
            let cell = cells.get(2 + i).copied().unwrap_or_default();
            table.insert((t, role), cell == "yes");
        }
    }
    for t in EntityType::ALL {
        assert!(
            table.contains_key(&(t, Role::Guest)),
            "docs/permissions.md has no Visibility row for {t}"
        );
    }
    table
}

fn token(w: &World, role: Role) -> &User {
    match role {
        Role::Owner => &w.owner,
        Role::Admin => &w.admin,
        Role::Member => &w.member,
        Role::Guest => &w.guest,
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is not a string"))
        .to_owned()
}

/// Makes one change of every entity type in `w.ws`, as its owner.
async fn every_kind_of_change(s: &TestServer, w: &World) {
    let ws = &w.ws;
    let owner = w.owner.t();
    s.put(
        &format!("/workspaces/{ws}"),
        owner,
        &json!({"description": "every kind of change"}),
    )
    .await
    .expect(200);
    let code = s
        .post(
            &format!("/workspaces/{ws}/invite-codes"),
            owner,
            &json!({"role": "admin", "max_uses": 1}),
        )
        .await
        .expect(201);
    let joiner = user(s, "joiner").await;
    s.post(
        &format!("/invite-codes/{}/join", text(&code.data()["code"])),
        joiner.t(),
        &json!({}),
    )
    .await
    .expect(200);
    s.post(
        "/invitations",
        owner,
        &json!({"workspace_id": ws, "email": "invitee@example.com", "role": "member"}),
    )
    .await
    .expect(201);
    let team = s
        .post(
            "/teams",
            owner,
            &json!({"workspace_id": ws, "key": "VIS", "name": "Visibility"}),
        )
        .await
        .expect(201);
    let team_id = text(&team.data()["id"]);
    s.post(
        &format!("/teams/{team_id}/members"),
        owner,
        &json!({"user_id": w.member.id}),
    )
    .await
    .expect(201);
    let workflow = s
        .post(
            "/workflows",
            owner,
            &json!({"team_id": team_id, "name": "Second"}),
        )
        .await
        .expect(201);
    s.post(
        &format!("/workflows/{}/states", text(&workflow.data()["id"])),
        owner,
        &json!({"name": "Review", "category": "started", "color": "#000000"}),
    )
    .await
    .expect(201);
    s.post(
        "/projects",
        owner,
        &json!({"workspace_id": ws, "name": "Seen", "project_key": "SEEN"}),
    )
    .await
    .expect(201);
    s.post(
        "/project-statuses",
        owner,
        &json!({"workspace_id": ws, "name": "Scoping", "category": "planned", "color": "#a1b2c3"}),
    )
    .await
    .expect(201);
    let issue = s
        .post(
            "/issues",
            owner,
            &json!({"team_id": team_id, "title": "Seen by all"}),
        )
        .await
        .expect(201);
    s.post(
        "/cycles",
        owner,
        &json!({"team_id": team_id, "starts_on": "2030-01-01", "ends_on": "2030-01-14"}),
    )
    .await
    .expect(201);
    s.post(
        "/labels",
        owner,
        &json!({"workspace_id": ws, "name": "Seen", "color": "#a1b2c3"}),
    )
    .await
    .expect(201);
    s.post(
        "/comments",
        owner,
        &json!({"issue_id": text(&issue.data()["id"]), "body": "seen"}),
    )
    .await
    .expect(201);
    // Disabled: the scenario is about its change record, not its deliveries.
    s.post(
        "/webhooks",
        owner,
        &json!({"workspace_id": ws, "url": "http://127.0.0.1:9/hook", "enabled": false}),
    )
    .await
    .expect(201);
}

/// Whether `reader` can read the entity of `record` over REST (200) or not (403/404).
async fn rest_reads(s: &TestServer, reader: &User, ws: &str, record: &Value) -> bool {
    let t: EntityType = text(&record["entity_type"]).parse().expect("known type");
    let id = text(&record["entity_id"]);
    let data = &record["data"];
    let (path, find) = match t {
        EntityType::Workspace => (format!("/workspaces/{id}"), None),
        EntityType::WorkspaceMember => (format!("/workspaces/{ws}/members?limit=100"), Some(id)),
        EntityType::Invitation => (format!("/workspaces/{ws}/invitations"), Some(id)),
        EntityType::InviteCode => (format!("/workspaces/{ws}/invite-codes"), None),
        EntityType::Team => (format!("/teams/{id}"), None),
        EntityType::TeamMember => (
            format!("/teams/{}/members", text(&data["team_id"])),
            Some(text(&data["user_id"])),
        ),
        EntityType::Workflow => (format!("/workflows/{id}"), None),
        EntityType::WorkflowState => (format!("/workflows/{}", text(&data["workflow_id"])), None),
        EntityType::Project => (format!("/projects/{id}"), None),
        EntityType::ProjectStatus => (format!("/project-statuses/{id}"), None),
        EntityType::Issue => (format!("/issues/{id}"), None),
        EntityType::Cycle => (format!("/cycles/{id}"), None),
        EntityType::Label => (format!("/labels/{id}"), None),
        EntityType::Comment => (format!("/comments/{id}"), None),
        EntityType::Webhook => (format!("/webhooks/{id}"), None),
    };
    let reply = s.get(&path, reader.t()).await;
    match reply.status.as_u16() {
        200 => {
            if let Some(id) = find {
                let items = reply.data()["items"].as_array().expect("a list").clone();
                let listed = items
                    .iter()
                    .any(|i| i["id"] == json!(id) || i["user_id"] == json!(id));
                assert!(listed, "{path}: {id} missing for a reader who may list it");
            }
            true
        }
        403 | 404 => false,
        other => panic!("{path}: unexpected {other} {:?}", reply.body),
    }
}

/// The feed as `reader` sees it after `since`: seq -> record.
async fn feed(s: &TestServer, reader: &User, ws: &str, since: i64) -> BTreeMap<i64, Value> {
    let reply = s
        .get(
            &format!("/workspaces/{ws}/changes?since={since}&limit=1000"),
            reader.t(),
        )
        .await
        .expect(200);
    assert_eq!(reply.data()["has_more"], false);
    reply.data()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["seq"].as_i64().unwrap(), c.clone()))
        .collect()
}

/// Events on `client` up to and including the one with `seq == last` (which every role
/// may see): seq -> event.
async fn events_until(client: &mut WsClient, last: i64) -> BTreeMap<i64, Value> {
    let mut got = BTreeMap::new();
    loop {
        let ev = client
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("no event up to seq {last}; got {got:?}"));
        if ev["type"] != "event" {
            continue;
        }
        let seq = ev["seq"].as_i64().unwrap();
        assert!(got.insert(seq, ev).is_none(), "seq {seq} delivered twice");
        if seq == last {
            return got;
        }
    }
}

async fn every_outlet_follows_the_visibility_table(s: TestServer) {
    let table = documented();
    let w = world(&s).await;
    let ws = w.ws.clone();
    let mut sockets = Vec::new();
    for role in ROLES {
        let mut c = WsClient::connect(&s, token(&w, role).t()).await.unwrap();
        let sub = c
            .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
            .await;
        assert_eq!(sub["success"], true, "{role:?}: {sub}");
        sockets.push((role, c));
    }
    let start = feed(&s, &w.owner, &ws, 0)
        .await
        .keys()
        .last()
        .copied()
        .unwrap_or(0);

    every_kind_of_change(&s, &w).await;
    // A last change every role sees: each socket reads up to it.
    let marker = s
        .put(
            &format!("/workspaces/{ws}"),
            w.owner.t(),
            &json!({"description": "marker"}),
        )
        .await
        .expect(200);
    assert_eq!(marker.data()["description"], "marker");
    let all = feed(&s, &w.owner, &ws, start).await;
    let last = *all.keys().last().unwrap();

    let of_type = |t: EntityType, m: &BTreeMap<i64, Value>| -> BTreeSet<i64> {
        // Live events name their type in `event` (`{entity_type}.{kind}`).
        m.iter()
            .filter(|(_, r)| {
                r["event"]
                    .as_str()
                    .and_then(|e| e.rsplit_once('.'))
                    .map(|p| p.0)
                    == Some(t.as_str())
            })
            .map(|(seq, _)| *seq)
            .collect()
    };
    for t in EntityType::ALL {
        assert!(
            !of_type(t, &all).is_empty(),
            "the scenario made no {t} change: add a step for it"
        );
    }

    for (role, mut socket) in sockets {
        let reader = token(&w, role);
        let seen_feed = feed(&s, reader, &ws, start).await;
        let seen_events = events_until(&mut socket, last).await;
        for t in EntityType::ALL {
            let expected = table[&(t, role)];
            let every = of_type(t, &all);
            let in_feed = of_type(t, &seen_feed);
            let in_events = of_type(t, &seen_events);
            let first = all[every.iter().next().unwrap()].clone();
            let by_rest = rest_reads(&s, reader, &ws, &first).await;
            let want = if expected { every } else { BTreeSet::new() };
            assert_eq!(in_feed, want, "{role:?} / {t}: feed");
            assert_eq!(in_events, want, "{role:?} / {t}: events");
            assert_eq!(by_rest, expected, "{role:?} / {t}: REST");
        }
        // The cursor moves past what the reader may not see: it still learns the head.
        let page = s
            .get(
                &format!("/workspaces/{ws}/changes?since={start}&limit=1000"),
                reader.t(),
            )
            .await
            .expect(200);
        assert_eq!(page.data()["last_seq"], json!(last), "{role:?}: last_seq");
        socket.close().await;
    }
}

/// The reproduction: a guest never learns an admin invite code, so cannot join with it.
async fn a_guest_cannot_read_an_invite_code_from_any_outlet(s: TestServer) {
    let w = world(&s).await;
    let ws = w.ws.clone();
    let mut guest = WsClient::connect(&s, w.guest.t()).await.unwrap();
    let sub = guest
        .request("subscribe", json!({"topics": [format!("workspace:{ws}")]}))
        .await;
    assert_eq!(sub["success"], true, "{sub}");
    let code = s
        .post(
            &format!("/workspaces/{ws}/invite-codes"),
            w.owner.t(),
            &json!({"role": "admin", "max_uses": 1}),
        )
        .await
        .expect(201);
    let code = text(&code.data()["code"]);
    // A change every role sees, after the code: the guest's socket reads up to it.
    s.put(
        &format!("/workspaces/{ws}"),
        w.owner.t(),
        &json!({"description": "after the code"}),
    )
    .await
    .expect(200);
    let head = *feed(&s, &w.owner, &ws, 0).await.keys().last().unwrap();

    s.get(&format!("/workspaces/{ws}/invite-codes"), w.guest.t())
        .await
        .expect(403);
    let guest_feed = s
        .get(
            &format!("/workspaces/{ws}/changes?since=0&limit=1000"),
            w.guest.t(),
        )
        .await
        .expect(200);
    assert!(
        !guest_feed.body.to_string().contains(&code),
        "the code is in the guest's feed"
    );
    let sync = guest
        .request(
            "sync",
            json!({"workspace_id": ws, "since": 0, "limit": 1000}),
        )
        .await;
    assert_eq!(sync["success"], true, "{sync}");
    assert!(!sync.to_string().contains(&code), "the code is in sync");
    assert_eq!(sync["data"]["last_seq"], json!(head));
    let events = events_until(&mut guest, head).await;
    assert!(
        !serde_json::to_string(&events).unwrap().contains(&code),
        "the code reached the guest's socket"
    );
}

/// An invitation's invitee sees their own answer in the feed once a member, even as a guest.
async fn the_invitee_sees_their_invitation(s: TestServer) {
    let w = world(&s).await;
    let invitee = user(&s, "invitee").await;
    let inv = s
        .post(
            "/invitations",
            w.owner.t(),
            &json!({"workspace_id": w.ws, "email": invitee.email, "role": "guest"}),
        )
        .await
        .expect(201);
    let inv_id = text(&inv.data()["id"]);
    s.post(
        &format!("/invitations/{inv_id}/accept"),
        invitee.t(),
        &json!({}),
    )
    .await
    .expect(200);
    let seen = feed(&s, &invitee, &w.ws, 0).await;
    let about: Vec<&Value> = seen
        .values()
        .filter(|r| r["entity_id"] == json!(inv_id))
        .collect();
    assert_eq!(about.len(), 1, "only the accepting update: {about:?}");
    assert_eq!(about[0]["event"], "invitation.updated");
    let other_guest = feed(&s, &w.guest, &w.ws, 0).await;
    assert!(
        other_guest
            .values()
            .all(|r| r["entity_id"] != json!(inv_id)),
        "another guest sees the invitation"
    );
}

/// A cursor the server never handed out (beyond the head) is refused, on REST and `sync`,
/// instead of being echoed back as `last_seq` (which would skip the changes up to it).
async fn a_cursor_beyond_the_head_is_refused(s: TestServer) {
    let w = world(&s).await;
    let head = *feed(&s, &w.member, &w.ws, 0).await.keys().last().unwrap();
    let ahead = s
        .get(
            &format!("/workspaces/{}/changes?since={}", w.ws, head + 1),
            w.member.t(),
        )
        .await
        .expect(400);
    assert_eq!(ahead.error_code(), "VALIDATION_ERROR");
    assert_eq!(ahead.error_field(), Some("since"));
    let at_head = s
        .get(
            &format!("/workspaces/{}/changes?since={head}", w.ws),
            w.member.t(),
        )
        .await
        .expect(200);
    assert_eq!(at_head.data()["last_seq"], json!(head));
    let mut c = WsClient::connect(&s, w.member.t()).await.unwrap();
    let sync = c
        .request("sync", json!({"workspace_id": w.ws, "since": head + 1000}))
        .await;
    assert_eq!(sync["success"], false, "{sync}");
    assert_eq!(sync["error"]["field"], "since");
}

on_every_store!(
    a_cursor_beyond_the_head_is_refused,
    every_outlet_follows_the_visibility_table,
    a_guest_cannot_read_an_invite_code_from_any_outlet,
    the_invitee_sees_their_invitation,
);
