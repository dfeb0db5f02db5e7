//! Retries of transient storage failures, with one policy and one time budget per request.
//!
//! `Retrying` retries what the port reports as temporary (`Unavailable`: throttling,
//! timeouts, 5xx, and transactions cancelled only by a conflict with another transaction)
//! with full-jitter exponential backoff. Every retry loop stops at the request's deadline:
//! API Gateway cuts an integration off at 29 s, and an answer that arrives after that is
//! lost, so a request must rather fail with 503 + `Retry-After` in time (see
//! `docs/conventions.md`, "Faults and retries").
//!
//! A transaction that timed out may have committed. Its retry carries the same
//! `TransactionToken` (DynamoDB's `ClientRequestToken`; the embedded store keeps the same
//! promise), so the store applies it at most once.

use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;

use super::{CancelReason, Item, Key, Page, Query, Store, StoreError, StoreResult, Table, WriteOp};

/// How long a request may spend before it answers 503. API Gateway's integration timeout is
/// 29 s; 20 s leaves room for a Lambda cold start, work outside storage and the response,
/// so the client hears "retry later" instead of a gateway 504 with an unknown outcome.
pub const DEFAULT_REQUEST_BUDGET: Duration = Duration::from_secs(20);

/// How DynamoDB (and the embedded store) long remember a transaction's token.
pub const TOKEN_WINDOW: Duration = Duration::from_secs(600);

/// Backoff and limits of one retry loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first backoff; each further retry doubles it.
    pub base_delay: Duration,
    /// Largest ceiling of one backoff.
    pub max_delay: Duration,
    /// Attempts including the first.
    pub max_attempts: u32,
    /// Time budget of a request when no `RequestDeadline` scope says otherwise.
    pub request_budget: Duration,
}

impl Default for RetryPolicy {
    /// Storage: 25 ms doubling to at most 1 s, 8 attempts (at most ~2.6 s of sleeping in
    /// the worst case, well inside the budget, so the budget only bites on slow calls).
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(1),
            max_attempts: 8,
            request_budget: DEFAULT_REQUEST_BUDGET,
        }
    }
}

impl RetryPolicy {
    /// The default policy with another request budget.
    pub fn with_budget(request_budget: Duration) -> Self {
        Self {
            request_budget,
            ..Self::default()
        }
    }

    /// Posts to WebSocket connections: fewer, slower retries (the gateway throttles per
    /// account) within 5 s per post, since an event that late is still worth delivering.
    pub fn gateway() -> Self {
        Self {
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(800),
            max_attempts: 6,
            request_budget: Duration::from_secs(5),
        }
    }

