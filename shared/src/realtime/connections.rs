//! Live WebSocket connections and their subscriptions, in the connections table.
//!
//! `CONN#{id}` / `META`: the connection (user, session, current workspace, TTL beyond API
//! Gateway's 2 h limit); indexed by `gsi1` = `PRESENCE#{workspace}` / `{user}#{connection}`
//! for presence. `CONN#{id}` / `SUB#{topic}`: one subscription; indexed by `gsi1` =
//! `TOPIC#{topic}` / `{connection}` so fan-out finds a topic's subscribers with one Query.
//!
//! Presence does not trust `$disconnect` (API Gateway does not promise to deliver it, and a
//! Lambda that fails while handling it leaves the rows behind): every item of a connection
//! carries `last_seen`, refreshed by the client's messages (the `ping` command is the
//! keep-alive, at most one write a minute), and presence and fan-out treat a connection
//! silent for longer than API Gateway's idle timeout as gone, and delete its items.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::areas::auth::AuthService;
use crate::error::{AppError, AppResult};
use crate::kernel::access::EntityType;
use crate::kernel::access::Member;
use crate::kernel::access::Principal;
use crate::kernel::access::{Access, check_session};
use crate::kernel::access::{Action, Role};
use crate::kernel::context::ServiceContext;
use crate::kernel::keys;
use crate::kernel::paging::query_all;
use crate::kernel::record::{from_item, record_item};
pub use crate::kernel::topic::Topic;
use crate::storage::{Condition, Index, Item, Key, Query, SortKey, Store, Table, Update, WriteOp};

/// Connections outlive API Gateway's 2 h maximum by an hour before TTL may remove them.
pub const CONNECTION_TTL_SECS: u64 = 3 * 3600;
pub use crate::kernel::limits::MAX_SUBSCRIPTIONS;

/// API Gateway closes a WebSocket connection that has been idle for 10 minutes. A connection
/// whose last message is older than this is gone, whatever its rows say.
pub const IDLE_TIMEOUT_SECS: u64 = 10 * 60;

/// `last_seen` is written at most this often per connection: a refresh within a minute of
/// the stored one is skipped (a minute of slack against a 10-minute timeout), so a client
/// pinging every few seconds costs one write a minute, not one per ping.
pub const LAST_SEEN_WRITE_INTERVAL_SECS: u64 = 60;

/// Whether a connection last heard from at `last_seen` has outlived API Gateway's idle
/// timeout at `now` (both epoch seconds). The one rule presence and fan-out apply.
pub fn is_silent(last_seen: u64, now: u64) -> bool {
    now.saturating_sub(last_seen) > IDLE_TIMEOUT_SECS
}

