//! Everything a handler needs, built once per process from configuration.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{AppConfig, StoreKind};
use crate::services::auth::AuthService;
use crate::storage::dynamo::{DynamoSettings, DynamoStore};
use crate::storage::embedded::EmbeddedStore;
use crate::storage::metered::CallTotals;
use crate::storage::{Metered, Store, StoreError};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<AppConfig>,
    pub store: Arc<dyn Store>,
    pub storage_totals: Arc<CallTotals>,
    pub auth: Arc<AuthService>,
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
        let metered = Metered::new(store);
        let storage_totals = metered.totals();
        let store: Arc<dyn Store> = Arc::new(metered);
        let auth = Arc::new(AuthService::new(store.clone(), &config.auth, clock));
        Self {
            config: Arc::new(config),
            store,
            storage_totals,
            auth,
        }
    }
}
