//! Fan-out: committed change records become events posted to every subscribed connection
//! whose user is still a member of the workspace. Posts run in parallel with a bound; a
//! connection that is gone (410) is deleted and delivery goes on to the rest. A post that
//! failed transiently (throttled, 5xx, timeout) is retried with jittered backoff within
//! `RetryPolicy::gateway()`'s budget.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::AppResult;
use crate::kernel::access::EntityType;
use crate::kernel::changes::{ChangeKind, ChangeRecord, Revocation};
use crate::kernel::topic::Topic;
use crate::realtime::connections::{ConnectionRegistry, Subscription, derived_topics, is_silent};
use crate::storage::RetryPolicy;

/// Why a post failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The connection no longer exists (API Gateway's 410 Gone).
    #[error("connection gone")]
    Gone,
    /// Throttled (429), a 5xx or a timeout: worth another attempt.
    #[error("post failed, retryable: {0}")]
    Retryable(String),
    /// Refused for good (forbidden, payload too large, ...).
    #[error("post failed: {0}")]
    Other(String),
}

impl GatewayError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, GatewayError::Retryable(_))
    }
}

/// Posts with retries of transient failures (a retried post whose first attempt did arrive
/// is delivered twice: clients drop events by `seq`, as they must on reconnects anyway).
async fn post_with_retry(
    gateway: &dyn ConnectionGateway,
    policy: &RetryPolicy,
    connection_id: &str,
    data: Vec<u8>,
) -> Result<(), GatewayError> {
    policy
        .run(
            || gateway.post(connection_id, data.clone()),
            GatewayError::is_retryable,
            GatewayError::Retryable,
        )
        .await
}

/// The management API of the WebSocket gateway (API Gateway's `@connections`).
#[async_trait]
pub trait ConnectionGateway: Send + Sync + 'static {
    async fn post(&self, connection_id: &str, data: Vec<u8>) -> Result<(), GatewayError>;
    /// Closes a connection server-side (best effort).
    async fn close(&self, connection_id: &str) -> Result<(), GatewayError>;
    /// Whether the gateway still holds the connection (`GetConnection`).
    async fn exists(&self, connection_id: &str) -> Result<bool, GatewayError>;
}

/// The message a subscriber receives for one change: the change record exactly as the feed
/// and `sync` serve it, plus `type: "event"` and the topic it was delivered on. One parser
/// reads both.
#[derive(Clone, Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub topic: &'a Topic,
    #[serde(flatten)]
    pub change: &'a ChangeRecord,
}

impl<'a> Event<'a> {
    pub fn new(topic: &'a Topic, change: &'a ChangeRecord) -> Self {
        Self {
            kind: "event",
            topic,
            change,
        }
    }
}

/// The schema of a live event (the OpenAPI document's `LiveEvent`): a change record with
/// `type` and `topic`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveEvent {
    /// Always `event`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The subscribed topic the event was delivered on.
    #[schema(value_type = String)]
    pub topic: Topic,
    #[serde(flatten)]
    pub change: ChangeRecord,
}

/// What one delivery did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub delivered: usize,
    pub gone: usize,
    pub failed: usize,
    /// Subscribers not sent the event: not a member now, session revoked, or the record's
    /// visibility rule excludes their role.
    pub skipped_not_member: usize,
    /// Subscribers silent past API Gateway's idle timeout: not sent the event, closed and
    /// their items deleted.
    pub stale: usize,
}

impl Delivery {
    fn add(&mut self, other: &Delivery) {
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.failed += other.failed;
        self.skipped_not_member += other.skipped_not_member;
        self.stale += other.stale;
    }
}

pub const DEFAULT_CONCURRENCY: usize = 64;

#[derive(Clone)]
pub struct Broadcaster {
    registry: ConnectionRegistry,
    gateway: Arc<dyn ConnectionGateway>,
    concurrency: usize,
    retry: RetryPolicy,
}

impl Broadcaster {
    pub fn new(registry: ConnectionRegistry, gateway: Arc<dyn ConnectionGateway>) -> Self {
        Self {
            registry,
            gateway,
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy::gateway(),
        }
    }