/// When a connection was last heard from: its `last_seen`, or for rows written before the
/// field existed, its connect time (its TTL less `CONNECTION_TTL_SECS`).
fn last_seen_or_connect(last_seen: Option<u64>, ttl: u64) -> u64 {
    last_seen.unwrap_or_else(|| ttl.saturating_sub(CONNECTION_TTL_SECS))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Connection {
    pub connection_id: String,
    pub user_id: String,
    pub session_id: String,
    /// The user's current workspace when they connected (scopes `issues`/`projects`).
    pub workspace_id: Option<String>,
    pub connected_at: String,
    pub ttl: u64,
    /// Epoch seconds of the connection's last message (at most a minute stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// The app said it shows this connection's events (`presence` command): mobile push
    /// skips the user meanwhile. False until it says so: a phone in the background must
    /// not suppress pushes.
    #[serde(default)]
    pub foreground: bool,
}

impl Connection {
    pub fn principal(&self) -> Principal {
        Principal::session(self.user_id.clone(), self.session_id.clone())
    }

    /// Epoch seconds of the connection's last message.
    pub fn last_seen(&self) -> u64 {
        last_seen_or_connect(self.last_seen, self.ttl)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub connection_id: String,
    pub user_id: String,
    /// The session the connection authenticated with: fan-out skips it once revoked.
    /// (Subscriptions written before this field existed count as revoked.)
    #[serde(default)]
    pub session_id: String,
    pub workspace_id: String,
    pub topic: String,
    pub ttl: u64,
    /// A copy of the connection's `last_seen`, written with it, so that fan-out knows a
    /// silent connection from the topic Query alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

impl Subscription {
    /// Epoch seconds of the connection's last message.
    pub fn last_seen(&self) -> u64 {
        last_seen_or_connect(self.last_seen, self.ttl)
    }
}

pub fn connection_key(connection_id: &str) -> Key {
    Key::new(format!("CONN#{connection_id}"), "META")
}

fn subscription_key(connection_id: &str, topic: &Topic) -> Key {
    Key::new(format!("CONN#{connection_id}"), format!("SUB#{topic}"))
}

/// One item per connection under its user, so ending a session or a membership finds the
/// connections to close with one Query.
fn owner_key(user_id: &str, session_id: &str, connection_id: &str) -> Key {
    Key::new(
        owner_partition(user_id),
        format!("{session_id}#{connection_id}"),
    )
}

fn owner_partition(user_id: &str) -> String {
    format!("USERCONN#{user_id}")
}

pub fn topic_partition(topic: &Topic) -> String {
    format!("TOPIC#{topic}")
}

pub fn presence_partition(workspace_id: &str) -> String {
    format!("PRESENCE#{workspace_id}")
}

/// A user's pending leave in a workspace: `PRESENCE#{workspace}` / `LEAVE#{user}` (the
/// partition is the one presence's `gsi1` uses, but as a table key: the index never sees it).
fn leave_key(workspace_id: &str, user_id: &str) -> Key {
    Key::new(presence_partition(workspace_id), format!("LEAVE#{user_id}"))
}

/// Written when a connection of `user_id` in `workspace_id` closes, cleared when the user
/// connects again or when `user_left` is announced (`realtime::presence`). It lives in the
/// store, not in a process, because `$connect` and `$disconnect` run in different Lambdas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingLeave {
    pub workspace_id: String,
    pub user_id: String,
    /// Epoch seconds of the close; `user_left` is due at `left_at` + the grace window.
    pub left_at: u64,
    pub ttl: u64,
}

/// Topics a change record reaches besides the ones it names: the per-workspace shorthands.
pub fn derived_topics(workspace_id: &str, entity_type: EntityType) -> Option<Topic> {
    match entity_type {
        EntityType::Issue => Some(Topic::Issues(workspace_id.to_owned())),
        EntityType::Project => Some(Topic::Projects(workspace_id.to_owned())),
        _ => None,
    }
}

#[derive(Clone)]
pub struct ConnectionRegistry {
    store: Arc<dyn Store>,
    access: Access,
    ctx: ServiceContext,
}

impl ConnectionRegistry {
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            store: ctx.store.clone(),
            access: ctx.access.clone(),
            ctx,
        }
    }

    /// Epoch seconds now, on the registry's clock.
    pub fn now(&self) -> u64 {
        self.ctx.clock.epoch_secs()
    }

    /// Now as RFC 3339, on the registry's clock.
    pub fn now_rfc3339(&self) -> String {
        self.ctx.now()
    }

    /// `$connect`: verifies the access token and the session, records the connection.
    /// Nothing is written for a refused token.
    pub async fn connect(
        &self,
        auth: &AuthService,
        connection_id: &str,
        token: Option<&str>,
    ) -> AppResult<Connection> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AppError::unauthorized("missing token"))?;
        let who = auth.authenticate(token)?;
        // Sockets belong to a login session (revocation closes them by session); API
        // tokens are for REST integrations, which hear of changes through webhooks.
        if who.is_api_token() {
            return Err(AppError::unauthorized(
                "API tokens are not accepted on WebSocket connections; sign in",
            ));
        }
        let workspace_id = self.access.current_workspace(&who).await?;
        let now = self.ctx.clock.epoch_secs();
        let connection = Connection {
            connection_id: connection_id.to_owned(),
            user_id: who.user_id.clone(),
            session_id: who.session_id.clone(),
            workspace_id: workspace_id.clone(),
            connected_at: self.ctx.now(),
            ttl: now + CONNECTION_TTL_SECS,
            last_seen: Some(now),
            foreground: false,
        };
        let mut item = record_item(&connection_key(connection_id), "connection", &connection);
        if let Some(ws) = &workspace_id {
            item.insert("gsi1pk".into(), json!(presence_partition(ws)));
            item.insert(
                "gsi1sk".into(),
                json!(format!("{}#{connection_id}", who.user_id)),
            );
        }
        let owner = record_item(
            &owner_key(&who.user_id, &who.session_id, connection_id),
            "connection_owner",
            &json!({"connection_id": connection_id, "ttl": connection.ttl}),
        );
        self.store
            .transact(vec![
                WriteOp::put(Table::Connections, item),
                WriteOp::put(Table::Connections, owner),
            ])
            .await?;
        Ok(connection)
    }

    /// The connections of a user, of one session or of all.
    pub async fn connections_of(
        &self,
        user_id: &str,
        session_id: Option<&str>,
    ) -> AppResult<Vec<String>> {
        let mut query = Query::new(Table::Connections, owner_partition(user_id));
        if let Some(session) = session_id {
            query = query.sort(SortKey::BeginsWith(format!("{session}#")));
        }
        let items = query_all(self.store.as_ref(), query).await?;
        Ok(items
            .iter()
            .filter_map(|i| i.get("connection_id").and_then(|v| v.as_str()))
            .map(str::to_owned)
            .collect())
    }

    /// Of `readers` (user, session) in `workspace_id`, those whose session is live and who are
    /// members now, with their current role: one batch read. Every outlet that lets data
    /// out over a connection (fan-out, presence, admin messages) asks this first.
    pub async fn live_readers(
        &self,
        workspace_id: &str,
        readers: impl IntoIterator<Item = (String, String)>,
    ) -> AppResult<HashMap<(String, String), Role>> {
        let readers: Vec<(String, String)> = readers
            .into_iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let users: Vec<&String> = readers
            .iter()
            .map(|(u, _)| u)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut keys: Vec<Key> = users
            .iter()
            .map(|u| keys::member(workspace_id, u))
            .collect();
        keys.extend(readers.iter().map(|(u, s)| keys::session(u, s)));
        let mut found = self.store.batch_get(Table::Main, &keys).await?;
        let sessions = found.split_off(users.len());
        let mut roles: HashMap<&str, Role> = HashMap::new();
        for (user, item) in users.iter().zip(found) {
            if let Some(item) = item {
                roles.insert(user.as_str(), from_item::<Member>(item)?.role);
            }
        }
        let now = self.ctx.clock.epoch_secs();
        let mut live = HashMap::new();
        for ((user, session), item) in readers.iter().zip(sessions) {
            let Some(role) = roles.get(user.as_str()) else {
                continue;
            };
            if check_session(item, now).is_ok() {
                live.insert((user.clone(), session.clone()), *role);
            }
        }
        Ok(live)
    }

    /// Connections present in a workspace whose session is live and whose user is a member
    /// now (presence, stats, admin messages).
    /// Connections silent past the idle timeout are left out and their items deleted.
    pub async fn present_live(&self, workspace_id: &str) -> AppResult<Vec<Connection>> {
        let now = self.ctx.clock.epoch_secs();
        let (silent, present): (Vec<Connection>, Vec<Connection>) = self
            .present(workspace_id)
            .await?
            .into_iter()
            .partition(|c| is_silent(c.last_seen(), now));
        self.prune(silent.into_iter().map(|c| c.connection_id).collect())
            .await;
        let live = self
            .live_readers(
                workspace_id,
                present
                    .iter()
                    .map(|c| (c.user_id.clone(), c.session_id.clone())),
            )
            .await?;
        Ok(present
            .into_iter()
            .filter(|c| live.contains_key(&(c.user_id.clone(), c.session_id.clone())))
            .collect())
    }

    pub async fn get(&self, connection_id: &str) -> AppResult<Option<Connection>> {
        self.store
            .get(Table::Connections, &connection_key(connection_id))
            .await?
            .map(from_item)
            .transpose()
    }

    /// The connection, or 401 when it is unknown (never connected, or cleaned up).
    pub async fn require(&self, connection_id: &str) -> AppResult<Connection> {
        self.get(connection_id)
            .await?
            .ok_or_else(|| AppError::unauthorized("unknown connection; reconnect"))
    }

    /// Every item of a connection (its record and subscriptions).
    async fn items(&self, connection_id: &str) -> AppResult<Vec<Item>> {
        query_all(
            self.store.as_ref(),
            Query::new(Table::Connections, format!("CONN#{connection_id}")),
        )
        .await
    }

    /// `$disconnect` (and 410 Gone, and the prune of a silent connection): removes the
    /// connection and its subscriptions, and records a pending leave of its user in its
    /// workspace (announced later as `user_left` unless the user is still or again
    /// connected). Returns the connection that was removed, if it was known.
    pub async fn disconnect(&self, connection_id: &str) -> AppResult<Option<Connection>> {
        let items = self.items(connection_id).await?;
        if items.is_empty() {
            return Ok(None);
        }
        let record = connection_key(connection_id);
        // The connection's record goes first, so it and the pending leave are deleted and
        // written in one transaction: whoever no longer sees the connection sees the leave.
        let mut keys: Vec<Key> = vec![record.clone()];
        keys.extend(items.iter().filter_map(Key::of).filter(|k| *k != record));
        let conn = items
            .into_iter()
            .find(|i| i.get("entity").and_then(|e| e.as_str()) == Some("connection"))
            .map(from_item::<Connection>)
            .transpose()?;
        let mut ops: Vec<WriteOp> = Vec::with_capacity(keys.len() + 2);
        if let Some(conn) = &conn {
            keys.push(owner_key(&conn.user_id, &conn.session_id, connection_id));
            if let Some(ws) = &conn.workspace_id {
                // Recorded whether or not the user has other connections: the announcer
                // checks who is present once the leave is due, which this close cannot know
                // (a reconnect may be on its way).
                let now = self.ctx.clock.epoch_secs();
                let leave = PendingLeave {
                    workspace_id: ws.clone(),
                    user_id: conn.user_id.clone(),
                    left_at: now,
                    ttl: now + CONNECTION_TTL_SECS,
                };
                ops.push(WriteOp::put(
                    Table::Connections,
                    record_item(&leave_key(ws, &conn.user_id), "presence_leave", &leave),
                ));
            }
        }
        ops.extend(keys.into_iter().map(|key| WriteOp::Delete {
            table: Table::Connections,
            key,
            condition: None,
        }));
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            self.store
                .transact(ops.by_ref().take(100).collect())
                .await?;
        }
        Ok(conn)
    }

    /// The pending leaves of a workspace (one Query).
    pub async fn pending_leaves(&self, workspace_id: &str) -> AppResult<Vec<PendingLeave>> {
        query_all(
            self.store.as_ref(),
            Query::new(Table::Connections, presence_partition(workspace_id))
                .sort(SortKey::BeginsWith("LEAVE#".into())),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }

    /// Clears a pending leave if it is still the one read (same `left_at`): `true` for the
    /// one caller that cleared it, so a leave is announced or dropped once, however many
    /// Lambdas sweep at the same time.
    pub async fn clear_leave(&self, leave: &PendingLeave) -> AppResult<bool> {
        let op = WriteOp::Delete {
            table: Table::Connections,
            key: leave_key(&leave.workspace_id, &leave.user_id),
            condition: Some(Condition::AttrEquals(
                "left_at".into(),
                json!(leave.left_at),
            )),
        };
        match self.store.transact(vec![op]).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_condition_failure() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the items of connections found silent past the idle timeout (best effort: a
    /// failure is logged, and the next reader that finds them tries again).
    pub async fn prune(&self, connection_ids: Vec<String>) {
        for id in &connection_ids {
            match self.disconnect(id).await {
                Ok(_) => tracing::info!(connection = %id, "pruned a silent connection"),
                Err(e) => {
                    tracing::warn!(connection = %id, error = %e, "could not prune a silent connection")
                }
            }
        }
    }

    /// Records that the connection was just heard from: sets `last_seen` on its record and
    /// on each of its subscriptions, unless the stored value is less than
    /// `LAST_SEEN_WRITE_INTERVAL_SECS` old (then nothing is written). Returns whether it
    /// wrote. The writes are conditional on the items existing, so a refresh racing a
    /// disconnect or an unsubscribe never brings an item back. `conn` is updated too, so
    /// that subscriptions made later in the same command copy the fresh value.
    pub async fn touch(&self, conn: &mut Connection) -> AppResult<bool> {
        let now = self.ctx.clock.epoch_secs();
        if now.saturating_sub(conn.last_seen()) < LAST_SEEN_WRITE_INTERVAL_SECS {
            return Ok(false);
        }
        let keys: Vec<Key> = self
            .items(&conn.connection_id)
            .await?
            .iter()
            .filter_map(Key::of)
            .collect();
        for chunk in keys.chunks(100) {
            let ops = chunk
                .iter()
                .map(|key| WriteOp::Update {
                    table: Table::Connections,
                    key: key.clone(),
                    update: Update::default().set("last_seen", now),
                    condition: Some(Condition::Exists),
                })
                .collect();
            match self.store.transact(ops).await {
                Ok(()) => {}
                // Gone or unsubscribed meanwhile: nothing left to refresh there.
                Err(e) if e.is_condition_failure() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        conn.last_seen = Some(now);
        Ok(true)
    }

    /// Records the app's `presence`: whether this connection is in the foreground. Also
    /// refreshes `last_seen` on the record (the command is a message heard).
    pub async fn set_foreground(&self, conn: &Connection, foreground: bool) -> AppResult<()> {
        let result = self
            .store
            .transact(vec![WriteOp::Update {
                table: Table::Connections,
                key: connection_key(&conn.connection_id),
                update: Update::default().set("foreground", foreground),
                condition: Some(Condition::Exists),
            }])
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_condition_failure() => {
                Err(AppError::unauthorized("unknown connection; reconnect"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `user_id` has a connection that said it is in the foreground, is not silent
    /// past the idle timeout and whose session is live (two reads and a batch).
    pub async fn user_in_foreground(&self, user_id: &str) -> AppResult<bool> {
        let ids = self.connections_of(user_id, None).await?;
        if ids.is_empty() {
            return Ok(false);
        }
        let conn_keys: Vec<Key> = ids.iter().map(|id| connection_key(id)).collect();
        let now = self.ctx.clock.epoch_secs();
        let mut sessions = HashSet::new();
        for chunk in conn_keys.chunks(100) {
            for item in self.store.batch_get(Table::Connections, chunk).await? {
                let Some(item) = item else { continue };
                let conn: Connection = from_item(item)?;
                if conn.foreground && !is_silent(conn.last_seen(), now) {
                    sessions.insert(keys::session(&conn.user_id, &conn.session_id));
                }
            }
        }
        if sessions.is_empty() {
            return Ok(false);
        }
        let sessions: Vec<Key> = sessions.into_iter().collect();
        for chunk in sessions.chunks(100) {
            let found = self.store.batch_get(Table::Main, chunk).await?;
            if found
                .into_iter()
                .any(|item| check_session(item, now).is_ok())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn subscriptions(&self, connection_id: &str) -> AppResult<Vec<Subscription>> {
        self.items(connection_id)
            .await?
            .into_iter()
            .filter(|i| i.get("entity").and_then(|e| e.as_str()) == Some("subscription"))
            .map(from_item)
            .collect()
    }

    /// Subscribes to topics the user may read; all or nothing. Returns the canonical names.
    pub async fn subscribe(&self, conn: &Connection, raw: &[String]) -> AppResult<Vec<String>> {
        if raw.is_empty() {
            return Err(AppError::validation("topics", "at least one topic"));
        }
        let existing = self.subscriptions(&conn.connection_id).await?;
        if existing.len() + raw.len() > MAX_SUBSCRIPTIONS {
            return Err(AppError::validation(
                "topics",
                format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            ));
        }
        let mut topics: Vec<(Topic, String)> = Vec::new();
        for t in raw {
            let topic = Topic::parse_for_client(t, conn.workspace_id.as_deref())?;
            if !topics.iter().any(|(known, _)| *known == topic) {
                let workspace_id = topic.workspace_id()?;
                topics.push((topic, workspace_id));
            }
        }
        let who = conn.principal();
        let mut checked: Vec<&str> = Vec::new();
        for (_, workspace_id) in &topics {
            if !checked.contains(&workspace_id.as_str()) {
                self.access
                    .authorize(&who, workspace_id, Action::Read, "topic", &[])
                    .await
                    .map_err(|e| match e.code {
                        crate::error::ErrorCode::NotFound => {
                            AppError::validation("topics", "no such topic visible to you")
                                .with_code(crate::error::ErrorCode::NotFound)
                        }
                        _ => e,
                    })?;
                checked.push(workspace_id);
            }
        }
        let ops = topics
            .iter()
            .map(|(topic, workspace_id)| {
                let sub = Subscription {
                    connection_id: conn.connection_id.clone(),
                    user_id: conn.user_id.clone(),
                    session_id: conn.session_id.clone(),
                    workspace_id: workspace_id.clone(),
                    topic: topic.to_string(),
                    ttl: conn.ttl,
                    last_seen: Some(conn.last_seen()),
                };
                let mut item = record_item(
                    &subscription_key(&conn.connection_id, topic),
                    "subscription",
                    &sub,
                );
                item.insert("gsi1pk".into(), json!(topic_partition(topic)));
                item.insert("gsi1sk".into(), json!(conn.connection_id));
                WriteOp::put(Table::Connections, item)
            })
            .collect();
        self.store.transact(ops).await?;
        Ok(topics.into_iter().map(|(t, _)| t.to_string()).collect())
    }

    pub async fn unsubscribe(&self, conn: &Connection, raw: &[String]) -> AppResult<Vec<String>> {
        if raw.is_empty() {
            return Err(AppError::validation("topics", "at least one topic"));
        }
        let mut names = Vec::new();
        for t in raw {
            let name = Topic::parse_for_client(t, conn.workspace_id.as_deref())?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let ops = names
            .iter()
            .map(|n| WriteOp::Delete {
                table: Table::Connections,
                key: subscription_key(&conn.connection_id, n),
                condition: None,
            })
            .collect();
        self.store.transact(ops).await?;
        Ok(names.iter().map(Topic::to_string).collect())
    }

    /// Subscribers of a topic.
    pub async fn subscribers(&self, topic: &Topic) -> AppResult<Vec<Subscription>> {
        query_all(
            self.store.as_ref(),
            Query::new(Table::Connections, topic_partition(topic)).index(Index::Gsi1),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }

    /// Connections whose user had `workspace_id` current when connecting (presence).
    pub async fn present(&self, workspace_id: &str) -> AppResult<Vec<Connection>> {
        query_all(
            self.store.as_ref(),
            Query::new(Table::Connections, presence_partition(workspace_id)).index(Index::Gsi1),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }
}

#[async_trait::async_trait]
impl crate::areas::push::ForegroundProbe for ConnectionRegistry {
    async fn in_foreground(&self, user_id: &str) -> AppResult<bool> {
        self.user_in_foreground(user_id).await
    }
}
