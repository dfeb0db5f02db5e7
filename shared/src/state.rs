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
use crate::areas::push::{NoPush, PushOutlet};
use crate::areas::teams::TeamService;
use crate::areas::tokens::TokenService;
use crate::areas::webhooks::WebhookService;
use crate::areas::webhooks::sender::{HttpSender, WebhookSender};
use crate::areas::webhooks::target::TargetPolicy;
use crate::areas::workflows::WorkflowService;
use crate::areas::workspaces::WorkspaceService;
use crate::clock::{Clock, SystemClock};
use crate::config::{AppConfig, StoreKind};
use crate::kernel::context::ServiceContext;
use crate::ratelimit::RateLimits;
use crate::storage::dynamo::{DynamoSettings, DynamoStore};
use crate::storage::embedded::EmbeddedStore;
use crate::storage::metered::CallTotals;
use crate::storage::{Metered, RetryPolicy, Retrying, Store, StoreError};

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
    /// Mobile push for notifications (`NoPush` until configured).
    pub push: Arc<dyn PushOutlet>,
}

/// Opens the configured store (creating DynamoDB tables when asked to).
pub async fn open_store(config: &AppConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.store {
        StoreKind::Memory => Arc::new(EmbeddedStore::in_memory()),
        StoreKind::Embedded { data_dir } => {
            Arc::new(EmbeddedStore::open(&data_dir.join("momentum.sqlite3"))?)
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

impl AppState {
    pub async fn from_config(config: AppConfig) -> Result<Self, StoreError> {
        let store = open_store(&config).await?;
        Ok(Self::with_store(config, store, Arc::new(SystemClock)))
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
        Self {
            auth: Arc::new(
                AuthService::new(store.clone(), &config.auth, clock)
                    .with_limits(limits.clone())
                    .with_changes(ctx.changes.clone()),
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
            push: Arc::new(NoPush),
            config: Arc::new(config),
            store,
            storage_totals,
            ctx,
        }
    }
}
