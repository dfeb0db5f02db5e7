//! The workspace change log and the one way mutations commit.
//!
//! Every mutation writes, in the same transaction as its data, one change record per changed
//! entity into its workspace's log, numbered by a per-workspace counter that the transaction
//! advances conditionally (`seq = n` -> `seq = n + k`). So sequence numbers are gapless and
//! in commit order: a reader that has seen N and asks for "since N" can never miss a change
//! committed later with a lower number. A writer that loses the race on the counter re-reads
//! it and rebuilds its transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::error::{AppError, AppResult};
use crate::kernel::access::{Audience, EntityType};
use crate::kernel::record::{from_item, to_item};
use crate::kernel::topic::Topic;
use crate::storage::{
    Condition, Item, Key, MAX_TRANSACTION_OPS, Query, SortKey, Store, StoreError, Table, Update,
    WriteOp,
};

/// How long change records are kept (DynamoDB TTL); older cursors must resync.
pub const RETENTION_SECS: u64 = 30 * 24 * 3600;
const SEQ_ATTR: &str = "seq";
const MAX_ATTEMPTS: u32 = 40;

pub fn counter_key(workspace_id: &str) -> Key {
    Key::new(format!("WS#{workspace_id}"), "CHANGESEQ")
}

pub fn log_partition(workspace_id: &str) -> String {
    format!("WS#{workspace_id}#CHANGES")
}

fn seq_sk(seq: i64) -> String {
    format!("{seq:016}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// One changed entity, as the mutation describes it.
#[derive(Clone, Debug)]
pub struct Change {
    pub entity_type: EntityType,
    pub entity_id: String,
    pub kind: ChangeKind,
    /// The entity after the change (or what was deleted).
    pub data: Value,
    /// Realtime topics besides `workspace:{id}` (e.g. `team:{id}`, `issue:{id}`).
    pub topics: Vec<Topic>,
    /// The user the entity is about, when the visibility rule lets them read it (an
    /// invitation's invitee).
    pub subject: Option<String>,
}

impl Change {
    pub fn new(
        entity_type: EntityType,
        entity_id: impl Into<String>,
        kind: ChangeKind,
        data: impl Serialize,
    ) -> Self {
        Self {
            entity_type,
            entity_id: entity_id.into(),
            kind,
            data: serde_json::to_value(data).unwrap_or(Value::Null),
            topics: Vec::new(),
            subject: None,
        }
    }

    pub fn topic(mut self, topic: Topic) -> Self {
        self.topics.push(topic);
        self
    }

    /// Names the user the entity is about (see `EntityType::subject_reads`).
    pub fn subject(mut self, user_id: impl Into<String>) -> Self {
        self.subject = Some(user_id.into());
        self
    }
}

/// A committed change record, as stored and as served by `GET /workspaces/{id}/changes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeRecord {
    pub seq: i64,
    pub workspace_id: String,
    /// `{entity_type}.{kind}`, e.g. `issue.updated`.
    pub event: String,
    pub entity_type: EntityType,
    pub entity_id: String,
    pub kind: ChangeKind,
    pub actor_id: String,
    pub at: String,
    #[schema(value_type = Vec<String>)]
    pub topics: Vec<Topic>,
    pub data: Value,
    /// What a reader needs to see this record (the entity type's visibility rule when it
    /// was committed). Records written before it existed carry none: the rule of their
    /// entity type applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
}

impl ChangeRecord {
    /// What a reader needs to see this record.
    pub fn audience(&self) -> Audience {
        self.audience
            .clone()
            .unwrap_or_else(|| self.entity_type.audience(None))
    }

    /// Whether a current member of the workspace with `role` may see this record.
    pub fn visible_to(&self, user_id: &str, role: crate::kernel::access::Role) -> bool {
        self.audience().admits(user_id, role)
    }
}

/// A counter the transaction advances besides the change sequence (e.g. a team's issue
/// numbers): read before building, advanced conditionally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CounterRef {
    pub key: Key,
    pub attr: &'static str,
}

/// What a mutation wants written. Each operation carries the error to report when its own
/// condition fails.
pub struct Plan<T> {
    ops: Vec<(WriteOp, Option<AppError>)>,
    changes: Vec<Change>,
    bumps: Vec<(CounterRef, i64)>,
    pub output: T,
}

