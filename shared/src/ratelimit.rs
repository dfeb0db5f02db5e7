//! Rate limiting: token buckets per key (a client IP, an account, a WebSocket connection),
//! the original Momentum service's algorithm. A bucket holds up to `burst` tokens and refills
//! `per_minute` tokens a minute; each request takes one, and an empty bucket answers with the
//! seconds to wait.
//!
//! Buckets live in the memory of one process: on Lambda each instance has its own, so these
//! limits bound what one caller gets from one instance. API Gateway's stage throttling
//! (`infra/template.yaml`) is the global backstop. Memory is bounded: a bucket that has
//! refilled completely is indistinguishable from a new one and is dropped when space runs
//! out; if every bucket is busy the least recently used are dropped.
//!
//! The policy (which limits guard which action) is `RateLimits`; REST handlers and the
//! WebSocket command path both call it, so they cannot disagree.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use sha2::Digest;

use crate::clock::Clock;
use crate::error::{AppError, AppResult, ErrorCode};

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
    /// WebSocket commands per connection.
    pub ws_command: Option<Rate>,
    /// Buckets kept per limit before idle ones are evicted.
    pub max_keys: usize,
}

pub const DEFAULT_AUTH_IP: Rate = Rate::new(30, 30);
pub const DEFAULT_AUTH_USER: Rate = Rate::new(10, 5);
pub const DEFAULT_WS_COMMAND: Rate = Rate::new(60, 600);
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            auth_ip: Some(DEFAULT_AUTH_IP),
            auth_user: Some(DEFAULT_AUTH_USER),
            ws_command: Some(DEFAULT_WS_COMMAND),
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
            ws_command: None,
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

/// The rate-limit policy of the application.
pub struct RateLimits {
    auth_ip: Option<Box<dyn RateLimiter>>,
    auth_user: Option<Box<dyn RateLimiter>>,
    ws_command: Option<Box<dyn RateLimiter>>,
}

fn limiter(
    rate: Option<Rate>,
    max_keys: usize,
    clock: &Arc<dyn Clock>,
) -> Option<Box<dyn RateLimiter>> {
    rate.map(|r| {
        Box::new(TokenBucketLimiter::new(r, max_keys, clock.clone())) as Box<dyn RateLimiter>
    })
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
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

impl RateLimits {
    pub fn new(config: &RateLimitConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            auth_ip: limiter(config.auth_ip, config.max_keys, &clock),
            auth_user: limiter(config.auth_user, config.max_keys, &clock),
            ws_command: limiter(config.ws_command, config.max_keys, &clock),
        }
    }

    /// No limits at all.
    pub fn unlimited() -> Self {
        Self {
            auth_ip: None,
            auth_user: None,
            ws_command: None,
        }
    }

    /// The per-IP limit of login, register and refresh (one bucket per address for all
    /// three). An unknown address (no network source available) shares one bucket.
    pub fn check_auth_ip(&self, action: AuthAction, ip: Option<IpAddr>) -> AppResult<()> {
        let Some(limiter) = &self.auth_ip else {
            return Ok(());
        };
        let key = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        limiter.acquire(&key).map_err(|secs| {
            tracing::warn!(%key, action = action.as_str(), "rate limited (client ip)");
            rate_limited("authentication requests from this address", secs)
        })
    }

    /// The per-account limit: `subject` is the normalised email (login, register) or the
    /// user id (refresh).
    pub fn check_auth_user(&self, action: AuthAction, subject: &str) -> AppResult<()> {
        let Some(limiter) = &self.auth_user else {
            return Ok(());
        };
        // A digest keeps keys small whatever the caller sent.
        let digest = sha2::Sha256::digest(subject.as_bytes());
        let key = format!("{}:{}", action.as_str(), hex16(&digest));
        limiter.acquire(&key).map_err(|secs| {
            tracing::warn!(action = action.as_str(), "rate limited (account)");
            rate_limited(
                &format!("{} attempts for this account", action.as_str()),
                secs,
            )
        })
    }

    /// The per-connection limit of WebSocket commands.
    pub fn check_ws_command(&self, connection_id: &str) -> AppResult<()> {
        let Some(limiter) = &self.ws_command else {
            return Ok(());
        };
        limiter
            .acquire(connection_id)
            .map_err(|secs| rate_limited("commands on this connection", secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

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

    #[test]
    fn policy_answers_429_with_retry_after() {
        let clock = ManualClock::starting_now();
        let config = RateLimitConfig {
            auth_ip: Some(Rate::new(1, 60)),
            auth_user: Some(Rate::new(1, 1)),
            ws_command: Some(Rate::new(2, 60)),
            max_keys: 10,
        };
        let limits = RateLimits::new(&config, Arc::new(clock));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        limits.check_auth_ip(AuthAction::Login, Some(ip)).unwrap();
        let e = limits
            .check_auth_ip(AuthAction::Refresh, Some(ip))
            .unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(1)));
        limits.check_auth_user(AuthAction::Login, "a@x").unwrap();
        limits.check_auth_user(AuthAction::Refresh, "a@x").unwrap();
        let e = limits
            .check_auth_user(AuthAction::Login, "a@x")
            .unwrap_err();
        assert_eq!(e.retry_after, Some(60));
        limits.check_ws_command("c1").unwrap();
        limits.check_ws_command("c1").unwrap();
        assert!(limits.check_ws_command("c1").is_err());
        limits.check_ws_command("c2").unwrap();
        let none = RateLimits::unlimited();
        for _ in 0..1000 {
            none.check_auth_ip(AuthAction::Login, None).unwrap();
        }
    }
}
