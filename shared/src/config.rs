//! Configuration from environment variables, with safe local defaults. Outside local mode
//! startup refuses unsafe settings (a missing or short JWT secret).

use std::path::PathBuf;
use std::time::Duration;

use crate::ratelimit::{Rate, RateLimitConfig};
use crate::storage::schema::TableNames;

/// Where the process runs. Lambda binaries default to `Production`; the local shim to `Local`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Production,
}

/// Which storage adapter to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite file under the data directory.
    Embedded { data_dir: PathBuf },
    /// The memory store (`storage::MemoryStore`): ordered maps in this process, lost on exit.
    Memory,
    DynamoDb {
        endpoint: Option<String>,
        region: Option<String>,
        create_tables: bool,
    },
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub jwt_secret: Vec<u8>,
    /// The one algorithm tokens are signed and verified with (never read from a token).
    pub jwt_algorithm: jsonwebtoken::Algorithm,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Concurrent argon2 computations (each holds ~19 MiB for tens of milliseconds).
    pub hash_concurrency: usize,
}

#[derive(Clone, Debug)]
pub struct AppConfig {
    pub mode: Mode,
    pub store: StoreKind,
    pub tables: TableNames,
    pub auth: AuthConfig,
    /// Add `x-storage-calls` to responses (tests and benchmarks read it).
    pub expose_storage_calls: bool,
    /// Time a request may spend retrying storage before it answers 503 (default 20 s, under
    /// API Gateway's 29 s integration timeout; `MOMENTUM_REQUEST_BUDGET_MS`).
    pub request_budget: Duration,
    /// Origins a browser may call the API from (CORS); others get no CORS headers. The same
    /// list decides which `Origin` may open a WebSocket (an absent `Origin`, as native
    /// clients send, is allowed).
    pub cors_origins: Vec<String>,
    /// True when `cors_origins` is the local default (local mode, `MOMENTUM_CORS_ORIGINS`
    /// unset): WebSocket connects from any loopback origin (`http://localhost:5173`, a dev
    /// server on any port) are then accepted too.
    pub local_default_origins: bool,
    pub rate_limits: RateLimitConfig,
    /// How long the local shim waits for slow clients and for itself at shutdown.
    pub timeouts: ServerTimeouts,
    /// Fan-out: post timeout and shard size.
    pub fanout: FanoutConfig,
    /// Outgoing webhooks: the secret key, which targets are allowed, the disable rule.
    pub webhooks: WebhookConfig,
    /// How long after a user's last connection in a workspace closes `user_left` waits for
    /// a reconnect (a page reload, a network blip) before it is announced.
    /// `MOMENTUM_PRESENCE_GRACE_SECS`, default 10.
    pub presence_grace_secs: u64,
    /// Mobile push (`MOMENTUM_PUSH`).
    pub push: PushConfig,
}

/// Where notifications that prefer push go (`MOMENTUM_PUSH`; docs/notifications-push.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushConfig {
    /// `off`: devices can be registered, nothing is sent.
    Off,
    /// `log` (the local default): each would-be push is recorded in memory and served at
    /// the shim's `GET /dev/push-log`. Refused in production.
    Log,
    /// `sns`: Amazon SNS mobile push. `MOMENTUM_PUSH_APNS_ARN` / `MOMENTUM_PUSH_FCM_ARN`
    /// name the platform applications (at least one is required), `MOMENTUM_PUSH_APNS_SANDBOX`
    /// says the APNs one is the sandbox; `MOMENTUM_PUSH_SNS_ENDPOINT` overrides AWS's
    /// endpoint (moto, LocalStack), `MOMENTUM_PUSH_SNS_REGION` its region.
    Sns {
        platforms: crate::areas::push::SnsPlatforms,
        endpoint: Option<String>,
        region: Option<String>,
    },
}

