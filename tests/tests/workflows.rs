//! Black-box tests of workflows and workflow states through the shim, on the embedded store
//! and on DynamoDB (moto).

use momentum_tests::{TestServer, World, on_every_store, world};
use serde_json::{Value, json};

fn names(states: &Value) -> Vec<String> {
    states
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn state_id(workflow: &Value, name: &str) -> String {
    workflow["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no state {name} in {workflow}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn workflow(s: &TestServer, w: &World, id: &str) -> Value {
    s.get(&format!("/workflows/{id}"), w.guest.t())
        .await
        .expect(200)
        .data()
        .clone()
}

const DEFAULT_NAMES: [&str; 6] = [
    "Triage",
    "Backlog",
    "Todo",
    "In Progress",
    "Done",
    "Canceled",
];

/// Every member reads a team's workflows with their states in position order, by team, by
/// workspace or from the current workspace, in at most two storage calls.
async fn list_and_read(s: TestServer) {
    let w = world(&s).await;
    let by_team = s
        .get(&format!("/workflows?team_id={}", w.team_id), w.guest.t())
        .await
        .expect(200);
    assert_eq!(by_team.storage_calls(), 2);
    let list = by_team.data().as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], json!(w.workflow_id));
    assert_eq!(list[0]["team_id"], json!(w.team_id));
    assert_eq!(names(&list[0]["states"]), DEFAULT_NAMES);
    let positions: Vec<i64> = list[0]["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [0, 1, 2, 3, 4, 5]);
    assert_eq!(
        list[0]["default_state_id"],
        json!(state_id(&list[0], "Todo"))
    );

    // A second team: the workspace lists both workflows, the team filter one each.
    let team2 = s
        .post(
            "/teams",
            w.admin.t(),
            &json!({"workspace_id": w.ws, "key": "OPS", "name": "Ops"}),
        )
        .await
        .expect(201);
    let team2_id = team2.data()["id"].as_str().unwrap();
    let by_ws = s
        .get(&format!("/workflows?workspace_id={}", w.ws), w.member.t())
        .await
        .expect(200);
    assert_eq!(by_ws.storage_calls(), 2);
    let mut teams: Vec<&str> = by_ws
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|wf| wf["team_id"].as_str().unwrap())
        .collect();
    teams.sort();
    let mut expected = vec![w.team_id.as_str(), team2_id];
    expected.sort();
    assert_eq!(teams, expected);
    for wf in by_ws.data().as_array().unwrap() {
        assert_eq!(names(&wf["states"]), DEFAULT_NAMES);
    }
    let only2 = s
        .get(&format!("/workflows?team_id={team2_id}"), w.member.t())
        .await
        .expect(200);
    assert_eq!(only2.data().as_array().unwrap().len(), 1);
    assert_eq!(only2.data()[0]["team_id"], json!(team2_id));
    // No parameter: the caller's current workspace (the owner's is this one).
    let current = s.get("/workflows", w.owner.t()).await.expect(200);
    assert_eq!(current.data().as_array().unwrap().len(), 2);

    // One workflow, in two calls.
    let one = s
        .get(&format!("/workflows/{}", w.workflow_id), w.guest.t())
        .await
        .expect(200);
    assert_eq!(one.storage_calls(), 2);
    assert_eq!(names(&one.data()["states"]), DEFAULT_NAMES);
    assert_eq!(one.data()["version"], 1);
}

