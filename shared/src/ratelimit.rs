//! Rate limiting, enforced across every instance through the store.
//!
//! A limit is a rate (`burst` requests at once, refilled at `per_minute`) per key: a client
//! IP, an account, an API token, a WebSocket connection. Each check runs two stages:
//!
//! 1. **Local filter**: an in-process token bucket per key (the original Momentum service's
//!    algorithm). It only ever sees a subset of the key's requests, so when it refuses, the
//!    global limit would refuse too: the request is answered 429 without a storage call.
//! 2. **Global check**: GCRA on one item per key in the connections table (`RL#<limit>#<key>`,
//!    holding the theoretical arrival time `tat` and a `ttl`), read and then advanced with a
//!    conditional put (`tat` unchanged since the read, or no item yet); a lost race re-reads
//!    and tries again. A request the global check refuses gives its local token back, so the
//!    local bucket never runs ahead of the global state.
//!
//! When the store cannot answer, each limit fails the way `Limit::on_store_failure` says:
//! authentication limits fail closed (503: they guard passwords, and the request would need
//! the store anyway); WebSocket limits fail open to the local bucket (the per-instance limit
//! of before still holds). `docs/architecture.md` ("Rate limits") has the reasoning.
//!
//! The policy (which limits guard which action) is `RateLimits`; REST handlers, the WebSocket
//! handshake and the WebSocket command path all call it, so they cannot disagree.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sha2::Digest;

use crate::clock::Clock;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::storage::schema::{PK, SK, TTL};
use crate::storage::{Condition, Item, Key, Store, StoreError, StoreResult, Table, WriteOp};

/// One limit: a bucket of `burst` tokens refilled at `per_minute` tokens a minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

impl Rate {
    pub const fn new(burst: u32, per_minute: u32) -> Self {
        Self { burst, per_minute }
    }

    /// Parses `"<burst>,<per_minute>"` (e.g. `"20,10"`) or `"off"`.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (burst, per_minute) = s
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: use \"<burst>,<per_minute>\" or \"off\""))?;
        let burst: u32 = burst
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: burst is not a number"))?;
        let per_minute: u32 = per_minute
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: per_minute is not a number"))?;
        if burst == 0 || per_minute == 0 {
            return Err(format!("{s:?}: burst and per_minute must be > 0"));
        }
        Ok(Some(Self::new(burst, per_minute)))
    }

    fn per_sec(self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }
}

/// Limits from configuration; `None` turns one off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Login, register and refresh requests per client IP.
    pub auth_ip: Option<Rate>,
    /// Login attempts per account (email), registrations per email, refreshes per user.
    pub auth_user: Option<Rate>,
    /// WebSocket handshakes (`$connect`) per client IP.
    pub ws_connect: Option<Rate>,
    /// WebSocket commands per connection.
    pub ws_command: Option<Rate>,
    /// REST requests per API token.
    pub api_token: Option<Rate>,
    /// Direct messages (`/ws/send`, `/ws/broadcast`) per sending user.
    pub direct_message: Option<Rate>,
    /// Local (first-filter) buckets kept per limit before idle ones are evicted.
    pub max_keys: usize,
}

