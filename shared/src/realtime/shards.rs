//! Sharded fan-out: a record with more subscribers than one shard holds is split into
//! shards (the record plus a slice of its targets) delivered in parallel. The hand-off is a
//! small port, `ShardQueue`: in the shim and in tests `InProcessShards` runs every shard at
//! once in this process; on AWS the stream broadcaster puts each shard on an SQS FIFO queue
//! and the fan-out worker Lambda delivers it. Either way a shard is delivered by
//! `ShardWorker::deliver`, which applies the visibility rule on what is stored then.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::AppResult;
use crate::kernel::changes::ChangeRecord;
use crate::kernel::topic::Topic;
use crate::realtime::broadcaster::{Delivery, ShardWorker};
use crate::realtime::connections::Subscription;

/// One subscriber of a record: who it is (checked again by the worker) and the topic the
/// event is delivered on. Nothing here grants anything: the worker reads the session and
/// membership itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub connection_id: String,
    pub user_id: String,
    pub session_id: String,
    pub topic: Topic,
    /// The connection's `last_seen` as the subscription carried it (epoch seconds).
    pub last_seen: u64,
}

impl Target {
    pub fn new(sub: &Subscription, topic: &Topic) -> Self {
        Self {
            connection_id: sub.connection_id.clone(),
            user_id: sub.user_id.clone(),
            session_id: sub.session_id.clone(),
            topic: topic.clone(),
            last_seen: sub.last_seen(),
        }
    }
}

/// A record and some of its targets: the unit of parallel delivery (one SQS message).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub record: ChangeRecord,
    /// Which slice of the audience this is: `{bucket}/{buckets}`. A connection lands in the
    /// same bucket for every record while the audience stays within the same power of two
    /// of shards, so on a FIFO queue (message group = workspace + group) its events keep
    /// their order.
    pub group: String,
    pub targets: Vec<Target>,
}

impl Shard {
    /// The whole audience in one shard (delivered inline).
    pub fn whole(record: ChangeRecord, targets: Vec<Target>) -> Self {
        Self {
            record,
            group: "0/1".into(),
            targets,
        }
    }

    /// Splits targets into about `targets / shard_size` shards (a power of two of buckets,
    /// empty ones dropped), each connection's bucket chosen by a stable hash of its id.
    pub fn split(record: &ChangeRecord, targets: Vec<Target>, shard_size: usize) -> Vec<Shard> {
        let buckets = targets
            .len()
            .div_ceil(shard_size.max(1))
            .next_power_of_two()
            .max(1);
        let mut slices: Vec<Vec<Target>> = vec![Vec::new(); buckets];
        for target in targets {
            let bucket = (fnv1a(target.connection_id.as_bytes()) % buckets as u64) as usize;
            slices[bucket].push(target);
        }
        slices
            .into_iter()
            .enumerate()
            .filter(|(_, targets)| !targets.is_empty())
            .map(|(bucket, targets)| Shard {
                record: record.clone(),
                group: format!("{bucket}/{buckets}"),
                targets,
            })
            .collect()
    }
}

/// FNV-1a: a hash that is the same in every process and every release (the standard
/// library's is not promised to be), so buckets do not move between Lambda instances.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where the shards of a large fan-out go.
#[async_trait]
pub trait ShardQueue: Send + Sync + 'static {
    /// Hands over the shards of one record. An in-process queue delivers them with `worker`
    /// and returns what it did; a remote one returns once they are queued (`queued` counts
    /// their targets). An error means some shard was not handed over.
    async fn dispatch(&self, shards: Vec<Shard>, worker: &ShardWorker) -> AppResult<Delivery>;
}

/// Delivers every shard at once in this process (the shim, tests, and the simulation of
/// `bench ws-sharded`, where each shard stands for one worker Lambda).
pub struct InProcessShards;

#[async_trait]
impl ShardQueue for InProcessShards {
    async fn dispatch(&self, shards: Vec<Shard>, worker: &ShardWorker) -> AppResult<Delivery> {
        let results = futures::future::join_all(shards.iter().map(|s| worker.deliver(s))).await;
        let mut total = Delivery::default();
        for r in results {
            total.add(&r?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::access::EntityType;
    use crate::kernel::changes::ChangeKind;

    const WS: &str = "0190b1c2-7d3e-7a4b-8c5d-6e7f8a9b0c1d";

    fn record() -> ChangeRecord {
        serde_json::from_value(serde_json::json!({
            "seq": 1, "workspace_id": WS, "event": "workspace.updated",
            "entity_type": "workspace", "entity_id": WS, "kind": "updated",
            "actor_id": "usr_1", "at": "2026-01-01T00:00:00Z", "topics": [], "data": {},
        }))
        .expect("a change record")
    }

    fn target(i: usize) -> Target {
        Target {
            connection_id: format!("conn{i}="),
            user_id: "usr_1".into(),
            session_id: "ses_1".into(),
            topic: Topic::Workspace(WS.into()),
            last_seen: 0,
        }
    }

    #[test]
    fn split_keeps_every_target_once_in_stable_buckets() {
        let r = record();
        assert_eq!(r.entity_type, EntityType::Workspace);
        assert_eq!(r.kind, ChangeKind::Updated);
        let targets: Vec<Target> = (0..10_000).map(target).collect();
        let shards = Shard::split(&r, targets.clone(), 500);
        // 10,000 / 500 = 20, rounded up to 32 buckets.
        assert!(shards.len() > 16 && shards.len() <= 32, "{}", shards.len());
        let mut all: Vec<&Target> = shards.iter().flat_map(|s| &s.targets).collect();
        all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        all.dedup();
        assert_eq!(all.len(), targets.len(), "every target exactly once");
        // No shard is far above the size asked for (hash balance).
        assert!(shards.iter().all(|s| s.targets.len() <= 500), "balanced");
        // The same connection lands in the same group for the next record.
        let again = Shard::split(&r, targets, 500);
        let group_of = |shards: &[Shard], id: &str| {
            shards
                .iter()
                .find(|s| s.targets.iter().any(|t| t.connection_id == id))
                .map(|s| s.group.clone())
        };
        for id in ["conn0=", "conn4711=", "conn9999="] {
            assert_eq!(group_of(&shards, id), group_of(&again, id));
        }
    }

    #[test]
    fn shards_round_trip_through_json() {
        let shard = Shard::split(&record(), (0..3).map(target).collect(), 1)
            .pop()
            .unwrap();
        let json = serde_json::to_string(&shard).unwrap();
        assert_eq!(serde_json::from_str::<Shard>(&json).unwrap(), shard);
    }
}
