//! The WebSocket API's routes as API Gateway delivers them: one Lambda event per
//! `$connect`, `$disconnect` and `$default` message, routed on `requestContext.routeKey`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use momentum_shared::realtime::commands;
use serde_json::{Value, json};

use crate::Realtime;

fn response(status: i64, body: Value) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = Some(Body::Text(body.to_string()));
    r
}

/// What a route produced: the Lambda response, and a reply to post to the connection.
pub struct Outcome {
    pub response: ApiGatewayProxyResponse,
    pub reply: Option<Value>,
    /// Close the connection after the reply (its session ended).
    pub close: bool,
}

/// Handles one WebSocket event. `$connect` refuses a missing, forged or expired token with
/// 401 (API Gateway then rejects the handshake) and records nothing.
pub async fn handle(rt: &Realtime, event: ApiGatewayWebsocketProxyRequest) -> Outcome {
    let ctx = &event.request_context;
    let route = ctx.route_key.clone().unwrap_or_default();
    let Some(connection_id) = ctx.connection_id.clone() else {
        return Outcome {
            response: response(400, json!({"message": "no connection id"})),
            reply: None,
            close: false,
        };
    };
    match route.as_str() {
        "$connect" => {
            let token = event.query_string_parameters.first("token");
            match rt
                .registry
                .connect(&rt.state.auth, &connection_id, token)
                .await
            {
                Ok(_) => Outcome {
                    response: response(200, json!({"connected": true})),
                    reply: None,
                    close: false,
                },
                Err(e) => Outcome {
                    response: response(
                        e.status() as i64,
                        json!({"code": e.code.as_str(), "message": e.message}),
                    ),
                    reply: None,
                    close: false,
                },
            }
        }
        "$disconnect" => {
            if let Err(e) = rt.registry.disconnect(&connection_id).await {
                tracing::warn!(connection = %connection_id, error = %e, "disconnect cleanup failed");
            }
            Outcome {
                response: response(200, json!({"disconnected": true})),
                reply: None,
                close: false,
            }
        }
        _ => {
            let text = match (&event.body, event.is_base64_encoded) {
                (Some(b), false) => b.clone(),
                _ => String::new(),
            };
            let reply = commands::handle(&rt.state, &rt.registry, &connection_id, &text).await;
            Outcome {
                response: response(200, json!({"ok": true})),
                reply: Some(reply.message),
                close: reply.close,
            }
        }
    }
}

/// The Lambda entry: handles the event, then posts a `$default` reply to the connection
/// through the management API (API Gateway has no other way back on a one-way route).
pub async fn run(
    rt: &Realtime,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, lambda_runtime::Error> {
    let connection_id = event.request_context.connection_id.clone();
    let outcome = handle(rt, event).await;
    if let (Some(reply), Some(conn)) = (outcome.reply, connection_id) {
        let bytes = serde_json::to_vec(&reply)?;
        if let Err(e) = rt.broadcaster.gateway().post(&conn, bytes).await {
            tracing::warn!(connection = %conn, error = %e, "reply not delivered");
        }
        if outcome.close {
            rt.broadcaster.close_connections(vec![conn]).await;
        }
    }
    Ok(outcome.response)
}
