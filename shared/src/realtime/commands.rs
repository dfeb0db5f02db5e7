//! The WebSocket command protocol (`$default`): `{"type", "data", "request_id"}` in,
//! `{"type": "response", "request_id", "success", "data" | "error", "meta"}` out. Commands
//! call the same services as REST, so validation, permissions and the change log are the
//! same. A bad message gets an error reply; the connection stays up.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::input::json::from_json_value;
use crate::realtime::connections::{Connection, ConnectionRegistry};
use crate::services::pagination::PageParams;
use crate::state::AppState;

/// API Gateway's WebSocket message limit.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    request_id: Option<Value>,
    /// The seed's `subscribe` puts topics at the top level.
    #[serde(default)]
    topics: Option<Vec<String>>,
    /// The seed's `query_*` commands put filters at the top level.
    #[serde(default)]
    filters: Option<Value>,
}

/// A failed command: the error, per-item details of a refused batch, or "not a command of
/// this table" (dispatch tries the next table).
#[derive(Debug)]
pub struct CommandError {
    pub error: AppError,
    pub items: Vec<ErrorBody>,
    unknown: bool,
}

impl CommandError {
    pub fn unknown() -> Self {
        Self {
            error: AppError::validation("type", "unknown command type"),
            items: Vec::new(),
            unknown: true,
        }
    }

    pub fn is_unknown(&self) -> bool {
        self.unknown
    }
}

impl From<AppError> for CommandError {
    fn from(error: AppError) -> Self {
        Self {
            error,
            items: Vec::new(),
            unknown: false,
        }
    }
}

impl From<crate::services::labels::BatchRejected> for CommandError {
    fn from(r: crate::services::labels::BatchRejected) -> Self {
        Self {
            items: r.items,
            error: r.error,
            unknown: false,
        }
    }
}

fn reply(
    kind: &str,
    request_id: &Value,
    result: Result<Value, CommandError>,
    connection_id: &str,
) -> Value {
    let meta = json!({
        "timestamp": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "connection_id": connection_id,
    });
    match result {
        Ok(data) => json!({
            "type": kind, "request_id": request_id, "success": true, "data": data, "meta": meta,
        }),
        Err(CommandError { error, items, .. }) => {
            let error = ErrorBody {
                items,
                ..ErrorBody::from(error)
            };
            json!({
                "type": "response", "request_id": request_id, "success": false,
                "error": error, "meta": meta,
            })
        }
    }
}

/// The `request_id` of a message that may not be a command (`null` when unreadable).
fn request_id_of(text: &str) -> Value {
    if text.len() > MAX_MESSAGE_BYTES {
        return Value::Null;
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("request_id").cloned())
        .unwrap_or(Value::Null)
}

/// What to send back for one message.
#[derive(Debug)]
pub struct Reply {
    pub message: Value,
    /// The connection's session ended (or it is unknown): close it after the reply.
    pub close: bool,
}

impl Reply {
    fn open(message: Value) -> Self {
        Self {
            message,
            close: false,
        }
    }
}

/// The connection, if its session is still live; 401 otherwise (logged out, password
/// changed, refresh token reused, expired).
async fn live_connection(
    state: &AppState,
    registry: &ConnectionRegistry,
    connection_id: &str,
) -> AppResult<Connection> {
    let conn = registry.require(connection_id).await?;
    state.ctx.access.session(&conn.principal(), &[]).await?;
    Ok(conn)
}

/// Handles one text message of a connection and returns the reply to send back.
pub async fn handle(
    state: &AppState,
    registry: &ConnectionRegistry,
    connection_id: &str,
    text: &str,
) -> Reply {
    // Every message counts, readable or not, before any work or storage call.
    if let Err(e) = state.limits.check_ws_command(connection_id) {
        let rid = request_id_of(text);
        return Reply::open(reply("response", &rid, Err(e.into()), connection_id));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        let e = AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
        );
        return Reply::open(reply(
            "response",
            &Value::Null,
            Err(e.into()),
            connection_id,
        ));
    }
    let parsed = match crate::input::json::strict_json(text.as_bytes()) {
        Ok(value) => serde_json::from_value::<Incoming>(value),
        Err(crate::input::json::StrictJsonError::Invalid(e)) => Err(e),
        Err(duplicate) => {
            let rid = request_id_of(text);
            return Reply::open(reply(
                "response",
                &rid,
                Err(duplicate.into_error("data.").into()),
                connection_id,
            ));
        }
    };
    let incoming: Incoming = match parsed {
        Ok(m) => m,
        Err(e) => {
            let err = AppError::validation("message", format!("not a command: {e}"));
            // Echo a request_id when the JSON was readable but not a command.
            let rid = request_id_of(text);
            return Reply::open(reply("response", &rid, Err(err.into()), connection_id));
        }
    };
    let rid = incoming.request_id.clone().unwrap_or(Value::Null);
    let kind = if incoming.kind == "ping" {
        "pong"
    } else {
        "response"
    };
    let (result, close) = match live_connection(state, registry, connection_id).await {
        Ok(conn) => (dispatch(state, registry, &conn, incoming).await, false),
        Err(e) => (Err(e.into()), true),
    };
    Reply {
        message: reply(kind, &rid, result, connection_id),
        close,
    }
}

