//! `GET /projects`: the workspace's projects in id order, filtered within a bounded window.

use super::layout::projects_query;
use super::model::{Project, ProjectFilter};
use crate::error::{AppError, AppResult};
use crate::kernel::access::{EntityType, Principal};
use crate::kernel::context::ServiceContext;
use crate::kernel::paging::{PageParams, Paged};
use crate::kernel::record::from_item;
use crate::storage::cursor::Position;
use crate::storage::{Key, Page};

/// How many projects one filtered list request examines (one Query): a filtered page may
/// hold fewer than `limit` items while `next_cursor` says more may follow.
pub const FILTER_WINDOW: u32 = 300;

impl ProjectFilter {
    fn is_empty(&self) -> bool {
        self.status_id.is_none() && self.owner_id.is_none() && self.priority.is_none()
    }

    fn matches(&self, p: &Project) -> bool {
        self.status_id
            .as_ref()
            .is_none_or(|s| p.status_id.as_ref() == Some(s))
            && self
                .owner_id
                .as_ref()
                .is_none_or(|o| p.owner_id.as_ref() == Some(o))
            && self.priority.is_none_or(|pr| p.priority == pr)
    }
}

/// A workspace's projects, filtered, in id order (see `ProjectService::list`).
pub(super) async fn list(
    ctx: &ServiceContext,
    who: &Principal,
    filter: &ProjectFilter,
    page: &PageParams,
) -> AppResult<Paged<Project>> {
    let limit = page.limit()?;
    let scope = ctx
        .access
        .resolve(
            who,
            filter.workspace_id.as_deref(),
            EntityType::Project.read_action(),
        )
        .await?;
    let query = projects_query(&scope.workspace_id).cursor(page.cursor.clone());
    if filter.is_empty() {
        let got = ctx.store.query(&query.limit(limit)).await?;
        return Paged::of(got);
    }
    let got = ctx
        .store
        .query(&query.limit(FILTER_WINDOW.max(limit)))
        .await?;
    filtered_page(got, filter, limit)
}

/// The first `limit` matches of one window. A page filled before the window's end resumes
/// right after its last item; otherwise the window's own cursor says whether more follow.
fn filtered_page(got: Page, filter: &ProjectFilter, limit: u32) -> AppResult<Paged<Project>> {
    let examined = got.items.len();
    let mut items = Vec::new();
    let mut cut = None;
    for (i, item) in got.items.into_iter().enumerate() {
        let key = Key::of(&item);
        let project: Project = from_item(item)?;
        if !filter.matches(&project) {
            continue;
        }
        items.push(project);
        if items.len() as u32 == limit {
            if i + 1 < examined {
                let key = key.ok_or_else(|| AppError::internal("internal error"))?;
                cut = Some(
                    Position {
                        pk: key.pk,
                        sk: key.sk,
                        index_key: None,
                    }
                    .encode(),
                );
            }
            break;
        }
    }
    let next_cursor = if items.len() as u32 == limit {
        cut.or(got.next_cursor)
    } else {
        got.next_cursor
    };
    Ok(Paged { items, next_cursor })
}
