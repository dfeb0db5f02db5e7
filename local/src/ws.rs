//! The shim's emulation of API Gateway's WebSocket API: `/ws` assigns connection ids and runs
//! the same `$connect` / `$default` / `$disconnect` code as the Lambda (the same handshake
//! rules too: `Origin` against the CORS allowlist, the token from the `bearer.<token>`
//! subprotocol or `?token=`, see `realtime::handshake`); the management API
//! (`POST/GET/DELETE /@connections/{id}`) is served here for loopback callers only, so the
//! SDK client of the cloud works against the shim too (`Gateway::Sdk`), while the broadcaster
//! by default posts through `HubGateway` straight onto the sockets; committed change records
//! are fed to the broadcaster in-process, in commit order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use momentum_shared::areas::notifications::dispatcher::LocalNotifier;
use momentum_shared::areas::webhooks::dispatcher::LocalDispatcher;
use momentum_shared::error::AppError;
use momentum_shared::http::ClientIp;
use momentum_shared::kernel::changes::{ChangeRecord, ChangeSink, Revocation};
use momentum_shared::realtime::broadcaster::{ConnectionGateway, GatewayError};
use momentum_shared::realtime::commands;
use realtime::{Realtime, handshake};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::order::SeqOrder;

/// Initial read buffer of a socket (grows for larger messages).
const SOCKET_READ_BUFFER: usize = 4 * 1024;

/// Open sockets of this process, by connection id.
#[derive(Clone)]
pub struct Hub {
    sockets: Arc<Mutex<HashMap<String, Socket>>>,
    /// Each socket task holds a receiver until its `$disconnect` cleanup is done.
    tasks: watch::Sender<()>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            sockets: Arc::default(),
            tasks: watch::channel(()).0,
        }
    }
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

    /// Sends every open socket a close frame (1001 "going away": the server is shutting
    /// down); each then runs its `$disconnect` cleanup.
    pub fn close_all(&self) {
        let sockets: Vec<Socket> = self
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for socket in sockets {
            let _ = socket.tx.send(Message::Close(Some(CloseFrame {
                code: close_code::AWAY,
                reason: "server shutting down".into(),
            })));
        }
    }

    /// Resolves when every socket task has ended (its `$disconnect` cleanup done).
    pub async fn closed(&self) {
        self.tasks.closed().await;
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

/// `/ws` and `/@connections/{id}` (the latter for loopback callers only).
pub fn routes(rt: Realtime, hub: Hub) -> Router {
    let management = Router::new()
        .route(
            "/@connections/{id}",
            get(get_connection)
                .post(post_to_connection)
                .delete(delete_connection),
        )
        .route_layer(middleware::from_fn(loopback_only));
    Router::new()
        .route("/ws", get(upgrade))
        .merge(management)
        .with_state(WsState { rt, hub })
}

/// The management API forges events and closes sockets, so only this machine may call it:
/// the peer must be a loopback address (`--host 0.0.0.0` exposes the shim, not this), and the
/// request must not come from a browser page (which sends `Origin`; the SDK never does), so a
/// web page the developer visits cannot reach it through their browser either.
async fn loopback_only(req: Request, next: Next) -> Response {
    let loopback =
        momentum_shared::http::client_ip(req.extensions()).is_some_and(|ip| ip.is_loopback());
    if !loopback || req.headers().contains_key(header::ORIGIN) {
        let mut refused = AppError::forbidden(
            "the @connections management API answers only local callers (loopback, not a browser)",
        )
        .into_response();
        // What API Gateway says, so the SDK maps it to `ForbiddenException`.
        refused.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static("ForbiddenException"),
        );
        return refused;
    }
    next.run(req).await
}

fn new_connection_id() -> String {
    // API Gateway ids are short opaque strings; these are URL-safe.
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned() + "="
}

async fn upgrade(
    State(s): State<WsState>,
    Query(p): Query<ConnectParams>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return AppError::validation("Upgrade", rejection.body_text()).into_response();
        }
    };
    let id = new_connection_id();
    // `$connect`: the same rules as the Lambda; a refused handshake never gets a socket, and
    // nothing is recorded. Every handshake counts against its address's limit first.
    if let Err(e) = s.rt.state.limits.check_ws_connect(ip).await {
        return e.into_response();
    }
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("invalid"));
    if let Err(e) = handshake::check_origin(&s.rt.state.config, origin) {
        return e.into_response();
    }
    let protocols = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let offer = match handshake::offer(protocols, p.token.as_deref()) {
        Ok(offer) => offer,
        Err(e) => return e.into_response(),
    };
    // In the hub before the connection is in the registry: anything posted to it from then
    // on (another connection's `user_joined`, an event) waits in its queue for the socket,
    // where it would otherwise find no socket, count the connection gone and prune it.
    let (tx, rx) = mpsc::unbounded_channel::<Message>();
    s.hub.insert(
        &id,
        Socket {
            tx: tx.clone(),
            connected_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        },
    );
    let conn = match s
        .rt
        .registry
        .connect(&s.rt.state.auth, &id, offer.token.as_deref())
        .await
    {
        Ok(conn) => conn,
        Err(e) => {
            s.hub.remove(&id);
            return e.into_response();
        }
    };
    if let Err(e) = s.rt.presence.joined(&conn).await {
        tracing::warn!(connection = %id, error = %e, "user_joined not announced");
    }
    // Answers `momentum.v1` when offered (never the `bearer.` entry).
    let ws = ws.protocols(offer.protocol);
    let task = s.hub.tasks.subscribe();
    // Small buffers: tungstenite's defaults (128 KiB to read, 128 KiB to gather writes) made
    // each idle subscriber cost ~140 KiB of RSS (bench ws-fanout). Commands are small (the
    // read buffer grows for a larger one), and the socket's writer flushes every message.
    let (hub, failed) = (s.hub.clone(), id.clone());
    ws.max_message_size(commands::MAX_MESSAGE_BYTES * 2)
        .read_buffer_size(SOCKET_READ_BUFFER)
        .write_buffer_size(0)
        .on_failed_upgrade(move |_| {
            hub.remove(&failed);
        })
        .on_upgrade(move |socket| async move {
            run_socket(s, id, socket, tx, rx).await;
            drop(task);
        })
}

