//! Request bodies and WebSocket commands that name a JSON object key twice are refused (400
//! `VALIDATION_ERROR` naming the key), wherever the object sits, and nothing is written:
//! serde_json alone would keep the last value silently.

use momentum_tests::{Reply, TestServer, World, WsClient, on_every_store, world};
use reqwest::Method;
use serde_json::{Value, json};

/// Sends `text` as it is (a `serde_json::Value` cannot hold a duplicate key).
async fn raw(s: &TestServer, method: Method, path: &str, token: &str, text: &str) -> Reply {
    let response = s
        .http
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(text.to_owned())
        .send()
        .await
        .expect("request");
    Reply::read(response).await
}

#[track_caller]
fn refused(r: &Reply, field: &str) {
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert_eq!(r.error_code(), "VALIDATION_ERROR", "{}", r.body);
    assert_eq!(r.error_field(), Some(field), "{}", r.body);
    assert_eq!(r.body["success"], false);
}

async fn issue_count(s: &TestServer, w: &World) -> usize {
    s.get(&format!("/issues?team_id={}", w.team_id), w.owner.t())
        .await
        .expect(200)
        .data()["items"]
        .as_array()
        .unwrap()
        .len()
}

/// REQUIRED (issue 10, reproduction 6): `{"bio":5,"bio":"ok"}` is a 400 on `bio`, and so is
/// a duplicate in a nested object or array element, on a create and on a batch; equal keys
/// in different objects are fine.
async fn duplicate_keys_in_rest_bodies(s: TestServer) {
    let w = world(&s).await;
    let token = &w.owner.token;

    refused(
        &raw(
            &s,
            Method::PUT,
            "/auth/profile",
            token,
            r#"{"bio":5,"bio":"ok"}"#,
        )
        .await,
        "bio",
    );
    // Even when both say the same thing: the body is ambiguous to any other reader.
    refused(
        &raw(
            &s,
            Method::PUT,
            "/auth/profile",
            token,
            r#"{"bio":"ok","bio":"ok"}"#,
        )
        .await,
        "bio",
    );
    let me = s.get("/auth/profile", w.owner.t()).await.expect(200);
    assert_eq!(me.data()["bio"], Value::Null, "nothing was written");
    assert_eq!(me.data()["version"], 1);

    let before = issue_count(&s, &w).await;
    let create = format!(r#"{{"team_id":"{}","title":"a","title":"b"}}"#, w.team_id);
    refused(
        &raw(&s, Method::POST, "/issues", token, &create).await,
        "title",
    );
    assert_eq!(issue_count(&s, &w).await, before, "no issue was created");

    let label = s
        .post(
            "/labels",
            w.owner.t(),
            &json!({"workspace_id": w.ws, "name": "bug", "color": "#a1b2c3"}),
        )
        .await
        .expect(201);
    let label_id = label.data()["id"].as_str().unwrap();
    let batch =
        format!(r##"{{"labels":[{{"id":"{label_id}","color":"#000000","color":"#111111"}}]}}"##);
    refused(
        &raw(&s, Method::PUT, "/labels/batch", token, &batch).await,
        "labels[0].color",
    );
    let now = s
        .get(&format!("/labels/{label_id}"), w.owner.t())
        .await
        .expect(200);
    assert_eq!(now.data()["color"], "#A1B2C3", "the label was not changed");
    assert_eq!(now.data()["version"], 1);

    // A duplicate deeper than any field the route knows is still found first.
    let deep = r#"{"bio":"ok","extra":{"a":{"k":1,"k":2}}}"#;
    refused(
        &raw(&s, Method::PUT, "/auth/profile", token, deep).await,
        "extra.a.k",
    );

    // The same keys once per object: accepted.
    let fine = r#"{"bio":"ok","display_name":"Bio"}"#;
    let ok = raw(&s, Method::PUT, "/auth/profile", token, fine)
        .await
        .expect(200);
    assert_eq!(ok.data()["bio"], "ok");
}

/// The same over the WebSocket: a duplicate in a command's `data` is a failed reply naming
/// the field as REST does (without `data.`), at the top level it names the key, and the
/// connection stays usable.
async fn duplicate_keys_in_websocket_commands(s: TestServer) {
    let w = world(&s).await;
    let mut c = WsClient::connect(&s, w.owner.t()).await.unwrap();

    c.send_text(
        r#"{"type":"update_profile","request_id":"d1","data":{"bio":5,"bio":"ok"}}"#.into(),
    )
    .await;
    let reply = c.reply_to("d1").await;
    assert_eq!(reply["success"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "VALIDATION_ERROR", "{reply}");
    assert_eq!(reply["error"]["field"], "bio", "{reply}");

    let batch = r##"{"type":"batch_update_labels","request_id":"d2","data":{"labels":[{"id":"x","name":"a","name":"b"}]}}"##;
    c.send_text(batch.into()).await;
    let reply = c.reply_to("d2").await;
    assert_eq!(reply["error"]["code"], "VALIDATION_ERROR", "{reply}");
    assert_eq!(reply["error"]["field"], "labels[0].name", "{reply}");

    c.send_text(r#"{"type":"ping","type":"update_profile","request_id":"d3","data":{}}"#.into())
        .await;
    let reply = c.reply_to("d3").await;
    assert_eq!(reply["error"]["code"], "VALIDATION_ERROR", "{reply}");
    assert_eq!(reply["error"]["field"], "type", "{reply}");

    let me = s.get("/auth/profile", w.owner.t()).await.expect(200);
    assert_eq!(me.data()["bio"], Value::Null, "nothing was written");
    let ok = c.request("update_profile", json!({"bio": "ok"})).await;
    assert_eq!(ok["success"], true, "{ok}");
    assert_eq!(ok["data"]["bio"], "ok");
    c.close().await;
}

on_every_store!(
    duplicate_keys_in_rest_bodies,
    duplicate_keys_in_websocket_commands
);
