//! Everything a handler needs, built once per process from configuration.

use std::sync::Arc;

use crate::areas::auth::AuthService;
use crate::areas::comments::CommentService;
use crate::areas::cycles::CycleService;
use crate::areas::invitations::InvitationService;
use crate::areas::issues::IssueService;
use crate::areas::labels::LabelService;
use crate::areas::notifications::NotificationService;
use crate::areas::projects::ProjectService;
use crate::areas::push::{
    DevicePush, DeviceService, ForegroundProbe, LocalPushLog, NoProvider, NoPush, PushOutlet,
    PushProvider, SnsPush,
};
use crate::areas::teams::TeamService;
use crate::areas::tokens::TokenService;
use crate::areas::webhooks::WebhookService;
use crate::areas::webhooks::sender::{HttpSender, WebhookSender};
use crate::areas::webhooks::target::TargetPolicy;
use crate::areas::workflows::WorkflowService;
use crate::areas::workspaces::WorkspaceService;
use crate::clock::{Clock, SystemClock};
use crate::config::{AppConfig, PushConfig, StoreKind};
use crate::kernel::context::ServiceContext;
use crate::ratelimit::RateLimits;
use crate::realtime::connections::ConnectionRegistry;
use crate::storage::dynamo::{DynamoSettings, DynamoStore};
#[cfg(feature = "embedded")]
use crate::storage::embedded::EmbeddedStore;
use crate::storage::metered::CallTotals;
use crate::storage::{
    Expiring, MemoryStore, Metered, RetryPolicy, Retrying, Store, StoreError, expire_periodically,
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<AppConfig>,
    pub store: Arc<dyn Store>,
    pub storage_totals: Arc<CallTotals>,
    pub ctx: ServiceContext,
    pub auth: Arc<AuthService>,
    /// Rate limits, global through the store (in-process buckets only filter).
    pub limits: Arc<RateLimits>,
    pub workspaces: Arc<WorkspaceService>,
    pub teams: Arc<TeamService>,
    pub tokens: Arc<TokenService>,
    pub workflows: Arc<WorkflowService>,
    pub invitations: Arc<InvitationService>,
    pub labels: Arc<LabelService>,
    pub projects: Arc<ProjectService>,
    pub issues: Arc<IssueService>,
    pub cycles: Arc<CycleService>,
    pub comments: Arc<CommentService>,
    pub webhooks: Arc<WebhookService>,
    /// The inbox, subscriptions and preferences (its dispatcher is fed change records).
    pub notifications: Arc<NotificationService>,
    /// Mobile push for notifications (`NoPush` when `MOMENTUM_PUSH=off`).
    pub push: Arc<dyn PushOutlet>,
    /// Registered push devices (`/auth/devices`).
    pub devices: Arc<DeviceService>,
    /// The would-be pushes of `MOMENTUM_PUSH=log` (the shim's `GET /dev/push-log`).
    pub push_log: Option<Arc<LocalPushLog>>,
}

/// The push provider `config` names, where it needs no I/O to build; `sns` is built by
/// `AppState::from_config` (`SnsPush::connect`). Also returns the log when it is the log.
fn sync_push_provider(config: &AppConfig) -> (Arc<dyn PushProvider>, Option<Arc<LocalPushLog>>) {
    match &config.push {
        PushConfig::Log => {
            let log = Arc::new(LocalPushLog::new());
            (log.clone(), Some(log))
        }
        // `sns` until `from_config` installs the client (`with_push_provider`).
        PushConfig::Off | PushConfig::Sns { .. } => (Arc::new(NoProvider), None),
    }
}

/// Opens the configured store (creating DynamoDB tables when asked to).
pub async fn open_store(config: &AppConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.store {
        StoreKind::Memory => expiring(MemoryStore::new()),
        #[cfg(feature = "embedded")]
        StoreKind::Embedded { data_dir } => {
            expiring(EmbeddedStore::open(&data_dir.join("momentum.sqlite3"))?)
        }
        #[cfg(not(feature = "embedded"))]
        StoreKind::Embedded { .. } => {
            return Err(StoreError::Invalid(
                "this binary is built without the embedded store: set MOMENTUM_STORE=dynamodb"
                    .into(),
            ));
        }
        StoreKind::DynamoDb {
            endpoint,
            region,
            create_tables,
        } => {
            let store = DynamoStore::connect(&DynamoSettings {
                endpoint: endpoint.clone(),
                region: region.clone(),
                tables: config.tables.clone(),
            })
            .await;
            if *create_tables {
                store.create_tables().await?;
            }
            Arc::new(store)
        }
    })
}