async fn run_socket(
    s: WsState,
    id: String,
    socket: WebSocket,
    tx: mpsc::UnboundedSender<Message>,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
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
            // After the client's close frame the WebSocket layer has queued the answering
            // close frame (echoing the client's code): the next read sends it and ends the
            // stream, so the client sees a clean close instead of 1006. Pings are answered
            // the same way.
            Message::Close(_) | Message::Ping(_) | Message::Pong(_) => continue,
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
    match s.rt.registry.disconnect(&id).await {
        Ok(Some(conn)) => {
            if let Some(ws) = conn.workspace_id {
                sweep_presence(&s.rt, &ws).await;
                // The leave just recorded comes due after the grace window; unlike a Lambda
                // the shim can wait for it (a connect, disconnect or cleanup in the
                // workspace announces it sooner if one comes first).
                let presence = s.rt.clone();
                let wait = presence.presence.grace_secs() + 1;
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                    sweep_presence(&presence, &ws).await;
                });
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(connection = %id, error = %e, "disconnect cleanup failed"),
    }
}

async fn sweep_presence(rt: &Realtime, workspace_id: &str) {
    if let Err(e) = rt.presence.sweep(workspace_id).await {
        tracing::warn!(workspace = %workspace_id, error = %e, "presence sweep failed");
    }
}

/// The close frame for a connection whose session ended: 1008 (policy violation).
fn revoked_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::POLICY,
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

/// Feeds committed change records to the broadcaster, one batch after another, each
/// workspace's in seq order (`SeqOrder` holds a record back until every lower number has
/// landed or been skipped). Revocations take the same queue, so a session's sockets close
/// after the events handed on before it.
pub struct LocalSink {
    tx: mpsc::UnboundedSender<Outgoing>,
    order: SeqOrder,
    /// The webhook dispatcher, fed the same records in the same order.
    webhooks: Option<LocalDispatcher>,
    /// The notification dispatcher, fed the same records in the same order.
    notifications: Option<LocalNotifier>,
}

impl LocalSink {
    /// Feeds committed records and revocations to `rt`'s broadcaster, in order. While `hub`
    /// has no socket open they are dropped unread: the shim's gateways (direct, or this
    /// server's own `@connections`) reach only `hub`'s sockets, so every post would answer
    /// `Gone`; skipping saves the subscriber queries (one per topic per record) that would
    /// otherwise share the CPU with the requests. A socket that opens meanwhile catches up
    /// with `sync`, as after any connect.
    pub fn start(rt: Realtime, hub: Hub) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(async move {
            while let Some(next) = rx.recv().await {
                if hub.is_empty() {
                    continue;
                }
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
        Self {
            tx,
            order: SeqOrder::default(),
            webhooks: None,
            notifications: None,
        }
    }

    /// Also hands every committed record to the webhook dispatcher.
    pub fn with_webhooks(mut self, dispatcher: LocalDispatcher) -> Self {
        self.webhooks = Some(dispatcher);
        self
    }

    /// Also hands every committed record to the notification dispatcher.
    pub fn with_notifications(mut self, notifier: LocalNotifier) -> Self {
        self.notifications = Some(notifier);
        self
    }

    /// Hands records on, in the order `SeqOrder` releases them.
    fn emit(&self, records: Vec<ChangeRecord>) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.submit(records.clone());
        }
        if let Some(notifications) = &self.notifications {
            notifications.submit(records.clone());
        }
        let _ = self.tx.send(Outgoing::Records(records));
    }
}

impl ChangeSink for LocalSink {
    fn drawing(&self, workspace_id: &str) {
        self.order.drawing(workspace_id);
    }

    fn drawn(&self, workspace_id: &str, seqs: &[i64]) {
        self.order.drawn(workspace_id, seqs, |r| self.emit(r));
    }

    fn committed(&self, records: Vec<ChangeRecord>) {
        self.order.committed(records, |r| self.emit(r));
    }

    fn skipped(&self, workspace_id: &str, seqs: &[i64]) {
        self.order.skipped(workspace_id, seqs, |r| self.emit(r));
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