fn push_from_env(env: &Env, mode: Mode) -> Result<PushConfig, ConfigError> {
    let default = match mode {
        Mode::Local => "log",
        // Production without push configured sends nothing (the template's parameters
        // default to empty: push off).
        Mode::Production => "off",
    };
    let kind = env.get("MOMENTUM_PUSH").unwrap_or_else(|| default.into());
    match kind.as_str() {
        "off" => Ok(PushConfig::Off),
        "log" if mode == Mode::Production => Err(ConfigError(
            "MOMENTUM_PUSH=log is local only: use sns or off in production".into(),
        )),
        "log" => Ok(PushConfig::Log),
        "sns" => {
            let arn = |key: &str| -> Result<Option<String>, ConfigError> {
                match env.get(key) {
                    None => Ok(None),
                    Some(v) if v.starts_with("arn:") && v.contains(":sns:") => Ok(Some(v)),
                    Some(v) => Err(ConfigError(format!(
                        "{key}={v:?} is not an SNS platform application ARN"
                    ))),
                }
            };
            let platforms = crate::areas::push::SnsPlatforms {
                apns_arn: arn("MOMENTUM_PUSH_APNS_ARN")?,
                fcm_arn: arn("MOMENTUM_PUSH_FCM_ARN")?,
                apns_sandbox: env.flag("MOMENTUM_PUSH_APNS_SANDBOX", false)?,
            };
            if platforms.apns_arn.is_none() && platforms.fcm_arn.is_none() {
                return Err(ConfigError(
                    "MOMENTUM_PUSH=sns needs MOMENTUM_PUSH_APNS_ARN or MOMENTUM_PUSH_FCM_ARN"
                        .into(),
                ));
            }
            Ok(PushConfig::Sns {
                platforms,
                endpoint: env.get("MOMENTUM_PUSH_SNS_ENDPOINT"),
                region: env.get("MOMENTUM_PUSH_SNS_REGION"),
            })
        }
        v => Err(ConfigError(format!(
            "MOMENTUM_PUSH={v:?}: use off, log or sns"
        ))),
    }
}

/// Default of `MOMENTUM_PRESENCE_GRACE_SECS`.
pub const DEFAULT_PRESENCE_GRACE_SECS: u64 = 10;

/// Smallest accepted `MOMENTUM_WEBHOOK_SECRET_KEY` outside local mode.
pub const MIN_WEBHOOK_KEY_BYTES: usize = 32;

/// Outgoing webhooks (docs/webhooks.md).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Server key every webhook secret is derived from (HMAC-SHA256(key, id:version)), so no
    /// secret is stored. `MOMENTUM_WEBHOOK_SECRET_KEY`: at least 32 bytes in production (a
    /// shorter one refuses to start; none leaves webhooks off: creating one answers 503);
    /// local mode keeps a generated one with its store.
    pub secret_key: Option<Vec<u8>>,
    /// `http://` targets are accepted (local mode only; production wants `https://`).
    pub allow_http: bool,
    /// Loopback, private and other non-public targets are accepted:
    /// `MOMENTUM_WEBHOOKS_ALLOW_PRIVATE=1`, refused in production.
    pub allow_private: bool,
    /// How long one delivery attempt may take (connect to last byte). 10 s.
    pub timeout: Duration,
    /// A webhook is disabled when its consecutive failed attempts reach this many and the
    /// streak has lasted `disable_after`. `MOMENTUM_WEBHOOK_DISABLE_AFTER_FAILURES`, default 5.
    pub disable_after_failures: u32,
    /// `MOMENTUM_WEBHOOK_DISABLE_AFTER_SECS`, default 86 400 (a day).
    pub disable_after: Duration,
    /// How long the previous secret still signs after a rotation.
    /// `MOMENTUM_WEBHOOK_SECRET_GRACE_SECS`, default 86 400.
    pub secret_grace: Duration,
}

impl WebhookConfig {
    /// Local defaults around a given key.
    pub fn local(secret_key: Option<Vec<u8>>) -> Self {
        Self {
            secret_key,
            allow_http: true,
            allow_private: false,
            timeout: Duration::from_secs(10),
            disable_after_failures: 5,
            disable_after: Duration::from_secs(24 * 3600),
            secret_grace: Duration::from_secs(24 * 3600),
        }
    }

    /// What production enforces: `https://` only, public addresses only.
    pub fn production(secret_key: Option<Vec<u8>>) -> Self {
        Self {
            allow_http: false,
            allow_private: false,
            ..Self::local(secret_key)
        }
    }
}

