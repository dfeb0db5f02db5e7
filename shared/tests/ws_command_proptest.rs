//! The WebSocket command parser and dispatch over arbitrary input: every message, text or
//! JSON of any shape, gets a reply envelope; nothing panics and the connection stays usable.

use std::sync::Arc;

use momentum_shared::AppState;
use momentum_shared::areas::auth::{LoginRequest, RegisterRequest};
use momentum_shared::clock::SystemClock;
use momentum_shared::config::AppConfig;
use momentum_shared::realtime::commands;
use momentum_shared::realtime::connections::ConnectionRegistry;
use momentum_shared::storage::embedded::EmbeddedStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

const CONNECTION: &str = "conn-proptest";

const KINDS: &[&str] = &[
    "ping",
    "subscribe",
    "unsubscribe",
    "sync",
    "get_connection_info",
    "presence",
    "get_current_workspace",
    "create_workspace",
    "update_workspace",
    "delete_workspace",
    "query_workspace_members",
    "update_profile",
    "accept_invitation",
    "invite_workspace_member",
    "create_team",
    "update_team",
    "delete_team",
    "query_teams",
    "add_team_member",
    "remove_team_member",
    "update_team_member",
    "list_team_members",
    "create_project",
    "update_project",
    "delete_project",
    "query_projects",
    "create_project_status",
    "update_project_status",
    "delete_project_status",
    "query_project_statuses",
    "get_project_status_by_id",
    "create_issue",
    "update_issue",
    "delete_issue",
    "get_issue",
    "query_issues",
    "create_label",
    "update_label",
    "delete_label",
    "query_labels",
    "batch_create_labels",
    "batch_update_labels",
    "batch_delete_labels",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
        "[a-z_]{1,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Commands of every known type (and unknown ones) with arbitrary data, plus raw text.
fn message() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        prop::sample::select(KINDS).prop_map(str::to_owned),
        ".{0,16}",
    ];
    let command = (
        kind,
        json_value(),
        json_value(),
        prop::option::of(json_value()),
    )
        .prop_map(|(kind, data, request_id, extra)| {
            let mut m = json!({"type": kind, "data": data, "request_id": request_id});
            if let Some(extra) = extra {
                m["filters"] = extra.clone();
                m["topics"] = extra;
            }
            m.to_string()
        });
    prop_oneof![
        4 => command,
        1 => json_value().prop_map(|v| v.to_string()),
        1 => any::<String>(),
    ]
}

async fn connected() -> (AppState, ConnectionRegistry) {
    let state = AppState::with_store(
        AppConfig::for_tests(),
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(SystemClock),
    );
    let email = "fuzz@example.com";
    state
        .auth
        .register(
            None,
            RegisterRequest {
                email: email.into(),
                username: "fuzz".into(),
                password: "correct horse battery".into(),
                display_name: None,
            },
        )
        .await
        .unwrap();
    let login = state
        .auth
        .login(
            None,
            LoginRequest {
                email: email.into(),
                password: "correct horse battery".into(),
            },
        )
        .await
        .unwrap();
    let registry = ConnectionRegistry::new(state.ctx.clone());
    registry
        .connect(&state.auth, CONNECTION, Some(&login.tokens.access_token))
        .await
        .unwrap();
    let created = commands::handle(
        &state,
        &registry,
        CONNECTION,
        &json!({"type": "create_workspace", "data": {"name": "Fuzz", "url_key": "fuzz"}})
            .to_string(),
    )
    .await
    .message;
    assert_eq!(created["success"], json!(true), "{created}");
    (state, registry)
}

#[test]
fn arbitrary_messages_get_a_reply_never_a_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (state, registry) = rt.block_on(connected());
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&message(), |text| {
            let reply = rt.block_on(commands::handle(&state, &registry, CONNECTION, &text));
            prop_assert!(!reply.close, "a live session's connection stays open");
            let reply = reply.message;
            prop_assert!(reply["success"].is_boolean(), "no envelope: {reply}");
            prop_assert!(
                reply["type"] == "response" || reply["type"] == "pong",
                "reply type: {reply}"
            );
            if reply["success"] == json!(false) {
                prop_assert!(reply["error"]["code"].is_string(), "no code: {reply}");
            }
            Ok(())
        })
        .unwrap();
    // The connection is still served.
    let pong = rt
        .block_on(commands::handle(
            &state,
            &registry,
            CONNECTION,
            r#"{"type":"ping","request_id":"last"}"#,
        ))
        .message;
    assert_eq!(pong["type"], json!("pong"), "{pong}");
}