/// `data` with top-level `filters` merged in (`query_*` as the seed writes them).
fn data_of(incoming: &mut Incoming) -> Value {
    let mut data = std::mem::take(&mut incoming.data);
    if data.is_null() {
        data = Value::Object(Map::new());
    }
    if let (Some(Value::Object(filters)), Value::Object(d)) = (incoming.filters.take(), &mut data) {
        for (k, v) in filters {
            d.entry(k).or_insert(v);
        }
    }
    data
}

fn parse<T: DeserializeOwned>(data: Value) -> AppResult<T> {
    from_json_value(data)
}

/// Takes a required string field out of `data` (e.g. the id of an update command).
pub fn take_str(data: &mut Value, field: &str) -> AppResult<String> {
    match data.as_object_mut().and_then(|d| d.remove(field)) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(AppError::validation(field, "must be a non-empty string")),
        None => Err(AppError::validation(field, "is required")),
    }
}

fn opt_str(data: &mut Value, field: &str) -> AppResult<Option<String>> {
    match data.as_object_mut().and_then(|d| d.remove(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AppError::validation(field, "must be a string")),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> AppResult<Value> {
    serde_json::to_value(v).map_err(|_| AppError::internal("reply does not serialise"))
}

fn topics_of(incoming: &mut Incoming, data: &mut Value) -> AppResult<Vec<String>> {
    if let Some(t) = incoming.topics.take() {
        return Ok(t);
    }
    match data.as_object_mut().and_then(|d| d.remove("topics")) {
        Some(v) => from_json_value::<Vec<String>>(v)
            .map_err(|_| AppError::validation("topics", "must be a list of topic names")),
        None => Err(AppError::validation("topics", "is required")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncArgs {
    workspace_id: Option<String>,
    since: i64,
    #[serde(default)]
    limit: Option<u32>,
}

async fn dispatch(
    state: &AppState,
    registry: &ConnectionRegistry,
    conn: &Connection,
    incoming: Incoming,
) -> Result<Value, CommandError> {
    let kind = incoming.kind.clone();
    let mut data_and_rest = incoming;
    let data = data_of(&mut data_and_rest);
    match core_command(state, registry, conn, &kind, data_and_rest, data.clone()).await {
        Err(e) if e.is_unknown() => {
            match crate::realtime::resource_commands::dispatch(
                state,
                &conn.principal(),
                conn,
                &kind,
                data,
            )
            .await
            {
                Some(result) => result,
                None => Err(
                    AppError::validation("type", format!("unknown command type {kind:?}")).into(),
                ),
            }
        }
        other => other,
    }
}

/// Connection, sync, workspace and profile commands.
async fn core_command(
    state: &AppState,
    registry: &ConnectionRegistry,
    conn: &Connection,
    kind: &str,
    mut incoming: Incoming,
    mut data: Value,
) -> Result<Value, CommandError> {
    let who = conn.principal();
    let result: AppResult<Value> = match kind {
        "ping" => Ok(json!({"pong": true})),
        "subscribe" => {
            let topics = topics_of(&mut incoming, &mut data)?;
            to_value(json!({"subscribed": registry.subscribe(conn, &topics).await?}))
        }
        "unsubscribe" => {
            let topics = topics_of(&mut incoming, &mut data)?;
            to_value(json!({"unsubscribed": registry.unsubscribe(conn, &topics).await?}))
        }
        "get_connection_info" => {
            let subs: Vec<String> = registry
                .subscriptions(&conn.connection_id)
                .await?
                .into_iter()
                .map(|s| s.topic)
                .collect();
            to_value(json!({
                "connection_id": conn.connection_id, "user_id": conn.user_id,
                "workspace_id": conn.workspace_id, "connected_at": conn.connected_at,
                "subscriptions": subs,
            }))
        }
        "sync" => {
            let args: SyncArgs = parse(data)?;
            let ws = args
                .workspace_id
                .or_else(|| conn.workspace_id.clone())
                .ok_or_else(|| AppError::validation("workspace_id", "is required"))?;
            if args.since < 0 {
                return Err(AppError::validation("since", "must be >= 0").into());
            }
            let limit = crate::services::pagination::changes_limit(
                args.limit,
                crate::services::pagination::MAX_CHANGES_LIMIT,
            )?;
            to_value(
                state
                    .workspaces
                    .changes(&who, &ws, args.since, limit)
                    .await?,
            )
        }
        "update_profile" => to_value(state.auth.update_profile(&who, parse(data)?).await?),
        "create_workspace" => to_value(state.workspaces.create(&who, parse(data)?).await?),
        "update_workspace" => {
            let id = take_str(&mut data, "id")?;
            to_value(
                state
                    .workspaces
                    .update(&who, &id, parse(data)?, None)
                    .await?,
            )
        }
        "delete_workspace" => {
            let id = take_str(&mut data, "id")?;
            state.workspaces.delete(&who, &id).await?;
            Ok(json!({"deleted": true, "id": id}))
        }
        "get_current_workspace" => to_value(state.workspaces.current(&who).await?),
        "query_workspace_members" => {
            let ws = opt_str(&mut data, "workspace_id")?
                .or_else(|| conn.workspace_id.clone())
                .ok_or_else(|| AppError::validation("workspace_id", "is required"))?;
            let page: PageParams = parse(data)?;
            to_value(state.workspaces.members(&who, &ws, &page).await?)
        }
        _ => return Err(CommandError::unknown()),
    };
    result.map_err(CommandError::from)
}