pub const DEFAULT_AUTH_IP: Rate = Rate::new(30, 30);
pub const DEFAULT_AUTH_USER: Rate = Rate::new(10, 5);
pub const DEFAULT_WS_CONNECT: Rate = Rate::new(30, 60);
pub const DEFAULT_WS_COMMAND: Rate = Rate::new(60, 600);
pub const DEFAULT_API_TOKEN: Rate = Rate::new(120, 600);
/// A burst of 20 messages, then one every 2 s: a chat pace, not a flood.
pub const DEFAULT_DIRECT_MESSAGE: Rate = Rate::new(20, 30);
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            auth_ip: Some(DEFAULT_AUTH_IP),
            auth_user: Some(DEFAULT_AUTH_USER),
            ws_connect: Some(DEFAULT_WS_CONNECT),
            ws_command: Some(DEFAULT_WS_COMMAND),
            api_token: Some(DEFAULT_API_TOKEN),
            direct_message: Some(DEFAULT_DIRECT_MESSAGE),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl RateLimitConfig {
    /// Every limit off (tests that log in hundreds of times from one address).
    pub fn off() -> Self {
        Self {
            auth_ip: None,
            auth_user: None,
            ws_connect: None,
            ws_command: None,
            api_token: None,
            direct_message: None,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

/// Takes a token from a key's bucket.
pub trait RateLimiter: Send + Sync {
    /// `Ok` when a token was taken, else `Err(seconds to wait)` (at least 1) until one is
    /// available. A refused call takes nothing.
    fn acquire(&self, key: &str) -> Result<(), u64>;
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    /// Nanoseconds since the epoch of the last refill.
    updated: i128,
}

/// Token buckets in memory, refilled by the injected clock.
pub struct TokenBucketLimiter {
    rate: Rate,
    max_keys: usize,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBucketLimiter {
    pub fn new(rate: Rate, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Buckets currently held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refilled(&self, bucket: Bucket, now: i128) -> f64 {
        let elapsed = (now - bucket.updated).max(0) as f64 / 1e9;
        (bucket.tokens + elapsed * self.rate.per_sec()).min(f64::from(self.rate.burst))
    }

    /// Gives back the token a call took (the global check refused what this bucket
    /// admitted, so nothing was spent).
    pub fn refund(&self, key: &str) {
        let burst = f64::from(self.rate.burst);
        if let Some(b) = self.lock().get_mut(key) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    /// Makes room for one more bucket: drops every full (idle) bucket, and if that is not
    /// enough, the least recently used tenth.
    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: i128) {
        let burst = f64::from(self.rate.burst);
        buckets.retain(|_, b| self.refilled(*b, now) < burst);
        if buckets.len() >= self.max_keys {
            let mut by_age: Vec<(i128, String)> = buckets
                .iter()
                .map(|(k, b)| (b.updated, k.clone()))
                .collect();
            by_age.sort_unstable();
            let drop = (self.max_keys / 10)
                .max(1)
                .max(buckets.len() + 1 - self.max_keys);
            for (_, key) in by_age.into_iter().take(drop) {
                buckets.remove(&key);
            }
        }
    }
}

impl RateLimiter for TokenBucketLimiter {
    fn acquire(&self, key: &str) -> Result<(), u64> {
        let now = self.clock.now().unix_timestamp_nanos();
        let mut buckets = self.lock();
        let bucket = match buckets.get(key) {
            Some(b) => Bucket {
                tokens: self.refilled(*b, now),
                updated: now,
            },
            None => {
                if buckets.len() >= self.max_keys {
                    self.evict(&mut buckets, now);
                }
                Bucket {
                    tokens: f64::from(self.rate.burst),
                    updated: now,
                }
            }
        };
        if bucket.tokens >= 1.0 {
            buckets.insert(
                key.to_owned(),
                Bucket {
                    tokens: bucket.tokens - 1.0,
                    ..bucket
                },
            );
            Ok(())
        } else {
            buckets.insert(key.to_owned(), bucket);
            let wait = (1.0 - bucket.tokens) / self.rate.per_sec();
            Err((wait.ceil() as u64).max(1))
        }
    }
}

/// What is being done, for the keys and messages of the auth limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthAction {
    Login,
    Register,
    Refresh,
}

impl AuthAction {
    fn as_str(self) -> &'static str {
        match self {
            AuthAction::Login => "login",
            AuthAction::Register => "register",
            AuthAction::Refresh => "refresh",
        }
    }
}

/// The limits of the application. The name is part of every stored key, so two limits on
/// the same subject (an IP's logins and its WebSocket handshakes) never share a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    AuthIp,
    AuthUser,
    WsConnect,
    WsCommand,
    ApiToken,
    DirectMessage,
}

/// What a limit does when the store cannot answer its global check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreFailure {
    /// Admit on the local bucket alone (the per-instance limit still holds).
    Open,
    /// Refuse with 503 and `Retry-After`.
    Closed,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::AuthIp => "auth_ip",
            Limit::AuthUser => "auth_user",
            Limit::WsConnect => "ws_connect",
            Limit::WsCommand => "ws_command",
            Limit::ApiToken => "api_token",
            Limit::DirectMessage => "direct_message",
        }
    }

    /// Authentication limits fail closed: they bound password guessing, and a login or
    /// refresh needs the store anyway, so refusing costs no availability a caller would
    /// otherwise have had. WebSocket limits fail open to the local bucket: they protect
    /// capacity rather than secrets, and a store that throttles only the limit item (a hot
    /// key) should not cut every live connection off.
    pub fn on_store_failure(self) -> OnStoreFailure {
        match self {
            Limit::AuthIp | Limit::AuthUser => OnStoreFailure::Closed,
            // The per-token limit protects capacity too; a token's request needs the store
            // for its own authorization anyway, which then fails on its own terms.
            // Direct messages protect the recipients' sockets, a capacity matter too.
            Limit::WsConnect | Limit::WsCommand | Limit::ApiToken | Limit::DirectMessage => {
                OnStoreFailure::Open
            }
        }
    }
}