/// Workflows and teams of another workspace are not found; so are forged and malformed ids.
async fn other_workspace_is_not_found(s: TestServer) {
    let w = world(&s).await;
    let forged =
        momentum_shared::kernel::ids::new_id(momentum_shared::kernel::ids::Kind::Workflow, &w.ws);
    for id in [
        w.other_workflow_id.as_str(),
        forged.as_str(),
        "wf_bad",
        "nope",
    ] {
        let r = s
            .get(&format!("/workflows/{id}"), w.owner.t())
            .await
            .expect(404);
        assert_eq!(r.error_code(), "NOT_FOUND");
        s.put(
            &format!("/workflows/{id}"),
            w.owner.t(),
            &json!({"name": "X"}),
        )
        .await
        .expect(404);
        s.post(
            &format!("/workflows/{id}/states"),
            w.owner.t(),
            &json!({"name": "X", "category": "started", "color": "#000000"}),
        )
        .await
        .expect(404);
    }
    s.get(
        &format!("/workflows?team_id={}", w.other_team_id),
        w.owner.t(),
    )
    .await
    .expect(404);
    s.get(
        &format!("/workflows?workspace_id={}", w.other_ws),
        w.owner.t(),
    )
    .await
    .expect(404);
    // A team of this workspace with another workspace's id is a contradiction: 404.
    s.get(
        &format!(
            "/workflows?team_id={}&workspace_id={}",
            w.team_id, w.other_ws
        ),
        w.owner.t(),
    )
    .await
    .expect(404);
    s.get(&format!("/workflows?team_id={}", w.team_id), w.outsider.t())
        .await
        .expect(404);
    let r = s
        .post(
            "/workflows",
            w.owner.t(),
            &json!({"team_id": w.other_team_id, "name": "Steal"}),
        )
        .await
        .expect(404);
    assert_eq!(r.error_code(), "NOT_FOUND");
    // A state of another workflow (this workspace's) under this workflow is not found.
    let other_state = state_id(&workflow(&s, &w, &w.workflow_id).await, "Done");
    let second = s
        .post(
            "/workflows",
            w.admin.t(),
            &json!({"team_id": w.team_id, "name": "Second"}),
        )
        .await
        .expect(201);
    let second_id = second.data()["id"].as_str().unwrap();
    s.put(
        &format!("/workflows/{second_id}/states/{other_state}"),
        w.admin.t(),
        &json!({"name": "Mine"}),
    )
    .await
    .expect(404);
    s.delete(
        &format!("/workflows/{second_id}/states/{other_state}"),
        w.admin.t(),
    )
    .await
    .expect(404);
    // The outsider's workflow is untouched.
    let theirs = s
        .get(
            &format!("/workflows/{}", w.other_workflow_id),
            w.outsider.t(),
        )
        .await
        .expect(200);
    assert_eq!(theirs.data()["version"], 1);
}

