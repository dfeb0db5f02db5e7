//! Direct messages over the realtime connections of a workspace (`POST /ws/send`,
//! `POST /ws/broadcast`) and the presence messages (`user_joined` / `user_left`), all in the
//! seed's message shape: `{id, message_type, data, timestamp, from_user_id, to_user_id?}`,
//! plus `type: "message"` (the discriminator every server message of this protocol carries:
//! `event`, `response`, ...) and `workspace_id`. `id`, `timestamp` and `from_user_id` are
//! always stamped here, whatever the caller sent.
//!
//! Who may send what: an admin (Manage) any sendable type, to one member or to everyone; a
//! member (Contribute) only `text`, only to one member of the same workspace. Delivery goes
//! only to live connections of current members (`ConnectionRegistry::present_live`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::kernel::access::{Action, Principal};
use crate::kernel::input::text::at_most_chars;
use crate::kernel::keys;
use crate::kernel::limits::{MAX_DIRECT_MESSAGE_DATA_BYTES, MAX_ID_CHARS};
use crate::realtime::broadcaster::{Broadcaster, Delivery};
use crate::realtime::connections::ConnectionRegistry;
use crate::state::AppState;

/// The seed's message types this channel carries (`ping`/`pong`/`error` are the command
/// protocol's own replies, see `protocol.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Text,
    Notification,
    SystemMessage,
    UserJoined,
    UserLeft,
}

/// The types a caller may send; presence types are the server's alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendableType {
    #[default]
    Text,
    Notification,
    SystemMessage,
}

impl SendableType {
    /// Text is conversation between members; notifications and system messages speak for
    /// the workspace, so only those who manage it may send them.
    pub fn action(self) -> Action {
        match self {
            SendableType::Text => Action::Contribute,
            SendableType::Notification | SendableType::SystemMessage => Action::Manage,
        }
    }
}

impl From<SendableType> for MessageType {
    fn from(t: SendableType) -> Self {
        match t {
            SendableType::Text => MessageType::Text,
            SendableType::Notification => MessageType::Notification,
            SendableType::SystemMessage => MessageType::SystemMessage,
        }
    }
}

/// The `type` of a direct or presence message on the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Message,
}

/// A message as a recipient's socket receives it (the seed's shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirectMessage {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// Stamped by the server (UUID).
    pub id: String,
    pub message_type: MessageType,
    pub data: Value,
    /// The sender, stamped from the caller's credentials; for presence messages the user who
    /// joined or left.
    pub from_user_id: String,
    /// Set on `/ws/send`; absent on broadcasts and presence messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_user_id: Option<String>,
    pub workspace_id: String,
    /// RFC 3339, stamped by the server.
    pub timestamp: String,
}

impl DirectMessage {
    pub fn new(
        message_type: MessageType,
        workspace_id: &str,
        from_user_id: &str,
        to_user_id: Option<String>,
        data: Value,
        timestamp: String,
    ) -> Self {
        Self {
            kind: MessageKind::Message,
            id: uuid::Uuid::new_v4().to_string(),
            message_type,
            data,
            from_user_id: from_user_id.to_owned(),
            to_user_id,
            workspace_id: workspace_id.to_owned(),
            timestamp,
        }
    }

    /// `user_joined` / `user_left` about `user_id` (`data: {"user_id"}`).
    pub fn presence(
        message_type: MessageType,
        workspace_id: &str,
        user_id: &str,
        timestamp: String,
    ) -> Self {
        Self::new(
            message_type,
            workspace_id,
            user_id,
            None,
            json!({ "user_id": user_id }),
            timestamp,
        )
    }
}

/// `POST /ws/send`. The seed's shape; the older `{user_id, message}` is still accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
    /// Default `text`. Members may send only `text`.
    #[serde(default)]
    pub message_type: SendableType,
    /// The payload (any JSON, at most 32 KiB).
    pub data: Option<Value>,
    /// The recipient: a member of the workspace.
    pub to_user_id: Option<String>,
    /// Ignored: the server stamps the sender.
    pub from_user_id: Option<Value>,
    /// Ignored: the server stamps the id.
    pub id: Option<Value>,
    /// Ignored: the server stamps the time.
    pub timestamp: Option<Value>,
    /// Older name of `to_user_id`.
    #[schema(deprecated)]
    pub user_id: Option<String>,
    /// Older name of `data`.
    #[schema(deprecated)]
    pub message: Option<Value>,
}

/// `POST /ws/broadcast` (admins). The seed's shape; the older `{message}` is still accepted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// Defaults to the caller's current workspace.
    pub workspace_id: Option<String>,
    /// Default `text`.
    #[serde(default)]
    pub message_type: SendableType,
    /// The payload (any JSON, at most 32 KiB).
    pub data: Option<Value>,
    /// Ignored: the server stamps the sender.
    pub from_user_id: Option<Value>,
    /// Ignored: the server stamps the id.
    pub id: Option<Value>,
    /// Ignored: the server stamps the time.
    pub timestamp: Option<Value>,
    /// Older name of `data`.
    #[schema(deprecated)]
    pub message: Option<Value>,
}

/// What a send or broadcast did, and the message as it was delivered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Sent {
    pub delivered: usize,
    pub gone: usize,
    pub failed: usize,
    pub message: DirectMessage,
}

impl Sent {
    fn new(d: Delivery, message: DirectMessage) -> Self {
        Self {
            delivered: d.delivered,
            gone: d.gone,
            failed: d.failed,
            message,
        }
    }
}