/// Whom a limit counts: the key kinds a limit can be keyed on. Emails, user ids and token
/// ids are hashed (stored keys name no account and stay small whatever the caller sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitKey(String);

impl LimitKey {
    /// A client address; an unknown one (no network source available) is one shared key.
    pub fn ip(ip: Option<IpAddr>) -> Self {
        Self(ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}")))
    }

    /// An account (normalised email or user id), per action.
    pub fn account(action: AuthAction, subject: &str) -> Self {
        Self(format!("acct:{}:{}", action.as_str(), digest(subject)))
    }

    /// An API token, by the SHA-256 of the presented token: only its holder can spend its
    /// budget (its id is no secret: lists show it).
    pub fn api_token(token_hash: &str) -> Self {
        Self(format!("token:{}", digest(token_hash)))
    }

    /// A user, by a digest of their id (a budget that follows them across sessions and
    /// tokens).
    pub fn user(user_id: &str) -> Self {
        Self(format!("user:{}", digest(user_id)))
    }

    /// A WebSocket connection (API Gateway's connection id).
    pub fn connection(connection_id: &str) -> Self {
        Self(format!("conn:{connection_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn digest(subject: &str) -> String {
    let digest = sha2::Sha256::digest(subject.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Attribute of a limit item: the theoretical arrival time, microseconds since the epoch.
pub const TAT: &str = "tat";

/// Reads-and-puts one check may try before it counts as refused: each lost race means
/// another request of the same key was admitted meanwhile.
const GLOBAL_ATTEMPTS: usize = 4;

/// The stored key of a limit item (connections table: short-lived state with a TTL and no
/// stream).
pub fn limit_item_key(limit: Limit, key: &LimitKey) -> Key {
    Key::new(format!("RL#{}#{}", limit.name(), key.as_str()), "RL")
}

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Over the limit: seconds until a request of this key will be admitted (at least 1).
    Wait(u64),
    /// The global check could not be made and the limit fails closed.
    Store(StoreError),
}

/// One limit over every instance: the local bucket, then GCRA on the store.
pub struct GlobalLimiter {
    limit: Limit,
    /// Emission interval (one request's worth of time) in microseconds.
    interval: i64,
    /// How far ahead of now the theoretical arrival time may run: `burst` intervals.
    tolerance: i64,
    local: TokenBucketLimiter,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl GlobalLimiter {
    pub fn new(
        limit: Limit,
        rate: Rate,
        max_keys: usize,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let interval = (60_000_000 / i64::from(rate.per_minute)).max(1);
        Self {
            limit,
            interval,
            tolerance: interval * i64::from(rate.burst),
            local: TokenBucketLimiter::new(rate, max_keys, clock.clone()),
            store,
            clock,
        }
    }

    /// Takes one request of `key`'s budget, or says why not. A refused request takes nothing.
    pub async fn acquire(&self, key: &LimitKey) -> Result<(), Refusal> {
        self.local.acquire(key.as_str()).map_err(Refusal::Wait)?;
        match self.global(key).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => {
                self.local.refund(key.as_str());
                Err(Refusal::Wait(wait))
            }
            Err(e) => match self.limit.on_store_failure() {
                OnStoreFailure::Open => {
                    tracing::warn!(limit = self.limit.name(), error = %e,
                        "rate limit store unavailable: local limit only");
                    Ok(())
                }
                OnStoreFailure::Closed => {
                    tracing::warn!(limit = self.limit.name(), error = %e,
                        "rate limit store unavailable: refused");
                    self.local.refund(key.as_str());
                    Err(Refusal::Store(e))
                }
            },
        }
    }

    fn now_micros(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1000) as i64
    }

    /// GCRA: admitting a request moves `tat` to `max(tat, now) + interval`, allowed while
    /// that stays within `tolerance` of now. `Ok(Err(secs))` is a refusal.
    async fn global(&self, key: &LimitKey) -> StoreResult<Result<(), u64>> {
        let item_key = limit_item_key(self.limit, key);
        for _ in 0..GLOBAL_ATTEMPTS {
            let current = self.store.get(Table::Connections, &item_key).await?;
            let now = self.now_micros();
            let prev = current.as_ref().and_then(|i| i.get(TAT)?.as_i64());
            let tat = prev.unwrap_or(now).max(now) + self.interval;
            if tat - now > self.tolerance {
                return Ok(Err(wait_secs(tat - now - self.tolerance)));
            }
            let condition = match (&current, prev) {
                (None, _) => Some(Condition::NotExists),
                (Some(_), Some(prev)) => Some(Condition::AttrEquals(TAT.into(), json!(prev))),
                // An item without a readable `tat` (never written by this code): replace it.
                (Some(_), None) => None,
            };
            let put = WriteOp::Put {
                table: Table::Connections,
                item: limit_item(&item_key, tat),
                condition,
            };
            match self.store.transact(vec![put]).await {
                Ok(()) => return Ok(Ok(())),
                // Another request of this key was admitted since the read: decide again.
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e),
            }
        }
        // Every attempt lost to a concurrent admission: the key is busy right now.
        Ok(Err(wait_secs(self.interval)))
    }
}

/// The item of one key: its `tat`, and a `ttl` at the moment `tat` passes, when the item
/// says no more than its absence would (DynamoDB may then delete it).
fn limit_item(key: &Key, tat: i64) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), Value::from(key.pk.clone()));
    item.insert(SK.into(), Value::from(key.sk.clone()));
    item.insert("entity".into(), Value::from("rate_limit"));
    item.insert(TAT.into(), Value::from(tat));
    item.insert(TTL.into(), Value::from(tat.div_euclid(1_000_000) + 1));
    item
}

