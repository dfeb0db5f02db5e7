//! The workspace change log and the one way mutations commit.
//!
//! Every mutation writes, in the same transaction as its data, one change record per changed
//! entity into its workspace's log. Numbers come from a per-workspace counter advanced by an
//! atomic add *before* the transaction (`ChangeLog::commit`), so concurrent writers of one
//! workspace never invalidate each other: each owns the numbers it drew. A number whose
//! transaction fails, or whose writer dies, is a hole; it is closed by a *skip* record, put
//! with `attribute_not_exists` by the failing writer or, once the hole is older than
//! `HOLE_GRACE_SECS`, by any reader that meets it. The record and the skip race for the same
//! key, so exactly one of them exists: a writer whose number was skipped under it retries
//! with a new number.
//!
//! Readers (`ChangeLog::since`) walk the log in number order and stop at the first open hole:
//! a reader that has seen N never misses a change committed later with a lower number,
//! because a lower number is either already written (record or skip) or still open, and an
//! open number stops the walk. Records therefore become readable in number order even though
//! their transactions may land in any order (see docs/architecture.md, "Change log").

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
/// How old a hole must be (measured from the `at` of the first record after it) before a
/// reader closes it with a skip record. A writer takes one transaction between drawing its
/// number and writing it (tens of milliseconds on DynamoDB, a few seconds at worst with the
/// retry budget); closing earlier is still safe (that writer retries with a new number) but
/// would make busy readers cost writers retries.
pub const HOLE_GRACE_SECS: i64 = 5;
/// A reader's cursor record must still have this long to live for the records after it to be
/// known not to have expired (records after it were drawn later, so they expire later, give or
/// take one commit's duration).
const ANCHOR_MARGIN_SECS: i64 = 3600;
/// The `entity` of a skip record: not `change`, so the stream filter does not carry it to the
/// broadcaster (there is nothing to deliver).
const SKIP_ENTITY: &str = "change_skip";

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
        self.ops.len() + self.changes.len() + self.bumps.len()
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
/// feeds its in-process broadcaster. A sink hears of every number a commit draws: `drawing`
/// before the draw, then exactly one `drawn` (the numbers, or none if the draw failed or was
/// dropped), then each number settles once, through `committed` or `skipped`. That lets a
/// sink hand records on in `seq` order without making commits wait for each other (the
/// shim's `SeqOrder`): a number lower than one already handed on is either settled or held
/// by a draw the sink knows is running.
pub trait ChangeSink: Send + Sync + 'static {
    /// A commit of `workspace_id` is about to draw numbers.
    fn drawing(&self, _workspace_id: &str) {}
    /// The numbers that draw gave (empty: it failed or was dropped).
    fn drawn(&self, _workspace_id: &str, _seqs: &[i64]) {}
    /// Records of a commit that landed (one commit's, consecutive numbers).
    fn committed(&self, records: Vec<ChangeRecord>);
    /// Drawn numbers that will hold no record (the commit failed or was dropped).
    fn skipped(&self, _workspace_id: &str, _seqs: &[i64]) {}
    /// Sessions ended: their realtime connections must close.
    fn revoked(&self, revocation: Revocation);
}

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

/// A draw of change numbers in progress, as the sink knows it (`ChangeSink::drawing`).
/// Dropped without `drawn` (the draw failed, or the commit was dropped while it ran), it
/// tells the sink the draw gave nothing.
struct Drawing<'a> {
    log: &'a ChangeLog,
    workspace_id: &'a str,
    done: bool,
}

impl<'a> Drawing<'a> {
    fn start(log: &'a ChangeLog, workspace_id: &'a str) -> Self {
        if let Some(sink) = log.sink.get() {
            sink.drawing(workspace_id);
        }
        Self {
            log,
            workspace_id,
            done: false,
        }
    }

    /// The draw gave `seqs`; from here on they are open until the transaction settles them.
    fn drawn(mut self, seqs: &[i64]) -> Drawn {
        self.done = true;
        if let Some(sink) = self.log.sink.get() {
            sink.drawn(self.workspace_id, seqs);
        }
        Drawn {
            open: (!seqs.is_empty()).then(|| {
                (
                    self.log.clone(),
                    self.workspace_id.to_owned(),
                    seqs.to_vec(),
                )
            }),
        }
    }
}

impl Drop for Drawing<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Some(sink) = self.log.sink.get()
        {
            sink.drawn(self.workspace_id, &[]);
        }
    }
}