fn webhooks_from_env(
    env: &Env,
    mode: Mode,
    store: &StoreKind,
) -> Result<WebhookConfig, ConfigError> {
    let key = match (env.get("MOMENTUM_WEBHOOK_SECRET_KEY"), mode) {
        (Some(k), Mode::Production) if k.len() < MIN_WEBHOOK_KEY_BYTES => {
            return Err(ConfigError(format!(
                "MOMENTUM_WEBHOOK_SECRET_KEY must be at least {MIN_WEBHOOK_KEY_BYTES} bytes in production"
            )));
        }
        (Some(k), _) => Some(k.into_bytes()),
        // Functions that never sign (and deployments without webhooks) need no key.
        (None, Mode::Production) => None,
        (None, Mode::Local) => Some(local_secret(store, "webhook-secret-key")?),
    };
    let allow_private = env.flag("MOMENTUM_WEBHOOKS_ALLOW_PRIVATE", false)?;
    if allow_private && mode == Mode::Production {
        return Err(ConfigError(
            "MOMENTUM_WEBHOOKS_ALLOW_PRIVATE is refused in production".into(),
        ));
    }
    let base = match mode {
        Mode::Local => WebhookConfig::local(key),
        Mode::Production => WebhookConfig::production(key),
    };
    let config = WebhookConfig {
        allow_private,
        disable_after_failures: env.parse(
            "MOMENTUM_WEBHOOK_DISABLE_AFTER_FAILURES",
            base.disable_after_failures,
        )?,
        disable_after: Duration::from_secs(env.parse(
            "MOMENTUM_WEBHOOK_DISABLE_AFTER_SECS",
            base.disable_after.as_secs(),
        )?),
        secret_grace: Duration::from_secs(env.parse(
            "MOMENTUM_WEBHOOK_SECRET_GRACE_SECS",
            base.secret_grace.as_secs(),
        )?),
        ..base
    };
    if config.disable_after_failures == 0 {
        return Err(ConfigError(
            "MOMENTUM_WEBHOOK_DISABLE_AFTER_FAILURES must be > 0".into(),
        ));
    }
    Ok(config)
}

/// How the broadcaster posts events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutConfig {
    /// Hard limit on one `PostToConnection` attempt; a post still running then counts as
    /// failed for that connection (not retried: a hung connection must not hold a slot of
    /// the batch). `MOMENTUM_WS_POST_TIMEOUT_MS`, default 3 s.
    pub post_timeout: Duration,
    /// Subscribers per shard: a record with more targets is split into shards delivered in
    /// parallel (on AWS each shard is an SQS message for the fan-out worker).
    /// `MOMENTUM_FANOUT_SHARD_SIZE`, default 500.
    pub shard_size: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            post_timeout: Duration::from_secs(3),
            shard_size: 500,
        }
    }
}

/// Read timeouts and the shutdown grace of the local shim's HTTP server (in the cloud, API
/// Gateway reads requests; a Lambda gets them whole, so only `body_read` applies there and
/// is met at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// From a connection's first byte (or the end of its previous response) to the end of
    /// the request headers; past it the connection is closed. Also bounds an idle keep-alive
    /// connection. `MOMENTUM_HEADER_READ_TIMEOUT_MS`, default 10 s.
    pub header_read: Duration,
    /// From the end of the headers to the end of the body; past it the answer is 408
    /// `REQUEST_TIMEOUT` and the connection is closed. `MOMENTUM_BODY_READ_TIMEOUT_MS`,
    /// default 30 s.
    pub body_read: Duration,
    /// At shutdown (SIGTERM, Ctrl-C), how long in-flight requests and closing WebSockets
    /// may take before the shim stops waiting for them. `MOMENTUM_SHUTDOWN_GRACE_MS`,
    /// default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// CORS origins allowed in local mode when `MOMENTUM_CORS_ORIGINS` is unset (production
/// allows none unless configured).
pub const LOCAL_CORS_ORIGINS: &[&str] = &["http://localhost:3000", "http://127.0.0.1:3000"];