/// The payload from `data` or its older name `message`: present, not null, bounded.
fn payload(data: Option<Value>, legacy: Option<Value>) -> AppResult<Value> {
    let (field, value) = match (data, legacy) {
        (Some(_), Some(_)) => {
            return Err(AppError::unprocessable(
                "message",
                "give data or its older name message, not both",
            ));
        }
        (Some(v), None) => ("data", v),
        (None, Some(v)) => ("message", v),
        // Either of two fields: no schema of one field states it (422, not 400).
        (None, None) => return Err(AppError::unprocessable("data", "is required")),
    };
    let size = serde_json::to_vec(&value).map(|b| b.len()).unwrap_or(0);
    if size > MAX_DIRECT_MESSAGE_DATA_BYTES {
        return Err(AppError::validation(
            field,
            format!("at most {MAX_DIRECT_MESSAGE_DATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(value)
}

/// The recipient from `to_user_id` or its older name `user_id`, with the field it came in.
fn recipient(to: Option<String>, legacy: Option<String>) -> AppResult<(&'static str, String)> {
    let (field, id) = match (to, legacy) {
        (Some(_), Some(_)) => {
            return Err(AppError::unprocessable(
                "user_id",
                "give to_user_id or its older name user_id, not both",
            ));
        }
        (Some(id), None) => ("to_user_id", id),
        (None, Some(id)) => ("user_id", id),
        (None, None) => return Err(AppError::unprocessable("to_user_id", "is required")),
    };
    at_most_chars(field, &id, MAX_ID_CHARS)?;
    Ok((field, id))
}

/// Sends one message to every live connection of one member.
pub async fn send(
    state: &AppState,
    registry: &ConnectionRegistry,
    broadcaster: &Broadcaster,
    who: &Principal,
    req: SendRequest,
) -> AppResult<Sent> {
    let data = payload(req.data, req.message)?;
    let (field, to) = recipient(req.to_user_id, req.user_id)?;
    let access = &state.ctx.access;
    let ws = access
        .target_workspace(who, req.workspace_id.as_deref())
        .await?;
    // The recipient's membership rides in the authorization batch.
    let (scope, found) = access
        .authorize(
            who,
            &ws,
            req.message_type.action(),
            "workspace",
            &[keys::member(&ws, &to)],
        )
        .await?;
    state.limits.check_direct_message(&who.user_id).await?;
    if !matches!(found.first(), Some(Some(_))) {
        return Err(AppError::unknown_reference(
            field,
            "is not a member of this workspace",
        ));
    }
    let conns = registry
        .present_live(&scope.workspace_id)
        .await?
        .into_iter()
        .filter(|c| c.user_id == to)
        .map(|c| c.connection_id)
        .collect();
    let message = DirectMessage::new(
        req.message_type.into(),
        &scope.workspace_id,
        &who.user_id,
        Some(to),
        data,
        state.ctx.now(),
    );
    let delivery = broadcaster.post_all(conns, &json!(message)).await;
    Ok(Sent::new(delivery, message))
}

/// Sends one message to every live connection of the workspace (admins).
pub async fn broadcast(
    state: &AppState,
    registry: &ConnectionRegistry,
    broadcaster: &Broadcaster,
    who: &Principal,
    req: BroadcastRequest,
) -> AppResult<Sent> {
    let data = payload(req.data, req.message)?;
    let scope = state
        .ctx
        .access
        .resolve(who, req.workspace_id.as_deref(), Action::Manage)
        .await?;
    state.limits.check_direct_message(&who.user_id).await?;
    let conns = registry
        .present_live(&scope.workspace_id)
        .await?
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    let message = DirectMessage::new(
        req.message_type.into(),
        &scope.workspace_id,
        &who.user_id,
        None,
        data,
        state.ctx.now(),
    );
    let delivery = broadcaster.post_all(conns, &json!(message)).await;
    Ok(Sent::new(delivery, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_shape_on_the_wire() {
        let m = DirectMessage::new(
            MessageType::SystemMessage,
            "ws1",
            "u1",
            Some("u2".into()),
            json!({"content": "hi"}),
            "2026-01-01T00:00:00Z".into(),
        );
        let v = json!(m);
        assert_eq!(v["type"], "message");
        assert_eq!(v["message_type"], "system_message");
        assert_eq!(v["from_user_id"], "u1");
        assert_eq!(v["to_user_id"], "u2");
        assert_eq!(v["data"]["content"], "hi");
        assert!(uuid::Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
        let joined = json!(DirectMessage::presence(
            MessageType::UserJoined,
            "ws1",
            "u3",
            "t".into()
        ));
        assert_eq!(joined["message_type"], "user_joined");
        assert_eq!(joined["data"]["user_id"], "u3");
        assert!(joined.get("to_user_id").is_none());
    }

    #[test]
    fn payload_and_recipient_name_their_field() {
        assert_eq!(
            payload(None, None).unwrap_err().field.as_deref(),
            Some("data")
        );
        let big = Value::String("x".repeat(MAX_DIRECT_MESSAGE_DATA_BYTES));
        assert_eq!(
            payload(None, Some(big)).unwrap_err().field.as_deref(),
            Some("message")
        );
        assert_eq!(
            recipient(None, None).unwrap_err().field.as_deref(),
            Some("to_user_id")
        );
        assert_eq!(
            recipient(None, Some("u".into())).unwrap(),
            ("user_id", "u".into())
        );
        assert_eq!(SendableType::Text.action(), Action::Contribute);
        assert_eq!(SendableType::Notification.action(), Action::Manage);
    }
}