fn wait_secs(micros: i64) -> u64 {
    (micros.max(0) as u64).div_ceil(1_000_000).max(1)
}

/// The rate-limit policy of the application.
pub struct RateLimits {
    auth_ip: Option<GlobalLimiter>,
    auth_user: Option<GlobalLimiter>,
    ws_connect: Option<GlobalLimiter>,
    ws_command: Option<GlobalLimiter>,
    api_token: Option<GlobalLimiter>,
    direct_message: Option<GlobalLimiter>,
}

/// The 429 a refused request gets.
pub fn rate_limited(what: &str, retry_after: u64) -> AppError {
    AppError {
        retry_after: Some(retry_after),
        ..AppError::new(
            ErrorCode::RateLimited,
            format!("too many {what}; retry in {retry_after} s"),
        )
    }
}

/// Runs one limit's check; `action` is only for the log.
async fn check(
    limiter: &Option<GlobalLimiter>,
    key: LimitKey,
    action: Option<AuthAction>,
    what: impl FnOnce() -> String,
) -> AppResult<()> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    match limiter.acquire(&key).await {
        Ok(()) => Ok(()),
        Err(Refusal::Wait(secs)) => {
            let action = action.map(AuthAction::as_str);
            tracing::warn!(limit = limiter.limit.name(), ?action, "rate limited");
            Err(rate_limited(&what(), secs))
        }
        Err(Refusal::Store(_)) => Err(AppError::unavailable(
            "the rate limit cannot be checked right now; retry shortly",
        )),
    }
}

