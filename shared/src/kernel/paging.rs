//! List parameters and pages, the same for every list endpoint.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, AppResult};

pub use crate::kernel::limits::{DEFAULT_PAGE_LIMIT as DEFAULT_LIMIT, MAX_PAGE_LIMIT as MAX_LIMIT};

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1..=100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> AppResult<u32> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(AppError::validation(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )),
        }
    }
}

/// Largest page of the change feed (REST `GET /workspaces/{id}/changes`, WebSocket `sync`).
pub use crate::kernel::limits::MAX_CHANGES_LIMIT;

/// The change feed's page size: `default` when absent, else 1..=1000 or 400 naming `limit`.
pub fn changes_limit(limit: Option<u32>, default: u32) -> AppResult<u32> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_CHANGES_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(AppError::validation(
            "limit",
            format!("must be between 1 and {MAX_CHANGES_LIMIT}"),
        )),
    }
}

/// One page of a list.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Present exactly when more items follow.
    pub next_cursor: Option<String>,
}

impl<T: serde::de::DeserializeOwned> Paged<T> {
    /// A storage page read as records of `T`.
    pub fn of(page: crate::storage::Page) -> AppResult<Self> {
        Ok(Self {
            items: page
                .items
                .into_iter()
                .map(crate::kernel::record::from_item)
                .collect::<AppResult<_>>()?,
            next_cursor: page.next_cursor,
        })
    }
}

/// Every item a query matches, page after page (for bounded sets: a connection's items, a
/// topic's subscribers, a user's sessions).
pub async fn query_all(
    store: &dyn crate::storage::Store,
    query: crate::storage::Query,
) -> AppResult<Vec<crate::storage::Item>> {
    query_until(store, query, usize::MAX).await
}

/// The items a query matches, page after page, until at least `enough` are read or none are
/// left (the last page is kept whole, so there may be more than `enough`): for a set that is
/// read whole when small, while a caller that can only handle so many stops early.
pub async fn query_until(
    store: &dyn crate::storage::Store,
    query: crate::storage::Query,
    enough: usize,
) -> AppResult<Vec<crate::storage::Item>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(&query.clone().limit(1000).cursor(cursor.take()))
            .await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) if out.len() < enough => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Every item of a workspace partition whose sort key starts with `prefix`.
pub async fn workspace_items(
    store: &dyn crate::storage::Store,
    workspace_id: &str,
    prefix: &str,
) -> AppResult<Vec<crate::storage::Item>> {
    query_all(
        store,
        crate::storage::Query::new(
            crate::storage::Table::Main,
            crate::kernel::keys::workspace_partition(workspace_id),
        )
        .sort(crate::storage::SortKey::BeginsWith(prefix.to_owned())),
    )
    .await
}

/// Every member of a workspace (bounded by the workspace's member limit).
pub async fn workspace_members(
    store: &dyn crate::storage::Store,
    workspace_id: &str,
) -> AppResult<Vec<crate::kernel::access::Member>> {
    workspace_items(store, workspace_id, crate::kernel::keys::MEMBER_PREFIX)
        .await?
        .into_iter()
        .map(crate::kernel::record::from_item)
        .collect()
}

/// One page of a workspace partition's items whose sort key starts with `prefix` (the
/// caller checks `limit` first, so a bad limit is a 400 before anything is read).
pub async fn workspace_page(
    store: &dyn crate::storage::Store,
    workspace_id: &str,
    prefix: &str,
    limit: u32,
    cursor: Option<String>,
) -> AppResult<crate::storage::Page> {
    store
        .query(
            &crate::storage::Query::new(
                crate::storage::Table::Main,
                crate::kernel::keys::workspace_partition(workspace_id),
            )
            .sort(crate::storage::SortKey::BeginsWith(prefix.to_owned()))
            .limit(limit)
            .cursor(cursor),
        )
        .await
        .map_err(Into::into)
}