/// Admins create workflows for a team with the default states; `make_default` switches the
/// team's workflow. Members and guests may not.
async fn create_workflow(s: TestServer) {
    let w = world(&s).await;
    let before = w.last_seq(&s).await;
    let r = s
        .post(
            "/workflows",
            w.admin.t(),
            &json!({"team_id": w.team_id, "name": "  Support  "}),
        )
        .await
        .expect(201);
    assert_eq!(r.storage_calls(), 3);
    let wf = r.data().clone();
    assert_eq!(wf["name"], "Support");
    assert_eq!(wf["team_id"], json!(w.team_id));
    assert_eq!(names(&wf["states"]), DEFAULT_NAMES);
    assert_eq!(wf["default_state_id"], json!(state_id(&wf, "Todo")));
    for st in wf["states"].as_array().unwrap() {
        assert_eq!(st["workflow_id"], wf["id"]);
    }
    // Not the default: the team keeps its workflow.
    let team = s
        .get(&format!("/teams/{}", w.team_id), w.guest.t())
        .await
        .expect(200);
    assert_eq!(team.data()["workflow_id"], json!(w.workflow_id));
    let log = w.changes_since(&s, before).await;
    let got: Vec<&str> = log.iter().map(|c| c["event"].as_str().unwrap()).collect();
    assert_eq!(got, ["workflow.created", "team.updated"]);
    assert!(
        log[0]["topics"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("team:{}", w.team_id)))
    );

    // make_default switches it.
    let r = s
        .post(
            "/workflows",
            w.owner.t(),
            &json!({"team_id": w.team_id, "name": "Next", "make_default": true}),
        )
        .await
        .expect(201);
    let next_id = r.data()["id"].as_str().unwrap().to_owned();
    let team = s
        .get(&format!("/teams/{}", w.team_id), w.guest.t())
        .await
        .expect(200);
    assert_eq!(team.data()["workflow_id"], json!(next_id));
    let listed = s
        .get(&format!("/workflows?team_id={}", w.team_id), w.guest.t())
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 3);

    for (body, field) in [
        (json!({"team_id": w.team_id}), "name"),
        (json!({"team_id": w.team_id, "name": ""}), "name"),
        (
            json!({"team_id": w.team_id, "name": "x".repeat(101)}),
            "name",
        ),
        (json!({"name": "No team"}), "team_id"),
        (
            json!({"team_id": w.team_id, "name": "A", "states": []}),
            "states",
        ),
        (
            json!({"team_id": w.team_id, "name": "A", "make_default": "yes"}),
            "make_default",
        ),
    ] {
        let r = s.post("/workflows", w.admin.t(), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    let seq = w.last_seq(&s).await;
    for who in [&w.member, &w.guest] {
        s.post(
            "/workflows",
            who.t(),
            &json!({"team_id": w.team_id, "name": "Mine"}),
        )
        .await
        .expect(403);
    }
    assert_eq!(w.last_seq(&s).await, seq, "refusals write nothing");
}

/// Renaming a workflow and choosing its default state, with the version guard.
async fn update_workflow(s: TestServer) {
    let w = world(&s).await;
    let path = format!("/workflows/{}", w.workflow_id);
    let wf = workflow(&s, &w, &w.workflow_id).await;
    let backlog = state_id(&wf, "Backlog");
    let r = s
        .put(
            &path,
            w.admin.t(),
            &json!({"name": "Delivery", "default_state_id": backlog, "version": 1}),
        )
        .await
        .expect(200);
    assert_eq!(r.storage_calls(), 3);
    assert_eq!(r.data()["name"], "Delivery");
    assert_eq!(r.data()["default_state_id"], json!(backlog));
    assert_eq!(r.data()["version"], 2);
    let stale = s
        .put(&path, w.admin.t(), &json!({"name": "Stale", "version": 1}))
        .await
        .expect(412);
    assert_eq!(stale.error_code(), "PRECONDITION_FAILED");
    assert_eq!(workflow(&s, &w, &w.workflow_id).await["name"], "Delivery");

    // The default state must be a state of this workflow.
    let other = s
        .post(
            "/workflows",
            w.admin.t(),
            &json!({"team_id": w.team_id, "name": "Other"}),
        )
        .await
        .expect(201);
    let foreign_state = state_id(other.data(), "Done");
    let outsiders_state = state_id(
        &s.get(
            &format!("/workflows/{}", w.other_workflow_id),
            w.outsider.t(),
        )
        .await
        .expect(200)
        .data()
        .clone(),
        "Done",
    );
    for bad in [
        foreign_state.as_str(),
        outsiders_state.as_str(),
        "st_nope",
        "",
    ] {
        let r = s
            .put(&path, w.admin.t(), &json!({"default_state_id": bad}))
            .await
            .expect(404);
        assert_eq!(r.error_field(), Some("default_state_id"), "{bad}");
    }
    for (body, field) in [
        (json!({"name": " "}), "name"),
        (json!({"team_id": w.team_id}), "team_id"),
        (json!({"states": []}), "states"),
    ] {
        let r = s.put(&path, w.admin.t(), &body).await.expect(400);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    for who in [&w.member, &w.guest] {
        s.put(&path, who.t(), &json!({"name": "Mine"}))
            .await
            .expect(403);
    }
    s.put(&path, w.outsider.t(), &json!({"name": "Mine"}))
        .await
        .expect(404);
    assert_eq!(workflow(&s, &w, &w.workflow_id).await["version"], 2);
}

/// Adding states: validation of every field, position at the end by default, colors
/// upper-cased, transitions limited to states of the same workflow.
async fn create_states(s: TestServer) {
    let w = world(&s).await;
    let path = format!("/workflows/{}/states", w.workflow_id);
    let wf = workflow(&s, &w, &w.workflow_id).await;
    let done = state_id(&wf, "Done");
    let before = w.last_seq(&s).await;
    let r = s
        .post(
            &path,
            w.admin.t(),
            &json!({"name": "In Review", "category": "started", "color": "#a1b2c3", "transitions_to": [done, done]}),
        )
        .await
        .expect(201);
    assert_eq!(r.storage_calls(), 4);
    let review = r.data().clone();
    assert!(review["id"].as_str().unwrap().starts_with("st_"));
    assert_eq!(review["color"], "#A1B2C3");
    assert_eq!(review["category"], "started");
    assert_eq!(review["position"], 6, "after the last state");
    assert_eq!(review["transitions_to"], json!([done]));
    assert_eq!(review["workflow_id"], json!(w.workflow_id));
    let log = w.changes_since(&s, before).await;
    let got: Vec<&str> = log.iter().map(|c| c["event"].as_str().unwrap()).collect();
    assert_eq!(got, ["workflow_state.created", "workflow.updated"]);

    // An explicit position sorts it in.
    let r = s
        .post(
            &path,
            w.owner.t(),
            &json!({"name": "Icebox", "category": "backlog", "color": "#000000", "position": 0}),
        )
        .await
        .expect(201);
    assert!(r.data()["transitions_to"].is_null());
    let wf = workflow(&s, &w, &w.workflow_id).await;
    let order = names(&wf["states"]);
    assert_eq!(order.last().unwrap(), "In Review");
    assert_eq!(order.len(), 8);
    let icebox_at = order.iter().position(|n| n == "Icebox").unwrap();
    assert!(icebox_at <= 1, "{order:?}");
    assert_eq!(wf["version"], 3, "each state change advances the workflow");

    let other_wf = s
        .post(
            "/workflows",
            w.admin.t(),
            &json!({"team_id": w.team_id, "name": "Other"}),
        )
        .await
        .expect(201);
    let foreign = state_id(other_wf.data(), "Done");
    let ok = json!({"name": "X", "category": "started", "color": "#123456"});
    let with = |field: &str, value: Value| {
        let mut b = ok.clone();
        b[field] = value;
        b
    };
    let seq = w.last_seq(&s).await;
    for (body, field, status) in [
        (with("color", json!("red")), "color", 400),
        (with("color", json!("#12345")), "color", 400),
        (with("color", json!("#GGGGGG")), "color", 400),
        (with("category", json!("doing")), "category", 400),
        (with("name", json!("")), "name", 400),
        (with("name", json!("n".repeat(101))), "name", 400),
        (with("position", json!(-1)), "position", 400),
        (with("position", json!(1_000_001)), "position", 400),
        (
            with("transitions_to", json!([foreign])),
            "transitions_to",
            404,
        ),
        (
            with("transitions_to", json!(["st_nope"])),
            "transitions_to",
            404,
        ),
        (with("transitions_to", json!("all")), "transitions_to", 400),
        (
            with("workflow_id", json!(w.workflow_id)),
            "workflow_id",
            400,
        ),
        (with("id", json!("st_mine")), "id", 400),
        (json!({"name": "X", "color": "#123456"}), "category", 400),
        (json!({"name": "X", "category": "started"}), "color", 400),
    ] {
        let r = s.post(&path, w.admin.t(), &body).await.expect(status);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    for who in [&w.member, &w.guest] {
        s.post(&path, who.t(), &ok).await.expect(403);
    }
    s.post(&path, w.outsider.t(), &ok).await.expect(404);
    assert_eq!(w.last_seq(&s).await, seq, "refusals write nothing");
    assert_eq!(
        names(&workflow(&s, &w, &w.workflow_id).await["states"]).len(),
        8
    );
}

/// Changing a state: partial updates, transitions (set, reset with null, never itself),
/// and reordering.
async fn update_states(s: TestServer) {
    let w = world(&s).await;
    let wf = workflow(&s, &w, &w.workflow_id).await;
    let todo = state_id(&wf, "Todo");
    let done = state_id(&wf, "Done");
    let canceled = state_id(&wf, "Canceled");
    let path = format!("/workflows/{}/states/{todo}", w.workflow_id);

    let r = s
        .put(&path, w.admin.t(), &json!({"name": "To do"}))
        .await
        .expect(200);
    assert_eq!(r.storage_calls(), 3);
    assert_eq!(r.data()["name"], "To do");
    assert_eq!(r.data()["color"], "#E2E2E2", "other fields stay");
    assert_eq!(r.data()["category"], "unstarted");

    let r = s
        .put(
            &path,
            w.admin.t(),
            &json!({"transitions_to": [done, canceled], "color": "#abcdef", "category": "backlog"}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["transitions_to"], json!([done, canceled]));
    assert_eq!(r.data()["color"], "#ABCDEF");
    assert_eq!(r.data()["category"], "backlog");
    let stored = workflow(&s, &w, &w.workflow_id).await;
    let todo_now = stored["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(todo))
        .unwrap()
        .clone();
    assert_eq!(todo_now["transitions_to"], json!([done, canceled]));
    // null: any state again.
    let r = s
        .put(&path, w.admin.t(), &json!({"transitions_to": null}))
        .await
        .expect(200);
    assert!(r.data()["transitions_to"].is_null());
    // [] : no way out.
    let r = s
        .put(&path, w.admin.t(), &json!({"transitions_to": []}))
        .await
        .expect(200);
    assert_eq!(r.data()["transitions_to"], json!([]));

    // Reorder: Todo last.
    s.put(&path, w.owner.t(), &json!({"position": 99}))
        .await
        .expect(200);
    let order = names(&workflow(&s, &w, &w.workflow_id).await["states"]);
    assert_eq!(order.last().unwrap(), "To do");

    let other_wf = s
        .post(
            "/workflows",
            w.admin.t(),
            &json!({"team_id": w.team_id, "name": "Other"}),
        )
        .await
        .expect(201);
    let foreign = state_id(other_wf.data(), "Done");
    for (body, field, status) in [
        (json!({"transitions_to": [todo]}), "transitions_to", 422),
        (json!({"transitions_to": [foreign]}), "transitions_to", 404),
        (
            json!({"transitions_to": ["garbage"]}),
            "transitions_to",
            404,
        ),
        (json!({"color": "blue"}), "color", 400),
        (json!({"category": "finished"}), "category", 400),
        (json!({"name": ""}), "name", 400),
        (json!({"position": -5}), "position", 400),
        (json!({"workflow_id": w.workflow_id}), "workflow_id", 400),
    ] {
        let r = s.put(&path, w.admin.t(), &body).await.expect(status);
        assert_eq!(r.error_field(), Some(field), "{body}");
    }
    for who in [&w.member, &w.guest] {
        s.put(&path, who.t(), &json!({"name": "Mine"}))
            .await
            .expect(403);
    }
    s.put(&path, w.outsider.t(), &json!({"name": "Mine"}))
        .await
        .expect(404);
    let missing =
        momentum_shared::kernel::ids::new_id(momentum_shared::kernel::ids::Kind::State, &w.ws);
    s.put(
        &format!("/workflows/{}/states/{missing}", w.workflow_id),
        w.admin.t(),
        &json!({"name": "Ghost"}),
    )
    .await
    .expect(404);
    // A state change moves the workflow's version: a stale workflow update is refused.
    let r = s
        .put(
            &format!("/workflows/{}", w.workflow_id),
            w.admin.t(),
            &json!({"name": "Stale", "version": 1}),
        )
        .await
        .expect(412);
    assert_eq!(r.error_code(), "PRECONDITION_FAILED");
}

/// Removing states: not the default one (409), never the last; states that listed a removed
/// state stop listing it.
async fn delete_states(s: TestServer) {
    let w = world(&s).await;
    let wf = workflow(&s, &w, &w.workflow_id).await;
    let id = |name: &str| state_id(&wf, name);
    let state_path = |sid: &str| format!("/workflows/{}/states/{sid}", w.workflow_id);

    // Todo may go to Done or Canceled.
    s.put(
        &state_path(&id("Todo")),
        w.admin.t(),
        &json!({"transitions_to": [id("Done"), id("Canceled")]}),
    )
    .await
    .expect(200);
    for who in [&w.member, &w.guest] {
        s.delete(&state_path(&id("Canceled")), who.t())
            .await
            .expect(403);
    }
    s.delete(&state_path(&id("Canceled")), w.outsider.t())
        .await
        .expect(404);
    let before = w.last_seq(&s).await;
    let r = s
        .delete(&state_path(&id("Canceled")), w.admin.t())
        .await
        .expect(200);
    // Authorization batch, states, deletion mark, the issues in it, commit (2).
    assert_eq!(r.storage_calls(), 6);
    let log = w.changes_since(&s, before).await;
    let got: Vec<&str> = log.iter().map(|c| c["event"].as_str().unwrap()).collect();
    assert_eq!(
        got,
        [
            "workflow_state.deleted",
            "workflow_state.updated",
            "workflow.updated"
        ]
    );
    let now = workflow(&s, &w, &w.workflow_id).await;
    assert_eq!(
        names(&now["states"]),
        ["Triage", "Backlog", "Todo", "In Progress", "Done"]
    );
    let todo = now["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Todo")
        .unwrap()
        .clone();
    assert_eq!(todo["transitions_to"], json!([id("Done")]));
    s.delete(&state_path(&id("Canceled")), w.admin.t())
        .await
        .expect(404);

    // The default state stays.
    let r = s
        .delete(&state_path(&id("Todo")), w.admin.t())
        .await
        .expect(409);
    assert_eq!(r.error_code(), "CONFLICT");
    // Down to one state: it is the default, and it stays.
    for name in ["Triage", "Backlog", "In Progress", "Done"] {
        s.delete(&state_path(&id(name)), w.owner.t())
            .await
            .expect(200);
    }
    let r = s
        .delete(&state_path(&id("Todo")), w.owner.t())
        .await
        .expect(409);
    assert_eq!(r.error_code(), "CONFLICT");
    let left = workflow(&s, &w, &w.workflow_id).await;
    assert_eq!(names(&left["states"]), ["Todo"]);
    assert_eq!(left["default_state_id"], json!(id("Todo")));
}

on_every_store!(
    list_and_read,
    other_workspace_is_not_found,
    create_workflow,
    update_workflow,
    create_states,
    update_states,
    delete_states,
);
