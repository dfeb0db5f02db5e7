//! Matrix rows of workflows and workflow states (one per route; see matrix/mod.rs).

use momentum_shared::kernel::access::Role;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Expect, Fixture, Req, Row, row};

/// The fixture team's current workflow, with its states.
async fn team_workflow(f: &Fixture) -> Value {
    let team = f
        .as_owner(
            Method::GET,
            &format!("/teams/{}", f.team_id),
            json!(null),
            200,
        )
        .await;
    let id = team["workflow_id"].as_str().unwrap();
    f.as_owner(Method::GET, &format!("/workflows/{id}"), json!(null), 200)
        .await
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// A state of the fixture team's workflow that is not its default one.
fn some_state(workflow: &Value) -> String {
    workflow["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] != workflow["default_state_id"])
        .map(id_of)
        .unwrap()
}

pub fn rows() -> Vec<Row> {
    vec![
        row(
            Method::GET,
            "/workflows",
            Expect::MinRole(Role::Guest, 200),
            |f, _| Box::pin(async move { Req::new(format!("/workflows?workspace_id={}", f.ws)) }),
        ),
        row(
            Method::POST,
            "/workflows",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    Req::new("/workflows")
                        .body(json!({"team_id": f.team_id, "name": "Matrix flow"}))
                })
            },
        ),
        row(
            Method::GET,
            "/workflows/{id}",
            Expect::MinRole(Role::Guest, 200),
            |f, _| {
                Box::pin(async move {
                    let wf = team_workflow(f).await;
                    Req::new(format!("/workflows/{}", id_of(&wf)))
                })
            },
        ),
        row(
            Method::PUT,
            "/workflows/{id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let wf = team_workflow(f).await;
                    let name = format!("Flow {}", uuid::Uuid::new_v4().simple());
                    Req::new(format!("/workflows/{}", id_of(&wf))).body(json!({"name": name}))
                })
            },
        ),
        row(
            Method::POST,
            "/workflows/{id}/states",
            Expect::MinRole(Role::Admin, 201),
            |f, _| {
                Box::pin(async move {
                    let wf = team_workflow(f).await;
                    Req::new(format!("/workflows/{}/states", id_of(&wf))).body(
                        json!({"name": "Matrix state", "category": "started", "color": "#336699"}),
                    )
                })
            },
        ),
        row(
            Method::PUT,
            "/workflows/{id}/states/{state_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let wf = team_workflow(f).await;
                    let color = format!("#{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
                    Req::new(format!(
                        "/workflows/{}/states/{}",
                        id_of(&wf),
                        some_state(&wf)
                    ))
                    .body(json!({"color": color}))
                })
            },
        ),
        // A fresh state per caller, so a delete has a target.
        row(
            Method::DELETE,
            "/workflows/{id}/states/{state_id}",
            Expect::MinRole(Role::Admin, 200),
            |f, _| {
                Box::pin(async move {
                    let wf = id_of(&team_workflow(f).await);
                    let state = f
                        .as_owner(
                            Method::POST,
                            &format!("/workflows/{wf}/states"),
                            json!({"name": "Doomed", "category": "canceled", "color": "#990000"}),
                            201,
                        )
                        .await;
                    Req::new(format!("/workflows/{wf}/states/{}", id_of(&state)))
                })
            },
        ),
    ]
}