    /// Another retry policy for posts (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn gateway(&self) -> &Arc<dyn ConnectionGateway> {
        &self.gateway
    }

    /// Delivers records in the order given (callers pass them in seq order per workspace).
    pub async fn deliver(&self, records: &[ChangeRecord]) -> AppResult<Delivery> {
        let mut total = Delivery::default();
        for record in records {
            total.add(&self.deliver_one(record).await?);
        }
        Ok(total)
    }

    async fn deliver_one(&self, record: &ChangeRecord) -> AppResult<Delivery> {
        let outcome = self.fan_out(record).await?;
        // A membership that ended (removal, leaving, the workspace deleted) ends its
        // connections' hold on the workspace at once; their clients reconnect for the rest.
        match (record.entity_type, record.kind) {
            (EntityType::WorkspaceMember, ChangeKind::Deleted) => {
                self.end_membership(&record.workspace_id, Some(&record.entity_id))
                    .await?;
            }
            (EntityType::Workspace, ChangeKind::Deleted) => {
                self.end_membership(&record.workspace_id, None).await?;
            }
            _ => {}
        }
        Ok(outcome)
    }

    async fn fan_out(&self, record: &ChangeRecord) -> AppResult<Delivery> {
        let mut topics = record.topics.clone();
        topics.extend(derived_topics(&record.workspace_id, record.entity_type));
        // One event per connection, under the first of its topics that matched.
        let mut targets: Vec<(Subscription, &Topic)> = Vec::new();
        let mut seen = HashSet::new();
        for topic in &topics {
            for sub in self.registry.subscribers(topic).await? {
                if sub.workspace_id == record.workspace_id && seen.insert(sub.connection_id.clone())
                {
                    targets.push((sub, topic));
                }
            }
        }
        // A connection silent past the idle timeout is gone (its `$disconnect` may never
        // have run): no event for it, and its rows go.
        let now = self.registry.now();
        let (silent, targets): (Vec<_>, Vec<_>) = targets
            .into_iter()
            .partition(|(s, _)| is_silent(s.last_seen(), now));
        let mut outcome = Delivery {
            stale: silent.len(),
            ..Delivery::default()
        };
        if !silent.is_empty() {
            self.close_connections(silent.into_iter().map(|(s, _)| s.connection_id).collect())
                .await;
        }
        if targets.is_empty() {
            return Ok(outcome);
        }
        // The same visibility rule as REST and the feed, on the reader's current role and
        // live session, read in one batch for all targets.
        let readers = self
            .registry
            .live_readers(
                &record.workspace_id,
                targets
                    .iter()
                    .map(|(s, _)| (s.user_id.clone(), s.session_id.clone())),
            )
            .await?;
        let mut messages = Vec::with_capacity(targets.len());
        for (sub, topic) in &targets {
            let allowed = readers
                .get(&(sub.user_id.clone(), sub.session_id.clone()))
                .is_some_and(|role| record.visible_to(&sub.user_id, *role));
            if !allowed {
                outcome.skipped_not_member += 1;
                continue;
            }
            let bytes = serde_json::to_vec(&Event::new(topic, record)).expect("events serialise");
            messages.push((sub.connection_id.clone(), bytes));
        }
        let results: Vec<(String, Result<(), GatewayError>)> = futures::stream::iter(messages)
            .map(|(conn, bytes)| {
                let gateway = self.gateway.clone();
                let retry = self.retry;
                async move {
                    let r = post_with_retry(gateway.as_ref(), &retry, &conn, bytes).await;
                    (conn, r)
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for (conn, result) in results {
            match result {
                Ok(()) => outcome.delivered += 1,
                Err(GatewayError::Gone) => {
                    outcome.gone += 1;
                    if let Err(e) = self.registry.disconnect(&conn).await {
                        tracing::warn!(connection = %conn, error = %e, "could not delete a gone connection");
                    }
                }
                Err(e) => {
                    outcome.failed += 1;
                    tracing::warn!(connection = %conn, error = %e, "post failed");
                }
            }
        }
        Ok(outcome)
    }

    /// Closes connections (server side, through the gateway) and forgets them. Returns how
    /// many were closed.
    pub async fn close_connections(&self, connection_ids: Vec<String>) -> usize {
        let n = connection_ids.len();
        for conn in connection_ids {
            if let Err(e) = self.gateway.close(&conn).await {
                tracing::debug!(connection = %conn, error = %e, "close: already gone");
            }
            if let Err(e) = self.registry.disconnect(&conn).await {
                tracing::warn!(connection = %conn, error = %e, "could not forget a closed connection");
            }
        }
        n
    }

    /// Ends the connections of revoked sessions (logout, password change, refresh-token
    /// reuse).
    pub async fn revoke(&self, revocation: &Revocation) -> AppResult<usize> {
        let mut ended = Vec::new();
        for session in &revocation.session_ids {
            ended.extend(
                self.registry
                    .connections_of(&revocation.user_id, Some(session))
                    .await?,
            );
        }
        Ok(self.close_connections(ended).await)
    }

    /// Ends connections that hold on to a workspace (present in it or subscribed to it):
    /// those of one user whose membership ended, or everyone's when the workspace is gone.
    async fn end_membership(&self, workspace_id: &str, user_id: Option<&str>) -> AppResult<usize> {
        let mut ended: HashSet<String> = HashSet::new();
        match user_id {
            Some(user) => {
                for conn in self.registry.connections_of(user, None).await? {
                    let holds = match self.registry.get(&conn).await? {
                        Some(c) if c.workspace_id.as_deref() == Some(workspace_id) => true,
                        Some(_) => self
                            .registry
                            .subscriptions(&conn)
                            .await?
                            .iter()
                            .any(|s| s.workspace_id == workspace_id),
                        None => true,
                    };
                    if holds {
                        ended.insert(conn);
                    }
                }
            }
            None => {
                for c in self.registry.present(workspace_id).await? {
                    ended.insert(c.connection_id);
                }
                for topic in Topic::workspace_wide(workspace_id) {
                    for s in self.registry.subscribers(&topic).await? {
                        ended.insert(s.connection_id);
                    }
                }
            }
        }
        Ok(self.close_connections(ended.into_iter().collect()).await)
    }

    /// Posts an arbitrary message to connections (admin send/broadcast); returns counts.
    pub async fn post_all(&self, connection_ids: Vec<String>, message: &Value) -> Delivery {
        let bytes = serde_json::to_vec(message).expect("json");
        let results: Vec<(String, Result<(), GatewayError>)> =
            futures::stream::iter(connection_ids)
                .map(|conn| {
                    let gateway = self.gateway.clone();
                    let bytes = bytes.clone();
                    let retry = self.retry;
                    async move {
                        let r = post_with_retry(gateway.as_ref(), &retry, &conn, bytes).await;
                        (conn, r)
                    }
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut outcome = Delivery::default();
        for (conn, r) in results {
            match r {
                Ok(()) => outcome.delivered += 1,
                Err(GatewayError::Gone) => {
                    outcome.gone += 1;
                    let _ = self.registry.disconnect(&conn).await;
                }
                Err(_) => outcome.failed += 1,
            }
        }
        outcome
    }
}