impl<T> Plan<T> {
    pub fn new(output: T) -> Self {
        Self {
            ops: Vec::new(),
            changes: Vec::new(),
            bumps: Vec::new(),
            output,
        }
    }

    /// An operation whose condition failing means a concurrent change: 409.
    pub fn op(mut self, op: WriteOp) -> Self {
        self.ops.push((op, None));
        self
    }

    /// An operation whose condition failing means `error`.
    pub fn guarded(mut self, op: WriteOp, error: AppError) -> Self {
        self.ops.push((op, Some(error)));
        self
    }

    pub fn change(mut self, change: Change) -> Self {
        self.changes.push(change);
        self
    }

    /// Advances a counter read through `Counters` by `by`.
    pub fn bump(mut self, counter: CounterRef, by: i64) -> Self {
        self.bumps.push((counter, by));
        self
    }

    pub fn op_count(&self) -> usize {
        self.ops.len() + self.changes.len() + self.bumps.len() + 1
    }
}

/// Counter values as read for this attempt.
#[derive(Debug, Default)]
pub struct Counters(HashMap<CounterRef, i64>);

impl Counters {
    /// The current value (0 when never bumped).
    pub fn get(&self, counter: &CounterRef) -> i64 {
        self.0.get(counter).copied().unwrap_or(0)
    }
}

/// One attempt of a commit, ready to write.
struct Attempt<T> {
    /// The plan's data operations, then the counter advances, then the change records.
    ops: Vec<WriteOp>,
    /// For each data operation (the first `errors.len()` of `ops`), the error its own
    /// condition failing means.
    errors: Vec<Option<AppError>>,
    seqs: Vec<i64>,
    records: Vec<ChangeRecord>,
    output: T,
}

/// What a commit returns: the plan's output and the sequence numbers of its changes.
#[derive(Debug)]
pub struct Committed<T> {
    pub output: T,
    pub seqs: Vec<i64>,
}

#[derive(Clone)]
pub struct ChangeLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sink: Arc<std::sync::OnceLock<Arc<dyn ChangeSink>>>,
}

/// Where committed change records go besides the table. In the cloud nothing is needed (the
/// DynamoDB Stream carries them to the broadcaster); the local shim installs a sink that
/// feeds its in-process broadcaster.
#[async_trait::async_trait]
pub trait ChangeSink: Send + Sync + 'static {
    /// Taken before a commit of `workspace_id` reads the sequence and held until its records
    /// are handed over, so a sink that needs records in seq order can serialise the commits
    /// of a workspace (the shim does; its broadcaster then delivers them in order).
    async fn commit_turn(&self, workspace_id: &str) -> Option<CommitTurn>;
    fn committed(&self, records: Vec<ChangeRecord>);
    /// Sessions ended: their realtime connections must close.
    fn revoked(&self, revocation: Revocation);
}

/// Proof of holding a workspace's commit turn (see `ChangeSink::commit_turn`).
pub type CommitTurn = tokio::sync::OwnedMutexGuard<()>;

/// How long revocation items stay in the table: long enough for the stream to carry them.
const REVOCATION_TTL_SECS: u64 = 24 * 3600;

/// Sessions that ended (logout, password change, refresh-token reuse): their realtime
/// connections must close. Written as an item in the same transaction as the session
/// deletions, so the DynamoDB Stream carries it to the realtime Lambda (which closes the
/// connections through `@connections`); in the shim the sink gets it directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub user_id: String,
    pub session_ids: Vec<String>,
    pub at: String,
}

impl Revocation {
    pub const ENTITY: &'static str = "revocation";

    /// The item that carries this revocation to the stream.
    pub fn op(&self, now_epoch: u64) -> WriteOp {
        let mut item = to_item(self);
        item.insert("pk".into(), json!(format!("REVOKED#{}", self.user_id)));
        item.insert(
            "sk".into(),
            json!(format!("{}#{}", self.at, uuid::Uuid::new_v4().simple())),
        );
        item.insert("entity".into(), json!(Self::ENTITY));
        item.insert("ttl".into(), json!(now_epoch + REVOCATION_TTL_SECS));
        WriteOp::put(Table::Main, item)
    }
}