    /// The largest backoff after the `retry`-th failure (0-based): `base * 2^retry`, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_delay)
    }

    /// Full jitter: uniform in `[0, ceiling]`, so clients throttled together do not retry
    /// together (AWS architecture blog, "Exponential Backoff And Jitter").
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry).as_micros() as u64;
        Duration::from_micros(rng.gen_range(0..=ceiling))
    }

    /// Runs `call` until it succeeds, fails for good, runs out of attempts or would pass the
    /// deadline (`RequestDeadline`, else `request_budget` from now). `retryable` picks the
    /// errors worth another attempt; an attempt still running at the deadline is abandoned.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut call: F,
        retryable: impl Fn(&E) -> bool,
        exhausted: impl Fn(String) -> E,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = RequestDeadline::deadline(self.request_budget);
        let mut failures = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(exhausted("request budget exhausted".into()));
            }
            let err = match tokio::time::timeout(remaining, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if retryable(&e) => e,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(exhausted(
                        "request budget exhausted during a slow call".into(),
                    ));
                }
            };
            failures += 1;
            if failures >= self.max_attempts {
                return Err(exhausted(format!(
                    "{err} (gave up after {failures} attempts)"
                )));
            }
            let delay = self.backoff(failures - 1, &mut rand::thread_rng());
            if Instant::now() + delay >= deadline {
                return Err(exhausted(format!(
                    "{err} (request budget exhausted after {failures} attempts)"
                )));
            }
            tracing::debug!(error = %err, attempt = failures, ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[derive(Clone, Copy)]
struct DeadlineScope {
    started: Instant,
    budget: Option<Duration>,
}

tokio::task_local! {
    static DEADLINE: DeadlineScope;
}

/// The time budget of the request a task works for.
pub struct RequestDeadline;

impl RequestDeadline {
    /// Runs `fut` with a deadline `budget` from now.
    pub async fn scope<F: Future>(budget: Duration, fut: F) -> F::Output {
        let scope = DeadlineScope {
            started: Instant::now(),
            budget: Some(budget),
        };
        DEADLINE.scope(scope, fut).await
    }

    /// Runs `fut` as one request starting now; its budget is the one of the retry policy
    /// (configured with the store, `MOMENTUM_REQUEST_BUDGET_MS`), so the HTTP layer needs no
    /// configuration of its own.
    pub async fn begin<F: Future>(fut: F) -> F::Output {
        let scope = DeadlineScope {
            started: Instant::now(),
            budget: None,
        };
        DEADLINE.scope(scope, fut).await
    }

    /// The current request's deadline; outside a request, `default_budget` from now.
    pub fn deadline(default_budget: Duration) -> Instant {
        DEADLINE
            .try_with(|s| s.started + s.budget.unwrap_or(default_budget))
            .unwrap_or_else(|_| Instant::now() + default_budget)
    }
}

tokio::task_local! {
    static TOKEN: String;
}

/// The idempotency token of one logical transaction, shared by all of its attempts. The
/// adapters read it: DynamoDB as `ClientRequestToken`, the embedded store from its own
/// token log; both answer a repeat of a committed token with success and write nothing.
pub struct TransactionToken;

impl TransactionToken {
    pub async fn scope<F: Future>(token: String, fut: F) -> F::Output {
        TOKEN.scope(token, fut).await
    }

    pub fn current() -> Option<String> {
        TOKEN.try_with(Clone::clone).ok()
    }

    /// A fresh token (36 characters, DynamoDB's maximum).
    pub fn fresh() -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

impl StoreError {
    /// Worth another attempt: temporarily unavailable, or a transaction cancelled only
    /// because it collided with another one (none of its conditions failed).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::TransactionCanceled { reasons } => {
                reasons.contains(&CancelReason::TransactionConflict)
                    && !reasons.contains(&CancelReason::ConditionalCheckFailed)
            }
            _ => false,
        }
    }
}

/// A store decorator that retries transient failures (see the module docs).
pub struct Retrying<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: Store> Retrying<S> {
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Giving up on a transient failure is `Unavailable` (503 + `Retry-After`), also for a
    /// conflict that never resolved: the client should retry later, it did nothing wrong.
    async fn run<T, F, Fut>(&self, call: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let result = self
            .policy
            .run(call, StoreError::is_transient, StoreError::Unavailable)
            .await;
        if let Err(e) = &result
            && e.is_transient()
        {
            tracing::warn!(error = %e, "storage unavailable after retries");
            if !matches!(e, StoreError::Unavailable(_)) {
                return Err(StoreError::Unavailable(e.to_string()));
            }
        }
        result
    }
}

#[async_trait]
impl<S: Store> Store for Retrying<S> {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        self.run(|| self.inner.get(table, key)).await
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        self.run(|| self.inner.batch_get(table, keys)).await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.run(|| self.inner.query(query)).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        // One token for every attempt: an attempt that committed but whose answer was lost
        // makes the next attempt a no-op instead of a second application.
        let token = TransactionToken::current().unwrap_or_else(TransactionToken::fresh);
        self.run(|| TransactionToken::scope(token.clone(), self.inner.transact(ops.clone())))
            .await
    }

    /// Not token-protected (DynamoDB's UpdateItem has no client token): an ambiguous failure
    /// may add twice. No production path counts with it; numbering uses conditional
    /// counters inside transactions.
    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        self.run(|| self.inner.increment(table, key, attr, by))
            .await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.inner.flush().await
    }
}