/// Smallest accepted JWT secret outside local mode (HS256 wants at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// Reads variables through a function so tests can pass their own environment.
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub fn process() -> Env<'static> {
        Env(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn get(&self, key: &str) -> Option<String> {
        (self.0)(key)
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError(format!("{key}={v:?} is not valid"))),
        }
    }

    fn rate(&self, key: &str, default: Rate) -> Result<Option<Rate>, ConfigError> {
        match self.get(key) {
            None => Ok(Some(default)),
            Some(v) => Rate::parse(&v).map_err(|e| ConfigError(format!("{key}={e}"))),
        }
    }

    /// A positive number of milliseconds (a timeout of 0 would refuse every client).
    fn millis(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.parse::<u64>(key, default.as_millis() as u64)? {
            0 => Err(ConfigError(format!("{key} must be > 0"))),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes") => Ok(true),
            Some("0" | "false" | "no") => Ok(false),
            Some(v) => Err(ConfigError(format!("{key}={v:?} is not a boolean"))),
        }
    }
}

/// The store: named by `MOMENTUM_STORE`, else DynamoDB in production or when an endpoint is
/// given, else the embedded one. Production refuses anything but DynamoDB: the embedded
/// store lives on one machine's disk.
fn store_from_env(env: &Env, mode: Mode) -> Result<StoreKind, ConfigError> {
    let endpoint = env.get("MOMENTUM_DYNAMODB_ENDPOINT");
    let dynamodb = |endpoint| -> Result<StoreKind, ConfigError> {
        Ok(StoreKind::DynamoDb {
            endpoint,
            region: env.get("MOMENTUM_DYNAMODB_REGION"),
            create_tables: env.flag("MOMENTUM_CREATE_TABLES", false)?,
        })
    };
    let store = match env.get("MOMENTUM_STORE").as_deref() {
        Some("dynamodb") => dynamodb(endpoint)?,
        Some("memory") => StoreKind::Memory,
        Some("embedded") => StoreKind::Embedded {
            data_dir: data_dir(env),
        },
        None if mode == Mode::Production || endpoint.is_some() => dynamodb(endpoint)?,
        None => StoreKind::Embedded {
            data_dir: data_dir(env),
        },
        Some(v) => {
            return Err(ConfigError(format!(
                "MOMENTUM_STORE={v:?}: use embedded, memory or dynamodb"
            )));
        }
    };
    if mode == Mode::Production && !matches!(store, StoreKind::DynamoDb { .. }) {
        return Err(ConfigError(
            "production mode needs MOMENTUM_STORE=dynamodb (the embedded store is local only)"
                .into(),
        ));
    }
    Ok(store)
}

