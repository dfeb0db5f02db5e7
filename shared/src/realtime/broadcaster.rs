//! Fan-out: committed change records become events posted to every subscribed connection
//! whose user is still a member of the workspace. Posts run in parallel with a bound; a
//! connection that is gone (410) is deleted and delivery goes on to the rest. A post that
//! failed transiently (throttled, 5xx, timeout) is retried with jittered backoff within
//! `RetryPolicy::gateway()`'s budget.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::config::FanoutConfig;
use crate::error::AppResult;
use crate::kernel::access::EntityType;
use crate::kernel::changes::{ChangeKind, ChangeRecord, Revocation};
use crate::kernel::topic::Topic;
use crate::realtime::connections::{ConnectionRegistry, derived_topics, is_silent};
use crate::realtime::shards::{InProcessShards, Shard, ShardQueue, Target};
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
    /// The attempt outlived the broadcaster's hard post timeout: failed for this connection,
    /// not retried (a hung connection must not hold a slot of the batch any longer).
    #[error("post timed out")]
    TimedOut,
    /// Refused for good (forbidden, payload too large, ...).
    #[error("post failed: {0}")]
    Other(String),
}

impl GatewayError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, GatewayError::Retryable(_))
    }
}

/// How posts are made: retries of transient failures within `retry`'s budget, each attempt
/// cut off at `timeout`, at most `concurrency` at once per batch.
#[derive(Clone, Copy, Debug)]
pub struct PostPolicy {
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for PostPolicy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::gateway(),
            timeout: FanoutConfig::default().post_timeout,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Posts with retries of transient failures (a retried post whose first attempt did arrive
/// is delivered twice: clients drop events by `seq`, as they must on reconnects anyway).
async fn post_with_retry(
    gateway: &dyn ConnectionGateway,
    policy: &PostPolicy,
    connection_id: &str,
    data: Vec<u8>,
) -> Result<(), GatewayError> {
    policy
        .retry
        .run(
            || async {
                tokio::time::timeout(policy.timeout, gateway.post(connection_id, data.clone()))
                    .await
                    .unwrap_or(Err(GatewayError::TimedOut))
            },
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
    /// Subscribers handed to a shard queue, to be delivered by the fan-out worker.
    pub queued: usize,
}

impl Delivery {
    pub fn add(&mut self, other: &Delivery) {
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.failed += other.failed;
        self.skipped_not_member += other.skipped_not_member;
        self.stale += other.stale;
        self.queued += other.queued;
    }
}

pub const DEFAULT_CONCURRENCY: usize = 64;

/// Finds a record's subscribers and delivers to them: inline when they fit in one shard,
/// else split into shards handed to the `ShardQueue` (in-process in the shim and tests, an
/// SQS queue read by the fan-out worker on AWS). Every shard, wherever it runs, goes through
/// `ShardWorker::deliver`, the one place that applies the visibility rule.
#[derive(Clone)]
pub struct Broadcaster {
    worker: ShardWorker,
    queue: Arc<dyn ShardQueue>,
    shard_size: usize,
}

impl Broadcaster {
    pub fn new(registry: ConnectionRegistry, gateway: Arc<dyn ConnectionGateway>) -> Self {
        Self {
            worker: ShardWorker::new(registry, gateway),
            queue: Arc::new(InProcessShards),
            shard_size: FanoutConfig::default().shard_size,
        }
    }

    /// Post timeout and shard size from configuration.
    pub fn with_config(mut self, config: &FanoutConfig) -> Self {
        self.worker.policy.timeout = config.post_timeout;
        self.shard_size = config.shard_size.max(1);
        self
    }

    /// Another retry policy for posts (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.worker.policy.retry = retry;
        self
    }

    /// Posts at most this many at once per shard.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.worker.policy.concurrency = concurrency.max(1);
        self
    }

    /// Where shards of large fan-outs go (default: delivered in this process, in parallel).
    pub fn with_queue(mut self, queue: Arc<dyn ShardQueue>) -> Self {
        self.queue = queue;
        self
    }

    pub fn gateway(&self) -> &Arc<dyn ConnectionGateway> {
        &self.worker.gateway
    }

    /// The worker that delivers shards (the fan-out worker Lambda runs the same one).
    pub fn worker(&self) -> &ShardWorker {
        &self.worker
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
        let mut targets: Vec<Target> = Vec::new();
        let mut seen = HashSet::new();
        for topic in &topics {
            for sub in self.worker.registry.subscribers(topic).await? {
                if sub.workspace_id == record.workspace_id && seen.insert(sub.connection_id.clone())
                {
                    targets.push(Target::new(&sub, topic));
                }
            }
        }
        if targets.is_empty() {
            return Ok(Delivery::default());
        }
        if targets.len() <= self.shard_size {
            return self
                .worker
                .deliver(&Shard::whole(record.clone(), targets))
                .await;
        }
        let shards = Shard::split(record, targets, self.shard_size);
        self.queue.dispatch(shards, &self.worker).await
    }

    /// Closes connections (server side, through the gateway) and forgets them. Returns how
    /// many were closed.
    pub async fn close_connections(&self, connection_ids: Vec<String>) -> usize {
        self.worker.close_connections(connection_ids).await
    }

    /// Ends the connections of revoked sessions (logout, password change, refresh-token
    /// reuse).
    pub async fn revoke(&self, revocation: &Revocation) -> AppResult<usize> {
        let mut ended = Vec::new();
        for session in &revocation.session_ids {
            ended.extend(
                self.worker
                    .registry
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
                let registry = &self.worker.registry;
                for conn in registry.connections_of(user, None).await? {
                    let holds = match registry.get(&conn).await? {
                        Some(c) if c.workspace_id.as_deref() == Some(workspace_id) => true,
                        Some(_) => registry
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
                for c in self.worker.registry.present(workspace_id).await? {
                    ended.insert(c.connection_id);
                }
                for topic in Topic::workspace_wide(workspace_id) {
                    for s in self.worker.registry.subscribers(&topic).await? {
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
        self.worker
            .post_each(connection_ids.into_iter().map(|c| (c, bytes.clone())))
            .await
    }
}

/// Delivers shards: the one delivery path of every event, inline or from a queue. It asks
/// the same rules as REST and the feed, on what is stored now: the connection must not be
/// silent past the idle timeout, its session live, its user a member, and the record
/// visible to that member's current role (`ChangeRecord::visible_to`).
#[derive(Clone)]
pub struct ShardWorker {
    registry: ConnectionRegistry,
    gateway: Arc<dyn ConnectionGateway>,
    policy: PostPolicy,
}

impl ShardWorker {
    /// The connections it delivers to.
    pub fn registry(&self) -> &ConnectionRegistry {
        &self.registry
    }

    pub fn new(registry: ConnectionRegistry, gateway: Arc<dyn ConnectionGateway>) -> Self {
        Self {
            registry,
            gateway,
            policy: PostPolicy::default(),
        }
    }

    /// Delivers one shard's record to its targets.
    pub async fn deliver(&self, shard: &Shard) -> AppResult<Delivery> {
        let record = &shard.record;
        // A connection silent past the idle timeout is gone (its `$disconnect` may never
        // have run): no event for it, and its rows go.
        let now = self.registry.now();
        let (silent, targets): (Vec<&Target>, Vec<&Target>) = shard
            .targets
            .iter()
            .partition(|t| is_silent(t.last_seen, now));
        let mut outcome = Delivery {
            stale: silent.len(),
            ..Delivery::default()
        };
        if !silent.is_empty() {
            self.close_connections(silent.iter().map(|t| t.connection_id.clone()).collect())
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
                    .map(|t| (t.user_id.clone(), t.session_id.clone())),
            )
            .await?;
        let mut messages = Vec::with_capacity(targets.len());
        for target in targets {
            let allowed = readers
                .get(&(target.user_id.clone(), target.session_id.clone()))
                .is_some_and(|role| record.visible_to(&target.user_id, *role));
            if !allowed {
                outcome.skipped_not_member += 1;
                continue;
            }
            let bytes =
                serde_json::to_vec(&Event::new(&target.topic, record)).expect("events serialise");
            messages.push((target.connection_id.clone(), bytes));
        }
        outcome.add(&self.post_each(messages).await);
        Ok(outcome)
    }

    /// Posts each message to its connection, at most `concurrency` at once; a gone
    /// connection is forgotten.
    async fn post_each(&self, messages: impl IntoIterator<Item = (String, Vec<u8>)>) -> Delivery {
        let policy = self.policy;
        let results: Vec<(String, Result<(), GatewayError>)> = futures::stream::iter(messages)
            .map(|(conn, bytes)| {
                let gateway = self.gateway.clone();
                async move {
                    let r = post_with_retry(gateway.as_ref(), &policy, &conn, bytes).await;
                    (conn, r)
                }
            })
            .buffer_unordered(policy.concurrency)
            .collect()
            .await;
        let mut outcome = Delivery::default();
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
        outcome
    }

    /// Closes connections (server side, through the gateway) and forgets them.
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
}