/// Repeats a batch call on what it left unprocessed (DynamoDB's `UnprocessedKeys` of
/// BatchGetItem) until nothing is left, with jittered backoff between rounds (AWS asks for
/// it: unprocessed keys mean the table is throttled) and within the request's deadline.
/// `send` returns this round's results and the remainder, if any.
pub async fn drain<R, T, F, Fut>(policy: &RetryPolicy, first: R, mut send: F) -> StoreResult<Vec<T>>
where
    F: FnMut(R) -> Fut,
    Fut: Future<Output = StoreResult<(Vec<T>, Option<R>)>>,
{
    let deadline = RequestDeadline::deadline(policy.request_budget);
    let mut results = Vec::new();
    let mut pending = first;
    let mut round = 0u32;
    loop {
        let (got, rest) = send(pending).await?;
        results.extend(got);
        let Some(rest) = rest else {
            return Ok(results);
        };
        round += 1;
        if round >= policy.max_attempts {
            return Err(StoreError::Unavailable(format!(
                "unprocessed items remain after {round} rounds"
            )));
        }
        let delay = policy.backoff(round - 1, &mut rand::thread_rng());
        if Instant::now() + delay >= deadline {
            return Err(StoreError::Unavailable(
                "unprocessed items remain at the request deadline".into(),
            ));
        }
        tokio::time::sleep(delay).await;
        pending = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_stays_under_a_doubling_capped_ceiling_and_is_jittered() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(0), Duration::from_millis(25));
        assert_eq!(p.ceiling(1), Duration::from_millis(50));
        assert_eq!(p.ceiling(5), Duration::from_millis(800));
        assert_eq!(p.ceiling(6), Duration::from_secs(1));
        assert_eq!(p.ceiling(40), Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 0..10 {
            let samples: Vec<Duration> = (0..200).map(|_| p.backoff(retry, &mut rng)).collect();
            assert!(samples.iter().all(|d| *d <= p.ceiling(retry)));
            let distinct: std::collections::HashSet<_> = samples.iter().collect();
            assert!(distinct.len() > 100, "jitter spreads the delays");
            // Full jitter: some delays in the lower and some in the upper half.
            let half = p.ceiling(retry) / 2;
            assert!(samples.iter().any(|d| *d < half) && samples.iter().any(|d| *d > half));
        }
    }

    #[test]
    fn the_worst_case_sleep_of_the_storage_policy_fits_the_budget() {
        let p = RetryPolicy::default();
        let worst: Duration = (0..p.max_attempts - 1).map(|r| p.ceiling(r)).sum();
        assert!(worst < p.request_budget / 4, "{worst:?}");
        assert!(DEFAULT_REQUEST_BUDGET < Duration::from_secs(29));
    }

    /// A store whose calls fail `fail_first` times with `error`, then succeed.
    fn flaky(
        fail_first: u32,
        error: fn() -> StoreError,
    ) -> (
        Arc<AtomicU32>,
        impl FnMut() -> std::future::Ready<StoreResult<u32>>,
    ) {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let call = move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(if n <= fail_first { Err(error()) } else { Ok(n) })
        };
        (calls, call)
    }

    async fn store_run<F, Fut>(p: RetryPolicy, call: F) -> StoreResult<u32>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<u32>>,
    {
        p.run(call, StoreError::is_transient, StoreError::Unavailable)
            .await
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let (calls, call) = flaky(3, || StoreError::Unavailable("throttled".into()));
        assert_eq!(store_run(RetryPolicy::default(), call).await.unwrap(), 4);
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let (calls, call) = flaky(2, || StoreError::TransactionCanceled {
            reasons: vec![CancelReason::None, CancelReason::TransactionConflict],
        });
        assert_eq!(store_run(RetryPolicy::default(), call).await.unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let (calls, call) = flaky(1, || StoreError::TransactionCanceled {
            reasons: vec![
                CancelReason::ConditionalCheckFailed,
                CancelReason::TransactionConflict,
            ],
        });
        assert!(
            store_run(RetryPolicy::default(), call)
                .await
                .unwrap_err()
                .is_condition_failure()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let (calls, call) = flaky(100, || StoreError::Unavailable("throttled".into()));
        let err = store_run(RetryPolicy::default(), call).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(m) if m.contains("gave up after 8")));
        assert_eq!(calls.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn the_deadline_stops_retries_and_slow_calls() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(200),
            max_attempts: 1000,
            request_budget: DEFAULT_REQUEST_BUDGET,
        };
        let started = Instant::now();
        let (calls, call) = flaky(u32::MAX, || StoreError::Unavailable("throttled".into()));
        let err = RequestDeadline::scope(Duration::from_millis(600), store_run(policy, call))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        // Never sleeps past the deadline: done before it, after a few attempts.
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
        assert!(calls.load(Ordering::SeqCst) >= 2);

        // A call still running at the deadline is abandoned there.
        let started = Instant::now();
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(1)
        };
        let err = RequestDeadline::scope(Duration::from_millis(300), store_run(policy, slow))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_budget_of_the_policy_applies_to_a_request_begun_without_one() {
        let policy = RetryPolicy {
            request_budget: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(1)
        };
        let started = Instant::now();
        assert!(
            RequestDeadline::begin(store_run(policy, slow))
                .await
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn drain_repeats_the_unprocessed_remainder_until_done() {
        // A fake BatchGetItem that processes at most two keys per round.
        let rounds = Arc::new(AtomicU32::new(0));
        let r = rounds.clone();
        let keys: Vec<u32> = (0..7).collect();
        let got = drain(
            &RetryPolicy::default(),
            keys,
            move |mut pending: Vec<u32>| {
                r.fetch_add(1, Ordering::SeqCst);
                let rest = pending.split_off(pending.len().min(2));
                async move { Ok((pending, (!rest.is_empty()).then_some(rest))) }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, (0..7).collect::<Vec<_>>());
        assert_eq!(rounds.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn drain_gives_up_when_keys_stay_unprocessed() {
        let rounds = Arc::new(AtomicU32::new(0));
        let r = rounds.clone();
        let err = drain(
            &RetryPolicy::default(),
            vec![1u32],
            move |pending: Vec<u32>| {
                r.fetch_add(1, Ordering::SeqCst);
                async move { Ok((Vec::<u32>::new(), Some(pending))) }
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            RetryPolicy::default().max_attempts
        );

        // And at the deadline, whichever comes first.
        let started = Instant::now();
        let slow = RetryPolicy {
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(300),
            max_attempts: 1000,
            request_budget: Duration::from_millis(500),
        };
        let err = drain(&slow, vec![1u32], |pending: Vec<u32>| async move {
            Ok((Vec::<u32>::new(), Some(pending)))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn every_attempt_of_one_transaction_carries_the_same_token() {
        struct Tokens(std::sync::Mutex<Vec<Option<String>>>);
        #[async_trait]
        impl Store for Tokens {
            async fn get(&self, _: Table, _: &Key) -> StoreResult<Option<Item>> {
                unreachable!()
            }
            async fn batch_get(&self, _: Table, _: &[Key]) -> StoreResult<Vec<Option<Item>>> {
                unreachable!()
            }
            async fn query(&self, _: &Query) -> StoreResult<Page> {
                unreachable!()
            }
            async fn transact(&self, _: Vec<WriteOp>) -> StoreResult<()> {
                let mut seen = self.0.lock().unwrap();
                seen.push(TransactionToken::current());
                if seen.len().is_multiple_of(3) {
                    Ok(())
                } else {
                    Err(StoreError::Unavailable("timeout".into()))
                }
            }
            async fn increment(&self, _: Table, _: &Key, _: &str, _: i64) -> StoreResult<i64> {
                unreachable!()
            }
        }
        let store = Retrying::new(Tokens(Default::default()), RetryPolicy::default());
        let op = || vec![WriteOp::put(Table::Main, Item::new())];
        store.transact(op()).await.unwrap();
        store.transact(op()).await.unwrap();
        let seen = store.inner.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 6);
        assert!(seen.iter().all(Option::is_some));
        assert!(seen[0] == seen[1] && seen[1] == seen[2]);
        assert!(seen[3] == seen[4] && seen[4] == seen[5]);
        assert_ne!(
            seen[0], seen[3],
            "a new logical transaction gets a new token"
        );
    }
}