/// Tokens and password hashing. A local run without a secret gets one kept with its store
/// (`local_secret`), so sessions survive restarts; production must be given a long one.
fn auth_from_env(env: &Env, mode: Mode, store: &StoreKind) -> Result<AuthConfig, ConfigError> {
    let jwt_secret = match (env.get("MOMENTUM_JWT_SECRET"), mode) {
        (Some(s), Mode::Production) if s.len() < MIN_JWT_SECRET_BYTES => {
            return Err(ConfigError(format!(
                "MOMENTUM_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes in production"
            )));
        }
        (Some(s), _) => s.into_bytes(),
        (None, Mode::Production) => {
            return Err(ConfigError(
                "MOMENTUM_JWT_SECRET is required in production".into(),
            ));
        }
        (None, Mode::Local) => local_secret(store, "jwt-secret")?,
    };
    let jwt_algorithm = match env.get("MOMENTUM_JWT_ALGORITHM").as_deref() {
        None | Some("HS256") => jsonwebtoken::Algorithm::HS256,
        Some("HS384") => jsonwebtoken::Algorithm::HS384,
        Some("HS512") => jsonwebtoken::Algorithm::HS512,
        Some(v) => {
            return Err(ConfigError(format!(
                "MOMENTUM_JWT_ALGORITHM={v:?}: use HS256, HS384 or HS512"
            )));
        }
    };
    let auth = AuthConfig {
        jwt_secret,
        jwt_algorithm,
        issuer: env
            .get("MOMENTUM_JWT_ISSUER")
            .unwrap_or_else(|| "momentum".into()),
        audience: env
            .get("MOMENTUM_JWT_AUDIENCE")
            .unwrap_or_else(|| "momentum-api".into()),
        access_ttl_secs: env.parse("MOMENTUM_ACCESS_TOKEN_TTL_SECS", 900)?,
        refresh_ttl_secs: env.parse("MOMENTUM_REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
        hash_concurrency: env.parse(
            "MOMENTUM_HASH_CONCURRENCY",
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )?,
    };
    if auth.access_ttl_secs == 0 || auth.refresh_ttl_secs == 0 || auth.hash_concurrency == 0 {
        return Err(ConfigError(
            "token lifetimes and hash concurrency must be > 0".into(),
        ));
    }
    Ok(auth)
}

fn rate_limits_from_env(env: &Env) -> Result<RateLimitConfig, ConfigError> {
    use crate::ratelimit as rl;
    let rate_limits = RateLimitConfig {
        auth_ip: env.rate("MOMENTUM_RATE_LIMIT_AUTH_IP", rl::DEFAULT_AUTH_IP)?,
        auth_user: env.rate("MOMENTUM_RATE_LIMIT_AUTH_USER", rl::DEFAULT_AUTH_USER)?,
        ws_connect: env.rate("MOMENTUM_RATE_LIMIT_WS_CONNECT", rl::DEFAULT_WS_CONNECT)?,
        ws_command: env.rate("MOMENTUM_RATE_LIMIT_WS_COMMAND", rl::DEFAULT_WS_COMMAND)?,
        api_token: env.rate("MOMENTUM_RATE_LIMIT_API_TOKEN", rl::DEFAULT_API_TOKEN)?,
        direct_message: env.rate(
            "MOMENTUM_RATE_LIMIT_DIRECT_MESSAGE",
            rl::DEFAULT_DIRECT_MESSAGE,
        )?,
        max_keys: env.parse("MOMENTUM_RATE_LIMIT_MAX_KEYS", rl::DEFAULT_MAX_KEYS)?,
    };
    if rate_limits.max_keys == 0 {
        return Err(ConfigError(
            "MOMENTUM_RATE_LIMIT_MAX_KEYS must be > 0".into(),
        ));
    }
    Ok(rate_limits)
}

impl AppConfig {
    /// Reads `MOMENTUM_*` variables. `default_mode` applies when `MOMENTUM_ENV` is unset.
    pub fn from_env(env: &Env, default_mode: Mode) -> Result<Self, ConfigError> {
        let mode = match env.get("MOMENTUM_ENV").as_deref() {
            None => default_mode,
            Some("local" | "development" | "dev" | "test") => Mode::Local,
            Some("production" | "prod" | "staging") => Mode::Production,
            Some(v) => return Err(ConfigError(format!("MOMENTUM_ENV={v:?} is not known"))),
        };
        let store = store_from_env(env, mode)?;
        let defaults = TableNames::default();
        let tables = TableNames {
            main: env.get("MOMENTUM_TABLE").unwrap_or(defaults.main),
            connections: env
                .get("MOMENTUM_CONNECTIONS_TABLE")
                .unwrap_or(defaults.connections),
        };
        let auth = auth_from_env(env, mode, &store)?;
        let local_default_origins =
            mode == Mode::Local && env.get("MOMENTUM_CORS_ORIGINS").is_none();
        let cors_origins = match env.get("MOMENTUM_CORS_ORIGINS") {
            Some(list) => parse_origins(&list)?,
            None if mode == Mode::Local => {
                LOCAL_CORS_ORIGINS.iter().map(|o| o.to_string()).collect()
            }
            None => Vec::new(),
        };
        let rate_limits = rate_limits_from_env(env)?;
        let webhooks = webhooks_from_env(env, mode, &store)?;
        let push = push_from_env(env, mode)?;
        let defaults = ServerTimeouts::default();
        let timeouts = ServerTimeouts {
            header_read: env.millis("MOMENTUM_HEADER_READ_TIMEOUT_MS", defaults.header_read)?,
            body_read: env.millis("MOMENTUM_BODY_READ_TIMEOUT_MS", defaults.body_read)?,
            shutdown_grace: env.millis("MOMENTUM_SHUTDOWN_GRACE_MS", defaults.shutdown_grace)?,
        };
        let fanout_defaults = FanoutConfig::default();
        let fanout = FanoutConfig {
            post_timeout: env
                .millis("MOMENTUM_WS_POST_TIMEOUT_MS", fanout_defaults.post_timeout)?,
            shard_size: env.parse("MOMENTUM_FANOUT_SHARD_SIZE", fanout_defaults.shard_size)?,
        };
        if fanout.shard_size == 0 {
            return Err(ConfigError("MOMENTUM_FANOUT_SHARD_SIZE must be > 0".into()));
        }
        Ok(Self {
            mode,
            store,
            tables,
            auth,
            expose_storage_calls: env.flag("MOMENTUM_EXPOSE_STORAGE_CALLS", mode == Mode::Local)?,
            request_budget: Duration::from_millis(env.parse(
                "MOMENTUM_REQUEST_BUDGET_MS",
                crate::storage::retry::DEFAULT_REQUEST_BUDGET.as_millis() as u64,
            )?),
            cors_origins,
            local_default_origins,
            rate_limits,
            timeouts,
            fanout,
            webhooks,
            presence_grace_secs: env
                .parse("MOMENTUM_PRESENCE_GRACE_SECS", DEFAULT_PRESENCE_GRACE_SECS)?,
            push,
        })
    }

    /// A local, in-memory configuration for tests, with rate limits off (test suites and
    /// benchmarks log in hundreds of times from one address); tests of the limits set
    /// `rate_limits` themselves.
    pub fn for_tests() -> Self {
        let env = |k: &str| match k {
            "MOMENTUM_STORE" => Some("memory".to_owned()),
            _ => None,
        };
        let mut config = Self::from_env(&Env(&env), Mode::Local).expect("test config");
        config.rate_limits = RateLimitConfig::off();
        config
    }
}

/// `MOMENTUM_CORS_ORIGINS`: comma-separated exact origins (`scheme://host[:port]`), no
/// wildcard (credentials-bearing APIs must name their origins).
fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let o = o.trim_end_matches('/');
            let valid = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.contains('*')
                && o.split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                && axum::http::HeaderValue::from_str(o).is_ok();
            if valid {
                Ok(o.to_owned())
            } else {
                Err(ConfigError(format!(
                    "MOMENTUM_CORS_ORIGINS: {o:?} is not an origin like https://app.example.com"
                )))
            }
        })
        .collect()
}