/// Numbers drawn for a transaction that has not succeeded (yet). Unless `settled`, dropping
/// it closes them with skips from a task of their own: after a failed transaction, and when
/// the commit itself is dropped meanwhile (the shim cancels a request whose client went
/// away), so readers need not wait `HOLE_GRACE_SECS` for them. Should the transaction still
/// land, its records win the race and the skips do nothing. The sink hears of the skip at
/// once, not from the task, so it never waits on a runtime being there.
struct Drawn {
    open: Option<(ChangeLog, String, Vec<i64>)>,
}

impl Drawn {
    /// The transaction succeeded: the numbers hold its records.
    fn settled(mut self) {
        self.open = None;
    }
}

impl Drop for Drawn {
    fn drop(&mut self) {
        let Some((log, ws, seqs)) = self.open.take() else {
            return;
        };
        if let Some(sink) = log.sink.get() {
            sink.skipped(&ws, &seqs);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let at = log.clock.rfc3339();
                log.skip(&ws, &seqs, &at).await;
            });
        }
    }
}

/// Changes after a cursor, as `ChangeLog::since` reads them.
#[derive(Debug)]
pub struct ChangesSince {
    /// Change records in number order (skips left out).
    pub records: Vec<ChangeRecord>,
    /// The cursor for the next read: the last number read, records and skips alike.
    pub last_seq: i64,
    /// More records follow `last_seq` already (the page was full).
    pub has_more: bool,
}

/// One numbered slot of the log: a change record or the skip that closed a hole.
enum Slot {
    Record(ChangeRecord),
    Skip { seq: i64, at: String },
}

impl Slot {
    fn parse(item: Item) -> AppResult<Self> {
        if item.get("entity").and_then(Value::as_str) == Some(SKIP_ENTITY) {
            let seq = item.get(SEQ_ATTR).and_then(Value::as_i64).unwrap_or(0);
            let at = item
                .get("at")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            return Ok(Slot::Skip { seq, at });
        }
        from_item::<ChangeRecord>(item).map(Slot::Record)
    }

    fn seq(&self) -> i64 {
        match self {
            Slot::Record(r) => r.seq,
            Slot::Skip { seq, .. } => *seq,
        }
    }

    fn at(&self) -> &str {
        match self {
            Slot::Record(r) => &r.at,
            Slot::Skip { at, .. } => at,
        }
    }
}

