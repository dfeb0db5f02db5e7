//! Fault injection at the storage port, for tests: `FaultyStore` wraps a store and makes
//! chosen calls fail the ways DynamoDB does (throttling, timeouts, answers lost after a
//! commit, transaction conflicts, slowness). Faults are scripted per operation kind or drawn
//! with a probability from a seeded generator, so a test replays the same faults.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{CancelReason, Item, Key, Page, Query, Store, StoreError, StoreResult, Table, WriteOp};

/// The operations of the port, to aim faults at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Get,
    BatchGet,
    Query,
    Transact,
    Increment,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Get,
        OpKind::BatchGet,
        OpKind::Query,
        OpKind::Transact,
        OpKind::Increment,
    ];
}

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Refused before anything happens (ThrottlingException, 5xx): `Unavailable`.
    Throttle,
    /// Waits, then `Unavailable` without applying (a request that never reached the store).
    Timeout(Duration),
    /// Applies the call on the inner store, then reports `Unavailable`: the answer was lost,
    /// the outcome is unknown to the caller.
    Ambiguous,
    /// A transaction cancelled by a conflict with another transaction (reason
    /// `TransactionConflict` on every operation); on other calls, like `Throttle`.
    Conflict,
    /// Waits, then performs the call normally.
    Slow(Duration),
    /// Performs the call, then waits before answering (committed, answer slow: a caller that
    /// gives up meanwhile does not know that it happened).
    SlowAnswer(Duration),
}

#[derive(Default)]
struct Plan {
    scripts: HashMap<OpKind, VecDeque<Option<Fault>>>,
    rates: HashMap<OpKind, (f64, Fault)>,
    injected: HashMap<OpKind, u64>,
    calls: HashMap<OpKind, u64>,
}

/// A store decorator that injects faults (see the module docs).
pub struct FaultyStore<S> {
    inner: S,
    plan: Mutex<Plan>,
    rng: Mutex<StdRng>,
}

