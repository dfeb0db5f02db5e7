//! Every resource command over the WebSocket: one success and one failure each, through the
//! same services (and so the same validation and permissions) as REST.

use momentum_shared::kernel::access::Role;
use momentum_tests::{TestServer, WsClient, on_every_store, seed_member, sign_up};
use serde_json::{Value, json};

fn ok(reply: &Value) -> &Value {
    assert_eq!(reply["success"], true, "{reply}");
    &reply["data"]
}

#[track_caller]
fn failed(reply: &Value, code: &str) {
    assert_eq!(reply["success"], false, "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

async fn resource_commands(s: TestServer) {
    let (owner, _, _) = sign_up(&s, "owner").await;
    let (guest, guest_id, guest_email) = sign_up(&s, "guest").await;
    let created = s
        .post("/workspaces", Some(&owner), &json!({"name": "Commands"}))
        .await
        .expect(201);
    let ws = created.data()["id"].as_str().unwrap().to_owned();
    let team = created.data()["default_team"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    seed_member(&s, &ws, &guest_id, &guest_email, Role::Guest).await;
    let mut c = WsClient::connect(&s, Some(&owner)).await.unwrap();
    let mut g = WsClient::connect(&s, Some(&guest)).await.unwrap();

    // Labels.
    let label = ok(&c
        .request(
            "create_label",
            json!({"name": "Bug", "color": "#ff0000", "level": "issue"}),
        )
        .await)
    .clone();
    failed(
        &c.request("create_label", json!({"name": "Bug", "color": "#00ff00"}))
            .await,
        "CONFLICT",
    );
    let lid = id_of(&label);
    let upd = c
        .request("update_label", json!({"id": lid, "color": "#00ff00"}))
        .await;
    assert_eq!(ok(&upd)["color"], "#00FF00");
    failed(
        &c.request("update_label", json!({"id": lid, "color": "green"}))
            .await,
        "VALIDATION_ERROR",
    );
    let listed = c.request("query_labels", json!({"workspace_id": ws})).await;
    assert_eq!(ok(&listed)["items"].as_array().unwrap().len(), 1);
    failed(
        &c.request("query_labels", json!({"limit": 0})).await,
        "VALIDATION_ERROR",
    );
    let batch = c
        .request(
            "batch_create_labels",
            json!([{"name": "Feature", "color": "#00ff00", "level": "issue"}, {"name": "Docs", "color": "#0000ff"}]),
        )
        .await;
    let items = ok(&batch)["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{batch}");
    let bad_batch = c
        .request(
            "batch_create_labels",
            json!([{"name": "Ok", "color": "#000000"}, {"name": "", "color": "#000000"}]),
        )
        .await;
    failed(&bad_batch, "VALIDATION_ERROR");
    assert!(
        bad_batch["error"]["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{bad_batch}"
    );
    let ids: Vec<String> = items
        .iter()
        .map(|i| {
            i["label"]["id"]
                .as_str()
                .or(i["id"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    ok(&c
        .request(
            "batch_update_labels",
            json!([{"id": ids[0], "color": "#111111"}]),
        )
        .await);
    failed(
        &c.request("batch_update_labels", json!([])).await,
        "VALIDATION_ERROR",
    );
    ok(&c.request("batch_delete_labels", json!(ids)).await);
    failed(
        &c.request("batch_delete_labels", json!({"ids": "nope"}))
            .await,
        "VALIDATION_ERROR",
    );
    ok(&c.request("delete_label", json!({"id": lid})).await);
    failed(
        &c.request("delete_label", json!({"id": lid})).await,
        "NOT_FOUND",
    );
    failed(
        &g.request(
            "create_label",
            json!({"workspace_id": ws, "name": "X", "color": "#000000"}),
        )
        .await,
        "FORBIDDEN",
    );

    // Teams and members.
    let t = ok(&c
        .request("create_team", json!({"key": "OPS", "name": "Operations"}))
        .await)
    .clone();
    let tid = t["team"]["id"]
        .as_str()
        .or(t["id"].as_str())
        .unwrap()
        .to_owned();
    failed(
        &c.request("create_team", json!({"key": "OPS", "name": "Again"}))
            .await,
        "CONFLICT",
    );
    assert_eq!(
        ok(&c
            .request("update_team", json!({"id": tid, "name": "Ops"}))
            .await)["name"],
        "Ops"
    );
    failed(
        &c.request("update_team", json!({"name": "no id"})).await,
        "VALIDATION_ERROR",
    );
    let teams = c.request("query_teams", json!({"workspace_id": ws})).await;
    assert_eq!(ok(&teams)["items"].as_array().unwrap().len(), 2);
    failed(
        &c.request("query_teams", json!({"bogus": 1})).await,
        "VALIDATION_ERROR",
    );
    ok(&c
        .request(
            "add_team_member",
            json!({"team_id": tid, "user_id": guest_id}),
        )
        .await);
    failed(
        &c.request(
            "add_team_member",
            json!({"team_id": tid, "user_id": "nobody"}),
        )
        .await,
        "NOT_FOUND",
    );
    let changed = c
        .request(
            "update_team_member",
            json!({"team_id": tid, "user_id": guest_id, "role": "lead"}),
        )
        .await;
    assert_eq!(ok(&changed)["role"], "lead");
    failed(
        &c.request(
            "update_team_member",
            json!({"team_id": tid, "user_id": guest_id, "role": "king"}),
        )
        .await,
        "VALIDATION_ERROR",
    );
    let members = c
        .request("list_team_members", json!({"team_id": tid}))
        .await;
    assert_eq!(ok(&members)["items"].as_array().unwrap().len(), 2);
    failed(
        &c.request("list_team_members", json!({})).await,
        "VALIDATION_ERROR",
    );
    ok(&c
        .request(
            "remove_team_member",
            json!({"team_id": tid, "user_id": guest_id}),
        )
        .await);
    failed(
        &g.request(
            "remove_team_member",
            json!({"team_id": tid, "user_id": guest_id}),
        )
        .await,
        "NOT_FOUND",
    );
    ok(&c.request("delete_team", json!({"id": tid})).await);
    failed(
        &c.request("delete_team", json!({"id": tid})).await,
        "NOT_FOUND",
    );

    // Invitations.
    let (invitee, _, invitee_email) = sign_up(&s, "invitee").await;
    let inv = ok(&c
        .request(
            "invite_workspace_member",
            json!({"email": invitee_email, "role": "member"}),
        )
        .await)
    .clone();
    failed(
        &g.request(
            "invite_workspace_member",
            json!({"workspace_id": ws, "email": "x@example.com", "role": "member"}),
        )
        .await,
        "FORBIDDEN",
    );
    let mut i = WsClient::connect(&s, Some(&invitee)).await.unwrap();
    failed(
        &c.request("accept_invitation", json!({"id": id_of(&inv)}))
            .await,
        "NOT_FOUND",
    );
    ok(&i
        .request("accept_invitation", json!({"id": id_of(&inv)}))
        .await);

    // Project statuses.
    let st = ok(&c
        .request(
            "create_project_status",
            json!({"name": "Active", "category": "in_progress", "color": "#00ff00"}),
        )
        .await)
    .clone();
    let stid = id_of(&st);
    failed(
        &c.request(
            "create_project_status",
            json!({"name": "X", "category": "someday", "color": "#00ff00"}),
        )
        .await,
        "VALIDATION_ERROR",
    );
    assert_eq!(
        ok(&c
            .request("get_project_status_by_id", json!({"id": stid}))
            .await)["name"],
        "Active"
    );
    failed(
        &c.request("get_project_status_by_id", json!({"id": "ps_nope"}))
            .await,
        "NOT_FOUND",
    );
    assert_eq!(
        ok(&c
            .request(
                "update_project_status",
                json!({"id": stid, "name": "Doing"})
            )
            .await)["name"],
        "Doing"
    );
    failed(
        &c.request("update_project_status", json!({"id": stid, "color": "red"}))
            .await,
        "VALIDATION_ERROR",
    );
    assert!(
        !ok(&c.request("query_project_statuses", json!({})).await)
            .as_array()
            .unwrap()
            .is_empty()
    );
    failed(
        &c.request(
            "query_project_statuses",
            json!({"workspace_id": "not-a-uuid"}),
        )
        .await,
        "NOT_FOUND",
    );

    // Projects.
    let p = ok(&c
        .request(
            "create_project",
            json!({"name": "Launch", "project_key": "LAU", "status_id": stid}),
        )
        .await)
    .clone();
    let pid = id_of(&p);
    failed(
        &c.request(
            "create_project",
            json!({"name": "Dup", "project_key": "LAU"}),
        )
        .await,
        "CONFLICT",
    );
    assert_eq!(
        ok(&c
            .request("update_project", json!({"id": pid, "priority": "high"}))
            .await)["priority"],
        "high"
    );
    failed(
        &c.request("update_project", json!({"id": pid, "priority": "extreme"}))
            .await,
        "VALIDATION_ERROR",
    );
    assert_eq!(
        ok(&c
            .request("query_projects", json!({"workspace_id": ws}))
            .await)["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    failed(
        &g.request(
            "create_project",
            json!({"workspace_id": ws, "name": "Nope", "project_key": "NOP"}),
        )
        .await,
        "FORBIDDEN",
    );

    // Issues.
    let issue = ok(&c
        .request("create_issue", json!({"team_id": team, "title": "First"}))
        .await)
    .clone();
    let iid = id_of(&issue);
    failed(
        &c.request("create_issue", json!({"team_id": team, "title": ""}))
            .await,
        "VALIDATION_ERROR",
    );
    let got = c
        .request("get_issue", json!({"id": issue["identifier"]}))
        .await;
    assert_eq!(ok(&got)["id"], json!(iid));
    failed(
        &c.request("get_issue", json!({"id": "ZZZ-999"})).await,
        "NOT_FOUND",
    );
    assert_eq!(
        ok(&c
            .request("update_issue", json!({"id": iid, "priority": "urgent"}))
            .await)["priority"],
        "urgent"
    );
    failed(
        &c.request(
            "update_issue",
            json!({"id": iid, "version": 99, "title": "stale"}),
        )
        .await,
        "PRECONDITION_FAILED",
    );
    let q = c
        .request(
            "query_issues",
            json!({"filters_are_top_level": null, "team_id": team, "status": "todo"}),
        )
        .await;
    failed(&q, "VALIDATION_ERROR");
    let mut msg = json!({"type": "query_issues", "filters": {"team_id": team, "status": "todo"}, "request_id": "q"});
    c.send_text(msg.to_string()).await;
    let listed = c.reply_to("q").await;
    assert_eq!(
        ok(&listed)["items"].as_array().unwrap().len(),
        1,
        "seed-style filters"
    );
    msg["filters"]["status"] = json!("done");
    msg["request_id"] = json!("q2");
    c.send_text(msg.to_string()).await;
    assert_eq!(
        ok(&c.reply_to("q2").await)["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    failed(
        &g.request("delete_issue", json!({"id": iid})).await,
        "FORBIDDEN",
    );
    ok(&c.request("delete_issue", json!({"id": iid})).await);

    // Project and status deletion last (the issue referenced neither anymore).
    ok(&c.request("delete_project", json!({"id": pid})).await);
    failed(
        &c.request("delete_project", json!({"id": pid})).await,
        "NOT_FOUND",
    );
    ok(&c
        .request("delete_project_status", json!({"id": stid}))
        .await);
    failed(
        &c.request("delete_project_status", json!({"id": stid}))
            .await,
        "NOT_FOUND",
    );
}

on_every_store!(resource_commands);