/// A store in this process that deletes expired items, as DynamoDB's time to live does:
/// once a minute (nothing else would: change records and sessions would pile up forever).
fn expiring<S: Store + Expiring>(store: S) -> Arc<dyn Store> {
    let store = Arc::new(store);
    expire_periodically(store.clone(), std::time::Duration::from_secs(60));
    store
}

impl AppState {
    pub async fn from_config(config: AppConfig) -> Result<Self, StoreError> {
        let store = open_store(&config).await?;
        let state = Self::with_store(config.clone(), store.clone(), Arc::new(SystemClock));
        if let PushConfig::Sns {
            platforms,
            endpoint,
            region,
        } = &config.push
        {
            let sns = SnsPush::connect(region.clone(), endpoint.clone(), platforms.clone()).await;
            return Ok(state.with_push_provider(Arc::new(sns)));
        }
        Ok(state)
    }

    /// Builds the state over a given store and clock (tests inject both).
    pub fn with_store(config: AppConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let policy = TargetPolicy {
            allow_http: config.webhooks.allow_http,
            allow_private: config.webhooks.allow_private,
        };
        let sender = Arc::new(HttpSender::new(policy, config.webhooks.timeout));
        Self::with_webhook_sender(config, store, clock, sender)
    }

    /// `with_store`, with deliveries sent through `sender` (tests inject failures).
    pub fn with_webhook_sender(
        config: AppConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sender: Arc<dyn WebhookSender>,
    ) -> Self {
        let store = Retrying::new(store, RetryPolicy::with_budget(config.request_budget));
        let metered = Metered::new(store);
        let storage_totals = metered.totals();
        let store: Arc<dyn Store> = Arc::new(metered);
        let ctx = ServiceContext::new(store.clone(), clock.clone());
        let limits = Arc::new(RateLimits::new(
            &config.rate_limits,
            store.clone(),
            clock.clone(),
        ));
        let (provider, push_log) = sync_push_provider(&config);
        let devices = Arc::new(DeviceService::new(ctx.clone(), provider));
        let push = push_outlet(&config, &ctx, &devices);
        Self {
            auth: Arc::new(
                AuthService::new(store.clone(), &config.auth, clock)
                    .with_limits(limits.clone())
                    .with_changes(ctx.changes.clone())
                    .with_devices(devices.clone()),
            ),
            limits,
            workspaces: Arc::new(WorkspaceService::new(ctx.clone())),
            teams: Arc::new(TeamService::new(ctx.clone())),
            tokens: Arc::new(TokenService::new(ctx.clone())),
            workflows: Arc::new(WorkflowService::new(ctx.clone())),
            invitations: Arc::new(InvitationService::new(ctx.clone())),
            labels: Arc::new(LabelService::new(ctx.clone())),
            projects: Arc::new(ProjectService::new(ctx.clone())),
            issues: Arc::new(IssueService::new(ctx.clone())),
            cycles: Arc::new(CycleService::new(ctx.clone())),
            comments: Arc::new(CommentService::new(ctx.clone())),
            notifications: Arc::new(NotificationService::new(ctx.clone())),
            webhooks: Arc::new(WebhookService::new(
                ctx.clone(),
                config.webhooks.clone(),
                sender,
            )),
            push,
            devices,
            push_log,
            config: Arc::new(config),
            store,
            storage_totals,
            ctx,
        }
    }

    /// This state with pushes and device endpoints going through `provider` (the SNS one,
    /// or a test's): the device service, the outlet and logout's device cleanup use it.
    pub fn with_push_provider(mut self, provider: Arc<dyn PushProvider>) -> Self {
        self.devices = Arc::new(DeviceService::new(self.ctx.clone(), provider));
        self.push = push_outlet(&self.config, &self.ctx, &self.devices);
        self.push_log = None;
        let auth = AuthService::new(
            self.store.clone(),
            &self.config.auth,
            self.ctx.clock.clone(),
        )
        .with_limits(self.limits.clone())
        .with_changes(self.ctx.changes.clone())
        .with_devices(self.devices.clone());
        self.auth = Arc::new(auth);
        self
    }
}

/// The outlet for `config`: none when push is off, else the device outlet, which skips users
/// with a live foreground socket (the connection registry answers that).
fn push_outlet(
    config: &AppConfig,
    ctx: &ServiceContext,
    devices: &Arc<DeviceService>,
) -> Arc<dyn PushOutlet> {
    if config.push == PushConfig::Off {
        return Arc::new(NoPush);
    }
    let probe: Arc<dyn ForegroundProbe> = Arc::new(ConnectionRegistry::new(ctx.clone()));
    Arc::new(DevicePush::new(devices.clone(), Some(probe)))
}