impl<S: Store> FaultyStore<S> {
    /// No faults until some are programmed; `seed` fixes the random draws.
    pub fn new(inner: S, seed: u64) -> Self {
        Self {
            inner,
            plan: Mutex::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The next calls of `kind` get these faults in order (`None`: that call passes), before
    /// any random faults apply again.
    pub fn script(&self, kind: OpKind, faults: impl IntoIterator<Item = Option<Fault>>) {
        self.plan
            .lock()
            .unwrap()
            .scripts
            .entry(kind)
            .or_default()
            .extend(faults);
    }

    /// The next `n` calls of `kind` fail with `fault`.
    pub fn fail_next(&self, kind: OpKind, n: usize, fault: Fault) {
        self.script(kind, std::iter::repeat_n(Some(fault), n));
    }

    /// Each unscripted call of `kind` fails with `fault` with this probability (1.0: always).
    pub fn set_rate(&self, kind: OpKind, probability: f64, fault: Fault) {
        self.plan
            .lock()
            .unwrap()
            .rates
            .insert(kind, (probability, fault));
    }

    /// Every call of every kind fails with `fault` (a store that is down).
    pub fn fail_always(&self, fault: Fault) {
        for kind in OpKind::ALL {
            self.set_rate(kind, 1.0, fault);
        }
    }

    /// Removes every scripted and random fault (the counters stay).
    pub fn heal(&self) {
        let mut plan = self.plan.lock().unwrap();
        plan.scripts.clear();
        plan.rates.clear();
    }

    /// Faults injected so far into calls of `kind`.
    pub fn injected(&self, kind: OpKind) -> u64 {
        self.plan
            .lock()
            .unwrap()
            .injected
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }

    /// Calls of `kind` so far (faulty or not).
    pub fn calls(&self, kind: OpKind) -> u64 {
        self.plan
            .lock()
            .unwrap()
            .calls
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }

    fn next_fault(&self, kind: OpKind) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap();
        *plan.calls.entry(kind).or_default() += 1;
        let fault = match plan.scripts.get_mut(&kind).and_then(VecDeque::pop_front) {
            Some(scripted) => scripted,
            None => match plan.rates.get(&kind) {
                Some(&(p, fault)) if self.rng.lock().unwrap().gen_bool(p.clamp(0.0, 1.0)) => {
                    Some(fault)
                }
                _ => None,
            },
        };
        if fault.is_some() {
            *plan.injected.entry(kind).or_default() += 1;
        }
        fault
    }

    /// Runs `call` on the inner store under the next fault of `kind`.
    async fn inject<T, Fut>(&self, kind: OpKind, n_ops: usize, call: Fut) -> StoreResult<T>
    where
        Fut: Future<Output = StoreResult<T>>,
    {
        let Some(fault) = self.next_fault(kind) else {
            return call.await;
        };
        let unavailable = |what: &str| Err(StoreError::Unavailable(format!("injected {what}")));
        match fault {
            Fault::Throttle => unavailable("throttling"),
            Fault::Timeout(after) => {
                tokio::time::sleep(after).await;
                unavailable("timeout")
            }
            Fault::Ambiguous => {
                // The inner store's own answer (even a failure) is lost with the response.
                let _ = call.await;
                unavailable("lost response")
            }
            Fault::Conflict if kind == OpKind::Transact => Err(StoreError::TransactionCanceled {
                reasons: vec![CancelReason::TransactionConflict; n_ops],
            }),
            Fault::Conflict => unavailable("conflict"),
            Fault::Slow(by) => {
                tokio::time::sleep(by).await;
                call.await
            }
            Fault::SlowAnswer(by) => {
                let answer = call.await;
                tokio::time::sleep(by).await;
                answer
            }
        }
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.inject(OpKind::Get, 1, self.inner.get(table, key))
            .await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        self.inject(OpKind::BatchGet, 1, self.inner.batch_get(table, keys))
            .await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.inject(OpKind::Query, 1, self.inner.query(query)).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        let n = ops.len();
        self.inject(OpKind::Transact, n, self.inner.transact(ops))
            .await
    }

    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        self.inject(
            OpKind::Increment,
            1,
            self.inner.increment(table, key, attr, by),
        )
        .await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::embedded::EmbeddedStore;
    use crate::storage::{RetryPolicy, Retrying};
    use serde_json::json;

    fn item(n: i64) -> Item {
        json!({"pk": "P", "sk": format!("S{n}"), "n": n})
            .as_object()
            .unwrap()
            .clone()
    }

    #[tokio::test]
    async fn scripted_faults_come_in_order_then_calls_pass() {
        let store = FaultyStore::new(EmbeddedStore::in_memory(), 1);
        store.script(
            OpKind::Transact,
            [Some(Fault::Throttle), None, Some(Fault::Conflict)],
        );
        let put = |n| store.transact(vec![WriteOp::put(Table::Main, item(n))]);
        assert!(matches!(put(1).await, Err(StoreError::Unavailable(_))));
        put(2).await.unwrap();
        assert!(put(3).await.unwrap_err().is_transient());
        put(4).await.unwrap();
        let got = store
            .batch_get(
                Table::Main,
                &(1..=4)
                    .map(|n| Key::new("P", format!("S{n}")))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        let present: Vec<bool> = got.iter().map(Option::is_some).collect();
        assert_eq!(
            present,
            [false, true, false, true],
            "failed calls applied nothing"
        );
        assert_eq!(store.injected(OpKind::Transact), 2);
        assert_eq!(store.calls(OpKind::Transact), 4);
    }

    #[tokio::test]
    async fn an_ambiguous_fault_applies_and_reports_failure() {
        let store = FaultyStore::new(EmbeddedStore::in_memory(), 1);
        store.fail_next(OpKind::Transact, 1, Fault::Ambiguous);
        let r = store
            .transact(vec![WriteOp::put_new(Table::Main, item(1))])
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))));
        assert!(
            store
                .get(Table::Main, &Key::new("P", "S1"))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn random_faults_are_reproducible_from_the_seed() {
        let pattern = |seed| async move {
            let store = FaultyStore::new(EmbeddedStore::in_memory(), seed);
            store.set_rate(OpKind::Get, 0.5, Fault::Throttle);
            let mut out = Vec::new();
            for _ in 0..40 {
                out.push(store.get(Table::Main, &Key::new("P", "S")).await.is_err());
            }
            out
        };
        let a = pattern(42).await;
        assert_eq!(a, pattern(42).await);
        let failures = a.iter().filter(|f| **f).count();
        assert!((8..=32).contains(&failures), "{failures} of 40");
    }

    #[tokio::test]
    async fn retried_ambiguous_transactions_apply_once_on_the_embedded_store() {
        // The counter advance is conditional, as in the change log: applying the same
        // transaction twice would fail the condition (or, unconditioned, add twice).
        let faulty = std::sync::Arc::new(FaultyStore::new(EmbeddedStore::in_memory(), 3));
        let store = Retrying::new(faulty.clone(), RetryPolicy::default());
        faulty.script(
            OpKind::Transact,
            [
                Some(Fault::Ambiguous),
                Some(Fault::Throttle),
                Some(Fault::Ambiguous),
            ],
        );
        let ops = vec![
            WriteOp::put_new(Table::Main, item(1)),
            WriteOp::Update {
                table: Table::Main,
                key: Key::new("P", "counter"),
                update: crate::storage::Update::default().add("n", 1),
                condition: None,
            },
        ];
        store.transact(ops).await.unwrap();
        let counter = faulty
            .get(Table::Main, &Key::new("P", "counter"))
            .await
            .unwrap();
        assert_eq!(counter.unwrap()["n"], json!(1));
        assert_eq!(faulty.calls(OpKind::Transact), 4);
    }
}
