//! The WebSocket API's routes as API Gateway delivers them: one Lambda event per
//! `$connect`, `$disconnect` and `$default` message, routed on `requestContext.routeKey`.

use std::net::IpAddr;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use axum::http::{HeaderMap, HeaderValue};
use momentum_shared::error::{AppResult, ErrorBody};
use momentum_shared::realtime::commands;
use serde_json::{Value, json};

use crate::{Realtime, handshake};

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

/// The values of a handshake header: from `multiValueHeaders` when it has them (every
/// line), else from `headers`.
fn header_values<'a>(event: &'a ApiGatewayWebsocketProxyRequest, name: &str) -> Vec<&'a str> {
    let values = |map: &'a HeaderMap| -> Vec<&'a str> {
        map.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    let multi = values(&event.multi_value_headers);
    if multi.is_empty() {
        values(&event.headers)
    } else {
        multi
    }
}

/// `$connect`: the per-IP handshake limit (API Gateway's `identity.sourceIp`, never a
/// header), the `Origin` against the CORS allowlist, the token from the `bearer.<token>`
/// subprotocol or else `?token=`, then the connection row. Returns the subprotocol to answer
/// with.
async fn connect(
    rt: &Realtime,
    event: &ApiGatewayWebsocketProxyRequest,
    connection_id: &str,
) -> AppResult<Option<&'static str>> {
    let source_ip = event
        .request_context
        .identity
        .source_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    rt.state.limits.check_ws_connect(source_ip).await?;
    let origin = header_values(event, "origin").first().copied();
    handshake::check_origin(&rt.state.config, origin)?;
    let offer = handshake::offer(
        header_values(event, handshake::PROTOCOL_HEADER),
        event.query_string_parameters.first("token"),
    )?;
    let conn = rt
        .registry
        .connect(&rt.state.auth, connection_id, offer.token.as_deref())
        .await?;
    // The connection stands whether or not the others could be told.
    if let Err(e) = rt.presence.joined(&conn).await {
        tracing::warn!(connection = %connection_id, error = %e, "user_joined not announced");
    }
    Ok(offer.protocol)
}

/// Handles one WebSocket event. `$connect` refuses a missing, forged or expired token with
/// 401, a foreign `Origin` with 403, a malformed subprotocol offer with 400 and an address
/// over its handshake limit with 429 (API Gateway then rejects the handshake) and records
/// nothing; see `handshake` for the token convention.
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
        "$connect" => match connect(rt, &event, &connection_id).await {
            Ok(protocol) => {
                let mut response = response(200, json!({"connected": true}));
                if let Some(protocol) = protocol {
                    // API Gateway passes this header on to the client's handshake answer;
                    // without it a browser that offered subprotocols drops the connection.
                    response.headers.insert(
                        handshake::PROTOCOL_HEADER,
                        HeaderValue::from_static(protocol),
                    );
                }
                Outcome {
                    response,
                    reply: None,
                    close: false,
                }
            }
            Err(e) => {
                // The handshake's answer to API Gateway: the error body without `retry_after`.
                let body = ErrorBody {
                    retry_after: None,
                    ..ErrorBody::from(&e)
                };
                Outcome {
                    response: response(e.status() as i64, json!(body)),
                    reply: None,
                    close: false,
                }
            }
        },
        "$disconnect" => {
            match rt.registry.disconnect(&connection_id).await {
                // The leave just recorded waits out the grace window; leaves of others that
                // have come due are announced now.
                Ok(Some(conn)) => {
                    if let Some(ws) = conn.workspace_id.as_deref() {
                        if let Err(e) = rt.presence.sweep(ws).await {
                            tracing::warn!(workspace = %ws, error = %e, "presence sweep failed");
                        }
                        // This leave comes due after the grace window: ask for a sweep then.
                        if let Some(timer) = &rt.leave_timer
                            && let Err(e) = timer.schedule(ws, rt.presence.grace_secs() + 1).await
                        {
                            tracing::warn!(workspace = %ws, error = %e, "leave timer not set");
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(connection = %connection_id, error = %e, "disconnect cleanup failed")
                }
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