impl RateLimits {
    /// The configured limits, kept on `store` (shared by every instance) and filtered by
    /// in-process buckets.
    pub fn new(config: &RateLimitConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let limiter = |limit, rate: Option<Rate>| {
            rate.map(|r| {
                GlobalLimiter::new(limit, r, config.max_keys, store.clone(), clock.clone())
            })
        };
        Self {
            auth_ip: limiter(Limit::AuthIp, config.auth_ip),
            auth_user: limiter(Limit::AuthUser, config.auth_user),
            ws_connect: limiter(Limit::WsConnect, config.ws_connect),
            ws_command: limiter(Limit::WsCommand, config.ws_command),
            api_token: limiter(Limit::ApiToken, config.api_token),
            direct_message: limiter(Limit::DirectMessage, config.direct_message),
        }
    }

    /// No limits at all.
    pub fn unlimited() -> Self {
        Self {
            auth_ip: None,
            auth_user: None,
            ws_connect: None,
            ws_command: None,
            api_token: None,
            direct_message: None,
        }
    }

    /// The per-IP limit of login, register and refresh (one budget per address for all
    /// three).
    pub async fn check_auth_ip(&self, action: AuthAction, ip: Option<IpAddr>) -> AppResult<()> {
        check(&self.auth_ip, LimitKey::ip(ip), Some(action), || {
            "authentication requests from this address".into()
        })
        .await
    }

    /// The per-account limit: `subject` is the normalised email (login, register) or the
    /// user id (refresh).
    pub async fn check_auth_user(&self, action: AuthAction, subject: &str) -> AppResult<()> {
        check(
            &self.auth_user,
            LimitKey::account(action, subject),
            Some(action),
            || format!("{} attempts for this account", action.as_str()),
        )
        .await
    }

    /// The per-IP limit of WebSocket handshakes (`$connect`).
    pub async fn check_ws_connect(&self, ip: Option<IpAddr>) -> AppResult<()> {
        check(&self.ws_connect, LimitKey::ip(ip), None, || {
            "WebSocket connections from this address".into()
        })
        .await
    }

    /// The per-token limit of REST requests; `token_hash` is the presented token's SHA-256.
    pub async fn check_api_token(&self, token_hash: &str) -> AppResult<()> {
        check(
            &self.api_token,
            LimitKey::api_token(token_hash),
            None,
            || "requests with this API token".into(),
        )
        .await
    }

    /// The per-connection limit of WebSocket commands.
    pub async fn check_ws_command(&self, connection_id: &str) -> AppResult<()> {
        check(
            &self.ws_command,
            LimitKey::connection(connection_id),
            None,
            || "commands on this connection".into(),
        )
        .await
    }

