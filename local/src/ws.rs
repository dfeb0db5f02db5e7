//! The shim's emulation of API Gateway's WebSocket API: `/ws?token=` assigns connection ids
//! and runs the same `$connect` / `$default` / `$disconnect` code as the Lambda; the
//! management API (`POST/GET/DELETE /@connections/{id}`) is served here, so the SDK client
//! of the cloud works against the shim too (`Gateway::Sdk`), while the broadcaster by default
//! posts through `HubGateway` straight onto the sockets; committed change records are fed
//! to the broadcaster in-process, in commit order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use momentum_shared::realtime::broadcaster::{ConnectionGateway, GatewayError};
use momentum_shared::realtime::commands;
use momentum_shared::services::changes::{ChangeRecord, ChangeSink, Revocation};
use realtime::Realtime;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

/// Open sockets of this process, by connection id.
#[derive(Clone, Default)]
pub struct Hub {
    sockets: Arc<Mutex<HashMap<String, Socket>>>,
}

#[derive(Clone)]
struct Socket {
    tx: mpsc::UnboundedSender<Message>,
    connected_at: String,
}

impl Hub {
    fn insert(&self, id: &str, socket: Socket) {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), socket);
    }

    fn remove(&self, id: &str) -> Option<Socket> {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    fn get(&self, id: &str) -> Option<Socket> {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone)]
struct WsState {
    rt: Realtime,
    hub: Hub,
}

#[derive(Deserialize)]
struct ConnectParams {
    token: Option<String>,
}

/// `/ws` and `/@connections/{id}`.
pub fn routes(rt: Realtime, hub: Hub) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .route(
            "/@connections/{id}",
            get(get_connection)
                .post(post_to_connection)
                .delete(delete_connection),
        )
        .with_state(WsState { rt, hub })
}

fn new_connection_id() -> String {
    // API Gateway ids are short opaque strings; these are URL-safe.
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned() + "="
}

async fn upgrade(
    State(s): State<WsState>,
    Query(p): Query<ConnectParams>,
    ws: WebSocketUpgrade,
) -> Response {
    let id = new_connection_id();
    // `$connect`: refused tokens never get a socket, and nothing is recorded.
    if let Err(e) =
        s.rt.registry
            .connect(&s.rt.state.auth, &id, p.token.as_deref())
            .await
    {
        return e.into_response();
    }
    ws.max_message_size(commands::MAX_MESSAGE_BYTES * 2)
        .on_upgrade(move |socket| run_socket(s, id, socket))
}

async fn run_socket(s: WsState, id: String, socket: WebSocket) {
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    s.hub.insert(
        &id,
        Socket {
            tx: tx.clone(),
            connected_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        },
    );
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || close {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        // `$default`: same code as the Lambda; the reply goes back on this socket.
        let reply = commands::handle(&s.rt.state, &s.rt.registry, &id, &text).await;
        if tx
            .send(Message::Text(reply.message.to_string().into()))
            .is_err()
        {
            break;
        }
        if reply.close {
            let _ = tx.send(revoked_close());
            break;
        }
    }
    // `$disconnect`. The writer drains what is queued (a last reply, a close frame) unless
    // the peer stops reading.
    s.hub.remove(&id);
    drop(tx);
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    if let Err(e) = s.rt.registry.disconnect(&id).await {
        tracing::warn!(connection = %id, error = %e, "disconnect cleanup failed");
    }
}

/// The close frame for a connection whose session ended: 1008 (policy violation).
fn revoked_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: "session revoked".into(),
    }))
}

/// API Gateway's answer for an unknown connection, shaped so the SDK maps it to
/// `GoneException`.
fn gone() -> Response {
    let mut r = (
        StatusCode::GONE,
        axum::Json(json!({"message": "connection is gone"})),
    )
        .into_response();
    r.headers_mut().insert(
        "x-amzn-ErrorType",
        HeaderValue::from_static("GoneException"),
    );
    r
}

async fn post_to_connection(
    State(s): State<WsState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match s.hub.get(&id) {
        Some(socket) => {
            let text = String::from_utf8_lossy(&body).into_owned();
            match socket.tx.send(Message::Text(text.into())) {
                Ok(()) => StatusCode::OK.into_response(),
                Err(_) => gone(),
            }
        }
        None => gone(),
    }
}

async fn get_connection(State(s): State<WsState>, Path(id): Path<String>) -> Response {
    match s.hub.get(&id) {
        Some(socket) => axum::Json(json!({
            "connectedAt": socket.connected_at,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "momentum-local"},
            "lastActiveAt": socket.connected_at,
        }))
        .into_response(),
        None => gone(),
    }
}

async fn delete_connection(State(s): State<WsState>, Path(id): Path<String>) -> Response {
    match s.hub.remove(&id) {
        Some(socket) => {
            let _ = socket.tx.send(Message::Close(None));
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(),
    }
}

/// What the shim's sink hands its broadcaster task.
enum Outgoing {
    Records(Vec<ChangeRecord>),
    Revoked(Revocation),
}

/// Feeds committed change records to the broadcaster, one batch after another: commits of a
/// workspace reach the sink in seq order, and this queue keeps that order. Revocations take
/// the same queue, so a session's sockets close after the events committed before it.
pub struct LocalSink {
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl LocalSink {
    pub fn start(rt: Realtime) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(async move {
            while let Some(next) = rx.recv().await {
                let done = match &next {
                    Outgoing::Records(records) => rt.broadcaster.deliver(records).await.map(drop),
                    Outgoing::Revoked(revocation) => {
                        rt.broadcaster.revoke(revocation).await.map(drop)
                    }
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, "local fan-out failed");
                }
            }
        });
        Self { tx }
    }
}

impl ChangeSink for LocalSink {
    fn committed(&self, records: Vec<ChangeRecord>) {
        let _ = self.tx.send(Outgoing::Records(records));
    }

    fn revoked(&self, revocation: Revocation) {
        let _ = self.tx.send(Outgoing::Revoked(revocation));
    }
}

/// The shim's connection gateway: posts straight onto the sockets of this process. It
/// answers exactly like API Gateway's `@connections` (a post to an unknown id is `Gone`),
/// without an HTTP round trip and SigV4 signing per event, so fan-out to a thousand sockets
/// costs a channel send each. `Gateway::Sdk` keeps the SDK path over HTTP available.
#[derive(Clone)]
pub struct HubGateway {
    hub: Hub,
}

impl HubGateway {
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

#[async_trait::async_trait]
impl ConnectionGateway for HubGateway {
    async fn post(&self, connection_id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        let socket = self.hub.get(connection_id).ok_or(GatewayError::Gone)?;
        let text = String::from_utf8(data).map_err(|e| GatewayError::Other(e.to_string()))?;
        socket
            .tx
            .send(Message::Text(text.into()))
            .map_err(|_| GatewayError::Gone)
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        if let Some(socket) = self.hub.remove(connection_id) {
            let _ = socket.tx.send(Message::Close(None));
        }
        Ok(())
    }

    async fn exists(&self, connection_id: &str) -> Result<bool, GatewayError> {
        Ok(self.hub.get(connection_id).is_some())
    }
}
