//! Set-up and event fixtures shared by the realtime crate's Lambda event tests.

use momentum_shared::AppState;
use momentum_shared::areas::auth::{LoginRequest, RegisterRequest};
use momentum_shared::areas::workspaces::CreateWorkspace;
use momentum_shared::kernel::access::Principal;
use serde_json::{Value, json};

/// Registers and logs in `name`, who creates the workspace `workspace`: the access token,
/// the principal and the workspace id.
pub async fn owner_and_workspace(
    state: &AppState,
    name: &str,
    workspace: &str,
) -> (String, Principal, String) {
    let email = format!("{name}@example.com");
    let password = "correct horse";
    state
        .auth
        .register(
            None,
            RegisterRequest {
                email: email.clone(),
                username: name.into(),
                password: password.into(),
                display_name: None,
            },
        )
        .await
        .unwrap();
    let token = state
        .auth
        .login(
            None,
            LoginRequest {
                email,
                password: password.into(),
            },
        )
        .await
        .unwrap()
        .tokens
        .access_token;
    let who = state.auth.authenticate(&token).unwrap();
    let ws = state
        .workspaces
        .create(
            &who,
            CreateWorkspace {
                name: workspace.into(),
                url_key: None,
                description: None,
            },
        )
        .await
        .unwrap()
        .workspace
        .id;
    (token, who, ws)
}

/// One DynamoDB Stream INSERT record of change record `seq` of `ws` (an issue update), as
/// the event source mapping delivers it.
pub fn issue_update_insert(ws: &str, seq: i64) -> Value {
    let sk = format!("{seq:016}");
    json!({
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795442400.0,
            "Keys": {"pk": {"S": format!("WS#{ws}#CHANGES")}, "sk": {"S": sk}},
            "NewImage": {
                "pk": {"S": format!("WS#{ws}#CHANGES")}, "sk": {"S": sk},
                "entity": {"S": "change"}, "seq": {"N": seq.to_string()}, "workspace_id": {"S": ws},
                "event": {"S": "issue.updated"}, "entity_type": {"S": "issue"},
                "entity_id": {"S": "iss_x"}, "kind": {"S": "updated"}, "actor_id": {"S": "u1"},
                "at": {"S": "2026-11-23T14:00:00Z"},
                "topics": {"L": [{"S": format!("workspace:{ws}")}]},
                "data": {"M": {"title": {"S": "Fix login"}}},
                "ttl": {"N": "1798034400"}
            },
            "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/momentum-prod-main/stream/2026-11-23T00:00:00.000"
    })
}