fn epoch_of(at: &str) -> Option<i64> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
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

    /// Draws the next value of a counter that numbers things (a team's issue numbers): one
    /// atomic add, outside any transaction, so concurrent writers never conflict on it. A
    /// value whose commit then fails is never used: numbers are unique and increasing, not
    /// gapless.
    pub async fn draw(&self, counter: &CounterRef) -> AppResult<i64> {
        Ok(self
            .store
            .increment(Table::Main, &counter.key, counter.attr, 1)
            .await?)
    }

    /// Commits what `build` plans, with change records numbered in commit order. `build` may
    /// run more than once (after losing a counter race), so it must not have side effects.
    /// `counters` are read (in one call) before each attempt and advanced conditionally by
    /// the plan's bumps; the change numbers are drawn after `build`, one atomic add per
    /// attempt, so writers of one workspace never race on them.
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
        for attempt in 0..MAX_ATTEMPTS {
            let values = self.read_counters(counters).await?;
            let plan = build(&values)?;
            if plan.op_count() > MAX_TRANSACTION_OPS {
                return Err(AppError::validation(
                    "body",
                    "too many changes for one request",
                ));
            }
            if plan.ops.is_empty() && plan.changes.is_empty() && plan.bumps.is_empty() {
                return Ok(Committed {
                    output: plan.output,
                    seqs: Vec::new(),
                });
            }
            let (last, pending) = match plan.changes.len() as i64 {
                0 => (0, None),
                n => {
                    let drawing = Drawing::start(self, workspace_id);
                    let last = self
                        .store
                        .increment(Table::Main, &counter_key(workspace_id), SEQ_ATTR, n)
                        .await?;
                    let seqs: Vec<i64> = (last - n + 1..=last).collect();
                    (last, Some(drawing.drawn(&seqs)))
                }
            };
            let Attempt {
                ops,
                errors,
                seqs,
                records,
                output,
            } = self.assemble(workspace_id, actor_id, last, &values, plan);
            let data_ops = errors.len();
            let outcome = self.store.transact(ops).await;
            if outcome.is_ok() {
                if let Some(drawn) = pending {
                    drawn.settled();
                }
            } else {
                // Whatever happened, the numbers drawn must not stay open: a reader would
                // wait for them (until HOLE_GRACE_SECS). If the transaction did land after
                // all (an answer lost), its records win the race and the skips do nothing.
                // Closed from a task of their own, so a writer that lost a race retries at
                // once (on a frozen Lambda the task may not run: readers close the numbers).
                drop(pending);
            }
            match outcome {
                Ok(()) => {
                    if let Some(sink) = self.sink.get()
                        && !records.is_empty()
                    {
                        sink.committed(records);
                    }
                    return Ok(Committed { output, seqs });
                }
                Err(StoreError::TransactionCanceled { reasons }) => {
                    // A failed data condition is the caller's answer, whatever else failed.
                    if let Some(i) = reasons
                        .iter()
                        .take(data_ops)
                        .position(|r| *r != crate::storage::CancelReason::None)
                    {
                        return Err(errors[i].clone().unwrap_or_else(|| {
                            AppError::conflict("the resource was changed concurrently; retry")
                        }));
                    }
                    // Otherwise a counter moved under us, or a reader closed one of our
                    // numbers as a hole: draw again.
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

    /// The plan's counters, in one read, as they are now (no call when there are none).
    async fn read_counters(&self, counters: &[CounterRef]) -> AppResult<Counters> {
        if counters.is_empty() {
            return Ok(Counters::default());
        }
        let keys: Vec<Key> = counters.iter().map(|c| c.key.clone()).collect();
        let items = self.store.batch_get(Table::Main, &keys).await?;
        Ok(Counters(
            counters
                .iter()
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

    /// One attempt's transaction: the plan's data operations, then the counter advances,
    /// then one change record per change, numbered up to `last` (the drawn numbers), each put
    /// only if its number is still free.
    fn assemble<T>(
        &self,
        workspace_id: &str,
        actor_id: &str,
        last: i64,
        values: &Counters,
        plan: Plan<T>,
    ) -> Attempt<T> {
        let n_changes = plan.changes.len() as i64;
        let base = last - n_changes;
        let now = self.clock.rfc3339();
        let ttl = self.clock.epoch_secs() + RETENTION_SECS;

        let mut ops: Vec<WriteOp> = Vec::with_capacity(plan.op_count());
        let mut errors: Vec<Option<AppError>> = Vec::new();
        for (op, err) in plan.ops {
            ops.push(op);
            errors.push(err);
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
        Attempt {
            ops,
            errors,
            seqs,
            records,
            output: plan.output,
        }
    }

    /// Closes numbers with skip records, each only if its number is still free (so a record
    /// that landed keeps its place). Best effort: a number left open is closed by the next
    /// reader that meets it after `HOLE_GRACE_SECS`. `at` dates the skips as the slot they
    /// fill (see `since`: a skip must not look younger than the records around it).
    async fn skip(&self, workspace_id: &str, seqs: &[i64], at: &str) {
        let Some(ttl) = epoch_of(at).map(|t| t.max(0) as u64 + RETENTION_SECS) else {
            return;
        };
        let puts = seqs.iter().map(|&seq| {
            let item = skip_item(workspace_id, seq, at, ttl);
            async move {
                match self
                    .store
                    .transact(vec![WriteOp::put_new(Table::Main, item)])
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_condition_failure() => {}
                    Err(e) => tracing::warn!(
                        workspace_id,
                        seq,
                        error = %e,
                        "could not close a change number; readers will close it"
                    ),
                }
            }
        });
        futures::future::join_all(puts).await;
    }

    /// Changes after `since`, oldest first, up to the first number still open (a writer may
    /// yet fill it). Holes older than `HOLE_GRACE_SECS` are closed on the way. A `since` older
    /// than what the log still holds is `RESYNC_REQUIRED` (the client must reload state); one
    /// beyond the last number drawn is a 400 on `since`.
    pub async fn since(
        &self,
        workspace_id: &str,
        since: i64,
        limit: u32,
    ) -> AppResult<ChangesSince> {
        let since = since.max(0);
        // Each round closes at most `MAX_SKIPS_PER_ROUND` numbers of one run of old holes,
        // then reads on from there (the page's room is what the earlier rounds left); the last
        // round only reads, so a reader meeting a very long run (many writers that died at
        // once) gets what precedes it and comes back.
        const ROUNDS: usize = 8;
        const MAX_SKIPS_PER_ROUND: i64 = 100;
        let mut out = ChangesSince {
            records: Vec::new(),
            last_seq: since,
            has_more: false,
        };
        for round in 0..ROUNDS {
            let read = u32::try_from(out.last_seq - since).unwrap_or(u32::MAX);
            let room = limit.saturating_sub(read);
            if room == 0 {
                out.has_more = true;
                return Ok(out);
            }
            let page = self
                .store
                .query(
                    &Query::new(Table::Main, log_partition(workspace_id))
                        .sort(SortKey::Gt(seq_sk(out.last_seq)))
                        .limit(room),
                )
                .await?;
            let full = page.next_cursor.is_some();
            let slots = page
                .items
                .into_iter()
                .map(Slot::parse)
                .collect::<AppResult<Vec<_>>>()?;
            let nothing_after = slots.is_empty() && out.last_seq == since;
            let mut hole = None;
            for slot in slots {
                if slot.seq() != out.last_seq + 1 {
                    hole = Some((out.last_seq + 1, slot.seq(), slot.at().to_owned()));
                    break;
                }
                out.last_seq = slot.seq();
                if let Slot::Record(r) = slot {
                    out.records.push(r);
                }
            }
            let Some((from, to, next_at)) = hole else {
                if nothing_after {
                    self.check_head(workspace_id, since).await?;
                }
                out.has_more = full;
                return Ok(out);
            };
            if out.last_seq == since && !self.anchored(workspace_id, since).await? {
                return Err(resync_required(since));
            }
            let age = epoch_of(&next_at).map(|t| self.clock.now().unix_timestamp() - t);
            if age.is_none_or(|age| age < HOLE_GRACE_SECS) || round + 1 == ROUNDS {
                // A writer may still be filling it: stop before it.
                return Ok(out);
            }
            let seqs: Vec<i64> = (from..to.min(from + MAX_SKIPS_PER_ROUND)).collect();
            self.skip(workspace_id, &seqs, &next_at).await;
        }
        unreachable!("the last round returns")
    }

    /// With nothing after `since`: a cursor beyond the last number drawn was never handed
    /// out, and numbers drawn but not yet written are either in flight (fine: nothing to
    /// read yet) or expired (the cursor is too old).
    async fn check_head(&self, workspace_id: &str, since: i64) -> AppResult<()> {
        let latest = self
            .store
            .get(Table::Main, &counter_key(workspace_id))
            .await?
            .and_then(|c| c.get(SEQ_ATTR).and_then(Value::as_i64))
            .unwrap_or(0);
        // Accepting a cursor past the head would skip every change numbered up to it once
        // they are committed.
        if since > latest {
            return Err(AppError::validation(
                "since",
                format!("is beyond the latest change ({latest}); resync from there"),
            ));
        }
        if latest > since && !self.anchored(workspace_id, since).await? {
            return Err(resync_required(since));
        }
        Ok(())
    }

    /// Whether the log still holds what follows `since`: the slot at `since` exists and is
    /// far from expiry (slots after it were drawn later and expire later). For 0 (from the
    /// start), the workspace itself must be young enough that nothing of its log expired.
    async fn anchored(&self, workspace_id: &str, since: i64) -> AppResult<bool> {
        let (key, field) = if since == 0 {
            (crate::kernel::keys::workspace(workspace_id), "created_at")
        } else {
            (Key::new(log_partition(workspace_id), seq_sk(since)), "at")
        };
        let Some(item) = self.store.get(Table::Main, &key).await? else {
            return Ok(false);
        };
        let at = item.get(field).and_then(Value::as_str).and_then(epoch_of);
        Ok(at.is_some_and(|t| {
            t + RETENTION_SECS as i64 > self.clock.now().unix_timestamp() + ANCHOR_MARGIN_SECS
        }))
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

/// The stored form of a skip: the number is taken and holds nothing. Dated like the slot it
/// fills, so that it expires with its neighbours.
fn skip_item(workspace_id: &str, seq: i64, at: &str, ttl: u64) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), json!(log_partition(workspace_id)));
    item.insert("sk".into(), json!(seq_sk(seq)));
    item.insert("entity".into(), json!(SKIP_ENTITY));
    item.insert(SEQ_ATTR.into(), json!(seq));
    item.insert("at".into(), json!(at));
    item.insert("ttl".into(), json!(ttl));
    item
}