    /// The per-user limit of direct messages (send and broadcast).
    pub async fn check_direct_message(&self, user_id: &str) -> AppResult<()> {
        check(&self.direct_message, LimitKey::user(user_id), None, || {
            "direct messages from this user".into()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::storage::Metered;
    use crate::storage::embedded::EmbeddedStore;

    fn bucket(burst: u32, per_minute: u32, max_keys: usize) -> (TokenBucketLimiter, ManualClock) {
        let clock = ManualClock::starting_now();
        let l = TokenBucketLimiter::new(
            Rate::new(burst, per_minute),
            max_keys,
            Arc::new(clock.clone()),
        );
        (l, clock)
    }

    #[test]
    fn burst_then_refusal_with_wait_then_refill() {
        let (l, clock) = bucket(3, 6, 100); // one token every 10 s
        for _ in 0..3 {
            assert_eq!(l.acquire("a"), Ok(()));
        }
        assert_eq!(l.acquire("a"), Err(10));
        assert_eq!(l.acquire("b"), Ok(()), "keys are independent");
        clock.advance_secs(4);
        assert_eq!(l.acquire("a"), Err(6), "refused calls take nothing");
        clock.advance_secs(6);
        assert_eq!(l.acquire("a"), Ok(()));
        assert_eq!(l.acquire("a"), Err(10));
        clock.advance_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.acquire("a"), Ok(()), "refill is capped at burst");
        }
        assert!(l.acquire("a").is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_go_first() {
        let (l, clock) = bucket(2, 60, 10);
        l.acquire("busy").unwrap();
        l.acquire("busy").unwrap();
        for i in 0..100 {
            let _ = l.acquire(&format!("k{i}"));
            assert!(l.len() <= 10, "{} buckets", l.len());
        }
        // Idle (refilled) buckets are dropped before busy ones.
        drop(clock);
        let (l2, clock2) = bucket(2, 1, 3);
        l2.acquire("hot").unwrap();
        l2.acquire("hot").unwrap();
        l2.acquire("idle").unwrap();
        clock2.advance_secs(60); // "idle" is full again, "hot" holds one token
        l2.acquire("x").unwrap();
        l2.acquire("y").unwrap();
        assert_eq!(l2.len(), 3);
        assert_eq!(
            l2.acquire("hot"),
            Ok(()),
            "the busy bucket survived eviction"
        );
        assert_eq!(l2.acquire("hot"), Err(60));
    }

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("20,10"), Ok(Some(Rate::new(20, 10))));
        assert_eq!(Rate::parse(" off "), Ok(None));
        assert!(Rate::parse("20").is_err());
        assert!(Rate::parse("0,1").is_err());
        assert!(Rate::parse("a,b").is_err());
    }

    fn limiter_on(
        store: Arc<dyn Store>,
        clock: &ManualClock,
        limit: Limit,
        rate: Rate,
    ) -> GlobalLimiter {
        GlobalLimiter::new(limit, rate, 100, store, Arc::new(clock.clone()))
    }

    fn admitted(r: &Result<(), Refusal>) -> bool {
        r.is_ok()
    }

    #[tokio::test]
    async fn policy_answers_429_with_retry_after() {
        let clock = ManualClock::starting_now();
        let config = RateLimitConfig {
            auth_ip: Some(Rate::new(1, 60)),
            auth_user: Some(Rate::new(1, 1)),
            ws_connect: Some(Rate::new(1, 30)),
            ws_command: Some(Rate::new(2, 60)),
            api_token: Some(Rate::new(1, 60)),
            direct_message: Some(Rate::new(1, 30)),
            max_keys: 10,
        };
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let limits = RateLimits::new(&config, store, Arc::new(clock));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        limits
            .check_auth_ip(AuthAction::Login, Some(ip))
            .await
            .unwrap();
        let e = limits
            .check_auth_ip(AuthAction::Refresh, Some(ip))
            .await
            .unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(1)));
        limits
            .check_auth_user(AuthAction::Login, "a@x")
            .await
            .unwrap();
        limits
            .check_auth_user(AuthAction::Refresh, "a@x")
            .await
            .unwrap();
        let e = limits
            .check_auth_user(AuthAction::Login, "a@x")
            .await
            .unwrap_err();
        assert_eq!(e.retry_after, Some(60));
        // The handshake limit is its own budget, even for an address the auth limit refused.
        limits.check_ws_connect(Some(ip)).await.unwrap();
        let e = limits.check_ws_connect(Some(ip)).await.unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(2)));
        limits.check_ws_command("c1").await.unwrap();
        limits.check_ws_command("c1").await.unwrap();
        assert!(limits.check_ws_command("c1").await.is_err());
        limits.check_ws_command("c2").await.unwrap();
        // Direct messages: a budget per sending user.
        limits.check_direct_message("u1").await.unwrap();
        let e = limits.check_direct_message("u1").await.unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(2)));
        limits.check_direct_message("u2").await.unwrap();
        // Each API token has its own budget.
        limits.check_api_token("hash-a").await.unwrap();
        let e = limits.check_api_token("hash-a").await.unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(1)));
        limits.check_api_token("hash-b").await.unwrap();
        let none = RateLimits::unlimited();
        for _ in 0..1000 {
            none.check_auth_ip(AuthAction::Login, None).await.unwrap();
        }
    }

    /// Four instances (each with its own local bucket) on one store admit the limit once in
    /// all, not four times; time refills it for all of them.
    #[tokio::test]
    async fn instances_share_one_global_budget() {
        let clock = ManualClock::starting_now();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let rate = Rate::new(5, 60); // one a second
        let instances: Vec<GlobalLimiter> = (0..4)
            .map(|_| limiter_on(store.clone(), &clock, Limit::AuthIp, rate))
            .collect();
        let key = LimitKey::ip(Some("203.0.113.9".parse().unwrap()));
        let mut count = 0;
        for round in 0..5 {
            for (i, l) in instances.iter().enumerate() {
                match l.acquire(&key).await {
                    Ok(()) => count += 1,
                    Err(Refusal::Wait(secs)) => assert!(secs >= 1, "{round}/{i}"),
                    Err(Refusal::Store(e)) => panic!("{e}"),
                }
            }
        }
        assert_eq!(count, 5, "the burst holds across instances");
        clock.advance_secs(2);
        let after: Vec<bool> = futures::future::join_all(instances.iter().map(|l| l.acquire(&key)))
            .await
            .iter()
            .map(admitted)
            .collect();
        assert_eq!(
            after.iter().filter(|a| **a).count(),
            2,
            "two seconds refill two requests in all: {after:?}"
        );
        // Another key has its own budget.
        let other = LimitKey::ip(None);
        assert!(admitted(&instances[3].acquire(&other).await));
    }

    /// A request the local bucket refuses costs no storage call; one it admits costs a read
    /// and a conditional write (a read alone when the global state refuses it).
    #[tokio::test]
    async fn storage_calls_per_check() {
        let clock = ManualClock::starting_now();
        let metered = Metered::new(EmbeddedStore::in_memory());
        let totals = metered.totals();
        let store: Arc<dyn Store> = Arc::new(metered);
        let a = limiter_on(store.clone(), &clock, Limit::WsCommand, Rate::new(2, 60));
        let b = limiter_on(store, &clock, Limit::WsCommand, Rate::new(2, 60));
        let key = LimitKey::connection("c1=");
        let calls = || {
            (
                totals.get.load(std::sync::atomic::Ordering::Relaxed),
                totals.transact.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        assert!(admitted(&a.acquire(&key).await));
        assert_eq!(calls(), (1, 1), "admitted: one read, one write");
        assert!(admitted(&a.acquire(&key).await));
        assert!(matches!(a.acquire(&key).await, Err(Refusal::Wait(1))));
        assert_eq!(calls(), (2, 2), "refused locally: no storage call");
        // `b` has tokens locally, but the budget is spent globally: one read, no write.
        assert!(matches!(b.acquire(&key).await, Err(Refusal::Wait(1))));
        assert_eq!(calls(), (3, 2));
        // The global refusal gave `b`'s local token back: after one interval `b` is admitted
        // by both stages again (a local bucket that had kept it would still have room, but
        // one that lost a token to every global refusal would run dry while the global
        // budget refills).
        assert!(b.acquire(&key).await.is_err());
        assert!(b.acquire(&key).await.is_err());
        clock.advance_secs(1);
        assert!(admitted(&b.acquire(&key).await));
    }

    /// Concurrent requests of one key through several instances never admit more than the
    /// burst: the conditional write lets one of two racing admissions through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_instances_never_exceed_the_burst() {
        let clock = ManualClock::starting_now();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let instances: Vec<Arc<GlobalLimiter>> = (0..4)
            .map(|_| {
                Arc::new(limiter_on(
                    store.clone(),
                    &clock,
                    Limit::AuthUser,
                    Rate::new(6, 1),
                ))
            })
            .collect();
        let key = LimitKey::account(AuthAction::Login, "victim@example.com");
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let l = instances[i % 4].clone();
                let key = key.clone();
                tokio::spawn(async move { l.acquire(&key).await.is_ok() })
            })
            .collect();
        let mut count = 0;
        for t in tasks {
            count += usize::from(t.await.unwrap());
        }
        assert!((1..=6).contains(&count), "{count} admitted of a burst of 6");
        // Whatever raced, the stored state counts exactly the admissions (none lost, none
        // twice): the clock stands still, so `tat` is now + one interval per admission.
        let item = store
            .get(Table::Connections, &limit_item_key(Limit::AuthUser, &key))
            .await
            .unwrap()
            .expect("item");
        let now = clock.epoch_secs() as i64 * 1_000_000;
        assert_eq!(item[TAT].as_i64(), Some(now + count as i64 * 60_000_000));
    }

    /// The store cannot answer: authentication limits refuse (503), WebSocket limits fall
    /// back to their local bucket.
    #[tokio::test]
    async fn store_failure_fails_closed_for_auth_and_open_for_websockets() {
        use crate::storage::faults::{Fault, FaultyStore};
        let clock = ManualClock::starting_now();
        let faulty = Arc::new(FaultyStore::new(EmbeddedStore::in_memory(), 7));
        faulty.fail_always(Fault::Throttle);
        let config = RateLimitConfig {
            auth_ip: Some(Rate::new(2, 60)),
            auth_user: Some(Rate::new(2, 60)),
            ws_connect: Some(Rate::new(2, 60)),
            ws_command: Some(Rate::new(2, 60)),
            api_token: Some(Rate::new(2, 60)),
            direct_message: Some(Rate::new(2, 60)),
            max_keys: 10,
        };
        let limits = RateLimits::new(&config, faulty.clone(), Arc::new(clock));
        let e = limits
            .check_auth_ip(AuthAction::Login, None)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ServiceUnavailable);
        assert_eq!(e.retry_after, Some(1));
        let e = limits
            .check_auth_user(AuthAction::Login, "a@x")
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::ServiceUnavailable);
        for _ in 0..2 {
            limits.check_ws_command("c1").await.unwrap();
            limits.check_ws_connect(None).await.unwrap();
            limits.check_direct_message("u1").await.unwrap();
        }
        assert!(
            limits.check_direct_message("u1").await.is_err(),
            "direct messages fail open to the local limit"
        );
        let e = limits.check_ws_command("c1").await.unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::RateLimited,
            "the local limit still holds"
        );
        assert!(limits.check_ws_connect(None).await.is_err());
        // Refusals of a failing store took no local token: once it heals, the burst is whole.
        faulty.heal();
        limits.check_auth_ip(AuthAction::Login, None).await.unwrap();
        limits.check_auth_ip(AuthAction::Login, None).await.unwrap();
        assert!(limits.check_auth_ip(AuthAction::Login, None).await.is_err());
    }

    #[test]
    fn keys_hash_accounts_and_tokens() {
        let k = LimitKey::account(AuthAction::Login, "someone@example.com");
        assert!(!k.as_str().contains("someone"), "{k:?}");
        assert_ne!(
            k,
            LimitKey::account(AuthAction::Refresh, "someone@example.com")
        );
        let u = LimitKey::user("user-123");
        assert!(u.as_str().starts_with("user:") && !u.as_str().contains("123"));
        let t = LimitKey::api_token("tok_secret_id");
        assert!(t.as_str().starts_with("token:") && !t.as_str().contains("secret"));
        let item = limit_item_key(Limit::WsConnect, &LimitKey::ip(None));
        assert_eq!(
            (item.pk.as_str(), item.sk.as_str()),
            ("RL#ws_connect#ip:unknown", "RL")
        );
    }

    /// The stored item expires when its `tat` has passed (it then says no more than its
    /// absence would).
    #[tokio::test]
    async fn limit_items_carry_a_ttl() {
        let clock = ManualClock::starting_now();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let l = limiter_on(store.clone(), &clock, Limit::WsConnect, Rate::new(3, 6));
        let key = LimitKey::ip(None);
        l.acquire(&key).await.unwrap();
        l.acquire(&key).await.unwrap();
        let item = store
            .get(Table::Connections, &limit_item_key(Limit::WsConnect, &key))
            .await
            .unwrap()
            .expect("item");
        let now = clock.epoch_secs() as i64;
        assert_eq!(
            item[TAT].as_i64(),
            Some((now + 20) * 1_000_000),
            "two 10 s intervals"
        );
        assert_eq!(item[TTL].as_i64(), Some(now + 21));
    }
}