fn counter_op(counter: &CounterRef, current: i64, by: i64) -> WriteOp {
    WriteOp::Update {
        table: Table::Main,
        key: counter.key.clone(),
        update: Update::default().set(counter.attr, current + by),
        condition: Some(if current == 0 {
            Condition::NotExists
        } else {
            Condition::AttrEquals(counter.attr.to_owned(), json!(current))
        }),
    }
}

impl ChangeLog {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            sink: Arc::default(),
        }
    }

    /// Hands a committed revocation to the sink (the shim closes the sockets at once).
    pub fn revoked(&self, revocation: Revocation) {
        if let Some(sink) = self.sink.get() {
            sink.revoked(revocation);
        }
    }

    /// Installs the sink for committed records (once per process; later calls are ignored).
    pub fn set_sink(&self, sink: Arc<dyn ChangeSink>) {
        let _ = self.sink.set(sink);
    }

    /// Commits what `build` plans, with change records numbered in commit order. `build` may
    /// run more than once (after losing a counter race), so it must not have side effects.
    /// `counters` are read (with the change sequence, in one call) before each attempt.
    pub async fn commit<T, F>(
        &self,
        workspace_id: &str,
        actor_id: &str,
        counters: &[CounterRef],
        mut build: F,
    ) -> AppResult<Committed<T>>
    where
        F: FnMut(&Counters) -> AppResult<Plan<T>>,
    {
        let seq_counter = CounterRef {
            key: counter_key(workspace_id),
            attr: SEQ_ATTR,
        };
        let mut all = vec![seq_counter.clone()];
        all.extend(counters.iter().cloned());
        let _turn = match self.sink.get() {
            Some(sink) => sink.commit_turn(workspace_id).await,
            None => None,
        };
        for attempt in 0..MAX_ATTEMPTS {
            let values = self.read_counters(&all).await?;
            let plan = build(&values)?;
            let Attempt {
                ops,
                errors,
                seqs,
                records,
                output,
            } = self.assemble(workspace_id, actor_id, &seq_counter, &values, plan)?;
            if ops.is_empty() {
                return Ok(Committed { output, seqs });
            }
            let counter_start = errors.len();
            match self.store.transact(ops).await {
                Ok(()) => {
                    if let Some(sink) = self.sink.get()
                        && !records.is_empty()
                    {
                        sink.committed(records);
                    }
                    return Ok(Committed { output, seqs });
                }
                Err(StoreError::TransactionCanceled { reasons }) => {
                    // A failed data condition is the caller's answer, whatever the counters did.
                    if let Some(i) = reasons
                        .iter()
                        .take(counter_start)
                        .position(|r| *r != crate::storage::CancelReason::None)
                    {
                        return Err(errors[i].clone().unwrap_or_else(|| {
                            AppError::conflict("the resource was changed concurrently; retry")
                        }));
                    }
                    // Otherwise another writer took the sequence (or a counter) first: the
                    // counter check fails and so does the put of the record with that seq.
                    let backoff = 2 + rand::random::<u64>() % (4 << attempt.min(4));
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::unavailable(
            "too many concurrent writes in this workspace; retry",
        ))
    }

    /// The change sequence and the plan's counters, in one read, as they are now.
    async fn read_counters(&self, all: &[CounterRef]) -> AppResult<Counters> {
        let keys: Vec<Key> = all.iter().map(|c| c.key.clone()).collect();
        let items = self.store.batch_get(Table::Main, &keys).await?;
        Ok(Counters(
            all.iter()
                .zip(items)
                .map(|(c, item)| {
                    let v = item
                        .and_then(|i| i.get(c.attr).and_then(Value::as_i64))
                        .unwrap_or(0);
                    (c.clone(), v)
                })
                .collect(),
        ))
    }

    /// One attempt's transaction: the plan's data operations, then the counter advances
    /// (the sequence first), then one change record per change, numbered after the
    /// sequence as read. Losing the race on any counter fails the whole transaction, so the
    /// numbers stay gapless.
    fn assemble<T>(
        &self,
        workspace_id: &str,
        actor_id: &str,
        seq_counter: &CounterRef,
        values: &Counters,
        plan: Plan<T>,
    ) -> AppResult<Attempt<T>> {
        if plan.op_count() > MAX_TRANSACTION_OPS {
            return Err(AppError::validation(
                "body",
                "too many changes for one request",
            ));
        }
        let base = values.get(seq_counter);
        let n_changes = plan.changes.len() as i64;
        let now = self.clock.rfc3339();
        let ttl = self.clock.epoch_secs() + RETENTION_SECS;

        let mut ops: Vec<WriteOp> = Vec::with_capacity(plan.op_count());
        let mut errors: Vec<Option<AppError>> = Vec::new();
        for (op, err) in plan.ops {
            ops.push(op);
            errors.push(err);
        }
        if n_changes > 0 {
            ops.push(counter_op(seq_counter, base, n_changes));
        }
        for (counter, by) in &plan.bumps {
            ops.push(counter_op(counter, values.get(counter), *by));
        }
        let mut seqs = Vec::with_capacity(plan.changes.len());
        let mut records = Vec::with_capacity(plan.changes.len());
        for (i, change) in plan.changes.into_iter().enumerate() {
            let seq = base + 1 + i as i64;
            seqs.push(seq);
            let record = change_record(workspace_id, actor_id, seq, &now, change);
            ops.push(WriteOp::put_new(Table::Main, change_item(&record, ttl)));
            records.push(record);
        }
        Ok(Attempt {
            ops,
            errors,
            seqs,
            records,
            output: plan.output,
        })
    }

    /// Changes after `since`, oldest first. A `since` older than what the log still holds is
    /// `RESYNC_REQUIRED` (the client must reload state); one beyond the head is a 400 on
    /// `since`.
    pub async fn since(
        &self,
        workspace_id: &str,
        since: i64,
        limit: u32,
    ) -> AppResult<(Vec<ChangeRecord>, bool)> {
        let page = self
            .store
            .query(
                &Query::new(Table::Main, log_partition(workspace_id))
                    .sort(SortKey::Gt(seq_sk(since.max(0))))
                    .limit(limit),
            )
            .await?;
        let records: Vec<ChangeRecord> = page
            .items
            .into_iter()
            .map(from_item::<ChangeRecord>)
            .collect::<AppResult<_>>()?;
        match records.first() {
            Some(first) if first.seq > since + 1 => return Err(resync_required(since)),
            Some(_) => {}
            // Nothing after `since`: either nothing happened, or all of it has expired.
            None => {
                let latest = self
                    .store
                    .get(Table::Main, &counter_key(workspace_id))
                    .await?
                    .and_then(|c| c.get(SEQ_ATTR).and_then(Value::as_i64))
                    .unwrap_or(0);
                if latest > since {
                    return Err(resync_required(since));
                }
                // A cursor past the head was never handed out: accepting it would skip
                // every change numbered up to it once they are committed.
                if since > latest {
                    return Err(AppError::validation(
                        "since",
                        format!("is beyond the latest change ({latest}); resync from there"),
                    ));
                }
            }
        }
        Ok((records, page.next_cursor.is_some()))
    }
}

pub fn resync_required(since: i64) -> AppError {
    AppError::new(
        crate::error::ErrorCode::ResyncRequired,
        format!("changes after {since} are no longer retained; reload and resync"),
    )
}

fn change_record(
    workspace_id: &str,
    actor_id: &str,
    seq: i64,
    at: &str,
    change: Change,
) -> ChangeRecord {
    let mut topics = vec![Topic::Workspace(workspace_id.to_owned())];
    topics.extend(change.topics);
    ChangeRecord {
        seq,
        workspace_id: workspace_id.to_owned(),
        event: format!("{}.{}", change.entity_type, change.kind.as_str()),
        audience: Some(change.entity_type.audience(change.subject.as_deref())),
        entity_type: change.entity_type,
        entity_id: change.entity_id,
        kind: change.kind,
        actor_id: actor_id.to_owned(),
        at: at.to_owned(),
        topics,
        data: change.data,
    }
}

/// The stored form of a change record: in the workspace's log partition, ordered by seq,
/// tagged `entity = change` (the DynamoDB Stream filter), expiring by TTL.
fn change_item(record: &ChangeRecord, ttl: u64) -> Item {
    let mut item = to_item(record);
    item.insert("pk".into(), json!(log_partition(&record.workspace_id)));
    item.insert("sk".into(), json!(seq_sk(record.seq)));
    item.insert("entity".into(), json!("change"));
    item.insert("ttl".into(), json!(ttl));
    item
}