fn data_dir(env: &Env) -> PathBuf {
    env.get("MOMENTUM_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".momentum-data"))
}

/// Local mode without a configured secret: a random one, kept in the data directory so
/// tokens survive restarts of the shim (never a secret committed to the repository).
fn local_secret(store: &StoreKind, file: &str) -> Result<Vec<u8>, ConfigError> {
    use rand::RngCore;
    let mut fresh = vec![0u8; 48];
    rand::thread_rng().fill_bytes(&mut fresh);
    let StoreKind::Embedded { data_dir } = store else {
        return Ok(fresh);
    };
    let path = data_dir.join(file);
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= MIN_JWT_SECRET_BYTES => Ok(secret),
        _ => {
            std::fs::create_dir_all(data_dir)
                .and_then(|_| std::fs::write(&path, &fresh))
                .map_err(|e| ConfigError(format!("cannot write {}: {e}", path.display())))?;
            Ok(fresh)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)], mode: Mode) -> Result<AppConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        AppConfig::from_env(&Env(&env), mode)
    }

    #[test]
    fn production_refuses_missing_or_short_secret() {
        let err = config(&[], Mode::Production).unwrap_err();
        assert!(err.0.contains("required"), "{err}");
        let err = config(&[("MOMENTUM_JWT_SECRET", "short")], Mode::Production).unwrap_err();
        assert!(err.0.contains("at least 32"), "{err}");
        let ok = config(
            &[("MOMENTUM_JWT_SECRET", &"x".repeat(32))],
            Mode::Production,
        )
        .unwrap();
        assert!(matches!(ok.store, StoreKind::DynamoDb { .. }));
        assert!(!ok.expose_storage_calls);
    }

    #[test]
    fn production_refuses_embedded_store() {
        let err = config(
            &[
                ("MOMENTUM_JWT_SECRET", &"x".repeat(40)),
                ("MOMENTUM_STORE", "embedded"),
            ],
            Mode::Production,
        )
        .unwrap_err();
        assert!(err.0.contains("dynamodb"), "{err}");
    }

    #[test]
    fn local_defaults_are_usable() {
        let c = config(&[("MOMENTUM_STORE", "memory")], Mode::Local).unwrap();
        assert_eq!(c.store, StoreKind::Memory);
        assert!(c.auth.jwt_secret.len() >= MIN_JWT_SECRET_BYTES);
        assert_eq!(c.auth.access_ttl_secs, 900);
        let err = config(&[("MOMENTUM_JWT_ALGORITHM", "none")], Mode::Local).unwrap_err();
        assert!(err.0.contains("HS256"));
        let err = config(&[("MOMENTUM_ENV", "mars")], Mode::Local).unwrap_err();
        assert!(err.0.contains("MOMENTUM_ENV"));
        assert_eq!(c.cors_origins, LOCAL_CORS_ORIGINS);
        assert!(c.local_default_origins);
        assert_eq!(c.rate_limits, RateLimitConfig::default());
        assert_eq!(c.timeouts, ServerTimeouts::default());
        assert_eq!(c.presence_grace_secs, DEFAULT_PRESENCE_GRACE_SECS);
    }

    #[test]
    fn server_timeouts_are_configurable_and_positive() {
        let c = config(
            &[
                ("MOMENTUM_HEADER_READ_TIMEOUT_MS", "250"),
                ("MOMENTUM_BODY_READ_TIMEOUT_MS", "500"),
                ("MOMENTUM_SHUTDOWN_GRACE_MS", "2000"),
            ],
            Mode::Local,
        )
        .unwrap();
        assert_eq!(c.timeouts.header_read, Duration::from_millis(250));
        assert_eq!(c.timeouts.body_read, Duration::from_millis(500));
        assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(2));
        for key in [
            "MOMENTUM_HEADER_READ_TIMEOUT_MS",
            "MOMENTUM_BODY_READ_TIMEOUT_MS",
            "MOMENTUM_SHUTDOWN_GRACE_MS",
        ] {
            for bad in ["0", "-1", "soon"] {
                let err = config(&[(key, bad)], Mode::Local).unwrap_err();
                assert!(err.0.contains(key), "{key}={bad}: {err}");
            }
        }
    }

    #[test]
    fn cors_and_rate_limits_are_configurable() {
        let secret = "x".repeat(32);
        let prod = config(&[("MOMENTUM_JWT_SECRET", &secret)], Mode::Production).unwrap();
        assert!(
            prod.cors_origins.is_empty(),
            "production allows no origin by default"
        );
        assert!(!prod.local_default_origins);
        let c = config(
            &[
                (
                    "MOMENTUM_CORS_ORIGINS",
                    "https://app.example.com, https://b.example.com/",
                ),
                ("MOMENTUM_RATE_LIMIT_AUTH_IP", "5,2"),
                ("MOMENTUM_RATE_LIMIT_WS_COMMAND", "off"),
                ("MOMENTUM_RATE_LIMIT_WS_CONNECT", "3,6"),
                ("MOMENTUM_RATE_LIMIT_DIRECT_MESSAGE", "4,8"),
                ("MOMENTUM_PRESENCE_GRACE_SECS", "30"),
            ],
            Mode::Local,
        )
        .unwrap();
        assert_eq!(
            c.cors_origins,
            ["https://app.example.com", "https://b.example.com"]
        );
        assert!(!c.local_default_origins, "a configured list is exact");
        assert_eq!(c.rate_limits.auth_ip, Some(Rate::new(5, 2)));
        assert_eq!(c.rate_limits.ws_command, None);
        assert_eq!(c.rate_limits.ws_connect, Some(Rate::new(3, 6)));
        assert_eq!(c.rate_limits.direct_message, Some(Rate::new(4, 8)));
        assert_eq!(c.presence_grace_secs, 30);
        let err = config(&[("MOMENTUM_PRESENCE_GRACE_SECS", "soon")], Mode::Local).unwrap_err();
        assert!(err.0.contains("MOMENTUM_PRESENCE_GRACE_SECS"), "{err}");
        for bad in [
            "*",
            "app.example.com",
            "https://*.example.com",
            "https://a.com/path",
        ] {
            let err = config(&[("MOMENTUM_CORS_ORIGINS", bad)], Mode::Local).unwrap_err();
            assert!(err.0.contains("CORS"), "{bad}: {err}");
        }
        let err = config(&[("MOMENTUM_RATE_LIMIT_AUTH_USER", "10")], Mode::Local).unwrap_err();
        assert!(err.0.contains("MOMENTUM_RATE_LIMIT_AUTH_USER"), "{err}");
    }

    #[test]
    fn webhook_settings_are_safe_in_production() {
        let jwt = "x".repeat(32);
        let err = config(
            &[
                ("MOMENTUM_JWT_SECRET", &jwt),
                ("MOMENTUM_WEBHOOK_SECRET_KEY", "short"),
            ],
            Mode::Production,
        )
        .unwrap_err();
        assert!(err.0.contains("MOMENTUM_WEBHOOK_SECRET_KEY"), "{err}");
        let err = config(
            &[
                ("MOMENTUM_JWT_SECRET", &jwt),
                ("MOMENTUM_WEBHOOKS_ALLOW_PRIVATE", "1"),
            ],
            Mode::Production,
        )
        .unwrap_err();
        assert!(err.0.contains("MOMENTUM_WEBHOOKS_ALLOW_PRIVATE"), "{err}");
        let prod = config(&[("MOMENTUM_JWT_SECRET", &jwt)], Mode::Production).unwrap();
        assert!(!prod.webhooks.allow_http && !prod.webhooks.allow_private);
        assert!(prod.webhooks.secret_key.is_none(), "no key: webhooks off");
        let local = config(
            &[
                ("MOMENTUM_WEBHOOKS_ALLOW_PRIVATE", "1"),
                ("MOMENTUM_STORE", "memory"),
            ],
            Mode::Local,
        )
        .unwrap();
        assert!(local.webhooks.allow_http && local.webhooks.allow_private);
        assert!(local.webhooks.secret_key.is_some_and(|k| k.len() >= 32));
    }

    #[test]
    fn push_defaults_to_the_log_locally_and_needs_arns_for_sns() {
        let local = config(&[("MOMENTUM_STORE", "memory")], Mode::Local).unwrap();
        assert_eq!(local.push, PushConfig::Log);
        let secret = "x".repeat(32);
        let prod = |extra: &[(&str, &str)]| {
            let mut vars = vec![("MOMENTUM_JWT_SECRET", secret.as_str())];
            vars.extend_from_slice(extra);
            config(&vars, Mode::Production)
        };
        assert_eq!(prod(&[]).unwrap().push, PushConfig::Off);
        let err = prod(&[("MOMENTUM_PUSH", "log")]).unwrap_err();
        assert!(err.0.contains("local only"), "{err}");
        let err = prod(&[("MOMENTUM_PUSH", "sns")]).unwrap_err();
        assert!(err.0.contains("MOMENTUM_PUSH_APNS_ARN"), "{err}");
        let err = prod(&[("MOMENTUM_PUSH", "sns"), ("MOMENTUM_PUSH_FCM_ARN", "fcm")]).unwrap_err();
        assert!(err.0.contains("MOMENTUM_PUSH_FCM_ARN"), "{err}");
        let arn = "arn:aws:sns:eu-west-1:123456789012:app/APNS/momentum";
        let sns = prod(&[
            ("MOMENTUM_PUSH", "sns"),
            ("MOMENTUM_PUSH_APNS_ARN", arn),
            ("MOMENTUM_PUSH_APNS_SANDBOX", "true"),
        ])
        .unwrap();
        let PushConfig::Sns { platforms, .. } = sns.push else {
            panic!("sns expected");
        };
        assert_eq!(platforms.apns_arn.as_deref(), Some(arn));
        assert!(platforms.apns_sandbox && platforms.fcm_arn.is_none());
        let err = config(&[("MOMENTUM_PUSH", "carrier-pigeon")], Mode::Local).unwrap_err();
        assert!(err.0.contains("MOMENTUM_PUSH"), "{err}");
    }
}
